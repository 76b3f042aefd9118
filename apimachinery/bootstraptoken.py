"""Bootstrap tokens, the signed ``cluster-info`` ConfigMap and the CA pin, as kubeadm has them.

A bootstrap token ``ID.SECRET`` (``[a-z0-9]{6}.[a-z0-9]{16}``) lives as Secret
``kube-system/bootstrap-token-ID`` of type ``bootstrap.kubernetes.io/token``.  The bootstrap signer
puts into ConfigMap ``kube-public/cluster-info`` one detached JWS per token that has
``usage-bootstrap-signing``: key ``jws-kubeconfig-ID``, value ``HEADER..SIGNATURE`` -- an HS256
signature of the ConfigMap's ``kubeconfig`` keyed with the token's secret, header
``{"alg":"HS256","kid":"ID"}`` (Kubernetes' ``cluster-bootstrap/token/jws``).  A joining host that
knows the token reads ``cluster-info`` without credentials and checks the signature (so it knows
the kubeconfig came from someone who knows the token), then checks the CA in it against the pin
``sha256:HEX`` -- the SHA-256 of the CA certificate's SubjectPublicKeyInfo (kubeadm's
``--discovery-token-ca-cert-hash``) -- before it sends the token anywhere.

Everything here is pure: no I/O.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

TOKEN_NAMESPACE = "kube-system"
SECRET_PREFIX = "bootstrap-token-"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
TOKEN_ID_KEY = "token-id"
TOKEN_SECRET_KEY = "token-secret"
EXPIRATION_KEY = "expiration"
DESCRIPTION_KEY = "description"
EXTRA_GROUPS_KEY = "auth-extra-groups"
USAGE_PREFIX = "usage-bootstrap-"
USAGES = ("signing", "authentication")
DEFAULT_GROUP = "system:bootstrappers:kubeadm:default-node-token"
GROUP_PREFIX = "system:bootstrappers:"

CLUSTER_INFO_NAMESPACE = "kube-public"
CLUSTER_INFO_NAME = "cluster-info"
KUBECONFIG_KEY = "kubeconfig"
JWS_KEY_PREFIX = "jws-kubeconfig-"

TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
TOKEN_ID_RE = re.compile(r"^[a-z0-9]{6}$")
GROUP_RE = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")
PIN_RE = re.compile(r"^sha256:([0-9a-f]{64})$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class TokenError(ValueError):
    """A malformed token, usage, group, duration or pin."""


# ---- tokens ---------------------------------------------------------------------------------------


def generate_token() -> str:
    """A fresh ``ID.SECRET`` from the OS's random source."""
    pick = "".join(secrets.choice(_ALPHABET) for _ in range(22))
    return f"{pick[:6]}.{pick[6:]}"


def parse_token(token: str) -> tuple[str, str]:
    """(ID, SECRET) of ``ID.SECRET``; :class:`TokenError` when it is not one."""
    m = TOKEN_RE.match(token)
    if m is None:
        raise TokenError(f"the bootstrap token {token!r} does not match [a-z0-9]{{6}}.[a-z0-9]{{16}}")
    return m.group(1), m.group(2)


def secret_name(token_id: str) -> str:
    return f"{SECRET_PREFIX}{token_id}"


def parse_duration(text: str) -> dt.timedelta:
    """A Go duration as kubeadm's ``--ttl`` takes it (``24h``, ``1h30m``, ``90s``, ``0`` = never)."""
    text = text.strip()
    if text in ("0", "0s"):
        return dt.timedelta(0)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise TokenError(f"invalid duration {text!r} (as 24h, 1h30m, 90s)")
    return dt.timedelta(seconds=sum(float(n) * units[u] for n, u in parts))


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def token_secret(
    token: str,
    *,
    ttl: dt.timedelta | None = dt.timedelta(hours=24),
    description: str = "",
    usages: Iterable[str] = USAGES,
    groups: Iterable[str] = (DEFAULT_GROUP,),
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The Secret kubeadm's ``token create`` writes for ``token`` (``ttl`` None or 0: no expiry)."""
    token_id, token_secret_ = parse_token(token)
    usages = list(usages)
    unknown = [u for u in usages if u not in USAGES]
    if unknown:
        raise TokenError(f"unknown usages {unknown}; known: {', '.join(USAGES)}")
    groups = list(groups)
    bad = [g for g in groups if not GROUP_RE.match(g)]
    if bad:
        raise TokenError(f"groups {bad} must match {GROUP_RE.pattern}")
    if groups and "authentication" not in usages:
        raise TokenError("--groups needs the authentication usage")
    data: dict[str, str] = {TOKEN_ID_KEY: token_id, TOKEN_SECRET_KEY: token_secret_}
    if description:
        data[DESCRIPTION_KEY] = description
    if ttl:
        data[EXPIRATION_KEY] = rfc3339((now or dt.datetime.now(dt.UTC)) + ttl)
    for usage in usages:
        data[USAGE_PREFIX + usage] = "true"
    if groups:
        data[EXTRA_GROUPS_KEY] = ",".join(groups)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name(token_id), "namespace": TOKEN_NAMESPACE},
        "type": SECRET_TYPE,
        "stringData": data,
    }


def secret_data(secret: Mapping[str, Any]) -> dict[str, str]:
    """The Secret's data decoded (``stringData`` merged over it, as the API server stores it)."""
    out: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[str(key)] = base64.b64decode(str(value)).decode()
        except (ValueError, UnicodeDecodeError):
            continue
    out.update({str(k): str(v) for k, v in (secret.get("stringData") or {}).items()})
    return out


