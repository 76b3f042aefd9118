"""The kubelet API's authentication and authorization: request attributes, credentials, the
TokenReview and SubjectAccessReview caches, and the middleware's answers (no network)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import MutableMapping
from typing import Any

import pytest

from apimachinery.pki import PKI
from kubelet import auth
from kubelet.auth import Attributes, User


@pytest.mark.parametrize(
    ("method", "path", "verb", "sub"),
    [
        ("GET", "/stats/summary", "get", "stats"),
        ("GET", "/stats", "get", "stats"),
        ("GET", "/metrics", "get", "metrics"),
        ("GET", "/metrics/cadvisor", "get", "metrics"),
        ("GET", "/metricsfoo", "get", "proxy"),
        ("GET", "/logs/", "get", "log"),
        ("GET", "/logs/syslog", "get", "log"),
        ("GET", "/pods", "get", "proxy"),
        ("GET", "/healthz", "get", "proxy"),
        ("GET", "/containerLogs/ns/p/c", "get", "proxy"),
        ("POST", "/pods", "create", "proxy"),
        ("PUT", "/pods", "update", "proxy"),
        ("PATCH", "/pods", "patch", "proxy"),
        ("DELETE", "/pods", "delete", "proxy"),
        # commands run: create whatever the method (a WebSocket upgrade is a GET)
        ("GET", "/exec/ns/p/c", "create", "proxy"),
        ("GET", "/attach/ns/p/c", "create", "proxy"),
        ("GET", "/portForward/ns/p", "create", "proxy"),
        ("POST", "/run/ns/p/c", "create", "proxy"),
        ("GET", "/executor", "get", "proxy"),
    ],
)
def test_request_attributes(method: str, path: str, verb: str, sub: str) -> None:
    attrs = auth.request_attributes(method, path, "node-1")
    assert attrs == Attributes(verb, "node-1", sub)
    assert (attrs.resource, attrs.group, attrs.version) == ("nodes", "", "v1")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def client_cert(pki: PKI, user: str, groups: tuple[str, ...] = ()) -> bytes:
    crt, _ = pki.client_cert(f"client-{len(groups)}-{user}", user, groups)
    return crt.read_bytes()


def test_x509_user_from_verified_certificate(pki: PKI) -> None:
    cert = client_cert(pki, "kube-apiserver-kubelet-client", ("system:masters", "ops"))
    assert auth.x509_user(cert) == User(
        "kube-apiserver-kubelet-client", groups=("system:masters", "ops", "system:authenticated")
    )
    assert auth.x509_user(None) is None
    assert auth.x509_user(b"") is None
    assert auth.x509_user(b"not a certificate") is None


def test_bearer_token_from_header_or_websocket_protocol() -> None:
    assert auth.bearer_token([(b"authorization", b"Bearer abc.def")]) == "abc.def"
    assert auth.bearer_token([(b"Authorization", b"bearer  xyz ")]) == "xyz"
    assert auth.bearer_token([(b"authorization", b"Basic Zm9vOmJhcg==")]) is None
    assert auth.bearer_token([(b"authorization", b"Bearer ")]) is None
    encoded = base64.urlsafe_b64encode(b"tok-en").decode().rstrip("=")
    proto = f"v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.{encoded}".encode()
    assert auth.bearer_token([(b"sec-websocket-protocol", proto)]) == "tok-en"
    assert auth.bearer_token([]) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeAPI:
    """Answers TokenReviews (``good`` is user ``alice``) and SubjectAccessReviews (``allowed`` users)."""

    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = False

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((path, body))
        if self.fail:
            raise OSError("connection refused")
        spec = body["spec"]
        if path.endswith("/tokenreviews"):
            if spec["token"] != "good":
                return {"status": {"authenticated": False, "error": "invalid token"}}
            user = {"username": "alice", "uid": "u1", "groups": ["devs"], "extra": {"k": ["v"]}}
            return {"status": {"authenticated": True, "user": user}}
        return {"status": {"allowed": spec["user"] in self.allowed, "reason": "by test"}}


def test_token_review_cached_both_ways() -> None:
    api, clock = FakeAPI(set()), Clock()
    tokens = auth.TokenAuthenticator(api.post, ttl=120, clock=clock)
    good = asyncio.run(tokens.authenticate("good"))
    assert good == User("alice", "u1", ("devs",), (("k", ("v",)),))
    assert api.calls[0][0] == "/apis/authentication.k8s.io/v1/tokenreviews"
    assert api.calls[0][1]["kind"] == "TokenReview"
    assert asyncio.run(tokens.authenticate("bad")) is None
    assert len(api.calls) == 2
    assert asyncio.run(tokens.authenticate("good")) == good
    assert asyncio.run(tokens.authenticate("bad")) is None
    assert len(api.calls) == 2  # both answers came from the cache
    clock.now += 121
    asyncio.run(tokens.authenticate("good"))
    assert len(api.calls) == 3
    # the token itself is not a cache key
    assert all("good" not in str(k) for k in tokens.cache._items)


def test_token_review_failure_is_not_cached() -> None:
    api = FakeAPI(set())
    tokens = auth.TokenAuthenticator(api.post, clock=Clock())
    api.fail = True
    assert asyncio.run(tokens.authenticate("good")) is None
    api.fail = False
    assert asyncio.run(tokens.authenticate("good")) is not None


def test_subject_access_review_and_its_cache() -> None:
    api, clock = FakeAPI({"alice"}), Clock()
    authz = auth.WebhookAuthorizer(api.post, clock=clock)
    alice = User("alice", "u1", ("devs", "system:authenticated"), (("k", ("v",)),))
    bob = User("bob", groups=("system:authenticated",))
    attrs = auth.request_attributes("GET", "/exec/ns/p/c", "node-1")
    assert asyncio.run(authz.authorize(alice, attrs)) == (True, "by test")
    path, review = api.calls[0]
    assert path == "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    assert review == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "verb": "create",
                "group": "",
                "version": "v1",
                "resource": "nodes",
                "subresource": "proxy",
                "name": "node-1",
            },
            "user": "alice",
            "groups": ["devs", "system:authenticated"],
            "uid": "u1",
            "extra": {"k": ["v"]},
        },
    }
    assert asyncio.run(authz.authorize(bob, attrs)) == (False, "by test")
    assert len(api.calls) == 2
    # denied: 30 s; allowed: 5 min
    clock.now += 31
    asyncio.run(authz.authorize(alice, attrs))
    asyncio.run(authz.authorize(bob, attrs))
    assert len(api.calls) == 3
    clock.now += 270
    asyncio.run(authz.authorize(alice, attrs))
    assert len(api.calls) == 4
    # other attributes are another question
    asyncio.run(authz.authorize(alice, auth.request_attributes("GET", "/stats/summary", "node-1")))
    assert len(api.calls) == 5


def test_subject_access_review_error_denies_without_caching() -> None:
    api = FakeAPI({"alice"})
    authz = auth.WebhookAuthorizer(api.post, clock=Clock())
    attrs = auth.request_attributes("GET", "/pods", "n")
    api.fail = True
    allowed, _reason = asyncio.run(authz.authorize(User("alice"), attrs))
    assert not allowed
    api.fail = False
    assert asyncio.run(authz.authorize(User("alice"), attrs))[0]


def test_ttl_cache_bounded() -> None:
    clock = Clock()
    cache: auth.TTLCache[int, int] = auth.TTLCache(max_entries=3, clock=clock)
    for i in range(5):
        cache.put(i, i, 10)
    assert len(cache) == 3
    assert cache.get(4) == 4 and cache.get(0) is None
    clock.now += 11
    assert cache.get(4) is None


async def _call(mw: auth.AuthMiddleware, scope: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    sent: list[dict[str, Any]] = []
    seen: list[Any] = []
    inbox = [{"type": "websocket.connect"}] if scope["type"] == "websocket" else [{"type": "http.request"}]

    async def receive() -> MutableMapping[str, Any]:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["user"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw.app = app
    await mw(scope, receive, send)
    return sent, seen


def _scope(
    path: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None, **kw: Any
) -> Any:
    scope = {"type": "http", "method": method, "path": path, "headers": headers or []}
    scope.update(kw)
    return scope


def _middleware(api: FakeAPI, anonymous: bool = False) -> auth.AuthMiddleware:
    async def unset(scope: Any, receive: Any, send: Any) -> None:  # replaced by _call
        raise AssertionError

    return auth.AuthMiddleware(
        unset,
        "node-1",
        tokens=auth.TokenAuthenticator(api.post, clock=Clock()),
        authorizer=auth.WebhookAuthorizer(api.post, clock=Clock()),
        anonymous=anonymous,
    )


def test_middleware_refuses_without_credentials() -> None:
    api = FakeAPI({"alice"})
    sent, seen = asyncio.run(_call(_middleware(api), _scope("/run/ns/p/c", "POST")))
    assert sent[0]["status"] == 401 and sent[1]["body"] == b"Unauthorized"
    assert not seen and not api.calls


def test_middleware_bad_token_is_401_even_with_anonymous_on() -> None:
    api = FakeAPI({"alice"})
    headers = [(b"authorization", b"Bearer forged")]
    sent, seen = asyncio.run(_call(_middleware(api, anonymous=True), _scope("/pods", headers=headers)))
    assert sent[0]["status"] == 401 and not seen


def test_middleware_anonymous_when_enabled_is_authorized_as_such() -> None:
    api = FakeAPI({"system:anonymous"})
    sent, seen = asyncio.run(_call(_middleware(api, anonymous=True), _scope("/pods")))
    assert sent[0]["status"] == 200
    assert seen == [User("system:anonymous", groups=("system:unauthenticated",))]


def test_middleware_client_certificate_and_forbidden_message(pki: PKI) -> None:
    api = FakeAPI({"kube-apiserver-kubelet-client"})
    tls = {"tls": {"client_cert": client_cert(pki, "kube-apiserver-kubelet-client")}}
    sent, seen = asyncio.run(_call(_middleware(api), _scope("/exec/ns/p/c", extensions=tls)))
    assert sent[0]["status"] == 200 and seen[0].name == "kube-apiserver-kubelet-client"
    other = {"tls": {"client_cert": client_cert(pki, "mallory")}}
    sent, seen = asyncio.run(_call(_middleware(api), _scope("/stats/summary", extensions=other)))
    assert sent[0]["status"] == 403 and not seen
    assert sent[1]["body"] == b"Forbidden (user=mallory, verb=get, resource=nodes, subresource=stats)"


def test_middleware_websocket_refusal_is_an_http_answer() -> None:
    api = FakeAPI(set())
    scope = _scope("/exec/ns/p/c", extensions={"websocket.http.response": {}})
    scope["type"] = "websocket"
    del scope["method"]
    sent, seen = asyncio.run(_call(_middleware(api), scope))
    assert [m["type"] for m in sent] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert sent[0]["status"] == 401 and not seen
    scope.pop("extensions")
    sent, _ = asyncio.run(_call(_middleware(api), scope))
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_with_auth_modes() -> None:
    mw = auth.with_auth(None, "n", None, authorization_mode="AlwaysAllow")  # type: ignore[arg-type]
    assert isinstance(mw.authorizer, auth.AlwaysAllow) and mw.tokens is None
    with pytest.raises(ValueError, match="Webhook"):
        auth.with_auth(None, "n", None)  # type: ignore[arg-type]
