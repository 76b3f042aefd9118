"""The test harness gives every component its own identity, never the admin's: what the API server
says each kubeconfig authenticates as (SelfSubjectReview), and that a component's identity is
refused what its role does not allow."""

from __future__ import annotations

import pytest
import yaml

from testkit.processes import APIServerProcess

REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
BODY = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


@pytest.mark.parametrize(
    ("identity", "user", "group"),
    [
        ("admin", "kubernetes-admin", "system:masters"),
        ("scheduler", "system:kube-scheduler", None),
        ("controller-manager", "system:kube-controller-manager", None),
        ("proxy", "system:kube-proxy", None),
        ("dns", "system:minik-dns", None),
        ("node:n1", "system:node:n1", "system:nodes"),
    ],
)
def test_each_kubeconfig_is_its_own_user(
    apiserver: APIServerProcess, identity: str, user: str, group: str | None
) -> None:
    path = apiserver.kubeconfig_for(identity)
    config = yaml.safe_load(path.read_text())
    assert config["clusters"][0]["cluster"]["server"] == apiserver.url.rstrip("/")
    assert config["clusters"][0]["cluster"]["certificate-authority-data"]
    assert "insecure-skip-tls-verify" not in config["clusters"][0]["cluster"]
    with apiserver.http(identity) as c:
        r = c.post(REVIEW, json=BODY)
    assert r.status_code == 201, r.text
    info = r.json()["status"]["userInfo"]
    assert info["username"] == user
    assert "system:authenticated" in info["groups"]
    if group:
        assert group in info["groups"]
    else:
        assert "system:masters" not in info["groups"]


def test_a_component_is_refused_what_its_role_does_not_allow(apiserver: APIServerProcess) -> None:
    with apiserver.http("scheduler") as c:
        r = c.get("/api/v1/namespaces/kube-system/secrets")
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'secrets is forbidden: User "system:kube-scheduler" cannot list resource "secrets" '
        'in API group "" in the namespace "kube-system"'
    )
