"""minik-proxy with real iptables and Docker: a bridge network made for the test, busybox httpd
backends, Services and Endpoints created by hand (as the endpoints controller would), the proxy
as a subprocess, a client container fetching through the VIP and the host fetching NodePorts.
Every test runs against both modes (``--mode iptables``, the default, and ``--mode userspace``).

Everything is removed afterwards, also on failure: containers and the network by label, the
iptables chains by ``minik-proxy --cleanup`` (checked gone).  The proxy uses its own chain prefix
so a cluster's proxy on the same machine is never touched.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit import podnet, prereq, wait
from testkit.host import free_port, free_subnets
from testkit.processes import APIServerProcess, python_module


@pytest.fixture(scope="module", autouse=True)
def prerequisites() -> None:
    """Checked before the module's API server starts: skipped locally, failed in CI."""
    prereq.require_node_host()


PREFIX = podnet.chain_prefix("T")
NODE = "proxy-test-node"
NS = "default"


def wait_for(check: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    """Exceptions count as not yet: the proxy's rules may not be there at the first try."""
    return wait.wait_for(check, timeout, what, retry_errors=True)


class Env:
    def __init__(self, api: httpx.Client, apiserver: APIServerProcess, mode: str = "iptables") -> None:
        self.api = api
        self.mode = mode
        self.services: list[str] = []
        self.apiserver = apiserver
        self.tag = uuid.uuid4().hex[:8]
        self.backends: list[tuple[str, str]] = []  # (name, ip)
        self.backend_containers: list[Any] = []
        self.client: Any = None
        self.client_ip = ""
        self.bridge = podnet.PodNetwork(
            f"minik-proxytest-{self.tag}", free_subnets(1, range(237, 238))[0], "proxy"
        )
        self.subnet = ipaddress.ip_network(self.bridge.subnet)
        self.gateway = self.bridge.gateway
        self.metrics_port = free_port()
        # iptables mode: the test network is the cluster's pod network (--cluster-cidr), so pods
        # keep their source address and the host's connections to a ClusterIP are masqueraded
        cluster_cidr = ["--cluster-cidr", str(self.subnet)] if mode == "iptables" else []
        self.proxy = python_module(
            "proxy",
            "proxy.command",
            apiserver,
            "--node-name",
            NODE,
            "--iptables-chain-prefix",
            PREFIX,
            "--mode",
            mode,
            *cluster_cidr,
            "--metrics-bind-address",
            f"127.0.0.1:{self.metrics_port}",
        )

    # -- setup -----------------------------------------------------------------------------------
    def setup(self) -> None:
        image = self.bridge.create()
        for i in (1, 2, 3):
            script = (
                f"mkdir -p /www/cgi-bin && echo backend-{i} > /www/index.html && "
                "dd if=/dev/zero of=/www/big bs=1024 count=8192 2>/dev/null && "
                # /cgi-bin/who answers with the backend's name and the client address it sees
                f"printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho backend-{i} $REMOTE_ADDR\\n' "
                "> /www/cgi-bin/who && chmod +x /www/cgi-bin/who && "
                "exec httpd -f -p 8080 -h /www"
            )
            c, ip = self.bridge.run(image, f"b{i}", ["sh", "-c", script])
            self.backend_containers.append(c)
            self.backends.append((f"backend-{i}", ip))
        self.client, self.client_ip = self.bridge.run(image, "client", ["sleep", "3600"])
        # a pod reaching itself through a Service (DNAT back to where the packet came from) needs
        # hairpin mode on its bridge port, as the CNI bridge plugin's hairpinMode sets it
        for port in Path(f"/sys/class/net/br-{self.bridge.network.id[:12]}/brif").iterdir():
            (port / "hairpin_mode").write_text("1")
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE},
            "status": {"addresses": [{"type": "InternalIP", "address": self.gateway}]},
        }
        r = self.api.post("/api/v1/nodes", json=node)
        assert r.status_code in (201, 409), r.text
        cur = self.api.get(f"/api/v1/nodes/{NODE}").json()
        cur["status"] = node["status"]
        assert self.api.put(f"/api/v1/nodes/{NODE}/status", json=cur).status_code == 200

    def start_proxy(self) -> None:
        self.proxy.start()
        wait_for(lambda: f"proxy for node {NODE} synced" in self.log(), what="proxy sync")

    def stop_proxy(self) -> None:
        self.proxy.stop()

    def log(self) -> str:
        return self.proxy.log()

    def teardown(self) -> None:
        for name in self.services:  # the API server is shared with the other mode's run
            self.api.delete(f"/api/v1/namespaces/{NS}/services/{name}")
            self.api.delete(f"/api/v1/namespaces/{NS}/endpoints/{name}")
        self.proxy.stop()
        podnet.remove_proxy_chains(PREFIX)
        self.bridge.remove()
        self.proxy.cleanup()

    # -- helpers ---------------------------------------------------------------------------------
    def service(self, name: str, **spec: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"ports": [{"name": "http", "port": 80, "targetPort": "web"}]}
        body.update(spec)
        r = self.api.post(
            f"/api/v1/namespaces/{NS}/services", json={"metadata": {"name": name}, "spec": body}
        )
        assert r.status_code == 201, r.text
        self.services.append(name)
        return dict(r.json())

    def endpoints(self, name: str, subsets: list[dict[str, Any]]) -> None:
        body = {"metadata": {"name": name}, "subsets": subsets}
        r = self.api.put(f"/api/v1/namespaces/{NS}/endpoints/{name}", json=body)
        if r.status_code == 404:
            r = self.api.post(f"/api/v1/namespaces/{NS}/endpoints", json=body)
        assert r.status_code in (200, 201), r.text

    def wait_rule(self, vip: str, port: int = 80) -> None:
        """Wait until the proxy has a rule for ``vip:port``: before it, traffic to the VIP would
        leave the machine by the default route, and tests only send traffic to what they made."""

        def present() -> bool:
            rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
            return any(f"-d {vip}/32" in line and f"--dport {port} " in line for line in rules.splitlines())

        wait_for(present, what=f"a proxy rule for {vip}:{port}")

    def subset(self, ips: list[str], port: int = 8080, name: str = "http") -> dict[str, Any]:
        return {
            "addresses": [{"ip": ip} for ip in ips],
            "ports": [{"name": name, "port": port, "protocol": "TCP"}],
        }

    def who(self, url: str, container: Any = None) -> str:
        """``backend-N CLIENT-ADDRESS`` from /cgi-bin/who (busybox httpd writes IPv4-mapped)."""
        code, out = self.fetch_in_client(url, container)
        return out.strip().replace("[::ffff:", "").replace("]", "") if code == 0 else f"exit {code}"

    def fetch_in_client(self, url: str, container: Any = None) -> tuple[int, str]:
        code, out = (container or self.client).exec_run(["wget", "-O-", "-q", url])
        return code, out.decode(errors="replace")


