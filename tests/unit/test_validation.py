"""Validation: Kubernetes' field paths, messages and cause types, on defaulted objects."""

import copy
from typing import Any

import pytest

from apimachinery import errors
from apimachinery.defaults import apply_defaults
from apimachinery.resources import ResourceInfo, by_kind
from apiserver.validation import (
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_valid_port_name,
    validate,
)

Obj = dict[str, Any]


def info(api_version: str, kind: str) -> ResourceInfo:
    found = by_kind(api_version, kind)
    assert found is not None
    return found


POD = info("v1", "Pod")
DEPLOYMENT = info("apps/v1", "Deployment")


def run(
    api_version: str, kind: str, obj: Obj, old: Obj | None = None, *, default: bool = True
) -> list[dict[str, str]]:
    i = info(api_version, kind)
    if default:
        apply_defaults(i, obj, create=old is None)
        if old is not None:
            apply_defaults(i, old)
    return validate(i, obj, old)


def fields(causes: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(c["field"], c["reason"]) for c in causes]


def make_pod(**spec: Any) -> Obj:
    base: Obj = {"containers": [{"name": "app", "image": "nginx:1.25"}]}
    base.update(spec)
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": base}


def container(**kw: Any) -> Obj:
    c: Obj = {"name": "app", "image": "nginx:1.25"}
    c.update(kw)
    return c


def make_deployment(**spec: Any) -> Obj:
    base: Obj = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container()]}},
    }
    base.update(spec)
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": base}


# --- helpers ---------------------------------------------------------------------------------


def test_exported_name_checks() -> None:
    assert is_dns1123_label("ok-1") == []
    assert is_dns1123_subdomain("a.b") == []
    assert is_dns1035_label("1abc")[0].startswith("a DNS-1035 label must consist of lower case alphanumeric")
    assert is_config_map_key("..x") == ["must not start with '..'"]
    assert is_config_map_key("a b")[0].startswith(
        "a valid config key must consist of alphanumeric characters"
    )
    assert is_env_var_name("1X")[0].startswith("a valid environment variable name must consist of alphabetic")
    assert is_env_var_name("MY_VAR.x-1") == []
    assert is_valid_port_name("http") == []
    assert is_valid_port_name("a--b") == ["must not contain consecutive hyphens"]
    assert is_valid_port_name("80") == ["must contain at least one letter (a-z)"]
    assert is_valid_port_name("x" * 16) == ["must be no more than 15 characters"]


# --- metadata ----------------------------------------------------------------------------------


def test_valid_pod_has_no_causes() -> None:
    assert run("v1", "Pod", make_pod()) == []


def test_bad_name_message() -> None:
    pod = make_pod()
    pod["metadata"]["name"] = "Bad_Name"
    causes = run("v1", "Pod", pod)
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "field": "metadata.name",
            "message": 'Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case '
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
            "(e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        }
    ]


def test_name_required() -> None:
    pod = make_pod()
    del pod["metadata"]["name"]
    causes = run("v1", "Pod", pod)
    assert causes == [
        {
            "reason": "FieldValueRequired",
            "field": "metadata.name",
            "message": "Required value: name or generateName is required",
        }
    ]


def test_generate_name_alone_is_fine() -> None:
    pod = make_pod()
    pod["metadata"] = {"generateName": "web-", "namespace": "default"}
    assert run("v1", "Pod", pod) == []


def test_name_too_long() -> None:
    pod = make_pod()
    pod["metadata"]["name"] = "a" * 254
    causes = run("v1", "Pod", pod)
    assert causes[0]["message"] == f'Invalid value: "{"a" * 254}": must be no more than 253 characters'


def test_namespace_required_for_namespaced_kinds() -> None:
    pod = make_pod()
    del pod["metadata"]["namespace"]
    assert fields(run("v1", "Pod", pod)) == [("metadata.namespace", "FieldValueRequired")]


def test_namespace_forbidden_for_cluster_kinds() -> None:
    causes = run("v1", "Node", {"metadata": {"name": "n1", "namespace": "default"}})
    assert causes == [
        {
            "reason": "FieldValueForbidden",
            "field": "metadata.namespace",
            "message": "Forbidden: not allowed on this type",
        }
    ]


def test_namespace_name_is_a_dns_label() -> None:
    causes = run("v1", "Namespace", {"metadata": {"name": "a.b"}})
    assert causes[0]["field"] == "metadata.name"
    assert causes[0]["message"] == 'Invalid value: "a.b": must not contain dots'


