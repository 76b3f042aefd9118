"""The multi-node lab end to end: `minik lab up --nodes 3` on this Docker host, then joining,
scheduling, spreading, cross-node networking and node failure against it.

The lab is built on minik's own commands: cp-1 runs `minik up`, the workers `minik join` with a
bootstrap token `lab up` makes on cp-1, and HAProxy stands in front of the API server (the host
reaches it at 127.0.0.1:PORT).  The workers sit on two Docker networks joined by a router container
(node-1 and node-3 on segment A with the control plane, node-2 on segment B), so pod traffic
between node-1 and node-2 crosses the router inside the kubelets' VXLAN overlay (device minik.1).

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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.lab import LabConfig, minik_up_has_endpoint_flag, render_compose
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
STATE = "/root/.minik"  # minik up's and minik join's state directory in each machine
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
    def __init__(self, env: dict[str, str], server: str, pki: Path, project: str = PROJECT) -> None:
        self.env = env
        self.project = project
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
        """Close the admin client (the next use of ``api`` opens a new one)."""
        if self._api is not None:
            self._api.close()
            self._api = None

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
                f"label=com.docker.compose.project={self.project}",
                "--filter",
                f"label=com.docker.compose.service={service}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out, f"no container for {service}"
        return out[0]


def _project_objects(project: str = PROJECT) -> dict[str, list[str]]:
    label = f"label=com.docker.compose.project={project}"
    found = {}
    for kind, argv in {
        "containers": ["docker", "ps", "-aq", "--filter", label],
        "networks": ["docker", "network", "ls", "-q", "--filter", label],
        "volumes": ["docker", "volume", "ls", "-q", "--filter", label],
    }.items():
        found[kind] = subprocess.run(argv, capture_output=True, text=True).stdout.split()
    return found


def _force_cleanup_project(env: dict[str, str], state: Path, project: str) -> None:
    """`lab down`, then compose down on the state's file and a sweep by label, whatever failed before."""
    subprocess.run([sys.executable, "-m", "cli.lab", "lab", "down"], cwd=REPO, env=env, capture_output=True)
    compose_file = state / "lab" / project / "docker-compose.yml"
    if compose_file.exists() and shutil.which("docker-compose"):
        subprocess.run(
            ["docker-compose", "-p", project, "-f", str(compose_file), "down", "-v", "--remove-orphans"],
            capture_output=True,
        )
    left = _project_objects(project)
    if left["containers"]:
        subprocess.run(["docker", "rm", "-fv", *left["containers"]], capture_output=True)
    if left["networks"]:
        subprocess.run(["docker", "network", "rm", *left["networks"]], capture_output=True)
    if left["volumes"]:
        subprocess.run(["docker", "volume", "rm", "-f", *left["volumes"]], capture_output=True)


@contextmanager
def running_lab(state: Path, project: str, subnet: str, *up: str) -> Iterator[Lab]:
    """``minik lab up UP...`` of compose project ``project`` on ``subnet``, its state in ``state``
    and its API port a free one; taken down whatever happens (``lab down``, then anything of the
    project still there)."""
    port = free_port()
    env = {
        **os.environ,
        "MINIK_STATE_DIR": str(state),
        "KUBECONFIG": str(state / "kubeconfig"),
        "MINIK_LAB_PROJECT": project,
        "MINIK_LAB_SUBNET": subnet,
        "MINIK_LAB_API_PORT": str(port),
        "COLUMNS": "200",
    }
    lab = Lab(env, f"https://127.0.0.1:{port}", state / "lab" / project / "pki", project=project)
    try:
        lab.cli("lab", "up", *up, timeout=900)
        yield lab
    finally:
        lab.close()
        _force_cleanup_project(env, state, project)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    prereq.require_docker()
    prereq.require_compose()
    state = tmp_path_factory.mktemp("lab-state")
    with running_lab(state, PROJECT, SUBNET, "--nodes", "3", "--timeout", "300") as lab:
        image = ensure_busybox_image()
        lab.cli("image", "load", image)
        yield lab


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
    cfg = LabConfig(nodes=3, endpoint_flag=minik_up_has_endpoint_flag())
    assert (REPO / "deploy" / "docker-compose.yml").read_text() == render_compose(cfg, ".")


