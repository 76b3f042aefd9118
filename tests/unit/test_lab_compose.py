"""The lab's compose file and HAProxy configuration (cli/lab.py), without Docker."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
import yaml

from cli.lab import LabConfig, addresses, endpoint, render_compose, render_haproxy


def _services(cfg: LabConfig) -> dict[str, Any]:
    return dict(yaml.safe_load(render_compose(cfg, ".", "/state/join"))["services"])


def test_machines_make_themselves_part_of_the_cluster_and_get_no_credentials() -> None:
    cfg = LabConfig(project="t", nodes=2, endpoint_flag=False)
    services = _services(cfg)
    env = {n: services[n].get("environment") or {} for n in services}
    assert env["cp-1"]["LAB_ROLE"] == "init"
    assert {env[n]["LAB_ROLE"] for n in ("node-1", "node-2")} == {"worker"}
    for name in ("cp-1", "node-1", "node-2"):
        svc = services[name]
        assert svc["image"] == "minik/lab-node:latest"
        # no certificate, key or kubeconfig from the host: only the engine's volume and the join command
        mounts = svc["volumes"]
        assert mounts[0] == f"{name}-docker:/var/lib/docker"
        assert all("pki" not in m and "admin" not in m and ".conf" not in m for m in mounts)
        # every machine reaches the API servers through HAProxy, by a name the certificate has
        assert env[name]["LAB_API_ENDPOINT"] == "kubernetes:6443"
        assert svc["extra_hosts"] == [f"kubernetes:{addresses(cfg)['lb']}"]
    # the workers see the workers' join command only; the first control plane needs none
    assert services["node-1"]["volumes"][1:] == ["/state/join/worker:/etc/minik/join:ro"]
    assert services["cp-1"]["volumes"][1:] == []
    lb = services["lb"]
    assert lb["ports"] == ["127.0.0.1:8480:6443"]
    assert lb["environment"]["HAPROXY_CFG"] == render_haproxy(cfg)
    assert "haproxy" in " ".join(lb["command"])
    # with minik up --control-plane-endpoint the load balancer's address is the endpoint
    flagged = LabConfig(project="t", nodes=2, control_planes=3, endpoint_flag=True)
    services = _services(flagged)
    assert endpoint(flagged) == f"{addresses(flagged)['lb']}:6443"
    assert services["cp-1"]["environment"]["LAB_UP_ARGS"] == (
        f"--control-plane-endpoint {endpoint(flagged)} --advertise-address {addresses(flagged)['cp-1']}"
        " --kubelet-serving-ip-prefixes 10.213.0.0/25,10.213.0.128/25"  # both segments' workers
    )
    for name in ("cp-2", "cp-3"):
        assert services[name]["environment"]["LAB_ROLE"] == "control-plane"
        assert services[name]["volumes"][1:] == ["/state/join/control-plane:/etc/minik/join:ro"]
        assert "extra_hosts" not in services[name]


def test_haproxy_checks_readyz_over_tls_and_redispatches() -> None:
    cfg = LabConfig(project="t", nodes=1, control_planes=3)
    text = render_haproxy(cfg)
    assert "mode tcp" in text and "option redispatch" in text
    assert "option httpchk GET /readyz" in text and "check-ssl" in text
    ips = addresses(cfg)
    servers = [line.split() for line in text.splitlines() if line.strip().startswith("server ")]
    assert [s[1:3] for s in servers] == [[f"cp-{i}", f"{ips[f'cp-{i}']}:6443"] for i in (1, 2, 3)]
    assert len(render_haproxy(LabConfig(control_planes=1)).split("\n    server ")) == 2


def test_lab_workers_sit_on_two_segments_joined_by_the_router() -> None:
    cfg = LabConfig(project="t", nodes=3, subnet="10.213.0.0/24")
    doc = yaml.safe_load(render_compose(cfg))
    nets = {name: net["ipam"]["config"][0]["subnet"] for name, net in doc["networks"].items()}
    assert nets == {"segment-a": "10.213.0.0/25", "segment-b": "10.213.0.128/25"}
    services = doc["services"]

    def segment_of(name: str) -> str:
        [(seg, conf)] = services[name]["networks"].items()
        assert ipaddress.ip_address(conf["ipv4_address"]) in ipaddress.ip_network(nets[seg])
        return str(seg)

    assert [segment_of(n) for n in ("node-1", "node-2", "node-3")] == ["segment-a", "segment-b", "segment-a"]
    assert all(segment_of(n) == "segment-a" for n in ("cp-1", "lb"))
    router = services["router"]
    assert router["sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert {s: c["ipv4_address"] for s, c in router["networks"].items()} == {
        "segment-a": "10.213.0.10",
        "segment-b": "10.213.0.138",
    }
    # every machine routes to the other segment via the router
    env = {n: (services[n].get("environment") or {}) for n in services}
    assert env["node-1"]["LAB_ROUTES"] == "10.213.0.128/25 via 10.213.0.10"
    assert env["node-2"]["LAB_ROUTES"] == "10.213.0.0/25 via 10.213.0.138"
    assert env["cp-1"]["LAB_ROUTES"] == "10.213.0.128/25 via 10.213.0.10"
    # HAProxy answers the workers on segment B through the router too
    assert env["lb"]["LAB_ROUTES"] == "10.213.0.128/25 via 10.213.0.10"
    assert services["lb"]["cap_add"] == ["NET_ADMIN"] and "ip route replace" in services["lb"]["command"][2]
    assert {env[n]["POD_NETWORK_BACKEND"] for n in ("cp-1", "node-1", "node-2", "node-3")} == {"vxlan"}
    # host-gw needs one L2 segment: every node on A
    hostgw = yaml.safe_load(render_compose(LabConfig(project="t", nodes=3, pod_network_backend="host-gw")))
    assert {next(iter(hostgw["services"][f"node-{i}"]["networks"])) for i in (1, 2, 3)} == {"segment-a"}
    with pytest.raises(ValueError):
        addresses(LabConfig(pod_network_backend="udp"))
    with pytest.raises(ValueError):
        addresses(LabConfig(subnet="10.213.0.0/28"))
    with pytest.raises(ValueError):
        addresses(LabConfig(control_planes=4))
