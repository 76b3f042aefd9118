"""CronJob schedules and decisions (missed times, time zones, deadlines) and PodGC decisions, with a
fixed clock; one reconcile of each controller over the fake client of test_controllers_reconcile."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apimachinery.cronschedule import ScheduleError, parse_schedule, schedule_field_errors
from apimachinery.timefmt import rfc3339
from controllers.cronjob import (
    SCHEDULED_TIMESTAMP,
    CronJobController,
    job_from_template,
    job_name,
    jobs_to_remove,
    most_recent_schedule_time,
    next_schedule_delay,
)
from controllers.podgc import PodGCController, eviction_order, failed_status, terminated_to_delete

from .test_controllers_reconcile import FakeClient, make_ctx, run

pytestmark = pytest.mark.unit


def ts(text: str) -> float:
    """POSIX seconds of a UTC time."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def reasons(recorder: Any) -> list[str]:
    return [e.split(" ", 2)[1] for e in recorder.events]


EVERY_MINUTE = parse_schedule("* * * * *", "UTC")
HOURLY = parse_schedule("0 * * * *", "UTC")


# -- parsing ----------------------------------------------------------------------------------------


def test_parse_accepts_kubernetes_syntax() -> None:
    start = ts("2024-01-01T00:00:00")
    assert parse_schedule("@hourly", "UTC").next(start) == ts("2024-01-01T01:00:00")
    assert parse_schedule("@weekly", "UTC").next(start) == ts("2024-01-07T00:00:00")  # a Sunday
    assert parse_schedule("0 9 ? * MON-FRI", "UTC").next(start) == ts("2024-01-01T09:00:00")
    assert parse_schedule("*/15 * * JAN *", "UTC").next(start) == ts("2024-01-01T00:15:00")
    assert parse_schedule("@every 90s", "UTC").next(start) == start + 90
    assert parse_schedule("@every 1h30m", "UTC").next(start) == start + 5400


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
        ("61 * * * *", "end of range (61) above maximum (59): 61"),
        ("0 0 L * *", 'failed to parse int from L: strconv.Atoi: parsing "L": invalid syntax'),
        ("0 0 * * 7", "end of range (7) above maximum (6): 7"),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
    ],
)
def test_parse_rejects_what_kubernetes_rejects(schedule: str, message: str) -> None:
    with pytest.raises(ScheduleError) as exc:
        parse_schedule(schedule, "UTC")
    assert str(exc.value) == message


def test_schedule_field_errors_tz_prefix() -> None:
    assert schedule_field_errors("TZ=UTC 0 * * * *", None) == [
        "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
    ]
    assert schedule_field_errors("0 * * * *", "Europe/Paris") == []
    # A stored schedule with a prefix still runs in that zone.
    sched = parse_schedule("CRON_TZ=Asia/Tokyo 0 9 * * *")
    assert sched.next(ts("2024-01-01T00:00:00")) == ts("2024-01-02T00:00:00")  # 09:00 JST


def test_time_zone_and_dst() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone Mars/Olympus"):
        parse_schedule("0 * * * *", "Mars/Olympus")
    ny = parse_schedule("30 2 * * *", "America/New_York")
    # 02:30 does not exist on the spring-forward day: the run moves to 03:00 local (07:00 UTC).
    assert ny.next(ts("2024-03-10T05:00:00")) == ts("2024-03-10T07:00:00")
    paris = parse_schedule("0 9 * * *", "Europe/Paris")
    assert paris.next(ts("2024-07-01T00:00:00")) == ts("2024-07-01T07:00:00")  # CEST, UTC+2
    assert paris.next(ts("2024-01-01T00:00:00")) == ts("2024-01-01T08:00:00")  # CET, UTC+1


# -- missed times -----------------------------------------------------------------------------------


def test_no_time_due_yet() -> None:
    created = ts("2024-01-01T10:00:10")
    earliest, recent, missed = most_recent_schedule_time(created, None, None, created + 20, EVERY_MINUTE)
    assert (earliest, recent, missed) == (created, None, "none")
    assert next_schedule_delay(created, None, created + 20, EVERY_MINUTE) == pytest.approx(30.1)


