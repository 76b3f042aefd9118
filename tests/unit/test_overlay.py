"""The overlay backends' desired state from the Node objects (kubelet/overlay.py), without a kernel."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubelet.cni import generate_conflist
from kubelet.overlay import (
    BACKEND_DATA,
    BACKEND_TYPE,
    PUBLIC_IP,
    Entries,
    Overlay,
    Peer,
    diff_entries,
    node_annotations,
    plan_routes,
    plan_vxlan,
    relevant,
    vxlan_entries,
)

MAC2 = "aa:bb:cc:00:00:02"
MAC3 = "aa:bb:cc:00:00:03"


def node(name: str, cidr: str | None, ann: dict[str, Any] | None = None, ip: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": ann or {}},
        "spec": {"podCIDR": cidr} if cidr else {},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}] if ip else []},
    }


def vx(mac: str, ip: str, vni: Any = 1) -> dict[str, str]:
    return {BACKEND_TYPE: "vxlan", BACKEND_DATA: json.dumps({"VNI": vni, "VtepMAC": mac}), PUBLIC_IP: ip}


def test_annotations_are_flannels() -> None:
    ann = node_annotations("vxlan", "192.0.2.1", "aa:bb:cc:dd:ee:ff")
    assert ann == {
        BACKEND_TYPE: "vxlan",
        BACKEND_DATA: '{"VNI": 1, "VtepMAC": "aa:bb:cc:dd:ee:ff"}',
        PUBLIC_IP: "192.0.2.1",
    }
    assert node_annotations("host-gw", "192.0.2.1")[BACKEND_DATA] == "null"


def test_a_peer_per_other_annotated_node_and_bad_ones_skipped() -> None:
    nodes = [
        node("node-1", "10.244.1.0/24", vx("aa:bb:cc:00:00:01", "192.0.2.1")),  # me
        node("node-2", "10.244.2.0/24", vx(MAC2.upper(), "192.0.2.2")),
        node("node-3", None, vx(MAC3, "192.0.2.3")),  # no pod CIDR yet
        node("node-4", "10.244.4.0/24"),  # no annotations (yet)
        node("node-5", "10.244.5.0/24", {**vx(MAC3, "192.0.2.5"), BACKEND_DATA: "{not json"}),
        node("node-6", "10.244.6.0/24", vx("01:00:5e:00:00:01", "192.0.2.6")),  # multicast MAC
        node("node-7", "10.244.7.0/24", vx(MAC3, "not-an-ip")),
        node("node-8", "10.244.8.0/24", vx(MAC3, "192.0.2.8", vni=2)),  # another VNI
        node("node-9", "192.168.9.0/24", vx(MAC3, "192.0.2.9")),  # outside the cluster CIDR
        node("node-a", "fd00::/64", vx(MAC3, "192.0.2.10")),  # IPv6: not supported
        node("node-b", "10.244.11.0/24", {**vx(MAC3, "192.0.2.11"), BACKEND_TYPE: "host-gw"}),
        node("node-c", "10.244.12.0/24", {**vx(MAC3, "192.0.2.12"), BACKEND_DATA: "[1]"}),
        node("node-d", "10.244.2.0/24", vx(MAC3, "192.0.2.13")),  # node-2's CIDR
        {"metadata": {"name": "node-e", "annotations": "nonsense"}, "spec": {"podCIDR": "10.244.14.0/24"}},
    ]
    peers, skipped = plan_vxlan(nodes, "node-1", 1, "10.244.0.0/16")
    assert peers == [Peer("node-2", "10.244.2.0/24", "10.244.2.0", MAC2, "192.0.2.2")]
    assert len(skipped) == len(nodes) - 2
    assert any("node-d" in s and "node-2" in s for s in skipped)


def test_entries_and_their_diff() -> None:
    p2 = Peer("node-2", "10.244.2.0/24", "10.244.2.0", MAC2, "192.0.2.2")
    p3 = Peer("node-3", "10.244.3.0/24", "10.244.3.0", MAC3, "192.0.2.3")
    want = vxlan_entries([p2, p3])
    assert want == Entries(
        {"10.244.2.0/24": "10.244.2.0", "10.244.3.0/24": "10.244.3.0"},
        {"10.244.2.0": MAC2, "10.244.3.0": MAC3},
        {(MAC2, "192.0.2.2"), (MAC3, "192.0.2.3")},
    )
    assert not diff_entries(want, want)
    have = Entries(
        {"10.244.2.0/24": "10.244.2.0", "10.244.9.0/24": "10.244.9.0"},  # node-9 is gone
        {"10.244.2.0": "aa:bb:cc:00:00:99", "10.244.9.0": "aa:bb:cc:00:00:09"},  # node-2's MAC changed
        {("aa:bb:cc:00:00:99", "192.0.2.2"), ("aa:bb:cc:00:00:09", "192.0.2.9")},
    )
    ch = diff_entries(want, have)
    assert ch.routes_add == {"10.244.3.0/24": "10.244.3.0"}
    assert ch.routes_del == ["10.244.9.0/24"]
    assert ch.neigh_add == {"10.244.2.0": MAC2, "10.244.3.0": MAC3}
    assert ch.neigh_del == ["10.244.9.0"]
    assert ch.fdb_add == sorted(want.fdb)
    assert ch.fdb_del == [("aa:bb:cc:00:00:09", "192.0.2.9"), ("aa:bb:cc:00:00:99", "192.0.2.2")]
    # everything goes when the last peer does
    gone = diff_entries(Entries(), want)
    assert gone.routes_del == sorted(want.routes) and gone.fdb_del == sorted(want.fdb)


def test_host_gw_prefers_the_public_ip_annotation() -> None:
    nodes = [
        node("node-2", "10.244.2.0/24", {PUBLIC_IP: "192.0.2.2"}, ip="10.0.0.2"),
        node("node-3", "10.244.3.0/24", {PUBLIC_IP: "bogus"}, ip="10.0.0.3"),
    ]
    assert plan_routes(nodes, "node-1", "10.244.0.0/16") == {
        "10.244.2.0/24": "192.0.2.2",
        "10.244.3.0/24": "10.0.0.3",
    }


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Overlay("geneve", "n")
    with pytest.raises(ValueError):
        Overlay("vxlan", "n", device="a-very-long-device-name")
    with pytest.raises(ValueError):
        Overlay("vxlan", "n", cluster_cidr="fd00::/48")
    assert Overlay("none", "n").pod_mtu() is None
    assert not Overlay("none", "n").sync([node("x", "10.244.1.0/24")])


def test_the_conflist_carries_the_pod_mtu() -> None:
    conf = generate_conflist("minik-pods", "minik0", "10.244.1.0/24", "/var/lib/cni", 1450)
    assert conf["plugins"][0]["mtu"] == 1450
    assert (
        "mtu" not in generate_conflist("minik-pods", "minik0", "10.244.1.0/24", "/var/lib/cni")["plugins"][0]
    )


def test_minik_status_reads_the_backend_from_the_kubelets_command_line() -> None:
    from cli.cluster import pod_network_backend

    argv = ["minik-kubelet", "--pod-network-backend", "vxlan", "--overlay-device=ov.1"]
    assert pod_network_backend({"kubelet": {"argv": argv}}, {}) == ("vxlan", "ov.1")
    assert pod_network_backend({}, {}) == ("none", "minik.1")
    assert pod_network_backend({}, {"pod_network_backend": "host-gw"})[0] == "host-gw"


def test_only_what_the_backends_read_triggers_a_sync() -> None:
    a = node("node-2", "10.244.2.0/24", vx(MAC2, "192.0.2.2"), ip="10.0.0.2")
    b = {**a, "status": {**a["status"], "conditions": [{"type": "Ready", "status": "True"}]}}
    assert relevant(a) == relevant(b)
    assert relevant(a) != relevant(node("node-2", "10.244.2.0/24", vx(MAC3, "192.0.2.2"), ip="10.0.0.2"))
    assert relevant(a) != relevant(node("node-2", "10.244.9.0/24", vx(MAC2, "192.0.2.2"), ip="10.0.0.2"))


def test_minik_passes_config_jsons_backend_to_the_kubelet() -> None:
    from cli.supervisor import pod_network_flags

    assert pod_network_flags({}) == [] and pod_network_flags({"pod_network_backend": "none"}) == []
    assert pod_network_flags({"pod_network_backend": "vxlan", "cluster_cidr": "10.32.0.0/16"}) == [
        "--pod-network-backend",
        "vxlan",
        "--cluster-cidr",
        "10.32.0.0/16",
    ]
