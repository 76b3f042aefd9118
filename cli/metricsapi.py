"""What routes ``metrics.k8s.io`` to minik-metrics-server through the aggregation layer, for
``minik up`` and ``minik lab up``: the Service ``kube-system/metrics-server`` without a selector,
its Endpoints (where the metrics-server listens: the host, or the lab's container) and the
APIService ``v1beta1.metrics.k8s.io`` with the cluster CA as ``caBundle``."""

from __future__ import annotations

import base64
from typing import Any

import httpx

APISERVICE_NAME = "v1beta1.metrics.k8s.io"


def objects(address: str, port: int, ca_pem: str) -> list[tuple[str, dict[str, Any]]]:
    """(collection path, object) of each, in the order they are written."""
    meta = {"name": "metrics-server", "namespace": "kube-system", "labels": {"k8s-app": "metrics-server"}}
    return [
        (
            "/api/v1/namespaces/kube-system/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": dict(meta),
                "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
            },
        ),
        (
            "/api/v1/namespaces/kube-system/endpoints",
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": dict(meta),
                "subsets": [
                    {
                        "addresses": [{"ip": address}],
                        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                    }
                ],
            },
        ),
        (
            "/apis/apiregistration.k8s.io/v1/apiservices",
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": APISERVICE_NAME, "labels": {"k8s-app": "metrics-server"}},
                "spec": {
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "service": {"namespace": "kube-system", "name": "metrics-server", "port": 443},
                    "caBundle": base64.b64encode(ca_pem.encode()).decode(),
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            },
        ),
    ]


def register(api: httpx.Client, address: str, port: int, ca_pem: str) -> list[str]:
    """Create each object, or bring an existing one up to date; what could not be written."""
    problems = []
    for path, obj in objects(address, port, ca_pem):
        what = f"{obj['kind']} {obj['metadata']['name']}"
        try:
            r = api.post(path, json=obj, timeout=10)
            if r.status_code == 409:
                url = f"{path}/{obj['metadata']['name']}"
                current = api.get(url, timeout=10).json()
                obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                if obj["kind"] == "Service":
                    obj["spec"]["clusterIP"] = (current.get("spec") or {}).get("clusterIP")
                r = api.put(url, json=obj, timeout=10)
            if r.status_code >= 300:
                problems.append(f"{what}: {r.text[:200]}")
        except httpx.HTTPError as e:
            problems.append(f"{what}: {e}")
    return problems
