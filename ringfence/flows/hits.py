"""Policy-hit strings: the ``index|tier|name|action|ruleIndex`` entries of a flow's policy trace.

Two spellings exist and both are read:

* **Enterprise** (Calico Enterprise ``flows.log``): the name part carries the kind through
  decorations: ``tier.policy`` (GlobalNetworkPolicy), ``ns/tier.policy`` (NetworkPolicy),
  ``ns/knp.default.policy`` (Kubernetes NetworkPolicy), ``kcnp.<tier>.policy`` (Kubernetes
  ClusterNetworkPolicy), ``__PROFILE__.kns.ns`` (profile); staged policies carry ``staged:`` before
  the policy name (``tier.staged:policy``, ``ns/tier.staged:policy``: what Calico Enterprise
  writes) or before the tier (``staged:tier.policy``, read for older tooling;
  ``ns/staged:knp.default.policy`` for Kubernetes policies). Older logs have no rule index (four
  fields); ``-`` as the rule index also means unknown. An endpoint without profile (a host
  endpoint) ends in ``__PROFILE__|__PROFILE__|deny|-1`` (the engine, after app-policy's checker) or
  ``__PROFILE__|__PROFILE__.__NO_MATCH__|deny`` (Calico Enterprise's policy preview).
* **Goldmane** (Calico OSS 3.30+): ``index|tier|kind:[ns/]name|action|ruleIndex`` with the short
  kinds ``np gnp snp sgnp sknp knp kcnp pro``.

:class:`PolicyHit.name <ringfence.flows.record.PolicyHit>` keeps the name as written, minus the
namespace: for Enterprise strings the ``tier.`` prefix (and a ``staged:`` marker, wherever it was
written) is kept, so each string formats back to itself; decorations fully implied by the kind
(``knp.default.``, ``kcnp.<tier>.``, ``__PROFILE__.``) are removed. :func:`hit_policy_name` gives
the normalised, tier-qualified name that matches :func:`ringfence.model.resource_key`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Final, Literal, TypeAlias

from ringfence.flows.record import PolicyHit
from ringfence.model import qualified_policy_name

HitStyle: TypeAlias = Literal["enterprise", "goldmane"]

PROFILE_TIER: Final = "__PROFILE__"
"""The pseudo tier of namespace and service-account profiles."""

END_OF_TIER: Final = -1
"""Rule index of a tier's default action (the hit names the first policy that selected the flow)."""

UNKNOWN_RULE: Final = -2
"""Rule index Calico writes when the rule is unknown; also what Goldmane style writes for a hit without one."""

NO_PROFILE: Final = PROFILE_TIER
"""Profile name of the final deny of an endpoint without profile: ``i|__PROFILE__|__PROFILE__|deny|-1``."""

NO_MATCH_PROFILE: Final = "__NO_MATCH__"
"""The same deny as Calico Enterprise's policy preview names it: ``__PROFILE__.__NO_MATCH__``."""

_NO_PROFILE_NAMES: Final = frozenset({NO_PROFILE, NO_MATCH_PROFILE})
_UNKNOWN_RULE_TEXT: Final = "-"

HIT_KINDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "np": "NetworkPolicy",
        "gnp": "GlobalNetworkPolicy",
        "snp": "StagedNetworkPolicy",
        "sgnp": "StagedGlobalNetworkPolicy",
        "sknp": "StagedKubernetesNetworkPolicy",
        "knp": "KubernetesNetworkPolicy",
        "kcnp": "ClusterNetworkPolicy",
        "pro": "Profile",
    }
)
"""Goldmane short kind -> resource kind (the Kubernetes kind strings of the API; ``Profile`` has no resource)."""

NAMESPACED_KINDS: Final = frozenset({"np", "snp", "knp", "sknp"})
CLUSTER_NETWORK_POLICY_TIERS: Final = frozenset({"kube-admin", "kube-baseline"})
HIT_ACTIONS: Final = frozenset({"allow", "deny", "pass"})

_STAGED: Final = "staged:"
_KNP_PREFIX: Final = "knp.default."
_PROFILE_PREFIX: Final = PROFILE_TIER + "."
# Kubernetes DNS-1123 label (namespaces, tiers) and subdomain (policy and profile names).
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Enterprise prefixes of AdminNetworkPolicy kinds that PolicyHit has no kind for.
_ADMIN_POLICY_PREFIXES: Final = ("kanp.", "kbanp.", "anp.", "banp.")


