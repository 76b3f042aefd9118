"""The iptables mode's pure planner: a snapshot of the node's Services and endpoints in, the
proxy's netfilter chains out (``{table: {chain: [rule, ...]}}``), built the way kube-proxy's
iptables mode builds them (``pkg/proxy/iptables/proxier.go``), with every chain name starting
with the proxy's chain prefix ``P``:

nat
  ``P-SERVICES`` (from PREROUTING and OUTPUT): one rule per ClusterIP, external IP and
  LoadBalancer ingress IP of a service port with endpoints; last, local destinations go to
  ``P-NODEPORTS``.
  ``P-NODEPORTS``: one rule per NodePort -> ``P-EXT-<hash>``.
  ``P-SVC-<hash>``: off-cluster sources are marked for masquerade, then one endpoint is picked
  with ``statistic --mode random --probability 1/(n-i)`` (ClientIP affinity: ``recent --rcheck``
  rules first) -> ``P-SEP-<hash>``.
  ``P-SVL-<hash>``: the same over this node's endpoints only (``externalTrafficPolicy: Local``).
  ``P-EXT-<hash>``: NodePort and external traffic: masquerade (Cluster policy) or keep the
  source and use local endpoints (Local policy; pods and the node itself still use the cluster).
  ``P-SEP-<hash>``: hairpin masquerade (an endpoint reaching itself) and the DNAT.
  ``P-MARK-MASQ`` sets the masquerade bit; ``P-POSTROUTING`` (from POSTROUTING) masquerades
  marked packets first (``P-MASQUERADE``), then exempts pod-to-pod traffic between nodes' pod
  CIDRs from Docker's masquerading.
filter
  ``P-SERVICES`` (from FORWARD and OUTPUT): REJECT for service ports without endpoints.
  ``P-EXTERNAL-SERVICES`` (from INPUT and FORWARD): REJECT NodePorts without endpoints, DROP
  external traffic of a Local-policy service without local endpoints.
  ``P-FIREWALL`` (from INPUT): drops martian connections to 127.0.0.0/8 (``route_localnet`` is
  on so that NodePorts answer on 127.0.0.1, as kube-proxy had it).
  ``P-FORWARD`` (from DOCKER-USER): accepts marked, DNATed and established service traffic past
  Docker's DROP policy, and traffic between nodes' pod CIDRs.

Chain names carry a hash of the service port (and endpoint), so a change to one Service
rewrites only its own chains (see :mod:`proxy.kernel`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from .model import ServicePort

MASQ_MARK = "0x4000/0x4000"  # kube-proxy's --masquerade-bit 14
CHAIN_MAX = 28  # iptables' chain name limit (29 with the NUL)
Tables = dict[str, dict[str, list[str]]]


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    local: bool = False  # on this node


@dataclass(frozen=True)
class ServiceState:
    """One service port as the iptables mode needs it."""

    sp: ServicePort
    endpoints: tuple[Endpoint, ...] = ()
    external_ips: tuple[str, ...] = ()  # spec.externalIPs and status.loadBalancer.ingress IPs
    external_local: bool = False  # externalTrafficPolicy: Local
    internal_local: bool = False  # internalTrafficPolicy: Local


@dataclass(frozen=True)
class Chains:
    """The fixed chain names of one prefix."""

    prefix: str

    @property
    def services(self) -> str:
        return f"{self.prefix}-SERVICES"

    @property
    def nodeports(self) -> str:
        return f"{self.prefix}-NODEPORTS"

    @property
    def external_services(self) -> str:
        return f"{self.prefix}-EXTERNAL-SERVICES"

    @property
    def mark_masq(self) -> str:
        return f"{self.prefix}-MARK-MASQ"

    @property
    def mark_offcluster(self) -> str:
        return f"{self.prefix}-MARK-OFFCLUSTER"

    @property
    def masquerade(self) -> str:
        return f"{self.prefix}-MASQUERADE"

    @property
    def postrouting(self) -> str:
        return f"{self.prefix}-POSTROUTING"

    @property
    def forward(self) -> str:
        return f"{self.prefix}-FORWARD"

    @property
    def firewall(self) -> str:
        return f"{self.prefix}-FIREWALL"


def _hash(prefix: str, kind: str, *parts: str) -> str:
    head = f"{prefix}-{kind}-"
    digest = base64.b32encode(hashlib.sha256("".join(parts).encode()).digest()).decode()
    return head + digest[: max(8, min(16, CHAIN_MAX - len(head)))]


def svc_chain(prefix: str, sp: ServicePort) -> str:
    return _hash(prefix, "SVC", sp.key, sp.protocol)


def svl_chain(prefix: str, sp: ServicePort) -> str:
    return _hash(prefix, "SVL", sp.key, sp.protocol)


def ext_chain(prefix: str, sp: ServicePort) -> str:
    return _hash(prefix, "EXT", sp.key, sp.protocol)


def sep_chain(prefix: str, sp: ServicePort, ep: Endpoint) -> str:
    return _hash(prefix, "SEP", sp.key, sp.protocol, f"{ep.ip}:{ep.port}")


def _q(text: str) -> str:
    return '"' + text.replace('"', "") + '"'


def collapse(cidrs: Iterable[str]) -> list[str]:
    nets = [ipaddress.IPv4Network(c, strict=False) for c in cidrs if c and ":" not in c]
    return [str(n) for n in ipaddress.collapse_addresses(nets)]


def _pick(
    rules: list[str], chain: str, prefix: str, s: ServiceState, eps: list[Endpoint], comment: str
) -> None:
    """The endpoint choice: affinity first, then random with equal odds."""
    seps = [sep_chain(prefix, s.sp, ep) for ep in eps]
    if s.sp.affinity_seconds is not None:
        for ep, sep in zip(eps, seps, strict=True):
            rules.append(
                f"-A {chain} -m comment --comment {_q(f'{comment} -> {ep.ip}:{ep.port}')} "
                f"-m recent --name {sep} --mask 255.255.255.255 --rsource "
                f"--rcheck --seconds {s.sp.affinity_seconds} --reap -j {sep}"
            )
    n = len(eps)
    for i, (ep, sep) in enumerate(zip(eps, seps, strict=True)):
        stat = f"-m statistic --mode random --probability {1 / (n - i):0.10f} " if i < n - 1 else ""
        rules.append(
            f"-A {chain} -m comment --comment {_q(f'{comment} -> {ep.ip}:{ep.port}')} {stat}-j {sep}"
        )


def plan(
    services: Iterable[ServiceState],
    prefix: str = "MINIK",
    cluster_cidrs: Iterable[str] = (),
    pod_cidrs: Iterable[str] = (),
    nodeport_ips: list[str] | None = None,
    docker_user: bool = True,
) -> Tables:
    """Every chain of the iptables mode for this snapshot.

    ``cluster_cidrs``: pod source addresses (``--cluster-cidr``, else every Node's podCIDR);
    traffic to a ClusterIP from elsewhere is masqueraded, pod traffic keeps its source.
    ``pod_cidrs``: every Node's podCIDR (the pod-network chains).  ``nodeport_ips``: the node
    addresses NodePorts answer on (``--nodeport-addresses``), None for every local address.
    ``docker_user``: whether ``P-FORWARD`` (jumped from Docker's DOCKER-USER) is wanted."""
    c = Chains(prefix)
    cluster = collapse(cluster_cidrs)
    nat: dict[str, list[str]] = {
        c.services: [],
        c.nodeports: [],
        c.mark_masq: [f"-A {c.mark_masq} -j MARK --or-mark {MASQ_MARK.split('/')[0]}"],
        c.masquerade: [
            f"-A {c.masquerade} -j MARK --xor-mark {MASQ_MARK.split('/')[0]}",
            f"-A {c.masquerade} -m comment --comment {_q('service traffic requiring SNAT')} "
            "-j MASQUERADE --random-fully",
        ],
        c.postrouting: [f"-A {c.postrouting} -m mark --mark {MASQ_MARK} -j {c.masquerade}"],
    }
    filt: dict[str, list[str]] = {
        c.services: [],
        c.external_services: [],
        c.firewall: [
            f"-A {c.firewall} ! -s 127.0.0.0/8 -d 127.0.0.0/8 "
            f"-m comment --comment {_q('block incoming localnet connections')} "
            "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
        ],
    }
    if len(cluster) > 1:
        nat[c.mark_offcluster] = [f"-A {c.mark_offcluster} -s {cidr} -j RETURN" for cidr in cluster] + [
            f"-A {c.mark_offcluster} -j {c.mark_masq}"
        ]
    nodeport_jumps: list[str] = []
    for s in sorted(services, key=lambda s: (s.sp.key, s.sp.protocol)):
        for table, ch, rule in _service(s, prefix, tuple(cluster)):
            (nat if table == "nat" else filt).setdefault(ch, []).append(rule)
    # NodePorts: on every local address, or on the --nodeport-addresses ones
    if nodeport_ips is None:
        nodeport_jumps.append(
            f"-A {c.services} -m comment --comment {_q('service nodeports; NOTE: this must be the last rule in this chain')} "
            f"-m addrtype --dst-type LOCAL -j {c.nodeports}"
        )
    else:
        nodeport_jumps += [
            f"-A {c.services} -d {ip}/32 -m comment --comment {_q('service nodeports')} -j {c.nodeports}"
            for ip in nodeport_ips
        ]
    nat[c.services] += nodeport_jumps
    # the pod network: pod-to-pod between nodes' pod CIDRs keeps its source and passes Docker
    pods = sorted(set(c_ for c_ in pod_cidrs if c_ and ":" not in c_))
    pairs = [(a, b) for a in pods for b in pods if a != b]
    nat[c.postrouting] += [
        f"-A {c.postrouting} -s {a} -d {b} -m comment --comment {_q('pod to pod: no masquerade')} -j ACCEPT"
        for a, b in pairs
    ]
    if docker_user:
        filt[c.forward] = [
            f"-A {c.forward} -m comment --comment {_q('service traffic marked for masquerade')} "
            f"-m mark --mark {MASQ_MARK} -j ACCEPT",
            f"-A {c.forward} -m comment --comment {_q('service traffic (DNAT) and its replies')} "
            "-m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT",
        ] + [
            f"-A {c.forward} -s {a} -d {b} -m comment --comment {_q('pod network across nodes')} -j ACCEPT"
            for a, b in pairs
        ]
    return {"nat": nat, "filter": filt}


# jumps from the built-in chains (and Docker's DOCKER-USER) into the fixed chains
def jumps(prefix: str) -> list[tuple[str, str, str, bool]]:
    """``(table, from, to, first)``; ``first``: kept in front of Docker's rules (Docker inserts its
    own at the top when it creates a network), behind only NetworkPolicy and other proxies' jumps."""
    c = Chains(prefix)
    return [
        ("nat", "PREROUTING", c.services, True),
        ("nat", "OUTPUT", c.services, True),
        ("nat", "POSTROUTING", c.postrouting, True),
        ("filter", "INPUT", c.external_services, True),
        ("filter", "INPUT", c.firewall, True),
        ("filter", "FORWARD", c.services, True),
        ("filter", "FORWARD", c.external_services, True),
        ("filter", "OUTPUT", c.services, True),
        ("filter", "DOCKER-USER", c.forward, True),
    ]


def restore_text(
    desired: Tables,
    applied: dict[tuple[str, str], list[str]] | None,
    stale: dict[str, set[str]] | None = None,
) -> tuple[str, int]:
    """``iptables-restore --noflush`` input bringing the kernel from ``applied`` (what the last
    sync wrote; None: unknown, write everything) to ``desired``: only chains whose rules changed
    are declared (a declaration flushes the chain) and rewritten; chains no longer wanted (and
    ``stale`` ones found in the kernel) are flushed and deleted in the same transaction.
    Returns the text and the number of chains it rewrites."""
    out: list[str] = []
    written = 0
    for table, chains in desired.items():
        changed = [ch for ch, rules in chains.items() if applied is None or applied.get((table, ch)) != rules]
        gone = {ch for (t, ch) in (applied or {}) if t == table and ch not in chains}
        gone |= {ch for ch in (stale or {}).get(table, set()) if ch not in chains}
        if not changed and not gone:
            continue
        out.append(f"*{table}")
        out += [f":{ch} - [0:0]" for ch in changed]
        out += [f":{ch} - [0:0]" for ch in sorted(gone)]
        for ch in changed:
            out += chains[ch]
        out += [f"-X {ch}" for ch in sorted(gone)]
        out.append("COMMIT")
        written += len(changed)
    return ("\n".join(out) + "\n" if out else ""), written


@functools.lru_cache(maxsize=65536)
def _service(s: ServiceState, prefix: str, cluster: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """One service port's rules as ``(table, chain, rule)``; cached, since a sync re-plans every
    service and most have not changed (a Service's state is an immutable value)."""
    c = Chains(prefix)
    nat: dict[str, list[str]] = {c.services: [], c.nodeports: []}
    filt: dict[str, list[str]] = {c.services: [], c.external_services: []}
    empty: tuple[tuple[str, str, str], ...] = ()
    sp = s.sp
    if not sp.cluster_ip:
        return empty
    p = sp.protocol.lower()
    name = sp.key
    cluster_eps = [ep for ep in s.endpoints if ep.local or not s.internal_local]
    local_eps = [ep for ep in s.endpoints if ep.local]
    has_external = bool(sp.node_port or s.external_ips)
    svc, svl, ext = svc_chain(prefix, sp), svl_chain(prefix, sp), ext_chain(prefix, sp)
    ext_has_eps = bool(local_eps if s.external_local else cluster_eps)
    # -- the ClusterIP
    dst = f"-d {sp.cluster_ip}/32 -p {p} -m {p} --dport {sp.port}"
    if cluster_eps:
        nat[c.services].append(
            f"-A {c.services} {dst} -m comment --comment {_q(name + ' cluster IP')} -j {svc}"
        )
    else:
        filt[c.services].append(
            f"-A {c.services} {dst} -m comment --comment {_q(name + ' has no endpoints')} "
            "-j REJECT --reject-with icmp-port-unreachable"
        )
    # -- external IPs and LoadBalancer ingress
    for ip in s.external_ips:
        edst = f"-d {ip}/32 -p {p} -m {p} --dport {sp.port}"
        if ext_has_eps:
            nat[c.services].append(
                f"-A {c.services} {edst} -m comment --comment {_q(name + ' external IP')} -j {ext}"
            )
        elif cluster_eps:  # Local policy, no local endpoint: external traffic is dropped
            filt[c.external_services].append(
                f"-A {c.external_services} {edst} "
                f"-m comment --comment {_q(name + ' has no local endpoints')} -j DROP"
            )
        else:
            filt[c.external_services].append(
                f"-A {c.external_services} {edst} "
                f"-m comment --comment {_q(name + ' has no endpoints')} "
                "-j REJECT --reject-with icmp-port-unreachable"
            )
    # -- the NodePort
    if sp.node_port:
        ndst = f"-p {p} -m {p} --dport {sp.node_port}"
        if ext_has_eps:
            nat[c.nodeports].append(f"-A {c.nodeports} {ndst} -m comment --comment {_q(name)} -j {ext}")
        else:
            why, verdict = (
                ("has no local endpoints", "DROP")
                if cluster_eps
                else ("has no endpoints", "REJECT --reject-with icmp-port-unreachable")
            )
            filt[c.external_services].append(
                f"-A {c.external_services} -m addrtype --dst-type LOCAL {ndst} "
                f"-m comment --comment {_q(name + ' ' + why)} -j {verdict}"
            )
    # -- per-service chains
    if cluster_eps:
        rules = []
        if len(cluster) == 1:
            rules.append(
                f"-A {svc} ! -s {cluster[0]} {dst} "
                f"-m comment --comment {_q(name + ' cluster IP')} -j {c.mark_masq}"
            )
        elif cluster:
            rules.append(
                f"-A {svc} {dst} -m comment --comment {_q(name + ' cluster IP')} -j {c.mark_offcluster}"
            )
        _pick(rules, svc, prefix, s, cluster_eps, name)
        nat[svc] = rules
    if has_external and ext_has_eps:
        if s.external_local:
            rules = [
                f"-A {ext} -s {cidr} "
                f"-m comment --comment {_q(f'pod traffic for {name} external destinations')} -j {svc}"
                for cidr in cluster
                if cluster_eps
            ]
            if cluster_eps:
                rules += [
                    f"-A {ext} -m comment --comment {_q(f'masquerade LOCAL traffic for {name} external destinations')} "
                    f"-m addrtype --src-type LOCAL -j {c.mark_masq}",
                    f"-A {ext} -m comment --comment {_q(f'route LOCAL traffic for {name} external destinations')} "
                    f"-m addrtype --src-type LOCAL -j {svc}",
                ]
            rules.append(f"-A {ext} -j {svl}")
            nat[ext] = rules
            svl_rules: list[str] = []
            _pick(svl_rules, svl, prefix, s, local_eps, name)
            nat[svl] = svl_rules
        else:
            nat[ext] = [
                f"-A {ext} -m comment --comment {_q(f'masquerade traffic for {name} external destinations')} "
                f"-j {c.mark_masq}",
                f"-A {ext} -j {svc}",
            ]
    used = set(cluster_eps) | (set(local_eps) if s.external_local and has_external else set())
    for ep in sorted(used, key=lambda e: (e.ip, e.port)):
        sep = sep_chain(prefix, sp, ep)
        recent = (
            f"-m recent --set --name {sep} --mask 255.255.255.255 --rsource "
            if sp.affinity_seconds is not None
            else ""
        )
        nat[sep] = [
            f"-A {sep} -s {ep.ip}/32 -m comment --comment {_q(name)} -j {c.mark_masq}",
            f"-A {sep} -p {p} -m comment --comment {_q(name)} {recent}"
            f"-m {p} -j DNAT --to-destination {ep.ip}:{ep.port}",
        ]
    return tuple(("nat", ch, r) for ch, rules in nat.items() for r in rules) + tuple(
        ("filter", ch, r) for ch, rules in filt.items() for r in rules
    )
