"""The CronJob controller: create a Job at each time of ``spec.schedule``, as kube-controller-
manager's CronJob controller (v2) does.

``reconcile(namespace/name)`` reads the CronJob and the Jobs it controls from the caches, then:

1. **status.active**: a finished Job leaves the list (``SawCompletedJob``), an unfinished Job it
   controls that is not listed is reported (``UnexpectedJob``), a listed Job that is gone (checked
   with a GET, not just the cache) leaves it (``MissingJob``); ``status.lastSuccessfulTime`` is
   the latest ``completionTime`` of a succeeded Job;
2. nothing more while the CronJob is being deleted or ``suspend``\\ ed, or when its ``timeZone``
   or schedule cannot be used (a Warning Event: ``UnknownTimeZone``, ``UnparseableSchedule``,
   ``InvalidSchedule``; never a crash, never a retry loop);
3. the **most recent missed time** since ``status.lastScheduleTime`` (else the creation time), or
   since now − ``startingDeadlineSeconds`` when that is later: at most one Job for it (the older
   missed times are dropped, as in Kubernetes), ``TooManyMissedTimes`` when more than 100 were
   missed, ``MissSchedule`` when it is older than the deadline allows;
4. ``concurrencyPolicy``: Forbid skips it while a Job is active (``JobAlreadyActive``), Replace
   deletes the active Jobs first (``SuccessfulDelete``);
5. the Job ``NAME-<scheduled minute since the epoch>`` (the name is the lock against creating it
   twice), with the CronJob as controller owner, the template's labels and annotations and
   ``batch.kubernetes.io/cronjob-scheduled-timestamp``; ``SuccessfulCreate``;
6. finished Jobs beyond ``successfulJobsHistoryLimit``/``failedJobsHistoryLimit`` are deleted,
   oldest start first (``SuccessfulDelete``);
7. the key is requeued for the next schedule time (plus 100 ms), not polled.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.cronschedule import Schedule, ScheduleError, load_zone, parse_schedule
from apimachinery.events import NORMAL, WARNING
from apimachinery.resources import kind_info

from .base import Controller, ControllerContext
from .util import (
    CONTROLLER_UID_INDEX,
    controller_ref,
    controller_uid_index,
    deep_copy,
    ensure_index,
    is_deleting,
    meta,
    name_of,
    namespace_of,
    new_controller_ref,
    parse_time,
    rfc3339,
    uid_of,
)

log = logging.getLogger(__name__)

CRON_JOBS = kind_info("batch/v1", "CronJob")
JOBS = kind_info("batch/v1", "Job")

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
NEXT_SCHEDULE_DELTA = 0.1  # Kubernetes' nextScheduleDelta
TOO_MANY_MISSED = 100

Missed = Literal["none", "few", "many"]


# -- pure decisions ---------------------------------------------------------------------------------


def most_recent_schedule_time(
    created: float,
    last_schedule: float | None,
    starting_deadline: int | None,
    now: float,
    schedule: Schedule,
) -> tuple[float, float | None, Missed]:
    """(earliest time considered, the most recent schedule time ≤ now after it or None, how many
    were missed) — Kubernetes' ``mostRecentScheduleTime``.

    Raises :class:`ScheduleError` when two consecutive times are less than a second apart.
    """
    earliest = last_schedule if last_schedule is not None else created
    if starting_deadline is not None:
        earliest = max(earliest, now - starting_deadline)
    t1 = schedule.next(earliest)
    if now < t1:
        return earliest, None, "none"
    t2 = schedule.next(t1)
    if now < t2:
        return earliest, t1, "none"
    between = round(t2 - t1)
    if between < 1:
        raise ScheduleError("time difference between two schedules is less than 1 second")
    missed_count = int(now - t1) // between + 1
    most_recent: float | None = None
    # Start one interval before the estimate so irregular schedules land right, then walk forward.
    t = schedule.next(t1 + (missed_count - 2) * between)
    while t <= now:
        most_recent = t
        t = schedule.next(t)
    missed: Missed = "many" if missed_count > TOO_MANY_MISSED else "few"
    return earliest, most_recent, missed


def next_schedule_delay(created: float, last_schedule: float | None, now: float, schedule: Schedule) -> float:
    """Seconds until the key should be synced again (``nextScheduleTimeDuration``)."""
    try:
        earliest, recent, missed = most_recent_schedule_time(created, last_schedule, None, now, schedule)
    except ScheduleError:
        recent, earliest, missed = now, now, "none"
    if recent is None:
        recent = earliest if missed == "none" else now
    return schedule.next(recent) + NEXT_SCHEDULE_DELTA - now


def job_name(cron_job: Obj, scheduled: float) -> str:
    return f"{name_of(cron_job)}-{int(scheduled) // 60}"


def go_rfc3339(when: float, zone: tzinfo) -> str:
    """Go's ``time.RFC3339`` of ``when`` in ``zone`` (``Z`` for UTC, else ``+hh:mm``)."""
    dt = datetime.fromtimestamp(int(when), tz=UTC).astimezone(zone)
    text = dt.isoformat()
    return text[:-6] + "Z" if dt.utcoffset() is not None and not dt.utcoffset() else text