class PolicyHitError(ValueError):
    """A policy-hit string that does not parse; ``hit`` is the text, ``reason`` what is wrong with it."""

    def __init__(self, reason: str, *, hit: str) -> None:
        super().__init__(f"{reason} in policy hit {hit!r}")
        self.reason = reason
        self.hit = hit

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructor arguments need explicit pickling support (Celery passes errors).
        return (_rebuild_error, (self.reason, self.hit))


def _rebuild_error(reason: str, hit: str) -> PolicyHitError:
    return PolicyHitError(reason, hit=hit)


# --- parsing -----------------------------------------------------------------------------------


def parse_hit(text: str) -> PolicyHit:
    """Parse one policy-hit string of either style; raise :class:`PolicyHitError` naming what is wrong.

    >>> parse_hit("0|platform|platform.twilio-integration|allow|0").kind
    'gnp'
    """
    if not isinstance(text, str):
        raise PolicyHitError(f"expected a string, found {type(text).__name__}", hit=repr(text))
    return _parse_hit_cached(text)


def parse_hits(items: Iterable[str]) -> tuple[PolicyHit, ...]:
    """Parse a trace (a list of hit strings) in order."""
    return tuple(parse_hit(item) for item in items)


@lru_cache(maxsize=16384)
def _parse_hit_cached(text: str) -> PolicyHit:
    # Traces repeat across millions of flow records: hits are immutable, so parsing once is enough.
    fields = text.split("|")
    if len(fields) not in (4, 5):
        raise PolicyHitError(
            f"expected 5 fields 'index|tier|name|action|ruleIndex' (4 in older logs), found {len(fields)}", hit=text
        )
    index = _parse_int(fields[0], "policy index", text)
    if index < 0:
        raise PolicyHitError(f"policy index {index} is negative", hit=text)
    tier = fields[1]
    _check_tier(tier, text)
    action = fields[3]
    if action not in HIT_ACTIONS:
        raise PolicyHitError(f"action {action!r} is not one of allow, deny, pass", hit=text)
    rule_index: int | None = None
    if len(fields) == 5 and fields[4] != _UNKNOWN_RULE_TEXT:
        rule_index = _parse_int(fields[4], "rule index", text)
        if rule_index < UNKNOWN_RULE:
            raise PolicyHitError(f"rule index {rule_index} is below {UNKNOWN_RULE}", hit=text)
    name_part = fields[2]
    kind_prefix = _kind_prefix(name_part)
    if kind_prefix is not None:
        if rule_index is None:
            raise PolicyHitError("a kind-prefixed (Goldmane) hit needs a rule index", hit=text)
        kind, namespace, name = _parse_goldmane_name(kind_prefix, name_part, text)
    else:
        kind, namespace, name = _parse_enterprise_name(name_part, tier, text)
    _check_kind_tier(kind, tier, text)
    return PolicyHit(
        index=index,
        tier=tier,
        kind=kind,
        name=name,
        action=action,
        rule_index=rule_index,
        namespace=namespace,
    )


def _parse_int(field: str, what: str, text: str) -> int:
    digits = field.removeprefix("-")
    # int() would also take "+1", " 1" and "1_0"; a hit must be plain decimal to format back to itself.
    if not (digits.isascii() and digits.isdigit()) or (len(digits) > 1 and digits[0] == "0"):
        raise PolicyHitError(f"{what} {field!r} is not an integer", hit=text)
    return int(field)


def _check_tier(tier: str, text: str) -> None:
    if not tier:
        raise PolicyHitError("tier is empty", hit=text)
    if tier != PROFILE_TIER and (len(tier) > 63 or not _DNS_LABEL.fullmatch(tier)):
        raise PolicyHitError(
            f"tier {tier!r} is not a valid tier name (lower-case letters, digits and '-', at most 63)", hit=text
        )


def _check_name(name: str, what: str, text: str) -> None:
    if not name:
        raise PolicyHitError(f"{what} is empty", hit=text)
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise PolicyHitError(
            f"{what} {name!r} is not a valid name (lower-case letters, digits, '-' and '.', at most 253)", hit=text
        )


def _check_namespace(namespace: str, text: str) -> None:
    if not namespace:
        raise PolicyHitError("namespace is empty", hit=text)
    if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
        raise PolicyHitError(f"namespace {namespace!r} is not a valid namespace name", hit=text)


def _kind_prefix(name_part: str) -> str | None:
    """The ``kind`` of a ``kind:...`` name part, None for Enterprise names (whose colon is ``staged:``)."""
    head, sep, _ = name_part.partition(":")
    if not sep or "/" in head or "." in head or head == "staged":
        return None
    return head


