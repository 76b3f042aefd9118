"""Benchmark: the API server beside the etcd beneath it, both driven by wrk, measured in one run.

    .venv/bin/python -m bench.apiserver [--seconds 5] [--concurrency 1,32] [--watchers 100] [--only overhead]

Starts a fresh etcd and a ``minik-apiserver`` process serving HTTPS with client-certificate
authentication and RBAC on its secure port, and plain HTTP without authentication or authorization
on ``--insecure-port`` (loopback), then measures, side by side:

* the cost of security: ConfigMap create and get throughput at concurrency 32 over TLS as a user
  whose only permission is a RoleBinding (x509 client certificate, RBAC decision) against the same
  server process's insecure port, interleaved twice;

* throughput and latency (p50/p99) of API-server ConfigMap creates and gets, and of the etcd
  operations beneath them (a put of a stored ConfigMap's size, a range of one key) through etcd's
  own HTTP/JSON gateway, with the same load generator (wrk, ``bench/apiserver_wrk.lua``) at the
  same concurrency for the same time: the ratio compares the API server with etcd's capacity here;
* create latency (p50/p99) at a fixed 100 creates/s, and etcd put latency at that rate, from one
  Python HTTP client;
* watch delivery latency (p50/p99) from a create's response to its arrival at each of 100 watchers;
* watch-list: 10 clients at once each ask for a watch-list stream (``sendInitialEvents=true``) of
  10,000 ConfigMaps; the time (p50/p99) from the request to the BOOKMARK that ends the initial events;
* custom-resource creates (a CRD with a structural schema) beside ConfigMap creates of the same size,
  both at 32 connections, interleaved twice;
* the API server's resident memory before and after;
* the cost of observability (``--only overhead`` runs this alone): ConfigMap create throughput at
  concurrency 32 (wrk, admin certificate, secure port) of a server with Prometheus metrics and
  tracing on (the default flags) against a server with ``--disable-metrics --disable-tracing``
  (each on its own etcd, started together), interleaved six times (a few per cent of run-to-run
  noise on a 2-core machine), with each server's CPU time per request and the per-round ratios.

Every other API-server figure is taken on the secure port as the cluster admin (client
certificate).  wrk has no option for a client certificate: a small preloaded library (compiled
here with the C compiler, ``SHIM_SOURCE``) loads one into every TLS context wrk makes.

Absolute numbers drift between machines; the ratios (API server / etcd) are the figures to compare.
Targets from the issue: secure/insecure create and get throughput at concurrency 32 >= 85 %;
create throughput at concurrency 32 >= 50 % of etcd puts; create p99 <= 50
ms at 100 creates/s; watch delivery p99 <= 100 ms with 100 watchers; watch-list of 10,000 objects to
10 clients: p99 to the initial-events-end bookmark <= 2 s; custom-resource create throughput >= 80 %
of ConfigMap create throughput; create throughput with metrics and tracing on >= 95 % of off.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from testkit import certs
from testkit.host import free_port
from testkit.processes import BIN, APIServerProcess, EtcdProcess

NS = "default"
WRK_SCRIPT = Path(__file__).with_name("apiserver_wrk.lua")
# (API-server operation, the etcd operation beneath it): wrk modes api-OP and etcd-RAW
OPERATIONS = (("create", "put"), ("get", "range"))


def payload(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "data": {"key": "x" * 200},
    }


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


@dataclass
class Load:
    """One wrk run: completed requests per second and latency percentiles."""

    rate: float
    requests: int
    p50_ms: float
    p99_ms: float


def parse_wrk(stdout: str) -> Load:
    """Read the ``RESULT key=value ...`` line of the script's ``done()``; refuse a run with errors."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"no RESULT line in wrk output:\n{stdout}")
    f = {k: int(v) for k, v in (field.split("=", 1) for field in line.split()[1:])}
    if f["non2xx"] or f["socket_errors"]:
        raise RuntimeError(f"wrk saw {f['non2xx']} non-2xx responses and {f['socket_errors']} socket errors")
    return Load(
        f["requests"] / (f["duration_us"] / 1e6), f["requests"], f["p50_us"] / 1000, f["p99_us"] / 1000
    )


