"""``minik rollout status|history|undo|restart|pause|resume``, as kubectl does them.

History and undo read the ReplicaSets a Deployment owns and their
``deployment.kubernetes.io/revision`` annotations, or the ControllerRevisions a StatefulSet or
DaemonSet owns (undo sends a revision's ``data`` to the set as a strategic merge patch); restart sets the pod template annotation
``kubectl.kubernetes.io/restartedAt``; status watches the object until the rollout is done.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import typer

from apimachinery import errors
from apimachinery.printers import format_label_selector
from apimachinery.resources import ResourceInfo, resolve

from ..describe_fmt import go_tabwriter
from ..kube import (
    CLIError,
    Kube,
    Obj,
    examples,
    kube,
    meta,
    out,
    parse_bool,
    plural_name,
    print_text,
    ref,
    single_resource,
)
from .describe import Writer, write_template

app = typer.Typer(
    help="Manage the rollout of a Deployment (status, history, undo, restart, pause, resume).",
    no_args_is_help=True,
)

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
HASH_LABEL = "pod-template-hash"
ANNOTATIONS_TO_SKIP = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
}


# ---- pure decisions ---------------------------------------------------------------------------


def revision_of(obj: Obj) -> int:
    try:
        return int((meta(obj).get("annotations") or {}).get(REVISION) or 0)
    except ValueError:
        return 0


def owned_by(rs: Obj, owner: Obj) -> bool:
    uid = meta(owner).get("uid")
    return any(
        o.get("uid") == uid and o.get("controller", True) for o in meta(rs).get("ownerReferences") or []
    )


def history(replicasets: list[Obj]) -> dict[int, Obj]:
    """Revision -> ReplicaSet (only those with a revision annotation)."""
    return {revision_of(rs): rs for rs in replicasets if revision_of(rs) > 0}


def format_history(revisions: dict[int, Obj]) -> str:
    if not revisions:
        return "No rollout history found.\n"
    lines = [["REVISION", "CHANGE-CAUSE"]]
    for r in sorted(revisions):
        cause = (meta(revisions[r]).get("annotations") or {}).get(CHANGE_CAUSE) or "<none>"
        lines.append([str(r), cause])
    return "\n".join(go_tabwriter(lines)) + "\n"


def template_without_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return t


def rs_for_revision(name: str, revisions: dict[int, Obj], to_revision: int) -> tuple[int, Obj]:
    """The ReplicaSet to roll back to: ``to_revision``, or the one before the latest (0)."""
    if to_revision > 0:
        if to_revision not in revisions:
            raise CLIError(f"unable to find specified revision {to_revision} in history")
        return to_revision, revisions[to_revision]
    ordered = sorted(revisions)
    if len(ordered) < 2:
        raise CLIError(f'no rollout history found for deployment "{name}"')
    return ordered[-2], revisions[ordered[-2]]


def rollback_patch(deployment: Obj, rs: Obj) -> list[Obj]:
    """kubectl's JSON patch: the ReplicaSet's template (without the hash label) and annotations."""
    template = template_without_hash((rs.get("spec") or {}).get("template") or {})
    current = meta(deployment).get("annotations") or {}
    annotations = {k: v for k, v in current.items() if k in ANNOTATIONS_TO_SKIP}
    annotations.update(
        {k: v for k, v in (meta(rs).get("annotations") or {}).items() if k not in ANNOTATIONS_TO_SKIP}
    )
    return [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]


def revision_history(revisions: list[Obj]) -> dict[int, Obj]:
    """Revision number -> ControllerRevision."""
    return {int(r.get("revision") or 0): r for r in revisions}


def revision_template(revision: Obj) -> Obj:
    """The pod template a ControllerRevision's ``data`` patch puts back."""
    template = dict((((revision.get("data") or {}).get("spec") or {}).get("template")) or {})
    template.pop("$patch", None)
    return template


