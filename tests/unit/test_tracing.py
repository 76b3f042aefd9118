"""Tracing for ``minik trace``: spans filed by object UID and by their links, the store's bounds,
the OTLP round trip to the API server's store, and the waterfall rendered from fixed spans."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from apimachinery import tracing
from apiserver import tracestore
from cli.commands import trace as trace_cmd

pytestmark = pytest.mark.unit


class Capture:
    """A span processor keeping the finished spans."""

    def __init__(self) -> None:
        self.spans: list[Any] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: Any) -> None:
        self.spans.append(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


@pytest.fixture()
def capture() -> Iterator[Capture]:
    cap = Capture()
    assert tracing.setup("kubelet", local=cap, enabled=True)
    yield cap
    tracing.shutdown()


def uid() -> str:
    return str(uuid.uuid4())


def test_trace_id_is_the_uid_and_links_name_the_owners(capture: Capture) -> None:
    pod, rs = uid(), uid()
    ctx = tracing.record("sync pod", pod, 1_000, 2_000, {"x": 1}, links=[("owner", "ReplicaSet", rs)])
    assert ctx is not None
    tracing.record("create sandbox", pod, 1_100, 1_900, parent=ctx)
    [parent, child] = [tracestore.from_readable(s) for s in capture.spans]
    assert parent["traceId"] == uuid.UUID(pod).hex == child["traceId"]
    assert parent["parentSpanId"] == uuid.UUID(pod).hex[16:]  # the trace's root: a top-level step
    assert child["parentSpanId"] == parent["spanId"]
    assert parent["service"] == "minik-kubelet"
    assert parent["attributes"][tracing.ATTR_UID] == pod
    [link] = parent["links"]
    assert link["traceId"] == uuid.UUID(rs).hex
    assert link["attributes"] == {
        tracing.ATTR_LINK_ROLE: "owner",
        tracing.ATTR_KIND: "ReplicaSet",
        tracing.ATTR_UID: rs,
    }
    assert trace_cmd.top_level(parent) and not trace_cmd.top_level(child)


def test_nothing_is_recorded_when_tracing_is_off() -> None:
    assert not tracing.setup("scheduler", enabled=False)
    assert tracing.record("bind", uid(), 1, 2) is None
    with tracing.Step("bind", uid()) as step:
        pass
    assert step.context is None


def test_store_files_spans_under_their_uid_and_their_links(capture: Capture) -> None:
    pod, rs, svc = uid(), uid(), uid()
    tracing.record("bind", pod, 10, 20, links=[("owner", "ReplicaSet", rs)])
    tracing.record("update endpoints", svc, 30, 40, links=[("pod", "Pod", pod)])
    store = tracestore.TraceStore()
    # the OTLP/protobuf a component POSTs, decoded as the API server does
    store.add(tracestore.decode_otlp(tracing.encode(capture.spans)))
    assert [s["name"] for s in store.spans([pod])] == ["bind", "update endpoints"]
    assert [s["name"] for s in store.spans([rs])] == ["bind"]
    assert [s["name"] for s in store.spans([svc])] == ["update endpoints"]
    assert [s["name"] for s in store.spans([pod, rs, svc])] == ["bind", "update endpoints"]  # each once
    assert store.spans([uid()]) == []


def test_store_bounds_per_object_and_in_all() -> None:
    def span(u: str, i: int) -> dict[str, Any]:
        return {
            "traceId": uuid.UUID(u).hex,
            "spanId": f"{i:016x}",
            "parentSpanId": "",
            "name": f"s{i}",
            "service": "minik-test",
            "start": i,
            "end": i + 1,
            "attributes": {tracing.ATTR_UID: u},
            "links": [],
            "error": "",
        }

    store = tracestore.TraceStore(max_spans=10, max_per_object=4)
    a, b, c = uid(), uid(), uid()
    store.add(span(a, i) for i in range(6))  # the oldest two of a dropped
    assert [s["name"] for s in store.spans([a])] == ["s2", "s3", "s4", "s5"]
    assert len(store) == 4
    store.add(span(b, i) for i in range(4))
    store.add(span(c, i) for i in range(4))  # 12 > 10: a, touched longest ago, goes whole
    assert store.spans([a]) == []
    assert len(store) == 8
    assert len(store.spans([b])) == 4 and len(store.spans([c])) == 4


def test_decode_rejects_what_is_not_otlp() -> None:
    with pytest.raises(ValueError, match="OTLP"):
        tracestore.decode_otlp(b"\xff\xff not protobuf")


def fixed_spans(pod: str, svc: str) -> list[dict[str, Any]]:
    def s(
        name: str,
        service: str,
        start: int,
        end: int,
        u: str = pod,
        parent: str = "",
        ready: bool = False,
        kind: str = "Pod",
    ) -> dict[str, Any]:
        tid = uuid.UUID(u).hex
        attrs: dict[str, Any] = {"minik.pod.ready": True} if ready else {}
        return {
            "traceId": tid,
            "spanId": f"{abs(hash((name, start))) & 0xFFFFFFFFFFFFFFFF:016x}",
            "parentSpanId": parent or tid[16:],
            "name": name,
            "service": f"minik-{service}",
            "start": start,
            "end": end,
            "attributes": {tracing.ATTR_UID: u, tracing.ATTR_KIND: kind, tracing.ATTR_NAME: "web", **attrs},
            "links": [],
            "error": "",
        }

    ms = 1_000_000
    create = s("create pods", "apiserver", 0, 10 * ms)
    return [
        create,
        s("admission", "apiserver", 1 * ms, 2 * ms, parent=create["spanId"]),
        s("scheduling queue wait", "scheduler", 15 * ms, 20 * ms),
        s("bind", "scheduler", 20 * ms, 30 * ms),
        s("start sandbox", "kubelet", 40 * ms, 90 * ms),
        s("update pod status", "kubelet", 90 * ms, 100 * ms, ready=True),
        s(
            "update endpoints",
            "controller-manager",
            105 * ms,
            110 * ms,
            u=svc,
            kind="Service",
        ),
    ]


def test_summary_counts_steps_and_the_waits_between_components() -> None:
    pod, svc = uid(), uid()
    summary = trace_cmd.summary(fixed_spans(pod, svc), pod)
    assert summary is not None
    assert summary["createToReadySeconds"] == pytest.approx(0.100)
    # steps: 0-10, 15-30, 40-100 (admission is inside the create, the Service's span comes after)
    assert summary["stepsSeconds"] == pytest.approx(0.085)
    assert [(w["from"], w["to"], round(w["seconds"], 3)) for w in summary["waits"]] == [
        ("apiserver", "scheduler", 0.005),
        ("scheduler", "kubelet", 0.010),
    ]
    assert trace_cmd.summary(fixed_spans(pod, svc)[:3], pod) is None  # not Ready yet: no summary


def test_chain_to_running_adds_up_without_counting_overlaps_twice() -> None:
    """Overlapping top-level steps count only their uncovered part, a step inside another counts
    nothing, nested sub-steps are not steps, and the waits fill the gaps: the rows add up to the
    create request's arrival to the end of the status write with phase Running."""
    pod, svc = uid(), uid()
    ms = 1_000_000
    spans = fixed_spans(pod, svc)
    base = spans[0]

    def s(name: str, start: int, end: int, **attrs: Any) -> dict[str, Any]:
        return {
            **base,
            "spanId": f"{abs(hash((name, start, 'x'))) & 0xFFFFFFFFFFFFFFFF:016x}",
            "name": name,
            "service": "minik-kubelet",
            "start": start,
            "end": end,
            "attributes": {**base["attributes"], **attrs},
        }

    spans = [x for x in spans if x["name"] not in ("start sandbox", "update pod status")] + [
        s("start sandbox", 40 * ms, 70 * ms),
        s("create container web", 45 * ms, 50 * ms),  # inside start sandbox
        s("start container web", 65 * ms, 75 * ms),  # overlaps it: 5 ms counted
        s("update pod status", 78 * ms, 80 * ms, **{"minik.pod.phase": "Running", "minik.pod.ready": False}),
        s("readiness probe web", 79 * ms, 88 * ms),
        s("update pod status", 90 * ms, 100 * ms, **{"minik.pod.phase": "Running", "minik.pod.ready": True}),
    ]
    summary = trace_cmd.summary(spans, pod)
    assert summary is not None
    assert summary["createToRunningSeconds"] == pytest.approx(0.080)
    # steps: create 10, queue wait 5 + bind 10, sandbox 30, container start 5, status 2
    assert summary["stepsToRunningSeconds"] == pytest.approx(0.062)
    # waits: apiserver -> scheduler 5, scheduler -> kubelet 10, kubelet -> kubelet 3
    assert summary["waitsToRunningSeconds"] == pytest.approx(0.018)
    rows = summary["chain"]
    by_id = {x["spanId"]: x["name"] for x in spans}
    kinds = [(r["kind"], by_id.get(r.get("spanId", ""), "")) for r in rows if r["until"] == "Running"]
    assert ("inside", "create container web") in kinds
    assert ("step", "admission") not in kinds  # a part of the create request
    # after Running: the probe's rest (8 ms), a wait (2 ms), the Ready status write (10 ms)
    assert summary["totalToReadySeconds"] == pytest.approx(0.100)
    assert summary["createToReadySeconds"] == pytest.approx(0.100)

    from rich.console import Console

    buf = io.StringIO()
    out = trace_cmd.render(spans, {pod: "pod/web", svc: "service/web"}, "pod/web", 20, [summary])
    Console(file=buf, width=200, color_system=None).print(out)
    text = buf.getvalue()
    assert "COUNTED" in text
    assert "wait scheduler → kubelet" in text
    row = next(line for line in text.splitlines() if "start container web" in line)
    assert "10.0 ms" in row and "5.0 ms" in row
    assert "(inside)" in next(line for line in text.splitlines() if "create container web" in line)


