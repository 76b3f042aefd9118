"""The Deployment controller: ReplicaSets per pod template, rolling updates, Recreate, history.

``reconcile(namespace/name)`` follows Kubernetes' ``syncDeployment``: claim ReplicaSets, then

* being deleted -> status only;
* paused, or resized while rolling (a "scaling event") -> ``sync``: proportional scaling, cleanup;
* ``Recreate`` -> scale every old ReplicaSet to 0, wait until their pods are gone, scale up the new;
* ``RollingUpdate`` -> scale the new ReplicaSet up within ``maxSurge``, old ones down within
  ``maxUnavailable``, then clean up old revisions beyond ``revisionHistoryLimit``;

and finally write ``status`` with the Available and Progressing conditions (the fields
``kubectl rollout status`` reads).  The arithmetic lives in :mod:`controllers.deploymentutil`.
"""

from __future__ import annotations

import logging
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.events import NORMAL, WARNING
from apimachinery.informer import split_key
from apimachinery.selectors import selector_from_dict

from . import deploymentutil as du
from .base import DEPLOYMENTS, PODS, REPLICA_SETS, ControllerContext, OwnerController
from .util import (
    CONTROLLER_UID_INDEX,
    controller_ref,
    controller_uid_index,
    deep_copy,
    ensure_index,
    get_condition,
    is_deleting,
    meta,
    name_of,
    namespace_of,
    new_controller_ref,
    parse_time,
    pod_phase,
    remove_condition,
    set_condition,
    uid_of,
)

log = logging.getLogger(__name__)


def normalize_status(status: dict[str, Any]) -> dict[str, Any]:
    """Drop zero counters (omitempty) so statuses compare as the API stores them."""
    return {k: v for k, v in status.items() if v not in (0, None, [], {})}


