"""Field ownership (``metadata.managedFields``) and server-side apply, as Kubernetes' field manager.

A *field set* is a Python ``set`` of paths; a path is a tuple of Kubernetes' path elements in
their FieldsV1 spelling: ``f:spec`` (a field), ``k:{"name":"main"}`` (an item of an associative
list, by its list-map keys), ``v:"x"`` (an item of a set list).  :func:`encode_fields` and
:func:`decode_fields` turn a set into the nested ``fieldsV1`` object and back (``.`` marks a
member that also has members below it).

What a value owns (:func:`flatten`) follows structured-merge-diff's rules: every scalar, every
atomic list or map, every list item, every key of a map that is not a declared field of a struct,
and every empty or null value.  The list and map types come from the kind's OpenAPI schema
(``x-kubernetes-list-type``/``x-kubernetes-list-map-keys``/``x-kubernetes-map-type``), or for the
built-in kinds whose published schemas carry only the strategic-merge metadata, from the patch
merge keys (``x-kubernetes-patch-merge-key``: an associative list; ``merge`` strategy without a
key: a set; otherwise atomic).

Every write passes through :func:`track_create` or :func:`track_update` (called by
``apiserver.strategy``), with the request's manager and operation taken from :data:`WRITE`, set
by the HTTP handler.  :func:`apply` is the server-side apply of ``application/apply-patch+yaml``:
it merges the applied configuration into the live object, removes what the manager applied
before and no longer applies (unless another manager owns it), and refuses, with 409 and one
cause per field, to change a field another manager owns, unless forced.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
import unicodedata
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from apimachinery import errors
from apimachinery.resources import ResourceInfo
from apimachinery.timefmt import rfc3339

Path = tuple[str, ...]
FieldSet = set[Path]

APPLY = "Apply"
UPDATE = "Update"
FIELD_MANAGER_MAX_LENGTH = 128
# subresources whose writes are recorded under their own entries
TRACKED_SUBRESOURCES = ("status", "scale")


# --------------------------------------------------------------------------------------------
# The request's manager
# --------------------------------------------------------------------------------------------


@dataclass
class Write:
    """Who writes: the field manager, Apply or Update, and the subresource written through."""

    manager: str
    operation: str = UPDATE
    subresource: str = ""
    api_version: str = ""
    config: dict[str, Any] | None = None  # the applied configuration (Apply only)
    force: bool = False


def write_of(
    request: Any, info: ResourceInfo, subresource: str | None, operation: str, options_kind: str
) -> Write:
    """The :class:`Write` of an HTTP request: its ``fieldManager`` (checked; required for an
    apply) or User-Agent, ``force`` (apply only: 422 on other patches)."""
    q = request.query_params
    field_manager = q.get("fieldManager") or ""
    if options_kind == "PatchOptions" and operation != APPLY and q.get("force") is not None:
        raise errors.invalid(
            options_kind,
            "",
            [
                errors.cause(
                    "force", "Forbidden: may not be specified for non-apply patch", "FieldValueForbidden"
                )
            ],
            "meta.k8s.io",
        )
    validate_field_manager(field_manager, options_kind, apply=operation == APPLY)
    force = str(q.get("force") or "").lower()
    if force not in ("", "true", "false"):
        raise errors.BadRequest(f'force: invalid value "{q.get("force")}"')
    return Write(
        manager=manager_name(field_manager, request.headers.get("user-agent")),
        operation=operation,
        subresource=subresource or "",
        api_version=info.api_version,
        force=force == "true",
    )


def object_to_create(info: ResourceInfo, config: dict[str, Any], name: str) -> dict[str, Any]:
    """The object an apply creates when none exists yet: the configuration itself, named by the URL."""
    obj = copy.deepcopy(config)
    meta = obj.setdefault("metadata", {})
    meta["name"] = name
    return obj


WRITE: ContextVar[Write | None] = ContextVar("minik_field_manager", default=None)


@contextlib.contextmanager
def writing(write: Write) -> Iterator[Write]:
    token = WRITE.set(write)
    try:
        yield write
    finally:
        WRITE.reset(token)


def manager_name(field_manager: str | None, user_agent: str | None) -> str:
    """The manager of an Update: ``fieldManager``, else the User-Agent up to its first ``/``."""
    if field_manager:
        return field_manager
    return (user_agent or "").split("/")[0][:FIELD_MANAGER_MAX_LENGTH]


def validate_field_manager(field_manager: str, options_kind: str, apply: bool = False) -> None:
    """422 ``PatchOptions.meta.k8s.io "" is invalid`` for a missing (apply), too long or
    unprintable ``fieldManager``."""
    causes = []
    if apply and not field_manager:
        causes.append(
            errors.cause("fieldManager", "Required value: is required for apply patch", "FieldValueRequired")
        )
    if len(field_manager) > FIELD_MANAGER_MAX_LENGTH:
        causes.append(
            errors.cause(
                "fieldManager",
                f"Too long: may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes",
                "FieldValueTooLong",
            )
        )
    for i, ch in enumerate(field_manager):
        if not ch.isprintable():
            causes.append(
                errors.cause(
                    "fieldManager",
                    f"Invalid value: {json.dumps(field_manager)}: invalid character "
                    f"U+{ord(ch):04X} {unicodedata.name(ch, '')!r} (at position {i})",
                )
            )
            break
    if causes:
        raise _options_invalid(options_kind, causes)


def _options_invalid(options_kind: str, causes: list[dict[str, str]]) -> errors.Invalid:
    """``PatchOptions.meta.k8s.io "" is invalid: ...``, as Kubernetes words it."""
    e = errors.invalid(f"{options_kind}.meta.k8s.io", "", causes)
    e.kind, e.group = options_kind, "meta.k8s.io"
    return e


# --------------------------------------------------------------------------------------------
# Schema: what kind of value lives at a path
# --------------------------------------------------------------------------------------------

SCALAR, STRUCT, MAP, LIST_ATOMIC, LIST_SET, LIST_MAP, ATOMIC, UNKNOWN = range(8)

# Structs Kubernetes marks ``+structType=atomic`` / ``+mapType=atomic``
_ATOMIC_SCHEMAS = frozenset(
    {
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
        "io.k8s.api.core.v1.NodeSelector",
        "io.k8s.api.core.v1.ObjectReference",
        "io.k8s.api.core.v1.LocalObjectReference",
        "io.k8s.api.core.v1.ConfigMapKeySelector",
        "io.k8s.api.core.v1.SecretKeySelector",
        "io.k8s.api.core.v1.ObjectFieldSelector",
        "io.k8s.api.core.v1.ResourceFieldSelector",
        "io.k8s.api.core.v1.TypedLocalObjectReference",
        "io.k8s.api.core.v1.TopologySelectorTerm",
    }
)
# The list-map keys of Kubernetes' associative lists where they are more than the patch merge key.
_MAP_KEYS_BY_MERGE_KEY = {
    "containerPort": ("containerPort", "protocol"),
    "port": ("port", "protocol"),
    "topologyKey": ("topologyKey", "whenUnsatisfiable"),
}
# Defaults of list-map key fields an item may leave out (Kubernetes fills them before keying).
_KEY_DEFAULTS: dict[str, Any] = {"protocol": "TCP"}
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@dataclass(frozen=True)
class Type:
    """A resolved schema: its shape, its fields (struct), element schema (map/list), keys."""

    shape: int
    fields: dict[str, Any] = field(default_factory=dict)
    element: Any = None
    keys: tuple[str, ...] = ()
    open: bool = False  # a struct that keeps unknown fields


_UNKNOWN_TYPE = Type(UNKNOWN)
_TYPES: dict[int, tuple[Any, Type]] = {}


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    from apiserver import openapi

    return openapi._resolve(schema)


def type_of(schema: Any) -> Type:
    """The :class:`Type` of a schema (None: unknown, deduced from the value)."""
    if not isinstance(schema, dict):
        return _UNKNOWN_TYPE
    hit = _TYPES.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    t = _type_of(schema)
    _TYPES[id(schema)] = (schema, t)
    return t


def _ref_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        for part in schema.get("allOf") or []:
            if isinstance(part, dict) and isinstance(part.get("$ref"), str):
                ref = part["$ref"]
                break
    return ref.rpartition("/")[2] if isinstance(ref, str) else ""


def _type_of(schema: dict[str, Any]) -> Type:
    name = _ref_name(schema)
    r = _resolve(schema)
    if name in _ATOMIC_SCHEMAS or r.get("x-kubernetes-map-type") == "atomic":
        return Type(ATOMIC)
    if r.get("x-kubernetes-int-or-string"):
        return Type(SCALAR)
    if r.get("type") == "array" or "items" in r:
        list_type = r.get("x-kubernetes-list-type")
        keys = tuple(r.get("x-kubernetes-list-map-keys") or ())
        if list_type is None:
            merge_key = r.get("x-kubernetes-patch-merge-key")
            strategy = str(r.get("x-kubernetes-patch-strategy") or "")
            if merge_key:
                list_type, keys = "map", _MAP_KEYS_BY_MERGE_KEY.get(merge_key, (merge_key,))
            elif "merge" in strategy.split(","):
                list_type = "set"
        shape = {"map": LIST_MAP, "set": LIST_SET}.get(str(list_type), LIST_ATOMIC)
        if shape == LIST_MAP and not keys:
            shape = LIST_ATOMIC
        return Type(shape, element=r.get("items"), keys=keys)
    props = r.get("properties")
    additional = r.get("additionalProperties")
    preserve = r.get("x-kubernetes-preserve-unknown-fields") is True
    if isinstance(props, dict) and props:
        return Type(STRUCT, fields=props, open=preserve)
    if isinstance(additional, dict):
        return Type(MAP, element=additional)
    if r.get("type") == "object" or preserve or additional is True:
        return Type(MAP)
    if r.get("type") in ("string", "integer", "number", "boolean"):
        return Type(SCALAR)
    return _UNKNOWN_TYPE


def root_schema(info: ResourceInfo) -> Any:
    """The schema of a kind's objects (a custom kind's ``metadata`` read as ObjectMeta)."""
    from apiserver import openapi

    if info.custom:
        if not isinstance(info.schema, dict):
            return None
        key = ("custom", id(info.schema))
        hit = _ROOTS.get(key)
        if hit is not None and hit[0] is info.schema:
            return hit[1]
        schema = dict(info.schema)
        props = dict(schema.get("properties") or {})
        props["metadata"] = {"$ref": "#/components/schemas/" + _OBJECT_META}
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        schema["properties"] = props
        schema.setdefault("type", "object")
        _ROOTS[key] = (info.schema, schema)
        return schema
    builtin_key = (f"{info.group}/{info.version}/{info.kind}", 0)
    hit = _ROOTS.get(builtin_key)
    if hit is None:
        hit = _ROOTS[builtin_key] = (None, openapi._kind_schema(info))
    return hit[1]


_ROOTS: dict[tuple[str, int], tuple[Any, Any]] = {}


def _child_schema(t: Type, key: str) -> Any:
    if t.shape == STRUCT:
        return t.fields.get(key)
    return t.element


def _deduce(t: Type, value: Any) -> int:
    if t.shape != UNKNOWN:
        return t.shape
    if isinstance(value, dict):
        return MAP
    if isinstance(value, list):
        return LIST_ATOMIC
    return SCALAR


# --------------------------------------------------------------------------------------------
# Path elements
# --------------------------------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def item_key(item: Any, keys: tuple[str, ...]) -> str | None:
    """``k:{"name":"main"}`` for an associative list's item (None: not a keyed item)."""
    if not isinstance(item, dict):
        return None
    parts = {}
    for k in sorted(keys):
        if k in item:
            parts[k] = item[k]
        elif k in _KEY_DEFAULTS:
            parts[k] = _KEY_DEFAULTS[k]
    if not parts:
        return None
    return "k:" + _json(parts)


