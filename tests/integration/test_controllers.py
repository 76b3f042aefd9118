"""The controller manager against a real etcd and API server (no kubelet: tests play its part by
writing pod and node status themselves)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.api import apps, containers, create_namespace, items, owner_ref
from testkit.prereq import require_kubectl
from testkit.processes import APIServerProcess, Process, controller_manager, running
from testkit.wait import unique, wait_for

RS = "/apis/apps/v1/namespaces/{ns}/replicasets"
DEPLOYS = "/apis/apps/v1/namespaces/{ns}/deployments"
PODS = "/api/v1/namespaces/{ns}/pods"
CMS = "/api/v1/namespaces/{ns}/configmaps"
GRACE = 3  # --node-monitor-grace-period for the tests


def manager_process(api: APIServerProcess, *extra: str) -> Process:
    """The controller manager with short node-monitor periods."""
    periods = ("--node-monitor-grace-period", str(GRACE), "--node-monitor-period", "0.5")
    return controller_manager(api, *periods, "--pod-eviction-timeout", "2", *extra)


@pytest.fixture(scope="module")
def manager(apiserver: APIServerProcess) -> Iterator[Process]:
    cm = manager_process(apiserver)
    with running(cm):
        yield cm


@pytest.fixture()
def ns(api: httpx.Client, manager: Process) -> str:
    return create_namespace(api)


def replicaset(name: str, replicas: int) -> dict[str, Any]:
    return apps("ReplicaSet", name, containers("busybox:1.36"), replicas)


def deployment(name: str, replicas: int, **strategy: Any) -> dict[str, Any]:
    return apps(
        "Deployment",
        name,
        containers("busybox:1.36"),
        replicas,
        **({"strategy": strategy} if strategy else {}),
    )


def active_pods(api: httpx.Client, ns: str, app: str) -> list[dict[str, Any]]:
    return [
        p
        for p in items(api, PODS.format(ns=ns), labelSelector=f"app={app}")
        if not p["metadata"].get("deletionTimestamp")
    ]


def make_ready(api: httpx.Client, ns: str, pod: dict[str, Any], ip: str = "10.0.0.1") -> None:
    """Play the kubelet: Running, Ready=True, a pod IP."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for _ in range(10):
        cur = api.get(f"{PODS.format(ns=ns)}/{pod['metadata']['name']}").json()
        cur["status"] = {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
        }
        r = api.put(f"{PODS.format(ns=ns)}/{pod['metadata']['name']}/status", json=cur)
        if r.status_code in (200, 404):
            return
        assert r.status_code == 409, r.text


def ready_all(api: httpx.Client, ns: str, app: str) -> int:
    n = 0
    for i, p in enumerate(active_pods(api, ns, app)):
        if not any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (p.get("status") or {}).get("conditions") or []
        ):
            make_ready(api, ns, p, f"10.0.0.{i + 2}")
            n += 1
    return n


# -- ReplicaSet -------------------------------------------------------------------------------------


