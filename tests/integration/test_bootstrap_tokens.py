"""Bootstrap tokens and CertificateSigningRequests on a real ``minik-apiserver`` (real etcd, HTTPS,
Node,RBAC and the bootstrap policy): a token authenticates as ``system:bootstrap:ID``, a bad one
is a 401, a bootstrapper creates CSRs (its own user in the spec) and reads nothing else, approval
needs the ``approve`` verb on the signer, bad CSRs are 422 naming the field."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from apimachinery.pki import write_kubeconfig
from testkit.processes import EtcdProcess
from testkit.wait import wait_for
from tests.integration.test_authn import Server, review

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
SECRETS = "/api/v1/namespaces/kube-system/secrets"
KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
_ALPHABET = string.ascii_lowercase + string.digits


@pytest.fixture(scope="module")
def server(etcd: EtcdProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(etcd.url, tmp_path_factory.mktemp("bootstrap"))
    try:
        yield s.start()
    finally:
        s.process.cleanup()


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def make_token(
    server: Server,
    *,
    expires_in: float | None = 3600,
    usage_auth: bool = True,
    groups: str = "system:bootstrappers:kubeadm:default-node-token",
    expiration: str | None = None,
) -> str:
    """A bootstrap token Secret as ``kubeadm token create`` writes it; returns ``ID.SECRET``."""
    token_id = "".join(secrets.choice(_ALPHABET) for _ in range(6))
    token_secret = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    data = {"token-id": token_id, "token-secret": token_secret, "usage-bootstrap-signing": "true"}
    if usage_auth:
        data["usage-bootstrap-authentication"] = "true"
    if groups:
        data["auth-extra-groups"] = groups
    if expiration is not None:
        data["expiration"] = expiration
    elif expires_in is not None:
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in)
        data["expiration"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    secret = {
        "metadata": {"name": f"bootstrap-token-{token_id}"},
        "type": "bootstrap.kubernetes.io/token",
        "data": {k: _b64(v) for k, v in data.items()},
    }
    with server.admin() as c:
        r = c.post(SECRETS, json=secret)
        assert r.status_code == 201, r.text
    return f"{token_id}.{token_secret}"


def bearer(server: Server, token: str) -> httpx.Client:
    return server.client(headers={"Authorization": f"Bearer {token}"})


def authenticates(server: Server, token: str) -> bool:
    """Whether the token authenticates, once the Secrets' watch cache has the Secret."""
    with bearer(server, token) as c:
        r = c.get("/version")
        return r.status_code == 200


def csr_pem(cn: str = "system:node:n1", orgs: tuple[str, ...] = ("system:nodes",)) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    names.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    req = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names)).sign(key, hashes.SHA256())
    return req.public_bytes(serialization.Encoding.PEM).decode()


def csr_body(name: str, request: str | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": _b64(request if request is not None else csr_pem()),
            "signerName": KUBELET_SIGNER,
            "usages": ["digital signature", "client auth"],
            **spec,
        },
    }
    return body


def test_a_good_token_authenticates_as_its_bootstrap_user(server: Server) -> None:
    token = make_token(server)
    wait_for(lambda: authenticates(server, token), timeout=10, what="the token to authenticate")
    with bearer(server, token) as c:
        user = review(c)
    token_id = token.split(".")[0]
    assert user["username"] == f"system:bootstrap:{token_id}"
    assert user["groups"] == [
        "system:bootstrappers",
        "system:bootstrappers:kubeadm:default-node-token",
        "system:authenticated",
    ]


@pytest.mark.parametrize(
    "kind",
    ["expired", "wrong-secret", "no-auth-usage", "unknown", "bad-group", "bad-expiration"],
)
def test_a_bad_token_is_refused_with_401(server: Server, kind: str) -> None:
    if kind == "expired":
        token = make_token(server, expires_in=-60)
    elif kind == "wrong-secret":
        token = make_token(server).split(".")[0] + ".0123456789abcdef"
    elif kind == "no-auth-usage":
        token = make_token(server, usage_auth=False)
    elif kind == "bad-group":
        token = make_token(server, groups="system:masters")
    elif kind == "bad-expiration":
        token = make_token(server, expiration="tomorrow")
    else:
        token = "zzzzzz.0123456789abcdef"
    good = make_token(server)  # written after the bad one: once it authenticates, the cache has both
    wait_for(lambda: authenticates(server, good), timeout=10, what="the good token to authenticate")
    with bearer(server, token) as c:
        r = c.get("/api/v1/namespaces")
    assert r.status_code == 401, r.text
    assert r.json()["reason"] == "Unauthorized"