def value_key(item: Any) -> str:
    return "v:" + _json(item)


def path_string(path: Path) -> str:
    """A path as Kubernetes prints it in conflicts: ``.spec.containers[name="main"].image``."""
    out = []
    for pe in path:
        kind, _, rest = pe.partition(":")
        if kind == "f":
            out.append("." + rest)
        elif kind == "k":
            try:
                fields = json.loads(rest)
                out.append("[" + ",".join(f"{k}={_json(v)}" for k, v in fields.items()) + "]")
            except ValueError:
                out.append("[" + rest + "]")
        elif kind == "v":
            out.append("[=" + rest + "]")
        elif kind == "i":
            out.append("[" + rest + "]")
        else:
            out.append(pe)
    return "".join(out)


# --------------------------------------------------------------------------------------------
# What a value owns
# --------------------------------------------------------------------------------------------

NODE = object()  # the value recorded for a member that has members below it
_SKIPPED_META = frozenset(
    {
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generateName",
    }
)


def flatten(
    info: ResourceInfo, obj: dict[str, Any], scope: str = "", update: bool = False
) -> dict[Path, Any]:
    """Every owned path of an object and its value (leaves) or :data:`NODE` (items, map keys).

    ``scope`` ``"status"`` keeps only ``status``; ``""`` leaves out ``status`` for kinds with a
    status subresource; server-set metadata, ``apiVersion`` and ``kind`` are never owned.
    ``update``: as an Update records fields, where a map that appears is owned itself too (``.``):
    Kubernetes' comparison of typed objects finds granular maps (labels, data) added, and for
    custom objects every object node, but not the built-in kinds' value structs (spec, template).
    """
    mode = _mode(info, update)
    out: dict[Path, Any] = {}
    t = type_of(root_schema(info))
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if scope == "status":
            if key != "status":
                continue
        elif key == "status" and info.has_status:
            continue
        child_t = type_of(_child_schema(t, key)) if t.shape == STRUCT else _UNKNOWN_TYPE
        path = ("f:" + key,)
        if key == "metadata" and isinstance(value, dict):
            meta_t = child_t
            for mkey, mvalue in value.items():
                if mkey in _SKIPPED_META:
                    continue
                _walk(
                    mvalue,
                    type_of(_child_schema(meta_t, mkey)) if meta_t.shape == STRUCT else _UNKNOWN_TYPE,
                    (*path, "f:" + mkey),
                    out,
                    False,
                    mode,
                )
            continue
        _walk(value, child_t, path, out, t.shape != STRUCT or key not in t.fields, mode)
    return out


