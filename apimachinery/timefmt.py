"""Kubernetes' time formats: ``metav1.Time`` (RFC 3339, whole seconds) and ``metav1.MicroTime``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any


def rfc3339(ts: float | None = None) -> str:
    """``2024-01-02T03:04:05Z`` (metav1.Time) for ``ts`` seconds since the epoch, or for now."""
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(ts: float | None = None) -> str:
    """``2024-01-02T03:04:05.123456Z`` (metav1.MicroTime, used by Leases and Events), or now."""
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch from an RFC 3339 string (None when absent or unparsable)."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
