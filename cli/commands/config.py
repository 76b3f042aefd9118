"""``minik config view|use-context|set-context|get-contexts|current-context``: edit the kubeconfig.

The file edited is ``--kubeconfig`` if given, else the first file of ``$KUBECONFIG`` that
defines the context concerned (the first file when none does), else ``~/.kube/config``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import typer
import yaml

from apimachinery.kubeconfig import default_kubeconfig_paths, merge_kubeconfigs, read_kubeconfig

from ..kube import CLIError, GlobalOptions, examples, out, print_text, tabulate, to_json, to_yaml

app = typer.Typer(help="Modify kubeconfig files (contexts, current namespace).", no_args_is_help=True)

Config = dict[str, Any]


def _paths(ctx: typer.Context) -> list[Path]:
    opts = ctx.find_object(GlobalOptions)
    if opts is not None and opts.kubeconfig:
        return [Path(opts.kubeconfig).expanduser()]
    return default_kubeconfig_paths()


def _read(path: Path) -> Config:
    return read_kubeconfig(path) if path.exists() else {}


def _write(path: Path, data: Config) -> None:
    data.setdefault("apiVersion", "v1")
    data.setdefault("kind", "Config")
    data.setdefault("preferences", {})
    for section in ("clusters", "contexts", "users"):
        data.setdefault(section, [])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".minik-tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def merged(paths: list[Path]) -> Config:
    """The files merged as kubectl merges them: first definition of each name wins."""
    base: Config = {"apiVersion": "v1", "current-context": "", "kind": "Config", "preferences": {}}
    return {**base, **merge_kubeconfigs(_read(p) for p in paths)}


def _file_for(paths: list[Path], section: str, name: str | None) -> Path:
    if name:
        for p in paths:
            if any(e.get("name") == name for e in _read(p).get(section) or []):
                return p
    return paths[0]


def redact(cfg: Config) -> Config:
    cfg = copy.deepcopy(cfg)
    for entry in cfg.get("clusters") or []:
        c = entry.get("cluster") or {}
        if c.get("certificate-authority-data"):
            c["certificate-authority-data"] = "DATA+OMITTED"
    for entry in cfg.get("users") or []:
        u = entry.get("user") or {}
        for key in ("client-certificate-data", "client-key-data"):
            if u.get(key):
                u[key] = "DATA+OMITTED"
        for key in ("token", "password"):
            if u.get(key):
                u[key] = "REDACTED"
    return cfg


def minify(cfg: Config, context: str | None = None) -> Config:
    name = context or cfg.get("current-context")
    if not name:
        raise CLIError("current-context must exist in order to minify")
    ctx = next((c for c in cfg.get("contexts") or [] if c.get("name") == name), None)
    if ctx is None:
        raise CLIError(f"cannot locate context {name}")
    body = ctx.get("context") or {}
    return {
        **cfg,
        "current-context": name,
        "contexts": [ctx],
        "clusters": [c for c in cfg.get("clusters") or [] if c.get("name") == body.get("cluster")],
        "users": [u for u in cfg.get("users") or [] if u.get("name") == body.get("user")],
    }


@app.command("view", epilog=examples("minik config view", "minik config view --minify --raw"))
def view(
    ctx: typer.Context,
    minify_: bool = typer.Option(False, "--minify", help="only what the current context uses"),
    raw: bool = typer.Option(False, "--raw", help="show certificate data and tokens"),
    output: str = typer.Option("yaml", "-o", "--output", help="yaml or json"),
) -> None:
    """Display merged kubeconfig settings."""
    cfg = merged(_paths(ctx))
    opts = ctx.find_object(GlobalOptions)
    if minify_:
        cfg = minify(cfg, opts.context if opts else None)
    if not raw:
        cfg = redact(cfg)
    if output == "json":
        out(to_json(cfg))
    else:
        print_text(to_yaml(cfg))


@app.command("current-context")
def current_context(ctx: typer.Context) -> None:
    """Display the current context."""
    name = merged(_paths(ctx)).get("current-context")
    if not name:
        raise CLIError("current-context is not set")
    out(name)


@app.command("get-contexts", epilog=examples("minik config get-contexts"))
def get_contexts(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="only these contexts"),
    output: str = typer.Option(None, "-o", "--output", help="name: only the names"),
    no_headers: bool = typer.Option(False, "--no-headers"),
) -> None:
    """Describe one or many contexts."""
    cfg = merged(_paths(ctx))
    contexts = cfg.get("contexts") or []
    if names:
        missing = [n for n in names if not any(c.get("name") == n for c in contexts)]
        if missing:
            raise CLIError(f"context {missing[0]} not found")
        contexts = [c for c in contexts if c.get("name") in names]
    contexts = sorted(contexts, key=lambda c: str(c.get("name")))
    if output == "name":
        for c in contexts:
            out(str(c.get("name")))
        return
    rows = [] if no_headers else [["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]]
    for c in contexts:
        body = c.get("context") or {}
        rows.append(
            [
                "*" if c.get("name") == cfg.get("current-context") else "",
                str(c.get("name")),
                str(body.get("cluster") or ""),
                str(body.get("user") or ""),
                str(body.get("namespace") or ""),
            ]
        )
    for line in tabulate(rows):
        out(line)


@app.command("use-context", epilog=examples("minik config use-context minik"))
def use_context(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Set the current-context in a kubeconfig file."""
    paths = _paths(ctx)
    cfg = merged(paths)
    if not any(c.get("name") == name for c in cfg.get("contexts") or []):
        raise CLIError(f'no context exists with the name: "{name}"')
    path = paths[0]
    data = _read(path)
    data["current-context"] = name
    _write(path, data)
    out(f'Switched to context "{name}".')


@app.command(
    "set-context",
    epilog=examples(
        "minik config set-context --current --namespace=lab",
        "minik config set-context lab --cluster=minik --user=minik --namespace=lab",
    ),
)
def set_context(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="the context to create or change"),
    current: bool = typer.Option(False, "--current", help="change the current context"),
    namespace: str = typer.Option(None, "-n", "--namespace", help="the context's default namespace"),
    cluster: str = typer.Option(None, "--cluster", help="the context's cluster"),
    user: str = typer.Option(None, "--user", help="the context's user"),
) -> None:
    """Set a context entry in kubeconfig (creating it if needed)."""
    paths = _paths(ctx)
    cfg = merged(paths)
    if current:
        if name:
            raise CLIError("you cannot specify both a context name and --current")
        current_name = cfg.get("current-context")
        if not current_name:
            raise CLIError("no current context is set")
        name = str(current_name)
    if not name:
        raise CLIError("you must specify a non-empty context name or --current")
    path = _file_for(paths, "contexts", name)
    data = _read(path)
    contexts = data.setdefault("contexts", []) or []
    data["contexts"] = contexts
    entry = next((c for c in contexts if c.get("name") == name), None)
    created = entry is None
    if entry is None:
        entry = {"name": name, "context": {}}
        contexts.append(entry)
    body = entry.setdefault("context", {}) or {}
    entry["context"] = body
    for key, value in (("cluster", cluster), ("user", user), ("namespace", namespace)):
        if value is not None:
            if value:
                body[key] = value
            else:
                body.pop(key, None)
    _write(path, data)
    out(f'Context "{name}" {"created" if created else "modified"}.')
