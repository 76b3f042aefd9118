"""The Docker runtime's watch of ``oom`` events: an OOM kill is reported even when Docker's
``State.OOMKilled`` stayed false (Docker 20.10 loses it when the exit reaches it first)."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from kubelet import docker_runtime as dr
from kubelet.runtime import LABEL_CONTAINER_NAME, LABEL_NODE, STATE_EXITED, STATE_RUNNING


class Stream:
    """An events stream that yields what is put in ``events`` until closed (None ends it)."""

    def __init__(self) -> None:
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while not self.closed.is_set():
            try:
                event = self.events.get(timeout=0.05)
            except queue.Empty:
                continue
            if event is None:
                return
            yield event

    def close(self) -> None:
        self.closed.set()


class EventsAPI:
    """``api.events``: the first call fails as a restarting engine would, later ones get streams."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.streams: queue.Queue[Stream] = queue.Queue()

    def events(self, **kwargs: Any) -> Stream:
        self.calls.append(kwargs)
        if len(self.calls) == 1:
            raise ConnectionError("engine restarting")
        stream = Stream()
        self.streams.put(stream)
        return stream


def oom_event(cid: str, at: float) -> dict[str, Any]:
    return {"status": "oom", "id": cid, "Type": "container", "Action": "oom", "timeNano": int(at * 1e9)}


def attrs(cid: str, status: str, exit_code: int, oom: bool) -> dict[str, Any]:
    return {
        "Id": cid,
        "Config": {"Labels": {LABEL_NODE: "n", LABEL_CONTAINER_NAME: "c"}, "Image": "busybox"},
        "State": {
            "Status": status,
            "ExitCode": exit_code,
            "OOMKilled": oom,
            "StartedAt": "2026-12-04T10:00:00.000000000Z",
            "FinishedAt": "2026-12-04T10:00:01.000000000Z",
        },
    }


def wait(cond: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_the_watch_asks_for_this_nodes_oom_events_records_them_and_reopens_a_broken_stream() -> None:
    api = EventsAPI()
    watch = dr.OOMWatch(api, "node-a")
    watch.start()
    try:
        first = api.streams.get(timeout=10)  # after the failed first call, a second one
        assert api.calls[1]["filters"] == {
            "type": ["container"],
            "event": ["oom"],
            "label": [f"{LABEL_NODE}=node-a"],
        }
        assert api.calls[1]["decode"] is True
        at = time.time()
        first.events.put(oom_event("c1", at))
        wait(lambda: watch.seen("c1"), "c1 seen")
        assert not watch.seen("c2")
        first.events.put(None)  # the stream breaks: opened again from the last event's second
        second = api.streams.get(timeout=10)
        assert api.calls[-1]["since"] == int(at)
        second.events.put(oom_event("c2", time.time()))
        wait(lambda: watch.seen("c2"), "c2 seen")
    finally:
        t0 = time.monotonic()
        watch.close()
    assert time.monotonic() - t0 < 2 and second.closed.is_set()
    assert watch._thread is not None and not watch._thread.is_alive()


def test_a_removed_container_is_forgotten_and_past_the_limit_the_oldest_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watch = dr.OOMWatch(SimpleNamespace(), "n")
    watch.add("gone")
    watch.forget("gone")
    assert not watch.seen("gone")
    monkeypatch.setattr(dr.OOMWatch, "LIMIT", 3)
    for i in range(5):
        watch.add(f"c{i}")
    assert [watch.seen(f"c{i}") for i in range(5)] == [False, False, True, True, True]
    rt = dr.DockerRuntime(
        "n", client=SimpleNamespace(api=SimpleNamespace(remove_container=lambda *a, **k: None))
    )
    rt.oom_watch.add("x")
    asyncio.run(rt.remove_container("x"))
    assert not rt.oom_watch.seen("x")


class BlockingAPI:
    """``api.events`` that blocks until released: close() comes while the call is under way."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.stream = Stream()

    def events(self, **kwargs: Any) -> Stream:
        self.entered.set()
        self.release.wait(10)
        return self.stream


def test_close_before_the_stream_is_open_closes_it_when_it_comes() -> None:
    api = BlockingAPI()
    watch = dr.OOMWatch(api, "n")
    watch.start()
    assert api.entered.wait(10)
    stopper = threading.Thread(target=watch.close)
    stopper.start()
    time.sleep(0.1)  # close() has found no stream yet and waits for the thread
    api.release.set()
    stopper.join(10)
    assert api.stream.closed.is_set()
    assert watch._thread is not None and not watch._thread.is_alive()


def test_close_during_the_pause_after_a_failure_returns_at_once(caplog: pytest.LogCaptureFixture) -> None:
    api = EventsAPI()  # fails the first call: the watch warns, then pauses a second
    watch = dr.OOMWatch(api, "n")
    with caplog.at_level("WARNING", logger="kubelet.docker_runtime"):
        watch.start()
        deadline = time.monotonic() + 10
        while not api.calls and time.monotonic() < deadline:
            time.sleep(0.001)
        t0 = time.monotonic()
        watch.close()
    assert time.monotonic() - t0 < 0.9 and len(api.calls) == 1
    assert any("engine restarting" in r.getMessage() for r in caplog.records)
    assert abs(api.calls[0]["since"] - (time.time() - dr.OOMWatch.REPLAY_SECONDS)) < 5


def test_an_event_with_only_the_actor_id_and_no_time_is_recorded() -> None:
    api = EventsAPI()
    watch = dr.OOMWatch(api, "n")
    watch.start()
    try:
        stream = api.streams.get(timeout=10)
        stream.events.put({"Type": "container", "Action": "oom", "Actor": {"ID": "c9"}})
        wait(lambda: watch.seen("c9"), "c9 seen")
    finally:
        watch.close()


def test_an_exited_container_with_an_oom_event_is_reported_oom_killed() -> None:
    rt = dr.DockerRuntime("n", client=SimpleNamespace(api=SimpleNamespace()))
    rt.oom_watch.add("lost")
    rt.oom_watch.add("running")
    rt.oom_watch.add("survived")
    lost = rt._status(attrs("lost", "exited", 137, oom=False))
    assert lost.state == STATE_EXITED and lost.oom_killed
    assert rt._status(attrs("flagged", "exited", 137, oom=True)).oom_killed  # Docker's own flag
    assert not rt._status(attrs("plain", "exited", 137, oom=False)).oom_killed  # killed, no OOM
    # an OOM killed another of its processes: the main one exited by itself, or still runs
    assert not rt._status(attrs("survived", "exited", 0, oom=False)).oom_killed
    running = rt._status(attrs("running", "running", 0, oom=False))
    assert running.state == STATE_RUNNING and not running.oom_killed
