"""Benchmark: pod startup through the kubelet beside ``docker run -d`` of the same image.

    .venv/bin/python -m bench.pod_startup [--pods 30]

Starts a fresh etcd, API server and one ``minik-kubelet`` (its own Docker network), builds the
local busybox test image if needed, then in one run:

* ``docker run -d IMAGE sleep 3600`` N times, one after another, timing each call;
* N pods with ``spec.nodeName`` preassigned and the image present, created one after another,
  each timed from its create request to the moment a watch sees it ``Running``.

Prints p50/p99 of both and their ratio.  Targets from the issue: p50 <= 1.5 x raw, p99 <= 2 s.
Everything it starts (processes, containers, the network) is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

from apiserver.testing import APIServerProcess, EtcdProcess, free_port

BIN = Path(sys.executable).parent
IMAGE = "minik-test/busybox:1"


def ensure_image() -> None:
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode == 0:
        return
    with tempfile.TemporaryDirectory() as d:
        shutil.copy("/bin/busybox", os.path.join(d, "busybox"))
        Path(d, "Dockerfile").write_text(
            'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\n'
        )
        subprocess.run(["docker", "build", "-q", "-t", IMAGE, d], check=True, capture_output=True)


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def raw_docker(n: int, label: str) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(
            ["docker", "run", "-d", "--label", label, IMAGE, "sleep", "3600"], check=True, capture_output=True
        )
        times.append(time.perf_counter() - t0)
    return times


def pods_startup(api: str, node: str, n: int) -> list[float]:
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    done = threading.Event()
    rv = httpx.get(f"{api}/api/v1/namespaces/default/pods").json()["metadata"]["resourceVersion"]

    def watch() -> None:
        params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "300"}
        with httpx.stream("GET", f"{api}/api/v1/namespaces/default/pods", params=params, timeout=None) as r:
            for line in r.iter_lines():
                if not line:
                    continue
                ev = json.loads(line)
                obj = ev["object"]
                name = obj["metadata"]["name"]
                if (obj.get("status") or {}).get("phase") == "Running" and name not in running:
                    running[name] = time.perf_counter()
                    if len(running) >= n:
                        done.set()
                        return

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    time.sleep(0.5)
    with httpx.Client(base_url=api, timeout=30) as c:
        for i in range(n):
            name = f"start-{i}"
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {
                    "nodeName": node,
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "main",
                            "image": IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["sleep", "3600"],
                        }
                    ],
                },
            }
            created[name] = time.perf_counter()
            r = c.post("/api/v1/namespaces/default/pods", json=pod)
            assert r.status_code == 201, r.text
            # one after another, like the docker loop: wait for this pod before the next
            deadline = time.monotonic() + 60
            while name not in running and time.monotonic() < deadline:
                time.sleep(0.005)
    done.wait(60)
    return [running[k] - created[k] for k in created if k in running]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, default=30)
    p.add_argument("--kubelet-log", help="copy the kubelet's log here (to see where the time goes)")
    args = p.parse_args()
    ensure_image()
    tag = uuid.uuid4().hex[:8]
    label = f"io.minik.bench={tag}"
    node = f"bench-{tag}"
    network = f"minik-bench-{tag}"
    subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
    root = tempfile.mkdtemp(prefix="minik-bench-kubelet-")
    etcd = EtcdProcess()
    etcd.start()
    server = APIServerProcess(etcd.url)
    server.start()
    port = free_port()
    kubelet = subprocess.Popen(
        [
            str(BIN / "minik-kubelet"),
            "--api-server",
            server.url,
            "--node-name",
            node,
            "--node-ip",
            "127.0.0.1",
            "--address",
            "127.0.0.1",
            "--port",
            str(port),
            "--pod-cidr",
            subnet,
            "--network-name",
            network,
            "--root-dir",
            os.path.join(root, "root"),
        ],
        stdout=open(os.path.join(root, "kubelet.log"), "ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        raw = raw_docker(args.pods, label)
        pods = pods_startup(server.url, node, args.pods)
    finally:
        kubelet.terminate()
        try:
            kubelet.wait(20)
        except subprocess.TimeoutExpired:
            kubelet.kill()
        server.cleanup()
        etcd.cleanup()
        for flt in (label, f"io.minik.node={node}"):
            ids = subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"label={flt}"], capture_output=True, text=True
            )
            if ids.stdout.split():
                subprocess.run(["docker", "rm", "-f", *ids.stdout.split()], capture_output=True)
        subprocess.run(["docker", "network", "rm", network], capture_output=True)
        if args.kubelet_log:
            shutil.copy(os.path.join(root, "kubelet.log"), args.kubelet_log)
        shutil.rmtree(root, ignore_errors=True)
    print(f"pod startup, {args.pods} pods one after another (image present, node preassigned)")
    print(f"{'':26} {'p50':>8} {'p99':>8}")
    print(f"{'docker run -d':26} {pct(raw, 0.5) * 1000:6.0f}ms {pct(raw, 0.99) * 1000:6.0f}ms")
    print(f"{'minik create -> Running':26} {pct(pods, 0.5) * 1000:6.0f}ms {pct(pods, 0.99) * 1000:6.0f}ms")
    ratio = pct(pods, 0.5) / pct(raw, 0.5)
    print(f"ratio p50: {ratio:.2f}x  (target <= 1.5x: {'ok' if ratio <= 1.5 else 'MISSED'})")
    print(f"p99 {pct(pods, 0.99):.2f}s (target <= 2 s: {'ok' if pct(pods, 0.99) <= 2 else 'MISSED'})")
    print(f"pods observed Running: {len(pods)}/{args.pods}")


if __name__ == "__main__":
    main()
