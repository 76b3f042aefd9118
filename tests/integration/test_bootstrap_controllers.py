"""The bootstrap controllers against a real etcd, API server and controller manager: csrapproving,
csrsigning, bootstrapsigner and tokencleaner; and ``minik token``."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from apimachinery.bootstraptoken import (
    TokenError,
    ca_pin,
    cluster_info_kubeconfig,
    generate_token,
    token_secret,
    verify_cluster_info,
)
from testkit import certs
from testkit.api import get
from testkit.processes import APIServerProcess, Process, controller_manager, running
from testkit.wait import unique, wait_for

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
SECRETS = "/api/v1/namespaces/kube-system/secrets"
CLUSTER_INFO = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
BOOTSTRAPPER = ("system:bootstrap:abcdef", ("system:bootstrappers",))


@pytest.fixture(scope="module")
def manager(apiserver: APIServerProcess) -> Iterator[Process]:
    pki = apiserver.pki
    cm = controller_manager(
        apiserver,
        "--controllers",
        "csrapproving,csrsigning,bootstrapsigner,tokencleaner",
        "--cluster-signing-cert-file",
        str(pki.ca_cert),
        "--cluster-signing-key-file",
        str(pki.ca_key),
        "--leader-elect",
        "false",
    )
    with running(cm):
        yield cm


def _grant(api: httpx.Client, name: str, rule: dict[str, Any], group: str) -> None:
    """A ClusterRole with ``rule`` bound to ``group`` (the test's own, whatever bootstrap policy the
    server ships)."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}}
    r = api.post(f"{RBAC}/clusterroles", json={**role, "rules": [rule]})
    assert r.status_code in (201, 409), r.text
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
    }
    r = api.post(f"{RBAC}/clusterrolebindings", json=binding)
    assert r.status_code in (201, 409), r.text


@pytest.fixture(scope="module")
def bootstrapper(apiserver: APIServerProcess, manager: Process) -> Iterator[httpx.Client]:
    """A client authenticated as a bootstrap token's user, allowed to create CSRs and to have
    kubelet client CSRs approved (``nodeclient``), as kubeadm's bootstrap RBAC allows."""
    with apiserver.http() as api:
        csr_rule = {
            "apiGroups": ["certificates.k8s.io"],
            "resources": ["certificatesigningrequests"],
            "verbs": ["create", "get", "list", "watch"],
        }
        _grant(api, "test-node-bootstrapper", csr_rule, "system:bootstrappers")
        nodeclient = {
            "apiGroups": ["certificates.k8s.io"],
            "resources": ["certificatesigningrequests/nodeclient"],
            "verbs": ["create"],
        }
        _grant(api, "test-nodeclient", nodeclient, "system:bootstrappers")
    ctx = certs.ssl_context(certs.user_cert(*BOOTSTRAPPER))
    with httpx.Client(base_url=apiserver.url, verify=ctx, timeout=30) as c:
        yield c


def csr_pem(cn: str, orgs: tuple[str, ...] = ("system:nodes",)) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    req = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs)).sign(key, hashes.SHA256())
    return req.public_bytes(serialization.Encoding.PEM)


def post_csr(client: httpx.Client, pem: bytes, **spec: Any) -> str:
    name = unique("node-csr")
    body = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(pem).decode(),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
            **spec,
        },
    }
    r = client.post(CSRS, json=body)
    assert r.status_code == 201, r.text
    return name


def test_bootstrapper_csr_is_approved_and_signed(
    apiserver: APIServerProcess, api: httpx.Client, bootstrapper: httpx.Client
) -> None:
    wrong = post_csr(bootstrapper, csr_pem("system:node:n1", orgs=("system:masters",)))
    name = post_csr(bootstrapper, csr_pem("system:node:n1"), expirationSeconds=3600)

    def signed() -> dict[str, Any] | None:
        csr = get(api, f"{CSRS}/{name}")
        return csr if csr and (csr.get("status") or {}).get("certificate") else None

    csr = wait_for(signed, what="the CSR approved and signed")
    approved = [c for c in csr["status"]["conditions"] if c["type"] == "Approved"]
    assert len(approved) == 1
    assert approved[0]["status"] == "True"
    assert approved[0]["reason"] == "AutoApproved"
    assert approved[0]["message"] == "Auto approving kubelet client certificate after SubjectAccessReview."
    cert = x509.load_pem_x509_certificate(base64.b64decode(csr["status"]["certificate"]))
    ca = x509.load_pem_x509_certificate(apiserver.pki.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    lifetime = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=50) < lifetime <= dt.timedelta(hours=1)
    # the one with the wrong subject was queued first, and is left alone
    other = get(api, f"{CSRS}/{wrong}")
    assert other is not None
    assert not (other.get("status") or {}).get("conditions")
    assert not (other.get("status") or {}).get("certificate")


def test_csr_without_the_nodeclient_permission_is_not_approved(
    apiserver: APIServerProcess, api: httpx.Client, bootstrapper: httpx.Client
) -> None:
    """A user outside system:bootstrappers asking a kubelet client certificate: recognized, but the
    SubjectAccessReview says no."""
    with apiserver.http() as admin:
        _grant(
            admin,
            "test-csr-creator",
            {
                "apiGroups": ["certificates.k8s.io"],
                "resources": ["certificatesigningrequests"],
                "verbs": ["create"],
            },
            "test:csr-creators",
        )
    ctx = certs.ssl_context(certs.user_cert("mallory", ("test:csr-creators",)))
    with httpx.Client(base_url=apiserver.url, verify=ctx, timeout=30) as mallory:
        denied = post_csr(mallory, csr_pem("system:node:n2"))
    name = post_csr(bootstrapper, csr_pem("system:node:n3"))
    wait_for(lambda: (get(api, f"{CSRS}/{name}") or {}).get("status", {}).get("certificate"), what="signed")
    csr = get(api, f"{CSRS}/{denied}")
    assert csr is not None
    assert not (csr.get("status") or {}).get("conditions")


