"""An EventRecorder writing core/v1 Events, deduplicated by count as client-go's recorder does.

``recorder.event(obj, "Normal", "SuccessfulCreate", "Created pod: web-abcde")`` never blocks: the
event goes on a bounded in-memory queue that one owned task sends.  The same (object, type, reason,
message) seen again within the cache's memory PATCHes the existing Event's ``count`` and
``lastTimestamp`` instead of creating another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from apimachinery import errors
from apimachinery.client import Client, Obj
from apimachinery.resources import kind_info
from apimachinery.timefmt import rfc3339

from .util import WallClock, wall_clock

log = logging.getLogger(__name__)

_EVENTS = kind_info("v1", "Event")
assert _EVENTS is not None
EVENTS = _EVENTS

NORMAL = "Normal"
WARNING = "Warning"


class EventRecorder(Protocol):
    def event(self, obj: Obj, event_type: str, reason: str, message: str) -> None: ...


@dataclass
class _Pending:
    involved: dict[str, Any]
    event_type: str
    reason: str
    message: str
    timestamp: float


def involved_object(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    ref = {
        "kind": obj.get("kind", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return {k: v for k, v in ref.items() if v}


class APIEventRecorder:
    """Sends Events through the API.  Run :meth:`run` as a task; :meth:`stop` drains it."""

    def __init__(
        self,
        client: Client,
        component: str,
        host: str | None = None,
        clock: WallClock = wall_clock,
        cache_size: int = 4096,
        queue_size: int = 1000,
    ) -> None:
        self.client = client
        self.component = component
        self.host = host or os.uname().nodename
        self.clock = clock
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue(queue_size)
        # dedup key -> (event namespace, event name, count)
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()
        self._cache_size = cache_size

    def event(self, obj: Obj, event_type: str, reason: str, message: str) -> None:
        pending = _Pending(involved_object(obj), event_type, reason, message, self.clock())
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            log.warning("event queue full; dropping %s %s: %s", reason, pending.involved.get("name"), message)

    async def run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            try:
                await self._send(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # events are best effort, as in client-go
                log.warning(
                    "could not record event %s for %s: %s", item.reason, item.involved.get("name"), exc
                )

    async def stop(self) -> None:
        """Ask :meth:`run` to return once what is queued has been sent."""
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def _send(self, item: _Pending) -> None:
        inv = item.involved
        namespace = inv.get("namespace") or "default"
        key = (
            inv.get("kind", ""),
            namespace,
            inv.get("name", ""),
            inv.get("uid", ""),
            item.event_type,
            item.reason,
            item.message,
        )
        now = rfc3339(item.timestamp)
        seen = self._seen.get(key)
        if seen is not None:
            ev_ns, ev_name, count = seen
            patch = {"count": count + 1, "lastTimestamp": now}
            try:
                await self.client.patch(EVENTS, ev_name, patch, ev_ns)
                self._remember(key, (ev_ns, ev_name, count + 1))
                return
            except errors.NotFound:
                pass  # expired; create a new one
        name = f"{inv.get('name', 'unknown')}.{int(item.timestamp * 1e9):x}"
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": inv,
            "reason": item.reason,
            "message": item.message[:1024],
            "type": item.event_type,
            "source": {"component": self.component, "host": self.host},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        await self.client.create(EVENTS, body, namespace)
        self._remember(key, (namespace, name, 1))

    def _remember(self, key: tuple[str, ...], value: tuple[str, str, int]) -> None:
        self._seen[key] = value
        self._seen.move_to_end(key)
        while len(self._seen) > self._cache_size:
            self._seen.popitem(last=False)


class FakeRecorder:
    """Collects ``"Type Reason Message"`` strings (client-go's ``record.FakeRecorder``)."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def event(self, obj: Obj, event_type: str, reason: str, message: str) -> None:
        self.events.append(f"{event_type} {reason} {message}")
