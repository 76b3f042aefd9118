"""The pod's /etc/resolv.conf the kubelet writes under a CNI network (the runtime writes none)."""

from __future__ import annotations

from pathlib import Path

from kubelet.kubelet import (
    DEFAULT_NAMESERVERS,
    parse_resolv_conf,
    pod_dns,
    read_host_resolv_conf,
    resolv_conf,
)

HOST = "# host\nnameserver 10.0.0.2\nnameserver 127.0.0.53\nsearch corp.example lab.example\noptions edns0\n"


def test_cluster_first_replaces_the_host_lists() -> None:
    text = resolv_conf(*pod_dns({}, "web", ["10.96.0.10"], "cluster.local"), HOST)
    assert text == (
        "# Kubernetes-managed resolv.conf.\n"
        "search web.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n"
    )


def test_default_policy_takes_the_host_s_without_its_loopback_resolvers() -> None:
    text = resolv_conf(*pod_dns({"dnsPolicy": "Default"}, "web", ["10.96.0.10"], "cluster.local"), HOST)
    assert parse_resolv_conf(text) == (["10.0.0.2"], ["corp.example", "lab.example"], ["edns0"])


def test_dns_config_merges_and_a_missing_list_comes_from_the_host() -> None:
    spec = {
        "dnsPolicy": "None",
        "dnsConfig": {"nameservers": ["192.0.2.53"], "options": [{"name": "ndots", "value": "2"}]},
    }
    assert parse_resolv_conf(resolv_conf(*pod_dns(spec, "web", [], "cluster.local"), HOST)) == (
        ["192.0.2.53"],
        ["corp.example", "lab.example"],
        ["ndots:2"],
    )


def test_only_local_resolvers_on_the_host_give_docker_s_defaults() -> None:
    text = resolv_conf([], [], [], "nameserver 127.0.0.1\nnameserver ::1\n")
    assert parse_resolv_conf(text) == (DEFAULT_NAMESERVERS, [], [])
    assert "search" not in text and "options" not in text


def test_read_host_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(HOST)
    assert read_host_resolv_conf(str(conf)) == HOST
    assert read_host_resolv_conf(str(tmp_path / "missing")) == ""
