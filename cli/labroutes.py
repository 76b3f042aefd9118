"""``python -m cli.labroutes``: host-gw routing between the lab's nodes (see docs/lab.md).

Every lab node runs this beside its kubelet.  It watches the Node objects (an informer: list,
then watch) and keeps one route per other node in the kernel: that node's ``spec.podCIDR`` (given
by the controller manager's node IPAM) via its ``InternalIP`` (or its flannel public-ip annotation) on the lab network, as flannel's
host-gw backend does.  Routes of the cluster CIDR that no node accounts for any more (a deleted
node) are removed; routes outside the cluster CIDR are never touched.

This is the host-gw backend of kubelet/overlay.py (``minik-kubelet --pod-network-backend host-gw``)
run on its own: the decision (:func:`plan_routes`, :func:`route_changes`, unit-tested without a
kernel) and the ``ip route`` I/O live there.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from apimachinery.client import Client
from apimachinery.component import run_component, run_until_stopped
from apimachinery.informer import Informer
from apimachinery.kubeconfig import load_config
from apimachinery.resources import kind_info
from kubelet.overlay import Overlay, internal_ip, plan_routes, route_changes

__all__ = ["internal_ip", "main", "plan_routes", "route_changes", "sync"]

log = logging.getLogger("minik.labroutes")
NODES = kind_info("v1", "Node")
RESYNC = 30.0  # seconds between checks of the kernel's routes (someone may have removed one)


def sync(nodes: list[dict[str, Any]], me: str, cluster_cidr: str, dev: str) -> None:
    Overlay("host-gw", me, interface=dev, cluster_cidr=cluster_cidr).sync(nodes)


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