class DeploymentController(OwnerController):
    name = "deployment-controller"
    owner_info = DEPLOYMENTS
    owned_info = REPLICA_SETS

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.pod_informer = self.informer(PODS, on_delete=self._pod_deleted)
        ensure_index(self.pod_informer.store, CONTROLLER_UID_INDEX, controller_uid_index)

    def _pod_deleted(self, pod: Obj) -> None:
        """Recreate waits for old pods to be gone: a deleted pod may unblock it."""
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.owned_informer.store.get(f"{namespace_of(pod)}/{ref.get('name')}")
        key = self.owner_key(rs) if rs is not None else None
        d = self.owner_informer.store.get(key) if key is not None else None
        if d is not None and not du.is_rolling(d):
            self.enqueue(d)

    # -- reconcile ------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        namespace, _ = split_key(key)
        cached = self.owner_informer.store.get(key)
        if cached is None:
            return
        d = deep_copy(cached)
        spec = d.get("spec") or {}
        selector = selector_from_dict(spec.get("selector"))
        if selector.empty:
            if (d.get("status") or {}).get("observedGeneration") != meta(d).get("generation"):
                self.recorder.event(
                    d,
                    WARNING,
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required.",
                )
                status = deep_copy(d.get("status") or {})
                status["observedGeneration"] = meta(d).get("generation")
                await self.write_status(DEPLOYMENTS, d, status)
            return
        candidates = self.owned_informer.store.by_index("namespace", namespace or "")
        rss = [deep_copy(rs) for rs in await self.claim(d, candidates)]
        if is_deleting(d):
            await self._sync_status_only(d, rss)
            return
        d = await self._check_paused_conditions(d)
        if spec.get("paused"):
            await self._sync(d, rss)
            return
        scaling, d = await self._is_scaling_event(d, rss)
        if scaling:
            await self._sync(d, rss)
            return
        if du.is_rolling(d):
            await self._rollout_rolling(d, rss)
        else:
            await self._rollout_recreate(d, rss)

    # -- the building blocks (Kubernetes' sync.go / rolling.go / recreate.go) --------------------

    async def _set_progressing(self, d: Obj, status_value: str, reason: str, message: str) -> Obj:
        status = deep_copy(d.get("status") or {})
        set_condition(status, du.progressing_condition(status_value, reason, message, self.ctx.clock()))
        return await self.write_status(DEPLOYMENTS, d, status)

    async def _check_paused_conditions(self, d: Obj) -> Obj:
        if not du.has_progress_deadline(d):
            return d
        cond = get_condition(d.get("status") or {}, "Progressing")
        if cond is not None and cond.get("reason") == du.TIMED_OUT:
            return d
        paused = bool((d.get("spec") or {}).get("paused"))
        if paused and (cond is None or cond.get("reason") != du.PAUSED):
            return await self._set_progressing(d, "Unknown", du.PAUSED, "Deployment is paused")
        if not paused and cond is not None and cond.get("reason") == du.PAUSED:
            return await self._set_progressing(d, "Unknown", du.RESUMED, "Deployment is resumed")
        return d

    async def _get_all_rss(self, d: Obj, rss: list[Obj], create: bool) -> tuple[Obj | None, list[Obj], Obj]:
        """(new RS, old RSs, deployment) with revisions in step (getAllReplicaSetsAndSyncRevision)."""
        new_rs = du.find_new_rs(d, rss)
        old_rss = du.find_old_rss(d, rss, new_rs)
        new_rs, d = await self._get_new_rs(d, rss, old_rss, new_rs, create)
        return new_rs, old_rss, d

    async def _set_deployment_revision(self, d: Obj, revision: str) -> Obj:
        ann = meta(d).get("annotations") or {}
        if ann.get(du.REVISION) == revision:
            return d
        updated = deep_copy(d)
        updated["metadata"].setdefault("annotations", {})[du.REVISION] = revision
        return await self.client.update(DEPLOYMENTS, updated)

    async def _get_new_rs(
        self, d: Obj, rss: list[Obj], old_rss: list[Obj], existing: Obj | None, create: bool
    ) -> tuple[Obj | None, Obj]:
        new_revision = du.max_revision(old_rss) + 1
        spec = d.get("spec") or {}
        if existing is not None:
            rs_copy = deep_copy(existing)
            changed = du.set_new_rs_annotations(d, rs_copy, new_revision, True)
            min_ready = int(spec.get("minReadySeconds") or 0)
            if int((rs_copy.get("spec") or {}).get("minReadySeconds") or 0) != min_ready:
                rs_copy["spec"]["minReadySeconds"] = min_ready
                changed = True
            if changed:
                rs_copy = await self.client.update(REPLICA_SETS, rs_copy)
                self._replace(rss, rs_copy)
            d = await self._set_deployment_revision(d, du.annotations_of(rs_copy).get(du.REVISION, ""))
            if du.has_progress_deadline(d) and get_condition(d.get("status") or {}, "Progressing") is None:
                msg = f'Found new replica set "{name_of(rs_copy)}"'
                d = await self._set_progressing(d, "True", du.FOUND_NEW_RS, msg)
            return rs_copy, d
        if not create:
            return None, d
        collision = (d.get("status") or {}).get("collisionCount")
        template = du.normalize_template(spec.get("template") or {})
        pod_hash = du.compute_hash(template, collision)
        template.setdefault("metadata", {}).setdefault("labels", {})[du.HASH_LABEL] = pod_hash
        selector = deep_copy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[du.HASH_LABEL] = pod_hash
        new_rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{name_of(d)}-{pod_hash}",
                "namespace": meta(d).get("namespace"),
                "ownerReferences": [new_controller_ref(d, "apps/v1", "Deployment")],
                "labels": dict(template["metadata"]["labels"]),
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
        }
        new_rs["spec"]["replicas"] = du.new_rs_new_replicas(d, [*old_rss, new_rs], new_rs)
        du.set_new_rs_annotations(d, new_rs, new_revision, False)
        try:
            created = await self.client.create(REPLICA_SETS, new_rs, meta(d).get("namespace"))
        except errors.AlreadyExists:
            found = self.owned_informer.store.get(f"{meta(d).get('namespace')}/{name_of(new_rs)}")
            ref = controller_ref(found) if found else None
            if (
                found is not None
                and ref
                and ref.get("uid") == uid_of(d)
                and du.equal_ignore_hash(du.template_of(found), spec.get("template") or {})
            ):
                return deep_copy(found), d
            # a hash collision: bump collisionCount so the next try picks another name
            status = deep_copy(d.get("status") or {})
            status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
            await self.write_status(DEPLOYMENTS, d, status)
            raise errors.Conflict(
                f"hash collision for ReplicaSet {name_of(new_rs)}; collisionCount bumped"
            ) from None
        except errors.StatusError as exc:
            msg = f"Failed to create new replica set {name_of(new_rs)}: {exc.message}"
            if du.has_progress_deadline(d):
                await self._set_progressing(d, "False", du.FAILED_RS_CREATE, msg)
            self.recorder.event(d, WARNING, du.FAILED_RS_CREATE, msg)
            raise
        replicas = du.spec_replicas(created)
        if replicas > 0:
            self.recorder.event(
                d,
                NORMAL,
                "ScalingReplicaSet",
                f"Scaled up replica set {name_of(created)} from 0 to {replicas}",
            )
        rss.append(created)
        d = await self._set_deployment_revision(d, str(new_revision))
        if du.has_progress_deadline(d):
            msg = f'Created new replica set "{name_of(created)}"'
            d = await self._set_progressing(d, "True", du.NEW_RS_CREATED, msg)
        return created, d

    @staticmethod
    def _replace(rss: list[Obj], rs: Obj) -> None:
        for i, item in enumerate(rss):
            if uid_of(item) == uid_of(rs):
                rss[i] = rs

    async def _scale_rs(self, rs: Obj, new_scale: int, d: Obj, op: str = "") -> tuple[bool, Obj]:
        size_changes = du.spec_replicas(rs) != new_scale
        desired = du.spec_replicas(d)
        max_replicas = desired + du.max_surge(d)
        if not size_changes and not du.replicas_annotations_need_update(rs, desired, max_replicas):
            return False, rs
        old_scale = du.spec_replicas(rs)
        rs_copy = deep_copy(rs)
        rs_copy["spec"]["replicas"] = new_scale
        du.set_replicas_annotations(rs_copy, desired, max_replicas)
        updated = await self.client.update(REPLICA_SETS, rs_copy)
        if size_changes:
            op = op or ("up" if new_scale > old_scale else "down")
            self.recorder.event(
                d,
                NORMAL,
                "ScalingReplicaSet",
                f"Scaled {op} replica set {name_of(rs)} from {old_scale} to {new_scale}",
            )
            log.info(
                "%s/%s: scaled %s %s from %d to %d",
                meta(d).get("namespace"),
                name_of(d),
                op,
                name_of(rs),
                old_scale,
                new_scale,
            )
        rs.clear()
        rs.update(updated)  # callers hold this object in their lists
        return size_changes, rs

    async def _is_scaling_event(self, d: Obj, rss: list[Obj]) -> tuple[bool, Obj]:
        new_rs, old_rss, d = await self._get_all_rss(d, rss, False)
        for rs in du.filter_active([*old_rss, new_rs]):
            desired = du.desired_replicas_annotation(rs)
            if desired is not None and desired != du.spec_replicas(d):
                return True, d
        return False, d

    async def _scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        latest = du.find_active_or_latest(new_rs, old_rss)
        if latest is not None:
            if du.spec_replicas(latest) != du.spec_replicas(d):
                await self._scale_rs(latest, du.spec_replicas(d), d)
            return
        if du.is_saturated(d, new_rs):
            for rs in du.filter_active(list(old_rss)):
                await self._scale_rs(rs, 0, d)
            return
        if du.is_rolling(d):
            active = du.filter_active([*old_rss, new_rs])
            sizes, op = du.proportional_sizes(d, active)
            for rs in active:
                await self._scale_rs(rs, sizes[name_of(rs)], d, op)

    async def _sync(self, d: Obj, rss: list[Obj]) -> None:
        new_rs, old_rss, d = await self._get_all_rss(d, rss, False)
        await self._scale(d, new_rs, old_rss)
        if (d.get("spec") or {}).get("paused"):
            await self._cleanup(d, old_rss)
        await self._sync_status(d, [*old_rss, new_rs], new_rs)

    async def _sync_status_only(self, d: Obj, rss: list[Obj]) -> None:
        new_rs, old_rss, d = await self._get_all_rss(d, rss, False)
        await self._sync_status(d, [*old_rss, new_rs], new_rs)

    async def _sync_status(self, d: Obj, all_rss: list[Obj | None], new_rs: Obj | None) -> None:
        status = du.calculate_status(d, all_rss, new_rs, self.ctx.clock())
        await self._write_status(d, status)

    async def _write_status(self, d: Obj, status: dict[str, Any]) -> None:
        if normalize_status(status) != normalize_status(d.get("status") or {}):
            await self.write_status(DEPLOYMENTS, d, status)

    async def _cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        for rs in du.rss_to_clean(d, old_rss):
            log.info("%s/%s: deleting old replica set %s", meta(d).get("namespace"), name_of(d), name_of(rs))
            try:
                await self.client.delete(REPLICA_SETS, name_of(rs), meta(rs).get("namespace"))
            except errors.NotFound:
                pass

    async def _sync_rollout_status(self, d: Obj, all_rss: list[Obj | None], new_rs: Obj | None) -> None:
        now = self.ctx.clock()
        status = du.rollout_status(d, all_rss, new_rs, now)
        if normalize_status(status) == normalize_status(d.get("status") or {}):
            self._requeue_stuck(d, status, now)
            return
        await self._write_status(d, status)

    def _requeue_stuck(self, d: Obj, status: dict[str, Any], now: float) -> None:
        cond = get_condition(status, "Progressing")
        if cond is None or cond.get("reason") in (du.NEW_RS_AVAILABLE, du.TIMED_OUT):
            return
        if du.deployment_complete(d, status) or not du.has_progress_deadline(d):
            return
        since = parse_time(cond.get("lastUpdateTime"))
        if since is None:
            return
        after = since + int((d.get("spec") or {}).get("progressDeadlineSeconds") or 600) - now
        self.queue.add_after(f"{meta(d).get('namespace')}/{name_of(d)}", max(after, 0.0) + 1.0)

    # -- RollingUpdate --------------------------------------------------------------------------

    async def _rollout_rolling(self, d: Obj, rss: list[Obj]) -> None:
        new_rs, old_rss, d = await self._get_all_rss(d, rss, True)
        assert new_rs is not None
        all_rss: list[Obj | None] = [*old_rss, new_rs]
        if await self._reconcile_new_rs(all_rss, new_rs, d):
            await self._sync_rollout_status(d, all_rss, new_rs)
            return
        if await self._reconcile_old_rss(all_rss, du.filter_active(list(old_rss)), new_rs, d):
            await self._sync_rollout_status(d, all_rss, new_rs)
            return
        status = du.calculate_status(d, all_rss, new_rs, self.ctx.clock())
        if du.deployment_complete(d, status):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(d, all_rss, new_rs)

    async def _reconcile_new_rs(self, all_rss: list[Obj | None], new_rs: Obj, d: Obj) -> bool:
        desired = du.spec_replicas(d)
        if du.spec_replicas(new_rs) == desired:
            return False
        if du.spec_replicas(new_rs) > desired:
            scaled, _ = await self._scale_rs(new_rs, desired, d)
            return scaled
        scaled, _ = await self._scale_rs(new_rs, du.new_rs_new_replicas(d, all_rss, new_rs), d)
        return scaled

    async def _reconcile_old_rss(
        self, all_rss: list[Obj | None], old_rss: list[Obj], new_rs: Obj, d: Obj
    ) -> bool:
        if du.replica_count(list(old_rss)) == 0:
            return False
        all_count = du.replica_count(all_rss)
        min_available = du.spec_replicas(d) - du.max_unavailable(d)
        new_unavailable = du.spec_replicas(new_rs) - du.status_int(new_rs, "availableReplicas")
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = await self._cleanup_unhealthy(old_rss, d, max_scaled_down)
        scaled = await self._scale_down_old_for_rolling([*old_rss, new_rs], old_rss, d)
        return cleaned + scaled > 0

    async def _cleanup_unhealthy(self, old_rss: list[Obj], d: Obj, max_cleanup: int) -> int:
        total = 0
        for rs in du.by_creation(old_rss):
            if total >= max_cleanup:
                break
            replicas = du.spec_replicas(rs)
            available = du.status_int(rs, "availableReplicas")
            if replicas == 0 or replicas == available:
                continue
            count = min(max_cleanup - total, replicas - available)
            await self._scale_rs(rs, replicas - count, d)
            total += count
        return total

    async def _scale_down_old_for_rolling(self, all_rss: list[Obj | None], old_rss: list[Obj], d: Obj) -> int:
        min_available = du.spec_replicas(d) - du.max_unavailable(d)
        available = du.available_count(all_rss)
        if available <= min_available:
            return 0
        to_scale = available - min_available
        total = 0
        for rs in du.by_creation(old_rss):
            if total >= to_scale:
                break
            replicas = du.spec_replicas(rs)
            if replicas == 0:
                continue
            count = min(replicas, to_scale - total)
            await self._scale_rs(rs, replicas - count, d)
            total += count
        return total

    # -- Recreate -------------------------------------------------------------------------------

    async def _rollout_recreate(self, d: Obj, rss: list[Obj]) -> None:
        new_rs, old_rss, d = await self._get_all_rss(d, rss, False)
        all_rss: list[Obj | None] = [*old_rss, new_rs]
        scaled = False
        for rs in du.filter_active(list(old_rss)):
            changed, _ = await self._scale_rs(rs, 0, d)
            scaled = scaled or changed
        if scaled:
            await self._sync_rollout_status(d, all_rss, new_rs)
            return
        if self._old_pods_running(old_rss):
            await self._sync_rollout_status(d, all_rss, new_rs)
            return
        if new_rs is None:
            new_rs, old_rss, d = await self._get_all_rss(d, rss, True)
            all_rss = [*old_rss, new_rs]
        assert new_rs is not None
        await self._scale_rs(new_rs, du.spec_replicas(d), d)
        status = du.calculate_status(d, all_rss, new_rs, self.ctx.clock())
        if du.deployment_complete(d, status):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(d, all_rss, new_rs)

    def _old_pods_running(self, old_rss: list[Obj]) -> bool:
        if any(du.status_int(rs, "replicas") > 0 for rs in old_rss):
            return True
        for rs in old_rss:
            for pod in self.pod_informer.store.by_index(CONTROLLER_UID_INDEX, uid_of(rs)):
                if pod_phase(pod) not in ("Failed", "Succeeded"):
                    return True
        return False


__all__ = ["DeploymentController", "normalize_status", "remove_condition"]