APPLY_MODE, UPDATE_MODE, CUSTOM_UPDATE_MODE = 0, 1, 2


def _mode(info: ResourceInfo, update: bool) -> int:
    if not update:
        return APPLY_MODE
    return CUSTOM_UPDATE_MODE if info.custom else UPDATE_MODE


def _dict_member(member: bool, shape: int, mode: int) -> bool:
    return member or (mode == UPDATE_MODE and shape == MAP) or mode == CUSTOM_UPDATE_MODE


def _walk(
    value: Any, t: Type, path: Path, out: dict[Path, Any], member: bool, mode: int = APPLY_MODE
) -> None:
    shape = _deduce(t, value)
    if value is None or shape in (SCALAR, ATOMIC, LIST_ATOMIC) or not isinstance(value, dict | list):
        out[path] = value
        return
    if isinstance(value, dict):
        if shape not in (STRUCT, MAP) or not value:
            out[path] = value if not value else copy.deepcopy(value)
            return
        for key, child in value.items():
            declared = shape == STRUCT and key in t.fields
            child_t = type_of(_child_schema(t, key)) if (declared or shape == MAP) else _UNKNOWN_TYPE
            _walk(child, child_t, (*path, "f:" + key), out, not declared, mode)
        if _dict_member(member, shape, mode) and path not in out:
            out[path] = NODE
        return
    # a list
    if shape == LIST_SET:
        for item in value:
            out[(*path, value_key(item))] = item
        return
    if shape == LIST_MAP:
        element = type_of(t.element)
        keyed = [item_key(item, t.keys) for item in value]
        if any(k is None for k in keyed):
            out[path] = value  # items without their keys: owned as a whole
            return
        for item, pe in zip(value, keyed, strict=True):
            assert pe is not None
            item_path = (*path, pe)
            _walk(item, element, item_path, out, True, mode)
            out.setdefault(item_path, NODE)
        return
    out[path] = value


