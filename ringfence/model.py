"""The resource model: Calico ``projectcalico.org/v3`` resources, Kubernetes NetworkPolicy and Namespace.

Every class is a frozen dataclass; sequences are tuples and label maps are read-only mappings, so a
loaded resource can be shared between the engine, the store and the API without copying. Field names
follow the YAML spelling in snake case (``notNets`` -> ``not_nets``). Selectors are kept as the text
the user wrote; the engine compiles them once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar, Final, TypeAlias

EMPTY_LABELS: Final[Mapping[str, str]] = MappingProxyType({})

DEFAULT_TIER: Final = "default"
DEFAULT_TIER_ORDER: Final = 1_000_000.0
KUBE_ADMIN_TIER: Final = "kube-admin"
KUBE_BASELINE_TIER: Final = "kube-baseline"
KNP_ORDER: Final = 1000.0

CALICO_API_VERSION: Final = "projectcalico.org/v3"
K8S_NETWORKING_API_VERSION: Final = "networking.k8s.io/v1"
K8S_CORE_API_VERSION: Final = "v1"


def frozen_labels(labels: Mapping[str, str] | None) -> Mapping[str, str]:
    """Return a read-only copy of ``labels`` (the shared empty map when there are none)."""
    if not labels:
        return EMPTY_LABELS
    return MappingProxyType(dict(labels))


class Action(StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"
    PASS = "Pass"
    LOG = "Log"


class PolicyType(StrEnum):
    INGRESS = "Ingress"
    EGRESS = "Egress"


class StagedAction(StrEnum):
    SET = "Set"
    DELETE = "Delete"
    LEARN = "Learn"
    IGNORE = "Ignore"


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    name: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY_LABELS)
    annotations: Mapping[str, str] = field(default_factory=lambda: EMPTY_LABELS)
    resource_version: str | None = None
    uid: str | None = None
    creation_timestamp: str | None = None


# --- rules -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortRange:
    """An inclusive port range ``first:last`` (a single port has ``first == last``)."""

    first: int
    last: int

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}:{self.last}"


Port: TypeAlias = PortRange | str  # a range (single ports included) or a named port
Protocol: TypeAlias = str | int  # canonical name ("TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite") or 1-255


@dataclass(frozen=True, slots=True)
class ICMPFields:
    type: int | None = None
    code: int | None = None


@dataclass(frozen=True, slots=True)
class ServiceAccountMatch:
    names: tuple[str, ...] = ()
    selector: str = ""


@dataclass(frozen=True, slots=True)
class ServiceMatch:
    name: str
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class EntityRule:
    """The ``source`` or ``destination`` of a rule; every given criterion must hold."""

    nets: tuple[str, ...] = ()
    not_nets: tuple[str, ...] = ()
    selector: str | None = None
    not_selector: str | None = None
    namespace_selector: str | None = None
    ports: tuple[Port, ...] = ()
    not_ports: tuple[Port, ...] = ()
    domains: tuple[str, ...] = ()
    service_accounts: ServiceAccountMatch | None = None
    services: ServiceMatch | None = None

    def is_empty(self) -> bool:
        return self == EMPTY_ENTITY_RULE


EMPTY_ENTITY_RULE: Final = EntityRule()


@dataclass(frozen=True, slots=True)
class HTTPPath:
    exact: str | None = None
    prefix: str | None = None


@dataclass(frozen=True, slots=True)
class HTTPMatch:
    methods: tuple[str, ...] = ()
    paths: tuple[HTTPPath, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    action: Action
    protocol: Protocol | None = None
    not_protocol: Protocol | None = None
    icmp: ICMPFields | None = None
    not_icmp: ICMPFields | None = None
    ip_version: int | None = None
    source: EntityRule = EMPTY_ENTITY_RULE
    destination: EntityRule = EMPTY_ENTITY_RULE
    http: HTTPMatch | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: EMPTY_LABELS)  # rule annotations


# --- Calico policies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """The spec shared by (Staged)NetworkPolicy and (Staged)GlobalNetworkPolicy.

    ``types`` is the effective list (defaulted from the rules when the manifest omits it);
    ``types_given`` records whether the manifest spelled it out, so a dump writes back what was read.
    ``namespace_selector`` and the three flags exist on global policies only.
    """

    tier: str = DEFAULT_TIER
    order: float | None = None
    selector: str = ""
    service_account_selector: str = ""
    namespace_selector: str | None = None
    types: tuple[PolicyType, ...] = (PolicyType.INGRESS,)
    types_given: bool = False
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    do_not_track: bool = False
    pre_dnat: bool = False
    apply_on_forward: bool = False
    performance_hints: tuple[str, ...] = ()  # Calico 3.28+; no effect on verdicts, kept for round trips


def default_policy_types(ingress: tuple[Rule, ...], egress: tuple[Rule, ...]) -> tuple[PolicyType, ...]:
    """Calico's default for an omitted ``types``: Egress only with only egress rules, both with both."""
    if egress and not ingress:
        return (PolicyType.EGRESS,)
    if egress and ingress:
        return (PolicyType.INGRESS, PolicyType.EGRESS)
    return (PolicyType.INGRESS,)


def qualified_policy_name(name: str, tier: str) -> str:
    """The ``<tier>.<name>`` form Calico Enterprise writes in flow logs (legacy names already have it)."""
    return name if name.startswith(tier + ".") else f"{tier}.{name}"


