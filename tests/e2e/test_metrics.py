"""Resource metrics end to end: a real API server (with the front-proxy certificate), kubelet and
minik-metrics-server behind an APIService; the aggregation layer's conditions, 503s and
authentication, and ``kubectl top`` (both kubectls) on a busy and an idle pod."""

from __future__ import annotations

import base64
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit import certs
from testkit.host import free_port
from testkit.processes import BIN, APIServerProcess, EtcdProcess, KubeletProcess, Process, root_ca_publisher
from testkit.wait import unique, wait_for

from .conftest import KUBECTL_VERSIONS, Kubectl, kubectl_of

pytestmark = pytest.mark.e2e

APISERVICE = "/apis/apiregistration.k8s.io/v1/apiservices"


@pytest.fixture(scope="module")
def apiserver(etcd: EtcdProcess) -> Iterator[APIServerProcess]:
    crt, key = certs.user_cert("front-proxy-client")
    s = APIServerProcess(etcd.url)
    try:
        s.start(extra=["--proxy-client-cert-file", str(crt), "--proxy-client-key-file", str(key)])
        yield s
    finally:
        s.cleanup()


class Stack:
    def __init__(self, api: APIServerProcess, kubelet: KubeletProcess, port: int) -> None:
        self.api, self.kubelet, self.port = api, kubelet, port


def register(http: httpx.Client, port: int, name: str = "metrics-server") -> None:
    """The Service (no selector), its Endpoints (the metrics-server on loopback) and the APIService."""
    http.post(
        "/api/v1/namespaces/kube-system/services",
        json={
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
        },
    ).raise_for_status()
    http.post(
        "/api/v1/namespaces/kube-system/endpoints",
        json={
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}],
        },
    ).raise_for_status()
    http.post(
        APISERVICE,
        json={
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "service": {"namespace": "kube-system", "name": name, "port": 443},
                "caBundle": base64.b64encode(certs.ca_file().read_bytes()).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ).raise_for_status()


def available(http: httpx.Client, name: str = "v1beta1.metrics.k8s.io") -> dict[str, Any] | None:
    obj = http.get(f"{APISERVICE}/{name}").json()
    return next(
        (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Available"), None
    )


@pytest.fixture(scope="module")
def stack(apiserver: APIServerProcess, image: str) -> Iterator[Stack]:
    port = free_port()
    crt, key = certs.serving_cert(f"metrics-server-{port}", ["metrics-server.kube-system.svc", "127.0.0.1"])
    server = Process(
        "metrics-server",
        [
            str(BIN / "minik-metrics-server"),
            *("--kubeconfig", str(apiserver.kubeconfig_for("system:metrics-server"))),
            *("--bind-address", "127.0.0.1", "--secure-port", str(port)),
            *("--tls-cert-file", str(crt), "--tls-private-key-file", str(key)),
            *("--requestheader-client-ca-file", str(certs.ca_file())),
            *("--metric-resolution", "2"),
        ],
    )
    publisher = root_ca_publisher(apiserver)
    kubelet = KubeletProcess(apiserver)
    try:
        publisher.start()
        kubelet.start()
        server.start()
        with apiserver.http() as http:
            register(http, port)
            wait_for(
                lambda: (available(http) or {}).get("status") == "True",
                60,
                what=f"APIService available (log: {server.log(3000)})",
            )
        yield Stack(apiserver, kubelet, port)
    finally:
        for p in (server, kubelet, publisher):
            p.cleanup()


def test_resource_metrics_endpoint_of_the_kubelet(stack: Stack) -> None:
    with stack.kubelet.http() as k:
        r = k.get("/metrics/resource")
    assert r.status_code == 200, r.text
    assert re.search(r"^node_cpu_usage_seconds_total \d", r.text, re.M)
    assert re.search(r"^node_memory_working_set_bytes \d", r.text, re.M)
    assert "scrape_error 0" in r.text
    # another identity without nodes/metrics is refused by the kubelet
    with stack.kubelet.http("scheduler") as k:
        assert k.get("/metrics/resource").status_code == 403


def test_apiservice_available_and_discovery(stack: Stack) -> None:
    with stack.api.http() as http:
        cond = available(http)
        assert cond is not None and cond["reason"] == "Passed"
        groups = http.get("/apis").json()["groups"]
        assert any(g["name"] == "metrics.k8s.io" for g in groups)
        agg = http.get(
            "/apis",
            headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"},
        ).json()
        entry = next(i for i in agg["items"] if i["metadata"]["name"] == "metrics.k8s.io")
        assert {r["resource"] for r in entry["versions"][0]["resources"]} == {"nodes", "pods"}
        assert http.get("/apis/metrics.k8s.io/v1beta1").json()["groupVersion"] == "metrics.k8s.io/v1beta1"


def test_unavailable_apiservices_conditions_and_503(stack: Stack) -> None:
    with stack.api.http() as http:
        name = unique("ghost")
        r = http.post(
            APISERVICE,
            json={
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": f"v1.{name}.example.com"},
                "spec": {
                    "group": f"{name}.example.com",
                    "version": "v1",
                    "service": {"namespace": "kube-system", "name": name, "port": 443},
                    "insecureSkipTLSVerify": True,
                    "groupPriorityMinimum": 100,
                    "versionPriority": 10,
                },
            },
        )
        assert r.status_code == 201, r.text
        try:
            wait_for(
                lambda: (available(http, f"v1.{name}.example.com") or {}).get("reason") == "ServiceNotFound",
                30,
            )
            cond = available(http, f"v1.{name}.example.com")
            assert cond is not None and cond["status"] == "False"
            wait_for(lambda: http.get(f"/apis/{name}.example.com/v1/things").status_code == 503, 10)
            r = http.get(f"/apis/{name}.example.com/v1/things")
            assert r.json()["kind"] == "Status" and r.json()["code"] == 503
            # a Service without endpoints: MissingEndpoints
            http.post(
                "/api/v1/namespaces/kube-system/services",
                json={
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name},
                    "spec": {"ports": [{"port": 443}]},
                },
            ).raise_for_status()
            wait_for(
                lambda: (available(http, f"v1.{name}.example.com") or {}).get("reason") == "MissingEndpoints",
                30,
            )
            # endpoints where nothing listens: FailedDiscoveryCheck
            http.post(
                "/api/v1/namespaces/kube-system/endpoints",
                json={
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": name},
                    "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": free_port()}]}],
                },
            ).raise_for_status()
            wait_for(
                lambda: (
                    (available(http, f"v1.{name}.example.com") or {}).get("reason") == "FailedDiscoveryCheck"
                ),
                30,
            )
        finally:
            http.delete(f"{APISERVICE}/v1.{name}.example.com")
            http.delete(f"/api/v1/namespaces/kube-system/services/{name}")
            http.delete(f"/api/v1/namespaces/kube-system/endpoints/{name}")