def fields_v1(
    info: ResourceInfo, obj: dict[str, Any], scope: str = "", update: bool = False
) -> dict[str, Any]:
    """``encode_fields(flatten(info, obj, scope, update))`` built in one walk: what a create records."""
    mode = _mode(info, update)
    t = type_of(root_schema(info))
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if scope == "status":
            if key != "status":
                continue
        elif key == "status" and info.has_status:
            continue
        child_t = type_of(_child_schema(t, key)) if t.shape == STRUCT else _UNKNOWN_TYPE
        if key == "metadata" and isinstance(value, dict):
            meta: dict[str, Any] = {}
            for mkey, mvalue in value.items():
                if mkey not in _SKIPPED_META:
                    mt = type_of(_child_schema(child_t, mkey)) if child_t.shape == STRUCT else _UNKNOWN_TYPE
                    _add(meta, "f:" + mkey, _tree(mvalue, mt, False, mode))
            if meta:
                out["f:metadata"] = _sorted_level(meta)
            continue
        _add(out, "f:" + key, _tree(value, child_t, t.shape != STRUCT or key not in t.fields, mode))
    return _sorted_level(out)


def _add(node: dict[str, Any], key: str, child: dict[str, Any] | None) -> None:
    if child is None:
        return
    existing = node.get(key)
    if existing is None:
        node[key] = child
    elif child:
        node[key] = _sorted(_union(existing, child))


