"""``minik port-forward POD [LOCAL:]REMOTE…``: local TCP ports to a pod, over WebSocket."""

from __future__ import annotations

import socket
import threading

import typer

from apimachinery.client import resource_path
from apimachinery.resources import resolve

from ..kube import CLIError, err, kube, meta, out
from ..streams import open_ws, portforward_session
from .logs import pick_pod

EXAMPLES = """
Examples:

  minik port-forward web-0 8080:80       # localhost:8080 -> the pod's port 80
  minik port-forward deploy/web 8080:80
  minik port-forward web-0 :80           # a free local port
"""


def parse_ports(specs: list[str]) -> list[tuple[int, int]]:
    """``LOCAL:REMOTE``, ``REMOTE`` (same local port) or ``:REMOTE`` (a free local port: 0)."""
    pairs = []
    for spec in specs:
        local, sep, remote = spec.partition(":")
        if not sep:
            local, remote = spec, spec
        try:
            pairs.append((int(local) if local else 0, int(remote)))
        except ValueError:
            raise CLIError(f"invalid port spec {spec!r}: use LOCAL:REMOTE") from None
    return pairs


def port_forward(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="POD or TYPE/NAME"),
    ports: list[str] = typer.Argument(..., help="[LOCAL:]REMOTE…"),
    address: str = typer.Option("127.0.0.1", "--address", help="the local address to listen on"),
) -> None:
    """Forward one or more local ports to a pod."""
    k = kube(ctx)
    pod = pick_pod(k, target)
    pods = resolve("pods")
    assert pods is not None
    path = resource_path(
        pods, meta(pod).get("namespace") or k.namespace, str(meta(pod)["name"]), "portforward"
    )
    listeners = []
    for local, remote in parse_ports(ports):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, local))
        sock.listen()
        out(f"Forwarding from {address}:{sock.getsockname()[1]} -> {remote}")
        listeners.append((sock, remote))

    def serve(sock: socket.socket, remote: int) -> None:
        while True:
            conn, _ = sock.accept()
            out(f"Handling connection for {sock.getsockname()[1]}")
            try:
                ws = open_ws(k.config, path, [("ports", str(remote))], ["v4.channel.k8s.io"])
            except Exception as exc:  # noqa: BLE001 - report and keep serving
                err(f"error: {exc}")
                conn.close()
                continue
            threading.Thread(target=portforward_session, args=(ws, conn), daemon=True).start()

    threads = [threading.Thread(target=serve, args=pair, daemon=True) for pair in listeners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
