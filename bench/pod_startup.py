"""Benchmark: pod startup through the kubelet beside ``docker run -d`` of the same image.

    .venv/bin/python -m bench.pod_startup [--pods 30]

Starts a fresh etcd, API server and one ``minik-kubelet`` (its pod network through the CNI
plugins: bridge + host-local, portmap, firewall, with its own bridge, conflist and results cache),
builds the local busybox test image if needed, then in one run:

* ``docker run -d IMAGE sleep 3600`` N times (the issue's reference, on Docker's default bridge);
* ``docker run -d --network none IMAGE sleep 3600`` N times (a second reference: how a pod's
  sandbox starts before the kubelet runs the CNI plugins in its network namespace);
* N pods with ``spec.nodeName`` preassigned and the image present, created one after another,
  each timed from its create request to the moment a watch sees it ``Running``.

The three are interleaved (one of each per round, the order rotating, a short pause between
two), so that all see the same load when the machine is shared.  Prints p50/p99 of each and the
ratios; the headline is the one the issue defines (pods against plain ``docker run -d``).
Targets from the issue: p50 <= 1.3 x raw, p99 <= 1 s.  ``--kubelet-log FILE`` keeps the
kubelet's log, whose ``synced in`` lines split each start into sandbox create/start, containers
and status write.
Everything it starts (processes, containers, the CNI network) is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import threading
import time
import uuid

import httpx

from testkit.images import BUSYBOX_IMAGE as IMAGE
from testkit.images import ensure_busybox_image
from testkit.processes import APIServerProcess, EtcdProcess, KubeletProcess, root_ca_publisher

SETTLE = 0.2  # seconds between two measurements


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def docker_run(label: str, network: str | None = None) -> float:
    """One ``docker run -d IMAGE sleep 3600`` (on ``network`` if given): seconds."""
    net = ["--network", network] if network else []
    t0 = time.perf_counter()
    subprocess.run(
        ["docker", "run", "-d", "--label", label, *net, IMAGE, "sleep", "3600"],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


class PodWatch:
    """A watch on the pods that records when each is first seen ``Running``."""

    def __init__(self, api: APIServerProcess) -> None:
        self.api = api
        self.running: dict[str, float] = {}
        self.cond = threading.Condition()
        with api.http() as c:
            self.rv = c.get("/api/v1/namespaces/default/pods").json()["metadata"]["resourceVersion"]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        params = {"watch": "1", "resourceVersion": self.rv, "timeoutSeconds": "600"}
        url = "/api/v1/namespaces/default/pods"
        try:
            with self.api.http(timeout=None) as c, c.stream("GET", url, params=params) as r:
                for line in r.iter_lines():
                    if not line:
                        continue
                    obj = json.loads(line)["object"]
                    name = obj["metadata"]["name"]
                    if (obj.get("status") or {}).get("phase") == "Running" and name not in self.running:
                        with self.cond:
                            self.running[name] = time.perf_counter()
                            self.cond.notify_all()
        except httpx.HTTPError:
            pass  # the API server stopped at the end of the run

    def wait(self, name: str, timeout: float) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: name in self.running, timeout)
            return self.running.get(name)


def pod_run(c: httpx.Client, watch: PodWatch, node: str, name: str) -> float | None:
    """Create one pod (node preassigned, image present) and wait until the watch sees it Running."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "main", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}
            ],
        },
    }
    t0 = time.perf_counter()
    r = c.post("/api/v1/namespaces/default/pods", json=pod)
    assert r.status_code == 201, r.text
    seen = watch.wait(name, 60)
    return None if seen is None else seen - t0


def measure(api: APIServerProcess, node: str, n: int, label: str) -> dict[str, list[float]]:
    """``n`` rounds of: one ``docker run -d``, one ``docker run -d --network none``, one pod; interleaved (the order rotating) so the three see the same load on a shared machine, each
    started once the previous one is done and a short pause has let its aftermath settle."""
    out: dict[str, list[float]] = {"raw": [], "raw_net": [], "pod": []}
    watch = PodWatch(api)
    time.sleep(0.5)
    with api.http() as c:
        for i in range(n):
            steps = ["raw", "raw_net", "pod"]
            steps = steps[i % 3 :] + steps[: i % 3]
            for step in steps:
                if step == "raw":
                    out["raw"].append(docker_run(label))
                elif step == "raw_net":
                    out["raw_net"].append(docker_run(label, "none"))
                else:
                    took = pod_run(c, watch, node, f"start-{i}")
                    if took is not None:
                        out["pod"].append(took)
                time.sleep(SETTLE)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, default=30)
    p.add_argument("--kubelet-log", help="copy the kubelet's log here (to see where the time goes)")
    args = p.parse_args()
    ensure_busybox_image(IMAGE)
    tag = uuid.uuid4().hex[:8]
    label = f"io.minik.bench={tag}"
    with EtcdProcess() as etcd, APIServerProcess(etcd.url) as server:
        kubelet = KubeletProcess(server, node=f"bench-{tag}")
        # every pod mounts the namespace's kube-root-ca.crt (its service-account volume)
        publisher = root_ca_publisher(server)
        try:
            publisher.start()
            kubelet.start()
            times = measure(server, kubelet.node, args.pods, label)
        finally:
            kubelet.stop(timeout=20)
            publisher.cleanup()
            if args.kubelet_log:
                shutil.copy(kubelet.log_path, args.kubelet_log)
            ids = subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True
            )
            if ids.stdout.split():
                subprocess.run(["docker", "rm", "-f", *ids.stdout.split()], capture_output=True)
            kubelet.cleanup()
    raw, raw_net, pods = times["raw"], times["raw_net"], times["pod"]
    print(f"pod startup, {args.pods} pods one after another (image present, node preassigned)")
    print(f"{'':36} {'p50':>8} {'p99':>8}")
    for what, samples in (
        ("docker run -d", raw),
        ("docker run -d --network none", raw_net),
        ("minik create -> Running", pods),
    ):
        print(f"{what:36} {pct(samples, 0.5) * 1000:6.0f}ms {pct(samples, 0.99) * 1000:6.0f}ms")
    ratio = pct(pods, 0.5) / pct(raw, 0.5)
    print(f"ratio p50: {ratio:.2f}x  (target <= 1.3x: {'ok' if ratio <= 1.3 else 'MISSED'})")
    print(f"ratio p50 against docker run -d --network none: {pct(pods, 0.5) / pct(raw_net, 0.5):.2f}x")
    print(f"p99 {pct(pods, 0.99):.2f}s (target <= 1 s: {'ok' if pct(pods, 0.99) <= 1 else 'MISSED'})")
    print(f"pods observed Running: {len(pods)}/{args.pods}")


if __name__ == "__main__":
    main()
