"""What another control plane needs from the first, as kubeadm's ``upload-certs`` and
``kubeadm-config`` give it: the shared keys (encrypted) and the cluster's configuration.

``kube-system/minik-certs`` (kubeadm's ``kubeadm-certs``): a Secret holding the cluster CA and its
key, the service-account key pair and the Secrets' encryption config, each value encrypted with
AES-256-GCM under a fresh 32-byte key that ``minik token create --control-plane`` prints once (as
``--certificate-key HEX``) and never stores.  A value is ``nonce (12 bytes) || ciphertext+tag``,
base64 in the Secret's ``data`` (kubeadm's layout).  A wrong key fails the GCM tag check: nothing is
written.  The Secret has an owner reference to a bootstrap token of its own that expires when the
join token does, after 2 hours at most (kubeadm's TTL for ``kubeadm-certs``): the controller
manager's tokencleaner deletes that token and the garbage collector the Secret with it.  Only
``system:bootstrappers`` may read it, by name (apiserver/bootstrap_policy.py).

``kube-system/minik-config`` (kubeadm's ``kubeadm-config``): the cluster's settings a joining host
must share -- ``clusterCIDR``, ``serviceCIDR``, ``clusterDomain``, ``controlPlaneEndpoint``,
``podNetworkBackend`` and ``etcdEndpoints`` (the etcd members' client URLs, comma separated; each
control plane that joins adds its own).  Readable by bootstrap tokens and nodes.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CERTS_SECRET = "minik-certs"
CONFIG_MAP = "minik-config"
NAMESPACE = "kube-system"
CERTS_TTL_SECONDS = 2 * 3600  # kubeadm's certificate-key lifetime
NONCE_SIZE = 12

# Secret key -> where it lives in a state directory (minik up's layout)
SHARED_FILES: dict[str, str] = {
    "ca.crt": "pki/ca.crt",
    "ca.key": "pki/ca.key",
    "sa.key": "pki/sa.key",
    "sa.pub": "pki/sa.pub",
    "encryption-config.yaml": "encryption-config.yaml",
    "etcd-ca.crt": "pki/etcd/ca.crt",
    "etcd-ca.key": "pki/etcd/ca.key",
}
PRIVATE = {"ca.key", "sa.key", "encryption-config.yaml", "etcd-ca.key"}


class CertsError(Exception):
    """The certificate key is malformed or wrong, or the Secret is incomplete."""


class ConfigError(Exception):
    """``minik-config`` is missing a key or holds a malformed value."""


# ---- encryption ----------------------------------------------------------------------------------


def new_certificate_key() -> str:
    """A fresh AES-256 key, hex (64 characters), as ``kubeadm certs certificate-key`` prints one."""
    return os.urandom(32).hex()


def parse_certificate_key(key_hex: str) -> bytes:
    try:
        key = bytes.fromhex(key_hex.strip())
    except ValueError:
        raise CertsError("--certificate-key: not hexadecimal (64 hex digits expected)") from None
    if len(key) != 32:
        raise CertsError(f"--certificate-key: {len(key)} bytes, an AES-256 key has 32 (64 hex digits)")
    return key


def encrypt(key: bytes, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, None)


def decrypt(key: bytes, blob: bytes) -> bytes:
    if len(blob) < NONCE_SIZE + 16:
        raise CertsError("an encrypted value is too short")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], None)
    except InvalidTag:
        raise CertsError(
            "the certificate key does not decrypt kube-system/minik-certs (wrong --certificate-key, or the"
            " certificates were uploaded again with another key: run `minik token create --control-plane`)"
        ) from None


def read_shared_files(state: Path) -> dict[str, bytes]:
    out = {}
    for name, rel in SHARED_FILES.items():
        path = state / rel
        try:
            out[name] = path.read_bytes()
        except OSError as exc:
            raise CertsError(f"cannot read {path}: {exc.strerror} (run this on a control plane)") from exc
    return out


def certs_secret(
    files: dict[str, bytes], key_hex: str, owner: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``minik-certs`` Secret with every value of ``files`` encrypted; owned by ``owner``
    (the bootstrap token Secret that limits its life) when given."""
    key = parse_certificate_key(key_hex)
    meta: dict[str, Any] = {"name": CERTS_SECRET, "namespace": NAMESPACE}
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": {name: base64.b64encode(encrypt(key, data)).decode() for name, data in files.items()},
    }


