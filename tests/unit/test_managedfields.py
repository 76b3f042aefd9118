"""managedFields: FieldsV1 encoding, field sets of objects from the kinds' schemas, and the
ownership an Update records."""

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
POD = info_of("Pod")
SERVICE = info_of("Service")


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "ns", "uid": "u", "labels": {"app": "x"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "nginx",
                            "ports": [{"containerPort": 80}],
                            "env": [{"name": "A", "value": "1"}],
                        }
                    ]
                },
            },
        },
        "status": {"replicas": 1},
    }


def test_fields_of_a_deployment_in_kubernetes_encoding() -> None:
    fields = mf.encode_fields(mf.flatten(DEPLOYMENT, deployment()))
    assert fields == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},  # LabelSelector is atomic
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"main"}': {
                            ".": {},
                            "f:env": {'k:{"name":"A"}': {".": {}, "f:name": {}, "f:value": {}}},
                            "f:image": {},
                            "f:name": {},
                            # container ports are keyed by containerPort and protocol (TCP by default)
                            "f:ports": {
                                'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}
                            },
                        }
                    }
                },
            },
        },
    }
    # server-set metadata, apiVersion, kind and (for kinds with /status) status are nobody's
    assert not any(
        p[0] in ("f:apiVersion", "f:kind", "f:status") for p in mf.flatten(DEPLOYMENT, deployment())
    )


def test_status_scope_and_sets() -> None:
    status = mf.flatten(DEPLOYMENT, deployment(), "status")
    assert set(status) == {("f:status", "f:replicas")}
    pod = {"metadata": {"name": "p", "finalizers": ["a", "b"]}, "spec": {"containers": []}}
    paths = set(mf.flatten(POD, pod))
    assert ("f:metadata", "f:finalizers", 'v:"a"') in paths
    assert ("f:metadata", "f:finalizers", 'v:"b"') in paths


def test_encode_decode_round_trip_and_dot_marker() -> None:
    paths = {("f:data",), ("f:data", "f:a"), ("f:spec", "f:x")}
    encoded = mf.encode_fields(paths)
    assert encoded == {"f:data": {".": {}, "f:a": {}}, "f:spec": {"f:x": {}}}
    assert list(encoded["f:data"]) == [".", "f:a"]
    assert mf.decode_fields(encoded) == paths
    for bad in ({"x:y": {}}, {"f:a": 1}, []):
        with pytest.raises(ValueError):
            mf.decode_fields(bad)


def test_path_strings_as_kubernetes_prints_them() -> None:
    assert mf.path_string(("f:spec", "f:replicas")) == ".spec.replicas"
    assert (
        mf.path_string(("f:spec", "f:containers", 'k:{"name":"main"}', "f:image"))
        == '.spec.containers[name="main"].image'
    )
    assert mf.path_string(("f:metadata", "f:finalizers", 'v:"a"')) == '.metadata.finalizers[="a"]'


def test_compare_added_modified_removed() -> None:
    old = {("a",): 1, ("b",): 2, ("c",): mf.NODE}
    new = {("a",): 1, ("b",): 3, ("d",): True}
    assert mf.compare(old, new) == ({("d",)}, {("b",)}, {("c",)})
    assert mf.compare({("x",): 1}, {("x",): True}) == (set(), {("x",)}, set())


