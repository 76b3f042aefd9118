"""The HTTP client every minik component uses to talk to the API server.

It speaks Kubernetes' REST contract and nothing else, so it works against any Kubernetes API:

* objects live at ``/api/v1/namespaces/{ns}/{plural}/{name}`` (core group) or
  ``/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}``; cluster-scoped kinds drop the
  ``namespaces/{ns}`` part, and a namespaced list without a namespace lists all namespaces;
* a subresource is one more path segment: ``.../pods/web-0/status``, ``.../pods/web-0/binding``;
* failures come back as a ``metav1.Status`` body and become the matching
  :class:`~apimachinery.errors.StatusError` subclass (404 -> ``NotFound``, 409 -> ``Conflict``,
  422 -> ``Invalid`` with ``causes``, 410 -> ``Gone``);
* ``?watch=1&resourceVersion=N`` streams one JSON event per line,
  ``{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": {...}}``.

The design is "sans-IO": the functions at the top of this module build :class:`Request` values
and interpret responses; :class:`Client` (asyncio) and :class:`SyncClient` (for the CLI) only
send them.  Every verb is written once, in the clients' common base; each client supplies only how
one request is sent (awaited or blocking).  Operations that take several round trips
(:meth:`Client.list_all`) are written once as generators that yield requests and receive
responses, and each client drives them.

**Several API servers.**  A client can be given every API server of an HA control plane
(``ClientConfig.fallback_servers``: a comma-separated ``--api-server`` or the kubeconfig extension
described in :mod:`apimachinery.kubeconfig`).  It sends to one server at a time and moves to the
next (round robin, and it stays there) when a request fails at the transport level -- a refused or
timed-out connection, a connection that breaks -- never on an HTTP error status, which is the
server's answer.  A request that never reached the server (connect error or connect timeout) is
sent again to the next server whatever its verb; one that may have reached it is sent again only
if it is safe (GET, HEAD, OPTIONS), so a create is never applied twice.  Each server is tried at most
once per call.  A watch is not resumed mid-stream: it raises as before, and the informer, which
lists and watches again after any failure, does so against the next server.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar
from urllib.parse import quote, urlsplit

from . import errors, metrics
from .kubeconfig import ClientConfig
from .resources import ResourceInfo, plural_info

if TYPE_CHECKING:
    import httpx  # imported where a request is sent: the CLI's `minik version --client` never loads it

log = logging.getLogger(__name__)

Obj = dict[str, Any]
PatchType = Literal["merge", "strategic", "json", "apply"]

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}

DEFAULT_TIMEOUT = 30.0
WATCH_READ_SLACK = 30.0
"""A watch stream may be silent until the server ends it after ``timeoutSeconds``; allow that much more."""

DEFAULT_FIELD_MANAGER = "minik"

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Verbs sent again to the next API server even when the failed attempt may have reached the first."""

_R = TypeVar("_R")
_P = ParamSpec("_P")


# --------------------------------------------------------------------------------------------------
# Paths and requests (shared by both clients)
# --------------------------------------------------------------------------------------------------


def _seg(value: str) -> str:
    return quote(value, safe="")


