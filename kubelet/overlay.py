"""The node's side of the pod network between nodes: a VXLAN overlay or host-gw routes (docs/pod-network.md).

In the spirit of flannel's backends, driven by the Node objects:

* ``vxlan`` -- a vxlan device (``minik.1``: VNI 1, UDP 8472, ``nolearning``, ``local`` the node's
  public IP on its interface) carrying the node's pod CIDR network address as a /32, MTU the
  interface's minus 50.  The node publishes its VTEP MAC, public IP and backend type as flannel's
  annotations on its own Node; for every other node with a pod CIDR and those annotations the
  kernel gets a route ``PODCIDR via VTEPIP dev minik.1 onlink`` (VTEPIP: the other node's pod CIDR
  network address), a permanent neighbour ``VTEPIP lladdr MAC`` and an FDB entry ``MAC dst
  PUBLICIP``.  What no node accounts for any more is removed.
* ``host-gw`` -- one route per other node: its pod CIDR via its public IP (annotation, else its
  InternalIP) on the node's interface; the nodes must share an L2 segment.
* ``none`` -- nothing: one node, or the routes are someone else's business.

The decision is a pure function of the Node objects (:func:`plan_vxlan`, :func:`vxlan_entries`,
:func:`diff_entries`, :func:`plan_routes`, :func:`route_changes`); the kernel I/O is ``ip`` and
``bridge`` commands, optionally inside a network namespace (``ip netns exec``).
``python -m kubelet.overlay`` runs the reconciler on its own or removes the device (``--cleanup``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import json
import logging
import subprocess
from dataclasses import dataclass, field
from typing import Any

from apimachinery.client import Client
from apimachinery.informer import Informer
from apimachinery.resources import kind_info

log = logging.getLogger("kubelet.overlay")

Obj = dict[str, Any]
NODES = kind_info("v1", "Node")

BACKENDS = ("vxlan", "host-gw", "none")
BACKEND_TYPE = "flannel.alpha.coreos.com/backend-type"
BACKEND_DATA = "flannel.alpha.coreos.com/backend-data"
PUBLIC_IP = "flannel.alpha.coreos.com/public-ip"
DEFAULT_DEVICE = "minik.1"
DEFAULT_VNI = 1
DEFAULT_PORT = 8472  # the Linux kernel's (and flannel's) VXLAN port, not IANA's 4789
VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
RESYNC = 30.0  # seconds between checks of the kernel's entries (someone may have removed one)


# -- desired state: pure functions of the Node objects ----------------------------------------------


def internal_ip(node: Obj) -> str:
    for addr in (node.get("status") or {}).get("addresses") or []:
        if addr.get("type") == "InternalIP" and addr.get("address"):
            return str(addr["address"])
    return ""


def _name(node: Obj) -> str:
    return str((node.get("metadata") or {}).get("name") or "")


def _ipv4_net(cidr: Any, cluster: ipaddress.IPv4Network | None) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return None
    if not isinstance(net, ipaddress.IPv4Network):
        return None
    if cluster is not None and not net.subnet_of(cluster):
        return None
    return net


def _cluster(cluster_cidr: str | None) -> ipaddress.IPv4Network | None:
    if not cluster_cidr:
        return None
    net = ipaddress.ip_network(cluster_cidr, strict=False)
    if not isinstance(net, ipaddress.IPv4Network):
        raise ValueError(f"cluster CIDR {cluster_cidr}: only IPv4 is supported")
    return net


def _mac(value: Any) -> str:
    """``value`` as a lower-case unicast MAC ``aa:bb:cc:dd:ee:ff``, or '' if it is not one."""
    if not isinstance(value, str):
        return ""
    parts = value.strip().lower().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        return ""
    if int(parts[0], 16) & 1 or parts == ["00"] * 6:  # multicast or all-zero
        return ""
    return ":".join(parts)


def _ipv4(value: Any) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value).strip()))
    except ValueError:
        return ""


@dataclass(frozen=True)
class Peer:
    """Another node as the vxlan backend sees it."""

    node: str
    pod_cidr: str
    vtep_ip: str  # the pod CIDR's network address, the address of the peer's vxlan device
    mac: str
    public_ip: str


def peer_of(node: Obj, vni: int = DEFAULT_VNI, cluster: ipaddress.IPv4Network | None = None) -> Peer | str:
    """The node as a vxlan peer, or why it is skipped (a sentence for the log)."""
    name = _name(node)
    cidr = (node.get("spec") or {}).get("podCIDR")
    if not cidr:
        return f"node {name}: no spec.podCIDR yet"
    net = _ipv4_net(cidr, cluster)
    if net is None:
        return f"node {name}: podCIDR {cidr!r} is not an IPv4 network inside the cluster CIDR"
    ann = (node.get("metadata") or {}).get("annotations") or {}
    if not isinstance(ann, dict) or ann.get(BACKEND_TYPE) != "vxlan":
        kind = ann.get(BACKEND_TYPE) if isinstance(ann, dict) else None
        return f"node {name}: backend-type annotation is {kind!r}, not 'vxlan'"
    try:
        data = json.loads(str(ann.get(BACKEND_DATA) or ""))
    except ValueError:
        return f"node {name}: backend-data annotation is not JSON"
    if not isinstance(data, dict):
        return f"node {name}: backend-data annotation is not a JSON object"
    if data.get("VNI", vni) != vni:
        return f"node {name}: VNI {data.get('VNI')!r} is not this node's {vni}"
    mac = _mac(data.get("VtepMAC"))
    if not mac:
        return f"node {name}: backend-data VtepMAC {data.get('VtepMAC')!r} is not a unicast MAC address"
    public = _ipv4(ann.get(PUBLIC_IP))
    if not public:
        return f"node {name}: public-ip annotation {ann.get(PUBLIC_IP)!r} is not an IPv4 address"
    return Peer(name, str(net), str(net.network_address), mac, public)


def plan_vxlan(
    nodes: list[Obj], me: str, vni: int = DEFAULT_VNI, cluster_cidr: str | None = None
) -> tuple[list[Peer], list[str]]:
    """(the other nodes as peers, sorted by pod CIDR; why each other node was skipped).  Two nodes
    claiming one pod CIDR or VTEP MAC: the first by name wins, the other is skipped.  Two nodes with
    one public IP are both kept: their FDB entries differ by MAC, and the host there answers only
    for the MAC of its own device, so a stale Node of a reinstalled host cannot take the live
    node's place whatever their names."""
    cluster = _cluster(cluster_cidr)
    peers: list[Peer] = []
    skipped: list[str] = []
    seen_cidr: dict[str, str] = {}
    seen_mac: dict[str, str] = {}
    for node in sorted(nodes, key=_name):
        if not isinstance(node, dict) or _name(node) == me:
            continue
        p = peer_of(node, vni, cluster)
        if isinstance(p, str):
            skipped.append(p)
            continue
        clash = seen_cidr.get(p.pod_cidr) or seen_mac.get(p.mac)
        if clash:
            skipped.append(f"node {p.node}: pod CIDR or VTEP MAC already used by node {clash}")
            continue
        seen_cidr[p.pod_cidr] = seen_mac[p.mac] = p.node
        peers.append(p)
    return sorted(peers, key=lambda p: ipaddress.ip_network(p.pod_cidr)), skipped


