"""Priority and preemption with minik-scheduler as a real process against a real API server.

One small Node object (1 CPU, no kubelet) is filled by a low-priority pod; a high-priority pod
then preempts it: nominatedNodeName, the victim's DisruptionTarget condition, its deletion, the
Preempted event, and the binding once the victim is gone (the test finishes the deletion, as the
kubelet would). A PodDisruptionBudget steers the choice to the other node's victim.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.api import create_namespace, event
from testkit.processes import APIServerProcess, Process
from testkit.wait import unique, wait_for

PCS = "/apis/scheduling.k8s.io/v1/priorityclasses"
NODES = ["prio-n1", "prio-n2"]


def node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": {"cpu": "1", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "1", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }


def pod(name: str, cpu: str, klass: str, **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "containers": [{"name": "main", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}],
            "priorityClassName": klass,
            **spec,
        },
    }


@pytest.fixture(scope="module")
def cluster(apiserver: APIServerProcess) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    with apiserver.http() as api:
        classes = {
            "low": unique("low"),
            "mid": unique("mid"),
            "high": unique("high"),
            "never": unique("never"),
        }
        values = {"low": 10, "mid": 20, "high": 1000, "never": 2000}
        for key, name in classes.items():
            body: dict[str, Any] = {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
            }
            body["value"] = values[key]
            if key == "never":
                body["preemptionPolicy"] = "Never"
            assert api.post(PCS, json=body).status_code == 201
        yield api, classes


@pytest.fixture()
def ns(cluster: tuple[httpx.Client, dict[str, str]]) -> Iterator[str]:
    api, _ = cluster
    names = []
    for n in NODES:
        r = api.post("/api/v1/nodes", json=node(n))
        assert r.status_code == 201, r.text
        names.append(n)
    name = create_namespace(api, "preempt")
    try:
        yield name
    finally:
        api.request(
            "DELETE",
            f"/api/v1/namespaces/{name}/pods",
            json={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0},
        )
        api.delete(f"/api/v1/namespaces/{name}")
        for n in names:
            api.delete(f"/api/v1/nodes/{n}")


def get_pod(api: httpx.Client, ns: str, name: str) -> dict[str, Any] | None:
    r = api.get(f"/api/v1/namespaces/{ns}/pods/{name}")
    return r.json() if r.status_code == 200 else None


def bound(api: httpx.Client, ns: str, name: str) -> str | None:
    found = get_pod(api, ns, name)
    return (found or {}).get("spec", {}).get("nodeName")


def test_high_priority_pod_preempts_low_priority_one(
    cluster: tuple[httpx.Client, dict[str, str]], scheduler: Process, ns: str
) -> None:
    api, classes = cluster
    pods = f"/api/v1/namespaces/{ns}/pods"
    # fill both nodes: n1 with a low-priority pod guarded by a budget, n2 with a mid-priority one
    assert (
        api.post(pods, json=pod("guarded", "800m", classes["low"], labels={"app": "db"})).status_code == 201
    )
    first = wait_for(lambda: bound(api, ns, "guarded"), what="guarded bound")
    other = next(n for n in NODES if n != first)
    assert api.post(pods, json=pod("victim", "800m", classes["mid"], nodeName=other)).status_code == 201
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "db"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}},
    }
    r = api.post(f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", json=pdb)
    assert r.status_code == 201, r.text  # no disruption controller here: disruptionsAllowed stays 0

    # preemptionPolicy Never: waits, nothing is preempted
    assert api.post(pods, json=pod("polite", "500m", classes["never"])).status_code == 201
    ev = wait_for(lambda: event(api, ns, "polite", "FailedScheduling"), what="polite FailedScheduling")
    assert ev["message"] == (
        "0/2 nodes are available: 2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    )
    api.delete(f"{pods}/polite", params={"gracePeriodSeconds": "0"})

    created = api.post(pods, json=pod("urgent", "500m", classes["high"]))
    assert created.status_code == 201, created.text
    uid = created.json()["metadata"]["uid"]
    assert created.json()["spec"]["priority"] == 1000

    # the budget steers preemption to the other node although its victim has the higher priority
    def nominated() -> str | None:
        return ((get_pod(api, ns, "urgent") or {}).get("status") or {}).get("nominatedNodeName")

    assert wait_for(nominated, what="nominatedNodeName") == other
    victim = wait_for(
        lambda: (v := get_pod(api, ns, "victim")) and v["metadata"].get("deletionTimestamp") and v,
        what="victim terminating",
    )
    conds = {c["type"]: c for c in victim["status"].get("conditions") or []}
    assert conds["DisruptionTarget"]["status"] == "True"
    assert conds["DisruptionTarget"]["reason"] == "PreemptionByScheduler"
    assert conds["DisruptionTarget"]["message"] == (
        "default-scheduler: preempting to accommodate a higher priority pod"
    )
    ev = wait_for(lambda: event(api, ns, "victim", "Preempted"), what="Preempted event")
    assert ev["type"] == "Normal"
    assert ev["message"] == f"Preempted by pod {uid} on node {other}"
    ev = wait_for(lambda: event(api, ns, "urgent", "FailedScheduling"), what="urgent FailedScheduling")
    assert ev["message"] == "0/2 nodes are available: 2 Insufficient cpu."
    assert get_pod(api, ns, "guarded")["metadata"].get("deletionTimestamp") is None  # type: ignore[index]
    assert bound(api, ns, "urgent") is None  # the victim still holds the node

    # the kubelet would now finish the deletion; the preemptor then goes to its nominated node
    r = api.delete(f"{pods}/victim", params={"gracePeriodSeconds": "0"})
    assert r.status_code == 200, r.text
    assert wait_for(lambda: bound(api, ns, "urgent"), what="urgent bound") == other
    assert get_pod(api, ns, "guarded") is not None
    log = scheduler.log(20000)
    assert log.count(f"{ns}/urgent: preempting") == 1, log  # no second round while it terminated