def _union(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _union(out[k], v) if k in out else v
    if a and not b or b and not a:  # a leaf meets a node: the node is a member
        out["."] = {}
    return out


def _sorted_level(node: dict[str, Any]) -> dict[str, Any]:
    return {k: node[k] for k in sorted(node)}


def _tree(value: Any, t: Type, member: bool, mode: int = APPLY_MODE) -> dict[str, Any] | None:
    """The fieldsV1 subtree of ``value`` (``{}``: a leaf; None: nothing, an empty granular
    list), as :func:`_walk` records it."""
    shape = _deduce(t, value)
    if value is None or shape in (SCALAR, ATOMIC, LIST_ATOMIC) or not isinstance(value, dict | list):
        return {}
    if isinstance(value, dict):
        if shape not in (STRUCT, MAP) or not value:
            return {}
        out: dict[str, Any] = {}
        for key, child in value.items():
            declared = shape == STRUCT and key in t.fields
            child_t = type_of(_child_schema(t, key)) if (declared or shape == MAP) else _UNKNOWN_TYPE
            _add(out, "f:" + key, _tree(child, child_t, not declared, mode))
        member = _dict_member(member, shape, mode)
        if not out:
            return {} if member else None
        if member:
            out["."] = {}
        return _sorted_level(out)
    if not value:
        return None
    if shape == LIST_SET:
        return _sorted_level({value_key(item): {} for item in value})
    if shape == LIST_MAP:
        element = type_of(t.element)
        keyed = [item_key(item, t.keys) for item in value]
        if any(k is None for k in keyed):
            return {}
        items: dict[str, Any] = {}
        for item, pe in zip(value, keyed, strict=True):
            assert pe is not None
            sub = _tree(item, element, True, mode) or {}
            if sub and "." not in sub:
                sub = _sorted_level({**sub, ".": {}})
            _add(items, pe, sub)
        return _sorted_level(items)
    return {}


def compare(old: dict[Path, Any], new: dict[Path, Any]) -> tuple[FieldSet, FieldSet, FieldSet]:
    """(added, modified, removed) between two flattened objects."""
    added = {p for p in new if p not in old}
    removed = {p for p in old if p not in new}
    modified = set()
    for p, v in new.items():
        if p in old:
            o = old[p]
            if (o is NODE) != (v is NODE) or (v is not NODE and not _same(o, v)):
                modified.add(p)
    return added, modified, removed


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


# --------------------------------------------------------------------------------------------
# FieldsV1
# --------------------------------------------------------------------------------------------


def encode_fields(paths: Iterable[Path]) -> dict[str, Any]:
    """The ``fieldsV1`` object of a field set (keys sorted, ``.`` first, as Kubernetes writes)."""
    root: dict[str, Any] = {}
    members = []
    for path in paths:
        node = root
        for pe in path:
            node = node.setdefault(pe, {})
        members.append(node)
    for node in members:
        if node:
            node["."] = {}
    return _sorted(root)


def _sorted(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted(node[k]) for k in sorted(node)}


def decode_fields(fields: Any) -> FieldSet:
    """The field set of a ``fieldsV1`` object; ValueError when it is not one."""
    out: FieldSet = set()
    if not isinstance(fields, dict):
        raise ValueError("fieldsV1 must be an object")
    _decode(fields, (), out)
    return out


def _decode(node: dict[str, Any], path: Path, out: FieldSet) -> None:
    for key, child in node.items():
        if not isinstance(child, dict):
            raise ValueError(f"invalid fieldsV1 value at {key!r}")
        if key == ".":
            if path:
                out.add(path)
            continue
        if key[:2] not in ("f:", "k:", "v:", "i:"):
            raise ValueError(f"invalid path element {key!r}")
        p = (*path, key)
        if child:
            _decode(child, p, out)
        else:
            out.add(p)


# --------------------------------------------------------------------------------------------
# Managers
# --------------------------------------------------------------------------------------------


@dataclass
class Manager:
    manager: str
    operation: str
    api_version: str
    subresource: str = ""
    time: str | None = None
    fields: FieldSet = field(default_factory=set)
    raw: dict[str, Any] | None = None  # the entry as stored, reused when unchanged

    @property
    def identity(self) -> tuple[str, str, str, str]:
        version = "" if self.operation == APPLY else self.api_version
        return (self.manager, self.operation, self.subresource, version)

    def describe(self) -> str:
        """The manager as a conflict message names it."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == UPDATE:
            text += f" using {self.api_version}"
        return text

    def entry(self) -> dict[str, Any]:
        if self.raw is not None:
            return self.raw
        e: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        }
        if self.time:
            e["time"] = self.time
        e["fieldsType"] = "FieldsV1"
        e["fieldsV1"] = encode_fields(self.fields)
        if self.subresource:
            e["subresource"] = self.subresource
        return e


def decode_managed(entries: Any) -> list[Manager]:
    """The managers of a ``managedFields`` list; ValueError when it is not a valid one."""
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    out: dict[tuple[str, str, str, str], Manager] = {}
    for e in entries:
        if not isinstance(e, dict):
            raise ValueError("a managedFields entry must be an object")
        op = e.get("operation")
        if op not in (APPLY, UPDATE):
            raise ValueError(f"operation must be Apply or Update, not {op!r}")
        if e.get("fieldsType", "FieldsV1") != "FieldsV1":
            raise ValueError(f"fieldsType {e.get('fieldsType')!r} is not supported")
        m = Manager(
            manager=str(e.get("manager") or ""),
            operation=op,
            api_version=str(e.get("apiVersion") or ""),
            subresource=str(e.get("subresource") or ""),
            time=e.get("time") if isinstance(e.get("time"), str) else None,
            fields=decode_fields(e.get("fieldsV1") or {}),
            raw=e,
        )
        if m.identity in out:
            out[m.identity].fields |= m.fields
            out[m.identity].raw = None
        else:
            out[m.identity] = m
    return list(out.values())


MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"


def cap_update_managers(managers: list[Manager]) -> list[Manager]:
    """At most :data:`MAX_UPDATE_MANAGERS` Update entries: the oldest are merged, per apiVersion,
    into an ``ancient-changes`` entry, as Kubernetes caps them."""
    updaters = [m for m in managers if m.operation == UPDATE and m.fields]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return managers
    updaters.sort(key=lambda m: (m.time or "", m.manager))
    gone: set[int] = set()
    first_of: dict[str, Manager] = {}
    buckets: dict[str, Manager] = {
        m.api_version: m for m in managers if m.identity[:3] == (ANCIENT_CHANGES, UPDATE, "")
    }
    length = len(updaters)
    for m in updaters:
        if length <= MAX_UPDATE_MANAGERS:
            break
        if m.manager == ANCIENT_CHANGES and not m.subresource:
            continue
        first = first_of.get(m.api_version)
        if first is None:
            first_of[m.api_version] = m
            continue
        bucket = buckets.get(m.api_version)
        if bucket is None:
            bucket = Manager(ANCIENT_CHANGES, UPDATE, m.api_version, "", first.time, set(first.fields))
            buckets[m.api_version] = bucket
            gone.add(id(first))
            managers = [*managers, bucket]
        bucket.fields = bucket.fields | m.fields
        bucket.time = m.time
        bucket.raw = None
        gone.add(id(m))
        length -= 1
    return [m for m in managers if id(m) not in gone]


def encode_managed(managers: Iterable[Manager]) -> list[dict[str, Any]]:
    """``managedFields`` in Kubernetes' order: Apply before Update, then by time, manager,
    apiVersion, subresource; managers owning nothing are dropped."""
    kept = [m for m in managers if m.fields]
    kept.sort(key=lambda m: (m.operation, m.time or "", m.manager, m.api_version, m.subresource))
    return [m.entry() for m in kept]


def _is_reset(entries: Any) -> bool:
    """``[{}]``: a client asks for every entry to be dropped."""
    return isinstance(entries, list) and bool(entries) and all(e == {} for e in entries)


def _base_managers(request_entries: Any, old: dict[str, Any], subresource: str) -> list[Manager]:
    """The managers an update starts from: the request's own valid, non-empty list (main
    resource only), else the stored object's."""
    if not subresource and isinstance(request_entries, list) and request_entries:
        try:
            return decode_managed(request_entries)
        except ValueError:
            pass
    try:
        return decode_managed((old.get("metadata") or {}).get("managedFields") or [])
    except ValueError:
        return []


