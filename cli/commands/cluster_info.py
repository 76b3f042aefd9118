"""``minik cluster-info``: where the control plane and the cluster services answer."""

from __future__ import annotations

import typer

from apimachinery.resources import resolve

from ..kube import kube, meta, out

EXAMPLES = """
Example:

  minik cluster-info
"""


def cluster_info(ctx: typer.Context) -> None:
    """Display the addresses of the control plane and the cluster services."""
    k = kube(ctx)
    k.client.get_json("/version")
    out(f"Kubernetes control plane is running at {k.config.server}")
    svc_info = resolve("services")
    assert svc_info is not None
    services = (
        k.client.list(svc_info, "kube-system", label_selector="kubernetes.io/cluster-service=true").get(
            "items"
        )
        or []
    )
    for svc in services:
        md = meta(svc)
        name = (md.get("labels") or {}).get("kubernetes.io/name") or md.get("name")
        ports = (svc.get("spec") or {}).get("ports") or []
        port_name = ports[0].get("name") if ports and ports[0].get("name") else ""
        link = f"{md.get('name')}:{port_name}" if port_name else str(md.get("name"))
        out(f"{name} is running at {k.config.server}/api/v1/namespaces/kube-system/services/{link}/proxy")
    out("")
    out("To further debug and diagnose cluster problems, use 'minik describe' and 'minik get events -A'.")
