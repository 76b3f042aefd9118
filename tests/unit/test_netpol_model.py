"""The NetworkPolicy planner: (policies, pods, namespaces) -> the filter table's policy chains."""

from __future__ import annotations

import asyncio
import re
import shlex
from datetime import UTC, datetime
from typing import Any

from apimachinery.printers import row_cells
from apimachinery.resources import kind_info
from apiserver.authtypes import UserInfo
from proxy import command, netpol
from proxy import iptables as ipt
from proxy import netpol_model as m
from tests.unit.test_rbac import bootstrap_index, res

P = "MINIK"
WEB = m.PodInfo("shop", "web", "10.1.0.2", {"app": "web"}, (("http", 8080, "TCP"), ("dns", 5353, "UDP")))
DB = m.PodInfo("shop", "db", "10.1.0.3", {"app": "db"}, (("sql", 5432, "TCP"),))
OTHER = m.PodInfo("ops", "probe", "10.1.1.2", {"app": "probe"})
STRANGER = m.PodInfo("dev", "x", "10.1.2.2", {"app": "x"}, (("http", 9090, "TCP"),))
NAMESPACES = {
    "shop": {"kubernetes.io/metadata.name": "shop"},
    "ops": {"kubernetes.io/metadata.name": "ops", "team": "ops"},
    "dev": {"kubernetes.io/metadata.name": "dev"},
}
PODS = [WEB, DB, OTHER, STRANGER]


def pol(name: str, ns: str = "shop", **spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def plan(*policies: dict[str, Any]) -> m.Plan:
    return m.plan(m.State(list(policies), PODS, NAMESPACES), P)


def rules(p: m.Plan, direction: str, pod: m.PodInfo) -> list[str]:
    """A pod chain's rules without the chain name and comments, for readable assertions."""
    ch = m.pod_chain(P, direction, pod)
    out = []
    for line in p.chains[ch]:
        out.append(re.sub(r'-m comment --comment "[^"]*" ?', "", line.removeprefix(f"-A {ch} ")).strip())
    return out


def test_no_policy_no_isolation() -> None:
    p = plan()
    assert list(p.chains) == [m.main_chain(P)]
    assert p.chains["MINIK-NWPLCY"] == [
        '-A MINIK-NWPLCY -m comment --comment "replies of allowed connections" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
    ]
    # a policy elsewhere isolates nobody here
    assert plan(pol("deny", ns="dev", podSelector={"matchLabels": {"app": "none"}})).isolated == {}


def test_default_deny_ingress() -> None:
    p = plan(pol("deny", policyTypes=["Ingress"]))
    assert p.isolated == {"shop/db": (True, False), "shop/web": (True, False)}
    assert rules(p, "I", WEB) == ["-s 10.1.0.2 -j RETURN", "-j DROP"]
    main = p.chains["MINIK-NWPLCY"]
    assert main[1:] == [
        f'-A MINIK-NWPLCY -d 10.1.0.3 -m comment --comment "shop/db ingress" -j {m.pod_chain(P, "I", DB)}',
        f'-A MINIK-NWPLCY -d 10.1.0.2 -m comment --comment "shop/web ingress" -j {m.pod_chain(P, "I", WEB)}',
    ]
    # an allow-all rule next to it allows everything again: the union of the policies
    p = plan(pol("deny", policyTypes=["Ingress"]), pol("all", ingress=[{}]))
    assert rules(p, "I", WEB) == ["-s 10.1.0.2 -j RETURN", "-j RETURN", "-j DROP"]


def test_default_deny_egress_and_allow_dns() -> None:
    p = plan(
        pol("deny", policyTypes=["Egress"]),
        pol(
            "dns",
            policyTypes=["Egress"],
            egress=[{"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}],
        ),
    )
    assert p.isolated["shop/web"] == (False, True)
    assert rules(p, "E", WEB) == [
        "-d 10.1.0.2 -j RETURN",
        "-p udp -m udp --dport 53 -j RETURN",
        "-p tcp -m tcp --dport 53 -j RETURN",
        "-j DROP",
    ]
    assert (
        f'-A MINIK-NWPLCY -s 10.1.0.2 -m comment --comment "shop/web egress" -j {m.pod_chain(P, "E", WEB)}'
        in (p.chains["MINIK-NWPLCY"])
    )


def test_peers_pod_namespace_and_both() -> None:
    p = plan(
        pol(
            "peers",
            podSelector={"matchLabels": {"app": "web"}},
            ingress=[
                {"from": [{"podSelector": {"matchLabels": {"app": "db"}}}]},  # same namespace only
                {"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}]},
                {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "x"}}}]},
                {"from": [{"podSelector": {"matchLabels": {"app": "probe"}}}]},  # not in shop: nobody
            ],
        )
    )
    assert rules(p, "I", WEB) == [
        "-s 10.1.0.2 -j RETURN",
        "-s 10.1.0.3 -j RETURN",
        "-s 10.1.1.2 -j RETURN",
        "-s 10.1.2.2 -j RETURN",
        "-j DROP",
    ]
    assert "shop/db" not in p.isolated


