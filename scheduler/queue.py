"""The scheduling queue, after kube-scheduler's ``PriorityQueue``.

Three places a pending pod can wait:

* **active** -- a heap ordered by priority (``spec.priority``, highest first), then by the time
  the pod entered the queue (oldest first); :meth:`SchedulingQueue.pop` takes from here;
* **backoff** -- pods whose last attempt failed wait ``1 s * 2**(attempts-1)``, at most 10 s,
  before going back to active;
* **unschedulable** -- pods that did not fit anywhere wait here until the cluster changes in a
  way that may help them (:meth:`move_for_event`: a node added or changed, an assigned pod
  deleted or added, ...) or until ``max_unschedulable_seconds`` passed (a safety net, 5 minutes
  like kube-scheduler's ``podMaxInUnschedulablePodsDuration``).  A moved pod whose backoff has
  not expired goes to backoff, otherwise straight to active.

A pod being scheduled is *in flight*; if a cluster event that could help it arrives meanwhile, a
failure sends it to backoff instead of unschedulable, so the event is not lost.
Time comes from a :class:`~apimachinery.workqueue.Clock`, so tests run without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field

from apimachinery.workqueue import Clock, RealClock

from .framework import Obj

ACTIVE = "active"
BACKOFF = "backoff"
UNSCHEDULABLE = "unschedulable"
IN_FLIGHT = "in-flight"

# Cluster events and the filter plugins whose verdict they may change (kube-scheduler's
# EventsToRegister / queueing hints, coarsely).  ``None`` means: every plugin.
EVENT_PLUGINS: dict[str, frozenset[str] | None] = {
    "NodeAdd": None,
    "NodeUpdate": None,
    "AssignedPodAdd": frozenset({"InterPodAffinity", "PodTopologySpread"}),
    "AssignedPodUpdate": frozenset({"InterPodAffinity", "PodTopologySpread", "NodeResourcesFit"}),
    "AssignedPodDelete": frozenset(
        {"NodeResourcesFit", "NodePorts", "InterPodAffinity", "PodTopologySpread"}
    ),
    "NamespaceUpdate": frozenset({"InterPodAffinity"}),
    "ServiceChange": frozenset(),
    "UnschedulableTimeout": None,
    "ForceActivate": None,
}


def pod_priority(pod: Obj) -> int:
    try:
        return int((pod.get("spec") or {}).get("priority") or 0)
    except (TypeError, ValueError):
        return 0


@dataclass
class QueuedPodInfo:
    key: str
    pod: Obj
    timestamp: float  # when the pod entered the queue (orders equal priorities)
    attempts: int = 0
    backoff_until: float = 0.0
    unschedulable_since: float = 0.0
    unschedulable_plugins: set[str] = field(default_factory=set)
    moved_while_in_flight: bool = False

    @property
    def priority(self) -> int:
        return pod_priority(self.pod)


class SchedulingQueue:
    def __init__(
        self,
        clock: Clock | None = None,
        initial_backoff: float = 1.0,
        max_backoff: float = 10.0,
        max_unschedulable_seconds: float = 300.0,
    ) -> None:
        self.clock = clock or RealClock()
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable_seconds = max_unschedulable_seconds
        self._pods: dict[str, QueuedPodInfo] = {}
        self._where: dict[str, str] = {}
        # The unschedulable and in-flight pods, which cluster events and the flush look at, so
        # those need not walk every queued pod; ``_order`` keeps ``_where``'s insertion order.
        self._waiting: dict[str, str] = {}
        self._order: dict[str, int] = {}
        self._order_seq = itertools.count()
        self._active: list[tuple[int, float, int, str]] = []
        self._backoff: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._closed = False

    # -- inspection (tests, metrics) -------------------------------------------------------------

    def where(self, key: str) -> str | None:
        return self._where.get(key)

    def keys_in(self, place: str) -> list[str]:
        return sorted(k for k, w in self._where.items() if w == place)

    def __len__(self) -> int:
        return len(self._where)

    def backoff_duration(self, attempts: int) -> float:
        duration = self.initial_backoff
        for _ in range(1, max(attempts, 1)):
            duration *= 2
            if duration >= self.max_backoff:
                return self.max_backoff
        return min(duration, self.max_backoff)

    # -- moving between places ---------------------------------------------------------------------

    def _place(self, key: str, where: str) -> None:
        if key not in self._where:
            self._order[key] = next(self._order_seq)
        self._where[key] = where
        if where in (UNSCHEDULABLE, IN_FLIGHT):
            self._waiting[key] = where
        else:
            self._waiting.pop(key, None)

    def _waiting_in_order(self, only: str | None = None) -> list[tuple[str, str]]:
        items = [(k, w) for k, w in self._waiting.items() if only is None or w == only]
        items.sort(key=lambda kw: self._order[kw[0]])
        return items

    def _to_active(self, qp: QueuedPodInfo) -> None:
        self._place(qp.key, ACTIVE)
        heapq.heappush(self._active, (-qp.priority, qp.timestamp, next(self._seq), qp.key))
        self._wakeup.set()

    def _to_backoff(self, qp: QueuedPodInfo) -> None:
        self._place(qp.key, BACKOFF)
        heapq.heappush(self._backoff, (qp.backoff_until, next(self._seq), qp.key))
        self._wakeup.set()

    def _activate_or_backoff(self, qp: QueuedPodInfo) -> None:
        if qp.backoff_until > self.clock.now():
            self._to_backoff(qp)
        else:
            self._to_active(qp)

    # -- informer-driven ---------------------------------------------------------------------------

    def add(self, pod: Obj, key: str) -> None:
        """A pending pod appeared, or changed: queue it (a changed unschedulable pod is retried)."""
        qp = self._pods.get(key)
        if qp is None:
            qp = QueuedPodInfo(key, pod, self.clock.now())
            self._pods[key] = qp
            self._to_active(qp)
            return
        qp.pod = pod
        where = self._where.get(key)
        if where == UNSCHEDULABLE:
            self._activate_or_backoff(qp)
        elif where == IN_FLIGHT:
            qp.moved_while_in_flight = True

    def delete(self, key: str) -> None:
        """The pod is gone or no longer ours to schedule (bound, deleted, other scheduler)."""
        self._pods.pop(key, None)
        self._where.pop(key, None)  # stale heap entries are skipped when popped
        self._waiting.pop(key, None)
        self._order.pop(key, None)

    def move_for_event(self, event: str) -> int:
        """A cluster event: retry the unschedulable pods it may help; returns how many moved."""
        interested = EVENT_PLUGINS.get(event)
        moved = 0
        for key, where in self._waiting_in_order():
            qp = self._pods[key]
            helps = (
                interested is None
                or not qp.unschedulable_plugins
                or bool(interested & qp.unschedulable_plugins)
            )
            if not helps:
                continue
            if where == UNSCHEDULABLE:
                self._activate_or_backoff(qp)
                moved += 1
            elif where == IN_FLIGHT:
                qp.moved_while_in_flight = True
        return moved

    # -- scheduling-loop-driven ------------------------------------------------------------------

    def _flush(self) -> None:
        now = self.clock.now()
        while self._backoff and self._backoff[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff)
            if self._where.get(key) == BACKOFF:
                self._to_active(self._pods[key])
        for key, _ in self._waiting_in_order(UNSCHEDULABLE):
            qp = self._pods[key]
            if now - qp.unschedulable_since >= self.max_unschedulable_seconds:
                self._activate_or_backoff(qp)

    def pop_nowait(self) -> QueuedPodInfo | None:
        """The next pod to schedule, or None if nothing is active right now."""
        self._flush()
        while self._active:
            _, _, _, key = heapq.heappop(self._active)
            if self._where.get(key) != ACTIVE:
                continue  # deleted, or re-pushed since
            qp = self._pods[key]
            self._place(key, IN_FLIGHT)
            qp.attempts += 1
            qp.moved_while_in_flight = False
            return qp
        return None

    def _next_deadline(self) -> float | None:
        deadlines = [t for t, _, k in self._backoff if self._where.get(k) == BACKOFF]
        deadlines += [
            self._pods[k].unschedulable_since + self.max_unschedulable_seconds
            for k, _ in self._waiting_in_order(UNSCHEDULABLE)
        ]
        return min(deadlines, default=None)

    async def pop(self) -> QueuedPodInfo:
        """Wait for the next pod to schedule (``asyncio.CancelledError`` on shutdown)."""
        while True:
            qp = self.pop_nowait()
            if qp is not None:
                return qp
            self._wakeup.clear()
            deadline = self._next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock.now())
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                pass

    def done(self, key: str) -> None:
        """Scheduled and bound: the queue forgets the pod."""
        self.delete(key)

    def unschedulable(self, qp: QueuedPodInfo, plugins: set[str]) -> None:
        """The attempt found no node: wait for a helpful cluster event (or backoff, if one came)."""
        if self._where.get(qp.key) != IN_FLIGHT:
            return  # deleted meanwhile
        now = self.clock.now()
        qp.unschedulable_plugins = set(plugins)
        qp.backoff_until = now + self.backoff_duration(qp.attempts)
        qp.unschedulable_since = now
        if qp.moved_while_in_flight:
            self._to_backoff(qp)
        else:
            self._place(qp.key, UNSCHEDULABLE)
            self._wakeup.set()  # the safety-net deadline may be the nearest one now

    def retry_after_error(self, qp: QueuedPodInfo) -> None:
        """An error that was not the pod's fault (the API server failed): back off and retry."""
        if self._where.get(qp.key) != IN_FLIGHT:
            return  # deleted or bound meanwhile
        qp.unschedulable_plugins = set()
        qp.backoff_until = self.clock.now() + self.backoff_duration(qp.attempts)
        self._to_backoff(qp)
