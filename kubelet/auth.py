"""Authentication and authorization of the kubelet's HTTPS API, as Kubernetes' kubelet does them.

Every request on the HTTPS port (WebSocket upgrades included) is

1. **authenticated**: an x509 client certificate verified by TLS against ``--client-ca-file``
   (CN = user, O = groups), else a bearer token (``Authorization: Bearer T``, or for a WebSocket
   the subprotocol ``base64url.bearer.authorization.k8s.io.<base64url(T)>``) checked with a
   ``TokenReview`` through the API server (cached 2 minutes), else ``system:anonymous`` when
   ``--anonymous-auth`` is on; otherwise ``401 Unauthorized``;
2. **authorized** (``--authorization-mode Webhook``) with a ``SubjectAccessReview`` through the API
   server on the node object: verb from the method (GET get, POST create, PUT update, PATCH patch,
   DELETE delete; always ``create`` for ``/exec``, ``/attach``, ``/portForward`` and ``/run``,
   whose WebSocket upgrades are GETs), resource ``nodes``, name the node, subresource ``stats`` (``/stats/*``),
   ``metrics`` (``/metrics/*``), ``log`` (``/logs/*``) or ``proxy`` (everything else: exec,
   attach, portForward, run, containerLogs, pods ...).  Allowed answers are cached 5 minutes,
   denied ones 30 seconds; a denial is ``403 Forbidden (user=U, verb=V, resource=nodes,
   subresource=S)``.

uvicorn does not put the TLS peer certificate into the ASGI scope: :func:`protocol_classes`
returns its HTTP and WebSocket protocols (:mod:`apimachinery.tlspeer`) adding it as the ``tls``
extension (``scope["extensions"]["tls"]["client_cert"]``, the verified certificate's DER bytes).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from starlette.types import ASGIApp, Receive, Scope, Send

from apimachinery import pki, plainhttp
from apimachinery.pki import subject_of
from apimachinery.tlspeer import PeerHttpProtocol, PeerSansIOWebSocketProtocol, peer_certificate

if TYPE_CHECKING:
    from apimachinery.client import Client

log = logging.getLogger(__name__)

ANONYMOUS = "system:anonymous"
UNAUTHENTICATED = "system:unauthenticated"
AUTHENTICATED = "system:authenticated"
WS_TOKEN_PREFIX = "base64url.bearer.authorization.k8s.io."

TOKEN_TTL = 120.0  # Kubernetes' kubelet: --authentication-token-webhook-cache-ttl 2m
ALLOWED_TTL = 300.0  # --authorization-webhook-cache-authorized-ttl 5m
DENIED_TTL = 30.0  # --authorization-webhook-cache-unauthorized-ttl 30s

COMMAND_PATHS = ("/exec", "/attach", "/portForward", "/run")
VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class User:
    """Who made a request (the kubelet's counterpart of the API server's UserInfo)."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Attributes:
    """What a request does, in the terms a SubjectAccessReview asks about."""

    verb: str
    name: str  # the node's name
    subresource: str
    resource: str = "nodes"
    group: str = ""
    version: str = "v1"