def _parse_goldmane_name(kind: str, name_part: str, text: str) -> tuple[str, str | None, str]:
    if kind not in HIT_KINDS:
        raise PolicyHitError(f"unknown policy kind {kind!r} (expected one of {', '.join(HIT_KINDS)})", hit=text)
    rest = name_part[len(kind) + 1 :]
    if kind == "pro" and rest in _NO_PROFILE_NAMES:
        return kind, None, rest
    namespace: str | None = None
    if "/" in rest:
        namespace, _, name = rest.partition("/")
        _check_namespace(namespace, text)
    else:
        name = rest
    _check_name(name, "policy name", text)
    if kind in NAMESPACED_KINDS and namespace is None:
        raise PolicyHitError(f"kind {kind!r} needs a namespace ('{kind}:<namespace>/<name>')", hit=text)
    if kind not in NAMESPACED_KINDS and namespace is not None:
        raise PolicyHitError(f"kind {kind!r} is not namespaced but the hit names namespace {namespace!r}", hit=text)
    return kind, namespace, name


def _parse_enterprise_name(name_part: str, tier: str, text: str) -> tuple[str, str | None, str]:
    namespace: str | None = None
    name = name_part
    if "/" in name_part:
        namespace, _, name = name_part.partition("/")
        _check_namespace(namespace, text)
        if "/" in name:
            raise PolicyHitError(f"name {name_part!r} has more than one '/'", hit=text)
    if not name:
        raise PolicyHitError("policy name is empty", hit=text)

    if name == NO_PROFILE or name.startswith(_PROFILE_PREFIX):
        if namespace is not None:
            raise PolicyHitError("a profile is not namespaced", hit=text)
        profile = NO_PROFILE if name == NO_PROFILE else name[len(_PROFILE_PREFIX) :]
        if profile != NO_MATCH_PROFILE and name != NO_PROFILE:
            _check_name(profile, "profile name", text)
        return "pro", None, profile
    if name.startswith((_STAGED + _KNP_PREFIX, _KNP_PREFIX)):
        staged = name.startswith(_STAGED)
        bare = name.removeprefix(_STAGED).removeprefix(_KNP_PREFIX)
        if namespace is None:
            raise PolicyHitError(
                "a Kubernetes NetworkPolicy hit needs a namespace ('<ns>/knp.default.<name>')", hit=text
            )
        _check_name(bare, "policy name", text)
        return ("sknp" if staged else "knp"), namespace, bare
    if name.startswith("kcnp."):
        prefix = f"kcnp.{tier}."
        if not name.startswith(prefix):
            raise PolicyHitError(f"ClusterNetworkPolicy name {name!r} does not start with {prefix!r}", hit=text)
        if namespace is not None:
            raise PolicyHitError("a ClusterNetworkPolicy is not namespaced", hit=text)
        bare = name[len(prefix) :]
        _check_name(bare, "policy name", text)
        return "kcnp", None, bare
    if name.startswith(_ADMIN_POLICY_PREFIXES):
        raise PolicyHitError(f"AdminNetworkPolicy hits ({name!r}) are not supported", hit=text)

    # A Calico policy: "tier.policy", "staged:tier.policy" or "tier.staged:policy".
    staged = _STAGED in name
    if name.startswith(_STAGED):
        qualified = name[len(_STAGED) :]
    elif staged:
        head, _, tail = name.partition(_STAGED)
        if head != tier + ".":
            raise PolicyHitError(f"staged policy name {name!r} must read '{tier}.staged:<name>'", hit=text)
        qualified = head + tail
    else:
        qualified = name
    if not qualified.startswith(tier + ".") or len(qualified) == len(tier) + 1:
        raise PolicyHitError(f"policy name {name!r} must start with its tier ('{tier}.<name>')", hit=text)
    _check_name(qualified, "policy name", text)
    if namespace is None:
        return ("sgnp" if staged else "gnp"), None, name
    return ("snp" if staged else "np"), namespace, name


def _check_kind_tier(kind: str, tier: str, text: str) -> None:
    if (kind == "pro") != (tier == PROFILE_TIER):
        if kind == "pro":
            raise PolicyHitError(f"a profile hit must be in tier {PROFILE_TIER!r}, not {tier!r}", hit=text)
        raise PolicyHitError(f"tier {PROFILE_TIER!r} holds only profiles, not kind {kind!r}", hit=text)
    if kind == "kcnp" and tier not in CLUSTER_NETWORK_POLICY_TIERS:
        raise PolicyHitError(
            f"a ClusterNetworkPolicy hit must be in tier kube-admin or kube-baseline, not {tier!r}", hit=text
        )


# --- formatting --------------------------------------------------------------------------------


