"""Encryption at rest: Kubernetes' ``EncryptionConfiguration`` (apiserver.config.k8s.io/v1).

The file names, per resource, the providers in order::

    apiVersion: apiserver.config.k8s.io/v1
    kind: EncryptionConfiguration
    resources:
      - resources: [secrets]
        providers:
          - aesgcm:
              keys:
                - name: key2          # writes use the first key of the first provider
                  secret: <base64 of 32 random bytes>
                - name: key1          # older keys still read
                  secret: <base64>
          - identity: {}              # plaintext written before encryption was on still reads

Values are written with the first provider and read with whichever provider the stored value's
prefix names, exactly as Kubernetes stores them:

* ``aesgcm``: ``k8s:enc:aesgcm:v1:NAME:`` + 12-byte random nonce + AES-GCM ciphertext and tag,
  with the etcd key as additional authenticated data (a value copied to another key fails);
* ``aescbc``: ``k8s:enc:aescbc:v1:NAME:`` + 16-byte IV + AES-CBC ciphertext (PKCS#7 padding);
* ``identity``: the object's plain JSON; it refuses a value that carries the ``k8s:enc:`` prefix.

``secretbox`` and ``kms`` are recognised and refused with a clear message (no NaCl and no KMS
plugin here).  A value read with any provider but the first is *stale*: the storage layer then
rewrites it on the next update even when the object did not change, which is how an update of
every Secret (``minik encryption rotate-key``, Kubernetes' documented ``kubectl replace``)
re-encrypts them with the new key.

:class:`Transformer` is what :class:`apiserver.etcd.Etcd` calls on every value it reads and writes
(gets, ranges, transactions and watch events, so the watch cache, lists with ``continue`` and direct
watches all see plaintext and etcd never does).  :meth:`Transformer.run_reloader` re-reads the file
when it changes (Kubernetes' ``--encryption-provider-config-automatic-reload``); a file that no
longer parses is logged and the previous configuration kept.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import logging
import os
import secrets as _random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
ENCRYPTED_PREFIX = b"k8s:enc:"
RELOAD_INTERVAL = 2.0  # seconds between checks of the configuration file
KEY_SIZES = (16, 24, 32)
KNOWN_PROVIDERS = ("aesgcm", "aescbc", "secretbox", "kms", "identity")


class ConfigError(ValueError):
    """The encryption configuration is not valid (the message names the field)."""


class TransformError(Exception):
    """A stored value cannot be decrypted with any configured provider."""


# --- providers ------------------------------------------------------------------------------------
class Provider:
    kind = ""
    name = ""
    prefix = b""

    def encrypt(self, key: bytes, data: bytes) -> bytes:
        raise NotImplementedError

    def decrypt(self, key: bytes, data: bytes) -> bytes:
        """``data`` without the prefix."""
        raise NotImplementedError


class Identity(Provider):
    kind = "identity"

    def encrypt(self, key: bytes, data: bytes) -> bytes:
        return data

    def decrypt(self, key: bytes, data: bytes) -> bytes:
        if data.startswith(ENCRYPTED_PREFIX):
            raise TransformError("identity transformer tried to read encrypted data")
        return data


class AESGCMKey(Provider):
    kind = "aesgcm"

    def __init__(self, name: str, secret: bytes) -> None:
        self.name = name
        self.prefix = f"k8s:enc:aesgcm:v1:{name}:".encode()
        self._aead = AESGCM(secret)

    def encrypt(self, key: bytes, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return self.prefix + nonce + self._aead.encrypt(nonce, data, key)

    def decrypt(self, key: bytes, data: bytes) -> bytes:
        if len(data) < 12 + 16:
            raise TransformError("the stored data was shorter than the required size")
        try:
            return self._aead.decrypt(data[:12], data[12:], key)
        except Exception:
            raise TransformError(f"aesgcm key {self.name!r}: message authentication failed") from None


class AESCBCKey(Provider):
    kind = "aescbc"

    def __init__(self, name: str, secret: bytes) -> None:
        self.name = name
        self.prefix = f"k8s:enc:aescbc:v1:{name}:".encode()
        self._secret = secret

    def encrypt(self, key: bytes, data: bytes) -> bytes:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(data) + padder.finalize()
        enc = Cipher(algorithms.AES(self._secret), modes.CBC(iv)).encryptor()
        return self.prefix + iv + enc.update(padded) + enc.finalize()

    def decrypt(self, key: bytes, data: bytes) -> bytes:
        if len(data) < 32 or len(data) % 16:
            raise TransformError("the stored data is not a multiple of the block size")
        dec = Cipher(algorithms.AES(self._secret), modes.CBC(data[:16])).decryptor()
        try:
            padded = dec.update(data[16:]) + dec.finalize()
            unpadder = padding.PKCS7(128).unpadder()
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise TransformError(f"aescbc key {self.name!r}: invalid padding on input") from None


class ResourceTransformer:
    """The providers (one per key) of one resources entry, the writing one first."""

    def __init__(self, providers: Sequence[Provider]) -> None:
        self.providers = list(providers)
        self.write = self.providers[0]

    def to_storage(self, key: bytes, data: bytes) -> bytes:
        return self.write.encrypt(key, data)

    def from_storage(self, key: bytes, data: bytes) -> tuple[bytes, bool]:
        """(plaintext, stale): stale when a provider other than the writing one was needed."""
        last: Exception | None = None
        for i, p in enumerate(self.providers):
            if p.prefix and not data.startswith(p.prefix):
                continue
            try:
                return p.decrypt(key, data[len(p.prefix) :]), i != 0
            except TransformError as e:
                last = e
        if last is not None:
            raise TransformError(f"{key.decode(errors='replace')}: {last}")
        raise TransformError(f"{key.decode(errors='replace')}: no matching prefix found")


# --- the configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ResourceRule:
    group: str  # "" core, "*" any
    resource: str  # plural, "*" any


def parse_resource(text: str) -> ResourceRule:
    """``secrets`` (core), ``deployments.apps``, ``*.apps``, ``*.`` (every core resource), ``*.*``."""
    resource, _, group = text.partition(".")
    if resource == "*" and not _:
        raise ConfigError(f'resources: Invalid value: "{text}": use "*." for all core resources')
    return ResourceRule(group, resource)


def _decode_secret(where: str, secret: Any) -> bytes:
    try:
        raw = base64.b64decode(str(secret), validate=True)
    except Exception:
        raise ConfigError(
            f'{where}.secret: Invalid value: "REDACTED": secrets must be base64 encoded'
        ) from None
    if len(raw) not in KEY_SIZES:
        raise ConfigError(
            f'{where}.secret: Invalid value: "REDACTED": secret is not of the expected length, '
            f"got {len(raw)}, expected one of [16 24 32]"
        )
    return raw


def _providers(where: str, entry: Any) -> list[Provider]:
    if not isinstance(entry, dict) or len(entry) != 1:
        raise ConfigError(
            f"{where}: Invalid value: exactly one provider must be set per entry "
            "(aesgcm, aescbc, secretbox, kms or identity)"
        )
    ((kind, body),) = entry.items()
    if kind == "identity":
        return [Identity()]
    if kind in ("secretbox", "kms"):
        raise ConfigError(
            f"{where}.{kind}: Unsupported value: minik supports the aesgcm, aescbc and identity providers"
        )
    if kind not in ("aesgcm", "aescbc"):
        raise ConfigError(
            f'{where}: Unsupported value: "{kind}": supported values: "aesgcm", "aescbc", "identity"'
        )
    keys = (body or {}).get("keys") if isinstance(body, dict) else None
    if not keys or not isinstance(keys, list):
        raise ConfigError(f"{where}.{kind}.keys: Required value: keys is a required field")
    out: list[Provider] = []
    seen: set[str] = set()
    for j, k in enumerate(keys):
        w = f"{where}.{kind}.keys[{j}]"
        name = str((k or {}).get("name") or "")
        if not name:
            raise ConfigError(f"{w}.name: Required value: key's name is required")
        if ":" in name:
            raise ConfigError(f'{w}.name: Invalid value: "{name}": key\'s name must not contain ":"')
        if name in seen:
            raise ConfigError(f'{w}.name: Duplicate value: "{name}"')
        seen.add(name)
        secret = _decode_secret(w, (k or {}).get("secret"))
        out.append(AESGCMKey(name, secret) if kind == "aesgcm" else AESCBCKey(name, secret))
    return out


class EncryptionConfig:
    """A parsed configuration: which transformer (if any) each etcd key's value goes through."""

    def __init__(self, rules: list[tuple[ResourceRule, ResourceTransformer]], digest: str = "") -> None:
        self.rules = rules
        self.digest = digest
        self._by_prefix: dict[bytes, ResourceTransformer | None] = {}
        # without wildcards, the keys that are transformed at all: one C-level startswith per value
        self.prefixes: tuple[bytes, ...] | None = None
        if all("*" not in (r.group, r.resource) for r, _ in rules):
            self.prefixes = tuple(f"/registry/{r.group or 'core'}/{r.resource}/".encode() for r, _ in rules)

    @classmethod
    def parse(cls, data: Any, digest: str = "") -> EncryptionConfig:
        if not isinstance(data, dict):
            raise ConfigError("the encryption configuration must be a YAML or JSON object")
        if data.get("kind") != KIND:
            raise ConfigError(f'kind: Invalid value: "{data.get("kind")}": must be "{KIND}"')
        if data.get("apiVersion") != API_VERSION:
            raise ConfigError(
                f'apiVersion: Invalid value: "{data.get("apiVersion")}": must be "{API_VERSION}"'
            )
        entries = data.get("resources")
        if not entries or not isinstance(entries, list):
            raise ConfigError("resources: Required value: resources is a required field")
        rules: list[tuple[ResourceRule, ResourceTransformer]] = []
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            names = (entry or {}).get("resources")
            if not names or not isinstance(names, list):
                raise ConfigError(f"resources[{i}].resources: Required value: resources is a required field")
            providers_in = (entry or {}).get("providers")
            if not providers_in or not isinstance(providers_in, list):
                raise ConfigError(f"resources[{i}].providers: Required value: providers is a required field")
            providers: list[Provider] = []
            for j, p in enumerate(providers_in):
                providers += _providers(f"resources[{i}].providers[{j}]", p)
            transformer = ResourceTransformer(providers)
            for j, name in enumerate(names):
                if str(name) in seen:
                    raise ConfigError(f'resources[{i}].resources[{j}]: Duplicate value: "{name}"')
                seen.add(str(name))
                rules.append((parse_resource(str(name)), transformer))
        return cls(rules, digest)

    def transformer_for(self, key: bytes) -> ResourceTransformer | None:
        """The transformer for the value at etcd key ``/registry/GROUP/PLURAL/...`` (core = "core")."""
        if self.prefixes is not None and not key.startswith(self.prefixes):
            return None
        parts = key.split(b"/", 4)
        if len(parts) < 4 or parts[1] != b"registry":
            return None
        prefix = b"/".join(parts[:4]) + b"/"
        try:
            return self._by_prefix[prefix]
        except KeyError:
            pass
        group = parts[2].decode(errors="replace")
        group = "" if group == "core" else group
        resource = parts[3].decode(errors="replace")
        found = None
        for rule, transformer in self.rules:  # first match wins, as in Kubernetes
            if rule.resource in ("*", resource) and rule.group in ("*", group):
                found = transformer
                break
        self._by_prefix[prefix] = found
        return found


