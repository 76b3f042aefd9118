"""OpenTelemetry spans about Kubernetes objects, from every component (what ``minik trace`` shows).

Each component calls :func:`setup` once with its name (``service.name`` becomes ``minik-NAME``).
A span is about one object: its trace ID is the object's UID (a UUID is 128 bits, as a trace ID),
so every component's spans about one Pod land in one trace without passing any context around, and
the attribute ``k8s.object.uid`` names the object.  Spans about a Pod carry OpenTelemetry *links* to
the objects it belongs to (its ReplicaSet and Deployment, the Services it serves), and spans about a
Service or Endpoints link the pods they touched, so a Deployment or a Service can be traced too.

Where spans go:

* the API server keeps them in memory (``apiserver/tracestore.py``); it records its own directly
  (``local=`` processor) and the other components ship theirs in batches to it, an OTLP/protobuf
  ``POST /debug/minik/spans`` with the component's own credentials;
* with ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, they are also
  exported over OTLP/HTTP to that collector (Jaeger, Tempo, an OpenTelemetry Collector).

Spans are written after the fact, with the start and end times the component measured
(:func:`record`, or :class:`Step` around a block), so the hot path only reads the clock; with tracing
off (``MINIK_TRACING=0``, or ``minik-apiserver --disable-tracing``) :func:`record` returns at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.trace import Link, SpanContext, Tracer

    from .kubeconfig import ClientConfig

log = logging.getLogger("tracing")

ENV_SWITCH = "MINIK_TRACING"  # "0" / "false" / "off" turns tracing off in every component
SPANS_PATH = "/debug/minik/spans"
TRACES_PATH = "/debug/minik/traces"
PROTOBUF = "application/x-protobuf"

ATTR_UID = "k8s.object.uid"
ATTR_KIND = "k8s.object.kind"
ATTR_NAME = "k8s.object.name"
ATTR_NAMESPACE = "k8s.namespace.name"
ATTR_NODE = "k8s.node.name"
ATTR_LINK_ROLE = "minik.link.role"  # on a link: "owner", "service", "pod"

Attrs = Mapping[str, Any]

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_service = ""


def enabled_by_env() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def active() -> bool:
    return _tracer is not None


def trace_id_of(uid: str) -> int:
    """The trace ID of an object's trace: its UID as a number (any other string: its hash)."""
    try:
        value = uuid.UUID(uid).int
    except ValueError:
        value = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:16], "big")
    return value or 1


def root_span_id(uid: str) -> int:
    """The span every top-level span of an object's trace names as its parent."""
    return (trace_id_of(uid) & 0xFFFFFFFFFFFFFFFF) or 1


def uid_of_trace(trace_id: int) -> str:
    return str(uuid.UUID(int=trace_id))


def object_attributes(obj: Mapping[str, Any], kind: str | None = None) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    attrs = {ATTR_UID: str(meta.get("uid") or ""), ATTR_NAME: str(meta.get("name") or "")}
    kind = kind or obj.get("kind")
    if kind:
        attrs[ATTR_KIND] = str(kind)
    if meta.get("namespace"):
        attrs[ATTR_NAMESPACE] = str(meta["namespace"])
    return attrs


def owner_uids(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, uid) of the object's owners, for links."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or ()
    return [(str(r.get("kind", "")), str(r["uid"])) for r in refs if r.get("uid")]


def setup(
    component: str,
    config: ClientConfig | str | None = None,
    *,
    enabled: bool | None = None,
    local: Any = None,  # a SpanProcessor
) -> bool:
    """Start tracing for this process as ``minik-<component>``.

    ``config``: ship finished spans to that API server in batches; ``local``: hand them to this
    processor (the API server's own store).  OTLP export is added when the standard environment
    variables name an endpoint.  False (and nothing set up) when tracing is off.
    """
    global _tracer, _provider, _service
    if enabled is None:
        enabled = enabled_by_env()
    shutdown()
    if not enabled:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    _service = component if component.startswith("minik-") else f"minik-{component}"
    provider = TracerProvider(resource=Resource.create({"service.name": _service}))
    if local is not None:
        provider.add_span_processor(local)
    if isinstance(config, str):  # a bare server URL
        from .kubeconfig import ClientConfig

        config = ClientConfig(server=config)
    if config is not None:
        provider.add_span_processor(
            BatchSpanProcessor(
                APIServerExporter(config),  # type: ignore[arg-type]  # a SpanExporter by its methods
                schedule_delay_millis=500,
                max_export_batch_size=512,
            )
        )
    otlp = otlp_endpoint()
    if otlp:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            log.info("exporting spans over OTLP to %s", otlp)
        except Exception as e:  # a bad endpoint must not stop the component
            log.warning("OTLP export disabled: %s", e)
    _provider = provider
    _tracer = provider.get_tracer("minik", schema_url=None)
    return True


def otlp_endpoint() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", ""
    )


def flush(timeout_millis: int = 5000) -> None:
    if _provider is not None:
        _provider.force_flush(timeout_millis)


