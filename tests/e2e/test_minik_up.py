"""``minik up`` end to end: a whole cluster from a clean state directory, a Deployment and a
NodePort Service driven with ``minik`` and the real kubectl, a component killed and restarted,
``minik up`` again, then ``minik down`` leaving no container, CNI bridge or conflist, iptables rule
or process.

The cluster has its own ports, node name, pod (cluster) and service CIDRs, CNI network (bridge,
conflist and results cache in its state directory) and iptables chain prefix, so it never clashes
with a cluster a person runs on the same host.  Node IPAM gives the node the pod CIDR (a /24: all
of it); pods resolve through the kube-dns ClusterIP.  It needs root,
a Docker engine, iptables and kubectl (``testkit.prereq``: skipped locally without them, failed
with ``CI=true``); one cluster serves the whole module, and it is torn down in a finally even when
a test fails.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit import prereq, wait
from testkit.host import processes_mentioning
from testkit.images import ensure_busybox_image
from testkit.minik_up import MinikUpCluster, minik_up_cluster

BIN = Path(sys.executable).parent
MINIK = str(BIN / "minik")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60, every: float = 0.2) -> Any:
    return wait.wait_for(check, timeout, what, every, retry_errors=True)


def iptables_rules() -> str:
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    flt = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True).stdout
    return nat + flt


@pytest.fixture(scope="module")
def kubectl_bin() -> str:
    return prereq.require_kubectl()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, kubectl_bin: str) -> Iterator[MinikUpCluster]:
    """Not started: the first test runs `minik up`."""
    prereq.require_node_host()
    ensure_busybox_image()
    with minik_up_cluster(tmp_path_factory.mktemp("minik-up"), "up", "MU", up=False) as c:
        yield c


APP = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: IMAGE
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && echo hello from $(hostname) > /www/index.html && echo serving && exec httpd -f -p 8080 -h /www"]
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"""


