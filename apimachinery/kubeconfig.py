"""Where the API server is and how to authenticate to it: kubeconfig files.

A kubeconfig (``$KUBECONFIG``, else ``~/.kube/config``) names *clusters* (a server URL and its CA),
*users* (a bearer token or a client certificate) and *contexts* that pair one cluster with one
user and a default namespace.  ``current-context`` picks the context in use.  This module reads
such a file into a flat :class:`ClientConfig`, the only thing :mod:`apimachinery.client` needs.

As in client-go, ``$KUBECONFIG`` may list several files separated by ``:``; for every named
cluster, user or context the first file that defines it wins, and relative file paths inside a
file are resolved against that file's directory.

Several API servers (an HA control plane) can be given to one client in two ways; the client uses
the first and moves to the next when a server cannot be reached (see :mod:`apimachinery.client`):

* a comma-separated ``server`` (``--api-server https://a:6443,https://b:6443``), and
* in a kubeconfig, a cluster extension named :data:`SERVERS_EXTENSION` whose ``servers`` list the
  other API servers; ``server`` stays one URL, so kubectl reads the same file and uses that one::

      clusters:
      - name: minik
        cluster:
          server: https://10.0.0.1:6443
          certificate-authority: ca.crt
          extensions:
          - name: servers.minik.io
            extension: {servers: [https://10.0.0.2:6443, https://10.0.0.3:6443]}
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import ssl  # ssl and yaml are imported where used: the CLI's start-up needs neither

log = logging.getLogger(__name__)

DEFAULT_SERVER = "http://127.0.0.1:8080"
"""The API server's plain-HTTP port, used when there is no kubeconfig at all."""

SERVERS_EXTENSION = "servers.minik.io"
"""The kubeconfig cluster extension listing more API servers of the same cluster."""


class ConfigError(ValueError):
    """The kubeconfig is missing, unreadable or does not name what was asked for."""


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs to reach one API server as one user."""

    server: str = DEFAULT_SERVER
    namespace: str = "default"
    token: str | None = None
    ca_file: str | None = None
    ca_data: str | None = None  # PEM text
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: str | None = None  # PEM text
    key_data: str | None = None  # PEM text
    insecure_skip_tls_verify: bool = False
    username: str | None = None
    password: str | None = None
    fallback_servers: tuple[str, ...] = ()
    """More API servers of the same cluster, tried in order when ``server`` cannot be reached."""

    def __post_init__(self) -> None:
        # ``server`` may list several URLs separated by commas: the first is ``server``, the others
        # go first among the fallbacks.  Duplicates and empty entries are dropped.
        urls = [u.strip().rstrip("/") for u in self.server.split(",")]
        urls += [u.strip().rstrip("/") for u in self.fallback_servers]
        unique = [u for i, u in enumerate(urls) if u and u not in urls[:i]]
        if not unique:
            return
        object.__setattr__(self, "server", unique[0])
        object.__setattr__(self, "fallback_servers", tuple(unique[1:]))

    @property
    def servers(self) -> tuple[str, ...]:
        """Every API server URL, the preferred one first."""
        return (self.server, *self.fallback_servers)

    def auth_headers(self) -> dict[str, str]:
        """The ``Authorization`` header for a bearer token or basic credentials, if any."""
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username is not None and self.password is not None:
            raw = f"{self.username}:{self.password}".encode()
            return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}
        return {}

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What to give httpx as ``verify``: ``True`` (system CAs) or a context with our CA and cert.

        ``False`` for a plain-HTTP server: no TLS is spoken, and ``True`` would make httpx load the
        system's CA bundle on every client's creation (about 50 ms of a CLI command's start).
        """
        if not any(s.startswith("https://") for s in self.servers):
            return False
        wants_context = (
            self.ca_file or self.ca_data or self.cert_file or self.cert_data or self.insecure_skip_tls_verify
        )
        if not wants_context:
            return True
        import ssl

        ctx = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if self.insecure_skip_tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        elif self.cert_data:
            _load_cert_chain_from_pem(ctx, self.cert_data, self.key_data)
        return ctx


def _load_cert_chain_from_pem(ctx: ssl.SSLContext, cert_pem: str, key_pem: str | None) -> None:
    """``ssl`` loads client certificates only from files: write them briefly to a private dir."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="minik-cert-") as tmp:
        cert_path = Path(tmp, "client.crt")
        cert_path.write_text(cert_pem)
        key_path = None
        if key_pem:
            key_path = Path(tmp, "client.key")
            key_path.touch(mode=0o600)
            key_path.write_text(key_pem)
        ctx.load_cert_chain(str(cert_path), str(key_path) if key_path else None)


def default_kubeconfig_paths() -> list[Path]:
    """``$KUBECONFIG`` (a path list) if set, else ``~/.kube/config``."""
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def load_config(
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    **overrides: str | bool | None,
) -> ClientConfig:
    """Read a kubeconfig and apply command-line style overrides (``--api-server``, ``-n``, ``--token``).

    ``overrides`` are :class:`ClientConfig` fields (``server``, ``namespace``, ``token``,
    ``insecure_skip_tls_verify`` …); those given as None are left as the file says.  With an
    explicit ``kubeconfig`` path the file must exist.  Without one, ``$KUBECONFIG`` or
    ``~/.kube/config`` is used if present; if no file exists the result points at ``server`` (or
    :data:`DEFAULT_SERVER`).
    """
    if kubeconfig is not None:
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise ConfigError(f"kubeconfig {path} does not exist")
        paths = [path]
    else:
        paths = [p for p in default_kubeconfig_paths() if p.is_file()]

    if paths:
        merged = merge_kubeconfigs(_resolve_relative_paths(read_kubeconfig(p), p.parent) for p in paths)
        config = config_from_dict(merged, context=context)
    elif context is not None:
        raise ConfigError(f"context {context!r} requested but no kubeconfig file was found")
    else:
        log.debug("no kubeconfig found; using %s", overrides.get("server") or DEFAULT_SERVER)
        config = ClientConfig()
    values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if "server" in values:  # a server given on the command line replaces the file's list
        values.setdefault("fallback_servers", ())
    return ClientConfig(**{**config.__dict__, **values}) if values else config


def read_kubeconfig(path: Path) -> dict[str, Any]:
    """One kubeconfig file, parsed; a ConfigError when it cannot be read or is not a mapping."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read kubeconfig {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"kubeconfig {path} is not a mapping")
    return data


