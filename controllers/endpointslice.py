"""The EndpointSlice controller: for each Service with a selector, ``discovery.k8s.io/v1``
EndpointSlices listing its pods, as Kubernetes' ``endpointslice-controller.k8s.io`` writes them.

Every pod that matches the selector, has an IP and has not finished is an endpoint: its address,
the conditions ``ready`` (serving and not terminating, or always when the Service publishes
not-ready addresses), ``serving`` (the pod's Ready condition) and ``terminating`` (a deletion
timestamp), ``nodeName``, the node's ``zone`` when it is labelled, a ``targetRef`` to the pod and
the ``hostname`` a pod with ``spec.subdomain`` equal to the Service's name asks for.  Ports come
from the Service's ports with named ``targetPort`` s resolved per pod, so endpoints are grouped by
their resolved ports; each group fills slices of at most ``max_endpoints`` endpoints.

Slices are named ``<service>-<random>`` (``generateName``), labelled
``kubernetes.io/service-name`` and ``endpointslice.kubernetes.io/managed-by``, and owned by the
Service (the garbage collector removes them with it).  Reconciling is level-triggered: existing
slices are updated in place (an endpoint stays in the slice it is in), new endpoints fill the room
left, slices that are no longer needed are deleted, and a Service without endpoints keeps one empty
placeholder slice.  Writes the cache has not shown yet are remembered, and a reconcile that would
read a cache older than its own writes waits for it, so a stale cache never creates twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.informer import split_key
from apimachinery.resources import kind_info

from .base import NODES, ControllerContext
from .endpoints import ServicePodsController, resolve_target_port, service_selector
from .util import (
    deep_copy,
    ensure_index,
    is_deleting,
    is_pod_ready,
    labels_of,
    meta,
    name_of,
    pod_phase,
    uid_of,
)

log = logging.getLogger(__name__)

ENDPOINT_SLICES = kind_info("discovery.k8s.io/v1", "EndpointSlice")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_ENDPOINTS_PER_SLICE = 100  # kube-controller-manager's --max-endpoints-per-slice default
SERVICE_INDEX = "endpointslice-service"
STALE_CACHE_RETRY = 0.2  # seconds before a reconcile that found the cache behind its writes retries
WRITE_EXPECTATION_TTL = 30.0  # seconds after which an unseen write is forgotten (deleted meanwhile)


def slice_service_index(obj: Obj) -> str | None:
    """``namespace/service`` of a slice this controller manages (None for others)."""
    labels = labels_of(obj)
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or not labels.get(SERVICE_NAME_LABEL):
        return None
    return f"{meta(obj).get('namespace') or ''}/{labels[SERVICE_NAME_LABEL]}"


def endpoint_ports(svc: Obj, pod: Obj) -> list[dict[str, Any]]:
    """The Service's ports with ``targetPort`` resolved against ``pod`` (ports it lacks left out)."""
    out = []
    for sp in (svc.get("spec") or {}).get("ports") or []:
        resolved = resolve_target_port(pod, sp)
        if resolved is None:
            continue
        port: dict[str, Any] = {
            "name": sp.get("name") or "",
            "port": resolved,
            "protocol": sp.get("protocol") or "TCP",
        }
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        out.append(port)
    return out


def pod_endpoint(svc: Obj, pod: Obj, zones: dict[str, str]) -> dict[str, Any] | None:
    """The endpoint of ``pod`` in a slice of ``svc``, or None when the pod is not one."""
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    ip = status.get("podIP")
    if not ip or pod_phase(pod) in ("Succeeded", "Failed"):
        return None
    serving = is_pod_ready(pod)
    terminating = is_deleting(pod)
    publish_not_ready = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    ep: dict[str, Any] = {
        "addresses": [ip],
        "conditions": {
            "ready": publish_not_ready or (serving and not terminating),
            "serving": serving,
            "terminating": terminating,
        },
    }
    if spec.get("hostname") and spec.get("subdomain") == name_of(svc):
        ep["hostname"] = spec["hostname"]
    node = spec.get("nodeName")
    if node:
        ep["nodeName"] = node
        if zones.get(node):
            ep["zone"] = zones[node]
    ep["targetRef"] = {
        "kind": "Pod",
        "namespace": meta(pod).get("namespace"),
        "name": name_of(pod),
        "uid": uid_of(pod),
    }
    return ep