def _is_subpath(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return path == prefix or (path.startswith(prefix) and path[len(prefix)] == "/")


def request_attributes(method: str, path: str, node_name: str) -> Attributes:
    """Kubernetes' kubelet mapping of a request to attributes on ``nodes/NODE/<subresource>``."""
    if _is_subpath(path, "/stats/"):
        sub = "stats"
    elif _is_subpath(path, "/metrics"):
        sub = "metrics"
    elif _is_subpath(path, "/logs/"):
        sub = "log"
    else:
        sub = "proxy"
    verb = VERBS.get(method.upper(), "")
    if any(_is_subpath(path, p) for p in COMMAND_PATHS):
        # a WebSocket exec/attach/portForward starts as a GET: still "create", so that "get" on
        # nodes/proxy (monitoring) never runs commands (as the API server does for pods/exec)
        verb = "create"
    return Attributes(verb, node_name, sub)


def x509_user(cert: bytes | None) -> User | None:
    """The user of a verified client certificate (DER or PEM bytes): CN the name, O values the groups."""
    if not cert:
        return None
    try:
        cn, orgs = subject_of(cert)
    except ValueError:
        log.warning("client certificate could not be read; treating the request as unauthenticated")
        return None
    if not cn:
        return None
    return User(cn, groups=(*orgs, AUTHENTICATED))


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The bearer token of a request: the Authorization header, else (WebSocket) the subprotocol."""
    protocols: list[str] = []
    for key, value in headers:
        k = key.lower()
        if k == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif k == b"sec-websocket-protocol":
            protocols += [p.strip() for p in value.decode("latin-1").split(",")]
    for p in protocols:
        if p.startswith(WS_TOKEN_PREFIX):
            encoded = p[len(WS_TOKEN_PREFIX) :]
            try:
                token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            except (ValueError, UnicodeDecodeError):
                return None
            return token or None
    return None


K = TypeVar("K")
V = TypeVar("V")


@dataclass
class TTLCache(Generic[K, V]):
    """A small cache whose entries expire, each with its own time to live; ``clock`` for tests."""

    max_entries: int = 4096
    clock: Callable[[], float] = time.monotonic
    _items: dict[K, tuple[float, V]] = field(default_factory=dict)

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        if hit[0] <= self.clock():
            del self._items[key]
            return None
        return hit[1]

    def put(self, key: K, value: V, ttl: float) -> None:
        if len(self._items) >= self.max_entries:
            now = self.clock()
            for k in [k for k, (exp, _) in self._items.items() if exp <= now]:
                del self._items[k]
            while len(self._items) >= self.max_entries:
                del self._items[next(iter(self._items))]
        self._items[key] = (self.clock() + ttl, value)

    def __len__(self) -> int:
        return len(self._items)


Post = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def client_post(client: Client) -> Post:
    """POST a review through the kubelet's API client; the answer's JSON."""

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = await client.raw("POST", path, body=body)
        out: dict[str, Any] = resp.json()
        return out

    return post


class TokenAuthenticator:
    """Bearer tokens checked with a ``TokenReview`` (answers cached ``ttl`` seconds, by token hash)."""

    PATH = "/apis/authentication.k8s.io/v1/tokenreviews"

    def __init__(
        self, post: Post, ttl: float = TOKEN_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.post = post
        self.ttl = ttl
        self.cache: TTLCache[str, tuple[User | None]] = TTLCache(clock=clock)

    async def authenticate(self, token: str) -> User | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        hit = self.cache.get(key)
        if hit is not None:
            return hit[0]
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        try:
            answer = await self.post(self.PATH, review)
        except Exception as exc:  # noqa: BLE001 - the API server unreachable: not authenticated, not cached
            log.warning("token review failed: %s", exc)
            return None
        status = answer.get("status") or {}
        user: User | None = None
        if status.get("authenticated"):
            info = status.get("user") or {}
            extra = info.get("extra") or {}
            user = User(
                str(info.get("username") or ""),
                str(info.get("uid") or ""),
                tuple(info.get("groups") or ()),
                tuple(sorted((k, tuple(v or ())) for k, v in extra.items())),
            )
            if not user.name:
                user = None
        self.cache.put(key, (user,), self.ttl)
        return user


class WebhookAuthorizer:
    """Decisions from a ``SubjectAccessReview``: allowed cached 5 min, denied 30 s (Kubernetes' defaults)."""

    PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

    def __init__(
        self,
        post: Post,
        allowed_ttl: float = ALLOWED_TTL,
        denied_ttl: float = DENIED_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.post = post
        self.allowed_ttl = allowed_ttl
        self.denied_ttl = denied_ttl
        self.cache: TTLCache[tuple[User, Attributes], tuple[bool, str]] = TTLCache(clock=clock)

    @staticmethod
    def review(user: User, attrs: Attributes) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "resourceAttributes": {
                "verb": attrs.verb,
                "group": attrs.group,
                "version": attrs.version,
                "resource": attrs.resource,
                "subresource": attrs.subresource,
                "name": attrs.name,
            },
            "user": user.name,
            "groups": list(user.groups),
        }
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra}
        return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}

    async def authorize(self, user: User, attrs: Attributes) -> tuple[bool, str]:
        key = (user, attrs)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        try:
            answer = await self.post(self.PATH, self.review(user, attrs))
        except Exception as exc:  # noqa: BLE001 - no answer: denied, not cached
            log.warning("subject access review failed: %s", exc)
            return False, f"subject access review failed: {exc}"
        status = answer.get("status") or {}
        decision = (bool(status.get("allowed")) and not status.get("denied"), str(status.get("reason") or ""))
        self.cache.put(key, decision, self.allowed_ttl if decision[0] else self.denied_ttl)
        return decision


class AlwaysAllow:
    async def authorize(self, user: User, attrs: Attributes) -> tuple[bool, str]:
        return True, ""


def forbidden_message(user: User, attrs: Attributes) -> str:
    """Kubernetes' kubelet wording for a denied request."""
    return (
        f"Forbidden (user={user.name}, verb={attrs.verb}, resource={attrs.resource}, "
        f"subresource={attrs.subresource})"
    )


