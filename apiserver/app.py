"""The HTTP layer: Kubernetes' REST paths, verbs, content negotiation and error bodies.

Every request goes through :func:`dispatch`, which parses the path into (resource, namespace, name,
subresource) and calls one handler per verb.  Every failure leaves as a ``metav1.Status`` -- a
:class:`~apimachinery.errors.StatusError` from the handlers, a 503 when etcd is away, and (for a
genuine bug only) a 500 ``InternalError`` with the traceback in the server's log, never the client's.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.websockets import WebSocket

from apimachinery import errors, printers, selectors
from apimachinery.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from apimachinery.metrics import exposition
from apimachinery.resources import TOKEN_REQUEST, ResourceInfo, by_plural
from apimachinery.timefmt import rfc3339
from apiserver import managedfields, openapi, protobuf, typecheck

from . import (
    aggregator,
    authn,
    autoscaling_v1,
    crd,
    crdschema,
    discovery,
    eviction,
    kubernetes_service,
    nodeproxy,
    portforward_spdy,
    priority,
    strategy,
    tracestore,
    watchcache,
)
from .admission import take_audit_annotations, with_warnings
from .audit import Record as AuditRecord
from .authn import UNSECURED, Security
from .authtypes import Attributes, UserInfo, current_user
from .authz import forbidden_message
from .etcd import EtcdUnavailable
from .patching import apply_patch, patch_type_of
from .registry import Registry, Storage, unavailable
from .requestinfo import request_attributes

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024
JSON = "application/json"
_EMPTY_META: dict[str, Any] = {}


# --- responses ------------------------------------------------------------------------------------
def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def status_response(e: errors.StatusError) -> Response:
    headers = {"Retry-After": str(e.retry_after)} if e.retry_after else None
    return json_response(e.status(), e.code, headers)


def success_status(info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    details = {"name": meta.get("name"), "kind": info.plural, "uid": meta.get("uid")}
    if info.group:
        details["group"] = info.group
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


@dataclass
class Output:
    """What the client asked to get back (from its Accept header)."""

    form: str = "json"  # json | yaml | table | partial
    version: str = "v1"  # of meta.k8s.io, for table/partial


def negotiate(accept: str | None) -> Output:
    if not accept:
        return Output()
    for media_range in accept.split(","):
        parts = [p.strip() for p in media_range.split(";")]
        mtype = parts[0].lower()
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if mtype not in (JSON, "application/yaml", "*/*", "application/*"):
            continue
        as_ = params.get("as")
        if as_:
            if params.get("g") != "meta.k8s.io" or params.get("v") not in ("v1", "v1beta1"):
                continue
            if as_ == "Table":
                return Output("table", params["v"])
            if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
                return Output("partial", params["v"])
            continue
        return Output("yaml" if mtype == "application/yaml" else "json")
    raise errors.NotAcceptable(
        "only the following media types are accepted: application/json, application/yaml, "
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    )


def render(out: Output, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if out.form == "yaml":
        return Response(
            yaml.safe_dump(body, sort_keys=False),
            status_code=status,
            media_type="application/yaml",
            headers=headers,
        )
    return json_response(body, status, headers)


def partial(obj: dict[str, Any], version: str) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": obj.get("metadata") or {},
    }


# --- request parsing ------------------------------------------------------------------------------
@dataclass
class Target:
    info: ResourceInfo
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_resource_path(parts: list[str]) -> Target:
    """``["api","v1","namespaces","ns","pods","x","status"]`` -> Target(pods, ns, x, status)."""
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        group, version, rest = parts[1], parts[2], parts[3:]
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    info = by_plural(group, version, rest[0])
    if info is None or len(rest) > 3:
        raise errors.NotFound("the server could not find the requested resource")
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if namespace is not None and not info.namespaced:
        raise errors.NotFound("the server could not find the requested resource")
    if info.namespaced and namespace is None and name is not None:
        raise errors.NotFound("the server could not find the requested resource")
    if sub is not None and sub not in info.subresources:
        raise errors.NotFound("the server could not find the requested resource")
    return Target(info, namespace, name, sub)


async def read_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY:
        raise errors.RequestEntityTooLarge("the request body is too large: limit is 3145728 bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise errors.RequestEntityTooLarge("the request body is too large: limit is 3145728 bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_payload(request: Request) -> tuple[bytes, str]:
    """The request body and its content type; a protobuf body is turned into JSON first."""
    raw = await read_body(request)
    ctype = request.headers.get("content-type") or JSON
    if protobuf.is_protobuf(ctype) and raw:
        return orjson.dumps(protobuf.decode(raw)), JSON
    return raw, ctype


def decode_body(raw: bytes, content_type: str) -> Any:
    ctype = content_type.split(";")[0].strip().lower()
    if not raw.strip():
        raise errors.BadRequest("the request body is empty")
    try:
        if ctype.endswith("yaml"):
            return yaml.safe_load(raw)
        return orjson.loads(raw)
    except (orjson.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as e:
        kind = "yaml" if ctype.endswith("yaml") else "json"
        raise errors.BadRequest(
            f"the body of the request could not be decoded: {kind} parse error: {e}"
        ) from None


def decode_object(
    raw: bytes, content_type: str, info: ResourceInfo, expected_kind: str | None = None
) -> dict:
    ctype = content_type.split(";")[0].strip().lower() or JSON
    if ctype not in (JSON, "application/yaml", "application/x-yaml", "text/yaml", "*/*"):
        raise errors.UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types include: {JSON}, application/yaml"
        )
    obj = decode_body(raw, ctype)
    if not isinstance(obj, dict):
        raise errors.BadRequest("the body of the request must be a JSON or YAML object")
    kind = expected_kind or info.kind
    api_version = info.api_version
    if kind in ("Scale",):
        api_version = "autoscaling/v1"
    if obj.get("kind") not in (None, "", kind) or obj.get("apiVersion") not in (None, "", api_version):
        if obj.get("kind") not in (None, "", kind):
            raise errors.BadRequest(
                f"the kind in the data ({obj.get('kind')}) does not match the expected kind ({kind})"
            )
        raise errors.BadRequest(
            f"the API version in the data ({obj.get('apiVersion')}) does not match the expected API version "
            f"({api_version})"
        )
    if "metadata" in obj and not isinstance(obj["metadata"], dict):
        raise errors.BadRequest("metadata: must be an object")
    return obj


def query_bool(q: Any, name: str) -> bool:
    return str(q.get(name, "")).lower() in ("1", "true", "yes")


def query_int(q: Any, name: str) -> int | None:
    value = q.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.BadRequest(f'invalid value for {name}: "{value}"') from None


def dry_run(q: Any) -> bool:
    values = q.getlist("dryRun")
    for v in values:
        if v != "All":
            raise errors.BadRequest(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(values)


def delete_dry_run(q: Any, opts: dict[str, Any]) -> bool:
    """A delete is a dry run when the query or the body's DeleteOptions say ``dryRun: [All]``
    (kubectl sends it in the body)."""
    values = opts.get("dryRun") or []
    if not isinstance(values, list):
        raise errors.BadRequest("dryRun: must be a list of strings")
    for v in values:
        if v != "All":
            raise errors.BadRequest(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return dry_run(q) or bool(values)


def field_validation(q: Any) -> str:
    value = q.get("fieldValidation") or "Warn"
    if value not in ("Strict", "Warn", "Ignore"):
        raise errors.BadRequest(
            f'fieldValidation: Unsupported value: "{value}": supported values: "Ignore", "Strict", "Warn"'
        )
    return value


def check_fields(
    info: ResourceInfo,
    raw: bytes,
    obj: dict[str, Any],
    content_type: str,
    mode: str,
    headers: dict[str, str],
    body_is_object: bool = True,
) -> None:
    """Unknown and duplicate fields: 400 under Strict, ``Warning`` headers under Warn; then pruned.

    ``body_is_object`` says the request body is the object itself (create, update) rather than a
    patch of it, which lets one walk of the body find both kinds of problem.
    A value of the wrong JSON type for the schema is a 400 first, whatever the mode.
    """
    typecheck.check(info, obj)
    if mode != "Ignore":
        problems = openapi.field_validation_messages(info, raw, None if body_is_object else obj, content_type)
        if problems:
            if mode == "Strict":
                raise openapi.strict_decoding_error(info, problems)
            headers["Warning"] = ", ".join(openapi.warning_header(p) for p in problems)
    openapi.prune_unknown_fields(info, obj)


def make_match(info: ResourceInfo, q: Any) -> Any:
    label = q.get("labelSelector") or ""
    field = q.get("fieldSelector") or ""
    ls = selectors.parse_label_selector(label) if label else None
    fs = selectors.parse_field_selector(field, info.kind) if field else None
    if ls is None and fs is None:
        return None

    def match(obj: dict[str, Any]) -> bool:
        if ls is not None and not ls.matches((obj.get("metadata") or {}).get("labels") or {}):
            return False
        return fs is None or fs.matches(obj)

    return match


def _forbidden(field: str, message: str) -> dict[str, str]:
    return errors.cause(field, f"Forbidden: {message}", "FieldValueForbidden")


def _not_supported(field: str, value: str, supported: list[str]) -> dict[str, str]:
    quoted = ", ".join(f'"{v}"' for v in supported)
    return errors.cause(
        field, f'Unsupported value: "{value}": supported values: {quoted}', "FieldValueNotSupported"
    )


def list_options(q: Any, watch: bool) -> bool | None:
    """Check ``sendInitialEvents`` and ``resourceVersionMatch`` as Kubernetes' ValidateListOptions
    does (422 ``ListOptions.meta.k8s.io "" is invalid``); ``sendInitialEvents`` (None: not given)."""
    send = None if q.get("sendInitialEvents") is None else query_bool(q, "sendInitialEvents")
    match = q.get("resourceVersionMatch") or ""
    rv = q.get("resourceVersion") or ""
    cont = q.get("continue") or ""
    causes: list[dict[str, str]] = []
    if watch:
        if send is not None and match != "NotOlderThan":
            causes.append(
                _forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                )
            )
        if match:
            if send is None:
                causes.append(
                    _forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                    )
                )
            if match != "NotOlderThan":
                causes.append(_not_supported("resourceVersionMatch", match, ["NotOlderThan"]))
            if cont:
                causes.append(
                    _forbidden(
                        "resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"
                    )
                )
    else:
        if match:
            if not rv:
                causes.append(
                    _forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    )
                )
            if cont:
                causes.append(
                    _forbidden(
                        "resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"
                    )
                )
            if match not in ("Exact", "NotOlderThan"):
                causes.append(_not_supported("resourceVersionMatch", match, ["Exact", "NotOlderThan", ""]))
            if match == "Exact" and rv == "0":
                causes.append(
                    _forbidden(
                        "resourceVersionMatch",
                        'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                    )
                )
        if send is not None:
            causes.append(_forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"))
    if causes:
        summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
        if len(causes) > 1:
            summary = f"[{summary}]"
        raise errors.Invalid(
            f'ListOptions.meta.k8s.io "" is invalid: {summary}',
            group="meta.k8s.io",
            kind="ListOptions",
            causes=causes,
        )
    return send


def parse_resource_version(rv: str) -> int:
    try:
        value = int(rv)
    except ValueError:
        raise errors.BadRequest(f'invalid resource version "{rv}"') from None
    if value < 0:
        raise errors.BadRequest(f'invalid resource version "{rv}"')
    return value


def delete_options(q: Any, body: Any) -> dict[str, Any]:
    opts: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    grace = query_int(q, "gracePeriodSeconds")
    if grace is not None:
        opts["gracePeriodSeconds"] = grace
    if q.get("propagationPolicy"):
        opts["propagationPolicy"] = q.get("propagationPolicy")
    if q.get("orphanDependents"):
        opts["orphanDependents"] = query_bool(q, "orphanDependents")
    if "gracePeriodSeconds" in opts and opts["gracePeriodSeconds"] is not None:
        try:
            opts["gracePeriodSeconds"] = int(opts["gracePeriodSeconds"])
        except (TypeError, ValueError):
            raise errors.BadRequest("gracePeriodSeconds must be an integer") from None
    return opts


# --- the server -----------------------------------------------------------------------------------
def forbidden(attrs: Attributes, reason: str = "") -> errors.Forbidden:
    """Kubernetes' 403 for an authorization denial: details name the resource (without the
    subresource), its group and the object's name."""
    return errors.Forbidden(
        forbidden_message(attrs, reason),
        name=attrs.name or None,
        group=attrs.api_group or None,
        kind=attrs.resource or None,
    )


