"""Admission plugins as pure functions (apiserver/admission.py, apimachinery/quota.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from apimachinery import errors, quota
from apimachinery.resources import kind_info
from apiserver import admission as adm
from apiserver.authtypes import UserInfo

PODS = kind_info("v1", "Pod")
NODES = kind_info("v1", "Node")
LEASES = kind_info("coordination.k8s.io/v1", "Lease")


def pod(name: str = "p", **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "busybox", **spec.pop("container", {})}
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"containers": [container], **spec}}


def test_plugins_from_flags() -> None:
    assert adm.plugins_from_flags() == adm.ALL_PLUGINS
    assert "PodSecurity" not in adm.plugins_from_flags("", "PodSecurity")
    with pytest.raises(ValueError, match="unknown admission plugins: Nope"):
        adm.plugins_from_flags("Nope")


def test_service_account_volume_and_mounts() -> None:
    p = pod(initContainers=[{"name": "init", "image": "x"}])
    p["spec"]["containers"].append(
        {"name": "own", "image": "x", "volumeMounts": [{"name": "v", "mountPath": adm.TOKEN_MOUNT_PATH}]}
    )
    adm.mount_service_account_token(p, "abcde")
    spec = p["spec"]
    assert spec["volumes"] == [adm.token_volume("kube-api-access-abcde")]
    mount = {"name": "kube-api-access-abcde", "readOnly": True, "mountPath": adm.TOKEN_MOUNT_PATH}
    assert spec["initContainers"][0]["volumeMounts"] == [mount]
    assert spec["containers"][0]["volumeMounts"] == [mount]
    assert spec["containers"][1]["volumeMounts"] == [{"name": "v", "mountPath": adm.TOKEN_MOUNT_PATH}]
    # idempotent: the existing volume is reused
    adm.mount_service_account_token(p, "zzzzz")
    assert [v["name"] for v in spec["volumes"]] == ["kube-api-access-abcde"]


def test_should_automount() -> None:
    assert adm.should_automount({}, pod())
    assert not adm.should_automount({"automountServiceAccountToken": False}, pod())
    assert adm.should_automount(
        {"automountServiceAccountToken": False}, pod(automountServiceAccountToken=True)
    )
    assert not adm.should_automount({}, pod(automountServiceAccountToken=False))


LIMITS = [
    {
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "max": {"cpu": "1", "memory": "1Gi"},
                    "defaultRequest": {"cpu": "100m"},
                },
                {"type": "Pod", "max": {"memory": "1536Mi"}},
                {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}},
            ]
        }
    }
]


def test_limit_defaults_from_max_and_annotation() -> None:
    p = pod(container={"resources": {"limits": {"memory": "512Mi"}, "requests": {"memory": "512Mi"}}})
    assert adm.apply_limit_defaults(p, LIMITS)
    res = p["spec"]["containers"][0]["resources"]
    assert res == {"limits": {"memory": "512Mi", "cpu": "1"}, "requests": {"memory": "512Mi", "cpu": "100m"}}
    assert p["metadata"]["annotations"][adm.LIMIT_RANGER_ANNOTATION] == (
        "LimitRanger plugin set: cpu request for container main; cpu limit for container main"
    )
    assert adm.limit_errors(p, LIMITS) == []
    assert not adm.apply_limit_defaults(p, LIMITS)


def test_limit_errors_container_pod_and_ratio() -> None:
    p = pod(container={"resources": {"limits": {"cpu": "2", "memory": "1Gi"}}})
    p["spec"]["containers"].append({"name": "b", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}})
    assert adm.limit_errors(p, LIMITS) == [
        "maximum cpu usage per Container is 1, but limit is 2",
        "maximum memory usage per Pod is 1536Mi, but limit is 2Gi",
    ]
    assert adm.aggregate(adm.limit_errors(p, LIMITS)).startswith("[maximum cpu usage per Container is 1,")
    ratio = [{"spec": {"limits": [{"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}]}}]
    p = pod(container={"resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "250m"}}})
    assert adm.limit_errors(p, ratio) == [
        "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000"
    ]
    assert adm.limit_errors(pod(), ratio) == [
        "cpu max limit to request ratio per Container is 2, but no request is specified or request is 0"
    ]
    minimum = [{"spec": {"limits": [{"type": "Container", "min": {"memory": "64Mi"}}]}}]
    assert adm.limit_errors(pod(), minimum) == [
        "minimum memory usage per Container is 64Mi.  No request is specified"
    ]


def test_pvc_limits() -> None:
    claim = {"spec": {"resources": {"requests": {"storage": "20Gi"}}}}
    assert adm.pvc_limit_errors(claim, LIMITS) == [
        "maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"
    ]
    claim = {"spec": {"resources": {"requests": {"storage": "500Mi"}}}}
    assert adm.pvc_limit_errors(claim, LIMITS) == [
        "minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"
    ]


def node_req(op: str, info: Any, name: str, obj: Any = None, old: Any = None, **kw: Any) -> adm.Request:
    user = UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))
    return adm.Request(op, info, kw.pop("namespace", ""), name, obj, old, kw.pop("sub", ""), user)


def refused(req: adm.Request) -> str:
    with pytest.raises(errors.Forbidden) as e:
        adm.node_restriction(req, "n1")
    return str(e.value)


def test_node_identity() -> None:
    assert adm.node_name_of(UserInfo("system:node:n1", ("system:nodes",))) == "n1"
    assert adm.node_name_of(UserInfo("system:node:n1", ())) is None
    assert adm.node_name_of(UserInfo("alice", ("system:nodes",))) is None
    assert adm.node_name_of(None) is None


def test_node_restriction_nodes_and_leases() -> None:
    assert refused(node_req("UPDATE", NODES, "n2", {}, {})) == (
        'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'
    )
    old = {"metadata": {"labels": {"kubernetes.io/hostname": "n1"}}, "spec": {}}
    new = {
        "metadata": {"labels": {"kubernetes.io/hostname": "n1", "node-role.kubernetes.io/x": ""}},
        "spec": {},
    }
    assert refused(node_req("UPDATE", NODES, "n1", new, old)) == (
        'nodes "n1" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/x'
    )
    tainted = {"metadata": old["metadata"], "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}
    assert refused(node_req("UPDATE", NODES, "n1", tainted, old)).endswith(
        'node "n1" is not allowed to modify taints'
    )
    create = {"metadata": {"labels": {"node-restriction.kubernetes.io/a": "b", "kubernetes.io/os": "linux"}}}
    assert refused(node_req("CREATE", NODES, "n1", create)).endswith(
        'node "n1" is not allowed to set the following labels: node-restriction.kubernetes.io/a'
    )
    fine = {"metadata": {"labels": {**old["metadata"]["labels"], "example.com/x": "y"}}, "spec": {}}
    adm.node_restriction(node_req("UPDATE", NODES, "n1", fine, old), "n1")
    assert refused(node_req("UPDATE", LEASES, "n1", {}, {}, namespace="default")).endswith(
        'can only access leases in the "kube-node-lease" system namespace'
    )
    assert refused(node_req("UPDATE", LEASES, "n2", {}, {}, namespace="kube-node-lease")).endswith(
        "can only access node lease with the same name as the requesting node"
    )
    adm.node_restriction(node_req("UPDATE", LEASES, "n1", {}, {}, namespace="kube-node-lease"), "n1")


def test_node_restriction_pods() -> None:
    mine = pod(nodeName="n1")
    theirs = pod(nodeName="n2")
    assert refused(node_req("CREATE", PODS, "p", mine)) == (
        'pods "p" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, '
        'node "n1" can only create mirror pods'
    )
    mirror = pod(nodeName="n1")
    mirror["metadata"]["annotations"] = {adm.MIRROR_POD_ANNOTATION: "x"}
    adm.node_restriction(node_req("CREATE", PODS, "p", mirror), "n1")
    mirror["spec"]["volumes"] = [{"name": "s", "secret": {"secretName": "top"}}]
    assert refused(node_req("CREATE", PODS, "p", mirror)).endswith(
        'node "n1" can not create pods that reference secrets'
    )
    assert refused(node_req("DELETE", PODS, "p", None, theirs)).endswith(
        'node "n1" can only delete pods with spec.nodeName set to itself'
    )
    adm.node_restriction(node_req("DELETE", PODS, "p", None, mine), "n1")
    assert refused(node_req("UPDATE", PODS, "p", theirs, theirs, sub="status")).endswith(
        'node "n1" can only update pod status for pods with spec.nodeName set to itself'
    )
    adm.node_restriction(node_req("UPDATE", PODS, "p", mine, mine, sub="status"), "n1")
    relabelled = pod(nodeName="n1")
    relabelled["metadata"]["labels"] = {"a": "b"}
    assert refused(node_req("UPDATE", PODS, "p", relabelled, mine, sub="status")).endswith(
        'node "n1" cannot update labels through pod status'
    )
    assert refused(node_req("UPDATE", PODS, "p", mine, mine)).endswith(
        'unexpected operation "UPDATE", node "n1" can only create and delete mirror pods'
    )
    assert adm.check_node_token_request(UserInfo("system:node:n1", ("system:nodes",)), theirs) == (
        "node requested token bound to a pod scheduled on a different node"
    )


def test_pod_usage() -> None:
    p = pod(
        container={"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}},
        initContainers=[{"name": "i", "resources": {"requests": {"cpu": "1"}}}],
    )
    assert quota.pod_usage(p) == {
        "count/pods": 1,
        "pods": 1,
        "cpu": Decimal("1"),
        "requests.cpu": Decimal("1"),
        "memory": 64 * 2**20,
        "requests.memory": 64 * 2**20,
        "limits.cpu": Decimal("0.5"),
    }
    done = {**p, "status": {"phase": "Succeeded"}}
    assert quota.pod_usage(done) == {"count/pods": 1}
    svc = {"spec": {"type": "NodePort", "ports": [{"port": 1}, {"port": 2}]}}
    assert quota.object_usage("", "services", svc) == {
        "count/services": 1,
        "services": 1,
        "services.nodeports": 2,
    }
    assert quota.object_usage("apps", "deployments", {}) == {"count/deployments.apps": 1}


def q(hard: dict[str, str], used: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "q"}, "spec": {"hard": hard, **spec}, "status": {"hard": hard, "used": used}}


def test_quota_check_messages() -> None:
    resources = {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}
    p = pod(container={"resources": resources})
    delta = quota.pod_usage(p)
    message, used = adm.quota_check(q({"pods": "1"}, {"pods": "1"}), "", "pods", p, delta)
    assert message == "exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1"
    message, used = adm.quota_check(
        q({"pods": "2", "limits.memory": "1Gi"}, {"pods": "1", "limits.memory": "0"}), "", "pods", p, delta
    )
    assert message is None and used == {"pods": "2", "limits.memory": "1Gi"}
    message, _ = adm.quota_check(
        q({"requests.memory": "2Gi"}, {"requests.memory": "1536Mi"}), "", "pods", p, delta
    )
    assert message == (
        "exceeded quota: q, requested: requests.memory=1Gi, used: requests.memory=1536Mi, "
        "limited: requests.memory=2Gi"
    )
    message, _ = adm.quota_check(q({"pods": "5"}, {}), "", "pods", p, delta)
    assert message == "status unknown for quota: q, resources: pods"
    bare = pod()
    message, _ = adm.quota_check(
        q({"limits.cpu": "1", "requests.memory": "1Gi"}, {}), "", "pods", bare, quota.pod_usage(bare)
    )
    assert message == "failed quota: q: must specify limits.cpu for: main; requests.memory for: main"
    # a quota on other resources does not apply to a ConfigMap
    assert adm.quota_check(q({"pods": "1"}, {"pods": "1"}), "", "configmaps", {}, {}) == (None, None)


def test_quota_scopes() -> None:
    best_effort = q({"pods": "1"}, {"pods": "0"}, scopes=["BestEffort"])
    assert quota.quota_matches(best_effort, "", "pods", pod())
    assert not quota.quota_matches(
        best_effort, "", "pods", pod(container={"resources": {"requests": {"cpu": "1"}}})
    )
    assert not quota.quota_matches(best_effort, "", "configmaps", {})
    terminating = q({"pods": "1"}, {}, scopes=["Terminating"])
    assert quota.quota_matches(terminating, "", "pods", pod(activeDeadlineSeconds=10))
    assert not quota.quota_matches(terminating, "", "pods", pod())


def test_warnings_context() -> None:
    class Resp:
        def __init__(self) -> None:
            self.headers: Any = Headers()

    class Headers(list[tuple[str, str]]):
        def append(self, key: str, value: str) -> None:  # type: ignore[override]
            super().append((key, value))

    adm.add_warning('would violate PodSecurity "baseline:latest": host namespaces (hostPID=true)')
    resp = adm.with_warnings(Resp())
    assert resp.headers == [
        ("Warning", '299 - "would violate PodSecurity \\"baseline:latest\\": host namespaces (hostPID=true)"')
    ]
    assert adm.take_warnings() == []


def test_limit_range_and_quota_validation() -> None:
    from apiserver import validation

    lr = kind_info("v1", "LimitRange")
    good = {"metadata": {"name": "l", "namespace": "ns"}, "spec": LIMITS[0]["spec"]}
    assert validation.validate(lr, good) == []
    bad = {
        "metadata": {"name": "l", "namespace": "ns"},
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "min": {"cpu": "2"},
                    "max": {"cpu": "1"},
                    "maxLimitRequestRatio": {"cpu": "500m"},
                },
                {"type": "Pod", "default": {"cpu": "1"}},
            ]
        },
    }
    fields = {(c["field"], c["message"]) for c in validation.validate(lr, bad)}
    assert (
        "spec.limits[0].min[cpu]",
        'Invalid value: "2": min value 2 is greater than max value 1',
    ) in fields
    assert any(f == "spec.limits[1].default" for f, _ in fields)
    assert any(f == "spec.limits[0].maxLimitRequestRatio[cpu]" for f, _ in fields)
    rq = kind_info("v1", "ResourceQuota")
    quota_obj = {"metadata": {"name": "q", "namespace": "ns"}, "spec": {"hard": {"pods": "1.5", "cpu": "-1"}}}
    fields = {c["field"] for c in validation.validate(rq, quota_obj)}
    assert fields == {"spec.hard[pods]", "spec.hard[cpu]"}


def test_quota_controller_status() -> None:
    from controllers.resourcequota import compute_status

    quota_obj = {
        "metadata": {"name": "q", "namespace": "ns"},
        "spec": {
            "hard": {"pods": "3", "requests.cpu": "2", "count/configmaps": "5", "services.nodeports": "2"}
        },
    }
    running = pod("a", container={"resources": {"requests": {"cpu": "500m"}}})
    finished = {
        **pod("b", container={"resources": {"requests": {"cpu": "1"}}}),
        "status": {"phase": "Failed"},
    }
    status = compute_status(
        quota_obj,
        {
            ("", "pods"): [running, finished],
            ("", "configmaps"): [{"metadata": {"name": "c"}}],
            ("", "services"): [{"spec": {"type": "NodePort", "ports": [{"port": 1}]}}],
        },
    )
    assert status == {
        "hard": quota_obj["spec"]["hard"],
        "used": {"count/configmaps": "1", "pods": "1", "requests.cpu": "500m", "services.nodeports": "1"},
    }
    assert quota.resources_of_hard(quota.parse_list(quota_obj["spec"]["hard"])) == {
        ("", "pods"),
        ("", "configmaps"),
        ("", "services"),
    }