def test_one_due() -> None:
    created = ts("2024-01-01T10:00:10")
    now = ts("2024-01-01T10:01:05")
    _, recent, missed = most_recent_schedule_time(created, None, None, now, EVERY_MINUTE)
    assert recent == ts("2024-01-01T10:01:00") and missed == "none"


def test_outage_catches_up_once_with_the_most_recent_time() -> None:
    last = ts("2024-01-01T10:00:00")
    now = ts("2024-01-01T15:30:00")  # 5 hours missed
    _, recent, missed = most_recent_schedule_time(0.0, last, None, now, HOURLY)
    assert recent == ts("2024-01-01T15:00:00") and missed == "few"
    assert next_schedule_delay(0.0, recent, now, HOURLY) == pytest.approx(1800.1)


def test_more_than_100_missed() -> None:
    last = ts("2024-01-01T00:00:00")
    now = last + 101 * 60 + 30
    _, recent, missed = most_recent_schedule_time(0.0, last, None, now, EVERY_MINUTE)
    assert missed == "many" and recent == last + 101 * 60


def test_starting_deadline_limits_the_look_back() -> None:
    last = ts("2024-01-01T00:00:00")
    now = last + 1000 * 60 + 30
    _, recent, missed = most_recent_schedule_time(0.0, last, 200, now, EVERY_MINUTE)
    assert missed == "few" and recent == last + 1000 * 60  # only the last 200 s were looked at
    # Hourly with a 10 minute deadline, 30 minutes past the hour: nothing in the window.
    _, recent, _ = most_recent_schedule_time(0.0, last, 600, last + 1800, HOURLY)
    assert recent is None


def test_irregular_schedule_most_recent() -> None:
    sched = parse_schedule("30 6-16/4 * * 1-5", "UTC")
    last = ts("2024-01-05T06:30:00")  # Friday
    now = ts("2024-01-09T12:00:00")  # Tuesday
    _, recent, _ = most_recent_schedule_time(0.0, last, None, now, sched)
    assert recent == ts("2024-01-09T10:30:00")


# -- the Job a CronJob creates ----------------------------------------------------------------------


def cron_job(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": "tick",
            "namespace": "ns",
            "uid": "uid-tick",
            "resourceVersion": "1",
            "creationTimestamp": rfc3339(ts("2024-01-01T09:00:30")),
        },
        "spec": {
            "schedule": "* * * * *",
            "timeZone": "UTC",
            "concurrencyPolicy": "Allow",
            "suspend": False,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": {"app": "tick"}, "annotations": {"note": "x"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c"}]}}},
            },
            **spec,
        },
        "status": {},
    }


