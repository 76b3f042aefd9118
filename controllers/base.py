"""The controller framework: a shared context and a base class with a work queue and workers.

A controller registers informer handlers that only enqueue keys, and implements
``reconcile(key)``: read the cache, compare with the world, write through the API.  ``run`` waits
for the caches to sync and then runs workers over the queue; an exception requeues the key
rate-limited, a :class:`PermanentError` becomes a Warning Event and is not retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apimachinery.client import Client, Obj
from apimachinery.informer import Informer, SharedInformerFactory, object_key
from apimachinery.resources import ResourceInfo, kind_info
from apimachinery.workqueue import WorkQueue, run_workers

from .events import WARNING, EventRecorder
from .util import WallClock, wall_clock

log = logging.getLogger(__name__)


PODS = kind_info("v1", "Pod")
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
    recorder: Callable[[str], EventRecorder]
    options: Options = field(default_factory=Options)
    clock: WallClock = wall_clock
    monotonic: Callable[[], float] = time.monotonic


class Controller:
    """Base class: subclasses set ``name``, build informers/handlers in ``__init__`` and implement
    ``reconcile``."""

    name = "controller"

    def __init__(self, ctx: ControllerContext, queue: WorkQueue | None = None) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder(self.name)
        self.queue = queue or WorkQueue(name=self.name)
        self.informers: list[Informer] = []

    def informer(self, info: ResourceInfo, namespace: str | None = None) -> Informer:
        inf = self.ctx.factory.informer(info, namespace)
        if inf not in self.informers:
            self.informers.append(inf)
        return inf

    def enqueue(self, obj: Obj | str) -> None:
        self.queue.add(obj if isinstance(obj, str) else object_key(obj))

    async def reconcile(self, key: str) -> None:
        raise NotImplementedError

    async def sync(self, key: str) -> None:
        """``reconcile`` plus the permanent-error policy (what the workers call)."""
        log.debug("%s: reconciling %s", self.name, key)
        try:
            await self.reconcile(key)
        except PermanentError as exc:
            log.warning("%s: %s: %s (not retried)", self.name, key, exc.message)
            self.recorder.event(exc.obj, WARNING, exc.reason, exc.message)

    async def background(self) -> None:
        """Periodic work besides the queue (node monitoring); runs while the controller runs."""
        return None

    async def run(self, workers: int | None = None) -> None:
        """Wait for this controller's caches, then work until cancelled."""
        for inf in self.informers:
            await inf.wait_for_sync()
        log.info("%s: caches synced; starting workers", self.name)
        tasks = [
            asyncio.create_task(
                run_workers(self.queue, self.sync, workers or self.ctx.options.workers),
                name=f"{self.name}-workers",
            ),
            asyncio.create_task(self.background(), name=f"{self.name}-background"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.shut_down()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
