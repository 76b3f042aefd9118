"""Strategic merge patch: cases ported from Kubernetes' strategicpatch/patch_test.go plus Pod and
Deployment scenarios of ``kubectl apply``."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from apimachinery import errors
from apimachinery.strategicpatch import (
    FieldPatch,
    PatchSchema,
    create_three_way_merge_patch,
    create_three_way_merge_patch_with_schema,
    create_two_way_merge_patch,
    create_two_way_merge_patch_with_schema,
    patch_table,
    strategic_merge_patch,
    strategic_merge_patch_with_schema,
)

# --------------------------------------------------------------------------------------------
# The MergeItem test type of patch_test.go, unrolled to a few levels of nesting
# --------------------------------------------------------------------------------------------

_MERGE_ITEM_FIELDS: dict[str, tuple[FieldPatch, str | None]] = {
    "mergingList": (FieldPatch("merge", "name"), "MergeItem"),
    "nonMergingList": (FieldPatch(), "MergeItem"),
    "mergingIntList": (FieldPatch("merge"), None),
    "nonMergingIntList": (FieldPatch(), None),
    "mergeItemPtr": (FieldPatch("merge", "name"), "MergeItem"),
    "simpleMap": (FieldPatch(), None),
    "replacingItem": (FieldPatch("replace"), None),
    "retainKeysMap": (FieldPatch(retain_keys=True), "RetainKeysMergeItem"),
    "retainKeysMergingList": (FieldPatch("merge", "name", retain_keys=True), "MergeItem"),
}
_RETAIN_KEYS_ITEM_FIELDS: dict[str, tuple[FieldPatch, str | None]] = {
    "simpleMap": (FieldPatch(), None),
    "mergingIntList": (FieldPatch("merge"), None),
    "mergingList": (FieldPatch("merge", "name"), "MergeItem"),
    "nonMergingList": (FieldPatch(), "MergeItem"),
}


def _unroll(type_name: str, prefix: tuple[str, ...], depth: int, out: dict) -> None:
    fields = _MERGE_ITEM_FIELDS if type_name == "MergeItem" else _RETAIN_KEYS_ITEM_FIELDS
    for name, (meta, child) in fields.items():
        path = (*prefix, name)
        if meta != FieldPatch():
            out[path] = meta
        if child and depth > 0:
            _unroll(child, path, depth - 1, out)


_TABLE: dict[tuple[str, ...], FieldPatch] = {}
_unroll("MergeItem", (), 4, _TABLE)
MERGE_ITEM = PatchSchema(_TABLE)


def smp(original: dict, patch: dict) -> dict:
    return strategic_merge_patch_with_schema(original, patch, MERGE_ITEM)


THREE_WAY_CASES: list[dict[str, Any]] = yaml.safe_load(
    r"""
# Ported from k8s.io/apimachinery/pkg/util/strategicpatch/patch_test.go (three-way cases).
- description: nil original
  twoWay: {name: 1, value: 1}
  modified: {name: 1, value: 1}
  current: {name: 1, other: a}
  threeWay: {value: 1}
  result: {name: 1, value: 1, other: a}
- description: nil patch
  original: {name: 1}
  twoWay: {}
  modified: {name: 1}
  current: {name: 1}
  threeWay: {}
  result: {name: 1}
- description: add field to map with conflict
  original: {name: 1}
  twoWay: {value: 1}
  modified: {name: 1, value: 1}
  current: {name: a, other: a}
  threeWay: {name: 1, value: 1}
  result: {name: 1, value: 1, other: a}
- description: add field and delete field from map
  original: {name: 1}
  twoWay: {name: null, value: 1}
  modified: {value: 1}
  current: {name: 1, other: a}
  threeWay: {name: null, value: 1}
  result: {value: 1, other: a}
- description: delete field from nested map with conflict
  original: {simpleMap: {key1: 1, key2: 1}}
  twoWay: {simpleMap: {key2: null}}
  modified: {simpleMap: {key1: 1}}
  current: {simpleMap: {key1: a, key2: 1, other: a}}
  threeWay: {simpleMap: {key1: 1, key2: null}}
  result: {simpleMap: {key1: 1, other: a}}
- description: add field and delete all fields from map with conflict
  original: {name: 1, value: 1}
  twoWay: {name: null, value: null, other: a}
  modified: {other: a}
  current: {name: 1, value: 1, other: b}
  threeWay: {name: null, value: null, other: a}
  result: {other: a}
- description: replace list of scalars with conflict
  original: {nonMergingIntList: [1, 2]}
  twoWay: {nonMergingIntList: [2, 3]}
  modified: {nonMergingIntList: [2, 3]}
  current: {nonMergingIntList: [1, 4]}
  threeWay: {nonMergingIntList: [2, 3]}
  result: {nonMergingIntList: [2, 3]}