def test_service_name_is_a_dns1035_label() -> None:
    svc = {"metadata": {"name": "1web", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}
    causes = run("v1", "Service", svc)
    assert fields(causes) == [("metadata.name", "FieldValueInvalid")]
    assert "a DNS-1035 label must consist" in causes[0]["message"]


def test_labels_and_annotations() -> None:
    pod = make_pod()
    pod["metadata"]["labels"] = {"good": "ok", "bad key": "x", "k": "-bad-"}
    pod["metadata"]["annotations"] = {"Example.COM/Thing": "fine", "a/b/c": "x"}
    causes = run("v1", "Pod", pod)
    assert fields(causes) == [
        ("metadata.labels", "FieldValueInvalid"),
        ("metadata.labels", "FieldValueInvalid"),
        ("metadata.annotations", "FieldValueInvalid"),
    ]
    assert causes[0]["message"].startswith('Invalid value: "bad key": name part must consist of')
    assert causes[1]["message"].startswith('Invalid value: "-bad-": a valid label must be an empty string')


def test_annotations_total_size() -> None:
    pod = make_pod()
    pod["metadata"]["annotations"] = {"big": "x" * (256 * 1024)}
    causes = run("v1", "Pod", pod)
    assert causes == [
        {
            "reason": "FieldValueTooLong",
            "field": "metadata.annotations",
            "message": "Too long: may not be more than 262144 bytes",
        }
    ]


def test_owner_references_need_identity() -> None:
    pod = make_pod()
    pod["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs"}]
    causes = run("v1", "Pod", pod)
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "field": "metadata.ownerReferences.uid",
            "message": 'Invalid value: "": uid must not be empty',
        }
    ]


# --- pods ------------------------------------------------------------------------------------------


def test_containers_required() -> None:
    assert fields(run("v1", "Pod", make_pod(containers=[]))) == [("spec.containers", "FieldValueRequired")]


def test_image_required() -> None:
    causes = run("v1", "Pod", make_pod(containers=[container(image="")]))
    assert causes == [
        {"reason": "FieldValueRequired", "field": "spec.containers[0].image", "message": "Required value"}
    ]


def test_container_names() -> None:
    pod = make_pod(
        containers=[container(name="app"), container(name="app"), container(name="Bad")],
        initContainers=[container(name="app")],
    )
    causes = run("v1", "Pod", pod)
    assert fields(causes) == [
        ("spec.containers[1].name", "FieldValueDuplicate"),
        ("spec.containers[2].name", "FieldValueInvalid"),
        ("spec.initContainers[0].name", "FieldValueDuplicate"),
    ]
    assert causes[0]["message"] == 'Duplicate value: "app"'


def test_container_name_required() -> None:
    assert fields(run("v1", "Pod", make_pod(containers=[container(name="")]))) == [
        ("spec.containers[0].name", "FieldValueRequired")
    ]


def test_ports() -> None:
    ports = [
        {"containerPort": 0},
        {"containerPort": 70000},
        {"containerPort": 80, "name": "http"},
        {"containerPort": 81, "name": "http"},
        {"containerPort": 82, "protocol": "ICMP"},
        {"containerPort": 83, "name": "Bad_Name"},
    ]
    causes = run("v1", "Pod", make_pod(containers=[container(ports=ports)]))
    assert fields(causes) == [
        ("spec.containers[0].ports[0].containerPort", "FieldValueRequired"),
        ("spec.containers[0].ports[1].containerPort", "FieldValueInvalid"),
        ("spec.containers[0].ports[3].name", "FieldValueDuplicate"),
        ("spec.containers[0].ports[4].protocol", "FieldValueNotSupported"),
        ("spec.containers[0].ports[5].name", "FieldValueInvalid"),
    ]
    assert causes[1]["message"] == "Invalid value: 70000: must be between 1 and 65535, inclusive"
    assert causes[3]["message"] == 'Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"'


def test_enums() -> None:
    pod = make_pod(
        restartPolicy="Sometimes", dnsPolicy="Weird", containers=[container(imagePullPolicy="Maybe")]
    )
    causes = run("v1", "Pod", pod)
    by_field = {c["field"]: c for c in causes}
    assert (
        by_field["spec.restartPolicy"]["message"]
        == 'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'
    )
    assert by_field["spec.dnsPolicy"]["reason"] == "FieldValueNotSupported"
    assert by_field["spec.containers[0].imagePullPolicy"]["message"] == (
        'Unsupported value: "Maybe": supported values: "Always", "IfNotPresent", "Never"'
    )


def test_undefaulted_pod_reports_required_enums() -> None:
    causes = run("v1", "Pod", make_pod(), default=False)
    assert ("spec.restartPolicy", "FieldValueRequired") in fields(causes)
    assert ("spec.containers[0].imagePullPolicy", "FieldValueRequired") in fields(causes)
    assert ("spec.containers[0].terminationMessagePolicy", "FieldValueRequired") in fields(causes)


