"""``minik kubeconfig user NAME --group G``: a kubeconfig for a user of the local cluster.

The user is a client certificate from the cluster CA ``minik up`` made (``STATE/pki``): its Common
Name is the user name and each ``--group`` an Organization, which is how Kubernetes reads x509
client certificates.  What the user may do is up to RBAC: bind a Role or ClusterRole to the user
or one of the groups.  The certificate is kept as ``STATE/pki/user-NAME.crt`` (reused while the
name and groups stay the same, renewed before it expires).

Without ``--merge`` the kubeconfig is printed; with it, the context (``minik-NAME`` unless
``--context`` says otherwise) is merged into ``--kubeconfig``, else the first file of
``$KUBECONFIG``, else ``~/.kube/config``, leaving the current context alone.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import typer

from ..kube import CLIError, GlobalOptions

app = typer.Typer(help="Write kubeconfigs for the local cluster's users.", no_args_is_help=True)

USER_EXAMPLES = """
Examples:

  # a kubeconfig for alice in group dev, printed
  sudo minik kubeconfig user alice --group dev

  # merged into ~/.kube/config as context minik-alice
  sudo minik kubeconfig user alice --group dev --merge
  kubectl --context minik-alice auth whoami
"""


def cert_name(user: str) -> str:
    """The file name (without extension) of ``user``'s certificate in the PKI directory."""
    return "user-" + re.sub(r"[^A-Za-z0-9._@-]", "_", user)


def user_kubeconfig(
    state: Path, user: str, groups: list[str], context: str, server: str | None = None
) -> dict[str, Any]:
    """A kubeconfig (cluster, user and context all named ``context``) for ``user`` in ``groups``,
    its certificate issued by the cluster CA in ``state/pki``."""
    from apimachinery.pki import PKI, kubeconfig_dict

    from ..supervisor import api_url, settings

    if not user or user.startswith("system:"):
        raise CLIError(f'invalid user name "{user}": names starting with "system:" are reserved')
    pki_dir = state / "pki"
    if not (pki_dir / "ca.crt").exists():
        raise CLIError(f"no cluster CA in {pki_dir}: start the cluster with `minik up` first")
    if not os.access(pki_dir / "ca.key", os.R_OK):
        raise CLIError(f"cannot read the cluster CA's key {pki_dir / 'ca.key'}: run this as root (sudo)")
    if server is None:
        import json

        try:
            cfg = json.loads((state / "config.json").read_text())
        except (OSError, ValueError):
            cfg = {}
        server = api_url(settings({"advertise_address": "127.0.0.1", **cfg}))
    pki = PKI(pki_dir)
    crt, key = pki.client_cert(cert_name(user), user, groups)
    return kubeconfig_dict(
        server=server,
        ca_pem=pki.ca_pem(),
        cert=(crt, key),
        context=context,
        cluster=context,
        user=context,
        namespace="default",
    )


@app.command(epilog=USER_EXAMPLES)
def user(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="the user name (the certificate's Common Name)"),
    group: list[str] = typer.Option(  # noqa: B006 - typer's way to declare a repeatable option
        [], "--group", "-g", help="a group of the user (repeat for several)"
    ),
    merge: bool = typer.Option(False, "--merge", help="merge into the kubeconfig file instead of printing"),
    state_dir: Path = typer.Option(
        None, help="the cluster's state directory (default $MINIK_STATE_DIR or ~/.minik)"
    ),
) -> None:
    """Issue a client certificate for a user and print (or --merge) a kubeconfig for it.

    The context is named minik-NAME (the global --context picks another
    name); --server sets the API server's URL written into it (default:
    https://127.0.0.1:PORT of the local cluster).
    """
    import yaml

    from ..cluster import default_state_dir, kubeconfig_path, merge_into_user_kubeconfig

    opts = ctx.find_object(GlobalOptions) or GlobalOptions()
    context = opts.context or f"minik-{name}"
    state = (state_dir or default_state_dir()).absolute()
    try:
        entries = user_kubeconfig(state, name, list(group), context, opts.server)
    except CLIError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if not merge:
        sys.stdout.write(yaml.safe_dump(entries, sort_keys=False))
        return
    target = Path(opts.kubeconfig).expanduser() if opts.kubeconfig else kubeconfig_path()
    path = merge_into_user_kubeconfig(entries, make_current=False, path=target)
    groups = ", ".join(group) or "no group"
    typer.echo(f'context "{context}" for user "{name}" ({groups}) written to {path}')
    typer.echo(f"use it with: kubectl --context {context} ...")
