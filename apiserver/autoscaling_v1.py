"""``autoscaling/v1`` HorizontalPodAutoscalers: a view of the stored ``autoscaling/v2`` objects.

Kubernetes stores HPAs in one version and converts on every request; minik stores ``autoscaling/v2``
and this module serves ``autoscaling/v1`` with every verb (get, list, watch, create, update, patch,
delete, deletecollection, the ``status`` subresource) by converting each way, as Kubernetes'
conversion (``pkg/apis/autoscaling/v1/conversion.go``) does:

* ``spec.targetCPUUtilizationPercentage`` is a ``Resource`` metric for ``cpu`` with a
  ``Utilization`` target, and back; ``status.currentCPUUtilizationPercentage`` the current
  ``cpu`` utilization.
* What v1 cannot express rides in annotations of the v1 object, so a v1 read-modify-write keeps
  it: ``autoscaling.alpha.kubernetes.io/metrics`` (the other metrics),
  ``autoscaling.alpha.kubernetes.io/behavior``, and on reads
  ``autoscaling.alpha.kubernetes.io/current-metrics`` and ``autoscaling.alpha.kubernetes.io/conditions``.
  They hold the ``autoscaling/v2`` JSON of those fields (Kubernetes writes the metric lists in the
  older ``autoscaling/v1`` ``MetricSpec`` shape). A v2 object never keeps them.

Server-side apply of a v1 object is refused (``415``); use ``autoscaling/v2`` for it.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from apimachinery import errors, printers
from apimachinery.resources import ResourceInfo, kind_info

from .registry import Registry, Storage

Obj = dict[str, Any]
V2 = kind_info("autoscaling/v2", "HorizontalPodAutoscaler")
# served here, not in the resource table: nothing is stored as v1
V1: ResourceInfo = replace(V2, version="v1")
API_VERSION = "autoscaling/v1"
KIND = "HorizontalPodAutoscaler"

PREFIX = "autoscaling.alpha.kubernetes.io/"
METRICS = PREFIX + "metrics"
CURRENT_METRICS = PREFIX + "current-metrics"
CONDITIONS = PREFIX + "conditions"
BEHAVIOR = PREFIX + "behavior"
ANNOTATIONS = (METRICS, CURRENT_METRICS, CONDITIONS, BEHAVIOR)


def _cpu_resource(m: Any) -> dict[str, Any] | None:
    """``m.resource`` when ``m`` is a ``Resource`` metric for ``cpu`` (any shape is looked at safely)."""
    if not isinstance(m, dict) or m.get("type") != "Resource":
        return None
    res = m.get("resource")
    return res if isinstance(res, dict) and res.get("name") == "cpu" else None


def _is_cpu_utilization(m: Any) -> bool:
    target = (_cpu_resource(m) or {}).get("target")
    return isinstance(target, dict) and target.get("type") == "Utilization"


def _is_cpu_current(m: Any) -> bool:
    current = (_cpu_resource(m) or {}).get("current")
    return isinstance(current, dict) and current.get("averageUtilization") is not None


def _invalid(name: str, field: str, message: str) -> errors.StatusError:
    return errors.invalid(KIND, name, [errors.cause(field, f"Invalid value: {message}")], "autoscaling")


def _load(annotations: dict[str, Any], key: str, want: type, field: str, name: str) -> Any:
    """The JSON in annotation ``key`` (removed from ``annotations``): a ``want`` (of objects, for a
    list), else a 422 naming the annotation."""
    raw = annotations.pop(key, None)
    if raw is None:
        return None
    try:
        value = orjson.loads(raw) if isinstance(raw, str) else None
    except orjson.JSONDecodeError:
        value = None
    where = f"metadata.annotations[{key}]"
    if not isinstance(value, want):
        raise _invalid(name, where, f"must be JSON: {field}")
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise _invalid(name, where, f"item {i} is not an object: must be JSON: {field}")
    return value


def to_v2(obj: Obj) -> Obj:
    """An ``autoscaling/v1`` object as ``autoscaling/v2`` (the v2-only fields from the annotations).

    Annotations that are not an object, or v2 annotations that do not hold the JSON they should,
    are a 422 naming the field, never an exception."""
    meta = copy.deepcopy(obj.get("metadata") or {})
    if not isinstance(meta, dict):
        raise errors.BadRequest("metadata must be an object")
    name = meta["name"] if isinstance(meta.get("name"), str) else ""
    raw_annotations = meta.get("annotations") or {}
    if not isinstance(raw_annotations, dict):
        raise _invalid(name, "metadata.annotations", "must be an object of string keys and values")
    annotations = dict(raw_annotations)
    other = _load(annotations, METRICS, list, "a list of autoscaling/v2 MetricSpec", name) or []
    behavior = _load(annotations, BEHAVIOR, dict, "an autoscaling/v2 HorizontalPodAutoscalerBehavior", name)
    current_other = (
        _load(annotations, CURRENT_METRICS, list, "a list of autoscaling/v2 MetricStatus", name) or []
    )
    conditions = _load(annotations, CONDITIONS, list, "a list of HorizontalPodAutoscalerCondition", name)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)

    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        raise errors.BadRequest("spec must be an object")
    out_spec: Obj = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
    metrics = [m for m in other if not _is_cpu_utilization(m)]
    target = spec.get("targetCPUUtilizationPercentage")
    if target is not None:
        cpu = {"type": "Utilization", "averageUtilization": target}
        metrics.insert(0, {"type": "Resource", "resource": {"name": "cpu", "target": cpu}})
    if metrics:
        out_spec["metrics"] = metrics
    if behavior is not None:
        out_spec["behavior"] = behavior

    status = obj.get("status") or {}
    out: Obj = {"apiVersion": V2.api_version, "kind": KIND, "metadata": meta, "spec": out_spec}
    if isinstance(status, dict) and (status or current_other or conditions):
        out_status: Obj = {
            k: status[k]
            for k in ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas")
            if k in status
        }
        current = [m for m in current_other if not _is_cpu_current(m)]
        utilization = status.get("currentCPUUtilizationPercentage")
        if utilization is not None:
            cpu_now = {"name": "cpu", "current": {"averageUtilization": utilization}}
            current.insert(0, {"type": "Resource", "resource": cpu_now})
        if current:
            out_status["currentMetrics"] = current
        if conditions is not None:
            out_status["conditions"] = conditions
        out["status"] = out_status
    return out


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()


def to_v1(obj: Obj) -> Obj:
    """A stored ``autoscaling/v2`` object as ``autoscaling/v1``."""
    meta = copy.deepcopy(obj.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    for key in ANNOTATIONS:
        annotations.pop(key, None)
    spec = obj.get("spec") or {}
    out_spec: Obj = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
    metrics = spec.get("metrics") or []
    cpu = next((m for m in metrics if _is_cpu_utilization(m)), None)
    if cpu is not None:
        value = cpu["resource"]["target"].get("averageUtilization")
        if value is not None:
            out_spec["targetCPUUtilizationPercentage"] = int(value)
    other = [m for m in metrics if m is not cpu]
    if other:
        annotations[METRICS] = _dump(other)
    if spec.get("behavior"):
        annotations[BEHAVIOR] = _dump(spec["behavior"])

    status = obj.get("status") or {}
    out_status: Obj = {
        k: status[k]
        for k in ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas")
        if k in status
    }
    out_status.setdefault("currentReplicas", 0)
    out_status.setdefault("desiredReplicas", 0)
    current = status.get("currentMetrics") or []
    cpu_now = next((m for m in current if _is_cpu_current(m)), None)
    if cpu_now is not None:
        out_status["currentCPUUtilizationPercentage"] = cpu_now["resource"]["current"]["averageUtilization"]
    current_other = [m for m in current if m is not cpu_now]
    if current_other:
        annotations[CURRENT_METRICS] = _dump(current_other)
    if status.get("conditions"):
        annotations[CONDITIONS] = _dump(status["conditions"])
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": out_spec, "status": out_status}


# ---- serving -------------------------------------------------------------------------------------


def _check_type(body: Any) -> Obj:
    if not isinstance(body, dict):
        raise errors.BadRequest("the body of the request must be a JSON or YAML object")
    if body.get("apiVersion") not in (None, "", API_VERSION) or body.get("kind") not in (None, "", KIND):
        raise errors.BadRequest(
            f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version ({API_VERSION})"
        )
    return body


def _single(request: Request, obj: Obj, status: int = 200) -> Response:
    """A stored v2 object, answered as v1 (or as a Table or metadata, as the client asks)."""
    from . import app

    out = app.negotiate(request.headers.get("accept"))
    if out.form == "table":
        include = request.query_params.get("includeObject") or "Metadata"
        table = _table([obj], include)
        table["apiVersion"] = f"meta.k8s.io/{out.version}"
        return app.json_response(table, status)
    if out.form == "partial":
        return app.json_response(app.partial(obj, out.version), status)
    return app.render(out, to_v1(obj), status)


def _table(items: list[Obj], include: str, **kw: Any) -> Obj:
    table = printers.table(V2, items, include_object=include, **kw)
    for row in table.get("rows") or ():
        embedded = row.get("object")
        if isinstance(embedded, dict) and embedded.get("kind") == KIND:
            row["object"] = to_v1(embedded)
    return table


async def serve(storage: Storage, request: Request, parts: list[str]) -> Response:
    """``/apis/autoscaling/v1/...``: ``parts`` are the path's segments."""
    from . import app  # the request helpers (app imports this module)

    t = app.parse_resource_path(["apis", "autoscaling", "v2", *parts[3:]])
    if t.info.kind != KIND:
        raise errors.NotFound("the server could not find the requested resource")
    reg = storage.registry(V2)
    method = request.method
    q = request.query_params
    if t.name is None:
        if method == "GET" and app.query_bool(q, "watch"):
            return await _watch(reg, request, t.namespace)
        if method == "GET":
            return await _list(reg, request, t.namespace)
        if method == "POST":
            return await _create(reg, request, t.namespace)
        if method == "DELETE":
            return await _delete_collection(reg, request, t.namespace)
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
    if method == "GET":
        if app.query_bool(q, "watch"):
            raise errors.MethodNotAllowed("watch a single object with a fieldSelector on metadata.name")
        return _single(request, await reg.get(t.namespace, t.name))
    if method == "PUT":
        raw, ctype = await app.read_payload(request)
        body = _check_type(app.decode_body(raw, ctype))
        updated = await reg.update(t.namespace, t.name, to_v2(body), t.subresource, app.dry_run(q))
        return _single(request, updated)
    if method == "PATCH":
        raw = await app.read_body(request)
        ptype = app.patch_type_of(request.headers.get("content-type") or "")
        if ptype == "apply":
            raise errors.UnsupportedMediaType(
                "server-side apply is served for autoscaling/v2 HorizontalPodAutoscalers, not autoscaling/v1"
            )
        body = app.decode_body(raw, app.JSON)

        def patcher(current: Obj) -> Obj:
            patched = app.apply_patch(ptype, to_v1(current), body, V1)
            return to_v2(_check_type(patched))

        return _single(request, await reg.patch(t.namespace, t.name, patcher, t.subresource, app.dry_run(q)))
    if method == "DELETE" and t.subresource is None:
        raw, _ = await app.read_payload(request)
        opts = app.delete_options(q, app.decode_body(raw, app.JSON) if raw.strip() else None)
        obj, deleted = await reg.delete(t.namespace, t.name, opts, app.delete_dry_run(q, opts))
        if deleted:
            return app.json_response(app.success_status(V1, obj))
        return _single(request, obj)
    raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")


