"""Authentication: who sent a request.

As Kubernetes' authenticator chain (k8s.io/apiserver/pkg/authentication):

1. an x509 client certificate, verified during the TLS handshake against ``--client-ca-file``
   (see :mod:`apiserver.serving`): the user is the subject's CN, its groups the O values;
2. a bearer token (``Authorization: Bearer ...``): a service-account JWT
   (:class:`ServiceAccountTokens`), or a bootstrap token ``ID.SECRET`` (:class:`BootstrapTokens`,
   with ``--enable-bootstrap-token-auth``);
3. nothing presented: ``system:anonymous`` in ``system:unauthenticated`` (with
   ``--anonymous-auth``, the default).

A credential that is presented but does not authenticate is a 401 -- it never falls back to
anonymous.  Every authenticated user also gets the group ``system:authenticated``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from apimachinery import bootstraptoken, errors
from apimachinery.pki import load_certificate, subject_of
from apimachinery.resources import ResourceInfo, by_plural
from apimachinery.timefmt import rfc3339

from . import admission, certificates
from .authtypes import (
    ALL_AUTHENTICATED,
    ALL_UNAUTHENTICATED,
    ANONYMOUS,
    SERVICE_ACCOUNT_PREFIX,
    SERVICE_ACCOUNTS_GROUP,
    SYSTEM_MASTERS,
    Attributes,
    UserInfo,
)
from .authz import Authorizer, forbidden_message

if TYPE_CHECKING:
    from .registry import Storage

log = logging.getLogger("apiserver.authn")

ANONYMOUS_USER = UserInfo(ANONYMOUS, (ALL_UNAUTHENTICATED,))
UNSECURED = UserInfo("system:unsecured", (SYSTEM_MASTERS, ALL_AUTHENTICATED))
"""Every request on the insecure port (``--insecure-port``): neither authenticated nor authorized."""

TokenAuthenticator = Callable[[str], Awaitable[UserInfo | None]]
"""A bearer token's user, None when the token is not one this authenticator knows, or raises
:class:`Unauthenticated` for a token it knows to be bad."""


class Unauthenticated(Exception):
    """A presented credential that does not authenticate (the reason goes to the log only)."""


def unauthorized() -> errors.Unauthorized:
    return errors.Unauthorized("Unauthorized")


def x509_user(cert: bytes) -> UserInfo:
    """The user a (verified) client certificate, DER or PEM, names: CN the name, O values the groups,
    and, as Kubernetes' x509 authenticator, extra ``authentication.kubernetes.io/credential-id``
    ``X509SHA256=<hex SHA-256 of the certificate's DER>`` (the audit log tells two certificates of
    one user apart by it)."""
    name, orgs = subject_of(cert)
    if not name:
        raise ValueError("the client certificate has no common name")
    groups = list(dict.fromkeys(orgs))
    if ALL_AUTHENTICATED not in groups:
        groups.append(ALL_AUTHENTICATED)
    return UserInfo(name, tuple(groups), extra=((EXTRA_CREDENTIAL_ID, (x509_credential_id(cert),)),))


def x509_credential_id(cert: bytes) -> str:
    """Kubernetes' credential ID of a client certificate (DER or PEM): ``X509SHA256=`` and the
    lowercase hex SHA-256 of its DER encoding."""
    der = load_certificate(cert).public_bytes(serialization.Encoding.DER)
    return "X509SHA256=" + hashlib.sha256(der).hexdigest()


def bearer_token(value: bytes) -> str:
    """The token of an ``Authorization`` header value, "" when it is not a bearer token."""
    scheme, _, token = value.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip()


class Authenticator:
    """The chain: client certificate, bearer tokens, anonymous."""

    def __init__(self, *, anonymous: bool = True, tokens: list[TokenAuthenticator] | None = None) -> None:
        self.anonymous = anonymous
        self.tokens: list[TokenAuthenticator] = list(tokens or [])

    async def authenticate(self, cert_user: UserInfo | None, authorization: bytes | None) -> UserInfo:
        """The request's user from its certificate's user and its ``Authorization`` header;
        raises a 401 :class:`~apimachinery.errors.Unauthorized`."""
        if cert_user is not None:
            return cert_user
        token = bearer_token(authorization) if authorization else ""
        if token:
            return await self.authenticate_token(token)
        if not self.anonymous:
            raise unauthorized()
        return ANONYMOUS_USER

    async def authenticate_token(self, token: str) -> UserInfo:
        for authenticate in self.tokens:
            try:
                user = await authenticate(token)
            except Unauthenticated:
                raise unauthorized() from None
            if user is not None:
                return user
        # as Kubernetes' bearer-token authenticator: a token nobody recognises is "invalid bearer token"
        raise unauthorized()

    async def review(self, token: str) -> tuple[UserInfo | None, str]:
        """For TokenReview: the token's user, or None and the reason it did not authenticate."""
        for authenticate in self.tokens:
            try:
                user = await authenticate(token)
            except Unauthenticated as e:
                return None, str(e) or "invalid bearer token"
            if user is not None:
                return user, ""
        return None, "invalid bearer token"


