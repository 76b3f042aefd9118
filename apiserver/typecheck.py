"""JSON types of a built-in object's fields, checked against its kind's OpenAPI v3 schema.

Kubernetes decodes a request body into the kind's Go structs, and a value of the wrong JSON type
(a list where a map belongs, a string for an integer) fails decoding with a 400::

    ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal array
    into Go struct field ConfigMap.data of type map[string]string

:func:`check` gives the same answer for a decoded object: one walk beside the schema, stopping at
the first wrong value, with Go's wording (the innermost struct, the field path without list
indexes, the Go type) and a ``details.causes`` entry naming the field path with its indexes.

What decoding accepts is accepted here: ``null`` anywhere (treated as absent), integers and
strings for int-or-string fields, strings and numbers for quantities, integers for ``number``
fields, anything under ``x-kubernetes-preserve-unknown-fields`` or a free-form object, and fields
the schema does not define (pruned or refused later by field validation).  Custom resources are
left to their CRD's structural schema (:mod:`apiserver.crdschema`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apimachinery.errors import BadRequest, cause
from apimachinery.resources import ResourceInfo
from apiserver import openapi
from apiserver.crdschema import json_type

# Node kinds
ANY, STRUCT, MAP, LIST, STRING, INT, NUMBER, BOOL, INT_OR_STRING, QUANTITY = range(10)

_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_QUANTITY_MESSAGE = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
# Free-form values whose Go types decode any JSON.
_FREE_FORM = frozenset(
    {
        "io.k8s.apimachinery.pkg.runtime.RawExtension",
        "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
    }
)
# Integer fields that are int64 in Kubernetes' Go types (the published schemas carry no format);
# every other integer is an int32.
_INT64_FIELDS = frozenset(
    {
        "generation",
        "observedGeneration",
        "deletionGracePeriodSeconds",
        "gracePeriodSeconds",
        "activeDeadlineSeconds",
        "terminationGracePeriodSeconds",
        "runAsUser",
        "runAsGroup",
        "fsGroup",
        "supplementalGroups",
        "expirationSeconds",
        "seconds",
        "count",
        "remainingItemCount",
        "startingDeadlineSeconds",
        "ttlSecondsAfterFinished",
        "value",
    }
)
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(slots=True)
class _Node:
    kind: int
    go: str = ""  # the Go type, as Go's decoder names it
    name: str = ""  # a struct's Go name (``PodSpec``)
    fields: dict[str, Any] = field(default_factory=dict)
    element: Any = None


_ANY = _Node(ANY)
_NODES: dict[int, tuple[Any, _Node]] = {}


def _ref_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        for part in schema.get("allOf") or ():
            if isinstance(part, dict) and isinstance(part.get("$ref"), str):
                ref = part["$ref"]
                break
    return ref.rpartition("/")[2] if isinstance(ref, str) else ""


def _go_name(schema_name: str) -> str:
    """``io.k8s.api.core.v1.PodSpec`` -> ``v1.PodSpec``."""
    parts = schema_name.split(".")
    return ".".join(parts[-2:]) if len(parts) >= 2 else schema_name


def _node(schema: Any, key: str = "") -> _Node:
    if not isinstance(schema, dict):
        return _ANY
    cache_key = id(schema)
    hit = _NODES.get(cache_key)
    if hit is not None and hit[0] is schema:
        return hit[1]
    node = _build(schema, key)
    _NODES[cache_key] = (schema, node)
    return node


def _build(schema: dict[str, Any], key: str) -> _Node:
    name = _ref_name(schema)
    if name in _FREE_FORM:
        return _ANY
    if name == _QUANTITY:
        return _Node(QUANTITY, "resource.Quantity")
    r = openapi._resolve(schema)
    if r.get("x-kubernetes-int-or-string"):
        return _Node(INT_OR_STRING, "int32")
    if "oneOf" in r or "anyOf" in r:
        return _ANY
    props = r.get("properties")
    if isinstance(props, dict) and props:
        go_name = _go_name(name) if name else "struct"
        return _Node(STRUCT, go_name, go_name.rpartition(".")[2], fields=props)
    if r.get("x-kubernetes-preserve-unknown-fields") is True:
        return _ANY
    type_ = r.get("type")
    if type_ == "array" or "items" in r:
        element = r.get("items")
        return _Node(LIST, "[]" + _node(element, key).go, element=element)
    additional = r.get("additionalProperties")
    if isinstance(additional, dict):
        return _Node(MAP, "map[string]" + _node(additional, key).go, element=additional)
    if type_ == "string":
        return _Node(STRING, "[]uint8" if r.get("format") == "byte" else "string")
    if type_ == "integer":
        return _Node(INT, "int64" if key in _INT64_FIELDS else "int32")
    if type_ == "number":
        return _Node(NUMBER, "float64")
    if type_ == "boolean":
        return _Node(BOOL, "bool")
    return _ANY


# Go's decoder says ``bool`` for a boolean and ``number`` for any number (and never meets null here)
_GO_KINDS = {"boolean": "bool", "integer": "number", "null": "number"}


def _json_kind(value: Any) -> str:
    """What Go's decoder calls a JSON value: ``object``, ``array``, ``string``, ``bool``, ``number``."""
    kind = json_type(value)
    return _GO_KINDS.get(kind, kind)