async def _create(reg: Registry, request: Request, namespace: str | None) -> Response:
    from . import app

    if not namespace:
        raise errors.NotFound("the server could not find the requested resource")
    raw, ctype = await app.read_payload(request)
    obj = to_v2(_check_type(app.decode_body(raw, ctype)))
    meta = obj["metadata"]
    if meta.get("namespace") not in (None, "", namespace):
        raise errors.BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    if not meta.get("name") and not meta.get("generateName"):
        raise errors.invalid(
            KIND,
            "",
            [errors.cause("metadata.name", "name or generateName is required", "FieldValueRequired")],
            "autoscaling",
        )
    created = await reg.create(namespace, obj, app.dry_run(request.query_params))
    return _single(request, created, 201)


async def _list(reg: Registry, request: Request, namespace: str | None) -> Response:
    from . import app

    q = request.query_params
    out = app.negotiate(request.headers.get("accept"))
    limit = app.query_int(q, "limit") or 0
    if limit < 0:
        raise errors.BadRequest("limit must not be negative")
    app.list_options(q, watch=False)
    items, rev, cont = await reg.list(
        namespace, app.make_match(V2, q), limit, q.get("continue") or "", q.get("resourceVersion") or ""
    )
    if out.form == "table":
        include = q.get("includeObject") or "Metadata"
        table = _table(items, include, resource_version=str(rev), continue_token=cont)
        table["apiVersion"] = f"meta.k8s.io/{out.version}"
        return app.json_response(table)
    meta: Obj = {"resourceVersion": str(rev)}
    if cont:
        meta["continue"] = cont
    if out.form == "partial":
        return app.json_response(
            {
                "kind": "PartialObjectMetadataList",
                "apiVersion": f"meta.k8s.io/{out.version}",
                "metadata": meta,
                "items": [app.partial(o, out.version) for o in items],
            }
        )
    body = {
        "apiVersion": API_VERSION,
        "kind": f"{KIND}List",
        "metadata": meta,
        "items": [to_v1(o) for o in items],
    }
    return app.render(out, body)


