"""The Node authorizer without I/O: the pod graph (what a pod uses), Kubernetes' per-kind rules and
reasons, and the authorizer following the pods' watch cache."""

from __future__ import annotations

from typing import Any

from apiserver import bootstrap_policy as bp
from apiserver.authtypes import Attributes, UserInfo
from apiserver.authz import CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES, PODS, PVCS, Authorizer, forbidden_message
from apiserver.nodeauthz import NodeAuthorizer, NodeGraph, node_identity, pod_refs
from apiserver.registry import Storage
from apiserver.watchcache import CacheEvent

N1 = UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))
N2 = UserInfo("system:node:n2", ("system:nodes", "system:authenticated"))


def res(
    user: UserInfo, verb: str, resource: str, ns: str = "", name: str = "", group: str = "", sub: str = ""
) -> Attributes:
    return Attributes(user, verb, True, group, "v1", resource, sub, ns, name, "")


def pod(name: str, node: str, ns: str = "default", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}], **spec}
    if node:
        body["nodeName"] = node
    return {"metadata": {"name": name, "namespace": ns}, "spec": body}


WEB = pod(
    "web",
    "n1",
    serviceAccountName="web-sa",
    imagePullSecrets=[{"name": "regcred"}],
    containers=[
        {
            "name": "c",
            "image": "nginx",
            "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
            ],
            "envFrom": [{"secretRef": {"name": "all-secret"}}, {"configMapRef": {"name": "all-cm"}}],
        }
    ],
    initContainers=[{"name": "i", "image": "busybox", "envFrom": [{"configMapRef": {"name": "init-cm"}}]}],
    volumes=[
        {"name": "s", "secret": {"secretName": "vol-secret"}},
        {"name": "c", "configMap": {"name": "vol-cm"}},
        {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        {
            "name": "kube-api-access-abcde",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt"}},
                    {"secret": {"name": "proj-secret"}},
                ]
            },
        },
    ],
)


def test_node_identity() -> None:
    assert node_identity(N1) == ("n1", True)
    assert node_identity(UserInfo("system:node:n1", ("system:authenticated",))) == ("", False)
    assert node_identity(UserInfo("alice", ("system:nodes",))) == ("", False)


def test_pod_refs_cover_every_way_a_pod_names_an_object() -> None:
    refs = pod_refs(WEB)
    ns = "default"
    want = {
        ("pod", ns, "web"),
        ("serviceaccount", ns, "web-sa"),
        ("secret", ns, "regcred"),
        ("secret", ns, "env-secret"),
        ("secret", ns, "all-secret"),
        ("secret", ns, "vol-secret"),
        ("secret", ns, "proj-secret"),
        ("configmap", ns, "env-cm"),
        ("configmap", ns, "all-cm"),
        ("configmap", ns, "init-cm"),
        ("configmap", ns, "vol-cm"),
        ("configmap", ns, "kube-root-ca.crt"),
        ("pvc", ns, "data"),
        ("pvc", ns, "web-scratch"),
    }
    assert refs == want
    assert ("serviceaccount", ns, "default") in pod_refs(pod("p", "n1"))


def test_graph_counts_references_and_forgets_deleted_or_moved_pods() -> None:
    g = NodeGraph()
    g.set_pod("a", pod("a", "n1", volumes=[{"name": "s", "secret": {"secretName": "shared"}}]))
    g.set_pod("b", pod("b", "n1", volumes=[{"name": "s", "secret": {"secretName": "shared"}}]))
    g.set_pod("pending", pod("pending", "", volumes=[{"name": "s", "secret": {"secretName": "unbound"}}]))
    assert g.has("n1", "secret", "default", "shared")
    assert not g.has("n1", "secret", "default", "unbound")
    g.set_pod("a", None)
    assert g.has("n1", "secret", "default", "shared")  # b still uses it
    g.set_pod("b", pod("b", "n2", volumes=[{"name": "s", "secret": {"secretName": "shared"}}]))
    assert not g.has("n1", "secret", "default", "shared")
    assert g.has("n2", "secret", "default", "shared")
    assert "n1" not in g.refs


def authorizer(claims: dict[tuple[str, str], str] | None = None) -> NodeAuthorizer:
    g = NodeGraph()
    g.set_pod("web", WEB)
    g.set_pod("other", pod("other", "n2", volumes=[{"name": "s", "secret": {"secretName": "n2-secret"}}]))
    vols = claims or {}
    return NodeAuthorizer(g, bp.NODE_RULES, lambda ns, name: vols.get((ns, name), ""))


def test_secrets_and_configmaps_of_own_pods_only() -> None:
    a = authorizer()
    assert a.authorize(res(N1, "get", "secrets", "default", "vol-secret")).allowed
    assert a.authorize(res(N1, "watch", "configmaps", "default", "kube-root-ca.crt")).allowed
    d = a.authorize(res(N1, "get", "secrets", "default", "n2-secret"))
    assert not d.allowed and d.reason == "no relationship found between node 'n1' and this object"
    assert a.authorize(res(N2, "get", "secrets", "default", "n2-secret")).allowed
    assert a.authorize(res(N1, "list", "secrets", "default")).reason == "No Object name found"
    assert (
        a.authorize(res(N1, "create", "secrets", "default")).reason == "can only read resources of this type"
    )
    assert (
        a.authorize(res(N1, "get", "secrets", "", "vol-secret")).reason
        == "can only read namespaced object of this type"
    )
    # the same name in another namespace is another object
    assert not a.authorize(res(N1, "get", "secrets", "other", "vol-secret")).allowed