class AuthMiddleware:
    """ASGI middleware: authenticate and authorize every HTTP request and WebSocket upgrade."""

    def __init__(
        self,
        app: ASGIApp,
        node_name: str,
        *,
        tokens: TokenAuthenticator | None,
        authorizer: WebhookAuthorizer | AlwaysAllow,
        anonymous: bool = False,
    ) -> None:
        self.app = app
        self.node_name = node_name
        self.tokens = tokens
        self.authorizer = authorizer
        self.anonymous = anonymous

    async def authenticate(self, scope: Scope) -> User | None:
        cert = ((scope.get("extensions") or {}).get("tls") or {}).get("client_cert")
        user = x509_user(cert)
        if user is not None:
            return user
        token = bearer_token(scope.get("headers") or ())
        if token is not None:
            # presented but not valid: 401, never anonymous (as Kubernetes)
            return await self.tokens.authenticate(token) if self.tokens is not None else None
        if self.anonymous:
            return User(ANONYMOUS, groups=(UNAUTHENTICATED,))
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        user = await self.authenticate(scope)
        if user is None:
            await _refuse(scope, receive, send, 401, "Unauthorized")
            return
        method = scope.get("method") or "GET"  # a WebSocket upgrade is a GET
        attrs = request_attributes(method, scope.get("path") or "/", self.node_name)
        allowed, reason = await self.authorizer.authorize(user, attrs)
        if not allowed:
            log.info("refused %s %s for %s: %s", method, scope.get("path"), user.name, reason or "denied")
            await _refuse(scope, receive, send, 403, forbidden_message(user, attrs))
            return
        scope = {**scope, "user": user}
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, code: int, message: str) -> None:
    """A plain-text error, as Kubernetes' kubelet writes it; a WebSocket upgrade is refused with
    the same HTTP answer (the WebSocket denial response extension) or, without it, closed."""
    body = message.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()  # websocket.connect
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": code, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})


def with_auth(
    app: ASGIApp,
    node_name: str,
    client: Client | None,
    *,
    anonymous: bool = False,
    authorization_mode: str = "Webhook",
) -> AuthMiddleware:
    """``app`` behind the kubelet's authentication and authorization (``client`` asks the API server)."""
    post = client_post(client) if client is not None else None
    tokens = TokenAuthenticator(post) if post is not None else None
    authorizer: WebhookAuthorizer | AlwaysAllow
    if authorization_mode == "AlwaysAllow":
        authorizer = AlwaysAllow()
    elif post is None:
        raise ValueError("--authorization-mode Webhook needs a connection to the API server")
    else:
        authorizer = WebhookAuthorizer(post)
    return AuthMiddleware(app, node_name, tokens=tokens, authorizer=authorizer, anonymous=anonymous)


class _HTTPProtocol(PeerHttpProtocol):
    def connection_scope(self, transport: Any) -> Mapping[str, Any]:
        return _tls_scope(transport)


class _WSProtocol(PeerSansIOWebSocketProtocol):
    def connection_scope(self, transport: Any) -> Mapping[str, Any]:
        return _tls_scope(transport)


def _tls_scope(transport: Any) -> dict[str, Any]:
    return {"extensions": {"tls": {"client_cert": peer_certificate(transport)}}}


def protocol_classes() -> tuple[type[asyncio.Protocol], type[asyncio.Protocol]]:
    """uvicorn's HTTP (httptools) and WebSocket (websockets, sans-I/O) protocols, each putting the
    connection's verified client certificate into every request's scope."""
    return _HTTPProtocol, _WSProtocol


def ensure_serving_cert(
    directory: str | os.PathLike[str], node_name: str, ips: Iterable[str]
) -> tuple[str, str]:
    """A self-signed serving certificate for this kubelet (``kubelet.crt``/``kubelet.key`` in
    ``directory``), as Kubernetes' kubelet makes when it is given none: reused while it names the
    same hosts and is more than 30 days from expiry, otherwise made again (ECDSA P-256, 1 year)."""
    import ipaddress

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    addresses = {ip for ip in [*ips, "127.0.0.1"] if ip and not ipaddress.ip_address(ip).is_unspecified}
    crt, key = pki.self_signed_serving_cert(
        path / "kubelet.crt",
        path / "kubelet.key",
        f"{node_name}@{int(time.time())}",
        [*sorted(addresses), node_name, "localhost"],
        validity_days=365,
        renew_within_days=30,
    )
    return str(crt), str(key)


async def serve_healthz(host: str, port: int) -> asyncio.Server:
    """The plain-HTTP ``/healthz`` listener (Kubernetes' kubelet ``--healthz-port``): ``200 ok`` for
    ``GET /healthz``, 404 for anything else; nothing else is served on it."""
    return await plainhttp.serve(host, port, {"/healthz": plainhttp.ok})