async def _delete_collection(reg: Registry, request: Request, namespace: str | None) -> Response:
    from . import app

    q = request.query_params
    raw, _ = await app.read_payload(request)
    opts = app.delete_options(q, app.decode_body(raw, app.JSON) if raw.strip() else None)
    dry = app.delete_dry_run(q, opts)
    items, rev, _ = await reg.list(namespace, app.make_match(V2, q))
    gone = []
    for item in items:
        meta = item["metadata"]
        try:
            obj, _deleted = await reg.delete(meta.get("namespace"), meta["name"], opts, dry)
            gone.append(to_v1(obj))
        except (errors.NotFound, errors.Forbidden):
            pass
    return app.json_response(
        {
            "apiVersion": API_VERSION,
            "kind": f"{KIND}List",
            "metadata": {"resourceVersion": str(rev)},
            "items": gone,
        }
    )


async def _watch(reg: Registry, request: Request, namespace: str | None) -> Response:
    """A watch of the v2 objects, each event's object converted (or a one-row Table); with
    ``sendInitialEvents`` the API server's watch-list (the state first, then its bookmark)."""
    from . import app

    q = request.query_params
    out = app.negotiate(request.headers.get("accept"))
    send_initial = app.list_options(q, watch=True)
    timeout = app.query_int(q, "timeoutSeconds")
    if timeout is None:
        timeout = random.randint(1800, 3600)
    allow_bookmarks = app.query_bool(q, "allowWatchBookmarks")
    include = q.get("includeObject") or "Metadata"
    match = app.make_match(V2, q)
    rv = q.get("resourceVersion") or ""
    batches: AsyncIterator[list[tuple[str, Obj]]]
    if send_initial is None:
        batches = _one_by_one(reg.watch(namespace, match, rv))
    else:  # the APIServer's method does not use its instance
        target = app.Target(V2, namespace, None, None)
        batches = await app.APIServer.watch_list(cast(Any, None), reg, target, match, rv, send_initial)
    first = [True]

    def frame(etype: str, obj: Obj) -> bytes:
        if etype == "BOOKMARK":
            obj = {"kind": KIND, "apiVersion": API_VERSION, "metadata": obj.get("metadata") or {}}
        elif etype != "ERROR":
            if out.form == "table":
                obj = printers.table_for_watch_event(V2, obj, include, include_columns=first[0])
                obj["apiVersion"] = f"meta.k8s.io/{out.version}"
                first[0] = False
            elif out.form == "partial":
                obj = app.partial(obj, out.version)
            else:
                obj = to_v1(obj)
        return orjson.dumps({"type": etype, "object": obj}) + b"\n"

    async def stream() -> AsyncIterator[bytes]:
        deadline = time.monotonic() + timeout
        it = batches.__aiter__()
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    batch = await asyncio.wait_for(it.__anext__(), remaining)
                except (StopAsyncIteration, TimeoutError):
                    return
                except errors.StatusError as e:
                    yield frame("ERROR", e.status())
                    return
                chunk = [frame(t, o) for t, o in batch if t != "BOOKMARK" or allow_bookmarks or send_initial]
                if chunk:
                    yield b"".join(chunk)
        finally:
            await it.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(stream(), media_type=app.JSON)


