"""Informers against a scripted API server (``httpx.MockTransport``): list, watch, reconnect, relist."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from apimachinery.client import Client
from apimachinery.informer import Backoff, Informer, SharedInformerFactory, Store, object_key, split_key
from apimachinery.resources import plural_info

PODS = plural_info("", "v1", "pods")
NODES = plural_info("", "v1", "nodes")


def pod(name: str, rv: str, node: str | None = None, ns: str = "default") -> dict[str, Any]:
    obj: dict[str, Any] = {"kind": "Pod", "metadata": {"name": name, "namespace": ns, "resourceVersion": rv}}
    obj["spec"] = {"nodeName": node} if node else {}
    return obj


def listing(rv: str, *items: dict[str, Any], cont: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return {"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": list(items)}


def ev(etype: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": etype, "object": obj}


def bookmark(rv: str) -> dict[str, Any]:
    return ev("BOOKMARK", {"kind": "Pod", "metadata": {"resourceVersion": rv}})


def gone() -> dict[str, Any]:
    return ev(
        "ERROR",
        {"kind": "Status", "status": "Failure", "reason": "Expired", "code": 410, "message": "too old"},
    )


Scripted = dict[str, Any] | list[dict[str, Any]] | httpx.Response


class FakeAPI:
    """Answers list requests and watch requests from two scripts, in order.

    A list script entry is a List body (or a Response); a watch entry is a list of events sent
    as one stream that then ends (or a Response).  When the watch script runs out, the watch
    hangs open and ``idle`` is set, so a test can inspect the informer and then stop it.
    """

    def __init__(self, lists: list[Scripted], watches: list[Scripted]) -> None:
        self.lists = list(lists)
        self.watches = list(watches)
        self.requests: list[httpx.Request] = []
        self.idle = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.params.get("watch"):
            if not self.watches:
                self.idle.set()
                await asyncio.Event().wait()
            item = self.watches.pop(0)
            if isinstance(item, httpx.Response):
                return item
            body = b"".join(json.dumps(e).encode() + b"\n" for e in item)  # type: ignore[union-attr]
            return httpx.Response(200, content=body)
        item = self.lists.pop(0)
        return item if isinstance(item, httpx.Response) else httpx.Response(200, json=item)

    def params(self, kind: str) -> list[dict[str, str]]:
        watch = kind == "watch"
        return [dict(r.url.params) for r in self.requests if bool(r.url.params.get("watch")) == watch]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def on_add(self, obj: dict[str, Any]) -> None:
        self.events.append(("add", object_key(obj), obj["metadata"]["resourceVersion"]))

    async def on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:  # async on purpose
        self.events.append(
            (
                "update",
                object_key(new),
                f"{old['metadata']['resourceVersion']}->{new['metadata']['resourceVersion']}",
            )
        )

    def on_delete(self, obj: dict[str, Any]) -> None:
        self.events.append(("delete", object_key(obj), obj["metadata"]["resourceVersion"]))


class Harness:
    def __init__(self, api: FakeAPI, **kw: Any) -> None:
        self.api = api
        self.sleeps: list[float] = []
        self.client = Client("http://api.test", transport=httpx.MockTransport(api))
        self.informer = Informer(self.client, kw.pop("info", PODS), sleep=self.sleep, rand=lambda: 0.5, **kw)
        self.rec = Recorder()
        self.informer.add_event_handler(self.rec.on_add, self.rec.on_update, self.rec.on_delete)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)

    async def run_until_idle(self) -> None:
        task = asyncio.create_task(self.informer.run())
        try:
            await asyncio.wait_for(self.api.idle.wait(), 5)
        finally:
            self.informer.stop()
            await asyncio.wait_for(task, 5)
            await self.client.aclose()


async def test_lists_pages_then_watches_from_list_rv_and_follows_bookmarks() -> None:
    api = FakeAPI(
        lists=[listing("10", pod("a", "3"), cont="p2"), listing("10", pod("b", "4"))],
        watches=[
            [ev("ADDED", pod("c", "11")), ev("MODIFIED", pod("a", "12")), bookmark("15")],
            [ev("DELETED", pod("b", "16"))],
        ],
    )
    h = Harness(api, namespace="default", label_selector="app=web", page_size=1)
    await h.run_until_idle()

    assert h.rec.events == [
        ("add", "default/a", "3"),
        ("add", "default/b", "4"),
        ("add", "default/c", "11"),
        ("update", "default/a", "3->12"),
        ("delete", "default/b", "16"),
    ]
    lists = api.params("list")
    assert [p.get("continue") for p in lists] == [None, "p2"]
    assert all(p["labelSelector"] == "app=web" and p["limit"] == "1" for p in lists)
    watches = api.params("watch")
    # first watch resumes at the list's rv, the reconnect at the bookmark's, the last at the delete's
    assert [w["resourceVersion"] for w in watches] == ["10", "15", "16"]
    assert all(w["allowWatchBookmarks"] == "true" for w in watches)
    assert all(450 == int(w["timeoutSeconds"]) for w in watches)  # 300 * (1 + 0.5)
    assert h.informer.has_synced
    assert sorted(h.informer.store.keys()) == ["default/a", "default/c"]
    assert h.informer.store.get("default/a")["metadata"]["resourceVersion"] == "12"  # type: ignore[index]
    assert h.informer.relists == 1
    assert h.sleeps == []  # healthy watches reconnect at once


async def test_410_error_event_relists_and_emits_the_diff() -> None:
    api = FakeAPI(
        lists=[
            listing("10", pod("keep", "1"), pod("vanish", "2"), pod("change", "3")),
            listing("50", pod("keep", "1"), pod("change", "40"), pod("new", "45")),
        ],
        watches=[[gone()], [bookmark("51")]],
    )
    h = Harness(api)
    await h.run_until_idle()

    after_first_list = h.rec.events[3:]
    assert after_first_list == [
        ("delete", "default/vanish", "2"),
        ("update", "default/change", "3->40"),
        ("add", "default/new", "45"),
    ]
    lists = api.params("list")
    assert len(lists) == 2 and "resourceVersion" not in lists[1]
    assert [w["resourceVersion"] for w in api.params("watch")] == ["10", "50", "51"]
    assert sorted(h.informer.store.keys()) == ["default/change", "default/keep", "default/new"]
    assert h.informer.relists == 2
    assert h.sleeps == []  # 410 relists immediately, no backoff


async def test_http_410_on_watch_relists() -> None:
    gone_response = httpx.Response(
        410, json={"kind": "Status", "reason": "Expired", "code": 410, "message": "too old"}
    )
    api = FakeAPI(
        lists=[listing("5", pod("a", "1")), listing("9", pod("a", "1"))],
        watches=[gone_response],
    )
    h = Harness(api)
    await h.run_until_idle()
    assert h.informer.relists == 2
    assert h.rec.events == [("add", "default/a", "1")]  # unchanged object: no synthetic update
    assert api.params("watch")[-1]["resourceVersion"] == "9"


async def test_errors_back_off_with_growing_jittered_delays() -> None:
    boom = httpx.Response(
        500, json={"kind": "Status", "reason": "InternalError", "code": 500, "message": "x"}
    )
    api = FakeAPI(
        lists=[boom, httpx.Response(503, text="down"), boom, listing("7", pod("a", "1"))],
        watches=[[bookmark("8")]],
    )
    h = Harness(api)
    await h.run_until_idle()
    # initial 0.8 s doubling, jitter factor (1 + 1.0 * 0.5)
    assert h.sleeps == pytest.approx([1.2, 2.4, 4.8])
    assert h.informer.has_synced
    assert h.rec.events == [("add", "default/a", "1")]


async def test_empty_watches_do_not_hot_loop() -> None:
    api = FakeAPI(lists=[listing("7")], watches=[[], [], [bookmark("9")]])
    h = Harness(api)
    await h.run_until_idle()
    assert h.sleeps == pytest.approx([1.2, 2.4])


async def test_handler_errors_are_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeAPI(lists=[listing("1", pod("a", "1"))], watches=[[ev("ADDED", pod("b", "2"))]])
    h = Harness(api)

    def broken(obj: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    h.informer.add_event_handler(on_add=broken)
    await h.run_until_idle()
    assert [e[1] for e in h.rec.events] == ["default/a", "default/b"]
    assert "handler bug" in caplog.text


async def test_wait_for_sync_and_replay_for_late_handlers() -> None:
    api = FakeAPI(lists=[listing("1", pod("a", "1"), pod("b", "2"))], watches=[])
    h = Harness(api)
    assert await h.informer.wait_for_sync(timeout=0.001) is False
    task = asyncio.create_task(h.informer.run())
    assert await h.informer.wait_for_sync(timeout=5)
    late: list[str] = []
    await h.informer.add_event_handler_and_replay(on_add=lambda o: late.append(object_key(o)))
    assert sorted(late) == ["default/a", "default/b"]
    h.informer.stop()
    await asyncio.wait_for(task, 5)
    assert h.informer.stopped
    await h.client.aclose()


def test_store_indexes_follow_updates_and_deletes() -> None:
    store = Store()
    store.add_index("byNode", lambda p: p["spec"].get("nodeName"))
    store.add(pod("a", "1", node="n1"))
    store.add(pod("b", "1", node="n1"))
    store.add(pod("c", "1", node="n2", ns="other"))
    assert [object_key(p) for p in store.by_index("byNode", "n1")] == ["default/a", "default/b"]
    assert store.index_keys("namespace", "other") == ["other/c"]

    store.update(pod("a", "2", node="n2"))
    assert store.index_keys("byNode", "n1") == ["default/b"]
    assert store.index_keys("byNode", "n2") == ["default/a", "other/c"]
    store.delete("other/c")
    assert store.index_keys("byNode", "n2") == ["default/a"]
    assert store.get("other/c") is None
    with pytest.raises(KeyError):
        store.by_index("nope", "x")

    store.add_index("multi", lambda p: [p["metadata"]["name"], "all"])  # indexes existing objects
    assert store.index_keys("multi", "all") == ["default/a", "default/b"]


def test_store_replace_reports_the_diff() -> None:
    store = Store()
    store.add(pod("a", "1"))
    store.add(pod("b", "1"))
    added, updated, deleted = store.replace([pod("a", "2"), pod("c", "1")])
    assert [object_key(o) for o in added] == ["default/c"]
    assert [(object_key(o), object_key(n)) for o, n in updated] == [("default/a", "default/a")]
    assert [object_key(o) for o in deleted] == ["default/b"]
    assert sorted(store.keys()) == ["default/a", "default/c"]


def test_keys_for_cluster_scoped_and_namespaced() -> None:
    assert object_key({"metadata": {"name": "n1"}}) == "n1"
    assert object_key(pod("a", "1")) == "default/a"
    assert split_key("default/a") == ("default", "a")
    assert split_key("n1") == (None, "n1")


def test_backoff_caps_at_maximum() -> None:
    b = Backoff(initial=1, maximum=4, jitter=0, rand=lambda: 0.0)
    assert [b.next_delay() for _ in range(5)] == [1, 2, 4, 4, 4]
    b.reset()
    assert b.next_delay() == 1


async def test_shared_factory_shares_informers_and_stops_them_together() -> None:
    node_list = {
        "kind": "NodeList",
        "metadata": {"resourceVersion": "2"},
        "items": [{"metadata": {"name": "n1"}}],
    }
    pod_api = FakeAPI(lists=[listing("1", pod("a", "1"))], watches=[])
    node_api = FakeAPI(lists=[node_list], watches=[])

    async def route(request: httpx.Request) -> httpx.Response:
        api = node_api if request.url.path.startswith("/api/v1/nodes") else pod_api
        return await api(request)

    client = Client("http://api.test", transport=httpx.MockTransport(route))
    factory = SharedInformerFactory(client, sleep=_no_sleep)
    pods = factory.informer(PODS, "default")
    assert factory.informer(PODS, "default") is pods
    nodes = factory.informer(NODES, "ignored")
    assert factory.informer(NODES) is nodes  # cluster-scoped: the namespace is not part of the key
    factory.start()
    assert await factory.wait_for_cache_sync(timeout=5)
    assert pods.store.keys() == ["default/a"]
    assert nodes.store.keys() == ["n1"]
    assert factory.informer(PODS, "other") is not pods
    assert len(factory.informers) == 3
    await factory.stop()
    assert all(i.stopped for i in factory.informers)
    assert [r.url.path for r in node_api.requests][0] == "/api/v1/nodes"
    await client.aclose()


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


async def test_stop_before_run_returns_at_once() -> None:
    api = FakeAPI(lists=[listing("1")], watches=[])
    h = Harness(api)
    h.informer.stop()
    await asyncio.wait_for(h.informer.run(), 1)
    assert api.requests == []
    await h.client.aclose()


def closed_mid_stream(*events: dict[str, Any]) -> httpx.Response:
    """A watch response that sends ``events`` and then loses its connection (as when the client
    closes its transport: httpx reports a ``ReadError``)."""

    async def body() -> Any:
        for e in events:
            yield json.dumps(e).encode() + b"\n"
        raise httpx.ReadError("connection closed")

    return httpx.Response(200, content=body())


async def test_a_watch_closed_by_the_connection_is_watched_again_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = FakeAPI(
        lists=[listing("10", pod("a", "3"))],
        watches=[closed_mid_stream(ev("ADDED", pod("b", "11"))), [bookmark("12")]],
    )
    h = Harness(api)
    with caplog.at_level("DEBUG", logger="apimachinery.informer"):
        await h.run_until_idle()
    assert h.sleeps == []  # no backoff for the first retry
    assert h.informer.relists == 1  # the watch resumes, no list again
    assert [w["resourceVersion"] for w in api.params("watch")] == ["10", "11", "12"]
    assert [e[1] for e in h.rec.events] == ["default/a", "default/b"]
    closed = [r for r in caplog.records if "watch connection closed" in r.getMessage()]
    assert [r.levelname for r in closed] == ["DEBUG"]
    assert not [r for r in caplog.records if r.levelno >= 30]  # no warning


async def test_a_watch_closed_again_at_once_backs_off() -> None:
    api = FakeAPI(
        lists=[listing("10"), listing("20")],
        watches=[
            closed_mid_stream(bookmark("11")),
            closed_mid_stream(),
            closed_mid_stream(),
            [bookmark("21")],
        ],
    )
    h = Harness(api)
    await h.run_until_idle()
    # the first closed watch is retried at once, the second (no event since) backs off and lists;
    # after the list a closed watch counts as the first again
    assert h.sleeps == pytest.approx([1.2])
    assert h.informer.relists == 2
    assert [w["resourceVersion"] for w in api.params("watch")] == ["10", "11", "20", "20", "21"]


async def test_the_kubelets_transport_swap_restarts_the_watch_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Over a real connection: the kubelet's RenewableTransport closes its connections after a
    client-certificate rotation, the open watch ends with a ReadError, and the informer watches
    again from its resourceVersion without a list, a wait or a warning."""
    import ssl

    from kubelet.main import RenewableTransport

    watches: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: the list and then the watch may share the connection
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ")[1].decode()
                if "watch=" not in target:
                    body = json.dumps(listing("10", pod("a", "3"))).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                    await writer.drain()
                    continue
                watches.append(target)
                line = json.dumps(bookmark(str(10 + len(watches)))).encode() + b"\n"
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                writer.write(b"%x\r\n%s\r\n" % (len(line), line))
                await writer.drain()
                await reader.read()  # hold the watch open until the client closes it
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = RenewableTransport(ssl.create_default_context())
    client = Client(f"http://127.0.0.1:{port}", transport=transport)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    informer = Informer(client, PODS, sleep=sleep, rand=lambda: 0.5)

    async def until(cond: Any) -> None:
        while not cond():
            await asyncio.sleep(0.01)

    task = asyncio.create_task(informer.run())
    try:
        with caplog.at_level("DEBUG", logger="apimachinery.informer"):
            await asyncio.wait_for(until(lambda: informer.last_resource_version == "11"), 10)
            await transport.reconnect()
            await asyncio.wait_for(until(lambda: informer.last_resource_version == "12"), 10)
    finally:
        informer.stop()
        await asyncio.wait_for(task, 5)
        await client.aclose()
        server.close()
        await server.wait_closed()
    assert "resourceVersion=11" in watches[1]
    assert informer.relists == 1 and sleeps == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= 30] == []
    assert any("ReadError" in r.getMessage() and r.levelname == "DEBUG" for r in caplog.records)
