# ruff: noqa: F811 - pytest fixtures imported from test_kubelet are parameters here
"""The kubelet's features one by one, against a real API server and Docker (busybox built locally):
events, lifecycle hooks, probes restarting containers, OOMKilled, volumes (hostPath types, tmpfs
emptyDir, projected, downwardAPI, subPath, readOnly), hostPort, resource limits, securityContext,
bad input reported in status, attach, port-forward, and ``/stats/summary``.

Pods are created together and checked one after another, so the slow parts (probe periods,
restarts) overlap.  The module's kubelet removes every container, network and volume it made."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest
import websockets

from testkit.api import configmap
from tests.integration.test_kubelet import (  # noqa: F401 - fixtures
    NS,
    KubeletProcess,
    client,
    create,
    delete_pod,
    get_pod,
    logs,
    make_pod,
    node_containers,
    sh_container,
    wait_phase,
)

BIN = os.path.dirname(sys.executable)


def events_for(client: httpx.Client, pod: str) -> list[dict[str, Any]]:
    items = client.get(f"/api/v1/namespaces/{NS}/events").json()["items"]
    return [e for e in items if e["involvedObject"]["name"] == pod]


def reasons(client: httpx.Client, pod: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events_for(client, pod):
        out.setdefault(e["reason"], []).append(e)
    return out


def cstatus(client: httpx.Client, pod: str, name: str | None = None) -> dict[str, Any]:
    for cs in (get_pod(client, pod).get("status") or {}).get("containerStatuses") or []:
        if name is None or cs["name"] == name:
            return dict(cs)
    return {}


def waiting_reason(client: httpx.Client, pod: str) -> tuple[str, str]:
    w = (cstatus(client, pod).get("state") or {}).get("waiting") or {}
    return str(w.get("reason", "")), str(w.get("message", ""))


@pytest.fixture(scope="module")
def hostdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="minik-hostpath-")
    os.chmod(d, 0o777)
    with open(os.path.join(d, "hello.txt"), "w") as f:
        f.write("from the host\n")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_events_and_lifecycle_hooks(
    kubelet: KubeletProcess,
    client: httpx.Client,
    image: str,
    hostdir: str,
) -> None:
    pod = make_pod(
        "hooks",
        kubelet.node,
        [
            {
                "name": "main",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": [
                    "sh",
                    "-c",
                    "trap 'echo got-term >> /host/stopped; exit 0' TERM; while true; do sleep 0.2; done",
                ],
                "volumeMounts": [{"name": "host", "mountPath": "/host"}],
                "lifecycle": {
                    "postStart": {"exec": {"command": ["sh", "-c", "echo post-start > /host/started"]}},
                    "preStop": {"exec": {"command": ["sh", "-c", "echo pre-stop >> /host/stopped"]}},
                },
            }
        ],
        volumes=[{"name": "host", "hostPath": {"path": hostdir, "type": "Directory"}}],
        terminationGracePeriodSeconds=10,
    )
    create(client, pod)
    running = wait_phase(kubelet, client, "hooks", "Running")
    assert open(os.path.join(hostdir, "started")).read() == "post-start\n"

    got = kubelet.wait(
        lambda: (r := reasons(client, "hooks")) and {"Pulled", "Created", "Started"} <= set(r) and r,
        30,
        "Pulled/Created/Started events",
    )
    for reason in ("Pulled", "Created", "Started"):
        ev = got[reason][0]
        assert ev["type"] == "Normal"
        assert ev["involvedObject"]["kind"] == "Pod"
        assert ev["involvedObject"]["uid"] == running["metadata"]["uid"]
        assert ev["involvedObject"]["fieldPath"] == "spec.containers{main}"
        assert ev["source"] == {"component": "kubelet", "host": kubelet.node}
    assert got["Created"][0]["message"] == "Created container main"
    assert "already present on machine" in got["Pulled"][0]["message"]

    # preStop runs before the stop signal: its line comes first
    client.delete(f"/api/v1/namespaces/{NS}/pods/hooks")
    kubelet.wait(lambda: client.get(f"/api/v1/namespaces/{NS}/pods/hooks").status_code == 404, 30, "deleted")
    assert open(os.path.join(hostdir, "stopped")).read() == "pre-stop\ngot-term\n"
    killing = [e for e in events_for(client, "hooks") if e["reason"] == "Killing"]
    assert killing and killing[0]["message"] == "Stopping container main"
    assert killing[0]["involvedObject"]["fieldPath"] == "spec.containers{main}"


def test_probes_restart_and_oom(kubelet: KubeletProcess, client: httpx.Client, image: str) -> None:
    def sleeper(pod: str, **probes: Any) -> None:
        container = {"name": "c", "image": image, "command": ["sh", "-c", "exec sleep 3600"], **probes}
        create(client, make_pod(pod, kubelet.node, [container], terminationGracePeriodSeconds=0))

    def cat(path: str, failures: int) -> dict[str, Any]:
        return {"exec": {"command": ["cat", path]}, "periodSeconds": 1, "failureThreshold": failures}

    sleeper("live", livenessProbe=cat("/alive", 2))
    sleeper("gated", startupProbe=cat("/started", 60), livenessProbe=cat("/alive", 1))
    create(
        client,
        make_pod(
            "oom",
            kubelet.node,
            [
                {
                    "name": "c",
                    "image": image,
                    "command": ["sh", "-c", 'x=$(head -c 50000000 /dev/zero | tr "\\0" a); echo survived'],
                    "resources": {"limits": {"memory": "8Mi"}},
                }
            ],
            restartPolicy="Never",
        ),
    )

    # liveness failure: Unhealthy events, Killing, a restart
    kubelet.wait(lambda: cstatus(client, "live").get("restartCount", 0) >= 1, 60, "liveness restart")
    r = reasons(client, "live")
    assert r["Unhealthy"][0]["message"].startswith("Liveness probe failed:")
    assert r["Unhealthy"][0]["involvedObject"]["fieldPath"] == "spec.containers{c}"
    assert any("failed liveness probe, will be restarted" in e["message"] for e in r["Killing"])
    # the same failure again is counted on one Event, not a new one each time
    kubelet.wait(
        lambda: max(e.get("count", 1) for e in reasons(client, "live")["Unhealthy"]) >= 2, 30, "count"
    )

    # the startup probe holds the liveness probe back: it fails, nothing is restarted
    kubelet.wait(
        lambda: sum(e.get("count", 1) for e in reasons(client, "gated").get("Unhealthy", [])) >= 3,
        30,
        "startup probe failures",
    )
    gated = cstatus(client, "gated")
    assert gated["restartCount"] == 0 and gated["started"] is False and gated["ready"] is False
    assert all(e["message"].startswith("Startup probe failed") for e in reasons(client, "gated")["Unhealthy"])
    # once started, the liveness probe runs (and fails: /alive never exists) -> restart
    cid = gated["containerID"].removeprefix("docker://")
    docker.from_env().containers.get(cid).exec_run(["touch", "/started"])
    kubelet.wait(lambda: cstatus(client, "gated").get("restartCount", 0) >= 1, 60, "liveness after startup")
    assert any(
        e["message"].startswith("Liveness probe failed") for e in reasons(client, "gated")["Unhealthy"]
    )

    oom = wait_phase(kubelet, client, "oom", "Failed", "Succeeded")
    assert oom["status"]["phase"] == "Failed", oom["status"]

    # Docker records the OOM kill from its own event, which may land after the exit: the kubelet
    # looks again and corrects the reason, so wait for it rather than read the first status
    def oom_reason() -> dict[str, Any] | None:
        pod = get_pod(client, "oom")
        term = pod["status"]["containerStatuses"][0]["state"].get("terminated") or {}
        return pod if term.get("reason") == "OOMKilled" else None

    kubelet.wait(oom_reason, 30, "OOMKilled reported")
    delete_pod(client, kubelet, "live", "gated", "oom")


def test_volumes(kubelet: KubeletProcess, client: httpx.Client, image: str, hostdir: str) -> None:
    create(client, configmap("volcfg", {"color": "red", "shape": "square"}), "configmaps")
    created = os.path.join(hostdir, "made-by-kubelet")
    script = (
        "cat /host/hello.txt; ls -d /newdir && echo newdir-ok; "
        "mount | grep ' /cache ' | grep -q tmpfs && echo cache-is-tmpfs; "
        "echo proj=$(cat /proj/color)/$(cat /proj/labels); echo name=$(cat /downward/podname); "
        "echo sub=$(cat /etc/color.conf); "
        "touch /ro/x 2>/dev/null && echo ro-writable || echo ro-readonly; "
        "exec sleep 3600"
    )
    create(
        client,
        make_pod(
            "vols",
            kubelet.node,
            [
                {
                    "name": "c",
                    "image": image,
                    "command": ["sh", "-c", script],
                    "volumeMounts": [
                        {"name": "host", "mountPath": "/host"},
                        {"name": "newdir", "mountPath": "/newdir"},
                        {"name": "cache", "mountPath": "/cache"},
                        {"name": "proj", "mountPath": "/proj"},
                        {"name": "downward", "mountPath": "/downward"},
                        {"name": "cfg", "mountPath": "/etc/color.conf", "subPath": "color"},
                        {"name": "scratch", "mountPath": "/ro", "readOnly": True},
                    ],
                }
            ],
            volumes=[
                {"name": "host", "hostPath": {"path": hostdir, "type": "Directory"}},
                {"name": "newdir", "hostPath": {"path": created, "type": "DirectoryOrCreate"}},
                {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                {
                    "name": "proj",
                    "projected": {
                        "sources": [
                            {"configMap": {"name": "volcfg", "items": [{"key": "color", "path": "color"}]}},
                            {
                                "downwardAPI": {
                                    "items": [
                                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}
                                    ]
                                }
                            },
                        ]
                    },
                },
                {
                    "name": "downward",
                    "downwardAPI": {
                        "items": [{"path": "podname", "fieldRef": {"fieldPath": "metadata.name"}}]
                    },
                },
                {"name": "cfg", "configMap": {"name": "volcfg"}},
                {"name": "scratch", "emptyDir": {}},
            ],
        )
        | {"metadata": {"name": "vols", "namespace": NS, "labels": {"tier": "db"}}},
    )
    create(
        client,
        make_pod(
            "badhost",
            kubelet.node,
            [
                {
                    "name": "c",
                    "image": image,
                    "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "h", "mountPath": "/h"}],
                }
            ],
            volumes=[
                {"name": "h", "hostPath": {"path": os.path.join(hostdir, "hello.txt"), "type": "Directory"}}
            ],
        ),
    )
    wait_phase(kubelet, client, "vols", "Running")
    kubelet.wait(lambda: "ro-" in logs(kubelet, "vols", "c"), 30, "volume checks")
    out = logs(kubelet, "vols", "c")
    assert "from the host" in out
    assert "newdir-ok" in out and os.path.isdir(created)
    assert "cache-is-tmpfs" in out
    assert 'proj=red/tier="db"' in out
    assert "name=vols" in out
    assert "sub=red" in out
    assert "ro-readonly" in out

    # a hostPath whose type does not match: FailedMount, the pod waits with the reason
    kubelet.wait(lambda: "FailedMount" in reasons(client, "badhost"), 30, "FailedMount")
    ev = reasons(client, "badhost")["FailedMount"][0]
    assert ev["type"] == "Warning"
    assert (
        'MountVolume.SetUp failed for volume "h"' in ev["message"] and "is not a Directory" in ev["message"]
    )
    reason, message = waiting_reason(client, "badhost")
    assert reason == "ContainerCreating" and "is not a Directory" in message
    delete_pod(client, kubelet, "vols", "badhost")


def test_host_port_limits_and_security_context(
    kubelet: KubeletProcess, client: httpx.Client, image: str
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host_port = s.getsockname()[1]
    create(
        client,
        make_pod(
            "limits",
            kubelet.node,
            [
                sh_container(
                    "web",
                    image,
                    "mkdir -p /tmp/www && echo via-host-port > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
                    ports=[{"containerPort": 8080, "hostPort": host_port}],
                    resources={
                        "limits": {"cpu": "500m", "memory": "64Mi"},
                        "requests": {"cpu": "250m", "memory": "32Mi"},
                    },
                    volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}],
                    securityContext={
                        "runAsUser": 1234,
                        "runAsGroup": 2345,
                        "readOnlyRootFilesystem": True,
                    },
                )
            ],
            volumes=[{"name": "tmp", "emptyDir": {}}],
        ),
    )
    pod = wait_phase(kubelet, client, "limits", "Running")
    assert pod["status"]["qosClass"] == "Burstable"
    cid = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("docker://")
    dc = docker.from_env()
    try:
        attrs = dc.api.inspect_container(cid)
        assert attrs["HostConfig"]["NanoCpus"] == 500_000_000
        assert attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
        assert attrs["HostConfig"]["CpuShares"] == 256
        assert attrs["HostConfig"]["ReadonlyRootfs"] is True
        assert attrs["Config"]["User"] == "1234:2345"
        out = (
            dc.containers.get(cid)
            .exec_run(["sh", "-c", "id -u; id -g; touch /x || echo rootfs-readonly"])
            .output
        )
        assert {"1234", "2345"} <= set(out.decode().split())  # stdout/stderr lines may interleave
        assert b"rootfs-readonly" in out
    finally:
        dc.close()
    body = kubelet.wait(
        lambda: (r := _get(f"http://127.0.0.1:{host_port}/index.html")) and r,
        30,
        "the hostPort answers",
    )
    assert body == "via-host-port\n"
    delete_pod(client, kubelet, "limits")


def _get(url: str) -> str | None:
    try:
        r = httpx.get(url, timeout=2)
        return r.text if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def test_bad_input_is_reported_and_others_keep_running(
    kubelet: KubeletProcess, client: httpx.Client, image: str
) -> None:
    create(client, configmap("partial", {"a": "1"}), "configmaps")
    create(
        client,
        make_pod("steady", kubelet.node, [{"name": "c", "image": image, "command": ["sleep", "3600"]}]),
    )
    create(
        client,
        make_pod(
            "nokey",
            kubelet.node,
            [
                {
                    "name": "c",
                    "image": image,
                    "command": ["sleep", "3600"],
                    "env": [{"name": "B", "valueFrom": {"configMapKeyRef": {"name": "partial", "key": "b"}}}],
                }
            ],
        ),
    )
    create(
        client,
        make_pod("badcmd", kubelet.node, [{"name": "c", "image": image, "command": ["/no/such/binary"]}]),
    )
    steady = wait_phase(kubelet, client, "steady", "Running")
    kubelet.wait(
        lambda: waiting_reason(client, "nokey")[0] == "CreateContainerConfigError", 30, "config error"
    )
    assert "b" in waiting_reason(client, "nokey")[1] and "partial" in waiting_reason(client, "nokey")[1]
    kubelet.wait(  # events are written in the background, once no pod is starting
        lambda: any(e["reason"] == "Failed" and e["type"] == "Warning" for e in events_for(client, "nokey")),
        30,
        "Failed event",
    )

    def bad_cmd() -> tuple[str, str] | None:
        cs = cstatus(client, "badcmd")
        w = (cs.get("state") or {}).get("waiting") or {}
        t = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}
        if w.get("reason") in ("RunContainerError", "CreateContainerError"):
            return str(w["reason"]), str(w.get("message", ""))
        if t.get("reason") == "StartError":
            return "StartError", str(t.get("message", ""))
        return None

    reason, message = kubelet.wait(bad_cmd, 30, "RunContainerError")
    assert "/no/such/binary" in message and "no such file or directory" in message
    failed = kubelet.wait(
        lambda: [e for e in events_for(client, "badcmd") if e["reason"] == "Failed"], 30, "Failed event"
    )
    assert "/no/such/binary" in failed[0]["message"]
    # the kubelet and its other pods are unaffected
    again = get_pod(client, "steady")
    assert again["status"]["phase"] == "Running"
    assert (
        again["status"]["containerStatuses"][0]["containerID"]
        == steady["status"]["containerStatuses"][0]["containerID"]
    )
    assert kubelet.proc is not None and kubelet.proc.poll() is None
    delete_pod(client, kubelet, "steady", "nokey", "badcmd")


@pytest.fixture(scope="module")
def web(kubelet: KubeletProcess, apiserver: Any, image: str) -> Iterator[str]:
    """A Running, Ready pod serving HTTP on 8080 plus a tty/stdin container to attach to."""
    pod = make_pod(
        "pfweb",
        kubelet.node,
        [
            sh_container(
                "web",
                image,
                "mkdir -p /www && echo hello-through-the-tunnel > /www/index.html && exec httpd -f -p 8080 -h /www",
                ports=[{"name": "http", "containerPort": 8080}],
                readinessProbe={"tcpSocket": {"port": "http"}, "periodSeconds": 1},
            ),
            {"name": "shell", "image": image, "command": ["sh"], "stdin": True, "tty": True},
        ],
    )
    pod["metadata"]["labels"] = {"app": "pfweb"}
    with apiserver.http() as c:
        create(c, pod)
        try:
            kubelet.wait(
                lambda: any(
                    x["type"] == "Ready" and x["status"] == "True"
                    for x in (get_pod(c, "pfweb").get("status") or {}).get("conditions") or []
                ),
                60,
                "pfweb Ready",
            )
            yield "pfweb"
        finally:
            c.delete(f"/api/v1/namespaces/{NS}/pods/pfweb", params={"gracePeriodSeconds": "0"})


async def _port_forward_ws(apiserver: Any, url: str, request: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(first frames, data received, error channel text)."""
    heads: list[bytes] = []
    data = b""
    error = b""
    options = apiserver.ws_options()
    async with websockets.connect(url, subprotocols=["v4.channel.k8s.io"], max_size=None, **options) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "v4.channel.k8s.io"
        heads = [await ws.recv(), await ws.recv()]  # type: ignore[list-item]
        try:
            await ws.send(b"\x00" + request)
        except websockets.ConnectionClosed:
            pass  # a port nobody listens on: the error may arrive, and the stream close, before we send
        async for msg in ws:
            assert isinstance(msg, bytes)
            if msg[0] == 0:
                data += msg[1:]
            elif msg[0] == 1:
                error += msg[1:]
    return heads, data, error


