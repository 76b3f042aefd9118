"""Benchmark: the scheduler placing 1,000 pods over 100 hollow nodes, beside the raw bind rate.

    .venv/bin/python -m bench.scheduler [--pods 1000] [--nodes 100] [--concurrency 32]

Starts a fresh etcd, API server, ``python -m kubelet.hollow --count NODES`` and ``minik-scheduler``,
then in one run:

* **scheduler**: PODS pods (100m CPU, 64Mi each) are created by ``--concurrency`` concurrent
  clients while the scheduler runs; a watch records when each pod is first seen bound. Reported:
  pods scheduled per second (first create to last bind) and p50/p99 of creation-to-binding;
* **raw bind**: the same number of pods for a scheduler that does not exist are created, then
  bound by this client with ``pods/{name}/binding`` POSTs at the same concurrency — the rate the
  API server allows with no scheduling at all.

Prints both rates and their ratio. Target from the issue: >= 300 pods/s. Everything it starts is
stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from apimachinery.client import Client
from apimachinery.resources import kind_info
from kubelet.hollow import hollow_node
from scheduler import fastpath
from scheduler.cache import SchedulerCache
from scheduler.framework import PodInfo
from scheduler.main import skip_sniffio_probe
from testkit.processes import APIServerProcess, EtcdProcess

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
_PODS = kind_info("v1", "Pod")
assert _PODS is not None
PODS = _PODS


def cpu_seconds(pid: int | None) -> float:
    """user + system CPU time of a process so far (Linux /proc), 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def pod(name: str, scheduler_name: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
        ]
    }
    if scheduler_name:
        spec["schedulerName"] = scheduler_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


async def create_all(
    client: Client, ns: str, names: list[str], concurrency: int, **kw: Any
) -> dict[str, float]:
    created: dict[str, float] = {}
    sem = asyncio.Semaphore(concurrency)

    async def one(name: str) -> None:
        async with sem:
            await client.create(PODS, pod(name, **kw), ns)
            created[name] = time.perf_counter()

    await asyncio.gather(*(one(n) for n in names))
    return created


async def scheduled_run(api: APIServerProcess, n: int, concurrency: int) -> tuple[float, list[float], float]:
    ns = "bench-sched"
    bound: dict[str, float] = {}
    done = asyncio.Event()
    async with api.async_http(timeout=None) as http:
        await http.post(
            "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        )

        async def watch() -> None:
            r = await http.get(f"/api/v1/namespaces/{ns}/pods")
            rv = r.json()["metadata"]["resourceVersion"]
            params = {"watch": "1", "resourceVersion": rv}
            async with http.stream("GET", f"/api/v1/namespaces/{ns}/pods", params=params) as stream:
                async for line in stream.aiter_lines():
                    if not line:
                        continue
                    ev = json.loads(line)
                    obj = ev.get("object") or {}
                    name = (obj.get("metadata") or {}).get("name")
                    if name and (obj.get("spec") or {}).get("nodeName") and name not in bound:
                        bound[name] = time.perf_counter()
                        if len(bound) >= n:
                            done.set()
                            return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.5)  # the watch is open
        async with api.client() as client:
            t0 = time.perf_counter()
            created = await create_all(client, ns, [f"p-{i:05d}" for i in range(n)], concurrency)
            create_done = time.perf_counter()
            try:
                await asyncio.wait_for(done.wait(), timeout=600)
            finally:
                watcher.cancel()
        t_end = max(bound.values())
        latencies = [bound[k] - created[k] for k in created if k in bound]
        return n / (t_end - t0), latencies, n / (create_done - t0)


