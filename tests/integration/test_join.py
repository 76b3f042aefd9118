"""``minik join`` / ``minik leave`` of a second node on this host beside a ``minik up`` cluster.

The cluster (its own ports, CIDRs, CNI network and chain prefix) has a /23 cluster CIDR, so node
IPAM has a /24 for the joined node too.  The joined node has its own state directory, node name,
kubelet port, CNI network (bridge, conflist and cache in its state) and iptables chain prefix.
Checked: a wrong CA pin ends the join before the token is sent (the API server's audit log has the
anonymous discovery request and no request of the token's user); a token that cannot authenticate
is refused with 401; a join goes Ready, `minik status` shows its kubelet and proxy, a pod runs on
it, its client certificate rotates (short certificates and a rotation fraction, so it happens in
seconds) through a selfnodeclient CSR; `minik leave` removes the Node and everything it made.
Needs root, Docker and iptables (``testkit.prereq``); everything is removed in finally blocks.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from apimachinery.bootstraptoken import ca_pin
from kubelet import cni
from testkit import wait
from testkit.host import processes_mentioning
from testkit.images import BUSYBOX_IMAGE
from testkit.minik_up import MinikUpCluster, Worker, joinable_cluster, worker_beside


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinikUpCluster]:
    with joinable_cluster(tmp_path_factory.mktemp("minik-join"), "jc", "JC") as c:
        yield c


@pytest.fixture()
def worker(cluster: MinikUpCluster, tmp_path: Path) -> Iterator[Worker]:
    with worker_beside(cluster, tmp_path, "jw") as w:
        yield w


def test_wrong_ca_hash_is_refused_before_the_token_is_sent(cluster: MinikUpCluster, worker: Worker) -> None:
    token, pin = cluster.join_token()
    wrong = "sha256:" + "0" * 64
    assert wrong != pin
    proc = cluster.minik(
        "join",
        cluster.server,
        "--token",
        token,
        "--discovery-token-ca-cert-hash",
        wrong,
        *worker.join_args(),
        check=False,
    )
    assert proc.returncode != 0, proc.stdout
    text = " ".join(proc.stdout.split())  # rich wraps lines
    assert "discovery failed, the token was not sent" in text and "matches none given" in text
    user = f"system:bootstrap:{token.split('.')[0]}"
    seen = wait.wait_for(
        lambda: [u for u in cluster.audit_users() if "cluster-info" in u[1]],
        10,
        "the discovery request audited",
    )
    assert any(u == "system:anonymous" for u, _ in seen), seen
    assert not [e for e in cluster.audit_users() if e[0] == user]
    assert not (worker.state / "kubeconfigs" / "kubelet.conf").exists()


def test_a_token_that_cannot_authenticate_is_refused_with_401(
    cluster: MinikUpCluster, worker: Worker
) -> None:
    # signs cluster-info (discovery passes) but is not an authentication token: the API server says 401
    token, pin = cluster.join_token("--usages", "signing", "--groups", "")
    proc = cluster.minik(
        "join",
        cluster.server,
        "--token",
        token,
        "--discovery-token-ca-cert-hash",
        pin,
        *worker.join_args(),
        check=False,
    )
    assert proc.returncode != 0, proc.stdout
    assert "401 Unauthorized" in " ".join(proc.stdout.split()), proc.stdout
    assert not (worker.state / "kubeconfigs" / "kubelet.conf").exists()
    # and a token no Secret holds, sent straight to the CSR endpoint with the right CA
    from cli.join import JoinError, bootstrap_credentials

    ca = (cluster.state / "pki" / "ca.crt").read_text()
    assert ca_pin(ca) == pin
    with pytest.raises(JoinError, match="401"):
        bootstrap_credentials(cluster.server, ca, "aaaaaa.bbbbbbbbbbbbbbbb", worker.node, worker.state / "x")


def test_a_node_name_that_is_ready_already_is_refused(cluster: MinikUpCluster, worker: Worker) -> None:
    token, pin = cluster.join_token()
    args = [a if a != worker.node else cluster.node for a in worker.join_args()]
    proc = cluster.minik(
        "join", cluster.server, "--token", token, "--discovery-token-ca-cert-hash", pin, *args, check=False
    )
    text = " ".join(proc.stdout.split())
    assert proc.returncode != 0 and f"a Node named {cluster.node} already exists and is Ready" in text, text
    assert not (worker.state / "config.json").exists() and not (worker.state / "kubeconfigs").exists()
    assert not processes_mentioning(str(worker.state))


POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: on-worker
spec:
  nodeSelector: {kubernetes.io/hostname: NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: IMAGE
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"""


