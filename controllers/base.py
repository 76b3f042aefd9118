"""The controller framework: a shared context and a base class with a work queue and workers.

A controller registers informer handlers that only enqueue keys, and implements
``reconcile(key)``: read the cache, compare with the world, write through the API.  ``run`` waits
for the caches to sync and then runs workers over the queue (the queue and workers are
:class:`apimachinery.controller.QueueController`'s); an exception requeues the key rate-limited, a
:class:`PermanentError` becomes a Warning Event and is not retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from apimachinery import errors
from apimachinery.client import Client, Obj
from apimachinery.controller import QueueController
from apimachinery.events import WARNING, Recorder
from apimachinery.informer import Informer, SharedInformerFactory, object_key
from apimachinery.resources import ResourceInfo, kind_info
from apimachinery.selectors import selector_from_dict
from apimachinery.workqueue import WorkQueue

from .podcontrol import PODS, create_pods, delete_pods, slow_start_batches
from .refmanager import claim
from .util import (
    CONTROLLER_UID_INDEX,
    Expectations,
    WallClock,
    controller_ref,
    controller_uid_index,
    deep_copy,
    ensure_index,
    is_deleting,
    is_pod_ready,
    labels_of,
    meta,
    namespace_of,
    uid_of,
    wall_clock,
)

log = logging.getLogger(__name__)


NODES = kind_info("v1", "Node")
NAMESPACES = kind_info("v1", "Namespace")
SERVICES = kind_info("v1", "Service")
ENDPOINTS = kind_info("v1", "Endpoints")
SERVICE_ACCOUNTS = kind_info("v1", "ServiceAccount")
REPLICA_SETS = kind_info("apps/v1", "ReplicaSet")
DEPLOYMENTS = kind_info("apps/v1", "Deployment")
LEASES = kind_info("coordination.k8s.io/v1", "Lease")


@dataclass
class Options:
    """Flags of ``minik-controller-manager`` that controllers read."""

    node_monitor_grace_period: float = 40.0
    node_monitor_period: float = 5.0
    pod_eviction_timeout: float = 300.0
    workers: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


class PermanentError(Exception):
    """A failure that retrying cannot fix (bad user input): reported as an Event, not retried."""

    def __init__(self, obj: Obj, reason: str, message: str) -> None:
        super().__init__(message)
        self.obj = obj
        self.reason = reason
        self.message = message


@dataclass
class ControllerContext:
    client: Client
    factory: SharedInformerFactory
    recorder: Callable[[str], Recorder]
    options: Options = field(default_factory=Options)
    clock: WallClock = wall_clock
    monotonic: Callable[[], float] = time.monotonic


class Controller(QueueController):
    """Base class: subclasses set ``name``, build informers/handlers in ``__init__`` and implement
    ``reconcile``."""

    def __init__(self, ctx: ControllerContext, queue: WorkQueue | None = None) -> None:
        super().__init__(queue)
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder(self.name)

    def informer(
        self,
        info: ResourceInfo,
        namespace: str | None = None,
        on_change: Callable[[Obj], None] | None = None,
        on_delete: Callable[[Obj], None] | None = None,
    ) -> Informer:
        """The shared informer of ``info``, whose caches :meth:`run` waits for; ``on_change`` is
        called with the object on add and with the new object on update."""
        return self.watch(self.ctx.factory.informer(info, namespace), on_change, on_delete)

    async def write_status(self, info: ResourceInfo, obj: Obj, status: dict[str, Any]) -> Obj:
        """Write ``status`` through ``/status`` unless ``obj`` has it already; the object as stored."""
        if status == (obj.get("status") or {}):
            return obj
        return await self.client.update_status(info, {**deep_copy(obj), "status": status})

    async def sync(self, key: str) -> None:
        """``reconcile`` plus the permanent-error policy (what the workers call)."""
        log.debug("%s: reconciling %s", self.name, key)
        try:
            await self.reconcile(key)
        except PermanentError as exc:
            log.warning("%s: %s: %s (not retried)", self.name, key, exc.message)
            self.recorder.event(exc.obj, WARNING, exc.reason, exc.message)

    async def run(self, workers: int | None = None) -> None:
        """Wait for this controller's caches, then work until cancelled."""
        await super().run(workers or self.ctx.options.workers)


