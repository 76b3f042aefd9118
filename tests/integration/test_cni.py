"""CNI pod networking with the real plugins (Debian's containernetworking-plugins in /usr/lib/cni):
ADD/DEL into the network namespace of a real sandbox, pod-to-pod traffic on one bridge, hostPort
through portmap, and no leaked IP after 100 pod create/delete cycles with the kubelet killed -9
in the middle.

Every container, bridge, conflist, allocation and iptables rule a test makes is removed at its
end, also when it fails (the kubelet fixture's clean-up, or the tests' ``finally``)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from kubelet import cni
from kubelet.node import default_node_ip
from testkit import prereq
from testkit.host import NODE_LABEL, free_subnets, pod_container
from testkit.processes import KubeletProcess, root_ca_publisher, running

NS = "default"
PLUGINS = "/usr/lib/cni:/opt/cni/bin"


def require_plugins() -> None:
    prereq.require_node_host()
    found = all(
        any(os.access(os.path.join(d, p), os.X_OK) for d in PLUGINS.split(":"))
        for p in ("bridge", "host-local", "loopback", "portmap", "firewall")
    )
    prereq.require(
        found,
        "the CNI plugins (bridge, host-local, loopback, portmap, firewall)",
        "apt-get install containernetworking-plugins",
    )


@pytest.fixture()
def client(apiserver: Any) -> Iterator[httpx.Client]:
    with apiserver.http() as c:
        yield c


def pod_obj(name: str, node: str, image: str, script: str = "sleep 3600", **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "c",
        "image": image,
        "command": ["sh", "-c", f"trap 'exit 0' TERM; {script} & wait"],
    }
    if "ports" in spec:
        container["ports"] = spec.pop("ports")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "cni-test"}},
        "spec": {"nodeName": node, "containers": [container], "terminationGracePeriodSeconds": 1, **spec},
    }


def create(client: httpx.Client, obj: dict[str, Any]) -> None:
    r = client.post(f"/api/v1/namespaces/{NS}/pods", json=obj)
    assert r.status_code == 201, r.text


def pods(client: httpx.Client) -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/namespaces/{NS}/pods", params={"labelSelector": "app=cni-test"})
    r.raise_for_status()
    return list(r.json()["items"])


def running_ips(client: httpx.Client, names: list[str]) -> dict[str, str] | None:
    got = {p["metadata"]["name"]: p for p in pods(client)}
    out = {}
    for n in names:
        st = (got.get(n) or {}).get("status") or {}
        if st.get("phase") != "Running" or not st.get("podIP"):
            return None
        out[n] = st["podIP"]
    return out


def node_containers(node: str) -> list[dict[str, Any]]:
    """The node's containers as Docker's list gives them (no inspect of each: a container that a
    killed kubelet's last request is still removing may vanish between the list and an inspect)."""
    dc = docker.from_env()
    try:
        return list(dc.api.containers(all=True, filters={"label": f"{NODE_LABEL}={node}"}))
    finally:
        dc.close()


def remove_container(container_id: str) -> None:
    dc = docker.from_env()
    try:
        dc.api.remove_container(container_id, force=True)
    finally:
        dc.close()


def named(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    return [p for p in pods(client) if p["metadata"]["name"] == name]


def container_of(node: str, pod: str) -> Any:
    found = pod_container(node, pod)
    assert found is not None, f"no running container of pod {pod}"
    return found


def allocations(k: KubeletProcess) -> list[str]:
    """host-local's reservations of the kubelet's network (one file per IP)."""
    d = Path(k.cni_cache_dir) / "networks" / k.network
    if not d.exists():
        return []
    return sorted(
        f.name for f in d.iterdir() if not f.name.startswith("last_reserved_ip") and f.name != "lock"
    )


def cached_results(k: KubeletProcess) -> list[str]:
    d = Path(k.cni_cache_dir) / "results"
    return sorted(f.name for f in d.iterdir()) if d.exists() else []


def masq_rules(network: str) -> list[str]:
    dump = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    return [line for line in dump.splitlines() if f'name: \\"{network}\\"' in line]


def network_rules(network: str) -> list[str]:
    """The network's own rules (FORWARD accepts, the masquerade): ``minik pod network NAME``."""
    dump = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return [line for line in dump.splitlines() if f'"minik pod network {network}"' in line]


def http_get(url: str) -> str | None:
    try:
        r = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return r.text if r.status_code == 200 else None


def test_add_check_del_in_a_real_sandbox(tmp_path: Path, image: str) -> None:
    require_plugins()
    name = f"minik-cnitest-{uuid.uuid4().hex[:6]}"
    subnet = free_subnets(1)[0]
    pn = cni.PodNetwork(name, str(tmp_path / "conf"), PLUGINS, str(tmp_path / "cache"))
    dc = docker.from_env()
    box = dc.containers.run(
        image,
        ["sh", "-c", "mkdir -p /w && echo from-the-pod > /w/index.html && exec httpd -f -p 8080 -h /w"],
        detach=True,
        network_mode="none",
        labels={"io.minik.test": name},
    )
    try:
        box.reload()
        netns = f"/proc/{box.attrs['State']['Pid']}/ns/net"
        pn.configure(subnet)
        ip, _took = asyncio.run(pn.setup(box.id, netns, NS, "sandbox-test"))
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(subnet)
        assert ip != str(next(ipaddress.ip_network(subnet).hosts()))  # the gateway is the bridge's
        addrs = box.exec_run(["ip", "-4", "addr"]).output.decode()
        assert f"inet {ip}/24" in addrs and "eth0" in addrs
        assert "inet 127.0.0.1/8" in addrs  # the loopback plugin brought lo up
        assert ip in allocations_of(tmp_path, name)
        assert pn.ip_of(box.id) == ip
        assert (
            cni.PodNetwork(name, str(tmp_path / "conf"), PLUGINS, str(tmp_path / "cache")).ip_of(box.id) == ip
        )
        assert len(network_rules(name)) == 3
        # CHECK with the cached result
        assert pn.net is not None
        asyncio.run(pn.cni.check(pn.net, cni.RuntimeConf(box.id, netns, "eth0")))
        # the host reaches the pod through the bridge
        deadline = time.monotonic() + 20
        while http_get(f"http://{ip}:8080/index.html") is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert http_get(f"http://{ip}:8080/index.html") == "from-the-pod\n"

        assert asyncio.run(pn.teardown(box.id, netns))
        assert "eth0" not in box.exec_run(["ip", "link"]).output.decode()
        assert allocations_of(tmp_path, name) == []
        assert not os.path.exists(tmp_path / "cache" / "results" / f"{name}-{box.id}-eth0")
        assert masq_rules(name) == []
        assert pn.ip_of(box.id) == ""
        # a DEL of what is gone already is no error (and a no-op)
        assert not asyncio.run(pn.teardown(box.id, ""))
    finally:
        box.remove(force=True)
        dc.close()
        cni.cleanup_network(str(tmp_path / "conf"), name, pn.bridge, str(tmp_path / "cache"), PLUGINS)
    assert pn.bridge not in subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert network_rules(name) == []


def allocations_of(tmp_path: Path, name: str) -> list[str]:
    d = tmp_path / "cache" / "networks" / name
    return (
        sorted(f.name for f in d.iterdir() if not f.name.startswith("last_reserved_ip") and f.name != "lock")
        if d.exists()
        else []
    )


def test_pod_to_pod_and_host_port(kubelet: KubeletProcess, client: httpx.Client, image: str) -> None:
    require_plugins()
    host_port = free_host_port()
    create(
        client,
        pod_obj(
            "server",
            kubelet.node,
            image,
            "mkdir -p /tmp/w && echo served-by-$(hostname) > /tmp/w/index.html && httpd -f -p 8080 -h /tmp/w",
            ports=[{"containerPort": 8080, "hostPort": host_port}],
            dnsConfig={"nameservers": ["192.0.2.53"], "searches": ["example.test"]},
        ),
    )
    ips = kubelet.wait(lambda: running_ips(client, ["server"]), 60, "server Running")
    server_ip = ips["server"]
    create(
        client,
        pod_obj(
            "client",
            kubelet.node,
            image,
            f"while true; do wget -q -O- http://{server_ip}:8080/index.html; sleep 0.5; done",
        ),
    )
    # the pod's /etc/hosts names it (runtime network "none" gives only localhost; the kubelet writes it)
    hosts = container_of(kubelet.node, "server").exec_run(["cat", "/etc/hosts"]).output.decode()
    assert f"{server_ip}\tserver\n" in hosts and "127.0.0.1\tlocalhost" in hosts
    # and its /etc/resolv.conf follows dnsConfig (the sandbox has no Docker network: the kubelet writes it)
    resolv = container_of(kubelet.node, "server").exec_run(["cat", "/etc/resolv.conf"]).output.decode()
    assert "nameserver 192.0.2.53\n" in resolv and "example.test" in resolv.split("search", 1)[1]
    both = kubelet.wait(lambda: running_ips(client, ["server", "client"]), 60, "client Running")
    assert both["client"] != server_ip
    assert {ipaddress.ip_address(ip) in ipaddress.ip_network(kubelet.subnet) for ip in both.values()} == {
        True
    }

    def client_log() -> str:
        with kubelet.http(timeout=10) as c:
            return c.get(f"/containerLogs/{NS}/client/c").text

    kubelet.wait(lambda: "served-by-server" in client_log(), 30, "pod-to-pod HTTP")
    # hostPort through portmap: from loopback and from the host's own address
    for host in ("127.0.0.1", default_node_ip()):
        body = kubelet.wait(
            lambda h=host: http_get(f"http://{h}:{host_port}/index.html"), 30, f"hostPort via {host}"
        )
        assert body == "served-by-server\n"
    for name in ("client", "server"):
        client.delete(f"/api/v1/namespaces/{NS}/pods/{name}")
    kubelet.wait(lambda: not pods(client), 60, "pods deleted")
    kubelet.wait(lambda: not allocations(kubelet), 30, "IPs released")
    assert cached_results(kubelet) == []
    dump = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    assert f"--dport {host_port} " not in dump  # portmap's DNAT went with the DEL


def free_host_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


ROUNDS = 10
PER_ROUND = 10
KILL_ROUND = 4


def test_no_leaked_ips_after_100_pod_cycles_with_a_kill(
    kubelet: KubeletProcess, client: httpx.Client, image: str
) -> None:
    """100 pods created and deleted in rounds of 10; in one round the kubelet is killed with -9
    while the pods start, one running sandbox is removed behind its back and the pods are deleted
    while it is down.  At the end host-local holds no address, no result is cached and no
    masquerade rule of the network is left."""
    require_plugins()
    seen_ips: set[str] = set()
    for r in range(ROUNDS):
        names = [f"cyc-{r}-{i}" for i in range(PER_ROUND)]
        for n in names:
            create(client, pod_obj(n, kubelet.node, image))
        if r == KILL_ROUND:
            # some of the pods are up, others are being set up: kill the kubelet
            up = kubelet.wait(
                lambda: [p["metadata"]["uid"] for p in pods(client) if (p.get("status") or {}).get("podIP")],
                60,
                "a pod up",
            )
            kubelet.stop(signal.SIGKILL)
            sandboxes = [
                c
                for c in node_containers(kubelet.node)
                if (c.get("Labels") or {}).get("io.kubernetes.docker.type") == "podsandbox"
                and (c.get("Labels") or {}).get("io.kubernetes.pod.uid") == up[0]
            ]
            assert sandboxes
            remove_container(
                sandboxes[0]["Id"]
            )  # gone while the kubelet is down: its IP must still come back
            for n in names:
                client.delete(f"/api/v1/namespaces/{NS}/pods/{n}")
            kubelet.start()
            # the removed sandbox's address is released at the start (the GC of the pod network)
            kubelet.wait(lambda: "released the pod network of" in kubelet.log(), 30, "the network GC")
        else:
            ips = kubelet.wait(lambda names=names: running_ips(client, names), 90, f"round {r} Running")
            assert len(set(ips.values())) == PER_ROUND  # no address given twice
            seen_ips |= set(ips.values())
            for n in names:
                client.delete(f"/api/v1/namespaces/{NS}/pods/{n}")
        kubelet.wait(lambda: not pods(client), 90, f"round {r} deleted")
    assert len(seen_ips) >= PER_ROUND
    kubelet.wait(lambda: not node_containers(kubelet.node), 60, "every container removed")
    kubelet.wait(lambda: not allocations(kubelet), 30, f"no IP left allocated: {allocations(kubelet)}")
    assert cached_results(kubelet) == []
    assert masq_rules(kubelet.network) == []


def test_waits_for_the_pod_cidr_then_uses_it(apiserver: Any, client: httpx.Client, image: str) -> None:
    """Without --pod-cidr and node.spec.podCIDR the node is NotReady (NetworkPluginNotReady) until
    the CIDR is set; then its pods get addresses from it."""
    require_plugins()
    k = KubeletProcess(apiserver)
    i = k.argv.index("--pod-cidr")
    del k.argv[i : i + 2]
    with running(root_ca_publisher(apiserver)):
        try:
            k.start(wait=False)  # /healthz answers only once the network is ready

            def ready_condition() -> dict[str, Any] | None:
                r = client.get(f"/api/v1/nodes/{k.node}")
                conds = (r.json().get("status") or {}).get("conditions") or [] if r.status_code == 200 else []
                return next((c for c in conds if c["type"] == "Ready"), None)

            cond = k.wait(ready_condition, 60, "the node registered")
            assert (cond["status"], cond["reason"]) == ("False", "NetworkPluginNotReady")
            assert cond["message"] == "network plugin is not ready: cni config uninitialized"
            assert not os.path.exists(os.path.join(k.cni_conf_dir, f"10-{k.network}.conflist"))
            r = client.patch(
                f"/api/v1/nodes/{k.node}",
                json={"spec": {"podCIDR": k.subnet, "podCIDRs": [k.subnet]}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
            assert r.status_code == 200, r.text
            k.wait(
                lambda: (ready_condition() or {}).get("status") == "True", 60, "Ready once the CIDR is set"
            )
            create(client, pod_obj("late", k.node, image))
            ip = k.wait(lambda: running_ips(client, ["late"]), 60, "pod Running")["late"]
            assert ipaddress.ip_address(ip) in ipaddress.ip_network(k.subnet)
            client.delete(f"/api/v1/namespaces/{NS}/pods/late")
            k.wait(lambda: not named(client, "late"), 60, "pod deleted")
        finally:
            k.cleanup()


def test_network_plugin_docker_keeps_the_docker_network(
    apiserver: Any, client: httpx.Client, image: str
) -> None:
    require_plugins()
    with (
        running(root_ca_publisher(apiserver)),
        KubeletProcess(apiserver, extra=("--network-plugin", "docker")) as k,
    ):
        create(client, pod_obj("old", k.node, image))
        ip = k.wait(lambda: running_ips(client, ["old"]), 60, "pod Running")["old"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(k.subnet)
        dc = docker.from_env()
        try:
            net = dc.networks.get(k.network)  # the pod is on the node's Docker network
            net.reload()
            assert any(c.labels.get("io.kubernetes.docker.type") == "podsandbox" for c in net.containers)
        finally:
            dc.close()
        assert not os.path.exists(os.path.join(k.cni_conf_dir, f"10-{k.network}.conflist"))
        client.delete(f"/api/v1/namespaces/{NS}/pods/old")
        k.wait(lambda: not named(client, "old"), 60, "pod deleted")
