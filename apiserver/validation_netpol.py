"""Validation of networking.k8s.io/v1 NetworkPolicy in Kubernetes' words
(pkg/apis/networking/validation: ``ValidateNetworkPolicySpec``, ``ValidateNetworkPolicyPort``,
``ValidateNetworkPolicyPeer``, ``ValidateIPBlock``).  An update is checked as a create: Kubernetes'
update rule that keeps accepting an invalid CIDR the stored object already holds has nothing to
keep here, since minik never accepted one.  Object metadata is checked by :func:`apiserver.validation.validate`
as for every kind.  Hooked into ``validation._VALIDATORS``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .validation import (
    Cause,
    _d,
    _dl,
    _l,
    _Shown,
    forbidden,
    go_quote,
    invalid,
    is_valid_port_name,
    is_valid_port_num,
    not_supported,
    required,
    validate_label_selector,
)

Obj = dict[str, Any]

PROTOCOLS = ["TCP", "UDP", "SCTP"]
POLICY_TYPES = ["Ingress", "Egress"]
CIDR_MESSAGE = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def parse_cidr(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A CIDR as Go's ParseCIDR reads it (host bits allowed; the network is masked), else None."""
    if "/" not in value:
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def _cidr_errors(path: str, value: str) -> list[Cause]:
    if parse_cidr(value) is not None:
        return []
    return [invalid(path, value, CIDR_MESSAGE)]


def validate_port(port: Obj, path: str) -> list[Cause]:
    errs: list[Cause] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        errs.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))
    number = port.get("port")
    end = port.get("endPort")
    if number is not None:
        if isinstance(number, int) and not isinstance(number, bool):
            errs.extend(invalid(f"{path}.port", number, m) for m in is_valid_port_num(number))
            if end is not None:
                if isinstance(end, int) and end < number:
                    errs.append(invalid(f"{path}.endPort", end, "must be greater than or equal to `port`"))
                errs.extend(invalid(f"{path}.endPort", end, m) for m in is_valid_port_num(end))
        else:
            if end is not None:
                errs.append(
                    invalid(f"{path}.endPort", end, "may not be specified when `port` is non-numeric")
                )
            errs.extend(invalid(f"{path}.port", number, m) for m in is_valid_port_name(str(number)))
    elif end is not None:
        errs.append(invalid(f"{path}.endPort", end, "may not be specified when `port` is not specified"))
    return errs


def validate_ip_block(block: Obj, path: str) -> list[Cause]:
    cidr = str(block.get("cidr") or "")
    if not cidr:
        return [required(f"{path}.cidr")]
    errs = _cidr_errors(f"{path}.cidr", cidr)
    net = parse_cidr(cidr)
    if net is None:
        return errs
    for i, raw in enumerate(_l(block.get("except"))):
        p = f"{path}.except[{i}]"
        value = str(raw)
        errs += _cidr_errors(p, value)
        exc = parse_cidr(value)
        if exc is None:
            continue
        if exc.version != net.version or exc.network_address not in net or net.prefixlen >= exc.prefixlen:
            errs.append(invalid(p, value, "must be a strict subset of `cidr`"))
    return errs


def validate_peer(peer: Obj, path: str) -> list[Cause]:
    errs: list[Cause] = []
    count = 0
    for key in ("podSelector", "namespaceSelector"):
        if peer.get(key) is not None:
            count += 1
            errs += validate_label_selector(peer[key], f"{path}.{key}")
    if peer.get("ipBlock") is not None:
        count += 1
        errs += validate_ip_block(_d(peer["ipBlock"]), f"{path}.ipBlock")
    if count == 0:
        errs.append(required(path, "must specify a peer"))
    elif count > 1 and peer.get("ipBlock") is not None:
        errs.append(forbidden(path, "may not specify both ipBlock and another peer"))
    return errs


def validate_spec(spec: Obj) -> list[Cause]:
    errs = validate_label_selector(_d(spec.get("podSelector")), "spec.podSelector")
    for key, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(_dl(spec.get(key))):
            rp = f"spec.{key}[{i}]"
            for j, port in enumerate(_dl(rule.get("ports"))):
                errs += validate_port(port, f"{rp}.ports[{j}]")
            for j, peer in enumerate(_dl(rule.get(peers_key))):
                errs += validate_peer(peer, f"{rp}.{peers_key}[{j}]")
    types = _l(spec.get("policyTypes"))
    if len(types) > len(POLICY_TYPES):
        shown = "[]networking.PolicyType{" + ", ".join(go_quote(str(t)) for t in types) + "}"
        errs.append(invalid("spec.policyTypes", _Shown(shown), "may not specify more than two policyTypes"))
        return errs
    for i, kind in enumerate(types):
        if kind not in POLICY_TYPES:
            errs.append(not_supported(f"spec.policyTypes[{i}]", kind, POLICY_TYPES))
    return errs


def validate_network_policy(obj: Obj) -> list[Cause]:
    return validate_spec(_d(obj.get("spec")))
