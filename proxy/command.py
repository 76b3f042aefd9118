"""``minik-proxy --api-server URL --node-name NAME [--cleanup]``: the node's Service proxy."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys

from apimachinery.client import Client
from apimachinery.kubeconfig import load_config

from . import iptables
from .proxier import Proxier

log = logging.getLogger("proxy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="minik-proxy", description="minik's userspace Service proxy")
    p.add_argument("--api-server", help="API server URL (overrides the kubeconfig's server)")
    p.add_argument("--kubeconfig", help="kubeconfig file to read the API server and credentials from")
    p.add_argument("--node-name", default=socket.gethostname(), help="the Node this proxy serves")
    p.add_argument(
        "--bind-address",
        default="0.0.0.0",
        help="address of the portal listeners the iptables REDIRECT rules point at",
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
        help="seconds an idle UDP session (client -> endpoint) is kept",
    )
    p.add_argument(
        "--iptables-chain-prefix",
        default="MINIK",
        help="prefix of the proxy's own chains (PREFIX-SERVICES and PREFIX-POSTROUTING in nat, "
        "PREFIX-REJECT and PREFIX-FORWARD in filter)",
    )
    p.add_argument("--cleanup", action="store_true", help="remove every iptables rule and chain, then exit")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    if not iptables.available():
        raise SystemExit("minik-proxy: iptables and iptables-restore are needed (apt-get install iptables)")
    if os.geteuid() != 0:
        raise SystemExit("minik-proxy: must run as root (it writes iptables rules)")
    config = load_config(args.kubeconfig, server=args.api_server)
    client = Client(config)
    proxier = Proxier(
        client,
        args.node_name,
        iptables.Iptables(args.iptables_chain_prefix),
        args.bind_address,
        args.node_ip,
        nodeport_addresses=[c for c in args.nodeport_addresses.split(",") if c],
        udp_timeout=args.udp_timeout,
    )
    task = asyncio.create_task(proxier.run(), name="proxier")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.info("stopping")
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.cleanup:
        asyncio.run(iptables.cleanup(args.iptables_chain_prefix))
        return
    try:
        import uvloop

        uvloop.run(_serve(args))
    except ImportError:
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