def _set_managed(obj: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    meta = obj.setdefault("metadata", {})
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)


_now_cache: tuple[int, str] = (0, "")


def _now() -> str:
    """``rfc3339()`` of this second, formatted once per second (every write asks for it)."""
    global _now_cache
    second = int(time.time())
    if _now_cache[0] != second:
        _now_cache = (second, rfc3339(second))
    return _now_cache[1]


# --------------------------------------------------------------------------------------------
# Hooks: every create and update
# --------------------------------------------------------------------------------------------


def track_create(info: ResourceInfo, obj: dict[str, Any], request_entries: Any = None) -> None:
    """A created object: every field belongs to the creating manager (for an apply, what it applied)."""
    w = WRITE.get()
    if w is None:
        return
    if isinstance(request_entries, list) and request_entries and not _is_reset(request_entries):
        try:
            managers = decode_managed(request_entries)
            _set_managed(obj, encode_managed(managers))
            return
        except ValueError:
            pass
    source = w.config if w.operation == APPLY and w.config is not None else obj
    fields = fields_v1(info, source, "status" if w.subresource == "status" else "", w.operation == UPDATE)
    if not fields:
        _set_managed(obj, [])
        return
    entry: dict[str, Any] = {
        "manager": w.manager,
        "operation": w.operation,
        "apiVersion": w.api_version or info.api_version,
        "time": _now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }
    if _sub(w):
        entry["subresource"] = _sub(w)
    _set_managed(obj, [entry])


def _sub(w: Write) -> str:
    return w.subresource if w.subresource in TRACKED_SUBRESOURCES else ""


def track_update(
    info: ResourceInfo,
    new: dict[str, Any],
    old: dict[str, Any],
    request_entries: Any,
    subresource: str | None,
) -> None:
    """Record an Update's changes in ``new``'s managedFields (an Apply's were computed already)."""
    w = WRITE.get()
    old_entries = (old.get("metadata") or {}).get("managedFields")
    if w is None:
        if old_entries:
            new.setdefault("metadata", {})["managedFields"] = old_entries
        else:
            new.get("metadata", {}).pop("managedFields", None)
        return
    if w.operation == APPLY:
        _set_managed(new, request_entries if isinstance(request_entries, list) else [])
        return
    if not subresource and _is_reset(request_entries):
        _set_managed(new, [])
        return
    scope = "status" if (subresource or w.subresource) == "status" else ""
    added, modified, removed = compare(flatten(info, old, scope, True), flatten(info, new, scope, True))
    base = _base_managers(request_entries, old, subresource or "")
    changed = added | modified
    me = Manager(w.manager, UPDATE, w.api_version or info.api_version, _sub(w))
    mine: Manager | None = None
    for m in base:
        if m.identity == me.identity:
            mine = m
            continue
        if m.fields & changed or m.fields & removed:
            m.fields = m.fields - changed - removed
            m.raw = None
    if mine is None:
        mine = me
        base.append(mine)
    fields = (mine.fields - removed) | changed
    if fields != mine.fields:
        mine.fields = fields
        mine.time = _now()
        mine.raw = None
    elif changed or removed:
        mine.time = _now()
        mine.raw = None
    _set_managed(new, encode_managed(cap_update_managers(base)))


# --------------------------------------------------------------------------------------------
# Server-side apply
# --------------------------------------------------------------------------------------------


