"""The work queue's client-go semantics, driven by a fake clock (no real sleeping)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from apimachinery.workqueue import (
    BucketRateLimiter,
    FakeClock,
    ItemExponentialFailureRateLimiter,
    ShutDown,
    WorkQueue,
    default_controller_rate_limiter,
    run_workers,
)


async def until(cond: Callable[[], bool], rounds: int = 200) -> None:
    """Let other tasks run until ``cond()`` holds (event-loop turns, not wall time)."""
    for _ in range(rounds):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def make_queue() -> tuple[WorkQueue, FakeClock]:
    clock = FakeClock()
    return WorkQueue(clock=clock, name="test"), clock


async def test_add_dedups_while_queued_and_keeps_fifo_order() -> None:
    q, _ = make_queue()
    for key in ["a", "b", "a", "c", "b"]:
        q.add(key)
    assert q.len() == 3
    assert [await q.get(), await q.get(), await q.get()] == ["a", "b", "c"]
    assert len(q) == 0


async def test_key_being_processed_is_requeued_only_after_done() -> None:
    q, _ = make_queue()
    q.add("ns/web")
    key = await q.get()
    assert q.processing == {"ns/web"}
    q.add("ns/web")  # changed while a worker handles it
    q.add("ns/web")
    assert q.len() == 0  # not handed to a second worker
    q.done(key)
    assert q.len() == 1
    assert await q.get() == "ns/web"
    q.done("ns/web")
    assert q.len() == 0


async def test_get_blocks_until_add() -> None:
    q, _ = make_queue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_add_after_waits_for_the_clock() -> None:
    q, clock = make_queue()
    q.add_after("k", 10)
    q.add_after("k", 5)  # the earlier time wins
    q.add_after("k", 7)
    assert q.waiting == 1
    getter = asyncio.create_task(q.get())
    await until(lambda: clock.sleepers > 0)
    clock.step(4.9)
    await asyncio.sleep(0)
    assert not getter.done()
    clock.step(0.1)
    assert await asyncio.wait_for(getter, 1) == "k"
    assert q.waiting == 0


async def test_add_after_zero_adds_now() -> None:
    q, _ = make_queue()
    q.add_after("k", 0)
    assert q.len() == 1


def test_exponential_failure_limiter_doubles_from_5ms_to_cap() -> None:
    rl = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    delays = [rl.when("k") for _ in range(5)]
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert rl.num_requeues("k") == 5
    for _ in range(30):
        last = rl.when("k")
    assert last == 1000.0
    assert rl.when("other") == pytest.approx(0.005)
    rl.forget("k")
    assert rl.num_requeues("k") == 0
    assert rl.when("k") == pytest.approx(0.005)


def test_bucket_limiter_allows_burst_then_spaces_at_qps() -> None:
    clock = FakeClock()
    rl = BucketRateLimiter(qps=10, burst=100, clock=clock)
    assert all(rl.when(i) == 0 for i in range(100))
    assert rl.when("101st") == pytest.approx(0.1)
    assert rl.when("102nd") == pytest.approx(0.2)
    clock.step(1.0)  # refills 10 tokens, 2 were borrowed
    assert [rl.when(i) for i in range(8)] == [0] * 8
    assert rl.when("next") == pytest.approx(0.1)


def test_default_limiter_is_max_of_per_key_and_bucket() -> None:
    clock = FakeClock()
    rl = default_controller_rate_limiter(clock)
    assert rl.when("a") == pytest.approx(0.005)
    assert rl.when("a") == pytest.approx(0.01)
    for i in range(98):
        rl.when(f"other-{i}")
    # bucket empty: the global limit (0.1 s) now dominates the per-key 5 ms
    assert rl.when("fresh") == pytest.approx(0.1)
    assert rl.num_requeues("a") == 2


async def test_add_rate_limited_backs_off_and_forget_resets() -> None:
    q, clock = make_queue()
    q.add_rate_limited("k")
    q.add_rate_limited("k")
    assert q.num_requeues("k") == 2
    assert q.len() == 0
    getter = asyncio.create_task(q.get())
    await until(lambda: clock.sleepers > 0)
    clock.step(0.005)  # the first (earliest) request is due
    assert await asyncio.wait_for(getter, 1) == "k"
    q.forget("k")
    assert q.num_requeues("k") == 0


async def test_shut_down_drains_then_raises_and_refuses_new_keys() -> None:
    q, _ = make_queue()
    q.add("a")
    q.add_after("later", 100)
    q.shut_down()
    q.add("b")
    assert await q.get() == "a"
    with pytest.raises(ShutDown):
        await q.get()
    assert q.waiting == 0


async def test_shut_down_wakes_blocked_getters() -> None:
    q, _ = make_queue()
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0)
    q.shut_down()
    results = await asyncio.gather(*getters, return_exceptions=True)
    assert all(isinstance(r, ShutDown) for r in results)


async def test_run_workers_retries_failures_with_backoff_and_forgets_on_success() -> None:
    q, clock = make_queue()
    calls: list[str] = []

    async def reconcile(key: str) -> None:
        calls.append(key)
        if calls.count(key) < 3:
            raise RuntimeError("transient")

    q.add("ns/a")
    runner = asyncio.create_task(run_workers(q, reconcile, 2))
    await until(lambda: q.waiting == 1)
    assert q.num_requeues("ns/a") == 1
    clock.step(0.005)
    await until(lambda: q.num_requeues("ns/a") == 2 and q.waiting == 1)
    clock.step(0.01)
    await until(lambda: len(calls) == 3)
    await until(lambda: not q.processing)
    assert calls == ["ns/a"] * 3
    assert q.num_requeues("ns/a") == 0  # forgotten after the success
    q.shut_down()
    await asyncio.wait_for(runner, 1)


async def test_run_workers_never_processes_one_key_twice_at_once() -> None:
    q, _ = make_queue()
    active: set[str] = set()
    overlaps: list[str] = []
    gate = asyncio.Event()
    seen: list[str] = []

    async def reconcile(key: str) -> None:
        if key in active:
            overlaps.append(key)
        active.add(key)
        seen.append(key)
        await gate.wait()
        active.discard(key)

    q.add("k")
    runner = asyncio.create_task(run_workers(q, reconcile, 4))
    await until(lambda: seen == ["k"])
    q.add("k")  # re-added while processing
    q.add("other")
    await until(lambda: "other" in seen)
    assert seen == ["k", "other"]
    gate.set()
    await until(lambda: seen.count("k") == 2)
    assert overlaps == []
    q.shut_down()
    await asyncio.wait_for(runner, 1)


async def test_run_workers_drops_after_max_retries() -> None:
    q, clock = make_queue()
    calls: list[str] = []

    async def reconcile(key: str) -> None:
        calls.append(key)
        raise ValueError("permanent")

    q.add("k")
    runner = asyncio.create_task(run_workers(q, reconcile, 1, max_retries=1))
    await until(lambda: q.waiting == 1)
    clock.step(1)
    await until(lambda: len(calls) == 2 and not q.processing)
    assert q.waiting == 0 and q.len() == 0
    assert q.num_requeues("k") == 0
    q.shut_down()
    await asyncio.wait_for(runner, 1)
