"""What a test or benchmark takes from this host: free ports, free /24s, scratch directories, and
removing the Docker objects a node left behind."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import socket
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NODE_LABEL = "io.minik.node"


# Every port free_port() has handed out in this process: the kernel may give the same ephemeral
# port to two binds in a row once the first socket is closed, so two calls (etcd's client and peer
# ports, say) could otherwise return one port, and the second listener would fail to bind.
_handed_out: set[int] = set()


def port_free(port: int) -> bool:
    """Whether ``port`` can be bound on loopback now (and is a valid port)."""
    if not 0 < port < 65536:
        return False
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port free on loopback now, never one this process was given before."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def free_port_in(low: int, high: int, offsets: Iterable[int] = (0,)) -> int:
    """A random port P in ``low``..``high - 1`` such that every P + offset is free on loopback now
    and none was handed out before in this process; they all are handed out with it.  A range
    below the kernel's ephemeral one (32768-60999) cannot be taken by an outgoing connection
    before the caller binds it."""
    offsets = tuple(offsets)
    for _ in range(10 * (high - low) + 100):
        port = random.randrange(low, high)
        wanted = [port + o for o in offsets]
        if not any(p in _handed_out for p in wanted) and all(port_free(p) for p in wanted):
            _handed_out.update(wanted)
            return port
    raise RuntimeError(f"no free port in {low}-{high - 1}")


def free_udp_tcp_port() -> int:
    """A port free on loopback for TCP and on every address for UDP."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("0.0.0.0", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def used_networks() -> list[ipaddress.IPv4Network]:
    """IPv4 networks of Docker networks, routes and 10.x iptables rules on this host."""
    import docker

    used: list[ipaddress.IPv4Network] = []
    client = docker.from_env()
    try:
        for n in client.networks.list():
            for cfg in (n.attrs.get("IPAM") or {}).get("Config") or []:
                if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                    used.append(ipaddress.IPv4Network(cfg["Subnet"], strict=False))
    finally:
        client.close()
    used.extend(interface_networks())
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for line in routes.splitlines():
        first = line.split()[0] if line.split() else ""
        if "/" in first:
            used.append(ipaddress.IPv4Network(first, strict=False))
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    for word in rules.split():
        if word.startswith("10.") and "/" in word:
            try:
                used.append(ipaddress.IPv4Network(word, strict=False))
            except ValueError:
                pass
    return used


def interface_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of every address on this host's interfaces (``ip -4 -j addr``): a CNI
    bridge holds its pod network's gateway address without being a Docker network."""
    out = subprocess.run(["ip", "-4", "-j", "addr"], capture_output=True, text=True).stdout
    nets: list[ipaddress.IPv4Network] = []
    try:
        links = json.loads(out or "[]")
    except ValueError:
        return nets
    for link in links:
        for addr in link.get("addr_info") or []:
            if addr.get("family", "inet") == "inet" and addr.get("local"):
                try:
                    nets.append(
                        ipaddress.IPv4Network(f"{addr['local']}/{addr.get('prefixlen', 32)}", strict=False)
                    )
                except ValueError:
                    continue
    return nets


def free_subnets(n: int, second: range = range(200, 251)) -> list[str]:
    """``n`` /24s ``10.S.x.0`` (S in ``second``) that no Docker network, interface address, route
    or iptables rule uses."""
    used = used_networks()
    out: list[str] = []
    for _ in range(500):
        cand = ipaddress.IPv4Network(f"10.{random.choice(second)}.{random.randint(0, 255)}.0/24")
        if any(cand.overlaps(u) for u in used):
            continue
        used.append(cand)
        out.append(str(cand))
        if len(out) == n:
            return out
    raise RuntimeError("no free /24 for the test")


def remove_node_objects(node: str, network: str) -> None:
    """Every container and volume labelled with ``node``, and the Docker network ``network``."""
    import docker

    client = docker.from_env()
    try:
        for c in client.containers.list(all=True, filters={"label": f"{NODE_LABEL}={node}"}):
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass
        for v in client.volumes.list(filters={"label": f"{NODE_LABEL}={node}"}):
            try:
                v.remove(force=True)
            except docker.errors.APIError:
                pass
        try:
            client.networks.get(network).remove()
        except docker.errors.NotFound:
            pass
    finally:
        client.close()


def pod_container(node: str, pod: str, container: str = "c") -> Any:
    """The running Docker container of ``container`` in pod ``pod`` on ``node``, or None."""
    import docker

    client = docker.from_env()
    try:
        found = client.containers.list(
            filters={
                "label": [
                    f"{NODE_LABEL}={node}",
                    f"io.kubernetes.pod.name={pod}",
                    f"io.kubernetes.container.name={container}",
                ]
            }
        )
        return found[0] if found else None
    finally:
        client.close()


def processes_mentioning(*needles: str) -> list[str]:
    """``"PID: command line"`` of every process (but this one) whose command line contains one of
    ``needles``: what a test checks is gone after a clean-up."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or proc.name == str(os.getpid()):
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmd for n in needles):
            found.append(f"{proc.name}: {cmd}")
    return found


@contextmanager
def scratch_dir(tmp_path_factory: Any, name: str) -> Iterator[Path]:
    """A new directory from pytest's ``tmp_path_factory`` (``mktemp(name)``), removed at the end,
    also on failure: what it holds (etcd's data) is not left for pytest's retention of old runs."""
    path = Path(tmp_path_factory.mktemp(name))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
