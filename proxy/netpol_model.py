"""NetworkPolicy as netfilter rules: a pure planner from (policies, pods, namespaces) to the
``filter`` table text that ``iptables-restore --noflush`` applies in one transaction.

The chains (``P`` is the proxy's ``--iptables-chain-prefix``)::

    P-NWPLCY             jumped to first from FORWARD, Docker's DOCKER-USER and INPUT
      RELATED,ESTABLISHED          -> RETURN   (replies of allowed connections)
      -s POD_IP (egress-isolated)  -> P-NWPLCY-E-<hash>
      -d POD_IP (ingress-isolated) -> P-NWPLCY-I-<hash>
    P-NWPLCY-E-<hash>    one per pod isolated for egress: RETURN for every allowed
                         destination/port, then DROP
    P-NWPLCY-I-<hash>    one per pod isolated for ingress: RETURN for every allowed
                         source/port, then DROP

A RETURN from a pod's chain goes back to ``P-NWPLCY``, so a connection between two isolated
pods passes the sender's egress chain and then the receiver's ingress chain.  Nothing here
accepts: an allowed packet leaves the policy chains and meets the host's other rules (the CNI
firewall plugin, Docker, the proxy) as if there were no policy.

The rules match pod addresses only (``-s``/``-d`` POD_IP), so each host enforces the policies of
the traffic that crosses it, whichever node the pods run on.  Service traffic is judged after the
proxy's DNAT (the filter table sees the endpoint's pod IP), as in Kubernetes.  Traffic the host
itself sends to a pod (kubelet probes) leaves through OUTPUT, which has no policy jump: always
allowed.  Pod -> host traffic (minik-dns is a host process on the pod network's gateway) reaches
the host through INPUT, where the egress chains apply.

Semantics as in Kubernetes' documentation: a pod is isolated for ingress (egress) when a policy of
its namespace selects it and lists ``Ingress`` (``Egress``) in ``policyTypes``; what is allowed is
the union of all selecting policies' rules; a rule without peers allows every peer, without ports
every port; a peer's ``podSelector`` picks pods of the policy's namespace, ``namespaceSelector``
pods of the selected namespaces, both together pods matching both; ``ipBlock`` a CIDR minus its
``except`` CIDRs (expanded into the CIDRs that remain).  A named port is looked up, per pod, in the
container ports of the pod receiving the traffic (the isolated pod for ingress, each destination
pod for egress).  IPv4 only.

minik-dns is a host process, not a pod; the addresses of the ``kube-system/kube-dns`` Endpoints
stand in for pods of ``kube-system`` labelled as that object (``k8s-app=kube-dns``), as peers only,
so the usual allow-DNS rule that selects the kube-dns pods matches it (:func:`host_dns_peers`).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apimachinery.selectors import LabelSelector, selector_from_dict

Obj = dict[str, Any]

CHAIN_MAX = 28  # iptables' chain name limit (29 with the NUL)
MARK = "NWPLCY"
JUMP_COMMENT = "minik network policy, before minik service portals"  # see netpol.ensure_jumps
ANY = "0.0.0.0/0"
TERMINAL_PHASES = ("Succeeded", "Failed")
PROTOCOLS = ("TCP", "UDP", "SCTP")


def main_chain(prefix: str) -> str:
    return f"{prefix}-{MARK}"


def is_policy_chain(prefix: str, chain: str) -> bool:
    return chain == main_chain(prefix) or chain.startswith(main_chain(prefix) + "-")


def pod_chain(prefix: str, direction: str, pod: PodInfo) -> str:
    head = f"{main_chain(prefix)}-{direction}-"
    digest = base64.b32encode(
        hashlib.sha256(f"{pod.namespace}/{pod.name}/{pod.ip}".encode()).digest()
    ).decode()
    return head + digest[: max(8, min(16, CHAIN_MAX - len(head)))]


@dataclass(frozen=True)
class PodInfo:
    """What the planner needs of a pod: where it is, its labels and its named container ports."""

    namespace: str
    name: str
    ip: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    # (name, containerPort, protocol) of every named container port
    ports: tuple[tuple[str, int, str], ...] = ()

    def named_port(self, name: str, protocol: str) -> list[int]:
        return sorted({p for n, p, proto in self.ports if n == name and proto == protocol})


def _ipv4(value: Any) -> str | None:
    try:
        addr = ipaddress.ip_address(str(value))
    except ValueError:
        return None
    return str(addr) if addr.version == 4 else None


def pod_info(pod: Obj) -> PodInfo | None:
    """The pod as the planner sees it, or None for pods outside NetworkPolicy: no IPv4 address
    yet, host network (its address is the node's), or finished."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    if spec.get("hostNetwork") or status.get("phase") in TERMINAL_PHASES:
        return None
    ips = [status.get("podIP")] + [p.get("ip") for p in status.get("podIPs") or [] if isinstance(p, dict)]
    ip = next((a for a in (_ipv4(v) for v in ips if v) if a), None)
    if ip is None:
        return None
    ports = []
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for p in (c or {}).get("ports") or []:
            if isinstance(p, dict) and p.get("name") and isinstance(p.get("containerPort"), int):
                ports.append((str(p["name"]), int(p["containerPort"]), str(p.get("protocol") or "TCP")))
    return PodInfo(
        str(meta.get("namespace") or "default"),
        str(meta.get("name") or ""),
        ip,
        dict(meta.get("labels") or {}),
        tuple(sorted(set(ports))),
    )


def _selector(sel: Any) -> LabelSelector:
    """A policy's label selector.  A null (or otherwise not an object) selector is ``{}``, every
    pod, as in Kubernetes, where ``spec.podSelector`` is no pointer and a peer's null
    ``podSelector`` beside a ``namespaceSelector`` means every pod of those namespaces."""
    try:
        return selector_from_dict(sel if isinstance(sel, dict) else {})
    except Exception:  # an invalid selector (validation refuses them) matches nothing
        return LabelSelector.nothing()


def _v4_net(value: Any) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return None
    return net if isinstance(net, ipaddress.IPv4Network) else None


def except_cidrs(cidr: str, excepts: Iterable[str]) -> list[str]:
    """``cidr`` minus every ``except`` CIDR, as the CIDRs that remain (IPv4; others dropped)."""
    net = _v4_net(cidr)
    if net is None:
        return []
    remaining = [net]
    for raw in excepts:
        exc = _v4_net(raw)
        if exc is None:
            continue
        nxt: list[ipaddress.IPv4Network] = []
        for r in remaining:
            if exc.supernet_of(r):
                continue
            if r.supernet_of(exc):
                nxt.extend(r.address_exclude(exc))
            else:
                nxt.append(r)
        remaining = nxt
    return [str(n) for n in sorted(remaining)]


@dataclass(frozen=True)
class Peer:
    """One resolved peer: a pod (its IP; named ports resolve against it) or a CIDR."""

    pod: PodInfo | None = None
    cidr: str = ""

    @property
    def address(self) -> str:
        return self.pod.ip if self.pod is not None else self.cidr


@dataclass
class State:
    policies: list[Obj]
    pods: list[PodInfo]
    namespaces: Mapping[str, Mapping[str, str]]  # name -> labels
    # peers that are no pods: minik-dns, a host process, as kube-system/kube-dns (see host_dns_peers)
    host_peers: list[PodInfo] = field(default_factory=list)

    @property
    def peers(self) -> list[PodInfo]:
        return [*self.pods, *self.host_peers]

    def namespace_labels(self, name: str) -> Mapping[str, str]:
        # Kubernetes labels every namespace with its name; a namespace not (yet) in the cache
        # still has that one
        return self.namespaces.get(name) or {"kubernetes.io/metadata.name": name}


def _peers(state: State, policy_ns: str, peers: Any) -> list[Peer]:
    """The peers of a rule's ``from``/``to`` list; ``[Peer(cidr=ANY)]`` when it has none."""
    if not isinstance(peers, list) or not peers:
        return [Peer(cidr=ANY)]
    out: list[Peer] = []
    for peer in peers:
        if not isinstance(peer, dict):
            continue
        block = peer.get("ipBlock")
        if isinstance(block, dict):
            out += [
                Peer(cidr=c) for c in except_cidrs(str(block.get("cidr") or ""), block.get("except") or [])
            ]
            continue
        if peer.get("podSelector") is None and peer.get("namespaceSelector") is None:
            continue
        pod_sel = _selector(peer.get("podSelector"))  # absent or null with a namespaceSelector: every pod
        ns_sel = _selector(peer["namespaceSelector"]) if peer.get("namespaceSelector") is not None else None
        for pod in state.peers:
            if ns_sel is None:
                if pod.namespace != policy_ns:
                    continue
            elif not ns_sel.matches(state.namespace_labels(pod.namespace)):
                continue
            if pod_sel.matches(pod.labels):
                out.append(Peer(pod=pod))
    return out


def _port_match(protocol: str, ports: Iterable[int] | None = None, end: int | None = None) -> str:
    p = protocol.lower()
    if ports is None:
        return f"-p {p}"
    numbers = list(ports)
    if end is not None and len(numbers) == 1 and end > numbers[0]:
        return f"-p {p} -m {p} --dport {numbers[0]}:{end}"
    if len(numbers) == 1:
        return f"-p {p} -m {p} --dport {numbers[0]}"
    return f"-p {p} -m multiport --dports {','.join(str(n) for n in numbers)}"


def _allow_lines(
    chain: str,
    direction: str,
    target: PodInfo | None,
    peers: list[Peer],
    ports: Any,
    comment: str,
    all_pods: list[PodInfo],
) -> list[str]:
    """RETURN rules for one rule of a policy: every peer address x every port.  ``target`` is the
    ingress pod (named ports resolve against it); for egress (None) they resolve per peer pod."""
    flag = "-s" if direction == "I" else "-d"
    head = f"-A {chain} -m comment --comment {_quote(comment)}"
    lines: list[str] = []
    port_list = [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) and ports else None
    if port_list is None:
        for peer in peers:
            addr = "" if peer.address == ANY else f" {flag} {peer.address}"
            lines.append(f"{head}{addr} -j RETURN")
        return lines
    for entry in port_list:
        protocol = str(entry.get("protocol") or "TCP")
        if protocol not in PROTOCOLS:
            continue
        port = entry.get("port")
        end = entry.get("endPort") if isinstance(entry.get("endPort"), int) else None
        for peer in peers:
            addr = "" if peer.address == ANY else f" {flag} {peer.address}"
            if port is None:
                lines.append(f"{head}{addr} {_port_match(protocol)} -j RETURN")
            elif isinstance(port, int) and not isinstance(port, bool):
                lines.append(f"{head}{addr} {_port_match(protocol, [port], end)} -j RETURN")
            elif target is not None:  # ingress: the isolated pod's own named port
                numbers = target.named_port(str(port), protocol)
                if numbers:
                    lines.append(f"{head}{addr} {_port_match(protocol, numbers)} -j RETURN")
            else:  # egress: the named port of each destination pod
                for dest in _pods_of(peer, all_pods):
                    numbers = dest.named_port(str(port), protocol)
                    if numbers:
                        lines.append(f"{head} {flag} {dest.ip} {_port_match(protocol, numbers)} -j RETURN")
    return lines


def _pods_of(peer: Peer, all_pods: list[PodInfo]) -> list[PodInfo]:
    """The pods a peer stands for: itself, or the known pods inside its CIDR."""
    if peer.pod is not None:
        return [peer.pod]
    net = ipaddress.ip_network(peer.cidr)
    return [p for p in all_pods if ipaddress.ip_address(p.ip) in net]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _types(policy: Obj) -> list[str]:
    spec = policy.get("spec") or {}
    types = spec.get("policyTypes")
    if isinstance(types, list) and types:
        return [str(t) for t in types]
    return ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def _selects(policy: Obj, pod: PodInfo) -> bool:
    meta = policy.get("metadata") or {}
    if str(meta.get("namespace") or "default") != pod.namespace:
        return False
    return _selector((policy.get("spec") or {}).get("podSelector")).matches(pod.labels)


def _key(policy: Obj) -> str:
    meta = policy.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


@dataclass
class Plan:
    """The desired policy chains of the filter table: name -> its ``-A`` lines, in order."""

    prefix: str
    chains: dict[str, list[str]]
    isolated: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # ns/name -> (ingress, egress)

    def restore_text(self, stale: Iterable[str] = ()) -> str:
        """One transaction for the filter table: every policy chain declared (so flushed) and
        rewritten; ``stale`` chains (earlier pods' chains) flushed and deleted.  The main chain
        is written last, so the pod chains it jumps to exist when it changes."""
        main = main_chain(self.prefix)
        order = [c for c in sorted(self.chains) if c != main] + [main]
        gone = sorted(set(stale) - set(self.chains))
        lines = ["*filter"]
        lines += [f":{c} - [0:0]" for c in order]
        lines += [f":{c} - [0:0]" for c in gone]
        for c in order:
            lines += self.chains[c]
        lines += [f"-X {c}" for c in gone]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


def plan(state: State, prefix: str) -> Plan:
    main = main_chain(prefix)
    chains: dict[str, list[str]] = {
        main: [
            f"-A {main} -m comment --comment {_quote('replies of allowed connections')} "
            "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
        ]
    }
    policies = sorted((p for p in state.policies if isinstance(p, dict)), key=_key)
    ingress_jumps: list[str] = []
    egress_jumps: list[str] = []
    isolated: dict[str, tuple[bool, bool]] = {}
    for pod in sorted(state.pods, key=lambda p: (p.namespace, p.name, p.ip)):
        selecting = [p for p in policies if _selects(p, pod)]
        if not selecting:
            continue
        who = f"{pod.namespace}/{pod.name}"
        by_type = {t: [p for p in selecting if t in _types(p)] for t in ("Ingress", "Egress")}
        isolated[who] = (bool(by_type["Ingress"]), bool(by_type["Egress"]))
        if by_type["Egress"]:
            ch = pod_chain(prefix, "E", pod)
            lines = [f"-A {ch} -m comment --comment {_quote(who + ' to itself')} -d {pod.ip} -j RETURN"]
            for pol in by_type["Egress"]:
                ns = str((pol.get("metadata") or {}).get("namespace") or "default")
                for i, rule in enumerate((pol.get("spec") or {}).get("egress") or []):
                    if not isinstance(rule, dict):
                        continue
                    peers = _peers(state, ns, rule.get("to"))
                    comment = f"{_key(pol)} egress[{i}]"
                    lines += _allow_lines(ch, "E", None, peers, rule.get("ports"), comment, state.peers)
            lines.append(f"-A {ch} -m comment --comment {_quote(who + ' egress not allowed')} -j DROP")
            chains[ch] = _dedupe(lines)
            egress_jumps.append(
                f"-A {main} -s {pod.ip} -m comment --comment {_quote(who + ' egress')} -j {ch}"
            )
        if by_type["Ingress"]:
            ch = pod_chain(prefix, "I", pod)
            lines = [f"-A {ch} -m comment --comment {_quote(who + ' from itself')} -s {pod.ip} -j RETURN"]
            for pol in by_type["Ingress"]:
                ns = str((pol.get("metadata") or {}).get("namespace") or "default")
                for i, rule in enumerate((pol.get("spec") or {}).get("ingress") or []):
                    if not isinstance(rule, dict):
                        continue
                    peers = _peers(state, ns, rule.get("from"))
                    comment = f"{_key(pol)} ingress[{i}]"
                    lines += _allow_lines(ch, "I", pod, peers, rule.get("ports"), comment, state.pods)
            lines.append(f"-A {ch} -m comment --comment {_quote(who + ' ingress not allowed')} -j DROP")
            chains[ch] = _dedupe(lines)
            ingress_jumps.append(
                f"-A {main} -d {pod.ip} -m comment --comment {_quote(who + ' ingress')} -j {ch}"
            )
    chains[main] += egress_jumps + ingress_jumps
    return Plan(prefix, chains, isolated)


def _dedupe(lines: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for line in lines:
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out


def host_dns_peers(endpoints: Obj | None, pod_ips: set[str]) -> list[PodInfo]:
    """minik-dns as a peer: each address of the ``kube-system/kube-dns`` Endpoints that is no
    pod's stands for a pod of that namespace with the Endpoints' labels (``k8s-app=kube-dns``) and
    its named ports, so the usual allow-DNS rule (namespaceSelector kube-system + podSelector
    k8s-app=kube-dns) matches DNS traffic to the host process.  Never isolated itself."""
    if not isinstance(endpoints, dict):
        return []
    meta = endpoints.get("metadata") or {}
    # the Endpoints' labels (minik up copies the Service's); without any, kube-dns' usual one
    labels = dict(meta.get("labels") or {"k8s-app": "kube-dns"})
    out: list[PodInfo] = []
    for subset in endpoints.get("subsets") or []:
        if not isinstance(subset, dict):
            continue
        ports = tuple(
            sorted(
                (str(p["name"]), int(p["port"]), str(p.get("protocol") or "TCP"))
                for p in subset.get("ports") or []
                if isinstance(p, dict) and p.get("name") and isinstance(p.get("port"), int)
            )
        )
        for addr in subset.get("addresses") or []:
            ip = _ipv4((addr or {}).get("ip"))
            if ip is None or ip in pod_ips or ((addr or {}).get("targetRef") or {}).get("kind") == "Pod":
                continue
            out.append(
                PodInfo(
                    str(meta.get("namespace") or "kube-system"), f"{meta.get('name')}@{ip}", ip, labels, ports
                )
            )
    return out


def state_from_objects(
    policies: Iterable[Obj], pods: Iterable[Obj], namespaces: Iterable[Obj], dns_endpoints: Obj | None = None
) -> State:
    infos = [i for i in (pod_info(p) for p in pods) if i is not None]
    ns_labels = {
        str((n.get("metadata") or {}).get("name")): dict((n.get("metadata") or {}).get("labels") or {})
        for n in namespaces
    }
    host = host_dns_peers(dns_endpoints, {i.ip for i in infos})
    return State(list(policies), infos, ns_labels, host)