def test_backend_trusts_headers_only_from_the_front_proxy(stack: Stack) -> None:
    url = f"https://127.0.0.1:{stack.port}/apis/metrics.k8s.io/v1beta1/nodes"
    headers = {"X-Remote-User": "kubernetes-admin", "X-Remote-Group": "system:masters"}
    ca = str(certs.ca_file())
    # no client certificate, and a certificate of the CA with another CN: not trusted
    assert httpx.get(url, headers=headers, verify=ca).status_code == 401
    admin = certs.ssl_context(certs.client_cert("admin"))
    assert httpx.get(url, headers=headers, verify=admin).status_code == 401
    proxy = certs.ssl_context(certs.user_cert("front-proxy-client"))
    assert httpx.get(url, headers=headers, verify=proxy).status_code == 200
    # the named user is authorized by the API server: nobody without RBAC is refused
    r = httpx.get(url, headers={"X-Remote-User": "nobody"}, verify=proxy)
    assert r.status_code == 403 and "nodes.metrics.k8s.io" in r.json()["message"]
    # through the API server: the aggregator passes the authenticated user on
    with stack.api.http("someone") as http:
        assert http.get("/apis/metrics.k8s.io/v1beta1/nodes").status_code == 403
    with stack.api.http() as http:
        assert http.get("/apis/metrics.k8s.io/v1beta1/nodes").status_code == 200


def _millicores(value: str) -> int:
    return int(value[:-1]) if value.endswith("m") else int(value) * 1000


@pytest.fixture(scope="module")
def pods(stack: Stack, image: str) -> Iterator[str]:
    ns = unique("top")
    with stack.api.http() as http:
        http.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).raise_for_status()
        for name, cmd in (("busy", "while :; do :; done"), ("idle", "sleep 3600")):
            http.post(
                f"/api/v1/namespaces/{ns}/pods",
                json={
                    "metadata": {"name": name, "labels": {"app": name}},
                    "spec": {
                        "nodeName": stack.kubelet.node,
                        "terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "main", "image": image, "command": ["sh", "-c", cmd]}],
                    },
                },
            ).raise_for_status()
        try:
            yield ns
        finally:
            http.delete(f"/api/v1/namespaces/{ns}")


@pytest.mark.parametrize("which", KUBECTL_VERSIONS)
def test_kubectl_top(stack: Stack, pods: str, which: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="minik-kubectl-"))
    try:
        kubectl = Kubectl(kubectl_of(which), stack.api, workdir)

        last: list[str] = [""]

        def top() -> dict[str, int] | None:
            out = kubectl.run("top", "pods", "-n", pods, check=False, timeout=30)
            last[0] = out.stdout + out.stderr
            if out.returncode != 0:
                return None
            rows = {line.split()[0]: _millicores(line.split()[1]) for line in out.stdout.splitlines()[1:]}
            return rows if {"busy", "idle"} <= rows.keys() else None

        try:
            rows = wait_for(top, 120, what="kubectl top pods listing both pods", interval=1)
        except AssertionError as e:
            raise AssertionError(f"{e}; kubectl said: {last[0]}") from None
        # the busy loop takes whatever CPU the machine gives it (a loaded test machine: a tenth of
        # a core at least); the sleeper uses next to nothing
        assert rows["busy"] >= 50, rows
        assert rows["idle"] <= 10, rows
        assert rows["busy"] > 5 * rows["idle"], rows
        out = kubectl.run("top", "pods", "-n", pods, "--containers", timeout=30).stdout
        assert re.search(r"^busy\s+main\s+\d+m", out, re.M), out
        out = kubectl.run("top", "pods", "-A", timeout=30).stdout
        assert out.split("\n")[0].split()[:3] == ["NAMESPACE", "NAME", "CPU(cores)"], out
        assert pods in out
        out = kubectl.run("top", "pods", "-n", pods, "-l", "app=idle", timeout=30).stdout
        assert "idle" in out and "busy" not in out
        out = kubectl.run("top", "nodes", timeout=30).stdout
        assert stack.kubelet.node in out and "CPU(cores)" in out, out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
