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

import ipaddress
import os
import statistics
import time
from typing import Any

from bench._cluster import BenchCluster, arguments
from cli.cluster import dns_query
from cli.supervisor import tls_client
from testkit.api import apps
from testkit.host import free_subnets
from testkit.images import ensure_busybox_image

PUBLISHED = [("k3d", 32.5), ("kind", 44.9), ("minikube", 61.5)]
TARGET_READY, TARGET_APP = 10.0, 15.0


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
    pod_cidr = free_subnets(1, range(200, 208))[0]
    second, third = int(pod_cidr.split(".")[1]) - 200, pod_cidr.split(".")[2]
    cluster = BenchCluster("bench", "MB", pod_cidr, f"10.{210 + second}.{third}.0/24")
    out: dict[str, float] = {}
    try:
        up, t0, out["ready"] = cluster.start(timeout)
        deadline = t0 + timeout
        output = up.communicate(timeout=timeout)[0].decode()
        if up.returncode != 0:
            raise RuntimeError(f"minik up failed:\n{output}")
        out["up"] = time.monotonic() - t0
        with tls_client(
            {"api_port": cluster.api_port, "advertise_address": "127.0.0.1"}, cluster.state, 5
        ) as c:
            for path, body in app_objects(image):
                c.post(path, json=body).raise_for_status()
            dns_ip = str(ipaddress.ip_network(cluster.service_cidr)[10])  # the kube-dns Service's ClusterIP
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
        out["down"] = cluster.down()
    return out


def main() -> None:
    args = arguments("bench.cluster_up", "a whole cluster")
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
