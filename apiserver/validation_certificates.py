"""Validation of ``certificates.k8s.io/v1`` CertificateSigningRequests, as
``pkg/apis/certificates/validation``.

* ``spec.request`` is a PEM ``CERTIFICATE REQUEST`` block that parses and whose signature holds;
* ``spec.signerName`` is required and of the form ``example.com/signer-name``;
* ``spec.usages`` is required, each usage a known one, none twice;
* ``spec.expirationSeconds``, when set, is at least 600;
* ``status.conditions``: a known status, no type twice, Approved and Denied only True and never
  both;
* ``status.certificate``, when set, is nothing but PEM ``CERTIFICATE`` blocks that parse.

On update (:func:`validate_update`): Approved and Denied conditions are never removed, and an issued
certificate never changes; a certificate is set only on an approved request that is neither denied
nor failed.  In JSON, ``spec.request`` and ``status.certificate`` are base64 (Go's ``[]byte``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509

from apimachinery.selectors import is_dns1123_label, is_dns1123_subdomain

from . import validation as v

Obj = dict[str, Any]
Cause = dict[str, str]

APPROVED = "Approved"
DENIED = "Denied"
FAILED = "Failed"
_STATUSES = ["True", "False", "Unknown"]
MIN_EXPIRATION_SECONDS = 600

# certificates.KeyUsage: every usage Kubernetes knows
USAGES = sorted(
    [
        "signing",
        "digital signature",
        "content commitment",
        "key encipherment",
        "key agreement",
        "data encipherment",
        "cert sign",
        "crl sign",
        "encipher only",
        "decipher only",
        "any",
        "server auth",
        "client auth",
        "code signing",
        "email protection",
        "s/mime",
        "ipsec end system",
        "ipsec tunnel",
        "ipsec user",
        "timestamping",
        "ocsp signing",
        "microsoft sgc",
        "netscape sgc",
    ]
)

_CERT_DATA = v._Shown('"<certificate data>"')


def decode_bytes(value: Any) -> bytes | None:
    """A ``[]byte`` field's bytes (base64 in JSON), None when it is not valid base64."""
    if value is None or value == "":
        return b""
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _pem_blocks(data: bytes) -> list[tuple[str, bytes, bool]]:
    """The PEM blocks of ``data``: (type, DER, whether the block has headers), as Go's pem.Decode."""
    blocks = []
    text = data.decode("latin-1")
    pos = 0
    while True:
        start = text.find("-----BEGIN ", pos)
        if start < 0:
            break
        head_end = text.find("-----", start + 11)
        if head_end < 0:
            break
        kind = text[start + 11 : head_end]
        end_marker = f"-----END {kind}-----"
        end = text.find(end_marker, head_end)
        if end < 0:
            break
        body = text[head_end + 5 : end].strip("\r\n")
        headers = ":" in body
        try:
            der = base64.b64decode("".join(body.split()), validate=True) if not headers else b""
        except (binascii.Error, ValueError):
            break
        blocks.append((kind, der, headers))
        pos = end + len(end_marker)
    return blocks


def parse_csr(data: bytes) -> x509.CertificateSigningRequest:
    """``certificates.ParseCSR``: the first PEM block, which must be a CERTIFICATE REQUEST;
    raises ValueError with Kubernetes' message."""
    blocks = _pem_blocks(data)
    if not blocks or blocks[0][0] != "CERTIFICATE REQUEST":
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    try:
        return x509.load_der_x509_csr(blocks[0][1])
    except ValueError as e:
        raise ValueError(f"x509: malformed certificate request ({e})") from None


def _check_request(value: Any) -> str:
    """What is wrong with ``spec.request`` (empty when it parses and its signature holds)."""
    data = decode_bytes(value)
    if data is None:
        return "must be base64-encoded PEM"
    try:
        csr = parse_csr(data)
    except ValueError as e:
        return str(e)
    if not csr.is_signature_valid:
        return "x509: ECDSA verification failure"
    return ""


def check_certificate(value: Any) -> str:
    """``validateCertificate``: what is wrong with ``status.certificate`` (empty when fine)."""
    data = decode_bytes(value)
    if data is None:
        return "must be base64-encoded PEM"
    if not data:
        return ""
    blocks = _pem_blocks(data)
    for kind, der, headers in blocks:
        if kind != "CERTIFICATE":
            return f'only CERTIFICATE PEM blocks are allowed, found "{kind}"'
        if headers:
            return "no PEM block headers are permitted"
        try:
            x509.load_der_x509_certificate(der)
        except ValueError as e:
            return f"x509: malformed certificate ({e})"
    if not blocks:
        return "must contain at least one CERTIFICATE PEM block"
    return ""


