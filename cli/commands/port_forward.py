"""``minik port-forward TARGET [LOCAL:]REMOTE…``: local TCP ports to a pod, over WebSocket.

TARGET is a pod (``NAME`` or ``pod/NAME``), or ``svc/NAME``, ``deploy/NAME``, ``rs/NAME``,
``sts/NAME``…: like kubectl, a workload or Service resolves to one of its running, ready pods
(the oldest), and for a Service the REMOTE port is the Service's port, translated to its
``targetPort`` (a number, or a port name looked up in the pod's containers).

Each accepted local connection opens one ``pods/{name}/portforward`` WebSocket
(``v4.channel.k8s.io``, Kubernetes' port-forward channel protocol).
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import typer

from apimachinery.client import resource_path
from apimachinery.resources import resolve
from apimachinery.selectors import selector_from_dict

from ..kube import CLIError, Kube, Obj, err, kube, meta, out, parse_resource_args
from ..streams import open_ws, portforward_session

EXAMPLES = """
Examples:

  minik port-forward web-0 8080:80       # localhost:8080 -> the pod's port 80
  minik port-forward svc/web 8080:80     # the Service's port 80, on one of its ready pods
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


def pod_ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or meta(pod).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def choose_pod(pods: list[Obj]) -> Obj | None:
    """The pod kubectl would pick: a running, ready one (the oldest), else any running one."""
    by_age = sorted(pods, key=lambda p: str(meta(p).get("creationTimestamp") or ""))
    ready = [p for p in by_age if pod_ready(p)]
    running = [p for p in by_age if (p.get("status") or {}).get("phase") == "Running"]
    chosen = ready or running
    return chosen[0] if chosen else None


def service_target_port(service: Obj, pod: Obj, port: int) -> int:
    """The pod port behind ``port`` of ``service`` (kubectl's ``translateServicePortToTargetPort``)."""
    for sp in (service.get("spec") or {}).get("ports") or []:
        if int(sp.get("port", 0)) != port:
            continue
        target: Any = sp.get("targetPort", port)
        if isinstance(target, int) or str(target).isdigit():
            return int(target)
        for c in (pod.get("spec") or {}).get("containers") or []:
            for cp in c.get("ports") or []:
                if cp.get("name") == target:
                    return int(cp["containerPort"])
        raise CLIError(f"pod {meta(pod).get('name')} has no container port named {target!r}")
    raise CLIError(f"Service {meta(service).get('name')} does not have a service port {port}")


def resolve_target(k: Kube, target: str) -> tuple[Obj, Obj | None]:
    """(the pod, the Service when TARGET is one)."""
    pods = resolve("pods")
    assert pods is not None
    if "/" not in target:
        return k.client.get(pods, target, k.namespace), None
    ((info, names),) = parse_resource_args([target])
    if info.kind == "Pod":
        return k.client.get(pods, names[0], k.namespace), None
    owner = k.client.get(info, names[0], k.namespace)
    spec = owner.get("spec") or {}
    if info.kind == "Service":
        sel = spec.get("selector") or {}
        if not sel:
            raise CLIError(f"service {names[0]} has no selector: cannot pick a pod")
        selector = selector_from_dict({"matchLabels": sel})
    else:
        selector = selector_from_dict(spec.get("selector") or {})
    items = [
        p
        for p in k.client.list(pods, k.namespace).get("items") or []
        if selector.matches(meta(p).get("labels") or {})
    ]
    pod = choose_pod(items)
    if pod is None:
        raise CLIError(f"no running pods found for {target}")
    return pod, owner if info.kind == "Service" else None


def port_forward(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="POD or TYPE/NAME (svc/NAME, deploy/NAME, …)"),
    ports: list[str] = typer.Argument(..., help="[LOCAL:]REMOTE…"),
    address: str = typer.Option("127.0.0.1", "--address", help="the local address to listen on"),
) -> None:
    """Forward one or more local ports to a pod."""
    k = kube(ctx)
    pod, service = resolve_target(k, target)
    if (pod.get("status") or {}).get("phase") != "Running":
        raise CLIError(
            f"unable to forward port because pod is not running. Current status={pod.get('status', {}).get('phase')}"
        )
    pods = resolve("pods")
    assert pods is not None
    path = resource_path(
        pods, meta(pod).get("namespace") or k.namespace, str(meta(pod)["name"]), "portforward"
    )
    listeners = []
    for local, remote in parse_ports(ports):
        if service is not None:
            remote = service_target_port(service, pod, remote)
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
                ws = open_ws(
                    k.config, path, [("ports", str(remote))], ["v4.channel.k8s.io"], first=k.client.server
                )
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
