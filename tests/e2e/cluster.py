"""A whole minik cluster on this machine, as separate processes, for end-to-end tests.

``LocalCluster`` runs etcd, the API server, the controller manager, the scheduler, minik-dns,
one kubelet per node and one minik-proxy, each with unique ports, node names, pod CIDRs, Docker
network names and an iptables chain prefix of its own, so it never clashes with another cluster
(``minik up`` or another test) on the same machine.  Use it through the module-scoped fixture::

    from tests.e2e.cluster import LocalCluster, local_cluster  # noqa: F401  (re-exported fixture)

    def test_x(local_cluster: LocalCluster) -> None:
        local_cluster.api.post(...)

or build one with other options in a fixture of your own (``LocalCluster(nodes=1)``, then
``start()`` and, in a ``finally``, ``stop()``).

Layout of what it builds:

* node ``e2e-TAG-nI`` (I = 1..nodes): a kubelet with pod CIDR ``10.2xx.y.0/24`` on the Docker
  network ``minik-e2e-TAG-nI``; the node's InternalIP is that network's gateway, so NodePorts and
  LoadBalancer ingress addresses are host addresses no other cluster uses;
* one minik-proxy for the whole host (the nodes share one kernel: one proxy serves them all, as
  one kube-proxy serves one machine); it also joins the nodes' pod networks (DOCKER-USER rules);
* a service CIDR /24 of its own; ``kube-system/kube-dns`` at its 10th address (UDP and TCP 53),
  fronting minik-dns (listening on a free port of the host) through the proxy; the kubelets give
  pods that address as their nameserver;
* teardown (also after a failed start): pod containers and networks by label, the proxy's chains
  with ``minik-proxy --cleanup`` (checked gone), then every process.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apiserver.testing import BIN, APIServerProcess, EtcdProcess, free_port

NODE_LABEL = "io.minik.node"


def wait_for(
    fn: Callable[[], Any], timeout: float = 60, what: str = "condition", interval: float = 0.2
) -> Any:
    """Poll ``fn`` until it returns something truthy; exceptions count as not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - polled until the deadline
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last!r}")


def _used_networks() -> list[ipaddress.IPv4Network]:
    import docker

    used: list[ipaddress.IPv4Network] = []
    client = docker.from_env()
    try:
        for n in client.networks.list():
            for cfg in (n.attrs.get("IPAM") or {}).get("Config") or []:
                if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                    used.append(ipaddress.IPv4Network(cfg["Subnet"], strict=False))
    finally:
        client.close()
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for line in routes.splitlines():
        first = line.split()[0] if line.split() else ""
        if "/" in first:
            used.append(ipaddress.IPv4Network(first, strict=False))
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    for word in rules.split():
        if word.startswith("10.") and "/" in word:
            try:
                used.append(ipaddress.IPv4Network(word, strict=False))
            except ValueError:
                pass
    return used


