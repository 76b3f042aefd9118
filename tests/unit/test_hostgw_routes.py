"""host-gw routes from the Node objects (kubelet/overlay.py's plan), without a kernel."""

from __future__ import annotations

from typing import Any

from kubelet.overlay import plan_routes, route_changes


def node(name: str, cidr: str | None, ip: str | None) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"podCIDR": cidr} if cidr else {},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}] if ip else []},
    }


def test_a_route_per_other_node_with_a_pod_cidr_and_an_address() -> None:
    nodes = [
        node("node-1", "10.244.0.0/24", "10.213.0.11"),
        node("node-2", "10.244.1.0/24", "10.213.0.12"),
        node("node-3", None, "10.213.0.13"),  # IPAM has not given it a range yet
        node("node-4", "10.244.3.0/24", None),  # no address reported yet
        node("node-5", "192.168.7.0/24", "10.213.0.15"),  # outside the cluster CIDR: not ours
    ]
    assert plan_routes(nodes, "node-1", "10.244.0.0/16") == {"10.244.1.0/24": "10.213.0.12"}


def test_changes_add_move_and_drop_only_cluster_routes() -> None:
    want = {"10.244.1.0/24": "10.213.0.12", "10.244.2.0/24": "10.213.0.13"}
    have = {
        "10.244.1.0/24": "10.213.0.12",  # right already
        "10.244.2.0/24": "10.213.0.99",  # the node moved
        "10.244.9.0/24": "10.213.0.19",  # a deleted node's
        "172.30.0.0/16": "10.213.0.1",  # someone else's route: left alone
    }
    add, stale = route_changes(want, have, "10.244.0.0/16")
    assert add == {"10.244.2.0/24": "10.213.0.13"}
    assert stale == ["10.244.9.0/24"]
