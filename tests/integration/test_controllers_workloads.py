"""Job, StatefulSet, DaemonSet and node IPAM against a real etcd + API server, with hollow nodes and the
real ``minik-scheduler`` and ``minik-controller-manager`` processes; and the restart check: both are
killed with SIGKILL during a scale-up and the result is still exactly the declared pods."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.api import apps, containers, create_namespace, items
from testkit.processes import (
    APIServerProcess,
    Process,
    control_plane,
    controller_manager,
    hollow_nodes,
    running,
    scheduler,
)
from testkit.wait import wait_for

PREFIX = f"wl-{uuid.uuid4().hex[:4]}-"
CIDR = "10.124.0.0/16"


@pytest.fixture(scope="module")
def cluster(apiserver: APIServerProcess) -> Iterator[dict[str, Process]]:
    parts = {
        "hollow": hollow_nodes(apiserver, 3, PREFIX, "--lease-period", "2", "--job-duration", "0.3"),
        **control_plane(apiserver, "--allocate-node-cidrs", "true", "--cluster-cidr", CIDR),
    }
    with running(parts), apiserver.http() as api:
        wait_for(
            lambda: len(items(api, "/api/v1/nodes", labelSelector="minik.io/hollow=true")) == 3, 30, "3 nodes"
        )
        yield parts


@pytest.fixture()
def ns(api: httpx.Client, cluster: dict[str, Process]) -> str:
    return create_namespace(api, "wl")


def pod_spec(**spec: Any) -> dict[str, Any]:
    return {**containers("busybox", "c"), **spec}


def get(api: httpx.Client, path: str) -> dict[str, Any]:
    r = api.get(path)
    assert r.status_code == 200, r.text
    return dict(r.json())


def cond_obj(api: httpx.Client, path: str, ctype: str) -> dict[str, Any] | None:
    obj = get(api, path)
    return obj if condition(obj, ctype) == "True" else None


def condition(obj: dict[str, Any], ctype: str) -> str | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c["type"] == ctype:
            return str(c["status"])
    return None


# -- Job ------------------------------------------------------------------------------------------


def job(name: str, **spec: Any) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": name}}, "spec": pod_spec(restartPolicy="Never")}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": template, **spec},
    }


def test_job_runs_to_completion_in_parallel(api: httpx.Client, ns: str) -> None:
    assert (
        api.post(
            f"/apis/batch/v1/namespaces/{ns}/jobs", json=job("j", completions=5, parallelism=2)
        ).status_code
        == 201
    )
    path = f"/apis/batch/v1/namespaces/{ns}/jobs/j"
    done = wait_for(lambda: cond_obj(api, path, "Complete"), 60, "Job Complete")
    st = done["status"]
    assert st["succeeded"] == 5 and st.get("failed", 0) == 0 and st.get("active", 0) == 0
    assert st["startTime"] and st["completionTime"]
    pods = items(api, f"/api/v1/namespaces/{ns}/pods")
    assert len(pods) == 5 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    assert all(
        "batch.kubernetes.io/job-tracking" not in (p["metadata"].get("finalizers") or []) for p in pods
    )
    reasons = {e["reason"] for e in items(api, f"/api/v1/namespaces/{ns}/events")}
    assert {"SuccessfulCreate", "Completed"} <= reasons


def test_indexed_job_completes_every_index(api: httpx.Client, ns: str) -> None:
    body = job("ix", completions=3, parallelism=3, completionMode="Indexed")
    assert api.post(f"/apis/batch/v1/namespaces/{ns}/jobs", json=body).status_code == 201
    path = f"/apis/batch/v1/namespaces/{ns}/jobs/ix"
    done = wait_for(lambda: cond_obj(api, path, "Complete"), 60, "Complete")
    assert done["status"]["completedIndexes"] == "0-2" and done["status"]["succeeded"] == 3
    pods = items(api, f"/api/v1/namespaces/{ns}/pods")
    indexes = sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods)
    assert indexes == ["0", "1", "2"]
    assert all(
        p["spec"]["hostname"] == f"ix-{p['metadata']['labels']['batch.kubernetes.io/job-completion-index']}"
        for p in pods
    )


def test_job_fails_after_backoff_limit_and_ttl_deletes_it(api: httpx.Client, ns: str) -> None:
    body = job("bad", backoffLimit=1, ttlSecondsAfterFinished=1)
    body["spec"]["template"]["metadata"]["annotations"] = {"hollow.minik.io/exit-code": "1"}
    jobs = f"/apis/batch/v1/namespaces/{ns}/jobs"
    rv = api.get(jobs).json()["metadata"]["resourceVersion"]
    assert api.post(jobs, json=body).status_code == 201
    # The TTL may delete the Job within a second of its failing: follow it with a watch, so the
    # Failed status is seen however late this test gets to look.
    failed: dict[str, Any] | None = None
    deleted = False
    params = {
        "watch": "1",
        "resourceVersion": rv,
        "fieldSelector": "metadata.name=bad",
        "timeoutSeconds": "60",
    }
    with api.stream("GET", jobs, params=params, timeout=70) as r:
        for line in r.iter_lines():
            if not line:
                continue
            event = json.loads(line)
            obj = event["object"]
            conds = (obj.get("status") or {}).get("conditions") or []
            if failed is None and any(c["type"] == "Failed" and c["status"] == "True" for c in conds):
                failed = obj
            if event["type"] == "DELETED":
                deleted = True
                break
    assert failed is not None, "the Job never reported Failed"
    assert failed["status"]["failed"] == 2
    assert [c["reason"] for c in failed["status"]["conditions"] if c["type"] == "Failed"] == [
        "BackoffLimitExceeded"
    ]
    assert deleted, "the Job was not deleted by its TTL"


def test_job_active_deadline(api: httpx.Client, ns: str) -> None:
    body = job("slow", activeDeadlineSeconds=2)
    body["spec"]["template"]["metadata"]["annotations"] = {"hollow.minik.io/run-seconds": "600"}
    assert api.post(f"/apis/batch/v1/namespaces/{ns}/jobs", json=body).status_code == 201
    path = f"/apis/batch/v1/namespaces/{ns}/jobs/slow"
    failed = wait_for(lambda: cond_obj(api, path, "Failed"), 30, "Job Failed")
    assert [c["reason"] for c in failed["status"]["conditions"] if c["type"] == "Failed"] == [
        "DeadlineExceeded"
    ]
    wait_for(
        lambda: (
            not [
                p
                for p in items(api, f"/api/v1/namespaces/{ns}/pods")
                if p["status"].get("phase") == "Running"
            ]
        ),
        30,
        "pods stopped",
    )


# -- StatefulSet ----------------------------------------------------------------------------------


def statefulset(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    templates = [{"metadata": {"name": "data"}, "spec": claim}]
    return apps(
        "StatefulSet", name, pod_spec(), replicas, serviceName=name, volumeClaimTemplates=templates, **spec
    )


def test_statefulset_ordered_create_update_and_scale_down(api: httpx.Client, ns: str) -> None:
    base = f"/apis/apps/v1/namespaces/{ns}/statefulsets"
    assert api.post(base, json=statefulset("db", 3)).status_code == 201
    created: list[str] = []

    def all_ready() -> bool:
        pods = items(api, f"/api/v1/namespaces/{ns}/pods")
        for p in sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"]):
            if p["metadata"]["name"] not in created:
                created.append(p["metadata"]["name"])
        return get(api, f"{base}/db").get("status", {}).get("readyReplicas") == 3

    wait_for(all_ready, 60, "3 ready replicas", interval=0.05)
    assert created == ["db-0", "db-1", "db-2"]
    pods = {p["metadata"]["name"]: p for p in items(api, f"/api/v1/namespaces/{ns}/pods")}
    assert pods["db-1"]["spec"]["hostname"] == "db-1" and pods["db-1"]["spec"]["subdomain"] == "db"
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-1"}} in pods["db-1"]["spec"][
        "volumes"
    ]
    pvcs = sorted(
        p["metadata"]["name"] for p in items(api, f"/api/v1/namespaces/{ns}/persistentvolumeclaims")
    )
    assert pvcs == ["data-db-0", "data-db-1", "data-db-2"]
    st = get(api, f"{base}/db")["status"]
    rev1 = st["updateRevision"]
    assert (
        st["currentRevision"] == rev1
        and pods["db-0"]["metadata"]["labels"]["controller-revision-hash"] == rev1
    )

    # rolling update with a partition: only ordinals >= 1 move, highest first
    patch = {
        "spec": {
            "template": {"metadata": {"labels": {"app": "db", "v": "2"}}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
        }
    }
    r = api.patch(f"{base}/db", json=patch, headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text

    def revisions() -> dict[str, str] | None:
        ps = items(api, f"/api/v1/namespaces/{ns}/pods")
        s = get(api, f"{base}/db")["status"]
        if s.get("updatedReplicas") != 2 or s.get("readyReplicas") != 3 or len(ps) != 3:
            return None
        return {p["metadata"]["name"]: p["metadata"]["labels"]["controller-revision-hash"] for p in ps}

    revs = wait_for(revisions, 60, "partitioned rollout")
    rev2 = get(api, f"{base}/db")["status"]["updateRevision"]
    assert rev2 != rev1 and revs == {"db-0": rev1, "db-1": rev2, "db-2": rev2}
    assert get(api, f"{base}/db")["status"]["currentRevision"] == rev1

    # scale down: highest ordinal goes, PVCs stay
    r = api.patch(
        f"{base}/db", json={"spec": {"replicas": 1}}, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert r.status_code == 200
    wait_for(
        lambda: (
            sorted(p["metadata"]["name"] for p in items(api, f"/api/v1/namespaces/{ns}/pods")) == ["db-0"]
        ),
        60,
        "scale down to db-0",
    )
    assert len(items(api, f"/api/v1/namespaces/{ns}/persistentvolumeclaims")) == 3
    reasons = {e["reason"] for e in items(api, f"/api/v1/namespaces/{ns}/events")}
    assert {"SuccessfulCreate", "SuccessfulDelete"} <= reasons


def test_statefulset_parallel(api: httpx.Client, ns: str) -> None:
    base = f"/apis/apps/v1/namespaces/{ns}/statefulsets"
    body = statefulset("par", 4, podManagementPolicy="Parallel")
    assert api.post(base, json=body).status_code == 201
    wait_for(lambda: get(api, f"{base}/par").get("status", {}).get("readyReplicas") == 4, 60, "4 ready")
    names = sorted(p["metadata"]["name"] for p in items(api, f"/api/v1/namespaces/{ns}/pods"))
    assert names == ["par-0", "par-1", "par-2", "par-3"]


# -- DaemonSet ------------------------------------------------------------------------------------


def test_daemonset_one_pod_per_node_and_on_a_new_node(
    api: httpx.Client, ns: str, apiserver: APIServerProcess
) -> None:
    base = f"/apis/apps/v1/namespaces/{ns}/daemonsets"
    body = apps("DaemonSet", "agent", pod_spec(nodeSelector={"minik.io/hollow": "true"}))
    assert api.post(base, json=body).status_code == 201

    def per_node(expected: int) -> dict[str, str] | None:
        ds = get(api, f"{base}/agent")
        st = ds.get("status", {})
        ours = [n for n in items(api, "/api/v1/nodes", labelSelector="minik.io/hollow=true")]
        if st.get("desiredNumberScheduled") != expected or st.get("numberReady") != expected:
            return None
        pods = items(api, f"/api/v1/namespaces/{ns}/pods")
        bound = {p["spec"].get("nodeName"): p["metadata"]["name"] for p in pods}
        if len(pods) != expected or len(bound) != expected or len(ours) != expected:
            return None
        return bound

    total = 3
    bound = wait_for(lambda: per_node(total), 60, "one daemon pod per node")
    assert set(bound) >= {f"{PREFIX}{i}" for i in range(3)}
    pod = items(api, f"/api/v1/namespaces/{ns}/pods")[0]
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms[0]["matchFields"] == [
        {"key": "metadata.name", "operator": "In", "values": [pod["spec"]["nodeName"]]}
    ]
    assert any(t.get("key") == "node.kubernetes.io/unreachable" for t in pod["spec"]["tolerations"])

    try:
        with running(hollow_nodes(apiserver, 1, f"{PREFIX}x", "--lease-period", "2")):
            bound = wait_for(lambda: per_node(total + 1), 60, "a daemon pod on the new node")
            assert f"{PREFIX}x0" in bound

            # rolling update: every pod is replaced with the new template
            patch = {"spec": {"template": {"metadata": {"labels": {"app": "agent", "v": "2"}}}}}
            r = api.patch(
                f"{base}/agent", json=patch, headers={"Content-Type": "application/merge-patch+json"}
            )
            assert r.status_code == 200

            def updated() -> bool:
                ds = get(api, f"{base}/agent")
                st = ds.get("status", {})
                return (
                    st.get("observedGeneration") == ds["metadata"]["generation"]
                    and st.get("updatedNumberScheduled") == total + 1
                    and st.get("numberAvailable") == total + 1
                )

            wait_for(updated, 60, "rolled-out DaemonSet")
            assert all(
                p["metadata"]["labels"].get("v") == "2"
                for p in items(api, f"/api/v1/namespaces/{ns}/pods")
                if not p["metadata"].get("deletionTimestamp")
            )
    finally:
        api.delete(f"/api/v1/nodes/{PREFIX}x0")


# -- IPAM ------------------------------------------------------------------------------------------


def test_ipam_never_duplicates_and_repairs_after_restart(
    api: httpx.Client, cluster: dict[str, Process], apiserver: APIServerProcess
) -> None:
    taken = "10.124.7.0/24"
    pre = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"{PREFIX}pre"},
        "spec": {"podCIDR": taken, "podCIDRs": [taken]},
    }
    assert api.post("/api/v1/nodes", json=pre).status_code == 201
    cluster["cm"].kill()
    cm = controller_manager(
        apiserver, "--allocate-node-cidrs", "true", "--cluster-cidr", CIDR, "--leader-elect", "false"
    )
    cluster["cm"] = cm.start()
    names = [f"{PREFIX}new{i}" for i in range(8)]
    for n in names:
        assert (
            api.post(
                "/api/v1/nodes", json={"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}}
            ).status_code
            == 201
        )

    def all_have() -> list[str] | None:
        cidrs = [n.get("spec", {}).get("podCIDR") for n in items(api, "/api/v1/nodes")]
        return cidrs if all(cidrs) else None

    try:
        cidrs = wait_for(all_have, 30, "every node has a pod CIDR")
        assert len(cidrs) == len(set(cidrs)), cidrs
        assert all(c.startswith("10.124.") for c in cidrs)
    finally:
        for n in [*names, f"{PREFIX}pre"]:
            api.delete(f"/api/v1/nodes/{n}")


# -- restart robustness ----------------------------------------------------------------------------


def test_scale_up_survives_sigkill_of_scheduler_and_controller_manager(
    api: httpx.Client, ns: str, cluster: dict[str, Process], apiserver: APIServerProcess
) -> None:
    rng = random.Random()
    base = f"/apis/apps/v1/namespaces/{ns}/deployments"
    body = apps("Deployment", "big", pod_spec(), 30)
    assert api.post(base, json=body).status_code == 201
    for _ in range(3):
        time.sleep(rng.uniform(0.1, 0.8))
        victim = rng.choice(["scheduler", "cm"])
        cluster[victim].kill()
        time.sleep(rng.uniform(0.0, 0.5))
        fresh = (
            scheduler(apiserver)
            if victim == "scheduler"
            else controller_manager(
                apiserver,
                "--allocate-node-cidrs",
                "true",
                "--cluster-cidr",
                CIDR,
                "--leader-elect",
                "false",
            )
        )
        cluster[victim] = fresh.start()
    # and both at once
    cluster["scheduler"].kill()
    cluster["cm"].kill()
    cluster["scheduler"] = scheduler(apiserver).start()
    cluster["cm"] = controller_manager(
        apiserver, "--allocate-node-cidrs", "true", "--cluster-cidr", CIDR, "--leader-elect", "false"
    ).start()

    def settled() -> list[dict[str, Any]] | None:
        d = get(api, f"{base}/big")
        pods = [
            p
            for p in items(api, f"/api/v1/namespaces/{ns}/pods")
            if not p["metadata"].get("deletionTimestamp")
        ]
        if d.get("status", {}).get("availableReplicas") != 30 or len(pods) != 30:
            return None
        if not all(p["spec"].get("nodeName") and p["status"].get("phase") == "Running" for p in pods):
            return None
        return pods

    pods = wait_for(settled, 90, "30 running pods")
    time.sleep(1)  # nothing more may appear once settled
    again = items(api, f"/api/v1/namespaces/{ns}/pods")
    assert len(again) == 30
    assert len({p["metadata"]["name"] for p in pods}) == 30
    assert len(items(api, f"/apis/apps/v1/namespaces/{ns}/replicasets")) == 1
