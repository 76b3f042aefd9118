"""The CustomResourceDefinition controller inside the API server (Kubernetes' naming, establishing
and finalizer controllers of ``apiextensions-apiserver`` in one loop).

It follows the CRDs through their watch cache.  For each CRD it decides whether the names are
accepted (no other accepted CRD of the group uses the same plural, singular, short name, kind or
list kind, and no built-in kind does), serves every served version (a registry with its own watch
cache, and the kinds table's entry that routes and discovery read), and only then writes the
``NamesAccepted`` and ``Established`` conditions.  A deleted CRD (``deletionTimestamp`` with the
``customresourcecleanup`` finalizer) has its custom objects deleted -- their own finalizers are
waited for -- then stops being served and loses the finalizer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from apimachinery import conditions, errors
from apimachinery.resources import RESOURCES, ResourceInfo, kind_info, register_custom, unregister_custom
from apimachinery.timefmt import rfc3339

from . import crdschema
from .registry import _DELETE, Registry, Storage

log = logging.getLogger(__name__)

CRD_INFO = kind_info("apiextensions.k8s.io/v1", "CustomResourceDefinition")
CLEANUP_RETRY_SECONDS = 0.5


def accepted_names(crd: dict[str, Any]) -> dict[str, Any]:
    names = dict((crd.get("spec") or {}).get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    return names


def _is_accepted(crd: dict[str, Any]) -> bool:
    cond = conditions.find((crd.get("status") or {}).get("conditions"), "NamesAccepted")
    return cond is not None and cond.get("status") == "True"


def name_conflict(crd: dict[str, Any], others: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) when another accepted CRD of the group, or a built-in kind, holds a name."""
    spec = crd.get("spec") or {}
    group = spec.get("group")
    names = accepted_names(crd)
    plural, kind = names.get("plural"), names.get("kind")
    for r in RESOURCES:
        if r.group == group and r.plural == plural:
            return "PluralConflict", f'"{plural}" is already in use'
        if r.group == group and r.kind == kind:
            return "KindConflict", f'"{kind}" is already in use'
    mine_resources = {plural, names.get("singular"), *(names.get("shortNames") or [])}
    mine_kinds = {kind, names.get("listKind")}
    for other in others:
        if other["metadata"]["name"] == crd["metadata"]["name"] or not _is_accepted(other):
            continue
        if (other.get("spec") or {}).get("group") != group:
            continue
        theirs = (other.get("status") or {}).get("acceptedNames") or accepted_names(other)
        their_resources = {theirs.get("plural"), theirs.get("singular"), *(theirs.get("shortNames") or [])}
        their_kinds = {theirs.get("kind"), theirs.get("listKind")}
        for value in sorted(str(v) for v in (mine_resources & their_resources) if v):
            reason = "PluralConflict" if value == plural else "SingularConflict"
            if value in (names.get("shortNames") or []):
                reason = "ShortNamesConflict"
            return reason, f'"{value}" is already in use'
        for value in sorted(str(v) for v in (mine_kinds & their_kinds) if v):
            reason = "KindConflict" if value == kind else "ListKindConflict"
            return reason, f'"{value}" is already in use'
    return None


def desired_status(crd: dict[str, Any], others: list[dict[str, Any]]) -> dict[str, Any]:
    """The status Kubernetes' controllers would write for ``crd``."""
    status = dict(crd.get("status") or {})
    conflict = name_conflict(crd, others)
    old_conditions = {c.get("type"): c for c in status.get("conditions") or []}

    def cond(type_: str, value: str, reason: str, message: str) -> dict[str, Any]:
        old = old_conditions.get(type_)
        if (
            old
            and old.get("status") == value
            and old.get("reason") == reason
            and old.get("message") == message
        ):
            return old
        return {
            "type": type_,
            "status": value,
            "lastTransitionTime": conditions.transition_time(old, value) or rfc3339(),
            "reason": reason,
            "message": message,
        }

    if conflict is None:
        names = cond("NamesAccepted", "True", "NoConflicts", "no conflicts found")
        established = cond(
            "Established", "True", "InitialNamesAccepted", "the initial names have been accepted"
        )
        status["acceptedNames"] = accepted_names(crd)
        storage = next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))
        stored = list(status.get("storedVersions") or [])
        if storage not in stored:
            stored.append(storage)
        status["storedVersions"] = stored
    else:
        names = cond("NamesAccepted", "False", conflict[0], conflict[1])
        if _is_accepted(crd) and "Established" in old_conditions:
            established = old_conditions["Established"]
        else:
            established = cond("Established", "False", "NotAccepted", "not all names are accepted")
        status.setdefault("acceptedNames", {"plural": "", "kind": ""})
        status.setdefault("storedVersions", [])
    status["conditions"] = [names, established]
    return status