def load_config(path: str | Path) -> EncryptionConfig:
    raw = Path(path).read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not YAML or JSON: {e}") from None
    try:
        return EncryptionConfig.parse(data, hashlib.sha256(raw).hexdigest())
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


class Transformer:
    """The storage layer's value transformer, following the configuration file as it changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = load_config(self.path)
        self._stat = self._file_stat()
        self.reloads = 0
        self._task: asyncio.Task[None] | None = None

    def _file_stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def applies(self, key: bytes) -> bool:
        return self.config.transformer_for(key) is not None

    def to_storage(self, key: bytes, value: bytes) -> bytes:
        t = self.config.transformer_for(key)
        return value if t is None else t.to_storage(key, value)

    def from_storage(self, key: bytes, value: bytes) -> tuple[bytes, bool]:
        t = self.config.transformer_for(key)
        if t is None or not value:
            return value, False
        return t.from_storage(key, value)

    def reload_if_changed(self) -> bool:
        """Re-read the file when it changed; True when a new configuration took effect."""
        st = self._file_stat()
        if st is None or st == self._stat:
            return False
        self._stat = st
        try:
            config = load_config(self.path)
        except (ConfigError, OSError) as e:
            log.error("encryption configuration not reloaded, keeping the previous one: %s", e)
            return False
        if config.digest == self.config.digest:
            return False
        self.config = config
        self.reloads += 1
        log.info("encryption configuration reloaded from %s (sha256 %s)", self.path, config.digest[:12])
        return True

    def start(self, interval: float = RELOAD_INTERVAL) -> None:
        """Follow the file from a task of the running event loop."""
        self._task = asyncio.create_task(self.run_reloader(interval), name="encryption-config-reload")

    async def run_reloader(self, interval: float = RELOAD_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.reload_if_changed()
            except Exception:
                log.exception("encryption configuration reload failed")


# --- writing configurations (minik up, minik encryption rotate-key) ----------------------------------
def new_secret() -> str:
    return base64.b64encode(_random.token_bytes(32)).decode()


def default_config(key_name: str = "key1", secret: str | None = None) -> dict[str, Any]:
    """Secrets encrypted with one fresh AES-GCM key; plaintext still reads (identity second)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "resources": [
            {
                "resources": ["secrets"],
                "providers": [
                    {"aesgcm": {"keys": [{"name": key_name, "secret": secret or new_secret()}]}},
                    {"identity": {}},
                ],
            }
        ],
    }