def test_port_forward_through_the_api_server(apiserver: Any, web: str) -> None:
    url = apiserver.ws_url(f"/api/v1/namespaces/{NS}/pods/{web}/portforward?ports=8080")
    heads, data, error = asyncio.run(_port_forward_ws(apiserver, url, b"GET /index.html HTTP/1.0\r\n\r\n"))
    assert heads == [b"\x00" + (8080).to_bytes(2, "little"), b"\x01" + (8080).to_bytes(2, "little")]
    assert error == b""
    assert data.startswith(b"HTTP/1.") and b"hello-through-the-tunnel" in data
    # a port nobody listens on: the error channel says so
    url = url.replace("ports=8080", "ports=9")
    _heads, data, error = asyncio.run(_port_forward_ws(apiserver, url, b"x"))
    assert data == b"" and b"error forwarding port 9" in error


def _minik_port_forward(apiserver: Any, target: str, spec: str) -> Iterator[int]:
    proc = subprocess.Popen(
        [
            os.path.join(BIN, "minik"),
            "--kubeconfig",
            apiserver.kubeconfig,
            "-n",
            NS,
            "port-forward",
            target,
            spec,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Forwarding from 127.0.0.1:"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        yield int(line.split(":")[1].split()[0])
    finally:
        proc.terminate()
        proc.wait(10)


def test_minik_port_forward_pod_and_service(apiserver: Any, client: httpx.Client, web: str) -> None:
    for port in _minik_port_forward(apiserver, f"pod/{web}", ":8080"):
        assert (
            httpx.get(f"http://127.0.0.1:{port}/index.html", timeout=10).text == "hello-through-the-tunnel\n"
        )
    create(
        client,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "pfsvc"},
            "spec": {"selector": {"app": "pfweb"}, "ports": [{"port": 80, "targetPort": "http"}]},
        },
        "services",
    )
    try:
        for port in _minik_port_forward(apiserver, "svc/pfsvc", ":80"):
            assert (
                httpx.get(f"http://127.0.0.1:{port}/index.html", timeout=10).text
                == "hello-through-the-tunnel\n"
            )
    finally:
        client.delete(f"/api/v1/namespaces/{NS}/services/pfsvc")