def test_volumes_and_mounts() -> None:
    pod = make_pod(
        volumes=[
            {"name": "data"},
            {"name": "data"},
            {"name": "cfg", "configMap": {}},
            {"name": "two", "emptyDir": {}, "hostPath": {"path": "/x"}},
        ],
        containers=[
            container(
                volumeMounts=[
                    {"name": "data", "mountPath": "/data"},
                    {"name": "nope", "mountPath": "/nope"},
                    {"name": "cfg", "mountPath": "/data"},
                    {"name": "cfg"},
                ]
            )
        ],
    )
    causes = run("v1", "Pod", pod)
    assert fields(causes) == [
        ("spec.volumes[1].name", "FieldValueDuplicate"),
        ("spec.volumes[2].configMap.name", "FieldValueRequired"),
        ("spec.volumes[3].emptyDir", "FieldValueForbidden"),
        ("spec.containers[0].volumeMounts[1].name", "FieldValueNotFound"),
        ("spec.containers[0].volumeMounts[2].mountPath", "FieldValueInvalid"),
        ("spec.containers[0].volumeMounts[3].mountPath", "FieldValueRequired"),
    ]
    assert causes[3]["message"] == 'Not found: "nope"'
    assert causes[4]["message"] == 'Invalid value: "/data": must be unique'


def test_env() -> None:
    env = [
        {"name": "GOOD", "value": "x"},
        {"name": "1BAD"},
        {"name": ""},
        {"name": "REF", "valueFrom": {"configMapKeyRef": {"name": "cm"}}},
        {"name": "FIELD", "valueFrom": {"fieldRef": {"fieldPath": "status.nothing"}}},
        {"name": "BOTH", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
    ]
    causes = run("v1", "Pod", make_pod(containers=[container(env=env)]))
    assert fields(causes) == [
        ("spec.containers[0].env[1].name", "FieldValueInvalid"),
        ("spec.containers[0].env[2].name", "FieldValueRequired"),
        ("spec.containers[0].env[3].valueFrom.configMapKeyRef.key", "FieldValueRequired"),
        ("spec.containers[0].env[4].valueFrom.fieldRef.fieldPath", "FieldValueNotSupported"),
        ("spec.containers[0].env[5].valueFrom", "FieldValueInvalid"),
    ]
    assert causes[0]["message"].startswith('Invalid value: "1BAD": a valid environment variable name')
    assert "[-._a-zA-Z][-._a-zA-Z0-9]*" in causes[0]["message"]
    assert causes[4]["message"] == 'Invalid value: "": may not be specified when `value` is not empty'


def test_resources() -> None:
    resources = {
        "limits": {"cpu": "1", "memory": "bogus"},
        "requests": {"cpu": "2", "gpu": "1", "nvidia.com/gpu": "1"},
    }
    causes = run("v1", "Pod", make_pod(containers=[container(resources=resources)]))
    assert fields(causes) == [
        ("spec.containers[0].resources.limits[memory]", "FieldValueInvalid"),
        ("spec.containers[0].resources.requests", "FieldValueInvalid"),
        ("spec.containers[0].resources.requests[gpu]", "FieldValueInvalid"),
        # Pods copy limits into missing requests before validation, as Kubernetes does.
        ("spec.containers[0].resources.requests[memory]", "FieldValueInvalid"),
    ]
    assert causes[0]["message"].startswith(
        'Invalid value: "bogus": quantities must match the regular expression'
    )
    assert causes[1]["message"] == 'Invalid value: "2": must be less than or equal to cpu limit of 1'
    assert causes[2]["message"] == 'Invalid value: "gpu": must be a standard resource for containers'


def test_negative_quantity() -> None:
    causes = run("v1", "Pod", make_pod(containers=[container(resources={"requests": {"memory": "-1Gi"}})]))
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.containers[0].resources.requests[memory]",
            "message": 'Invalid value: "-1Gi": must be greater than or equal to 0',
        }
    ]


def test_probes() -> None:
    ctr = container(
        livenessProbe={"httpGet": {"port": 0}, "successThreshold": 2},
        readinessProbe={"periodSeconds": -1, "exec": {"command": ["true"]}},
        startupProbe={},
    )
    causes = run("v1", "Pod", make_pod(containers=[ctr]))
    assert fields(causes) == [
        ("spec.containers[0].livenessProbe.httpGet.port", "FieldValueInvalid"),
        ("spec.containers[0].livenessProbe.successThreshold", "FieldValueInvalid"),
        ("spec.containers[0].readinessProbe.periodSeconds", "FieldValueInvalid"),
        ("spec.containers[0].startupProbe", "FieldValueRequired"),
    ]
    assert causes[1]["message"] == "Invalid value: 2: must be 1"
    assert causes[3]["message"] == "Required value: must specify a handler type"


