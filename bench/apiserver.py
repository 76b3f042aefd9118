"""Benchmark: the API server beside the raw etcd operations beneath it, measured in one run.

    .venv/bin/python -m bench.apiserver [--n 2000] [--watchers 100]

Starts a fresh etcd and a ``minik-apiserver`` process, then measures, side by side:

* throughput of raw etcd puts and gets (the same gRPC client the API server uses, against the same
  etcd) and of API-server creates and gets of a ConfigMap over HTTP, at concurrency 1 and 32;
* create latency (p50/p99) at a fixed offered rate of 100 creates/s;
* watch delivery latency (p50/p99) from a create's response to its arrival at each of 100 watchers;
* the API server's resident memory before and after.

Absolute numbers drift between machines; the ratios (API server / raw etcd) are the figures to
compare.  Targets from the issue: create throughput at concurrency 32 >= 50 % of raw etcd puts;
create p99 <= 50 ms at 100 creates/s; watch delivery p99 <= 100 ms with 100 watchers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
import orjson

from apiserver.etcd import Etcd
from apiserver.testing import APIServerProcess, EtcdProcess

NS = "default"


def payload(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "data": {"key": "x" * 200},
    }


async def run_concurrently(n: int, concurrency: int, op: Callable[[int], Awaitable[None]]) -> float:
    """Run ``op(i)`` for i in range(n) with ``concurrency`` workers; return ops/second."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - start)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


WRK_CREATE = """
local counter = 0
local prefix = "x"
local body_tail = '","labels":{"app":"bench"}},"data":{"key":"' .. string.rep("x", 200) .. '"}}'
init = function(args) prefix = args[1] end
request = function()
  counter = counter + 1
  local body = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"' .. prefix .. "-" .. counter .. body_tail
  return wrk.format("POST", "/api/v1/namespaces/default/configmaps", {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d\\n", summary.requests, summary.errors.status, summary.duration))
end
"""

WRK_GET = """
local counter = 0
local prefix = "x"
local n = 1
init = function(args) prefix = args[1]; n = tonumber(args[2]) end
request = function()
  counter = counter + 1
  return wrk.format("GET", "/api/v1/namespaces/default/configmaps/" .. prefix .. "-" .. ((counter % n) + 2))
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d\\n", summary.requests, summary.errors.status, summary.duration))
end
"""


