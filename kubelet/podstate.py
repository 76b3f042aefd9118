"""Pure decisions about one pod: what to start or kill next, and what its status is.

Nothing here does I/O.  :func:`plan_pod` is the kubelet's ``computePodActions``; :func:`pod_status`
builds ``status`` from the runtime's view of the pod (``getPhase`` and the conditions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from apimachinery import conditions
from apimachinery.timefmt import rfc3339

from .runtime import STATE_CREATED, STATE_EXITED, STATE_RUNNING, ContainerStatus, SandboxStatus

Obj = dict[str, Any]

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0


def optional_rfc3339(ts: float | None) -> str | None:
    return None if ts is None else rfc3339(ts)


class Backoff:
    """client-go's ``flowcontrol.Backoff``: per key, ``initial`` doubling to ``maximum``.

    An entry not updated for ``2 * maximum`` (10 minutes with the defaults) starts again at
    ``initial``: a container that ran that long is no longer crash-looping.
    """

    def __init__(self, initial: float = BACKOFF_INITIAL, maximum: float = BACKOFF_MAX) -> None:
        self.initial = initial
        self.maximum = maximum
        self._entries: dict[str, tuple[float, float]] = {}  # key -> (duration, last update)

    def get(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry[0] if entry else 0.0

    def next(self, key: str, now: float) -> None:
        entry = self._entries.get(key)
        if entry is None or now - entry[1] > 2 * self.maximum:
            self._entries[key] = (self.initial, now)
        else:
            self._entries[key] = (min(entry[0] * 2, self.maximum), now)

    def remaining(self, key: str, since: float, now: float) -> float:
        """Seconds left in the back-off that started at ``since`` (0 when not backing off)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        if now - entry[1] > 2 * self.maximum:
            del self._entries[key]
            return 0.0
        left = entry[0] - (now - since)
        return left if left > 0 else 0.0

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]


def instances(containers: list[ContainerStatus]) -> dict[str, list[ContainerStatus]]:
    """Each container name's instances, newest first (highest restart count, then creation)."""
    out: dict[str, list[ContainerStatus]] = {}
    for c in containers:
        out.setdefault(c.name, []).append(c)
    for lst in out.values():
        lst.sort(key=lambda c: (c.restart_count, c.created_at), reverse=True)
    return out


def latest_sandbox(sandboxes: list[SandboxStatus]) -> SandboxStatus | None:
    if not sandboxes:
        return None
    return max(sandboxes, key=lambda s: (s.attempt, s.created_at))


@dataclass
class Start:
    name: str
    restart_count: int
    init: bool = False


@dataclass
class Plan:
    create_sandbox: bool = False
    sandbox_attempt: int = 0
    kill_pod: bool = False  # stop everything (before a new sandbox, or when the pod is done)
    start: list[Start] = field(default_factory=list)
    kill: list[str] = field(default_factory=list)  # container IDs to stop (failed liveness)
    remove: list[str] = field(default_factory=list)  # container IDs to remove (never started)
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (reason, message)
    requeue_after: float | None = None
    terminal: bool = False  # the pod will not run again (Never/OnFailure done, or init failed)


def _should_restart(policy: str, exit_code: int | None) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def backoff_key(pod: Obj, name: str) -> str:
    return f"{(pod.get('metadata') or {}).get('uid', '')}/{name}"


