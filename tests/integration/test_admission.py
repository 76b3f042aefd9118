"""Admission against a real etcd and API server (and the controller manager's quota controller):
ServiceAccount, LimitRanger, ResourceQuota, NodeRestriction and Pod Security admission."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.api import create_namespace, merge_patch
from testkit.prereq import require_kubectl
from testkit.processes import APIServerProcess, Process, controller_manager, running
from testkit.wait import unique, wait_for

PODS = "/api/v1/namespaces/{ns}/pods"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def pod(name: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "busybox:1.36", **spec.pop("container", {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container], **spec},
    }


def create_pod(api: httpx.Client, ns: str, body: dict[str, Any]) -> httpx.Response:
    return api.post(PODS.format(ns=ns), json=body)


@pytest.fixture(scope="module")
def quota_controller(apiserver: APIServerProcess) -> Iterator[Process]:
    cm = controller_manager(apiserver, "--controllers", "resourcequota,serviceaccount")
    with running(cm):
        yield cm


def test_service_account_volume_and_missing_account(api: httpx.Client) -> None:
    ns = create_namespace(api, "sa")
    r = create_pod(
        api,
        ns,
        {
            **pod("p1"),
            "spec": {**pod("p1")["spec"], "initContainers": [{"name": "init", "image": "busybox:1.36"}]},
        },
    )
    assert r.status_code == 201, r.text
    spec = r.json()["spec"]
    assert spec["serviceAccountName"] == "default"
    volumes = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(volumes) == 1
    name = volumes[0]["name"]
    assert len(name) == len("kube-api-access-") + 5
    assert volumes[0]["projected"] == {
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
        "defaultMode": 420,
    }
    for c in spec["containers"] + spec["initContainers"]:
        assert {"name": name, "readOnly": True, "mountPath": TOKEN_PATH} in c["volumeMounts"]
    # the stored pod is the one answered
    stored = api.get(f"{PODS.format(ns=ns)}/p1").json()
    assert stored["spec"]["volumes"] == spec["volumes"]

    # automountServiceAccountToken: false on the pod
    r = create_pod(api, ns, pod("p2", automountServiceAccountToken=False))
    assert r.status_code == 201, r.text
    assert not [v for v in r.json()["spec"].get("volumes") or [] if v["name"].startswith("kube-api-access-")]

    # ... and on the service account
    r = api.post(
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        json={"metadata": {"name": "quiet"}, "automountServiceAccountToken": False},
    )
    assert r.status_code == 201, r.text
    r = create_pod(api, ns, pod("p3", serviceAccountName="quiet"))
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["serviceAccountName"] == "quiet"
    assert not r.json()["spec"].get("volumes")

    r = create_pod(api, ns, pod("p4", serviceAccountName="missing"))
    assert r.status_code == 403, r.text
    status = r.json()
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        f'pods "p4" is forbidden: error looking up service account {ns}/missing: '
        'serviceaccount "missing" not found'
    )


def test_limit_range_defaults_and_limits(api: httpx.Client) -> None:
    ns = create_namespace(api, "lr")
    r = api.post(
        f"/api/v1/namespaces/{ns}/limitranges",
        json={
            "metadata": {"name": "limits"},
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "default": {"cpu": "500m", "memory": "256Mi"},
                        "defaultRequest": {"cpu": "100m"},
                        "max": {"cpu": "1"},
                        "min": {"memory": "64Mi"},
                    }
                ]
            },
        },
    )
    assert r.status_code == 201, r.text
    r = create_pod(api, ns, pod("defaulted"))
    assert r.status_code == 201, r.text
    stored = api.get(f"{PODS.format(ns=ns)}/defaulted").json()
    resources = stored["spec"]["containers"][0]["resources"]
    assert resources == {
        "limits": {"cpu": "500m", "memory": "256Mi"},
        "requests": {"cpu": "100m", "memory": "256Mi"},
    }
    assert stored["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container main; cpu, memory limit for container main"
    )
    assert stored["status"]["qosClass"] == "Burstable"

    r = create_pod(api, ns, pod("big", container={"resources": {"limits": {"cpu": "2"}}}))
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2'
    )
    r = create_pod(api, ns, pod("small", container={"resources": {"requests": {"memory": "10Mi"}}}))
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'pods "small" is forbidden: minimum memory usage per Container is 64Mi, but request is 10Mi'
    )


def _quota_used(api: httpx.Client, ns: str, name: str) -> dict[str, str]:
    return (api.get(f"/api/v1/namespaces/{ns}/resourcequotas/{name}").json().get("status") or {}).get(
        "used"
    ) or {}


def test_quota_enforced_then_freed(api: httpx.Client, quota_controller: Process) -> None:
    ns = create_namespace(api, "quota")
    r = api.post(
        f"/api/v1/namespaces/{ns}/resourcequotas",
        json={"metadata": {"name": "small"}, "spec": {"hard": {"pods": "2", "count/configmaps": "1"}}},
    )
    assert r.status_code == 201, r.text
    # the controller fills in status.hard and status.used
    wait_for(lambda: _quota_used(api, ns, "small").get("pods") == "0", timeout=30, what="quota status")

    for name in ("a", "b"):
        r = create_pod(api, ns, pod(name))
        assert r.status_code == 201, r.text
    assert _quota_used(api, ns, "small")["pods"] == "2"
    r = create_pod(api, ns, pod("c"))
    assert r.status_code == 403, r.text
    status = r.json()
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        'pods "c" is forbidden: exceeded quota: small, requested: pods=1, used: pods=2, limited: pods=2'
    )
    # a dry run is refused the same way and charges nothing
    r = api.post(PODS.format(ns=ns), json=pod("c"), params={"dryRun": "All"})
    assert r.status_code == 403, r.text

    # deleting a pod (not bound to a node: gone at once) frees quota once the controller recounts
    assert api.delete(f"{PODS.format(ns=ns)}/a").status_code == 200
    wait_for(lambda: _quota_used(api, ns, "small").get("pods") == "1", timeout=30, what="quota freed")
    r = create_pod(api, ns, pod("c"))
    assert r.status_code == 201, r.text

    cms = f"/api/v1/namespaces/{ns}/configmaps"
    existing = len(api.get(cms).json()["items"])  # kube-root-ca.crt when it is published
    if existing == 0:
        assert api.post(cms, json={"metadata": {"name": "one"}}).status_code == 201
    r = api.post(cms, json={"metadata": {"name": "two"}})
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'configmaps "two" is forbidden: exceeded quota: small, requested: count/configmaps=1, '
        "used: count/configmaps=1, limited: count/configmaps=1"
    )


def test_quota_requires_limits(api: httpx.Client, quota_controller: Process) -> None:
    ns = create_namespace(api, "quota")
    r = api.post(
        f"/api/v1/namespaces/{ns}/resourcequotas",
        json={
            "metadata": {"name": "compute"},
            "spec": {"hard": {"limits.cpu": "1", "requests.memory": "1Gi"}},
        },
    )
    assert r.status_code == 201, r.text
    wait_for(lambda: "limits.cpu" in _quota_used(api, ns, "compute"), timeout=30, what="quota status")
    r = create_pod(api, ns, pod("bare"))
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'pods "bare" is forbidden: failed quota: compute: must specify limits.cpu for: main; '
        "requests.memory for: main"
    )
    ok = pod("sized", container={"resources": {"limits": {"cpu": "600m", "memory": "512Mi"}}})
    assert create_pod(api, ns, ok).status_code == 201
    assert _quota_used(api, ns, "compute") == {"limits.cpu": "600m", "requests.memory": "512Mi"}
    again = pod("again", container={"resources": {"limits": {"cpu": "600m", "memory": "256Mi"}}})
    r = create_pod(api, ns, again)
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'pods "again" is forbidden: exceeded quota: compute, requested: limits.cpu=600m, '
        "used: limits.cpu=600m, limited: limits.cpu=1"
    )


def test_pod_security_restricted_namespace(api: httpx.Client) -> None:
    ns = unique("psa")
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    r = api.post("/api/v1/namespaces", json={"metadata": {"name": ns, "labels": labels}})
    assert r.status_code == 201, r.text

    privileged = pod("priv", container={"securityContext": {"privileged": True}})
    r = create_pod(api, ns, privileged)
    assert r.status_code == 403, r.text
    status = r.json()
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        'pods "priv" is forbidden: violates PodSecurity "restricted:latest": '
        'privileged (container "main" must not set securityContext.privileged=true), '
        'allowPrivilegeEscalation != false (container "main" must set securityContext.allowPrivilegeEscalation=false), '
        'unrestricted capabilities (container "main" must set securityContext.capabilities.drop=["ALL"]), '
        'runAsNonRoot != true (pod or container "main" must set securityContext.runAsNonRoot=true), '
        'seccompProfile (pod or container "main" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
    )
    assert status["details"] == {"name": "priv", "kind": "pods"} or status["details"]["name"] == "priv"

    host = pod("host", volumes=[{"name": "root", "hostPath": {"path": "/"}}])
    r = create_pod(api, ns, host)
    assert r.status_code == 403, r.text
    # restricted's volume-type check replaces baseline's hostPath check
    assert "hostPath volumes" not in r.json()["message"]
    assert (
        'restricted volume types (volume "root" uses restricted volume type "hostPath")'
        in r.json()["message"]
    )
    assert api.get(f"{PODS.format(ns=ns)}/host").status_code == 404

    compliant = pod(
        "fine",
        securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        container={
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        },
    )
    r = create_pod(api, ns, compliant)
    assert r.status_code == 201, r.text
    assert "warning" not in r.headers

    # a workload's template is only warned about
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "web", "image": "nginx", "securityContext": {"privileged": True}}]
                },
            },
        },
    }
    r = api.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=deployment)
    assert r.status_code == 201, r.text
    warning = r.headers["warning"]
    assert warning.startswith('299 - "would violate PodSecurity \\"restricted:latest\\": ')
    assert 'privileged (container \\"web\\" must not set securityContext.privileged=true)' in warning

    # a bad level is refused on the namespace
    r = merge_patch(
        api,
        f"/api/v1/namespaces/{ns}",
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "strict"}}},
    )
    assert r.status_code == 422, r.text


def test_pod_security_baseline_warn_only(api: httpx.Client) -> None:
    ns = unique("psa")
    r = api.post(
        "/api/v1/namespaces",
        json={"metadata": {"name": ns, "labels": {"pod-security.kubernetes.io/warn": "baseline"}}},
    )
    assert r.status_code == 201, r.text
    r = create_pod(api, ns, pod("hostnet", hostNetwork=True))
    assert r.status_code == 201, r.text
    assert r.headers["warning"] == (
        '299 - "would violate PodSecurity \\"baseline:latest\\": host namespaces (hostNetwork=true)"'
    )
    # enforcing baseline now warns about the pods already there
    r = merge_patch(
        api,
        f"/api/v1/namespaces/{ns}",
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}},
    )
    assert r.status_code == 200, r.text
    assert r.headers.get_list("warning") == [
        f'299 - "existing pods in namespace \\"{ns}\\" violate the new PodSecurity enforce level \\"baseline:latest\\""',
        '299 - "hostnet: host namespaces"',
    ]


def test_node_restriction(apiserver: APIServerProcess, api: httpx.Client) -> None:
    me, other = unique("n"), unique("n")
    for name in (me, other):
        r = api.post("/api/v1/nodes", json={"metadata": {"name": name}})
        assert r.status_code == 201, r.text
    with apiserver.http(f"node:{me}") as node:
        r = merge_patch(node, f"/api/v1/nodes/{other}", {"metadata": {"labels": {"x": "y"}}})
        assert r.status_code == 403, r.text
        # (the Node authorizer may refuse this before admission does, with the same reason)
        assert r.json()["message"].startswith(f'nodes "{other}" is forbidden: ')
        assert r.json()["message"].endswith(f'node "{me}" is not allowed to modify node "{other}"')
        r = merge_patch(
            node, f"/api/v1/nodes/{me}", {"metadata": {"labels": {"node-restriction.kubernetes.io/x": "y"}}}
        )
        assert r.status_code == 403, r.text
        assert r.json()["message"].endswith(
            "is not allowed to modify labels: node-restriction.kubernetes.io/x"
        )
        r = merge_patch(
            node, f"/api/v1/nodes/{me}", {"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}
        )
        assert r.status_code == 403, r.text
        assert (
            r.json()["message"] == f'nodes "{me}" is forbidden: node "{me}" is not allowed to modify taints'
        )
        r = merge_patch(node, f"/api/v1/nodes/{me}", {"metadata": {"labels": {"example.com/role": "edge"}}})
        assert r.status_code == 200, r.text

        # a pod that is not a mirror pod
        r = node.post(
            "/api/v1/namespaces/default/pods",
            json={**pod(unique("p")), "spec": {**pod("x")["spec"], "nodeName": me}},
        )
        assert r.status_code == 403, r.text
        assert f'node "{me}" can only create mirror pods' in r.json()["message"]

        # status of a pod on another node
        name = unique("p")
        body = pod(name)
        body["spec"]["nodeName"] = other
        assert api.post("/api/v1/namespaces/default/pods", json=body).status_code == 201
        r = merge_patch(node, f"/api/v1/namespaces/default/pods/{name}/status", {"status": {"message": "hi"}})
        assert r.status_code == 403, r.text
        assert r.json()["message"].endswith(
            f'node "{me}" can only update pod status for pods with spec.nodeName set to itself'
        )
        r = node.delete(f"/api/v1/namespaces/default/pods/{name}")
        assert r.status_code == 403, r.text
        assert r.json()["message"].endswith(
            f'node "{me}" can only delete pods with spec.nodeName set to itself'
        )
    api.delete(f"/api/v1/namespaces/default/pods/{name}", params={"gracePeriodSeconds": "0"})
    for n in (me, other):
        api.delete(f"/api/v1/nodes/{n}")


def test_quota_charges_service_updates(api: httpx.Client, quota_controller: Process) -> None:
    ns = create_namespace(api, "quota")
    r = api.post(
        f"/api/v1/namespaces/{ns}/resourcequotas",
        json={"metadata": {"name": "ports"}, "spec": {"hard": {"services.nodeports": "1"}}},
    )
    assert r.status_code == 201, r.text
    wait_for(lambda: "services.nodeports" in _quota_used(api, ns, "ports"), timeout=30, what="quota status")
    svc = {
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"name": "a", "port": 80}]},
    }
    r = api.post(f"/api/v1/namespaces/{ns}/services", json=svc)
    assert r.status_code == 201, r.text
    ports = [*r.json()["spec"]["ports"], {"name": "b", "port": 81}]
    r = merge_patch(api, f"/api/v1/namespaces/{ns}/services/web", {"spec": {"ports": ports}})
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'services "web" is forbidden: exceeded quota: ports, requested: services.nodeports=1, '
        "used: services.nodeports=1, limited: services.nodeports=1"
    )


def test_kubectl_shows_pod_security_refusal_and_warning(
    apiserver: APIServerProcess, api: httpx.Client
) -> None:
    ns = unique("psa")
    labels = {
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    assert (
        api.post("/api/v1/namespaces", json={"metadata": {"name": ns, "labels": labels}}).status_code == 201
    )

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [require_kubectl(), "--kubeconfig", apiserver.kubeconfig, "-n", ns, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    refused = kubectl("run", "root", "--image=busybox:1.36", "--overrides", '{"spec": {"hostPID": true}}')
    assert refused.returncode != 0
    assert (
        'Error from server (Forbidden): pods "root" is forbidden: violates PodSecurity "baseline:latest": '
        "host namespaces (hostPID=true)"
    ) in refused.stderr
    warned = kubectl("run", "plain", "--image=busybox:1.36")
    assert warned.returncode == 0, warned.stderr
    assert (
        'Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false'
        in warned.stderr
    )
