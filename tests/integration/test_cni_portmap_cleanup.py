"""The portmap plugin's shared nat chains (CNI-HOSTPORT-DNAT/-MASQ/-SETMARK and the jumps to them),
which the plugin never deletes, are removed by ``kubelet.cni.remove_unused_portmap_chains`` once no
pod's CNI-DN-… chain is left, and kept while one is, also when a pod's portmap ADD comes between the
clean-up's dump of the nat table and its commit.

The real portmap plugin (/usr/lib/cni) and the real iptables run in a network namespace of the
test's own, as the host's, so that other pods on this host play no part; the namespaces (and their
iptables tables) are deleted at the end, also on failure.  Needs root and iptables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelet.cni import PORTMAP_CHAINS, remove_unused_portmap_chains
from testkit import prereq

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = "/usr/lib/cni"


@pytest.fixture()
def namespaces() -> Iterator[tuple[str, str]]:
    """(the "host" namespace, a pod's namespace)."""
    prereq.require_root()
    prereq.require_iptables()
    prereq.require(
        os.path.exists(f"{PLUGINS}/portmap"),
        "the CNI portmap plugin",
        "apt-get install containernetworking-plugins",
    )
    tag = uuid.uuid4().hex[:8]
    host, pod = f"mkpm-h-{tag}", f"mkpm-p-{tag}"
    made = []
    try:
        for ns in (host, pod):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(ns)
        yield host, pod
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def portmap(command: str, host: str, pod: str, container_id: str, host_port: int, ip: str) -> None:
    conf = {
        "cniVersion": "0.4.0",
        "name": "mkpm",
        "type": "portmap",
        "capabilities": {"portMappings": True},
        "runtimeConfig": {"portMappings": [{"hostPort": host_port, "containerPort": 80, "protocol": "tcp"}]},
        "prevResult": {
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "sandbox": f"/var/run/netns/{pod}"}],
            "ips": [{"version": "4", "address": f"{ip}/24", "interface": 0}],
        },
    }
    env = {
        **os.environ,
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": f"/var/run/netns/{pod}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": PLUGINS,
    }
    done = subprocess.run(
        ["ip", "netns", "exec", host, f"{PLUGINS}/portmap"],
        input=json.dumps(conf),
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def nat(host: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", host, "iptables-save", "-t", "nat"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def clean_up(host: str) -> None:
    code = "from kubelet.cni import remove_unused_portmap_chains; remove_unused_portmap_chains()"
    subprocess.run(
        ["ip", "netns", "exec", host, sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60
    )


def test_shared_portmap_chains_go_with_the_last_port_mapping(namespaces: tuple[str, str]) -> None:
    host, pod = namespaces
    portmap("ADD", host, pod, "first", 18080, "10.99.0.2")
    portmap("ADD", host, pod, "second", 18081, "10.99.0.3")
    assert nat(host).count(":CNI-DN-") == 2
    portmap("DEL", host, pod, "first", 18080, "10.99.0.2")
    clean_up(host)
    rules = nat(host)
    assert rules.count(":CNI-DN-") == 1  # the second pod still maps a port: the chains stay
    assert all(f":{c} " in rules for c in PORTMAP_CHAINS), rules
    assert "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT" in rules

    portmap("DEL", host, pod, "second", 18081, "10.99.0.3")
    assert all(f":{c} " in nat(host) for c in PORTMAP_CHAINS)  # what the plugin leaves behind
    clean_up(host)
    rules = nat(host)
    assert "CNI-" not in rules, rules
    clean_up(host)  # nothing left to do: no error


def in_netns(host: str, before_restore: Any) -> Any:
    """A runner for ``remove_unused_portmap_chains`` that runs its commands in ``host`` and calls
    ``before_restore`` between its dump and its commit."""

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if argv[0] == "iptables-restore":
            before_restore()
        return subprocess.run(["ip", "netns", "exec", host, *argv], **kwargs)

    return run


def iptables(host: str, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", host, "iptables", "-w", "-t", "nat", *args], check=True)


@pytest.mark.parametrize(
    "addition",
    ["portmap ADD", "CNI-DN chain jumping to CNI-HOSTPORT-SETMARK", "rule in CNI-HOSTPORT-MASQ"],
)
def test_a_port_mapping_added_between_dump_and_commit_keeps_everything(
    namespaces: tuple[str, str], addition: str
) -> None:
    host, pod = namespaces
    portmap("ADD", host, pod, "first", 18080, "10.99.0.2")
    portmap("DEL", host, pod, "first", 18080, "10.99.0.2")
    assert "CNI-DN-" not in nat(host) and all(f":{c} " in nat(host) for c in PORTMAP_CHAINS)
    seen: list[str] = []

    def add() -> None:
        if addition == "portmap ADD":
            portmap("ADD", host, pod, "second", 18081, "10.99.0.3")
        elif addition.startswith("CNI-DN"):
            iptables(host, "-N", "CNI-DN-race")
            iptables(host, "-A", "CNI-DN-race", "-p", "tcp", "--dport", "18082", "-j", "CNI-HOSTPORT-SETMARK")
        else:
            iptables(host, "-A", "CNI-HOSTPORT-MASQ", "-s", "10.99.0.0/24", "-j", "MASQUERADE")
        seen.append(nat(host))

    assert remove_unused_portmap_chains(in_netns(host, add)) is False
    assert len(seen) == 1  # the addition did come between the dump and the commit
    rules = nat(host)
    assert "CNI-DN-" in rules or addition == "rule in CNI-HOSTPORT-MASQ"
    assert all(f":{c} " in rules for c in PORTMAP_CHAINS), rules
    assert "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT" in rules

    def strip(dump: str) -> list[str]:
        return [line for line in dump.splitlines() if not line.startswith("#")]

    assert strip(rules) == strip(seen[0])  # the failed transaction changed nothing

    # once the pod's mapping is gone, the next clean-up removes the chains
    if addition == "portmap ADD":
        portmap("DEL", host, pod, "second", 18081, "10.99.0.3")
    elif addition.startswith("CNI-DN"):
        iptables(host, "-F", "CNI-DN-race")
        iptables(host, "-X", "CNI-DN-race")
    assert remove_unused_portmap_chains(in_netns(host, lambda: None)) is True
    assert "CNI-" not in nat(host), nat(host)
