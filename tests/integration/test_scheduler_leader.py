"""Two minik-scheduler processes with --leader-elect: one schedules, the other stands by and
takes over once the leader is gone."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import BIN, APIServerProcess
from tests.integration.test_scheduler import create_pod, node, node_of, pod, wait_for

FLAGS = [
    "--leader-elect",
    "--leader-elect-lease-duration",
    "2",
    "--leader-elect-renew-deadline",
    "1.5",
    "--leader-elect-retry-period",
    "0.3",
]


@pytest.fixture()
def procs(apiserver: APIServerProcess) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for p in started:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def start(apiserver: APIServerProcess, procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        [str(BIN / "minik-scheduler"), "--api-server", apiserver.url, *FLAGS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs.append(p)
    return p


def test_standby_takes_over(apiserver: APIServerProcess, procs: list[subprocess.Popen[bytes]]) -> None:
    with httpx.Client(base_url=apiserver.url, timeout=30) as api:
        assert api.post("/api/v1/nodes", json=node("leader-n1")).status_code == 201
        ns = f"le-{uuid.uuid4().hex[:8]}"
        api.post(
            "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        )
        first = start(apiserver, procs)

        def holder() -> str | None:
            r = api.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler")
            return r.json()["spec"].get("holderIdentity") if r.status_code == 200 else None

        leader = wait_for(holder, what="a leader")
        start(apiserver, procs)
        create_pod(api, ns, pod("one"))
        assert wait_for(lambda: node_of(api, ns, "one"), what="one bound") == "leader-n1"
        assert holder() == leader

        first.terminate()
        assert first.wait(10) == 0
        wait_for(lambda: (h := holder()) and h != leader, what="a new leader", timeout=20)
        create_pod(api, ns, pod("two"))
        assert wait_for(lambda: node_of(api, ns, "two"), what="two bound", timeout=20) == "leader-n1"
