"""Hollow nodes against a real etcd and API server, with the real scheduler and controller manager."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.api import create_namespace, items
from testkit.processes import APIServerProcess, Process, control_plane, hollow_nodes, running
from testkit.wait import wait_for

PREFIX = f"hn-{uuid.uuid4().hex[:4]}-"


@pytest.fixture(scope="module")
def cluster(apiserver: APIServerProcess) -> Iterator[dict[str, Process]]:
    parts = {
        "hollow": hollow_nodes(apiserver, 3, PREFIX, "--lease-period", "1", "--job-duration", "0.5"),
        **control_plane(apiserver, "--allocate-node-cidrs", "true", "--cluster-cidr", "10.123.0.0/16"),
    }
    with running(parts):
        yield parts


def node_names() -> list[str]:
    return [f"{PREFIX}{i}" for i in range(3)]


def test_hollow_nodes_register_ready_with_leases_and_pod_cidrs(
    api: httpx.Client, cluster: dict[str, Process]
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
    api: httpx.Client, cluster: dict[str, Process]
) -> None:
    ns = create_namespace(api, "hn")
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


def test_run_to_completion_pods_succeed_or_fail(api: httpx.Client, cluster: dict[str, Process]) -> None:
    ns = create_namespace(api, "hn")
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
