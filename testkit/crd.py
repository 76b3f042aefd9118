"""A CustomResourceDefinition for tests: ``widgets.example.com``, two served versions (v1 stored),
status and scale subresources and two printer columns, over the schema a test gives."""

from __future__ import annotations

import copy
from typing import Any


def widget_schema(spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """A widget's structural schema: ``spec`` (``image`` required) and ``status`` with these properties."""
    return {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "required": ["image"], "properties": spec},
            "status": {"type": "object", "properties": status},
        },
    }


def widget_crd(
    schema: dict[str, Any],
    plural: str = "widgets",
    kind: str = "Widget",
    scope: str = "Namespaced",
    short_names: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.example.com"},
        "spec": {
            "group": "example.com",
            "scope": scope,
            "names": {
                "plural": plural,
                "kind": kind,
                "shortNames": [plural[:2] + "x"] if short_names is None else short_names,
                "categories": ["all"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": copy.deepcopy(schema)},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.ready",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                        {"name": "Image", "type": "string", "jsonPath": ".spec.image"},
                    ],
                },
                {
                    "name": "v1beta1",
                    "served": True,
                    "storage": False,
                    "schema": {"openAPIV3Schema": copy.deepcopy(schema)},
                },
            ],
        },
    }