- description: delete all maps from merging list with conflict
  original: {mergingList: [{name: 1}, {name: 2}]}
  twoWay: {mergingList: [{name: 1, $patch: delete}, {name: 2, $patch: delete}]}
  modified: {mergingList: []}
  current: {mergingList: [{name: 1, other: a}, {name: 2, other: b}]}
  threeWay: {mergingList: [{name: 1, $patch: delete}, {name: 2, $patch: delete}]}
  result: {mergingList: []}
- description: delete all maps from empty merging list
  original: {mergingList: [{name: 1}, {name: 2}]}
  twoWay: {mergingList: [{name: 1, $patch: delete}, {name: 2, $patch: delete}]}
  modified: {mergingList: []}
  current: {mergingList: []}
  threeWay: {mergingList: [{name: 1, $patch: delete}, {name: 2, $patch: delete}]}
  result: {mergingList: []}
- description: merge empty merging lists
  original: {mergingList: []}
  twoWay: {}
  modified: {mergingList: []}
  current: {mergingList: []}
  threeWay: {}
  result: {mergingList: []}
- description: defined null values should propagate overwrite current fields (with conflict)
  original: {name: 2}
  twoWay: {name: 1, value: 1, other: null}
  twoWayResult: {name: 1, value: 1}
  modified: {name: 1, value: 1, other: null}
  current: {name: a, other: a}
  threeWay: {name: 1, value: 1, other: null}
  result: {name: 1, value: 1}
- description: defined null values should propagate removing original fields
  original: {name: original-name, value: original-value}
  current: {name: original-name, value: original-value, other: current-other}
  modified: {name: modified-name, value: null}
  twoWay: {name: modified-name, value: null}
  twoWayResult: {name: modified-name}
  threeWay: {name: modified-name, value: null}
  result: {name: modified-name, other: current-other}
- description: nil patch with retainKeys map
  original: {name: a, retainKeysMap: {name: foo}}
  current: {name: a, value: b, retainKeysMap: {name: foo}}
  modified: {name: a, retainKeysMap: {name: foo}}
  twoWay: {}
  threeWay: {}
  result: {name: a, value: b, retainKeysMap: {name: foo}}
- description: retainKeys map with no change should not be present
  original: {name: a, retainKeysMap: {name: foo}}
  current: {name: a, other: c, retainKeysMap: {name: foo}}
  modified: {name: a, value: b, retainKeysMap: {name: foo}}
  twoWay: {value: b}
  threeWay: {value: b}
  result: {name: a, value: b, other: c, retainKeysMap: {name: foo}}
- description: nested patch merge with empty list
  original: {name: hi}
  current: {name: hi, mergingList: [{name: hello2}]}
  modified: {name: hi, mergingList: [{name: hello}, {$patch: delete, name: doesntexist}]}
  twoWay: {mergingList: [{name: hello}, {$patch: delete, name: doesntexist}]}
  threeWay:
    $setElementOrder/mergingList: [{name: hello}, {name: doesntexist}]
    mergingList: [{name: hello}]
  twoWayResult: {name: hi, mergingList: [{name: hello}]}
  result: {name: hi, mergingList: [{name: hello}, {name: hello2}]}
- description: delete items in lists of scalars
  original: {mergingIntList: [1, 2, 3]}
  twoWay:
    $setElementOrder/mergingIntList: [1, 2]
    $deleteFromPrimitiveList/mergingIntList: [3]
  modified: {mergingIntList: [1, 2]}
  current: {mergingIntList: [1, 2, 3, 4]}
  threeWay:
    $setElementOrder/mergingIntList: [1, 2]
    $deleteFromPrimitiveList/mergingIntList: [3]
  result: {mergingIntList: [1, 2, 4]}
- description: delete all duplicate items in lists of scalars
  original: {mergingIntList: [1, 2, 3, 3]}
  twoWay:
    $setElementOrder/mergingIntList: [1, 2]
    $deleteFromPrimitiveList/mergingIntList: [3]
  modified: {mergingIntList: [1, 2]}
  current: {mergingIntList: [1, 2, 3, 3, 4]}
  threeWay:
    $setElementOrder/mergingIntList: [1, 2]
    $deleteFromPrimitiveList/mergingIntList: [3]
  result: {mergingIntList: [1, 2, 4]}
- description: add and delete items in lists of scalars
  original: {mergingIntList: [1, 2, 3]}
  twoWay:
    $setElementOrder/mergingIntList: [1, 2, 4]
    $deleteFromPrimitiveList/mergingIntList: [3]
    mergingIntList: [4]
  modified: {mergingIntList: [1, 2, 4]}
  current: {mergingIntList: [1, 2, 3, 4]}
  threeWay:
    $setElementOrder/mergingIntList: [1, 2, 4]
    $deleteFromPrimitiveList/mergingIntList: [3]
  result: {mergingIntList: [1, 2, 4]}
