from __future__ import annotations

from typing import Any

from kubelet import podstate
from kubelet.podstate import Backoff, plan_pod, pod_phase, pod_status
from kubelet.runtime import ContainerStatus, PodRef, SandboxStatus

REF = PodRef("u1", "p", "ns")


def pod(policy: str = "Always", init: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": policy, "containers": [{"name": "a", "image": "i"}]}
    if init:
        spec["initContainers"] = [{"name": "i1", "image": "i"}]
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": spec}


def sandbox(state: str = "running") -> SandboxStatus:
    return SandboxStatus("sb", REF, 0, state, "10.0.0.2", 1.0)


def ctr(
    name: str,
    state: str,
    restart: int = 0,
    exit_code: int | None = None,
    finished: float | None = None,
    init: bool = False,
) -> ContainerStatus:
    return ContainerStatus(
        f"{name}-{restart}",
        REF,
        name,
        restart,
        init,
        state,
        "i",
        "sha256:x",
        float(restart),
        1.0,
        finished,
        exit_code,
    )


def test_backoff_doubles_caps_and_resets() -> None:
    b = Backoff(10, 300)
    assert b.remaining("k", 0, 0) == 0
    b.next("k", 0)
    assert b.get("k") == 10
    for _ in range(10):
        b.next("k", 1)
    assert b.get("k") == 300
    b.next("k", 1 + 601)  # idle for more than 10 minutes: start again
    assert b.get("k") == 10


def test_plan_new_pod_creates_sandbox_then_starts() -> None:
    plan = plan_pod(pod(), [], [], Backoff(), now=100)
    assert plan.create_sandbox and [s.name for s in plan.start] == ["a"]


def test_plan_init_containers_first_and_in_order() -> None:
    plan = plan_pod(pod(init=True), [sandbox()], [], Backoff(), now=100)
    assert [(s.name, s.init) for s in plan.start] == [("i1", True)]
    plan = plan_pod(pod(init=True), [sandbox()], [ctr("i1", "running", init=True)], Backoff(), now=100)
    assert plan.start == []
    plan = plan_pod(
        pod(init=True), [sandbox()], [ctr("i1", "exited", exit_code=0, init=True)], Backoff(), now=100
    )
    assert [s.name for s in plan.start] == ["a"]


def test_plan_crash_loop_backoff() -> None:
    b = Backoff()
    first = plan_pod(pod(), [sandbox()], [ctr("a", "exited", 0, 1, finished=100)], b, now=101)
    assert [(s.name, s.restart_count) for s in first.start] == [("a", 1)]
    second = plan_pod(pod(), [sandbox()], [ctr("a", "exited", 1, 1, finished=102)], b, now=103)
    assert second.start == []
    assert second.waiting["a"][0] == "CrashLoopBackOff"
    assert second.requeue_after and 0 < second.requeue_after <= 10
    third = plan_pod(pod(), [sandbox()], [ctr("a", "exited", 1, 1, finished=102)], b, now=113)
    assert [s.restart_count for s in third.start] == [2]


def test_plan_restart_policies() -> None:
    done = [ctr("a", "exited", 0, 0, finished=1)]
    assert plan_pod(pod("OnFailure"), [sandbox()], done, Backoff(), now=5).terminal
    assert plan_pod(
        pod("Never"), [sandbox()], [ctr("a", "exited", 0, 2, finished=1)], Backoff(), now=5
    ).terminal
    assert plan_pod(pod("Always"), [sandbox()], done, Backoff(), now=5).start


def test_plan_unhealthy_container_is_killed() -> None:
    plan = plan_pod(pod(), [sandbox()], [ctr("a", "running")], Backoff(), now=5, unhealthy=frozenset({"a"}))
    assert plan.kill == ["a-0"]


def test_phase_rules() -> None:
    run = {"state": {"running": {}}}
    ok = {"state": {"terminated": {"exitCode": 0}}}
    bad = {"state": {"terminated": {"exitCode": 1}}}
    crash = {
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1}},
    }
    creating = {"state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}
    assert pod_phase({"restartPolicy": "Always"}, [], [run, crash]) == "Running"
    assert pod_phase({"restartPolicy": "Always"}, [], [creating]) == "Pending"
    assert pod_phase({"restartPolicy": "Never"}, [], [ok, ok]) == "Succeeded"
    assert pod_phase({"restartPolicy": "Never"}, [], [ok, bad]) == "Failed"
    assert pod_phase({"restartPolicy": "OnFailure"}, [], [bad]) == "Running"
    assert pod_phase({"restartPolicy": "Never"}, [bad], [creating]) == "Failed"


def test_status_reports_states_and_conditions() -> None:
    c = ctr("a", "exited", 2, 137, finished=50)
    c.oom_killed = True
    status = pod_status(
        pod(),
        sandbox(),
        [c],
        {"a": ("CrashLoopBackOff", "back-off")},
        {"a": True},
        {},
        "1.2.3.4",
        "BestEffort",
    )
    cs = status["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["reason"] == "OOMKilled"
    assert cs["restartCount"] == 2 and cs["containerID"] == "docker://a-2"
    assert status["podIP"] == "10.0.0.2" and status["phase"] == "Running"
    conds = {x["type"]: x["status"] for x in status["conditions"]}
    assert conds == {
        "PodScheduled": "True",
        "Initialized": "True",
        "Ready": "False",
        "ContainersReady": "False",
    }
    running = pod_status(
        pod(), sandbox(), [ctr("a", "running")], {}, {"a": True}, {"a": True}, "1.2.3.4", "BestEffort"
    )
    assert {x["type"]: x["status"] for x in running["conditions"]}["Ready"] == "True"
    unready = pod_status(
        pod(), sandbox(), [ctr("a", "running")], {}, {"a": False}, {"a": True}, "1.2.3.4", "BestEffort"
    )
    assert unready["containerStatuses"][0]["ready"] is False


def _pod_rv(rv: str, status: dict, **spec: object) -> dict:
    return {
        "metadata": {"name": "p", "namespace": "d", "uid": "u", "resourceVersion": rv},
        "spec": {"containers": [{"name": "c", "image": "i"}], **spec},
        "status": status,
    }


def test_own_status_update_is_not_a_reason_to_sync() -> None:
    running = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    old = _pod_rv("1", {"phase": "Pending"})
    new = _pod_rv("2", running)
    assert podstate.own_status_update(old, new, running)
    # nothing written yet, someone else's status, a resync, a spec change, a terminal phase
    assert not podstate.own_status_update(old, new, None)
    assert not podstate.own_status_update(old, new, {"phase": "Pending"})
    assert not podstate.own_status_update(new, new, running)
    assert not podstate.own_status_update(old, _pod_rv("2", running, activeDeadlineSeconds=5), running)
    done = {"phase": "Succeeded"}
    assert not podstate.own_status_update(old, _pod_rv("2", done), done)
