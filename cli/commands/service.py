"""``minik service NAME``: the URL of a NodePort or LoadBalancer Service, as minikube prints it."""

from __future__ import annotations

import typer

from apimachinery.resources import resolve

from ..kube import CLIError, Obj, kube, out

EXAMPLES = """
Example:

  minik service web          # http://172.18.0.1:30080
  curl $(minik service web)
"""


def node_ip(nodes: list[Obj]) -> str:
    """The first node's InternalIP (then ExternalIP), else 127.0.0.1."""
    for wanted in ("InternalIP", "ExternalIP"):
        for node in nodes:
            for addr in (node.get("status") or {}).get("addresses") or []:
                if addr.get("type") == wanted and addr.get("address"):
                    return str(addr["address"])
    return "127.0.0.1"


def service_urls(svc: Obj, ip: str, scheme: str = "http") -> list[str]:
    spec = svc.get("spec") or {}
    name = (svc.get("metadata") or {}).get("name")
    if spec.get("type") not in ("NodePort", "LoadBalancer"):
        raise CLIError(
            f'service "{name}" is of type {spec.get("type", "ClusterIP")}: only NodePort and LoadBalancer services have a URL on the node'
        )
    urls = [f"{scheme}://{ip}:{p['nodePort']}" for p in spec.get("ports") or [] if p.get("nodePort")]
    if not urls:
        raise CLIError(f'service "{name}" has no node port yet')
    return urls


def service(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="the Service's name"),
    https: bool = typer.Option(False, "--https", help="print https:// URLs"),
) -> None:
    """Print the URL(s) of a NodePort or LoadBalancer Service."""
    k = kube(ctx)
    svc_info, node_info = resolve("services"), resolve("nodes")
    assert svc_info is not None and node_info is not None
    svc = k.client.get(svc_info, name, k.namespace)
    nodes = k.client.list(node_info).get("items") or []
    for url in service_urls(svc, node_ip(nodes), "https" if https else "http"):
        out(url)
