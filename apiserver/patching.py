"""PATCH: pick the patch type from the Content-Type and apply it to the stored object."""

from __future__ import annotations

from typing import Any

from apimachinery import errors, strategicpatch
from apimachinery.resources import ResourceInfo
from apiserver import patch

PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


def patch_type_of(content_type: str) -> str:
    ctype = content_type.split(";")[0].strip().lower()
    if ctype not in PATCH_TYPES:
        raise errors.UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(PATCH_TYPES)}"
        )
    return PATCH_TYPES[ctype]


def apply_patch(ptype: str, current: dict[str, Any], body: Any, info: ResourceInfo | None) -> Any:
    """The patched object.  ``info`` None means a subresource view (Scale): no strategic keys."""
    if ptype == "merge":
        if not isinstance(body, dict):
            raise errors.BadRequest("a merge patch must be a JSON object")
        return patch.json_merge_patch(current, body)
    if ptype == "json":
        if not isinstance(body, list):
            raise errors.BadRequest("a JSON patch must be a list of operations")
        return patch.json_patch(current, body)
    if ptype == "strategic":
        if not isinstance(body, dict):
            raise errors.BadRequest("a strategic merge patch must be a JSON object")
        kind = info.kind if info is not None else str(current.get("kind") or "")
        api_version = info.api_version if info is not None else str(current.get("apiVersion") or "")
        return strategicpatch.strategic_merge_patch(current, body, kind, api_version)
    if ptype == "apply" and info is None:  # the Scale view of an apply to /scale
        if not isinstance(body, dict) or body.get("kind") not in (None, "Scale"):
            raise errors.BadRequest("the applied configuration must be an autoscaling/v1 Scale")
        return patch.json_merge_patch(current, body)
    raise errors.UnsupportedMediaType("server-side apply is handled by the PATCH handler")
