"""Prometheus metrics: the shared helpers, the work queue's and REST client's instrumentation, the
API server's request labels, and the component metric classes -- values read back from the
process's registry as operations happen."""

from __future__ import annotations

import uuid

import httpx
import pytest

from apimachinery import errors, metrics
from apimachinery.client import Client
from apimachinery.resources import plural_info
from apimachinery.workqueue import FakeClock, WorkQueue
from apiserver.metrics import EtcdMetrics, RequestMetrics, key_type, request_labels
from kubelet.metrics import KubeletMetrics
from proxy.metrics import DNSMetrics, SyncMetrics, question_type
from scheduler.metrics import SchedulerMetrics, register_pending_pods
from scheduler.queue import SchedulingQueue

CONFIGMAPS = plural_info("", "v1", "configmaps")


def value(metric: str, **labels: str) -> float:
    return metrics.sample_value(metric, labels) or 0.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- helpers --------------------------------------------------------------------------------------


def test_a_metric_is_registered_once_per_process() -> None:
    name = unique("minik_test").replace("-", "_")
    c1 = metrics.counter(f"{name}_total", "doc", ("a",))
    c2 = metrics.counter(f"{name}_total", "doc", ("a",))
    assert c1 is c2
    c1.labels("x").inc(2)
    assert value(f"{name}_total", a="x") == 2
    assert f'{name}_total{{a="x"}} 2.0'.encode() in metrics.exposition()


def test_exposition_carries_process_and_python_metrics() -> None:
    text = metrics.exposition().decode()
    assert "process_resident_memory_bytes" in text
    assert "python_info" in text


@pytest.mark.parametrize(
    ("value_", "want"),
    [
        ("127.0.0.1:10249", ("127.0.0.1", 10249)),
        ("0.0.0.0:9", ("0.0.0.0", 9)),
        ("[::1]:8080", ("::1", 8080)),
        ("10257", ("0.0.0.0", 10257)),
        ("127.0.0.1:0", None),
        ("", None),
    ],
)
def test_parse_bind_address(value_: str, want: tuple[str, int] | None) -> None:
    assert metrics.parse_bind_address(value_) == want