def test_attach_through_the_api_server(apiserver: Any, web: str) -> None:
    url = apiserver.ws_url(
        f"/api/v1/namespaces/{NS}/pods/{web}/attach?container=shell&stdin=true&stdout=true&tty=true"
    )

    async def run() -> bytes:
        out = b""
        async with websockets.connect(
            url, subprotocols=["v5.channel.k8s.io"], **apiserver.ws_options()
        ) as ws:  # type: ignore[list-item]
            await ws.send(b"\x04" + json.dumps({"Width": 100, "Height": 30}).encode())
            await ws.send(b"\x00echo attached-$((40+2)); stty size\n")
            while b"attached-42" not in out or b"30 100" not in out:
                msg = await asyncio.wait_for(ws.recv(), 20)
                assert isinstance(msg, bytes)
                if msg[0] in (1, 2):
                    out += msg[1:]
        return out

    out = asyncio.run(run())
    assert b"attached-42" in out and b"30 100" in out


def test_stats_summary(kubelet: KubeletProcess, web: str) -> None:
    with kubelet.http() as c:
        r = c.get("/stats/summary")
    assert r.status_code == 200
    summary = r.json()
    node = summary["node"]
    assert node["nodeName"] == kubelet.node
    assert node["cpu"]["usageCoreNanoSeconds"] > 0
    assert node["memory"]["workingSetBytes"] > 0 and node["memory"]["availableBytes"] > 0
    assert node["fs"]["capacityBytes"] > 0
    pod = next(p for p in summary["pods"] if p["podRef"]["name"] == web)
    assert pod["podRef"]["namespace"] == NS
    names = {c["name"] for c in pod["containers"]}
    assert names == {"web", "shell"}
    for c in pod["containers"]:
        assert c["memory"]["workingSetBytes"] > 0
        assert c["cpu"]["usageCoreNanoSeconds"] > 0
    assert pod["memory"]["workingSetBytes"] >= max(c["memory"]["workingSetBytes"] for c in pod["containers"])
    assert pod["network"]["name"] == "eth0" and pod["network"]["rxBytes"] >= 0
    assert pod["process_stats"]["process_count"] >= 2


def test_pod_ip_in_env_waits_for_the_sandbox(
    kubelet: KubeletProcess, client: httpx.Client, image: str
) -> None:
    """Containers are created while the sandbox starts, except one whose env needs the pod's IP:
    that one is created once the IP is known, and gets it."""
    pod = make_pod(
        "podip-env",
        kubelet.node,
        [
            {
                "name": "plain",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
            },
            {
                "name": "needs-ip",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "echo ip=$MY_IP; sleep 3600"],
                "env": [{"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            },
        ],
    )
    create(client, pod)
    try:
        running = wait_phase(kubelet, client, "podip-env", "Running")
        pod_ip = running["status"]["podIP"]
        assert pod_ip
        kubelet.wait(lambda: f"ip={pod_ip}" in logs(kubelet, "podip-env", "needs-ip"), what="pod IP in env")
        statuses = {c["name"]: c for c in running["status"]["containerStatuses"]}
        assert set(statuses) == {"plain", "needs-ip"}
        assert all("running" in c["state"] for c in statuses.values())
    finally:
        delete_pod(client, kubelet, "podip-env")