def job_from_template(cron_job: Obj, scheduled: float) -> Obj:
    """The Job for ``scheduled`` (``getJobFromTemplate2``)."""
    spec = cron_job.get("spec") or {}
    template = spec.get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    zone_name = spec.get("timeZone")
    try:
        zone = load_zone(zone_name) if zone_name else UTC
    except ScheduleError:
        zone = UTC
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP] = go_rfc3339(scheduled, zone)
    metadata: dict[str, Any] = {
        "name": job_name(cron_job, scheduled),
        "namespace": namespace_of(cron_job),
        "annotations": annotations,
        "ownerReferences": [new_controller_ref(cron_job, "batch/v1", "CronJob")],
    }
    if tmeta.get("labels"):
        metadata["labels"] = dict(tmeta["labels"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": deep_copy(template.get("spec") or {}),
    }


def finished_condition(job: Obj) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def job_ref(job: Obj) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "namespace": namespace_of(job),
        "name": name_of(job),
        "uid": uid_of(job),
        "resourceVersion": str(meta(job).get("resourceVersion") or ""),
    }


def jobs_to_remove(jobs: list[Obj], limit: int) -> list[Obj]:
    """The oldest (by ``status.startTime``, unstarted last, then name) beyond ``limit``."""
    count = len(jobs) - max(0, limit)
    if count <= 0:
        return []

    def order(job: Obj) -> tuple[int, float, str]:
        start = parse_time((job.get("status") or {}).get("startTime"))
        return (1 if start is None else 0, start or 0.0, name_of(job))

    return sorted(jobs, key=order)[:count]


# -- the controller ---------------------------------------------------------------------------------


