"""``minik-apiserver``: the only process that talks to etcd."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from pathlib import Path

from apimachinery import tracing
from apimachinery.component import add_log_level_flag, run_component

from . import admission, aggregator, audit, authn, encryption, kubernetes_service, nodeproxy, serving
from . import metrics as apiserver_metrics
from .allocator import DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, ServiceAllocations
from .app import create_app
from .authn import DEFAULT_ISSUER
from .etcd import Etcd, EtcdUnavailable
from .registry import Storage
from .tracestore import StoreProcessor, TraceStore

log = logging.getLogger("apiserver")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="minik-apiserver", description="minik's Kubernetes-shaped API server")
    p.add_argument("--etcd-servers", default="http://127.0.0.1:2379", help="comma-separated etcd client URLs")
    p.add_argument("--bind-address", default="0.0.0.0", help="address to serve HTTPS on (the secure port)")
    p.add_argument(
        "--secure-port",
        type=int,
        default=None,
        help="port to serve HTTPS on, with authentication and authorization (default 6443; 0 = off)",
    )
    p.add_argument(
        "--advertise-address",
        default=None,
        help="address the `kubernetes` Service's endpoints name (default: the host's first non-loopback IPv4)",
    )
    p.add_argument("--tls-cert-file", default=None, help="the serving certificate (PEM) of the secure port")
    p.add_argument("--tls-private-key-file", default=None, help="the serving certificate's private key (PEM)")
    p.add_argument(
        "--client-ca-file",
        default=None,
        help="CA bundle (PEM) that verifies client certificates: CN is the user, O values its groups",
    )
    p.add_argument(
        "--insecure-port",
        type=int,
        default=0,
        help="plain-HTTP port on 127.0.0.1 with NO authentication or authorization, for debugging "
        "and benchmarks (default 0 = off)",
    )
    p.add_argument(
        "--anonymous-auth",
        type=_bool,
        default=True,
        help="requests without credentials are system:anonymous (true) or refused with 401 (false)",
    )
    p.add_argument(
        "--enable-bootstrap-token-auth",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        help="bearer tokens ID.SECRET authenticate against the bootstrap-token-ID Secrets of "
        "kube-system (default true; Kubernetes' default is false)",
    )
    p.add_argument(
        "--authorization-mode",
        default="Node,RBAC",
        help="comma-separated authorizers, tried in order: Node, RBAC, AlwaysAllow, AlwaysDeny",
    )
    p.add_argument(
        "--service-account-key-file",
        action="append",
        default=[],
        help="PEM file of public (or private) keys that verify service-account tokens (repeatable)",
    )
    p.add_argument(
        "--service-account-signing-key-file",
        default=None,
        help="PEM private key that signs the tokens TokenRequest issues",
    )
    p.add_argument(
        "--service-account-issuer",
        action="append",
        default=[],
        help=f"the iss of issued tokens (the first) and the issuers accepted (all); default {DEFAULT_ISSUER}",
    )
    p.add_argument(
        "--api-audiences",
        default="",
        help="comma-separated audiences the API accepts in tokens (default: the issuer)",
    )
    p.add_argument(
        "--encryption-provider-config",
        default=None,
        help="EncryptionConfiguration file: how resources (Secrets) are encrypted at rest",
    )
    p.add_argument(
        "--enable-admission-plugins", default="", help="comma-separated admission plugins to enable"
    )
    p.add_argument(
        "--disable-admission-plugins", default="", help="comma-separated admission plugins to disable"
    )
    p.add_argument("--etcd-cafile", default=None, help="CA bundle that verifies etcd's serving certificates")
    p.add_argument("--etcd-certfile", default=None, help="client certificate for etcd")
    p.add_argument("--etcd-keyfile", default=None, help="the etcd client certificate's key")
    audit.add_flags(p)
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
    p.add_argument(
        "--proxy-client-cert-file",
        default=None,
        help="client certificate the aggregation layer presents to aggregated API servers (the front proxy)",
    )
    p.add_argument("--proxy-client-key-file", default=None, help="the key of --proxy-client-cert-file")
    p.add_argument(
        "--requestheader-username-headers",
        default="X-Remote-User",
        help="the header the aggregation layer names the user in when it proxies a request",
    )
    p.add_argument(
        "--requestheader-group-headers",
        default="X-Remote-Group",
        help="the header the aggregation layer names the user's groups in",
    )
    p.add_argument(
        "--requestheader-extra-headers-prefix",
        default="X-Remote-Extra-",
        help="the prefix of the headers the aggregation layer passes the user's extra fields in",
    )
    p.add_argument(
        "--disable-metrics",
        action="store_true",
        help="do not collect or serve Prometheus metrics (/metrics answers 404); for overhead benchmarks",
    )
    p.add_argument(
        "--disable-tracing",
        action="store_true",
        help="record no OpenTelemetry spans and keep no trace store (minik trace then shows nothing)",
    )
    add_log_level_flag(p)
    args = p.parse_args(argv)
    check_serving_flags(p, args)
    return args


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value: {value!r}")


def check_serving_flags(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--secure-port needs a certificate and key.  Without both, a server started with only the
    insecure port (``--insecure-port``) serves plain HTTP alone, as before the secure port existed;
    an explicit ``--secure-port`` without them is an error."""
    explicit = args.secure_port is not None
    if args.secure_port is None:
        args.secure_port = 6443
    if args.insecure_port is None:
        args.insecure_port = 0
    if args.secure_port and not (args.tls_cert_file and args.tls_private_key_file):
        if not explicit and args.insecure_port:
            log.warning("no --tls-cert-file/--tls-private-key-file: the secure port is off")
            args.secure_port = 0
        else:
            p.error(
                "--secure-port requires --tls-cert-file and --tls-private-key-file "
                "(or --secure-port 0 with --insecure-port for plain HTTP on 127.0.0.1)"
            )
    if not args.secure_port and not args.insecure_port:
        p.error("nothing to serve: --secure-port is 0 and --insecure-port is not set")
    for flag in (
        "tls_cert_file",
        "tls_private_key_file",
        "client_ca_file",
        "service_account_signing_key_file",
    ):
        path = getattr(args, flag)
        if path and not Path(path).is_file():
            p.error(f"--{flag.replace('_', '-')}: {path}: no such file")


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
    """Serve until SIGTERM or SIGINT (handled by :func:`serving.serve_all`; ``stop`` stays unset)."""
    nodeproxy.configure(
        args.kubelet_client_certificate, args.kubelet_client_key, args.kubelet_certificate_authority
    )
    etcd = Etcd(
        args.etcd_servers, cafile=args.etcd_cafile, certfile=args.etcd_certfile, keyfile=args.etcd_keyfile
    )
    transformer = encryption.from_args(args)  # --encryption-provider-config: Secrets encrypted in etcd
    if transformer is not None:
        transformer.start()  # re-reads the file when it changes
        etcd.transformer = transformer
    version = await wait_for_etcd(etcd, args.etcd_wait_timeout)
    log.info("connected to etcd %s at %s", version, args.etcd_servers)
    storage = Storage(etcd)
    storage.service_allocations = ServiceAllocations(
        etcd, args.service_cluster_ip_range, args.service_node_port_range
    )
    await storage.repair_service_allocations()
    await storage.ensure_system_namespaces()
    storage.admission = admission.Admission(
        storage, admission.plugins_from_flags(args.enable_admission_plugins, args.disable_admission_plugins)
    )
    storage.master_endpoint = kubernetes_service.master_endpoint(args)  # type: ignore[attr-defined]
    endpoint = storage.master_endpoint  # type: ignore[attr-defined]
    if endpoint:
        advertise = f"{endpoint[0]}:{endpoint[1]}"
    else:
        advertise = f"127.0.0.1:{args.insecure_port}"
    security = authn.from_args(args, storage)
    audit_log = audit.from_args(args)
    proxy = aggregator.proxy_config_from_args(args)
    app = create_app(storage, advertise, security=security, audit_log=audit_log, proxy_config=proxy)
    if not args.disable_metrics:
        app.server.metrics = apiserver_metrics.enable(storage)  # /metrics (Prometheus)
    traces = None
    if not args.disable_tracing:  # minik trace: spans kept in memory (apiserver/tracestore.py)
        traces = TraceStore()
        tracing.setup("apiserver", local=StoreProcessor(traces))
    app.server.traces = traces  # GET /debug/minik/traces, POST /debug/minik/spans
    configs = []
    if args.secure_port:
        configs.append(
            serving.server_config(
                app,
                args.bind_address,
                args.secure_port,
                secure=True,
                lifespan=True,
                certfile=args.tls_cert_file,
                keyfile=args.tls_private_key_file,
                client_ca=args.client_ca_file,
            )
        )
        log.info("serving the API on https://%s:%d", args.bind_address, args.secure_port)
    if args.insecure_port:
        configs.append(
            serving.server_config(app, "127.0.0.1", args.insecure_port, secure=False, lifespan=not configs)
        )
        log.warning(
            "serving the API WITHOUT authentication or authorization on http://127.0.0.1:%d",
            args.insecure_port,
        )
    try:
        await serving.serve_all(configs)
    finally:
        if audit_log is not None:
            audit_log.close()
        await etcd.close()


def main(argv: list[str] | None = None) -> None:
    run_component(parse_args(argv), serve, uvloop=True, signals=False)


if __name__ == "__main__":
    main()
