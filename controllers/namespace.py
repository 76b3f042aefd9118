"""The namespace controller: empties a Terminating namespace, then lets the API server delete it.

For a namespace with ``deletionTimestamp``: ``deletecollection`` every namespaced kind of the
resources table in it, then list each kind (a live read, as Kubernetes' namespaced content
deleter does) to see what is left -- pods still terminating gracefully, objects held by
finalizers.  While anything is left the key comes back after a short delay.  Once empty, the
``kubernetes`` finalizer is removed through ``PUT /api/v1/namespaces/{name}/finalize``, and the
API server deletes the namespace.
"""

from __future__ import annotations

import logging
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.resources import ResourceInfo, all_resources

from .base import NAMESPACES, Controller, ControllerContext
from .util import deep_copy, is_deleting, name_of

log = logging.getLogger(__name__)

FINALIZER = "kubernetes"
RECHECK_SECONDS = 2.0


def namespaced_kinds() -> list[ResourceInfo]:
    """Every namespaced kind, one version each: the built-in ones and the custom resources this
    process knows of (the garbage collector registers each Established CRD's)."""
    seen: set[tuple[str, str]] = set()
    kinds = []
    for r in all_resources():
        if (
            r.namespaced
            and "deletecollection" in r.verbs
            and "list" in r.verbs
            and (r.group, r.plural) not in seen
        ):
            seen.add((r.group, r.plural))
            kinds.append(r)
    return kinds


class NamespaceController(Controller):
    name = "namespace-controller"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.ns_informer = self.informer(NAMESPACES, on_change=self.enqueue)

    async def reconcile(self, key: str) -> None:
        ns = self.ns_informer.store.get(key)
        if ns is None or not is_deleting(ns):
            return
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        remaining = await self.delete_content(key)
        if remaining:
            log.info("namespace %s: waiting for %s", key, ", ".join(f"{n} {k}" for k, n in remaining.items()))
            self.queue.add_after(key, RECHECK_SECONDS)
            return
        await self.finalize(ns)

    async def delete_content(self, namespace: str) -> dict[str, int]:
        """Delete everything in ``namespace``; return how many objects of each kind remain."""
        remaining: dict[str, int] = {}
        for info in namespaced_kinds():
            try:
                await self.client.delete_collection(info, namespace)
            except (errors.NotFound, errors.MethodNotAllowed):
                continue
            listed = await self.client.list(info, namespace)
            items = listed.get("items") or []
            if items:
                remaining[info.plural] = len(items)
        return remaining

    async def finalize(self, ns: Obj) -> None:
        body = deep_copy(ns)
        body.setdefault("spec", {})["finalizers"] = [
            f for f in (ns.get("spec") or {}).get("finalizers") or [] if f != FINALIZER
        ]
        try:
            await self.client.raw("PUT", f"/api/v1/namespaces/{name_of(ns)}/finalize", body=body)
        except errors.NotFound:
            return
        log.info("namespace %s: content deleted; finalized", name_of(ns))
