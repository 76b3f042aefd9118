"""What a request asks to do, from its method, path and query alone -- Kubernetes'
``RequestInfoFactory`` (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go).

Authorization runs before routing, so this parser does not look the resource up: an unknown
resource is authorized like any other and only then answered 404.

Resource paths::

    /api/{version}/{resource}[/{name}[/{subresource}...]]
    /api/{version}/namespaces/{namespace}/{resource}[/{name}[/{subresource}...]]
    /apis/{group}/{version}/...       (the same below the version)
    /api/v1/watch/...                 (the deprecated watch prefix: verb watch)

Everything else (``/healthz``, ``/version``, ``/api``, ``/apis/{group}``, ``/openapi/v3`` ...) is a
non-resource request whose verb is the lower-case HTTP method.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote

from .authtypes import Attributes, UserInfo

_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
# namespaces/{name}/status and /finalize are subresources of the namespace, not resources in it
_NAMESPACE_SUBRESOURCES = frozenset(("status", "finalize"))
_TRUE = ("true", "1")


def _query(query_string: str | bytes) -> dict[str, list[str]]:
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    return parse_qs(query_string) if query_string else {}


def _field_selector_name(selector: str) -> str:
    """The name a field selector pins with ``metadata.name=NAME`` (or ``==``), else ""."""
    for term in selector.split(","):
        term = term.strip()
        for op in ("==", "="):
            if op in term:
                key, _, value = term.partition(op)
                if key.strip() == "metadata.name" and not value.startswith("="):
                    value = value.strip()
                    if value and "/" not in value and value not in (".", ".."):
                        return value
                break
    return ""


def request_attributes(user: UserInfo, method: str, path: str, query_string: str | bytes = b"") -> Attributes:
    """The :class:`Attributes` of ``method path?query`` made by ``user``."""
    parts = [p for p in path.split("/") if p]
    # /api/v1/x (3) and /apis/g/v1/x (4) are the shortest resource paths
    if not parts or parts[0] not in ("api", "apis") or len(parts) < (3 if parts[0] == "api" else 4):
        return Attributes(user=user, verb=method.lower(), resource_request=False, path=path or "/")
    verb = _METHOD_VERBS.get(method, "")
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        group, version, rest = parts[1], parts[2], parts[3:]
    if rest[0] == "watch":
        # /api/v1/watch/namespaces/ns/pods: the deprecated watch path
        if verb == "get":
            verb = "watch"
        rest = rest[1:]
        if not rest:
            return Attributes(user=user, verb=method.lower(), resource_request=False, path=path)
    namespace = ""
    if rest[0] == "namespaces":
        if len(rest) > 1:
            namespace = unquote(rest[1])
            if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
                rest = rest[2:]
    resource = rest[0]
    name = unquote(rest[1]) if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if not name and verb in ("get", "watch"):
        q = _query(query_string)
        if verb == "get":
            verb = "watch" if (q.get("watch") or [""])[0].lower() in _TRUE else "list"
        selector = (q.get("fieldSelector") or [""])[0]
        if selector:
            name = _field_selector_name(selector)
    elif not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(
        user=user,
        verb=verb,
        resource_request=True,
        api_group=group,
        api_version=version,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
        path=path,
    )
