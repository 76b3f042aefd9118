"""``minik-kubelet``: the node agent (see docs/kubelet.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

from apimachinery import tracing
from apimachinery.client import Client
from apimachinery.component import add_kubeconfig_flags, run_component
from apimachinery.kubeconfig import ClientConfig, load_config

from . import auth, cni, overlay
from .certrotation import Rotator
from .docker_runtime import DockerRuntime
from .kubelet import Kubelet
from .node import default_node_ip
from .server import build_app

log = logging.getLogger("kubelet")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the kubelet handles SIGTERM/SIGINT itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


DEFAULT_POD_CIDR = "10.244.0.0/24"


def _flag(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {value!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="minik-kubelet", description="Run this host's pods as Docker containers."
    )
    add_kubeconfig_flags(p)
    p.add_argument("--node-name", default=os.environ.get("NODE_NAME") or socket.gethostname().lower())
    p.add_argument(
        "--node-ip", default=None, help="the node's InternalIP (default: this host's outbound address)"
    )
    p.add_argument(
        "--address", default=None, help="address of the kubelet's HTTPS server (default: the --node-ip)"
    )
    p.add_argument(
        "--port", type=int, default=10250, help="port of the kubelet's HTTPS server (0: not served)"
    )
    p.add_argument(
        "--tls-cert-file",
        default=None,
        help="serving certificate (default: a self-signed one made in ROOT-DIR/pki)",
    )
    p.add_argument("--tls-private-key-file", default=None, help="the serving certificate's key")
    p.add_argument(
        "--client-ca-file",
        default=None,
        help="CA bundle that client certificates are verified against (x509 authentication)",
    )
    p.add_argument(
        "--anonymous-auth",
        type=_flag,
        nargs="?",
        const=True,
        default=False,
        help="serve requests without credentials as system:anonymous (default false)",
    )
    p.add_argument(
        "--authorization-mode",
        choices=("Webhook", "AlwaysAllow"),
        default="Webhook",
        help="Webhook: a SubjectAccessReview through the API server for every request",
    )
    p.add_argument(
        "--healthz-port",
        type=int,
        default=10248,
        help="port of the plain-HTTP /healthz listener (0: off)",
    )
    p.add_argument("--healthz-bind-address", default="127.0.0.1", help="address of the /healthz listener")
    p.add_argument(
        "--docker-host", default=None, help="Docker endpoint (default: $DOCKER_HOST or the local socket)"
    )
    p.add_argument(
        "--pod-cidr",
        default=None,
        help="pod subnet when node.spec.podCIDR is not set (default: wait for node IPAM to set it;"
        f" {DEFAULT_POD_CIDR} with --network-plugin docker)",
    )
    p.add_argument(
        "--network-plugin",
        choices=("cni", "docker"),
        default="cni",
        help="cni: CNI plugins set up each sandbox's network; docker: a Docker bridge network per node",
    )
    p.add_argument(
        "--network-name",
        default=cni.DEFAULT_NETWORK_NAME,
        help="the CNI network's name (with --network-plugin docker: the Docker network's)",
    )
    p.add_argument(
        "--cni-conf-dir", default=cni.DEFAULT_CONF_DIR, help="where the kubelet writes its conflist"
    )
    p.add_argument(
        "--cni-bin-dir", default=cni.DEFAULT_BIN_DIRS, help="colon-separated search path of CNI plugins"
    )
    p.add_argument(
        "--cni-cache-dir",
        default=cni.DEFAULT_CACHE_DIR,
        help="CNI results cache (results/) and host-local's allocations (networks/)",
    )
    p.add_argument(
        "--cni-bridge",
        default=None,
        help="the bridge device (at most 15 characters; default minik0 for the default network name,"
        " else mk + 8 hex digits of the name's SHA-1)",
    )
    p.add_argument("--root-dir", default="/var/lib/minik/kubelet", help="directory for pod volumes")
    p.add_argument(
        "--pod-infra-image", default=None, help="sandbox image (default: build minik/pause:1 from busybox)"
    )
    p.add_argument("--workers", type=int, default=8, help="pods synced in parallel")
    p.add_argument(
        "--cluster-dns",
        default="",
        help="cluster DNS server for pods with dnsPolicy ClusterFirst (empty: pods use the host's resolvers)",
    )
    p.add_argument("--cluster-domain", default="cluster.local", help="the cluster's DNS domain")
    p.add_argument(
        "--rotate-certificates",
        type=_flag,
        nargs="?",
        const=True,
        default=None,
        help="renew the client certificate through a CertificateSigningRequest before it expires"
        " (default: on when the kubeconfig names the certificate by file, as a bootstrapped kubelet's does)",
    )
    p.add_argument(
        "--rotate-server-certificates",
        type=_flag,
        nargs="?",
        const=True,
        default=False,
        help="request the serving certificate from the cluster (a kubernetes.io/kubelet-serving"
        " CertificateSigningRequest, ROOT-DIR/pki/kubelet-server-current.pem) and renew it before it"
        " expires; a self-signed one is served until the first is issued (Kubernetes' serverTLSBootstrap)",
    )
    p.add_argument(
        "--certificate-rotation-fraction",
        type=float,
        default=None,
        help="renew once this share of the certificate's lifetime has passed"
        " (default: jittered 0.7-0.9 per certificate, as Kubernetes)",
    )
    p.add_argument(
        "--certificate-expiration-seconds",
        type=int,
        default=None,
        help="spec.expirationSeconds of the renewal CSRs (default: the signer's duration)",
    )
    p.add_argument(
        "--pod-network-backend",
        choices=overlay.BACKENDS,
        default="none",
        help="how pods reach the other nodes' pods: vxlan (an overlay, nodes anywhere IP reaches),"
        " host-gw (routes via the nodes, one L2 segment) or none (one node, or routes made elsewhere)",
    )
    p.add_argument(
        "--overlay-interface",
        default="",
        help="the interface the other nodes are reached on (default: the one with the --node-ip)",
    )
    p.add_argument(
        "--overlay-device",
        default=overlay.DEFAULT_DEVICE,
        help="the vxlan device (--pod-network-backend vxlan)",
    )
    p.add_argument(
        "--cluster-cidr",
        default=overlay.DEFAULT_CLUSTER_CIDR,
        help="the pods' network of all nodes (host-gw touches only routes inside it)",
    )
    p.add_argument(
        "--cleanup",
        action="store_true",
        help="remove the pod network backend's device or routes from this host and exit",
    )
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p.parse_args(argv)


# Runtime calls are blocking SDK calls run in threads: a sandbox start, the creates beside it,
# the relist, probes and inspects of several pods must overlap, more than asyncio's default pool
# (cores + 4) allows on a small host.
RUNTIME_THREADS = 32


SERVING_PEM = "kubelet-server-current.pem"


def serving_pem(args: argparse.Namespace) -> Path:
    """Where ``--rotate-server-certificates`` keeps the issued serving certificate and its key."""
    return Path(args.root_dir) / "pki" / SERVING_PEM


def _usable_pair(path: Path) -> bool:
    """The PEM file holds a certificate and key that OpenSSL loads, and the certificate is valid now."""
    import datetime as dt

    from .certrotation import load_certificate

    try:
        cert = load_certificate(path)
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(path), str(path))
    except (OSError, ValueError, ssl.SSLError):
        return False
    return cert.not_valid_before_utc <= dt.datetime.now(dt.UTC) < cert.not_valid_after_utc


def https_config(args: argparse.Namespace, kubelet: Kubelet, client: Client, node_ip: str) -> uvicorn.Config:
    """The kubelet API: HTTPS with the given, the issued (``--rotate-server-certificates``) or a
    self-signed certificate, every request authenticated (client certificate or bearer token) and
    authorized (see kubelet/auth.py)."""
    if bool(args.tls_cert_file) != bool(args.tls_private_key_file):
        raise SystemExit("minik-kubelet: --tls-cert-file and --tls-private-key-file go together")
    cert, key = args.tls_cert_file, args.tls_private_key_file
    if not cert and args.rotate_server_certificates and _usable_pair(serving_pem(args)):
        cert = key = str(serving_pem(args))
    if not cert:
        cert, key = auth.ensure_serving_cert(
            os.path.join(args.root_dir, "pki"), args.node_name, [node_ip, args.address or ""]
        )
    app = auth.with_auth(
        build_app(kubelet),
        args.node_name,
        client,
        anonymous=args.anonymous_auth,
        authorization_mode=args.authorization_mode,
    )
    http_protocol, ws_protocol = auth.protocol_classes()
    return uvicorn.Config(
        app,
        host=args.address or node_ip,
        port=args.port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
        http=http_protocol,
        ws=ws_protocol,
        ssl_certfile=cert,
        ssl_keyfile=key,
        ssl_ca_certs=args.client_ca_file,
        ssl_cert_reqs=ssl.CERT_OPTIONAL if args.client_ca_file else ssl.CERT_NONE,
    )


def _client_with_rotation(args: argparse.Namespace, config: ClientConfig) -> tuple[Rotator | None, Client]:
    """The API client, and the certificate rotator when rotation is on: the client's TLS context
    is kept so that a renewed certificate is loaded into it (see kubelet/certrotation.py)."""
    by_file = bool(config.cert_file) and config.cert_file == config.key_file
    rotate = by_file if args.rotate_certificates is None else args.rotate_certificates
    if not rotate:
        return None, Client(config)
    if not by_file:
        raise SystemExit(
            "minik-kubelet: --rotate-certificates needs a kubeconfig whose client-certificate and"
            " client-key name one PEM file (kubelet-client-current.pem)"
        )
    ctx = config.ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    transport = RenewableTransport(ctx)
    client = Client(config, transport=transport)
    rotator = Rotator(
        client,
        args.node_name,
        Path(str(config.cert_file)),
        ctx,
        fraction=args.certificate_rotation_fraction,
        expiration_seconds=args.certificate_expiration_seconds,
        on_rotated=lambda: _after_client_rotation(transport, config),
    )
    return rotator, client


async def _after_client_rotation(transport: RenewableTransport, config: ClientConfig) -> None:
    """What a renewed client certificate changes: the API client's connections are made again and
    the span exporter (its own HTTP client) is set up again, reading the new file."""
    await transport.reconnect()
    if tracing.active():
        # finished spans still queued go out with the old certificate (valid for a while yet)
        await asyncio.to_thread(tracing.setup, "kubelet", config, enabled=True)


class RenewableTransport(httpx.AsyncBaseTransport):
    """The API client's transport, replaced by a new one when the client certificate is renewed.

    The old transport is closed, its connections with it: open watches end and the informers
    start them again on new connections, which present the new certificate (client-go closes
    every connection of the old certificate the same way, its ``connrotation`` dialer)."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.current = httpx.AsyncHTTPTransport(verify=ctx)
        self.generation = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.current.handle_async_request(request)

    async def reconnect(self) -> None:
        old, self.current = self.current, httpx.AsyncHTTPTransport(verify=self.ctx)
        self.generation += 1
        log.info("closing the API connections made with the old client certificate")
        await old.aclose()

    async def aclose(self) -> None:
        await self.current.aclose()


