"""In-cluster access over a real etcd and API server: the ``kubernetes`` Service with its Endpoints
and EndpointSlice kept by the API server, and the ``kube-root-ca.crt`` ConfigMap the controller
manager's root CA publisher keeps in every namespace.  Both put back what is deleted or changed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apiserver.kubernetes_service import DEFAULT_INTERVAL
from testkit import wait
from testkit.processes import APIServerProcess, EtcdProcess, Process, controller_manager, dump_logs

SVC = "/api/v1/namespaces/default/services/kubernetes"
EP = "/api/v1/namespaces/default/endpoints/kubernetes"
SLICE = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes"


def get(api: httpx.Client, path: str) -> dict[str, Any] | None:
    r = api.get(path)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return dict(r.json())


def until(check: Any, what: str, timeout: float = 60) -> Any:
    return wait.wait_for(check, timeout, what, 0.1, retry_errors=True)


def test_kubernetes_service_endpoints_and_slice(apiserver: APIServerProcess, api: httpx.Client) -> None:
    svc = until(lambda: get(api, SVC), "service default/kubernetes")
    assert svc["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["clusterIP"] == "10.96.0.1"  # the first address of the default 10.96.0.0/12
    assert spec["clusterIPs"] == ["10.96.0.1"]
    assert "selector" not in spec or not spec["selector"]
    [port] = spec["ports"]
    assert (port["name"], port["port"], port["protocol"]) == ("https", 443, "TCP")
    assert port["targetPort"] == apiserver.port

    ep = until(lambda: get(api, EP), "endpoints default/kubernetes")
    assert ep["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] == "true"
    [subset] = ep["subsets"]
    [address] = subset["addresses"]
    assert address["ip"]
    assert subset["ports"] == [{"name": "https", "port": apiserver.port, "protocol": "TCP"}]

    es = until(lambda: get(api, SLICE), "endpointslice default/kubernetes")
    assert es["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    assert es["addressType"] == "IPv4"
    assert [e["addresses"] for e in es["endpoints"]] == [[address["ip"]]]
    assert es["endpoints"][0]["conditions"]["ready"] is True
    assert [(p["name"], p["port"], p["protocol"]) for p in es["ports"]] == [("https", apiserver.port, "TCP")]

    # the address is reserved: nobody else can have it
    r = api.post(
        "/api/v1/namespaces/default/services",
        json={"metadata": {"name": "thief"}, "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 1}]}},
    )
    assert r.status_code == 422, r.text
    assert "provided IP is already allocated" in r.json()["message"]


def test_an_idle_server_keeps_etcd_revision_still(api: httpx.Client) -> None:
    """The server's own endpoint record lives on an etcd lease kept alive without a write, so an
    idle cluster's revision (every list's resourceVersion) does not creep every 10 s."""

    def revision() -> int:
        r = api.get("/api/v1/namespaces")
        assert r.status_code == 200, r.text
        return int(r.json()["metadata"]["resourceVersion"])

    until(lambda: get(api, SVC) is not None, "the kubernetes Service")
    before = revision()
    time.sleep(DEFAULT_INTERVAL + 3)  # more than one reconcile pass (and keep-alive) of the server
    assert revision() == before


def test_kubernetes_service_repaired_when_deleted_or_changed(api: httpx.Client) -> None:
    first = until(lambda: get(api, SVC), "service default/kubernetes")
    good_ep = until(lambda: get(api, EP), "endpoints default/kubernetes")
    assert api.delete(SVC).status_code == 200
    again = until(
        lambda: (s := get(api, SVC)) and s["metadata"]["uid"] != first["metadata"]["uid"] and s,
        "the deleted kubernetes service made again",
    )
    assert again["spec"]["clusterIP"] == "10.96.0.1"

    # a changed port and lost labels are put back
    changed = dict(again)
    changed["spec"] = {**again["spec"], "ports": [{"name": "web", "port": 8443, "protocol": "TCP"}]}
    changed["metadata"] = {**again["metadata"], "labels": {}}
    r = api.put(SVC, json=changed)
    assert r.status_code == 200, r.text
    until(
        lambda: (
            (s := get(api, SVC))
            and [p["port"] for p in s["spec"]["ports"]] == [443]
            and s["metadata"]["labels"].get("provider") == "kubernetes"
        ),
        "the kubernetes service's port and labels repaired",
    )

    # Endpoints changed, then deleted; the slice deleted
    ep = get(api, EP)
    assert ep is not None
    ep["subsets"] = [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"name": "https", "port": 1}]}]
    assert api.put(EP, json=ep).status_code == 200
    until(lambda: (e := get(api, EP)) and e["subsets"] == good_ep["subsets"], "endpoints repaired")
    assert api.delete(EP).status_code == 200
    until(lambda: (e := get(api, EP)) and e["subsets"] == good_ep["subsets"], "endpoints made again")
    old_slice = get(api, SLICE)
    assert old_slice is not None
    assert api.delete(SLICE).status_code == 200
    until(
        lambda: (s := get(api, SLICE)) and s["metadata"]["uid"] != old_slice["metadata"]["uid"],
        "endpointslice made again",
    )


def endpoint_ports(api: httpx.Client) -> set[int]:
    ep = get(api, EP) or {}
    return {p["port"] for s in ep.get("subsets") or [] for p in s.get("ports") or []}


def test_each_live_api_server_is_an_endpoint(
    etcd: EtcdProcess, apiserver: APIServerProcess, api: httpx.Client
) -> None:
    until(lambda: endpoint_ports(api) == {apiserver.port}, "one API server's endpoint")
    with APIServerProcess(etcd.url) as second:
        until(lambda: endpoint_ports(api) == {apiserver.port, second.port}, "both API servers' endpoints")
        first_port, other_port = sorted((apiserver.port, second.port))
        slices = {
            s["metadata"]["name"]: [p["port"] for p in s["ports"]]
            for s in api.get(
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
                params={"labelSelector": "kubernetes.io/service-name=kubernetes"},
            ).json()["items"]
        }
        assert slices == {"kubernetes": [first_port], f"kubernetes-{other_port}": [other_port]}
        # the Service keeps one target port, not taken in turn by each server: a change to the
        # Endpoints makes both reconcile, and the Service stays as it was
        svc = get(api, SVC)
        assert svc is not None and svc["spec"]["ports"][0]["targetPort"] in (apiserver.port, second.port)
        ep = get(api, EP)
        assert ep is not None
        ep["subsets"] = []
        assert api.put(EP, json=ep).status_code == 200
        until(lambda: endpoint_ports(api) == {apiserver.port, second.port}, "the endpoints repaired")
        assert get(api, SVC)["metadata"]["resourceVersion"] == svc["metadata"]["resourceVersion"]  # type: ignore[index]
    # a server that stops takes its address away
    until(lambda: endpoint_ports(api) == {apiserver.port}, "the stopped API server's endpoint removed")
    until(lambda: get(api, f"{SLICE}-{other_port}") is None, "the stopped API server's slice removed")


# --- root CA publisher ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root_ca(apiserver: APIServerProcess) -> str:
    return str(apiserver.pki.ca_cert)


@pytest.fixture(scope="module")
def publisher(apiserver: APIServerProcess, root_ca: str) -> Iterator[Process]:
    # the harness gives the controller manager --root-ca-file: the session's CA
    with controller_manager(apiserver, "--controllers", "root-ca-cert-publisher") as cm:
        yield cm


CM = "/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt"


def test_root_ca_configmap_in_every_namespace(api: httpx.Client, publisher: Process, root_ca: str) -> None:
    try:
        check_root_ca(api, root_ca)
    except AssertionError:
        dump_logs(publisher)
        raise


def check_root_ca(api: httpx.Client, root_ca: str) -> None:
    pem = Path(root_ca).read_text()
    for ns in ("default", "kube-system", "kube-public"):
        cm = until(lambda ns=ns: get(api, CM.format(ns=ns)), f"kube-root-ca.crt in {ns}")
        assert cm["data"] == {"ca.crt": pem}
        assert "kube-apiserver" in cm["metadata"]["annotations"]["kubernetes.io/description"]
    r = api.post("/api/v1/namespaces", json={"metadata": {"name": "incluster-ca"}})
    assert r.status_code == 201, r.text
    try:
        path = CM.format(ns="incluster-ca")
        cm = until(lambda: get(api, path), "kube-root-ca.crt in a new namespace")
        assert cm["data"] == {"ca.crt": pem}

        # changed: put right (other keys dropped); deleted: made again
        cm["data"] = {"ca.crt": "not a certificate", "extra": "x"}
        assert api.put(path, json=cm).status_code == 200
        until(lambda: (c := get(api, path)) and c["data"] == {"ca.crt": pem}, "kube-root-ca.crt repaired")
        uid = get(api, path)["metadata"]["uid"]  # type: ignore[index]
        assert api.delete(path).status_code == 200
        until(
            lambda: (c := get(api, path)) and c["metadata"]["uid"] != uid and c["data"] == {"ca.crt": pem},
            "kube-root-ca.crt made again",
        )
    finally:
        api.delete("/api/v1/namespaces/incluster-ca")