def merge_kubeconfigs(configs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Merge parsed kubeconfigs as kubectl does: first definition of each name wins, first
    current-context wins.  The result has the three lists and, when one is set, current-context."""
    merged: dict[str, Any] = {"clusters": [], "users": [], "contexts": []}
    seen: dict[str, set[Any]] = {"clusters": set(), "users": set(), "contexts": set()}
    for data in configs:
        if data.get("current-context") and not merged.get("current-context"):
            merged["current-context"] = data["current-context"]
        for section, names in seen.items():
            for entry in data.get(section) or []:
                if entry.get("name") not in names:
                    names.add(entry.get("name"))
                    merged[section].append(entry)
    return merged


_FILE_FIELDS = {
    "clusters": ("cluster", ("certificate-authority",)),
    "users": ("user", ("client-certificate", "client-key", "tokenFile")),
}


def _resolve_relative_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    for section, (inner, fields) in _FILE_FIELDS.items():
        for entry in data.get(section) or []:
            body = entry.get(inner) or {}
            for f in fields:
                value = body.get(f)
                if value and not os.path.isabs(os.path.expanduser(value)):
                    body[f] = str(base / value)
    return data


def _named(data: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    inner = section[:-1]  # clusters -> cluster
    for entry in data.get(section) or []:
        if entry.get("name") == name:
            return dict(entry.get(inner) or {})
    raise ConfigError(f"kubeconfig has no {inner} named {name!r}")


def _b64(value: str | None) -> str | None:
    return base64.b64decode(value).decode() if value else None


def config_from_dict(data: dict[str, Any], context: str | None = None) -> ClientConfig:
    """Turn a parsed kubeconfig into a :class:`ClientConfig` for ``context`` (default: current-context)."""
    ctx_name = context or data.get("current-context")
    if not ctx_name:
        raise ConfigError("kubeconfig has no current-context and no context was given")
    ctx = _named(data, "contexts", ctx_name)
    cluster = _named(data, "clusters", ctx["cluster"]) if ctx.get("cluster") else {}
    user = _named(data, "users", ctx["user"]) if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise ConfigError(f"cluster of context {ctx_name!r} has no server")

    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).expanduser().read_text().strip()

    return ClientConfig(
        server=str(server).rstrip("/"),
        namespace=ctx.get("namespace") or "default",
        token=token,
        ca_file=cluster.get("certificate-authority"),
        ca_data=_b64(cluster.get("certificate-authority-data")),
        cert_file=user.get("client-certificate"),
        key_file=user.get("client-key"),
        cert_data=_b64(user.get("client-certificate-data")),
        key_data=_b64(user.get("client-key-data")),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        username=user.get("username"),
        password=user.get("password"),
        fallback_servers=_extra_servers(cluster, str(ctx.get("cluster"))),
    )


def _extra_servers(cluster: dict[str, Any], name: str) -> tuple[str, ...]:
    """The ``servers`` of the cluster's :data:`SERVERS_EXTENSION` extension, if it has one.

    Each entry may itself list several URLs separated by commas (as ``server`` may); every URL needs
    an ``http`` or ``https`` scheme and a host.  Anything else is a :class:`ConfigError` naming the
    field."""
    exts = cluster.get("extensions")
    if exts is None:
        return ()
    where = f"cluster {name!r}: extensions"
    if not isinstance(exts, list):
        raise ConfigError(f"{where} must be a list of named extensions, not {type(exts).__name__}")
    for i, ext in enumerate(exts):
        if not isinstance(ext, dict):
            raise ConfigError(f"{where}[{i}] must be a mapping with name and extension")
        if ext.get("name") != SERVERS_EXTENSION:
            continue
        field = f"{where}[{i}] ({SERVERS_EXTENSION}): extension.servers"
        body = ext.get("extension")
        servers = body.get("servers") if isinstance(body, dict) else None
        if not isinstance(servers, list):
            raise ConfigError(f"{field} needs a list of server URLs")
        urls: list[str] = []
        for j, entry in enumerate(servers):
            if not isinstance(entry, str):
                raise ConfigError(f"{field}[{j}] must be a URL string, not {type(entry).__name__}")
            for url in (u.strip() for u in entry.split(",")):
                if not url:
                    continue
                try:
                    parts = urlsplit(url)
                except ValueError:  # e.g. an unclosed "[" of an IPv6 address
                    parts = urlsplit("")
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    raise ConfigError(f"{field}[{j}]: {url!r} is not an http:// or https:// URL")
                urls.append(url)
        if not urls:
            raise ConfigError(f"{field} lists no server URL")
        return tuple(urls)
    return ()
