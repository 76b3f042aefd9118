"""CustomResourceDefinitions: the CRD's own validation, and the structural schema of custom objects
(pruning, defaulting, validation with causes naming the fields), the Table columns and Scale view."""

from __future__ import annotations

import copy
import json
from typing import Any

from apimachinery import printers
from apimachinery.resources import register_custom, unregister_custom
from apiserver import crd, crdschema, openapi, strategy
from testkit.crd import widget_crd, widget_schema

SCHEMA = widget_schema(
    spec={
        "image": {
            "type": "string",
            "pattern": "^[a-z]+(:[0-9.]+)?$",
            "minLength": 2,
            "maxLength": 20,
        },
        "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
        "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
        "port": {"x-kubernetes-int-or-string": True},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
        "note": {"type": "string", "nullable": True},
        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "template": {
            "type": "object",
            "x-kubernetes-embedded-resource": True,
            "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}},
        },
    },
    status={"ready": {"type": "integer"}},
)


def make_crd(**overrides: Any) -> dict[str, Any]:
    crd_obj = widget_crd(SCHEMA, short_names=["wd"])
    crd_obj["spec"].update(overrides)
    crdschema.default_crd(crd_obj)
    return crd_obj


def fields(causes: list[dict[str, str]]) -> list[str]:
    return [c["field"] for c in causes]


def test_a_good_crd_is_valid_and_defaulted() -> None:
    c = make_crd()
    assert crdschema.validate_crd(c) == []
    assert c["spec"]["names"]["singular"] == "widget"
    assert c["spec"]["names"]["listKind"] == "WidgetList"
    assert c["spec"]["conversion"] == {"strategy": "None"}


def test_crd_names_scope_and_group_are_checked() -> None:
    c = make_crd(scope="Regional", group="example")
    c["metadata"]["name"] = "other.example"
    c["spec"]["names"]["plural"] = "Widgets"
    c["spec"]["names"]["shortNames"] = ["W D"]
    got = fields(crdschema.validate_crd(c))
    assert "spec.scope" in got
    assert "spec.group" in got
    assert "spec.names.plural" in got
    assert "spec.names.shortNames[0]" in got
    assert "metadata.name" in got


def test_exactly_one_storage_version_and_conversion_none() -> None:
    c = make_crd()
    c["spec"]["versions"][1]["storage"] = True
    c["spec"]["conversion"] = {"strategy": "Webhook"}
    causes = crdschema.validate_crd(c)
    messages = {x["field"]: x["message"] for x in causes}
    assert "must have exactly one version marked as storage version" in messages["spec.versions"]
    assert 'Unsupported value: "Webhook"' in messages["spec.conversion.strategy"]


def test_a_non_structural_schema_is_rejected_with_the_field() -> None:
    c = make_crd()
    props = c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    props["untyped"] = {"description": "no type"}
    props["ref"] = {"$ref": "#/definitions/x", "type": "object"}
    props["list"] = {"type": "array"}
    props["bad"] = {"type": "map"}
    got = {x["field"]: x["message"] for x in crdschema.validate_crd(c)}
    base = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties"
    assert got[f"{base}[untyped].type"] == "Required value: must not be empty for specified object fields"
    assert f"{base}[ref].$ref" in got
    assert f"{base}[list].items" in got
    assert got[f"{base}[bad].type"].startswith('Unsupported value: "map"')


def test_a_missing_schema_is_required() -> None:
    c = make_crd()
    del c["spec"]["versions"][1]["schema"]
    got = {x["field"]: x["message"] for x in crdschema.validate_crd(c)}
    assert got["spec.versions[1].schema.openAPIV3Schema"] == "Required value: schemas are required"


def test_resources_of_serves_versions_in_priority_order() -> None:
    infos = crdschema.resources_of(make_crd())
    assert [i.version for i in infos] == ["v1", "v1beta1"]
    v1 = infos[0]
    assert v1.custom and v1.namespaced and v1.storage_version == "v1"
    assert v1.subresources == ("status", "scale") and v1.has_status
    assert v1.short_names == ("wd",) and v1.categories == ("all",)
    assert infos[1].subresources == () and not infos[1].has_status
    assert v1.key(None if not v1.namespaced else "ns", "a") == infos[1].key("ns", "a")


