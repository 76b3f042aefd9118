"""Event correlation as the kubelet records: equal events become one Event with a count."""

from __future__ import annotations

from collections import OrderedDict

from apimachinery import events

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "prod", "uid": "u1", "resourceVersion": "7"},
}


def ev(
    reason: str, message: str, field: str = "spec.containers{c}", now: str = "2024-01-01T00:00:00Z"
) -> dict:
    return events.new_event(POD, "Warning", reason, message, now, "kubelet", "node-1", field_path=field)


def test_new_event_points_at_the_pod_and_container() -> None:
    e = ev("BackOff", "Back-off restarting failed container")
    assert e["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "web",
        "namespace": "prod",
        "uid": "u1",
        "resourceVersion": "7",
        "fieldPath": "spec.containers{c}",
    }
    assert e["source"] == {"component": "kubelet", "host": "node-1"}
    assert e["metadata"]["namespace"] == "prod" and e["metadata"]["name"].startswith("web.")
    assert e["count"] == 1 and e["firstTimestamp"] == e["lastTimestamp"]
    assert (
        "fieldPath"
        not in events.new_event(POD, "Warning", "FailedMount", "m", "t", "kubelet", "n")["involvedObject"]
    )


def test_equal_events_are_counted_on_the_first() -> None:
    cache: OrderedDict = OrderedDict()
    first = events.correlate(cache, ev("Unhealthy", "Liveness probe failed: x"))
    assert first.verb == "create"
    again = events.correlate(cache, ev("Unhealthy", "Liveness probe failed: x", now="2024-01-01T00:01:00Z"))
    assert (again.verb, again.name, again.count) == ("patch", first.body["metadata"]["name"], 2)
    assert events.correlate(cache, ev("Unhealthy", "Liveness probe failed: x")).count == 3
    # another message, container or reason is another event
    assert events.correlate(cache, ev("Unhealthy", "Liveness probe failed: y")).verb == "create"
    assert (
        events.correlate(cache, ev("Unhealthy", "Liveness probe failed: x", "spec.containers{d}")).verb
        == "create"
    )
    assert events.correlate(cache, ev("Killing", "Liveness probe failed: x")).verb == "create"


def test_cache_is_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(events, "CACHE_SIZE", 3)
    cache: OrderedDict = OrderedDict()
    for i in range(5):
        events.correlate(cache, ev("Pulled", f"m{i}"))
    assert len(cache) == 3
    assert events.correlate(cache, ev("Pulled", "m0")).verb == "create"  # evicted, so new
    assert events.correlate(cache, ev("Pulled", "m4")).verb == "patch"


def test_recorder_holds_writes_while_pods_start() -> None:
    import asyncio

    written: list[str] = []

    class FakeClient:
        async def create(self, info: object, body: dict) -> dict:
            written.append(body["reason"])
            return body

    async def scenario() -> None:
        rec = events.EventRecorder(FakeClient(), "kubelet", "node-1", max_hold=30)
        task = asyncio.create_task(rec.run())
        with rec.hold():
            rec.event(POD, "Normal", "Created", "Created container c", "spec.containers{c}", "t")
            for _ in range(20):
                await asyncio.sleep(0)
            assert written == []  # held while the pod starts
        for _ in range(100):
            if written:
                break
            await asyncio.sleep(0.01)
        assert written == ["Created"]
        # held no longer than max_hold after being recorded
        rec.max_hold = 0
        with rec.hold():
            rec.event(POD, "Normal", "Started", "Started container c", "spec.containers{c}", "t")
            for _ in range(100):
                if len(written) == 2:
                    break
                await asyncio.sleep(0.01)
            assert written == ["Created", "Started"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
