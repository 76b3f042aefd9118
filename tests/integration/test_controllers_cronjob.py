"""The CronJob and PodGC controllers against a real etcd, API server and controller manager (no
kubelet: tests write pod status themselves).

A missed schedule is produced without waiting for the clock: ``status.lastScheduleTime`` is
written hours back, as a controller-manager outage would leave it, and the controller catches
up at once."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apimachinery.resources import kind_info
from testkit.api import create_namespace, event, get, items, merge_patch
from testkit.processes import APIServerProcess, EtcdProcess, Process, controller_manager, running
from testkit.wait import unique, wait_for

pytestmark = pytest.mark.integration

CRONJOBS = "/apis/batch/v1/namespaces/{ns}/cronjobs"
JOBS = "/apis/batch/v1/namespaces/{ns}/jobs"
PODS = "/api/v1/namespaces/{ns}/pods"
THRESHOLD = 3
CRON_JOBS_INFO = kind_info("batch/v1", "CronJob")


@pytest.fixture(scope="module")
def manager(apiserver: APIServerProcess) -> Iterator[Process]:
    cm = controller_manager(
        apiserver,
        *("--terminated-pod-gc-threshold", str(THRESHOLD)),
        *("--pod-gc-period", "0.5", "--pod-gc-quarantine", "1"),
    )
    with running(cm):
        yield cm


@pytest.fixture()
def ns(api: httpx.Client, manager: Process) -> str:
    return create_namespace(api)


def etcd_put(etcd: EtcdProcess, key: str, value: bytes) -> None:
    body = {"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(value).decode()}
    httpx.post(f"{etcd.url}/v3/kv/put", json=body, timeout=10).raise_for_status()


def etcd_get(etcd: EtcdProcess, key: str) -> bytes:
    body = {"key": base64.b64encode(key.encode()).decode()}
    resp = httpx.post(f"{etcd.url}/v3/kv/range", json=body, timeout=10)
    resp.raise_for_status()
    return base64.b64decode(resp.json()["kvs"][0]["value"])


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def cron_job(name: str, schedule: str = "* * * * *", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"cron": name}},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                        }
                    }
                },
            },
            **spec,
        },
    }


def set_last_schedule(api: httpx.Client, ns: str, name: str, when: float) -> None:
    """Write ``status.lastScheduleTime`` (read, change, write; again on a 409)."""
    for _ in range(20):
        cur = api.get(f"{CRONJOBS.format(ns=ns)}/{name}").json()
        cur.setdefault("status", {})["lastScheduleTime"] = stamp(when)
        r = api.put(f"{CRONJOBS.format(ns=ns)}/{name}/status", json=cur)
        if r.status_code != 409:
            assert r.status_code == 200, r.text
            return
    raise AssertionError("always 409")


def jobs_of(api: httpx.Client, ns: str, name: str) -> list[dict[str, Any]]:
    return [
        j
        for j in items(api, JOBS.format(ns=ns))
        if any(r.get("name") == name for r in j["metadata"].get("ownerReferences") or [])
    ]


def create(api: httpx.Client, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post(CRONJOBS.format(ns=ns), json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


# -- validation and defaults ------------------------------------------------------------------------


def test_validation_and_defaults(api: httpx.Client, ns: str) -> None:
    r = api.post(CRONJOBS.format(ns=ns), json=cron_job("bad", "every minute please"))
    assert r.status_code == 422, r.text
    causes = r.json()["details"]["causes"]
    assert [c["field"] for c in causes] == ["spec.schedule"]
    assert "expected exactly 5 fields, found 3" in causes[0]["message"]
    r = api.post(
        CRONJOBS.format(ns=ns), json=cron_job("bad", timeZone="Mars/Olympus", concurrencyPolicy="No")
    )
    assert r.status_code == 422, r.text
    fields = {c["field"] for c in r.json()["details"]["causes"]}
    assert fields == {"spec.timeZone", "spec.concurrencyPolicy"}
    r = api.post(CRONJOBS.format(ns=ns), json=cron_job("x" * 53))
    assert r.status_code == 422 and r.json()["details"]["causes"][0]["field"] == "metadata.name"

    spec = create(api, ns, cron_job("good", timeZone="Europe/Paris"))["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"]) == ("Allow", False)
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)


# -- missed schedules -------------------------------------------------------------------------------


def test_outage_catch_up_is_one_job_and_too_many_missed_event(api: httpx.Client, ns: str) -> None:
    name = unique("tick")
    create(api, ns, cron_job(name, timeZone="UTC"))
    set_last_schedule(api, ns, name, time.time() - 3 * 3600)  # 180 minutes missed
    jobs = wait_for(lambda: jobs_of(api, ns, name), timeout=20, what="the catch-up job")
    assert wait_for(lambda: event(api, ns, name, "TooManyMissedTimes"), what="TooManyMissedTimes")
    created = wait_for(lambda: event(api, ns, name, "SuccessfulCreate"), what="SuccessfulCreate")
    assert created["message"] == f"Created job {jobs[0]['metadata']['name']}"
    job = jobs[0]
    minute = int(job["metadata"]["name"].rsplit("-", 1)[1])
    assert abs(minute * 60 - time.time()) < 120
    assert job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == stamp(
        minute * 60
    )
    ref = job["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("CronJob", name, True)
    assert job["metadata"]["labels"]["cron"] == name
    status = wait_for(
        lambda: (s := get(api, f"{CRONJOBS.format(ns=ns)}/{name}")["status"]).get("active") and s,
        what="status.active",
    )
    assert [a["name"] for a in status["active"]] == [job["metadata"]["name"]]
    assert status["lastScheduleTime"] == stamp(minute * 60)
    # Only the most recent missed time ran: one Job, not 180.
    assert len(jobs_of(api, ns, name)) == 1


def test_forbid_skips_while_a_job_runs(api: httpx.Client, ns: str) -> None:
    name = unique("forbid")
    owner = create(api, ns, cron_job(name, "0 0 1 1 *", concurrencyPolicy="Forbid"))
    # A run of this CronJob that never finishes (no kubelet here), listed in status.active.
    running = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{name}-1",
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": name,
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": owner["spec"]["jobTemplate"]["spec"],
    }
    r = api.post(JOBS.format(ns=ns), json=running)
    assert r.status_code == 201, r.text
    ref = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "namespace": ns,
        "name": f"{name}-1",
        "uid": r.json()["metadata"]["uid"],
    }
    for _ in range(20):
        cur = api.get(f"{CRONJOBS.format(ns=ns)}/{name}").json()
        # a new year's run is due: the last one recorded was two years ago
        cur["status"] = {"active": [ref], "lastScheduleTime": stamp(time.time() - 2 * 366 * 86400)}
        put = api.put(f"{CRONJOBS.format(ns=ns)}/{name}/status", json=cur)
        if put.status_code != 409:
            assert put.status_code == 200, put.text
            break
    found = wait_for(lambda: event(api, ns, name, "JobAlreadyActive"), timeout=20, what="JobAlreadyActive")
    assert (
        found["message"]
        == "Not starting job because prior execution is running and concurrency policy is Forbid"
    )
    assert [j["metadata"]["name"] for j in jobs_of(api, ns, name)] == [f"{name}-1"]


def test_completed_job_recorded_and_history_limit(api: httpx.Client, ns: str) -> None:
    name = unique("hist")
    create(api, ns, cron_job(name, successfulJobsHistoryLimit=0))
    set_last_schedule(api, ns, name, time.time() - 600)
    job = wait_for(lambda: jobs_of(api, ns, name), timeout=20, what="the job")[0]
    pod = wait_for(
        lambda: items(
            api, PODS.format(ns=ns), labelSelector=f"batch.kubernetes.io/job-name={job['metadata']['name']}"
        ),
        what="the job's pod",
    )[0]
    pod["status"] = {"phase": "Succeeded"}
    r = api.put(f"{PODS.format(ns=ns)}/{pod['metadata']['name']}/status", json=pod)
    assert r.status_code == 200, r.text
    # Complete -> SawCompletedJob, lastSuccessfulTime, then deleted by the history limit of 0.
    wait_for(lambda: event(api, ns, name, "SawCompletedJob"), timeout=30, what="SawCompletedJob")
    wait_for(lambda: not jobs_of(api, ns, name), timeout=20, what="the job deleted")
    deleted = wait_for(lambda: event(api, ns, name, "SuccessfulDelete"), what="SuccessfulDelete")
    assert deleted["message"] == f"Deleted job {job['metadata']['name']}"
    status = get(api, f"{CRONJOBS.format(ns=ns)}/{name}")["status"]
    assert status.get("lastSuccessfulTime") and not status.get("active")


def test_bad_stored_cron_job_is_an_event_not_a_crash(
    api: httpx.Client, ns: str, etcd: EtcdProcess, manager: Process
) -> None:
    """A schedule stored past validation (by an older server) is reported with an Event; the
    controller goes on serving the other CronJobs."""
    name = unique("stale")
    create(api, ns, cron_job(name, "0 0 1 1 *"))  # nothing due before the schedule is spoilt
    key = CRON_JOBS_INFO.key(ns, name)
    stored = json.loads(etcd_get(etcd, key))
    stored["spec"]["schedule"] = "61 * * * *"
    stored.setdefault("status", {})["lastScheduleTime"] = stamp(time.time() - 600)  # one is due
    etcd_put(etcd, key, json.dumps(stored).encode())
    found = wait_for(
        lambda: event(api, ns, name, "UnparseableSchedule"), timeout=20, what="UnparseableSchedule"
    )
    assert found["message"] == 'unparseable schedule: "61 * * * *" : end of range (61) above maximum (59): 61'
    other = unique("after")
    create(api, ns, cron_job(other))
    set_last_schedule(api, ns, other, time.time() - 600)
    wait_for(lambda: jobs_of(api, ns, other), timeout=20, what="a job for the next CronJob")
    assert manager.proc is not None and manager.proc.poll() is None
    assert not jobs_of(api, ns, name)


# -- PodGC ------------------------------------------------------------------------------------------


def test_podgc_deletes_pods_of_a_deleted_node(api: httpx.Client, ns: str) -> None:
    node = unique("gone-node")
    assert (
        api.post(
            "/api/v1/nodes", json={"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
        ).status_code
        == 201
    )
    names = ["orphan-a", "orphan-b"]
    for pod_name in names:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                **({"finalizers": ["test.minik.io/keep"]} if pod_name == "orphan-a" else {}),
            },
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox"}]},
        }
        assert api.post(PODS.format(ns=ns), json=body).status_code == 201
    try:
        assert api.delete(f"/api/v1/nodes/{node}").status_code == 200
        # orphan-b is force-deleted; orphan-a stays (its finalizer) showing what PodGC wrote.
        wait_for(
            lambda: get(api, f"{PODS.format(ns=ns)}/orphan-b") is None, timeout=30, what="orphan-b deleted"
        )
        kept = wait_for(
            lambda: (
                (p := get(api, f"{PODS.format(ns=ns)}/orphan-a"))
                and p["metadata"].get("deletionTimestamp")
                and p
            ),
            timeout=30,
            what="orphan-a deleted",
        )
        assert kept["status"]["phase"] == "Failed"
        cond = {c["type"]: c for c in kept["status"]["conditions"]}["DisruptionTarget"]
        assert (cond["status"], cond["reason"], cond["message"]) == (
            "True",
            "DeletionByPodGC",
            "PodGC: node no longer exists",
        )
    finally:
        merge_patch(api, f"{PODS.format(ns=ns)}/orphan-a", {"metadata": {"finalizers": None}})


def test_podgc_terminated_pods_over_threshold(api: httpx.Client, ns: str) -> None:
    names = [f"done-{i}" for i in range(THRESHOLD + 2)]
    for pod_name in names:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod_name},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        }
        created = api.post(PODS.format(ns=ns), json=body)
        assert created.status_code == 201, created.text
        pod = created.json()
        pod["status"] = {"phase": "Succeeded"}
        r = api.put(f"{PODS.format(ns=ns)}/{pod_name}/status", json=pod)
        assert r.status_code == 200, r.text
        time.sleep(1.05)  # distinct creation seconds, so "oldest first" is observable

    def terminated_everywhere() -> list[dict[str, Any]]:
        return [p for p in items(api, "/api/v1/pods") if p["status"].get("phase") in ("Succeeded", "Failed")]

    wait_for(
        lambda: len(terminated_everywhere()) <= THRESHOLD, timeout=30, what="terminated pods at the threshold"
    )
    left = sorted(p["metadata"]["name"] for p in items(api, PODS.format(ns=ns)))
    assert left == names[-THRESHOLD:]
