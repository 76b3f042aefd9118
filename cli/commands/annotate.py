"""``minik annotate``: add, change or remove annotations (``key=value``, ``key-``)."""

from __future__ import annotations

import typer

from .label import run

EXAMPLES = """
Examples:

  minik annotate pod web-0 description='my frontend'
  minik annotate deploy/web owner=lab --overwrite
  minik annotate deploy/web owner-             # remove it
"""


def annotate(
    ctx: typer.Context,
    args: list[str] = typer.Argument(..., help="TYPE NAME… KEY=VALUE… KEY-…"),
    overwrite: bool = typer.Option(False, "--overwrite", help="allow changing an existing annotation"),
    selector: str = typer.Option(None, "-l", "--selector"),
    all_: bool = typer.Option(False, "--all", help="every object of the kind in the namespace"),
) -> None:
    """Update the annotations on a resource."""
    run(ctx, args, overwrite, selector, all_, "annotations")