def test_tolerations_and_node_selector() -> None:
    pod = make_pod(
        nodeSelector={"disk": "ssd", "bad key": "x"},
        tolerations=[
            {"operator": "Exists"},
            {"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
            {"operator": "Equal", "value": "x"},
            {"key": "k", "operator": "Maybe"},
            {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 10},
        ],
    )
    causes = run("v1", "Pod", pod)
    assert fields(causes) == [
        ("spec.nodeSelector", "FieldValueInvalid"),
        ("spec.tolerations[2].operator", "FieldValueInvalid"),
        ("spec.tolerations[3].operator", "FieldValueNotSupported"),
        ("spec.tolerations[4].effect", "FieldValueInvalid"),
    ]


def test_active_deadline() -> None:
    causes = run("v1", "Pod", make_pod(activeDeadlineSeconds=0))
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.activeDeadlineSeconds",
            "message": "Invalid value: 0: must be between 1 and 2147483647, inclusive",
        }
    ]


# --- pod updates ---------------------------------------------------------------------------------


def test_pod_update_allows_image_change() -> None:
    old = make_pod()
    old["metadata"]["resourceVersion"] = "1"
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.26"
    assert run("v1", "Pod", new, old) == []


def test_pod_update_forbids_other_spec_changes() -> None:
    old = make_pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    causes = run("v1", "Pod", new, old)
    assert fields(causes) == [("spec", "FieldValueForbidden")]
    assert causes[0]["message"].startswith(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    )


def test_pod_update_tolerations_only_added() -> None:
    old = make_pod(tolerations=[{"key": "a", "operator": "Exists"}])
    added = copy.deepcopy(old)
    added["spec"]["tolerations"].append({"key": "b", "operator": "Exists"})
    assert run("v1", "Pod", added, copy.deepcopy(old)) == []
    removed = copy.deepcopy(old)
    removed["spec"]["tolerations"] = []
    assert ("spec.tolerations", "FieldValueForbidden") in fields(
        run("v1", "Pod", removed, copy.deepcopy(old))
    )


def test_metadata_identity_is_immutable() -> None:
    old = make_pod()
    old["metadata"]["uid"] = "u1"
    new = copy.deepcopy(old)
    new["metadata"]["name"] = "other"
    new["metadata"]["uid"] = "u2"
    causes = run("v1", "Pod", new, old)
    assert fields(causes) == [("metadata.name", "FieldValueInvalid"), ("metadata.uid", "FieldValueInvalid")]
    assert causes[0]["message"] == 'Invalid value: "other": field is immutable'


def test_labels_may_change_on_update() -> None:
    old = make_pod()
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"x": "y"}
    assert run("v1", "Pod", new, old) == []


def test_no_new_finalizers_while_deleting() -> None:
    old = make_pod()
    old["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = ["example.com/x"]
    causes = run("v1", "Pod", new, old)
    assert causes == [
        {
            "reason": "FieldValueForbidden",
            "field": "metadata.finalizers",
            "message": "Forbidden: no new finalizers can be added if the object is being deleted, "
            'found new finalizers []string{"example.com/x"}',
        }
    ]


# --- workloads -------------------------------------------------------------------------------------


def test_valid_deployment() -> None:
    assert run("apps/v1", "Deployment", make_deployment()) == []


def test_deployment_selector_required() -> None:
    dep = make_deployment()
    del dep["spec"]["selector"]
    causes = run("apps/v1", "Deployment", dep)
    assert causes == [
        {"reason": "FieldValueRequired", "field": "spec.selector", "message": "Required value"},
        {
            "reason": "FieldValueInvalid",
            "field": "spec.template.metadata.labels",
            "message": 'Invalid value: map[string]string{"app":"web"}: `selector` does not match template `labels`',
        },
    ]


def test_deployment_empty_selector() -> None:
    causes = run("apps/v1", "Deployment", make_deployment(selector={}))
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.selector",
            "message": "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
            "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
        }
    ]


def test_deployment_selector_mismatch() -> None:
    dep = make_deployment(selector={"matchLabels": {"app": "other"}})
    assert fields(run("apps/v1", "Deployment", dep)) == [
        ("spec.template.metadata.labels", "FieldValueInvalid")
    ]


