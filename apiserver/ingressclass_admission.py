"""The ``DefaultIngressClass`` admission plugin, as Kubernetes': an Ingress created without
``spec.ingressClassName`` (and without the deprecated ``kubernetes.io/ingress.class`` annotation)
gets the name of the IngressClass annotated ``ingressclass.kubernetes.io/is-default-class: "true"``;
when several are, the newest one (Kubernetes 1.28 and later); with none, it stays without a class.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

PLUGIN = "DefaultIngressClass"
DEFAULT_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_ANNOTATION = "kubernetes.io/ingress.class"


def default_class(classes: list[Obj]) -> str | None:
    """The default IngressClass's name: the newest of those annotated default (then by name)."""
    defaults = [
        c
        for c in classes
        if str(((c.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_ANNOTATION, "")).lower()
        == "true"
    ]
    if not defaults:
        return None
    newest = max(
        defaults, key=lambda c: (str(c["metadata"].get("creationTimestamp") or ""), c["metadata"]["name"])
    )
    return str(newest["metadata"]["name"])


def admit(ingress: Obj, classes: list[Obj]) -> bool:
    """Set the default class on a new Ingress that names none; whether it changed."""
    spec = ingress.setdefault("spec", {})
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    if spec.get("ingressClassName") or annotations.get(LEGACY_ANNOTATION):
        return False
    name = default_class(classes)
    if name is None:
        return False
    spec["ingressClassName"] = name
    return True
