"""The kubelet's client-certificate rotation: when it renews, what it asks for, how it writes."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from kubelet import certrotation as cr

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_the_jittered_fraction_spans_70_to_90_percent() -> None:
    assert cr.rotation_fraction(lambda: 0.0) == pytest.approx(0.7)
    assert cr.rotation_fraction(lambda: 0.5) == pytest.approx(0.8)
    assert cr.rotation_fraction(lambda: 0.999999) == pytest.approx(0.9, abs=1e-5)
    seen = [cr.rotation_fraction() for _ in range(200)]
    assert all(0.7 <= f < 0.9 for f in seen) and len(set(seen)) > 1


def test_deadline_is_that_share_of_the_lifetime_after_not_before() -> None:
    end = T0 + dt.timedelta(days=10)
    assert cr.rotation_deadline(T0, end, 0.7) == T0 + dt.timedelta(days=7)
    assert cr.rotation_deadline(T0, end, 0.9) == T0 + dt.timedelta(days=9)
    assert cr.rotation_deadline(T0, end, 0.0) == T0
    with pytest.raises(ValueError):
        cr.rotation_deadline(T0, end, 1.5)


def test_seconds_until_never_negative() -> None:
    assert cr.seconds_until(T0 + dt.timedelta(seconds=30), T0) == 30
    assert cr.seconds_until(T0, T0 + dt.timedelta(hours=1)) == 0


def test_a_backdated_ten_minute_certificate_renews_after_a_share_of_fifteen_minutes() -> None:
    issued = T0
    not_before, not_after = issued - dt.timedelta(minutes=5), issued + dt.timedelta(minutes=10)
    deadline = cr.rotation_deadline(not_before, not_after, 0.36)
    assert cr.seconds_until(deadline, issued) == pytest.approx(24)


def test_the_csr_is_a_kubelet_client_request() -> None:
    key = cr.new_key()
    obj = cr.csr_object("n1", cr.csr_pem("n1", key), 600)
    spec = obj["spec"]
    assert spec["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
    assert spec["usages"] == ["digital signature", "client auth"]
    assert spec["expirationSeconds"] == 600
    assert obj["metadata"]["generateName"] == "node-csr-"
    req = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
    assert req.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    assert req.is_signature_valid
    assert "expirationSeconds" not in cr.csr_object("n1", cr.csr_pem("n1", key))["spec"]


def test_issued_certificate_waits_then_returns_or_fails() -> None:
    assert cr.issued_certificate({"status": {}}) is None
    pem = b"-----BEGIN CERTIFICATE-----\n"
    assert cr.issued_certificate({"status": {"certificate": base64.b64encode(pem).decode()}}) == pem
    denied = {"metadata": {"name": "x"}, "status": {"conditions": [{"type": "Denied", "status": "True"}]}}
    with pytest.raises(ValueError, match="Denied"):
        cr.issued_certificate(denied)


def test_the_pair_is_written_atomically_and_privately(tmp_path: Path) -> None:
    path = tmp_path / "pki" / "kubelet-client-current.pem"
    key = cr.new_key()
    cr.write_pair_atomically(path, b"CERT\n", cr.key_pem(key))
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_bytes()
    assert text.startswith(b"CERT\n-----BEGIN PRIVATE KEY-----")
    serialization.load_pem_private_key(text[len(b"CERT\n") :], None)
    cr.write_pair_atomically(path, b"CERT2\n", cr.key_pem(key))
    assert path.read_bytes().startswith(b"CERT2\n")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


# ---- one renewal against a fake API ----------------------------------------------------------------


def _sign(csr_pem: bytes, public_key: object | None = None) -> bytes:
    """A certificate for the CSR's subject, for ``public_key`` (default: the CSR's own key)."""
    req = x509.load_pem_x509_csr(csr_pem)
    ca_key = cr.new_key()
    ca_name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(req.subject)
        .issuer_name(ca_name)
        .public_key(public_key or req.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class _FakeCSRs:
    """Answers the CSR create with a signed certificate on the first get."""

    def __init__(self, wrong_key: bool = False) -> None:
        self.wrong_key = wrong_key
        self.obj: dict = {}

    async def create(self, _kind: object, obj: dict) -> dict:
        request = base64.b64decode(obj["spec"]["request"])
        other = cr.new_key().public_key() if self.wrong_key else None
        self.obj = {
            "metadata": {"name": "node-csr-x"},
            "status": {"certificate": base64.b64encode(_sign(request, other)).decode()},
        }
        return self.obj

    async def get(self, _kind: object, _name: str) -> dict:
        return self.obj


class _RefusingContext:
    def load_cert_chain(self, certfile: str, keyfile: str) -> None:
        raise ssl.SSLError("refused")


def _old_pair(tmp_path: Path) -> Path:
    path = tmp_path / "kubelet-client-current.pem"
    path.write_bytes(b"OLD\n")
    return path


def _rotator(client: object, path: Path, ctx: object) -> cr.Rotator:
    return cr.Rotator(client, "n1", path, ctx)  # type: ignore[arg-type]


def test_rotate_installs_a_certificate_for_the_new_key(tmp_path: Path) -> None:
    path = _old_pair(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    rot = _rotator(_FakeCSRs(), path, ctx)
    cert = asyncio.run(rot.rotate(timeout=5))
    assert rot.rotations == 1
    assert cr.load_certificate(path).serial_number == cert.serial_number
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_rotate_refuses_a_certificate_for_another_key_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = _old_pair(tmp_path)
    rot = _rotator(_FakeCSRs(wrong_key=True), path, ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    with pytest.raises(ValueError, match="does not match the new private key"):
        asyncio.run(rot.rotate(timeout=5))
    assert path.read_bytes() == b"OLD\n"
    assert rot.rotations == 0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_rotate_keeps_the_old_file_when_the_new_pair_cannot_be_loaded(tmp_path: Path) -> None:
    path = _old_pair(tmp_path)
    rot = _rotator(_FakeCSRs(), path, _RefusingContext())
    with pytest.raises(ssl.SSLError):
        asyncio.run(rot.rotate(timeout=5))
    assert path.read_bytes() == b"OLD\n"  # loaded from the temporary file, before the rename
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
