"""The kubelet's API: container logs, exec, the node's pods, health.

The API server proxies ``pods/{name}/log`` and ``pods/{name}/exec`` here (see docs/kubelet.md for
the exact contract).  :mod:`kubelet.main` serves this app over HTTPS behind
:class:`kubelet.auth.AuthMiddleware`: every route below is reached only by an authenticated and
authorized user.

* ``GET /healthz`` → ``ok``
* ``GET /pods`` → a ``PodList`` of the pods bound to this node (from the kubelet's cache)
* ``GET /containerLogs/{namespace}/{pod}/{container}?follow=&tailLines=&previous=&timestamps=&sinceSeconds=&limitBytes=``
  → ``text/plain`` (streamed with ``follow=true``)
* ``GET /exec/{namespace}/{pod}/{container}?command=sh&command=-c&command=...&stdin=1&stdout=1&stderr=1&tty=1``
  as a WebSocket with subprotocol ``v5.channel.k8s.io`` (also ``v4.channel.k8s.io``): each binary
  message starts with a stream byte — 0 stdin, 1 stdout, 2 stderr, 3 error (a ``metav1.Status``
  with the exit code), 4 resize (``{"Width":w,"Height":h}``), and in v5, 255 close (``[255, 0]``
  closes stdin).
* ``GET /attach/{namespace}/{pod}/{container}?stdin=1&stdout=1&stderr=1&tty=1``: the same channel
  protocol, attached to the container's main process (no exit code: the error channel says Success
  when the stream ends).
* ``GET /portForward/{namespace}/{pod}?ports=8080&ports=9090`` as a WebSocket: Kubernetes'
  port-forward channel protocol (see :mod:`kubelet.portforward`).
* ``GET /stats/summary``: the Summary API (see :mod:`kubelet.stats`).
* ``GET /metrics``: the kubelet's own Prometheus metrics (:mod:`kubelet.metrics`).
* ``GET /metrics/resource``: the node's, pods' and containers' CPU and memory in Prometheus text
  format, what metrics-server scrapes (see :func:`kubelet.stats.resource_metrics`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.websockets import WebSocketDisconnect

from apimachinery import errors, metrics

from . import podstate, portforward
from .runtime import ContainerStatus, LogOptions, RuntimeError_
from .stats import StatsProvider, resource_metrics

if TYPE_CHECKING:
    from .kubelet import Kubelet

log = logging.getLogger(__name__)

EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")


def _status(code: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse(errors.StatusError(message, code=code, reason=reason).status(), status_code=code)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes", "")


def exit_status(code: int) -> dict[str, Any]:
    """The error-channel ``Status`` kubectl reads the exit code from."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command, exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def build_app(kubelet: Kubelet) -> FastAPI:
    app = FastAPI(title="minik-kubelet", docs_url=None, redoc_url=None, openapi_url=None)

    async def find(
        namespace: str, pod: str, container: str | None
    ) -> tuple[dict[str, Any], list[ContainerStatus]] | JSONResponse:
        obj = kubelet.pods.store.get(f"{namespace}/{pod}")
        if obj is None:
            return _status(404, "NotFound", f'pods "{pod}" not found')
        spec = obj.get("spec") or {}
        names = [
            c.get("name") for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        ]
        if container is None:
            if len(spec.get("containers") or []) != 1:
                return _status(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {pod}, choose one of: {names}",
                )
            container = spec["containers"][0].get("name")
        if container not in names:
            return _status(400, "BadRequest", f"container {container} is not valid for pod {pod}")
        uid = (obj.get("metadata") or {}).get("uid", "")
        lst = podstate.instances(
            [c for c in await kubelet.runtime.list_containers(uid) if c.name == container]
        )
        return obj, lst.get(str(container), [])

    @app.get("/healthz")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/pods")
    async def pods() -> JSONResponse:
        return JSONResponse(
            {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": kubelet.pods.store.list()}
        )

    @app.get("/containerLogs/{namespace}/{pod}/{container}")
    async def container_logs(
        namespace: str,
        pod: str,
        container: str,
        follow: str | None = None,
        tailLines: int | None = None,  # noqa: N803 - Kubernetes' spelling
        previous: str | None = None,
        timestamps: str | None = None,
        sinceSeconds: int | None = None,  # noqa: N803
        limitBytes: int | None = None,  # noqa: N803
    ) -> Response:
        found = await find(namespace, pod, container)
        if isinstance(found, JSONResponse):
            return found
        _obj, lst = found
        lst = [c for c in lst if c.state != "created"]
        if _truthy(previous):
            if len(lst) < 2:
                return _status(
                    400, "BadRequest", f'previous terminated container "{container}" in pod "{pod}" not found'
                )
            target = lst[1]
        else:
            if not lst:
                return _status(
                    400,
                    "BadRequest",
                    f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating',
                )
            target = lst[0]
        since = time.time() - sinceSeconds if sinceSeconds else None
        do_follow = _truthy(follow) and not _truthy(previous)
        source = kubelet.runtime.logs(target.id, LogOptions(do_follow, tailLines, _truthy(timestamps), since))

        async def body() -> AsyncIterator[bytes]:
            sent = 0
            try:
                async for chunk in source:
                    if limitBytes is not None:
                        chunk = chunk[: max(0, limitBytes - sent)]
                    if chunk:
                        sent += len(chunk)
                        yield chunk
                    if limitBytes is not None and sent >= limitBytes:
                        return
            except RuntimeError_ as exc:
                log.info("logs of %s/%s/%s ended: %s", namespace, pod, container, exc)
            finally:
                await source.aclose()  # type: ignore[attr-defined]

        return StreamingResponse(body(), media_type="text/plain")

    async def exec_ws(ws: WebSocket, namespace: str, pod: str, container: str, attach: bool = False) -> None:
        protocols = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        chosen = next((p for p in EXEC_PROTOCOLS if p in protocols), None)
        if chosen is None and protocols:
            await ws.close(code=1002)
            return
        await ws.accept(subprotocol=chosen)
        q = ws.query_params
        command = q.getlist("command")
        stdin = _truthy(q.get("stdin")) if "stdin" in q else False
        tty = _truthy(q.get("tty")) if "tty" in q else False

        async def send_error(status: dict[str, Any]) -> None:
            await ws.send_bytes(b"\x03" + json.dumps(status).encode())

        found = await find(namespace, pod, container)
        if isinstance(found, JSONResponse):
            await send_error(json.loads(bytes(found.body)))
            await ws.close()
            return
        _obj, lst = found
        if not lst or lst[0].state != "running":
            await send_error(
                {
                    "status": "Failure",
                    "reason": "BadRequest",
                    "code": 400,
                    "message": f"container {container} is not running",
                }
            )
            await ws.close()
            return
        try:
            if attach:
                spec: dict[str, Any] = next(
                    (
                        c
                        for c in (_obj.get("spec") or {}).get("containers") or []
                        if c.get("name") == container
                    ),
                    {},
                )
                # like the kubelet: stdin and a TTY only when the container was made with them
                stdin = stdin and bool(spec.get("stdin"))
                tty = bool(spec.get("tty"))
                session = await kubelet.runtime.attach(lst[0].id, stdin, tty)
            else:
                session = await kubelet.runtime.exec_interactive(lst[0].id, command, stdin, tty)
        except RuntimeError_ as exc:
            await send_error(
                {"status": "Failure", "reason": "InternalError", "code": 500, "message": str(exc)}
            )
            await ws.close()
            return

        async def pump_in() -> None:
            try:
                while True:
                    data = await ws.receive_bytes()
                    if not data:
                        continue
                    stream, payload = data[0], data[1:]
                    if stream == 0 and stdin:
                        await session.write(payload)
                    elif stream == 4:
                        try:
                            size = json.loads(payload)
                            await session.resize(int(size.get("Width", 80)), int(size.get("Height", 24)))
                        except (ValueError, TypeError):
                            pass
                    elif stream == 255 and payload[:1] == b"\x00":
                        await session.close_stdin()
            except (WebSocketDisconnect, RuntimeError):
                await session.close_stdin()

        in_task = asyncio.create_task(pump_in())
        try:
            async for stream, data in session.read():
                await ws.send_bytes(bytes([stream]) + data)
            code = await session.exit_code()
            await send_error(exit_status(code))
            await ws.close()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            in_task.cancel()
            await asyncio.gather(in_task, return_exceptions=True)
            await session.close()

    @app.websocket("/exec/{namespace}/{pod}/{container}")
    async def exec_route(ws: WebSocket, namespace: str, pod: str, container: str) -> None:
        await exec_ws(ws, namespace, pod, container)

    @app.websocket("/attach/{namespace}/{pod}/{container}")
    async def attach_route(ws: WebSocket, namespace: str, pod: str, container: str) -> None:
        await exec_ws(ws, namespace, pod, container, attach=True)

    @app.websocket("/portForward/{namespace}/{pod}")
    async def port_forward_route(ws: WebSocket, namespace: str, pod: str) -> None:
        await portforward.serve(kubelet, ws, namespace, pod)

    stats = StatsProvider(kubelet)

    @app.get("/stats/summary")
    async def stats_summary() -> JSONResponse:
        return JSONResponse(await stats.summary())

    @app.get("/metrics")
    async def metrics_route() -> Response:
        """The kubelet's own Prometheus metrics (``kubelet_*``, work queue, REST client, process)."""
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)

    @app.get("/metrics/resource")
    async def metrics_resource() -> PlainTextResponse:
        """CPU and memory of the node, its pods and containers (see :func:`stats.resource_metrics`)."""
        try:
            summary, failed = await stats.summary(), False
        except Exception:  # noqa: BLE001 - the runtime did not answer: scrape_error 1
            log.exception("collecting resource metrics failed")
            summary, failed = {}, True
        return PlainTextResponse(
            resource_metrics(summary, failed, time.time()), media_type="text/plain; version=0.0.4"
        )

    @app.post("/run/{namespace}/{pod}/{container}")
    async def run_route(
        namespace: str, pod: str, container: str, request: Request, cmd: str = Query("")
    ) -> Response:
        """Run a command and return its output (the kubelet's ``/run`` endpoint)."""
        found = await find(namespace, pod, container)
        if isinstance(found, JSONResponse):
            return found
        _obj, lst = found
        if not lst or lst[0].state != "running":
            return _status(400, "BadRequest", f"container {container} is not running")
        result = await kubelet.runtime.exec_sync(lst[0].id, cmd.split(), 60)
        return PlainTextResponse(result.output.decode("utf-8", errors="replace"))

    return app