async def raw_bind_run(api: APIServerProcess, n: int, concurrency: int, nodes: list[str]) -> float:
    ns = "bench-raw"
    async with api.client() as client:
        async with api.async_http() as http:
            await http.post(
                "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            )
        names = [f"r-{i:05d}" for i in range(n)]
        await create_all(client, ns, names, concurrency, scheduler_name="no-such-scheduler")
        sem = asyncio.Semaphore(concurrency)

        async def bind(i: int, name: str) -> None:
            async with sem:
                await client.bind(ns, name, nodes[i % len(nodes)])

        t0 = time.perf_counter()
        await asyncio.gather(*(bind(i, name) for i, name in enumerate(names)))
        return n / (time.perf_counter() - t0)


def decision_rate(n_pods: int, n_nodes: int) -> float:
    """Decisions per second of the pure decision alone (no I/O): the same pods placed one after
    the other over the same nodes, each assumed on its node as the scheduler does."""
    import random

    cache = SchedulerCache()
    for i in range(n_nodes):
        cache.add_node(hollow_node(f"bench-{i}", {"cpu": "32", "memory": "128Gi", "pods": "110"}, {}))
    rng = random.Random(0)
    pods = []
    for i in range(n_pods):
        body = pod(f"p-{i:05d}")
        body["metadata"]["namespace"] = "bench-sched"
        pods.append(body)
    t0 = time.perf_counter()
    for body in pods:
        pi = PodInfo.of(body)
        result = fastpath.schedule(pi, cache.snapshot, rng)
        assert isinstance(result, fastpath.Placement)
        cache.assume(pi, result.node_name)
    return n_pods / (time.perf_counter() - t0)


def wait_nodes(api: APIServerProcess, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with api.http() as c:
            r = c.get("/api/v1/nodes", params={"labelSelector": "minik.io/hollow=true"})
        ready = 0
        for node in r.json().get("items", []):
            conds = {c["type"]: c["status"] for c in (node.get("status") or {}).get("conditions") or []}
            ready += conds.get("Ready") == "True"
        if ready >= count:
            return
        time.sleep(0.5)
    raise RuntimeError("hollow nodes did not come up")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, default=1000)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--scheduler-log", help="copy the scheduler's log here")
    p.add_argument("--scheduler-arg", action="append", default=[], help="extra minik-scheduler argument")
    p.add_argument("--profile", help="run the scheduler under cProfile, writing the stats here")
    args = p.parse_args()
    skip_sniffio_probe()  # the load generator's own httpx overhead (see scheduler/main.py)

    etcd = EtcdProcess()
    logs = Path(tempfile.mkdtemp(prefix="minik-bench-sched-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        etcd.start()
        api = APIServerProcess(etcd.url)
        api.start()
        try:
            with open(logs / "hollow.log", "wb") as out:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "kubelet.hollow",
                            "--kubeconfig",
                            str(api.kubeconfig_for("hollow")),
                            "--count",
                            str(args.nodes),
                            "--prefix",
                            "bench-",
                            "--cpu",
                            "32",
                            "--memory",
                            "128Gi",
                            "--pods",
                            "110",
                        ],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=ROOT,
                    )
                )
            wait_nodes(api, args.nodes)
            with open(logs / "scheduler.log", "wb") as out:
                procs.append(
                    subprocess.Popen(
                        (
                            [sys.executable, "-m", "cProfile", "-o", args.profile, "-m", "scheduler.main"]
                            if args.profile
                            else [str(BIN / "minik-scheduler")]
                        )
                        + ["--kubeconfig", str(api.kubeconfig_for("scheduler")), *args.scheduler_arg],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=ROOT,
                    )
                )
            time.sleep(2)  # caches synced
            watched = {
                "scheduler": procs[1].pid,
                "apiserver": api.proc.pid if api.proc else None,
                "etcd": etcd.proc.pid if etcd.proc else None,
                "hollow nodes": procs[0].pid,
            }
            cpu0 = {k: cpu_seconds(pid) for k, pid in watched.items()}
            cpu0["bench client"] = time.process_time()
            t0 = time.perf_counter()
            rate, latencies, create_rate = asyncio.run(scheduled_run(api, args.pods, args.concurrency))
            wall = time.perf_counter() - t0
            cpu = {k: cpu_seconds(pid) - cpu0[k] for k, pid in watched.items()}
            cpu["bench client"] = time.process_time() - cpu0["bench client"]
            nodes = [f"bench-{i}" for i in range(args.nodes)]
            raw = asyncio.run(raw_bind_run(api, args.pods, args.concurrency, nodes))
            print(f"scheduler: {args.pods} pods over {args.nodes} hollow nodes")
            print(f"  scheduled         {rate:8.1f} pods/s   (target >= 300)")
            print(f"  create rate       {create_rate:8.1f} pods/s   (the client's POSTs alone)")
            print(
                f"  creation->binding p50 {pct(latencies, 0.5) * 1000:7.1f} ms   p99 {pct(latencies, 0.99) * 1000:7.1f} ms"
            )
            print(f"  raw bind          {raw:8.1f} pods/s   (binding POSTs by a client, same concurrency)")
            print(f"  ratio             {rate / raw:8.2f}  scheduled / raw bind")
            print(f"  decision alone    {decision_rate(args.pods, args.nodes):8.0f} pods/s   (in process)")
            print(f"  CPU seconds during the scheduled run ({wall:.1f} s wall, {os.cpu_count()} cores):")
            for k, v in cpu.items():
                print(f"    {k:<14} {v:6.1f} s")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            if args.scheduler_log:
                shutil.copy(logs / "scheduler.log", args.scheduler_log)
            api.cleanup()
    finally:
        etcd.cleanup()
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()
