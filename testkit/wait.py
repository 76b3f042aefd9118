"""Polling until something holds, and unique names for what a test creates."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_for(
    check: Callable[[], Any],
    timeout: float = 30,
    what: str = "condition",
    interval: float = 0.1,
    retry_errors: bool = False,
) -> Any:
    """Poll ``check`` until it returns something truthy and return that.  An exception from
    ``check`` fails at once, or with ``retry_errors`` counts as not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as e:
            if not retry_errors:
                raise
            last = e
        else:
            if value:
                return value
            last = value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last!r}")