def decrypt_secret(secret: dict[str, Any], key_hex: str) -> dict[str, bytes]:
    """Every shared file from ``minik-certs``, decrypted; CertsError on a wrong key or a missing value."""
    key = parse_certificate_key(key_hex)
    data = secret.get("data") or {}
    missing = [n for n in SHARED_FILES if n not in data]
    if missing:
        raise CertsError(f"kube-system/{CERTS_SECRET} lacks {', '.join(missing)}")
    out = {}
    for name in SHARED_FILES:
        try:
            blob = base64.b64decode(data[name], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise CertsError(f"kube-system/{CERTS_SECRET}: {name} is not base64") from None
        out[name] = decrypt(key, blob)
    return out


def write_shared_files(state: Path, files: dict[str, bytes]) -> None:
    for name, rel in SHARED_FILES.items():
        path = state / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent.name in ("pki", "etcd"):
            os.chmod(path.parent, 0o700)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if name in PRIVATE else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(files[name])
        tmp.replace(path)


# ---- minik-config --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterConfig:
    cluster_cidr: str
    service_cidr: str
    cluster_domain: str
    control_plane_endpoint: str  # HOST:PORT, "" when the cluster cannot take more control planes
    pod_network_backend: str
    etcd_endpoints: tuple[str, ...]

    def data(self) -> dict[str, str]:
        return {
            "clusterCIDR": self.cluster_cidr,
            "serviceCIDR": self.service_cidr,
            "clusterDomain": self.cluster_domain,
            "controlPlaneEndpoint": self.control_plane_endpoint,
            "podNetworkBackend": self.pod_network_backend,
            "etcdEndpoints": ",".join(self.etcd_endpoints),
        }


def parse_endpoint(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); ValueError when malformed."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: HOST:PORT expected, such as 10.0.0.10:6443")
    if "/" in host or " " in host:
        raise ValueError(f"{value!r}: HOST:PORT expected, such as 10.0.0.10:6443")
    return host, int(port)


def endpoint_url(endpoint: str) -> str:
    host, port = parse_endpoint(endpoint)
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    return f"https://{host}:{port}"


def config_map(config: ClusterConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": NAMESPACE},
        "data": config.data(),
    }


def parse_config(cm: dict[str, Any]) -> ClusterConfig:
    """``minik-config``'s data checked: CIDRs are networks, the endpoint HOST:PORT (or empty), the
    etcd endpoints https URLs."""
    data = cm.get("data") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{NAMESPACE}/{CONFIG_MAP}: data is not a map")

    def cidr(key: str) -> str:
        value = str(data.get(key) or "")
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ConfigError(f"{NAMESPACE}/{CONFIG_MAP}: {key} {value!r} is not a network") from None

    endpoint = str(data.get("controlPlaneEndpoint") or "").strip()
    if endpoint:
        try:
            parse_endpoint(endpoint)
        except ValueError as exc:
            raise ConfigError(f"{NAMESPACE}/{CONFIG_MAP}: controlPlaneEndpoint {exc}") from None
    etcd = tuple(e.strip() for e in str(data.get("etcdEndpoints") or "").split(",") if e.strip())
    for url in etcd:
        if not url.startswith("https://"):
            raise ConfigError(f"{NAMESPACE}/{CONFIG_MAP}: etcdEndpoints {url!r} is not an https:// URL")
    backend = str(data.get("podNetworkBackend") or "none")
    if backend not in ("none", "vxlan", "host-gw"):
        raise ConfigError(f"{NAMESPACE}/{CONFIG_MAP}: podNetworkBackend {backend!r}: none, vxlan or host-gw")
    return ClusterConfig(
        cluster_cidr=cidr("clusterCIDR"),
        service_cidr=cidr("serviceCIDR"),
        cluster_domain=str(data.get("clusterDomain") or "cluster.local"),
        control_plane_endpoint=endpoint,
        pod_network_backend=backend,
        etcd_endpoints=etcd,
    )


def with_etcd_endpoint(config: ClusterConfig, url: str, present: bool = True) -> ClusterConfig:
    """``config`` with ``url`` added to (or, ``present=False``, removed from) etcdEndpoints."""
    rest = tuple(e for e in config.etcd_endpoints if e != url)
    endpoints = (*rest, url) if present else rest
    return ClusterConfig(**{**config.__dict__, "etcd_endpoints": endpoints})