- description: merge lists of maps
  original: {mergingList: [{name: 1}, {name: 2, value: 2}]}
  twoWay:
    $setElementOrder/mergingList: [{name: 4}, {name: 1}, {name: 2}, {name: 3}]
    mergingList: [{name: 4, value: 4}, {name: 3, value: 3}]
  modified: {mergingList: [{name: 4, value: 4}, {name: 1}, {name: 2, value: 2}, {name: 3, value: 3}]}
  current: {mergingList: [{name: 1, other: a}, {name: 2, value: 2, other: b}]}
  threeWay:
    $setElementOrder/mergingList: [{name: 4}, {name: 1}, {name: 2}, {name: 3}]
    mergingList: [{name: 4, value: 4}, {name: 3, value: 3}]
  result:
    mergingList: [{name: 4, value: 4}, {name: 1, other: a}, {name: 2, value: 2, other: b}, {name: 3, value: 3}]
- description: merge lists of maps with conflict
  original: {mergingList: [{name: 1}, {name: 2, value: 2}]}
  twoWay:
    $setElementOrder/mergingList: [{name: 1}, {name: 2}, {name: 3}]
    mergingList: [{name: 3, value: 3}]
  modified: {mergingList: [{name: 1}, {name: 2, value: 2}, {name: 3, value: 3}]}
  current: {mergingList: [{name: 1, other: a}, {name: 2, value: 3, other: b}]}
  threeWay:
    $setElementOrder/mergingList: [{name: 1}, {name: 2}, {name: 3}]
    mergingList: [{name: 2, value: 2}, {name: 3, value: 3}]
  result: {mergingList: [{name: 1, other: a}, {name: 2, value: 2, other: b}, {name: 3, value: 3}]}
- description: add field to map in merging list with conflict
  original: {mergingList: [{name: 1}, {name: 2, value: 2}]}
  twoWay:
    $setElementOrder/mergingList: [{name: 1}, {name: 2}]
    mergingList: [{name: 1, value: 1}]
  modified: {mergingList: [{name: 1, value: 1}, {name: 2, value: 2}]}
  current: {mergingList: [{name: 1, other: a}, {name: 3, value: 2, other: b}]}
  threeWay:
    $setElementOrder/mergingList: [{name: 1}, {name: 2}]
    mergingList: [{name: 1, value: 1}, {name: 2, value: 2}]
  result: {mergingList: [{name: 1, value: 1, other: a}, {name: 2, value: 2}, {name: 3, value: 2, other: b}]}
- description: add an item that already exists in current object in merging list
  original: {mergingList: [{name: 1, value: a}, {name: 2}]}
  twoWay:
    $setElementOrder/mergingList: [{name: 1}, {name: 2}, {name: 3}]
    mergingList: [{name: 3}]
  modified: {mergingList: [{name: 1, value: a}, {name: 2}, {name: 3}]}
  current: {mergingList: [{name: 1, value: a, other: x}, {name: 2}, {name: 3}]}
  threeWay: {}
  result: {mergingList: [{name: 1, value: a, other: x}, {name: 2}, {name: 3}]}
- description: delete missing map from merging list with conflict
  original: {mergingList: [{name: 1}, {name: 2}]}
  twoWay:
    $setElementOrder/mergingList: [{name: 2}]
    mergingList: [{name: 1, $patch: delete}]
  modified: {mergingList: [{name: 2}]}
  current: {mergingList: [{name: 3, other: a}]}
  threeWay:
    $setElementOrder/mergingList: [{name: 2}]
    mergingList: [{name: 2}, {name: 1, $patch: delete}]
  result: {mergingList: [{name: 2}, {name: 3, other: a}]}
- description: add map and delete map from merging list
  original: {mergingList: [{name: 1}, {name: 2}]}
  twoWay:
    $setElementOrder/mergingList: [{name: 2}, {name: 3}]
    mergingList: [{name: 3}, {name: 1, $patch: delete}]
  modified: {mergingList: [{name: 2}, {name: 3}]}
  current: {mergingList: [{name: 1}, {name: 2, other: b}, {name: 4, other: c}]}
  threeWay:
    $setElementOrder/mergingList: [{name: 2}, {name: 3}]
    mergingList: [{name: 3}, {name: 1, $patch: delete}]
  result: {mergingList: [{name: 2, other: b}, {name: 4, other: c}, {name: 3}]}
