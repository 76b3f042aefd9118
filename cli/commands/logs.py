"""``minik logs``: a container's log from ``pods/{name}/log`` (``-f``, ``-c``, ``--previous``, ``--tail``)."""

from __future__ import annotations

import sys

import typer

from apimachinery.client import resource_path
from apimachinery.printers import format_label_selector
from apimachinery.resources import resolve

from ..kube import CLIError, Kube, Obj, err, kube, meta, parse_resource_args

EXAMPLES = """
Examples:

  minik logs web-0                     # the pod's only (or default) container
  minik logs web-0 -c sidecar          # one container
  minik logs -f deploy/web --tail=20   # follow the first pod of a deployment
  minik logs web-0 --previous          # the previous, crashed instance
"""

DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"


def pick_pod(k: Kube, target: str) -> Obj:
    pods = resolve("pods")
    assert pods is not None
    if "/" not in target:
        return k.client.get(pods, target, k.namespace)
    ((info, names),) = parse_resource_args([target])
    if info.kind == "Pod":
        return k.client.get(pods, names[0], k.namespace)
    owner = k.client.get(info, names[0], k.namespace)
    sel = format_label_selector((owner.get("spec") or {}).get("selector"))
    items = (
        k.client.list(pods, k.namespace, label_selector=None if sel == "<none>" else sel).get("items") or []
    )
    if not items:
        raise CLIError(f"no pods found for {target}")
    return sorted(items, key=lambda p: str(meta(p).get("creationTimestamp") or ""))[0]


def default_container(pod: Obj, quiet: bool = False) -> str:
    names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    if not names:
        raise CLIError(f'pod "{meta(pod).get("name")}" has no containers')
    wanted = (meta(pod).get("annotations") or {}).get(DEFAULT_CONTAINER)
    chosen = wanted if wanted in names else names[0]
    if len(names) > 1 and not quiet:
        err(f'Defaulted container "{chosen}" out of: {", ".join(str(n) for n in names)}')
    return str(chosen)


def log_params(
    container: str, follow: bool, previous: bool, tail: int, timestamps: bool, since: int
) -> dict[str, str]:
    params = {"container": container}
    if follow:
        params["follow"] = "true"
    if previous:
        params["previous"] = "true"
    if tail >= 0:
        params["tailLines"] = str(tail)
    if timestamps:
        params["timestamps"] = "true"
    if since > 0:
        params["sinceSeconds"] = str(since)
    return params


def logs(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="POD or TYPE/NAME"),
    container_arg: str = typer.Argument(None, metavar="[CONTAINER]", help="the container (same as -c)"),
    container: str = typer.Option(None, "-c", "--container", help="the container to print"),
    follow: bool = typer.Option(False, "-f", "--follow", help="stream the log as it grows"),
    previous: bool = typer.Option(False, "-p", "--previous", help="the previous instance of the container"),
    tail: int = typer.Option(-1, "--tail", help="only the last N lines (-1: all)"),
    timestamps: bool = typer.Option(False, "--timestamps", help="prefix each line with its time"),
    since: int = typer.Option(0, "--since-seconds", help="only lines newer than this many seconds"),
) -> None:
    """Print the logs of a container in a pod."""
    k = kube(ctx)
    pod = pick_pod(k, target)
    name = container or container_arg or default_container(pod)
    pods = resolve("pods")
    assert pods is not None
    path = resource_path(pods, meta(pod).get("namespace") or k.namespace, str(meta(pod)["name"]), "log")
    params = log_params(name, follow, previous, tail, timestamps, since)
    out = sys.stdout.buffer
    for chunk in k.client.stream_bytes(path, params):
        out.write(chunk)
        out.flush()
