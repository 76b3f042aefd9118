"""The garbage collector's watch of custom kinds: started when a CustomResourceDefinition is
Established, stopped and dropped (with its objects leaving the graph) when the definition is deleted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from apimachinery.events import FakeRecorder
from apimachinery.informer import SharedInformerFactory
from apimachinery.resources import ResourceInfo, unregister_custom
from controllers.base import ControllerContext, Options
from controllers.garbagecollector import CRDS, GarbageCollector

pytestmark = pytest.mark.unit


class BlockingClient:
    """Lists never answer: the informers it serves run until stopped."""

    def __init__(self) -> None:
        self.listed: list[str] = []

    async def list_all(self, info: ResourceInfo, *args: Any, **kwargs: Any) -> Any:
        self.listed.append(info.plural)
        await asyncio.Event().wait()


def crd(name: str = "widgets.example.com") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": "uid-crd", "resourceVersion": "1"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
        "status": {"conditions": [{"type": "Established", "status": "True"}]},
    }


def widget(name: str, owner_uid: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "2"}
    if owner_uid:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": owner_uid}]
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta}


def test_informer_of_a_deleted_crds_kind_is_stopped_and_dropped() -> None:
    async def scenario() -> None:
        client = BlockingClient()
        factory = SharedInformerFactory(client)  # type: ignore[arg-type]
        ctx = ControllerContext(client, factory, lambda name: FakeRecorder(), Options())  # type: ignore[arg-type]
        gc = GarbageCollector(ctx)
        try:
            gc._added(CRDS, crd())
            assert "widgets.example.com" in gc.kinds
            _, task = gc.custom["widgets.example.com"]
            _, inf = gc.kinds["widgets.example.com"]
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert client.listed == ["widgets"] and not task.done()  # watching the kind
            # a widget owned by a config map is in the graph
            w = widget("w1", owner_uid="uid-owner")
            inf.store.add(w)
            gc._added("widgets.example.com", w)
            assert gc.uids["uid-w1"] == "widgets.example.com|ns/w1"
            assert gc.dependents["uid-owner"] == {"widgets.example.com|ns/w1"}

            # an update of the definition changes nothing
            gc._updated(CRDS, crd(), crd())
            assert gc.custom["widgets.example.com"][1] is task

            gc._deleted(CRDS, crd())
            assert "widgets.example.com" not in gc.kinds and "widgets.example.com" not in gc.custom
            assert inf.stopped
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
            assert task.done()
            # its objects left the graph
            assert "uid-w1" not in gc.uids and "uid-owner" not in gc.dependents
            # a key of the dropped kind still on the queue is let go
            await gc.reconcile("widgets.example.com|ns/w1")

            # the definition made again: watched again, by a new informer
            gc._added(CRDS, crd())
            _, again = gc.custom["widgets.example.com"]
            assert again is not task and gc.kinds["widgets.example.com"][1] is not inf
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert client.listed == ["widgets", "widgets"]
            gc._deleted(CRDS, crd())
            await asyncio.wait_for(asyncio.gather(again, return_exceptions=True), 5)
            assert not gc.custom
        finally:
            for _, t in list(gc.custom.values()):
                t.cancel()
            unregister_custom("widgets.example.com")

    asyncio.run(scenario())
