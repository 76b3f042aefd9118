"""Bootstrap tokens, cluster-info's detached JWS, the CA pin and the CSR controllers' decisions."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from apimachinery.bootstraptoken import (
    TokenError,
    ca_pin,
    cluster_info_kubeconfig,
    compute_detached_signature,
    detached_token_is_valid,
    is_expired,
    parse_duration,
    parse_token,
    token_of_secret,
    token_secret,
    verify_cluster_info,
)
from apimachinery.pki import PKI
from controllers.bootstrap import signed_cluster_info, signing_tokens
from controllers.certificates import (
    NODE_MESSAGE,
    SELF_MESSAGE,
    access_review,
    approval_permission,
    duration,
    kubelet_serving_problem,
    sign_request,
)

# Kubernetes' cluster-bootstrap/token/jws test vectors
CONTENT = "Hello from the other side. I must have called a thousand times."
SECRET = "my voice is my passcode"
KID = "joshua"
SIG = "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8"
SIG_EMPTY = "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..7Ui1ALizW4jXphVUB7xUqC9vLYLL9RZeOFfVLoB7Tgk"

# a CA and its pin as openssl computes it:
# openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum
CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBizCCATGgAwIBAgIUN+79GnO5cbSe9fjvpV70Bvk/3r8wCgYIKoZIzj0EAwIw
EzERMA8GA1UEAwwIbWluaWstY2EwHhcNMjYxMjAzMjEzNjA2WhcNMzYxMTMwMjE0
MTA2WjATMREwDwYDVQQDDAhtaW5pay1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABONb7sLnskhrfTlSDQEIjjWJQ3/0/aCxXotAd0quBZRRj6PIbjQW8F+GThpy
Ike1Dug7njLWM0K1rgmKlchk8jqjYzBhMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0P
AQH/BAQDAgGGMB0GA1UdDgQWBBQfJUC/ZFkko26RLXVovaq1AhN7PTAfBgNVHSME
GDAWgBQfJUC/ZFkko26RLXVovaq1AhN7PTAKBggqhkjOPQQDAgNIADBFAiEA7kH7
RWdip1R5qBBE69Ncx1fOHUhGGYVARSPR+S/ua5QCIFZpLJO1qQBAGpIuIgO1Y+dZ
gXMaaCHzGKPhp22QCz8W
-----END CERTIFICATE-----
"""
CA_PIN = "sha256:52ca59dd4ddde8e206b54adce8bc9cac3806d41f27fcba0357f4506c93adcb85"

TOKEN = "abcdef.0123456789abcdef"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_detached_signature_matches_kubernetes_vectors() -> None:
    assert compute_detached_signature(CONTENT, KID, SECRET) == SIG
    assert compute_detached_signature("", KID, SECRET) == SIG_EMPTY


def test_detached_signature_verification() -> None:
    assert detached_token_is_valid(SIG, CONTENT, KID, SECRET)
    assert not detached_token_is_valid(SIG, CONTENT + " ", KID, SECRET)
    assert not detached_token_is_valid(SIG, CONTENT, KID, SECRET + "x")
    assert not detached_token_is_valid(SIG, CONTENT, "joshub", SECRET)


def test_ca_pin_is_sha256_of_subject_public_key_info() -> None:
    assert ca_pin(CA_PEM) == CA_PIN
    assert ca_pin(CA_PEM.encode()) == CA_PIN
    der = x509.load_pem_x509_certificate(CA_PEM.encode()).public_bytes(serialization.Encoding.DER)
    assert ca_pin(der) == CA_PIN


def test_parse_token() -> None:
    assert parse_token(TOKEN) == ("abcdef", "0123456789abcdef")
    for bad in ("abcdef.0123456789abcde", "ABCDEF.0123456789abcdef", "abcdef0123456789abcdef", ""):
        with pytest.raises(TokenError):
            parse_token(bad)


def test_parse_duration() -> None:
    assert parse_duration("24h") == dt.timedelta(hours=24)
    assert parse_duration("1h30m") == dt.timedelta(minutes=90)
    assert parse_duration("0") == dt.timedelta(0)
    with pytest.raises(TokenError):
        parse_duration("1d")


