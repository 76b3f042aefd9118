"""The kubelet's event recorder: Kubernetes' reasons, pointed at the pod, deduplicated by count.

Like client-go's ``EventRecorder`` with its correlator, an event equal to one already recorded
(same object, ``fieldPath``, type, reason, message and source) is not created again: the existing
Event's ``count`` goes up and ``lastTimestamp`` moves (a merge patch), so ``kubectl describe pod``
shows ``x5 over 2m``.  Writes go through one queue drained by one task, off the pods' sync path,
so a slow API server never slows a sync and writes for one key never race.

:func:`correlate` is the pure part (unit-tested): it decides create vs. patch from a bounded
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
from typing import Any

from apimachinery import errors
from apimachinery.resources import kind_info

log = logging.getLogger(__name__)

Obj = dict[str, Any]

EVENTS = kind_info("v1", "Event")
CACHE_SIZE = 4096
MAX_HOLD = 1.0  # seconds an event may be held back while pods start


def event_key(body: Obj) -> tuple[str, ...]:
    """What makes two events "the same" (client-go's ``getEventKey`` without the timestamp)."""
    io = body.get("involvedObject") or {}
    src = body.get("source") or {}
    return (
        str(src.get("component", "")),
        str(src.get("host", "")),
        str(io.get("kind", "")),
        str(io.get("namespace", "")),
        str(io.get("name", "")),
        str(io.get("uid", "")),
        str(io.get("fieldPath", "")),
        str(body.get("type", "")),
        str(body.get("reason", "")),
        str(body.get("message", "")),
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
    meta = body.get("metadata") or {}
    if seen is None:
        cache[key] = Seen(
            str(meta.get("name", "")), str(meta.get("namespace", "")), 1, body["firstTimestamp"]
        )
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
        return Action("create", body)
    cache.move_to_end(key)
    seen.count += 1
    return Action("patch", body, seen.name, seen.count)


def new_event(obj: Obj, etype: str, reason: str, message: str, field_path: str, host: str, now: str) -> Obj:
    """An ``v1.Event`` about ``obj`` (a pod) from the kubelet on ``host``."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace", "default")
    involved: Obj = {
        "apiVersion": obj.get("apiVersion", "v1"),
        "kind": obj.get("kind", "Pod"),
        "name": meta.get("name"),
        "namespace": ns,
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    if field_path:
        involved["fieldPath"] = field_path
    return {
        "apiVersion": "v1",
        "kind": "Event",
        # client-go names events <object>.<hex unix nanos>; random hex keeps names unique too
        "metadata": {"name": f"{meta.get('name')}.{secrets.token_hex(8)}", "namespace": ns},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": etype,
        "source": {"component": "kubelet", "host": host},
        "reportingComponent": "kubelet",
        "reportingInstance": host,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "eventTime": None,
        "count": 1,
    }


class EventRecorder:
    """Queue events and write them (create, or patch the count of an equal one) in order."""

    def __init__(self, client: Any, host: str, max_hold: float = MAX_HOLD) -> None:
        self.client = client
        self.host = host
        self.max_hold = max_hold
        self._queue: asyncio.Queue[tuple[float, Obj]] = asyncio.Queue(maxsize=10000)
        self._cache: OrderedDict[tuple[str, ...], Seen] = OrderedDict()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold event writes back while the block runs (a pod starting): on a small host an
        event write (API server and etcd work) competes for the CPU with the container start and
        the status write that end the pod's start-up.  Held events are written once no block
        runs, or after ``max_hold`` seconds at the latest; their timestamps are those of
        :meth:`record`."""
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    def record(self, obj: Obj, etype: str, reason: str, message: str, field_path: str, now: str) -> None:
        meta = obj.get("metadata") or {}
        log.info("%s/%s: %s %s: %s", meta.get("namespace"), meta.get("name"), etype, reason, message)
        body = new_event(obj, etype, reason, message, field_path, self.host, now)
        try:
            self._queue.put_nowait((time.monotonic(), body))
        except asyncio.QueueFull:
            log.warning("event queue full; dropping %s for %s", reason, meta.get("name"))

    async def run(self) -> None:
        while True:
            recorded, body = await self._queue.get()
            left = recorded + self.max_hold - time.monotonic()
            if not self._idle.is_set() and left > 0:
                try:
                    await asyncio.wait_for(self._idle.wait(), left)
                except TimeoutError:
                    pass
            try:
                await self._write(body)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - events are best effort
                log.debug("could not record event %s: %s", body.get("reason"), exc)

    async def flush(self, timeout: float = 2.0) -> None:
        """Write what is queued (on shutdown), for at most ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._queue.empty() and loop.time() < deadline:
            try:
                await asyncio.wait_for(self._write(self._queue.get_nowait()[1]), deadline - loop.time())
            except (Exception, TimeoutError):  # noqa: BLE001
                break

    async def _write(self, body: Obj) -> None:
        action = correlate(self._cache, body)
        if action.verb == "patch":
            ns = (body.get("metadata") or {}).get("namespace")
            try:
                await self.client.patch(
                    EVENTS,
                    action.name,
                    {
                        "count": action.count,
                        "lastTimestamp": body["lastTimestamp"],
                        "message": body["message"],
                    },
                    ns,
                    patch_type="merge",
                )
                return
            except errors.NotFound:
                # expired or deleted: start a new series under a new name
                key = event_key(body)
                self._cache.pop(key, None)
                correlate(self._cache, body)
        await self.client.create(EVENTS, body)
