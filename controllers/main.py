"""``minik-controller-manager``: run the controllers against an API server."""

from __future__ import annotations

import argparse
import asyncio
import logging

from apimachinery import metrics, tracing
from apimachinery.bootstraptoken import parse_duration
from apimachinery.client import Client
from apimachinery.component import run_component, run_until_stopped
from apimachinery.kubeconfig import load_config
from apimachinery.leaderelection import add_timing_flags

from .base import Options
from .certificates import load_signing_pair
from .manager import CONTROLLERS, ControllerManager, select_controllers
from .rootcacert import root_ca_pem

log = logging.getLogger("controllers")


def _cidrs(value: str) -> str:
    """A comma-separated list of CIDRs, checked (argparse reports a bad one)."""
    from .certificates import parse_prefixes

    try:
        parse_prefixes(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="minik-controller-manager", description=__doc__)
    p.add_argument(
        "--api-server",
        help="API server URL, e.g. https://127.0.0.1:6443, or several separated by commas to fail over between "
        "(the CA and credentials come from --kubeconfig)",
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (used when --api-server is not given)")
    p.add_argument(
        "--leader-elect",
        default=True,
        type=lambda v: v.lower() in ("1", "true", "yes", "on"),
        help="hold a Lease before running controllers (default true)",
    )
    add_timing_flags(p)
    p.add_argument("--leader-elect-resource-namespace", default="kube-system")
    p.add_argument("--leader-elect-resource-name", default="minik-controller-manager")
    p.add_argument(
        "--controllers",
        default="*",
        help=f"'*', names or -name, comma separated; known: {','.join(CONTROLLERS)}",
    )
    p.add_argument("--node-monitor-grace-period", type=float, default=40.0)
    p.add_argument("--node-monitor-period", type=float, default=5.0)
    p.add_argument("--pod-eviction-timeout", type=float, default=300.0)
    p.add_argument(
        "--allocate-node-cidrs",
        default=True,
        type=lambda v: v.lower() in ("1", "true", "yes", "on"),
        help="run node IPAM: give each node a spec.podCIDR from --cluster-cidr (default true; the"
        " kubelets' CNI networks take their pod ranges from it)",
    )
    p.add_argument(
        "--cluster-cidr", default="10.244.0.0/16", help="pod network of the cluster (default 10.244.0.0/16)"
    )
    p.add_argument(
        "--node-cidr-mask-size",
        type=int,
        default=24,
        help="prefix length of each node's pod CIDR (default 24)",
    )
    p.add_argument(
        "--job-backoff-seconds",
        type=float,
        default=10.0,
        help="base delay before a Job recreates a failed pod (doubles per failure, max 6 min)",
    )
    p.add_argument(
        "--hostpath-provisioner-dir",
        default="/var/lib/minik/volumes",
        help="where the minik.io/hostpath provisioner puts volumes (one directory per claim)",
    )
    p.add_argument(
        "--max-endpoints-per-slice",
        type=int,
        default=100,
        help="most endpoints the EndpointSlice controller puts in one slice (default 100)",
    )
    p.add_argument(
        "--root-ca-file",
        default="",
        help="the cluster CA (PEM) published as ConfigMap kube-root-ca.crt in every namespace"
        " (default: the CA of the kubeconfig)",
    )
    p.add_argument(
        "--resource-quota-sync-period",
        type=float,
        default=30.0,
        help="seconds between full recounts of every ResourceQuota's status.used (default 30)",
    )
    p.add_argument(
        "--terminated-pod-gc-threshold",
        type=int,
        default=12500,
        help="terminated pods that may exist before PodGC deletes the oldest (0: never; default 12500)",
    )
    p.add_argument("--pod-gc-period", type=float, default=20.0, help="seconds between PodGC passes")
    p.add_argument(
        "--pod-gc-quarantine",
        type=float,
        default=40.0,
        help="seconds a node must stay missing before PodGC deletes its pods (default 40)",
    )
    p.add_argument(
        "--horizontal-pod-autoscaler-sync-period",
        type=float,
        default=15.0,
        help="seconds between reconciliations of every HorizontalPodAutoscaler (default 15)",
    )
    p.add_argument(
        "--cluster-signing-cert-file",
        default="",
        help="PEM CA certificate the csrsigning controller issues certificates with (with"
        " --cluster-signing-key-file; without both csrsigning does not run)",
    )
    p.add_argument("--cluster-signing-key-file", default="", help="PEM private key of that CA")
    p.add_argument(
        "--cluster-signing-duration",
        default="8760h",
        help="longest validity of a signed certificate; spec.expirationSeconds may ask less"
        " (default 8760h, one year)",
    )
    p.add_argument(
        "--kubelet-serving-ip-prefixes",
        default="",
        type=_cidrs,
        help="comma-separated CIDRs a kubelet serving CSR's IP addresses must be in for csrapproving"
        " to approve it (default none: a serving CSR with an IP address waits for an administrator)",
    )
    p.add_argument(
        "--service-cluster-ip-range",
        default="10.96.0.0/12",
        type=_cidrs,
        help="the Services' network: csrapproving never approves a serving certificate for an address in it",
    )
    p.add_argument("--concurrent-syncs", type=int, default=2, help="workers per controller")
    p.add_argument("-v", "--verbose", action="store_true")
    metrics.add_metrics_flag(p, 10257)
    return p.parse_args(argv)


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    config = args.api_server or load_config(args.kubeconfig or None)
    tracing.setup("controller-manager", config)  # spans for minik trace, shipped to the API server
    client = Client(config)
    root_ca = root_ca_pem(args.root_ca_file, config)
    names = select_controllers(args.controllers)
    if not args.allocate_node_cidrs:
        names = [n for n in names if n != "nodeipam"]
    if not root_ca:
        names = [n for n in names if n != "root-ca-cert-publisher"]
    signing_pair = None
    if args.cluster_signing_cert_file and args.cluster_signing_key_file:
        signing_pair = load_signing_pair(args.cluster_signing_cert_file, args.cluster_signing_key_file)
    elif "csrsigning" in names:
        log.info("csrsigning off: no --cluster-signing-cert-file/--cluster-signing-key-file")
        names = [n for n in names if n != "csrsigning"]
    signing_duration = parse_duration(args.cluster_signing_duration).total_seconds()
    manager = ControllerManager(
        client,
        names,
        Options(
            node_monitor_grace_period=args.node_monitor_grace_period,
            node_monitor_period=args.node_monitor_period,
            pod_eviction_timeout=args.pod_eviction_timeout,
            workers=args.concurrent_syncs,
            extra={
                "cluster_cidr": args.cluster_cidr,
                "node_cidr_mask_size": args.node_cidr_mask_size,
                "job_backoff_seconds": args.job_backoff_seconds,
                "hostpath_provisioner_dir": args.hostpath_provisioner_dir,
                "max_endpoints_per_slice": args.max_endpoints_per_slice,
                "resource_quota_sync_period": args.resource_quota_sync_period,
                "root_ca_pem": root_ca,
                "terminated_pod_gc_threshold": args.terminated_pod_gc_threshold,
                "pod_gc_period": args.pod_gc_period,
                "pod_gc_quarantine": args.pod_gc_quarantine,
                "horizontal_pod_autoscaler_sync_period": args.horizontal_pod_autoscaler_sync_period,
                "cluster_signing_pair": signing_pair,
                "cluster_signing_duration": signing_duration,
                "kubelet_serving_ip_prefixes": args.kubelet_serving_ip_prefixes,
                "service_cluster_ip_range": args.service_cluster_ip_range,
            },
        ),
        leader_elect=args.leader_elect,
        lease_namespace=args.leader_elect_resource_namespace,
        lease_name=args.leader_elect_resource_name,
        lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline,
        retry_period=args.leader_elect_retry_period,
    )
    metrics_server = await metrics.serve_from_args(args, "controller-manager")  # GET /metrics
    try:
        await run_until_stopped(manager.run(), stop, "controller-manager")
    finally:
        if metrics_server is not None:
            metrics_server.close()
        await client.aclose()
        log.info("controller manager stopped")


def main(argv: list[str] | None = None) -> None:
    run_component(parse_args(argv), serve, quiet=("httpx", "httpcore"))


if __name__ == "__main__":
    main()
