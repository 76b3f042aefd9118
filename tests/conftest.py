"""Fixtures that start real processes: an etcd and a ``minik-apiserver``.

Each test module that asks for them gets its own etcd (a fresh data directory on free ports) and
API server, stopped again when the module ends, also when a test fails.  Tests are marked by the
folder they live in: ``tests/unit`` (no I/O), ``tests/integration`` and ``tests/e2e``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apiserver.testing import BIN, APIServerProcess, EtcdProcess, free_port

__all__ = ["BIN", "APIServerProcess", "EtcdProcess", "free_port"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
        elif "unit" in parts:
            item.add_marker(pytest.mark.unit)
        elif "lab" in parts:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdProcess]:
    e = EtcdProcess()
    try:
        e.start()
        yield e
    finally:
        e.cleanup()


@pytest.fixture(scope="module")
def apiserver(etcd: EtcdProcess) -> Iterator[APIServerProcess]:
    s = APIServerProcess(etcd.url)
    try:
        s.start()
        yield s
    finally:
        s.cleanup()


@pytest.fixture()
def api(apiserver: APIServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=apiserver.url, timeout=30) as c:
        yield c
