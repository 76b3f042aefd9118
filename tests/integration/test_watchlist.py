"""Watch-list (``sendInitialEvents=true``, KEP-3157) against a real etcd and API server: the current
state as ADDED events, the BOOKMARK annotated ``k8s.io/initial-events-end``, then live events;
``resourceVersionMatch=NotOlderThan`` semantics and the 422s of Kubernetes' ListOptions validation."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.api import create_namespace
from testkit.processes import APIServerProcess

CMS = "/api/v1/namespaces/{ns}/configmaps"
END = "k8s.io/initial-events-end"
WATCH_LIST = {
    "watch": "1",
    "sendInitialEvents": "true",
    "resourceVersionMatch": "NotOlderThan",
    "allowWatchBookmarks": "true",
}


@pytest.fixture()
def ns(api: httpx.Client) -> str:
    return create_namespace(api, "wl")


class Stream:
    """A watch read on a thread, so a test can act while it waits for the next event."""

    def __init__(
        self, server: APIServerProcess, path: str, params: dict[str, str], headers: dict[str, str]
    ) -> None:
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.status = 0
        self.started = threading.Event()
        self._client = server.http()
        self._response: httpx.Response | None = None
        self._args = (path, {"timeoutSeconds": "30", **params}, headers)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        path, params, headers = self._args
        try:
            with self._client.stream("GET", path, params=params, headers=headers) as r:
                self._response = r
                self.status = r.status_code
                self.started.set()
                for line in r.iter_lines():
                    if line:
                        self.events.put(json.loads(line))
        except (httpx.HTTPError, OSError, RuntimeError):
            pass  # closed by the test
        finally:
            self.started.set()
            self.events.put(None)

    def next(self, timeout: float = 15) -> dict[str, Any]:
        ev = self.events.get(timeout=timeout)
        assert ev is not None, "the watch ended"
        return ev

    def until_end_bookmark(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The events before the initial-events-end BOOKMARK, and that bookmark."""
        seen = []
        while True:
            ev = self.next()
            if ev["type"] == "BOOKMARK" and (ev["object"]["metadata"].get("annotations") or {}).get(END):
                return seen, ev
            seen.append(ev)

    def close(self) -> None:
        if self._response is not None:  # unblock the reader: shut the connection's socket
            sock = self._response.extensions["network_stream"].get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)
        self._client.close()


@pytest.fixture()
def watch(apiserver: Any) -> Iterator[Any]:
    opened: list[Stream] = []

    def start(
        path: str, params: dict[str, str], headers: dict[str, str] | None = None, started: bool = True
    ) -> Stream:
        """A watch; with ``started`` once its response headers came."""
        s = Stream(apiserver, path, params, headers or {})
        opened.append(s)
        if started:
            assert s.started.wait(15)
        return s

    yield start
    for s in opened:
        s.close()


def make(api: httpx.Client, ns: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    r = api.post(
        CMS.format(ns=ns), json={"metadata": {"name": name, "labels": labels or {}}, "data": {"k": "v"}}
    )
    assert r.status_code == 201, r.text
    return r.json()


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["object"]["metadata"]["name"] for e in events]


def test_initial_events_then_bookmark_then_live(api: httpx.Client, ns: str, watch: Any) -> None:
    made = [make(api, ns, n) for n in ("a", "b", "c")]
    s = watch(CMS.format(ns=ns), WATCH_LIST)
    assert s.status == 200
    initial, mark = s.until_end_bookmark()
    assert [e["type"] for e in initial] == ["ADDED"] * 3
    assert sorted(names(initial)) == ["a", "b", "c"]
    assert mark["object"]["kind"] == "ConfigMap" and mark["object"]["apiVersion"] == "v1"
    assert mark["object"]["metadata"]["annotations"] == {END: "true"}
    end_rv = int(mark["object"]["metadata"]["resourceVersion"])
    assert end_rv >= max(int(o["metadata"]["resourceVersion"]) for o in made)
    # then the live events, newer than the bookmark
    make(api, ns, "d")
    ev = s.next()
    while ev["type"] == "BOOKMARK":
        ev = s.next()
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "d"
    assert int(ev["object"]["metadata"]["resourceVersion"]) > end_rv
    r = api.delete(f"{CMS.format(ns=ns)}/a")
    assert r.status_code == 200, r.text
    ev = s.next()
    while ev["type"] == "BOOKMARK":
        ev = s.next()
    assert ev["type"] == "DELETED" and ev["object"]["metadata"]["name"] == "a"


