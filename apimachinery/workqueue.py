"""client-go's rate-limited work queue, for asyncio.

Controllers put *keys* (``namespace/name``) on the queue, never objects; workers pop a key and
reconcile it from the informer cache.  The queue guarantees, like client-go's ``workqueue``:

* **dedup** -- a key added several times while waiting is handed out once;
* **no parallel processing of one key** -- between :meth:`WorkQueue.get` and
  :meth:`WorkQueue.done` a key is *processing*; adding it again marks it *dirty* and it is queued
  again only after ``done``, so two workers never reconcile the same object at once;
* **delays** -- :meth:`WorkQueue.add_after` holds a key back until its time comes;
* **rate limiting** -- :meth:`WorkQueue.add_rate_limited` waits as long as the rate limiter says:
  per key, 5 ms doubling to 1000 s on every failure, and a shared token bucket of 10 qps with a
  burst of 100 (client-go's ``DefaultControllerRateLimiter``); :meth:`WorkQueue.forget` resets
  the key's backoff after a success.

Time comes from a :class:`Clock`, so tests use :class:`FakeClock` and never sleep.

A named queue records client-go's metrics (``workqueue_depth``, ``workqueue_adds_total``,
``workqueue_retries_total``, ``workqueue_queue_duration_seconds``,
``workqueue_work_duration_seconds``, labelled ``name``; see :mod:`apimachinery.metrics`), timed
with the queue's clock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol

from .metrics import workqueue_metrics

log = logging.getLogger(__name__)

Key = Hashable


class ShutDown(Exception):
    """Raised by :meth:`WorkQueue.get` once the queue is shut down and drained."""


# --------------------------------------------------------------------------------------------------
# Clocks
# --------------------------------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline`` (a deadline, not a duration, so no time is lost between
        computing it and starting to wait)."""
        ...


class RealClock:
    """Monotonic time and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - self.now()))


class FakeClock:
    """A clock that moves only when a test calls :meth:`step`; sleepers wake when their time comes."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        await fut

    def step(self, seconds: float) -> None:
        """Advance time and wake every sleeper whose deadline has passed."""
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())


# --------------------------------------------------------------------------------------------------
# Rate limiters
# --------------------------------------------------------------------------------------------------


class RateLimiter(Protocol):
    def when(self, key: Key) -> float:
        """How long to wait before ``key`` may be processed again (and record one more requeue)."""
        ...

    def forget(self, key: Key) -> None: ...

    def num_requeues(self, key: Key) -> int: ...


