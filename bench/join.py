"""Benchmark: ``minik join`` to a Ready node, beside ``minik up``'s own node Ready and the raw CSR
round trip, measured in one run.

    .venv/bin/python -m bench.join [--runs 3]

Starts one cluster with ``minik up`` (own ports, a /23 cluster CIDR, own CNI network and chain
prefix) and times its node to Ready.  Then, per run, on this host: a fresh bootstrap token, and

* **CSR round trip**: :func:`cli.join.bootstrap_credentials` alone (a key, the CSR posted with
  the token, approval and signing by the controller manager, the certificate back);
* **join to Ready**: ``minik join`` launched (discovery, the CSR, the supervisor starting the
  kubelet and proxy) until the API shows the new Node Ready with a heartbeat from this run;

then ``minik leave``.  Prints the medians, the ratio of join to ``minik up``'s node Ready, and
the target (join to Ready <= 10 s).  Everything is removed at the end, also on failure.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import time
from pathlib import Path

from bench._cluster import MINIK, BenchCluster, arguments
from cli.join import bootstrap_credentials
from testkit.images import ensure_busybox_image
from testkit.minik_up import free_kubelet_port, free_slash23

TARGET = 10.0


def main() -> None:
    args = arguments("bench.join", "a cluster and nodes")
    ensure_busybox_image()
    service_cidr = f"10.{210 + random.randint(0, 7)}.{random.randint(0, 255)}.0/24"
    cluster = BenchCluster("bj", "BJ", free_slash23(range(200, 208)), service_cidr)
    tag, work = cluster.tag, cluster.work
    workers: list[Path] = []
    results: list[dict[str, float]] = []
    try:
        up, _, up_ready = cluster.start(args.timeout)
        up.communicate(timeout=args.timeout)
        print(f"minik up: node Ready {up_ready:.1f}s", flush=True)
        ca = (cluster.state / "pki" / "ca.crt").read_text()
        for i in range(args.runs):
            line = cluster.minik("token", "create", "--print-join-command").split()
            token, pin = (
                line[line.index("--token") + 1],
                line[line.index("--discovery-token-ca-cert-hash") + 1],
            )
            t = time.monotonic()
            bootstrap_credentials(cluster.server, ca, token, f"bj-csr-{tag}-{i}", work / f"csr-{i}")
            csr = time.monotonic() - t
            wstate = work / f"worker-{i}"
            workers.append(wstate)
            wnode = f"bjw-{tag}-{i}"
            join = [
                *(MINIK, "join", cluster.server, "--token", token, "--discovery-token-ca-cert-hash", pin),
                *("--state-dir", str(wstate), "--node-name", wnode),
                *("--kubelet-port", str(free_kubelet_port())),
                *("--network-name", f"minik-{wnode}", "--iptables-chain-prefix", f"BW{tag.upper()}{i}"),
                *(
                    "--cni-conf-dir",
                    str(wstate / "cni" / "net.d"),
                    "--cni-cache-dir",
                    str(wstate / "cni" / "cache"),
                ),
                "--no-wait",
            ]
            t0_wall, t = time.time(), time.monotonic()
            jp = subprocess.Popen(join, env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not cluster.node_ready_since(wnode, t0_wall):
                if jp.poll() not in (None, 0) or time.monotonic() - t > args.timeout:
                    raise RuntimeError(f"minik join: node not Ready (logs in {wstate}/logs)")
                time.sleep(0.05)
            ready = time.monotonic() - t
            jp.wait(30)
            print(f"run {i + 1}: CSR round trip {csr:.2f}s, join to Ready {ready:.1f}s", flush=True)
            results.append({"csr": csr, "join": ready})
            cluster.minik("leave", "--state-dir", str(wstate), "--kubeconfig", str(cluster.kubeconfig))
    finally:
        for wstate in workers:
            subprocess.run(
                [MINIK, "leave", "--force", "--state-dir", str(wstate)], env=cluster.env, capture_output=True
            )
        cluster.down()
    if not results:
        return
    csr = statistics.median(r["csr"] for r in results)
    to_ready = statistics.median(r["join"] for r in results)
    print(f"\nmedian of {len(results)} runs on {os.cpu_count()} cores (one cluster, nodes on this host):")
    print(f"  CSR round trip (token -> signed certificate)  {csr:5.2f} s")
    print(f"  minik join to node Ready                      {to_ready:5.1f} s   (target <= {TARGET:.0f} s)")
    print(f"  minik up to its own node Ready                {up_ready:5.1f} s")
    print(f"  join / up's node Ready                        {to_ready / up_ready:5.2f}")
    print("target " + ("met" if to_ready <= TARGET else "NOT met"))


if __name__ == "__main__":
    main()
