"""Creating and deleting the pods of a workload with the Events Kubernetes' ``PodControl`` records.

Shared by the ReplicaSet, Job, StatefulSet and DaemonSet controllers: every create/delete becomes a
``SuccessfulCreate``/``SuccessfulDelete`` Normal Event (``FailedCreate``/``FailedDelete`` Warning on
error) on the owner, and the caller learns which calls failed so it can lower its expectations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from apimachinery import errors
from apimachinery.client import Client, Obj
from apimachinery.events import NORMAL, WARNING, Recorder
from apimachinery.resources import kind_info

from .util import deep_copy, meta, name_of, namespace_of, uid_of

PODS = kind_info("v1", "Pod")
SLOW_START_INITIAL_BATCH = 1


def slow_start_batches(count: int, initial: int = SLOW_START_INITIAL_BATCH) -> list[int]:
    """Batch sizes for creating ``count`` pods: 1, 2, 4, ... (the last one what is left)."""
    batches: list[int] = []
    size = initial
    remaining = count
    while remaining > 0:
        batch = min(size, remaining)
        batches.append(batch)
        remaining -= batch
        size *= 2
    return batches


def pod_from_template(
    owner: Obj,
    template: dict[str, Any],
    controller: dict[str, Any],
    name: str | None = None,
    generate_name: str | None = None,
) -> Obj:
    """A pod from a workload's template, controlled by ``controller`` (GetPodFromTemplate)."""
    tmeta = template.get("metadata") or {}
    pod_meta: dict[str, Any] = {
        "namespace": namespace_of(owner),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [controller],
    }
    if name:
        pod_meta["name"] = name
    else:
        pod_meta["generateName"] = generate_name or f"{name_of(owner)}-"
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        pod_meta["finalizers"] = list(tmeta["finalizers"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta,
        "spec": deep_copy(template.get("spec") or {}),
    }


def _as_status_error(exc: BaseException) -> errors.StatusError:
    return exc if isinstance(exc, errors.StatusError) else errors.InternalError(str(exc))


async def create_pods(
    client: Client, recorder: Recorder, owner: Obj, bodies: Sequence[Obj]
) -> tuple[list[Obj], list[tuple[Obj, errors.StatusError]]]:
    """Create ``bodies`` concurrently; return (created pods, [(body, error)])."""
    results = await asyncio.gather(
        *(client.create(PODS, body, namespace_of(owner)) for body in bodies), return_exceptions=True
    )
    created: list[Obj] = []
    failed: list[tuple[Obj, errors.StatusError]] = []
    for body, result in zip(bodies, results, strict=True):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, BaseException):
            err = _as_status_error(result)
            failed.append((body, err))
            recorder.event(owner, WARNING, "FailedCreate", f"Error creating: {err}")
        else:
            created.append(result)
            recorder.event(owner, NORMAL, "SuccessfulCreate", f"Created pod: {name_of(result)}")
    return created, failed


async def delete_pods(
    client: Client, recorder: Recorder, owner: Obj, pods: Sequence[Obj]
) -> tuple[set[str], list[tuple[Obj, errors.StatusError]]]:
    """Delete ``pods`` concurrently (uid precondition); return (uids deleted, [(pod, error)]).
    A pod already gone (NotFound, or another pod of that name: Conflict) is neither."""
    results = await asyncio.gather(
        *(
            client.delete(PODS, name_of(p), namespace_of(p), preconditions={"uid": str(meta(p).get("uid"))})
            for p in pods
        ),
        return_exceptions=True,
    )
    deleted: set[str] = set()
    failed: list[tuple[Obj, errors.StatusError]] = []
    for pod, result in zip(pods, results, strict=True):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, errors.NotFound | errors.Conflict):
            continue
        if isinstance(result, BaseException):
            err = _as_status_error(result)
            failed.append((pod, err))
            recorder.event(owner, WARNING, "FailedDelete", f"Error deleting: {err}")
        else:
            deleted.add(uid_of(pod))
            recorder.event(owner, NORMAL, "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")
    return deleted, failed
