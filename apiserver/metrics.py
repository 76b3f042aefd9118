"""The API server's Prometheus metrics, with Kubernetes' names and labels.

- ``apiserver_request_total{verb,dry_run,group,version,resource,subresource,scope,component,code}``
  and ``apiserver_request_duration_seconds`` (same labels without ``code``; Kubernetes' buckets),
  recorded for every HTTP request once its response is sent (a watch: when it ends);
- ``apiserver_storage_objects{resource}``: the objects in each watch cache, read at scrape time;
- ``etcd_request_duration_seconds{operation,type}``: every etcd call of :class:`~apiserver.etcd.Etcd`.

``verb`` is Kubernetes' reported verb: GET, LIST, WATCH, POST, PUT, PATCH, APPLY (a server-side
apply patch), DELETE, DELETECOLLECTION, CONNECT (exec, attach, port-forward, proxy); a request
outside the resource paths (``/healthz``, ``/version``, discovery) reports its HTTP method with
empty group, version, resource and scope.  ``scope`` is ``resource`` for a named object,
``namespace`` for a collection in one namespace and ``cluster`` otherwise.

The labels of a request are worked out once per (method, path, query) and kept, with the
labelled children, in a bounded table: a repeated request (every create in one namespace, a
controller's re-lists) costs a dictionary look-up, an increment and a histogram observation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from apimachinery import metrics

from .authn import UNSECURED
from .requestinfo import request_attributes

COMPONENT = "apiserver"
CACHE_SIZE = 4096
_VERBS = {
    "get": "GET",
    "list": "LIST",
    "watch": "WATCH",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "deletecollection": "DELETECOLLECTION",
}
_CONNECT = frozenset(("exec", "attach", "portforward", "proxy"))
_APPLY = b"application/apply-patch"


class _Entry:
    """The labelled children of one request shape: the histogram's, and the counter's per code."""

    __slots__ = ("labels", "duration", "codes", "counter")

    def __init__(self, counter: Any, histogram: Any, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self.counter = counter
        self.duration = histogram.labels(*labels)
        self.codes: dict[int, Any] = {}

    def observe(self, code: int, seconds: float) -> None:
        child = self.codes.get(code)
        if child is None:
            child = self.codes[code] = self.counter.labels(*self.labels, str(code))
        child.inc()
        self.duration.observe(seconds)


def request_labels(method: str, path: str, query: bytes, apply: bool = False) -> tuple[str, ...]:
    """(verb, dry_run, group, version, resource, subresource, scope, component) of a request."""
    attrs = request_attributes(UNSECURED, method, path, query)
    dry_run = "All" if b"dryRun=All" in query else ""
    if not attrs.resource_request:
        return (method.upper(), dry_run, "", "", "", "", "", COMPONENT)
    verb = _VERBS.get(attrs.verb, method.upper())
    if attrs.subresource in _CONNECT and attrs.name:
        verb = "CONNECT"
    elif verb == "PATCH" and apply:
        verb = "APPLY"
    if attrs.name and attrs.verb not in ("list", "watch"):
        scope = "resource"
    elif attrs.namespace and not (attrs.resource == "namespaces" and not attrs.name):
        scope = "namespace"
    else:
        scope = "cluster"
    return (
        verb,
        dry_run,
        attrs.api_group,
        attrs.api_version,
        attrs.resource,
        attrs.subresource,
        scope,
        COMPONENT,
    )


class RequestMetrics:
    """``apiserver_request_total`` and ``apiserver_request_duration_seconds``."""

    def __init__(self) -> None:
        names = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component")
        self.total = metrics.counter(
            "apiserver_request_total",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, "
            "resource, scope, component, and HTTP response code.",
            (*names, "code"),
        )
        self.duration = metrics.histogram(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, "
            "resource, subresource, scope and component.",
            names,
            metrics.REQUEST_DURATION_BUCKETS,
        )
        self._requests: dict[tuple[str, str, bytes, bool], _Entry] = {}
        self._shapes: dict[tuple[str, ...], _Entry] = {}

    def observe(self, scope: Any, code: int, seconds: float) -> None:
        method = scope["method"]
        apply = False
        if method == "PATCH":
            for name, value in scope["headers"]:
                if name == b"content-type":
                    apply = value.startswith(_APPLY)
                    break
        key = (method, scope["path"], scope["query_string"], apply)
        entry = self._requests.get(key)
        if entry is None:
            entry = self._entry(request_labels(method, key[1], key[2], apply))
            if len(self._requests) >= CACHE_SIZE:
                self._requests.clear()
            self._requests[key] = entry
        entry.observe(code, seconds)

    def _entry(self, labels: tuple[str, ...]) -> _Entry:
        entry = self._shapes.get(labels)
        if entry is None:
            entry = self._shapes[labels] = _Entry(self.total, self.duration, labels)
        return entry


def _resource_name(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def register_storage_objects(storage: Any) -> None:
    """``apiserver_storage_objects{resource}``: the objects in each registry's watch cache, read
    when scraped (resources whose cache has not started yet are left out)."""

    def collect() -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind.",
            labels=["resource"],
        )
        for (group, _version, plural), reg in list(storage.registries.items()):
            cache = reg.cache
            if cache.ready.is_set():
                family.add_metric([_resource_name(group, plural)], len(cache.objects))
        yield family

    metrics.register_collector("apiserver_storage_objects", collect)


class EtcdMetrics:
    """``etcd_request_duration_seconds{operation,type}``; ``type`` is the resource of the key
    (``pods``, ``deployments.apps``), read from ``/registry/{group}/{plural}/...``."""

    def __init__(self) -> None:
        self.duration = metrics.histogram(
            "etcd_request_duration_seconds",
            "Etcd request latency in seconds for each operation and object type.",
            ("operation", "type"),
            metrics.ETCD_REQUEST_DURATION_BUCKETS,
        )
        self._children: dict[tuple[str, bytes], Any] = {}

    def observe(self, operation: str, key: bytes, seconds: float) -> None:
        # the key up to its resource: /registry/{group}/{plural}/
        end = -1
        if key.startswith(b"/registry/"):
            end = key.find(b"/", key.find(b"/", 10) + 1)
        prefix = key[: end + 1] if end > 0 else key
        ck = (operation, prefix)
        child = self._children.get(ck)
        if child is None:
            child = self._children[ck] = self.duration.labels(operation, key_type(prefix))
            if len(self._children) > CACHE_SIZE:
                self._children.clear()
        child.observe(seconds)


def key_type(key: bytes) -> str:
    """``b"/registry/apps/deployments/ns/x"`` -> ``deployments.apps``; core keys name the plural
    alone; keys outside ``/registry/`` report ``other``."""
    parts = key.decode("utf-8", "replace").split("/")
    if len(parts) < 4 or parts[1] != "registry" or not parts[3]:
        return "other"
    group = parts[2]
    return _resource_name("" if group in ("", "core") else group, parts[3])


def enable(storage: Any) -> RequestMetrics:
    """Turn the API server's metrics on: the storage-objects collector, etcd timings on
    ``storage.etcd`` and the REST client metrics (the API server's own outgoing requests)."""
    register_storage_objects(storage)
    storage.etcd.metrics = EtcdMetrics()
    metrics.enable_rest_client_metrics()
    return RequestMetrics()
