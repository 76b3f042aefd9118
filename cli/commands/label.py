"""``minik label``: add, change or remove labels (``key=value``, ``key-``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from apimachinery import errors
from apimachinery.resources import ResourceInfo

from ..kube import CLIError, Kube, Obj, err, format_status_error, kube, meta, out, parse_resource_args, ref

EXAMPLES = """
Examples:

  minik label pod web-0 tier=frontend
  minik label deploy/web tier=backend --overwrite
  minik label pods -l app=web canary-          # remove the label canary
  minik label pods --all env=lab
"""


def parse_changes(args: list[str], what: str) -> tuple[list[str], dict[str, str], list[str]]:
    """Split ``args`` into resource words, ``key=value`` pairs and ``key-`` removals."""
    resources: list[str] = []
    add: dict[str, str] = {}
    remove: list[str] = []
    for a in args:
        if "=" in a:
            key, _, value = a.partition("=")
            if not key:
                raise CLIError(f"invalid {what} spec: {a}")
            add[key] = value
        elif a.endswith("-") and len(a) > 1 and (add or remove or resources):
            remove.append(a[:-1])
        else:
            if add or remove:
                raise CLIError(f"all resources must be specified before {what} changes: {a}")
            resources.append(a)
    if not add and not remove:
        raise CLIError(f"at least one {what} update is required")
    for key in remove:
        if key in add:
            raise CLIError(f"can not both modify and remove {what}s in the same command")
    return resources, add, remove


def change_map(
    current: dict[str, str], add: dict[str, str], remove: list[str], overwrite: bool, what: str
) -> dict[str, Any]:
    """The merge-patch value for one map (``None`` deletes); raises when a value would be overwritten."""
    patch: dict[str, Any] = {}
    for key, value in add.items():
        if key in current and current[key] != value and not overwrite:
            raise CLIError(f"'{key}' already has a value ({current[key]}), and --overwrite is false")
        if current.get(key) != value:
            patch[key] = value
    for key in remove:
        if key in current:
            patch[key] = None
    return patch


def targets(
    k: Kube, resource_words: list[str], selector: str | None, all_: bool
) -> list[tuple[ResourceInfo, Obj]]:
    found: list[tuple[ResourceInfo, Obj]] = []
    for info, names in parse_resource_args(resource_words):
        ns = k.ns_for(info)
        if names:
            found.extend((info, k.client.get(info, n, ns)) for n in names)
        elif selector or all_:
            found.extend((info, o) for o in k.client.list(info, ns, selector).get("items") or [])
        else:
            raise CLIError("resource(s) were provided, but no name was specified")
    return found


def metadata_command(field: str) -> Callable[..., None]:
    """The ``label`` (``field="labels"``) or ``annotate`` (``"annotations"``) command."""
    what = field[:-1]

    def command(
        ctx: typer.Context,
        args: list[str] = typer.Argument(..., help="TYPE NAME… KEY=VALUE… KEY-…"),
        overwrite: bool = typer.Option(False, "--overwrite", help=f"allow changing an existing {what}"),
        selector: str = typer.Option(None, "-l", "--selector"),
        all_: bool = typer.Option(False, "--all", help="every object of the kind in the namespace"),
    ) -> None:
        _run(ctx, args, overwrite, selector, all_, field)

    command.__doc__ = f"Update the {field} on a resource."
    return command


def _run(
    ctx: typer.Context, args: list[str], overwrite: bool, selector: str | None, all_: bool, field: str
) -> None:
    what = field[:-1]
    verb = "labeled" if field == "labels" else "annotated"
    k = kube(ctx)
    words, add, remove = parse_changes(args, what)
    failed = False
    for info, obj in targets(k, words, selector, all_):
        md = meta(obj)
        patch = change_map(md.get(field) or {}, add, remove, overwrite, what)
        name = str(md.get("name"))
        if not patch:
            out(f"{ref(info, name)} {'not labeled' if field == 'labels' else verb}")
            continue
        try:
            k.client.patch(info, name, {"metadata": {field: patch}}, md.get("namespace") or None)
        except errors.StatusError as exc:
            if exc.__cause__ is not None:
                raise
            err(format_status_error(exc))
            failed = True
            continue
        out(f"{ref(info, name)} {verb}")
    if failed:
        raise typer.Exit(1)


label = metadata_command("labels")
