"""``minik-ingress --kubeconfig FILE [--http-port 80] [--https-port 443]``: the built-in ingress
controller of the IngressClass ``minik`` (HAProxy as the data path, see :mod:`ingress.haproxy`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import socket

from apimachinery import metrics
from apimachinery.client import Client
from apimachinery.component import add_kubeconfig_flags, add_log_level_flag, run_component, run_until_stopped
from apimachinery.kubeconfig import load_config

from . import model
from .controller import IngressController
from .haproxy import HAProxy, find_binary

log = logging.getLogger("ingress")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="minik-ingress", description="minik's ingress controller (HAProxy)")
    add_kubeconfig_flags(p)
    p.add_argument("--node-name", default=socket.gethostname(), help="the node this controller serves")
    p.add_argument("--bind-address", default="*", help="address HAProxy listens on ('*': every IPv4 address)")
    p.add_argument("--http-port", type=int, default=80, help="port of plain HTTP")
    p.add_argument("--https-port", type=int, default=443, help="port of HTTPS (TLS terminated here)")
    metrics.add_metrics_flag(p, 10254)
    p.add_argument(
        "--state-dir",
        default="/var/lib/minik-ingress",
        help="directory of HAProxy's configuration, certificates and sockets",
    )
    p.add_argument(
        "--status-address",
        action="append",
        default=[],
        help="address written to status.loadBalancer.ingress of the Ingresses "
        "(repeatable; default: every node's InternalIP)",
    )
    p.add_argument(
        "--no-status", action="store_true", help="leave status.loadBalancer of the Ingresses alone"
    )
    p.add_argument(
        "--haproxy", default="", help="the haproxy binary (default: haproxy on PATH or in /usr/sbin)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="HAProxy threads (default: half the CPUs, 1 to 4: the backends and clients need the rest)",
    )
    add_log_level_flag(p)
    return p.parse_args(argv)


def default_threads() -> int:
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def max_connections(cap: int = 20000) -> int:
    """Connections HAProxy can take with this process's file descriptor limit (two each)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return cap
    return max(256, min(cap, (soft - 200) // 2))


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    binary = args.haproxy or find_binary()
    if not binary:
        raise SystemExit("minik-ingress: haproxy is needed (apt-get install haproxy)")
    settings = model.Settings(
        state_dir=args.state_dir,
        bind_address=args.bind_address,
        http_port=args.http_port,
        https_port=args.https_port,
        threads=args.threads or default_threads(),
        maxconn=max_connections(),
    )
    client = Client(load_config(args.kubeconfig, server=args.api_server))
    controller = IngressController(
        client,
        settings,
        HAProxy(settings, binary),
        status_addresses=args.status_address,
        node_name=args.node_name,
        update_status=not args.no_status,
    )
    metrics_listener = await metrics.serve_from_args(args, "ingress")  # GET /metrics
    try:
        if await run_until_stopped(controller.run(), stop, "ingress controller"):
            log.info("stopping")
    finally:
        await client.aclose()
        if metrics_listener is not None:
            metrics_listener.close()


def main(argv: list[str] | None = None) -> None:
    run_component(parse_args(argv), serve, uvloop=True)


if __name__ == "__main__":
    main()
