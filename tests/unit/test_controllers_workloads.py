"""Job, StatefulSet, DaemonSet and node IPAM without I/O: the pure planning functions, and single
reconciles over filled caches with the exact API actions asserted (sample-controller style)."""

from __future__ import annotations

from typing import Any

from controllers.daemonset import (
    DaemonSetController,
    daemon_tolerations,
    node_should_run,
    plan_daemonset,
    target_node,
    template_hash,
)
from controllers.job import (
    TRACKING_FINALIZER,
    JobController,
    failure_backoff,
    format_indexes,
    job_pod,
    parse_indexes,
    plan_job,
)
from controllers.nodeipam import CIDRSet, NodeIPAMController
from controllers.statefulset import (
    REVISION_LABEL,
    StatefulSetController,
    compute_status,
    new_pod,
    plan_statefulset,
    update_revision,
)
from kubelet.hollow import IPPool, finished_status, running_status
from tests.unit.test_controllers_reconcile import NOW, FakeClient, make_ctx, owner_controller, pod_obj, run


def owned_pod(name: str, owner: dict[str, Any], **kw: Any) -> dict[str, Any]:
    p = pod_obj(name, dict(owner["spec"]["template"]["metadata"]["labels"]), owner, **kw)
    p["metadata"]["ownerReferences"][0]["apiVersion"] = owner["apiVersion"]
    return p


# -- Job ------------------------------------------------------------------------------------------


def job_obj(**spec: Any) -> dict[str, Any]:
    labels = {"batch.kubernetes.io/controller-uid": "uid-j"}
    base = {
        "parallelism": 2,
        "completions": 4,
        "backoffLimit": 2,
        "completionMode": "NonIndexed",
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]},
        },
    }
    base.update(spec)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": "ns", "uid": "uid-j", "resourceVersion": "1", "generation": 1},
        "spec": base,
        "status": {},
    }