@dataclass(frozen=True, slots=True)
class Tier:
    kind: ClassVar[str] = "Tier"
    namespaced: ClassVar[bool] = False
    metadata: ObjectMeta
    order: float | None = None
    default_action: Action = Action.DENY

    @property
    def name(self) -> str:
        return self.metadata.name


@dataclass(frozen=True, slots=True)
class _CalicoPolicy:
    metadata: ObjectMeta
    spec: PolicySpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    @property
    def tier(self) -> str:
        return self.spec.tier

    @property
    def qualified_name(self) -> str:
        return qualified_policy_name(self.metadata.name, self.spec.tier)


@dataclass(frozen=True, slots=True)
class NetworkPolicy(_CalicoPolicy):
    kind: ClassVar[str] = "NetworkPolicy"
    namespaced: ClassVar[bool] = True
    staged: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class GlobalNetworkPolicy(_CalicoPolicy):
    kind: ClassVar[str] = "GlobalNetworkPolicy"
    namespaced: ClassVar[bool] = False
    staged: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class StagedNetworkPolicy(_CalicoPolicy):
    kind: ClassVar[str] = "StagedNetworkPolicy"
    namespaced: ClassVar[bool] = True
    staged: ClassVar[bool] = True
    staged_action: StagedAction = StagedAction.SET


@dataclass(frozen=True, slots=True)
class StagedGlobalNetworkPolicy(_CalicoPolicy):
    kind: ClassVar[str] = "StagedGlobalNetworkPolicy"
    namespaced: ClassVar[bool] = False
    staged: ClassVar[bool] = True
    staged_action: StagedAction = StagedAction.SET


# --- Kubernetes NetworkPolicy ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelSelectorRequirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A Kubernetes ``metav1.LabelSelector``; the empty selector selects everything."""

    match_labels: Mapping[str, str] = field(default_factory=lambda: EMPTY_LABELS)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()


@dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: str
    except_: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class K8sPeer:
    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True, slots=True)
class K8sPort:
    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class K8sRule:
    """One ingress (``from``) or egress (``to``) rule; empty ``peers`` means any peer."""

    ports: tuple[K8sPort, ...] = ()
    peers: tuple[K8sPeer, ...] = ()


@dataclass(frozen=True, slots=True)
class K8sPolicySpec:
    pod_selector: LabelSelector = LabelSelector()
    policy_types: tuple[PolicyType, ...] = ()  # as written; empty means Ingress only
    ingress: tuple[K8sRule, ...] = ()
    egress: tuple[K8sRule, ...] = ()


@dataclass(frozen=True, slots=True)
class KubernetesNetworkPolicy:
    kind: ClassVar[str] = "KubernetesNetworkPolicy"
    namespaced: ClassVar[bool] = True
    staged: ClassVar[bool] = False
    metadata: ObjectMeta
    spec: K8sPolicySpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    @property
    def tier(self) -> str:
        return DEFAULT_TIER


@dataclass(frozen=True, slots=True)
class StagedKubernetesNetworkPolicy:
    kind: ClassVar[str] = "StagedKubernetesNetworkPolicy"
    namespaced: ClassVar[bool] = True
    staged: ClassVar[bool] = True
    metadata: ObjectMeta
    spec: K8sPolicySpec
    staged_action: StagedAction = StagedAction.SET

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    @property
    def tier(self) -> str:
        return DEFAULT_TIER


# --- sets and namespaces -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetworkSet:
    kind: ClassVar[str] = "NetworkSet"
    namespaced: ClassVar[bool] = True
    metadata: ObjectMeta
    nets: tuple[str, ...] = ()
    allowed_egress_domains: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.metadata.name


@dataclass(frozen=True, slots=True)
class GlobalNetworkSet:
    kind: ClassVar[str] = "GlobalNetworkSet"
    namespaced: ClassVar[bool] = False
    metadata: ObjectMeta
    nets: tuple[str, ...] = ()
    allowed_egress_domains: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.metadata.name


@dataclass(frozen=True, slots=True)
class Namespace:
    kind: ClassVar[str] = "Namespace"
    namespaced: ClassVar[bool] = False
    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name


CalicoPolicy: TypeAlias = NetworkPolicy | GlobalNetworkPolicy | StagedNetworkPolicy | StagedGlobalNetworkPolicy
AnyPolicy: TypeAlias = CalicoPolicy | KubernetesNetworkPolicy | StagedKubernetesNetworkPolicy
Resource: TypeAlias = Tier | AnyPolicy | NetworkSet | GlobalNetworkSet | Namespace

RESOURCE_KINDS: Final[dict[str, type[Resource]]] = {
    cls.kind: cls
    for cls in (
        Tier,
        NetworkPolicy,
        GlobalNetworkPolicy,
        StagedNetworkPolicy,
        StagedGlobalNetworkPolicy,
        KubernetesNetworkPolicy,
        StagedKubernetesNetworkPolicy,
        NetworkSet,
        GlobalNetworkSet,
        Namespace,
    )
}


@dataclass(frozen=True, slots=True, order=True)
class ResourceKey:
    """Identity of a stored resource: kind, namespace (None when global) and name."""

    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


def resource_key(resource: Resource) -> ResourceKey:
    """The identity of ``resource``; policy names are tier-qualified so legacy and plain names agree."""
    name = resource.metadata.name
    if isinstance(resource, NetworkPolicy | GlobalNetworkPolicy | StagedNetworkPolicy | StagedGlobalNetworkPolicy):
        name = resource.qualified_name
    namespace = resource.metadata.namespace if resource.namespaced else None
    return ResourceKey(resource.kind, namespace, name)
