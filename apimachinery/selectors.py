"""Label and field selectors, as the API server and kubectl understand them.

Label selectors come in two shapes:

* the string form of ``?labelSelector=`` and ``kubectl -l``: ``app=web,tier in (a,b),!canary``,
  parsed by :func:`parse_label_selector` exactly like apimachinery's ``labels.Parse``;
* the ``metav1.LabelSelector`` object inside specs (``matchLabels`` / ``matchExpressions``),
  converted by :func:`selector_from_dict`.  Note the asymmetry Kubernetes defines there: an
  *empty* selector object ``{}`` matches every object, while a *missing* selector (``None``)
  matches nothing.

Field selectors (``?fieldSelector=spec.nodeName=node-1``) only support a fixed set of fields per
kind (:func:`supported_fields`), and only ``=``, ``==`` and ``!=``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from apimachinery import errors

log = logging.getLogger(__name__)

# selection.Operator values, as apimachinery names them.
EQUALS = "="
DOUBLE_EQUALS = "=="
NOT_EQUALS = "!="
IN = "in"
NOT_IN = "notin"
EXISTS = "exists"
DOES_NOT_EXIST = "!"
GREATER_THAN = "gt"
LESS_THAN = "lt"

_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)

# ---------------------------------------------------------------------------------------------
# Name and value syntax (k8s.io/apimachinery/pkg/util/validation), shared with validation.py.
# ---------------------------------------------------------------------------------------------

_QNAME_CHAR = "[A-Za-z0-9]"
_QNAME_EXT_CHAR = "[-A-Za-z0-9_.]"
QUALIFIED_NAME_FMT = f"({_QNAME_CHAR}{_QNAME_EXT_CHAR}*)?{_QNAME_CHAR}"
_QUALIFIED_NAME_ERR = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
LABEL_VALUE_FMT = f"({QUALIFIED_NAME_FMT})?"
_LABEL_VALUE_ERR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_ERR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character"
)
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_ERR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)

_QUALIFIED_NAME_RE = re.compile(f"^{QUALIFIED_NAME_FMT}$")
_LABEL_VALUE_RE = re.compile(f"^{LABEL_VALUE_FMT}$")
_DNS1123_LABEL_RE = re.compile(f"^{DNS1123_LABEL_FMT}$")
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}$")


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """Kubernetes' ``RegexError``: the message, examples and the regex (note the doubled spaces)."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    out = msg + " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            out += " or "
        out += f"'{example}', "
    return out + f"regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def is_dns1123_label(value: str) -> list[str]:
    """Errors for a DNS-1123 label (namespace names, container names); empty when valid."""
    errs: list[str] = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1123_LABEL_RE.match(value):
        if _DNS1123_SUBDOMAIN_RE.match(value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(_DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def pattern_errors(
    value: str, max_length: int | None, pattern: re.Pattern[str], msg: str, fmt: str, *examples: str
) -> list[str]:
    """What Kubernetes' string checks report: longer than ``max_length``, or not matching
    ``pattern`` (the :func:`regex_error` of ``msg``, ``fmt`` and ``examples``)."""
    errs = [max_len_error(max_length)] if max_length is not None and len(value) > max_length else []
    if not pattern.match(value):
        errs.append(regex_error(msg, fmt, *examples))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    """Errors for a DNS-1123 subdomain (most object names); empty when valid."""
    return pattern_errors(
        value, 253, _DNS1123_SUBDOMAIN_RE, _DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, "example.com"
    )


def is_qualified_name(value: str) -> list[str]:
    """Errors for a qualified name (label keys, annotation keys): ``[prefix/]name``."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + regex_error(_QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _QUALIFIED_NAME_RE.match(name):
        errs.append(
            "name part "
            + regex_error(_QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def is_valid_label_value(value: str) -> list[str]:
    """Errors for a label value (may be empty, at most 63 characters)."""
    examples = ("MyValue", "my_value", "12345")
    return pattern_errors(value, 63, _LABEL_VALUE_RE, _LABEL_VALUE_ERR, LABEL_VALUE_FMT, *examples)


def go_quote(value: str) -> str:
    """Quote a string as Go's ``%q`` does (close enough for error messages)."""
    return json.dumps(value, ensure_ascii=False)


def _field_invalid(path: str, value: Any, detail: str) -> str:
    if isinstance(value, str):
        shown = go_quote(value)
    elif isinstance(value, list):
        shown = "[]string{" + ", ".join(go_quote(str(v)) for v in value) + "}"
    else:
        shown = str(value)
    return f"{path}: Invalid value: {shown}: {detail}"


# ---------------------------------------------------------------------------------------------
# Label selectors
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: ``key <operator> values``."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            if self.key not in labels or len(self.values) != 1:
                return False
            try:
                have, want = int(labels[self.key]), int(self.values[0])
            except ValueError:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        prefix = "!" if self.operator == DOES_NOT_EXIST else ""
        if self.operator in (EXISTS, DOES_NOT_EXIST):
            return prefix + self.key
        values = ",".join(sorted(self.values)) if len(self.values) > 1 else "".join(self.values)
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({values})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{values}"


def new_requirement(key: str, operator: str, values: Iterable[str]) -> Requirement:
    """Build a requirement, validating it as ``labels.NewRequirement`` does (``ValueError`` if not)."""
    vals = list(values)
    errs: list[str] = []
    key_errs = is_qualified_name(key)
    if key_errs:
        errs.append(_field_invalid("key", key, "; ".join(key_errs)))
    if operator in (IN, NOT_IN):
        if not vals:
            errs.append(
                _field_invalid("values", vals, "for 'in', 'notin' operators, values set can't be empty")
            )
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(vals) != 1:
            errs.append(_field_invalid("values", vals, "exact-match compatibility requires one single value"))
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if vals:
            errs.append(
                _field_invalid("values", vals, "values set must be empty for exists and does not exist")
            )
    elif operator in (GREATER_THAN, LESS_THAN):
        if len(vals) != 1:
            errs.append(
                _field_invalid("values", vals, "for 'Gt', 'Lt' operators, exactly one value is required")
            )
        for i, v in enumerate(vals):
            if not re.fullmatch(r"[+-]?[0-9]+", v):
                errs.append(
                    _field_invalid(
                        f"values[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer"
                    )
                )
    else:
        errs.append(
            f'operator: Unsupported value: {go_quote(operator)}: supported values: "in", "notin", "=", "==", "!=", "gt", "lt", "exists", "!"'
        )
    for i, v in enumerate(vals):
        value_errs = is_valid_label_value(v)
        if value_errs:
            errs.append(_field_invalid(f"values[{i}][{key}]", v, "; ".join(value_errs)))
    if errs:
        raise ValueError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
    return Requirement(key, operator, tuple(vals))


class LabelSelector:
    """A parsed label selector: requirements that must all hold.

    ``LabelSelector()`` matches everything; ``LabelSelector.nothing()`` matches nothing (what a
    missing ``metav1.LabelSelector`` means).
    """

    def __init__(self, requirements: Iterable[Requirement] = (), *, match_nothing: bool = False) -> None:
        self.requirements: tuple[Requirement, ...] = tuple(sorted(requirements, key=lambda r: r.key))
        self.match_nothing = match_nothing

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls()

    @classmethod
    def nothing(cls) -> LabelSelector:
        return cls(match_nothing=True)

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (matches every object)."""
        return not self.match_nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.match_nothing:
            return False
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)

    def requires_exact_match(self, key: str) -> str | None:
        """The single value ``key`` must have, if the selector pins it (``app=web``), else None."""
        for r in self.requirements:
            if r.key == key:
                if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        if self.match_nothing:
            return "LabelSelector.nothing()"
        return f"LabelSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelSelector):
            return NotImplemented
        return self.requirements == other.requirements and self.match_nothing == other.match_nothing

    def __hash__(self) -> int:
        return hash((self.requirements, self.match_nothing))


# --- the string parser (a port of apimachinery's labels.Parser) -------------------------------

_ERROR, _EOS, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _IDENT, _IN, _LT, _NEQ, _NOTIN, _OPEN = range(14)
_TOKENS = {
    ")": _CLOSE,
    ",": _COMMA,
    "!": _NOT,
    "==": _DEQ,
    "=": _EQ,
    ">": _GT,
    "in": _IN,
    "<": _LT,
    "!=": _NEQ,
    "notin": _NOTIN,
    "(": _OPEN,
}
_SPECIAL = set("=!(),><")
_WHITESPACE = set(" \t\r\n")


def _lex(text: str) -> list[tuple[int, str]]:
    items: list[tuple[int, str]] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            items.append((_EOS, ""))
            return items
        if text[pos] in _SPECIAL:
            buf, last_tok, last_lit = "", _ERROR, ""
            while pos < n and text[pos] in _SPECIAL:
                buf += text[pos]
                if buf in _TOKENS:
                    last_tok, last_lit = _TOKENS[buf], buf
                    pos += 1
                elif last_tok != _ERROR:
                    break
                else:
                    pos += 1
            if last_tok == _ERROR:
                items.append((_ERROR, f"error expected: keyword found '{buf}'"))
            else:
                items.append((last_tok, last_lit))
            continue
        start = pos
        while pos < n and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
            pos += 1
        word = text[start:pos]
        items.append((_TOKENS.get(word, _IDENT), word))


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def _token(self, index: int, values: bool) -> tuple[int, str]:
        tok, lit = self.items[min(index, len(self.items) - 1)]
        if values and tok in (_IN, _NOTIN):
            tok = _IDENT
        return tok, lit

    def lookahead(self, values: bool = True) -> tuple[int, str]:
        return self._token(self.pos, values)

    def consume(self, values: bool = True) -> tuple[int, str]:
        item = self._token(self.pos, values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in (_IDENT, _NOT):
                try:
                    requirements.append(self.parse_requirement())
                except ValueError as exc:
                    raise ValueError(f"unable to parse requirement: {exc}") from None
                t, lit2 = self.consume()
                if t == _EOS:
                    return requirements
                if t == _COMMA:
                    t2, l2 = self.lookahead()
                    if t2 not in (_IDENT, _NOT):
                        raise ValueError(f"found '{l2}', expected: identifier after ','")
                else:
                    raise ValueError(f"found '{lit2}', expected: ',' or 'end of string'")
            elif tok == _EOS:
                return requirements
            else:
                raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def parse_requirement(self) -> Requirement:
        operator = ""
        tok, key = self.consume()
        if tok == _NOT:
            operator = DOES_NOT_EXIST
            tok, key = self.consume()
        if tok != _IDENT:
            raise ValueError(f"found '{key}', expected: identifier")
        key_errs = is_qualified_name(key)
        if key_errs:
            raise ValueError(_field_invalid("<nil>", key, "; ".join(key_errs)))
        if operator == DOES_NOT_EXIST or self.lookahead()[0] in (_EOS, _COMMA):
            # "!key" never takes an operator: whatever follows it is reported by the caller.
            return new_requirement(key, operator or EXISTS, [])
        op = self.parse_operator()
        if op in (IN, NOT_IN):
            values = self.parse_values()
        else:
            values = self.parse_exact_value()
        return new_requirement(key, op, sorted(values))

    def parse_operator(self) -> str:
        tok, lit = self.consume(values=False)
        ops = {
            _IN: IN,
            _EQ: EQUALS,
            _DEQ: DOUBLE_EQUALS,
            _GT: GREATER_THAN,
            _LT: LESS_THAN,
            _NOTIN: NOT_IN,
            _NEQ: NOT_EQUALS,
        }
        if tok not in ops:
            raise ValueError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        return ops[tok]

    def parse_values(self) -> set[str]:
        tok, lit = self.consume()
        if tok != _OPEN:
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok in (_IDENT, _COMMA):
            values = self.parse_identifiers_list()
            if self.consume()[0] != _CLOSE:
                raise ValueError(f"found '{lit}', expected: ')'")
            return values
        if tok == _CLOSE:
            self.consume()
            return {""}
        raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")

    def parse_identifiers_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == _IDENT:
                values.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSE:
                    return values
                raise ValueError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:
                if not values:
                    values.add("")
                tok2, _ = self.lookahead()
                if tok2 == _CLOSE:
                    values.add("")
                    return values
                if tok2 == _COMMA:
                    values.add("")
                continue
            raise ValueError(f"found '{lit}', expected: ',', or identifier")

    def parse_exact_value(self) -> set[str]:
        tok, _ = self.lookahead()
        if tok in (_EOS, _COMMA):
            return {""}
        tok, lit = self.consume()
        if tok == _IDENT:
            return {lit}
        raise ValueError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the string form of a label selector; ``errors.BadRequest`` when malformed.

    ``""`` (or None) gives a selector that matches everything.
    """
    if not text:
        return LabelSelector()
    try:
        return LabelSelector(_Parser(text).parse())
    except ValueError as exc:
        raise errors.BadRequest(str(exc)) from None


def selector_from_dict(sel: Mapping[str, Any] | None) -> LabelSelector:
    """Convert a ``metav1.LabelSelector`` (``matchLabels``/``matchExpressions``).

    Kubernetes semantics (``metav1.LabelSelectorAsSelector``): ``None`` matches **nothing**, an
    empty selector ``{}`` matches **everything**.  Invalid selectors raise ``errors.BadRequest``.
    """
    if sel is None:
        return LabelSelector.nothing()
    match_labels = sel.get("matchLabels") or {}
    expressions = sel.get("matchExpressions") or []
    if not match_labels and not expressions:
        return LabelSelector()
    ops = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}
    requirements: list[Requirement] = []
    try:
        for key, value in match_labels.items():
            requirements.append(new_requirement(str(key), EQUALS, [str(value)]))
        for expr in expressions:
            op = expr.get("operator")
            if op not in ops:
                raise ValueError(f"{go_quote(str(op))} is not a valid label selector operator")
            values = [str(v) for v in (expr.get("values") or [])]
            requirements.append(new_requirement(str(expr.get("key", "")), ops[op], values))
    except ValueError as exc:
        raise errors.BadRequest(str(exc)) from None
    return LabelSelector(requirements)


def selector_to_string(sel: Mapping[str, Any] | None) -> str:
    """Print a ``metav1.LabelSelector`` as kubectl does (``metav1.FormatLabelSelector``).

    ``{"matchLabels": {"app": "web"}}`` -> ``"app=web"``; an empty or missing selector -> ``"<none>"``.
    """
    try:
        text = str(selector_from_dict(sel))
    except errors.StatusError:
        return "<error>"
    return text or "<none>"


def selector_from_set(labels: Mapping[str, str] | None) -> LabelSelector:
    """A selector requiring exactly these labels (an empty set matches everything)."""
    return LabelSelector(Requirement(k, EQUALS, (v,)) for k, v in (labels or {}).items())


# ---------------------------------------------------------------------------------------------
# Field selectors
# ---------------------------------------------------------------------------------------------

_META = frozenset({"metadata.name", "metadata.namespace"})

_FIELDS: dict[str, frozenset[str]] = {
    "Pod": _META
    | {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.podIPs",
        "status.nominatedNodeName",
    },
    "Event": _META
    | {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
    "Secret": _META | {"type"},
    "Service": _META | {"spec.clusterIP", "spec.type"},
    # Namespace and Node have their own conversion functions that leave metadata.namespace out.
    "Namespace": frozenset({"metadata.name", "status.phase"}),
    "Node": frozenset({"metadata.name", "spec.unschedulable"}),
    "ReplicaSet": _META | {"status.replicas"},
    "ReplicationController": _META | {"status.replicas"},
    "Job": _META | {"status.successful"},
}

# Field -> how to read it from the object, when it is not simply the dotted path.
_BOOL_FIELDS = {"spec.hostNetwork", "spec.unschedulable"}
_INT_FIELDS = {"status.replicas"}


def supported_fields(kind: str) -> set[str]:
    """The fields a ``fieldSelector`` may name for ``kind`` (every other kind: name and namespace)."""
    return set(_FIELDS.get(kind, _META))


def _dig(obj: Mapping[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _go_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_value(kind: str, obj: Mapping[str, Any], field: str) -> str:
    """The string a field selector compares for ``field`` of ``obj`` (missing values read as "")."""
    if kind == "Event" and field == "source":
        return _go_string(_dig(obj, "source.component"))
    if kind == "Event" and field == "reportingComponent":
        return _go_string(obj.get("reportingComponent"))
    if kind == "Job" and field == "status.successful":
        return str(int(_dig(obj, "status.succeeded") or 0))
    if kind == "Pod" and field == "status.podIPs":
        ips = _dig(obj, "status.podIPs") or []
        return ",".join(str(ip.get("ip", "")) for ip in ips if isinstance(ip, Mapping))
    value = _dig(obj, field)
    if field in _BOOL_FIELDS:
        return "true" if value else "false"
    if field in _INT_FIELDS:
        return str(int(value or 0))
    return _go_string(value)


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str  # "=", "==" or "!="
    value: str

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        return f"{self.field}{self.operator}{escaped}"


class FieldSelector:
    """A parsed field selector bound to one kind."""

    def __init__(self, kind: str, requirements: Iterable[FieldRequirement] = ()) -> None:
        self.kind = kind
        self.requirements: tuple[FieldRequirement, ...] = tuple(requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for r in self.requirements:
            have = field_value(self.kind, obj, r.field)
            if (have == r.value) == (r.operator == NOT_EQUALS):
                return False
        return True

    def requires_exact_match(self, field: str) -> str | None:
        """The value ``field`` must equal (``metadata.name=x`` lets a list become a get)."""
        for r in self.requirements:
            if r.field == field and r.operator in (EQUALS, DOUBLE_EQUALS):
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"FieldSelector({self.kind!r}, {str(self)!r})"


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not escaped with a backslash."""
    terms: list[str] = []
    start, escaped = 0, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in (NOT_EQUALS, DOUBLE_EQUALS, EQUALS):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def _unescape(value: str) -> str:
    if "\\" not in value and "," not in value and "=" not in value:
        return value
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise ValueError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise ValueError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise ValueError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def parse_field_selector(text: str | None, kind: str) -> FieldSelector:
    """Parse ``?fieldSelector=`` for ``kind``; ``errors.BadRequest`` on bad syntax or fields.

    Unsupported fields give Kubernetes' message ``field label not supported: <field>``.
    The Pod field ``spec.host`` is the old spelling of ``spec.nodeName``, accepted as Kubernetes does.
    """
    if not text:
        return FieldSelector(kind)
    allowed = supported_fields(kind)
    requirements: list[FieldRequirement] = []
    for part in sorted(_split_terms(text)):
        if part == "":
            continue
        split = _split_term(part)
        if split is None:
            raise errors.BadRequest(f"invalid selector: '{text}'; can't understand '{part}'")
        lhs, op, rhs = split
        try:
            value = _unescape(rhs)
        except ValueError as exc:
            raise errors.BadRequest(str(exc)) from None
        if kind == "Pod" and lhs == "spec.host":
            lhs = "spec.nodeName"
        if lhs not in allowed:
            raise errors.BadRequest(f"field label not supported: {lhs}")
        requirements.append(FieldRequirement(lhs, op, value))
    return FieldSelector(kind, requirements)
