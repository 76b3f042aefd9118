"""Service ClusterIP and NodePort allocation, as Kubernetes' service REST storage does it.

Two allocation records live in etcd, each a small JSON document written only by compare-and-swap
on its ``mod_revision`` (so two API server requests, or two API servers, can never hand out the
same address or port):

* ``/registry/ranges/serviceips``: the ClusterIPs taken from ``--service-cluster-ip-range``;
* ``/registry/ranges/servicenodeports``: the NodePorts taken from ``--service-node-port-range``.

The registry calls :class:`ServiceAllocations` on a Service's create (allocate, or honour the
requested value; 422 when it is taken or out of range), update (keep ``clusterIP`` and omitted
``nodePort`` values; allocate what is new; release what is no longer used) and delete (release).
:meth:`ServiceAllocations.repair` rebuilds both records from the stored Services when the API
server starts, so a crash between an allocation and the write of its Service leaks nothing.

The pure parts (parsing ranges, choosing a free value, the messages) are functions here, unit
tested without etcd.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from apimachinery import errors
from apiserver import validation

log = logging.getLogger(__name__)

IPS_KEY = "/registry/ranges/serviceips"
NODE_PORTS_KEY = "/registry/ranges/servicenodeports"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_NODE_PORT_RANGE = "30000-32767"

Obj = dict[str, Any]
T = TypeVar("T", str, int)


# --- pure helpers --------------------------------------------------------------------------------


class ServiceIPRange:
    """An IPv4 service CIDR: the network and broadcast addresses are never handed out, and the
    first address is kept for the ``kubernetes`` Service (given only when asked for)."""

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.IPv4Network(cidr, strict=False)
        if self.network.num_addresses < 8:
            raise ValueError(f"service CIDR {cidr} is too small")
        self.cidr = str(self.network)
        self.first = int(self.network.network_address) + 1
        self.last = int(self.network.broadcast_address) - 1

    def contains(self, ip: str) -> bool:
        try:
            value = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return False
        return self.first <= value <= self.last

    def kubernetes_service_ip(self) -> str:
        return str(ipaddress.IPv4Address(self.first))

    def dns_service_ip(self) -> str:
        """The tenth address: the conventional cluster DNS address (10.96.0.10 by default)."""
        return str(ipaddress.IPv4Address(self.first + 9))

    def pick(self, used: set[str], rand: Callable[[int, int], int] = random.randint) -> str | None:
        """A free address, chosen at random; the first address is never chosen.

        As Kubernetes does, dynamic allocation prefers the upper part of the range so that the
        lower part stays free for addresses users ask for (like the DNS address)."""
        low, high = self.first + 1, self.last
        size = high - low + 1
        band = min(max(16, size // 16), 256)
        dynamic_low = low + band if size > 2 * band else low
        for lo in (dynamic_low, low):
            for _ in range(64):
                candidate = str(ipaddress.IPv4Address(rand(lo, high)))
                if candidate not in used:
                    return candidate
            for value in range(lo, high + 1):
                candidate = str(ipaddress.IPv4Address(value))
                if candidate not in used:
                    return candidate
        return None


class PortRange:
    def __init__(self, spec: str) -> None:
        try:
            base, _, end = spec.partition("-")
            self.base = int(base)
            self.end = int(end) if end else self.base
        except ValueError:
            raise ValueError(f"invalid port range {spec!r} (want e.g. 30000-32767)") from None
        if not 0 < self.base <= self.end <= 65535:
            raise ValueError(f"invalid port range {spec!r}")
        self.spec = f"{self.base}-{self.end}"

    def contains(self, port: int) -> bool:
        return self.base <= port <= self.end

    def pick(self, used: set[int], rand: Callable[[int, int], int] = random.randint) -> int | None:
        for _ in range(64):
            candidate = rand(self.base, self.end)
            if candidate not in used:
                return candidate
        for candidate in range(self.base, self.end + 1):
            if candidate not in used:
                return candidate
        return None


def needs_cluster_ip(spec: Obj) -> bool:
    return spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None"


def needs_node_ports(spec: Obj) -> bool:
    stype = spec.get("type")
    if stype == "NodePort":
        return True
    return stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False


def service_ips(svc: Obj) -> list[str]:
    spec = svc.get("spec") or {}
    ips = [ip for ip in (spec.get("clusterIPs") or []) if ip and ip != "None"]
    ip = spec.get("clusterIP")
    if ip and ip != "None" and ip not in ips:
        ips.insert(0, ip)
    return ips


def service_node_ports(svc: Obj) -> list[int]:
    spec = svc.get("spec") or {}
    ports = spec.get("ports") or []
    out = [int(p["nodePort"]) for p in ports if isinstance(p, dict) and p.get("nodePort")]
    if spec.get("healthCheckNodePort"):
        out.append(int(spec["healthCheckNodePort"]))
    return out


def ip_error(name: str, ips: list[str], ip: str, reason: str) -> errors.Invalid:
    """The 422 of Kubernetes' ``allocClusterIPs``: ``failed to allocate IP X: <reason>``."""
    return errors.invalid(
        "Service",
        name,
        [validation.invalid("spec.clusterIPs", ips, f"failed to allocate IP {ip}: {reason}")],
    )


