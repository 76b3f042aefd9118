"""``minik create deployment|namespace|secret generic|configmap``: objects from flags."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any, TypeVar

import typer

from apimachinery.resources import ResourceInfo, resolve

from ..kube import CLIError, Obj, examples, kube, out, ref
from .get import parse_output, print_objects

app = typer.Typer(help="Create a resource from flags.", no_args_is_help=True)
V = TypeVar("V")

# the options several create commands share
_NAME = typer.Argument(...)
_DRY_RUN = typer.Option("none", "--dry-run", help="none, client (print only) or server")
_OUTPUT = typer.Option(None, "-o", "--output", help="yaml|json|name")
_FROM_LITERAL = typer.Option(None, "--from-literal", help="key=value (repeatable)")
_FROM_FILE = typer.Option(None, "--from-file", help="[key=]path or a directory (repeatable)")


def _info(name: str) -> ResourceInfo:
    info = resolve(name)
    assert info is not None
    return info


def image_container_name(image: str) -> str:
    """kubectl's container name for an image: the last path part without tag or digest."""
    name = image.split("@", 1)[0]
    name = name.rsplit("/", 1)[-1]
    name = name.split(":", 1)[0]
    return re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-") or "container"


def deployment_object(
    name: str, images: list[str], replicas: int, port: int | None, command: list[str]
) -> Obj:
    labels = {"app": name}
    containers: list[Obj] = [
        {"name": image_container_name(image), "image": image, "resources": {}} for image in images
    ]
    if port is not None and containers:
        containers[0]["ports"] = [{"containerPort": port}]
    if command and containers:
        containers[0]["command"] = command
    template = {"metadata": {"labels": labels}, "spec": {"containers": containers}}
    spec = {"replicas": replicas, "selector": {"matchLabels": labels}, "strategy": {}, "template": template}
    return new_object("apps/v1", "Deployment", {"name": name, "labels": labels}, spec=spec, status={})


def new_object(api_version: str, kind: str, metadata: Obj, **fields: Any) -> Obj:
    """A new object as kubectl create builds it: apiVersion, kind, metadata, then ``fields``."""
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **fields}


def parse_literals(literals: list[str]) -> dict[str, str]:
    data: dict[str, str] = {}
    for lit in literals:
        key, sep, value = lit.partition("=")
        if not sep or not key:
            raise CLIError(f"invalid literal source {lit}, expected key=value")
        _add_key(data, key, value)
    return data


def read_files(sources: list[str]) -> dict[str, bytes]:
    """``--from-file``: ``path``, ``key=path``, or a directory (each regular file, by file name)."""
    data: dict[str, bytes] = {}
    for src in sources:
        key, sep, path = src.partition("=")
        if not sep:
            key, path = "", src
        p = Path(path)
        if p.is_dir():
            if key:
                raise CLIError(f"cannot give a key name for a directory path: {src}")
            files = [f for f in sorted(p.iterdir()) if f.is_file()]
        elif p.is_file():
            files = [p]
        else:
            raise CLIError(f"error reading {path}: no such file or directory")
        for f in files:
            _add_key(data, key or f.name, f.read_bytes())
    return data


def data_sources(literals: list[str], files: list[str]) -> dict[str, str | bytes]:
    """``--from-literal`` values (text), then ``--from-file`` contents (bytes); each key once."""
    data: dict[str, str | bytes] = dict(parse_literals(literals))
    for key, value in read_files(files).items():
        _add_key(data, key, value)
    return data


def _add_key(data: dict[str, V], key: str, value: V) -> None:
    if key in data:
        raise CLIError(f'cannot add key "{key}", another key by that name already exists')
    data[key] = value


def _finish(ctx: typer.Context, info: ResourceInfo, obj: Obj, dry_run: str, output: str | None) -> None:
    if dry_run not in ("none", "client", "server"):
        raise CLIError(f'Invalid dry-run value ({dry_run}). Must be "none", "server", or "client".')
    fmt, template = parse_output(output)
    name = obj["metadata"]["name"]
    if dry_run == "client":
        result = obj
    else:
        k = kube(ctx)
        ns = k.ns_for(info, obj)
        if info.namespaced:
            obj["metadata"]["namespace"] = ns
        result = k.client.create(info, obj, ns, dry_run=dry_run == "server", field_manager="kubectl-create")
        result = {"apiVersion": info.api_version, "kind": info.kind, **result}
    if fmt in ("table", "wide"):
        suffix = {"client": " (dry run)", "server": " (server dry run)"}.get(dry_run, "")
        out(f"{ref(info, name)} created{suffix}")
    else:
        print_objects([result], fmt, template, single=True)


