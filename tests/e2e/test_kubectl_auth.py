"""RBAC driven entirely with the real kubectl (both versions the tests run): ``kubectl create
role/rolebinding/clusterrole``, ``kubectl auth can-i`` (with ``--as`` and ``--list``) for the admin
and for a user bound by a Role, that user's own kubeconfig refused with Kubernetes' 403, an
aggregated ClusterRole, and ``kubectl auth reconcile``."""

from __future__ import annotations

import json
import subprocess

import pytest

from testkit.processes import APIServerProcess
from testkit.wait import unique, wait_for
from tests.e2e.conftest import KUBECTL_VERSIONS, Kubectl, kubectl_of


@pytest.fixture(scope="module", params=KUBECTL_VERSIONS)
def kubectl_bin(request: pytest.FixtureRequest) -> str:
    return kubectl_of(request.param)


def as_user(
    kubectl: Kubectl, apiserver: APIServerProcess, user: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """kubectl with ``user``'s own client certificate (a kubeconfig of its own)."""
    return subprocess.run(
        [
            kubectl.binary,
            "--kubeconfig",
            str(apiserver.kubeconfig_for(user)),
            "--cache-dir",
            str(kubectl.cache_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_roles_bindings_and_can_i(kubectl: Kubectl, apiserver: APIServerProcess, ns: str) -> None:
    user = unique("alice")
    assert kubectl("auth", "can-i", "create", "clusterrolebindings").strip() == "yes"
    assert kubectl("auth", "can-i", "*", "*").strip() == "yes"
    out = kubectl("create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods", "-n", ns)
    assert out.strip() == "role.rbac.authorization.k8s.io/pod-reader created"
    out = kubectl("create", "rolebinding", "read-pods", "--role=pod-reader", f"--user={user}", "-n", ns)
    assert out.strip() == "rolebinding.rbac.authorization.k8s.io/read-pods created"

    def can_i(*args: str) -> tuple[int, str]:
        r = kubectl.run("auth", "can-i", *args, "-n", ns, "--as", user, check=False)
        return r.returncode, r.stdout.strip()

    wait_for(lambda: can_i("list", "pods") == (0, "yes"), 10, "the binding takes effect")
    assert can_i("watch", "pods") == (0, "yes")
    assert can_i("delete", "pods") == (1, "no")
    assert can_i("get", "secrets") == (1, "no")
    # the user's own identity
    r = as_user(kubectl, apiserver, user, "auth", "can-i", "get", "pods", "-n", ns)
    assert (r.returncode, r.stdout.strip()) == (0, "yes"), r.stderr
    r = as_user(kubectl, apiserver, user, "get", "pods", "-n", ns)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"No resources found in {ns} namespace."
    r = as_user(kubectl, apiserver, user, "delete", "pod", "x", "-n", ns)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f'Error from server (Forbidden): pods "x" is forbidden: User "{user}" cannot delete resource "pods" '
        f'in API group "" in the namespace "{ns}"'
    )
    r = as_user(kubectl, apiserver, user, "get", "secrets", "-n", ns)
    assert r.stderr.strip() == (
        f'Error from server (Forbidden): secrets is forbidden: User "{user}" cannot list resource "secrets" '
        f'in API group "" in the namespace "{ns}"'
    )
    r = as_user(kubectl, apiserver, user, "auth", "can-i", "--list", "-n", ns)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    assert ["pods", "[]", "[]", "[get", "list", "watch]"] in [line.split() for line in lines]


def test_aggregated_cluster_role(kubectl: Kubectl, ns: str) -> None:
    agg = unique("monitoring")
    label = f"rbac.example.com/aggregate-to-{agg}"
    out = kubectl("create", "clusterrole", agg, f"--aggregation-rule={label}=true")
    assert out.strip() == f"clusterrole.rbac.authorization.k8s.io/{agg} created"
    part = unique("endpoints-reader")
    kubectl("create", "clusterrole", part, "--verb=get,list", "--resource=endpoints")
    kubectl("label", "clusterrole", part, f"{label}=true")

    def rules() -> list[dict[str, object]]:
        return json.loads(kubectl("get", "clusterrole", agg, "-o", "json")).get("rules") or []

    got = wait_for(rules, 10, "the aggregated rules")
    assert got == [{"apiGroups": [""], "resources": ["endpoints"], "verbs": ["get", "list"]}]
    user = unique("mon")
    kubectl("create", "rolebinding", "mon", f"--clusterrole={agg}", f"--user={user}", "-n", ns)
    wait_for(
        lambda: (
            kubectl.run(
                "auth", "can-i", "list", "endpoints", "-n", ns, "--as", user, check=False
            ).stdout.strip()
            == "yes"
        ),
        10,
        "the aggregated role grants",
    )
    kubectl("delete", "clusterrole", part)
    wait_for(lambda: rules() == [], 10, "the rules leave with the labelled role")


def test_auth_reconcile(kubectl: Kubectl, ns: str) -> None:
    manifest = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: cm-editor
  namespace: {ns}
rules:
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: cm-editor
  namespace: {ns}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: cm-editor
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: editors
"""
    out = kubectl("auth", "reconcile", "-f", str(kubectl.write("rbac.yaml", manifest)))
    assert "role.rbac.authorization.k8s.io/cm-editor reconciled" in out
    assert "rolebinding.rbac.authorization.k8s.io/cm-editor reconciled" in out
    wait_for(
        lambda: (
            kubectl.run(
                "auth",
                "can-i",
                "update",
                "configmaps",
                "-n",
                ns,
                "--as",
                "someone",
                "--as-group",
                "editors",
                check=False,
            ).stdout.strip()
            == "yes"
        ),
        10,
        "the reconciled binding grants",
    )
