"""Kubernetes' strategic merge patch, over plain JSON-like dicts and lists.

A strategic merge patch is a JSON merge patch (RFC 7386) that knows, for each field of each kind,
whether a list is *merged* element by element (containers by ``name``, ports by ``containerPort``,
finalizers as a set of strings) or *replaced* whole (the default, e.g. ``tolerations``, ``args``).
Kubernetes reads that knowledge from struct tags such as
``patchStrategy:"merge" patchMergeKey:"name"``; here it is the table :data:`KIND_PATCH_TABLES`,
from a path of field names (list elements are transparent) to a :class:`FieldPatch`.

The patch may carry directives:

- ``{"$patch": "replace"}`` in a map replaces the map; as a list element, replaces the list.
- ``{"$patch": "delete"}`` in a map empties it; as a list element with the merge key, deletes the
  matching elements.
- ``"$setElementOrder/<field>": [...]`` orders a merged list after patching.
- ``"$deleteFromPrimitiveList/<field>": [...]`` removes values from a list of scalars.
- ``"$retainKeys": [...]`` drops from the map every key not listed (fields with the ``retainKeys``
  strategy, such as a Deployment's ``strategy`` or a volume's source).
- ``null`` deletes a key.

The algorithm follows ``k8s.io/apimachinery/pkg/util/strategicpatch/patch.go`` function by function
(``mergeMap``, ``mergeSlice``, ``diffMaps``, ``diffLists``...), including its ordering rules, so a
patch computed by the real ``kubectl apply`` gives the same object here as on a real API server,
and :func:`create_three_way_merge_patch` computes what ``kubectl apply`` sends.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from apimachinery import errors

log = logging.getLogger(__name__)

DIRECTIVE_MARKER = "$patch"
DELETE_DIRECTIVE = "delete"
REPLACE_DIRECTIVE = "replace"
MERGE_DIRECTIVE = "merge"
RETAIN_KEYS_STRATEGY = "retainKeys"
RETAIN_KEYS_DIRECTIVE = "$retainKeys"
DELETE_FROM_PRIMITIVE_LIST_PREFIX = "$deleteFromPrimitiveList"
SET_ELEMENT_ORDER_PREFIX = "$setElementOrder"

# Messages of k8s.io/apimachinery/pkg/util/mergepatch/errors.go.
ERR_BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST = "invalid patch format of primitive list"
ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"
ERR_NO_LIST_OF_LISTS = "lists of lists are not supported"

JSON = Any


# --------------------------------------------------------------------------------------------
# Patch metadata: which lists merge, by which key
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldPatch:
    """The patch metadata of one field, as its Go struct tags declare it.

    ``strategy`` is ``"merge"`` (merge a list element by element), ``"replace"`` (replace a map
    whole) or ``""`` (the default: maps merge key by key, lists are replaced). ``merge_key`` names
    the field identifying elements of a merged list of maps (empty for lists of scalars).
    ``retain_keys`` is the ``retainKeys`` strategy: a patch may clear every key it does not list.
    """

    strategy: str = ""
    merge_key: str = ""
    retain_keys: bool = False


NO_STRATEGY = FieldPatch()
Doc = dict[str, Any]  # a JSON object: a Kubernetes object or a patch
PatchTable = Mapping[tuple[str, ...], FieldPatch]


class PatchSchema:
    """A position in a kind's patch table: the path of field names from the object's root."""

    __slots__ = ("table", "path")

    def __init__(self, table: PatchTable, path: tuple[str, ...] = ()) -> None:
        self.table = table
        self.path = path

    def lookup(self, key: str) -> tuple[FieldPatch, PatchSchema]:
        """The metadata of field ``key`` here, and the schema of its value (or list elements)."""
        path = (*self.path, key)
        return self.table.get(path, NO_STRATEGY), PatchSchema(self.table, path)

    def __repr__(self) -> str:
        return f"PatchSchema({'.'.join(self.path) or '<root>'})"


def _merge(key: str = "", retain_keys: bool = False) -> FieldPatch:
    return FieldPatch(MERGE_DIRECTIVE, key, retain_keys)


def _under(prefix: tuple[str, ...], table: PatchTable) -> dict[tuple[str, ...], FieldPatch]:
    return {(*prefix, *path): meta for path, meta in table.items()}


def _join(*tables: PatchTable) -> dict[tuple[str, ...], FieldPatch]:
    out: dict[tuple[str, ...], FieldPatch] = {}
    for table in tables:
        out.update(table)
    return out


# metav1.ObjectMeta
OBJECT_META: PatchTable = {
    ("finalizers",): _merge(),  # a set of strings
    ("ownerReferences",): _merge("uid"),
}

# core/v1 Container (and EphemeralContainerCommon, which has the same tags)
CONTAINER: PatchTable = {
    ("ports",): _merge("containerPort"),
    ("env",): _merge("name"),
    ("volumeMounts",): _merge("mountPath"),
    ("volumeDevices",): _merge("devicePath"),
    # resizePolicy, envFrom, command, args: atomic lists
}

# core/v1 PodSpec. tolerations, readinessGates and dnsConfig lists carry no strategy: replaced.
POD_SPEC: PatchTable = _join(
    {
        ("volumes",): _merge("name", retain_keys=True),
        ("initContainers",): _merge("name"),
        ("containers",): _merge("name"),
        ("ephemeralContainers",): _merge("name"),
        ("imagePullSecrets",): _merge("name"),
        ("hostAliases",): _merge("ip"),
        ("topologySpreadConstraints",): _merge("topologyKey"),
        ("resourceClaims",): _merge("name", retain_keys=True),
        ("schedulingGates",): _merge("name"),
    },
    _under(("initContainers",), CONTAINER),
    _under(("containers",), CONTAINER),
    _under(("ephemeralContainers",), CONTAINER),
)

# core/v1 PodStatus. containerStatuses and friends are atomic.
POD_STATUS: PatchTable = {
    ("conditions",): _merge("type"),
    ("podIPs",): _merge("ip"),
    ("hostIPs",): _merge("ip"),
    ("resourceClaimStatuses",): _merge("name", retain_keys=True),
}

# core/v1 PodTemplateSpec
POD_TEMPLATE: PatchTable = _join(_under(("metadata",), OBJECT_META), _under(("spec",), POD_SPEC))

CONDITIONS_BY_TYPE: PatchTable = {("conditions",): _merge("type")}


def _kind_table(*parts: tuple[tuple[str, ...], PatchTable]) -> dict[tuple[str, ...], FieldPatch]:
    """A kind's table: ObjectMeta under ``metadata`` plus each (prefix, struct table)."""
    return _join(_under(("metadata",), OBJECT_META), *(_under(prefix, table) for prefix, table in parts))


