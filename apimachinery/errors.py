"""API errors as Kubernetes ``metav1.Status`` objects.

Every failure the API server reports is a :class:`StatusError`; its :meth:`StatusError.status`
is the JSON body.  Clients turn such bodies back into the same exception with
:func:`from_status`, so code on both sides speaks one vocabulary.
"""

from __future__ import annotations

from typing import Any


class StatusError(Exception):
    code = 500
    reason = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        reason: str | None = None,
        name: str | None = None,
        group: str | None = None,
        kind: str | None = None,
        causes: list[dict[str, str]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if reason is not None:
            self.reason = reason
        self.name = name
        self.group = group
        self.kind = kind
        self.causes = causes or []
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details: dict[str, Any] = {}
        if self.name is not None:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind is not None:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = self.causes
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            body["details"] = details
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code} {self.reason}: {self.message})"


class BadRequest(StatusError):
    code = 400
    reason = "BadRequest"


class Unauthorized(StatusError):
    code = 401
    reason = "Unauthorized"


class Forbidden(StatusError):
    code = 403
    reason = "Forbidden"


class NotFound(StatusError):
    code = 404
    reason = "NotFound"


class MethodNotAllowed(StatusError):
    code = 405
    reason = "MethodNotAllowed"


class NotAcceptable(StatusError):
    code = 406
    reason = "NotAcceptable"


class AlreadyExists(StatusError):
    code = 409
    reason = "AlreadyExists"


class Conflict(StatusError):
    code = 409
    reason = "Conflict"


class Gone(StatusError):
    code = 410
    reason = "Expired"


class RequestEntityTooLarge(StatusError):
    code = 413
    reason = "RequestEntityTooLarge"


class UnsupportedMediaType(StatusError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(StatusError):
    code = 422
    reason = "Invalid"


class TooManyRequests(StatusError):
    code = 429
    reason = "TooManyRequests"


class InternalError(StatusError):
    code = 500
    reason = "InternalError"


class ServiceUnavailable(StatusError):
    code = 503
    reason = "ServiceUnavailable"


class Timeout(StatusError):
    code = 504
    reason = "Timeout"


def cause(field: str, message: str, reason: str = "FieldValueInvalid") -> dict[str, str]:
    """One entry of ``details.causes``: the field path, what is wrong, and a cause type."""
    return {"reason": reason, "message": message, "field": field}


def invalid(kind: str, name: str, causes: list[dict[str, str]], group: str = "") -> Invalid:
    """The 422 Kubernetes returns for a failed validation, with its summary message."""
    summary = ", ".join(f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes)
    if len(causes) > 1:
        summary = f"[{summary}]"
    return Invalid(f'{kind} "{name}" is invalid: {summary}', name=name, group=group, kind=kind, causes=causes)


def not_found(plural: str, name: str, group: str = "") -> NotFound:
    qualified = f"{plural}.{group}" if group else plural
    return NotFound(f'{qualified} "{name}" not found', name=name, group=group, kind=plural)


def already_exists(plural: str, name: str, group: str = "") -> AlreadyExists:
    qualified = f"{plural}.{group}" if group else plural
    return AlreadyExists(f'{qualified} "{name}" already exists', name=name, group=group, kind=plural)


def conflict(plural: str, name: str, group: str = "", why: str = "") -> Conflict:
    qualified = f"{plural}.{group}" if group else plural
    msg = why or "the object has been modified; please apply your changes to the latest version and try again"
    return Conflict(
        f'Operation cannot be fulfilled on {qualified} "{name}": {msg}', name=name, group=group, kind=plural
    )


_BY_REASON: dict[str, type[StatusError]] = {
    cls.reason: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        NotAcceptable,
        AlreadyExists,
        Conflict,
        Gone,
        RequestEntityTooLarge,
        UnsupportedMediaType,
        Invalid,
        TooManyRequests,
        InternalError,
        ServiceUnavailable,
        Timeout,
    )
}
_BY_CODE: dict[int, type[StatusError]] = {}
for _cls in _BY_REASON.values():
    _BY_CODE.setdefault(_cls.code, _cls)


def from_status(body: dict[str, Any], http_code: int | None = None) -> StatusError:
    """Rebuild the typed exception from a ``Status`` body (as a client receives it)."""
    reason = str(body.get("reason") or "")
    code = int(body.get("code") or http_code or 500)
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code) or StatusError
    details = body.get("details") or {}
    return cls(
        str(body.get("message") or reason or f"HTTP {code}"),
        code=code,
        reason=reason or None,
        name=details.get("name"),
        group=details.get("group"),
        kind=details.get("kind"),
        causes=details.get("causes"),
        retry_after=details.get("retryAfterSeconds"),
    )