ATTRIBUTES_CACHE_SIZE = 8192
NOBODY = UserInfo("")


class Admitted:
    """Who a request is and what it asks: filled in by :meth:`APIServer.admit` as far as it got,
    for the audit log."""

    __slots__ = ("user", "impersonated", "attributes", "decision", "reason")

    def __init__(self) -> None:
        self.user: UserInfo = UNSECURED
        self.impersonated: UserInfo | None = None
        self.attributes: Attributes | None = None
        self.decision = "allow"
        self.reason = ""


class APIServer:
    def __init__(
        self,
        storage: Storage,
        advertise: str = "127.0.0.1:6443",
        security: Security | None = None,
        audit_log: Any = None,
    ) -> None:
        self.storage = storage
        self.advertise = advertise
        self.bookmark_interval = 10.0
        # None (an app made in-process, without a serving protocol): every request is UNSECURED
        self.security = security
        self.audit = audit_log
        self._attributes: dict[tuple[str, str, bytes, int], Attributes] = {}
        self.traces: tracestore.TraceStore | None = None  # minik trace (apiserver/tracestore.py)
        self.metrics: Any = None  # apiserver.metrics.RequestMetrics; None: --disable-metrics
        self.aggregator: aggregator.Aggregator | None = None  # APIServices (apiserver/aggregator.py)

    # ---- entry point
    async def dispatch(self, request: Request) -> Response:
        scope = request.scope
        received = time.time() if self.audit is not None else 0.0
        who = Admitted()
        try:
            await self.admit(scope, request.method, who)
            token = current_user.set(who.impersonated or who.user)
            try:
                response = with_warnings(await self._dispatch(request))  # admission warnings
            finally:
                current_user.reset(token)
        except errors.StatusError as e:
            response = status_response(e)
        except EtcdUnavailable as e:
            response = status_response(unavailable(e))
        except TimeoutError:
            response = status_response(errors.Timeout("the server was not able to answer in time"))
        except Exception:
            log.exception("internal error serving %s %s", request.method, request.url.path)
            response = status_response(
                errors.InternalError("an internal error occurred; see the API server's log")
            )
        if self.audit is not None:
            # recorded once the response is sent (a watch: when it ends), see KubernetesAPI
            scope["minik.audit"] = (who, received)
        return response

    async def admit(self, scope: Any, method: str, who: Admitted) -> None:
        """Authenticate, impersonate, take the request's attributes and authorize them: raises the
        401, 403 (or 400 for a malformed impersonation) that ends the request."""
        cert_user = scope.get("minik.user")
        security = self.security
        if security is None or cert_user is UNSECURED:
            return
        who.user = NOBODY  # until authenticated: what the audit log names for a 401
        who.decision = ""  # no authorization decision yet
        authorization = None
        impersonating = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name[:12] == b"impersonate-":
                impersonating = True
        if cert_user is not None:  # a verified client certificate comes first, as in Kubernetes
            user = cert_user
        else:
            user = await security.authenticator.authenticate(None, authorization)
        who.user = user
        if impersonating:
            who.impersonated = user = security.impersonate(user, scope["headers"], who)
        # the same user asking the same thing again (a client polling, a controller's gets) reuses
        # its Attributes; the entry is checked to be this very user object, never a look-alike
        key = (method, scope["path"], scope["query_string"], id(user))
        attrs = self._attributes.get(key)
        if attrs is None or attrs.user is not user:
            attrs = request_attributes(user, method, scope["path"], scope["query_string"])
            if len(self._attributes) >= ATTRIBUTES_CACHE_SIZE:
                self._attributes.clear()
            self._attributes[key] = attrs
        who.attributes = attrs
        decision = security.authorizer.authorize(attrs)
        if not decision.allowed:
            who.decision = "forbid"
            who.reason = decision.reason
            raise forbidden(attrs, decision.reason)
        who.decision = "allow"
        who.reason = decision.reason

    def record(self, scope: Any, code: int, who: Admitted, received: float) -> None:
        """One audit event (Metadata level) for the request, written off the request path."""
        attrs = who.attributes
        if attrs is None:
            user = who.impersonated or who.user
            method = scope.get("method") or "POST"  # a WebSocket upgrade is a create
            attrs = request_attributes(user, method, scope["path"], scope["query_string"])
        query = scope.get("query_string") or b""
        client = scope.get("client")
        agent = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"user-agent"), "")
        self.audit.record(
            AuditRecord(
                user=who.user,
                impersonated_user=who.impersonated,
                verb=attrs.verb,
                attributes=attrs,
                request_uri=scope["path"] + ("?" + query.decode("latin-1") if query else ""),
                code=code,
                received=received,
                finished=time.time(),
                source_ip=client[0] if client else "",
                user_agent=agent,
                decision=who.decision,
                decision_reason=who.reason,
                annotations=take_audit_annotations(),  # admission's (Pod Security audit mode)
            )
        )

    async def _dispatch(self, request: Request) -> Response:
        path = request.url.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        method = request.method
        if not parts:
            return json_response(
                {"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]}
            )
        head = parts[0]
        if head in ("healthz", "livez", "readyz"):
            return await self.health(head, request)
        if head == "version":
            return json_response(discovery.version_info())
        if head == "debug" and path.startswith("/debug/minik/"):  # minik trace's span store
            return await tracestore.serve(self.traces, request, path)
        if head == "metrics" and len(parts) == 1 and self.metrics is not None:
            return Response(exposition(), media_type=METRICS_CONTENT_TYPE)
        tokens = self.security.tokens if self.security is not None else None
        if tokens is not None and path in ("/.well-known/openid-configuration", "/openid/v1/jwks"):
            doc = authn.openid_configuration(tokens) if head == ".well-known" else authn.jwks(tokens)
            ctype = JSON if head == ".well-known" else "application/jwk-set+json"
            return Response(orjson.dumps(doc), media_type=ctype)
        if head == "openapi":
            return self.openapi(parts)
        if head == "apis" and len(parts) >= 3 and self.aggregator is not None:
            apiservice = self.aggregator.lookup(parts[1], parts[2])
            if apiservice is not None:  # served elsewhere: proxied (or 503 when unavailable)
                return await self.aggregator.proxy(request, apiservice, current_user.get() or UNSECURED)
        if head in ("api", "apis") and len(parts) == 1:
            return self.discovery_root(request, head == "api")
        if head == "apis" and len(parts) == 2:
            api_group = discovery.api_group(parts[1])
            if api_group is None:
                raise errors.NotFound("the server could not find the requested resource")
            return json_response(api_group)
        if (head == "api" and len(parts) == 2) or (head == "apis" and len(parts) == 3):
            group, version = ("", parts[1]) if head == "api" else (parts[1], parts[2])
            rl = discovery.api_resource_list(group, version)
            if rl is None:
                raise errors.NotFound("the server could not find the requested resource")
            return json_response(rl)
        if (
            head not in ("api", "apis")
            or (head == "api" and len(parts) < 3)
            or (head == "apis" and len(parts) < 4)
        ):
            raise errors.NotFound("the server could not find the requested resource")
        if head == "apis" and parts[1] == "autoscaling" and parts[2] == "v1":  # a view of v2
            return await autoscaling_v1.serve(self.storage, request, parts)
        target = parse_resource_path(parts)
        return await self.resource(request, method, target)

    def discovery_root(self, request: Request, core: bool) -> Response:
        """``/api`` or ``/apis``: aggregated discovery (``apidiscovery.k8s.io/v2`` or ``v2beta1``)
        when the Accept header prefers it, else the plain ``APIVersions`` / ``APIGroupList``.
        The aggregated document carries an ``ETag``; a matching ``If-None-Match`` gets a 304."""
        version = discovery.aggregated_version(request.headers.get("accept"))
        if version is None:
            plain = discovery.api_versions(self.advertise) if core else discovery.api_group_list()
            return json_response(plain, headers={"Vary": "Accept"})
        body = orjson.dumps(discovery.aggregated_discovery(version, core))
        etag = '"' + hashlib.sha256(body).hexdigest()[:32].upper() + '"'
        headers = {"Vary": "Accept", "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=discovery.aggregated_content_type(version), headers=headers)

    async def health(self, which: str, request: Request) -> Response:
        if which == "livez":
            return Response("ok", media_type="text/plain")
        try:
            await self.storage.etcd.status()
        except EtcdUnavailable as e:
            return Response(
                f"[-]etcd failed: {e}\n{which} check failed", status_code=500, media_type="text/plain"
            )
        if which == "readyz" and not all(r.cache.ready.is_set() for r in self.storage.registries.values()):
            return Response(
                "[-]watch-cache not ready\nreadyz check failed", status_code=500, media_type="text/plain"
            )
        if "verbose" in request.query_params:
            return Response(f"[+]ping ok\n[+]etcd ok\n{which} check passed\n", media_type="text/plain")
        return Response("ok", media_type="text/plain")

    def openapi(self, parts: list[str]) -> Response:
        if len(parts) >= 2 and parts[1] == "v3":
            if len(parts) == 2:
                return json_response(openapi.openapi_v3_index())
            rest = parts[2:]
            if rest[0] == "api" and len(rest) == 2:
                doc = openapi.openapi_v3_document_bytes("", rest[1])
            elif rest[0] == "apis" and len(rest) == 3:
                doc = openapi.openapi_v3_document_bytes(rest[1], rest[2])
            else:
                doc = None
            if doc is not None:
                return Response(doc, media_type=JSON, headers={"Cache-Control": "public, immutable"})
        raise errors.NotFound("the server could not find the requested resource")

    # ---- resources
    async def resource(self, request: Request, method: str, t: Target) -> Response:
        info = t.info
        if "get" not in info.verbs and not info.custom:
            # the review kinds: answered, never stored
            return await self.review(request, method, t)
        if t.subresource == "token" and info.kind == "ServiceAccount":
            if method != "POST":
                raise errors.MethodNotAllowed(
                    "the server does not allow this method on the requested resource"
                )
            assert t.namespace is not None and t.name is not None
            raw, ctype = await read_payload(request)
            body = decode_object(raw, ctype, TOKEN_REQUEST)
            answer = await authn.token_request(self.security, t.namespace, t.name, body)
            return render(negotiate(request.headers.get("accept")), answer, 201)
        reg = self.storage.registry(info)
        q = request.query_params
        if t.name is None:
            if method == "GET":
                if query_bool(q, "watch"):
                    return await self.watch(request, reg, t)
                return await self.list(request, reg, t)
            if method == "POST":
                if not info.namespaced and t.namespace:
                    raise errors.NotFound("the server could not find the requested resource")
                return await self.create(request, reg, t)
            if method == "DELETE":
                return await self.delete_collection(request, reg, t)
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
        if t.subresource in ("scale",):
            return await self.scale(request, reg, t)
        if t.subresource == "binding":
            if method != "POST":
                raise errors.MethodNotAllowed(
                    "the server does not allow this method on the requested resource"
                )
            return await self.bind(request, reg, t)
        if t.subresource in (
            "log",
            "exec",
            "attach",
            "portforward",
            "proxy",
            "eviction",
            "ephemeralcontainers",
        ):
            if t.info.kind == "Pod" and t.subresource == "log" and method == "GET":
                assert t.namespace is not None and t.name is not None
                return await nodeproxy.pod_logs(self.storage, t.namespace, t.name, q)
            if t.info.kind == "Pod" and t.subresource == "eviction":  # apiserver/eviction.py
                if method != "POST":
                    raise errors.MethodNotAllowed(
                        "the server does not allow this method on the requested resource"
                    )
                assert t.namespace is not None and t.name is not None
                raw, ctype = await read_payload(request)
                evicted = await eviction.Evictor(self.storage).evict(
                    t.namespace, t.name, decode_body(raw, ctype), dry_run(q)
                )
                return json_response(evicted[1], evicted[0])
            if t.info.kind == "Pod" and t.subresource == "portforward" and method in ("GET", "POST"):
                # kubectl lands here after a refused WebSocket, retrying with "Upgrade: SPDY/3.1"
                assert t.namespace is not None and t.name is not None
                await portforward_spdy.refuse_plain_upgrade(self.storage, t.namespace, t.name)
            return await self.not_served(reg, t)
        if method == "GET":
            if query_bool(q, "watch"):
                raise errors.MethodNotAllowed("watch a single object with a fieldSelector on metadata.name")
            obj = await reg.get(t.namespace, t.name)
            return self.single(request, info, obj)
        if method == "PUT":
            return await self.update(request, reg, t)
        if method == "PATCH":
            return await self.patch(request, reg, t)
        if method == "DELETE" and t.subresource is None:
            return await self.delete(request, reg, t)
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")

    async def review(self, request: Request, method: str, t: Target) -> Response:
        """TokenReview, SelfSubjectReview and the authorization reviews: POST only, answered from
        the request and never stored."""
        info = t.info
        if method != "POST" or t.name is not None:
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
        raw, ctype = await read_payload(request)
        body = decode_object(raw, ctype, info)
        user = current_user.get() or UNSECURED
        if info.kind == "TokenReview":
            answer = await authn.token_review(self.security, body)
        elif info.kind == "SelfSubjectReview":
            answer = authn.self_subject_review(user)
        elif info.group == "authorization.k8s.io":
            if self.security is None:
                answer = {**body, "status": {"allowed": True, "reason": "no authorization on this server"}}
            else:
                answer = await self.security.authorizer.review(info.kind, body, user, t.namespace)
            answer.setdefault("kind", info.kind)
            answer.setdefault("apiVersion", info.api_version)
        else:
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
        return render(negotiate(request.headers.get("accept")), answer, 201)

    def single(
        self,
        request: Request,
        info: ResourceInfo,
        obj: dict[str, Any],
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        out = negotiate(request.headers.get("accept"))
        if info.custom:
            obj = crdschema.for_read(info, obj)
        if out.form == "table":
            include = request.query_params.get("includeObject") or "Metadata"
            table = printers.table(info, [obj], include_object=include)
            table["apiVersion"] = f"meta.k8s.io/{out.version}"
            return json_response(table, status, headers)
        if out.form == "partial":
            return json_response(partial(obj, out.version), status, headers)
        return render(out, obj, status, headers)

    async def list(self, request: Request, reg: Registry, t: Target) -> Response:
        q = request.query_params
        out = negotiate(request.headers.get("accept"))
        limit = query_int(q, "limit") or 0
        if limit < 0:
            raise errors.BadRequest("limit must not be negative")
        list_options(q, watch=False)
        rv = q.get("resourceVersion") or ""
        not_older = q.get("resourceVersionMatch") == "NotOlderThan" and rv != "0"
        # NotOlderThan N: the latest state serves (a quorum read is never older), once it reaches N
        items, rev, cont = await reg.list(
            t.namespace, make_match(t.info, q), limit, q.get("continue") or "", "" if not_older else rv
        )
        if not_older and rev < parse_resource_version(rv):
            raise watchcache.too_large(parse_resource_version(rv), rev)
        info = t.info
        if info.custom:
            items = [crdschema.for_read(info, o) for o in items]
        if out.form == "table":
            include = q.get("includeObject") or "Metadata"
            table = printers.table(
                info, items, include_object=include, resource_version=str(rev), continue_token=cont
            )
            table["apiVersion"] = f"meta.k8s.io/{out.version}"
            return json_response(table)
        meta: dict[str, Any] = {"resourceVersion": str(rev)}
        if cont:
            meta["continue"] = cont
        if out.form == "partial":
            body = {
                "kind": "PartialObjectMetadataList",
                "apiVersion": f"meta.k8s.io/{out.version}",
                "metadata": meta,
                "items": [partial(o, out.version) for o in items],
            }
            return json_response(body)
        body = {"kind": info.list_kind_name, "apiVersion": info.api_version, "metadata": meta, "items": items}
        return render(out, body)

    async def watch(self, request: Request, reg: Registry, t: Target) -> Response:
        q = request.query_params
        out = negotiate(request.headers.get("accept"))
        match = make_match(t.info, q)
        rv = q.get("resourceVersion") or ""
        timeout = query_int(q, "timeoutSeconds")
        if timeout is None:
            timeout = random.randint(1800, 3600)
        send_initial = list_options(q, watch=True)
        allow_bookmarks = query_bool(q, "allowWatchBookmarks")
        bookmarks = allow_bookmarks and out.form in ("json", "partial")
        include = q.get("includeObject") or "Metadata"
        info = t.info
        events: AsyncIterator[watchcache.Batch]
        if send_initial is None:
            events = _batches(reg.watch(t.namespace, match, rv))
        else:
            events = await self.watch_list(reg, t, match, rv, send_initial)

        first = [True]

        def frame(etype: str, obj: dict[str, Any]) -> bytes:
            if etype == "BOOKMARK":
                # the end of a watch-list's initial events: metadata only, in the requested form
                if out.form == "table":
                    mark = {
                        "kind": "Table",
                        "apiVersion": f"meta.k8s.io/{out.version}",
                        "metadata": obj["metadata"],
                        "columnDefinitions": [],
                        "rows": [],
                    }
                elif out.form == "partial":
                    mark = partial(obj, out.version)
                else:
                    mark = {"kind": info.kind, "apiVersion": info.api_version, "metadata": obj["metadata"]}
                return orjson.dumps({"type": "BOOKMARK", "object": mark}) + b"\n"
            if out.form == "json" and not info.custom and etype != "ERROR":
                # the cache encodes each object once for every watcher and list that sends it
                return b'{"type":"%s","object":%s}\n' % (etype.encode(), reg.cache.encoded(obj))
            if info.custom and etype != "ERROR":
                obj = crdschema.for_read(info, obj)
            if out.form == "table" and etype != "ERROR":
                # like Kubernetes, only the first event of a watch carries the column definitions
                table = printers.table_for_watch_event(info, obj, include, include_columns=first[0])
                first[0] = False
                table["apiVersion"] = f"meta.k8s.io/{out.version}"
                obj = table
            elif out.form == "partial" and etype != "ERROR":
                obj = partial(obj, out.version)
            return orjson.dumps({"type": etype, "object": obj}) + b"\n"

        async def stream() -> AsyncIterator[bytes]:
            deadline = time.monotonic() + timeout
            last_rv = 0
            it = events.__aiter__()
            next_item: asyncio.Task[Any] | None = None
            try:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    if next_item is None:
                        next_item = asyncio.ensure_future(it.__anext__())
                    wait = min(remaining, self.bookmark_interval) if bookmarks else remaining
                    done, _ = await asyncio.wait({next_item}, timeout=wait)
                    if not done:
                        if bookmarks and reg.cache.revision > last_rv:
                            last_rv = reg.cache.revision
                            mark = {
                                "kind": info.kind,
                                "apiVersion": info.api_version,
                                "metadata": {"resourceVersion": str(last_rv)},
                            }
                            yield orjson.dumps({"type": "BOOKMARK", "object": mark}) + b"\n"
                        continue
                    task, next_item = next_item, None
                    try:
                        batch = task.result()
                    except StopAsyncIteration:
                        return
                    except errors.StatusError as e:
                        yield frame("ERROR", e.status())
                        return
                    except EtcdUnavailable as e:
                        yield frame("ERROR", unavailable(e).status())
                        return
                    chunk = [
                        frame(etype, obj) for etype, obj in batch if allow_bookmarks or etype != "BOOKMARK"
                    ]
                    # live events come in revision order and a watch-list's initial events end with
                    # the newest revision in a BOOKMARK, so the batch's last item has the newest
                    # revision sent (an older one only makes a periodic bookmark come sooner)
                    rv_sent = (batch[-1][1].get("metadata") or {}).get("resourceVersion") or 0
                    last_rv = max(last_rv, int(rv_sent))
                    if chunk:
                        yield b"".join(chunk)
            finally:
                if next_item is not None:
                    next_item.cancel()
                    try:
                        await next_item
                    except (asyncio.CancelledError, StopAsyncIteration, Exception):
                        pass
                await it.aclose()  # type: ignore[attr-defined]

        media = JSON
        return StreamingResponse(stream(), media_type=media)

    async def watch_list(
        self, reg: Registry, t: Target, match: Any, rv: str, send_initial: bool
    ) -> AsyncIterator[watchcache.Batch]:
        """A watch with ``sendInitialEvents`` and ``resourceVersionMatch=NotOlderThan``, served from
        the watch cache once it holds a state at least as new as asked: ``resourceVersion`` unset is
        the store's current revision (a consistent read), "0" any state, N at least N (504 when the
        cache does not reach it in time).  With ``sendInitialEvents=true`` that state comes first as
        ADDED events, then the BOOKMARK annotated ``k8s.io/initial-events-end``; with ``false`` only
        the changes after it (after N for an explicit N)."""
        cache = reg.cache
        await asyncio.wait_for(cache.ready.wait(), timeout=30)
        prefix = t.info.key_prefix(t.namespace)
        if rv == "":
            await cache.wait_fresh(await reg.etcd.revision())
        elif rv != "0":
            wanted = parse_resource_version(rv)
            await cache.wait_fresh(wanted)
            if not send_initial:
                return _batches(reg.watch(t.namespace, match, rv))
        if send_initial:
            return cache.follow(cache.watch_list(prefix, match))
        return cache.follow(cache.watch(prefix, match, cache.revision))

    @staticmethod
    async def read_object(request: Request, t: Target) -> tuple[dict[str, Any], dict[str, str]]:
        """The request's object, decoded and field-checked, and the warning headers to send."""
        raw, ctype = await read_payload(request)
        obj = decode_object(raw, ctype, t.info)
        headers: dict[str, str] = {}
        check_fields(t.info, raw, obj, ctype, field_validation(request.query_params), headers)
        return obj, headers

    async def create(self, request: Request, reg: Registry, t: Target) -> Response:
        q = request.query_params
        obj, headers = await self.read_object(request, t)
        meta = obj.get("metadata") or {}
        if t.info.namespaced and meta.get("namespace") not in (None, "", t.namespace):
            raise errors.BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        if t.info.namespaced and not t.namespace:
            raise errors.NotFound("the server could not find the requested resource")
        if not meta.get("name") and not meta.get("generateName"):
            raise errors.invalid(
                t.info.kind,
                "",
                [errors.cause("metadata.name", "name or generateName is required", "FieldValueRequired")],
                t.info.group,
            )
        write = managedfields.write_of(request, t.info, None, managedfields.UPDATE, "CreateOptions")
        with managedfields.writing(write):
            created = await reg.create(t.namespace, obj, dry_run(q))
        return self.single(request, t.info, created, 201, headers)

    async def update(self, request: Request, reg: Registry, t: Target) -> Response:
        q = request.query_params
        obj, headers = await self.read_object(request, t)
        assert t.name is not None
        write = managedfields.write_of(request, t.info, t.subresource, managedfields.UPDATE, "UpdateOptions")
        with managedfields.writing(write):
            updated = await reg.update(t.namespace, t.name, obj, t.subresource, dry_run(q))
        return self.single(request, t.info, updated, 200, headers)

    async def patch(self, request: Request, reg: Registry, t: Target) -> Response:
        q = request.query_params
        raw = await read_body(request)
        ctype = request.headers.get("content-type") or ""
        ptype = patch_type_of(ctype)
        body = decode_body(raw, "application/yaml" if ptype == "apply" else JSON)
        mode = field_validation(q)
        headers: dict[str, str] = {}
        info = t.info
        assert t.name is not None
        is_apply = ptype == "apply"
        operation = managedfields.APPLY if is_apply else managedfields.UPDATE
        write = managedfields.write_of(request, info, t.subresource, operation, "PatchOptions")
        if is_apply:  # server-side apply (apiserver/managedfields.py)
            write.config = managedfields.check_config(info, body, t.name, t.namespace)

        def patcher(current: dict[str, Any]) -> dict[str, Any]:
            if is_apply:
                patched = managedfields.apply(
                    info, current, body, write.manager, write.force, t.subresource or ""
                )
            else:
                patched = apply_patch(ptype, current, body, info)
            if isinstance(patched, dict):
                check_fields(
                    info,
                    raw,
                    patched,
                    "application/yaml" if ptype == "apply" else JSON,
                    mode,
                    headers,
                    body_is_object=False,
                )
            return patched

        with managedfields.writing(write):
            try:
                updated = await reg.patch(t.namespace, t.name, patcher, t.subresource, dry_run(q))
            except errors.NotFound:
                if not is_apply or t.subresource:
                    raise
                # an apply creates the object it does not find
                obj = managedfields.object_to_create(info, body, t.name)
                check_fields(info, raw, obj, "application/yaml", mode, headers)
                created = await reg.create(t.namespace, obj, dry_run(q))
                return self.single(request, info, created, 201, headers)
        return self.single(request, info, updated, 200, headers)

    async def delete(self, request: Request, reg: Registry, t: Target) -> Response:
        q = request.query_params
        raw, _ = await read_payload(request)
        body = decode_body(raw, JSON) if raw.strip() else None
        assert t.name is not None
        opts = delete_options(q, body)
        obj, deleted = await reg.delete(t.namespace, t.name, opts, delete_dry_run(q, opts))
        if deleted and t.info.kind not in ("Pod", "Namespace", "Service"):
            return json_response(success_status(t.info, obj))
        return self.single(request, t.info, obj)

    async def delete_collection(self, request: Request, reg: Registry, t: Target) -> Response:
        q = request.query_params
        raw, _ = await read_payload(request)
        body = decode_body(raw, JSON) if raw.strip() else None
        opts = delete_options(q, body)
        dry = delete_dry_run(q, opts)
        items, rev, _ = await reg.list(t.namespace, make_match(t.info, q))
        gone = []
        for item in items:
            meta = item["metadata"]
            try:
                obj, _deleted = await reg.delete(meta.get("namespace"), meta["name"], opts, dry)
                gone.append(obj)
            except errors.NotFound:
                pass
            except errors.Forbidden:
                pass
        body_out = {
            "kind": t.info.list_kind_name,
            "apiVersion": t.info.api_version,
            "metadata": {"resourceVersion": str(rev)},
            "items": gone,
        }
        return json_response(body_out)

    async def scale(self, request: Request, reg: Registry, t: Target) -> Response:
        info = t.info
        assert t.name is not None
        if request.method == "GET":
            return json_response(strategy.scale_of(info, await reg.get(t.namespace, t.name)))
        if request.method not in ("PUT", "PATCH"):
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
        raw, ctype = await read_payload(request)
        q = request.query_params
        if request.method == "PUT":
            body = decode_body(raw, ctype)
            ptype = None
        else:
            ptype = patch_type_of(ctype)
            body = decode_body(raw, "application/yaml" if ptype == "apply" else JSON)

        def patcher(current: dict[str, Any]) -> dict[str, Any]:
            scale = strategy.scale_of(info, current)
            if ptype is None:
                new_scale = body
                if not isinstance(new_scale, dict) or new_scale.get("kind") not in (None, "Scale"):
                    raise errors.BadRequest("the body must be an autoscaling/v1 Scale")
            else:
                new_scale = apply_patch(ptype, scale, body, None)
            want_rv = str(((new_scale.get("metadata") or {}).get("resourceVersion")) or "")
            replicas = (new_scale.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.invalid(
                    "Scale",
                    t.name or "",
                    [
                        errors.cause(
                            "spec.replicas",
                            f"Invalid value: {replicas!r}: must be greater than or equal to 0",
                        )
                    ],
                    "autoscaling",
                )
            if ptype == "apply":  # owned by the manager's Apply entry with subresource scale
                applied = (body.get("spec") or {}).get("replicas") if isinstance(body, dict) else None
                return managedfields.apply_scale(info, current, applied, write, want_rv)
            strategy.set_replicas(info, current, replicas)
            if want_rv:
                current["metadata"]["resourceVersion"] = want_rv
            return current

        write = managedfields.write_of(
            request,
            info,
            "scale",
            managedfields.APPLY if ptype == "apply" else managedfields.UPDATE,
            "UpdateOptions" if ptype is None else "PatchOptions",
        )
        with managedfields.writing(write):
            updated = await reg.patch(t.namespace, t.name, patcher, None, dry_run(q))
        return json_response(strategy.scale_of(info, updated))

    async def bind(self, request: Request, reg: Registry, t: Target) -> Response:
        raw, ctype = await read_payload(request)
        binding = decode_object(raw, ctype, t.info, "Binding")
        target = binding.get("target") or {}
        node = target.get("name")
        name = t.name
        assert name is not None
        if not node:
            raise errors.invalid(
                "Binding", name, [errors.cause("target.name", "Required value", "FieldValueRequired")]
            )
        if target.get("kind") not in (None, "", "Node"):
            raise errors.invalid(
                "Binding",
                name,
                [errors.cause("target.kind", "must be empty or 'Node'", "FieldValueNotSupported")],
            )

        def assign(current: dict[str, Any]) -> Any:
            meta = current["metadata"]
            spec = current.setdefault("spec", {})
            if meta.get("deletionTimestamp"):
                raise errors.conflict(
                    "pods/binding", name, "", f"pod {name} is being deleted, cannot be assigned to a host"
                )
            if spec.get("nodeName"):
                raise errors.conflict(
                    "pods/binding", name, "", f'pod {name} is already assigned to node "{spec["nodeName"]}"'
                )
            want_uid = (binding.get("metadata") or {}).get("uid")
            if want_uid and want_uid != meta.get("uid"):
                raise errors.conflict("pods/binding", name, "", "the pod's UID does not match the binding")
            spec["nodeName"] = node
            status = current.setdefault("status", {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append(
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": rfc3339(),
                }
            )
            status["conditions"] = conds
            return current

        await reg.guaranteed_update(t.namespace, name, assign, dry_run(request.query_params))
        return json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )

    async def not_served(self, reg: Registry, t: Target) -> Response:
        assert t.name is not None
        obj = await reg.get(t.namespace, t.name)
        if t.info.kind == "Pod" and not (obj.get("spec") or {}).get("nodeName"):
            raise errors.BadRequest(f"pod {t.name} does not have a host assigned")
        raise errors.ServiceUnavailable(
            f"{t.info.plural}/{t.subresource} is not served yet: no kubelet connection is available for this object"
        )


class KubernetesAPI:
    """ASGI middleware that answers every HTTP request with :meth:`APIServer.dispatch`."""

    def __init__(self, app: Any, server: APIServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        server = self.server
        recorder = server.metrics  # apiserver_request_total and _duration_seconds, once sent
        start = time.perf_counter() if recorder is not None else 0.0
        response = await server.dispatch(Request(scope, receive))
        pending = scope.pop("minik.audit", None)
        if pending is None and recorder is None:
            await response(scope, receive, send)
            return
        try:
            await response(scope, receive, send)
        finally:
            if pending is not None:
                server.record(scope, response.status_code, *pending)
            if recorder is not None:
                recorder.observe(scope, response.status_code, time.perf_counter() - start)

    async def refuse_websocket(self, scope: Any, send: Any, e: errors.StatusError) -> None:
        """Answer an upgrade request with the Status of a 401 or 403 instead of upgrading."""
        body = orjson.dumps(e.status())
        await send(
            {
                "type": "websocket.http.response.start",
                "status": e.code,
                "headers": [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})

    async def websocket(self, scope: Any, receive: Any, send: Any) -> None:
        """WebSocket upgrades: ``pods/{name}/exec``, ``attach`` and ``portforward``, relayed to the
        pod's kubelet (Kubernetes' channel protocols)."""
        ws = WebSocket(scope, receive, send)
        server = self.server
        who = Admitted()
        received = time.time() if server.audit is not None else 0.0
        try:
            # Kubernetes authorizes WebSocket exec/attach/portforward as "create" (1.31+)
            await server.admit(scope, "POST", who)
        except errors.StatusError as e:
            await self.refuse_websocket(scope, send, e)
            if server.audit is not None:
                server.record(scope, e.code, who, received)
            return
        token = current_user.set(who.impersonated or who.user)
        try:
            await self.relay(ws, scope)
        finally:
            current_user.reset(token)
            if server.audit is not None:  # when the session ends
                server.record(scope, 101, who, received)

    async def relay(self, ws: WebSocket, scope: Any) -> None:
        parts = [p for p in scope["path"].split("/") if p]
        try:
            t = parse_resource_path(parts) if len(parts) >= 4 and parts[0] in ("api", "apis") else None
        except errors.StatusError:
            t = None
        if (
            t is None
            or t.info.kind != "Pod"
            or t.subresource not in ("exec", "attach", "portforward")
            or not t.name
        ):
            await ws.close(code=1008)
            return
        assert t.namespace is not None
        try:
            offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
            if t.subresource == "portforward" and portforward_spdy.offers_spdy_tunnel(offered):
                # kubectl: SPDY/3.1 tunnelled in the WebSocket
                await portforward_spdy.serve_tunnel(self.server.storage, ws, t.namespace, t.name)
            elif t.subresource == "portforward":
                await nodeproxy.pod_portforward(self.server.storage, ws, t.namespace, t.name)
            else:
                await nodeproxy.pod_exec(self.server.storage, ws, t.namespace, t.name, t.subresource)
        except Exception:
            log.exception("%s relay for %s/%s failed", t.subresource, t.namespace, t.name)


async def _batches(
    events: AsyncIterator[tuple[str, dict[str, Any]]],
) -> AsyncIterator[watchcache.Batch]:
    try:
        async for item in events:
            yield [item]
    finally:
        await events.aclose()  # type: ignore[attr-defined]


def create_app(
    storage: Storage,
    advertise: str = "127.0.0.1:6443",
    manage_storage: bool = True,
    security: Security | None = None,
    audit_log: Any = None,
    proxy_config: aggregator.ProxyConfig | None = None,
) -> Any:
    """The ASGI app.  With ``manage_storage`` it starts and stops the watch caches with the app.

    ``security``: the authenticator and authorizer of requests that arrive through
    :mod:`apiserver.serving`'s protocols; without it every request is ``system:unsecured``."""
    server = APIServer(storage, advertise, security, audit_log)
    server.aggregator = aggregator.Aggregator(storage, proxy_config)

    async def progress_loop() -> None:
        while True:
            await asyncio.sleep(5)
            storage.request_progress()

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        task = None
        if manage_storage:
            storage.start()
        # the authorizer writes the bootstrap policy and follows RBAC objects; serving waits for
        # it a while, not for ever (system:masters is allowed throughout)
        authz_start = None
        if security is not None:
            authz_start = asyncio.create_task(security.authorizer.start(), name="authorizer-start")
            await asyncio.wait({authz_start}, timeout=15)
        task = asyncio.create_task(progress_loop())
        crds = asyncio.create_task(crd.CRDController(storage).run(), name="crd-controller")
        master = kubernetes_service.start_reconciler(storage)  # the `kubernetes` Service
        assert server.aggregator is not None
        discovery.aggregated_groups = server.aggregator.aggregated_groups
        apiservices = asyncio.create_task(server.aggregator.run(), name="apiservice-availability")
        system_classes = priority.start(storage)  # system-node-critical, system-cluster-critical
        try:
            yield
        finally:
            task.cancel()
            crds.cancel()
            apiservices.cancel()
            if authz_start is not None:
                authz_start.cancel()
            if system_classes is not None:
                system_classes.cancel()
            if master is not None:
                master.cancel()
                await asyncio.gather(master, return_exceptions=True)
            if manage_storage:
                await storage.stop()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.server = server
    # Every path is a Kubernetes path, served by one dispatcher that wraps the FastAPI app (which
    # keeps the lifespan: starting and stopping the watch caches); requests skip FastAPI's
    # middleware and router stack, which costs about a tenth of a create.
    return KubernetesAPI(app, server)


__all__ = ["APIServer", "create_app", "negotiate", "parse_resource_path", "copy", "datetime", "UTC"]
