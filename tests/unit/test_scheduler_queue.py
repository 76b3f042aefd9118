"""The scheduling queue and the assume cache, with a fake clock and no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from apimachinery.workqueue import FakeClock
from scheduler.cache import SchedulerCache
from scheduler.fastpath import schedule
from scheduler.framework import PodInfo, Snapshot
from scheduler.queue import ACTIVE, BACKOFF, IN_FLIGHT, UNSCHEDULABLE, QueuedPodInfo, SchedulingQueue


def pod(
    name: str, priority: int = 0, node: str | None = None, cpu: str = "1", phase: str = "Pending"
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}],
        "priority": priority,
    }
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec, "status": {"phase": phase}}


def node(name: str, cpu: str = "2") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {}},
        "status": {
            "allocatable": {"cpu": cpu, "pods": "10"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def make(clock: FakeClock | None = None) -> tuple[SchedulingQueue, FakeClock]:
    c = clock or FakeClock(100.0)
    return SchedulingQueue(c, initial_backoff=1.0, max_backoff=10.0, max_unschedulable_seconds=300.0), c


def in_flight() -> tuple[SchedulingQueue, FakeClock, QueuedPodInfo]:
    """A queue whose one pod, ``default/p``, has just been popped for a decision."""
    q, clock = make()
    q.add(pod("p"), "default/p")
    qp = q.pop_nowait()
    assert qp is not None and q.where("default/p") == IN_FLIGHT
    return q, clock, qp


def test_active_order_is_priority_then_age() -> None:
    q, clock = make()
    q.add(pod("low"), "default/low")
    clock.step(1)
    q.add(pod("high", priority=100), "default/high")
    clock.step(1)
    q.add(pod("low2"), "default/low2")
    order = [q.pop_nowait().key for _ in range(3)]  # type: ignore[union-attr]
    assert order == ["default/high", "default/low", "default/low2"]
    assert q.pop_nowait() is None


@pytest.mark.parametrize(("attempts", "seconds"), [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)])
def test_backoff_doubles_to_ten_seconds(attempts: int, seconds: float) -> None:
    q, _ = make()
    assert q.backoff_duration(attempts) == seconds


def test_unschedulable_waits_for_a_helpful_event() -> None:
    q, clock, qp = in_flight()
    q.unschedulable(qp, {"NodeResourcesFit"})
    assert q.where("default/p") == UNSCHEDULABLE
    clock.step(60)
    assert q.pop_nowait() is None  # no retry without a cluster event (until the 5-minute flush)
    assert q.move_for_event("AssignedPodAdd") == 0  # cannot free cpu
    assert q.move_for_event("AssignedPodDelete") == 1
    assert q.where("default/p") == ACTIVE  # backoff (1 s) long expired
    assert q.pop_nowait() is not None


def test_event_during_backoff_goes_through_backoff() -> None:
    q, clock, qp = in_flight()
    q.unschedulable(qp, {"NodeResourcesFit"})
    q.move_for_event("NodeAdd")
    assert q.where("default/p") == BACKOFF
    assert q.pop_nowait() is None
    clock.step(1.0)
    assert q.pop_nowait() is not None


def test_event_while_in_flight_is_not_lost() -> None:
    q, clock, qp = in_flight()
    q.move_for_event("NodeAdd")  # arrives while the decision is being made
    q.unschedulable(qp, {"NodeResourcesFit"})
    assert q.where("default/p") == BACKOFF
    clock.step(1.0)
    assert q.pop_nowait() is not None


def test_unschedulable_pods_are_flushed_after_the_maximum_wait() -> None:
    q, clock, qp = in_flight()
    q.unschedulable(qp, {"NodeResourcesFit"})
    clock.step(299)
    assert q.pop_nowait() is None
    clock.step(1)
    assert q.pop_nowait() is not None


def test_deleted_pods_leave_every_place() -> None:
    q, _ = make()
    q.add(pod("a"), "default/a")
    q.add(pod("b"), "default/b")
    q.delete("default/a")
    popped = q.pop_nowait()
    assert popped is not None and popped.key == "default/b"
    assert q.pop_nowait() is None
    q.unschedulable(popped, set())
    q.delete("default/b")
    assert q.move_for_event("NodeAdd") == 0 and len(q) == 0


def test_a_changed_unschedulable_pod_is_retried() -> None:
    q, clock, qp = in_flight()
    q.unschedulable(qp, {"NodeAffinity"})
    clock.step(5)
    q.add(pod("p", cpu="2"), "default/p")
    assert q.where("default/p") == ACTIVE


def test_errors_retry_with_backoff() -> None:
    q, clock, qp = in_flight()
    q.retry_after_error(qp)
    assert q.where("default/p") == BACKOFF
    clock.step(1)
    qp = q.pop_nowait()
    assert qp is not None and qp.attempts == 2


async def test_pop_waits_for_a_pod() -> None:
    import asyncio

    q = SchedulingQueue(initial_backoff=0.01)
    waiter = asyncio.create_task(q.pop())
    await asyncio.sleep(0)
    assert not waiter.done()
    q.add(pod("p"), "default/p")
    qp = await asyncio.wait_for(waiter, 5)
    assert qp.key == "default/p"


# -- cache -----------------------------------------------------------------------------------------


def test_assumed_pods_count_before_the_informer_sees_them() -> None:
    cache = SchedulerCache()
    cache.add_node(node("a"))
    cache.add_node(node("b"))
    first = PodInfo.of(pod("one", cpu="2"))
    cache.assume(first, "a")
    result = schedule(pod("two", cpu="2"), cache.snapshot)
    assert result.node_name == "b"  # type: ignore[union-attr]
    # the informer confirms the binding: the assumed copy is replaced, not doubled
    cache.set_pod(pod("one", cpu="2", node="a"))
    assert not cache.is_assumed("default/one")
    assert cache.snapshot.nodes["a"].requested["cpu"] == 2000


def test_forget_releases_an_assumed_pod() -> None:
    cache = SchedulerCache()
    cache.add_node(node("a"))
    cache.assume(PodInfo.of(pod("one", cpu="2")), "a")
    cache.forget("default/one")
    assert cache.snapshot.nodes["a"].requested.get("cpu", 0) == 0
    assert not cache.snapshot.nodes["a"].pods


def test_finished_and_deleted_pods_free_their_node() -> None:
    cache = SchedulerCache()
    cache.add_node(node("a"))
    cache.set_pod(pod("x", node="a"))
    cache.set_pod(pod("y", node="a"))
    cache.set_pod(pod("x", node="a", phase="Succeeded"))
    cache.remove_pod(pod("y", node="a"))
    assert not cache.snapshot.nodes["a"].pods


def test_pods_seen_before_their_node_are_kept() -> None:
    cache = SchedulerCache()
    cache.set_pod(pod("x", node="later"))
    cache.add_node(node("later"))
    assert list(cache.snapshot.nodes["later"].pods) == ["default/x"]
    cache.remove_node(node("later"))
    assert "later" not in cache.snapshot.nodes
    cache.add_node(node("later"))
    assert list(cache.snapshot.nodes["later"].pods) == ["default/x"]


def test_snapshot_build_matches_cache() -> None:
    snap = Snapshot.build([node("a")], [pod("x", node="a")])
    assert snap.nodes["a"].requested == {"cpu": 1000}
