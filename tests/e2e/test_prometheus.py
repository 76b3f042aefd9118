"""``minik prometheus up`` end to end: a cluster from ``minik up`` (ports, node name, CIDRs, network
and iptables prefix of its own), then the real Prometheus server (Debian's ``prometheus``) that
minik starts scrapes every component as up -- the API server and the kubelet over TLS with the
add-on's system:monitoring certificate -- and answers PromQL about the API server's request rate.

Needs root, Docker, iptables and the ``prometheus`` binary (scripts/install.sh installs it):
skipped locally without them, failed with ``CI=true``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.cluster import _cmdline
from testkit import prereq, wait
from testkit.host import free_port, free_subnets, processes_mentioning
from testkit.images import ensure_busybox_image
from testkit.processes import minik_up_args

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
MINIK = str(BIN / "minik")
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


class Cluster:
    def __init__(self, state: Path, node: str, prefix: str, up_args: list[str], api_port: int) -> None:
        self.state, self.node, self.prefix, self.up_args, self.api_port = (
            state,
            node,
            prefix,
            up_args,
            api_port,
        )
        self.env = {
            **os.environ,
            "MINIK_STATE_DIR": str(state),
            "KUBECONFIG": str(state.parent / "kubeconfig"),
        }

    def minik(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([MINIK, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"minik {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc


def _cleanup(c: Cluster) -> None:
    subprocess.run([MINIK, "down", "--state-dir", str(c.state)], env=c.env, capture_output=True, timeout=180)
    subprocess.run(
        [str(BIN / "minik-proxy"), "--cleanup", "--iptables-chain-prefix", c.prefix],
        capture_output=True,
        timeout=60,
    )
    import docker

    client = docker.from_env()
    try:
        for ct in client.containers.list(all=True, filters={"label": f"io.minik.node={c.node}"}):
            ct.remove(force=True)
        for net in client.networks.list(names=[f"minik-{c.node}"]):
            net.remove()
    finally:
        client.close()
    for line in processes_mentioning(str(c.state)):
        try:
            os.kill(int(line.split(":")[0]), 9)
        except OSError:
            pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    prereq.require_root()
    prereq.require_docker()
    prereq.require_iptables()
    prereq.require(
        shutil.which("prometheus") is not None,
        "the prometheus binary",
        "apt-get install prometheus (scripts/install.sh)",
    )
    ensure_busybox_image()
    work = tmp_path_factory.mktemp("minik-prom")
    tag = uuid.uuid4().hex[:6]
    pod_cidr = free_subnets(1, range(228, 236))[0]
    service_cidr = f"10.{230 + random.randint(0, 7)}.{random.randint(0, 255)}.0/24"
    node, prefix = f"prom-{tag}", f"MP{tag.upper()}"
    up_args, api_port = minik_up_args(work / "state", node, pod_cidr, service_cidr, prefix)
    c = Cluster(work / "state", node, prefix, up_args, api_port)
    try:
        c.minik("up", *up_args, timeout=300)
        yield c
    finally:
        _cleanup(c)
        shutil.rmtree(work, ignore_errors=True)


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


def test_prometheus_scrapes_every_component_and_answers_promql(cluster: Cluster) -> None:
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


def test_minik_down_stops_prometheus(cluster: Cluster) -> None:
    port = free_port()
    cluster.minik("prometheus", "up", "--port", str(port), "--timeout", "120", timeout=240)
    pid = int(json.loads((cluster.state / "prometheus" / "server.json").read_text())["pid"])
    assert _cmdline(pid) is not None
    cluster.minik("down")
    assert _cmdline(pid) is None  # gone (a zombie not yet reaped by init counts as gone)
    assert not (cluster.state / "prometheus" / "server.json").exists()
