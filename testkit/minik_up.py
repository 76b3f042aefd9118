"""A ``minik up`` cluster in a temporary state directory, beside any other cluster on this host.

Used by the tests that drive the ``minik`` CLI end to end::

    from testkit.minik_up import minik_up_cluster
    with minik_up_cluster(tmp_path_factory.mktemp("minik-x"), "xc", "XC") as c:
        c.minik("get", "nodes")

The cluster has its own ports, node name ``NAME-TAG``, pod (cluster) and service CIDRs, CNI network
``minik-NODE`` (bridge, conflist and results cache in its state directory) and iptables chain prefix
``PREFIXTAG`` (``testkit.processes.minik_up_args``).  Whatever happens, the context removes what
the cluster made: ``minik down``, then the proxy's chains, the node's containers, volumes and Docker
network, the CNI network and any process still mentioning the state directory (``remove_node``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.host import free_port_in, free_subnets, processes_mentioning, remove_node_objects, used_networks
from testkit.processes import minik_up_args

BIN = Path(sys.executable).parent
MINIK = str(BIN / "minik")


def run_minik(
    env: dict[str, str], *args: str, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``minik ARGS`` with ``env``; with ``check`` a non-zero exit raises with its output."""
    proc = subprocess.run([MINIK, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"minik {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def remove_node(state: Path, node: str, network: str, prefix: str, env: dict[str, str] | None = None) -> None:
    """What ``minik down`` of a node's state directory should remove, removed again whatever
    happened (idempotent): ``minik down``, the proxy's chains of ``prefix``, the node's containers,
    volumes and Docker network, the CNI network (in ``state/cni``) and processes still running."""
    from kubelet import cni

    subprocess.run(
        [MINIK, "down", "--state-dir", str(state)],
        env=env or dict(os.environ),
        capture_output=True,
        timeout=180,
    )
    subprocess.run(
        [str(BIN / "minik-proxy"), "--cleanup", "--iptables-chain-prefix", prefix],
        capture_output=True,
        timeout=60,
    )
    remove_node_objects(node, network)
    cni.cleanup_network(
        str(state / "cni" / "net.d"), network, cni.bridge_name(network), str(state / "cni" / "cache")
    )
    for line in processes_mentioning(str(state), f"--node-name {node} "):
        try:
            os.kill(int(line.split(":")[0]), 9)
        except OSError:
            pass


@dataclass
class MinikUpCluster:
    """A cluster's names and flags; ``up()`` starts it, ``minik()`` runs the CLI on it."""

    work: Path
    node: str
    prefix: str
    pod_cidr: str
    service_cidr: str
    up_args: list[str]
    api_port: int

    @property
    def state(self) -> Path:
        return self.work / "state"

    @property
    def kubeconfig(self) -> Path:
        return self.work / "kubeconfig"

    @property
    def network(self) -> str:
        return f"minik-{self.node}"

    @property
    def bridge(self) -> str:
        from kubelet import cni

        return cni.bridge_name(self.network)

    @property
    def cni_dirs(self) -> tuple[str, str]:
        """The conflist and results-cache directories (minik_up_args puts them in the state)."""
        return str(self.state / "cni" / "net.d"), str(self.state / "cni" / "cache")

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "MINIK_STATE_DIR": str(self.state)}

    def minik(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return run_minik(self.env, *args, check=check, timeout=timeout)

    def up(self, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.minik("up", *self.up_args, timeout=timeout)

    def get(self, *args: str) -> Any:
        """``minik get ARGS -o json``, parsed."""
        return json.loads(self.minik("get", *args, "-o", "json").stdout)

    def status(self) -> dict[str, Any]:
        """The supervisor's ``status.json``."""
        data: dict[str, Any] = json.loads((self.state / "status.json").read_text())
        return data

    def join_token(self, *extra: str) -> tuple[str, str]:
        """(token, CA pin) from ``minik token create --print-join-command EXTRA``."""
        line = self.minik("token", "create", "--print-join-command", *extra).stdout.split()
        return line[line.index("--token") + 1], line[line.index("--discovery-token-ca-cert-hash") + 1]

    def audit_users(self) -> list[tuple[str, str]]:
        """(user, requestURI) of every request in the API server's audit log."""
        out = []
        for line in (self.state / "logs" / "audit.log").read_text().splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            out.append((str((ev.get("user") or {}).get("username")), str(ev.get("requestURI"))))
        return out

    def cleanup(self) -> None:
        remove_node(self.state, self.node, self.network, self.prefix, self.env)


def free_slash23(subnets: range = range(220, 228)) -> str:
    """A free /23 ``10.S.x.0/23`` (S in ``subnets``) for a cluster CIDR with room for two nodes'
    /24 pod CIDRs (a joined node's too)."""
    used = used_networks()
    for _ in range(200):
        net = ipaddress.ip_network(free_subnets(1, subnets)[0]).supernet(new_prefix=23)
        if not any(net.overlaps(u) for u in used):
            return str(net)
    raise RuntimeError("no free /23 for the test")


def free_service_cidr() -> str:
    """A /24 in 10.230.0.0-10.237.255.0 for a test cluster's Services."""
    return f"10.{230 + random.randint(0, 7)}.{random.randint(0, 255)}.0/24"


@contextmanager
def minik_up_cluster(
    work: Path,
    name: str,
    prefix: str,
    pod_cidr: str | None = None,
    subnets: range = range(220, 228),
    up: bool = True,
) -> Iterator[MinikUpCluster]:
    """A cluster with its state in ``work/state`` and kubeconfig ``work/kubeconfig``: node
    ``NAME-TAG``, chain prefix ``PREFIXTAG`` (``prefix``: a few capitals), cluster CIDR ``pod_cidr``
    (default a free /24 ``10.S.x.0``, S in ``subnets``), a free service /24.  Started (``minik up``)
    unless ``up`` is false; removed at the end, ``work`` too, also when starting fails."""
    tag = uuid.uuid4().hex[:6]
    node, chains = f"{name}-{tag}", f"{prefix}{tag.upper()}"
    pod_cidr = pod_cidr or free_subnets(1, subnets)[0]
    service_cidr = free_service_cidr()
    args, api_port = minik_up_args(work / "state", node, pod_cidr, service_cidr, chains)
    c = MinikUpCluster(work, node, chains, pod_cidr, service_cidr, args, api_port)
    try:
        if up:
            c.up()
        yield c
    finally:
        c.cleanup()
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def joinable_cluster(work: Path, name: str, prefix: str) -> Iterator[MinikUpCluster]:
    """A started :func:`minik_up_cluster` with a free /23 cluster CIDR (room for a joined node's
    /24) and the busybox image, after the prerequisites of a join (root, Docker, iptables)."""
    from testkit import prereq
    from testkit.images import ensure_busybox_image

    prereq.require_node_host()
    ensure_busybox_image()
    with minik_up_cluster(work, name, prefix, pod_cidr=free_slash23()) as c:
        yield c


def free_kubelet_port() -> int:
    """A random port in 20000-31999 free on loopback, the one below it too."""
    return free_port_in(20000, 32000, offsets=(-1, 0))


@dataclass
class Worker:
    """A second node joined on this host beside a cluster: its own state directory, node name,
    CNI network, iptables chain prefix and kubelet port."""

    state: Path
    node: str
    network: str
    prefix: str
    kubelet_port: int

    def join_args(self) -> list[str]:
        """The ``minik join`` flags that keep the node apart from the cluster's."""
        return [
            *("--state-dir", str(self.state), "--node-name", self.node),
            *("--kubelet-port", str(self.kubelet_port), "--network-name", self.network),
            *("--iptables-chain-prefix", self.prefix),
            *("--cni-conf-dir", str(self.state / "cni" / "net.d")),
            *("--cni-cache-dir", str(self.state / "cni" / "cache")),
        ]


@contextmanager
def worker_beside(cluster: MinikUpCluster, work: Path, name: str) -> Iterator[Worker]:
    """A :class:`Worker` with state in ``work/worker``, node ``NAME-TAG``, network ``minik-NAME-TAG``
    and chain prefix ``NAMETAG`` in capitals; whatever happens, afterwards ``minik leave --force``,
    :func:`remove_node` and the Node deleted from ``cluster``."""
    tag = uuid.uuid4().hex[:6]
    w = Worker(
        work / "worker",
        f"{name}-{tag}",
        f"minik-{name}-{tag}",
        f"{name.upper()}{tag.upper()}",
        free_kubelet_port(),
    )
    try:
        yield w
    finally:
        cluster.minik("leave", "--force", "--state-dir", str(w.state), check=False)
        remove_node(w.state, w.node, w.network, w.prefix, cluster.env)
        cluster.minik("delete", "node", w.node, "--ignore-not-found", check=False)