def _ref_key(ep: dict[str, Any]) -> str:
    ref = ep.get("targetRef") or {}
    return str(ref.get("uid") or ref.get("name") or (ep.get("addresses") or [""])[0])


def _ports_key(ports: list[dict[str, Any]] | None) -> str:
    return json.dumps(
        sorted(ports or [], key=lambda p: (p.get("name") or "", p.get("protocol") or "")), sort_keys=True
    )


@dataclass
class SlicePlan:
    """What a reconcile writes: slices to update in place, to create, to delete."""

    update: list[Obj] = field(default_factory=list)
    create: list[Obj] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)


def slice_labels(svc: Obj) -> dict[str, str]:
    labels = {
        k: v
        for k, v in labels_of(svc).items()
        if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)
    }
    labels[SERVICE_NAME_LABEL] = name_of(svc)
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    if (svc.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def new_slice(svc: Obj, ports: list[dict[str, Any]], endpoints: list[dict[str, Any]]) -> Obj:
    md = meta(svc)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": f"{md['name']}-",
            "namespace": md.get("namespace"),
            "labels": slice_labels(svc),
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": md["name"],
                    "uid": md.get("uid"),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }


def plan_slices(
    svc: Obj,
    pods: list[Obj],
    existing: list[Obj],
    zones: dict[str, str] | None = None,
    max_endpoints: int = MAX_ENDPOINTS_PER_SLICE,
) -> SlicePlan:
    """The writes that turn ``existing`` (this Service's slices) into the slices ``pods`` call
    for.  Pure: the reconcile and the unit tests share it."""
    zones = zones or {}
    # desired endpoints, grouped by their resolved ports
    groups: dict[str, tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]] = {}
    for pod in sorted(pods, key=name_of):
        ep = pod_endpoint(svc, pod, zones)
        if ep is None:
            continue
        ports = endpoint_ports(svc, pod)
        groups.setdefault(_ports_key(ports), (ports, {}))[1][_ref_key(ep)] = ep
    plan = SlicePlan()
    labels = slice_labels(svc)
    by_ports: dict[str, list[Obj]] = {}
    for s in sorted(existing, key=lambda s: (meta(s).get("creationTimestamp") or "", name_of(s))):
        by_ports.setdefault(_ports_key(s.get("ports")), []).append(s)
    kept: list[Obj] = []
    for pkey, (ports, wanted) in groups.items():
        placed: set[str] = set()
        room: list[Obj] = []  # slices of this group, as they will be written
        for s in by_ports.pop(pkey, []):
            eps = [
                wanted[k]
                for k in (_ref_key(e) for e in s.get("endpoints") or [])
                if k in wanted and k not in placed
            ]
            eps = eps[:max_endpoints]
            placed |= {_ref_key(e) for e in eps}
            room.append({"slice": s, "endpoints": eps, "ports": ports})
        new_eps = [ep for k, ep in wanted.items() if k not in placed]
        for r in room:
            while new_eps and len(r["endpoints"]) < max_endpoints:
                r["endpoints"].append(new_eps.pop(0))
        while new_eps:
            chunk, new_eps = new_eps[:max_endpoints], new_eps[max_endpoints:]
            plan.create.append(new_slice(svc, ports, chunk))
        for r in room:
            if not r["endpoints"]:
                plan.delete.append(r["slice"])
                continue
            kept.append(r["slice"])
            _update_if_changed(plan, r["slice"], labels, r["ports"], r["endpoints"])
    # slices whose port set no longer occurs
    leftover = [s for group in by_ports.values() for s in group]
    if not groups and not plan.create:
        # no endpoints at all: one empty placeholder slice, as Kubernetes keeps
        if leftover:
            placeholder, leftover = leftover[0], leftover[1:]
            _update_if_changed(plan, placeholder, labels, [], [])
        elif not kept:
            plan.create.append(new_slice(svc, [], []))
    plan.delete.extend(leftover)
    return plan


