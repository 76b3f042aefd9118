"""Request attributes from method, path and query, as Kubernetes' RequestInfoFactory makes them."""

from __future__ import annotations

import pytest

from apiserver.authtypes import UserInfo
from apiserver.requestinfo import request_attributes

ALICE = UserInfo("alice", ("system:authenticated",))


def attrs(method: str, path: str, query: str = "") -> tuple[object, ...]:
    a = request_attributes(ALICE, method, path, query.encode())
    return (a.verb, a.api_group, a.api_version, a.resource, a.subresource, a.namespace, a.name)


@pytest.mark.parametrize(
    ("method", "path", "query", "want"),
    [
        ("GET", "/api/v1/namespaces/default/pods", "", ("list", "", "v1", "pods", "", "default", "")),
        (
            "GET",
            "/api/v1/namespaces/default/pods",
            "watch=true",
            ("watch", "", "v1", "pods", "", "default", ""),
        ),
        ("GET", "/api/v1/namespaces/default/pods", "watch=1", ("watch", "", "v1", "pods", "", "default", "")),
        ("GET", "/api/v1/namespaces/default/pods/web", "", ("get", "", "v1", "pods", "", "default", "web")),
        ("HEAD", "/api/v1/namespaces/default/pods/web", "", ("get", "", "v1", "pods", "", "default", "web")),
        ("POST", "/api/v1/namespaces/default/pods", "", ("create", "", "v1", "pods", "", "default", "")),
        (
            "PUT",
            "/api/v1/namespaces/ns/pods/web/status",
            "",
            ("update", "", "v1", "pods", "status", "ns", "web"),
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/ns/deployments/d",
            "",
            ("patch", "apps", "v1", "deployments", "", "ns", "d"),
        ),
        ("DELETE", "/api/v1/namespaces/ns/pods/web", "", ("delete", "", "v1", "pods", "", "ns", "web")),
        ("DELETE", "/api/v1/namespaces/ns/pods", "", ("deletecollection", "", "v1", "pods", "", "ns", "")),
        ("GET", "/api/v1/nodes", "", ("list", "", "v1", "nodes", "", "", "")),
        ("GET", "/api/v1/pods", "", ("list", "", "v1", "pods", "", "", "")),
        (
            "POST",
            "/api/v1/namespaces/ns/pods/web/exec",
            "",
            ("create", "", "v1", "pods", "exec", "ns", "web"),
        ),
        ("GET", "/api/v1/namespaces/ns/pods/web/log", "", ("get", "", "v1", "pods", "log", "ns", "web")),
        (
            "POST",
            "/api/v1/namespaces/ns/serviceaccounts/bot/token",
            "",
            ("create", "", "v1", "serviceaccounts", "token", "ns", "bot"),
        ),
        # a namespace is its own namespace; status and finalize are its subresources
        ("GET", "/api/v1/namespaces/ns", "", ("get", "", "v1", "namespaces", "", "ns", "ns")),
        (
            "PUT",
            "/api/v1/namespaces/ns/finalize",
            "",
            ("update", "", "v1", "namespaces", "finalize", "ns", "ns"),
        ),
        ("GET", "/api/v1/namespaces", "", ("list", "", "v1", "namespaces", "", "", "")),
        # a field selector on metadata.name names the object of a list or watch
        (
            "GET",
            "/api/v1/namespaces/ns/secrets",
            "fieldSelector=metadata.name%3Dtls&watch=true",
            ("watch", "", "v1", "secrets", "", "ns", "tls"),
        ),
        (
            "GET",
            "/api/v1/nodes",
            "fieldSelector=metadata.name==n1",
            ("list", "", "v1", "nodes", "", "", "n1"),
        ),
        (
            "GET",
            "/api/v1/nodes",
            "fieldSelector=spec.unschedulable=false",
            ("list", "", "v1", "nodes", "", "", ""),
        ),
        # the deprecated watch prefix
        ("GET", "/api/v1/watch/namespaces/ns/pods", "", ("watch", "", "v1", "pods", "", "ns", "")),
        ("GET", "/api/v1/watch/namespaces/ns/pods/p", "", ("watch", "", "v1", "pods", "", "ns", "p")),
        # an unknown resource is still a resource request (authorized before it is found missing)
        ("GET", "/apis/example.com/v1/widgets", "", ("list", "example.com", "v1", "widgets", "", "", "")),
        (
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            "",
            ("create", "authorization.k8s.io", "v1", "selfsubjectaccessreviews", "", "", ""),
        ),
    ],
)
def test_resource_requests(method: str, path: str, query: str, want: tuple[object, ...]) -> None:
    assert attrs(method, path, query) == want
    assert request_attributes(ALICE, method, path, query).resource_request


@pytest.mark.parametrize(
    ("method", "path", "verb"),
    [
        ("GET", "/healthz", "get"),
        ("GET", "/livez", "get"),
        ("GET", "/readyz", "get"),
        ("GET", "/version", "get"),
        ("GET", "/", "get"),
        ("GET", "/api", "get"),
        ("GET", "/api/v1", "get"),
        ("GET", "/apis", "get"),
        ("GET", "/apis/apps", "get"),
        ("GET", "/apis/apps/v1", "get"),
        ("GET", "/openapi/v3", "get"),
        ("POST", "/healthz", "post"),
        ("DELETE", "/metrics", "delete"),
    ],
)
def test_non_resource_requests(method: str, path: str, verb: str) -> None:
    a = request_attributes(ALICE, method, path)
    assert not a.resource_request
    assert a.verb == verb
    assert a.path == path
    assert a.resource == "" and a.namespace == ""


def test_user_is_carried() -> None:
    assert request_attributes(ALICE, "GET", "/api/v1/pods").user is ALICE
