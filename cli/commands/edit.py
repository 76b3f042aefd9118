"""``minik edit``: open an object's YAML in ``$KUBE_EDITOR``/``$EDITOR``, then write it back.

The edited object is sent with PUT (conditional on the resourceVersion that was edited).  If
someone else changed the object meanwhile (409 Conflict), the change made in the editor is
turned into a strategic merge patch (edited vs. what was opened) and applied to the latest
version, so neither write is lost.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile

import typer
import yaml

from apimachinery import errors
from apimachinery.strategicpatch import create_two_way_merge_patch

from ..kube import CLIError, Obj, kube, out, ref, single_resource, to_yaml

EXAMPLES = """
Examples:

  minik edit deploy/web
  KUBE_EDITOR=nano minik edit svc web
"""

HEADER = """# Please edit the object below. Lines beginning with a '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving this file will be
# reopened with the relevant failures.
#
"""


def editor_command() -> list[str]:
    for var in ("KUBE_EDITOR", "EDITOR"):
        value = os.environ.get(var)
        if value:
            return shlex.split(value)
    return ["vi"]


def strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def run_editor(text: str, suffix: str = ".yaml") -> str:
    fd, path = tempfile.mkstemp(prefix="minik-edit-", suffix=suffix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            result = subprocess.run([*editor_command(), path], check=False)
        except OSError as exc:
            raise CLIError(f"cannot run the editor {editor_command()[0]!r}: {exc.strerror}") from None
        if result.returncode != 0:
            raise CLIError(f"there was a problem with the editor {editor_command()[0]!r}")
        with open(path) as f:
            return f.read()
    finally:
        os.unlink(path)


def edit(
    ctx: typer.Context,
    resource: list[str] = typer.Argument(..., help="TYPE/NAME or TYPE NAME"),
    show_managed_fields: bool = typer.Option(
        False,
        "--show-managed-fields",
        help="If true, keep the managedFields when printing objects in JSON or YAML format.",
    ),
) -> None:
    """Edit a resource in your editor ($KUBE_EDITOR, $EDITOR, else vi)."""
    from .get import omit_managed_fields

    k = kube(ctx)
    info, name = single_resource(resource, "edit")
    ns = k.ns_for(info)
    original: Obj = {"apiVersion": info.api_version, "kind": info.kind, **k.client.get(info, name, ns)}
    if not show_managed_fields:
        # an update without managedFields keeps the server's entries
        original = omit_managed_fields(original)
    error_note = ""
    buffer = HEADER + to_yaml(original)
    while True:
        edited_text = run_editor(error_note + buffer)
        body = strip_comments(edited_text)
        if not body.strip():
            raise CLIError("Edit cancelled, no valid changes were saved.")
        try:
            edited = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            error_note = f"# The edited file had a syntax error: line {mark.line + 1 if mark else '?'}: {getattr(exc, 'problem', exc)}\n#\n"
            buffer = HEADER + body + "\n"
            continue
        if edited == original:
            out("Edit cancelled, no changes made.")
            return
        if not isinstance(edited, dict) or (edited.get("metadata") or {}).get("name") != name:
            raise CLIError("the name of the object cannot be changed while editing")
        try:
            k.client.update(info, edited)
        except errors.Conflict:
            patch = create_two_way_merge_patch(original, edited, info.kind, info.api_version)
            patch.get("metadata", {}).pop("resourceVersion", None)
            k.client.patch(info, name, patch, ns, patch_type="strategic")
        except errors.Invalid as exc:
            from ..kube import format_status_error

            error_note = "".join(f"# {line}\n" for line in format_status_error(exc).splitlines()) + "#\n"
            buffer = HEADER + to_yaml(edited)
            continue
        out(f"{ref(info, name)} edited")
        return