def check_config(info: ResourceInfo, config: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
    """400 for an applied configuration that is not an object of this kind."""
    if not isinstance(config, dict):
        raise errors.BadRequest("error decoding YAML: the applied configuration must be an object")
    api_version, kind = config.get("apiVersion"), config.get("kind")
    if api_version != info.api_version or kind != info.kind:
        group, _, version = str(api_version or "").rpartition("/")
        raise errors.BadRequest(f"invalid object type: {group}/{version}, Kind={kind or ''}")
    meta = config.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise errors.BadRequest("metadata must be an object")
    meta = meta or {}
    if meta.get("managedFields") is not None:
        raise errors.BadRequest("metadata.managedFields must be nil")
    if info.namespaced and meta.get("namespace") not in (None, "", namespace):
        raise errors.BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    problem = _type_problem(config, type_of(root_schema(info)), "")
    if problem:
        group, _, version = info.api_version.rpartition("/")
        raise errors.BadRequest(
            f"failed to create typed patch object ({group}/{version}, Kind={info.kind}): {problem}"
        )
    if meta.get("name") not in (None, "", name):
        raise errors.BadRequest(
            f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
        )
    return config


def _type_problem(value: Any, t: Type, path: str) -> str:
    """The first value of the wrong JSON type for its schema (``.data: expected map, got list``)."""
    if value is None or t.shape == UNKNOWN:
        return ""
    if t.shape in (STRUCT, MAP) or (t.shape == ATOMIC and isinstance(value, dict)):
        if not isinstance(value, dict):
            return f"{path or '.'}: expected map, got {_json_kind(value)}"
        for key, child in value.items():
            if t.shape == STRUCT and key not in t.fields:
                continue
            problem = _type_problem(child, type_of(_child_schema(t, key)), f"{path}.{key}")
            if problem:
                return problem
        return ""
    if t.shape in (LIST_ATOMIC, LIST_SET, LIST_MAP):
        if not isinstance(value, list):
            return f"{path}: expected list, got {_json_kind(value)}"
        element = type_of(t.element)
        for i, item in enumerate(value):
            problem = _type_problem(item, element, f"{path}[{i}]")
            if problem:
                return problem
        if t.shape == LIST_MAP and any(not isinstance(item, dict) for item in value):
            return f"{path}: associative list items must be maps"
        return ""
    if t.shape == SCALAR and isinstance(value, dict | list):
        return f"{path}: expected scalar, got {_json_kind(value)}"
    return ""


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    return "scalar"


def apply(
    info: ResourceInfo,
    live: dict[str, Any],
    config: dict[str, Any],
    manager: str,
    force: bool = False,
    subresource: str = "",
) -> dict[str, Any]:
    """The object after ``manager`` applies ``config`` to ``live``, managedFields included.

    Raises a 409 naming every field another manager owns with a different value (not forced).
    """
    scope = "status" if subresource == "status" else ""
    sub = subresource if subresource in TRACKED_SUBRESOURCES else ""
    config = copy.deepcopy(config)
    for k in ("apiVersion", "kind"):
        config.pop(k, None)
    if scope == "status":
        config = {"status": config["status"]} if "status" in config else {}
    elif info.has_status:
        config.pop("status", None)
    root_t = type_of(root_schema(info))
    live_fields = flatten(info, live, scope, True)
    entries = (live.get("metadata") or {}).get("managedFields")
    try:
        managers = decode_managed(entries or [])
    except ValueError:
        managers = []
    applied = set(flatten(info, config, scope))
    me = Manager(manager, APPLY, info.api_version, sub)
    mine = next((m for m in managers if m.identity == me.identity), None)
    others = [m for m in managers if m is not mine]
    merged = _merge_value(live, config, root_t)
    if mine is not None:
        owned_elsewhere: FieldSet = set().union(*(m.fields for m in others)) if others else set()
        keep = applied | owned_elsewhere
        to_remove = mine.fields - keep
        if to_remove:
            prefixes = {p[:i] for p in keep for i in range(1, len(p))}
            for path in sorted(to_remove, key=len):  # items before their fields (keys)
                if path not in prefixes:
                    _remove(merged, path, root_t)
    merged_fields = flatten(info, merged, scope, True)
    added, modified, removed = compare(live_fields, merged_fields)
    changed = added | modified
    conflicts: list[tuple[Manager, Path]] = []
    for m in others:
        for path in sorted(m.fields & changed):
            conflicts.append((m, path))
    if conflicts and not force:
        raise conflict_error(conflicts)
    for m in others:
        if m.fields & (changed | removed):
            m.fields = m.fields - changed - removed
            m.raw = None
    if mine is None:
        mine = me
        managers.append(mine)
    if applied != mine.fields or changed or removed or mine.time is None:
        mine.fields = applied
        mine.time = _now()
        mine.raw = None
    _set_managed(merged, encode_managed(managers))
    return merged


def apply_scale(
    info: ResourceInfo, current: dict[str, Any], replicas: Any, write: Write, want_rv: str = ""
) -> dict[str, Any]:
    """An apply through ``/scale``: the Scale's ``spec.replicas`` applied to the object (a custom
    kind's ``specReplicasPath``) by the manager's entry with subresource ``scale``."""
    from apiserver import strategy

    config: dict[str, Any] = {"apiVersion": info.api_version, "kind": info.kind, "metadata": {}}
    if replicas is not None:
        strategy.set_replicas(info, config, replicas)
    merged = apply(info, current, config, write.manager, write.force, "scale")
    if want_rv:
        merged["metadata"]["resourceVersion"] = want_rv
    return merged


def conflict_error(conflicts: list[tuple[Manager, Path]]) -> errors.Conflict:
    """Kubernetes' 409 for apply conflicts: one cause (FieldManagerConflict) per field."""
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {m.describe()}",
            "field": path_string(p),
        }
        for m, p in conflicts
    ]
    if len(conflicts) == 1:
        m, p = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {m.describe()}: {path_string(p)}"
    else:
        by_manager: dict[str, list[str]] = {}
        names: dict[str, str] = {}
        for m, p in conflicts:
            key = json.dumps(m.identity)
            names[key] = m.describe()
            by_manager.setdefault(key, []).append(path_string(p))
        lines = []
        for key in sorted(by_manager, key=lambda k: names[k]):
            lines.append(f"conflicts with {names[key]}:")
            lines.extend(f"- {p}" for p in by_manager[key])
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return errors.Conflict(message, causes=causes)