def port_error(name: str, index: int, port: int, reason: str) -> errors.Invalid:
    return errors.invalid(
        "Service", name, [validation.invalid(f"spec.ports[{index}].nodePort", port, reason)]
    )


def _claim(
    requested: T, used: set[T], pick: Callable[[set[T]], T | None], taken: Exception, what: str, where: str
) -> T:
    """``requested`` unless it is empty (``taken`` is raised when it is in ``used``), else a free
    value from ``pick`` (500 when the range ``where`` is full)."""
    if requested:
        if requested in used:
            raise taken
        return requested
    picked = pick(used)
    if picked is None:
        raise errors.InternalError(f"failed to allocate {what}: range is full ({where})")
    return picked


IP_ALLOCATED = "provided IP is already allocated"
PORT_ALLOCATED = "provided port is already allocated"


def ip_not_in_range(ip: str, cidr: str) -> str:
    return f"the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}"


def port_not_in_range(spec: str) -> str:
    return f"provided port is not in the valid range. The range of valid ports is {spec}"


def carry_allocated_values(new: Obj, old: Obj) -> None:
    """On update, keep what was allocated when the client omits it (Kubernetes'
    ``patchAllocatedValues``): the ClusterIP(s), and each port's nodePort (matched by port and
    protocol) while the type still has node ports."""
    spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
    if needs_cluster_ip(spec) and needs_cluster_ip(old_spec):
        if not spec.get("clusterIP") and not spec.get("clusterIPs"):
            if old_spec.get("clusterIP"):
                spec["clusterIP"] = old_spec["clusterIP"]
            if old_spec.get("clusterIPs"):
                spec["clusterIPs"] = list(old_spec["clusterIPs"])
    if needs_node_ports(spec):
        old_ports = {
            (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
            for p in old_spec.get("ports") or []
            if isinstance(p, dict) and p.get("nodePort")
        }
        for p in spec.get("ports") or []:
            if isinstance(p, dict) and not p.get("nodePort"):
                carried = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
                if carried:
                    p["nodePort"] = carried


# --- etcd-backed records -------------------------------------------------------------------------


@dataclass
class Allocation:
    """What one create/update took, so it can be undone (the write failed) or completed
    (release what the old object held and the new one no longer does)."""

    owner: ServiceAllocations
    ips: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    release_ips: list[str] = field(default_factory=list)
    release_ports: list[int] = field(default_factory=list)
    dry_run: bool = False

    async def rollback(self) -> None:
        if not self.dry_run:
            await self.owner.release(self.ips, self.ports)
        self.ips, self.ports = [], []

    async def commit(self) -> None:
        if not self.dry_run:
            await self.owner.release(self.release_ips, self.release_ports)


class ServiceAllocations:
    def __init__(
        self,
        etcd: Any,  # apiserver.etcd.Etcd (get/create/update/range)
        cluster_ip_range: str = DEFAULT_SERVICE_CIDR,
        node_port_range: str = DEFAULT_NODE_PORT_RANGE,
    ) -> None:
        self.etcd = etcd
        self.ip_range = ServiceIPRange(cluster_ip_range)
        self.port_range = PortRange(node_port_range)

    # -- records ----------------------------------------------------------------------------------
    async def _read(self, key: str) -> tuple[Any, set[Any]]:
        kv, _ = await self.etcd.get(key)
        if kv is None:
            return None, set()
        data = orjson.loads(kv.value)
        return kv, set(data.get("allocated") or [])

    async def _reserve(
        self, key: str, rng: str, change: Callable[[set[Any]], set[Any]], dry_run: bool
    ) -> None:
        """:meth:`_modify`; on a dry run only the checks ``change`` makes on the stored record."""
        if dry_run:
            _, used = await self._read(key)
            change(used)
        else:
            await self._modify(key, rng, change)

    async def _modify(self, key: str, rng: str, change: Callable[[set[Any]], set[Any]]) -> None:
        """Read-modify-compare-and-swap a record; ``change`` may raise (nothing is written)."""
        for _attempt in range(200):
            kv, current = await self._read(key)
            new = change(set(current))
            if new == current:
                return
            value = orjson.dumps(
                {"kind": "RangeAllocation", "apiVersion": "v1", "range": rng, "allocated": sorted(new)}
            )
            if kv is None:
                if await self.etcd.create(key, value) is not None:
                    return
            else:
                rev, _ = await self.etcd.update(key, value, kv.mod_revision)
                if rev is not None:
                    return
        raise errors.ServiceUnavailable("too much contention on the service allocation record", retry_after=1)

    async def allocated(self) -> tuple[set[str], set[int]]:
        _, ips = await self._read(IPS_KEY)
        _, ports = await self._read(NODE_PORTS_KEY)
        return ips, ports

    async def release(self, ips: list[str], ports: list[int]) -> None:
        if ips:
            await self._modify(IPS_KEY, self.ip_range.cidr, lambda s: s - set(ips))
        if ports:
            await self._modify(NODE_PORTS_KEY, self.port_range.spec, lambda s: s - set(ports))

    async def release_service(self, svc: Obj) -> None:
        """A Service was deleted: free its ClusterIP and NodePorts."""
        await self.release(service_ips(svc), service_node_ports(svc))

    # -- create / update / delete -----------------------------------------------------------------
    async def allocate(self, svc: Obj, old: Obj | None = None, dry_run: bool = False) -> Allocation:
        """Fill in ``svc``'s ClusterIP and NodePorts (honouring requested values) and record them.

        ``old`` is the stored object on an update: what it already holds stays allocated to it, and
        what it held that ``svc`` no longer uses is released by :meth:`Allocation.commit`."""
        name = (svc.get("metadata") or {}).get("name") or ""
        spec = svc.setdefault("spec", {})
        if old is not None:
            carry_allocated_values(svc, old)
        alloc = Allocation(self, dry_run=dry_run)
        old_ips = set(service_ips(old)) if old is not None else set()
        old_ports = set(service_node_ports(old)) if old is not None else set()
        try:
            await self._allocate_ip(name, spec, old_ips, alloc)
            await self._allocate_ports(name, spec, old_ports, alloc)
        except BaseException:
            await alloc.rollback()
            raise
        alloc.release_ips = sorted(old_ips - set(service_ips(svc)))
        alloc.release_ports = sorted(old_ports - set(service_node_ports(svc)))
        return alloc

    async def _allocate_ip(self, name: str, spec: Obj, old_ips: set[str], alloc: Allocation) -> None:
        if spec.get("type") == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            return
        requested = spec.get("clusterIP") or ((spec.get("clusterIPs") or [None])[0]) or ""
        if requested == "None":
            spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
            return
        if requested and requested in old_ips:
            spec["clusterIP"], spec["clusterIPs"] = requested, [requested]
            return
        if requested and not self.ip_range.contains(requested):
            raise ip_error(name, [requested], requested, ip_not_in_range(requested, self.ip_range.cidr))
        chosen: list[str] = []

        def take(used: set[str]) -> set[str]:
            taken = ip_error(name, [requested], requested, IP_ALLOCATED)
            chosen[:] = [
                _claim(requested, used, self.ip_range.pick, taken, "a serviceIP", self.ip_range.cidr)
            ]
            return used | set(chosen)

        await self._reserve(IPS_KEY, self.ip_range.cidr, take, alloc.dry_run)
        alloc.ips.append(chosen[0])
        spec["clusterIP"], spec["clusterIPs"] = chosen[0], [chosen[0]]

    async def _allocate_ports(self, name: str, spec: Obj, old_ports: set[int], alloc: Allocation) -> None:
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
        if not needs_node_ports(spec):
            if spec.get("type") == "ClusterIP" or spec.get("type") == "ExternalName":
                for p in ports:
                    p.pop("nodePort", None)
            return
        wanted: list[tuple[int, Obj]] = []
        seen: dict[int, int] = {}
        for i, p in enumerate(ports):
            requested = int(p.get("nodePort") or 0)
            if requested and requested in old_ports:
                continue
            if requested and not self.port_range.contains(requested):
                raise port_error(name, i, requested, port_not_in_range(self.port_range.spec))
            if requested and requested in seen:
                # the same nodePort for two protocols of one port number is allowed (TCP+UDP)
                continue
            if requested:
                seen[requested] = i
            wanted.append((i, p))
        if not wanted:
            return
        chosen: list[int] = []

        def take(used: set[int]) -> set[int]:
            chosen.clear()
            result = set(used)
            for i, p in wanted:
                requested = int(p.get("nodePort") or 0)
                taken = port_error(name, i, requested, PORT_ALLOCATED)
                port = _claim(
                    requested, result, self.port_range.pick, taken, "a nodePort", self.port_range.spec
                )
                chosen.append(port)
                result.add(port)
            return result

        await self._reserve(NODE_PORTS_KEY, self.port_range.spec, take, alloc.dry_run)
        alloc.ports.extend(chosen)
        for (_, p), port in zip(wanted, chosen, strict=True):
            p["nodePort"] = port

    # -- repair -----------------------------------------------------------------------------------
    async def repair(self, services_prefix: str) -> None:
        """Rebuild both records from the stored Services (Kubernetes' repair controllers, run once
        at start): values a crash left allocated without a Service are released; values Services
        hold that the record lost are taken again."""
        ips: set[str] = set()
        ports: set[int] = set()
        start: bytes | None = None
        while True:
            kvs, more, _ = await self.etcd.range(services_prefix, start=start, limit=500)
            for kv in kvs:
                svc = orjson.loads(kv.value)
                meta = svc.get("metadata") or {}
                where = f"{meta.get('namespace')}/{meta.get('name')}"
                for ip in service_ips(svc):
                    if not self.ip_range.contains(ip) and ip != self.ip_range.kubernetes_service_ip():
                        log.warning("service %s: cluster IP %s is outside %s", where, ip, self.ip_range.cidr)
                    elif ip in ips:
                        log.warning("service %s: cluster IP %s is allocated to another service", where, ip)
                    ips.add(ip)
                for port in service_node_ports(svc):
                    if port in ports:
                        log.warning("service %s: node port %d is allocated to another service", where, port)
                    ports.add(port)
            if not more or not kvs:
                break
            start = kvs[-1].key + b"\0"
        ips_before, ports_before = await self.allocated()
        await self._modify(IPS_KEY, self.ip_range.cidr, lambda _s: set(ips))
        await self._modify(NODE_PORTS_KEY, self.port_range.spec, lambda _s: set(ports))
        leaked_ips, leaked_ports = ips_before - ips, ports_before - ports
        if leaked_ips or leaked_ports:
            log.info(
                "repair released leaked cluster IPs %s and node ports %s",
                sorted(leaked_ips),
                sorted(leaked_ports),
            )
        log.info("service allocations: %d cluster IPs, %d node ports in use", len(ips), len(ports))
