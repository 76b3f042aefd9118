"""Which nodes a pod spec accepts: taints against tolerations, ``nodeSelector`` and node affinity.

The rules of Kubernetes' ``v1helper.ToleratesTaint`` and ``nodeaffinity``, shared by the
scheduler (TaintToleration and NodeAffinity plugins) and the DaemonSet controller (which nodes
should run a daemon pod).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

HARD_EFFECTS = ("NoSchedule", "NoExecute")


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """``Toleration.ToleratesTaint``: an empty effect matches every effect, an empty key with
    ``Exists`` matches every taint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return op == "Exists"


def tolerated(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def untolerated_taint(
    tolerations: Sequence[Mapping[str, Any]],
    taints: Iterable[Mapping[str, Any]],
    effects: Collection[str] = HARD_EFFECTS,
) -> Mapping[str, Any] | None:
    """The first taint with one of ``effects`` that no toleration tolerates, or None."""
    for taint in taints:
        if taint.get("effect") in effects and not tolerated(tolerations, taint):
            return taint
    return None


def _requirement_matches(req: Mapping[str, Any], value: str | None) -> bool:
    op = req.get("operator")
    values = [str(v) for v in req.get("values") or []]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        if value is None or len(values) != 1:
            return False
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def node_selector_term_matches(term: Mapping[str, Any], node_name: str, labels: Mapping[str, str]) -> bool:
    """One ``NodeSelectorTerm``: all its expressions and fields hold; an empty term matches nothing.

    ``matchFields`` knows only ``metadata.name`` with ``In``/``NotIn``."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    for req in exprs:
        if not _requirement_matches(req, labels.get(str(req.get("key")))):
            return False
    for req in fields:
        if req.get("key") != "metadata.name" or req.get("operator") not in ("In", "NotIn"):
            return False
        if not _requirement_matches(req, node_name):
            return False
    return True


def matches_node(spec: Mapping[str, Any], node_name: str, labels: Mapping[str, str]) -> bool:
    """A pod spec's ``nodeSelector`` and required node affinity (terms ORed) against a node."""
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    na = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is not None:
        terms = required.get("nodeSelectorTerms") or []
        return any(node_selector_term_matches(t, node_name, labels) for t in terms)
    return True


def preferred_node_terms(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The preferred node affinity terms that can score: a weight and a non-empty preference."""
    na = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    out = []
    for t in na.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        pref = t.get("preference") or {}
        if int(t.get("weight") or 0) != 0 and (pref.get("matchExpressions") or pref.get("matchFields")):
            out.append(t)
    return out


def preferred_weight(terms: Iterable[Mapping[str, Any]], node_name: str, labels: Mapping[str, str]) -> int:
    """The summed weights of the preferred terms a node matches."""
    return sum(
        int(t.get("weight") or 0)
        for t in terms
        if node_selector_term_matches(t.get("preference") or {}, node_name, labels)
    )
