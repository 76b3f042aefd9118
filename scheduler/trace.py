"""The scheduler's spans for ``minik trace``: a pod's wait in the queue, the decision (the filter
and score plugins run in one pass, :func:`scheduler.fastpath.schedule`) and the binding."""

from __future__ import annotations

import time
from typing import Any

from apimachinery import tracing

Obj = dict[str, Any]


def pod_links(pod: Obj) -> list[tuple[str, str, str]]:
    return [("owner", kind, uid) for kind, uid in tracing.owner_uids(pod)]


def decision(pod: Obj, waited: float, start_ns: int, end_ns: int, node: str | None, feasible: int) -> None:
    """The queue wait (``waited`` seconds up to ``start_ns``, the pop) and the decision."""
    attrs = tracing.object_attributes(pod, "Pod")
    uid = attrs[tracing.ATTR_UID]
    links = pod_links(pod)
    tracing.record("scheduling queue wait", uid, start_ns - int(waited * 1e9), start_ns, attrs, links=links)
    result = {"minik.scheduler.feasible_nodes": feasible}
    if node:
        result[tracing.ATTR_NODE] = node  # type: ignore[assignment]
    tracing.record(
        "filter and score",
        uid,
        start_ns,
        end_ns,
        {**attrs, **result},
        links=links,
        error=None if node else "unschedulable",
    )


def bind(pod: Obj, node: str, start_ns: int, error: str | None = None) -> None:
    attrs = tracing.object_attributes(pod, "Pod")
    tracing.record(
        "bind",
        attrs[tracing.ATTR_UID],
        start_ns,
        time.time_ns(),
        {**attrs, tracing.ATTR_NODE: node},
        links=pod_links(pod),
        error=error,
    )
