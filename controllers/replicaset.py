"""The ReplicaSet controller: keep ``spec.replicas`` pods from the template.

``reconcile(namespace/name)``:

1. claim the active pods of the namespace (adopt orphans matching the selector, release owned pods
   that stopped matching);
2. if every creation and deletion asked for earlier has been observed (expectations), create the
   missing pods in slow-start batches (1, 2, 4, ...) or delete the least valuable surplus pods;
3. write ``status`` through ``/status``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.informer import split_key
from apimachinery.selectors import selector_from_dict

from .base import PODS, REPLICA_SETS, Controller, ControllerContext
from .events import NORMAL, WARNING
from .refmanager import claim, recheck_owner
from .util import (
    CONTROLLER_UID_INDEX,
    Expectations,
    controller_ref,
    controller_uid_index,
    deep_copy,
    ensure_index,
    filter_active_pods,
    get_condition,
    is_deleting,
    is_pod_available,
    is_pod_ready,
    labels_of,
    meta,
    name_of,
    new_condition,
    new_controller_ref,
    parse_time,
    pod_condition,
    pod_node_name,
    pod_phase,
    remove_condition,
    set_condition,
    uid_of,
)

log = logging.getLogger(__name__)

BURST_REPLICAS = 500
SLOW_START_INITIAL_BATCH = 1


# -- pure decisions ---------------------------------------------------------------------------------


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


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def _restarts(pod: Obj) -> int:
    return sum(
        int(cs.get("restartCount") or 0) for cs in (pod.get("status") or {}).get("containerStatuses") or []
    )


def deletion_cost_key(pod: Obj, colocated: dict[str, int]) -> tuple[Any, ...]:
    """Sort key: smaller = deleted first (controller.ActivePodsWithRanks)."""
    node = pod_node_name(pod)
    ready = is_pod_ready(pod)
    ready_since = parse_time((pod_condition(pod, "Ready") or {}).get("lastTransitionTime")) or 0.0
    created = parse_time(meta(pod).get("creationTimestamp")) or 0.0
    return (
        1 if node else 0,  # unscheduled first
        _PHASE_RANK.get(pod_phase(pod), 0),  # pending < unknown < running
        1 if ready else 0,  # not ready first
        -colocated.get(node, 0) if node else 0,  # pods doubled up on a node first
        -ready_since if ready else 0.0,  # ready for less time first
        -_restarts(pod),  # more restarts first
        -created,  # newer first
    )


def pods_to_delete(pods: list[Obj], related: list[Obj], count: int) -> list[Obj]:
    """The ``count`` least valuable pods; ``related`` pods (of this owner's family) rank by node."""
    colocated: dict[str, int] = {}
    for p in related:
        node = pod_node_name(p)
        if node and not is_deleting(p):
            colocated[node] = colocated.get(node, 0) + 1
    return sorted(pods, key=lambda p: deletion_cost_key(p, colocated))[:count]


def fully_labeled(pod: Obj, template_labels: dict[str, str]) -> bool:
    labels = labels_of(pod)
    return all(labels.get(k) == v for k, v in template_labels.items())


def calculate_status(rs: Obj, pods: list[Obj], manage_error: Exception | None, now: float) -> dict[str, Any]:
    """The new ``status`` of a ReplicaSet from its active pods (calculateStatus)."""
    spec = rs.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    status = deep_copy(rs.get("status") or {})
    status["replicas"] = len(pods)
    status["fullyLabeledReplicas"] = sum(1 for p in pods if fully_labeled(p, template_labels))
    status["readyReplicas"] = sum(1 for p in pods if is_pod_ready(p))
    status["availableReplicas"] = sum(1 for p in pods if is_pod_available(p, min_ready, now))
    status["observedGeneration"] = meta(rs).get("generation", 1)
    desired = int(spec.get("replicas", 1))
    failure = get_condition(status, "ReplicaFailure")
    if manage_error is not None and failure is None:
        reason = "FailedCreate" if len(pods) < desired else "FailedDelete"
        set_condition(status, new_condition("ReplicaFailure", "True", reason, str(manage_error), now))
    elif manage_error is None and failure is not None:
        remove_condition(status, "ReplicaFailure")
    return status


def pod_from_template(rs: Obj, template: dict[str, Any], controller: dict[str, Any]) -> Obj:
    tmeta = template.get("metadata") or {}
    pod_meta: dict[str, Any] = {
        "generateName": f"{name_of(rs)}-",
        "namespace": meta(rs).get("namespace"),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [controller],
    }
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


# -- the controller ---------------------------------------------------------------------------------


class ReplicaSetController(Controller):
    name = "replicaset-controller"
    owner_info = REPLICA_SETS
    owner_api_version = "apps/v1"
    owner_kind = "ReplicaSet"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.expectations = Expectations(ctx.monotonic)
        self.rs_informer = self.informer(self.owner_info)
        self.pod_informer = self.informer(PODS)
        ensure_index(self.pod_informer.store, CONTROLLER_UID_INDEX, controller_uid_index)
        self.rs_informer.add_event_handler(self.enqueue, self._rs_updated, self._rs_deleted)
        self.pod_informer.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    # -- handlers (only enqueue) ----------------------------------------------------------------

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        self.enqueue(new)

    def _rs_deleted(self, rs: Obj) -> None:
        key = f"{meta(rs).get('namespace')}/{name_of(rs)}"
        self.expectations.delete(key)
        self.enqueue(key)

    def _owner_key(self, pod: Obj) -> str | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != self.owner_kind:
            return None
        key = f"{meta(pod).get('namespace')}/{ref.get('name')}"
        owner = self.rs_informer.store.get(key)
        if owner is None or uid_of(owner) != ref.get("uid"):
            return None
        return key

    def _owners_selecting(self, pod: Obj) -> list[str]:
        out = []
        for rs in self.rs_informer.store.by_index("namespace", str(meta(pod).get("namespace") or "")):
            if selector_from_dict((rs.get("spec") or {}).get("selector")).matches(labels_of(pod)):
                out.append(f"{meta(rs).get('namespace')}/{name_of(rs)}")
        return out

    def _pod_added(self, pod: Obj) -> None:
        if is_deleting(pod):
            self._pod_deleted(pod)
            return
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            self.enqueue(key)
        elif controller_ref(pod) is None:
            for k in self._owners_selecting(pod):
                self.enqueue(k)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion") and old is not new:
            return
        if is_deleting(new) and not is_deleting(old):
            self._pod_deleted(new)
            return
        key = self._owner_key(new)
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref is not None and (new_ref is None or old_ref.get("uid") != new_ref.get("uid")):
            old_key = f"{meta(old).get('namespace')}/{old_ref.get('name')}"
            self.enqueue(old_key)
        if key is not None:
            self.enqueue(key)
            spec = (self.rs_informer.store.get(key) or {}).get("spec") or {}
            min_ready = int(spec.get("minReadySeconds") or 0)
            if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(new):
                self.queue.add_after(key, float(min_ready))
        elif new_ref is None and (labels_of(old) != labels_of(new) or old_ref is not None):
            for k in self._owners_selecting(new):
                self.enqueue(k)

    def _pod_deleted(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != self.owner_kind:
            return
        key = f"{meta(pod).get('namespace')}/{ref.get('name')}"
        self.expectations.deletion_observed(key, uid_of(pod))
        self.enqueue(key)

    # -- reconcile ------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        rs = self.rs_informer.store.get(key)
        if rs is None:
            log.debug("%s: gone", key)
            self.expectations.delete(key)
            return
        spec = rs.get("spec") or {}
        selector = selector_from_dict(spec.get("selector"))
        need_sync = self.expectations.satisfied(key) and not is_deleting(rs)
        candidates = filter_active_pods(self.pod_informer.store.by_index("namespace", namespace or ""))
        owner_ref = new_controller_ref(rs, self.owner_api_version, self.owner_kind)
        pods = await claim(
            self.client,
            PODS,
            rs,
            owner_ref,
            selector,
            candidates,
            recheck_owner(self.client, self.owner_info, rs),
        )
        manage_error: Exception | None = None
        if need_sync:
            try:
                await self.manage_replicas(key, rs, pods)
            except errors.StatusError as exc:
                manage_error = exc
        now = self.ctx.clock()
        status = calculate_status(rs, pods, manage_error, now)
        if status != (rs.get("status") or {}):
            updated = deep_copy(rs)
            updated["status"] = status
            await self.client.update_status(self.owner_info, updated)
        if manage_error is not None:
            raise manage_error
        min_ready = int(spec.get("minReadySeconds") or 0)
        if (
            min_ready > 0
            and status["readyReplicas"] == int(spec.get("replicas", 1))
            and status["availableReplicas"] != status["readyReplicas"]
        ):
            self.queue.add_after(key, float(min_ready))

    async def manage_replicas(self, key: str, rs: Obj, pods: list[Obj]) -> None:
        spec = rs.get("spec") or {}
        desired = int(spec.get("replicas", 1))
        diff = len(pods) - desired
        if diff < 0:
            await self._create(key, rs, min(-diff, BURST_REPLICAS))
        elif diff > 0:
            await self._delete(key, rs, pods, min(diff, BURST_REPLICAS))

    async def _create(self, key: str, rs: Obj, count: int) -> None:
        namespace = str(meta(rs).get("namespace"))
        log.info("%s: too few replicas, need %d more", key, count)
        self.expectations.expect_creations(key, count)
        template = (rs.get("spec") or {}).get("template") or {}
        controller = new_controller_ref(rs, self.owner_api_version, self.owner_kind)
        created = 0
        first_error: errors.StatusError | None = None
        batches = slow_start_batches(count)
        for index, batch in enumerate(batches):
            results = await asyncio.gather(
                *(
                    self.client.create(PODS, pod_from_template(rs, template, controller), namespace)
                    for _ in range(batch)
                ),
                return_exceptions=True,
            )
            failed = 0
            for result in results:
                if isinstance(result, BaseException):
                    if isinstance(result, asyncio.CancelledError):
                        raise result
                    failed += 1
                    if first_error is None:
                        first_error = (
                            result
                            if isinstance(result, errors.StatusError)
                            else errors.InternalError(str(result))
                        )
                    self.recorder.event(rs, WARNING, "FailedCreate", f"Error creating: {result}")
                else:
                    created += 1
                    self.recorder.event(rs, NORMAL, "SuccessfulCreate", f"Created pod: {name_of(result)}")
            if failed:
                # the failed creations and every batch not attempted will never be observed
                skipped = failed + sum(batches[index + 1 :])
                self.expectations.lower_creations(key, skipped)
                break
        if first_error is not None:
            raise first_error

    async def _delete(self, key: str, rs: Obj, pods: list[Obj], count: int) -> None:
        namespace = str(meta(rs).get("namespace"))
        related = self.pod_informer.store.by_index(CONTROLLER_UID_INDEX, uid_of(rs))
        victims = pods_to_delete(pods, related, count)
        log.info("%s: too many replicas, deleting %d", key, len(victims))
        self.expectations.expect_deletions(key, [uid_of(p) for p in victims])
        results = await asyncio.gather(
            *(self.client.delete(PODS, name_of(p), namespace) for p in victims), return_exceptions=True
        )
        first_error: errors.StatusError | None = None
        for pod, result in zip(victims, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                self.expectations.deletion_observed(key, uid_of(pod))
                if isinstance(result, errors.NotFound):
                    continue
                if first_error is None:
                    first_error = (
                        result
                        if isinstance(result, errors.StatusError)
                        else errors.InternalError(str(result))
                    )
                self.recorder.event(rs, WARNING, "FailedDelete", f"Error deleting: {result}")
            else:
                self.recorder.event(rs, NORMAL, "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")
        if first_error is not None:
            raise first_error
