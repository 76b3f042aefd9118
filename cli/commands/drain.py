"""``minik cordon``, ``uncordon`` and ``drain``: kubectl's node maintenance commands.

``drain NODE`` cordons the node, lists its pods (``spec.nodeName``), refuses what kubectl refuses
unless told (DaemonSet pods: ``--ignore-daemonsets``; pods with emptyDir volumes:
``--delete-emptydir-data``; pods without a controller: ``--force``; mirror pods are skipped), then
evicts every pod through ``pods/eviction`` at once, each retried every 5 s while its
PodDisruptionBudget answers 429, and waits until each is gone.  ``--timeout`` bounds the whole
drain (0: no limit).  The messages are kubectl's.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any

import typer

from apimachinery import errors

from ..kube import Kube, err, kube, out

EXAMPLES = """
Examples:

  minik cordon node-1
  minik drain node-1 --ignore-daemonsets --delete-emptydir-data --timeout=2m
  minik uncordon node-1
"""

RETRY_AFTER = 5.0
MIRROR = "kubernetes.io/config.mirror"


def parse_duration(text: str) -> float:
    """A Go duration (``90s``, ``2m``, ``1h30m``, ``0``) in seconds."""
    total, number, units = 0.0, "", {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    i = 0
    if text.strip() in ("0", ""):
        return 0.0
    while i < len(text):
        c = text[i]
        if c.isdigit() or c == ".":
            number += c
            i += 1
            continue
        unit = "ms" if text[i : i + 2] == "ms" else c
        if unit not in units or not number:
            raise typer.BadParameter(f'time: invalid duration "{text}"')
        total += float(number) * units[unit]
        number = ""
        i += len(unit)
    if number:
        raise typer.BadParameter(f'time: missing unit in duration "{text}"')
    return total


def go_duration(seconds: float) -> str:
    """``1m0s`` / ``30s`` / ``1h0m0s`` as Go prints a time.Duration."""
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


def _set_unschedulable(k: Kube, node: str, value: bool) -> str:
    current = k.client.get_json(f"/api/v1/nodes/{node}")
    if bool((current.get("spec") or {}).get("unschedulable")) == value:
        return f"node/{node} already {'cordoned' if value else 'uncordoned'}"
    k.client.request(
        "PATCH",
        f"/api/v1/nodes/{node}",
        body={"spec": {"unschedulable": True if value else None}},
        content_type="application/strategic-merge-patch+json",
    )
    return f"node/{node} {'cordoned' if value else 'uncordoned'}"


def cordon(ctx: typer.Context, node: str = typer.Argument(..., help="the node's name")) -> None:
    """Mark a node as unschedulable."""
    out(_set_unschedulable(kube(ctx), node, True))


def uncordon(ctx: typer.Context, node: str = typer.Argument(..., help="the node's name")) -> None:
    """Mark a node as schedulable."""
    out(_set_unschedulable(kube(ctx), node, False))


def _pod_ref(pod: dict[str, Any]) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"


def _controller(pod: dict[str, Any]) -> dict[str, Any] | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def _terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pods_to_evict(
    k: Kube, pods: list[dict[str, Any]], ignore_daemonsets: bool, delete_emptydir_data: bool, force: bool
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """kubectl's pod filters: (pods to evict, warnings, errors)."""
    keep: list[dict[str, Any]] = []
    problems: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = {}
    for pod in pods:
        meta = pod["metadata"]
        if MIRROR in (meta.get("annotations") or {}):
            continue
        ref = _controller(pod)
        if ref is not None and ref.get("kind") == "DaemonSet":
            try:
                k.client.get_json(
                    f"/apis/apps/v1/namespaces/{meta.get('namespace')}/daemonsets/{ref.get('name')}"
                )
            except errors.NotFound:
                if not force:
                    problems.setdefault(f'daemonset.apps "{ref.get("name")}" not found', []).append(
                        _pod_ref(pod)
                    )
                    continue
            if ignore_daemonsets:
                notes.setdefault("ignoring DaemonSet-managed Pods", []).append(_pod_ref(pod))
            else:
                problems.setdefault(
                    "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)", []
                ).append(_pod_ref(pod))
            continue
        if ref is None and not _terminal(pod):
            if force:
                notes.setdefault("deleting Pods that declare no controller", []).append(_pod_ref(pod))
            else:
                problems.setdefault(
                    "cannot delete Pods that declare no controller (use --force to override)", []
                ).append(_pod_ref(pod))
                continue
        local = any("emptyDir" in (v or {}) for v in (pod.get("spec") or {}).get("volumes") or [])
        if local and not _terminal(pod):
            if delete_emptydir_data:
                notes.setdefault("deleting Pods with local storage", []).append(_pod_ref(pod))
            else:
                problems.setdefault(
                    "cannot delete Pods with local storage (use --delete-emptydir-data to override)", []
                ).append(_pod_ref(pod))
                continue
        keep.append(pod)
    warnings = [f"{what}: {', '.join(names)}" for what, names in notes.items()]
    failures = [f"{what}: {', '.join(names)}" for what, names in problems.items()]
    return keep, warnings, failures


