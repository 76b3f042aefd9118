"""The ``pods/eviction`` subresource: a delete that honours PodDisruptionBudgets.

What kube-apiserver's ``EvictionREST.Create`` does (pkg/registry/core/pod/storage/eviction.go):

1. A pod that already caused its disruption (``Succeeded``/``Failed``), one that was never counted
   (``Pending``) and one being deleted are deleted at once, without looking at a budget; a
   non-terminal one with a ``resourceVersion`` precondition so that it cannot have turned ready
   meanwhile.
2. Otherwise the budgets of the pod's namespace whose selector matches it: none -> delete; more
   than one -> a ``500`` Status (the subresource does not support that); one -> check it:

   * an unready pod is deleted without spending the budget when the budget says
     ``unhealthyPodEvictionPolicy: AlwaysAllow``, or (``IfHealthyBudget``, the default) when the
     application is healthy anyway (``currentHealthy >= desiredHealthy > 0``);
   * a budget whose status is behind its generation -> ``429`` ("still being processed");
   * ``disruptionsAllowed == 0`` -> ``429 TooManyRequests`` with a ``DisruptionBudget`` cause;
   * else ``disruptionsAllowed`` is decremented and the pod recorded in ``status.disruptedPods``
     with one optimistic-concurrency write of the budget's status (a conflict re-reads it).

3. The pod gets the ``DisruptionTarget`` condition and is deleted with the Eviction's
   ``deleteOptions`` (grace period, preconditions, dry run).

The answer is a ``Status`` (``Success``, code 201), as Kubernetes returns.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import TYPE_CHECKING, Any

from apimachinery import disruption, errors
from apimachinery.resources import kind_info
from apimachinery.selectors import selector_from_dict
from apimachinery.timefmt import rfc3339

if TYPE_CHECKING:
    from .registry import Storage

log = logging.getLogger(__name__)

PODS = kind_info("v1", "Pod")
PDBS = kind_info("policy/v1", "PodDisruptionBudget")
API_VERSIONS = (None, "", "policy/v1", "policy/v1beta1")
# kube-apiserver's EvictionsRetry: 20 steps of 500 ms
RETRIES = 20
RETRY_DELAY = 0.5
MAX_DISRUPTED_PODS = 2000
TOO_MANY_REQUESTS = "Cannot evict pod as it would violate the pod's disruption budget."
MORE_THAN_ONE = (
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
)

Obj = dict[str, Any]


def _status(code: int, message: str = "", failure: bool = False) -> Obj:
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if failure else "Success",
    }
    if message:
        body["message"] = message
    body["code"] = code
    return body


def too_many_requests(cause: str) -> errors.TooManyRequests:
    return errors.TooManyRequests(
        TOO_MANY_REQUESTS, causes=[{"reason": disruption.DISRUPTION_BUDGET_CAUSE, "message": cause}]
    )


def still_processing(name: str) -> errors.TooManyRequests:
    return too_many_requests(f"The disruption budget {name} is still being processed by the server.")


def check_eviction(body: Any, namespace: str, name: str, dry_run_query: bool) -> Obj:
    """The Eviction's ``deleteOptions`` (a copy) after checking the body against the URL."""
    if not isinstance(body, dict):
        raise errors.BadRequest("the body of the request must be a JSON or YAML object")
    if body.get("kind") not in (None, "", "Eviction"):
        raise errors.BadRequest(
            f"the kind in the data ({body.get('kind')}) does not match the expected kind (Eviction)"
        )
    if body.get("apiVersion") not in API_VERSIONS:
        raise errors.BadRequest(
            f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version (policy/v1)"
        )
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict):
        raise errors.BadRequest("metadata: must be an object")
    if meta.get("name") not in (None, "", name):
        raise errors.BadRequest("name in URL does not match name in Eviction object")
    if meta.get("namespace") not in (None, "", namespace):
        raise errors.BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    opts = body.get("deleteOptions") or {}
    if not isinstance(opts, dict):
        raise errors.BadRequest("deleteOptions: must be an object")
    opts = copy.deepcopy(opts)
    dry = opts.get("dryRun") or []
    if not isinstance(dry, list) or any(v != "All" for v in dry):
        raise errors.BadRequest(f'dryRun: Unsupported value: "{dry}": supported values: "All"')
    if dry_run_query and not dry:
        opts["dryRun"] = ["All"]
    grace = opts.get("gracePeriodSeconds")
    if grace is not None:
        if isinstance(grace, bool) or not isinstance(grace, int):
            raise errors.BadRequest("deleteOptions.gracePeriodSeconds must be an integer")
    pre = opts.get("preconditions")
    if pre is not None and not isinstance(pre, dict):
        raise errors.BadRequest("deleteOptions.preconditions: must be an object")
    return opts