@dataclass
class Entries:
    """Kernel entries on the vxlan device: routes ``{dst: gateway}``, permanent neighbours
    ``{ip: mac}`` and FDB entries ``{(mac, dst)}``."""

    routes: dict[str, str] = field(default_factory=dict)
    neigh: dict[str, str] = field(default_factory=dict)
    fdb: set[tuple[str, str]] = field(default_factory=set)


def vxlan_entries(peers: list[Peer]) -> Entries:
    return Entries(
        routes={p.pod_cidr: p.vtep_ip for p in peers},
        neigh={p.vtep_ip: p.mac for p in peers},
        fdb={(p.mac, p.public_ip) for p in peers},
    )


@dataclass
class Changes:
    """What to do to the kernel: additions (replace semantics) and deletions."""

    routes_add: dict[str, str] = field(default_factory=dict)
    routes_del: list[str] = field(default_factory=list)
    neigh_add: dict[str, str] = field(default_factory=dict)
    neigh_del: list[str] = field(default_factory=list)
    fdb_add: list[tuple[str, str]] = field(default_factory=list)
    fdb_del: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(
            (self.routes_add, self.routes_del, self.neigh_add, self.neigh_del, self.fdb_add, self.fdb_del)
        )


def diff_entries(want: Entries, have: Entries) -> Changes:
    """The changes turning ``have`` (what is on the device: all of it is the backend's) into ``want``."""
    return Changes(
        routes_add={d: gw for d, gw in sorted(want.routes.items()) if have.routes.get(d) != gw},
        routes_del=sorted(d for d in have.routes if d not in want.routes),
        neigh_add={ip: mac for ip, mac in sorted(want.neigh.items()) if have.neigh.get(ip) != mac},
        neigh_del=sorted(ip for ip in have.neigh if ip not in want.neigh),
        fdb_add=sorted(want.fdb - have.fdb),
        fdb_del=sorted(have.fdb - want.fdb),
    )