- description: add map and delete map from merging list with conflict
  original: {mergingList: [{name: 1}, {name: 2}]}
  twoWay:
    $setElementOrder/mergingList: [{name: 2}, {name: 3}]
    mergingList: [{name: 3}, {name: 1, $patch: delete}]
  modified: {mergingList: [{name: 2}, {name: 3}]}
  current: {mergingList: [{name: 1, other: a}, {name: 4, other: c}]}
  threeWay:
    $setElementOrder/mergingList: [{name: 2}, {name: 3}]
    mergingList: [{name: 2}, {name: 3}, {name: 1, $patch: delete}]
  result: {mergingList: [{name: 4, other: c}, {name: 2}, {name: 3}]}
- description: delete missing field from map in merging list with conflict
  original: {mergingList: [{name: 1, value: 1}, {name: 2, value: 2}]}
  twoWay:
    $setElementOrder/mergingList: [{name: 1}, {name: 2}]
    mergingList: [{name: 1, value: null}]
  modified: {mergingList: [{name: 1}, {name: 2, value: 2}]}
  current: {mergingList: [{name: 1, other: a}, {name: 2, other: b}]}
  threeWay:
    $setElementOrder/mergingList: [{name: 1}, {name: 2}]
    mergingList: [{name: 1, value: null}, {name: 2, value: 2}]
  result: {mergingList: [{name: 1, other: a}, {name: 2, value: 2, other: b}]}
- description: replace non merging list nested in merging list with value conflict
  original: {mergingList: [{name: 1, nonMergingList: [{name: 1}, {name: 2, value: 2}]}, {name: 2}]}
  twoWay:
    $setElementOrder/mergingList: [{name: 1}, {name: 2}]
    mergingList: [{name: 1, nonMergingList: [{name: 1, value: 1}]}]
  modified: {mergingList: [{name: 1, nonMergingList: [{name: 1, value: 1}]}, {name: 2}]}
  current: {mergingList: [{name: 1, other: a, nonMergingList: [{name: 1, value: c}]}, {name: 2, other: b}]}
  threeWay:
    $setElementOrder/mergingList: [{name: 1}, {name: 2}]
    mergingList: [{name: 1, nonMergingList: [{name: 1, value: 1}]}]
  result: {mergingList: [{name: 1, other: a, nonMergingList: [{name: 1, value: 1}]}, {name: 2, other: b}]}
"""
)


@pytest.mark.parametrize("case", THREE_WAY_CASES, ids=[c["description"] for c in THREE_WAY_CASES])
def test_ported_two_and_three_way_cases(case: dict[str, Any]) -> None:
    original = case.get("original") or {}
    snapshot = copy.deepcopy(case)
    two_way = create_two_way_merge_patch_with_schema(original, case["modified"], MERGE_ITEM)
    assert two_way == case["twoWay"]
    assert smp(original, case["twoWay"]) == case.get("twoWayResult", case["modified"])
    three_way = create_three_way_merge_patch_with_schema(
        case.get("original"), case["modified"], case["current"], MERGE_ITEM
    )
    assert three_way == case["threeWay"]
    assert smp(case["current"], case["threeWay"]) == case["result"]
    assert case == snapshot  # nothing was modified in place


# --------------------------------------------------------------------------------------------
# Applying patches that CreateTwoWayMergePatch never generates (customStrategicMergePatch cases)
# --------------------------------------------------------------------------------------------

APPLY_CASES: list[dict[str, Any]] = yaml.safe_load(
    r"""
- description: unique scalars when merging lists
  original: {mergingIntList: [1, 2]}
  patch: {mergingIntList: [2, 3]}
  result: {mergingIntList: [1, 2, 3]}
- description: delete map from nested map
  original: {simpleMap: {key1: 1, key2: 1}}
  patch: {simpleMap: {$patch: delete}}
  result: {simpleMap: {}}
- description: delete all items from merging list
  original: {mergingList: [{name: 1}, {name: 2}]}
  patch: {mergingList: [{$patch: replace}]}
  result: {mergingList: []}
- description: replace a merging list
  original: {mergingList: [{name: 1, value: a}, {name: 2}]}
  patch: {mergingList: [{name: 3}, {name: 1}, {$patch: replace}]}
  result: {mergingList: [{name: 3}, {name: 1}]}
- description: delete all keys from map
  original: {name: 1, value: 1}
  patch: {$patch: replace}
  result: {}
- description: add key and delete all keys from map
  original: {name: 1, value: 1}
  patch: {other: a, $patch: replace}
  result: {other: a}
- description: delete all duplicate entries in a merging list
  original: {mergingList: [{name: 1}, {name: 1}, {name: 2, value: a}, {name: 3}, {name: 3}]}
  patch: {mergingList: [{name: 1, $patch: delete}, {name: 3, $patch: delete}]}
  result: {mergingList: [{name: 2, value: a}]}
