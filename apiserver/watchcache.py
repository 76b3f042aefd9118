"""The watch cache: one etcd watch per resource, fanned out to every HTTP watcher.

Like Kubernetes' ``Cacher``, it lists a resource once, keeps the current objects in memory, and
follows one etcd watch.  The last ``capacity`` events are kept in a ring so a watcher that starts
from a recent ``resourceVersion`` is served from memory; older versions fall back to a direct etcd
watch (see :mod:`apiserver.registry`), and compacted ones are 410 Gone.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from apimachinery import errors
from apimachinery.resources import ResourceInfo

from .etcd import KV, Compacted, Etcd, EtcdUnavailable

log = logging.getLogger(__name__)

Filter = Callable[[dict[str, Any]], bool]
Batch = list[tuple[str, dict[str, Any]]]  # watch events (type, object) delivered together


def decode(kv: KV, revision: int | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = orjson.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(
        revision if revision is not None else kv.mod_revision
    )
    return obj


@dataclass(slots=True)
class CacheEvent:
    type: str  # ADDED, MODIFIED, DELETED
    key: str
    obj: dict[str, Any]
    prev: dict[str, Any] | None
    revision: int


class TooOld(Exception):
    pass


INITIAL_EVENTS_END = "k8s.io/initial-events-end"
FRESH_TIMEOUT = 3.0  # Kubernetes' cacher waits this long for a resourceVersion it has not seen yet


def too_large(wanted: int, current: int) -> errors.Timeout:
    """Kubernetes' 504 for a resourceVersion newer than the cache reaches in time."""
    return errors.Timeout(
        f"Too large resource version: {wanted}, current: {current}",
        causes=[{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        retry_after=1,
    )


class Watcher:
    """One client's view of the cache: a queue of events that passed its filter."""

    def __init__(
        self, cache: WatchCache, prefix: str, match: Filter | None, after: int = 0, maxsize: int = 10_000
    ) -> None:
        self.cache = cache
        self.after = after  # only events with a newer revision are for this watcher
        self.prefix = prefix
        self.match = match
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue(maxsize)
        # a watch-list's initial events, delivered by follow() before anything in the queue
        self.initial: list[tuple[str, dict[str, Any]]] = []
        self.closed = False
        self.error: Exception | None = None

    def _passes(self, obj: dict[str, Any] | None) -> bool:
        return obj is not None and (self.match is None or self.match(obj))

    def offer(self, ev: CacheEvent) -> None:
        if self.closed or ev.revision <= self.after or not ev.key.startswith(self.prefix):
            return
        if ev.type == "ADDED":
            out = ("ADDED", ev.obj) if self._passes(ev.obj) else None
        elif ev.type == "DELETED":
            out = ("DELETED", ev.obj) if self._passes(ev.prev or ev.obj) else None
        else:
            cur, old = self._passes(ev.obj), self._passes(ev.prev)
            if cur and old:
                out = ("MODIFIED", ev.obj)
            elif cur:
                out = ("ADDED", ev.obj)
            elif old and ev.prev is not None:
                gone = dict(ev.prev)
                gone["metadata"] = dict(gone.get("metadata") or {}, resourceVersion=str(ev.revision))
                out = ("DELETED", gone)
            else:
                out = None
        if out is not None:
            self._put(out)

    def _put(self, item: tuple[str, dict[str, Any]] | None) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("watcher on %s fell too far behind; closing it", self.prefix)
            self.close(overflow=True)

    def close(self, error: Exception | None = None, overflow: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.error = error
        self.cache._watchers.discard(self)
        if overflow:
            # make room for the end marker
            while not self.queue.empty():
                self.queue.get_nowait()
        if self.queue.full():  # the watcher ends with an error or at shutdown: the marker matters more
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class WatchCache:
    def __init__(self, etcd: Etcd, info: ResourceInfo, capacity: int = 2000) -> None:
        self.etcd = etcd
        self.info = info
        self.prefix = info.key_prefix()
        self.capacity = capacity
        # the keys of ``objects`` in order (kept up to date on add and delete), so a list or a
        # watch-list of one namespace is a bisect, not a sort of the whole resource
        self._keys: list[str] = []
        # each current object's JSON by id(object), encoded once on first use and shared by every
        # watcher and list that sends it; dropped when the object leaves the cache
        self._json: dict[int, bytes] = {}
        self._objects: dict[str, dict[str, Any]] = {}
        self.events: collections.deque[CacheEvent] = collections.deque(maxlen=capacity)
        self.start_revision = 0  # events after this revision are all in `events`
        self.revision = 0  # everything up to this revision has been applied
        self.ready = asyncio.Event()
        self._watchers: set[Watcher] = set()
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()
        self._fresh_waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def objects(self) -> dict[str, dict[str, Any]]:
        """The current objects by etcd key (read-only for callers: replace the whole dict)."""
        return self._objects

    @objects.setter
    def objects(self, objects: dict[str, dict[str, Any]]) -> None:
        self._objects = objects
        self._keys = sorted(objects)
        self._json = {}

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watchcache:{self.info.plural}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for w in list(self._watchers):
            w.close()

    async def _relist(self) -> None:
        objects: dict[str, dict[str, Any]] = {}
        start: bytes | None = None
        rev = 0
        while True:
            kvs, more, read_rev = await self.etcd.range(self.prefix, start=start, limit=500, revision=rev)
            rev = rev or read_rev
            for kv in kvs:
                objects[kv.key.decode()] = decode(kv)
            if not more or not kvs:
                break
            start = kvs[-1].key + b"\0"
        self.objects = objects
        self.events.clear()
        self.start_revision = rev
        self.revision = rev
        # watchers that were following the old history can't be continued seamlessly
        for w in list(self._watchers):
            w.close(error=Compacted(rev))

    async def _run(self) -> None:
        backoff = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                    self.ready.set()
                async for batch in self.etcd.watch(self.prefix, self.revision + 1, self._progress):
                    backoff = 0.2
                    if isinstance(batch, int):
                        self._advance(batch)
                        continue
                    for ev in batch:
                        self._apply(ev)
            except asyncio.CancelledError:
                raise
            except Compacted:
                log.warning("watch cache for %s: history compacted, relisting", self.info.plural)
                need_list = True
            except EtcdUnavailable as e:
                log.warning("watch cache for %s: %s; retrying in %.1fs", self.info.plural, e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("watch cache for %s failed; relisting", self.info.plural)
                need_list = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def request_progress(self) -> None:
        self._progress.set()

    def _advance(self, revision: int) -> None:
        if revision > self.revision:
            self.revision = revision
            if self._fresh_waiters:
                waiting = []
                for want, fut in self._fresh_waiters:
                    if want <= revision:
                        if not fut.done():
                            fut.set_result(None)
                    else:
                        waiting.append((want, fut))
                self._fresh_waiters = waiting

    async def wait_fresh(self, revision: int, timeout: float = FRESH_TIMEOUT) -> None:
        """Return once everything up to ``revision`` is applied; 504 (Kubernetes' "Too large
        resource version") if that does not happen within ``timeout``.

        An idle resource's cache only learns of newer store revisions from a progress
        notification, so one is requested.
        """
        if revision <= self.revision:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (revision, fut)
        self._fresh_waiters.append(entry)
        self.request_progress()
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise too_large(revision, self.revision) from None
        finally:
            if entry in self._fresh_waiters:
                self._fresh_waiters.remove(entry)

    def _apply(self, ev: Any) -> None:
        key = ev.kv.key.decode()
        prev = self._objects.get(key)
        if ev.type == "DELETE":
            if prev is None and ev.prev is not None:
                prev = decode(ev.prev)
            if prev is None:
                self._advance(ev.revision)
                return
            self._objects.pop(key, None)
            self._json.pop(id(prev), None)
            i = bisect.bisect_left(self._keys, key)
            if i < len(self._keys) and self._keys[i] == key:
                del self._keys[i]
            gone = dict(prev)
            gone["metadata"] = dict(prev.get("metadata") or {}, resourceVersion=str(ev.revision))
            cev = CacheEvent("DELETED", key, gone, prev, ev.revision)
        else:
            obj = decode(ev.kv)
            self._objects[key] = obj
            if prev is None:
                bisect.insort(self._keys, key)
            else:
                self._json.pop(id(prev), None)
            etype = "ADDED" if ev.kv.create_revision == ev.kv.mod_revision or prev is None else "MODIFIED"
            cev = CacheEvent(etype, key, obj, prev, ev.revision)
        if len(self.events) == self.events.maxlen:
            self.start_revision = self.events[0].revision
        self.events.append(cev)
        self._advance(ev.revision)
        for w in list(self._watchers):
            w.offer(cev)

    # --- reads -------------------------------------------------------------------------------------
    def keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix``, in order."""
        lo = bisect.bisect_left(self._keys, prefix)
        hi = bisect.bisect_left(self._keys, prefix + "\U0010ffff", lo)
        return self._keys[lo:hi]

    def list(self, prefix: str) -> tuple[list[dict[str, Any]], int]:
        objects = self._objects
        return [objects[k] for k in self.keys(prefix)], self.revision

    def encoded(self, obj: dict[str, Any]) -> bytes:
        """``obj`` as JSON; for an object the cache holds now, encoded once and shared."""
        raw = self._json.get(id(obj))
        if raw is not None:
            return raw
        raw = orjson.dumps(obj)
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        # only an object the cache holds now is remembered: its entry goes when it leaves the
        # cache, so an id in ``_json`` always belongs to a live object
        if isinstance(name, str) and self._objects.get(self.info.key(meta.get("namespace"), name)) is obj:
            self._json[id(obj)] = raw
        return raw

    def get(self, key: str) -> dict[str, Any] | None:
        return self._objects.get(key)

    def watch(self, prefix: str, match: Filter | None, revision: int | None) -> Watcher:
        """Start a watcher.  ``revision`` None means: current state as ADDED events, then changes.

        Raises :class:`TooOld` when events after ``revision`` are no longer all in memory.
        """
        w = Watcher(self, prefix, match, after=revision if revision is not None else self.revision)
        if revision is None:
            for key in self.keys(prefix):
                obj = self._objects[key]
                if match is None or match(obj):
                    w._put(("ADDED", obj))
        else:
            if revision < self.start_revision:
                raise TooOld(revision)
            for ev in self.events:
                if ev.revision > revision:
                    w.offer(ev)
        self._watchers.add(w)
        return w

    def watch_list(self, prefix: str, match: Filter | None) -> Watcher:
        """A watch-list (``sendInitialEvents=true``) watcher: the current objects under ``prefix``
        that pass ``match`` as ADDED events, then a BOOKMARK marking the end of the initial events
        at the revision of that state, then every later change.

        The initial state waits in ``Watcher.initial`` (not in the queue, which keeps its usual room
        for live events).  The BOOKMARK's object is metadata only; the caller adds the kind.
        """
        objects = self._objects
        w = Watcher(self, prefix, match, after=self.revision)
        current = (objects[k] for k in self.keys(prefix))
        w.initial = [("ADDED", o) for o in current if match is None or match(o)]
        end = {"resourceVersion": str(self.revision), "annotations": {INITIAL_EVENTS_END: "true"}}
        w.initial.append(("BOOKMARK", {"metadata": end}))
        self._watchers.add(w)
        return w

    @staticmethod
    async def follow(w: Watcher, batch: int = 1000) -> AsyncIterator[Batch]:
        """The events of ``w`` in batches (what is queued, up to ``batch``, so a large initial state
        goes out in few writes); 410 Gone when the cache was reset under it."""
        try:
            initial = w.initial
            w.initial = []
            for start in range(0, len(initial), batch):
                yield initial[start : start + batch]
            while True:
                items = [await w.queue.get()]
                while items[-1] is not None and len(items) < batch and not w.queue.empty():
                    items.append(w.queue.get_nowait())
                end = items[-1] is None
                ready = [i for i in items if i is not None]
                if ready:
                    yield ready
                if end:
                    if isinstance(w.error, Compacted) or w.error is None and w.closed:
                        raise errors.Gone("the watch cache was reset; please relist")
                    return
        finally:
            w.close()

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)
