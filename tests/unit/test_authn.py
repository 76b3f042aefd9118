"""Authentication: client-certificate users, the chain's 401s, service-account tokens (issue,
validation, binding to live objects), TokenRequest/TokenReview and impersonation."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apimachinery import errors
from apimachinery.pki import generate_certificate
from apimachinery.resources import ResourceInfo
from apiserver import authn
from apiserver.authn import (
    ANONYMOUS_USER,
    Authenticator,
    Security,
    ServiceAccountTokens,
    Unauthenticated,
    impersonate,
    token_request,
    token_review,
    x509_user,
)
from apiserver.authtypes import Attributes, Decision, UserInfo

ISSUER = "https://kubernetes.default.svc.cluster.local"


# --- fakes ------------------------------------------------------------------------------------------
class FakeCache:
    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects

        class Ready:
            @staticmethod
            def is_set() -> bool:
                return True

        self.ready = Ready()

    def get(self, key: str) -> dict[str, Any] | None:
        return self.objects.get(key)


class FakeRegistry:
    def __init__(self, cache: FakeCache) -> None:
        self.cache = cache
        self.live_reads = 0

    async def get(self, namespace: str | None, name: str) -> dict[str, Any]:
        """etcd: the same objects (a cache miss reads here)."""
        self.live_reads += 1
        for obj in self.cache.objects.values():
            meta = obj["metadata"]
            if meta["name"] == name and meta.get("namespace") == namespace:
                return obj
        raise errors.NotFound(f'"{name}" not found')


class FakeStorage:
    """Objects by etcd key, served as if from the watch caches."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.reg = FakeRegistry(FakeCache(self.objects))

    def registry(self, info: ResourceInfo) -> FakeRegistry:
        return self.reg

    def put(self, info: ResourceInfo | None, namespace: str | None, obj: dict[str, Any]) -> dict[str, Any]:
        assert info is not None
        self.objects[info.key(namespace, obj["metadata"]["name"])] = obj
        return obj

    def remove(self, info: ResourceInfo | None, namespace: str | None, name: str) -> None:
        assert info is not None
        del self.objects[info.key(namespace, name)]


class FakeAuthorizer:
    """Allows what is in ``allowed`` as (verb, group, resource, subresource, namespace, name)."""

    def __init__(self, allowed: set[tuple[str, ...]] | None = None, everything: bool = False) -> None:
        self.allowed = allowed or set()
        self.everything = everything
        self.asked: list[Attributes] = []

    def authorize(self, a: Attributes) -> Decision:
        self.asked.append(a)
        key = (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name)
        return Decision(self.everything or key in self.allowed, "")


def make_cert(cn: str | None, orgs: tuple[str, ...] = ()) -> bytes:
    """A self-signed certificate for CN=``cn`` (none when None) and O=each of ``orgs``, as DER."""
    cert, _ = generate_certificate(cn, organizations=orgs, days=1)
    return cert.public_bytes(serialization.Encoding.DER)


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def sa_obj(name: str = "bot", uid: str = "sa-uid") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid}}


def pod_obj(name: str = "web", uid: str = "pod-uid", sa: str = "bot", node: str = "n1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid},
        "spec": {"serviceAccountName": sa, "nodeName": node},
    }


@pytest.fixture
def storage() -> FakeStorage:
    s = FakeStorage()
    s.put(authn.SERVICE_ACCOUNTS, "ns", sa_obj())
    s.put(authn.PODS, "ns", pod_obj())
    s.put(authn.NODES, None, {"metadata": {"name": "n1", "uid": "node-uid"}})
    return s


@pytest.fixture
def tokens(storage: FakeStorage) -> ServiceAccountTokens:
    return ServiceAccountTokens(
        storage,  # type: ignore[arg-type]
        issuers=[ISSUER],
        audiences=[ISSUER],
        public_keys=[RSA_KEY.public_key()],
        signing_key=RSA_KEY,
    )


