"""minik-ingress's data path against a real HAProxy (Debian's), without a cluster: the configuration
:mod:`ingress.model` writes, loaded and reloaded by :class:`ingress.haproxy.HAProxy`, in front of a
small HTTP server on loopback.

What is checked is what a client of an Ingress sees while the controller reloads HAProxy and while a
pod fails: an idle keep-alive connection survives a reload (answered once more by the old worker, with
``Connection: close``), an idempotent request a pod dropped without answering is sent again, a POST
is not.
"""

from __future__ import annotations

import asyncio
import http.client
import http.server
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ingress import model
from ingress.haproxy import HAProxy, find_binary
from ingress.model import Backend, Server
from testkit import prereq
from testkit.host import free_port

HOST = "reload.example"


@dataclass
class Backdoor:
    """What the backend saw: the requests by method and path, and which ones it drops (closes the
    connection without an answer) the first time."""

    hits: list[str] = field(default_factory=list)
    drop_once: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _server(state: Backdoor) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            key = f"{self.command} {self.path}"
            with state.lock:
                state.hits.append(key)
                drop = key in state.drop_once
                state.drop_once.discard(key)
            if drop:
                self.close_connection = True  # nothing written: HAProxy sees an empty response
                return
            body = key.encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _ingress(*paths: str) -> dict[str, Any]:
    """The Ingress ``default/x``: ``HOST`` with a Prefix rule for each of ``paths``, all to the
    Service ``web``'s port 80."""
    return {
        "metadata": {"name": "x", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "rules": [
                {
                    "host": HOST,
                    "http": {
                        "paths": [
                            {
                                "path": p,
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "web", "port": {"number": 80}}},
                            }
                            for p in paths
                        ]
                    },
                }
            ]
        },
    }


@dataclass
class Proxy:
    haproxy: HAProxy
    loop: asyncio.AbstractEventLoop
    port: int
    backend: Backdoor
    desired: model.Desired

    def reload_with_another_route(self, path: str) -> None:
        """A change of routes (a reload), the backend the same."""
        b = Backend("default", "web", "80")
        d = model.Desired(
            model.route_table([_ingress("/", path)]), {b.name: self.desired.backends[b.name]}, []
        )
        assert d.structure(self.haproxy.settings) != self.desired.structure(self.haproxy.settings)
        before = self.haproxy.reloads
        self.loop.run_until_complete(self.haproxy.apply(d))
        assert self.haproxy.reloads == before + 1
        self.desired = d


@pytest.fixture()
def proxy() -> Iterator[Proxy]:
    binary = find_binary()
    prereq.require(binary is not None, "haproxy", "apt-get install haproxy (scripts/install.sh)")
    assert binary is not None
    state = Backdoor()
    srv = _server(state)
    tmp = Path(tempfile.mkdtemp(prefix="minik-ingress-it-"))
    port = free_port()
    settings = model.Settings(
        state_dir=str(tmp), bind_address="127.0.0.1", http_port=port, https_port=free_port(), threads=1
    )
    haproxy = HAProxy(settings, binary)
    b = Backend("default", "web", "80")
    addr = srv.server_address
    d = model.Desired(
        model.route_table([_ingress("/")]),
        {b.name: model.assign(None, [Server(str(addr[0]), int(addr[1]))])},
        [],
    )
    loop = asyncio.new_event_loop()  # one loop for HAProxy's child process, start to stop
    try:
        haproxy.prepare()
        loop.run_until_complete(haproxy.apply(d))
        yield Proxy(haproxy, loop, port, state, d)
    finally:
        loop.run_until_complete(haproxy.stop())
        loop.close()
        srv.shutdown()
        srv.server_close()
        shutil.rmtree(tmp, ignore_errors=True)


def _request(
    conn: http.client.HTTPConnection, method: str, target: str, body: bytes | None = None
) -> http.client.HTTPResponse:
    conn.request(method, target, body=body, headers={"Host": HOST})
    r = conn.getresponse()
    r.read()
    return r


def test_an_idle_keep_alive_connection_survives_a_reload(proxy: Proxy) -> None:
    conns = [http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10) for _ in range(4)]
    try:
        for c in conns:
            r = _request(c, "GET", "/before")
            assert r.status == 200 and r.getheader("connection", "").lower() != "close"
        proxy.reload_with_another_route("/other")
        # the old worker is soft-stopping now: its connections stay idle a while, as a client's
        # pooled connections do between requests
        time.sleep(1.0)
        for c in conns:
            # the next request on each is answered (by the old worker, which then closes it) ...
            r = _request(c, "GET", "/after")
            assert r.status == 200
            assert r.getheader("connection", "").lower() == "close"
            c.close()
            # ... and a new connection goes to the new worker
            assert _request(c, "GET", "/again").status == 200
    finally:
        for c in conns:
            c.close()


def test_a_dropped_get_is_sent_again_a_dropped_post_is_not(proxy: Proxy) -> None:
    proxy.backend.drop_once |= {"GET /get", "POST /post", "POST /post-body"}
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        assert _request(conn, "GET", "/get").status == 200
        assert proxy.backend.hits.count("GET /get") == 2
        conn.close()
        # without a body too (HAProxy would send that one again, were it not for the method)
        assert _request(conn, "POST", "/post").status == 502
        assert proxy.backend.hits.count("POST /post") == 1
        conn.close()
        assert _request(conn, "POST", "/post-body", b'{"a": 1}').status == 502
        assert proxy.backend.hits.count("POST /post-body") == 1
    finally:
        conn.close()