def _merge_value(live: Any, config: Any, t: Type) -> Any:
    """Structured merge of an applied configuration into a live value."""
    shape = _deduce(t, config)
    if isinstance(config, dict) and isinstance(live, dict) and shape in (STRUCT, MAP):
        out = dict(live)
        for key, value in config.items():
            if value is None:
                out.pop(key, None)
                continue
            child_t = type_of(_child_schema(t, key))
            out[key] = _merge_value(live.get(key), value, child_t) if key in live else copy.deepcopy(value)
        return out
    if isinstance(config, list) and isinstance(live, list):
        if shape == LIST_SET:
            out_list = list(live)
            seen = {_json(v) for v in live}
            for item in config:
                if _json(item) not in seen:
                    seen.add(_json(item))
                    out_list.append(copy.deepcopy(item))
            return out_list
        if shape == LIST_MAP:
            element = type_of(t.element)
            live_keys = [item_key(i, t.keys) for i in live]
            config_keys = [item_key(i, t.keys) for i in config]
            if None not in live_keys and None not in config_keys:
                return _merge_map_list(live, config, live_keys, config_keys, element)
    return copy.deepcopy(config)


def _merge_map_list(
    live: list[Any], config: list[Any], lkeys: list[Any], ckeys: list[Any], element: Type
) -> list[Any]:
    """An associative list merged item by item, ordered as structured-merge-diff orders it: the
    live order, with the configuration's new items placed where the configuration puts them
    relative to the items both have."""
    observed_l = dict(zip(lkeys, live, strict=True))
    observed_r = dict(zip(ckeys, config, strict=True))
    shared = [k for k in ckeys if k in observed_l]
    next_shared = shared.pop(0) if shared else None
    merged_r: set[Any] = set()
    out: list[Any] = []
    li = ri = 0
    while li < len(lkeys) or ri < len(ckeys):
        progress = (li, ri)
        if li < len(lkeys) and ri < len(ckeys):
            pe = lkeys[li]
            if pe == ckeys[ri]:
                merged_r.add(pe)
                out.append(_merge_value(observed_l[pe], observed_r[pe], element))
                li, ri = li + 1, ri + 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in observed_r and next_shared is not None and next_shared != pe:
                li += 1  # a shared item, but not the one wanted in this round
                continue
        if li < len(lkeys):
            pe = lkeys[li]
            if pe not in observed_r:
                out.append(live[li])
                li += 1
                continue
            if pe in merged_r:
                li += 1
                continue
        if ri < len(ckeys):
            pe = ckeys[ri]
            merged_r.add(pe)
            lhs = observed_l.get(pe)
            rhs = observed_r[pe]
            out.append(_merge_value(lhs, rhs, element) if lhs is not None else copy.deepcopy(rhs))
            ri += 1
            if next_shared is not None and next_shared == pe:
                next_shared = shared.pop(0) if shared else None
        if (li, ri) == progress:  # cannot happen with distinct keys; never loop
            out.extend(live[li:])
            break
    return out


def _remove(obj: Any, path: Path, root_t: Type) -> None:
    """Delete the value at ``path`` from ``obj`` (nothing when it is not there); maps and lists
    the deletion leaves empty go too, as Kubernetes' typed objects do not keep them."""
    node: Any = obj
    t = root_t
    trail: list[tuple[Any, Any, Type]] = []  # (container, key or index, type of the child)
    for pe in path:
        kind, _, rest = pe.partition(":")
        if kind == "f":
            if not isinstance(node, dict) or rest not in node:
                return
            child_t = type_of(_child_schema(t, rest)) if t.shape in (STRUCT, MAP) else _UNKNOWN_TYPE
            trail.append((node, rest, child_t))
            node, t = node[rest], child_t
        elif kind in ("k", "v"):
            if not isinstance(node, list):
                return
            index = next(
                (
                    j
                    for j, item in enumerate(node)
                    if (item_key(item, t.keys) if kind == "k" else value_key(item)) == pe
                ),
                None,
            )
            if index is None:
                return
            child_t = type_of(t.element)
            trail.append((node, index, child_t))
            node, t = node[index], child_t
        else:
            return
    container, key, _ = trail.pop()
    del container[key]
    while trail and not container:
        parent, key, child_t = trail.pop()
        if _deduce(child_t, container) not in (MAP, LIST_SET, LIST_MAP):
            return
        del parent[key]
        container = parent
