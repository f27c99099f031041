"""The engine's exceptions."""

from __future__ import annotations

from ringfence.model import ResourceKey


class EngineError(ValueError):
    """Base of the engine's errors."""


class PolicyUnavailableError(EngineError):
    """An evaluation reached a policy the engine knows by name and place but not by content.

    Calico's policy checker fails the same way when a tier lists a policy missing from its store; a
    policy that the evaluation never reaches (an earlier rule decided) does not fail it.
    """

    def __init__(self, key: ResourceKey) -> None:
        super().__init__(f"{key} is listed in tier order but its content is unavailable")
        self.key = key


class NotACalicoEndpointError(EngineError):
    """Policy is evaluated on a pod or a host endpoint only; the flow names something else."""


class PolicyCompileError(EngineError):
    """A policy the engine cannot compile (malformed selector, CIDR, domain or protocol); names the policy."""

    def __init__(self, key: ResourceKey, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason
