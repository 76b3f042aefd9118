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
INVALID = "FieldValueInvalid"
REQUIRED = "FieldValueRequired"


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


def cause(reason: str, field: str, message: str) -> dict[str, str]:
    return {"reason": reason, "field": field, "message": message}


def edited(obj: Obj, changes: dict[str, Any]) -> Obj:
    """A deep copy of ``obj`` with each dotted path of ``changes`` set (a number indexes a list;
    ``None`` deletes)."""
    out = copy.deepcopy(obj)
    for path, value in changes.items():
        *parents, last = path.split(".")
        target: Any = out
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target.setdefault(key, {})
        if value is None:
            del target[last]
        else:
            target[last] = value
    return out


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


def test_generate_name_alone_is_fine() -> None:
    pod = make_pod()
    pod["metadata"] = {"generateName": "web-", "namespace": "default"}
    assert run("v1", "Pod", pod) == []


def test_name_too_long() -> None:
    pod = make_pod()
    pod["metadata"]["name"] = "a" * 254
    causes = run("v1", "Pod", pod)
    assert causes[0]["message"] == f'Invalid value: "{"a" * 254}": must be no more than 253 characters'


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


# --- pods ------------------------------------------------------------------------------------------


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


def test_labels_may_change_on_update() -> None:
    old = make_pod()
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"x": "y"}
    assert run("v1", "Pod", new, old) == []


# --- workloads -------------------------------------------------------------------------------------


def test_valid_deployment() -> None:
    assert run("apps/v1", "Deployment", make_deployment()) == []


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


def test_deployment_scale_update_is_fine() -> None:
    old = make_deployment()
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 5
    assert run("apps/v1", "Deployment", new, old) == []


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


CLAIM_SPEC: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}


def test_statefulset_containers_may_mount_claim_templates() -> None:
    sts_info = info("apps/v1", "StatefulSet")
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
                    "spec": copy.deepcopy(CLAIM_SPEC),
                }
            ],
        },
    }
    apply_defaults(sts_info, sts)
    assert [c for c in validate(sts_info, sts) if "volumeMounts" in c["field"]] == []
    sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = "other"
    assert any("volumeMounts[0].name" in c["field"] for c in validate(sts_info, sts))


def test_pvc_without_class_may_get_one_later() -> None:
    pvc_info = info("v1", "PersistentVolumeClaim")
    old = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "c", "namespace": "default"},
        "spec": copy.deepcopy(CLAIM_SPEC),
    }
    new = {**old, "spec": {**old["spec"], "storageClassName": "standard"}}
    assert validate(pvc_info, new, old) == []
    changed = {**old, "spec": {**old["spec"], "storageClassName": "other"}}
    assert validate(pvc_info, changed, new) != []


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


# --- one object, its causes ---------------------------------------------------------------------