def plan_pod(
    pod: Obj,
    sandboxes: list[SandboxStatus],
    containers: list[ContainerStatus],
    backoff: Backoff,
    now: float | None = None,
    unhealthy: frozenset[str] = frozenset(),
) -> Plan:
    """What to do next for ``pod`` given what runs (Kubernetes' ``computePodActions``)."""
    now = time.time() if now is None else now
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    policy = spec.get("restartPolicy") or "Always"
    init_specs = spec.get("initContainers") or []
    app_specs = spec.get("containers") or []
    by_name = instances(containers)
    plan = Plan()
    pod_desc = f"{meta.get('name')}_{meta.get('namespace')}({meta.get('uid')})"

    for c in containers:
        if c.state == STATE_CREATED:
            plan.remove.append(c.id)

    sandbox = latest_sandbox(sandboxes)
    sandbox_ok = sandbox is not None and sandbox.state == STATE_RUNNING and bool(sandbox.ip)
    if not sandbox_ok:
        ran_before = any(c.state == STATE_EXITED for c in containers)
        if policy == "Never" and ran_before:
            plan.terminal = True
            plan.kill_pod = any(c.state == STATE_RUNNING for c in containers) or sandbox is not None
            return plan
        plan.create_sandbox = True
        plan.kill_pod = sandbox is not None or any(c.state == STATE_RUNNING for c in containers)
        plan.sandbox_attempt = (sandbox.attempt + 1) if sandbox else 0

    def next_count(name: str) -> int:
        lst = by_name.get(name)
        return lst[0].restart_count + 1 if lst else 0

    def backoff_or_start(name: str, last: ContainerStatus, init: bool) -> None:
        key = backoff_key(pod, name)
        left = backoff.remaining(key, last.finished_at or now, now)
        if left > 0:
            delay = backoff.get(key)
            plan.waiting[name] = (
                "CrashLoopBackOff",
                f"back-off {int(delay)}s restarting failed container={name} pod={pod_desc}",
            )
            plan.requeue_after = min(plan.requeue_after or left, left)
            return
        backoff.next(key, now)
        plan.start.append(Start(name, last.restart_count + 1, init))

    # Init containers, in order, each to completion.
    for ic in init_specs:
        name = ic.get("name", "")
        lst = [c for c in by_name.get(name, []) if c.state != STATE_CREATED]
        last = lst[0] if lst else None
        if plan.create_sandbox:
            # a new sandbox runs every init container again
            plan.start.append(Start(name, next_count(name), True))
            return plan
        if last is None:
            plan.start.append(Start(name, 0, True))
            return plan
        if last.state == STATE_RUNNING:
            return plan
        if last.exit_code == 0:
            continue
        if policy == "Never":
            plan.terminal = True
            plan.kill_pod = True
            return plan
        backoff_or_start(name, last, True)
        return plan

    # App containers.
    finished = 0
    for ac in app_specs:
        name = ac.get("name", "")
        lst = [c for c in by_name.get(name, []) if c.state != STATE_CREATED]
        last = lst[0] if lst else None
        if plan.create_sandbox or last is None:
            plan.start.append(Start(name, next_count(name) if plan.create_sandbox else 0))
            continue
        if last.state == STATE_RUNNING:
            if name in unhealthy:
                plan.kill.append(last.id)
            continue
        if _should_restart(policy, last.exit_code):
            backoff_or_start(name, last, False)
        else:
            finished += 1
    if app_specs and finished == len(app_specs):
        plan.terminal = True
    return plan


# --------------------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------------------


def _terminated(c: ContainerStatus) -> Obj:
    if c.oom_killed:
        reason = "OOMKilled"
    elif c.exit_code == 0:
        reason = "Completed"
    else:
        reason = "Error"
    out: Obj = {
        "exitCode": c.exit_code if c.exit_code is not None else 0,
        "reason": reason,
        "startedAt": optional_rfc3339(c.started_at),
        "finishedAt": optional_rfc3339(c.finished_at),
        "containerID": f"docker://{c.id}",
    }
    if c.error:
        out["message"] = c.error
    return out


def _image_id(c: ContainerStatus) -> str:
    return f"docker://{c.image_id}" if c.image_id else ""


def container_status(
    spec: Obj,
    lst: list[ContainerStatus],
    waiting: tuple[str, str] | None,
    default_waiting: str,
    ready: bool,
    started: bool,
) -> Obj:
    name = spec.get("name", "")
    lst = [c for c in lst if c.state != STATE_CREATED]
    last = lst[0] if lst else None
    prev = lst[1] if len(lst) > 1 else None
    status: Obj = {
        "name": name,
        "image": spec.get("image", ""),
        "imageID": _image_id(last) if last else "",
        "restartCount": last.restart_count if last else 0,
        "ready": False,
        "started": False,
        "state": {},
        "lastState": {},
    }
    if last is not None:
        status["containerID"] = f"docker://{last.id}"
    if waiting is not None:
        reason, message = waiting
        status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        if last is not None and last.state == STATE_EXITED:
            status["lastState"] = {"terminated": _terminated(last)}
        elif prev is not None and prev.state == STATE_EXITED:
            status["lastState"] = {"terminated": _terminated(prev)}
        return status
    if last is None:
        status["state"] = {"waiting": {"reason": default_waiting}}
        return status
    if last.state == STATE_RUNNING:
        status["state"] = {"running": {"startedAt": optional_rfc3339(last.started_at)}}
        status["ready"] = ready
        status["started"] = started
    else:
        status["state"] = {"terminated": _terminated(last)}
    if prev is not None and prev.state == STATE_EXITED:
        status["lastState"] = {"terminated": _terminated(prev)}
    return status


