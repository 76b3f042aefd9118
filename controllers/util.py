"""Helpers shared by the controllers: owner references, pod state, conditions, times, expectations.

Everything here is pure (no I/O) so that each controller's decisions can be unit-tested alone.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from typing import Any

from apimachinery.client import Obj
from apimachinery.conditions import get_condition, new_condition, remove_condition, set_condition  # noqa: F401
from apimachinery.informer import object_key
from apimachinery.timefmt import parse_time, rfc3339  # noqa: F401 - the controllers' too

CONTROLLER_UID_INDEX = "controllerUID"
NODE_NAME_INDEX = "nodeName"


# -- times ------------------------------------------------------------------------------------------

WallClock = Callable[[], float]
wall_clock: WallClock = time.time


# -- metadata ---------------------------------------------------------------------------------------


def meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def uid_of(obj: Obj) -> str:
    return str(meta(obj).get("uid") or "")


def name_of(obj: Obj) -> str:
    return str(meta(obj).get("name") or "")


def namespace_of(obj: Obj) -> str:
    return str(meta(obj).get("namespace") or "")


def labels_of(obj: Obj) -> dict[str, str]:
    return dict(meta(obj).get("labels") or {})


def annotations_of(obj: Obj) -> dict[str, str]:
    return dict(meta(obj).get("annotations") or {})


def is_deleting(obj: Obj) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def creation_ts(obj: Obj) -> float:
    return parse_time(meta(obj).get("creationTimestamp")) or 0.0


def controller_ref(obj: Obj) -> dict[str, Any] | None:
    """The owner reference with ``controller: true`` (metav1.GetControllerOf)."""
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def controller_uid_index(obj: Obj) -> str | None:
    ref = controller_ref(obj)
    return str(ref["uid"]) if ref and ref.get("uid") else None


def new_controller_ref(owner: Obj, api_version: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def key_of(obj: Obj) -> str:
    return object_key(obj)


def deep_copy(obj: Obj) -> Obj:
    return copy.deepcopy(obj)


# -- pods -------------------------------------------------------------------------------------------


def pod_phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def pod_condition(pod: Obj, cond_type: str) -> dict[str, Any] | None:
    return get_condition(pod.get("status") or {}, cond_type)


def is_pod_ready(pod: Obj) -> bool:
    cond = pod_condition(pod, "Ready")
    return bool(cond and cond.get("status") == "True")


def is_pod_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``minReadySeconds`` (podutil.IsPodAvailable)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    cond = pod_condition(pod, "Ready") or {}
    since = parse_time(cond.get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds <= now


def is_pod_active(pod: Obj) -> bool:
    """Not terminated and not being deleted (controller.IsPodActive)."""
    return pod_phase(pod) not in ("Succeeded", "Failed") and not is_deleting(pod)


def filter_active_pods(pods: Iterable[Obj]) -> list[Obj]:
    return [p for p in pods if is_pod_active(p)]


def pod_node_name(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


# -- conditions: apimachinery.conditions' (get_condition, set_condition, new_condition, remove_condition)


# -- expectations -----------------------------------------------------------------------------------

EXPECTATIONS_TTL = 5 * 60.0


class Expectations:
    """client-go's ``UIDTrackingControllerExpectations``: what a controller is waiting to see.

    Before creating N pods a controller records ``expect_creations(key, N)``; the pod informer's
    add handler calls ``creation_observed(key)``.  Until every expected add and delete has been
    observed (or five minutes passed) the controller does not create or delete again, so a lagging
    cache can never make it act twice.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._adds: dict[str, int] = {}
        self._dels: dict[str, set[str]] = {}
        self._stamp: dict[str, float] = {}

    def satisfied(self, key: str) -> bool:
        if key not in self._stamp:
            return True
        if self._adds.get(key, 0) <= 0 and not self._dels.get(key):
            return True
        return self._clock() - self._stamp[key] > EXPECTATIONS_TTL

    def expect_creations(self, key: str, count: int) -> None:
        self._adds[key] = count
        self._dels.setdefault(key, set())
        self._stamp[key] = self._clock()

    def expect_deletions(self, key: str, uids: Iterable[str]) -> None:
        self._dels[key] = set(uids)
        self._adds.setdefault(key, 0)
        self._stamp[key] = self._clock()

    def creation_observed(self, key: str) -> None:
        if key in self._adds:
            self._adds[key] -= 1

    def lower_creations(self, key: str, count: int) -> None:
        if key in self._adds:
            self._adds[key] -= count

    def deletion_observed(self, key: str, uid: str) -> None:
        dels = self._dels.get(key)
        if dels is not None:
            dels.discard(uid)

    def delete(self, key: str) -> None:
        self._adds.pop(key, None)
        self._dels.pop(key, None)
        self._stamp.pop(key, None)

    def pending(self, key: str) -> tuple[int, int]:
        return self._adds.get(key, 0), len(self._dels.get(key, ()))


# -- int-or-percent ---------------------------------------------------------------------------------


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        pct = int(text[:-1])
        num = pct * total
        return -(-num // 100) if round_up else num // 100
    return int(text)


def ensure_index(store: Any, name: str, fn: Callable[[Obj], Any]) -> None:
    """Add an index to a shared store unless another controller already did."""
    try:
        store.index_keys(name, "")
    except KeyError:
        store.add_index(name, fn)


def pod_node_index(pod: Obj) -> str | None:
    return pod_node_name(pod) or None
