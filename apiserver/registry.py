"""Generic storage for every kind: Kubernetes' ``genericregistry.Store`` over etcd.

One :class:`Registry` per resource does create, get, list, update (compare-and-swap on etcd's
``mod_revision``, which is the object's ``resourceVersion``), graceful and finalizer-aware delete,
and watch (served by the resource's :class:`~apiserver.watchcache.WatchCache`, or by a direct etcd
watch for versions older than the cache holds).  Kind-specific rules come from
:mod:`apiserver.strategy`; nothing here knows about a particular kind beyond a few documented
deletion rules (Pods are deleted gracefully, Namespaces wait for their ``spec.finalizers``).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from apimachinery import errors, tracing
from apimachinery.resources import RESOURCES, SYSTEM_NAMESPACES, ResourceInfo
from apimachinery.timefmt import rfc3339

from . import strategy, tracestore
from .allocator import Allocation, ServiceAllocations
from .etcd import KV, Compacted, Etcd, EtcdUnavailable
from .watchcache import TooOld, WatchCache, Watcher, decode

if TYPE_CHECKING:
    from .admission import Admission

log = logging.getLogger(__name__)

Match = Callable[[dict[str, Any]], bool]
_DELETE = object()  # returned by an update function to delete the object instead
UNDELETABLE_NAMESPACES = ("default", "kube-system", "kube-public")
EVENT_TTL_SECONDS = 3600


def encode(obj: dict[str, Any]) -> bytes:
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta:
        obj = dict(obj)
        obj["metadata"] = {k: v for k, v in meta.items() if k != "resourceVersion"}
    return orjson.dumps(obj)


def _rv(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _name_mismatch(given: Any, name: str) -> errors.BadRequest:
    return errors.BadRequest(f"the name of the object ({given}) does not match the name on the URL ({name})")


def encode_continue(revision: int, start_key: str, prefix: str) -> str:
    token = {"v": "meta.k8s.io/v1", "rv": revision, "start": start_key[len(prefix) :]}
    return base64.urlsafe_b64encode(orjson.dumps(token)).decode()


def decode_continue(token: str, prefix: str) -> tuple[int, str]:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(raw["rv"]), prefix + str(raw["start"])
    except Exception:
        raise errors.BadRequest("continue key is not valid: malformed continue token") from None


def unavailable(e: Exception) -> errors.ServiceUnavailable:
    return errors.ServiceUnavailable(f"etcd is unavailable: {e}", retry_after=1)


class Registry:
    def __init__(self, storage: Storage, info: ResourceInfo) -> None:
        self.storage = storage
        self.etcd = storage.etcd
        self.info = info
        self.cache = WatchCache(storage.etcd, info)

    # --- helpers ---------------------------------------------------------------------------------
    def key(self, namespace: str | None, name: str) -> str:
        return self.info.key(namespace, name)

    def not_found(self, name: str) -> errors.NotFound:
        return errors.not_found(self.info.plural, name, self.info.group)

    # --- reads -----------------------------------------------------------------------------------
    async def get(self, namespace: str | None, name: str) -> dict[str, Any]:
        kv, _ = await self.etcd.get(self.key(namespace, name))
        if kv is None:
            raise self.not_found(name)
        return decode(kv)

    async def list(
        self,
        namespace: str | None,
        match: Match | None = None,
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
    ) -> tuple[list[dict[str, Any]], int, str]:
        """Items, the revision they were read at, and a continue token ("" when complete)."""
        prefix = self.info.key_prefix(namespace)
        if resource_version == "0" and not limit and not continue_token and self.cache.ready.is_set():
            cached, rev = self.cache.list(prefix)
            return [o for o in cached if match is None or match(o)], rev, ""
        revision = 0
        start: bytes | None = None
        if continue_token:
            revision, start_key = decode_continue(continue_token, prefix)
            start = start_key.encode()
        elif resource_version not in ("", "0"):
            revision = _parse_rv(resource_version)
        items: list[dict[str, Any]] = []
        page = max(limit, 200) if limit else 1000
        while True:
            try:
                kvs, more, read_rev = await self.etcd.range(
                    prefix, start=start, limit=page, revision=revision
                )
            except Compacted:
                if continue_token:
                    raise errors.Gone(
                        "The provided continue parameter is too old to display a consistent list result. "
                        "You can start a new list without the continue parameter."
                    ) from None
                raise errors.Gone(f"too old resource version: {revision}") from None
            revision = revision or read_rev
            for i, kv in enumerate(kvs):
                obj = decode(kv)
                if match is None or match(obj):
                    items.append(obj)
                    if limit and len(items) >= limit:
                        if i + 1 < len(kvs) or more:
                            return items, revision, encode_continue(revision, kv.key.decode() + "\0", prefix)
                        return items, revision, ""
            if not more or not kvs:
                return items, revision, ""
            start = kvs[-1].key + b"\0"

    # --- writes ----------------------------------------------------------------------------------
    async def create(
        self, namespace: str | None, obj: dict[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        info = self.info
        if info.custom and (info.group, info.plural) in self.storage.terminating:
            raise errors.MethodNotAllowed(
                "create not allowed while custom resource definition is terminating"
            )
        traced = tracing.active() and info.kind in tracestore.TRACED_KINDS and not dry_run
        start = time.time_ns() if traced else 0
        if info.namespaced:
            await self.storage.check_namespace_accepts(namespace or "")
        strategy.prepare_for_create(info, obj, namespace)
        admitted = time.time_ns() if traced else 0
        if self.storage.admission is not None:  # apiserver/admission.py
            await self.storage.admission.create(info, namespace, obj, dry_run)
        written = time.time_ns() if traced else 0
        name = obj["metadata"]["name"]
        if dry_run:
            # as Kubernetes' DryRunnableStorage: the name must still be free, nothing is written
            kv, _ = await self.etcd.get(self.key(namespace, name))
            if kv is not None:
                raise errors.already_exists(info.plural, name, info.group)
            if info.kind == "Service":
                await self.storage.service_allocations.allocate(obj, dry_run=True)
            return obj
        lease = 0
        if info.kind == "Event":
            lease = await self.storage.event_lease()
        alloc = None
        if info.kind == "Service":  # ClusterIP and NodePorts (apiserver/allocator.py)
            alloc = await self.storage.service_allocations.allocate(obj)
        try:
            rev = await self.etcd.create(self.key(namespace, name), encode(obj), lease=lease)
            if rev is None:
                raise errors.already_exists(info.plural, name, info.group)
        except BaseException:
            if alloc is not None:
                await alloc.rollback()
            raise
        obj["metadata"]["resourceVersion"] = str(rev)
        if traced:  # minik trace: the request, admission and the etcd write (apiserver/tracestore.py)
            tracestore.record_create(info, obj, start, (admitted, written), (written, time.time_ns()))
        return obj

    async def guaranteed_update(
        self,
        namespace: str | None,
        name: str,
        update: Callable[[dict[str, Any]], Any],
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Read, apply ``update`` to a copy, compare-and-swap; retry when someone else wrote first.

        ``update`` returns the new object, the same object for a no-op, or ``_DELETE``.  It may
        raise (a 409 for a stale resourceVersion, a 422 from validation) and is then not retried.
        Returns (object, deleted).
        """
        key = self.key(namespace, name)
        kv, _ = await self.etcd.get(key)
        for _attempt in range(50):
            if kv is None:
                raise self.not_found(name)
            current = decode(kv)
            new = update(copy.deepcopy(current))
            if inspect.isawaitable(new):  # a Service update allocates (apiserver/allocator.py)
                new = await new
            if new is not _DELETE and _should_delete_during_update(new):
                new = _DELETE
            if new is _DELETE:
                if dry_run:
                    return current, True
                rev, kv2 = await self.etcd.delete(key, kv.mod_revision)
                if rev is not None:
                    current["metadata"]["resourceVersion"] = str(rev)
                    return current, True
                kv = kv2
                continue
            assert isinstance(new, dict)
            new.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
            if (new == current and not kv.stale) or dry_run:  # stale: written with an old key
                return new, False
            rev, kv2 = await self.etcd.update(key, encode(new), kv.mod_revision)
            if rev is not None:
                new["metadata"]["resourceVersion"] = str(rev)
                return new, False
            kv = kv2
        raise errors.conflict(self.info.plural, name, self.info.group, "too many concurrent writers")

    async def update(
        self,
        namespace: str | None,
        name: str,
        new: dict[str, Any],
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PUT: replace the object (or its status) if ``resourceVersion`` still matches."""
        meta = new.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise _name_mismatch(meta.get("name"), name)
        if self.info.namespaced and meta.get("namespace") not in (None, "", namespace):
            raise errors.BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        want_rv = str(meta.get("resourceVersion") or "")

        def apply(current: dict[str, Any]) -> Any:
            self._check_resource_version(name, want_rv, current)
            if subresource == "finalize":
                return strategy.prepare_for_finalize(new, current)
            return strategy.prepare_for_update(self.info, copy.deepcopy(new), current, subresource)

        obj, _ = await self._update_with_allocations(namespace, name, apply, subresource, dry_run)
        return obj

    async def patch(
        self,
        namespace: str | None,
        name: str,
        patcher: Callable[[dict[str, Any]], dict[str, Any]],
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PATCH: ``patcher`` turns the stored object into the patched one; then as for an update."""

        def apply(current: dict[str, Any]) -> Any:
            patched = patcher(copy.deepcopy(current))
            if not isinstance(patched, dict):
                raise errors.BadRequest("the patch must produce an object")
            self._check_resource_version(name, _rv(patched), current)
            meta = patched.get("metadata") or {}
            if meta.get("name", name) != name:
                raise _name_mismatch(meta.get("name"), name)
            return strategy.prepare_for_update(self.info, patched, current, subresource)

        obj, _ = await self._update_with_allocations(namespace, name, apply, subresource, dry_run)
        return obj

    def _check_resource_version(self, name: str, want_rv: str, current: dict[str, Any]) -> None:
        """409 when the client names a ``resourceVersion`` that is no longer the stored one."""
        if want_rv and want_rv != _rv(current):
            raise errors.conflict(self.info.plural, name, self.info.group)

    async def _update_with_allocations(
        self,
        namespace: str | None,
        name: str,
        apply: Callable[[dict[str, Any]], Any],
        subresource: str | None,
        dry_run: bool,
    ) -> tuple[dict[str, Any], bool]:
        """``guaranteed_update``; for a Service's spec, also keep/allocate/release its ClusterIP
        and NodePorts (each attempt's allocation is undone when its compare-and-swap loses)."""
        if self.storage.admission is not None:  # each attempt's result is admitted
            apply = self.storage.admission.wrap_update(
                self.info, namespace, name, apply, subresource, dry_run
            )
        if self.info.kind != "Service" or subresource is not None:
            return await self.guaranteed_update(namespace, name, apply, dry_run)
        allocs: list[Allocation] = []

        async def apply_and_allocate(current: dict[str, Any]) -> Any:
            for earlier in allocs:
                await earlier.rollback()
            allocs.clear()
            new = apply(copy.deepcopy(current))
            if inspect.isawaitable(new):
                new = await new
            if isinstance(new, dict):
                allocs.append(await self.storage.service_allocations.allocate(new, current, dry_run))
            return new

        try:
            obj, deleted = await self.guaranteed_update(namespace, name, apply_and_allocate, dry_run)
        except BaseException:
            for a in allocs:
                await a.rollback()
            raise
        if deleted and not dry_run:
            for a in allocs:
                await a.rollback()
            await self.storage.service_allocations.release_service(obj)
        else:
            for a in allocs:
                await a.commit()
        return obj, deleted

    async def delete(
        self,
        namespace: str | None,
        name: str,
        options: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """DELETE with Kubernetes' semantics.  Returns (object, deleted now)."""
        options = options or {}
        info = self.info
        if info.kind == "Namespace" and name in UNDELETABLE_NAMESPACES:
            raise errors.Forbidden(
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                name=name,
                kind="namespaces",
            )
        pre = options.get("preconditions") or {}
        grace = options.get("gracePeriodSeconds")
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy is None:
            policy = "Orphan" if info.kind == "Job" else "Background"
        if policy not in ("Orphan", "Background", "Foreground"):
            raise errors.invalid(
                "DeleteOptions",
                "",
                [
                    errors.cause(
                        "propagationPolicy", f'Unsupported value: "{policy}"', "FieldValueNotSupported"
                    )
                ],
            )

        def apply(current: dict[str, Any]) -> Any:
            meta = current["metadata"]
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise errors.conflict(
                    info.plural,
                    name,
                    info.group,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta.get('uid')}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise errors.conflict(
                    info.plural,
                    name,
                    info.group,
                    f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                    f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
                )
            return _deletion_plan(info, current, grace, policy)

        if self.storage.admission is not None:
            await self.storage.admission.delete(info, namespace, name, self.get, dry_run)
        obj, deleted = await self.guaranteed_update(namespace, name, apply, dry_run)
        if info.kind == "Namespace" and not dry_run:
            self.storage.namespace_deleting(name)  # before the client hears of it: see Storage
        if deleted and info.kind == "Service" and not dry_run:
            await self.storage.service_allocations.release_service(obj)
        return obj, deleted

    # --- watch -----------------------------------------------------------------------------------
    async def watch(
        self, namespace: str | None, match: Match | None, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Events after ``resource_version`` ("" or "0": the current state as ADDED, then changes).

        Ends with :class:`errors.Gone` when the version is compacted or the watcher fell behind.
        """
        prefix = self.info.key_prefix(namespace)
        await asyncio.wait_for(self.cache.ready.wait(), timeout=30)
        revision = None if resource_version in ("", "0") else _parse_rv(resource_version)
        try:
            watcher: Watcher | None = self.cache.watch(prefix, match, revision)
        except TooOld:
            watcher = None
        if watcher is None:
            assert revision is not None
            async for item in self._direct_watch(prefix, match, revision):
                yield item
            return
        try:
            while True:
                next_event = await watcher.queue.get()
                if next_event is None:
                    if isinstance(watcher.error, Compacted) or watcher.error is None and watcher.closed:
                        raise errors.Gone("the watch cache was reset; please relist")
                    return
                yield next_event
        finally:
            watcher.close()

    async def _direct_watch(
        self, prefix: str, match: Match | None, revision: int
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """A watch from a version older than the cache holds, read straight from etcd's history."""
        try:
            async for batch in self.etcd.watch(prefix, revision + 1):
                if isinstance(batch, int):
                    continue
                for ev in batch:
                    for item in _translate(ev, match):
                        yield item
        except Compacted:
            raise errors.Gone(f"too old resource version: {revision}") from None
        except EtcdUnavailable as e:
            raise unavailable(e) from None


def _translate(ev: Any, match: Match | None) -> list[tuple[str, dict[str, Any]]]:
    def ok(o: dict[str, Any] | None) -> bool:
        return o is not None and (match is None or match(o))

    prev = decode(ev.prev) if ev.prev is not None else None
    if ev.type == "DELETE":
        if prev is None or not ok(prev):
            return []
        prev["metadata"]["resourceVersion"] = str(ev.revision)
        return [("DELETED", prev)]
    obj = decode(ev.kv)
    if ev.kv.create_revision == ev.kv.mod_revision or prev is None:
        return [("ADDED", obj)] if ok(obj) else []
    cur_ok, old_ok = ok(obj), ok(prev)
    if cur_ok and old_ok:
        return [("MODIFIED", obj)]
    if cur_ok:
        return [("ADDED", obj)]
    if old_ok and prev is not None:
        prev["metadata"]["resourceVersion"] = str(ev.revision)
        return [("DELETED", prev)]
    return []


def _parse_rv(value: str) -> int:
    try:
        rv = int(value)
        if rv < 0:
            raise ValueError
        return rv
    except ValueError:
        raise errors.BadRequest(f'invalid resource version "{value}"') from None


def _should_delete_during_update(obj: dict[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    return bool(
        meta.get("deletionTimestamp")
        and not meta.get("finalizers")
        and not meta.get("deletionGracePeriodSeconds")
        and not (obj.get("kind") == "Namespace" and (obj.get("spec") or {}).get("finalizers"))
    )


def _timestamp_in(seconds: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _deletion_plan(info: ResourceInfo, current: dict[str, Any], grace: Any, policy: str) -> Any:
    """What a DELETE does to ``current``: ``_DELETE`` now, or the object marked for deletion."""
    meta = current["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    if policy == "Orphan" and "orphan" not in finalizers and "foregroundDeletion" not in finalizers:
        finalizers.append("orphan")
    elif policy == "Foreground" and "foregroundDeletion" not in finalizers and "orphan" not in finalizers:
        finalizers.append("foregroundDeletion")

    if info.kind == "Namespace":
        spec_finalizers = (current.get("spec") or {}).get("finalizers") or []
        if spec_finalizers or finalizers:
            if meta.get("deletionTimestamp"):
                return current
            meta["deletionTimestamp"] = rfc3339()
            meta["deletionGracePeriodSeconds"] = 0
            if finalizers:
                meta["finalizers"] = finalizers
            current.setdefault("status", {})["phase"] = "Terminating"
            return current
        return _DELETE

    if info.kind == "Pod":
        spec = current.get("spec") or {}
        phase = (current.get("status") or {}).get("phase")
        period = spec.get("terminationGracePeriodSeconds", 30) if grace is None else int(grace)
        if period > 0 and spec.get("nodeName") and phase not in ("Succeeded", "Failed"):
            existing = meta.get("deletionGracePeriodSeconds")
            if meta.get("deletionTimestamp") and existing is not None and existing <= period:
                return current
            meta["deletionTimestamp"] = _timestamp_in(period)
            meta["deletionGracePeriodSeconds"] = period
            if finalizers:
                meta["finalizers"] = finalizers
            return current
        if meta.get("deletionTimestamp") and meta.get("finalizers"):
            meta["deletionGracePeriodSeconds"] = 0
            return current

    if finalizers:
        if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []):
            return current
        meta.setdefault("deletionTimestamp", rfc3339())
        meta["deletionGracePeriodSeconds"] = 0
        meta["finalizers"] = finalizers
        if strategy.has_generation(info):
            meta["generation"] = int(meta.get("generation") or 1) + 1
        return current
    return _DELETE


LIVE_LOOKUP_SECONDS = 30.0  # how long a deleted namespace is read live for creates


class Storage:
    """All registries over one etcd, plus the few cross-kind checks (namespace lifecycle)."""

    def __init__(self, etcd: Etcd) -> None:
        self.etcd = etcd
        self.registries: dict[tuple[str, str, str], Registry] = {
            (r.group, r.version, r.plural): Registry(self, r) for r in RESOURCES
        }
        self._event_lease: tuple[int, float] | None = None
        # Namespaces deleted through this server lately: creates in them read the namespace from
        # etcd, not from the watch cache, which may not have seen the deletion yet (Kubernetes'
        # NamespaceLifecycle keeps the same "force live lookup" list).
        self._deleted_namespaces: dict[str, float] = {}
        # (group, plural) of custom resources whose CRD is being deleted: creates are refused
        self.terminating: set[tuple[str, str]] = set()
        # Service ClusterIP/NodePort allocation; apiserver.main replaces it with the configured ranges.
        self.service_allocations = ServiceAllocations(etcd)
        # Admission plugins (apiserver/admission.py); apiserver.main installs them, None = none.
        self.admission: Admission | None = None

    def registry(self, info: ResourceInfo) -> Registry:
        reg = self.registries.get((info.group, info.version, info.plural))
        if reg is None:  # a custom resource that stopped being served during the request
            raise errors.NotFound("the server could not find the requested resource")
        return reg

    def serve_custom(self, infos: tuple[ResourceInfo, ...]) -> None:
        """Registries (with started watch caches) for a CRD's versions; an existing one takes the
        new definition (schema, columns) and keeps its cache."""
        for info in infos:
            key = (info.group, info.version, info.plural)
            reg = self.registries.get(key)
            if reg is None:
                reg = self.registries[key] = Registry(self, info)
                reg.cache.start()
            reg.info = info

    async def stop_custom(self, infos: tuple[ResourceInfo, ...]) -> None:
        for info in infos:
            reg = self.registries.pop((info.group, info.version, info.plural), None)
            if reg is not None:
                await reg.cache.stop()

    @property
    def namespaces(self) -> Registry:
        return self.registries[("", "v1", "namespaces")]

    def start(self) -> None:
        for r in self.registries.values():
            r.cache.start()

    async def stop(self) -> None:
        for r in list(self.registries.values()):
            await r.cache.stop()

    def request_progress(self) -> None:
        for r in self.registries.values():
            r.cache.request_progress()

    def namespace_deleting(self, namespace: str) -> None:
        now = time.monotonic()
        self._deleted_namespaces = {
            n: t for n, t in self._deleted_namespaces.items() if now - t < LIVE_LOOKUP_SECONDS
        }
        self._deleted_namespaces[namespace] = now

    async def check_namespace_accepts(self, namespace: str) -> None:
        """Creating in a missing namespace is a 404; in a terminating one a 403."""
        ns = self.namespaces.cache.get(self.namespaces.key(None, namespace))
        deleted_at = self._deleted_namespaces.get(namespace)
        if ns is None or (deleted_at is not None and time.monotonic() - deleted_at < LIVE_LOOKUP_SECONDS):
            kv, _ = await self.etcd.get(self.namespaces.key(None, namespace))
            ns = decode(kv) if kv is not None else None
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if (ns.get("metadata") or {}).get("deletionTimestamp") or (ns.get("status") or {}).get(
            "phase"
        ) == "Terminating":
            raise errors.Forbidden(
                f"unable to create new content in namespace {namespace} because it is being terminated",
                name=namespace,
                kind="namespaces",
            )

    async def event_lease(self) -> int:
        """Events expire after an hour, as in Kubernetes: one etcd lease shared per minute."""
        now = time.monotonic()
        if self._event_lease is None or now - self._event_lease[1] > 60:
            lease_id = await self.etcd.grant_lease(EVENT_TTL_SECONDS + 60)
            self._event_lease = (lease_id, now)
        return self._event_lease[0]

    async def repair_service_allocations(self) -> None:
        """Rebuild the ClusterIP/NodePort allocation records from the stored Services."""
        services = self.registries[("", "v1", "services")]
        await self.service_allocations.repair(services.info.key_prefix())

    async def ensure_system_namespaces(self) -> None:
        for name in SYSTEM_NAMESPACES:
            try:
                await self.namespaces.create(None, {"metadata": {"name": name}})
                log.info("created namespace %s", name)
            except errors.AlreadyExists:
                pass


__all__ = ["Registry", "Storage", "KV", "encode", "unavailable"]
