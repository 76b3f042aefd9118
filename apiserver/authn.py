"""Authentication: who sent a request.

As Kubernetes' authenticator chain (k8s.io/apiserver/pkg/authentication):

1. an x509 client certificate, verified during the TLS handshake against ``--client-ca-file``
   (see :mod:`apiserver.serving`): the user is the subject's CN, its groups the O values;
2. a bearer token (``Authorization: Bearer ...``): a service-account JWT
   (:class:`apiserver.satokens.ServiceAccountTokens`);
3. nothing presented: ``system:anonymous`` in ``system:unauthenticated`` (with
   ``--anonymous-auth``, the default).

A credential that is presented but does not authenticate is a 401 -- it never falls back to
anonymous.  Every authenticated user also gets the group ``system:authenticated``.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from apimachinery import errors
from apimachinery.pki import subject_of

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
    """The user a (verified) client certificate, DER or PEM, names: CN the name, O values the groups."""
    name, orgs = subject_of(cert)
    if not name:
        raise ValueError("the client certificate has no common name")
    groups = list(dict.fromkeys(orgs))
    if ALL_AUTHENTICATED not in groups:
        groups.append(ALL_AUTHENTICATED)
    return UserInfo(name, tuple(groups))


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


def header_values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in headers if k == name]


__all__ = [
    "ANONYMOUS_USER",
    "Authenticator",
    "UNSECURED",
    "Unauthenticated",
    "bearer_token",
    "header_values",
    "unauthorized",
    "x509_user",
]


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
    return Security(Authenticator(anonymous=args.anonymous_auth), authorizer)
