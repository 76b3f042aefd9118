"""``minik lab``: a multi-node cluster on one Docker host, with docker compose (see docs/lab.md).

Every machine of the lab is a container with its own Docker engine, and each one makes itself part
of the cluster with the commands a real machine uses: the first control plane (``cp-1``) runs
``minik up``, the other control planes ``minik join --control-plane`` and the workers ``minik join``
with a bootstrap token that ``lab up`` creates on ``cp-1`` (``minik token create``).  Nothing is
wired from outside: the CA, every certificate and every kubeconfig are made inside the containers,
by ``minik up`` and by the TLS bootstrap of ``minik join``.  HAProxy (Debian's package, in its own
container, TCP mode) stands in front of the API servers: the workers join through it and the
host's ``minik-lab`` context reaches the cluster through it (127.0.0.1:API_PORT).

The workers sit on two Docker networks joined by a router container, so pod traffic between them
takes the kubelets' VXLAN overlay.  Everything belongs to one compose project (``minik-lab`` by
default), so ``minik lab down`` removes containers, networks and volumes by the project's label.

The compose file is generated for the numbers of nodes and control planes asked for
(:func:`render_compose`); ``deploy/docker-compose.yml`` is the same rendering for 3 nodes and one
control plane, for use without this command.

Settings come from options, or from the environment (handy for tests and CI):
``MINIK_LAB_PROJECT``, ``MINIK_LAB_SUBNET``, ``MINIK_LAB_API_PORT``, ``MINIK_LAB_BASE``,
``MINIK_LAB_CONTROL_PLANES``.
"""

from __future__ import annotations

import hashlib
import inspect
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
SOURCE_HASH_LABEL = "io.minik.lab.source-hash"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ROLE_LABEL = "io.minik.lab.role"
MAX_CONTROL_PLANES = 3
CLUSTER_CIDR = "10.244.0.0/16"  # minik up's default: node IPAM gives each node a /24 of it
API_PORT_IN_CONTAINER = 6443
STATE_IN_CONTAINER = "/root/.minik"  # minik up's and minik join's state directory in a lab machine
JOIN_IN_CONTAINER = "/etc/minik/join"  # where the machines find the join commands lab up writes
JOIN_FILES = {"worker": "worker", "control-plane": "control-plane"}
TOKEN_TTL = "2h"
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
PACKAGES = ("apimachinery", "apiserver", "scheduler", "controllers", "kubelet", "proxy", "ingress", "cli")

lab_app = typer.Typer(
    name="lab",
    help="A multi-node lab on this Docker host: each node a container with its own Docker engine.",
    no_args_is_help=True,
)
node_app = typer.Typer(name="node", help="Take a lab machine away and bring it back.", no_args_is_help=True)
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
    control_planes: int = 1
    # privileged containers where the engine can grant them; otherwise every capability the
    # engine has (cap_drop lists those it lacks), without seccomp and AppArmor profiles
    privileged: bool = True
    cap_drop: tuple[str, ...] = ()
    # vxlan: the workers alternate between two segments behind a router; host-gw: all on segment A
    pod_network_backend: str = "vxlan"
    # minik up --control-plane-endpoint: the API server's certificate names the load balancer's
    # address (see endpoint()); without it the machines reach HAProxy by a name the certificate has
    endpoint_flag: bool = True

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"


def node_name(i: int) -> str:
    return f"node-{i}"


def control_plane_name(i: int) -> str:
    return f"cp-{i}"


BACKENDS = ("vxlan", "host-gw")
SEGMENTS = ("segment-a", "segment-b")
ROUTER = "router"
LB = "lb"
# a name every minik API server certificate carries (apimachinery.pki.APISERVER_DNS_NAMES): the
# machines reach HAProxy by it when minik up cannot put the load balancer's address in the certificate
LB_NAME = "kubernetes"