# --- x509 -------------------------------------------------------------------------------------------
def test_x509_user_is_cn_with_organizations_as_groups() -> None:
    der = make_cert("alice", ("dev", "ops", "dev"))
    user = x509_user(der)
    cred = "X509SHA256=" + hashlib.sha256(der).hexdigest()
    assert user == UserInfo(
        "alice",
        ("dev", "ops", "system:authenticated"),
        extra=(("authentication.kubernetes.io/credential-id", (cred,)),),
    )
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    assert x509_user(pem) == user  # the same ID from the PEM of the same certificate


def test_x509_user_of_an_admin_certificate() -> None:
    user = x509_user(make_cert("kubernetes-admin", ("system:masters",)))
    assert user.groups == ("system:masters", "system:authenticated")


def test_x509_certificate_without_common_name_is_refused() -> None:
    with pytest.raises(ValueError):
        x509_user(make_cert(None, ("dev",)))


# --- the chain --------------------------------------------------------------------------------------
async def test_certificate_user_wins_over_a_bad_token() -> None:
    cert_user = UserInfo("alice", ("system:authenticated",))
    assert await Authenticator().authenticate(cert_user, b"Bearer junk") is cert_user


async def test_nothing_presented_is_anonymous() -> None:
    assert await Authenticator().authenticate(None, None) == ANONYMOUS_USER
    assert ANONYMOUS_USER.groups == ("system:unauthenticated",)
    # a non-bearer Authorization header is no credential either
    assert await Authenticator().authenticate(None, b"Basic YTpi") == ANONYMOUS_USER


async def test_anonymous_off_is_401() -> None:
    with pytest.raises(errors.Unauthorized) as e:
        await Authenticator(anonymous=False).authenticate(None, None)
    assert e.value.status()["message"] == "Unauthorized"
    assert e.value.code == 401


async def test_unknown_bearer_token_is_401_not_anonymous(tokens: ServiceAccountTokens) -> None:
    chain = Authenticator(tokens=[tokens.authenticate])
    for header in (b"Bearer not-a-jwt", b"bearer a.b.c"):
        with pytest.raises(errors.Unauthorized):
            await chain.authenticate(None, header)


# --- service-account tokens -------------------------------------------------------------------------
async def test_issued_token_authenticates_as_the_service_account(tokens: ServiceAccountTokens) -> None:
    token, exp = tokens.issue("ns", sa_obj(), [ISSUER], 3600)
    assert exp - time.time() == pytest.approx(3600, abs=5)
    user = await Authenticator(tokens=[tokens.authenticate]).authenticate(None, f"Bearer {token}".encode())
    assert user.name == "system:serviceaccount:ns:bot"
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated")
    assert user.uid == "sa-uid"
    extra = user.extra_dict()
    assert extra[authn.EXTRA_CREDENTIAL_ID][0].startswith("JTI=")


def test_claims_are_kubernetes_claims(tokens: ServiceAccountTokens, storage: FakeStorage) -> None:
    token, _ = tokens.issue(
        "ns", sa_obj(), ["api"], 600, pod=pod_obj(), node={"metadata": {"name": "n1", "uid": "node-uid"}}
    )
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] == authn.key_id(RSA_KEY.public_key())
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == ISSUER and claims["aud"] == ["api"]
    assert claims["sub"] == "system:serviceaccount:ns:bot"
    assert claims["exp"] - claims["iat"] == 600 and claims["nbf"] == claims["iat"]
    assert claims["jti"]
    assert claims["kubernetes.io"] == {
        "namespace": "ns",
        "serviceaccount": {"name": "bot", "uid": "sa-uid"},
        "pod": {"name": "web", "uid": "pod-uid"},
        "node": {"name": "n1", "uid": "node-uid"},
    }


async def test_expired_token_is_refused(tokens: ServiceAccountTokens) -> None:
    token, _ = tokens.issue("ns", sa_obj(), [ISSUER], 600, now=time.time() - 3600)
    with pytest.raises(Unauthenticated, match="expired"):
        await tokens.authenticate(token)


