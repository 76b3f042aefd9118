"""The scheduler process: informers in, bindings and events out, the decision in between.

* Shared informers on pods, nodes, namespaces and services feed the :class:`SchedulerCache`
  (bound pods, per node) and the :class:`SchedulingQueue` (pending pods this scheduler owns:
  ``spec.schedulerName`` is ours, no ``nodeName``, not terminating, no scheduling gates).
* One loop pops the next pod, runs :func:`fastpath.schedule` on the cache (synchronously: the
  cache cannot change under a decision), and
  - on a placement, *assumes* the pod on the node at once and binds it through
    ``pods/{name}/binding`` in a background task; a 409 means the pod was bound or is being
    deleted meanwhile: forget it and move on; another failure is retried with backoff;
    success records a ``Scheduled`` event;
  - when nothing fits, parks the pod as unschedulable, records a ``FailedScheduling`` Warning
    and sets ``PodScheduled=False`` reason ``Unschedulable`` with kube-scheduler's message.
* Cluster events (a node added or changed, an assigned pod deleted, ...) move unschedulable pods
  back to the active queue.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Coroutine
from typing import Any

from apimachinery import errors, tracing
from apimachinery.client import Client
from apimachinery.events import EventRecorder
from apimachinery.informer import SharedInformerFactory
from apimachinery.resources import plural_info
from apimachinery.timefmt import rfc3339
from apimachinery.workqueue import Clock

from . import fastpath, framework, trace
from .cache import SchedulerCache, assigned_node, counts_on_node, pod_key
from .framework import Obj, Placement, PodInfo
from .metrics import ERROR, SCHEDULED, UNSCHEDULABLE_RESULT, SchedulerMetrics, register_pending_pods
from .preemption import (
    Candidate,
    disruption_condition,
    find_candidate,
    fit_error_without_postfilter,
    fits,
    nominated_node,
    preempted_message,
)
from .queue import QueuedPodInfo, SchedulingQueue

log = logging.getLogger(__name__)

DEFAULT_SCHEDULER_NAME = "default-scheduler"
BIND_CONCURRENCY = 8  # bindings in flight at once (and, separately, events); see docs/scheduler.md


PODS = plural_info("", "v1", "pods")
NODES = plural_info("", "v1", "nodes")
NAMESPACES = plural_info("", "v1", "namespaces")
SERVICES = plural_info("", "v1", "services")
PDBS = plural_info("policy", "v1", "poddisruptionbudgets")


def _without_status(pod: Obj) -> Obj:
    """The parts of a pod whose change may make it schedulable (kube-scheduler's isPodUpdated)."""
    meta = {
        k: v
        for k, v in (pod.get("metadata") or {}).items()
        if k not in ("resourceVersion", "generation", "managedFields")
    }
    return {"metadata": meta, "spec": pod.get("spec")}


def _node_fingerprint(node: Obj) -> tuple[Any, ...]:
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    return (
        meta.get("labels"),
        spec.get("unschedulable"),
        spec.get("taints"),
        status.get("allocatable"),
        framework.ready_condition(node),
    )


class Scheduler:
    def __init__(
        self,
        client: Client,
        scheduler_name: str = DEFAULT_SCHEDULER_NAME,
        *,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        initial_backoff: float = 1.0,
        max_backoff: float = 10.0,
        max_unschedulable_seconds: float = 300.0,
        bind_concurrency: int = BIND_CONCURRENCY,
        writers: tuple[Client, Client] | None = None,
    ) -> None:
        """``writers``: the clients for bindings and for events and status patches (default:
        ``client``, which the informers use). Separate connection pools keep each pool small:
        httpx looks at every connection of its pool for every request."""
        self.client = client
        self.bind_client, self.event_client = writers or (client, client)
        self.name = scheduler_name
        self.rng = rng or random.Random()
        self.factory = SharedInformerFactory(client)
        self.pods = self.factory.informer(PODS)
        self.nodes = self.factory.informer(NODES)
        self.namespaces = self.factory.informer(NAMESPACES)
        self.services = self.factory.informer(SERVICES)
        self.pdbs = self.factory.informer(PDBS)  # read by preemption (scheduler/preemption.py)
        self.cache = SchedulerCache()
        self.queue = SchedulingQueue(clock, initial_backoff, max_backoff, max_unschedulable_seconds)
        self.events = EventRecorder(
            self.event_client, scheduler_name, instance=f"{scheduler_name}-{socket.gethostname()}"
        )
        self._bind_slots = asyncio.Semaphore(bind_concurrency)
        self._event_slots = asyncio.Semaphore(bind_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._register_handlers()
        self.scheduled = 0
        self.failed_attempts = 0
        self.metrics = SchedulerMetrics(scheduler_name)  # scheduler_schedule_attempts_total ...
        register_pending_pods(self.queue)

    # -- which pods are ours ---------------------------------------------------------------------

    def responsible_for(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        meta = pod.get("metadata") or {}
        return (
            (spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) == self.name
            and not spec.get("nodeName")
            and not meta.get("deletionTimestamp")
            and not spec.get("schedulingGates")
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        )

    # -- informer handlers (they only update the cache and the queue) ----------------------------

    def _register_handlers(self) -> None:
        self.pods.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_event_handler(self._node_added, self._node_updated, self._node_deleted)
        self.namespaces.add_event_handler(
            self.cache.set_namespace, self._namespace_updated, self.cache.remove_namespace
        )
        self.services.add_event_handler(
            lambda _s: self._services_changed(),
            lambda _o, _n: self._services_changed(),
            lambda _s: self._services_changed(),
        )

    def _pod_added(self, pod: Obj) -> None:
        key = pod_key(pod)
        if counts_on_node(pod):
            self.cache.set_pod(pod)
            self.queue.delete(key)
            self.queue.move_for_event("AssignedPodAdd")
        elif self.responsible_for(pod):
            self.queue.add(pod, key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = pod_key(new)
        if assigned_node(new):
            self.queue.delete(key)
            was_counted = counts_on_node(old)
            self.cache.set_pod(new)
            if counts_on_node(new):
                if not was_counted:
                    self.queue.move_for_event("AssignedPodAdd")
                elif (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels"):
                    self.queue.move_for_event("AssignedPodUpdate")
            elif was_counted:  # finished: its resources are free again
                self.queue.move_for_event("AssignedPodDelete")
            return
        if not self.responsible_for(new):
            self.queue.delete(key)
            return
        if self.queue.where(key) is None or _without_status(old) != _without_status(new):
            self.queue.add(new, key)

    def _pod_deleted(self, pod: Obj) -> None:
        key = pod_key(pod)
        self.queue.delete(key)
        was_counted = counts_on_node(pod) or self.cache.is_assumed(key)
        self.cache.remove_pod(pod)
        if was_counted:
            self.queue.move_for_event("AssignedPodDelete")

    def _node_added(self, node: Obj) -> None:
        self.cache.add_node(node)
        self.queue.move_for_event("NodeAdd")

    def _node_updated(self, old: Obj, new: Obj) -> None:
        self.cache.update_node(new)
        if _node_fingerprint(old) != _node_fingerprint(new):
            self.queue.move_for_event("NodeUpdate")

    def _node_deleted(self, node: Obj) -> None:
        self.cache.remove_node(node)

    def _namespace_updated(self, old: Obj, new: Obj) -> None:
        self.cache.set_namespace(new)
        if (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels"):
            self.queue.move_for_event("NamespaceUpdate")

    def _services_changed(self) -> None:
        self.cache.set_services(self.services.store.list())

    # -- running ---------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        """Start the informers, wait for their caches, then schedule until cancelled."""
        self.factory.start()
        try:
            while not await self.factory.wait_for_cache_sync(timeout=30):
                log.warning("informer caches not synced yet; still waiting")
            log.info(
                "caches synced: %d nodes, %d pods bound, %d pending; scheduling as %s",
                len(self.cache.snapshot.nodes),
                self.cache.pod_count(),
                len(self.queue),
                self.name,
            )
            while True:
                await self.schedule_one()
                await asyncio.sleep(0)  # let informers and binding tasks run between decisions
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.factory.stop()

    async def wait_idle(self) -> None:
        """Wait for the background binding and event tasks started so far (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def schedule_one(self) -> None:
        qp = await self.queue.pop()
        pod = self.pods.store.get(qp.key)
        if pod is None or not self.responsible_for(pod) or self.cache.is_assumed(qp.key):
            self.queue.delete(qp.key)
            return
        start = time.perf_counter()
        traced = tracing.active()  # minik trace: the queue wait and the decision (scheduler/trace.py)
        waited, decided = (self.queue.clock.now() - qp.timestamp, time.time_ns()) if traced else (0.0, 0)
        pi = PodInfo.of(pod)
        try:
            result = self._nominated_first(pi) or fastpath.schedule(pi, self.cache.snapshot, self.rng)
        except Exception:
            log.exception("%s: scheduling failed", qp.key)
            self.queue.retry_after_error(qp)
            self.metrics.attempt(ERROR, time.perf_counter() - start)
            return
        placed = isinstance(result, Placement)
        if traced:
            node, feasible = (
                (result.node_name, result.feasible) if isinstance(result, Placement) else (None, 0)
            )
            trace.decision(pod, waited, decided, time.time_ns(), node, feasible)
        self.metrics.attempt(SCHEDULED if placed else UNSCHEDULABLE_RESULT, time.perf_counter() - start)
        if isinstance(result, Placement):
            log.debug("%s: chose %s among %d feasible nodes", qp.key, result.node_name, result.feasible)
            self.cache.assume(pi, result.node_name)
            self._spawn(self._bind(qp, pod, result.node_name))
        else:
            self.failed_attempts += 1
            candidate, message = self._post_filter(pi, result)
            log.info("%s: unschedulable (attempt %d): %s", qp.key, qp.attempts, message)
            self.queue.unschedulable(qp, result.plugins)
            self._spawn(self._report_unschedulable(pod, message))
            if candidate is not None:
                self._spawn(self._preempt(pod, candidate))

    # -- preemption (scheduler/preemption.py) ------------------------------------------------------

    def _nominated_first(self, pi: PodInfo) -> Placement | None:
        """A pod nominated by an earlier preemption goes to that node when it fits there now."""
        name = nominated_node(pi.pod)
        snapshot = self.cache.snapshot
        node = snapshot.nodes.get(name) if name else None
        if node is None or not fits(fastpath.PodState(pi, snapshot), snapshot, node):
            return None
        return Placement(name, {name: 0}, 1, len(snapshot.nodes))

    def _post_filter(self, pi: PodInfo, result: framework.Unschedulable) -> tuple[Candidate | None, str]:
        """DefaultPreemption: the node and victims to make room, and the FailedScheduling message."""
        if not result.statuses:
            return None, result.message
        try:
            outcome = find_candidate(pi, self.cache.snapshot, result.statuses, self.pdbs.store.list())
        except Exception:
            log.exception("%s: preemption failed", pi.key)
            return None, result.message
        reasons = fit_error_without_postfilter(result.statuses, result.num_nodes)
        if outcome.candidate is not None:
            victims = ", ".join(v.key for v in outcome.candidate.victims)
            log.info("%s: preempting %s on %s", pi.key, victims, outcome.candidate.node_name)
            return outcome.candidate, reasons
        return None, f"{reasons} {outcome.message}."

    async def _preempt(self, pod: Obj, candidate: Candidate) -> None:
        """Nominate the node for ``pod``, then evict the victims: a ``DisruptionTarget`` condition,
        the deletion and a ``Preempted`` event for each (kube-scheduler's prepareCandidate)."""
        meta = pod.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
        node = candidate.node_name
        async with self._event_slots:
            try:
                await self.event_client.patch(
                    PODS, name, {"status": {"nominatedNodeName": node}}, namespace, subresource="status"
                )
            except errors.StatusError as exc:
                log.warning("%s/%s: could not nominate %s: %s", namespace, name, node, exc)
                return
            for victim in candidate.victims:
                condition = disruption_condition(self.name, rfc3339())
                try:
                    await self.event_client.patch(
                        PODS,
                        victim.name,
                        {"status": {"conditions": [condition]}},
                        victim.namespace,
                        patch_type="strategic",
                        subresource="status",
                    )
                    await self.event_client.delete(PODS, victim.name, victim.namespace)
                except errors.NotFound:
                    continue
                except errors.StatusError as exc:
                    log.warning("%s: preemption of %s failed: %s", pod_key(pod), victim.key, exc)
                    continue
                await self.events.write(victim.pod, "Normal", "Preempted", preempted_message(pod, node))

    async def _bind(self, qp: QueuedPodInfo, pod: Obj, node_name: str) -> None:
        meta = pod.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
        bind_start = time.time_ns()
        async with self._bind_slots:
            try:
                await self.bind_client.bind(namespace, name, node_name)
            except (errors.Conflict, errors.NotFound) as exc:
                # Bound by someone else, being deleted, or gone: nothing left to do for this pod.
                log.info("%s/%s: binding to %s not needed: %s", namespace, name, node_name, exc)
                self.cache.forget(qp.key)
                self.queue.delete(qp.key)
                return
            except errors.StatusError as exc:
                log.warning("%s/%s: binding to %s failed: %s; will retry", namespace, name, node_name, exc)
                self.cache.forget(qp.key)
                self.queue.retry_after_error(qp)
                async with self._event_slots:
                    await self.events.write(pod, "Warning", "FailedScheduling", f"Binding rejected: {exc}")
                return
        self.queue.done(qp.key)
        if tracing.active():
            trace.bind(pod, node_name, bind_start)
        self.scheduled += 1
        log.info("%s/%s: bound to %s", namespace, name, node_name)
        async with self._event_slots:
            await self.events.write(
                pod, "Normal", "Scheduled", f"Successfully assigned {namespace}/{name} to {node_name}"
            )

    async def _report_unschedulable(self, pod: Obj, message: str) -> None:
        async with self._event_slots:
            await self._set_unschedulable(pod, message)

    async def _set_unschedulable(self, pod: Obj, message: str) -> None:
        await self.events.write(pod, "Warning", "FailedScheduling", message)
        meta = pod.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
        current = self.pods.store.get(f"{namespace}/{name}") or pod
        conditions = (current.get("status") or {}).get("conditions") or []
        old = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        if (
            old
            and old.get("status") == "False"
            and old.get("reason") == "Unschedulable"
            and old.get("message") == message
        ):
            return
        transition = old.get("lastTransitionTime") if old and old.get("status") == "False" else None
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": transition or rfc3339(),
        }
        try:
            await self.event_client.patch(
                PODS,
                name,
                {"status": {"conditions": [condition]}},
                namespace,
                patch_type="strategic",
                subresource="status",
            )
        except errors.NotFound:
            pass
        except errors.StatusError as exc:
            log.warning("%s/%s: could not set the PodScheduled condition: %s", namespace, name, exc)
