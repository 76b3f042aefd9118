"""The API server's in-memory store of OpenTelemetry spans, indexed by Kubernetes object UID.

It is what ``minik trace`` reads (``GET /debug/minik/traces?uid=...``) without any tracing server:
the API server's own spans arrive through :class:`StoreProcessor` (a span processor of its tracer
provider), every other component's in batches of OTLP/protobuf at ``POST /debug/minik/spans``.

A span is filed under its ``k8s.object.uid`` attribute and under the UID of every object it links
to.  The store is bounded: at most ``max_per_object`` spans per UID (the oldest go first) and at most
``max_spans`` entries in all, the objects touched longest ago dropped whole.  Nothing is persisted:
a restarted API server starts with an empty store, as a tracing backend's retention would.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

from apimachinery import tracing

Span = dict[str, Any]

MAX_SPANS = 50_000
MAX_PER_OBJECT = 500
MAX_BODY = 8 << 20  # one POST of spans


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x") if value else ""


def _attribute_value(v: Any) -> Any:
    """An OTLP ``AnyValue`` as a plain value."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_attribute_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _attribute_value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def _attributes(kvs: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _attribute_value(kv.value) for kv in kvs}


def decode_otlp(body: bytes) -> list[Span]:
    """The spans of an OTLP/protobuf ``ExportTraceServiceRequest``; ValueError if it is not one."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError as e:
        raise ValueError(f"not an OTLP ExportTraceServiceRequest: {e}") from e
    out: list[Span] = []
    for rs in request.resource_spans:
        service = str(_attributes(rs.resource.attributes).get("service.name", ""))
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    {
                        "traceId": s.trace_id.hex(),
                        "spanId": s.span_id.hex(),
                        "parentSpanId": s.parent_span_id.hex(),
                        "name": s.name,
                        "service": service,
                        "start": int(s.start_time_unix_nano),
                        "end": int(s.end_time_unix_nano),
                        "attributes": _attributes(s.attributes),
                        "links": [
                            {
                                "traceId": link.trace_id.hex(),
                                "spanId": link.span_id.hex(),
                                "attributes": _attributes(link.attributes),
                            }
                            for link in s.links
                        ],
                        "error": s.status.message if s.status.code == 2 else "",
                    }
                )
    return out


def from_readable(span: Any) -> Span:
    """An SDK ``ReadableSpan`` in the store's shape."""
    ctx = span.context
    parent = span.parent
    return {
        "traceId": _hex(ctx.trace_id, 32),
        "spanId": _hex(ctx.span_id, 16),
        "parentSpanId": _hex(parent.span_id, 16) if parent is not None else "",
        "name": span.name,
        "service": str(span.resource.attributes.get("service.name", "")),
        "start": int(span.start_time or 0),
        "end": int(span.end_time or 0),
        "attributes": dict(span.attributes or {}),
        "links": [
            {
                "traceId": _hex(link.context.trace_id, 32),
                "spanId": _hex(link.context.span_id, 16),
                "attributes": dict(link.attributes or {}),
            }
            for link in span.links
        ],
        "error": (span.status.description or "error") if span.status.status_code.value == 2 else "",
    }


def _uids(span: Any) -> list[str]:
    """The UIDs a span is filed under: its object's and its links' (a dict or a ReadableSpan)."""
    if isinstance(span, dict):
        attrs, links = span["attributes"], [link["attributes"] for link in span["links"]]
    else:
        attrs, links = span.attributes or {}, [link.attributes or {} for link in span.links]
    out = []
    uid = attrs.get(tracing.ATTR_UID)
    if uid:
        out.append(str(uid))
    for la in links:
        u = la.get(tracing.ATTR_UID)
        if u and u not in out:
            out.append(str(u))
    return out


