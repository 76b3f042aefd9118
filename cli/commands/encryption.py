"""``minik encryption status|rotate-key``: Secrets' encryption at rest, as k3s' ``secrets-encrypt``.

``status`` shows the cluster's EncryptionConfiguration (``STATE/encryption-config.yaml``, which
``minik up`` makes and the API server re-reads when it changes) and, read straight from etcd, which
key each stored Secret is encrypted with.

``rotate-key`` follows Kubernetes' documented rotation, in one command:

1. a new AES-GCM key is written first in the configuration; the old keys stay after it, so every
   Secret still reads;
2. it waits until the API server has reloaded the file: it writes a probe Secret
   (``kube-system/minik-encryption-probe``) until etcd holds it under the new key;
3. every Secret is updated through the API unchanged (a no-op update of a value stored with an old
   key is written again, with the new key: Kubernetes' ``kubectl get secrets -A -o json | kubectl
   replace -f -``);
4. it reads etcd and checks that every Secret is now stored under the new key;
5. only then are the old keys removed from the configuration, and it checks that every Secret
   still reads through the API.

A rotation that stops half way leaves a configuration that reads everything (the old keys are
removed last); running it again completes it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import yaml

from apimachinery import errors

from ..kube import CLIError, Kube, kube, out, resolve_kind

if TYPE_CHECKING:
    import httpx

app = typer.Typer(
    help="Secrets' encryption at rest: show the keys in use, rotate the key.", no_args_is_help=True
)

SECRETS_PREFIX = "/registry/core/secrets/"
PROBE_NAMESPACE, PROBE_NAME = "kube-system", "minik-encryption-probe"
ENCRYPTED = re.compile(rb"^k8s:enc:([a-z0-9]+):v1:([^:]+):")


# ---- pure helpers -----------------------------------------------------------------------------------
def stored_key(value: bytes) -> str:
    """Which key a stored value was written with: ``aesgcm:key2``, or ``identity`` for plaintext."""
    m = ENCRYPTED.match(value)
    if m is None:
        return "identity"
    return f"{m.group(1).decode()}:{m.group(2).decode()}"


def secrets_entry(config: dict[str, Any]) -> dict[str, Any]:
    """The ``resources`` entry that covers Secrets (first match, as the API server takes it)."""
    for entry in config.get("resources") or []:
        names = [str(n) for n in entry.get("resources") or []]
        if "secrets" in names or "*." in names or "*.*" in names:
            return dict(entry)
    raise CLIError("the encryption configuration has no entry for secrets")


def write_key(config: dict[str, Any]) -> tuple[str, str] | None:
    """(provider, key name) that writes Secrets, or None when the first provider is identity."""
    first = (secrets_entry(config).get("providers") or [{}])[0]
    for kind in ("aesgcm", "aescbc"):
        if kind in first:
            return kind, str(first[kind]["keys"][0]["name"])
    return None


def next_key_name(names: list[str]) -> str:
    """``key1`` -> ``key2``: one past the highest ``keyN`` in use."""
    numbers = [int(m.group(1)) for n in names if (m := re.fullmatch(r"key(\d+)", n))]
    return f"key{max(numbers, default=0) + 1}"


def with_new_key(config: dict[str, Any], name: str, secret: str) -> tuple[dict[str, Any], list[str]]:
    """The configuration with ``name`` first among the writing provider's keys; and the old names."""
    config = json.loads(json.dumps(config))
    entry = secrets_entry(config)
    first = entry["providers"][0]
    kind = next((k for k in ("aesgcm", "aescbc") if k in first), None)
    if kind is None:
        raise CLIError(
            "Secrets are not encrypted: the first provider for secrets is identity; "
            "put an aesgcm provider first in the encryption configuration"
        )
    keys = first[kind]["keys"]
    old = [str(k["name"]) for k in keys]
    first[kind]["keys"] = [{"name": name, "secret": secret}, *keys]
    _replace_entry(config, entry)
    return config, old


