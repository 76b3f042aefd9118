"""Userspace forwarding, as kube-proxy's original userspace mode did it.

A :class:`PortProxy` (TCP) or :class:`UdpPortProxy` owns the listeners of one service port (the
portal listener the iptables REDIRECT points at, plus NodePort and LoadBalancer listeners on the
node's addresses) and one :class:`~proxy.model.EndpointPicker`.

TCP: each accepted connection is joined to an endpoint: the picker's candidates are tried in
order (a dead endpoint is skipped for the next one); with none left the client gets a TCP reset
at once.  Each direction is copied by its own pump on the raw non-blocking sockets; on Linux the
bytes move socket -> pipe -> socket with ``os.splice`` and never enter Python (zero-copy), elsewhere
with ``recv_into`` a reused 256 KiB buffer.  A pump forwards EOF with ``shutdown(SHUT_WR)``
(half-close), so a client that shuts down its sending side still receives the whole answer; the
connection ends when both directions have ended.

UDP: each client address (per listener) is a session with a connected socket of its own towards
the endpoint the picker chose; answers go back to the client from the listener socket (so
conntrack undoes the REDIRECT).  A session idle for ``udp_timeout`` seconds is closed.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar, cast

from .model import EndpointPicker, ServicePort

log = logging.getLogger(__name__)
L = TypeVar("L")

BUFFER = 256 * 1024
PIPE_SIZE = 1024 * 1024
CONNECT_TIMEOUT = 3.0
UDP_TIMEOUT = 2.0
UDP_MAX = 65535
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
USE_SPLICE = hasattr(os, "splice") and os.environ.get("MINIK_PROXY_SPLICE", "1") != "0"
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) so the client sees a refusal, not a clean end of stream."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _tune(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


async def _wait(loop: asyncio.AbstractEventLoop, sock: socket.socket, writable: bool) -> None:
    fut = loop.create_future()
    fd = sock.fileno()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    if writable:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _move(
    loop: asyncio.AbstractEventLoop,
    src: socket.socket,
    dst: socket.socket,
    read: Callable[[], int],
    write: Callable[[int, int], int],
) -> int:
    """Copy until EOF: ``read()`` takes in what ``src`` has (its size; 0 at EOF), ``write(done, n)``
    passes on bytes ``done`` to ``n`` of it; each waits for its socket when it would block.
    Returns the byte count."""
    total = 0
    while True:
        try:
            n = read()
        except BlockingIOError:
            await _wait(loop, src, False)
            continue
        if n == 0:
            return total
        total += n
        done = 0
        while done < n:
            try:
                done += write(done, n)
            except BlockingIOError:
                await _wait(loop, dst, True)


async def _pump_splice(loop: asyncio.AbstractEventLoop, src: socket.socket, dst: socket.socket) -> int:
    """Move bytes from ``src`` to ``dst`` through a pipe in the kernel; returns the byte count."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        sfd, dfd = src.fileno(), dst.fileno()
        return await _move(
            loop,
            src,
            dst,
            lambda: os.splice(sfd, w, PIPE_SIZE, flags=_SPLICE_FLAGS),
            lambda done, n: os.splice(r, dfd, n - done, flags=_SPLICE_FLAGS),
        )
    finally:
        os.close(r)
        os.close(w)


async def _pump_copy(loop: asyncio.AbstractEventLoop, src: socket.socket, dst: socket.socket) -> int:
    """The portable pump: ``recv_into`` one reused buffer, send what arrived."""
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    return await _move(loop, src, dst, lambda: src.recv_into(buf), lambda done, n: dst.send(view[done:n]))


