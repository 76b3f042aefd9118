"""``minik-proxy --api-server URL --node-name NAME [--mode iptables|userspace] [--cleanup]``: the
node's Service proxy (kernel DNAT rules by default, the userspace forwarder with ``--mode userspace``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from collections.abc import Coroutine
from typing import Any

from apimachinery import metrics, tracing
from apimachinery.client import Client
from apimachinery.component import add_kubeconfig_flags, add_log_level_flag, run_component, run_until_stopped
from apimachinery.kubeconfig import load_config

from . import iptables
from .kernel import KernelProxier
from .netpol import NetworkPolicyController
from .netpol import remove as remove_network_policy_rules
from .proxier import Proxier

log = logging.getLogger("proxy")
MAX_PREFIX = 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="minik-proxy", description="minik's Service proxy")
    add_kubeconfig_flags(p)
    p.add_argument("--node-name", default=socket.gethostname(), help="the Node this proxy serves")
    p.add_argument(
        "--mode",
        choices=["iptables", "userspace"],
        default="iptables",
        help="iptables: the kernel DNATs Service traffic (kube-proxy's iptables mode); "
        "userspace: connections are accepted and copied by this process",
    )
    p.add_argument(
        "--cluster-cidr",
        default="",
        help="comma-separated pod CIDRs: traffic to a ClusterIP from other sources is masqueraded "
        "(default: every Node's spec.podCIDR); iptables mode",
    )
    p.add_argument(
        "--bind-address",
        default="0.0.0.0",
        help="address of the portal listeners the iptables REDIRECT rules point at (userspace mode)",
    )
    p.add_argument(
        "--node-ip",
        action="append",
        default=[],
        help="an extra node address for NodePort/LoadBalancer listeners (besides the Node's addresses)",
    )
    p.add_argument(
        "--nodeport-addresses",
        default="",
        help="comma-separated CIDRs: NodePorts listen only on node addresses inside them "
        "(default: every node address and 127.0.0.1)",
    )
    p.add_argument(
        "--udp-timeout",
        type=float,
        default=2.0,
        help="seconds an idle UDP session (client -> endpoint) is kept (userspace mode)",
    )
    p.add_argument(
        "--iptables-chain-prefix",
        default="MINIK",
        help="prefix of every chain the proxy makes (PREFIX-SERVICES, PREFIX-SVC-..., PREFIX-FORWARD, ...)",
    )
    p.add_argument(
        "--network-policy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="enforce NetworkPolicies for the pods whose traffic crosses this host (PREFIX-NWPLCY chains); "
        "--no-network-policy turns it off",
    )
    p.add_argument(
        "--cleanup",
        action="store_true",
        help="remove every chain named PREFIX-* (both modes, NetworkPolicy) and the jumps into them, then exit",
    )
    metrics.add_metrics_flag(p, 10249)
    add_log_level_flag(p)
    args = p.parse_args(argv)
    if not 1 <= len(args.iptables_chain_prefix) <= MAX_PREFIX:
        # PREFIX-EXTERNAL-SERVICES must stay within iptables' 28-character chain names
        p.error(f"--iptables-chain-prefix: 1 to {MAX_PREFIX} characters")
    return args


async def _serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    if not iptables.available():
        raise SystemExit("minik-proxy: iptables and iptables-restore are needed (apt-get install iptables)")
    if os.geteuid() != 0:
        raise SystemExit("minik-proxy: must run as root (it writes iptables rules)")
    config = load_config(args.kubeconfig, server=args.api_server)
    tracing.setup("proxy", config)  # spans for minik trace, shipped to the API server
    client = Client(config)
    nodeport_addresses = [c for c in args.nodeport_addresses.split(",") if c]
    proxier: Proxier
    if args.mode == "iptables":
        proxier = KernelProxier(
            client,
            args.node_name,
            args.iptables_chain_prefix,
            args.node_ip,
            nodeport_addresses=nodeport_addresses,
            cluster_cidrs=[c.strip() for c in args.cluster_cidr.split(",") if c.strip()],
        )
    else:
        proxier = Proxier(
            client,
            args.node_name,
            iptables.Iptables(args.iptables_chain_prefix),
            args.bind_address,
            args.node_ip,
            nodeport_addresses=nodeport_addresses,
            udp_timeout=args.udp_timeout,
        )
    log.info("proxy mode %s", args.mode)
    metrics_server = await metrics.serve_from_args(args, "proxy")  # GET /metrics
    if args.network_policy:
        netpol = NetworkPolicyController(client, args.iptables_chain_prefix)
        work = _together(proxier.run(), netpol.run())
    else:
        await remove_network_policy_rules(args.iptables_chain_prefix)  # an earlier run's
        work = proxier.run()
    try:
        if await run_until_stopped(work, stop, "proxier"):
            log.info("stopping")
    finally:
        if metrics_server is not None:
            metrics_server.close()
        await client.aclose()


async def _together(*works: Coroutine[Any, Any, None]) -> None:
    """Run ``works`` side by side; the first error ends them all."""
    tasks = [asyncio.create_task(w) for w in works]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _cleanup(args: argparse.Namespace, stop: asyncio.Event) -> None:
    await iptables.cleanup(args.iptables_chain_prefix)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.cleanup:
        run_component(args, _cleanup, signals=False)
    else:
        run_component(args, _serve, uvloop=True)


if __name__ == "__main__":
    main()
