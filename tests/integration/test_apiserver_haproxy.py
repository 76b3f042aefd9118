"""One address for users: kubectl through HAProxy (TCP mode, /readyz health checks, the backend of
docs/multi-host.md) in front of two real API servers on one etcd keeps working when the API server
it reaches is killed with SIGKILL."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from testkit import prereq
from testkit.host import free_port
from testkit.processes import APIServerProcess, EtcdProcess, Process
from testkit.wait import wait_for

CONFIG = """\
global
    maxconn 256
defaults
    timeout connect 2s
    timeout client 1m
    timeout server 1m
frontend kube-apiserver
    bind 127.0.0.1:{port}
    mode tcp
    default_backend kube-apiservers
backend kube-apiservers
    mode tcp
    balance roundrobin
    option redispatch
    retries 3
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1 check check-ssl verify none
{servers}
"""


@pytest.fixture()
def setup(
    etcd: EtcdProcess, kubectl_bin: str
) -> Iterator[tuple[APIServerProcess, APIServerProcess, Path, str]]:
    binary = shutil.which("haproxy")
    prereq.require(binary is not None, "haproxy", "apt-get install haproxy (scripts/install.sh)")
    assert binary is not None
    first, second = APIServerProcess(etcd.url), APIServerProcess(etcd.url)
    root = Path(tempfile.mkdtemp(prefix="minik-haproxy-api-"))
    port = free_port()
    servers = "\n".join(f"    server api{i} 127.0.0.1:{s.port}" for i, s in enumerate((first, second)))
    (root / "haproxy.cfg").write_text(CONFIG.format(port=port, servers=servers))
    haproxy = Process("haproxy", [binary, "-db", "-f", str(root / "haproxy.cfg")], root / "haproxy.log")
    try:
        first.start()
        second.start()
        haproxy.start()
        doc = yaml.safe_load(Path(first.kubeconfig).read_text())
        for cluster in doc["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
        (root / "kubeconfig").write_text(yaml.safe_dump(doc))
        yield first, second, root / "kubeconfig", kubectl_bin
    finally:
        haproxy.cleanup()
        first.cleanup()
        second.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def kubectl(kubectl_bin: str, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl_bin, "--kubeconfig", str(kubeconfig), "--request-timeout", "20s", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_kubectl_through_haproxy_survives_a_killed_apiserver(
    setup: tuple[APIServerProcess, APIServerProcess, Path, str],
) -> None:
    first, second, kubeconfig, kubectl_bin = setup
    wait_for(
        lambda: kubectl(kubectl_bin, kubeconfig, "get", "ns", "default").returncode == 0, what="HAProxy up"
    )
    for i in range(4):  # round robin: both servers answer
        r = kubectl(kubectl_bin, kubeconfig, "create", "configmap", f"before-{i}", "--from-literal=k=v")
        assert r.returncode == 0, r.stderr

    first.stop(signal.SIGKILL)

    # every command right after the kill works: a refused connection is redispatched to the other
    for i in range(4):
        r = kubectl(kubectl_bin, kubeconfig, "create", "configmap", f"after-{i}", "--from-literal=k=v")
        assert r.returncode == 0, r.stderr
    r = kubectl(kubectl_bin, kubeconfig, "get", "configmaps", "-o", "name")
    assert r.returncode == 0, r.stderr
    names = set(r.stdout.split())
    assert {f"configmap/before-{i}" for i in range(4)} | {f"configmap/after-{i}" for i in range(4)} <= names
    assert second.running()
