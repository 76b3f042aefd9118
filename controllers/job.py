"""The Job controller: run pods until ``completions`` succeed, or give up.

``reconcile(namespace/name)``, in the manner of Kubernetes' ``syncJob``:

1. claim the Job's pods (selector ``batch.kubernetes.io/controller-uid``);
2. **count finished pods exactly once** with the ``batch.kubernetes.io/job-tracking`` finalizer:
   every pod is created with it; a finished (or deleted unfinished) pod that still carries it is
   first recorded in ``status.uncountedTerminatedPods``, then its finalizer is removed, then it is
   moved into ``succeeded``/``failed`` (and ``completedIndexes``).  A restart at any moment neither
   loses nor double-counts a pod;
3. decide: ``Failed`` (``BackoffLimitExceeded`` when failures exceed ``backoffLimit``, restarts of
   ``OnFailure`` pods included; ``DeadlineExceeded`` after ``activeDeadlineSeconds``), ``Complete``
   (``completions`` succeeded, every index done, or for a work queue one success and nothing left
   running), otherwise create or delete pods toward ``parallelism`` (NonIndexed) or per missing
   index (Indexed); a recreation after failures waits ``base * 2^(failures-1)`` (max 6 min);
4. write ``status`` (active, ready, succeeded, failed, startTime, completionTime, conditions);
5. a finished Job with ``ttlSecondsAfterFinished`` is deleted (Background) once the TTL passed.
"""

from __future__ import annotations

import logging
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.events import NORMAL, WARNING
from apimachinery.informer import split_key
from apimachinery.resources import kind_info

from .base import PODS, ControllerContext, OwnerController
from .podcontrol import delete_pods, pod_from_template
from .refmanager import patch_metadata
from .replicaset import pods_to_delete
from .util import (
    deep_copy,
    get_condition,
    is_deleting,
    is_pod_ready,
    meta,
    name_of,
    new_condition,
    new_controller_ref,
    parse_time,
    pod_phase,
    rfc3339,
    set_condition,
    uid_of,
)

log = logging.getLogger(__name__)

JOBS = kind_info("batch/v1", "Job")

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
MAX_BACKOFF = 360.0


# -- pure decisions ---------------------------------------------------------------------------------


