"""Prometheus metrics shared by every component, with Kubernetes' metric names.

Every component registers its metrics in ``prometheus_client``'s default registry, which also holds
the client's process (``process_*``) and Python (``python_gc_*``, ``python_info``) collectors, and
serves them as the text exposition format on ``/metrics``:

- the API server and the kubelet on their HTTPS ports, authenticated and authorized (they call
  :func:`exposition` from their own request handlers);
- the scheduler, the controller manager, the proxy and the DNS server on a plain-HTTP listener of
  their own, bound to loopback by default (:func:`add_metrics_flag`, :func:`serve_from_args`).

The metrics every client shares live here: the REST client's (``rest_client_*``, recorded by
:mod:`apimachinery.client` once a component calls :func:`enable_rest_client_metrics`, so the CLI
never loads ``prometheus_client``) and the work queues' (``workqueue_*``, recorded by
:mod:`apimachinery.workqueue` for every named queue).

Hot paths keep the labelled children (``metric.labels(...)``) in dictionaries keyed by their label
values, so recording one observation is a dictionary look-up and an increment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # asyncio (and ssl with it) only where a listener is served: the CLI loads this module
    import argparse
    import asyncio

    from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Kubernetes' buckets (k8s.io/component-base/metrics and the packages that define each metric)
REQUEST_DURATION_BUCKETS = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60,
)  # fmt: skip
ETCD_REQUEST_DURATION_BUCKETS = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60,
)  # fmt: skip
REST_CLIENT_DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
# workqueue: ExponentialBuckets(10e-9, 10, 10)
WORKQUEUE_DURATION_BUCKETS = tuple(1e-8 * 10**i for i in range(10))

_lock = threading.Lock()
_metrics: dict[str, Any] = {}


def _get(name: str, make: Callable[[], Any]) -> Any:
    """The metric called ``name`` of this process, made (and registered) on first use."""
    metric = _metrics.get(name)
    if metric is None:
        with _lock:
            metric = _metrics.get(name)
            if metric is None:
                _no_created_series()
                metric = _metrics[name] = make()
    return metric


def _no_created_series() -> None:
    """No ``*_created`` series beside counters and histograms (Kubernetes' components have none)."""
    from prometheus_client import disable_created_metrics

    disable_created_metrics()  # type: ignore[no-untyped-call]


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    """A counter registered once per process (a second call returns the first one).  Pass the name
    with its ``_total`` suffix, as Kubernetes spells it."""
    from prometheus_client import Counter

    base = name.removesuffix("_total")
    return _get(name, lambda: Counter(base, documentation, list(labels)))  # type: ignore[no-any-return]


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
    from prometheus_client import Gauge

    return _get(name, lambda: Gauge(name, documentation, list(labels)))  # type: ignore[no-any-return]


def histogram(
    name: str, documentation: str, labels: Sequence[str] = (), buckets: Sequence[float] = ()
) -> Histogram:
    from prometheus_client import Histogram

    def make() -> Histogram:
        if buckets:
            return Histogram(name, documentation, list(labels), buckets=list(buckets))
        return Histogram(name, documentation, list(labels))

    return _get(name, make)  # type: ignore[no-any-return]


def register_collector(name: str, collect: Callable[[], Any]) -> None:
    """Register a custom collector (an object with ``collect()`` yielding metric families) once per
    process under ``name``; a second registration with the same name replaces what it reports."""
    from prometheus_client import REGISTRY

    class _Collector:
        def __init__(self) -> None:
            self.collect_fn = collect

        def collect(self) -> Any:
            return self.collect_fn()

        def describe(self) -> list[Any]:
            return []  # unchecked: the families it reports are named by the callback

    existing = _metrics.get("collector:" + name)
    if existing is not None:
        existing.collect_fn = collect
        return
    with _lock:
        c = _Collector()
        _metrics["collector:" + name] = c
        REGISTRY.register(c)


def exposition() -> bytes:
    """Every metric of this process in Prometheus' text format (0.0.4)."""
    from prometheus_client import REGISTRY, generate_latest

    return generate_latest(REGISTRY)


def sample_value(name: str, labels: dict[str, str] | None = None) -> float | None:
    """The current value of one sample of this process's registry (tests and diagnostics)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels or {})


# --------------------------------------------------------------------------------------------------
# REST client (client-go's rest_client_* metrics)
# --------------------------------------------------------------------------------------------------


class RestClientMetrics:
    """``rest_client_requests_total{code,method,host}`` and
    ``rest_client_request_duration_seconds{verb,host}``, with their children cached."""

    def __init__(self) -> None:
        self.requests = counter(
            "rest_client_requests_total",
            "Number of HTTP requests, partitioned by status code, method, and host.",
            ("code", "method", "host"),
        )
        self.duration = histogram(
            "rest_client_request_duration_seconds",
            "Request latency in seconds. Broken down by verb, and host.",
            ("verb", "host"),
            REST_CLIENT_DURATION_BUCKETS,
        )
        self._counts: dict[tuple[str, str, str], Any] = {}
        self._durations: dict[tuple[str, str], Any] = {}

    def observe(self, method: str, host: str, code: int | str, seconds: float) -> None:
        key = (str(code), method, host)
        child = self._counts.get(key)
        if child is None:
            child = self._counts[key] = self.requests.labels(*key)
        child.inc()
        dkey = (method, host)
        hist = self._durations.get(dkey)
        if hist is None:
            hist = self._durations[dkey] = self.duration.labels(method, host)
        hist.observe(seconds)


rest_client: RestClientMetrics | None = None
"""Set by :func:`enable_rest_client_metrics`; :mod:`apimachinery.client` records when it is set."""


def enable_rest_client_metrics() -> RestClientMetrics:
    global rest_client
    if rest_client is None:
        rest_client = RestClientMetrics()
    return rest_client


# --------------------------------------------------------------------------------------------------
# Work queues (client-go's workqueue_* metrics)
# --------------------------------------------------------------------------------------------------


class WorkqueueMetrics:
    """The children of one queue name: ``workqueue_depth``, ``workqueue_adds_total``,
    ``workqueue_retries_total``, ``workqueue_queue_duration_seconds`` and
    ``workqueue_work_duration_seconds``, all labelled ``name``."""

    __slots__ = ("depth", "adds", "retries", "queue_duration", "work_duration")

    def __init__(self, name: str) -> None:
        self.depth = gauge("workqueue_depth", "Current depth of workqueue", ("name",)).labels(name)
        self.adds = counter(
            "workqueue_adds_total", "Total number of adds handled by workqueue", ("name",)
        ).labels(name)
        self.retries = counter(
            "workqueue_retries_total", "Total number of retries handled by workqueue", ("name",)
        ).labels(name)
        self.queue_duration = histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested.",
            ("name",),
            WORKQUEUE_DURATION_BUCKETS,
        ).labels(name)
        self.work_duration = histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            ("name",),
            WORKQUEUE_DURATION_BUCKETS,
        ).labels(name)


_queues: dict[str, WorkqueueMetrics] = {}


def workqueue_metrics(name: str) -> WorkqueueMetrics | None:
    """The metrics of the queue called ``name`` (None for an unnamed queue, as in client-go)."""
    if not name:
        return None
    m = _queues.get(name)
    if m is None:
        m = _queues[name] = WorkqueueMetrics(name)
    return m


# --------------------------------------------------------------------------------------------------
# Serving /metrics on a plain-HTTP port (scheduler, controller manager, proxy, DNS)
# --------------------------------------------------------------------------------------------------


def add_metrics_flag(parser: argparse.ArgumentParser, default_port: int) -> None:
    """``--metrics-bind-address HOST:PORT`` (Kubernetes' flag); port 0 or an empty value turns
    the listener off."""
    parser.add_argument(
        "--metrics-bind-address",
        default=f"127.0.0.1:{default_port}",
        help=f"HOST:PORT of the plain-HTTP /metrics and /healthz listener (default 127.0.0.1:{default_port}; "
        "port 0 turns it off)",
    )


def parse_bind_address(value: str) -> tuple[str, int] | None:
    """``"127.0.0.1:10249"`` -> ("127.0.0.1", 10249); ``"[::1]:9"`` -> ("::1", 9); a bare port
    binds 0.0.0.0; None when off (empty, or port 0)."""
    value = value.strip()
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "0.0.0.0", value
    host = host.strip("[]") or "0.0.0.0"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"invalid bind address {value!r}: want HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"invalid bind address {value!r}: port out of range")
    return (host, number) if number else None


async def serve(host: str, port: int) -> asyncio.Server:
    """A plain-HTTP listener answering ``GET /metrics`` (the exposition) and ``GET /healthz``
    (``ok``), 404 for anything else, 405 for other methods."""
    from . import plainhttp

    routes = {"/metrics": lambda: (exposition(), CONTENT_TYPE), "/healthz": plainhttp.ok}
    return await plainhttp.serve(host, port, routes, method_not_allowed=True)


async def serve_from_args(args: argparse.Namespace, component: str) -> asyncio.Server | None:
    """Start the listener ``--metrics-bind-address`` names (None when it is off or cannot bind: a
    busy port is logged, never fatal) and turn on the REST client's metrics."""
    enable_rest_client_metrics()
    try:
        addr = parse_bind_address(getattr(args, "metrics_bind_address", "") or "")
    except ValueError as exc:
        log.warning("%s: %s; not serving /metrics", component, exc)
        return None
    if addr is None:
        return None
    try:
        server = await serve(*addr)
    except OSError as exc:
        log.warning("%s: cannot serve /metrics on %s:%d: %s", component, addr[0], addr[1], exc)
        return None
    log.info("%s: serving /metrics on http://%s:%d/metrics", component, addr[0], addr[1])
    return server
