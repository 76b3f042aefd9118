"""``GET /stats/summary``: the node's and its pods' CPU, memory, network and filesystem usage in
Kubernetes' Summary API shape (``k8s.io/kubelet/pkg/apis/stats/v1alpha1``), which metrics-server
and ``kubectl top`` read.

Pods' figures come from the container runtime (Docker's stats: cgroup CPU and memory, the
sandbox's network interfaces); the node's from ``/proc`` and ``statvfs``.  :func:`build_summary` and
the ``/proc`` parsers are pure and unit-tested.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from apimachinery.timefmt import parse_time, rfc3339

from .runtime import STATE_RUNNING, ContainerStats

if TYPE_CHECKING:
    from .kubelet import Kubelet

Obj = dict[str, Any]


@dataclass
class NodeSample:
    cpu_usage_nanos: int = 0
    cpu_usage_nano_cores: int = 0
    memory_total: int = 0
    memory_available: int = 0
    memory_working_set: int = 0
    memory_rss: int = 0
    fs_capacity: int = 0
    fs_available: int = 0
    fs_inodes: int = 0
    fs_inodes_free: int = 0
    image_fs_capacity: int = 0
    image_fs_available: int = 0
    interfaces: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class PodSample:
    pod: Obj
    containers: list[tuple[str, float, ContainerStats]]  # (name, started at, stats)
    network: ContainerStats | None  # the sandbox's
    volumes: list[tuple[str, int]] = field(default_factory=list)  # (volume name, used bytes)
    logs_bytes: dict[str, int] = field(default_factory=dict)


def parse_proc_stat(text: str, clock_ticks: int = 100) -> int:
    """Cumulative CPU time (ns) of all CPUs from ``/proc/stat``'s ``cpu`` line (user..steal, not idle)."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            v = [int(x) for x in line.split()[1:]]
            busy = sum(v[:8]) - v[3] - (v[4] if len(v) > 4 else 0)  # minus idle and iowait
            return busy * 1_000_000_000 // clock_ticks
    return 0


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` in bytes."""
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[name] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def _netns_interfaces(netns: str) -> dict[str, tuple[int, int]]:
    """The interfaces (but ``lo``) of a process's network namespace, ``/proc/PID/ns/net``."""
    try:
        with open(os.path.join(os.path.dirname(os.path.dirname(netns)), "net", "dev")) as f:
            return {k: v for k, v in parse_net_dev(f.read()).items() if k != "lo"}
    except OSError:
        return {}


def parse_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """``/proc/net/dev``: interface -> (rx bytes, tx bytes)."""
    out = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        cols = rest.split()
        if len(cols) >= 9:
            out[name.strip()] = (int(cols[0]), int(cols[8]))
    return out


def _cpu(ts: str, stats: ContainerStats) -> Obj:
    return {
        "time": ts,
        "usageNanoCores": stats.cpu_usage_nano_cores,
        "usageCoreNanoSeconds": stats.cpu_usage_nanos,
    }


def _memory(ts: str, stats: ContainerStats) -> Obj:
    out: Obj = {
        "time": ts,
        "usageBytes": stats.memory_usage_bytes,
        "workingSetBytes": stats.memory_working_set_bytes,
        "rssBytes": stats.memory_rss_bytes,
        "pageFaults": stats.page_faults,
        "majorPageFaults": stats.major_page_faults,
    }
    # a limit as large as the host's memory means "no limit": Kubernetes omits availableBytes then
    if stats.memory_limit_bytes and stats.memory_limit_bytes < (1 << 62):
        out["availableBytes"] = max(0, stats.memory_limit_bytes - stats.memory_working_set_bytes)
    return out


def _network(ts: str, interfaces: dict[str, tuple[int, int]], default: str = "eth0") -> Obj:
    ifaces = [
        {"name": name, "rxBytes": rx, "rxErrors": 0, "txBytes": tx, "txErrors": 0}
        for name, (rx, tx) in sorted(interfaces.items())
    ]
    first = next((i for i in ifaces if i["name"] == default), ifaces[0] if ifaces else None)
    out: Obj = {"time": ts, "interfaces": ifaces}
    if first is not None:
        out.update(first)
    return out


def build_summary(
    node_name: str, node_start: float, node: NodeSample, pods: list[PodSample], now: float
) -> Obj:
    """The ``Summary`` object."""
    ts = rfc3339(now)
    fs = {
        "time": ts,
        "availableBytes": node.fs_available,
        "capacityBytes": node.fs_capacity,
        "usedBytes": max(0, node.fs_capacity - node.fs_available),
        "inodesFree": node.fs_inodes_free,
        "inodes": node.fs_inodes,
        "inodesUsed": max(0, node.fs_inodes - node.fs_inodes_free),
    }
    image_fs = {
        "time": ts,
        "availableBytes": node.image_fs_available,
        "capacityBytes": node.image_fs_capacity,
        "usedBytes": max(0, node.image_fs_capacity - node.image_fs_available),
    }
    node_obj: Obj = {
        "nodeName": node_name,
        "systemContainers": [],
        "startTime": rfc3339(node_start),
        "cpu": {
            "time": ts,
            "usageNanoCores": node.cpu_usage_nano_cores,
            "usageCoreNanoSeconds": node.cpu_usage_nanos,
        },
        "memory": {
            "time": ts,
            "availableBytes": node.memory_available,
            "usageBytes": max(0, node.memory_total - node.memory_available),
            "workingSetBytes": node.memory_working_set,
            "rssBytes": node.memory_rss,
            "pageFaults": 0,
            "majorPageFaults": 0,
        },
        "network": _network(ts, node.interfaces),
        "fs": fs,
        "runtime": {"imageFs": image_fs, "containerFs": image_fs},
    }
    out_pods = []
    for p in pods:
        meta = p.pod.get("metadata") or {}
        status = p.pod.get("status") or {}
        containers = []
        total = ContainerStats()
        for name, started, st in p.containers:
            containers.append(
                {
                    "name": name,
                    "startTime": rfc3339(started),
                    "cpu": _cpu(ts, st),
                    "memory": _memory(ts, st),
                    "rootfs": {
                        "time": ts,
                        "availableBytes": node.image_fs_available,
                        "capacityBytes": node.image_fs_capacity,
                    },
                    "logs": {
                        "time": ts,
                        "availableBytes": node.image_fs_available,
                        "capacityBytes": node.image_fs_capacity,
                        "usedBytes": p.logs_bytes.get(name, 0),
                    },
                }
            )
            total.cpu_usage_nanos += st.cpu_usage_nanos
            total.cpu_usage_nano_cores += st.cpu_usage_nano_cores
            total.memory_usage_bytes += st.memory_usage_bytes
            total.memory_working_set_bytes += st.memory_working_set_bytes
            total.memory_rss_bytes += st.memory_rss_bytes
            total.page_faults += st.page_faults
            total.major_page_faults += st.major_page_faults
            total.pids += st.pids
        pod_mem = _memory(ts, total)
        pod_obj: Obj = {
            "podRef": {"name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid")},
            "startTime": status.get("startTime"),
            "containers": containers,
            "cpu": _cpu(ts, total),
            "memory": pod_mem,
            "volume": [
                {
                    "time": ts,
                    "name": name,
                    "usedBytes": used,
                    "capacityBytes": node.fs_capacity,
                    "availableBytes": node.fs_available,
                }
                for name, used in p.volumes
            ],
            "ephemeral-storage": {
                "time": ts,
                "availableBytes": node.fs_available,
                "capacityBytes": node.fs_capacity,
                "usedBytes": sum(used for _n, used in p.volumes) + sum(p.logs_bytes.values()),
            },
            "process_stats": {"process_count": total.pids},
        }
        if p.network is not None:
            pod_obj["network"] = _network(ts, p.network.interfaces)
        out_pods.append(pod_obj)
    return {"node": node_obj, "pods": out_pods}


def _dir_size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


class StatsProvider:
    """Samples the node and the runtime for :func:`build_summary`."""

    def __init__(self, kubelet: Kubelet) -> None:
        self.kubelet = kubelet
        self.start = time.time()
        self._last_cpu: tuple[float, int] | None = None

    def _node(self) -> NodeSample:
        s = NodeSample()
        try:
            with open("/proc/stat") as f:
                s.cpu_usage_nanos = parse_proc_stat(f.read(), os.sysconf("SC_CLK_TCK"))
            now = time.monotonic()
            if self._last_cpu is not None and now > self._last_cpu[0]:
                s.cpu_usage_nano_cores = max(
                    0, int((s.cpu_usage_nanos - self._last_cpu[1]) / (now - self._last_cpu[0]))
                )
            self._last_cpu = (now, s.cpu_usage_nanos)
            with open("/proc/meminfo") as f:
                mem = parse_meminfo(f.read())
            s.memory_total = mem.get("MemTotal", 0)
            s.memory_available = mem.get("MemAvailable", mem.get("MemFree", 0))
            s.memory_working_set = max(0, s.memory_total - s.memory_available)
            s.memory_rss = max(
                0, s.memory_total - mem.get("MemFree", 0) - mem.get("Cached", 0) - mem.get("Buffers", 0)
            )
            with open("/proc/net/dev") as f:
                s.interfaces = {k: v for k, v in parse_net_dev(f.read()).items() if k != "lo"}
        except OSError:
            pass
        for path, cap, avail, inodes, free in (
            (self.kubelet.root_dir, "fs_capacity", "fs_available", "fs_inodes", "fs_inodes_free"),
            ("/var/lib/docker", "image_fs_capacity", "image_fs_available", "", ""),
        ):
            try:
                st = os.statvfs(path if os.path.exists(path) else "/")
            except OSError:
                continue
            setattr(s, cap, st.f_blocks * st.f_frsize)
            setattr(s, avail, st.f_bavail * st.f_frsize)
            if inodes:
                setattr(s, inodes, st.f_files)
                setattr(s, free, st.f_ffree)
        return s

    async def summary(self) -> Obj:
        k = self.kubelet
        node = await asyncio.to_thread(self._node)
        pods = {(p.get("metadata") or {}).get("uid"): p for p in k.pods.store.list()}
        containers = [
            c for c in await k.runtime.list_containers() if c.state == STATE_RUNNING and c.pod.uid in pods
        ]
        sandboxes = [
            s for s in await k.runtime.list_sandboxes() if s.state == STATE_RUNNING and s.pod.uid in pods
        ]

        async def one(cid: str) -> ContainerStats | None:
            try:
                return await k.runtime.stats(cid)
            except Exception:  # noqa: BLE001 - a container that just went away
                return None

        # Docker answers a one-shot stats call after a sampling interval: ask for all at once
        results = await asyncio.gather(*(one(c.id) for c in containers), *(one(s.id) for s in sandboxes))
        c_stats = dict(zip([c.id for c in containers], results[: len(containers)], strict=True))
        s_stats = dict(zip([s.pod.uid for s in sandboxes], results[len(containers) :], strict=True))
        for s in sandboxes:  # a sandbox of a CNI network: the runtime does not count its interfaces
            st = s_stats.get(s.pod.uid)
            if st is not None and not st.interfaces and s.netns:
                st.interfaces = await asyncio.to_thread(_netns_interfaces, s.netns)
                st.rx_bytes = sum(rx for rx, _ in st.interfaces.values())
                st.tx_bytes = sum(tx for _, tx in st.interfaces.values())
        samples = []
        for uid, pod in pods.items():
            mine = [c for c in containers if c.pod.uid == uid]
            if not mine and uid not in s_stats:
                continue
            vol_dir = k.volumes.pod_dir(str(uid)) / "volumes"
            volumes = []
            if vol_dir.exists():
                for plugin in vol_dir.iterdir():
                    for v in plugin.iterdir():
                        volumes.append((v.name, await asyncio.to_thread(_dir_size, str(v))))
            samples.append(
                PodSample(
                    pod,
                    [
                        (c.name, c.started_at or c.created_at, st)
                        for c in mine
                        if (st := c_stats.get(c.id)) is not None
                    ],
                    s_stats.get(str(uid)),
                    volumes,
                )
            )
        return build_summary(k.node_name, self.start, node, samples, time.time())


# ---- /metrics/resource --------------------------------------------------------------------------

_RESOURCE_METRICS = (
    ("node_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed by the node in core-seconds"),
    ("node_memory_working_set_bytes", "gauge", "Current working set of the node in bytes"),
    (
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
    ),
    ("container_memory_working_set_bytes", "gauge", "Current working set of the container in bytes"),
    ("container_start_time_seconds", "gauge", "Start time of the container since unix epoch in seconds"),
    ("pod_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed by the pod in core-seconds"),
    ("pod_memory_working_set_bytes", "gauge", "Current working set of the pod in bytes"),
    ("scrape_error", "gauge", "1 if there was an error while getting container metrics, 0 otherwise"),
)


def _label_value(v: Any) -> str:
    return str(v or "").replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: Any) -> str:
    return "{" + ",".join(f'{k}="{_label_value(v)}"' for k, v in kv.items()) + "}"


def _ms(ts: str | None, default: int) -> int:
    t = parse_time(ts) if ts else None
    return default if t is None else int(t * 1000)


def resource_metrics(summary: Obj, scrape_error: bool = False, now: float | None = None) -> str:
    """The kubelet's ``/metrics/resource`` (Prometheus text format 0.0.4, Kubernetes' metric names
    and labels) from a :func:`build_summary` object; CPU and memory samples carry ``now`` (the time
    the stats were taken) in milliseconds, which metrics-server computes rates from."""
    default_ms = int((time.time() if now is None else now) * 1000)
    samples: dict[str, list[str]] = {name: [] for name, _t, _h in _RESOURCE_METRICS}
    node = summary.get("node") or {}
    cpu, mem = node.get("cpu") or {}, node.get("memory") or {}
    if "usageCoreNanoSeconds" in cpu:
        samples["node_cpu_usage_seconds_total"].append(
            f" {cpu['usageCoreNanoSeconds'] / 1e9:.9f} {default_ms}"
        )
    if "workingSetBytes" in mem:
        samples["node_memory_working_set_bytes"].append(f" {int(mem['workingSetBytes'])} {default_ms}")
    for pod in summary.get("pods") or []:
        ref = pod.get("podRef") or {}
        for c in pod.get("containers") or []:
            lbl = _labels(container=c.get("name"), namespace=ref.get("namespace"), pod=ref.get("name"))
            ccpu, cmem = c.get("cpu") or {}, c.get("memory") or {}
            if "usageCoreNanoSeconds" in ccpu:
                samples["container_cpu_usage_seconds_total"].append(
                    f"{lbl} {ccpu['usageCoreNanoSeconds'] / 1e9:.9f} {default_ms}"
                )
            if "workingSetBytes" in cmem:
                samples["container_memory_working_set_bytes"].append(
                    f"{lbl} {int(cmem['workingSetBytes'])} {default_ms}"
                )
            if c.get("startTime"):
                samples["container_start_time_seconds"].append(f"{lbl} {_ms(c['startTime'], 0) / 1000:.3f}")
        lbl = _labels(namespace=ref.get("namespace"), pod=ref.get("name"))
        pcpu, pmem = pod.get("cpu") or {}, pod.get("memory") or {}
        if "usageCoreNanoSeconds" in pcpu and pod.get("containers"):
            samples["pod_cpu_usage_seconds_total"].append(
                f"{lbl} {pcpu['usageCoreNanoSeconds'] / 1e9:.9f} {default_ms}"
            )
        if "workingSetBytes" in pmem and pod.get("containers"):
            samples["pod_memory_working_set_bytes"].append(
                f"{lbl} {int(pmem['workingSetBytes'])} {default_ms}"
            )
    samples["scrape_error"].append(f" {1 if scrape_error else 0}")
    out = []
    for name, kind, help_ in _RESOURCE_METRICS:
        out.append(f"# HELP {name} [STABLE] {help_}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(name + s for s in sorted(samples[name]))
    return "\n".join(out) + "\n"