def validate_signer_name(name: Any, path: str) -> list[Cause]:
    """``ValidateSignerName``: ``DOMAIN/PATH``, the domain DNS labels with at least one dot."""
    if not name:
        return [v.required(path)]
    if not isinstance(name, str):
        return [v.invalid(path, name, "must be a string")]
    segments = name.split("/")
    if len(segments) != 2:
        return [
            v.invalid(
                path, name, "must be a fully qualified domain and path of the form 'example.com/signer-name'"
            )
        ]
    domain, rest = segments
    causes: list[Cause] = []
    if len(domain) > 253:
        causes.append(v.too_long(path, 253))
    labels = domain.split(".")
    for label in labels:
        errs = is_dns1123_label(label)
        if errs:
            causes.extend(v.invalid(path, domain, f'validating label "{label}": {e}') for e in errs)
            break
    if len(labels) < 2:
        causes.append(
            v.invalid(path, domain, "should be a domain with at least two segments separated by dots")
        )
    if len(rest) > 253:
        causes.append(v.too_long(path, 253))
    elif not rest:
        causes.append(v.invalid(path, rest, "must not be empty"))
    else:
        for part in rest.split("."):
            errs = is_dns1123_subdomain(part) if part else ["must not be empty"]
            if errs:
                causes.extend(v.invalid(path, rest, f'validating component "{part}": {e}') for e in errs)
                break
    return causes


def _conditions(obj: Obj) -> list[Cause]:
    path = "status.conditions"
    causes: list[Cause] = []
    seen: set[str] = set()
    approved = denied = False
    conditions = v._l(v._d(obj.get("status")).get("conditions"))
    for i, c in enumerate(conditions):
        c = v._d(c)
        here = f"{path}[{i}]"
        ctype = c.get("type")
        if not ctype:
            causes.append(v.required(f"{here}.type"))
        status = c.get("status")
        if status not in _STATUSES:
            causes.append(v.not_supported(f"{here}.status", status, _STATUSES))
        if ctype in seen:
            causes.append(v.duplicate(f"{here}.type", ctype))
        seen.add(str(ctype))
        if ctype in (APPROVED, DENIED):
            if ctype == APPROVED:
                approved = True
            else:
                denied = True
            if status != "True":
                causes.append(
                    v.invalid(f"{here}.status", status, f"{ctype} condition may only be set to True")
                )
    if approved and denied:
        causes.append(
            v.invalid(path, v._Shown("conditions"), "Approved and Denied conditions are mutually exclusive")
        )
    return causes


def validate_csr(obj: Obj) -> list[Cause]:
    """``ValidateCertificateSigningRequestCreate`` (the object checks every write repeats)."""
    spec = v._d(obj.get("spec"))
    causes: list[Cause] = []
    problem = _check_request(spec.get("request"))
    if problem:
        causes.append(v.invalid("spec.request", v._Shown('"<request data>"'), problem))
    usages = spec.get("usages")
    if not usages:
        causes.append(v.required("spec.usages"))
    seen: set[Any] = set()
    for i, usage in enumerate(v._l(usages)):
        if usage not in USAGES:
            causes.append(v.not_supported(f"spec.usages[{i}]", usage, USAGES))
        if isinstance(usage, str):
            if usage in seen:
                causes.append(v.duplicate(f"spec.usages[{i}]", usage))
            seen.add(usage)
    signer = spec.get("signerName")
    if signer == "kubernetes.io/legacy-unknown":
        causes.append(
            v.invalid("spec.signerName", signer, "the legacy signerName is not allowed via this API version")
        )
    else:
        causes.extend(validate_signer_name(signer, "spec.signerName"))
    seconds = spec.get("expirationSeconds")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            causes.append(v.invalid("spec.expirationSeconds", seconds, "must be an integer"))
        elif seconds < MIN_EXPIRATION_SECONDS:
            causes.append(
                v.invalid(
                    "spec.expirationSeconds",
                    seconds,
                    "may not specify a duration less than 600 seconds (10 minutes)",
                )
            )
    causes.extend(_conditions(obj))
    problem = check_certificate(v._d(obj.get("status")).get("certificate"))
    if problem:
        causes.append(v.invalid("status.certificate", _CERT_DATA, problem))
    return causes


def _types(obj: Obj, ctype: str) -> list[Obj]:
    return [
        c
        for c in v._l(v._d(obj.get("status")).get("conditions"))
        if isinstance(c, dict) and c.get("type") == ctype
    ]


def has_true(obj: Obj, ctype: str) -> bool:
    return any(c.get("status") == "True" for c in _types(obj, ctype))


def validate_update(obj: Obj, old: Obj) -> list[Cause]:
    """The update checks of /approval and /status: no Approved or Denied condition removed; an
    issued certificate never changes and is set only on an approved, not denied or failed request."""
    causes: list[Cause] = []
    for ctype in (APPROVED, DENIED):
        if len(_types(obj, ctype)) < len(_types(old, ctype)):
            causes.append(
                v.forbidden("status.conditions", f'updates may not remove a condition of type "{ctype}"')
            )
    new_cert = v._d(obj.get("status")).get("certificate") or ""
    old_cert = v._d(old.get("status")).get("certificate") or ""
    if old_cert and new_cert != old_cert:
        causes.append(
            v.forbidden("status.certificate", "updates may not modify existing certificate content")
        )
    elif new_cert and not old_cert:
        if not has_true(obj, APPROVED):
            causes.append(
                v.forbidden("status.certificate", "certificate issuance requires an Approved condition")
            )
        if has_true(obj, DENIED):
            causes.append(
                v.forbidden("status.certificate", "certificate issuance forbidden with a Denied condition")
            )
        if has_true(obj, FAILED):
            causes.append(
                v.forbidden("status.certificate", "certificate issuance forbidden with a Failed condition")
            )
    return causes
