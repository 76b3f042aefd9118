"""Each component's ``/metrics`` against a real API server and etcd: the Kubernetes-named series are
served, and their values move after operations.  The API server's and the kubelet's are
authenticated and authorized (401 without valid credentials, 403 without the right); the scheduler,
controller manager and DNS serve theirs on a loopback plain-HTTP port (``--metrics-bind-address``)."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit import certs, processes
from testkit.host import free_port
from testkit.processes import APIServerProcess, EtcdProcess, KubeletProcess, python_module
from testkit.wait import wait_for

MONITOR = "metrics-reader"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(text: str, metric: str, /, **labels: str) -> float:
    """The sum of the samples called ``metric`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for (n, ls), v in samples(text).items():
        if n == metric and all(dict(ls).get(k) == want for k, want in labels.items()):
            total += v
    return total


def ca_only() -> ssl.SSLContext:
    """Trusts the cluster CA and presents no client certificate."""
    return ssl.create_default_context(cafile=str(certs.ca_file()))


def scrape(url: str) -> str:
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return r.text


# --- the API server -------------------------------------------------------------------------------


@pytest.fixture()
def monitor(apiserver: APIServerProcess) -> Iterator[httpx.Client]:
    """A client whose certificate names a user in group system:monitoring (and nothing else)."""
    ctx = certs.ssl_context(certs.user_cert(MONITOR, ("system:monitoring",)))
    with httpx.Client(base_url=apiserver.url, verify=ctx, timeout=30) as c:
        yield c


def test_apiserver_counts_a_create_and_its_etcd_write(api: httpx.Client, monitor: httpx.Client) -> None:
    labels = {"verb": "POST", "resource": "configmaps", "scope": "namespace", "code": "201"}
    before = monitor.get("/metrics").text
    for i in range(3):
        r = api.post(
            "/api/v1/namespaces/default/configmaps",
            json={"metadata": {"name": f"m-{uuid.uuid4().hex[:6]}-{i}"}},
        )
        assert r.status_code == 201, r.text
    after = monitor.get("/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = after.text
    assert (
        sample(text, "apiserver_request_total", **labels)
        == sample(before, "apiserver_request_total", **labels) + 3
    )
    hist = {"verb": "POST", "resource": "configmaps"}
    assert (
        sample(text, "apiserver_request_duration_seconds_count", **hist)
        >= sample(before, "apiserver_request_duration_seconds_count", **hist) + 3
    )
    # Kubernetes' buckets
    assert sample(text, "apiserver_request_duration_seconds_bucket", le="0.005", **hist) >= 0
    assert sample(text, "apiserver_request_duration_seconds_bucket", le="60.0", **hist) >= 3
    etcd = {"operation": "create", "type": "configmaps"}
    assert (
        sample(text, "etcd_request_duration_seconds_count", **etcd)
        >= sample(before, "etcd_request_duration_seconds_count", **etcd) + 3
    )
    cms = api.get("/api/v1/configmaps").json()["items"]
    stored = sample(text, "apiserver_storage_objects", resource="configmaps")
    assert stored >= 3 and abs(stored - len(cms)) <= 1  # the watch cache may lag one event
    assert sample(text, "process_resident_memory_bytes") > 0
    # a 404 is counted with its code
    assert api.get("/api/v1/namespaces/default/configmaps/absent").status_code == 404
    text = monitor.get("/metrics").text
    assert (
        sample(
            text, "apiserver_request_total", verb="GET", resource="configmaps", code="404", scope="resource"
        )
        >= 1
    )


def test_apiserver_metrics_need_authentication_and_authorization(
    apiserver: APIServerProcess, monitor: httpx.Client
) -> None:
    assert monitor.get("/metrics").status_code == 200
    with httpx.Client(base_url=apiserver.url, verify=ca_only(), timeout=30) as http:
        bad_token = http.get("/metrics", headers={"Authorization": "Bearer not-a-token"})
    assert bad_token.status_code == 401, bad_token.text
    # authenticated, but not in system:monitoring: 403 naming the non-resource URL
    plain = certs.ssl_context(certs.user_cert("metrics-nobody"))
    with httpx.Client(base_url=apiserver.url, verify=plain, timeout=30) as http:
        refused = http.get("/metrics")
    assert refused.status_code == 403, refused.text
    assert '"/metrics"' in refused.json()["message"]
    # anonymous: 403 as system:anonymous
    with httpx.Client(base_url=apiserver.url, verify=ca_only(), timeout=30) as http:
        assert http.get("/metrics").status_code == 403


def test_disable_metrics_turns_the_endpoint_off(etcd: EtcdProcess) -> None:
    server = APIServerProcess(etcd.url)
    try:
        server.start(extra=["--disable-metrics"])
        with server.http() as http:
            created = http.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "off"}})
            assert created.status_code in (201, 409)
            assert http.get("/metrics").status_code == 404
    finally:
        server.cleanup()


# --- scheduler, controller manager ----------------------------------------------------------------


def node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }


def pod(name: str, cpu: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "main", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]
        },
    }


def test_scheduler_metrics(apiserver: APIServerProcess, api: httpx.Client) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    assert api.post("/api/v1/nodes", json=node("metrics-n1")).status_code == 201
    sched = processes.scheduler(apiserver, "--metrics-bind-address", f"127.0.0.1:{port}")
    with processes.running(sched):
        wait_for(lambda: scrape(url), 30, "the scheduler's /metrics", retry_errors=True)
        ns = "default"
        assert api.post(f"/api/v1/namespaces/{ns}/pods", json=pod("fits", "100m")).status_code == 201
        assert api.post(f"/api/v1/namespaces/{ns}/pods", json=pod("too-big", "64")).status_code == 201
        text = wait_for(
            lambda: (
                (t := scrape(url))
                and sample(t, "scheduler_schedule_attempts_total", result="scheduled") >= 1
                and sample(t, "scheduler_schedule_attempts_total", result="unschedulable") >= 1
                # the binding is written after the decision: a POST answered 201
                and sample(t, "rest_client_requests_total", method="POST", code="201") >= 1
                and t
            ),
            30,
            "a scheduled and an unschedulable attempt, and the binding",
        )
        profile = {"profile": "default-scheduler"}
        assert (
            sample(text, "scheduler_scheduling_attempt_duration_seconds_count", result="scheduled", **profile)
            >= 1
        )
        # the pod that fits nowhere waits in one of the queues (unschedulable, or backoff after a move)
        assert sample(text, "scheduler_pending_pods") >= 1
        assert sample(text, "process_cpu_seconds_total") > 0


def test_controller_manager_metrics(apiserver: APIServerProcess, api: httpx.Client) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    cm = processes.controller_manager(apiserver, "--metrics-bind-address", f"127.0.0.1:{port}")
    with processes.running(cm):
        wait_for(lambda: scrape(url), 30, "the controller manager's /metrics", retry_errors=True)
        before = sample(scrape(url), "workqueue_adds_total", name="replicaset-controller")
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "metrics-rs"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "metrics-rs"}},
                "template": {
                    "metadata": {"labels": {"app": "metrics-rs"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        }
        assert api.post("/apis/apps/v1/namespaces/default/replicasets", json=rs).status_code == 201
        rsq = "replicaset-controller"

        def worked() -> str | None:
            t = scrape(url)
            added = sample(t, "workqueue_adds_total", name=rsq) > before
            return t if added and sample(t, "workqueue_work_duration_seconds_count", name=rsq) >= 1 else None

        text = wait_for(worked, 30, "the replicaset queue to count an add and a finished item")
        assert sample(text, "workqueue_work_duration_seconds_count", name="replicaset-controller") >= 1
        assert sample(text, "workqueue_queue_duration_seconds_count", name="replicaset-controller") >= 1
        assert ("workqueue_depth", (("name", "replicaset-controller"),)) in samples(text)
        assert sample(text, "rest_client_requests_total", method="POST", code="201") >= 1  # the pod


# --- DNS ------------------------------------------------------------------------------------------


def test_dns_metrics(apiserver: APIServerProcess) -> None:
    from dnslib import DNSRecord

    port, metrics_port = free_port(), free_port()
    argv = ("--bind", "127.0.0.1", "--port", str(port), "--upstream", "127.0.0.1")
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with python_module(
        "dns", "proxy.dns", apiserver, *argv, "--metrics-bind-address", f"127.0.0.1:{metrics_port}"
    ):

        def ask() -> bool:
            try:
                DNSRecord.question("absent.default.svc.cluster.local", "A").send("127.0.0.1", port, timeout=1)
            except OSError:
                return False
            return True

        wait_for(ask, 30, "the DNS server to answer")
        text = wait_for(lambda: scrape(url), 10, "minik-dns /metrics", retry_errors=True)
        zone = "cluster.local."
        assert sample(text, "coredns_dns_requests_total", zone=zone, type="A", proto="udp") >= 1
        assert sample(text, "coredns_dns_responses_total", zone=zone, rcode="NXDOMAIN") >= 1


# --- the kubelet ----------------------------------------------------------------------------------


def test_kubelet_metrics(kubelet: KubeletProcess, api: httpx.Client, image: str) -> None:
    with kubelet.http() as http:
        r = http.get("/metrics")
        assert r.status_code == 200, r.text
        before = r.text
    nobody = certs.ssl_context(certs.user_cert("metrics-nobody"))  # no nodes/metrics permission
    with httpx.Client(base_url=kubelet.url, verify=nobody, timeout=10) as other:
        assert other.get("/metrics").status_code == 403
    with httpx.Client(base_url=kubelet.url, verify=ca_only(), timeout=10) as anon:
        assert anon.get("/metrics").status_code == 401
    name = f"metrics-{uuid.uuid4().hex[:6]}"
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": kubelet.node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": image, "command": ["sleep", "300"]}],
        },
    }
    assert api.post("/api/v1/namespaces/default/pods", json=body).status_code == 201
    try:
        with kubelet.http() as http:
            text = wait_for(
                lambda: (
                    (t := http.get("/metrics").text)
                    and sample(t, "kubelet_pod_start_duration_seconds_count")
                    > sample(before, "kubelet_pod_start_duration_seconds_count")
                    and t
                ),
                90,
                "the kubelet to observe the pod's start",
            )
        assert sample(text, "kubelet_running_pods") >= 1
        assert sample(text, "kubelet_running_containers", container_state="running") >= 1
        assert sample(text, "workqueue_adds_total", name=f"kubelet-{kubelet.node}") >= 1
        assert sample(text, "rest_client_requests_total", method="PUT", code="200") >= 1  # its status
    finally:
        api.delete(f"/api/v1/namespaces/default/pods/{name}", params={"gracePeriodSeconds": "0"})
