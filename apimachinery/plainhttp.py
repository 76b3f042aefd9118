"""A minimal plain-HTTP listener for a component's few fixed paths (``/healthz``, ``/metrics``):
one request per connection, answered and closed, with nothing of a web framework."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

TEXT = "text/plain; charset=utf-8"

# a path's answer: (body, content type), made for each GET or HEAD of it
Route = Callable[[], tuple[bytes, str]]


def ok() -> tuple[bytes, str]:
    """``/healthz``'s answer."""
    return b"ok", TEXT


async def serve(
    host: str, port: int, routes: Mapping[str, Route], *, method_not_allowed: bool = False
) -> asyncio.Server:
    """Answer ``GET``/``HEAD`` of each path of ``routes`` (query strings ignored) with ``200``,
    any other path with ``404 page not found``; another method gets ``405`` with
    ``method_not_allowed``, else ``404`` as well."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            target = rest.split(" ", 1)[0].split("?", 1)[0]
            ctype = TEXT
            route = routes.get(target)
            if method not in ("GET", "HEAD") and method_not_allowed:
                status, body = "405 Method Not Allowed", b"405 method not allowed\n"
            elif method in ("GET", "HEAD") and route is not None:
                status = "200 OK"
                body, ctype = route()
            else:
                status, body = "404 Not Found", b"404 page not found\n"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (body if method != "HEAD" else b"")
            )
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
