"""``minik trace KIND/NAME``: what happened to one object, across the components, as a waterfall.

The spans come from the API server's span store (``GET /debug/minik/traces?uid=...``), where every
component ships the OpenTelemetry spans it records about objects (``apimachinery/tracing.py``).
A Pod is traced by its UID; a Deployment through its ReplicaSets and their pods; a ReplicaSet
through its pods; a Service through its pods (the Endpoints, EndpointSlice, proxy and DNS spans
are filed under the Service and link the pods they touched).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import typer

from apimachinery import errors
from apimachinery.resources import plural_info

from ..kube import CLIError, Obj, kube, out, single_resource

EXAMPLES = """Examples:

  minik trace pod/web-0                 # the API server, scheduler, kubelet, endpoints, proxy, DNS steps
  minik trace deployment/web            # the Deployment, its ReplicaSets and their pods
  minik trace service/web               # the Service's endpoints, proxy rules and DNS, and its pods
  minik trace pod/web-0 -o json         # the spans and the summary as JSON"""

TRACES_PATH = "/debug/minik/traces"
UID_ATTR = "k8s.object.uid"

PODS = plural_info("", "v1", "pods")
REPLICASETS = plural_info("apps", "v1", "replicasets")


# ---- which objects ------------------------------------------------------------------------------


def owned_by(items: Sequence[Obj], uid: str) -> list[Obj]:
    return [
        o
        for o in items
        if any(r.get("uid") == uid for r in (o.get("metadata") or {}).get("ownerReferences") or ())
    ]


def related(client: Any, kind: str, obj: Obj) -> list[tuple[str, Obj]]:
    """(kind, object): the object and the ones its trace takes in: a Deployment's ReplicaSets and
    their pods, a ReplicaSet's pods, a Service's pods."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    objs = [(kind, obj)]
    if kind == "Deployment":
        sets = owned_by(client.list(REPLICASETS, ns).get("items") or [], meta.get("uid", ""))
        pods = client.list(PODS, ns).get("items") or []
        objs += [("ReplicaSet", rs) for rs in sets]
        for rs in sets:
            objs += [("Pod", p) for p in owned_by(pods, rs["metadata"]["uid"])]
    elif kind == "ReplicaSet":
        objs += [("Pod", p) for p in owned_by(client.list(PODS, ns).get("items") or [], meta.get("uid", ""))]
    elif kind == "Service":
        selector = (obj.get("spec") or {}).get("selector") or {}
        if selector:
            found = client.list(PODS, ns, label_selector=",".join(f"{k}={v}" for k, v in selector.items()))
            objs += [("Pod", p) for p in found.get("items") or []]
    return objs


# ---- the timeline --------------------------------------------------------------------------------


def top_level(span: Obj) -> bool:
    """A step of its object's trace (its parent is the trace's root), not a part of another span."""
    trace_id, parent = span.get("traceId", ""), span.get("parentSpanId", "")
    return not parent or trace_id[16:] == parent


def ready_at(spans: Sequence[Obj], uid: str) -> int | None:
    """When the pod's kubelet wrote the status that made it Ready (the end of that write)."""
    ends = [
        s["end"]
        for s in spans
        if s["name"] == "update pod status"
        and s["attributes"].get(UID_ATTR) == uid
        and s["attributes"].get("minik.pod.ready")
    ]
    return min(ends) if ends else None


def covered(intervals: Sequence[tuple[int, int]], start: int, end: int) -> int:
    """Nanoseconds of [start, end] inside at least one interval."""
    total, reach = 0, start
    for a, b in sorted(intervals):
        a, b = max(a, reach), min(b, end)
        if b > a:
            total += b - a
            reach = b
    return total


def summary(spans: Sequence[Obj], pod_uid: str) -> dict[str, Any] | None:
    """For a pod: from the first span of the pod to its Ready status, and how much of that time
    the top-level steps cover (the rest is watch delivery and queues between components)."""
    own = [s for s in spans if s["attributes"].get(UID_ATTR) == pod_uid]
    ready = ready_at(own, pod_uid)
    if not own or ready is None:
        return None
    first = min(s["start"] for s in own)
    steps = sorted((s for s in own if top_level(s) and s["start"] <= ready), key=lambda s: s["start"])
    cover = covered([(s["start"], s["end"]) for s in steps], first, ready)
    # the time no step covers: a change on its way from one component to the next (the API
    # server's watch, the next component's informer and queue)
    waits = []
    reach, last = first, steps[0] if steps else None
    for s in steps:
        if s["start"] > reach and last is not None:
            waits.append(
                {"from": _component(last), "to": _component(s), "seconds": (s["start"] - reach) / 1e9}
            )
        if s["end"] > reach:
            reach, last = min(s["end"], ready), s
    return {
        "uid": pod_uid,
        "start": first,
        "ready": ready,
        "createToReadySeconds": (ready - first) / 1e9,
        "stepsSeconds": cover / 1e9,
        "stepsFraction": cover / (ready - first) if ready > first else 1.0,
        "waits": waits,
    }


def _component(span: Obj) -> str:
    return str(span.get("service", "")).removeprefix("minik-")