def impersonate(
    user: UserInfo, headers: list[tuple[bytes, bytes]], authorizer: Authorizer, who: Any = None
) -> UserInfo:
    """Kubernetes' impersonation (k8s.io/apiserver/pkg/endpoints/filters/impersonation.go)."""
    username = ""
    uid = ""
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        if raw_name[:12] != b"impersonate-":
            continue
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1").strip()
        if name == "impersonate-user":
            username = value
        elif name == "impersonate-group":
            groups.append(value)
        elif name == "impersonate-uid":
            uid = value
        elif name.startswith("impersonate-extra-"):
            key = unquote(name[len("impersonate-extra-") :]).lower()
            extra.setdefault(key, []).append(value)
    if not username:
        if groups or extra or uid:
            wanted = [f"groups={g}" for g in groups] + [
                f"extra[{k}]={v}" for k, vs in extra.items() for v in vs
            ]
            if uid:
                wanted.append(f"uid={uid}")
            raise errors.BadRequest(f"requested [{', '.join(wanted)}] without impersonating a user")
        return user
    # what to check, in Kubernetes' order: the user (or service account), groups, extras, uid
    checks: list[Attributes] = []
    sa_namespace = ""
    if username.startswith(SERVICE_ACCOUNT_PREFIX):
        sa_namespace, _, sa_name = username[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
        checks.append(
            Attributes(user, "impersonate", True, "", "v1", "serviceaccounts", "", sa_namespace, sa_name)
        )
    else:
        checks.append(Attributes(user, "impersonate", True, "", "v1", "users", "", "", username))
    for g in groups:
        checks.append(Attributes(user, "impersonate", True, "", "v1", "groups", "", "", g))
    for key, values in extra.items():
        for v in values:
            checks.append(
                Attributes(user, "impersonate", True, "authentication.k8s.io", "v1", "userextras", key, "", v)
            )
    if uid:
        checks.append(
            Attributes(user, "impersonate", True, "authentication.k8s.io", "v1", "uids", "", "", uid)
        )
    for attrs in checks:
        decision = authorizer.authorize(attrs)
        if not decision.allowed:
            if who is not None:
                who.attributes = attrs
                who.decision = "forbid"
                who.reason = decision.reason
            raise errors.Forbidden(
                forbidden_message(attrs, decision.reason),
                name=attrs.name or None,
                group=attrs.api_group or None,
                kind=attrs.resource,
            )
    if not groups and sa_namespace:
        groups = [SERVICE_ACCOUNTS_GROUP, f"{SERVICE_ACCOUNTS_GROUP}:{sa_namespace}"]
    if username != ANONYMOUS:
        if ALL_AUTHENTICATED not in groups and ALL_UNAUTHENTICATED not in groups:
            groups.append(ALL_AUTHENTICATED)
    elif ALL_UNAUTHENTICATED not in groups:
        groups.append(ALL_UNAUTHENTICATED)
    return UserInfo(
        username,
        tuple(groups),
        uid,
        tuple(sorted((k, tuple(v)) for k, v in extra.items())),
    )


DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass
class Security:
    """What the request pipeline needs: the authenticator chain, the authorizer and the
    service-account token issuer (None without a signing key)."""

    authenticator: Authenticator
    authorizer: Authorizer
    tokens: Any = None

    def impersonate(self, user: UserInfo, headers: list[tuple[bytes, bytes]], who: Any = None) -> UserInfo:
        """The user ``user`` acts as through the ``Impersonate-*`` headers, each part checked with
        verb ``impersonate`` as Kubernetes' impersonation filter does; a 403 names the first part
        refused.  ``who`` (the pipeline's record) gets the decision of a refusal."""
        return impersonate(user, headers, self.authorizer, who)


def from_args(args: argparse.Namespace, storage: Storage) -> Security:
    modes = [m.strip() for m in (args.authorization_mode or "").split(",") if m.strip()]
    authorizer = Authorizer(storage, modes)
    issuers = list(args.service_account_issuer or []) or [DEFAULT_ISSUER]
    audiences = [a.strip() for a in (args.api_audiences or "").split(",") if a.strip()] or issuers
    signing = None
    if args.service_account_signing_key_file:
        data = Path(args.service_account_signing_key_file).read_bytes()
        signing = serialization.load_pem_private_key(data, password=None)
    public = load_keys(list(args.service_account_key_file or []))
    tokens = None
    if signing is not None or public:
        tokens = ServiceAccountTokens(
            storage, issuers=issuers, audiences=audiences, public_keys=public, signing_key=signing
        )
    chain: list[TokenAuthenticator] = [tokens.authenticate] if tokens is not None else []
    if getattr(args, "enable_bootstrap_token_auth", False):
        chain.append(BootstrapTokens(storage).authenticate)
    authenticator = Authenticator(anonymous=args.anonymous_auth, tokens=chain)
    certificates.authorizer = authorizer  # the CertificateApproval/CertificateSigning checks
    return Security(authenticator, authorizer, tokens)


# --- bootstrap tokens -------------------------------------------------------------------------------
# the token's and its Secret's shapes are apimachinery.bootstraptoken's (shared with the
# controllers and `minik token`)
BOOTSTRAP_TOKEN_TYPE = bootstraptoken.SECRET_TYPE
BOOTSTRAP_SECRET_PREFIX = bootstraptoken.SECRET_PREFIX
BOOTSTRAP_NAMESPACE = bootstraptoken.TOKEN_NAMESPACE
BOOTSTRAP_USER_PREFIX = "system:bootstrap:"
BOOTSTRAPPERS_GROUP = "system:bootstrappers"
BOOTSTRAP_TOKEN_RE = bootstraptoken.TOKEN_RE
BOOTSTRAP_GROUP_RE = bootstraptoken.GROUP_RE


def parse_bootstrap_token(token: str) -> tuple[str, str] | None:
    """(ID, SECRET) of a bootstrap token ``[a-z0-9]{6}.[a-z0-9]{16}``, None for anything else."""
    m = BOOTSTRAP_TOKEN_RE.fullmatch(token)
    return (m.group(1), m.group(2)) if m else None


def secret_data(secret: dict[str, Any], key: str) -> str:
    """A Secret's ``data[key]`` decoded (``""`` when missing or not base64)."""
    data = secret.get("data")
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, str):
        return ""
    try:
        return base64.b64decode(value, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def bootstrap_groups(secret: dict[str, Any]) -> list[str]:
    """``system:bootstrappers`` and the ``auth-extra-groups`` (sorted, each
    ``system:bootstrappers:...``); ValueError for a group outside that prefix."""
    groups = {BOOTSTRAPPERS_GROUP}
    extra = secret_data(secret, "auth-extra-groups")
    for group in (g.strip() for g in extra.split(",")) if extra else ():
        if not BOOTSTRAP_GROUP_RE.fullmatch(group):
            raise ValueError(f"{group!r} does not match {BOOTSTRAP_GROUP_RE.pattern}")
        groups.add(group)
    return sorted(groups)


def bootstrap_expired(secret: dict[str, Any], now: float | None = None) -> bool:
    """Whether the token's ``expiration`` (RFC 3339) has passed; an unreadable one counts as passed."""
    expiration = secret_data(secret, "expiration")
    if not expiration:
        return False
    try:
        when = dt.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    except ValueError:
        return True
    if when.tzinfo is None:
        return True  # RFC 3339 needs a zone
    return when.timestamp() <= (time.time() if now is None else now)


def bootstrap_user(token: str, secret: dict[str, Any] | None, now: float | None = None) -> UserInfo:
    """The user of a bootstrap token checked against its Secret, as Kubernetes' bootstrap token
    authenticator; raises :class:`Unauthenticated` (why goes to the log) when it does not hold."""
    parsed = parse_bootstrap_token(token)
    if parsed is None:
        raise Unauthenticated("not a bootstrap token")
    token_id, token_secret = parsed
    name = BOOTSTRAP_SECRET_PREFIX + token_id
    if secret is None:
        raise Unauthenticated(f"no secret {BOOTSTRAP_NAMESPACE}/{name} to match the bootstrap token")
    what = f"bootstrap token secret {BOOTSTRAP_NAMESPACE}/{name}"
    if (secret.get("metadata") or {}).get("deletionTimestamp"):
        raise Unauthenticated(f"{what} is deleted and awaiting removal")
    if secret.get("type") != BOOTSTRAP_TOKEN_TYPE or not isinstance(secret.get("data"), dict):
        raise Unauthenticated(f"{what} has invalid type, expected {BOOTSTRAP_TOKEN_TYPE}")
    if not hmac.compare_digest(secret_data(secret, "token-secret").encode(), token_secret.encode()):
        raise Unauthenticated(f"{what} has invalid value for key token-secret")
    if secret_data(secret, "token-id") != token_id:
        raise Unauthenticated(f"{what} has invalid value for key token-id")
    if bootstrap_expired(secret, now):
        raise Unauthenticated(f"{what} has expired")
    if secret_data(secret, "usage-bootstrap-authentication") != "true":
        raise Unauthenticated(f"{what} not marked usage-bootstrap-authentication=true")
    try:
        groups = bootstrap_groups(secret)
    except ValueError as e:
        raise Unauthenticated(f"{what} has invalid value for key auth-extra-groups: {e}") from None
    return UserInfo(BOOTSTRAP_USER_PREFIX + token_id, (*groups, ALL_AUTHENTICATED))


class BootstrapTokens:
    """Bootstrap tokens (``--enable-bootstrap-token-auth``): ``ID.SECRET`` against the Secret
    ``kube-system/bootstrap-token-ID``, read from the Secrets' watch cache (etcd only while the
    cache is not ready), never once per request."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def secret(self, token_id: str) -> dict[str, Any] | None:
        assert SECRETS is not None
        reg = self.storage.registry(SECRETS)
        name = BOOTSTRAP_SECRET_PREFIX + token_id
        if reg.cache.ready.is_set():
            return reg.cache.get(SECRETS.key(BOOTSTRAP_NAMESPACE, name))  # type: ignore[no-any-return]
        try:
            return await reg.get(BOOTSTRAP_NAMESPACE, name)
        except errors.NotFound:
            return None

    async def authenticate(self, token: str) -> UserInfo | None:
        """The :data:`TokenAuthenticator`: None for a token that is not ``ID.SECRET``."""
        parsed = parse_bootstrap_token(token)
        if parsed is None:
            return None
        try:
            return bootstrap_user(token, await self.secret(parsed[0]))
        except Unauthenticated as e:
            log.info("bootstrap token %s.<redacted>: %s", parsed[0], e)
            raise


# --- service-account tokens -----------------------------------------------------------------------
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_NODE_NAME = "authentication.kubernetes.io/node-name"
EXTRA_NODE_UID = "authentication.kubernetes.io/node-uid"
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
LEEWAY = 60  # seconds of clock skew tolerated on exp/nbf/iat, as Kubernetes (go-jose's default)
MIN_EXPIRATION = 600
MAX_EXPIRATION = 2**32
DEFAULT_EXPIRATION = 3600
_CACHE_MAX = 8192

SERVICE_ACCOUNTS = by_plural("", "v1", "serviceaccounts")
PODS = by_plural("", "v1", "pods")
NODES = by_plural("", "v1", "nodes")
SECRETS = by_plural("", "v1", "secrets")


def load_keys(paths: list[str]) -> list[Any]:
    """Every public key in the PEM files (a private key stands for its public key)."""
    keys: list[Any] = []
    for path in paths:
        data = Path(path).read_bytes()
        for m in re.finditer(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", data, re.S):
            pem = m.group(0)
            kind = m.group(1)
            if b"PRIVATE KEY" in kind:
                keys.append(serialization.load_pem_private_key(pem, password=None).public_key())
            elif kind == b"CERTIFICATE":
                keys.append(load_certificate(pem).public_key())
            elif b"PUBLIC KEY" in kind:
                keys.append(serialization.load_pem_public_key(pem))
        if not keys:
            raise ValueError(f"{path}: no PEM public or private key")
    return keys


def _algorithm(key: Any) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}[key.curve.key_size]
    raise ValueError("service-account keys must be RSA or ECDSA")


def key_id(public_key: Any) -> str:
    """Kubernetes' ``kid``: the unpadded base64url SHA-256 of the public key's DER."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class _Validated:
    user: UserInfo
    expires: float
    audiences: tuple[str, ...]
    namespace: str
    sa_name: str
    sa_uid: str
    pod_name: str
    pod_uid: str
    secret_name: str
    secret_uid: str


class ServiceAccountTokens:
    """Issues (TokenRequest) and validates service-account JWTs signed with the server's key.

    A token names its service account (and, when bound, a pod or secret) by name and uid; it is
    valid only while those objects exist with those uids, looked up in the watch caches."""

    def __init__(
        self,
        storage: Storage,
        *,
        issuers: list[str],
        audiences: list[str],
        public_keys: list[Any],
        signing_key: Any = None,
    ) -> None:
        self.storage = storage
        self.issuer = issuers[0]
        self.issuers = list(issuers)
        self.audiences = list(audiences)
        self.keys = [(k, _algorithm(k)) for k in public_keys]
        self.algorithms = sorted({a for _, a in self.keys})
        self.signing_key = signing_key
        self.signing_alg = _algorithm(signing_key) if signing_key is not None else ""
        self.signing_kid = key_id(signing_key.public_key()) if signing_key is not None else ""
        if signing_key is not None:
            self.keys.append((signing_key.public_key(), self.signing_alg))
            self.algorithms = sorted({a for _, a in self.keys})
        self._cache: dict[str, _Validated] = {}

    # -- issuing -----------------------------------------------------------------------------------
    def issue(
        self,
        namespace: str,
        service_account: dict[str, Any],
        audiences: list[str],
        expiration_seconds: int,
        pod: dict[str, Any] | None = None,
        node: dict[str, Any] | None = None,
        secret: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> tuple[str, int]:
        """A signed token and its expiry (epoch seconds)."""
        if self.signing_key is None:
            raise errors.ServiceUnavailable(
                "the API server has no --service-account-signing-key-file: it cannot issue tokens"
            )
        iat = int(time.time() if now is None else now)
        exp = iat + int(expiration_seconds)
        sa_meta = service_account.get("metadata") or {}
        private: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": sa_meta.get("name"), "uid": sa_meta.get("uid")},
        }
        for key, obj in (("pod", pod), ("secret", secret), ("node", node)):
            if obj is not None:
                meta = obj.get("metadata") or {}
                private[key] = {"name": meta.get("name"), "uid": meta.get("uid")}
        claims = {
            "aud": list(audiences),
            "exp": exp,
            "iat": iat,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "nbf": iat,
            "sub": f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{sa_meta.get('name')}",
        }
        token = jwt.encode(
            claims, self.signing_key, algorithm=self.signing_alg, headers={"kid": self.signing_kid}
        )
        return token, exp

    # -- validating --------------------------------------------------------------------------------
    async def authenticate(self, token: str) -> UserInfo | None:
        """The :data:`TokenAuthenticator` of the API: tokens for the API's audiences."""
        hit = self._cache.get(token)
        if hit is not None and time.time() < hit.expires + LEEWAY:
            await self._check_objects(hit)
            return hit.user
        validated = self._validate(token, self.audiences)
        if validated is None:
            return None
        await self._check_objects(validated)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[token] = validated
        return validated.user

    async def review(self, token: str, audiences: list[str]) -> tuple[UserInfo | None, list[str], str]:
        """For TokenReview: (user, the audiences it was valid for, error)."""
        try:
            validated = self._validate(token, audiences or self.audiences)
            if validated is None:
                return None, [], "invalid bearer token"
            await self._check_objects(validated)
        except Unauthenticated as e:
            return None, [], f"[invalid bearer token, {e}]"
        return validated.user, list(validated.audiences), ""

    def _validate(self, token: str, audiences: list[str]) -> _Validated | None:
        """The token's claims checked (signature, issuer, audience, times); None when it is not a
        JWT of one of our issuers; :class:`Unauthenticated` when it is one but does not hold."""
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        if unverified.get("iss") not in self.issuers:
            return None
        claims = None
        error: Exception | None = None
        for key, alg in self.keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=audiences,
                    issuer=self.issuers,
                    leeway=LEEWAY,
                    options={"require": ["exp", "sub", "iss"]},
                )
                break
            except jwt.InvalidSignatureError as e:
                error = e
            except jwt.ExpiredSignatureError:
                raise Unauthenticated("Token has expired.") from None
            except jwt.InvalidAudienceError:
                raise Unauthenticated("token audiences is invalid for the target audiences") from None
            except jwt.PyJWTError as e:
                error = e
        if claims is None:
            raise Unauthenticated(str(error) if error else "invalid token")
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            raise Unauthenticated("token could not be validated: no kubernetes.io claims")
        namespace = str(private.get("namespace") or "")
        sa = private.get("serviceaccount") or {}
        sa_name, sa_uid = str(sa.get("name") or ""), str(sa.get("uid") or "")
        if not namespace or not sa_name or claims["sub"] != f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{sa_name}":
            raise Unauthenticated("token could not be validated: subject does not match the service account")
        pod = private.get("pod") or {}
        secret = private.get("secret") or {}
        node = private.get("node") or {}
        extra: dict[str, tuple[str, ...]] = {}
        if pod:
            extra[EXTRA_POD_NAME] = (str(pod.get("name") or ""),)
            extra[EXTRA_POD_UID] = (str(pod.get("uid") or ""),)
        if node:
            extra[EXTRA_NODE_NAME] = (str(node.get("name") or ""),)
            if node.get("uid"):
                extra[EXTRA_NODE_UID] = (str(node.get("uid")),)
        if claims.get("jti"):
            extra[EXTRA_CREDENTIAL_ID] = (f"JTI={claims['jti']}",)
        user = UserInfo(
            f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{sa_name}",
            (SERVICE_ACCOUNTS_GROUP, f"{SERVICE_ACCOUNTS_GROUP}:{namespace}", ALL_AUTHENTICATED),
            sa_uid,
            tuple(sorted(extra.items())),
        )
        aud = claims.get("aud")
        token_auds = [aud] if isinstance(aud, str) else list(aud or [])
        return _Validated(
            user,
            float(claims["exp"]),
            tuple(a for a in token_auds if a in audiences),
            namespace,
            sa_name,
            sa_uid,
            str(pod.get("name") or ""),
            str(pod.get("uid") or ""),
            str(secret.get("name") or ""),
            str(secret.get("uid") or ""),
        )

    async def lookup(
        self, info: ResourceInfo | None, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """An object from its watch cache; from etcd while the cache is not ready or does not hold
        it (an object created a moment ago may not have reached the cache yet), as Kubernetes'
        token getter falls back to a live lookup."""
        assert info is not None
        reg = self.storage.registry(info)
        if reg.cache.ready.is_set():
            obj = reg.cache.get(info.key(namespace, name))
            if obj is not None:
                return obj
        try:
            return await reg.get(namespace, name)
        except errors.NotFound:
            return None

    async def _check_objects(self, v: _Validated) -> None:
        sa = await self.lookup(SERVICE_ACCOUNTS, v.namespace, v.sa_name)
        if sa is None:
            raise Unauthenticated(f'serviceaccounts "{v.sa_name}" not found')
        uid = (sa.get("metadata") or {}).get("uid")
        if v.sa_uid and uid != v.sa_uid:
            raise Unauthenticated(f"service account UID ({uid}) does not match claim ({v.sa_uid})")
        if v.pod_name:
            pod = await self.lookup(PODS, v.namespace, v.pod_name)
            if pod is None:
                raise Unauthenticated(f'pods "{v.pod_name}" not found')
            uid = (pod.get("metadata") or {}).get("uid")
            if uid != v.pod_uid:
                raise Unauthenticated(f"pod UID ({uid}) does not match claim ({v.pod_uid})")
        if v.secret_name:
            secret = await self.lookup(SECRETS, v.namespace, v.secret_name)
            if secret is None:
                raise Unauthenticated(f'secrets "{v.secret_name}" not found')
            uid = (secret.get("metadata") or {}).get("uid")
            if uid != v.secret_uid:
                raise Unauthenticated(f"secret UID ({uid}) does not match claim ({v.secret_uid})")


# --- the authentication.k8s.io endpoints ------------------------------------------------------------
def _invalid(kind: str, name: str, field: str, message: str) -> errors.Invalid:
    return errors.invalid(kind, name, [errors.cause(field, message)], "authentication.k8s.io")


async def token_request(
    security: Security | None, namespace: str, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    """``POST /api/v1/namespaces/NS/serviceaccounts/NAME/token``: a TokenRequest answered with a
    signed token (Kubernetes' TokenREST)."""
    tokens: ServiceAccountTokens | None = security.tokens if security is not None else None
    if tokens is None or tokens.signing_key is None:
        raise errors.NotFound("the server could not find the requested resource")
    spec = body.get("spec") or {}
    if not isinstance(spec, dict):
        raise errors.BadRequest("spec: must be an object")
    expiration = spec.get("expirationSeconds")
    if expiration is None:
        expiration = DEFAULT_EXPIRATION
    if not isinstance(expiration, int) or isinstance(expiration, bool):
        raise _invalid(
            "TokenRequest",
            name,
            "spec.expirationSeconds",
            f"Invalid value: {expiration!r}: must be an integer",
        )
    if expiration < MIN_EXPIRATION:
        raise _invalid(
            "TokenRequest",
            name,
            "spec.expirationSeconds",
            f"Invalid value: {expiration}: may not specify a duration less than 10 minutes",
        )
    if expiration > MAX_EXPIRATION:
        raise _invalid(
            "TokenRequest",
            name,
            "spec.expirationSeconds",
            f"Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds",
        )
    audiences = spec.get("audiences") or list(tokens.audiences)
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise _invalid("TokenRequest", name, "spec.audiences", "Invalid value: must be a list of strings")
    sa = await tokens.lookup(SERVICE_ACCOUNTS, namespace, name)
    if sa is None:
        sa_reg = tokens.storage.registry(SERVICE_ACCOUNTS)  # type: ignore[arg-type]
        sa = await sa_reg.get(namespace, name)  # 404 serviceaccounts "NAME" not found
    pod = node = secret = None
    ref = spec.get("boundObjectRef")
    if ref:
        if not isinstance(ref, dict):
            raise errors.BadRequest("spec.boundObjectRef: must be an object")
        kind, ref_name, ref_uid = ref.get("kind") or "", ref.get("name") or "", ref.get("uid") or ""
        api_version = ref.get("apiVersion") or "v1"
        infos = {"Pod": PODS, "Secret": SECRETS, "Node": NODES}
        info = infos.get(kind) if api_version == "v1" else None
        if info is None:
            gv = api_version if "/" in api_version else "/" + api_version
            raise errors.BadRequest(f"cannot bind token to object of type {gv}, Kind={kind}")
        obj = await tokens.lookup(info, namespace if info.namespaced else None, ref_name)
        if obj is None:
            raise errors.not_found(info.plural, ref_name)
        uid = (obj.get("metadata") or {}).get("uid")
        if ref_uid and ref_uid != uid:
            raise errors.conflict(
                kind,
                ref_name,
                "",
                f"the UID in the bound object reference ({ref_uid}) does not match the UID in record. "
                "The object might have been deleted and then recreated",
            )
        if kind == "Pod":
            pod = obj
            if ((obj.get("spec") or {}).get("serviceAccountName") or "default") != name:
                raise errors.BadRequest(
                    f'cannot bind token for serviceaccount "{name}" to pod running with different serviceaccount name.'
                )
            node_name = (obj.get("spec") or {}).get("nodeName")
            if node_name:
                node = await tokens.lookup(NODES, None, node_name) or {"metadata": {"name": node_name}}
        elif kind == "Secret":
            secret = obj
        else:
            node = obj
        ref = {"kind": kind, "apiVersion": api_version, "name": ref_name, "uid": uid}
    admission.admit_token_request(name, pod)  # NodeRestriction: a kubelet's tokens are for its pods
    token, exp = tokens.issue(namespace, sa, audiences, expiration, pod=pod, node=node, secret=secret)
    out_spec: dict[str, Any] = {
        "audiences": audiences,
        "expirationSeconds": expiration,
        "boundObjectRef": ref or None,
    }
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": rfc3339()},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": rfc3339(exp)},
    }


