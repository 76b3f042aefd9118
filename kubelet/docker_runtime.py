"""The :class:`~kubelet.runtime.Runtime` over the Docker SDK (``docker`` package).

The SDK is blocking; every call runs in a worker thread (``asyncio.to_thread``).

The sandbox image: a pod's sandbox only has to sleep forever.  Unless ``--pod-infra-image`` names
another image, the runtime builds ``minik/pause:1`` locally on first use from the host's static
busybox (``/bin/busybox``, Debian's ``busybox-static``): ``FROM scratch``, the binary, and
``ENTRYPOINT ["/busybox", "sleep", "2147483647"]`` — about 1 MB, built in a second, no registry
needed.  PID 1 ignores SIGTERM, so sandboxes are killed, not stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import os
import platform
import shutil
import socket
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import docker.types
from docker.models.containers import _create_container_args

from .runtime import (
    LABEL_ATTEMPT,
    LABEL_CONTAINER_NAME,
    LABEL_INIT,
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_RESTART_COUNT,
    LABEL_TYPE,
    NETWORK_NONE,
    STATE_CREATED,
    STATE_EXITED,
    STATE_RUNNING,
    STATE_UNKNOWN,
    TYPE_CONTAINER,
    TYPE_SANDBOX,
    ContainerConfig,
    ContainerStats,
    ContainerStatus,
    ExecResult,
    ImagePullError,
    LogOptions,
    PodRef,
    RuntimeError_,
    SandboxConfig,
    SandboxStatus,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_PAUSE_IMAGE = "minik/pause:1"
# connections to the engine kept open: as many as calls may run at once, and the oom events stream
POOL_SIZE = 33
_PAUSE_DOCKERFILE = b"""FROM scratch
COPY busybox /busybox
LABEL io.minik.pause=true
ENTRYPOINT ["/busybox", "sleep", "2147483647"]
"""


def parse_docker_time(value: str | None) -> float | None:
    """Docker's RFC 3339 nanosecond timestamps as epoch seconds; None for the zero time."""
    if not value or value.startswith("0001-01-01"):
        return None
    text = value.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        tz = ""
        for sep in ("+", "-"):
            if sep in frac:
                frac, tz = frac.split(sep, 1)
                tz = sep + tz
                break
        text = f"{head}.{frac[:6]}{tz}"
    if not (text.endswith("+00:00") or "+" in text[19:] or "-" in text[19:]):
        text += "+00:00"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def stats_from_docker(s: dict[str, Any]) -> ContainerStats:
    """:class:`ContainerStats` from one ``GET /containers/{id}/stats?stream=false`` answer (which
    carries the sample before, ``precpu_stats``, so a CPU rate comes with it)."""
    mem = s.get("memory_stats") or {}
    usage = int(mem.get("usage") or 0)
    mstats = mem.get("stats") or {}
    inactive = int(mstats.get("total_inactive_file") or mstats.get("inactive_file") or 0)
    nets = s.get("networks") or {}
    cpu = s.get("cpu_stats") or {}
    pre = s.get("precpu_stats") or {}
    total = int((cpu.get("cpu_usage") or {}).get("total_usage") or 0)
    pre_total = int((pre.get("cpu_usage") or {}).get("total_usage") or 0)
    nano_cores = 0
    t_now = parse_docker_time(s.get("read"))
    t_pre = parse_docker_time(s.get("preread"))
    if pre_total and t_now and t_pre and t_now > t_pre and total >= pre_total:
        nano_cores = int((total - pre_total) / (t_now - t_pre))
    return ContainerStats(
        cpu_usage_nanos=total,
        cpu_usage_nano_cores=nano_cores,
        memory_usage_bytes=usage,
        memory_working_set_bytes=max(0, usage - inactive),
        memory_rss_bytes=int(mstats.get("total_rss") or mstats.get("rss") or mstats.get("anon") or 0),
        memory_limit_bytes=int(mem.get("limit") or 0),
        page_faults=int(mstats.get("total_pgfault") or mstats.get("pgfault") or 0),
        major_page_faults=int(mstats.get("total_pgmajfault") or mstats.get("pgmajfault") or 0),
        rx_bytes=sum(int(n.get("rx_bytes") or 0) for n in nets.values()),
        tx_bytes=sum(int(n.get("tx_bytes") or 0) for n in nets.values()),
        rx_errors=sum(int(n.get("rx_errors") or 0) for n in nets.values()),
        tx_errors=sum(int(n.get("tx_errors") or 0) for n in nets.values()),
        interfaces={
            name: (int(n.get("rx_bytes") or 0), int(n.get("tx_bytes") or 0)) for name, n in nets.items()
        },
        pids=int((s.get("pids_stats") or {}).get("current") or 0),
    )


CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_SAMPLE = 1.0  # seconds between the two CPU readings (Docker's stats interval)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _read_keyed(path: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat)."""
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1].isdigit():
                    out[parts[0]] = int(parts[1])
    except OSError:
        pass
    return out


def cgroup_dirs(pid: int, root: str = CGROUP_ROOT, proc: str = "/proc") -> dict[str, str]:
    """The cgroup directories of a process by controller (``memory``, ``cpuacct``, ``pids``; one
    ``""`` entry, the unified hierarchy, under cgroup v2), from ``/proc/PID/cgroup``."""
    out: dict[str, str] = {}
    try:
        with open(f"{proc}/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            if controller in ("memory", "cpuacct", "pids"):
                out[controller] = os.path.join(root, controller, parts[2].lstrip("/"))
            elif controller == "" and parts[0] == "0":
                out[""] = os.path.join(root, parts[2].lstrip("/"))
    if "memory" in out or not os.path.isfile(os.path.join(out.get("", ""), "memory.current")):
        out.pop("", None)  # a v1 host's (empty) unified hierarchy
    return out


def _cgroup_cpu(dirs: dict[str, str]) -> int | None:
    if "cpuacct" in dirs:
        return _read_int(os.path.join(dirs["cpuacct"], "cpuacct.usage"))
    if "" in dirs:
        usec = _read_keyed(os.path.join(dirs[""], "cpu.stat")).get("usage_usec")
        return None if usec is None else usec * 1000
    return None


def _host_memory(proc: str = "/proc") -> int:
    try:
        with open(f"{proc}/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cgroup_stats(
    pid: int, root: str = CGROUP_ROOT, proc: str = "/proc", interval: float = CGROUP_SAMPLE
) -> dict[str, Any] | None:
    """A container's statistics read from the cgroups (v1 or v2) of its process ``pid``, shaped as
    Docker's stats answer (CPU read twice ``interval`` apart, for the rate); None when they are gone."""
    dirs = cgroup_dirs(pid, root, proc)
    return cgroup_dirs_stats(dirs, proc, interval) if dirs else None


def cgroup_dirs_stats(
    dirs: dict[str, str], proc: str = "/proc", interval: float = CGROUP_SAMPLE
) -> dict[str, Any] | None:
    """:func:`cgroup_stats` of the cgroup directories ``dirs`` (:func:`cgroup_dirs`); None when
    they are gone (the container stopped)."""
    read0, cpu0 = time.time(), _cgroup_cpu(dirs)
    if interval > 0:
        time.sleep(interval)
    read1, cpu1 = time.time(), _cgroup_cpu(dirs)
    if cpu1 is None:
        return None
    if "memory" in dirs:
        mdir = dirs["memory"]
        usage = _read_int(os.path.join(mdir, "memory.usage_in_bytes"))
        limit = _read_int(os.path.join(mdir, "memory.limit_in_bytes"))
    else:
        mdir = dirs[""]
        usage = _read_int(os.path.join(mdir, "memory.current"))
        limit = _read_int(os.path.join(mdir, "memory.max"))  # None for "max"
    host = _host_memory(proc)
    if host and (limit is None or limit > host):
        limit = host  # as Docker reports an unlimited container
    pids_dir = dirs.get("pids") or dirs.get("")
    pids = _read_int(os.path.join(pids_dir, "pids.current")) if pids_dir else None

    def stamp(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"

    return {
        "read": stamp(read1),
        "preread": stamp(read0),
        "memory_stats": {
            "usage": usage or 0,
            "limit": limit or 0,
            "stats": _read_keyed(os.path.join(mdir, "memory.stat")),
        },
        "cpu_stats": {"cpu_usage": {"total_usage": cpu1}},
        "precpu_stats": {"cpu_usage": {"total_usage": cpu0 or 0}},
        "pids_stats": {"current": pids or 0},
    }


def _pod_ref(labels: dict[str, str]) -> PodRef:
    return PodRef(
        labels.get(LABEL_POD_UID, ""), labels.get(LABEL_POD_NAME, ""), labels.get(LABEL_POD_NAMESPACE, "")
    )


def _given(values: dict[str, Any]) -> dict[str, Any]:
    """The options that have a value (None, zero and empty ones left out)."""
    return {k: v for k, v in values.items() if v}


def _int_label(labels: dict[str, str], key: str) -> int:
    try:
        return int(labels.get(key, "0"))
    except ValueError:
        return 0


def _state(attrs: dict[str, Any]) -> str:
    status = (attrs.get("State") or {}).get("Status", "")
    if status in ("running", "paused", "restarting"):
        return STATE_RUNNING
    if status in ("exited", "dead"):
        return STATE_EXITED
    if status == "created":
        return STATE_CREATED
    return STATE_UNKNOWN


def container_status_from_attrs(attrs: dict[str, Any]) -> ContainerStatus:
    """A :class:`ContainerStatus` from ``docker inspect`` output."""
    config = attrs.get("Config") or {}
    labels = dict(config.get("Labels") or {})
    state = attrs.get("State") or {}
    st = _state(attrs)
    return ContainerStatus(
        id=str(attrs.get("Id", "")),
        pod=_pod_ref(labels),
        name=labels.get(LABEL_CONTAINER_NAME, ""),
        restart_count=_int_label(labels, LABEL_RESTART_COUNT),
        init=labels.get(LABEL_INIT) == "true",
        state=st,
        image=str(config.get("Image", "")),
        image_id=str(attrs.get("Image", "")),
        created_at=parse_docker_time(attrs.get("Created")) or 0.0,
        started_at=parse_docker_time(state.get("StartedAt")),
        finished_at=parse_docker_time(state.get("FinishedAt")) if st == STATE_EXITED else None,
        exit_code=int(state.get("ExitCode", 0)) if st == STATE_EXITED else None,
        oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
        labels=labels,
    )


def _sandbox_from_attrs(attrs: dict[str, Any], network: str | None = None) -> SandboxStatus:
    labels = dict((attrs.get("Config") or {}).get("Labels") or {})
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    ip = ""
    if network and network in networks:
        ip = networks[network].get("IPAddress") or ""
    if not ip:
        for net in networks.values():
            if net.get("IPAddress"):
                ip = net["IPAddress"]
                break
    state = _state(attrs)
    pid = int((attrs.get("State") or {}).get("Pid") or 0)
    return SandboxStatus(
        id=str(attrs.get("Id", "")),
        pod=_pod_ref(labels),
        attempt=_int_label(labels, LABEL_ATTEMPT),
        state=state,
        ip=ip,
        created_at=parse_docker_time(attrs.get("Created")) or 0.0,
        labels=labels,
        netns=f"/proc/{pid}/ns/net" if pid and state == STATE_RUNNING else "",
    )


def container_name(config: ContainerConfig) -> str:
    p = config.pod
    return f"k8s_{config.name}_{p.name}_{p.namespace}_{p.uid}_{config.restart_count}"


def sandbox_name(config: SandboxConfig) -> str:
    p = config.pod
    return f"k8s_POD_{p.name}_{p.namespace}_{p.uid}_{config.attempt}"


def find_busybox() -> Path | None:
    """The host's static busybox: ``/bin/busybox``, else the one on ``PATH``."""
    binary = Path("/bin/busybox")
    if binary.is_file():
        return binary
    found = shutil.which("busybox")
    return Path(found) if found else None


def busybox_context(dockerfile: bytes, binary: Path) -> io.BytesIO:
    """A build context (an uncompressed tar): ``dockerfile`` and ``binary`` as ``busybox``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(str(binary), arcname="busybox")
    buf.seek(0)
    return buf


async def _unless_gone(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``fn(*args, **kwargs)`` in a worker thread; None when the engine has no such object (404)."""

    def run() -> T | None:
        try:
            return fn(*args, **kwargs)
        except docker.errors.APIError as exc:
            if isinstance(exc, docker.errors.NotFound) or exc.status_code == 404:
                return None
            raise

    return await asyncio.to_thread(run)


async def _in_thread(fn: Callable[[], T], failure: str, reason: str = "RunContainerError") -> T:
    """``fn()`` in a worker thread; an engine error becomes :class:`RuntimeError_` ``failure: why``."""
    try:
        return await asyncio.to_thread(fn)
    except docker.errors.APIError as exc:
        raise RuntimeError_(f"{failure}: {exc.explanation or exc}", reason) from exc


def _exec_exit_code(info: dict[str, Any]) -> int:
    """The exit code of an exec from its inspect output (1 when there is none)."""
    code = info.get("ExitCode")
    return int(code) if code is not None else 1


class _DockerExecSession:
    """An interactive ``docker exec`` over the raw attach socket."""

    what = "exec"

    def __init__(self, api: Any, exec_id: str, sock: Any, tty: bool) -> None:
        self._api = api
        self._exec_id = exec_id
        self._resize: Callable[..., Any] = functools.partial(api.exec_resize, exec_id)
        self._sock = sock
        self._raw = getattr(sock, "_sock", sock)
        self._tty = tty

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._raw.sendall, data)

    async def close_stdin(self) -> None:
        try:
            await asyncio.to_thread(self._raw.shutdown, socket.SHUT_WR)
        except OSError:
            pass

    async def read(self) -> AsyncIterator[tuple[int, bytes]]:  # type: ignore[override]
        buf = b""
        while True:
            chunk = await asyncio.to_thread(self._recv)
            if not chunk:
                return
            if self._tty:
                yield 1, chunk
                continue
            buf += chunk
            while len(buf) >= 8:
                stream = buf[0]
                size = int.from_bytes(buf[4:8], "big")
                if len(buf) < 8 + size:
                    break
                yield (2 if stream == 2 else 1), buf[8 : 8 + size]
                buf = buf[8 + size :]

    def _recv(self) -> bytes:
        try:
            return bytes(self._raw.recv(65536))
        except OSError:
            return b""

    async def resize(self, width: int, height: int) -> None:
        try:
            await asyncio.to_thread(self._resize, height=height, width=width)
        except docker.errors.APIError as exc:
            log.debug("%s resize failed: %s", self.what, exc)

    async def exit_code(self) -> int:
        for _ in range(50):
            info = await asyncio.to_thread(self._api.exec_inspect, self._exec_id)
            if not info.get("Running"):
                return _exec_exit_code(info)
            await asyncio.sleep(0.1)
        return 1

    async def close(self) -> None:
        try:
            self._raw.close()
        except OSError:
            pass


class _DockerAttachSession(_DockerExecSession):
    """``docker attach`` to a container's main process over the raw attach socket."""

    what = "attach"

    def __init__(self, api: Any, container_id: str, sock: Any, tty: bool) -> None:
        super().__init__(api, "", sock, tty)
        self._resize = functools.partial(api.resize, container_id)

    async def exit_code(self) -> int:
        return 0  # detaching is not a failure; the container's own exit is in the pod's status


class OOMWatch:
    """The containers of one node that Docker has published an ``oom`` event for.

    Docker 20.10 sets ``State.OOMKilled`` only when containerd's OOM event reaches it before the
    exit: when the exit comes first the flag stays false for good, yet the ``oom`` event is still
    published.  One thread follows ``GET /events`` for this node's ``oom`` events (filtered by the
    engine), and :meth:`seen` tells whether a container had one, so an OOM kill is reported
    either way.  The stream starts an hour back (the engine replays what it still holds: its
    last 256 events), so a restarted kubelet knows of recent kills; a broken stream is opened
    again from the last event's second, so none is missed.  A container is forgotten when the
    runtime removes it; past ``LIMIT`` entries the first added go.
    """

    REPLAY_SECONDS = 3600
    LIMIT = 10_000
    WARN_EVERY = 60.0  # seconds between warnings while the stream keeps failing

    def __init__(self, api: Any, node_name: str) -> None:
        self._api = api
        self._filters = {"type": ["container"], "event": ["oom"], "label": [f"{LABEL_NODE}={node_name}"]}
        self._seen: dict[str, None] = {}  # container IDs, in the order their events came
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._warned: float | None = None  # when the last warning was logged

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="docker-oom-events", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def add(self, container_id: str) -> None:
        with self._lock:
            self._seen[container_id] = None
            while len(self._seen) > self.LIMIT:
                del self._seen[next(iter(self._seen))]  # the first added

    def forget(self, container_id: str) -> None:
        with self._lock:
            self._seen.pop(container_id, None)

    def seen(self, container_id: str) -> bool:
        with self._lock:
            return container_id in self._seen

    def _run(self) -> None:
        since = time.time() - self.REPLAY_SECONDS
        while not self._stop.is_set():
            try:
                self._stream = self._api.events(since=int(since), filters=self._filters, decode=True)
                if self._stop.is_set():  # close() ran before the stream was there to close
                    self._stream.close()
                    break
                for event in self._stream:
                    cid = str(event.get("id") or (event.get("Actor") or {}).get("ID") or "")
                    at = float(event.get("timeNano") or 0) / 1e9 or time.time()
                    if cid:
                        self.add(cid)
                    since = max(since, at)
            except Exception as exc:  # the engine restarting, a closed connection: open it again
                now = time.monotonic()
                if not self._stop.is_set() and (
                    self._warned is None or now - self._warned >= self.WARN_EVERY
                ):
                    self._warned = now
                    log.warning("docker oom events: %s (opening the stream again)", exc)
            self._stop.wait(1.0)


class DockerRuntime:
    """:class:`~kubelet.runtime.Runtime` for one Docker engine, scoped to one node's objects."""

    def __init__(
        self,
        node_name: str,
        base_url: str | None = None,
        pause_image: str | None = None,
        client: Any = None,
    ) -> None:
        self.node_name = node_name
        self.client = client or (
            docker.DockerClient(base_url=base_url, max_pool_size=POOL_SIZE)
            if base_url
            else docker.from_env(max_pool_size=POOL_SIZE)
        )
        self.api = self.client.api
        self.pause_image = pause_image or DEFAULT_PAUSE_IMAGE
        self.network: str | None = None
        self._build_lock = threading.Lock()
        self._pause_ready = False
        # cgroup directories of the containers whose stats Docker leaves empty, by container ID
        self._cgroups: dict[str, dict[str, str]] = {}
        self.oom_watch = OOMWatch(self.api, node_name)

    def close(self) -> None:
        self.oom_watch.close()
        self.client.close()

    def _status(self, attrs: dict[str, Any]) -> ContainerStatus:
        """:func:`container_status_from_attrs`, OOMKilled also when only the ``oom`` event said so
        and the main process was killed (exit code 137, SIGKILL: the OOM killer's signal)."""
        status = container_status_from_attrs(attrs)
        if (
            not status.oom_killed
            and status.state == STATE_EXITED
            and status.exit_code == 137
            and self.oom_watch.seen(status.id)
        ):
            status.oom_killed = True
        return status

    def _labels(self, extra: dict[str, str]) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_NODE: self.node_name, **extra}

    def _pod_labels(
        self, kind: str, config: SandboxConfig | ContainerConfig, extra: dict[str, str]
    ) -> dict[str, str]:
        """The labels of a sandbox or container: the caller's, its type and pod, then ``extra``."""
        p = config.pod
        return self._labels(
            {
                **config.labels,
                LABEL_TYPE: kind,
                LABEL_POD_UID: p.uid,
                LABEL_POD_NAME: p.name,
                LABEL_POD_NAMESPACE: p.namespace,
                **extra,
            }
        )

    def _node_filter(self, kind: str, pod_uid: str | None = None) -> dict[str, Any]:
        labels = [f"{LABEL_NODE}={self.node_name}", f"{LABEL_TYPE}={kind}"]
        if pod_uid:
            labels.append(f"{LABEL_POD_UID}={pod_uid}")
        return {"label": labels}

    # -- info -----------------------------------------------------------------------------------

    async def version(self) -> dict[str, str]:
        def run() -> dict[str, str]:
            info = self.client.info()
            ver = self.client.version()
            return {
                "runtime": f"docker://{ver.get('Version', '')}",
                "os": str(info.get("OperatingSystem") or platform.platform()),
                "kernel": str(info.get("KernelVersion") or platform.release()),
                "arch": str(ver.get("Arch") or platform.machine()),
                "os_type": str(info.get("OSType") or "linux"),
                "cpus": str(info.get("NCPU") or os.cpu_count() or 1),
                "memory": str(info.get("MemTotal") or 0),
                "root_dir": str(info.get("DockerRootDir") or "/var/lib/docker"),
            }

        return await asyncio.to_thread(run)

    # -- networks -------------------------------------------------------------------------------

    async def ensure_network(self, name: str, subnet: str) -> None:
        def run() -> None:
            try:
                net = self.client.networks.get(name)
                configs = ((net.attrs.get("IPAM") or {}).get("Config")) or []
                subnets = [c.get("Subnet") for c in configs]
                if subnet not in subnets:
                    log.warning("network %s exists with subnets %s, not %s; using it", name, subnets, subnet)
                return
            except docker.errors.NotFound:
                pass
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
            self.client.networks.create(
                name, driver="bridge", ipam=ipam, labels=self._labels({"io.minik.pod-network": "true"})
            )
            log.info("created pod network %s (%s)", name, subnet)

        self.network = name
        await asyncio.to_thread(run)

    async def remove_network(self, name: str) -> None:
        await _unless_gone(lambda: self.client.networks.get(name).remove())

    # -- images ---------------------------------------------------------------------------------

    async def image_id(self, image: str) -> str | None:
        img = await _unless_gone(self.client.images.get, image)
        return None if img is None else str(img.id)

    async def pull_image(self, image: str) -> str:
        def run() -> str:
            repo, tag = _split_image(image)
            try:
                img = self.client.images.pull(repo, tag=tag)
            except docker.errors.APIError as exc:
                msg = exc.explanation or str(exc)
                raise ImagePullError(f'failed to pull image "{image}": {msg}') from exc
            except Exception as exc:  # connection errors, auth errors
                raise ImagePullError(f'failed to pull image "{image}": {exc}') from exc
            return str(img.id)

        return await asyncio.to_thread(run)

    async def ensure_sandbox_image(self) -> str:
        if self._pause_ready:
            return self.pause_image
        if await self.image_id(self.pause_image):
            self._pause_ready = True  # checked once: a removed image shows up as a sandbox error
            return self.pause_image
        if self.pause_image != DEFAULT_PAUSE_IMAGE:
            await self.pull_image(self.pause_image)
            return self.pause_image

        def build() -> None:
            with self._build_lock:
                try:
                    self.client.images.get(self.pause_image)
                    return
                except docker.errors.ImageNotFound:
                    pass
                binary = find_busybox()
                if binary is None:
                    raise RuntimeError_(
                        "cannot build the sandbox image: no static busybox on this host "
                        "(install busybox-static or pass --pod-infra-image)",
                        "CreatePodSandboxError",
                    )
                context = busybox_context(_PAUSE_DOCKERFILE, binary)
                self.client.images.build(fileobj=context, custom_context=True, tag=self.pause_image, rm=True)
                log.info("built sandbox image %s from %s", self.pause_image, binary)

        await asyncio.to_thread(build)
        return self.pause_image

    # -- sandboxes ------------------------------------------------------------------------------

    async def create_sandbox(self, config: SandboxConfig) -> str:
        """``POST /containers/create`` of the sandbox (not started): its ID, which the pod's
        containers need (``network_mode=container:<id>``) to be created while it starts."""
        image = await self.ensure_sandbox_image()
        labels = self._pod_labels(TYPE_SANDBOX, config, {LABEL_ATTEMPT: str(config.attempt)})
        ports: dict[str, Any] = {}
        for pm in config.ports if config.network != NETWORK_NONE else []:  # else: CNI's portmap
            key = f"{pm.container_port}/{pm.protocol.lower()}"
            ports[key] = (pm.host_ip, pm.host_port) if pm.host_ip else pm.host_port
        name = sandbox_name(config)

        def run() -> str:
            kwargs: dict[str, Any] = {
                "name": name,
                "labels": labels,
                "hostname": config.hostname[:63],
                "network": config.network,
                # under "none", no network from Docker at all: runc makes the namespace (with
                # its loopback up) and Docker skips its network sandbox and the prestart hook
                # that re-executes dockerd (libnetwork-setkey): about half of the start
                "network_disabled": config.network == NETWORK_NONE,
                "ports": ports or None,
                "init": False,
                "ipc_mode": "shareable",
            }
            kwargs.update(
                _given(
                    {
                        "dns": config.dns_servers,
                        "dns_search": config.dns_search,
                        "dns_opt": config.dns_options,
                    }
                )
            )
            try:
                return self._create(image, None, kwargs)
            except docker.errors.ImageNotFound:
                self._pause_ready = False
                raise

        return await _in_thread(run, "failed to create sandbox", "CreatePodSandboxError")

    async def start_sandbox(self, sandbox_id: str) -> None:
        """Start a created sandbox; on failure it is removed."""

        def run() -> None:
            try:
                self.api.start(sandbox_id)
            except docker.errors.APIError:
                with contextlib.suppress(docker.errors.APIError):
                    self.api.remove_container(sandbox_id, force=True)
                raise

        await _in_thread(run, "failed to start sandbox", "CreatePodSandboxError")

    async def inspect_sandbox(self, sandbox_id: str) -> SandboxStatus | None:
        attrs = await _unless_gone(self.api.inspect_container, sandbox_id)
        return None if attrs is None else _sandbox_from_attrs(attrs, self.network)

    async def run_sandbox(self, config: SandboxConfig) -> SandboxStatus:
        sandbox_id = await self.create_sandbox(config)
        await self.start_sandbox(sandbox_id)
        status = await self.inspect_sandbox(sandbox_id)
        if status is None:
            raise RuntimeError_("sandbox vanished right after its start", "CreatePodSandboxError")
        return status

    async def stop_sandbox(self, sandbox_id: str) -> None:
        def run() -> None:
            try:
                self.client.containers.get(sandbox_id).kill()
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # not running
                    raise

        await asyncio.to_thread(run)

    async def remove_sandbox(self, sandbox_id: str) -> None:
        await self.remove_container(sandbox_id)

    async def list_sandboxes(self, pod_uid: str | None = None) -> list[SandboxStatus]:
        return [_sandbox_from_attrs(attrs, self.network) for attrs in await self._list(TYPE_SANDBOX, pod_uid)]

    async def _list(self, kind: str, pod_uid: str | None) -> list[dict[str, Any]]:
        """``docker inspect`` output of this node's sandboxes or containers (of one pod, if given)."""
        found = await asyncio.to_thread(
            self.client.containers.list, all=True, filters=self._node_filter(kind, pod_uid)
        )
        return [c.attrs for c in found]

    # -- containers -----------------------------------------------------------------------------

    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str:
        labels = self._pod_labels(
            TYPE_CONTAINER,
            config,
            {
                LABEL_CONTAINER_NAME: config.name,
                LABEL_RESTART_COUNT: str(config.restart_count),
                LABEL_INIT: "true" if config.init else "false",
                "io.minik.sandbox.id": sandbox_id,
            },
        )
        mounts = [
            docker.types.Mount(m.target, m.source, type=m.type, read_only=m.read_only) for m in config.mounts
        ]
        kwargs: dict[str, Any] = {
            "name": container_name(config),
            "labels": labels,
            "network_mode": f"container:{sandbox_id}",
            "ipc_mode": f"container:{sandbox_id}",
            "environment": [f"{k}={v}" for k, v in config.env],
            "mounts": mounts,
            "stdin_open": config.stdin,
            "tty": config.tty,
            "privileged": config.privileged,
            "read_only": config.read_only_rootfs,
            **_given(
                {
                    "working_dir": config.working_dir,
                    "mem_limit": config.memory_limit,
                    "memswap_limit": config.memory_limit,
                    "nano_cpus": config.nano_cpus,
                    "cpu_shares": config.cpu_shares,
                    "user": config.user,
                }
            ),
        }
        if config.command is not None:
            kwargs["entrypoint"] = config.command

        def run() -> str:
            try:
                return self._create(config.image, config.args, kwargs)
            except docker.errors.ImageNotFound as exc:
                raise RuntimeError_(
                    f"image {config.image} not found: {exc.explanation}", "ErrImagePull"
                ) from exc

        return await _in_thread(run, "failed to create container", "CreateContainerError")

    def _create(self, image: str, command: Any, kwargs: dict[str, Any]) -> str:
        """One ``POST /containers/create`` (the SDK's high-level create would inspect as well);
        a leftover container of the same name (a crash between create and start) is replaced."""
        args = _create_container_args(
            {**kwargs, "image": image, "command": command, "version": self.api._version}
        )
        try:
            return str(self.api.create_container(**args)["Id"])
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
            self.api.remove_container(kwargs["name"], force=True)
            return str(self.api.create_container(**args)["Id"])

    async def start_container(self, container_id: str) -> None:
        await _in_thread(lambda: self.api.start(container_id), "failed to start container")

    async def stop_container(self, container_id: str, timeout: int) -> None:
        await _unless_gone(self.api.stop, container_id, timeout=max(0, int(timeout)))

    async def remove_container(self, container_id: str) -> None:
        self._cgroups.pop(container_id, None)
        self.oom_watch.forget(container_id)

        def run() -> None:
            try:
                self.api.remove_container(container_id, force=True, v=False)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if "already in progress" not in str(exc):
                    raise

        await asyncio.to_thread(run)

    async def list_containers(self, pod_uid: str | None = None) -> list[ContainerStatus]:
        return [self._status(attrs) for attrs in await self._list(TYPE_CONTAINER, pod_uid)]

    async def list_pod(self, pod_uid: str) -> tuple[list[SandboxStatus], list[ContainerStatus]]:
        """The pod's sandboxes and containers: one ``GET /containers/json`` by the pod UID label,
        then an inspect of each (none for a pod that has nothing yet)."""

        def run() -> tuple[list[SandboxStatus], list[ContainerStatus]]:
            rows = self.api.containers(
                all=True, filters={"label": [f"{LABEL_NODE}={self.node_name}", f"{LABEL_POD_UID}={pod_uid}"]}
            )
            sandboxes: list[SandboxStatus] = []
            containers: list[ContainerStatus] = []
            for row in rows:
                kind = (row.get("Labels") or {}).get(LABEL_TYPE)
                if kind not in (TYPE_SANDBOX, TYPE_CONTAINER):
                    continue
                try:
                    attrs = self.api.inspect_container(row["Id"])
                except docker.errors.NotFound:
                    continue  # removed between the list and the inspect
                if kind == TYPE_SANDBOX:
                    sandboxes.append(_sandbox_from_attrs(attrs, self.network))
                else:
                    containers.append(self._status(attrs))
            return sandboxes, containers

        return await asyncio.to_thread(run)

    async def relist(self) -> list[tuple[str, str, PodRef]]:
        """``(id, state, pod)`` of every sandbox and container of this node: one list call, no
        inspects (what the PLEG needs every second)."""

        def run() -> list[tuple[str, str, PodRef]]:
            rows = self.api.containers(all=True, filters={"label": [f"{LABEL_NODE}={self.node_name}"]})
            out = []
            for row in rows:
                labels = row.get("Labels") or {}
                if labels.get(LABEL_TYPE) not in (TYPE_CONTAINER, TYPE_SANDBOX):
                    continue
                out.append(
                    (
                        str(row.get("Id", "")),
                        _state({"State": {"Status": row.get("State")}}),
                        _pod_ref(labels),
                    )
                )
            return out

        return await asyncio.to_thread(run)

    async def inspect_container(self, container_id: str) -> ContainerStatus | None:
        attrs = await _unless_gone(self.api.inspect_container, container_id)
        return None if attrs is None else self._status(attrs)

    # -- logs, exec, stats ----------------------------------------------------------------------

    async def logs(self, container_id: str, options: LogOptions) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None | BaseException] = asyncio.Queue(maxsize=256)
        stop = threading.Event()

        def produce() -> None:
            try:
                tail = options.tail
                kwargs: dict[str, Any] = {
                    "stdout": True,
                    "stderr": True,
                    "timestamps": options.timestamps,
                    "tail": "all" if tail is None or tail < 0 else tail,
                }
                if options.since:
                    kwargs["since"] = int(options.since)
                if options.follow:
                    gen = self.api.logs(container_id, stream=True, follow=True, **kwargs)
                    for chunk in gen:
                        if stop.is_set():
                            break
                        asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
                    try:
                        gen.close()
                    except Exception:  # noqa: BLE001 - closing a finished stream
                        pass
                else:
                    data = self.api.logs(container_id, stream=False, follow=False, **kwargs)
                    asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                if not stop.is_set():
                    asyncio.run_coroutine_threadsafe(queue.put(exc), loop).result()
                return
            if not stop.is_set():
                asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

        thread = threading.Thread(target=produce, daemon=True, name=f"logs-{container_id[:12]}")
        thread.start()
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, docker.errors.NotFound):
                        raise RuntimeError_(f"container {container_id[:12]} not found", "NotFound")
                    raise item
                yield item
        finally:
            stop.set()
            while not queue.empty():
                queue.get_nowait()

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> ExecResult:
        def run() -> ExecResult:
            exec_id = self.api.exec_create(container_id, cmd, stdout=True, stderr=True)["Id"]
            output = self.api.exec_start(exec_id, stream=False, demux=False)
            info = self.api.exec_inspect(exec_id)
            return ExecResult(_exec_exit_code(info), output or b"")

        return await asyncio.wait_for(_in_thread(run, "exec failed"), timeout)

    async def exec_interactive(
        self, container_id: str, cmd: list[str], stdin: bool, tty: bool
    ) -> _DockerExecSession:
        def run() -> _DockerExecSession:
            exec_id = self.api.exec_create(container_id, cmd, stdout=True, stderr=True, stdin=stdin, tty=tty)[
                "Id"
            ]
            sock = self.api.exec_start(exec_id, socket=True, tty=tty)
            return _DockerExecSession(self.api, exec_id, sock, tty)

        return await _in_thread(run, "exec failed")

    async def attach(self, container_id: str, stdin: bool, tty: bool) -> _DockerAttachSession:
        def run() -> _DockerAttachSession:
            params = {"stdout": 1, "stderr": 1, "stream": 1, "stdin": 1 if stdin else 0}
            sock = self.api.attach_socket(container_id, params=params)
            return _DockerAttachSession(self.api, container_id, sock, tty)

        return await _in_thread(run, "attach failed")

    async def stats(self, container_id: str) -> ContainerStats:
        dirs = self._cgroups.get(container_id)
        if dirs:  # a container of a NetworkDisabled sandbox (below): its cgroups straight away
            known = await asyncio.to_thread(cgroup_dirs_stats, dirs)
            if known is not None:
                return stats_from_docker(known)
            self._cgroups.pop(container_id, None)  # stopped: ask Docker again
        s: dict[str, Any] = await asyncio.to_thread(self.api.stats, container_id, stream=False)
        if parse_docker_time(s.get("read")) is None and not s.get("memory_stats"):
            # Docker answers with empty stats for a container joined to a sandbox created with
            # NetworkDisabled (it looks for the sandbox's network statistics, finds no network
            # sandbox and gives up): the same figures from the container's cgroups, found from its
            # pid once and remembered (by directory, so a pid reused after it stopped is no matter)
            attrs = await _unless_gone(self.api.inspect_container, container_id)
            pid = int(((attrs or {}).get("State") or {}).get("Pid") or 0)
            dirs = cgroup_dirs(pid) if pid else {}
            cg = await asyncio.to_thread(cgroup_dirs_stats, dirs) if dirs else None
            if cg is not None:
                self._cgroups[container_id] = dirs
                s = cg
        return stats_from_docker(s)

    # -- volumes --------------------------------------------------------------------------------

    async def create_volume(self, name: str, driver_opts: dict[str, str], labels: dict[str, str]) -> str:
        vol: Any = await _unless_gone(self.client.volumes.get, name) or await asyncio.to_thread(
            self.client.volumes.create,
            name=name,
            driver="local",
            driver_opts=driver_opts,
            labels=self._labels(labels),
        )
        return str(vol.name)

    async def remove_volume(self, name: str) -> None:
        await _unless_gone(lambda: self.client.volumes.get(name).remove(force=True))

    async def list_volumes(self) -> list[tuple[str, dict[str, str]]]:
        def run() -> list[tuple[str, dict[str, str]]]:
            vols = self.client.volumes.list(filters={"label": f"{LABEL_NODE}={self.node_name}"})
            return [(str(v.name), dict(v.attrs.get("Labels") or {})) for v in vols]

        return await asyncio.to_thread(run)


def _split_image(image: str) -> tuple[str, str | None]:
    """``("nginx", "1.25")`` from ``nginx:1.25``; digests stay in the repository part."""
    if "@" in image:
        return image, None
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag
    return image, "latest"
