"""The ingress controller: informers on Ingresses, IngressClasses, Services, EndpointSlices, Secrets
and Nodes; every change queues the one ``sync`` key, and a sync computes the whole data path
(:mod:`ingress.model`) and brings HAProxy to it: through the runtime API when only endpoints
changed, with a checked reload otherwise.  It also creates the default IngressClass ``minik`` when
there is none of that name, writes Warning Events on Ingresses with missing Services or Secrets
(once per distinct problem), and sets ``status.loadBalancer.ingress`` of its Ingresses to the node
addresses.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from apimachinery import errors
from apimachinery.client import Client
from apimachinery.controller import QueueController
from apimachinery.events import WARNING, EventRecorder
from apimachinery.informer import Informer, SharedInformerFactory, object_key
from apimachinery.resources import ResourceInfo, kind_info

from . import model
from .haproxy import HAProxy

log = logging.getLogger(__name__)

INGRESSES = kind_info("networking.k8s.io/v1", "Ingress")
CLASSES = kind_info("networking.k8s.io/v1", "IngressClass")
SERVICES = kind_info("v1", "Service")
SLICES = kind_info("discovery.k8s.io/v1", "EndpointSlice")
SECRETS = kind_info("v1", "Secret")
NODES = kind_info("v1", "Node")

SYNC = "sync"
RESYNC_SECONDS = 30.0  # a sync at least this often: restarts an HAProxy that died, retries status
TLS_SECRET = "kubernetes.io/tls"

Obj = dict[str, Any]


def _slice_service(obj: Obj) -> str | None:
    name = ((obj.get("metadata") or {}).get("labels") or {}).get(model.SERVICE_NAME_LABEL)
    return f"{obj['metadata'].get('namespace')}/{name}" if name else None


def node_addresses(nodes: list[Obj]) -> list[str]:
    """Every node's InternalIP (ExternalIP where a node has no InternalIP), sorted."""
    out: set[str] = set()
    for n in nodes:
        addrs = (n.get("status") or {}).get("addresses") or []
        internal = [a["address"] for a in addrs if a.get("type") == "InternalIP" and a.get("address")]
        external = [a["address"] for a in addrs if a.get("type") == "ExternalIP" and a.get("address")]
        out.update(internal or external)
    return sorted(out)


