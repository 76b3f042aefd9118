"""The audit log: one ``audit.k8s.io/v1`` ``Event`` per request at the Metadata level, as JSON lines.

Kubernetes' log backend with a Metadata-level policy for everything: who (``user``,
``impersonatedUser``, ``sourceIPs``, ``userAgent``), what (``verb``, ``requestURI``, ``objectRef``),
the answer (``responseStatus.code``), when (``requestReceivedTimestamp``, ``stageTimestamp``; their
difference is the latency) and why it was allowed or refused (the ``authorization.k8s.io/decision``
and ``authorization.k8s.io/reason`` annotations).  Request and response bodies are never logged.
Only the ``ResponseComplete`` stage is written; a streamed response (a watch, a followed log) is
recorded when the pipeline hands it over, that is when it starts.

Writing happens off the request path: :meth:`AuditLog.record` puts the request's facts on a queue
and returns; a thread turns them into JSON and appends them to the file, which is rotated by size
as Kubernetes' ``--audit-log-maxsize``/``--audit-log-maxbackup`` do (the full file is renamed
``NAME-<timestamp>.EXT`` and only the newest ``max_backups`` renamed files are kept; 0 keeps all).

The request pipeline (``apiserver.app``) calls, once the response is complete::

    audit.record(audit.Record(
        user=ctx.user,                    # the authenticated UserInfo
        impersonated_user=impersonated,   # the UserInfo acted as with --as, else None
        verb=attrs.verb,                  # the authorizer's verb (list, watch, get, create ...)
        attributes=attrs,                 # authtypes.Attributes (objectRef comes from it), or None
        request_uri=str(request.url.path) + ("?" + query if query else ""),
        code=response.status_code,
        received=t0, finished=time.time(),  # epoch seconds (floats) or aware datetimes
        source_ip=client_host, user_agent=request.headers.get("user-agent", ""),
        decision="allow",                 # or "forbid" for an authorization denial
        decision_reason=decision.reason,
        annotations=admission.take_audit_annotations(),  # e.g. Pod Security's audit mode
    ))

``record`` never raises and never blocks: when the writer falls more than ``QUEUE_SIZE`` events
behind, further events are dropped and counted (:attr:`AuditLog.dropped`), as Kubernetes' batch
backend does under overload.  ``--audit-log-path -`` writes to standard output.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from .authtypes import Attributes, UserInfo

log = logging.getLogger(__name__)

QUEUE_SIZE = 100_000
_STOP = object()


def timestamp(t: float | datetime) -> str:
    """Kubernetes' ``MicroTime`` form: ``2006-01-02T15:04:05.000000Z``."""
    if not isinstance(t, datetime):
        t = datetime.fromtimestamp(t, UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def user_json(user: UserInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"username": user.name}
    if user.uid:
        out["uid"] = user.uid
    if user.groups:
        out["groups"] = list(user.groups)
    if user.extra:
        out["extra"] = user.extra_dict()
    return out


def object_ref(attrs: Attributes | None) -> dict[str, str] | None:
    """``objectRef`` of a resource request (None for /healthz, /api and other non-resource paths)."""
    if attrs is None or not attrs.resource_request or not attrs.resource:
        return None
    ref = {"resource": attrs.resource}
    if attrs.namespace:
        ref["namespace"] = attrs.namespace
    if attrs.name:
        ref["name"] = attrs.name
    if attrs.api_group:
        ref["apiGroup"] = attrs.api_group
    if attrs.api_version:
        ref["apiVersion"] = attrs.api_version
    if attrs.subresource:
        ref["subresource"] = attrs.subresource
    return ref


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """The facts of one request that its audit event is made of (see the module's docstring).

    ``annotations``: more audit annotations for the event (admission's, such as Pod Security's
    ``pod-security.kubernetes.io/audit-violations``)."""

    user: UserInfo
    impersonated_user: UserInfo | None
    verb: str
    attributes: Attributes | None
    request_uri: str
    code: int
    received: float | datetime
    finished: float | datetime
    source_ip: str
    user_agent: str
    decision: str = "allow"
    decision_reason: str = ""
    annotations: dict[str, str] | None = None
    audit_id: str | None = None


def event(rec: Record) -> dict[str, Any]:
    """One audit.k8s.io/v1 Event (Metadata level, stage ResponseComplete)."""
    ev: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": rec.audit_id or str(uuid.uuid4()),
        "stage": "ResponseComplete",
        "requestURI": rec.request_uri,
        "verb": rec.verb,
        "user": user_json(rec.user),
    }
    if rec.impersonated_user is not None:
        ev["impersonatedUser"] = user_json(rec.impersonated_user)
    if rec.source_ip:
        ev["sourceIPs"] = [rec.source_ip]
    if rec.user_agent:
        ev["userAgent"] = rec.user_agent
    ref = object_ref(rec.attributes)
    if ref is not None:
        ev["objectRef"] = ref
    status: dict[str, Any] = {"metadata": {}, "code": int(rec.code)}
    if rec.code >= 400:
        status["status"] = "Failure"
    ev["responseStatus"] = status
    ev["requestReceivedTimestamp"] = timestamp(rec.received)
    ev["stageTimestamp"] = timestamp(rec.finished)
    notes = dict(rec.annotations or {})  # admission's, e.g. pod-security.kubernetes.io/audit-violations
    notes["authorization.k8s.io/decision"] = rec.decision
    if rec.decision_reason:
        notes["authorization.k8s.io/reason"] = rec.decision_reason
    ev["annotations"] = notes
    return ev


