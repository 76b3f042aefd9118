"""Resource metrics end to end: a real API server (with the front-proxy certificate), kubelet and
minik-metrics-server behind an APIService; the aggregation layer's conditions, 503s and
authentication, and ``kubectl top`` (both kubectls) on a busy and an idle pod."""

from __future__ import annotations

import base64
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit import certs
from testkit.host import free_port
from testkit.processes import BIN, APIServerProcess, EtcdProcess, KubeletProcess, Process, control_plane
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
    # the scheduler and the controller manager (with the HPA controller every 2 s)
    plane = control_plane(apiserver, "--horizontal-pod-autoscaler-sync-period", "2")
    kubelet = KubeletProcess(apiserver)
    try:
        for p in plane.values():
            p.start()
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
        for p in (server, kubelet, *plane.values()):
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
    ca = ssl.create_default_context(cafile=str(certs.ca_file()))
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
        if which == "system":  # minik top: the same columns
            minik = [sys.executable, "-m", "cli.main", "--kubeconfig", str(kubectl.kubeconfig)]
            mine = subprocess.run(
                [*minik, "top", "pods", "-n", pods, "--containers"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert mine.returncode == 0, mine.stderr
            assert mine.stdout.splitlines()[0].split() == ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
            assert re.search(r"^busy\s+main\s+\d+m\s+\d+Mi$", mine.stdout, re.M), mine.stdout
            mine = subprocess.run([*minik, "top", "nodes"], capture_output=True, text=True, timeout=60)
            assert mine.returncode == 0, mine.stderr
            lines = mine.stdout.splitlines()
            assert lines[0].split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
            assert re.match(rf"{stack.kubelet.node}\s+\d+m\s+\d+%\s+\d+Mi\s+\d+%$", lines[1]), mine.stdout
            mine = subprocess.run([*minik, "top", "pods", "-A"], capture_output=True, text=True, timeout=60)
            assert mine.returncode == 0 and mine.stdout.split("\n")[0].split()[0] == "NAMESPACE", mine.stdout
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _deployment(name: str, image: str, command: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "main",
                            "image": image,
                            "command": ["sh", "-c", command],
                            # a small request: the busy loop is far above 50 % of it even on a
                            # loaded machine, the sleeper far below
                            "resources": {"requests": {"cpu": "20m"}},
                        }
                    ],
                },
            },
        },
    }


def test_hpa_scales_up_under_load_and_down_after_the_window(stack: Stack, image: str) -> None:
    ns = unique("hpa")
    with stack.api.http() as http:
        http.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).raise_for_status()
        try:
            http.post(
                f"/apis/apps/v1/namespaces/{ns}/deployments",
                json=_deployment("hog", image, "while :; do :; done"),
            ).raise_for_status()
            hpa = {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "hog"},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hog"},
                    "minReplicas": 1,
                    "maxReplicas": 3,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": 50},
                            },
                        }
                    ],
                    # the test's short scale-down window (Kubernetes' default is 300 s)
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}},
                },
            }
            r = http.post(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers", json=hpa)
            assert r.status_code == 201, r.text
            stored = r.json()["spec"]
            assert stored["behavior"]["scaleUp"]["policies"][0] == {
                "type": "Pods",
                "value": 4,
                "periodSeconds": 15,
            }
            path = f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/hog"

            def scaled_to(n: int) -> dict[str, Any] | None:
                obj = http.get(path).json()
                status = obj.get("status") or {}
                return (
                    obj if status.get("desiredReplicas") == n and status.get("currentReplicas") == n else None
                )

            up = wait_for(lambda: scaled_to(3), 240, what="the HPA scaling hog up to 3", interval=1)
            conds = {c["type"]: c for c in up["status"]["conditions"]}
            assert (
                conds["ScalingActive"]["status"] == "True"
                and conds["ScalingActive"]["reason"] == "ValidMetricFound"
            )
            assert conds["AbleToScale"]["status"] == "True"
            cpu = up["status"]["currentMetrics"][0]["resource"]
            assert cpu["name"] == "cpu" and cpu["current"]["averageUtilization"] > 50
            assert up["status"].get("lastScaleTime")
            deployment = http.get(f"/apis/apps/v1/namespaces/{ns}/deployments/hog").json()
            assert deployment["spec"]["replicas"] == 3
            events = http.get(f"/api/v1/namespaces/{ns}/events").json()["items"]
            messages = [e["message"] for e in events if e["reason"] == "SuccessfulRescale"]
            assert any(
                m.startswith("New size: ")
                and m.endswith("reason: cpu resource utilization (percentage of request) above target")
                for m in messages
            ), messages
            # the load stops (a new template: idle pods); after the 5 s window it scales back down
            idle = _deployment("hog", image, "sleep 3600")
            http.patch(
                f"/apis/apps/v1/namespaces/{ns}/deployments/hog",
                json={"spec": {"template": idle["spec"]["template"]}},
                headers={"Content-Type": "application/merge-patch+json"},
            ).raise_for_status()
            wait_for(lambda: scaled_to(1), 240, what="the HPA scaling hog back down to 1", interval=1)
            events = http.get(f"/api/v1/namespaces/{ns}/events").json()["items"]
            assert any(
                e["reason"] == "SuccessfulRescale"
                and e["message"] == "New size: 1; reason: All metrics below target"
                for e in events
            ), [e["message"] for e in events]
        finally:
            http.delete(f"/api/v1/namespaces/{ns}")


@pytest.mark.parametrize("which", KUBECTL_VERSIONS)
def test_kubectl_autoscale_and_get_hpa(stack: Stack, image: str, which: str) -> None:
    ns = unique("autoscale")
    workdir = Path(tempfile.mkdtemp(prefix="minik-kubectl-"))
    with stack.api.http() as http:
        http.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).raise_for_status()
        try:
            kubectl = Kubectl(kubectl_of(which), stack.api, workdir)
            http.post(
                f"/apis/apps/v1/namespaces/{ns}/deployments", json=_deployment("web", image, "sleep 3600")
            ).raise_for_status()
            # kubectl 1.32 posts autoscaling/v1 (a view of the stored v2), 1.37 autoscaling/v2
            out = kubectl.run(
                "autoscale", "deployment", "web", "--cpu-percent=50", "--min=1", "--max=3", "-n", ns
            )
            assert "autoscaled" in out.stdout, out.stdout + out.stderr
            hpa = http.get(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/web").json()
            assert hpa["spec"]["maxReplicas"] == 3 and hpa["spec"]["minReplicas"] == 1
            assert hpa["spec"]["metrics"][0]["resource"]["target"] == {
                "type": "Utilization",
                "averageUtilization": 50,
            }

            def row() -> list[str] | None:
                lines = kubectl.run("get", "hpa", "-n", ns, timeout=30).stdout.splitlines()
                cells = re.split(r"\s{2,}", lines[1].strip()) if len(lines) > 1 else []
                return cells if len(cells) == 7 and re.fullmatch(r"cpu: \d+%/50%", cells[2]) else None

            header = kubectl.run("get", "hpa", "-n", ns, timeout=30).stdout.splitlines()[0].split()
            assert header == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
            cells = wait_for(row, 120, what="kubectl get hpa showing the measured utilization", interval=1)
            assert cells[:2] == ["web", "Deployment/web"] and cells[3:6] == ["1", "3", "1"], cells
            v1 = http.get(f"/apis/autoscaling/v1/namespaces/{ns}/horizontalpodautoscalers/web").json()
            assert v1["apiVersion"] == "autoscaling/v1" and v1["spec"]["targetCPUUtilizationPercentage"] == 50
            assert isinstance(v1["status"]["currentCPUUtilizationPercentage"], int)
        finally:
            http.delete(f"/api/v1/namespaces/{ns}")
            shutil.rmtree(workdir, ignore_errors=True)
