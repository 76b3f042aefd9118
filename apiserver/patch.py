"""The three PATCH formats of the Kubernetes API, as pure functions over decoded JSON.

=============================================  ==========================================
``Content-Type``                               function
=============================================  ==========================================
``application/merge-patch+json``               :func:`json_merge_patch` (RFC 7386)
``application/json-patch+json``                :func:`json_patch` (RFC 6902)
``application/strategic-merge-patch+json``     :func:`strategic_merge_patch`
=============================================  ==========================================

:func:`create_three_way_merge_patch` computes what ``kubectl apply`` sends. None of the functions
modifies its arguments. Errors follow the API server's patch handler
(``k8s.io/apiserver/pkg/endpoints/handlers/patch.go``): a patch that cannot be decoded is a 400
``BadRequest``; a JSON patch whose operations cannot be applied (a failed ``test``, a missing
path) is a 422 with the generic message and the detail as the cause.
"""

from __future__ import annotations

import copy
from typing import Any

from apimachinery import errors
from apimachinery.strategicpatch import (
    create_three_way_merge_patch,
    create_two_way_merge_patch,
    strategic_merge_patch,
)

__all__ = [
    "MAX_JSON_PATCH_OPERATIONS",
    "create_three_way_merge_patch",
    "create_two_way_merge_patch",
    "json_merge_patch",
    "json_patch",
    "strategic_merge_patch",
]

# The API server refuses JSON patches with more operations (413).
MAX_JSON_PATCH_OPERATIONS = 10000

JSON = Any


# --------------------------------------------------------------------------------------------
# RFC 7386 JSON merge patch
# --------------------------------------------------------------------------------------------


def json_merge_patch(original: JSON, patch: JSON) -> JSON:
    """Apply an RFC 7386 merge patch: objects merge recursively, ``null`` deletes a member,
    anything else (arrays included) replaces the target."""
    return _merge_patch(copy.deepcopy(original), patch)


def _merge_patch(target: JSON, patch: JSON) -> JSON:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


# --------------------------------------------------------------------------------------------
# RFC 6902 JSON patch
# --------------------------------------------------------------------------------------------


class _OperationFailed(Exception):
    """An operation that cannot be applied; the API server answers 422."""


