"""``pods/{name}/log``, ``exec``, ``attach`` and ``portforward``: the API server passes them on to the
pod's kubelet.

The kubelet serves ``GET /containerLogs/{ns}/{pod}/{container}`` (plain text, streamed with
``follow``) and a WebSocket at ``/exec/{ns}/{pod}/{container}`` speaking Kubernetes' channel
protocols (``v5.channel.k8s.io``: one stream byte per message).  Its address is the node's
``InternalIP`` and ``status.daemonEndpoints.kubeletEndpoint.Port``, over HTTPS with the API
server's kubelet client certificate (see :func:`configure`).  Like Kubernetes' API server, this
module only finds the kubelet, checks the request against the pod, and copies bytes.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import orjson
from fastapi.responses import Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from apimachinery import errors
from apimachinery.resources import by_plural

from .registry import Storage

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KubeletClientConfig:
    """How the API server reaches kubelets (``--kubelet-client-certificate``/``--kubelet-client-key``,
    ``--kubelet-certificate-authority``): HTTPS with that client certificate; the kubelet's serving
    certificate is verified only when a CA is given (Kubernetes' default otherwise: not verified)."""

    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        if not self.ca_file:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


_kubelet_client = KubeletClientConfig()
_ssl_context: ssl.SSLContext | None = None


def configure(cert_file: str | None = None, key_file: str | None = None, ca_file: str | None = None) -> None:
    """Set the API server's kubelet client credentials (minik-apiserver's flags)."""
    global _kubelet_client, _ssl_context
    if bool(cert_file) != bool(key_file):
        raise ValueError("--kubelet-client-certificate and --kubelet-client-key go together")
    _kubelet_client = KubeletClientConfig(cert_file or None, key_file or None, ca_file or None)
    _ssl_context = _kubelet_client.ssl_context()  # read the files now: a bad path fails at start


def kubelet_ssl_context() -> ssl.SSLContext:
    """The TLS context for connections to kubelets (made once, shared by every connection)."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = _kubelet_client.ssl_context()
    return _ssl_context


PODS = by_plural("", "v1", "pods")
NODES = by_plural("", "v1", "nodes")
LOG_PARAMS = ("follow", "tailLines", "previous", "timestamps", "sinceSeconds", "sinceTime", "limitBytes")
EXEC_PARAMS = ("command", "stdin", "stdout", "stderr", "tty")
CHANNEL_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io")
PORTFORWARD_PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io")


async def _pod_and_kubelet(
    storage: Storage, namespace: str, name: str, container: str | None, any_container: bool = False
) -> tuple[str, str]:
    """(container name, kubelet base URL) for a pod, with Kubernetes' errors when it can't be reached."""
    assert PODS is not None and NODES is not None
    pod = await storage.registry(PODS).get(namespace, name)
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or []]
    all_names = names + [c.get("name") for c in spec.get("initContainers") or []]
    if any_container:
        container = ""
    elif not container:
        if len(names) != 1:
            raise errors.BadRequest(
                f"a container name must be specified for pod {name}, choose one of: [{' '.join(map(str, names))}]"
            )
        container = str(names[0])
    elif container not in all_names:
        raise errors.BadRequest(f"container {container} is not valid for pod {name}")
    node_name = spec.get("nodeName")
    if not node_name:
        raise errors.BadRequest(f"pod {name} does not have a host assigned")
    node = await storage.registry(NODES).get(None, node_name)
    status = node.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    host = addresses.get("InternalIP") or addresses.get("Hostname")
    if not port or not host:
        raise errors.ServiceUnavailable(f"node {node_name} does not report a kubelet endpoint")
    if ":" in str(host):
        host = f"[{host}]"
    return container, f"https://{host}:{port}"


async def pod_logs(storage: Storage, namespace: str, name: str, query: Any) -> Response:
    container, base = await _pod_and_kubelet(storage, namespace, name, query.get("container"))
    params = {k: query.get(k) for k in LOG_PARAMS if query.get(k) not in (None, "")}
    url = f"{base}/containerLogs/{namespace}/{name}/{container}"
    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None), verify=kubelet_ssl_context())
    try:
        upstream = await client.send(client.build_request("GET", url, params=params), stream=True)
    except httpx.HTTPError as e:
        await client.aclose()
        raise errors.ServiceUnavailable(f"the kubelet at {base} did not answer: {e}") from None
    if upstream.status_code != 200:
        body = await upstream.aread()
        await upstream.aclose()
        await client.aclose()
        try:
            raise errors.from_status(orjson.loads(body), upstream.status_code)
        except orjson.JSONDecodeError:
            # Kubernetes' kubelet answers 401/403 in plain text
            text = body.decode(errors="replace").strip()
            raise errors.from_status({"message": text}, upstream.status_code) from None

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as e:
            log.info("log stream of %s/%s ended: %s", namespace, name, e)
        finally:
            await upstream.aclose()
            await client.aclose()

    return StreamingResponse(relay(), media_type="text/plain")


async def pod_exec(storage: Storage, ws: WebSocket, namespace: str, name: str, subresource: str) -> None:
    """Relay an exec (or attach) WebSocket between the client and the kubelet."""
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    q = ws.query_params
    try:
        container, base = await _pod_and_kubelet(storage, namespace, name, q.get("container"))
    except errors.StatusError as e:
        await ws.accept(subprotocol=next((p for p in offered if p in CHANNEL_PROTOCOLS), None))
        await ws.send_bytes(b"\x03" + orjson.dumps(e.status()))
        await ws.close()
        return
    params = [(k, v) for k, v in q.multi_items() if k in EXEC_PARAMS]
    path = f"/{subresource}/{namespace}/{name}/{container}"
    protocols = [p for p in offered if p in CHANNEL_PROTOCOLS] or list(CHANNEL_PROTOCOLS[:2])
    await _relay(ws, base, path, params, protocols, bool(offered), b"\x03")


async def pod_portforward(storage: Storage, ws: WebSocket, namespace: str, name: str) -> None:
    """Relay a ``pods/{name}/portforward`` WebSocket (``v4.channel.k8s.io``: per port a data and an
    error channel) to the kubelet's ``/portForward/{ns}/{pod}``.  Clients name the ports
    ``ports=``; the kubelet reads ``port=`` (as Kubernetes' API server sends them)."""
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    protocols = [p for p in offered if p in PORTFORWARD_PROTOCOLS] or [PORTFORWARD_PROTOCOLS[0]]
    q = ws.query_params
    ports = [v for k, v in q.multi_items() if k in ("ports", "port") and v]
    try:
        if not ports:
            raise errors.BadRequest("at least one port must be specified")
        _container, base = await _pod_and_kubelet(storage, namespace, name, None, any_container=True)
    except errors.StatusError as e:
        await ws.accept(subprotocol=protocols[0] if offered else None)
        await ws.send_bytes(b"\x01" + (e.status().get("message") or str(e)).encode())
        await ws.close()
        return
    port_param = [("port", ",".join(ports))]
    await _relay(ws, base, f"/portForward/{namespace}/{name}", port_param, protocols, bool(offered), b"\x01")


class KubeletUnreachable(Exception):
    """The kubelet's WebSocket endpoint did not answer (why is the message), or refused the
    upgrade (``code`` is then its HTTP status, the message its answer)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code

    def status_error(self, base: str) -> errors.StatusError:
        if self.code is not None:
            return errors.from_status({"message": f"unable to upgrade connection: {self}"}, self.code)
        return errors.ServiceUnavailable(f"the kubelet at {base} did not answer: {self}")


async def connect_kubelet(
    base: str, path: str, params: Sequence[tuple[str, str]], protocols: Sequence[str]
) -> ClientConnection:
    """A WebSocket to ``path`` (with the query ``params``) on the kubelet at ``base``, offering
    ``protocols``; :class:`KubeletUnreachable` when the kubelet does not answer."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus
    from websockets.typing import Subprotocol

    url = base.replace("https://", "wss://") + f"{path}?{urlencode(params)}"
    try:
        return await connect(
            url,
            ssl=kubelet_ssl_context(),
            subprotocols=[Subprotocol(p) for p in protocols],
            compression=None,
            max_size=None,
            proxy=None,
            open_timeout=10,
        )
    except InvalidStatus as e:
        # the kubelet said no (401/403 when the API server's credentials are not accepted)
        body = e.response.body.decode(errors="replace").strip() if e.response.body else ""
        raise KubeletUnreachable(body or str(e), e.response.status_code) from e
    except (OSError, InvalidHandshake, TimeoutError) as e:
        raise KubeletUnreachable(str(e)) from e


async def _relay(
    ws: WebSocket,
    base: str,
    path: str,
    params: Sequence[tuple[str, str]],
    protocols: list[str],
    offered: bool,
    error_channel: bytes,
) -> None:
    """Open ``path`` on the kubelet with ``protocols``, accept the client with the one the kubelet
    chose, and copy messages both ways until either side closes."""
    from websockets.exceptions import ConnectionClosed

    try:
        upstream = await connect_kubelet(base, path, params, protocols)
    except KubeletUnreachable as e:
        await ws.accept(subprotocol=protocols[0] if offered else None)
        status = e.status_error(base).status()
        body = orjson.dumps(status) if error_channel == b"\x03" else str(status.get("message")).encode()
        await ws.send_bytes(error_channel + body)
        await ws.close()
        return
    await ws.accept(subprotocol=upstream.subprotocol)

    async def client_to_kubelet() -> None:
        try:
            while (msg := await ws.receive())["type"] != "websocket.disconnect":
                text = msg.get("text")
                data = msg.get("bytes") if text is None else text.encode()
                if data is not None:
                    await upstream.send(data)
        except (WebSocketDisconnect, ConnectionClosed, RuntimeError):
            pass
        finally:
            await upstream.close()

    async def kubelet_to_client() -> None:
        try:
            async for data in upstream:
                await ws.send_bytes(data if isinstance(data, bytes) else data.encode())
        except (ConnectionClosed, RuntimeError):
            pass
        finally:
            try:
                await ws.close()
            except RuntimeError:
                pass

    tasks = [asyncio.create_task(client_to_kubelet()), asyncio.create_task(kubelet_to_client())]
    _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
