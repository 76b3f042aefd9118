"""The ReplicaSet controller: keep ``spec.replicas`` pods from the template.

``reconcile(namespace/name)``:

1. claim the active pods of the namespace (adopt orphans matching the selector, release owned pods
   that stopped matching);
2. if every creation and deletion asked for earlier has been observed (expectations), create the
   missing pods in slow-start batches (1, 2, 4, ...) or delete the least valuable surplus pods;
3. write ``status`` through ``/status``.
"""

from __future__ import annotations

import logging
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.informer import split_key

from .base import REPLICA_SETS, OwnerController
from .podcontrol import pod_from_template
from .util import (
    CONTROLLER_UID_INDEX,
    deep_copy,
    filter_active_pods,
    get_condition,
    is_deleting,
    is_pod_available,
    is_pod_ready,
    labels_of,
    meta,
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


# -- pure decisions ---------------------------------------------------------------------------------


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


# -- the controller ---------------------------------------------------------------------------------


class ReplicaSetController(OwnerController):
    name = "replicaset-controller"
    owner_info = REPLICA_SETS

    # -- reconcile ------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        rs = self.owner_informer.store.get(key)
        if rs is None:
            log.debug("%s: gone", key)
            self.expectations.delete(key)
            return
        spec = rs.get("spec") or {}
        need_sync = self.expectations.satisfied(key) and not is_deleting(rs)
        candidates = filter_active_pods(self.owned_informer.store.by_index("namespace", namespace or ""))
        pods = await self.claim(rs, candidates)
        manage_error: Exception | None = None
        if need_sync:
            try:
                await self.manage_replicas(key, rs, pods)
            except errors.StatusError as exc:
                manage_error = exc
        now = self.ctx.clock()
        status = calculate_status(rs, pods, manage_error, now)
        await self.write_status(REPLICA_SETS, rs, status)
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
        diff = len(pods) - int(spec.get("replicas", 1))
        error: errors.StatusError | None = None
        if diff < 0:
            count = min(-diff, BURST_REPLICAS)
            log.info("%s: too few replicas, need %d more", key, count)
            controller = new_controller_ref(rs, REPLICA_SETS.api_version, REPLICA_SETS.kind)
            bodies = [pod_from_template(rs, spec.get("template") or {}, controller) for _ in range(count)]
            error = await self.create_owned(key, rs, bodies)
        elif diff > 0:
            related = self.owned_informer.store.by_index(CONTROLLER_UID_INDEX, uid_of(rs))
            victims = pods_to_delete(pods, related, min(diff, BURST_REPLICAS))
            log.info("%s: too many replicas, deleting %d", key, len(victims))
            error = await self.delete_owned(key, rs, victims)
        if error is not None:
            raise error
