"""``minik join`` and ``minik leave``: a worker node on another host (or beside a ``minik up``
cluster on this one), bootstrapped as kubeadm's ``join`` does it.

Join, in three steps kept apart so that ``--control-plane`` can be added beside them:

1. :func:`discover` -- an anonymous GET of ``kube-public/cluster-info`` over TLS *without*
   verifying the server (nothing is trusted yet, and the token is not sent), then
   :func:`apimachinery.bootstraptoken.verify_cluster_info`: the JWS for the token's ID proves the
   kubeconfig in it came from someone who knows the token, and the CA in it must match the pinned
   ``--discovery-token-ca-cert-hash``.  Any failure ends the join before the token is sent.
2. :func:`bootstrap_credentials` -- with the CA now trusted, the token as bearer credential: a new
   ECDSA key and a CertificateSigningRequest for ``CN=system:node:NAME, O=system:nodes`` to signer
   ``kubernetes.io/kube-apiserver-client-kubelet`` (csrapproving approves it: the token's group
   ``system:bootstrappers`` may create ``certificatesigningrequests/nodeclient``; csrsigning signs it);
   the certificate and key go to ``STATE/kubelet/pki/kubelet-client-current.pem`` and the kubelet's
   kubeconfig ``STATE/kubeconfigs/kubelet.conf`` names that file.  The token is not stored.
3. :func:`start_node` -- the supervisor of ``minik up`` in its worker role (``config.json`` has
   ``role: worker``): only the kubelet (which rotates its client certificate) and minik-proxy, against
   the remote API server; then wait for the Node to be Ready.

The proxy runs with the node's credentials: the Node authorizer lets every node read Services,
Endpoints, EndpointSlices and Nodes, which is what the proxy watches; NetworkPolicy enforcement
(which needs Namespaces, Pods and NetworkPolicies cluster-wide) is off on a joined node.  The
supervisor restarts the proxy when the kubelet has rotated the certificate, so that it reads the
new one.

Control plane (``--control-plane --certificate-key KEY``, kubeadm's ``join --control-plane``), after
discovery: ``kube-system/minik-config`` and ``kube-system/minik-certs`` read with the token, the
shared keys decrypted (a wrong key fails AES-GCM's tag: nothing is written) into the state
directory, every other certificate made locally (``ensure_credentials``); then the new etcd member
is added as a learner through a running member (``etcdEndpoints``), this host's etcd starts with
``--initial-cluster-state existing`` under the supervisor's ``control-plane`` role (etcd, API
server on its local etcd, controller manager, scheduler, kubelet, proxy), the learner is promoted
once in sync, and the member's client URL is added to ``minik-config``.  When anything fails
after ``member add``, the member is removed again and the state directory left as it was.

Leave: cordon and drain the node (``minik drain``'s code), stop its kubelet and proxy, delete the
Node object and remove what the node made on this host (as ``minik down``: the proxy's chains,
the pod containers, the CNI network) and its credentials.  A node may evict its own pods but not
delete Node objects: the deletion needs a user's kubeconfig (``--kubeconfig`` or ``$KUBECONFIG``);
without one, leave says what to run on the control plane.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import typer

from apimachinery.bootstraptoken import (
    CLUSTER_INFO_NAME,
    CLUSTER_INFO_NAMESPACE,
    TokenError,
    ca_pin,
    parse_token,
    verify_cluster_info,
)
from kubelet.certrotation import (
    csr_object,
    csr_pem,
    issued_certificate,
    key_pem,
    new_key,
    write_pair_atomically,
)

from .cluster import (
    console,
    default_state_dir,
    launch_supervisor,
    node_verdict,
    process_alive,
    read_json,
    supervisor_pid,
)
from .supervisor import DEFAULTS, Component, host_ip, kubeconfig_file, pod_network_flags, script, settings
from .uploadcerts import (
    CERTS_SECRET,
    CONFIG_MAP,
    NAMESPACE,
    CertsError,
    ClusterConfig,
    ConfigError,
    decrypt_secret,
    parse_certificate_key,
    parse_config,
)

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
WORKER_COMPONENTS = ("kubelet", "proxy")


class JoinError(Exception):
    """A join step failed; the message says which and why."""


def write_file_atomically(path: Path, data: bytes, mode: int) -> None:
    """``data`` into ``path`` through a temporary file beside it renamed over it: a reader (the
    kubelet, the proxy) sees the old file or the new one, never a truncated one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def client_pem(state: Path) -> Path:
    return state / "kubelet" / "pki" / "kubelet-client-current.pem"


def ca_file(state: Path) -> Path:
    return state / "pki" / "ca.crt"


# ---- 1. discovery ----------------------------------------------------------------------------------


def discover(server: str, token: str, pins: list[str], timeout: float = 10.0) -> dict[str, Any]:
    """kubeadm's token discovery: ``cluster-info`` read anonymously from ``server`` without trusting
    its certificate, then checked with the token's JWS and the CA pin.  Returns
    ``{"server", "ca_pem", "kubeconfig"}``; raises :class:`JoinError`.  The token is never sent."""
    try:
        parse_token(token)
    except TokenError as exc:
        raise JoinError(str(exc)) from exc
    url = f"{server.rstrip('/')}/api/v1/namespaces/{CLUSTER_INFO_NAMESPACE}/configmaps/{CLUSTER_INFO_NAME}"
    try:
        # insecure on purpose: the CA is not known yet; what comes back is checked below
        with httpx.Client(verify=False, timeout=timeout) as http:  # noqa: S501
            r = http.get(url)
    except httpx.HTTPError as exc:
        raise JoinError(f"cannot reach {server} for discovery: {exc}") from exc
    if r.status_code != 200:
        raise JoinError(
            f"reading {CLUSTER_INFO_NAMESPACE}/{CLUSTER_INFO_NAME} from {server}: HTTP {r.status_code}"
        )
    try:
        return verify_cluster_info(r.json(), token, pins)
    except (TokenError, ValueError) as exc:
        raise JoinError(f"discovery failed, the token was not sent: {exc}") from exc


