"""testkit.host's free ports: never the same one twice in a process, even when the kernel offers it."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from testkit import host


class KernelRepeating:
    """A socket whose bind to port 0 gets the ports of ``offers`` in turn, as the kernel may give
    a just-closed ephemeral port to the next bind."""

    offers: list[int] = []

    def __init__(self, *args: Any) -> None:
        self.port = 0

    def __enter__(self) -> KernelRepeating:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def bind(self, address: tuple[str, int]) -> None:
        self.port = address[1] or KernelRepeating.offers.pop(0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def test_two_calls_never_get_one_port_the_kernel_offers_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "_handed_out", set())
    monkeypatch.setattr(host.socket, "socket", KernelRepeating)
    KernelRepeating.offers = [40001, 40001, 40001, 40002]
    assert [host.free_port(), host.free_port()] == [40001, 40002]
    assert KernelRepeating.offers == []


def test_real_ports_are_distinct_and_bindable() -> None:
    ports = [host.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))


def test_a_port_in_a_range_with_the_one_below_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "_handed_out", set())
    given = {host.free_port_in(20000, 20400, offsets=(-1, 0)) for _ in range(50)}
    assert all(20000 <= p < 20400 for p in given)
    # neither a port nor the one below it is handed out twice
    covered = [q for p in given for q in (p - 1, p)]
    assert len(covered) == len(set(covered)) == 100


def test_a_taken_port_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "_handed_out", set())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        assert not host.port_free(busy)
        with pytest.raises(RuntimeError, match=f"no free port in {busy}-{busy}"):
            host.free_port_in(busy, busy + 1)
    assert host.free_port_in(busy, busy + 1) == busy  # free again once closed
    with pytest.raises(RuntimeError):
        host.free_port_in(busy, busy + 1)  # but handed out already
    assert not host.port_free(0) and not host.port_free(65536)