def free_subnets(n: int, avoid: list[ipaddress.IPv4Network] | None = None) -> list[str]:
    """``n`` /24s in 10.200-250.x.0 that no Docker network, route or iptables rule uses."""
    used = _used_networks() + list(avoid or [])
    out: list[str] = []
    for _ in range(500):
        cand = ipaddress.IPv4Network(f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24")
        if any(cand.overlaps(u) for u in used):
            continue
        used.append(cand)
        out.append(str(cand))
        if len(out) == n:
            return out
    raise RuntimeError("no free /24 for the test cluster")


def free_udp_tcp_port() -> int:
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("0.0.0.0", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


class Proc:
    """One component process with its log file."""

    def __init__(self, name: str, argv: list[str], logdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = logdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        log.write(f"--- {' '.join(self.argv)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, tail: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Node:
    def __init__(self, cluster: LocalCluster, index: int, subnet: str) -> None:
        self.name = f"e2e-{cluster.tag}-n{index}"
        self.network = f"minik-e2e-{cluster.tag}-n{index}"
        self.pod_cidr = subnet
        self.ip = str(next(ipaddress.ip_network(subnet).hosts()))  # the bridge gateway: a host address
        self.port = free_port()
        self.root = cluster.workdir / self.name
        self.kubelet = Proc(
            f"kubelet-{self.name}",
            [
                str(BIN / "minik-kubelet"),
                "--api-server",
                cluster.api_url,
                "--node-name",
                self.name,
                "--node-ip",
                self.ip,
                "--address",
                "0.0.0.0",
                "--port",
                str(self.port),
                "--pod-cidr",
                self.pod_cidr,
                "--network-name",
                self.network,
                "--root-dir",
                str(self.root),
                "--cluster-dns",
                cluster.dns_ip,
            ],
            cluster.workdir,
        )


class LocalCluster:
    def __init__(self, nodes: int = 2) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.workdir = Path(tempfile.mkdtemp(prefix=f"minik-e2e-{self.tag}-"))
        *pod_cidrs, service_cidr = free_subnets(nodes + 1)
        self.service_cidr = service_cidr
        self.dns_ip = str(ipaddress.ip_network(service_cidr).network_address + 10)
        self.prefix = "MKE" + self.tag[:5].upper()
        self.dns_port = free_udp_tcp_port()
        self.etcd = EtcdProcess()
        self.apiserver = APIServerProcess(self.etcd.url)
        self.api_url = self.apiserver.url
        self.nodes = [Node(self, i + 1, cidr) for i, cidr in enumerate(pod_cidrs)]
        py = sys.executable
        self.controller_manager = Proc(
            "controller-manager",
            [str(BIN / "minik-controller-manager"), "--api-server", self.api_url, "--leader-elect", "false"],
            self.workdir,
        )
        self.scheduler = Proc(
            "scheduler",
            [str(BIN / "minik-scheduler"), "--api-server", self.api_url, "--leader-elect", "false"],
            self.workdir,
        )
        self.dns = Proc(
            "dns",
            [
                py,
                "-m",
                "proxy.dns",
                "--api-server",
                self.api_url,
                "--bind",
                "0.0.0.0",
                "--port",
                str(self.dns_port),
            ],
            self.workdir,
        )
        self.proxy = Proc(
            "proxy",
            [
                py,
                "-m",
                "proxy.command",
                "--api-server",
                self.api_url,
                "--node-name",
                self.nodes[0].name,
                "--iptables-chain-prefix",
                self.prefix,
                "--nodeport-addresses",
                ",".join(f"{n.ip}/32" for n in self.nodes),
                # the other nodes share this host: their addresses get NodePorts from this proxy
                *[arg for n in self.nodes[1:] for arg in ("--node-ip", n.ip)],
            ],
            self.workdir,
        )
        self.api: httpx.Client | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def procs(self) -> list[Proc]:
        return [self.controller_manager, self.scheduler, self.dns, self.proxy] + [
            n.kubelet for n in self.nodes
        ]

    def start(self) -> None:
        self.etcd.start()
        self.apiserver.start(extra=["--service-cluster-ip-range", self.service_cidr])
        self.api = httpx.Client(base_url=self.api_url, timeout=30)
        for p in (self.controller_manager, self.scheduler, self.dns, self.proxy):
            p.start()
        self._create_kube_dns()
        # Node objects with their podCIDR first, as a Node IPAM controller would give them (the
        # kubelet adopts an existing Node); the proxy joins the pod networks from these
        for n in self.nodes:
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": n.name},
                "spec": {"podCIDR": n.pod_cidr, "podCIDRs": [n.pod_cidr]},
            }
            r = self.api.post("/api/v1/nodes", json=node)
            assert r.status_code == 201, r.text
        # no pod may query the DNS VIP before the proxy's rule for it exists
        self.wait_rule(self.dns_ip, 53, "udp")
        for n in self.nodes:
            n.kubelet.start()
        for n in self.nodes:
            wait_for(
                functools.partial(self.node_ready, n.name), 90, f"node {n.name} Ready\n{n.kubelet.log()}"
            )

    def _create_kube_dns(self) -> None:
        assert self.api is not None
        ports = [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": self.dns_port},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": self.dns_port},
        ]
        svc = {
            "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns"}},
            "spec": {"clusterIP": self.dns_ip, "ports": ports},
        }
        r = self.api.post("/api/v1/namespaces/kube-system/services", json=svc)
        assert r.status_code == 201, r.text
        # minik-dns is a host process: its endpoint is the first node's address
        eps = {
            "metadata": {"name": "kube-dns"},
            "subsets": [
                {
                    "addresses": [{"ip": self.nodes[0].ip}],
                    "ports": [
                        {"name": "dns", "port": self.dns_port, "protocol": "UDP"},
                        {"name": "dns-tcp", "port": self.dns_port, "protocol": "TCP"},
                    ],
                }
            ],
        }
        r = self.api.post("/api/v1/namespaces/kube-system/endpoints", json=eps)
        assert r.status_code == 201, r.text

    def node_ready(self, name: str) -> bool:
        assert self.api is not None
        node = self.api.get(f"/api/v1/nodes/{name}").json()
        conds = (node.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

    def stop(self) -> None:
        """Remove everything; safe after a partial start.  Raises if proxy chains were left."""
        import docker

        for n in self.nodes:
            n.kubelet.stop(signal.SIGKILL)
        client = docker.from_env()
        try:
            for n in self.nodes:
                for c in client.containers.list(all=True, filters={"label": f"{NODE_LABEL}={n.name}"}):
                    try:
                        c.remove(force=True)
                    except docker.errors.NotFound:
                        pass
                for v in client.volumes.list(filters={"label": f"{NODE_LABEL}={n.name}"}):
                    try:
                        v.remove(force=True)
                    except docker.errors.APIError:
                        pass
                try:
                    client.networks.get(n.network).remove()
                except docker.errors.NotFound:
                    pass
        finally:
            client.close()
        self.proxy.stop()
        subprocess.run(
            [sys.executable, "-m", "proxy.command", "--cleanup", "--iptables-chain-prefix", self.prefix],
            capture_output=True,
            timeout=60,
        )
        for p in (self.dns, self.scheduler, self.controller_manager):
            p.stop()
        if self.api is not None:
            self.api.close()
        self.apiserver.cleanup()
        self.etcd.cleanup()
        left = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        if os.environ.get("MINIK_TEST_KEEP_LOGS"):
            print(f"cluster logs kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        assert self.prefix not in left, f"iptables chains {self.prefix}-* left behind"

    def logs(self) -> str:
        return "\n".join(f"===== {p.name}\n{p.log(3000)}" for p in self.procs)

    # -- helpers --------------------------------------------------------------------------------------
    def wait_rule(self, vip: str, port: int, proto: str = "tcp", timeout: float = 30) -> None:
        """Until the proxy has a rule (REDIRECT or REJECT) for ``vip:port``: before it, traffic to
        the VIP would leave by the default route."""

        def present() -> bool:
            rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
            return any(
                f"-d {vip}/32 -p {proto}" in line and f"--dport {port} " in line and self.prefix in line
                for line in rules.splitlines()
            )

        wait_for(present, timeout, f"a proxy rule for {vip}:{port}/{proto}\n{self.proxy.log()}")

    def wait_redirect(self, vip: str, port: int, proto: str = "tcp", timeout: float = 30) -> None:
        """Until the VIP is redirected to the proxy (the Service has ready endpoints)."""

        def present() -> bool:
            rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
            return any(
                f"-d {vip}/32 -p {proto}" in line and f"--dport {port} -j REDIRECT" in line
                for line in rules.splitlines()
            )

        wait_for(present, timeout, f"a REDIRECT for {vip}:{port}/{proto}\n{self.proxy.log()}")

    def apply(self, objs: list[dict[str, Any]]) -> None:
        """Create objects (namespaces, Deployments, Services, Pods) through the API."""
        from apimachinery.resources import by_kind

        assert self.api is not None
        for obj in objs:
            info = by_kind(obj["apiVersion"], obj["kind"])
            assert info is not None, obj["kind"]
            prefix = "/api/v1" if info.group == "" else f"/apis/{info.group}/{info.version}"
            ns = (obj.get("metadata") or {}).get("namespace") or "default"
            path = f"{prefix}/namespaces/{ns}/{info.plural}" if info.namespaced else f"{prefix}/{info.plural}"
            r = self.api.post(path, json=obj)
            assert r.status_code == 201, f"{obj['kind']} {obj['metadata'].get('name')}: {r.text}"

    def get(self, path: str) -> dict[str, Any]:
        assert self.api is not None
        r = self.api.get(path)
        r.raise_for_status()
        return dict(r.json())

    def pods(self, ns: str, selector: str = "") -> list[dict[str, Any]]:
        items = self.get(f"/api/v1/namespaces/{ns}/pods?labelSelector={selector}")["items"]
        return list(items)

    def wait_running(
        self, ns: str, selector: str, count: int, ready: bool = True, timeout: float = 90
    ) -> list[dict[str, Any]]:
        def ok() -> list[dict[str, Any]] | None:
            pods = [
                p
                for p in self.pods(ns, selector)
                if (p.get("status") or {}).get("phase") == "Running"
                and not p["metadata"].get("deletionTimestamp")
                and (
                    not ready
                    or any(
                        c.get("type") == "Ready" and c.get("status") == "True"
                        for c in p["status"].get("conditions") or []
                    )
                )
            ]
            return pods if len(pods) == count else None

        return list(wait_for(ok, timeout, f"{count} running pods {ns}/{selector}\n{self.logs()}"))

    def container(self, ns: str, pod: str, container: str | None = None) -> Any:
        """The Docker container of a pod's (first or named) app container."""
        import docker

        client = docker.from_env()
        filters = {
            "label": [
                f"io.kubernetes.pod.namespace={ns}",
                f"io.kubernetes.pod.name={pod}",
                "io.kubernetes.docker.type=container",
            ]
        }
        found = [
            c
            for c in client.containers.list(filters=filters)
            if container is None or c.labels.get("io.kubernetes.container.name") == container
        ]
        assert found, f"no container for pod {ns}/{pod}"
        return found[0]

    def exec(self, ns: str, pod: str, cmd: list[str], container: str | None = None) -> tuple[int, str]:
        code, out = self.container(ns, pod, container).exec_run(cmd)
        return code, out.decode(errors="replace")


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[LocalCluster]:
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        pytest.skip("needs root and iptables")
    pytest.importorskip("docker")
    from tests.images import ensure_busybox_image

    ensure_busybox_image()
    cluster = LocalCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