def test_empty_state_is_just_the_bookmark(api: httpx.Client, ns: str, watch: Any) -> None:
    before = int(api.get(CMS.format(ns=ns)).json()["metadata"]["resourceVersion"])
    s = watch(CMS.format(ns=ns), WATCH_LIST)
    initial, mark = s.until_end_bookmark()
    assert initial == []
    # resourceVersion unset is a consistent read: at least the store's revision at the request
    assert int(mark["object"]["metadata"]["resourceVersion"]) >= before


def test_selectors_filter_initial_and_live_events(api: httpx.Client, ns: str, watch: Any) -> None:
    make(api, ns, "x", {"app": "web"})
    make(api, ns, "y", {"app": "db"})
    make(api, ns, "z", {"app": "web"})
    by_label = watch(CMS.format(ns=ns), {**WATCH_LIST, "labelSelector": "app=web"})
    initial, _ = by_label.until_end_bookmark()
    assert sorted(names(initial)) == ["x", "z"]
    # what kubectl delete/wait sends: one object by name
    by_name = watch(CMS.format(ns=ns), {**WATCH_LIST, "fieldSelector": "metadata.name=y"})
    initial, _ = by_name.until_end_bookmark()
    assert names(initial) == ["y"]
    r = api.delete(f"{CMS.format(ns=ns)}/y")
    assert r.status_code == 200
    ev = by_name.next()
    while ev["type"] == "BOOKMARK":
        ev = by_name.next()
    assert ev["type"] == "DELETED" and ev["object"]["metadata"]["name"] == "y"


def test_all_namespaces_and_partial_metadata(api: httpx.Client, ns: str, watch: Any) -> None:
    make(api, ns, "p")
    s = watch(
        "/api/v1/configmaps",
        {**WATCH_LIST, "fieldSelector": f"metadata.namespace={ns}"},
        {"Accept": "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"},
    )
    initial, mark = s.until_end_bookmark()
    assert names(initial) == ["p"]
    assert initial[0]["object"]["kind"] == "PartialObjectMetadata"
    assert "data" not in initial[0]["object"]
    assert mark["object"]["kind"] == "PartialObjectMetadata"


def test_resource_version_not_older_than(api: httpx.Client, ns: str, watch: Any) -> None:
    first = make(api, ns, "one")
    make(api, ns, "two")
    rv = int(first["metadata"]["resourceVersion"])
    # an older resourceVersion still gets the current state (not the state at that version)
    for asked in (str(rv), "0"):
        s = watch(CMS.format(ns=ns), {**WATCH_LIST, "resourceVersion": asked})
        initial, mark = s.until_end_bookmark()
        assert sorted(names(initial)) == ["one", "two"], asked
        assert int(mark["object"]["metadata"]["resourceVersion"]) > rv


