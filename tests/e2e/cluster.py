"""A whole minik cluster on this machine, as separate processes, for end-to-end tests.

``LocalCluster`` runs etcd, the API server, the controller manager, the scheduler, minik-dns,
one kubelet per node and one minik-proxy, each with unique ports, node names, pod CIDRs, CNI
networks (name, bridge, conflist and results-cache directories) and an iptables chain prefix of its
own, so it never clashes with another cluster (``minik up`` or another test) on the same machine.  Use it through the module-scoped fixture::

    from tests.e2e.cluster import LocalCluster, local_cluster  # noqa: F401  (re-exported fixture)

    def test_x(local_cluster: LocalCluster) -> None:
        local_cluster.api.post(...)

or build one with other options in a fixture of your own (``LocalCluster(nodes=1)``, then
``start()`` and, in a ``finally``, ``stop()``).

Layout of what it builds:

* node ``e2e-TAG-nI`` (I = 1..nodes): a kubelet with pod CIDR ``10.2xx.y.0/24`` (its Node's
  ``spec.podCIDR``, made before the kubelet starts, as node IPAM would) on the CNI network
  ``minik-e2e-TAG-nI`` (bridge ``mk`` + a hash of that name; conflist and results cache in the
  kubelet's directory, see testkit's ``KubeletProcess``); the node's InternalIP is the bridge's gateway address, made before
  the kubelet starts (the bridge plugin adopts the bridge), so NodePorts and LoadBalancer ingress
  addresses are host addresses no other cluster uses;
* one minik-proxy for the whole host (the nodes share one kernel: one proxy serves them all, as
  one kube-proxy serves one machine), in its default iptables mode unless ``proxy_mode`` says
  ``userspace``; it also joins the nodes' pod networks (DOCKER-USER rules);
* a service CIDR /24 of its own; ``kube-system/kube-dns`` at its 10th address (UDP and TCP 53),
  fronting minik-dns (listening on a free port of the host) through the proxy; the kubelets give
  pods that address as their nameserver;
* teardown (also after a failed start): pod containers by label, then each node's CNI network
  (a DEL for every attachment left, the conflist, bridge, host-local data and cached results, as
  ``minik down`` does), the proxy's chains with ``minik-proxy --cleanup`` (checked gone), then
  every process.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.supervisor import ensure_bridge
from kubelet import cni
from testkit import prereq, wait
from testkit.api import node_ready
from testkit.host import free_subnets, free_udp_tcp_port, remove_node_objects
from testkit.images import ensure_busybox_image
from testkit.processes import APIServerProcess, EtcdProcess, KubeletProcess, Process, component, python_module


def wait_for(
    check: Callable[[], Any], timeout: float = 60, what: str = "condition", interval: float = 0.2
) -> Any:
    """Poll ``check`` until it returns something truthy; exceptions count as not yet."""
    return wait.wait_for(check, timeout, what, interval, retry_errors=True)


def require_cni_plugins() -> None:
    """The standard CNI plugins the kubelets run (Debian's containernetworking-plugins)."""
    found = any((Path(d) / "bridge").exists() for d in ("/usr/lib/cni", "/opt/cni/bin"))
    prereq.require(found, "the CNI plugins", "apt-get install -y containernetworking-plugins")


class Node:
    def __init__(self, cluster: LocalCluster, index: int, subnet: str) -> None:
        self.name = f"e2e-{cluster.tag}-n{index}"
        self.pod_cidr = subnet
        self.ip = str(next(ipaddress.ip_network(subnet).hosts()))  # the bridge gateway: a host address
        # the kubelet's CNI network, bridge, conflist and results directories are its own
        self.kubelet = KubeletProcess(
            cluster.apiserver,
            self.name,
            subnet,
            self.ip,
            "0.0.0.0",
            cluster.workdir / self.name,
            ("--cluster-dns", cluster.dns_ip),
        )
        self.network = self.kubelet.network
        self.bridge = self.kubelet.bridge

    def make_bridge(self) -> None:
        """The CNI bridge with the gateway address: the node's address exists before any pod."""
        ensure_bridge(self.bridge, self.ip, ipaddress.ip_network(self.pod_cidr).prefixlen)

    def remove_network(self) -> None:
        """After the node's containers are gone: its CNI network, as ``minik down`` removes it."""
        k = self.kubelet
        cni.cleanup_network(k.cni_conf_dir, k.network, k.bridge, k.cni_cache_dir)


class LocalCluster:
    def __init__(self, nodes: int = 2, proxy_mode: str = "iptables") -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.proxy_mode = proxy_mode
        self.workdir = Path(tempfile.mkdtemp(prefix=f"minik-e2e-{self.tag}-"))
        *pod_cidrs, service_cidr = free_subnets(nodes + 1)
        self.service_cidr = service_cidr
        self.dns_ip = str(ipaddress.ip_network(service_cidr).network_address + 10)
        self.prefix = "MKE" + self.tag[:5].upper()
        self.dns_port = free_udp_tcp_port()
        self.etcd = EtcdProcess()
        gateways = tuple(str(next(ipaddress.ip_network(c).hosts())) for c in pod_cidrs)
        # pods reach the API server at the first node's address (the `kubernetes` Service's
        # endpoint) and at the Service's ClusterIP: the serving certificate names both
        self.apiserver = APIServerProcess(self.etcd.url, hosts=gateways, bind="0.0.0.0")
        self.api_url = self.apiserver.url
        self.nodes = [Node(self, i + 1, cidr) for i, cidr in enumerate(pod_cidrs)]
        no_election = ("--leader-elect", "false")
        self.controller_manager = component("controller-manager", self.apiserver, *no_election)
        self.scheduler = component("scheduler", self.apiserver, *no_election)
        dns_addr = ("--bind", "0.0.0.0", "--port", str(self.dns_port))
        self.dns = python_module("dns", "proxy.dns", self.apiserver, *dns_addr)
        self.proxy = python_module(
            "proxy",
            "proxy.command",
            self.apiserver,
            *("--node-name", self.nodes[0].name, "--iptables-chain-prefix", self.prefix),
            *("--mode", proxy_mode),
            *("--nodeport-addresses", ",".join(f"{n.ip}/32" for n in self.nodes)),
            # the other nodes share this host: their addresses get NodePorts from this proxy
            *[arg for n in self.nodes[1:] for arg in ("--node-ip", n.ip)],
        )
        for p in (self.controller_manager, self.scheduler, self.dns, self.proxy):
            p.log_path = str(self.workdir / f"{p.name}.log")
        self.api: httpx.Client | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def procs(self) -> list[Process]:
        return [self.controller_manager, self.scheduler, self.dns, self.proxy] + [
            n.kubelet for n in self.nodes
        ]

    def start(self) -> None:
        for n in self.nodes:  # first: the node addresses (DNS's endpoint, NodePorts) exist from here on
            n.make_bridge()
        self.etcd.start()
        extra = ["--service-cluster-ip-range", self.service_cidr, "--advertise-address", self.nodes[0].ip]
        self.apiserver.start(extra=extra)
        self.api = self.apiserver.http()
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
            n.kubelet.start(wait=False)
        for n in self.nodes:
            wait_for(
                functools.partial(node_ready, self.api, n.name), 90, f"node {n.name} Ready\n{n.kubelet.log()}"
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

    def stop(self) -> None:
        """Remove everything; safe after a partial start.  Raises if proxy chains were left."""
        failed: list[BaseException] = []
        for n in self.nodes:  # every node's network goes, even when a clean-up step failed
            for step in (
                functools.partial(n.kubelet.stop, signal.SIGKILL),
                functools.partial(remove_node_objects, n.name, n.network),
                n.remove_network,
            ):
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - raised after the rest is cleaned up
                    failed.append(exc)
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
        if failed:
            raise failed[0]

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
        """Until the VIP leads to endpoints (the Service has ready ones): a jump to its service
        chain (iptables mode) or a REDIRECT to the proxy (userspace mode)."""
        targets = ("-j REDIRECT", f"-j {self.prefix}-SVC-")  # iptables-save puts the comment between

        def present() -> bool:
            rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
            return any(
                f"-d {vip}/32 -p {proto}" in line
                and f"--dport {port} " in line
                and any(t in line for t in targets)
                for line in rules.splitlines()
            )

        wait_for(present, timeout, f"a rule to the endpoints of {vip}:{port}/{proto}\n{self.proxy.log()}")

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
    prereq.require_node_host()
    require_cni_plugins()
    ensure_busybox_image()
    cluster = LocalCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
