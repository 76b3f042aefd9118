"""Informers: a local, always-current cache of one kind, fed by list-then-watch.

This is client-go's reflector + indexer + shared informer, in asyncio:

1. **List** every object (paginated) and remember the List's ``metadata.resourceVersion``.
2. **Watch** from exactly that resourceVersion, so nothing that happened between the list and the
   watch is lost; ask for **bookmarks**, which only move the resourceVersion forward.
3. When a watch ends normally (the server's ``timeoutSeconds``), watch again from the last
   resourceVersion seen.  When the server answers **410 Gone** (the version was compacted away),
   list again: the new list *replaces* the cache, and the differences are delivered as synthetic
   add/update/delete events, so handlers see every object that vanished while we were away.
4. A watch whose connection was closed under it (the server went away mid-stream, or the client
   closed its connections, as the kubelet does after renewing its client certificate) is a watch
   that ended: it is started again at once from the last resourceVersion, logged at debug level,
   as client-go's reflector does (its stream watcher treats EOF and a reset as the end of the
   watch).  Only a second closed connection in a row, with no event in between, backs off.
5. Any other failure waits with exponential backoff and jitter (0.8 s doubling to 30 s) before
   listing again -- never a hot loop.

Handlers (``on_add(obj)``, ``on_update(old, new)``, ``on_delete(obj)``, sync or async) should only
enqueue keys; the objects they receive and the cache's objects are shared and must not be
mutated -- copy before changing.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import errors
from .client import Client, Obj
from .resources import ResourceInfo

log = logging.getLogger(__name__)

IndexFunc = Callable[[Obj], Iterable[str] | str | None]
Handler = Callable[..., Awaitable[None] | None]

NAMESPACE_INDEX = "namespace"


def object_key(obj: Obj) -> str:
    """``namespace/name`` for namespaced objects, ``name`` for cluster-scoped ones (client-go's key)."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    name = meta.get("name", "")
    return f"{namespace}/{name}" if namespace else str(name)


def split_key(key: str) -> tuple[str | None, str]:
    """The inverse of :func:`object_key`: ``(namespace or None, name)``."""
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else (None, namespace)


def resource_version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def namespace_index(obj: Obj) -> str | None:
    return (obj.get("metadata") or {}).get("namespace")


# --------------------------------------------------------------------------------------------------
# Store / Indexer
# --------------------------------------------------------------------------------------------------


class Store:
    """A keyed cache with secondary indexes (client-go's ``cache.Indexer``).

    ``add_index("byNode", lambda pod: pod["spec"].get("nodeName"))`` then
    ``by_index("byNode", "node-1")``.  An index function returns one value, several, or None.
    A ``namespace`` index is always present.
    """

    def __init__(self, key_func: Callable[[Obj], str] = object_key) -> None:
        self.key_func = key_func
        self._items: dict[str, Obj] = {}
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self.add_index(NAMESPACE_INDEX, namespace_index)

    # -- reading --------------------------------------------------------------------------------

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def get_object(self, obj: Obj) -> Obj | None:
        return self._items.get(self.key_func(obj))

    def list(self) -> builtins.list[Obj]:
        return list(self._items.values())

    def keys(self) -> builtins.list[str]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def by_index(self, name: str, value: str) -> builtins.list[Obj]:
        if name not in self._indices:
            raise KeyError(f"no index named {name!r}")
        return [self._items[k] for k in sorted(self._indices[name].get(value, ()))]

    def index_keys(self, name: str, value: str) -> builtins.list[str]:
        if name not in self._indices:
            raise KeyError(f"no index named {name!r}")
        return sorted(self._indices[name].get(value, ()))

    # -- indexes --------------------------------------------------------------------------------

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Add an index (existing objects are indexed at once)."""
        self._index_funcs[name] = fn
        self._indices[name] = {}
        for key, obj in self._items.items():
            self._index_one(name, key, obj)

    @staticmethod
    def _values(fn: IndexFunc, obj: Obj) -> builtins.list[str]:
        value = fn(obj)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return [v for v in value if v is not None]

    def _index_one(self, name: str, key: str, obj: Obj) -> None:
        for value in self._values(self._index_funcs[name], obj):
            self._indices[name].setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, fn in self._index_funcs.items():
            index = self._indices[name]
            for value in self._values(fn, obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    # -- writing (the informer's job; controllers treat the store as read-only) ------------------

    def add(self, obj: Obj) -> Obj | None:
        """Insert or replace; returns the previous object with that key."""
        key = self.key_func(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name in self._index_funcs:
            self._index_one(name, key, obj)
        return old

    update = add

    def delete(self, obj_or_key: Obj | str) -> Obj | None:
        """Remove; returns the removed object, if it was there."""
        key = obj_or_key if isinstance(obj_or_key, str) else self.key_func(obj_or_key)
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def replace(
        self, objs: Iterable[Obj]
    ) -> tuple[builtins.list[Obj], builtins.list[tuple[Obj, Obj]], builtins.list[Obj]]:
        """Make the store hold exactly ``objs``; return ``(added, updated (old, new), deleted)``.

        An object counts as updated when its resourceVersion changed.
        """
        new = {self.key_func(o): o for o in objs}
        deleted = [self._items[k] for k in list(self._items) if k not in new]
        added: builtins.list[Obj] = []
        updated: builtins.list[tuple[Obj, Obj]] = []
        for key, obj in new.items():
            old = self._items.get(key)
            if old is None:
                added.append(obj)
            elif resource_version(old) != resource_version(obj) or not resource_version(obj):
                updated.append((old, obj))
        for obj in deleted:
            self.delete(obj)
        for obj in new.values():
            self.add(obj)
        return added, updated, deleted


Indexer = Store


# --------------------------------------------------------------------------------------------------
# Informer
# --------------------------------------------------------------------------------------------------


@dataclass
class EventHandlers:
    on_add: Handler | None = None
    on_update: Handler | None = None
    on_delete: Handler | None = None


class Backoff:
    """Exponential backoff with full jitter: the n-th failure waits a random time in ``[d, 2d)``."""

    def __init__(
        self,
        initial: float = 0.8,
        maximum: float = 30.0,
        jitter: float = 1.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.rand = rand
        self.failures = 0

    def next_delay(self) -> float:
        base = min(self.initial * (2.0**self.failures), self.maximum)
        self.failures = min(self.failures + 1, 64)
        return base * (1.0 + self.jitter * self.rand())

    def reset(self) -> None:
        self.failures = 0


class Informer:
    """Keeps :attr:`store` in step with the API server for one kind (optionally one namespace/selector).

    ::

        pods = Informer(client, PODS, namespace="default")
        pods.add_event_handler(on_add=enqueue, on_update=lambda old, new: enqueue(new))
        task = asyncio.create_task(pods.run())
        await pods.wait_for_sync()
        pods.store.get("default/web-0")
        ...
        pods.stop(); await task
    """

    def __init__(
        self,
        client: Client,
        info: ResourceInfo,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync_period: float | None = None,
        *,
        page_size: int = 500,
        min_watch_timeout: int = 300,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.info = info
        self.namespace = namespace if info.namespaced else None
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.page_size = page_size
        self.min_watch_timeout = min_watch_timeout
        self.store = Store()
        self.last_resource_version = ""
        self._handlers: list[EventHandlers] = []
        self._backoff = backoff or Backoff(rand=rand)
        self._sleep = sleep
        self._rand = rand
        self._synced = asyncio.Event()
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self.relists = 0  # how many times the list was read (1 on a healthy run)
        self._closed_in_a_row = 0  # watches ended by a closed connection since the last event

    def __repr__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"<Informer {self.info.plural}{where} rv={self.last_resource_version}>"

    # -- handlers -------------------------------------------------------------------------------

    def add_event_handler(
        self,
        on_add: Handler | None = None,
        on_update: Handler | None = None,
        on_delete: Handler | None = None,
    ) -> EventHandlers:
        """Register handlers.  Added after the first sync, ``on_add`` is not replayed here;
        use :meth:`add_event_handler_and_replay` for that (a coroutine, as handlers may be async).
        """
        handlers = EventHandlers(on_add, on_update, on_delete)
        self._handlers.append(handlers)
        return handlers

    async def add_event_handler_and_replay(
        self,
        on_add: Handler | None = None,
        on_update: Handler | None = None,
        on_delete: Handler | None = None,
    ) -> EventHandlers:
        """Register handlers and deliver ``on_add`` for every cached object, as client-go does."""
        handlers = self.add_event_handler(on_add, on_update, on_delete)
        if on_add is not None:
            for obj in self.store.list():
                await self._call(on_add, obj)
        return handlers

    # decorator forms: @informer.on_add
    def on_add(self, fn: Handler) -> Handler:
        self.add_event_handler(on_add=fn)
        return fn

    def on_update(self, fn: Handler) -> Handler:
        self.add_event_handler(on_update=fn)
        return fn

    def on_delete(self, fn: Handler) -> Handler:
        self.add_event_handler(on_delete=fn)
        return fn

    async def _call(self, fn: Handler, *args: Obj) -> None:
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: event handler %r failed", self.info.plural, fn)

    async def _emit_add(self, obj: Obj) -> None:
        for h in list(self._handlers):
            if h.on_add is not None:
                await self._call(h.on_add, obj)

    async def _emit_update(self, old: Obj, new: Obj) -> None:
        for h in list(self._handlers):
            if h.on_update is not None:
                await self._call(h.on_update, old, new)

    async def _emit_delete(self, obj: Obj) -> None:
        for h in list(self._handlers):
            if h.on_delete is not None:
                await self._call(h.on_delete, obj)

    # -- sync state -----------------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        """True once the first list has been stored and its add events delivered."""
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Wait until :attr:`has_synced`; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # -- running --------------------------------------------------------------------------------

    async def run(self) -> None:
        """List and watch until :meth:`stop` (returns then) or cancellation."""
        if self._task is not None:
            raise RuntimeError(f"{self!r} is already running")
        if self._stopped:  # stopped before it got to run (e.g. a factory stopped right after start)
            return
        self._task = asyncio.create_task(self._run_loop(), name=f"informer-{self.info.plural}")
        try:
            await self._task
        except asyncio.CancelledError:
            if not self._stopped:
                self._task.cancel()
                raise
        finally:
            self._task = None

    def stop(self) -> None:
        """Stop the informer; :meth:`run` returns soon after.  Safe to call more than once."""
        self._stopped = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    @property
    def stopped(self) -> bool:
        return self._stopped

    async def _run_loop(self) -> None:
        resync = None
        if self.resync_period:
            resync = asyncio.create_task(self._resync_loop(self.resync_period))
        try:
            while not self._stopped:
                try:
                    await self._list_and_watch()
                except errors.Gone as exc:
                    log.info("%s: %s; listing again", self.info.plural, exc.message)
                    self.last_resource_version = ""
                except Exception as exc:
                    delay = self._backoff.next_delay()
                    log.warning("%s: list/watch failed (%s); retrying in %.1fs", self.info.plural, exc, delay)
                    await self._sleep(delay)
        finally:
            if resync is not None:
                resync.cancel()
                await asyncio.gather(resync, return_exceptions=True)

    async def _list_and_watch(self) -> None:
        await self._relist()
        while not self._stopped:
            got_events = await self._watch_once()
            if got_events:
                self._backoff.reset()
            elif self._closed_in_a_row:
                pass  # its connection was closed under it: watch again at once (see _watch_once)
            else:
                # A watch that ended without delivering anything (not even a bookmark) may mean a
                # server that closes at once; wait a little instead of reconnecting in a tight loop.
                await self._sleep(self._backoff.next_delay())

    async def _relist(self) -> None:
        listing = await self.client.list_all(
            self.info, self.namespace, self.label_selector, self.field_selector, self.page_size
        )
        self.relists += 1
        self._closed_in_a_row = 0
        items = listing.get("items") or []
        added, updated, deleted = self.store.replace(items)
        self.last_resource_version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
        log.debug(
            "%s: listed %d objects at rv %s (+%d ~%d -%d)",
            self.info.plural,
            len(items),
            self.last_resource_version,
            len(added),
            len(updated),
            len(deleted),
        )
        for obj in deleted:
            await self._emit_delete(obj)
        for old, new in updated:
            await self._emit_update(old, new)
        for obj in added:
            await self._emit_add(obj)
        self._synced.set()

    async def _watch_once(self) -> bool:
        """One watch request from the last resourceVersion; True if any event arrived."""
        timeout = int(self.min_watch_timeout * (1.0 + self._rand()))
        stream = self.client.watch(
            self.info,
            self.namespace,
            resource_version=self.last_resource_version or None,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=timeout,
            allow_bookmarks=True,
        )
        got = False
        try:
            async for etype, obj in stream:
                got = True
                self._closed_in_a_row = 0
                await self._handle_event(etype, obj)
                if self._stopped:
                    break
        except errors.StatusError as exc:
            if not _connection_closed(exc) or self._closed_in_a_row:
                raise  # any other failure, or closed again at once: back off and list again
            self._closed_in_a_row += 1
            log.debug(
                "%s: watch connection closed (%s); watching again from rv %s",
                self.info.plural,
                type(exc.__cause__).__name__,
                self.last_resource_version,
            )
            return got  # a watch that ended: watched again at once
        finally:
            await stream.aclose()
        self._closed_in_a_row = 0
        return got

    async def _handle_event(self, etype: str, obj: Obj) -> None:
        rv = resource_version(obj)
        if etype == "BOOKMARK":
            pass
        elif etype in ("ADDED", "MODIFIED"):
            old = self.store.add(obj)
            if old is None:
                await self._emit_add(obj)
            else:
                await self._emit_update(old, obj)
        elif etype == "DELETED":
            old = self.store.delete(obj)
            await self._emit_delete(obj if obj.get("metadata") else (old or obj))
        if rv:
            self.last_resource_version = rv

    async def _resync_loop(self, period: float) -> None:
        """Every ``period`` seconds deliver ``on_update(obj, obj)`` for every cached object."""
        while not self._stopped:
            await self._sleep(period)
            if not self.has_synced:
                continue
            for obj in self.store.list():
                await self._emit_update(obj, obj)


def _connection_closed(exc: errors.StatusError) -> bool:
    """Whether ``exc`` is the client's report of a connection closed while a response was read
    (``ReadError``: reset or closed locally; ``RemoteProtocolError``: the peer closed mid-body),
    not of a server that could not be reached or answered with an error."""
    import httpx

    return isinstance(exc.__cause__, httpx.ReadError | httpx.RemoteProtocolError)


# --------------------------------------------------------------------------------------------------
# Shared informers
# --------------------------------------------------------------------------------------------------

InformerKey = tuple[str, str, str, str | None, str | None, str | None]


class SharedInformerFactory:
    """One informer per (resource, namespace, selectors) in a process, started and stopped together.

    Controllers ask the factory instead of building informers, so two controllers that both watch
    pods share one watch and one cache.
    """

    def __init__(self, client: Client, default_resync: float | None = None, **informer_kwargs: Any) -> None:
        self.client = client
        self.default_resync = default_resync
        self._informer_kwargs = informer_kwargs
        self._informers: dict[InformerKey, Informer] = {}
        self._tasks: dict[InformerKey, asyncio.Task[None]] = {}

    def informer(
        self,
        info: ResourceInfo,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync_period: float | None = None,
    ) -> Informer:
        key: InformerKey = (
            info.group,
            info.version,
            info.plural,
            namespace if info.namespaced else None,
            label_selector or None,
            field_selector or None,
        )
        informer = self._informers.get(key)
        if informer is None:
            informer = Informer(
                self.client,
                info,
                namespace,
                label_selector,
                field_selector,
                resync_period if resync_period is not None else self.default_resync,
                **self._informer_kwargs,
            )
            self._informers[key] = informer
        return informer

    @property
    def informers(self) -> list[Informer]:
        return list(self._informers.values())

    def start(self) -> None:
        """Start every informer not yet running (call again after asking for more)."""
        for key, informer in self._informers.items():
            if key not in self._tasks:
                self._tasks[key] = asyncio.create_task(informer.run(), name=f"informer-{key[2]}")

    async def wait_for_cache_sync(self, timeout: float | None = None) -> bool:
        """Wait until every started informer has synced; False on timeout."""
        waits = [self._informers[k].wait_for_sync() for k in self._tasks]
        try:
            results = await asyncio.wait_for(asyncio.gather(*waits), timeout)
        except TimeoutError:
            return False
        return all(results)

    async def stop(self) -> None:
        """Stop every informer and wait for their tasks to end."""
        for informer in self._informers.values():
            informer.stop()
        tasks = list(self._tasks.values())
        self._tasks.clear()
        await asyncio.gather(*tasks, return_exceptions=True)
