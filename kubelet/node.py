"""The kubelet's Node object and Lease: registration, status heartbeats, lease renewal.

:func:`node_object` and :func:`node_status` are pure (given the runtime's facts); the
:class:`NodeAgent` writes them: the Node on start, its status on change and at least every
``status_period`` (60 s), and the Lease in ``kube-node-lease`` every ``lease_period`` (10 s).
"""

from __future__ import annotations

import asyncio
import logging
import platform
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from apimachinery import errors
from apimachinery.client import Client
from apimachinery.resources import kind_info
from apimachinery.timefmt import micro_time, rfc3339
from apimachinery.version import COMPONENT_VERSION

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NODES = kind_info("v1", "Node")
LEASES = kind_info("coordination.k8s.io/v1", "Lease")
assert NODES is not None and LEASES is not None

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
MAX_PODS = 110

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


async def every(period: float, action: Callable[[], Awaitable[object]], failure: str) -> None:
    """Run ``action`` now and then every ``period`` seconds, for ever; a failure is logged
    (``failure``, with ``%s`` for the error) and the next round tries again."""
    while True:
        try:
            await action()
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.warning(failure, exc)
        await asyncio.sleep(period)


def go_arch(machine: str | None = None) -> str:
    m = machine or platform.machine()
    return _ARCH.get(m, m)


def host_facts(runtime_version: dict[str, str], root_dir: str) -> dict[str, Any]:
    """Capacity and system info of this host, as the Node reports them."""
    cpus = int(runtime_version.get("cpus") or 1)
    memory = int(runtime_version.get("memory") or 0)
    try:
        disk = shutil.disk_usage(root_dir).total
    except OSError:
        disk = 0
    return {"cpus": cpus, "memory": memory, "disk": disk}


def node_labels(node_name: str, arch: str) -> dict[str, str]:
    return {
        "kubernetes.io/hostname": node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch,
    }


def node_object(node_name: str, arch: str, pod_cidr: str | None = None) -> Obj:
    obj: Obj = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node_name, "labels": node_labels(node_name, arch)},
        "spec": {},
    }
    if pod_cidr:
        obj["spec"]["podCIDR"] = pod_cidr
        obj["spec"]["podCIDRs"] = [pod_cidr]
    return obj


def _condition(ctype: str, ok_status: str, reason: str, message: str, old: list[Obj], now: str) -> Obj:
    transition = now
    for prev in old:
        if prev.get("type") == ctype and prev.get("status") == ok_status and prev.get("lastTransitionTime"):
            transition = prev["lastTransitionTime"]
    return {
        "type": ctype,
        "status": ok_status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": transition,
    }


