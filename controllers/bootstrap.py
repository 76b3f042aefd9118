"""The bootstrap token controllers: ``bootstrapsigner`` and ``tokencleaner``, as Kubernetes'.

``bootstrapsigner`` keeps ConfigMap ``kube-public/cluster-info`` signed: for every bootstrap token
Secret in ``kube-system`` that is well formed, has ``usage-bootstrap-signing: "true"`` and has not
expired, data key ``jws-kubeconfig-ID`` holds the detached HS256 JWS of the ConfigMap's
``kubeconfig`` keyed with the token's secret; signatures of tokens that are gone, expired or no
longer for signing are removed (:mod:`apimachinery.bootstraptoken`).  A ConfigMap without a
``kubeconfig`` is left alone.

``tokencleaner`` deletes bootstrap token Secrets whose ``expiration`` has passed (an unparsable one
counts as expired), each when its time comes.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from apimachinery import errors
from apimachinery.bootstraptoken import (
    CLUSTER_INFO_NAME,
    CLUSTER_INFO_NAMESPACE,
    JWS_KEY_PREFIX,
    KUBECONFIG_KEY,
    SECRET_TYPE,
    TOKEN_NAMESPACE,
    USAGE_PREFIX,
    compute_detached_signature,
    expiration_of,
    is_expired,
    secret_data,
    token_of_secret,
)
from apimachinery.client import Obj
from apimachinery.resources import kind_info

from .base import Controller, ControllerContext
from .util import deep_copy, name_of, namespace_of, uid_of

log = logging.getLogger(__name__)

CONFIGMAPS = kind_info("v1", "ConfigMap")
SECRETS = kind_info("v1", "Secret")
CLUSTER_INFO_KEY = f"{CLUSTER_INFO_NAMESPACE}/{CLUSTER_INFO_NAME}"


def signing_tokens(secrets: list[Obj], now: dt.datetime) -> dict[str, str]:
    """ID -> secret of the tokens that sign ``cluster-info`` (Kubernetes' ``validateSecretForSigning``)."""
    tokens: dict[str, str] = {}
    for secret in secrets:
        if namespace_of(secret) != TOKEN_NAMESPACE or secret.get("type") != SECRET_TYPE:
            continue
        parsed = token_of_secret(secret)
        if parsed is None or is_expired(secret, now):
            continue
        if secret_data(secret).get(USAGE_PREFIX + "signing") != "true":
            continue
        tokens[parsed[0]] = parsed[1]
    return tokens


def signed_cluster_info(cm: Obj, tokens: dict[str, str]) -> Obj | None:
    """``cm`` with exactly one valid signature per token; None when it is right already (or has no
    kubeconfig to sign)."""
    data = dict(cm.get("data") or {})
    content = data.get(KUBECONFIG_KEY)
    if not isinstance(content, str):
        return None
    old = {k: v for k, v in data.items() if k.startswith(JWS_KEY_PREFIX)}
    new = {
        JWS_KEY_PREFIX + token_id: compute_detached_signature(content, token_id, token_secret)
        for token_id, token_secret in sorted(tokens.items())
    }
    if old == new:
        return None
    updated = deep_copy(cm)
    updated["data"] = {**{k: v for k, v in data.items() if not k.startswith(JWS_KEY_PREFIX)}, **new}
    return updated


class BootstrapSigner(Controller):
    name = "bootstrapsigner"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.cm_informer = self.informer(
            CONFIGMAPS, CLUSTER_INFO_NAMESPACE, on_change=self._changed, on_delete=self._changed
        )
        self.secret_informer = self.informer(
            SECRETS, TOKEN_NAMESPACE, on_change=self._changed, on_delete=self._changed
        )

    def _changed(self, _obj: Obj) -> None:
        self.enqueue(CLUSTER_INFO_KEY)

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.ctx.clock(), dt.UTC)

    async def reconcile(self, key: str) -> None:
        cm = self.cm_informer.store.get(CLUSTER_INFO_KEY)
        if cm is None:
            return
        now = self.now()
        secrets = list(self.secret_informer.store.list())
        tokens = signing_tokens(secrets, now)
        updated = signed_cluster_info(cm, tokens)
        if updated is not None:
            try:
                await self.client.update(CONFIGMAPS, updated)
            except errors.Conflict:
                self.queue.add_after(key, 0.5)  # the cache is behind: sign what it holds next
                return
            except errors.NotFound:
                return
            log.info("cluster-info signed for tokens %s", ", ".join(sorted(tokens)) or "(none)")
        # a token's signature must go when it expires (the tokencleaner may be off or late)
        expiries = [
            when
            for s in secrets
            if token_of_secret(s) is not None and (when := expiration_of(s)) is not None and when > now
        ]
        if expiries:
            self.queue.add_after(key, (min(expiries) - now).total_seconds() + 0.1)


class TokenCleaner(Controller):
    name = "tokencleaner"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.secret_informer = self.informer(SECRETS, TOKEN_NAMESPACE, on_change=self._changed)

    def _changed(self, secret: Obj) -> None:
        if secret.get("type") == SECRET_TYPE:
            self.enqueue(secret)

    async def reconcile(self, key: str) -> None:
        secret = self.secret_informer.store.get(key)
        if secret is None or secret.get("type") != SECRET_TYPE:
            return
        now = dt.datetime.fromtimestamp(self.ctx.clock(), dt.UTC)
        if not is_expired(secret, now):
            when = expiration_of(secret)
            if when is not None:
                self.queue.add_after(key, (when - now).total_seconds() + 0.1)
            return
        try:
            await self.client.delete(
                SECRETS,
                name_of(secret),
                TOKEN_NAMESPACE,
                preconditions={"uid": uid_of(secret)},
            )
        except errors.NotFound:
            return
        except errors.Conflict:
            return  # replaced by a new Secret of that name: its own event brings it back
        log.info("deleted expired bootstrap token secret %s", key)
