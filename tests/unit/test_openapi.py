"""OpenAPI v3 documents (what kubectl apply and explain read) and strict field validation."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from apimachinery.errors import BadRequest
from apimachinery.resources import RESOURCES, ResourceInfo, by_kind, group_versions
from apiserver import openapi
from testkit.prereq import require_module


def _doc_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for k, v in node.items() if k != "$ref" for r in _refs(v)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


_deployment = by_kind("apps/v1", "Deployment")
assert _deployment is not None
DEPLOYMENT: ResourceInfo = _deployment


def _deployment_json(container_extra: str = "", spec_extra: str = "") -> bytes:
    return (
        '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"app":"web"}},'
        f'"spec":{{"replicas":2,{spec_extra}"selector":{{"matchLabels":{{"app":"web"}}}},'
        '"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":['
        '{"name":"a","image":"nginx","ports":[{"containerPort":80}]},'
        f'{{"name":"b","image":"redis","resources":{{"limits":{{"cpu":"1","memory":"64Mi"}}}}{container_extra}}}'
        "]}}}}"
    ).encode()


# --------------------------------------------------------------------------------------------
# Documents


def test_index_lists_every_group_version_with_a_hash() -> None:
    index = openapi.openapi_v3_index()["paths"]
    # and autoscaling/v1, served as a view of the stored v2 (apiserver/autoscaling_v1.py)
    expected = {_doc_path(g, v) for g, v in group_versions()} | {"apis/autoscaling/v1"}
    assert set(index) == expected
    v1 = openapi.openapi_v3_document("autoscaling", "v1")
    assert v1 is not None
    hpa = v1["components"]["schemas"]["io.k8s.api.autoscaling.v1.HorizontalPodAutoscalerSpec"]
    assert "targetCPUUtilizationPercentage" in hpa["properties"]
    assert "/apis/autoscaling/v1/namespaces/{namespace}/horizontalpodautoscalers/{name}/status" in v1["paths"]
    assert index["apis/apps/v1"]["serverRelativeURL"].startswith("/openapi/v3/apis/apps/v1?hash=")
    hash_ = index["api/v1"]["serverRelativeURL"].split("hash=")[1]
    assert hash_ == openapi.document_hash("", "v1")
    assert len(hash_) == 128


def test_unknown_group_version_has_no_document() -> None:
    assert openapi.openapi_v3_document("example.com", "v1") is None
    assert openapi.openapi_v3_document("apps", "v2") is None


@pytest.mark.parametrize(
    "info", [r for r in RESOURCES if "patch" in r.verbs], ids=lambda r: f"{r.group or 'core'}.{r.kind}"
)
def test_patch_operation_carries_gvk_and_field_validation(info: Any) -> None:
    """What kubectl's query-param verifier checks before it sends fieldValidation=Strict."""
    doc = openapi.openapi_v3_document(info.group, info.version)
    assert doc is not None
    wanted = {"group": info.group, "version": info.version, "kind": info.kind}
    patch_ops = [
        item["patch"]
        for item in doc["paths"].values()
        if "patch" in item and item["patch"]["x-kubernetes-group-version-kind"] == wanted
    ]
    assert patch_ops, f"no PATCH operation for {wanted}"
    for op in patch_ops:
        names = {(p["name"], p["in"]) for p in op["parameters"]}
        assert ("fieldValidation", "query") in names
        assert ("fieldManager", "query") in names
        assert set(op["requestBody"]["content"]) == set(openapi.PATCH_CONTENT_TYPES)


def test_every_patch_operation_accepts_field_validation() -> None:
    """kubectl stops at the first PATCH with the GVK it finds, in map order: all of them must qualify."""
    for group, version in group_versions():
        doc = openapi.openapi_v3_document(group, version)
        assert doc is not None
        for path, item in doc["paths"].items():
            if "patch" in item:
                names = {p["name"] for p in item["patch"]["parameters"]}
                assert "fieldValidation" in names, path


