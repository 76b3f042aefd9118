"""RBAC without I/O: Kubernetes' rule matching, subjects, the index, aggregation, the bootstrap
policy and its reconciliation, the 403 wording, the authorizer chain and the access reviews."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from apimachinery import errors
from apiserver import bootstrap_policy as bp
from apiserver.authtypes import Attributes, UserInfo
from apiserver.authz import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    ROLE_BINDINGS,
    ROLES,
    Authorizer,
    forbidden_details,
    forbidden_message,
    parse_modes,
)
from apiserver.rbac import RBACIndex, Rule, aggregated_rules, covers
from apiserver.registry import Storage

ALICE = UserInfo("alice", ("devs", "system:authenticated"))
BOB = UserInfo("bob", ("system:authenticated",))
ADMIN = UserInfo("kubernetes-admin", ("system:masters", "system:authenticated"))
ANON = UserInfo("system:anonymous", ("system:unauthenticated",))
RBAC = "rbac.authorization.k8s.io"


def res(
    user: UserInfo, verb: str, resource: str, ns: str = "", name: str = "", group: str = "", sub: str = ""
) -> Attributes:
    return Attributes(user, verb, True, group, "v1", resource, sub, ns, name, "")


def path(user: UserInfo, verb: str, p: str) -> Attributes:
    return Attributes(user, verb, resource_request=False, path=p)


def role(
    name: str, rules: list[dict[str, Any]], ns: str = "", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    if labels:
        meta["labels"] = labels
    return {"metadata": meta, "rules": rules}


def binding(
    name: str, kind: str, role_name: str, subjects: list[dict[str, Any]], ns: str = ""
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    return {
        "metadata": meta,
        "roleRef": {"apiGroup": RBAC, "kind": kind, "name": role_name},
        "subjects": subjects,
    }


def user(name: str) -> dict[str, Any]:
    return {"kind": "User", "apiGroup": RBAC, "name": name}


def group(name: str) -> dict[str, Any]:
    return {"kind": "Group", "apiGroup": RBAC, "name": name}


# --- rule matching ---------------------------------------------------------------------------------


def test_rule_verbs_groups_resources() -> None:
    r = Rule({"verbs": ["get", "list"], "apiGroups": ["", "apps"], "resources": ["pods", "deployments"]})
    assert r.allows(res(ALICE, "get", "pods", "default"))
    assert r.allows(res(ALICE, "list", "deployments", "default", group="apps"))
    assert not r.allows(res(ALICE, "delete", "pods", "default"))
    assert not r.allows(res(ALICE, "get", "pods", "default", group="batch"))
    assert not r.allows(res(ALICE, "get", "services", "default"))
    # a subresource is its own resource: "pods" does not grant "pods/log"
    assert not r.allows(res(ALICE, "get", "pods", "default", "x", sub="log"))


def test_rule_wildcards_and_subresources() -> None:
    everything = Rule({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
    assert everything.allows(res(ALICE, "deletecollection", "widgets", "x", group="example.com"))
    assert everything.allows(res(ALICE, "get", "pods", "x", "p", sub="log"))
    assert not everything.allows(path(ALICE, "get", "/healthz"))  # resources never grant paths
    logs = Rule({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]})
    assert logs.allows(res(ALICE, "get", "pods", "x", "p", sub="log"))
    assert not logs.allows(res(ALICE, "get", "pods", "x", "p"))
    status = Rule({"verbs": ["update"], "apiGroups": ["*"], "resources": ["*/status"]})
    assert status.allows(res(ALICE, "update", "deployments", "x", "d", group="apps", sub="status"))
    assert not status.allows(res(ALICE, "update", "deployments", "x", "d", group="apps"))
    assert not status.allows(res(ALICE, "update", "deployments", "x", "d", group="apps", sub="scale"))


def test_rule_resource_names() -> None:
    r = Rule(
        {
            "verbs": ["get", "list", "update"],
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["cfg"],
        }
    )
    assert r.allows(res(ALICE, "get", "configmaps", "x", "cfg"))
    assert not r.allows(res(ALICE, "get", "configmaps", "x", "other"))
    # a list (no name) never matches a rule with names
    assert not r.allows(res(ALICE, "list", "configmaps", "x"))


def test_rule_non_resource_urls() -> None:
    r = Rule({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]})
    assert r.allows(path(ALICE, "get", "/healthz"))
    assert not r.allows(path(ALICE, "get", "/healthz/etcd"))
    assert r.allows(path(ALICE, "get", "/apis/apps/v1"))
    assert r.allows(path(ALICE, "get", "/apis/"))
    assert not r.allows(path(ALICE, "get", "/apis"))
    assert not r.allows(path(ALICE, "post", "/healthz"))
    assert Rule({"verbs": ["*"], "nonResourceURLs": ["*"]}).allows(path(ALICE, "delete", "/anything"))
    # URL rules never grant resources
    assert not r.allows(res(ALICE, "get", "pods", "x"))


# --- subjects and the index ------------------------------------------------------------------------


def test_role_binding_grants_only_in_its_namespace() -> None:
    idx = RBACIndex(
        roles=[role("pod-reader", [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}], ns="team")],
        role_bindings=[binding("read", "Role", "pod-reader", [user("alice")], ns="team")],
    )
    d = idx.authorize(res(ALICE, "get", "pods", "team", "p"))
    assert d.allowed
    assert d.reason == 'RBAC: allowed by RoleBinding "read/team" of Role "pod-reader" to User "alice"'
    assert not idx.authorize(res(ALICE, "get", "pods", "other", "p")).allowed
    assert not idx.authorize(res(ALICE, "get", "pods", "", "")).allowed  # cluster-wide list
    assert not idx.authorize(res(BOB, "get", "pods", "team", "p")).allowed


def test_role_binding_to_cluster_role_and_groups() -> None:
    idx = RBACIndex(
        cluster_roles=[role("viewer", [{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}])],
        role_bindings=[binding("devs-view", "ClusterRole", "viewer", [group("devs")], ns="team")],
        cluster_role_bindings=[binding("all-view", "ClusterRole", "viewer", [group("system:authenticated")])],
    )
    assert idx.authorize(res(ALICE, "list", "pods", "team")).allowed
    # the cluster binding applies everywhere, including the cluster scope
    d = idx.authorize(res(BOB, "list", "pods", ""))
    assert (
        d.reason
        == 'RBAC: allowed by ClusterRoleBinding "all-view" of ClusterRole "viewer" to Group "system:authenticated"'
    )
    assert not idx.authorize(res(ANON, "list", "pods", "team")).allowed


def test_service_account_subjects() -> None:
    sa_user = UserInfo(
        "system:serviceaccount:team:builder", ("system:serviceaccounts", "system:serviceaccounts:team")
    )
    idx = RBACIndex(
        roles=[role("r", [{"verbs": ["create"], "apiGroups": [""], "resources": ["pods"]}], ns="team")],
        role_bindings=[
            # the namespace defaults to the binding's
            binding("b", "Role", "r", [{"kind": "ServiceAccount", "name": "builder"}], ns="team"),
        ],
        cluster_role_bindings=[
            binding("x", "ClusterRole", "missing", [{"kind": "ServiceAccount", "name": "builder"}]),
        ],
    )
    d = idx.authorize(res(sa_user, "create", "pods", "team"))
    assert d.allowed
    assert d.reason.endswith('to ServiceAccount "builder/team"')
    other = UserInfo("system:serviceaccount:other:builder", ())
    assert not idx.authorize(res(other, "create", "pods", "team")).allowed


def test_missing_role_is_the_reason() -> None:
    idx = RBACIndex(cluster_role_bindings=[binding("b", "ClusterRole", "nope", [user("alice")])])
    d = idx.authorize(res(ALICE, "get", "pods", "x"))
    assert not d.allowed
    assert d.reason == 'RBAC: clusterrole.rbac.authorization.k8s.io "nope" not found'
    resource_rules, _, err = idx.rules_for(ALICE, "x")
    assert resource_rules == []
    assert err == 'clusterrole.rbac.authorization.k8s.io "nope" not found'


def test_rules_for_lists_cluster_and_namespace_rules() -> None:
    idx = RBACIndex(
        roles=[
            role(
                "r",
                [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s"]}],
                ns="team",
            )
        ],
        cluster_roles=[role("c", [{"verbs": ["get"], "nonResourceURLs": ["/version"]}])],
        role_bindings=[binding("b", "Role", "r", [user("alice")], ns="team")],
        cluster_role_bindings=[binding("cb", "ClusterRole", "c", [group("devs")])],
    )
    rr, nr, err = idx.rules_for(ALICE, "team")
    assert rr == [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s"]}]
    assert nr == [{"verbs": ["get"], "nonResourceURLs": ["/version"]}]
    assert err == ""
    assert idx.rules_for(ALICE, "other")[0] == []


# --- aggregation -----------------------------------------------------------------------------------


def test_aggregation_follows_labels_in_name_order_to_a_fixed_point() -> None:
    roles = {r["metadata"]["name"]: r for r in bp.cluster_roles()}
    # one contributing role per level here (the metrics reader aggregates into all three)
    del roles["system:aggregated-metrics-reader"]
    roles["widgets-view"] = role(
        "widgets-view",
        [{"verbs": ["get"], "apiGroups": ["example.com"], "resources": ["widgets"]}],
        labels={"rbac.authorization.k8s.io/aggregate-to-view": "true"},
    )
    out = aggregated_rules(roles)
    view, edit, admin = out["view"], out["edit"], out["admin"]
    widget = {"verbs": ["get"], "apiGroups": ["example.com"], "resources": ["widgets"]}
    assert view == roles["system:aggregate-to-view"]["rules"] + [widget]
    # edit = aggregate-to-edit's rules then view's (name order: system:... < view)
    assert edit == roles["system:aggregate-to-edit"]["rules"] + view
    # admin = edit's rules then aggregate-to-admin's ("edit" < "system:...")
    assert admin == edit + roles["system:aggregate-to-admin"]["rules"]
    assert widget in admin
    # secrets: edit and admin may write them, view may not read them
    secrets_get = res(ALICE, "get", "secrets", "x", "s")
    assert not any(Rule(r).allows(secrets_get) for r in view)
    assert any(Rule(r).allows(secrets_get) for r in edit)


def test_aggregation_dedupes_rules_and_ignores_itself() -> None:
    same = {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}
    roles = {
        "agg": {
            "metadata": {"name": "agg", "labels": {"pick": "yes"}},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"pick": "yes"}}]},
            "rules": [{"verbs": ["stale"], "apiGroups": [""], "resources": ["x"]}],
        },
        "a": role("a", [same], labels={"pick": "yes"}),
        "b": role(
            "b",
            [dict(same), {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}],
            labels={"pick": "yes"},
        ),
        "c": role(
            "c", [{"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}], labels={"pick": "no"}
        ),
    }
    assert aggregated_rules(roles)["agg"] == [
        same,
        {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]},
    ]


# --- covering and reconciliation -------------------------------------------------------------------


def test_covers_breaks_rules_down() -> None:
    owner = [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "services"]}]
    assert covers(owner, {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}) == []
    assert (
        covers(owner, {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["x"]})
        == []
    )
    assert covers(owner, {"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods"]}) == [
        {"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}
    ]
    assert (
        covers(
            [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            {"verbs": ["x"], "apiGroups": ["g"], "resources": ["r/s"]},
        )
        == []
    )
    named = [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]}]
    assert covers(named, {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}) != []
    assert (
        covers(
            [{"verbs": ["get"], "nonResourceURLs": ["/api/*"]}],
            {"verbs": ["get"], "nonResourceURLs": ["/api/v1"]},
        )
        == []
    )


def test_reconcile_role_adds_missing_rules_and_respects_opt_out() -> None:
    expected = next(r for r in bp.cluster_roles() if r["metadata"]["name"] == "system:basic-user")
    existing = {
        "metadata": {
            "name": "system:basic-user",
            "annotations": {bp.AUTOUPDATE: "true"},
            "labels": {"mine": "1"},
        },
        "rules": [
            {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"]}
        ],
    }
    out = bp.reconcile_role(existing, expected)
    assert out is not None
    assert out["metadata"]["labels"] == {"kubernetes.io/bootstrapping": "rbac-defaults", "mine": "1"}
    assert len(out["rules"]) == 2
    assert bp.reconcile_role(out, expected) is None  # nothing missing any more
    existing["metadata"]["annotations"][bp.AUTOUPDATE] = "false"
    assert bp.reconcile_role(existing, expected) is None


def test_reconcile_binding_adds_subjects_and_replaces_role_ref() -> None:
    expected = next(
        b for b in bp.cluster_role_bindings() if b["metadata"]["name"] == "system:public-info-viewer"
    )
    existing = {
        "metadata": {"name": "system:public-info-viewer"},
        "roleRef": expected["roleRef"],
        "subjects": [],
    }
    out, recreate = bp.reconcile_binding(existing, expected)
    assert not recreate and out is not None
    assert {s["name"] for s in out["subjects"]} == {"system:authenticated", "system:unauthenticated"}
    moved = dict(existing, roleRef={"apiGroup": RBAC, "kind": "ClusterRole", "name": "other"})
    out, recreate = bp.reconcile_binding(moved, expected)
    assert recreate and out is not None and out["roleRef"]["name"] == "system:public-info-viewer"


# --- the bootstrap policy --------------------------------------------------------------------------


def bootstrap_index() -> RBACIndex:
    roles = {r["metadata"]["name"]: r for r in bp.cluster_roles()}
    for name, rules in aggregated_rules(roles).items():
        roles[name] = dict(roles[name], rules=rules)
    return RBACIndex(cluster_roles=roles.values(), cluster_role_bindings=bp.cluster_role_bindings())


def test_every_bootstrap_binding_names_a_bootstrap_role_and_everything_is_autoupdate() -> None:
    names = {r["metadata"]["name"] for r in bp.cluster_roles()}
    for b in bp.cluster_role_bindings():
        assert b["roleRef"]["name"] in names
        assert b["metadata"]["annotations"][bp.AUTOUPDATE] == "true"
    for r in bp.cluster_roles():
        assert r["metadata"]["annotations"][bp.AUTOUPDATE] == "true"
    assert {"cluster-admin", "admin", "edit", "view", "system:basic-user", "system:discovery"} <= names
    assert {"system:public-info-viewer", "system:kube-scheduler", "system:kube-controller-manager"} <= names
    assert {"system:node", "system:node-proxier", "system:minik-dns", "system:auth-delegator"} <= names
    assert "system:service-account-issuer-discovery" in names


def test_bootstrap_policy_grants() -> None:
    idx = bootstrap_index()
    assert idx.authorize(path(ANON, "get", "/healthz")).allowed
    assert idx.authorize(path(ANON, "get", "/version")).allowed
    assert not idx.authorize(path(ANON, "get", "/api")).allowed
    assert not idx.authorize(res(ANON, "list", "pods", "default")).allowed
    assert idx.authorize(path(BOB, "get", "/apis/apps/v1")).allowed
    assert idx.authorize(res(BOB, "create", "selfsubjectaccessreviews", group="authorization.k8s.io")).allowed
    assert idx.authorize(res(BOB, "create", "selfsubjectrulesreviews", group="authorization.k8s.io")).allowed
    assert not idx.authorize(res(BOB, "list", "pods", "default")).allowed
    assert idx.authorize(res(ADMIN, "delete", "nodes", "", "n1")).allowed  # via cluster-admin

    sched = UserInfo("system:kube-scheduler", ("system:authenticated",))
    assert idx.authorize(res(sched, "create", "pods", "default", "p", sub="binding")).allowed
    assert idx.authorize(
        res(sched, "update", "leases", "kube-system", "kube-scheduler", group="coordination.k8s.io")
    ).allowed
    assert not idx.authorize(res(sched, "create", "secrets", "default")).allowed

    kcm = UserInfo("system:kube-controller-manager", ("system:authenticated",))
    # the garbage collector and namespace controller over every kind, custom ones included
    assert idx.authorize(res(kcm, "delete", "widgets", "default", "w", group="example.com")).allowed
    assert idx.authorize(res(kcm, "patch", "widgets", "default", "w", group="example.com")).allowed
    assert idx.authorize(res(kcm, "deletecollection", "configmaps", "gone")).allowed
    assert idx.authorize(res(kcm, "create", "pods", "default")).allowed
    assert idx.authorize(res(kcm, "create", "replicasets", "default", group="apps")).allowed
    assert idx.authorize(res(kcm, "create", "controllerrevisions", "default", group="apps")).allowed
    assert idx.authorize(res(kcm, "create", "endpointslices", "default", group="discovery.k8s.io")).allowed
    assert idx.authorize(
        res(kcm, "update", "deployments", "default", "d", group="apps", sub="status")
    ).allowed
    assert idx.authorize(res(kcm, "update", "namespaces", "", "gone", sub="finalize")).allowed
    assert not idx.authorize(res(kcm, "create", "clusterrolebindings", group=RBAC)).allowed

    proxy = UserInfo("system:kube-proxy", ("system:authenticated",))
    assert idx.authorize(res(proxy, "watch", "endpointslices", "", group="discovery.k8s.io")).allowed
    assert idx.authorize(res(proxy, "list", "services", "")).allowed
    assert idx.authorize(res(proxy, "update", "services", "default", "lb", sub="status")).allowed
    assert not idx.authorize(res(proxy, "update", "services", "default", "lb")).allowed
    assert not idx.authorize(res(proxy, "get", "secrets", "default", "s")).allowed

    dns = UserInfo("system:minik-dns", ("system:authenticated",))
    for resource, grp in (
        ("services", ""),
        ("endpoints", ""),
        ("namespaces", ""),
        ("pods", ""),
        ("endpointslices", "discovery.k8s.io"),
    ):
        assert idx.authorize(res(dns, "watch", resource, "", group=grp)).allowed
    assert not idx.authorize(res(dns, "list", "secrets", "")).allowed

    # system:node is bound to nobody: the Node authorizer evaluates its rules
    node = UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))
    assert not idx.authorize(res(node, "list", "pods", "")).allowed


# --- the 403 wording -------------------------------------------------------------------------------


def test_forbidden_message_wording() -> None:
    a = UserInfo("alice")
    assert (
        forbidden_message(res(a, "delete", "pods", "default"))
        == 'pods is forbidden: User "alice" cannot delete resource "pods" in API group "" in the namespace "default"'
    )
    assert (
        forbidden_message(res(a, "get", "pods", "default", "x"))
        == 'pods "x" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "default"'
    )
    assert (
        forbidden_message(res(a, "list", "nodes"))
        == 'nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope'
    )
    assert forbidden_message(path(a, "get", "/foo")) == 'forbidden: User "alice" cannot get path "/foo"'
    # the qualified resource names the group and leaves the subresource to the sentence
    assert forbidden_message(res(a, "update", "deployments", "ns", "web", group="apps", sub="scale")) == (
        'deployments.apps "web" is forbidden: User "alice" cannot update resource "deployments/scale" '
        'in API group "apps" in the namespace "ns"'
    )
    assert forbidden_message(res(a, "get", "secrets", "ns", "s"), "no relationship found") == (
        'secrets "s" is forbidden: User "alice" cannot get resource "secrets" in API group "" '
        'in the namespace "ns": no relationship found'
    )
    assert forbidden_details(res(a, "get", "deployments", "ns", "web", group="apps", sub="scale")) == {
        "kind": "deployments",
        "group": "apps",
        "name": "web",
    }


# --- the authorizer over (unstarted) watch caches --------------------------------------------------


def _put(storage: Storage, info: Any, objs: list[dict[str, Any]]) -> None:
    reg = storage.registry(info)
    reg.cache.objects = {reg.key(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objs}


def make_authorizer(modes: tuple[str, ...] = ("Node", "RBAC")) -> tuple[Authorizer, Storage]:
    storage = Storage(None)  # type: ignore[arg-type]
    roles = {r["metadata"]["name"]: r for r in bp.cluster_roles()}
    for name, rules in aggregated_rules(roles).items():
        roles[name] = dict(roles[name], rules=rules)
    _put(storage, CLUSTER_ROLES, list(roles.values()))
    _put(storage, CLUSTER_ROLE_BINDINGS, bp.cluster_role_bindings())
    _put(
        storage,
        ROLES,
        [
            role(
                "pod-reader",
                [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}],
                ns="team",
            )
        ],
    )
    _put(storage, ROLE_BINDINGS, [binding("alice-reads", "Role", "pod-reader", [user("alice")], ns="team")])
    return Authorizer(storage, modes), storage


def test_authorizer_decisions_follow_cache_changes() -> None:
    authz, storage = make_authorizer()
    assert authz.authorize(res(ADMIN, "delete", "anything", "x", group="whatever")).allowed
    get = res(ALICE, "get", "pods", "team", "p")
    assert authz.authorize(get).allowed
    assert authz.authorize(get) is authz.authorize(get)  # cached
    assert not authz.authorize(res(ALICE, "delete", "pods", "team", "p")).allowed
    # the binding goes: the next decision sees it
    _put(storage, ROLE_BINDINGS, [])
    assert not authz.authorize(get).allowed
    _put(storage, ROLE_BINDINGS, [binding("alice-admin", "ClusterRole", "admin", [user("alice")], ns="team")])
    assert authz.authorize(res(ALICE, "create", "rolebindings", "team", group=RBAC)).allowed
    assert authz.authorize(res(ALICE, "delete", "secrets", "team", "s")).allowed
    assert not authz.authorize(res(ALICE, "delete", "secrets", "other", "s")).allowed


def test_authorizer_modes() -> None:
    assert parse_modes("Node,RBAC") == ("Node", "RBAC")
    for bad in ("", "Node,Bogus", "RBAC,RBAC"):
        with pytest.raises(ValueError):
            parse_modes(bad)
    deny, _ = make_authorizer(("AlwaysDeny",))
    d = deny.authorize(res(ALICE, "get", "pods", "team", "p"))
    assert not d.allowed and d.reason == "Everything is forbidden."
    assert deny.authorize(res(ADMIN, "get", "pods", "team", "p")).allowed  # system:masters
    allow, _ = make_authorizer(("AlwaysAllow",))
    assert allow.authorize(res(BOB, "delete", "nodes", "", "n")).allowed
    rr, nr, incomplete = allow.rules_for(BOB, "x")
    assert rr == [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}] and not incomplete


def review(
    authz: Authorizer, kind: str, body: dict[str, Any], who: UserInfo = BOB, ns: str | None = None
) -> dict[str, Any]:
    return asyncio.run(authz.review(kind, body, who, ns))


def test_self_subject_access_review() -> None:
    authz, _ = make_authorizer()
    ok = review(
        authz,
        "SelfSubjectAccessReview",
        {"spec": {"resourceAttributes": {"namespace": "team", "verb": "get", "resource": "pods"}}},
        ALICE,
    )
    assert ok["status"]["allowed"] is True
    assert (
        ok["status"]["reason"]
        == 'RBAC: allowed by RoleBinding "alice-reads/team" of Role "pod-reader" to User "alice"'
    )
    assert ok["kind"] == "SelfSubjectAccessReview" and ok["apiVersion"] == "authorization.k8s.io/v1"
    no = review(
        authz,
        "SelfSubjectAccessReview",
        {"spec": {"resourceAttributes": {"namespace": "team", "verb": "delete", "resource": "pods"}}},
        ALICE,
    )
    assert no["status"] == {"allowed": False}
    path_ok = review(
        authz,
        "SelfSubjectAccessReview",
        {"spec": {"nonResourceAttributes": {"path": "/version", "verb": "get"}}},
        ALICE,
    )
    assert path_ok["status"]["allowed"] is True


def test_subject_access_review_and_validation() -> None:
    authz, _ = make_authorizer()
    body = {
        "spec": {
            "user": "alice",
            "groups": ["system:authenticated"],
            "resourceAttributes": {"namespace": "team", "verb": "list", "resource": "pods"},
        }
    }
    assert review(authz, "SubjectAccessReview", body)["status"]["allowed"] is True
    body["spec"]["user"] = "mallory"
    assert review(authz, "SubjectAccessReview", body)["status"]["allowed"] is False
    with pytest.raises(errors.Invalid) as e:
        review(
            authz,
            "SubjectAccessReview",
            {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}},
        )
    assert e.value.causes == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "": at least one of user or group must be specified',
            "field": "spec.user",
        }
    ]
    with pytest.raises(errors.Invalid) as e:
        review(authz, "SelfSubjectAccessReview", {"spec": {}})
    assert "exactly one of nonResourceAttributes or resourceAttributes must be specified" in str(e.value)


def test_local_subject_access_review_namespace_must_match() -> None:
    authz, _ = make_authorizer()
    body = {
        "metadata": {"namespace": "team"},
        "spec": {
            "user": "alice",
            "resourceAttributes": {"namespace": "team", "verb": "get", "resource": "pods"},
        },
    }
    out = review(authz, "LocalSubjectAccessReview", body, ns="team")
    assert out["status"]["allowed"] is True and out["metadata"]["namespace"] == "team"
    bad = {
        "spec": {
            "user": "alice",
            "resourceAttributes": {"namespace": "other", "verb": "get", "resource": "pods"},
        }
    }
    with pytest.raises(errors.Invalid) as e:
        review(authz, "LocalSubjectAccessReview", bad, ns="team")
    assert e.value.causes[0]["field"] == "spec.resourceAttributes.namespace"
    assert "must match metadata.namespace" in e.value.causes[0]["message"]
    with pytest.raises(errors.BadRequest):
        review(authz, "LocalSubjectAccessReview", body, ns="other")


def test_self_subject_rules_review() -> None:
    authz, _ = make_authorizer()
    out = review(authz, "SelfSubjectRulesReview", {"spec": {"namespace": "team"}}, ALICE)
    status = out["status"]
    assert {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]} in status["resourceRules"]
    assert any("/api" in r["nonResourceURLs"] for r in status["nonResourceRules"])
    assert status["incomplete"] is False
    node = UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))
    status = review(authz, "SelfSubjectRulesReview", {"spec": {"namespace": "team"}}, node)["status"]
    assert status["incomplete"] is True
    assert status["evaluationError"] == "node authorizer does not support user rule resolution"
    with pytest.raises(errors.BadRequest):
        review(authz, "SelfSubjectRulesReview", {"spec": {}}, ALICE)


# --- escalation prevention -------------------------------------------------------------------------


def _as(user: UserInfo | None, fn: Any) -> Any:
    from apiserver.authtypes import current_user

    token = current_user.set(user)
    try:
        return fn()
    finally:
        current_user.reset(token)


def test_escalation_check_on_roles_and_bindings() -> None:
    authz, storage = make_authorizer()
    _put(storage, ROLE_BINDINGS, [binding("alice-admin", "ClusterRole", "admin", [user("alice")], ns="team")])
    check = authz.check_escalation
    pods_role = role(
        "pods", [{"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods"]}], ns="team"
    )
    _as(ALICE, lambda: check(ROLES, pods_role, None))  # admin in team holds these
    nodes_role = role(
        "nodes",
        [
            {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["nodes"]},
            {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
        ],
        ns="team",
    )
    with pytest.raises(errors.Forbidden) as e:
        _as(ALICE, lambda: check(ROLES, nodes_role, None))
    assert str(e.value) == (
        'roles.rbac.authorization.k8s.io "nodes" is forbidden: user "alice" (groups=["devs" "system:authenticated"]) '
        'is attempting to grant RBAC permissions not currently held:\n{APIGroups:[""], Resources:["nodes"], Verbs:["get" "list"]}'
    )
    assert e.value.kind == "roles" and e.value.group == RBAC
    # the same Role elsewhere: alice holds nothing there
    with pytest.raises(errors.Forbidden):
        _as(
            ALICE,
            lambda: check(ROLES, dict(pods_role, metadata={"name": "pods", "namespace": "other"}), None),
        )
    # bindings: to admin in team (held), to cluster-admin (not held)
    _as(
        ALICE,
        lambda: check(ROLE_BINDINGS, binding("b", "ClusterRole", "admin", [user("bob")], ns="team"), None),
    )
    with pytest.raises(errors.Forbidden) as e:
        _as(
            ALICE,
            lambda: check(
                ROLE_BINDINGS, binding("b", "ClusterRole", "cluster-admin", [user("bob")], ns="team"), None
            ),
        )
    assert "is attempting to grant RBAC permissions not currently held" in str(e.value)
    # aggregation needs cluster-admin's escalate
    agg = {
        "metadata": {"name": "mine"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]},
    }
    with pytest.raises(errors.Forbidden) as e:
        _as(ALICE, lambda: check(CLUSTER_ROLES, agg, None))
    assert str(e.value).endswith("must have cluster-admin privileges to use the aggregationRule")
    # exempt: system:masters, the API server itself, and updates of owner references only
    _as(
        ADMIN,
        lambda: check(
            ROLE_BINDINGS, binding("b", "ClusterRole", "cluster-admin", [user("bob")], ns="x"), None
        ),
    )
    _as(None, lambda: check(CLUSTER_ROLES, agg, None))
    owned = dict(nodes_role, metadata={**nodes_role["metadata"], "ownerReferences": [{"uid": "1"}]})
    _as(ALICE, lambda: check(ROLES, owned, nodes_role))
    # the escalate and bind verbs let a user grant what it does not hold
    _put(
        storage,
        ROLES,
        [
            role(
                "granter",
                [
                    {
                        "verbs": ["escalate", "bind"],
                        "apiGroups": [RBAC],
                        "resources": ["roles", "clusterroles"],
                    }
                ],
                ns="team",
            )
        ],
    )
    _put(
        storage,
        ROLE_BINDINGS,
        [
            binding("alice-admin", "ClusterRole", "admin", [user("alice")], ns="team"),
            binding("alice-granter", "Role", "granter", [user("alice")], ns="team"),
        ],
    )
    _as(ALICE, lambda: check(ROLES, nodes_role, None))
    _as(
        ALICE,
        lambda: check(
            ROLE_BINDINGS, binding("b", "ClusterRole", "cluster-admin", [user("bob")], ns="team"), None
        ),
    )
