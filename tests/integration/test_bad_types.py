"""Values of the wrong JSON type are a 400 naming the field, for create, update and every patch type,
and nothing of them is stored."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import yaml

from testkit.api import apps, containers, create_namespace, merge_patch

CMS = "/api/v1/namespaces/{ns}/configmaps"
PODS = "/api/v1/namespaces/{ns}/pods"
DEPLOYS = "/apis/apps/v1/namespaces/{ns}/deployments"


@pytest.fixture()
def ns(api: httpx.Client) -> str:
    return create_namespace(api)


def _bad_request(r: httpx.Response, message: str, field: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == "BadRequest" and body["code"] == 400, body
    assert body["message"] == message, body
    assert [c["field"] for c in body["details"]["causes"]] == [field], body


def _configmap(name: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **fields}


def test_create_with_wrong_types_is_refused_and_not_stored(api: httpx.Client, ns: str) -> None:
    r = api.post(CMS.format(ns=ns), json=_configmap("list-data", data=[1, 2]))
    _bad_request(
        r,
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal array '
        "into Go struct field ConfigMap.data of type map[string]string",
        "data",
    )
    assert api.get(CMS.format(ns=ns) + "/list-data").status_code == 404

    cm = _configmap("list-labels")
    cm["metadata"]["labels"] = ["a"]
    r = api.post(CMS.format(ns=ns), json=cm)
    _bad_request(
        r,
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal array '
        "into Go struct field ObjectMeta.metadata.labels of type map[string]string",
        "metadata.labels",
    )

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": {}}}
    r = api.post(PODS.format(ns=ns), json=pod)
    _bad_request(
        r,
        'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal object '
        "into Go struct field PodSpec.spec.containers of type []v1.Container",
        "spec.containers",
    )

    deploy = apps("Deployment", "d", containers("nginx:1.25", "web"), 2)
    deploy["spec"]["replicas"] = "three"
    r = api.post(DEPLOYS.format(ns=ns), json=deploy)
    _bad_request(
        r,
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string '
        "into Go struct field DeploymentSpec.spec.replicas of type int32",
        "spec.replicas",
    )
    # the same under Strict field validation, and with YAML
    r = api.post(DEPLOYS.format(ns=ns), json=deploy, params={"fieldValidation": "Strict"})
    assert r.status_code == 400 and r.json()["details"]["causes"][0]["field"] == "spec.replicas", r.text
    r = api.post(
        DEPLOYS.format(ns=ns), content=yaml.safe_dump(deploy), headers={"Content-Type": "application/yaml"}
    )
    assert r.status_code == 400 and r.json()["details"]["causes"][0]["field"] == "spec.replicas", r.text
    assert api.get(DEPLOYS.format(ns=ns) + "/d").status_code == 404


def test_update_and_patches_with_wrong_types_are_refused(api: httpx.Client, ns: str) -> None:
    path = CMS.format(ns=ns) + "/cm"
    r = api.post(CMS.format(ns=ns), json=_configmap("cm", data={"a": "b"}))
    assert r.status_code == 201, r.text
    current = r.json()

    current["data"] = {"a": 1}
    r = api.put(path, json=current)
    _bad_request(
        r,
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal number '
        "into Go struct field ConfigMap.data of type string",
        "data[a]",
    )

    r = merge_patch(api, path, {"data": [1, 2]})
    assert r.status_code == 400 and r.json()["details"]["causes"][0]["field"] == "data", r.text
    r = api.patch(
        path,
        json={"metadata": {"labels": ["a"]}},
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert r.status_code == 400 and r.json()["details"]["causes"][0]["field"] == "metadata.labels", r.text
    r = api.patch(
        path,
        json=[{"op": "add", "path": "/data/b", "value": {"x": 1}}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 400 and r.json()["details"]["causes"][0]["field"] == "data[b]", r.text

    stored = api.get(path).json()
    assert stored["data"] == {"a": "b"} and "labels" not in stored["metadata"]


def test_values_decoding_accepts_are_still_stored(api: httpx.Client, ns: str) -> None:
    pod_spec = containers(
        "nginx:1.25",
        "web",
        ports=[{"containerPort": 80, "name": "http"}],
        resources={"limits": {"cpu": "500m", "memory": 134217728}, "requests": {"cpu": 0.25}},
        readinessProbe={"httpGet": {"port": "http", "path": "/"}},
        livenessProbe={"tcpSocket": {"port": 80}},
        env=[{"name": "A", "value": "1"}],
    )
    deploy = apps("Deployment", "ok", pod_spec, 1)
    deploy["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
    deploy["metadata"]["annotations"] = None
    r = api.post(DEPLOYS.format(ns=ns), json=deploy)
    assert r.status_code == 201, r.text
    limits = r.json()["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["cpu"] == "500m"