def format_hit(hit: PolicyHit, style: HitStyle = "enterprise") -> str:
    """Write ``hit`` in the given style; every string :func:`parse_hit` accepts formats back to itself.

    Enterprise style adds the decorations the kind implies (``tier.``, ``staged:``, ``knp.default.``,
    ``kcnp.<tier>.``, ``__PROFILE__.``) unless the name already carries them; a hit without a rule
    index has four fields. Goldmane style writes ``kind:[ns/]name`` with the decorations removed (the
    ``tier.`` prefix of a Calico policy name is part of the name and stays); a hit without a rule
    index gets ``-2`` (unknown), as Goldmane has no four-field form.
    """
    if hit.kind not in HIT_KINDS:
        raise PolicyHitError(f"unknown policy kind {hit.kind!r}", hit=repr(hit))
    if (hit.kind in NAMESPACED_KINDS) != (hit.namespace is not None):
        raise PolicyHitError(f"kind {hit.kind!r} with namespace {hit.namespace!r}", hit=repr(hit))
    if hit.action not in HIT_ACTIONS:
        raise PolicyHitError(f"action {hit.action!r} is not one of allow, deny, pass", hit=repr(hit))
    tier = PROFILE_TIER if hit.kind == "pro" else hit.tier
    if style == "goldmane":
        where = f"{hit.namespace}/" if hit.namespace is not None else ""
        rule_index = UNKNOWN_RULE if hit.rule_index is None else hit.rule_index
        return f"{hit.index}|{tier}|{hit.kind}:{where}{_bare_name(hit)}|{hit.action}|{rule_index}"
    if style == "enterprise":
        name_part = _enterprise_name(hit)
        if hit.namespace is not None:
            name_part = f"{hit.namespace}/{name_part}"
        if hit.rule_index is None:
            return f"{hit.index}|{tier}|{name_part}|{hit.action}"
        return f"{hit.index}|{tier}|{name_part}|{hit.action}|{hit.rule_index}"
    msg = f"unknown hit style {style!r} (expected 'enterprise' or 'goldmane')"
    raise ValueError(msg)


def _bare_name(hit: PolicyHit) -> str:
    """The name without kind decorations (what Goldmane writes after ``kind:[ns/]``)."""
    name = hit.name
    kind = hit.kind
    if kind in ("gnp", "np"):
        return name
    if kind in ("sgnp", "snp"):
        return name.replace(_STAGED, "", 1)
    if kind in ("knp", "sknp"):
        return name.removeprefix(_STAGED).removeprefix(_KNP_PREFIX)
    if kind == "kcnp":
        return name.removeprefix(f"kcnp.{hit.tier}.")
    return name.removeprefix(_PROFILE_PREFIX)  # pro


def _enterprise_name(hit: PolicyHit) -> str:
    """The name part of an Enterprise string, without the namespace."""
    kind = hit.kind
    if kind in ("sgnp", "snp") and _STAGED in hit.name:
        return hit.name  # staged marker already placed where the log had it
    bare = _bare_name(hit)
    if kind in ("gnp", "np"):
        return qualified_policy_name(bare, hit.tier)
    if kind in ("sgnp", "snp"):
        return f"{hit.tier}.{_STAGED}{bare.removeprefix(hit.tier + '.')}"
    if kind == "knp":
        return _KNP_PREFIX + bare
    if kind == "sknp":
        return _STAGED + _KNP_PREFIX + bare
    if kind == "kcnp":
        return f"kcnp.{hit.tier}.{bare}"
    return bare if bare == NO_PROFILE else _PROFILE_PREFIX + bare  # pro


# --- naming ------------------------------------------------------------------------------------


def hit_policy_name(hit: PolicyHit) -> str:
    """The policy's name as :func:`ringfence.model.resource_key` spells it.

    Calico policies (``np gnp snp sgnp``) are tier-qualified (``platform.twilio-integration``)
    whichever way the hit wrote them; Kubernetes policies, ClusterNetworkPolicies and profiles
    (``kns.storefront``) keep their plain name.
    """
    bare = _bare_name(hit)
    if hit.kind in ("gnp", "np", "sgnp", "snp"):
        return qualified_policy_name(bare, hit.tier)
    return bare


def hit_resource_kind(hit: PolicyHit) -> str:
    """The resource kind of the hit's policy (``GlobalNetworkPolicy``, ...; ``Profile`` for profiles)."""
    try:
        return HIT_KINDS[hit.kind]
    except KeyError:
        raise PolicyHitError(f"unknown policy kind {hit.kind!r}", hit=repr(hit)) from None