def segments(cfg: LabConfig) -> dict[str, ipaddress.IPv4Network]:
    """The lab subnet's two halves: segment A (the control planes, HAProxy, the router, odd nodes)
    and segment B (the router, even nodes), two Docker networks joined only by the router."""
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
    """Fixed addresses: on segment A the control planes .2-.4, HAProxy .5, the router .10; on
    segment B the router .10 of B (key ``router-b``); node N at .(10+N) of its segment."""
    if cfg.pod_network_backend not in BACKENDS:
        raise ValueError(f"pod network backend {cfg.pod_network_backend!r}: one of {', '.join(BACKENDS)}")
    if not 1 <= cfg.control_planes <= MAX_CONTROL_PLANES:
        raise ValueError(f"--control-planes {cfg.control_planes}: 1 to {MAX_CONTROL_PLANES}")
    segs = segments(cfg)
    a, b = segs[SEGMENTS[0]], segs[SEGMENTS[1]]
    if cfg.nodes < 1 or 10 + cfg.nodes >= a.num_addresses - 1:
        raise ValueError(f"{cfg.nodes} nodes do not fit in {cfg.subnet}")
    out = {control_plane_name(i): str(a[1 + i]) for i in range(1, cfg.control_planes + 1)}
    out.update({LB: str(a[5]), ROUTER: str(a[10]), f"{ROUTER}-b": str(b[10])})
    out.update({node_name(i): str(segs[node_segment(cfg, i)][10 + i]) for i in range(1, cfg.nodes + 1)})
    return out


def endpoint(cfg: LabConfig) -> str:
    """HOST:PORT of the load balancer as the machines reach it: its address, which minik up puts
    into the API server's certificate (--control-plane-endpoint), or else a name the certificate
    has anyway, which each machine resolves to HAProxy (/etc/hosts, compose's extra_hosts)."""
    host = addresses(cfg)[LB] if cfg.endpoint_flag else LB_NAME
    return f"{host}:{API_PORT_IN_CONTAINER}"


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


def minik_up_has_endpoint_flag() -> bool:
    """Does this minik's ``minik up`` take ``--control-plane-endpoint`` (the images are built from
    the same sources)?"""
    from .cluster import up as minik_up

    return "control_plane_endpoint" in inspect.signature(minik_up).parameters


def render_haproxy(cfg: LabConfig) -> str:
    """HAProxy in front of the API servers: TCP mode (TLS goes through to the API servers, whose
    certificates the clients check), a health check of /readyz over TLS every second (the check
    does not verify the certificate: it only asks whether the server is ready), and ``option
    redispatch 1`` with retries, so a connection a dead API server refuses (or does not answer
    within a second) is tried on another at once, before the health check has noticed.
    ``balance first``: every client uses the first ready API server, the next takes over when it
    fails (so one API server serves the watches, as with a single control plane)."""
    ips = addresses(cfg)
    servers = "\n".join(
        f"    server {control_plane_name(i)} {ips[control_plane_name(i)]}:{API_PORT_IN_CONTAINER}"
        for i in range(1, cfg.control_planes + 1)
    )
    return (
        "global\n"
        "    log stdout format raw local0 info\n"
        "    maxconn 4096\n"
        "defaults\n"
        "    mode tcp\n"
        "    log global\n"
        "    option tcplog\n"
        "    option redispatch 1\n"
        "    retries 3\n"
        "    timeout connect 1s\n"
        "    timeout client 1h\n"
        "    timeout server 1h\n"
        "    timeout check 2s\n"
        "frontend apiserver\n"
        f"    bind *:{API_PORT_IN_CONTAINER}\n"
        "    default_backend control-planes\n"
        "backend control-planes\n"
        "    balance first\n"
        "    option httpchk GET /readyz\n"
        "    http-check expect status 200\n"
        "    default-server check check-ssl verify none inter 1s fall 2 rise 2 on-marked-down shutdown-sessions\n"
        f"{servers}\n"
    )