def created(info: ResourceInfo, obj: dict[str, Any], manager: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    with mf.writing(mf.Write(manager)):
        mf.track_create(info, obj)
    return obj


def updated(
    info: ResourceInfo, old: dict[str, Any], new: dict[str, Any], manager: str, sub: str = ""
) -> dict[str, Any]:
    new = copy.deepcopy(new)
    request = new["metadata"].pop("managedFields", None)
    with mf.writing(mf.Write(manager, subresource=sub)):
        mf.track_update(info, new, old, request, sub or None)
    return new


def owners(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["manager"]: e for e in obj["metadata"].get("managedFields") or []}


def test_create_gives_every_field_to_the_creator() -> None:
    obj = created(CONFIGMAP, {"metadata": {"name": "c"}, "data": {"a": "1"}}, "kubectl-create")
    (entry,) = obj["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl-create" and entry["operation"] == "Update"
    assert entry["apiVersion"] == "v1" and entry["fieldsType"] == "FieldsV1" and entry["time"]
    # an Update owns a granular map it adds as well as its keys (".")
    assert entry["fieldsV1"] == {"f:data": {".": {}, "f:a": {}}}
    assert "subresource" not in entry


def test_no_manager_no_tracking() -> None:
    obj = {"metadata": {"name": "c"}, "data": {"a": "1"}}
    mf.track_create(CONFIGMAP, obj)
    assert "managedFields" not in obj["metadata"]


def test_update_moves_changed_fields_to_the_writer() -> None:
    old = created(CONFIGMAP, {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}, "creator")
    new = copy.deepcopy(old)
    new["data"]["a"] = "changed"
    new["data"]["c"] = "3"
    del new["data"]["b"]
    result = owners(updated(CONFIGMAP, old, new, "editor"))
    assert result["editor"]["fieldsV1"] == {"f:data": {"f:a": {}, "f:c": {}}}
    # the creator lost a (taken) and b (removed); it still owns the map it added
    assert result["creator"]["fieldsV1"] == {"f:data": {}}
    # a write that changes nothing leaves the entries exactly as they were
    same = updated(CONFIGMAP, old, copy.deepcopy(old), "editor")
    assert same["metadata"]["managedFields"] == old["metadata"]["managedFields"]


def test_status_and_scale_entries_name_their_subresource() -> None:
    old = created(DEPLOYMENT, deployment(), "creator")
    new = copy.deepcopy(old)
    new["status"] = {"replicas": 2, "readyReplicas": 2}
    result = owners(updated(DEPLOYMENT, old, new, "ctrl", "status"))
    assert result["ctrl"]["subresource"] == "status"
    assert result["ctrl"]["fieldsV1"] == {"f:status": {"f:readyReplicas": {}, "f:replicas": {}}}
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 9
    with mf.writing(mf.Write("hpa", subresource="scale")):
        request = new["metadata"].pop("managedFields")
        mf.track_update(DEPLOYMENT, new, old, request, None)
    result = owners(new)
    assert result["hpa"]["subresource"] == "scale"
    assert result["hpa"]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}


def test_managed_fields_from_the_request() -> None:
    old = created(CONFIGMAP, {"metadata": {"name": "c"}, "data": {"a": "1"}}, "creator")
    # [{}] clears every entry
    new = copy.deepcopy(old)
    new["metadata"]["managedFields"] = [{}]
    assert "managedFields" not in updated(CONFIGMAP, old, new, "x")["metadata"]
    # an empty list is ignored: the stored entries stay
    new["metadata"]["managedFields"] = []
    assert owners(updated(CONFIGMAP, old, new, "x")).keys() == {"creator"}
    # a valid list replaces them; an invalid one is ignored
    entry = {
        "manager": "other",
        "operation": "Update",
        "apiVersion": "v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {"f:a": {}}},
    }
    new["metadata"]["managedFields"] = [entry]
    assert owners(updated(CONFIGMAP, old, new, "x")).keys() == {"other"}
    new["metadata"]["managedFields"] = [{"manager": "bad", "operation": "Sideways"}]
    assert owners(updated(CONFIGMAP, old, new, "x")).keys() == {"creator"}


def test_entries_sorted_apply_first() -> None:
    entries = [
        mf.Manager("b", "Update", "v1", time="2024-01-02T00:00:00Z", fields={("f:x",)}),
        mf.Manager("a", "Update", "v1", time="2024-01-01T00:00:00Z", fields={("f:y",)}),
        mf.Manager("z", "Apply", "v1", time="2025-01-01T00:00:00Z", fields={("f:z",)}),
        mf.Manager("empty", "Apply", "v1", fields=set()),
    ]
    assert [e["manager"] for e in mf.encode_managed(entries)] == ["z", "a", "b"]


def test_field_manager_validation() -> None:
    mf.validate_field_manager("kubectl", "PatchOptions", apply=True)
    with pytest.raises(errors.Invalid) as e:
        mf.validate_field_manager("", "PatchOptions", apply=True)
    assert (
        str(e.value)
        == 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
    )
    with pytest.raises(errors.Invalid):
        mf.validate_field_manager("x" * 129, "CreateOptions")
    with pytest.raises(errors.Invalid):
        mf.validate_field_manager("bad\x00name", "UpdateOptions")
    assert mf.manager_name("", "kubectl/v1.32.0 (linux/amd64) kubernetes/abc") == "kubectl"
    assert mf.manager_name("mine", "kubectl/v1.32.0") == "mine"


@pytest.mark.parametrize(
    ("info", "obj"),
    [
        (DEPLOYMENT, deployment()),
        (
            POD,
            {"metadata": {"name": "p", "finalizers": ["a", "b"], "labels": {}}, "spec": {"containers": []}},
        ),
        (
            CONFIGMAP,
            {"metadata": {"name": "c", "annotations": {"x": "y"}}, "data": {"a": "1"}, "binaryData": {}},
        ),
        (
            SERVICE,
            {
                "metadata": {"name": "s"},
                "spec": {"ports": [{"port": 80}, {"port": 80, "protocol": "UDP"}], "selector": {"a": "b"}},
            },
        ),
        (
            POD,
            {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "a", "image": "x"}]}},
        ),
        (CONFIGMAP, {"metadata": {"name": "c"}, "data": {"a": "1"}, "extra": {"m": {"n": []}}}),
    ],
)
def test_one_walk_fields_match_the_field_set(info: ResourceInfo, obj: dict[str, Any]) -> None:
    """Creates build fieldsV1 in one walk; it must be what the field set encodes to."""
    assert mf.fields_v1(info, obj) == mf.encode_fields(mf.flatten(info, obj))
    assert mf.fields_v1(info, obj, update=True) == mf.encode_fields(mf.flatten(info, obj, update=True))