@app.command(
    "deployment", epilog=examples("minik create deployment web --image=nginx:1.25 --replicas=3 --port=80")
)
def create_deployment(
    ctx: typer.Context,
    name: str = _NAME,
    image: list[str] = typer.Option(..., "--image", help="container image (repeat for several containers)"),
    replicas: int = typer.Option(1, "-r", "--replicas"),
    port: int = typer.Option(None, "--port", help="the container port to expose"),
    command: list[str] = typer.Argument(None, help="after --: the command of the container"),
    dry_run: str = _DRY_RUN,
    output: str = _OUTPUT,
) -> None:
    """Create a deployment with the specified name."""
    _finish(
        ctx,
        _info("deployments"),
        deployment_object(name, image, replicas, port, command or []),
        dry_run,
        output,
    )


@app.command("namespace", epilog=examples("minik create namespace lab"))
def create_namespace(
    ctx: typer.Context,
    name: str = _NAME,
    dry_run: str = _DRY_RUN,
    output: str = _OUTPUT,
) -> None:
    """Create a namespace with the specified name."""
    obj = new_object("v1", "Namespace", {"name": name}, spec={}, status={})
    _finish(ctx, _info("namespaces"), obj, dry_run, output)


def secret_object(name: str, literals: list[str], files: list[str], type_: str | None) -> Obj:
    data = {
        k: base64.b64encode(v.encode() if isinstance(v, str) else v).decode()
        for k, v in data_sources(literals, files).items()
    }
    obj = new_object("v1", "Secret", {"name": name}, data=data)
    if type_:
        obj["type"] = type_
    return obj


def configmap_object(name: str, literals: list[str], files: list[str]) -> Obj:
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    for key, value in data_sources(literals, files).items():
        if isinstance(value, str):
            data[key] = value
            continue
        try:
            data[key] = value.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(value).decode()
    obj = new_object("v1", "ConfigMap", {"name": name}, data=data)
    if binary:
        obj["binaryData"] = binary
    return obj


secret_app = typer.Typer(help="Create a secret.", no_args_is_help=True)
app.add_typer(secret_app, name="secret")


@secret_app.command(
    "generic",
    epilog=examples(
        "minik create secret generic db --from-literal=user=admin --from-literal=pass=s3cret",
        "minik create secret generic tls --from-file=./tls.crt --from-file=key=./tls.key",
    ),
)
def create_secret_generic(
    ctx: typer.Context,
    name: str = _NAME,
    from_literal: list[str] = _FROM_LITERAL,
    from_file: list[str] = _FROM_FILE,
    type_: str = typer.Option(None, "--type", help="the secret's type (default Opaque)"),
    dry_run: str = _DRY_RUN,
    output: str = _OUTPUT,
) -> None:
    """Create a secret from literal values or files."""
    obj = secret_object(name, from_literal or [], from_file or [], type_)
    _finish(ctx, _info("secrets"), obj, dry_run, output)


@app.command(
    "configmap",
    epilog=examples(
        "minik create configmap app --from-literal=mode=lab",
        "minik create configmap web --from-file=index.html",
    ),
)
def create_configmap(
    ctx: typer.Context,
    name: str = _NAME,
    from_literal: list[str] = _FROM_LITERAL,
    from_file: list[str] = _FROM_FILE,
    dry_run: str = _DRY_RUN,
    output: str = _OUTPUT,
) -> None:
    """Create a configmap from literal values or files."""
    _finish(
        ctx, _info("configmaps"), configmap_object(name, from_literal or [], from_file or []), dry_run, output
    )


app.command("cm", hidden=True)(create_configmap)
app.command("ns", hidden=True)(create_namespace)
app.command("deploy", hidden=True)(create_deployment)