# ---- 2. TLS bootstrap ------------------------------------------------------------------------------


def fetch_cluster_config(server: str, ca_pem: str, token: str) -> ClusterConfig | None:
    """``kube-system/minik-config`` read with the token (None when the cluster has none)."""
    with trusted_client(server, ca_pem, token) as http:
        try:
            r = http.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/{CONFIG_MAP}")
        except httpx.HTTPError as exc:
            raise JoinError(f"cannot reach {server}: {exc}") from exc
    if r.status_code in (403, 404):  # a cluster from before minik-config
        return None
    if r.status_code == 401:
        raise JoinError(f"the API server refused the bootstrap token (401 Unauthorized): {_message(r)}")
    if r.status_code != 200:
        raise JoinError(f"reading {NAMESPACE}/{CONFIG_MAP}: HTTP {r.status_code}: {_message(r)}")
    try:
        return parse_config(r.json())
    except (ConfigError, ValueError) as exc:
        raise JoinError(str(exc)) from exc


def fetch_shared_files(server: str, ca_pem: str, token: str, certificate_key: str) -> dict[str, bytes]:
    """``kube-system/minik-certs`` read with the token and decrypted with ``certificate_key``."""
    with trusted_client(server, ca_pem, token) as http:
        try:
            r = http.get(f"/api/v1/namespaces/{NAMESPACE}/secrets/{CERTS_SECRET}")
        except httpx.HTTPError as exc:
            raise JoinError(f"cannot reach {server}: {exc}") from exc
    if r.status_code == 404:
        raise JoinError(
            f"{NAMESPACE}/{CERTS_SECRET} not found: the upload expired (2 h) or was never made; run"
            " `minik token create --control-plane` on a control plane"
        )
    if r.status_code != 200:
        raise JoinError(f"reading {NAMESPACE}/{CERTS_SECRET}: HTTP {r.status_code}: {_message(r)}")
    try:
        return decrypt_secret(r.json(), certificate_key)
    except (CertsError, ValueError) as exc:
        raise JoinError(str(exc)) from exc


def trusted_client(server: str, ca_pem: str, token: str | None = None, timeout: float = 10.0) -> httpx.Client:
    ctx = ssl.create_default_context(cadata=ca_pem)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.rstrip("/"), verify=ctx, headers=headers, timeout=timeout)


def kubelet_kubeconfig(server: str, ca_path: Path, pem: Path, node: str) -> str:
    """The kubelet's kubeconfig: the CA and the one PEM file holding certificate and key (by path,
    so that a rotated certificate is read from there)."""
    import yaml

    user = f"system:node:{node}"
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "minik", "cluster": {"server": server, "certificate-authority": str(ca_path)}}],
        "users": [{"name": user, "user": {"client-certificate": str(pem), "client-key": str(pem)}}],
        "contexts": [{"name": "minik", "context": {"cluster": "minik", "user": user}}],
        "current-context": "minik",
    }
    return str(yaml.safe_dump(data, sort_keys=False))


def bootstrap_credentials(
    server: str,
    ca_pem: str,
    token: str,
    node: str,
    state: Path,
    *,
    expiration_seconds: int | None = None,
    timeout: float = 60.0,
) -> Path:
    """The kubelet's client certificate through a CSR sent with the bootstrap token; writes the CA,
    the certificate+key and the kubelet's kubeconfig into ``state``; returns the kubeconfig's path."""
    key = new_key()
    obj = csr_object(node, csr_pem(node, key), expiration_seconds)
    with trusted_client(server, ca_pem, token) as http:
        try:
            r = http.post(CSR_PATH, json=obj)
        except httpx.HTTPError as exc:
            raise JoinError(f"cannot reach {server}: {exc}") from exc
        if r.status_code == 401:
            raise JoinError(f"the API server refused the bootstrap token (401 Unauthorized): {_message(r)}")
        if r.status_code != 201:
            raise JoinError(f"creating the CertificateSigningRequest: HTTP {r.status_code}: {_message(r)}")
        name = r.json()["metadata"]["name"]
        deadline = time.monotonic() + timeout
        pem: bytes | None = None
        while pem is None:
            r = http.get(f"{CSR_PATH}/{name}")
            if r.status_code != 200:
                raise JoinError(
                    f"reading CertificateSigningRequest {name}: HTTP {r.status_code}: {_message(r)}"
                )
            try:
                pem = issued_certificate(r.json())
            except ValueError as exc:
                raise JoinError(str(exc)) from exc
            if pem is None:
                if time.monotonic() > deadline:
                    raise JoinError(
                        f"CertificateSigningRequest {name} was not approved and signed in {timeout:.0f}s"
                        " (does the controller manager run csrapproving and csrsigning?)"
                    )
                time.sleep(0.1)
    write_file_atomically(ca_file(state), ca_pem.encode(), 0o644)
    write_pair_atomically(client_pem(state), pem, key_pem(key))
    conf = kubeconfig_file(state, "kubelet")
    conf.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(conf.parent, 0o700)
    tmp = conf.with_name(conf.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(kubelet_kubeconfig(server, ca_file(state), client_pem(state), node))
    tmp.replace(conf)
    return conf


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json().get("message") or r.text[:200])
    except ValueError:
        return r.text[:200]