def test_bootstrap_auth_off_refuses_tokens(
    etcd: EtcdProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    s = Server(etcd.url, tmp_path_factory.mktemp("bootstrap-off"), "--enable-bootstrap-token-auth=false")
    try:
        s.start()
        token = make_token(s)
        with bearer(s, token) as c:
            assert c.get("/version").status_code == 401
    finally:
        s.process.cleanup()


def test_a_bootstrapper_creates_a_csr_as_itself_and_reads_no_secrets(server: Server) -> None:
    token = make_token(server)
    wait_for(lambda: authenticates(server, token), timeout=10, what="the token to authenticate")
    token_id = token.split(".")[0]
    body = csr_body("boot-" + token_id, username="kubernetes-admin", groups=["system:masters"])
    with bearer(server, token) as c:
        r = c.post(CSRS, json=body)
        assert r.status_code == 201, r.text
        spec = r.json()["spec"]
        assert spec["username"] == f"system:bootstrap:{token_id}"
        assert "system:masters" not in spec["groups"]
        assert "system:bootstrappers" in spec["groups"]
        assert r.json()["status"] == {}
        assert c.get(f"{CSRS}/boot-{token_id}").status_code == 200
        assert c.get(SECRETS).status_code == 403
        assert c.get(f"{SECRETS}/bootstrap-token-{token_id}").status_code == 403
        # approving its own request is not a bootstrapper's to do
        approval = {**r.json(), "status": {"conditions": [{"type": "Approved", "status": "True"}]}}
        r = c.put(f"{CSRS}/boot-{token_id}/approval", json=approval)
        assert r.status_code == 403, r.text


def test_cluster_info_is_readable_anonymously(server: Server) -> None:
    with server.admin() as c:
        r = c.post(
            "/api/v1/namespaces/kube-public/configmaps",
            json={"metadata": {"name": "cluster-info"}, "data": {"kubeconfig": "x"}},
        )
        assert r.status_code in (201, 409), r.text
    with server.client() as anonymous:
        assert anonymous.get("/api/v1/namespaces/kube-public/configmaps/cluster-info").status_code == 200
        assert anonymous.get("/api/v1/namespaces/kube-public/configmaps").status_code == 403


def _grant(server: Server, name: str, rules: list[dict[str, Any]], username: str) -> None:
    with server.admin() as c:
        r = c.post(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            json={"metadata": {"name": name}, "rules": rules},
        )
        assert r.status_code == 201, r.text
        r = c.post(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            json={
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": username}],
            },
        )
        assert r.status_code == 201, r.text


def test_approval_needs_the_approve_verb_on_the_signer(server: Server) -> None:
    with server.admin() as c:
        r = c.post(CSRS, json=csr_body("approve-me"))
        assert r.status_code == 201, r.text
        assert r.json()["spec"]["username"] == "kubernetes-admin"
    _grant(
        server,
        "csr-approver-no-signer",
        [
            {
                "apiGroups": ["certificates.k8s.io"],
                "resources": ["certificatesigningrequests", "certificatesigningrequests/approval"],
                "verbs": ["get", "update"],
            }
        ],
        "approver",
    )
    ctx = server.ssl("approver", "approver")
    with server.client(ctx) as c:
        csr = c.get(f"{CSRS}/approve-me").json()
        csr["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Test"}]}
        r = c.put(f"{CSRS}/approve-me/approval", json=csr)
        assert r.status_code == 403, r.text
        assert (
            f'user not permitted to approve requests with signerName "{KUBELET_SIGNER}"'
            in r.json()["message"]
        )
    _grant(
        server,
        "csr-approver-signer",
        [
            {
                "apiGroups": ["certificates.k8s.io"],
                "resources": ["signers"],
                "resourceNames": [KUBELET_SIGNER],
                "verbs": ["approve"],
            }
        ],
        "approver",
    )

    def approve() -> bool:
        with server.client(ctx) as c:
            current = c.get(f"{CSRS}/approve-me").json()
            current["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Test"}]}
            current["spec"]["signerName"] = "example.com/ignored"  # the spec does not change here
            r = c.put(f"{CSRS}/approve-me/approval", json=current)
            return r.status_code == 200

    wait_for(approve, timeout=10, what="the approval to be allowed")
    with server.admin() as c:
        csr = c.get(f"{CSRS}/approve-me").json()
        assert csr["spec"]["signerName"] == KUBELET_SIGNER
        (cond,) = csr["status"]["conditions"]
        assert cond["type"] == "Approved" and cond["lastUpdateTime"] and cond["lastTransitionTime"]
        # an Approved condition is not removed, nor joined by Denied
        csr["status"]["conditions"] = []
        r = c.put(f"{CSRS}/approve-me/approval", json=csr)
        assert r.status_code == 422, r.text
        assert r.json()["details"]["causes"][0]["field"] == "status.conditions"
        csr["status"]["conditions"] = [cond, {"type": "Denied", "status": "True"}]
        r = c.put(f"{CSRS}/approve-me/approval", json=csr)
        assert r.status_code == 422, r.text
        # /status keeps the stored Approved condition whatever the client sends
        csr = c.get(f"{CSRS}/approve-me").json()
        csr["status"]["conditions"] = []
        r = c.put(f"{CSRS}/approve-me/status", json=csr)
        assert r.status_code == 200, r.text
        assert [x["type"] for x in r.json()["status"]["conditions"]] == ["Approved"]
        # a table row as kubectl prints it
        r = c.get(CSRS, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
        table = r.json()
        names = [col["name"] for col in table["columnDefinitions"]]
        assert names == ["Name", "Age", "SignerName", "Requestor", "RequestedDuration", "Condition"]
        row = next(row for row in table["rows"] if row["cells"][0] == "approve-me")
        assert row["cells"][2:] == [KUBELET_SIGNER, "kubernetes-admin", "<none>", "Approved"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"request": _b64("not a pem")}, "spec.request"),
        ({"request": _b64(csr_pem().replace("CERTIFICATE REQUEST", "CERTIFICATE"))}, "spec.request"),
        ({"signerName": ""}, "spec.signerName"),
        ({"signerName": "no-slash"}, "spec.signerName"),
        ({"signerName": "nodots/x"}, "spec.signerName"),
        ({"usages": ["client auth", "flying"]}, "spec.usages[1]"),
        ({"usages": []}, "spec.usages"),
        ({"expirationSeconds": 599}, "spec.expirationSeconds"),
    ],
)
def test_a_bad_csr_is_refused_with_422_naming_the_field(
    server: Server, change: dict[str, Any], field: str
) -> None:
    body = csr_body("bad-csr")
    body["spec"].update(change)
    with server.admin() as c:
        r = c.post(CSRS, json=body)
    assert r.status_code == 422, r.text
    status = r.json()
    assert status["reason"] == "Invalid"
    assert field in [cause["field"] for cause in status["details"]["causes"]], status