def test_join_runs_pods_rotates_its_certificate_and_leaves(cluster: MinikUpCluster, worker: Worker) -> None:
    from cryptography import x509

    token, pin = cluster.join_token()
    cluster.minik(
        "join",
        cluster.server,
        *("--token", token, "--discovery-token-ca-cert-hash", pin),
        *worker.join_args(),
        # certificates of 10 minutes (+5 backdated), renewed after 36 % of that: ~24 s after issue
        *("--certificate-expiration-seconds", "600", "--certificate-rotation-fraction", "0.36"),
    )
    node = cluster.get("node", worker.node)
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"
    status = cluster.minik("status", "--state-dir", str(worker.state))
    assert "kubelet" in status.stdout and "proxy" in status.stdout and "unhealthy" not in status.stdout
    # the proxy works with the node's credentials: its Service chain is there, nothing was refused
    proxy_log = worker.state / "logs" / "proxy.log"
    wait.wait_for(lambda: proxy_log.stat().st_size > 0, 30, "the proxy log", retry_errors=True)
    assert "forbidden" not in proxy_log.read_text().lower(), proxy_log.read_text()[-3000:]
    pem = worker.state / "kubelet" / "pki" / "kubelet-client-current.pem"
    first = x509.load_pem_x509_certificate(pem.read_bytes())
    assert first.subject.rfc4514_string() == f"CN=system:node:{worker.node},O=system:nodes"

    manifest = worker.state.parent / "pod.yaml"
    manifest.write_text(POD.replace("NODE", worker.node).replace("IMAGE", BUSYBOX_IMAGE))
    cluster.minik("apply", "-f", str(manifest))
    try:
        pod = wait.wait_for(
            lambda: (p := cluster.get("pod", "on-worker"))["status"].get("phase") == "Running" and p,
            90,
            "the pod Running on the joined node",
            0.5,
            retry_errors=True,
        )
        assert pod["spec"]["nodeName"] == worker.node

        # rotation: a new certificate for the same node, asked for by the node itself and approved
        def rotated() -> x509.Certificate | None:
            cert = x509.load_pem_x509_certificate(pem.read_bytes())
            return cert if cert.serial_number != first.serial_number else None

        second = wait.wait_for(rotated, 120, "the client certificate rotated", 0.5, retry_errors=True)
        assert second.subject == first.subject
        csrs = cluster.get("csr")["items"]
        mine = [  # the node asks for its serving certificate too: the client one here
            c
            for c in csrs
            if c["spec"].get("username") == f"system:node:{worker.node}"
            and c["spec"].get("signerName") == "kubernetes.io/kube-apiserver-client-kubelet"
        ]
        assert mine, [c["spec"].get("username") for c in csrs]
        conds = {c["type"]: c for c in mine[0]["status"]["conditions"]}
        assert conds["Approved"]["message"].startswith("Auto approving self kubelet client certificate")
        # the kubelet keeps working with it: the Node stays Ready, its lease renewed
        log = (worker.state / "logs" / "kubelet.log").read_text()
        assert "rotated the client certificate" in log
        # the supervisor restarts the proxy so that it loads the new certificate
        wait.wait_for(
            lambda: json.loads((worker.state / "status.json").read_text())["proxy"]["restarts"] >= 1,
            30,
            "the proxy restarted after the rotation",
            retry_errors=True,
        )
        assert "forbidden" not in proxy_log.read_text().lower()
        wait.wait_for(
            lambda: (
                [c for c in cluster.get("node", worker.node)["status"]["conditions"] if c["type"] == "Ready"][
                    0
                ]["status"]
                == "True"
            ),
            30,
            "the node Ready after the rotation",
            retry_errors=True,
        )
    finally:
        cluster.minik("delete", "pod", "on-worker", "--ignore-not-found", "--wait=false", check=False)

    cluster.minik("leave", "--state-dir", str(worker.state), "--kubeconfig", str(cluster.kubeconfig))
    assert cluster.minik("get", "node", worker.node, check=False).returncode != 0
    assert not processes_mentioning(str(worker.state))
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert cni.bridge_name(worker.network) not in links
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert f"{worker.prefix}-" not in rules
    import docker

    client = docker.from_env()
    try:
        assert not client.containers.list(all=True, filters={"label": f"io.minik.node={worker.node}"})
    finally:
        client.close()
    assert not (worker.state / "kubeconfigs").exists() and not pem.exists()