@pytest.fixture(scope="module", params=["iptables", "userspace"])
def env(apiserver: APIServerProcess, request: pytest.FixtureRequest) -> Iterator[Env]:
    with apiserver.http() as api:
        e = Env(api, apiserver, request.param)
        try:
            e.setup()
            e.start_proxy()
            yield e
        finally:
            proxy_log = e.log()
            e.teardown()
            podnet.assert_no_chains(PREFIX)
            if proxy_log and os.environ.get("MINIK_TEST_VERBOSE"):
                print(proxy_log)


def test_cluster_ip_round_robin_from_a_pod_and_the_host(env: Env) -> None:
    svc = env.service("web", type="NodePort")
    env.endpoints("web", [env.subset([ip for _, ip in env.backends])])
    vip = svc["spec"]["clusterIP"]
    env.wait_rule(vip)
    seen = set()

    def three_backends() -> bool:
        code, out = env.fetch_in_client(f"http://{vip}/")
        if code == 0:
            seen.add(out.strip())
        return len(seen) == 3

    wait_for(three_backends, what=f"all three backends through {vip}")
    # from the host (OUTPUT chain), through the NodePort on loopback and the node address
    node_port = svc["spec"]["ports"][0]["nodePort"]
    for url in (f"http://{vip}/", f"http://127.0.0.1:{node_port}/", f"http://{env.gateway}:{node_port}/"):
        r = wait_for(lambda u=url: httpx.get(u, timeout=5), what=url)
        assert r.status_code == 200 and r.text.startswith("backend-")
    # a large body arrives whole
    code, out = env.client.exec_run(["sh", "-c", f"wget -O- -q http://{vip}/big | wc -c"])
    assert code == 0 and out.decode().strip() == str(8192 * 1024)


