"""``minik apply -f``: create objects, or update them with kubectl's client-side three-way merge.

The ``kubectl.kubernetes.io/last-applied-configuration`` annotation holds what was applied last,
encoded exactly as kubectl encodes it (compact JSON, keys sorted, a trailing newline, the object
with an empty ``annotations`` map once the annotation itself is taken out).  An update sends
``create_three_way_merge_patch(last_applied, new, live)`` as a strategic merge patch; an empty
patch means ``unchanged``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import typer

from apimachinery import errors
from apimachinery.client import Request, resource_path
from apimachinery.resources import ResourceInfo, by_kind

from ..kube import CLIError, Kube, Obj, err, kube, out, ref
from ..manifests import Manifest, load

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
FIELD_MANAGER = "kubectl-client-side-apply"

EXAMPLES = """
Examples:

  minik apply -f app.yaml              # create or update what the file describes
  minik apply -f manifests/ -R         # every .yaml/.yml/.json under a directory
  cat app.yaml | minik apply -f -      # from stdin
  minik apply -f app.yaml --dry-run=server
"""


def go_json(obj: Any) -> str:
    """JSON as Go's ``json.Encoder`` writes an unstructured object: sorted keys, HTML-escaped, newline."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text + "\n"


def modified_configuration(obj: Obj) -> Obj:
    """The object to send, with the last-applied annotation set as kubectl sets it."""
    obj = copy.deepcopy(obj)
    md = obj.setdefault("metadata", {})
    annotations = dict(md.get("annotations") or {})
    annotations.pop(LAST_APPLIED, None)
    md["annotations"] = annotations
    applied = go_json(obj)
    md["annotations"] = {**annotations, LAST_APPLIED: applied}
    return obj


def last_applied(live: Obj) -> Obj | None:
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def apply_object(k: Kube, info: ResourceInfo, obj: Obj, dry_run: bool) -> str:
    """Create or patch one object; returns ``created``, ``configured`` or ``unchanged``."""
    name = str((obj.get("metadata") or {}).get("name") or "")
    ns = k.ns_for(info, obj)
    if info.namespaced:
        obj.setdefault("metadata", {})["namespace"] = ns
    modified = modified_configuration(obj)
    params = {"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict"}
    if dry_run:
        params["dryRun"] = "All"
    try:
        live = k.client.get(info, name, ns)
    except errors.NotFound:
        k.client.send(Request("POST", resource_path(info, ns), params, body=modified))
        return "created"
    from apimachinery.strategicpatch import create_three_way_merge_patch  # only for an existing object

    patch = create_three_way_merge_patch(last_applied(live), modified, live, info.kind, info.api_version)
    if not patch:
        return "unchanged"
    k.client.send(
        Request(
            "PATCH",
            resource_path(info, ns, name),
            params,
            body=patch,
            content_type="application/strategic-merge-patch+json",
        )
    )
    return "configured"


def check_namespace(k: Kube, m: Manifest) -> None:
    given = (m.obj.get("metadata") or {}).get("namespace")
    if given and k.namespace_given and given != k.namespace:
        raise CLIError(
            f'the namespace from the provided object "{given}" does not match the namespace '
            f"\"{k.namespace}\". You must pass '--namespace={given}' to perform this operation."
        )


def apply(
    ctx: typer.Context,
    filename: list[str] = typer.Option(..., "-f", "--filename", help="file, directory, or - for stdin"),
    recursive: bool = typer.Option(False, "-R", "--recursive", help="walk directories recursively"),
    dry_run: str = typer.Option("none", "--dry-run", help="none or server"),
    output: str = typer.Option(None, "-o", "--output", help="name: print only kind/name"),
) -> None:
    """Apply a configuration to resources from files or stdin."""
    if dry_run not in ("none", "server", "client"):
        raise CLIError(f'Invalid dry-run value ({dry_run}). Must be "none", "server", or "client".')
    if dry_run == "client":
        raise CLIError("--dry-run=client is not supported; use --dry-run=server")
    k = kube(ctx)
    manifests = load(filename, recursive)
    if not manifests:
        raise CLIError("no objects passed to apply")
    failed = False
    for m in manifests:
        api_version, kind = str(m.obj.get("apiVersion")), str(m.obj.get("kind"))
        md = m.obj.get("metadata") or {}
        info = by_kind(api_version, kind)
        if info is None:
            err(
                f'error: resource mapping not found for name: "{md.get("name", "")}" namespace: '
                f'"{md.get("namespace", "")}" from "{m.source}": no matches for kind "{kind}" in version '
                f'"{api_version}"\nensure CRDs are installed first'
            )
            failed = True
            continue
        if not md.get("name"):
            err(
                f'error: error when retrieving current configuration from "{m.source}": the object has no metadata.name'
            )
            failed = True
            continue
        try:
            check_namespace(k, m)
            result = apply_object(k, info, m.obj, dry_run == "server")
        except errors.StatusError as exc:
            from ..kube import format_status_error

            cause = exc.__cause__
            if cause is not None:
                raise
            err(format_status_error(exc))
            failed = True
            continue
        if output == "name":
            out(ref(info, md["name"]))
        else:
            out(f"{ref(info, md['name'])} {result}{' (server dry run)' if dry_run == 'server' else ''}")
    if failed:
        raise typer.Exit(1)
