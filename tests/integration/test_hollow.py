"""Hollow nodes against a real etcd and API server, with the real scheduler and controller manager.

This module also holds the process harness the workload, end-to-end and benchmark code reuse:
:class:`Component` (a ``minik-*`` process or ``python -m kubelet.hollow`` with its log in a temp
file, stopped with SIGTERM then SIGKILL) and helpers to start each kind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BIN, APIServerProcess

ROOT = Path(__file__).resolve().parents[2]


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_for(
    check: Callable[[], Any], timeout: float = 60, what: str = "condition", interval: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last={last!r}")


class Component:
    """One process of the cluster, its output in a log file."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.args = args
        self.log_path = tempfile.mktemp(prefix=f"minik-{name}-", suffix=".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Component:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, tail: int = 20000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """A crash, as the restart tests make one: the process and its log are gone."""
        self.stop(signal.SIGKILL)
        if os.path.exists(self.log_path):
            os.unlink(self.log_path)

    def cleanup(self) -> None:
        self.stop()
        if os.path.exists(self.log_path):
            os.unlink(self.log_path)


def hollow_nodes(url: str, count: int, prefix: str, *extra: str) -> Component:
    return Component(
        "hollow",
        [
            sys.executable,
            "-m",
            "kubelet.hollow",
            "--api-server",
            url,
            "--count",
            str(count),
            "--prefix",
            prefix,
            *extra,
        ],
    )


def scheduler(url: str, *extra: str) -> Component:
    return Component("scheduler", [str(BIN / "minik-scheduler"), "--api-server", url, *extra])


def controller_manager(url: str, *extra: str) -> Component:
    return Component(
        "controller-manager",
        [
            str(BIN / "minik-controller-manager"),
            "--api-server",
            url,
            "--leader-elect-lease-duration",
            "4",
            "--leader-elect-renew-deadline",
            "3",
            "--leader-elect-retry-period",
            "0.5",
            "--job-backoff-seconds",
            "0.5",
            *extra,
        ],
    )


def items(api: httpx.Client, path: str, **params: str) -> list[dict[str, Any]]:
    r = api.get(path, params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def create_ns(api: httpx.Client, name: str) -> None:
    r = api.post(
        "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    assert r.status_code == 201, r.text


def dump_logs(*components: Component) -> None:
    for c in components:
        print(f"--- {c.name} log ---\n{c.log()}")


# -- the tests of this module -------------------------------------------------------------------------

PREFIX = f"hn-{uuid.uuid4().hex[:4]}-"


@pytest.fixture(scope="module")
def cluster(apiserver: APIServerProcess) -> Iterator[dict[str, Component]]:
    parts = {
        "hollow": hollow_nodes(apiserver.url, 3, PREFIX, "--lease-period", "1", "--job-duration", "0.5"),
        "scheduler": scheduler(apiserver.url),
        "cm": controller_manager(
            apiserver.url, "--allocate-node-cidrs", "true", "--cluster-cidr", "10.123.0.0/16"
        ),
    }
    try:
        for c in parts.values():
            c.start()
        yield parts
    finally:
        dump_logs(*parts.values())
        for c in parts.values():
            c.cleanup()


def node_names() -> list[str]:
    return [f"{PREFIX}{i}" for i in range(3)]


def test_hollow_nodes_register_ready_with_leases_and_pod_cidrs(
    api: httpx.Client, cluster: dict[str, Component]
) -> None:
    def nodes_ready() -> list[dict[str, Any]] | None:
        got = [n for n in items(api, "/api/v1/nodes") if n["metadata"]["name"] in node_names()]
        if len(got) != 3:
            return None
        for n in got:
            conds = {c["type"]: c["status"] for c in n.get("status", {}).get("conditions", [])}
            if conds.get("Ready") != "True" or not n["spec"].get("podCIDR"):
                return None
        return got

    nodes = wait_for(nodes_ready, 30, "3 ready hollow nodes with pod CIDRs")
    cidrs = [n["spec"]["podCIDR"] for n in nodes]
    assert len(set(cidrs)) == 3 and all(c.startswith("10.123.") and c.endswith("/24") for c in cidrs)
    assert all(n["spec"]["podCIDRs"] == [n["spec"]["podCIDR"]] for n in nodes)
    assert nodes[0]["status"]["allocatable"]["cpu"] == "4"
    lease = api.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{PREFIX}0").json()
    first = lease["spec"]["renewTime"]
    wait_for(
        lambda: (
            api.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{PREFIX}0").json()[
                "spec"
            ]["renewTime"]
            != first
        ),
        10,
        "a lease renewal",
    )


def test_bound_pods_run_with_ip_from_node_cidr_and_deletion_finishes(
    api: httpx.Client, cluster: dict[str, Component]
) -> None:
    ns = unique("hn")
    create_ns(api, ns)
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox"}],
            "nodeSelector": {"kubernetes.io/hostname": f"{PREFIX}1"},
        },
    }
    assert api.post(f"/api/v1/namespaces/{ns}/pods", json=body).status_code == 201

    def running() -> dict[str, Any] | None:
        p = api.get(f"/api/v1/namespaces/{ns}/pods/p").json()
        return p if p.get("status", {}).get("phase") == "Running" and p["status"].get("podIP") else None

    pod = wait_for(running, 30, "pod Running")
    node = api.get(f"/api/v1/nodes/{PREFIX}1").json()
    prefix = node["spec"]["podCIDR"].rsplit(".", 1)[0] + "."
    assert pod["spec"]["nodeName"] == f"{PREFIX}1"
    assert pod["status"]["podIP"].startswith(prefix)
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
    assert pod["status"]["containerStatuses"][0]["ready"] is True

    assert api.delete(f"/api/v1/namespaces/{ns}/pods/p").status_code == 200
    wait_for(lambda: api.get(f"/api/v1/namespaces/{ns}/pods/p").status_code == 404, 30, "pod gone")


def test_run_to_completion_pods_succeed_or_fail(api: httpx.Client, cluster: dict[str, Component]) -> None:
    ns = unique("hn")
    create_ns(api, ns)
    for name, code in (("ok", "0"), ("bad", "3")):
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": {"hollow.minik.io/exit-code": code}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}],
                "nodeSelector": {"minik.io/hollow": "true"},
            },
        }
        assert api.post(f"/api/v1/namespaces/{ns}/pods", json=body).status_code == 201

    def phase(name: str) -> str:
        return str(api.get(f"/api/v1/namespaces/{ns}/pods/{name}").json().get("status", {}).get("phase"))

    wait_for(lambda: phase("ok") == "Succeeded", 30, "ok Succeeded")
    wait_for(lambda: phase("bad") == "Failed", 30, "bad Failed")
    bad = api.get(f"/api/v1/namespaces/{ns}/pods/bad").json()
    assert bad["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
