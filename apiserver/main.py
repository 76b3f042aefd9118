"""``minik-apiserver``: the only process that talks to etcd."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import uvicorn

from apimachinery.component import add_log_level_flag, run_component

from . import kubernetes_service, nodeproxy
from .allocator import DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, ServiceAllocations
from .app import create_app
from .etcd import Etcd, EtcdUnavailable
from .registry import Storage

log = logging.getLogger("apiserver")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="minik-apiserver", description="minik's Kubernetes-shaped API server")
    p.add_argument("--etcd-servers", default="http://127.0.0.1:2379", help="comma-separated etcd client URLs")
    p.add_argument("--bind-address", default="127.0.0.1", help="address to serve plain HTTP on")
    p.add_argument("--port", type=int, default=8080, help="port to serve plain HTTP on")
    p.add_argument(
        "--etcd-wait-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for etcd at start before giving up",
    )
    p.add_argument(
        "--service-cluster-ip-range",
        default=DEFAULT_SERVICE_CIDR,
        help="CIDR range from which Service ClusterIPs are allocated",
    )
    p.add_argument(
        "--service-node-port-range",
        default=DEFAULT_NODE_PORT_RANGE,
        help="port range (e.g. 30000-32767) from which NodePorts are allocated",
    )
    p.add_argument(
        "--kubelet-client-certificate",
        default=None,
        help="client certificate the API server presents to kubelets",
    )
    p.add_argument("--kubelet-client-key", default=None, help="the key of --kubelet-client-certificate")
    p.add_argument(
        "--kubelet-certificate-authority",
        default=None,
        help="CA that kubelets' serving certificates are verified against (unset: not verified)",
    )
    add_log_level_flag(p)
    return p.parse_args(argv)


async def wait_for_etcd(etcd: Etcd, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return await etcd.status()
        except EtcdUnavailable as e:
            last = e
            await asyncio.sleep(0.5)
    raise SystemExit(
        f"minik-apiserver: etcd at {etcd.servers} did not answer within {timeout:.0f}s ({last}).\n"
        "Start etcd first (for example `etcd --data-dir /tmp/etcd`) or point --etcd-servers at it."
    )


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Serve until uvicorn, which handles SIGTERM and SIGINT itself, stops (``stop`` stays unset)."""
    nodeproxy.configure(
        args.kubelet_client_certificate, args.kubelet_client_key, args.kubelet_certificate_authority
    )
    etcd = Etcd(args.etcd_servers)
    version = await wait_for_etcd(etcd, args.etcd_wait_timeout)
    log.info("connected to etcd %s at %s", version, args.etcd_servers)
    storage = Storage(etcd)
    storage.service_allocations = ServiceAllocations(
        etcd, args.service_cluster_ip_range, args.service_node_port_range
    )
    await storage.repair_service_allocations()
    await storage.ensure_system_namespaces()
    storage.master_endpoint = kubernetes_service.master_endpoint(args)  # type: ignore[attr-defined]
    advertise = f"{args.bind_address}:{args.port}"
    app = create_app(storage, advertise)
    config = uvicorn.Config(
        app,
        host=args.bind_address,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        loop="asyncio",
        http="httptools",
        ws="websockets",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    log.info("serving the API on http://%s", advertise)
    try:
        await server.serve()
    finally:
        await etcd.close()


def main(argv: list[str] | None = None) -> None:
    run_component(parse_args(argv), serve, uvloop=True, signals=False)


if __name__ == "__main__":
    main()
