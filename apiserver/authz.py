"""Authorization: may this user do this?  (Placeholder: allows everything until the RBAC and Node
authorizers land.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .authtypes import Attributes, Decision, UserInfo

if TYPE_CHECKING:
    from .registry import Storage


class Authorizer:
    def __init__(self, storage: Storage, modes: Sequence[str] = ("Node", "RBAC")) -> None:
        self.storage = storage
        self.modes = tuple(modes)

    async def start(self) -> None:
        """Ensure the bootstrap policy exists and start following the RBAC objects."""

    def authorize(self, attrs: Attributes) -> Decision:
        return Decision(True, "")

    def rules_for(
        self, user: UserInfo, namespace: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        return [], [], True

    async def review(
        self, kind: str, body: dict[str, Any], user: UserInfo, namespace: str | None
    ) -> dict[str, Any]:
        """Answer a SubjectAccessReview, SelfSubjectAccessReview, LocalSubjectAccessReview or
        SelfSubjectRulesReview: ``body`` with its ``status`` filled in."""
        return {**body, "status": {"allowed": True}}


def forbidden_message(attrs: Attributes, reason: str = "") -> str:
    """Kubernetes' wording of a 403."""
    who = f'User "{attrs.user.name}"'
    if not attrs.resource_request:
        msg = f'forbidden: {who} cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
        what = f'{resource} "{attrs.name}"' if attrs.name else resource
        msg = (
            f'{what} is forbidden: {who} cannot {attrs.verb} resource "{resource}" '
            f'in API group "{attrs.api_group}"'
        )
        msg += f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    return f"{msg}: {reason}" if reason else msg