_WORKLOAD_SPEC = (("spec", "template"), POD_TEMPLATE)
_STATUS_CONDITIONS = (("status",), CONDITIONS_BY_TYPE)

# (group, kind) -> table. Kinds absent here (and the ones listed with no fields of their own:
# ConfigMap, Secret, Endpoints, Event, Lease, Ingress, StorageClass, PersistentVolume) merge maps
# key by key and replace every list except metadata's finalizers and ownerReferences.
KIND_PATCH_TABLES: dict[tuple[str, str], PatchTable] = {
    ("", "Pod"): _kind_table((("spec",), POD_SPEC), (("status",), POD_STATUS)),
    ("", "Node"): _kind_table(
        (("spec",), {("podCIDRs",): _merge()}),
        (("status",), {("conditions",): _merge("type"), ("addresses",): _merge("type")}),
    ),
    ("", "Service"): _kind_table((("spec",), {("ports",): _merge("port")}), _STATUS_CONDITIONS),
    ("", "Namespace"): _kind_table(_STATUS_CONDITIONS),
    ("", "PersistentVolumeClaim"): _kind_table(_STATUS_CONDITIONS),
    ("", "ServiceAccount"): _kind_table(((), {("secrets",): _merge("name")})),
    ("", "PodTemplate"): _kind_table((("template",), POD_TEMPLATE)),
    ("", "ReplicationController"): _kind_table(_WORKLOAD_SPEC, _STATUS_CONDITIONS),
    ("apps", "Deployment"): _kind_table(
        _WORKLOAD_SPEC, (("spec",), {("strategy",): FieldPatch(retain_keys=True)}), _STATUS_CONDITIONS
    ),
    ("apps", "ReplicaSet"): _kind_table(_WORKLOAD_SPEC, _STATUS_CONDITIONS),
    ("apps", "StatefulSet"): _kind_table(_WORKLOAD_SPEC, _STATUS_CONDITIONS),
    ("apps", "DaemonSet"): _kind_table(_WORKLOAD_SPEC, _STATUS_CONDITIONS),
    ("batch", "Job"): _kind_table(_WORKLOAD_SPEC, _STATUS_CONDITIONS),
    ("batch", "CronJob"): _kind_table((("spec", "jobTemplate", "spec", "template"), POD_TEMPLATE)),
}
GENERIC_PATCH_TABLE: PatchTable = _kind_table()


def patch_table(kind: str, api_version: str = "") -> PatchTable:
    """The patch table of a kind; ``api_version`` (``group/version``) picks the group when given."""
    if api_version:
        group = api_version.rpartition("/")[0]
        return KIND_PATCH_TABLES.get((group, kind), GENERIC_PATCH_TABLE)
    for (_, table_kind), table in KIND_PATCH_TABLES.items():
        if table_kind == kind:
            return table
    return GENERIC_PATCH_TABLE


def schema_for(kind: str, api_version: str = "") -> PatchSchema:
    return PatchSchema(patch_table(kind, api_version))


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def strategic_merge_patch(original: Doc, patch: Doc, kind: str, api_version: str = "") -> Doc:
    """Apply a strategic merge patch to ``original`` (what the API server does on PATCH).

    Raises :class:`errors.BadRequest` for a malformed patch (422 for a list of lists, as
    Kubernetes does). Neither input is modified.
    """
    return strategic_merge_patch_with_schema(original, patch, schema_for(kind, api_version))


def strategic_merge_patch_with_schema(original: Doc, patch: Doc, schema: PatchSchema) -> Doc:
    if not isinstance(original, dict):
        raise errors.BadRequest("invalid JSON document: the object to patch must be a JSON object")
    if not isinstance(patch, dict):
        raise errors.BadRequest("invalid JSON document: a strategic merge patch must be a JSON object")
    options = _MergeOptions(merge_parallel_list=True, ignore_unmatched_nulls=True)
    return _guarded(lambda: _merge_map(copy.deepcopy(original), copy.deepcopy(patch), schema, options))