def test_deployment_template_and_numbers() -> None:
    dep = make_deployment(replicas=-1, minReadySeconds=700)
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = ""
    dep["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    causes = run("apps/v1", "Deployment", dep)
    assert fields(causes) == [
        ("spec.replicas", "FieldValueInvalid"),
        ("spec.template.spec.containers[0].image", "FieldValueRequired"),
        ("spec.template.spec.restartPolicy", "FieldValueNotSupported"),
        ("spec.progressDeadlineSeconds", "FieldValueInvalid"),
    ]
    assert causes[0]["message"] == "Invalid value: -1: must be greater than or equal to 0"
    assert causes[2]["message"] == 'Unsupported value: "Never": supported values: "Always"'
    assert causes[3]["message"] == "Invalid value: 600: must be greater than minReadySeconds"


def test_deployment_strategy() -> None:
    bad_type = make_deployment(strategy={"type": "BlueGreen"})
    assert fields(run("apps/v1", "Deployment", bad_type)) == [
        ("spec.strategy.type", "FieldValueNotSupported")
    ]
    both_zero = make_deployment(
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}
    )
    causes = run("apps/v1", "Deployment", both_zero)
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.strategy.rollingUpdate.maxUnavailable",
            "message": 'Invalid value: "0%": may not be 0 when `maxSurge` is 0',
        }
    ]
    recreate = make_deployment(strategy={"type": "Recreate", "rollingUpdate": {}})
    assert fields(run("apps/v1", "Deployment", recreate)) == [
        ("spec.strategy.rollingUpdate", "FieldValueForbidden")
    ]
    bad_percent = make_deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x%"}})
    assert fields(run("apps/v1", "Deployment", bad_percent)) == [
        ("spec.strategy.rollingUpdate.maxSurge", "FieldValueInvalid")
    ]


def test_deployment_selector_is_immutable() -> None:
    old = make_deployment()
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "web2"}}
    new["spec"]["template"]["metadata"]["labels"] = {"app": "web2"}
    causes = run("apps/v1", "Deployment", new, old)
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.selector",
            "message": 'Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web2"}, '
            "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
        }
    ]


def test_deployment_scale_update_is_fine() -> None:
    old = make_deployment()
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 5
    assert run("apps/v1", "Deployment", new, old) == []


def test_match_expressions_validated() -> None:
    dep = make_deployment(
        selector={
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In"},
                {"key": "x", "operator": "Exists", "values": ["a"]},
                {"key": "y", "operator": "Near"},
            ],
        }
    )
    causes = run("apps/v1", "Deployment", dep)
    assert fields(causes) == [
        ("spec.selector.matchExpressions[0].values", "FieldValueRequired"),
        ("spec.selector.matchExpressions[1].values", "FieldValueForbidden"),
        ("spec.selector.matchExpressions[2].operator", "FieldValueInvalid"),
    ]


def test_replica_set_stateful_set_daemon_set() -> None:
    rs = make_deployment(selector={})
    assert run("apps/v1", "ReplicaSet", rs)[0]["message"].endswith("empty selector is invalid for deployment")
    sts = make_deployment(podManagementPolicy="Random")
    causes = run("apps/v1", "StatefulSet", sts)
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.podManagementPolicy",
            "message": "Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'",
        }
    ]
    ds = make_deployment(selector={"matchLabels": {"app": "x"}})
    assert fields(run("apps/v1", "DaemonSet", ds)) == [("spec.template.metadata.labels", "FieldValueInvalid")]
    ds_ok = make_deployment()
    assert run("apps/v1", "DaemonSet", ds_ok) == []


def test_stateful_set_update_rules() -> None:
    old = make_deployment(serviceName="web")
    ok = copy.deepcopy(old)
    ok["spec"]["replicas"] = 3
    ok["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    assert run("apps/v1", "StatefulSet", ok, copy.deepcopy(old)) == []
    bad = copy.deepcopy(old)
    bad["spec"]["serviceName"] = "other"
    assert fields(run("apps/v1", "StatefulSet", bad, copy.deepcopy(old))) == [("spec", "FieldValueForbidden")]


def make_job(**spec: Any) -> Obj:
    base: Obj = {"template": {"spec": {"containers": [container()], "restartPolicy": "Never"}}}
    base.update(spec)
    return {"metadata": {"name": "pi", "namespace": "default", "uid": "u-1"}, "spec": base}


def test_job_gets_generated_selector() -> None:
    job = make_job()
    assert run("batch/v1", "Job", job) == []
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}


def test_job_restart_policy() -> None:
    job = make_job()
    del job["spec"]["template"]["spec"]["restartPolicy"]
    causes = run("batch/v1", "Job", job)
    assert causes == [
        {
            "reason": "FieldValueRequired",
            "field": "spec.template.spec.restartPolicy",
            "message": 'Required value: valid values: "OnFailure", "Never"',
        }
    ]
    always = make_job()
    always["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert fields(run("batch/v1", "Job", always)) == [
        ("spec.template.spec.restartPolicy", "FieldValueRequired")
    ]