class IngressController(QueueController):
    name = "ingress"

    def __init__(
        self,
        client: Client,
        settings: model.Settings,
        haproxy: HAProxy,
        status_addresses: list[str] | None = None,
        node_name: str | None = None,
        update_status: bool = True,
    ) -> None:
        super().__init__()
        self.client = client
        self.settings = settings
        self.haproxy = haproxy
        self.status_addresses = status_addresses or []
        self.update_status = update_status
        self.recorder = EventRecorder(client, "minik-ingress", host=node_name)
        self.factory = SharedInformerFactory(client)

        def changed(_obj: Obj) -> None:
            self.queue.add(SYNC)

        def informer(info: ResourceInfo, field_selector: str | None = None) -> Informer:
            return self.watch(self.factory.informer(info, field_selector=field_selector), changed, changed)

        self.ingresses = informer(INGRESSES)
        self.classes = informer(CLASSES)
        self.services = informer(SERVICES)
        self.slices = informer(SLICES)
        self.slices.store.add_index("service", _slice_service)
        # only TLS Secrets are cached (a field selector on type, as ingress-nginx narrows its own)
        self.secrets = informer(SECRETS, field_selector=f"type={TLS_SECRET}")
        self.nodes = informer(NODES)
        self.ready = asyncio.Event()
        self.running: dict[str, list[model.Server | None]] = {}  # backend -> slots HAProxy has
        self.structure: str | None = None  # the configuration HAProxy runs, without addresses
        self.certs: list[model.Cert] | None = None
        self.reported: dict[str, list[tuple[str, str]]] = {}  # ingress key -> problems told in Events
        self.syncs = 0
        self._table_routes: list[model.Route] = []

    async def run(self, workers: int = 1) -> None:
        """Start the informers and the event recorder; once the caches are synced, create the
        default IngressClass, start HAProxy with a first sync and work the queue."""
        self.factory.start()
        events = asyncio.create_task(self.recorder.run(), name="ingress-events")
        try:
            for inf in self.informers:
                await inf.wait_for_sync()
            await self.ensure_class()
            self.haproxy.prepare()
            await self.reconcile(SYNC)
            self.ready.set()
            log.info("ingress controller synced: %d routes", len(self._table_routes))
            await super().run(workers)
        finally:
            self.queue.shut_down()
            events.cancel()
            await asyncio.gather(events, self.factory.stop(), return_exceptions=True)
            await self.haproxy.stop()

    async def ensure_class(self) -> None:
        """Create the IngressClass ``minik`` (the default class) when there is none of that name;
        one that exists is left as it is (an administrator may have made another class the default)."""
        if self.classes.store.get(model.CLASS_NAME) is not None:
            return
        try:
            await self.client.create(CLASSES, model.default_ingress_class())
            log.info("created the default IngressClass %s", model.CLASS_NAME)
        except errors.StatusError as exc:
            if exc.code != 409:
                raise

    # -- a sync -----------------------------------------------------------------------------------
    def desired(self) -> tuple[model.Desired, list[Obj]]:
        names, default = model.our_classes(self.classes.store.list())
        names.add(model.CLASS_NAME)  # ours even while its IngressClass is missing
        ours = [i for i in self.ingresses.store.list() if model.is_ours(i, names, default)]
        table = model.route_table(ours)
        services = {object_key(s): s for s in self.services.store.list()}
        slices_of = {
            k: self.slices.store.by_index("service", k)
            for k in {f"{b.namespace}/{b.service}" for b in self._backends(table)}
        }
        backends: dict[str, list[model.Server | None]] = {}
        for b in self._backends(table):
            servers, problem = model.resolve_backend(b, services, slices_of)
            backends[b.name] = model.assign(self.running.get(b.name), servers, self.settings.slots_min)
            if problem:
                for r in table.routes:
                    if r.backend == b:
                        table.problems.setdefault(r.ingress, []).append(
                            model.Problem("MissingBackend", problem)
                        )
                if table.default_backend == b:
                    for ing in ours:
                        if (ing.get("spec") or {}).get("defaultBackend") is not None:
                            table.problems.setdefault(object_key(ing), []).append(
                                model.Problem("MissingBackend", problem)
                            )
        secrets = {object_key(s): s for s in self.secrets.store.list()}
        certs = model.tls_certs(ours, secrets, table.problems)
        return model.Desired(table, backends, certs), ours

    @staticmethod
    def _backends(table: model.Table) -> list[model.Backend]:
        found = {r.backend for r in table.routes}
        if table.default_backend is not None:
            found.add(table.default_backend)
        return sorted(found)

    async def reconcile(self, key: str) -> None:
        """Bring HAProxy, the Events and the Ingresses' status to the whole desired state (there is
        one key, ``sync``)."""
        d, ours = self.desired()
        self.syncs += 1
        structure = d.structure(self.settings)
        if not self.haproxy.running or structure != self.structure or d.certs != self.certs:
            await self.haproxy.apply(d)
            log.info(
                "haproxy configuration loaded: %d routes, %d backends, %d certificates",
                len(d.table.routes),
                len(d.backends),
                len(d.certs),
            )
        else:
            commands = model.runtime_commands(d, self.running)
            if commands:
                await self.haproxy.set_servers(commands)
                log.debug("runtime API: %s", commands)
        self.running = {k: list(v) for k, v in d.backends.items()}
        self.structure, self.certs = structure, d.certs
        self._table_routes = d.table.routes
        self._report(d.table, ours)
        if self.update_status:
            await self._sync_status(ours)
        self.queue.add_after(SYNC, RESYNC_SECONDS)

    def _report(self, table: model.Table, ours: list[Obj]) -> None:
        by_key = {object_key(i): i for i in ours}
        for key in list(self.reported):
            if key not in by_key:
                del self.reported[key]
        for key, ing in by_key.items():
            problems = sorted({(p.reason, p.message) for p in table.problems.get(key, [])})
            if problems == self.reported.get(key, []):
                continue
            for reason, message in problems:
                if (reason, message) not in self.reported.get(key, []):
                    log.warning("ingress %s: %s", key, message)
                    self.recorder.event(ing, WARNING, reason, message)
            self.reported[key] = problems

    async def _sync_status(self, ours: list[Obj]) -> None:
        addresses = self.status_addresses or node_addresses(self.nodes.store.list())
        want = [{"ip": a} for a in addresses]
        for ing in ours:
            if (ing.get("metadata") or {}).get("deletionTimestamp"):
                continue
            current = ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if current == want:
                continue
            new = copy.deepcopy(ing)
            new.setdefault("status", {})["loadBalancer"] = {"ingress": want} if want else {}
            try:
                await self.client.update_status(INGRESSES, new)
            except errors.StatusError as exc:
                if exc.code not in (404, 409):
                    raise
                self.queue.add_after(SYNC, 1.0)  # a newer version will come through the informer