def shutdown() -> None:
    global _tracer, _provider
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def _links(links: Iterable[tuple[str, str, str]]) -> list[Link]:
    from opentelemetry.trace import Link, SpanContext, TraceFlags

    out = []
    for role, kind, uid in links:
        if not uid:
            continue
        ctx = SpanContext(
            trace_id_of(uid), root_span_id(uid), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
        )
        out.append(Link(ctx, {ATTR_LINK_ROLE: role, ATTR_KIND: kind, ATTR_UID: uid}))
    return out


def record(
    name: str,
    uid: str,
    start_ns: int,
    end_ns: int | None = None,
    attributes: Attrs | None = None,
    *,
    parent: SpanContext | None = None,
    links: Sequence[tuple[str, str, str]] = (),
    error: str | None = None,
) -> SpanContext | None:
    """One finished span about the object ``uid``, from ``start_ns`` to ``end_ns`` (``time_ns()``).

    ``parent``: a span this one is part of (else it is a top-level step of the object's trace);
    ``links``: ``(role, kind, uid)`` of related objects.  Returns the span's context, for children.
    """
    tracer = _tracer
    if tracer is None or not uid:
        return None
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

    if parent is None:
        parent = SpanContext(
            trace_id_of(uid), root_span_id(uid), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
        )
    attrs = dict(attributes or {})
    attrs[ATTR_UID] = uid
    span = tracer.start_span(
        name,
        context=trace.set_span_in_context(NonRecordingSpan(parent)),
        attributes=attrs,
        links=_links(links),
        start_time=start_ns,
    )
    if error:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end(end_time=end_ns if end_ns is not None else time.time_ns())
    return span.get_span_context()


class Step:
    """Times a block and records it as a span: ``with Step("bind", uid, attrs) as step: ...``.

    ``step.context`` (after the block) is the span's context for children recorded later;
    attributes can be added inside the block with ``step.attributes[...] = ...``.  An exception
    marks the span as an error.
    """

    __slots__ = ("name", "uid", "attributes", "parent", "links", "start_ns", "context")

    def __init__(
        self,
        name: str,
        uid: str,
        attributes: Attrs | None = None,
        *,
        parent: SpanContext | None = None,
        links: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        self.name = name
        self.uid = uid
        self.attributes = dict(attributes or {})
        self.parent = parent
        self.links = links
        self.start_ns = 0
        self.context: SpanContext | None = None

    def __enter__(self) -> Step:
        self.start_ns = time.time_ns()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if _tracer is None:
            return
        self.context = record(
            self.name,
            self.uid,
            self.start_ns,
            time.time_ns(),
            self.attributes,
            parent=self.parent,
            links=self.links,
            error=repr(exc) if exc is not None else None,
        )


# ---- shipping spans to the API server ----------------------------------------------------------


def encode(spans: Sequence[ReadableSpan]) -> bytes:
    """OTLP ``ExportTraceServiceRequest`` bytes (what an OTLP/HTTP collector accepts)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return encode_spans(spans).SerializeToString()  # type: ignore[no-any-return]


class APIServerExporter:
    """A ``SpanExporter`` that POSTs batches to the API server's span store, as the component's user.

    Runs on the batch processor's own thread with its own blocking HTTP client; a failure is logged
    once in a while and the batch dropped (traces are best effort, the component goes on).
    """

    def __init__(self, config: ClientConfig, timeout: float = 5.0) -> None:
        self.config = config
        self.timeout = timeout
        self._http: Any = None
        self._lock = threading.Lock()
        self._last_warning = 0.0

    def _client(self) -> Any:
        import httpx

        if self._http is None:
            headers = {"User-Agent": "minik-tracing", "Content-Type": PROTOBUF}
            headers.update(self.config.auth_headers())
            self._http = httpx.Client(
                base_url=self.config.server.rstrip("/"),
                headers=headers,
                verify=self.config.ssl_context(),
                timeout=self.timeout,
            )
        return self._http

    def export(self, spans: Sequence[ReadableSpan]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            with self._lock:
                response = self._client().post(SPANS_PATH, content=encode(spans))
            if response.status_code >= 300:
                raise RuntimeError(f"{response.status_code} {response.text[:200]}")
        except Exception as e:
            now = time.monotonic()
            if now - self._last_warning > 60:
                self._last_warning = now
                log.warning("could not ship %d spans to the API server: %s", len(spans), e)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def endpoint_pod_links(objs: Iterable[Mapping[str, Any]], limit: int = 64) -> list[tuple[str, str, str]]:
    """Links to the pods an Endpoints object or EndpointSlices name (their ``targetRef``s)."""
    uids: list[str] = []
    for obj in objs:
        refs = [e.get("targetRef") or {} for e in obj.get("endpoints") or ()]
        for subset in obj.get("subsets") or ():
            for key in ("addresses", "notReadyAddresses"):
                refs += [a.get("targetRef") or {} for a in subset.get(key) or ()]
        uids += [str(r["uid"]) for r in refs if r.get("kind", "Pod") == "Pod" and r.get("uid")]
    return [("pod", "Pod", uid) for uid in dict.fromkeys(uids)][:limit]


def service_of_slice(slice_: Mapping[str, Any]) -> tuple[str, str]:
    """(name, uid) of the Service that owns an EndpointSlice."""
    for ref in (slice_.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("kind") == "Service" and ref.get("uid"):
            return str(ref.get("name", "")), str(ref["uid"])
    return "", ""
