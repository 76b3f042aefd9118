"""CustomResourceDefinitions against a real etcd and API server: a CRD is Established and its
versions are served like built-in kinds (CRUD, selectors, paging, watch, status and scale,
Tables, discovery), custom objects are validated, pruned and defaulted, a malformed CRD or a name
conflict is reported, and deleting the CRD deletes its objects and stops serving them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit import crd as testkit_crd
from testkit.api import create_namespace, merge_patch, owner_ref
from testkit.processes import APIServerProcess, controller_manager, running

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
SCHEMA = testkit_crd.widget_schema(
    spec={
        "image": {"type": "string", "pattern": "^[a-z]+$"},
        "replicas": {"type": "integer", "minimum": 0, "default": 1},
        "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
    },
    status={"ready": {"type": "integer"}, "selector": {"type": "string"}},
)


def widget_crd(plural: str = "widgets", kind: str = "Widget", scope: str = "Namespaced") -> dict[str, Any]:
    return testkit_crd.widget_crd(SCHEMA, plural, kind, scope)


def wait_for(check: Any, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def condition(api: httpx.Client, name: str, type_: str) -> dict[str, Any] | None:
    r = api.get(f"{CRDS}/{name}")
    if r.status_code != 200:
        return None
    return next(
        (c for c in (r.json().get("status") or {}).get("conditions") or [] if c["type"] == type_), None
    )


def established(api: httpx.Client, name: str) -> bool:
    c = condition(api, name, "Established")
    return c is not None and c["status"] == "True"


@pytest.fixture()
def widgets(api: httpx.Client) -> Iterator[str]:
    r = api.post(CRDS, json=widget_crd())
    assert r.status_code == 201, r.text
    assert r.json()["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]
    wait_for(lambda: established(api, "widgets.example.com"), "the CRD to be Established")
    ns = create_namespace(api, "crd")
    try:
        yield f"/apis/example.com/v1/namespaces/{ns}/widgets"
    finally:
        api.delete(f"{CRDS}/widgets.example.com")
        wait_for(lambda: api.get(f"{CRDS}/widgets.example.com").status_code == 404, "the CRD to be deleted")


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


def test_conditions_and_discovery(api: httpx.Client, widgets: str) -> None:
    crd = api.get(f"{CRDS}/widgets.example.com").json()
    names = {c["type"]: c for c in crd["status"]["conditions"]}
    assert names["NamesAccepted"]["reason"] == "NoConflicts"
    assert names["Established"]["reason"] == "InitialNamesAccepted"
    assert crd["status"]["acceptedNames"]["singular"] == "widget"
    assert crd["status"]["storedVersions"] == ["v1"]
    group = api.get("/apis/example.com").json()
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    assert group["preferredVersion"]["version"] == "v1"
    rl = api.get("/apis/example.com/v1").json()
    by_name = {r["name"]: r for r in rl["resources"]}
    assert by_name["widgets"]["kind"] == "Widget" and by_name["widgets"]["namespaced"] is True
    assert by_name["widgets"]["shortNames"] == ["wix"] and by_name["widgets"]["categories"] == ["all"]
    assert by_name["widgets/scale"]["kind"] == "Scale" and "widgets/status" in by_name
    agg = api.get(
        "/apis", headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"}
    )
    groups = {g["metadata"]["name"]: g for g in agg.json()["items"]}
    res = groups["example.com"]["versions"][0]["resources"][0]
    assert res["resource"] == "widgets" and res["shortNames"] == ["wix"]
    assert {s["subresource"] for s in res["subresources"]} == {"status", "scale"}


def test_crud_validation_pruning_defaults_and_versions(api: httpx.Client, widgets: str) -> None:
    beta = widgets.replace("/v1/", "/v1beta1/")
    body = widget("a", image="nginx", junk=True)
    body["apiVersion"] = "example.com/v1beta1"
    body["topJunk"] = 1
    r = api.post(beta, json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["apiVersion"] == "example.com/v1beta1"
    assert created["spec"] == {"image": "nginx", "replicas": 1, "mode": "fast"}
    assert "topJunk" not in created and created["metadata"]["generation"] == 1
    stored = api.get(f"{widgets}/a").json()
    assert stored["apiVersion"] == "example.com/v1" and stored["spec"] == created["spec"]
    bad = api.post(widgets, json=widget("b", image="NGINX", replicas=-1, mode="medium"))
    assert bad.status_code == 422, bad.text
    status = bad.json()
    assert status["reason"] == "Invalid" and status["details"]["kind"] == "Widget"
    assert {c["field"] for c in status["details"]["causes"]} == {"spec.image", "spec.replicas", "spec.mode"}
    missing = api.post(widgets, json=widget("c"))
    assert missing.status_code == 422 and missing.json()["details"]["causes"][0]["field"] == "spec.image"
    stored["spec"]["image"] = "redis"
    r = api.put(f"{widgets}/a", json=stored)
    assert r.status_code == 200 and r.json()["metadata"]["generation"] == 2
    r = merge_patch(api, f"{widgets}/a", {"spec": {"replicas": 3}})
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 3
    assert api.delete(f"{widgets}/a").status_code == 200
    assert api.get(f"{widgets}/a").status_code == 404


def test_list_selectors_paging_and_watch(api: httpx.Client, widgets: str) -> None:
    for i in range(5):
        obj = widget(f"w{i}", image="nginx")
        obj["metadata"]["labels"] = {"parity": "even" if i % 2 == 0 else "odd"}
        assert api.post(widgets, json=obj).status_code == 201
    even = api.get(widgets, params={"labelSelector": "parity=even"}).json()
    assert even["kind"] == "WidgetList" and [o["metadata"]["name"] for o in even["items"]] == [
        "w0",
        "w2",
        "w4",
    ]
    one = api.get(widgets, params={"fieldSelector": "metadata.name=w3"}).json()
    assert [o["metadata"]["name"] for o in one["items"]] == ["w3"]
    page = api.get(widgets, params={"limit": "2"}).json()
    assert len(page["items"]) == 2 and page["metadata"]["continue"]
    rest = api.get(widgets, params={"limit": "10", "continue": page["metadata"]["continue"]}).json()
    assert [o["metadata"]["name"] for o in page["items"] + rest["items"]] == [f"w{i}" for i in range(5)]
    rv = page["metadata"]["resourceVersion"]
    with api.stream(
        "GET", widgets, params={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "10"}
    ) as s:
        assert api.post(widgets, json=widget("late", image="nginx")).status_code == 201
        for line in s.iter_lines():
            event = json.loads(line)
            if event["object"]["metadata"]["name"] == "late":
                assert event["type"] == "ADDED" and event["object"]["apiVersion"] == "example.com/v1"
                break
    table = api.get(widgets, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Replicas", "Image"]
    assert table["rows"][0]["cells"] == ["late", 1, "nginx"]


def test_status_scale_and_finalizers(api: httpx.Client, widgets: str) -> None:
    obj = api.post(widgets, json=widget("s", image="nginx")).json()
    obj["status"] = {"ready": 1, "selector": "app=s"}
    main = api.put(f"{widgets}/s", json=obj).json()
    assert "ready" not in (main.get("status") or {})
    main["status"] = {"ready": 1, "selector": "app=s"}
    st = api.put(f"{widgets}/s/status", json=main)
    assert st.status_code == 200 and st.json()["status"]["ready"] == 1
    assert st.json()["metadata"]["generation"] == 1
    scale = api.get(f"{widgets}/s/scale").json()
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1
    assert scale["status"] == {"replicas": 1, "selector": "app=s"}
    scale["spec"]["replicas"] = 4
    assert api.put(f"{widgets}/s/scale", json=scale).status_code == 200
    assert api.get(f"{widgets}/s").json()["spec"]["replicas"] == 4
    fin = widget("f", image="nginx")
    fin["metadata"]["finalizers"] = ["example.com/hold"]
    assert api.post(widgets, json=fin).status_code == 201
    r = api.delete(f"{widgets}/f")
    assert r.status_code == 200 and r.json()["metadata"]["deletionTimestamp"]
    merge_patch(api, f"{widgets}/f", {"metadata": {"finalizers": None}})
    assert api.get(f"{widgets}/f").status_code == 404


def test_cluster_scope_and_name_conflict(api: httpx.Client) -> None:
    crd = widget_crd("clusterthings", "ClusterThing", "Cluster")
    del crd["spec"]["versions"][1]
    assert api.post(CRDS, json=crd).status_code == 201
    try:
        wait_for(lambda: established(api, "clusterthings.example.com"), "the cluster-scoped CRD")
        path = "/apis/example.com/v1/clusterthings"
        r = api.post(
            path,
            json={
                "apiVersion": "example.com/v1",
                "kind": "ClusterThing",
                "metadata": {"name": "x"},
                "spec": {"image": "a"},
            },
        )
        assert r.status_code == 201, r.text
        assert "namespace" not in r.json()["metadata"]
        assert api.get(f"{path}/x").json()["spec"]["replicas"] == 1
        clash = widget_crd("otherthings", "ClusterThing", "Cluster")
        clash["spec"]["names"]["shortNames"] = []
        clash["spec"]["names"]["singular"] = "otherthing"  # else the defaulted singular clashes first
        assert api.post(CRDS, json=clash).status_code == 201
        cond = wait_for(lambda: condition(api, "otherthings.example.com", "NamesAccepted"), "NamesAccepted")
        assert (cond["status"], cond["reason"]) == ("False", "KindConflict")
        assert condition(api, "otherthings.example.com", "Established")["status"] == "False"  # type: ignore[index]
        assert api.get("/apis/example.com/v1/otherthings").status_code == 404
    finally:
        api.delete(f"{CRDS}/otherthings.example.com")
        api.delete(f"{CRDS}/clusterthings.example.com")
        wait_for(lambda: api.get(f"{CRDS}/clusterthings.example.com").status_code == 404, "cleanup")


def test_malformed_crd_is_rejected(api: httpx.Client) -> None:
    crd = widget_crd("brokens")
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["x"] = {}
    crd["spec"]["versions"][1]["storage"] = True
    r = api.post(CRDS, json=crd)
    assert r.status_code == 422, r.text
    fields = {c["field"] for c in r.json()["details"]["causes"]}
    assert "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[x].type" in fields
    assert "spec.versions" in fields
    assert api.get(f"{CRDS}/brokens.example.com").status_code == 404


def test_deleting_the_crd_deletes_objects_and_stops_serving(api: httpx.Client) -> None:
    assert api.post(CRDS, json=widget_crd("gizmos", "Gizmo")).status_code == 201
    wait_for(lambda: established(api, "gizmos.example.com"), "the CRD")
    ns = create_namespace(api, "crddel")
    path = f"/apis/example.com/v1/namespaces/{ns}/gizmos"
    for i in range(3):
        body = {
            "apiVersion": "example.com/v1",
            "kind": "Gizmo",
            "metadata": {"name": f"g{i}"},
            "spec": {"image": "a"},
        }
        assert api.post(path, json=body).status_code == 201
    held = {
        "apiVersion": "example.com/v1",
        "kind": "Gizmo",
        "metadata": {"name": "held"},
        "spec": {"image": "a"},
    }
    held["metadata"]["finalizers"] = ["example.com/hold"]  # type: ignore[index]
    assert api.post(path, json=held).status_code == 201
    assert api.delete(f"{CRDS}/gizmos.example.com").status_code == 200
    # the held object keeps the CRD Terminating; creates are refused meanwhile
    terminating = wait_for(lambda: condition(api, "gizmos.example.com", "Terminating"), "Terminating")
    assert (terminating["status"], terminating["reason"]) == ("True", "InstanceDeletionInProgress")
    wait_for(lambda: len(api.get(path).json()["items"]) == 1, "the other objects to be deleted")
    body = {
        "apiVersion": "example.com/v1",
        "kind": "Gizmo",
        "metadata": {"name": "late"},
        "spec": {"image": "a"},
    }
    refused = api.post(path, json=body)
    assert refused.status_code == 405, refused.text
    assert refused.json()["message"] == "create not allowed while custom resource definition is terminating"
    assert api.get(f"{CRDS}/gizmos.example.com").status_code == 200
    held_now = api.get(f"{path}/held").json()
    assert held_now["metadata"]["deletionTimestamp"]
    merge_patch(api, f"{path}/held", {"metadata": {"finalizers": None}})
    wait_for(lambda: api.get(f"{CRDS}/gizmos.example.com").status_code == 404, "the CRD to go")
    assert api.get(path).status_code == 404
    assert api.get("/apis/example.com/v1").status_code in (200, 404)
    assert "gizmos" not in {
        r["name"] for r in (api.get("/apis/example.com/v1").json().get("resources") or [])
    }
    # created again: no object survived
    assert api.post(CRDS, json=widget_crd("gizmos", "Gizmo")).status_code == 201
    try:
        wait_for(lambda: established(api, "gizmos.example.com"), "the CRD again")
        assert api.get(path).json()["items"] == []
    finally:
        api.delete(f"{CRDS}/gizmos.example.com")
        wait_for(lambda: api.get(f"{CRDS}/gizmos.example.com").status_code == 404, "cleanup")


def test_garbage_collector_sees_custom_kinds(api: httpx.Client, apiserver: APIServerProcess) -> None:
    """Owner references to and from custom objects: the controller manager, started before the CRD
    exists, learns the kind when it is Established."""
    with running(controller_manager(apiserver)):
        assert api.post(CRDS, json=widget_crd("sprockets", "Sprocket")).status_code == 201
        try:
            wait_for(lambda: established(api, "sprockets.example.com"), "the CRD")
            ns = create_namespace(api, "crdgc")
            path = f"/apis/example.com/v1/namespaces/{ns}/sprockets"
            cms = f"/api/v1/namespaces/{ns}/configmaps"

            def sprocket(name: str, **meta: Any) -> dict[str, Any]:
                body = {
                    "apiVersion": "example.com/v1",
                    "kind": "Sprocket",
                    "metadata": {"name": name, **meta},
                }
                return body | {"spec": {"image": "a"}}

            # a ConfigMap owned by a custom object goes with it (background)
            owner = api.post(path, json=sprocket("owner")).json()
            ref = owner_ref(owner, "example.com/v1", "Sprocket", blockOwnerDeletion=True)
            child = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "child", "ownerReferences": [ref]},
            }
            assert api.post(cms, json=child).status_code == 201
            assert api.delete(f"{path}/owner").status_code == 200
            wait_for(
                lambda: api.get(f"{cms}/child").status_code == 404, "the ConfigMap owned by the custom object"
            )
            # a custom object owned by a ConfigMap goes with it
            cm = api.post(
                cms, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "holder"}}
            ).json()
            owned = sprocket("owned", ownerReferences=[owner_ref(cm, "v1", "ConfigMap")])
            assert api.post(path, json=owned).status_code == 201
            assert api.delete(f"{cms}/holder").status_code == 200
            wait_for(
                lambda: api.get(f"{path}/owned").status_code == 404, "the custom object owned by a ConfigMap"
            )
            # foreground deletion of a custom object waits for its dependent
            fg = api.post(path, json=sprocket("fg")).json()
            ref = owner_ref(fg, "example.com/v1", "Sprocket", blockOwnerDeletion=True)
            child["metadata"] = {"name": "fg-child", "ownerReferences": [ref]}
            assert api.post(cms, json=child).status_code == 201
            r = api.request("DELETE", f"{path}/fg", json={"propagationPolicy": "Foreground"})
            assert r.status_code == 200 and "foregroundDeletion" in r.json()["metadata"]["finalizers"]
            wait_for(lambda: api.get(f"{path}/fg").status_code == 404, "the foreground owner")
            assert api.get(f"{cms}/fg-child").status_code == 404
            # a deleted namespace loses its custom objects
            assert api.post(path, json=sprocket("left")).status_code == 201
            assert api.delete(f"/api/v1/namespaces/{ns}").status_code == 200
            wait_for(
                lambda: api.get(f"/api/v1/namespaces/{ns}").status_code == 404, "the namespace to go", 40
            )
            assert api.get("/apis/example.com/v1/sprockets").json()["items"] == []
        finally:
            api.delete(f"{CRDS}/sprockets.example.com")
            wait_for(lambda: api.get(f"{CRDS}/sprockets.example.com").status_code == 404, "cleanup")


def test_garbage_collector_stops_watching_the_kind_of_a_deleted_crd(
    api: httpx.Client, apiserver: APIServerProcess
) -> None:
    """Once a CRD is deleted the controller manager drops its informer of the kind (which the API
    server no longer serves); made again, the kind is watched anew and collected as before."""
    cm = controller_manager(apiserver)
    namespaces: list[str] = []
    with running(cm):
        try:
            for attempt in (1, 2):
                assert api.post(CRDS, json=widget_crd("gears", "Gear")).status_code == 201
                wait_for(lambda: established(api, "gears.example.com"), "the CRD")
                ns = create_namespace(api, f"crdgc-drop{attempt}")
                namespaces.append(ns)
                path = f"/apis/example.com/v1/namespaces/{ns}/gears"
                cms = f"/api/v1/namespaces/{ns}/configmaps"
                body = {"apiVersion": "example.com/v1", "kind": "Gear", "metadata": {"name": "owner"}}
                owner = api.post(path, json=body | {"spec": {"image": "a"}}).json()
                ref = owner_ref(owner, "example.com/v1", "Gear")
                child = {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "child", "ownerReferences": [ref]},
                }
                assert api.post(cms, json=child).status_code == 201
                assert api.delete(f"{path}/owner").status_code == 200
                wait_for(
                    lambda cms=cms: api.get(f"{cms}/child").status_code == 404,
                    "the dependent of the custom object",
                )
                assert api.delete(f"{CRDS}/gears.example.com").status_code == 200
                wait_for(lambda: api.get(f"{CRDS}/gears.example.com").status_code == 404, "the CRD to go")
                wait_for(
                    lambda n=attempt: cm.log(10**7).count("no longer watching gears.example.com") == n,
                    "the controller manager to stop watching the kind",
                )
        finally:
            api.delete(f"{CRDS}/gears.example.com")
            for ns in namespaces:
                api.delete(f"/api/v1/namespaces/{ns}")