class TraceStore:
    def __init__(self, max_spans: int = MAX_SPANS, max_per_object: int = MAX_PER_OBJECT) -> None:
        self.max_spans = max_spans
        self.max_per_object = max_per_object
        # UID -> its spans (dicts, or the API server's own ReadableSpans until read); least
        # recently added-to first
        self._objects: OrderedDict[str, deque[Any]] = OrderedDict()
        self._count = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._count

    def add(self, spans: Iterable[Any]) -> None:
        with self._lock:
            for span in spans:
                for uid in _uids(span):
                    self._file(uid, span)
            while self._count > self.max_spans and self._objects:
                _, dropped = self._objects.popitem(last=False)
                self._count -= len(dropped)

    def _file(self, uid: str, span: Any) -> None:
        spans = self._objects.get(uid)
        if spans is None:
            spans = self._objects[uid] = deque(maxlen=self.max_per_object)
        else:
            self._objects.move_to_end(uid)
        if len(spans) < self.max_per_object:
            self._count += 1
        spans.append(span)

    def spans(self, uids: Iterable[str]) -> list[Span]:
        """The spans filed under any of ``uids``, each once, by start time."""
        seen: set[tuple[str, str]] = set()
        out: list[Span] = []
        with self._lock:
            found = [list(self._objects.get(uid, ())) for uid in uids]
        for group in found:
            for span in group:
                s = span if isinstance(span, dict) else from_readable(span)
                key = (s["traceId"], s["spanId"])
                if key not in seen:
                    seen.add(key)
                    out.append(s)
        out.sort(key=lambda s: (s["start"], -s["end"]))
        return out


class StoreProcessor:
    """A span processor that files the API server's own finished spans into the store (converted
    to dicts only when read, so the request path pays for the indexing alone)."""

    def __init__(self, store: TraceStore) -> None:
        self.store = store

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: Any) -> None:
        self.store.add((span,))

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# ---- HTTP: /debug/minik/spans and /debug/minik/traces ---------------------------------------------


async def serve(store: TraceStore | None, request: Any, path: str) -> Any:
    """``POST /debug/minik/spans`` (an OTLP/protobuf body) files spans; ``GET /debug/minik/traces
    ?uid=A&uid=B`` answers ``{"spans": [...]}``.  404 when tracing is off."""
    import orjson
    from fastapi.responses import Response

    from apimachinery import errors

    method = request.method
    if store is None or path not in (tracing.SPANS_PATH, tracing.TRACES_PATH):
        raise errors.NotFound("the server could not find the requested resource")
    if path == tracing.SPANS_PATH:
        if method != "POST":
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY:
            raise errors.RequestEntityTooLarge(f"the request body is too large: limit is {MAX_BODY} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise errors.RequestEntityTooLarge(
                    f"the request body is too large: limit is {MAX_BODY} bytes"
                )
        try:
            spans = decode_otlp(bytes(body))
        except ValueError as e:
            raise errors.BadRequest(str(e)) from e
        store.add(spans)
        # an OTLP/HTTP ExportTraceServiceResponse: empty means every span accepted
        return Response(b"", media_type=tracing.PROTOBUF)
    if method != "GET":
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
    uids = [u for value in request.query_params.getlist("uid") for u in value.split(",") if u]
    if not uids:
        raise errors.BadRequest("at least one uid query parameter is required")
    return Response(orjson.dumps({"spans": store.spans(uids)}), media_type="application/json")


# ---- the API server's own spans -------------------------------------------------------------------

TRACED_KINDS = frozenset({"Pod", "ReplicaSet", "Deployment", "Service", "StatefulSet", "DaemonSet", "Job"})


def record_create(
    info: Any, obj: dict[str, Any], start: int, admit: tuple[int, int], write: tuple[int, int]
) -> None:
    """The spans of one create: the request, with admission and the etcd write as its children.
    A Pod's spans link to its owners (so a Deployment's trace finds them)."""
    attrs = tracing.object_attributes(obj, info.kind)
    uid = attrs[tracing.ATTR_UID]
    links = [("owner", kind, owner) for kind, owner in tracing.owner_uids(obj)]
    request_attrs = {
        **attrs,
        "http.request.method": "POST",
        "k8s.verb": "create",
        "k8s.resource": info.plural,
    }
    ctx = tracing.record(f"create {info.plural}", uid, start, write[1], request_attrs, links=links)
    if ctx is None:
        return
    tracing.record("admission", uid, admit[0], admit[1], attrs, parent=ctx)
    tracing.record("etcd write", uid, write[0], write[1], {**attrs, "db.system": "etcd"}, parent=ctx)