def test_pruning_drops_unknown_fields_and_keeps_preserved_ones() -> None:
    obj = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "a"},
        "unknownTop": 1,
        "spec": {
            "image": "nginx",
            "bogus": True,
            "extra": {"anything": {"goes": 1}},
            "labels": {"x": "y"},
            "template": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p"},
                "spec": {"a": "b", "c": 1},
            },
        },
    }
    crdschema.prune(obj, SCHEMA, root=True)
    assert "unknownTop" not in obj
    assert "bogus" not in obj["spec"]
    assert obj["spec"]["extra"] == {"anything": {"goes": 1}}
    assert obj["spec"]["labels"] == {"x": "y"}
    assert obj["spec"]["template"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"a": "b"},
    }
    assert obj["metadata"] == {"name": "a"}


def test_defaults_fill_missing_fields_only() -> None:
    obj: dict[str, Any] = {"spec": {"image": "nginx", "mode": "slow"}}
    crdschema.apply_defaults(obj, SCHEMA)
    assert obj["spec"] == {"image": "nginx", "mode": "slow", "replicas": 1}


def test_validation_names_every_bad_field() -> None:
    obj = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "a"},
        "spec": {
            "replicas": 11,
            "mode": "medium",
            "port": 1.5,
            "tags": [],
            "note": None,
            "labels": {"x": 3},
        },
    }
    out: list[dict[str, str]] = []
    crdschema.validate_value(obj, SCHEMA, "", out)
    got = {c["field"]: c["message"] for c in out}
    assert got["spec.image"] == "Required value"
    assert (
        got["spec.replicas"] == "Invalid value: 11: spec.replicas in body should be less than or equal to 10"
    )
    assert got["spec.mode"] == 'Unsupported value: "medium": supported values: "fast", "slow"'
    assert "must be of type integer or string" in got["spec.port"]
    assert "should have at least 1 items" in got["spec.tags"]
    assert "spec.note" not in got  # nullable
    assert "must be of type string" in got["spec.labels.x"]


def test_validation_of_strings_and_types() -> None:
    for spec, field, text in [
        ({"image": "Nginx"}, "spec.image", "should match"),
        ({"image": "n"}, "spec.image", "at least 2 chars long"),
        ({"image": "n" * 21}, "spec.image", "Too long"),
        ({"image": "nginx", "replicas": -1}, "spec.replicas", "greater than or equal to 0"),
        ({"image": "nginx", "replicas": "2"}, "spec.replicas", "must be of type integer"),
        ({"image": "nginx", "tags": ["a", "b", "c"]}, "spec.tags", "Too many"),
        ({"image": "nginx", "tags": "a"}, "spec.tags", "must be of type array"),
    ]:
        out: list[dict[str, str]] = []
        crdschema.validate_value({"spec": spec}, SCHEMA, "", out)
        assert [c["field"] for c in out] == [field], (spec, out)
        assert text in out[0]["message"]
    good: list[dict[str, str]] = []
    crdschema.validate_value(
        {"spec": {"image": "nginx:1.2", "port": "http", "replicas": 3}}, SCHEMA, "", good
    )
    assert good == []


def test_create_through_the_strategy_prunes_defaults_and_stores_the_storage_version() -> None:
    v1beta1 = crdschema.resources_of(make_crd())[1]
    obj = {
        "apiVersion": "example.com/v1beta1",
        "kind": "Widget",
        "metadata": {"name": "a"},
        "spec": {"image": "xy"},
    }
    obj["spec"]["junk"] = 1  # type: ignore[index]
    strategy.prepare_for_create(v1beta1, obj, "default")
    assert obj["apiVersion"] == "example.com/v1"
    assert obj["spec"] == {"image": "xy", "replicas": 1, "mode": "fast"}
    assert obj["metadata"]["generation"] == 1
    read = crdschema.for_read(v1beta1, obj)
    assert read["apiVersion"] == "example.com/v1beta1" and obj["apiVersion"] == "example.com/v1"


