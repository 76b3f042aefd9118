"""The lab with three control planes behind HAProxy: `minik lab up --control-planes 3 --nodes 1`.

cp-1 runs `minik up --control-plane-endpoint LB:6443`, cp-2 and cp-3 `minik join --control-plane`
with the token and certificate key `lab up` made on cp-1; each runs an etcd member, an API server,
a controller manager and a scheduler.  HAProxy (`balance first`) sends every client to the first
ready API server and the next one takes over; kubectl runs against it from this host.

The tests run in file order against one lab; the fixture takes it down whatever happens.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit import prereq

from .test_lab import Lab, running_lab, wait_for

PROJECT = "minik-labha"
SUBNET = "10.215.0.0/24"
CONTROL_PLANES = ["cp-1", "cp-2", "cp-3"]
STATE = "/root/.minik"
NS = "default"
KUBECTL = "kubectl"  # the fixture finds it (testkit.prereq)


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    prereq.require_docker()
    prereq.require_compose()
    global KUBECTL
    KUBECTL = prereq.require_kubectl()
    state = tmp_path_factory.mktemp("lab-ha-state")
    with running_lab(
        state, PROJECT, SUBNET, "--control-planes", "3", "--nodes", "1", "--timeout", "400"
    ) as lab:
        yield lab


def kubectl(lab: Lab, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL, "--context", "minik-lab", *args],
        env=lab.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def served_by(lab: Lab) -> str:
    """The API server kubectl reaches through HAProxy now: a fresh `kubectl get --raw /readyz`,
    then HAProxy's log line for it (TCP mode logs a connection when it closes, with its
    backend/server; this host's connections come from the segment's gateway, .1)."""
    lab.close()  # no kept-alive connection of the test's own client stays on an old server
    # (right after a control plane stopped, a connection HAProxy had sent to it before marking it
    # down is cut: kubectl does not retry, so this does)
    wait_for("kubectl get --raw /readyz", lambda: kubectl(lab, "get", "--raw", "/readyz").returncode == 0, 30)
    time.sleep(0.5)
    logs = subprocess.run(
        ["docker", "logs", "--tail", "200", lab.container("lb")], capture_output=True, text=True
    )
    host = SUBNET.rsplit(".", 1)[0] + ".1:"
    lines = [
        x
        for x in (logs.stdout + logs.stderr).splitlines()
        if x.startswith(host) and "control-planes/cp-" in x
    ]
    assert lines, logs.stdout[-2000:] + logs.stderr[-2000:]
    return lines[-1].split("control-planes/")[1].split()[0]


def write_configmaps(lab: Lab, prefix: str, n: int, timeout: float = 90) -> list[str]:
    """``n`` ConfigMaps, each retried until written (a failover may refuse a few); their names."""
    names = []
    for i in range(n):
        name = f"{prefix}-{i}"
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": str(i)}}

        def write(b: dict[str, Any] = body) -> bool:
            r = lab.api.post(f"/api/v1/namespaces/{NS}/configmaps", json=b)
            return r.status_code in (201, 409)

        wait_for(f"ConfigMap {name} written", write, timeout=timeout)
        names.append(name)
    return names


def all_there(lab: Lab, names: list[str]) -> bool:
    items = lab.api.get(f"/api/v1/namespaces/{NS}/configmaps").json()["items"]
    have = {c["metadata"]["name"] for c in items}
    missing = set(names) - have
    assert not missing, sorted(missing)
    return True


def apiserver_pid(lab: Lab, cp: str) -> int:
    status = json.loads(lab.exec(cp, "cat", f"{STATE}/status.json"))
    return int(status["apiserver"]["pid"])


def wait_control_planes_ready(lab: Lab, timeout: float = 240) -> None:
    wait_for(
        "every control plane Ready",
        lambda: all(lab.nodes_ready().get(cp) == "True" for cp in CONTROL_PLANES),
        timeout=timeout,
        every=2,
    )


def test_three_control_planes_behind_haproxy(ha: Lab) -> None:
    ready = ha.nodes_ready()
    assert {n: ready.get(n) for n in [*CONTROL_PLANES, "node-1"]} == dict.fromkeys(
        [*CONTROL_PLANES, "node-1"], "True"
    )
    for cp in CONTROL_PLANES[1:]:
        cfg = json.loads(ha.exec(cp, "cat", f"{STATE}/config.json"))
        assert cfg["role"] == "control-plane", cfg
    # the etcd members: one per control plane, listed in minik-config
    conf = ha.api.get("/api/v1/namespaces/kube-system/configmaps/minik-config").json()["data"]
    assert len([u for u in conf["etcdEndpoints"].split(",") if u]) == 3, conf
    # kubectl reaches them through HAProxy
    out = kubectl(ha, "get", "nodes")
    assert out.returncode == 0 and all(cp in out.stdout for cp in CONTROL_PLANES), out


def test_kill_9_of_the_api_server_kubectl_reaches_keeps_kubectl_working(ha: Lab) -> None:
    victim = served_by(ha)
    pid = apiserver_pid(ha, victim)
    ha.exec(victim, "kill", "-9", str(pid))
    failures = []
    for _ in range(10):
        out = kubectl(ha, "get", "nodes", "-o", "name")
        if out.returncode != 0:
            failures.append(out.stderr)
        time.sleep(0.5)
    assert not failures, failures
    assert kubectl(ha, "create", "configmap", f"after-kill-{uuid.uuid4().hex[:6]}").returncode == 0
    # its supervisor starts it again
    wait_for(f"{victim}'s API server back", lambda: apiserver_pid(ha, victim) != pid, timeout=60)


def test_one_control_plane_stopped_writes_continue_and_nothing_is_lost(ha: Lab) -> None:
    before = write_configmaps(ha, f"before-{uuid.uuid4().hex[:4]}", 5)
    victim = served_by(ha)
    subprocess.run(["docker", "stop", "-t", "5", ha.container(victim)], check=True, capture_output=True)
    try:
        during = write_configmaps(ha, f"during-{uuid.uuid4().hex[:4]}", 5)
        assert all_there(ha, before + during)
        assert served_by(ha) != victim
    finally:
        subprocess.run(["docker", "start", ha.container(victim)], capture_output=True)
    wait_control_planes_ready(ha)
    assert all_there(ha, before + during)


def test_two_control_planes_stopped_the_api_names_etcd_and_nothing_is_lost(ha: Lab) -> None:
    before = write_configmaps(ha, f"quorum-{uuid.uuid4().hex[:4]}", 5)
    survivor = served_by(ha)
    stopped = [cp for cp in CONTROL_PLANES if cp != survivor]
    for cp in stopped:
        subprocess.run(["docker", "stop", "-t", "5", ha.container(cp)], check=True, capture_output=True)
    try:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"lost-{uuid.uuid4().hex[:6]}"}}

        def refused() -> httpx.Response | None:
            r = ha.api.post(f"/api/v1/namespaces/{NS}/configmaps", json=body, timeout=60)
            return r if r.status_code >= 500 else None

        # a Status naming etcd, in bounded time (the client's timeout is 60 s), not a hang
        r = wait_for("the API server to refuse a write without etcd quorum", refused, timeout=120, every=2)
        status = r.json()
        assert status["kind"] == "Status" and status["status"] == "Failure", status
        assert "etcd" in json.dumps(status).lower(), status
    finally:
        for cp in stopped:
            subprocess.run(["docker", "start", ha.container(cp)], capture_output=True)
    wait_control_planes_ready(ha, timeout=300)
    wait_for("a write with quorum back", lambda: write_configmaps(ha, f"back-{uuid.uuid4().hex[:4]}", 1), 120)
    assert all_there(ha, before)


def test_ha_lab_down_leaves_nothing_behind(ha: Lab) -> None:
    ha.cli("lab", "down", timeout=300)
    label = f"label=com.docker.compose.project={PROJECT}"
    assert not subprocess.run(
        ["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True
    ).stdout
    kubeconfig = Path(ha.env["KUBECONFIG"])
    assert "minik-lab" not in (kubeconfig.read_text() if kubeconfig.exists() else "")