def test_ports_named_numeric_ranges_protocols() -> None:
    p = plan(
        pol(
            "ports",
            podSelector={"matchLabels": {"app": "web"}},
            ingress=[
                {
                    "from": [{"ipBlock": {"cidr": "192.168.0.0/24"}}],
                    "ports": [
                        {"protocol": "TCP", "port": "http"},
                        {"protocol": "UDP", "port": "dns"},
                        {"protocol": "TCP", "port": "sql"},  # web has no such port: matches nothing
                        {"protocol": "TCP", "port": 32000, "endPort": 32768},
                        {"protocol": "SCTP", "port": 9},
                        {"protocol": "UDP"},
                    ],
                }
            ],
        )
    )
    assert rules(p, "I", WEB) == [
        "-s 10.1.0.2 -j RETURN",
        "-s 192.168.0.0/24 -p tcp -m tcp --dport 8080 -j RETURN",
        "-s 192.168.0.0/24 -p udp -m udp --dport 5353 -j RETURN",
        "-s 192.168.0.0/24 -p tcp -m tcp --dport 32000:32768 -j RETURN",
        "-s 192.168.0.0/24 -p sctp -m sctp --dport 9 -j RETURN",
        "-s 192.168.0.0/24 -p udp -j RETURN",
        "-j DROP",
    ]


def test_egress_named_port_resolves_per_destination_pod() -> None:
    p = plan(
        pol(
            "egress",
            podSelector={"matchLabels": {"app": "db"}},
            policyTypes=["Egress"],
            egress=[
                {"ports": [{"protocol": "TCP", "port": "http"}]},  # any destination pod with "http"
                {"to": [{"ipBlock": {"cidr": "10.1.0.0/24"}}], "ports": [{"port": "sql"}]},
            ],
        )
    )
    assert rules(p, "E", DB) == [
        "-d 10.1.0.3 -j RETURN",
        "-d 10.1.0.2 -p tcp -m tcp --dport 8080 -j RETURN",
        "-d 10.1.2.2 -p tcp -m tcp --dport 9090 -j RETURN",
        "-d 10.1.0.3 -p tcp -m tcp --dport 5432 -j RETURN",
        "-j DROP",
    ]