class CronJobController(Controller):
    name = "cronjob-controller"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.cron_informer = self.informer(CRON_JOBS, on_change=self.enqueue)
        self.job_informer = self.informer(JOBS, on_change=self._job_changed, on_delete=self._job_changed)
        ensure_index(self.job_informer.store, CONTROLLER_UID_INDEX, controller_uid_index)

    def _job_changed(self, job: Obj) -> None:
        ref = controller_ref(job)
        if ref is None or ref.get("kind") != "CronJob":
            return
        key = f"{namespace_of(job)}/{ref.get('name')}"
        cron_job = self.cron_informer.store.get(key)
        if cron_job is not None and uid_of(cron_job) == ref.get("uid"):
            self.enqueue(key)

    async def reconcile(self, key: str) -> None:
        cron_job = self.cron_informer.store.get(key)
        if cron_job is None:
            return
        jobs = self.job_informer.store.by_index(CONTROLLER_UID_INDEX, uid_of(cron_job))
        work = deep_copy(cron_job)
        work.setdefault("status", {})
        requeue, changed = await self._sync(work, jobs)
        if not is_deleting(work) and await self._cleanup_finished(work, jobs):
            changed = True
        if changed:
            status = work["status"]
            if not status.get("active"):
                status.pop("active", None)
            try:
                await self.write_status(CRON_JOBS, cron_job, status)
            except errors.NotFound:
                return
        if requeue is not None:
            self.queue.add_after(key, max(0.05, requeue))

    async def _sync(self, cj: Obj, jobs: list[Obj]) -> tuple[float | None, bool]:
        """``syncCronJob`` on ``cj`` (a copy whose status is edited in place): (requeue delay or
        None, whether the status changed)."""
        now = self.ctx.clock()
        status = cj["status"]
        spec = cj.get("spec") or {}
        changed = False
        active: list[dict[str, Any]] = list(status.get("active") or [])
        children = {uid_of(j) for j in jobs}

        def drop(uid: str) -> None:
            nonlocal active
            active = [r for r in active if r.get("uid") != uid]
            status["active"] = active

        for job in jobs:
            listed = any(r.get("uid") == uid_of(job) for r in active)
            finished = finished_condition(job)
            if not listed and finished is None:
                fresh = await self._fresh(cj)
                if fresh is not None and any(
                    r.get("uid") == uid_of(job) for r in (fresh.get("status") or {}).get("active") or []
                ):
                    active = list((fresh.get("status") or {}).get("active") or [])
                    status["active"] = active
                    continue
                self.recorder.event(
                    cj,
                    WARNING,
                    "UnexpectedJob",
                    f"Saw a job that the controller did not create or forgot: {name_of(job)}",
                )
            elif finished is not None:
                if listed:
                    drop(uid_of(job))
                    self.recorder.event(
                        cj,
                        NORMAL,
                        "SawCompletedJob",
                        f"Saw completed job: {name_of(job)}, condition: {finished}",
                    )
                    changed = True
                if finished == "Complete":
                    completed = (job.get("status") or {}).get("completionTime")
                    last = parse_time(status.get("lastSuccessfulTime"))
                    done = parse_time(completed)
                    if completed and (last is None or (done is not None and done > last)):
                        status["lastSuccessfulTime"] = completed
                        changed = True

        for ref in list(active):
            if ref.get("uid") in children:
                continue
            try:
                await self.client.get(JOBS, str(ref.get("name")), ref.get("namespace") or namespace_of(cj))
            except errors.NotFound:
                self.recorder.event(cj, NORMAL, "MissingJob", f"Active job went missing: {ref.get('name')}")
                drop(str(ref.get("uid")))
                changed = True

        if is_deleting(cj):
            return None, changed
        zone_name = spec.get("timeZone")
        if zone_name is not None:
            try:
                load_zone(zone_name)
            except ScheduleError as exc:
                self.recorder.event(cj, WARNING, "UnknownTimeZone", f'invalid timeZone: "{zone_name}": {exc}')
                return None, changed
        if spec.get("suspend"):
            return None, changed

        text = str(spec.get("schedule") or "")
        if "TZ" in text:
            self.recorder.event(
                cj,
                WARNING,
                "UnsupportedSchedule",
                f'CRON_TZ or TZ used in schedule "{text}" is not officially supported, see '
                "https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
            )
        try:
            sched = parse_schedule(text, None if "TZ" in text else zone_name)
        except ScheduleError as exc:
            self.recorder.event(cj, WARNING, "UnparseableSchedule", f'unparseable schedule: "{text}" : {exc}')
            return None, changed

        created = parse_time(meta(cj).get("creationTimestamp")) or now
        last = parse_time(status.get("lastScheduleTime"))
        deadline = spec.get("startingDeadlineSeconds")

        def again() -> float:
            return next_schedule_delay(created, parse_time(status.get("lastScheduleTime")), now, sched)

        try:
            _, scheduled, missed = most_recent_schedule_time(
                created, last, int(deadline) if deadline is not None else None, now, sched
            )
        except ScheduleError as exc:
            self.recorder.event(cj, WARNING, "InvalidSchedule", f"invalid schedule: {text} : {exc}")
            return None, changed
        if scheduled is None:
            return again(), changed
        if missed == "many":
            self.recorder.event(
                cj,
                WARNING,
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
            )
            log.info("%s/%s: more than %d missed start times", namespace_of(cj), name_of(cj), TOO_MANY_MISSED)
        if deadline is not None and scheduled + int(deadline) < now:
            stamp = datetime.fromtimestamp(scheduled, tz=UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
            self.recorder.event(cj, WARNING, "MissSchedule", f"Missed scheduled time to start a job: {stamp}")
            return again(), changed
        name = job_name(cj, scheduled)
        if any(r.get("name") == name for r in active) or last == scheduled:
            return again(), changed
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and active:
            self.recorder.event(
                cj,
                NORMAL,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            )
            return again(), changed
        if policy == "Replace":
            for ref in list(active):
                try:
                    job = await self.client.get(
                        JOBS, str(ref.get("name")), ref.get("namespace") or namespace_of(cj)
                    )
                except errors.StatusError as exc:
                    self.recorder.event(cj, WARNING, "FailedGet", f"Get job: {exc}")
                    raise
                if not await self._delete_job(cj, job):
                    raise RuntimeError(f"could not replace job {namespace_of(job)}/{name_of(job)}")
                drop(uid_of(job))
                changed = True

        body = job_from_template(cj, scheduled)
        try:
            created_job = await self.client.create(JOBS, body, namespace_of(cj))
            self.recorder.event(cj, NORMAL, "SuccessfulCreate", f"Created job {name_of(created_job)}")
            log.info("%s/%s: created job %s", namespace_of(cj), name_of(cj), name_of(created_job))
        except errors.AlreadyExists:
            created_job = await self.client.get(JOBS, name, namespace_of(cj))
            ref = controller_ref(created_job) or {}
            if ref.get("uid") != uid_of(cj):
                return None, changed
            if any(r.get("uid") == uid_of(created_job) for r in active):
                return None, changed
            log.info("%s/%s: job %s already exists", namespace_of(cj), name_of(cj), name)
        except errors.StatusError as exc:
            if _namespace_terminating(exc):
                raise
            self.recorder.event(cj, WARNING, "FailedCreate", f"Error creating job: {exc}")
            raise
        active.append(job_ref(created_job))
        status["active"] = active
        status["lastScheduleTime"] = rfc3339(scheduled)
        return again(), True

    async def _fresh(self, cj: Obj) -> Obj | None:
        try:
            return await self.client.get(CRON_JOBS, name_of(cj), namespace_of(cj))
        except errors.NotFound:
            return None

    async def _delete_job(self, cj: Obj, job: Obj) -> bool:
        try:
            await self.client.delete(JOBS, name_of(job), namespace_of(job), propagation_policy="Background")
        except errors.NotFound:
            pass
        except errors.StatusError as exc:
            self.recorder.event(cj, WARNING, "FailedDelete", f"Deleted job: {exc}")
            log.warning("%s/%s: deleting job %s: %s", namespace_of(cj), name_of(cj), name_of(job), exc)
            return False
        active = [r for r in (cj["status"].get("active") or []) if r.get("uid") != uid_of(job)]
        cj["status"]["active"] = active
        self.recorder.event(cj, NORMAL, "SuccessfulDelete", f"Deleted job {name_of(job)}")
        return True

    async def _cleanup_finished(self, cj: Obj, jobs: list[Obj]) -> bool:
        spec = cj.get("spec") or {}
        succeeded = [j for j in jobs if finished_condition(j) == "Complete" and not is_deleting(j)]
        failed = [j for j in jobs if finished_condition(j) == "Failed" and not is_deleting(j)]
        changed = False
        for group, limit in (
            (succeeded, spec.get("successfulJobsHistoryLimit")),
            (failed, spec.get("failedJobsHistoryLimit")),
        ):
            if limit is None:
                continue
            for job in jobs_to_remove(group, int(limit)):
                if await self._delete_job(cj, job):
                    changed = True
        return changed


def _namespace_terminating(exc: errors.StatusError) -> bool:
    return any(c.get("type") == "NamespaceTerminating" for c in exc.causes)
