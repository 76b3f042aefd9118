"""Pure functions of the Deployment controller (Kubernetes' ``pkg/controller/deployment/util``).

Nothing here does I/O: each function takes Deployments and ReplicaSets (dicts as the API returns
them) and returns numbers, names or new objects, so the rollout arithmetic is unit-tested alone.
"""

from __future__ import annotations

import copy
import json
import struct
from typing import Any

from apimachinery.client import Obj

from .util import (
    annotations_of,
    creation_ts,
    get_condition,
    is_deleting,
    meta,
    name_of,
    new_condition,
    rfc3339,
    scaled_value,
    set_condition,
)

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_SKIP_COPY = {
    LAST_APPLIED,
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
}

# Progressing reasons
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
FAILED_RS_CREATE = "ReplicaSetCreateError"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


# -- hashing and template equality ------------------------------------------------------------------


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """``rand.SafeEncodeString``: digits mapped onto an alphabet without vowels."""
    return "".join(_ALPHANUMS[ord(c) % len(_ALPHANUMS)] for c in text)


def compute_hash(template: dict[str, Any], collision_count: int | None) -> str:
    """``controller.ComputeHash``: FNV-32a of the template (canonical JSON here, where Kubernetes
    hashes Go's printed struct) plus the collision count, safe-encoded."""
    data = json.dumps(normalize_template(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += struct.pack("<I", collision_count & 0xFFFFFFFF) + b"\0\0\0\0"
    return safe_encode(str(fnv32a(data)))


def normalize_template(template: dict[str, Any]) -> dict[str, Any]:
    """Drop null metadata fields (``creationTimestamp: null`` as Go clients send it)."""
    t = copy.deepcopy(template or {})
    if isinstance(t.get("metadata"), dict):
        t["metadata"] = {k: v for k, v in t["metadata"].items() if v is not None}
        if not t["metadata"]:
            t.pop("metadata")
    return t


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    t = normalize_template(template)
    labels = (t.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
        if not labels:
            t["metadata"].pop("labels")
    if "metadata" in t and not t["metadata"]:  # labels were all there was
        t.pop("metadata")
    return t


def equal_ignore_hash(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return _without_hash(a) == _without_hash(b)


def template_of(obj: Obj) -> dict[str, Any]:
    return (obj.get("spec") or {}).get("template") or {}


# -- replica arithmetic -----------------------------------------------------------------------------


def spec_replicas(obj: Obj | None) -> int:
    if obj is None:
        return 0
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_int(obj: Obj, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def is_rolling(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def resolve_fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    """(surge rounded up, unavailable rounded down); both zero becomes unavailable 1."""
    surge = scaled_value(max_surge if max_surge is not None else "25%", desired, True)
    unavailable = scaled_value(max_unavailable if max_unavailable is not None else "25%", desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _rolling_params(d: Obj) -> tuple[Any, Any]:
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    return ru.get("maxSurge"), ru.get("maxUnavailable")


def max_surge(d: Obj) -> int:
    if not is_rolling(d):
        return 0
    surge, _ = resolve_fenceposts(*_rolling_params(d), spec_replicas(d))
    return surge


def max_unavailable(d: Obj) -> int:
    replicas = spec_replicas(d)
    if not is_rolling(d) or replicas == 0:
        return 0
    _, unavailable = resolve_fenceposts(*_rolling_params(d), replicas)
    return min(unavailable, replicas)


def replica_count(rss: list[Obj | None]) -> int:
    return sum(spec_replicas(rs) for rs in rss if rs is not None)


def actual_count(rss: list[Obj | None]) -> int:
    return sum(status_int(rs, "replicas") for rs in rss if rs is not None)


def ready_count(rss: list[Obj | None]) -> int:
    return sum(status_int(rs, "readyReplicas") for rs in rss if rs is not None)


def available_count(rss: list[Obj | None]) -> int:
    return sum(status_int(rs, "availableReplicas") for rs in rss if rs is not None)


def filter_active(rss: list[Obj | None]) -> list[Obj]:
    return [rs for rs in rss if rs is not None and spec_replicas(rs) > 0]


def new_rs_new_replicas(d: Obj, all_rss: list[Obj | None], new_rs: Obj) -> int:
    """How big the new ReplicaSet may be now (NewRSNewReplicas)."""
    if not is_rolling(d):
        return spec_replicas(d)
    current = replica_count(all_rss)
    max_total = spec_replicas(d) + max_surge(d)
    if current >= max_total:
        return spec_replicas(new_rs)
    scale_up = min(max_total - current, spec_replicas(d) - spec_replicas(new_rs))
    return spec_replicas(new_rs) + scale_up


def revision_of(rs: Obj) -> int:
    try:
        return int(annotations_of(rs).get(REVISION) or 0)
    except ValueError:
        return 0


def max_revision(rss: list[Obj]) -> int:
    return max((revision_of(rs) for rs in rss), default=0)


def by_creation(rss: list[Obj]) -> list[Obj]:
    return sorted(rss, key=lambda rs: (creation_ts(rs), name_of(rs)))


def find_new_rs(d: Obj, rss: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template equals the Deployment's (FindNewReplicaSet)."""
    for rs in by_creation(rss):
        if equal_ignore_hash(template_of(rs), template_of(d)):
            return rs
    return None


def find_old_rss(d: Obj, rss: list[Obj], new_rs: Obj | None) -> list[Obj]:
    new_uid = meta(new_rs).get("uid") if new_rs else None
    return [rs for rs in rss if meta(rs).get("uid") != new_uid]


# -- annotations ------------------------------------------------------------------------------------


def _int_annotation(rs: Obj, key: str) -> int | None:
    value = annotations_of(rs).get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def desired_replicas_annotation(rs: Obj) -> int | None:
    return _int_annotation(rs, DESIRED_REPLICAS)


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(key) != value:
            ann[key] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = annotations_of(rs)
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_replicas)


def set_new_rs_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
    """Copy the Deployment's annotations, move the revision forward and record the history
    (SetNewReplicaSetAnnotations).  Mutates ``rs``; True if it changed."""
    ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for key, value in annotations_of(d).items():
        if key in _SKIP_COPY:
            continue
        if ann.get(key) != value:
            ann[key] = value
            changed = True
    old_revision = ann.get(REVISION)
    try:
        old_int = int(old_revision) if old_revision else 0
    except ValueError:
        return changed
    if old_int < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old_revision:
            history = [h for h in (ann.get(REVISION_HISTORY) or "").split(",") if h]
            history.append(old_revision)
            ann[REVISION_HISTORY] = ",".join(history)
    if not exists and set_replicas_annotations(rs, spec_replicas(d), spec_replicas(d) + max_surge(d)):
        changed = True
    return changed


# -- proportional scaling ---------------------------------------------------------------------------


def find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    if new_rs is None and not old_rss:
        return None
    old_sorted = sorted(old_rss, key=lambda rs: (creation_ts(rs), name_of(rs)), reverse=True)
    active = filter_active([*old_sorted, new_rs])
    if not active:
        if new_rs is not None:
            return new_rs
        return old_sorted[0]
    if len(active) == 1:
        return active[0]
    return None


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    desired = desired_replicas_annotation(rs)
    return (
        desired == spec_replicas(d)
        and spec_replicas(rs) == spec_replicas(d)
        and status_int(rs, "availableReplicas") == spec_replicas(d)
    )


def _round_half_away(x: float) -> int:
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def rs_fraction(rs: Obj, d: Obj) -> int:
    if spec_replicas(d) == 0:
        return -spec_replicas(rs)
    deployment_replicas = spec_replicas(d) + max_surge(d)
    annotated = _int_annotation(rs, MAX_REPLICAS)
    if annotated is None:
        annotated = status_int(d, "replicas")
    if annotated <= 0:
        return 0
    return _round_half_away(spec_replicas(rs) * deployment_replicas / annotated) - spec_replicas(rs)


def proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    if spec_replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = rs_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_sizes(d: Obj, active: list[Obj]) -> tuple[dict[str, int], str]:
    """New sizes for the active ReplicaSets when a rolling Deployment is resized mid-rollout."""
    total = replica_count(list(active))
    allowed = spec_replicas(d) + max_surge(d) if spec_replicas(d) > 0 else 0
    to_add = allowed - total
    if to_add > 0:
        ordered = sorted(active, key=lambda rs: (-spec_replicas(rs), -creation_ts(rs)))
        op = "up"
    else:
        ordered = sorted(active, key=lambda rs: (-spec_replicas(rs), creation_ts(rs)))
        op = "down"
    sizes: dict[str, int] = {}
    added = 0
    for rs in ordered:
        if to_add != 0:
            p = proportion(rs, d, to_add, added)
            sizes[name_of(rs)] = spec_replicas(rs) + p
            added += p
        else:
            sizes[name_of(rs)] = spec_replicas(rs)
    if to_add != added and ordered:
        first = name_of(ordered[0])
        sizes[first] = max(0, sizes[first] + to_add - added)
    return sizes, op


# -- status and conditions --------------------------------------------------------------------------


def has_progress_deadline(d: Obj) -> bool:
    value = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return value is not None and int(value) < 2**31 - 1


def calculate_status(d: Obj, all_rss: list[Obj | None], new_rs: Obj | None, now: float) -> dict[str, Any]:
    available = available_count(all_rss)
    total = replica_count(all_rss)
    status = copy.deepcopy(d.get("status") or {})
    status["observedGeneration"] = meta(d).get("generation", 1)
    status["replicas"] = actual_count(all_rss)
    status["updatedReplicas"] = actual_count([new_rs])
    status["readyReplicas"] = ready_count(all_rss)
    status["availableReplicas"] = available
    status["unavailableReplicas"] = max(0, total - available)
    for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
        if not status[key]:
            status.pop(key)
    if available >= spec_replicas(d) - max_unavailable(d):
        cond = new_condition(
            "Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.", now, True
        )
    else:
        cond = new_condition(
            "Available", "False", MIN_UNAVAILABLE, "Deployment does not have minimum availability.", now, True
        )
    set_condition(status, cond)
    return status


def deployment_complete(d: Obj, status: dict[str, Any]) -> bool:
    replicas = spec_replicas(d)
    return (
        int(status.get("updatedReplicas") or 0) == replicas
        and int(status.get("replicas") or 0) == replicas
        and int(status.get("availableReplicas") or 0) == replicas
        and int(status.get("observedGeneration") or 0) >= int(meta(d).get("generation") or 1)
    )


def deployment_progressing(d: Obj, status: dict[str, Any]) -> bool:
    old = d.get("status") or {}
    old_old = int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
    new_old = int(status.get("replicas") or 0) - int(status.get("updatedReplicas") or 0)
    return (
        int(status.get("updatedReplicas") or 0) > int(old.get("updatedReplicas") or 0)
        or new_old < old_old
        or int(status.get("readyReplicas") or 0) > int(old.get("readyReplicas") or 0)
        or int(status.get("availableReplicas") or 0) > int(old.get("availableReplicas") or 0)
    )


def deployment_timed_out(d: Obj, status: dict[str, Any], now: float) -> bool:
    from apimachinery.timefmt import parse_time

    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    deadline = int((d.get("spec") or {}).get("progressDeadlineSeconds") or 600)
    return since is not None and since + deadline < now


def progressing_condition(status: str, reason: str, message: str, now: float) -> dict[str, Any]:
    return new_condition("Progressing", status, reason, message, now, True)


def set_progressing(status: dict[str, Any], cond: dict[str, Any]) -> None:
    """SetDeploymentCondition: like set_condition but ``lastUpdateTime`` moves on every real change."""
    set_condition(status, cond)


def rollout_status(d: Obj, all_rss: list[Obj | None], new_rs: Obj | None, now: float) -> dict[str, Any]:
    """syncRolloutStatus without the I/O: the status the Deployment should have now."""
    status = calculate_status(d, all_rss, new_rs, now)
    if not has_progress_deadline(d):
        from .util import remove_condition

        remove_condition(status, "Progressing")
    current = get_condition(status, "Progressing")
    complete_already = (
        int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
        and current is not None
        and current.get("reason") == NEW_RS_AVAILABLE
    )
    if has_progress_deadline(d) and not complete_already:
        new_name = name_of(new_rs) if new_rs else ""
        if deployment_complete(d, status):
            set_progressing(
                status,
                progressing_condition(
                    "True", NEW_RS_AVAILABLE, f'ReplicaSet "{new_name}" has successfully progressed.', now
                ),
            )
        elif deployment_progressing(d, status):
            msg = f'ReplicaSet "{new_name}" is progressing.' if new_rs else "Deployment is progressing."
            cond = progressing_condition("True", RS_UPDATED, msg, now)
            if current is not None and current.get("status") == "True":
                cond["lastTransitionTime"] = current.get("lastTransitionTime", cond["lastTransitionTime"])
            from .util import remove_condition

            remove_condition(status, "Progressing")
            set_condition(status, cond)
        elif deployment_timed_out(d, status, now):
            msg = (
                f'ReplicaSet "{new_name}" has timed out progressing.'
                if new_rs
                else "Deployment has timed out progressing."
            )
            set_progressing(status, progressing_condition("False", TIMED_OUT, msg, now))
    failures = [get_condition(rs.get("status") or {}, "ReplicaFailure") for rs in all_rss if rs is not None]
    failure = next((f for f in failures if f and f.get("status") == "True"), None)
    if failure is not None:
        set_condition(status, {**failure, "lastUpdateTime": rfc3339(now)})
    else:
        from .util import remove_condition

        remove_condition(status, "ReplicaFailure")
    return status


def status_equal_ignoring_times(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Compare statuses without condition timestamps that were only refreshed."""

    def strip(s: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(s)
        for c in out.get("conditions") or []:
            c.pop("lastUpdateTime", None)
            c.pop("lastTransitionTime", None)
        return out

    return strip(a) == strip(b)


def cleanable(rs: Obj) -> bool:
    return (
        not is_deleting(rs)
        and status_int(rs, "replicas") == 0
        and spec_replicas(rs) == 0
        and int(meta(rs).get("generation") or 1)
        <= int((rs.get("status") or {}).get("observedGeneration") or 0)
    )


def rss_to_clean(d: Obj, old_rss: list[Obj]) -> list[Obj]:
    """The oldest revisions beyond ``revisionHistoryLimit`` (cleanupDeployment)."""
    limit = (d.get("spec") or {}).get("revisionHistoryLimit")
    if limit is None:
        return []
    alive = [rs for rs in old_rss if not is_deleting(rs)]
    diff = len(alive) - int(limit)
    if diff <= 0:
        return []
    ordered = sorted(alive, key=lambda rs: (revision_of(rs), creation_ts(rs), name_of(rs)))
    return [rs for rs in ordered[:diff] if cleanable(rs)]
