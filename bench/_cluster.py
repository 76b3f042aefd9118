"""What the ``minik up`` benchmarks share: their command line (``--runs``, ``--timeout``) and root
check, and a cluster in a temporary state directory beside any other on this host (its own ports,
node name, CIDRs, CNI network and chain prefix: ``testkit.processes.minik_up_args``), started and
timed to its node Ready, then brought down and removed."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from cli.supervisor import tls_client
from testkit.processes import BIN, minik_up_args

MINIK = str(BIN / "minik")


def arguments(prog: str, starts: str) -> argparse.Namespace:
    """``python -m PROG [--runs N] [--timeout S]``; exits unless root (it ``starts`` things)."""
    p = argparse.ArgumentParser(prog=f"python -m {prog}")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=120)
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit(f"{prog} starts {starts}: run it as root")
    return args


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


class BenchCluster:
    """A cluster named ``NAME-TAG`` (chain prefix ``PREFIXTAG``) in a new temporary directory:
    state in ``state``, kubeconfig in ``work/kubeconfig``.  ``down()`` removes it all."""

    def __init__(self, name: str, prefix: str, pod_cidr: str, service_cidr: str) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.work = Path(tempfile.mkdtemp(prefix=f"minik-bench-{name}-"))
        self.node = f"{name}-{self.tag}"
        self.service_cidr = service_cidr
        self.up_args, self.api_port = minik_up_args(
            self.state, self.node, pod_cidr, service_cidr, f"{prefix}{self.tag.upper()}"
        )
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.kubeconfig = self.work / "kubeconfig"
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    @property
    def state(self) -> Path:
        return self.work / "state"

    def node_ready_since(self, node: str, since: float) -> bool:
        return node_ready_since(self.state, self.api_port, node, since)

    def start(self, timeout: float) -> tuple[subprocess.Popen[bytes], float, float]:
        """Launch ``minik up`` and wait until its node is Ready with a heartbeat from now: the
        running ``minik up``, when it was launched (``time.monotonic()``) and the seconds to Ready."""
        t0_wall, t0 = time.time(), time.monotonic()
        up = subprocess.Popen(
            [MINIK, "up", *self.up_args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        while not self.node_ready_since(self.node, t0_wall):
            if up.poll() not in (None, 0):
                raise RuntimeError(f"minik up failed:\n{up.stdout.read().decode() if up.stdout else ''}")
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("minik up: node not Ready in time")
            time.sleep(0.05)
        return up, t0, time.monotonic() - t0

    def minik(self, *args: str, timeout: float = 180) -> str:
        """``minik ARGS`` on this cluster; its output, or RuntimeError when it fails."""
        proc = subprocess.run([MINIK, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"minik {' '.join(args[:2])} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def down(self) -> float:
        """``minik down`` (its seconds), then the directory removed."""
        t = time.monotonic()
        subprocess.run(
            [MINIK, "down", "--state-dir", str(self.state)], env=self.env, capture_output=True, timeout=120
        )
        took = time.monotonic() - t
        shutil.rmtree(self.work, ignore_errors=True)
        return took