- description: retainKeys map can add a field when no retainKeys directive present
  original: {retainKeysMap: {name: foo}}
  patch: {retainKeysMap: {value: bar}}
  result: {retainKeysMap: {name: foo, value: bar}}
- description: retainKeys map can delete a field when no retainKeys directive present
  original: {retainKeysMap: {name: foo, value: a}}
  patch: {retainKeysMap: {value: null}}
  result: {retainKeysMap: {name: foo}}
- description: retainKeys directive clears the keys it does not list
  original: {retainKeysMap: {name: foo, value: a, other: b}}
  patch: {retainKeysMap: {$retainKeys: [name, value], value: c}}
  result: {retainKeysMap: {name: foo, value: c}}
- description: retainKeys list can change a field when no retainKeys directive present
  original: {retainKeysMergingList: [{name: bar}, {name: foo, value: a}]}
  patch: {retainKeysMergingList: [{name: foo, value: b}]}
  result: {retainKeysMergingList: [{name: bar}, {name: foo, value: b}]}
- description: preserve the order from the patch in a merging list
  original: {mergingList: [{name: 1}, {name: 2, value: b}, {name: 3}]}
  patch: {mergingList: [{name: 3, value: c}, {name: 1, value: a}, {name: 2, other: x}]}
  result: {mergingList: [{name: 3, value: c}, {name: 1, value: a}, {name: 2, value: b, other: x}]}
- description: preserve the order from the patch in a merging list 2
  original: {mergingList: [{name: 1}, {name: 2, value: b}, {name: 3}]}
  patch: {mergingList: [{name: 3, value: c}, {name: 1, value: a}]}
  result: {mergingList: [{name: 2, value: b}, {name: 3, value: c}, {name: 1, value: a}]}
- description: preserve the order from the patch in a merging int list
  original: {mergingIntList: [1, 2, 3]}
  patch: {mergingIntList: [3, 1, 2]}
  result: {mergingIntList: [3, 1, 2]}
- description: preserve the order from the patch in a merging int list 2
  original: {mergingIntList: [1, 2, 3]}
  patch: {mergingIntList: [3, 1]}
  result: {mergingIntList: [2, 3, 1]}
- description: setElementOrder contains item that is not present in the list to be merged
  original: {mergingList: [{name: 1}, {name: 3}]}
  patch:
    $setElementOrder/mergingList: [{name: 3}, {name: 2}, {name: 1}]
    mergingList: [{name: 3, value: 3}, {name: 1, value: 1}]
  result: {mergingList: [{name: 3, value: 3}, {name: 1, value: 1}]}
- description: setElementOrder contains item that is not present in the int list to be merged
  original: {mergingIntList: [1, 3]}
  patch: {$setElementOrder/mergingIntList: [3, 2, 1]}
  result: {mergingIntList: [3, 1]}
- description: deleteFromPrimitiveList of nonexistent item should not add the item
  original: {mergingIntList: [1, 2]}
  patch: {$deleteFromPrimitiveList/mergingIntList: [3]}
  result: {mergingIntList: [1, 2]}
- description: deleteFromPrimitiveList on empty primitive list should not add the item
  original: {mergingIntList: null}
  patch: {$deleteFromPrimitiveList/mergingIntList: [3]}
  result: {mergingIntList: null}
- description: deleteFromPrimitiveList on nonexistent primitive list should not add the list
  original: {foo: [bar]}
  patch: {$deleteFromPrimitiveList/mergingIntList: [3]}
  result: {foo: [bar]}
- description: deleteFromPrimitiveList deletes from a list with merge patch strategy
  original: {mergingIntList: [1, 2, 3]}
  patch: {$deleteFromPrimitiveList/mergingIntList: [2]}
  result: {mergingIntList: [1, 3]}
- description: deleteFromPrimitiveList deletes from a list without merge patch strategy
  original: {nonMergingIntList: [1, 2, 3]}
  patch: {$deleteFromPrimitiveList/nonMergingIntList: [2]}
  result: {nonMergingIntList: [1, 3]}
- description: nested merging list inside a merging list element
  original: {mergingList: [{name: 1, mergingList: [{name: a, value: 1}, {name: b}]}]}
  patch: {mergingList: [{name: 1, mergingList: [{name: b, value: 2}, {name: a, $patch: delete}]}]}
  result: {mergingList: [{name: 1, mergingList: [{name: b, value: 2}]}]}
- description: replace strategy replaces a map whole
  original: {replacingItem: {a: 1, b: 2}}
  patch: {replacingItem: {c: 3}}
  result: {replacingItem: {c: 3}}
- description: nulls inside added content are dropped
  original: {name: 1}
  patch: {simpleMap: {a: x, b: null}}
  result: {name: 1, simpleMap: {a: x}}
- description: a new map carrying a directive is not added
  original: {name: 1}
  patch: {simpleMap: {$patch: delete}}
  result: {name: 1}
