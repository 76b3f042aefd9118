"""Label and field selectors with Kubernetes' parsing rules, semantics and error messages."""

import pytest

from apimachinery import errors
from apimachinery.selectors import (
    FieldSelector,
    LabelSelector,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    parse_field_selector,
    parse_label_selector,
    selector_from_dict,
    selector_from_set,
    selector_to_string,
    supported_fields,
)

LABELS = {"app": "web", "tier": "front", "env": "prod", "n": "5"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("missing!=x", True),
        ("tier in (front,back)", True),
        ("tier in (back)", False),
        ("tier notin (back)", True),
        ("tier notin (front)", False),
        ("missing notin (x)", True),
        ("missing in (x)", False),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("  app = web ,  tier in ( front , back )  ", True),
        ("n>3", True),
        ("n<3", False),
        ("app>3", False),
    ],
)
def test_label_selector_matches(text: str, matches: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is matches


def test_empty_string_matches_everything_including_no_labels() -> None:
    sel = parse_label_selector("")
    assert sel.empty
    assert sel.matches(None)
    assert sel.matches({})


def test_matches_none_labels() -> None:
    assert parse_label_selector("!app").matches(None)
    assert not parse_label_selector("app").matches(None)


def test_selector_string_is_sorted_and_normalized() -> None:
    sel = parse_label_selector("tier in (b,a), app=web, !canary")
    assert str(sel) == "app=web,!canary,tier in (a,b)"
    assert not sel.empty


def test_empty_values_are_allowed() -> None:
    sel = parse_label_selector("a in (x,,y)")
    assert sel.matches({"a": ""})
    assert parse_label_selector("a=").matches({"a": ""})
    assert not parse_label_selector("a=").matches({"a": "x"})


def test_in_and_notin_are_values_in_value_position() -> None:
    assert parse_label_selector("a in (in,notin)").matches({"a": "notin"})


def test_prefixed_keys() -> None:
    sel = parse_label_selector("app.kubernetes.io/name=web")
    assert sel.matches({"app.kubernetes.io/name": "web"})


def test_requires_exact_match() -> None:
    assert parse_label_selector("app=web,tier in (a,b)").requires_exact_match("app") == "web"
    assert parse_label_selector("app=web,tier in (a,b)").requires_exact_match("tier") is None
    assert parse_label_selector("app!=web").requires_exact_match("app") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a,", "found '', expected: identifier after ','"),
        ("=b", "found '=', expected: !, identifier, or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a in x", "unable to parse requirement: found 'x' expected: '('"),
        ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'"),
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=(", "unable to parse requirement: found '(', expected: identifier"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(errors.BadRequest) as exc:
        parse_label_selector(text)
    assert exc.value.message == message
    assert exc.value.code == 400


def test_invalid_key_message() -> None:
    with pytest.raises(errors.BadRequest) as exc:
        parse_label_selector("-bad=x")
    assert exc.value.message.startswith(
        'unable to parse requirement: <nil>: Invalid value: "-bad": name part must'
    )


def test_invalid_value_message() -> None:
    with pytest.raises(errors.BadRequest) as exc:
        parse_label_selector("app=-bad-")
    assert exc.value.message.startswith(
        'unable to parse requirement: values[0][app]: Invalid value: "-bad-": a valid label must be an empty string'
    )


def test_value_too_long() -> None:
    with pytest.raises(errors.BadRequest) as exc:
        parse_label_selector("app=" + "x" * 64)
    assert "must be no more than 63 characters" in exc.value.message


# --- metav1.LabelSelector ------------------------------------------------------------------


def test_none_selector_matches_nothing() -> None:
    sel = selector_from_dict(None)
    assert not sel.matches({})
    assert not sel.matches(LABELS)
    assert not sel.empty


def test_empty_selector_matches_everything() -> None:
    sel = selector_from_dict({})
    assert sel.empty
    assert sel.matches({})
    assert selector_from_dict({"matchLabels": {}, "matchExpressions": []}).matches(LABELS)


def test_match_labels_and_expressions() -> None:
    sel = selector_from_dict(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "n", "operator": "Exists"},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        }
    )
    assert sel.matches(LABELS)
    assert not sel.matches({**LABELS, "canary": "1"})
    assert not sel.matches({**LABELS, "env": "dev"})
    assert not sel.matches({"app": "web"})


def test_bad_operator_in_dict() -> None:
    with pytest.raises(errors.BadRequest) as exc:
        selector_from_dict({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})
    assert exc.value.message == '"Gt" is not a valid label selector operator'


def test_in_without_values_is_rejected() -> None:
    with pytest.raises(errors.BadRequest) as exc:
        selector_from_dict({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})
    assert "for 'in', 'notin' operators, values set can't be empty" in exc.value.message


@pytest.mark.parametrize(
    ("sel", "text"),
    [
        ({"matchLabels": {"app": "web"}}, "app=web"),
        (
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}],
            },
            "app=web,tier in (a,b)",
        ),
        ({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, "!x"),
        ({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, "x"),
        ({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["a"]}]}, "x notin (a)"),
        ({}, "<none>"),
        (None, "<none>"),
        ({"matchExpressions": [{"key": "x", "operator": "Bogus"}]}, "<error>"),
    ],
)
def test_selector_to_string(sel: dict | None, text: str) -> None:
    assert selector_to_string(sel) == text


def test_selector_from_set() -> None:
    sel = selector_from_set({"b": "2", "a": "1"})
    assert str(sel) == "a=1,b=2"
    assert sel.matches({"a": "1", "b": "2", "c": "3"})
    assert not sel.matches({"a": "1"})
    assert selector_from_set(None).empty