def test_job_manual_selector_must_match() -> None:
    job = make_job(manualSelector=True, selector={"matchLabels": {"app": "x"}})
    assert fields(run("batch/v1", "Job", job)) == [("spec.template.metadata.labels", "FieldValueInvalid")]


def test_job_update_immutables() -> None:
    old = make_job()
    run("batch/v1", "Job", old)
    new = copy.deepcopy(old)
    new["spec"]["completions"] = 5
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    causes = run("batch/v1", "Job", new, old)
    assert fields(causes) == [
        ("spec.completions", "FieldValueInvalid"),
        ("spec.template", "FieldValueInvalid"),
    ]
    assert causes[0]["message"] == "Invalid value: 5: field is immutable"


# --- services --------------------------------------------------------------------------------------


def make_service(**spec: Any) -> Obj:
    base: Obj = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    base.update(spec)
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": base}


def test_valid_service() -> None:
    assert run("v1", "Service", make_service()) == []


def test_service_ports() -> None:
    assert fields(run("v1", "Service", make_service(ports=[]))) == [("spec.ports", "FieldValueRequired")]
    assert run("v1", "Service", make_service(ports=[], clusterIP="None")) == []
    causes = run(
        "v1",
        "Service",
        make_service(ports=[{"port": 80}, {"port": 0, "name": "b"}, {"port": 81, "name": "b"}]),
    )
    assert fields(causes) == [
        ("spec.ports[0].name", "FieldValueRequired"),
        ("spec.ports[1].port", "FieldValueInvalid"),
        ("spec.ports[1].targetPort", "FieldValueInvalid"),  # defaulted from the bad port
        ("spec.ports[2].name", "FieldValueDuplicate"),
    ]
    dup = run("v1", "Service", make_service(ports=[{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]))
    assert fields(dup) == [("spec.ports[1]", "FieldValueDuplicate")]


def test_service_type_and_node_port() -> None:
    causes = run("v1", "Service", make_service(type="Magic"))
    assert causes[0] == {
        "reason": "FieldValueNotSupported",
        "field": "spec.type",
        "message": 'Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
    }
    causes = run("v1", "Service", make_service(ports=[{"port": 80, "nodePort": 30080}]))
    assert causes == [
        {
            "reason": "FieldValueForbidden",
            "field": "spec.ports[0].nodePort",
            "message": "Forbidden: may not be used when `type` is 'ClusterIP'",
        }
    ]
    assert run("v1", "Service", make_service(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])) == []


def test_external_name_service() -> None:
    svc = {"metadata": {"name": "ext", "namespace": "default"}, "spec": {"type": "ExternalName"}}
    assert fields(run("v1", "Service", svc)) == [("spec.externalName", "FieldValueRequired")]
    svc["spec"]["externalName"] = "example.com"
    assert run("v1", "Service", svc) == []


def test_service_cluster_ip_is_kept() -> None:
    old = make_service(clusterIP="10.96.0.10")
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = "10.96.0.11"
    causes = run("v1", "Service", new, old)
    assert fields(causes) == [("spec.clusterIPs[0]", "FieldValueInvalid")]
    assert causes[0]["message"].endswith("may not change once set")
    assert fields(run("v1", "Service", make_service(clusterIP="nope"))) == [
        ("spec.clusterIPs[0]", "FieldValueInvalid")
    ]


# --- config and secrets --------------------------------------------------------------------------


def test_config_map_keys() -> None:
    cm = {
        "metadata": {"name": "c", "namespace": "default"},
        "data": {"ok.key": "v", "bad key": "v", "dup": "v"},
        "binaryData": {"dup": "eA=="},
    }
    causes = run("v1", "ConfigMap", cm)
    assert fields(causes) == [
        ("data[bad key]", "FieldValueInvalid"),
        ("data[dup]", "FieldValueInvalid"),
        ("binaryData[dup]", "FieldValueInvalid"),
    ]
    assert causes[1]["message"] == 'Invalid value: "dup": duplicate of key present in binaryData'


def test_immutable_config_map() -> None:
    old: Obj = {"metadata": {"name": "c", "namespace": "default"}, "data": {"a": "1"}, "immutable": True}
    new = copy.deepcopy(old)
    new["data"]["a"] = "2"
    causes = run("v1", "ConfigMap", new, old)
    assert causes == [
        {
            "reason": "FieldValueForbidden",
            "field": "data",
            "message": "Forbidden: field is immutable when `immutable` is set",
        }
    ]


