"""Who is asking and what for: the types the API server's authentication, authorization,
admission and audit share.

A request is *authenticated* into a :class:`UserInfo` (``apiserver.authn``), optionally replaced
by the user it impersonates, turned into :class:`Attributes` (verb, API group, resource,
subresource, namespace, name; or a non-resource path) and *authorized* (``apiserver.authz``) before
any handler runs.  The user of the request being served is in :data:`current_user`, so admission
plugins and the audit log read it without every storage call carrying it as an argument.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

# Kubernetes' well-known users and groups (k8s.io/apiserver/pkg/authentication/user).
SYSTEM_MASTERS = "system:masters"
ALL_AUTHENTICATED = "system:authenticated"
ALL_UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"


@dataclass(frozen=True)
class UserInfo:
    """An authenticated (or anonymous) identity, as Kubernetes' ``user.Info``."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()  # sorted (key, values) pairs: hashable

    def extra_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.extra}

    def to_status(self) -> dict[str, object]:
        """The ``UserInfo`` JSON of TokenReview/SubjectAccessReview/SelfSubjectReview."""
        out: dict[str, object] = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = self.extra_dict()
        return out


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do, as Kubernetes' ``authorizer.Attributes``.

    For a resource request: ``verb`` is one of get, list, watch, create, update, patch, delete,
    deletecollection (or impersonate, bind, escalate, use, approve, sign ...), ``api_group`` is ""
    for the core group.  For a non-resource request (``/healthz``, ``/api``, ``/version``):
    ``resource_request`` is False, ``path`` is the URL path and ``verb`` is the lower-case HTTP
    method (get, post, put, patch, delete).
    """

    user: UserInfo
    verb: str
    resource_request: bool = True
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    # "Deny" stops the chain at once; "NoOpinion" lets the next authorizer decide.
    denied: bool = False


@dataclass
class RequestContext:
    """What the dispatcher learnt about the request being served (see :data:`current_user`)."""

    user: UserInfo
    attributes: Attributes | None = None
    annotations: dict[str, str] = field(default_factory=dict)


current_user: ContextVar[UserInfo | None] = ContextVar("minik_current_user", default=None)
"""The user of the request being served; ``None`` outside a request (start-up, controllers in the
API server itself), which admission treats as the API server's own loopback identity."""
