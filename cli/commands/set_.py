"""``minik set image``: change container images of a workload."""

from __future__ import annotations

import typer

from ..kube import CLIError, kube, out, parse_resource_args, ref

app = typer.Typer(help="Set specific features on objects.", no_args_is_help=True)


def containers_path(kind: str) -> tuple[str, ...]:
    if kind == "Pod":
        return ("spec",)
    if kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"):
        return ("spec", "template", "spec")
    raise CLIError(f"cannot set images on a {kind}")


def image_patch(obj: dict, kind: str, images: dict[str, str]) -> dict:
    """The strategic merge patch setting ``images`` (container name, or ``*`` for all)."""
    node = obj
    path = containers_path(kind)
    for key in path:
        node = node.get(key) or {}
    changes = []
    for field in ("initContainers", "containers"):
        for c in node.get(field) or []:
            image = images.get(c.get("name")) or images.get("*")
            if image is not None:
                changes.append((field, c["name"], image))
    names = {c.get("name") for f in ("initContainers", "containers") for c in node.get(f) or []}
    for wanted in images:
        if wanted != "*" and wanted not in names:
            raise CLIError(f'unable to find container named "{wanted}"')
    inner: dict = {}
    for field, name, image in changes:
        inner.setdefault(field, []).append({"name": name, "image": image})
    patch: dict = inner
    for key in reversed(path):
        patch = {key: patch}
    return patch


@app.command(
    "image",
    epilog="Examples:\n\n  minik set image deploy/web nginx=nginx:1.26\n\n  minik set image deploy/web '*=nginx:1.26'",
)
def set_image(
    ctx: typer.Context,
    args: list[str] = typer.Argument(..., help="TYPE/NAME… CONTAINER=IMAGE…"),
) -> None:
    """Update the image of a pod template or pod."""
    k = kube(ctx)
    resources = [a for a in args if "=" not in a]
    images = dict(a.split("=", 1) for a in args if "=" in a)
    if not images:
        raise CLIError("at least one image update is required")
    for info, names in parse_resource_args(resources):
        for name in names:
            ns = k.ns_for(info)
            obj = k.client.get(info, name, ns)
            patch = image_patch(obj, info.kind, images)
            k.client.patch(info, name, patch, ns, patch_type="strategic")
            out(f"{ref(info, name)} image updated")
