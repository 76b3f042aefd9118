"""Fixtures shared by the integration tests (the processes themselves: ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from testkit import processes
from testkit.processes import APIServerProcess, Process


@pytest.fixture(scope="module")
def scheduler(apiserver: APIServerProcess, cluster: Any) -> Iterator[Process]:
    """minik-scheduler (debug log) against the module's API server, started after the module's
    own ``cluster`` fixture has made what it makes; it must still run when the module ends, and
    exit cleanly when stopped."""
    proc = processes.scheduler(apiserver, "--log-level", "debug")
    try:
        proc.start()
        yield proc
    finally:
        assert proc.proc is None or proc.proc.poll() is None, proc.log(6000)
        code = proc.stop()
        proc.cleanup()
        assert code in (0, None), f"minik-scheduler exited with {code}"