def test_custom_status_and_generation_split() -> None:
    v1 = crdschema.resources_of(make_crd())[0]
    old = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "a", "namespace": "default", "generation": 1},
        "spec": {"image": "ab", "replicas": 1, "mode": "fast"},
    }
    new = copy.deepcopy(old)
    new["status"] = {"ready": 2}
    same = strategy.prepare_for_update(v1, new, old)
    assert "status" not in same and same["metadata"]["generation"] == 1
    status = strategy.prepare_for_update(v1, new, old, "status")
    assert status["status"] == {"ready": 2} and status["metadata"]["generation"] == 1
    new["spec"]["image"] = "cd"
    moved = strategy.prepare_for_update(v1, new, old)
    assert moved["metadata"]["generation"] == 2


def test_scale_view_and_printer_columns() -> None:
    v1 = crdschema.resources_of(make_crd())[0]
    obj = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "a", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"image": "nginx", "replicas": 3},
        "status": {"ready": 2, "selector": "app=a"},
    }
    scale = strategy.scale_of(v1, obj)
    assert scale["spec"] == {"replicas": 3}
    assert scale["status"] == {"replicas": 2, "selector": "app=a"}
    strategy.set_replicas(v1, obj, 5)
    assert obj["spec"]["replicas"] == 5
    table = printers.table(v1, [obj])
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Replicas", "Image"]
    assert table["rows"][0]["cells"] == ["a", 5, "nginx"]
    plain = crdschema.resources_of(make_crd())[1]
    assert [c["name"] for c in printers.column_definitions(plain)] == ["Name", "Age"]


def test_name_conflicts_between_crds_and_with_built_ins() -> None:
    first = make_crd()
    first["status"] = crd.desired_status(first, [])
    assert [c["status"] for c in first["status"]["conditions"]] == ["True", "True"]
    assert first["status"]["acceptedNames"]["kind"] == "Widget"
    assert first["status"]["storedVersions"] == ["v1"]
    second = make_crd()
    second["metadata"]["name"] = "gadgets.example.com"
    second["spec"]["names"] = {
        "plural": "gadgets",
        "kind": "Widget",
        "singular": "gadget",
        "listKind": "GadgetList",
    }
    status = crd.desired_status(second, [first])
    names, established = status["conditions"]
    assert (names["type"], names["status"], names["reason"]) == ("NamesAccepted", "False", "KindConflict")
    assert names["message"] == '"Widget" is already in use'
    assert (established["status"], established["reason"]) == ("False", "NotAccepted")
    builtin = make_crd(group="apps")
    builtin["spec"]["names"] = {"plural": "deployments", "kind": "Thing"}
    assert crd.name_conflict(builtin, []) == ("PluralConflict", '"deployments" is already in use')


def test_openapi_document_and_strict_field_validation_of_a_served_crd() -> None:
    infos = crdschema.resources_of(make_crd())
    register_custom("widgets.example.com", infos)
    try:
        index = openapi.openapi_v3_index()["paths"]
        assert "apis/example.com/v1" in index and "apis/example.com/v1beta1" in index
        doc = json.loads(openapi.openapi_v3_document_bytes("example.com", "v1") or b"{}")
        schema = doc["components"]["schemas"]["com.example.v1.Widget"]
        assert schema["x-kubernetes-group-version-kind"] == [
            {"group": "example.com", "version": "v1", "kind": "Widget"}
        ]
        assert schema["properties"]["spec"]["properties"]["replicas"]["default"] == 1
        assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in doc["components"]["schemas"]
        patch = doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
        assert patch["x-kubernetes-group-version-kind"]["kind"] == "Widget"
        assert "/apis/example.com/v1/namespaces/{namespace}/widgets/{name}/scale" in doc["paths"]
        body = {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "a", "labelz": {}},
            "spec": {"image": "x", "imagee": "y", "extra": {"free": 1}, "template": {"kind": "Pod", "b": 1}},
        }
        raw = json.dumps(body).encode()
        messages = openapi.field_validation_messages(infos[0], raw, None, "application/json")
        assert messages == [
            'unknown field "metadata.labelz"',
            'unknown field "spec.imagee"',
            'unknown field "spec.template.b"',
        ]
    finally:
        unregister_custom("widgets.example.com")
    assert "apis/example.com/v1" not in openapi.openapi_v3_index()["paths"]
    assert openapi.openapi_v3_document_bytes("example.com", "v1") is None