def test_three_nodes_ready(lab: Lab) -> None:
    ready = lab.nodes_ready()
    assert {n: ready.get(n) for n in ["cp-1", *NODES]} == {n: "True" for n in ["cp-1", *NODES]}
    # the control plane is a Node too, tainted as kubeadm does, so workloads go to the workers
    cp = lab.api.get("/api/v1/nodes/cp-1").json()
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in cp["spec"]["taints"]
    status = lab.cli("lab", "status")
    for name in ["cp-1", "lb", "router", *NODES]:
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


def _audit_users(lab: Lab) -> set[str]:
    """Every user in cp-1's API server audit log."""
    audit = lab.exec("cp-1", "cat", f"{STATE}/logs/audit.log")
    return {json.loads(line)["user"]["username"] for line in audit.splitlines() if line.strip()}


def test_everything_speaks_tls_with_its_own_identity(lab: Lab) -> None:
    import base64
    import ssl

    import yaml

    # the minik-lab context carries the CA minik up made in cp-1 and the admin certificate
    conf = yaml.safe_load(Path(lab.env["KUBECONFIG"]).read_text())
    [cluster] = [c["cluster"] for c in conf["clusters"] if c["name"] == "minik-lab"]
    assert cluster["server"] == lab.server and "insecure-skip-tls-verify" not in cluster
    assert base64.b64decode(cluster["certificate-authority-data"]) == (lab.pki / "ca.crt").read_bytes()
    assert lab.exec("cp-1", "cat", f"{STATE}/pki/ca.crt") == (lab.pki / "ca.crt").read_text()
    # no plain HTTP through HAProxy; anonymous HTTPS reaches only what anonymous may read
    with pytest.raises(httpx.HTTPError):
        httpx.get(lab.server.replace("https://", "http://") + "/api/v1/nodes", timeout=3)
    ctx = ssl.create_default_context(cafile=str(lab.pki / "ca.crt"))
    with httpx.Client(base_url=lab.server, verify=ctx, timeout=5) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/api/v1/nodes").status_code == 403
    # etcd answers only clients with a certificate of its own CA (pki/etcd/ca.crt), over TLS: not
    # one of the cluster CA, which also signs every node's client certificate
    probe = "https://127.0.0.1:2379/health"
    pki = f"{STATE}/pki"
    fetch = (
        f"import urllib.request,ssl; c=ssl.create_default_context(cafile='{pki}/etcd/ca.crt'); {{load}}"
        f"print(urllib.request.urlopen('{probe}', context=c).read().decode())"
    )
    cp = lab.container("cp-1")

    def etcd_health(container: str, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "exec", container, "python3", "-c", script], capture_output=True, text=True, timeout=60
        )

    assert etcd_health(cp, fetch.format(load="")).returncode != 0
    load = f"c.load_cert_chain('{pki}/etcd-healthcheck-client.crt','{pki}/etcd-healthcheck-client.key'); "
    member = etcd_health(cp, fetch.format(load=load))
    assert '"health":"true"' in member.stdout.replace(" ", ""), member.stderr
    admin = etcd_health(cp, fetch.format(load=f"c.load_cert_chain('{pki}/admin.crt','{pki}/admin.key'); "))
    assert admin.returncode != 0 and "health" not in admin.stdout, admin.stdout
    # a worker's kubelet client certificate (from its CSR) against cp-1's etcd on the lab network
    [subset] = lab.api.get("/api/v1/namespaces/default/endpoints/kubernetes").json()["subsets"]
    cp_ip = subset["addresses"][0]["ip"]
    pem = f"{STATE}/kubelet/pki/kubelet-client-current.pem"
    worker = etcd_health(
        lab.container("node-1"),
        "import urllib.request,ssl; c=ssl.create_default_context(); c.check_hostname=False; "
        f"c.verify_mode=ssl.CERT_NONE; c.load_cert_chain('{pem}'); "
        f"print(urllib.request.urlopen('https://{cp_ip}:2379/health', context=c).read().decode())",
    )
    assert worker.returncode != 0 and "health" not in worker.stdout, (worker.stdout, worker.stderr)
    # the certificate was there and etcd listened: refused by the TLS handshake, not unreachable
    assert "No such file" not in worker.stderr and "Connection refused" not in worker.stderr, worker.stderr
    # each worker's kubelet is system:node:NAME, the control plane's components their own users
    want = {f"system:node:{n}" for n in NODES} | {
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:kube-proxy",
        "system:minik-dns",
    }
    users = _audit_users(lab)
    assert want <= users, users