def without_keys(config: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The configuration without the writing provider's keys ``names``."""
    config = json.loads(json.dumps(config))
    entry = secrets_entry(config)
    first = entry["providers"][0]
    for kind in ("aesgcm", "aescbc"):
        if kind in first:
            first[kind]["keys"] = [k for k in first[kind]["keys"] if str(k["name"]) not in names]
    _replace_entry(config, entry)
    return config


def _replace_entry(config: dict[str, Any], entry: dict[str, Any]) -> None:
    for i, e in enumerate(config["resources"]):
        if e.get("resources") == entry.get("resources"):
            config["resources"][i] = entry
            return


# ---- the cluster's files and etcd ---------------------------------------------------------------------
def state_dir(given: Path | None) -> Path:
    return (given or Path(os.environ.get("MINIK_STATE_DIR") or Path.home() / ".minik")).absolute()


def config_path(state: Path, given: Path | None) -> Path:
    path = given or state / "encryption-config.yaml"
    if not path.exists():
        raise CLIError(
            f"no encryption configuration at {path} (is there a cluster in {state}? `minik up` makes it)"
        )
    return path


def etcd_reader(
    state: Path, given: str | None, ca: str | None, cert: str | None, key: str | None
) -> EtcdReader:
    """etcd as given, else the cluster's of ``state``: over TLS with ``STATE/pki``'s etcd CA and the API
    server's etcd client certificate when the cluster has them, else plain HTTP."""
    if given:
        return EtcdReader(given.split(",")[0].rstrip("/"), ca, cert, key)
    try:
        cfg = json.loads((state / "config.json").read_text())
    except (OSError, ValueError):
        raise CLIError(f"no cluster in {state}: give --etcd-servers") from None
    port = cfg.get("etcd_port", 2379)
    pki = state / "pki"
    client = pki / "apiserver-etcd-client.crt"
    if client.exists():
        return EtcdReader(
            f"https://127.0.0.1:{port}",
            ca or str(pki / "etcd" / "ca.crt"),
            cert or str(client),
            key or str(pki / "apiserver-etcd-client.key"),
        )
    return EtcdReader(f"http://127.0.0.1:{port}", ca, cert, key)


def cluster_kube(ctx: typer.Context, state: Path) -> Kube:
    """The API as the cluster's admin (``STATE/kubeconfigs/admin.conf``) unless --kubeconfig,
    --context or --server say otherwise."""
    from ..kube import GlobalOptions

    opts = ctx.find_object(GlobalOptions) or ctx.ensure_object(GlobalOptions)
    admin = state / "kubeconfigs" / "admin.conf"
    if opts.kubeconfig is None and opts.context is None and opts.server is None and admin.exists():
        opts.kubeconfig = str(admin)
    return kube(ctx)


def read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise CLIError(f"{path}: not an EncryptionConfiguration")
    return data


def save_yaml(path: Path, data: dict[str, Any], in_place: bool = False) -> None:
    from apiserver.encryption import EncryptionConfig, write_config

    EncryptionConfig.parse(data)  # never write a file the API server would refuse
    write_config(path, data, in_place=in_place)


class EtcdReader:
    """Raw (still encrypted) values from etcd's JSON gateway, never through the API server."""

    def __init__(
        self, url: str, ca: str | None = None, cert: str | None = None, key: str | None = None
    ) -> None:
        self.url = url
        self.tls = (ca, cert, key)
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        import ssl

        import httpx

        if self._http is None:
            ca, cert, key = self.tls
            verify: Any = True
            if ca or cert:
                verify = ssl.create_default_context(cafile=ca)
                if cert and key:
                    verify.load_cert_chain(cert, key)
            self._http = httpx.Client(base_url=self.url, verify=verify, timeout=10.0)
        return self._http

    def values(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        import httpx

        start = prefix.encode()
        end = prefix[:-1].encode() + bytes([prefix.encode()[-1] + 1])
        while True:
            body = {
                "key": base64.b64encode(start).decode(),
                "range_end": base64.b64encode(end).decode(),
                "limit": 500,
            }
            try:
                resp = self.http.post("/v3/kv/range", json=body)
                resp.raise_for_status()
            except httpx.HTTPError as e:
                raise CLIError(f"cannot read etcd at {self.url}: {e}") from None
            data = resp.json()
            kvs = data.get("kvs") or []
            for kv in kvs:
                yield base64.b64decode(kv["key"]).decode(), base64.b64decode(kv.get("value") or "")
            if not data.get("more") or not kvs:
                return
            start = base64.b64decode(kvs[-1]["key"]) + b"\0"

    def value(self, key: str) -> bytes | None:
        import httpx

        try:
            resp = self.http.post("/v3/kv/range", json={"key": base64.b64encode(key.encode()).decode()})
            resp.raise_for_status()
        except httpx.HTTPError as e:
            raise CLIError(f"cannot read etcd at {self.url}: {e}") from None
        kvs = resp.json().get("kvs") or []
        return base64.b64decode(kvs[0].get("value") or "") if kvs else None

    def census(self) -> dict[str, list[str]]:
        """Stored key (``aesgcm:key2``, ``identity``) -> the Secrets (NAMESPACE/NAME) under it."""
        found: dict[str, list[str]] = {}
        for k, v in self.values(SECRETS_PREFIX):
            found.setdefault(stored_key(v), []).append(k[len(SECRETS_PREFIX) :])
        return found


# ---- the commands -------------------------------------------------------------------------------------
StateOpt = typer.Option(
    None, "--state-dir", help="the cluster's state directory (default $MINIK_STATE_DIR or ~/.minik)"
)
ConfigOpt = typer.Option(
    None, "--config", help="the EncryptionConfiguration file (default STATE/encryption-config.yaml)"
)
EtcdOpt = typer.Option(None, "--etcd-servers", help="etcd's client URL (default: the cluster's, from STATE)")
EtcdCaOpt = typer.Option(None, "--etcd-cafile", help="CA that verifies etcd's certificate")
EtcdCertOpt = typer.Option(None, "--etcd-certfile", help="client certificate for etcd")
EtcdKeyOpt = typer.Option(None, "--etcd-keyfile", help="the etcd client certificate's key")


@app.command("status")
def status(
    state_dir_: Path = StateOpt,
    config: Path = ConfigOpt,
    etcd_servers: str = EtcdOpt,
    etcd_cafile: str = EtcdCaOpt,
    etcd_certfile: str = EtcdCertOpt,
    etcd_keyfile: str = EtcdKeyOpt,
) -> None:
    """Show the encryption configuration and which key each Secret in etcd is stored with."""
    state = state_dir(state_dir_)
    path = config_path(state, config)
    data = read_yaml(path)
    writer = write_key(data)
    out(f"Encryption Status: {'Enabled' if writer else 'Disabled'}")
    out(f"Configuration: {path} (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:16]})")
    entry = secrets_entry(data)
    out(f"Resources: {', '.join(str(r) for r in entry.get('resources') or [])}")
    for i, provider in enumerate(entry.get("providers") or []):
        (kind, body), *_ = provider.items()
        names = [str(k["name"]) for k in (body or {}).get("keys") or []]
        role = "writes and reads" if i == 0 else "reads"
        out(f"  {kind}: {', '.join(names) if names else '-'} ({role})")
    if writer:
        out(f"Active key: {writer[0]}:{writer[1]}")
    reader = etcd_reader(state, etcd_servers, etcd_cafile, etcd_certfile, etcd_keyfile)
    census = reader.census()
    total = sum(len(v) for v in census.values())
    out(f"Secrets in etcd: {total}")
    for key in sorted(census):
        out(f"  {key}: {len(census[key])}")


def _probe(k: Kube, reader: EtcdReader, want: str, timeout: float) -> None:
    """Write the probe Secret until etcd holds it under key ``want`` (the API server reloaded)."""
    info = resolve_kind("secrets")
    key = f"{SECRETS_PREFIX}{PROBE_NAMESPACE}/{PROBE_NAME}"
    deadline = time.monotonic() + timeout
    n = 0
    while True:
        n += 1
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": PROBE_NAME, "namespace": PROBE_NAMESPACE},
            "data": {"probe": base64.b64encode(f"{time.time()}:{n}".encode()).decode()},
        }
        try:
            current = k.client.get(info, PROBE_NAME, PROBE_NAMESPACE)
            current["data"] = body["data"]
            k.client.update(info, current)
        except errors.NotFound:
            k.client.create(info, body, PROBE_NAMESPACE)
        except errors.Conflict:
            continue
        stored = reader.value(key)
        if stored is not None and stored_key(stored) == want:
            return
        if time.monotonic() > deadline:
            got = stored_key(stored) if stored is not None else "nothing"
            raise CLIError(
                f"the API server did not take the new key within {timeout:.0f}s (the probe Secret is "
                f"stored with {got}); does it run with --encryption-provider-config naming this file?"
            )
        time.sleep(0.5)


def _rewrite(k: Kube, names: list[str]) -> int:
    """Update each Secret (NAMESPACE/NAME) unchanged: the server writes it again with the new key."""
    info = resolve_kind("secrets")
    done = 0
    for ref in names:
        ns, _, name = ref.partition("/")
        for _attempt in range(5):
            try:
                k.client.update(info, k.client.get(info, name, ns))
                done += 1
                break
            except errors.NotFound:
                break  # deleted meanwhile: nothing to re-encrypt
            except errors.Conflict:
                continue  # written meanwhile; read it again
    return done


def _all_secrets(k: Kube) -> list[str]:
    info = resolve_kind("secrets")
    listed = k.client.list_all(info, None)
    return [f"{s['metadata']['namespace']}/{s['metadata']['name']}" for s in listed.get("items") or []]


@app.command("rotate-key")
def rotate_key(
    ctx: typer.Context,
    state_dir_: Path = StateOpt,
    config: Path = ConfigOpt,
    etcd_servers: str = EtcdOpt,
    etcd_cafile: str = EtcdCaOpt,
    etcd_certfile: str = EtcdCertOpt,
    etcd_keyfile: str = EtcdKeyOpt,
    timeout: float = typer.Option(60.0, "--timeout", help="seconds to wait for the API server to reload"),
    in_place: bool = typer.Option(
        False,
        "--in-place",
        help="rewrite the file in place (same inode), for API servers in containers that mount the single file",
    ),
) -> None:
    """Encrypt every Secret with a new key, then drop the old key (nothing is lost on the way)."""
    from apiserver.encryption import new_secret

    state = state_dir(state_dir_)
    path = config_path(state, config)
    k = cluster_kube(ctx, state)
    reader = etcd_reader(state, etcd_servers, etcd_cafile, etcd_certfile, etcd_keyfile)
    data = read_yaml(path)
    writer = write_key(data)
    if writer is None:
        with_new_key(data, "", "")  # raises the explanation
        return
    kind = writer[0]
    entry = secrets_entry(data)
    names = [str(key["name"]) for key in entry["providers"][0][kind]["keys"]]
    new_name = next_key_name(names)
    rotated, old = with_new_key(data, new_name, new_secret())
    want = f"{kind}:{new_name}"
    save_yaml(path, rotated, in_place)
    out(f"1/5 wrote key {new_name} first in {path} (kept to read: {', '.join(old)})")
    _probe(k, reader, want, timeout)
    out("2/5 the API server encrypts with the new key")
    secrets = _all_secrets(k)
    rewritten = _rewrite(k, secrets)
    out(f"3/5 rewrote {rewritten} of {len(secrets)} Secrets through the API (the probe included)")
    for _round in range(3):
        census = reader.census()
        behind = sorted(ref for key, refs in census.items() if key != want for ref in refs)
        if not behind:
            break
        _rewrite(k, behind)
    else:
        raise CLIError(
            f"{len(behind)} Secrets are still stored with another key ({', '.join(behind[:5])}); "
            f"the old keys are kept in {path}: run the rotation again"
        )
    total = sum(len(v) for v in census.values())
    out(f"4/5 all {total} Secrets in etcd are stored with {want}")
    save_yaml(path, without_keys(rotated, old), in_place)
    from apiserver.encryption import RELOAD_INTERVAL

    time.sleep(RELOAD_INTERVAL * 2 + 0.5)  # the API server's next look at the file
    try:
        k.client.delete(resolve_kind("secrets"), PROBE_NAME, PROBE_NAMESPACE)
    except errors.NotFound:
        pass
    after = _all_secrets(k)  # every Secret still decrypts (a list fails on one that does not)
    out(f"5/5 removed the old keys ({', '.join(old)}); {len(after)} Secrets read back through the API")
    out(f"key rotation done: Secrets are encrypted with {want}")
