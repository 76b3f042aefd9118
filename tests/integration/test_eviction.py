"""The pods/eviction subresource and the disruption controller against a real etcd and API server
(no kubelet: the tests write the pods' status themselves)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from testkit.api import containers, create_namespace
from testkit.processes import APIServerProcess, Process, controller_manager, running
from testkit.wait import wait_for

pytestmark = pytest.mark.integration

PODS = "/api/v1/namespaces/{ns}/pods"
PDBS = "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"
BLOCKED = "Cannot evict pod as it would violate the pod's disruption budget."


@pytest.fixture(scope="module")
def manager(apiserver: APIServerProcess) -> Iterator[Process]:
    manager_proc = controller_manager(apiserver, "--controllers", "disruption,replicaset,deployment")
    with running(manager_proc):
        yield manager_proc


@pytest.fixture()
def ns(api: httpx.Client, manager: Process) -> str:
    return create_namespace(api, "evict")


def make_pod(
    api: httpx.Client, ns: str, name: str, phase: str = "Running", ready: bool = True, **labels: str
) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": "web"}},
        "spec": {**containers("busybox:1.36"), "nodeName": "node-a"},
    }
    r = api.post(PODS.format(ns=ns), json=body)
    assert r.status_code == 201, r.text
    pod = r.json()
    pod["status"] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    r = api.put(f"{PODS.format(ns=ns)}/{name}/status", json=pod)
    assert r.status_code == 200, r.text


def make_pdb(api: httpx.Client, ns: str, name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("selector", {"matchLabels": {"app": "web"}})
    r = api.post(
        PDBS.format(ns=ns),
        json={
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name},
            "spec": spec,
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def pdb_status(api: httpx.Client, ns: str, name: str) -> dict[str, Any]:
    return api.get(f"{PDBS.format(ns=ns)}/{name}").json().get("status") or {}


def wait_status(api: httpx.Client, ns: str, name: str, **want: int) -> dict[str, Any]:
    def ok() -> dict[str, Any] | None:
        status = pdb_status(api, ns, name)
        return status if all(status.get(k) == v for k, v in want.items()) else None

    return wait_for(ok, 30, f"budget {name} status {want}")


def evict(api: httpx.Client, ns: str, pod: str, **delete_options: Any) -> httpx.Response:
    body: dict[str, Any] = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": ns},
    }
    if delete_options:
        body["deleteOptions"] = delete_options
    return api.post(f"{PODS.format(ns=ns)}/{pod}/eviction", json=body)


def pod_gone_or_deleting(api: httpx.Client, ns: str, name: str) -> bool:
    r = api.get(f"{PODS.format(ns=ns)}/{name}")
    return r.status_code == 404 or bool(r.json()["metadata"].get("deletionTimestamp"))


def test_controller_status_then_eviction_within_the_budget_then_429(api: httpx.Client, ns: str) -> None:
    for i in range(3):
        make_pod(api, ns, f"web-{i}")
    make_pdb(api, ns, "web", minAvailable=2)
    status = wait_status(
        api, ns, "web", expectedPods=3, currentHealthy=3, desiredHealthy=2, disruptionsAllowed=1
    )
    assert status["observedGeneration"] == 1
    cond = [c for c in status["conditions"] if c["type"] == "DisruptionAllowed"][0]
    assert (cond["status"], cond["reason"]) == ("True", "SufficientPods")
    table = api.get(
        PDBS.format(ns=ns), headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    ).json()
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Min Available",
        "Max Unavailable",
        "Allowed Disruptions",
        "Age",
    ]
    assert table["rows"][0]["cells"][:4] == ["web", "2", "N/A", 1]

    r = evict(api, ns, "web-0")
    assert r.status_code == 201, r.text
    assert r.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }
    assert pod_gone_or_deleting(api, ns, "web-0")
    after = pdb_status(api, ns, "web")
    assert after["disruptionsAllowed"] == 0
    assert "web-0" in (after.get("disruptedPods") or {}) or after["currentHealthy"] == 2

    wait_status(api, ns, "web", currentHealthy=2, disruptionsAllowed=0)
    r = evict(api, ns, "web-1")
    assert r.status_code == 429
    assert r.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": BLOCKED,
        "reason": "TooManyRequests",
        "details": {
            "causes": [
                {
                    "reason": "DisruptionBudget",
                    "message": "The disruption budget web needs 2 healthy pods and has 2 currently",
                }
            ]
        },
        "code": 429,
    }
    assert not pod_gone_or_deleting(api, ns, "web-1")
    cond = [c for c in pdb_status(api, ns, "web")["conditions"] if c["type"] == "DisruptionAllowed"][0]
    assert (cond["status"], cond["reason"]) == ("False", "InsufficientPods")


def test_terminal_and_pending_pods_are_evicted_without_the_budget(api: httpx.Client, ns: str) -> None:
    make_pod(api, ns, "done", phase="Succeeded", ready=False)
    make_pod(api, ns, "waiting", phase="Pending", ready=False)
    make_pdb(api, ns, "all", maxUnavailable=0, selector={})
    wait_status(api, ns, "all", disruptionsAllowed=0)
    for name in ("done", "waiting"):
        r = evict(api, ns, name)
        assert r.status_code == 201, r.text
        assert pod_gone_or_deleting(api, ns, name)


def test_unhealthy_pod_policy(api: httpx.Client, ns: str) -> None:
    make_pod(api, ns, "ok-0")
    make_pod(api, ns, "sick", ready=False)
    make_pdb(api, ns, "strict", minAvailable=2)
    wait_status(api, ns, "strict", currentHealthy=1, desiredHealthy=2, disruptionsAllowed=0)
    r = evict(api, ns, "sick")
    assert r.status_code == 429, r.text  # IfHealthyBudget: the application is not healthy
    r = api.patch(
        f"{PDBS.format(ns=ns)}/strict",
        json={"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    wait_status(api, ns, "strict", observedGeneration=2)
    r = evict(api, ns, "sick")
    assert r.status_code == 201, r.text
    assert pod_gone_or_deleting(api, ns, "sick")


def test_more_than_one_budget_is_a_500_status(api: httpx.Client, ns: str) -> None:
    make_pod(api, ns, "p")
    make_pdb(api, ns, "one", maxUnavailable=1)
    make_pdb(api, ns, "two", maxUnavailable="50%")
    r = evict(api, ns, "p")
    assert r.status_code == 500
    assert r.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        "code": 500,
    }


def test_dry_run_and_preconditions(api: httpx.Client, ns: str) -> None:
    make_pod(api, ns, "a")
    make_pod(api, ns, "b")
    make_pdb(api, ns, "b1", minAvailable=1)
    wait_status(api, ns, "b1", disruptionsAllowed=1)
    r = evict(api, ns, "a", dryRun=["All"])
    assert r.status_code == 201, r.text
    assert not pod_gone_or_deleting(api, ns, "a")
    assert pdb_status(api, ns, "b1")["disruptionsAllowed"] == 1
    r = evict(api, ns, "a", preconditions={"uid": "not-the-uid"})
    assert r.status_code == 409, r.text
    assert not pod_gone_or_deleting(api, ns, "a")
    r = api.post(
        f"{PODS.format(ns=ns)}/a/eviction",
        json={"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "b"}},
    )
    assert r.status_code == 400
    assert r.json()["message"] == "name in URL does not match name in Eviction object"
    assert evict(api, ns, "nope").status_code == 404


def test_budget_validation(api: httpx.Client, ns: str) -> None:
    r = api.post(
        PDBS.format(ns=ns),
        json={
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "bad"},
            "spec": {"minAvailable": "150%", "maxUnavailable": -1, "unhealthyPodEvictionPolicy": "Never"},
        },
    )
    assert r.status_code == 422, r.text
    fields = {c["field"] for c in r.json()["details"]["causes"]}
    assert fields == {"spec", "spec.minAvailable", "spec.maxUnavailable", "spec.unhealthyPodEvictionPolicy"}


def test_percent_budget_counts_the_deployment_scale(api: httpx.Client, ns: str) -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": containers("busybox:1.36")},
        },
    }
    assert api.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=dep).status_code == 201
    make_pdb(api, ns, "half", maxUnavailable="30%")  # ceil(1.2) = 2 may be unavailable
    wait_status(api, ns, "half", expectedPods=4, desiredHealthy=2, currentHealthy=0, disruptionsAllowed=0)


def test_official_client_create_namespaced_pod_eviction(
    apiserver: APIServerProcess, api: httpx.Client, ns: str
) -> None:
    make_pod(api, ns, "c-0")
    make_pod(api, ns, "c-1")
    make_pdb(api, ns, "c", minAvailable=1)
    wait_status(api, ns, "c", disruptionsAllowed=1)
    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=str(apiserver.kubeconfig), client_configuration=configuration)
    with k8s_client.ApiClient(configuration) as api_client:
        core = k8s_client.CoreV1Api(api_client)
        body = k8s_client.V1Eviction(metadata=k8s_client.V1ObjectMeta(name="c-0", namespace=ns))
        core.create_namespaced_pod_eviction("c-0", ns, body)
        assert pod_gone_or_deleting(api, ns, "c-0")
        wait_status(api, ns, "c", disruptionsAllowed=0)
        body = k8s_client.V1Eviction(metadata=k8s_client.V1ObjectMeta(name="c-1", namespace=ns))
        with pytest.raises(ApiException) as exc:
            core.create_namespaced_pod_eviction("c-1", ns, body)
        assert exc.value.status == 429
        assert BLOCKED in (exc.value.body or "")
