"""Server-side apply as a pure function: merge by the schema's list and map types, removal of what
a manager no longer applies, conflicts with other managers, force, and custom resources."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from apimachinery import errors
from apimachinery.resources import RESOURCES, ResourceInfo
from apiserver import managedfields as mf


def info_of(kind: str) -> ResourceInfo:
    return next(r for r in RESOURCES if r.kind == kind and not r.custom)


DEPLOYMENT = info_of("Deployment")
CONFIGMAP = info_of("ConfigMap")
SERVICE = info_of("Service")


def cm(**data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data}


def dep(
    replicas: int | None = None, containers: list[dict[str, Any]] | None = None, **labels: str
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if replicas is not None:
        spec["replicas"] = replicas
    if containers is not None:
        spec["template"] = {"spec": {"containers": containers}}
    meta: dict[str, Any] = {"name": "d"}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


EMPTY = {"metadata": {"name": "c"}}


def managers(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields") or []}


def test_apply_then_reapply_without_a_key_removes_it() -> None:
    live = mf.apply(CONFIGMAP, EMPTY, cm(a="1", b="2"), "one")
    assert managers(live)[("one", "Apply")]["fieldsV1"] == {"f:data": {"f:a": {}, "f:b": {}}}
    live = mf.apply(CONFIGMAP, live, cm(a="1"), "one")
    assert live["data"] == {"a": "1"}
    live = mf.apply(
        CONFIGMAP, live, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}, "one"
    )
    assert "data" not in live  # the emptied map goes too
    assert "managedFields" not in live["metadata"]


def test_identical_apply_is_a_no_op() -> None:
    live = mf.apply(CONFIGMAP, EMPTY, cm(a="1"), "one")
    again = mf.apply(CONFIGMAP, copy.deepcopy(live), cm(a="1"), "one")
    assert again == live


def test_conflict_with_an_update_manager_and_force() -> None:
    live = mf.apply(CONFIGMAP, EMPTY, cm(a="1"), "one")
    edited = copy.deepcopy(live)
    edited["data"]["a"] = "2"
    with mf.writing(mf.Write("editor", api_version="v1")):
        mf.track_update(CONFIGMAP, edited, live, edited["metadata"].pop("managedFields"), None)
    with pytest.raises(errors.Conflict) as e:
        mf.apply(CONFIGMAP, edited, cm(a="3"), "one")
    status = e.value.status()
    assert status["code"] == 409 and status["reason"] == "Conflict"
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "editor" using v1: .data.a'
    assert status["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "editor" using v1', "field": ".data.a"}
    ]
    forced = mf.apply(CONFIGMAP, edited, cm(a="3"), "one", force=True)
    assert forced["data"]["a"] == "3"
    assert list(managers(forced)) == [("one", "Apply")]


def test_several_conflicts_grouped_by_manager() -> None:
    live = mf.apply(CONFIGMAP, EMPTY, cm(a="1", b="1"), "alpha")
    live = mf.apply(CONFIGMAP, live, {**cm(c="1")}, "beta")
    with pytest.raises(errors.Conflict) as e:
        mf.apply(CONFIGMAP, live, cm(a="2", b="2", c="2"), "gamma")
    assert str(e.value) == (
        'Apply failed with 3 conflicts: conflicts with "alpha":\n- .data.a\n- .data.b\nconflicts with "beta":\n- .data.c'
    )
    assert [c["field"] for c in e.value.causes] == [".data.a", ".data.b", ".data.c"]


def test_same_value_is_shared_and_survives_one_owner_leaving() -> None:
    live = mf.apply(CONFIGMAP, EMPTY, cm(a="1", b="1"), "one")
    live = mf.apply(CONFIGMAP, live, cm(a="1"), "two")  # same value: no conflict
    assert managers(live)[("two", "Apply")]["fieldsV1"] == {"f:data": {"f:a": {}}}
    live = mf.apply(CONFIGMAP, live, cm(b="1"), "one")
    assert live["data"] == {"a": "1", "b": "1"}  # a stays: two still applies it


def test_associative_lists_merge_by_key_and_atomic_fields_replace() -> None:
    main = {"name": "main", "image": "nginx", "ports": [{"containerPort": 80}]}
    live = mf.apply(DEPLOYMENT, {"metadata": {"name": "d"}}, dep(1, [main], app="x"), "one")
    side = {"name": "side", "image": "busybox", "env": [{"name": "A", "value": "1"}]}
    live = mf.apply(DEPLOYMENT, live, dep(None, [side]), "two")
    assert [c["name"] for c in live["spec"]["template"]["spec"]["containers"]] == ["main", "side"]
    # one changes its container's image; two's container is untouched
    live = mf.apply(DEPLOYMENT, live, dep(1, [dict(main, image="nginx:2")], app="x"), "one")
    containers = live["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == "nginx:2" and containers[1] == side
    # two changing one's image conflicts on exactly that field
    with pytest.raises(errors.Conflict) as e:
        mf.apply(DEPLOYMENT, live, dep(None, [{"name": "main", "image": "other"}]), "two")
    assert [c["field"] for c in e.value.causes] == ['.spec.template.spec.containers[name="main"].image']
    # two stops applying its container: removed, with everything inside it
    live = mf.apply(DEPLOYMENT, live, dep(None, []), "two")
    assert [c["name"] for c in live["spec"]["template"]["spec"]["containers"]] == ["main"]


def test_port_keys_default_protocol() -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]},
    }
    live = mf.apply(SERVICE, {"metadata": {"name": "s"}}, svc, "one")
    patch = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "name": "web"}]},
    }
    live = mf.apply(SERVICE, live, patch, "two")
    assert live["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 8080, "name": "web"}]


def custom_info() -> ResourceInfo:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                    "items": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}, "v": {"type": "integer"}},
                        },
                    },
                    "args": {"type": "array", "items": {"type": "string"}},
                    "opts": {
                        "type": "object",
                        "x-kubernetes-map-type": "atomic",
                        "additionalProperties": {"type": "string"},
                    },
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }
        },
    }
    base = next(r for r in RESOURCES if r.kind == "ConfigMap")
    return replace(
        base,
        group="example.com",
        version="v1",
        kind="Gadget",
        plural="gadgets",
        custom=True,
        schema=schema,
        has_status=False,
    )


def gadget(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": spec}


def test_custom_resource_list_and_map_types() -> None:
    info = custom_info()
    live = mf.apply(
        info,
        {"metadata": {"name": "g"}},
        gadget(tags=["a"], items=[{"name": "x", "v": 1}], args=["1"], opts={"k": "v"}, free={"n": {"m": 1}}),
        "one",
    )
    fields = managers(live)[("one", "Apply")]["fieldsV1"]["f:spec"]
    assert fields["f:tags"] == {'v:"a"': {}}
    assert fields["f:items"] == {'k:{"name":"x"}': {".": {}, "f:name": {}, "f:v": {}}}
    assert fields["f:args"] == {} and fields["f:opts"] == {}
    assert fields["f:free"] == {"f:n": {".": {}, "f:m": {}}}
    live = mf.apply(info, live, gadget(tags=["b"], items=[{"name": "y", "v": 2}]), "two")
    assert live["spec"]["tags"] == ["a", "b"]
    assert [i["name"] for i in live["spec"]["items"]] == ["x", "y"]
    with pytest.raises(errors.Conflict) as e:
        mf.apply(info, live, gadget(args=["2"], opts={"k": "other"}), "two")
    assert sorted(c["field"] for c in e.value.causes) == [".spec.args", ".spec.opts"]
    live = mf.apply(info, live, gadget(args=["2"], opts={"z": "1"}), "two", force=True)
    assert live["spec"]["args"] == ["2"] and live["spec"]["opts"] == {"z": "1"}


def test_config_checks() -> None:
    assert mf.check_config(CONFIGMAP, cm(a="1"), "c")
    with pytest.raises(errors.BadRequest, match="invalid object type"):
        mf.check_config(CONFIGMAP, {"metadata": {"name": "c"}}, "c")
    with pytest.raises(errors.BadRequest, match="metadata.managedFields must be nil"):
        mf.check_config(CONFIGMAP, {**cm(), "metadata": {"name": "c", "managedFields": []}}, "c")
    with pytest.raises(errors.BadRequest, match="does not match the name on the URL"):
        mf.check_config(CONFIGMAP, cm(), "other")
    with pytest.raises(errors.BadRequest):
        mf.check_config(CONFIGMAP, ["not", "an", "object"], "c")
    with pytest.raises(errors.BadRequest, match="namespace of the provided object"):
        mf.check_config(CONFIGMAP, {**cm(), "metadata": {"name": "c", "namespace": "b"}}, "c", "a")
    assert mf.check_config(CONFIGMAP, {**cm(), "metadata": {"name": "c", "namespace": "a"}}, "c", "a")


@pytest.mark.parametrize(
    ("live", "config", "merged"),
    [("ab", "bc", "abc"), ("ab", "ca", "cab"), ("abc", "cxa", "bcxa"), ("abc", "", "abc"), ("", "xy", "xy")],
)
def test_associative_list_order_as_structured_merge_diff(live: str, config: str, merged: str) -> None:
    t = mf.Type(mf.LIST_MAP, keys=("name",))
    result = mf._merge_value([{"name": n} for n in live], [{"name": n} for n in config], t)
    assert "".join(i["name"] for i in result) == merged


def test_config_of_the_wrong_types_is_a_bad_request() -> None:
    with pytest.raises(errors.BadRequest) as e:
        mf.check_config(CONFIGMAP, {**cm(), "data": [1]}, "c")
    assert (
        str(e.value)
        == "failed to create typed patch object (/v1, Kind=ConfigMap): .data: expected map, got list"
    )
    with pytest.raises(errors.BadRequest, match=r"\.spec\.replicas: expected scalar"):
        mf.check_config(DEPLOYMENT, {**dep(), "spec": {"replicas": {"x": 1}}}, "d")
    with pytest.raises(errors.BadRequest, match=r"containers: expected list"):
        mf.check_config(DEPLOYMENT, dep(None, {"name": "x"}), "d")  # type: ignore[arg-type]
