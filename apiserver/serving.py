"""Serving the API over HTTPS (and, for debugging, plain HTTP on loopback) with uvicorn.

The protocol classes here (built on :mod:`apimachinery.tlspeer`) read the client certificate TLS
verified once per connection, turn it into the :class:`~apiserver.authtypes.UserInfo` it names
(CN = user, O = groups) and put that into every request's ASGI scope:

- ``scope["minik.user"]``: the certificate's user, ``None`` when the client sent none, or
  :data:`UNSECURED` on the insecure port (no authentication, no authorization);
- ``scope["extensions"]["tls"]``: the ASGI TLS extension (``client_cert_name``, ``tls_version``,
  ``cipher_suite``) on secure connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import uvicorn

from apimachinery.tlspeer import PeerHttpProtocol, PeerWebSocketProtocol, peer_certificate

from .authn import UNSECURED, x509_user
from .authtypes import UserInfo

log = logging.getLogger("apiserver")

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
# TLS 1.2 suites: ECDHE with AES-GCM or ChaCha20-Poly1305 only (Go's, and so Kubernetes', secure set)
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"


def peer_identity(transport: Any) -> tuple[UserInfo | None, dict[str, Any] | None]:
    """The user named by the verified client certificate of ``transport`` (None without one) and
    the ASGI TLS extension of the connection (None on plain HTTP)."""
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return None, None
    user = None
    der = peer_certificate(transport)
    name = None
    if der:
        try:
            user = x509_user(der)
            name = f"CN={user.name}"
        except ValueError:
            log.warning("client certificate could not be read; treating the connection as anonymous")
            user = None
    cipher = sslobj.cipher()
    ext: dict[str, Any] = {
        "server_cert": None,
        "client_cert_chain": [],
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(sslobj.version() or ""),
        "cipher_suite": None,
        "cipher_name": cipher[0] if cipher else None,
    }
    return user, {"tls": ext}


class HeadersWithBody:
    """The transport of one request/response cycle that sends a response's status line and headers
    together with the body write that follows them: one TLS record and one ``send`` per response
    instead of two.

    uvicorn writes the headers when the application sends ``http.response.start`` and the body at
    ``http.response.body``.  Only the headers of a response with a ``Content-Length`` (not a HEAD)
    wait, since uvicorn writes its body (even an empty one) when the application sends it: a
    streaming response (a watch, chunked) gets its headers at once.  If the application ends
    without a body, uvicorn closes the connection, which sends the headers first.  Everything else
    is the real transport's.
    """

    __slots__ = ("transport", "cycle", "held", "seen")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self.transport = transport
        self.cycle = cycle
        self.held: bytes | None = None
        self.seen = False  # the headers were written

    def write(self, data: bytes) -> None:
        held = self.held
        if held is not None:
            self.held = None
            self.transport.write(held + data)
        elif not self.seen and self.cycle.response_started:
            # the first write once the response has started is its status line and headers
            # (``100 Continue`` is written before, while the response has not started)
            self.seen = True
            cycle = self.cycle
            if cycle.chunked_encoding is False and cycle.scope["method"] != "HEAD":
                self.held = data
            else:
                self.transport.write(data)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        held = self.held
        if held is not None:
            self.held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class SecureHttpProtocol(PeerHttpProtocol):
    """httptools HTTP/1.1, with the connection's client-certificate user in each request's scope."""

    def connection_scope(self, transport: Any) -> Mapping[str, Any]:
        return _identity_scope(transport)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle: Any = self.cycle
        # a new cycle (not an upgrade, which makes none): its response goes out in one TLS write
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = HeadersWithBody(self.transport, cycle)


class InsecureHttpProtocol(PeerHttpProtocol):
    """The insecure port: every request is :data:`UNSECURED`."""

    def connection_scope(self, transport: Any) -> Mapping[str, Any]:
        return _UNSECURED_SCOPE


class SecureWebSocketProtocol(PeerWebSocketProtocol):
    """WebSocket upgrades (exec, attach, port-forward) with the client-certificate user."""

    def connection_scope(self, transport: Any) -> Mapping[str, Any]:
        return _identity_scope(transport)


class InsecureWebSocketProtocol(PeerWebSocketProtocol):
    def connection_scope(self, transport: Any) -> Mapping[str, Any]:
        return _UNSECURED_SCOPE


_UNSECURED_SCOPE: Mapping[str, Any] = {"minik.user": UNSECURED}


def _identity_scope(transport: Any) -> dict[str, Any]:
    user, extensions = peer_identity(transport)
    scope: dict[str, Any] = {"minik.user": user}
    if extensions is not None:
        scope["extensions"] = extensions
    return scope


def server_config(
    app: Any,
    host: str,
    port: int,
    *,
    secure: bool,
    lifespan: bool,
    certfile: str | None = None,
    keyfile: str | None = None,
    client_ca: str | None = None,
) -> uvicorn.Config:
    kw: dict[str, Any] = {}
    if secure:
        kw = {
            "ssl_certfile": certfile,
            "ssl_keyfile": keyfile,
            "ssl_ca_certs": client_ca,
            "ssl_cert_reqs": ssl.CERT_OPTIONAL if client_ca else ssl.CERT_NONE,
            # uvicorn's default ("TLSv1") would offer NULL and anonymous suites and no AES-GCM on
            # TLS 1.2; TLS 1.3's suites are not affected by this list
            "ssl_ciphers": TLS12_CIPHERS,
        }
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        loop="asyncio",
        http=SecureHttpProtocol if secure else InsecureHttpProtocol,
        ws=SecureWebSocketProtocol if secure else InsecureWebSocketProtocol,
        lifespan="on" if lifespan else "off",
        **kw,
    )


class _Server(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM and SIGINT to :func:`serve_all`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(host: str, port: int) -> socket.socket:
    """A bound TCP socket for ``host:port``; a clear exit when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise SystemExit(f"minik-apiserver: cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


async def serve_all(configs: Sequence[uvicorn.Config]) -> None:
    """Run one uvicorn server per config in this process until SIGTERM or SIGINT, then stop them
    all.  Every address is bound before anything is served (a taken port ends the process at
    once); the first config runs the app's lifespan and starts first, so the watch caches start
    once."""
    sockets = [listen(c.host, c.port) for c in configs]
    servers = [_Server(c) for c in configs]

    def stop_all() -> None:
        for s in servers:
            if s.should_exit:
                s.force_exit = True
            s.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_all)
    tasks = [asyncio.create_task(servers[0].serve(sockets=[sockets[0]]), name="apiserver-serve-0")]
    if len(servers) > 1:
        # the others start once the first has run the lifespan
        while not servers[0].started and not tasks[0].done():
            await asyncio.sleep(0.02)
        if not tasks[0].done():
            for i, (s, sock) in enumerate(zip(servers[1:], sockets[1:], strict=True), 1):
                tasks.append(asyncio.create_task(s.serve(sockets=[sock]), name=f"apiserver-serve-{i}"))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_all()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for sock in sockets:
            sock.close()
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
            raise r