async def run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=RUNTIME_THREADS, thread_name_prefix="runtime")
    )
    config = load_config(args.kubeconfig, server=args.api_server)
    tracing.setup("kubelet", config)  # spans for minik trace, shipped to the API server
    rotator, client = _client_with_rotation(args, config)
    runtime = DockerRuntime(args.node_name, args.docker_host, args.pod_infra_image)
    runtime.oom_watch.start()
    node_ip = args.node_ip or default_node_ip()
    os.makedirs(args.root_dir, exist_ok=True)
    try:
        backend = overlay.Overlay(
            args.pod_network_backend,
            args.node_name,
            public_ip=args.node_ip or ("" if args.overlay_interface else node_ip),
            interface=args.overlay_interface,
            device=args.overlay_device,
            cluster_cidr=args.cluster_cidr,
        )
        pod_mtu = backend.pod_mtu()
    except (ValueError, overlay.KernelError) as exc:
        raise SystemExit(f"minik-kubelet: --pod-network-backend {args.pod_network_backend}: {exc}") from exc
    overlay_task: asyncio.Task[None] | None = None
    network = None
    pod_cidr = args.pod_cidr
    if args.network_plugin == "cni":
        bridge = args.cni_bridge or cni.bridge_name(args.network_name)
        if len(bridge) > 15:
            raise SystemExit(f"minik-kubelet: --cni-bridge {bridge!r} is longer than 15 characters")
        network = cni.PodNetwork(
            args.network_name,
            args.cni_conf_dir,
            args.cni_bin_dir,
            args.cni_cache_dir,
            bridge,
            mtu=pod_mtu,
            # between nodes, pods see each other's own addresses: masquerade only out of the cluster CIDR
            cluster_cidr=args.cluster_cidr if args.pod_network_backend != "none" else "",
        )
    elif not pod_cidr:
        pod_cidr = DEFAULT_POD_CIDR
    kubelet = Kubelet(
        client,
        runtime,
        args.node_name,
        node_ip,
        args.port,
        pod_cidr,
        args.network_name,
        args.root_dir,
        workers=args.workers,
        cluster_dns=[a for a in args.cluster_dns.split(",") if a],
        cluster_domain=args.cluster_domain,
        network=network,
    )
    server: uvicorn.Server | None = None
    serving_rotator: Rotator | None = None
    server_task: asyncio.Task[None] | None = None
    healthz: asyncio.Server | None = None
    try:
        while True:
            try:
                await kubelet.start()
                break
            except Exception as exc:  # noqa: BLE001 - the API server may not be up yet
                log.warning("node %s: cannot start yet (%s); retrying", args.node_name, exc)
                try:
                    await asyncio.wait_for(stop.wait(), 2)
                    return
                except TimeoutError:
                    continue
        if backend.backend != "none":
            overlay_task = asyncio.create_task(
                overlay.run(client, backend, kubelet.pod_cidr or "", stop), name="pod-network-backend"
            )
        if args.port:
            server_config = https_config(args, kubelet, client, node_ip)
            server_config.load()  # the TLS context now: a serving rotator loads renewed pairs into it
            server = _Server(server_config)
            if args.rotate_server_certificates and not args.tls_cert_file:
                assert isinstance(server_config.ssl, ssl.SSLContext)
                serving_rotator = Rotator(
                    client,
                    args.node_name,
                    serving_pem(args),
                    server_config.ssl,
                    fraction=args.certificate_rotation_fraction,
                    expiration_seconds=args.certificate_expiration_seconds,
                    serving=True,
                    sans=lambda: serving_names(args.node_name, node_ip),
                )
            server_task = asyncio.create_task(server.serve(), name="kubelet-https")
            while not server.started and not server_task.done():
                await asyncio.sleep(0.05)
            log.info(
                "node %s: serving the kubelet API on https://%s:%d",
                args.node_name,
                server.config.host,
                args.port,
            )
        if args.healthz_port:
            try:
                healthz = await auth.serve_healthz(args.healthz_bind_address, args.healthz_port)
            except OSError as exc:
                log.warning(
                    "cannot serve /healthz on %s:%d: %s", args.healthz_bind_address, args.healthz_port, exc
                )
        rotations = [
            asyncio.create_task(r.run(stop), name=f"cert-rotation-{r.what}")
            for r in (rotator, serving_rotator)
            if r is not None
        ]
        await stop.wait()
        for task in rotations:
            task.cancel()  # a CSR may be waiting for approval; the files are replaced atomically
        await asyncio.gather(*rotations, return_exceptions=True)
        log.info("node %s: stopping (containers keep running)", args.node_name)
    finally:
        if overlay_task is not None:
            overlay_task.cancel()
            await asyncio.gather(overlay_task, return_exceptions=True)
        if healthz is not None:
            healthz.close()
        if server is not None and server_task is not None:
            server.should_exit = True
            await asyncio.gather(server_task, return_exceptions=True)
        await kubelet.stop()
        await client.aclose()
        runtime.close()


def serving_names(node_name: str, node_ip: str) -> list[str]:
    """The serving certificate's subject alternative names: the node's name (its only DNS name that
    csrapproving approves) and its InternalIP.  A stored certificate naming others (the node IP
    changed since) is renewed at once by the serving rotator."""
    return [node_name, node_ip]


def cleanup(args: argparse.Namespace) -> None:
    """``--cleanup``: remove the backend's vxlan device (its routes, neighbours and FDB entries go
    with it) or host-gw routes; the kernel keeps them when the kubelet stops, as flannel's do."""
    backend = overlay.Overlay(
        args.pod_network_backend,
        args.node_name,
        interface=args.overlay_interface,
        device=args.overlay_device,
        cluster_cidr=args.cluster_cidr,
    )
    if backend.backend == "host-gw" and not backend.interface:
        with contextlib.suppress(overlay.KernelError):
            backend.public_ip = args.node_ip or default_node_ip()
            backend.resolve()
    removed = backend.cleanup()
    print(f"pod network backend {backend.backend}: {'removed' if removed else 'nothing to remove'}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.cleanup:
        cleanup(args)
        return
    run_component(args, run, debug_verbosity=2, quiet=("httpx",))


if __name__ == "__main__":
    main()
