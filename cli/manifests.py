"""Reading manifests for ``apply -f`` / ``delete -f``: files, directories, ``-`` for stdin."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .kube import CLIError

EXTENSIONS = (".yaml", ".yml", ".json")


@dataclass
class Manifest:
    obj: dict[str, Any]
    source: str  # file name or "STDIN"


def expand_paths(filenames: list[str], recursive: bool) -> list[str]:
    """Files named on the command line; directories give their .yaml/.yml/.json files (sorted)."""
    paths: list[str] = []
    for name in filenames:
        if name == "-":
            paths.append(name)
            continue
        p = Path(name)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            paths.extend(str(f) for f in sorted(p.glob(pattern)) if f.is_file() and f.suffix in EXTENSIONS)
        elif p.exists():
            paths.append(name)
        else:
            raise CLIError(f'the path "{name}" does not exist')
    return paths


def parse_documents(text: str, source: str) -> list[Manifest]:
    """Every object of a (multi-document) YAML or JSON text; ``kind: List`` is flattened."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CLIError(f"error parsing {source}: {where}{problem}") from None
    out: list[Manifest] = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise CLIError(f"error parsing {source}: a document is not an object: {json.dumps(doc)[:80]}")
        if doc.get("kind") == "List" or (str(doc.get("kind", "")).endswith("List") and "items" in doc):
            out.extend(Manifest(item, source) for item in doc.get("items") or [] if isinstance(item, dict))
            continue
        if not doc.get("kind") or not doc.get("apiVersion"):
            missing = "kind" if not doc.get("kind") else "apiVersion"
            raise CLIError(f"error validating data in {source}: {missing} not set")
        out.append(Manifest(doc, source))
    return out


def load(filenames: list[str], recursive: bool = False) -> list[Manifest]:
    if not filenames:
        raise CLIError("must specify one of -f and -k")
    manifests: list[Manifest] = []
    for path in expand_paths(filenames, recursive):
        if path == "-":
            manifests.extend(parse_documents(sys.stdin.read(), "STDIN"))
        else:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise CLIError(f"cannot read {path}: {exc.strerror}") from None
            manifests.extend(parse_documents(text, path))
    return manifests