class Evictor:
    def __init__(self, k: Kube, grace: int, deadline: float | None, timeout_text: str) -> None:
        self.k = k
        self.grace = grace
        self.deadline = deadline
        self.timeout_text = timeout_text
        self.lock = threading.Lock()

    def say(self, text: str, to_err: bool = False) -> None:
        with self.lock:
            (err if to_err else out)(text)

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def timeout_error(self, pod: dict[str, Any]) -> str:
        meta = pod["metadata"]
        return (
            f'error when evicting pods/"{meta["name"]}" -n "{meta.get("namespace")}": '
            f"global timeout reached: {self.timeout_text}"
        )

    def evict(self, pod: dict[str, Any]) -> str | None:
        """Evict one pod and wait for it to go; an error message, or None."""
        meta = pod["metadata"]
        ns, name = meta.get("namespace"), meta["name"]
        body: dict[str, Any] = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": ns},
        }
        if self.grace >= 0:
            body["deleteOptions"] = {"gracePeriodSeconds": self.grace}
        while True:
            if self.expired():
                return self.timeout_error(pod)
            self.say(f"evicting pod {ns}/{name}")
            try:
                self.k.client.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/eviction", body=body)
                break
            except errors.NotFound:
                return None
            except errors.TooManyRequests as exc:
                self.say(
                    f'error when evicting pods/"{name}" -n "{ns}" (will retry after 5s): {exc.message}',
                    to_err=True,
                )
                self._sleep(RETRY_AFTER)
            except errors.StatusError as exc:
                return f'error when evicting pods/"{name}" -n "{ns}": {exc.message}'
        while True:
            try:
                current = self.k.client.get_json(f"/api/v1/namespaces/{ns}/pods/{name}")
            except errors.NotFound:
                break
            if current["metadata"].get("uid") != meta.get("uid"):
                break
            if self.expired():
                return self.timeout_error(pod)
            self._sleep(1.0)
        self.say(f"pod/{name} evicted")
        return None

    def _sleep(self, seconds: float) -> None:
        if self.deadline is not None:
            seconds = max(0.0, min(seconds, self.deadline - time.monotonic()))
        time.sleep(seconds)


def drain(
    ctx: typer.Context,
    node: str = typer.Argument(..., help="the node's name"),
    ignore_daemonsets: bool = typer.Option(
        False, "--ignore-daemonsets", help="ignore DaemonSet-managed pods"
    ),
    delete_emptydir_data: bool = typer.Option(
        False, "--delete-emptydir-data", help="continue even if there are pods using emptyDir"
    ),
    force: bool = typer.Option(
        False, "--force", help="continue even if there are pods that do not declare a controller"
    ),
    grace_period: int = typer.Option(
        -1, "--grace-period", help="seconds each pod gets to terminate (-1: the pod's)"
    ),
    timeout: str = typer.Option(
        "0s", "--timeout", help="the length of time to wait before giving up, zero means infinite"
    ),
) -> None:
    """Drain a node in preparation for maintenance: cordon it, then evict its pods."""
    k = kube(ctx)
    seconds = parse_duration(timeout)
    out(_set_unschedulable(k, node, True))
    pods = k.client.get_json("/api/v1/pods", {"fieldSelector": f"spec.nodeName={node}"}).get("items") or []
    keep, warnings, failures = pods_to_evict(k, pods, ignore_daemonsets, delete_emptydir_data, force)
    if failures:
        _pending(node, failures)
    for warning in warnings:
        err(f"Warning: {warning}")
    evictor = Evictor(
        k, grace_period, time.monotonic() + seconds if seconds > 0 else None, go_duration(seconds)
    )
    problems: list[str] = []
    if keep:
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(keep), 32)) as pool:
            for result in pool.map(evictor.evict, keep):
                if result:
                    problems.append(result)
    if problems:
        _pending(node, problems)
    out(f"node/{node} drained")


def _pending(node: str, problems: list[str]) -> None:
    text = ", ".join(problems) if len(problems) == 1 else "[" + ", ".join(problems) + "]"
    err(f'error: unable to drain node "{node}" due to error: {text}, continuing command...')
    err("There are pending nodes to be drained:")
    err(f" {node}")
    for p in problems:
        err(p)
    raise typer.Exit(1)