def label(span: Obj, names: dict[str, str], several: bool) -> str:
    attrs = span["attributes"]
    name = span["name"]
    uid = attrs.get(UID_ATTR, "")
    if several or uid not in names:
        kind = str(attrs.get("k8s.object.kind", "")).lower()
        obj = names.get(uid) or (f"{kind}/{attrs['k8s.object.name']}" if attrs.get("k8s.object.name") else "")
        if obj:
            return f"{obj}: {name}"
    return name


def _ms(ns: int) -> str:
    return f"{ns / 1e6:,.1f} ms"


def render(spans: Sequence[Obj], names: dict[str, str], title: str, width: int = 40) -> Any:
    """A rich Table: one row per span (children indented under their parent), the component, the
    start offset from the first span, the duration and a bar on the common time axis."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
    for col, justify in (("STEP", "left"), ("COMPONENT", "left"), ("START", "right"), ("DURATION", "right")):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("TIMELINE", no_wrap=True)
    if not spans:
        return table
    t0 = min(s["start"] for s in spans)
    t1 = max(s["end"] for s in spans)
    scale = width / max(t1 - t0, 1)
    by_id = {s["spanId"]: s for s in spans}
    several = len({s["attributes"].get(UID_ATTR) for s in spans}) > 1
    colours: dict[str, str] = {}
    palette = ["cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta"]

    def depth(s: Obj) -> int:
        d, p = 0, by_id.get(s.get("parentSpanId", ""))
        while p is not None and d < 8:
            d, p = d + 1, by_id.get(p.get("parentSpanId", ""))
        return d

    for s in ordered(spans):
        service = str(s.get("service", "")).removeprefix("minik-")
        colour = colours.setdefault(service, palette[len(colours) % len(palette)])
        a = int((s["start"] - t0) * scale)
        b = max(a + 1, int(round((s["end"] - t0) * scale)))
        bar = Text(" " * a)
        bar.append("█" * (b - a), style=colour)
        name = "  " * depth(s) + label(s, names, several)
        if s.get("error"):
            name += f"  ({s['error']})"
        table.add_row(
            name, Text(service, style=colour), "+" + _ms(s["start"] - t0), _ms(s["end"] - s["start"]), bar
        )
    return table


def ordered(spans: Sequence[Obj]) -> list[Obj]:
    """Start order, each span's children right after it."""
    ids = {s["spanId"] for s in spans}
    children: dict[str, list[Obj]] = {}
    roots = []
    for s in sorted(spans, key=lambda s: (s["start"], -s["end"])):
        parent = s.get("parentSpanId", "")
        if parent in ids:
            children.setdefault(parent, []).append(s)
        else:
            roots.append(s)
    out_: list[Obj] = []

    def walk(s: Obj) -> None:
        out_.append(s)
        for c in children.get(s["spanId"], ()):
            walk(c)

    for r in roots:
        walk(r)
    return out_


# ---- the command ---------------------------------------------------------------------------------


def trace(
    ctx: typer.Context,
    resource: list[str] = typer.Argument(
        ..., help="TYPE/NAME or TYPE NAME: a pod, deployment, replicaset, service…"
    ),
    output: str = typer.Option(None, "-o", "--output", help="json: the spans and the summary"),
) -> None:
    """Show what happened to an object across the components, as a timeline of spans."""
    if output not in (None, "json"):
        raise CLIError("--output must be 'json'")
    k = kube(ctx)
    info, name = single_resource(resource, "trace")
    obj = k.client.get(info, name, k.ns_for(info))
    objs = related(k.client, info.kind, obj)
    names = {o["metadata"]["uid"]: f"{kind.lower()}/{o['metadata']['name']}" for kind, o in objs}
    try:
        spans = k.client.get_json(TRACES_PATH, {"uid": ",".join(names)}).get("spans") or []
    except errors.NotFound as exc:
        raise CLIError("the API server keeps no traces (it runs with --disable-tracing)") from exc
    pods = [o for kind, o in objs if kind == "Pod"]
    summaries = [s for s in (summary(spans, p["metadata"]["uid"]) for p in pods) if s is not None]
    if output == "json":
        out(
            json.dumps({"object": names[obj["metadata"]["uid"]], "spans": spans, "pods": summaries}, indent=2)
        )
        return
    if not spans:
        out(
            f"No spans recorded for {names[obj['metadata']['uid']]} (created before the API server started, or evicted from its store)."
        )
        return
    from rich.console import Console

    console = Console(soft_wrap=False, width=max(160, Console().width))
    console.print(render(spans, names, f"{names[obj['metadata']['uid']]} (uid {obj['metadata']['uid']})"))
    for s in summaries:
        console.print(
            f"{names.get(s['uid'], s['uid'])}: created → Ready in {s['createToReadySeconds'] * 1000:,.1f} ms;"
            f" the steps cover {s['stepsSeconds'] * 1000:,.1f} ms of it ({s['stepsFraction']:.0%}),"
            " the rest is watch delivery and queues between components"
        )
        waits = [w for w in s["waits"] if w["seconds"] >= 0.001]
        if waits:
            console.print(
                "  waits between steps: "
                + ", ".join(f"{w['from']} → {w['to']} {w['seconds'] * 1000:,.1f} ms" for w in waits)
            )