def plan_routes(nodes: list[Obj], me: str, cluster_cidr: str) -> dict[str, str]:
    """host-gw: ``{pod CIDR: gateway}`` for every other node with a pod CIDR (inside ``cluster_cidr``)
    and an address (its public-ip annotation, else its InternalIP)."""
    cluster = _cluster(cluster_cidr)
    out: dict[str, str] = {}
    for node in nodes:
        if not isinstance(node, dict):
            continue
        name = _name(node)
        cidr = (node.get("spec") or {}).get("podCIDR")
        ann = (node.get("metadata") or {}).get("annotations") or {}
        via = (_ipv4(ann.get(PUBLIC_IP)) if isinstance(ann, dict) else "") or _ipv4(internal_ip(node))
        if name == me or not cidr or not via:
            continue
        net = _ipv4_net(cidr, cluster)
        if net is not None:
            out[str(net)] = via
    return out


def route_changes(
    want: dict[str, str], have: dict[str, str], cluster_cidr: str
) -> tuple[dict[str, str], list[str]]:
    """host-gw: (routes to add or change, routes to delete); ``have`` holds the device's gateway
    routes, of which only those inside the cluster CIDR are the backend's."""
    cluster = _cluster(cluster_cidr)
    add = {cidr: via for cidr, via in want.items() if have.get(cidr) != via}
    stale = [c for c in have if c not in want and _ipv4_net(c, cluster) is not None]
    return add, sorted(stale)


def relevant(node: Obj) -> tuple[Any, ...]:
    """What of a Node the backends read: a change of anything else (its conditions, heartbeats)
    needs no sync."""
    ann = (node.get("metadata") or {}).get("annotations") or {}
    if not isinstance(ann, dict):
        ann = {}
    return (
        (node.get("spec") or {}).get("podCIDR"),
        internal_ip(node),
        *(ann.get(k) for k in (BACKEND_TYPE, BACKEND_DATA, PUBLIC_IP)),
    )


def vtep_mac(node_name: str, vni: int = DEFAULT_VNI) -> str:
    """The vxlan device's MAC: derived from the node's name and the VNI (locally administered,
    unicast), so that a recreated device keeps the address the other nodes already know."""
    b = bytearray(hashlib.sha256(f"{node_name}/{vni}".encode()).digest()[:6])
    b[0] = (b[0] & 0xFC) | 0x02
    return ":".join(f"{x:02x}" for x in b)


