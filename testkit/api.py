"""API objects as tests write them, and the few calls every test makes through an ``httpx.Client``."""

from __future__ import annotations

from typing import Any

import httpx

from testkit.wait import unique


def apps(
    kind: str,
    name: str,
    pod_spec: dict[str, Any],
    replicas: int | None = None,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """An ``apps/v1`` object (Deployment, ReplicaSet, StatefulSet, DaemonSet) selecting ``labels``
    (``app: NAME`` unless given), whose pod template carries them and ``pod_spec``."""
    labels = labels or {"app": name}
    body: dict[str, Any] = {} if replicas is None else {"replicas": replicas}
    body.update(
        selector={"matchLabels": labels}, template={"metadata": {"labels": dict(labels)}, "spec": pod_spec}
    )
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": {**body, **spec}}


def containers(image: str, name: str = "main", **fields: Any) -> dict[str, Any]:
    """A pod spec of one container."""
    return {"containers": [{"name": name, "image": image, **fields}]}


def owner_ref(owner: dict[str, Any], api_version: str, kind: str, **fields: Any) -> dict[str, Any]:
    """An ownerReference to ``owner`` (an object with a name and a uid)."""
    meta = owner["metadata"]
    return {"apiVersion": api_version, "kind": kind, "name": meta["name"], "uid": meta["uid"], **fields}


def pod_binding(pod: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod},
        "target": {"kind": "Node", "name": node},
    }


def configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def create_namespace(api: httpx.Client, prefix: str = "ns") -> str:
    """A new namespace with a unique name; returns the name."""
    name = unique(prefix)
    r = api.post(
        "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    assert r.status_code == 201, r.text
    return name


def merge_patch(api: httpx.Client, path: str, body: dict[str, Any], **params: str) -> httpx.Response:
    """PATCH ``path`` with a JSON merge patch."""
    return api.patch(path, json=body, params=params, headers={"Content-Type": "application/merge-patch+json"})


def items(api: httpx.Client, path: str, **params: str) -> list[dict[str, Any]]:
    r = api.get(path, params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def get(api: httpx.Client, path: str) -> dict[str, Any] | None:
    """The object at ``path``, None when it does not exist."""
    r = api.get(path)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return dict(r.json())


def event(api: httpx.Client, ns: str, involved: str, reason: str) -> dict[str, Any] | None:
    """The first event about ``involved`` with ``reason``, if there is one yet."""
    found = items(api, f"/api/v1/namespaces/{ns}/events", fieldSelector=f"involvedObject.name={involved}")
    return next((e for e in found if e["reason"] == reason), None)


def node_ready(api: httpx.Client, name: str) -> bool:
    r = api.get(f"/api/v1/nodes/{name}")
    conds = ((r.json().get("status") or {}) if r.status_code == 200 else {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