def test_deployment_paths_and_operations() -> None:
    doc = openapi.openapi_v3_document("apps", "v1")
    assert doc is not None
    paths = doc["paths"]
    collection = paths["/apis/apps/v1/namespaces/{namespace}/deployments"]
    assert collection["get"]["operationId"] == "listAppsV1NamespacedDeployment"
    assert collection["post"]["x-kubernetes-action"] == "post"
    assert collection["delete"]["x-kubernetes-action"] == "deletecollection"
    list_params = {p["name"] for p in collection["get"]["parameters"]}
    assert {"labelSelector", "fieldSelector", "limit", "continue", "watch", "resourceVersion"} <= list_params
    assert {"timeoutSeconds", "allowWatchBookmarks"} <= list_params
    item = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    assert set(item) >= {"get", "put", "patch", "delete", "parameters"}
    assert item["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/io.k8s.api.apps.v1.Deployment"
    }
    scale = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling",
        "version": "v1",
        "kind": "Scale",
    }
    all_ns = paths["/apis/apps/v1/deployments"]["get"]
    assert all_ns["operationId"] == "listAppsV1DeploymentForAllNamespaces"
    assert "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status" in paths


def test_core_paths_include_cluster_scoped_and_subresources() -> None:
    doc = openapi.openapi_v3_document("", "v1")
    assert doc is not None
    paths = doc["paths"]
    assert paths["/api/v1/nodes/{name}"]["get"]["operationId"] == "readCoreV1Node"
    assert "/api/v1/nodes/{name}/status" in paths
    binding = paths["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"]
    assert binding["x-kubernetes-group-version-kind"]["kind"] == "Binding"
    assert "/api/v1/namespaces/{namespace}/pods/{name}/log" in paths
    assert paths["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"


def test_every_ref_resolves_within_its_document() -> None:
    for group, version in group_versions():
        doc = openapi.openapi_v3_document(group, version)
        assert doc is not None
        components = doc["components"]["schemas"]
        refs = _refs(doc)
        assert refs
        for ref in refs:
            assert ref.startswith("#/components/schemas/")
            assert ref.removeprefix("#/components/schemas/") in components, (group, version, ref)


def test_component_schema_carries_gvk_for_explain() -> None:
    """kubectl explain finds the kind's schema by the x-kubernetes-group-version-kind list."""
    doc = openapi.openapi_v3_document("", "v1")
    assert doc is not None
    pod = doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"]
    assert {"group": "", "kind": "Pod", "version": "v1"} in pod["x-kubernetes-group-version-kind"]
    container = doc["components"]["schemas"]["io.k8s.api.core.v1.Container"]
    assert container["required"] == ["name"]
    assert "image" in container["properties"]


def test_special_schemas_follow_kubernetes() -> None:
    all_schemas = openapi.schemas()
    assert all_schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["format"] == "date-time"
    int_or_string = all_schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert int_or_string["x-kubernetes-int-or-string"] is True
    assert int_or_string["format"] == "int-or-string"
    limits = all_schemas["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]
    assert "io.k8s.apimachinery.pkg.api.resource.Quantity" in json.dumps(limits)
    target_port = all_schemas["io.k8s.api.core.v1.ServicePort"]["properties"]["targetPort"]
    assert "IntOrString" in json.dumps(target_port)
    assert all_schemas["io.k8s.api.core.v1.Pod"]["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    ]


# --------------------------------------------------------------------------------------------
# Descriptions and enums (what kubectl explain prints)

_REF = "#/components/schemas/"
_CORE = "io.k8s.api.core.v1"


def _props(name: str) -> dict[str, Any]:
    props: dict[str, Any] = openapi.schemas()[name]["properties"]
    return props


def test_every_field_and_kind_has_kubernetes_description() -> None:
    undescribed = [
        f"{name}.{field}"
        for name, schema in openapi.schemas().items()
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    # Kubernetes itself publishes WatchEvent.type, the metadata of CertificateSigningRequest(List)
    # and the JSON-schema keywords of a CRD's schema (JSONSchemaProps, ExternalDocumentation)
    # without a description.
    apiextensions = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1."
    assert [
        f
        for f in undescribed
        if not f.startswith((apiextensions + "JSONSchemaProps.", apiextensions + "ExternalDocumentation."))
    ] == [
        "io.k8s.api.certificates.v1.CertificateSigningRequest.metadata",
        "io.k8s.api.certificates.v1.CertificateSigningRequestList.metadata",
        "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent.type",
    ]
    kinds = [n for n, s in openapi.schemas().items() if "x-kubernetes-group-version-kind" in s]
    assert len(kinds) > 40
    assert [n for n in kinds if not openapi.schemas()[n].get("description")] == []
    assert openapi.schemas()[f"{_CORE}.Pod"]["description"].startswith(
        "Pod is a collection of containers that can run on a host."
    )


def test_described_references_are_wrapped_in_all_of() -> None:
    """A $ref cannot carry siblings in OpenAPI 3.0: Kubernetes wraps it, the description beside."""
    strategy = _props("io.k8s.api.apps.v1.DeploymentSpec")["strategy"]
    assert strategy["allOf"] == [{"$ref": _REF + "io.k8s.api.apps.v1.DeploymentStrategy"}]
    assert strategy["description"] == "The deployment strategy to use to replace existing pods with new ones."
    resources = _props(f"{_CORE}.Container")["resources"]
    assert resources["allOf"] == [{"$ref": _REF + f"{_CORE}.ResourceRequirements"}]
    assert resources["description"].startswith("Compute Resources required by this container.")
    # Kubernetes' own wording, which differs from kind to kind.
    assert _props("io.k8s.api.apps.v1.DeploymentList")["metadata"]["description"] == "Standard list metadata."
    assert _props(f"{_CORE}.PodList")["metadata"]["description"].endswith("api-conventions.md#types-kinds")
    for name, schema in openapi.schemas().items():
        for field, prop in schema.get("properties", {}).items():
            assert not ("$ref" in prop and len(prop) > 1), f"{name}.{field} has siblings beside $ref"


@pytest.mark.parametrize(
    ("schema", "field", "values"),
    [
        (f"{_CORE}.Container", "imagePullPolicy", ["Always", "IfNotPresent", "Never"]),
        (f"{_CORE}.PodSpec", "restartPolicy", ["Always", "Never", "OnFailure"]),
        (f"{_CORE}.ServiceSpec", "type", ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]),
        (f"{_CORE}.ContainerPort", "protocol", ["SCTP", "TCP", "UDP"]),
        (f"{_CORE}.ServicePort", "protocol", ["SCTP", "TCP", "UDP"]),
        ("io.k8s.api.apps.v1.DeploymentStrategy", "type", ["Recreate", "RollingUpdate"]),
    ],
)
def test_kubernetes_enums_are_published(schema: str, field: str, values: list[str]) -> None:
    prop = _props(schema)[field]
    assert prop["type"] == "string"
    assert prop["enum"] == values
    assert all(v in prop["description"] for v in values)


def test_enums_do_not_change_field_validation() -> None:
    """Enums are documentation here, as in Kubernetes' decoder: only unknown fields are reported."""
    pod = by_kind("v1", "Pod")
    assert pod is not None
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "imagePullPolicy": "Never"}]},
    }
    assert openapi.unknown_fields(pod, obj) == []