def test_half_close_is_forwarded(env: Env) -> None:
    svc = env.service("half", clusterIP="")
    env.endpoints("half", [env.subset([env.backends[0][1]])])
    vip = svc["spec"]["clusterIP"]
    env.wait_rule(vip)

    def exchange() -> bytes:
        with socket.create_connection((vip, 80), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            s.shutdown(socket.SHUT_WR)  # the client is done sending; it must still get the answer
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data

    data = wait_for(exchange, what="an answer after half-close")
    assert b"200 OK" in data and b"backend-1" in data


def test_dead_endpoint_is_skipped_and_no_endpoints_refuses(env: Env) -> None:
    svc = env.service("flaky")
    vip = svc["spec"]["clusterIP"]
    env.wait_rule(vip)
    if env.mode == "userspace":  # the iptables mode, like kube-proxy's, has no retry
        # backend-2 listens on 8080, not on 9999: connecting there fails, so backend-1 answers
        env.endpoints(
            "flaky", [env.subset([env.backends[0][1]]), env.subset([env.backends[1][1]], port=9999)]
        )
    else:
        env.endpoints("flaky", [env.subset([env.backends[0][1]])])
    for _ in range(2):
        wait_for(
            lambda: env.fetch_in_client(f"http://{vip}/") == (0, "backend-1\n"), what="backend-1 via flaky"
        )
    # no endpoints at all: refused at once, from the host and from a pod
    env.endpoints("flaky", [])

    def refused() -> bool:
        try:
            socket.create_connection((vip, 80), timeout=5).close()
        except ConnectionRefusedError:
            return True
        return False

    wait_for(refused, what="connection refused with no endpoints")
    code, out = env.fetch_in_client(f"http://{vip}/")
    assert code != 0


def test_session_affinity_sticks_to_one_backend(env: Env) -> None:
    svc = env.service(
        "sticky", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}}
    )
    env.endpoints("sticky", [env.subset([ip for _, ip in env.backends])])
    vip = svc["spec"]["clusterIP"]
    env.wait_rule(vip)
    # the first rule may still be the REJECT of a Service without endpoints: wait for an answer
    first = wait_for(
        lambda: (lambda r: r[0] == 0 and r[1].strip())(env.fetch_in_client(f"http://{vip}/")),
        what="sticky answer",
    )
    answers = {env.fetch_in_client(f"http://{vip}/")[1].strip() for _ in range(6)}
    assert answers == {first}


def test_multi_port_and_load_balancer(env: Env) -> None:
    svc = env.service(
        "lb",
        type="LoadBalancer",
        ports=[
            {"name": "http", "port": 8081, "targetPort": 8080},
            {"name": "alt", "port": 8082, "targetPort": 8080},
        ],
    )
    env.endpoints(
        "lb",
        [
            {
                "addresses": [{"ip": env.backends[2][1]}],
                "ports": [{"name": "http", "port": 8080}, {"name": "alt", "port": 8080}],
            }
        ],
    )
    ingress = wait_for(
        lambda: (
            env.api.get(f"/api/v1/namespaces/{NS}/services/lb")
            .json()["status"]["loadBalancer"]
            .get("ingress")
        ),
        what="load balancer ingress",
    )
    assert {"ip": env.gateway} in ingress
    vip = svc["spec"]["clusterIP"]
    env.wait_rule(vip, 8082)
    for url in (f"http://{env.gateway}:8081/", f"http://{vip}:8082/"):
        wait_for(lambda u=url: env.fetch_in_client(u) == (0, "backend-3\n"), what=url)
    r = wait_for(lambda: httpx.get(f"http://{env.gateway}:8081/", timeout=5), what="LB from host")
    assert r.text == "backend-3\n"


