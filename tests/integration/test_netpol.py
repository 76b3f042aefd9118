"""NetworkPolicy enforced by minik-proxy, with real netfilter and real connections.

Busybox containers on a bridge network made for the test stand for pods: each serves HTTP on
8080 (container port ``http``) and 9090 (``alt``); Pod objects with their addresses are written
to the API by hand (as a kubelet would report them), in three namespaces of the test's own.
minik-proxy runs as a subprocess with its own chain prefix; every check is a real TCP connection
from one container to another (both directions), through a Service VIP as well.

Everything is removed afterwards, also on failure: containers and network by label, the API
objects, the chains by ``minik-proxy --cleanup`` (checked gone).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from proxy import netpol
from proxy import netpol_model as model
from testkit import podnet, prereq, wait
from testkit.host import free_subnets
from testkit.processes import APIServerProcess, python_module


@pytest.fixture(scope="module", autouse=True)
def prerequisites() -> None:
    prereq.require_node_host()


PREFIX = podnet.chain_prefix("N")
NODE = "netpol-test-node"
TAG = uuid.uuid4().hex[:6]
NS_SRV, NS_FRIEND, NS_OTHER = (f"np-{TAG}-srv", f"np-{TAG}-friend", f"np-{TAG}-other")
CHECK_TIMEOUT = 2  # seconds a refused (dropped) connection attempt waits


class Cluster:
    def __init__(self, api: httpx.Client, apiserver: APIServerProcess) -> None:
        self.api = api
        self.bridge = podnet.PodNetwork(f"minik-netpol-{TAG}", free_subnets(1, range(238, 240))[0], "netpol")
        self.gateway = self.bridge.gateway
        self.subnet = self.bridge.subnet
        self.ip: dict[str, str] = {}  # pod name -> IP
        self.containers: dict[str, Any] = {}
        self.policies: list[tuple[str, str]] = []
        self.proxy = python_module(
            "proxy", "proxy.command", apiserver, "--node-name", NODE, "--iptables-chain-prefix", PREFIX
        )

    def setup(self) -> None:
        image = self.bridge.create()
        for ns, labels in ((NS_SRV, {}), (NS_FRIEND, {"team": "friends"}), (NS_OTHER, {})):
            r = self.api.post("/api/v1/namespaces", json={"metadata": {"name": ns, "labels": labels}})
            assert r.status_code == 201, r.text
        node = {
            "metadata": {"name": NODE},
            "status": {"addresses": [{"type": "InternalIP", "address": self.gateway}]},
        }
        r = self.api.post("/api/v1/nodes", json=node)
        assert r.status_code in (201, 409), r.text
        script = "mkdir -p /www && hostname > /www/index.html && httpd -p 9090 -h /www && exec httpd -f -p 8080 -h /www"
        for ns, name, app in (
            (NS_SRV, "srv", "srv"),
            (NS_SRV, "cli-a", "cli"),
            (NS_FRIEND, "cli-b", "cli"),
            (NS_OTHER, "cli-c", "cli"),
        ):
            self.containers[name], self.ip[name] = self.bridge.run(
                image, name, ["sh", "-c", script], hostname=name
            )
            self.pod(ns, name, app)

    def pod(self, ns: str, name: str, app: str) -> None:
        body = {
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {
                "nodeName": NODE,
                "containers": [
                    {
                        "name": "c",
                        "image": "busybox",
                        "ports": [
                            {"name": "http", "containerPort": 8080},
                            {"name": "alt", "containerPort": 9090},
                        ],
                    }
                ],
            },
        }
        r = self.api.post(f"/api/v1/namespaces/{ns}/pods", json=body)
        assert r.status_code == 201, r.text
        cur = r.json()
        cur["status"] = {"phase": "Running", "podIP": self.ip[name], "podIPs": [{"ip": self.ip[name]}]}
        r = self.api.put(f"/api/v1/namespaces/{ns}/pods/{name}/status", json=cur)
        assert r.status_code == 200, r.text

    def start_proxy(self) -> None:
        self.proxy.start()
        wait.wait_for(lambda: "network policy rules synced" in self.proxy.log(), 30, "policy sync")

    def teardown(self) -> None:
        self.proxy.stop()
        podnet.remove_proxy_chains(PREFIX)
        self.bridge.remove()
        for ns in (NS_SRV, NS_FRIEND, NS_OTHER):
            self.api.delete(f"/api/v1/namespaces/{ns}")
        self.api.delete(f"/api/v1/nodes/{NODE}")
        self.proxy.cleanup()

    # -- helpers ---------------------------------------------------------------------------------
    def policy(self, ns: str, name: str, **spec: Any) -> None:
        spec.setdefault("podSelector", {})
        r = self.api.post(
            f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
            json={"metadata": {"name": name}, "spec": spec},
        )
        assert r.status_code == 201, r.text
        self.policies.append((ns, name))

    def delete_policies(self) -> None:
        for ns, name in self.policies:
            self.api.delete(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}")
        self.policies.clear()
        wait.wait_for(lambda: "-j DROP" not in self.rules(), 20, "policy chains emptied")

    def rules(self) -> str:
        out = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True).stdout
        return "\n".join(line for line in out.splitlines() if f"{PREFIX}-NWPLCY" in line)

    def wait_rules(self, *fragments: str) -> None:
        """Wait until the policy chains hold every fragment (the proxy has seen the change)."""
        wait.wait_for(lambda: all(f in self.rules() for f in fragments), 20, f"rules with {fragments}")

    def connects(self, src: str, dst: str, port: int = 8080, host: str = "") -> bool:
        url = f"http://{host or self.ip[dst]}:{port}/"
        code, out = self.containers[src].exec_run(["timeout", str(CHECK_TIMEOUT), "wget", "-q", "-O-", url])
        return code == 0 and out.decode().strip() == dst

    def allowed(self, src: str, dst: str, port: int = 8080, host: str = "") -> None:
        # a first attempt may lose its SYN to ARP on a busy machine: a few tries
        wait.wait_for(lambda: self.connects(src, dst, port, host), 15, f"{src} -> {dst}:{port} allowed")

    def denied(self, src: str, dst: str, port: int = 8080, host: str = "") -> None:
        assert not self.connects(src, dst, port, host), f"{src} -> {dst}:{port} should be dropped"


@pytest.fixture(scope="module")
def cluster(apiserver: APIServerProcess) -> Iterator[Cluster]:
    with apiserver.http() as api:
        c = Cluster(api, apiserver)
        try:
            c.setup()
            c.start_proxy()
            yield c
        finally:
            print(c.proxy.log()[-20000:])
            c.teardown()
            podnet.assert_no_chains(PREFIX)


@pytest.fixture()
def net(cluster: Cluster) -> Iterator[Cluster]:
    try:
        yield cluster
    finally:
        cluster.delete_policies()


def test_jump_moved_first_in_one_transaction() -> None:
    """ensure_first on a chain of the test's own (standing in for FORWARD): the jump behind
    another rule, twice, becomes the first rule, once, through a real iptables-restore."""
    prefix, builtin = PREFIX + "J", PREFIX + "J-FWD"
    target = model.main_chain(prefix)
    ipt = ["iptables", "-w", "-t", "filter"]
    try:
        for chain in (target, builtin):
            subprocess.run([*ipt, "-N", chain], check=True)
        subprocess.run([*ipt, "-A", builtin, "-p", "udp", "-j", "RETURN"], check=True)
        for _ in range(2):
            subprocess.run([*ipt, "-A", builtin, *netpol.jump_spec(prefix)], check=True)
        assert asyncio.run(netpol.ensure_first(builtin, prefix)) is True
        rules = subprocess.run([*ipt, "-S", builtin], capture_output=True, text=True).stdout.splitlines()[1:]
        assert len(rules) == 2 and rules[0].endswith(f"-j {target}") and "-p udp" in rules[1]
        assert asyncio.run(netpol.ensure_first(builtin, prefix)) is False
    finally:
        for chain in (builtin, target):
            subprocess.run([*ipt, "-F", chain], capture_output=True)
            subprocess.run([*ipt, "-X", chain], capture_output=True)


def test_no_policy_everything_connects(net: Cluster) -> None:
    net.allowed("cli-a", "srv")
    net.allowed("cli-c", "srv", 9090)
    net.allowed("srv", "cli-b")

    # the jumps are first in FORWARD and INPUT (behind only other clusters' policy jumps)
    # (the policy controller adds them at its first sync, which may come after the pods connect)
    def rules_with_jump(chain: str) -> list[str] | None:
        out = subprocess.run(["iptables", "-S", chain], capture_output=True, text=True).stdout.splitlines()
        rules = [r for r in out if r.startswith("-A ")]
        return rules if any(r.endswith(f"-j {PREFIX}-NWPLCY") for r in rules) else None

    for chain in ("FORWARD", "INPUT"):
        rules = wait.wait_for(lambda c=chain: rules_with_jump(c), 30, f"the policy jump in {chain}")
        ours = next(i for i, r in enumerate(rules) if r.endswith(f"-j {PREFIX}-NWPLCY"))
        assert all("minik network policy" in r for r in rules[:ours]), rules[: ours + 1]


def test_default_deny_ingress(net: Cluster) -> None:
    net.policy(NS_SRV, "default-deny-ingress", policyTypes=["Ingress"])
    net.wait_rules(f'"{NS_SRV}/srv ingress"', f'"{NS_SRV}/cli-a ingress"')
    net.denied("cli-a", "srv")
    net.denied("cli-b", "srv", 9090)
    net.denied("srv", "cli-a")  # cli-a is isolated too (the policy selects every pod of the namespace)
    # the other way: isolated pods may still connect out (egress is not isolated), replies come back
    net.allowed("srv", "cli-b")
    net.allowed("cli-a", "cli-c", 9090)
    # the host reaches the pods (kubelet probes)
    r = httpx.get(f"http://{net.ip['srv']}:8080/", timeout=5)
    assert r.status_code == 200 and r.text.strip() == "srv"


def test_allow_from_namespace_and_service_vip(net: Cluster) -> None:
    net.policy(NS_SRV, "default-deny-ingress", policyTypes=["Ingress"])
    net.policy(
        NS_SRV,
        "from-friends",
        podSelector={"matchLabels": {"app": "srv"}},
        ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "friends"}}}]}],
    )
    net.wait_rules(f"{NS_SRV}/from-friends ingress[0]")
    net.allowed("cli-b", "srv")
    net.allowed("cli-b", "srv", 9090)
    net.denied("cli-c", "srv")
    net.denied("cli-a", "srv")  # same namespace, but not a friend
    # through a Service: judged by the pod IP after DNAT
    r = net.api.post(
        f"/api/v1/namespaces/{NS_SRV}/services",
        json={
            "metadata": {"name": "srv"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    )
    assert r.status_code == 201, r.text
    vip = r.json()["spec"]["clusterIP"]
    r = net.api.post(
        f"/api/v1/namespaces/{NS_SRV}/endpoints",
        json={
            "metadata": {"name": "srv"},
            "subsets": [{"addresses": [{"ip": net.ip["srv"]}], "ports": [{"name": "http", "port": 8080}]}],
        },
    )
    assert r.status_code == 201, r.text
    try:
        wait.wait_for(
            lambda: (
                f"-d {vip}/32"
                in subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
            ),
            20,
            "VIP rule",
        )
        net.allowed("cli-b", "srv", 80, host=vip)
        net.denied("cli-c", "srv", 80, host=vip)
    finally:
        net.api.delete(f"/api/v1/namespaces/{NS_SRV}/services/srv")
        net.api.delete(f"/api/v1/namespaces/{NS_SRV}/endpoints/srv")


def test_named_port_and_pod_selector(net: Cluster) -> None:
    net.policy(
        NS_SRV,
        "http-only",
        podSelector={"matchLabels": {"app": "srv"}},
        ingress=[{"ports": [{"protocol": "TCP", "port": "http"}]}],
    )
    net.wait_rules(f"{NS_SRV}/http-only ingress[0]")
    net.allowed("cli-c", "srv")  # 8080 is srv's "http" port
    net.denied("cli-c", "srv", 9090)
    net.allowed("srv", "cli-a", 9090)  # cli-a is not selected


def test_egress_deny_then_allow_to_pods_and_port(net: Cluster) -> None:
    net.policy(NS_FRIEND, "default-deny-egress", policyTypes=["Egress"])
    net.wait_rules(f'"{NS_FRIEND}/cli-b egress"')
    net.denied("cli-b", "srv")
    net.denied("cli-b", "cli-c", 9090)
    net.allowed("srv", "cli-b")  # ingress into cli-b is not isolated: its replies go out
    net.policy(
        NS_FRIEND,
        "to-srv-http",
        policyTypes=["Egress"],
        egress=[
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS_SRV}},
                        "podSelector": {"matchLabels": {"app": "srv"}},
                    }
                ],
                "ports": [{"protocol": "TCP", "port": 8080}],
            },
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},  # DNS anywhere
        ],
    )
    net.wait_rules(f"{NS_FRIEND}/to-srv-http egress[0]")
    net.allowed("cli-b", "srv")
    net.denied("cli-b", "srv", 9090)
    net.denied("cli-b", "cli-a")  # in the srv namespace, but not app=srv


def test_egress_to_the_host_passes_input(net: Cluster) -> None:
    """Pod -> host traffic (minik-dns is a host process on the pod network's gateway) meets the
    egress rules in INPUT: a listener of the test's own on the bridge's gateway address."""
    with socket.socket() as srv:
        srv.bind((net.gateway, 0))
        srv.listen(8)
        port = srv.getsockname()[1]

        def serve() -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhost\n")

        threading.Thread(target=serve, daemon=True).start()
        net.ip["host"] = net.gateway
        try:
            net.allowed("cli-b", "host", port)
            net.policy(NS_FRIEND, "default-deny-egress", policyTypes=["Egress"])
            net.wait_rules(f'"{NS_FRIEND}/cli-b egress"')
            net.denied("cli-b", "host", port)
            net.policy(NS_FRIEND, "to-host", policyTypes=["Egress"], egress=[{"ports": [{"port": port}]}])
            net.wait_rules(f"{NS_FRIEND}/to-host egress[0]")
            net.allowed("cli-b", "host", port)
        finally:
            srv.shutdown(socket.SHUT_RDWR)  # ends the accept loop


def test_kubectl_get_and_describe(net: Cluster, apiserver: APIServerProcess, kubectl_bin: str) -> None:
    net.policy(
        NS_SRV,
        "web-policy",
        podSelector={"matchLabels": {"app": "srv"}},
        ingress=[
            {
                "from": [{"namespaceSelector": {"matchLabels": {"team": "friends"}}}],
                "ports": [{"port": "http"}],
            }
        ],
    )
    net.policy(NS_SRV, "deny-all", policyTypes=["Ingress", "Egress"])

    def kubectl(*args: str) -> str:
        proc = subprocess.run(
            [kubectl_bin, "--kubeconfig", apiserver.kubeconfig, "-n", NS_SRV, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    lines = kubectl("get", "netpol").splitlines()
    assert lines[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    assert [line.split()[:2] for line in lines[1:]] == [["deny-all", "<none>"], ["web-policy", "app=srv"]]
    # bad input: a 422 Status naming the field
    r = net.api.post(
        f"/apis/networking.k8s.io/v1/namespaces/{NS_SRV}/networkpolicies",
        json={
            "metadata": {"name": "bad"},
            "spec": {
                "podSelector": {},
                "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/8"]}}]}],
            },
        },
    )
    assert r.status_code == 422, r.text
    assert r.json()["reason"] == "Invalid"
    assert [(c["field"], c["message"]) for c in r.json()["details"]["causes"]] == [
        (
            "spec.ingress[0].from[0].ipBlock.except[0]",
            'Invalid value: "11.0.0.0/8": must be a strict subset of `cidr`',
        )
    ]
    described = kubectl("describe", "networkpolicy", "web-policy")
    assert "PodSelector:     app=srv" in described
    assert "team=friends" in described and "Policy Types: Ingress" in described


def test_ip_block_with_except(net: Cluster) -> None:
    net.policy(
        NS_SRV,
        "block",
        podSelector={"matchLabels": {"app": "srv"}},
        ingress=[{"from": [{"ipBlock": {"cidr": net.subnet, "except": [f"{net.ip['cli-c']}/32"]}}]}],
    )
    net.wait_rules(f"{NS_SRV}/block ingress[0]")
    net.allowed("cli-a", "srv")
    net.allowed("cli-b", "srv", 9090)
    net.denied("cli-c", "srv")
    net.allowed("srv", "cli-c")


def test_no_network_policy_removes_the_chains(cluster: Cluster, apiserver: APIServerProcess) -> None:
    """Last in the module: a proxy started with --no-network-policy removes the policy chains an
    earlier run left (a stopped proxy leaves its rules, as kube-proxy does) and writes none."""
    cluster.policy(NS_SRV, "default-deny-ingress", policyTypes=["Ingress"])
    cluster.wait_rules(f'"{NS_SRV}/srv ingress"')
    cluster.proxy.stop()
    assert f":{PREFIX}-NWPLCY " in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    plain = python_module(
        "proxy",
        "proxy.command",
        apiserver,
        "--node-name",
        NODE,
        "--iptables-chain-prefix",
        PREFIX,
        "--no-network-policy",
    )
    try:
        plain.start()
        wait.wait_for(lambda: f"proxy for node {NODE} synced" in plain.log(), 30, "proxy sync")
        saved = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        assert f"{PREFIX}-NWPLCY" not in saved
        assert f":{PREFIX}-SERVICES " in saved
        cluster.allowed("cli-a", "srv")  # the policy is not enforced any more
    finally:
        plain.stop()
        plain.cleanup()
        cluster.delete_policies()
