"""Service IP and node port ranges: what may be handed out, and the messages Kubernetes uses."""

from __future__ import annotations

import pytest

from apiserver.allocator import (
    IP_ALLOCATED,
    PortRange,
    ServiceIPRange,
    carry_allocated_values,
    ip_error,
    ip_not_in_range,
    port_error,
)


def test_ip_range_never_gives_network_broadcast_or_first_address() -> None:
    r = ServiceIPRange("10.100.0.0/29")
    assert r.kubernetes_service_ip() == "10.100.0.1"
    assert not r.contains("10.100.0.0") and not r.contains("10.100.0.7") and r.contains("10.100.0.6")
    used: set[str] = set()
    while (ip := r.pick(used)) is not None:
        used.add(ip)
    assert used == {f"10.100.0.{i}" for i in range(2, 7)}
    assert ServiceIPRange("10.96.0.0/12").dns_service_ip() == "10.96.0.10"


def test_ip_range_prefers_the_upper_band() -> None:
    r = ServiceIPRange("10.96.0.0/12")
    for _ in range(50):
        ip = r.pick(set())
        assert ip is not None and not ip.startswith("10.96.0.")


def test_port_range() -> None:
    r = PortRange("30000-30002")
    used: set[int] = set()
    while (p := r.pick(used)) is not None:
        used.add(p)
    assert used == {30000, 30001, 30002}
    assert not r.contains(29999)
    with pytest.raises(ValueError):
        PortRange("abc")


def test_messages_match_kubernetes() -> None:
    e = ip_error("web", ["10.96.0.5"], "10.96.0.5", IP_ALLOCATED)
    assert e.code == 422
    assert e.message == (
        'Service "web" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.5"}: '
        "failed to allocate IP 10.96.0.5: provided IP is already allocated"
    )
    assert "The range of valid IPs is 10.96.0.0/12" in ip_not_in_range("1.2.3.4", "10.96.0.0/12")
    e = port_error("web", 1, 30001, "provided port is already allocated")
    assert e.message.endswith(
        "spec.ports[1].nodePort: Invalid value: 30001: provided port is already allocated"
    )


def test_update_keeps_allocated_values_when_omitted() -> None:
    old = {
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.1.1",
            "clusterIPs": ["10.96.1.1"],
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}],
        }
    }
    new = {
        "spec": {
            "type": "NodePort",
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "TCP"}],
        }
    }
    carry_allocated_values(new, old)
    assert new["spec"]["clusterIP"] == "10.96.1.1"
    assert new["spec"]["ports"][0]["nodePort"] == 30080 and "nodePort" not in new["spec"]["ports"][1]
    to_cluster_ip = {"spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]}}
    carry_allocated_values(to_cluster_ip, old)
    assert "nodePort" not in to_cluster_ip["spec"]["ports"][0]
