"""The container runtime interface the kubelet talks to (Kubernetes' CRI in spirit).

A pod is one *sandbox* (a container that only sleeps and holds the pod's network namespace and
IP) plus the pod's containers, joined to the sandbox's namespace.  The kubelet never touches Docker
directly: it goes through :class:`Runtime`, so a second runtime (Podman's Docker-compatible API,
containerd) only needs another implementation of this protocol.

Every sandbox and container carries labels naming its pod (UID, namespace, name), its container
name and its restart count, plus the node it belongs to; a restarted kubelet adopts what runs by
reading these labels back (:meth:`Runtime.list_containers`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

# Labels, spelled as dockershim spelled them, plus the node that owns the object.
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
LABEL_RESTART_COUNT = "io.kubernetes.container.restartCount"
LABEL_TYPE = "io.kubernetes.docker.type"  # "podsandbox" or "container"
LABEL_INIT = "io.minik.container.init"  # "true" for init containers
LABEL_ATTEMPT = "io.minik.sandbox.attempt"
LABEL_NODE = "io.minik.node"
LABEL_MANAGED = "io.minik.managed"  # "true" on everything the kubelet creates

TYPE_SANDBOX = "podsandbox"
TYPE_CONTAINER = "container"

STATE_CREATED = "created"
STATE_RUNNING = "running"
STATE_EXITED = "exited"
STATE_UNKNOWN = "unknown"


class RuntimeError_(Exception):
    """A runtime operation failed; ``reason`` is the Kubernetes reason to report, if any."""

    def __init__(self, message: str, reason: str = "RunContainerError") -> None:
        super().__init__(message)
        self.reason = reason


class ImageNotFound(RuntimeError_):
    def __init__(self, message: str) -> None:
        super().__init__(message, "ErrImageNeverPull")


class ImagePullError(RuntimeError_):
    def __init__(self, message: str) -> None:
        super().__init__(message, "ErrImagePull")


@dataclass
class PortMapping:
    container_port: int
    host_port: int
    protocol: str = "TCP"
    host_ip: str = ""


@dataclass
class Mount:
    """``type`` is ``bind`` (``source`` a host path) or ``volume`` (``source`` a runtime volume name)."""

    target: str
    source: str
    type: str = "bind"
    read_only: bool = False


@dataclass
class PodRef:
    uid: str
    name: str
    namespace: str


# SandboxConfig.network: no runtime-managed network (the kubelet runs CNI).  The sandbox gets a
# network namespace of its own with only a loopback device, and the runtime writes neither
# /etc/hosts nor /etc/resolv.conf for it (the dns_* fields are not used): the kubelet writes both
# and mounts them into each container, as Kubernetes' kubelet and CRI runtimes do.
NETWORK_NONE = "none"


@dataclass
class SandboxConfig:
    pod: PodRef
    attempt: int
    hostname: str
    network: str  # the runtime's network to join, or NETWORK_NONE (only a loopback device)
    ports: list[PortMapping] = field(default_factory=list)
    dns_servers: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class ContainerConfig:
    pod: PodRef
    name: str
    image: str
    restart_count: int = 0
    init: bool = False
    command: list[str] | None = None  # replaces the image's entrypoint
    args: list[str] | None = None  # replaces the image's cmd
    working_dir: str | None = None
    env: list[tuple[str, str]] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    memory_limit: int | None = None  # bytes
    nano_cpus: int | None = None
    cpu_shares: int | None = None
    user: str | None = None
    privileged: bool = False
    read_only_rootfs: bool = False
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class SandboxStatus:
    id: str
    pod: PodRef
    attempt: int
    state: str  # running / exited / created
    ip: str
    created_at: float
    labels: dict[str, str] = field(default_factory=dict)
    netns: str = ""  # the sandbox's network namespace (/proc/PID/ns/net) while it runs, else ""


@dataclass
class ContainerStatus:
    id: str
    pod: PodRef
    name: str
    restart_count: int
    init: bool
    state: str  # created / running / exited / unknown
    image: str
    image_id: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class ContainerStats:
    cpu_usage_nanos: int = 0  # cumulative CPU time
    cpu_usage_nano_cores: int = 0  # rate over the runtime's last sampling interval
    memory_usage_bytes: int = 0
    memory_working_set_bytes: int = 0
    memory_rss_bytes: int = 0
    memory_limit_bytes: int = 0
    page_faults: int = 0
    major_page_faults: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_errors: int = 0
    tx_errors: int = 0
    interfaces: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (rx, tx)
    pids: int = 0


@dataclass
class LogOptions:
    follow: bool = False
    tail: int | None = None  # the last lines only; None or negative: all
    timestamps: bool = False
    since: float | None = None  # epoch seconds


@dataclass
class ExecResult:
    exit_code: int
    output: bytes


class ExecSession(Protocol):
    """An interactive exec: bytes in, bytes out, then an exit code."""

    async def write(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    def read(self) -> AsyncIterator[tuple[int, bytes]]: ...  # (stream 1 stdout / 2 stderr, data)
    async def resize(self, width: int, height: int) -> None: ...
    async def exit_code(self) -> int: ...
    async def close(self) -> None: ...


class Runtime(Protocol):
    """What the kubelet needs from a container runtime.  Every method is a coroutine."""

    async def version(self) -> dict[str, str]:
        """``{"runtime": "docker://20.10.24", "os": ..., "kernel": ..., "arch": ...}``"""
        ...

    async def ensure_network(self, name: str, subnet: str) -> None: ...
    async def remove_network(self, name: str) -> None: ...

    async def image_id(self, image: str) -> str | None:
        """The local image's ID, or None if it is not present."""
        ...

    async def pull_image(self, image: str) -> str: ...
    async def ensure_sandbox_image(self) -> str: ...

    async def run_sandbox(self, config: SandboxConfig) -> SandboxStatus:
        """Create, start and inspect a sandbox (the three calls below)."""
        ...

    async def create_sandbox(self, config: SandboxConfig) -> str:
        """Create the sandbox without starting it: its ID is all the pod's containers need to be
        created (joined to its namespaces) while it starts."""
        ...

    async def start_sandbox(self, sandbox_id: str) -> None:
        """Start a created sandbox (removing it if that fails)."""
        ...

    async def inspect_sandbox(self, sandbox_id: str) -> SandboxStatus | None: ...
    async def stop_sandbox(self, sandbox_id: str) -> None: ...
    async def remove_sandbox(self, sandbox_id: str) -> None: ...
    async def list_sandboxes(self, pod_uid: str | None = None) -> list[SandboxStatus]: ...

    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str: ...
    async def start_container(self, container_id: str) -> None: ...
    async def stop_container(self, container_id: str, timeout: int) -> None: ...
    async def remove_container(self, container_id: str) -> None: ...
    async def list_containers(self, pod_uid: str | None = None) -> list[ContainerStatus]: ...
    async def list_pod(self, pod_uid: str) -> tuple[list[SandboxStatus], list[ContainerStatus]]:
        """The pod's sandboxes and containers in one listing."""
        ...

    async def inspect_container(self, container_id: str) -> ContainerStatus | None: ...
    async def relist(self) -> list[tuple[str, str, PodRef]]:
        """``(id, state, pod)`` of every sandbox and container: the cheap listing for the PLEG."""
        ...

    async def attach(self, container_id: str, stdin: bool, tty: bool) -> ExecSession:
        """Attach to the container's main process (its stdin/stdout/stderr)."""
        ...

    def logs(self, container_id: str, options: LogOptions) -> AsyncIterator[bytes]: ...

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> ExecResult: ...
    async def exec_interactive(
        self, container_id: str, cmd: list[str], stdin: bool, tty: bool
    ) -> ExecSession: ...
    async def stats(self, container_id: str) -> ContainerStats: ...
    async def create_volume(self, name: str, driver_opts: dict[str, str], labels: dict[str, str]) -> str: ...
    async def remove_volume(self, name: str) -> None: ...
    async def list_volumes(self) -> list[tuple[str, dict[str, str]]]: ...
