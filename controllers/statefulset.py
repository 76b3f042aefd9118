"""The StatefulSet controller: pods with stable names, hostnames and volumes, created in order.

``reconcile(namespace/name)``, after Kubernetes' ``defaultStatefulSetControl``:

* pods are ``<name>-<ordinal>`` for ordinals ``start .. start+replicas-1`` (``spec.ordinals.start``,
  default 0), with ``hostname`` = pod name and ``subdomain`` = ``serviceName``, and the labels
  ``statefulset.kubernetes.io/pod-name``, ``apps.kubernetes.io/pod-index`` and
  ``controller-revision-hash``;
* each ``volumeClaimTemplates`` entry becomes a PVC ``<template>-<name>-<ordinal>`` created before the
  pod and mounted through a ``persistentVolumeClaim`` volume; PVCs are kept when pods go away
  (``persistentVolumeClaimRetentionPolicy`` Retain);
* ``OrderedReady``: create ordinals one at a time, each once the previous ones are Running and
  Ready; scale down from the highest ordinal, one at a time, while all others are healthy.
  ``Parallel``: create and delete all at once;
* revisions: ``updateRevision`` = ``<name>-<hash of the template>``; ``RollingUpdate`` deletes, from
  the highest ordinal down to ``partition``, one pod not at the update revision at a time once every
  pod is Running and Ready (it comes back at the update revision); ``OnDelete`` only replaces pods
  that someone else deleted. ``currentRevision`` becomes ``updateRevision`` once every replica is
  updated and ready;
* history: each distinct template is a ControllerRevision ``<name>-<hash>`` (``history.py``), kept
  on the controller's history queue; the revisions the pods and the status name are never trimmed;
* pod names are deterministic, so no expectations are needed: a create that races a stale cache
  gets AlreadyExists and waits for the next event.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.events import NORMAL, WARNING
from apimachinery.informer import object_key, split_key
from apimachinery.resources import kind_info

from .base import PODS, ControllerContext, OwnerController
from .deploymentutil import compute_hash
from .history import HistoryKeeper
from .podcontrol import pod_from_template
from .util import (
    deep_copy,
    is_deleting,
    is_pod_available,
    is_pod_ready,
    labels_of,
    meta,
    name_of,
    namespace_of,
    new_controller_ref,
    pod_phase,
)

log = logging.getLogger(__name__)

STATEFUL_SETS = kind_info("apps/v1", "StatefulSet")
PVCS = kind_info("v1", "PersistentVolumeClaim")

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


# -- pure decisions ---------------------------------------------------------------------------------


def revision_hash(sts: Obj) -> str:
    spec = sts.get("spec") or {}
    # as Kubernetes' StatefulSet controller does, an unset collisionCount counts as 0: the status
    # written after the first sync sets it to 0, and the revision must not change because of that
    collision = int((sts.get("status") or {}).get("collisionCount") or 0)
    return compute_hash(spec.get("template") or {}, collision)


def update_revision(sts: Obj) -> str:
    """The name of the ControllerRevision of the current template, which its pods carry."""
    return f"{name_of(sts)}-{revision_hash(sts)}"


def live_revisions(sts: Obj, pods: list[Obj]) -> set[str]:
    """The revisions still in use: the status's current and update revisions and the pods'."""
    status = sts.get("status") or {}
    names = {
        update_revision(sts),
        str(status.get("currentRevision") or ""),
        str(status.get("updateRevision") or ""),
    }
    names.update(labels_of(p).get(REVISION_LABEL) or "" for p in pods)
    names.discard("")
    return names


def ordinal_of(sts_name: str, pod: Obj) -> int | None:
    m = re.fullmatch(re.escape(sts_name) + r"-(\d+)", name_of(pod))
    return int(m.group(1)) if m else None


def start_ordinal(sts: Obj) -> int:
    return int(((sts.get("spec") or {}).get("ordinals") or {}).get("start") or 0)


def is_running_and_ready(pod: Obj) -> bool:
    return pod_phase(pod) == "Running" and is_pod_ready(pod)


def is_healthy(pod: Obj) -> bool:
    return is_running_and_ready(pod) and not is_deleting(pod)


def is_failed(pod: Obj) -> bool:
    return pod_phase(pod) in ("Failed", "Succeeded") and not is_deleting(pod)


def claim_name(template: Obj, sts: Obj, ordinal: int) -> str:
    return f"{name_of(template)}-{name_of(sts)}-{ordinal}"


def new_pvc(template: Obj, sts: Obj, ordinal: int) -> Obj:
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels.update((((sts.get("spec") or {}).get("selector") or {}).get("matchLabels")) or {})
    body: Obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": claim_name(template, sts, ordinal),
            "namespace": namespace_of(sts),
            "labels": labels,
        },
        "spec": deep_copy(template.get("spec") or {}),
    }
    if tmeta.get("annotations"):
        body["metadata"]["annotations"] = dict(tmeta["annotations"])
    return body


def new_pod(sts: Obj, ordinal: int, revision: str) -> Obj:
    """The pod for one ordinal (newVersionedStatefulSetPod)."""
    spec = sts.get("spec") or {}
    pod_name = f"{name_of(sts)}-{ordinal}"
    pod = pod_from_template(
        sts, spec.get("template") or {}, new_controller_ref(sts, "apps/v1", "StatefulSet"), name=pod_name
    )
    labels = pod["metadata"]["labels"]
    labels[POD_NAME_LABEL] = pod_name
    labels[POD_INDEX_LABEL] = str(ordinal)
    labels[REVISION_LABEL] = revision
    pspec = pod["spec"]
    pspec["hostname"] = pod_name
    if spec.get("serviceName"):
        pspec["subdomain"] = spec["serviceName"]
    volumes = [v for v in pspec.get("volumes") or []]
    templates = spec.get("volumeClaimTemplates") or []
    names = {name_of(t) for t in templates}
    volumes = [v for v in volumes if v.get("name") not in names]
    for t in templates:
        volumes.append(
            {"name": name_of(t), "persistentVolumeClaim": {"claimName": claim_name(t, sts, ordinal)}}
        )
    if volumes:
        pspec["volumes"] = volumes
    return pod


class StsPlan:
    def __init__(self) -> None:
        self.create: list[int] = []
        self.delete: list[Obj] = []


def plan_statefulset(sts: Obj, pods: list[Obj], revision: str) -> StsPlan:
    """Which ordinals to create and which pods to delete now (one pass of UpdateStatefulSet)."""
    spec = sts.get("spec") or {}
    replicas = int(spec["replicas"]) if spec.get("replicas") is not None else 1
    start = start_ordinal(sts)
    monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
    plan = StsPlan()
    slots: dict[int, Obj] = {}
    condemned: list[Obj] = []
    for pod in pods:
        ordinal = ordinal_of(name_of(sts), pod)
        if ordinal is not None and start <= ordinal < start + replicas:
            slots[ordinal] = pod
        else:
            condemned.append(pod)
    condemned.sort(key=lambda p: ordinal_of(name_of(sts), p) or -1, reverse=True)

    # replicas: create missing, replace failed, in ordinal order
    for ordinal in range(start, start + replicas):
        slot = slots.get(ordinal)
        if slot is None:
            plan.create.append(ordinal)
            if monotonic:
                return plan
            continue
        if is_failed(slot):
            plan.delete.append(slot)
            if monotonic:
                return plan
            continue
        if monotonic and not is_healthy(slot):
            return plan  # wait for this one before the next

    # scale down: highest ordinal first
    if condemned:
        unhealthy_replicas = [p for p in slots.values() if not is_healthy(p)]
        for pod in condemned:
            if is_deleting(pod):
                if monotonic:
                    return plan
                continue
            if monotonic and unhealthy_replicas:
                return plan
            plan.delete.append(pod)
            if monotonic:
                return plan
        return plan

    # rolling update, highest ordinal first, down to the partition
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return plan
    partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
    if any(not is_healthy(p) for p in slots.values()):
        return plan
    for ordinal in range(start + replicas - 1, start + partition - 1, -1):
        current = slots.get(ordinal)
        if current is not None and labels_of(current).get(REVISION_LABEL) != revision:
            plan.delete.append(current)
            return plan
    return plan


def compute_status(sts: Obj, pods: list[Obj], revision: str, now: float) -> dict[str, Any]:
    spec = sts.get("spec") or {}
    status = deep_copy(sts.get("status") or {})
    current = status.get("currentRevision") or revision
    min_ready = int(spec.get("minReadySeconds") or 0)
    live = [p for p in pods if not is_deleting(p)]
    status["observedGeneration"] = meta(sts).get("generation", 1)
    status["replicas"] = len(live)
    status["readyReplicas"] = sum(1 for p in live if is_pod_ready(p))
    status["availableReplicas"] = sum(1 for p in live if is_pod_available(p, min_ready, now))
    status["updatedReplicas"] = sum(1 for p in live if labels_of(p).get(REVISION_LABEL) == revision)
    status["currentReplicas"] = sum(1 for p in live if labels_of(p).get(REVISION_LABEL) == current)
    status["updateRevision"] = revision
    status["currentRevision"] = current
    status.setdefault("collisionCount", 0)
    replicas = int(spec["replicas"]) if spec.get("replicas") is not None else 1
    if (
        status["updatedReplicas"] == replicas
        and status["readyReplicas"] == replicas
        and status["replicas"] == replicas
    ):
        status["currentRevision"] = revision
        status["currentReplicas"] = status["updatedReplicas"]
    return status


# -- the controller ---------------------------------------------------------------------------------


class StatefulSetController(OwnerController):
    name = "statefulset-controller"
    owner_info = STATEFUL_SETS

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.pvc_informer = self.informer(PVCS)
        self.history = HistoryKeeper(self, revision_hash, live_revisions)

    def enqueue(self, obj: Obj | str) -> None:
        super().enqueue(obj)
        self.history.queue.add(obj if isinstance(obj, str) else object_key(obj))

    async def background(self) -> None:
        await self.history.run(self.ctx.options.workers)

    async def reconcile(self, key: str) -> None:
        namespace, _ = split_key(key)
        sts = self.owner_informer.store.get(key)
        if sts is None:
            return
        pods = await self.claim(sts, self.owned_informer.store.by_index("namespace", namespace or ""))
        revision = update_revision(sts)
        first_error: errors.StatusError | None = None
        if not is_deleting(sts):
            plan = plan_statefulset(sts, pods, revision)
            for ordinal in plan.create:
                try:
                    await self._create(sts, ordinal, revision)
                except errors.StatusError as exc:
                    first_error = first_error or exc
            for pod in plan.delete:
                try:
                    await self.client.delete(
                        PODS, name_of(pod), namespace, preconditions={"uid": str(meta(pod).get("uid"))}
                    )
                    self.recorder.event(
                        sts,
                        NORMAL,
                        "SuccessfulDelete",
                        f"delete Pod {name_of(pod)} in StatefulSet {name_of(sts)} successful",
                    )
                    log.info("%s: deleted pod %s", key, name_of(pod))
                except (errors.NotFound, errors.Conflict):
                    pass
                except errors.StatusError as exc:
                    self.recorder.event(
                        sts,
                        WARNING,
                        "FailedDelete",
                        f"delete Pod {name_of(pod)} in StatefulSet {name_of(sts)} failed error: {exc}",
                    )
                    first_error = first_error or exc
        status = compute_status(sts, pods, revision, self.ctx.clock())
        await self.write_status(STATEFUL_SETS, sts, status)
        if first_error is not None:
            raise first_error
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready and status["availableReplicas"] < status["readyReplicas"]:
            self.queue.add_after(key, float(min_ready))

    async def _create(self, sts: Obj, ordinal: int, revision: str) -> None:
        namespace = namespace_of(sts)
        pod = new_pod(sts, ordinal, revision)
        for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or []:
            pvc_name = claim_name(template, sts, ordinal)
            if f"{namespace}/{pvc_name}" in self.pvc_informer.store:
                continue
            try:
                await self.client.create(PVCS, new_pvc(template, sts, ordinal), namespace)
                self.recorder.event(
                    sts,
                    NORMAL,
                    "SuccessfulCreate",
                    f"create Claim {pvc_name} Pod {name_of(pod)} in StatefulSet {name_of(sts)} success",
                )
            except errors.AlreadyExists:
                pass
            except errors.StatusError as exc:
                self.recorder.event(
                    sts,
                    WARNING,
                    "FailedCreate",
                    f"create Claim {pvc_name} for Pod {name_of(pod)} in StatefulSet {name_of(sts)} failed error: {exc}",
                )
                raise
        try:
            await self.client.create(PODS, pod, namespace)
        except errors.AlreadyExists:
            return  # our cache is behind; the pod's event brings us back
        except errors.StatusError as exc:
            self.recorder.event(
                sts,
                WARNING,
                "FailedCreate",
                f"create Pod {name_of(pod)} in StatefulSet {name_of(sts)} failed error: {exc}",
            )
            raise
        log.info("%s/%s: created pod %s", namespace, name_of(sts), name_of(pod))
        self.recorder.event(
            sts,
            NORMAL,
            "SuccessfulCreate",
            f"create Pod {name_of(pod)} in StatefulSet {name_of(sts)} successful",
        )
