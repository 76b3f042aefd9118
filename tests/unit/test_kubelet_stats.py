"""``/stats/summary``: /proc parsing, Docker stats conversion and the Summary shape."""

from __future__ import annotations

from kubelet.docker_runtime import stats_from_docker
from kubelet.runtime import ContainerStats
from kubelet.stats import NodeSample, PodSample, build_summary, parse_meminfo, parse_net_dev, parse_proc_stat


def test_proc_parsers() -> None:
    # user nice system idle iowait irq softirq steal
    assert parse_proc_stat("cpu  100 0 50 1000 10 0 0 0 0 0\ncpu0 1 2 3\n", 100) == 150 * 10_000_000
    mem = parse_meminfo("MemTotal:       2048 kB\nMemAvailable:    1024 kB\nHugePages_Total:       0\n")
    assert mem == {"MemTotal": 2048 * 1024, "MemAvailable": 1024 * 1024, "HugePages_Total": 0}
    dev = (
        "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n"
        "  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n"
    )
    assert parse_net_dev(dev) == {"eth0": (1000, 2000)}


def test_stats_from_docker_rates_and_memory() -> None:
    s = stats_from_docker(
        {
            "read": "2024-01-01T00:00:02Z",
            "preread": "2024-01-01T00:00:01Z",
            "cpu_stats": {"cpu_usage": {"total_usage": 3_500_000_000}},
            "precpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000}},
            "memory_stats": {
                "usage": 10_000,
                "limit": 8_388_608,
                "stats": {"total_inactive_file": 4_000, "total_rss": 5_000},
            },
            "networks": {"eth0": {"rx_bytes": 7, "tx_bytes": 9}},
            "pids_stats": {"current": 3},
        }
    )
    assert s.cpu_usage_nano_cores == 500_000_000  # half a core
    assert s.cpu_usage_nanos == 3_500_000_000
    assert (s.memory_usage_bytes, s.memory_working_set_bytes, s.memory_rss_bytes) == (10_000, 6_000, 5_000)
    assert (s.rx_bytes, s.tx_bytes, s.interfaces, s.pids) == (7, 9, {"eth0": (7, 9)}, 3)


def test_summary_shape() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "status": {"startTime": "2024-01-01T00:00:00Z"},
    }
    # cpu_usage_nanos, cpu_usage_nano_cores, memory_usage_bytes, memory_working_set_bytes
    c1 = ContainerStats(10, 2, 100, 80, memory_limit_bytes=1000, pids=1)
    c2 = ContainerStats(5, 1, 50, 40, pids=2)
    net = ContainerStats(interfaces={"eth0": (11, 22)})
    node = NodeSample(
        cpu_usage_nanos=99,
        memory_total=1000,
        memory_available=400,
        memory_working_set=600,
        fs_capacity=100,
        fs_available=30,
    )
    out = build_summary(
        "n1",
        0.0,
        node,
        [PodSample(pod, [("a", 1.0, c1), ("b", 2.0, c2)], net, [("data", 7)], {"a": 3})],
        10.0,
    )
    assert out["node"]["nodeName"] == "n1"
    assert out["node"]["memory"]["usageBytes"] == 600 and out["node"]["fs"]["usedBytes"] == 70
    p = out["pods"][0]
    assert p["podRef"] == {"name": "p", "namespace": "ns", "uid": "u"}
    assert p["cpu"]["usageNanoCores"] == 3 and p["cpu"]["usageCoreNanoSeconds"] == 15
    assert p["memory"]["workingSetBytes"] == 120
    a = p["containers"][0]
    assert a["name"] == "a" and a["memory"]["availableBytes"] == 920 and a["logs"]["usedBytes"] == 3
    assert "availableBytes" not in p["containers"][1]["memory"]  # no limit
    assert p["network"]["name"] == "eth0" and (p["network"]["rxBytes"], p["network"]["txBytes"]) == (11, 22)
    assert p["volume"][0]["name"] == "data" and p["volume"][0]["usedBytes"] == 7
    assert p["ephemeral-storage"]["usedBytes"] == 10
    assert p["process_stats"] == {"process_count": 3}