# Preloaded into wrk: every SSL_CTX it makes presents the client certificate named by
# WRK_CLIENT_CERT/WRK_CLIENT_KEY (wrk itself has no option for one).
SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_method_st SSL_METHOD;
typedef SSL_CTX *(*ctx_new_fn)(const SSL_METHOD *);
typedef int (*chain_fn)(SSL_CTX *, const char *);
typedef int (*key_fn)(SSL_CTX *, const char *, int);

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method) {
    static ctx_new_fn real;
    if (!real) real = (ctx_new_fn)dlsym(RTLD_NEXT, "SSL_CTX_new");
    SSL_CTX *ctx = real(method);
    const char *cert = getenv("WRK_CLIENT_CERT"), *key = getenv("WRK_CLIENT_KEY");
    if (ctx && cert && key) {
        chain_fn chain = (chain_fn)dlsym(RTLD_NEXT, "SSL_CTX_use_certificate_chain_file");
        key_fn pkey = (key_fn)dlsym(RTLD_NEXT, "SSL_CTX_use_PrivateKey_file");
        if (chain(ctx, cert) != 1 || pkey(ctx, key, 1 /* SSL_FILETYPE_PEM */) != 1) {
            fprintf(stderr, "wrk client certificate: cannot load %s and %s\n", cert, key);
            abort();
        }
    }
    return ctx;
}
"""
_shim: Path | None = None


def client_cert_shim() -> Path:
    """The compiled ``SHIM_SOURCE`` (once per run)."""
    global _shim
    if _shim is None:
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise SystemExit("bench.apiserver needs a C compiler (cc) to give wrk a client certificate")
        directory = Path(tempfile.mkdtemp(prefix="minik-bench-"))
        (directory / "wrk_client_cert.c").write_text(SHIM_SOURCE)
        out = directory / "wrk_client_cert.so"
        subprocess.run(
            [cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(directory / "wrk_client_cert.c"), "-ldl"],
            check=True,
        )
        _shim = out
    return _shim


Cert = tuple[Path, Path]


def wrk_env(cert: Cert | None, shim: Path | None) -> dict[str, str] | None:
    """wrk's environment: with ``cert``, the shim preloaded and told which certificate to present."""
    if cert is None:
        return None
    assert shim is not None
    preload = " ".join(p for p in (str(shim), os.environ.get("LD_PRELOAD", "")) if p)
    return {
        **os.environ,
        "LD_PRELOAD": preload,
        "WRK_CLIENT_CERT": str(cert[0]),
        "WRK_CLIENT_KEY": str(cert[1]),
    }


