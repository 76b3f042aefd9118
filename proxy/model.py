"""The proxy's pure decisions: which service ports exist, which endpoints back them, which
endpoint a connection goes to, and which iptables rules the node needs.

Nothing here does I/O; :mod:`proxy.proxier` feeds these functions from the informer caches and
applies their answers to sockets and netfilter.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

SERVICES_CHAIN = "MINIK-SERVICES"  # nat: VIP:port -> REDIRECT to a local listener
REJECT_CHAIN = "MINIK-REJECT"  # filter: VIP:port of a Service without endpoints -> REJECT
FORWARD_CHAIN = "MINIK-FORWARD"  # filter, from DOCKER-USER: pod CIDR -> pod CIDR is accepted
POSTROUTING_CHAIN = "MINIK-POSTROUTING"  # nat, from POSTROUTING: pod -> pod is never masqueraded
NAT_JUMPS = ("PREROUTING", "OUTPUT")
FILTER_JUMPS = ("INPUT", "FORWARD", "OUTPUT")
DOCKER_USER = "DOCKER-USER"
PROTOCOLS = ("TCP", "UDP")
DEFAULT_AFFINITY_SECONDS = 10800


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service as this node serves it."""

    namespace: str
    name: str
    port_name: str
    protocol: str
    port: int
    cluster_ip: str | None  # None: headless or ExternalName (no VIP)
    node_port: int | None
    load_balancer: bool
    affinity_seconds: int | None  # ClientIP session affinity timeout, None for no affinity

    @property
    def key(self) -> str:
        return (
            f"{self.namespace}/{self.name}:{self.port_name}"
            if self.port_name
            else f"{self.namespace}/{self.name}"
        )

    @property
    def service_key(self) -> str:
        return f"{self.namespace}/{self.name}"


def service_ports(svc: Obj) -> list[ServicePort]:
    """The TCP and UDP ports of ``svc`` the proxy serves (ExternalName and headless Services have
    none; SCTP ports are left out)."""
    meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
    stype = spec.get("type") or "ClusterIP"
    if stype == "ExternalName":
        return []
    cluster_ip = spec.get("clusterIP") or None
    if cluster_ip == "None":
        return []
    affinity: int | None = None
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        affinity = int(cfg) if cfg else DEFAULT_AFFINITY_SECONDS
    out = []
    for p in spec.get("ports") or []:
        protocol = p.get("protocol") or "TCP"
        if protocol not in PROTOCOLS or not p.get("port"):
            continue
        out.append(
            ServicePort(
                namespace=meta.get("namespace") or "default",
                name=meta.get("name") or "",
                port_name=p.get("name") or "",
                protocol=protocol,
                port=int(p["port"]),
                cluster_ip=cluster_ip,
                node_port=int(p["nodePort"])
                if p.get("nodePort") and stype in ("NodePort", "LoadBalancer")
                else None,
                load_balancer=stype == "LoadBalancer",
                affinity_seconds=affinity,
            )
        )
    return out


def ready_endpoints(
    endpoints: Obj | list[Obj] | None, port_name: str, protocol: str = "TCP"
) -> list[tuple[str, int]]:
    """The ready ``(ip, port)`` pairs for the service port named ``port_name``, merged over
    all of a Service's EndpointSlices (a list, as kube-proxy reads them) or read from its
    Endpoints object.  Both controllers name endpoint ports after the service's ports and
    resolve named targetPorts to numbers."""
    if not endpoints:
        return []
    out: list[tuple[str, int]] = []
    if isinstance(endpoints, list):
        for s in endpoints:
            ports = _matching_ports(s.get("ports"), port_name, protocol)
            for ep in s.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue  # unset means ready, as discovery/v1 documents
                for ip in (ep.get("addresses") or [])[:1]:
                    out += [(ip, int(p["port"])) for p in ports]
        return sorted(set(out))
    for subset in endpoints.get("subsets") or []:
        ports = _matching_ports(subset.get("ports"), port_name, protocol)
        for addr in subset.get("addresses") or []:
            ip = addr.get("ip")
            if not ip:
                continue
            for p in ports:
                out.append((ip, int(p["port"])))
    return sorted(set(out))


SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def slice_service_key(obj: Obj) -> str | None:
    """``namespace/service`` of an IPv4 EndpointSlice (its ``kubernetes.io/service-name``
    label; any controller's slices count, as kube-proxy reads them), None for other slices."""
    md = obj.get("metadata") or {}
    service = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service or obj.get("addressType", "IPv4") != "IPv4":
        return None
    return f"{md.get('namespace') or ''}/{service}"


def _matching_ports(ports: Any, port_name: str, protocol: str) -> list[Obj]:
    return [
        p
        for p in ports or []
        if (p.get("name") or "") == port_name
        and (p.get("protocol") or "TCP") == protocol
        and p.get("port") is not None
    ]


class EndpointPicker:
    """Round-robin over a service port's endpoints, with ClientIP session affinity.

    ``candidates(client_ip)`` gives the endpoints in the order a connection should try them: the
    affine endpoint first (while its session is fresh), then round-robin.  ``connected`` records
    which one worked, so the session sticks to it; a dead endpoint the caller skipped is simply
    not recorded.
    """

    def __init__(
        self, affinity_seconds: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.endpoints: list[tuple[str, int]] = []
        self.affinity_seconds = affinity_seconds
        self._clock = clock
        self._next = 0
        self._sessions: dict[str, tuple[tuple[str, int], float]] = {}

    def update(self, endpoints: Iterable[tuple[str, int]], affinity_seconds: int | None = None) -> None:
        new = sorted(set(endpoints))
        if new != self.endpoints:
            self.endpoints = new
            self._next = self._next % len(new) if new else 0
            alive = set(new)
            self._sessions = {c: s for c, s in self._sessions.items() if s[0] in alive}
        if affinity_seconds != self.affinity_seconds:
            self.affinity_seconds = affinity_seconds
            if affinity_seconds is None:
                self._sessions.clear()

    def candidates(self, client_ip: str) -> list[tuple[str, int]]:
        if not self.endpoints:
            return []
        n = len(self.endpoints)
        start = self._next % n
        self._next = (start + 1) % n
        order = [self.endpoints[(start + i) % n] for i in range(n)]
        if self.affinity_seconds is not None:
            session = self._sessions.get(client_ip)
            if session is not None:
                endpoint, last = session
                if self._clock() - last <= self.affinity_seconds and endpoint in order:
                    order.remove(endpoint)
                    order.insert(0, endpoint)
                    self._next = start  # a sticky connection does not move the round-robin
                else:
                    del self._sessions[client_ip]
        return order

    def connected(self, client_ip: str, endpoint: tuple[str, int]) -> None:
        if self.affinity_seconds is not None:
            self._sessions[client_ip] = (endpoint, self._clock())

    def expire(self) -> None:
        if self.affinity_seconds is None:
            return
        now = self._clock()
        self._sessions = {c: s for c, s in self._sessions.items() if now - s[1] <= self.affinity_seconds}


@dataclass
class RulePlan:
    """What the node's netfilter tables should hold for the proxy."""

    # (vip, port, protocol, to_port, comment) and (vip, port, protocol, comment)
    redirects: list[tuple[str, int, str, int, str]] = field(default_factory=list)
    rejects: list[tuple[str, int, str, str]] = field(default_factory=list)
    pod_cidrs: list[str] = field(default_factory=list)  # every node's podCIDR
    services_chain: str = SERVICES_CHAIN
    reject_chain: str = REJECT_CHAIN
    forward_chain: str = FORWARD_CHAIN
    postrouting_chain: str = POSTROUTING_CHAIN

    def _pod_pair_rules(self, chain: str, comment: str) -> list[str]:
        """An ACCEPT in ``chain`` for traffic between each two different pod CIDRs."""
        cidrs = sorted(set(self.pod_cidrs))
        return [
            f'-A {chain} -s {a} -d {b} -m comment --comment "{comment}" -j ACCEPT'
            for a in cidrs
            for b in cidrs
            if a != b
        ]

    def nat_restore(self) -> str:
        lines = ["*nat", f":{self.services_chain} - [0:0]", f":{self.postrouting_chain} - [0:0]"]
        for vip, port, proto, to_port, comment in sorted(self.redirects):
            p = proto.lower()
            lines.append(
                f"-A {self.services_chain} -d {vip}/32 -p {p} -m comment --comment {_quote(comment)} "
                f"-m {p} --dport {port} -j REDIRECT --to-ports {to_port}"
            )
        lines += self._pod_pair_rules(self.postrouting_chain, "pod to pod: no masquerade")
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    def filter_restore(self, with_forward: bool = True) -> str:
        lines = ["*filter", f":{self.reject_chain} - [0:0]"]
        if with_forward:
            lines.append(f":{self.forward_chain} - [0:0]")
        for vip, port, proto, comment in sorted(self.rejects):
            p = proto.lower()
            how = "tcp-reset" if p == "tcp" else "icmp-port-unreachable"
            lines.append(
                f"-A {self.reject_chain} -d {vip}/32 -p {p} "
                f"-m comment --comment {_quote(comment + ' has no endpoints')} "
                f"-m {p} --dport {port} -j REJECT --reject-with {how}"
            )
        if with_forward:
            lines += self._pod_pair_rules(self.forward_chain, "pod network across nodes")
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace('"', "") + '"'


def chain_names(prefix: str = "MINIK") -> tuple[str, str]:
    """The nat and filter chain names for a chain prefix (tests use their own prefix)."""
    return f"{prefix}-SERVICES", f"{prefix}-REJECT"


def pod_network_chain_names(prefix: str = "MINIK") -> tuple[str, str]:
    """The filter chain jumped to from DOCKER-USER and the nat chain jumped to from POSTROUTING."""
    return f"{prefix}-FORWARD", f"{prefix}-POSTROUTING"


def plan_rules(
    ports: Iterable[tuple[ServicePort, int, bool]],
    prefix: str = "MINIK",
    pod_cidrs: Iterable[str] = (),
) -> RulePlan:
    """Rules for ``(service port, local listener port, has endpoints)`` triples: a VIP with ready
    endpoints is redirected to its listener; one without is rejected at once (a TCP reset, an ICMP
    port unreachable for UDP), so a client is refused instead of hanging.  ``pod_cidrs`` (all
    nodes' podCIDRs) become ACCEPT rules between pod networks (Docker isolates its bridges from
    each other) and exemptions from Docker's masquerading, so pod-to-pod traffic keeps its source."""
    services_chain, reject_chain = chain_names(prefix)
    forward_chain, postrouting_chain = pod_network_chain_names(prefix)
    plan = RulePlan(
        pod_cidrs=sorted(set(pod_cidrs)),
        services_chain=services_chain,
        reject_chain=reject_chain,
        forward_chain=forward_chain,
        postrouting_chain=postrouting_chain,
    )
    for sp, listen_port, has_endpoints in ports:
        if not sp.cluster_ip:
            continue
        if has_endpoints:
            plan.redirects.append((sp.cluster_ip, sp.port, sp.protocol, listen_port, sp.key))
        else:
            plan.rejects.append((sp.cluster_ip, sp.port, sp.protocol, sp.key))
    return plan


def node_pod_cidrs(nodes: Iterable[Obj]) -> list[str]:
    """Every node's pod CIDRs (``spec.podCIDRs``, else ``spec.podCIDR``), IPv4 only."""
    out: set[str] = set()
    for node in nodes:
        spec = node.get("spec") or {}
        for cidr in spec.get("podCIDRs") or [spec.get("podCIDR")]:
            if cidr and ":" not in cidr:
                out.add(cidr)
    return sorted(out)


def in_cidrs(ip: str, cidrs: Iterable[str]) -> bool:
    """Whether ``ip`` lies in one of ``cidrs`` (``--nodeport-addresses``); no CIDRs: every address."""
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    if not nets:
        return True
    addr = ipaddress.ip_address(ip)
    return any(addr in n for n in nets)


def node_addresses(node: Obj | None) -> list[str]:
    """The node's InternalIP/ExternalIP addresses, as LoadBalancer ingress and NodePort listeners."""
    if not node:
        return []
    out = []
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") in ("InternalIP", "ExternalIP") and a.get("address") and a["address"] not in out:
            out.append(a["address"])
    return out


def merged_ingress(current: list[Obj], mine: Iterable[str], remove: Iterable[str] = ()) -> list[Obj]:
    """``status.loadBalancer.ingress`` with this node's addresses added (and ``remove`` dropped),
    keeping what other nodes' proxies wrote."""
    drop = set(remove)
    ips = [i.get("ip") for i in current if i.get("ip") and i.get("ip") not in drop]
    for ip in mine:
        if ip not in ips and ip not in drop:
            ips.append(ip)
    others = [i for i in current if not i.get("ip")]
    return [{"ip": ip} for ip in ips if ip] + others