def test_claims_volumes_and_tokens() -> None:
    a = authorizer({("default", "data"): "pv-1"})
    assert a.authorize(res(N1, "get", "persistentvolumeclaims", "default", "data")).allowed
    assert a.authorize(res(N1, "get", "persistentvolumeclaims", "default", "web-scratch")).allowed
    assert a.authorize(res(N1, "list", "persistentvolumeclaims", "default")).reason == (
        "can only get individual resources of this type"
    )
    assert a.authorize(res(N1, "patch", "persistentvolumeclaims", "default", "data", sub="status")).allowed
    assert a.authorize(res(N1, "get", "persistentvolumes", "", "pv-1")).allowed
    assert not a.authorize(res(N1, "get", "persistentvolumes", "", "pv-2")).allowed
    assert not a.authorize(res(N2, "get", "persistentvolumes", "", "pv-1")).allowed
    token = res(N1, "create", "serviceaccounts", "default", "web-sa", sub="token")
    assert a.authorize(token).allowed
    assert not a.authorize(res(N2, "create", "serviceaccounts", "default", "web-sa", sub="token")).allowed
    assert a.authorize(res(N1, "get", "serviceaccounts", "default", "web-sa")).reason == (
        "can only create tokens for individual service accounts"
    )


def test_leases_nodes_and_pod_status() -> None:
    a = authorizer()
    lease = "coordination.k8s.io"
    assert a.authorize(res(N1, "update", "leases", "kube-node-lease", "n1", group=lease)).allowed
    assert a.authorize(res(N1, "create", "leases", "kube-node-lease", group=lease)).allowed
    assert a.authorize(res(N1, "update", "leases", "kube-node-lease", "n2", group=lease)).reason == (
        "can only access node lease with the same name as the requesting node"
    )
    assert a.authorize(res(N1, "get", "leases", "kube-system", "n1", group=lease)).reason == (
        'can only access leases in the "kube-node-lease" system namespace'
    )
    assert a.authorize(res(N1, "list", "leases", "kube-node-lease", group=lease)).reason == (
        "can only get, create, update, patch, or delete a node lease"
    )
    assert a.authorize(res(N1, "create", "nodes")).allowed
    assert a.authorize(res(N1, "patch", "nodes", "", "n1", sub="status")).allowed
    assert a.authorize(res(N1, "list", "nodes")).allowed
    assert a.authorize(res(N1, "patch", "nodes", "", "n2", sub="status")).reason == (
        'node "n1" is not allowed to modify node "n2"'
    )
    assert a.authorize(res(N1, "update", "pods", "default", "web", sub="status")).allowed
    assert not a.authorize(res(N1, "update", "pods", "default", "other", sub="status")).allowed
    assert a.authorize(res(N1, "watch", "pods", "")).allowed
    assert a.authorize(res(N1, "create", "events", "default")).allowed
    assert a.authorize(res(N1, "get", "endpointslices", "default", "x", group="discovery.k8s.io")).allowed
    assert not a.authorize(res(N1, "delete", "services", "default", "x")).allowed
    assert not a.authorize(
        res(UserInfo("alice", ("system:authenticated",)), "get", "secrets", "default", "vol-secret")
    ).allowed


def _event(storage: Storage, etype: str, obj: dict[str, Any], rev: int) -> None:
    """What the pods' watch cache does on an etcd event: update its objects, offer it to watchers."""
    reg = storage.registry(PODS)
    key = reg.key(obj["metadata"]["namespace"], obj["metadata"]["name"])
    prev = reg.cache.objects.get(key)
    if etype == "DELETED":
        reg.cache.objects.pop(key, None)
    else:
        reg.cache.objects[key] = obj
    ev = CacheEvent(etype, key, obj, prev, rev)
    for w in list(reg.cache._watchers):
        w.offer(ev)


def test_authorizer_follows_pods_and_words_the_denial() -> None:
    storage = Storage(None)  # type: ignore[arg-type]
    for info, objs in (
        (CLUSTER_ROLES, bp.cluster_roles()),
        (CLUSTER_ROLE_BINDINGS, bp.cluster_role_bindings()),
    ):
        reg = storage.registry(info)
        reg.cache.objects = {reg.key(None, o["metadata"]["name"]): o for o in objs}
    pvcs = storage.registry(PVCS)
    pvcs.cache.objects = {
        pvcs.key("default", "data"): {"metadata": {"name": "data"}, "spec": {"volumeName": "pv-9"}}
    }
    storage.registry(PODS).cache.objects = {}
    authz = Authorizer(storage)
    authz._follow_pods()
    get = res(N1, "get", "secrets", "default", "vol-secret")
    d = authz.authorize(get)
    assert not d.allowed
    assert forbidden_message(get, d.reason) == (
        'secrets "vol-secret" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" '
        "in the namespace \"default\": no relationship found between node 'n1' and this object"
    )
    _event(storage, "ADDED", WEB, 10)
    assert authz.authorize(get).allowed  # seen at once: the queue is drained before deciding
    assert authz.authorize(res(N1, "get", "persistentvolumes", "", "pv-9")).allowed
    moved = pod("web", "n2", volumes=[{"name": "s", "secret": {"secretName": "vol-secret"}}])
    _event(storage, "MODIFIED", moved, 11)
    assert not authz.authorize(get).allowed
    assert authz.authorize(res(N2, "get", "secrets", "default", "vol-secret")).allowed
    _event(storage, "DELETED", moved, 12)
    assert not authz.authorize(res(N2, "get", "secrets", "default", "vol-secret")).allowed
    # a closed watcher (the cache relisted) starts over from the cache's objects
    pods = storage.registry(PODS)
    pods.cache.objects = {pods.key("default", "web"): WEB}
    assert authz._pod_watcher is not None
    authz._pod_watcher.close()
    assert authz.authorize(get).allowed