def test_indexes_round_trip() -> None:
    assert parse_indexes("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}
    assert format_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert format_indexes(set()) == "" and parse_indexes("") == set()


def test_failure_backoff_doubles_and_caps() -> None:
    assert [failure_backoff(n, 10) for n in (0, 1, 2, 3)] == [0, 10, 20, 40]
    assert failure_backoff(20, 10) == 360


def test_plan_job_nonindexed_counts() -> None:
    j = job_obj()
    running = [pod_obj("a", {}, phase="Running")]
    plan = plan_job(
        j, running, succeeded=2, failed=0, completed=set(), last_failure=0, now=NOW, backoff_base=10
    )
    assert plan.create_indexes == [None] and plan.finish is None  # min(2, 4-2) - 1 running
    plan = plan_job(j, [], succeeded=4, failed=0, completed=set(), last_failure=0, now=NOW, backoff_base=10)
    assert plan.finish is not None and plan.finish[0] == "Complete"


def test_plan_job_backoff_limit_and_deadline() -> None:
    j = job_obj()
    running = [pod_obj("a", {}, phase="Running")]
    plan = plan_job(
        j, running, succeeded=0, failed=3, completed=set(), last_failure=NOW, now=NOW, backoff_base=10
    )
    assert plan.finish == ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert plan.delete == running
    j = job_obj(activeDeadlineSeconds=5)
    j["status"]["startTime"] = "2023-11-14T22:13:00Z"  # NOW is 22:13:20
    plan = plan_job(
        j, running, succeeded=0, failed=0, completed=set(), last_failure=0, now=NOW, backoff_base=10
    )
    assert plan.finish is not None and plan.finish[1] == "DeadlineExceeded"


def test_plan_job_waits_for_failure_backoff() -> None:
    j = job_obj(parallelism=1, completions=1)
    plan = plan_job(
        j, [], succeeded=0, failed=1, completed=set(), last_failure=NOW - 2, now=NOW, backoff_base=10
    )
    assert plan.create_indexes == [] and plan.requeue_after == 8


def test_plan_job_indexed_creates_missing_indexes_and_drops_duplicates() -> None:
    j = job_obj(completionMode="Indexed", completions=4, parallelism=3)
    p1 = pod_obj("j-1-a", {}, phase="Running")
    p1["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": "1"}
    p1b = pod_obj("j-1-b", {}, phase="Pending", created=NOW - 10)
    p1b["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": "1"}
    plan = plan_job(
        j, [p1, p1b], succeeded=1, failed=0, completed={0}, last_failure=0, now=NOW, backoff_base=10
    )
    assert plan.create_indexes == [2, 3]
    assert [p["metadata"]["name"] for p in plan.delete] == ["j-1-b"]


def test_job_pod_has_tracking_finalizer_and_index() -> None:
    pod = job_pod(job_obj(completionMode="Indexed"), 3)
    assert TRACKING_FINALIZER in pod["metadata"]["finalizers"]
    assert pod["metadata"]["generateName"] == "j-3-"
    assert pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "3"
    assert pod["spec"]["hostname"] == "j-3"
    assert pod["spec"]["containers"][0]["env"][0]["name"] == "JOB_COMPLETION_INDEX"


def test_job_reconcile_counts_finished_pods_once_then_creates() -> None:
    async def scenario() -> None:
        j = job_obj()
        c, client, recorder = owner_controller(JobController, j)
        done = owned_pod("j-a", j, phase="Succeeded")
        done["metadata"]["finalizers"] = [TRACKING_FINALIZER]
        c.owned_informer.store.add(done)
        await c.reconcile("ns/j")
        verbs = [(a[0], a[1]) for a in client.actions]
        # uncounted first, then the finalizer, then the count; then two new pods and the status
        assert verbs[:3] == [("update", "jobs/status"), ("patch", "pods"), ("update", "jobs/status")]
        assert client.actions[0][3]["status"]["uncountedTerminatedPods"]["succeeded"] == ["uid-j-a"]
        assert client.actions[1][3]["metadata"]["finalizers"] is None
        assert client.actions[2][3]["status"]["succeeded"] == 1
        creates = [a for a in client.actions if a[0] == "create"]
        assert len(creates) == 2
        assert all(TRACKING_FINALIZER in a[3]["metadata"]["finalizers"] for a in creates)
        last = client.actions[-1]
        assert last[:2] == ("update", "jobs/status") and last[3]["status"]["startTime"]
        assert sum(e.startswith("Normal SuccessfulCreate") for e in recorder.events) == 2

    run(scenario())


# -- StatefulSet ----------------------------------------------------------------------------------


def sts_obj(replicas: int = 3, **spec: Any) -> dict[str, Any]:
    base = {
        "replicas": replicas,
        "serviceName": "db",
        "podManagementPolicy": "OrderedReady",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "selector": {"matchLabels": {"app": "db"}},
        "template": {
            "metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        },
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}],
    }
    base.update(spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "db",
            "namespace": "ns",
            "uid": "uid-db",
            "resourceVersion": "1",
            "generation": 1,
        },
        "spec": base,
        "status": {},
    }


def sts_pod(sts: dict[str, Any], ordinal: int, revision: str, ready: bool = True) -> dict[str, Any]:
    p = owned_pod(f"db-{ordinal}", sts, phase="Running" if ready else "Pending", ready=ready)
    p["metadata"]["labels"][REVISION_LABEL] = revision
    return p


def test_sts_new_pod_identity_and_claims() -> None:
    sts = sts_obj()
    pod = new_pod(sts, 2, "db-abc")
    assert pod["metadata"]["name"] == "db-2"
    assert pod["spec"]["hostname"] == "db-2" and pod["spec"]["subdomain"] == "db"
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-2"
    assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "2"
    assert pod["spec"]["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-2"}}]


def test_sts_ordered_ready_creates_one_at_a_time() -> None:
    sts = sts_obj()
    rev = update_revision(sts)
    assert plan_statefulset(sts, [], rev).create == [0]
    assert plan_statefulset(sts, [sts_pod(sts, 0, rev, ready=False)], rev).create == []
    assert plan_statefulset(sts, [sts_pod(sts, 0, rev)], rev).create == [1]
    par = sts_obj(podManagementPolicy="Parallel")
    assert plan_statefulset(par, [], rev).create == [0, 1, 2]


