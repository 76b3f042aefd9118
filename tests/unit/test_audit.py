"""The audit log's events (audit.k8s.io/v1, Metadata level) and its rotation by size."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from apiserver.audit import AuditLog, Record, backup_name, backups, event
from apiserver.authtypes import Attributes, UserInfo

ALICE = UserInfo("alice", ("dev", "system:authenticated"))
ADMIN = UserInfo("kubernetes-admin", ("system:masters", "system:authenticated"))


def _record(log: AuditLog, **kw: object) -> None:
    attrs = Attributes(ALICE, "get", resource="pods", namespace="default", name="web")
    args: dict[str, object] = dict(
        user=ALICE,
        impersonated_user=None,
        verb="get",
        attributes=attrs,
        request_uri="/api/v1/namespaces/default/pods/web",
        code=200,
        received=1_700_000_000.0,
        finished=1_700_000_000.25,
        source_ip="127.0.0.1",
        user_agent="kubectl/v1.32.0",
        decision_reason="",
    )
    args.update(kw)
    log.record(Record(**args))  # type: ignore[arg-type]


def test_a_resource_request_becomes_a_metadata_event() -> None:
    attrs = Attributes(
        ADMIN, "create", api_group="apps", api_version="v1", resource="deployments", namespace="ns1"
    )
    ev = event(
        Record(
            user=ADMIN,
            impersonated_user=ALICE,
            verb="create",
            attributes=attrs,
            request_uri="/apis/apps/v1/namespaces/ns1/deployments?fieldManager=kubectl",
            code=403,
            received=datetime(2026, 12, 3, 14, 0, 0, 5, tzinfo=UTC),
            finished=datetime(2026, 12, 3, 14, 0, 1, 0, tzinfo=UTC),
            source_ip="10.0.0.7",
            user_agent="kubectl/v1.32.0",
            decision="forbid",
            decision_reason='RBAC: no rule allows "create"',
        )
    )
    assert ev["apiVersion"] == "audit.k8s.io/v1" and ev["kind"] == "Event"
    assert (ev["level"], ev["stage"], ev["verb"]) == ("Metadata", "ResponseComplete", "create")
    assert ev["user"] == {
        "username": "kubernetes-admin",
        "groups": ["system:masters", "system:authenticated"],
    }
    assert ev["impersonatedUser"]["username"] == "alice"
    assert ev["objectRef"] == {
        "resource": "deployments",
        "namespace": "ns1",
        "apiGroup": "apps",
        "apiVersion": "v1",
    }
    assert ev["responseStatus"] == {"metadata": {}, "code": 403, "status": "Failure"}
    assert ev["requestReceivedTimestamp"] == "2026-12-03T14:00:00.000005Z"
    assert ev["stageTimestamp"] == "2026-12-03T14:00:01.000000Z"
    assert ev["sourceIPs"] == ["10.0.0.7"]
    assert ev["annotations"] == {
        "authorization.k8s.io/decision": "forbid",
        "authorization.k8s.io/reason": 'RBAC: no rule allows "create"',
    }
    assert "requestObject" not in ev and "responseObject" not in ev


def test_a_non_resource_request_has_no_object_ref() -> None:
    attrs = Attributes(UserInfo("system:anonymous"), "get", resource_request=False, path="/healthz")
    ev = event(
        Record(
            user=attrs.user,
            impersonated_user=None,
            verb="get",
            attributes=attrs,
            request_uri="/healthz",
            code=200,
            received=0.0,
            finished=0.0,
            source_ip="",
            user_agent="",
        )
    )
    assert "objectRef" not in ev and "impersonatedUser" not in ev and "sourceIPs" not in ev
    assert ev["responseStatus"] == {"metadata": {}, "code": 200}
    assert ev["annotations"] == {"authorization.k8s.io/decision": "allow"}


def test_events_are_written_as_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(str(path))
    for i in range(3):
        _record(log, code=200 + i)
    log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["responseStatus"]["code"] for e in lines] == [200, 201, 202]
    assert len({e["auditID"] for e in lines}) == 3
    assert lines[0]["objectRef"] == {"resource": "pods", "namespace": "default", "name": "web"}
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_file_is_rotated_by_size_and_old_backups_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(str(path), max_size_mb=1, max_backups=2)
    long_uri = "/api/v1/namespaces/default/configmaps?" + "x" * 5000
    for _ in range(1000):  # ~5.5 MB: five rotations at 1 MB
        _record(log, request_uri=long_uri)
    log.close()
    kept = backups(path)
    assert len(kept) == 2
    for f in [path, *kept]:
        assert f.stat().st_size <= 1024 * 1024
        for line in f.read_text().splitlines():
            assert json.loads(line)["requestURI"] == long_uri
    total = sum(len(f.read_text().splitlines()) for f in [path, *kept])
    assert 0 < total < 1000  # the oldest lines went with the removed backups


def test_flush_waits_for_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "a" / "audit.log"
    log = AuditLog(str(path))
    _record(log)
    log.flush()
    assert len(path.read_text().splitlines()) == 1
    log.close()


def test_backup_names_follow_kubernetes() -> None:
    when = datetime(2026, 12, 3, 14, 40, 0, 123456, tzinfo=UTC)
    assert backup_name(Path("/x/audit.log"), when) == Path("/x/audit-2026-12-03T14-40-00.123.log")
