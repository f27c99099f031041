"""Policies compiled once: effective selector, rules per direction, naming for traces, staged twins."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from ringfence.engine.compile import CompiledRule, RuleCompiler
from ringfence.engine.errors import PolicyCompileError
from ringfence.engine.k8s import convert_spec, knp_name
from ringfence.engine.selectors import (
    CompiledSelector,
    SelectorPool,
    global_policy_selector,
    namespaced_policy_selector,
)
from ringfence.model import (
    AnyPolicy,
    GlobalNetworkPolicy,
    KubernetesNetworkPolicy,
    NetworkPolicy,
    PolicySpec,
    PolicyType,
    ResourceKey,
    StagedAction,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    StagedNetworkPolicy,
    qualified_policy_name,
    resource_key,
)

SHORT_KINDS: Final[dict[str, str]] = {
    NetworkPolicy.kind: "np",
    GlobalNetworkPolicy.kind: "gnp",
    KubernetesNetworkPolicy.kind: "knp",
    StagedNetworkPolicy.kind: "snp",
    StagedGlobalNetworkPolicy.kind: "sgnp",
    StagedKubernetesNetworkPolicy.kind: "sknp",
}
"""Resource kind -> Goldmane short kind (the kind of the policy's hits)."""

_FAMILIES: Final = {"np": "np", "snp": "np", "gnp": "gnp", "sgnp": "gnp", "knp": "knp", "sknp": "knp"}


@dataclass(frozen=True, slots=True, eq=False)
class CompiledPolicy:
    """One policy ready for evaluation.

    ``hit_kind``/``hit_name``/``namespace`` fill the policy's :class:`PolicyHit`; ``twin`` identifies
    the enforced policy a staged one replaces or deletes (same family, namespace and name).
    ``placeholder`` marks a policy known by name and place but whose body is unavailable: reaching it
    during an evaluation raises :class:`~ringfence.engine.errors.PolicyUnavailableError`.
    """

    uid: int
    key: ResourceKey
    hit_kind: str
    hit_name: str
    namespace: str | None
    tier: str
    order: float
    sort_name: str
    selector: CompiledSelector
    ingress: tuple[CompiledRule, ...]
    egress: tuple[CompiledRule, ...]
    applies_ingress: bool
    applies_egress: bool
    staged_action: StagedAction | None
    twin: tuple[str, str | None, str]
    host_only: bool  # doNotTrack / preDNAT: evaluated in other chains, not in the flow's policy trace
    apply_on_forward: bool
    placeholder: bool = False

    @property
    def staged(self) -> bool:
        """Whether this is a staged policy."""
        return self.staged_action is not None

    @property
    def sort_key(self) -> tuple[float, str]:
        """Order inside the tier: ``order`` (missing = +inf), then name."""
        return (self.order, self.sort_name)

    def rules(self, *, egress: bool) -> tuple[CompiledRule, ...]:
        """The rules of one direction."""
        return self.egress if egress else self.ingress


class PolicyCompiler:
    """Compiles every policy kind onto :class:`CompiledPolicy`."""

    def __init__(self, selectors: SelectorPool, rules: RuleCompiler) -> None:
        self.selectors = selectors
        self.rules = rules
        self._next_uid = 0

    def compile(self, policy: AnyPolicy, *, placeholder: bool = False) -> CompiledPolicy:
        """Compile ``policy``; raise :class:`PolicyCompileError` naming it when something is malformed."""
        key = resource_key(policy)
        try:
            return self._compile(policy, key, placeholder=placeholder)
        except ValueError as error:
            raise PolicyCompileError(key, str(error)) from error

    def _compile(self, policy: AnyPolicy, key: ResourceKey, *, placeholder: bool) -> CompiledPolicy:
        kind = SHORT_KINDS[policy.kind]
        namespace = policy.metadata.namespace if policy.namespaced else None
        staged_action: StagedAction | None = None
        if isinstance(policy, StagedNetworkPolicy | StagedGlobalNetworkPolicy | StagedKubernetesNetworkPolicy):
            staged_action = StagedAction(policy.staged_action)
        if isinstance(policy, KubernetesNetworkPolicy | StagedKubernetesNetworkPolicy):
            spec: PolicySpec = convert_spec(policy.spec, api_defaults=isinstance(policy, KubernetesNetworkPolicy))
            plain = policy.name
            qualified = knp_name(policy.name)
            hit_name = plain
        else:
            spec = policy.spec
            qualified = qualified_policy_name(policy.name, spec.tier)
            plain = qualified.removeprefix(spec.tier + ".")
            hit_name = f"{spec.tier}.staged:{plain}" if staged_action is not None else qualified
        if namespace is not None:
            node = namespaced_policy_selector(spec.selector, spec.service_account_selector, namespace)
            sort_name = f"{namespace}/{qualified}"
        else:
            node = global_policy_selector(spec.selector, spec.namespace_selector, spec.service_account_selector)
            sort_name = qualified
        self._next_uid += 1
        return CompiledPolicy(
            uid=self._next_uid,
            key=key,
            hit_kind=kind,
            hit_name=hit_name,
            namespace=namespace,
            tier=spec.tier,
            order=math.inf if spec.order is None else float(spec.order),
            sort_name=sort_name,
            selector=self.selectors.get(node),
            ingress=self.rules.compile_rules(spec.ingress, namespace, egress=False),
            egress=self.rules.compile_rules(spec.egress, namespace, egress=True),
            applies_ingress=PolicyType.INGRESS in spec.types,
            applies_egress=PolicyType.EGRESS in spec.types,
            staged_action=staged_action,
            twin=(_FAMILIES[kind], namespace, qualified),
            host_only=spec.do_not_track or spec.pre_dnat,
            apply_on_forward=spec.apply_on_forward or namespace is not None,
            placeholder=placeholder,
        )
