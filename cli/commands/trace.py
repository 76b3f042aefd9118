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


def running_at(spans: Sequence[Obj], uid: str) -> int | None:
    """When the pod's kubelet wrote the status with phase Running (the end of the first such
    write). Spans of a kubelet that does not record the phase: the first status write after a
    container started."""
    writes = [s for s in spans if s["name"] == "update pod status" and s["attributes"].get(UID_ATTR) == uid]
    if any("minik.pod.phase" in s["attributes"] for s in writes):
        ends = [s["end"] for s in writes if s["attributes"].get("minik.pod.phase") == "Running"]
        return min(ends) if ends else None
    started = [
        s["end"]
        for s in spans
        if s["name"].startswith("start container ") and s["attributes"].get(UID_ATTR) == uid
    ]
    if not started:
        return None
    ends = [s["end"] for s in writes if s["start"] >= min(started)]
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


def chain(steps: Sequence[Obj], begin: int, stop: int) -> list[Obj]:
    """The steps from ``begin`` to ``stop`` as one chain of rows that adds up to ``stop - begin``:
    each top-level step counts the part of it no earlier step covers (``counted``; a step wholly
    inside an earlier one counts nothing, its time is already there), and the time no step covers
    is a ``wait`` row of its own, named by the components on either side (a change on its way
    through the API server's watch to the next component's informer and queue)."""
    rows: list[Obj] = []
    reach, last = begin, None
    for s in sorted(steps, key=lambda s: (s["start"], -s["end"])):
        if s["start"] >= stop or s["end"] <= begin:
            continue
        if s["end"] <= reach:
            rows.append({"spanId": s["spanId"], "kind": "inside", "counted": 0})
            continue
        if reach >= stop:  # begun inside the last step, goes on past the end: the next chain's
            continue
        a = max(s["start"], reach)
        if a > reach:
            rows.append(_wait(s, last, reach, a))
        b = min(s["end"], stop)
        rows.append({"spanId": s["spanId"], "kind": "step", "counted": b - a})
        reach, last = b, s
    if reach < stop:
        rows.append(_wait(None, last, reach, stop))
    return rows


def _wait(nxt: Obj | None, last: Obj | None, a: int, b: int) -> Obj:
    return {
        "kind": "wait",
        "from": _component(last) if last is not None else "",
        "to": _component(nxt) if nxt is not None else "",
        "start": a,
        "end": b,
        "counted": b - a,
    }


