"""Values of the wrong JSON type in a built-in object are refused as Kubernetes' decoder refuses them."""

from __future__ import annotations

from typing import Any

import pytest

from apimachinery.resources import ResourceInfo, by_kind
from apiserver import typecheck


def _info(api_version: str, kind: str) -> ResourceInfo:
    info = by_kind(api_version, kind)
    assert info is not None
    return info


CONFIGMAP = _info("v1", "ConfigMap")
POD = _info("v1", "Pod")
DEPLOYMENT = _info("apps/v1", "Deployment")
SERVICE = _info("v1", "Service")
SECRET = _info("v1", "Secret")


def _pod(**spec: Any) -> dict[str, Any]:
    container = {"name": "c", "image": "nginx"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [container], **spec},
    }


def _deployment(replicas: Any = 2, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "labels": {"app": "d"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "nginx", **container}]},
            },
        },
    }


def _refused(info: ResourceInfo, obj: dict[str, Any]) -> tuple[str, str]:
    error = typecheck.problem(info, obj)
    assert error is not None, "expected a 400"
    status = error.status()
    assert status["code"] == 400 and status["reason"] == "BadRequest"
    with pytest.raises(type(error)):
        typecheck.check(info, obj)
    causes = status["details"]["causes"]
    assert len(causes) == 1 and causes[0]["reason"] == "FieldValueTypeInvalid"
    return status["message"], causes[0]["field"]


@pytest.mark.parametrize(
    ("info", "obj", "message", "field"),
    [
        (
            CONFIGMAP,
            {"metadata": {"name": "c"}, "data": [1, 2]},
            'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal array '
            "into Go struct field ConfigMap.data of type map[string]string",
            "data",
        ),
        (
            CONFIGMAP,
            {"metadata": {"name": "c", "labels": ["a"]}},
            'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal array '
            "into Go struct field ObjectMeta.metadata.labels of type map[string]string",
            "metadata.labels",
        ),
        (
            CONFIGMAP,
            {"metadata": {"name": "c", "labels": {"a": 1}}},
            'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal number '
            "into Go struct field ObjectMeta.metadata.labels of type string",
            "metadata.labels[a]",
        ),
        (
            POD,
            {"metadata": {"name": "p"}, "spec": {"containers": {}}},
            'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal object '
            "into Go struct field PodSpec.spec.containers of type []v1.Container",
            "spec.containers",
        ),
        (
            POD,
            {"metadata": {"name": "p"}, "spec": "x"},
            'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string '
            "into Go struct field Pod.spec of type v1.PodSpec",
            "spec",
        ),
        (
            DEPLOYMENT,
            _deployment("three"),
            'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string '
            "into Go struct field DeploymentSpec.spec.replicas of type int32",
            "spec.replicas",
        ),
        (
            DEPLOYMENT,
            _deployment(1.5),
            'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal number 1.5 '
            "into Go struct field DeploymentSpec.spec.replicas of type int32",
            "spec.replicas",
        ),
        (
            DEPLOYMENT,
            _deployment(env=[{"name": "A", "value": 1}]),
            'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal number '
            "into Go struct field EnvVar.spec.template.spec.containers.env.value of type string",
            "spec.template.spec.containers[0].env[0].value",
        ),
        (
            POD,
            _pod(hostNetwork="yes"),
            'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string '
            "into Go struct field PodSpec.spec.hostNetwork of type bool",
            "spec.hostNetwork",
        ),
        (
            POD,
            _pod(terminationGracePeriodSeconds=True),
            'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal bool '
            "into Go struct field PodSpec.spec.terminationGracePeriodSeconds of type int64",
            "spec.terminationGracePeriodSeconds",
        ),
        (
            SERVICE,
            {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": {"a": 1}}]}},
            'Service in version "v1" cannot be handled as a Service: json: cannot unmarshal object '
            "into Go struct field ServicePort.spec.ports.targetPort of type int32",
            "spec.ports[0].targetPort",
        ),
        (
            SECRET,
            {"metadata": {"name": "s"}, "data": {"k": 5}},
            'Secret in version "v1" cannot be handled as a Secret: json: cannot unmarshal number '
            "into Go struct field Secret.data of type []uint8",
            "data[k]",
        ),
    ],
)
def test_wrong_types_are_refused_with_go_decoders_words(
    info: ResourceInfo, obj: dict[str, Any], message: str, field: str
) -> None:
    assert _refused(info, obj) == (message, field)


def test_a_quantity_that_is_neither_string_nor_number_is_refused() -> None:
    pod = _pod()
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": {"m": 100}}}
    message, field = _refused(POD, pod)
    assert message == (
        'Pod in version "v1" cannot be handled as a Pod: quantities must match the regular expression '
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )
    assert field == "spec.containers[0].resources.limits[cpu]"


def test_the_first_wrong_value_is_reported() -> None:
    cm = {"metadata": {"name": "c", "labels": ["a"]}, "data": [1]}
    assert _refused(CONFIGMAP, cm)[1] == "metadata.labels"


@pytest.mark.parametrize(
    ("info", "obj"),
    [
        (DEPLOYMENT, _deployment(3)),
        (DEPLOYMENT, _deployment(3.0)),  # an integral number decodes into an int32
        (DEPLOYMENT, _deployment(None)),  # null is absent
        (
            POD,
            _pod(
                containers=[
                    {
                        "name": "c",
                        "image": "nginx",
                        "resources": {
                            "limits": {"cpu": "100m", "memory": 128974848},
                            "requests": {"cpu": 0.5},
                        },
                        "ports": [{"containerPort": 80}],
                        "livenessProbe": {"httpGet": {"port": "http", "path": "/"}},
                        "readinessProbe": {"tcpSocket": {"port": 8080}},
                        "env": [{"name": "A", "value": None}],
                    }
                ]
            ),
        ),
        (POD, _pod(nodeSelector=None, overhead={"cpu": 1})),
        (SERVICE, {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": "http"}]}}),
        (CONFIGMAP, {"metadata": {"name": "c", "labels": None}, "data": {"a": "b"}, "unknownField": [1]}),
        (SECRET, {"metadata": {"name": "s"}, "data": {"k": "dmFsdWU="}, "type": "Opaque"}),
    ],
)
def test_values_of_the_right_type_pass(info: ResourceInfo, obj: dict[str, Any]) -> None:
    assert typecheck.problem(info, obj) is None


def _crd(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "things.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": "things", "kind": "Thing"},
            "scope": "Namespaced",
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
            ],
        },
    }