def test_ip_block_except_is_expanded() -> None:
    assert m.except_cidrs("10.0.0.0/24", ["10.0.0.0/25", "10.0.0.128/26"]) == ["10.0.0.192/26"]
    assert m.except_cidrs("10.0.0.0/8", ["10.0.0.0/8"]) == []
    assert m.except_cidrs("10.0.0.0/30", ["10.0.0.1/32"]) == ["10.0.0.0/32", "10.0.0.2/31"]
    assert m.except_cidrs("2001:db8::/64", []) == []  # IPv4 only
    p = plan(
        pol("blk", ingress=[{"from": [{"ipBlock": {"cidr": "10.1.0.0/30", "except": ["10.1.0.3/32"]}}]}])
    )
    assert rules(p, "I", DB) == [
        "-s 10.1.0.3 -j RETURN",
        "-s 10.1.0.0/31 -j RETURN",
        "-s 10.1.0.2/32 -j RETURN",
        "-j DROP",
    ]


def test_kube_dns_host_process_is_a_peer_for_the_usual_allow_dns_rule() -> None:
    eps = {
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "subsets": [
            {
                "addresses": [{"ip": "10.1.0.1"}, {"ip": "10.1.0.2"}],  # the second is a pod (WEB): skipped
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}],
            }
        ],
    }
    peers = m.host_dns_peers(eps, {p.ip for p in PODS})
    assert [(p.namespace, p.ip, dict(p.labels), p.ports) for p in peers] == [
        ("kube-system", "10.1.0.1", {"k8s-app": "kube-dns"}, (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")))
    ]
    allow_dns = pol(
        "dns",
        policyTypes=["Egress"],
        egress=[
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": "dns-tcp"}],
            }
        ],
    )
    p = m.plan(m.State([allow_dns], PODS, NAMESPACES, peers), P)
    assert rules(p, "E", WEB) == [
        "-d 10.1.0.2 -j RETURN",
        "-d 10.1.0.1 -p udp -m udp --dport 53 -j RETURN",
        "-d 10.1.0.1 -p tcp -m tcp --dport 53 -j RETURN",
        "-j DROP",
    ]
    # a host peer is never isolated itself, even when a policy of its namespace selects everything
    p = m.plan(m.State([pol("deny", ns="kube-system", policyTypes=["Ingress"])], PODS, NAMESPACES, peers), P)
    assert p.isolated == {}
    assert m.host_dns_peers(None, set()) == []


def test_pod_info_skips_host_network_finished_and_addressless_pods() -> None:
    def pod(**kw: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "metadata": {"name": "p", "namespace": "a", "labels": {"k": "v"}},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 80}]}]},
            "status": {"phase": "Running", "podIP": "10.2.0.5"},
        }
        for k, v in kw.items():
            base[k].update(v)
        return base

    info = m.pod_info(pod())
    assert info == m.PodInfo("a", "p", "10.2.0.5", {"k": "v"}, (("web", 80, "TCP"),))
    assert m.pod_info(pod(spec={"hostNetwork": True})) is None
    assert m.pod_info(pod(status={"phase": "Succeeded"})) is None
    assert m.pod_info(pod(status={"podIP": ""})) is None
    assert m.pod_info(pod(status={"podIP": "fd00::5"})) is None


def test_restore_text_is_one_transaction_and_drops_stale_chains() -> None:
    p = plan(pol("deny", policyTypes=["Ingress"]))
    text = p.restore_text({"MINIK-NWPLCY-I-GONE", m.pod_chain(P, "I", WEB)})
    lines = text.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    assert ":MINIK-NWPLCY-I-GONE - [0:0]" in lines and "-X MINIK-NWPLCY-I-GONE" in lines
    assert f"-X {m.pod_chain(P, 'I', WEB)}" not in lines
    # the main chain is written after the chains it jumps to
    assert lines.index(":MINIK-NWPLCY - [0:0]") > lines.index(f":{m.pod_chain(P, 'I', WEB)} - [0:0]")
    # chain names fit iptables' 28 characters with the longest test prefixes
    assert len(m.pod_chain("MINIKTABCD", "E", WEB)) <= 28
    assert m.is_policy_chain(P, m.pod_chain(P, "E", WEB)) and not m.is_policy_chain(P, "MINIK-FORWARD")


