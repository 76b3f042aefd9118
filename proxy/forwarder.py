"""Userspace TCP forwarding, as kube-proxy's original userspace mode did it.

A :class:`PortProxy` owns the listeners of one service port (the portal listener the iptables
REDIRECT points at, plus NodePort and LoadBalancer listeners on the node's addresses) and one
:class:`~proxy.model.EndpointPicker`.  Each accepted connection is spliced to an endpoint: the
picker's candidates are tried in order (a dead endpoint is skipped for the next one); with none
left the client gets a TCP reset at once.  Each direction is pumped with large reads and
forwards EOF with ``write_eof()`` (half-close), so a client that shuts down its sending side still
receives the whole answer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

from .model import EndpointPicker, ServicePort

log = logging.getLogger(__name__)

BUFFER = 256 * 1024
CONNECT_TIMEOUT = 3.0


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0) so the client sees a refusal, not a clean end of stream."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


def _tune(writer: asyncio.StreamWriter) -> None:
    writer.transport.set_write_buffer_limits(high=4 * BUFFER)  # type: ignore[attr-defined]
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while True:
        data = await src.read(BUFFER)
        if not data:
            break
        dst.write(data)
        await dst.drain()
    if dst.can_write_eof() and not dst.is_closing():
        dst.write_eof()


async def splice(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until both sides have sent EOF (or one fails: then both are dropped)."""
    up = asyncio.ensure_future(_pump(a_reader, b_writer))
    down = asyncio.ensure_future(_pump(b_reader, a_writer))
    try:
        for fut in asyncio.as_completed((up, down)):
            try:
                await fut
            except (ConnectionError, OSError):
                a_writer.transport.abort()
                b_writer.transport.abort()
    finally:
        for fut in (up, down):
            fut.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        for w in (a_writer, b_writer):
            w.close()


class PortProxy:
    def __init__(self, sp: ServicePort, bind_address: str = "0.0.0.0") -> None:
        self.sp = sp
        self.bind_address = bind_address
        self.picker = EndpointPicker(sp.affinity_seconds)
        self.portal: asyncio.Server | None = None
        self.portal_port = 0
        self.extra: dict[tuple[str, int], asyncio.Server] = {}  # (address, port) -> NodePort/LB listener
        self.connections: set[asyncio.Task[None]] = set()

    async def start_portal(self) -> None:
        if self.portal is None:
            self.portal = await asyncio.start_server(
                self._handle, self.bind_address, 0, limit=BUFFER, backlog=1024
            )
            self.portal_port = self.portal.sockets[0].getsockname()[1]
            log.info("service %s: portal listener on port %d", self.sp.key, self.portal_port)

    async def set_extra_listeners(self, wanted: set[tuple[str, int]]) -> list[str]:
        """Listen exactly on ``wanted`` (address, port) pairs; returns errors for the ones that
        could not be bound (retried by the next reconcile)."""
        problems = []
        for addr_port in list(self.extra):
            if addr_port not in wanted:
                self.extra.pop(addr_port).close()
        for addr, port in sorted(wanted - set(self.extra)):
            try:
                self.extra[(addr, port)] = await asyncio.start_server(
                    self._handle, addr, port, limit=BUFFER, backlog=1024, reuse_address=True
                )
                log.info("service %s: listening on %s:%d", self.sp.key, addr, port)
            except OSError as e:
                problems.append(f"{addr}:{port}: {e.strerror or e}")
        return problems

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            await self._forward(reader, writer)
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        except Exception:
            log.exception("service %s: forwarding failed", self.sp.key)
            writer.transport.abort()
        finally:
            self.connections.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        client_ip = peer[0]
        for endpoint in self.picker.candidates(client_ip):
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(endpoint[0], endpoint[1], limit=BUFFER), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError) as e:
                log.warning(
                    "service %s: endpoint %s:%d failed (%s); trying the next", self.sp.key, *endpoint, e
                )
                continue
            self.picker.connected(client_ip, endpoint)
            _tune(writer)
            _tune(up_writer)
            await splice(reader, writer, up_reader, up_writer)
            return
        log.info("service %s: no endpoint answered for %s; refusing", self.sp.key, client_ip)
        _reset(writer)

    async def close(self) -> None:
        servers = [s for s in [self.portal, *self.extra.values()] if s is not None]
        for s in servers:
            s.close()
        self.portal = None
        self.extra.clear()
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