def test_restart_keeps_services_working_and_cleanup_removes_rules(env: Env) -> None:
    svc = env.service("again")
    env.endpoints("again", [env.subset([env.backends[0][1]])])
    vip = svc["spec"]["clusterIP"]
    env.wait_rule(vip)
    wait_for(lambda: env.fetch_in_client(f"http://{vip}/") == (0, "backend-1\n"), what="before restart")
    env.stop_proxy()
    env.start_proxy()
    wait_for(lambda: env.fetch_in_client(f"http://{vip}/") == (0, "backend-1\n"), what="after restart")
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    # the earlier run's rule was replaced, not duplicated
    assert sum(1 for line in rules.splitlines() if line.startswith(f"-A {PREFIX}-SERVICES -d {vip}/32 ")) == 1


def test_server_sees_the_client_pod_address(env: Env) -> None:
    """iptables mode: a ClusterIP connection from a pod arrives with the pod's own address (no
    masquerade inside the cluster); userspace mode: with the node's, as the proxy connects.  A
    pod reaching itself through its Service (hairpin) is masqueraded, so the answer comes back."""
    svc = env.service("who")
    env.endpoints("who", [env.subset([env.backends[0][1]])])
    vip = svc["spec"]["clusterIP"]
    env.wait_rule(vip)
    seen = env.client_ip if env.mode == "iptables" else env.gateway
    wait_for(
        lambda: env.who(f"http://{vip}/cgi-bin/who") == f"backend-1 {seen}", what=f"backend-1 seeing {seen}"
    )
    assert env.who(f"http://{vip}/cgi-bin/who", env.backend_containers[0]) == f"backend-1 {env.gateway}"
    # the host is outside the cluster CIDR: masqueraded to its address on the pod network (without
    # it the server would see the source of the host's route to the VIP, its default route's)
    r = httpx.get(f"http://{vip}/cgi-bin/who", timeout=5)
    assert r.text.strip().replace("[::ffff:", "").replace("]", "") == f"backend-1 {env.gateway}"


@pytest.fixture()
def outside(env: Env) -> Iterator[tuple[str, str]]:
    """A network namespace routed through the host by a veth pair, in no pod network: a client
    from off the cluster.  Yields (netns name, its address)."""
    tag = env.tag[:6]
    ns, host_if, ns_if = f"minikt-{tag}", f"mkto{tag}", f"mkti{tag}"
    subnet = ipaddress.ip_network(free_subnets(1, range(236, 237))[0])
    host_ip, ns_ip = str(subnet.network_address + 1), str(subnet.network_address + 2)

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True)

    try:
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        run("ip", "link", "set", ns_if, "netns", ns)
        run("ip", "addr", "add", f"{host_ip}/24", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "-n", ns, "addr", "add", f"{ns_ip}/24", "dev", ns_if)
        run("ip", "-n", ns, "link", "set", ns_if, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "route", "add", "default", "via", host_ip)
        yield ns, ns_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def fetch_in_netns(ns: str, url: str) -> str:
    code = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, url],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return out.stdout.strip().replace("[::ffff:", "").replace("]", "") if out.returncode == 0 else ""


@pytest.mark.parametrize("env", ["iptables"], indirect=True)
def test_external_traffic_policy_local_keeps_the_source(env: Env, outside: tuple[str, str]) -> None:
    """A NodePort with externalTrafficPolicy Local: an off-cluster client reaches only this
    node's endpoint and is seen with its own address; with Cluster it is masqueraded."""
    ns, ns_ip = outside
    local = env.service("local", type="NodePort", externalTrafficPolicy="Local")
    cluster = env.service("cluster", type="NodePort")
    (_, b1), (_, b2) = env.backends[0], env.backends[1]
    ports = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    both = [
        {"addresses": [{"ip": b1, "nodeName": NODE}, {"ip": b2, "nodeName": "elsewhere"}], "ports": ports}
    ]
    env.endpoints("local", both)
    env.endpoints("cluster", [env.subset([b1])])
    local_url = f"http://{env.gateway}:{local['spec']['ports'][0]['nodePort']}/cgi-bin/who"
    cluster_url = f"http://{env.gateway}:{cluster['spec']['ports'][0]['nodePort']}/cgi-bin/who"
    wait_for(lambda: fetch_in_netns(ns, local_url) == f"backend-1 {ns_ip}", what="Local NodePort")
    assert {fetch_in_netns(ns, local_url) for _ in range(6)} == {f"backend-1 {ns_ip}"}
    wait_for(lambda: fetch_in_netns(ns, cluster_url) == f"backend-1 {env.gateway}", what="Cluster NodePort")