def test_a_certificate_is_only_set_on_an_approved_request(server: Server) -> None:
    with server.admin() as c:
        r = c.post(CSRS, json=csr_body("not-approved"))
        assert r.status_code == 201, r.text
        csr = r.json()
        cert = server.pki.ca_cert.read_bytes()
        csr["status"] = {"certificate": base64.b64encode(cert).decode()}
        r = c.put(f"{CSRS}/not-approved/status", json=csr)
        assert r.status_code == 422, r.text
        assert r.json()["details"]["causes"][0]["field"] == "status.certificate"
        csr["status"] = {
            "certificate": _b64("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        }
        r = c.put(f"{CSRS}/not-approved/status", json=csr)
        assert r.status_code == 422, r.text


def test_kubectl_approves_denies_and_lists_csrs(server: Server, tmp_path: Path) -> None:
    crt, key = server.pki.client_cert("admin", "kubernetes-admin", ("system:masters",))
    kubeconfig = write_kubeconfig(
        tmp_path / "admin.conf", server=server.url, ca_pem=server.pki.ca_pem(), cert=(crt, key)
    )

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, timeout=60
        )

    with server.admin() as c:
        for name in ("kubectl-approve", "kubectl-deny"):
            r = c.post(CSRS, json=csr_body(name, expirationSeconds=3600))
            assert r.status_code == 201, r.text
    run = kubectl("certificate", "approve", "kubectl-approve")
    assert run.returncode == 0, run.stderr
    run = kubectl("certificate", "deny", "kubectl-deny")
    assert run.returncode == 0, run.stderr
    run = kubectl("get", "csr", "kubectl-approve", "kubectl-deny", "--no-headers")
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines()]
    assert [(r[0], r[2], r[3], r[4], r[5]) for r in rows] == [
        ("kubectl-approve", KUBELET_SIGNER, "kubernetes-admin", "60m", "Approved"),
        ("kubectl-deny", KUBELET_SIGNER, "kubernetes-admin", "60m", "Denied"),
    ]
    with server.admin() as c:
        (cond,) = c.get(f"{CSRS}/kubectl-approve").json()["status"]["conditions"]
        assert (cond["type"], cond["reason"]) == ("Approved", "KubectlApprove")


def test_token_review_answers_for_bootstrap_tokens(server: Server) -> None:
    token = make_token(server)
    wait_for(lambda: authenticates(server, token), timeout=10, what="the token to authenticate")
    reviews = "/apis/authentication.k8s.io/v1/tokenreviews"

    def review_of(token: str, audiences: list[str] | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"token": token}
        if audiences is not None:
            spec["audiences"] = audiences
        with server.admin() as c:
            r = c.post(
                reviews, json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
            )
            assert r.status_code == 201, r.text
            status: dict[str, Any] = r.json()["status"]
            return status

    status = review_of(token)
    assert status["authenticated"] is True
    assert status["user"]["username"] == f"system:bootstrap:{token.split('.')[0]}"
    assert status["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    assert not review_of(token, ["some-other-audience"]).get("authenticated")
    wrong = review_of(token.split(".")[0] + ".0123456789abcdef")
    assert not wrong.get("authenticated") and "token-secret" in wrong["error"]