"""
)


@pytest.mark.parametrize("case", APPLY_CASES, ids=[c["description"] for c in APPLY_CASES])
def test_ported_apply_cases(case: dict[str, Any]) -> None:
    snapshot = copy.deepcopy(case)
    assert smp(case["original"], case["patch"]) == case["result"]
    assert case == snapshot


@pytest.mark.parametrize(
    ("original", "patch", "message", "code"),
    [
        (
            {"mergingList": [{"name": 1}, {"name": 3}, {"name": 2}]},
            {
                "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
                "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}],
            },
            "doesn't match",
            400,
        ),
        (
            {"mergingIntList": [1, 3, 2]},
            {"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3, 1]},
            "doesn't match",
            400,
        ),
        (
            {"mergingList": [{"name": 1, "value": "a"}]},
            {"mergingList": [{"value": "b"}]},
            "does not contain declared merge key",
            400,
        ),
        (
            {"mergingList": [{"name": 1}]},
            {"mergingList": [{"name": 1, "$patch": "bogus"}]},
            "unknown patch type",
            400,
        ),
        (
            {"mergingList": [{"name": 1}]},
            {"mergingList": [{"name": 1, "$patch": "merge"}]},
            "cannot yet",
            400,
        ),
        ({"simpleMap": {"a": 1}}, {"simpleMap": {"$patch": "merge"}}, "unknown patch type", 400),
        ({"simpleMap": {"a": 1}}, {"simpleMap": {"$frobnicate": 1}}, "unknown patch directive", 400),
        ({"retainKeysMap": {"a": 1}}, {"retainKeysMap": {"$retainKeys": "a"}}, "retainKeys", 400),
        (
            {"retainKeysMap": {"name": 1}},
            {"retainKeysMap": {"$retainKeys": ["name"], "value": 2}},
            "retainKeys",
            400,
        ),
        ({"mergingIntList": [[1]]}, {"mergingIntList": [[2]]}, "", 422),
        ({"mergingIntList": [1]}, {"mergingIntList": ["a"]}, "not identical", 400),
        ({"mergingIntList": [1]}, {"$deleteFromPrimitiveListmergingIntList": [1]}, "primitive list", 400),
    ],
)
def test_malformed_patches_are_rejected(original: dict, patch: dict, message: str, code: int) -> None:
    with pytest.raises(errors.StatusError) as info:
        smp(original, patch)
    assert info.value.code == code
    if code == 400:
        assert isinstance(info.value, errors.BadRequest)
        assert message in info.value.message
    else:
        assert info.value.causes[0]["message"] == "lists of lists are not supported"


def test_non_object_documents_are_bad_requests() -> None:
    with pytest.raises(errors.BadRequest):
        strategic_merge_patch({"a": 1}, ["not", "a", "map"], "Pod")  # type: ignore[arg-type]
    with pytest.raises(errors.BadRequest):
        strategic_merge_patch("x", {}, "Pod")  # type: ignore[arg-type]


def test_two_way_patch_builds_retain_keys_for_retain_keys_fields() -> None:
    original = {"retainKeysMap": {"name": "foo", "value": "a"}}
    modified = {"retainKeysMap": {"name": "foo", "other": "b"}}
    patch = create_two_way_merge_patch_with_schema(original, modified, MERGE_ITEM)
    assert patch == {"retainKeysMap": {"$retainKeys": ["name", "other"], "other": "b", "value": None}}
    assert smp(original, patch) == modified


# --------------------------------------------------------------------------------------------
# Kubernetes kinds
# --------------------------------------------------------------------------------------------


def test_patch_tables_follow_the_struct_tags() -> None:
    pod = patch_table("Pod")
    assert pod[("spec", "containers")] == FieldPatch("merge", "name")
    assert pod[("spec", "containers", "ports")] == FieldPatch("merge", "containerPort")
    assert pod[("spec", "initContainers", "volumeMounts")] == FieldPatch("merge", "mountPath")
    assert pod[("spec", "volumes")] == FieldPatch("merge", "name", retain_keys=True)
    assert ("spec", "tolerations") not in pod
    assert pod[("metadata", "finalizers")] == FieldPatch("merge")
    deployment = patch_table("Deployment", "apps/v1")
    assert deployment[("spec", "template", "spec", "containers", "env")] == FieldPatch("merge", "name")
    assert deployment[("spec", "strategy")] == FieldPatch(retain_keys=True)
    assert patch_table("Service")[("spec", "ports")] == FieldPatch("merge", "port")
    assert patch_table("Node")[("status", "addresses")] == FieldPatch("merge", "type")
    assert patch_table("Deployment", "extensions/v1beta1") == patch_table("ConfigMap")


def _pod(containers: list[dict], **spec: Any) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": containers, **spec},
    }


def test_pod_containers_merge_by_name_and_env_inside_them() -> None:
    live = _pod(
        [
            {
                "name": "app",
                "image": "nginx:1",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            },
            {"name": "sidecar", "image": "busybox"},
        ],
        tolerations=[{"key": "a", "operator": "Exists"}],
    )
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "nginx:2",
                    "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                }
            ],
            "tolerations": [{"key": "b", "operator": "Exists"}],
        }
    }
    result = strategic_merge_patch(live, patch, "Pod")
    app, sidecar = result["spec"]["containers"]
    assert app["image"] == "nginx:2"
    assert app["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    assert sidecar == {"name": "sidecar", "image": "busybox"}
    assert result["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]  # no strategy: replaced
    assert live["spec"]["containers"][0]["image"] == "nginx:1"


def test_finalizers_merge_as_a_set_and_delete_from_primitive_list() -> None:
    live = {"metadata": {"name": "x", "finalizers": ["a", "b"]}}
    added = strategic_merge_patch(live, {"metadata": {"finalizers": ["b", "c"]}}, "ConfigMap")
    assert added["metadata"]["finalizers"] == ["a", "b", "c"]
    removed = strategic_merge_patch(
        added, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, "Secret"
    )
    assert removed["metadata"]["finalizers"] == ["b", "c"]


def test_status_conditions_merge_by_type() -> None:
    live = {
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "a", "ready": False}],
        }
    }
    patch = {"status": {"conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": []}}
    result = strategic_merge_patch(live, patch, "Pod")
    assert result["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "PodScheduled", "status": "True"},
    ]
    assert result["status"]["containerStatuses"] == []


def test_delete_directive_removes_a_container_and_a_volume() -> None:
    live = _pod(
        [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}], volumes=[{"name": "v", "emptyDir": {}}]
    )
    patch = {
        "spec": {
            "containers": [{"name": "a", "$patch": "delete"}],
            "volumes": [{"name": "v", "$patch": "delete"}],
        }
    }
    result = strategic_merge_patch(live, patch, "Pod")
    assert result["spec"]["containers"] == [{"name": "b", "image": "y"}]
    assert result["spec"]["volumes"] == []


def test_service_ports_merge_by_port() -> None:
    live = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}}
    result = strategic_merge_patch(live, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, "Service")
    assert result["spec"]["ports"] == [{"port": 80, "targetPort": 9090}, {"port": 443, "targetPort": 8443}]


# --------------------------------------------------------------------------------------------
# kubectl apply: the three-way patch applied by the server gives the new configuration
# --------------------------------------------------------------------------------------------


def _deployment(containers: list[dict], replicas: int = 2, labels: dict | None = None) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": labels or {"app": "web", "tier": "front"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}},
        },
    }


def _live(config: dict) -> dict:
    """What the server holds after creating ``config``: server-set fields added."""
    live = copy.deepcopy(config)
    live["metadata"].update({"uid": "u-1", "resourceVersion": "7", "generation": 1})
    live["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = "1"
    for container in live["spec"]["template"]["spec"]["containers"]:
        container.setdefault("imagePullPolicy", "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
    live["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    live["status"] = {
        "replicas": live["spec"]["replicas"],
        "conditions": [{"type": "Available", "status": "True"}],
    }
    return live


def _strip_server_fields(obj: dict) -> dict:
    out = copy.deepcopy(obj)
    for key in ("uid", "resourceVersion", "generation"):
        out["metadata"].pop(key, None)
    out["metadata"].get("annotations", {}).pop("deployment.kubernetes.io/revision", None)
    if not out["metadata"].get("annotations"):
        out["metadata"].pop("annotations", None)
    for container in out["spec"]["template"]["spec"]["containers"]:
        container.pop("imagePullPolicy", None)
        container.pop("terminationMessagePath", None)
    out["spec"]["template"]["spec"].pop("restartPolicy", None)
    out.pop("status", None)
    return out


APP = {"name": "app", "image": "nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
SIDECAR = {"name": "log", "image": "busybox", "args": ["tail"]}

APPLY_SCENARIOS = {
    "container added": (_deployment([APP]), _deployment([APP, SIDECAR])),
    "container removed": (_deployment([APP, SIDECAR]), _deployment([SIDECAR])),
    "container changed": (_deployment([APP]), _deployment([{**APP, "image": "nginx:2", "args": ["-g"]}])),
    "env removed": (_deployment([APP]), _deployment([{**APP, "env": [{"name": "B", "value": "2"}]}])),
    "env emptied": (_deployment([APP]), _deployment([{k: v for k, v in APP.items() if k != "env"}])),
    "label removed": (_deployment([APP]), _deployment([APP], labels={"app": "web"})),
    "replicas changed": (_deployment([APP]), _deployment([APP], replicas=5)),
    "containers reordered": (_deployment([APP, SIDECAR]), _deployment([SIDECAR, APP])),
}


@pytest.mark.parametrize("name", list(APPLY_SCENARIOS))
def test_three_way_patch_applied_by_the_server_yields_the_new_configuration(name: str) -> None:
    last_applied, new = APPLY_SCENARIOS[name]
    live = _live(last_applied)
    patch = create_three_way_merge_patch(last_applied, new, live, "Deployment", "apps/v1")
    result = strategic_merge_patch(live, patch, "Deployment", "apps/v1")
    assert _strip_server_fields(result) == new
    # Server-set fields survive.
    assert result["metadata"]["uid"] == "u-1"
    assert result["status"] == live["status"]
    assert all(
        c["imagePullPolicy"] == "IfNotPresent"
        for c in result["spec"]["template"]["spec"]["containers"]
        if any(c["name"] == o["name"] for o in last_applied["spec"]["template"]["spec"]["containers"])
    )


def test_three_way_patch_for_removed_container_and_env_uses_delete_directives() -> None:
    last_applied = _deployment([APP, SIDECAR])
    new = _deployment([{**APP, "env": [{"name": "B", "value": "2"}]}])
    patch = create_three_way_merge_patch(last_applied, new, _live(last_applied), "Deployment")
    assert patch == {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "app"}],
                    "containers": [
                        {
                            "name": "app",
                            "$setElementOrder/env": [{"name": "B"}],
                            "env": [{"name": "A", "$patch": "delete"}],
                        },
                        {"name": "log", "$patch": "delete"},
                    ],
                }
            }
        }
    }


def test_three_way_patch_keeps_fields_other_writers_set() -> None:
    last_applied = _deployment([APP])
    live = _live(last_applied)
    live["metadata"]["labels"]["added-by-hand"] = "yes"
    live["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "INJECTED", "value": "x"})
    patch = create_three_way_merge_patch(last_applied, _deployment([APP], replicas=3), live, "Deployment")
    # The live env list is longer than the configured one, so kubectl states the order it wants.
    assert patch == {
        "spec": {
            "replicas": 3,
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "app"}],
                    "containers": [{"name": "app", "$setElementOrder/env": [{"name": "A"}, {"name": "B"}]}],
                }
            },
        }
    }
    result = strategic_merge_patch(live, patch, "Deployment")
    assert result["spec"]["replicas"] == 3
    assert result["metadata"]["labels"]["added-by-hand"] == "yes"
    assert [e["name"] for e in result["spec"]["template"]["spec"]["containers"][0]["env"]] == [
        "A",
        "B",
        "INJECTED",
    ]


def test_three_way_patch_with_no_last_applied_never_deletes() -> None:
    live = _live(_deployment([APP, SIDECAR]))
    patch = create_three_way_merge_patch(None, _deployment([APP]), live, "Deployment")
    assert patch == {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "app"}]}}}}
    result = strategic_merge_patch(live, patch, "Deployment")
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["app", "log"]


def test_three_way_patch_switching_deployment_strategy_uses_retain_keys() -> None:
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}
    last_applied = _deployment([APP])
    last_applied["spec"]["strategy"] = rolling
    new = _deployment([APP])
    new["spec"]["strategy"] = {"type": "Recreate"}
    live = _live(last_applied)
    patch = create_three_way_merge_patch(last_applied, new, live, "Deployment")
    assert patch == {
        "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}
    }
    assert strategic_merge_patch(live, patch, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_finalizer_removed_from_configuration_goes_to_delete_from_primitive_list() -> None:
    last_applied: dict[str, Any] = {"metadata": {"name": "c", "finalizers": ["a", "b"]}, "data": {"k": "v"}}
    new = {"metadata": {"name": "c", "finalizers": ["b"]}, "data": {"k": "v"}}
    live = copy.deepcopy(last_applied)
    live["metadata"]["finalizers"].append("server")
    patch = create_three_way_merge_patch(last_applied, new, live, "ConfigMap")
    assert patch == {
        "metadata": {"$setElementOrder/finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"]}
    }
    assert strategic_merge_patch(live, patch, "ConfigMap")["metadata"]["finalizers"] == ["b", "server"]


def test_two_way_patch_for_a_kind() -> None:
    original = _pod([{"name": "a", "image": "x"}])
    modified = _pod([{"name": "a", "image": "y"}, {"name": "b", "image": "z"}])
    patch = create_two_way_merge_patch(original, modified, "Pod")
    assert patch == {
        "spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "y"}, {"name": "b", "image": "z"}],
        }
    }
    assert strategic_merge_patch(original, patch, "Pod") == modified
