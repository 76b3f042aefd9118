"""minik-scheduler as a real process against a real API server and etcd.

Nodes are plain Node objects created here (allocatable and a Ready condition; no kubelet), so
the test exercises exactly the scheduler: bindings, spreading, FailedScheduling events and the
PodScheduled condition, and the retry when a fitting node appears.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.api import create_namespace, event
from testkit.processes import APIServerProcess, Process
from testkit.wait import wait_for

NODES = ["sched-n1", "sched-n2", "sched-n3"]


def node(name: str, cpu: str = "2", labels: dict[str, str] | None = None, taints: list | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints or []},
        "status": {
            "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }


def pod(name: str, cpu: str = "100m", **spec: Any) -> dict:
    meta = spec.pop("metadata", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **meta},
        "spec": {
            "containers": [{"name": "main", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}],
            **spec,
        },
    }


@pytest.fixture(scope="module")
def cluster(apiserver: APIServerProcess) -> Iterator[httpx.Client]:
    with apiserver.http() as api:
        for name in NODES:
            r = api.post("/api/v1/nodes", json=node(name))
            assert r.status_code == 201, r.text
        yield api


@pytest.fixture()
def ns(cluster: httpx.Client) -> Iterator[str]:
    name = create_namespace(cluster, "sched")
    yield name
    # No namespace controller here: remove the pods (bound ones at once) before the namespace.
    cluster.request(
        "DELETE",
        f"/api/v1/namespaces/{name}/pods",
        json={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0},
    )
    cluster.delete(f"/api/v1/namespaces/{name}")


def create_pod(api: httpx.Client, ns: str, body: dict) -> None:
    r = api.post(f"/api/v1/namespaces/{ns}/pods", json=body)
    assert r.status_code == 201, r.text


def node_of(api: httpx.Client, ns: str, name: str) -> str | None:
    r = api.get(f"/api/v1/namespaces/{ns}/pods/{name}")
    assert r.status_code == 200, r.text
    return r.json()["spec"].get("nodeName")


def test_binds_pods_honouring_node_selector_and_resources(
    cluster: httpx.Client, scheduler: Process, ns: str
) -> None:
    api = cluster
    r = api.patch(
        f"/api/v1/nodes/{NODES[1]}",
        json={"metadata": {"labels": {"disk": "ssd"}}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    create_pod(api, ns, pod("plain"))
    create_pod(api, ns, pod("ssd", nodeSelector={"disk": "ssd"}))
    create_pod(api, ns, pod("big", cpu="1500m"))
    assert wait_for(lambda: node_of(api, ns, "plain"), what="plain bound", timeout=30) in NODES
    assert wait_for(lambda: node_of(api, ns, "ssd"), what="ssd bound") == NODES[1]
    assert wait_for(lambda: node_of(api, ns, "big"), what="big bound") in NODES

    got = api.get(f"/api/v1/namespaces/{ns}/pods/ssd").json()
    conds = {c["type"]: c for c in got["status"].get("conditions") or []}
    assert conds["PodScheduled"]["status"] == "True"

    ev = wait_for(lambda: event(api, ns, "ssd", "Scheduled"), what="Scheduled event")
    assert ev["type"] == "Normal"
    assert ev["message"] == f"Successfully assigned {ns}/ssd to {NODES[1]}"
    assert ev["source"]["component"] == "default-scheduler"


def test_spreads_pods_of_one_owner_over_nodes(cluster: httpx.Client, scheduler: Process, ns: str) -> None:
    api = cluster
    owner_uid = str(uuid.uuid4())
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web",
        "uid": owner_uid,
        "controller": True,
    }
    names = [f"web-{i}" for i in range(6)]
    for name in names:
        create_pod(
            api, ns, pod(name, cpu="10m", metadata={"labels": {"app": "web"}, "ownerReferences": [owner]})
        )

    def all_bound() -> dict[str, str] | None:
        items = api.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]
        placed = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in items}
        return placed if all(placed.get(n) for n in names) else None

    placed = wait_for(all_bound, what="all replicas bound")
    assert Counter(placed.values()) == Counter({n: 2 for n in NODES}), placed


def test_unschedulable_pod_gets_event_condition_and_is_placed_when_a_node_fits(
    cluster: httpx.Client, scheduler: Process, ns: str
) -> None:
    api = cluster
    create_pod(api, ns, pod("huge", cpu="100"))

    ev = wait_for(lambda: event(api, ns, "huge", "FailedScheduling"), what="FailedScheduling event")
    expected = (
        "0/3 nodes are available: 3 Insufficient cpu. "
        "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    )
    assert ev["type"] == "Warning"
    assert ev["message"] == expected
    assert ev["source"]["component"] == "default-scheduler"
    assert ev["involvedObject"]["kind"] == "Pod" and ev["involvedObject"]["name"] == "huge"
    assert ev["count"] >= 1

    def condition() -> dict | None:
        status = api.get(f"/api/v1/namespaces/{ns}/pods/huge").json()["status"]
        return next((c for c in status.get("conditions") or [] if c["type"] == "PodScheduled"), None)

    cond = wait_for(condition, what="PodScheduled condition")
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", expected)
    assert node_of(api, ns, "huge") is None

    # A tainted big node does not help; an untainted one does, soon after it appears.
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    extra = ["sched-tainted", "sched-big"]
    try:
        r = api.post("/api/v1/nodes", json=node(extra[0], cpu="200", taints=[taint]))
        assert r.status_code == 201, r.text

        def tainted_message() -> str | None:
            status = api.get(f"/api/v1/namespaces/{ns}/pods/huge").json()["status"]
            c: dict[str, Any] = next(
                (c for c in status.get("conditions") or [] if c["type"] == "PodScheduled"), {}
            )
            return c.get("message") if "untolerated taint" in c.get("message", "") else None

        msg = wait_for(tainted_message, what="message naming the taint")
        assert msg.startswith(
            "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu."
        )
        assert node_of(api, ns, "huge") is None

        r = api.post("/api/v1/nodes", json=node(extra[1], cpu="200"))
        assert r.status_code == 201, r.text
        assert wait_for(lambda: node_of(api, ns, "huge"), what="huge bound", timeout=20) == extra[1]
    finally:
        api.delete(f"/api/v1/namespaces/{ns}/pods/huge", params={"gracePeriodSeconds": "0"})
        for name in extra:
            api.delete(f"/api/v1/nodes/{name}")


def test_other_schedulers_pods_are_left_alone(cluster: httpx.Client, scheduler: Process, ns: str) -> None:
    api = cluster
    create_pod(api, ns, pod("theirs", schedulerName="my-scheduler"))
    create_pod(api, ns, pod("ours"))
    wait_for(lambda: node_of(api, ns, "ours"), what="ours bound")
    assert node_of(api, ns, "theirs") is None