async def token_review(security: Security | None, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /apis/authentication.k8s.io/v1/tokenreviews``: is this token valid, and whose is it?"""
    spec = body.get("spec") or {}
    token = spec.get("token") if isinstance(spec, dict) else None
    if not token or not isinstance(token, str):
        raise errors.BadRequest("token is required for TokenReview in authentication")
    audiences = spec.get("audiences") or []
    status: dict[str, Any] = {"user": {}}
    tokens: ServiceAccountTokens | None = security.tokens if security is not None else None
    if security is not None and parse_bootstrap_token(token) is not None:
        # an audience-agnostic authenticator, as Kubernetes wraps it: valid for the API's audiences
        user, error = await security.authenticator.review(token)
        api_audiences = list(tokens.audiences) if tokens is not None else [DEFAULT_ISSUER]
        valid_for = [a for a in (list(audiences) or api_audiences) if a in api_audiences]
        if user is not None and not valid_for:
            user, error = None, "token audiences is invalid for the target audiences"
        if user is None:
            status["error"] = error
        else:
            status = {"authenticated": True, "user": user.to_status(), "audiences": valid_for}
    elif tokens is None:
        status["error"] = "invalid bearer token"
    else:
        user, valid_for, error = await tokens.review(token, list(audiences))
        if user is None:
            status["error"] = error
        else:
            status = {"authenticated": True, "user": user.to_status(), "audiences": valid_for}
    meta = dict(body.get("metadata") or {})
    meta.setdefault("creationTimestamp", None)
    return {
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": meta,
        "spec": spec,
        "status": status,
    }


def self_subject_review(user: UserInfo) -> dict[str, Any]:
    """``POST /apis/authentication.k8s.io/v1/selfsubjectreviews`` (``kubectl auth whoami``)."""
    return {
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": rfc3339()},
        "status": {"userInfo": user.to_status()},
    }


# --- service account issuer discovery ----------------------------------------------------------------
def openid_configuration(tokens: ServiceAccountTokens) -> dict[str, Any]:
    """``/.well-known/openid-configuration`` for the service-account issuer, as Kubernetes serves it
    (the JWKS at ``ISSUER/openid/v1/jwks``)."""
    return {
        "issuer": tokens.issuer,
        "jwks_uri": tokens.issuer.rstrip("/") + "/openid/v1/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": tokens.algorithms,
    }


def jwks(tokens: ServiceAccountTokens) -> dict[str, Any]:
    """``/openid/v1/jwks``: every public key that verifies service-account tokens."""
    keys = []
    seen = set()
    for key, alg in tokens.keys:
        kid = key_id(key)
        if kid in seen:
            continue
        seen.add(kid)
        algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
        jwk = algorithm.to_jwk(key, as_dict=True)
        keys.append({"use": "sig", **jwk, "kid": kid, "alg": alg})
    return {"keys": keys}