async def _one_by_one(events: AsyncIterator[tuple[str, Obj]]) -> AsyncIterator[list[tuple[str, Obj]]]:
    try:
        async for item in events:
            yield [item]
    finally:
        await events.aclose()  # type: ignore[attr-defined]


# ---- OpenAPI -------------------------------------------------------------------------------------

_SCHEMA = "io.k8s.api.autoscaling.v1."
_REF = "#/components/schemas/"


def openapi_schemas(loaded: dict[str, Obj]) -> dict[str, Obj]:
    """The ``io.k8s.api.autoscaling.v1`` schemas of the HorizontalPodAutoscaler, as Kubernetes
    publishes them (built beside the stored v2 ones in ``loaded``), for apiserver/openapi.py:
    kubectl reads them to validate and to compute ``apply``'s patch."""
    v2 = "io.k8s.api.autoscaling.v2."
    meta = "io.k8s.apimachinery.pkg.apis.meta.v1."

    def ref(name: str, description: str) -> Obj:
        return {"allOf": [{"$ref": _REF + name}], "description": description}

    def int_(description: str, fmt: str = "int32") -> Obj:
        return {"type": "integer", "format": fmt, "description": description}

    gvk = [{"group": "autoscaling", "version": "v1", "kind": KIND}]
    hpa = copy.deepcopy(loaded[v2 + KIND])
    hpa["properties"]["spec"] = ref(
        _SCHEMA + "HorizontalPodAutoscalerSpec", "spec defines the behaviour of autoscaler."
    )
    hpa["properties"]["status"] = ref(
        _SCHEMA + "HorizontalPodAutoscalerStatus", "status is the current information about the autoscaler."
    )
    hpa["x-kubernetes-group-version-kind"] = gvk
    hpa_list = copy.deepcopy(loaded[v2 + "HorizontalPodAutoscalerList"])
    hpa_list["properties"]["items"]["items"] = {"$ref": _REF + _SCHEMA + KIND}
    hpa_list["x-kubernetes-group-version-kind"] = [{**gvk[0], "kind": f"{KIND}List"}]
    return {
        _SCHEMA + KIND: hpa,
        _SCHEMA + "HorizontalPodAutoscalerList": hpa_list,
        _SCHEMA + "CrossVersionObjectReference": copy.deepcopy(loaded[v2 + "CrossVersionObjectReference"]),
        _SCHEMA + "HorizontalPodAutoscalerSpec": {
            "description": "specification of a horizontal pod autoscaler.",
            "type": "object",
            "required": ["scaleTargetRef", "maxReplicas"],
            "properties": {
                "maxReplicas": int_(
                    "maxReplicas is the upper limit for the number of pods that can be set by the autoscaler; cannot be smaller than MinReplicas."
                ),
                "minReplicas": int_(
                    "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."
                ),
                "scaleTargetRef": ref(
                    _SCHEMA + "CrossVersionObjectReference",
                    "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource.",
                ),
                "targetCPUUtilizationPercentage": int_(
                    "targetCPUUtilizationPercentage is the target average CPU utilization (represented as a percentage of requested CPU) over all the pods; if not specified the default autoscaling policy will be used."
                ),
            },
        },
        _SCHEMA + "HorizontalPodAutoscalerStatus": {
            "description": "current status of a horizontal pod autoscaler",
            "type": "object",
            "required": ["currentReplicas", "desiredReplicas"],
            "properties": {
                "currentCPUUtilizationPercentage": int_(
                    "currentCPUUtilizationPercentage is the current average CPU utilization over all pods, represented as a percentage of requested CPU, e.g. 70 means that an average pod is using now 70% of its requested CPU."
                ),
                "currentReplicas": int_(
                    "currentReplicas is the current number of replicas of pods managed by this autoscaler."
                ),
                "desiredReplicas": int_(
                    "desiredReplicas is the  desired number of replicas of pods managed by this autoscaler."
                ),
                "lastScaleTime": ref(
                    meta + "Time",
                    "lastScaleTime is the last time the HorizontalPodAutoscaler scaled the number of pods; used by the autoscaler to control how often the number of pods is changed.",
                ),
                "observedGeneration": int_(
                    "observedGeneration is the most recent generation observed by this autoscaler.", "int64"
                ),
            },
        },
    }