def test_update_entries_own_added_maps_and_custom_objects_nodes() -> None:
    fields = mf.encode_fields(mf.flatten(DEPLOYMENT, deployment(), update=True))
    assert fields["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    assert "." not in fields["f:spec"]  # a built-in kind's value structs are always there
    custom = replace(
        CONFIGMAP, kind="Gadget", group="example.com", custom=True, schema=None, has_status=False
    )
    fields = mf.encode_fields(
        mf.flatten(custom, {"metadata": {"name": "g"}, "spec": {"a": {"b": 1}}}, update=True)
    )
    assert fields == {"f:spec": {".": {}, "f:a": {".": {}, "f:b": {}}}}


def test_update_managers_are_capped_into_ancient_changes() -> None:
    managers = [
        mf.Manager(
            f"m{i:02}", "Update", "v1", time=f"2024-01-{i + 1:02}T00:00:00Z", fields={("f:data", f"f:k{i}")}
        )
        for i in range(12)
    ]
    managers.append(
        mf.Manager("applier", "Apply", "v1", time="2024-01-01T00:00:00Z", fields={("f:data", "f:z")})
    )
    capped = mf.cap_update_managers(managers)
    updates = [m for m in capped if m.operation == "Update"]
    assert len(updates) == 10
    ancient = next(m for m in capped if m.manager == "ancient-changes")
    assert ancient.fields == {("f:data", "f:k0"), ("f:data", "f:k1"), ("f:data", "f:k2")}
    assert ancient.time == "2024-01-03T00:00:00Z"
    assert {m.manager for m in capped} >= {"applier", "m03", "m11"}
    assert mf.cap_update_managers(capped) == capped
