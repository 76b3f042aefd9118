"""Service account tokens for projected ``serviceAccountToken`` volume sources.

As Kubernetes' kubelet token manager: for each (service account, pod, audience, expiration) the
kubelet asks the API server for a token with a TokenRequest
(``POST /api/v1/namespaces/NS/serviceaccounts/NAME/token``) bound to the pod (``boundObjectRef``
kind Pod, name and uid), so the token stops working once the pod is deleted.  A token is used until
80 % of its lifetime has passed (or 24 hours at most), then a new one is requested; the kubelet
writes the file again, atomically like every projected file, and syncs the pod again at the
time the next refresh is due (:meth:`TokenManager.next_refresh`).
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from apimachinery import errors
from apimachinery.resources import kind_info

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SERVICE_ACCOUNTS = kind_info("v1", "ServiceAccount")
REFRESH_FRACTION = 0.8
MAX_TOKEN_AGE = 24 * 3600.0
DEFAULT_EXPIRATION = 3600


class TokenError(Exception):
    """The token could not be obtained (a ``FailedMount``: the pod waits and the kubelet retries)."""


@dataclass(frozen=True)
class TokenKey:
    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str
    audience: str
    expiration_seconds: int


@dataclass
class Token:
    value: str
    issued: float
    expires: float

    def refresh_at(self) -> float:
        """When the kubelet asks for a new token: 80 % through its life, 24 h after issue at most."""
        lifetime = max(0.0, self.expires - self.issued)
        return self.issued + min(lifetime * REFRESH_FRACTION, MAX_TOKEN_AGE)


def token_key(pod: Obj, source: Obj) -> TokenKey:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    return TokenKey(
        str(meta.get("namespace") or "default"),
        str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"),
        str(meta.get("name") or ""),
        str(meta.get("uid") or ""),
        str(source.get("audience") or ""),
        int(source.get("expirationSeconds") or DEFAULT_EXPIRATION),
    )


def token_request(key: TokenKey) -> Obj:
    """The TokenRequest the kubelet sends: audiences as given (none: the API server's default),
    the expiration asked for, bound to the pod."""
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": {"name": key.service_account, "namespace": key.namespace},
        "spec": {
            "audiences": [key.audience] if key.audience else None,
            "expirationSeconds": key.expiration_seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": key.pod_name, "uid": key.pod_uid},
        },
    }


def parse_time(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def token_from_response(resp: Obj, requested_seconds: int, now: float) -> Token:
    status = resp.get("status") or {}
    value = status.get("token")
    if not value:
        raise TokenError("the TokenRequest response holds no token")
    expires = now + requested_seconds
    stamp = status.get("expirationTimestamp")
    if stamp:
        try:
            expires = parse_time(str(stamp))
        except ValueError:
            pass
    return Token(str(value), now, expires)


class TokenManager:
    """Cached, refreshed service account tokens of the pods on this node."""

    def __init__(self, client: Any, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self._tokens: dict[TokenKey, Token] = {}

    def _fresh(self, key: TokenKey) -> Token | None:
        token = self._tokens.get(key)
        if token is None:
            return None
        now = self.clock()
        if now >= token.refresh_at() or now >= token.expires:
            return None
        return token

    async def get(self, pod: Obj, source: Obj) -> str:
        """The token for one ``serviceAccountToken`` source of ``pod`` (asking for a new one when
        there is none yet or the one held is due for refresh)."""
        key = token_key(pod, source)
        token = self._fresh(key)
        if token is not None:
            return token.value
        try:
            resp = await self.client.create_subresource(
                SERVICE_ACCOUNTS, key.service_account, "token", token_request(key), key.namespace
            )
        except (errors.StatusError, OSError, httpx.HTTPError) as exc:
            old = self._tokens.get(key)
            if old is not None and self.clock() < old.expires:
                log.warning(
                    "refreshing the token of %s/%s failed (keeping the current one): %s",
                    key.namespace,
                    key.pod_name,
                    exc,
                )
                return old.value
            raise TokenError(f"failed to fetch token: {exc}") from exc
        token = token_from_response(resp, key.expiration_seconds, self.clock())
        self._tokens[key] = token
        log.info(
            "%s/%s: service account token for %s issued (expires in %.0f s)",
            key.namespace,
            key.pod_name,
            key.service_account,
            token.expires - token.issued,
        )
        return token.value

    def next_refresh(self, pod_uid: str) -> float | None:
        """The earliest time a token of the pod is due for refresh (None: it has none)."""
        times = [t.refresh_at() for k, t in self._tokens.items() if k.pod_uid == pod_uid]
        return min(times) if times else None

    def forget_pod(self, pod_uid: str) -> None:
        for key in [k for k in self._tokens if k.pod_uid == pod_uid]:
            del self._tokens[key]


def token_sources(pod: Obj) -> list[tuple[str, Obj]]:
    """(volume name, source) of each ``serviceAccountToken`` projection of the pod's volumes."""
    out: list[tuple[str, Obj]] = []
    for v in (pod.get("spec") or {}).get("volumes") or []:
        for s in (v.get("projected") or {}).get("sources") or []:
            if isinstance(s.get("serviceAccountToken"), dict):
                out.append((str(v.get("name") or ""), s["serviceAccountToken"]))
    return out


def source_id(source: Obj) -> str:
    """How :class:`~kubelet.envvars.PodSources` keys a fetched token: audience and expiration."""
    return f"{source.get('audience') or ''}|{int(source.get('expirationSeconds') or DEFAULT_EXPIRATION)}"