def test_token_secret_as_kubeadm_writes_it() -> None:
    secret = token_secret(TOKEN, ttl=dt.timedelta(hours=1), description="d", now=NOW)
    assert secret["metadata"] == {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    assert secret["stringData"] == {
        "token-id": "abcdef",
        "token-secret": "0123456789abcdef",
        "description": "d",
        "expiration": "2026-01-01T01:00:00Z",
        "usage-bootstrap-signing": "true",
        "usage-bootstrap-authentication": "true",
        "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
    }
    assert token_of_secret(secret) == ("abcdef", "0123456789abcdef")
    assert not is_expired(secret, NOW)
    assert is_expired(secret, NOW + dt.timedelta(hours=1))
    assert "expiration" not in token_secret(TOKEN, ttl=None)["stringData"]
    with pytest.raises(TokenError):
        token_secret(TOKEN, groups=["system:nodes"])
    with pytest.raises(TokenError):
        token_secret(TOKEN, usages=["signing", "other"])


def test_unparsable_expiration_counts_as_expired() -> None:
    secret = token_secret(TOKEN)
    secret["stringData"]["expiration"] = "tomorrow"
    assert is_expired(secret, NOW)


def _stored(secret: dict[str, Any]) -> dict[str, Any]:
    """The Secret as the API server returns it (stringData folded into base64 data)."""
    data = {k: base64.b64encode(v.encode()).decode() for k, v in secret.pop("stringData").items()}
    return {**secret, "data": data}


def _cluster_info() -> dict[str, Any]:
    return {
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": cluster_info_kubeconfig("https://10.0.0.1:6443", CA_PEM)},
    }


def test_bootstrapsigner_signs_for_signing_tokens_only() -> None:
    good = _stored(token_secret(TOKEN, now=NOW))
    expired = _stored(token_secret("zzzzzz.0123456789abcdef", ttl=dt.timedelta(hours=1), now=NOW))
    auth_only = _stored(token_secret("yyyyyy.0123456789abcdef", usages=["authentication"], now=NOW))
    later = NOW + dt.timedelta(hours=2)
    tokens = signing_tokens([good, expired, auth_only], later)
    assert tokens == {"abcdef": "0123456789abcdef"}
    cm = _cluster_info()
    cm["data"]["jws-kubeconfig-gone00"] = "stale"
    signed = signed_cluster_info(cm, tokens)
    assert signed is not None
    assert sorted(signed["data"]) == ["jws-kubeconfig-abcdef", "kubeconfig"]
    assert signed_cluster_info(signed, tokens) is None  # nothing to change
    assert signed_cluster_info(signed, {}) == _cluster_info()  # the last token gone
    assert signed_cluster_info({"data": {}}, tokens) is None  # nothing to sign


def test_verify_cluster_info() -> None:
    signed = signed_cluster_info(_cluster_info(), {"abcdef": "0123456789abcdef"})
    assert signed is not None
    found = verify_cluster_info(signed, TOKEN, [CA_PIN.upper().replace("SHA256", "sha256")])
    assert found["server"] == "https://10.0.0.1:6443"
    assert found["ca_pem"] == CA_PEM
    with pytest.raises(TokenError, match="matches none"):
        verify_cluster_info(signed, TOKEN, ["sha256:" + "0" * 64])
    with pytest.raises(TokenError, match="not valid"):
        verify_cluster_info(signed, "abcdef.0123456789abcdee", [CA_PIN])
    with pytest.raises(TokenError, match="no signature"):
        verify_cluster_info(signed, "qqqqqq.0123456789abcdef", [CA_PIN])
    with pytest.raises(TokenError, match="no CA pin"):
        verify_cluster_info(signed, TOKEN, [])
    tampered = {"data": {**signed["data"], "kubeconfig": signed["data"]["kubeconfig"] + "\n"}}
    with pytest.raises(TokenError, match="not valid"):
        verify_cluster_info(tampered, TOKEN, [CA_PIN])


# ---- CSRs -----------------------------------------------------------------------------------------


def make_csr(
    cn: str,
    orgs: tuple[str, ...] = ("system:nodes",),
    dns: tuple[str, ...] = (),
    key: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr_obj(
    pem: bytes,
    username: str = "system:bootstrap:abcdef",
    signer: str = "kubernetes.io/kube-apiserver-client-kubelet",
    usages: tuple[str, ...] = ("digital signature", "client auth"),
) -> dict[str, Any]:
    return {
        "metadata": {"name": "node-csr-1"},
        "spec": {
            "request": base64.b64encode(pem).decode(),
            "signerName": signer,
            "usages": list(usages),
            "username": username,
            "groups": ["system:bootstrappers", "system:authenticated"],
        },
    }


def test_bootstrapper_csr_is_checked_for_nodeclient() -> None:
    csr = csr_obj(make_csr("system:node:n1"))
    assert approval_permission(csr) == [("nodeclient", NODE_MESSAGE)]
    review = access_review(csr, "nodeclient")
    assert review["spec"]["user"] == "system:bootstrap:abcdef"
    assert review["spec"]["groups"] == ["system:bootstrappers", "system:authenticated"]
    assert review["spec"]["resourceAttributes"] == {
        "group": "certificates.k8s.io",
        "resource": "certificatesigningrequests",
        "verb": "create",
        "subresource": "nodeclient",
    }


def test_node_renewing_its_own_is_checked_for_selfnodeclient_first() -> None:
    csr = csr_obj(make_csr("system:node:n1"), username="system:node:n1")
    assert approval_permission(csr) == [("selfnodeclient", SELF_MESSAGE), ("nodeclient", NODE_MESSAGE)]


@pytest.mark.parametrize(
    "csr",
    [
        csr_obj(make_csr("system:node:n1", orgs=("system:masters",))),
        csr_obj(make_csr("alice")),
        csr_obj(make_csr("system:node:n1", dns=("n1.example",))),
        csr_obj(make_csr("system:node:n1"), usages=("digital signature", "server auth")),
        csr_obj(make_csr("system:node:n1"), signer="kubernetes.io/kube-apiserver-client"),
        {"spec": {"request": "bm90IGEgQ1NS", "signerName": "kubernetes.io/kube-apiserver-client-kubelet"}},
    ],
    ids=["organization", "common-name", "sans", "usages", "signer", "garbage"],
)
def test_other_csrs_are_not_auto_approved(csr: dict[str, Any]) -> None:
    assert approval_permission(csr) == []


def test_duration_capped_and_floored() -> None:
    year = dt.timedelta(days=365)
    assert duration(year, None) == year
    assert duration(year, 3600) == dt.timedelta(hours=1)
    assert duration(year, 60) == dt.timedelta(minutes=10)
    assert duration(year, 10 * 365 * 86400) == year


def test_sign_request_issues_what_was_asked(tmp_path: Any) -> None:
    pki = PKI(tmp_path)
    pki.ensure_ca()
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    req = x509.load_pem_x509_csr(make_csr("system:node:n1"))
    pem = sign_request(req, ["digital signature", "client auth"], ca_cert, ca_key, dt.timedelta(hours=1), NOW)
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(ca_cert)
    assert cert.subject == req.subject
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(hours=1, minutes=5)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature


def test_kubelet_serving_needs_a_san() -> None:
    usages = ["digital signature", "server auth"]
    assert kubelet_serving_problem(x509.load_pem_x509_csr(make_csr("system:node:n1")), usages)
    ok = x509.load_pem_x509_csr(make_csr("system:node:n1", dns=("n1",)))
    assert kubelet_serving_problem(ok, usages) is None


# ---- single reconciles over a recording client ----------------------------------------------------


class RecordingClient:
    """Records the writes of one reconcile; a SubjectAccessReview answers ``allowed``."""

    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed
        self.actions: list[tuple[str, Any, Any]] = []

    async def create(self, info: Any, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        sub = obj["spec"]["resourceAttributes"]["subresource"]
        self.actions.append(("review", sub, None))
        return {**obj, "status": {"allowed": sub in self.allowed}}

    async def _call(self, build: Any, info: Any, obj: dict[str, Any], sub: str) -> dict[str, Any]:
        self.actions.append(("put", sub, obj))
        return obj

    async def delete(self, info: Any, name: str, namespace: str, **kw: Any) -> None:
        self.actions.append(("delete", name, kw))


def _controller(cls: Any, client: RecordingClient, now: dt.datetime) -> Any:
    from apimachinery.informer import SharedInformerFactory
    from controllers.base import ControllerContext, Options

    factory = SharedInformerFactory(client)  # type: ignore[arg-type]
    ctx = ControllerContext(client, factory, lambda _n: None, Options(), clock=now.timestamp)  # type: ignore[arg-type,return-value]
    return cls(ctx)


def test_csrapproving_approves_after_an_allowed_review_only() -> None:
    import asyncio

    from controllers.certificates import CSRApprovingController

    csr = csr_obj(make_csr("system:node:n1"))
    for allowed, approved in ((set(), False), ({"nodeclient"}, True)):
        client = RecordingClient(allowed)
        c = _controller(CSRApprovingController, client, NOW)
        c.csr_informer.store.add(csr)
        asyncio.run(c.reconcile("node-csr-1"))
        assert [a[:2] for a in client.actions] == [("review", "nodeclient")] + (
            [("put", "approval")] if approved else []
        )
        if approved:
            cond = client.actions[-1][2]["status"]["conditions"][-1]
            assert (cond["type"], cond["status"], cond["reason"]) == ("Approved", "True", "AutoApproved")
            assert cond["message"] == NODE_MESSAGE


def test_tokencleaner_deletes_expired_with_uid_precondition() -> None:
    import asyncio

    from controllers.bootstrap import TokenCleaner

    expired = _stored(token_secret(TOKEN, ttl=dt.timedelta(hours=1), now=NOW))
    expired["metadata"]["uid"] = "u1"
    client = RecordingClient(set())
    c = _controller(TokenCleaner, client, NOW + dt.timedelta(hours=2))
    c.secret_informer.store.add(expired)
    asyncio.run(c.reconcile("kube-system/bootstrap-token-abcdef"))
    assert client.actions == [("delete", "bootstrap-token-abcdef", {"preconditions": {"uid": "u1"}})]
    client.actions.clear()
    c = _controller(TokenCleaner, client, NOW)
    c.secret_informer.store.add(expired)
    asyncio.run(c.reconcile("kube-system/bootstrap-token-abcdef"))
    assert client.actions == []
