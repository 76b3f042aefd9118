"""Benchmark: ``minik up`` to a Ready node, and to a first app running with DNS answering.

    .venv/bin/python -m bench.cluster_up [--runs 3]

Each run starts a cluster from an empty state directory with its own ports, node name, pod and
service CIDRs, CNI network (bridge, conflist, results cache) and iptables chain prefix (so it never touches a cluster already
running on the host), and measures from the moment ``minik up`` is launched:

* **Ready**: the Node reports Ready with a heartbeat from this run (seen by polling the API);
* **up returns**: ``minik up`` exits (every component healthy, the kubeconfig written);
* **app + DNS**: after ``minik up`` returns, a Deployment (one busybox pod, image present) and a
  Service are created; the time until the pod is Running *and* the cluster DNS answers the
  Service's name with its ClusterIP (queried from the host at the kube-dns ClusterIP, through the
  proxy's rule, as pods send their queries);
* then ``minik down`` (timed) and the state directory removed.

Prints the median of the runs beside the published time-to-k8s figures (k3d 32.5 s, kind 44.9 s,
minikube 61.5 s to app and DNS, on larger machines) and the targets (<= 10 s to Ready, <= 15 s to
app and DNS).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from cli.cluster import dns_query
from cli.supervisor import tls_client
from testkit.api import apps
from testkit.host import free_subnets
from testkit.images import ensure_busybox_image
from testkit.processes import BIN, minik_up_args

PUBLISHED = [("k3d", 32.5), ("kind", 44.9), ("minikube", 61.5)]
TARGET_READY, TARGET_APP = 10.0, 15.0


def node_ready_since(state: Path, api_port: int, node: str, since: float) -> bool:
    """Over TLS as the cluster's admin (the certificates appear once `minik up` made them)."""
    try:
        with tls_client({"api_port": api_port, "advertise_address": "127.0.0.1"}, state) as c:
            r = c.get(f"/api/v1/nodes/{node}")
    except (httpx.HTTPError, OSError):
        return False
    if r.status_code != 200:
        return False
    from datetime import datetime

    for c in (r.json().get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            beat = datetime.fromisoformat(c["lastHeartbeatTime"].replace("Z", "+00:00")).timestamp()
            return beat >= int(since)
    return False


def app_objects(image: str) -> list[tuple[str, dict[str, Any]]]:
    labels = {"app": "hello"}
    container = {
        "name": "hello",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sleep", "3600"],
    }
    deploy = apps("Deployment", "hello", {"containers": [container], "terminationGracePeriodSeconds": 1}, 1)
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "hello"},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    return [
        ("/apis/apps/v1/namespaces/default/deployments", deploy),
        ("/api/v1/namespaces/default/services", svc),
    ]


def one_run(image: str, timeout: float) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="minik-bench-"))
    node, pod_cidr = f"bench-{tag}", free_subnets(1, range(200, 208))[0]
    second, third = int(pod_cidr.split(".")[1]) - 200, pod_cidr.split(".")[2]
    service_cidr = f"10.{210 + second}.{third}.0/24"
    args, api_port = minik_up_args(work / "state", node, pod_cidr, service_cidr, f"MB{tag.upper()}")
    env = {**os.environ, "KUBECONFIG": str(work / "kubeconfig")}
    out: dict[str, float] = {}
    t0_wall, t0 = time.time(), time.monotonic()
    up = subprocess.Popen(
        [str(BIN / "minik"), "up", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = t0 + timeout
        while "ready" not in out:
            if node_ready_since(work / "state", api_port, node, t0_wall):
                out["ready"] = time.monotonic() - t0
            elif up.poll() is not None and up.returncode != 0:
                raise RuntimeError(f"minik up failed:\n{up.stdout.read().decode() if up.stdout else ''}")
            elif time.monotonic() > deadline:
                raise RuntimeError("node not Ready in time")
            else:
                time.sleep(0.05)
        output = up.communicate(timeout=timeout)[0].decode()
        if up.returncode != 0:
            raise RuntimeError(f"minik up failed:\n{output}")
        out["up"] = time.monotonic() - t0
        with tls_client({"api_port": api_port, "advertise_address": "127.0.0.1"}, work / "state", 5) as c:
            for path, body in app_objects(image):
                c.post(path, json=body).raise_for_status()
            dns_ip = str(ipaddress.ip_network(service_cidr)[10])  # the kube-dns Service's ClusterIP
            running = dns = False
            while not (running and dns):
                if time.monotonic() > deadline:
                    raise RuntimeError("app not Running with DNS in time")
                if not running:
                    pods = c.get("/api/v1/namespaces/default/pods", params={"labelSelector": "app=hello"})
                    running = any(
                        (p.get("status") or {}).get("phase") == "Running" for p in pods.json()["items"]
                    )
                if not dns:
                    try:
                        answer = dns_query(dns_ip, "hello.default.svc.cluster.local", timeout=0.5).split()
                        dns = answer[0] == "NOERROR" and len(answer) > 1
                    except OSError:
                        pass
                if not (running and dns):
                    time.sleep(0.05)
            out["app"] = time.monotonic() - t0
    finally:
        t1 = time.monotonic()
        subprocess.run(
            [str(BIN / "minik"), "down", "--state-dir", str(work / "state")],
            env=env,
            capture_output=True,
            timeout=120,
        )
        out["down"] = time.monotonic() - t1
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.cluster_up")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=120)
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.cluster_up starts a whole cluster: run it as root")
    image = ensure_busybox_image()
    runs = []
    for i in range(args.runs):
        r = one_run(image, args.timeout)
        print(
            f"run {i + 1}: node Ready {r['ready']:.1f}s, `minik up` returned {r['up']:.1f}s, "
            f"app Running + DNS {r['app']:.1f}s, `minik down` {r['down']:.1f}s",
            flush=True,
        )
        runs.append(r)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(f"\nminik, median of {len(runs)} runs on {os.cpu_count()} cores:")
    print(f"  to node Ready           {med('ready'):5.1f} s   (target <= {TARGET_READY:.0f} s)")
    print(f"  `minik up` returns      {med('up'):5.1f} s")
    print(f"  to app Running and DNS  {med('app'):5.1f} s   (target <= {TARGET_APP:.0f} s)")
    print(f"  `minik down`            {med('down'):5.1f} s")
    print("\npublished time-to-k8s, to app and DNS (larger machines):")
    for name, secs in PUBLISHED:
        print(f"  {name:9} {secs:5.1f} s   minik is {secs / med('app'):.1f}x faster")
    ok = med("ready") <= TARGET_READY and med("app") <= TARGET_APP
    print("\ntargets " + ("met" if ok else "NOT met"))


if __name__ == "__main__":
    main()
