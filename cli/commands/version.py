"""``minik version``: the client's version and the API server's, as ``kubectl version`` prints them."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer

from apimachinery import errors
from apimachinery.version import __version__

from ..kube import CLIError, Obj, kube, out, print_text, to_yaml

EXAMPLES = """Examples:

  minik version                        # the client's version and the API server's
  minik version --client               # the client's version only (no server needed)
  minik version -o json                # both as JSON, in kubectl's field names"""

_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def client_version() -> Obj:
    """This ``minik``'s version in the fields of Kubernetes' ``version.Info``."""
    major, minor = __version__.split(".")[:2]
    machine = os.uname().machine
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{__version__}",
        "pythonVersion": f"python{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}",
        "compiler": sys.implementation.name,
        "platform": f"{sys.platform}/{_ARCH.get(machine, machine)}",
    }


def version(
    ctx: typer.Context,
    client: bool = typer.Option(False, "--client", help="print the client version only (no server needed)"),
    output: str = typer.Option(None, "-o", "--output", help="yaml or json"),
) -> None:
    """Print the client and server version information."""
    if output not in (None, "json", "yaml"):
        raise CLIError("--output must be 'yaml' or 'json'")
    info: dict[str, Any] = {"clientVersion": client_version()}
    problem: errors.StatusError | None = None
    if not client:
        try:
            info["serverVersion"] = kube(ctx).client.get_json("/version")
        except errors.StatusError as exc:
            problem = exc  # the client's version is still printed, then the error (exit code 1)
    if output == "json":
        out(json.dumps(info, indent=2))
    elif output == "yaml":
        print_text(to_yaml(info))
    else:
        out(f"Client Version: {info['clientVersion']['gitVersion']}")
        if "serverVersion" in info:
            out(f"Server Version: {info['serverVersion'].get('gitVersion', '')}")
    if problem is not None:
        raise problem
