"""The root CA certificate publisher: ConfigMap ``kube-root-ca.crt`` in every namespace.

As Kubernetes' ``root-ca-cert-publisher``: every active namespace holds a ConfigMap
``kube-root-ca.crt`` whose ``ca.crt`` is the cluster CA (``--root-ca-file`` of the controller
manager, else the CA of its kubeconfig), so a pod can verify the API server it reaches through ``kubernetes.default.svc`` (the
ServiceAccount admission plugin projects it into ``/var/run/secrets/kubernetes.io/serviceaccount``).
A ConfigMap that is deleted or changed is put back; keys other than ``ca.crt`` are dropped, as
Kubernetes does.  With no CA to publish (a plain-HTTP API server) the controller does not run.
"""

from __future__ import annotations

import logging
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.resources import kind_info

from .base import NAMESPACES, Controller, ControllerContext
from .util import deep_copy, is_deleting, name_of, namespace_of

log = logging.getLogger(__name__)

CONFIGMAPS = kind_info("v1", "ConfigMap")
NAME = "kube-root-ca.crt"
KEY = "ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)


def read_root_ca(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        pem = f.read()
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError(f"--root-ca-file {path}: no PEM certificate in it")
    return pem


def root_ca_pem(root_ca_file: str, config: Any) -> str:
    """What the publisher publishes: ``--root-ca-file``, else the CA the controller manager itself
    trusts the API server with (its kubeconfig's), as Kubernetes does; "" when there is neither."""
    if root_ca_file:
        return read_root_ca(root_ca_file)
    ca_data = getattr(config, "ca_data", None)
    if ca_data:
        return str(ca_data)
    ca_file = getattr(config, "ca_file", None)
    return read_root_ca(ca_file) if ca_file else ""


def desired_configmap(namespace: str, ca_pem: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": NAME,
            "namespace": namespace,
            "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION},
        },
        "data": {KEY: ca_pem},
    }


def repaired(cm: Obj, ca_pem: str) -> Obj | None:
    """The ConfigMap with its data and annotation put right; None when it is right already."""
    annotations = (cm.get("metadata") or {}).get("annotations") or {}
    if (
        cm.get("data") == {KEY: ca_pem}
        and not cm.get("binaryData")
        and annotations.get(DESCRIPTION_ANNOTATION) == DESCRIPTION
    ):
        return None
    new = deep_copy(cm)
    new["data"] = {KEY: ca_pem}
    new.pop("binaryData", None)
    new["metadata"]["annotations"] = {**annotations, DESCRIPTION_ANNOTATION: DESCRIPTION}
    return new


class RootCACertPublisher(Controller):
    name = "root-ca-cert-publisher"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.ca_pem = str(ctx.options.extra.get("root_ca_pem") or "")
        self.ns_informer = self.informer(NAMESPACES, on_change=self.enqueue)
        self.cm_informer = ctx.factory.informer(CONFIGMAPS, field_selector=f"metadata.name={NAME}")
        self.informers.append(self.cm_informer)
        self.cm_informer.add_event_handler(None, lambda _old, new: self._cm_changed(new), self._cm_changed)

    def _cm_changed(self, cm: Obj) -> None:
        if name_of(cm) == NAME:
            self.enqueue(namespace_of(cm))

    async def reconcile(self, key: str) -> None:
        if not self.ca_pem:
            return
        ns = self.ns_informer.store.get(key)
        if ns is None or is_deleting(ns) or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        cm = self.cm_informer.store.get(f"{key}/{NAME}")
        try:
            if cm is None:
                await self.client.create(CONFIGMAPS, desired_configmap(key, self.ca_pem), key)
                log.info("namespace %s: published ConfigMap %s", key, NAME)
                return
            new = repaired(cm, self.ca_pem)
            if new is not None:
                await self.client.update(CONFIGMAPS, new)
                log.info("namespace %s: repaired ConfigMap %s", key, NAME)
        except errors.AlreadyExists:
            self.queue.add_after(key, 1.0)  # the cache has not seen it yet: compare then
        except (errors.Forbidden, errors.NotFound):
            pass  # the namespace is being deleted (or gone)
