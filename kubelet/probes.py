"""Liveness, readiness and startup probes (exec, httpGet, tcpSocket) with Kubernetes' timing.

One asyncio task per (container instance, probe kind).  A task waits ``initialDelaySeconds``, then
probes every ``periodSeconds`` with ``timeoutSeconds``; a result flips after ``successThreshold``
successes or ``failureThreshold`` failures.  Liveness and readiness wait until the startup probe
(if any) has succeeded.  Results live in :class:`ProbeManager`; a change calls ``on_change(pod_key)``
so the pod is synced again (readiness drives Ready; a failed liveness probe makes the sync kill the
container, which the restart policy then restarts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from apimachinery import tracing

from . import trace

log = logging.getLogger(__name__)

Obj = dict[str, Any]

LIVENESS = "liveness"
READINESS = "readiness"
STARTUP = "startup"


@dataclass
class ProbeSpec:
    handler: Obj
    initial_delay: float = 0
    period: float = 10
    timeout: float = 1
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_obj(cls, probe: Obj) -> ProbeSpec:
        return cls(
            handler=probe,
            initial_delay=float(probe.get("initialDelaySeconds") or 0),
            period=float(probe.get("periodSeconds") or 10),
            timeout=float(probe.get("timeoutSeconds") or 1),
            success_threshold=int(probe.get("successThreshold") or 1),
            failure_threshold=int(probe.get("failureThreshold") or 3),
        )


def resolve_port(port: Any, container: Obj) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for p in container.get("ports") or []:
        if p.get("name") == text:
            return int(p.get("containerPort"))
    raise ValueError(f"port {text!r} not found in the container's ports")


async def run_probe(
    handler: Obj,
    container: Obj,
    pod_ip: str,
    timeout: float,
    exec_fn: Callable[[list[str], float], Awaitable[int]],
) -> tuple[bool, str]:
    """One probe attempt: ``(success, message)``."""
    try:
        if handler.get("exec"):
            cmd = [str(c) for c in handler["exec"].get("command") or []]
            code = await exec_fn(cmd, timeout)
            return code == 0, f"command {cmd} exited with {code}"
        if handler.get("httpGet"):
            hg = handler["httpGet"]
            host = hg.get("host") or pod_ip
            port = resolve_port(hg.get("port"), container)
            scheme = str(hg.get("scheme") or "HTTP").lower()
            path = hg.get("path") or "/"
            headers = {h["name"]: h["value"] for h in hg.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.32")
            async with httpx.AsyncClient(verify=False, timeout=timeout) as client:  # noqa: S501 - as kubelet
                resp = await client.get(f"{scheme}://{host}:{port}{path}", headers=headers)
            ok = 200 <= resp.status_code < 400
            return ok, f"HTTP probe failed with statuscode: {resp.status_code}"
        if handler.get("tcpSocket"):
            ts = handler["tcpSocket"]
            host = ts.get("host") or pod_ip
            port = resolve_port(ts.get("port"), container)
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
            return True, ""
    except TimeoutError:
        return False, f"probe timed out after {timeout}s"
    except Exception as exc:  # noqa: BLE001 - any failure is a failed probe
        return False, f"probe failed: {exc}"
    return False, "probe has no handler"


@dataclass
class _Worker:
    task: asyncio.Task[None]
    container_id: str


class ProbeManager:
    """Probe workers for the running containers of this node's pods, and their results."""

    def __init__(
        self,
        exec_fn: Callable[[str, list[str], float], Awaitable[int]],
        on_change: Callable[[str], None],
        on_failure: Callable[[str, str, str, str], None] | None = None,
    ) -> None:
        self._exec = exec_fn
        self._on_change = on_change
        self._on_failure = on_failure  # (pod_key, container, kind, message): an Unhealthy event
        self._workers: dict[tuple[str, str, str], _Worker] = {}  # (uid, container, kind)
        self.ready: dict[tuple[str, str], bool] = {}
        self.started: dict[tuple[str, str], bool] = {}
        self.unhealthy: dict[tuple[str, str], str] = {}  # -> container id that failed liveness
        self.unhealthy_kind: dict[tuple[str, str], str] = {}  # -> the probe kind that failed

    def readiness(self, uid: str, container: Obj) -> bool:
        if not container.get("readinessProbe"):
            return self.is_started(uid, container)
        return self.ready.get((uid, container.get("name", "")), False)

    def is_started(self, uid: str, container: Obj) -> bool:
        if not container.get("startupProbe"):
            return True
        return self.started.get((uid, container.get("name", "")), False)

    def unhealthy_names(self, uid: str, running: dict[str, str]) -> frozenset[str]:
        return frozenset(
            name for (u, name), cid in self.unhealthy.items() if u == uid and running.get(name) == cid
        )

    def sync(
        self, pod_key: str, uid: str, containers: list[Obj], running: dict[str, str], pod_ip: str
    ) -> None:
        """Start workers for newly running containers; stop workers of gone ones."""
        wanted: set[tuple[str, str, str]] = set()
        for c in containers:
            name = c.get("name", "")
            cid = running.get(name)
            if not cid:
                continue
            for kind, field in (
                (LIVENESS, "livenessProbe"),
                (READINESS, "readinessProbe"),
                (STARTUP, "startupProbe"),
            ):
                if not c.get(field):
                    continue
                key = (uid, name, kind)
                wanted.add(key)
                worker = self._workers.get(key)
                # a worker that finished on purpose (a startup probe that succeeded, a liveness probe
                # that failed) stays finished for its container: restarting it would reset the
                # result, and a fresh success would sync the pod again, and again
                if worker is not None and worker.container_id == cid and not _crashed(worker.task):
                    continue
                if worker is not None:
                    worker.task.cancel()
                self._reset(uid, name, kind)
                spec = ProbeSpec.from_obj(c[field])
                task = asyncio.create_task(
                    self._run(pod_key, uid, c, cid, kind, spec, pod_ip), name=f"probe-{kind}-{pod_key}-{name}"
                )
                self._workers[key] = _Worker(task, cid)
        for key in [k for k in self._workers if k[0] == uid and k not in wanted]:
            self._workers.pop(key).task.cancel()
            self._reset(*key)

    def _reset(self, uid: str, name: str, kind: str) -> None:
        if kind == READINESS:
            self.ready.pop((uid, name), None)
        elif kind == STARTUP:
            self.started.pop((uid, name), None)
        else:
            self.unhealthy.pop((uid, name), None)
            self.unhealthy_kind.pop((uid, name), None)

    def remove_pod(self, uid: str) -> None:
        for key in [k for k in self._workers if k[0] == uid]:
            self._workers.pop(key).task.cancel()
            self._reset(*key)

    async def stop(self) -> None:
        tasks = [w.task for w in self._workers.values()]
        self._workers.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(
        self, pod_key: str, uid: str, container: Obj, cid: str, kind: str, spec: ProbeSpec, pod_ip: str
    ) -> None:
        name = container.get("name", "")
        since = time.time_ns()  # minik trace: the wait for the first readiness success
        await asyncio.sleep(spec.initial_delay)
        successes = failures = 0
        result: bool | None = None
        while True:
            if kind != STARTUP and container.get("startupProbe") and not self.started.get((uid, name)):
                await asyncio.sleep(min(spec.period, 1.0))
                continue

            async def exec_in(cmd: list[str], timeout: float) -> int:
                return await self._exec(cid, cmd, timeout)

            ok, message = await run_probe(spec.handler, container, pod_ip, spec.timeout, exec_in)
            if ok:
                successes, failures = successes + 1, 0
            else:
                failures, successes = failures + 1, 0
                if self._on_failure is not None:
                    self._on_failure(pod_key, name, kind, message)
            new = result
            threshold = spec.success_threshold if kind == READINESS else 1
            if ok and successes >= threshold:
                new = True
            elif not ok and failures >= spec.failure_threshold:
                new = False
            if new is not None and new != result:
                result = new
                log.info("%s: %s probe of %s is now %s", pod_key, kind, name, "success" if new else "failure")
                if kind == READINESS:
                    self.ready[(uid, name)] = new
                    if new and since and tracing.active():
                        trace.readiness(uid, pod_key, name, since)
                        since = 0
                elif kind == STARTUP:
                    if new:
                        self.started[(uid, name)] = True
                    else:
                        self.unhealthy[(uid, name)] = cid  # a failed startup probe kills too
                        self.unhealthy_kind[(uid, name)] = STARTUP
                elif not new:
                    self.unhealthy[(uid, name)] = cid
                    self.unhealthy_kind[(uid, name)] = LIVENESS
                self._on_change(pod_key)
                if kind == STARTUP and new:
                    return
                if kind == LIVENESS and not new:
                    return
            await asyncio.sleep(spec.period)


def _crashed(task: asyncio.Task[None]) -> bool:
    """A probe worker that ended by an error (or was cancelled), not by finishing its job."""
    return task.done() and (task.cancelled() or task.exception() is not None)