def node_annotations(backend: str, public_ip: str, mac: str = "", vni: int = DEFAULT_VNI) -> dict[str, str]:
    """flannel's annotations of a node for its backend."""
    data = json.dumps({"VNI": vni, "VtepMAC": mac}) if backend == "vxlan" else "null"
    return {BACKEND_TYPE: backend, BACKEND_DATA: data, PUBLIC_IP: public_ip}


# -- the kernel ------------------------------------------------------------------------------------


class KernelError(Exception):
    pass


class Kernel:
    """``ip`` and ``bridge`` commands, in the network namespace ``netns`` when one is given."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["ip", "netns", "exec", self.netns, *cmd] if self.netns else list(cmd)
        r = subprocess.run(argv, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise KernelError(f"{' '.join(cmd)}: {r.stderr.strip()}")
        return r

    def json(self, *cmd: str) -> list[Obj]:
        r = self.run(*cmd, check=False)
        try:
            out = json.loads(r.stdout or "[]")
        except ValueError:
            return []
        return [o for o in out if isinstance(o, dict)] if isinstance(out, list) else []

    def link(self, dev: str) -> Obj | None:
        links = self.json("ip", "-j", "-d", "link", "show", "dev", dev)
        return links[0] if links else None

    def interface_of(self, ip: str) -> tuple[str, int]:
        """(the interface carrying the IPv4 address ``ip``, its MTU)."""
        for link in self.json("ip", "-j", "-4", "addr", "show"):
            for a in link.get("addr_info") or []:
                if a.get("local") == ip:
                    return str(link["ifname"]), int(link.get("mtu") or 1500)
        raise KernelError(f"no interface has the address {ip}")

    def first_ipv4(self, dev: str) -> str:
        for link in self.json("ip", "-j", "-4", "addr", "show", "dev", dev):
            for a in link.get("addr_info") or []:
                if a.get("local") and a.get("scope") == "global":
                    return str(a["local"])
        raise KernelError(f"interface {dev} has no global IPv4 address")

    def gateway_routes(self, dev: str) -> dict[str, str]:
        return {
            str(ipaddress.ip_network(r["dst"], strict=False)): str(r["gateway"])
            for r in self.json("ip", "-j", "-4", "route", "show", "dev", dev)
            if r.get("gateway") and r.get("dst") not in (None, "default")
        }

    def entries(self, dev: str) -> Entries:
        neigh = {
            str(n["dst"]): str(n["lladdr"]).lower()
            for n in self.json("ip", "-j", "-4", "neigh", "show", "dev", dev)
            if n.get("lladdr") and "PERMANENT" in (n.get("state") or [])
        }
        fdb = {
            (str(f["mac"]).lower(), str(f["dst"]))
            for f in self.json("bridge", "-j", "fdb", "show", "dev", dev)
            if f.get("dst") and f.get("mac")
        }
        return Entries(self.gateway_routes(dev), neigh, fdb)


def apply_changes(k: Kernel, dev: str, ch: Changes) -> list[str]:
    """Apply ``ch`` on ``dev`` (flannel's order: FDB and neighbour before the route, the route
    first when removing); failures are logged and left for the next resync.  What failed."""
    steps: list[tuple[str, list[str]]] = []
    for d in ch.routes_del:
        steps.append((f"route {d} removed", ["ip", "route", "del", d, "dev", dev]))
    for ip in ch.neigh_del:
        steps.append((f"neighbour {ip} removed", ["ip", "neigh", "del", ip, "dev", dev]))
    for mac, dst in ch.fdb_del:
        steps.append((f"fdb {mac} dst {dst} removed", ["bridge", "fdb", "del", mac, "dev", dev, "dst", dst]))
    for mac, dst in ch.fdb_add:
        steps.append((f"fdb {mac} dst {dst}", ["bridge", "fdb", "append", mac, "dev", dev, "dst", dst]))
    for ip, mac in ch.neigh_add.items():
        steps.append(
            (
                f"neighbour {ip} {mac}",
                ["ip", "neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent"],
            )
        )
    for d, gw in ch.routes_add.items():
        steps.append((f"route {d} via {gw}", ["ip", "route", "replace", d, "via", gw, "dev", dev, "onlink"]))
    failed = []
    for what, cmd in steps:
        r = k.run(*cmd, check=False)
        if r.returncode == 0:
            log.info("overlay %s: %s", dev, what)
        else:
            failed.append(what)
            log.warning("overlay %s: %s failed: %s", dev, what, r.stderr.strip())
    return failed


# -- the backends ----------------------------------------------------------------------------------


class Overlay:
    """One node's backend: :meth:`setup` once the pod CIDR is known, :meth:`sync` with the Node
    objects whenever they change (and on a timer), :meth:`cleanup` on the way out."""

    def __init__(
        self,
        backend: str,
        node_name: str,
        public_ip: str = "",
        interface: str = "",
        device: str = DEFAULT_DEVICE,
        vni: int = DEFAULT_VNI,
        port: int = DEFAULT_PORT,
        cluster_cidr: str = DEFAULT_CLUSTER_CIDR,
        netns: str | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"pod network backend {backend!r}: one of {', '.join(BACKENDS)}")
        if len(device) > 15:
            raise ValueError(f"device name {device!r} is longer than 15 characters")
        _cluster(cluster_cidr)
        self.backend = backend
        self.node_name = node_name
        self.device = device
        self.vni = vni
        self.port = port
        self.cluster_cidr = cluster_cidr
        self.kernel = Kernel(netns)
        self.public_ip = public_ip
        self.interface = interface
        self.mtu = 0  # the interface's
        self.mac = ""
        self.pod_cidr = ""
        self.annotations: dict[str, str] = {}  # what the last setup asks to publish on the Node
        self._skipped: set[str] = set()  # the skip reasons last logged as warnings

    def resolve(self) -> None:
        """Find the interface and public IP from each other (given: ``--node-ip``, ``--overlay-interface``)."""
        if self.backend == "none" or self.mtu:
            return
        if not self.public_ip and self.interface:
            self.public_ip = self.kernel.first_ipv4(self.interface)
        if not self.public_ip:
            raise KernelError("the node's public IP is unknown (--node-ip)")
        iface, mtu = self.kernel.interface_of(self.public_ip)
        if self.interface and self.interface != iface:
            link = self.kernel.link(self.interface)
            if link is None:
                raise KernelError(f"no interface {self.interface}")
            mtu = int(link.get("mtu") or 1500)
        else:
            self.interface = iface
        self.mtu = mtu

    def pod_mtu(self) -> int | None:
        """The MTU the pods' interfaces need (vxlan: the interface's minus the encapsulation)."""
        if self.backend != "vxlan":
            return None
        self.resolve()
        return self.mtu - VXLAN_OVERHEAD

    def _vxlan_ok(self, link: Obj) -> bool:
        info = (link.get("linkinfo") or {}).get("info_data") or {}
        return (
            (link.get("linkinfo") or {}).get("info_kind") == "vxlan"
            and info.get("id") == self.vni
            and info.get("local") == self.public_ip
            and info.get("port") == self.port
            and info.get("learning") is False
            and link.get("link") in (None, self.interface)
        )

    def setup(self, pod_cidr: str) -> dict[str, str]:
        """Prepare the kernel for ``pod_cidr`` (vxlan: the device, its address and MTU): the
        annotations to publish on the node's Node (none for the ``none`` backend)."""
        self.pod_cidr = pod_cidr
        if self.backend == "none":
            return {}
        if _ipv4_net(pod_cidr, _cluster(self.cluster_cidr)) is None:
            log.warning(
                "overlay: this node's pod CIDR %s is not inside the cluster CIDR %s: the other nodes"
                " skip it and their routes are not made here (is --cluster-cidr the cluster's?)",
                pod_cidr, self.cluster_cidr,
            )  # fmt: skip
        self.resolve()
        if self.backend == "host-gw":
            self.annotations = node_annotations("host-gw", self.public_ip)
            return self.annotations
        net = _ipv4_net(pod_cidr, None)
        if net is None:
            raise KernelError(f"pod CIDR {pod_cidr!r}: the vxlan backend needs an IPv4 network")
        k, dev = self.kernel, self.device
        link = k.link(dev)
        if link is not None and not self._vxlan_ok(link):
            log.info("overlay: recreating %s (its parameters changed)", dev)
            k.run("ip", "link", "del", dev)
            link = None
        mac = vtep_mac(self.node_name, self.vni)
        if link is None:
            k.run(
                "ip", "link", "add", dev, "address", mac, "type", "vxlan", "id", str(self.vni),
                "local", self.public_ip, "dev", self.interface, "dstport", str(self.port), "nolearning",
            )  # fmt: skip
        elif str(link.get("address") or "").lower() != mac:
            k.run("ip", "link", "set", dev, "address", mac)  # a device made before the MAC was derived
        k.run("ip", "link", "set", dev, "mtu", str(self.mtu - VXLAN_OVERHEAD))
        want = f"{net.network_address}/32"
        for link_addrs in k.json("ip", "-j", "-4", "addr", "show", "dev", dev):
            for a in link_addrs.get("addr_info") or []:
                if f"{a.get('local')}/{a.get('prefixlen')}" != want:
                    k.run(
                        "ip", "addr", "del", f"{a.get('local')}/{a.get('prefixlen')}", "dev", dev, check=False
                    )
        k.run("ip", "addr", "replace", want, "dev", dev)
        k.run("ip", "link", "set", dev, "up")
        self.mac = str((k.link(dev) or {}).get("address") or "").lower()
        log.info(
            "overlay: %s VNI %d local %s dev %s, %s, MTU %d, VTEP MAC %s",
            dev, self.vni, self.public_ip, self.interface, want, self.mtu - VXLAN_OVERHEAD, self.mac,
        )  # fmt: skip
        self.annotations = node_annotations("vxlan", self.public_ip, self.mac, self.vni)
        return self.annotations

    def sync(self, nodes: list[Obj]) -> Changes:
        """Bring the kernel's entries in line with ``nodes``: the changes made."""
        if self.backend == "none":
            return Changes()
        if self.backend == "host-gw":
            add, stale = route_changes(
                plan_routes(nodes, self.node_name, self.cluster_cidr),
                self.kernel.gateway_routes(self.interface),
                self.cluster_cidr,
            )
            ch = Changes(routes_add=add, routes_del=stale)
            for d, gw in add.items():
                r = self.kernel.run(
                    "ip", "route", "replace", d, "via", gw, "dev", self.interface, check=False
                )
                if r.returncode == 0:
                    log.info("host-gw: route %s via %s dev %s", d, gw, self.interface)
                else:
                    log.warning("host-gw: cannot add route %s via %s: %s", d, gw, r.stderr.strip())
            for d in stale:
                self.kernel.run("ip", "route", "del", d, "dev", self.interface, check=False)
                log.info("host-gw: removed route %s (no node has it any more)", d)
            return ch
        if self.kernel.link(self.device) is None and self.pod_cidr:
            self.setup(self.pod_cidr)  # someone deleted the device
        peers, skipped = plan_vxlan(nodes, self.node_name, self.vni, self.cluster_cidr)
        for why in skipped:  # a warning when a reason first shows, not on every resync
            (log.warning if why not in self._skipped else log.debug)("overlay: skipping %s", why)
        self._skipped = set(skipped)
        ch = diff_entries(vxlan_entries(peers), self.kernel.entries(self.device))
        if ch:
            apply_changes(self.kernel, self.device, ch)
        return ch

    def cleanup(self) -> bool:
        """Remove what the backend made (vxlan: the device, with its routes, neighbours and FDB;
        host-gw: the cluster CIDR's gateway routes on the interface, found from the public IP when
        not given).  True if something went."""
        if self.backend == "vxlan":
            return cleanup_device(self.device, self.kernel)
        if self.backend == "host-gw" and not self.interface and self.public_ip:
            try:
                self.interface = self.kernel.interface_of(self.public_ip)[0]
            except KernelError:
                return False
        if self.backend == "host-gw" and self.interface:
            stale = route_changes({}, self.kernel.gateway_routes(self.interface), self.cluster_cidr)[1]
            for d in stale:
                self.kernel.run("ip", "route", "del", d, "dev", self.interface, check=False)
            return bool(stale)
        return False


