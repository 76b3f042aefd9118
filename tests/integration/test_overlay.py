"""The VXLAN backend (kubelet/overlay.py) on real kernel objects: two hosts as network namespaces on
two segments behind a router (testkit/overlaylab.py), each with a vxlan device programmed by the
backend from Node objects, and a pod behind each host's bridge."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apimachinery.client import Client
from apimachinery.kubeconfig import load_config
from kubelet.overlay import Kernel, Overlay, cleanup_device, run
from testkit import prereq
from testkit.overlaylab import CLUSTER_CIDR, OverlayLab, sh, tcp_ping
from testkit.processes import KubeletProcess


def node(name: str, cidr: str, ann: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": ann}, "spec": {"podCIDR": cidr}}


@pytest.fixture
def lab() -> Iterator[OverlayLab]:
    prereq.require_root()
    prereq.require(
        bool(shutil.which("ip") and shutil.which("bridge")), "iproute2", "apt-get install iproute2"
    )
    with OverlayLab() as lab:
        yield lab


def overlays(lab: OverlayLab) -> tuple[list[Overlay], list[dict[str, Any]]]:
    out, nodes = [], []
    for h in lab.hosts:
        o = Overlay("vxlan", h.name, public_ip=h.ip, cluster_cidr=CLUSTER_CIDR, netns=h.ns)
        nodes.append(node(h.name, h.pod_cidr, o.setup(h.pod_cidr)))
        out.append(o)
    return out, nodes


def test_pods_reach_each_other_through_vxlan_and_a_removed_node_loses_its_entries(lab: OverlayLab) -> None:
    (o1, o2), nodes = overlays(lab)
    assert o1.pod_mtu() == 1450
    lab.add_pods(1450)
    h1, h2 = lab.hosts
    # without the other node's entries there is no way: the router does not know the pod CIDRs
    with pytest.raises(ConnectionError):
        tcp_ping(h1.pod_ns, h2.pod_ns, h2.pod_ip, timeout=1.0)

    for o in (o1, o2):
        ch = o.sync(nodes)
        assert len(ch.routes_add) == len(ch.neigh_add) == len(ch.fdb_add) == 1
        assert not o.sync(nodes)  # idempotent: nothing left to do
    link = sh("ip", "-d", "link", "show", "minik.1", ns=h1.ns).stdout
    assert "vxlan id 1" in link and "local 192.168.201.2" in link and "nolearning" in link
    assert "dstport 8472" in link and "mtu 1450" in link
    route = sh("ip", "route", "show", "10.244.2.0/24", ns=h1.ns).stdout
    assert "via 10.244.2.0 dev minik.1" in route and "onlink" in route
    fdb = sh("bridge", "fdb", "show", "dev", "minik.1", ns=h1.ns).stdout
    assert f"{o2.mac} dst {h2.ip}" in fdb
    assert f"{o2.mac} PERMANENT" in sh("ip", "neigh", "show", "dev", "minik.1", ns=h1.ns).stdout

    assert tcp_ping(h1.pod_ns, h2.pod_ns, h2.pod_ip) == "pong hello"
    assert tcp_ping(h2.pod_ns, h1.pod_ns, h1.pod_ip) == "pong hello"
    # a pod reaches the other host's pod gateway, and the host its pods, too
    assert tcp_ping(h1.ns, h2.pod_ns, h2.pod_ip) == "pong hello"

    # an entry someone removed comes back on the next sync
    sh("ip", "route", "del", "10.244.2.0/24", ns=h1.ns)
    assert o1.sync(nodes).routes_add == {"10.244.2.0/24": "10.244.2.0"}

    # node2 goes away: node1 drops its route, neighbour and FDB entry
    ch = o1.sync(nodes[:1])
    assert ch.routes_del == ["10.244.2.0/24"] and ch.neigh_del == ["10.244.2.0"]
    assert ch.fdb_del == [(o2.mac, h2.ip)]
    assert sh("ip", "route", "show", "10.244.2.0/24", ns=h1.ns).stdout.strip() == ""
    assert o2.mac not in sh("bridge", "fdb", "show", "dev", "minik.1", ns=h1.ns).stdout
    assert o2.mac not in sh("ip", "neigh", "show", "dev", "minik.1", ns=h1.ns).stdout
    with pytest.raises(ConnectionError):
        tcp_ping(h1.pod_ns, h2.pod_ns, h2.pod_ip, timeout=1.0)


def test_a_changed_node_is_reprogrammed_and_bad_annotations_are_skipped(lab: OverlayLab) -> None:
    (o1, o2), nodes = overlays(lab)
    lab.add_pods(1450)
    h1, h2 = lab.hosts
    bad = node("node3", "10.244.3.0/24", {"flannel.alpha.coreos.com/backend-type": "vxlan"})
    o1.sync([*nodes, bad])
    o2.sync(nodes)
    assert tcp_ping(h1.pod_ns, h2.pod_ns, h2.pod_ip) == "pong hello"
    # someone deletes node2's device: its sync recreates it with the MAC node1 already has
    published, mac = nodes[1]["metadata"]["annotations"], o2.mac
    cleanup_device("minik.1", o2.kernel)
    assert o2.sync(nodes).routes_add == {"10.244.1.0/24": "10.244.1.0"}
    assert o2.mac == mac and o2.annotations == published
    assert not o1.sync([*nodes, bad])
    assert tcp_ping(h1.pod_ns, h2.pod_ns, h2.pod_ip) == "pong hello"
    assert tcp_ping(h2.pod_ns, h1.pod_ns, h1.pod_ip) == "pong hello"
    # node2's annotations change (another MAC): node1 follows them, and back
    moved = json.dumps({"VNI": 1, "VtepMAC": "02:00:00:00:00:22"})
    nodes[1] = node(h2.name, h2.pod_cidr, {**published, "flannel.alpha.coreos.com/backend-data": moved})
    ch = o1.sync([*nodes, bad])
    assert ch.neigh_add == {"10.244.2.0": "02:00:00:00:00:22"} and len(ch.fdb_del) == 1
    nodes[1] = node(h2.name, h2.pod_cidr, published)
    assert o1.sync([*nodes, bad]).neigh_add == {"10.244.2.0": mac}
    assert tcp_ping(h1.pod_ns, h2.pod_ns, h2.pod_ip) == "pong hello"
    assert o1.cleanup() and sh("ip", "link", "show", "minik.1", ns=h1.ns, check=False).returncode != 0


def test_the_backend_follows_the_node_objects_of_an_api_server(lab: OverlayLab, apiserver: Any) -> None:
    """overlay.run: each node publishes its annotations on its Node and programs the others from a
    watch; a deleted Node's entries go."""
    h1, h2 = lab.hosts
    lab.add_pods(1450)
    with apiserver.http() as api:
        for h in lab.hosts:
            r = api.post(
                "/api/v1/nodes", json={"metadata": {"name": h.name}, "spec": {"podCIDR": h.pod_cidr}}
            )
            assert r.status_code == 201, r.text

        async def scenario() -> None:
            stop = asyncio.Event()
            clients = [Client(load_config(apiserver.kubeconfig)) for _ in lab.hosts]
            ovs = [Overlay("vxlan", h.name, public_ip=h.ip, netns=h.ns) for h in lab.hosts]
            tasks = [
                asyncio.create_task(run(c, o, h.pod_cidr, stop))
                for c, o, h in zip(clients, ovs, lab.hosts, strict=True)
            ]
            try:
                deadline = time.monotonic() + 20
                while True:
                    try:
                        assert await asyncio.to_thread(tcp_ping, h1.pod_ns, h2.pod_ns, h2.pod_ip, 5201, 1.0)
                        break
                    except ConnectionError:
                        assert time.monotonic() < deadline, "the pods never reached each other"
                        await asyncio.sleep(0.2)
                assert await asyncio.to_thread(tcp_ping, h2.pod_ns, h1.pod_ns, h1.pod_ip) == "pong hello"
                ann = api.get(f"/api/v1/nodes/{h2.name}").json()["metadata"]["annotations"]
                assert ann["flannel.alpha.coreos.com/backend-type"] == "vxlan"
                assert ann["flannel.alpha.coreos.com/public-ip"] == h2.ip
                assert json.loads(ann["flannel.alpha.coreos.com/backend-data"])["VtepMAC"] == ovs[1].mac
                assert api.delete(f"/api/v1/nodes/{h2.name}").status_code == 200
                deadline = time.monotonic() + 20
                while sh("ip", "route", "show", h2.pod_cidr, ns=h1.ns).stdout.strip():
                    assert time.monotonic() < deadline, "node2's route outlived its Node"
                    await asyncio.sleep(0.2)
                assert ovs[1].mac not in sh("bridge", "fdb", "show", "dev", "minik.1", ns=h1.ns).stdout
            finally:
                stop.set()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                for c in clients:
                    await c.aclose()

        try:
            asyncio.run(scenario())
        finally:
            for h in lab.hosts:
                api.delete(f"/api/v1/nodes/{h.name}")


