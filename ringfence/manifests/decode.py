"""One parsed document to one model resource, with every problem reported against its field path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeAlias

from ringfence.manifests import checks
from ringfence.manifests.errors import ManifestIssue
from ringfence.manifests.fields import Reader, describe, join
from ringfence.manifests.k8s import K8S_SPEC_FIELDS, read_k8s_spec
from ringfence.manifests.reading import RawDocument
from ringfence.manifests.rules import RuleContext, read_rules
from ringfence.model import (
    CALICO_API_VERSION,
    DEFAULT_TIER,
    DEFAULT_TIER_ORDER,
    K8S_CORE_API_VERSION,
    K8S_NETWORKING_API_VERSION,
    KUBE_ADMIN_TIER,
    KUBE_BASELINE_TIER,
    Action,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    KubernetesNetworkPolicy,
    Namespace,
    NetworkPolicy,
    NetworkSet,
    ObjectMeta,
    PolicySpec,
    PolicyType,
    Resource,
    StagedAction,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    StagedNetworkPolicy,
    Tier,
    default_policy_types,
)

CRD_API_VERSION: Final = "crd.projectcalico.org/v1"
NAMESPACE_LABEL: Final = "projectcalico.org/namespace"
DEFAULT_NAMESPACE: Final = "default"
BUILT_IN_TIER_ORDERS: Final = {
    DEFAULT_TIER: DEFAULT_TIER_ORDER,
    KUBE_ADMIN_TIER: 1_000.0,
    KUBE_BASELINE_TIER: 10_000_000.0,
}

CALICO_KINDS: Final[dict[str, type[Resource]]] = {
    cls.kind: cls
    for cls in (
        Tier,
        NetworkPolicy,
        GlobalNetworkPolicy,
        StagedNetworkPolicy,
        StagedGlobalNetworkPolicy,
        StagedKubernetesNetworkPolicy,
        NetworkSet,
        GlobalNetworkSet,
    )
}
_API_VERSIONS: Final = {CALICO_API_VERSION, CRD_API_VERSION, K8S_NETWORKING_API_VERSION, K8S_CORE_API_VERSION}

_META_FIELDS: Final = ("name", "namespace", "labels", "annotations", "resourceVersion", "uid", "creationTimestamp")
_META_IGNORED: Final = (
    "generation",
    "generateName",
    "managedFields",
    "finalizers",
    "ownerReferences",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_POLICY_FIELDS: Final = (
    "tier",
    "order",
    "selector",
    "serviceAccountSelector",
    "types",
    "ingress",
    "egress",
    "performanceHints",
)
# Calico 3.28+ ``spec.performanceHints`` (Felix programs the policy's rules eagerly on every node). It does
# not change a verdict; it is validated and kept so that a dump writes it back.
PERFORMANCE_HINTS: Final = ("AssumeNeededOnEveryNode",)
_GLOBAL_FIELDS: Final = ("namespaceSelector", "doNotTrack", "preDNAT", "applyOnForward")

ResourceType: TypeAlias = type[Resource]
_SpecReader: TypeAlias = Callable[[Reader, ResourceType, ObjectMeta, Any], Resource | None]


def resolve_kind(api_version: object, kind: object) -> ResourceType | tuple[str, str]:
    """The model class for an ``apiVersion``/``kind`` pair, or the field at fault and the problem."""
    if not isinstance(kind, str) or not kind:
        return "kind", "required" if kind is None else f"expected a string, got {describe(kind)}"
    if not isinstance(api_version, str) or not api_version:
        return "apiVersion", "required"
    if api_version in {CALICO_API_VERSION, CRD_API_VERSION} and kind in CALICO_KINDS:
        return CALICO_KINDS[kind]
    if api_version == K8S_NETWORKING_API_VERSION and kind == "NetworkPolicy":
        return KubernetesNetworkPolicy
    if api_version == K8S_CORE_API_VERSION and kind == "Namespace":
        return Namespace
    if kind == "NetworkPolicy":
        choices = f"{CALICO_API_VERSION} (Calico) or {K8S_NETWORKING_API_VERSION} (Kubernetes)"
        return "apiVersion", f"{api_version!r} has no NetworkPolicy: use {choices}"
    if kind in CALICO_KINDS:
        return "apiVersion", f"{kind} belongs to {CALICO_API_VERSION}, not {api_version!r}"
    if kind == "Namespace":
        return "apiVersion", f"Namespace belongs to {K8S_CORE_API_VERSION}, not {api_version!r}"
    if kind == KubernetesNetworkPolicy.kind:
        return "kind", f"write a Kubernetes policy as apiVersion {K8S_NETWORKING_API_VERSION}, kind NetworkPolicy"
    if api_version not in _API_VERSIONS:
        return "apiVersion", f"unknown API version {api_version!r} (kind {kind!r})"
    known = ", ".join([*CALICO_KINDS, "Namespace"])
    return "kind", f"unknown kind {kind!r} (known: {known})"


def decode_document(raw: RawDocument) -> tuple[Resource | None, list[ManifestIssue]]:
    """Build the resource of one document; on any problem return None and the issues."""
    reader = Reader(raw.prefix)
    body = raw.body
    if not isinstance(body, dict):
        reader.fail("", f"expected a resource (a mapping with apiVersion and kind), got {describe(body)}")
        return None, _issues(raw, reader, None, None, None)
    resolved = resolve_kind(body.get("apiVersion"), body.get("kind"))
    raw_meta = body.get("metadata")
    name = raw_meta.get("name") if isinstance(raw_meta, dict) else None
    namespace = raw_meta.get("namespace") if isinstance(raw_meta, dict) else None
    if isinstance(resolved, tuple):
        reader.fail(*resolved)
        kind = body.get("kind")
        return None, _issues(raw, reader, kind if isinstance(kind, str) else None, namespace, name)
    top_fields = ("apiVersion", "kind", "metadata", "spec")
    fields = reader.mapping(body, "", top_fields, ignored=("status",))
    meta = _read_metadata(reader, resolved, raw_meta)
    if meta is not None:
        namespace, name = meta.namespace, meta.name
    elif resolved.namespaced and namespace is None:
        namespace = DEFAULT_NAMESPACE
    resource = None
    if meta is not None:
        resource = _SPEC_READERS[resolved](reader, resolved, meta, fields.get("spec"))
    issues = _issues(raw, reader, resolved.kind, namespace, name)
    return (None if issues else resource), issues


def _issues(raw: RawDocument, reader: Reader, kind: str | None, namespace: object, name: object) -> list[ManifestIssue]:
    return [
        ManifestIssue(
            document=raw.document,
            message=message,
            path=path,
            kind=kind,
            namespace=namespace if isinstance(namespace, str) else None,
            name=name if isinstance(name, str) else None,
            position=position,
        )
        for path, message, position in reader.problems
    ]


def _read_metadata(reader: Reader, cls: ResourceType, value: Any) -> ObjectMeta | None:
    if value is None:
        reader.fail("metadata.name", "required")
        return None
    fields = reader.mapping(value, "metadata", _META_FIELDS, ignored=_META_IGNORED)
    if not isinstance(value, dict):
        return None
    name = reader.field_text(fields, "name", "metadata")
    if name is None and "name" not in fields:
        reader.fail("metadata.name", "required")
    elif name is not None and (problem := _name_problem(cls, name)):
        reader.fail("metadata.name", problem)
    namespace = reader.field_text(fields, "namespace", "metadata")
    if cls.namespaced:
        if namespace is None:
            namespace = DEFAULT_NAMESPACE
        elif problem := checks.dns_label_problem(namespace):
            reader.fail("metadata.namespace", problem)
    elif "namespace" in fields:
        reader.fail("metadata.namespace", f"{cls.kind} is not namespaced: remove the namespace")
        namespace = None
    labels = reader.string_map(fields, "labels", "metadata", labels=True)
    if NAMESPACE_LABEL in labels and cls in {NetworkSet, GlobalNetworkSet}:
        reader.fail(join("metadata.labels", NAMESPACE_LABEL), "is set by Calico and cannot be given")
    version = fields.get("resourceVersion")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    elif version is not None:
        version = reader.text(version, "metadata.resourceVersion")
    if name is None:
        return None
    return ObjectMeta(
        name=name,
        namespace=namespace,
        labels=labels,
        annotations=reader.string_map(fields, "annotations", "metadata"),
        resource_version=version or None,
        uid=reader.field_text(fields, "uid", "metadata") or None,
        creation_timestamp=reader.field_text(fields, "creationTimestamp", "metadata") or None,
    )


def _name_problem(cls: ResourceType, name: str) -> str | None:
    if cls in {Tier, Namespace}:
        return checks.dns_label_problem(name)
    if cls in {NetworkPolicy, GlobalNetworkPolicy, StagedNetworkPolicy, StagedGlobalNetworkPolicy}:
        if len(name.split(".")) > 2:
            return f"{name!r} has more than one '.': a policy name is 'name' or the legacy 'tier.name'"
        for part in name.split("."):
            if problem := checks.dns_label_problem(part):
                return problem
        return None
    return checks.dns_subdomain_problem(name)


def _read_tier(reader: Reader, cls: ResourceType, meta: ObjectMeta, value: Any) -> Resource | None:
    del cls
    spec = reader.mapping(value, "spec", ("order", "defaultAction"))
    order = reader.number(spec, "order", "spec")
    default_action = reader.choice(spec, "defaultAction", "spec", Action) or Action.DENY
    if default_action not in {Action.DENY, Action.PASS}:
        reader.fail("spec.defaultAction", f"{default_action.value!r} is not one of Deny, Pass")
    built_in = BUILT_IN_TIER_ORDERS.get(meta.name)
    if built_in is not None and order != built_in:
        reader.fail("spec.order", f"the built-in tier {meta.name!r} must have order {built_in:g}")
    return Tier(metadata=meta, order=order, default_action=default_action)


def _read_calico_policy(reader: Reader, cls: ResourceType, meta: ObjectMeta, value: Any) -> Resource | None:
    is_global = not cls.namespaced
    staged = cls in {StagedNetworkPolicy, StagedGlobalNetworkPolicy}
    allowed = _POLICY_FIELDS + (_GLOBAL_FIELDS if is_global else ()) + (("stagedAction",) if staged else ())
    spec = reader.mapping(value, "spec", allowed)
    staged_action = reader.choice(spec, "stagedAction", "spec", StagedAction) or StagedAction.SET
    tier = reader.field_text(spec, "tier", "spec")
    if tier is not None and (problem := checks.dns_label_problem(tier)):
        reader.fail("spec.tier", problem)
    _check_legacy_name(reader, meta.name, tier)
    tier = tier or DEFAULT_TIER
    if staged_action is StagedAction.DELETE:
        for key in sorted(set(spec) - {"tier", "stagedAction"}):
            reader.fail(join("spec", key), "must be empty when stagedAction is Delete (only tier may be given)")
        policy_spec = PolicySpec(tier=tier)
    else:
        policy_spec = _read_policy_spec(reader, spec, tier, is_global=is_global)
    if cls is StagedNetworkPolicy:
        return StagedNetworkPolicy(metadata=meta, spec=policy_spec, staged_action=staged_action)
    if cls is StagedGlobalNetworkPolicy:
        return StagedGlobalNetworkPolicy(metadata=meta, spec=policy_spec, staged_action=staged_action)
    if cls is GlobalNetworkPolicy:
        return GlobalNetworkPolicy(metadata=meta, spec=policy_spec)
    return NetworkPolicy(metadata=meta, spec=policy_spec)


def _check_legacy_name(reader: Reader, name: str, tier: str | None) -> None:
    """Calico's rule for ``tier.name`` names: the prefix must be the policy's tier (``default`` when unset)."""
    prefix, dot, _ = name.partition(".")
    if not dot or prefix == (tier or DEFAULT_TIER):
        return
    if tier is None:
        reader.fail(
            "metadata.name",
            f"{name!r} names tier {prefix!r} but spec.tier is not set (so the tier is {DEFAULT_TIER!r}): "
            f"add spec.tier: {prefix}",
        )
    else:
        reader.fail("metadata.name", f"the tier prefix {prefix!r} of {name!r} does not match spec.tier {tier!r}")


def _read_performance_hints(reader: Reader, spec: dict[str, Any]) -> tuple[str, ...]:
    hints: list[str] = []
    for item_path, item in reader.items(spec, "performanceHints", "spec"):
        hint = reader.text(item, item_path)
        if hint is not None and hint not in PERFORMANCE_HINTS:
            reader.fail(item_path, f"{hint!r} is not one of {', '.join(PERFORMANCE_HINTS)}")
        elif hint is not None:
            hints.append(hint)
    return tuple(hints)


def _read_policy_spec(reader: Reader, spec: dict[str, Any], tier: str, *, is_global: bool) -> PolicySpec:
    performance_hints = _read_performance_hints(reader, spec)
    types: list[PolicyType] = []
    for item_path, item in reader.items(spec, "types", "spec"):
        policy_type = reader.enum_value(item, item_path, PolicyType)
        if policy_type in types:
            reader.fail(item_path, f"{policy_type} is listed more than once")
        elif policy_type is not None:
            types.append(policy_type)
    ingress = read_rules(reader, spec, RuleContext(PolicyType.INGRESS, is_global), "spec")
    egress = read_rules(reader, spec, RuleContext(PolicyType.EGRESS, is_global), "spec")
    policy_spec = PolicySpec(
        tier=tier,
        order=reader.number(spec, "order", "spec"),
        selector=reader.selector(spec, "selector", "spec") or "",
        service_account_selector=reader.selector(spec, "serviceAccountSelector", "spec") or "",
        namespace_selector=reader.selector(spec, "namespaceSelector", "spec"),
        types=tuple(types) or default_policy_types(ingress, egress),
        types_given=bool(types),
        ingress=ingress,
        egress=egress,
        do_not_track=reader.flag(spec, "doNotTrack", "spec"),
        pre_dnat=reader.flag(spec, "preDNAT", "spec"),
        apply_on_forward=reader.flag(spec, "applyOnForward", "spec"),
        performance_hints=performance_hints,
    )
    _check_host_flags(reader, policy_spec)
    return policy_spec


def _check_host_flags(reader: Reader, spec: PolicySpec) -> None:
    if spec.do_not_track and spec.pre_dnat:
        reader.fail("spec.preDNAT", "preDNAT and doNotTrack cannot both be true")
    if spec.pre_dnat and (spec.egress or PolicyType.EGRESS in spec.types):
        reader.fail("spec.preDNAT", "a preDNAT policy cannot have egress rules or the Egress type")
    if (spec.do_not_track or spec.pre_dnat) and not spec.apply_on_forward:
        reader.fail("spec.applyOnForward", "must be true when preDNAT or doNotTrack is true")


def _read_k8s_policy(reader: Reader, cls: ResourceType, meta: ObjectMeta, value: Any) -> Resource | None:
    staged = cls is StagedKubernetesNetworkPolicy
    spec = reader.mapping(value, "spec", K8S_SPEC_FIELDS + (("stagedAction",) if staged else ()))
    staged_action = reader.choice(spec, "stagedAction", "spec", StagedAction) or StagedAction.SET
    if staged_action is StagedAction.DELETE:
        for key in sorted(set(spec) - {"stagedAction", "podSelector"}):
            reader.fail(join("spec", key), "must be empty when stagedAction is Delete")
        if spec.get("podSelector"):
            reader.fail("spec.podSelector", "must be empty when stagedAction is Delete")
    elif "podSelector" not in spec:
        # Kubernetes requires it: a forgotten selector must not silently select every pod.
        reader.fail("spec.podSelector", "required (write podSelector: {} to select every pod of the namespace)")
    k8s_spec = read_k8s_spec(reader, spec, "spec")
    if staged:
        return StagedKubernetesNetworkPolicy(metadata=meta, spec=k8s_spec, staged_action=staged_action)
    return KubernetesNetworkPolicy(metadata=meta, spec=k8s_spec)


def _read_network_set(reader: Reader, cls: ResourceType, meta: ObjectMeta, value: Any) -> Resource | None:
    spec = reader.mapping(value, "spec", ("nets", "allowedEgressDomains"))
    nets = reader.texts(spec, "nets", "spec")
    for index, cidr in enumerate(nets):
        if problem := checks.cidr_problem(cidr):
            reader.fail(f"spec.nets[{index}]", problem)
    domains = reader.texts(spec, "allowedEgressDomains", "spec")
    for index, domain in enumerate(domains):
        if problem := checks.domain_problem(domain):
            reader.fail(f"spec.allowedEgressDomains[{index}]", problem)
    if cls is GlobalNetworkSet:
        return GlobalNetworkSet(metadata=meta, nets=nets, allowed_egress_domains=domains)
    return NetworkSet(metadata=meta, nets=nets, allowed_egress_domains=domains)


def _read_namespace(reader: Reader, cls: ResourceType, meta: ObjectMeta, value: Any) -> Resource | None:
    del reader, cls, value  # a Namespace's spec (finalizers) means nothing to policy
    return Namespace(metadata=meta)


_SPEC_READERS: Final[dict[ResourceType, _SpecReader]] = {
    Tier: _read_tier,
    NetworkPolicy: _read_calico_policy,
    GlobalNetworkPolicy: _read_calico_policy,
    StagedNetworkPolicy: _read_calico_policy,
    StagedGlobalNetworkPolicy: _read_calico_policy,
    KubernetesNetworkPolicy: _read_k8s_policy,
    StagedKubernetesNetworkPolicy: _read_k8s_policy,
    NetworkSet: _read_network_set,
    GlobalNetworkSet: _read_network_set,
    Namespace: _read_namespace,
}
