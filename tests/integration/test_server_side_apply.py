"""Server-side apply and managedFields through a real etcd and minik-apiserver: raw HTTP for the
exact Status bodies, and the official ``kubernetes`` client's server-side apply."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import dynamic
from kubernetes.client.rest import ApiException

from testkit import crd as testkit_crd
from testkit.api import create_namespace
from testkit.processes import APIServerProcess
from testkit.wait import unique

APPLY = {"Content-Type": "application/apply-patch+yaml"}


@pytest.fixture()
def ns(api: httpx.Client) -> str:
    return create_namespace(api, unique("ssa"))


def deployment(
    name: str, replicas: int | None = 2, image: str = "nginx:1.27", **labels: str
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "main", "image": image}]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def apply(
    api: httpx.Client, path: str, obj: dict[str, Any], manager: str | None, **params: str
) -> httpx.Response:
    if manager is not None:
        params["fieldManager"] = manager
    return api.patch(path, content=yaml.safe_dump(obj), headers=APPLY, params=params)


def entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields") or []}


def test_apply_creates_updates_prunes_and_conflicts(api: httpx.Client, ns: str) -> None:
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/web"
    r = apply(api, path, deployment("web", 2, team="a"), "alice")
    assert r.status_code == 201, r.text
    created = r.json()
    e = entries(created)[("alice", "Apply")]
    assert e["apiVersion"] == "apps/v1" and e["fieldsType"] == "FieldsV1" and e["time"]
    fields = e["fieldsV1"]
    assert fields["f:metadata"] == {"f:labels": {"f:team": {}}}
    assert fields["f:spec"]["f:replicas"] == {}
    containers = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert containers == {'k:{"name":"main"}': {".": {}, "f:image": {}, "f:name": {}}}
    assert created["spec"]["strategy"]["type"] == "RollingUpdate"  # defaulted, owned by nobody

    # the same apply again changes nothing
    again = apply(api, path, deployment("web", 2, team="a"), "alice")
    assert again.status_code == 200
    assert again.json()["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]

    # an Update by another manager takes the field it changes
    r = api.patch(
        path,
        json={"spec": {"replicas": 5}},
        headers={"Content-Type": "application/merge-patch+json"},
        params={"fieldManager": "scaler"},
    )
    assert r.status_code == 200, r.text
    owners = entries(r.json())
    assert owners[("scaler", "Update")]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in owners[("alice", "Apply")]["fieldsV1"]["f:spec"]

    # alice applies a different value: 409 naming the manager and the field
    r = apply(api, path, deployment("web", 3, team="a"), "alice")
    assert r.status_code == 409
    status = r.json()
    assert status["reason"] == "Conflict"
    assert (
        status["message"]
        == 'Apply failed with 1 conflict: conflict with "scaler" using apps/v1: .spec.replicas'
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "scaler" using apps/v1',
            "field": ".spec.replicas",
        }
    ]
    assert api.get(path).json()["spec"]["replicas"] == 5

    # forced: alice takes the field over
    r = apply(api, path, deployment("web", 3, team="a"), "alice", force="true")
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["replicas"] == 3
    assert ("scaler", "Update") not in entries(r.json())

    # alice stops applying the label: removed, as nobody else owns it
    r = apply(api, path, deployment("web", 3), "alice")
    assert r.status_code == 200
    assert "team" not in (r.json()["metadata"].get("labels") or {})

    # a label another manager also applied with the same value is shared, and kept when alice drops it
    apply(api, path, deployment("web", 3, shared="yes"), "alice")
    r = apply(
        api,
        path,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"shared": "yes"}},
        },
        "bob",
    )
    assert r.status_code == 200, r.text
    r = apply(api, path, deployment("web", 3), "alice")
    assert r.json()["metadata"]["labels"] == {"shared": "yes"}


def test_apply_merges_containers_by_name_and_env_by_name(api: httpx.Client, ns: str) -> None:
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/multi"
    base = deployment("multi", 1)
    assert apply(api, path, base, "alice").status_code == 201
    sidecar = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "multi"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "sidecar", "image": "busybox:1.36", "env": [{"name": "A", "value": "1"}]}
                    ]
                }
            }
        },
    }
    r = apply(api, path, sidecar, "bob")
    assert r.status_code == 200, r.text
    names = [c["name"] for c in r.json()["spec"]["template"]["spec"]["containers"]]
    assert names == ["main", "sidecar"]
    bob = entries(r.json())[("bob", "Apply")]["fieldsV1"]
    assert 'k:{"name":"sidecar"}' in bob["f:spec"]["f:template"]["f:spec"]["f:containers"]
    # bob drops his container: it goes; alice's stays
    sidecar["spec"]["template"]["spec"]["containers"] = []
    r = apply(api, path, sidecar, "bob")
    assert r.status_code == 200, r.text
    assert [c["name"] for c in r.json()["spec"]["template"]["spec"]["containers"]] == ["main"]


def test_apply_errors(api: httpx.Client, ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/configmaps/c"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    r = apply(api, path, cm, None)
    assert r.status_code == 422
    assert r.json()["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
    )
    r = api.patch(
        path,
        content=b"{}",
        headers={"Content-Type": "application/apply-patch+cbor"},
        params={"fieldManager": "x"},
    )
    assert r.status_code == 415 and r.json()["reason"] == "UnsupportedMediaType"
    bad = dict(cm, metadata={"name": "c", "managedFields": [{"manager": "x"}]})
    r = apply(api, path, bad, "x")
    assert r.status_code == 400 and r.json()["message"] == "metadata.managedFields must be nil"
    r = apply(api, path, dict(cm, metadata={"name": "other"}), "x")
    assert r.status_code == 400
    # dryRun creates nothing
    r = apply(api, path, cm, "x", dryRun="All")
    assert r.status_code == 201
    assert api.get(path).status_code == 404
    r = api.post(f"/api/v1/namespaces/{ns}/configmaps", json=cm)
    assert r.status_code == 201
    r = api.patch(
        path,
        json={"data": {"a": "2"}},
        headers={"Content-Type": "application/merge-patch+json"},
        params={"force": "true"},
    )
    assert r.status_code == 422 and "force" in r.json()["message"]


def test_update_operations_record_managers(api: httpx.Client, ns: str) -> None:
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "u", "labels": {"x": "1"}},
        "data": {"a": "1"},
    }
    r = api.post(cms, json=cm, params={"fieldManager": "creator"})
    assert r.status_code == 201
    e = entries(r.json())[("creator", "Update")]
    assert e["fieldsV1"] == {"f:data": {".": {}, "f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:x": {}}}}
    # without fieldManager, the User-Agent up to "/" names the manager
    obj = r.json()
    obj["data"]["b"] = "2"
    r = api.put(f"{cms}/u", json=obj, headers={"User-Agent": "my-controller/v1.2 (linux)"})
    assert r.status_code == 200
    owners = entries(r.json())
    assert owners[("my-controller", "Update")]["fieldsV1"] == {"f:data": {"f:b": {}}}
    # an empty list leaves managedFields as they are; [{}] clears them
    r = api.patch(
        f"{cms}/u",
        json={"metadata": {"managedFields": []}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert len(r.json()["metadata"]["managedFields"]) == 2
    r = api.patch(
        f"{cms}/u",
        json={"metadata": {"managedFields": [{}]}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert "managedFields" not in r.json()["metadata"]


def test_status_subresource_entries(api: httpx.Client, ns: str) -> None:
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/st"
    assert apply(api, path, deployment("st", 1), "alice").status_code == 201
    r = api.patch(
        f"{path}/status",
        json={"status": {"observedGeneration": 7}},
        headers={"Content-Type": "application/merge-patch+json"},
        params={"fieldManager": "ctrl"},
    )
    assert r.status_code == 200, r.text
    e = entries(r.json())[("ctrl", "Update")]
    assert e["subresource"] == "status"
    assert e["fieldsV1"] == {"f:status": {"f:observedGeneration": {}}}
    # the scale subresource records its own entry
    r = api.patch(
        f"{path}/scale",
        json={"spec": {"replicas": 4}},
        headers={"Content-Type": "application/merge-patch+json"},
        params={"fieldManager": "hpa"},
    )
    assert r.status_code == 200, r.text
    full = api.get(path).json()
    assert entries(full)[("hpa", "Update")]["subresource"] == "scale"
    assert "f:replicas" not in entries(full)[("alice", "Apply")]["fieldsV1"]["f:spec"]


def test_apply_custom_resource_list_types(api: httpx.Client, apiserver: APIServerProcess, ns: str) -> None:
    schema = testkit_crd.widget_schema(
        spec={
            "image": {"type": "string"},
            "size": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "ports": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                },
            },
            "args": {"type": "array", "items": {"type": "string"}},
        },
        status={},
    )
    plural = unique("gadgets").replace("-", "")
    crd = testkit_crd.widget_crd(schema, plural, "Gadget", "Namespaced")
    group = crd["spec"]["group"]
    testkit_crd.create_and_wait(api, crd) if hasattr(testkit_crd, "create_and_wait") else _create_crd(
        api, crd
    )
    path = f"/apis/{group}/v1/namespaces/{ns}/{plural}/g"
    first = {
        "apiVersion": f"{group}/v1",
        "kind": "Gadget",
        "metadata": {"name": "g"},
        "spec": {
            "image": "a",
            "size": 1,
            "tags": ["a"],
            "ports": [{"name": "http", "port": 80}],
            "args": ["x"],
        },
    }
    r = _retry_apply(api, path, first, "alice")
    assert r.status_code == 201, r.text
    second = {
        "apiVersion": f"{group}/v1",
        "kind": "Gadget",
        "metadata": {"name": "g"},
        "spec": {"tags": ["b"], "ports": [{"name": "grpc", "port": 90}], "args": ["y"]},
    }
    r = apply(api, path, second, "bob")
    assert r.status_code == 409  # args is atomic and alice owns it
    assert r.json()["details"]["causes"][0]["field"] == ".spec.args"
    r = apply(api, path, second, "bob", force="true")
    assert r.status_code == 200, r.text
    spec = r.json()["spec"]
    assert spec["tags"] == ["a", "b"]
    assert [p["name"] for p in spec["ports"]] == ["http", "grpc"]
    assert spec["args"] == ["y"]
    bob = entries(r.json())[("bob", "Apply")]["fieldsV1"]["f:spec"]
    assert bob["f:tags"] == {'v:"b"': {}}
    assert 'k:{"name":"grpc"}' in bob["f:ports"]


def _create_crd(api: httpx.Client, crd: dict[str, Any]) -> None:
    import time

    r = api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert r.status_code == 201, r.text
    name = crd["metadata"]["name"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").json()
        if any(
            c["type"] == "Established" and c["status"] == "True"
            for c in got.get("status", {}).get("conditions", [])
        ):
            return
        time.sleep(0.1)
    raise AssertionError("CRD not established")


def _retry_apply(api: httpx.Client, path: str, obj: dict[str, Any], manager: str) -> httpx.Response:
    """The first request after a CRD is Established may race the registry being served."""
    import time

    deadline = time.monotonic() + 10
    while True:
        r = apply(api, path, obj, manager)
        if r.status_code != 404 or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


@pytest.fixture()
def dyn(apiserver: APIServerProcess) -> Iterator[dynamic.DynamicClient]:
    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=str(apiserver.kubeconfig), client_configuration=configuration)
    with k8s_client.ApiClient(configuration) as api_client:
        yield dynamic.DynamicClient(api_client)


def test_official_client_server_side_apply(dyn: dynamic.DynamicClient, ns: str) -> None:
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "py", "namespace": ns},
        "data": {"k": "v1"},
    }
    obj = cms.server_side_apply(body=body, namespace=ns, field_manager="py-one")
    assert obj.data.k == "v1"
    assert [m.manager for m in obj.metadata.managedFields] == ["py-one"]
    body["data"]["k"] = "v2"
    with pytest.raises(ApiException) as info:
        cms.server_side_apply(body=body, namespace=ns, field_manager="py-two")
    assert info.value.status == 409
    status = json.loads(info.value.body)
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "py-one": .data.k'
    obj = cms.server_side_apply(body=body, namespace=ns, field_manager="py-two", force_conflicts=True)
    assert obj.data.k == "v2"
    assert [(m.manager, m.operation) for m in obj.metadata.managedFields] == [("py-two", "Apply")]

    # the typed client's patch with the apply content type
    core = k8s_client.CoreV1Api(dyn.client)
    typed = core.patch_namespaced_config_map(
        "py",
        ns,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "py"},
            "data": {"k": "v2", "extra": "e"},
        },
        field_manager="py-two",
        _content_type="application/apply-patch+yaml",
    )
    assert typed.data == {"k": "v2", "extra": "e"}


def test_apply_to_the_status_subresource(api: httpx.Client, ns: str) -> None:
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/stapply"
    assert apply(api, path, deployment("stapply", 1), "alice").status_code == 201
    status_config = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "stapply"},
        "status": {"observedGeneration": 3},
    }
    r = apply(api, f"{path}/status", status_config, "ctrl")
    assert r.status_code == 200, r.text
    assert r.json()["status"]["observedGeneration"] == 3
    e = entries(r.json())[("ctrl", "Apply")]
    assert e["subresource"] == "status"
    assert e["fieldsV1"] == {"f:status": {"f:observedGeneration": {}}}
    # the main resource's apply neither changes nor owns status
    r = apply(api, path, {**deployment("stapply", 1), "status": {"observedGeneration": 9}}, "alice")
    assert r.status_code == 200, r.text
    assert r.json()["status"]["observedGeneration"] == 3
    assert "f:status" not in entries(r.json())[("alice", "Apply")]["fieldsV1"]
    # another status manager changing the field conflicts with ctrl's /status entry
    status_config["status"]["observedGeneration"] = 4
    r = apply(api, f"{path}/status", status_config, "other")
    assert r.status_code == 409
    assert r.json()["message"] == (
        'Apply failed with 1 conflict: conflict with "ctrl" with subresource "status": .status.observedGeneration'
    )


def test_apply_through_scale(api: httpx.Client, ns: str) -> None:
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/scaled"
    assert apply(api, path, deployment("scaled", 2), "alice").status_code == 201
    scale = {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "scaled"},
        "spec": {"replicas": 6},
    }
    r = apply(api, f"{path}/scale", scale, "autoscaler")
    assert r.status_code == 409, r.text
    assert r.json()["message"] == 'Apply failed with 1 conflict: conflict with "alice": .spec.replicas'
    r = apply(api, f"{path}/scale", scale, "autoscaler", force="true")
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "Scale" and r.json()["spec"]["replicas"] == 6
    full = api.get(path).json()
    e = entries(full)[("autoscaler", "Apply")]
    assert e["subresource"] == "scale" and e["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in entries(full)[("alice", "Apply")]["fieldsV1"]["f:spec"]


@pytest.mark.parametrize(
    "body",
    [
        "just a string",
        "[1, 2]",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [1]\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata: [1, 2]\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  labels: [x]\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  finalizers: {a: 1}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  ownerReferences: [1, null]\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata: {a: {b: 1}}\n",
        "{{{ not yaml",
    ],
)
def test_bad_apply_bodies_get_a_status(api: httpx.Client, ns: str, body: str) -> None:
    path = f"/api/v1/namespaces/{ns}/configmaps/bad"
    for _ in range(2):  # on a missing object, then on an existing one
        r = api.patch(path, content=body, headers=APPLY, params={"fieldManager": "fuzz"})
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["kind"] == "Status"
        api.post(
            f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "bad"}, "data": {"a": "1"}}
        )
