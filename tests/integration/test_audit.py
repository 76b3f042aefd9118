"""The audit log of a real ``minik-apiserver`` (--audit-log-path): one audit.k8s.io/v1 Event per
request at the Metadata level, with the user, the impersonated user, the verb, the object, the
response code and the authorization decision."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.processes import APIServerProcess, EtcdProcess
from testkit.wait import wait_for


@pytest.fixture(scope="module")
def audited(
    etcd: EtcdProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[APIServerProcess, Path]]:
    path = tmp_path_factory.mktemp("audit") / "audit.log"
    s = APIServerProcess(etcd.url)
    try:
        s.start(
            extra=["--audit-log-path", str(path), "--audit-log-maxsize", "1", "--audit-log-maxbackup", "2"]
        )
        yield s, path
    finally:
        s.cleanup()


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def find(path: Path, match: Any) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((e for e in events(path) if match(e)), None)

    return wait_for(found, timeout=15, what="the audit event")


def test_a_create_is_recorded_with_user_verb_object_and_code(audited: tuple[APIServerProcess, Path]) -> None:
    server, path = audited
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "audited"},
        "data": {"secret": "s3cr3t"},
    }
    with server.http(headers={"User-Agent": "audit-test/1.0"}) as http:
        assert http.post("/api/v1/namespaces/default/configmaps", json=cm).status_code == 201
    ev = find(
        path,
        lambda e: e.get("verb") == "create" and (e.get("objectRef") or {}).get("resource") == "configmaps",
    )
    assert (ev["apiVersion"], ev["kind"], ev["level"], ev["stage"]) == (
        "audit.k8s.io/v1",
        "Event",
        "Metadata",
        "ResponseComplete",
    )
    assert ev["requestURI"] == "/api/v1/namespaces/default/configmaps"
    assert ev["user"]["username"] == "kubernetes-admin"
    assert "system:masters" in ev["user"]["groups"]
    assert ev["objectRef"]["namespace"] == "default" and ev["objectRef"]["apiVersion"] == "v1"
    assert ev["responseStatus"]["code"] == 201
    assert ev["sourceIPs"] == ["127.0.0.1"] and ev["userAgent"] == "audit-test/1.0"
    assert ev["annotations"]["authorization.k8s.io/decision"] == "allow"
    assert ev["requestReceivedTimestamp"] <= ev["stageTimestamp"]
    assert "s3cr3t" not in path.read_text()  # Metadata level: no bodies


def test_a_denied_request_is_recorded_as_forbidden(audited: tuple[APIServerProcess, Path]) -> None:
    server, path = audited
    with server.http("eve") as http:
        assert http.get("/api/v1/namespaces/default/secrets/db").status_code == 403
    ev = find(path, lambda e: e["user"]["username"] == "eve")
    assert ev["verb"] == "get"
    assert ev["objectRef"] == {
        "resource": "secrets",
        "namespace": "default",
        "name": "db",
        "apiVersion": "v1",
    }
    assert ev["responseStatus"]["code"] == 403
    assert ev["annotations"]["authorization.k8s.io/decision"] == "forbid"


def test_impersonation_names_both_users(audited: tuple[APIServerProcess, Path]) -> None:
    server, path = audited
    with server.http(headers={"Impersonate-User": "alice"}) as http:
        http.get("/api/v1/namespaces/default/pods")
    ev = find(path, lambda e: (e.get("impersonatedUser") or {}).get("username") == "alice")
    assert ev["user"]["username"] == "kubernetes-admin"
    assert ev["verb"] == "list" and ev["objectRef"]["resource"] == "pods"


def test_pod_security_audit_mode_annotates_the_event(audited: tuple[APIServerProcess, Path]) -> None:
    server, path = audited
    ns = {"metadata": {"name": "audited-ns", "labels": {"pod-security.kubernetes.io/audit": "restricted"}}}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "priv"},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": "main", "image": "busybox", "securityContext": {"privileged": True}}],
        },
    }
    with server.http() as http:
        assert http.post("/api/v1/namespaces", json=ns).status_code == 201
        http.post("/api/v1/namespaces/audited-ns/serviceaccounts", json={"metadata": {"name": "default"}})
        r = http.post("/api/v1/namespaces/audited-ns/pods", json=pod)
        assert r.status_code == 201, r.text  # audit mode records, never refuses
    ev = find(
        path,
        lambda e: (
            e.get("verb") == "create"
            and (e.get("objectRef") or {}).get("namespace") == "audited-ns"
            and e["objectRef"]["resource"] == "pods"
        ),
    )
    violations = ev["annotations"]["pod-security.kubernetes.io/audit-violations"]
    assert violations.startswith('would violate PodSecurity "restricted:latest": ')
    assert "privileged" in violations