def token_of_secret(secret: Mapping[str, Any]) -> tuple[str, str] | None:
    """(ID, SECRET) of a well-formed bootstrap token Secret, else None (as Kubernetes' ParseToken)."""
    if secret.get("type") != SECRET_TYPE:
        return None
    name = str((secret.get("metadata") or {}).get("name") or "")
    data = secret_data(secret)
    token_id, token_secret_ = data.get(TOKEN_ID_KEY, ""), data.get(TOKEN_SECRET_KEY, "")
    if not TOKEN_RE.match(f"{token_id}.{token_secret_}") or name != secret_name(token_id):
        return None
    return token_id, token_secret_


def expiration_of(secret: Mapping[str, Any]) -> dt.datetime | None:
    """When the token expires; None for never (or an unparsable value, which Kubernetes treats as
    expired: see :func:`is_expired`)."""
    text = secret_data(secret).get(EXPIRATION_KEY)
    return parse_rfc3339(text) if text else None


def is_expired(secret: Mapping[str, Any], now: dt.datetime) -> bool:
    """Whether the token's ``expiration`` has passed; an unparsable one counts as expired."""
    text = secret_data(secret).get(EXPIRATION_KEY)
    if not text:
        return False
    when = parse_rfc3339(text)
    return when is None or when <= now


# ---- detached JWS (cluster-bootstrap/token/jws) -----------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compute_detached_signature(content: str, token_id: str, token_secret_: str) -> str:
    """``HEADER..SIGNATURE``: the compact HS256 JWS of ``content`` with its payload left out."""
    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    payload = _b64url(content.encode())
    mac = hmac.new(token_secret_.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}..{_b64url(mac)}"


def detached_token_is_valid(detached: str, content: str, token_id: str, token_secret_: str) -> bool:
    """Whether ``detached`` signs ``content`` with the token (compared in constant time)."""
    expected = compute_detached_signature(content, token_id, token_secret_)
    return hmac.compare_digest(detached.encode(), expected.encode())


# ---- cluster-info and the CA pin ------------------------------------------------------------------


def cluster_info_kubeconfig(server: str, ca_pem: str) -> str:
    """The kubeconfig kubeadm puts in ``cluster-info``: one cluster, its server and CA, no user."""
    import yaml

    data: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "",
                "cluster": {
                    "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode(),
                    "server": server,
                },
            }
        ],
        "contexts": None,
        "current-context": "",
        "preferences": {},
        "users": None,
    }
    return str(yaml.safe_dump(data, sort_keys=True))  # keys sorted, as client-go writes them


def ca_pin(ca_cert: bytes | str | x509.Certificate) -> str:
    """``sha256:HEX`` of the certificate's SubjectPublicKeyInfo (DER), kubeadm's pin format."""
    cert = ca_cert
    if not isinstance(cert, x509.Certificate):
        raw = cert.encode() if isinstance(cert, str) else cert
        cert = (
            x509.load_pem_x509_certificate(raw)
            if raw.lstrip().startswith(b"-----BEGIN")
            else x509.load_der_x509_certificate(raw)
        )
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def normalize_pin(pin: str) -> str:
    """``sha256:hex`` in lower case; :class:`TokenError` for any other format."""
    pin = pin.strip().lower()
    if not PIN_RE.match(pin):
        raise TokenError(f"CA pin {pin!r} is not in the format sha256:<64 hex digits>")
    return pin


def verify_cluster_info(cluster_info: Mapping[str, Any], token: str, pins: Iterable[str]) -> dict[str, Any]:
    """What a joining host does with ``cluster-info`` (kubeadm's token discovery).

    Check the JWS for the token's ID against the ConfigMap's ``kubeconfig``, then that the CA in it
    has one of ``pins``.  Returns ``{"server": URL, "ca_pem": PEM, "kubeconfig": TEXT}``; raises
    :class:`TokenError` on any failure (no signature for the token, a bad signature, no or several
    clusters, a CA matching no pin).  An empty ``pins`` is refused: the CA must be pinned.
    """
    import yaml

    token_id, token_secret_ = parse_token(token)
    wanted = {normalize_pin(p) for p in pins}
    if not wanted:
        raise TokenError("no CA pin given: pass --discovery-token-ca-cert-hash sha256:<hex>")
    data = cluster_info.get("data") or {}
    content = data.get(KUBECONFIG_KEY)
    if not isinstance(content, str) or not content:
        raise TokenError("cluster-info has no kubeconfig")
    detached = data.get(JWS_KEY_PREFIX + token_id)
    if not isinstance(detached, str) or not detached:
        raise TokenError(f"cluster-info has no signature for token ID {token_id!r}")
    if not detached_token_is_valid(detached, content, token_id, token_secret_):
        raise TokenError(f"cluster-info's signature for token ID {token_id!r} is not valid")
    try:
        config = yaml.safe_load(content)
        clusters = config.get("clusters") or []
    except (yaml.YAMLError, AttributeError) as exc:
        raise TokenError(f"cluster-info's kubeconfig does not parse: {exc}") from exc
    if len(clusters) != 1:
        raise TokenError(f"cluster-info's kubeconfig has {len(clusters)} clusters, expected 1")
    cluster = clusters[0].get("cluster") or {}
    try:
        ca_pem = base64.b64decode(str(cluster.get("certificate-authority-data") or "")).decode()
        pin = ca_pin(ca_pem)
    except ValueError as exc:
        raise TokenError(f"cluster-info's CA does not parse: {exc}") from exc
    if pin not in wanted:
        raise TokenError(f"cluster CA found in cluster-info has pin {pin}, which matches none given")
    return {"server": str(cluster.get("server") or ""), "ca_pem": ca_pem, "kubeconfig": content}
