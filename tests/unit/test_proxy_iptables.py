"""The iptables mode's planner: exact rules for representative Services, incremental restore
input, chain names, and the Service -> state conversion (no netfilter needed)."""

from __future__ import annotations

from typing import Any

from proxy import iptables as ipt
from proxy import kernel_rules as kr
from proxy.kernel import service_states
from proxy.model import ServicePort

P = "MINIK"
CIDR = "10.244.0.0/16"


def sp(name: str = "web", **kw: Any) -> ServicePort:
    base: dict[str, Any] = dict(
        namespace="default",
        name=name,
        port_name="http",
        protocol="TCP",
        port=80,
        cluster_ip="10.96.0.10",
        node_port=None,
        load_balancer=False,
        affinity_seconds=None,
    )
    base.update(kw)
    return ServicePort(**base)


def eps(*ips: str, local: tuple[str, ...] = ()) -> tuple[kr.Endpoint, ...]:
    return tuple(kr.Endpoint(ip, 8080, ip in local) for ip in ips)


def test_cluster_ip_three_endpoints_random_with_off_cluster_masquerade() -> None:
    s = sp()
    t = kr.plan([kr.ServiceState(s, eps("10.244.1.2", "10.244.1.3", "10.244.2.4"))], P, [CIDR], [])
    svc = kr.svc_chain(P, s)
    seps = [kr.sep_chain(P, s, e) for e in eps("10.244.1.2", "10.244.1.3", "10.244.2.4")]
    dst = "-d 10.96.0.10/32 -p tcp -m tcp --dport 80"
    assert t["nat"]["MINIK-SERVICES"] == [
        f'-A MINIK-SERVICES {dst} -m comment --comment "default/web:http cluster IP" -j {svc}',
        '-A MINIK-SERVICES -m comment --comment "service nodeports; NOTE: this must be the last rule in this chain" '
        "-m addrtype --dst-type LOCAL -j MINIK-NODEPORTS",
    ]
    assert t["nat"][svc] == [
        f'-A {svc} ! -s 10.244.0.0/16 {dst} -m comment --comment "default/web:http cluster IP" -j MINIK-MARK-MASQ',
        f'-A {svc} -m comment --comment "default/web:http -> 10.244.1.2:8080" '
        f"-m statistic --mode random --probability 0.3333333333 -j {seps[0]}",
        f'-A {svc} -m comment --comment "default/web:http -> 10.244.1.3:8080" '
        f"-m statistic --mode random --probability 0.5000000000 -j {seps[1]}",
        f'-A {svc} -m comment --comment "default/web:http -> 10.244.2.4:8080" -j {seps[2]}',
    ]
    assert t["nat"][seps[0]] == [
        f'-A {seps[0]} -s 10.244.1.2/32 -m comment --comment "default/web:http" -j MINIK-MARK-MASQ',
        f'-A {seps[0]} -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.1.2:8080',
    ]
    assert t["filter"]["MINIK-SERVICES"] == []
    assert t["nat"]["MINIK-POSTROUTING"] == [
        "-A MINIK-POSTROUTING -m mark --mark 0x4000/0x4000 -j MINIK-MASQUERADE"
    ]
    assert t["nat"]["MINIK-MASQUERADE"] == [
        "-A MINIK-MASQUERADE -j MARK --xor-mark 0x4000",
        '-A MINIK-MASQUERADE -m comment --comment "service traffic requiring SNAT" -j MASQUERADE --random-fully',
    ]


def test_no_endpoints_is_rejected_in_filter_and_has_no_nat_chains() -> None:
    s = sp("empty", node_port=30001)
    t = kr.plan([kr.ServiceState(s)], P)
    assert t["filter"]["MINIK-SERVICES"] == [
        "-A MINIK-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 "
        '-m comment --comment "default/empty:http has no endpoints" -j REJECT --reject-with icmp-port-unreachable'
    ]
    assert t["filter"]["MINIK-EXTERNAL-SERVICES"] == [
        "-A MINIK-EXTERNAL-SERVICES -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30001 "
        '-m comment --comment "default/empty:http has no endpoints" -j REJECT --reject-with icmp-port-unreachable'
    ]
    assert not [c for c in t["nat"] if "-SVC-" in c or "-SEP-" in c or "-EXT-" in c]
    assert t["nat"]["MINIK-NODEPORTS"] == []


