"""The garbage collector: deletes dependents whose owners are gone, honours deletion propagation.

It watches every kind of the resources table (except Events) through the shared factory and
keeps a graph: object uid -> (kind, key), and owner uid -> dependents.  The kind of an Established
CustomResourceDefinition is watched too, by an informer of the collector's own that is stopped and
dropped (its objects leave the graph as deleted) when the definition is deleted.  Keys on its
queue are ``plural.group|namespace/name``.  ``reconcile`` of one object:

* it is being deleted with the ``foregroundDeletion`` finalizer -> delete its dependents
  (foreground themselves when they have blocking dependents), and once no dependent with
  ``blockOwnerDeletion`` is left, remove the finalizer;
* it is being deleted with the ``orphan`` finalizer -> remove its owner reference from every
  dependent, then the finalizer;
* otherwise, for its ``ownerReferences``: an owner that no longer exists (checked with a live read
  when the cache does not know the uid) is dangling; all owners dangling -> delete the object
  (Background, uid precondition); some -> patch the dangling references away.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.informer import Informer, object_key
from apimachinery.resources import RESOURCES, ResourceInfo, by_kind, crd_resources, register_custom

from .base import Controller, ControllerContext
from .refmanager import other_refs, patch_metadata
from .util import deep_copy, is_deleting, meta, name_of, uid_of

log = logging.getLogger(__name__)

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
IGNORED = {("", "events")}
CRDS = "customresourcedefinitions.apiextensions.k8s.io"


def resource_id(info: ResourceInfo) -> str:
    return f"{info.plural}.{info.group}" if info.group else info.plural


def owner_refs(obj: Obj) -> list[dict[str, Any]]:
    return list(meta(obj).get("ownerReferences") or [])


def finalizers(obj: Obj) -> list[str]:
    return list(meta(obj).get("finalizers") or [])


class GarbageCollector(Controller):
    name = "garbage-collector-controller"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.kinds: dict[str, tuple[ResourceInfo, Informer]] = {}
        self.uids: dict[str, str] = {}  # uid -> item key
        self.dependents: dict[str, set[str]] = {}  # owner uid -> dependent item keys
        self._owners_of: dict[str, set[str]] = {}  # item key -> owner uids it is indexed under
        # the kinds of CustomResourceDefinitions: kind -> (the definition's name, its informer's task)
        self.custom: dict[str, tuple[str, asyncio.Task[None]]] = {}
        for info in RESOURCES:
            if (info.group, info.plural) in IGNORED or "delete" not in info.verbs:
                continue
            self._watch_kind(info)

    def _watch_kind(self, info: ResourceInfo, inf: Informer | None = None) -> None:
        if inf is None:
            inf = self.informer(info)
        rid = resource_id(info)
        self.kinds[rid] = (info, inf)
        inf.add_event_handler(
            lambda obj, rid=rid: self._added(rid, obj),
            lambda old, new, rid=rid: self._updated(rid, old, new),
            lambda obj, rid=rid: self._deleted(rid, obj),
        )

    def _crd_seen(self, crd: Obj) -> None:
        """An Established CustomResourceDefinition: its kind joins the graph (and ``by_kind``, for
        owner references to custom objects), watched in its storage version."""
        conditions = (crd.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        try:
            infos = crd_resources(crd)
        except (KeyError, StopIteration, TypeError):
            return
        if not infos:
            return
        register_custom(name_of(crd), infos)
        info = next((i for i in infos if i.version == i.storage_version), infos[0])
        rid = resource_id(info)
        if rid not in self.kinds:
            inf = Informer(self.client, info)
            self._watch_kind(info, inf)
            task = asyncio.get_running_loop().create_task(inf.run(), name=f"informer-{info.plural}")
            self.custom[rid] = (name_of(crd), task)

    def _crd_gone(self, crd: Obj) -> None:
        """A deleted CustomResourceDefinition: stop watching its kind, which the API server no
        longer serves; what its cache still held leaves the graph as deleted."""
        for rid, (crd_name, _) in list(self.custom.items()):
            if crd_name == name_of(crd):
                self._drop_kind(rid)

    def _drop_kind(self, rid: str) -> None:
        inf = self._stop_kind(rid)
        for obj in inf.store.list():
            self._deleted(rid, obj)
        log.info("%s: no longer watching %s (its CustomResourceDefinition is gone)", self.name, rid)

    def _stop_kind(self, rid: str) -> Informer:
        _, task = self.custom.pop(rid)
        _, inf = self.kinds.pop(rid)
        inf.stop()
        task.cancel()
        return inf

    async def run(self, workers: int | None = None) -> None:
        try:
            await super().run(workers)
        finally:
            for rid in list(self.custom):
                self._stop_kind(rid)

    # -- the graph ------------------------------------------------------------------------------

    @staticmethod
    def item(rid: str, obj: Obj) -> str:
        return f"{rid}|{object_key(obj)}"

    def _index(self, key: str, obj: Obj) -> None:
        self.uids[uid_of(obj)] = key
        new_owners = {str(r.get("uid")) for r in owner_refs(obj) if r.get("uid")}
        old_owners = self._owners_of.get(key, set())
        for uid in old_owners - new_owners:
            deps = self.dependents.get(uid)
            if deps is not None:
                deps.discard(key)
                if not deps:
                    del self.dependents[uid]
        for uid in new_owners:
            self.dependents.setdefault(uid, set()).add(key)
        if new_owners:
            self._owners_of[key] = new_owners
        else:
            self._owners_of.pop(key, None)

    def _needs_attention(self, obj: Obj) -> bool:
        if is_deleting(obj) and (FOREGROUND in finalizers(obj) or ORPHAN in finalizers(obj)):
            return True
        return bool(owner_refs(obj))

    def _added(self, rid: str, obj: Obj) -> None:
        if rid == CRDS:
            self._crd_seen(obj)
        key = self.item(rid, obj)
        self._index(key, obj)
        if self._needs_attention(obj):
            self.queue.add(key)
        # a dependent created after its owner vanished is caught by its own owner check above

    def _updated(self, rid: str, old: Obj, new: Obj) -> None:
        if rid == CRDS:
            self._crd_seen(new)
        key = self.item(rid, new)
        self._index(key, new)
        changed_refs = owner_refs(old) != owner_refs(new)
        started_deleting = is_deleting(new) and (not is_deleting(old) or finalizers(old) != finalizers(new))
        if changed_refs or started_deleting:
            if self._needs_attention(new):
                self.queue.add(key)
            # an owner waiting in foreground may now be free of this blocking dependent
            for ref in owner_refs(old):
                self._enqueue_uid(str(ref.get("uid") or ""))

    def _deleted(self, rid: str, obj: Obj) -> None:
        if rid == CRDS:
            self._crd_gone(obj)
        key = self.item(rid, obj)
        uid = uid_of(obj)
        if self.uids.get(uid) == key:
            del self.uids[uid]
        self._index(key, {"metadata": {}})
        for dep in list(self.dependents.get(uid, ())):
            self.queue.add(dep)
        for ref in owner_refs(obj):
            self._enqueue_uid(str(ref.get("uid") or ""))

    def _enqueue_uid(self, uid: str) -> None:
        key = self.uids.get(uid)
        if key is not None:
            self.queue.add(key)

    def _lookup(self, key: str) -> tuple[ResourceInfo, Obj | None]:
        rid, _, obj_key = key.partition("|")
        info, inf = self.kinds[rid]
        return info, inf.store.get(obj_key)

    # -- reconcile ------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        rid = key.partition("|")[0]
        if rid not in self.kinds:
            return
        info, obj = self._lookup(key)
        if obj is None:
            return
        if is_deleting(obj) and FOREGROUND in finalizers(obj):
            await self._foreground(info, obj)
            return
        if is_deleting(obj) and ORPHAN in finalizers(obj):
            await self._orphan(info, obj)
            return
        if owner_refs(obj):
            await self._check_owners(info, obj)

    def _dependents_of(self, obj: Obj) -> list[tuple[ResourceInfo, Obj]]:
        out = []
        for dep_key in sorted(self.dependents.get(uid_of(obj), ())):
            dep_info, dep = self._lookup(dep_key)
            if dep is not None:
                out.append((dep_info, dep))
        return out

    async def _remove_finalizer(self, info: ResourceInfo, obj: Obj, finalizer: str) -> None:
        updated = deep_copy(obj)
        updated["metadata"]["finalizers"] = [f for f in finalizers(obj) if f != finalizer]
        try:
            await self.client.update(info, updated)
        except errors.NotFound:
            return
        log.info("%s %s: removed finalizer %s", info.kind, object_key(obj), finalizer)

    async def _foreground(self, info: ResourceInfo, owner: Obj) -> None:
        uid = uid_of(owner)
        blocking = 0
        for dep_info, dep in self._dependents_of(owner):
            ref = next((r for r in owner_refs(dep) if r.get("uid") == uid), {})
            if ref.get("blockOwnerDeletion"):
                blocking += 1
            if is_deleting(dep):
                continue
            has_blocking = any(
                any(r.get("uid") == uid_of(dep) and r.get("blockOwnerDeletion") for r in owner_refs(d2))
                for _, d2 in self._dependents_of(dep)
            )
            policy = "Foreground" if has_blocking else "Background"
            log.info(
                "%s %s: deleting dependent %s %s (%s)",
                info.kind,
                object_key(owner),
                dep_info.kind,
                object_key(dep),
                policy,
            )
            try:
                await self._delete(dep_info, dep, policy)
            except errors.NotFound:
                continue
        if blocking == 0:
            await self._remove_finalizer(info, owner, FOREGROUND)

    async def _orphan(self, info: ResourceInfo, owner: Obj) -> None:
        uid = uid_of(owner)
        for dep_info, dep in self._dependents_of(owner):
            if (
                await patch_metadata(self.client, dep_info, dep, ownerReferences=other_refs(dep, uid) or None)
                is not None
            ):
                log.info(
                    "%s %s: orphaned %s %s", info.kind, object_key(owner), dep_info.kind, object_key(dep)
                )
        await self._remove_finalizer(info, owner, ORPHAN)

    async def _delete(self, info: ResourceInfo, obj: Obj, policy: str) -> None:
        await self.client.delete(
            info,
            name_of(obj),
            meta(obj).get("namespace"),
            propagation_policy=policy,
            preconditions={"uid": uid_of(obj)},
        )

    async def _owner_exists(self, obj: Obj, ref: dict[str, Any]) -> bool:
        """Does the owner ``ref`` points at exist (same uid)?  Cache first, then a live read."""
        uid = str(ref.get("uid") or "")
        if uid in self.uids:
            return True
        owner_info = by_kind(str(ref.get("apiVersion") or ""), str(ref.get("kind") or ""))
        if owner_info is None:
            return True  # a kind we do not serve: never delete on its account
        namespace = meta(obj).get("namespace") if owner_info.namespaced else None
        try:
            owner = await self.client.get(owner_info, str(ref.get("name") or ""), namespace)
        except errors.NotFound:
            return False
        return uid_of(owner) == uid

    async def _check_owners(self, info: ResourceInfo, obj: Obj) -> None:
        refs = owner_refs(obj)
        dangling = [r for r in refs if not await self._owner_exists(obj, r)]
        if not dangling:
            return
        if len(dangling) == len(refs):
            if is_deleting(obj):
                return
            log.info("%s %s: all owners gone; deleting", info.kind, object_key(obj))
            try:
                await self._delete(info, obj, "Background")
            except (errors.NotFound, errors.Conflict):
                pass
            return
        gone = {r.get("uid") for r in dangling}
        keep = [r for r in refs if r.get("uid") not in gone]
        log.info("%s %s: removing dangling owner references", info.kind, object_key(obj))
        await patch_metadata(self.client, info, obj, ownerReferences=keep)
