"""The proxy's pure decisions: service ports, ready endpoints, endpoint choice, rules."""

from __future__ import annotations

from typing import Any

from proxy.model import (
    EndpointPicker,
    in_cidrs,
    merged_ingress,
    node_addresses,
    node_pod_cidrs,
    plan_rules,
    ready_endpoints,
    service_ports,
)


def svc(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "shop"}, "spec": spec}


def test_service_ports() -> None:
    ports = service_ports(
        svc(
            type="NodePort",
            clusterIP="10.96.0.20",
            ports=[
                {"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ],
        )
    )
    assert [(p.key, p.protocol, p.port, p.node_port, p.cluster_ip) for p in ports] == [
        ("shop/web:http", "TCP", 80, 30080, "10.96.0.20"),
        ("shop/web:dns", "UDP", 53, None, "10.96.0.20"),
    ]
    sctp = svc(clusterIP="10.96.0.20", ports=[{"name": "s", "port": 9, "protocol": "SCTP"}])
    assert service_ports(sctp) == []
    assert service_ports(svc(clusterIP="None", ports=[{"port": 80}])) == []
    assert service_ports(svc(type="ExternalName", externalName="x.org")) == []
    lb = service_ports(
        svc(type="LoadBalancer", clusterIP="10.96.0.21", ports=[{"port": 80, "nodePort": 31000}])
    )
    assert lb[0].load_balancer and lb[0].node_port == 31000 and lb[0].key == "shop/web"
    sticky = service_ports(svc(clusterIP="10.96.0.22", sessionAffinity="ClientIP", ports=[{"port": 80}]))
    assert sticky[0].affinity_seconds == 10800


def test_ready_endpoints_match_the_service_port_name() -> None:
    eps = {
        "subsets": [
            {
                "addresses": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}],
                "notReadyAddresses": [{"ip": "10.0.0.9"}],
                "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
            },
            {"addresses": [{"ip": "10.0.0.3"}], "ports": [{"name": "http", "port": 8081}]},
        ]
    }
    assert ready_endpoints(eps, "http") == [("10.0.0.1", 8080), ("10.0.0.2", 8080), ("10.0.0.3", 8081)]
    assert ready_endpoints(eps, "metrics") == [("10.0.0.1", 9090), ("10.0.0.2", 9090)]
    assert ready_endpoints(eps, "") == []
    assert ready_endpoints(None, "http") == []


def test_round_robin_gives_each_endpoint_in_turn_and_the_rest_as_fallbacks() -> None:
    p = EndpointPicker()
    p.update([("a", 1), ("b", 1), ("c", 1)])
    firsts = [p.candidates("1.1.1.1")[0] for _ in range(6)]
    assert firsts == [("a", 1), ("b", 1), ("c", 1)] * 2
    assert p.candidates("x") == [("a", 1), ("b", 1), ("c", 1)]  # every endpoint, to skip dead ones
    p.update([])
    assert p.candidates("x") == []


def test_client_ip_affinity_sticks_until_the_timeout() -> None:
    now = [0.0]
    p = EndpointPicker(affinity_seconds=10, clock=lambda: now[0])
    p.update([("a", 1), ("b", 1)], affinity_seconds=10)
    first = p.candidates("c1")[0]
    p.connected("c1", first)
    for _ in range(5):
        now[0] += 5
        assert p.candidates("c1")[0] == first
        p.connected("c1", first)
    now[0] += 11
    p.candidates("c1")
    assert "c1" not in p._sessions  # the session expired: plain round-robin again
    # an endpoint that goes away ends its sessions
    p.connected("c3", ("b", 1))
    p.update([("a", 1)], affinity_seconds=10)
    assert p.candidates("c3") == [("a", 1)]