class ItemExponentialFailureRateLimiter:
    """Per-key backoff: ``base * 2**failures``, capped at ``max_delay``."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Key, int] = {}

    def when(self, key: Key) -> float:
        exp = self._failures.get(key, 0)
        self._failures[key] = exp + 1
        if exp > 64:  # 2**64 * 5ms is far beyond any cap; avoid huge floats
            return self.max_delay
        return min(self.base_delay * (2.0**exp), self.max_delay)

    def forget(self, key: Key) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: Key) -> int:
        return self._failures.get(key, 0)


class BucketRateLimiter:
    """A token bucket shared by all keys (``golang.org/x/time/rate``'s reservation arithmetic).

    Each call takes one token; when the bucket is empty the returned delay is the time until the
    token it borrowed will have been refilled.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Clock | None = None) -> None:
        self.qps = qps
        self.burst = burst
        self._clock = clock or RealClock()
        self._tokens = float(burst)
        self._last = self._clock.now()

    def when(self, key: Key) -> float:
        now = self._clock.now()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, key: Key) -> None:
        pass

    def num_requeues(self, key: Key) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay of several limiters (how client-go combines per-key and global limits)."""

    def __init__(self, *limiters: RateLimiter) -> None:
        self.limiters = limiters

    def when(self, key: Key) -> float:
        return max(limiter.when(key) for limiter in self.limiters)

    def forget(self, key: Key) -> None:
        for limiter in self.limiters:
            limiter.forget(key)

    def num_requeues(self, key: Key) -> int:
        return max(limiter.num_requeues(key) for limiter in self.limiters)


def default_controller_rate_limiter(clock: Clock | None = None) -> MaxOfRateLimiter:
    """5 ms -> 1000 s per key, and 10 qps / burst 100 overall."""
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, 1000.0),
        BucketRateLimiter(10.0, 100, clock),
    )


# --------------------------------------------------------------------------------------------------
# The queue
# --------------------------------------------------------------------------------------------------


class WorkQueue:
    """A deduplicating, delaying, rate-limited FIFO of keys (client-go's ``RateLimitingInterface``)."""

    def __init__(
        self,
        rate_limiter: RateLimiter | None = None,
        clock: Clock | None = None,
        name: str = "",
    ) -> None:
        self.name = name
        self._clock: Clock = clock or RealClock()
        self._limiter: RateLimiter = rate_limiter or default_controller_rate_limiter(self._clock)
        self._queue: deque[Key] = deque()
        self._dirty: set[Key] = set()
        self._processing: set[Key] = set()
        # delayed keys: earliest ready time per key, plus a heap with lazy deletion
        self._waiting: dict[Key, float] = {}
        self._heap: list[tuple[float, int, Key]] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._shutting_down = False
        self._metrics = workqueue_metrics(name)
        self._added_at: dict[Key, float] = {}  # when a queued key was added (metrics only)
        self._started_at: dict[Key, float] = {}  # when a processing key was handed out (metrics only)

    # -- adding ---------------------------------------------------------------------------------

    def add(self, key: Key) -> None:
        """Queue ``key`` unless it is already waiting; if it is being processed, queue it after ``done``."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        m = self._metrics
        if m is not None:
            m.adds.inc()
            m.depth.inc()
            self._added_at.setdefault(key, self._clock.now())
        if key in self._processing:
            return
        self._queue.append(key)
        self._wakeup.set()

    def add_after(self, key: Key, delay: float) -> None:
        """Add ``key`` once ``delay`` seconds have passed (the earliest of several requests wins)."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        ready_at = self._clock.now() + delay
        current = self._waiting.get(key)
        if current is not None and current <= ready_at:
            return
        self._waiting[key] = ready_at
        heapq.heappush(self._heap, (ready_at, next(self._seq), key))
        self._wakeup.set()  # a getter may need to wait less now

    def add_rate_limited(self, key: Key) -> None:
        """Add ``key`` after the rate limiter's delay (per-key backoff and the global bucket)."""
        if self._metrics is not None:
            self._metrics.retries.inc()
        self.add_after(key, self._limiter.when(key))

    def forget(self, key: Key) -> None:
        """Stop tracking ``key``'s failures (call after a successful reconcile)."""
        self._limiter.forget(key)

    def num_requeues(self, key: Key) -> int:
        return self._limiter.num_requeues(key)

    # -- taking ---------------------------------------------------------------------------------

    def _promote_ready(self) -> float | None:
        """Move due delayed keys to the queue; return when the next one is due (None if none)."""
        now = self._clock.now()
        while self._heap:
            ready_at, _, key = self._heap[0]
            if self._waiting.get(key) != ready_at:
                heapq.heappop(self._heap)  # superseded by an earlier request
                continue
            if ready_at > now:
                return ready_at
            heapq.heappop(self._heap)
            del self._waiting[key]
            self.add(key)
        return None

    async def get(self) -> Key:
        """The next key to process; raises :class:`ShutDown` once shut down and empty."""
        while True:
            next_ready = self._promote_ready()
            if self._queue:
                key = self._queue.popleft()
                self._processing.add(key)
                self._dirty.discard(key)
                m = self._metrics
                if m is not None:
                    now = self._clock.now()
                    m.depth.dec()
                    added = self._added_at.pop(key, None)
                    if added is not None:
                        m.queue_duration.observe(now - added)
                    self._started_at[key] = now
                return key
            if self._shutting_down:
                raise ShutDown(self.name)
            await self._wait(next_ready)

    async def _wait(self, deadline: float | None) -> None:
        self._wakeup.clear()
        waits: list[asyncio.Task[object]] = [asyncio.ensure_future(self._wakeup.wait())]
        if deadline is not None:
            waits.append(asyncio.ensure_future(self._clock.sleep_until(deadline)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()

    def done(self, key: Key) -> None:
        """Mark ``key`` processed; if it was added meanwhile, it goes back on the queue now."""
        self._processing.discard(key)
        if self._metrics is not None:
            started = self._started_at.pop(key, None)
            if started is not None:
                self._metrics.work_duration.observe(self._clock.now() - started)
        if key in self._dirty:
            self._queue.append(key)
            self._wakeup.set()

    # -- lifecycle ------------------------------------------------------------------------------

    def shut_down(self) -> None:
        """Refuse new keys; getters drain what is queued, then get :class:`ShutDown`.

        Delayed keys that are not yet due are dropped, as in client-go.
        """
        self._shutting_down = True
        self._waiting.clear()
        self._heap.clear()
        self._wakeup.set()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def len(self) -> int:
        """Keys ready to be handed out (not counting delayed or processing ones)."""
        return len(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def processing(self) -> frozenset[Key]:
        return frozenset(self._processing)

    @property
    def waiting(self) -> int:
        """Number of keys held back by :meth:`add_after`."""
        return len(self._waiting)


RateLimitingQueue = WorkQueue


async def run_workers(
    queue: WorkQueue,
    reconcile: Callable[[str], Awaitable[None]],
    n: int = 1,
    max_retries: int | None = None,
) -> None:
    """Run ``n`` workers until the queue shuts down, as sample-controller's ``runWorker`` does.

    Each worker pops a key and awaits ``reconcile(key)``: on success the key's backoff is
    forgotten; on an exception it is logged and the key requeued rate-limited (dropped after
    ``max_retries`` requeues, if given).  ``done`` is always called.  Cancelling this coroutine
    cancels the workers.
    """

    async def worker(index: int) -> None:
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            try:
                await reconcile(str(key))
            except asyncio.CancelledError:
                raise
            except Exception:
                retries = queue.num_requeues(key)
                if max_retries is not None and retries >= max_retries:
                    log.exception("%s: dropping %s after %d retries", queue.name or "queue", key, retries)
                    queue.forget(key)
                else:
                    log.exception("%s: error syncing %s; requeuing", queue.name or "queue", key)
                    queue.add_rate_limited(key)
            else:
                queue.forget(key)
            finally:
                queue.done(key)

    tasks = [asyncio.create_task(worker(i), name=f"{queue.name or 'queue'}-worker-{i}") for i in range(n)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