def test_up_starts_every_component_and_writes_the_kubeconfig(
    cluster: MinikUpCluster, kubectl_bin: str
) -> None:
    out = cluster.minik("up", *cluster.up_args).stdout
    for name in (
        "etcd",
        "apiserver",
        "controller-manager",
        "scheduler",
        "kubelet",
        "proxy",
        "dns",
        "metrics-server",
    ):
        assert f"✓ {name}" in out, out
    assert "minik is up" in out
    assert f"node {cluster.node} Ready" in out
    status = cluster.minik("status", "--state-dir", str(cluster.state)).stdout
    assert "unhealthy" not in status, status
    assert "readyz ok" in status and f"node {cluster.node} Ready" in status
    # the cluster DNS answers the `kubernetes` Service's name with its ClusterIP, the first service IP
    service_ip = str(
        next(ipaddress.ip_network(cluster.up_args[cluster.up_args.index("--service-cidr") + 1]).hosts())
    )
    assert f"NOERROR {service_ip}" in " ".join(status.split())  # the table may wrap the line
    # node IPAM gave the node the cluster CIDR (a /24) and the kubelet's CNI network uses it
    node = json.loads(cluster.minik("get", "node", cluster.node, "-o", "json").stdout)
    assert node["spec"]["podCIDR"] == cluster.pod_cidr
    conflist = json.loads((Path(cluster.cni_dirs[0]) / f"10-{cluster.network}.conflist").read_text())
    bridge = conflist["plugins"][0]
    assert bridge["bridge"] == cluster.bridge
    assert bridge["ipam"]["ranges"][0][0]["subnet"] == cluster.pod_cidr
    # DNS behind the kube-dns ClusterIP (10th service address), its endpoint the node's gateway
    dns_ip = str(ipaddress.ip_network(cluster.up_args[cluster.up_args.index("--service-cidr") + 1])[10])
    kube_dns = json.loads(cluster.minik("get", "svc", "kube-dns", "-n", "kube-system", "-o", "json").stdout)
    assert kube_dns["spec"]["clusterIP"] == dns_ip
    eps = json.loads(cluster.minik("get", "endpoints", "kube-dns", "-n", "kube-system", "-o", "json").stdout)
    gateway = str(next(ipaddress.ip_network(cluster.pod_cidr).hosts()))
    assert [a["ip"] for a in eps["subsets"][0]["addresses"]] == [gateway]
    # the real kubectl drives the cluster through the context `minik up` wrote
    nodes = subprocess.run(
        [kubectl_bin, "--cache-dir", str(cluster.state / "kubectl-cache"), "get", "nodes"],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nodes.returncode == 0, nodes.stderr
    assert cluster.node in nodes.stdout and "Ready" in nodes.stdout


def test_the_api_is_https_only_and_the_kubeconfig_carries_the_admin_certificate(
    cluster: MinikUpCluster,
) -> None:
    import base64
    import http.client
    import ssl
    import stat
    import urllib.error

    import yaml

    from apimachinery.pki import subject_of

    conf = yaml.safe_load(cluster.kubeconfig.read_text())
    assert conf["current-context"] == "minik"
    [entry] = [c["cluster"] for c in conf["clusters"] if c["name"] == "minik"]
    assert entry["server"] == f"https://127.0.0.1:{cluster.api_port}"
    assert "insecure-skip-tls-verify" not in entry
    ca = base64.b64decode(entry["certificate-authority-data"])
    assert ca == (cluster.state / "pki" / "ca.crt").read_bytes()
    [user] = [u["user"] for u in conf["users"] if u["name"] == "minik"]
    cert = base64.b64decode(user["client-certificate-data"])
    assert subject_of(cert) == ("kubernetes-admin", ("system:masters",))
    for key in (cluster.state / "pki").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((cluster.state / "pki").stat().st_mode) == 0o700
    # plain HTTP on the API port gets no answer, and the CA verifies the server's certificate
    with pytest.raises((urllib.error.URLError, OSError, http.client.HTTPException)):
        urllib.request.urlopen(f"http://127.0.0.1:{cluster.api_port}/healthz", timeout=3)
    ctx = ssl.create_default_context(cadata=ca.decode())
    with urllib.request.urlopen(f"https://127.0.0.1:{cluster.api_port}/healthz", context=ctx, timeout=3) as r:
        assert r.read() == b"ok"
    # the advertised address (where pods and other hosts reach it) is covered by the certificate too
    adv = json.loads((cluster.state / "config.json").read_text())["advertise_address"]
    with urllib.request.urlopen(f"https://{adv}:{cluster.api_port}/healthz", context=ctx, timeout=3) as r:
        assert r.read() == b"ok"


def test_every_component_runs_as_its_own_user(cluster: MinikUpCluster) -> None:
    status = cluster.status()
    for name in ("controller-manager", "scheduler", "kubelet", "proxy", "dns", "metrics-server"):
        argv = status[name]["argv"]
        assert argv[argv.index("--kubeconfig") + 1] == str(cluster.state / "kubeconfigs" / f"{name}.conf")
        assert "--api-server" not in argv
    users = {
        "system:kube-controller-manager",
        "system:kube-scheduler",
        f"system:node:{cluster.node}",
        "system:kube-proxy",
        "system:minik-dns",
        "system:metrics-server",
    }

    def seen() -> set[str]:
        lines = (cluster.state / "logs" / "audit.log").read_text().splitlines()
        return {json.loads(line)["user"]["username"] for line in lines if line.strip()}

    wait_for("a request of every component in the audit log", lambda: users <= seen(), timeout=30)


def test_top_through_the_aggregation_layer(cluster: MinikUpCluster) -> None:
    # metrics-server scrapes every 15 s: the node's figures come after two scrapes
    def top() -> str | None:
        proc = cluster.minik("top", "nodes", check=False, timeout=60)
        return proc.stdout if proc.returncode == 0 else None

    out = wait_for("minik top nodes", top, timeout=120, every=2)
    assert out.splitlines()[0].split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    assert out.splitlines()[1].split()[0] == cluster.node


def test_a_user_kubeconfig_is_a_separate_identity(cluster: MinikUpCluster, kubectl_bin: str) -> None:
    out = cluster.minik("kubeconfig", "user", "alice", "--group", "dev", "--merge").stdout
    assert 'context "minik-alice"' in out

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        cache = ["--cache-dir", str(cluster.state / "kubectl-cache")]
        return subprocess.run(
            [kubectl_bin, *cache, *args], env=cluster.env, capture_output=True, text=True, timeout=60
        )

    denied = kubectl("--context", "minik-alice", "get", "pods")
    assert denied.returncode != 0
    assert (
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default"'
        in denied.stderr
    )
    assert kubectl("config", "current-context").stdout.strip() == "minik"
    made = kubectl("create", "rolebinding", "alice-view", "--clusterrole", "view", "--group", "dev")
    assert made.returncode == 0, made.stderr
    wait_for(
        "alice allowed to list pods through her group",
        lambda: kubectl("--context", "minik-alice", "get", "pods").returncode == 0,
        timeout=10,
    )
    refused = kubectl("--context", "minik-alice", "create", "configmap", "by-alice", "--from-literal", "a=b")
    assert refused.returncode != 0
    assert 'configmaps is forbidden: User "alice" cannot create resource "configmaps"' in refused.stderr


def test_first_app_with_get_describe_logs_exec_and_the_node_port(cluster: MinikUpCluster) -> None:
    manifest = cluster.state / "app.yaml"
    manifest.write_text(APP.replace("IMAGE", ensure_busybox_image()))
    applied = cluster.minik("apply", "-f", str(manifest)).stdout
    assert "deployment.apps/web created" in applied and "service/web created" in applied

    def running_pods() -> list[str]:
        out = cluster.minik("get", "pods", "-l", "app=web", "--no-headers").stdout
        rows = [line.split() for line in out.splitlines() if line.strip()]
        return [r[0] for r in rows] if len(rows) == 2 and all(r[2] == "Running" for r in rows) else []

    pods = wait_for("two web pods Running", running_pods, timeout=60)
    wide = cluster.minik("get", "pods", "-o", "wide").stdout
    assert cluster.node in wide
    # pod IPs from the node's pod CIDR (CNI host-local), pods asking the kube-dns ClusterIP
    for name in pods:
        pod = json.loads(cluster.minik("get", "pod", name, "-o", "json").stdout)
        assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(cluster.pod_cidr)
    resolv = cluster.minik("exec", pods[0], "--", "cat", "/etc/resolv.conf").stdout
    dns_ip = str(ipaddress.ip_network(cluster.up_args[cluster.up_args.index("--service-cidr") + 1])[10])
    assert f"nameserver {dns_ip}" in resolv

    describe = cluster.minik("describe", "deployment", "web").stdout
    assert "ScalingReplicaSet" in describe and "2 desired | 2 updated" in describe
    wait_for("the pod's log", lambda: "serving" in cluster.minik("logs", pods[0]).stdout)

    svc = json.loads(cluster.minik("get", "svc", "web", "-o", "json").stdout)
    node_port = svc["spec"]["ports"][0]["nodePort"]
    # never send to a Service before the proxy's rule for it exists
    wait_for(
        "the proxy's rule for default/web",
        lambda: any(
            line.startswith(f"-A {cluster.prefix}-SERVICES ") and "default/web" in line
            for line in iptables_rules().splitlines()
        ),
    )

    def via_node_port() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{node_port}/", timeout=3) as r:
            body: str = r.read().decode()
        return body

    assert wait_for("the NodePort answering", via_node_port).startswith("hello from web-")
    # from inside a pod: the cluster DNS resolves the Service and the proxy forwards its VIP
    inside = cluster.minik("exec", pods[0], "--", "wget", "-O-", "http://web/").stdout
    assert inside.startswith("hello from web-")


def test_a_killed_component_is_restarted(cluster: MinikUpCluster) -> None:
    pid = cluster.status()["scheduler"]["pid"]
    os.kill(pid, 9)

    def restarted() -> bool:
        info = cluster.status()["scheduler"]
        return bool(info["pid"] and info["pid"] != pid and info["restarts"] == 1)

    wait_for("the scheduler restarted", restarted, timeout=30)
    status = cluster.minik("status", "--state-dir", str(cluster.state)).stdout
    line = next(line for line in status.splitlines() if line.startswith("scheduler"))
    assert "1 (last exit -9)" in line and "healthy" in line
    log = (cluster.state / "logs" / "supervisor.log").read_text()
    assert "scheduler (exit code -9) died" in log and "restarted scheduler" in log


def test_up_again_reports_the_running_cluster(cluster: MinikUpCluster) -> None:
    before = cluster.status()
    out = cluster.minik("up", "--state-dir", str(cluster.state)).stdout
    assert "minik is already running" in out and f"127.0.0.1:{cluster.api_port}" in out
    assert {k: v["pid"] for k, v in cluster.status().items()} == {k: v["pid"] for k, v in before.items()}


def test_down_leaves_nothing_behind_and_keeps_state(cluster: MinikUpCluster) -> None:
    pids = [info["pid"] for info in cluster.status().values() if info["pid"]]
    supervisor = int((cluster.state / "supervisor.pid").read_text())
    out = cluster.minik("down", "--state-dir", str(cluster.state)).stdout
    assert "minik stopped" in out

    import docker

    client = docker.from_env()
    try:
        assert client.containers.list(all=True, filters={"label": f"io.minik.node={cluster.node}"}) == []
        assert client.networks.list(names=[cluster.network]) == []
    finally:
        client.close()
    rules = iptables_rules()
    assert cluster.prefix not in rules
    # the CNI network is gone: bridge, conflist, addresses, and the plugins' rules for the pods
    assert subprocess.run(["ip", "link", "show", "dev", cluster.bridge], capture_output=True).returncode != 0
    conf_dir, cache_dir = cluster.cni_dirs
    assert not (Path(conf_dir) / f"10-{cluster.network}.conflist").exists()
    assert not (Path(cache_dir) / "networks" / cluster.network).exists()
    assert not list((Path(cache_dir) / "results").glob(f"{cluster.network}-*"))
    pod_prefix = cluster.pod_cidr.rsplit(".", 1)[0] + "."
    assert pod_prefix not in rules, [line for line in rules.splitlines() if pod_prefix in line]
    for pid in [supervisor, *pids]:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert processes_mentioning(str(cluster.state), f"--node-name {cluster.node}") == []
    assert (cluster.state / "etcd").is_dir() and (cluster.state / "config.json").exists()
    assert (
        "minik is not running"
        in cluster.minik("status", "--state-dir", str(cluster.state), check=False).stdout
    )


def test_up_after_down_reuses_the_certificates_and_keys(cluster: MinikUpCluster) -> None:
    pki = cluster.state / "pki"
    before = {str(p.relative_to(pki)): p.read_bytes() for p in pki.rglob("*") if p.is_file()}
    secret_key = (cluster.state / "encryption-config.yaml").read_bytes()
    out = cluster.minik("up", *cluster.up_args).stdout
    assert "minik is up" in out
    assert {str(p.relative_to(pki)): p.read_bytes() for p in pki.rglob("*") if p.is_file()} == before
    assert (cluster.state / "encryption-config.yaml").read_bytes() == secret_key
    nodes = cluster.minik("get", "nodes").stdout
    assert cluster.node in nodes
    assert "minik stopped" in cluster.minik("down", "--state-dir", str(cluster.state)).stdout