def test_label_selector_equality() -> None:
    assert parse_label_selector("a=1,b=2") == parse_label_selector("b=2,a=1")
    assert LabelSelector.nothing() != LabelSelector.everything()


# --- name syntax -------------------------------------------------------------------------------


def test_dns1123_label() -> None:
    assert is_dns1123_label("my-name") == []
    assert is_dns1123_label("a.b") == ["must not contain dots"]
    assert is_dns1123_label("x" * 64)[0] == "must be no more than 63 characters"
    assert is_dns1123_label("Bad") == [
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
        "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
        "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    ]


def test_dns1123_subdomain() -> None:
    assert is_dns1123_subdomain("example.com") == []
    assert is_dns1123_subdomain("x" * 254)[0] == "must be no more than 253 characters"
    assert is_dns1123_subdomain("-x") == [
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
        "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    ]


def test_qualified_name() -> None:
    assert is_qualified_name("app.kubernetes.io/name") == []
    assert is_qualified_name("MyName") == []
    assert is_qualified_name("/name") == ["prefix part must be non-empty"]
    errs = is_qualified_name("a/b/c")
    assert len(errs) == 1 and errs[0].startswith("a qualified name must consist of")
    assert errs[0].endswith("with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")
    assert is_qualified_name("x" * 64) == ["name part must be no more than 63 characters"]
    assert is_qualified_name("Bad.Prefix/x")[0].startswith("prefix part a lowercase RFC 1123 subdomain")


def test_label_value() -> None:
    assert is_valid_label_value("") == []
    assert is_valid_label_value("my_value.1") == []
    assert is_valid_label_value("-x")[0].startswith("a valid label must be an empty string")


# --- field selectors -----------------------------------------------------------------------------

POD = {
    "metadata": {"name": "web-1", "namespace": "default"},
    "spec": {"restartPolicy": "Always", "hostNetwork": True, "schedulerName": "default-scheduler"},
    "status": {"phase": "Running", "podIP": "10.0.0.5"},
}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("metadata.name=web-1", True),
        ("metadata.name==web-1", True),
        ("metadata.name!=web-1", False),
        ("metadata.namespace=default", True),
        ("status.phase=Running,metadata.name=web-1", True),
        ("status.phase=Running,metadata.name=web-2", False),
        ("spec.nodeName=", True),  # unscheduled pods have nodeName ""
        ("spec.nodeName!=", False),
        ("spec.hostNetwork=true", True),
        ("status.podIP=10.0.0.5", True),
        ("spec.restartPolicy=Never", False),
        ("spec.host=", True),  # the old name of spec.nodeName
        ("", True),
    ],
)
def test_pod_field_selector(text: str, matches: bool) -> None:
    assert parse_field_selector(text, "Pod").matches(POD) is matches


def test_unsupported_field_error() -> None:
    with pytest.raises(errors.BadRequest) as exc:
        parse_field_selector("status.hostIP=1.2.3.4", "Pod")
    assert exc.value.message == "field label not supported: status.hostIP"


def test_malformed_field_selector() -> None:
    with pytest.raises(errors.BadRequest) as exc:
        parse_field_selector("metadata.name", "Pod")
    assert exc.value.message == "invalid selector: 'metadata.name'; can't understand 'metadata.name'"


def test_escaped_values() -> None:
    sel = parse_field_selector(r"metadata.name=a\,b", "ConfigMap")
    assert sel.matches({"metadata": {"name": "a,b"}})
    assert str(sel) == r"metadata.name=a\,b"
    with pytest.raises(errors.BadRequest):
        parse_field_selector(r"metadata.name=a\x", "ConfigMap")


def test_node_and_namespace_fields() -> None:
    assert supported_fields("Node") == {"metadata.name", "spec.unschedulable"}
    assert supported_fields("Namespace") == {"metadata.name", "status.phase"}
    with pytest.raises(errors.BadRequest):
        parse_field_selector("metadata.namespace=x", "Node")
    node = {"metadata": {"name": "n1"}, "spec": {}}
    assert parse_field_selector("spec.unschedulable=false", "Node").matches(node)
    assert not parse_field_selector("spec.unschedulable=true", "Node").matches(node)


def test_event_fields() -> None:
    event = {
        "metadata": {"name": "e", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u1"},
        "reason": "Scheduled",
        "type": "Normal",
        "source": {"component": "default-scheduler"},
        "reportingComponent": "default-scheduler",
    }
    sel = parse_field_selector(
        "involvedObject.kind=Pod,involvedObject.name=web-1,source=default-scheduler", "Event"
    )
    assert sel.matches(event)
    assert parse_field_selector("type=Normal,reason=Scheduled,involvedObject.uid=u1", "Event").matches(event)
    assert not parse_field_selector("type=Warning", "Event").matches(event)


def test_other_kinds_fields() -> None:
    assert parse_field_selector("type=Opaque", "Secret").matches({"metadata": {}, "type": "Opaque"})
    assert parse_field_selector("status.replicas=0", "ReplicaSet").matches({"metadata": {}})
    assert parse_field_selector("status.successful=2", "Job").matches({"status": {"succeeded": 2}})
    assert parse_field_selector("spec.type=ClusterIP", "Service").matches({"spec": {"type": "ClusterIP"}})
    assert supported_fields("ConfigMap") == {"metadata.name", "metadata.namespace"}
    with pytest.raises(errors.BadRequest) as exc:
        parse_field_selector("spec.replicas=1", "Deployment")
    assert exc.value.message == "field label not supported: spec.replicas"


def test_field_selector_exact_match() -> None:
    sel = parse_field_selector("metadata.name=web", "Pod")
    assert isinstance(sel, FieldSelector)
    assert sel.requires_exact_match("metadata.name") == "web"
    assert sel.requires_exact_match("spec.nodeName") is None
    assert not sel.empty
