"""ClusterIP and NodePort allocation in a real API server over a real etcd."""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from testkit.processes import APIServerProcess, EtcdProcess

SVC = "/api/v1/namespaces/default/services"


def svc(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ports": [{"port": 80, "targetPort": 8080}]}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


def create(api: httpx.Client, name: str, **spec: Any) -> httpx.Response:
    return api.post(SVC, json=svc(name, **spec))


def test_cluster_ip_allocated_in_range_and_released(api: httpx.Client) -> None:
    r = create(api, "alloc-a")
    assert r.status_code == 201, r.text
    ip = r.json()["spec"]["clusterIP"]
    assert r.json()["spec"]["clusterIPs"] == [ip]
    net = ipaddress.ip_network("10.96.0.0/12")
    assert ipaddress.ip_address(ip) in net
    assert ip not in ("10.96.0.0", "10.96.0.1", "10.111.255.255")
    # a second service asking for the same address gets Kubernetes' 422
    r2 = create(api, "alloc-b", clusterIP=ip)
    assert r2.status_code == 422, r2.text
    assert "provided IP is already allocated" in r2.json()["message"]
    assert r2.json()["details"]["causes"][0]["field"] == "spec.clusterIPs"
    # released on delete: now it can be requested
    assert api.delete(f"{SVC}/alloc-a").status_code == 200
    r3 = create(api, "alloc-b", clusterIP=ip)
    assert r3.status_code == 201, r3.text
    assert r3.json()["spec"]["clusterIP"] == ip
    api.delete(f"{SVC}/alloc-b")


def test_requested_ip_out_of_range_is_invalid(api: httpx.Client) -> None:
    r = create(api, "alloc-out", clusterIP="192.168.7.7")
    assert r.status_code == 422
    assert "is not in the valid range. The range of valid IPs is 10.96.0.0/12" in r.json()["message"]


def test_headless_and_external_name(api: httpx.Client) -> None:
    r = create(api, "alloc-headless", clusterIP="None")
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["clusterIP"] == "None"
    assert r.json()["spec"]["clusterIPs"] == ["None"]
    r = api.post(
        SVC,
        json={
            "metadata": {"name": "alloc-ext"},
            "spec": {"type": "ExternalName", "externalName": "db.example.org"},
        },
    )
    assert r.status_code == 201, r.text
    assert "clusterIP" not in r.json()["spec"]
    api.delete(f"{SVC}/alloc-headless")
    api.delete(f"{SVC}/alloc-ext")


def test_node_ports(api: httpx.Client) -> None:
    r = create(
        api,
        "alloc-np",
        type="NodePort",
        ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30123}],
    )
    assert r.status_code == 201, r.text
    ports = r.json()["spec"]["ports"]
    assert ports[1]["nodePort"] == 30123
    assert 30000 <= ports[0]["nodePort"] <= 32767 and ports[0]["nodePort"] != 30123
    r2 = create(api, "alloc-np2", type="LoadBalancer", ports=[{"port": 80, "nodePort": 30123}])
    assert r2.status_code == 422
    body = r2.json()
    assert "provided port is already allocated" in body["message"]
    assert body["details"]["causes"][0]["field"] == "spec.ports[0].nodePort"
    r3 = create(api, "alloc-np3", type="NodePort", ports=[{"port": 80, "nodePort": 20000}])
    assert r3.status_code == 422
    assert "The range of valid ports is 30000-32767" in r3.json()["message"]
    # LoadBalancer gets a node port too
    r4 = create(api, "alloc-lb", type="LoadBalancer")
    assert r4.status_code == 201, r4.text
    assert 30000 <= r4.json()["spec"]["ports"][0]["nodePort"] <= 32767
    api.delete(f"{SVC}/alloc-lb")
    # changing to ClusterIP releases the node ports
    cur = api.get(f"{SVC}/alloc-np").json()
    cur["spec"]["type"] = "ClusterIP"
    cur["spec"].pop("externalTrafficPolicy", None)
    for p in cur["spec"]["ports"]:
        p.pop("nodePort")
    r5 = api.put(f"{SVC}/alloc-np", json=cur)
    assert r5.status_code == 200, r5.text
    r6 = create(api, "alloc-np4", type="NodePort", ports=[{"port": 80, "nodePort": 30123}])
    assert r6.status_code == 201, r6.text
    api.delete(f"{SVC}/alloc-np")
    api.delete(f"{SVC}/alloc-np4")


