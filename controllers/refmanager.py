"""Adoption and release of dependents by selector (client-go's ``ControllerRefManager``).

An owner claims the objects in its namespace that its selector matches: orphans it adopts (adds
itself as the controller owner reference), objects it owns but that stopped matching it releases
(removes its reference).  Objects controlled by another owner are never touched.  Writes are merge
patches of the whole ``ownerReferences`` list carrying the object's ``resourceVersion``, so a
concurrent change makes the patch fail with 409 and the owner's key is requeued.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from apimachinery import errors
from apimachinery.client import Client, Obj
from apimachinery.resources import ResourceInfo
from apimachinery.selectors import LabelSelector

from .util import controller_ref, is_deleting, labels_of, meta, name_of, namespace_of, uid_of

log = logging.getLogger(__name__)


def adopt_patch(obj: Obj, ref: dict[str, Any]) -> Obj:
    refs = [r for r in meta(obj).get("ownerReferences") or [] if r.get("uid") != ref["uid"]]
    refs.append(ref)
    return {"metadata": {"ownerReferences": refs, "resourceVersion": meta(obj).get("resourceVersion")}}


def release_patch(obj: Obj, owner_uid: str) -> Obj:
    refs = [r for r in meta(obj).get("ownerReferences") or [] if r.get("uid") != owner_uid]
    return {
        "metadata": {"ownerReferences": refs or None, "resourceVersion": meta(obj).get("resourceVersion")}
    }


async def claim(
    client: Client,
    info: ResourceInfo,
    owner: Obj,
    owner_ref: dict[str, Any],
    selector: LabelSelector,
    candidates: Iterable[Obj],
    can_adopt: Callable[[], Awaitable[None]],
) -> list[Obj]:
    """The candidates this owner controls after adopting and releasing (ClaimPods/ClaimReplicaSets)."""
    owner_uid = uid_of(owner)
    owner_deleting = is_deleting(owner)
    claimed: list[Obj] = []
    adopt_checked = False
    for obj in candidates:
        ref = controller_ref(obj)
        matches = selector.matches(labels_of(obj))
        if ref is not None:
            if ref.get("uid") != owner_uid:
                continue
            if matches:
                claimed.append(obj)
                continue
            if owner_deleting:
                continue
            try:
                await client.patch(info, name_of(obj), release_patch(obj, owner_uid), namespace_of(obj))
                log.info(
                    "%s/%s: released %s %s", namespace_of(owner), name_of(owner), info.kind, name_of(obj)
                )
            except (errors.NotFound, errors.Invalid):
                pass
            continue
        if owner_deleting or not matches or is_deleting(obj):
            continue
        if not adopt_checked:
            await can_adopt()
            adopt_checked = True
        try:
            adopted = await client.patch(info, name_of(obj), adopt_patch(obj, owner_ref), namespace_of(obj))
        except errors.NotFound:
            continue
        log.info("%s/%s: adopted %s %s", namespace_of(owner), name_of(owner), info.kind, name_of(obj))
        claimed.append(adopted)
    return claimed


def recheck_owner(client: Client, info: ResourceInfo, owner: Obj) -> Callable[[], Awaitable[None]]:
    """A live read of the owner before the first adoption: it must still exist, be the same object
    (uid) and not be being deleted (RecheckDeletionTimestamp)."""

    async def check() -> None:
        fresh = await client.get(info, name_of(owner), namespace_of(owner) or None)
        if uid_of(fresh) != uid_of(owner):
            raise errors.Conflict(f"original {info.kind} {name_of(owner)} is gone: got uid {uid_of(fresh)}")
        if is_deleting(fresh):
            raise errors.Conflict(f"{info.kind} {name_of(owner)} has just been deleted")

    return check
