"""``minik lab``: a multi-node cluster on one Docker host, with docker compose (see docs/lab.md).

Each lab node is a privileged container running its own Docker engine, ``minik-kubelet`` and
``minik-proxy``; the control plane is a 3-member etcd cluster, the API server, the controller
manager, the scheduler and the cluster DNS, one container each.  Everything belongs to one compose
project (``minik-lab`` by default), so ``minik lab down`` removes containers, networks and volumes
by the project's label.

Everything speaks TLS, as in ``minik up``: ``lab up`` makes the lab's CA and certificates on this
host (:func:`ensure_lab_credentials`, in the lab's state directory) and mounts into each container
only the files that container needs: etcd's members their serving and peer certificate (client and
peer TLS with client-certificate authentication), the API server its serving certificate, its etcd
and kubelet client certificates, the service-account keys and the encryption config; every other
component a kubeconfig with its own client certificate (each node's kubelet is
``system:node:NODE``), never the admin's.

The compose file is generated for the number of nodes asked for (:func:`render_compose`);
``deploy/docker-compose.yml`` is the same rendering for 3 nodes, for use without this command.

Settings come from options, or from the environment (handy for tests and CI):
``MINIK_LAB_PROJECT``, ``MINIK_LAB_SUBNET``, ``MINIK_LAB_API_PORT``, ``MINIK_LAB_BASE``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import typer
import yaml
from rich.console import Console
from rich.table import Table

from . import metricsapi
from .cluster import (
    cluster_entries,
    default_state_dir,
    merge_into_user_kubeconfig,
    port_in_use,
    remove_kubeconfig_context,
)

console = Console()

CONTEXT = "minik-lab"
DEFAULT_PROJECT = "minik-lab"
DEFAULT_SUBNET = "10.213.0.0/24"
DEFAULT_API_PORT = 8480
LOCAL_BASE = "minik/base:bookworm"
CONTROL_PLANE_IMAGE = "minik/lab-control-plane:latest"
NODE_IMAGE = "minik/lab-node:latest"
METRICS_PORT = 4443  # metrics-server's HTTPS port in its container
SOURCE_HASH_LABEL = "io.minik.lab.source-hash"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ETCD_MEMBERS = 3
CLUSTER_CIDR = "10.244.0.0/16"  # node IPAM gives each node a /24 of it
CLUSTER_DNS_IP = "10.96.0.10"  # the kube-dns Service's ClusterIP (the API server's default service range)
API_PORT_IN_CONTAINER = 6443
IN_CONTAINER = "/etc/minik"  # where each container finds the certificates and kubeconfig it is given
PACKAGES = ("apimachinery", "apiserver", "scheduler", "controllers", "kubelet", "proxy", "ingress", "cli")

lab_app = typer.Typer(
    name="lab",
    help="A multi-node lab on this Docker host: each node a container with its own Docker engine.",
    no_args_is_help=True,
)
node_app = typer.Typer(name="node", help="Take a lab node away and bring it back.", no_args_is_help=True)
lab_app.add_typer(node_app, name="node")
image_app = typer.Typer(name="image", help="Images in the lab's nodes.", no_args_is_help=True)


# -- configuration and the compose file (pure) -------------------------------------------------------


@dataclass
class LabConfig:
    """What one lab is: everything the compose file is rendered from."""

    project: str = DEFAULT_PROJECT
    nodes: int = 3
    subnet: str = DEFAULT_SUBNET
    api_port: int = DEFAULT_API_PORT
    node_monitor_grace_period: float = 40.0
    pod_eviction_timeout: float = 300.0
    # privileged node containers where the engine can grant them; otherwise every capability the
    # engine has (cap_drop lists those it lacks), without seccomp and AppArmor profiles
    privileged: bool = True
    cap_drop: tuple[str, ...] = ()
    # vxlan: the workers alternate between two segments behind a router; host-gw: all on segment A
    pod_network_backend: str = "vxlan"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"


def node_name(i: int) -> str:
    return f"node-{i}"


BACKENDS = ("vxlan", "host-gw")
SEGMENTS = ("segment-a", "segment-b")
ROUTER = "router"


def segments(cfg: LabConfig) -> dict[str, ipaddress.IPv4Network]:
    """The lab subnet's two halves: segment A (the control plane, the router, odd nodes) and
    segment B (the router, even nodes), two Docker networks joined only by the router."""
    net = ipaddress.ip_network(cfg.subnet)
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 27:
        raise ValueError(f"--subnet {cfg.subnet}: an IPv4 network of /27 or larger (it is split in two)")
    a, b = net.subnets(1)
    return {SEGMENTS[0]: a, SEGMENTS[1]: b}


def node_segment(cfg: LabConfig, i: int) -> str:
    """Node i's segment: with vxlan node-1, node-3, … on A and node-2, node-4, … on B (so node-1
    and node-2 never share an L2 segment); host-gw needs one segment, so every node is on A."""
    if cfg.pod_network_backend == "host-gw":
        return SEGMENTS[0]
    return SEGMENTS[(i - 1) % 2]


def addresses(cfg: LabConfig) -> dict[str, str]:
    """Fixed addresses: on segment A etcd .2-.4, API server .5, controller manager .6, scheduler
    .7, DNS .8, metrics-server .9, the router .10; on segment B the router .10 of B (key
    ``router-b``); node N at .(10+N) of its segment."""
    if cfg.pod_network_backend not in BACKENDS:
        raise ValueError(f"pod network backend {cfg.pod_network_backend!r}: one of {', '.join(BACKENDS)}")
    segs = segments(cfg)
    a, b = segs[SEGMENTS[0]], segs[SEGMENTS[1]]
    if cfg.nodes < 1 or 10 + cfg.nodes >= a.num_addresses - 1:
        raise ValueError(f"{cfg.nodes} nodes do not fit in {cfg.subnet}")
    out = {f"etcd-{i}": str(a[1 + i]) for i in range(1, ETCD_MEMBERS + 1)}
    out.update(
        {
            "apiserver": str(a[5]),
            "controller-manager": str(a[6]),
            "scheduler": str(a[7]),
            "dns": str(a[8]),
            "metrics-server": str(a[9]),
            ROUTER: str(a[10]),
            f"{ROUTER}-b": str(b[10]),
        }
    )
    out.update({node_name(i): str(segs[node_segment(cfg, i)][10 + i]) for i in range(1, cfg.nodes + 1)})
    return out


def segment_routes(cfg: LabConfig, segment: str) -> str:
    """``LAB_ROUTES`` of a container on ``segment``: the other segment via the router."""
    segs = segments(cfg)
    ips = addresses(cfg)
    if segment == SEGMENTS[0]:
        return f"{segs[SEGMENTS[1]]} via {ips[ROUTER]}"
    return f"{segs[SEGMENTS[0]]} via {ips[f'{ROUTER}-b']}"


def node_privileges(cfg: LabConfig) -> dict[str, Any]:
    if cfg.privileged:
        return {"privileged": True}
    out: dict[str, Any] = {"cap_add": ["ALL"]}
    if cfg.cap_drop:
        out["cap_drop"] = list(cfg.cap_drop)
    # the node's entrypoint remounts /sys, /proc/sys and the cgroup hierarchies read-write
    out["security_opt"] = ["seccomp=unconfined", "apparmor=unconfined"]
    out["device_cgroup_rules"] = ["a *:* rmw"]
    return out


# capability numbers (linux/capability.h) -> names, to say which ones the engine cannot grant
CAPABILITIES = (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
    "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
    "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
    "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE"
).split()


def missing_capabilities(cap_bnd_hex: str) -> list[str]:
    """Capabilities absent from a bounding set (``CapBnd`` of /proc/PID/status)."""
    mask = int(cap_bnd_hex, 16)
    return [name for bit, name in enumerate(CAPABILITIES) if not mask >> bit & 1]


# -- credentials ----------------------------------------------------------------------------------------


def ensure_lab_credentials(cfg: LabConfig, directory: Path) -> None:
    """The lab's CA and every certificate, key and kubeconfig :func:`render_compose` mounts, in
    ``directory`` (``pki/``, ``kubeconfigs/``, ``encryption-config.yaml``); reused when present."""
    from apimachinery.pki import PKI, apiserver_hosts, write_kubeconfig

    from .supervisor import ensure_encryption_config

    ips = addresses(cfg)
    pki = PKI(directory / "pki")
    pki.ensure_ca(f"{cfg.project}-ca")
    members = [f"etcd-{i}" for i in range(1, ETCD_MEMBERS + 1)]
    # each member's certificate names every member: the API server checks them all for the first's name
    etcd_hosts = ["127.0.0.1", "localhost", *(ips[m] for m in members), *members]
    for m in members:
        pki.serving_cert(m, etcd_hosts, m, client_auth=True)
    pki.client_cert("apiserver-etcd-client", "kube-apiserver-etcd-client")
    pki.serving_cert("apiserver", apiserver_hosts([ips["apiserver"], "apiserver"]), "kube-apiserver")
    pki.client_cert("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"])
    # the aggregation layer: the API server's front-proxy certificate (lab CA) and metrics-server's
    # serving certificate for the name the API server verifies
    pki.client_cert("front-proxy-client", "front-proxy-client")
    pki.serving_cert(
        "metrics-server-serving", ["metrics-server.kube-system.svc", ips["metrics-server"]], "metrics-server"
    )
    pki.service_account_keys()
    in_lab = f"https://{ips['apiserver']}:{API_PORT_IN_CONTAINER}"
    users: dict[str, tuple[str, str, list[str], str]] = {
        "admin": ("admin", "kubernetes-admin", ["system:masters"], cfg.server),
        "scheduler": ("scheduler", "system:kube-scheduler", [], in_lab),
        "controller-manager": ("controller-manager", "system:kube-controller-manager", [], in_lab),
        "proxy": ("proxy", "system:kube-proxy", [], in_lab),
        "dns": ("dns", "system:minik-dns", [], in_lab),
        "metrics-server": ("metrics-server", "system:metrics-server", [], in_lab),
        "ingress": ("ingress", "system:minik-ingress", [], in_lab),
    }
    for i in range(1, cfg.nodes + 1):
        node = node_name(i)
        users[f"kubelet-{node}"] = (f"kubelet-{node}-client", f"system:node:{node}", ["system:nodes"], in_lab)
        pki.serving_cert(f"kubelet-{node}", [ips[node], "127.0.0.1", node], f"system:node:{node}")
    ca = pki.ca_pem()
    for conf, (cert, user, groups, server) in users.items():
        crt = pki.client_cert(cert, user, groups)
        write_kubeconfig(
            directory / "kubeconfigs" / f"{conf}.conf", server=server, ca_pem=ca, cert=crt, user=user
        )
    ensure_encryption_config(directory / "encryption-config.yaml")


def render_compose(cfg: LabConfig, context: str = ".", secrets: str = "./secrets") -> str:
    """The compose file for ``cfg`` (compose format 2.4: docker-compose 1.29 and ``docker compose`` v2).

    ``context`` is the build context (the ``deploy/`` directory) and ``secrets`` the directory
    :func:`ensure_lab_credentials` filled, as the file should name them.
    """
    ips = addresses(cfg)
    etcd_urls = ",".join(f"https://{ips[f'etcd-{i}']}:2379" for i in range(1, ETCD_MEMBERS + 1))
    initial = ",".join(f"etcd-{i}=https://{ips[f'etcd-{i}']}:2380" for i in range(1, ETCD_MEMBERS + 1))
    base_arg = {"BASE": "${MINIK_LAB_BASE:-" + LOCAL_BASE + "}"}
    pki = f"{IN_CONTAINER}/pki"

    def mounts(*files: str | tuple[str, str]) -> list[str]:
        """Read-only bind mounts of single files of ``secrets`` (a pair: the name inside differs)."""
        out = []
        for f in files:
            src, dst = f if isinstance(f, tuple) else (f, f)
            out.append(f"{secrets}/{src}:{IN_CONTAINER}/{dst}:ro")
        return out

    seg_a = SEGMENTS[0]

    def control_plane(name: str, command: list[str], **extra: Any) -> dict[str, Any]:
        """A control-plane service on segment A; one started by minik-lab-run first adds the route
        to segment B via the router (LAB_ROUTES; it answers the nodes there)."""
        svc: dict[str, Any] = {
            "image": CONTROL_PLANE_IMAGE,
            "hostname": name,
            "command": command,
            "restart": "unless-stopped",
            "labels": {"io.minik.lab.role": "control-plane", "io.minik.lab.segment": seg_a},
            "networks": {seg_a: {"ipv4_address": ips[name]}},
        }
        if command[0] == "minik-lab-run":
            svc["cap_add"] = ["NET_ADMIN"]
            svc["environment"] = {"LAB_ROUTES": segment_routes(cfg, seg_a)}
        svc.update(extra)
        return svc

    services: dict[str, Any] = {}
    for i in range(1, ETCD_MEMBERS + 1):
        name = f"etcd-{i}"
        ip = ips[name]
        services[name] = control_plane(
            name,
            [
                "etcd",
                "--name",
                name,
                "--data-dir",
                "/var/lib/etcd",
                "--listen-client-urls",
                "https://0.0.0.0:2379",
                "--advertise-client-urls",
                f"https://{ip}:2379",
                "--listen-peer-urls",
                "https://0.0.0.0:2380",
                "--initial-advertise-peer-urls",
                f"https://{ip}:2380",
                "--initial-cluster",
                initial,
                "--initial-cluster-token",
                cfg.project,
                "--initial-cluster-state",
                "new",
                # clients (the API server) and peers present certificates of the lab's CA
                "--cert-file",
                f"{pki}/{name}.crt",
                "--key-file",
                f"{pki}/{name}.key",
                "--client-cert-auth",
                "--trusted-ca-file",
                f"{pki}/ca.crt",
                "--peer-cert-file",
                f"{pki}/{name}.crt",
                "--peer-key-file",
                f"{pki}/{name}.key",
                "--peer-client-cert-auth",
                "--peer-trusted-ca-file",
                f"{pki}/ca.crt",
                "--log-level",
                "warn",
            ],
            volumes=mounts("pki/ca.crt", f"pki/{name}.crt", f"pki/{name}.key"),
        )
    # only the first service builds the image; the others name it
    services["etcd-1"]["build"] = {"context": context, "target": "control-plane", "args": dict(base_arg)}
    services["apiserver"] = control_plane(
        "apiserver",
        [
            "minik-lab-run",
            "apiserver.main",
            "--etcd-servers",
            etcd_urls,
            "--etcd-cafile",
            f"{pki}/ca.crt",
            "--etcd-certfile",
            f"{pki}/apiserver-etcd-client.crt",
            "--etcd-keyfile",
            f"{pki}/apiserver-etcd-client.key",
            "--bind-address",
            "0.0.0.0",
            "--secure-port",
            str(API_PORT_IN_CONTAINER),
            "--advertise-address",
            ips["apiserver"],
            "--tls-cert-file",
            f"{pki}/apiserver.crt",
            "--tls-private-key-file",
            f"{pki}/apiserver.key",
            "--client-ca-file",
            f"{pki}/ca.crt",
            "--service-account-key-file",
            f"{pki}/sa.pub",
            "--service-account-signing-key-file",
            f"{pki}/sa.key",
            "--kubelet-client-certificate",
            f"{pki}/apiserver-kubelet-client.crt",
            "--kubelet-client-key",
            f"{pki}/apiserver-kubelet-client.key",
            "--kubelet-certificate-authority",
            f"{pki}/ca.crt",
            "--proxy-client-cert-file",
            f"{pki}/front-proxy-client.crt",
            "--proxy-client-key-file",
            f"{pki}/front-proxy-client.key",
            "--encryption-provider-config",
            f"{IN_CONTAINER}/encryption-config.yaml",
            "--audit-log-path",
            "/var/log/minik/audit.log",
        ],
        depends_on=[f"etcd-{i}" for i in range(1, ETCD_MEMBERS + 1)],
        ports=[f"127.0.0.1:{cfg.api_port}:{API_PORT_IN_CONTAINER}"],
        volumes=mounts(
            "pki/ca.crt",
            *(
                f"pki/{n}.{ext}"
                for n in (
                    "apiserver",
                    "apiserver-etcd-client",
                    "apiserver-kubelet-client",
                    "front-proxy-client",
                )
                for ext in ("crt", "key")
            ),
            "pki/sa.key",
            "pki/sa.pub",
            "encryption-config.yaml",
        ),
    )

    def kubeconfig(name: str) -> list[str]:
        return ["--kubeconfig", f"{IN_CONTAINER}/{name}.conf"]

    services["controller-manager"] = control_plane(
        "controller-manager",
        [
            "minik-lab-run",
            "controllers.main",
            *kubeconfig("controller-manager"),
            "--root-ca-file",
            f"{pki}/ca.crt",
            "--node-monitor-grace-period",
            f"{cfg.node_monitor_grace_period:g}",
            "--pod-eviction-timeout",
            f"{cfg.pod_eviction_timeout:g}",
            # node IPAM: each node's spec.podCIDR (its CNI network, and the other nodes' routes to it)
            "--allocate-node-cidrs",
            "true",
            "--cluster-cidr",
            CLUSTER_CIDR,
        ],
        depends_on=["apiserver"],
        volumes=mounts(("kubeconfigs/controller-manager.conf", "controller-manager.conf"), "pki/ca.crt"),
    )
    services["scheduler"] = control_plane(
        "scheduler",
        ["minik-lab-run", "scheduler.main", *kubeconfig("scheduler")],
        depends_on=["apiserver"],
        volumes=mounts(("kubeconfigs/scheduler.conf", "scheduler.conf")),
    )
    services["dns"] = control_plane(
        "dns",
        ["minik-lab-run", "proxy.dns", *kubeconfig("dns")],
        depends_on=["apiserver"],
        volumes=mounts(("kubeconfigs/dns.conf", "dns.conf")),
    )
    services["metrics-server"] = control_plane(
        "metrics-server",
        [
            "minik-lab-run",
            "metricsserver.main",
            *kubeconfig("metrics-server"),
            "--secure-port",
            str(METRICS_PORT),
            "--tls-cert-file",
            f"{pki}/metrics-server-serving.crt",
            "--tls-private-key-file",
            f"{pki}/metrics-server-serving.key",
            "--requestheader-client-ca-file",
            f"{pki}/ca.crt",
        ],
        depends_on=["apiserver"],
        volumes=mounts(
            ("kubeconfigs/metrics-server.conf", "metrics-server.conf"),
            "pki/ca.crt",
            "pki/metrics-server-serving.crt",
            "pki/metrics-server-serving.key",
        ),
    )
    # the router between the two segments: IP forwarding on, no NAT, nothing else
    services[ROUTER] = {
        "image": CONTROL_PLANE_IMAGE,
        "hostname": ROUTER,
        "command": ["sh", "-c", "trap 'exit 0' TERM INT; sleep infinity & wait"],
        "restart": "unless-stopped",
        "labels": {"io.minik.lab.role": "router", "io.minik.lab.segment": ",".join(SEGMENTS)},
        "sysctls": {"net.ipv4.ip_forward": "1"},
        "networks": {
            SEGMENTS[0]: {"ipv4_address": ips[ROUTER]},
            SEGMENTS[1]: {"ipv4_address": ips[f"{ROUTER}-b"]},
        },
        "depends_on": ["etcd-1"],  # which builds the image
    }
    for i in range(1, cfg.nodes + 1):
        name = node_name(i)
        seg = node_segment(cfg, i)
        services[name] = {
            "image": NODE_IMAGE,
            "hostname": name,
            "restart": "unless-stopped",
            "environment": {
                "NODE_NAME": name,
                "CLUSTER_CIDR": CLUSTER_CIDR,
                "CLUSTER_DNS": CLUSTER_DNS_IP,
                "POD_NETWORK_BACKEND": cfg.pod_network_backend,
                "LAB_ROUTES": segment_routes(cfg, seg),
            },
            "labels": {"io.minik.lab.role": "node", "io.minik.lab.segment": seg},
            **node_privileges(cfg),
            "volumes": [
                f"{name}-docker:/var/lib/docker",
                *mounts(
                    (f"kubeconfigs/kubelet-{name}.conf", "kubelet.conf"),
                    ("kubeconfigs/proxy.conf", "proxy.conf"),
                    ("kubeconfigs/ingress.conf", "ingress.conf"),
                    "pki/ca.crt",
                    (f"pki/kubelet-{name}.crt", "pki/kubelet.crt"),
                    (f"pki/kubelet-{name}.key", "pki/kubelet.key"),
                ),
            ],
            "networks": {seg: {"ipv4_address": ips[name]}},
            "depends_on": ["apiserver", ROUTER],
        }
    services[node_name(1)]["build"] = {"context": context, "target": "node", "args": dict(base_arg)}
    doc = {
        "version": "2.4",
        "services": services,
        "networks": {
            seg: {"driver": "bridge", "ipam": {"config": [{"subnet": str(net)}]}}
            for seg, net in segments(cfg).items()
        },
        "volumes": {f"{node_name(i)}-docker": {} for i in range(1, cfg.nodes + 1)},
    }
    header = (
        f"# minik lab: {cfg.nodes} nodes, a 3-member etcd cluster and the control plane (see docs/lab.md).\n"
        "# Two networks joined by the router: segment A (control plane, odd nodes), segment B (even\n"
        f"# nodes); pods reach other nodes' pods through the kubelets' {cfg.pod_network_backend} backend.\n"
        "# Generated by `minik lab render`; `minik lab up --nodes N` writes its own for N nodes.\n"
        "# Standalone: deploy/build-base.sh && .venv/bin/pip wheel . -w deploy/.wheels\n"
        "#             .venv/bin/minik lab certs --dir deploy/secrets   # the lab's CA, certificates, kubeconfigs\n"
        "#             docker-compose -p minik-lab -f deploy/docker-compose.yml up -d --build\n"
        "#             kubectl --kubeconfig deploy/secrets/kubeconfigs/admin.conf apply -f deploy/kube-dns.yaml\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)


# -- where things are ---------------------------------------------------------------------------------


def repo_dir() -> Path:
    """The source checkout minik runs from (its packages' parent directory)."""
    return Path(__file__).resolve().parent.parent


def deploy_dir() -> Path:
    """``deploy/`` of the checkout: the lab builds its images from minik's sources and these files,
    which an installed wheel does not carry."""
    d = repo_dir() / "deploy"
    if not (d / "Dockerfile").is_file():
        console.print(
            f"[red]minik lab needs a source checkout of minik[/red]: it builds its images from the "
            f"sources and deploy/Dockerfile, and this minik, installed in {repo_dir()}, has no "
            f"{d.name}/ beside it. Clone the repository, run `bash scripts/install.sh` there and use "
            "its .venv/bin/minik lab (see docs/lab.md); `minik up` needs no checkout."
        )
        raise typer.Exit(1)
    return d


def state_dir(project: str) -> Path:
    return default_state_dir() / "lab" / project


def project_option() -> Any:
    return typer.Option(
        os.environ.get("MINIK_LAB_PROJECT", DEFAULT_PROJECT), "--project", help="compose project name"
    )


def load_config(project: str) -> LabConfig:
    path = state_dir(project) / "lab.json"
    try:
        return LabConfig(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return LabConfig(project=project)


def compose_command() -> list[str]:
    """``docker compose`` (v2) when the plugin is there, else ``docker-compose`` (1.29)."""
    override = os.environ.get("MINIK_COMPOSE")
    if override:
        return override.split()
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    console.print(
        "[red]neither `docker compose` nor `docker-compose` is installed[/red] (apt-get install docker-compose)"
    )
    raise typer.Exit(1)


def compose(project: str, *args: str, check: bool = True, quiet: bool = False) -> int:
    path = state_dir(project) / "docker-compose.yml"
    argv = [*compose_command(), "-p", project, "-f", str(path), *args]
    out = subprocess.DEVNULL if quiet else None
    code = subprocess.run(argv, stdout=out, stderr=out).returncode
    if check and code != 0:
        console.print(f"[red]{' '.join(argv)} failed ({code})[/red]")
        raise typer.Exit(code)
    return code


def docker_client() -> Any:
    import docker

    return docker.from_env(timeout=300)


# -- images ---------------------------------------------------------------------------------------------


def source_hash(base_id: str) -> str:
    """A digest of everything the lab images are built from: minik's sources, the deploy files and
    the base image, so `lab up` rebuilds exactly when one of them changed."""
    root = repo_dir()
    h = hashlib.sha256(base_id.encode())
    files = [root / "pyproject.toml"]
    for pkg in PACKAGES:
        files += sorted(p for p in (root / pkg).rglob("*") if p.suffix in (".py", ".json") and p.is_file())
    d = root / "deploy"
    files += [d / "Dockerfile", d / "lab-run.sh", d / "node-entrypoint.sh"]
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _image_hash(client: Any, name: str) -> str | None:
    import docker.errors

    try:
        img = client.images.get(name)
    except docker.errors.ImageNotFound:
        return None
    return str((img.labels or {}).get(SOURCE_HASH_LABEL) or "")


def ensure_base(client: Any, base: str) -> str:
    """The base image's id, building the local base with deploy/build-base.sh when it is missing."""
    import docker.errors

    try:
        return str(client.images.get(base).id)
    except docker.errors.ImageNotFound:
        pass
    if base == LOCAL_BASE:
        console.print(f"building the base image {base} with debootstrap (about a minute)…")
        code = subprocess.run(["bash", str(deploy_dir() / "build-base.sh"), base]).returncode
        if code != 0:
            console.print("[red]building the base image failed[/red]")
            raise typer.Exit(1)
    else:
        console.print(f"pulling {base}…")
        client.images.pull(base)
    return str(client.images.get(base).id)


def build_wheels(deploy: Path) -> None:
    """minik and its dependencies as wheels in deploy/.wheels, for `pip install --no-index` in the image."""
    wheels = deploy / ".wheels"
    wheels.mkdir(exist_ok=True)
    for old in wheels.glob("minik-*.whl"):
        old.unlink()
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]
    root = str(repo_dir())
    with tempfile.TemporaryDirectory() as tmp:
        # the build directory goes to a temporary place, not into the source tree
        env = {**os.environ, "TMPDIR": tmp}
        offline = subprocess.run(
            [
                *pip,
                "--no-index",
                "--find-links",
                str(wheels),
                "--no-build-isolation",
                root,
                "-w",
                str(wheels),
            ],
            capture_output=True,
            env=env,
        )
        if offline.returncode == 0:
            return
        online = subprocess.run([*pip, root, "-w", str(wheels)], capture_output=True, text=True, env=env)
    if online.returncode != 0:
        console.print(f"[red]building wheels failed[/red]:\n{online.stderr[-3000:]}")
        raise typer.Exit(1)


def build_image(client: Any, deploy: Path, target: str, tag: str, base: str, digest: str) -> None:
    """``docker build --target`` with the steps shown as they run."""
    old = None
    try:
        old = client.images.get(tag).id
    except Exception:  # noqa: BLE001 - not there yet
        pass
    steps = client.api.build(
        path=str(deploy),
        dockerfile="Dockerfile",
        target=target,
        tag=tag,
        buildargs={"BASE": base},
        labels={SOURCE_HASH_LABEL: digest},
        rm=True,
        forcerm=True,
        decode=True,
    )
    with console.status(f"building {tag}…") as status:
        for chunk in steps:
            if "error" in chunk:
                console.print(f"[red]building {tag} failed[/red]: {chunk['error'].strip()}")
                raise typer.Exit(1)
            line = str(chunk.get("stream") or "").strip()
            if line.startswith("Step "):
                status.update(f"building {tag}: {line[:100]}")
                console.print(f"  [dim]{line[:120]}[/dim]")
    new = client.images.get(tag).id
    if old and old != new:
        try:
            client.images.remove(old, noprune=False)
        except Exception:  # noqa: BLE001 - still used by a container; it goes with it
            pass
    console.print(f"built {tag}")


def ensure_images(base: str, rebuild: bool = False) -> None:
    """Build the base, the wheels and both lab images, unless the images already match the sources."""
    deploy = deploy_dir()  # before any build: an installed wheel has no deploy/ to build from
    client = docker_client()
    try:
        base_id = ensure_base(client, base)
        digest = source_hash(base_id)
        wanted = {CONTROL_PLANE_IMAGE: "control-plane", NODE_IMAGE: "node"}
        if not rebuild and all(_image_hash(client, tag) == digest for tag in wanted):
            console.print(f"images are up to date ({digest})")
            return
        with console.status("building wheels of minik and its dependencies…"):
            build_wheels(deploy)
        for tag, target in wanted.items():
            build_image(client, deploy, target, tag, base, digest)
    finally:
        client.close()


# -- the running lab ------------------------------------------------------------------------------------


def lab_containers(client: Any, project: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"}))


def find_container(client: Any, project: str, service: str) -> Any:
    found = client.containers.list(
        all=True, filters={"label": [f"{PROJECT_LABEL}={project}", f"{SERVICE_LABEL}={service}"]}
    )
    if not found:
        console.print(f"[red]no lab container for {service!r} in project {project}[/red]")
        raise typer.Exit(1)
    return found[0]


def api_client(cfg: LabConfig, timeout: float = 5) -> httpx.Client:
    """An HTTPS client to the lab's API server as its admin (trusting the lab's CA)."""
    import ssl

    pki = state_dir(cfg.project) / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return httpx.Client(base_url=cfg.server, verify=ctx, timeout=timeout)


def node_conditions(cfg: LabConfig) -> dict[str, str]:
    """Node name -> Ready status ("True", "False", "Unknown"), from the API server."""
    with api_client(cfg) as client:
        resp = client.get("/api/v1/nodes")
    resp.raise_for_status()
    out = {}
    for node in resp.json().get("items") or []:
        ready = "Unknown"
        for cond in (node.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready":
                ready = cond.get("status") or "Unknown"
        out[node["metadata"]["name"]] = ready
    return out


def wait_ready(cfg: LabConfig, timeout: float) -> None:
    """Until every node is Ready; the kube-dns Service is made as soon as the API server answers
    (before pods start: they ask its ClusterIP)."""
    from .supervisor import ensure_kube_dns

    deadline = time.monotonic() + timeout
    want = [node_name(i) for i in range(1, cfg.nodes + 1)]
    dns_done = False
    with console.status("waiting for the API server…") as status, api_client(cfg, 2) as client:
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    if not dns_done:
                        # minik-dns runs in its own container on the lab network
                        ensure_kube_dns(client, CLUSTER_DNS_IP, addresses(cfg)["dns"], "")
                        dns_done = True
                    conds = node_conditions(cfg)
                    ready = [n for n in want if conds.get(n) == "True"]
                    if len(ready) == len(want):
                        return
                    status.update(
                        "waiting for nodes: "
                        + ", ".join(f"{n} {'Ready' if n in ready else conds.get(n, 'absent')}" for n in want)
                    )
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the lab's nodes were not Ready within {timeout:.0f}s")
            time.sleep(1)


def remove_leftovers(project: str) -> list[str]:
    """Remove whatever still carries the project's label: containers, networks, volumes."""
    removed: list[str] = []
    client = docker_client()
    try:
        for c in lab_containers(client, project):
            c.remove(force=True, v=True)
            removed.append(f"container {c.name}")
        label = {"label": f"{PROJECT_LABEL}={project}"}
        for n in client.networks.list(filters=label):
            n.remove()
            removed.append(f"network {n.name}")
        for v in client.volumes.list(filters=label):
            v.remove(force=True)
            removed.append(f"volume {v.name}")
    finally:
        client.close()
    return removed


def node_privilege_mode() -> tuple[bool, tuple[str, ...]]:
    """(True, ()) when the engine starts privileged containers, else (False, capabilities to drop)."""
    probe = subprocess.run(
        ["docker", "run", "--rm", "--privileged", "--entrypoint", "true", "--network", "none", NODE_IMAGE],
        capture_output=True,
    )
    if probe.returncode == 0:
        return True, ()
    try:
        status = Path("/proc/self/status").read_text()
        bnd = next(line.split()[1] for line in status.splitlines() if line.startswith("CapBnd:"))
    except (OSError, StopIteration):
        return False, ()
    return False, tuple(missing_capabilities(bnd))


def _dump_failure(project: str) -> None:
    client = docker_client()
    try:
        for c in lab_containers(client, project):
            console.print(f"[bold]--- {c.name} ({c.status})[/bold]")
            console.print(c.logs(tail=15).decode(errors="replace"), markup=False, highlight=False)
    finally:
        client.close()


# -- commands -------------------------------------------------------------------------------------------


@lab_app.command()
def up(
    nodes: int = typer.Option(3, "--nodes", "-n", min=1, max=50, help="how many nodes"),
    project: str = project_option(),
    subnet: str = typer.Option(
        os.environ.get("MINIK_LAB_SUBNET", DEFAULT_SUBNET), help="the lab network's subnet (fixed addresses)"
    ),
    api_port: int = typer.Option(
        int(os.environ.get("MINIK_LAB_API_PORT", DEFAULT_API_PORT)), help="the API server's port on 127.0.0.1"
    ),
    base: str = typer.Option(
        os.environ.get("MINIK_LAB_BASE", LOCAL_BASE),
        help="base image (python:3.11-slim where a registry is reachable)",
    ),
    node_monitor_grace_period: float = typer.Option(
        40.0, help="seconds without a heartbeat before a node is NotReady"
    ),
    pod_eviction_timeout: float = typer.Option(
        300.0, help="seconds a pod stays on an unreachable node before it is evicted"
    ),
    pod_network_backend: str = typer.Option(
        "vxlan",
        help="vxlan: the kubelets' overlay, the nodes alternate between two networks behind a router;"
        " host-gw: routes via the nodes, all on one network",
    ),
    rebuild: bool = typer.Option(False, help="rebuild the images even if they match the sources"),
    timeout: float = typer.Option(300, help="seconds to wait for every node to be Ready"),
    keep_on_failure: bool = typer.Option(False, help="leave a lab that failed to start, for debugging"),
) -> None:
    """Build what is missing, start the lab, wait for every node to be Ready, write the minik-lab context."""
    cfg = LabConfig(project, nodes, subnet, api_port, node_monitor_grace_period, pod_eviction_timeout)
    cfg.pod_network_backend = pod_network_backend
    try:
        addresses(cfg)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    client = docker_client()
    try:
        running = any(c.status == "running" for c in lab_containers(client, project))
    finally:
        client.close()
    if not running and port_in_use(api_port):
        console.print(f"[red]127.0.0.1:{api_port} is in use[/red]: pick another with --api-port")
        raise typer.Exit(1)
    ensure_images(base, rebuild)
    cfg.privileged, cfg.cap_drop = node_privilege_mode()
    if not cfg.privileged:
        console.print(
            "this engine cannot start privileged containers; nodes get every capability it has"
            + (f" (not {', '.join(cfg.cap_drop)})" if cfg.cap_drop else "")
        )
    state = state_dir(project)
    state.mkdir(parents=True, exist_ok=True)
    ensure_lab_credentials(cfg, state)
    (state / "docker-compose.yml").write_text(render_compose(cfg, str(deploy_dir()), str(state)))
    (state / "lab.json").write_text(json.dumps(asdict(cfg), indent=2))
    segs = segments(cfg)
    console.print(
        f"starting lab {project}: {nodes} node(s) on {subnet} (segment A {segs[SEGMENTS[0]]}, segment B "
        f"{segs[SEGMENTS[1]]}, router {addresses(cfg)[ROUTER]}), pod network {pod_network_backend}"
    )
    ok = False
    try:
        compose(project, "up", "-d", "--no-build", "--remove-orphans")
        wait_ready(cfg, timeout)
        with api_client(cfg) as api:  # metrics.k8s.io through the aggregation layer
            problems = metricsapi.register(
                api, addresses(cfg)["metrics-server"], METRICS_PORT, (state / "pki" / "ca.crt").read_text()
            )
        for problem in problems:
            console.print(f"[yellow]could not write {problem}[/yellow]")
        ok = True
    except TimeoutError as e:
        console.print(f"[red]{e}[/red]")
        _dump_failure(project)
    finally:
        if not ok and not keep_on_failure:
            console.print("removing the lab that failed to start (--keep-on-failure keeps it)")
            _down(project)
    if not ok:
        raise typer.Exit(1)
    pki = state / "pki"
    path = merge_into_user_kubeconfig(
        cluster_entries(
            cfg.server, (pki / "ca.crt").read_text(), pki / "admin.crt", pki / "admin.key", CONTEXT
        )
    )
    console.print(f"[green]lab {project} is up[/green]: {nodes} node(s) Ready, API server at {cfg.server}")
    console.print(f"kubeconfig: context [bold]{CONTEXT}[/bold] written to {path} and made current")


def _down(project: str) -> None:
    if (state_dir(project) / "docker-compose.yml").is_file():
        compose(project, "down", "-v", "--remove-orphans", "--timeout", "5", check=False)
    left = remove_leftovers(project)
    if left:
        console.print("removed leftovers: " + ", ".join(left))


@lab_app.command()
def down(project: str = project_option()) -> None:
    """Stop the lab and remove its containers, networks and volumes (the images are kept)."""
    _down(project)
    remove_kubeconfig_context(CONTEXT)
    shutil.rmtree(state_dir(project), ignore_errors=True)
    console.print(f"lab {project} removed")


@lab_app.command()
def status(project: str = project_option()) -> None:
    """Show the lab's containers and its nodes."""
    cfg = load_config(project)
    client = docker_client()
    try:
        containers = lab_containers(client, project)
    finally:
        client.close()
    if not containers:
        console.print(f"lab {project} is not running")
        raise typer.Exit(1)
    try:
        conds = node_conditions(cfg)
    except (httpx.HTTPError, OSError) as e:
        console.print(f"API server at {cfg.server} unreachable: {e}")
        conds = {}
    table = Table(title=f"lab {project} — API server {cfg.server}")
    for col in ("SERVICE", "CONTAINER", "STATE", "SEGMENT", "ADDRESS", "NODE READY"):
        table.add_column(col)
    for c in sorted(containers, key=lambda c: c.labels.get(SERVICE_LABEL, c.name)):
        service = c.labels.get(SERVICE_LABEL, "?")
        segs, ips = container_segments(c, project)
        ready = conds.get(service, "") if c.labels.get("io.minik.lab.role") == "node" else ""
        table.add_row(service, c.name, c.status, ",".join(segs), ",".join(ips), ready)
    console.print(table)
    console.print(f"pod network: {cfg.pod_network_backend}")


def container_segments(c: Any, project: str) -> tuple[list[str], list[str]]:
    """(the lab segments a container is attached to, its address on each), from Docker's view
    (a stopped container: from its compose label)."""
    nets = (c.attrs.get("NetworkSettings") or {}).get("Networks") or {}
    prefix = f"{project}_"
    segs, ips = [], []
    for name in sorted(nets):
        segs.append(name[len(prefix) :] if name.startswith(prefix) else name)
        ips.append(nets[name].get("IPAddress") or "")
    if not segs:
        segs = [s for s in str(c.labels.get("io.minik.lab.segment") or "").split(",") if s]
    return segs, ips


@node_app.command("stop")
def node_stop(
    name: str = typer.Argument(..., help="node-1, node-2, …"),
    project: str = project_option(),
) -> None:
    """Stop a node's container (its engine, kubelet and proxy): the node turns NotReady."""
    client = docker_client()
    try:
        find_container(client, project, name).stop(timeout=5)
    finally:
        client.close()
    console.print(f"{name} stopped")


@node_app.command("start")
def node_start(
    name: str = typer.Argument(..., help="node-1, node-2, …"),
    project: str = project_option(),
    wait: bool = typer.Option(True, help="wait for the node to be Ready again"),
    timeout: float = typer.Option(180),
) -> None:
    """Start a stopped node's container again."""
    client = docker_client()
    try:
        find_container(client, project, name).start()
    finally:
        client.close()
    if wait:
        cfg = load_config(project)
        deadline = time.monotonic() + timeout
        with console.status(f"waiting for {name} to be Ready…"):
            while True:
                try:
                    if node_conditions(cfg).get(name) == "True":
                        break
                except (httpx.HTTPError, OSError):
                    pass
                if time.monotonic() > deadline:
                    console.print(f"[red]{name} not Ready within {timeout:.0f}s[/red]")
                    raise typer.Exit(1)
                time.sleep(1)
    console.print(f"{name} started")


@lab_app.command("render")
def render(
    nodes: int = typer.Option(3, "--nodes", "-n", min=1, max=50),
    context: str = typer.Option(".", help="the build context as the file should name it"),
    secrets: str = typer.Option(
        "./secrets", help="the directory of `minik lab certs` as the file should name it"
    ),
) -> None:
    """Print the compose file for N nodes (deploy/docker-compose.yml is the one for 3)."""
    sys.stdout.write(render_compose(LabConfig(nodes=nodes), context, secrets))


@lab_app.command("certs")
def certs(
    directory: Path = typer.Option(..., "--dir", help="where to write them (kept 0700/0600)"),
    nodes: int = typer.Option(3, "--nodes", "-n", min=1, max=50),
    project: str = project_option(),
    subnet: str = typer.Option(os.environ.get("MINIK_LAB_SUBNET", DEFAULT_SUBNET)),
    api_port: int = typer.Option(int(os.environ.get("MINIK_LAB_API_PORT", DEFAULT_API_PORT))),
) -> None:
    """Make the lab's CA, certificates and kubeconfigs for a compose file from `minik lab render`."""
    cfg = LabConfig(project=project, nodes=nodes, subnet=subnet, api_port=api_port)
    try:
        addresses(cfg)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    ensure_lab_credentials(cfg, directory)
    console.print(
        f"the lab's CA, certificates and kubeconfigs are in {directory} (admin: kubeconfigs/admin.conf)"
    )


def _running_nodes(client: Any, project: str) -> Iterator[Any]:
    for c in lab_containers(client, project):
        if c.labels.get("io.minik.lab.role") == "node" and c.status == "running":
            yield c


@image_app.command("load")
def image_load(
    image: str = typer.Argument(..., help="an image of this host's Docker engine"),
    project: str = project_option(),
    node: list[str] = typer.Option(None, "--node", help="only these nodes (default: every running node)"),
) -> None:
    """Copy an image from this host's Docker engine into every lab node (docker save | docker load)."""
    client = docker_client()
    try:
        targets = [
            c for c in _running_nodes(client, project) if not node or c.labels.get(SERVICE_LABEL) in node
        ]
    finally:
        client.close()
    if not targets:
        console.print(f"[red]no running lab node in project {project}[/red]")
        raise typer.Exit(1)
    with tempfile.TemporaryFile() as tar:
        saved = subprocess.run(["docker", "save", image], stdout=tar, stderr=subprocess.PIPE)
        if saved.returncode != 0:
            console.print(f"[red]docker save {image} failed[/red]: {saved.stderr.decode().strip()}")
            raise typer.Exit(1)
        for c in sorted(targets, key=lambda c: c.name):
            tar.seek(0)
            loaded = subprocess.run(
                ["docker", "exec", "-i", c.id, "docker", "load", "-q"], stdin=tar, capture_output=True
            )
            if loaded.returncode != 0:
                console.print(f"[red]loading into {c.name} failed[/red]: {loaded.stderr.decode().strip()}")
                raise typer.Exit(1)
            console.print(f"{image} loaded into {c.labels.get(SERVICE_LABEL, c.name)}")


def main() -> None:
    """``python -m cli.lab lab up`` / ``python -m cli.lab image load X``: the same commands without the
    rest of the CLI."""
    root = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    root.add_typer(lab_app, name="lab")
    root.add_typer(image_app, name="image")
    root()


if __name__ == "__main__":
    main()
