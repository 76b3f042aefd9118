"""The proxy's controller: informers on Services, EndpointSlices and Nodes; a work queue of Service
keys; ``reconcile(key)`` brings that Service's listeners, endpoints (merged over all the Service's
EndpointSlices, as kube-proxy reads them; a Service without slices falls back to its Endpoints
object, which covers hand-written Endpoints of selector-less Services that Kubernetes' mirroring
controller would copy into slices) and LoadBalancer status in
line with the caches, and a single ``rules`` key re-plans and applies the iptables chains
(written whole, so a restart replaces whatever an earlier run left), including the rules that
join every node's pod CIDR (read from the Node objects) into one pod network."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

from apimachinery import errors, tracing
from apimachinery.client import Client
from apimachinery.informer import Informer, object_key
from apimachinery.resources import kind_info
from apimachinery.workqueue import WorkQueue, run_workers

from . import iptables as iptables_mod
from . import model
from .forwarder import UDP_TIMEOUT, AnyPortProxy, new_port_proxy
from .iptables import Iptables
from .metrics import SyncMetrics

log = logging.getLogger(__name__)


SERVICES = kind_info("v1", "Service")
ENDPOINTS = kind_info("v1", "Endpoints")
ENDPOINT_SLICES = kind_info("discovery.k8s.io/v1", "EndpointSlice")
SERVICE_INDEX = "service"  # EndpointSlices by the namespace/name of their Service
NODES = kind_info("v1", "Node")

RULES_KEY = "\0rules"
RESYNC_SECONDS = 10.0  # rules re-checked (and jump order restored) this often

Obj = dict[str, Any]


class Proxier:
    def __init__(
        self,
        client: Client,
        node_name: str,
        iptables: Iptables | None,
        bind_address: str = "0.0.0.0",
        extra_node_addresses: list[str] | None = None,
        nodeport_addresses: list[str] | None = None,
        udp_timeout: float = UDP_TIMEOUT,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.iptables = iptables
        self.bind_address = bind_address
        self.extra_node_addresses = extra_node_addresses or []
        self.nodeport_addresses = nodeport_addresses or []  # CIDRs; empty: every node address
        self.udp_timeout = udp_timeout
        self.services = Informer(client, SERVICES)
        self.endpoints = Informer(client, ENDPOINTS)
        self.slices = Informer(client, ENDPOINT_SLICES)
        self.slices.store.add_index(SERVICE_INDEX, model.slice_service_key)
        self.nodes = Informer(client, NODES)  # this node's addresses, every node's podCIDR
        self.queue = WorkQueue(name="proxy")
        self.sync_metrics = SyncMetrics()  # kubeproxy_sync_proxy_rules_*
        self.ports: dict[str, AnyPortProxy] = {}  # ServicePort.key -> its listeners and picker
        self.ready = asyncio.Event()
        self._node_ips: list[str] = []
        self._pod_cidrs: list[str] = []
        self._tasks: list[asyncio.Task[Any]] = []

        def enqueue(obj: Obj) -> None:
            self.queue.add(object_key(obj))

        self.services.add_event_handler(enqueue, lambda _old, new: enqueue(new), enqueue)

        def slice_changed(obj: Obj) -> None:
            key = model.slice_service_key(obj)
            if key is not None:
                self.queue.add(key)

        def slice_updated(old: Obj, new: Obj) -> None:
            if model.slice_service_key(old) != model.slice_service_key(new):
                slice_changed(old)
                slice_changed(new)
            elif (old.get("endpoints"), old.get("ports")) != (new.get("endpoints"), new.get("ports")):
                slice_changed(new)

        self.slices.add_event_handler(slice_changed, slice_updated, slice_changed)
        self.endpoints.add_event_handler(
            enqueue,
            lambda old, new: enqueue(new) if old.get("subsets") != new.get("subsets") else None,
            enqueue,
        )
        self.nodes.add_event_handler(
            self._node_changed, lambda _old, new: self._node_changed(new), self._node_changed
        )

    # -- node addresses ---------------------------------------------------------------------------
    def node_ips(self) -> list[str]:
        ips = model.node_addresses(self.nodes.store.get(self.node_name))
        for ip in self.extra_node_addresses:
            if ip not in ips:
                ips.append(ip)
        return ips

    def nodeport_ips(self, node_ips: list[str]) -> list[str]:
        """Where NodePorts listen: the node addresses and 127.0.0.1, narrowed by
        ``--nodeport-addresses`` CIDRs when given (as kube-proxy does)."""
        return [ip for ip in [*node_ips, "127.0.0.1"] if model.in_cidrs(ip, self.nodeport_addresses)]

    def _node_changed(self, _node: Obj) -> None:
        ips = self.node_ips()
        if ips != self._node_ips:
            self._node_ips = ips
            for key in self.services.store.keys():
                self.queue.add(key)
        cidrs = model.node_pod_cidrs(self.nodes.store.list())
        if cidrs != self._pod_cidrs:
            self._pod_cidrs = cidrs
            self.queue.add(RULES_KEY)

    # -- lifecycle --------------------------------------------------------------------------------
    async def run(self, workers: int = 2) -> None:
        for inf in (self.services, self.slices, self.endpoints, self.nodes):
            self._tasks.append(asyncio.create_task(inf.run(), name=f"proxy-informer-{inf.info.plural}"))
        try:
            for inf in (self.services, self.slices, self.endpoints, self.nodes):
                await inf.wait_for_sync()
            self._node_ips = self.node_ips()
            await self.prepare()
            # Level-triggered start: every Service once, then the rules (replacing stale ones).
            for key in self.services.store.keys():
                await self.reconcile(key)
            await self.reconcile(RULES_KEY)
            self.ready.set()
            log.info("proxy for node %s synced: %d service ports", self.node_name, len(self.ports))
            self.queue.add_after(RULES_KEY, RESYNC_SECONDS)
            await run_workers(self.queue, self.reconcile, workers)
        finally:
            await self.stop()

    async def prepare(self) -> None:
        """Before the first sync: the chains and the jumps into them."""
        if self.iptables is not None:
            # chains an iptables-mode run left behind (same prefix) would still catch the VIPs
            await iptables_mod.remove_other_chains(self.iptables.prefix, self.iptables.own_chains())
            await self.iptables.ensure_chains()

    async def stop(self) -> None:
        self.queue.shut_down()
        for inf in (self.services, self.slices, self.endpoints, self.nodes):
            inf.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for pp in list(self.ports.values()):
            await pp.close()
        self.ports.clear()

    # -- reconcile --------------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        if key == RULES_KEY:
            await self.sync_rules()
            return
        svc = self.services.store.get(key)
        eps = self.slices.store.by_index(SERVICE_INDEX, key) or self.endpoints.store.get(key)
        traced_at = time.time_ns() if svc is not None and tracing.active() else 0
        desired = {sp.key: sp for sp in model.service_ports(svc)} if svc else {}
        for pkey in [k for k, pp in self.ports.items() if pp.sp.service_key == key and k not in desired]:
            log.info("service %s: port %s removed", key, pkey)
            await self.ports.pop(pkey).close()
        node_ips = self.node_ips()
        problems: list[str] = []
        for pkey, sp in desired.items():
            pp = self.ports.get(pkey)
            if pp is not None and pp.sp.protocol != sp.protocol:
                await self.ports.pop(pkey).close()
                pp = None
            if pp is None:
                pp = self.ports[pkey] = new_port_proxy(sp, self.bind_address, self.udp_timeout)
            pp.sp = sp
            await pp.start_portal()
            pp.picker.update(model.ready_endpoints(eps, sp.port_name, sp.protocol), sp.affinity_seconds)
            wanted: set[tuple[str, int]] = set()
            if sp.node_port:
                wanted |= {(ip, sp.node_port) for ip in self.nodeport_ips(node_ips)}
            if sp.load_balancer:
                wanted |= {(ip, sp.port) for ip in node_ips}
            problems += await pp.set_extra_listeners(wanted)
        if svc is not None:
            await self._sync_load_balancer_status(svc, node_ips)
        self.queue.add(RULES_KEY)
        if traced_at and svc is not None:  # minik trace: this service's endpoints in the proxy
            listed = eps if isinstance(eps, list) else [eps] if eps else []
            tracing.record(
                "proxy sync service",
                str(svc["metadata"].get("uid") or ""),
                traced_at,
                time.time_ns(),
                tracing.object_attributes(svc, "Service"),
                links=tracing.endpoint_pod_links(listed),
            )
        if problems:
            raise RuntimeError(f"service {key}: could not listen on {', '.join(problems)}")

    async def _sync_load_balancer_status(self, svc: Obj, node_ips: list[str]) -> None:
        is_lb = (svc.get("spec") or {}).get("type") == "LoadBalancer"
        current = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        want = model.merged_ingress(current, node_ips if is_lb else [], remove=() if is_lb else node_ips)
        if want == current:
            return
        new = copy.deepcopy(svc)
        new.setdefault("status", {}).setdefault("loadBalancer", {})
        if want:
            new["status"]["loadBalancer"]["ingress"] = want
        else:
            new["status"]["loadBalancer"].pop("ingress", None)
        try:
            await self.client.update_status(SERVICES, new)
            log.info("service %s: load balancer ingress %s", object_key(svc), [i.get("ip") for i in want])
        except errors.NotFound:
            pass
        # a Conflict propagates: the key is requeued and retried from the fresher cache

    async def sync_rules(self) -> None:
        if self.iptables is None:
            return
        start = time.perf_counter()
        plan = model.plan_rules(
            (
                (pp.sp, pp.portal_port, bool(pp.picker.endpoints))
                for pp in self.ports.values()
                if pp.portal_port
            ),
            self.iptables.prefix,
            model.node_pod_cidrs(self.nodes.store.list()),
        )
        await self.iptables.apply(plan)
        await self.iptables.ensure_jump_order()
        self.sync_metrics.synced(time.perf_counter() - start)
        if self.ready.is_set():
            self.queue.add_after(RULES_KEY, RESYNC_SECONDS)
