"""Defaulting follows Kubernetes' SetDefaults_* functions (and the values admission adds)."""

import base64
import copy
from typing import Any

import pytest

from apimachinery.defaults import apply_defaults, default_pull_policy, generate_job_selector, qos_class
from apimachinery.resources import by_kind


def defaulted(api_version: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    info = by_kind(api_version, kind)
    assert info is not None
    apply_defaults(info, obj)
    return obj


def pod(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    base.update(spec)
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": base}


def template(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx:1.25"}]}
    base.update(spec)
    return {"metadata": {"labels": {"app": "web"}}, "spec": base}


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.25", "IfNotPresent"),
        ("registry:5000/nginx", "Always"),
        ("registry:5000/nginx:1.0", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
        ("nginx:1.0@sha256:" + "a" * 64, "IfNotPresent"),
    ],
)
def test_image_pull_policy(image: str, policy: str) -> None:
    assert default_pull_policy(image) == policy


def test_pod_spec_defaults() -> None:
    spec = defaulted("v1", "Pod", pod())["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["securityContext"] == {}
    assert spec["serviceAccountName"] == "default"
    assert spec["serviceAccount"] == "default"
    assert spec["enableServiceLinks"] is True
    assert spec["priority"] == 0
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"


def test_pod_status_starts_pending() -> None:
    obj = defaulted("v1", "Pod", pod())
    assert obj["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


def test_given_values_are_kept() -> None:
    spec = defaulted(
        "v1",
        "Pod",
        pod(
            restartPolicy="Never",
            dnsPolicy="Default",
            terminationGracePeriodSeconds=0,
            serviceAccountName="robot",
        ),
    )["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["dnsPolicy"] == "Default"
    assert spec["terminationGracePeriodSeconds"] == 0
    assert spec["serviceAccountName"] == "robot"
    assert spec["serviceAccount"] == "robot"


def test_deprecated_service_account_is_honoured() -> None:
    spec = defaulted("v1", "Pod", pod(serviceAccount="old"))["spec"]
    assert spec["serviceAccountName"] == "old"


def test_container_defaults() -> None:
    obj = pod(
        containers=[
            {
                "name": "c",
                "image": "nginx:1.25",
                "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "livenessProbe": {"httpGet": {"port": 80}},
                "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 5},
            }
        ],
        initContainers=[{"name": "init", "image": "busybox"}],
    )
    spec = defaulted("v1", "Pod", obj)["spec"]
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["resources"] == {}
    assert [p["protocol"] for p in c["ports"]] == ["TCP", "UDP"]
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert c["livenessProbe"] == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert c["readinessProbe"]["periodSeconds"] == 5
    init = spec["initContainers"][0]
    assert init["imagePullPolicy"] == "Always"
    assert init["terminationMessagePolicy"] == "File"


def test_volume_defaults() -> None:
    obj = pod(
        volumes=[
            {"name": "scratch"},
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "sec", "secret": {"secretName": "s", "defaultMode": 256}},
            {"name": "host", "hostPath": {"path": "/tmp"}},
        ]
    )
    volumes = defaulted("v1", "Pod", obj)["spec"]["volumes"]
    assert volumes[0] == {"name": "scratch", "emptyDir": {}}
    assert volumes[1]["configMap"] == {"name": "cfg", "defaultMode": 420}
    assert volumes[2]["secret"]["defaultMode"] == 256
    assert volumes[3]["hostPath"] == {"path": "/tmp", "type": ""}


def test_pod_requests_default_to_limits() -> None:
    obj = pod(
        containers=[
            {
                "name": "c",
                "image": "x",
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}},
            }
        ]
    )
    resources = defaulted("v1", "Pod", obj)["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "500m", "memory": "1Gi"}


def test_host_network_copies_container_ports() -> None:
    obj = pod(hostNetwork=True, containers=[{"name": "c", "image": "x", "ports": [{"containerPort": 8080}]}])
    port = defaulted("v1", "Pod", obj)["spec"]["containers"][0]["ports"][0]
    assert port["hostPort"] == 8080


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        ({}, "BestEffort"),
        ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
        ({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
        ({"requests": {"cpu": "100m"}}, "Burstable"),
        ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}, "Burstable"),
        # equal quantities written differently are equal
        (
            {"limits": {"cpu": "1000m", "memory": "1024Mi"}, "requests": {"cpu": "1", "memory": "1Gi"}},
            "Guaranteed",
        ),
        (
            {"limits": {"cpu": "0.5", "memory": "1G"}, "requests": {"cpu": "500m", "memory": "1000M"}},
            "Guaranteed",
        ),
        # zero counts as unset
        ({"limits": {"cpu": "0", "memory": "0"}}, "BestEffort"),
        ({"limits": {"cpu": "0", "memory": "1Gi"}}, "Burstable"),
    ],
)
def test_qos_class(resources: dict[str, Any], qos: str) -> None:
    obj = pod(containers=[{"name": "c", "image": "x", "resources": copy.deepcopy(resources)}])
    assert defaulted("v1", "Pod", obj)["status"]["qosClass"] == qos
    assert qos_class({"containers": []}) == "BestEffort"


def test_defaulting_is_idempotent() -> None:
    first = defaulted("v1", "Pod", pod(volumes=[{"name": "v"}]))
    second = defaulted("v1", "Pod", copy.deepcopy(first))
    assert first == second


def test_deployment_defaults() -> None:
    obj = defaulted("apps/v1", "Deployment", {"metadata": {"name": "d"}, "spec": {"template": template()}})
    spec = obj["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert "minReadySeconds" not in spec
    tspec = spec["template"]["spec"]
    assert tspec["restartPolicy"] == "Always"
    assert tspec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    # Pod-only defaults stay off templates.
    assert "enableServiceLinks" not in tspec
    assert "serviceAccountName" not in tspec


def test_deployment_recreate_gets_no_rolling_update() -> None:
    obj = defaulted(
        "apps/v1", "Deployment", {"spec": {"strategy": {"type": "Recreate"}, "template": template()}}
    )
    assert obj["spec"]["strategy"] == {"type": "Recreate"}


def test_deployment_replicas_zero_kept() -> None:
    obj = defaulted("apps/v1", "Deployment", {"spec": {"replicas": 0, "template": template()}})
    assert obj["spec"]["replicas"] == 0


def test_replica_set_defaults() -> None:
    obj = defaulted("apps/v1", "ReplicaSet", {"spec": {"template": template()}})
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


def test_stateful_set_defaults() -> None:
    obj = defaulted("apps/v1", "StatefulSet", {"spec": {"template": template()}})
    spec = obj["spec"]
    assert spec["replicas"] == 1
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}


def test_daemon_set_defaults() -> None:
    obj = defaulted("apps/v1", "DaemonSet", {"spec": {"template": template()}})
    spec = obj["spec"]
    assert spec["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    assert spec["revisionHistoryLimit"] == 10
    assert "replicas" not in spec


def test_job_defaults() -> None:
    obj = defaulted("batch/v1", "Job", {"metadata": {"name": "j"}, "spec": {"template": template()}})
    spec = obj["spec"]
    assert spec["parallelism"] == 1
    assert spec["completions"] == 1
    assert spec["backoffLimit"] == 6
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    # The template's restartPolicy is not defaulted to Always for Jobs.
    assert "restartPolicy" not in spec["template"]["spec"]
    assert spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    # Job labels default to the template's.
    assert obj["metadata"]["labels"] == {"app": "web"}


def test_job_parallelism_alone_leaves_completions_unset() -> None:
    obj = defaulted(
        "batch/v1", "Job", {"spec": {"parallelism": 3, "template": template(restartPolicy="Never")}}
    )
    assert obj["spec"]["parallelism"] == 3
    assert "completions" not in obj["spec"]
    assert obj["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_generate_job_selector() -> None:
    obj: dict[str, Any] = {"metadata": {"name": "pi", "uid": "1234"}, "spec": {"template": template()}}
    generate_job_selector(obj)
    assert obj["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "1234"}}
    assert obj["spec"]["template"]["metadata"]["labels"] == {
        "app": "web",
        "job-name": "pi",
        "batch.kubernetes.io/job-name": "pi",
        "controller-uid": "1234",
        "batch.kubernetes.io/controller-uid": "1234",
    }
    manual: dict[str, Any] = {
        "metadata": {"name": "pi", "uid": "1"},
        "spec": {"manualSelector": True, "template": template()},
    }
    generate_job_selector(manual)
    assert "selector" not in manual["spec"]


def test_service_defaults() -> None:
    obj = defaulted(
        "v1",
        "Service",
        {
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}],
            }
        },
    )
    spec = obj["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert spec["ipFamilies"] == ["IPv4"]
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert "externalTrafficPolicy" not in spec
    assert spec["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}
    assert spec["ports"][1]["targetPort"] == "dns"
    assert spec["ports"][1]["protocol"] == "UDP"


def test_node_port_and_load_balancer_services() -> None:
    node_port = defaulted("v1", "Service", {"spec": {"type": "NodePort", "ports": [{"port": 80}]}})["spec"]
    assert node_port["externalTrafficPolicy"] == "Cluster"
    lb = defaulted("v1", "Service", {"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})["spec"]
    assert lb["allocateLoadBalancerNodePorts"] is True
    assert lb["externalTrafficPolicy"] == "Cluster"


def test_external_name_service() -> None:
    spec = defaulted("v1", "Service", {"spec": {"type": "ExternalName", "externalName": "example.com"}})[
        "spec"
    ]
    assert "ipFamilies" not in spec
    assert "internalTrafficPolicy" not in spec


def test_client_ip_affinity_timeout() -> None:
    spec = defaulted("v1", "Service", {"spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}})[
        "spec"
    ]
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_secret_defaults_and_string_data() -> None:
    obj = defaulted(
        "v1",
        "Secret",
        {"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"b": "hello", "a": "y"}},
    )
    assert obj["type"] == "Opaque"
    assert "stringData" not in obj
    assert base64.b64decode(obj["data"]["b"]) == b"hello"
    assert base64.b64decode(obj["data"]["a"]) == b"y"  # stringData wins


def test_namespace_defaults() -> None:
    obj = defaulted("v1", "Namespace", {"metadata": {"name": "team-a"}})
    assert obj["spec"] == {"finalizers": ["kubernetes"]}
    assert obj["status"] == {"phase": "Active"}
    assert obj["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}


def test_pv_and_pvc_defaults() -> None:
    pv = defaulted("v1", "PersistentVolume", {"spec": {"hostPath": {"path": "/data"}}})
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["volumeMode"] == "Filesystem"
    assert pv["status"]["phase"] == "Pending"
    pvc = defaulted("v1", "PersistentVolumeClaim", {"spec": {}})
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert pvc["status"]["phase"] == "Pending"


def test_node_allocatable_defaults_to_capacity() -> None:
    node = defaulted("v1", "Node", {"status": {"capacity": {"cpu": "2", "memory": "4Gi"}}})
    assert node["status"]["allocatable"] == {"cpu": "2", "memory": "4Gi"}


def test_endpoints_and_storage_class() -> None:
    ep = defaulted("v1", "Endpoints", {"subsets": [{"ports": [{"port": 80}]}]})
    assert ep["subsets"][0]["ports"][0]["protocol"] == "TCP"
    sc = defaulted("storage.k8s.io/v1", "StorageClass", {"provisioner": "x"})
    assert sc["reclaimPolicy"] == "Delete"
    assert sc["volumeBindingMode"] == "Immediate"


def test_kinds_without_defaults_are_untouched() -> None:
    cm = {"metadata": {"name": "c"}, "data": {"a": "b"}}
    assert defaulted("v1", "ConfigMap", copy.deepcopy(cm)) == cm
    lease = {"metadata": {"name": "l"}, "spec": {"holderIdentity": "x"}}
    assert defaulted("coordination.k8s.io/v1", "Lease", copy.deepcopy(lease)) == lease


def test_created_pod_stores_the_qos_class_of_equal_quantities_written_differently() -> None:
    from apiserver import strategy

    info = by_kind("v1", "Pod")
    assert info is not None
    resources = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1024Mi"}}
    obj = pod(containers=[{"name": "c", "image": "nginx", "resources": resources}])
    strategy.prepare_for_create(info, obj, "default")
    assert obj["status"]["qosClass"] == "Guaranteed"
    assert qos_class(obj["spec"]) == "Guaranteed"


def test_job_selector_generated_on_create_only() -> None:
    info = by_kind("batch/v1", "Job")
    assert info is not None
    job: dict[str, Any] = {"metadata": {"name": "pi", "uid": "u"}, "spec": {"template": template()}}
    apply_defaults(info, job)
    assert "selector" not in job["spec"]
    apply_defaults(info, job, create=True)
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}
