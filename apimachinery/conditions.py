"""Conditions of an object's ``status`` (``status.conditions``: a list of ``{type, status,
lastTransitionTime, reason, message}``), kept as Kubernetes' controllers keep them: a condition's
``lastTransitionTime`` changes only when its ``status`` does."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .timefmt import rfc3339


def find(conditions: Iterable[Mapping[str, Any]] | None, cond_type: str) -> Any:
    """The condition of ``cond_type`` in a list of conditions (the object itself), or None."""
    return next((c for c in conditions or () if c.get("type") == cond_type), None)


def get_condition(status: Mapping[str, Any], cond_type: str) -> dict[str, Any] | None:
    """A copy of the condition of ``cond_type`` in ``status``, or None."""
    cond = find(status.get("conditions"), cond_type)
    return dict(cond) if cond is not None else None


def transition_time(old: Mapping[str, Any] | None, status: str) -> str | None:
    """The ``lastTransitionTime`` a condition with ``status`` keeps from ``old`` (the same condition
    before): old's while the status is unchanged; None when it changes (the time is now)."""
    if old and old.get("status") == status and old.get("lastTransitionTime"):
        return str(old["lastTransitionTime"])
    return None


def new_condition(
    cond_type: str, status: str, reason: str, message: str, now: float, with_update_time: bool = False
) -> dict[str, Any]:
    cond = {
        "type": cond_type,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": rfc3339(now),
    }
    if with_update_time:
        cond["lastUpdateTime"] = rfc3339(now)
    return cond


def set_condition(status: dict[str, Any], cond: dict[str, Any]) -> None:
    """Set a condition as Kubernetes does: same status and reason -> no change at all; same status ->
    keep ``lastTransitionTime``."""
    current = find(status.get("conditions"), cond["type"])
    if current and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    cond = dict(cond)
    cond["lastTransitionTime"] = transition_time(current, cond["status"]) or cond["lastTransitionTime"]
    conds = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]]
    conds.append(cond)
    status["conditions"] = conds


def remove_condition(status: dict[str, Any], cond_type: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != cond_type]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)
