"""Service networking end to end on a whole local cluster (tests/e2e/cluster.py): two nodes
(kubelets with their own pod CIDRs and Docker networks), the controller manager, the scheduler,
minik-dns behind the ``kube-dns`` ClusterIP (UDP through the proxy) and minik-proxy.

Workloads are created once (pods start in parallel) and each test checks one behaviour from pods
(``docker exec`` in the pod's container) and from the host.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dnslib import QTYPE, DNSRecord

from tests.e2e.cluster import LocalCluster, local_cluster, wait_for

__all__ = ["local_cluster"]

IMAGE = "minik-test/busybox:1"
MANIFESTS = Path(__file__).parent / "manifests"

# httpd serving its pod name at / and the client's address at /cgi-bin/ip; ready while /www/ready exists
WEB_SCRIPT = (
    "mkdir -p /www/cgi-bin && hostname > /www/index.html && touch /www/ready && "
    "printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && "
    "chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www"
)


def web_pod_spec(**extra: Any) -> dict[str, Any]:
    return {
        "containers": [
            {
                "name": "web",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", WEB_SCRIPT],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {
                    "exec": {"command": ["cat", "/www/ready"]},
                    "periodSeconds": 1,
                    "failureThreshold": 1,
                },
            }
        ],
        "terminationGracePeriodSeconds": 1,
        **extra,
    }


def client_pod(name: str, ns: str, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {"name": "c", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}
        ],
        "terminationGracePeriodSeconds": 1,
    }
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"role": "client"}},
        "spec": spec,
    }


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": body}


class World:
    def __init__(self, cluster: LocalCluster) -> None:
        self.c = cluster
        self.n1, self.n2 = cluster.nodes[0], cluster.nodes[1]

    def svc(self, ns: str, name: str) -> dict[str, Any]:
        return self.c.get(f"/api/v1/namespaces/{ns}/services/{name}")

    def fetch(self, ns: str, pod: str, url: str) -> str | None:
        code, out = self.c.exec(ns, pod, ["wget", "-O-", "-q", url])
        return out if code == 0 else None


@pytest.fixture(scope="module")
def world(local_cluster: LocalCluster) -> World:
    c = local_cluster
    w = World(c)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": web_pod_spec()},
        },
    }
    objs: list[dict[str, Any]] = [namespace("shop"), namespace("other"), deployment]
    objs += [
        service("web", "shop"),
        service("web-np", "shop", type="NodePort"),
        service("web-lb", "shop", type="LoadBalancer", ports=[{"port": 8085, "targetPort": "http"}]),
        service("web-headless", "shop", clusterIP="None"),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ext", "namespace": "shop"},
            "spec": {"type": "ExternalName", "externalName": "web.shop.svc.cluster.local"},
        },
        client_pod("client", "shop", w.n1.name),
        client_pod("client", "other", w.n1.name),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "far", "namespace": "other", "labels": {"app": "far"}},
            "spec": web_pod_spec(nodeName=w.n2.name),
        },
    ]
    for path in sorted(MANIFESTS.glob("*.yaml")):
        objs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    c.apply(objs)
    # every VIP has its rule before any pod sends to it
    for ns, name, port in (("shop", "web", 80), ("shop", "web-np", 80), ("shop", "web-lb", 8085)):
        c.wait_rule(w.svc(ns, name)["spec"]["clusterIP"], port)
    c.wait_running("shop", "app=web", 3)
    c.wait_running("shop", "role=client", 1)
    c.wait_running("other", "role=client", 1)
    c.wait_running("other", "app=far", 1)
    c.wait_redirect(w.svc("shop", "web")["spec"]["clusterIP"], 80)
    return w


def test_pod_reaches_service_by_short_namespaced_and_full_name(world: World) -> None:
    for ns, name in (
        ("shop", "web"),
        ("shop", "web.shop"),
        ("other", "web.shop"),
        ("other", "web.shop.svc.cluster.local"),
    ):
        out = wait_for(
            functools.partial(world.fetch, ns, "client", f"http://{name}/"), 30, f"{name} from {ns}"
        )
        assert out.strip().startswith("web-"), out


def test_traffic_spreads_over_three_backends(world: World) -> None:
    pods = {p["metadata"]["name"] for p in world.c.pods("shop", "app=web")}
    seen: set[str] = set()

    def all_seen() -> bool:
        out = world.fetch("shop", "client", "http://web/")
        if out:
            seen.add(out.strip())
        return seen == pods

    wait_for(all_seen, 30, f"answers from all of {pods}")


def test_backend_failing_readiness_gets_no_traffic(world: World) -> None:
    c = world.c
    pods = sorted(p["metadata"]["name"] for p in c.pods("shop", "app=web"))
    sick = pods[0]
    code, _ = c.exec("shop", sick, ["rm", "/www/ready"])
    assert code == 0
    sick_ip = c.get(f"/api/v1/namespaces/shop/pods/{sick}")["status"]["podIP"]

    def moved() -> bool:
        eps = c.get("/api/v1/namespaces/shop/endpoints/web")
        ready = [a["ip"] for s in eps.get("subsets") or [] for a in s.get("addresses") or []]
        not_ready = [a["ip"] for s in eps.get("subsets") or [] for a in s.get("notReadyAddresses") or []]
        return sick_ip in not_ready and sick_ip not in ready and len(ready) == 2

    wait_for(moved, 30, f"{sick} ({sick_ip}) in notReadyAddresses")
    try:
        answers = set()
        for _ in range(12):
            out = wait_for(lambda: world.fetch("shop", "client", "http://web/"), 15, "an answer")
            answers.add(out.strip())
        assert sick not in answers and len(answers) == 2, answers
    finally:
        c.exec("shop", sick, ["touch", "/www/ready"])
    c.wait_running("shop", "app=web", 3)


def test_node_port_from_the_host(world: World) -> None:
    node_port = world.svc("shop", "web-np")["spec"]["ports"][0]["nodePort"]
    for node in (world.n1, world.n2):
        r = wait_for(
            functools.partial(httpx.get, f"http://{node.ip}:{node_port}/", timeout=5),
            30,
            f"{node.ip}:{node_port}",
        )
        assert r.status_code == 200 and r.text.startswith("web-")


def test_load_balancer_ingress_reported_and_answering(world: World) -> None:
    ingress = wait_for(
        lambda: world.svc("shop", "web-lb").get("status", {}).get("loadBalancer", {}).get("ingress"),
        30,
        "ingress",
    )
    ips = {i["ip"] for i in ingress}
    assert world.n1.ip in ips
    r = wait_for(lambda: httpx.get(f"http://{world.n1.ip}:8085/", timeout=5), 30, "LB address")
    assert r.status_code == 200 and r.text.startswith("web-")
    out = wait_for(lambda: world.fetch("other", "client", f"http://{world.n1.ip}:8085/"), 30, "LB from a pod")
    assert out.startswith("web-")


def test_headless_service_dns_returns_pod_ips(world: World) -> None:
    c = world.c
    pod_ips = {p["status"]["podIP"] for p in c.wait_running("shop", "app=web", 3)}

    def resolved() -> set[str] | None:
        code, out = c.exec("shop", "client", ["nslookup", "web-headless.shop.svc.cluster.local"])
        answer = out.split("Name:", 1)[-1] if "Name:" in out else ""
        ips = {line.split()[-1] for line in answer.splitlines() if line.startswith("Address")}
        return ips if ips == pod_ips else None

    wait_for(resolved, 30, f"headless answers {pod_ips}")


def test_external_name_is_a_cname(world: World) -> None:
    # from the host: a UDP query to the kube-dns ClusterIP, through the proxy's OUTPUT rule
    reply = DNSRecord.parse(
        wait_for(
            lambda: DNSRecord.question("ext.shop.svc.cluster.local").send(world.c.dns_ip, 53, timeout=3),
            20,
            "dns",
        )
    )
    cnames = [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.CNAME]
    assert cnames == ["web.shop.svc.cluster.local."]
    # and from a pod, by name
    code, out = world.c.exec("other", "client", ["nslookup", "ext.shop.svc.cluster.local"])
    assert "web.shop.svc.cluster.local" in out, out


def test_dns_over_tcp_through_the_cluster_ip(world: World) -> None:
    q = DNSRecord.question("web.shop.svc.cluster.local")
    reply = DNSRecord.parse(wait_for(lambda: q.send(world.c.dns_ip, 53, tcp=True, timeout=3), 20, "dns/tcp"))
    assert [str(rr.rdata) for rr in reply.rr] == [world.svc("shop", "web")["spec"]["clusterIP"]]


def test_pod_reaches_pod_on_the_other_node_with_its_own_address(world: World) -> None:
    c = world.c
    far = c.get("/api/v1/namespaces/other/pods/far")
    assert far["spec"]["nodeName"] == world.n2.name
    client = c.get("/api/v1/namespaces/other/pods/client")
    assert client["spec"]["nodeName"] == world.n1.name
    far_ip, client_ip = far["status"]["podIP"], client["status"]["podIP"]
    assert ipaddress.ip_address(far_ip) in ipaddress.ip_network(world.n2.pod_cidr)
    # the source address is kept (no masquerading between pod networks)
    out = wait_for(lambda: world.fetch("other", "client", f"http://{far_ip}:8080/cgi-bin/ip"), 30, "far pod")
    assert out.strip().removeprefix("[::ffff:").rstrip("]") == client_ip  # httpd listens on IPv6
    # and back: the far pod reaches a web pod on node 1 through the Service
    out = wait_for(lambda: world.fetch("other", "far", "http://web.shop/"), 30, "service from node 2")
    assert out.startswith("web-")


def test_mongodb_and_mongo_express_topology(world: World) -> None:
    c = world.c
    c.wait_running("database", "app=mongodb", 1)
    c.wait_running("mongo-express", "app=mongo-express", 1)
    svc = world.svc("mongo-express", "mongo-express-service")
    assert svc["spec"]["ports"][0]["nodePort"] == 30000
    c.wait_rule(world.svc("database", "mongodb-service")["spec"]["clusterIP"], 27017)
    r = wait_for(
        lambda: (lambda r: r if "mongodb-ok" in r.text else None)(
            httpx.get(f"http://{world.n1.ip}:30000/cgi-bin/index", timeout=10)
        ),
        60,
        "mongo-express through NodePort 30000",
    )
    assert r.status_code == 200


def test_proxy_restart_keeps_services_working(world: World) -> None:
    c = world.c
    vip = world.svc("shop", "web")["spec"]["clusterIP"]
    c.proxy.stop()
    c.proxy.start()
    wait_for(lambda: "synced" in c.proxy.log().split("--- ")[-1], 30, "proxy synced again")
    out = wait_for(lambda: world.fetch("shop", "client", f"http://{vip}/"), 30, "VIP after restart")
    assert out.startswith("web-")
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    # one rule for the VIP in the services chain (the earlier run's was replaced, not duplicated)
    assert (
        sum(1 for line in nat.splitlines() if f"-d {vip}/32" in line and f"-A {c.prefix}-SERVICES " in line)
        == 1
    )
    node_port = world.svc("shop", "web-np")["spec"]["ports"][0]["nodePort"]
    r = wait_for(
        lambda: httpx.get(f"http://{world.n1.ip}:{node_port}/", timeout=5), 30, "NodePort after restart"
    )
    assert r.status_code == 200
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # and DNS over UDP
        s.settimeout(3)
        s.sendto(DNSRecord.question("web.shop.svc.cluster.local").pack(), (c.dns_ip, 53))
        assert DNSRecord.parse(s.recv(4096)).rr
