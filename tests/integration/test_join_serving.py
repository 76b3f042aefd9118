"""A joined node's kubelet serving certificate, NetworkPolicy on the joined node, and what a client
certificate rotation does to the kubelet's open connections -- beside a ``minik up`` cluster on
this host, as tests/integration/test_join.py.

Checked: the joined kubelet asks for its serving certificate with a ``kubernetes.io/kubelet-serving``
CSR.  Joined on the same host, its InternalIP is the first node's and the API server's address, so
csrapproving leaves it pending (and logs why); approved by hand (``kubectl certificate approve``),
csrsigning signs it with the cluster CA; the kubelet serves it, so ``kubectl logs``, ``kubectl
exec`` and ``kubectl port-forward`` of a pod on the joined node pass the API server's check of the
kubelet against the CA.  A serving CSR naming an address that is not the node's stays pending too.
(Auto-approval of a node's own address in ``--kubelet-serving-ip-prefixes``: the unit tests.)  The joined node's proxy enforces a NetworkPolicy (it reads policies, pods and namespaces
as the node).  With short certificates both certificates rotate within seconds: the kubelet then
serves the new serving certificate without a restart, and every API connection it had open with the
old client certificate (its watches) is closed and made again.
Needs root, Docker, iptables and kubectl (``testkit.prereq``); everything is removed in finally blocks.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubelet import certrotation as cr
from testkit import prereq, wait
from testkit.host import free_port_in, processes_mentioning
from testkit.images import BUSYBOX_IMAGE
from testkit.minik_up import MinikUpCluster, Worker, joinable_cluster, worker_beside

KUBECTL = "kubectl"  # prereq.require_kubectl's, once the cluster fixture ran


def _run(
    cluster: MinikUpCluster, argv: list[str], check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _kubectl(
    cluster: MinikUpCluster, *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return _run(cluster, [KUBECTL, "--kubeconfig", str(cluster.kubeconfig), *args], check, timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinikUpCluster]:
    global KUBECTL
    KUBECTL = prereq.require_kubectl()
    with joinable_cluster(tmp_path_factory.mktemp("minik-join-serving"), "sc", "SC") as c:
        yield c


@pytest.fixture()
def worker(cluster: MinikUpCluster, tmp_path: Path) -> Iterator[Worker]:
    with worker_beside(cluster, tmp_path, "sw") as w:
        yield w


PODS = """\
apiVersion: v1
kind: Pod
metadata:
  name: srv
  labels: {app: srv}