def test_approved_csr_of_wrong_subject_fails_signing(api: httpx.Client, bootstrapper: httpx.Client) -> None:
    """Approved by hand (as admin) but not a kubelet client request: the signer marks it Failed."""
    name = post_csr(bootstrapper, csr_pem("alice", orgs=()))
    csr = get(api, f"{CSRS}/{name}")
    assert csr is not None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    csr.setdefault("status", {})["conditions"] = [
        {
            "type": "Approved",
            "status": "True",
            "reason": "Test",
            "message": "by hand",
            "lastUpdateTime": stamp,
        }
    ]
    r = api.put(f"{CSRS}/{name}/approval", json=csr)
    assert r.status_code == 200, r.text

    def failed() -> dict[str, Any] | None:
        cur = get(api, f"{CSRS}/{name}") or {}
        conds = {c["type"]: c for c in (cur.get("status") or {}).get("conditions") or []}
        return conds.get("Failed")

    cond = wait_for(failed, what="the Failed condition")
    assert cond["reason"] == "SignerValidationFailure"
    assert not (get(api, f"{CSRS}/{name}") or {}).get("status", {}).get("certificate")


@pytest.fixture()
def cluster_info(apiserver: APIServerProcess, api: httpx.Client, manager: Process) -> dict[str, Any]:
    if get(api, CLUSTER_INFO) is None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": {"kubeconfig": cluster_info_kubeconfig(apiserver.url, apiserver.pki.ca_pem())},
        }
        r = api.post("/api/v1/namespaces/kube-public/configmaps", json=body)
        assert r.status_code in (201, 409), r.text
    cm = get(api, CLUSTER_INFO)
    assert cm is not None
    return cm


def test_cluster_info_signed_for_a_token_until_it_is_deleted(
    apiserver: APIServerProcess, api: httpx.Client, cluster_info: dict[str, Any]
) -> None:
    token = generate_token()
    token_id = token.split(".")[0]
    key = f"jws-kubeconfig-{token_id}"
    r = api.post(SECRETS, json=token_secret(token))
    assert r.status_code == 201, r.text
    cm = wait_for(lambda: (c := get(api, CLUSTER_INFO)) and key in c["data"] and c, what="the signature")
    pin = ca_pin(apiserver.pki.ca_pem())
    found = verify_cluster_info(cm, token, [pin])
    assert found["server"] == apiserver.url
    assert found["ca_pem"] == apiserver.pki.ca_pem()
    with pytest.raises(TokenError):
        verify_cluster_info(cm, token[:-1] + ("a" if token[-1] != "a" else "b"), [pin])
    # an authentication-only token does not sign
    auth_only = generate_token()
    r = api.post(SECRETS, json=token_secret(auth_only, usages=["authentication"]))
    assert r.status_code == 201, r.text
    r = api.delete(f"{SECRETS}/bootstrap-token-{token_id}")
    assert r.status_code == 200, r.text
    wait_for(lambda: key not in (get(api, CLUSTER_INFO) or {}).get("data", {}), what="the signature gone")
    assert f"jws-kubeconfig-{auth_only.split('.')[0]}" not in (get(api, CLUSTER_INFO) or {})["data"]
    api.delete(f"{SECRETS}/bootstrap-token-{auth_only.split('.')[0]}")


def test_expired_token_secret_is_deleted(api: httpx.Client, manager: Process) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
    expired = generate_token()
    kept = generate_token()
    r = api.post(SECRETS, json=token_secret(expired, now=past))
    assert r.status_code == 201, r.text
    r = api.post(SECRETS, json=token_secret(kept))
    assert r.status_code == 201, r.text
    wait_for(lambda: get(api, f"{SECRETS}/bootstrap-token-{expired.split('.')[0]}") is None, what="deleted")
    assert get(api, f"{SECRETS}/bootstrap-token-{kept.split('.')[0]}") is not None
    api.delete(f"{SECRETS}/bootstrap-token-{kept.split('.')[0]}")


def minik(apiserver: APIServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "--kubeconfig", apiserver.kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_minik_token_create_list_delete(
    apiserver: APIServerProcess, api: httpx.Client, manager: Process
) -> None:
    done = minik(apiserver, "token", "create", "--ttl", "2h", "--description", "test", "--print-join-command")
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    assert words[:2] == ["minik", "join"]
    assert words[2] == apiserver.url
    token = words[words.index("--token") + 1]
    assert words[words.index("--discovery-token-ca-cert-hash") + 1] == ca_pin(apiserver.pki.ca_pem())
    token_id = token.split(".")[0]
    secret = get(api, f"{SECRETS}/bootstrap-token-{token_id}")
    assert secret is not None and secret["type"] == "bootstrap.kubernetes.io/token"
    # the join side's check passes once the signer has signed
    cm = wait_for(
        lambda: (c := get(api, CLUSTER_INFO)) and f"jws-kubeconfig-{token_id}" in c["data"] and c,
        what="the signature",
    )
    verify_cluster_info(cm, token, [ca_pin(apiserver.pki.ca_pem())])
    listed = minik(apiserver, "token", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith(token))
    assert "authentication,signing" in line or "signing,authentication" in line
    assert "test" in line
    bad = minik(apiserver, "token", "create", "--groups", "system:nodes")
    assert bad.returncode != 0
    gone = minik(apiserver, "token", "delete", token_id)
    assert gone.returncode == 0, gone.stderr
    assert get(api, f"{SECRETS}/bootstrap-token-{token_id}") is None