def render_compose(cfg: LabConfig, context: str = ".", join_dir: str = "./join") -> str:
    """The compose file for ``cfg`` (compose format 2.4: docker-compose 1.29 and ``docker compose`` v2).

    ``context`` is the build context (the ``deploy/`` directory) and ``join_dir`` the directory
    where ``lab up`` writes the join commands (``worker``, ``control-plane``), as the file should
    name them.
    """
    ips = addresses(cfg)
    base_arg = {"BASE": "${MINIK_LAB_BASE:-" + LOCAL_BASE + "}"}
    seg_a = SEGMENTS[0]
    ep = endpoint(cfg)
    # without the certificate's address the machines find HAProxy by name
    extra_hosts = [] if cfg.endpoint_flag else [f"{LB_NAME}:{ips[LB]}"]

    def machine(name: str, role: str, segment: str, env: dict[str, str]) -> dict[str, Any]:
        """A lab machine: the node image (its own Docker engine) running minik up or minik join."""
        return {
            "image": NODE_IMAGE,
            "hostname": name,
            "restart": "unless-stopped",
            "environment": {
                "NODE_NAME": name,
                "LAB_ROLE": role,
                "LAB_API_ENDPOINT": ep,
                "CLUSTER_CIDR": CLUSTER_CIDR,
                "POD_NETWORK_BACKEND": cfg.pod_network_backend,
                "LAB_ROUTES": segment_routes(cfg, segment),
                **env,
            },
            "labels": {
                ROLE_LABEL: "control-plane" if role != "worker" else "node",
                "io.minik.lab.segment": segment,
            },
            **node_privileges(cfg),
            **({"extra_hosts": list(extra_hosts)} if extra_hosts else {}),
            "volumes": [f"{name}-docker:/var/lib/docker"]
            + ([f"{join_dir}/{JOIN_FILES[role]}:{JOIN_IN_CONTAINER}:ro"] if role in JOIN_FILES else []),
            "networks": {segment: {"ipv4_address": ips[name]}},
        }

    services: dict[str, Any] = {}
    for i in range(1, cfg.control_planes + 1):
        name = control_plane_name(i)
        env = {"LAB_ADVERTISE_ADDRESS": ips[name]}
        if cfg.endpoint_flag:
            # joined workers on either segment get their kubelet serving certificates approved
            prefixes = ",".join(str(net) for net in segments(cfg).values())
            env["LAB_UP_ARGS"] = (
                f"--control-plane-endpoint {ep} --advertise-address {ips[name]}"
                f" --kubelet-serving-ip-prefixes {prefixes}"
            )
        services[name] = machine(name, "init" if i == 1 else "control-plane", seg_a, env)
        if i > 1:
            services[name]["depends_on"] = [control_plane_name(1)]
    services[control_plane_name(1)]["build"] = {"context": context, "target": "node", "args": dict(base_arg)}
    # HAProxy: the control-plane image has Debian's haproxy package; its configuration is in the
    # environment, so that the compose file is all there is to it
    services[LB] = {
        "image": CONTROL_PLANE_IMAGE,
        "hostname": LB,
        "command": [
            "sh",
            "-c",
            # the route to segment B via the router first: it answers the workers there
            'ip route replace $$LAB_ROUTES && printf "%s" "$$HAPROXY_CFG" >/tmp/haproxy.cfg'
            " && exec haproxy -W -db -f /tmp/haproxy.cfg",
        ],
        "environment": {"HAPROXY_CFG": render_haproxy(cfg), "LAB_ROUTES": segment_routes(cfg, seg_a)},
        "cap_add": ["NET_ADMIN"],
        "restart": "unless-stopped",
        "labels": {ROLE_LABEL: "load-balancer", "io.minik.lab.segment": seg_a},
        "ports": [f"127.0.0.1:{cfg.api_port}:{API_PORT_IN_CONTAINER}"],
        "networks": {seg_a: {"ipv4_address": ips[LB]}},
        "build": {"context": context, "target": "control-plane", "args": dict(base_arg)},
    }
    # the router between the two segments: IP forwarding on, no NAT, nothing else
    services[ROUTER] = {
        "image": CONTROL_PLANE_IMAGE,
        "hostname": ROUTER,
        "command": ["sh", "-c", "trap 'exit 0' TERM INT; sleep infinity & wait"],
        "restart": "unless-stopped",
        "labels": {ROLE_LABEL: "router", "io.minik.lab.segment": ",".join(SEGMENTS)},
        "sysctls": {"net.ipv4.ip_forward": "1"},
        "networks": {
            SEGMENTS[0]: {"ipv4_address": ips[ROUTER]},
            SEGMENTS[1]: {"ipv4_address": ips[f"{ROUTER}-b"]},
        },
        "depends_on": [LB],  # which builds the image
    }
    for i in range(1, cfg.nodes + 1):
        name = node_name(i)
        services[name] = machine(name, "worker", node_segment(cfg, i), {})
        services[name]["depends_on"] = [control_plane_name(1), LB, ROUTER]
    doc = {
        "version": "2.4",
        "services": services,
        "networks": {
            seg: {"driver": "bridge", "ipam": {"config": [{"subnet": str(net)}]}}
            for seg, net in segments(cfg).items()
        },
        "volumes": {f"{name}-docker": {} for name in services if name not in (LB, ROUTER)},
    }
    header = (
        f"# minik lab: {cfg.control_planes} control plane(s) behind HAProxy and {cfg.nodes} worker(s) (see docs/lab.md).\n"
        "# cp-1 runs `minik up`, the other control planes `minik join --control-plane`, the workers\n"
        "# `minik join`, with the join commands lab up writes into the join directory.\n"
        "# Two networks joined by the router: segment A (control planes, HAProxy, odd nodes), segment B\n"
        f"# (even nodes); pods reach other nodes' pods through the kubelets' {cfg.pod_network_backend} backend.\n"
        "# Generated by `minik lab render`; `minik lab up` writes its own for its numbers.\n"
        "# Standalone: deploy/build-base.sh && .venv/bin/pip wheel . -w deploy/.wheels\n"
        "#             mkdir -p deploy/join/worker deploy/join/control-plane\n"
        "#             docker-compose -p minik-lab -f deploy/docker-compose.yml up -d --build\n"
        "#             docker exec minik-lab_cp-1_1 minik token create --print-join-command >deploy/join/worker/command\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)


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
    files += [d / "Dockerfile", d / "node-entrypoint.sh"]
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


class LabError(Exception):
    """Bringing the lab up failed; the message says where."""


def machine_names(cfg: LabConfig) -> list[str]:
    """Every lab machine that is a Node: the control planes, then the workers."""
    return [control_plane_name(i) for i in range(1, cfg.control_planes + 1)] + [
        node_name(i) for i in range(1, cfg.nodes + 1)
    ]


def lab_exec(
    project: str, service: str, *argv: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``docker exec`` in a lab container (wide output: nothing the command prints is wrapped)."""
    client = docker_client()
    try:
        cid = find_container(client, project, service).id
    finally:
        client.close()
    return subprocess.run(
        ["docker", "exec", "-e", "COLUMNS=1000", cid, *argv], capture_output=True, text=True, timeout=timeout
    )


def fetch_admin_credentials(cfg: LabConfig, state: Path, deadline: float) -> None:
    """The CA and the admin's certificate and key from the admin kubeconfig ``minik up`` made in
    cp-1, into ``state/pki`` (the host reaches the cluster through HAProxy with them)."""
    import base64

    first = control_plane_name(1)
    path = f"{STATE_IN_CONTAINER}/kubeconfigs/admin.conf"
    while True:
        r = lab_exec(cfg.project, first, "cat", path)
        if r.returncode == 0 and r.stdout.strip():
            break
        if time.monotonic() > deadline:
            raise LabError(f"{first}'s minik up made no admin kubeconfig ({path}) in time")
        time.sleep(1)
    conf = yaml.safe_load(r.stdout)
    cluster = conf["clusters"][0]["cluster"]
    user = conf["users"][0]["user"]
    pki = state / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    for name, data in (
        ("ca.crt", cluster["certificate-authority-data"]),
        ("admin.crt", user["client-certificate-data"]),
        ("admin.key", user["client-key-data"]),
    ):
        f = pki / name
        f.write_bytes(base64.b64decode(data))
        os.chmod(f, 0o600)


def wait_api(cfg: LabConfig, deadline: float, status: Any) -> None:
    """Until the API server answers /readyz through HAProxy."""
    status.update(f"waiting for the API server through HAProxy ({cfg.server})…")
    with api_client(cfg, 2) as client:
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise LabError(f"the API server did not answer through HAProxy at {cfg.server} in time")
            time.sleep(1)


def join_command(cfg: LabConfig, control_plane: bool) -> str:
    """A fresh bootstrap token made on cp-1 and the join command ``minik token create`` prints
    for it (``--control-plane``: with the certificate key of the shared secrets)."""
    argv = ["minik", "token", "create", "--print-join-command", "--ttl", TOKEN_TTL]
    argv += ["--description", f"minik lab {'control planes' if control_plane else 'workers'}"]
    if control_plane:
        argv.append("--control-plane")
    r = lab_exec(cfg.project, control_plane_name(1), *argv)
    lines = [line.strip() for line in r.stdout.splitlines() if line.strip().startswith("minik join ")]
    if r.returncode != 0 or not lines:
        raise LabError(
            f"`{' '.join(argv)}` on {control_plane_name(1)} failed ({r.returncode}): "
            + (r.stderr.strip() or r.stdout.strip())[-800:]
        )
    return lines[-1]


def write_join_command(state: Path, kind: str, command: str) -> None:
    """``state/join/KIND/command`` (0600): what the machines of that kind run (they wait for it)."""
    d = state / "join" / kind
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / ".command.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(command + "\n")
    tmp.replace(d / "command")


def prepare_join_dirs(state: Path) -> None:
    """Empty join directories (the machines' mounts): an old command is never read again."""
    join = state / "join"
    join.mkdir(parents=True, exist_ok=True)
    os.chmod(join, 0o700)
    for kind in JOIN_FILES.values():
        (join / kind).mkdir(exist_ok=True)
        (join / kind / "command").unlink(missing_ok=True)


def wait_nodes(cfg: LabConfig, deadline: float, status: Any) -> None:
    """Until every control plane and every worker is a Ready Node."""
    want = machine_names(cfg)
    while True:
        try:
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
            raise LabError("the lab's nodes were not Ready in time")
        time.sleep(1)


def taint_control_planes(cfg: LabConfig) -> None:
    """As kubeadm: the control planes' Nodes get the control-plane role label and the NoSchedule
    taint, so that workloads go to the workers."""
    with api_client(cfg, 10) as api:
        for i in range(1, cfg.control_planes + 1):
            name = control_plane_name(i)
            r = api.get(f"/api/v1/nodes/{name}")
            r.raise_for_status()
            taints = list((r.json().get("spec") or {}).get("taints") or [])
            if not any(t.get("key") == CONTROL_PLANE_TAINT["key"] for t in taints):
                taints.append(dict(CONTROL_PLANE_TAINT))
            patch = {
                "metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}},
                "spec": {"taints": taints},
            }
            r = api.patch(
                f"/api/v1/nodes/{name}", json=patch, headers={"Content-Type": "application/merge-patch+json"}
            )
            if r.status_code != 200:
                raise LabError(f"tainting {name}: HTTP {r.status_code}: {r.text[:300]}")


def bring_up(cfg: LabConfig, state: Path, timeout: float) -> None:
    """After `compose up`: the admin's credentials from cp-1, the API server through HAProxy, the
    join commands for the other control planes and the workers, every Node Ready, the control
    planes tainted."""
    deadline = time.monotonic() + timeout
    with console.status(f"waiting for {control_plane_name(1)}'s minik up…") as status:
        fetch_admin_credentials(cfg, state, deadline)
        wait_api(cfg, deadline, status)
        console.print(
            f"  [green]✓[/green] {control_plane_name(1)}: minik up, API server ready through HAProxy"
        )
        if cfg.control_planes > 1:
            write_join_command(state, JOIN_FILES["control-plane"], join_command(cfg, True))
            console.print("  [green]✓[/green] control-plane join command written (token and certificate key)")
        write_join_command(state, JOIN_FILES["worker"], join_command(cfg, False))
        console.print(f"  [green]✓[/green] worker join command written (bootstrap token, ttl {TOKEN_TTL})")
        wait_nodes(cfg, deadline, status)
        taint_control_planes(cfg)


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
    control_planes: int = typer.Option(
        int(os.environ.get("MINIK_LAB_CONTROL_PLANES", "1")),
        "--control-planes",
        min=1,
        max=MAX_CONTROL_PLANES,
        help="how many control planes behind HAProxy (cp-1 runs minik up, the others minik join --control-plane)",
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
    """Build what is missing, start the lab, wait for every node to be Ready, write the minik-lab context.

    cp-1 runs `minik up`, the other control planes `minik join --control-plane`, the workers
    `minik join` with a bootstrap token made on cp-1; HAProxy in front of the API servers.
    """
    t0 = time.monotonic()
    cfg = LabConfig(project, nodes, subnet, api_port, control_planes)
    cfg.pod_network_backend = pod_network_backend
    cfg.endpoint_flag = minik_up_has_endpoint_flag()
    try:
        addresses(cfg)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if control_planes > 1 and not cfg.endpoint_flag:
        console.print(
            "[red]--control-planes > 1 needs `minik up --control-plane-endpoint` and `minik join"
            " --control-plane`[/red], which this minik does not have"
        )
        raise typer.Exit(1)
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
            "this engine cannot start privileged containers; the machines get every capability it has"
            + (f" (not {', '.join(cfg.cap_drop)})" if cfg.cap_drop else "")
        )
    state = state_dir(project)
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    prepare_join_dirs(state)
    (state / "docker-compose.yml").write_text(render_compose(cfg, str(deploy_dir()), str(state / "join")))
    (state / "lab.json").write_text(json.dumps(asdict(cfg), indent=2))
    segs = segments(cfg)
    ips = addresses(cfg)
    console.print(
        f"starting lab {project}: {control_planes} control plane(s) behind HAProxy ({ips[LB]}), {nodes}"
        f" worker(s) on {subnet} (segment A {segs[SEGMENTS[0]]}, segment B {segs[SEGMENTS[1]]}, router"
        f" {ips[ROUTER]}), pod network {pod_network_backend}"
    )
    ok = False
    try:
        compose(project, "up", "-d", "--no-build", "--remove-orphans")
        bring_up(cfg, state, timeout)
        ok = True
    except (LabError, httpx.HTTPError) as e:
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
    console.print(
        f"[green]lab {project} is up[/green] in {time.monotonic() - t0:.0f}s: {control_planes} control"
        f" plane(s) and {nodes} worker(s) Ready, API server at {cfg.server} (HAProxy)"
    )
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
        ready = conds.get(service, "") if c.labels.get(ROLE_LABEL) in ("node", "control-plane") else ""
        table.add_row(service, c.name, c.status, ",".join(segs), ",".join(ips), ready)
    console.print(table)
    console.print(
        f"pod network: {cfg.pod_network_backend}; control planes: {cfg.control_planes} behind HAProxy"
        f" ({addresses(cfg)[LB]}:{API_PORT_IN_CONTAINER}, 127.0.0.1:{cfg.api_port} on this host)"
    )


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
        _wait_node_ready(load_config(project), name, timeout)
    console.print(f"{name} started")


def _segment_network(c: Any, project: str) -> tuple[str, str]:
    """(the Docker network of a machine's segment, its address there), from the compose file's view."""
    service = c.labels.get(SERVICE_LABEL, "")
    segment = str(c.labels.get("io.minik.lab.segment") or "").split(",")[0]
    return f"{project}_{segment}", addresses(load_config(project))[service]


@node_app.command("disconnect")
def node_disconnect(
    name: str = typer.Argument(..., help="node-1, node-2, … (or cp-N)"),
    project: str = project_option(),
) -> None:
    """Cut a machine off its network (docker network disconnect): as a pulled cable, its Node turns
    NotReady after the grace period and its pods are evicted."""
    client = docker_client()
    try:
        c = find_container(client, project, name)
        network, _ = _segment_network(c, project)
        client.networks.get(network).disconnect(c)
    finally:
        client.close()
    console.print(f"{name} disconnected from {network}")


# run in the machine once it is connected again: Docker gave it a new interface (eth1, …); it gets
# the old name back (the kubelet's VXLAN device is bound to eth0), its default route and the route
# to the other segment via the router
RECONNECT_SCRIPT = """set -e
dev=$(ip -o -4 addr show | awk -v ip="$1" '$4 ~ "^"ip"/" {print $2}' | head -n1)
gw=$(ip route show default | awk '{print $3}' | head -n1)
if [ -n "$dev" ] && [ "$dev" != eth0 ]; then
    ip link set "$dev" down
    ip link set "$dev" name eth0
    ip link set eth0 up
    [ -z "$gw" ] || ip route replace default via "$gw" dev eth0
fi
[ -z "$2" ] || ip route replace $2
"""


@node_app.command("connect")
def node_connect(
    name: str = typer.Argument(..., help="a machine that `lab node disconnect` cut off"),
    project: str = project_option(),
    wait: bool = typer.Option(True, help="wait for the node to be Ready again"),
    timeout: float = typer.Option(180),
) -> None:
    """Connect a machine to its network again, with its address and routes (the cable back in)."""
    cfg = load_config(project)
    client = docker_client()
    try:
        c = find_container(client, project, name)
        network, ip = _segment_network(c, project)
        client.networks.get(network).connect(c, ipv4_address=ip)
        segment = str(c.labels.get("io.minik.lab.segment") or "").split(",")[0]
        routes = segment_routes(cfg, segment)
    finally:
        client.close()
    r = lab_exec(project, name, "sh", "-c", RECONNECT_SCRIPT, "reconnect", ip, routes)
    if r.returncode != 0:
        console.print(f"[red]restoring {name}'s interface and routes failed[/red]: {r.stderr.strip()}")
        raise typer.Exit(1)
    console.print(f"{name} connected to {network} again ({ip})")
    if wait:
        _wait_node_ready(cfg, name, timeout)


def _wait_node_ready(cfg: LabConfig, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with console.status(f"waiting for {name} to be Ready…"):
        while True:
            try:
                if node_conditions(cfg).get(name) == "True":
                    return
            except (httpx.HTTPError, OSError):
                pass
            if time.monotonic() > deadline:
                console.print(f"[red]{name} not Ready within {timeout:.0f}s[/red]")
                raise typer.Exit(1)
            time.sleep(1)


@lab_app.command("render")
def render(
    nodes: int = typer.Option(3, "--nodes", "-n", min=1, max=50),
    control_planes: int = typer.Option(1, "--control-planes", min=1, max=MAX_CONTROL_PLANES),
    context: str = typer.Option(".", help="the build context as the file should name it"),
    join_dir: str = typer.Option(
        "./join",
        help="where the join commands are (worker/command, control-plane/command), as the file should name it",
    ),
) -> None:
    """Print the compose file for N nodes (deploy/docker-compose.yml is the one for 3 and one control plane)."""
    cfg = LabConfig(nodes=nodes, control_planes=control_planes, endpoint_flag=minik_up_has_endpoint_flag())
    sys.stdout.write(render_compose(cfg, context, join_dir))


def _running_nodes(client: Any, project: str) -> Iterator[Any]:
    for c in lab_containers(client, project):
        if c.labels.get(ROLE_LABEL) == "node" and c.status == "running":
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