def create_two_way_merge_patch(original: Doc, modified: Doc, kind: str, api_version: str = "") -> Doc:
    """The patch that turns ``original`` into ``modified`` (``CreateTwoWayMergePatch``)."""
    return create_two_way_merge_patch_with_schema(original, modified, schema_for(kind, api_version))


def create_two_way_merge_patch_with_schema(original: Doc, modified: Doc, schema: PatchSchema) -> Doc:
    options = _DiffOptions(set_element_order=True)
    return _guarded(lambda: _diff_maps(copy.deepcopy(original), copy.deepcopy(modified), schema, options))


def create_three_way_merge_patch(
    original: Doc | None, modified: Doc, current: Doc, kind: str, api_version: str = ""
) -> Doc:
    """The patch ``kubectl apply`` sends (``CreateThreeWayMergePatch`` with overwrite).

    ``original`` is the last-applied configuration (None when the object has none), ``modified``
    the new configuration, ``current`` the live object. The patch sets every field whose value in
    ``modified`` differs from ``current`` and deletes the fields that ``original`` had and
    ``modified`` dropped: fields become ``null``, elements of merged lists ``$patch: delete``,
    values of merged scalar lists go to ``$deleteFromPrimitiveList``. Fields other writers set
    (present in ``current`` only) are left alone.
    """
    return create_three_way_merge_patch_with_schema(
        original, modified, current, schema_for(kind, api_version)
    )


def create_three_way_merge_patch_with_schema(
    original: Doc | None, modified: Doc, current: Doc, schema: PatchSchema
) -> Doc:
    for name, doc in (("original", original or {}), ("modified", modified), ("current", current)):
        if not isinstance(doc, dict):
            raise errors.BadRequest(f"invalid JSON document: {name} must be a JSON object")

    def compute() -> Doc:
        # The patch is the difference from current to modified without deletions, plus the
        # deletions from original to modified; delta is applied to deletions as a patch.
        delta = _diff_maps(
            copy.deepcopy(current),
            copy.deepcopy(modified),
            schema,
            _DiffOptions(ignore_deletions=True, set_element_order=True),
        )
        deletions = _diff_maps(
            copy.deepcopy(original or {}),
            copy.deepcopy(modified),
            schema,
            _DiffOptions(set_element_order=True, ignore_changes_and_additions=True),
        )
        return _merge_map(deletions, delta, schema, _MergeOptions())

    return _guarded(compute)


