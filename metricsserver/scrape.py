"""What metrics-server does with a kubelet's ``/metrics/resource``, as pure functions.

:func:`parse_resource_metrics` reads the Prometheus text into a :class:`NodeSample` (the node's
cumulative CPU seconds and working set, each container's, with the samples' timestamps);
:func:`node_metrics` and :func:`pod_metrics` turn two samples of the same thing into the
``metrics.k8s.io/v1beta1`` objects: CPU as the rate between the two cumulative values (cores, in
nanocores as metrics-server writes them), memory as the newer working set.  A container whose
start time changed between the samples (it restarted) or whose counter went down has no rate yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from apimachinery.timefmt import rfc3339

Obj = dict[str, Any]
GROUP_VERSION = "metrics.k8s.io/v1beta1"


@dataclass
class Point:
    """One cumulative CPU reading (seconds) and working set (bytes) at ``ts`` (seconds)."""

    ts: float = 0.0
    cpu: float | None = None
    memory: float | None = None
    start: float | None = None  # a container's start time


@dataclass
class NodeSample:
    node: Point = field(default_factory=Point)
    containers: dict[tuple[str, str, str], Point] = field(default_factory=dict)  # (ns, pod, container)
    error: bool = False


def _parse_labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(text):
        eq = text.index("=", i)
        key = text[i:eq].strip().lstrip(",").strip()
        assert text[eq + 1] == '"'
        j = eq + 2
        value = []
        while text[j] != '"':
            if text[j] == "\\":
                j += 1
                value.append({"n": "\n"}.get(text[j], text[j]))
            else:
                value.append(text[j])
            j += 1
        out[key] = "".join(value)
        i = j + 1
        while i < len(text) and text[i] in ", ":
            i += 1
    return out


def parse_line(line: str) -> tuple[str, dict[str, str], float, float | None] | None:
    """(name, labels, value, timestamp in seconds or None) of one sample line; None for comments."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    labels: dict[str, str] = {}
    if "{" in line:
        name, _, rest = line.partition("{")
        end = rest.rindex("}")
        labels = _parse_labels(rest[:end])
        fields = rest[end + 1 :].split()
    else:
        name, *fields = line.split()
    if not fields:
        raise ValueError(f"no value in {line!r}")
    value = float(fields[0])
    ts = float(fields[1]) / 1000 if len(fields) > 1 else None
    return name.strip(), labels, value, ts


def parse_resource_metrics(text: str, now: float) -> NodeSample:
    """A kubelet's ``/metrics/resource``; samples without a timestamp are taken at ``now``."""
    s = NodeSample()
    for line in text.splitlines():
        parsed = parse_line(line)
        if parsed is None:
            continue
        name, labels, value, ts = parsed
        if math.isnan(value):
            continue
        if name == "scrape_error":
            s.error = value != 0
            continue
        if name.startswith("node_"):
            if name == "node_cpu_usage_seconds_total":
                s.node.cpu, s.node.ts = value, ts or now
            elif name == "node_memory_working_set_bytes":
                s.node.memory = value
                s.node.ts = s.node.ts or ts or now
            continue
        if not name.startswith("container_"):
            continue
        key = (labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", ""))
        p = s.containers.setdefault(key, Point())
        if name == "container_cpu_usage_seconds_total":
            p.cpu, p.ts = value, ts or now
        elif name == "container_memory_working_set_bytes":
            p.memory = value
            p.ts = p.ts or ts or now
        elif name == "container_start_time_seconds":
            p.start = value
    return s


def rate(old: Point | None, new: Point) -> float | None:
    """Cores used between two cumulative CPU readings, or None when there is no valid pair."""
    if old is None or old.cpu is None or new.cpu is None or new.ts <= old.ts:
        return None
    if old.start is not None and new.start is not None and old.start != new.start:
        return None  # restarted: the counter began again
    if new.cpu < old.cpu:
        return None
    return (new.cpu - old.cpu) / (new.ts - old.ts)


def cpu_quantity(cores: float) -> str:
    """Cores as metrics-server writes them: nanocores (``"12345678n"``)."""
    return f"{max(0, round(cores * 1e9))}n"


def memory_quantity(value: float) -> str:
    """Bytes as metrics-server writes them: ``Ki`` (``"12345Ki"``)."""
    return f"{max(0, int(value) // 1024)}Ki"


def _window(old: Point, new: Point) -> str:
    seconds = new.ts - old.ts
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def node_metrics(node: Obj, old: Point | None, new: Point) -> Obj | None:
    """The ``NodeMetrics`` of ``node`` from two of its samples (None without a rate)."""
    cores = rate(old, new)
    if cores is None or new.memory is None:
        return None
    assert old is not None
    meta = node.get("metadata") or {}
    return {
        "kind": "NodeMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": {
            "name": meta.get("name"),
            "creationTimestamp": rfc3339(new.ts),
            "labels": dict(meta.get("labels") or {}),
        },
        "timestamp": rfc3339(new.ts),
        "window": _window(old, new),
        "usage": {"cpu": cpu_quantity(cores), "memory": memory_quantity(new.memory)},
    }


def pod_metrics(pod: Obj, old: dict[str, Point], new: dict[str, Point]) -> Obj | None:
    """The ``PodMetrics`` of ``pod`` from two samples of its containers (by name); None when any
    running container has no rate yet, as metrics-server leaves such a pod out."""
    meta = pod.get("metadata") or {}
    containers = []
    newest: Point | None = None
    oldest: Point | None = None
    for name in sorted(new):
        p = new[name]
        cores = rate(old.get(name), p)
        if cores is None or p.memory is None:
            return None
        containers.append(
            {"name": name, "usage": {"cpu": cpu_quantity(cores), "memory": memory_quantity(p.memory)}}
        )
        if newest is None or p.ts > newest.ts:
            newest = p
        o = old[name]
        if oldest is None or o.ts < oldest.ts:
            oldest = o
    if not containers or newest is None or oldest is None:
        return None
    return {
        "kind": "PodMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "creationTimestamp": rfc3339(newest.ts),
            "labels": dict(meta.get("labels") or {}),
        },
        "timestamp": rfc3339(newest.ts),
        "window": _window(oldest, newest),
        "containers": containers,
    }


def resource_list() -> Obj:
    """``GET /apis/metrics.k8s.io/v1beta1``."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": "nodes",
                "singularName": "",
                "namespaced": False,
                "kind": "NodeMetrics",
                "verbs": ["get", "list"],
            },
            {
                "name": "pods",
                "singularName": "",
                "namespaced": True,
                "kind": "PodMetrics",
                "verbs": ["get", "list"],
            },
        ],
    }


def api_group() -> Obj:
    gv = {"groupVersion": GROUP_VERSION, "version": "v1beta1"}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": "metrics.k8s.io",
        "versions": [gv],
        "preferredVersion": gv,
    }