def wrk(url: str, script: str, connections: int, seconds: int, *script_args: str) -> tuple[float, int, int]:
    """Run wrk with one thread; return (requests per second, requests, non-2xx responses)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", f.name, url, "--", *script_args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    _, requests, bad, micros = line.split()
    return int(requests) / (int(micros) / 1e6), int(requests), int(bad)


async def bench(args: argparse.Namespace) -> dict:
    etcd_proc = EtcdProcess()
    etcd_proc.start()
    server = APIServerProcess(etcd_proc.url)
    server.start()
    results: dict = {}
    try:
        assert server.proc is not None
        results["rss_start_mib"] = rss_mib(server.proc.pid)
        etcd = Etcd(etcd_proc.url)
        body = orjson.dumps(payload("raw"))
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as http:
            # warm up both paths
            for i in range(50):
                await etcd.put(f"/bench/warm/{i}", body)
                await http.post(f"/api/v1/namespaces/{NS}/configmaps", json=payload(f"warm-{i}"))

            for conc in (1, 32):
                n = args.n if conc > 1 else max(args.n // 4, 200)
                run = uuid.uuid4().hex[:6]

                async def raw_put(i: int, run: str = run) -> None:
                    await etcd.create(f"/bench/raw/{run}/{i}", body)

                async def raw_get(i: int, run: str = run) -> None:
                    await etcd.get(f"/bench/raw/{run}/{i}")

                results[f"etcd_put_c{conc}"] = await run_concurrently(n, conc, raw_put)
                results[f"etcd_get_c{conc}"] = await run_concurrently(n, conc, raw_get)
                if shutil.which("wrk"):
                    rate, count, bad = wrk(server.url, WRK_CREATE, conc, args.seconds, f"c{conc}-{run}")
                    assert bad == 0, f"{bad} creates failed"
                    results[f"api_create_c{conc}"] = rate
                    rate, _, bad = wrk(
                        server.url, WRK_GET, conc, args.seconds, f"c{conc}-{run}", str(count - 2 * conc)
                    )  # wrk calls request() once before the run
                    assert bad == 0, f"{bad} gets failed"
                    results[f"api_get_c{conc}"] = rate
                    results["client"] = "wrk"
                else:

                    async def api_create(i: int, run: str = run) -> None:
                        r = await http.post(
                            f"/api/v1/namespaces/{NS}/configmaps", json=payload(f"c-{run}-{i}")
                        )
                        assert r.status_code == 201, r.text

                    async def api_get(i: int, run: str = run) -> None:
                        r = await http.get(f"/api/v1/namespaces/{NS}/configmaps/c-{run}-{i}")
                        assert r.status_code == 200, r.text

                    results[f"api_create_c{conc}"] = await run_concurrently(n, conc, api_create)
                    results[f"api_get_c{conc}"] = await run_concurrently(n, conc, api_get)
                    results["client"] = "httpx (install wrk for a client that is not the bottleneck)"

            # create latency at a fixed offered rate (open loop)
            rate, seconds = 100, args.latency_seconds
            latencies: list[float] = []
            raw_latencies: list[float] = []
            run = uuid.uuid4().hex[:6]

            async def timed_create(i: int) -> None:
                t0 = time.perf_counter()
                r = await http.post(f"/api/v1/namespaces/{NS}/configmaps", json=payload(f"l-{run}-{i}"))
                latencies.append(time.perf_counter() - t0)
                assert r.status_code == 201

            async def timed_put(i: int) -> None:
                t0 = time.perf_counter()
                await etcd.create(f"/bench/lat/{run}/{i}", body)
                raw_latencies.append(time.perf_counter() - t0)

            for fn in (timed_put, timed_create):
                tasks = []
                start = time.perf_counter()
                for i in range(rate * seconds):
                    delay = start + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(fn(i)))
                await asyncio.gather(*tasks)
            results["create_p50_ms"] = pct(latencies, 0.50)
            results["create_p99_ms"] = pct(latencies, 0.99)
            results["etcd_put_p50_ms"] = pct(raw_latencies, 0.50)
            results["etcd_put_p99_ms"] = pct(raw_latencies, 0.99)

            # watch delivery latency with many watchers
            results.update(await watch_latency(server.url, args.watchers, args.watch_events))
        results["rss_end_mib"] = rss_mib(server.proc.pid)
        await etcd.close()
    finally:
        server.cleanup()
        etcd_proc.cleanup()
    return results


async def watch_latency(url: str, watchers: int, events: int) -> dict:
    ns = "bench-watch"
    limits = httpx.Limits(max_connections=watchers + 8, max_keepalive_connections=watchers + 8)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        await http.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
        rv = (await http.get(f"/api/v1/namespaces/{ns}/configmaps")).json()["metadata"]["resourceVersion"]
        sent: dict[str, float] = {}
        delays: list[float] = []
        ready = 0
        all_ready = asyncio.Event()

        async def watcher() -> None:
            nonlocal ready
            params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "120"}
            async with http.stream("GET", f"/api/v1/namespaces/{ns}/configmaps", params=params) as r:
                ready += 1
                if ready == watchers:
                    all_ready.set()
                got = 0
                async for line in r.aiter_lines():
                    if not line:
                        continue
                    ev = json.loads(line)
                    name = ev["object"]["metadata"]["name"]
                    now = time.perf_counter()
                    if name in sent:
                        delays.append(max(0.0, now - sent[name]))
                    got += 1
                    if got >= events:
                        return

        tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
        await asyncio.wait_for(all_ready.wait(), 60)
        await asyncio.sleep(0.5)
        for i in range(events):
            name = f"w-{i}"
            sent[name] = time.perf_counter()
            r = await http.post(f"/api/v1/namespaces/{ns}/configmaps", json=payload(name))
            assert r.status_code == 201
            await asyncio.sleep(1 / 20)
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return {
        "watch_deliveries": len(delays),
        "watch_p50_ms": pct(delays, 0.50),
        "watch_p99_ms": pct(delays, 0.99),
    }


def report(r: dict, watchers: int) -> None:
    print("minik API server vs raw etcd (same gRPC client, same etcd, same run)")
    print(f"HTTP load generator: {r.get('client')}")
    print(f"{'operation':34} {'raw etcd/s':>12} {'apiserver/s':>12} {'ratio':>7}")
    for conc in (1, 32):
        for op, raw in (("create", "put"), ("get", "get")):
            e, a = r[f"etcd_{raw}_c{conc}"], r[f"api_{op}_c{conc}"]
            print(f"{op + f' (concurrency {conc})':34} {e:12.0f} {a:12.0f} {a / e:7.2f}")
    print(
        f"create latency at 100/s: p50 {r['create_p50_ms']:.1f} ms, p99 {r['create_p99_ms']:.1f} ms "
        f"(raw etcd put p50 {r['etcd_put_p50_ms']:.1f} ms, p99 {r['etcd_put_p99_ms']:.1f} ms; "
        f"p99 ratio {r['create_p99_ms'] / max(r['etcd_put_p99_ms'], 1e-6):.1f}x)"
    )
    print(
        f"watch delivery with {watchers} watchers: p50 {r['watch_p50_ms']:.1f} ms, p99 {r['watch_p99_ms']:.1f} ms "
        f"over {r['watch_deliveries']} deliveries"
    )
    print(f"API server RSS: {r['rss_start_mib']:.0f} MiB at start, {r['rss_end_mib']:.0f} MiB at end")
    ratio = r["api_create_c32"] / r["etcd_put_c32"]
    print("targets:")
    print(
        f"  create throughput c32 >= 50% of raw etcd puts: {ratio:.0%} {'ok' if ratio >= 0.5 else 'MISSED'}"
    )
    print(
        f"  create p99 <= 50 ms at 100/s: {r['create_p99_ms']:.1f} ms {'ok' if r['create_p99_ms'] <= 50 else 'MISSED'}"
    )
    print(
        f"  watch p99 <= 100 ms with {watchers} watchers: {r['watch_p99_ms']:.1f} ms {'ok' if r['watch_p99_ms'] <= 100 else 'MISSED'}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="operations per throughput measurement")
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--watch-events", type=int, default=100)
    p.add_argument("--latency-seconds", type=int, default=5)
    p.add_argument("--seconds", type=int, default=5, help="duration of each wrk run")
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = p.parse_args()
    results = asyncio.run(bench(args))
    report(results, args.watchers)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