spec:
  nodeSelector: {kubernetes.io/hostname: NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: IMAGE
    imagePullPolicy: Never
    command: ["sh", "-c", "echo serving-log-line; mkdir -p /www && echo hello-from-srv > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Pod
metadata:
  name: cli
  labels: {app: cli}
spec:
  nodeSelector: {kubernetes.io/hostname: NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: IMAGE
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"""

DENY_SRV = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: srv-only-from-nobody
spec:
  podSelector: {matchLabels: {app: srv}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {app: nobody}}
"""


def _csrs(cluster: MinikUpCluster, node: str, signer: str) -> list[dict[str, Any]]:
    return [
        c
        for c in cluster.get("csr")["items"]
        if c["spec"].get("username") == f"system:node:{node}" and c["spec"].get("signerName") == signer
    ]


def _pending_serving(cluster: MinikUpCluster, node: str) -> list[str]:
    """The names of ``node``'s serving CSRs without a condition (neither approved nor denied)."""
    return [
        c["metadata"]["name"]
        for c in _csrs(cluster, node, "kubernetes.io/kubelet-serving")
        if not (c.get("status") or {}).get("conditions")
    ]


def _left_line(log: Path, csr: str) -> str | None:
    """The controller manager's line saying why csrapproving left ``csr`` pending."""
    marker = f"kubelet serving CSR {csr} left for an administrator"
    return next((line for line in log.read_text().splitlines() if marker in line), None)


def _served_certificate(host: str, port: int) -> x509.Certificate:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=5) as sock, ctx.wrap_socket(sock) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    return x509.load_der_x509_certificate(der)


def _kubelet_pid(state: Path) -> int:
    found = [line for line in processes_mentioning(str(state)) if "minik-kubelet" in line]
    assert len(found) == 1, found
    return int(found[0].split(":")[0])


def _api_connections(pid: int, api_port: int) -> set[str]:
    """The local addresses of ``pid``'s established TCP connections to the API server's port."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( dport = :{api_port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split()[2] for line in out.splitlines() if f"pid={pid}," in line}


def _node_watches(cluster: MinikUpCluster, user: str) -> list[tuple[dt.datetime, str]]:
    """(when it began, the client certificate's credential ID) of every audited (ended) watch of
    ``user``; the API server writes ``user.extra`` ``authentication.kubernetes.io/credential-id``."""
    found = []
    for entry in (cluster.state / "logs" / "audit.log").read_text().splitlines():
        try:
            ev = json.loads(entry)
        except ValueError:
            continue
        if ev.get("verb") != "watch" or (ev.get("user") or {}).get("username") != user:
            continue
        start = dt.datetime.fromisoformat(ev["requestReceivedTimestamp"].replace("Z", "+00:00"))
        ids = ((ev["user"].get("extra") or {}).get("authentication.kubernetes.io/credential-id")) or [""]
        found.append((start, ids[0]))
    return found


def _credential_id(cert: x509.Certificate) -> str:
    return "X509SHA256=" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _wget(cluster: MinikUpCluster, url: str) -> subprocess.CompletedProcess[str]:
    return _kubectl(
        cluster, "exec", "cli", "--", "timeout", "5", "wget", "-q", "-O-", url, check=False, timeout=30
    )


def test_joined_node_serving_certificate_logs_exec_port_forward_netpol_and_rotation(
    cluster: MinikUpCluster, worker: Worker
) -> None:
    token, pin = cluster.join_token()
    cluster.minik(
        "join",
        cluster.server,
        *("--token", token, "--discovery-token-ca-cert-hash", pin),
        *worker.join_args(),
        # certificates of 10 minutes (+5 backdated) renewed after 36 %: ~24 s after issue
        *("--certificate-expiration-seconds", "600", "--certificate-rotation-fraction", "0.36"),
    )
    ca = x509.load_pem_x509_certificate((cluster.state / "pki" / "ca.crt").read_bytes())
    node = cluster.get("node", worker.node)
    node_ip = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"][0]

    # 1. the serving certificate: a kubelet-serving CSR.  On this host the joined node's InternalIP
    # is the first node's and the API server's address, which csrapproving never approves: the CSR
    # stays pending, the controller manager says why, and an administrator approves it by hand
    serving = worker.state / "kubelet" / "pki" / "kubelet-server-current.pem"
    cm_log = cluster.state / "logs" / "controller-manager.log"
    pending = wait.wait_for(
        lambda: _pending_serving(cluster, worker.node), 60, "the node's serving CSR", 0.5, retry_errors=True
    )
    name = pending[0]
    why = wait.wait_for(
        lambda: _left_line(cm_log, name), 30, "csrapproving leaving the serving CSR pending", 0.5
    )
    assert node_ip in why, why
    assert not serving.exists()

    def approve_all() -> None:
        for pending_name in _pending_serving(cluster, worker.node):
            _kubectl(cluster, "certificate", "approve", pending_name)

    approve_all()
    wait.wait_for(serving.exists, 60, "the kubelet's issued serving certificate", 0.5)
    first = cr.load_certificate(serving)
    first.verify_directly_issued_by(ca)
    assert first.subject.rfc4514_string() == f"CN=system:node:{worker.node},O=system:nodes"
    sans = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [worker.node]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == [node_ip]
    conds = [
        k
        for c in _csrs(cluster, worker.node, "kubernetes.io/kubelet-serving")
        if c["metadata"]["name"] == name
        for k in c["status"].get("conditions") or []
    ]
    assert [k["type"] for k in conds] == ["Approved"] and conds[0]["reason"] != "AutoApproved", conds
    served = wait.wait_for(
        lambda: (c := _served_certificate(node_ip, worker.kubelet_port)).issuer == ca.subject and c,
        30,
        "the kubelet serving the issued certificate",
        0.5,
        retry_errors=True,
    )
    assert served.serial_number in {first.serial_number, cr.load_certificate(serving).serial_number}

    manifest = worker.state.parent / "pods.yaml"
    manifest.write_text(PODS.replace("NODE", worker.node).replace("IMAGE", BUSYBOX_IMAGE))
    policy = worker.state.parent / "policy.yaml"
    policy.write_text(DENY_SRV)
    cluster.minik("apply", "-f", str(manifest))
    port_forward: subprocess.Popen[str] | None = None
    try:
        for name in ("srv", "cli"):
            wait.wait_for(
                lambda n=name: cluster.get("pod", n)["status"].get("phase") == "Running",  # type: ignore[misc]
                90,
                f"pod {name} Running on the joined node",
                0.5,
                retry_errors=True,
            )
        srv_ip = cluster.get("pod", "srv")["status"]["podIP"]
        # logs and exec through the API server, which checks the kubelet against the cluster CA
        logs = wait.wait_for(
            lambda: "serving-log-line" in (p := _kubectl(cluster, "logs", "srv", check=False)).stdout and p,
            30,
            "kubectl logs of the pod on the joined node",
            0.5,
        )
        assert logs.returncode == 0
        out = _kubectl(cluster, "exec", "cli", "--", "echo", "exec-works")
        assert out.stdout.strip() == "exec-works"
        # port-forward to the pod on the joined node, from loopback
        local = free_port_in(40000, 50000)
        port_forward = subprocess.Popen(
            [KUBECTL, "--kubeconfig", str(cluster.kubeconfig), "port-forward", "pod/srv", f"{local}:8080"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def fetch() -> str:
            with socket.create_connection(("127.0.0.1", local), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            return data.decode(errors="replace")

        body = wait.wait_for(lambda: "hello-from-srv" in (t := fetch()) and t, 30, "port-forward", 0.5, True)
        assert "200" in body.splitlines()[0]

        # 2. NetworkPolicy on the joined node: reachable, then refused once a policy selects srv
        url = f"http://{srv_ip}:8080/"
        assert "hello-from-srv" in _wget(cluster, url).stdout
        cluster.minik("apply", "-f", str(policy))
        wait.wait_for(lambda: _wget(cluster, url).returncode != 0, 30, "the policy enforced", 0.5)
        assert _wget(cluster, url).returncode != 0
        cluster.minik("delete", "networkpolicy", "srv-only-from-nobody")
        wait.wait_for(lambda: _wget(cluster, url).returncode == 0, 30, "the policy gone", 0.5)
        proxy_log = (worker.state / "logs" / "proxy.log").read_text()
        assert "forbidden" not in proxy_log.lower(), proxy_log[-3000:]

        # a serving CSR naming another address stays pending (for an administrator), as the
        # node asks it: the controller manager says why; approved by hand it is signed
        key = cr.new_key()
        foreign = cr.csr_object(
            worker.node, cr.csr_pem(worker.node, key, [worker.node, "192.0.2.77"]), serving=True
        )
        foreign["metadata"] = {"name": f"foreign-{worker.node}"}
        csr_file = worker.state.parent / "foreign-csr.json"
        csr_file.write_text(json.dumps(foreign))
        node_conf = worker.state / "kubeconfigs" / "kubelet.conf"
        _run(cluster, [KUBECTL, "--kubeconfig", str(node_conf), "create", "-f", str(csr_file)])
        wait.wait_for(
            lambda: (
                f"kubelet serving CSR foreign-{worker.node} left for an administrator" in cm_log.read_text()
            ),
            30,
            "csrapproving leaving the foreign CSR",
            0.5,
        )
        obj = cluster.get("csr", f"foreign-{worker.node}")
        assert obj["spec"]["username"] == f"system:node:{worker.node}"
        assert not obj.get("status", {}).get("conditions"), obj.get("status")
        assert "192.0.2.77" in cm_log.read_text().split(f"foreign-{worker.node} left")[1].splitlines()[0]
        _kubectl(cluster, "certificate", "approve", f"foreign-{worker.node}")
        signed = wait.wait_for(
            lambda: cluster.get("csr", f"foreign-{worker.node}").get("status", {}).get("certificate"),
            30,
            "the approved CSR signed",
            0.5,
        )
        assert x509.load_pem_x509_certificate(base64.b64decode(signed)).issuer == ca.subject

        # 3. rotation of both certificates, without a restart of the kubelet
        pid = _kubelet_pid(worker.state)
        client_pem = worker.state / "kubelet" / "pki" / "kubelet-client-current.pem"
        old_client = cr.load_certificate(client_pem)
        before = _api_connections(pid, cluster.api_port)
        assert before, "the kubelet has no connection to the API server"

        def rotated(path: Path, old: x509.Certificate) -> x509.Certificate | None:
            cert = cr.load_certificate(path)
            return cert if cert.serial_number != old.serial_number else None

        def serving_rotated() -> x509.Certificate | None:
            approve_all()  # each renewal asks again, as the first time
            return rotated(serving, first)

        new_serving = wait.wait_for(serving_rotated, 120, "serving rotated", 0.5, True)
        new_client = wait.wait_for(lambda: rotated(client_pem, old_client), 120, "client rotated", 0.5, True)
        assert _kubelet_pid(worker.state) == pid  # the same kubelet process
        # the kubelet serves the new serving certificate (a new handshake), and the API server
        # still reaches it
        wait.wait_for(
            lambda: (
                _served_certificate(node_ip, worker.kubelet_port).serial_number
                == cr.load_certificate(serving).serial_number
            ),
            30,
            "the new serving certificate served",
            0.5,
            retry_errors=True,
        )
        assert new_serving.serial_number != first.serial_number
        assert "serving-log-line" in _kubectl(cluster, "logs", "srv").stdout
        # every API connection the kubelet had with the old client certificate is gone, and it has
        # made new ones (its watches), which present the new certificate
        kubelet_log = (worker.state / "logs" / "kubelet.log").read_text()
        assert "closing the API connections made with the old client certificate" in kubelet_log
        assert new_client.serial_number != old_client.serial_number
        after = wait.wait_for(
            lambda: (now := _api_connections(pid, cluster.api_port)) and not (now & before) and now,
            60,
            "the kubelet's connections all made again",
            0.5,
        )
        assert after and not (after & before)
        # the API server saw the old certificate on the node's watches before the rotation and the
        # new one on watches begun after it (audited when they end: at the next rotation, ~24 s on)
        user = f"system:node:{worker.node}"
        old_id, new_id = _credential_id(old_client), _credential_id(new_client)
        wait.wait_for(
            lambda: any(cid == old_id for _, cid in _node_watches(cluster, user)),
            60,
            "a watch made with the old certificate in the audit log",
            0.5,
        )
        with_new = wait.wait_for(
            lambda: [start for start, cid in _node_watches(cluster, user) if cid == new_id],
            120,
            "a watch made with the new certificate in the audit log",
            0.5,
        )
        with_old = [start for start, cid in _node_watches(cluster, user) if cid == old_id]
        assert max(with_old) < min(with_new)  # no watch with the old certificate after the switch
        node_ready = [
            c for c in cluster.get("node", worker.node)["status"]["conditions"] if c["type"] == "Ready"
        ]
        assert node_ready[0]["status"] == "True"
    finally:
        if port_forward is not None:
            port_forward.terminate()
            try:
                port_forward.wait(10)
            except subprocess.TimeoutExpired:
                port_forward.kill()
        cluster.minik("delete", "networkpolicy", "srv-only-from-nobody", "--ignore-not-found", check=False)
        cluster.minik("delete", "pod", "srv", "cli", "--ignore-not-found", "--wait=false", check=False)
        cluster.minik("delete", "csr", f"foreign-{worker.node}", "--ignore-not-found", check=False)
