"""Hollow nodes: many fake nodes in one process, for tests and benchmarks (kubemark/KWOK style).

``python -m kubelet.hollow --api-server URL --count N --prefix hollow-`` registers the Nodes
``hollow-0 .. hollow-N-1`` with the given capacity/allocatable and a Ready condition, renews their
Leases in ``kube-node-lease`` every ``--lease-period`` seconds, and plays the kubelet for the pods
bound to them — without Docker:

* a bound pod becomes ``Running`` with every container running and ready, ``Ready=True``, and a
  fake pod IP from its node's ``spec.podCIDR`` (or, until node IPAM gives one, from a fallback
  /24 of ``--fallback-cidr`` per node);
* a pod whose ``restartPolicy`` is not ``Always`` (Job pods) finishes after ``--job-duration``
  seconds (annotation ``hollow.minik.io/run-seconds`` overrides it) with exit code 0 or the one in
  annotation ``hollow.minik.io/exit-code``: ``Succeeded``; ``Failed`` (``Never``); or a container
  restart (``OnFailure``);
* a pod being deleted (``deletionTimestamp``) is finished at once: ``DELETE`` with
  ``gracePeriodSeconds=0`` and the pod's UID as precondition.

Everything is driven by two informers (pods, nodes) and a work queue of pod keys.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
from typing import Any

from apimachinery import errors
from apimachinery.client import Client, Obj
from apimachinery.component import run_component, run_until_stopped
from apimachinery.informer import Informer, object_key
from apimachinery.kubeconfig import load_config
from apimachinery.resources import kind_info
from apimachinery.timefmt import micro_time, rfc3339
from apimachinery.version import COMPONENT_VERSION
from apimachinery.workqueue import WorkQueue, run_workers

log = logging.getLogger("kubelet.hollow")

PODS = kind_info("v1", "Pod")
NODES = kind_info("v1", "Node")
LEASES = kind_info("coordination.k8s.io/v1", "Lease")

LEASE_NAMESPACE = "kube-node-lease"
EXIT_CODE_ANNOTATION = "hollow.minik.io/exit-code"
RUN_SECONDS_ANNOTATION = "hollow.minik.io/run-seconds"


# -- pure pieces ------------------------------------------------------------------------------------


def hollow_node(name: str, capacity: dict[str, str], labels: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                "minik.io/hollow": "true",
                **labels,
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": hollow_node_status(name, capacity, "10.255.255.1"),
    }


def hollow_node_status(name: str, capacity: dict[str, str], address: str) -> Obj:
    now = rfc3339()

    def cond(ctype: str, status: str, reason: str, message: str) -> Obj:
        return {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return {
        "capacity": dict(capacity),
        "allocatable": dict(capacity),
        "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": name,
            "systemUUID": name,
            "bootID": name,
            "kernelVersion": "hollow",
            "osImage": "hollow",
            "containerRuntimeVersion": "hollow://0",
            "kubeletVersion": COMPONENT_VERSION + "-hollow",
            "kubeProxyVersion": COMPONENT_VERSION + "-hollow",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
        "conditions": [
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
    }


class IPPool:
    """Pod IPs of one node: the hosts of its CIDR (skipping the network, .1 and broadcast)."""

    def __init__(self, cidr: str) -> None:
        self.cidr = cidr
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.used: dict[str, str] = {}  # ip -> pod uid
        self._next = 2

    def take(self, uid: str, prefer: str | None = None) -> str:
        for ip, owner in self.used.items():
            if owner == uid:
                return ip
        if prefer and prefer not in self.used and ipaddress.ip_address(prefer) in self.network:
            self.used[prefer] = uid
            return prefer
        size = self.network.num_addresses
        for _ in range(size):
            offset = self._next
            self._next = self._next + 1 if self._next + 1 < size - 1 else 2
            ip = str(self.network.network_address + offset)
            if ip not in self.used:
                self.used[ip] = uid
                return ip
        raise RuntimeError(f"no pod IP left in {self.cidr}")

    def release(self, uid: str) -> None:
        for ip in [ip for ip, owner in self.used.items() if owner == uid]:
            del self.used[ip]


def running_status(pod: Obj, pod_ip: str, host_ip: str, started: str, restarts: int = 0) -> Obj:
    spec = pod.get("spec") or {}
    statuses = []
    for c in spec.get("containers") or []:
        statuses.append(
            {
                "name": c.get("name"),
                "image": c.get("image"),
                "imageID": f"hollow://{c.get('image')}",
                "containerID": f"hollow://{(pod.get('metadata') or {}).get('uid', '')}-{c.get('name')}",
                "ready": True,
                "started": True,
                "restartCount": restarts,
                "state": {"running": {"startedAt": started}},
            }
        )
    conds = [
        {"type": t, "status": "True", "lastTransitionTime": started}
        for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    return {
        "phase": "Running",
        "conditions": conds,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started,
        "qosClass": (pod.get("status") or {}).get("qosClass") or "BestEffort",
        "containerStatuses": statuses,
    }


def finished_status(pod: Obj, exit_code: int) -> Obj:
    status = dict(pod.get("status") or {})
    finished = rfc3339()
    reason = "Completed" if exit_code == 0 else "Error"
    statuses = []
    for cs in status.get("containerStatuses") or []:
        started = ((cs.get("state") or {}).get("running") or {}).get("startedAt") or finished
        statuses.append(
            {
                **cs,
                "ready": False,
                "started": False,
                "state": {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": reason,
                        "startedAt": started,
                        "finishedAt": finished,
                        "containerID": cs.get("containerID"),
                    }
                },
            }
        )
    conds = []
    for c in status.get("conditions") or []:
        if c.get("type") in ("Ready", "ContainersReady"):
            c = {**c, "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished}
        conds.append(c)
    status.update(
        {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": statuses,
            "conditions": conds,
        }
    )
    return status


def pod_exit_code(pod: Obj) -> int:
    try:
        return int(((pod.get("metadata") or {}).get("annotations") or {}).get(EXIT_CODE_ANNOTATION, 0))
    except ValueError:
        return 1


def pod_run_seconds(pod: Obj, default: float) -> float:
    try:
        return float(
            ((pod.get("metadata") or {}).get("annotations") or {}).get(RUN_SECONDS_ANNOTATION, default)
        )
    except ValueError:
        return default


def fallback_cidr(base: str, index: int) -> str:
    net = ipaddress.ip_network(base, strict=False)
    subnets = list(net.subnets(new_prefix=24)) if net.prefixlen <= 24 else [net]
    return str(subnets[index % len(subnets)])


# -- the process ------------------------------------------------------------------------------------


class HollowNodes:
    def __init__(
        self,
        client: Client,
        names: list[str],
        capacity: dict[str, str],
        labels: dict[str, str] | None = None,
        lease_period: float = 10.0,
        job_duration: float = 1.0,
        fallback: str = "10.250.0.0/16",
        workers: int = 16,
    ) -> None:
        self.client = client
        self.names = names
        self.index = {n: i for i, n in enumerate(names)}
        self.capacity = capacity
        self.labels = labels or {}
        self.lease_period = lease_period
        self.job_duration = job_duration
        self.fallback = fallback
        self.workers = workers
        self.pods = Informer(client, PODS)
        self.nodes = Informer(client, NODES, label_selector="minik.io/hollow=true")
        self.queue = WorkQueue(name="hollow-pods")
        self.pools: dict[str, IPPool] = {}
        self.leases: dict[str, Obj] = {}
        self.restarts: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[Any]] = []

    # -- nodes ----------------------------------------------------------------------------------

    def node_ip(self, name: str) -> str:
        i = self.index[name]
        return f"10.255.{i // 250}.{i % 250 + 2}"

    async def register(self, name: str) -> None:
        body = hollow_node(name, self.capacity, self.labels)
        body["status"]["addresses"][0]["address"] = self.node_ip(name)
        try:
            await self.client.create(NODES, body)
        except errors.AlreadyExists:
            pass
        status = hollow_node_status(name, self.capacity, self.node_ip(name))
        await self.client.patch(NODES, name, {"status": status}, subresource="status")

    async def renew(self, name: str) -> None:
        spec = {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_time()}
        lease = self.leases.get(name)
        if lease is not None:
            try:
                self.leases[name] = await self.client.update(
                    LEASES, {**lease, "spec": {**lease["spec"], **spec}}
                )
                return
            except (errors.Conflict, errors.NotFound):
                self.leases.pop(name, None)
        try:
            lease = await self.client.get(LEASES, name, LEASE_NAMESPACE)
            self.leases[name] = await self.client.update(
                LEASES, {**lease, "spec": {**(lease.get("spec") or {}), **spec}}
            )
        except errors.NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
                "spec": spec,
            }
            self.leases[name] = await self.client.create(LEASES, body, LEASE_NAMESPACE)

    async def lease_loop(self) -> None:
        sem = asyncio.Semaphore(16)

        async def one(name: str) -> None:
            async with sem:
                try:
                    await self.renew(name)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("node %s: lease renewal failed: %s", name, exc)

        while True:
            await asyncio.gather(*(one(n) for n in self.names))
            await asyncio.sleep(self.lease_period)

    def pool(self, node_name: str) -> IPPool:
        node = self.nodes.store.get(node_name) or {}
        cidr = (node.get("spec") or {}).get("podCIDR") or fallback_cidr(self.fallback, self.index[node_name])
        pool = self.pools.get(node_name)
        if pool is None or pool.cidr != cidr:
            old = pool
            pool = IPPool(cidr)
            if old is not None:
                for uid in set(old.used.values()):
                    pool.take(uid)
            self.pools[node_name] = pool
        return pool

    # -- pods -----------------------------------------------------------------------------------

    def _ours(self, pod: Obj) -> bool:
        return str((pod.get("spec") or {}).get("nodeName") or "") in self.index

    def _on_pod(self, pod: Obj) -> None:
        if self._ours(pod):
            self.queue.add(object_key(pod))

    def _on_delete(self, pod: Obj) -> None:
        node = str((pod.get("spec") or {}).get("nodeName") or "")
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        if node in self.pools:
            self.pools[node].release(uid)
        self.restarts.pop(uid, None)
        timer = self._timers.pop(uid, None)
        if timer is not None:
            timer.cancel()

    async def reconcile(self, key: str) -> None:
        pod = self.pods.store.get(key)
        if pod is None or not self._ours(pod):
            return
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        status = pod.get("status") or {}
        namespace, name, uid = meta.get("namespace"), meta.get("name"), str(meta.get("uid") or "")
        node = str(spec.get("nodeName"))
        if meta.get("deletionTimestamp"):
            try:
                await self.client.delete(
                    PODS, str(name), namespace, grace_period_seconds=0, preconditions={"uid": uid}
                )
                log.debug("%s: deleted on %s", key, node)
            except (errors.NotFound, errors.Conflict):
                pass
            return
        phase = status.get("phase")
        if phase in ("Succeeded", "Failed"):
            return
        restarts = self.restarts.get(uid, 0)
        if phase == "Running" and status.get("podIP"):
            self.pool(node).take(uid, status.get("podIP"))
            have = max(
                (int(cs.get("restartCount") or 0) for cs in status.get("containerStatuses") or []), default=0
            )
            if have >= restarts:
                self._arm(pod)
                return
        ip = self.pool(node).take(uid, status.get("podIP"))
        started = rfc3339()
        new = running_status(pod, ip, self.node_ip(node), started, restarts)
        await self.client.patch(PODS, str(name), {"status": new}, namespace, subresource="status")
        log.debug("%s: running on %s as %s", key, node, ip)
        self._arm(pod)

    def _arm(self, pod: Obj) -> None:
        """Schedule the end of a pod that is not restarted forever (Job pods)."""
        spec = pod.get("spec") or {}
        if (spec.get("restartPolicy") or "Always") == "Always":
            return
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        if uid in self._timers:
            return
        key = object_key(pod)
        delay = pod_run_seconds(pod, self.job_duration)
        loop = asyncio.get_running_loop()
        self._timers[uid] = loop.call_later(delay, lambda: self._spawn_finish(key, uid))

    def _spawn_finish(self, key: str, uid: str) -> None:
        task = asyncio.create_task(self._finish(key, uid), name=f"finish-{key}")
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _finish(self, key: str, uid: str) -> None:
        self._timers.pop(uid, None)
        pod = self.pods.store.get(key)
        if pod is None or str((pod.get("metadata") or {}).get("uid")) != uid:
            return
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            return
        code = pod_exit_code(pod)
        meta = pod.get("metadata") or {}
        try:
            if code != 0 and (pod.get("spec") or {}).get("restartPolicy") == "OnFailure":
                self.restarts[uid] = self.restarts.get(uid, 0) + 1
                self.queue.add(key)  # rewrite Running with the new restart count
                return
            await self.client.patch(
                PODS,
                str(meta.get("name")),
                {"status": finished_status(pod, code)},
                meta.get("namespace"),
                subresource="status",
            )
            log.debug("%s: finished with exit code %d", key, code)
        except errors.NotFound:
            pass
        except Exception as exc:
            log.warning("%s: could not finish: %s", key, exc)

    # -- run ------------------------------------------------------------------------------------

    async def run(self) -> None:
        sem = asyncio.Semaphore(16)

        async def reg(name: str) -> None:
            async with sem:
                await self.register(name)

        await asyncio.gather(*(reg(n) for n in self.names))
        log.info("registered %d hollow nodes (%s .. %s)", len(self.names), self.names[0], self.names[-1])
        self.pods.add_event_handler(self._on_pod, lambda old, new: self._on_pod(new), self._on_delete)
        self.nodes.add_event_handler(on_update=lambda old, new: None)
        self._tasks += [
            asyncio.create_task(self.nodes.run(), name="hollow-node-informer"),
            asyncio.create_task(self.pods.run(), name="hollow-pod-informer"),
            asyncio.create_task(self.lease_loop(), name="hollow-leases"),
        ]
        await self.nodes.wait_for_sync()
        await self.pods.wait_for_sync()
        workers = asyncio.create_task(
            run_workers(self.queue, self.reconcile, self.workers), name="hollow-workers"
        )
        self._tasks.append(workers)
        try:
            await workers
        finally:
            await self.stop()

    async def stop(self) -> None:
        self.queue.shut_down()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.pods.stop()
        self.nodes.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m kubelet.hollow", description=__doc__.split("\n\n")[0])
    p.add_argument("--api-server", help="API server URL")
    p.add_argument("--kubeconfig", help="kubeconfig file (when --api-server is not given)")
    p.add_argument("--count", type=int, default=1, help="how many nodes")
    p.add_argument("--prefix", default="hollow-", help="node names are PREFIX0 .. PREFIX<count-1>")
    p.add_argument("--cpu", default="4", help="capacity/allocatable cpu")
    p.add_argument("--memory", default="16Gi", help="capacity/allocatable memory")
    p.add_argument("--pods", default="110", help="capacity/allocatable pods")
    p.add_argument("--label", action="append", default=[], help="extra node label k=v (repeatable)")
    p.add_argument("--lease-period", type=float, default=10.0, help="seconds between Lease renewals")
    p.add_argument("--job-duration", type=float, default=1.0, help="seconds a run-to-completion pod runs")
    p.add_argument("--fallback-cidr", default="10.250.0.0/16", help="pod IPs while a node has no podCIDR")
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    client = Client(args.api_server or load_config(args.kubeconfig or None))
    labels = dict(item.split("=", 1) for item in args.label if "=" in item)
    hollow = HollowNodes(
        client,
        [f"{args.prefix}{i}" for i in range(args.count)],
        {"cpu": args.cpu, "memory": args.memory, "pods": args.pods, "ephemeral-storage": "100Gi"},
        labels,
        args.lease_period,
        args.job_duration,
        args.fallback_cidr,
        args.workers,
    )
    try:
        await run_until_stopped(hollow.run(), stop, "hollow")
    finally:
        await client.aclose()
        log.info("hollow nodes stopped")


def main(argv: list[str] | None = None) -> None:
    run_component(parse_args(argv), serve, quiet=("httpx", "httpcore"))


if __name__ == "__main__":
    main()
