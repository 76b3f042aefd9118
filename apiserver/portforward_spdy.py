"""``kubectl port-forward``: SPDY/3.1 port-forward sessions, tunnelled in a WebSocket.

kubectl (client-go ``tools/portforward``, feature ``PortForwardWebsockets``, on by default since
v1.31) opens a WebSocket on ``pods/{name}/portforward`` offering the subprotocol
``SPDY/3.1+portforward.k8s.io`` and runs a SPDY client over its binary messages (each message is
a run of bytes of the SPDY connection, not a frame).  For every local connection it accepts, it
opens two streams carrying the headers ``streamType`` (``error``, then ``data``), ``port`` and
``requestID``: bytes of the data stream go to the pod's port and back; the error stream stays
empty unless forwarding fails, and the server closes it when the connection is over.

Kubernetes' API server passes the SPDY connection on to the kubelet.  minik's API server ends
SPDY here and, for every stream pair, opens the kubelet's WebSocket port-forward
(``/portForward/{ns}/{pod}?port=P``, ``v4.channel.k8s.io``: channel 0 data, 1 errors, each
starting with a two-byte port frame) over TLS with the API server's kubelet client certificate
(:func:`apiserver.nodeproxy.connect_kubelet`), so the pod is still reached from its node.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from starlette.websockets import WebSocket, WebSocketDisconnect

from apimachinery import errors

from . import spdy
from .nodeproxy import KubeletUnreachable, _pod_and_kubelet, connect_kubelet
from .registry import Storage

log = logging.getLogger(__name__)

TUNNEL_PREFIX = "SPDY/3.1+"
STREAM_PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = TUNNEL_PREFIX + STREAM_PROTOCOL
KUBELET_PROTOCOLS = ["v4.channel.k8s.io", "portforward.k8s.io"]
#: how long a stream waits for its partner (Kubernetes' kubelet: streamCreationTimeout)
PAIR_TIMEOUT = 30.0


def offers_spdy_tunnel(offered: list[str]) -> bool:
    return TUNNEL_PROTOCOL in offered


@dataclass
class StreamPair:
    """The ``error`` and ``data`` streams of one forwarded connection (one ``requestID``)."""

    request_id: str
    port: str = ""
    error: spdy.Stream | None = None
    data: spdy.Stream | None = None
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, stream: spdy.Stream, stream_type: str) -> str | None:
        """Take one stream; a message when it does not fit."""
        port = stream.header("port") or ""
        if self.port and port != self.port:
            return f"port {port!r} does not match the pair's port {self.port!r}"
        self.port = port
        if stream_type == "error":
            if self.error is not None:
                return f"error stream already assigned for request {self.request_id}"
            self.error = stream
        else:
            if self.data is not None:
                return f"data stream already assigned for request {self.request_id}"
            self.data = stream
        if self.error is not None and self.data is not None:
            self.complete.set()
        return None


def request_id(stream: spdy.Stream, stream_type: str) -> str:
    """The pairing key; clients older than the ``requestID`` header pair streams by id (data = error + 2)."""
    rid = stream.header("requestid")
    if rid:
        return rid
    return str(stream.id if stream_type == "error" else stream.id - 2)


def classify(stream: spdy.Stream) -> tuple[str, str | None]:
    """``(streamType, problem)`` for a new stream."""
    stream_type = (stream.header("streamtype") or "").lower()
    if stream_type not in ("error", "data"):
        return stream_type, f"invalid stream type {stream_type!r}"
    port = stream.header("port")
    if not port:
        return stream_type, '"port" header is required'
    try:
        value = int(port)
    except ValueError:
        return stream_type, f"invalid port {port!r}"
    if not 0 < value < 65536:
        return stream_type, f"invalid port {port!r}"
    return stream_type, None


class PortForwardSession:
    """One kubectl connection: pairs streams and forwards each pair through the kubelet."""

    def __init__(self, ws: WebSocket, namespace: str, name: str, kubelet_base: str) -> None:
        self.ws = ws
        self.namespace = namespace
        self.name = name
        self.kubelet_base = kubelet_base
        self.session = spdy.Session(self._send, self._on_stream)
        self.pairs: dict[str, StreamPair] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def _send(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    def _on_stream(self, stream: spdy.Stream) -> None:
        stream_type, problem = classify(stream)
        if problem is None:
            rid = request_id(stream, stream_type)
            pair = self.pairs.get(rid)
            if pair is None:
                pair = self.pairs[rid] = StreamPair(rid)
                self._spawn(self._forward(pair), f"portforward-{self.name}-{rid}")
            problem = pair.add(stream, stream_type)
        if problem is not None:
            log.info(
                "%s/%s: refusing port-forward stream %d: %s", self.namespace, self.name, stream.id, problem
            )
            self._spawn(stream.abort(spdy.REFUSED_STREAM), f"portforward-{self.name}-refuse")

    def _spawn(self, coro: object, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self) -> None:
        """Read the WebSocket until kubectl goes away, then stop every forward."""
        try:
            while True:
                msg = await self.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                data = msg.get("bytes")
                if data is None and msg.get("text") is not None:
                    raise spdy.ProtocolError("text message in a SPDY tunnel")
                if data:
                    await self.session.feed(data)
        except spdy.ProtocolError as e:
            log.info("%s/%s: port-forward session ended: %s", self.namespace, self.name, e)
            await self.session.go_away(1)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self.session.close()
            for t in list(self.tasks):
                t.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            try:
                await self.ws.close()
            except RuntimeError:
                pass

    async def _forward(self, pair: StreamPair) -> None:
        try:
            await asyncio.wait_for(pair.complete.wait(), PAIR_TIMEOUT)
        except TimeoutError:
            self.pairs.pop(pair.request_id, None)
            msg = f"timed out waiting for the {'data' if pair.data is None else 'error'} stream of request {pair.request_id}"
            log.info("%s/%s: %s", self.namespace, self.name, msg)
            if pair.error is not None:
                await self._report(pair.error, msg)
                await pair.error.close()
            if pair.data is not None:
                await pair.data.abort()
            return
        assert pair.error is not None and pair.data is not None
        try:
            await self._relay(pair.data, pair.error, int(pair.port))
        except spdy.StreamReset:
            pass
        finally:
            self.pairs.pop(pair.request_id, None)
            for stream in (pair.data, pair.error):
                try:
                    await stream.close()
                except spdy.StreamReset:
                    pass

    async def _report(self, error_stream: spdy.Stream, message: str) -> None:
        try:
            await error_stream.write(message.encode())
        except spdy.StreamReset:
            pass

    async def _relay(self, data: spdy.Stream, error: spdy.Stream, port: int) -> None:
        """Copy one connection between the data stream and the kubelet until the pod's side ends
        (or kubectl resets the stream); kubelet errors go to the error stream."""
        from websockets.exceptions import ConnectionClosed

        path = f"/portForward/{self.namespace}/{self.name}"
        try:
            upstream = await connect_kubelet(
                self.kubelet_base, path, [("port", str(port))], KUBELET_PROTOCOLS
            )
        except KubeletUnreachable as e:
            why = f"the kubelet refused: {e}" if e.code is not None else f"the kubelet did not answer: {e}"
            await self._report(error, f"error forwarding port {port} to pod {self.name}: {why}")
            return

        async def to_pod() -> None:
            while True:
                chunk = await data.read()
                if not chunk:
                    # kubectl is done sending; the kubelet protocol has no half-close, so keep
                    # the connection until the pod's side ends
                    await asyncio.Event().wait()
                await upstream.send(b"\x00" + chunk)

        async def from_pod() -> None:
            seen_port_frame = {0: False, 1: False}
            async for message in upstream:
                raw = message if isinstance(message, bytes) else message.encode()
                if not raw:
                    continue
                channel, payload = raw[0], raw[1:]
                if channel in seen_port_frame and not seen_port_frame[channel]:
                    seen_port_frame[channel] = True  # the port, two bytes little-endian
                    continue
                if channel == 0 and payload:
                    await data.write(payload)
                elif channel == 1 and payload:
                    log.info("%s/%s: %s", self.namespace, self.name, payload.decode(errors="replace"))
                    await self._report(error, payload.decode(errors="replace"))

        tasks = [asyncio.create_task(to_pod()), asyncio.create_task(from_pod())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                exc = t.exception()
                if exc is not None and not isinstance(exc, spdy.StreamReset | ConnectionClosed):
                    raise exc
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()


async def serve_tunnel(storage: Storage, ws: WebSocket, namespace: str, name: str) -> None:
    """Serve ``pods/{name}/portforward`` for a client offering ``SPDY/3.1+portforward.k8s.io``.

    A request that cannot be served (no such pod, no node, no kubelet endpoint) is refused before
    the upgrade; kubectl then retries with a plain SPDY upgrade, and the HTTP handler answers that
    with the Status explaining why (:func:`refuse_plain_upgrade`).
    """
    try:
        _container, base = await _pod_and_kubelet(storage, namespace, name, None, any_container=True)
    except errors.StatusError as e:
        log.info("%s/%s: port-forward refused: %s", namespace, name, e)
        await ws.close(code=1008)
        return
    await ws.accept(subprotocol=TUNNEL_PROTOCOL)
    log.info("%s/%s: port-forward session (SPDY over WebSocket) started", namespace, name)
    await PortForwardSession(ws, namespace, name, base).run()
    log.info("%s/%s: port-forward session ended", namespace, name)


async def refuse_plain_upgrade(storage: Storage, namespace: str, name: str) -> None:
    """The HTTP side of ``pods/{name}/portforward``: a plain ``Upgrade: SPDY/3.1`` can't be taken
    over through ASGI, so answer with Kubernetes' error for the pod when there is one, and
    otherwise say which transport works."""
    await _pod_and_kubelet(storage, namespace, name, None, any_container=True)
    raise errors.BadRequest(
        "port-forward over a plain SPDY/3.1 upgrade is not supported by this server; "
        "use the WebSocket transport (kubectl >= 1.31 uses it unless KUBECTL_PORT_FORWARD_WEBSOCKETS=false)"
    )
