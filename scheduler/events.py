"""The scheduler's event recorder: the shared one (:mod:`apimachinery.events`) as source
``default-scheduler`` (no host), reporting instance ``<component>-<hostname>``, written at once."""

from __future__ import annotations

import socket

from apimachinery.client import Client
from apimachinery.events import EventRecorder as _Recorder

from .framework import Obj


class EventRecorder(_Recorder):
    def __init__(
        self, client: Client, component: str = "default-scheduler", instance: str | None = None
    ) -> None:
        super().__init__(client, component, instance=instance or f"{component}-{socket.gethostname()}")

    async def record(self, involved: Obj, event_type: str, reason: str, message: str) -> None:
        await self.write(involved, event_type, reason, message)
