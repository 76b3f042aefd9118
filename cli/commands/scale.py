"""``minik scale``: set the replicas of a Deployment, ReplicaSet or StatefulSet."""

from __future__ import annotations

import typer

from apimachinery import errors

from ..kube import CLIError, kube, out, parse_resource_args, ref

EXAMPLES = """
Examples:

  minik scale deploy/web --replicas=3
  minik scale deployment web --replicas=0
  minik scale deploy/web --replicas=5 --current-replicas=3   # only if it has 3 now
"""


def scale(
    ctx: typer.Context,
    resources: list[str] = typer.Argument(..., help="TYPE NAME or TYPE/NAME"),
    replicas: int = typer.Option(..., "--replicas", help="the new number of replicas"),
    current_replicas: int = typer.Option(-1, "--current-replicas", help="precondition: the current replicas"),
) -> None:
    """Set a new size for a Deployment, ReplicaSet or StatefulSet."""
    if replicas < 0:
        raise CLIError("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
    k = kube(ctx)
    for info, names in parse_resource_args(resources):
        if "scale" not in info.subresources:
            raise CLIError(f"cannot scale {info.plural}: it has no scale subresource")
        if not names:
            raise CLIError("resource(s) were provided, but no name was specified")
        for name in names:
            ns = k.ns_for(info)
            if current_replicas >= 0:
                current = k.client.get_scale(info, name, ns)
                have = int((current.get("spec") or {}).get("replicas") or 0)
                if have != current_replicas:
                    raise CLIError(f"Expected replicas to be {current_replicas}, was {have}")
            try:
                k.client.scale(info, name, replicas, ns)
            except errors.NotFound:
                raise
            out(f"{ref(info, name)} scaled")
