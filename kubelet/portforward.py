"""Port-forward over WebSocket: Kubernetes' channel protocol for ``pods/{name}/portforward``.

What the kubelet's ``pkg/kubelet/cri/streaming/portforward/websocket.go`` speaks:

* the ports come in the query, ``port=8080,9090`` (what the API server sends) or ``ports=8080``
  (what clients send to the API server), repeated or comma-separated;
* subprotocol ``v4.channel.k8s.io`` (also ``portforward.k8s.io`` or none): binary messages whose
  first byte is the channel; port ``i`` of the request has the data channel ``2*i`` and the error
  channel ``2*i+1``;
* before anything else the server sends, on each of those channels, one frame carrying the port
  as 2 little-endian bytes;
* bytes the client sends on a data channel go to the pod's port, what the pod answers comes back
  on it; a failure to connect is a text message on the error channel.

Each port gets one TCP connection to the pod (``podIP:port``, from this host over the pod
network) for the life of the WebSocket, which closes when every connection has ended.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from . import podstate

if TYPE_CHECKING:
    from .kubelet import Kubelet

log = logging.getLogger(__name__)

PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io")


def parse_ports(values: list[str]) -> list[int]:
    """``["8080,9090", "53"]`` -> ``[8080, 9090, 53]``; ValueError on anything else."""
    ports = []
    for value in values:
        for part in value.split(","):
            port = int(part)
            if not 0 < port < 65536:
                raise ValueError(f"invalid port {part!r}")
            ports.append(port)
    if not ports:
        raise ValueError('query parameter "port" is required')
    return ports


def port_frame(channel: int, port: int) -> bytes:
    return bytes([channel]) + port.to_bytes(2, "little")


async def serve(kubelet: Kubelet, ws: WebSocket, namespace: str, name: str) -> None:
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    chosen = next((p for p in PROTOCOLS if p in offered), None)
    if offered and chosen is None:
        await ws.close(code=1002)
        return
    q = ws.query_params
    try:
        ports = parse_ports(q.getlist("port") + q.getlist("ports"))
    except ValueError as exc:
        await ws.accept(subprotocol=chosen)
        await ws.send_bytes(b"\x01" + str(exc).encode())
        await ws.close()
        return
    await ws.accept(subprotocol=chosen)
    pod = kubelet.pods.store.get(f"{namespace}/{name}")
    uid = str(((pod or {}).get("metadata") or {}).get("uid", ""))
    sandbox = podstate.latest_sandbox(await kubelet.list_sandboxes(uid)) if pod else None
    ip = sandbox.ip if sandbox is not None and sandbox.state == "running" else ""
    for i, port in enumerate(ports):
        await ws.send_bytes(port_frame(2 * i, port))
        await ws.send_bytes(port_frame(2 * i + 1, port))

    writers: dict[int, asyncio.StreamWriter] = {}
    tasks: list[asyncio.Task[Any]] = []

    async def pod_to_client(i: int, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(32768)
                if not data:
                    break
                await ws.send_bytes(bytes([2 * i]) + data)
        except (OSError, RuntimeError, WebSocketDisconnect):
            pass

    for i, port in enumerate(ports):
        if not ip:
            msg = (
                f"error forwarding port {port} to pod {name}, uid {uid}: the pod is not running on this node"
            )
            await ws.send_bytes(bytes([2 * i + 1]) + msg.encode())
            continue
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 10)
        except (OSError, TimeoutError) as exc:
            msg = f"error forwarding port {port} to pod {name}, uid {uid}: {exc}"
            log.info("%s/%s: %s", namespace, name, msg)
            await ws.send_bytes(bytes([2 * i + 1]) + msg.encode())
            continue
        writers[i] = writer
        tasks.append(asyncio.create_task(pod_to_client(i, reader), name=f"portforward-{name}-{port}"))

    async def client_to_pod() -> None:
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                data = msg.get("bytes")
                if not data:
                    continue
                channel, payload = data[0], data[1:]
                w = writers.get(channel // 2) if channel % 2 == 0 else None
                if w is not None and payload:
                    w.write(payload)
                    await w.drain()
        except (OSError, RuntimeError, WebSocketDisconnect):
            pass

    reader_task = asyncio.create_task(client_to_pod(), name=f"portforward-{name}-in")
    try:
        if tasks:
            # ends when every pod connection has closed, or the client went away
            waiter: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*tasks))
            await asyncio.wait([waiter, reader_task], return_when=asyncio.FIRST_COMPLETED)
        try:
            await ws.close()
        except RuntimeError:
            pass
    finally:
        reader_task.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(reader_task, *tasks, return_exceptions=True)
        for w in writers.values():
            w.close()