class CRDController:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.crds: dict[str, dict[str, Any]] = {}
        self.served: dict[str, tuple[ResourceInfo, ...]] = {}
        self.cleanups: dict[str, asyncio.Task[None]] = {}

    @property
    def registry(self) -> Registry:
        return self.storage.registry(CRD_INFO)

    async def run(self) -> None:
        try:
            while True:
                try:
                    async for etype, obj in self.registry.watch(None, None, ""):
                        await self.handle(etype, obj)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    log.warning("CustomResourceDefinition watch ended (%s); following them again", e)
                    await asyncio.sleep(1)
        finally:
            for task in self.cleanups.values():
                task.cancel()

    async def handle(self, etype: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if etype == "BOOKMARK":
            return
        if etype == "DELETED":
            self.crds.pop(name, None)
            await self.stop_serving(name)
            return
        self.crds[name] = obj
        await self.sync(obj)

    async def stop_serving(self, name: str) -> None:
        infos = self.served.pop(name, ())
        for info in infos:
            self.storage.terminating.discard((info.group, info.plural))
        unregister_custom(name)
        await self.storage.stop_custom(infos)

    async def sync(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        if crd["metadata"].get("deletionTimestamp"):
            for info in self.served.get(name, ()):
                self.storage.terminating.add((info.group, info.plural))
            status = dict(crd.get("status") or {})
            if conditions.find(status.get("conditions"), "Terminating") is None:
                status["conditions"] = [
                    *(status.get("conditions") or []),
                    {
                        "type": "Terminating",
                        "status": "True",
                        "lastTransitionTime": rfc3339(),
                        "reason": "InstanceDeletionInProgress",
                        "message": "CustomResource deletion is in progress",
                    },
                ]
                await self.write_status(name, status)
            if crdschema.CLEANUP_FINALIZER in (crd["metadata"].get("finalizers") or []):
                task = self.cleanups.get(name)
                if task is None or task.done():
                    self.cleanups[name] = asyncio.create_task(self.cleanup(crd), name=f"crd-cleanup:{name}")
            return
        others = [c for n, c in self.crds.items() if n != name]
        status = desired_status(crd, others)
        if status["conditions"][0]["status"] == "True":
            infos = crdschema.resources_of(crd)
            old = self.served.get(name, ())
            register_custom(name, infos)
            self.storage.serve_custom(infos)
            keep = {(i.group, i.version, i.plural) for i in infos}
            await self.storage.stop_custom(
                tuple(i for i in old if (i.group, i.version, i.plural) not in keep)
            )
            self.served[name] = infos
        if status != crd.get("status"):
            await self.write_status(name, status)

    async def write_status(self, name: str, status: dict[str, Any]) -> None:
        def set_status(current: dict[str, Any]) -> dict[str, Any]:
            current["status"] = status
            return current

        with contextlib.suppress(errors.NotFound):
            await self.registry.guaranteed_update(None, name, set_status)

    async def cleanup(self, crd: dict[str, Any]) -> None:
        """Delete every object of the CRD (waiting for their finalizers), then release the CRD."""
        name = crd["metadata"]["name"]
        try:
            infos = crdschema.resources_of(crd)
        except (KeyError, StopIteration):
            infos = ()
        if infos:
            reg = Registry(self.storage, infos[0])  # reads etcd directly; every version shares the keys
            while True:
                items, _, _ = await reg.list(None)
                if not items:
                    break
                for item in items:
                    meta = item["metadata"]
                    if meta.get("deletionTimestamp"):
                        continue
                    with contextlib.suppress(errors.NotFound):
                        await reg.delete(meta.get("namespace"), meta["name"])
                await asyncio.sleep(CLEANUP_RETRY_SECONDS)
        await self.stop_serving(name)

        def release(current: dict[str, Any]) -> Any:
            finalizers = [
                f for f in current["metadata"].get("finalizers") or [] if f != crdschema.CLEANUP_FINALIZER
            ]
            if not finalizers:
                return _DELETE
            current["metadata"]["finalizers"] = finalizers
            return current

        with contextlib.suppress(errors.NotFound):
            await self.registry.guaranteed_update(None, name, release)