def test_sts_scale_down_highest_first_and_rolling_update_with_partition() -> None:
    sts = sts_obj(replicas=1)
    rev = update_revision(sts)
    pods = [sts_pod(sts, i, rev) for i in range(3)]
    assert [p["metadata"]["name"] for p in plan_statefulset(sts, pods, rev).delete] == ["db-2"]
    sts = sts_obj(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}})
    new_rev = update_revision(sts)
    old = [sts_pod(sts, i, "db-old") for i in range(3)]
    assert [p["metadata"]["name"] for p in plan_statefulset(sts, old, new_rev).delete] == ["db-2"]
    mixed = [sts_pod(sts, 0, "db-old"), sts_pod(sts, 1, "db-old"), sts_pod(sts, 2, new_rev)]
    assert [p["metadata"]["name"] for p in plan_statefulset(sts, mixed, new_rev).delete] == ["db-1"]
    done = [sts_pod(sts, 0, "db-old"), sts_pod(sts, 1, new_rev), sts_pod(sts, 2, new_rev)]
    assert plan_statefulset(sts, done, new_rev).delete == []  # ordinal 0 is below the partition
    on_delete = sts_obj(updateStrategy={"type": "OnDelete"})
    assert plan_statefulset(on_delete, old, update_revision(on_delete)).delete == []


def test_sts_status_revisions() -> None:
    sts = sts_obj()
    sts["status"] = {"currentRevision": "db-old"}
    rev = update_revision(sts)
    st = compute_status(sts, [sts_pod(sts, 0, "db-old"), sts_pod(sts, 1, rev)], rev, NOW)
    assert st["currentRevision"] == "db-old" and st["updatedReplicas"] == 1 and st["currentReplicas"] == 1
    st = compute_status(sts, [sts_pod(sts, i, rev) for i in range(3)], rev, NOW)
    assert st["currentRevision"] == rev and st["currentReplicas"] == 3 and st["readyReplicas"] == 3


def test_sts_reconcile_creates_claim_then_pod_zero() -> None:
    async def scenario() -> None:
        c, client, recorder = owner_controller(StatefulSetController, sts_obj())
        await c.reconcile("ns/db")
        assert [(a[0], a[1], a[2]) for a in client.actions[:2]] == [
            ("create", "persistentvolumeclaims", "data-db-0"),
            ("create", "pods", "db-0"),
        ]
        assert client.actions[-1][1] == "statefulsets/status"
        assert "Normal SuccessfulCreate create Pod db-0 in StatefulSet db successful" in recorder.events

    run(scenario())


# -- DaemonSet ------------------------------------------------------------------------------------


def node(
    name: str, labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def ds_obj(**tspec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": "agent",
            "namespace": "ns",
            "uid": "uid-agent",
            "resourceVersion": "1",
            "generation": 1,
        },
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "i"}], **tspec},
            },
        },
        "status": {},
    }


def ds_pod(
    ds: dict[str, Any], name: str, node_name: str, revision: str, ready: bool = True
) -> dict[str, Any]:
    p = owned_pod(name, ds, node=node_name, phase="Running", ready=ready)
    p["metadata"]["labels"][REVISION_LABEL] = revision
    return p


def test_ds_eligibility_with_default_tolerations() -> None:
    spec = {"nodeSelector": {"role": "edge"}}
    assert node_should_run(spec, node("a", {"role": "edge"})) == (True, True)
    assert node_should_run(spec, node("b")) == (False, False)
    unreachable = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
    assert node_should_run({}, node("c", taints=[unreachable])) == (True, True)
    master = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    assert node_should_run({}, node("d", taints=[master])) == (False, True)
    evict = {"key": "dedicated", "value": "x", "effect": "NoExecute"}
    assert node_should_run({}, node("e", taints=[evict])) == (False, False)
    keys = {t["key"] for t in daemon_tolerations({})}
    assert "node.kubernetes.io/unschedulable" in keys and "node.kubernetes.io/network-unavailable" not in keys
    assert "node.kubernetes.io/network-unavailable" in {
        t["key"] for t in daemon_tolerations({"hostNetwork": True})
    }


def test_ds_plan_creates_on_missing_nodes_deletes_extra_and_misscheduled() -> None:
    ds = ds_obj(nodeSelector={"role": "edge"})
    rev = template_hash(ds)
    nodes = [node("a", {"role": "edge"}), node("b", {"role": "edge"}), node("c")]
    pods = [
        ds_pod(ds, "p1", "a", rev),
        ds_pod(ds, "p2", "a", rev),
        ds_pod(ds, "p3", "c", rev),
        ds_pod(ds, "p4", "gone", rev),
    ]
    pods[1]["metadata"]["creationTimestamp"] = "2030-01-01T00:00:00Z"  # the newer duplicate goes
    plan = plan_daemonset(ds, nodes, pods, NOW)
    assert plan.create_on == ["b"]
    assert sorted(p["metadata"]["name"] for p in plan.delete) == ["p2", "p3", "p4"]
    assert plan.status["desiredNumberScheduled"] == 2
    assert plan.status["currentNumberScheduled"] == 1 and plan.status["numberMisscheduled"] == 1