def test_too_new_resource_version_times_out_with_504(api: httpx.Client, ns: str) -> None:
    current = int(api.get(CMS.format(ns=ns)).json()["metadata"]["resourceVersion"])
    wanted = current + 1_000_000
    r = api.get(CMS.format(ns=ns), params={**WATCH_LIST, "resourceVersion": str(wanted)}, timeout=20)
    assert r.status_code == 504, r.text
    body = r.json()
    assert body["reason"] == "Timeout"
    assert body["message"].startswith(f"Too large resource version: {wanted}, current: ")
    assert body["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


def test_resource_version_reached_while_waiting(api: httpx.Client, ns: str, watch: Any) -> None:
    """A version not yet written is waited for; a write to another resource brings it."""
    current = int(api.get(CMS.format(ns=ns)).json()["metadata"]["resourceVersion"])
    s = watch(CMS.format(ns=ns), {**WATCH_LIST, "resourceVersion": str(current + 1)}, started=False)
    r = api.post(f"/api/v1/namespaces/{ns}/secrets", json={"metadata": {"name": "s"}})
    assert r.status_code == 201
    initial, mark = s.until_end_bookmark()
    assert s.status == 200 and initial == []
    assert int(mark["object"]["metadata"]["resourceVersion"]) >= current + 1


def test_send_initial_events_false_sends_only_changes(api: httpx.Client, ns: str, watch: Any) -> None:
    make(api, ns, "old")
    params = {**WATCH_LIST, "sendInitialEvents": "false"}
    s = watch(CMS.format(ns=ns), params)
    make(api, ns, "new")
    ev = s.next()
    while ev["type"] == "BOOKMARK":
        assert END not in (ev["object"]["metadata"].get("annotations") or {})
        ev = s.next()
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "new"


def test_without_allow_watch_bookmarks_no_bookmark(api: httpx.Client, ns: str, watch: Any) -> None:
    make(api, ns, "m")
    params = {k: v for k, v in WATCH_LIST.items() if k != "allowWatchBookmarks"}
    s = watch(CMS.format(ns=ns), params)
    assert s.next()["object"]["metadata"]["name"] == "m"
    make(api, ns, "n")
    ev = s.next()
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "n"


def invalid(r: httpx.Response) -> tuple[str, list[tuple[str, str]]]:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["reason"] == "Invalid" and body["details"]["kind"] == "ListOptions"
    assert body["details"]["group"] == "meta.k8s.io"
    return body["message"], [(c["field"], c["reason"]) for c in body["details"]["causes"]]


def test_bad_combinations_are_invalid(api: httpx.Client, ns: str) -> None:
    path = CMS.format(ns=ns)
    msg, causes = invalid(api.get(path, params={"watch": "1", "sendInitialEvents": "true"}))
    assert msg == (
        'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
    )
    assert causes == [("resourceVersionMatch", "FieldValueForbidden")]
    msg, _ = invalid(api.get(path, params={"watch": "1", "resourceVersionMatch": "NotOlderThan"}))
    assert "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided" in msg
    msg, causes = invalid(
        api.get(path, params={"watch": "1", "sendInitialEvents": "true", "resourceVersionMatch": "Exact"})
    )
    assert 'resourceVersionMatch: Unsupported value: "Exact": supported values: "NotOlderThan"' in msg
    assert ("resourceVersionMatch", "FieldValueNotSupported") in causes
    msg, _ = invalid(api.get(path, params={"sendInitialEvents": "true"}))
    assert "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list" in msg
    msg, _ = invalid(api.get(path, params={"resourceVersionMatch": "NotOlderThan"}))
    assert "resourceVersionMatch is forbidden unless resourceVersion is provided" in msg
    r = api.get(path, params={**WATCH_LIST, "resourceVersion": "abc"})
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"


def test_list_not_older_than(api: httpx.Client, ns: str) -> None:
    made = make(api, ns, "l")
    rv = made["metadata"]["resourceVersion"]
    r = api.get(CMS.format(ns=ns), params={"resourceVersion": rv, "resourceVersionMatch": "NotOlderThan"})
    assert r.status_code == 200, r.text
    assert int(r.json()["metadata"]["resourceVersion"]) >= int(rv)
    assert names([{"object": o} for o in r.json()["items"]]) == ["l"]
    r = api.get(CMS.format(ns=ns), params={"resourceVersion": rv, "resourceVersionMatch": "Exact"})
    assert r.status_code == 200 and r.json()["metadata"]["resourceVersion"] == rv
