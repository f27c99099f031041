"""Trace entries of an evaluation as :class:`PolicyHit` objects and Calico Enterprise hit strings."""

from __future__ import annotations

from ringfence.engine.endpoint import Entity
from ringfence.engine.tiers import PROFILE_TIER, Profile, Step
from ringfence.flows.hits import NO_PROFILE, format_hit
from ringfence.flows.record import EndpointType, PolicyHit


class TraceWriter:
    """Numbers trace steps into hits and formats them, caching the strings (traces repeat a lot)."""

    __slots__ = ("_rendered", "_strings")

    def __init__(self) -> None:
        self._strings: dict[PolicyHit, str] = {}
        self._rendered: dict[tuple[tuple[Step, ...], str | None], tuple[tuple[PolicyHit, ...], tuple[str, ...]]] = {}

    def render(self, steps: tuple[Step, ...], subject: Entity) -> tuple[tuple[PolicyHit, ...], tuple[str, ...]]:
        """The hits and hit strings of one evaluation's steps (cached: traces repeat across endpoints)."""
        key = (steps, subject.namespace if subject.type is EndpointType.WORKLOAD else None)
        found = self._rendered.get(key)
        if found is None:
            hits = self.hits(steps, subject)
            found = (hits, self.strings(hits))
            self._rendered[key] = found
        return found

    @staticmethod
    def profile_step(subject: Entity) -> Profile:
        """What follows the last tier: a pod's namespace profile allows, anything else is denied."""
        if subject.type is EndpointType.WORKLOAD and subject.namespace is not None:
            return ("allow", (PROFILE_TIER, None, "allow", 0))
        return ("deny", (PROFILE_TIER, None, "deny", -1))

    @staticmethod
    def hits(steps: tuple[Step, ...], subject: Entity) -> tuple[PolicyHit, ...]:
        """Number the steps of one evaluation."""
        hits: list[PolicyHit] = []
        for index, (tier, policy, action, rule_index) in enumerate(steps):
            if policy is not None:
                hits.append(
                    PolicyHit(index, tier, policy.hit_kind, policy.hit_name, action, rule_index, policy.namespace)
                )
            elif action == "allow":
                hits.append(PolicyHit(index, PROFILE_TIER, "pro", f"kns.{subject.namespace}", action, rule_index))
            else:
                hits.append(PolicyHit(index, PROFILE_TIER, "pro", NO_PROFILE, action, rule_index))
        return tuple(hits)

    def strings(self, hits: tuple[PolicyHit, ...]) -> tuple[str, ...]:
        """The Enterprise strings of ``hits``."""
        out: list[str] = []
        for hit in hits:
            text = self._strings.get(hit)
            if text is None:
                text = format_hit(hit, "enterprise")
                self._strings[hit] = text
            out.append(text)
        return tuple(out)
