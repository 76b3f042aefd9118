"""Bootstrap token parsing and checking (apiserver.authn) and CertificateSigningRequest
validation and strategies (apiserver.validation_certificates, apiserver.certificates)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from apimachinery.pki import generate_certificate, pem_pair
from apimachinery.resources import by_plural
from apiserver import authn, certificates, strategy, validation
from apiserver import validation_certificates as vc
from apiserver.authtypes import UserInfo

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
CSR_INFO = by_plural("certificates.k8s.io", "v1", "certificatesigningrequests")


def _b64(value: str | bytes) -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def token_secret(**data: str) -> dict[str, Any]:
    base = {
        "token-id": "abcdef",
        "token-secret": "0123456789abcdef",
        "usage-bootstrap-authentication": "true",
        "expiration": "2027-01-15T09:00:00Z",
    }
    base.update(data)
    return {
        "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "data": {k: _b64(v) for k, v in base.items() if v is not None},
    }


# --- bootstrap tokens ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("token", "parsed"),
    [
        ("abcdef.0123456789abcdef", ("abcdef", "0123456789abcdef")),
        ("ABCDEF.0123456789abcdef", None),
        ("abcde.0123456789abcdef", None),
        ("abcdef.0123456789abcde", None),
        ("abcdef:0123456789abcdef", None),
        ("abcdef.0123456789abcdef\n", None),
        ("eyJhbGciOiJSUzI1NiJ9.e30.sig", None),
    ],
)
def test_parse_bootstrap_token(token: str, parsed: tuple[str, str] | None) -> None:
    assert authn.parse_bootstrap_token(token) == parsed


def test_a_good_token_is_its_bootstrap_user() -> None:
    secret = token_secret(**{"auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"})
    user = authn.bootstrap_user("abcdef.0123456789abcdef", secret, now=NOW)
    assert user == UserInfo(
        "system:bootstrap:abcdef",
        ("system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", "system:authenticated"),
    )


def test_no_expiration_never_expires() -> None:
    secret = token_secret(expiration="")
    assert authn.bootstrap_user("abcdef.0123456789abcdef", secret, now=NOW).name == "system:bootstrap:abcdef"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"token-secret": "fedcba9876543210"}, "invalid value for key token-secret"),
        ({"token-id": "zzzzzz"}, "invalid value for key token-id"),
        ({"expiration": "2027-01-15T07:59:59Z"}, "expired"),
        ({"expiration": "2027-01-15T08:00:00Z"}, "expired"),
        ({"expiration": "2027-01-15 09:00"}, "expired"),
        ({"expiration": "soon"}, "expired"),
        ({"usage-bootstrap-authentication": "false"}, "usage-bootstrap-authentication"),
        ({"usage-bootstrap-authentication": None}, "usage-bootstrap-authentication"),
        ({"auth-extra-groups": "system:masters"}, "auth-extra-groups"),
        ({"auth-extra-groups": "system:bootstrappers:ok,system:bootstrappers:"}, "auth-extra-groups"),
    ],
)
def test_a_bad_token_does_not_authenticate(change: dict[str, Any], why: str) -> None:
    with pytest.raises(authn.Unauthenticated, match=why):
        authn.bootstrap_user("abcdef.0123456789abcdef", token_secret(**change), now=NOW)


def test_the_secret_must_be_a_live_bootstrap_token() -> None:
    token = "abcdef.0123456789abcdef"
    with pytest.raises(authn.Unauthenticated, match="no secret"):
        authn.bootstrap_user(token, None, now=NOW)
    wrong_type = {**token_secret(), "type": "Opaque"}
    with pytest.raises(authn.Unauthenticated, match="invalid type"):
        authn.bootstrap_user(token, wrong_type, now=NOW)
    deleting = token_secret()
    deleting["metadata"]["deletionTimestamp"] = "2027-01-15T07:00:00Z"
    with pytest.raises(authn.Unauthenticated, match="deleted"):
        authn.bootstrap_user(token, deleting, now=NOW)


def test_extra_groups_are_sorted_and_deduplicated() -> None:
    secret = token_secret(
        **{"auth-extra-groups": "system:bootstrappers:b, system:bootstrappers:a,system:bootstrappers:b"}
    )
    assert authn.bootstrap_groups(secret) == [
        "system:bootstrappers",
        "system:bootstrappers:a",
        "system:bootstrappers:b",
    ]


# --- CertificateSigningRequest validation -----------------------------------------------------------------
def csr_pem(cn: str = "system:node:n1") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    req = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return req.public_bytes(serialization.Encoding.PEM)


def csr(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "n1"},
        "spec": {
            "request": _b64(csr_pem()),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
            **spec,
        },
        "status": {},
    }


def fields(causes: list[dict[str, str]]) -> list[str]:
    return [c["field"] for c in causes]


def test_a_good_csr_is_valid() -> None:
    assert vc.validate_csr(csr()) == []
    assert vc.validate_csr(csr(expirationSeconds=600, signerName="example.com/my-signer.v1")) == []


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"request": _b64("garbage")}, "spec.request", "PEM block type must be CERTIFICATE REQUEST"),
        ({"request": "%%%"}, "spec.request", "base64"),
        ({"request": ""}, "spec.request", "PEM block type must be CERTIFICATE REQUEST"),
        ({"signerName": ""}, "spec.signerName", "Required value"),
        ({"signerName": "example.com"}, "spec.signerName", "fully qualified domain and path"),
        ({"signerName": "a/b/c"}, "spec.signerName", "fully qualified domain and path"),
        ({"signerName": "example/x"}, "spec.signerName", "at least two segments"),
        ({"signerName": "Example.com/x"}, "spec.signerName", 'validating label "Example"'),
        ({"signerName": "example.com/"}, "spec.signerName", "must not be empty"),
        ({"signerName": "kubernetes.io/legacy-unknown"}, "spec.signerName", "legacy signerName"),
        ({"usages": []}, "spec.usages", "Required value"),
        ({"usages": ["client auth", "teleport"]}, "spec.usages[1]", "Unsupported value"),
        ({"usages": ["client auth", "client auth"]}, "spec.usages[1]", "Duplicate value"),
        ({"expirationSeconds": 599}, "spec.expirationSeconds", "less than 600 seconds"),
        ({"expirationSeconds": "600"}, "spec.expirationSeconds", "must be an integer"),
    ],
)
def test_a_bad_spec_is_invalid(spec: dict[str, Any], field: str, message: str) -> None:
    causes = vc.validate_csr(csr(**spec))
    assert field in fields(causes), causes
    assert any(message in c["message"] for c in causes if c["field"] == field), causes


def test_a_csr_with_a_forged_signature_is_invalid() -> None:
    pem = csr_pem()
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    forged = der[:-3] + bytes([der[-3] ^ 1]) + der[-2:]  # flip a bit in the signature
    text = (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(forged)
        + b"-----END CERTIFICATE REQUEST-----\n"
    )
    assert fields(vc.validate_csr(csr(request=_b64(text)))) == ["spec.request"]


@pytest.mark.parametrize(
    ("conditions", "field", "message"),
    [
        ([{"type": "Approved", "status": "False"}], "status.conditions[0].status", "may only be set to True"),
        ([{"type": "Denied", "status": "Unknown"}], "status.conditions[0].status", "may only be set to True"),
        ([{"type": "Failed", "status": "Maybe"}], "status.conditions[0].status", "Unsupported value"),
        ([{"status": "True"}], "status.conditions[0].type", "Required value"),
        (
            [{"type": "Failed", "status": "True"}, {"type": "Failed", "status": "True"}],
            "status.conditions[1].type",
            "Duplicate value",
        ),
        (
            [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}],
            "status.conditions",
            "mutually exclusive",
        ),
    ],
)
def test_bad_conditions_are_invalid(conditions: list[dict[str, Any]], field: str, message: str) -> None:
    obj = csr()
    obj["status"] = {"conditions": conditions}
    causes = vc.validate_csr(obj)
    assert any(c["field"] == field and message in c["message"] for c in causes), causes


def test_the_certificate_is_only_pem_certificates() -> None:
    pem, key_pem = pem_pair(*generate_certificate("x", days=1))
    assert vc.check_certificate(_b64(pem + pem)) == ""
    assert vc.check_certificate("") == ""
    assert "at least one CERTIFICATE" in vc.check_certificate(_b64("nothing"))
    assert 'found "CERTIFICATE REQUEST"' in vc.check_certificate(_b64(pem + csr_pem()))
    assert 'found "PRIVATE KEY"' in vc.check_certificate(_b64(key_pem))


def test_updates_keep_approval_and_the_certificate() -> None:
    old = csr()
    old["status"] = {"conditions": [{"type": "Approved", "status": "True"}], "certificate": _b64("x")}
    removed = {**old, "status": {"conditions": [], "certificate": _b64("x")}}
    assert fields(vc.validate_update(removed, old)) == ["status.conditions"]
    changed = {**old, "status": {**old["status"], "certificate": _b64("y")}}
    assert "updates may not modify" in vc.validate_update(changed, old)[0]["message"]
    pending = csr()
    issued = {**pending, "status": {"certificate": _b64("x")}}
    assert "requires an Approved condition" in vc.validate_update(issued, pending)[0]["message"]


def test_csr_names_are_path_segments() -> None:
    obj = csr()
    obj["metadata"]["name"] = "node-csr-ABC_def"
    assert CSR_INFO is not None
    assert validation.validate(CSR_INFO, obj) == []
    obj["metadata"]["name"] = "a/b"
    assert fields(validation.validate(CSR_INFO, obj)) == ["metadata.name"]


# --- strategies ---------------------------------------------------------------------------------------------------
def test_create_takes_the_user_from_the_request() -> None:
    obj = csr(username="someone-else", groups=["system:masters"], uid="forged")
    obj["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    user = UserInfo(
        "system:bootstrap:abcdef", ("system:bootstrappers", "system:authenticated"), "", (("k", ("v",)),)
    )
    certificates.prepare_create(obj, user)
    assert obj["spec"]["username"] == "system:bootstrap:abcdef"
    assert obj["spec"]["groups"] == ["system:bootstrappers", "system:authenticated"]
    assert obj["spec"]["extra"] == {"k": ["v"]}
    assert "uid" not in obj["spec"]
    assert obj["status"] == {}


def stored() -> dict[str, Any]:
    obj = csr()
    obj["metadata"].update({"uid": "u", "creationTimestamp": "2027-01-15T08:00:00Z", "resourceVersion": "5"})
    obj["spec"]["username"] = "system:bootstrap:abcdef"
    return obj


def test_approval_changes_only_the_conditions() -> None:
    assert CSR_INFO is not None
    old = stored()
    new = stored()
    new["spec"]["signerName"] = "example.com/other"
    new["status"] = {
        "conditions": [{"type": "Approved", "status": "True", "reason": "R"}],
        "certificate": _b64("x"),
    }
    result = strategy.prepare_for_update(CSR_INFO, new, old, "approval")
    assert result["spec"] == old["spec"]
    assert "certificate" not in result["status"]
    (cond,) = result["status"]["conditions"]
    assert cond["type"] == "Approved" and cond["lastUpdateTime"] and cond["lastTransitionTime"]


def test_status_keeps_the_stored_approval_and_the_main_resource_keeps_the_status() -> None:
    assert CSR_INFO is not None
    old = stored()
    old["status"] = {
        "conditions": [{"type": "Approved", "status": "True", "lastTransitionTime": "2027-01-15T08:00:00Z"}]
    }
    new = stored()
    new["status"] = {"conditions": [{"type": "Failed", "status": "True"}]}
    result = strategy.prepare_for_update(CSR_INFO, new, old, "status")
    assert [c["type"] for c in result["status"]["conditions"]] == ["Failed", "Approved"]
    new = stored()
    new["metadata"]["labels"] = {"a": "b"}
    new["spec"]["usages"] = ["server auth"]
    new["status"] = {}
    result = strategy.prepare_for_update(CSR_INFO, new, old, None)
    assert result["metadata"]["labels"] == {"a": "b"}
    assert result["spec"] == old["spec"]
    assert result["status"] == old["status"]


def test_a_status_write_without_status_keeps_the_approval() -> None:
    assert CSR_INFO is not None
    old = stored()
    old["status"] = {
        "conditions": [{"type": "Approved", "status": "True", "lastTransitionTime": "2027-01-15T08:00:00Z"}]
    }
    new = stored()
    new.pop("status")
    result = strategy.prepare_for_update(CSR_INFO, new, old, "status")
    assert [c["type"] for c in result["status"]["conditions"]] == ["Approved"]


class _Cache:
    def __init__(self, objects: dict[str, Any]) -> None:
        import asyncio

        self.ready = asyncio.Event()
        self.ready.set()
        self.objects = objects

    def get(self, key: str) -> Any:
        return self.objects.get(key)


class _Registry:
    def __init__(self, objects: dict[str, Any]) -> None:
        self.cache = _Cache(objects)
        self.etcd_reads = 0

    async def get(self, namespace: str | None, name: str) -> Any:
        self.etcd_reads += 1
        raise AssertionError("read from etcd while the watch cache is ready")


class _Storage:
    def __init__(self, reg: _Registry) -> None:
        self.reg = reg

    def registry(self, info: Any) -> _Registry:
        assert info.plural == "secrets"
        return self.reg


async def test_the_authenticator_reads_the_watch_cache() -> None:
    secret = token_secret(expiration="")
    reg = _Registry({"/registry/core/secrets/kube-system/bootstrap-token-abcdef": secret})
    tokens = authn.BootstrapTokens(_Storage(reg))  # type: ignore[arg-type]
    user = await tokens.authenticate("abcdef.0123456789abcdef")
    assert user is not None and user.name == "system:bootstrap:abcdef"
    with pytest.raises(authn.Unauthenticated):
        await tokens.authenticate("zzzzzz.0123456789abcdef")  # unknown: still no etcd read
    assert await tokens.authenticate("not-a-bootstrap-token") is None
    assert reg.etcd_reads == 0


def test_no_system_masters_client_certificates_through_the_api() -> None:
    from apimachinery import errors

    def request(orgs: tuple[str, ...]) -> str:
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        names.append(x509.NameAttribute(NameOID.COMMON_NAME, "eve"))
        req = (
            x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names)).sign(key, hashes.SHA256())
        )
        return _b64(req.public_bytes(serialization.Encoding.PEM))

    masters = csr(
        request=request(("dev", "system:masters")), signerName="kubernetes.io/kube-apiserver-client"
    )
    with pytest.raises(errors.Forbidden, match="system:masters"):
        certificates.admit_create(masters)
    certificates.admit_create(
        csr(request=request(("dev",)), signerName="kubernetes.io/kube-apiserver-client")
    )
    certificates.admit_create(csr(request=request(("system:masters",)), signerName="example.com/other"))