def can_ignore_pdb(pod: Obj) -> bool:
    """Terminal, not yet running (never counted as healthy) or already being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(
        (pod.get("metadata") or {}).get("deletionTimestamp")
    )


def should_enforce_resource_version(pod: Obj) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not (pod.get("metadata") or {}).get("deletionTimestamp")


def is_ready(pod: Obj) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def matching_budgets(pod: Obj, budgets: list[Obj]) -> list[Obj]:
    """The budgets whose selector matches the pod's labels (an empty selector matches every pod,
    a missing one none; an unparsable one is skipped, as Kubernetes does)."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    out = []
    for pdb in budgets:
        try:
            selector = selector_from_dict((pdb.get("spec") or {}).get("selector"))
        except errors.StatusError:
            continue
        if selector.matches(labels):
            out.append(pdb)
    return out


def decrement(pdb: Obj, pod_name: str, now: float) -> Obj:
    """``checkAndDecrement`` on a copy of ``pdb``: the budget to write back, or a StatusError."""
    name = pdb["metadata"]["name"]
    status = pdb.get("status") or {}
    generation = int(pdb["metadata"].get("generation") or 0)
    if int(status.get("observedGeneration") or 0) < generation:
        raise still_processing(name)
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise errors.Forbidden(
            f'poddisruptionbudgets.policy "{name}" is forbidden: pdb disruptions allowed is negative',
            name=name,
            group="policy",
            kind="poddisruptionbudgets",
        )
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
        raise errors.Forbidden(
            f'poddisruptionbudgets.policy "{name}" is forbidden: DisruptedPods map too big - too many '
            "evictions not confirmed by PDB controller",
            name=name,
            group="policy",
            kind="poddisruptionbudgets",
        )
    if allowed == 0:
        raise too_many_requests(disruption.budget_message(name, status))
    new = copy.deepcopy(pdb)
    new_status = new.setdefault("status", {})
    new_status["disruptionsAllowed"] = allowed - 1
    if allowed - 1 == 0:
        disruption.set_disruption_allowed_condition(new_status, now)
    disrupted = dict(new_status.get("disruptedPods") or {})
    disrupted[pod_name] = rfc3339(now)
    new_status["disruptedPods"] = disrupted
    return new


def _with_rv_precondition(opts: Obj, rv: str) -> Obj:
    out = copy.deepcopy(opts)
    pre = dict(out.get("preconditions") or {})
    pre["resourceVersion"] = rv
    out["preconditions"] = pre
    return out


def _rv_unset(opts: Obj) -> bool:
    return not (opts.get("preconditions") or {}).get("resourceVersion")