@pytest.mark.parametrize("bad", ["127.0.0.1:http", "1.2.3.4:70000"])
def test_parse_bind_address_refuses_bad_values(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid bind address"):
        metrics.parse_bind_address(bad)


async def test_the_listener_serves_metrics_and_healthz() -> None:
    server = await metrics.serve("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    name = unique("minik_listener").replace("-", "_")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            metrics.gauge(name, "doc").set(7)
            r = await http.get("/metrics")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert f"{name} 7.0" in r.text
            assert (await http.get("/healthz")).text == "ok"
            assert (await http.get("/other")).status_code == 404
            assert (await http.post("/metrics")).status_code == 405
    finally:
        server.close()
        await server.wait_closed()


# --- the work queue -------------------------------------------------------------------------------


async def test_workqueue_records_adds_depth_retries_and_durations() -> None:
    name = unique("q")
    clock = FakeClock()
    q = WorkQueue(clock=clock, name=name)
    q.add("a")
    q.add("b")
    q.add("a")  # deduplicated: not an add
    assert value("workqueue_adds_total", name=name) == 2
    assert value("workqueue_depth", name=name) == 2
    clock.step(0.5)
    key = await q.get()
    assert value("workqueue_depth", name=name) == 1
    assert value("workqueue_queue_duration_seconds_count", name=name) == 1
    assert value("workqueue_queue_duration_seconds_sum", name=name) == pytest.approx(0.5)
    clock.step(2.0)
    q.done(key)
    assert value("workqueue_work_duration_seconds_count", name=name) == 1
    assert value("workqueue_work_duration_seconds_sum", name=name) == pytest.approx(2.0)
    q.add_rate_limited("c")
    assert value("workqueue_retries_total", name=name) == 1


async def test_workqueue_counts_a_key_added_while_processing_once_it_is_queued_again() -> None:
    name = unique("q")
    q = WorkQueue(clock=FakeClock(), name=name)
    q.add("a")
    key = await q.get()
    q.add("a")  # dirty while processing: counted, queued after done
    assert value("workqueue_adds_total", name=name) == 2
    q.done(key)
    assert value("workqueue_depth", name=name) == 1
    await q.get()
    assert value("workqueue_depth", name=name) == 0


def test_an_unnamed_workqueue_records_nothing() -> None:
    q = WorkQueue(clock=FakeClock())
    q.add("a")
    assert q._metrics is None


# --- the REST client ------------------------------------------------------------------------------


async def test_rest_client_counts_requests_by_code_method_and_host() -> None:
    metrics.enable_rest_client_metrics()
    host = f"{unique('api')}.example:6443"

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404, json={"kind": "Status", "code": 404, "reason": "NotFound"})
        return httpx.Response(201, json={"kind": "ConfigMap", "metadata": {"name": "x"}})

    async with Client(f"https://{host}", transport=httpx.MockTransport(answer)) as client:
        await client.create(CONFIGMAPS, {"metadata": {"name": "x"}}, "default")
        await client.create(CONFIGMAPS, {"metadata": {"name": "y"}}, "default")
        with pytest.raises(errors.NotFound):
            await client.get(CONFIGMAPS, "absent", "default")
    assert value("rest_client_requests_total", code="201", method="POST", host=host) == 2
    assert value("rest_client_requests_total", code="404", method="GET", host=host) == 1
    assert value("rest_client_request_duration_seconds_count", verb="POST", host=host) == 2


async def test_rest_client_counts_a_transport_error_as_error() -> None:
    metrics.enable_rest_client_metrics()
    host = f"{unique('down')}.example:6443"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with Client(f"https://{host}", transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(errors.StatusError):
            await client.get(CONFIGMAPS, "x", "default")
    assert value("rest_client_requests_total", code="<error>", method="GET", host=host) == 1


# --- the API server -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "apply", "want"),
    [
        ("POST", "/api/v1/namespaces/ns/configmaps", b"", False, ("POST", "", "v1", "configmaps", "", "namespace")),
        ("GET", "/api/v1/namespaces/ns/configmaps", b"", False, ("LIST", "", "v1", "configmaps", "", "namespace")),
        ("GET", "/api/v1/configmaps", b"watch=true", False, ("WATCH", "", "v1", "configmaps", "", "cluster")),
        ("GET", "/api/v1/namespaces/ns/pods/p", b"", False, ("GET", "", "v1", "pods", "", "resource")),
        ("PUT", "/api/v1/namespaces/ns/pods/p/status", b"", False, ("PUT", "", "v1", "pods", "status", "resource")),
        ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d", b"", True, ("APPLY", "apps", "v1", "deployments", "", "resource")),
        ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d", b"", False, ("PATCH", "apps", "v1", "deployments", "", "resource")),
        ("DELETE", "/api/v1/namespaces/ns/pods", b"", False, ("DELETECOLLECTION", "", "v1", "pods", "", "namespace")),
        ("GET", "/api/v1/nodes", b"", False, ("LIST", "", "v1", "nodes", "", "cluster")),
        ("POST", "/api/v1/namespaces/ns/pods/p/exec", b"", False, ("CONNECT", "", "v1", "pods", "exec", "resource")),
        ("GET", "/healthz", b"", False, ("GET", "", "", "", "", "")),
    ],
)  # fmt: skip
def test_request_labels(method: str, path: str, query: bytes, apply: bool, want: tuple[str, ...]) -> None:
    verb, dry_run, group, version, resource, sub, scope, component = request_labels(
        method, path, query, apply
    )
    assert (verb, group, version, resource, sub, scope) == want
    assert dry_run == "" and component == "apiserver"


def test_request_labels_dry_run() -> None:
    assert request_labels("POST", "/api/v1/namespaces/ns/pods", b"dryRun=All")[1] == "All"


def test_request_metrics_count_by_code_and_time_requests() -> None:
    m = RequestMetrics()
    ns = unique("ns")
    scope = {"method": "POST", "path": f"/api/v1/namespaces/{ns}/secrets", "query_string": b"", "headers": []}
    labels = {
        "verb": "POST",
        "dry_run": "",
        "group": "",
        "version": "v1",
        "resource": "secrets",
        "subresource": "",
        "scope": "namespace",
        "component": "apiserver",
    }
    before = value("apiserver_request_total", **labels, code="201")
    before_409 = value("apiserver_request_total", **labels, code="409")
    before_count = value("apiserver_request_duration_seconds_count", **labels)
    m.observe(scope, 201, 0.01)
    m.observe(scope, 201, 0.02)
    m.observe(scope, 409, 0.01)
    assert value("apiserver_request_total", **labels, code="201") == before + 2
    assert value("apiserver_request_total", **labels, code="409") == before_409 + 1
    assert value("apiserver_request_duration_seconds_count", **labels) == before_count + 3


def test_request_metrics_tell_apply_from_other_patches() -> None:
    m = RequestMetrics()
    path = f"/api/v1/namespaces/{unique('ns')}/configmaps/c"
    common = {"dry_run": "", "group": "", "version": "v1", "resource": "configmaps", "subresource": ""}
    labels = {**common, "scope": "resource", "component": "apiserver"}
    apply0 = value("apiserver_request_total", verb="APPLY", **labels, code="200")
    patch0 = value("apiserver_request_total", verb="PATCH", **labels, code="200")
    for ctype in (b"application/apply-patch+yaml", b"application/merge-patch+json"):
        scope = {"method": "PATCH", "path": path, "query_string": b"", "headers": [(b"content-type", ctype)]}
        m.observe(scope, 200, 0.01)
    assert value("apiserver_request_total", verb="APPLY", **labels, code="200") == apply0 + 1
    assert value("apiserver_request_total", verb="PATCH", **labels, code="200") == patch0 + 1


@pytest.mark.parametrize(
    ("key", "want"),
    [
        (b"/registry/core/pods/ns/p", "pods"),
        (b"/registry/apps/deployments/ns/d", "deployments.apps"),
        (b"/registry/core/namespaces/", "namespaces"),
        (b"/elsewhere", "other"),
    ],
)
def test_etcd_key_type(key: bytes, want: str) -> None:
    assert key_type(key) == want


def test_etcd_metrics_observe_by_operation_and_type() -> None:
    m = EtcdMetrics()
    before = value(
        "etcd_request_duration_seconds_count", operation="create", type="leases.coordination.k8s.io"
    )
    m.observe("create", b"/registry/coordination.k8s.io/leases/ns/a", 0.002)
    m.observe("create", b"/registry/coordination.k8s.io/leases/ns/b", 0.002)
    after = value(
        "etcd_request_duration_seconds_count", operation="create", type="leases.coordination.k8s.io"
    )
    assert after == before + 2


# --- components -----------------------------------------------------------------------------------


def test_scheduler_attempts_and_pending_pods() -> None:
    profile = unique("sched")
    m = SchedulerMetrics(profile)
    m.attempt("scheduled", 0.01)
    m.attempt("unschedulable", 0.02)
    m.attempt("unschedulable", 0.02)
    assert value("scheduler_schedule_attempts_total", result="scheduled", profile=profile) == 1
    assert value("scheduler_schedule_attempts_total", result="unschedulable", profile=profile) == 2
    assert (
        value("scheduler_scheduling_attempt_duration_seconds_count", result="unschedulable", profile=profile)
        == 2
    )
    queue = SchedulingQueue(FakeClock())
    register_pending_pods(queue)
    queue.add({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {}}, "ns/p")
    assert value("scheduler_pending_pods", queue="active") == 1
    assert value("scheduler_pending_pods", queue="gated") == 0


def test_kubelet_pod_start_and_running_counts() -> None:
    statuses: list[dict] = []
    m = KubeletMetrics(lambda: statuses)
    before = value("kubelet_pod_start_duration_seconds_count")
    uid = unique("uid")
    m.seen(uid)
    m.status_written(uid, {}, {"phase": "Pending"})
    assert value("kubelet_pod_start_duration_seconds_count") == before
    m.status_written(uid, {"phase": "Pending"}, {"phase": "Running"})
    assert value("kubelet_pod_start_duration_seconds_count") == before + 1
    m.status_written(uid, {"phase": "Running"}, {"phase": "Running"})  # not again
    assert value("kubelet_pod_start_duration_seconds_count") == before + 1
    statuses.extend(
        [
            {"containerStatuses": [{"state": {"running": {}}}, {"state": {"waiting": {}}}]},
            {"containerStatuses": [{"state": {"terminated": {}}}]},
        ]
    )
    assert value("kubelet_running_pods") == 1
    assert value("kubelet_running_containers", container_state="running") == 1
    assert value("kubelet_running_containers", container_state="created") == 1
    assert value("kubelet_running_containers", container_state="exited") == 1


def test_proxy_sync_metrics() -> None:
    m = SyncMetrics()
    before = value("kubeproxy_sync_proxy_rules_duration_seconds_count")
    m.synced(0.05)
    assert value("kubeproxy_sync_proxy_rules_duration_seconds_count") == before + 1
    assert value("kubeproxy_sync_proxy_rules_last_timestamp_seconds") > 1e9


def test_dns_metrics() -> None:
    from dnslib import QTYPE, DNSRecord

    server = f"dns://{unique('h')}:53"
    m = DNSMetrics(server)
    request = DNSRecord.question("web.default.svc.cluster.local", "A")
    reply = request.reply()
    reply.header.rcode = 3  # NXDOMAIN
    assert question_type(bytes(request.pack())) == "A"
    assert question_type(bytes(DNSRecord.question("x.", "SRV").pack())) == QTYPE[33]
    m.observe("cluster.local.", "udp", bytes(request.pack()), bytes(reply.pack()), 0.001)
    assert (
        value(
            "coredns_dns_requests_total",
            server=server,
            zone="cluster.local.",
            proto="udp",
            family="1",
            type="A",
        )
        == 1
    )
    assert value("coredns_dns_responses_total", server=server, zone="cluster.local.", rcode="NXDOMAIN") == 1
    assert (
        value("coredns_dns_request_duration_seconds_count", server=server, zone="cluster.local.", type="A")
        == 1
    )


def test_the_cli_client_does_not_load_prometheus_client() -> None:
    import subprocess
    import sys

    code = (
        "import sys, apimachinery.client, apimachinery.workqueue; print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- the Prometheus add-on's configuration --------------------------------------------------------


def test_prometheus_scrape_config_has_a_job_per_component() -> None:
    from pathlib import Path

    from cli.commands.prometheus import scrape_config

    cfg = {"api_port": 16443, "kubelet_port": 20250, "advertise_address": "10.1.2.3", "node_name": "n1"}
    argvs = {
        "scheduler": ["minik-scheduler", "--metrics-bind-address", "127.0.0.1:20259"],
        "controller-manager": ["minik-controller-manager", "--metrics-bind-address=0.0.0.0:20257"],
        "proxy": ["minik-proxy", "--metrics-bind-address", "127.0.0.1:0"],  # turned off: no job
        "dns": ["minik-dns"],  # the flag's default
    }
    doc = scrape_config(cfg, Path("/s"), argvs, port=19999)
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert set(jobs) == {
        "apiserver",
        "kubelet",
        "scheduler",
        "controller-manager",
        "dns",
        "ingress",
        "metrics-server",
        "prometheus",
    }
    assert jobs["apiserver"]["scheme"] == "https"
    assert jobs["apiserver"]["static_configs"][0]["targets"] == ["127.0.0.1:16443"]
    assert jobs["apiserver"]["tls_config"] == {
        "ca_file": "/s/pki/ca.crt",
        "cert_file": "/s/pki/prometheus.crt",
        "key_file": "/s/pki/prometheus.key",
    }
    assert jobs["kubelet"]["static_configs"][0]["targets"] == ["10.1.2.3:20250"]
    assert jobs["scheduler"]["static_configs"][0]["targets"] == ["127.0.0.1:20259"]
    assert jobs["controller-manager"]["static_configs"][0]["targets"] == ["127.0.0.1:20257"]
    assert jobs["dns"]["static_configs"][0]["targets"] == ["127.0.0.1:9153"]
    assert jobs["ingress"]["static_configs"][0]["targets"] == ["127.0.0.1:10254"]  # the flag's default
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["127.0.0.1:19999"]


def test_minik_up_gives_each_cluster_its_own_metrics_ports() -> None:
    from cli.supervisor import settings

    default = settings({"advertise_address": "127.0.0.1"})["metrics_ports"]
    assert default == {
        "scheduler": 10259,
        "controller-manager": 10257,
        "proxy": 10249,
        "dns": 9153,
        "ingress": 10254,
        "metrics-server": 10253,
    }
    other = settings({"advertise_address": "127.0.0.1", "kubelet_port": 20250})["metrics_ports"]
    assert other == {
        "scheduler": 20259,
        "controller-manager": 20257,
        "proxy": 20249,
        "dns": 19153,
        "ingress": 20254,
        "metrics-server": 20253,
    }
