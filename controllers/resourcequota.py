"""The ResourceQuota controller: keeps every quota's ``status.hard`` (its ``spec.hard``) and
``status.used`` (what the namespace's objects use now), as Kubernetes' resource quota controller.

The API server's ResourceQuota admission charges ``status.used`` when an object is created; this
controller recounts from the objects, so a deletion (or a pod reaching Succeeded/Failed) frees
quota, and a charge for a create that did not happen is given back.  A quota is recounted when it
hard limits change, when an object it may count is deleted or uses less, and every 30 seconds.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

from apimachinery import errors, quota
from apimachinery.client import Obj
from apimachinery.informer import Informer
from apimachinery.resources import ResourceInfo, all_resources, kind_info

from .base import Controller, ControllerContext
from .util import namespace_of

log = logging.getLogger(__name__)

RESOURCE_QUOTAS = kind_info("v1", "ResourceQuota")
# Resources followed with informers; others named by a quota (count/<resource>.<group>) are listed.
TRACKED = (
    ("", "pods"),
    ("", "services"),
    ("", "configmaps"),
    ("", "secrets"),
    ("", "persistentvolumeclaims"),
    ("", "replicationcontrollers"),
    ("", "resourcequotas"),
)
DEFAULT_SYNC_PERIOD = 30.0


def _info(group: str, plural: str) -> ResourceInfo | None:
    for info in all_resources():
        if info.group == group and info.plural == plural:
            return info
    return None


def compute_status(q: Obj, objects: dict[tuple[str, str], list[Obj]]) -> dict[str, Any]:
    """The quota's status from the namespace's objects of each (group, plural) it counts."""
    hard_raw = dict((q.get("spec") or {}).get("hard") or {})
    hard = quota.parse_list(hard_raw)
    used: quota.Usage = {name: Decimal(0) for name in hard}
    for (group, plural), items in objects.items():
        for obj in items:
            if not quota.quota_matches(q, group, plural, obj):
                continue
            for name, value in quota.object_usage(group, plural, obj).items():
                if name in used:
                    used[name] += value
    return {"hard": hard_raw, "used": quota.to_list(used)}


class ResourceQuotaController(Controller):
    name = "resourcequota-controller"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        # A quota is recounted when it is new or its spec.hard is not yet its status.hard; the
        # status.used charges admission writes do not start a recount (the object charged may
        # not be in this controller's caches yet), as in Kubernetes.
        self.quotas = self.informer(RESOURCE_QUOTAS)
        self.quotas.add_event_handler(self.enqueue, self._quota_updated, None)
        self.sync_period = float(ctx.options.extra.get("resource_quota_sync_period", DEFAULT_SYNC_PERIOD))
        self.tracked: dict[tuple[str, str], Informer] = {}
        for group, plural in TRACKED:
            info = _info(group, plural)
            if info is None:
                continue
            inf = self.informer(info)
            if (group, plural) != ("", "resourcequotas"):
                inf.add_event_handler(None, self._object_updated(group, plural), self._object_deleted)
            self.tracked[(group, plural)] = inf

    # -- handlers: only enqueue --------------------------------------------------------------------
    def _enqueue_namespace(self, namespace: str | None) -> None:
        if not namespace:
            return
        for q in self.quotas.store.by_index("namespace", namespace):
            self.enqueue(q)

    def _quota_updated(self, old: Obj, new: Obj) -> None:
        if (new.get("spec") or {}).get("hard") != (new.get("status") or {}).get("hard"):
            self.enqueue(new)

    def _object_deleted(self, obj: Obj) -> None:
        self._enqueue_namespace(namespace_of(obj))

    def _object_updated(self, group: str, plural: str) -> Any:
        def handler(old: Obj, new: Obj) -> None:
            # replenishment: usage that went down (a pod finished, a claim shrank)
            before, after = quota.object_usage(group, plural, old), quota.object_usage(group, plural, new)
            if any(after.get(k, 0) < v for k, v in before.items()):
                self._enqueue_namespace(namespace_of(new))

        return handler

    async def background(self) -> None:
        while True:
            await asyncio.sleep(self.sync_period)
            for q in self.quotas.store.list():
                self.enqueue(q)

    # -- the work ---------------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        q = self.quotas.store.get(key)
        if q is None:
            return
        namespace = namespace_of(q) or ""
        hard = quota.parse_list((q.get("spec") or {}).get("hard"))
        objects: dict[tuple[str, str], list[Obj]] = {}
        for group, plural in quota.resources_of_hard(hard):
            inf = self.tracked.get((group, plural))
            if inf is not None:
                objects[(group, plural)] = inf.store.by_index("namespace", namespace)
                continue
            info = _info(group, plural)
            if info is None or not info.namespaced:
                continue
            listed = await self.client.list_all(info, namespace)
            objects[(group, plural)] = list(listed.get("items") or [])
        status = compute_status(q, objects)
        if status == (q.get("status") or {}):
            return
        try:
            await self.write_status(RESOURCE_QUOTAS, q, status)
            log.debug("quota %s: used %s", key, status["used"])
        except errors.Conflict:
            self.queue.add_rate_limited(key)
        except errors.NotFound:
            pass
