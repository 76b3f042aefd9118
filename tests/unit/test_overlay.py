"""The overlay backends' desired state from the Node objects (kubelet/overlay.py), without a kernel."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kubelet.cni import generate_conflist
from kubelet.overlay import (
    BACKEND_DATA,
    BACKEND_TYPE,
    PUBLIC_IP,
    Entries,
    Kernel,
    Overlay,
    Peer,
    diff_entries,
    node_annotations,
    plan_routes,
    plan_vxlan,
    relevant,
    vtep_mac,
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


class FakeKernel(Kernel):
    """The ``ip``/``bridge`` commands recorded; ``ip -j`` answers from ``links`` and ``routes``."""

    def __init__(
        self, links: dict[str, dict[str, Any]] | None = None, routes: list[Any] | None = None
    ) -> None:
        super().__init__()
        self.links = links or {}
        self.routes = routes or []
        self.cmds: list[list[str]] = []

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.cmds.append(list(cmd))
        if cmd[:3] == ("ip", "link", "add"):
            mac = cmd[cmd.index("address") + 1] if "address" in cmd else "7e:00:00:00:00:99"
            arg = dict(zip(cmd[4::2], cmd[5::2], strict=False))
            data = {"id": 1, "local": arg.get("local"), "port": 8472, "learning": False}
            self.links[cmd[3]] = {
                "ifname": cmd[3],
                "address": mac,
                "linkinfo": {"info_kind": "vxlan", "info_data": data},
            }
        if cmd[:3] == ("ip", "link", "del"):
            self.links.pop(cmd[3], None)
        if cmd[:3] == ("ip", "route", "del"):
            self.routes = [r for r in self.routes if r["dst"] != cmd[3]]
        return subprocess.CompletedProcess(list(cmd), 0, "", "")

    def json(self, *cmd: str) -> list[dict[str, Any]]:
        if cmd[:4] == ("ip", "-j", "-d", "link"):
            return [self.links[cmd[-1]]] if cmd[-1] in self.links else []
        if cmd[:4] == ("ip", "-j", "-4", "addr") and "dev" not in cmd:
            return [{"ifname": "eth0", "mtu": 1500, "addr_info": [{"local": "192.0.2.1"}]}]
        if cmd[:4] == ("ip", "-j", "-4", "route"):
            return list(self.routes)
        return []


def test_the_vtep_mac_is_stable_so_a_recreated_device_keeps_the_published_one() -> None:
    mac = vtep_mac("node-1")
    assert mac == vtep_mac("node-1") != vtep_mac("node-2") and mac != vtep_mac("node-1", vni=2)
    first = int(mac[:2], 16)
    assert not first & 1 and first & 2  # unicast, locally administered
    o = Overlay("vxlan", "node-1", public_ip="192.0.2.1")
    o.kernel = k = FakeKernel()
    ann = o.setup("10.244.1.0/24")
    assert json.loads(ann[BACKEND_DATA])["VtepMAC"] == o.mac == mac
    del k.links["minik.1"]  # someone deletes the device: sync makes it again, with the same MAC
    o.sync([])
    adds = [c for c in k.cmds if c[:3] == ["ip", "link", "add"]]
    assert len(adds) == 2 and all(c[3:6] == ["minik.1", "address", mac] for c in adds)
    assert o.mac == mac and o.annotations == ann
    # a device made before the MAC was derived gets it
    k.links["minik.1"]["address"] = "7e:00:00:00:00:99"
    o.setup("10.244.1.0/24")
    assert ["ip", "link", "set", "minik.1", "address", mac] in k.cmds


def test_a_recreated_device_with_other_annotations_is_published_again() -> None:
    """overlay.run patches the Node again when a sync's setup changed the annotations."""
    from kubelet import overlay

    o = Overlay("vxlan", "node-1", public_ip="192.0.2.1")
    o.kernel = FakeKernel()
    patches: list[dict[str, Any]] = []
    stop = asyncio.Event()

    class FakeClient:
        async def patch(self, info: Any, name: str, body: dict[str, Any]) -> None:
            patches.append(body["metadata"]["annotations"])
            if len(patches) == 2:
                stop.set()

    class FakeInformer:
        def __init__(self, *args: Any) -> None:
            self.store = self

        def add_event_handler(self, **kw: Any) -> None: ...

        async def run(self) -> None:
            await asyncio.Event().wait()

        async def wait_for_sync(self) -> None: ...

        def stop(self) -> None: ...

        def list(self) -> list[dict[str, Any]]:
            o.public_ip = "192.0.2.7"  # as if the device were made anew with another address
            o.annotations = node_annotations("vxlan", o.public_ip, o.mac)
            return []

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(overlay, "Informer", FakeInformer)
        mp.setattr(overlay, "RESYNC", 0.01)
        asyncio.run(asyncio.wait_for(overlay.run(FakeClient(), o, "10.244.1.0/24", stop), 5))  # type: ignore[arg-type]
    assert [p[PUBLIC_IP] for p in patches] == ["192.0.2.1", "192.0.2.7"]


