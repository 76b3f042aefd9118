"""The kubelet's /metrics/resource text, metrics-server's parsing and rates, the aggregator's
endpoint choice and front-proxy headers (pure functions)."""

from __future__ import annotations

import pytest

from apiserver.aggregator import header_values, pick_endpoint
from apiserver.authtypes import UserInfo
from kubelet.stats import resource_metrics
from metricsserver import scrape

pytestmark = pytest.mark.unit


def summary(cpu_node: int, cpu_c: int, mem: int = 4096 * 1024) -> dict:
    return {
        "node": {"cpu": {"usageCoreNanoSeconds": cpu_node}, "memory": {"workingSetBytes": 8 << 30}},
        "pods": [
            {
                "podRef": {"name": "web", "namespace": "default"},
                "containers": [
                    {
                        "name": "main",
                        "startTime": "2026-01-01T00:00:00Z",
                        "cpu": {"usageCoreNanoSeconds": cpu_c},
                        "memory": {"workingSetBytes": mem},
                    }
                ],
                "cpu": {"usageCoreNanoSeconds": cpu_c},
                "memory": {"workingSetBytes": mem},
            }
        ],
    }


def test_resource_metrics_names_labels_and_timestamps() -> None:
    text = resource_metrics(summary(2_000_000_000, 500_000_000), now=1000.0)
    assert "node_cpu_usage_seconds_total 2.000000000 1000000" in text
    assert (
        'container_cpu_usage_seconds_total{container="main",namespace="default",pod="web"} 0.500000000 1000000'
        in text
    )
    assert 'pod_memory_working_set_bytes{namespace="default",pod="web"} 4194304 1000000' in text
    assert (
        'container_start_time_seconds{container="main",namespace="default",pod="web"} 1767225600.000' in text
    )
    assert "scrape_error 0" in text
    assert "# TYPE container_cpu_usage_seconds_total counter" in text
    assert "scrape_error 1" in resource_metrics({}, True, now=1.0)


def test_parse_and_rate_between_two_samples() -> None:
    a = scrape.parse_resource_metrics(resource_metrics(summary(1_000_000_000, 0), now=100.0), 0)
    b = scrape.parse_resource_metrics(resource_metrics(summary(3_000_000_000, 250_000_000), now=102.0), 0)
    assert scrape.rate(a.node, b.node) == pytest.approx(1.0)
    key = ("default", "web", "main")
    assert scrape.rate(a.containers[key], b.containers[key]) == pytest.approx(0.125)
    node = scrape.node_metrics({"metadata": {"name": "n1", "labels": {"x": "y"}}}, a.node, b.node)
    assert node is not None
    assert node["usage"] == {"cpu": "1000000000n", "memory": f"{8 << 20}Ki"}
    assert node["window"] == "2s" and node["metadata"]["labels"] == {"x": "y"}
    pod = scrape.pod_metrics(
        {"metadata": {"name": "web", "namespace": "default"}},
        {"main": a.containers[key]},
        {"main": b.containers[key]},
    )
    assert pod is not None
    assert pod["containers"] == [{"name": "main", "usage": {"cpu": "125000000n", "memory": "4096Ki"}}]


def test_no_rate_without_a_valid_pair() -> None:
    old = scrape.Point(ts=10, cpu=5.0, memory=1, start=1)
    assert scrape.rate(None, old) is None
    assert scrape.rate(old, scrape.Point(ts=10, cpu=6.0, start=1)) is None  # same time
    assert scrape.rate(old, scrape.Point(ts=12, cpu=1.0, start=2)) is None  # restarted
    assert scrape.rate(old, scrape.Point(ts=12, cpu=4.0, start=1)) is None  # went down
    # a pod with a container that has no rate yet is left out
    assert scrape.pod_metrics({"metadata": {"name": "p"}}, {}, {"c": old}) is None


def test_parse_line_escapes() -> None:
    assert scrape.parse_line('m{a="x\\"y",b="z"} 1.5 2000') == ("m", {"a": 'x"y', "b": "z"}, 1.5, 2.0)
    assert scrape.parse_line("# HELP m x") is None
    with pytest.raises(ValueError):
        scrape.parse_line("m")


def test_pick_endpoint_by_service_port_name() -> None:
    svc = {
        "metadata": {"name": "ms", "namespace": "kube-system"},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 4443}]},
    }
    eps = {"subsets": [{"addresses": [{"ip": "10.0.0.5"}], "ports": [{"name": "https", "port": 4443}]}]}
    assert pick_endpoint(svc, eps, [], 443) == ("10.0.0.5", 4443)
    assert "not listening on port 80" in str(pick_endpoint(svc, eps, [], 80))
    assert 'no addresses with port name "https"' in str(pick_endpoint(svc, None, [], 443))
    slices = [{"ports": [{"name": "https", "port": 4443}], "endpoints": [{"addresses": ["10.0.0.6"]}]}]
    assert pick_endpoint(svc, None, slices, 443) == ("10.0.0.6", 4443)


def test_front_proxy_headers() -> None:
    user = UserInfo("alice", ("dev", "system:authenticated"), extra=(("scopes.example/x", ("a", "b")),))
    assert header_values(user) == [
        ("X-Remote-User", "alice"),
        ("X-Remote-Group", "dev"),
        ("X-Remote-Group", "system:authenticated"),
        ("X-Remote-Extra-scopes.example%2Fx", "a"),
        ("X-Remote-Extra-scopes.example%2Fx", "b"),
    ]