def test_running_without_the_phase_attribute_is_the_first_status_write_after_a_start() -> None:
    pod, svc = uid(), uid()
    spans = fixed_spans(pod, svc)
    assert trace_cmd.running_at(spans, pod) is None  # no container started: no Running write
    start = {**spans[4], "spanId": "c" * 16, "name": "start container web", "start": 50, "end": 60}
    assert trace_cmd.running_at([*spans, start], pod) == spans[5]["end"]


def test_waterfall_rows_in_order_with_children_under_their_parent() -> None:
    from rich.console import Console

    pod, svc = uid(), uid()
    spans = fixed_spans(pod, svc)
    names = {pod: "pod/web", svc: "service/web"}
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None).print(trace_cmd.render(spans, names, "pod/web", width=20))
    lines = [line for line in buf.getvalue().splitlines() if line.strip()]
    assert lines[0].startswith("pod/web")
    assert "STEP" in lines[1] and "TIMELINE" in lines[1]
    rows = lines[2:]
    order = [
        "create pods",
        "admission",
        "scheduling queue wait",
        "bind",
        "start sandbox",
        "update pod status",
    ]
    positions = [next(i for i, r in enumerate(rows) if name in r) for name in order]
    assert positions == sorted(positions)
    admission = rows[positions[1]]
    assert admission.startswith("  pod/web: admission")  # indented under the create request
    assert "+1.0 ms" in admission and "1.0 ms" in admission
    sandbox = rows[positions[4]]
    assert "kubelet" in sandbox and "+40.0 ms" in sandbox and "50.0 ms" in sandbox
    # the bar: 50 of 110 ms from 40 ms, on a 20-column axis
    bar = sandbox.rstrip().rsplit(" ", 1)[-1]
    assert set(bar) == {"█"} and len(bar) == 9
    assert any("service/web: update endpoints" in r and "controller-manager" in r for r in rows)


def test_endpoint_links_name_the_pods_of_endpoints_and_slices() -> None:
    a, b = uid(), uid()
    endpoints = {
        "subsets": [
            {
                "addresses": [{"targetRef": {"kind": "Pod", "uid": a}}],
                "notReadyAddresses": [{"targetRef": {"kind": "Pod", "uid": b}}],
            }
        ]
    }
    slice_ = {"endpoints": [{"targetRef": {"kind": "Pod", "uid": a}}]}
    assert tracing.endpoint_pod_links([endpoints, slice_]) == [("pod", "Pod", a), ("pod", "Pod", b)]