def test_ds_rolling_update_respects_max_unavailable() -> None:
    ds = ds_obj()
    nodes = [node(n) for n in "abc"]
    old = [ds_pod(ds, f"p-{n}", n, "old") for n in "abc"]
    plan = plan_daemonset(ds, nodes, old, NOW)
    assert len(plan.delete) == 1
    old[2]["status"]["conditions"] = []  # one already unavailable: replaced at once, nothing else
    plan = plan_daemonset(ds, nodes, old, NOW)
    assert [p["metadata"]["name"] for p in plan.delete] == ["p-c"]


def test_ds_reconcile_creates_pods_pinned_by_node_affinity() -> None:
    async def scenario() -> None:
        c, client, recorder = owner_controller(DaemonSetController, ds_obj())
        c.node_informer.store.add(node("n1"))
        await c.reconcile("ns/agent")
        create = [a for a in client.actions if a[0] == "create"]
        assert len(create) == 1
        pod = create[0][3]
        assert target_node(pod) == "n1" and not pod["spec"].get("nodeName")
        assert pod["metadata"]["labels"][REVISION_LABEL] == template_hash(ds_obj())
        assert client.actions[-1][1] == "daemonsets/status"

    run(scenario())


# -- node IPAM ------------------------------------------------------------------------------------


def test_cidr_set_allocates_in_order_skips_used_and_releases() -> None:
    s = CIDRSet("10.244.0.0/16", 24)
    assert s.occupy("10.244.0.0/24")
    assert not s.occupy("10.9.0.0/24")  # not ours
    assert s.allocate() == "10.244.1.0/24"
    assert s.allocate() == "10.244.2.0/24"
    s.release("10.244.1.0/24")
    assert s.allocate() == "10.244.1.0/24"
    small = CIDRSet("10.0.0.0/23", 24)
    assert [small.allocate(), small.allocate(), small.allocate()] == ["10.0.0.0/24", "10.0.1.0/24", None]


def test_ipam_repair_then_allocate_never_duplicates() -> None:
    async def scenario() -> None:
        client = FakeClient()
        ctx, _ = make_ctx(client)
        c = NodeIPAMController(ctx)
        have = node("old")
        have["spec"]["podCIDR"] = "10.244.0.0/24"
        c.node_informer.store.add(have)
        c.node_informer.store.add(node("new"))
        c.repair()
        await c.reconcile("new")
        await c.reconcile("old")
        patches = [a for a in client.actions if a[0] == "patch"]
        assert len(patches) == 1 and patches[0][2] == "new"
        assert patches[0][3]["spec"] == {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}

    run(scenario())


# -- hollow node pieces ---------------------------------------------------------------------------


def test_hollow_ip_pool_and_statuses() -> None:
    pool = IPPool("10.1.2.0/24")
    a = pool.take("a")
    assert a == "10.1.2.2" and pool.take("a") == a
    assert pool.take("b", prefer="10.1.2.50") == "10.1.2.50"
    pool.release("a")
    assert "10.1.2.2" not in pool.used
    pod = pod_obj("p", {})
    st = running_status(pod, "10.1.2.9", "10.255.0.2", "2024-01-01T00:00:00Z")
    assert st["phase"] == "Running" and st["podIP"] == "10.1.2.9"
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
    done = finished_status({**pod, "status": st}, 2)
    assert done["phase"] == "Failed"
    assert done["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 2


def test_statefulset_revision_does_not_move_when_status_gets_a_collision_count() -> None:
    from controllers.statefulset import update_revision

    sts = {
        "metadata": {"name": "db"},
        "spec": {
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c"}]}}
        },
    }
    before = update_revision(sts)
    sts["status"] = {"collisionCount": 0}
    assert update_revision(sts) == before
    sts["status"] = {"collisionCount": 1}
    assert update_revision(sts) != before