def test_flag_table_and_rbac() -> None:
    assert command.parse_args([]).network_policy is True
    assert command.parse_args(["--no-network-policy"]).network_policy is False
    info = kind_info("networking.k8s.io/v1", "NetworkPolicy")
    obj = {
        "metadata": {"name": "p", "namespace": "a", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}},
    }
    now = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert row_cells(info, obj, now) == ["p", "app=web", "5m"]
    obj["spec"]["podSelector"] = {}
    assert row_cells(info, obj, now)[1] == "<none>"
    idx = bootstrap_index()
    proxy = UserInfo("system:kube-proxy", ("system:authenticated",))
    for resource, group in (("pods", ""), ("namespaces", ""), ("networkpolicies", "networking.k8s.io")):
        for verb in ("list", "watch"):
            assert idx.authorize(res(proxy, verb, resource, "", group=group)).allowed
    assert not idx.authorize(res(proxy, "create", "networkpolicies", "a", group="networking.k8s.io")).allowed


def test_null_selectors_select_every_pod() -> None:
    """``spec.podSelector: null`` is ``{}`` (every pod of the namespace), and so is a peer's null
    ``podSelector`` beside a ``namespaceSelector`` (every pod of those namespaces)."""
    p = plan(pol("deny", podSelector=None, policyTypes=["Ingress"]))
    assert p.isolated == {"shop/db": (True, False), "shop/web": (True, False)}
    p = plan(
        pol(
            "peers",
            podSelector={"matchLabels": {"app": "web"}},
            ingress=[
                {"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}, "podSelector": None}]}
            ],
        )
    )
    assert rules(p, "I", WEB) == ["-s 10.1.0.2 -j RETURN", "-s 10.1.1.2 -j RETURN", "-j DROP"]
    # a peer with neither selector (validation refuses it) still stands for nobody
    p = plan(pol("none", ingress=[{"from": [{"podSelector": None}]}]))
    assert rules(p, "I", WEB) == ["-s 10.1.0.2 -j RETURN", "-j DROP"]


def test_jump_moved_first_without_a_moment_without_it(monkeypatch: Any) -> None:
    """ensure_first with Docker's rule in front of the jump: the chain after every iptables
    command it runs still has the jump (the policies never stop applying), and ends with the
    jump first, once."""
    jump = ("-A", "FORWARD", *netpol.jump_spec(P))
    docker = ("-A", "FORWARD", "-j", "DOCKER-USER")
    chain = [docker, jump, jump]
    states: list[list[tuple[str, ...]]] = []

    async def run(*args: str, stdin: bytes | None = None, check: bool = True) -> tuple[int, str]:
        if args[0] == "iptables" and "-S" in args:
            return 0, "-P FORWARD DROP\n" + "".join(shlex.join(r) + "\n" for r in chain)
        if args[0] == "iptables-restore":
            work = list(chain)
            for line in (stdin or b"").decode().splitlines():
                if line.startswith("-D "):
                    work.remove(("-A", *shlex.split(line)[1:]))
                elif line.startswith("-I "):
                    words = shlex.split(line)
                    work.insert(int(words[2]) - 1, ("-A", words[1], *words[3:]))
            chain[:] = work
        elif "-D" in args:
            chain.remove(("-A", *args[args.index("-D") + 1 :]))
        elif "-I" in args:
            i = args.index("-I")
            chain.insert(int(args[i + 2]) - 1, ("-A", args[i + 1], *args[i + 3 :]))
        elif "-C" in args:
            return (0 if ("-A", *args[args.index("-C") + 1 :]) in chain else 1), ""
        states.append(list(chain))
        return 0, ""

    monkeypatch.setattr(ipt, "_run", run)
    assert asyncio.run(netpol.ensure_first("FORWARD", P)) is True
    assert chain == [jump, docker]
    assert states and all(jump in state for state in states)
    assert asyncio.run(netpol.ensure_first("FORWARD", P)) is False