def _guarded(compute: Callable[[], Doc]) -> Doc:
    """Run ``compute``; a value of a shape the algorithm cannot handle is a bad request."""
    try:
        return compute()
    except errors.StatusError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        log.debug("strategic merge patch failed: %r", exc)
        raise errors.BadRequest(f"unable to apply strategic merge patch: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Helpers: Go's view of JSON values
# --------------------------------------------------------------------------------------------


def _type_of(value: JSON) -> str:
    """The Go dynamic type of a decoded JSON value, as ``reflect.TypeOf`` tells them apart."""
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "slice"
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string"


def _same(left: JSON, right: JSON) -> bool:
    """Go's ``==`` on interface values holding scalars (a bool never equals a number)."""
    return _type_of(left) == _type_of(right) and left == right


def _deep_equal(left: JSON, right: JSON) -> bool:
    """``reflect.DeepEqual`` for decoded JSON."""
    lt = _type_of(left)
    if lt != _type_of(right):
        return False
    if lt == "map":
        return left.keys() == right.keys() and all(_deep_equal(v, right[k]) for k, v in left.items())
    if lt == "slice":
        return len(left) == len(right) and all(_deep_equal(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


def _scalar_key(value: JSON) -> tuple[str, Any]:
    """A hashable identity for a scalar that keeps Go's type distinctions."""
    return (_type_of(value), value)


def _go_string(value: JSON) -> str:
    """``fmt.Sprintf("%v", value)``, which Kubernetes uses to sort and compare list elements."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def _bad_arg_type(expected: str, actual: JSON) -> errors.BadRequest:
    return errors.BadRequest(f"expected a {expected}, but received a {_type_of(actual)}")


def _no_merge_key(item: JSON, merge_key: str) -> errors.BadRequest:
    return errors.BadRequest(f"map: {item} does not contain declared merge key: {merge_key}")


def _bad_patch_type(directive: JSON, item: JSON) -> errors.BadRequest:
    return errors.BadRequest(f"unknown patch type: {directive} in map: {item}")


def _no_list_of_lists() -> errors.StatusError:
    return errors.Invalid(
        "the server rejected our request due to an error in our request",
        causes=[{"reason": "UnexpectedServerResponse", "message": ERR_NO_LIST_OF_LISTS}],
    )


def _slice_element_type(*slices: list[Any]) -> str:
    """The common element type of the lists (``sliceElementType``)."""
    prev = ""
    for items in slices:
        for item in items:
            current = _type_of(item)
            if not prev:
                prev = current
                if prev == "slice":
                    raise _no_list_of_lists()
            elif prev != current:
                raise errors.BadRequest(f"list element types are not identical: {list(slices)}")
    if not prev:
        raise errors.BadRequest("no elements in any of the given slices")
    return prev


def _sort_scalars(items: list[Any]) -> list[Any]:
    return sorted(items, key=_go_string)


def _deduplicate_scalars(items: list[Any]) -> list[Any]:
    """Remove duplicates the way Kubernetes does (the last element fills each hole)."""
    s = list(items)
    return s[: _deduplicate_scalars_in_place(s)]


def _deduplicate_scalars_in_place(s: list[Any]) -> int:
    """Deduplicate ``s`` in place like Go's ``deduplicateScalars``; returns the new length."""
    last = len(s) - 1
    i = 0
    while i < last:
        j = i + 1
        while j <= last:
            if _same(s[i], s[j]):
                s[j] = s[last]
                last -= 1
                j -= 1
            j += 1
        i += 1
    return last + 1


def _insertion_sort(items: list[Any], less: Callable[[Any, Any], bool]) -> list[Any]:
    """Go's ``sort.SliceStable`` for short lists (an insertion sort), even with a partial ``less``."""
    s = list(items)
    for i in range(1, len(s)):
        j = i
        while j > 0 and less(s[j], s[j - 1]):
            s[j], s[j - 1] = s[j - 1], s[j]
            j -= 1
    return s


def _sort_maps_by_key(items: list[Any], merge_key: str) -> list[Any]:
    return sorted(items, key=lambda item: _go_string(item.get(merge_key)))


# --------------------------------------------------------------------------------------------
# Ordering of merged lists
# --------------------------------------------------------------------------------------------


def _index(items: list[Any], value: JSON, merge_key: str, kind: str) -> int:
    """Position of ``value`` in ``items``, comparing merge key values for maps; -1 if absent."""

    def key_of(item: JSON) -> JSON:
        if kind == "map":
            return item.get(merge_key) if isinstance(item, dict) else None
        return item

    wanted = key_of(value)
    for i, item in enumerate(items):
        if _same(wanted, key_of(item)):
            return i
    return -1


def _validate_merge_key_in_lists(merge_key: str, *lists: list[Any]) -> None:
    for items in lists:
        for item in items:
            if not isinstance(item, dict):
                raise _bad_arg_type("map", item)
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)


def _extract_to_delete_items(items: list[Any]) -> tuple[list[Any], list[Any]]:
    keep: list[Any] = []
    to_delete: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            raise _bad_arg_type("map", item)
        if DIRECTIVE_MARKER in item and item[DIRECTIVE_MARKER] == DELETE_DIRECTIVE:
            to_delete.append(item)
        else:
            keep.append(item)
    return keep, to_delete


def _normalize_slice_order(to_sort: list[Any], order: list[Any], merge_key: str, kind: str) -> list[Any]:
    """Sort ``to_sort`` by the positions of its elements in ``order``; deletions go last."""
    to_delete: list[Any] = []
    if kind == "map":
        _validate_merge_key_in_lists(merge_key, to_sort, order)
        to_sort, to_delete = _extract_to_delete_items(to_sort)

    def less(a: JSON, b: JSON) -> bool:
        ia = _index(order, a, merge_key, kind)
        if ia >= 0:
            ib = _index(order, b, merge_key, kind)
            if ib >= 0:
                return ia < ib
        return True

    return _insertion_sort(to_sort, less) + to_delete


def _merge_sorted_slice(
    left: list[Any], right: list[Any], server_order: list[Any], merge_key: str, kind: str
) -> list[Any]:
    """Interleave server-only items (left) into patch items (right), keeping both orders."""
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = _index(server_order, left[i], merge_key, kind)
            ri = _index(server_order, right[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _normalize_element_order(
    patch: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str,
    kind: str,
) -> list[Any]:
    """Order a merged list: ``$setElementOrder`` > order in the patch > order on the server."""
    patch = _normalize_slice_order(patch, patch_order, merge_key, kind)
    server_only = _normalize_slice_order(server_only, server_order, merge_key, kind)
    return _merge_sorted_slice(server_only, patch, server_order, merge_key, kind)


def _partition_primitives(items: list[Any], partition_by: list[Any]) -> tuple[list[Any], list[Any]]:
    wanted = {_scalar_key(v) for v in partition_by}
    inside = [v for v in items if _scalar_key(v) in wanted]
    outside = [v for v in items if _scalar_key(v) not in wanted]
    return inside, outside


def _find_map_by_key(items: list[Any], key: str, value: JSON) -> int:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise errors.BadRequest(f"value for key {i} is not a map")
        if key in item and _same(item[key], value):
            return i
    return -1


def _partition_maps(items: list[Any], partition_by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    inside: list[Any] = []
    outside: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            raise _bad_arg_type("map", item)
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        if _find_map_by_key(partition_by, merge_key, item[merge_key]) >= 0:
            inside.append(item)
        else:
            outside.append(item)
    return inside, outside


def _partition(items: list[Any], partition_by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    if not merge_key:
        return _partition_primitives(items, partition_by)
    return _partition_maps(items, partition_by, merge_key)


# --------------------------------------------------------------------------------------------
# Applying a patch (server side: StrategicMergeMapPatch)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MergeOptions:
    # Apply ``$deleteFromPrimitiveList`` and ``$setElementOrder`` (server side); when False the
    # "original" is itself a patch and the directives are carried over (three-way patch).
    merge_parallel_list: bool = False
    # Drop nulls that match nothing instead of keeping them (server side).
    ignore_unmatched_nulls: bool = False


def _merge_map(original: Doc | None, patch: Doc, schema: PatchSchema, options: _MergeOptions) -> Doc:
    if DIRECTIVE_MARKER in patch:
        return _handle_directive_in_merge_map(patch[DIRECTIVE_MARKER], patch)
    if original is None:
        original = {}

    _apply_retain_keys_directive(original, patch, options)
    _merge_patch_into_original(original, patch, schema, options)

    for key in list(patch):
        if key not in patch:
            continue
        patch_value = patch[key]
        is_delete_list = False
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX):
            if not options.merge_parallel_list:
                original[key] = patch_value
                continue
            key = _extract_key(key, DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            is_delete_list = True
        elif key.startswith("$") and options.merge_parallel_list:
            raise errors.BadRequest(f"unknown patch directive: {key}")

        # null deletes the key; a client computing a patch keeps it to send the deletion along.
        if patch_value is None:
            original.pop(key, None)
            if options.ignore_unmatched_nulls:
                continue

        if key not in original or _type_of(original[key]) != _type_of(patch_value):
            if not is_delete_list:
                _set_without_directives(original, key, patch_value, options)
            continue

        field, subschema = schema.lookup(key)
        if isinstance(patch_value, dict):
            if field.strategy != REPLACE_DIRECTIVE:
                original[key] = _merge_map(original[key], patch_value, subschema, options)
            else:
                original[key] = patch_value
        elif isinstance(patch_value, list):
            original[key] = _merge_slice_handler(
                original[key], patch_value, subschema, field, is_delete_list, options
            )
        else:
            _set_without_directives(original, key, patch_value, options)
    return original


def _set_without_directives(original: Doc, key: str, value: JSON, options: _MergeOptions) -> None:
    """Take a patch value as is (nothing to merge with), minus directives and stray nulls."""
    if options.ignore_unmatched_nulls:
        _discard_null_values(value)
    cleaned, keep = _remove_directives(value)
    if keep:
        original[key] = cleaned
    else:
        original.pop(key, None)


def _discard_null_values(value: JSON) -> None:
    if isinstance(value, dict):
        for k in [k for k, v in value.items() if v is None]:
            del value[k]
        for v in value.values():
            _discard_null_values(v)
    elif isinstance(value, list):
        for v in value:
            _discard_null_values(v)


def _remove_directives(value: JSON) -> tuple[JSON, bool]:
    """Strip maps carrying ``$patch`` from a value; False when the value itself is one."""
    if isinstance(value, dict):
        if DIRECTIVE_MARKER in value:
            return None, False
        out = {}
        for k, v in value.items():
            cleaned, keep = _remove_directives(v)
            if keep:
                out[k] = cleaned
        return out, True
    if isinstance(value, list):
        items = []
        for v in value:
            cleaned, keep = _remove_directives(v)
            if keep:
                items.append(cleaned)
        return items, True
    return value, True


def _handle_directive_in_merge_map(directive: JSON, patch: Doc) -> Doc:
    if directive == REPLACE_DIRECTIVE:
        # Replace the whole map with the patch (minus the marker).
        del patch[DIRECTIVE_MARKER]
        return patch
    if directive == DELETE_DIRECTIVE:
        return {}
    raise _bad_patch_type(directive, patch)


def _extract_key(key: str, prefix: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        if prefix == DELETE_FROM_PRIMITIVE_LIST_PREFIX:
            raise errors.BadRequest(ERR_BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST)
        raise errors.BadRequest(ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER)
    return rest


def _apply_retain_keys_directive(original: Doc, patch: Doc, options: _MergeOptions) -> None:
    """``$retainKeys``: drop the keys of ``original`` not listed; the patch may set only those."""
    if RETAIN_KEYS_DIRECTIVE not in patch:
        return
    retain = patch.pop(RETAIN_KEYS_DIRECTIVE)
    if not options.merge_parallel_list:
        if RETAIN_KEYS_DIRECTIVE in original:
            if not _deep_equal(original[RETAIN_KEYS_DIRECTIVE], retain):
                raise errors.BadRequest(
                    f"{original[RETAIN_KEYS_DIRECTIVE]} and {retain} are not deep equal: "
                    "this may happen when calculating the 3-way diff patch"
                )
        else:
            original[RETAIN_KEYS_DIRECTIVE] = retain
        return
    if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
        raise errors.BadRequest(ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS)
    keep = set(retain)
    for key, value in patch.items():
        if value is None or key.startswith((DELETE_FROM_PRIMITIVE_LIST_PREFIX, SET_ELEMENT_ORDER_PREFIX)):
            continue
        if key not in keep:
            raise errors.BadRequest(ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS)
    for key in [k for k in original if k not in keep]:
        del original[key]


def _contains_directive_marker(item: JSON) -> bool:
    return isinstance(item, dict) and DIRECTIVE_MARKER in item


def _merge_key_value_equal(left: JSON, right: JSON, merge_key: str) -> bool:
    if not merge_key:
        return _same(left, right)
    if not isinstance(left, dict):
        raise _bad_arg_type("map", left)
    if not isinstance(right, dict):
        raise _bad_arg_type("map", right)
    if merge_key not in left:
        raise _no_merge_key(left, merge_key)
    if merge_key not in right:
        raise _no_merge_key(right, merge_key)
    return _same(left[merge_key], right[merge_key])


def _validate_patch_with_set_order_list(patch_list: list[Any], set_order: list[Any], merge_key: str) -> None:
    """The items of the patch list must appear in ``$setElementOrder`` in the same order."""
    if not set_order or not patch_list:
        return
    non_delete = _extract_to_delete_items(patch_list)[0] if merge_key else patch_list
    p = s = 0
    while p < len(non_delete) and s < len(set_order):
        if _contains_directive_marker(non_delete[p]):
            p += 1
            continue
        if _merge_key_value_equal(non_delete[p], set_order[s], merge_key):
            p += 1
        s += 1
    if p < len(non_delete) and s >= len(set_order):
        raise errors.BadRequest(
            f"the order in patch list:\n{patch_list}\n doesn't match {SET_ELEMENT_ORDER_PREFIX} list:\n{set_order}"
        )


def _merge_patch_into_original(
    original: Doc, patch: Doc, schema: PatchSchema, options: _MergeOptions
) -> None:
    """Process ``$setElementOrder/<field>`` together with the patch's ``<field>`` list."""
    for key in list(patch):
        if key not in patch or not key.startswith(SET_ELEMENT_ORDER_PREFIX):
            continue
        set_order = patch.pop(key)
        if not options.merge_parallel_list:
            # The original is itself a patch: carry the directive over.
            if key in original:
                if not _deep_equal(original[key], set_order):
                    raise errors.BadRequest(ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER)
            else:
                original[key] = set_order
        if not isinstance(set_order, list):
            raise _bad_arg_type("slice", set_order)
        field_key = _extract_key(key, SET_ELEMENT_ORDER_PREFIX)

        found_original = field_key in original
        found_patch = field_key in patch
        original_list: list[Any] = []
        patch_list: list[Any] = []
        if found_original:
            original_list = original[field_key]
            if not isinstance(original_list, list):
                raise _bad_arg_type("slice", original_list)
        if found_patch:
            patch_list = patch[field_key]
            if not isinstance(patch_list, list):
                raise _bad_arg_type("slice", patch_list)
        field, subschema = schema.lookup(field_key)
        _validate_patch_with_set_order_list(patch_list, set_order, field.merge_key)

        if found_original and not found_patch:
            merged = original_list
        elif not found_original and found_patch:
            merged = _remove_directives(patch_list)[0]
        elif found_original and found_patch:
            merged = _merge_slice_handler(original_list, patch_list, subschema, field, False, options)
        else:
            continue

        patch_items, server_only = _partition(merged, set_order, field.merge_key)
        kind = _slice_element_type(original_list, patch_list)
        original[field_key] = _normalize_element_order(
            patch_items, server_only, set_order, original_list, field.merge_key, kind
        )
        patch.pop(field_key, None)


def _merge_slice_handler(
    original: JSON,
    patch: JSON,
    schema: PatchSchema,
    field: FieldPatch,
    is_delete_list: bool,
    options: _MergeOptions,
) -> list[Any]:
    if not isinstance(original, list):
        raise _bad_arg_type("slice", original)
    if not isinstance(patch, list):
        raise _bad_arg_type("slice", patch)
    # Deletion lists work the same whatever the field's strategy is.
    if field.strategy == MERGE_DIRECTIVE or is_delete_list:
        return _merge_slice(original, patch, schema, field.merge_key, options, is_delete_list)
    return patch


def _merge_slice(
    original: list[Any],
    patch: list[Any],
    schema: PatchSchema,
    merge_key: str,
    options: _MergeOptions,
    is_delete_list: bool,
) -> list[Any]:
    """Merge a patch list into a list with the merge strategy.

    Kubernetes edits the original Go slice in place here (deletions shift elements left and the
    first appended elements land in the freed tail), and callers later read the original slice to
    order the result. ``original`` is edited the same way so merged lists come out in the same
    order as on a real API server.
    """
    if not original and not patch:
        return original
    kind = _slice_element_type(original, patch)
    if kind != "map":
        if options.merge_parallel_list and is_delete_list:
            return _delete_from_slice(original, patch)
        if patch:
            merged = _deduplicate_scalars(original + patch)
        else:  # Go's append returned the original slice itself: deduplicated in place
            merged = original[: _deduplicate_scalars_in_place(original)]
        server_order = original
    else:
        if not merge_key:
            raise errors.BadRequest(f"cannot merge lists without merge key for {schema}")
        length, patch, replaced = _merge_slice_with_special_elements(original, patch, merge_key)
        if replaced is not None:
            server_order = replaced
            merged = list(replaced)
        else:
            server_order = original[:length]
            merged = _merge_slice_without_special_elements(
                original, length, patch, merge_key, schema, options
            )
    patch_items, server_only = _partition(merged, patch, merge_key)
    return _normalize_element_order(patch_items, server_only, patch, server_order, merge_key, kind)


def _merge_slice_with_special_elements(
    original: list[Any], patch: list[Any], merge_key: str
) -> tuple[int, list[Any], list[Any] | None]:
    """Apply ``$patch`` elements: delete matching elements, or replace the whole list.

    Deletions compact ``original`` in place; returns its new length, the patch without ``$patch``
    elements, and the replacement list when an element says ``$patch: replace``.
    """
    length = len(original)
    plain: list[Any] = []
    replace_list = False
    for item in patch:
        if DIRECTIVE_MARKER not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE_MARKER]
        if directive == DELETE_DIRECTIVE:
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            length = _delete_matching_entries(original, length, merge_key, item[merge_key])
        elif directive == REPLACE_DIRECTIVE:
            replace_list = True  # keep going, to prune the other $patch elements
        elif directive == MERGE_DIRECTIVE:
            raise errors.BadRequest("merging lists cannot yet be specified in the patch")
        else:
            raise _bad_patch_type(directive, item)
    if replace_list:
        return 0, [], plain
    return length, plain, None


def _delete_matching_entries(backing: list[Any], length: int, merge_key: str, value: JSON) -> int:
    """Remove every element of ``backing[:length]`` matching the merge key, shifting in place."""
    while (i := _find_map_by_key(backing[:length], merge_key, value)) >= 0:
        backing[i : length - 1] = backing[i + 1 : length]
        length -= 1
    return length


def _merge_slice_without_special_elements(
    backing: list[Any],
    length: int,
    patch: list[Any],
    merge_key: str,
    schema: PatchSchema,
    options: _MergeOptions,
) -> list[Any]:
    """Merge each patch element into the element with the same merge key, or append it.

    Appends fill ``backing`` beyond ``length`` while it has room, as Go's ``append`` does.
    """
    current = backing
    for item in patch:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        i = _find_map_by_key(current[:length], merge_key, item[merge_key])
        if i >= 0:
            current[i] = _merge_map(current[i], item, schema, options)
        elif current is backing and length < len(backing):
            backing[length] = item
            length += 1
        else:
            current = current[:length] + [item]
            length += 1
    return current[:length]


def _delete_from_slice(current: list[Any], to_delete: list[Any]) -> list[Any]:
    gone = {_scalar_key(v) for v in to_delete}
    return [v for v in current if _scalar_key(v) not in gone]


# --------------------------------------------------------------------------------------------
# Computing a patch (client side: diffMaps)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DiffOptions:
    # Emit the $setElementOrder parallel list for merged lists.
    set_element_order: bool = False
    # Leave out changes and additions (the deletions half of a three-way patch).
    ignore_changes_and_additions: bool = False
    # Leave out deletions (the changes half of a three-way patch).
    ignore_deletions: bool = False
    # The map has the retainKeys strategy: emit $retainKeys.
    build_retain_keys: bool = False


def _diff_maps(original: Doc, modified: Doc, schema: PatchSchema, options: _DiffOptions) -> Doc:
    """A patch that yields ``modified`` from ``original`` (subject to the options)."""
    patch: Doc = {}
    retain_keys: list[Any] = []
    for key, modified_value in modified.items():
        if options.build_retain_keys and modified_value is not None:
            retain_keys.append(key)
        if key not in original:
            if not options.ignore_changes_and_additions:
                patch[key] = modified_value
            continue
        original_value = original[key]
        if key == DIRECTIVE_MARKER:
            if not isinstance(original_value, str) or not isinstance(modified_value, str):
                raise errors.BadRequest(f"invalid value for special key: {DIRECTIVE_MARKER}")
            if modified_value != original_value:
                patch[key] = modified_value
            continue
        if _type_of(original_value) != _type_of(modified_value):
            if not options.ignore_changes_and_additions:
                patch[key] = modified_value
            continue
        if isinstance(original_value, dict):
            _handle_map_diff(key, original_value, modified_value, patch, schema, options)
        elif isinstance(original_value, list):
            _handle_slice_diff(key, original_value, modified_value, patch, schema, options)
        elif not options.ignore_changes_and_additions and not _deep_equal(original_value, modified_value):
            patch[key] = modified_value

    if not options.ignore_deletions:
        for key in original:
            if key not in modified:
                patch[key] = None
    if retain_keys and (patch or _has_additional_new_field(original, modified)):
        patch[RETAIN_KEYS_DIRECTIVE] = _sort_scalars(retain_keys)
    return patch


def _has_additional_new_field(original: Doc, modified: Doc) -> bool:
    return any(v is not None and k not in modified for k, v in original.items())


def _handle_map_diff(
    key: str, original: Doc, modified: Doc, patch: Doc, schema: PatchSchema, options: _DiffOptions
) -> None:
    field, subschema = schema.lookup(key)
    options = replace(options, build_retain_keys=field.retain_keys)
    if field.strategy == REPLACE_DIRECTIVE:
        if not options.ignore_changes_and_additions:
            patch[key] = modified
        return
    value = _diff_maps(original, modified, subschema, options)
    if value:
        patch[key] = value


def _handle_slice_diff(
    key: str, original: list[Any], modified: list[Any], patch: Doc, schema: PatchSchema, options: _DiffOptions
) -> None:
    field, subschema = schema.lookup(key)
    if field.strategy != MERGE_DIRECTIVE:
        if not options.ignore_changes_and_additions and not _deep_equal(original, modified):
            patch[key] = modified
        return
    options = replace(options, build_retain_keys=field.retain_keys)
    add_list, delete_list, set_order = _diff_lists(original, modified, subschema, field.merge_key, options)
    if add_list:
        patch[key] = add_list
    if delete_list:
        patch[f"{DELETE_FROM_PRIMITIVE_LIST_PREFIX}/{key}"] = delete_list
    if set_order:
        patch[f"{SET_ELEMENT_ORDER_PREFIX}/{key}"] = set_order


def _diff_lists(
    original: list[Any], modified: list[Any], schema: PatchSchema, merge_key: str, options: _DiffOptions
) -> tuple[list[Any], list[Any], list[Any]]:
    """(patch list, deletion list for scalars, $setElementOrder list) of a merged list."""
    if not original:
        if not modified or options.ignore_changes_and_additions:
            return [], [], []
        return modified, [], []

    kind = _slice_element_type(original, modified)
    set_order: list[Any] = []
    if kind == "map":
        patch_list, deletions = _diff_lists_of_maps(original, modified, schema, merge_key, options)
        patch_list = _normalize_slice_order(patch_list, modified, merge_key, kind)
        order_same = _is_order_same(original, modified, merge_key)
        patch_list = patch_list + deletions  # deletions go at the end of the patch list
        if options.set_element_order and (
            (not options.ignore_changes_and_additions and (patch_list or not order_same))
            or (not options.ignore_deletions and patch_list)
        ):
            set_order = [{merge_key: item[merge_key]} for item in modified]
        return patch_list, [], set_order
    if kind == "slice":
        raise _no_list_of_lists()
    patch_list, deletions = _diff_lists_of_scalars(original, modified, options)
    patch_list = _normalize_slice_order(patch_list, modified, merge_key, kind)
    if options.set_element_order and (
        (not options.ignore_deletions and deletions)
        or (not options.ignore_changes_and_additions and not _deep_equal(original, modified))
    ):
        set_order = modified
    return patch_list, deletions, set_order


def _is_order_same(original: list[Any], modified: list[Any], merge_key: str) -> bool:
    if len(original) != len(modified):
        return False
    return all(_merge_key_value_equal(o, m, merge_key) for o, m in zip(original, modified, strict=True))


def _diff_lists_of_scalars(
    original: list[Any], modified: list[Any], options: _DiffOptions
) -> tuple[list[Any], list[Any]]:
    """Walk both lists sorted by their string forms: (values to add, values to delete).

    Like Kubernetes, this sorts ``original`` in place (callers compare it afterwards).
    """
    original.sort(key=_go_string)
    originals = original
    modifieds = _sort_scalars(modified)
    add: list[Any] = []
    delete: list[Any] = []
    for o, m in _walk_sorted(originals, modifieds, _go_string):
        if o is _MISSING and not options.ignore_changes_and_additions:
            add.append(m)
        elif m is _MISSING and not options.ignore_deletions:
            delete.append(o)
    return add, _deduplicate_scalars(delete)


_MISSING = object()


def _walk_sorted(
    originals: list[Any], modifieds: list[Any], key: Callable[[Any], str]
) -> Iterator[tuple[Any, Any]]:
    """Pair up two lists sorted by ``key``: (original, modified) where the keys are equal, else
    the element of one side with :data:`_MISSING` for the other."""
    i = j = 0
    while i < len(originals) or j < len(modifieds):
        o_key = key(originals[i]) if i < len(originals) else None
        m_key = key(modifieds[j]) if j < len(modifieds) else None
        if o_key is not None and m_key is not None and o_key == m_key:
            yield originals[i], modifieds[j]
            i += 1
            j += 1
        elif o_key is None or (m_key is not None and o_key > m_key):
            yield _MISSING, modifieds[j]
            j += 1
        else:
            yield originals[i], _MISSING
            i += 1


def _merge_key_of(item: JSON, merge_key: str) -> JSON:
    if not isinstance(item, dict):
        raise _bad_arg_type("map", item)
    if merge_key not in item:
        raise _no_merge_key(item, merge_key)
    return item[merge_key]


def _diff_lists_of_maps(
    original: list[Any], modified: list[Any], schema: PatchSchema, merge_key: str, options: _DiffOptions
) -> tuple[list[Any], list[Any]]:
    """Walk both lists sorted by merge key: (changed and added elements, delete directives)."""
    for item in (*original, *modified):
        _merge_key_of(item, merge_key)
    originals = _sort_maps_by_key(original, merge_key)
    modifieds = _sort_maps_by_key(modified, merge_key)
    patch: list[Any] = []
    deletions: list[Any] = []
    for o, m in _walk_sorted(originals, modifieds, lambda item: _go_string(item[merge_key])):
        if o is _MISSING:
            if not options.ignore_changes_and_additions:
                patch.append(m)
        elif m is _MISSING:
            if not options.ignore_deletions:
                deletions.append({merge_key: o[merge_key], DIRECTIVE_MARKER: DELETE_DIRECTIVE})
        elif value := _diff_maps(o, m, schema, options):
            value[merge_key] = m[merge_key]
            patch.append(value)
    return patch, deletions