def test_rules_redirect_with_endpoints_and_reject_without() -> None:
    ports = service_ports(
        svc(clusterIP="10.96.0.20", ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81}])
    )
    plan = plan_rules([(ports[0], 40001, True), (ports[1], 40002, False)])
    nat = plan.nat_restore()
    assert ":MINIK-SERVICES - [0:0]" in nat
    assert "-d 10.96.0.20/32 -p tcp" in nat and "--dport 80 -j REDIRECT --to-ports 40001" in nat
    assert "--dport 81" not in nat
    filt = plan.filter_restore()
    assert "--dport 81 -j REJECT --reject-with tcp-reset" in filt and "--dport 80 " not in filt
    assert plan_rules([(ports[0], 1, True)], prefix="T1").nat_restore().startswith("*nat\n:T1-SERVICES")


def test_node_addresses_and_ingress_merge() -> None:
    node = {
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "10.1.0.5"},
                {"type": "Hostname", "address": "n1"},
            ]
        }
    }
    assert node_addresses(node) == ["10.1.0.5"]
    assert merged_ingress([{"ip": "10.1.0.6"}], ["10.1.0.5"]) == [{"ip": "10.1.0.6"}, {"ip": "10.1.0.5"}]
    assert merged_ingress([{"ip": "10.1.0.5"}], [], remove=["10.1.0.5"]) == []


def test_udp_rules_and_udp_endpoints() -> None:
    ports = service_ports(
        svc(
            clusterIP="10.96.0.10",
            ports=[
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            ],
        )
    )
    plan = plan_rules([(ports[0], 40001, True), (ports[1], 40002, False)])
    nat = plan.nat_restore()
    assert "-d 10.96.0.10/32 -p udp" in nat and "-m udp --dport 53 -j REDIRECT --to-ports 40001" in nat
    filt = plan.filter_restore()
    assert "-p tcp" in filt and "--reject-with tcp-reset" in filt
    udp_only = plan_rules([(ports[0], 40001, False)]).filter_restore()
    assert "-p udp" in udp_only and "--reject-with icmp-port-unreachable" in udp_only
    eps = {
        "subsets": [
            {
                "addresses": [{"ip": "10.1.0.2"}],
                "ports": [
                    {"name": "dns", "port": 5353, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 5353, "protocol": "TCP"},
                ],
            }
        ]
    }
    assert ready_endpoints(eps, "dns", "UDP") == [("10.1.0.2", 5353)]
    assert ready_endpoints(eps, "dns", "TCP") == []


def test_pod_network_rules_join_every_nodes_pod_cidr() -> None:
    nodes = [
        {"spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}},
        {"spec": {"podCIDR": "10.244.0.0/24"}},
        {"spec": {}},
        {"spec": {"podCIDRs": ["10.244.2.0/24", "fd00::/64"]}},
    ]
    cidrs = node_pod_cidrs(nodes)
    assert cidrs == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
    plan = plan_rules([], prefix="T2", pod_cidrs=cidrs[:2])
    filt = plan.filter_restore()
    assert ":T2-FORWARD - [0:0]" in filt
    assert "-A T2-FORWARD -s 10.244.0.0/24 -d 10.244.1.0/24" in filt
    assert "-A T2-FORWARD -s 10.244.1.0/24 -d 10.244.0.0/24" in filt
    assert "-s 10.244.0.0/24 -d 10.244.0.0/24" not in filt
    nat = plan.nat_restore()
    assert "-A T2-POSTROUTING -s 10.244.0.0/24 -d 10.244.1.0/24" in nat and nat.count("-j ACCEPT") == 2
    # without Docker's DOCKER-USER chain the forward chain is left out altogether
    assert "T2-FORWARD" not in plan.filter_restore(with_forward=False)


def test_nodeport_address_filter() -> None:
    assert in_cidrs("10.0.0.5", [])
    assert in_cidrs("10.0.0.5", ["10.0.0.0/24"]) and not in_cidrs("127.0.0.1", ["10.0.0.0/24"])
    assert in_cidrs("127.0.0.1", ["10.0.0.0/24", "127.0.0.0/8"])