def test_client_ip_affinity_uses_recent() -> None:
    s = sp(affinity_seconds=600, protocol="UDP", port=53, port_name="")
    e = eps("10.244.1.2", "10.244.1.3")
    t = kr.plan([kr.ServiceState(s, e)], P)  # no cluster CIDR known: no off-cluster masquerade
    svc, (sep1, sep2) = kr.svc_chain(P, s), [kr.sep_chain(P, s, x) for x in e]
    assert t["nat"][svc] == [
        f'-A {svc} -m comment --comment "default/web -> 10.244.1.2:8080" '
        f"-m recent --name {sep1} --mask 255.255.255.255 --rsource --rcheck --seconds 600 --reap -j {sep1}",
        f'-A {svc} -m comment --comment "default/web -> 10.244.1.3:8080" '
        f"-m recent --name {sep2} --mask 255.255.255.255 --rsource --rcheck --seconds 600 --reap -j {sep2}",
        f'-A {svc} -m comment --comment "default/web -> 10.244.1.2:8080" '
        f"-m statistic --mode random --probability 0.5000000000 -j {sep1}",
        f'-A {svc} -m comment --comment "default/web -> 10.244.1.3:8080" -j {sep2}',
    ]
    assert t["nat"][sep1][1] == (
        f'-A {sep1} -p udp -m comment --comment "default/web" -m recent --set --name {sep1} '
        "--mask 255.255.255.255 --rsource -m udp -j DNAT --to-destination 10.244.1.2:8080"
    )


def test_node_port_cluster_policy_masquerades() -> None:
    s = sp(node_port=30080)
    t = kr.plan([kr.ServiceState(s, eps("10.244.1.2"))], P, [CIDR])
    ext, svc = kr.ext_chain(P, s), kr.svc_chain(P, s)
    assert t["nat"]["MINIK-NODEPORTS"] == [
        f'-A MINIK-NODEPORTS -p tcp -m tcp --dport 30080 -m comment --comment "default/web:http" -j {ext}'
    ]
    assert t["nat"][ext] == [
        f'-A {ext} -m comment --comment "masquerade traffic for default/web:http external destinations" '
        "-j MINIK-MARK-MASQ",
        f"-A {ext} -j {svc}",
    ]


def test_external_traffic_policy_local() -> None:
    s = sp(node_port=30080, load_balancer=True)
    e = eps("10.244.1.2", "10.244.2.2", local=("10.244.1.2",))
    t = kr.plan([kr.ServiceState(s, e, external_ips=("192.0.2.7",), external_local=True)], P, [CIDR])
    ext, svc, svl = kr.ext_chain(P, s), kr.svc_chain(P, s), kr.svl_chain(P, s)
    assert t["nat"][ext] == [
        f'-A {ext} -s 10.244.0.0/16 -m comment --comment "pod traffic for default/web:http external destinations" '
        f"-j {svc}",
        f'-A {ext} -m comment --comment "masquerade LOCAL traffic for default/web:http external destinations" '
        "-m addrtype --src-type LOCAL -j MINIK-MARK-MASQ",
        f'-A {ext} -m comment --comment "route LOCAL traffic for default/web:http external destinations" '
        f"-m addrtype --src-type LOCAL -j {svc}",
        f"-A {ext} -j {svl}",
    ]
    local_sep = kr.sep_chain(P, s, e[0])
    assert t["nat"][svl] == [
        f'-A {svl} -m comment --comment "default/web:http -> 10.244.1.2:8080" -j {local_sep}'
    ]
    assert (
        f"-A MINIK-SERVICES -d 192.0.2.7/32 -p tcp -m tcp --dport 80 "
        f'-m comment --comment "default/web:http external IP" -j {ext}'
    ) in t["nat"]["MINIK-SERVICES"]
    # no endpoint on this node: external traffic is dropped, cluster traffic still served
    t = kr.plan([kr.ServiceState(s, e[1:], external_ips=("192.0.2.7",), external_local=True)], P, [CIDR])
    assert t["filter"]["MINIK-EXTERNAL-SERVICES"] == [
        "-A MINIK-EXTERNAL-SERVICES -d 192.0.2.7/32 -p tcp -m tcp --dport 80 "
        '-m comment --comment "default/web:http has no local endpoints" -j DROP',
        "-A MINIK-EXTERNAL-SERVICES -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30080 "
        '-m comment --comment "default/web:http has no local endpoints" -j DROP',
    ]
    assert ext not in t["nat"] and svc in t["nat"]