async def _pump(src: socket.socket, dst: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    await (_pump_splice if USE_SPLICE else _pump_copy)(loop, src, dst)
    try:
        dst.shutdown(socket.SHUT_WR)  # forward the half-close
    except OSError:
        pass


async def splice(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until both sides have sent EOF (or one fails: then both are dropped)."""
    up = asyncio.ensure_future(_pump(a, b))
    down = asyncio.ensure_future(_pump(b, a))
    try:
        for fut in asyncio.as_completed((up, down)):
            try:
                await fut
            except OSError as e:
                if e.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, None):
                    log.debug("forwarding ended: %s", e)
                for s in (a, b):
                    try:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    except OSError:
                        pass
                break
    finally:
        for fut in (up, down):
            fut.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        a.close()
        b.close()


def _listen_tcp(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _PortListeners(Generic[L]):
    """What the TCP and UDP proxies of a service port share: the picker, the portal listener
    (on an ephemeral port of ``bind_address``), the NodePort and LoadBalancer listeners, and the
    tasks to cancel on close."""

    protocol = ""

    def __init__(self, sp: ServicePort, bind_address: str) -> None:
        self.sp = sp
        self.bind_address = bind_address
        self.picker = EndpointPicker(sp.affinity_seconds)
        self.portal: L | None = None
        self.portal_port = 0
        self.extra: dict[tuple[str, int], L] = {}  # (address, port) -> NodePort/LB listener
        self.tasks: set[asyncio.Task[None]] = set()

    def _listen(self, address: str, port: int) -> L:
        raise NotImplementedError

    def _close_listener(self, listener: L) -> None:
        raise NotImplementedError

    def _port(self, listener: L) -> int:
        raise NotImplementedError

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start_portal(self) -> None:
        if self.portal is None:
            self.portal = self._listen(self.bind_address, 0)
            self.portal_port = self._port(self.portal)
            log.info(
                "service %s: portal listener on %s port %d", self.sp.key, self.protocol, self.portal_port
            )

    async def set_extra_listeners(self, wanted: set[tuple[str, int]]) -> list[str]:
        """Listen exactly on ``wanted`` (address, port) pairs; returns errors for the ones that
        could not be bound (retried by the next reconcile)."""
        problems = []
        for addr_port in list(self.extra):
            if addr_port not in wanted:
                self._close_listener(self.extra.pop(addr_port))
        for addr, port in sorted(wanted - set(self.extra)):
            try:
                self.extra[(addr, port)] = self._listen(addr, port)
            except OSError as e:
                problems.append(f"{addr}:{port}/{self.protocol}: {e.strerror or e}")
                continue
            log.info("service %s: listening on %s:%d/%s", self.sp.key, addr, port, self.protocol)
        return problems

    async def close(self) -> None:
        for listener in [lis for lis in [self.portal, *self.extra.values()] if lis is not None]:
            self._close_listener(listener)
        self.portal = None
        self.extra.clear()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class PortProxy(_PortListeners[socket.socket]):
    """The TCP listeners and connections of one service port."""

    protocol = "tcp"

    def __init__(self, sp: ServicePort, bind_address: str = "0.0.0.0") -> None:
        super().__init__(sp, bind_address)
        self._accepting: dict[int, asyncio.Task[None]] = {}  # listener fd -> its accept loop

    def _listen(self, address: str, port: int) -> socket.socket:
        sock = _listen_tcp(address, port)
        self._accepting[sock.fileno()] = asyncio.create_task(
            self._accept_loop(sock), name=f"accept {self.sp.key} {sock.getsockname()}"
        )
        return sock

    def _close_listener(self, sock: socket.socket) -> None:
        task = self._accepting.pop(sock.fileno(), None)
        if task is not None:
            task.cancel()
        sock.close()

    def _port(self, sock: socket.socket) -> int:
        return int(sock.getsockname()[1])

    async def _accept_loop(self, lsock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(lsock)
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("service %s: accept failed (%s); pausing", self.sp.key, e)
                    await asyncio.sleep(0.1)
                    continue
                if e.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            self._track(self._handle(conn, peer[0]))

    async def _handle(self, conn: socket.socket, client_ip: str) -> None:
        try:
            _tune(conn)
            upstream = await self._connect(client_ip)
            if upstream is None:
                log.info("service %s: no endpoint answered for %s; refusing", self.sp.key, client_ip)
                _reset(conn)
                return
            await splice(conn, upstream)
        except asyncio.CancelledError:
            _reset(conn)
            raise
        except Exception:
            log.exception("service %s: forwarding failed", self.sp.key)
            _reset(conn)

    async def _connect(self, client_ip: str) -> socket.socket | None:
        loop = asyncio.get_running_loop()
        for endpoint in self.picker.candidates(client_ip):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            _tune(sock)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, endpoint), CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as e:
                sock.close()
                log.warning(
                    "service %s: endpoint %s:%d failed (%s); trying the next",
                    self.sp.key,
                    *endpoint,
                    e or "timeout",
                )
                continue
            self.picker.connected(client_ip, endpoint)
            return sock
        return None


# -- UDP ----------------------------------------------------------------------------------------


IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_PKTINFO = struct.Struct("=I4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr


def udp_socket(address: str, port: int) -> socket.socket:
    """A non-blocking UDP socket that reports each datagram's destination address (IP_PKTINFO),
    so answers can leave from exactly the address the question came to: a socket bound to
    0.0.0.0 would otherwise answer from whatever address the route picks, which neither conntrack
    (undoing a REDIRECT) nor a connected client accepts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def recv_from(sock: socket.socket) -> tuple[bytes, tuple[str, int], str | None]:
    """One datagram: (data, sender, the local address it was sent to)."""
    data, ancdata, _flags, addr = sock.recvmsg(UDP_MAX, socket.CMSG_SPACE(_PKTINFO.size))
    local = None
    for level, kind, value in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= _PKTINFO.size:
            local = socket.inet_ntoa(_PKTINFO.unpack(value[: _PKTINFO.size])[2])
    return data, addr, local


def send_from(sock: socket.socket, data: bytes, addr: tuple[str, int], local: str | None) -> None:
    """Send ``data`` to ``addr`` with ``local`` as the source address (dropped if the buffer is full)."""
    anc = []
    if local:
        anc = [(socket.IPPROTO_IP, IP_PKTINFO, _PKTINFO.pack(0, socket.inet_aton(local), b"\0" * 4))]
    try:
        sock.sendmsg([data], anc, 0, addr)
    except (BlockingIOError, InterruptedError):
        pass
    except OSError as e:
        log.debug("udp send to %s:%d failed: %s", *addr, e)


class _Listener:
    """A UDP portal, NodePort or LoadBalancer socket: datagrams from clients go to their session."""

    def __init__(self, owner: UdpPortProxy, sock: socket.socket) -> None:
        self.owner = owner
        self.sock: socket.socket | None = sock
        self.port = sock.getsockname()[1]
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        while self.sock is not None:
            try:
                data, addr, local = recv_from(self.sock)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug("service %s: udp listener error: %s", self.owner.sp.key, e)
                return
            self.owner.from_client(self, data, addr, local)

    def sendto(self, data: bytes, addr: tuple[str, int], local: str | None) -> None:
        if self.sock is not None:
            send_from(self.sock, data, addr, local)

    def close(self) -> None:
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None


class _Session(asyncio.DatagramProtocol):
    """One client's flow: a connected socket towards its endpoint; answers go back through the
    listener the client wrote to."""

    def __init__(
        self,
        owner: UdpPortProxy,
        listener: _Listener,
        client: tuple[str, int],
        endpoint: tuple[str, int],
        local: str | None,
    ) -> None:
        self.owner = owner
        self.listener = listener
        self.client = client
        self.local = local  # the address the client wrote to: answers leave from it
        self.endpoint = endpoint
        self.transport: asyncio.DatagramTransport | None = None
        self.last = time.monotonic()
        self.pending: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        dt = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass
        self.transport = dt
        for data in self.pending:
            dt.sendto(data)
        self.pending.clear()

    def send(self, data: bytes) -> None:
        self.last = time.monotonic()
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.sendto(data)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.last = time.monotonic()
        self.listener.sendto(data, self.client, self.local)

    def error_received(self, exc: Exception) -> None:
        # an ICMP port unreachable from the endpoint: end the session, the next datagram picks again
        log.info("service %s: endpoint %s:%d: %s", self.owner.sp.key, *self.endpoint, exc)
        self.owner.end(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.end(self)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.close()


class UdpPortProxy(_PortListeners[_Listener]):
    """The UDP listeners and client sessions of one service port (same interface as PortProxy)."""

    protocol = "udp"

    def __init__(
        self, sp: ServicePort, bind_address: str = "0.0.0.0", udp_timeout: float = UDP_TIMEOUT
    ) -> None:
        super().__init__(sp, bind_address)
        self.udp_timeout = udp_timeout
        self.sessions: dict[tuple[int, tuple[str, int]], _Session] = {}

    def _listen(self, address: str, port: int) -> _Listener:
        return _Listener(self, udp_socket(address, port))

    def _port(self, listener: _Listener) -> int:
        return listener.port

    def from_client(
        self, listener: _Listener, data: bytes, client: tuple[str, int], local: str | None
    ) -> None:
        key = (id(listener), client)
        session = self.sessions.get(key)
        if session is None:
            candidates = self.picker.candidates(client[0])
            if not candidates:
                return  # dropped; the REJECT rule answers clients of a VIP without endpoints
            session = _Session(self, listener, client, candidates[0], local)
            self.picker.connected(client[0], candidates[0])
            self.sessions[key] = session
            self._track(self._open(session))
        session.send(data)

    async def _open(self, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: session, remote_addr=session.endpoint)
        except OSError as e:
            log.warning("service %s: endpoint %s:%d: %s", self.sp.key, *session.endpoint, e)
            self.end(session)
            return
        self._arm(session)

    def _arm(self, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        remaining = session.last + self.udp_timeout - time.monotonic()
        if remaining <= 0:
            self.end(session)
            return
        session.timer = loop.call_later(remaining, self._arm, session)

    def end(self, session: _Session) -> None:
        key = (id(session.listener), session.client)
        if self.sessions.get(key) is session:
            del self.sessions[key]
        session.close()

    def _close_listener(self, listener: _Listener) -> None:
        for session in [s for s in self.sessions.values() if s.listener is listener]:
            self.end(session)
        listener.close()


AnyPortProxy = PortProxy | UdpPortProxy


def new_port_proxy(
    sp: ServicePort, bind_address: str = "0.0.0.0", udp_timeout: float = UDP_TIMEOUT
) -> AnyPortProxy:
    if sp.protocol == "UDP":
        return UdpPortProxy(sp, bind_address, udp_timeout)
    return PortProxy(sp, bind_address)
