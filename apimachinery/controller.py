"""A controller's informers and work queue (sample-controller's shape), shared by the controller
manager's controllers (:mod:`controllers.base`) and minik-ingress.

Informer handlers only enqueue keys; :meth:`QueueController.run` waits for the informers' caches,
then runs workers over the queue (each key through :meth:`QueueController.sync`, by default
``reconcile(key)``; an exception requeues the key rate-limited) and :meth:`background` until
cancelled, and shuts the queue down when it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .client import Obj
from .informer import Informer, object_key
from .workqueue import WorkQueue, run_workers

log = logging.getLogger(__name__)


class QueueController:
    """Base class: subclasses set ``name``, register informers with :meth:`watch` and implement
    ``reconcile``."""

    name = "controller"

    def __init__(self, queue: WorkQueue | None = None) -> None:
        self.queue = queue or WorkQueue(name=self.name)
        self.informers: list[Informer] = []

    def watch(
        self,
        inf: Informer,
        on_change: Callable[[Obj], None] | None = None,
        on_delete: Callable[[Obj], None] | None = None,
    ) -> Informer:
        """Make ``inf`` one of the informers whose caches :meth:`run` waits for; ``on_change`` is
        called with the object on add and with the new object on update."""
        if inf not in self.informers:
            self.informers.append(inf)
        if on_change is not None or on_delete is not None:
            update = None if on_change is None else (lambda old, new: on_change(new))
            inf.add_event_handler(on_change, update, on_delete)
        return inf

    def enqueue(self, obj: Obj | str) -> None:
        self.queue.add(obj if isinstance(obj, str) else object_key(obj))

    async def reconcile(self, key: str) -> None:
        raise NotImplementedError

    async def sync(self, key: str) -> None:
        """What the workers call with each key: ``reconcile``."""
        await self.reconcile(key)

    async def background(self) -> None:
        """Periodic work besides the queue; runs while the controller runs."""
        return None

    async def run(self, workers: int = 1) -> None:
        """Wait for this controller's caches, then work until cancelled."""
        for inf in self.informers:
            await inf.wait_for_sync()
        log.info("%s: caches synced; starting workers", self.name)
        tasks = [
            asyncio.create_task(run_workers(self.queue, self.sync, workers), name=f"{self.name}-workers"),
            asyncio.create_task(self.background(), name=f"{self.name}-background"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.shut_down()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
