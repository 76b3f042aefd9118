"""minik-metrics-server's metrics.k8s.io handlers over in-memory informer stores: lists, gets,
label selectors, Status errors and the authorization attributes each request asks about."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from starlette.requests import Request

from apimachinery import errors
from apimachinery.informer import Informer, Store
from metricsserver import scrape
from metricsserver.main import PREFIX, build_app
from metricsserver.main import Store as MetricsStore

pytestmark = pytest.mark.unit

# a client of the app, the authorization attributes it was asked about, and a switch to deny
Setup = tuple[httpx.AsyncClient, list[dict[str, Any]], dict[str, bool]]


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def pod(ns: str, name: str, node_name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "labels": labels}, "spec": {"nodeName": node_name}}


def sample(ts: float, cpu: float, pods: list[tuple[str, str]]) -> scrape.NodeSample:
    point = scrape.Point(ts=ts, cpu=cpu, memory=1 << 20, start=1.0)
    return scrape.NodeSample(
        node=scrape.Point(ts=ts, cpu=cpu, memory=1 << 30),
        containers={(ns, name, "main"): point for ns, name in pods},
    )


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    nodes, pods = Store(), Store()
    for n in (node("n2", zone="b"), node("n1", zone="a"), node("n3", zone="a")):  # n3: no samples
        nodes.add(n)
    on_n1 = [("default", "web"), ("default", "api"), ("kube-system", "dns")]
    for ns, name in on_n1:
        pods.add(pod(ns, name, "n1", app=name))
    pods.add(pod("default", "lonely", "n3", app="lonely"))  # its node has no samples
    store = MetricsStore()
    for name, pairs in (("n1", on_n1), ("n2", [])):
        store.put(name, sample(100.0, 10.0, pairs))
        store.put(name, sample(110.0, 15.0, pairs))
    asked: list[dict[str, Any]] = []
    deny = {"on": False}

    async def authorize(request: Request, attributes: dict[str, Any]) -> None:
        asked.append(attributes)
        if deny["on"]:
            raise errors.Forbidden("no")

    app = build_app(
        store,
        cast(Informer, SimpleNamespace(store=nodes)),
        cast(Informer, SimpleNamespace(store=pods)),
        authorize,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://metrics-server"
    ) as c:
        yield c, asked, deny


def metrics_attrs(resource: str, verb: str, **more: str) -> dict[str, str]:
    return {"group": "metrics.k8s.io", "version": "v1beta1", "resource": resource, "verb": verb, **more}


def names(body: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(i["metadata"].get("namespace"), i["metadata"]["name"]) for i in body["items"]]


async def test_node_list_and_get(setup: Setup) -> None:
    c, asked, _ = setup
    r = await c.get(PREFIX + "/nodes")
    assert r.status_code == 200
    body = r.json()
    assert body["kind"] == "NodeMetricsList" and body["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert body["metadata"] == {"resourceVersion": ""}
    assert names(body) == [(None, "n1"), (None, "n2")]  # sorted; n3 has no samples
    assert body["items"][0]["usage"]["cpu"] == "500000000n"
    assert asked[-1] == {"resourceAttributes": metrics_attrs("nodes", "list")}
    assert names((await c.get(PREFIX + "/nodes", params={"labelSelector": "zone=a"})).json()) == [
        (None, "n1")
    ]

    r = await c.get(PREFIX + "/nodes/n2")
    assert r.status_code == 200 and r.json()["kind"] == "NodeMetrics" and r.json()["metadata"]["name"] == "n2"
    assert asked[-1]["resourceAttributes"] == metrics_attrs("nodes", "get", name="n2")
    for missing in ("n3", "nope"):
        r = await c.get(PREFIX + f"/nodes/{missing}")
        assert r.status_code == 404
        assert r.json()["reason"] == "NotFound"
        assert r.json()["details"]["kind"] == "nodemetrics" and r.json()["details"]["name"] == missing


async def test_pod_list_and_get(setup: Setup) -> None:
    c, asked, _ = setup
    r = await c.get(PREFIX + "/pods")
    assert r.status_code == 200
    body = r.json()
    assert body["kind"] == "PodMetricsList" and body["metadata"] == {"resourceVersion": ""}
    assert names(body) == [("default", "api"), ("default", "web"), ("kube-system", "dns")]
    assert asked[-1]["resourceAttributes"] == metrics_attrs("pods", "list", namespace="")
    r = await c.get(PREFIX + "/namespaces/default/pods", params={"labelSelector": "app in (web,lonely)"})
    assert names(r.json()) == [("default", "web")]
    assert asked[-1]["resourceAttributes"]["namespace"] == "default"
    assert names((await c.get(PREFIX + "/namespaces/other/pods")).json()) == []

    r = await c.get(PREFIX + "/namespaces/kube-system/pods/dns")
    assert r.status_code == 200 and r.json()["kind"] == "PodMetrics"
    assert r.json()["containers"][0]["name"] == "main"
    assert asked[-1]["resourceAttributes"] == metrics_attrs(
        "pods", "get", namespace="kube-system", name="dns"
    )
    for ns, missing in (("default", "lonely"), ("default", "dns"), ("default", "nope")):
        r = await c.get(PREFIX + f"/namespaces/{ns}/pods/{missing}")
        assert r.status_code == 404
        assert r.json()["details"]["kind"] == "podmetrics" and r.json()["details"]["name"] == missing


async def test_bad_selector_and_forbidden_are_status_errors(setup: Setup) -> None:
    c, _, deny = setup
    for path in ("/nodes", "/pods", "/namespaces/default/pods"):
        r = await c.get(PREFIX + path, params={"labelSelector": "a in (("})
        assert r.status_code == 400 and r.json()["kind"] == "Status" and r.json()["reason"] == "BadRequest"
    deny["on"] = True
    for path in ("/nodes", "/nodes/n1", "/pods", "/namespaces/default/pods/web"):
        r = await c.get(PREFIX + path)
        assert r.status_code == 403 and r.json()["reason"] == "Forbidden"
