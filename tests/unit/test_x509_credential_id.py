"""The credential ID of a client certificate (``authentication.kubernetes.io/credential-id``,
``X509SHA256=...``, as Kubernetes' x509 authenticator sets it) and the protobuf form of the
``extra`` map that carries it (``ExtraValue``: a JSON list of strings, as kubectl sends a CSR)."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from apimachinery.pki import generate_certificate
from apiserver import protobuf
from apiserver.authn import EXTRA_CREDENTIAL_ID, x509_credential_id, x509_user


def _cert(cn: str) -> bytes:
    cert, _ = generate_certificate(cn, days=1)
    return cert.public_bytes(serialization.Encoding.DER)


def test_two_certificates_of_one_user_have_different_credential_ids() -> None:
    a, b = _cert("system:node:n1"), _cert("system:node:n1")
    ua, ub = x509_user(a), x509_user(b)
    assert ua.name == ub.name == "system:node:n1"
    assert ua.extra_dict() == {EXTRA_CREDENTIAL_ID: ["X509SHA256=" + hashlib.sha256(a).hexdigest()]}
    assert ua.extra_dict() != ub.extra_dict()
    pem = x509.load_der_x509_certificate(a).public_bytes(serialization.Encoding.PEM)
    assert x509_credential_id(pem) == x509_credential_id(a)


def _len_field(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([(number << 3) | 2, len(payload)]) + payload


def test_a_protobuf_extra_map_decodes_to_lists_of_strings() -> None:
    value = _len_field(1, b"X509SHA256=ab") + _len_field(1, b"second")
    entry = _len_field(1, EXTRA_CREDENTIAL_ID.encode()) + _len_field(2, value)
    spec = _len_field(2, b"alice") + _len_field(6, entry)
    decoded = protobuf.decode_message("k8s.io.api.certificates.v1.CertificateSigningRequestSpec", spec)
    assert decoded == {"username": "alice", "extra": {EXTRA_CREDENTIAL_ID: ["X509SHA256=ab", "second"]}}
