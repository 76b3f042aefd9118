"""Leader election through a ``coordination.k8s.io/v1`` Lease (client-go's ``leaderelection``).

A candidate tries every ``retry_period`` to acquire or renew the Lease.  Another holder's lease is
considered expired when its record has not changed for ``lease_duration`` seconds *as observed by
this process's own monotonic clock* (so clocks on different machines never need to agree).  The
leader renews every ``retry_period``; if it cannot renew for ``renew_deadline`` it stops leading.
On a graceful stop the leader releases the Lease so a standby takes over at once.

The controller manager and the scheduler both elect their leader with it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from apimachinery.timefmt import micro_time

from . import errors
from .client import Client, Obj
from .resources import plural_info

log = logging.getLogger(__name__)

LEASES = plural_info("coordination.k8s.io", "v1", "leases")

WallClock = Callable[[], float]
wall_clock: WallClock = time.time


class LostLeadership(Exception):
    """Raised by :meth:`LeaderElector.run` with ``reacquire=False`` when the lease is lost."""


def add_timing_flags(parser: argparse.ArgumentParser) -> None:
    """The Lease timings of a component that elects its leader, as kube components spell them."""
    parser.add_argument("--leader-elect-lease-duration", type=float, default=15.0)
    parser.add_argument("--leader-elect-renew-deadline", type=float, default=10.0)
    parser.add_argument("--leader-elect-retry-period", type=float, default=2.0)


def default_identity() -> str:
    return f"{os.uname().nodename}_{uuid.uuid4()}"


class LeaderElector:
    def __init__(
        self,
        client: Client,
        namespace: str = "kube-system",
        name: str = "minik-controller-manager",
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: WallClock = wall_clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.monotonic = monotonic
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0
        self._lease: Obj | None = None
        self.is_leader = False

    def _record(self, acquire_time: str | None, transitions: int) -> dict[str, Any]:
        now = micro_time(self.clock())
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "acquireTime": acquire_time or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True if this candidate holds the lease afterwards."""
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except errors.NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._record(None, 0),
            }
            try:
                self._lease = await self.client.create(LEASES, body, self.namespace)
            except errors.AlreadyExists:
                return False
            self._observe(self._lease)
            return True
        spec = dict(lease.get("spec") or {})
        self._observe(lease)
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self.monotonic() - self._observed_at < duration:
            return False
        if holder == self.identity:
            record = self._record(spec.get("acquireTime"), int(spec.get("leaseTransitions") or 0))
        else:
            record = self._record(None, int(spec.get("leaseTransitions") or 0) + 1)
        updated = dict(lease)
        updated["spec"] = record
        try:
            self._lease = await self.client.update(LEASES, updated)
        except errors.Conflict:
            return False
        self._observe(self._lease)
        return True

    def _observe(self, lease: Obj) -> None:
        spec = dict(lease.get("spec") or {})
        if spec != self._observed:
            self._observed = spec
            self._observed_at = self.monotonic()

    async def acquire(self) -> None:
        """Return once this candidate is the leader."""
        logged = False
        while True:
            try:
                if await self.try_acquire_or_renew():
                    log.info("became leader of %s/%s as %s", self.namespace, self.name, self.identity)
                    self.is_leader = True
                    return
            except errors.StatusError as exc:
                log.warning("leader election: %s", exc)
            if not logged:
                holder = (self._observed or {}).get("holderIdentity")
                log.info("waiting for lease %s/%s held by %s", self.namespace, self.name, holder)
                logged = True
            await asyncio.sleep(self.retry_period)

    async def renew_until_lost(self) -> None:
        """Renew every ``retry_period``; return when renewing failed for ``renew_deadline``."""
        last_renew = self.monotonic()
        while True:
            await asyncio.sleep(self.retry_period)
            try:
                if await self.try_acquire_or_renew():
                    last_renew = self.monotonic()
                    continue
                log.warning(
                    "lease %s/%s taken by %s",
                    self.namespace,
                    self.name,
                    (self._observed or {}).get("holderIdentity"),
                )
                break
            except errors.StatusError as exc:
                log.warning("could not renew lease: %s", exc)
            if self.monotonic() - last_renew > self.renew_deadline:
                break
        self.is_leader = False
        log.warning("lost leadership of %s/%s", self.namespace, self.name)

    async def release(self) -> None:
        """Give the lease up (holder cleared, duration 1 s) if we still hold it."""
        if not self.is_leader or self._lease is None:
            return
        self.is_leader = False
        lease = dict(self._lease)
        spec = dict(lease.get("spec") or {})
        now = micro_time(self.clock())
        spec.update({"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now, "acquireTime": now})
        lease["spec"] = spec
        try:
            await self.client.update(LEASES, lease)
            log.info("released lease %s/%s", self.namespace, self.name)
        except errors.StatusError as exc:
            log.warning("could not release lease: %s", exc)

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]], reacquire: bool = True) -> None:
        """Acquire, then run ``lead()`` while leading; it is cancelled when the lease is lost.

        With ``reacquire`` the candidate then waits to lead again; without it, losing the lease
        raises :class:`LostLeadership` (kube-scheduler's way: the process exits and its
        supervisor starts it afresh).
        """
        while True:
            await self.acquire()
            leading = asyncio.create_task(lead(), name="leading")
            renewing = asyncio.create_task(self.renew_until_lost(), name="lease-renew")
            try:
                done, _ = await asyncio.wait({leading, renewing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (leading, renewing):
                    task.cancel()
                await asyncio.gather(leading, renewing, return_exceptions=True)
            if leading in done and not leading.cancelled() and leading.exception() is not None:
                raise leading.exception()  # type: ignore[misc]
            if leading in done:
                await self.release()
                return
            if not reacquire:
                raise LostLeadership(f"lost the lease {self.namespace}/{self.name}")