def node_client(state: Path, cfg: dict[str, Any], timeout: float = 5.0) -> httpx.Client:
    """An HTTPS client to the API server as the node (its current client certificate)."""
    ctx = ssl.create_default_context(cafile=str(ca_file(state)))
    pem = str(client_pem(state))
    ctx.load_cert_chain(pem, pem)
    return httpx.Client(base_url=cfg["server"], verify=ctx, timeout=timeout)


def cluster_dns_ip(state: Path, cfg: dict[str, Any]) -> str:
    """The ``kube-system/kube-dns`` ClusterIP, read as the node (nodes may read Services); ""."""
    try:
        with node_client(state, cfg) as api:
            r = api.get("/api/v1/namespaces/kube-system/services/kube-dns")
        return str((r.json().get("spec") or {}).get("clusterIP") or "") if r.status_code == 200 else ""
    except (httpx.HTTPError, OSError, ValueError):
        return ""


# ---- 3. the node's processes -----------------------------------------------------------------------


def worker_components(cfg: dict[str, Any], state: Path) -> list[Component]:
    """A joined node's supervised processes: the kubelet and (unless off) minik-proxy."""
    cfg = settings(cfg)
    node = cfg["node_name"]
    kubeconfig = ["--kubeconfig", str(kubeconfig_file(state, "kubelet"))]
    kubelet = [
        script("minik-kubelet"),
        *kubeconfig,
        *("--node-name", node, "--node-ip", cfg["advertise_address"], "--port", str(cfg["kubelet_port"])),
        *("--client-ca-file", str(ca_file(state)), "--healthz-port", "0"),
        *("--network-plugin", "cni", "--network-name", cfg["network_name"]),
        *("--cni-conf-dir", cfg["cni_conf_dir"], "--cni-cache-dir", cfg["cni_cache_dir"]),
        *("--cni-bridge", cfg["cni_bridge"], "--root-dir", str(state / "kubelet")),
        *("--cluster-domain", cfg["cluster_domain"], "--rotate-certificates"),
        "--rotate-server-certificates",  # a kubelet-serving CSR: the API server checks kubelets against the CA
    ]
    if cfg.get("dns_ip"):
        kubelet += ["--cluster-dns", cfg["dns_ip"]]
    if cfg.get("rotation_fraction") is not None:
        kubelet += ["--certificate-rotation-fraction", str(cfg["rotation_fraction"])]
    if cfg.get("certificate_expiration_seconds"):
        kubelet += ["--certificate-expiration-seconds", str(cfg["certificate_expiration_seconds"])]
    kubelet += pod_network_flags(cfg)  # config.json's pod_network_backend (docs/pod-network.md)
    out = [Component("kubelet", kubelet)]
    if cfg.get("proxy", True):
        proxy = [
            script("minik-proxy"),
            *kubeconfig,
            *("--node-name", node, "--iptables-chain-prefix", cfg["iptables_chain_prefix"]),
            *("--metrics-bind-address", f"127.0.0.1:{int(cfg['kubelet_port']) - 1}"),
        ]
        seen = {"mtime": _mtime(client_pem(state))}

        def rotated() -> bool:
            now = _mtime(client_pem(state))
            changed = now != seen["mtime"]
            seen["mtime"] = now
            return changed

        out.append(Component("proxy", proxy, restart_when=rotated))
    return out


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def node_pod_cidr(state: Path, cfg: dict[str, Any]) -> str:
    """The node's ``spec.podCIDR`` (the controller manager's IPAM gives it from the cluster's
    cluster CIDR), read as the node; "" when not known."""
    try:
        with node_client(state, cfg) as api:
            r = api.get(f"/api/v1/nodes/{cfg['node_name']}")
        return str((r.json().get("spec") or {}).get("podCIDR") or "") if r.status_code == 200 else ""
    except (httpx.HTTPError, OSError, ValueError):
        return ""


def cluster_cidr_problem(pod_cidr: str, cluster_cidr: str) -> str:
    """Why ``cluster_cidr`` (``--cluster-cidr``) cannot be the cluster's, given the node's pod CIDR; ""."""
    try:
        pod = ipaddress.ip_network(pod_cidr, strict=False)
        cluster = ipaddress.ip_network(cluster_cidr, strict=False)
    except ValueError:
        return ""
    if pod.version == cluster.version and pod.subnet_of(cluster):  # type: ignore[arg-type]
        return ""
    return (
        f"the node's podCIDR {pod} is not inside --cluster-cidr {cluster}: the cluster runs another"
        " cluster CIDR, so pods masquerade to other nodes and the overlay skips every peer;"
        " run `minik leave`, then join again with the control plane's --cluster-cidr"
    )


def start_node(state: Path, cfg: dict[str, Any]) -> None:
    """Write ``config.json`` and start the supervisor (detached) in its worker role."""
    launch_supervisor(state, cfg)


def node_ready(state: Path, cfg: dict[str, Any]) -> tuple[bool, str]:
    try:
        with node_client(state, cfg) as api:
            r = api.get(f"/api/v1/nodes/{cfg['node_name']}")
    except (httpx.HTTPError, OSError) as exc:
        return False, f"API server not answering ({type(exc).__name__})"
    if r.status_code == 404:
        return False, "not registered yet"
    if r.status_code != 200:
        return False, f"HTTP {r.status_code}"
    verdict = node_verdict(r.json())
    return verdict.ok, verdict.detail


# ---- a control plane -------------------------------------------------------------------------------

