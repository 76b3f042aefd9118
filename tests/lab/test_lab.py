"""The multi-node lab end to end: `minik lab up --nodes 3` on this Docker host, then scheduling,
spreading, cross-node networking, node failure and etcd member failure against it.

The workers sit on two Docker networks joined by a router container (node-1 and node-3 on
segment A with the control plane, node-2 on segment B), so pod traffic between node-1 and node-2
crosses the router inside the kubelets' VXLAN overlay (device minik.1).

One lab serves the whole module (built images are reused; `lab up` rebuilds only when the sources
changed).  It runs in its own compose project, subnet, API port, state directory and kubeconfig, so
a lab the user runs is never touched, and `lab down` runs in the fixture's teardown whatever
happens.  The tests run in file order; the last one takes the lab down and checks nothing is left.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.lab import render_compose
from testkit import prereq
from testkit.api import apps
from testkit.host import free_port
from testkit.images import ensure_busybox_image

REPO = Path(__file__).resolve().parents[2]
PROJECT = "minik-labtest"
SUBNET = "10.214.0.0/24"
ROUTER_A = "10.214.0.10"  # the router's address on segment A (cli.lab.addresses)
VXLAN_DEVICE = "minik.1"
NODES = ["node-1", "node-2", "node-3"]
NS = "default"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120, every: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, KeyError) as e:
            last = e
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(every)


class Lab:
    def __init__(self, env: dict[str, str], server: str, pki: Path) -> None:
        self.env = env
        self.server = server
        self.pki = pki
        self._api: httpx.Client | None = None

    @property
    def api(self) -> httpx.Client:
        """HTTPS as the lab's admin, trusting the lab's CA (both made by `lab up`)."""
        if self._api is None:
            import ssl

            ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
            ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
            self._api = httpx.Client(base_url=self.server, verify=ctx, timeout=10)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()

    def cli(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "cli.lab", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            pytest.fail(f"minik {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    # -- API helpers ---------------------------------------------------------------------------------

    def nodes_ready(self) -> dict[str, str]:
        out = {}
        for node in self.api.get("/api/v1/nodes").json()["items"]:
            conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions") or []}
            out[node["metadata"]["name"]] = conds.get("Ready", "Unknown")
        return out

    def pods(self, selector: str) -> list[dict[str, Any]]:
        resp = self.api.get(f"/api/v1/namespaces/{NS}/pods", params={"labelSelector": selector})
        resp.raise_for_status()
        return list(resp.json()["items"])

    def pod(self, name: str) -> dict[str, Any]:
        resp = self.api.get(f"/api/v1/namespaces/{NS}/pods/{name}")
        resp.raise_for_status()
        return dict(resp.json())

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.api.post(path, json=body)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def delete(self, path: str) -> None:
        """Best-effort cleanup: the lab may be gone already (the last test takes it down)."""
        try:
            self.api.delete(path, params={"propagationPolicy": "Background"})
        except httpx.HTTPError:
            pass

    def exec(self, service: str, *argv: str) -> str:
        """Run ``argv`` in a lab container; its stdout."""
        proc = subprocess.run(
            ["docker", "exec", self.container(service), *argv], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, (service, argv, proc.stderr)
        return proc.stdout

    def vxlan_packets(self, node: str, direction: str) -> int:
        """``tx_packets`` or ``rx_packets`` of the node's vxlan device."""
        return int(self.exec(node, "cat", f"/sys/class/net/{VXLAN_DEVICE}/statistics/{direction}_packets"))

    def container(self, service: str) -> str:
        out = subprocess.run(
            [
                "docker",
                "ps",
                "-aq",
                "--filter",
                f"label=com.docker.compose.project={PROJECT}",
                "--filter",
                f"label=com.docker.compose.service={service}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out, f"no container for {service}"
        return out[0]


def _project_objects() -> dict[str, list[str]]:
    label = f"label=com.docker.compose.project={PROJECT}"
    found = {}
    for kind, argv in {
        "containers": ["docker", "ps", "-aq", "--filter", label],
        "networks": ["docker", "network", "ls", "-q", "--filter", label],
        "volumes": ["docker", "volume", "ls", "-q", "--filter", label],
    }.items():
        found[kind] = subprocess.run(argv, capture_output=True, text=True).stdout.split()
    return found


def _force_cleanup(env: dict[str, str], state: Path) -> None:
    """`lab down`, then compose down on the state's file and a sweep by label, whatever failed before."""
    subprocess.run([sys.executable, "-m", "cli.lab", "lab", "down"], cwd=REPO, env=env, capture_output=True)
    compose_file = state / "lab" / PROJECT / "docker-compose.yml"
    if compose_file.exists() and shutil.which("docker-compose"):
        subprocess.run(
            ["docker-compose", "-p", PROJECT, "-f", str(compose_file), "down", "-v", "--remove-orphans"],
            capture_output=True,
        )
    left = _project_objects()
    if left["containers"]:
        subprocess.run(["docker", "rm", "-fv", *left["containers"]], capture_output=True)
    if left["networks"]:
        subprocess.run(["docker", "network", "rm", *left["networks"]], capture_output=True)
    if left["volumes"]:
        subprocess.run(["docker", "volume", "rm", "-f", *left["volumes"]], capture_output=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    prereq.require_docker()
    prereq.require_compose()
    state = tmp_path_factory.mktemp("lab-state")
    port = free_port()
    env = {
        **os.environ,
        "MINIK_STATE_DIR": str(state),
        "KUBECONFIG": str(state / "kubeconfig"),
        "MINIK_LAB_PROJECT": PROJECT,
        "MINIK_LAB_SUBNET": SUBNET,
        "MINIK_LAB_API_PORT": str(port),
        "COLUMNS": "200",
    }
    lab = Lab(env, f"https://127.0.0.1:{port}", state / "lab" / PROJECT / "pki")
    try:
        # a short node-monitor grace period and eviction timeout, so a stopped node's pods move soon
        lab.cli(
            "lab",
            "up",
            "--nodes",
            "3",
            "--node-monitor-grace-period",
            "12",
            "--pod-eviction-timeout",
            "5",
            "--timeout",
            "300",
            timeout=900,
        )
        image = ensure_busybox_image()
        lab.cli("image", "load", image)
        yield lab
    finally:
        lab.close()
        _force_cleanup(env, state)


# -- manifests ---------------------------------------------------------------------------------------------

WEB_COMMAND = ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]


def web_container() -> dict[str, Any]:
    return {
        "name": "web",
        "image": "minik-test/busybox:1",
        "imagePullPolicy": "Never",
        "command": WEB_COMMAND,
        "ports": [{"containerPort": 8080}],
    }


def deployment(name: str, replicas: int, tolerate_seconds: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [web_container()], "terminationGracePeriodSeconds": 1}
    if tolerate_seconds is not None:
        spec["tolerations"] = [
            {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": tolerate_seconds}
            for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
        ]
    return apps("Deployment", name, spec, replicas)


def pinned_pod(name: str, node: str, labels: dict[str, str], container: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
        },
    }


def client_pod(name: str, node: str, urls: list[str]) -> dict[str, Any]:
    """A pod that fetches every URL once (retrying each for a while) and succeeds if all answered."""
    script = " && ".join(
        f"(for i in $(seq 1 20); do wget -O- {u} && exit 0; sleep 1; done; exit 1)" for u in urls
    )
    container = {
        "name": "client",
        "image": "minik-test/busybox:1",
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
    }
    return pinned_pod(name, node, {"app": name}, container)


def running_active(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        p
        for p in pods
        if not p["metadata"].get("deletionTimestamp") and (p.get("status") or {}).get("phase") == "Running"
    ]


def wait_succeeded(lab: Lab, name: str, timeout: float = 120) -> None:
    def done() -> bool:
        phase = (lab.pod(name).get("status") or {}).get("phase")
        if phase == "Failed":
            pytest.fail(f"pod {name} failed: {lab.pod(name).get('status')}")
        return phase == "Succeeded"

    wait_for(f"pod {name} to succeed", done, timeout)


# -- tests -------------------------------------------------------------------------------------------------


def test_compose_file_in_deploy_matches_the_renderer() -> None:
    """deploy/docker-compose.yml is `minik lab render` for 3 nodes (regenerate it after changes)."""
    from cli.lab import LabConfig

    assert (REPO / "deploy" / "docker-compose.yml").read_text() == render_compose(LabConfig(nodes=3), ".")


def test_three_nodes_ready(lab: Lab) -> None:
    ready = lab.nodes_ready()
    assert {n: ready.get(n) for n in NODES} == {n: "True" for n in NODES}
    status = lab.cli("lab", "status")
    for name in ["etcd-1", "etcd-2", "etcd-3", "apiserver", "router", *NODES]:
        assert name in status.stdout
    # each node's segment
    for node, segment, other in (("node-1", "segment-a", "segment-b"), ("node-2", "segment-b", "segment-a")):
        rows = [line for line in status.stdout.splitlines() if node in line]
        assert rows and all(segment in r and other not in r for r in rows), status.stdout
    assert "pod network: vxlan" in status.stdout


def _networks(lab: Lab, service: str) -> dict[str, str]:
    """Docker network name -> the container's address on it."""
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", lab.container(service)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {name: net["IPAddress"] for name, net in json.loads(out).items()}


def test_node_1_and_node_2_are_on_different_networks_behind_the_router(lab: Lab) -> None:
    one, two, router = _networks(lab, "node-1"), _networks(lab, "node-2"), _networks(lab, "router")
    assert len(one) == 1 and len(two) == 1 and set(one) != set(two), (one, two)
    assert set(one) | set(two) == set(router), router
    [ip_one], [ip_two] = one.values(), two.values()
    seg_a, seg_b = (ipaddress.ip_network(f"{ip}/25", strict=False) for ip in (ip_one, ip_two))
    assert seg_a != seg_b
    # node-1 reaches node-2 only through the router, which forwards
    route = lab.exec("node-1", "ip", "-4", "route", "get", ip_two)
    assert f"via {ROUTER_A}" in route, route
    assert lab.exec("router", "cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"
    # each kubelet runs the vxlan backend: its Node carries flannel's annotations
    for node in ("node-1", "node-2"):
        ann = lab.api.get(f"/api/v1/nodes/{node}").json()["metadata"].get("annotations") or {}
        assert ann.get("flannel.alpha.coreos.com/backend-type") == "vxlan", ann
        assert ann.get("flannel.alpha.coreos.com/public-ip") == (ip_one if node == "node-1" else ip_two)


def test_everything_speaks_tls_with_its_own_identity(lab: Lab) -> None:
    import base64
    import ssl

    import yaml

    # the minik-lab context carries the lab's CA and the admin certificate
    conf = yaml.safe_load(Path(lab.env["KUBECONFIG"]).read_text())
    [cluster] = [c["cluster"] for c in conf["clusters"] if c["name"] == "minik-lab"]
    assert cluster["server"] == lab.server and "insecure-skip-tls-verify" not in cluster
    assert base64.b64decode(cluster["certificate-authority-data"]) == (lab.pki / "ca.crt").read_bytes()
    # no plain HTTP on the API port; anonymous HTTPS reaches only what anonymous may read
    with pytest.raises(httpx.HTTPError):
        httpx.get(lab.server.replace("https://", "http://") + "/api/v1/nodes", timeout=3)
    ctx = ssl.create_default_context(cafile=str(lab.pki / "ca.crt"))
    with httpx.Client(base_url=lab.server, verify=ctx, timeout=5) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/api/v1/nodes").status_code == 403
    # etcd answers only clients with a certificate of the lab's CA, over TLS
    etcd = lab.container("etcd-1")
    probe = "https://127.0.0.1:2379/health"
    without = subprocess.run(
        [
            "docker",
            "exec",
            etcd,
            "python3",
            "-c",
            f"import urllib.request,ssl; c=ssl.create_default_context(cafile='/etc/minik/pki/ca.crt'); urllib.request.urlopen('{probe}', context=c)",
        ],
        capture_output=True,
        text=True,
    )
    assert without.returncode != 0
    member = subprocess.run(
        [
            "docker",
            "exec",
            etcd,
            "python3",
            "-c",
            f"import urllib.request,ssl; c=ssl.create_default_context(cafile='/etc/minik/pki/ca.crt'); c.load_cert_chain('/etc/minik/pki/etcd-1.crt','/etc/minik/pki/etcd-1.key'); print(urllib.request.urlopen('{probe}', context=c).read().decode())",
        ],
        capture_output=True,
        text=True,
    )
    assert '"health":"true"' in member.stdout.replace(" ", ""), member.stderr
    # each node's kubelet is system:node:NAME, the control plane components their own users
    audit = subprocess.run(
        ["docker", "exec", lab.container("apiserver"), "cat", "/var/log/minik/audit.log"],
        capture_output=True,
        text=True,
    ).stdout
    users = {json.loads(line)["user"]["username"] for line in audit.splitlines() if line.strip()}
    want = {f"system:node:{n}" for n in NODES} | {
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:kube-proxy",
        "system:minik-dns",
    }
    assert want <= users, users


def test_deployment_spreads_over_the_nodes(lab: Lab) -> None:
    path = f"/apis/apps/v1/namespaces/{NS}/deployments"
    lab.create(path, deployment("spread", 6))
    try:
        pods = wait_for(
            "6 running pods of deployment spread",
            lambda: (lambda ps: ps if len(ps) == 6 else None)(running_active(lab.pods("app=spread"))),
            timeout=180,
        )
        placement = sorted(p["spec"]["nodeName"] for p in pods)
        assert set(placement) == set(NODES), placement
        # every pod got an address on its node's pod subnet, the one node IPAM gave the node
        cidrs = {
            n["metadata"]["name"]: ipaddress.ip_network(n["spec"]["podCIDR"])
            for n in lab.api.get("/api/v1/nodes").json()["items"]
        }
        assert len(set(cidrs.values())) == len(cidrs)
        cluster = ipaddress.IPv4Network("10.244.0.0/16")
        assert all(isinstance(c, ipaddress.IPv4Network) and c.subnet_of(cluster) for c in cidrs.values()), (
            cidrs
        )
        for p in pods:
            node = p["spec"]["nodeName"]
            assert ipaddress.ip_address(p["status"]["podIP"]) in cidrs[node], (node, p["status"])
    finally:
        lab.delete(f"{path}/spread")


@pytest.fixture(scope="module")
def echo_pods(lab: Lab) -> Iterator[list[str]]:
    """Web pods pinned to node-2 and node-3; yields their pod IPs."""
    names = ["echo-2", "echo-3"]
    for name, node in zip(names, ["node-2", "node-3"], strict=True):
        labels = {"app": "echo", "echo": name}
        lab.create(f"/api/v1/namespaces/{NS}/pods", pinned_pod(name, node, labels, web_container()))
    try:
        ips = []
        for name in names:

            def running(n: str = name) -> dict[str, Any] | None:
                p = lab.pod(n)
                return p if running_active([p]) and p["status"].get("podIP") else None

            pod = wait_for(f"pod {name} running", running)
            ips.append(pod["status"]["podIP"])
        yield ips
    finally:
        for name in names:
            lab.delete(f"/api/v1/namespaces/{NS}/pods/{name}")


def test_pod_on_node_1_reaches_pods_on_nodes_2_and_3(lab: Lab, echo_pods: list[str]) -> None:
    """The VXLAN overlay: node-1 sends to the other nodes' pods through minik.1, and node-2 (behind
    the router) receives through its own."""
    for ip in echo_pods:
        route = lab.exec("node-1", "ip", "-4", "route", "get", ip)
        assert f"dev {VXLAN_DEVICE}" in route, route
    sent, received = lab.vxlan_packets("node-1", "tx"), lab.vxlan_packets("node-2", "rx")
    name = f"client-{uuid.uuid4().hex[:6]}"
    lab.create(
        f"/api/v1/namespaces/{NS}/pods",
        client_pod(name, "node-1", [f"http://{ip}:8080/" for ip in echo_pods]),
    )
    try:
        wait_succeeded(lab, name)
    finally:
        lab.delete(f"/api/v1/namespaces/{NS}/pods/{name}")
    # a TCP exchange each way at least: SYN, ACK, request, ACKs, FIN
    assert lab.vxlan_packets("node-1", "tx") >= sent + 4
    assert lab.vxlan_packets("node-2", "rx") >= received + 4


def test_pod_on_node_1_reaches_a_service_on_nodes_2_and_3(lab: Lab, echo_pods: list[str]) -> None:
    svc = lab.create(
        f"/api/v1/namespaces/{NS}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "echo"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "echo"},
                "ports": [{"port": 80, "targetPort": 8080}],
            },
        },
    )
    name = f"svc-client-{uuid.uuid4().hex[:6]}"
    try:
        wait_for(
            "endpoints of service echo",
            lambda: (
                len(
                    [
                        a
                        for s in lab.api.get(f"/api/v1/namespaces/{NS}/endpoints/echo").json().get("subsets")
                        or []
                        for a in s.get("addresses") or []
                    ]
                )
                == 2
            ),
        )
        vip = svc["spec"]["clusterIP"]
        lab.create(
            f"/api/v1/namespaces/{NS}/pods",
            client_pod(name, "node-1", [f"http://{vip}/", "http://echo.default.svc.cluster.local/"]),
        )
        wait_succeeded(lab, name)
        # a Service whose one endpoint is echo-2, on node-2 behind the router: through the overlay
        far = lab.create(
            f"/api/v1/namespaces/{NS}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "echo-far"},
                "spec": {"selector": {"echo": "echo-2"}, "ports": [{"port": 80, "targetPort": 8080}]},
            },
        )
        received = lab.vxlan_packets("node-2", "rx")
        far_client = f"{name}-far"
        lab.create(
            f"/api/v1/namespaces/{NS}/pods",
            client_pod(far_client, "node-1", [f"http://{far['spec']['clusterIP']}/"]),
        )
        wait_succeeded(lab, far_client)
        assert lab.vxlan_packets("node-2", "rx") >= received + 4
        # the NodePort answers on every node's address, from this host
        node_port = svc["spec"]["ports"][0]["nodePort"]
        ips = {
            n["metadata"]["name"]: next(
                a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"
            )
            for n in lab.api.get("/api/v1/nodes").json()["items"]
        }
        for node in NODES:

            def fetch(n: str = node) -> str:
                return httpx.get(f"http://{ips[n]}:{node_port}/", timeout=3).text

            body = wait_for(f"NodePort {node_port} on {node}", fetch, timeout=60)
            assert body.strip() in ("echo-2", "echo-3")
    finally:
        lab.delete(f"/api/v1/namespaces/{NS}/pods/{name}")
        lab.delete(f"/api/v1/namespaces/{NS}/pods/{name}-far")
        lab.delete(f"/api/v1/namespaces/{NS}/services/echo")
        lab.delete(f"/api/v1/namespaces/{NS}/services/echo-far")


