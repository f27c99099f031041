"""Checks of single values, as Calico and Kubernetes validate them: names, labels, CIDRs, ports, domains.

Each function returns ``None`` when the value is good and otherwise the problem, phrased to follow
the field path in an error message (``metadata.name: must be a DNS label ...``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from ringfence.model import Port, PortRange, Protocol

_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_PART: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_PORT_NAME: Final = re.compile(r"[-a-z0-9]+")
_DOMAIN_LABEL: Final = re.compile(r"[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?")

DNS_LABEL_MAX: Final = 63
DNS_SUBDOMAIN_MAX: Final = 253
PORT_NAME_MAX: Final = 15
PORT_MAX: Final = 65535

PROTOCOL_NAMES: Final = {name.lower(): name for name in ("TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite")}
PORT_PROTOCOLS: Final = frozenset({"TCP", "UDP", "SCTP", 6, 17, 132})


def dns_label_problem(name: str) -> str | None:
    """A Kubernetes DNS-1123 label: lower-case alphanumerics and '-', at most 63 characters."""
    if len(name) > DNS_LABEL_MAX:
        return f"{name!r} is longer than {DNS_LABEL_MAX} characters"
    if not _DNS_LABEL.fullmatch(name):
        return f"{name!r} must be a DNS label: lower-case letters, digits and '-', starting and ending alphanumeric"
    return None


def dns_subdomain_problem(name: str) -> str | None:
    """A Kubernetes DNS-1123 subdomain: DNS labels joined by dots, at most 253 characters."""
    if len(name) > DNS_SUBDOMAIN_MAX:
        return f"{name!r} is longer than {DNS_SUBDOMAIN_MAX} characters"
    if not _DNS_SUBDOMAIN.fullmatch(name):
        return f"{name!r} must be lower-case letters, digits, '-' and '.', each part starting and ending alphanumeric"
    return None


def qualified_name_problem(key: str) -> str | None:
    """A label or annotation key: an optional DNS subdomain prefix and '/', then a name of 1-63 characters."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or dns_subdomain_problem(prefix)):
        return f"key {key!r} has an invalid prefix: it must be a DNS subdomain"
    if not name or len(name) > DNS_LABEL_MAX or not _QUALIFIED_PART.fullmatch(name):
        return (
            f"key {key!r} must be at most {DNS_LABEL_MAX} letters, digits, '-', '_' or '.', "
            "starting and ending alphanumeric (with an optional DNS-subdomain prefix and '/')"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """A label value: empty, or at most 63 letters, digits, '-', '_' and '.', starting and ending alphanumeric."""
    if value and (len(value) > DNS_LABEL_MAX or not _QUALIFIED_PART.fullmatch(value)):
        return (
            f"value {value!r} must be at most {DNS_LABEL_MAX} letters, digits, '-', '_' or '.', "
            "starting and ending alphanumeric"
        )
    return None


def cidr_version(text: str) -> int | None:
    """The IP version of a CIDR or bare address (host bits may be set, as Calico allows), None if invalid."""
    try:
        return ipaddress.ip_network(text, strict=False).version
    except ValueError:
        return None


def cidr_problem(text: str) -> str | None:
    """A CIDR (``10.0.0.0/8``, ``fd00::/64``) or a single address; host bits are allowed."""
    if cidr_version(text) is None:
        return f"{text!r} is not a valid CIDR or IP address"
    return None


def port_name_problem(name: str) -> str | None:
    """A named port (IANA service name): 1-15 of a-z, 0-9 and '-', with a letter, no '--', no '-' at an end."""
    if not name or len(name) > PORT_NAME_MAX:
        return f"port name {name!r} must be 1 to {PORT_NAME_MAX} characters"
    if not _PORT_NAME.fullmatch(name):
        return f"port name {name!r} may contain only lower-case letters, digits and '-'"
    if not any("a" <= char <= "z" for char in name):
        return f"port name {name!r} must contain at least one letter"
    if "--" in name or name.startswith("-") or name.endswith("-"):
        return f"port name {name!r} must not start or end with '-' or contain '--'"
    return None


def parse_port(value: int | str) -> Port:
    """A Calico port: ``80``, ``"80"``, ``"1000:2000"`` or a port name; raise ``ValueError`` naming the problem."""
    if isinstance(value, int):
        return _port_range(value, value)
    if re.fullmatch(r"\d+", value):
        return _port_range(int(value), int(value))
    first, colon, last = value.partition(":")
    if colon:
        if not (re.fullmatch(r"\d+", first) and re.fullmatch(r"\d+", last)):
            raise ValueError(f"port range {value!r} must be two numbers, 'min:max'")
        return _port_range(int(first), int(last))
    problem = port_name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _port_range(first: int, last: int) -> PortRange:
    if not 1 <= first <= PORT_MAX or not 1 <= last <= PORT_MAX:
        raise ValueError(f"port numbers must be between 1 and {PORT_MAX}")
    if first > last:
        raise ValueError(f"port range {first}:{last} is reversed (min above max)")
    return PortRange(first, last)


def parse_protocol(value: int | str) -> Protocol | None:
    """A Calico protocol: a name (any case, returned canonical) or a number 1-255 (also as a string)."""
    if isinstance(value, int):
        return value if 1 <= value <= 255 else None
    if value.isdigit():
        return parse_protocol(int(value))
    return PROTOCOL_NAMES.get(value.lower())


def domain_problem(domain: str) -> str | None:
    """A domain name for DNS policy: exact, or with one ``*`` standing for a whole label (not alone)."""
    labels = domain.split(".")
    if len(domain) > DNS_SUBDOMAIN_MAX:
        return f"domain {domain!r} is longer than {DNS_SUBDOMAIN_MAX} characters"
    if domain == "*":
        return "domain '*' alone would match every name: give at least one more label, e.g. '*.example.com'"
    wildcards = labels.count("*")
    if wildcards > 1:
        return f"domain {domain!r} has more than one '*' wildcard"
    for label in labels:
        if label == "*":
            continue
        if "*" in label:
            return f"domain {domain!r}: the '*' wildcard must be a whole label, as in '*.example.com'"
        if not label:
            return f"domain {domain!r} has an empty label"
        if len(label) > DNS_LABEL_MAX or not _DOMAIN_LABEL.fullmatch(label):
            return f"domain {domain!r} has an invalid label {label!r}"
    return None
