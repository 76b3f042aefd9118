"""The plain-HTTP listener of fixed paths (the kubelet's /healthz port) over a real loopback socket."""

from __future__ import annotations

import asyncio

import pytest

from apimachinery import plainhttp
from kubelet.auth import serve_healthz

pytestmark = pytest.mark.unit


async def _ask(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def test_kubelet_healthz_port_answers_only_get_healthz() -> None:
    async def scenario() -> None:
        server = await serve_healthz("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            answer = await _ask(port, b"GET /healthz?verbose HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nok")
            assert b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n" in answer
            answer = await _ask(port, b"HEAD /healthz HTTP/1.1\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\n")
            for request in (b"GET /pods HTTP/1.1\r\n\r\n", b"POST /healthz HTTP/1.1\r\n\r\n"):
                answer = await _ask(port, request)
                assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n")
                assert answer.endswith(b"404 page not found\n")
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_routes_content_type_and_method_not_allowed() -> None:
    async def scenario() -> None:
        routes = {"/metrics": lambda: (b"m 1\n", "text/plain; version=0.0.4"), "/healthz": plainhttp.ok}
        server = await plainhttp.serve("127.0.0.1", 0, routes, method_not_allowed=True)
        port = server.sockets[0].getsockname()[1]
        try:
            answer = await _ask(port, b"GET /metrics HTTP/1.1\r\n\r\n")
            assert b"Content-Type: text/plain; version=0.0.4\r\n" in answer and answer.endswith(b"m 1\n")
            answer = await _ask(port, b"DELETE /metrics HTTP/1.1\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
            answer = await _ask(port, b"GET /other HTTP/1.1\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n")
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
