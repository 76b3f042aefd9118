"""NetworkPolicy defaults and validation (Kubernetes' field paths and messages)."""

from __future__ import annotations

from typing import Any

from apimachinery.defaults import apply_defaults
from apimachinery.resources import kind_info
from apiserver.validation import validate

NETPOL = kind_info("networking.k8s.io/v1", "NetworkPolicy")


def policy(**spec: Any) -> dict[str, Any]:
    obj = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"podSelector": {}, **spec}}
    apply_defaults(NETPOL, obj)
    return obj


def causes(**spec: Any) -> list[tuple[str, str]]:
    return [(c["field"], c["message"]) for c in validate(NETPOL, policy(**spec))]


def test_defaults() -> None:
    obj = policy(ingress=[{"ports": [{"port": 80}]}])
    assert obj["spec"]["policyTypes"] == ["Ingress"]
    assert obj["spec"]["ingress"][0]["ports"][0]["protocol"] == "TCP"
    assert policy(egress=[{}])["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy(policyTypes=["Egress"])["spec"]["policyTypes"] == ["Egress"]


def test_a_good_policy() -> None:
    assert (
        causes(
            podSelector={"matchLabels": {"app": "db"}},
            ingress=[
                {
                    "from": [
                        {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                        {"namespaceSelector": {"matchLabels": {"project": "p"}}},
                        {"podSelector": {"matchLabels": {"role": "fe"}}, "namespaceSelector": {}},
                    ],
                    "ports": [{"protocol": "TCP", "port": 6379}, {"port": "http"}],
                }
            ],
            egress=[
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"port": 32000, "endPort": 32768}]}
            ],
            policyTypes=["Ingress", "Egress"],
        )
        == []
    )


def test_ports() -> None:
    got = causes(
        ingress=[
            {
                "ports": [
                    {"protocol": "ICMP", "port": 0},
                    {"port": 90, "endPort": 80},
                    {"port": "http", "endPort": 90},
                    {"endPort": 90},
                    {"port": "no--way"},
                ]
            }
        ]
    )
    p = "spec.ingress[0].ports"
    assert got == [
        (f"{p}[0].protocol", 'Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"'),
        (f"{p}[0].port", "Invalid value: 0: must be between 1 and 65535, inclusive"),
        (f"{p}[1].endPort", "Invalid value: 80: must be greater than or equal to `port`"),
        (f"{p}[2].endPort", "Invalid value: 90: may not be specified when `port` is non-numeric"),
        (f"{p}[3].endPort", "Invalid value: 90: may not be specified when `port` is not specified"),
        (f"{p}[4].port", 'Invalid value: "no--way": must not contain consecutive hyphens'),
    ]


def test_peers_and_ip_blocks() -> None:
    got = causes(
        egress=[
            {
                "to": [
                    {},
                    {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}},
                    {
                        "ipBlock": {
                            "cidr": "10.0.0.0/8",
                            "except": ["10.1.0.0/16", "11.0.0.0/16", "10.0.0.0/8", "x"],
                        }
                    },
                    {"ipBlock": {"cidr": "10.0.0.1"}},
                    {"ipBlock": {}},
                    {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
                ]
            }
        ]
    )
    p = "spec.egress[0].to"
    cidr = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
    assert got == [
        (f"{p}[0]", "Required value: must specify a peer"),
        (f"{p}[1]", "Forbidden: may not specify both ipBlock and another peer"),
        (f"{p}[2].ipBlock.except[1]", 'Invalid value: "11.0.0.0/16": must be a strict subset of `cidr`'),
        (f"{p}[2].ipBlock.except[2]", 'Invalid value: "10.0.0.0/8": must be a strict subset of `cidr`'),
        (f"{p}[2].ipBlock.except[3]", f'Invalid value: "x": {cidr}'),
        (f"{p}[3].ipBlock.cidr", f'Invalid value: "10.0.0.1": {cidr}'),
        (f"{p}[4].ipBlock.cidr", "Required value"),
        (
            f"{p}[5].podSelector.matchExpressions[0].values",
            "Required value: must be specified when `operator` is 'In' or 'NotIn'",
        ),
    ]


def test_policy_types() -> None:
    assert causes(policyTypes=["Ingress", "Sideways"]) == [
        ("spec.policyTypes[1]", 'Unsupported value: "Sideways": supported values: "Ingress", "Egress"')
    ]
    assert causes(policyTypes=["Ingress", "Egress", "Ingress"]) == [
        (
            "spec.policyTypes",
            'Invalid value: []networking.PolicyType{"Ingress", "Egress", "Ingress"}: '
            "may not specify more than two policyTypes",
        )
    ]
    bad_selector = causes(podSelector={"matchLabels": {"a": "-x-"}})
    assert [f for f, _ in bad_selector] == ["spec.podSelector.matchLabels"]
