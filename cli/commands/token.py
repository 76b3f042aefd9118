"""``minik token create|list|delete``: bootstrap tokens, as kubeadm's ``token`` commands.

A token ``ID.SECRET`` is Secret ``kube-system/bootstrap-token-ID`` of type
``bootstrap.kubernetes.io/token`` (:mod:`apimachinery.bootstraptoken`): with usage
``authentication`` it authenticates as ``system:bootstrap:ID`` in ``system:bootstrappers`` and its
``--groups``; with ``signing`` the controller manager's bootstrapsigner signs ConfigMap
``kube-public/cluster-info`` with it, which is how a joining host checks the cluster it found.
The controller manager's tokencleaner deletes a token when its ``--ttl`` has passed.

``create`` also writes ``cluster-info`` (the API server's URL and CA, as kubeadm's ``init`` does)
when it is missing, and with ``--print-join-command`` prints the command a new node runs, its CA
pinned as ``sha256:`` of the CA's SubjectPublicKeyInfo.

``create --control-plane`` (kubeadm's ``init phase upload-certs --upload-certs`` and ``token create
--certificate-key``) also uploads this control plane's shared keys, encrypted, into Secret
``kube-system/minik-certs`` (:mod:`cli.uploadcerts`) and prints the ``minik join --control-plane
--certificate-key KEY`` command for ``https://`` the cluster's ``controlPlaneEndpoint``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import typer

from apimachinery import errors
from apimachinery.bootstraptoken import (
    CLUSTER_INFO_NAME,
    CLUSTER_INFO_NAMESPACE,
    DEFAULT_GROUP,
    DESCRIPTION_KEY,
    EXTRA_GROUPS_KEY,
    KUBECONFIG_KEY,
    SECRET_TYPE,
    TOKEN_ID_RE,
    TOKEN_NAMESPACE,
    USAGE_PREFIX,
    USAGES,
    TokenError,
    ca_pin,
    cluster_info_kubeconfig,
    expiration_of,
    generate_token,
    parse_duration,
    parse_token,
    rfc3339,
    secret_data,
    secret_name,
    token_of_secret,
    token_secret,
)

from ..kube import CLIError, Kube, kube, out, resolve_kind, tabulate

app = typer.Typer(help="Bootstrap tokens: create, list and delete them.", no_args_is_help=True)


def _split(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def ca_pem_of(k: Kube) -> str:
    """The CA the CLI trusts the API server with (its kubeconfig's)."""
    if k.config.ca_data:
        return str(k.config.ca_data)
    if k.config.ca_file:
        with open(k.config.ca_file, encoding="utf-8") as f:
            return f.read()
    raise CLIError("the kubeconfig has no certificate authority: a join command needs the cluster CA")


def ensure_cluster_info(k: Kube, server: str, ca_pem: str) -> None:
    """ConfigMap ``kube-public/cluster-info`` with the server and CA, created when missing."""
    info = resolve_kind("configmaps")
    try:
        k.client.get(info, CLUSTER_INFO_NAME, CLUSTER_INFO_NAMESPACE)
        return
    except errors.NotFound:
        pass
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CLUSTER_INFO_NAME, "namespace": CLUSTER_INFO_NAMESPACE},
        "data": {KUBECONFIG_KEY: cluster_info_kubeconfig(server, ca_pem)},
    }
    try:
        k.client.create(info, cm, CLUSTER_INFO_NAMESPACE)
    except errors.AlreadyExists:
        pass


def join_command(server: str, token: str, ca_pem: str, certificate_key: str = "") -> str:
    command = f"minik join {server} --token {token} --discovery-token-ca-cert-hash {ca_pin(ca_pem)}"
    if certificate_key:
        command += f" --control-plane --certificate-key {certificate_key}"
    return command


def upload_certs(k: Kube, state: Path, ttl: dt.timedelta | None, ca_pem: str) -> tuple[str, str]:
    """Encrypt this control plane's shared keys into ``kube-system/minik-certs`` (replacing an
    older upload) under a fresh key, owned by a bootstrap token of its own that expires with the
    join token, after 2 hours at most; returns (the key in hex, the controlPlaneEndpoint's URL).
    Refused when the state directory's CA is not ``ca_pem``, the CA the API server is trusted with
    (another cluster's state directory)."""
    from ..uploadcerts import (
        CERTS_SECRET,
        CERTS_TTL_SECONDS,
        CONFIG_MAP,
        NAMESPACE,
        CertsError,
        ConfigError,
        certs_secret,
        endpoint_url,
        new_certificate_key,
        parse_config,
        read_shared_files,
    )

    configmaps, secrets = resolve_kind("configmaps"), resolve_kind("secrets")
    try:
        config = parse_config(k.client.get(configmaps, CONFIG_MAP, NAMESPACE))
    except errors.NotFound as exc:
        raise CLIError(
            f"{NAMESPACE}/{CONFIG_MAP} not found: the cluster was not started by a `minik up` that publishes it"
        ) from exc
    except ConfigError as exc:
        raise CLIError(str(exc)) from exc
    if not config.control_plane_endpoint:
        raise CLIError(
            "the cluster has no controlPlaneEndpoint: other control planes cannot join it (start it with"
            " `minik up --control-plane-endpoint HOST:PORT`, as kubeadm asks for --control-plane-endpoint)"
        )
    try:
        files = read_shared_files(state)
    except CertsError as exc:
        raise CLIError(f"{exc}; --state-dir names the control plane's state directory") from exc
    if files["ca.crt"].strip() != ca_pem.encode().strip():
        raise CLIError(
            f"{state / 'pki' / 'ca.crt'} is not the CA of the API server's kubeconfig: --state-dir names"
            " another cluster's state directory (nothing was uploaded)"
        )
    limit = dt.timedelta(seconds=CERTS_TTL_SECONDS)
    owner_secret = token_secret(
        generate_token(),
        ttl=min(ttl, limit) if ttl else limit,
        description=f"Proxy for managing TTL for the {CERTS_SECRET} secret",
        usages=[],
        groups=[],
    )
    owner = k.client.create(secrets, owner_secret, TOKEN_NAMESPACE)
    key = new_certificate_key()
    secret = certs_secret(files, key, owner)
    try:
        k.client.delete(secrets, CERTS_SECRET, NAMESPACE)
    except errors.NotFound:
        pass
    k.client.create(secrets, secret, NAMESPACE)
    return key, endpoint_url(config.control_plane_endpoint)


