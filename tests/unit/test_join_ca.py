"""minik join writes the cluster CA atomically: a new file renamed over the old one."""

from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from cli import join
from kubelet import certrotation as cr

NEW_CA = "-----BEGIN CERTIFICATE-----\nNEW\n-----END CERTIFICATE-----\n"


def _signed(csr_b64: str) -> str:
    req = x509.load_pem_x509_csr(base64.b64decode(csr_b64))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(req.subject)
        .issuer_name(req.subject)
        .public_key(req.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(cr.new_key(), hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> None:
    """An API server that signs the CSR at once."""
    csr: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        import json

        if request.method == "POST":
            body = json.loads(request.content)
            csr.update(body, metadata={"name": "node-csr-x"})
            return httpx.Response(201, json=csr)
        return httpx.Response(200, json={**csr, "status": {"certificate": _signed(csr["spec"]["request"])}})

    def client(server: str, ca_pem: str, token: str | None = None, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=server, transport=httpx.MockTransport(handler))

    monkeypatch.setattr(join, "trusted_client", client)


def test_the_ca_replaces_the_old_file_by_rename(tmp_path: Path, api: None) -> None:
    state = tmp_path / "state"
    ca = join.ca_file(state)
    ca.parent.mkdir(parents=True)
    ca.write_text("OLD CA\n")
    reader = tmp_path / "reader-view"
    os.link(ca, reader)  # what a reader holding the old file sees

    join.bootstrap_credentials("https://cp.test:6443", NEW_CA, "abcdef.0123456789abcdef", "w1", state)

    assert ca.read_text() == NEW_CA
    assert reader.read_text() == "OLD CA\n"  # not truncated and rewritten in place
    assert sorted(p.name for p in ca.parent.iterdir()) == ["ca.crt"]  # no temporary file left
    assert ca.stat().st_mode & 0o777 == 0o644