def test_job_from_template() -> None:
    scheduled = ts("2024-01-01T10:00:00")
    job = job_from_template(cron_job(timeZone="Europe/Paris"), scheduled)
    assert job["metadata"]["name"] == job_name(cron_job(), scheduled) == f"tick-{int(scheduled) // 60}"
    assert job["metadata"]["annotations"] == {"note": "x", SCHEDULED_TIMESTAMP: "2024-01-01T11:00:00+01:00"}
    assert job["metadata"]["labels"] == {"app": "tick"}
    ref = job["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("CronJob", "tick", "uid-tick", True)
    utc = job_from_template(cron_job(), scheduled)
    assert utc["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2024-01-01T10:00:00Z"


def finished_job(name: str, cond: str, start: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "status": {"startTime": start, "conditions": [{"type": cond, "status": "True"}]},
    }


def test_jobs_to_remove_oldest_first() -> None:
    jobs = [finished_job(f"j{i}", "Complete", f"2024-01-01T10:0{i}:00Z") for i in (3, 1, 4, 2)]
    assert [j["metadata"]["name"] for j in jobs_to_remove(jobs, 2)] == ["j1", "j2"]
    assert jobs_to_remove(jobs, 4) == []


# -- one reconcile ----------------------------------------------------------------------------------


def cron_controller(now: float, cj: dict[str, Any], jobs: list[dict[str, Any]] = ()) -> tuple[Any, Any, Any]:  # type: ignore[assignment]
    client = FakeClient()
    ctx, recorder = make_ctx(client)
    ctx.clock = lambda: now
    c = CronJobController(ctx)
    c.cron_informer.store.add(cj)
    for j in jobs:
        c.job_informer.store.add(j)
    return c, client, recorder


def test_reconcile_creates_the_job_and_requeues_for_the_next_minute() -> None:
    now = ts("2024-01-01T10:00:02")
    c, client, recorder = cron_controller(now, cron_job())
    run(c.reconcile("ns/tick"))
    name = f"tick-{int(ts('2024-01-01T10:00:00')) // 60}"
    assert client.verbs() == [("create", "jobs"), ("update", "cronjobs/status")]
    status = client.actions[1][3]["status"]
    assert status["lastScheduleTime"] == "2024-01-01T10:00:00Z"
    assert [r["name"] for r in status["active"]] == [name]
    assert f"Normal SuccessfulCreate Created job {name}" in recorder.events
    assert c.queue._waiting["ns/tick"] == pytest.approx(c.queue._clock.now() + 58.1, abs=1)


def test_reconcile_forbid_skips_while_one_runs() -> None:
    now = ts("2024-01-01T10:01:01")
    cj = cron_job(concurrencyPolicy="Forbid")
    running = {
        "metadata": {
            "name": "tick-1",
            "namespace": "ns",
            "uid": "uid-run",
            "ownerReferences": [{"kind": "CronJob", "name": "tick", "uid": "uid-tick", "controller": True}],
        },
        "status": {},
    }
    cj["status"] = {
        "lastScheduleTime": "2024-01-01T10:00:00Z",
        "active": [{"name": "tick-1", "namespace": "ns", "uid": "uid-run"}],
    }
    c, client, recorder = cron_controller(now, cj, [running])
    run(c.reconcile("ns/tick"))
    assert client.verbs() == []
    assert "JobAlreadyActive" in reasons(recorder)


def test_reconcile_too_many_missed_and_bad_schedule_are_events() -> None:
    now = ts("2024-01-01T12:00:30")
    cj = cron_job()
    cj["status"] = {"lastScheduleTime": "2024-01-01T09:00:00Z"}
    c, client, recorder = cron_controller(now, cj)
    run(c.reconcile("ns/tick"))
    assert "TooManyMissedTimes" in reasons(recorder)
    assert [a[2] for a in client.actions if a[0] == "create"] == [
        f"tick-{int(ts('2024-01-01T12:00:00')) // 60}"
    ]

    c, client, recorder = cron_controller(now, cron_job(schedule="not a schedule"))
    run(c.reconcile("ns/tick"))
    assert client.verbs() == []
    assert recorder.events == [
        'Warning UnparseableSchedule unparseable schedule: "not a schedule" : '
        "expected exactly 5 fields, found 3: [not a schedule]"
    ]


def test_reconcile_deadline_missed() -> None:
    now = ts("2024-01-01T10:00:50")
    c, client, recorder = cron_controller(now, cron_job(startingDeadlineSeconds=10))
    run(c.reconcile("ns/tick"))
    assert client.verbs() == []
    # The look-back starts at now - 10 s, after 10:00:00, so nothing is due (no MissSchedule either).
    assert recorder.events == []


def test_reconcile_history_limit_and_completed_job() -> None:
    now = ts("2024-01-01T10:00:30")
    cj = cron_job(successfulJobsHistoryLimit=1)
    jobs = []
    for i in range(3):
        j = finished_job(f"tick-{i}", "Complete", f"2024-01-01T09:5{i}:00Z")
        j["status"]["completionTime"] = f"2024-01-01T09:5{i}:30Z"
        j["metadata"]["ownerReferences"] = [
            {"kind": "CronJob", "name": "tick", "uid": "uid-tick", "controller": True}
        ]
        jobs.append(j)
    cj["status"] = {
        "lastScheduleTime": "2024-01-01T10:00:00Z",
        "active": [{"name": "tick-2", "uid": "uid-tick-2", "namespace": "ns"}],
    }
    c, client, recorder = cron_controller(now, cj, jobs)
    run(c.reconcile("ns/tick"))
    assert [a[2] for a in client.actions if a[0] == "delete"] == ["tick-0", "tick-1"]
    status = client.actions[-1][3]["status"]
    assert "active" not in status and status["lastSuccessfulTime"] == "2024-01-01T09:52:30Z"
    assert reasons(recorder) == ["SawCompletedJob", "SuccessfulDelete", "SuccessfulDelete"]


# -- PodGC ------------------------------------------------------------------------------------------


def pod(name: str, phase: str, created: str, node: str = "n1", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "creationTimestamp": created},
        "spec": {"nodeName": node},
        "status": {"phase": phase, **extra},
    }


def test_terminated_over_threshold_evicted_then_oldest() -> None:
    pods = [
        pod("new", "Succeeded", "2024-01-01T10:03:00Z"),
        pod("old", "Failed", "2024-01-01T10:01:00Z"),
        pod("evicted", "Failed", "2024-01-01T10:05:00Z", reason="Evicted"),
        pod("running", "Running", "2024-01-01T10:00:00Z"),
        pod("mid", "Succeeded", "2024-01-01T10:02:00Z"),
    ]
    assert [p["metadata"]["name"] for p in terminated_to_delete(pods, 2)] == ["evicted", "old"]
    assert terminated_to_delete(pods, 0) == []
    assert [p["metadata"]["name"] for p in eviction_order(pods)][0] == "evicted"


def test_failed_status_sets_disruption_target() -> None:
    cond = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC"}
    status = failed_status(pod("p", "Running", "2024-01-01T10:00:00Z", conditions=[{"type": "Ready"}]), cond)
    assert status is not None and status["phase"] == "Failed"
    assert [c["type"] for c in status["conditions"]] == ["Ready", "DisruptionTarget"]
    assert failed_status(pod("p", "Succeeded", "2024-01-01T10:00:00Z"), cond) is None


def test_podgc_orphans_after_quarantine_get() -> None:
    client = FakeClient()
    ctx, _ = make_ctx(client)
    ctx.options.extra["pod_gc_quarantine"] = 5.0
    c = PodGCController(ctx)
    c.pod_informer.store.add(pod("a", "Running", "2024-01-01T10:00:00Z", node="gone"))
    c.pod_informer.store.add(pod("b", "Running", "2024-01-01T10:00:00Z", node="n1"))
    run(c.gc())
    assert "gone" in c.queue._waiting and "n1" in c.queue._waiting  # neither node is cached
    client.objects[("nodes", "n1")] = {"metadata": {"name": "n1"}}
    run(c.reconcile("n1"))
    run(c.reconcile("gone"))
    assert [(a[0], a[1], a[2]) for a in client.actions] == [
        ("get", "nodes", "n1"),
        ("get", "nodes", "gone"),
        ("patch", "pods", "a"),
        ("delete", "pods", "a"),
    ]
    patch = client.actions[2][3]
    assert patch["status"]["phase"] == "Failed"
    assert patch["status"]["conditions"][-1]["reason"] == "DeletionByPodGC"
    assert client.actions[3][3]["grace_period_seconds"] == 0


def test_reconcile_suspended_does_nothing() -> None:
    now = ts("2024-01-01T10:00:02")
    c, client, recorder = cron_controller(now, cron_job(suspend=True))
    run(c.reconcile("ns/tick"))
    assert client.verbs() == [] and recorder.events == []
    assert "ns/tick" not in c.queue._waiting  # woken by the update that resumes it, not polled


def test_reconcile_replace_deletes_the_running_job_first() -> None:
    now = ts("2024-01-01T10:01:01")
    cj = cron_job(concurrencyPolicy="Replace")
    ref = {"kind": "CronJob", "name": "tick", "uid": "uid-tick", "controller": True}
    running = {
        "metadata": {"name": "tick-old", "namespace": "ns", "uid": "uid-old", "ownerReferences": [ref]}
    }
    cj["status"] = {
        "lastScheduleTime": "2024-01-01T10:00:00Z",
        "active": [{"name": "tick-old", "namespace": "ns", "uid": "uid-old"}],
    }
    c, client, recorder = cron_controller(now, cj, [running])
    client.objects[("jobs", "tick-old")] = running
    run(c.reconcile("ns/tick"))
    assert client.verbs() == [
        ("get", "jobs"),
        ("delete", "jobs"),
        ("create", "jobs"),
        ("update", "cronjobs/status"),
    ]
    assert client.actions[1][3]["propagation_policy"] == "Background"
    assert [r["name"] for r in client.actions[3][3]["status"]["active"]] == [client.actions[2][2]]
    assert reasons(recorder) == ["SuccessfulDelete", "SuccessfulCreate"]
