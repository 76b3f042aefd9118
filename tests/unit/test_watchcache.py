"""The watch cache's in-memory indexes: the sorted keys and the shared JSON of each object."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from apimachinery.resources import kind_info
from apiserver.etcd import KV, WatchEvent
from apiserver.watchcache import INITIAL_EVENTS_END, WatchCache

pytestmark = pytest.mark.unit

CM = kind_info("v1", "ConfigMap")


def put(cache: WatchCache, ns: str, name: str, rev: int, data: str = "x", created: int = 0) -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": {"k": data},
    }
    kv = KV(CM.key(ns, name).encode(), orjson.dumps(obj), rev, created or rev)
    cache._apply(WatchEvent("PUT", kv, None, rev))


def delete(cache: WatchCache, ns: str, name: str, rev: int) -> None:
    kv = KV(CM.key(ns, name).encode(), b"", rev, 0)
    cache._apply(WatchEvent("DELETE", kv, None, rev))


def names(items: list[dict[str, Any]]) -> list[str]:
    return [f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in items]


def new_cache() -> WatchCache:
    return WatchCache(etcd=None, info=CM)  # type: ignore[arg-type]  # events are applied by hand


def test_keys_stay_sorted_through_adds_and_deletes_and_lists_are_per_namespace() -> None:
    cache = new_cache()
    for rev, (ns, name) in enumerate([("b", "2"), ("a", "9"), ("b", "1"), ("ab", "1"), ("a", "10")], 1):
        put(cache, ns, name, rev)
    put(cache, "b", "1", 6, data="changed", created=3)  # an update keeps one entry
    assert names(cache.list(CM.key_prefix("a"))[0]) == ["a/10", "a/9"]
    assert names(cache.list(CM.key_prefix("b"))[0]) == ["b/1", "b/2"]
    assert names(cache.list(CM.key_prefix(None))[0]) == ["a/10", "a/9", "ab/1", "b/1", "b/2"]
    delete(cache, "a", "9", 7)
    delete(cache, "zz", "never-there", 8)
    assert names(cache.list(CM.key_prefix("a"))[0]) == ["a/10"]
    assert cache.keys(CM.key_prefix(None)) == sorted(cache.objects)
    assert cache.list(CM.key_prefix("b"))[0][0]["data"] == {"k": "changed"}


def test_encoded_is_shared_while_the_object_is_current_and_renewed_when_it_changes() -> None:
    cache = new_cache()
    put(cache, "a", "one", 1)
    obj = cache.get(CM.key("a", "one"))
    assert obj is not None
    first = cache.encoded(obj)
    assert orjson.loads(first) == obj
    assert cache.encoded(obj) is first  # encoded once
    put(cache, "a", "one", 2, data="two", created=1)
    newer = cache.get(CM.key("a", "one"))
    assert newer is not None and newer is not obj
    assert orjson.loads(cache.encoded(newer))["data"] == {"k": "two"}
    assert id(obj) not in cache._json  # the replaced object's bytes are gone
    # an object the cache does not hold (a DELETED event's copy, say) is encoded every time
    copy = dict(newer)
    assert orjson.loads(cache.encoded(copy)) == newer and id(copy) not in cache._json
    delete(cache, "a", "one", 3)
    assert cache._json == {}


async def test_watch_list_sends_the_namespace_in_order_then_the_bookmark_then_live_events() -> None:
    cache = new_cache()
    for rev, (ns, name) in enumerate([("a", "b"), ("x", "y"), ("a", "a")], 1):
        put(cache, ns, name, rev)
    w = cache.watch_list(CM.key_prefix("a"), None)
    put(cache, "a", "c", 4)  # after the watch started: a live event
    put(cache, "x", "z", 5)  # another namespace: not for this watcher
    got: list[tuple[str, dict[str, Any]]] = []

    async def read() -> None:
        async for batch in WatchCache.follow(w, batch=2):
            got.extend(batch)
            if len(got) == 4:
                return

    await asyncio.wait_for(read(), 5)
    assert [t for t, _ in got] == ["ADDED", "ADDED", "BOOKMARK", "ADDED"]
    assert names([o for _, o in got[:2]]) == ["a/a", "a/b"]
    assert got[2][1]["metadata"] == {"resourceVersion": "3", "annotations": {INITIAL_EVENTS_END: "true"}}
    assert names([got[3][1]]) == ["a/c"]
    assert w.closed  # follow() closes the watcher when its reader stops