async def test_forged_token_is_refused(tokens: ServiceAccountTokens) -> None:
    good, _ = tokens.issue("ns", sa_obj(), [ISSUER], 3600)
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode(claims, OTHER_KEY, algorithm="RS256")
    with pytest.raises(Unauthenticated):
        await tokens.authenticate(forged)
    # a changed payload under the original signature
    head, _, sig = good.split(".")
    claims["sub"] = "system:serviceaccount:kube-system:admin"
    payload = jwt.api_jws.base64url_encode(jwt.utils.force_bytes(__import__("json").dumps(claims))).decode()
    with pytest.raises(Unauthenticated):
        await tokens.authenticate(f"{head}.{payload}.{sig}")
    # "none" algorithm
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(Unauthenticated):
        await tokens.authenticate(unsigned)


async def test_wrong_audience_is_refused(tokens: ServiceAccountTokens) -> None:
    token, _ = tokens.issue("ns", sa_obj(), ["vault"], 3600)
    with pytest.raises(Unauthenticated, match="audience"):
        await tokens.authenticate(token)


async def test_other_issuer_is_not_ours(tokens: ServiceAccountTokens) -> None:
    claims = {"iss": "https://elsewhere", "sub": "x", "exp": int(time.time()) + 60}
    assert await tokens.authenticate(jwt.encode(claims, RSA_KEY, algorithm="RS256")) is None


async def test_token_dies_with_its_service_account(
    tokens: ServiceAccountTokens, storage: FakeStorage
) -> None:
    token, _ = tokens.issue("ns", sa_obj(), [ISSUER], 3600)
    assert await tokens.authenticate(token) is not None  # now cached
    storage.remove(authn.SERVICE_ACCOUNTS, "ns", "bot")
    with pytest.raises(Unauthenticated, match="not found"):
        await tokens.authenticate(token)
    storage.put(authn.SERVICE_ACCOUNTS, "ns", sa_obj(uid="new-uid"))  # same name, new object
    with pytest.raises(Unauthenticated, match="does not match"):
        await tokens.authenticate(token)


async def test_pod_bound_token_dies_with_its_pod(tokens: ServiceAccountTokens, storage: FakeStorage) -> None:
    token, _ = tokens.issue("ns", sa_obj(), [ISSUER], 3600, pod=pod_obj())
    user = await tokens.authenticate(token)
    assert user is not None
    assert user.extra_dict()[authn.EXTRA_POD_NAME] == ["web"]
    assert user.extra_dict()[authn.EXTRA_POD_UID] == ["pod-uid"]
    storage.put(authn.PODS, "ns", pod_obj(uid="other"))
    with pytest.raises(Unauthenticated):
        await tokens.authenticate(token)
    storage.remove(authn.PODS, "ns", "web")
    with pytest.raises(Unauthenticated):
        await tokens.authenticate(token)


# --- TokenRequest and TokenReview -------------------------------------------------------------------
def security(tokens: ServiceAccountTokens) -> Security:
    return Security(Authenticator(tokens=[tokens.authenticate]), FakeAuthorizer(everything=True), tokens)  # type: ignore[arg-type]


async def test_token_request_defaults(tokens: ServiceAccountTokens) -> None:
    out = await token_request(security(tokens), "ns", "bot", {"spec": {}})
    assert out["kind"] == "TokenRequest" and out["apiVersion"] == "authentication.k8s.io/v1"
    assert out["spec"]["expirationSeconds"] == 3600
    assert out["spec"]["audiences"] == [ISSUER]
    assert out["status"]["expirationTimestamp"].endswith("Z")
    assert await tokens.authenticate(out["status"]["token"]) is not None