def test_types_live_in_kubernetes_packages() -> None:
    names = set(openapi.schemas())
    assert "io.k8s.api.scheduling.v1alpha3.WorkloadPodGroupSchedulingPolicy" in names
    assert not [n for n in names if n.startswith("io.k8s.api.batch.v1alpha")]


def _generator() -> Any:
    require_module("kubernetes.client.models")
    spec = importlib.util.spec_from_file_location(
        "gen_schemas", Path(__file__).resolve().parents[2] / "scripts" / "gen_schemas.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_checks_enum_values_against_the_description() -> None:
    gen = _generator()
    gen.check_enum("x.restartPolicy", "One of Always, OnFailure, Never.", ["Always", "Never", "OnFailure"])
    with pytest.raises(SystemExit, match="OnFailre"):
        gen.check_enum("x.restartPolicy", "One of Always, OnFailure, Never.", ["Always", "OnFailre"])
    with pytest.raises(SystemExit, match="Alway"):  # whole words only
        gen.check_enum("x.restartPolicy", "One of Always.", ["Alway"])


def test_generator_moves_types_to_the_package_kubernetes_defines_them_in() -> None:
    gen = _generator()
    packages = {"V1alpha3Thing": "io.k8s.api.batch.v1alpha3", "V1Pod": "io.k8s.api.core.v1"}
    definitions: dict[str, Any] = {"io.k8s.api.scheduling.v1alpha3.Thing": {}, "io.k8s.api.core.v1.Pod": {}}
    gen.fix_packages(packages, definitions)
    assert packages == {"V1alpha3Thing": "io.k8s.api.scheduling.v1alpha3", "V1Pod": "io.k8s.api.core.v1"}


def test_document_is_cached_and_serializes_to_json() -> None:
    assert openapi.openapi_v3_document("apps", "v1") is openapi.openapi_v3_document("apps", "v1")
    raw = openapi.openapi_v3_document_bytes("apps", "v1")
    assert raw is not None
    assert json.loads(raw)["openapi"] == "3.0.0"


# --------------------------------------------------------------------------------------------
# Field validation


def test_valid_deployment_has_no_messages() -> None:
    body = _deployment_json()
    assert openapi.field_validation_messages(DEPLOYMENT, body, json.loads(body), "application/json") == []
    assert openapi.unknown_fields(DEPLOYMENT, json.loads(body)) == []


def test_unknown_fields_nested_in_containers_and_lists() -> None:
    body = _deployment_json(container_extra=',"imagee":"typo","ports":[{"containerPort":6379,"bogus":1}]')
    obj = json.loads(body)
    obj["metadata"]["owner"] = "me"
    assert openapi.unknown_fields(DEPLOYMENT, obj) == [
        "metadata.owner",
        "spec.template.spec.containers[1].imagee",
        "spec.template.spec.containers[1].ports[0].bogus",
    ]


def test_maps_and_free_form_values_accept_any_key() -> None:
    body = _deployment_json()
    obj = json.loads(body)
    obj["metadata"]["annotations"] = {"anything/goes": "x"}
    obj["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    assert openapi.unknown_fields(DEPLOYMENT, obj) == []


def test_json_duplicates_and_unknowns_in_document_order() -> None:
    body = _deployment_json(container_extra=',"image":"again","foo":1', spec_extra='"replicas":3,')
    messages = openapi.field_validation_messages(DEPLOYMENT, body, None, "application/json")
    assert messages == [
        'duplicate field "spec.replicas"',
        'duplicate field "spec.template.spec.containers[1].image"',
        'unknown field "spec.template.spec.containers[1].foo"',
    ]
    assert openapi.duplicate_fields(body, "application/json") == [
        "spec.replicas",
        "spec.template.spec.containers[1].image",
    ]


def test_duplicate_keys_inside_maps_are_reported() -> None:
    body = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"1","k":"2"}}'
    config_map = by_kind("v1", "ConfigMap")
    assert config_map is not None
    assert openapi.field_validation_messages(config_map, body, None, "application/json") == [
        'duplicate field "data.k"'
    ]