def json_patch(original: JSON, operations: list) -> JSON:
    """Apply an RFC 6902 JSON patch (add, remove, replace, move, copy, test) atomically."""
    if not isinstance(operations, list):
        raise errors.BadRequest("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    if len(operations) > MAX_JSON_PATCH_OPERATIONS:
        raise errors.RequestEntityTooLarge(
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
            f"got {len(operations)}"
        )
    for operation in operations:
        if not isinstance(operation, dict):
            raise errors.BadRequest(
                "json: cannot unmarshal into Go value of type jsonpatch.Operation: "
                "each operation must be a JSON object"
            )
    doc = copy.deepcopy(original)
    try:
        for operation in operations:
            doc = _apply_operation(doc, operation)
    except _OperationFailed as exc:
        raise errors.Invalid(
            "the server rejected our request due to an error in our request",
            causes=[{"reason": "UnexpectedServerResponse", "message": str(exc)}],
        ) from exc
    return doc


def _apply_operation(doc: JSON, operation: dict) -> JSON:
    op = operation.get("op")
    path = _string_member(operation, "path")
    if op == "add":
        return _add(doc, path, copy.deepcopy(_value_member(operation)))
    if op == "remove":
        return _remove(doc, path)[0]
    if op == "replace":
        return _replace(doc, path, copy.deepcopy(_value_member(operation)))
    if op == "move":
        source = _string_member(operation, "from")
        if path != source and path.startswith(source + "/"):
            raise _OperationFailed(f'move operation: "from" {source!r} is a prefix of "path" {path!r}')
        doc, value = _remove(doc, source)
        return _add(doc, path, value)
    if op == "copy":
        source = _string_member(operation, "from")
        return _add(doc, path, copy.deepcopy(_get(doc, source)))
    if op == "test":
        expected = _value_member(operation)
        if not _json_equal(_get(doc, path), expected):
            raise _OperationFailed(f"testing value {path} failed: test failed")
        return doc
    raise _OperationFailed(f"Unexpected kind: {op}")


def _string_member(operation: dict, name: str) -> str:
    value = operation.get(name)
    if not isinstance(value, str):
        raise _OperationFailed(f'operation {operation.get("op")}: missing or invalid "{name}"')
    return value


def _value_member(operation: dict) -> JSON:
    if "value" not in operation:
        raise _OperationFailed(f'operation {operation.get("op")}: missing "value"')
    return operation["value"]


def _json_equal(left: JSON, right: JSON) -> bool:
    """JSON equality: a boolean is never a number, object member order does not matter."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_json_equal(v, right[k]) for k, v in left.items())
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_json_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict | list) or isinstance(right, dict | list):
        return False
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    return type(left) is type(right) and bool(left == right)


def _parse_pointer(pointer: str) -> list[str]:
    """Split an RFC 6901 JSON pointer into unescaped reference tokens."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise _OperationFailed(f"invalid JSON pointer {pointer!r}: must be empty or start with '/'")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _array_index(token: str, length: int, pointer: str, allow_end: bool) -> int:
    """The index a token names in an array of ``length`` (``allow_end``: ``-`` and ``length``)."""
    if token == "-":
        if allow_end:
            return length
        raise _OperationFailed(f"invalid index '-' in path {pointer!r}")
    if not token.isdigit() or not token.isascii() or (len(token) > 1 and token[0] == "0"):
        raise _OperationFailed(f"invalid array index {token!r} in path {pointer!r}")
    index = int(token)
    if index > length or (index == length and not allow_end):
        raise _OperationFailed(f"array index {index} out of bounds in path {pointer!r}")
    return index


def _resolve_parent(doc: JSON, pointer: str) -> tuple[JSON, str]:
    """The container holding the pointer's target, and the last token."""
    tokens = _parse_pointer(pointer)
    if not tokens:
        raise _OperationFailed("the root has no parent")
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token, pointer)
    if not isinstance(node, dict | list):
        raise _OperationFailed(f"doc is missing path: {pointer!r}: missing value")
    return node, tokens[-1]


def _child(node: JSON, token: str, pointer: str) -> JSON:
    if isinstance(node, dict):
        if token not in node:
            raise _OperationFailed(f"doc is missing path: {pointer!r}: missing value")
        return node[token]
    if isinstance(node, list):
        return node[_array_index(token, len(node), pointer, allow_end=False)]
    raise _OperationFailed(f"doc is missing path: {pointer!r}: missing value")


def _get(doc: JSON, pointer: str) -> JSON:
    node = doc
    for token in _parse_pointer(pointer):
        node = _child(node, token, pointer)
    return node


def _add(doc: JSON, pointer: str, value: JSON) -> JSON:
    if pointer == "":
        return value
    parent, token = _resolve_parent(doc, pointer)
    if isinstance(parent, dict):
        parent[token] = value
    else:
        parent.insert(_array_index(token, len(parent), pointer, allow_end=True), value)
    return doc


def _remove(doc: JSON, pointer: str) -> tuple[JSON, JSON]:
    """Remove the target; returns (document, removed value)."""
    if pointer == "":
        raise _OperationFailed("unable to remove the whole document")
    parent, token = _resolve_parent(doc, pointer)
    if isinstance(parent, dict):
        if token not in parent:
            raise _OperationFailed(f"unable to remove nonexistent key: {token}: missing value")
        return doc, parent.pop(token)
    return doc, parent.pop(_array_index(token, len(parent), pointer, allow_end=False))


def _replace(doc: JSON, pointer: str, value: JSON) -> JSON:
    if pointer == "":
        return value
    parent, token = _resolve_parent(doc, pointer)
    if isinstance(parent, dict):
        if token not in parent:
            raise _OperationFailed(f"replace operation does not apply: doc is missing key: {pointer}")
        parent[token] = value
    else:
        parent[_array_index(token, len(parent), pointer, allow_end=False)] = value
    return doc