def cleanup_device(device: str = DEFAULT_DEVICE, kernel: Kernel | None = None) -> bool:
    """Delete the vxlan device if it exists (its routes, neighbours and FDB entries go with it)."""
    k = kernel or Kernel()
    link = k.link(device)
    if link is None or (link.get("linkinfo") or {}).get("info_kind") != "vxlan":
        return False
    k.run("ip", "link", "del", device, check=False)
    return True


async def run(client: Client, overlay: Overlay, pod_cidr: str, stop: asyncio.Event | None = None) -> None:
    """Set up the backend for ``pod_cidr``, publish its annotations on the node's Node, then keep
    the kernel in line with the Node objects (an informer) and recheck every :data:`RESYNC` s.
    Errors are logged and retried; a bad Node is skipped, never fatal."""
    if overlay.backend == "none":
        return
    published: dict[str, str] = {}
    while True:
        try:
            ann = await asyncio.to_thread(overlay.setup, pod_cidr)
            await client.patch(NODES, overlay.node_name, {"metadata": {"annotations": ann}})
            published = ann
            break
        except Exception as exc:  # noqa: BLE001 - the API server or the kernel may come back
            log.warning("overlay %s: setup failed (%s); retrying", overlay.backend, exc)
            if stop is not None and stop.is_set():
                return
            await asyncio.sleep(2)
    nodes = Informer(client, NODES)
    changed = asyncio.Event()

    def on_update(old: Obj, new: Obj) -> None:
        if relevant(old) != relevant(new):  # not each status heartbeat
            changed.set()

    nodes.add_event_handler(
        on_add=lambda obj: changed.set(),
        on_update=on_update,
        on_delete=lambda obj: changed.set(),
    )
    informer = asyncio.create_task(nodes.run(), name="overlay-nodes")
    try:
        await nodes.wait_for_sync()
        while stop is None or not stop.is_set():
            changed.clear()
            try:
                await asyncio.to_thread(overlay.sync, nodes.store.list())
                if overlay.annotations != published:  # the device was recreated: publish it again
                    ann = dict(overlay.annotations)
                    await client.patch(NODES, overlay.node_name, {"metadata": {"annotations": ann}})
                    published = ann
            except Exception as exc:  # noqa: BLE001 - a kernel hiccup must not end the loop
                log.warning("overlay %s: sync failed: %s", overlay.backend, exc)
            try:
                await asyncio.wait_for(changed.wait(), RESYNC)
            except TimeoutError:
                pass
    finally:
        nodes.stop()
        informer.cancel()
        await asyncio.gather(informer, return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m kubelet.overlay --cleanup``: remove the backend's device or routes."""
    p = argparse.ArgumentParser(prog="python -m kubelet.overlay", description=__doc__.split("\n\n")[0])
    p.add_argument("--cleanup", action="store_true", required=True, help="remove the overlay from this host")
    p.add_argument("--pod-network-backend", choices=BACKENDS, default="vxlan")
    p.add_argument("--overlay-device", default=DEFAULT_DEVICE)
    p.add_argument("--overlay-interface", default="")
    p.add_argument("--cluster-cidr", default=DEFAULT_CLUSTER_CIDR)
    p.add_argument("--netns", default=None)
    args = p.parse_args(argv)
    o = Overlay(
        args.pod_network_backend,
        "",
        interface=args.overlay_interface,
        device=args.overlay_device,
        cluster_cidr=args.cluster_cidr,
        netns=args.netns,
    )
    print("removed" if o.cleanup() else "nothing to remove")


if __name__ == "__main__":
    main()
