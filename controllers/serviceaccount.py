"""The ServiceAccount controller: a ``default`` ServiceAccount in every active namespace."""

from __future__ import annotations

import logging
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj

from .base import NAMESPACES, SERVICE_ACCOUNTS, Controller, ControllerContext
from .util import is_deleting, name_of, namespace_of

log = logging.getLogger(__name__)

DEFAULT_NAME = "default"


class ServiceAccountController(Controller):
    name = "serviceaccount-controller"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.ns_informer = self.informer(NAMESPACES, on_change=self.enqueue)
        self.sa_informer = self.informer(SERVICE_ACCOUNTS, on_delete=self._sa_deleted)

    def _sa_deleted(self, sa: Obj) -> None:
        if name_of(sa) == DEFAULT_NAME:
            self.enqueue(namespace_of(sa))

    async def reconcile(self, key: str) -> None:
        ns = self.ns_informer.store.get(key)
        if ns is None or is_deleting(ns) or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        if f"{key}/{DEFAULT_NAME}" in self.sa_informer.store:
            return
        body = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": DEFAULT_NAME, "namespace": key},
        }
        try:
            await self.client.create(SERVICE_ACCOUNTS, body, key)
            log.info("namespace %s: created ServiceAccount default", key)
        except (errors.AlreadyExists, errors.Forbidden, errors.NotFound):
            pass
