"""Calico rules and entity rules: reading them from a document and checking them as Calico does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ringfence.manifests import checks
from ringfence.manifests.fields import Reader, describe, join
from ringfence.model import (
    Action,
    EntityRule,
    HTTPMatch,
    HTTPPath,
    ICMPFields,
    PolicyType,
    Port,
    Protocol,
    Rule,
    ServiceAccountMatch,
    ServiceMatch,
)

RULE_FIELDS: Final = (
    "action",
    "protocol",
    "notProtocol",
    "icmp",
    "notICMP",
    "ipVersion",
    "metadata",
    "http",
    "source",
    "destination",
)
ENTITY_FIELDS: Final = (
    "nets",
    "notNets",
    "selector",
    "notSelector",
    "namespaceSelector",
    "serviceAccounts",
    "services",
    "ports",
    "notPorts",
    "domains",
)


@dataclass(frozen=True, slots=True)
class RuleContext:
    """Where a rule sits: its direction and whether its policy is global (services then need a namespace)."""

    direction: PolicyType
    global_policy: bool


def read_rules(reader: Reader, spec: dict[str, Any], context: RuleContext, path: str) -> tuple[Rule, ...]:
    """The ``ingress`` or ``egress`` rule list of a Calico policy spec (by ``context.direction``)."""
    key = "ingress" if context.direction is PolicyType.INGRESS else "egress"
    rules = (read_rule(reader, item, item_path, context) for item_path, item in reader.items(spec, key, path))
    return tuple(rule for rule in rules if rule is not None)


def read_rule(reader: Reader, value: Any, path: str, context: RuleContext) -> Rule | None:
    """One rule; None when it is too broken to build (the problems are in ``reader``)."""
    fields = reader.mapping(value, path, RULE_FIELDS)
    if not isinstance(value, dict):
        return None
    action = reader.choice(fields, "action", path, Action)
    if "action" not in fields:
        reader.fail(join(path, "action"), "required: one of Allow, Deny, Pass, Log")
    protocol = _protocol(reader, fields, "protocol", path)
    not_protocol = _protocol(reader, fields, "notProtocol", path)
    ip_version = fields.get("ipVersion")
    if ip_version is not None and (type(ip_version) is not int or ip_version not in {4, 6}):
        reader.fail(join(path, "ipVersion"), f"must be 4 or 6, got {describe(ip_version)}")
        ip_version = None
    icmp = _icmp(reader, fields, "icmp", path)
    not_icmp = _icmp(reader, fields, "notICMP", path)
    meta = reader.mapping(fields.get("metadata"), join(path, "metadata"), ("annotations",))
    annotations = reader.string_map(meta, "annotations", join(path, "metadata"))
    http = _http(reader, fields, path)
    source = _entity(reader, fields, "source", path)
    destination = _entity(reader, fields, "destination", path)
    if action is None or source is None or destination is None:
        return None
    rule = Rule(
        action=action,
        protocol=protocol,
        not_protocol=not_protocol,
        icmp=icmp,
        not_icmp=not_icmp,
        ip_version=ip_version,
        source=source,
        destination=destination,
        http=http,
        metadata=annotations,
    )
    _check_rule(reader, rule, path, context)
    return rule


def _protocol(reader: Reader, fields: dict[str, Any], key: str, path: str) -> Protocol | None:
    if key not in fields:
        return None
    value = fields[key]
    if isinstance(value, bool) or not isinstance(value, int | str):
        reader.fail(join(path, key), f"expected a protocol name or number, got {describe(value)}")
        return None
    protocol = checks.parse_protocol(value)
    if protocol is None:
        reader.fail(join(path, key), f"{value!r} is not a protocol: use TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255")
    return protocol


def _icmp(reader: Reader, fields: dict[str, Any], key: str, path: str) -> ICMPFields | None:
    if key not in fields:
        return None
    where = join(path, key)
    values = reader.mapping(fields[key], where, ("type", "code"))
    icmp_type = reader.integer(values["type"], join(where, "type"), 0, 254) if "type" in values else None
    code = reader.integer(values["code"], join(where, "code"), 0, 255) if "code" in values else None
    if "code" in values and "type" not in values:
        reader.fail(join(where, "code"), "an ICMP code needs an ICMP type")
    return ICMPFields(type=icmp_type, code=code)


def _http(reader: Reader, fields: dict[str, Any], path: str) -> HTTPMatch | None:
    if "http" not in fields:
        return None
    where = join(path, "http")
    values = reader.mapping(fields["http"], where, ("methods", "paths"))
    methods = reader.texts(values, "methods", where)
    if len(set(methods)) != len(methods):
        reader.fail(join(where, "methods"), "lists a method more than once")
    paths: list[HTTPPath] = []
    for item_path, item in reader.items(values, "paths", where):
        match = reader.mapping(item, item_path, ("exact", "prefix"))
        exact = reader.field_text(match, "exact", item_path)
        prefix = reader.field_text(match, "prefix", item_path)
        given = [text for text in (exact, prefix) if text is not None]
        if len(given) != 1:
            reader.fail(item_path, "give exactly one of 'exact' or 'prefix'")
        elif not given[0].startswith("/") or any(char in given[0] for char in "? #"):
            reader.fail(item_path, f"path {given[0]!r} must start with '/' and contain no '?', '#' or space")
        else:
            paths.append(HTTPPath(exact=exact, prefix=prefix))
    return HTTPMatch(methods=methods, paths=tuple(paths))


def _entity(reader: Reader, fields: dict[str, Any], key: str, path: str) -> EntityRule | None:
    where = join(path, key)
    raw = fields.get(key)
    values = reader.mapping(raw, where, ENTITY_FIELDS)
    if raw is not None and not isinstance(raw, dict):
        return None
    nets = reader.texts(values, "nets", where)
    not_nets = reader.texts(values, "notNets", where)
    for name, cidrs in (("nets", nets), ("notNets", not_nets)):
        for index, cidr in enumerate(cidrs):
            problem = checks.cidr_problem(cidr)
            if problem:
                reader.fail(join(join(where, name), index), problem)
    accounts = None
    if "serviceAccounts" in values:
        account_path = join(where, "serviceAccounts")
        account_fields = reader.mapping(values["serviceAccounts"], account_path, ("names", "selector"))
        accounts = ServiceAccountMatch(
            names=reader.texts(account_fields, "names", account_path),
            selector=reader.selector(account_fields, "selector", account_path) or "",
        )
    services = None
    if "services" in values:
        service_path = join(where, "services")
        service_fields = reader.mapping(values["services"], service_path, ("name", "namespace"))
        name = reader.field_text(service_fields, "name", service_path) or ""
        if not name:
            reader.fail(join(service_path, "name"), "required: the name of a Kubernetes Service")
        services = ServiceMatch(name=name, namespace=reader.field_text(service_fields, "namespace", service_path))
    domains = reader.texts(values, "domains", where)
    for index, domain in enumerate(domains):
        problem = checks.domain_problem(domain)
        if problem:
            reader.fail(join(join(where, "domains"), index), problem)
    return EntityRule(
        nets=nets,
        not_nets=not_nets,
        selector=reader.selector(values, "selector", where),
        not_selector=reader.selector(values, "notSelector", where),
        namespace_selector=reader.selector(values, "namespaceSelector", where, allow_global=True),
        ports=_ports(reader, values, "ports", where),
        not_ports=_ports(reader, values, "notPorts", where),
        domains=domains,
        service_accounts=accounts,
        services=services,
    )


def _ports(reader: Reader, fields: dict[str, Any], key: str, path: str) -> tuple[Port, ...]:
    ports: list[Port] = []
    for item_path, item in reader.items(fields, key, path):
        if isinstance(item, bool) or not isinstance(item, int | str):
            reader.fail(item_path, f"expected a port number, 'min:max' range or port name, got {describe(item)}")
            continue
        try:
            ports.append(checks.parse_port(item))
        except ValueError as error:
            reader.fail(item_path, str(error))
    return tuple(ports)


def _check_rule(reader: Reader, rule: Rule, path: str, context: RuleContext) -> None:
    """Cross-field checks of libcalico-go's rule validator, plus the DNS-policy placement rules."""
    if rule.protocol not in checks.PORT_PROTOCOLS:
        having = f"the rule's protocol is {rule.protocol}" if rule.protocol is not None else "the rule has no protocol"
        for side, entity in (("source", rule.source), ("destination", rule.destination)):
            for key, ports in (("ports", entity.ports), ("notPorts", entity.not_ports)):
                if ports:
                    reader.fail(join(join(path, side), key), f"ports need protocol TCP, UDP or SCTP ({having})")
    if rule.icmp is not None and rule.protocol not in {"ICMP", "ICMPv6"}:
        reader.fail(join(path, "icmp"), "ICMP fields need protocol ICMP or ICMPv6")
    for protocol in (rule.protocol, rule.not_protocol):
        wanted = {"ICMP": 4, "ICMPv6": 6}.get(str(protocol))
        if wanted and rule.ip_version not in {None, wanted}:
            reader.fail(join(path, "ipVersion"), f"must be {wanted} with protocol {protocol}")
    _check_nets(reader, rule, path)
    if rule.http is not None:
        if rule.action is not Action.ALLOW:
            reader.fail(join(path, "http"), "HTTP matches are only valid in Allow rules")
        if rule.protocol not in {None, "TCP"}:
            reader.fail(join(path, "protocol"), "rules with HTTP matches need protocol TCP (or none)")
        if context.direction is PolicyType.EGRESS:
            reader.fail(join(path, "http"), "HTTP matches are not allowed in egress rules")
    _check_services(reader, rule, path, context)
    if rule.source.domains:
        reader.fail(join(path, "source.domains"), "domains are only valid in the destination of an egress Allow rule")
    if rule.destination.domains and (context.direction is PolicyType.INGRESS or rule.action is not Action.ALLOW):
        reader.fail(
            join(path, "destination.domains"),
            f"domains are only valid in egress Allow rules (this is an {context.direction.value.lower()} "
            f"{rule.action.value} rule)",
        )


