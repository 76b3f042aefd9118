"""The pod's /etc/resolv.conf the kubelet writes under a CNI network (the runtime writes none),
by Kubernetes' rules for ``dnsPolicy`` and ``dnsConfig`` (the kubelet's GetPodDNS)."""

from __future__ import annotations

from pathlib import Path

from kubelet.kubelet import (
    DEFAULT_NAMESERVERS,
    MAX_DNS_SEARCH_LIST_CHARS,
    parse_resolv_conf,
    pod_dns,
    read_host_resolv_conf,
    resolv_conf,
)

HOST = "# host\nnameserver 10.0.0.2\nnameserver 127.0.0.53\nsearch corp.example lab.example.\noptions edns0\n"
CLUSTER_SEARCH = ["web.svc.cluster.local", "svc.cluster.local", "cluster.local"]


def dns(
    spec: dict, cluster_dns: list[str] | None = None, host: str = HOST
) -> tuple[list[str], list[str], list[str]]:
    """The lists of the resolv.conf written for ``spec`` in namespace web (cluster DNS 10.96.0.10)."""
    servers = ["10.96.0.10"] if cluster_dns is None else cluster_dns
    return parse_resolv_conf(resolv_conf(*pod_dns(spec, "web", servers, "cluster.local", host)))


def test_cluster_first_uses_the_cluster_dns_then_the_host_s_search_domains() -> None:
    text = resolv_conf(*pod_dns({}, "web", ["10.96.0.10"], "cluster.local", HOST))
    assert text == (
        "# Kubernetes-managed resolv.conf.\n"
        "search web.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n"
    )


def test_cluster_first_without_a_cluster_dns_falls_back_to_default() -> None:
    assert dns({}, cluster_dns=[]) == (["10.0.0.2"], ["corp.example", "lab.example"], ["edns0"])


def test_default_policy_takes_the_host_s_without_its_loopback_resolvers() -> None:
    assert dns({"dnsPolicy": "Default"}) == (["10.0.0.2"], ["corp.example", "lab.example"], ["edns0"])


def test_none_takes_only_dns_config() -> None:
    spec = {
        "dnsPolicy": "None",
        "dnsConfig": {"nameservers": ["192.0.2.53"], "options": [{"name": "ndots", "value": "2"}]},
    }
    assert dns(spec) == (["192.0.2.53"], [], ["ndots:2"])
    text = resolv_conf(*pod_dns(spec, "web", ["10.96.0.10"], "cluster.local", HOST))
    assert "search" not in text and "edns0" not in text and "10.0.0.2" not in text


def test_default_with_dns_config_appends_to_the_host_s_lists() -> None:
    spec = {
        "dnsPolicy": "Default",
        "dnsConfig": {
            "nameservers": ["192.0.2.53", "10.0.0.2"],
            "searches": ["extra.example", "corp.example"],
            "options": [{"name": "edns0"}, {"name": "timeout", "value": "1"}],
        },
    }
    assert dns(spec) == (
        ["10.0.0.2", "192.0.2.53"],
        ["corp.example", "lab.example", "extra.example"],
        ["edns0", "timeout:1"],
    )


def test_cluster_first_with_dns_config_merges_options_by_name() -> None:
    spec = {
        "dnsConfig": {
            "nameservers": ["192.0.2.53"],
            "searches": ["cluster.local", "extra.example"],
            "options": [{"name": "ndots", "value": "1"}, {"name": "single-request-reopen"}],
        }
    }
    assert dns(spec) == (
        ["10.96.0.10", "192.0.2.53"],
        [*CLUSTER_SEARCH, "corp.example", "lab.example", "extra.example"],
        ["ndots:1", "single-request-reopen"],
    )


def test_host_network_cluster_first_falls_back_to_default() -> None:
    host_net = {"hostNetwork": True}
    assert dns({**host_net, "dnsPolicy": "ClusterFirst"}) == (
        ["10.0.0.2"],
        ["corp.example", "lab.example"],
        ["edns0"],
    )
    assert dns({**host_net, "dnsPolicy": "ClusterFirstWithHostNet"}) == (
        ["10.96.0.10"],
        [*CLUSTER_SEARCH, "corp.example", "lab.example"],
        ["ndots:5"],
    )
    # without hostNetwork, ClusterFirstWithHostNet is ClusterFirst
    assert dns({"dnsPolicy": "ClusterFirstWithHostNet"}) == dns({"dnsPolicy": "ClusterFirst"})


def test_nameservers_are_cut_to_three() -> None:
    spec = {"dnsPolicy": "Default", "dnsConfig": {"nameservers": ["192.0.2.1", "192.0.2.2", "192.0.2.3"]}}
    assert dns(spec)[0] == ["10.0.0.2", "192.0.2.1", "192.0.2.2"]
    spec = {"dnsConfig": {"nameservers": ["192.0.2.1", "192.0.2.2"]}}
    assert dns(spec, cluster_dns=["10.96.0.10", "10.96.0.11"])[0] == ["10.96.0.10", "10.96.0.11", "192.0.2.1"]


def test_search_domains_are_cut_to_kubernetes_limits() -> None:
    many = [f"d{i}.example" for i in range(40)]
    searches = dns({"dnsConfig": {"searches": many}})[1]
    assert len(searches) == 32
    assert searches == [*CLUSTER_SEARCH, "corp.example", "lab.example", *many[:27]]
    # a domain longer than 253 characters is left out; the last ones go until the line fits 2048
    too_long = "a" * 254
    long_ones = [f"{i:02d}" + "b" * 248 + ".example" for i in range(10)]  # 258 characters: too long
    fit = [f"{i:02d}." + "c" * 200 for i in range(12)]  # 203 characters each

    def none(searches: list[str]) -> dict:
        return {"dnsPolicy": "None", "dnsConfig": {"nameservers": ["192.0.2.1"], "searches": searches}}

    searches = dns(none([too_long, *fit]))[1]
    assert too_long not in searches
    assert searches == fit[:10]  # 10 x 203 + 9 spaces = 2039; one more would be 2243
    assert len(" ".join(searches)) <= MAX_DNS_SEARCH_LIST_CHARS
    assert dns(none(long_ones))[1] == []


def test_a_bad_dns_config_is_ignored() -> None:
    spec = {"dnsPolicy": "Default", "dnsConfig": {"options": ["ndots", {"value": "1"}, 5]}}
    assert dns(spec) == (["10.0.0.2"], ["corp.example", "lab.example"], ["edns0"])
    assert dns({"dnsPolicy": "Default", "dnsConfig": "x"})[0] == ["10.0.0.2"]


def test_only_local_resolvers_on_the_host_give_docker_s_defaults() -> None:
    text = resolv_conf(
        *pod_dns(
            {"dnsPolicy": "Default"}, "web", [], "cluster.local", "nameserver 127.0.0.1\nnameserver ::1\n"
        )
    )
    assert parse_resolv_conf(text) == (DEFAULT_NAMESERVERS, [], [])
    assert "search" not in text and "options" not in text


def test_read_host_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(HOST)
    assert read_host_resolv_conf(str(conf)) == HOST
    assert read_host_resolv_conf(str(tmp_path / "missing")) == ""