VERSIONS = {
    "Pod": "v1",
    "Node": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
    "Lease": "coordination.k8s.io/v1",
    "Ingress": "networking.k8s.io/v1",
}
DELETING = "2024-01-01T00:00:00Z"
CONFIG_MAP: Obj = {"metadata": {"name": "c", "namespace": "default"}, "data": {"a": "1"}, "immutable": True}
BAD_NAME = (
    'Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case '
    "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
    "(e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
EMPTY_SELECTOR = (
    "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
    "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
)
SELECTOR_CHANGED = (
    'Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web2"}, '
    "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
)
NEW_FINALIZER = (
    "Forbidden: no new finalizers can be added if the object is being deleted, "
    'found new finalizers []string{"example.com/x"}'
)
NEW_SELECTOR = {
    "spec.selector": {"matchLabels": {"app": "web2"}},
    "spec.template.metadata.labels": {"app": "web2"},
}
BAD_SECRET: Obj = {
    "metadata": {"name": "s", "namespace": "default"},
    "data": {"good": "aGVsbG8=", "bad": "not base64!"},
}

# test id: (kind, object, old object for an update, [(reason, field, message), ...])
CAUSES: dict[str, tuple[str, Obj, Obj | None, list[tuple[str, str, str]]]] = {
    "bad_name_message": (
        "Pod",
        edited(make_pod(), {"metadata.name": "Bad_Name"}),
        None,
        [(INVALID, "metadata.name", BAD_NAME)],
    ),
    "name_required": (
        "Pod",
        edited(make_pod(), {"metadata.name": None}),
        None,
        [(REQUIRED, "metadata.name", "Required value: name or generateName is required")],
    ),
    "namespace_forbidden_for_cluster_kinds": (
        "Node",
        {"metadata": {"name": "n1", "namespace": "default"}},
        None,
        [("FieldValueForbidden", "metadata.namespace", "Forbidden: not allowed on this type")],
    ),
    "annotations_total_size": (
        "Pod",
        edited(make_pod(), {"metadata.annotations": {"big": "x" * (256 * 1024)}}),
        None,
        [("FieldValueTooLong", "metadata.annotations", "Too long: may not be more than 262144 bytes")],
    ),
    "owner_references_need_identity": (
        "Pod",
        edited(
            make_pod(),
            {"metadata.ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs"}]},
        ),
        None,
        [(INVALID, "metadata.ownerReferences.uid", 'Invalid value: "": uid must not be empty')],
    ),
    "image_required": (
        "Pod",
        make_pod(containers=[container(image="")]),
        None,
        [(REQUIRED, "spec.containers[0].image", "Required value")],
    ),
    "negative_quantity": (
        "Pod",
        make_pod(containers=[container(resources={"requests": {"memory": "-1Gi"}})]),
        None,
        [
            (
                INVALID,
                "spec.containers[0].resources.requests[memory]",
                'Invalid value: "-1Gi": must be greater than or equal to 0',
            )
        ],
    ),
    "active_deadline": (
        "Pod",
        make_pod(activeDeadlineSeconds=0),
        None,
        [
            (
                INVALID,
                "spec.activeDeadlineSeconds",
                "Invalid value: 0: must be between 1 and 2147483647, inclusive",
            )
        ],
    ),
    "no_new_finalizers_while_deleting": (
        "Pod",
        edited(
            make_pod(), {"metadata.deletionTimestamp": DELETING, "metadata.finalizers": ["example.com/x"]}
        ),
        edited(make_pod(), {"metadata.deletionTimestamp": DELETING}),
        [("FieldValueForbidden", "metadata.finalizers", NEW_FINALIZER)],
    ),
    "deployment_selector_required": (
        "Deployment",
        edited(make_deployment(), {"spec.selector": None}),
        None,
        [
            (REQUIRED, "spec.selector", "Required value"),
            (
                INVALID,
                "spec.template.metadata.labels",
                'Invalid value: map[string]string{"app":"web"}: `selector` does not match template `labels`',
            ),
        ],
    ),
    "deployment_empty_selector": (
        "Deployment",
        make_deployment(selector={}),
        None,
        [(INVALID, "spec.selector", EMPTY_SELECTOR)],
    ),
    "deployment_selector_is_immutable": (
        "Deployment",
        edited(make_deployment(), NEW_SELECTOR),
        make_deployment(),
        [(INVALID, "spec.selector", SELECTOR_CHANGED)],
    ),
    "immutable_config_map": (
        "ConfigMap",
        edited(CONFIG_MAP, {"data.a": "2"}),
        CONFIG_MAP,
        [("FieldValueForbidden", "data", "Forbidden: field is immutable when `immutable` is set")],
    ),
    "secret_data": (
        "Secret",
        BAD_SECRET,
        None,
        [
            (
                INVALID,
                "data[bad]",
                'Invalid value: "<secret contents redacted>": illegal base64 data at input byte 3',
            )
        ],
    ),
}