def _check_nets(reader: Reader, rule: Rule, path: str) -> None:
    seen: set[int] = set()
    for side, entity in (("source", rule.source), ("destination", rule.destination)):
        for key, cidrs in (("nets", entity.nets), ("notNets", entity.not_nets)):
            versions = {checks.cidr_version(cidr) for cidr in cidrs} - {None}
            where = join(join(path, side), key)
            if rule.ip_version is not None and versions - {rule.ip_version}:
                reader.fail(where, f"holds a CIDR whose IP version differs from ipVersion {rule.ip_version}")
            if versions and len(versions | seen) > 1:
                reader.fail(where, "the rule mixes IPv4 and IPv6 CIDRs")
            seen |= {version for version in versions if version is not None}


def _check_services(reader: Reader, rule: Rule, path: str, context: RuleContext) -> None:
    for side, entity in (("source", rule.source), ("destination", rule.destination)):
        if entity.services is None:
            continue
        where = join(join(path, side), "services")
        conflicts = [
            key
            for key, present in (
                ("namespaceSelector", entity.namespace_selector is not None),
                ("selector", entity.selector is not None),
                ("notSelector", entity.not_selector is not None),
                ("serviceAccounts", entity.service_accounts is not None),
                ("nets", bool(entity.nets)),
                ("notNets", bool(entity.not_nets)),
            )
            if present
        ]
        if conflicts:
            reader.fail(where, f"cannot be combined with {', '.join(conflicts)} in the same entity rule")
        if side == "destination" and (entity.ports or entity.not_ports):
            reader.fail(where, "cannot be combined with ports or notPorts (a service rule uses the service's ports)")
        wrong_side = "source" if context.direction is PolicyType.EGRESS else "destination"
        if side == wrong_side:
            reader.fail(where, f"not allowed in the {side} of an {context.direction.value.lower()} rule")
        elif context.global_policy and entity.services.namespace is None:
            reader.fail(join(where, "namespace"), "required in a global policy")