def resource_path(
    info: ResourceInfo,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The URL path of a collection, an object, or an object's subresource.

    >>> resource_path(PODS, "default", "web", "status")
    '/api/v1/namespaces/default/pods/web/status'

    Cluster-scoped kinds ignore ``namespace``; a namespaced kind with ``namespace=None`` gives the
    all-namespaces collection (``/api/v1/pods``), which can be listed and watched but not written.
    """
    parts = ["/api/v1"] if not info.group else ["/apis", info.group, info.version]
    if info.namespaced and namespace:
        parts += ["namespaces", _seg(namespace)]
    parts.append(info.plural)
    if name is not None:
        if not name:
            raise errors.BadRequest(f"resource name may not be empty ({info.plural})")
        parts.append(_seg(name))
        if subresource:
            parts.append(subresource)
    elif subresource:
        raise errors.BadRequest(f"subresource {subresource!r} needs an object name")
    return "/".join(parts)


@dataclass
class Request:
    """One HTTP request to the API server, before it is sent."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None  # JSON-able; encoded on send
    content_type: str = "application/json"
    timeout: float | None = None  # read timeout override (watches)


def _params(**values: Any) -> dict[str, str]:
    """Query parameters in Kubernetes' spelling, dropping the unset ones."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None or value is False:
            continue
        out[key] = "true" if value is True else str(value)
    return out


def _list_params(
    label_selector: str | None,
    field_selector: str | None,
    limit: int | None = None,
    continue_: str | None = None,
    resource_version: str | None = None,
) -> dict[str, str]:
    return _params(
        labelSelector=label_selector or None,
        fieldSelector=field_selector or None,
        limit=limit,
        resourceVersion=resource_version,
        **{"continue": continue_ or None},
    )


def _meta(obj: Mapping[str, Any]) -> tuple[str | None, str]:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise errors.BadRequest("object has no metadata.name")
    return meta.get("namespace"), str(name)


def get_request(
    info: ResourceInfo, name: str, namespace: str | None = None, subresource: str | None = None
) -> Request:
    return Request("GET", resource_path(info, namespace, name, subresource))


def list_request(
    info: ResourceInfo,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    limit: int | None = None,
    continue_: str | None = None,
    resource_version: str | None = None,
) -> Request:
    """One page of a List (all of it without ``limit``), with ``metadata.resourceVersion``."""
    params = _list_params(label_selector, field_selector, limit, continue_, resource_version)
    return Request("GET", resource_path(info, namespace), params)


def create_request(
    info: ResourceInfo,
    obj: Obj,
    namespace: str | None = None,
    dry_run: bool = False,
    field_manager: str | None = None,
) -> Request:
    ns = namespace or (obj.get("metadata") or {}).get("namespace")
    params = _params(dryRun="All" if dry_run else None, fieldManager=field_manager)
    return Request("POST", resource_path(info, ns), params, body=obj)


def update_request(
    info: ResourceInfo,
    obj: Obj,
    subresource: str | None = None,
    dry_run: bool = False,
    field_manager: str | None = None,
) -> Request:
    """PUT the whole object; its ``metadata.resourceVersion`` makes the write conditional (409 if stale)."""
    namespace, name = _meta(obj)
    params = _params(dryRun="All" if dry_run else None, fieldManager=field_manager)
    return Request("PUT", resource_path(info, namespace, name, subresource), params, body=obj)


def patch_request(
    info: ResourceInfo,
    name: str,
    patch: Any,
    namespace: str | None = None,
    patch_type: PatchType = "merge",
    subresource: str | None = None,
    field_manager: str | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> Request:
    """PATCH with one of the four patch types; server-side apply requires a field manager."""
    if patch_type not in PATCH_CONTENT_TYPES:
        raise ValueError(f"unknown patch type {patch_type!r}; use one of {sorted(PATCH_CONTENT_TYPES)}")
    if patch_type == "json" and not isinstance(patch, list):
        raise ValueError("a JSON patch (RFC 6902) is a list of operations")
    if patch_type == "apply" and not field_manager:
        field_manager = DEFAULT_FIELD_MANAGER
    params = _params(
        fieldManager=field_manager,
        force=force if patch_type == "apply" else None,
        dryRun="All" if dry_run else None,
    )
    return Request(
        "PATCH",
        resource_path(info, namespace, name, subresource),
        params,
        body=patch,
        content_type=PATCH_CONTENT_TYPES[patch_type],
    )


def delete_options(
    grace_period_seconds: int | None = None,
    propagation_policy: str | None = None,
    preconditions: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> Obj | None:
    """A ``DeleteOptions`` body (``propagationPolicy`` is Orphan, Background or Foreground)."""
    body: Obj = {}
    if grace_period_seconds is not None:
        body["gracePeriodSeconds"] = grace_period_seconds
    if propagation_policy is not None:
        body["propagationPolicy"] = propagation_policy
    if preconditions:
        body["preconditions"] = dict(preconditions)
    if dry_run:
        body["dryRun"] = ["All"]
    if not body:
        return None
    return {"kind": "DeleteOptions", "apiVersion": "v1", **body}


def delete_request(
    info: ResourceInfo,
    name: str,
    namespace: str | None = None,
    grace_period_seconds: int | None = None,
    propagation_policy: str | None = None,
    preconditions: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> Request:
    """Delete; the reply is the object (if finalizers keep it) or a Success ``Status``."""
    body = delete_options(grace_period_seconds, propagation_policy, preconditions, dry_run)
    return Request("DELETE", resource_path(info, namespace, name), body=body)


def delete_collection_request(
    info: ResourceInfo,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    grace_period_seconds: int | None = None,
    propagation_policy: str | None = None,
    dry_run: bool = False,
) -> Request:
    body = delete_options(grace_period_seconds, propagation_policy, None, dry_run)
    params = _list_params(label_selector, field_selector)
    return Request("DELETE", resource_path(info, namespace), params, body=body)


def create_subresource_request(
    info: ResourceInfo, name: str, subresource: str, body: Obj, namespace: str | None = None
) -> Request:
    return Request("POST", resource_path(info, namespace, name, subresource), body=body)


def binding(namespace: str, pod_name: str, node_name: str) -> Obj:
    """The ``Binding`` the scheduler posts to ``pods/{name}/binding`` to set ``spec.nodeName``."""
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod_name, "namespace": namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
    }


def watch_request(
    info: ResourceInfo,
    namespace: str | None = None,
    resource_version: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    timeout_seconds: int | None = None,
    allow_bookmarks: bool = True,
) -> Request:
    """Stream ``(type, object)`` events until the server ends the watch.

    A too old ``resource_version`` raises :class:`errors.Gone` (HTTP 410 or an ERROR event); the
    caller must then list again.  Close early with ``aclosing(...)`` or ``break``.
    """
    params = {"watch": "1"}
    params.update(_list_params(label_selector, field_selector, resource_version=resource_version))
    params.update(_params(allowWatchBookmarks=allow_bookmarks, timeoutSeconds=timeout_seconds))
    read_timeout = None if timeout_seconds is None else timeout_seconds + WATCH_READ_SLACK
    return Request("GET", resource_path(info, namespace), params, timeout=read_timeout)


# --------------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------------


def error_from_response(status_code: int, content: bytes, url: str = "") -> errors.StatusError:
    """The typed exception for a non-2xx response.

    A ``Status`` body is decoded as is; anything else (a proxy's HTML, a bare string) becomes the
    exception class for the HTTP code with the body text as its message, as client-go does.
    """
    text = content.decode("utf-8", errors="replace")
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return errors.from_status(body, status_code)
    message = text.strip()[:500] or f"the server responded with HTTP {status_code}"
    if url:
        message = f"{message} ({url})"
    return errors.from_status({"message": message, "code": status_code}, status_code)


def _checked(response: httpx.Response) -> httpx.Response:
    """The response itself if it succeeded, else the typed error raised."""
    if response.status_code >= 400:
        raise error_from_response(response.status_code, response.content, str(response.request.url))
    return response


def decode_json(response: httpx.Response) -> Obj:
    """The JSON body of a successful response (``{}`` if empty), or raise the typed error."""
    if not _checked(response).content:
        return {}
    try:
        value = response.json()
    except ValueError as exc:
        raise errors.InternalError(f"invalid JSON from {response.request.url}: {exc}") from exc
    if not isinstance(value, dict):
        raise errors.InternalError(f"expected a JSON object from {response.request.url}")
    return value


def decode_watch_line(line: str) -> tuple[str, Obj] | None:
    """One watch event from one line; ``None`` for blank lines.

    An ``ERROR`` event carries a ``Status``; it is raised as the typed error, so a too-old
    resourceVersion surfaces as :class:`errors.Gone` whether it came as HTTP 410 or mid-stream.
    """
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise errors.InternalError(f"invalid watch event: {line[:200]!r}") from exc
    etype = str(event.get("type") or "")
    obj = event.get("object") or {}
    if etype == "ERROR":
        raise errors.from_status(obj, int(obj.get("code") or 500))
    if etype not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
        raise errors.InternalError(f"unknown watch event type {etype!r}")
    return etype, obj


def _never_sent(exc: Exception) -> bool:
    """Whether a transport error happened before the request could reach the server."""
    import httpx

    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def _retryable(method: str, exc: Exception) -> bool:
    """Whether a request that failed with ``exc`` may be sent again to another API server."""
    import httpx

    if isinstance(exc, httpx.PoolTimeout | httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        return False  # a problem on this side: another server would not help
    return _never_sent(exc) or method.upper() in SAFE_METHODS


def _unreachable(url: str, exc: Exception) -> errors.StatusError:
    """A transport failure as a Status error: 504 ``Timeout`` or 503 ``ServiceUnavailable``."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return errors.Timeout(f"timed out talking to the API server at {url}: {type(exc).__name__}")
    return errors.ServiceUnavailable(f"cannot reach the API server at {url}: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------------------
# Multi-request flows: generators that yield Requests and receive decoded responses
# --------------------------------------------------------------------------------------------------

Flow = Generator[Request, Obj, _R]


def list_all_flow(
    info: ResourceInfo,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    page_size: int = 500,
) -> Flow[Obj]:
    """List every page by following ``metadata.continue``, like client-go's pager.

    All pages are read from one snapshot (the continue token pins the revision), so the returned
    List's ``metadata.resourceVersion`` is the one to start a watch from.  If the token expires
    mid-way (410), the list is read again in one unpaginated request, as the pager does.
    """
    items: list[Obj] = []
    token: str | None = None
    while True:
        req = list_request(info, namespace, label_selector, field_selector, page_size, token)
        try:
            page = yield req
        except errors.Gone:
            if token is None:
                raise
            log.info("continue token for %s expired; listing without pagination", info.plural)
            return (yield list_request(info, namespace, label_selector, field_selector))
        items.extend(page.get("items") or [])
        meta = page.get("metadata") or {}
        token = meta.get("continue") or None
        if not token:
            page["items"] = items
            page["metadata"] = {k: v for k, v in meta.items() if k not in ("continue", "remainingItemCount")}
            return page


# --------------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------------

Event = tuple[str, Obj]  # (type, object) of one watch event
_Out = TypeVar("_Out")  # what a verb returns: the object (SyncClient) or a coroutine of it (Client)
_Resp = TypeVar("_Resp")  # what raw() returns: the response or a coroutine of it
_Events = TypeVar("_Events")  # what watch() returns: an iterator or an async iterator of events
_O = TypeVar("_O")


def _server_of(config: ClientConfig | str | None) -> ClientConfig:
    if config is None:
        return ClientConfig()
    if isinstance(config, str):
        return ClientConfig(server=config.rstrip("/"))
    return config


class _Verb(Generic[_P]):
    """A client method made from a request builder (or a multi-request flow): the builder's
    arguments in, the decoded reply out -- awaitable from :class:`Client`, at once from
    :class:`SyncClient`."""

    def __init__(self, build: Callable[_P, Request | Flow[Obj]]) -> None:
        self.build = build

    def __get__(self, client: _Base[_O, Any, Any], owner: object = None) -> Callable[_P, _O]:
        if client is None:  # looked up on the class (mock.patch.object, hasattr, help)
            return self  # type: ignore[return-value]
        return functools.update_wrapper(functools.partial(client._call, self.build), self.build)


class _Watch(Generic[_P]):
    """The watch method made from its request builder: ``(type, object)`` events as they arrive."""

    def __init__(self, build: Callable[_P, Request]) -> None:
        self.build = build

    def __get__(self, client: _Base[Any, Any, _O], owner: object = None) -> Callable[_P, _O]:
        if client is None:  # looked up on the class (mock.patch.object, hasattr, help)
            return self  # type: ignore[return-value]
        return functools.update_wrapper(functools.partial(client._events, self.build), self.build)


class _Base(Generic[_Out, _Resp, _Events]):
    """Configuration and every verb, written once for both clients.

    A verb is the request builder of the same name (``list`` is :func:`list_request`), or names
    the builder and its arguments; :meth:`_call` builds the request and sends it, awaited in
    :class:`Client` and blocking in :class:`SyncClient`.  Building waits for the send, so a bad
    argument raises where the call is awaited, as for any coroutine.
    """

    def __init__(self, config: ClientConfig | str | None = None) -> None:
        self.config = _server_of(config)
        self.servers: tuple[str, ...] = self.config.servers
        self.server = self.servers[0]  # the API server in use
        self.host = urlsplit(self.server).netloc  # the host label of rest_client_* metrics

    def _failover(self, failed: str, req: Request, exc: Exception) -> bool:
        """After a transport error on a request sent to ``failed``: use the next API server (unless
        a concurrent request already moved on) and say whether ``req`` may be sent there."""
        if len(self.servers) < 2:
            return False
        if self.server == failed:
            nxt = self.servers[(self.servers.index(failed) + 1) % len(self.servers)]
            log.warning("API server %s unreachable (%s: %s); using %s", failed, type(exc).__name__, exc, nxt)
            self.server = nxt
            self.host = urlsplit(nxt).netloc
            http = getattr(self, "_http", None)
            if http is not None:
                http.base_url = nxt  # requests sent with a relative path (the CLI's) follow
        return _retryable(req.method, exc)

    def _next_server(
        self, failed: str, req: Request, exc: Exception, attempt: int, started: bool = False
    ) -> None:
        """After a transport error on try ``attempt`` (from 0) of ``req`` sent to ``failed``: return
        when it may be sent again, to the next API server (:meth:`_failover`); else raise the Status
        error of an unreachable server (one server only, a method not safe to repeat, every server
        tried, or ``started``: a watch whose events flowed, which the caller must list and watch
        again)."""
        retry = self._failover(failed, req, exc) and not started
        if not retry or attempt >= len(self.servers) - 1:
            raise _unreachable(failed + req.path, exc) from exc

    @property
    def namespace(self) -> str:
        """The default namespace from the kubeconfig context."""
        return self.config.namespace

    def _http_options(
        self, transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None, timeout: float
    ) -> dict[str, Any]:
        """The keyword arguments of the ``httpx`` client underneath."""
        import httpx

        headers = {"Accept": "application/json", "User-Agent": "minik"}
        headers.update(self.config.auth_headers())
        options: dict[str, Any] = {
            "base_url": self.server,
            "headers": headers,
            "timeout": httpx.Timeout(timeout),
        }
        if transport is not None:
            options["transport"] = transport
        else:
            options["verify"] = self.config.ssl_context()
        return options

    def _build(self, req: Request) -> dict[str, Any]:
        import httpx

        kwargs: dict[str, Any] = {"params": req.params}
        if req.body is not None:
            kwargs["content"] = json.dumps(req.body).encode()
            kwargs["headers"] = {"Content-Type": req.content_type}
        if req.timeout is not None:
            kwargs["timeout"] = httpx.Timeout(DEFAULT_TIMEOUT, read=req.timeout)
        elif req.params.get("watch"):
            kwargs["timeout"] = httpx.Timeout(DEFAULT_TIMEOUT, read=None)
        return kwargs

    # -- sending, one way per client --------------------------------------------------------------

    def _call(self, build: Callable[_P, Request | Flow[Obj]], *args: _P.args, **kwargs: _P.kwargs) -> _Out:
        """Send the request ``build(*args, **kwargs)`` (or run the flow) and decode the reply."""
        raise NotImplementedError

    def _raw(self, req: Request) -> _Resp:
        raise NotImplementedError

    def _events(self, build: Callable[_P, Request], *args: _P.args, **kwargs: _P.kwargs) -> _Events:
        raise NotImplementedError

    # -- verbs: the request builder of the same name, sent ---------------------------------------

    list = _Verb(list_request)
    list_all = _Verb(list_all_flow)
    create = _Verb(create_request)
    patch = _Verb(patch_request)
    delete = _Verb(delete_request)
    delete_collection = _Verb(delete_collection_request)
    create_subresource = _Verb(create_subresource_request)
    watch = _Watch(watch_request)

    def get(self, info: ResourceInfo, name: str, namespace: str | None = None) -> _Out:
        return self._call(get_request, info, name, namespace)

    def get_subresource(
        self, info: ResourceInfo, name: str, subresource: str, namespace: str | None = None
    ) -> _Out:
        return self._call(get_request, info, name, namespace, subresource)

    def update(self, info: ResourceInfo, obj: Obj, field_manager: str | None = None) -> _Out:
        return self._call(update_request, info, obj, field_manager=field_manager)

    def update_status(self, info: ResourceInfo, obj: Obj, field_manager: str | None = None) -> _Out:
        return self._call(update_request, info, obj, "status", field_manager=field_manager)

    def bind(self, namespace: str, pod_name: str, node_name: str) -> _Out:
        """Assign a pod to a node through ``pods/{name}/binding`` (what the scheduler does)."""
        return self.create_subresource(
            PODS, pod_name, "binding", binding(namespace, pod_name, node_name), namespace
        )

    def get_scale(self, info: ResourceInfo, name: str, namespace: str | None = None) -> _Out:
        return self.get_subresource(info, name, "scale", namespace)

    def scale(self, info: ResourceInfo, name: str, replicas: int, namespace: str | None = None) -> _Out:
        """Set ``spec.replicas`` through the ``scale`` subresource (returns the ``Scale``)."""
        return self.patch(info, name, {"spec": {"replicas": replicas}}, namespace, subresource="scale")

    def raw(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> _Resp:
        """Any other request (discovery, ``/version``, logs); raises the typed error on non-2xx."""
        return self._raw(Request(method, path, dict(params or {}), body, content_type))


class Client(
    _Base[Coroutine[Any, Any, Obj], Coroutine[Any, Any, "httpx.Response"], AsyncGenerator[Event, None]]
):
    """Asynchronous client for controllers, the scheduler, the kubelet and the proxy.

    ``Client("http://127.0.0.1:8080")`` or ``Client(load_config())``; pass ``transport=`` (for
    example ``httpx.MockTransport``) to run without a network.  Use as ``async with``, or call
    :meth:`aclose`.
    """

    def __init__(
        self,
        config: ClientConfig | str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        import httpx

        super().__init__(config)
        self._http = httpx.AsyncClient(**self._http_options(transport, timeout))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _response(self, req: Request) -> httpx.Response:
        import httpx

        for attempt in range(len(self.servers)):
            server, host = self.server, self.host
            recorder = metrics.rest_client
            start = time.perf_counter()
            code: int | str = "<error>"
            try:
                resp = await self._http.request(req.method, server + req.path, **self._build(req))
                code = resp.status_code
                return resp
            except httpx.TransportError as exc:
                self._next_server(server, req, exc, attempt)
            finally:
                if recorder is not None:
                    recorder.observe(req.method, host, code, time.perf_counter() - start)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _send(self, req: Request) -> Obj:
        return decode_json(await self._response(req))

    async def _call(
        self, build: Callable[_P, Request | Flow[Obj]], *args: _P.args, **kwargs: _P.kwargs
    ) -> Obj:
        step = build(*args, **kwargs)
        return await (self._send(step) if isinstance(step, Request) else self._drive(step))

    async def _drive(self, flow: Flow[_R]) -> _R:
        try:
            req = next(flow)
            while True:
                try:
                    resp = await self._send(req)
                except errors.StatusError as exc:
                    req = flow.throw(exc)
                else:
                    req = flow.send(resp)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _raw(self, req: Request) -> httpx.Response:
        return _checked(await self._response(req))

    async def _events(
        self, build: Callable[_P, Request], *args: _P.args, **kwargs: _P.kwargs
    ) -> AsyncGenerator[Event, None]:
        import httpx

        req = build(*args, **kwargs)
        for attempt in range(len(self.servers)):
            server, host = self.server, self.host
            url = server + req.path
            recorder = metrics.rest_client
            start = time.perf_counter()
            started = False
            try:
                async with self._http.stream(req.method, url, **self._build(req)) as resp:
                    started = True
                    if recorder is not None:  # a watch counts once its response starts, as in client-go
                        recorder.observe(req.method, host, resp.status_code, time.perf_counter() - start)
                    if resp.status_code >= 400:
                        await resp.aread()
                        raise error_from_response(resp.status_code, resp.content, url)
                    async for line in resp.aiter_lines():
                        event = decode_watch_line(line)
                        if event is not None:
                            yield event
                return
            except httpx.TransportError as exc:
                self._next_server(server, req, exc, attempt, started)


class SyncClient(_Base[Obj, "httpx.Response", Iterator[Event]]):
    """The same calls as :class:`Client`, blocking, over ``httpx.Client`` (for the CLI)."""

    def __init__(
        self,
        config: ClientConfig | str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        import httpx

        super().__init__(config)
        self._http = httpx.Client(**self._http_options(transport, timeout))

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _response(self, req: Request) -> httpx.Response:
        import httpx

        for attempt in range(len(self.servers)):
            server, host = self.server, self.host
            recorder = metrics.rest_client
            start = time.perf_counter()
            code: int | str = "<error>"
            try:
                resp = self._http.request(req.method, server + req.path, **self._build(req))
                code = resp.status_code
                return resp
            except httpx.TransportError as exc:
                self._next_server(server, req, exc, attempt)
            finally:
                if recorder is not None:
                    recorder.observe(req.method, host, code, time.perf_counter() - start)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _send(self, req: Request) -> Obj:
        return decode_json(self._response(req))

    def _call(self, build: Callable[_P, Request | Flow[Obj]], *args: _P.args, **kwargs: _P.kwargs) -> Obj:
        step = build(*args, **kwargs)
        return self._send(step) if isinstance(step, Request) else self._drive(step)

    def _drive(self, flow: Flow[_R]) -> _R:
        try:
            req = next(flow)
            while True:
                try:
                    resp = self._send(req)
                except errors.StatusError as exc:
                    req = flow.throw(exc)
                else:
                    req = flow.send(resp)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _raw(self, req: Request) -> httpx.Response:
        return _checked(self._response(req))

    def _events(self, build: Callable[_P, Request], *args: _P.args, **kwargs: _P.kwargs) -> Iterator[Event]:
        import httpx

        req = build(*args, **kwargs)
        for attempt in range(len(self.servers)):
            server = self.server
            url = server + req.path
            started = False
            try:
                with self._http.stream(req.method, url, **self._build(req)) as resp:
                    started = True
                    if resp.status_code >= 400:
                        resp.read()
                        raise error_from_response(resp.status_code, resp.content, url)
                    for line in resp.iter_lines():
                        event = decode_watch_line(line)
                        if event is not None:
                            yield event
                return
            except httpx.TransportError as exc:
                self._next_server(server, req, exc, attempt, started)


PODS = plural_info("", "v1", "pods")