def test_skipped_peers_are_warnings_once_and_a_pod_cidr_outside_the_cluster_cidr_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    o = Overlay("vxlan", "node-1", public_ip="192.0.2.1", cluster_cidr="10.244.0.0/16")
    o.kernel = FakeKernel()
    caplog.set_level(logging.DEBUG, "kubelet.overlay")
    o.setup("10.245.1.0/24")  # the cluster ran --cluster-cidr 10.245.0.0/16; this node was told 10.244
    assert any(
        r.levelno == logging.WARNING and "not inside the cluster CIDR 10.244.0.0/16" in r.getMessage()
        for r in caplog.records
    )
    caplog.clear()
    other = [node("node-2", "10.245.2.0/24", vx(MAC2, "192.0.2.2"))]
    o.sync(other)
    o.sync(other)
    skips = [r for r in caplog.records if "skipping node node-2" in r.getMessage()]
    assert [r.levelno for r in skips] == [logging.WARNING, logging.DEBUG]


def test_two_nodes_with_one_public_ip_are_both_peers() -> None:
    nodes = [
        node("node-2", "10.244.2.0/24", vx(MAC2, "192.0.2.2")),
        node("node-3", "10.244.3.0/24", vx(MAC3, "192.0.2.2")),
    ]
    peers, skipped = plan_vxlan(nodes, "node-1", cluster_cidr="10.244.0.0/16")
    assert [p.node for p in peers] == ["node-2", "node-3"] and skipped == []


def test_minik_down_and_leave_remove_host_gw_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    import cli.cluster
    from kubelet import overlay

    argv = ["minik-kubelet", "--node-name", "w1", "--node-ip", "192.0.2.1"]
    argv += ["--pod-network-backend", "host-gw", "--cluster-cidr", "10.32.0.0/16"]
    o = cli.cluster.overlay_of({"kubelet": {"argv": argv}}, {"cluster_cidr": "10.244.0.0/16"})
    assert (o.backend, o.node_name, o.public_ip, o.cluster_cidr) == (
        "host-gw",
        "w1",
        "192.0.2.1",
        "10.32.0.0/16",
    )
    routes = [
        {"dst": "10.32.2.0/24", "gateway": "192.0.2.2"},
        {"dst": "10.9.0.0/24", "gateway": "192.0.2.9"},  # not the backend's: outside the cluster CIDR
    ]
    kernel = FakeKernel(routes=routes)
    monkeypatch.setattr(overlay, "Kernel", lambda netns=None: kernel)
    monkeypatch.setattr(cli.cluster, "read_json", lambda path: {"kubelet": {"argv": argv}})
    monkeypatch.setattr(cli.cluster, "cleanup_pod_network", lambda *a: [])
    cfg = {
        "cni_conf_dir": "/nonexistent",
        "network_name": "n",
        "cni_bridge": "b",
        "cni_cache_dir": "/nonexistent",
    }
    removed = cli.cluster._cleanup_cni(cfg, Path("/nonexistent"))
    assert ["ip", "route", "del", "10.32.2.0/24", "dev", "eth0"] in kernel.cmds
    assert kernel.routes == routes[1:] and len(removed) == 1 and "host-gw" in removed[0]