CONTROL_PLANE_FILES = ("pki", "kubeconfigs", "etcd", "kubelet", "logs", "encryption-config.yaml")
CONTROL_PLANE_STATE = ("config.json", "status.json")


def etcd_members_client(state: Path, endpoints: list[str], timeout: float = 10.0) -> Any:
    from .etcdmember import EtcdMembers

    pki = state / "pki"
    return EtcdMembers(
        endpoints,
        cafile=str(pki / "etcd" / "ca.crt"),
        certfile=str(pki / "etcd-healthcheck-client.crt"),
        keyfile=str(pki / "etcd-healthcheck-client.key"),
        timeout=timeout,
    )


def remove_control_plane_files(state: Path, created: bool, kept: Iterable[str] = ()) -> None:
    """Undo what a control-plane join wrote (a failed join, or ``minik leave``): the whole
    directory when the join made it, else its files but those in ``kept`` (there before the join)."""
    if created:
        shutil.rmtree(state, ignore_errors=True)
        return
    for name in CONTROL_PLANE_FILES:
        if name in kept:
            continue
        path = state / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    for name in CONTROL_PLANE_STATE:
        (state / name).unlink(missing_ok=True)


def admin_client(state: Path, server: str, timeout: float = 10.0) -> httpx.Client:
    """An HTTPS client to ``server`` with this control plane's admin certificate."""
    pki = state / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return httpx.Client(base_url=server, verify=ctx, timeout=timeout)


