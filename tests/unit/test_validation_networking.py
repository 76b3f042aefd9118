"""Validation of Ingress (rules, backends, TLS) and IngressClass, and the DefaultIngressClass
admission plugin."""

from __future__ import annotations

from typing import Any

from apimachinery.resources import kind_info
from apiserver import ingressclass_admission
from apiserver.validation import validate

INGRESS = kind_info("networking.k8s.io/v1", "Ingress")
CLASS = kind_info("networking.k8s.io/v1", "IngressClass")


def ingress(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": spec}


def backend(port: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"service": {"name": "svc", "port": port if port is not None else {"number": 80}}}


def fields(causes: list[dict[str, str]]) -> list[str]:
    return [c["field"] for c in causes]


def test_a_good_ingress() -> None:
    good = ingress(
        ingressClassName="minik",
        rules=[
            {
                "host": "a.example.com",
                "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend()}]},
            },
            {
                "host": "*.b.example.com",
                "http": {
                    "paths": [{"path": "/x", "pathType": "Exact", "backend": backend({"name": "http"})}]
                },
            },
        ],
        tls=[{"hosts": ["a.example.com", "*.b.example.com"], "secretName": "tls-a"}],
    )
    assert validate(INGRESS, good) == []


def test_ingress_rules_and_backends() -> None:
    bad = ingress(
        rules=[
            {
                "host": "A_b.example",
                "http": {
                    "paths": [
                        {"path": "x", "pathType": "Prefix", "backend": backend()},
                        {"path": "/y", "backend": backend()},
                        {"path": "/z", "pathType": "Regex", "backend": backend()},
                        {
                            "path": "/p",
                            "pathType": "Prefix",
                            "backend": backend({"name": "http", "number": 80}),
                        },
                        {
                            "path": "/q",
                            "pathType": "Prefix",
                            "backend": {**backend(), "resource": {"kind": "K", "name": "n"}},
                        },
                        {"path": "/r", "pathType": "Prefix", "backend": backend({})},
                    ]
                },
            },
            {
                "host": "foo.*.example",
                "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend()}]},
            },
        ]
    )
    causes = validate(INGRESS, bad)
    assert fields(causes) == [
        "spec.rules[0].host",
        "spec.rules[0].http.paths[0].path",
        "spec.rules[0].http.paths[1].pathType",
        "spec.rules[0].http.paths[2].pathType",
        "spec.rules[0].http.paths[3].backend.service.port",
        "spec.rules[0].http.paths[4].backend",
        "spec.rules[0].http.paths[5].backend.service.port",
        "spec.rules[1].host",
    ]
    assert "must be an absolute path" in causes[1]["message"]
    assert 'supported values: "Exact", "ImplementationSpecific", "Prefix"' in causes[3]["message"]
    assert "cannot set both port name & port number" in causes[4]["message"]
    assert "cannot set both resource and service backends" in causes[5]["message"]


def test_ingress_tls_hosts_and_secret_names() -> None:
    causes = validate(
        INGRESS,
        ingress(
            defaultBackend=backend(),
            tls=[
                {
                    "hosts": ["ok.example", "*.ok.example", "bad*.example", "UPPER.example"],
                    "secretName": "Bad_Name",
                }
            ],
        ),
    )
    assert fields(causes) == ["spec.tls[0].hosts[2]", "spec.tls[0].hosts[3]", "spec.tls[0].secretName"]
    assert "a wildcard DNS-1123 subdomain must start with '*.'" in causes[0]["message"]
    assert "lower case alphanumeric" in causes[1]["message"]


def ingress_class(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "minik"}, "spec": spec}


def test_ingress_class() -> None:
    assert validate(CLASS, ingress_class(controller="minik.io/ingress")) == []
    assert fields(validate(CLASS, ingress_class())) == ["spec.controller"]
    causes = validate(CLASS, ingress_class(controller="no-path"))
    assert 'must be a domain-prefixed path (such as "acme.io/foo")' in causes[0]["message"]
    assert fields(validate(CLASS, ingress_class(controller="Bad_Host/x"))) == ["spec.controller"]
    long = "a.io/" + "x" * 250
    assert "Too long" in validate(CLASS, ingress_class(controller=long))[0]["message"]
    params = {"kind": "", "name": "", "scope": "Namespace"}
    causes = validate(CLASS, ingress_class(controller="a.io/c", parameters=params))
    assert fields(causes) == ["spec.parameters.kind", "spec.parameters.name", "spec.parameters.namespace"]
    params = {"kind": "K", "name": "n", "scope": "Cluster", "namespace": "x"}
    assert "Forbidden" in validate(CLASS, ingress_class(controller="a.io/c", parameters=params))[0]["message"]
    params = {"kind": "K", "name": "n", "scope": "Galaxy"}
    assert (
        "Unsupported value"
        in validate(CLASS, ingress_class(controller="a.io/c", parameters=params))[0]["message"]
    )


def test_ingress_class_controller_is_immutable() -> None:
    old = ingress_class(controller="minik.io/ingress")
    old["metadata"].update(resourceVersion="1", uid="u", creationTimestamp="2026-01-01T00:00:00Z")
    new = {"metadata": dict(old["metadata"]), "spec": {"controller": "other.io/x"}}
    causes = validate(CLASS, new, old)
    assert [(c["field"], "field is immutable" in c["message"]) for c in causes] == [("spec.controller", True)]


def test_default_ingress_class_admission() -> None:
    def cls(name: str, default: bool, created: str) -> dict[str, Any]:
        annotations = {ingressclass_admission.DEFAULT_ANNOTATION: "true"} if default else {}
        return {"metadata": {"name": name, "annotations": annotations, "creationTimestamp": created}}

    classes = [
        cls("old", True, "2026-01-01T00:00:00Z"),
        cls("new", True, "2026-02-01T00:00:00Z"),
        cls("x", False, "2026-03-01T00:00:00Z"),
    ]
    obj: dict[str, Any] = {"metadata": {}, "spec": {}}
    assert ingressclass_admission.admit(obj, classes) and obj["spec"]["ingressClassName"] == "new"
    named = {"metadata": {}, "spec": {"ingressClassName": "x"}}
    assert not ingressclass_admission.admit(named, classes) and named["spec"]["ingressClassName"] == "x"
    legacy: dict[str, Any] = {"metadata": {"annotations": {"kubernetes.io/ingress.class": "x"}}, "spec": {}}
    assert not ingressclass_admission.admit(legacy, classes) and "ingressClassName" not in legacy["spec"]
    none: dict[str, Any] = {"metadata": {}, "spec": {}}
    assert not ingressclass_admission.admit(none, [cls("x", False, "")]) and none["spec"] == {}
