"""The Endpoints controller: for each Service with a selector, the addresses of its pods.

Pods matching the selector that have an IP are ready addresses when their Ready condition is
True (or the Service publishes not-ready addresses) and not-ready addresses otherwise; each address
carries ``ip``, ``nodeName`` and a ``targetRef`` to the pod.  Ports resolve ``targetPort`` by
number, or by name against the pods' container ports; pods grouped by identical resolved ports
form one subset, as Kubernetes' ``RepackSubsets`` does.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from apimachinery import errors, tracing
from apimachinery.client import Obj
from apimachinery.informer import split_key
from apimachinery.selectors import LabelSelector, selector_from_dict

from .base import ENDPOINTS, PODS, SERVICES, Controller, ControllerContext
from .util import deep_copy, is_deleting, is_pod_ready, labels_of, meta, name_of, pod_phase, uid_of

log = logging.getLogger(__name__)


def resolve_target_port(pod: Obj, port: dict[str, Any]) -> int | None:
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for cp in container.get("ports") or []:
            if cp.get("name") == target and (cp.get("protocol") or "TCP") == (port.get("protocol") or "TCP"):
                return int(cp["containerPort"])
    return None


def service_selector(svc: Obj) -> LabelSelector | None:
    sel = (svc.get("spec") or {}).get("selector")
    if not sel:
        return None
    return selector_from_dict({"matchLabels": sel})


def compute_subsets(svc: Obj, pods: list[Obj]) -> list[dict[str, Any]]:
    spec = svc.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[str, dict[str, Any]] = {}
    for pod in sorted(pods, key=name_of):
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or is_deleting(pod) or pod_phase(pod) in ("Succeeded", "Failed"):
            continue
        ports = []
        for sp in spec.get("ports") or []:
            resolved = resolve_target_port(pod, sp)
            if resolved is None:
                continue
            ep_port: dict[str, Any] = {"port": resolved, "protocol": sp.get("protocol") or "TCP"}
            if sp.get("name"):
                ep_port["name"] = sp["name"]
            if sp.get("appProtocol"):
                ep_port["appProtocol"] = sp["appProtocol"]
            ports.append(ep_port)
        address: dict[str, Any] = {
            "ip": ip,
            "targetRef": {
                "kind": "Pod",
                "namespace": meta(pod).get("namespace"),
                "name": name_of(pod),
                "uid": uid_of(pod),
            },
        }
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            address["nodeName"] = node
        sig = json.dumps(ports, sort_keys=True)
        group = groups.setdefault(sig, {"addresses": [], "notReadyAddresses": [], "ports": ports})
        if publish_not_ready or is_pod_ready(pod):
            group["addresses"].append(address)
        else:
            group["notReadyAddresses"].append(address)
    subsets = []
    for group in groups.values():
        subset = {k: v for k, v in group.items() if v}
        if subset.get("addresses") or subset.get("notReadyAddresses"):
            subsets.append(subset)
    return subsets


class ServicePodsController(Controller):
    """A controller keyed by Service that follows pods: a pod's change enqueues every Service whose
    selector matches the pod (before and after an update)."""

    def watch_services_and_pods(self) -> None:
        self.svc_informer = self.informer(SERVICES, on_change=self.enqueue, on_delete=self.enqueue)
        self.pod_informer = self.informer(PODS)
        self.pod_informer.add_event_handler(self._pod_changed, self._pod_updated, self._pod_changed)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        self._pod_changed(old)
        self._pod_changed(new)

    def _pod_changed(self, pod: Obj) -> None:
        for svc in self.svc_informer.store.by_index("namespace", str(meta(pod).get("namespace") or "")):
            sel = service_selector(svc)
            if sel is not None and sel.matches(labels_of(pod)):
                self.enqueue(svc)


class EndpointsController(ServicePodsController):
    name = "endpoints-controller"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.watch_services_and_pods()
        self.ep_informer = self.informer(ENDPOINTS, on_delete=self.enqueue)

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        svc = self.svc_informer.store.get(key)
        if svc is None:
            try:
                await self.client.delete(ENDPOINTS, name, namespace)
            except errors.NotFound:
                pass
            return
        sel = service_selector(svc)
        if sel is None:
            return  # endpoints of selector-less services are managed by users
        pods = [
            p
            for p in self.pod_informer.store.by_index("namespace", namespace or "")
            if sel.matches(labels_of(p))
        ]
        subsets = compute_subsets(svc, pods)
        current = self.ep_informer.store.get(key)
        labels = labels_of(svc)
        if current is not None:
            if (current.get("subsets") or []) == subsets and labels_of(current) == labels:
                return
            updated = deep_copy(current)
            updated["subsets"] = subsets
            updated["metadata"]["labels"] = labels
            with _step("update endpoints", svc, updated):
                await self.client.update(ENDPOINTS, updated)
            return
        body = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "subsets": subsets,
        }
        try:
            with _step("create endpoints", svc, body):
                await self.client.create(ENDPOINTS, body, namespace)
        except errors.AlreadyExists:
            self.queue.add_rate_limited(key)


def _step(name: str, svc: Obj, endpoints: Obj) -> tracing.Step:
    """minik trace: the write, filed under the Service and linked to the pods it lists."""
    return tracing.Step(
        name,
        str(svc["metadata"].get("uid") or ""),
        tracing.object_attributes(svc, "Service"),
        links=tracing.endpoint_pod_links([endpoints]) if tracing.active() else (),
    )
