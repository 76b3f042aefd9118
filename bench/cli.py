"""Benchmark: ``minik``'s start-up beside kubectl's, for the same commands in one run.

    .venv/bin/python -m bench.cli [--runs 20] [--warmups 2]

Starts a fresh etcd and a ``minik-apiserver`` (loopback only), writes a kubeconfig for it, creates a
few pod objects (nothing runs them), then times each command ``--runs`` times after ``--warmups``
untimed runs, alternating minik and kubectl so background load falls on both alike:

* ``minik version --client``  vs ``kubectl version --client``
* ``minik get pods``          vs ``kubectl get pods``
* ``minik apply -f FILE``     vs ``kubectl apply -f FILE`` (the same manifest, each tool in a
  namespace of its own, so each re-applies its own objects)

Each time is the wall time of one ``subprocess.run`` (a process started, run to its exit), read
with ``time.perf_counter``; printed as median and p90 in ms, with the ratio minik/kubectl and
whether the issue's targets hold (median ``minik version --client`` <= 150 ms, ``minik get pods``
<= 300 ms).  The children run without ``PYTHONDONTWRITEBYTECODE``, so the warm-ups leave compiled
bytecode as an installed package has.  kubectl's discovery cache goes to a temporary HOME.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version as dist_version
from pathlib import Path

from testkit.processes import APIServerProcess, EtcdProcess

TARGETS_MS = {"version --client": 150.0, "get pods": 300.0}
PODS = 5

MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: bench-settings
  labels: {app: bench}
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bench-web
  labels: {app: bench}
spec:
  replicas: 0
  selector:
    matchLabels: {app: bench}
  template:
    metadata:
      labels: {app: bench}
    spec:
      containers:
      - name: web
        image: busybox:latest
        command: [sleep, "3600"]
"""


def find_kubectl() -> str:
    found = shutil.which("kubectl") or (Path(sys.executable).parent / "kubectl").as_posix()
    if not Path(found).exists():
        sys.exit("bench.cli: kubectl is needed beside minik (on PATH or in the venv)")
    return found


def pod(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:latest", "command": ["sleep", "3600"]}]},
    }


def run_once(argv: list[str], env: dict[str, str]) -> float:
    """Wall milliseconds of one run of ``argv``; a failing command ends the benchmark."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        sys.exit(f"bench.cli: {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return elapsed


def p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmups", type=int, default=2)
    args = parser.parse_args()

    minik = str(Path(sys.executable).parent / "minik")
    kubectl = find_kubectl()
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="minik-bench-cli-") as tmp,
        EtcdProcess() as etcd,
        APIServerProcess(etcd.url) as apiserver,
    ):
        home = Path(tmp)
        kubeconfig = Path(shutil.copy(apiserver.kubeconfig, home / "kubeconfig"))
        manifest = home / "app.yaml"
        manifest.write_text(MANIFEST)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update({"KUBECONFIG": str(kubeconfig), "HOME": str(home)})
        with apiserver.http() as api:
            for i in range(PODS):
                api.post("/api/v1/namespaces/default/pods", json=pod(f"bench-{i}")).raise_for_status()
            for ns in ("bench-minik", "bench-kubectl"):
                body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                api.post("/api/v1/namespaces", json=body).raise_for_status()

        cases = [
            ("version --client", [minik, "version", "--client"], [kubectl, "version", "--client"]),
            ("get pods", [minik, "get", "pods"], [kubectl, "get", "pods"]),
            (
                "apply -f FILE",
                [minik, "apply", "-f", str(manifest), "-n", "bench-minik"],
                [kubectl, "apply", "-f", str(manifest), "-n", "bench-kubectl"],
            ),
        ]
        print(f"bench.cli: {args.runs} runs after {args.warmups} warm-ups, wall ms of one process each")
        print(
            f"  minik {dist_version('minik')} (python {sys.version.split()[0]}, typer {dist_version('typer')}),"
            f" kubectl {kubectl}, load average {os.getloadavg()[0]:.2f}"
        )
        print(
            f"{'command':18} {'minik med':>10} {'p90':>7} {'kubectl med':>12} {'p90':>7} {'ratio':>6}  target"
        )
        met = True
        for name, mine, theirs in cases:
            for _ in range(args.warmups):
                run_once(mine, env)
                run_once(theirs, env)
            ours: list[float] = []
            kubes: list[float] = []
            for _ in range(args.runs):
                ours.append(run_once(mine, env))
                kubes.append(run_once(theirs, env))
            med, kmed = statistics.median(ours), statistics.median(kubes)
            target = TARGETS_MS.get(name)
            verdict = "-"
            if target is not None:
                verdict = f"<= {target:.0f} ms: {'met' if med <= target else 'NOT met'}"
                met = met and med <= target
            print(
                f"{name:18} {med:10.1f} {p90(ours):7.1f} {kmed:12.1f} {p90(kubes):7.1f} {med / kmed:6.2f}  {verdict}"
            )
        print(
            f"targets {'met' if met else 'NOT met'}; load average {os.getloadavg()[0]:.2f};"
            f" {time.monotonic() - started:.0f} s in all"
        )


if __name__ == "__main__":
    main()
