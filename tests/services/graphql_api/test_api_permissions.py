"""The role table itself (no server): each role, verb and scope."""

from __future__ import annotations

import pytest

from services.api.permissions import Principal, Role, Scope, Verb, check_grants

ADMIN = Principal("a", Role.ADMIN)
TIER_ADMIN = Principal("t", Role.TIER_ADMIN, tiers=frozenset({"security"}))
DEVELOPER = Principal("d", Role.DEVELOPER, tiers=frozenset({"default"}), namespaces=frozenset({"storefront"}))
VIEWER = Principal("v", Role.VIEWER)

STOREFRONT_DEFAULT = Scope("default", "storefront")
BILLING_DEFAULT = Scope("default", "billing")
STOREFRONT_SECURITY = Scope("security", "storefront")
GLOBAL_SECURITY = Scope("security", None)
GLOBAL_PLATFORM = Scope("platform", None)
STOREFRONT_UNTIERED = Scope(None, "storefront")
GLOBAL_UNTIERED = Scope(None, None)
SCOPES = (
    STOREFRONT_DEFAULT,
    BILLING_DEFAULT,
    STOREFRONT_SECURITY,
    GLOBAL_SECURITY,
    GLOBAL_PLATFORM,
    STOREFRONT_UNTIERED,
    GLOBAL_UNTIERED,
)

# Where each principal may use the verbs other than read (read is allowed everywhere to everyone).
CHANGES = {
    ADMIN: set(SCOPES),
    TIER_ADMIN: {STOREFRONT_SECURITY, GLOBAL_SECURITY},
    DEVELOPER: {STOREFRONT_DEFAULT, STOREFRONT_UNTIERED},
    VIEWER: set(),
}
CASES = [(p, verb, scope) for p in CHANGES for verb in Verb for scope in SCOPES]


@pytest.mark.parametrize(("principal", "verb", "scope"), CASES, ids=[f"{p.role}-{v}-{s}" for p, v, s in CASES])
def test_role_table(principal, verb, scope):
    expected = verb is Verb.READ or scope in CHANGES[principal]
    assert principal.can(verb, scope) is expected


@pytest.mark.parametrize(
    ("role", "tiers", "namespaces", "fragment"),
    [
        (Role.TIER_ADMIN, set(), set(), "--tier"),
        (Role.TIER_ADMIN, {"a"}, {"b"}, "--namespace does not apply"),
        (Role.DEVELOPER, {"default"}, set(), "--namespace"),
        (Role.ADMIN, {"a"}, set(), "do not apply"),
        (Role.VIEWER, set(), {"b"}, "do not apply"),
    ],
)
def test_bindings_that_make_no_sense_are_refused(role, tiers, namespaces, fragment):
    with pytest.raises(ValueError, match=fragment):
        check_grants(role, frozenset(tiers), frozenset(namespaces))


@pytest.mark.parametrize("principal", [TIER_ADMIN, DEVELOPER])
def test_every_listed_grant_is_one_can_confirms(principal):
    grants = principal.grants()
    assert {grant.verb for grant in grants} == set(Verb)
    for grant in grants:
        if grant.verb is Verb.READ:
            continue
        namespace = None if grant.namespace == "*" else grant.namespace
        assert principal.can(grant.verb, Scope(grant.tier, namespace)), grant
