"""RBAC and the Node authorizer on a real ``minik-apiserver`` (HTTPS, client certificates, real
etcd) with the default ``--authorization-mode Node,RBAC``: the bootstrap policy, a user allowed and
refused by a Role with Kubernetes' 403, ``kubectl auth can-i`` (and ``--list``) for the admin and a
user bound by a Role, ClusterRole aggregation, the access reviews, RBAC object validation, and a
kubelet that reads the Secrets of its own pods but not those of a pod on another node."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit import certs
from testkit.api import create_namespace
from testkit.processes import APIServerProcess
from testkit.wait import unique, wait_for

RBAC = "/apis/rbac.authorization.k8s.io/v1"
RBAC_GROUP = "rbac.authorization.k8s.io"


@pytest.fixture(scope="module")
def namespace(apiserver: APIServerProcess) -> str:
    with apiserver.http() as api:
        return create_namespace(api, "rbac")


@pytest.fixture()
def alice(apiserver: APIServerProcess) -> Iterator[httpx.Client]:
    with apiserver.http("alice") as c:
        yield c


def role_binding(namespace: str, name: str, kind: str, role: str, user: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": kind, "name": role},
        "subjects": [{"kind": "User", "apiGroup": RBAC_GROUP, "name": user}],
    }


def grant_pod_reader(api: httpx.Client, namespace: str, user: str) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": f"pod-reader-{user}", "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    }
    r = api.post(f"{RBAC}/namespaces/{namespace}/roles", json=role)
    assert r.status_code == 201, r.text
    rb = role_binding(namespace, f"pod-reader-{user}", "Role", f"pod-reader-{user}", user)
    r = api.post(f"{RBAC}/namespaces/{namespace}/rolebindings", json=rb)
    assert r.status_code == 201, r.text


def kubectl(kubectl_bin: str, kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl_bin, "--kubeconfig", kubeconfig, *args], capture_output=True, text=True, timeout=60
    )


def test_bootstrap_policy_is_created_and_aggregated(api: httpx.Client) -> None:
    r = api.get(f"{RBAC}/clusterroles/cluster-admin")
    assert r.status_code == 200, r.text
    meta = r.json()["metadata"]
    assert meta["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] == "true"
    assert meta["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
    r = api.get(f"{RBAC}/clusterrolebindings/system:public-info-viewer")
    assert r.status_code == 200, r.text
    assert {s["name"] for s in r.json()["subjects"]} == {"system:authenticated", "system:unauthenticated"}

    def rules(name: str) -> list[dict[str, Any]]:
        return api.get(f"{RBAC}/clusterroles/{name}").json().get("rules") or []

    view = wait_for(lambda: rules("view"), 10, "view's aggregated rules")
    assert any("pods" in r.get("resources", []) for r in view)
    assert not any("secrets" in r.get("resources", []) for r in view)
    assert any(
        "secrets" in r.get("resources", []) for r in wait_for(lambda: rules("edit"), 10, "edit's rules")
    )
    assert any(
        "roles" in r.get("resources", []) for r in wait_for(lambda: rules("admin"), 10, "admin's rules")
    )


def test_anonymous_reads_health_only(apiserver: APIServerProcess) -> None:
    ctx = ssl.create_default_context(cafile=str(certs.ca_file()))
    with httpx.Client(base_url=apiserver.url, verify=ctx, timeout=30) as anon:
        assert anon.get("/healthz").status_code == 200
        assert anon.get("/version").status_code == 200
        r = anon.get("/api/v1/pods")
        assert r.status_code == 403, r.text
        assert r.json()["message"] == (
            'pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" at the cluster scope'
        )


def test_role_allows_and_denies_with_kubernetes_message(
    api: httpx.Client, alice: httpx.Client, namespace: str
) -> None:
    r = api.post(
        f"/api/v1/namespaces/{namespace}/configmaps",
        json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}},
    )
    assert r.status_code == 201, r.text
    # before any binding: refused
    r = alice.get(f"/api/v1/namespaces/{namespace}/pods")
    assert r.status_code == 403
    assert r.json()["message"] == (
        f'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "{namespace}"'
    )
    grant_pod_reader(api, namespace, "alice")
    wait_for(
        lambda: alice.get(f"/api/v1/namespaces/{namespace}/pods").status_code == 200,
        10,
        "alice may list pods",
    )
    r = alice.delete(f"/api/v1/namespaces/{namespace}/pods/x")
    assert r.status_code == 403
    status = r.json()
    assert status["reason"] == "Forbidden" and status["code"] == 403
    assert status["message"] == (
        f'pods "x" is forbidden: User "alice" cannot delete resource "pods" in API group "" '
        f'in the namespace "{namespace}"'
    )
    assert status["details"] == {"name": "x", "kind": "pods"}
    # the Role is namespaced: other namespaces and the cluster scope stay closed
    assert alice.get("/api/v1/namespaces/default/pods").status_code == 403
    r = alice.get("/api/v1/nodes")
    assert r.json()["message"] == (
        'nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope'
    )
    r = alice.get(f"/api/v1/namespaces/{namespace}/configmaps/cfg")
    assert r.json()["message"] == (
        f'configmaps "cfg" is forbidden: User "alice" cannot get resource "configmaps" in API group "" '
        f'in the namespace "{namespace}"'
    )
    # a binding's removal is seen as promptly
    r = api.delete(f"{RBAC}/namespaces/{namespace}/rolebindings/pod-reader-alice")
    assert r.status_code == 200, r.text
    wait_for(
        lambda: alice.get(f"/api/v1/namespaces/{namespace}/pods").status_code == 403,
        10,
        "alice refused again",
    )


def test_kubectl_auth_can_i(
    apiserver: APIServerProcess, api: httpx.Client, kubectl_bin: str, namespace: str
) -> None:
    admin = apiserver.kubeconfig
    r = kubectl(kubectl_bin, admin, "auth", "can-i", "delete", "nodes")
    assert (r.returncode, r.stdout.strip()) == (0, "yes"), r.stderr
    user = unique("bob")
    grant_pod_reader(api, namespace, user)
    bob = str(apiserver.kubeconfig_for(user))

    def can(*args: str) -> tuple[int, str]:
        out = kubectl(kubectl_bin, bob, "auth", "can-i", *args)
        return out.returncode, out.stdout.strip()

    wait_for(lambda: can("list", "pods", "-n", namespace) == (0, "yes"), 10, f"{user} may list pods")
    assert can("get", "pods/x", "-n", namespace) == (0, "yes")
    assert can("delete", "pods", "-n", namespace) == (1, "no")
    assert can("list", "pods", "-n", "default") == (1, "no")
    assert can("list", "secrets", "-n", namespace) == (1, "no")
    # the admin asks on the user's behalf (impersonation)
    r = kubectl(kubectl_bin, admin, "auth", "can-i", "list", "pods", "-n", namespace, "--as", user)
    assert (r.returncode, r.stdout.strip()) == (0, "yes"), r.stderr
    r = kubectl(kubectl_bin, admin, "auth", "can-i", "create", "deployments", "-n", namespace, "--as", user)
    assert (r.returncode, r.stdout.strip()) == (1, "no"), r.stderr
    # SelfSubjectRulesReview
    r = kubectl(kubectl_bin, bob, "auth", "can-i", "--list", "-n", namespace)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert ["pods", "[]", "[]", "[get", "list", "watch]"] in rows, r.stdout
    assert any(row[0] == "selfsubjectaccessreviews.authorization.k8s.io" for row in rows), r.stdout
    assert any(row[0] == "[/api/*]" for row in rows), r.stdout


def test_aggregated_cluster_role_follows_new_roles(
    apiserver: APIServerProcess, api: httpx.Client, kubectl_bin: str, namespace: str
) -> None:
    name = unique("leases-view")
    lease_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list"]}],
    }
    assert api.post(f"{RBAC}/clusterroles", json=lease_role).status_code == 201
    user = unique("viewer")
    r = api.post(
        f"{RBAC}/namespaces/{namespace}/rolebindings",
        json=role_binding(namespace, user, "ClusterRole", "view", user),
    )
    assert r.status_code == 201, r.text
    viewer = str(apiserver.kubeconfig_for(user))

    def can(*args: str) -> str:
        return kubectl(kubectl_bin, viewer, "auth", "can-i", *args, "-n", namespace).stdout.strip()

    wait_for(lambda: can("list", "leases.coordination.k8s.io") == "yes", 10, "view aggregates the lease role")
    assert can("get", "pods") == "yes"
    assert can("get", "secrets") == "no"
    assert can("delete", "leases.coordination.k8s.io") == "no"
    # edit and admin aggregate view: they hold the new rule too
    for role in ("edit", "admin"):
        rules = api.get(f"{RBAC}/clusterroles/{role}").json()["rules"]
        assert lease_role["rules"][0] in rules, role
    # removing the labelled role takes its rules out of view again
    assert api.delete(f"{RBAC}/clusterroles/{name}").status_code == 200
    wait_for(lambda: can("list", "leases.coordination.k8s.io") == "no", 10, "the lease rules leave view")


def test_subject_access_reviews(api: httpx.Client, alice: httpx.Client, namespace: str) -> None:
    user = unique("carol")
    grant_pod_reader(api, namespace, user)
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "resourceAttributes": {"namespace": namespace, "verb": "watch", "resource": "pods"},
        },
    }

    def allowed() -> bool:
        r = api.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=body)
        assert r.status_code == 201, r.text
        return bool(r.json()["status"]["allowed"])

    wait_for(allowed, 10, "the SubjectAccessReview allows")
    r = api.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=body).json()
    assert r["status"]["reason"] == (
        f'RBAC: allowed by RoleBinding "pod-reader-{user}/{namespace}" of Role "pod-reader-{user}" to User "{user}"'
    )
    body["spec"]["resourceAttributes"]["verb"] = "delete"
    r = api.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=body).json()
    assert r["status"] == {"allowed": False}
    # asking about others needs the right to (system:auth-delegator's), asking about oneself does not
    r = alice.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=body)
    assert r.status_code == 403
    own = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"nonResourceAttributes": {"path": "/apis", "verb": "get"}},
    }
    r = alice.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=own)
    assert r.status_code == 201, r.text
    assert r.json()["status"]["allowed"] is True
    # LocalSubjectAccessReview: the attributes' namespace is the URL's
    local = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "LocalSubjectAccessReview",
        "metadata": {"namespace": namespace},
        "spec": {
            "user": user,
            "resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"},
        },
    }
    r = api.post(
        f"/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews", json=local
    )
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0]["field"] == "spec.resourceAttributes.namespace"
    local["spec"]["resourceAttributes"]["namespace"] = namespace
    r = api.post(
        f"/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews", json=local
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"]["allowed"] is True


def test_rbac_objects_are_validated(api: httpx.Client, namespace: str) -> None:
    rb = role_binding(namespace, "checked", "Role", "some-role", "alice")
    bad = {**rb, "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Secret", "name": "x"}}
    r = api.post(f"{RBAC}/namespaces/{namespace}/rolebindings", json=bad)
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0]["field"] == "roleRef.kind"
    bad = {**rb, "subjects": [{"kind": "Robot", "name": "r2"}]}
    r = api.post(f"{RBAC}/namespaces/{namespace}/rolebindings", json=bad)
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0]["field"] == "subjects[0].kind"
    r = api.post(f"{RBAC}/namespaces/{namespace}/rolebindings", json=rb)
    assert r.status_code == 201, r.text
    changed = r.json()
    changed["roleRef"]["name"] = "another-role"
    r = api.put(f"{RBAC}/namespaces/{namespace}/rolebindings/checked", json=changed)
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0]["field"] == "roleRef"
    assert "cannot change roleRef" in r.json()["message"]
    role = {"metadata": {"name": "no-verbs"}, "rules": [{"apiGroups": [""], "resources": ["pods"]}]}
    r = api.post(f"{RBAC}/namespaces/{namespace}/roles", json=role)
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0]["field"] == "rules[0].verbs"


def test_kubelet_reads_only_its_own_pods_secrets(apiserver: APIServerProcess, api: httpx.Client) -> None:
    ns = create_namespace(api, "nodeauthz")
    r = api.post(f"/api/v1/namespaces/{ns}/serviceaccounts", json={"metadata": {"name": "default"}})
    assert r.status_code in (201, 409), r.text
    node_a, node_b = unique("node-a"), unique("node-b")
    for node in (node_a, node_b):
        secret = {"metadata": {"name": f"secret-{node}"}, "stringData": {"k": "v"}}
        assert api.post(f"/api/v1/namespaces/{ns}/secrets", json=secret).status_code == 201
        pod = {
            "metadata": {"name": f"pod-{node}"},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "s", "secret": {"secretName": f"secret-{node}"}}],
            },
        }
        r = api.post(f"/api/v1/namespaces/{ns}/pods", json=pod)
        assert r.status_code == 201, r.text
    with apiserver.http(f"node:{node_a}") as kubelet:
        wait_for(
            lambda: kubelet.get(f"/api/v1/namespaces/{ns}/secrets/secret-{node_a}").status_code == 200,
            10,
            "the kubelet reads its pod's Secret",
        )
        r = kubelet.get(f"/api/v1/namespaces/{ns}/secrets/secret-{node_b}")
        assert r.status_code == 403, r.text
        assert r.json()["message"] == (
            f'secrets "secret-{node_b}" is forbidden: User "system:node:{node_a}" cannot get resource "secrets" '
            f'in API group "" in the namespace "{ns}": no relationship found between node \'{node_a}\' and this object'
        )
        r = kubelet.get(f"/api/v1/namespaces/{ns}/secrets")
        assert r.status_code == 403, r.text
        # what every node may do: read pods and services, write events
        assert (
            kubelet.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={node_a}"}).status_code
            == 200
        )
        assert kubelet.get("/api/v1/services").status_code == 200
        # another node's Lease is not this kubelet's
        r = kubelet.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node_b}")
        assert r.status_code == 403
        assert r.json()["message"].endswith(
            "can only access node lease with the same name as the requesting node"
        )
    # the pod moves away (deleted): its Secret is no longer the kubelet's to read
    r = api.delete(f"/api/v1/namespaces/{ns}/pods/pod-{node_a}", params={"gracePeriodSeconds": "0"})
    assert r.status_code == 200, r.text
    with apiserver.http(f"node:{node_a}") as kubelet:
        wait_for(
            lambda: kubelet.get(f"/api/v1/namespaces/{ns}/secrets/secret-{node_a}").status_code == 403,
            10,
            "the Secret of a deleted pod is refused",
        )


def test_escalation_is_refused(apiserver: APIServerProcess, api: httpx.Client) -> None:
    ns = create_namespace(api, "escalate")
    user = unique("dana")
    r = api.post(
        f"{RBAC}/namespaces/{ns}/rolebindings",
        json=role_binding(ns, "dana-admin", "ClusterRole", "admin", user),
    )
    assert r.status_code == 201, r.text
    with apiserver.http(user) as dana:
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-deleter"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}],
        }
        wait_for(
            lambda: dana.post(f"{RBAC}/namespaces/{ns}/roles", json=role).status_code == 201,
            10,
            "the namespace admin creates a Role it holds",
        )
        role["metadata"]["name"] = "node-reader"
        role["rules"] = [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}]
        r = dana.post(f"{RBAC}/namespaces/{ns}/roles", json=role)
        assert r.status_code == 403, r.text
        assert r.json()["message"] == (
            f'roles.rbac.authorization.k8s.io "node-reader" is forbidden: user "{user}" '
            f'(groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
            '{APIGroups:[""], Resources:["nodes"], Verbs:["get" "list"]}'
        )
        # binding a role it holds is fine; binding cluster-admin is not
        r = dana.post(
            f"{RBAC}/namespaces/{ns}/rolebindings",
            json=role_binding(ns, "edit", "ClusterRole", "edit", "eve"),
        )
        assert r.status_code == 201, r.text
        r = dana.post(
            f"{RBAC}/namespaces/{ns}/rolebindings",
            json=role_binding(ns, "root", "ClusterRole", "cluster-admin", "eve"),
        )
        assert r.status_code == 403, r.text
        assert "is attempting to grant RBAC permissions not currently held" in r.json()["message"]
        assert api.get(f"{RBAC}/namespaces/{ns}/rolebindings/root").status_code == 404
