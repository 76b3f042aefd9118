"""The kubelet's Prometheus metrics (served on its HTTPS port as ``/metrics``, authorized as
``nodes/metrics``).

- ``kubelet_pod_start_duration_seconds``: from the kubelet first syncing a pod to the status it
  writes first saying ``Running`` (Kubernetes' buckets);
- ``kubelet_running_pods``: pods of this node whose status has a running container;
- ``kubelet_running_containers{container_state}``: the node's containers by state (``running``,
  ``created`` = waiting, ``exited`` = terminated), from the statuses the kubelet wrote;
- the work queue's ``workqueue_*`` and the REST client's ``rest_client_*`` (``apimachinery.metrics``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from apimachinery import metrics

POD_START_BUCKETS = (
    0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800,
    2700, 3600,
)  # fmt: skip
MAX_TRACKED = 10000


class KubeletMetrics:
    def __init__(self, statuses: Callable[[], Iterable[dict[str, Any]]]) -> None:
        """``statuses()``: the pod statuses of this node, read when scraped."""
        self.pod_start = metrics.histogram(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
            (),
            POD_START_BUCKETS,
        )
        self._first_seen: dict[str, float] = {}
        self._statuses = statuses
        metrics.register_collector("kubelet_running", self._collect)
        metrics.enable_rest_client_metrics()  # the kubelet's requests to the API server

    def seen(self, uid: str) -> None:
        """The kubelet syncs pod ``uid`` (its first time starts the pod-start clock)."""
        if uid not in self._first_seen:
            if len(self._first_seen) >= MAX_TRACKED:
                self._first_seen.clear()
            self._first_seen[uid] = time.monotonic()

    def status_written(self, uid: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        """A status goes out: the first one saying Running observes the pod's start duration."""
        if new.get("phase") == "Running" and old.get("phase") != "Running":
            first = self._first_seen.pop(uid, None)
            if first is not None:
                self.pod_start.observe(time.monotonic() - first)

    def forget(self, uid: str) -> None:
        self._first_seen.pop(uid, None)

    def _collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        pods = 0
        states = {"running": 0, "created": 0, "exited": 0}
        for status in self._statuses():
            running = False
            for cs in status.get("containerStatuses") or []:
                state = cs.get("state") or {}
                if "running" in state:
                    states["running"] += 1
                    running = True
                elif "terminated" in state:
                    states["exited"] += 1
                else:
                    states["created"] += 1
            pods += running
        running_pods = GaugeMetricFamily(
            "kubelet_running_pods", "Number of pods that have a running pod sandbox"
        )
        running_pods.add_metric([], pods)
        yield running_pods
        containers = GaugeMetricFamily(
            "kubelet_running_containers", "Number of containers currently running", labels=["container_state"]
        )
        for state, count in states.items():
            containers.add_metric([state], count)
        yield containers