@pytest.mark.parametrize(
    ("seconds", "message"),
    [(599, "may not specify a duration less than 10 minutes"), (2**32 + 1, "larger than 2^32 seconds")],
)
async def test_token_request_expiration_limits(
    tokens: ServiceAccountTokens, seconds: int, message: str
) -> None:
    with pytest.raises(errors.Invalid) as e:
        await token_request(security(tokens), "ns", "bot", {"spec": {"expirationSeconds": seconds}})
    assert e.value.causes[0]["field"] == "spec.expirationSeconds"
    assert message in e.value.causes[0]["message"]


async def test_token_request_bound_to_a_pod(tokens: ServiceAccountTokens) -> None:
    ref = {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "pod-uid"}
    out = await token_request(security(tokens), "ns", "bot", {"spec": {"boundObjectRef": ref}})
    claims = jwt.decode(out["status"]["token"], options={"verify_signature": False})
    assert claims["kubernetes.io"]["pod"] == {"name": "web", "uid": "pod-uid"}
    assert claims["kubernetes.io"]["node"] == {"name": "n1", "uid": "node-uid"}
    with pytest.raises(errors.Conflict):
        await token_request(
            security(tokens), "ns", "bot", {"spec": {"boundObjectRef": {**ref, "uid": "stale"}}}
        )
    with pytest.raises(errors.NotFound):
        await token_request(
            security(tokens), "ns", "bot", {"spec": {"boundObjectRef": {**ref, "name": "gone"}}}
        )
    with pytest.raises(errors.BadRequest, match="cannot bind token to object of type /v1, Kind=ConfigMap"):
        await token_request(
            security(tokens), "ns", "bot", {"spec": {"boundObjectRef": {"kind": "ConfigMap", "name": "x"}}}
        )


async def test_token_request_for_a_pod_of_another_service_account(
    tokens: ServiceAccountTokens, storage: FakeStorage
) -> None:
    storage.put(authn.PODS, "ns", pod_obj(name="other", sa="builder"))
    ref = {"kind": "Pod", "apiVersion": "v1", "name": "other"}
    with pytest.raises(errors.BadRequest, match="different serviceaccount name"):
        await token_request(security(tokens), "ns", "bot", {"spec": {"boundObjectRef": ref}})


async def test_token_review(tokens: ServiceAccountTokens) -> None:
    token, _ = tokens.issue("ns", sa_obj(), [ISSUER], 3600)
    out = await token_review(security(tokens), {"spec": {"token": token}})
    assert out["status"]["authenticated"] is True
    assert out["status"]["user"]["username"] == "system:serviceaccount:ns:bot"
    assert out["status"]["audiences"] == [ISSUER]
    bad = await token_review(security(tokens), {"spec": {"token": "nope"}})
    assert "authenticated" not in bad["status"] and bad["status"]["error"]
    vault, _ = tokens.issue("ns", sa_obj(), ["vault"], 3600)
    out = await token_review(security(tokens), {"spec": {"token": vault, "audiences": ["vault"]}})
    assert out["status"]["authenticated"] and out["status"]["audiences"] == ["vault"]
    with pytest.raises(errors.BadRequest):
        await token_review(security(tokens), {"spec": {}})


# --- impersonation ----------------------------------------------------------------------------------
BOB = UserInfo("bob", ("system:authenticated",))


def headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in pairs]


def test_impersonating_a_user_and_group() -> None:
    authz = FakeAuthorizer(
        {("impersonate", "", "users", "", "", "alice"), ("impersonate", "", "groups", "", "", "dev")}
    )
    user = impersonate(BOB, headers(("Impersonate-User", "alice"), ("Impersonate-Group", "dev")), authz)  # type: ignore[arg-type]
    assert user == UserInfo("alice", ("dev", "system:authenticated"))


def test_impersonation_denied_names_the_part() -> None:
    authz = FakeAuthorizer({("impersonate", "", "users", "", "", "alice")})
    with pytest.raises(errors.Forbidden) as e:
        impersonate(
            BOB, headers(("Impersonate-User", "alice"), ("Impersonate-Group", "system:masters")), authz
        )  # type: ignore[arg-type]
    assert e.value.message == (
        'groups "system:masters" is forbidden: User "bob" cannot impersonate resource "groups" '
        'in API group "" at the cluster scope'
    )
    assert e.value.status()["details"] == {"name": "system:masters", "kind": "groups"}


