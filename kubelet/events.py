"""The kubelet's event recorder: the shared one (:mod:`apimachinery.events`) as source ``kubelet``
on this node, holding writes back for at most a second while pods start."""

from __future__ import annotations

from apimachinery.client import Client, Obj
from apimachinery.events import EventRecorder as _Recorder

MAX_HOLD = 1.0  # seconds an event may be held back while pods start


class EventRecorder(_Recorder):
    def __init__(self, client: Client, host: str, max_hold: float = MAX_HOLD) -> None:
        super().__init__(client, "kubelet", host, max_hold=max_hold)

    def record(self, obj: Obj, etype: str, reason: str, message: str, field_path: str, now: str) -> None:
        self.event(obj, etype, reason, message, field_path, now)
