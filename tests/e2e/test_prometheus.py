"""``minik prometheus up`` end to end: a cluster from ``minik up`` (ports, node name, CIDRs, network
and iptables prefix of its own), then the real Prometheus server (Debian's ``prometheus``) that
minik starts scrapes every component as up -- the API server and the kubelet over TLS with the
add-on's system:monitoring certificate -- and answers PromQL about the API server's request rate.

Needs root, Docker, iptables and the ``prometheus`` binary (scripts/install.sh installs it):
skipped locally without them, failed with ``CI=true``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cli.cluster import _cmdline
from testkit import prereq, wait
from testkit.host import free_port
from testkit.images import ensure_busybox_image
from testkit.minik_up import MinikUpCluster, minik_up_cluster

pytestmark = pytest.mark.e2e

JOBS = {
    "apiserver",
    "kubelet",
    "scheduler",
    "controller-manager",
    "proxy",
    "dns",
    "ingress",
    "metrics-server",
    "prometheus",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinikUpCluster]:
    prereq.require_node_host()
    prereq.require(
        shutil.which("prometheus") is not None,
        "the prometheus binary",
        "apt-get install prometheus (scripts/install.sh)",
    )
    ensure_busybox_image()
    with minik_up_cluster(tmp_path_factory.mktemp("minik-prom"), "prom", "MP", subnets=range(228, 236)) as c:
        yield c


def targets(url: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/targets", params={"state": "active"}, timeout=10)
    r.raise_for_status()
    return list(r.json()["data"]["activeTargets"])


def query(url: str, promql: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_every_component_and_answers_promql(cluster: MinikUpCluster) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    up = cluster.minik("prometheus", "up", "--port", str(port), "--timeout", "120", timeout=240)
    assert url in up.stdout
    for job in JOBS:
        assert job in up.stdout
    found = targets(url)
    assert {t["labels"]["job"] for t in found} == JOBS
    assert all(t["health"] == "up" for t in found), [(t["labels"]["job"], t["lastError"]) for t in found]
    apiserver = next(t for t in found if t["labels"]["job"] == "apiserver")
    assert apiserver["scrapeUrl"] == f"https://127.0.0.1:{cluster.api_port}/metrics"

    # the cluster does things; the API server's request rate over a minute is a series
    cluster.minik("create", "configmap", "prom-probe", "--from-literal=a=b")
    series = wait.wait_for(
        lambda: query(url, "sum(rate(apiserver_request_total[1m]))"),
        90,
        "a series for sum(rate(apiserver_request_total[1m]))",
        retry_errors=True,
    )
    assert float(series[0]["value"][1]) > 0
    # series from the other components, labelled by job
    for promql in (
        'apiserver_request_total{verb="POST",resource="configmaps",code="201"}',
        "scheduler_pending_pods",
        'workqueue_adds_total{job="controller-manager"}',
        "kubelet_running_pods",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        'coredns_dns_requests_total{job="dns"}',
        f'rest_client_requests_total{{job="scheduler",host="127.0.0.1:{cluster.api_port}"}}',
        'rest_client_requests_total{job="ingress"}',
        'rest_client_requests_total{job="metrics-server"}',
    ):
        assert wait.wait_for(lambda q=promql: query(url, q), 60, promql, retry_errors=True), promql  # type: ignore[misc]

    status = cluster.minik("status")
    assert f"prometheus {url}" in status.stdout
    listed = cluster.minik("prometheus", "status")
    assert url in listed.stdout and "apiserver" in listed.stdout

    down = cluster.minik("prometheus", "down")
    assert "prometheus stopped" in down.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/-/ready", timeout=2)
    assert cluster.minik("prometheus", "status", check=False).returncode == 1


def test_minik_down_stops_prometheus(cluster: MinikUpCluster) -> None:
    port = free_port()
    cluster.minik("prometheus", "up", "--port", str(port), "--timeout", "120", timeout=240)
    pid = int(json.loads((cluster.state / "prometheus" / "server.json").read_text())["pid"])
    assert _cmdline(pid) is not None
    cluster.minik("down")
    assert _cmdline(pid) is None  # gone (a zombie not yet reaped by init counts as gone)
    assert not (cluster.state / "prometheus" / "server.json").exists()
