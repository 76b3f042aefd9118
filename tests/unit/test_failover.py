"""A client given several API servers moves to the next one on transport errors, not on HTTP errors.

The API servers are ``httpx.MockTransport`` handlers: one per host, each either answering or
failing the way a dead server does (connection refused, a connection that breaks).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from apimachinery import errors
from apimachinery.client import Client, SyncClient
from apimachinery.informer import Backoff, Informer
from apimachinery.kubeconfig import SERVERS_EXTENSION, ClientConfig, ConfigError, load_config
from apimachinery.resources import plural_info

PODS = plural_info("", "v1", "pods")
A, B, C = "http://a.test:8080", "http://b.test:8080", "http://c.test:8080"

Handler = Callable[[httpx.Request], httpx.Response]


def pod(name: str, rv: str = "5") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
    }


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def broken(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)


def answers(request: httpx.Request) -> httpx.Response:
    if request.method == "POST":
        return httpx.Response(201, json=json.loads(request.content))
    return httpx.Response(200, json=pod("web"))


class Servers:
    """One handler per API server host; records which host each request went to."""

    def __init__(self, **handlers: Handler) -> None:
        self.handlers = {f"{name}.test": h for name, h in handlers.items()}
        self.hosts: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(f"{request.method} {request.url.host}")
        return self.handlers[request.url.host](request)


# -- configuration ---------------------------------------------------------------------------------


def test_comma_separated_server_gives_the_fallbacks() -> None:
    config = ClientConfig(server=f"{A}/, {B},{A},")
    assert config.server == A
    assert config.fallback_servers == (B,)
    assert config.servers == (A, B)


def test_single_server_is_unchanged() -> None:
    assert ClientConfig(server=A).servers == (A,)


def write_kubeconfig(tmp_path: Path, extensions: Any) -> Path:
    cluster: dict[str, Any] = {"server": A}
    if extensions is not None:
        cluster["extensions"] = extensions
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "clusters": [{"name": "minik", "cluster": cluster}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "minik", "user": "u"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kubeconfig_extension_lists_more_servers(tmp_path: Path) -> None:
    ext = [{"name": "other"}, {"name": SERVERS_EXTENSION, "extension": {"servers": [B, C]}}]
    config = load_config(write_kubeconfig(tmp_path, ext))
    assert config.servers == (A, B, C)
    # --api-server on the command line replaces the file's whole list
    assert load_config(write_kubeconfig(tmp_path, ext), server=C).servers == (C,)
    assert load_config(write_kubeconfig(tmp_path, ext), server=f"{C},{B}").servers == (C, B)


def test_kubeconfig_extension_must_be_a_list_of_urls(tmp_path: Path) -> None:
    ext = [{"name": SERVERS_EXTENSION, "extension": {"servers": B}}]
    with pytest.raises(ConfigError, match=SERVERS_EXTENSION):
        load_config(write_kubeconfig(tmp_path, ext))


# -- requests --------------------------------------------------------------------------------------


async def test_connection_refused_moves_to_the_next_server_and_stays() -> None:
    servers = Servers(a=refused, b=answers)
    async with Client(f"{A},{B}", transport=httpx.MockTransport(servers)) as client:
        assert (await client.get(PODS, "web", "default"))["metadata"]["name"] == "web"
        assert client.server == B
        await client.get(PODS, "web", "default")
    assert servers.hosts == ["GET a.test", "GET b.test", "GET b.test"]


async def test_a_create_that_never_reached_a_server_is_sent_again() -> None:
    servers = Servers(a=refused, b=answers)
    async with Client(f"{A},{B}", transport=httpx.MockTransport(servers)) as client:
        created = await client.create(PODS, pod("new"), "default")
    assert created["metadata"]["name"] == "new"
    assert servers.hosts == ["POST a.test", "POST b.test"]


async def test_a_create_that_may_have_reached_a_server_is_not_sent_again() -> None:
    servers = Servers(a=broken, b=answers)
    async with Client(f"{A},{B}", transport=httpx.MockTransport(servers)) as client:
        with pytest.raises(errors.ServiceUnavailable, match="a.test"):
            await client.create(PODS, pod("new"), "default")
        assert client.server == B  # the next request goes to the other server
        await client.create(PODS, pod("new"), "default")
    assert servers.hosts == ["POST a.test", "POST b.test"]


async def test_a_get_on_a_broken_connection_is_sent_again() -> None:
    servers = Servers(a=broken, b=answers)
    async with Client(f"{A},{B}", transport=httpx.MockTransport(servers)) as client:
        await client.get(PODS, "web", "default")
    assert servers.hosts == ["GET a.test", "GET b.test"]


async def test_an_http_error_status_is_the_answer() -> None:
    def unavailable(request: httpx.Request) -> httpx.Response:
        body = {
            "kind": "Status",
            "status": "Failure",
            "reason": "ServiceUnavailable",
            "code": 503,
            "message": "x",
        }
        return httpx.Response(503, json=body)

    servers = Servers(a=unavailable, b=answers)
    async with Client(f"{A},{B}", transport=httpx.MockTransport(servers)) as client:
        with pytest.raises(errors.ServiceUnavailable):
            await client.get(PODS, "web", "default")
        assert client.server == A
    assert servers.hosts == ["GET a.test"]


async def test_every_server_down_tries_each_once() -> None:
    servers = Servers(a=refused, b=refused, c=refused)
    async with Client(f"{A},{B},{C}", transport=httpx.MockTransport(servers)) as client:
        with pytest.raises(errors.ServiceUnavailable, match="c.test"):
            await client.get(PODS, "web", "default")
        assert client.server == A  # round robin: back to the first
    assert servers.hosts == ["GET a.test", "GET b.test", "GET c.test"]


async def test_one_server_is_not_retried() -> None:
    servers = Servers(a=refused)
    async with Client(A, transport=httpx.MockTransport(servers)) as client:
        with pytest.raises(errors.ServiceUnavailable):
            await client.get(PODS, "web", "default")
    assert servers.hosts == ["GET a.test"]


def test_sync_client_fails_over_too() -> None:
    servers = Servers(a=refused, b=answers)
    with SyncClient(f"{A},{B}", transport=httpx.MockTransport(servers)) as client:
        client.get(PODS, "web", "default")
        assert client.server == B
        # a raw request with a relative path follows the switch
        client.raw("GET", "/version")
    assert servers.hosts == ["GET a.test", "GET b.test", "GET b.test"]


# -- watches ---------------------------------------------------------------------------------------


def watch_stream(*events: tuple[str, dict[str, Any]]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("watch"):
            body = b"".join(json.dumps({"type": t, "object": o}).encode() + b"\n" for t, o in events)
            return httpx.Response(200, content=body)
        items = [pod("web", "5")]
        return httpx.Response(
            200, json={"kind": "PodList", "metadata": {"resourceVersion": "5"}, "items": items}
        )

    return handler


async def test_a_watch_that_cannot_connect_starts_on_the_next_server() -> None:
    servers = Servers(a=refused, b=watch_stream(("ADDED", pod("web", "6"))))
    async with Client(f"{A},{B}", transport=httpx.MockTransport(servers)) as client:
        events = [e async for e in client.watch(PODS, "default", resource_version="5")]
    assert [t for t, _ in events] == ["ADDED"]
    assert servers.hosts == ["GET a.test", "GET b.test"]


class BreaksAfter(httpx.AsyncByteStream):
    """A watch body that delivers some lines, then the connection breaks (the server was killed)."""

    def __init__(self, *lines: bytes) -> None:
        self.lines = lines

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for line in self.lines:
            yield line
        raise httpx.ReadError("connection reset by peer")


async def test_a_watch_broken_mid_stream_raises_and_the_next_call_uses_the_next_server() -> None:
    def a(request: httpx.Request) -> httpx.Response:
        line = json.dumps({"type": "MODIFIED", "object": pod("web", "6")}).encode() + b"\n"
        return httpx.Response(200, stream=BreaksAfter(line))

    servers = Servers(a=a, b=answers)
    async with Client(f"{A},{B}", transport=httpx.MockTransport(servers)) as client:
        events = []
        with pytest.raises(errors.ServiceUnavailable):
            async for event in client.watch(PODS, "default", resource_version="5"):
                events.append(event)
        assert [t for t, _ in events] == ["MODIFIED"]  # not sent again: the caller resumes
        assert client.server == B
    assert servers.hosts == ["GET a.test"]


async def test_informer_watches_again_on_the_next_server() -> None:
    """A's watch breaks mid-stream; the informer watches again at once on B, from the last
    resourceVersion it saw (a closed connection is not a reason to list again)."""

    def a(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("watch"):
            line = json.dumps({"type": "MODIFIED", "object": pod("web", "6")}).encode() + b"\n"
            return httpx.Response(200, stream=BreaksAfter(line))
        return watch_stream()(request)

    b_stream = watch_stream(("ADDED", pod("db", "7")))
    b_params: list[dict[str, str]] = []

    def b(request: httpx.Request) -> httpx.Response:
        b_params.append(dict(request.url.params))
        return b_stream(request)

    servers = Servers(a=a, b=b)

    async def no_sleep(delay: float) -> None:
        return None

    async with Client(f"{A},{B}", transport=httpx.MockTransport(servers)) as client:
        informer = Informer(client, PODS, "default", backoff=Backoff(), sleep=no_sleep)
        seen: list[str] = []

        @informer.on_add
        def added(obj: dict[str, Any]) -> None:
            seen.append(obj["metadata"]["name"])
            if obj["metadata"]["name"] == "db":
                informer.stop()

        await asyncio.wait_for(informer.run(), 30)  # a guard: without failover it would loop on A
        assert client.server == B
    assert seen == ["web", "db"]
    # list and watch on A, then (after the break) only a watch on B
    assert servers.hosts == ["GET a.test", "GET a.test", "GET b.test"]
    assert [(p.get("watch"), p.get("resourceVersion")) for p in b_params] == [("1", "6")]
    assert informer.relists == 1