def test_several_pod_cidrs_and_nodeport_addresses() -> None:
    s = sp()
    t = kr.plan(
        [kr.ServiceState(s, eps("10.244.1.2"))],
        P,
        ["10.244.1.0/24", "10.250.0.0/24"],
        ["10.244.1.0/24", "10.250.0.0/24"],
        nodeport_ips=["192.0.2.1"],
    )
    assert t["nat"]["MINIK-MARK-OFFCLUSTER"] == [
        "-A MINIK-MARK-OFFCLUSTER -s 10.244.1.0/24 -j RETURN",
        "-A MINIK-MARK-OFFCLUSTER -s 10.250.0.0/24 -j RETURN",
        "-A MINIK-MARK-OFFCLUSTER -j MINIK-MARK-MASQ",
    ]
    assert t["nat"]["MINIK-SERVICES"][-1] == (
        '-A MINIK-SERVICES -d 192.0.2.1/32 -m comment --comment "service nodeports" -j MINIK-NODEPORTS'
    )
    assert t["filter"]["MINIK-FORWARD"][-2:] == [
        '-A MINIK-FORWARD -s 10.244.1.0/24 -d 10.250.0.0/24 -m comment --comment "pod network across nodes" -j ACCEPT',
        '-A MINIK-FORWARD -s 10.250.0.0/24 -d 10.244.1.0/24 -m comment --comment "pod network across nodes" -j ACCEPT',
    ]
    # adjacent CIDRs collapse into one
    assert kr.collapse(["10.244.0.0/24", "10.244.1.0/24"]) == ["10.244.0.0/23"]


def test_chain_names_are_stable_and_short() -> None:
    s = sp()
    e = kr.Endpoint("10.244.1.2", 8080)
    assert kr.sep_chain(P, s, e) == kr.sep_chain(P, sp(), kr.Endpoint("10.244.1.2", 8080))
    assert kr.sep_chain(P, s, e) != kr.sep_chain(P, s, kr.Endpoint("10.244.1.3", 8080))
    assert kr.svc_chain(P, s) != kr.svc_chain(P, sp(protocol="UDP"))
    for prefix in ("MINIK", "MINIKT1A2B", "ALONGERPREFIX1"):
        for name in (kr.svc_chain(prefix, s), kr.sep_chain(prefix, s, e), kr.ext_chain(prefix, s)):
            assert len(name) <= kr.CHAIN_MAX and name.startswith(prefix + "-")


def test_incremental_restore_rewrites_only_changed_chains() -> None:
    a, b = sp("a", cluster_ip="10.96.0.1"), sp("b", cluster_ip="10.96.0.2")
    before = kr.plan(
        [kr.ServiceState(a, eps("10.244.1.2")), kr.ServiceState(b, eps("10.244.1.3", "10.244.1.4"))], P
    )
    applied = {(t, c): r for t, chains in before.items() for c, r in chains.items()}
    full, n_full = kr.restore_text(before, None)
    assert n_full == sum(len(c) for c in before.values()) and full.count("COMMIT") == 2
    # b loses an endpoint: b's service chain is rewritten, the endpoint's chain deleted, nothing else
    after = kr.plan([kr.ServiceState(a, eps("10.244.1.2")), kr.ServiceState(b, eps("10.244.1.3"))], P)
    text, n = kr.restore_text(after, applied)
    gone = kr.sep_chain(P, b, kr.Endpoint("10.244.1.4", 8080))
    assert text.splitlines() == [
        "*nat",
        f":{kr.svc_chain(P, b)} - [0:0]",
        f":{gone} - [0:0]",
        *after["nat"][kr.svc_chain(P, b)],
        f"-X {gone}",
        "COMMIT",
    ]
    assert n == 1
    # nothing changed: nothing to write
    assert kr.restore_text(after, {(t, c): r for t, ch in after.items() for c, r in ch.items()}) == ("", 0)
    # a chain found in the kernel that nobody wants any more is deleted at a full sync
    text, _ = kr.restore_text(after, None, {"nat": {"MINIK-SEP-OLD"}})
    assert ":MINIK-SEP-OLD - [0:0]" in text and "-X MINIK-SEP-OLD" in text


