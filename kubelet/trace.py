"""The kubelet's spans for ``minik trace``: the sync that starts a pod (planning, the sandbox's
create and start, each container's image check or pull, create and start), the status write
until the pod is Ready, and the first readiness-probe success."""

from __future__ import annotations

import time
from typing import Any

from apimachinery import tracing

Obj = dict[str, Any]


def _attrs(pod: Obj, **extra: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = tracing.object_attributes(pod, "Pod")
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        attrs[tracing.ATTR_NODE] = node
    attrs.update(extra)
    return attrs


def _links(pod: Obj) -> list[tuple[str, str, str]]:
    return [("owner", kind, uid) for kind, uid in tracing.owner_uids(pod)]


def _wall(wall0: int, t0: float, t: float) -> int:
    """A ``perf_counter()`` reading as wall-clock nanoseconds (``wall0`` was read at ``t0``)."""
    return wall0 + int((t - t0) * 1e9)


_seen: dict[str, int] = {}  # pod UID -> when the kubelet's informer delivered it


def seen(pod: Obj) -> None:
    if tracing.active():
        if len(_seen) > 4096:
            _seen.clear()
        _seen[str((pod.get("metadata") or {}).get("uid") or "")] = time.time_ns()


def sandbox(
    pod: Obj,
    wall0: int,
    t0: float,
    listed: float,
    created: float,
    started: float,
    networked: float | None = None,
) -> None:
    uid, attrs, links = str((pod.get("metadata") or {}).get("uid") or ""), _attrs(pod), _links(pod)
    arrived = _seen.pop(uid, None)
    if arrived is not None and arrived < wall0:
        tracing.record("kubelet pod queue wait", uid, arrived, wall0, attrs, links=links)
    tracing.record("sync pod", uid, wall0, _wall(wall0, t0, listed), attrs, links=links)
    tracing.record(
        "create sandbox", uid, _wall(wall0, t0, listed), _wall(wall0, t0, created), attrs, links=links
    )
    tracing.record(
        "start sandbox", uid, _wall(wall0, t0, created), _wall(wall0, t0, started), attrs, links=links
    )
    if networked is not None and networked > started:  # CNI ADD of the pod's network
        tracing.record(
            "set up pod network",
            uid,
            _wall(wall0, t0, started),
            _wall(wall0, t0, networked),
            attrs,
            links=links,
        )


def status(pod: Obj, wall0: int, t0: float, start: float, end: float, ready: bool, phase: str = "") -> None:
    """A status write of a pod not Ready yet: ``minik.pod.phase`` is the phase it wrote (the first
    ``Running`` one ends the pod's create-to-Running time), ``minik.pod.ready`` whether it said Ready."""
    uid = str((pod.get("metadata") or {}).get("uid") or "")
    attrs = _attrs(pod, **{"minik.pod.ready": ready, "minik.pod.phase": phase})
    tracing.record(
        "update pod status", uid, _wall(wall0, t0, start), _wall(wall0, t0, end), attrs, links=_links(pod)
    )


def not_ready(status: Obj) -> bool:
    """The pod's status does not say Ready yet (its status writes are steps of its start)."""
    return not any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ()
    )


def step(name: str, pod: Obj, container: str) -> tracing.Step:
    """A span around one container's step (``with trace.step("create container", pod, name):``)."""
    uid = str((pod.get("metadata") or {}).get("uid") or "")
    return tracing.Step(f"{name} {container}", uid, _attrs(pod, **{"k8s.container.name": container}))


def readiness(uid: str, pod_key: str, container: str, since_ns: int) -> None:
    namespace, _, name = pod_key.partition("/")
    attrs = {
        tracing.ATTR_KIND: "Pod",
        tracing.ATTR_NAME: name,
        tracing.ATTR_NAMESPACE: namespace,
        "k8s.container.name": container,
    }
    tracing.record(f"readiness probe {container}", uid, since_ns, time.time_ns(), attrs)
