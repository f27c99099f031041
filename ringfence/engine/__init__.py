"""The policy engine: Calico's tiered policy evaluation over flow records, enforced and staged.

>>> engine = PolicyEngine(resources)      # doctest: +SKIP
>>> verdict = engine.evaluate(flow)       # doctest: +SKIP
>>> verdict.action, verdict.trace         # doctest: +SKIP
('allow', ('0|platform|platform.twilio-integration|allow|0',))
"""

from __future__ import annotations

from ringfence.engine.changes import FlowChange, ImpactSummary, apply_changes, diff_verdicts, summarize
from ringfence.engine.domains import DomainPattern, DomainPatternError
from ringfence.engine.engine import PolicyEngine
from ringfence.engine.errors import EngineError, NotACalicoEndpointError, PolicyCompileError, PolicyUnavailableError
from ringfence.engine.verdict import ConnectionVerdict, Verdict, VerdictAction

__all__ = [
    "ConnectionVerdict",
    "DomainPattern",
    "DomainPatternError",
    "EngineError",
    "FlowChange",
    "ImpactSummary",
    "NotACalicoEndpointError",
    "PolicyCompileError",
    "PolicyEngine",
    "PolicyUnavailableError",
    "Verdict",
    "VerdictAction",
    "apply_changes",
    "diff_verdicts",
    "summarize",
]
