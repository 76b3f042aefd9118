"""The one recorder of ``core/v1`` Events, deduplicated by count as client-go's recorder does.

Every component records through :class:`EventRecorder`: ``recorder.event(obj, "Normal",
"SuccessfulCreate", "Created pod: web-abcde")`` never blocks — the event goes on a bounded queue
that one task (:meth:`EventRecorder.run`) writes in order, off the caller's path;
``await recorder.write(...)`` writes at once instead.  Like client-go's correlator, an event equal
to one already recorded (same source, object, ``fieldPath``, type, reason and message) is not
created again: the existing Event's ``count`` goes up and ``lastTimestamp`` moves (a merge
patch), so ``kubectl describe`` shows ``x5 over 2m``.  If that Event is gone (TTL, deleted) a new
series starts.  :func:`correlate` is the pure part: it decides create vs. patch from a bounded
cache of recent events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from . import errors
from .client import Client
from .resources import kind_info
from .timefmt import rfc3339

log = logging.getLogger(__name__)

Obj = dict[str, Any]

EVENTS = kind_info("v1", "Event")
NORMAL = "Normal"
WARNING = "Warning"
CACHE_SIZE = 4096  # events remembered for counting
QUEUE_SIZE = 10000  # events waiting to be written; more are dropped
MAX_MESSAGE = 1024


class Recorder(Protocol):
    """What code that reports events needs (a :class:`EventRecorder` or a :class:`FakeRecorder`)."""

    def event(self, obj: Obj, event_type: str, reason: str, message: str) -> None: ...


def involved_object(obj: Obj, field_path: str = "") -> Obj:
    """The reference to ``obj`` an Event points at (fields ``obj`` does not have are left out)."""
    meta = obj.get("metadata") or {}
    ref = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
        "fieldPath": field_path,
    }
    return {k: v for k, v in ref.items() if v}


def new_event(
    obj: Obj,
    event_type: str,
    reason: str,
    message: str,
    now: str,
    component: str,
    host: str | None = None,
    instance: str | None = None,
    field_path: str = "",
) -> Obj:
    """A ``v1.Event`` about ``obj`` from ``component`` (on ``host``, when it runs on one)."""
    involved = involved_object(obj, field_path)
    namespace = involved.get("namespace") or "default"
    source = {"component": component, "host": host} if host else {"component": component}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        # client-go names events <object>.<hex unix nanos>; random hex keeps names unique too
        "metadata": {
            "name": f"{involved.get('name', 'unknown')}.{secrets.token_hex(8)}",
            "namespace": namespace,
        },
        "involvedObject": involved,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "type": event_type,
        "source": source,
        "reportingComponent": component,
        "reportingInstance": instance or host or component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def event_key(body: Obj) -> tuple[str, ...]:
    """What makes two events "the same" (client-go's ``getEventKey`` without the timestamp)."""
    io = body.get("involvedObject") or {}
    src = body.get("source") or {}
    return (
        *(str(src.get(k, "")) for k in ("component", "host")),
        *(str(io.get(k, "")) for k in ("kind", "namespace", "name", "uid", "fieldPath")),
        *(str(body.get(k, "")) for k in ("type", "reason", "message")),
    )


@dataclass
class Seen:
    name: str
    namespace: str
    count: int
    first: str


@dataclass
class Action:
    """``create`` a new Event (``body``), or ``patch`` the one named ``name`` to ``count``."""

    verb: str
    body: Obj
    name: str = ""
    count: int = 1


def correlate(cache: OrderedDict[tuple[str, ...], Seen], body: Obj) -> Action:
    """Create or patch; updates ``cache`` (bounded to :data:`CACHE_SIZE`, least recent out)."""
    key = event_key(body)
    seen = cache.get(key)
    if seen is None:
        meta = body.get("metadata") or {}
        cache[key] = Seen(
            str(meta.get("name", "")), str(meta.get("namespace", "")), 1, body["firstTimestamp"]
        )
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
        return Action("create", body)
    cache.move_to_end(key)
    seen.count += 1
    return Action("patch", body, seen.name, seen.count)


class EventRecorder:
    """Writes Events for ``component``: queued (:meth:`event`, run :meth:`run` as a task) or at
    once (:meth:`write`).  ``host`` goes into ``source.host``; ``instance`` (default ``host``) is
    the ``reportingInstance``."""

    def __init__(
        self,
        client: Client,
        component: str,
        host: str | None = None,
        instance: str | None = None,
        max_hold: float = 0.0,
    ) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.instance = instance
        self.max_hold = max_hold
        self._queue: asyncio.Queue[tuple[float, Obj]] = asyncio.Queue(QUEUE_SIZE)
        self._cache: OrderedDict[tuple[str, ...], Seen] = OrderedDict()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def new_event(
        self, obj: Obj, event_type: str, reason: str, message: str, field_path: str = "", now: str = ""
    ) -> Obj:
        return new_event(
            obj,
            event_type,
            reason,
            message,
            now or rfc3339(),
            self.component,
            self.host,
            self.instance,
            field_path,
        )

    def event(
        self, obj: Obj, event_type: str, reason: str, message: str, field_path: str = "", now: str = ""
    ) -> None:
        """Queue an event (``now``: its RFC 3339 time, default the current time)."""
        body = self.new_event(obj, event_type, reason, message, field_path, now)
        log.debug(
            "%s %s: %s %s: %s",
            body["involvedObject"].get("kind"),
            body["involvedObject"].get("name"),
            event_type,
            reason,
            message,
        )
        try:
            self._queue.put_nowait((time.monotonic(), body))
        except asyncio.QueueFull:
            log.warning("event queue full; dropping %s for %s", reason, body["involvedObject"].get("name"))

    async def write(self, obj: Obj, event_type: str, reason: str, message: str) -> None:
        """Create or count the event now; failures are logged, never raised (best effort)."""
        await self._write_logged(self.new_event(obj, event_type, reason, message))

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold queued writes back while the block runs (a pod starting): on a small host an
        event write (API server and etcd work) competes for the CPU with the work that matters.
        Held events are written once no block runs, or after ``max_hold`` seconds at the
        latest; their timestamps are those of :meth:`event`."""
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def run(self) -> None:
        while True:
            recorded, body = await self._queue.get()
            left = recorded + self.max_hold - time.monotonic()
            if not self._idle.is_set() and left > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), left)
            await self._write_logged(body)

    async def flush(self, timeout: float = 2.0) -> None:
        """Write what is queued (on shutdown), for at most ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._queue.empty() and loop.time() < deadline:
            try:
                await asyncio.wait_for(self._write(self._queue.get_nowait()[1]), deadline - loop.time())
            except (Exception, TimeoutError):  # noqa: BLE001
                break

    async def _write_logged(self, body: Obj) -> None:
        try:
            await self._write(body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - events are best effort, as in client-go
            log.warning(
                "could not record event %s for %s: %s",
                body.get("reason"),
                body["involvedObject"].get("name"),
                exc,
            )

    async def _write(self, body: Obj) -> None:
        key = event_key(body)
        action = correlate(self._cache, body)
        if action.verb == "patch":
            patch = {
                "count": action.count,
                "lastTimestamp": body["lastTimestamp"],
                "message": body["message"],
            }
            try:
                await self.client.patch(EVENTS, action.name, patch, body["metadata"]["namespace"])
                return
            except errors.NotFound:
                # expired or deleted: start a new series under this event's own name
                self._cache.pop(key, None)
                correlate(self._cache, body)
            except Exception:
                seen = self._cache.get(key)
                if seen is not None:
                    seen.count -= 1  # not counted on the server: count it with the next one
                raise
        try:
            await self.client.create(EVENTS, body)
        except Exception:
            self._cache.pop(key, None)  # not written: the next one is a create again
            raise


class FakeRecorder:
    """Collects ``"Type Reason Message"`` strings (client-go's ``record.FakeRecorder``)."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def event(self, obj: Obj, event_type: str, reason: str, message: str) -> None:
        self.events.append(f"{event_type} {reason} {message}")
