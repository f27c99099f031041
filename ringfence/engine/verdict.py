"""Verdicts: what the enforced policies and the staged view decide for one direction of a flow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from ringfence.flows.record import PolicyHit

VerdictAction: TypeAlias = Literal["allow", "deny", "uncertain"]

ALLOW: Final = "allow"
DENY: Final = "deny"
UNCERTAIN: Final = "uncertain"

INGRESS: Final = "ingress"
EGRESS: Final = "egress"
FORWARD: Final = "forward"


def combine_actions(*actions: str) -> VerdictAction:
    """A connection's action from its sides' actions: any deny denies, all allow allows, else uncertain."""
    if DENY in actions:
        return "deny"
    if all(action == ALLOW for action in actions):
        return "allow"
    return "uncertain"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One direction of one flow, evaluated twice.

    ``action``/``trace``/``hits``: the enforced policies only. ``staged_action``/``staged_trace``/
    ``staged_hits``: every staged policy as if enforced (a staged ``Set`` replaces its enforced twin,
    a staged ``Delete`` removes it). Traces are Calico Enterprise hit strings
    ``index|tier|name|action|ruleIndex``; for an ``uncertain`` action the trace is the one obtained
    by taking every uncertain criterion as matching. ``direction`` is ``ingress``, ``egress`` or
    ``forward``.
    """

    action: VerdictAction
    staged_action: VerdictAction
    trace: tuple[str, ...]
    staged_trace: tuple[str, ...]
    direction: str
    hits: tuple[PolicyHit, ...] = ()
    staged_hits: tuple[PolicyHit, ...] = ()

    @property
    def uncertain(self) -> bool:
        """Whether either view could not be decided from the record."""
        return UNCERTAIN in (self.action, self.staged_action)


@dataclass(frozen=True, slots=True)
class ConnectionVerdict:
    """Both sides of a connection: egress on the source, ingress on the destination.

    A side is None when it is not a Calico endpoint (an external ``net`` or a network set): the
    connection needs every present side to allow.
    """

    source: Verdict | None
    destination: Verdict | None

    def _sides(self) -> tuple[Verdict, ...]:
        return tuple(side for side in (self.source, self.destination) if side is not None)

    @property
    def action(self) -> VerdictAction:
        """The enforced outcome of the connection."""
        return combine_actions(*(side.action for side in self._sides()))

    @property
    def staged_action(self) -> VerdictAction:
        """The staged-view outcome of the connection."""
        return combine_actions(*(side.staged_action for side in self._sides()))