class OwnerController(Controller):
    """Base of the controllers that own objects of another kind: ReplicaSet, DaemonSet, Job and
    StatefulSet own pods (``owned_info``), Deployment owns ReplicaSets.

    Owner events enqueue the owner.  Owned objects get Kubernetes' handlers: their events enqueue
    their controller (resolved by kind, name and uid in the cache) and settle its expectations
    (creations and deletions observed); an orphan's events enqueue the owners whose selector
    matches it (they may adopt it); one that became ready enqueues its owner again after the
    owner's ``minReadySeconds``.
    """

    owner_info: ResourceInfo
    owned_info: ResourceInfo = PODS

    def __init__(self, ctx: ControllerContext, queue: WorkQueue | None = None) -> None:
        super().__init__(ctx, queue)
        self.expectations = Expectations(ctx.monotonic)
        self.owner_informer = self.informer(
            self.owner_info, on_change=self.enqueue, on_delete=self._owner_deleted
        )
        self.owned_informer = self.informer(self.owned_info)
        ensure_index(self.owned_informer.store, CONTROLLER_UID_INDEX, controller_uid_index)
        self.owned_informer.add_event_handler(self._owned_added, self._owned_updated, self._owned_deleted)

    async def claim(self, owner: Obj, candidates: Iterable[Obj]) -> list[Obj]:
        """The candidates ``owner`` controls once it adopted the orphans its selector matches and
        released those it owns that stopped matching."""
        return await claim(self.client, self.owned_info, owner, self.owner_info, candidates)

    # -- handlers (only enqueue) ----------------------------------------------------------------

    def _owner_deleted(self, owner: Obj) -> None:
        key = object_key(owner)
        self.expectations.delete(key)
        self.enqueue(key)

    def _ref_key(self, obj: Obj) -> str | None:
        """The key of the owner of this kind that ``obj``'s controller reference names."""
        ref = controller_ref(obj)
        if ref is None or ref.get("kind") != self.owner_info.kind:
            return None
        return f"{namespace_of(obj)}/{ref.get('name')}"

    def owner_key(self, obj: Obj) -> str | None:
        """The key of ``obj``'s controller when it is in the cache (same uid)."""
        key = self._ref_key(obj)
        owner = self.owner_informer.store.get(key) if key else None
        if owner is None or uid_of(owner) != (controller_ref(obj) or {}).get("uid"):
            return None
        return key

    def owners_selecting(self, obj: Obj) -> list[str]:
        return [
            object_key(owner)
            for owner in self.owner_informer.store.by_index("namespace", namespace_of(obj))
            if selector_from_dict((owner.get("spec") or {}).get("selector")).matches(labels_of(obj))
        ]

    def _owned_added(self, obj: Obj) -> None:
        if is_deleting(obj):
            self._owned_deleted(obj)
            return
        key = self.owner_key(obj)
        if key is not None:
            self.expectations.creation_observed(key)
            self.enqueue(key)
        elif controller_ref(obj) is None:
            for k in self.owners_selecting(obj):
                self.enqueue(k)

    def _owned_updated(self, old: Obj, new: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion") and old is not new:
            return
        if is_deleting(new) and not is_deleting(old):
            self._owned_deleted(new)
            return
        key = self.owner_key(new)
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref is not None and (new_ref is None or old_ref.get("uid") != new_ref.get("uid")):
            old_key = self._ref_key(old)
            if old_key is not None:
                self.enqueue(old_key)
        if key is not None:
            self.enqueue(key)
            spec = (self.owner_informer.store.get(key) or {}).get("spec") or {}
            min_ready = int(spec.get("minReadySeconds") or 0)
            if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(new):
                self.queue.add_after(key, float(min_ready))
        elif new_ref is None and (labels_of(old) != labels_of(new) or old_ref is not None):
            for k in self.owners_selecting(new):
                self.enqueue(k)

    def _owned_deleted(self, obj: Obj) -> None:
        key = self._ref_key(obj)
        if key is not None:
            self.expectations.deletion_observed(key, uid_of(obj))
            self.enqueue(key)

    # -- creating and deleting pods -------------------------------------------------------------

    async def create_owned(self, key: str, owner: Obj, bodies: list[Obj]) -> errors.StatusError | None:
        """Create pods in slow-start batches (1, 2, 4, ...), stopping after a batch with a failure;
        the creations that failed or were not tried are taken off the expectations."""
        self.expectations.expect_creations(key, len(bodies))
        for size in slow_start_batches(len(bodies)):
            batch, bodies = bodies[:size], bodies[size:]
            _, failures = await create_pods(self.client, self.recorder, owner, batch)
            if failures:
                self.expectations.lower_creations(key, len(failures) + len(bodies))
                return failures[0][1]
        return None

    async def delete_owned(self, key: str, owner: Obj, pods: list[Obj]) -> errors.StatusError | None:
        """Delete pods; each that was not deleted (gone already, or failed) counts as observed."""
        self.expectations.expect_deletions(key, [uid_of(p) for p in pods])
        deleted, failures = await delete_pods(self.client, self.recorder, owner, pods)
        for pod in pods:
            if uid_of(pod) not in deleted:
                self.expectations.deletion_observed(key, uid_of(pod))
        return failures[0][1] if failures else None
