"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902), with the RFCs' appendix examples."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from apimachinery import errors
from apiserver.patch import MAX_JSON_PATCH_OPERATIONS, json_merge_patch, json_patch

# RFC 7386, Appendix A: (original, patch, result)
RFC7386_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "expected"), RFC7386_EXAMPLES)
def test_rfc7386_appendix_examples(original: Any, patch: Any, expected: Any) -> None:
    before = (copy.deepcopy(original), copy.deepcopy(patch))
    assert json_merge_patch(original, patch) == expected
    assert (original, patch) == before


def test_merge_patch_result_shares_nothing_with_its_inputs() -> None:
    original: dict[str, Any] = {"spec": {"containers": [{"name": "a"}]}, "metadata": {"labels": {"x": "1"}}}
    patch: dict[str, Any] = {"metadata": {"labels": {"y": "2"}}, "data": {"k": ["v"]}}
    result = json_merge_patch(original, patch)
    result["spec"]["containers"][0]["name"] = "changed"
    result["data"]["k"].append("w")
    assert original["spec"]["containers"][0]["name"] == "a"
    assert patch["data"]["k"] == ["v"]


# RFC 6902, Appendix A: (document, patch, result); result None means the patch fails (422).
RFC6902_EXAMPLES: list[tuple[str, Any, list, Any]] = [
    (
        "A.1 add an object member",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux"}],
        {"baz": "qux", "foo": "bar"},
    ),
    (
        "A.2 add an array element",
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    (
        "A.3 remove an object member",
        {"baz": "qux", "foo": "bar"},
        [{"op": "remove", "path": "/baz"}],
        {"foo": "bar"},
    ),
    (
        "A.4 remove an array element",
        {"foo": ["bar", "qux", "baz"]},
        [{"op": "remove", "path": "/foo/1"}],
        {"foo": ["bar", "baz"]},
    ),
    (
        "A.5 replace a value",
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        "A.6 move a value",
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        "A.7 move an array element",
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        "A.8 test a value: success",
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    ("A.9 test a value: error", {"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], None),
    (
        "A.10 add a nested member object",
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        "A.11 ignore unrecognized elements",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
    ),
    (
        "A.12 add to a nonexistent target",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz/bat", "value": "qux"}],
        None,
    ),
    (
        "A.14 ~ escape ordering",
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": 10}],
        {"/": 9, "~1": 10},
    ),
    (
        "A.15 comparing strings and numbers",
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": "10"}],
        None,
    ),
    (
        "A.16 add an array value",
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
    ("~1 escapes a slash", {"a/b": 1}, [{"op": "replace", "path": "/a~1b", "value": 2}], {"a/b": 2}),
    ("add at the end index", {"a": [1]}, [{"op": "add", "path": "/a/1", "value": 2}], {"a": [1, 2]}),
    ("add past the end", {"a": [1]}, [{"op": "add", "path": "/a/2", "value": 2}], None),
    ("remove past the end", {"a": [1]}, [{"op": "remove", "path": "/a/1"}], None),
    ("leading zero index", {"a": [1, 2]}, [{"op": "remove", "path": "/a/01"}], None),
    ("replace a missing key", {"a": 1}, [{"op": "replace", "path": "/b", "value": 2}], None),
    ("remove a missing key", {"a": 1}, [{"op": "remove", "path": "/b"}], None),
    (
        "copy a value",
        {"a": {"x": [1]}},
        [{"op": "copy", "from": "/a", "path": "/b"}],
        {"a": {"x": [1]}, "b": {"x": [1]}},
    ),
    ("move into its own child", {"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/c"}], None),
    ("replace the whole document", {"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2}),
    ("test a boolean against a number", {"a": True}, [{"op": "test", "path": "/a", "value": 1}], None),
    (
        "test an object regardless of key order",
        {"a": {"x": 1, "y": [1.0]}},
        [{"op": "test", "path": "/a", "value": {"y": [1], "x": 1}}],
        {"a": {"x": 1, "y": [1.0]}},
    ),
    ("unknown op", {"a": 1}, [{"op": "frobnicate", "path": "/a"}], None),
    ("missing value", {"a": 1}, [{"op": "add", "path": "/b"}], None),
    ("missing path", {"a": 1}, [{"op": "remove"}], None),
    ("pointer without a slash", {"a": 1}, [{"op": "remove", "path": "a"}], None),
]


@pytest.mark.parametrize(
    ("document", "operations", "expected"),
    [case[1:] for case in RFC6902_EXAMPLES],
    ids=[case[0] for case in RFC6902_EXAMPLES],
)
def test_rfc6902_examples(document: Any, operations: list, expected: Any) -> None:
    before = (copy.deepcopy(document), copy.deepcopy(operations))
    if expected is None:
        with pytest.raises(errors.Invalid) as info:
            json_patch(document, operations)
        assert info.value.code == 422
        assert info.value.message == "the server rejected our request due to an error in our request"
        assert info.value.causes and info.value.causes[0]["message"]
    else:
        assert json_patch(document, operations) == expected
    assert (document, operations) == before


def test_a_failing_operation_leaves_no_partial_changes() -> None:
    document = {"metadata": {"labels": {"a": "1"}}}
    with pytest.raises(errors.Invalid):
        json_patch(
            document,
            [
                {"op": "add", "path": "/metadata/labels/b", "value": "2"},
                {"op": "test", "path": "/metadata/labels/a", "value": "other"},
            ],
        )
    assert document == {"metadata": {"labels": {"a": "1"}}}


def test_added_values_are_copies() -> None:
    value = {"k": ["v"]}
    result = json_patch({}, [{"op": "add", "path": "/x", "value": value}])
    result["x"]["k"].append("w")
    assert value == {"k": ["v"]}


@pytest.mark.parametrize("operations", [{"op": "add"}, [1], ["add"], "[]"])
def test_undecodable_json_patch_is_a_bad_request(operations: Any) -> None:
    with pytest.raises(errors.BadRequest):
        json_patch({}, operations)


def test_too_many_operations_is_413() -> None:
    operations = [{"op": "test", "path": "", "value": {}}] * (MAX_JSON_PATCH_OPERATIONS + 1)
    with pytest.raises(errors.RequestEntityTooLarge):
        json_patch({}, operations)
