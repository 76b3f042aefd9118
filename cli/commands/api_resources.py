"""``minik api-resources``: the kinds the server offers, read from discovery."""

from __future__ import annotations

import typer

from ..kube import CLIError, Obj, kube, out, tabulate

EXAMPLES = """
Examples:

  minik api-resources
  minik api-resources --namespaced=false
  minik api-resources --api-group=apps -o wide
"""


def discover(k) -> list[tuple[str, Obj]]:  # type: ignore[no-untyped-def]
    """(groupVersion, APIResource) for every resource of every preferred group version."""
    found: list[tuple[str, Obj]] = []
    core = k.client.get_json("/api")
    for version in core.get("versions") or ["v1"]:
        lst = k.client.get_json(f"/api/{version}")
        found.extend((version, r) for r in lst.get("resources") or [])
    groups = k.client.get_json("/apis")
    for g in groups.get("groups") or []:
        preferred = (g.get("preferredVersion") or {}).get("groupVersion") or (
            (g.get("versions") or [{}])[0]
        ).get("groupVersion")
        if not preferred:
            continue
        lst = k.client.get_json(f"/apis/{preferred}")
        found.extend((preferred, r) for r in lst.get("resources") or [])
    return [(gv, r) for gv, r in found if "/" not in str(r.get("name", ""))]


def api_resources(
    ctx: typer.Context,
    output: str = typer.Option(None, "-o", "--output", help="wide or name"),
    namespaced: str = typer.Option(None, "--namespaced", help="true or false: only (non-)namespaced kinds"),
    api_group: str = typer.Option(None, "--api-group", help="only this group ('' for the core group)"),
    no_headers: bool = typer.Option(False, "--no-headers"),
    sort_by: str = typer.Option(None, "--sort-by", help="name or kind"),
) -> None:
    """Print the supported API resources on the server."""
    if output not in (None, "wide", "name"):
        raise CLIError(f"--output {output} is not available")
    k = kube(ctx)
    resources = discover(k)
    if namespaced is not None:
        want = namespaced.lower() in ("true", "1", "yes")
        resources = [(gv, r) for gv, r in resources if bool(r.get("namespaced")) == want]
    if api_group is not None:
        resources = [(gv, r) for gv, r in resources if (gv.split("/")[0] if "/" in gv else "") == api_group]
    if sort_by == "name":
        resources.sort(key=lambda p: str(p[1].get("name")))
    elif sort_by == "kind":
        resources.sort(key=lambda p: str(p[1].get("kind")))
    else:
        resources.sort(key=lambda p: ((p[0].split("/")[0] if "/" in p[0] else ""), str(p[1].get("name"))))
    if output == "name":
        for gv, r in resources:
            group = gv.split("/")[0] if "/" in gv else ""
            out(f"{r.get('name')}.{group}" if group else str(r.get("name")))
        return
    headers = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    if output == "wide":
        headers += ["VERBS", "CATEGORIES"]
    rows = [] if no_headers else [headers]
    for gv, r in resources:
        row = [
            str(r.get("name")),
            ",".join(r.get("shortNames") or []),
            gv,
            "true" if r.get("namespaced") else "false",
            str(r.get("kind")),
        ]
        if output == "wide":
            row += ["[" + " ".join(r.get("verbs") or []) + "]", ",".join(r.get("categories") or [])]
        rows.append(row)
    for line in tabulate(rows):
        out(line.rstrip())
