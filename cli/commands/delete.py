"""``minik delete``: delete by name, by file, by label or all of a kind, then wait until gone."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from apimachinery import errors
from apimachinery.resources import ResourceInfo, by_kind

from ..kube import (
    CLIError,
    Kube,
    err,
    format_status_error,
    kube,
    meta,
    out,
    parse_bool,
    parse_resource_args,
    plural_name,
)
from ..manifests import load

EXAMPLES = """
Examples:

  minik delete                           # no resource: delete the local cluster and its state

  minik delete pod web-0                 # prints: pod "web-0" deleted
  minik delete -f app.yaml               # what a manifest describes
  minik delete pods -l app=web           # by label
  minik delete pods --all                # every pod of the namespace
  minik delete deploy/web --wait=false   # do not wait until it is gone
"""

CASCADE = {
    "background": "Background",
    "foreground": "Foreground",
    "orphan": "Orphan",
    "true": "Background",
    "false": "Orphan",
}


def wait_gone(k: Kube, targets: list[tuple[ResourceInfo, str | None, str, str]], timeout: float) -> list[str]:
    """Wait until each object is gone (or replaced by one with another uid); returns the ones still there.

    Each target is (kind, namespace, name, uid).  Uses a watch on ``metadata.name=NAME`` as
    kubectl does, starting from a fresh get, so no deletion event is missed.
    """
    deadline = time.monotonic() + timeout
    left: list[str] = []
    for info, ns, name, uid in targets:
        while True:
            try:
                obj = k.client.get(info, name, ns)
            except errors.NotFound:
                break
            if uid and meta(obj).get("uid") != uid:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                left.append(f'{plural_name(info)} "{name}"')
                break
            rv = str(meta(obj).get("resourceVersion") or "")
            try:
                for etype, event_obj in k.client.watch(
                    info,
                    ns,
                    rv,
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=max(1, int(min(remaining, 30))),
                ):
                    if etype == "DELETED" and (not uid or meta(event_obj).get("uid") == uid):
                        break
            except errors.Gone:
                pass
    return left


def delete(
    ctx: typer.Context,
    resources: list[str] = typer.Argument(None, help="TYPE NAME…, TYPE/NAME…, or TYPE with -l/--all"),
    filename: list[str] = typer.Option(None, "-f", "--filename", help="delete what these manifests describe"),
    recursive: bool = typer.Option(False, "-R", "--recursive"),
    selector: str = typer.Option(
        None, "-l", "--selector", help="delete objects matching this label selector"
    ),
    all_: bool = typer.Option(False, "--all", help="delete every object of the kind in the namespace"),
    all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces"),
    wait: str = typer.Option("true", "--wait", help="true|false: wait until the objects are gone"),
    grace_period: int = typer.Option(
        -1, "--grace-period", help="seconds for graceful termination (-1: the object's default)"
    ),
    now: bool = typer.Option(False, "--now", help="same as --grace-period=1"),
    force: bool = typer.Option(False, "--force", help="with --grace-period=0: delete immediately"),
    cascade: str = typer.Option("background", "--cascade", help="background, foreground or orphan"),
    ignore_not_found: bool = typer.Option(False, "--ignore-not-found"),
    timeout: float = typer.Option(3600, "--timeout", help="seconds to wait for the deletion"),
    dry_run: str = typer.Option("none", "--dry-run", help="none or server"),
    state_dir: Path = typer.Option(
        None, "--state-dir", help="with no resources: the local cluster's state directory"
    ),
) -> None:
    """Delete resources by names, files, label selector or --all.

    With no resource at all, `minik delete` deletes the local cluster (as `minikube delete`):
    it stops it and removes its state and its kubeconfig context.
    """
    if not resources and not filename and not selector and not all_:
        from .. import cluster  # the local cluster's code (supervisor, Docker) only for this case

        cluster.delete(state_dir)
        return
    k = kube(ctx)
    if cascade not in CASCADE:
        raise CLIError(f'invalid cascade value ({cascade}). Must be "background", "foreground", or "orphan".')
    grace: int | None = None if grace_period < 0 else grace_period
    if now:
        grace = 1
    if force and grace is None:
        grace = 0
    if grace == 0 and not force:
        grace = 1  # as kubectl: --grace-period=0 without --force means 1
    if force:
        err(
            "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely."
        )
    server_dry_run = dry_run == "server"
    targets: list[tuple[ResourceInfo, str | None, str]] = []
    failed = False
    if filename:
        if resources:
            raise CLIError("resource names can not be given together with -f")
        for m in load(filename, recursive):
            info = by_kind(str(m.obj.get("apiVersion")), str(m.obj.get("kind")))
            if info is None:
                err(
                    f'error: no matches for kind "{m.obj.get("kind")}" in version "{m.obj.get("apiVersion")}"'
                )
                failed = True
                continue
            targets.append((info, k.ns_for(info, m.obj), str(meta(m.obj).get("name"))))
    else:
        pairs = parse_resource_args(resources or [])
        for info, names in pairs:
            ns = None if (all_namespaces or not info.namespaced) else k.namespace
            if names:
                if selector or all_:
                    raise CLIError("name cannot be provided when a selector is specified")
                targets.extend((info, ns, n) for n in names)
            elif selector or all_:
                items = k.client.list_all(info, ns, selector).get("items") or []
                targets.extend((info, meta(o).get("namespace") or None, str(meta(o)["name"])) for o in items)
            else:
                raise CLIError("resource(s) were provided, but no name was specified")
        if not targets and (selector or all_):
            err("No resources found" if all_namespaces else f"No resources found in {k.namespace} namespace.")
    deleted: list[tuple[ResourceInfo, str | None, str, str]] = []
    for info, ns, name in targets:
        try:
            result = k.client.delete(info, name, ns, grace, CASCADE[cascade], dry_run=server_dry_run)
        except errors.NotFound as exc:
            if not ignore_not_found:
                err(format_status_error(exc))
                failed = True
            continue
        uid = str(meta(result).get("uid") or (result.get("details") or {}).get("uid") or "")
        suffix = " (server dry run)" if server_dry_run else ""
        out(f'{info.singular}{"." + info.group if info.group else ""} "{name}" deleted{suffix}')
        deleted.append((info, ns, name, uid))
    if parse_bool(wait, "--wait") and not server_dry_run and deleted:
        left = wait_gone(k, deleted, timeout)
        if left:
            raise CLIError(f"timed out waiting for the condition on {', '.join(left)}")
    if failed:
        raise typer.Exit(1)
