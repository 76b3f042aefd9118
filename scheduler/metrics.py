"""kube-scheduler's Prometheus metrics.

- ``scheduler_schedule_attempts_total{result,profile}``: one per scheduling attempt, ``result``
  ``scheduled`` (a node was chosen), ``unschedulable`` (none fits) or ``error``;
- ``scheduler_scheduling_attempt_duration_seconds{result,profile}``: how long the attempt took,
  from taking the pod off the queue to the decision (Kubernetes' buckets: 1 ms doubling 15 times);
- ``scheduler_pending_pods{queue}``: pods waiting in ``active``, ``backoff``, ``unschedulable``
  (and ``gated``, always 0: minik has no scheduling gates), read from the queue when scraped.

``profile`` is the scheduler's name (``default-scheduler``), as each Kubernetes profile is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from apimachinery import metrics

from .queue import ACTIVE, BACKOFF, UNSCHEDULABLE

ATTEMPT_BUCKETS = tuple(0.001 * 2**i for i in range(15))
SCHEDULED, UNSCHEDULABLE_RESULT, ERROR = "scheduled", "unschedulable", "error"


class SchedulerMetrics:
    def __init__(self, profile: str) -> None:
        attempts = metrics.counter(
            "scheduler_schedule_attempts_total",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not "
            "be scheduled, while 'error' means an internal scheduler problem.",
            ("result", "profile"),
        )
        duration = metrics.histogram(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            ("result", "profile"),
            ATTEMPT_BUCKETS,
        )
        results = (SCHEDULED, UNSCHEDULABLE_RESULT, ERROR)
        self._attempts = {r: attempts.labels(r, profile) for r in results}
        self._durations = {r: duration.labels(r, profile) for r in results}

    def attempt(self, result: str, seconds: float) -> None:
        self._attempts[result].inc()
        self._durations[result].observe(seconds)


def register_pending_pods(queue: Any) -> None:
    """``scheduler_pending_pods{queue}`` from ``queue`` (a :class:`~scheduler.queue.SchedulingQueue`)."""

    def collect() -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; "
            "'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in "
            "unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the "
            "number of unschedulable pods that the scheduler never attempted to schedule because "
            "they are gated.",
            labels=["queue"],
        )
        counts = {ACTIVE: 0, BACKOFF: 0, UNSCHEDULABLE: 0}
        for where in list(queue._where.values()):
            if where in counts:
                counts[where] += 1
        for name, value in counts.items():
            family.add_metric([name], value)
        family.add_metric(["gated"], 0)
        yield family

    metrics.register_collector("scheduler_pending_pods", collect)