def test_api_server_keeps_writing_with_one_etcd_member_down(lab: Lab) -> None:
    # stop the first member: the API server's connection is to it unless it failed over already
    member = lab.container("etcd-1")
    subprocess.run(["docker", "stop", "-t", "2", member], check=True, capture_output=True)
    try:

        def write() -> bool:
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"quorum-{uuid.uuid4().hex[:6]}"},
                "data": {"k": "v"},
            }
            return lab.api.post(f"/api/v1/namespaces/{NS}/configmaps", json=body).status_code == 201

        wait_for("a write with etcd-1 stopped", write, timeout=60)
        names = [
            c["metadata"]["name"] for c in lab.api.get(f"/api/v1/namespaces/{NS}/configmaps").json()["items"]
        ]
        assert any(n.startswith("quorum-") for n in names)
    finally:
        subprocess.run(["docker", "start", member], capture_output=True)


def test_stopped_node_turns_not_ready_and_its_pods_move(lab: Lab) -> None:
    path = f"/apis/apps/v1/namespaces/{NS}/deployments"
    lab.create(path, deployment("mover", 3, tolerate_seconds=2))
    victim = None
    try:
        pods = wait_for(
            "3 running pods of deployment mover",
            lambda: (lambda ps: ps if len(ps) == 3 else None)(running_active(lab.pods("app=mover"))),
            timeout=180,
        )
        on = sorted({p["spec"]["nodeName"] for p in pods})
        victim = "node-3" if "node-3" in on else on[-1]
        lab.cli("lab", "node", "stop", victim)
        wait_for(f"{victim} NotReady", lambda: lab.nodes_ready().get(victim) != "True", timeout=90)

        def moved() -> list[dict[str, Any]] | None:
            ps = running_active(lab.pods("app=mover"))
            if len(ps) == 3 and all(p["spec"]["nodeName"] != victim for p in ps):
                return ps
            return None

        wait_for(f"mover's pods recreated off {victim}", moved, timeout=120)
    finally:
        lab.delete(f"{path}/mover")
        if victim:
            lab.cli("lab", "node", "start", victim, "--timeout", "120", check=False)
    assert lab.nodes_ready().get(victim) == "True"


def test_lab_down_leaves_nothing_behind(lab: Lab) -> None:
    lab.cli("lab", "down", timeout=300)
    assert _project_objects() == {"containers": [], "networks": [], "volumes": []}
    kubeconfig = Path(lab.env["KUBECONFIG"])
    assert "minik-lab" not in (kubeconfig.read_text() if kubeconfig.exists() else "")
