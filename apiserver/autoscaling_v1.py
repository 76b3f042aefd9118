"""``autoscaling/v1`` HorizontalPodAutoscalers: a view of the stored ``autoscaling/v2`` objects.

kubectl 1.32's ``kubectl autoscale`` creates its HPA as ``autoscaling/v1``.  This module answers
create, get and list of that version by converting, as Kubernetes' conversion does:
``spec.targetCPUUtilizationPercentage`` is a ``Resource`` metric for ``cpu`` with a
``Utilization`` target (none: the v2 default, 80 %), and back; ``status.currentCPUUtilizationPercentage``
comes from the current CPU metric.  Metrics v1 cannot express are not shown in v1 (Kubernetes keeps
them in annotations).  Update, patch, delete and watch of v1 are ``405``: use ``autoscaling/v2``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from apimachinery import errors
from apimachinery.resources import kind_info

from .registry import Storage

Obj = dict[str, Any]
V2 = kind_info("autoscaling/v2", "HorizontalPodAutoscaler")
API_VERSION = "autoscaling/v1"


def _cpu_target(metrics: Any) -> int | None:
    for m in metrics or []:
        res = (m or {}).get("resource") or {}
        target = res.get("target") or {}
        if m.get("type") == "Resource" and res.get("name") == "cpu" and target.get("type") == "Utilization":
            value = target.get("averageUtilization")
            return int(value) if value is not None else None
    return None


def to_v2(obj: Obj) -> Obj:
    spec = dict(obj.get("spec") or {})
    out_spec: Obj = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
    target = spec.get("targetCPUUtilizationPercentage")
    if target is not None:
        out_spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
            }
        ]
    return {
        "apiVersion": V2.api_version,
        "kind": "HorizontalPodAutoscaler",
        "metadata": obj.get("metadata") or {},
        "spec": out_spec,
    }


def to_v1(obj: Obj) -> Obj:
    spec = obj.get("spec") or {}
    out_spec: Obj = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
    target = _cpu_target(spec.get("metrics"))
    if target is not None:
        out_spec["targetCPUUtilizationPercentage"] = target
    status = obj.get("status") or {}
    out_status: Obj = {
        k: status[k]
        for k in ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas")
        if k in status
    }
    out_status.setdefault("currentReplicas", 0)
    out_status.setdefault("desiredReplicas", 0)
    for m in status.get("currentMetrics") or []:
        res = (m or {}).get("resource") or {}
        current = (res.get("current") or {}).get("averageUtilization")
        if m.get("type") == "Resource" and res.get("name") == "cpu" and current is not None:
            out_status["currentCPUUtilizationPercentage"] = current
    return {
        "apiVersion": API_VERSION,
        "kind": "HorizontalPodAutoscaler",
        "metadata": obj.get("metadata") or {},
        "spec": out_spec,
        "status": out_status,
    }


async def serve(storage: Storage, request: Request, parts: list[str]) -> Response:
    """``/apis/autoscaling/v1/...``: ``parts`` are the path's segments."""
    from . import app  # the request helpers (app imports this module)

    t = app.parse_resource_path(["apis", "autoscaling", "v2", *parts[3:]])
    if t.info.kind != "HorizontalPodAutoscaler" or t.subresource:
        raise errors.NotFound("the server could not find the requested resource")
    reg = storage.registry(V2)
    method = request.method
    if method == "GET" and not app.query_bool(request.query_params, "watch"):
        if t.name is not None:
            return app.json_response(to_v1(await reg.get(t.namespace, t.name)))
        items, rev, _token = await reg.list(t.namespace)
        return app.json_response(
            {
                "apiVersion": API_VERSION,
                "kind": "HorizontalPodAutoscalerList",
                "metadata": {"resourceVersion": str(rev)},
                "items": [to_v1(o) for o in items],
            }
        )
    if method == "POST" and t.name is None:
        raw, ctype = await app.read_payload(request)
        body = app.decode_body(raw, ctype)
        if not isinstance(body, dict):
            raise errors.BadRequest("the body of the request must be a JSON or YAML object")
        if body.get("apiVersion") not in (None, "", API_VERSION) or body.get("kind") not in (
            None,
            "",
            "HorizontalPodAutoscaler",
        ):
            raise errors.BadRequest(
                f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version ({API_VERSION})"
            )
        obj = to_v2(body)
        meta = obj.setdefault("metadata", {})
        if meta.get("namespace") not in (None, "", t.namespace):
            raise errors.BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        if not t.namespace:
            raise errors.NotFound("the server could not find the requested resource")
        if not meta.get("name") and not meta.get("generateName"):
            raise errors.invalid(
                "HorizontalPodAutoscaler",
                "",
                [errors.cause("metadata.name", "name or generateName is required", "FieldValueRequired")],
                "autoscaling",
            )
        created = await reg.create(t.namespace, obj, app.dry_run(request.query_params))
        return app.json_response(to_v1(created), 201)
    raise errors.MethodNotAllowed(
        "autoscaling/v1 HorizontalPodAutoscalers can be created, read and listed here; use autoscaling/v2 for the rest"
    )
