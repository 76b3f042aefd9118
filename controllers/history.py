"""ControllerRevisions: the template history of StatefulSets and DaemonSets.

After Kubernetes' ``pkg/controller/history`` and the history parts of its StatefulSet and DaemonSet
controllers:

* every distinct pod template of a set is one ``apps/v1`` ControllerRevision named
  ``<set>-<hash>`` (the hash the set's pods carry), controlled by the set, labelled with the
  template's labels and ``controller-revision-hash: <hash>``, annotated as the set is, with
  ``revision`` numbering the templates in the order they were last current;
* ``data`` is the patch that puts the template back, as Kubernetes stores it:
  ``{"spec": {"template": {...the template..., "$patch": "replace"}}}`` — ``kubectl rollout undo``
  sends it as a strategic merge patch to the set, ``rollout history --revision`` applies it to show
  the template;
* a template equal to an older revision's re-uses that revision and gives it the next number (a
  rollback); a different template behind an existing name is a hash collision: the set's
  ``status.collisionCount`` goes up, which changes the hash;
* revisions beyond ``spec.revisionHistoryLimit`` (default 10) are deleted, oldest first, never one
  that a pod or the set's status still names.

The history of a set is kept by :class:`HistoryKeeper` on a work queue of its own inside the set's
controller: the pods' revision label is derived from the template hash, so creating pods never
waits for the revision object, and a failing revision write does not hold the pods back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.resources import kind_info
from apimachinery.workqueue import WorkQueue, run_workers

from .deploymentutil import normalize_template
from .util import (
    CONTROLLER_UID_INDEX,
    controller_uid_index,
    deep_copy,
    ensure_index,
    is_deleting,
    meta,
    name_of,
    namespace_of,
    new_controller_ref,
    uid_of,
)

if TYPE_CHECKING:
    from .base import OwnerController

log = logging.getLogger(__name__)

CONTROLLER_REVISIONS = kind_info("apps/v1", "ControllerRevision")
REVISION_HASH_LABEL = "controller-revision-hash"
DEFAULT_HISTORY_LIMIT = 10
PATCH_DIRECTIVE = "$patch"


# -- pure decisions ---------------------------------------------------------------------------------


def revision_data(template: Obj) -> Obj:
    """The ``data`` of a revision: the patch that replaces the set's template with ``template``."""
    return {"spec": {"template": {**deep_copy(template), PATCH_DIRECTIVE: "replace"}}}


def template_of(revision: Obj) -> Obj:
    """The pod template a revision holds (its ``data`` without the patch directive)."""
    template = dict((((revision.get("data") or {}).get("spec") or {}).get("template")) or {})
    template.pop(PATCH_DIRECTIVE, None)
    return template


def holds_template(revision: Obj, template: Obj) -> bool:
    return normalize_template(template_of(revision)) == normalize_template(template)


def revision_number(revision: Obj) -> int:
    return int(revision.get("revision") or 0)


def sort_revisions(revisions: Iterable[Obj]) -> list[Obj]:
    """Oldest first: by revision number, then creation time and name (SortControllerRevisions)."""
    return sorted(
        revisions,
        key=lambda r: (revision_number(r), str(meta(r).get("creationTimestamp") or ""), name_of(r)),
    )


def revision_name(parent_name: str, hash_: str) -> str:
    """ControllerRevisionName: the parent's name cut to 223 characters, a dash and the hash."""
    return f"{parent_name[:223]}-{hash_}"


def new_revision(parent: Obj, kind: str, hash_: str, number: int) -> Obj:
    """The ControllerRevision of ``parent``'s current template (NewControllerRevision)."""
    template = (parent.get("spec") or {}).get("template") or {}
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels[REVISION_HASH_LABEL] = hash_
    metadata: Obj = {
        "name": revision_name(name_of(parent), hash_),
        "namespace": namespace_of(parent),
        "labels": labels,
        "ownerReferences": [new_controller_ref(parent, "apps/v1", kind)],
    }
    annotations = meta(parent).get("annotations")
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": metadata,
        "data": revision_data(template),
        "revision": number,
    }


def history_limit(parent: Obj) -> int:
    limit = (parent.get("spec") or {}).get("revisionHistoryLimit")
    return DEFAULT_HISTORY_LIMIT if limit is None else max(0, int(limit))


@dataclass
class HistoryPlan:
    create: Obj | None = None
    renumber: list[tuple[Obj, int]] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)
    collision: bool = False


