"""Policy-hit strings: both spellings parse, format back to themselves, and bad ones are refused."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.flows.hits import (
    PolicyHitError,
    format_hit,
    hit_policy_name,
    hit_resource_kind,
    parse_hit,
    parse_hits,
)
from ringfence.flows.record import PolicyHit
from services.conformance.hits import run as run_conformance

# (string, the hit it reads as)
ENTERPRISE = [
    (
        "0|platform|platform.twilio-integration|allow|0",
        PolicyHit(0, "platform", "gnp", "platform.twilio-integration", "allow", 0),
    ),
    (
        "1|default|storefront/default.backend|deny|2",
        PolicyHit(1, "default", "np", "default.backend", "deny", 2, "storefront"),
    ),
    (
        "1|default|storefront/knp.default.backend|allow|0",
        PolicyHit(1, "default", "knp", "backend", "allow", 0, "storefront"),
    ),
    (
        "2|default|storefront/staged:knp.default.logging|allow|1",
        PolicyHit(2, "default", "sknp", "logging", "allow", 1, "storefront"),
    ),
    (
        "1|platform|staged:platform.egress-audit|allow|0",
        PolicyHit(1, "platform", "sgnp", "staged:platform.egress-audit", "allow", 0),
    ),
    (
        "1|platform|platform.staged:twilio-integration|deny|1",
        PolicyHit(1, "platform", "sgnp", "platform.staged:twilio-integration", "deny", 1),
    ),
    (
        "2|default|storefront/staged:default.frontend|allow|0",
        PolicyHit(2, "default", "snp", "staged:default.frontend", "allow", 0, "storefront"),
    ),
    (
        "2|default|storefront/default.staged:frontend|allow|0",
        PolicyHit(2, "default", "snp", "default.staged:frontend", "allow", 0, "storefront"),
    ),
    (
        "2|__PROFILE__|__PROFILE__.kns.storefront|allow|0",
        PolicyHit(2, "__PROFILE__", "pro", "kns.storefront", "allow", 0),
    ),
    (
        "3|__PROFILE__|__PROFILE__.ksa.storefront.backend|allow|0",
        PolicyHit(3, "__PROFILE__", "pro", "ksa.storefront.backend", "allow", 0),
    ),
    (
        "0|kube-admin|kcnp.kube-admin.block-metadata|deny|0",
        PolicyHit(0, "kube-admin", "kcnp", "block-metadata", "deny", 0),
    ),
    (
        "0|security|security.known-bad-actors|pass|-1",
        PolicyHit(0, "security", "gnp", "security.known-bad-actors", "pass", -1),
    ),
    (
        "0|security|security.known-bad-actors|pass|-2",
        PolicyHit(0, "security", "gnp", "security.known-bad-actors", "pass", -2),
    ),
    # older logs: no rule index
    (
        "0|security|security.known-bad-actors|pass",
        PolicyHit(0, "security", "gnp", "security.known-bad-actors", "pass", None),
    ),
    ("4|default|ns1/staged:knp.default.np|allow", PolicyHit(4, "default", "sknp", "np", "allow", None, "ns1")),
    # the final deny of an endpoint without profile (a host endpoint), as the engine writes it ...
    ("3|__PROFILE__|__PROFILE__|deny|-1", PolicyHit(3, "__PROFILE__", "pro", "__PROFILE__", "deny", -1)),
    # ... and as Calico Enterprise's policy preview writes it
    (
        "1|__PROFILE__|__PROFILE__.__NO_MATCH__|deny|-1",
        PolicyHit(1, "__PROFILE__", "pro", "__NO_MATCH__", "deny", -1),
    ),
    (
        "12|tier-2|ns-1/tier-2.policy.with.dots|deny|10",
        PolicyHit(12, "tier-2", "np", "tier-2.policy.with.dots", "deny", 10, "ns-1"),
    ),
]

GOLDMANE = [
    ("0|tier|gnp:name|allow|0", PolicyHit(0, "tier", "gnp", "name", "allow", 0)),
    ("0|tier|np:namespace/tier.name|allow|1", PolicyHit(0, "tier", "np", "tier.name", "allow", 1, "namespace")),
    ("1|tier|sgnp:name.with.dots|deny|2", PolicyHit(1, "tier", "sgnp", "name.with.dots", "deny", 2)),
    ("1|tier|snp:namespace/name|deny|0", PolicyHit(1, "tier", "snp", "name", "deny", 0, "namespace")),
    ("1|default|sknp:namespace/name|deny|3", PolicyHit(1, "default", "sknp", "name", "deny", 3, "namespace")),
    ("0|default|knp:storefront/backend|allow|2", PolicyHit(0, "default", "knp", "backend", "allow", 2, "storefront")),
    ("3|kube-baseline|kcnp:name|pass|4", PolicyHit(3, "kube-baseline", "kcnp", "name", "pass", 4)),
    ("1|__PROFILE__|pro:ksa.svcacct|allow|0", PolicyHit(1, "__PROFILE__", "pro", "ksa.svcacct", "allow", 0)),
    ("0|tier1|np:ns1/tier1.policy1|deny|-1", PolicyHit(0, "tier1", "np", "tier1.policy1", "deny", -1, "ns1")),
    ("2|__PROFILE__|pro:__PROFILE__|deny|-1", PolicyHit(2, "__PROFILE__", "pro", "__PROFILE__", "deny", -1)),
]


@pytest.mark.parametrize(
    ("text", "hit", "written"),
    [
        # Calico Enterprise writes "-" when the rule index is unknown (lma ToFlowLogPolicyString)
        (
            "0|platform|platform.twilio-integration|allow|-",
            PolicyHit(0, "platform", "gnp", "platform.twilio-integration", "allow", None),
            "0|platform|platform.twilio-integration|allow",
        ),
        (
            "1|default|ns/default.staged:x|deny|-",
            PolicyHit(1, "default", "snp", "default.staged:x", "deny", None, "ns"),
            "1|default|ns/default.staged:x|deny",
        ),
    ],
)
def test_a_dash_rule_index_reads_as_unknown(text, hit, written):
    assert parse_hit(text) == hit
    assert format_hit(hit, "enterprise") == written
    assert format_hit(hit, "goldmane").endswith("|-2")


def test_the_no_profile_deny_keeps_its_spelling_in_both_styles():
    hit = PolicyHit(0, "__PROFILE__", "pro", "__PROFILE__", "deny", -1)
    assert format_hit(hit, "enterprise") == "0|__PROFILE__|__PROFILE__|deny|-1"
    assert format_hit(hit, "goldmane") == "0|__PROFILE__|pro:__PROFILE__|deny|-1"
    assert hit_policy_name(hit) == "__PROFILE__"


@pytest.mark.parametrize(("text", "hit"), ENTERPRISE + GOLDMANE)
def test_parse_hit_reads_every_field(text, hit):
    assert parse_hit(text) == hit


@pytest.mark.parametrize("text", [row[0] for row in ENTERPRISE])
def test_enterprise_strings_round_trip(text):
    assert format_hit(parse_hit(text), "enterprise") == text


@pytest.mark.parametrize("text", [row[0] for row in GOLDMANE])
def test_goldmane_strings_round_trip(text):
    assert format_hit(parse_hit(text), "goldmane") == text


@pytest.mark.parametrize(
    ("enterprise", "goldmane"),
    [
        ("0|platform|platform.twilio-integration|allow|0", "0|platform|gnp:platform.twilio-integration|allow|0"),
        ("1|default|storefront/knp.default.backend|allow|0", "1|default|knp:storefront/backend|allow|0"),
        ("2|default|storefront/staged:knp.default.logging|allow|1", "2|default|sknp:storefront/logging|allow|1"),
        ("1|platform|platform.staged:twilio-integration|deny|1", "1|platform|sgnp:platform.twilio-integration|deny|1"),
        ("2|default|storefront/staged:default.frontend|allow|0", "2|default|snp:storefront/default.frontend|allow|0"),
        ("2|__PROFILE__|__PROFILE__.kns.storefront|allow|0", "2|__PROFILE__|pro:kns.storefront|allow|0"),
        ("0|kube-admin|kcnp.kube-admin.block-metadata|deny|0", "0|kube-admin|kcnp:block-metadata|deny|0"),
        # Goldmane has no four-field form: a missing rule index is written as -2 (unknown)
        ("0|security|security.known-bad-actors|pass", "0|security|gnp:security.known-bad-actors|pass|-2"),
    ],
)
def test_enterprise_hits_format_as_goldmane(enterprise, goldmane):
    assert format_hit(parse_hit(enterprise), "goldmane") == goldmane


@pytest.mark.parametrize(
    ("goldmane", "enterprise"),
    [
        ("0|tier|gnp:name|allow|0", "0|tier|tier.name|allow|0"),
        ("0|tier|np:namespace/tier.name|allow|1", "0|tier|namespace/tier.name|allow|1"),
        # Calico Enterprise writes a staged Calico policy as "<tier>.staged:<name>" (lma PolicyHit.FlowLogName)
        ("1|tier|sgnp:name|deny|2", "1|tier|tier.staged:name|deny|2"),
        ("1|tier|snp:namespace/name|deny|0", "1|tier|namespace/tier.staged:name|deny|0"),
        ("1|tier|sgnp:name.with.dots|deny|2", "1|tier|tier.staged:name.with.dots|deny|2"),
        ("1|tier|snp:namespace/tier.name|deny|0", "1|tier|namespace/tier.staged:name|deny|0"),
        ("1|default|sknp:namespace/name|deny|3", "1|default|namespace/staged:knp.default.name|deny|3"),
        ("0|default|knp:namespace/name|allow|2", "0|default|namespace/knp.default.name|allow|2"),
        ("3|kube-admin|kcnp:name|pass|4", "3|kube-admin|kcnp.kube-admin.name|pass|4"),
        ("1|__PROFILE__|pro:kns.default|allow|0", "1|__PROFILE__|__PROFILE__.kns.default|allow|0"),
    ],
)
def test_goldmane_hits_format_as_enterprise(goldmane, enterprise):
    assert format_hit(parse_hit(goldmane), "enterprise") == enterprise


@pytest.mark.parametrize(
    ("hit", "enterprise", "goldmane"),
    [
        (
            PolicyHit(0, "platform", "gnp", "twilio-integration", "deny", 1),
            "0|platform|platform.twilio-integration|deny|1",
            "0|platform|gnp:twilio-integration|deny|1",
        ),
        (
            PolicyHit(2, "default", "np", "backend", "allow", 0, "storefront"),
            "2|default|storefront/default.backend|allow|0",
            "2|default|np:storefront/backend|allow|0",
        ),
        (
            PolicyHit(1, "default", "knp", "backend", "deny", -1, "storefront"),
            "1|default|storefront/knp.default.backend|deny|-1",
            "1|default|knp:storefront/backend|deny|-1",
        ),
        (
            PolicyHit(3, "", "pro", "kns.storefront", "allow", 0),
            "3|__PROFILE__|__PROFILE__.kns.storefront|allow|0",
            "3|__PROFILE__|pro:kns.storefront|allow|0",
        ),
    ],
)
def test_format_hit_decorates_plain_engine_names(hit, enterprise, goldmane):
    assert format_hit(hit, "enterprise") == enterprise
    assert format_hit(hit, "goldmane") == goldmane
    assert format_hit(hit) == enterprise  # the engine's trace style is the default


INVALID = [
    ("1|tier|sgnp:tier.name|deny|notInt", "rule index 'notInt' is not an integer"),
    ("notint|tier1|np:ns1/tier1.policy1|deny|-1", "policy index 'notint' is not an integer"),
    ("+1|tier|gnp:name|deny|0", "policy index '+1' is not an integer"),
    ("01|tier|gnp:name|deny|0", "policy index '01' is not an integer"),
    ("-1|tier|gnp:name|deny|0", "policy index -1 is negative"),
    ("0|tier|gnp:name|deny|-3", "rule index -3 is below -2"),
    ("0|tier|gnp:tier.name|allow|0|extra", "expected 5 fields"),
    ("0|tier|gnp:name", "found 3"),
    ("", "found 1"),
    ("1|tier|gnp:invalid-ch@aracter|deny|2", "policy name 'invalid-ch@aracter' is not a valid name"),
    ("1|_|snp:namespace/tier.name|deny|0", "tier '_' is not a valid tier name"),
    ("0|@kube-baseline|kcnp:policy1|allow|-1", "tier '@kube-baseline'"),
    ("0|Platform|gnp:name|allow|0", "tier 'Platform'"),
    ("0|kube-admin|kcnp:name|badaction|1", "action 'badaction' is not one of allow, deny, pass"),
    ("0|tier|gnp:name|Allow|1", "action 'Allow'"),
    ("0||np:namespace/name|allow|1", "tier is empty"),
    ("0|tier1|np:namespace/|pass|0", "policy name is empty"),
    ("0|tier1|np:/name|pass|0", "namespace is empty"),
    ("0|tier1|np:Name_Space/name|pass|0", "namespace 'Name_Space' is not a valid namespace name"),
    ("1|___PROFILE__|pro:kns.default|allow|0", "tier '___PROFILE__'"),
    ("1|__PROFILE__|pro:PSA.svcacct|allow|0", "policy name 'PSA.svcacct'"),
    ("1|__PROFILE__|gnp:name|allow|0", "holds only profiles"),
    ("1|tier|pro:kns.default|allow|0", "must be in tier '__PROFILE__'"),
    ("1|security|kcnp:name|allow|0", "kube-admin or kube-baseline"),
    ("0|tier|xnp:name|allow|0", "unknown policy kind 'xnp'"),
    ("0|tier|np:name|allow|0", "kind 'np' needs a namespace"),
    ("0|tier|gnp:ns/name|allow|0", "kind 'gnp' is not namespaced"),
    ("0|tier|gnp:name|allow", "needs a rule index"),
    # Enterprise spellings
    ("0|platform|twilio-integration|allow|0", "must start with its tier ('platform.<name>')"),
    ("0|platform|security.twilio|allow|0", "must start with its tier"),
    ("0|platform|platform.|allow|0", "must start with its tier"),
    ("0|platform|ns/ns2/platform.x|allow|0", "more than one '/'"),
    ("0|platform|ns/|allow|0", "policy name is empty"),
    ("0|platform|security.staged:x|allow|0", "must read 'platform.staged:<name>'"),
    ("0|default|knp.default.backend|allow|0", "needs a namespace"),
    ("0|__PROFILE__|storefront/__PROFILE__.kns.storefront|allow|0", "a profile is not namespaced"),
    ("0|__PROFILE__|__PROFILE__.Kns.x|allow|0", "profile name 'Kns.x'"),
    ("0|__PROFILE__|ns/__PROFILE__|deny|-1", "a profile is not namespaced"),
    ("0|__PROFILE__|__PROFILE__.__PROFILE__|deny|-1", "profile name '__PROFILE__'"),
    ("0|__PROFILE__|pro:__NO_MATCH__.x|deny|-1", "policy name '__NO_MATCH__.x'"),
    ("0|platform|__PROFILE__|deny|-1", "must be in tier '__PROFILE__'"),
    ("0|platform|platform.x|allow|--", "rule index '--' is not an integer"),
    ("0|kube-admin|kcnp.kube-baseline.x|allow|0", "does not start with 'kcnp.kube-admin.'"),
    ("0|kube-admin|ns/kcnp.kube-admin.x|allow|0", "not namespaced"),
    ("0|adminnetworkpolicy|kanp.adminnetworkpolicy.x|pass|0", "AdminNetworkPolicy hits"),
    ("0|platform|platform.Twilio|allow|0", "policy name 'platform.Twilio'"),
]


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_malformed_hits_are_rejected_with_the_reason(text, reason):
    with pytest.raises(PolicyHitError) as caught:
        parse_hit(text)
    assert reason in caught.value.reason
    assert caught.value.hit == text
    assert repr(text) in str(caught.value)


def test_parse_hit_refuses_non_strings():
    with pytest.raises(PolicyHitError, match="expected a string, found int"):
        parse_hit(5)  # type: ignore[arg-type]


def test_policy_hit_error_survives_pickling():
    with pytest.raises(PolicyHitError) as caught:
        parse_hit("0|tier|gnp:name|nope|0")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.reason, copy.hit, str(copy)) == (caught.value.reason, caught.value.hit, str(caught.value))


def test_parse_hits_keeps_the_trace_order():
    trace = parse_hits(["0|security|security.a|pass|-1", "1|__PROFILE__|__PROFILE__.kns.x|allow|0"])
    assert [(hit.index, hit.kind) for hit in trace] == [(0, "gnp"), (1, "pro")]
    assert parse_hits([]) == ()


@pytest.mark.parametrize(
    ("texts", "name", "resource_kind"),
    [
        (
            ["0|platform|platform.twilio-integration|allow|0", "0|platform|gnp:twilio-integration|allow|0"],
            "platform.twilio-integration",
            "GlobalNetworkPolicy",
        ),
        (
            [
                "0|platform|staged:platform.twilio-integration|allow|0",
                "0|platform|platform.staged:twilio-integration|allow|0",
                "0|platform|sgnp:twilio-integration|allow|0",
                "0|platform|sgnp:platform.twilio-integration|allow|0",
            ],
            "platform.twilio-integration",
            "StagedGlobalNetworkPolicy",
        ),
        (
            ["0|default|storefront/default.backend|allow|0", "0|default|np:storefront/backend|allow|0"],
            "default.backend",
            "NetworkPolicy",
        ),
        (
            ["0|default|storefront/knp.default.backend|allow|0", "0|default|knp:storefront/backend|allow|0"],
            "backend",
            "KubernetesNetworkPolicy",
        ),
        (["0|default|ns/staged:knp.default.x|allow|0"], "x", "StagedKubernetesNetworkPolicy"),
        (["0|kube-admin|kcnp.kube-admin.x|allow|0", "0|kube-admin|kcnp:x|allow|0"], "x", "ClusterNetworkPolicy"),
        (["0|__PROFILE__|__PROFILE__.kns.storefront|allow|0"], "kns.storefront", "Profile"),
    ],
)
def test_hit_policy_name_is_the_same_whichever_spelling(texts, name, resource_kind):
    for text in texts:
        hit = parse_hit(text)
        assert hit_policy_name(hit) == name
        assert hit_resource_kind(hit) == resource_kind


@pytest.mark.parametrize(
    ("hit", "reason"),
    [
        (PolicyHit(0, "t", "xyz", "n", "allow", 0), "unknown policy kind 'xyz'"),
        (PolicyHit(0, "t", "np", "n", "allow", 0), "kind 'np' with namespace None"),
        (PolicyHit(0, "t", "gnp", "n", "allow", 0, "ns"), "kind 'gnp' with namespace 'ns'"),
        (PolicyHit(0, "t", "gnp", "n", "log", 0), "action 'log'"),
    ],
)
def test_format_hit_refuses_inconsistent_hits(hit, reason):
    with pytest.raises(PolicyHitError, match=reason):
        format_hit(hit)


def test_format_hit_refuses_unknown_styles():
    with pytest.raises(ValueError, match="unknown hit style 'json'"):
        format_hit(parse_hit("0|tier|gnp:name|allow|0"), "json")  # type: ignore[arg-type]


def test_hit_resource_kind_refuses_unknown_kinds():
    with pytest.raises(PolicyHitError, match="unknown policy kind"):
        hit_resource_kind(PolicyHit(0, "t", "xyz", "n", "allow", 0))


# --- properties --------------------------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_subdomain = st.lists(_label, min_size=1, max_size=3).map(".".join)


@st.composite
def goldmane_hits(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["np", "gnp", "snp", "sgnp", "sknp", "knp", "kcnp", "pro"]))
    if kind == "pro":
        tier = "__PROFILE__"
    elif kind == "kcnp":
        tier = draw(st.sampled_from(["kube-admin", "kube-baseline"]))
    else:
        tier = draw(_label)
    where = f"{draw(_label)}/" if kind in ("np", "snp", "knp", "sknp") else ""
    index = draw(st.integers(0, 50))
    action = draw(st.sampled_from(["allow", "deny", "pass"]))
    rule = draw(st.integers(-2, 50))
    return f"{index}|{tier}|{kind}:{where}{draw(_subdomain)}|{action}|{rule}"


@settings(max_examples=250)
@given(goldmane_hits())
def test_generated_goldmane_hits_round_trip_and_survive_enterprise_spelling(text):
    hit = parse_hit(text)
    assert format_hit(hit, "goldmane") == text
    enterprise = format_hit(hit, "enterprise")
    again = parse_hit(enterprise)
    assert format_hit(again, "enterprise") == enterprise
    assert hit_policy_name(again) == hit_policy_name(hit)
    assert (again.index, again.tier, again.kind, again.namespace, again.action, again.rule_index) == (
        hit.index,
        hit.tier,
        hit.kind,
        hit.namespace,
        hit.action,
        hit.rule_index,
    )


@settings(max_examples=250)
@given(st.text(alphabet="|:/._-aAz09 staged", max_size=40))
def test_arbitrary_text_parses_or_raises_policy_hit_error(text):
    try:
        hit = parse_hit(text)
    except PolicyHitError:
        return
    style = "goldmane" if ":" in text.split("|")[2] and not text.split("|")[2].count("staged:") else "enterprise"
    # Enterprise's "-" rule index (unknown) is written back in the four-field form of older logs
    expected = text.removesuffix("|-") if style == "enterprise" else text
    assert format_hit(hit, style) == expected


# --- the conformance checker built on the parser ---------------------------------------------


def test_conformance_checker_counts_passes_and_reports_failures():
    passed, failures = run_conformance(
        {
            "valid": ["0|tier|gnp:name|allow|0", "0|tier|gnp:Bad|allow|0"],
            "invalid": ["0|tier|gnp:name|nope|0", "1|tier|sgnp:name|deny|2"],
        }
    )
    assert passed == 2
    assert len(failures) == 2
    assert "valid '0|tier|gnp:Bad|allow|0': rejected" in failures[0]
    assert "invalid '1|tier|sgnp:name|deny|2': accepted" in failures[1]


def test_conformance_checker_refuses_malformed_vector_files():
    with pytest.raises(TypeError, match="'valid' must be a list of strings"):
        run_conformance({"valid": "0|tier|gnp:name|allow|0"})