@app.command("create")
def create(
    ctx: typer.Context,
    token: str = typer.Argument("", help="the token ID.SECRET (default: a random one)"),
    ttl: str = typer.Option("24h", "--ttl", help="time until the token is deleted (0: never)"),
    description: str = typer.Option("", "--description", help="a human-friendly description"),
    usages: list[str] = typer.Option(
        list(USAGES), "--usages", help="what the token may be used for: signing, authentication"
    ),
    groups: list[str] = typer.Option(
        [DEFAULT_GROUP], "--groups", help="extra groups the token authenticates with (system:bootstrappers:*)"
    ),
    print_join_command: bool = typer.Option(
        False, "--print-join-command", help="print the `minik join` command instead of the token"
    ),
    control_plane: bool = typer.Option(
        False,
        "--control-plane",
        help="upload this control plane's CA, service-account keys and encryption config (encrypted,"
        " Secret kube-system/minik-certs, 2 h at most) and print the join command of a control plane",
    ),
    state_dir: Path = typer.Option(
        None, help="with --control-plane: this control plane's state directory (default ~/.minik)"
    ),
) -> None:
    """Create a bootstrap token on the server (and cluster-info when missing)."""
    k = kube(ctx)
    try:
        value = token or generate_token()
        parse_token(value)
        duration = parse_duration(ttl)
        secret = token_secret(
            value,
            ttl=duration or None,
            description=description,
            usages=_split(usages),
            groups=_split(groups),
        )
    except TokenError as exc:
        raise CLIError(str(exc)) from exc
    server = k.config.server
    ca_pem = ca_pem_of(k) if server.startswith("https://") else ""
    if ca_pem:
        ensure_cluster_info(k, server, ca_pem)
    certificate_key = ""
    if control_plane:  # upload first: a failed upload leaves no live token that was never printed
        from ..cluster import default_state_dir

        if not ca_pem:
            raise CLIError("the API server is not served over HTTPS: there is no CA to pin")
        certificate_key, server = upload_certs(
            k, (state_dir or default_state_dir()).absolute(), duration or None, ca_pem
        )
    try:
        k.client.create(resolve_kind("secrets"), secret, TOKEN_NAMESPACE)
    except errors.AlreadyExists as exc:
        raise CLIError(f"a token with ID {value.split('.')[0]} exists already") from exc
    if print_join_command or control_plane:
        if not ca_pem:
            raise CLIError("the API server is not served over HTTPS: there is no CA to pin")
        out(join_command(server, value, ca_pem, certificate_key))
    else:
        out(value)


def _row(secret: dict[str, Any], now: dt.datetime) -> list[str] | None:
    parsed = token_of_secret(secret)
    if parsed is None:
        return None
    data = secret_data(secret)
    when = expiration_of(secret)
    if when is None:
        ttl, expires = "<forever>", "<never>"
    else:
        left = max(0, int((when - now).total_seconds()))
        ttl = f"{left // 3600}h" if left >= 3600 else f"{left // 60}m"
        expires = rfc3339(when)
    used = ",".join(u for u in USAGES if data.get(USAGE_PREFIX + u) == "true") or "<none>"
    return [
        f"{parsed[0]}.{parsed[1]}",
        ttl,
        expires,
        used,
        data.get(DESCRIPTION_KEY, "") or "<none>",
        data.get(EXTRA_GROUPS_KEY, "") or "<none>",
    ]


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List the bootstrap tokens on the server."""
    k = kube(ctx)
    listed = k.client.list(resolve_kind("secrets"), TOKEN_NAMESPACE)
    now = dt.datetime.now(dt.UTC)
    rows = [["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"]]
    for secret in listed.get("items") or []:
        if secret.get("type") == SECRET_TYPE and (row := _row(secret, now)) is not None:
            rows.append(row)
    if len(rows) > 1:
        for line in tabulate(rows):
            out(line)


@app.command("delete")
def delete(
    ctx: typer.Context,
    tokens: list[str] = typer.Argument(..., help="token IDs or ID.SECRET values"),
) -> None:
    """Delete bootstrap tokens on the server."""
    k = kube(ctx)
    info = resolve_kind("secrets")
    for token in tokens:
        token_id = token.split(".", 1)[0]
        if not TOKEN_ID_RE.match(token_id):
            raise CLIError(f"{token!r} is neither a token ID ([a-z0-9]{{6}}) nor a token")
        try:
            k.client.delete(info, secret_name(token_id), TOKEN_NAMESPACE)
        except errors.NotFound as exc:
            raise CLIError(f"bootstrap token {token_id!r} not found") from exc
        out(f"bootstrap token {token_id!r} deleted")