def wrk(
    url: str, connections: int, seconds: int, mode: str, prefix: str, n: int = 1, cert: Cert | None = None
) -> Load:
    """Run wrk with one thread and ``connections`` connections for ``seconds`` in one script mode,
    presenting ``cert`` (certificate, key) over HTTPS when given."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(WRK_SCRIPT)]
    out = subprocess.run(
        [*cmd, url, "--", mode, prefix, str(n)],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
        env=wrk_env(cert, client_cert_shim() if cert else None),
    ).stdout
    return parse_wrk(out)


def check_etcd_keys(etcd_url: str, prefix: str, n: int) -> None:
    """The keys a range run cycles over exist and hold what the put run wrote (ranging a missing key
    is a 200 with no ``kvs``, which wrk cannot tell from a hit)."""
    for i in (2, n + 1):  # see bench/apiserver_wrk.lua: objects are numbered from 2
        r = httpx.post(f"{etcd_url}/v3/kv/range", json={"key": b64(f"/bench/{prefix}/{i}")})
        kvs = r.json().get("kvs", [])
        assert len(kvs) == 1, f"/bench/{prefix}/{i} missing: {r.text}"
        assert json.loads(base64.b64decode(kvs[0]["value"]))["kind"] == "ConfigMap"


def throughput(
    api_url: str, etcd_url: str, concurrencies: list[int], seconds: int, cert: Cert | None = None
) -> dict[str, Load]:
    """wrk against both sides, interleaved so that a change in background load hits both alike."""
    run = uuid.uuid4().hex[:6]
    wrk(etcd_url, 8, 1, "etcd-put", f"warm-{run}")
    wrk(api_url, 8, 1, "api-create", f"warm-{run}", cert=cert)
    loads: dict[str, Load] = {}
    for conc in concurrencies:
        prefix = f"c{conc}-{run}"
        put = loads[f"etcd_put_c{conc}"] = wrk(etcd_url, conc, seconds, "etcd-put", prefix)
        create = loads[f"api_create_c{conc}"] = wrk(api_url, conc, seconds, "api-create", prefix, cert=cert)
        # both sides read the same number of objects, all of them surely written (the last
        # requests of a run may still have been in flight when wrk stopped)
        n = max(1, min(put.requests, create.requests) // 2)
        check_etcd_keys(etcd_url, prefix, n)
        loads[f"etcd_range_c{conc}"] = wrk(etcd_url, conc, seconds, "etcd-range", prefix, n)
        loads[f"api_get_c{conc}"] = wrk(api_url, conc, seconds, "api-get", prefix, n, cert=cert)
    return loads


async def fixed_rate(rate: int, seconds: int, op: Callable[[int], Awaitable[None]]) -> list[float]:
    """Start ``op(i)`` at ``rate`` per second for ``seconds`` (open loop); return each one's latency."""
    latencies: list[float] = []

    async def timed(i: int) -> None:
        t0 = time.perf_counter()
        await op(i)
        latencies.append(time.perf_counter() - t0)

    tasks = []
    start = time.perf_counter()
    for i in range(rate * seconds):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timed(i)))
    await asyncio.gather(*tasks)
    return latencies


async def create_latency(api_url: str, etcd_url: str, seconds: int, tls: Any = True) -> dict[str, float]:
    run = uuid.uuid4().hex[:6]
    value = b64(json.dumps(payload("x")))
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with (
        httpx.AsyncClient(limits=limits, timeout=30) as http,
        httpx.AsyncClient(limits=limits, timeout=30, verify=tls) as api,
    ):

        async def put(i: int) -> None:
            r = await http.post(
                f"{etcd_url}/v3/kv/put", json={"key": b64(f"/bench/lat-{run}/{i}"), "value": value}
            )
            assert r.status_code == 200, r.text

        async def create(i: int) -> None:
            for attempt in range(3):  # a pooled connection the server closed: send again
                try:
                    r = await api.post(
                        f"{api_url}/api/v1/namespaces/{NS}/configmaps", json=payload(f"l-{run}-{i}")
                    )
                    break
                except httpx.TransportError:
                    if attempt == 2:
                        raise
            assert r.status_code == 201 or attempt and r.status_code == 409, r.text

        raw = await fixed_rate(100, seconds, put)
        created = await fixed_rate(100, seconds, create)
    samples = {"create": created, "etcd_put": raw}
    return {f"{k}_p{q}_ms": pct(v, q / 100) for k, v in samples.items() for q in (50, 99)}


