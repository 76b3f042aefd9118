"""Leader election through a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does.

The candidate that holds ``kube-system/<name>`` runs the work; the others retry every
``retry_period`` and take the Lease over once its holder has not renewed it for
``lease_duration``.  Every write is conditional on the Lease's resourceVersion, so two candidates
can never both believe they won.  A leader that cannot renew within ``renew_deadline`` stops its
work (the process then exits, as kube-scheduler does, and its supervisor starts it again).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from apimachinery import errors
from apimachinery.client import Client, Obj
from apimachinery.resources import by_plural

log = logging.getLogger(__name__)

LEASES = by_plural("coordination.k8s.io", "v1", "leases")
assert LEASES is not None


def _now() -> datetime:
    return datetime.now(UTC)


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class LostLeadership(Exception):
    pass


class LeaderElector:
    def __init__(
        self,
        client: Client,
        name: str = "kube-scheduler",
        namespace: str = "kube-system",
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity or f"{socket.gethostname()}_{uuid.uuid4()}"
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period

    def _spec(self, transitions: int, acquire: datetime | None) -> Obj:
        now = _now()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "acquireTime": _micro(acquire or now),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }

    async def try_acquire_or_renew(self) -> bool:
        assert LEASES is not None
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except errors.NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(0, None),
            }
            try:
                await self.client.create(LEASES, body, self.namespace)
                return True
            except errors.AlreadyExists:
                return False
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder and holder != self.identity:
            renewed = _parse(spec.get("renewTime"))
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            if renewed is not None and (_now() - renewed).total_seconds() < duration:
                return False
            transitions += 1
            acquire = None
        else:
            acquire = _parse(spec.get("acquireTime")) if holder == self.identity else None
        lease["spec"] = self._spec(transitions, acquire)
        try:
            await self.client.update(LEASES, lease)
            return True
        except (errors.Conflict, errors.NotFound):
            return False

    async def run(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Wait to become leader, then run ``work`` while renewing; raise if leadership is lost."""
        while True:
            try:
                if await self.try_acquire_or_renew():
                    break
            except errors.StatusError as exc:
                log.warning("leader election: %s", exc)
            await asyncio.sleep(self.retry_period)
        log.info("became leader of %s/%s as %s", self.namespace, self.name, self.identity)
        task: asyncio.Task[None] = asyncio.create_task(work(), name="leader-work")
        try:
            last = asyncio.get_running_loop().time()
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=self.retry_period)
                if done:
                    break
                try:
                    if await self.try_acquire_or_renew():
                        last = asyncio.get_running_loop().time()
                except errors.StatusError as exc:
                    log.warning("leader election: renewing failed: %s", exc)
                if asyncio.get_running_loop().time() - last > self.renew_deadline:
                    raise LostLeadership(f"lost the lease {self.namespace}/{self.name}")
            await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