@pytest.mark.parametrize("env", ["iptables"], indirect=True)
def test_per_service_chains_follow_the_service(env: Env) -> None:
    """Each endpoint gets its DNAT chain; deleting the Service deletes its chains and rules."""
    svc = env.service("chains")
    env.endpoints("chains", [env.subset([ip for _, ip in env.backends[:2]])])
    env.wait_rule(svc["spec"]["clusterIP"])

    def ours() -> list[str]:
        saved = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        return [line for line in saved.splitlines() if '"default/chains' in line]

    wait_for(
        lambda: all(any(f"--to-destination {ip}:8080" in r for r in ours()) for _, ip in env.backends[:2]),
        what="one DNAT per endpoint",
    )
    chains = {r.split()[1] for r in ours() if "-j DNAT" in r}
    assert len(chains) == 2 and all(c.startswith(f"{PREFIX}-SEP-") for c in chains), chains
    assert env.api.delete(f"/api/v1/namespaces/{NS}/services/chains").status_code == 200
    env.services.remove("chains")
    wait_for(lambda: not ours(), what="the service's rules gone")
    saved = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    assert not [c for c in chains if f":{c} " in saved], "the endpoint chains were left behind"


UDP_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9053))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(512)
    s.sendto(sys.argv[1].encode() + b" " + addr[0].encode(), addr)
"""
UDP_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 40053))  # the same source port every time: the same conntrack entry
s.settimeout(2)
s.sendto(b"q", (sys.argv[1], 53))
print(s.recv(512).decode())
"""


def _netns_python(container: Any, code: str, *args: str) -> list[str]:
    container.reload()
    return ["nsenter", "-t", str(container.attrs["State"]["Pid"]), "-n", sys.executable, "-c", code, *args]


@pytest.mark.parametrize("env", ["iptables"], indirect=True)
def test_udp_service_and_stale_conntrack_entries(env: Env) -> None:
    """A UDP ClusterIP; when its endpoint changes, the conntrack entry DNATed to the old one is
    deleted, so a client that keeps its source port reaches the new endpoint (without the
    deletion the old entry, refreshed by each datagram, would keep it on the old endpoint)."""
    svc = env.service("udp", ports=[{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 9053}])
    vip = svc["spec"]["clusterIP"]

    def endpoint(i: int) -> None:
        ip = env.backends[i][1]
        env.endpoints(
            "udp", [{"addresses": [{"ip": ip}], "ports": [{"name": "dns", "port": 9053, "protocol": "UDP"}]}]
        )

    servers = []
    try:
        for i in (0, 1):
            p = subprocess.Popen(
                _netns_python(env.backend_containers[i], UDP_SERVER, f"backend-{i + 1}"),
                stdout=subprocess.PIPE,
                text=True,
            )
            servers.append(p)
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        endpoint(0)
        env.wait_rule(vip, 53)

        def ask() -> str:
            out = subprocess.run(
                _netns_python(env.client, UDP_CLIENT, vip), capture_output=True, text=True, timeout=10
            )
            return out.stdout.strip().replace("[::ffff:", "").replace("]", "")

        wait_for(lambda: ask() == f"backend-1 {env.client_ip}", what="backend-1 over UDP")
        endpoint(1)
        wait_for(lambda: ask() == f"backend-2 {env.client_ip}", what="backend-2 after the endpoint changed")
    finally:
        for p in servers:
            p.kill()
            p.wait()


def test_sync_metrics_in_both_modes(env: Env) -> None:
    """kubeproxy_sync_proxy_rules_duration_seconds counts the rule syncs, whatever the mode."""

    def count() -> float:
        text = httpx.get(f"http://127.0.0.1:{env.metrics_port}/metrics", timeout=5).text
        prefix = "kubeproxy_sync_proxy_rules_duration_seconds_count"
        return float(next(x for x in text.splitlines() if x.startswith(prefix)).split()[-1])

    before = count()
    svc = env.service("metrics")
    env.wait_rule(svc["spec"]["clusterIP"])
    wait_for(lambda: count() > before, what="a sync counted")