def summary(spans: Sequence[Obj], pod_uid: str) -> dict[str, Any] | None:
    """For a pod: its top-level steps from the first span (the create request arriving) to the
    status write that made it Running, then on to the one that made it Ready, as chains (see
    :func:`chain`) whose rows add up to create-to-Running and Running-to-Ready."""
    own = [s for s in spans if s["attributes"].get(UID_ATTR) == pod_uid]
    ready = ready_at(own, pod_uid)
    running = running_at(own, pod_uid)
    if not own or ready is None:
        return None
    first = min(s["start"] for s in own)
    running = min(running if running is not None else ready, ready)
    steps = [s for s in own if top_level(s)]
    to_running = chain(steps, first, running)
    to_ready = chain(steps, running, ready)
    rows = to_running + to_ready
    waits = [
        {"from": w["from"], "to": w["to"], "seconds": w["counted"] / 1e9} for w in rows if w["kind"] == "wait"
    ]
    steps_ns = sum(r["counted"] for r in rows if r["kind"] != "wait")
    return {
        "uid": pod_uid,
        "start": first,
        "running": running,
        "ready": ready,
        # the measured times: the create request's arrival to the end of the status writes
        "createToRunningSeconds": (running - first) / 1e9,
        "createToReadySeconds": (ready - first) / 1e9,
        # what the rows add up to: the steps' counted parts and the waits between them
        "stepsToRunningSeconds": sum(r["counted"] for r in to_running if r["kind"] != "wait") / 1e9,
        "waitsToRunningSeconds": sum(r["counted"] for r in to_running if r["kind"] == "wait") / 1e9,
        "totalToRunningSeconds": sum(r["counted"] for r in to_running) / 1e9,
        "totalToReadySeconds": sum(r["counted"] for r in rows) / 1e9,
        "stepsSeconds": steps_ns / 1e9,
        "stepsFraction": steps_ns / (ready - first) if ready > first else 1.0,
        "waits": waits,
        "chain": [
            {**r, "counted": r["counted"] / 1e9, "until": "Running" if i < len(to_running) else "Ready"}
            for i, r in enumerate(rows)
        ],
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


def render(
    spans: Sequence[Obj],
    names: dict[str, str],
    title: str,
    width: int = 40,
    summaries: Sequence[Obj] = (),
) -> Any:
    """A rich Table: one row per span (children indented under their parent), the component, the
    start offset from the first span, the duration and a bar on the common time axis. With the
    pods' summaries: a row per wait between components, and the COUNTED column, each chain row's
    share of the pod's create-to-Running (then Running-to-Ready) time."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
    cols = [("STEP", "left"), ("COMPONENT", "left"), ("START", "right"), ("DURATION", "right")]
    if summaries:
        cols.append(("COUNTED", "right"))
    for col, justify in cols:
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("TIMELINE", no_wrap=True)
    if not spans:
        return table
    counted: dict[str, float] = {}
    inside: set[str] = set()
    waits: list[Obj] = []
    for summ in summaries:
        for i, r in enumerate(summ.get("chain") or ()):
            if r["kind"] == "wait":
                waits.append(
                    {
                        "spanId": f"wait-{summ['uid']}-{i}",
                        "name": _wait_name(r),
                        "service": "",
                        "start": r["start"],
                        "end": r["end"],
                        "attributes": {UID_ATTR: summ["uid"]},
                        "counted": r["counted"],
                    }
                )
            elif r["kind"] == "inside":
                inside.add(r["spanId"])
            else:
                counted[r["spanId"]] = counted.get(r["spanId"], 0.0) + r["counted"]
    spans = [*spans, *waits]
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
        colour = colours.setdefault(service, palette[len(colours) % len(palette)]) if service else "dim"
        a = int((s["start"] - t0) * scale)
        b = max(a + 1, int(round((s["end"] - t0) * scale)))
        bar = Text(" " * a)
        bar.append("█" * (b - a), style=colour)
        name = "  " * depth(s) + label(s, names, several)
        if s.get("error"):
            name += f"  ({s['error']})"
        cells: list[Any] = [name, Text(service, style=colour), "+" + _ms(s["start"] - t0)]
        cells.append(_ms(s["end"] - s["start"]))
        if summaries:
            sid = s["spanId"]
            if "counted" in s:
                cells.append(_ms(int(s["counted"] * 1e9)))
            elif sid in counted:
                cells.append(_ms(int(counted[sid] * 1e9)))
            else:
                cells.append("(inside)" if sid in inside else "")
        if not service:  # a wait: no component's span
            cells[0] = Text(cells[0], style="dim")
            bar = Text(" " * a + "·" * (b - a), style="dim")
        table.add_row(*cells, bar)
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
    console.print(
        render(spans, names, f"{names[obj['metadata']['uid']]} (uid {obj['metadata']['uid']})", 40, summaries)
    )
    for s in summaries:
        pod = names.get(s["uid"], s["uid"])
        console.print(
            f"{pod}: the steps to Running add up to {s['totalToRunningSeconds'] * 1000:,.1f} ms"
            f" ({s['stepsToRunningSeconds'] * 1000:,.1f} ms in steps,"
            f" {s['waitsToRunningSeconds'] * 1000:,.1f} ms waiting between components);"
            f" measured created → Running: {s['createToRunningSeconds'] * 1000:,.1f} ms"
            f" ({_agreement(s['totalToRunningSeconds'], s['createToRunningSeconds'])})"
        )
        console.print(
            f"{pod}: created → Ready in {s['createToReadySeconds'] * 1000:,.1f} ms"
            f" (the rows add up to {s['totalToReadySeconds'] * 1000:,.1f} ms)"
        )


def _agreement(total: float, measured: float) -> str:
    if measured <= 0:
        return "nothing to compare"
    return f"{(total - measured) / measured:+.1%}"


def _wait_name(row: Obj) -> str:
    """A gap between two components' steps is a wait (the change on its way from one to the
    next); a gap between two steps of one component is time that component spent outside its
    spans."""
    a, b = row["from"] or "?", row["to"] or "?"
    return f"gap in {a}" if a == b else f"wait {a} → {b}"
