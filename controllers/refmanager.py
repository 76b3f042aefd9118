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
from apimachinery.selectors import selector_from_dict

from .util import (
    controller_ref,
    is_deleting,
    labels_of,
    meta,
    name_of,
    namespace_of,
    new_controller_ref,
    uid_of,
)

log = logging.getLogger(__name__)


async def patch_metadata(client: Client, info: ResourceInfo, obj: Obj, **fields: Any) -> Obj | None:
    """Merge-patch ``metadata`` fields of ``obj`` at its ``resourceVersion`` (a change meanwhile
    fails with 409); None when the object is gone."""
    patch = {"metadata": {**fields, "resourceVersion": meta(obj).get("resourceVersion")}}
    try:
        return await client.patch(info, name_of(obj), patch, meta(obj).get("namespace"))
    except errors.NotFound:
        return None


def other_refs(obj: Obj, uid: str) -> list[dict[str, Any]]:
    """``obj``'s owner references except the one to ``uid``."""
    return [r for r in meta(obj).get("ownerReferences") or [] if r.get("uid") != uid]


async def claim(
    client: Client, info: ResourceInfo, owner: Obj, owner_info: ResourceInfo, candidates: Iterable[Obj]
) -> list[Obj]:
    """The candidates (of kind ``info``) the owner (of kind ``owner_info``) controls after adopting
    and releasing by its ``spec.selector`` (ClaimPods/ClaimReplicaSets)."""
    owner_ref = new_controller_ref(owner, owner_info.api_version, owner_info.kind)
    selector = selector_from_dict((owner.get("spec") or {}).get("selector"))
    can_adopt = recheck_owner(client, owner_info, owner)
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
                if (
                    await patch_metadata(
                        client, info, obj, ownerReferences=other_refs(obj, owner_uid) or None
                    )
                    is not None
                ):
                    log.info(
                        "%s/%s: released %s %s", namespace_of(owner), name_of(owner), info.kind, name_of(obj)
                    )
            except errors.Invalid:
                pass
            continue
        if owner_deleting or not matches or is_deleting(obj):
            continue
        if not adopt_checked:
            await can_adopt()
            adopt_checked = True
        adopted = await patch_metadata(
            client, info, obj, ownerReferences=[*other_refs(obj, owner_uid), owner_ref]
        )
        if adopted is None:
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