def _join_command(lab: Lab, *flags: str) -> dict[str, str]:
    """A fresh token made on cp-1 (`minik token create --print-join-command`): its words by flag."""
    out = lab.exec("cp-1", "env", "COLUMNS=1000", "minik", "token", "create", "--print-join-command", *flags)
    [line] = [x for x in out.splitlines() if x.startswith("minik join ")]
    words = line.split()
    return {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}


def _wait_signed(lab: Lab, token: str) -> None:
    """Until the controller manager's bootstrapsigner has signed cluster-info for the token."""
    key = f"jws-kubeconfig-{token.split('.')[0]}"
    wait_for(
        f"cluster-info signed for {key}",
        lambda: (
            key
            in (
                lab.api.get("/api/v1/namespaces/kube-public/configmaps/cluster-info").json().get("data") or {}
            )
        ),
        timeout=60,
    )


def _try_join(lab: Lab, token: str, pin: str) -> subprocess.CompletedProcess[str]:
    """`minik join` through HAProxy from node-1, into a state directory of its own (node-1 stays as it is)."""
    endpoint = json.loads(lab.exec("node-1", "cat", f"{STATE}/config.json"))["server"]
    return subprocess.run(
        [
            "docker",
            "exec",
            "-e",
            "COLUMNS=1000",
            lab.container("node-1"),
            "minik",
            "join",
            endpoint,
            "--token",
            token,
            "--discovery-token-ca-cert-hash",
            pin,
            "--node-name",
            f"intruder-{uuid.uuid4().hex[:4]}",
            "--state-dir",
            f"/tmp/join-{uuid.uuid4().hex[:6]}",
            "--no-wait",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workers_joined_with_a_bootstrap_token(lab: Lab) -> None:
    """Each worker ran `minik join` through HAProxy: its client certificate came from a CSR its
    bootstrap token made, and it holds no key of the cluster's."""
    csrs = lab.api.get("/apis/certificates.k8s.io/v1/certificatesigningrequests").json()["items"]
    for node in NODES:
        cfg = json.loads(lab.exec(node, "cat", f"{STATE}/config.json"))
        assert cfg["role"] == "worker" and cfg["node_name"] == node
        assert cfg["server"].endswith(":6443") and "127.0.0.1" not in cfg["server"], cfg["server"]
        files = lab.exec(node, "find", f"{STATE}/pki", f"{STATE}/kubeconfigs", "-type", "f").split()
        assert sorted(Path(f).name for f in files) == ["ca.crt", "kubelet.conf"], files
        mine = [
            c
            for c in csrs
            if c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
            and c["spec"]["username"].startswith("system:bootstrap:")
            and any(cond["type"] == "Approved" for cond in (c.get("status") or {}).get("conditions") or [])
            and c["status"].get("certificate")
        ]
        assert mine, csrs
    assert any(u.startswith("system:bootstrap:") for u in _audit_users(lab))


def test_a_wrong_token_gets_401_and_a_wrong_ca_pin_is_refused_before_the_token_is_sent(lab: Lab) -> None:
    import ssl

    # a bearer token the API server does not know: 401, a Status
    ctx = ssl.create_default_context(cafile=str(lab.pki / "ca.crt"))
    with httpx.Client(base_url=lab.server, verify=ctx, timeout=5) as client:
        r = client.get("/api/v1/nodes", headers={"Authorization": "Bearer abcdef.0123456789abcdef"})
    assert r.status_code == 401 and r.json()["kind"] == "Status", r.text
    # a token that signs cluster-info (discovery passes) but may not authenticate: join gets the 401
    signing_only = _join_command(lab, "--usages", "signing", "--groups", "")
    _wait_signed(lab, signing_only["--token"])
    refused = _try_join(lab, signing_only["--token"], signing_only["--discovery-token-ca-cert-hash"])
    assert refused.returncode != 0
    assert "401" in refused.stdout and "discovery: cluster CA matches the pin" in refused.stdout, (
        refused.stdout
    )
    # a wrong CA pin: join stops at discovery and the API server never sees the token
    fresh = _join_command(lab, "--ttl", "10m")
    token_id = fresh["--token"].split(".")[0]
    _wait_signed(lab, fresh["--token"])
    wrong = _try_join(lab, fresh["--token"], "sha256:" + "0" * 64)
    assert wrong.returncode != 0
    assert "the token was not sent" in wrong.stdout, wrong.stdout
    assert f"system:bootstrap:{token_id}" not in _audit_users(lab)
    # (the audit log names the bootstrap tokens that were sent: the workers')
    assert any(u.startswith("system:bootstrap:") for u in _audit_users(lab))


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


def test_logs_of_pods_on_both_segments_through_approved_serving_certificates(
    lab: Lab, echo_pods: list[str]
) -> None:
    """The API server reaches each worker's kubelet over TLS checked against the cluster CA: the
    workers' serving certificates came from kubelet-serving CSRs that the controller manager
    approved because their addresses lie in the lab's segments (--kubelet-serving-ip-prefixes)."""
    for name, node in (("echo-2", "node-2"), ("echo-3", "node-3")):
        r = lab.api.get(f"/api/v1/namespaces/{NS}/pods/{name}/log")
        assert r.status_code == 200, (name, r.status_code, r.text[:300])
        csrs = lab.api.get("/apis/certificates.k8s.io/v1/certificatesigningrequests").json()["items"]
        serving = [
            c
            for c in csrs
            if c["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
            and c["spec"].get("username") == f"system:node:{node}"
        ]
        assert serving, f"no kubelet-serving CSR of {node}"
        assert any(
            cond.get("type") == "Approved"
            for c in serving
            for cond in (c.get("status") or {}).get("conditions") or []
        ), serving


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


def test_cut_off_worker_turns_not_ready_its_pods_move_and_it_comes_back_cleanly(lab: Lab) -> None:
    """node-1 loses its network (docker network disconnect): NotReady after the controller
    manager's grace period (minik up's, 40 s), its pods evicted and recreated on the others; once
    connected again it is Ready, the evicted pods are gone from it and its overlay works."""
    path = f"/apis/apps/v1/namespaces/{NS}/deployments"
    victim = "node-1"
    lab.create(path, deployment("cutoff", 3, tolerate_seconds=2))
    cut = False
    try:
        wait_for(
            "3 running pods of deployment cutoff",
            lambda: (lambda ps: ps if len(ps) == 3 else None)(running_active(lab.pods("app=cutoff"))),
            timeout=180,
        )
        lab.cli("lab", "node", "disconnect", victim)
        cut = True
        wait_for(f"{victim} NotReady", lambda: lab.nodes_ready().get(victim) != "True", timeout=120)

        def moved() -> list[dict[str, Any]] | None:
            ps = running_active(lab.pods("app=cutoff"))
            if len(ps) == 3 and all(p["spec"]["nodeName"] != victim for p in ps):
                return ps
            return None

        pods = wait_for(f"cutoff's pods recreated off {victim}", moved, timeout=120)
        lab.cli("lab", "node", "connect", victim, "--timeout", "120")
        cut = False
        assert lab.nodes_ready().get(victim) == "True"
        # its kubelet finishes the evicted pods: none is left on it.  (Its watch connection through
        # HAProxy outlived the outage: it resumes when TCP's next retransmission gets through, which
        # backs off while the node is away, up to two minutes.)
        wait_for(
            f"the evicted pods gone from {victim}",
            lambda: not [p for p in lab.pods("app=cutoff") if p["spec"].get("nodeName") == victim],
            timeout=300,
            every=2,
        )
        # its overlay is back: the route to a pod on another node goes through minik.1
        far = pods[0]["status"]["podIP"]
        route = wait_for(
            f"{victim}'s overlay route to {far}",
            lambda: (lambda r: r if f"dev {VXLAN_DEVICE}" in r else None)(
                lab.exec(victim, "ip", "-4", "route", "get", far)
            ),
            timeout=60,
        )
        assert f"dev {VXLAN_DEVICE}" in route
    finally:
        if cut:
            lab.cli("lab", "node", "connect", victim, "--timeout", "120", check=False)
        lab.delete(f"{path}/cutoff")


def test_lab_down_leaves_nothing_behind(lab: Lab) -> None:
    lab.cli("lab", "down", timeout=300)
    assert _project_objects() == {"containers": [], "networks": [], "volumes": []}
    kubeconfig = Path(lab.env["KUBECONFIG"])
    assert "minik-lab" not in (kubeconfig.read_text() if kubeconfig.exists() else "")