CRD = _info("apiextensions.k8s.io/v1", "CustomResourceDefinition")


@pytest.mark.parametrize("maximum", [5, 2.5, None])
def test_number_fields_take_integers_and_fractions(maximum: Any) -> None:
    assert typecheck.problem(CRD, _crd({"type": "integer", "maximum": maximum})) is None


def test_a_string_for_a_number_field_is_refused() -> None:
    message, field = _refused(CRD, _crd({"type": "integer", "maximum": "5"}))
    assert message.endswith(
        "json: cannot unmarshal string into Go struct field JSONSchemaProps"
        ".spec.versions.schema.openAPIV3Schema.maximum of type float64"
    )
    assert field == "spec.versions[0].schema.openAPIV3Schema.maximum"


def test_free_form_and_preserved_values_take_anything() -> None:
    schema = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "default": [1, {"a": "b"}],
        "enum": ["x", 1, None],
    }
    obj = _crd(schema)
    assert typecheck.problem(CRD, obj) is None
    obj["spec"]["versions"][0]["served"] = "yes"
    assert _refused(CRD, obj)[1] == "spec.versions[0].served"


def test_custom_resources_are_left_to_their_own_schema() -> None:
    custom = ResourceInfo(
        group="example.com",
        version="v1",
        kind="Thing",
        plural="things",
        namespaced=True,
        custom=True,
    )
    assert typecheck.problem(custom, {"metadata": {"name": "t"}, "spec": [1]}) is None


@pytest.mark.parametrize(
    ("value", "openapi_type", "go_kind"),
    [
        ({}, "object", "object"),
        ([], "array", "array"),
        ("x", "string", "string"),
        (True, "boolean", "bool"),
        (3, "integer", "number"),
        (3.5, "number", "number"),
    ],
)
def test_json_type_names_of_the_schema_checks_and_of_go(
    value: object, openapi_type: str, go_kind: str
) -> None:
    from apiserver.crdschema import json_type

    assert json_type(value) == openapi_type
    assert typecheck._json_kind(value) == go_kind