def test_replicaset_creates_scales_and_reports_status(api: httpx.Client, ns: str) -> None:
    r = api.post(RS.format(ns=ns), json=replicaset("web", 3))
    assert r.status_code == 201, r.text
    pods = wait_for(lambda: (p := active_pods(api, ns, "web")) and len(p) == 3 and p, what="3 pods")
    for p in pods:
        assert p["metadata"]["name"].startswith("web-")
        ref = p["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "ReplicaSet" and ref["controller"] and ref["blockOwnerDeletion"]
    # a deleted pod is replaced
    api.delete(f"{PODS.format(ns=ns)}/{pods[0]['metadata']['name']}")
    wait_for(
        lambda: (
            len(p := active_pods(api, ns, "web")) == 3
            and pods[0]["metadata"]["name"] not in {x["metadata"]["name"] for x in p}
        ),
        what="replacement",
    )
    ready_all(api, ns, "web")
    wait_for(
        lambda: (
            (s := api.get(f"{RS.format(ns=ns)}/web").json().get("status", {})).get("readyReplicas") == 3
            and s.get("availableReplicas") == 3
            and s.get("fullyLabeledReplicas") == 3
        ),
        what="ready status",
    )
    # scale down keeps exactly 1 and never goes below
    r = api.patch(
        f"{RS.format(ns=ns)}/web/scale",
        json={"spec": {"replicas": 1}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    wait_for(lambda: len(active_pods(api, ns, "web")) == 1, what="scale down")
    wait_for(
        lambda: api.get(f"{RS.format(ns=ns)}/web").json()["status"].get("replicas") == 1,
        what="status replicas 1",
    )


def test_replicaset_adopts_orphans_and_releases(api: httpx.Client, ns: str) -> None:
    orphan = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "lonely", "labels": {"app": "adopt"}},
        "spec": containers("busybox:1.36"),
    }
    assert api.post(PODS.format(ns=ns), json=orphan).status_code == 201
    assert api.post(RS.format(ns=ns), json=replicaset("adopt", 2)).status_code == 201
    wait_for(lambda: len(active_pods(api, ns, "adopt")) == 2, what="2 pods")
    lonely = wait_for(
        lambda: (p := api.get(f"{PODS.format(ns=ns)}/lonely").json())["metadata"].get("ownerReferences") and p
    )
    assert lonely["metadata"]["ownerReferences"][0]["name"] == "adopt"
    # change its labels: released, and a replacement made
    r = api.patch(
        f"{PODS.format(ns=ns)}/lonely",
        json={"metadata": {"labels": {"app": "gone"}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200
    wait_for(
        lambda: not api.get(f"{PODS.format(ns=ns)}/lonely").json()["metadata"].get("ownerReferences"),
        what="release",
    )
    wait_for(lambda: len(active_pods(api, ns, "adopt")) == 2, what="replacement")


# -- Deployment -------------------------------------------------------------------------------------


def deploy_status(api: httpx.Client, ns: str, name: str) -> dict[str, Any]:
    """The status, or {} while the controller has not observed the latest generation."""
    d = api.get(f"{DEPLOYS.format(ns=ns)}/{name}").json()
    status = dict(d.get("status") or {})
    if status.get("observedGeneration") != d["metadata"].get("generation"):
        return {}
    return status


def kubectl(api: APIServerProcess, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_kubectl(), "--kubeconfig", api.kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_deployment_rollout_update_and_undo(api: httpx.Client, ns: str, apiserver: APIServerProcess) -> None:
    d = deployment("app", 3, type="RollingUpdate", rollingUpdate={"maxSurge": 1, "maxUnavailable": 0})
    assert api.post(DEPLOYS.format(ns=ns), json=d).status_code == 201

    def progress() -> bool:
        ready_all(api, ns, "app")
        s = deploy_status(api, ns, "app")
        return s.get("availableReplicas") == 3 and s.get("updatedReplicas") == 3 and s.get("replicas") == 3

    wait_for(progress, what="3 available")
    rss = items(api, RS.format(ns=ns))
    assert len(rss) == 1
    rs1 = rss[0]
    h = rs1["metadata"]["labels"]["pod-template-hash"]
    assert rs1["metadata"]["name"] == f"app-{h}"
    assert rs1["spec"]["selector"]["matchLabels"]["pod-template-hash"] == h
    assert rs1["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    out = kubectl(apiserver, "-n", ns, "rollout", "status", "deployment/app", "--timeout=20s")
    assert out.returncode == 0, out.stderr
    assert "successfully rolled out" in out.stdout

    # kubectl set image: a rolling update with maxUnavailable 0 -- available never drops below 3
    out = kubectl(apiserver, "-n", ns, "set", "image", "deployment/app", "main=busybox:1.37")
    assert out.returncode == 0, out.stderr
    min_available = 3

    def rolled() -> bool:
        nonlocal min_available
        ready_all(api, ns, "app")
        rs_list = items(api, RS.format(ns=ns))
        avail = sum(int(r.get("status", {}).get("availableReplicas") or 0) for r in rs_list)
        min_available = min(min_available, avail)
        s = deploy_status(api, ns, "app")
        return (
            len(rs_list) == 2
            and s.get("updatedReplicas") == 3
            and s.get("replicas") == 3
            and s.get("availableReplicas") == 3
        )

    wait_for(rolled, timeout=60, what="rolled out")
    assert min_available >= 3
    dep = wait_for(
        lambda: (
            (x := api.get(f"{DEPLOYS.format(ns=ns)}/app").json())["metadata"]["annotations"][
                "deployment.kubernetes.io/revision"
            ]
            == "2"
            and x
        ),
        what="revision 2",
    )
    conds = {c["type"]: c for c in dep["status"]["conditions"]}
    assert (
        conds["Available"]["status"] == "True" and conds["Available"]["reason"] == "MinimumReplicasAvailable"
    )
    wait_for(
        lambda: (
            ready_all(api, ns, "app") >= 0
            and {c["type"]: c for c in deploy_status(api, ns, "app").get("conditions") or []}.get(
                "Progressing", {}
            ).get("reason")
            == "NewReplicaSetAvailable"
        ),
        what=f"NewReplicaSetAvailable in {deploy_status(api, ns, 'app')}",
    )
    out = kubectl(apiserver, "-n", ns, "rollout", "status", "deployment/app", "--timeout=20s")
    assert out.returncode == 0, out.stderr

    # kubectl rollout undo: back to the first ReplicaSet, which gets revision 3
    out = kubectl(apiserver, "-n", ns, "rollout", "undo", "deployment/app")
    assert out.returncode == 0, out.stderr

    def undone() -> bool:
        ready_all(api, ns, "app")
        rs = api.get(f"{RS.format(ns=ns)}/{rs1['metadata']['name']}").json()
        s = deploy_status(api, ns, "app")
        return (
            rs["spec"]["replicas"] == 3
            and rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
            and s.get("updatedReplicas") == 3
            and s.get("replicas") == 3
            and s.get("availableReplicas") == 3
        )

    wait_for(undone, timeout=60, what="undo")
    rs = api.get(f"{RS.format(ns=ns)}/{rs1['metadata']['name']}").json()
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert len(items(api, RS.format(ns=ns))) == 2

    # deleting the Deployment removes its ReplicaSets and pods (garbage collector, background)
    assert api.delete(f"{DEPLOYS.format(ns=ns)}/app").status_code == 200
    wait_for(lambda: not items(api, RS.format(ns=ns)) and not items(api, PODS.format(ns=ns)), what="cascade")


def test_deployment_recreate_and_progress_deadline(api: httpx.Client, ns: str) -> None:
    d = deployment("rec", 2, type="Recreate")
    d["spec"]["progressDeadlineSeconds"] = 2
    assert api.post(DEPLOYS.format(ns=ns), json=d).status_code == 201
    wait_for(lambda: len(active_pods(api, ns, "rec")) == 2, what="2 pods")
    # nobody makes them ready: the deadline passes
    wait_for(
        lambda: (
            (
                c := {c["type"]: c for c in deploy_status(api, ns, "rec").get("conditions") or []}.get(
                    "Progressing"
                )
            )
            and c["status"] == "False"
            and c["reason"] == "ProgressDeadlineExceeded"
        ),
        what="ProgressDeadlineExceeded",
    )
    first = {p["metadata"]["name"] for p in active_pods(api, ns, "rec")}
    r = api.patch(
        f"{DEPLOYS.format(ns=ns)}/rec",
        json={"spec": {"template": {"metadata": {"labels": {"app": "rec", "v": "2"}}}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    wait_for(
        lambda: (
            len(p := active_pods(api, ns, "rec")) == 2
            and not first & {x["metadata"]["name"] for x in p}
            and all(x["metadata"]["labels"].get("v") == "2" for x in p)
        ),
        what="recreated pods",
    )


def test_deployment_scale_paused(api: httpx.Client, ns: str) -> None:
    d = deployment("pz", 2)
    d["spec"]["paused"] = True
    assert api.post(DEPLOYS.format(ns=ns), json=d).status_code == 201
    r = api.patch(
        f"{DEPLOYS.format(ns=ns)}/pz",
        json={"spec": {"paused": False}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200
    wait_for(lambda: len(active_pods(api, ns, "pz")) == 2, what="2 pods")
    r = api.patch(
        f"{DEPLOYS.format(ns=ns)}/pz/scale",
        json={"spec": {"replicas": 4}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200
    wait_for(lambda: len(active_pods(api, ns, "pz")) == 4, what="4 pods")


# -- garbage collector ------------------------------------------------------------------------------


def owned_cm(name: str, owner: dict[str, Any], block: bool = True) -> dict[str, Any]:
    meta = {"name": name, "ownerReferences": [owner_ref(owner, "v1", "ConfigMap", blockOwnerDeletion=block)]}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


def test_gc_background_foreground_orphan(api: httpx.Client, ns: str) -> None:
    path = CMS.format(ns=ns)
    for policy in ("Background", "Foreground", "Orphan"):
        owner = api.post(
            path,
            json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"owner-{policy.lower()}"}},
        ).json()
        child = f"child-{policy.lower()}"
        assert api.post(path, json=owned_cm(child, owner)).status_code == 201
        owner_name = owner["metadata"]["name"]
        r = api.request("DELETE", f"{path}/{owner_name}", json={"propagationPolicy": policy})
        assert r.status_code in (200, 202), r.text
        wait_for(
            lambda: api.get(f"{path}/{owner_name}").status_code == 404,  # noqa: B023
            what=f"{policy} owner gone",
        )
        if policy == "Orphan":
            c = api.get(f"{path}/{child}").json()
            assert not c["metadata"].get("ownerReferences")
        else:
            wait_for(lambda: api.get(f"{path}/{child}").status_code == 404, what=f"{policy} child gone")  # noqa: B023
    # a dependent whose owner never existed is collected
    ghost = {"metadata": {"name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"}}
    assert api.post(path, json=owned_cm("haunted", ghost)).status_code == 201
    wait_for(lambda: api.get(f"{path}/haunted").status_code == 404, what="dangling collected")


# -- namespace, service accounts, endpoints ---------------------------------------------------------


def test_namespace_deletion_empties_it(api: httpx.Client, ns: str) -> None:
    wait_for(
        lambda: api.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default").status_code == 200,
        what="default SA",
    )
    assert (
        api.post(
            CMS.format(ns=ns), json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
        ).status_code
        == 201
    )
    assert api.post(RS.format(ns=ns), json=replicaset("inns", 2)).status_code == 201
    wait_for(lambda: len(active_pods(api, ns, "inns")) == 2)
    assert api.delete(f"/api/v1/namespaces/{ns}").status_code == 200
    wait_for(lambda: api.get(f"/api/v1/namespaces/{ns}").status_code == 404, what="namespace gone")


def test_endpoints_follow_ready_pods(api: httpx.Client, ns: str) -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "ep"}, "ports": [{"name": "http", "port": 80, "targetPort": "web"}]},
    }
    assert api.post(f"/api/v1/namespaces/{ns}/services", json=svc).status_code == 201, "service"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "ep-1", "labels": {"app": "ep"}},
        "spec": {
            "containers": [
                {"name": "main", "image": "busybox", "ports": [{"name": "web", "containerPort": 8080}]}
            ]
        },
    }
    assert api.post(PODS.format(ns=ns), json=pod).status_code == 201
    make_ready(api, ns, pod, "10.1.2.3")

    def ep() -> Any:
        r = api.get(f"/api/v1/namespaces/{ns}/endpoints/web")
        return r.status_code == 200 and r.json().get("subsets")

    subsets = wait_for(ep, what="endpoints")
    assert subsets[0]["addresses"][0]["ip"] == "10.1.2.3"
    assert subsets[0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]


# -- node lifecycle ---------------------------------------------------------------------------------


def set_node_ready(api: httpx.Client, node_name: str, stamp: str) -> None:
    """Write Ready=True as a kubelet would: read, change, write; again when the controllers wrote
    first (the node lifecycle controller taints a fresh node, which moves its resourceVersion)."""
    for _ in range(20):
        cur = api.get(f"/api/v1/nodes/{node_name}").json()
        cur["status"] = dict(cur.get("status") or {})
        cur["status"]["conditions"] = [
            {"type": "Ready", "status": "True", "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
        ]
        r = api.put(f"/api/v1/nodes/{node_name}/status", json=cur)
        if r.status_code != 409:
            assert r.status_code == 200, r.text
            return
    raise AssertionError(f"could not write the status of node {node_name}: always 409")


def test_dead_node_tainted_pods_evicted_and_recovered(api: httpx.Client, ns: str) -> None:
    node_name = unique("node")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name}}
    created = api.post("/api/v1/nodes", json=node)
    assert created.status_code == 201, created.text
    try:
        set_node_ready(api, node_name, now)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "victim"},
            "spec": {"nodeName": node_name, "containers": [{"name": "main", "image": "busybox"}]},
        }
        assert api.post(PODS.format(ns=ns), json=pod).status_code == 201

        # no lease renewals: after the grace period the node is Unknown and tainted
        def tainted() -> Any:
            cur = api.get(f"/api/v1/nodes/{node_name}").json()
            ready = {c["type"]: c for c in cur["status"]["conditions"]}["Ready"]
            keys = {(t["key"], t["effect"]) for t in (cur.get("spec") or {}).get("taints") or []}
            return ready["status"] == "Unknown" and ("node.kubernetes.io/unreachable", "NoExecute") in keys

        wait_for(tainted, timeout=GRACE + 20, what="unreachable taint")
        # eviction after --pod-eviction-timeout: the pod is marked for deletion
        wait_for(
            lambda: (
                (r := api.get(f"{PODS.format(ns=ns)}/victim")).status_code == 404
                or r.json()["metadata"].get("deletionTimestamp")
            ),
            timeout=20,
            what="eviction",
        )
        # the kubelet comes back: Ready=True again, taints removed
        set_node_ready(api, node_name, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        wait_for(
            lambda: not api.get(f"/api/v1/nodes/{node_name}").json().get("spec", {}).get("taints"),
            timeout=10,
            what="taints removed",
        )
    finally:
        api.delete(f"/api/v1/nodes/{node_name}")


# -- leader election --------------------------------------------------------------------------------


def test_standby_takes_over_when_leader_dies(
    api: httpx.Client, ns: str, apiserver: APIServerProcess, manager: Process
) -> None:
    lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/minik-controller-manager"
    first = wait_for(
        lambda: (r := api.get(lease_path)).status_code == 200 and r.json()["spec"].get("holderIdentity"),
        what="leader",
    )
    standby = manager_process(apiserver).start()
    try:
        manager.stop(signal.SIGKILL)  # no release: the standby must wait for expiry
        second = wait_for(
            lambda: (h := api.get(lease_path).json()["spec"].get("holderIdentity")) and h != first and h,
            timeout=30,
            what="takeover",
        )
        assert second != first
        assert api.post(RS.format(ns=ns), json=replicaset("after", 2)).status_code == 201
        wait_for(lambda: len(active_pods(api, ns, "after")) == 2, what="new leader works")
        spec = api.get(lease_path).json()["spec"]
        assert spec["leaseTransitions"] >= 1
    finally:
        standby.cleanup()
