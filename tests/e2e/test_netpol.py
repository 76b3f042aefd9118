"""NetworkPolicy end to end on a whole local cluster (tests/e2e/cluster.py): two nodes whose
kubelets run real pods on their pod networks, minik-dns behind the kube-dns ClusterIP and
minik-proxy enforcing the policies.  Pods on both nodes, so traffic crosses between the pod
networks; every check is a real connection made inside a pod (``docker exec``).
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.e2e.cluster import LocalCluster, local_cluster, wait_for

__all__ = ["local_cluster"]

IMAGE = "minik-test/busybox:1"
# httpd answering its pod name on 8080 (port "http") and 9090 (port "alt")
SERVE = (
    "mkdir -p /www && hostname > /www/index.html && httpd -p 9090 -h /www && exec httpd -f -p 8080 -h /www"
)
SRV, FRIEND, OTHER = "np-srv", "np-friend", "np-other"


def pod(name: str, ns: str, node: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "c",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", SERVE],
                    "ports": [
                        {"name": "http", "containerPort": 8080},
                        {"name": "alt", "containerPort": 9090},
                    ],
                }
            ],
            "terminationGracePeriodSeconds": 1,
        },
    }


def policy(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


class World:
    def __init__(self, c: LocalCluster) -> None:
        self.c = c
        self.ns_of: dict[str, str] = {}
        self.ip: dict[str, str] = {}

    def connects(self, src: str, dst: str, port: int = 8080, host: str = "") -> bool:
        url = f"http://{host or self.ip[dst]}:{port}/"
        code, out = self.c.exec(self.ns_of[src], src, ["timeout", "2", "wget", "-q", "-O-", url])
        return code == 0 and out.strip() == dst

    def allowed(self, src: str, dst: str, port: int = 8080) -> None:
        wait_for(lambda: self.connects(src, dst, port), 20, f"{src} -> {dst}:{port} allowed")

    def denied(self, src: str, dst: str, port: int = 8080) -> None:
        assert not self.connects(src, dst, port), f"{src} -> {dst}:{port} should be dropped"

    def rules(self) -> str:
        out = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True).stdout
        return "\n".join(line for line in out.splitlines() if f"{self.c.prefix}-NWPLCY" in line)

    def wait_rules(self, fragment: str) -> None:
        wait_for(lambda: fragment in self.rules(), 20, f"policy rules with {fragment}")

    def delete_policies(self) -> None:
        assert self.c.api is not None
        for ns in (SRV, FRIEND, OTHER):
            self.c.api.delete(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies")
        wait_for(lambda: "-j DROP" not in self.rules(), 20, "policy chains emptied")


@pytest.fixture(scope="module")
def world(local_cluster: LocalCluster) -> World:
    c = local_cluster
    w = World(c)
    n1, n2 = c.nodes[0].name, c.nodes[1].name
    c.apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SRV}},
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": FRIEND, "labels": {"team": "friends"}},
            },
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OTHER}},
        ]
    )
    placed = [
        ("srv1", SRV, n1, "srv"),
        ("srv2", SRV, n2, "srv"),
        ("friend", FRIEND, n2, "cli"),
        ("other", OTHER, n1, "cli"),
    ]
    c.apply([pod(name, ns, node, app) for name, ns, node, app in placed])
    for name, ns, _, _ in placed:
        w.ns_of[name] = ns
    for ns in (SRV, FRIEND, OTHER):
        for p in c.wait_running(ns, "", 2 if ns == SRV else 1, ready=False):
            w.ip[p["metadata"]["name"]] = p["status"]["podIP"]
    return w


@pytest.fixture()
def net(world: World) -> Any:
    try:
        yield world
    finally:
        world.delete_policies()


def test_default_deny_and_allow_from_namespace_across_nodes(net: World) -> None:
    net.allowed("other", "srv2")  # node 1 -> node 2, no policy yet
    net.c.apply([policy("default-deny-ingress", SRV, policyTypes=["Ingress"])])
    net.wait_rules(f'"{SRV}/srv1 ingress"')
    net.denied("other", "srv1")  # same node
    net.denied("friend", "srv1")  # node 2 -> node 1
    net.allowed("srv1", "other")  # the isolated pods still connect out
    net.c.apply(
        [
            policy(
                "from-friends",
                SRV,
                podSelector={"matchLabels": {"app": "srv"}},
                ingress=[
                    {
                        "from": [{"namespaceSelector": {"matchLabels": {"team": "friends"}}}],
                        "ports": [{"port": "http"}],
                    }
                ],
            )
        ]
    )
    net.wait_rules(f"{SRV}/from-friends ingress[0]")
    net.allowed("friend", "srv1")
    net.allowed("friend", "srv2")
    net.denied("friend", "srv2", 9090)  # only the named port "http"
    net.denied("other", "srv2")


def test_egress_deny_with_dns_allowed(net: World) -> None:
    c = net.c
    net.allowed("other", "friend")
    # deny all egress of the namespace, allow DNS to anywhere.  minik-dns is a host process; this
    # harness runs it on an unprivileged port behind the kube-dns ClusterIP, and egress rules
    # see the port after the proxy's DNAT, as in Kubernetes: that port is allowed beside 53.
    dns_ports = [{"protocol": proto, "port": port} for port in (53, c.dns_port) for proto in ("UDP", "TCP")]
    c.apply(
        [
            policy("default-deny-egress", OTHER, policyTypes=["Egress"]),
            policy("allow-dns", OTHER, policyTypes=["Egress"], egress=[{"ports": dns_ports}]),
        ]
    )
    net.wait_rules(f"{OTHER}/allow-dns egress[0]")
    net.denied("other", "friend")
    net.denied("other", "srv1")
    code, out = c.exec(OTHER, "other", ["nslookup", "kubernetes.default.svc.cluster.local"])
    assert code == 0 and "Address" in out, out
    net.allowed("friend", "other")  # ingress into "other" is not isolated
    # the selector form of allow-DNS: minik-dns (a host process) stands as kube-system's kube-dns pod
    assert c.api is not None
    c.api.delete(f"/apis/networking.k8s.io/v1/namespaces/{OTHER}/networkpolicies/allow-dns")
    wait_for(lambda: f"{OTHER}/allow-dns" not in net.rules(), 20, "allow-dns gone")
    code, _ = c.exec(OTHER, "other", ["timeout", "3", "nslookup", "kubernetes.default.svc.cluster.local"])
    assert code != 0, "DNS should be dropped without the allow-dns policy"
    to_kube_dns = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    c.apply(
        [
            policy(
                "allow-dns-pods",
                OTHER,
                policyTypes=["Egress"],
                egress=[{"to": [to_kube_dns], "ports": dns_ports}],
            )
        ]
    )
    net.wait_rules(f"{OTHER}/allow-dns-pods egress[0]")
    code, out = c.exec(OTHER, "other", ["nslookup", "kubernetes.default.svc.cluster.local"])
    assert code == 0 and "Address" in out, out
    net.denied("other", "friend")
