"""Benchmark: a 100-replica Deployment on hollow nodes — apply to all available, then a rolling update.

    .venv/bin/python -m bench.deployment [--replicas 100] [--nodes 20]

Starts a fresh etcd, API server, hollow nodes, ``minik-scheduler`` and ``minik-controller-manager``;
creates the Deployment (RollingUpdate, default 25% surge / 25% unavailable) and times it until
``availableReplicas == replicas``; then changes the template and times the rollout until every
replica is updated and available and no old pod is left. Prints both times.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.scheduler import wait_nodes
from testkit.api import apps, containers
from testkit.processes import APIServerProcess, EtcdProcess, component, hollow_nodes
from testkit.wait import wait_for


def deployment(replicas: int, version: str) -> dict[str, Any]:
    requests = {"requests": {"cpu": "50m", "memory": "32Mi"}}
    d = apps("Deployment", "bench", containers("busybox", "c", resources=requests), replicas)
    d["spec"]["template"]["metadata"]["labels"]["version"] = version
    return d


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=100)
    p.add_argument("--nodes", type=int, default=20)
    args = p.parse_args()
    n = args.replicas
    with EtcdProcess() as etcd, APIServerProcess(etcd.url) as api:
        procs = [hollow_nodes(api, args.nodes, "bench-").start()]
        try:
            wait_nodes(api, args.nodes)
            procs += [component(name, api).start() for name in ("scheduler", "controller-manager")]
            with api.http() as http:
                path = "/apis/apps/v1/namespaces/default/deployments"
                wait_for(
                    lambda: http.get("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200,
                    60,
                    "the default service account",
                )

                def status() -> dict[str, Any]:
                    d = http.get(f"{path}/bench").json()
                    return {**d.get("status", {}), "generation": d["metadata"]["generation"]}

                t0 = time.perf_counter()
                r = http.post(path, json=deployment(n, "v1"))
                assert r.status_code == 201, r.text
                wait_for(lambda: status().get("availableReplicas") == n, 600, f"{n} available replicas")
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

                wait_for(rolled, 600, "the rollout")
                rolled_out = time.perf_counter() - t1
            print(f"deployment: {n} replicas on {args.nodes} hollow nodes")
            print(f"  create -> {n}/{n} available   {created:6.1f} s")
            print(f"  rolling update to completion {rolled_out:6.1f} s   (maxSurge 25%, maxUnavailable 25%)")
        finally:
            for proc in procs:
                proc.cleanup()


if __name__ == "__main__":
    main()