def _update_if_changed(
    plan: SlicePlan,
    current: Obj,
    labels: dict[str, str],
    ports: list[dict[str, Any]],
    endpoints: list[dict[str, Any]],
) -> None:
    if (
        (current.get("endpoints") or []) == endpoints
        and (current.get("ports") or []) == ports
        and labels_of(current) == labels
        and current.get("addressType") == "IPv4"
    ):
        return
    updated = deep_copy(current)
    updated["endpoints"] = endpoints
    updated["ports"] = ports
    updated["metadata"]["labels"] = labels
    plan.update.append(updated)


def _rv(obj: Obj | None) -> int:
    try:
        return int(meta(obj or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class EndpointSliceController(ServicePodsController):
    name = "endpointslice-controller"

    def __init__(
        self, ctx: ControllerContext, max_endpoints: int = MAX_ENDPOINTS_PER_SLICE, **kwargs: Any
    ) -> None:
        super().__init__(ctx, **kwargs)
        self.max_endpoints = int(ctx.options.extra.get("max_endpoints_per_slice") or max_endpoints)
        self.watch_services_and_pods()
        self.node_informer = self.informer(NODES)
        self.slice_informer = self.informer(ENDPOINT_SLICES)
        ensure_index(self.slice_informer.store, SERVICE_INDEX, slice_service_index)
        self.slice_informer.add_event_handler(
            self._slice_changed, lambda _old, new: self._slice_changed(new), self._slice_changed
        )
        # service key -> {slice name: (resourceVersion written (0: deleted), when)} not yet seen
        # in the cache; forgotten after WRITE_EXPECTATION_TTL (a slice deleted right after our
        # write never shows our version)
        self._written: dict[str, dict[str, tuple[int, float]]] = {}

    # -- handlers (only enqueue) ----------------------------------------------------------------

    def _slice_changed(self, obj: Obj) -> None:
        key = slice_service_index(obj)
        if key is not None:
            self.enqueue(key)

    # -- reconcile ------------------------------------------------------------------------------

    def _cache_caught_up(self, key: str) -> bool:
        written = self._written.get(key)
        if not written:
            return True
        namespace, _ = split_key(key)
        now = self.ctx.monotonic()
        for name, (rv, when) in list(written.items()):
            cached = self.slice_informer.store.get(f"{namespace}/{name}" if namespace else name)
            seen = (rv == 0 and cached is None) or (rv and _rv(cached) >= rv)
            if seen or now - when > WRITE_EXPECTATION_TTL:
                del written[name]
        if not written:
            del self._written[key]
            return True
        return False

    def _remember(self, key: str, name: str, rv: int) -> None:
        self._written.setdefault(key, {})[name] = (rv, self.ctx.monotonic())

    def zones(self) -> dict[str, str]:
        return {
            name_of(n): labels_of(n)[ZONE_LABEL]
            for n in self.node_informer.store.list()
            if labels_of(n).get(ZONE_LABEL)
        }

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        if not self._cache_caught_up(key):
            self.queue.add_after(key, STALE_CACHE_RETRY)
            return
        existing = self.slice_informer.store.by_index(SERVICE_INDEX, key)
        svc = self.svc_informer.store.get(key)
        sel = service_selector(svc) if svc is not None else None
        if svc is None or sel is None:
            # the Service is gone (the garbage collector would remove its slices too) or has no
            # selector (its slices, if any, are the user's, under another managed-by)
            await self._delete(key, existing)
            return
        pods = [
            p
            for p in self.pod_informer.store.by_index("namespace", namespace or "")
            if sel.matches(labels_of(p))
        ]
        plan = plan_slices(svc, pods, existing, self.zones(), self.max_endpoints)
        for s in plan.update:
            try:
                stored = await self.client.update(ENDPOINT_SLICES, s)
            except errors.NotFound:
                continue  # deleted meanwhile: its delete event enqueues the service again
            self._remember(key, name_of(stored), _rv(stored))
        for s in plan.create:
            stored = await self.client.create(ENDPOINT_SLICES, s, namespace)
            self._remember(key, name_of(stored), _rv(stored))
            log.info("service %s: created EndpointSlice %s", key, name_of(stored))
        await self._delete(key, plan.delete)

    async def _delete(self, key: str, slices: list[Obj]) -> None:
        for s in slices:
            try:
                await self.client.delete(ENDPOINT_SLICES, name_of(s), meta(s).get("namespace"))
            except errors.NotFound:
                pass
            self._remember(key, name_of(s), 0)