def plan_history(parent: Obj, kind: str, revisions: Iterable[Obj], hash_: str, live: set[str]) -> HistoryPlan:
    """What to write so that ``revisions`` (those ``parent`` controls) record its current template
    as the newest revision named ``<parent>-<hash_>``, and keep at most the history limit of the
    revisions not in ``live`` (names a pod or the status uses)."""
    plan = HistoryPlan()
    template = (parent.get("spec") or {}).get("template") or {}
    ordered = sort_revisions(revisions)
    name = revision_name(name_of(parent), hash_)
    current = next((r for r in ordered if name_of(r) == name), None)
    newest = max((revision_number(r) for r in ordered), default=0)
    if current is not None and not holds_template(current, template):
        plan.collision = True
        return plan
    if current is None:
        plan.create = new_revision(parent, kind, hash_, newest + 1)
    elif any(r is not current and revision_number(r) >= revision_number(current) for r in ordered):
        plan.renumber.append((current, newest + 1))
    old = [r for r in ordered if r is not current and name_of(r) not in live and name_of(r) != name]
    excess = len(old) - history_limit(parent)
    if excess > 0:
        plan.delete = old[:excess]
    return plan


# -- the keeper -------------------------------------------------------------------------------------


class HistoryKeeper:
    """Keeps the ControllerRevisions of the sets of one :class:`OwnerController`.

    ``hash_of(set)`` is the hash of the set's current template (the one its new pods carry);
    ``live(set, pods)`` the names of the revisions its pods and status still use.  The controller
    forwards every key it enqueues to :attr:`queue` and runs :meth:`run` beside its workers.
    """

    def __init__(
        self,
        controller: OwnerController,
        hash_of: Callable[[Obj], str],
        live: Callable[[Obj, list[Obj]], set[str]],
    ) -> None:
        self.controller = controller
        self.kind = controller.owner_info.kind
        self.hash_of = hash_of
        self.live = live
        self.queue = WorkQueue(name=f"{controller.name}-history")
        self.informer = controller.informer(CONTROLLER_REVISIONS)
        ensure_index(self.informer.store, CONTROLLER_UID_INDEX, controller_uid_index)
        self.informer.add_event_handler(self._changed, lambda old, new: self._changed(new), self._changed)

    def _changed(self, revision: Obj) -> None:
        key = self.controller.owner_key(revision)
        if key is not None:
            self.queue.add(key)

    def revisions(self, parent: Obj) -> list[Obj]:
        return list(self.informer.store.by_index(CONTROLLER_UID_INDEX, uid_of(parent)))

    async def run(self, workers: int) -> None:
        try:
            await run_workers(self.queue, self.sync, workers)
        finally:
            self.queue.shut_down()

    async def sync(self, key: str) -> None:
        parent = self.controller.owner_informer.store.get(key)
        if parent is None or is_deleting(parent):
            return  # the garbage collector deletes the revisions of a deleted set
        pods = list(self.controller.owned_informer.store.by_index(CONTROLLER_UID_INDEX, uid_of(parent)))
        plan = plan_history(
            parent, self.kind, self.revisions(parent), self.hash_of(parent), self.live(parent, pods)
        )
        client, namespace = self.controller.client, namespace_of(parent)
        if plan.collision:
            await self._bump_collision_count(key, parent)
            return
        if plan.create is not None:
            try:
                await client.create(CONTROLLER_REVISIONS, plan.create, namespace)
                log.info("%s: created revision %s (%d)", key, name_of(plan.create), plan.create["revision"])
            except errors.AlreadyExists:
                existing = await client.get(CONTROLLER_REVISIONS, name_of(plan.create), namespace)
                if not holds_template(existing, (parent.get("spec") or {}).get("template") or {}):
                    await self._bump_collision_count(key, parent)
                    return
                # ours, and the cache is behind (or an orphan with our template: left as it is)
        for revision, number in plan.renumber:
            await client.update(CONTROLLER_REVISIONS, {**deep_copy(revision), "revision": number})
            log.info("%s: revision %s is now number %d", key, name_of(revision), number)
        for revision in plan.delete:
            try:
                await client.delete(
                    CONTROLLER_REVISIONS,
                    name_of(revision),
                    namespace,
                    preconditions={"uid": uid_of(revision)},
                )
                log.info("%s: deleted revision %s beyond the history limit", key, name_of(revision))
            except (errors.NotFound, errors.Conflict):
                pass

    async def _bump_collision_count(self, key: str, parent: Obj) -> None:
        status = deep_copy(parent.get("status") or {})
        status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
        log.warning("%s: revision hash collision; collisionCount is now %d", key, status["collisionCount"])
        await self.controller.client.update_status(
            self.controller.owner_info, {**deep_copy(parent), "status": status}
        )
