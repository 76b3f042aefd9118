"""Node IPAM: a pod CIDR for every node from ``--cluster-cidr`` (kube-controller-manager's range
allocator, enabled by ``--allocate-node-cidrs``).

* The cluster CIDR (default ``10.244.0.0/16``) is cut into ``--node-cidr-mask-size`` subnets (/24).
* **Repair at start**: once the node cache has synced, every ``spec.podCIDR``/``podCIDRs`` already set
  is marked used, before any allocation — so a restarted (or newly elected) controller never hands
  out a range twice.
* ``reconcile(node)``: a node without ``spec.podCIDR`` gets the lowest free subnet, reserved in
  memory *before* the write (no two workers can pick the same one) and written with a merge patch
  of ``spec.podCIDR`` + ``spec.podCIDRs`` carrying the node's resourceVersion; a failed write gives
  the subnet back. A deleted node's subnet is released.  A node whose podCIDR is outside the cluster
  CIDR is left alone (its range is simply not ours).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.events import NORMAL, WARNING

from .base import NODES, Controller, ControllerContext
from .util import meta, name_of

log = logging.getLogger(__name__)

DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_MASK_SIZE = 24


class CIDRSet:
    """The subnets of a cluster CIDR and which are used (pure, no I/O)."""

    def __init__(self, cluster_cidr: str, mask_size: int) -> None:
        self.network = ipaddress.ip_network(cluster_cidr, strict=False)
        if mask_size < self.network.prefixlen:
            raise ValueError(f"node CIDR mask /{mask_size} is larger than the cluster CIDR {cluster_cidr}")
        self.mask_size = mask_size
        self.size = 2 ** (mask_size - self.network.prefixlen)
        self._step = 2 ** (self.network.max_prefixlen - mask_size)
        self.used: set[int] = set()

    def _index(self, cidr: str) -> int | None:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if net.version != self.network.version or net.prefixlen != self.mask_size:
            return None
        if not net.subnet_of(self.network):  # type: ignore[arg-type]
            return None
        return (int(net.network_address) - int(self.network.network_address)) // self._step

    def _cidr(self, index: int) -> str:
        base = int(self.network.network_address) + index * self._step
        return f"{ipaddress.ip_address(base)}/{self.mask_size}"

    def occupy(self, cidr: str) -> bool:
        index = self._index(cidr)
        if index is None:
            return False
        self.used.add(index)
        return True

    def release(self, cidr: str) -> None:
        index = self._index(cidr)
        if index is not None:
            self.used.discard(index)

    def allocate(self) -> str | None:
        for index in range(self.size):
            if index not in self.used:
                self.used.add(index)
                return self._cidr(index)
        return None


def node_cidrs(node: Obj) -> list[str]:
    spec = node.get("spec") or {}
    cidrs = list(spec.get("podCIDRs") or [])
    if not cidrs and spec.get("podCIDR"):
        cidrs = [spec["podCIDR"]]
    return [str(c) for c in cidrs]


class NodeIPAMController(Controller):
    name = "node-ipam-controller"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        extra = ctx.options.extra
        self.cidrs = CIDRSet(
            str(extra.get("cluster_cidr") or DEFAULT_CLUSTER_CIDR),
            int(extra.get("node_cidr_mask_size") or DEFAULT_MASK_SIZE),
        )
        self.node_informer = self.informer(NODES, on_change=self.enqueue, on_delete=self._deleted)
        self._owner: dict[str, str] = {}  # cidr -> node name, for releases

    def _deleted(self, node: Obj) -> None:
        for cidr in node_cidrs(node):
            if self._owner.get(cidr) == name_of(node):
                self.cidrs.release(cidr)
                self._owner.pop(cidr, None)
                log.info("node %s: released pod CIDR %s", name_of(node), cidr)

    def repair(self) -> None:
        """Mark every CIDR that nodes already have as used (done before any allocation)."""
        for node in self.node_informer.store.list():
            for cidr in node_cidrs(node):
                if self.cidrs.occupy(cidr):
                    self._owner[cidr] = name_of(node)
        log.info("node IPAM: %d pod CIDRs in use in %s", len(self._owner), self.cidrs.network)

    async def run(self, workers: int | None = None) -> None:
        for inf in self.informers:
            await inf.wait_for_sync()
        self.repair()
        await super().run(workers=1)

    async def reconcile(self, key: str) -> None:
        node = self.node_informer.store.get(key)
        if node is None:
            return
        existing = node_cidrs(node)
        if existing:
            for have in existing:
                if self.cidrs.occupy(have):
                    self._owner[have] = name_of(node)
            return
        cidr = self.cidrs.allocate()
        if cidr is None:
            self.recorder.event(
                node, WARNING, "CIDRNotAvailable", f"Node {key} status is now: CIDRNotAvailable"
            )
            log.warning("node %s: no pod CIDR left in %s", key, self.cidrs.network)
            return
        patch = {
            "metadata": {"resourceVersion": meta(node).get("resourceVersion")},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        }
        try:
            await self.client.patch(NODES, key, patch)
        except errors.NotFound:
            self.cidrs.release(cidr)
            return
        except Exception:
            self.cidrs.release(cidr)
            raise
        self._owner[cidr] = key
        log.info("node %s: allocated pod CIDR %s", key, cidr)
        self.recorder.event(node, NORMAL, "CIDRAssignmentSucceeded", f"Node {key} got pod CIDR {cidr}")