BENCH_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "benchitems.bench.minik.io"},
    "spec": {
        "group": "bench.minik.io",
        "scope": "Namespaced",
        "names": {"plural": "benchitems", "kind": "BenchItem"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"key": {"type": "string", "maxLength": 1024}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def custom_resource_throughput(
    api_url: str, seconds: int, cert: Cert | None = None, tls: Any = True
) -> dict[str, Load]:
    """Custom-object creates beside ConfigMap creates of the same size, at 32 connections,
    interleaved (ConfigMaps, custom objects, twice) so that background load hits both alike."""
    with httpx.Client(base_url=api_url, timeout=30, verify=tls) as http:
        r = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=BENCH_CRD)
        r.raise_for_status()
        deadline = time.monotonic() + 30
        while True:
            conds = (
                http.get(f"{r.request.url.path}/benchitems.bench.minik.io").json().get("status") or {}
            ).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark's CRD was not Established within 30 s")
            time.sleep(0.1)
    run = uuid.uuid4().hex[:6]
    wrk(api_url, 8, 1, "api-create-cr", f"warm-cr-{run}", cert=cert)
    cm: list[Load] = []
    cr: list[Load] = []
    for i in range(2):
        cm.append(wrk(api_url, 32, seconds, "api-create", f"cmvs-{run}-{i}", cert=cert))
        cr.append(wrk(api_url, 32, seconds, "api-create-cr", f"crvs-{run}-{i}", cert=cert))
    return {"cr_cm_create_c32": merged(cm), "cr_create_c32": merged(cr)}


def merged(loads: list[Load]) -> Load:
    """Interleaved runs of one kind as one figure: the mean rate, the worst percentiles."""
    return Load(
        rate=sum(x.rate for x in loads) / len(loads),
        p50_ms=max(x.p50_ms for x in loads),
        p99_ms=max(x.p99_ms for x in loads),
        requests=sum(x.requests for x in loads),
    )


BENCH_USER = "bench-user"


def grant_configmaps(http: httpx.Client, user: str) -> None:
    """A Role allowing create and get of ConfigMaps in NS, bound to ``user`` by a RoleBinding: the
    user's requests are allowed by RBAC alone (not by system:masters, which skips it)."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "bench-configmaps", "namespace": NS},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "bench-configmaps", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "bench-configmaps"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}"
    for path, obj in ((f"{rbac}/roles", role), (f"{rbac}/rolebindings", binding)):
        r = http.post(path, json=obj)
        if r.status_code not in (201, 409):
            raise RuntimeError(f"cannot create {obj['kind']}: {r.status_code} {r.text}")


def wait_allowed(url: str, cert: Cert, seconds: float = 30) -> None:
    """Until the authorizer has seen the binding: the user reads a ConfigMap without a 403."""
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, verify=certs.ssl_context(cert), timeout=10) as http:
        while True:
            r = http.get(f"/api/v1/namespaces/{NS}/configmaps/absent")
            if r.status_code == 404:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{BENCH_USER} is still refused: {r.status_code} {r.text}")
            time.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def security_cost(
    secure_url: str, insecure_url: str, cert: Cert, seconds: int, pid: int
) -> dict[str, dict[str, float]]:
    """Create and get throughput at 32 connections over TLS as an RBAC-bound user against the same
    server's insecure port, interleaved (secure, insecure, twice) so background load hits both; and
    the server's CPU time per request on each side (steadier than rates on a busy machine)."""
    run = uuid.uuid4().hex[:6]
    wrk(secure_url, 8, 1, "api-create", f"warm-sec-{run}", cert=cert)
    wrk(insecure_url, 8, 1, "api-create", f"warm-ins-{run}")
    loads: dict[str, list[Load]] = {}
    cpu: dict[str, float] = {}

    def measured(key: str, *args: Any, **kw: Any) -> Load:
        before = cpu_seconds(pid)
        load = wrk(*args, **kw)
        cpu[key] = cpu.get(key, 0.0) + cpu_seconds(pid) - before
        loads.setdefault(key, []).append(load)
        return load

    sides = (("secure", secure_url, cert), ("insecure", insecure_url, None))
    for i in range(2):
        created = [
            measured(f"{side}_create", url, 32, seconds, "api-create", f"{side}-{run}-{i}", cert=c)
            for side, url, c in sides
        ]
        # both sides get the same number of objects, all of them written by the creates above
        n = max(1, min(load.requests for load in created) // 2)
        for side, url, c in sides:
            measured(f"{side}_get", url, 32, seconds, "api-get", f"{side}-{run}-{i}", n, cert=c)
    out: dict[str, dict[str, float]] = {}
    for key, runs in loads.items():
        total = merged(runs)
        out[f"{key}_c32"] = {**asdict(total), "cpu_us_per_request": cpu[key] / total.requests * 1e6}
    return out


async def bench(args: argparse.Namespace) -> dict:
    if not shutil.which("wrk"):
        raise SystemExit("bench.apiserver needs wrk (scripts/install.sh installs it)")
    client_cert_shim()
    etcd_proc = EtcdProcess()
    etcd_proc.start()
    server = APIServerProcess(etcd_proc.url)
    insecure_url = f"http://127.0.0.1:{free_port()}"
    try:
        server.start(extra=["--insecure-port", insecure_url.rsplit(":", 1)[1]])
    except BaseException:  # a server that does not start: leave no etcd (or server) behind
        server.cleanup()
        etcd_proc.cleanup()
        raise
    admin = certs.client_cert("admin")
    user = certs.user_cert(BENCH_USER)
    tls: ssl.SSLContext = server.ssl_context()
    results: dict = {}
    try:
        assert server.proc is not None
        results["rss_start_mib"] = rss_mib(server.proc.pid)
        with server.http() as http:
            grant_configmaps(http, BENCH_USER)
        wait_allowed(server.url, user)
        results.update(
            await asyncio.to_thread(
                security_cost, server.url, insecure_url, user, args.seconds, server.proc.pid
            )
        )
        for op in ("create", "get"):  # printed at once too: the rest of the run takes minutes
            sec, ins = results[f"secure_{op}_c32"], results[f"insecure_{op}_c32"]
            print(
                f"{op} c32: secure {sec['rate']:.0f}/s, insecure {ins['rate']:.0f}/s, "
                f"ratio {sec['rate'] / ins['rate']:.2f}",
                flush=True,
            )
        loads = await asyncio.to_thread(
            throughput, server.url, etcd_proc.url, args.concurrency, args.seconds, admin
        )
        results.update({key: asdict(load) for key, load in loads.items()})
        cr_loads = await asyncio.to_thread(custom_resource_throughput, server.url, args.seconds, admin, tls)
        results.update({key: asdict(load) for key, load in cr_loads.items()})
        results.update(await create_latency(server.url, etcd_proc.url, args.latency_seconds, tls))
        results.update(await watch_latency(server.url, args.watchers, args.watch_events, tls))
        results.update(
            await watch_list_latency(server.url, args.watch_list_objects, args.watch_list_clients, tls)
        )
        results["rss_end_mib"] = rss_mib(server.proc.pid)
    finally:
        server.cleanup()
        etcd_proc.cleanup()
    return results


async def watch_latency(url: str, watchers: int, events: int, tls: Any = True) -> dict:
    ns = "bench-watch"
    limits = httpx.Limits(max_connections=watchers + 8, max_keepalive_connections=watchers + 8)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, verify=tls) as http:
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


async def watch_list_latency(url: str, objects: int, clients: int, tls: Any = True) -> dict:
    """``clients`` watch-list requests at once over ``objects`` ConfigMaps: seconds to each one's
    initial-events-end bookmark (all ``objects`` must have come as ADDED before it)."""
    ns = "bench-watchlist"
    limits = httpx.Limits(max_connections=clients + 40, max_keepalive_connections=clients + 40)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120, verify=tls) as http:
        await http.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
        pending = iter(range(objects))

        async def creator() -> None:
            for i in pending:
                for attempt in range(3):  # a pooled connection the server closed: send again
                    try:
                        r = await http.post(f"/api/v1/namespaces/{ns}/configmaps", json=payload(f"wl-{i}"))
                        break
                    except httpx.TransportError:
                        if attempt == 2:
                            raise
                assert r.status_code == 201 or attempt and r.status_code == 409, r.text

        await asyncio.gather(*(creator() for _ in range(32)))
        params = {
            "watch": "1",
            "sendInitialEvents": "true",
            "resourceVersionMatch": "NotOlderThan",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "120",
        }

        async def client() -> float:
            start = time.perf_counter()
            added = 0
            async with http.stream("GET", f"/api/v1/namespaces/{ns}/configmaps", params=params) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    if not line:
                        continue
                    ev = json.loads(line)
                    if ev["type"] == "ADDED":
                        added += 1
                    elif ev["type"] == "BOOKMARK" and (ev["object"]["metadata"].get("annotations") or {}).get(
                        "k8s.io/initial-events-end"
                    ):
                        assert added == objects, f"{added} initial events, expected {objects}"
                        return time.perf_counter() - start
            raise AssertionError("the watch-list stream ended before its initial-events-end bookmark")

        times = await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), 300)
    return {
        "watch_list_objects": objects,
        "watch_list_clients": clients,
        "watch_list_p50_s": pct(list(times), 0.50) / 1000,
        "watch_list_p99_s": pct(list(times), 0.99) / 1000,
    }


