"""``python -m cli.labroutes``: host-gw routing between the lab's nodes (see docs/lab.md).

Every lab node runs this beside its kubelet.  It watches the Node objects (an informer: list,
then watch) and keeps one route per other node in the kernel: that node's ``spec.podCIDR`` (given
by the controller manager's node IPAM) via its ``InternalIP`` on the lab network, as flannel's
host-gw backend does.  Routes of the cluster CIDR that no node accounts for any more (a deleted
node) are removed; routes outside the cluster CIDR are never touched.

The decision is a pure function of the Node objects (:func:`plan_routes`, :func:`route_changes`),
unit-tested without a kernel; the I/O around it is ``ip -j route`` and ``ip route replace|del``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import subprocess
from typing import Any

from apimachinery.client import Client
from apimachinery.component import run_component, run_until_stopped
from apimachinery.informer import Informer
from apimachinery.kubeconfig import load_config
from apimachinery.resources import kind_info

log = logging.getLogger("minik.labroutes")
NODES = kind_info("v1", "Node")
RESYNC = 30.0  # seconds between checks of the kernel's routes (someone may have removed one)


def internal_ip(node: dict[str, Any]) -> str:
    for addr in (node.get("status") or {}).get("addresses") or []:
        if addr.get("type") == "InternalIP" and addr.get("address"):
            return str(addr["address"])
    return ""


def plan_routes(nodes: list[dict[str, Any]], me: str, cluster_cidr: str) -> dict[str, str]:
    """``{pod CIDR: gateway}`` for every other node with a pod CIDR (inside ``cluster_cidr``) and an
    InternalIP."""
    cluster = ipaddress.ip_network(cluster_cidr, strict=False)
    out: dict[str, str] = {}
    for node in nodes:
        name = (node.get("metadata") or {}).get("name")
        cidr = (node.get("spec") or {}).get("podCIDR")
        via = internal_ip(node)
        if name == me or not cidr or not via:
            continue
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if net.version == cluster.version and net.subnet_of(cluster):  # type: ignore[arg-type]
            out[str(net)] = via
    return out


def route_changes(
    want: dict[str, str], have: dict[str, str], cluster_cidr: str
) -> tuple[dict[str, str], list[str]]:
    """(routes to add or change, routes to delete): ``have`` holds the kernel's gateway routes."""
    cluster = ipaddress.ip_network(cluster_cidr, strict=False)
    add = {cidr: via for cidr, via in want.items() if have.get(cidr) != via}
    stale = []
    for cidr in have:
        if cidr in want:
            continue
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if net.version == cluster.version and net.subnet_of(cluster):  # type: ignore[arg-type]
            stale.append(cidr)
    return add, sorted(stale)


def kernel_routes(dev: str) -> dict[str, str]:
    """``{destination: gateway}`` of the routes via a gateway on ``dev``."""
    out = subprocess.run(["ip", "-j", "-4", "route", "show", "dev", dev], capture_output=True, text=True)
    try:
        routes = json.loads(out.stdout or "[]")
    except ValueError:
        return {}
    return {
        str(ipaddress.ip_network(r["dst"], strict=False)): str(r["gateway"])
        for r in routes
        if isinstance(r, dict) and r.get("gateway") and r.get("dst") not in (None, "default")
    }


def sync(nodes: list[dict[str, Any]], me: str, cluster_cidr: str, dev: str) -> None:
    add, stale = route_changes(plan_routes(nodes, me, cluster_cidr), kernel_routes(dev), cluster_cidr)
    for cidr, via in sorted(add.items()):
        r = subprocess.run(["ip", "route", "replace", cidr, "via", via, "dev", dev], capture_output=True)
        if r.returncode == 0:
            log.info("route %s via %s dev %s", cidr, via, dev)
        else:
            log.warning("cannot add route %s via %s: %s", cidr, via, r.stderr.decode().strip())
    for cidr in stale:
        subprocess.run(["ip", "route", "del", cidr, "dev", dev], capture_output=True)
        log.info("removed route %s (no node has it any more)", cidr)


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    client = Client(load_config(args.kubeconfig))
    nodes = Informer(client, NODES)
    changed = asyncio.Event()
    nodes.add_event_handler(
        on_add=lambda obj: changed.set(),
        on_update=lambda old, new: changed.set(),
        on_delete=lambda obj: changed.set(),
    )

    async def loop() -> None:
        await nodes.wait_for_sync()
        while True:
            changed.clear()
            await asyncio.to_thread(sync, nodes.store.list(), args.node_name, args.cluster_cidr, args.dev)
            try:
                await asyncio.wait_for(changed.wait(), RESYNC)
            except TimeoutError:
                pass

    informer = asyncio.create_task(nodes.run(), name="nodes")
    try:
        await run_until_stopped(loop(), stop, "labroutes")
    finally:
        nodes.stop()
        informer.cancel()
        await asyncio.gather(informer, return_exceptions=True)
        await client.aclose()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m cli.labroutes", description=__doc__.split("\n\n")[0])
    p.add_argument("--kubeconfig", required=True, help="a kubeconfig allowed to list and watch nodes")
    p.add_argument("--node-name", required=True, help="this node (no route to its own pod CIDR)")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16", help="the pods' network (node IPAM's range)")
    p.add_argument("--dev", default="eth0", help="the device the other nodes are reached on")
    p.add_argument("-v", "--verbose", action="store_true")
    run_component(p.parse_args(argv), serve, quiet=("httpx", "httpcore"))


if __name__ == "__main__":
    main()