def node_status(
    facts: dict[str, Any],
    version: dict[str, str],
    node_ip: str,
    hostname: str,
    port: int,
    old_conditions: list[Obj],
    machine_id: str = "",
    boot_id: str = "",
    images: list[Obj] | None = None,
    runtime_ok: bool = True,
    network_error: str = "",
) -> Obj:
    now = rfc3339()
    cpu = str(facts["cpus"])
    memory = f"{int(facts['memory']) // 1024}Ki"
    storage = f"{int(facts['disk']) // 1024}Ki"
    capacity = {"cpu": cpu, "memory": memory, "pods": str(MAX_PODS), "ephemeral-storage": storage}
    if not runtime_ok:
        reason, message = "KubeletNotReady", "container runtime is down"
    elif network_error:
        reason, message = "NetworkPluginNotReady", network_error
    else:
        reason, message = "KubeletReady", "kubelet is posting ready status"
    ok = runtime_ok and not network_error
    ready = _condition("Ready", "True" if ok else "False", reason, message, old_conditions, now)
    return {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "addresses": [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": hostname}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "machineID": machine_id,
            "systemUUID": machine_id,
            "bootID": boot_id,
            "kernelVersion": version.get("kernel", platform.release()),
            "osImage": version.get("os", ""),
            "containerRuntimeVersion": version.get("runtime", ""),
            "kubeletVersion": COMPONENT_VERSION,
            "kubeProxyVersion": COMPONENT_VERSION,
            "operatingSystem": version.get("os_type", "linux"),
            "architecture": go_arch(version.get("arch")),
        },
        "conditions": [
            _condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                old_conditions,
                now,
            ),
            _condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                old_conditions,
                now,
            ),
            _condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                old_conditions,
                now,
            ),
            ready,
        ],
        "images": images or [],
    }


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def default_node_ip() -> str:
    """The address this host reaches other hosts from (no packet is sent), else 127.0.0.1."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


@dataclass(eq=False)
class NodeAgent:
    """Registers the Node, keeps its status fresh, renews its Lease."""

    client: Client
    node_name: str
    node_ip: str
    port: int
    pod_cidr: str | None
    runtime: Any
    root_dir: str
    status_period: float = 60.0
    lease_period: float = 10.0
    version: dict[str, str] = field(default_factory=dict, init=False)
    facts: dict[str, Any] = field(default_factory=dict, init=False)
    node: Obj = field(default_factory=dict, init=False)
    _last_status: Obj | None = field(default=None, init=False)
    _last_status_at: float = field(default=0.0, init=False)
    _uid: str = field(default="", init=False)
    network_error: str = field(default="", init=False)  # the pod network is not ready: why
    # the network_error register() sets when the Node it finds has no spec.podCIDR
    network_error_without_pod_cidr: str = field(default="", init=False)

    @property
    def allocatable(self) -> dict[str, str]:
        return dict((self.node.get("status") or {}).get("allocatable") or {})

    async def register(self) -> Obj:
        """Create the Node (or adopt the existing one) and write its first status; return it."""
        self.version = await self.runtime.version()
        self.facts = host_facts(self.version, self.root_dir)
        arch = go_arch(self.version.get("arch"))
        body = node_object(self.node_name, arch, self.pod_cidr or None)
        assert NODES is not None
        try:
            node = await self.client.create(NODES, body)
            log.info("registered node %s", self.node_name)
        except errors.AlreadyExists:
            node = await self.client.get(NODES, self.node_name)
            labels = dict((node.get("metadata") or {}).get("labels") or {})
            wanted = node_labels(self.node_name, arch)
            if any(labels.get(k) != v for k, v in wanted.items()):
                node = await self.client.patch(NODES, self.node_name, {"metadata": {"labels": wanted}})
            log.info("node %s already registered; adopting it", self.node_name)
        self.node = node
        self._uid = (node.get("metadata") or {}).get("uid", "")
        if self.network_error_without_pod_cidr and not (node.get("spec") or {}).get("podCIDR"):
            self.network_error = self.network_error_without_pod_cidr
        await self.update_status(force=True)
        return self.node

    async def update_status(self, force: bool = False, runtime_ok: bool = True) -> None:
        assert NODES is not None
        old = list((self.node.get("status") or {}).get("conditions") or [])
        status = node_status(
            self.facts,
            self.version,
            self.node_ip,
            self.node_name,
            self.port,
            old,
            _read("/etc/machine-id"),
            _read("/proc/sys/kernel/random/boot_id"),
            runtime_ok=runtime_ok,
            network_error=self.network_error,
        )
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        comparable["conditions"] = [(c["type"], c["status"]) for c in status["conditions"]]
        due = time.monotonic() - self._last_status_at >= self.status_period
        if not force and not due and comparable == self._last_status:
            return
        self.node = await self.client.patch(NODES, self.node_name, {"status": status}, subresource="status")
        self._last_status = comparable
        self._last_status_at = time.monotonic()

    async def renew_lease(self) -> None:
        assert LEASES is not None
        spec = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": micro_time(),
        }
        try:
            lease = await self.client.get(LEASES, self.node_name, LEASE_NAMESPACE)
        except errors.NotFound:
            body: Obj = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": LEASE_NAMESPACE},
                "spec": spec,
            }
            if self._uid:
                body["metadata"]["ownerReferences"] = [
                    {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": self._uid}
                ]
            await self.client.create(LEASES, body, LEASE_NAMESPACE)
            return
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        await self.client.update(LEASES, lease)

    async def lease_loop(self) -> None:
        await every(self.lease_period, self.renew_lease, f"node {self.node_name}: lease renewal failed: %s")

    async def status_loop(self, check_period: float = 10.0) -> None:
        await asyncio.sleep(check_period)
        await every(check_period, self._check_status, f"node {self.node_name}: status update failed: %s")

    async def _check_status(self) -> None:
        ok = True
        try:
            await self.runtime.version()
        except Exception:  # noqa: BLE001 - the runtime is down: report NotReady
            ok = False
        await self.update_status(runtime_ok=ok)