def report(r: dict, args: argparse.Namespace) -> None:
    def ms(load: dict) -> str:
        return f"{load['p50_ms']:.1f}/{load['p99_ms']:.1f}"

    sc, ic = r["secure_create_c32"], r["insecure_create_c32"]
    sg, ig = r["secure_get_c32"], r["insecure_get_c32"]
    print(
        "security: TLS, x509 client certificate and RBAC (a RoleBinding) vs the same server's insecure port"
    )
    print(
        f"{'operation':24} {'insec/s':>8} {'secure/s':>8} {'ratio':>6} {'insec p50/p99':>14} "
        f"{'secure p50/p99':>14} {'server CPU us/req insec/secure':>31} {'ratio':>6}"
    )
    for op, s_, i_ in (("create", sc, ic), ("get", sg, ig)):
        cpu_i, cpu_s = i_["cpu_us_per_request"], s_["cpu_us_per_request"]
        print(
            f"{f'{op} (concurrency 32)':24} {i_['rate']:8.0f} {s_['rate']:8.0f} "
            f"{s_['rate'] / i_['rate']:6.2f} {ms(i_):>14} {ms(s_):>14} "
            f"{f'{cpu_i:.0f}/{cpu_s:.0f}':>31} {cpu_i / cpu_s:6.2f}"
        )
    print(
        "minik API server (secure port, admin certificate) vs the etcd beneath it (same etcd, same run, both driven by wrk)"
    )
    print(
        f"wrk: 1 thread, {args.seconds} s per run; etcd through its HTTP/JSON gateway; latencies in ms (p50/p99)"
    )
    print(
        f"{'operation':30} {'etcd/s':>8} {'minik/s':>8} {'ratio':>6} {'etcd p50/p99':>13} {'minik p50/p99':>13}"
    )

    for conc in args.concurrency:
        for op, raw in OPERATIONS:
            e, a = r[f"etcd_{raw}_c{conc}"], r[f"api_{op}_c{conc}"]
            print(
                f"{f'{op} vs {raw} (concurrency {conc})':30} {e['rate']:8.0f} {a['rate']:8.0f} "
                f"{a['rate'] / e['rate']:6.2f} {ms(e):>13} {ms(a):>13}"
            )
    print(
        f"create latency at 100/s: p50 {r['create_p50_ms']:.1f} ms, p99 {r['create_p99_ms']:.1f} ms "
        f"(etcd put at 100/s, same client: p50 {r['etcd_put_p50_ms']:.1f} ms, p99 {r['etcd_put_p99_ms']:.1f} ms)"
    )
    print(
        f"watch delivery with {args.watchers} watchers: p50 {r['watch_p50_ms']:.1f} ms, "
        f"p99 {r['watch_p99_ms']:.1f} ms over {r['watch_deliveries']} deliveries"
    )
    print(
        f"watch-list of {r['watch_list_objects']} objects to {r['watch_list_clients']} clients at once: "
        f"to the initial-events-end bookmark p50 {r['watch_list_p50_s']:.2f} s, p99 {r['watch_list_p99_s']:.2f} s"
    )
    cm, cr = r["cr_cm_create_c32"], r["cr_create_c32"]
    print(
        f"custom-object creates (CRD with a schema) vs ConfigMap creates, concurrency 32: "
        f"{cr['rate']:.0f}/s vs {cm['rate']:.0f}/s (p99 {cr['p99_ms']:.1f} ms vs {cm['p99_ms']:.1f} ms)"
    )
    print(f"API server RSS: {r['rss_start_mib']:.0f} MiB at start, {r['rss_end_mib']:.0f} MiB at end")
    print("targets:")
    for op, s_, i_ in (("create", sc, ic), ("get", sg, ig)):
        ratio = s_["rate"] / i_["rate"]
        print(
            f"  {op} throughput c32 over TLS with client certificates and RBAC >= 85% of the insecure port: "
            f"{ratio:.0%} {'ok' if ratio >= 0.85 else 'MISSED'} "
            f"(by server CPU per request: {i_['cpu_us_per_request'] / s_['cpu_us_per_request']:.0%})"
        )
    if 32 in args.concurrency:
        ratio = r["api_create_c32"]["rate"] / r["etcd_put_c32"]["rate"]
        print(
            f"  create throughput c32 >= 50% of etcd puts: {ratio:.0%} {'ok' if ratio >= 0.5 else 'MISSED'}"
        )
    cr_ratio = r["cr_create_c32"]["rate"] / r["cr_cm_create_c32"]["rate"]
    print(
        f"  custom-object create throughput >= 80% of ConfigMap creates: {cr_ratio:.0%} "
        f"{'ok' if cr_ratio >= 0.8 else 'MISSED'}"
    )
    p99 = r["create_p99_ms"]
    print(f"  create p99 <= 50 ms at 100/s: {p99:.1f} ms {'ok' if p99 <= 50 else 'MISSED'}")
    w99 = r["watch_p99_ms"]
    print(
        f"  watch p99 <= 100 ms with {args.watchers} watchers: {w99:.1f} ms {'ok' if w99 <= 100 else 'MISSED'}"
    )
    wl99 = r["watch_list_p99_s"]
    print(
        f"  watch-list p99 <= 2 s ({r['watch_list_objects']} objects, {r['watch_list_clients']} clients): "
        f"{wl99:.2f} s {'ok' if wl99 <= 2 else 'MISSED'}"
    )


