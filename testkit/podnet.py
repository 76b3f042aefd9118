"""Pods as busybox containers on a Docker bridge network made for one test, and the chains of a
minik-proxy the test runs with its own iptables chain prefix.

Used by the tests of minik-proxy with real netfilter (tests/integration/test_proxy.py and
test_netpol.py)::

    prereq.require_node_host()  # in a module-scoped autouse fixture, before the API server starts
    prefix = chain_prefix("T")  # MINIKTxxxx, a cluster's proxy on the machine is never touched
    net = PodNetwork("minik-x-TAG", subnet, "x")
    try:
        image = net.create()
        container, ip = net.run(image, "srv", ["httpd", "-f", "-p", "8080"])
        ...
    finally:
        remove_proxy_chains(prefix)
        net.remove()
    assert_no_chains(prefix)

Containers and the network carry the label ``io.minik.test=VALUE``; :meth:`PodNetwork.remove`
removes the network's containers (named ``NAME-...``) and the network, whatever was made.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import uuid
from typing import Any

import docker

from testkit.images import ensure_busybox_image

LABEL = "io.minik.test"


def chain_prefix(letter: str) -> str:
    """``MINIK`` + ``letter`` + four random capitals/digits: a chain prefix of the test's own."""
    return "MINIK" + letter + uuid.uuid4().hex[:4].upper()


def remove_proxy_chains(prefix: str) -> None:
    """``minik-proxy --cleanup`` of the chains of ``prefix`` (its exit status is not checked)."""
    subprocess.run(
        [sys.executable, "-m", "proxy.command", "--cleanup", "--iptables-chain-prefix", prefix],
        check=False,
        capture_output=True,
    )


def assert_no_chains(prefix: str) -> None:
    """Nothing of ``prefix`` is left in ``iptables-save``."""
    left = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert prefix not in left, "iptables chains left behind"


class PodNetwork:
    """A bridge network ``name`` on ``subnet`` (its first address the gateway, the host's address
    on it) with containers on it, labelled ``io.minik.test=label_value``."""

    def __init__(self, name: str, subnet: str, label_value: str) -> None:
        self.name = name
        self.subnet = subnet
        self.gateway = str(ipaddress.ip_network(subnet).network_address + 1)
        self.label_value = label_value
        self.docker = docker.from_env()
        self.network: Any = None

    def create(self) -> str:
        """Makes the network; the busybox image's name, pulled if missing."""
        image = ensure_busybox_image()
        ipam = docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet=self.subnet, gateway=self.gateway)]
        )
        self.network = self.docker.networks.create(
            self.name, driver="bridge", ipam=ipam, labels={LABEL: self.label_value}
        )
        return image

    def run(self, image: str, suffix: str, command: list[str], **kwargs: Any) -> tuple[Any, str]:
        """A detached container ``NAME-SUFFIX`` of ``image`` running ``command`` on the network
        (``kwargs`` to ``containers.run``), and its address there."""
        c = self.docker.containers.run(
            image,
            command,
            name=f"{self.name}-{suffix}",
            network=self.network.name,
            labels={LABEL: self.label_value},
            detach=True,
            **kwargs,
        )
        c.reload()
        return c, c.attrs["NetworkSettings"]["Networks"][self.network.name]["IPAddress"]

    def remove(self) -> None:
        """Removes the network's containers and the network, and closes the Docker client."""
        for c in self.docker.containers.list(all=True, filters={"label": f"{LABEL}={self.label_value}"}):
            if c.name.startswith(self.name):
                c.remove(force=True)
        if self.network is not None:
            self.network.remove()
        self.docker.close()
