"""Benchmark: TCP through a Service ClusterIP (minik-proxy) beside the pod IP directly.

    .venv/bin/python -m bench.proxy [--gib 1] [--rounds 3] [--rr 3000]

Needs root, Docker and iptables.  Starts a fresh etcd, API server and ``minik-proxy`` (its own
iptables chain prefix), a Docker bridge network of its own with two busybox containers (the
*server pod* and the *client pod*), a selector-less Service with two ports and its Endpoints
pointing at the server pod.  The server and the client are Python processes started with
``nsenter --net`` inside those containers' network namespaces, so the traffic takes exactly the
path a pod's does (client veth -> bridge -> PREROUTING REDIRECT -> proxy -> bridge -> server veth);
a Python client gives much steadier numbers than busybox ``nc``.

In the same run, alternating direct and ClusterIP, it measures:

* bulk: ``--gib`` GiB sent over one connection (1 MiB writes), until the server confirms the
  byte count; best of ``--rounds``;
* request/response: ``--rr`` round trips of 1 KiB each way on one connection (p50, p99), and
  new-connection request/response (connect, 1 KiB each way, close: p50).

Targets from the issue: ClusterIP throughput >= 60 % of direct; added p50 latency <= 0.3 ms.
Everything it starts (processes, containers, the network, the chains) is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from testkit.host import free_subnets
from testkit.images import ensure_busybox_image
from testkit.processes import APIServerProcess, EtcdProcess, stop_process

IMAGE = "minik-test/busybox:1"
LABEL = "io.minik.bench=proxy"
SINK_PORT, ECHO_PORT = 9000, 9001
MSG = 1024
CHUNK = 1024 * 1024


# -- the two roles run inside the pods' network namespaces ----------------------------------------
def _recv_exact(sock: socket.socket, n: int, buf: bytearray) -> None:
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:n])
        if not k:
            raise ConnectionError("closed")
        got += k


def serve() -> None:
    """Sink on 9000 (reads to EOF, answers the byte count), echo of 1 KiB messages on 9001."""

    def sink(conn: socket.socket) -> None:
        buf = bytearray(CHUNK)
        total = 0
        while n := conn.recv_into(buf):
            total += n
        conn.sendall(str(total).encode())
        conn.close()

    def echo(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(MSG)
        try:
            while True:
                _recv_exact(conn, MSG, buf)
                conn.sendall(buf)
        except (ConnectionError, OSError):
            pass
        conn.close()

    def accept(port: int, handler: Any) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("0.0.0.0", port))
        ls.listen(128)
        while True:
            conn, _ = ls.accept()
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, args=(SINK_PORT, sink), daemon=True).start()
    print("ready", flush=True)
    accept(ECHO_PORT, echo)


def client(mode: str, host: str, port: int, n: int) -> dict[str, Any]:
    if mode == "bulk":
        data = memoryview(b"\0" * CHUNK)
        t0 = time.perf_counter()
        with socket.create_connection((host, port)) as s:
            for _ in range(n):
                s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            answer = s.recv(64)
        secs = time.perf_counter() - t0
        assert int(answer) == n * CHUNK, answer
        return {"bytes": n * CHUNK, "seconds": secs}
    msg = b"x" * MSG
    buf = bytearray(MSG)
    if mode == "rr":
        samples = []
        with socket.create_connection((host, port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(n + 100):
                t0 = time.perf_counter()
                s.sendall(msg)
                _recv_exact(s, MSG, buf)
                if i >= 100:  # warm-up
                    samples.append(time.perf_counter() - t0)
        return {"samples": samples}
    samples = []  # "crr": a new connection per request
    for _ in range(n):
        t0 = time.perf_counter()
        with socket.create_connection((host, port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(msg)
            _recv_exact(s, MSG, buf)
        samples.append(time.perf_counter() - t0)
    return {"samples": samples}


# -- the harness ------------------------------------------------------------------------------------
def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def _pid(name: str) -> str:
    return _docker("inspect", "-f", "{{.State.Pid}}", name)


def _in_netns(pid: str, *args: str) -> list[str]:
    return ["nsenter", "-t", pid, "-n", sys.executable, "-m", "bench.proxy", *args]


def _run_client(pid: str, mode: str, host: str, port: int, n: int) -> dict[str, Any]:
    out = subprocess.run(
        _in_netns(
            pid, "--role", "client", "--mode", mode, "--host", host, "--port", str(port), "--n", str(n)
        ),
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    return dict(json.loads(out))


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def bench(gib: float, rounds: int, rr: int) -> int:
    ensure_busybox_image(IMAGE)
    tag = uuid.uuid4().hex[:6]
    prefix = "MINIKB" + tag[:4].upper()
    net = f"minik-bench-{tag}"
    workdir = Path(tempfile.mkdtemp(prefix="minik-bench-proxy-"))
    etcd = EtcdProcess()
    api = None
    proxy: subprocess.Popen[bytes] | None = None
    server: subprocess.Popen[str] | None = None
    try:
        etcd.start()
        api = APIServerProcess(etcd.url)
        api.start()
        subnet = free_subnets(1, range(238, 239))[0]
        _docker("network", "create", "--label", LABEL, "--subnet", subnet, net)
        names = {}
        for role in ("server", "client"):
            names[role] = f"minik-bench-{tag}-{role}"
            _docker(
                "run", "-d", "--label", LABEL, "--network", net, "--name", names[role], IMAGE, "sleep", "3600"
            )
        server_ip = _docker(
            "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", names["server"]
        )
        spid, cpid = _pid(names["server"]), _pid(names["client"])
        server = subprocess.Popen(_in_netns(spid, "--role", "server"), stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"

        c = api.http()
        ports = [
            {"name": "sink", "port": 80, "targetPort": SINK_PORT},
            {"name": "echo", "port": 81, "targetPort": ECHO_PORT},
        ]
        svc = c.post(
            "/api/v1/namespaces/default/services",
            json={"metadata": {"name": "bench"}, "spec": {"ports": ports}},
        )
        svc.raise_for_status()
        vip = svc.json()["spec"]["clusterIP"]
        eps = {
            "metadata": {"name": "bench"},
            "subsets": [
                {
                    "addresses": [{"ip": server_ip}],
                    "ports": [{"name": "sink", "port": SINK_PORT}, {"name": "echo", "port": ECHO_PORT}],
                }
            ],
        }
        c.post("/api/v1/namespaces/default/endpoints", json=eps).raise_for_status()
        log = open(workdir / "proxy.log", "wb")
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proxy.command",
                "--kubeconfig",
                str(api.kubeconfig_for("proxy")),
                "--node-name",
                f"bench-{tag}",
                "--iptables-chain-prefix",
                prefix,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:  # no traffic to the VIP before its REDIRECT rules exist
            rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
            if all(f"--dport {p} -j REDIRECT" in rules and f"-d {vip}/32" in rules for p in (80, 81)):
                break
            if time.monotonic() > deadline or proxy.poll() is not None:
                raise SystemExit(f"the proxy did not write its rules:\n{(workdir / 'proxy.log').read_text()}")
            time.sleep(0.1)

        n_chunks = int(gib * 1024)
        targets = {"direct": (server_ip, SINK_PORT, ECHO_PORT), "clusterip": (vip, 80, 81)}
        bulk: dict[str, list[float]] = {k: [] for k in targets}
        rrs: dict[str, list[float]] = {k: [] for k in targets}
        crrs: dict[str, list[float]] = {k: [] for k in targets}
        for _ in range(rounds):
            for name, (host, sink_port, echo_port) in targets.items():
                r = _run_client(cpid, "bulk", host, sink_port, n_chunks)
                bulk[name].append(r["bytes"] / r["seconds"])
                rrs[name] += _run_client(cpid, "rr", host, echo_port, rr)["samples"]
                crrs[name] += _run_client(cpid, "crr", host, echo_port, max(50, rr // 10))["samples"]
        mib = 1024 * 1024
        print(
            f"minik-proxy forwarding: {'splice' if os.environ.get('MINIK_PROXY_SPLICE', '1') != '0' else 'copy'}"
        )
        print(
            "client: a Python process in the client pod's network namespace; server likewise in the server pod"
        )
        print(f"bulk {gib:g} GiB over one connection, best of {rounds}:")
        for name in targets:
            print(
                f"  {name:10} {max(bulk[name]) / mib:9.1f} MiB/s   (all: {', '.join(f'{b / mib:.0f}' for b in bulk[name])})"
            )
        ratio = max(bulk["clusterip"]) / max(bulk["direct"])
        print(f"  ratio clusterip/direct: {ratio:.2f}  (target >= 0.60)")
        print(f"1 KiB request/response, {rr} round trips per round on one connection (ms):")
        for name in targets:
            print(f"  {name:10} p50 {_pct(rrs[name], 0.5) * 1e3:.3f}  p99 {_pct(rrs[name], 0.99) * 1e3:.3f}")
        added = (_pct(rrs["clusterip"], 0.5) - _pct(rrs["direct"], 0.5)) * 1e3
        print(f"  added p50: {added:.3f} ms  (target <= 0.3)")
        print("1 KiB request/response on a new connection each (ms):")
        for name in targets:
            print(
                f"  {name:10} p50 {_pct(crrs[name], 0.5) * 1e3:.3f}  p99 {_pct(crrs[name], 0.99) * 1e3:.3f}"
            )
        print(
            f"  added p50: {(_pct(crrs['clusterip'], 0.5) - _pct(crrs['direct'], 0.5)) * 1e3:.3f} ms"
            f"  (mean direct {statistics.mean(crrs['direct']) * 1e3:.3f})"
        )
        return 0 if ratio >= 0.6 and added <= 0.3 else 1
    finally:
        for p in (proxy, server):
            stop_process(p)
        subprocess.run(
            [sys.executable, "-m", "proxy.command", "--cleanup", "--iptables-chain-prefix", prefix],
            capture_output=True,
        )
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={LABEL}", "--filter", f"name=minik-bench-{tag}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        subprocess.run(["docker", "network", "rm", net], capture_output=True)
        if api is not None:
            api.cleanup()
        etcd.cleanup()
        subprocess.run(["rm", "-rf", str(workdir)])


def main() -> None:
    p = argparse.ArgumentParser(prog="bench.proxy", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--gib", type=float, default=1.0, help="GiB per bulk transfer")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rr", type=int, default=3000, help="round trips per latency round")
    p.add_argument("--role", choices=["bench", "server", "client"], default="bench", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="bulk", help=argparse.SUPPRESS)
    p.add_argument("--host", default="", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "server":
        serve()
    elif args.role == "client":
        print(json.dumps(client(args.mode, args.host, args.port, args.n)))
    else:
        if os.geteuid() != 0:
            raise SystemExit("bench.proxy needs root (iptables, nsenter)")
        sys.exit(bench(args.gib, args.rounds, args.rr))


if __name__ == "__main__":
    main()