def parse_indexes(text: str | None) -> set[int]:
    """``"0-2,5"`` -> {0, 1, 2, 5} (status.completedIndexes)."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.update(range(int(lo), int(hi) + 1))
        else:
            out.add(int(part))
    return out


def format_indexes(indexes: set[int]) -> str:
    """{0, 1, 2, 5} -> ``"0-2,5"``."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def pod_index(pod: Obj) -> int | None:
    value = (meta(pod).get("annotations") or {}).get(COMPLETION_INDEX) or (meta(pod).get("labels") or {}).get(
        COMPLETION_INDEX
    )
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def is_finished(job: Obj) -> str | None:
    """``"Complete"`` or ``"Failed"`` when the Job has that condition True."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def pod_terminal_result(pod: Obj) -> str | None:
    """``"Succeeded"``/``"Failed"`` when the pod is done; a pod being deleted before it succeeded
    counts as failed (it will never finish)."""
    phase = pod_phase(pod)
    if phase in ("Succeeded", "Failed"):
        return phase
    if is_deleting(pod):
        return "Failed"
    return None


def restart_failures(pods: list[Obj]) -> int:
    """Container restarts of running ``OnFailure`` pods (pastBackoffLimitOnFailure)."""
    total = 0
    for pod in pods:
        if (pod.get("spec") or {}).get("restartPolicy") != "OnFailure":
            continue
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            total += int(cs.get("restartCount") or 0)
    return total


def failure_backoff(failures: int, base: float) -> float:
    if failures <= 0 or base <= 0:
        return 0.0
    return float(min(MAX_BACKOFF, base * (2 ** (failures - 1))))


def last_failure_time(pods: list[Obj]) -> float:
    latest = 0.0
    for pod in pods:
        if pod_terminal_result(pod) != "Failed":
            continue
        ts = meta(pod).get("deletionTimestamp")
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            ts = term.get("finishedAt") or ts
        latest = max(latest, parse_time(ts) or parse_time(meta(pod).get("creationTimestamp")) or 0.0)
    return latest


def job_pod(job: Obj, index: int | None) -> Obj:
    """A pod for the Job (with the tracking finalizer, and for Indexed mode its index)."""
    template = deep_copy((job.get("spec") or {}).get("template") or {})
    controller = new_controller_ref(job, "batch/v1", "Job")
    generate = f"{name_of(job)}-"
    if index is not None:
        tmeta = template.setdefault("metadata", {})
        tmeta.setdefault("annotations", {})[COMPLETION_INDEX] = str(index)
        tmeta.setdefault("labels", {})[COMPLETION_INDEX] = str(index)
        spec = template.setdefault("spec", {})
        spec.setdefault("hostname", f"{name_of(job)}-{index}")
        env = {
            "name": "JOB_COMPLETION_INDEX",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}},
        }
        for c in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
            if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in c.get("env") or []):
                c.setdefault("env", []).append(env)
        generate = f"{name_of(job)}-{index}-"
    pod = pod_from_template(job, template, controller, generate_name=generate)
    finalizers = list(pod["metadata"].get("finalizers") or [])
    if TRACKING_FINALIZER not in finalizers:
        finalizers.append(TRACKING_FINALIZER)
    pod["metadata"]["finalizers"] = finalizers
    return pod


def has_tracking_finalizer(pod: Obj) -> bool:
    return TRACKING_FINALIZER in (meta(pod).get("finalizers") or [])


class Plan:
    """What one reconcile decided (pure output of :func:`plan_job`)."""

    def __init__(self) -> None:
        self.create_indexes: list[int | None] = []  # None = a NonIndexed pod
        self.delete: list[Obj] = []
        self.finish: tuple[str, str, str] | None = None  # (condition, reason, message)
        self.requeue_after: float | None = None


def plan_job(
    job: Obj,
    active: list[Obj],
    succeeded: int,
    failed: int,
    completed: set[int],
    last_failure: float,
    now: float,
    backoff_base: float,
) -> Plan:
    """The next step for a running Job from its counts (manageJob + the finish checks)."""
    spec = job.get("spec") or {}
    plan = Plan()
    indexed = spec.get("completionMode") == "Indexed"
    completions = spec.get("completions")
    parallelism = int(spec["parallelism"]) if spec.get("parallelism") is not None else 1
    backoff_limit = int(spec["backoffLimit"]) if spec.get("backoffLimit") is not None else 6
    status = job.get("status") or {}

    # failure first
    if failed + restart_failures(active) > backoff_limit:
        plan.finish = ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    deadline = spec.get("activeDeadlineSeconds")
    start = parse_time(status.get("startTime"))
    if plan.finish is None and deadline is not None and start is not None:
        remaining = start + int(deadline) - now
        if remaining <= 0:
            plan.finish = ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        else:
            plan.requeue_after = remaining
    if plan.finish is not None:
        plan.delete = list(active)
        return plan

    # completion
    if indexed:
        total = int(completions or 0)
        done = len([i for i in completed if i < total]) >= total
    elif completions is not None:
        done = succeeded >= int(completions)
    else:
        done = succeeded > 0 and not active
    if done:
        plan.finish = ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
        plan.delete = list(active)
        return plan

    if spec.get("suspend"):
        plan.delete = list(active)
        return plan

    delay = 0.0
    if failed > 0 and last_failure > 0:
        delay = last_failure + failure_backoff(failed, backoff_base) - now

    if indexed:
        total = int(completions or 0)
        by_index: dict[int, list[Obj]] = {}
        for pod in active:
            idx = pod_index(pod)
            if idx is None or idx >= total or idx in completed:
                plan.delete.append(pod)
            else:
                by_index.setdefault(idx, []).append(pod)
        for pods in by_index.values():
            plan.delete.extend(pods_to_delete(pods, pods, len(pods) - 1))
        running = len(by_index)
        want = [i for i in range(total) if i not in completed and i not in by_index]
        room = max(0, parallelism - running)
        if want and room and delay > 0:
            plan.requeue_after = min(delay, plan.requeue_after or delay)
            return plan
        plan.create_indexes = list(want[:room])
        return plan

    if completions is None:
        want_active = len(active) if succeeded > 0 else parallelism
    else:
        want_active = min(parallelism, max(0, int(completions) - succeeded))
    diff = want_active - len(active)
    if diff > 0:
        if delay > 0:
            plan.requeue_after = min(delay, plan.requeue_after or delay)
            return plan
        plan.create_indexes = [None] * diff
    elif diff < 0:
        plan.delete = pods_to_delete(active, active, -diff)
    return plan


# -- the controller ---------------------------------------------------------------------------------


class JobController(OwnerController):
    name = "job-controller"
    owner_info = JOBS

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.backoff_base = float(ctx.options.extra.get("job_backoff_seconds", 10.0))

    async def reconcile(self, key: str) -> None:
        namespace, _ = split_key(key)
        job = self.owner_informer.store.get(key)
        if job is None:
            self.expectations.delete(key)
            return
        now = self.ctx.clock()
        candidates = self.owned_informer.store.by_index("namespace", namespace or "")
        pods = await self.claim(
            job, [p for p in candidates if not (is_deleting(p) and not has_tracking_finalizer(p))]
        )
        status = deep_copy(job.get("status") or {})
        job = await self._track_finished(job, pods, status)
        status = deep_copy(job.get("status") or {})
        finished = is_finished(job)
        active = [p for p in pods if pod_terminal_result(p) is None]
        if finished:
            if active:
                await delete_pods(self.client, self.recorder, job, active)
            await self._ttl(key, job, now)
            return

        stored = job
        if not status.get("startTime") and not (job.get("spec") or {}).get("suspend"):
            status["startTime"] = rfc3339(now)
            job = {**job, "status": deep_copy(status)}

        plan = plan_job(
            job,
            active,
            int(status.get("succeeded") or 0),
            int(status.get("failed") or 0),
            parse_indexes(status.get("completedIndexes")),
            last_failure_time(pods),
            now,
            self.backoff_base,
        )
        manage_error: errors.StatusError | None = None
        if self.expectations.satisfied(key) or plan.finish is not None:
            manage_error = await self._manage(key, job, plan)
        elif plan.finish is None:
            plan.create_indexes, plan.delete = [], []

        deleted = {uid_of(p) for p in plan.delete}
        remaining = [p for p in active if uid_of(p) not in deleted]
        status["active"] = len(remaining)
        status["ready"] = sum(1 for p in remaining if is_pod_ready(p))
        if plan.finish is not None:
            cond_type, reason, message = plan.finish
            if cond_type == "Failed":
                set_condition(status, new_condition("FailureTarget", "True", reason, message, now))
                self.recorder.event(job, WARNING, reason, message)
            else:
                set_condition(status, new_condition("SuccessCriteriaMet", "True", reason, message, now))
                status["completionTime"] = rfc3339(now)
                self.recorder.event(job, NORMAL, "Completed", "Job completed")
            set_condition(status, new_condition(cond_type, "True", reason, message, now))
            status["active"] = 0
            log.info("%s: %s (%s)", key, cond_type, reason)
        await self.write_status(JOBS, stored, status)
        if manage_error is not None:
            raise manage_error
        if plan.finish is not None:
            ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
            if ttl is not None:
                self.queue.add_after(key, float(ttl))
        elif plan.requeue_after is not None:
            self.queue.add_after(key, max(0.05, plan.requeue_after))

    async def _track_finished(self, job: Obj, pods: list[Obj], status: dict[str, Any]) -> Obj:
        """Count finished pods exactly once (uncountedTerminatedPods + finalizer removal)."""
        uncounted = status.get("uncountedTerminatedPods") or {}
        pending_s = set(uncounted.get("succeeded") or [])
        pending_f = set(uncounted.get("failed") or [])
        to_release: list[Obj] = []
        for pod in pods:
            if not has_tracking_finalizer(pod):
                continue
            result = pod_terminal_result(pod)
            if result is None:
                continue
            to_release.append(pod)
            if uid_of(pod) not in pending_s and uid_of(pod) not in pending_f:
                (pending_s if result == "Succeeded" else pending_f).add(uid_of(pod))
        if not pending_s and not pending_f:
            return job
        indexes = {uid_of(p): pod_index(p) for p in pods}
        if (pending_s, pending_f) != (
            set(uncounted.get("succeeded") or []),
            set(uncounted.get("failed") or []),
        ):
            status["uncountedTerminatedPods"] = {"succeeded": sorted(pending_s), "failed": sorted(pending_f)}
            job = await self.write_status(JOBS, job, status)
            status = deep_copy(job.get("status") or {})
        for pod in to_release:
            finalizers = [f for f in meta(pod).get("finalizers") or [] if f != TRACKING_FINALIZER]
            await patch_metadata(self.client, PODS, pod, finalizers=finalizers or None)
        succeeded = int(status.get("succeeded") or 0) + len(pending_s)
        failed = int(status.get("failed") or 0) + len(pending_f)
        completed = parse_indexes(status.get("completedIndexes"))
        if (job.get("spec") or {}).get("completionMode") == "Indexed":
            for uid in pending_s:
                idx = indexes.get(uid)
                if idx is not None:
                    completed.add(idx)
            status["completedIndexes"] = format_indexes(completed)
            succeeded = len(completed)
        status["succeeded"] = succeeded
        status["failed"] = failed
        status["uncountedTerminatedPods"] = {}
        return await self.write_status(JOBS, job, status)

    async def _manage(self, key: str, job: Obj, plan: Plan) -> errors.StatusError | None:
        first: errors.StatusError | None = None
        if plan.delete:
            first = await self.delete_owned(key, job, plan.delete)
        if plan.create_indexes:
            log.info("%s: creating %d pods", key, len(plan.create_indexes))
            error = await self.create_owned(key, job, [job_pod(job, idx) for idx in plan.create_indexes])
            first = first or error
        return first

    async def _ttl(self, key: str, job: Obj, now: float) -> None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        status = job.get("status") or {}
        finished_at = parse_time(status.get("completionTime"))
        if finished_at is None:
            cond = get_condition(status, "Failed") or get_condition(status, "Complete") or {}
            finished_at = parse_time(cond.get("lastTransitionTime")) or now
        due = finished_at + int(ttl) - now
        if due > 0:
            self.queue.add_after(key, due)
            return
        try:
            await self.client.delete(
                JOBS,
                name_of(job),
                meta(job).get("namespace"),
                propagation_policy="Background",
                preconditions={"uid": uid_of(job)},
            )
            log.info("%s: deleted %ss after it finished (ttlSecondsAfterFinished)", key, ttl)
        except (errors.NotFound, errors.Conflict):
            pass