def test_secret_data() -> None:
    secret = {
        "metadata": {"name": "s", "namespace": "default"},
        "data": {"good": "aGVsbG8=", "bad": "not base64!"},
    }
    causes = run("v1", "Secret", secret)
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "field": "data[bad]",
            "message": 'Invalid value: "<secret contents redacted>": illegal base64 data at input byte 3',
        }
    ]


def test_secret_types() -> None:
    tls = {
        "metadata": {"name": "s", "namespace": "default"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "eA=="},
    }
    assert fields(run("v1", "Secret", tls)) == [("data[tls.key]", "FieldValueRequired")]
    old = {"metadata": {"name": "s", "namespace": "default"}, "type": "Opaque"}
    new = copy.deepcopy(old)
    new["type"] = "kubernetes.io/basic-auth"
    new["data"] = {"username": "eA=="}
    assert fields(run("v1", "Secret", new, old)) == [("type", "FieldValueInvalid")]


# --- other kinds -----------------------------------------------------------------------------------


def test_namespace_and_node() -> None:
    assert run("v1", "Namespace", {"metadata": {"name": "team-a"}}) == []
    node = {
        "metadata": {"name": "node-1"},
        "spec": {
            "podCIDR": "10.244.0.0/24",
            "taints": [
                {"key": "k", "effect": "NoSchedule"},
                {"key": "k", "effect": "NoSchedule"},
                {"key": "x"},
            ],
        },
    }
    causes = run("v1", "Node", node)
    assert fields(causes) == [
        ("spec.taints[1]", "FieldValueDuplicate"),
        ("spec.taints[2].effect", "FieldValueRequired"),
    ]
    assert causes[0]["message"].endswith("taints must be unique by key and effect pair")
    bad_cidr = {"metadata": {"name": "node-1"}, "spec": {"podCIDR": "10.244.0.0"}}
    assert fields(run("v1", "Node", bad_cidr)) == [("spec.podCIDRs[0]", "FieldValueInvalid")]


def test_event_namespace_must_match() -> None:
    event: Obj = {
        "metadata": {"name": "web.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "other"},
        "reason": "Started",
    }
    causes = run("v1", "Event", event)
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "field": "involvedObject.namespace",
            "message": 'Invalid value: "other": does not match event.namespace',
        }
    ]
    event["involvedObject"]["namespace"] = "default"
    assert run("v1", "Event", event) == []


def test_lease() -> None:
    lease = {
        "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
        "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1},
    }
    assert fields(run("coordination.k8s.io/v1", "Lease", lease)) == [
        ("spec.leaseDurationSeconds", "FieldValueInvalid"),
        ("spec.leaseTransitions", "FieldValueInvalid"),
    ]


def test_pvc_and_pv() -> None:
    pvc = {"metadata": {"name": "data", "namespace": "default"}, "spec": {}}
    causes = run("v1", "PersistentVolumeClaim", pvc)
    assert causes == [
        {
            "reason": "FieldValueRequired",
            "field": "spec.accessModes",
            "message": "Required value: at least 1 access mode is required",
        },
        {"reason": "FieldValueRequired", "field": "spec.resources[storage]", "message": "Required value"},
    ]
    good: Obj = {
        "metadata": {"name": "data", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    assert run("v1", "PersistentVolumeClaim", good) == []
    grown = copy.deepcopy(good)
    grown["spec"]["resources"]["requests"]["storage"] = "2Gi"
    assert run("v1", "PersistentVolumeClaim", grown, copy.deepcopy(good)) == []
    changed = copy.deepcopy(good)
    changed["spec"]["accessModes"] = ["ReadWriteMany"]
    assert fields(run("v1", "PersistentVolumeClaim", changed, copy.deepcopy(good))) == [
        ("spec", "FieldValueForbidden")
    ]
    pv = {
        "metadata": {"name": "pv1"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"},
            "hostPath": {"path": "/d"},
        },
    }
    assert run("v1", "PersistentVolume", pv) == []
    assert fields(
        run(
            "v1",
            "PersistentVolume",
            {
                "metadata": {"name": "pv2"},
                "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}},
            },
        )
    ) == [("spec", "FieldValueRequired")]


def test_ingress() -> None:
    ing = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "rules": [
                {
                    "host": "web.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "web", "port": {"number": 80}}},
                            },
                            {
                                "path": "api",
                                "pathType": "Exact",
                                "backend": {"service": {"name": "api", "port": {"number": 80}}},
                            },
                            {"path": "/x", "backend": {"service": {"name": "x", "port": {"number": 80}}}},
                            {
                                "path": "/y",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "y", "port": {}}},
                            },
                        ]
                    },
                },
                {"host": "10.0.0.1"},
            ]
        },
    }
    causes = run("networking.k8s.io/v1", "Ingress", ing)
    assert fields(causes) == [
        ("spec.rules[0].http.paths[1].path", "FieldValueInvalid"),
        ("spec.rules[0].http.paths[2].pathType", "FieldValueRequired"),
        ("spec.rules[0].http.paths[3].backend.service.port", "FieldValueRequired"),
        ("spec.rules[1].host", "FieldValueInvalid"),
    ]
    assert causes[0]["message"] == 'Invalid value: "api": must be an absolute path'
    assert causes[3]["message"] == 'Invalid value: "10.0.0.1": must be a DNS name, not an IP address'


