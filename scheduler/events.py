"""Recording ``core/v1`` Events about pods, deduplicated as client-go's recorder does.

The first occurrence of an event (same involved object, type, reason, message and source) is
created as ``{pod}.{hex nanoseconds}`` with ``count: 1``; each repeat patches the same Event's
``count`` and ``lastTimestamp`` instead of creating a new one, so ``kubectl describe`` shows
``(x5 over 2m)``.  If the Event disappeared meanwhile (TTL, deleted), a new one is created.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import OrderedDict

from apimachinery import errors
from apimachinery.client import Client
from apimachinery.resources import ResourceInfo, by_plural
from apimachinery.timefmt import rfc3339

from .framework import Obj

log = logging.getLogger(__name__)

_EVENTS = by_plural("", "v1", "events")
assert _EVENTS is not None
EVENTS: ResourceInfo = _EVENTS

MAX_REMEMBERED = 4096


def build_event(
    involved: Obj, event_type: str, reason: str, message: str, component: str, instance: str, now: str
) -> Obj:
    meta = involved.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta.get('name')}.{time.time_ns():x}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion") or "v1",
            "kind": involved.get("kind") or "Pod",
            "namespace": namespace,
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": event_type,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class EventRecorder:
    def __init__(
        self, client: Client, component: str = "default-scheduler", instance: str | None = None
    ) -> None:
        self.client = client
        self.component = component
        self.instance = instance or f"{component}-{socket.gethostname()}"
        # (namespace, uid, type, reason, message) -> (event name, count)
        self._seen: OrderedDict[tuple[str, str, str, str, str], tuple[str, int]] = OrderedDict()

    async def record(self, involved: Obj, event_type: str, reason: str, message: str) -> None:
        """Create or bump the Event; failures are logged, never raised (events are best effort)."""
        meta = involved.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        key = (namespace, str(meta.get("uid") or meta.get("name")), event_type, reason, message)
        now = rfc3339()
        try:
            seen = self._seen.get(key)
            if seen is not None:
                name, count = seen
                try:
                    await self.client.patch(
                        EVENTS, name, {"count": count + 1, "lastTimestamp": now}, namespace
                    )
                    self._remember(key, name, count + 1)
                    return
                except errors.NotFound:
                    pass
            event = build_event(involved, event_type, reason, message, self.component, self.instance, now)
            created = await self.client.create(EVENTS, event, namespace)
            self._remember(key, str(created["metadata"]["name"]), 1)
        except errors.StatusError as exc:
            log.warning("%s/%s: could not record event %s: %s", namespace, meta.get("name"), reason, exc)

    def _remember(self, key: tuple[str, str, str, str, str], name: str, count: int) -> None:
        self._seen[key] = (name, count)
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_REMEMBERED:
            self._seen.popitem(last=False)