YAML_BODY = b"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  replicas: 2
  template:
    spec:
      containers:
      - name: a
        image: nginx
        image: redis
        imagee: typo
"""


def test_yaml_duplicates_are_reported_by_line_like_the_yaml_decoder() -> None:
    assert openapi.duplicate_fields(YAML_BODY, "application/yaml") == [
        "spec.replicas",
        "spec.template.spec.containers[0].image",
    ]
    messages = openapi.field_validation_messages(DEPLOYMENT, YAML_BODY, None, "application/yaml")
    assert messages == [
        'yaml: unmarshal errors:\n  line 7: key "replicas" already set in map\n'
        '  line 13: key "image" already set in map',
        'unknown field "spec.template.spec.containers[0].imagee"',
    ]


def test_patch_result_checked_for_unknowns_and_patch_body_for_duplicates() -> None:
    patch = b'{"spec":{"replicas":1,"replicas":2,"paused":true}}'
    result = json.loads(_deployment_json())
    result["spec"]["bogus"] = True
    messages = openapi.field_validation_messages(
        DEPLOYMENT, patch, result, "application/strategic-merge-patch+json"
    )
    assert messages == ['duplicate field "spec.replicas"', 'unknown field "spec.bogus"']


def test_strict_error_and_warning_formats() -> None:
    error = openapi.strict_decoding_error(
        DEPLOYMENT, ['unknown field "spec.foo"', 'duplicate field "spec.replicas"']
    )
    assert isinstance(error, BadRequest)
    assert error.status()["code"] == 400
    assert error.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.foo", duplicate field "spec.replicas"'
    )
    assert openapi.warning_header('unknown field "spec.foo"') == '299 - "unknown field \\"spec.foo\\""'


# --------------------------------------------------------------------------------------------
# Cross-check with the official client's models


def test_schema_properties_match_the_client_models() -> None:
    models = require_module("kubernetes.client.models")
    all_schemas = openapi.schemas()
    for cls_name, schema_name in (
        ("V1PodSpec", "io.k8s.api.core.v1.PodSpec"),
        ("V1DeploymentSpec", "io.k8s.api.apps.v1.DeploymentSpec"),
        ("V1ObjectMeta", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
    ):
        cls = getattr(models, cls_name)
        assert set(all_schemas[schema_name]["properties"]) == set(cls.attribute_map.values())
