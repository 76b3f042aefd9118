"""Benchmark: a 100-replica Deployment on hollow nodes — apply to all available, then a rolling update.

    .venv/bin/python -m bench.deployment [--replicas 100] [--nodes 20]

Starts a fresh etcd, API server, hollow nodes, ``minik-scheduler`` and ``minik-controller-manager``;
creates the Deployment (RollingUpdate, default 25% surge / 25% unavailable) and times it until
``availableReplicas == replicas``; then changes the template and times the rollout until every
replica is updated and available and no old pod is left. Prints both times.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from apiserver.testing import APIServerProcess, EtcdProcess
from bench.scheduler import wait_nodes

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def deployment(replicas: int, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {
                "metadata": {"labels": {"app": "bench", "version": version}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "busybox",
                            "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                        }
                    ]
                },
            },
        },
    }


def wait(check: Any, timeout: float = 600) -> float:
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.perf_counter() - t0
        time.sleep(0.1)
    raise RuntimeError("timed out")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=100)
    p.add_argument("--nodes", type=int, default=20)
    args = p.parse_args()
    n = args.replicas
    etcd = EtcdProcess()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        etcd.start()
        api = APIServerProcess(etcd.url)
        api.start()
        try:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "kubelet.hollow",
                        "--api-server",
                        api.url,
                        "--count",
                        str(args.nodes),
                        "--prefix",
                        "bench-",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd=ROOT,
                )
            )
            wait_nodes(api.url, args.nodes)
            for cmd in ("minik-scheduler", "minik-controller-manager"):
                procs.append(
                    subprocess.Popen(
                        [str(BIN / cmd), "--api-server", api.url],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            with httpx.Client(base_url=api.url, timeout=30) as http:
                path = "/apis/apps/v1/namespaces/default/deployments"
                wait(
                    lambda: http.get("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200,
                    60,
                )

                def status() -> dict[str, Any]:
                    d = http.get(f"{path}/bench").json()
                    return {**d.get("status", {}), "generation": d["metadata"]["generation"]}

                t0 = time.perf_counter()
                r = http.post(path, json=deployment(n, "v1"))
                assert r.status_code == 201, r.text
                wait(lambda: status().get("availableReplicas") == n)
                created = time.perf_counter() - t0

                t1 = time.perf_counter()
                r = http.patch(
                    f"{path}/bench",
                    json={"spec": {"template": {"metadata": {"labels": {"app": "bench", "version": "v2"}}}}},
                    headers={"Content-Type": "application/merge-patch+json"},
                )
                assert r.status_code == 200, r.text

                def rolled() -> bool:
                    st = status()
                    return (
                        st.get("observedGeneration") == st["generation"]
                        and st.get("updatedReplicas") == n
                        and st.get("availableReplicas") == n
                        and st.get("replicas") == n
                    )

                wait(rolled)
                rolled_out = time.perf_counter() - t1
            print(f"deployment: {n} replicas on {args.nodes} hollow nodes")
            print(f"  create -> {n}/{n} available   {created:6.1f} s")
            print(f"  rolling update to completion {rolled_out:6.1f} s   (maxSurge 25%, maxUnavailable 25%)")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            api.cleanup()
    finally:
        etcd.cleanup()


if __name__ == "__main__":
    main()