OBSERVABILITY_FLAGS = ("--disable-metrics", "--disable-tracing")


def observability_off_flags() -> tuple[list[str], list[str]]:
    """The flags that turn metrics and tracing off which this ``minik-apiserver`` has (read from
    its ``--help``), and those it lacks."""
    help_text = subprocess.run(
        [str(BIN / "minik-apiserver"), "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    have = [f for f in OBSERVABILITY_FLAGS if f in help_text]
    return have, [f for f in OBSERVABILITY_FLAGS if f not in have]


def observability_cost(seconds: int, rounds: int = 6) -> dict[str, Any]:
    """Create throughput at 32 connections (the file's create measurement: wrk ``api-create``
    as admin on the secure port) of a server with metrics and tracing on against one with them
    off, each on its own etcd, interleaved ``rounds`` times (alternating which goes first) so a
    change in background load hits both alike; and each server's CPU time per request."""
    if not shutil.which("wrk"):
        raise SystemExit("bench.apiserver needs wrk (scripts/install.sh installs it)")
    client_cert_shim()
    off_flags, missing = observability_off_flags()
    admin = certs.client_cert("admin")
    started: list[tuple[EtcdProcess, APIServerProcess]] = []
    try:
        for extra in ([], off_flags):
            etcd_proc = EtcdProcess()
            etcd_proc.start()
            server = APIServerProcess(etcd_proc.url)
            started.append((etcd_proc, server))
            server.start(extra=extra)
        (_, on), (_, off) = started
        assert on.proc is not None and off.proc is not None
        run = uuid.uuid4().hex[:6]
        for side, server in (("on", on), ("off", off)):
            wrk(server.url, 8, 1, "api-create", f"warm-obs-{side}-{run}", cert=admin)
        loads: dict[str, list[Load]] = {"on": [], "off": []}
        cpu = {"on": 0.0, "off": 0.0}
        pids = {"on": on.proc.pid, "off": off.proc.pid}
        for i in range(rounds):
            order = (("on", on), ("off", off)) if i % 2 == 0 else (("off", off), ("on", on))
            for side, server in order:
                before = cpu_seconds(pids[side])
                loads[side].append(
                    wrk(server.url, 32, seconds, "api-create", f"obs-{side}-{run}-{i}", cert=admin)
                )
                cpu[side] += cpu_seconds(pids[side]) - before
        with httpx.Client(base_url=on.url, verify=on.ssl_context(), timeout=30) as http:
            scraped = http.get("/metrics")
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in scraped.text.splitlines()
                if line.startswith("apiserver_request_total{")
                and 'verb="POST"' in line
                and 'resource="configmaps"' in line
            )
    finally:
        for etcd_proc, server in started:
            server.cleanup()
            etcd_proc.cleanup()
    out: dict[str, Any] = {"observability_off_flags": off_flags, "observability_missing_flags": missing}
    for side in ("on", "off"):
        total = merged(loads[side])
        out[f"observability_{side}_create_c32"] = {
            **asdict(total),
            "cpu_us_per_request": cpu[side] / total.requests * 1e6,
        }
    # the metrics really were on: the server counted the creates wrk made
    out["observability_on_counted_creates"] = counted
    out["observability_round_ratios"] = [
        a.rate / b.rate for a, b in zip(loads["on"], loads["off"], strict=True)
    ]
    return out


def report_observability(r: dict) -> None:
    on, off = r["observability_on_create_c32"], r["observability_off_create_c32"]
    flags = " ".join(r["observability_off_flags"])
    print(f"observability: metrics and tracing on (default flags) vs off ({flags}), same run")
    if r["observability_missing_flags"]:
        print(
            f"  note: this minik-apiserver has no {' '.join(r['observability_missing_flags'])}: "
            "that part stays on in both servers"
        )
    print(
        f"{'operation':24} {'off/s':>8} {'on/s':>8} {'ratio':>6} {'off p50/p99':>14} {'on p50/p99':>14} "
        f"{'server CPU us/req off/on':>25} {'ratio':>6}"
    )
    print(
        f"{'create (concurrency 32)':24} {off['rate']:8.0f} {on['rate']:8.0f} {on['rate'] / off['rate']:6.2f} "
        f"{off['p50_ms']:6.1f}/{off['p99_ms']:.1f} {on['p50_ms']:9.1f}/{on['p99_ms']:.1f} "
        f"{off['cpu_us_per_request']:>13.0f}/{on['cpu_us_per_request']:.0f} "
        f"{off['cpu_us_per_request'] / on['cpu_us_per_request']:6.2f}"
    )
    print(
        f"  creates counted by the metrics-on server's apiserver_request_total: {r['observability_on_counted_creates']:.0f}"
    )
    rounds = sorted(r["observability_round_ratios"])
    print(
        f"  on/off per round: {' '.join(f'{x:.2f}' for x in r['observability_round_ratios'])} "
        f"(median {rounds[len(rounds) // 2]:.2f})"
    )
    ratio = on["rate"] / off["rate"]
    print(
        f"  create throughput c32 with metrics and tracing on >= 95% of off: {ratio:.0%} "
        f"{'ok' if ratio >= 0.95 else 'MISSED'} "
        f"(by server CPU per request: {off['cpu_us_per_request'] / on['cpu_us_per_request']:.0%})"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=5, help="duration of each wrk run")
    p.add_argument(
        "--concurrency",
        type=lambda s: [int(c) for c in s.split(",")],
        default=[1, 32],
        help="comma-separated wrk connection counts (default 1,32)",
    )
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--watch-events", type=int, default=100)
    p.add_argument("--latency-seconds", type=int, default=5)
    p.add_argument("--watch-list-objects", type=int, default=10_000)
    p.add_argument("--watch-list-clients", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    p.add_argument(
        "--only",
        choices=["all", "overhead"],
        default="all",
        help="overhead: only the cost of metrics and tracing (default: every section)",
    )
    args = p.parse_args()
    results: dict = {}
    if args.only == "all":
        results = asyncio.run(bench(args))
        report(results, args)
    results.update(observability_cost(args.seconds))
    report_observability(results)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