def test_the_kubelet_runs_the_vxlan_backend_and_cleans_it_up(apiserver: Any) -> None:
    """minik-kubelet --pod-network-backend vxlan: the device (on loopback here, no peers), the pod
    MTU in its conflist, its Node's annotations; --cleanup removes the device."""
    prereq.require_root()
    prereq.require_docker()
    dev = f"mkvx{uuid.uuid4().hex[:6]}"
    backend = ("--pod-network-backend", "vxlan", "--overlay-device", dev)
    k = KubeletProcess(apiserver, extra=backend)
    try:
        k.start()
        link = k.wait(lambda: Kernel().link(dev), 30, f"the vxlan device {dev}")
        mtu = Kernel().interface_of("127.0.0.1")[1] - 50
        assert link["mtu"] == mtu and link["linkinfo"]["info_data"]["local"] == "127.0.0.1"
        net = ipaddress.ip_network(k.subnet)
        assert f"{net.network_address}/32" in sh("ip", "-4", "addr", "show", "dev", dev).stdout
        conf = json.loads((Path(k.cni_conf_dir) / f"10-{k.network}.conflist").read_text())
        assert conf["plugins"][0]["mtu"] == mtu
        # pods of other nodes see a pod's own address: no masquerading inside the cluster CIDR
        nat = sh("iptables-save", "-t", "nat").stdout
        assert f"-s {k.subnet} ! -d 10.244.0.0/16" in nat
        with apiserver.http() as api:

            def annotated() -> dict[str, str] | None:
                ann = api.get(f"/api/v1/nodes/{k.node}").json()["metadata"].get("annotations") or {}
                return ann if ann.get("flannel.alpha.coreos.com/backend-type") == "vxlan" else None

            ann = k.wait(annotated, 30, "the node's flannel annotations")
        assert json.loads(ann["flannel.alpha.coreos.com/backend-data"]) == {
            "VNI": 1,
            "VtepMAC": link["address"],
        }
        assert ann["flannel.alpha.coreos.com/public-ip"] == "127.0.0.1"
        k.stop()
        assert Kernel().link(dev) is not None  # kept while the kubelet is away, as flannel's is
        out = subprocess.run(
            [str(prereq.venv_bin() / "minik-kubelet"), "--cleanup", *backend], capture_output=True, text=True
        )
        assert out.returncode == 0 and "removed" in out.stdout, out.stderr
        assert Kernel().link(dev) is None
    finally:
        k.cleanup()
        cleanup_device(dev)