def test_update_keeps_cluster_ip_and_node_ports(api: httpx.Client) -> None:
    r = create(api, "alloc-upd", type="NodePort")
    assert r.status_code == 201, r.text
    ip, node_port = r.json()["spec"]["clusterIP"], r.json()["spec"]["ports"][0]["nodePort"]
    body = svc("alloc-upd", type="NodePort")  # a PUT that omits clusterIP and nodePort
    body["metadata"]["labels"] = {"x": "y"}
    r2 = api.put(f"{SVC}/alloc-upd", json=body)
    assert r2.status_code == 200, r2.text
    assert r2.json()["spec"]["clusterIP"] == ip
    assert r2.json()["spec"]["ports"][0]["nodePort"] == node_port
    # a merge patch that leaves the spec alone keeps them too
    r3 = api.patch(
        f"{SVC}/alloc-upd",
        json={"spec": {"ports": [{"port": 80, "targetPort": 9090}]}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r3.status_code == 200, r3.text
    assert r3.json()["spec"]["clusterIP"] == ip
    assert r3.json()["spec"]["ports"][0]["nodePort"] == node_port
    # the clusterIP is immutable
    cur = r3.json()
    cur["spec"]["clusterIP"] = "10.96.0.77"
    cur["spec"]["clusterIPs"] = ["10.96.0.77"]
    assert api.put(f"{SVC}/alloc-upd", json=cur).status_code == 422
    api.delete(f"{SVC}/alloc-upd")


def test_concurrent_creates_never_share_an_ip(apiserver: APIServerProcess) -> None:
    def make(i: int) -> str:
        with apiserver.http() as c:
            r = c.post(SVC, json=svc(f"conc-{i}", type="NodePort"))
            assert r.status_code == 201, r.text
            return f"{r.json()['spec']['clusterIP']}/{r.json()['spec']['ports'][0]['nodePort']}"

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(make, range(40)))
    ips = [r.split("/")[0] for r in results]
    ports = [r.split("/")[1] for r in results]
    assert len(set(ips)) == 40 and len(set(ports)) == 40
    with apiserver.http() as c:
        for i in range(40):
            c.delete(f"{SVC}/conc-{i}")


def test_repair_at_start_rebuilds_the_records() -> None:
    """A server restarted on the same etcd: what services hold stays allocated (the records are
    rebuilt from the services), and a leaked record entry is freed."""
    ranges = ["--service-cluster-ip-range", "10.100.0.0/29", "--service-node-port-range", "31000-31002"]
    etcd = EtcdProcess()
    server = APIServerProcess(etcd.url)
    try:
        etcd.start()
        server.start(extra=ranges)
        with server.http() as c:
            made = [c.post(SVC, json=svc(f"rep-{i}", type="NodePort")) for i in range(3)]
            made.append(c.post(SVC, json=svc("rep-3")))
            assert all(r.status_code == 201 for r in made), [r.text for r in made]
            got = {r.json()["spec"]["clusterIP"] for r in made}
            assert len(got) == 4
        server.stop()
        server.start(extra=ranges)
        with server.http() as c:
            # 10.100.0.2-.6 are allocatable (.1 is kept for the kubernetes service): one is left
            r = c.post(SVC, json=svc("rep-x"))
            assert r.status_code == 201, r.text
            assert r.json()["spec"]["clusterIP"] not in got
            r = c.post(SVC, json=svc("rep-y"))
            assert r.status_code == 500 and "range is full" in r.json()["message"]
            r = c.post(SVC, json=svc("rep-z", clusterIP="None", type="NodePort"))
            assert r.status_code == 500 and "range is full" in r.json()["message"]
            assert c.delete(f"{SVC}/rep-0").status_code == 200
            r = c.post(SVC, json=svc("rep-z", clusterIP="None", type="NodePort"))
            assert r.status_code == 201, r.text
    finally:
        server.cleanup()
        etcd.cleanup()