class Evictor:
    def __init__(self, storage: Storage, clock: Any = None) -> None:
        self.storage = storage
        self.pods = storage.registry(PODS)
        self.pdbs = storage.registry(PDBS)
        self.clock = clock or time.time

    async def evict(
        self, namespace: str, name: str, body: Any, dry_run_query: bool = False
    ) -> tuple[int, Obj]:
        """(HTTP code, Status body) of an eviction; failures raise a StatusError."""
        opts = check_eviction(body, namespace, name, dry_run_query)
        dry = bool(opts.get("dryRun"))
        pod: Obj = {}
        for attempt in range(RETRIES):
            pod = await self.pods.get(namespace, name)
            if not can_ignore_pdb(pod):
                break
            delete_opts = opts
            if should_enforce_resource_version(pod) and _rv_unset(opts):
                delete_opts = _with_rv_precondition(opts, pod["metadata"]["resourceVersion"])
            try:
                await self.delete_pod(namespace, name, delete_opts, dry)
            except errors.Conflict:
                if not _rv_unset(opts) or attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(RETRY_DELAY)
                continue
            return 201, _status(201)

        budgets, _, _ = await self.pdbs.list(namespace)
        matching = matching_budgets(pod, budgets)
        if len(matching) > 1:
            return 500, _status(500, MORE_THAN_ONE, failure=True)
        update_delete_options = False
        pdb_name = ""
        if matching:
            pdb = matching[0]
            pdb_name = pdb["metadata"]["name"]
            spec = pdb.get("spec") or {}
            status = pdb.get("status") or {}
            healthy_anyway = False
            if not is_ready(pod):
                if spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
                    healthy_anyway = True
                else:
                    desired = int(status.get("desiredHealthy") or 0)
                    healthy_anyway = int(status.get("currentHealthy") or 0) >= desired > 0
            if healthy_anyway:
                update_delete_options = True
            else:
                await self.spend_budget(namespace, pdb, name, dry)

        delete_opts = opts
        if update_delete_options:
            delete_opts = _with_rv_precondition(opts, pod["metadata"]["resourceVersion"])
        try:
            await self.delete_pod(namespace, name, delete_opts, dry)
        except errors.Conflict:
            if update_delete_options and _rv_unset(opts):
                raise still_processing(pdb_name) from None
            raise
        return 201, _status(201)

    async def spend_budget(self, namespace: str, pdb: Obj, pod_name: str, dry: bool) -> None:
        """Decrement ``disruptionsAllowed`` with a compare-and-swap on the budget's status; a
        conflict re-reads the budget and tries again."""
        name = pdb["metadata"]["name"]
        for _attempt in range(RETRIES):
            new = decrement(pdb, pod_name, self.clock())
            if dry:
                return
            try:
                await self.pdbs.update(namespace, name, new, subresource="status")
                log.info("eviction of %s/%s spent a disruption of budget %s", namespace, pod_name, name)
                return
            except errors.Conflict:
                pdb = await self.pdbs.get(namespace, name)
        raise errors.Timeout(
            f'couldn\'t update PodDisruptionBudget "{name}" due to conflicts', retry_after=10
        )

    async def delete_pod(self, namespace: str, name: str, opts: Obj, dry: bool) -> None:
        """``addConditionAndDeletePod``: the ``DisruptionTarget`` condition (not on a dry run), then
        the delete with ``opts`` (a resourceVersion precondition follows the condition's write)."""
        pre = opts.get("preconditions") or {}
        if not dry:
            now = rfc3339(self.clock())

            def add_condition(current: Obj) -> Obj:
                meta = current["metadata"]
                if pre.get("uid") and pre["uid"] != meta.get("uid"):
                    raise errors.conflict(
                        "pods",
                        name,
                        "",
                        f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta.get('uid')}",
                    )
                if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                    raise errors.conflict(
                        "pods",
                        name,
                        "",
                        f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                        f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
                    )
                status = current.setdefault("status", {})
                conds = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"]
                old = next(
                    (c for c in status.get("conditions") or [] if c.get("type") == "DisruptionTarget"), None
                )
                if (
                    old is not None
                    and old.get("status") == "True"
                    and old.get("reason") == "EvictionByEvictionAPI"
                ):
                    return current
                conds.append(
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "lastProbeTime": None,
                        "lastTransitionTime": now,
                        "reason": "EvictionByEvictionAPI",
                        "message": "Eviction API: evicting",
                    }
                )
                status["conditions"] = conds
                return current

            updated, _ = await self.pods.guaranteed_update(namespace, name, add_condition)
            if pre.get("resourceVersion"):
                opts = _with_rv_precondition(opts, updated["metadata"]["resourceVersion"])
        await self.pods.delete(namespace, name, opts, dry)