def normalized(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    if isinstance(t.get("metadata"), dict):
        t["metadata"] = {k: v for k, v in t["metadata"].items() if v is not None}
        if not t["metadata"]:
            t.pop("metadata")
    return t


def _int(v: Any) -> int:
    return int(v or 0)


def _rollout_progress(
    kind: str, obj: Obj, waits: Callable[[Obj, Obj], list[tuple[bool, str]]]
) -> tuple[str, bool]:
    """The progress line of a Deployment or DaemonSet rollout, and whether it is done.

    Until the controller has observed the latest generation the rollout waits for that; then
    the first pending wait of ``waits(spec, status)`` (a condition and its progress text) is
    reported, and with none pending the rollout is done.
    """
    name = meta(obj).get("name")
    status = obj.get("status") or {}
    if _int(meta(obj).get("generation")) > _int(status.get("observedGeneration")):
        return f"Waiting for {kind} spec update to be observed...", False
    for pending, progress in waits(obj.get("spec") or {}, status):
        if pending:
            return f'Waiting for {kind} "{name}" rollout to finish: {progress}...', False
    return f'{kind} "{name}" successfully rolled out', True


def deployment_status(d: Obj) -> tuple[str, bool]:
    """kubectl's ``DeploymentStatusViewer``: the progress line, and whether the rollout is done."""

    def waits(spec: Obj, status: Obj) -> list[tuple[bool, str]]:
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
                raise CLIError(f'deployment "{meta(d).get("name")}" exceeded its progress deadline')
        replicas = spec.get("replicas", 1)
        updated = _int(status.get("updatedReplicas"))
        total = _int(status.get("replicas"))
        available = _int(status.get("availableReplicas"))
        return [
            (
                replicas is not None and updated < replicas,
                f"{updated} out of {replicas} new replicas have been updated",
            ),
            (total > updated, f"{total - updated} old replicas are pending termination"),
            (available < updated, f"{available} of {updated} updated replicas are available"),
        ]

    return _rollout_progress("deployment", d, waits)


def daemonset_status(ds: Obj) -> tuple[str, bool]:
    if ((ds.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        raise CLIError("rollout status is only available for RollingUpdate strategy type")

    def waits(spec: Obj, status: Obj) -> list[tuple[bool, str]]:
        desired = _int(status.get("desiredNumberScheduled"))
        updated = _int(status.get("updatedNumberScheduled"))
        available = _int(status.get("numberAvailable"))
        return [
            (updated < desired, f"{updated} out of {desired} new pods have been updated"),
            (available < desired, f"{available} of {desired} updated pods are available"),
        ]

    return _rollout_progress("daemon set", ds, waits)


def statefulset_status(sts: Obj) -> tuple[str, bool]:
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    observed = _int(status.get("observedGeneration"))
    if observed == 0 or _int(meta(sts).get("generation")) > observed:
        return "Waiting for statefulset spec update to be observed...", False
    replicas = spec.get("replicas", 1)
    ready = _int(status.get("readyReplicas"))
    if replicas is not None and ready < replicas:
        return f"Waiting for {replicas - ready} pods to be ready...", False
    if status.get("updateRevision") != status.get("currentRevision"):
        return (
            f"waiting for statefulset rolling update to complete {_int(status.get('updatedReplicas'))} pods at revision {status.get('updateRevision')}...",
            False,
        )
    return (
        f"statefulset rolling update complete {_int(status.get('currentReplicas'))} pods at revision {status.get('currentRevision')}...",
        True,
    )


STATUS_VIEWERS = {
    "Deployment": deployment_status,
    "DaemonSet": daemonset_status,
    "StatefulSet": statefulset_status,
}


def restarted_at(now: datetime | None = None) -> str:
    """Go's ``time.Now().Format(time.RFC3339)``: local time, ``Z`` for UTC."""
    now = (now or datetime.now()).astimezone()
    text = now.isoformat(timespec="seconds")
    return text[:-6] + "Z" if now.utcoffset() == timedelta(0) else text


# ---- I/O --------------------------------------------------------------------------------------


def _deployment(ctx: typer.Context, resource: list[str]) -> tuple[Kube, ResourceInfo, str, Obj]:
    k = kube(ctx)
    info, name = single_resource(resource, "rollout")
    if info.kind != "Deployment":
        raise CLIError(f"no {info.kind.lower()} support for this rollout command; only deployments")
    return k, info, name, k.client.get(info, name, k.ns_for(info))


HISTORY_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


def _with_history(ctx: typer.Context, resource: list[str]) -> tuple[Kube, ResourceInfo, str, Obj]:
    k = kube(ctx)
    info, name = single_resource(resource, "rollout")
    if info.kind not in HISTORY_KINDS:
        raise CLIError(f"no history viewer has been implemented for {info.kind}")
    return k, info, name, k.client.get(info, name, k.ns_for(info))


def _owned(k: Kube, plural: str, owner: Obj) -> list[Obj]:
    child = resolve(plural)
    assert child is not None
    sel = format_label_selector((owner.get("spec") or {}).get("selector"))
    items = (
        k.client.list(
            child, meta(owner).get("namespace"), label_selector=None if sel == "<none>" else sel
        ).get("items")
        or []
    )
    return [obj for obj in items if owned_by(obj, owner)]


def _replicasets(k: Kube, d: Obj) -> list[Obj]:
    return _owned(k, "replicasets", d)


def _revisions(k: Kube, owner: Obj) -> dict[int, Obj]:
    """The history of a Deployment (its ReplicaSets) or of a StatefulSet or DaemonSet (its
    ControllerRevisions), by revision number."""
    if owner.get("kind") == "Deployment":
        return history(_replicasets(k, owner))
    return revision_history(_owned(k, "controllerrevisions", owner))


def _template(revision: Obj) -> Obj:
    if revision.get("kind") == "ControllerRevision":
        return revision_template(revision)
    return template_without_hash((revision.get("spec") or {}).get("template") or {})


_RESOURCE = typer.Argument(..., help="deployment/NAME or deployment NAME")
_HISTORY_RESOURCE = typer.Argument(
    ..., help="deployment/NAME, statefulset/NAME or daemonset/NAME (or the kind and name as two words)"
)


def _command(verb: str, *flags: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A rollout subcommand; its help shows it run on deploy/web, then with each of ``flags``."""
    run = f"minik rollout {verb} deploy/web"
    return app.command(verb, epilog=examples(run, *(f"{run} {flag}" for flag in flags)))


@_command("history", "--revision=2")
def rollout_history(
    ctx: typer.Context,
    resource: list[str] = _HISTORY_RESOURCE,
    revision: int = typer.Option(0, "--revision", help="show the pod template of this revision"),
) -> None:
    """View previous rollout revisions and configurations."""
    k, info, name, d = _with_history(ctx, resource)
    revisions = _revisions(k, d)
    if revision > 0:
        if revision not in revisions:
            raise CLIError("unable to find the specified revision")
        out(f"{ref(info, name)} with revision #{revision}")
        w = Writer()
        w.line(0, "Pod Template:")
        write_template(w, _template(revisions[revision]), 1)
        print_text(w.render())
        return
    out(f"{ref(info, name)} ")
    print_text(format_history(revisions) + "\n")


@_command("undo", "--to-revision=1")
def rollout_undo(
    ctx: typer.Context,
    resource: list[str] = _HISTORY_RESOURCE,
    to_revision: int = typer.Option(
        0, "--to-revision", help="the revision to roll back to (0: the previous one)"
    ),
) -> None:
    """Roll back to a previous rollout."""
    k, info, name, d = _with_history(ctx, resource)
    if info.kind != "Deployment":
        _undo_set(k, info, name, d, to_revision)
        return
    if (d.get("spec") or {}).get("paused"):
        raise CLIError(
            f"you cannot rollback a paused deployment; resume it first with 'minik rollout resume deployment/{name}' and try again"
        )
    revision, rs = rs_for_revision(name, history(_replicasets(k, d)), to_revision)
    if template_without_hash((rs.get("spec") or {}).get("template") or {}) == template_without_hash(
        (d.get("spec") or {}).get("template") or {}
    ):
        out(f"{ref(info, name)} skipped rollback (current template already matches revision {revision})")
        return
    k.client.patch(info, name, rollback_patch(d, rs), k.ns_for(info), patch_type="json")
    out(f"{ref(info, name)} rolled back")


def _undo_set(k: Kube, info: ResourceInfo, name: str, obj: Obj, to_revision: int) -> None:
    """kubectl's StatefulSet and DaemonSet rollbacker: the revision's ``data`` as a strategic merge
    patch, unless the set's template already is the revision's."""
    revisions = _revisions(k, obj)
    if to_revision > 0:
        if to_revision not in revisions:
            raise CLIError(f"unable to find specified revision {to_revision} in history")
        revision = to_revision
    else:
        ordered = sorted(revisions)
        if len(ordered) < 2:
            raise CLIError("unable to find specified revision 0 in history")
        revision = ordered[-2]
    target = revisions[revision]
    if normalized(revision_template(target)) == normalized((obj.get("spec") or {}).get("template") or {}):
        out(f"{ref(info, name)} skipped rollback (current template already matches revision {revision})")
        return
    k.client.patch(info, name, target.get("data") or {}, k.ns_for(info), patch_type="strategic")
    out(f"{ref(info, name)} rolled back")


@_command("restart")
def rollout_restart(ctx: typer.Context, resource: list[str] = _RESOURCE) -> None:
    """Restart a deployment: new pods replace the old ones."""
    k, info, name, d = _deployment(ctx, resource)
    if (d.get("spec") or {}).get("paused"):
        raise CLIError("can't restart paused deployment (run rollout resume first)")
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: restarted_at()}}}}}
    k.client.patch(info, name, patch, k.ns_for(info), patch_type="strategic")
    out(f"{ref(info, name)} restarted")


def _set_paused(ctx: typer.Context, resource: list[str], paused: bool) -> None:
    k, info, name, d = _deployment(ctx, resource)
    if bool((d.get("spec") or {}).get("paused")) == paused:
        raise CLIError(f'{plural_name(info)} "{name}" is {"already paused" if paused else "not paused"}')
    k.client.patch(info, name, {"spec": {"paused": paused}}, k.ns_for(info))
    out(f"{ref(info, name)} {'paused' if paused else 'resumed'}")


@_command("pause")
def rollout_pause(ctx: typer.Context, resource: list[str] = _RESOURCE) -> None:
    """Mark a deployment as paused: template changes do not roll out until resumed."""
    _set_paused(ctx, resource, True)


@_command("resume")
def rollout_resume(ctx: typer.Context, resource: list[str] = _RESOURCE) -> None:
    """Resume a paused deployment."""
    _set_paused(ctx, resource, False)


@_command("status", "--timeout=60")
def rollout_status(
    ctx: typer.Context,
    resource: list[str] = _RESOURCE,
    watch: str = typer.Option("true", "-w", "--watch", help="true|false: watch until the rollout is done"),
    timeout: float = typer.Option(0, "--timeout", help="seconds to wait (0: forever)"),
) -> None:
    """Show the status of a rollout, live, until it is done."""
    k = kube(ctx)
    info, name = single_resource(resource, "rollout status")
    watching = parse_bool(watch, "--watch")
    viewer = STATUS_VIEWERS.get(info.kind)
    if viewer is None:
        raise CLIError(f"no status viewer has been implemented for {info.kind}")
    ns = k.ns_for(info)
    deadline = time.monotonic() + timeout if timeout > 0 else None
    obj = k.client.get(info, name, ns)
    last = ""
    while True:
        message, done = viewer(obj)
        if message != last:
            out(message)
            last = message
        if done or not watching:
            return
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise CLIError("timed out waiting for the condition")
        rv = str(meta(obj).get("resourceVersion") or "")
        try:
            step = int(min(remaining, 60)) if remaining is not None else 60
            for etype, event in k.client.watch(
                info, ns, rv, field_selector=f"metadata.name={name}", timeout_seconds=max(1, step)
            ):
                if etype == "DELETED":
                    raise CLIError(f'{plural_name(info)} "{name}" was deleted')
                if etype in ("ADDED", "MODIFIED"):
                    obj = event
                    break
            else:
                obj = k.client.get(info, name, ns)
        except errors.Gone:
            obj = k.client.get(info, name, ns)
