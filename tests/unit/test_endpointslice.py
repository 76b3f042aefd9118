"""EndpointSlices: the controller's plan, the proxy's and DNS's reading of slices, defaults and
validation."""

from __future__ import annotations

from typing import Any

from dnslib import DNSRecord

from apimachinery.defaults import apply_defaults
from apimachinery.informer import Store
from apimachinery.resources import kind_info
from apiserver.validation import validate
from controllers.endpointslice import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    plan_slices,
    slice_service_index,
)
from proxy.dns import Resolver
from proxy.model import ready_endpoints

SLICES = kind_info("discovery.k8s.io/v1", "EndpointSlice")


def service(**spec: Any) -> dict[str, Any]:
    spec.setdefault("selector", {"app": "web"})
    spec.setdefault("ports", [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    return {
        "metadata": {"name": "web", "namespace": "shop", "uid": "svc-uid", "labels": {"tier": "fe"}},
        "spec": spec,
    }


def pod(
    name: str,
    ip: str | None = "10.244.0.1",
    ready: bool = True,
    node: str = "n1",
    port: int = 8080,
    deleting: bool = False,
    phase: str = "Running",
    **spec: Any,
) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": "shop", "uid": f"uid-{name}", "labels": {"app": "web"}}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}]}
    if ip:
        status["podIP"] = ip
    return {
        "metadata": md,
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": port}]}],
            **spec,
        },
        "status": status,
    }


def stored(slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Created slices as the API server would store them (a name, a creation time)."""
    out = []
    for i, s in enumerate(slices):
        s = {
            **s,
            "metadata": {
                **s["metadata"],
                "name": f"web-{i:05d}",
                "creationTimestamp": f"2026-01-01T00:00:{i:02d}Z",
            },
        }
        out.append(s)
    return out


def test_slice_carries_labels_owner_ports_and_endpoint_conditions() -> None:
    pods = [
        pod("a", "10.244.0.1"),
        pod("b", "10.244.0.2", ready=False),
        pod("c", "10.244.0.3", deleting=True),
        pod("d", None),  # no IP yet
        pod("e", "10.244.0.5", phase="Succeeded"),
    ]
    plan = plan_slices(service(), pods, [], zones={"n1": "zone-a"})
    assert not plan.update and not plan.delete
    [s] = plan.create
    md = s["metadata"]
    assert md["generateName"] == "web-"
    assert md["labels"] == {"tier": "fe", SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: MANAGED_BY}
    assert md["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "web",
            "uid": "svc-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    conditions = {e["targetRef"]["name"]: e["conditions"] for e in s["endpoints"]}
    assert conditions == {
        "a": {"ready": True, "serving": True, "terminating": False},
        "b": {"ready": False, "serving": False, "terminating": False},
        "c": {"ready": False, "serving": True, "terminating": True},
    }
    a = s["endpoints"][0]
    assert a["addresses"] == ["10.244.0.1"] and a["nodeName"] == "n1" and a["zone"] == "zone-a"
    assert a["targetRef"] == {"kind": "Pod", "namespace": "shop", "name": "a", "uid": "uid-a"}


def test_publish_not_ready_addresses_makes_every_endpoint_ready() -> None:
    plan = plan_slices(service(publishNotReadyAddresses=True), [pod("b", ready=False)], [])
    assert plan.create[0]["endpoints"][0]["conditions"] == {
        "ready": True,
        "serving": False,
        "terminating": False,
    }


def test_named_target_ports_resolved_per_pod_split_slices_by_port() -> None:
    svc = service(
        ports=[{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}]
    )
    plan = plan_slices(svc, [pod("a", "10.0.0.1", port=8080), pod("b", "10.0.0.2", port=9090)], [])
    got = sorted((s["ports"][0]["port"], [e["addresses"][0] for e in s["endpoints"]]) for s in plan.create)
    assert got == [(8080, ["10.0.0.1"]), (9090, ["10.0.0.2"])]
    assert plan.create[0]["ports"][0]["appProtocol"] == "http"


def test_at_most_max_endpoints_per_slice_and_updates_keep_endpoints_in_place() -> None:
    pods = [pod(f"p{i:03d}", f"10.1.{i // 250}.{i % 250 + 1}") for i in range(250)]
    plan = plan_slices(service(), pods, [])
    assert [len(s["endpoints"]) for s in plan.create] == [100, 100, 50]
    existing = stored(plan.create)
    # level-triggered: the same world plans no writes
    again = plan_slices(service(), pods, existing)
    assert not again.create and not again.update and not again.delete
    # one pod gone from the first slice, one new pod: only the slices that change are written
    pods2 = [p for p in pods if p["metadata"]["name"] != "p000"] + [pod("zzz", "10.9.9.9")]
    plan2 = plan_slices(service(), pods2, existing)
    assert not plan2.create and not plan2.delete
    assert [s["metadata"]["name"] for s in plan2.update] == ["web-00000"]
    names = [e["targetRef"]["name"] for e in plan2.update[0]["endpoints"]]
    assert "p000" not in names and names[-1] == "zzz" and len(names) == 100
    # the other slices keep their endpoints exactly
    assert all(len(s["endpoints"]) <= 100 for s in plan2.update)


def test_unneeded_slices_deleted_and_a_placeholder_kept_without_endpoints() -> None:
    pods = [pod(f"p{i:03d}", f"10.1.0.{i + 1}") for i in range(150)]
    existing = stored(plan_slices(service(), pods, []).create)
    shrink = plan_slices(service(), pods[:10], existing)
    assert [s["metadata"]["name"] for s in shrink.delete] == ["web-00001"]
    assert not shrink.create
    empty = plan_slices(service(), [], existing)
    assert [s["metadata"]["name"] for s in empty.update] == ["web-00000"]
    assert empty.update[0]["endpoints"] == [] and empty.update[0]["ports"] == []
    assert [s["metadata"]["name"] for s in empty.delete] == ["web-00001"]
    fresh = plan_slices(service(), [], [])
    assert len(fresh.create) == 1 and fresh.create[0]["endpoints"] == []


def test_hostname_for_pods_in_the_service_subdomain_and_headless_label() -> None:
    svc = service(clusterIP="None")
    plan = plan_slices(
        svc, [pod("db-0", hostname="db-0", subdomain="web"), pod("x", "10.0.0.9", hostname="x")], []
    )
    [s] = plan.create
    assert s["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert {e["targetRef"]["name"]: e.get("hostname") for e in s["endpoints"]} == {"db-0": "db-0", "x": None}


def test_service_index_only_for_managed_slices() -> None:
    s = {
        "metadata": {"namespace": "shop", "labels": {SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: MANAGED_BY}}
    }
    assert slice_service_index(s) == "shop/web"
    assert (
        slice_service_index({"metadata": {"namespace": "shop", "labels": {SERVICE_NAME_LABEL: "web"}}})
        is None
    )


def endpoint_slice(
    name: str, ports: list[dict[str, Any]], endpoints: list[dict[str, Any]], svc: str = "db"
) -> dict[str, Any]:
    return {
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default", "labels": {SERVICE_NAME_LABEL: svc}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }


def ep(ip: str, ready: bool = True, hostname: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [ip], "conditions": {"ready": ready}}
    if hostname:
        out["hostname"] = hostname
    return out


def test_proxy_merges_ready_endpoints_of_every_slice() -> None:
    http = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    slices = [
        endpoint_slice("web-a", http, [ep("10.0.0.2"), ep("10.0.0.9", ready=False)]),
        endpoint_slice("web-b", [{"name": "http", "port": 8081, "protocol": "TCP"}], [ep("10.0.0.3")]),
        endpoint_slice("web-c", http, [ep("10.0.0.2")]),  # the same endpoint twice counts once
    ]
    assert ready_endpoints(slices, "http") == [("10.0.0.2", 8080), ("10.0.0.3", 8081)]
    assert ready_endpoints(slices, "metrics") == []
    assert ready_endpoints([], "http") == []


def test_dns_answers_headless_names_from_slices() -> None:
    services, slices = Store(), Store()
    services.add(
        {
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]},
        }
    )
    pg = [{"name": "pg", "port": 5432, "protocol": "TCP"}]
    slices.add(
        endpoint_slice("db-1", pg, [ep("10.244.0.5", hostname="db-0"), ep("10.244.0.7", False, "db-2")])
    )
    slices.add(endpoint_slice("db-2", pg, [ep("10.244.0.6", hostname="db-1")]))
    slices.add(endpoint_slice("other-1", pg, [ep("10.244.9.9")], svc="other"))
    endpoints = Store()  # an Endpoints object the slices take precedence over
    endpoints.add(
        {"metadata": {"name": "db", "namespace": "default"}, "subsets": [{"addresses": [{"ip": "10.9.9.9"}]}]}
    )
    r = Resolver(services, endpoints, slices)

    def answers(name: str, qtype: str = "A") -> list[str]:
        return sorted(str(rr.rdata) for rr in r.resolve(DNSRecord.question(name, qtype)).rr)

    assert answers("db.default.svc.cluster.local") == ["10.244.0.5", "10.244.0.6"]
    assert answers("db-1.db.default.svc.cluster.local") == ["10.244.0.6"]
    assert answers("_pg._tcp.db.default.svc.cluster.local", "SRV") == [
        "0 100 5432 db-0.db.default.svc.cluster.local.",
        "0 100 5432 db-1.db.default.svc.cluster.local.",
    ]


def slice_obj(**fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-x", "namespace": "shop"}, "addressType": "IPv4", **fields}


def test_defaults_and_validation() -> None:
    obj = slice_obj(ports=[{"port": 80}], endpoints=[{"addresses": ["10.0.0.1"]}])
    apply_defaults(SLICES, obj)
    assert obj["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]
    assert validate(SLICES, obj) == []

    def fields(o: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
        apply_defaults(SLICES, o)
        return sorted(c["field"] for c in validate(SLICES, o, old))

    assert fields(slice_obj(addressType=None)) == ["addressType"]
    assert fields(slice_obj(addressType="IPX")) == ["addressType"]
    assert fields(slice_obj(endpoints=[{"addresses": []}, {"addresses": ["fe80::1"]}])) == [
        "endpoints[0].addresses",
        "endpoints[1].addresses[0]",
    ]
    assert fields(
        slice_obj(ports=[{"name": "Bad_Name", "port": 0}, {"name": "ok", "port": 1, "protocol": "ICMP"}])
    ) == [
        "ports[0].name",
        "ports[0].port",
        "ports[1].protocol",
    ]
    assert fields(slice_obj(ports=[{"name": "a", "port": 1}, {"name": "a", "port": 2}])) == ["ports[1].name"]
    assert fields(slice_obj(endpoints=[{"addresses": ["10.0.0.1"]}] * 1001)) == ["endpoints"]
    old = slice_obj()
    assert fields(slice_obj(addressType="IPv6"), old) == ["addressType"]


def test_table_columns_and_cells_as_kubectl_prints_them() -> None:
    from datetime import UTC, datetime

    from apimachinery.printers import column_definitions, row_cells

    assert [c["name"] for c in column_definitions(SLICES)] == [
        "Name",
        "AddressType",
        "Ports",
        "Endpoints",
        "Age",
    ]
    obj = slice_obj(
        ports=[{"name": "http", "port": 80}, {"name": "a", "port": 81}, {"name": "b"}, {"port": 83}],
        endpoints=[{"addresses": [f"10.0.0.{i}"]} for i in range(1, 6)],
    )
    obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    now = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert row_cells(SLICES, obj, now) == [
        "web-x",
        "IPv4",
        "80,81,b + 1 more...",
        "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...",
        "5m",
    ]
    assert row_cells(SLICES, slice_obj(), now)[2:4] == ["<unset>", "<unset>"]


def test_reconcile_waits_for_its_own_writes_before_planning_again() -> None:
    import asyncio

    from controllers.endpointslice import WRITE_EXPECTATION_TTL, EndpointSliceController
    from tests.unit.test_controllers_reconcile import FakeClient, make_ctx

    client = FakeClient()
    ctx, _ = make_ctx(client)
    clock = [100.0]
    ctx.monotonic = lambda: clock[0]
    c = EndpointSliceController(ctx)
    c.svc_informer.store.add(service())
    c.pod_informer.store.add(pod("a", "10.0.0.1"))

    asyncio.run(c.reconcile("shop/web"))
    assert client.verbs() == [("create", "endpointslices")]
    created = client.actions[0][3]
    assert created["metadata"]["labels"][SERVICE_NAME_LABEL] == "web"
    # the cache has not shown the new slice yet: no second create
    asyncio.run(c.reconcile("shop/web"))
    assert client.verbs() == [("create", "endpointslices")]
    # once it has, the world is as wanted: no writes; a new pod updates that slice in place
    c.slice_informer.store.add(created)
    asyncio.run(c.reconcile("shop/web"))
    assert client.verbs() == [("create", "endpointslices")]
    c.pod_informer.store.add(pod("b", "10.0.0.2"))
    asyncio.run(c.reconcile("shop/web"))
    assert client.verbs()[1:] == [("update", "endpointslices")]
    assert [e["addresses"] for e in client.actions[1][3]["endpoints"]] == [["10.0.0.1"], ["10.0.0.2"]]
    # a write the cache never shows (deleted meanwhile) is forgotten after a while
    asyncio.run(c.reconcile("shop/web"))
    assert len(client.actions) == 2
    clock[0] += WRITE_EXPECTATION_TTL + 1
    asyncio.run(c.reconcile("shop/web"))
    assert client.verbs()[2:] == [("update", "endpointslices")]
    # the Service gone: its slices are deleted
    c.svc_informer.store.delete(service())
    c.slice_informer.store.add(client.actions[2][3])
    clock[0] += WRITE_EXPECTATION_TTL + 1
    asyncio.run(c.reconcile("shop/web"))
    assert client.actions[-1][:3] == ("delete", "endpointslices", created["metadata"]["name"])