@pytest.mark.parametrize(("kind", "obj", "old", "expected"), CAUSES.values(), ids=CAUSES.keys())
def test_causes(kind: str, obj: Obj, old: Obj | None, expected: list[tuple[str, str, str]]) -> None:
    causes = run(VERSIONS[kind], kind, copy.deepcopy(obj), copy.deepcopy(old))
    assert causes == [cause(*c) for c in expected]


INGRESS_RULES = [
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
                {"path": "/y", "pathType": "Prefix", "backend": {"service": {"name": "y", "port": {}}}},
            ]
        },
    },
    {"host": "10.0.0.1"},
]
CONTAINER_PORTS = [
    {"containerPort": 0},
    {"containerPort": 70000},
    {"containerPort": 80, "name": "http"},
    {"containerPort": 81, "name": "http"},
    {"containerPort": 82, "protocol": "ICMP"},
    {"containerPort": 83, "name": "Bad_Name"},
]
VOLUMES = [
    {"name": "data"},
    {"name": "data"},
    {"name": "cfg", "configMap": {}},
    {"name": "two", "emptyDir": {}, "hostPath": {"path": "/x"}},
]
VOLUME_MOUNTS = [
    {"name": "data", "mountPath": "/data"},
    {"name": "nope", "mountPath": "/nope"},
    {"name": "cfg", "mountPath": "/data"},
    {"name": "cfg"},
]
ENV = [
    {"name": "GOOD", "value": "x"},
    {"name": "1BAD"},
    {"name": ""},
    {"name": "REF", "valueFrom": {"configMapKeyRef": {"name": "cm"}}},
    {"name": "FIELD", "valueFrom": {"fieldRef": {"fieldPath": "status.nothing"}}},
    {"name": "BOTH", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    {"name": "LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
]
RESOURCES = {
    "limits": {"cpu": "1", "memory": "bogus"},
    "requests": {"cpu": "2", "gpu": "1", "nvidia.com/gpu": "1"},
}
TOLERATIONS = [
    {"operator": "Exists"},
    {"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
    {"operator": "Equal", "value": "x"},
    {"key": "k", "operator": "Maybe"},
    {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 10},
]
PROBES = {
    "livenessProbe": {"httpGet": {"port": 0}, "successThreshold": 2},
    "readinessProbe": {"periodSeconds": -1, "exec": {"command": ["true"]}},
    "startupProbe": {},
}
MATCH_EXPRESSIONS = [
    {"key": "tier", "operator": "In"},
    {"key": "x", "operator": "Exists", "values": ["a"]},
    {"key": "y", "operator": "Near"},
]
CONFIG_MAP_KEYS: Obj = {
    "metadata": {"name": "c", "namespace": "default"},
    "data": {"ok.key": "v", "bad key": "v", "dup": "v"},
    "binaryData": {"dup": "eA=="},
}
LEASE: Obj = {
    "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
    "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1},
}
REPLICAS_AND_TEMPLATE = {
    "spec.template.spec.containers.0.image": "",
    "spec.template.spec.restartPolicy": "Never",
}

# test id: (kind, object, old object for an update, [(field, reason), ...], {cause index: message})
FIELD_ERRORS: dict[str, tuple[str, Obj, Obj | None, list[tuple[str, str]], dict[int, str]]] = {
    "containers_required": ("Pod", make_pod(containers=[]), None, [("spec.containers", REQUIRED)], {}),
    "container_name_required": (
        "Pod",
        make_pod(containers=[container(name="")]),
        None,
        [("spec.containers[0].name", REQUIRED)],
        {},
    ),
    "namespace_required_for_namespaced_kinds": (
        "Pod",
        edited(make_pod(), {"metadata.namespace": None}),
        None,
        [("metadata.namespace", REQUIRED)],
        {},
    ),
    "container_names": (
        "Pod",
        make_pod(
            containers=[container(name="app"), container(name="app"), container(name="Bad")],
            initContainers=[container(name="app")],
        ),
        None,
        [
            ("spec.containers[1].name", "FieldValueDuplicate"),
            ("spec.containers[2].name", INVALID),
            ("spec.initContainers[0].name", "FieldValueDuplicate"),
        ],
        {0: 'Duplicate value: "app"'},
    ),
    "ports": (
        "Pod",
        make_pod(containers=[container(ports=CONTAINER_PORTS)]),
        None,
        [
            ("spec.containers[0].ports[0].containerPort", REQUIRED),
            ("spec.containers[0].ports[1].containerPort", INVALID),
            ("spec.containers[0].ports[3].name", "FieldValueDuplicate"),
            ("spec.containers[0].ports[4].protocol", "FieldValueNotSupported"),
            ("spec.containers[0].ports[5].name", INVALID),
        ],
        {
            1: "Invalid value: 70000: must be between 1 and 65535, inclusive",
            3: 'Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"',
        },
    ),
    "volumes_and_mounts": (
        "Pod",
        make_pod(volumes=VOLUMES, containers=[container(volumeMounts=VOLUME_MOUNTS)]),
        None,
        [
            ("spec.volumes[1].name", "FieldValueDuplicate"),
            ("spec.volumes[2].configMap.name", REQUIRED),
            ("spec.volumes[3].emptyDir", "FieldValueForbidden"),
            ("spec.containers[0].volumeMounts[1].name", "FieldValueNotFound"),
            ("spec.containers[0].volumeMounts[2].mountPath", INVALID),
            ("spec.containers[0].volumeMounts[3].mountPath", REQUIRED),
        ],
        {3: 'Not found: "nope"', 4: 'Invalid value: "/data": must be unique'},
    ),
    "env": (
        "Pod",
        make_pod(containers=[container(env=ENV)]),
        None,
        [
            ("spec.containers[0].env[1].name", INVALID),
            ("spec.containers[0].env[2].name", REQUIRED),
            ("spec.containers[0].env[3].valueFrom.configMapKeyRef.key", REQUIRED),
            ("spec.containers[0].env[4].valueFrom.fieldRef.fieldPath", "FieldValueNotSupported"),
            ("spec.containers[0].env[5].valueFrom", INVALID),
        ],
        {
            0: 'Invalid value: "1BAD": a valid environment variable name must consist of alphabetic characters, '
            "digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  "
            "or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')",
            4: 'Invalid value: "": may not be specified when `value` is not empty',
        },
    ),
    "resources": (
        "Pod",
        make_pod(containers=[container(resources=RESOURCES)]),
        None,
        [
            ("spec.containers[0].resources.limits[memory]", INVALID),
            ("spec.containers[0].resources.requests", INVALID),
            ("spec.containers[0].resources.requests[gpu]", INVALID),
            # Pods copy limits into missing requests before validation, as Kubernetes does.
            ("spec.containers[0].resources.requests[memory]", INVALID),
        ],
        {
            0: 'Invalid value: "bogus": quantities must match the regular expression '
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            1: 'Invalid value: "2": must be less than or equal to cpu limit of 1',
            2: 'Invalid value: "gpu": must be a standard resource for containers',
        },
    ),
    "tolerations_and_node_selector": (
        "Pod",
        make_pod(nodeSelector={"disk": "ssd", "bad key": "x"}, tolerations=TOLERATIONS),
        None,
        [
            ("spec.nodeSelector", INVALID),
            ("spec.tolerations[2].operator", INVALID),
            ("spec.tolerations[3].operator", "FieldValueNotSupported"),
            ("spec.tolerations[4].effect", INVALID),
        ],
        {},
    ),
    "probes": (
        "Pod",
        make_pod(containers=[container(**PROBES)]),
        None,
        [
            ("spec.containers[0].livenessProbe.httpGet.port", INVALID),
            ("spec.containers[0].livenessProbe.successThreshold", INVALID),
            ("spec.containers[0].readinessProbe.periodSeconds", INVALID),
            ("spec.containers[0].startupProbe", REQUIRED),
        ],
        {1: "Invalid value: 2: must be 1", 3: "Required value: must specify a handler type"},
    ),
    "metadata_identity_is_immutable": (
        "Pod",
        edited(make_pod(), {"metadata.name": "other", "metadata.uid": "u2"}),
        edited(make_pod(), {"metadata.uid": "u1"}),
        [("metadata.name", INVALID), ("metadata.uid", INVALID)],
        {0: 'Invalid value: "other": field is immutable'},
    ),
    "deployment_selector_mismatch": (
        "Deployment",
        make_deployment(selector={"matchLabels": {"app": "other"}}),
        None,
        [("spec.template.metadata.labels", INVALID)],
        {},
    ),
    "deployment_template_and_numbers": (
        "Deployment",
        edited(make_deployment(replicas=-1, minReadySeconds=700), REPLICAS_AND_TEMPLATE),
        None,
        [
            ("spec.replicas", INVALID),
            ("spec.template.spec.containers[0].image", REQUIRED),
            ("spec.template.spec.restartPolicy", "FieldValueNotSupported"),
            ("spec.progressDeadlineSeconds", INVALID),
        ],
        {
            0: "Invalid value: -1: must be greater than or equal to 0",
            2: 'Unsupported value: "Never": supported values: "Always"',
            3: "Invalid value: 600: must be greater than minReadySeconds",
        },
    ),
    "match_expressions_validated": (
        "Deployment",
        make_deployment(selector={"matchLabels": {"app": "web"}, "matchExpressions": MATCH_EXPRESSIONS}),
        None,
        [
            ("spec.selector.matchExpressions[0].values", REQUIRED),
            ("spec.selector.matchExpressions[1].values", "FieldValueForbidden"),
            ("spec.selector.matchExpressions[2].operator", INVALID),
        ],
        {},
    ),
    "job_manual_selector_must_match": (
        "Job",
        make_job(manualSelector=True, selector={"matchLabels": {"app": "x"}}),
        None,
        [("spec.template.metadata.labels", INVALID)],
        {},
    ),
    "config_map_keys": (
        "ConfigMap",
        CONFIG_MAP_KEYS,
        None,
        [("data[bad key]", INVALID), ("data[dup]", INVALID), ("binaryData[dup]", INVALID)],
        {1: 'Invalid value: "dup": duplicate of key present in binaryData'},
    ),
    "lease": (
        "Lease",
        LEASE,
        None,
        [("spec.leaseDurationSeconds", INVALID), ("spec.leaseTransitions", INVALID)],
        {},
    ),
    "ingress": (
        "Ingress",
        {"metadata": {"name": "web", "namespace": "default"}, "spec": {"rules": INGRESS_RULES}},
        None,
        [
            ("spec.rules[0].http.paths[1].path", INVALID),
            ("spec.rules[0].http.paths[2].pathType", REQUIRED),
            ("spec.rules[0].http.paths[3].backend.service.port", REQUIRED),
            ("spec.rules[1].host", INVALID),
        ],
        {
            0: 'Invalid value: "api": must be an absolute path',
            3: 'Invalid value: "10.0.0.1": must be a DNS name, not an IP address',
        },
    ),
}


@pytest.mark.parametrize(
    ("kind", "obj", "old", "expected", "messages"), FIELD_ERRORS.values(), ids=FIELD_ERRORS.keys()
)
def test_field_errors(
    kind: str, obj: Obj, old: Obj | None, expected: list[tuple[str, str]], messages: dict[int, str]
) -> None:
    """The fields and reasons of every cause, and the messages of some."""
    causes = run(VERSIONS[kind], kind, copy.deepcopy(obj), copy.deepcopy(old))
    assert fields(causes) == expected
    assert {i: causes[i]["message"] for i in messages} == messages
