"""The iptables mode (``minik-proxy --mode iptables``, the default): Service traffic is DNATed by
the kernel, as kube-proxy's iptables mode does it; no byte passes through this process.

:class:`KernelProxier` shares the userspace proxier's informers, work queue and LoadBalancer
status handling; ``reconcile(key)`` only turns one Service (and its endpoints) into
:class:`~proxy.kernel_rules.ServiceState` entries, and the single ``rules`` key plans every chain
(:func:`proxy.kernel_rules.plan`) and hands them to :class:`KernelRules`, which writes the
changed chains with one ``iptables-restore --noflush`` per sync (a full rewrite at start, after an
error and every ``FULL_SYNC_SECONDS``; chains of the prefix nobody wants are deleted then).

UDP: when an endpoint of a UDP service port goes away, its conntrack entries are deleted
(``conntrack -D``), and so are a service's entries when it gets its first endpoint (a client
that was refused would otherwise keep a stale entry), as kube-proxy does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from pathlib import Path
from typing import Any

from apimachinery import tracing
from apimachinery.bridgenf import ensure_bridge_netfilter
from apimachinery.client import Client

from . import iptables as ipt
from . import kernel_rules as kr
from . import model
from .proxier import RESYNC_SECONDS, RULES_KEY, SERVICE_INDEX, Proxier

log = logging.getLogger(__name__)

FULL_SYNC_SECONDS = 300.0
ROUTE_LOCALNET = Path("/proc/sys/net/ipv4/conf/all/route_localnet")
Obj = dict[str, Any]


def service_states(svc: Obj, endpoints: Obj | list[Obj] | None, node_name: str) -> list[kr.ServiceState]:
    """The iptables mode's view of one Service: each port with its ready endpoints (marked
    local when on ``node_name``), external IPs and traffic policies."""
    spec = svc.get("spec") or {}
    external = list(spec.get("externalIPs") or [])
    for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if ing.get("ip") and ing["ip"] not in external and spec.get("type") == "LoadBalancer":
            external.append(ing["ip"])
    external = [ip for ip in external if is_ipv4(ip)]
    stype = spec.get("type") or "ClusterIP"
    out = []
    for sp in model.service_ports(svc):
        eps = tuple(
            kr.Endpoint(ip, port, local)
            for ip, port, local in endpoints_with_nodes(endpoints, sp.port_name, sp.protocol, node_name)
        )
        out.append(
            kr.ServiceState(
                sp=sp,
                endpoints=eps,
                external_ips=tuple(external),
                external_local=spec.get("externalTrafficPolicy") == "Local"
                and stype in ("NodePort", "LoadBalancer"),
                internal_local=spec.get("internalTrafficPolicy") == "Local",
            )
        )
    return out


def endpoints_with_nodes(
    endpoints: Obj | list[Obj] | None, port_name: str, protocol: str, node_name: str
) -> list[tuple[str, int, bool]]:
    """Like :func:`proxy.model.ready_endpoints`, with whether each endpoint is on this node."""
    if not endpoints:
        return []
    out: set[tuple[str, int, bool]] = set()
    if isinstance(endpoints, list):
        for s in endpoints:
            ports = model._matching_ports(s.get("ports"), port_name, protocol)
            for ep in s.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                local = bool(node_name) and ep.get("nodeName") == node_name
                for ip in (ep.get("addresses") or [])[:1]:
                    if is_ipv4(ip):
                        out |= {(ip, int(p["port"]), local) for p in ports}
    else:
        for subset in endpoints.get("subsets") or []:
            ports = model._matching_ports(subset.get("ports"), port_name, protocol)
            for addr in subset.get("addresses") or []:
                if is_ipv4(addr.get("ip")):
                    local = bool(node_name) and addr.get("nodeName") == node_name
                    out |= {(addr["ip"], int(p["port"]), local) for p in ports}
    return sorted(out)


def is_ipv4(ip: Any) -> bool:
    """Only well-formed IPv4 addresses reach the rules: one bad address in a restore input
    would fail the whole sync, for every Service."""
    try:
        ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    return True


def set_sysctl(path: Path, value: str, why: str) -> bool:
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
            log.info("set %s = %s (%s)", path, value, why)
        return True
    except OSError as e:
        log.warning("cannot set %s (%s): %s", path, why, e)
        return False


class KernelRules:
    """Writes planned chains incrementally and keeps the jumps into the fixed chains."""

    def __init__(self, prefix: str = "MINIK") -> None:
        self.prefix = prefix
        self.docker_user = False
        self.applied: dict[tuple[str, str], list[str]] | None = None  # None: next sync is full
        self.last_full = 0.0
        self.last_chains_written = 0

    async def ensure_jumps(self) -> None:
        self.docker_user = await ipt._chain_exists("filter", ipt.DOCKER_USER)
        if not self.docker_user:
            log.warning("no %s chain (Docker without iptables?): pod networks stay isolated", ipt.DOCKER_USER)
        for table, builtin, chain, first in kr.jumps(self.prefix):
            if builtin == ipt.DOCKER_USER and not self.docker_user:
                continue
            if not await ipt._chain_exists(table, chain):
                await ipt._run("iptables", "-w", "-t", table, "-N", chain)
            if first:
                await ipt._ensure_first(table, builtin, chain)
            else:
                await ipt._ensure_jump(table, builtin, chain)

    async def ensure_jump_order(self) -> None:
        for table, builtin, chain, first in kr.jumps(self.prefix):
            if first and (builtin != ipt.DOCKER_USER or self.docker_user):
                await ipt._ensure_first(table, builtin, chain)

    async def sync(self, desired: kr.Tables) -> int:
        """Write what changed; returns the number of chains rewritten."""
        full = self.applied is None or time.monotonic() - self.last_full > FULL_SYNC_SECONDS
        stale: dict[str, set[str]] = {}
        if full:
            for table in desired:
                stale[table] = {
                    ch
                    for ch in ipt.prefix_chains(await ipt.save(table), self.prefix)
                    if ch not in desired[table] and not ch.startswith(self.prefix + ipt.NETWORK_POLICY_MARK)
                }
        text, written = kr.restore_text(desired, None if full else self.applied, stale)
        if text:
            try:
                await ipt._run("iptables-restore", "-w", "--noflush", stdin=text.encode())
            except Exception:
                self.applied = None  # unknown state: the retry rewrites everything
                raise
        self.applied = {(t, ch): rules for t, chains in desired.items() for ch, rules in chains.items()}
        if full:
            self.last_full = time.monotonic()
        self.last_chains_written = written
        return written


class KernelProxier(Proxier):
    def __init__(
        self,
        client: Client,
        node_name: str,
        prefix: str = "MINIK",
        extra_node_addresses: list[str] | None = None,
        nodeport_addresses: list[str] | None = None,
        cluster_cidrs: list[str] | None = None,
    ) -> None:
        super().__init__(
            client,
            node_name,
            None,
            extra_node_addresses=extra_node_addresses,
            nodeport_addresses=nodeport_addresses,
        )
        self.prefix = prefix
        self.rules = KernelRules(prefix)
        self.cluster_cidrs = cluster_cidrs or []  # empty: every Node's podCIDR
        self.state: dict[str, list[kr.ServiceState]] = {}
        self._udp: dict[str, tuple[kr.ServiceState, set[tuple[str, int]]]] = {}  # sp.key -> endpoints
        self._order_checked = 0.0
        # minik trace: services changed since the last sync -> (Service, its endpoints, when seen);
        # their "proxy sync service" span ends once the rules are in the kernel
        self._traced: dict[str, tuple[Obj, list[Obj], int]] = {}
        self._recheck: set[asyncio.Task[None]] = set()  # the second conntrack clearing, pending

    async def prepare(self) -> None:
        why = await asyncio.to_thread(ensure_bridge_netfilter)
        if why:
            log.error("pod-to-Service traffic on one bridge may bypass the Service rules: %s", why)
        if not self.nodeport_addresses or any(
            model.in_cidrs("127.0.0.1", [c]) for c in self.nodeport_addresses
        ):
            set_sysctl(ROUTE_LOCALNET, "1", "NodePorts answer on 127.0.0.1")
        # the userspace mode's reject chain, if an earlier run of that mode left it
        await ipt.remove_chains("filter", {f"{self.prefix}-REJECT"})
        await self.rules.ensure_jumps()

    async def reconcile(self, key: str) -> None:
        if key == RULES_KEY:
            await self.sync_rules()
            return
        svc = self.services.store.get(key)
        if svc is None:
            self.state.pop(key, None)
        else:
            eps = self.slices.store.by_index(SERVICE_INDEX, key) or self.endpoints.store.get(key)
            self.state[key] = service_states(svc, eps, self.node_name)
            if tracing.active():
                listed = eps if isinstance(eps, list) else [eps] if eps else []
                self._traced.setdefault(key, (svc, listed, time.time_ns()))
            await self._sync_load_balancer_status(svc, self.node_ips())
        self.queue.add(RULES_KEY)

    def desired(self) -> kr.Tables:
        pod_cidrs = model.node_pod_cidrs(self.nodes.store.list())
        nodeport_ips = None
        if self.nodeport_addresses:
            nodeport_ips = self.nodeport_ips(self.node_ips())
        return kr.plan(
            (s for states in self.state.values() for s in states),
            self.prefix,
            cluster_cidrs=self.cluster_cidrs or pod_cidrs,
            pod_cidrs=pod_cidrs,
            nodeport_ips=nodeport_ips,
            docker_user=self.rules.docker_user,
        )

    async def sync_rules(self) -> None:
        start = time.perf_counter()
        written = await self.rules.sync(self.desired())
        self._record_traces()
        if time.monotonic() - self._order_checked >= RESYNC_SECONDS / 2:
            # Docker puts its rules first when it creates a network; checked on the resync
            # rhythm rather than on every sync (each check is two iptables runs)
            await self.rules.ensure_jump_order()
            self._order_checked = time.monotonic()
        await self._clear_stale_udp()
        self.sync_metrics.synced(time.perf_counter() - start)
        if written:
            log.info(
                "synced iptables: %d service ports, %d chains rewritten in %.1f ms",
                sum(len(v) for v in self.state.values()),
                written,
                (time.perf_counter() - start) * 1e3,
            )
        if self.ready.is_set():
            self.queue.add_after(RULES_KEY, RESYNC_SECONDS)

    def _record_traces(self) -> None:
        traced, self._traced = self._traced, {}
        end = time.time_ns()
        for key, (svc, listed, started) in traced.items():
            if self.services.store.get(key) is None:
                continue
            tracing.record(
                "proxy sync service",
                str(svc["metadata"].get("uid") or ""),
                started,
                end,
                tracing.object_attributes(svc, "Service"),
                links=tracing.endpoint_pod_links(listed),
            )

    async def _clear_stale_udp(self) -> None:
        now: dict[str, tuple[kr.ServiceState, set[tuple[str, int]]]] = {}
        for states in self.state.values():
            for s in states:
                if s.sp.protocol == "UDP" and s.sp.cluster_ip:
                    now[s.sp.key] = (s, {(e.ip, e.port) for e in s.endpoints})
        jobs: list[list[str]] = []
        for key, (s, eps) in now.items():
            old = self._udp.get(key)
            dsts = [s.sp.cluster_ip or "", *s.external_ips]
            if old is None or not old[1]:
                if eps and old is not None:  # first endpoint: drop the entries of refused packets
                    jobs += [["--orig-dst", d, "--orig-port-dst", str(s.sp.port)] for d in dsts]
                continue
            for ip, _port in old[1] - eps:
                jobs += [["--orig-dst", d, "--dst-nat", ip] for d in dsts]
                if s.sp.node_port:
                    jobs.append(["--orig-port-dst", str(s.sp.node_port), "--dst-nat", ip])
        for key, (s, eps) in self._udp.items():
            if key not in now:
                for ip, _port in eps:
                    jobs += [
                        ["--orig-dst", d, "--dst-nat", ip] for d in [s.sp.cluster_ip or "", *s.external_ips]
                    ]
        self._udp = now
        for job in jobs:
            await clear_conntrack(["-p", "udp", *job])
        if jobs:
            # once more a moment later: a datagram that met the old rules while they were being
            # replaced can have its entry confirmed just after the deletion, and a client that
            # keeps its source port would refresh that entry for ever
            task = asyncio.create_task(self._clear_again(jobs))
            self._recheck.add(task)
            task.add_done_callback(self._recheck.discard)

    async def _clear_again(self, jobs: list[list[str]]) -> None:
        await asyncio.sleep(1.0)
        for job in jobs:
            await clear_conntrack(["-p", "udp", *job])


async def clear_conntrack(args: list[str]) -> None:
    """``conntrack -D ARGS`` (exit 1 when nothing matched is fine)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "conntrack", "-D", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await proc.wait()
        log.info("conntrack -D %s", " ".join(args))
    except FileNotFoundError:
        log.warning("conntrack not installed: stale UDP entries stay until they time out")