def test_service_states_from_slices_and_endpoints() -> None:
    svc = {
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.0.10",
            "externalTrafficPolicy": "Local",
            "externalIPs": ["192.0.2.9", "2001:db8::1"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"hostname": "lb.example"}]}},
    }
    slices = [
        {
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.1.2"], "nodeName": "n1"},
                {"addresses": ["10.244.2.2"], "nodeName": "n2"},
                {"addresses": ["10.244.2.3"], "nodeName": "n1", "conditions": {"ready": False}},
                {"addresses": ["not-an-address"], "nodeName": "n1"},  # never reaches a restore input
            ],
        }
    ]
    (st,) = service_states(svc, slices, "n1")
    assert st.endpoints == (kr.Endpoint("10.244.1.2", 8080, True), kr.Endpoint("10.244.2.2", 8080, False))
    assert st.external_ips == ("192.0.2.9", "192.0.2.1") and st.external_local
    endpoints = {
        "subsets": [
            {"addresses": [{"ip": "10.244.1.2", "nodeName": "n2"}], "ports": [{"name": "http", "port": 8080}]}
        ]
    }
    (st,) = service_states(svc, endpoints, "n1")
    assert st.endpoints == (kr.Endpoint("10.244.1.2", 8080, False),)
    svc["spec"]["type"] = "ClusterIP"
    (st,) = service_states(svc, endpoints, "n1")
    assert not st.external_local and st.external_ips == ("192.0.2.9",)


def test_cleanup_helpers_find_prefix_chains_and_jumps() -> None:
    saved = "\n".join(
        [
            "*nat",
            ":PREROUTING ACCEPT [0:0]",
            ":MINIK-SERVICES - [0:0]",
            ":MINIKT1-SERVICES - [0:0]",
            ":MINIK-NWPLCY-X - [0:0]",
            '-A PREROUTING -m comment --comment "minik service portals (MINIK-SERVICES)" -j MINIK-SERVICES',
            "COMMIT",
        ]
    )
    assert ipt.prefix_chains(saved, "MINIK") == {"MINIK-SERVICES", "MINIK-NWPLCY-X"}
    assert ipt._jump_target(saved.splitlines()[5]) == "MINIK-SERVICES"
    assert ipt._jump_target("-A X -s 10.0.0.0/8 -j RETURN") == "RETURN"


def test_udp_conntrack_entries_of_removed_endpoints_are_cleared(monkeypatch: Any) -> None:
    import asyncio

    from proxy import kernel

    calls: list[list[str]] = []

    async def record(args: list[str]) -> None:
        calls.append(args)

    monkeypatch.setattr(kernel, "clear_conntrack", record)
    p = kernel.KernelProxier(None, "n1")  # type: ignore[arg-type]  # no I/O before run()
    dns = sp("dns", protocol="UDP", port=53, port_name="", node_port=30053)
    web = sp("web2", cluster_ip="10.96.0.11")  # TCP: never touched

    def sync(*ips: str) -> list[list[str]]:
        calls.clear()
        p.state = {
            "default/dns": [kr.ServiceState(dns, eps(*ips))],
            "default/web2": [kr.ServiceState(web, eps(*ips))],
        }
        asyncio.run(p._clear_stale_udp())
        return sorted(calls)

    assert sync() == []  # a new service: nothing to clear
    # its first endpoint: the entries of the refused datagrams go
    assert sync("10.244.1.2") == [["-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53"]]
    assert sync("10.244.1.2", "10.244.1.3") == []
    # an endpoint went away: the entries DNATed to it go, for the ClusterIP and the NodePort
    assert sync("10.244.1.3") == [
        ["-p", "udp", "--orig-dst", "10.96.0.10", "--dst-nat", "10.244.1.2"],
        ["-p", "udp", "--orig-port-dst", "30053", "--dst-nat", "10.244.1.2"],
    ]
