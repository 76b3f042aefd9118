"""etcd's own CA on a real ``minik up``: etcd refuses a node client certificate of the cluster CA
(what a bootstrap token gets a kubelet) while its own clients and the API server keep working; a
state directory made before the etcd CA (one CA for everything) comes up again with one."""

from __future__ import annotations

import json
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from apimachinery.pki import PKI
from cli import supervisor
from testkit import prereq
from testkit.minik_up import MinikUpCluster, minik_up_cluster

ETCD_CERTS = ("etcd-server", "apiserver-etcd-client", "etcd-healthcheck-client")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinikUpCluster]:
    prereq.require_node_host()
    with minik_up_cluster(tmp_path_factory.mktemp("minik-etcdca"), "ec", "EC") as c:
        yield c


def etcd_port(c: MinikUpCluster) -> int:
    return int(supervisor.settings(json.loads((c.state / "config.json").read_text()))["etcd_port"])


def etcd_health(c: MinikUpCluster, cert: Path, key: Path) -> httpx.Response:
    """GET /health on the cluster's etcd presenting ``cert``, trusting the etcd CA."""
    ctx = ssl.create_default_context(cafile=str(supervisor.etcd_ca_file(c.state)))
    ctx.load_cert_chain(str(cert), str(key))
    with httpx.Client(verify=ctx, timeout=10) as client:
        return client.get(f"https://127.0.0.1:{etcd_port(c)}/health")


def issued_by(cert: Path, ca: Path) -> bool:
    try:
        x509.load_pem_x509_certificate(cert.read_bytes()).verify_directly_issued_by(
            x509.load_pem_x509_certificate(ca.read_bytes())
        )
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def test_a_node_client_certificate_of_the_cluster_ca_is_refused_by_etcd(
    cluster: MinikUpCluster, tmp_path: Path
) -> None:
    pki = cluster.state / "pki"
    # etcd's own health-check client is let in (the probe works at all)
    ok = etcd_health(cluster, pki / "etcd-healthcheck-client.crt", pki / "etcd-healthcheck-client.key")
    assert ok.status_code == 200, ok.text
    # what csrsigning hands a kubelet that joined with a bootstrap token: a cluster CA client cert
    signer = tmp_path / "cluster-ca"
    signer.mkdir(mode=0o700)
    shutil.copy(pki / "ca.crt", signer / "ca.crt")
    shutil.copy(pki / "ca.key", signer / "ca.key")
    node_crt, node_key = PKI(signer).client_cert("node", "system:node:intruder", ["system:nodes"])
    assert issued_by(node_crt, pki / "ca.crt")
    with pytest.raises((httpx.TransportError, ssl.SSLError)):
        r = etcd_health(cluster, node_crt, node_key)
        raise AssertionError(f"etcd answered a cluster CA node certificate: {r.status_code} {r.text}")
    # the API server (on that etcd) still reads and writes
    cluster.minik("create", "namespace", "etcd-ca-check")
    assert cluster.get("namespace", "etcd-ca-check")["metadata"]["name"] == "etcd-ca-check"


def test_a_state_directory_from_before_the_etcd_ca_comes_up_with_one(cluster: MinikUpCluster) -> None:
    pki = cluster.state / "pki"
    cluster.minik("create", "namespace", "before-etcd-ca")
    cluster.minik("down", "--state-dir", str(cluster.state))
    # the old layout: no pki/etcd, the cluster CA signs etcd's certificates too
    shutil.rmtree(pki / "etcd")
    old = PKI(pki)
    old.serving_cert("etcd-server", ["127.0.0.1", "localhost"], "minik-etcd", client_auth=True)
    old.client_cert("apiserver-etcd-client", "kube-apiserver-etcd-client")
    old.client_cert("etcd-healthcheck-client", "kube-etcd-healthcheck-client")
    assert all(issued_by(pki / f"{n}.crt", pki / "ca.crt") for n in ETCD_CERTS)
    cluster.up()
    etcd_ca = supervisor.etcd_ca_file(cluster.state)
    assert etcd_ca.exists()
    assert all(issued_by(pki / f"{n}.crt", etcd_ca) for n in ETCD_CERTS)
    assert cluster.get("namespace", "before-etcd-ca")["metadata"]["name"] == "before-etcd-ca"
    ok = etcd_health(cluster, pki / "etcd-healthcheck-client.crt", pki / "etcd-healthcheck-client.key")
    assert ok.status_code == 200, ok.text
