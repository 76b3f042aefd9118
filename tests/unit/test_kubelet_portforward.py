"""Port-forward: the kubelet's port parsing and frames, and how the client picks pod and port."""

from __future__ import annotations

import pytest

from cli.commands.port_forward import choose_pod, parse_ports, service_target_port
from cli.kube import CLIError
from kubelet.portforward import parse_ports as kubelet_ports
from kubelet.portforward import port_frame


def test_kubelet_ports_and_first_frames() -> None:
    assert kubelet_ports(["8080,9090", "53"]) == [8080, 9090, 53]
    for bad in ([], ["0"], ["70000"], ["x"]):
        with pytest.raises(ValueError):
            kubelet_ports(bad)
    assert port_frame(2, 8080) == bytes([2, 0x90, 0x1F])  # little-endian port after the channel


def pod(name: str, created: str, phase: str = "Running", ready: bool = True) -> dict:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_choose_pod_prefers_ready_then_oldest() -> None:
    pods = [pod("new", "2024-01-02T00:00:00Z"), pod("old-unready", "2024-01-01T00:00:00Z", ready=False)]
    assert choose_pod(pods)["metadata"]["name"] == "new"  # type: ignore[index]
    assert choose_pod([pods[1]])["metadata"]["name"] == "old-unready"  # type: ignore[index]
    assert choose_pod([pod("p", "t", phase="Pending", ready=False)]) is None


def test_service_port_to_target_port() -> None:
    svc = {
        "metadata": {"name": "web"},
        "spec": {
            "ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 9000}, {"port": 82}]
        },
    }
    p = pod("a", "t")
    assert service_target_port(svc, p, 80) == 8080
    assert service_target_port(svc, p, 81) == 9000
    assert service_target_port(svc, p, 82) == 82
    with pytest.raises(CLIError, match="does not have a service port 83"):
        service_target_port(svc, p, 83)


def test_parse_port_specs() -> None:
    assert parse_ports(["8080:80", "9000", ":53"]) == [(8080, 80), (9000, 9000), (0, 53)]