def test_storage_class() -> None:
    sc_info = "storage.k8s.io/v1"
    assert fields(run(sc_info, "StorageClass", {"metadata": {"name": "fast"}})) == [
        ("provisioner", "FieldValueRequired")
    ]
    old = {"metadata": {"name": "fast"}, "provisioner": "example.com/hostpath"}
    assert run(sc_info, "StorageClass", copy.deepcopy(old)) == []
    new = copy.deepcopy(old)
    new["provisioner"] = "other.io/x"
    causes = run(sc_info, "StorageClass", new, old)
    assert causes == [
        {
            "reason": "FieldValueForbidden",
            "field": "provisioner",
            "message": "Forbidden: updates to provisioner are forbidden.",
        }
    ]


def test_causes_render_as_kubernetes_invalid_status() -> None:
    pod = make_pod(containers=[container(image="")])
    causes = run("v1", "Pod", pod)
    err = errors.invalid("Pod", "web", causes)
    assert err.message == 'Pod "web" is invalid: spec.containers[0].image: Required value'
    assert err.status()["details"]["causes"] == causes


def test_malformed_shapes_do_not_crash() -> None:
    pod = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": ["oops", {"name": 5}], "volumes": "x"},
    }
    causes = validate(POD, pod)
    assert ("spec.containers[0].name", "FieldValueRequired") in fields(causes)
    assert validate(DEPLOYMENT, {"metadata": "x", "spec": None}) != []


@pytest.mark.parametrize("kind", ["ConfigMap", "ServiceAccount", "Endpoints"])
def test_simple_kinds_accept_minimal_objects(kind: str) -> None:
    assert run("v1", kind, {"metadata": {"name": "x", "namespace": "default"}}) == []


def test_statefulset_containers_may_mount_claim_templates() -> None:
    from apimachinery.resources import by_plural
    from apiserver.validation import validate

    info = by_plural("apps", "v1", "statefulsets")
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "serviceName": "db",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "containers": [
                        {"name": "db", "image": "x:1", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}
                    ]
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
        },
    }
    from apimachinery.defaults import apply_defaults

    apply_defaults(info, sts)
    assert [c for c in validate(info, sts) if "volumeMounts" in c["field"]] == []
    sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = "other"
    assert any("volumeMounts[0].name" in c["field"] for c in validate(info, sts))


def test_pvc_without_class_may_get_one_later() -> None:
    from apimachinery.resources import by_plural
    from apiserver.validation import validate

    info = by_plural("", "v1", "persistentvolumeclaims")
    old = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "c", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    new = {**old, "spec": {**old["spec"], "storageClassName": "standard"}}
    assert validate(info, new, old) == []
    changed = {**old, "spec": {**old["spec"], "storageClassName": "other"}}
    assert validate(info, changed, new) != []


def _pod_with_new_image() -> tuple[Obj, Obj]:
    old = make_pod()
    apply_defaults(POD, old)
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.26"
    new["spec"]["activeDeadlineSeconds"] = 5
    return new, old


@pytest.mark.parametrize(
    ("api_version", "kind", "objects"),
    [
        ("batch/v1", "Job", lambda: (make_job(), None)),
        ("batch/v1", "Job", lambda: (make_job(manualSelector=True), None)),
        ("v1", "Pod", lambda: (make_pod(containers=[container(image="")]), None)),
        ("v1", "Pod", _pod_with_new_image),
        ("apps/v1", "Deployment", lambda: (make_deployment(), None)),
        ("v1", "Service", lambda: (make_service(type="NodePort"), make_service())),
    ],
)
def test_validate_never_changes_its_input(api_version: str, kind: str, objects: Any) -> None:
    obj, old = objects()
    before, old_before = copy.deepcopy(obj), copy.deepcopy(old)
    validate(info(api_version, kind), obj, old)
    assert (obj, old) == (before, old_before)


def test_job_selector_is_generated_by_create_defaulting_not_validation() -> None:
    job = make_job()
    assert ("spec.selector", "FieldValueRequired") in fields(validate(info("batch/v1", "Job"), job))
    assert "selector" not in job["spec"]
    assert run("batch/v1", "Job", job) == []
