"""NetworkPolicy enforcement inside minik-proxy: informers on NetworkPolicies, Pods and
Namespaces (every namespace) and on the ``kube-system/kube-dns`` Endpoints; any change marks the state dirty and one sync loop re-plans
(:mod:`proxy.netpol_model`) and, when the rules changed, writes all policy chains of the filter
table with one ``iptables-restore --noflush`` (atomic: a packet sees the old rules or the new
ones).  Every sync, and every :data:`RESYNC_SECONDS`, the jumps into ``PREFIX-NWPLCY`` are made
the first rules of FORWARD, Docker's DOCKER-USER (when it exists) and INPUT.

Why the proxy's process: it already runs once per host with root, netfilter I/O, a chain prefix
that isolates clusters sharing a host, and ``minik-proxy --cleanup`` (which removes every
``PREFIX-*`` chain, these included)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from apimachinery.bridgenf import ensure_bridge_netfilter
from apimachinery.client import Client
from apimachinery.informer import Informer
from apimachinery.resources import kind_info

from . import iptables as ipt
from . import netpol_model as model

log = logging.getLogger(__name__)

POLICIES = kind_info("networking.k8s.io/v1", "NetworkPolicy")
PODS = kind_info("v1", "Pod")
NAMESPACES = kind_info("v1", "Namespace")
ENDPOINTS = kind_info("v1", "Endpoints")

RESYNC_SECONDS = 10.0  # jump order re-checked (and the rules re-planned) this often
# ... and more often at first: the proxy's Service rules start at the same time and add their own
# jumps at the top of FORWARD and INPUT
EARLY_RESYNC_SECONDS, EARLY_PERIOD = 1.0, 30.0
FULL_SYNC_SECONDS = 60.0  # the chains are rewritten this often even unchanged (repairs outside edits)
DEBOUNCE_SECONDS = 0.02  # a burst of events (a Deployment's pods) is one sync
RETRY_SECONDS = 1.0
# Built-in (and Docker's) chains that jump to PREFIX-NWPLCY, first: FORWARD for routed and bridged
# pod traffic (before the CNI firewall plugin's CNI-FORWARD, which accepts pod traffic);
# DOCKER-USER, which Docker moves to the top of FORWARD when it creates a network (before the
# proxy's PREFIX-FORWARD accepts there); INPUT for pod -> host traffic.
JUMP_FROM = ("FORWARD", ipt.DOCKER_USER, "INPUT")

Obj = dict[str, Any]


def jump_spec(prefix: str) -> list[str]:
    chain = model.main_chain(prefix)
    # The comment names "minik service portals" as well: the proxy's own first-rule check in
    # DOCKER-USER lets such jumps stay in front of its PREFIX-FORWARD accept.
    return ["-m", "comment", "--comment", f"{model.JUMP_COMMENT} ({chain})", "-j", chain]


async def ensure_first(builtin: str, prefix: str) -> bool:
    """Make the jump to PREFIX-NWPLCY the first rule of ``builtin`` (or keep it behind only other
    clusters' policy jumps); True when it had to move."""
    chain = model.main_chain(prefix)
    spec = jump_spec(prefix)
    for attempt in range(3):
        _, out = await ipt._run("iptables", "-w", "-t", "filter", "-S", builtin)
        rules = [line for line in out.splitlines() if line.startswith("-A ")]
        ours = [i for i, r in enumerate(rules) if r.endswith(f"-j {chain}")]
        if len(ours) == 1 and all(model.JUMP_COMMENT in r for r in rules[: ours[0]]):
            return False
        # One transaction: the old jumps deleted and the new one inserted first.  Two iptables
        # runs (delete, then insert) would leave a moment without any jump: every policy off.
        lines = ["*filter", *(f"-D {rules[i][3:]}" for i in ours)]
        lines += [f"-I {builtin} 1 {_spec_text(spec)}", "COMMIT", ""]
        rc, _ = await ipt._run(
            "iptables-restore", "-w", "--noflush", stdin="\n".join(lines).encode(), check=attempt == 2
        )
        if rc == 0:  # else someone changed the chain since it was read: read it again
            break
    log.info("jump filter/%s -> %s is first", builtin, chain)
    return True


def _spec_text(spec: list[str]) -> str:
    """A rule's arguments as iptables-restore reads them (double quotes around a word with spaces)."""
    return " ".join(model._quote(w) if (" " in w or '"' in w or not w) else w for w in spec)


async def kernel_policy_chains(prefix: str) -> set[str]:
    saved = await ipt.save("filter")
    return {ch for ch in ipt.prefix_chains(saved, prefix) if model.is_policy_chain(prefix, ch)}


async def remove(prefix: str) -> None:
    """Remove the policy chains and the jumps into them (``--no-network-policy`` at start, so a
    policy an earlier run left does not keep filtering)."""
    await ipt.remove_chains("filter", await kernel_policy_chains(prefix))


class NetworkPolicyController:
    def __init__(self, client: Client, prefix: str = "MINIK") -> None:
        self.client = client
        self.prefix = prefix
        self.policies = Informer(client, POLICIES)
        self.pods = Informer(client, PODS)
        self.namespaces = Informer(client, NAMESPACES)
        # minik-dns is a host process behind kube-system/kube-dns: a peer of its own (see
        # netpol_model.host_dns_peers)
        self.dns = Informer(
            client, ENDPOINTS, namespace="kube-system", field_selector="metadata.name=kube-dns"
        )
        self.ready = asyncio.Event()
        self.syncs = 0  # rule writes (for tests and logs)
        self.last_plan: model.Plan | None = None
        self._dirty = asyncio.Event()
        self._applied_text: str | None = None
        self._applied_chains: set[str] | None = None  # None: read the kernel's on the next write
        self._last_full = 0.0
        self._tasks: list[asyncio.Task[Any]] = []

        def changed(*_: Any) -> None:
            self._dirty.set()

        for inf in (self.policies, self.namespaces, self.dns):
            inf.add_event_handler(changed, changed, changed)

        def pod_updated(old: Obj, new: Obj) -> None:
            a, b = model.pod_info(old), model.pod_info(new)
            if a != b or (a is not None and b is not None and (a.labels, a.ports) != (b.labels, b.ports)):
                self._dirty.set()

        self.pods.add_event_handler(changed, pod_updated, changed)

    def informers(self) -> tuple[Informer, ...]:
        return (self.policies, self.pods, self.namespaces, self.dns)

    async def run(self) -> None:
        for inf in self.informers():
            self._tasks.append(asyncio.create_task(inf.run(), name=f"netpol-informer-{inf.info.plural}"))
        why = await asyncio.to_thread(ensure_bridge_netfilter)
        if why:
            log.error(
                "NetworkPolicy is NOT enforced between pods on the same bridge (their traffic"
                " skips iptables): %s",
                why,
            )
        try:
            for inf in self.informers():
                await inf.wait_for_sync()
            await self._sync_loop()
        finally:
            await self.stop()

    async def stop(self) -> None:
        for inf in self.informers():
            inf.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _sync_loop(self) -> None:
        next_resync = 0.0
        early_until = time.monotonic() + EARLY_PERIOD
        while True:
            now = time.monotonic()
            if not self._dirty.is_set() and now < next_resync:
                try:
                    await asyncio.wait_for(self._dirty.wait(), next_resync - now)
                except TimeoutError:
                    pass
                await asyncio.sleep(DEBOUNCE_SECONDS)
            self._dirty.clear()
            try:
                await self.sync()
            except Exception:
                log.exception("network policy sync failed; retrying")
                self._applied_text = self._applied_chains = None
                await asyncio.sleep(RETRY_SECONDS)
                self._dirty.set()
                continue
            self.ready.set()
            now = time.monotonic()
            next_resync = now + (EARLY_RESYNC_SECONDS if now < early_until else RESYNC_SECONDS)

    def plan(self) -> model.Plan:
        state = model.state_from_objects(
            self.policies.store.list(),
            self.pods.store.list(),
            self.namespaces.store.list(),
            self.dns.store.get("kube-system/kube-dns"),
        )
        return model.plan(state, self.prefix)

    async def sync(self) -> bool:
        """Plan, write the chains when they changed, keep the jumps first; True when written."""
        plan = self.plan()
        if time.monotonic() - self._last_full > FULL_SYNC_SECONDS:
            self._applied_text = self._applied_chains = None
        if self._applied_chains is None:
            self._last_full = time.monotonic()
            self._applied_chains = await kernel_policy_chains(self.prefix)
        text = plan.restore_text(self._applied_chains)
        wrote = False
        if text != self._applied_text:
            start = time.perf_counter()
            await ipt._run("iptables-restore", "-w", "--noflush", stdin=text.encode())
            self._applied_text = plan.restore_text(set(plan.chains))  # stale ones are gone now
            self._applied_chains = set(plan.chains)
            self.syncs += 1
            wrote = True
            ingress = sum(1 for i, _ in plan.isolated.values() if i)
            egress = sum(1 for _, e in plan.isolated.values() if e)
            log.info(
                "network policy rules synced in %.1f ms: %d policies, %d pods isolated for ingress, %d for egress",
                (time.perf_counter() - start) * 1000,
                len(self.policies.store),
                ingress,
                egress,
            )
        self.last_plan = plan
        await self.ensure_jumps()
        return wrote

    async def ensure_jumps(self) -> None:
        for builtin in JUMP_FROM:
            if builtin == ipt.DOCKER_USER and not await ipt._chain_exists("filter", builtin):
                continue
            await ensure_first(builtin, self.prefix)
