"""PriorityClass against a real etcd and API server: the system classes made at start-up and kept,
validation, the single globalDefault, and the Priority admission plugin on pods."""

from __future__ import annotations

from typing import Any

import httpx

from testkit.api import create_namespace
from testkit.wait import unique, wait_for

PCS = "/apis/scheduling.k8s.io/v1/priorityclasses"
PODS = "/api/v1/namespaces/{ns}/pods"


def pclass(name: str, value: int, **more: Any) -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": value,
        **more,
    }


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}], **spec},
    }


def test_system_classes_exist_and_cannot_be_deleted(api: httpx.Client) -> None:
    def found() -> dict[str, Any] | None:
        r = api.get(f"{PCS}/system-node-critical")
        return r.json() if r.status_code == 200 else None

    node_critical = wait_for(found, timeout=20)
    assert node_critical["value"] == 2000001000
    assert node_critical["preemptionPolicy"] == "PreemptLowerPriority"
    assert api.get(f"{PCS}/system-cluster-critical").json()["value"] == 2000000000
    r = api.delete(f"{PCS}/system-cluster-critical")
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'priorityclasses.scheduling.k8s.io "system-cluster-critical" is forbidden: '
        "this is a system priority class and cannot be deleted"
    )
    assert api.get(f"{PCS}/system-cluster-critical").status_code == 200


def test_priority_class_validation(api: httpx.Client) -> None:
    r = api.post(PCS, json=pclass("system-mine", 10))
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0]["field"] == "metadata.name"
    assert "reserved for system use only" in r.json()["message"]
    r = api.post(PCS, json=pclass(unique("too-high"), 1_000_000_001))
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"] == [
        {
            "reason": "FieldValueForbidden",
            "message": "Forbidden: maximum allowed value of a user defined priority is 1000000000",
            "field": "value",
        }
    ]
    r = api.post(PCS, json=pclass(unique("bad-policy"), 1, preemptionPolicy="Sometimes"))
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0]["field"] == "preemptionPolicy"
    name = unique("fixed")
    created = api.post(PCS, json=pclass(name, 100, preemptionPolicy="Never"))
    assert created.status_code == 201, created.text
    body = created.json()
    body["value"] = 200
    r = api.put(f"{PCS}/{name}", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0] == {
        "reason": "FieldValueForbidden",
        "message": "Forbidden: may not be changed in an update.",
        "field": "value",
    }
    body["value"] = 100
    body["description"] = "changed"
    assert api.put(f"{PCS}/{name}", json=body).status_code == 200
    api.delete(f"{PCS}/{name}")


def test_pod_priority_admission(api: httpx.Client) -> None:
    ns = create_namespace(api, "prio")
    high, never = unique("high"), unique("never")
    assert api.post(PCS, json=pclass(high, 1000)).status_code == 201
    assert api.post(PCS, json=pclass(never, 500, preemptionPolicy="Never")).status_code == 201
    try:
        r = api.post(PODS.format(ns=ns), json=pod("a", priorityClassName=high))
        assert r.status_code == 201, r.text
        assert r.json()["spec"]["priority"] == 1000
        assert r.json()["spec"]["preemptionPolicy"] == "PreemptLowerPriority"
        r = api.post(PODS.format(ns=ns), json=pod("b", priorityClassName=never))
        assert r.json()["spec"]["priority"] == 500
        assert r.json()["spec"]["preemptionPolicy"] == "Never"
        r = api.post(PODS.format(ns=ns), json=pod("c"))
        assert r.json()["spec"]["priority"] == 0
        assert "priorityClassName" not in r.json()["spec"]

        r = api.post(PODS.format(ns=ns), json=pod("d", priorityClassName="nope"))
        assert r.status_code == 403, r.text
        assert r.json()["message"] == 'pods "d" is forbidden: no PriorityClass with name nope was found'
        r = api.post(PODS.format(ns=ns), json=pod("e", priorityClassName=high, priority=5))
        assert r.status_code == 403, r.text
        assert r.json()["message"] == (
            'pods "e" is forbidden: the integer value of priority (5) must not be provided in pod spec; '
            "priority admission controller computed 1000 from the given PriorityClass name"
        )
        r = api.post(PODS.format(ns=ns), json=pod("f", priorityClassName=high, preemptionPolicy="Never"))
        assert r.status_code == 403, r.text
        assert "the string value of PreemptionPolicy (Never) must not be provided" in r.json()["message"]

        # system classes: kube-system only, unless a ResourceQuota admits the class
        r = api.post(PODS.format(ns=ns), json=pod("g", priorityClassName="system-node-critical"))
        assert r.status_code == 403, r.text
        assert r.json()["message"] == (
            'pods "g" is forbidden: insufficient quota to match these scopes: '
            "[{PriorityClass In [system-node-critical system-cluster-critical]}]"
        )
        quota = {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "critical"},
            "spec": {
                "scopeSelector": {
                    "matchExpressions": [
                        {"scopeName": "PriorityClass", "operator": "In", "values": ["system-node-critical"]}
                    ]
                }
            },
        }
        assert api.post(f"/api/v1/namespaces/{ns}/resourcequotas", json=quota).status_code == 201

        def admitted() -> bool:
            r = api.post(PODS.format(ns=ns), json=pod("g", priorityClassName="system-node-critical"))
            return r.status_code == 201

        wait_for(admitted, timeout=10)
        r = api.get(f"{PODS.format(ns=ns)}/g")
        assert r.json()["spec"]["priority"] == 2000001000
    finally:
        api.delete(f"{PCS}/{high}")
        api.delete(f"{PCS}/{never}")


def test_single_global_default(api: httpx.Client) -> None:
    ns = create_namespace(api, "prio-default")
    first, second = unique("default-a"), unique("default-b")
    assert api.post(PCS, json=pclass(first, 42, globalDefault=True)).status_code == 201
    try:
        r = api.post(PCS, json=pclass(second, 43, globalDefault=True))
        assert r.status_code == 403, r.text
        assert r.json()["message"] == (
            f'priorityclasses.scheduling.k8s.io "{second}" is forbidden: '
            f"PriorityClass {first} is already marked as default. Only one default can exist"
        )
        created = api.post(PCS, json=pclass(second, 43))
        assert created.status_code == 201
        body = created.json()
        body["globalDefault"] = True
        r = api.put(f"{PCS}/{second}", json=body)
        assert r.status_code == 403, r.text

        def defaulted() -> dict[str, Any] | None:
            r = api.post(PODS.format(ns=ns), json=pod(unique("p")))
            assert r.status_code == 201, r.text
            spec = r.json()["spec"]
            return spec if spec.get("priorityClassName") == first else None

        spec = wait_for(defaulted, timeout=10)
        assert spec["priority"] == 42
    finally:
        api.delete(f"{PCS}/{first}")
        api.delete(f"{PCS}/{second}")
