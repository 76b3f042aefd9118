"""The real ``kubectl port-forward`` (SPDY/3.1 tunnelled in a WebSocket) through the API server
and a real kubelet to ``busybox httpd`` in a Docker container (kubectl as
``testkit.prereq.require_kubectl()`` finds it)."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.processes import KubeletProcess
from tests.integration.test_kubelet import make_pod, sh_container, wait_phase

# kubectl is checked before the module's API server, kubelet and pod start
pytestmark = pytest.mark.usefixtures("kubectl_bin")
FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)")


@pytest.fixture(scope="module")
def web_pod(apiserver: Any, kubelet: KubeletProcess, image: str) -> Iterator[str]:
    name = "pf-web"
    script = (
        "mkdir -p /www && echo hello-port-forward > /www/index.html"
        " && yes abcdefgh | head -c 2097152 > /www/big && exec httpd -f -p 8080 -h /www"
    )
    pod = make_pod(
        name,
        kubelet.node,
        [
            sh_container("web", image, script, ports=[{"name": "http", "containerPort": 8080}]),
            # an echo server, one `cat` per connection
            {"name": "echo", "image": image, "command": ["nc", "-ll", "-p", "9000", "-e", "cat"]},
        ],
    )
    pod["metadata"]["labels"] = {"app": "pf-web"}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "pf-web", "namespace": "default"},
        "spec": {"selector": {"app": "pf-web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    with apiserver.http() as c:
        r = c.post("/api/v1/namespaces/default/pods", json=pod)
        assert r.status_code == 201, r.text
        try:
            r = c.post("/api/v1/namespaces/default/services", json=service)
            assert r.status_code == 201, r.text
            wait_phase(kubelet, c, name, "Running")
            yield name
        finally:
            c.delete("/api/v1/namespaces/default/services/pf-web")
            c.delete(f"/api/v1/namespaces/default/pods/{name}", params={"gracePeriodSeconds": "0"})


class PortForward:
    """``kubectl port-forward TARGET :PORT`` in the background; its output is drained by a thread."""

    def __init__(self, kubeconfig: str, target: str, *ports: int, command: str) -> None:
        env = dict(os.environ, KUBECONFIG=kubeconfig, KUBECACHEDIR=os.path.dirname(kubeconfig) + "/cache")
        self.proc = subprocess.Popen(
            [command, "port-forward", target, *(f":{p}" for p in ports)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def local_port(self, timeout: float = 30) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            m = FORWARDING.search(line)
            if m:
                return int(m.group(1)), int(m.group(2))
        raise AssertionError(f"kubectl port-forward did not start:\n{''.join(self.output)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture()
def port_forward(kubeconfig: str, kubectl_bin: str) -> Iterator[Any]:
    started: list[PortForward] = []

    def start(target: str, *ports: int, command: str | None = None) -> PortForward:
        pf = PortForward(kubeconfig, target, *ports, command=command or kubectl_bin)
        started.append(pf)
        return pf

    try:
        yield start
    finally:
        for pf in started:
            pf.stop()


def fetch(port: int) -> str:
    r = httpx.get(f"http://127.0.0.1:{port}/", timeout=20)
    r.raise_for_status()
    return r.text


def test_port_forward_pod(web_pod: str, port_forward: Any) -> None:
    pf = port_forward(f"pod/{web_pod}", 8080)
    local, remote = pf.local_port()
    assert remote == 8080
    for _ in range(3):
        assert fetch(local) == "hello-port-forward\n"
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(fetch, [local] * 16))
    assert bodies == ["hello-port-forward\n"] * 16
    assert pf.proc.poll() is None, "".join(pf.output)


@pytest.mark.parametrize("target,remote", [("pod/pf-web", 8080), ("svc/pf-web", 80)])
def test_minik_port_forward(web_pod: str, port_forward: Any, target: str, remote: int) -> None:
    """``minik port-forward`` speaks Kubernetes' WebSocket channel protocol to the same relay."""
    pf = port_forward(target, remote, command=str(Path(sys.executable).parent / "minik"))
    local, shown = pf.local_port()
    assert shown in (remote, 8080)
    for _ in range(3):
        assert fetch(local) == "hello-port-forward\n"
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(fetch, [local] * 8)) == ["hello-port-forward\n"] * 8


def test_port_forward_large_transfers_and_two_ports(web_pod: str, port_forward: Any) -> None:
    pf = port_forward(f"pod/{web_pod}", 8080, 9000)
    first, second = pf.local_port(), pf.local_port()
    local = {remote: port for port, remote in (first, second)}
    r = httpx.get(f"http://127.0.0.1:{local[8080]}/big", timeout=60)
    assert r.status_code == 200 and r.content == (b"abcdefgh\n" * 233017)[:2097152]
    payload = bytes(range(256)) * 4096  # 1 MiB up and back through the echo container
    with socket.create_connection(("127.0.0.1", local[9000]), timeout=30) as s:
        sender = threading.Thread(target=s.sendall, args=(payload,))
        sender.start()
        got = bytearray()
        while len(got) < len(payload):
            chunk = s.recv(65536)
            assert chunk, f"echo ended after {len(got)} bytes"
            got += chunk
        sender.join()
    assert bytes(got) == payload


def test_port_forward_service(web_pod: str, port_forward: Any) -> None:
    pf = port_forward("svc/pf-web", 80)
    local, remote = pf.local_port()
    assert remote == 8080  # kubectl maps the service port to the pod's targetPort itself
    assert fetch(local) == "hello-port-forward\n"
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(fetch, [local] * 4)) == ["hello-port-forward\n"] * 4


def test_port_forward_closed_port_reports_error(web_pod: str, port_forward: Any) -> None:
    pf = port_forward(f"pod/{web_pod}", 9999)
    local, _ = pf.local_port()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{local}/", timeout=20)
    # kubectl prints the error the kubelet reported on the error stream and gives up
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "error forwarding port 9999" not in "".join(pf.output):
        time.sleep(0.2)
    assert "error forwarding port 9999" in "".join(pf.output)
    assert pf.proc.wait(30) != 0  # as against Kubernetes: "error: lost connection to pod"


def test_port_forward_missing_pod(kubeconfig: str, apiserver: Any, kubectl_bin: str) -> None:
    env = dict(os.environ, KUBECONFIG=kubeconfig, KUBECACHEDIR=os.path.dirname(kubeconfig) + "/cache")
    r = subprocess.run(
        [kubectl_bin, "port-forward", "pod/nope", ":80"], capture_output=True, text=True, env=env, timeout=60
    )
    assert r.returncode != 0 and 'pods "nope" not found' in r.stderr


def test_plain_spdy_upgrade_is_refused_with_a_reason(kubeconfig: str, web_pod: str, kubectl_bin: str) -> None:
    env = dict(
        os.environ,
        KUBECONFIG=kubeconfig,
        KUBECACHEDIR=os.path.dirname(kubeconfig) + "/cache",
        KUBECTL_PORT_FORWARD_WEBSOCKETS="false",
    )
    r = subprocess.run(
        [kubectl_bin, "port-forward", f"pod/{web_pod}", ":8080"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode != 0
    assert "plain SPDY/3.1 upgrade is not supported" in r.stderr