def test_impersonating_a_service_account_gets_its_groups() -> None:
    authz = FakeAuthorizer({("impersonate", "", "serviceaccounts", "", "ns", "bot")})
    user = impersonate(BOB, headers(("Impersonate-User", "system:serviceaccount:ns:bot")), authz)  # type: ignore[arg-type]
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated")


def test_impersonating_extra_and_uid() -> None:
    authz = FakeAuthorizer(
        {
            ("impersonate", "", "users", "", "", "alice"),
            ("impersonate", "authentication.k8s.io", "userextras", "scopes", "", "view"),
            ("impersonate", "authentication.k8s.io", "uids", "", "", "1234"),
        }
    )
    user = impersonate(
        BOB,
        headers(
            ("Impersonate-User", "alice"), ("Impersonate-Extra-Scopes", "view"), ("Impersonate-Uid", "1234")
        ),
        authz,  # type: ignore[arg-type]
    )
    assert user.uid == "1234" and user.extra_dict() == {"scopes": ["view"]}


def test_impersonating_anonymous() -> None:
    user = impersonate(
        BOB, headers(("Impersonate-User", "system:anonymous")), FakeAuthorizer(everything=True)
    )  # type: ignore[arg-type]
    assert user.groups == ("system:unauthenticated",)


def test_groups_without_a_user_is_400() -> None:
    with pytest.raises(errors.BadRequest, match="without impersonating a user"):
        impersonate(BOB, headers(("Impersonate-Group", "dev")), FakeAuthorizer(everything=True))  # type: ignore[arg-type]


# --- the pipeline's admission of a request ----------------------------------------------------------
def scope(user: UserInfo | None, path: str, *hdrs: tuple[str, str], query: bytes = b"") -> dict[str, Any]:
    return {"minik.user": user, "path": path, "query_string": query, "headers": headers(*hdrs)}


def server(authz: FakeAuthorizer, anonymous: bool = True) -> Any:
    from apiserver.app import APIServer

    return APIServer(None, "127.0.0.1:6443", Security(Authenticator(anonymous=anonymous), authz))  # type: ignore[arg-type]


async def test_admit_authorizes_the_request_attributes() -> None:
    from apiserver.app import Admitted

    authz = FakeAuthorizer({("list", "", "pods", "", "ns", "")})
    srv = server(authz)
    who = Admitted()
    await srv.admit(scope(BOB, "/api/v1/namespaces/ns/pods"), "GET", who)
    assert who.user is BOB and who.decision == "allow"
    assert who.attributes is not None and who.attributes.verb == "list"
    with pytest.raises(errors.Forbidden) as e:
        await srv.admit(scope(BOB, "/api/v1/namespaces/ns/pods/web/exec"), "POST", Admitted())
    assert e.value.status()["details"] == {"name": "web", "kind": "pods"}
    assert "cannot create resource" in e.value.message


async def test_admit_401_and_anonymous() -> None:
    from apiserver.app import Admitted

    authz = FakeAuthorizer({("get", "", "", "", "", "")}, everything=False)
    srv = server(FakeAuthorizer(everything=True))
    with pytest.raises(errors.Unauthorized):
        await srv.admit(scope(None, "/healthz", ("Authorization", "Bearer junk")), "GET", Admitted())
    who = Admitted()
    await srv.admit(scope(None, "/healthz"), "GET", who)
    assert who.user == ANONYMOUS_USER
    with pytest.raises(errors.Unauthorized):
        await server(authz, anonymous=False).admit(scope(None, "/healthz"), "GET", Admitted())


