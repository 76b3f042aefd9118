"""Benchmark: pod-to-pod TCP through the VXLAN overlay beside node-to-node TCP, in the same run.

    .venv/bin/python -m bench.overlay [--seconds 3] [--rounds 3]

Needs root and iproute2.  Builds two "nodes" as network namespaces on two segments behind a
router namespace, each with a pod behind a bridge (testkit/overlaylab.py), and programs each
node's vxlan device with kubelet/overlay.py's backend from the two Node objects, as the kubelet
does.  Then, alternating, one TCP connection each way is filled for ``--seconds`` by a Python
sender (256 KiB writes) and counted by a Python receiver:

* node-to-node: node1's address to node2's (through the router, no encapsulation);
* pod-to-pod: pod1 to pod2 (bridge, vxlan device, the same router, vxlan device, bridge), with
  the pods' MTU 50 bytes below the nodes'.

Printed: each transfer's Gbit/s, the best of each path and the median of the rounds' ratios
(pod-to-pod over the node-to-node transfer just before it).  Target: >= 70 %.  Every namespace,
and with it every link and entry, is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

from kubelet.overlay import Overlay
from testkit.overlaylab import CLUSTER_CIDR, OverlayLab, tcp_ping, tcp_throughput

TARGET = 0.70


def node(name: str, cidr: str, ann: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": ann}, "spec": {"podCIDR": cidr}}


def bench(seconds: float, rounds: int) -> int:
    with OverlayLab() as lab:
        ovs = [
            Overlay("vxlan", h.name, public_ip=h.ip, cluster_cidr=CLUSTER_CIDR, netns=h.ns) for h in lab.hosts
        ]
        nodes = [node(h.name, h.pod_cidr, o.setup(h.pod_cidr)) for h, o in zip(lab.hosts, ovs, strict=True)]
        mtu = ovs[0].pod_mtu() or 1450
        lab.add_pods(mtu)
        for o in ovs:
            o.sync(nodes)
        h1, h2 = lab.hosts
        tcp_ping(h1.pod_ns, h2.pod_ns, h2.pod_ip)  # the overlay is up
        print(
            f"nodes {h1.ip} -> {h2.ip} (MTU 1500); pods {h1.pod_ip} -> {h2.pod_ip} (MTU {mtu}, vxlan VNI 1)"
        )
        node_rates, pod_rates, ratios = [], [], []
        for i in range(rounds):
            n = tcp_throughput(h1.ns, h2.ns, h2.ip, seconds)
            p = tcp_throughput(h1.pod_ns, h2.pod_ns, h2.pod_ip, seconds)
            node_rates.append(n)
            pod_rates.append(p)
            ratios.append(p / n)
            print(
                f"round {i + 1}: node-to-node {n:6.2f} Gbit/s   pod-to-pod (vxlan) {p:6.2f} Gbit/s   {p / n:6.1%}"
            )
        ratio = statistics.median(ratios)
        print(
            f"best: node-to-node {max(node_rates):.2f} Gbit/s, pod-to-pod {max(pod_rates):.2f} Gbit/s"
            f" ({max(pod_rates) / max(node_rates):.1%});"
            f" median ratio {ratio:.1%} (target >= {TARGET:.0%}: {'met' if ratio >= TARGET else 'NOT met'})"
        )
        return 0 if ratio >= TARGET else 1


def main() -> None:
    p = argparse.ArgumentParser(
        prog="bench.overlay", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--seconds", type=float, default=3.0, help="length of each transfer")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.overlay needs root (network namespaces)")
    sys.exit(bench(args.seconds, args.rounds))


if __name__ == "__main__":
    main()