def update_etcd_endpoints(api: httpx.Client, url: str, present: bool) -> str:
    """Add (or remove) ``url`` in minik-config's etcdEndpoints; "" or what went wrong."""
    from .uploadcerts import config_map, with_etcd_endpoint

    path = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{CONFIG_MAP}"
    r: httpx.Response | None = None
    for _ in range(5):
        try:
            r = api.get(path)
            if r.status_code != 200:
                break
            current = r.json()
            new = config_map(with_etcd_endpoint(parse_config(current), url, present))
            if new["data"] == current.get("data"):
                return ""
            new["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
            r = api.put(path, json=new)
        except (httpx.HTTPError, ConfigError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
        if r.status_code == 200:
            return ""
        if r.status_code != 409:
            break
    return f"HTTP {r.status_code if r is not None else '?'}"


def same_ca(a: bytes | str, b: bytes | str) -> bool:
    """Whether two PEM CA certificates have the same public key (the key a pin names)."""
    try:
        return bool(ca_pin(a) == ca_pin(b))
    except ValueError:
        return False


def node_exists(state: Path, server: str, node: str) -> bool:
    """Whether Node ``node`` is there (True when that cannot be told: then it is never deleted)."""
    try:
        with admin_client(state, server) as api:
            return api.get(f"/api/v1/nodes/{node}").status_code != 404
    except (httpx.HTTPError, OSError):
        return True


def undo_registration(state: Path, server: str, node: str, etcd_url: str, node_existed: bool) -> None:
    """After a failed control-plane join: its etcd URL out of minik-config again and its Node deleted
    (unless the Node was there before), through the cluster's endpoint; reported, never raised."""
    try:
        with admin_client(state, server) as api:
            if etcd_url:
                trouble = update_etcd_endpoints(api, etcd_url, False)
                console.print(
                    f"  [yellow]{etcd_url} not removed from {NAMESPACE}/{CONFIG_MAP}: {trouble}[/yellow]"
                    if trouble
                    else f"  removed {etcd_url} from {NAMESPACE}/{CONFIG_MAP} again"
                )
            if not node_existed:
                r = api.delete(f"/api/v1/nodes/{node}")
                if r.status_code in (200, 202):
                    console.print(f"  deleted node/{node} again")
                elif r.status_code != 404:
                    console.print(f"  [yellow]node/{node} not deleted: HTTP {r.status_code}[/yellow]")
    except (httpx.HTTPError, OSError) as exc:
        console.print(f"  [yellow]could not undo the registration: {type(exc).__name__}: {exc}[/yellow]")


def join_control_plane(
    server: str,
    token: str,
    pins: list[str],
    certificate_key: str,
    base: dict[str, Any],
    state: Path,
    timeout: float,
) -> None:
    """kubeadm's ``join --control-plane`` (module docstring); typer.Exit(1) with the reason on failure."""
    from .cluster import stop_cluster, wait_components
    from .etcdmember import EtcdMemberError, initial_cluster
    from .supervisor import ensure_credentials, etcd_client_url, etcd_peer_url

    t0 = time.monotonic()
    node = base["node_name"]

    def fail(message: str) -> typer.Exit:
        console.print(f"[red]minik join --control-plane failed:[/red] {message}")
        return typer.Exit(1)

    try:
        parse_certificate_key(certificate_key)
    except CertsError as exc:
        console.print(str(exc))
        raise typer.Exit(2) from None
    leftovers = [n for n in (*CONTROL_PLANE_STATE, "pki", "etcd") if (state / n).exists()]
    if leftovers:
        raise fail(
            f"{state} holds a cluster's state already ({', '.join(leftovers)}): `minik delete --state-dir"
            f" {state}` or another --state-dir"
        )
    try:
        found = discover(server, token, pins)
        console.print(
            f"  [green]✓[/green] discovery: cluster CA matches the pin ({time.monotonic() - t0:.1f}s)"
        )
        config = fetch_cluster_config(server, found["ca_pem"], token)
        if config is None or not config.control_plane_endpoint:
            raise JoinError(
                "the cluster has no controlPlaneEndpoint, so it cannot take another control plane"
                " (kubeadm refuses the same): start its first control plane with"
                " `minik up --control-plane-endpoint HOST:PORT`"
            )
        if not config.etcd_endpoints:
            raise JoinError(f"{NAMESPACE}/{CONFIG_MAP} lists no etcdEndpoints")
        files = fetch_shared_files(server, found["ca_pem"], token, certificate_key)
        if not same_ca(files["ca.crt"], found["ca_pem"]):
            raise JoinError(
                f"{NAMESPACE}/minik-certs holds another CA than the one discovery pinned: it was uploaded"
                " from another cluster's state directory (nothing was written)"
            )
    except JoinError as exc:
        raise fail(str(exc)) from None
    console.print(f"  [green]✓[/green] control-plane keys decrypted ({time.monotonic() - t0:.1f}s)")
    from .uploadcerts import write_shared_files

    cfg = settings(
        {
            **base,
            "role": "control-plane",
            "server": server,
            "control_plane_endpoint": config.control_plane_endpoint,
            "cluster_cidr": base.get("cluster_cidr") or config.cluster_cidr,
            "service_cidr": config.service_cidr,
            "cluster_domain": config.cluster_domain,
            "pod_network_backend": base.get("pod_network_backend") or config.pod_network_backend,
            "etcd_name": node,
        }
    )
    created = not state.exists()
    # a reused state directory keeps what was there before the join, on failure and on leave
    cfg["kept_files"] = [n for n in CONTROL_PLANE_FILES if (state / n).exists()]
    member_id: int | None = None
    members = None
    launched = endpoint_added = False
    node_existed = True
    try:
        state.mkdir(parents=True, exist_ok=True)
        write_shared_files(state, files)
        ensure_credentials(cfg, state)
        peer = etcd_peer_url(cfg)
        members = etcd_members_client(state, list(config.etcd_endpoints))
        try:
            current = members.members()
        except EtcdMemberError as exc:
            raise JoinError(f"etcd unreachable at {', '.join(config.etcd_endpoints)}: {exc}") from exc
        clash = [m for m in current if m.name == node or peer in m.peer_urls]
        if clash:
            raise JoinError(f"etcd has a member named {node} or with peer URL {peer} already")
        try:
            member, after = members.add(peer, learner=True)
        except EtcdMemberError as exc:
            raise JoinError(f"etcd member add: {exc}") from exc
        member_id = member.id
        cfg["etcd_initial_cluster"] = initial_cluster(after, node, peer)
        console.print(
            f"  [green]✓[/green] etcd member {member.id:x} added as a learner ({time.monotonic() - t0:.1f}s)"
        )
        node_existed = node_exists(state, server, node)
        launched = True
        launch_supervisor(state, cfg)
        try:
            members.wait_promoted(member.id, timeout=timeout)
        except EtcdMemberError as exc:
            raise JoinError(f"etcd learner {member.id:x} not promoted: {exc}") from exc
        console.print(f"  [green]✓[/green] etcd member promoted to voter ({time.monotonic() - t0:.1f}s)")

        def on_apiserver(api: httpx.Client) -> None:
            nonlocal endpoint_added
            endpoint_added = True
            trouble = update_etcd_endpoints(api, etcd_client_url(cfg), True)
            if trouble:
                console.print(
                    f"[yellow]could not add this etcd to {NAMESPACE}/{CONFIG_MAP}: {trouble}[/yellow]"
                )

        wait_components(state, cfg, t0, timeout, on_apiserver)
    except BaseException as exc:
        if member_id is not None and members is not None:
            try:
                members.remove(member_id, timeout=30)
                console.print(f"  removed etcd member {member_id:x} again")
            except Exception as rm_exc:  # noqa: BLE001 - reported, the cleanup goes on
                console.print(f"[red]could not remove etcd member {member_id:x}: {rm_exc}[/red]")
        stop_cluster(state)
        if launched:
            undo_registration(
                state, server, node, etcd_client_url(cfg) if endpoint_added else "", node_existed
            )
        from .cluster import cleanup_host

        cleanup_host(state)
        remove_control_plane_files(state, created, cfg["kept_files"])
        if members is not None:
            members.close()
        if isinstance(exc, (JoinError, EtcdMemberError)):
            raise fail(str(exc)) from None
        if isinstance(exc, typer.Exit):
            raise fail("the control plane did not come up (its state was removed again)") from None
        if isinstance(exc, Exception):
            raise fail(f"{type(exc).__name__}: {exc} (its state was removed again)") from exc
        raise
    members.close()
    console.print(
        f"[green]control plane {node} joined[/green] in {time.monotonic() - t0:.1f}s: API server at"
        f" https://127.0.0.1:{cfg['api_port']}, etcd {etcd_client_url(cfg)} (state and logs {state})"
    )


def drain_or_exit(ctx: typer.Context, node: str, timeout: str, force: bool) -> None:
    """``minik leave``'s drain of ``node`` (DaemonSet pods stay, emptyDir data goes); when it fails,
    typer.Exit(1) unless ``force`` (then reported and the leave goes on)."""
    from .commands.drain import drain

    try:
        drain(
            ctx,
            node,
            ignore_daemonsets=True,
            delete_emptydir_data=True,
            force=True,
            grace_period=-1,
            timeout=timeout,
        )
        return
    except typer.Exit:
        why = ""
    except Exception as exc:  # noqa: BLE001 - reported; --force goes on
        why = f" ({exc})"
    if not force:
        console.print(f"[red]the drain failed[/red]{why}; `minik leave --force` leaves anyway")
        raise typer.Exit(1)
    console.print(f"[yellow]the drain failed{why}; leaving anyway (--force)[/yellow]")


def leave_control_plane(
    state: Path, cfg: dict[str, Any], drain_timeout: str, force: bool, ctx: typer.Context
) -> None:
    """Drain this control plane's node, take its etcd member out, stop it, delete its Node and
    remove its etcd endpoint from minik-config through the cluster's endpoint, and clean up."""
    from .cluster import cleanup_host, stop_cluster
    from .etcdmember import EtcdMemberError
    from .kube import GlobalOptions
    from .supervisor import etcd_client_url, etcd_url

    cfg = settings(cfg)
    node = cfg["node_name"]
    opts = ctx.ensure_object(GlobalOptions)
    opts.kubeconfig = str(kubeconfig_file(state, "admin"))
    opts._kube = None
    drain_or_exit(ctx, node, drain_timeout, force)
    own = etcd_client_url(cfg)
    endpoints = [e for e in (cfg.get("etcd_endpoints") or []) if e != own] + [etcd_url(cfg)]
    try:
        with admin_client(state, f"https://127.0.0.1:{cfg['api_port']}") as api:
            r = api.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/{CONFIG_MAP}")
            if r.status_code == 200:
                endpoints = [e for e in parse_config(r.json()).etcd_endpoints if e != own] + endpoints
            update_etcd_endpoints(api, own, False)
    except (httpx.HTTPError, OSError, ConfigError, ValueError) as exc:
        console.print(f"[yellow]minik-config not updated: {exc}[/yellow]")
    removed = ""
    with etcd_members_client(state, list(dict.fromkeys(endpoints))) as members:
        try:
            mine = members.find(name=node)
            if mine is not None:
                members.remove(mine.id)
                removed = f"{mine.id:x}"
        except EtcdMemberError as exc:
            if not force:
                console.print(
                    f"[red]etcd member remove failed:[/red] {exc}; `minik leave --force` leaves anyway"
                )
                raise typer.Exit(1) from None
            console.print(f"[yellow]etcd member remove failed: {exc}[/yellow]")
    stop_cluster(state)
    deleted = "no cluster endpoint"
    try:
        with admin_client(state, str(cfg.get("server") or "")) as api:
            r = api.delete(f"/api/v1/nodes/{node}")
            deleted = "" if r.status_code in (200, 202, 404) else f"HTTP {r.status_code}"
    except (httpx.HTTPError, OSError) as exc:
        deleted = f"{type(exc).__name__}: {exc}"
    for line in cleanup_host(state):
        console.print(f"  removed {line}")
    remove_control_plane_files(state, created=False, kept=cfg.get("kept_files") or ())
    console.print(
        f"control plane {node} left the cluster: etcd member {removed or '(none found)'} removed, node/{node} "
        + ("deleted" if not deleted else f"not deleted ({deleted}): run `minik delete node {node}`")
    )


# ---- commands --------------------------------------------------------------------------------------


def join(
    server: str = typer.Argument(..., help="the API server, https://HOST:PORT"),
    token: str = typer.Option(..., "--token", help="the bootstrap token ID.SECRET"),
    ca_hashes: list[str] = typer.Option(
        [], "--discovery-token-ca-cert-hash", help="sha256:HEX of the cluster CA's public key (repeatable)"
    ),
    node_name: str = typer.Option("", help="this node's name (default: the host name)"),
    state_dir: Path = typer.Option(
        None, help="where state and logs live (default $MINIK_STATE_DIR or ~/.minik)"
    ),
    node_ip: str = typer.Option(
        "",
        "--node-ip",
        "--advertise-address",
        help="the node's InternalIP, and a control plane's API server and etcd address (default: this"
        " host's outbound address)",
    ),
    kubelet_port: int = typer.Option(10250, help="the kubelet's HTTPS port"),
    network_name: str = typer.Option("minik-pods", help="the CNI network's name (conflist, bridge name)"),
    cni_conf_dir: str = typer.Option("/etc/cni/net.d", help="where the kubelet writes its CNI conflist"),
    cni_cache_dir: str = typer.Option("/var/lib/cni", help="the CNI results cache and host-local's data"),
    cni_bridge: str = typer.Option("", help="the pods' bridge device (default derived from --network-name)"),
    proxy: bool = typer.Option(True, "--proxy/--no-proxy", help="run minik-proxy on this node"),
    iptables_chain_prefix: str = typer.Option("MINIK", help="prefix of the proxy's iptables chains"),
    certificate_rotation_fraction: float = typer.Option(
        None, help="renew the client certificate after this share of its life (default jittered 0.7-0.9)"
    ),
    certificate_expiration_seconds: int = typer.Option(
        None, help="spec.expirationSeconds of the node's CSRs (default: the signer's duration)"
    ),
    pod_network_backend: str = typer.Option(
        "",
        help="how pods reach other nodes' pods: vxlan (an overlay), host-gw (routes, one L2 segment) or"
        " none (one node); every node of a cluster needs the same (docs/pod-network.md); default: the"
        " cluster's (kube-system/minik-config), else none",
    ),
    cluster_cidr: str = typer.Option(
        "",
        "--cluster-cidr",
        help="the cluster's pod network, as `minik up --cluster-cidr` gave it: the overlay's peers and"
        " the pods' unmasqueraded destinations (checked against the podCIDR the node is given);"
        " default: the cluster's (kube-system/minik-config), else 10.244.0.0/16",
    ),
    control_plane: bool = typer.Option(
        False, "--control-plane", help="join as another control plane (etcd member, API server, controllers)"
    ),
    certificate_key: str = typer.Option(
        "",
        "--certificate-key",
        help="with --control-plane: the key `minik token create --control-plane` printed",
    ),
    api_port: int = typer.Option(
        DEFAULTS["api_port"], help="with --control-plane: the API server's secure port"
    ),
    etcd_port: int = typer.Option(
        DEFAULTS["etcd_port"], help="with --control-plane: etcd's client port (the peer port is the next one)"
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait for the Node to be Ready"),
    timeout: float = typer.Option(120, help="seconds to wait for the Node to be Ready"),
) -> None:
    """Join this host to a cluster as a worker node, with a bootstrap token and a pinned CA.

    Checks the cluster CA against --discovery-token-ca-cert-hash before the
    token is sent anywhere, gets the kubelet's client certificate through a
    CertificateSigningRequest, then runs the node's kubelet and proxy
    supervised, as `minik up` does. `minik token create --print-join-command`
    on the control plane prints the command.

    Examples:

      sudo minik join https://10.0.0.1:6443 --token abcdef.0123456789abcdef
      --discovery-token-ca-cert-hash sha256:...
    """
    t0 = time.monotonic()
    state = (state_dir or default_state_dir()).absolute()
    node = (node_name or os.uname().nodename).lower()
    if supervisor_pid(state) is not None:
        console.print(
            f"[red]a cluster or node already runs from {state}[/red] (`minik status --state-dir {state}`)"
        )
        raise typer.Exit(1)
    bridge = cni_bridge
    if bridge and len(bridge) > 15:
        console.print(f"--cni-bridge {bridge!r}: a device name has 15 characters at most")
        raise typer.Exit(2)
    if pod_network_backend not in ("", "none", "vxlan", "host-gw"):
        console.print(f"--pod-network-backend {pod_network_backend!r}: one of none, vxlan, host-gw")
        raise typer.Exit(2)
    cidr: Any = None
    if cluster_cidr:
        try:
            cidr = ipaddress.ip_network(cluster_cidr, strict=False)
        except ValueError:
            cidr = None
        if not isinstance(cidr, ipaddress.IPv4Network):
            console.print(f"--cluster-cidr {cluster_cidr!r}: an IPv4 network such as 10.244.0.0/16")
            raise typer.Exit(2)
    if certificate_key and not control_plane:
        console.print("--certificate-key is for --control-plane")
        raise typer.Exit(2)
    server = server.rstrip("/")
    if control_plane:
        if not certificate_key:
            console.print(
                "--control-plane needs --certificate-key (`minik token create --control-plane` prints it)"
            )
            raise typer.Exit(2)
        base: dict[str, Any] = {
            "node_name": node,
            "advertise_address": node_ip or host_ip(),
            "api_port": api_port,
            "etcd_port": etcd_port,
            "etcd_peer_port": etcd_port + 1,
            "kubelet_port": kubelet_port,
            "network_name": network_name,
            "cni_conf_dir": str(Path(cni_conf_dir).absolute()),
            "cni_cache_dir": str(Path(cni_cache_dir).absolute()),
            "cni_bridge": bridge,
            "iptables_chain_prefix": iptables_chain_prefix,
            "cluster_cidr": str(cidr) if cidr else "",
            "pod_network_backend": pod_network_backend,
        }
        join_control_plane(server, token, ca_hashes, certificate_key, base, state, timeout)
        return
    try:
        found = discover(server, token, ca_hashes)
        console.print(
            f"  [green]✓[/green] discovery: cluster CA matches the pin ({time.monotonic() - t0:.1f}s)"
        )
        if cidr is None or not pod_network_backend:
            known = fetch_cluster_config(server, found["ca_pem"], token)
            if cidr is None:
                cidr = ipaddress.ip_network(known.cluster_cidr if known else DEFAULTS["cluster_cidr"])
            if not pod_network_backend:
                pod_network_backend = known.pod_network_backend if known else "none"
        state.mkdir(parents=True, exist_ok=True)
        bootstrap_credentials(
            server, found["ca_pem"], token, node, state, expiration_seconds=certificate_expiration_seconds
        )
    except JoinError as exc:
        console.print(f"[red]minik join failed:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"  [green]✓[/green] TLS bootstrap: client certificate for system:node:{node} ({time.monotonic() - t0:.1f}s)"
    )
    cfg: dict[str, Any] = {
        "role": "worker",
        "server": server,
        "node_name": node,
        "advertise_address": node_ip or host_ip(),
        "kubelet_port": kubelet_port,
        "network_name": network_name,
        "cni_conf_dir": str(Path(cni_conf_dir).absolute()),
        "cni_cache_dir": str(Path(cni_cache_dir).absolute()),
        "cni_bridge": bridge,
        "proxy": proxy,
        "iptables_chain_prefix": iptables_chain_prefix,
        "rotation_fraction": certificate_rotation_fraction,
        "certificate_expiration_seconds": certificate_expiration_seconds,
        "pod_network_backend": pod_network_backend,
        "cluster_cidr": str(cidr),
    }
    if node_ready(state, cfg)[0]:  # as kubeadm: a second host must not take over a live node
        for sub in ("kubeconfigs", "pki", "kubelet/pki"):
            shutil.rmtree(state / sub, ignore_errors=True)
        console.print(
            f"[red]minik join failed:[/red] a Node named {node} already exists and is Ready"
            " (choose another --node-name, or run `minik leave` on that node first)"
        )
        raise typer.Exit(1)
    cfg["dns_ip"] = cluster_dns_ip(state, cfg)
    cfg = settings(cfg)
    start_node(state, cfg)
    if not wait:
        console.print(f"node {node} joined; its kubelet and proxy start (`minik status --state-dir {state}`)")
        return
    deadline = time.monotonic() + timeout
    detail = ""
    while time.monotonic() < deadline:
        ok, detail = node_ready(state, cfg)
        if ok:
            console.print(
                f"[green]node {node} joined[/green] and is Ready in {time.monotonic() - t0:.1f}s "
                f"(API server {server}; state and logs {state})"
            )
            problem = cluster_cidr_problem(node_pod_cidr(state, cfg), cfg["cluster_cidr"])
            if problem:
                console.print(f"[yellow]{problem}[/yellow]")
            return
        time.sleep(0.2)
    console.print(
        f"[red]node {node} did not become Ready in {timeout:.0f}s[/red]: {detail} (logs: {state}/logs)"
    )
    raise typer.Exit(1)


def leave(
    ctx: typer.Context,
    state_dir: Path = typer.Option(None, help="the joined node's state directory (default ~/.minik)"),
    force: bool = typer.Option(False, "--force", help="go on when the drain fails"),
    drain_timeout: str = typer.Option("120s", help="how long the drain may take"),
) -> None:
    """Drain this joined node, delete its Node object, stop its kubelet and proxy and clean the host.

    The drain uses the node's own credentials unless a kubeconfig is given
    (--kubeconfig or $KUBECONFIG); deleting the Node needs a user allowed to
    delete nodes: without one, the command to run on the control plane is
    printed.
    """
    from .cluster import cleanup_host, stop_cluster
    from .kube import GlobalOptions

    state = (state_dir or default_state_dir()).absolute()
    cfg = read_json(state / "config.json")
    if cfg.get("role") == "control-plane":
        leave_control_plane(state, cfg, drain_timeout, force, ctx)
        return
    if cfg.get("role") != "worker":
        console.print(f"[red]no joined node in {state}[/red] (`minik down` stops a `minik up` cluster)")
        raise typer.Exit(1)
    cfg = settings(cfg)
    node = cfg["node_name"]
    opts = ctx.ensure_object(GlobalOptions)
    user_kubeconfig = opts.kubeconfig or os.environ.get("KUBECONFIG") or ""
    own = kubeconfig_file(state, "kubelet")
    opts.kubeconfig = user_kubeconfig or str(own)
    opts._kube = None
    if own.exists() or user_kubeconfig:
        drain_or_exit(ctx, node, drain_timeout, force)
    stop_cluster(state)
    deleted = _delete_node(opts.kubeconfig, node) if user_kubeconfig else "no user kubeconfig"
    for line in cleanup_host(state):
        console.print(f"  removed {line}")
    for sub in ("kubeconfigs", "pki", "kubelet/pki"):
        shutil.rmtree(state / sub, ignore_errors=True)
    (state / "config.json").unlink(missing_ok=True)
    if deleted == "":
        console.print(f"node/{node} deleted; this host left the cluster")
    else:
        console.print(
            f"this host left the cluster; node/{node} was not deleted ({deleted}): "
            f"run `minik delete node {node}` as an administrator"
        )


def _delete_node(kubeconfig: str, node: str) -> str:
    """Delete the Node with ``kubeconfig``'s user: "" when done (or already gone), else why not."""
    from apimachinery import errors
    from apimachinery.client import SyncClient
    from apimachinery.kubeconfig import load_config
    from apimachinery.resources import kind_info

    try:
        with SyncClient(load_config(kubeconfig)) as client:
            client.delete(kind_info("v1", "Node"), node)
    except errors.NotFound:
        return ""
    except errors.StatusError as exc:
        return str(exc)
    except (httpx.HTTPError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def worker_status(state: Path, cfg: dict[str, Any]) -> bool:
    """``minik status`` of a joined node: its kubelet (the Node's Ready condition, read as the node)
    and proxy (its nat chain); True when every component is healthy."""
    from rich.table import Table

    cfg = settings(cfg)
    status = read_json(state / "status.json")
    chain = f"{cfg['iptables_chain_prefix']}-SERVICES"

    def kubelet() -> tuple[bool, str]:
        return node_ready(state, cfg)

    def proxy() -> tuple[bool, str]:
        rc = subprocess.run(
            ["iptables", "-w", "-t", "nat", "-S", chain], capture_output=True, timeout=5
        ).returncode
        return rc == 0, f"nat chain {chain}" + ("" if rc == 0 else " not made yet")

    checks = {"kubelet": kubelet, "proxy": proxy}
    names = [n for n in WORKER_COMPONENTS if n in status or n == "kubelet"]
    table = Table(box=None, pad_edge=False)
    for col in ("COMPONENT", "PID", "HEALTH", "RESTARTS", "DETAIL"):
        table.add_column(col)
    healthy = True
    with ThreadPoolExecutor(2) as pool:
        futures = {
            n: pool.submit(checks[n]) for n in names if process_alive((status.get(n) or {}).get("pid"))
        }
        for name in names:
            info = status.get(name) or {}
            ok, detail = (
                futures[name].result() if name in futures else (False, info.get("phase") or "not started")
            )
            healthy = healthy and ok
            table.add_row(
                name,
                str(info.get("pid") or "-"),
                "[green]healthy[/green]" if ok else "[red]unhealthy[/red]",
                str(info.get("restarts", 0)),
                detail,
            )
    pem = client_pem(state)
    try:
        from kubelet.certrotation import load_certificate

        until = load_certificate(pem).not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OSError, ValueError):
        until = "unreadable"
    console.print(
        f"worker node {cfg['node_name']} (joined), supervisor pid {supervisor_pid(state)}, state {state}, "
        f"API server {cfg['server']}, client certificate valid until {until}"
    )
    console.print(table)
    return healthy
