"""The layout of ``describe``: Go's ``tabwriter`` as kubectl's describers use it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from apimachinery.printers import human_duration, parse_time


def go_tabwriter(lines: Sequence[Sequence[str]], minwidth: int = 0, padding: int = 2) -> list[str]:
    """Align tab-separated cells exactly as Go's ``text/tabwriter`` does (flags 0).

    A column is aligned over a block of consecutive lines that all have a cell in it; the last
    cell of each line is not part of any column.
    """
    widths: list[int] = []
    output: list[str] = ["" for _ in lines]

    def write(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            parts = []
            for j, cell in enumerate(cells):
                if j < len(widths) and j < len(cells) - 1:
                    parts.append(cell.ljust(widths[j]))
                else:
                    parts.append(cell)
            output[i] = "".join(parts)

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write(line0, line1)

    fmt(0, len(lines))
    return output


class Writer:
    """Collects ``Key:\\tvalue`` lines at indent levels, then lays them out as kubectl does."""

    def __init__(self) -> None:
        self.lines: list[list[str]] = []

    def line(self, level: int, *cells: Any) -> None:
        parts = [str(c) for c in cells]
        parts[0] = "  " * level + parts[0]
        self.lines.append(parts)

    def kv(self, level: int, key: str, value: Any) -> None:
        self.line(level, f"{key}:", _text(value))

    def multi(self, level: int, key: str, values: list[str]) -> None:
        """``Labels:  a=b`` then further values under the first, as kubectl prints maps."""
        if not values:
            self.kv(level, key, "<none>")
            return
        self.kv(level, key, values[0])
        for v in values[1:]:
            self.line(level, "", v)

    def render(self) -> str:
        return "\n".join(go_tabwriter(self.lines)) + "\n"


def _text(value: Any) -> str:
    if value is None or value == "":
        return "<none>" if value is None else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def labels_list(labels: dict[str, str] | None) -> list[str]:
    return [f"{k}={v}" for k, v in sorted((labels or {}).items())]


def annotations_list(annotations: dict[str, str] | None) -> list[str]:
    """``key: value`` lines; kubectl leaves out the last-applied configuration."""
    skip = "kubectl.kubernetes.io/last-applied-configuration"
    return [f"{k}: {v.strip()}" for k, v in sorted((annotations or {}).items()) if k != skip]


def timestamp(ts: str | None) -> str:
    """``Tue, 24 Nov 2026 22:07:48 +0000`` (RFC 1123 with a numeric zone, as kubectl prints)."""
    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    return t.strftime("%a, %d %b %Y %H:%M:%S %z")


def age(ts: str | None, now: datetime | None = None) -> str:
    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    return human_duration((now or datetime.now(UTC)) - t)


def smart_label(field: str) -> str:
    """``minReadySeconds`` -> ``Min Ready Seconds`` (kubectl's generic describer)."""
    words = re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z0-9]+|[A-Z]+", field)
    return " ".join(w[:1].upper() + w[1:] for w in words) if words else field