async def test_admit_impersonation_is_authorized_as_the_impersonated_user() -> None:
    from apiserver.app import Admitted

    authz = FakeAuthorizer(
        {("impersonate", "", "users", "", "", "alice"), ("get", "", "pods", "", "ns", "web")}
    )
    who = Admitted()
    await server(authz).admit(
        scope(BOB, "/api/v1/namespaces/ns/pods/web", ("Impersonate-User", "alice")), "GET", who
    )
    assert who.user is BOB
    assert who.impersonated is not None and who.impersonated.name == "alice"
    assert authz.asked[-1].user.name == "alice"


async def test_attributes_are_reused_only_for_the_same_user() -> None:
    from apiserver.app import Admitted

    srv = server(FakeAuthorizer(everything=True))
    first, again, other = Admitted(), Admitted(), Admitted()
    await srv.admit(scope(BOB, "/api/v1/namespaces/ns/pods"), "GET", first)
    await srv.admit(scope(BOB, "/api/v1/namespaces/ns/pods"), "GET", again)
    assert first.attributes is again.attributes
    look_alike = UserInfo("bob", ("system:authenticated",))
    await srv.admit(scope(look_alike, "/api/v1/namespaces/ns/pods"), "GET", other)
    assert other.attributes is not None and other.attributes.user is look_alike


# --- the serving protocols' view of a connection ----------------------------------------------------
class FakeSSLObject:
    def __init__(self, der: bytes | None) -> None:
        self.der = der

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        assert binary_form
        return self.der

    def cipher(self) -> tuple[str, str, int]:
        return ("TLS_AES_256_GCM_SHA384", "TLSv1.3", 256)

    def version(self) -> str:
        return "TLSv1.3"


class FakeTransport:
    def __init__(self, sslobj: FakeSSLObject | None) -> None:
        self.sslobj = sslobj

    def get_extra_info(self, name: str) -> Any:
        return self.sslobj if name == "ssl_object" else None


def test_peer_identity_of_a_connection() -> None:
    from apiserver.serving import peer_identity

    cert = make_cert("alice", ("dev",))
    user, ext = peer_identity(FakeTransport(FakeSSLObject(cert)))
    assert user == x509_user(cert) and (user.name, user.groups) == ("alice", ("dev", "system:authenticated"))
    assert ext is not None and ext["tls"]["client_cert_name"] == "CN=alice"
    assert ext["tls"]["tls_version"] == 0x0304
    # TLS without a client certificate: no user (anonymous or a bearer token decides)
    user, ext = peer_identity(FakeTransport(FakeSSLObject(None)))
    assert user is None and ext is not None and ext["tls"]["client_cert_name"] is None
    # plain HTTP
    assert peer_identity(FakeTransport(None)) == (None, None)


def test_issuer_discovery_documents_verify_issued_tokens(tokens: ServiceAccountTokens) -> None:
    config = authn.openid_configuration(tokens)
    assert config["issuer"] == ISSUER
    assert config["jwks_uri"] == f"{ISSUER}/openid/v1/jwks"
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    keys = authn.jwks(tokens)["keys"]
    assert len(keys) == 1 and keys[0]["use"] == "sig" and keys[0]["kty"] == "RSA"
    token, _ = tokens.issue("ns", sa_obj(), ["api"], 600)
    assert jwt.get_unverified_header(token)["kid"] == keys[0]["kid"]
    key = jwt.PyJWK(keys[0])
    assert (
        jwt.decode(token, key.key, algorithms=["RS256"], audience="api")["sub"]
        == "system:serviceaccount:ns:bot"
    )


async def test_a_cache_miss_reads_etcd(tokens: ServiceAccountTokens, storage: FakeStorage) -> None:
    token, _ = tokens.issue("ns", sa_obj(), [ISSUER], 3600)
    assert await tokens.authenticate(token) is not None
    assert storage.reg.live_reads == 0  # served from the watch cache
    storage.remove(authn.SERVICE_ACCOUNTS, "ns", "bot")
    with pytest.raises(Unauthenticated):
        await tokens.authenticate(token)
    assert storage.reg.live_reads == 1  # not in the cache: asked etcd before refusing
