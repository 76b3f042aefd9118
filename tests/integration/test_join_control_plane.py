"""``minik join --control-plane`` of a second control plane on this host beside a ``minik up`` one.

The first control plane starts with ``--control-plane-endpoint 127.0.0.1:ITS_API_PORT
--advertise-address 127.0.0.1``; the second joins with its own state directory, ports, node name,
CNI network and chain prefix, advertising 127.0.0.1 too (so the two API servers differ by port).
Checked, in order: a wrong certificate key is refused and leaves no state directory and no etcd
member behind; the join makes etcd a cluster of two voters; both API servers are in
``default/kubernetes``'s Endpoints and answer; an object written through the second is read through
the first; after SIGKILL of the first API server the ``minik`` CLI, given a kubeconfig that lists
both API servers (``server`` the first, the ``servers.minik.io`` extension the second), fails over
to the second for ``minik get`` and ``minik apply``, and real kubectl (which reads ``server`` only)
through the second's kubeconfig still reads and writes; ``minik leave`` on the second removes its
etcd member and its Node.  Real etcd, Docker and
TLS; needs root, Docker and iptables (``testkit.prereq``); everything is removed in finally blocks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from apimachinery.kubeconfig import SERVERS_EXTENSION
from cli.etcdmember import Member
from cli.join import etcd_members_client
from testkit import prereq, wait
from testkit.host import processes_mentioning
from testkit.minik_up import MinikUpCluster, free_slash23, minik_up_cluster, remove_node, run_minik
from testkit.processes import minik_up_args

JOIN_FLAGS = {
    "--state-dir",
    "--api-port",
    "--etcd-port",
    "--kubelet-port",
    "--node-name",
    "--cni-conf-dir",
    "--cni-cache-dir",
    "--network-name",
    "--iptables-chain-prefix",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinikUpCluster]:
    prereq.require_node_host()
    work = tmp_path_factory.mktemp("minik-ha")
    with minik_up_cluster(work, "ha", "HA", pod_cidr=free_slash23(), up=False) as c:
        c.up_args += [
            "--control-plane-endpoint",
            f"127.0.0.1:{c.api_port}",
            "--advertise-address",
            "127.0.0.1",
        ]
        c.up()
        yield c


@dataclass
class Second:
    state: Path
    node: str
    network: str
    prefix: str
    args: list[str]
    api_port: int

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfigs" / "admin.conf"


def second_control_plane(cluster: MinikUpCluster, work: Path) -> Second:
    tag = uuid.uuid4().hex[:6]
    node, prefix = f"hb-{tag}", f"HB{tag.upper()}"
    state = work / "state"
    up_args, api_port = minik_up_args(state, node, cluster.pod_cidr, cluster.service_cidr, prefix)
    args: list[str] = []
    for flag, value in zip(up_args[::2], up_args[1::2], strict=True):
        if flag in JOIN_FLAGS:
            args += [flag, value]
    return Second(state, node, f"minik-{node}", prefix, [*args, "--advertise-address", "127.0.0.1"], api_port)


def join_command(cluster: MinikUpCluster) -> dict[str, str]:
    words = cluster.minik("token", "create", "--control-plane").stdout.split()
    assert words[:2] == ["minik", "join"], words
    opts = {"server": words[2]}
    for flag in ("--token", "--discovery-token-ca-cert-hash", "--certificate-key"):
        opts[flag] = words[words.index(flag) + 1]
    assert "--control-plane" in words
    return opts


def join(
    cluster: MinikUpCluster, second: Second, cmd: dict[str, str], key: str
) -> subprocess.CompletedProcess[str]:
    return cluster.minik(
        "join",
        cmd["server"],
        *("--token", cmd["--token"], "--discovery-token-ca-cert-hash", cmd["--discovery-token-ca-cert-hash"]),
        *("--control-plane", "--certificate-key", key),
        *second.args,
        check=False,
        timeout=400,
    )


def members(cluster: MinikUpCluster) -> list[Member]:
    cfg = json.loads((cluster.state / "config.json").read_text())
    with etcd_members_client(cluster.state, [f"https://127.0.0.1:{cfg['etcd_port']}"]) as etcd:
        return etcd.members()


def remove_second(cluster: MinikUpCluster, second: Second) -> None:
    cluster.minik("leave", "--force", "--state-dir", str(second.state), check=False, timeout=300)
    remove_node(second.state, second.node, second.network, second.prefix, cluster.env)
    cluster.minik("delete", "node", second.node, "--ignore-not-found", check=False)
    for m in members(cluster):
        if m.name == second.node:
            cfg = json.loads((cluster.state / "config.json").read_text())
            with etcd_members_client(cluster.state, [f"https://127.0.0.1:{cfg['etcd_port']}"]) as etcd:
                etcd.remove(m.id)


@pytest.fixture(scope="module")
def second(cluster: MinikUpCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Second]:
    s = second_control_plane(cluster, tmp_path_factory.mktemp("minik-ha-2"))
    try:
        cmd = join_command(cluster)
        proc = join(cluster, s, cmd, cmd["--certificate-key"])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield s
    finally:
        remove_second(cluster, s)


def test_minik_config_is_published(cluster: MinikUpCluster) -> None:
    data = cluster.get("configmap", "minik-config", "-n", "kube-system")["data"]
    assert data["controlPlaneEndpoint"] == f"127.0.0.1:{cluster.api_port}"
    assert data["clusterCIDR"] == cluster.pod_cidr
    assert data["serviceCIDR"] == cluster.service_cidr
    assert data["etcdEndpoints"].startswith("https://127.0.0.1:")


def test_the_upload_lives_with_a_token_of_at_most_2h_and_only_bootstrappers_read_it(
    cluster: MinikUpCluster,
) -> None:
    import datetime as dt
    import ssl

    import httpx

    from apimachinery.bootstraptoken import expiration_of

    cmd = join_command(cluster)
    certs = cluster.get("secret", "minik-certs", "-n", "kube-system")
    (ref,) = certs["metadata"]["ownerReferences"]
    owner = cluster.get("secret", ref["name"], "-n", "kube-system")
    assert owner["type"] == "bootstrap.kubernetes.io/token" and owner["metadata"]["uid"] == ref["uid"]
    expires = expiration_of(owner)
    assert expires is not None
    assert expires <= dt.datetime.now(dt.UTC) + dt.timedelta(hours=2, minutes=1)
    ctx = ssl.create_default_context(cafile=str(cluster.state / "pki" / "ca.crt"))
    headers = {"Authorization": f"Bearer {cmd['--token']}"}
    with httpx.Client(base_url=cluster.server, verify=ctx, headers=headers, timeout=10) as api:
        base = "/api/v1/namespaces/kube-system"
        assert api.get(f"{base}/secrets/minik-certs").status_code == 200
        assert api.get(f"{base}/configmaps/minik-config").status_code == 200
        assert api.get(f"{base}/secrets/{ref['name']}").status_code == 403
        assert api.get(f"{base}/secrets").status_code == 403
    # the owner token gone (as the token cleaner deletes it at expiry): the garbage collector removes the upload
    cluster.minik("delete", "secret", ref["name"], "-n", "kube-system")
    wait.wait_for(
        lambda: (
            cluster.minik("get", "secret", "minik-certs", "-n", "kube-system", check=False).returncode != 0
        ),
        60,
        "minik-certs garbage-collected",
    )


def test_wrong_certificate_key_is_refused_and_leaves_nothing(
    cluster: MinikUpCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    s = second_control_plane(cluster, tmp_path_factory.mktemp("minik-ha-wrong"))
    cmd = join_command(cluster)
    wrong = "00" * 32
    assert wrong != cmd["--certificate-key"]
    try:
        proc = join(cluster, s, cmd, wrong)
        assert proc.returncode != 0, proc.stdout
        text = " ".join(proc.stdout.split())
        assert "does not decrypt" in text, text
        assert not s.state.exists(), list(s.state.rglob("*"))
        assert [m.name for m in members(cluster)] == ["minik"]
    finally:
        remove_second(cluster, s)


def test_a_join_that_fails_after_member_add_removes_the_member_again(
    cluster: MinikUpCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import socket

    s = second_control_plane(cluster, tmp_path_factory.mktemp("minik-ha-fail"))
    etcd_port = int(s.args[s.args.index("--etcd-port") + 1])
    cmd = join_command(cluster)
    # the new member's peer port taken: its etcd cannot start, so the learner never catches up
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", etcd_port + 1))
        blocker.listen()
        try:
            proc = cluster.minik(
                "join",
                cmd["server"],
                *(
                    "--token",
                    cmd["--token"],
                    "--discovery-token-ca-cert-hash",
                    cmd["--discovery-token-ca-cert-hash"],
                ),
                *("--control-plane", "--certificate-key", cmd["--certificate-key"], "--timeout", "10"),
                *s.args,
                check=False,
                timeout=300,
            )
            text = " ".join(proc.stdout.split())
            assert proc.returncode == 1, text
            assert "added as a learner" in text and "removed etcd member" in text, text
            assert [m.name or "" for m in members(cluster)] == ["minik"]
            assert not s.state.exists(), list(s.state.rglob("*"))
            assert not processes_mentioning(str(s.state))
        finally:
            remove_second(cluster, s)


def test_two_voting_etcd_members(cluster: MinikUpCluster, second: Second) -> None:
    found = members(cluster)
    assert sorted(m.name for m in found) == sorted(["minik", second.node])
    assert not any(m.is_learner for m in found), found
    data = cluster.get("configmap", "minik-config", "-n", "kube-system")["data"]
    assert len(data["etcdEndpoints"].split(",")) == 2, data
    status = cluster.minik("status", "--state-dir", str(second.state)).stdout
    from cli.cluster import ORDER

    components = {line.split()[0] for line in status.splitlines() if line.strip()} & set(ORDER)
    assert components == {"etcd", "apiserver", "controller-manager", "scheduler", "kubelet", "proxy"}, status


def test_both_api_servers_serve_and_are_endpoints(cluster: MinikUpCluster, second: Second) -> None:
    def ports() -> set[int]:
        ep = cluster.get("endpoints", "kubernetes", "-n", "default")
        return {p["port"] for s in ep.get("subsets") or [] for p in s.get("ports") or []}

    wait.wait_for(lambda: {cluster.api_port, second.api_port} <= ports(), 60, "both API servers in Endpoints")
    name = f"via-second-{uuid.uuid4().hex[:6]}"
    kubectl(second.kubeconfig, "create", "configmap", name, "--from-literal=k=v")
    try:
        assert cluster.get("configmap", name)["data"] == {"k": "v"}
    finally:
        cluster.minik("delete", "configmap", name, "--ignore-not-found", check=False)


def kubectl(kubeconfig: Path, *args: str) -> str:
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "--request-timeout", "20s", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def both_servers(cluster: MinikUpCluster, second: Second, path: Path) -> dict[str, str]:
    """The environment of a ``minik`` run whose kubeconfig is the first control plane's admin
    kubeconfig listing the second API server in the servers extension (real kubectl would read only
    ``server``)."""
    doc = yaml.safe_load(cluster.kubeconfig.read_text())
    for c in doc["clusters"]:
        assert c["cluster"]["server"] == cluster.server, c
        c["cluster"]["extensions"] = [
            {"name": SERVERS_EXTENSION, "extension": {"servers": [f"https://127.0.0.1:{second.api_port}"]}}
        ]
    path.write_text(yaml.safe_dump(doc))
    return {**cluster.env, "KUBECONFIG": str(path)}


def test_minik_and_kubectl_survive_sigkill_of_the_first_api_server(
    cluster: MinikUpCluster, second: Second, tmp_path: Path
) -> None:
    env = both_servers(cluster, second, tmp_path / "kubeconfig")
    name = f"after-kill-{uuid.uuid4().hex[:6]}"
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"}}
        )
    )
    pid = cluster.status()["apiserver"]["pid"]
    assert pid
    try:
        os.kill(pid, signal.SIGKILL)
        # the supervisor restarts the first API server a second or more later: the first request
        # meets a closed port and moves on to the second server
        got = run_minik(env, "get", "nodes", "-o", "name", check=False, timeout=60)
        assert got.returncode == 0, got.stdout + got.stderr
        assert f"node/{second.node}" in got.stdout and f"node/{cluster.node}" in got.stdout
        assert f"API server {cluster.server} unreachable" in got.stderr, got.stderr
        applied = run_minik(env, "apply", "-f", str(manifest), check=False, timeout=60)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        read = run_minik(env, "get", "configmap", name, "-o", "json", check=False, timeout=60)
        assert read.returncode == 0 and json.loads(read.stdout)["data"] == {"a": "b"}, (
            read.stdout + read.stderr
        )
        # real kubectl through the second API server's own kubeconfig reads and writes too
        nodes = kubectl(second.kubeconfig, "get", "nodes", "-o", "name")
        assert f"node/{second.node}" in nodes and f"node/{cluster.node}" in nodes
        kubectl(second.kubeconfig, "create", "configmap", f"{name}-k", "--from-literal=c=d")
        assert "c" in kubectl(second.kubeconfig, "get", "configmap", f"{name}-k", "-o", "jsonpath={.data}")
        # the supervisor restarts the first API server, which then sees the objects too
        wait.wait_for(
            lambda: cluster.minik("get", "configmap", f"{name}-k", check=False).returncode == 0,
            120,
            "API server 1 back",
        )
    finally:
        run_minik(env, "delete", "configmap", name, f"{name}-k", "--ignore-not-found", check=False)


def test_down_and_up_again_keep_the_member(cluster: MinikUpCluster, second: Second) -> None:
    cluster.minik("down", "--state-dir", str(second.state), timeout=300)
    assert not (second.state / "supervisor.pid").exists()
    proc = cluster.minik("up", "--state-dir", str(second.state), check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is up again" in proc.stdout
    found = members(cluster)
    assert sorted(m.name for m in found) == sorted(["minik", second.node]), found
    assert not any(m.is_learner for m in found)
    assert f"node/{second.node}" in kubectl(second.kubeconfig, "get", "nodes", "-o", "name")


def test_leave_removes_the_etcd_member_and_the_node(cluster: MinikUpCluster, second: Second) -> None:
    proc = cluster.minik("leave", "--state-dir", str(second.state), check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [m.name for m in members(cluster)] == ["minik"]
    assert cluster.minik("get", "node", second.node, check=False).returncode != 0
    assert not (second.state / "config.json").exists()
    data = cluster.get("configmap", "minik-config", "-n", "kube-system")["data"]
    assert len(data["etcdEndpoints"].split(",")) == 1, data