def _number_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return repr(value)
    return str(value)


def _int_problem(value: Any, go: str) -> str | None:
    """The JSON value's description when it does not fit the Go integer type, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _json_kind(value)
    if isinstance(value, float):
        if not value.is_integer():
            return f"number {_number_text(value)}"
        value = int(value)
    low, high = (_INT64_MIN, _INT64_MAX) if go == "int64" else (_INT32_MIN, _INT32_MAX)
    if not low <= value <= high:
        return f"number {value}"
    return None


class _Wrong(Exception):
    def __init__(self, what: str, node: _Node, struct: str, trail: Any) -> None:
        self.what = what  # the JSON value's description, or "" for a quantity
        self.node = node
        self.struct = struct
        self.trail = trail


def _walk(value: Any, node: _Node, struct: str, trail: Any) -> None:
    """Raise :class:`_Wrong` at the first value of the wrong type.  ``trail`` is the path as
    nested (parent, key) pairs, only spelled out when something is wrong."""
    kind = node.kind
    if value is None or kind == ANY:
        return
    if kind == STRUCT:
        if type(value) is not dict:
            raise _Wrong(_json_kind(value), node, struct, trail)
        fields = node.fields
        name = node.name
        for key, child in value.items():
            if child is None:
                continue
            schema = fields.get(key)
            if schema is not None:
                _walk(child, _node(schema, key), name, (trail, key))
    elif kind == MAP:
        if type(value) is not dict:
            raise _Wrong(_json_kind(value), node, struct, trail)
        element = _node(node.element)
        if element.kind != ANY:
            for key, child in value.items():
                _walk(child, element, struct, (trail, key, True))
    elif kind == LIST:
        if type(value) is not list:
            raise _Wrong(_json_kind(value), node, struct, trail)
        element = _node(node.element)
        if element.kind != ANY:
            for i, child in enumerate(value):
                _walk(child, element, struct, (trail, i))
    elif kind == STRING:
        if type(value) is not str:
            raise _Wrong(_json_kind(value), node, struct, trail)
    elif kind == INT:
        if type(value) is not int:
            what = _int_problem(value, node.go)
            if what:
                raise _Wrong(what, node, struct, trail)
        elif not _INT64_MIN <= value <= _INT64_MAX or (
            node.go == "int32" and not _INT32_MIN <= value <= _INT32_MAX
        ):
            raise _Wrong(f"number {value}", node, struct, trail)
    elif kind == NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Wrong(_json_kind(value), node, struct, trail)
    elif kind == BOOL:
        if type(value) is not bool:
            raise _Wrong(_json_kind(value), node, struct, trail)
    elif kind == INT_OR_STRING:
        if type(value) is not str:
            what = _int_problem(value, "int32")
            if what:
                raise _Wrong(what, node, struct, trail)
    elif kind == QUANTITY:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _Wrong("", node, struct, trail)


def _paths(trail: Any) -> tuple[str, str]:
    """(Go's field path: struct fields only, dotted; the field path with list indexes and map keys)."""
    parts: list[tuple[Any, bool]] = []
    while trail is not None:
        if len(trail) == 3:
            parts.append((trail[1], True))
        else:
            parts.append((trail[1], False))
        trail = trail[0]
    parts.reverse()
    go: list[str] = []
    path = ""
    for key, is_map_key in parts:
        if isinstance(key, int):
            path += f"[{key}]"
        elif is_map_key:
            path += f"[{key}]"
        else:
            go.append(key)
            path = f"{path}.{key}" if path else key
    return ".".join(go), path


def problem(info: ResourceInfo, obj: dict[str, Any]) -> BadRequest | None:
    """The 400 for the first field of ``obj`` whose value has the wrong JSON type, or None."""
    if info.custom:
        return None
    schema = openapi._kind_schema(info)
    if schema is None:
        return None
    root = _node(schema)
    if root.kind != STRUCT:
        return None
    try:
        for key, child in obj.items():
            if child is None:
                continue
            sub = root.fields.get(key)
            if sub is not None:
                _walk(child, _node(sub, key), info.kind, (None, key))
    except _Wrong as wrong:
        go_path, path = _paths(wrong.trail)
        if wrong.what:
            detail = (
                f"json: cannot unmarshal {wrong.what} into Go struct field "
                f"{wrong.struct}.{go_path} of type {wrong.node.go}"
            )
        else:
            detail = _QUANTITY_MESSAGE
        return BadRequest(
            f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}: {detail}',
            causes=[cause(path, detail, "FieldValueTypeInvalid")],
        )
    return None


def check(info: ResourceInfo, obj: dict[str, Any]) -> None:
    """Raise the 400 Kubernetes' decoder gives when a field of ``obj`` has the wrong JSON type."""
    error = problem(info, obj)
    if error is not None:
        raise error
