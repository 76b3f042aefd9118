"""``minik``: start a local cluster and drive it."""

from __future__ import annotations

import typer

from . import cluster

app = typer.Typer(
    name="minik",
    help="minik: a small, real Kubernetes-shaped orchestrator for Docker hosts.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(cluster.up)
app.command()(cluster.down)
app.command()(cluster.delete)
app.command()(cluster.status)
app.command()(cluster.logs)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