def pod_phase(spec: Obj, init_statuses: list[Obj], statuses: list[Obj]) -> str:
    """Kubernetes' ``getPhase``."""
    policy = spec.get("restartPolicy") or "Always"
    for ist in init_statuses:
        term = ist["state"].get("terminated")
        if term and term.get("exitCode") == 0:
            continue
        if policy == "Never" and (term or ist.get("lastState", {}).get("terminated")):
            if term:
                return "Failed"
        return "Pending"
    running = waiting = stopped = succeeded = unknown = 0
    for st in statuses:
        state = st["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in state:
            if st.get("lastState", {}).get("terminated"):
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if waiting > 0:
        return "Pending"
    if running > 0 and unknown == 0:
        return "Running"
    if running == 0 and stopped > 0 and unknown == 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(
    ctype: str, ok: bool, reason: str = "", message: str = "", old: list[Obj] | None = None
) -> Obj:
    status = "True" if ok else "False"
    cond: Obj = {"type": ctype, "status": status, "lastProbeTime": None}
    kept = conditions.transition_time(conditions.find(old, ctype), status)
    cond["lastTransitionTime"] = kept or rfc3339(time.time())
    if not ok and reason:
        cond["reason"] = reason
    if not ok and message:
        cond["message"] = message
    return cond


def pod_status(
    pod: Obj,
    sandbox: SandboxStatus | None,
    containers: list[ContainerStatus],
    waiting: dict[str, tuple[str, str]],
    ready: dict[str, bool],
    started: dict[str, bool],
    host_ip: str,
    qos_class: str,
    now: float | None = None,
) -> Obj:
    """The pod's ``status`` as the kubelet reports it."""
    now = time.time() if now is None else now
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    old_conditions = list(old.get("conditions") or [])
    by_name = instances(containers)
    init_specs = spec.get("initContainers") or []
    app_specs = spec.get("containers") or []

    init_statuses = []
    initialized = True
    for ic in init_specs:
        name = ic.get("name", "")
        st = container_status(ic, by_name.get(name, []), waiting.get(name), "PodInitializing", False, False)
        term = st["state"].get("terminated")
        done = bool(term and term.get("exitCode") == 0)
        st["ready"] = done
        init_statuses.append(st)
        initialized = initialized and done
    statuses = []
    for ac in app_specs:
        name = ac.get("name", "")
        default = "ContainerCreating" if initialized else "PodInitializing"
        st = container_status(
            ac,
            by_name.get(name, []),
            waiting.get(name),
            default,
            ready.get(name, True),
            started.get(name, True),
        )
        statuses.append(st)

    phase = pod_phase(spec, init_statuses, statuses)
    # A pod that is done stays done (Kubernetes never moves a pod out of a terminal phase).
    if old.get("phase") in ("Succeeded", "Failed"):
        phase = old["phase"]

    not_ready = [s["name"] for s in statuses if not s["ready"]]
    containers_ready = not not_ready
    uninit = [s["name"] for s in init_statuses if not s["ready"]]
    if phase == "Succeeded":
        reason_ready = "PodCompleted"
    else:
        reason_ready = "ContainersNotReady"
    conditions = [
        _condition(
            "Initialized",
            initialized or phase == "Succeeded",
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(uninit)}]",
            old_conditions,
        ),
        _condition(
            "Ready",
            containers_ready and phase == "Running",
            reason_ready,
            "" if phase == "Succeeded" else f"containers with unready status: [{' '.join(not_ready)}]",
            old_conditions,
        ),
        _condition(
            "ContainersReady",
            containers_ready and phase == "Running",
            reason_ready,
            "" if phase == "Succeeded" else f"containers with unready status: [{' '.join(not_ready)}]",
            old_conditions,
        ),
        _condition("PodScheduled", True, old=old_conditions),
    ]
    status: Obj = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}] if host_ip else [],
        "startTime": old.get("startTime") or rfc3339(now),
        "containerStatuses": statuses,
        "qosClass": qos_class,
    }
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    pod_ip = sandbox.ip if sandbox is not None and sandbox.state == STATE_RUNNING else old.get("podIP", "")
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status


def status_equal(a: Obj, b: Obj) -> bool:
    """Whether two statuses say the same thing (transition times aside)."""

    def strip(s: Obj) -> Obj:
        out = dict(s)
        out["conditions"] = sorted(
            (
                {k: v for k, v in c.items() if k not in ("lastTransitionTime", "lastProbeTime")}
                for c in s.get("conditions") or []
            ),
            key=lambda c: str(c.get("type")),
        )
        return out

    return strip(a) == strip(b)


def own_status_update(old: Obj, new: Obj, written: Obj | None) -> bool:
    """Whether an update of a pod only carries a status this kubelet wrote itself: nothing to sync
    (Kubernetes' kubelet does not sync a pod for its own status either).  A resync (same
    resourceVersion), a change of metadata or spec, a status someone else wrote, or a terminal
    phase (the next sync stops what still runs) is not."""
    if written is None:
        return False
    old_meta = dict(old.get("metadata") or {})
    new_meta = dict(new.get("metadata") or {})
    if old_meta.get("resourceVersion") == new_meta.get("resourceVersion"):
        return False
    for meta in (old_meta, new_meta):
        meta.pop("resourceVersion", None)
        meta.pop("managedFields", None)
    if old_meta != new_meta or old.get("spec") != new.get("spec"):
        return False
    status = new.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    return status_equal(status, written)
