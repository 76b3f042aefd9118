"""kubectl's JSONPath templates (``-o jsonpath=...``).

Supported: text with ``{...}`` actions; ``.field``, ``['field']``, ``[n]``, ``[start:end]``,
``[*]``, ``..field`` (recursive), filters ``[?(@.a.b == "x")]`` (``==``, ``!=``, ``<``, ``>``,
``<=``, ``>=``, or just ``@.field`` for existence), unions ``[a,b]``, ``{range ...}{end}`` and
quoted literals ``{"\\n"}``.  As in kubectl, several results of one action are separated by a
space, maps and lists print as JSON, and a missing field is an error unless
``--allow-missing-template-keys`` (the default) is in effect, which prints nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

_MISSING = object()


class JSONPathError(ValueError):
    pass


def _split_template(template: str) -> list[tuple[str, str]]:
    """Tokens: ("text", s) or ("action", expr)."""
    tokens: list[tuple[str, str]] = []
    i = 0
    buf = ""
    while i < len(template):
        c = template[i]
        if c == "{":
            if buf:
                tokens.append(("text", buf))
                buf = ""
            depth, j, quote = 1, i + 1, ""
            while j < len(template) and depth:
                ch = template[j]
                if quote:
                    if ch == "\\":
                        j += 1
                    elif ch == quote:
                        quote = ""
                elif ch in "\"'":
                    quote = ch
                elif ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                j += 1
            if depth:
                raise JSONPathError(f"unclosed action in template {template!r}")
            tokens.append(("action", template[i + 1 : j - 1].strip()))
            i = j
            continue
        buf += c
        i += 1
    if buf:
        tokens.append(("text", buf))
    return tokens


_STEP = re.compile(
    r"""\.\.(?P<rec>[A-Za-z0-9_\-$]+|\*)
      |\.(?P<field>[A-Za-z0-9_\-$/]+|\*)
      |\[(?P<bracket>(?:[^\[\]"']|"[^"]*"|'[^']*'|\[[^\]]*\])*)\]""",
    re.VERBOSE,
)


def _parse_path(expr: str) -> list[tuple[str, Any]]:
    expr = expr.strip()
    if expr.startswith("$"):
        expr = expr[1:]
    if expr and not expr.startswith((".", "[")):
        expr = "." + expr
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(expr):
        m = _STEP.match(expr, pos)
        if not m:
            raise JSONPathError(f"unrecognized character in action: {expr[pos:]!r}")
        if m.group("rec") is not None:
            steps.append(("recursive", m.group("rec")))
        elif m.group("field") is not None:
            steps.append(("field", m.group("field")))
        else:
            steps.append(_bracket(m.group("bracket").strip()))
        pos = m.end()
    return steps


def _bracket(inner: str) -> tuple[str, Any]:
    if inner == "*":
        return ("field", "*")
    if inner.startswith("?"):
        body = inner[1:].strip()
        if body.startswith("(") and body.endswith(")"):
            body = body[1:-1]
        return ("filter", body)
    if inner[:1] in "\"'":
        names = [p.strip()[1:-1] for p in _split_commas(inner)]
        return ("union", names) if len(names) > 1 else ("field", names[0])
    if ":" in inner:
        parts = [p.strip() for p in inner.split(":")]
        vals = [int(p) if p else None for p in parts[:3]]
        while len(vals) < 3:
            vals.append(None)
        return ("slice", tuple(vals))
    if "," in inner:
        return ("union", [int(p) if p.strip().lstrip("-").isdigit() else p.strip() for p in inner.split(",")])
    try:
        return ("index", int(inner))
    except ValueError:
        return ("field", inner)


def _split_commas(text: str) -> list[str]:
    out, buf, quote = [], "", ""
    for ch in text:
        if quote:
            buf += ch
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            buf += ch
        elif ch == ",":
            out.append(buf)
            buf = ""
        else:
            buf += ch
    out.append(buf)
    return out


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return list(value)
    return []


def _recursive(value: Any, name: str) -> list[Any]:
    found: list[Any] = []
    if isinstance(value, dict):
        if name == "*":
            found.extend(value.values())
        elif name in value:
            found.append(value[name])
    for child in _children(value):
        found.extend(_recursive(child, name))
    return found


_FILTER = re.compile(r"^\s*(?P<left>@[^\s=!<>]*)\s*(?:(?P<op>==|!=|<=|>=|<|>)\s*(?P<right>.+?))?\s*$")


def _literal(text: str) -> Any:
    text = text.strip()
    if text[:1] in "\"'" and text[-1:] == text[:1]:
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


def _filter(items: list[Any], expr: str) -> list[Any]:
    m = _FILTER.match(expr)
    if not m:
        raise JSONPathError(f"unsupported filter {expr!r}")
    left_steps = _parse_path(m.group("left")[1:])
    op = m.group("op")
    out = []
    for item in items:
        vals = _walk([item], left_steps)
        if not op:
            if vals:
                out.append(item)
            continue
        if not vals:
            continue
        left, right = vals[0], _literal(m.group("right"))
        try:
            ok = {
                "==": lambda a, b: a == b,
                "!=": lambda a, b: a != b,
                "<": lambda a, b: a < b,
                ">": lambda a, b: a > b,
                "<=": lambda a, b: a <= b,
                ">=": lambda a, b: a >= b,
            }[op](left, right)
        except TypeError:
            ok = False
        if ok:
            out.append(item)
    return out


def _walk(values: list[Any], steps: list[tuple[str, Any]]) -> list[Any]:
    for kind, arg in steps:
        nxt: list[Any] = []
        for v in values:
            if kind == "field":
                if arg == "*":
                    nxt.extend(_children(v))
                elif isinstance(v, dict) and arg in v:
                    nxt.append(v[arg])
            elif kind == "recursive":
                nxt.extend(_recursive(v, arg))
            elif kind == "index":
                if isinstance(v, list) and -len(v) <= arg < len(v):
                    nxt.append(v[arg])
            elif kind == "slice":
                if isinstance(v, list):
                    start, end, step = arg
                    nxt.extend(v[slice(start, end, step)])
            elif kind == "union":
                for a in arg:
                    if isinstance(a, int) and isinstance(v, list) and -len(v) <= a < len(v):
                        nxt.append(v[a])
                    elif isinstance(v, dict) and a in v:
                        nxt.append(v[a])
            elif kind == "filter":
                nxt.extend(_filter(v if isinstance(v, list) else [v], arg))
        values = nxt
    return values


def _format(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _unquote(action: str) -> str | None:
    if len(action) >= 2 and action[0] in "\"'" and action[-1] == action[0]:
        return json.loads('"' + action[1:-1].replace('"', '\\"') + '"') if action[0] == '"' else action[1:-1]
    return None


def render(template: str, data: Any) -> str:
    """Evaluate a kubectl JSONPath template against ``data``."""
    tokens = _split_template(template)
    out, _ = _render(tokens, 0, data, top=True)
    return out


def _render(tokens: list[tuple[str, str]], i: int, data: Any, top: bool = False) -> tuple[str, int]:
    parts: list[str] = []
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "text":
            parts.append(text)
            i += 1
            continue
        if text == "end":
            if top:
                raise JSONPathError("not in range, nothing to end")
            return "".join(parts), i + 1
        if text.startswith("range "):
            items = _walk([data], _parse_path(text[len("range ") :]))
            body_start = i + 1
            end = _skip_body(tokens, body_start)
            for item in items:
                rendered, _ = _render(tokens[body_start:end], 0, item)
                parts.append(rendered)
            i = end + 1
            continue
        literal = _unquote(text)
        if literal is not None:
            parts.append(literal)
        else:
            values = _walk([data], _parse_path(text))
            parts.append(" ".join(_format(v) for v in values))
        i += 1
    if not top:
        return "".join(parts), i
    return "".join(parts), i


def _skip_body(tokens: list[tuple[str, str]], start: int) -> int:
    """Index of the ``{end}`` closing the range whose body starts at ``start``."""
    depth = 0
    for j in range(start, len(tokens)):
        kind, text = tokens[j]
        if kind != "action":
            continue
        if text.startswith("range "):
            depth += 1
        elif text == "end":
            if depth == 0:
                return j
            depth -= 1
    raise JSONPathError("range without end")