def backup_name(path: Path, when: datetime) -> Path:
    """``audit.log`` -> ``audit-2026-12-03T14-40-00.123.log`` (Kubernetes' rotation names)."""
    stamp = when.strftime("%Y-%m-%dT%H-%M-%S.") + f"{when.microsecond // 1000:03d}"
    return path.with_name(f"{path.stem}-{stamp}{path.suffix}")


def backups(path: Path) -> list[Path]:
    """The rotated files of ``path``, oldest first."""
    prefix, suffix = f"{path.stem}-", path.suffix
    found = [
        p
        for p in path.parent.glob(f"{prefix}*{suffix}")
        if p != path and p.name[len(prefix) : len(p.name) - len(suffix) or None][:4].isdigit()
    ]
    return sorted(found, key=lambda p: p.name)


class AuditLog:
    """Appends audit events to ``path`` (``"-"``: standard output) from a writer thread.

    ``max_size_mb``: rotate once the file would grow past this many megabytes (0: never);
    ``max_backups``: how many rotated files to keep (0: keep them all).
    """

    def __init__(self, path: str, max_size_mb: int = 100, max_backups: int = 3) -> None:
        self.path = path
        self.max_bytes = max(0, int(max_size_mb)) * 1024 * 1024
        self.max_backups = max(0, int(max_backups))
        self.dropped = 0
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_SIZE)
        self._file: IO[bytes] | None = None
        self._size = 0
        if path != "-":
            p = Path(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            self._open()
        self._thread = threading.Thread(target=self._run, name="audit-log", daemon=True)
        self._thread.start()

    # --- the request side ------------------------------------------------------------------------
    def record(self, rec: Record) -> None:
        """Queue one request's event; returns at once (see the module's docstring)."""
        try:
            self._queue.put_nowait(rec)
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 1000) or self.dropped % 100_000 == 0:
                log.warning("audit log writer is behind: %d events dropped", self.dropped)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every event recorded so far is written."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer and close the file."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    # --- the writer thread -----------------------------------------------------------------------
    def _open(self) -> None:
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open by the writer thread
        os.chmod(self.path, 0o600)
        self._size = self._file.tell()

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        path = Path(self.path)
        target = backup_name(path, datetime.now(UTC))
        while target.exists():  # two rotations within a millisecond
            target = target.with_name(target.stem + "0" + target.suffix)
        os.replace(path, target)
        if self.max_backups:
            for old in backups(path)[: -self.max_backups]:
                old.unlink(missing_ok=True)
        self._open()

    def _write(self, lines: list[bytes]) -> None:
        if self.path == "-":
            sys.stdout.buffer.write(b"".join(lines))
            sys.stdout.buffer.flush()
            return
        assert self._file is not None
        for line in lines:
            if self.max_bytes and self._size and self._size + len(line) > self.max_bytes:
                self._file.flush()
                self._rotate()
            self._file.write(line)
            self._size += len(line)
        self._file.flush()

    def _run(self) -> None:
        stop = False
        while not stop:
            items = [self._queue.get()]
            while len(items) < 1000:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines: list[bytes] = []
            markers: list[threading.Event] = []
            for item in items:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    try:
                        lines.append(orjson.dumps(event(item)) + b"\n")
                    except Exception:
                        log.exception("audit event could not be encoded")
            if lines:
                try:
                    self._write(lines)
                except OSError as e:
                    log.error("audit log %s: %s", self.path, e)
            for m in markers:
                m.set()
        if self._file is not None:
            self._file.close()


def add_flags(p: argparse.ArgumentParser) -> None:
    """minik-apiserver's --audit-log-* flags (Kubernetes' names and defaults, maxbackup 3)."""
    p.add_argument(
        "--audit-log-path",
        default=None,
        help='write audit events (Metadata level, JSON lines) to this file; "-" = standard output; unset = off',
    )
    p.add_argument(
        "--audit-log-maxsize",
        type=int,
        default=100,
        help="megabytes an audit log file reaches before rotation",
    )
    p.add_argument(
        "--audit-log-maxbackup", type=int, default=3, help="rotated audit log files to keep (0 = all)"
    )


def from_args(args: argparse.Namespace) -> AuditLog | None:
    path = getattr(args, "audit_log_path", None)
    if not path:
        return None
    return AuditLog(path, args.audit_log_maxsize, args.audit_log_maxbackup)


__all__ = ["AuditLog", "add_flags", "event", "from_args"]