def write_config(path: str | Path, data: dict[str, Any], in_place: bool = False) -> Path:
    """Write atomically (a reader never sees half a file), mode 0600.

    ``in_place`` rewrites the existing file in one write instead, keeping its inode: a container
    that bind-mounts the single file (the lab's API server) sees the change only then.  A reader
    that catches the file empty or cut short keeps its previous configuration and reads the file
    again once it changed (:meth:`Transformer.reload_if_changed`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if in_place and path.exists():
        text = yaml.safe_dump(data, sort_keys=False).encode()
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, text)
            os.fsync(fd)
        finally:
            os.close(fd)
        return path
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    os.replace(tmp, path)
    return path


def ensure_config(path: str | Path) -> Path:
    """The configuration at ``path``, made (one new AES-GCM key for Secrets) when missing."""
    path = Path(path)
    if not path.exists():
        write_config(path, default_config())
    return path


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--encryption-provider-config",
        default=None,
        help="EncryptionConfiguration file: how resources (e.g. secrets) are encrypted in etcd; "
        "re-read automatically when it changes",
    )


def from_args(args: argparse.Namespace) -> Transformer | None:
    """The transformer for --encryption-provider-config (None when unset); exits on a bad file."""
    path = getattr(args, "encryption_provider_config", None)
    if not path:
        return None
    try:
        return Transformer(path)
    except (ConfigError, OSError) as e:
        raise SystemExit(f"minik-apiserver: --encryption-provider-config: {e}") from None


__all__ = [
    "ConfigError",
    "EncryptionConfig",
    "Transformer",
    "TransformError",
    "add_flags",
    "default_config",
    "ensure_config",
    "from_args",
    "load_config",
    "write_config",
]
