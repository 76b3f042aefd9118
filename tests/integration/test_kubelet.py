"""The kubelet against a real API server and a real Docker engine (busybox image built locally).

Each module run starts a real ``minik-kubelet`` on a unique node name and Docker network; every
container, network and volume it made is removed by the node label when the module ends, also
when a test fails."""

from __future__ import annotations

import base64
import ipaddress
import signal
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest

from testkit.api import configmap
from testkit.host import NODE_LABEL
from testkit.processes import KubeletProcess

NS = "default"


@pytest.fixture()
def client(apiserver: Any) -> Iterator[httpx.Client]:
    with apiserver.http() as c:
        yield c


def make_pod(name: str, node: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"nodeName": node, "containers": containers, "terminationGracePeriodSeconds": 2, **spec},
    }


def sh_container(name: str, image: str, script: str, **fields: Any) -> dict[str, Any]:
    """A container running ``sh -c SCRIPT``."""
    return {"name": name, "image": image, "command": ["sh", "-c", script], **fields}


def get_pod(client: httpx.Client, name: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/namespaces/{NS}/pods/{name}")
    r.raise_for_status()
    return dict(r.json())


def create(client: httpx.Client, obj: dict[str, Any], plural: str = "pods") -> None:
    r = client.post(f"/api/v1/namespaces/{NS}/{plural}", json=obj)
    assert r.status_code == 201, r.text


def wait_phase(k: KubeletProcess, client: httpx.Client, name: str, *phases: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        pod = get_pod(client, name)
        return pod if (pod.get("status") or {}).get("phase") in phases else None

    return dict(k.wait(check, 60, f"pod {name} in {phases}"))


def logs(k: KubeletProcess, pod: str, container: str, **params: str) -> str:
    with k.http(timeout=10) as c:
        return c.get(f"/containerLogs/{NS}/{pod}/{container}", params=params).text


def node_containers(k: KubeletProcess, pod_uid: str) -> list[Any]:
    dc = docker.from_env()
    try:
        return list(
            dc.containers.list(
                all=True, filters={"label": [f"{NODE_LABEL}={k.node}", f"io.kubernetes.pod.uid={pod_uid}"]}
            )
        )
    finally:
        dc.close()


def delete_pod(client: httpx.Client, k: KubeletProcess, *names: str) -> None:
    paths = [f"/api/v1/namespaces/{NS}/pods/{name}" for name in names]
    for path in paths:
        client.delete(path)
    k.wait(lambda: all(client.get(p).status_code == 404 for p in paths), 60, f"{', '.join(names)} deleted")


def test_node_registered_ready_with_lease(kubelet: KubeletProcess, client: httpx.Client) -> None:
    node = client.get(f"/api/v1/nodes/{kubelet.node}").json()
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == kubelet.node
    assert labels["kubernetes.io/os"] == "linux"
    status = node["status"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "MemoryPressure": "False",
        "DiskPressure": "False",
        "PIDPressure": "False",
    }
    assert status["capacity"]["pods"] == "110"
    assert int(status["capacity"]["cpu"]) >= 1
    assert status["nodeInfo"]["containerRuntimeVersion"].startswith("docker://")
    assert {a["type"] for a in status["addresses"]} == {"InternalIP", "Hostname"}
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == kubelet.port

    def lease() -> dict[str, Any] | None:
        r = client.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{kubelet.node}")
        return r.json() if r.status_code == 200 else None

    first = kubelet.wait(lease, 30, "lease")
    assert first["spec"]["holderIdentity"] == kubelet.node
    kubelet.wait(
        lambda: (lease() or {}).get("spec", {}).get("renewTime") != first["spec"]["renewTime"],
        30,
        "lease renewal",
    )


def test_pod_runs_shares_localhost_and_gets_pod_ip(
    kubelet: KubeletProcess,
    client: httpx.Client,
    image: str,
) -> None:
    create(client, configmap("cfg", {"color": "blue", "size": "L"}), "configmaps")
    create(
        client,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "sec"},
            "data": {"pw": base64.b64encode(b"s3cret").decode()},
        },
        "secrets",
    )
    pod = make_pod(
        "web",
        kubelet.node,
        [
            {
                "name": "server",
                "image": image,
                "command": [
                    "sh",
                    "-c",
                    "mkdir -p /www && echo hello-from-server > /www/index.html && exec httpd -f -p 8080 -h /www",
                ],
            },
            {
                "name": "client",
                "image": image,
                "command": ["sh", "-c"],
                "args": [
                    "until wget -O- http://127.0.0.1:8080/index.html; do sleep 0.2; done; "
                    "echo \"GREETING=$GREETING\" ARG=$(NAME) COLOR=$COLOR PW=$PW CFG_size=$CFG_size POD=$POD_NAME 'ESC=$$(NAME)'; "
                    "cat /etc/cfg/color; echo; exec sleep 3600"
                ],
                "env": [
                    {"name": "NAME", "value": "world"},
                    {"name": "GREETING", "value": "hello-$(NAME)-$(MISSING)"},
                    {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
                    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
                "volumeMounts": [{"name": "cfgvol", "mountPath": "/etc/cfg"}],
            },
        ],
        volumes=[{"name": "cfgvol", "configMap": {"name": "cfg"}}],
    )
    create(client, pod)
    running = wait_phase(kubelet, client, "web", "Running")
    status = running["status"]
    assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network(kubelet.subnet)
    assert status["hostIP"] == "127.0.0.1"
    for cs in status["containerStatuses"]:
        assert cs["containerID"].startswith("docker://")
        assert "running" in cs["state"]
    kubelet.wait(lambda: "PW=s3cret" in logs(kubelet, "web", "client"), 30, "client output")
    out = logs(kubelet, "web", "client")
    assert "hello-from-server" in out
    assert (
        "GREETING=hello-world-$(MISSING) ARG=world COLOR=blue PW=s3cret CFG_size=L POD=web ESC=$(NAME)" in out
    )
    assert "\nblue\n" in out
    ready = kubelet.wait(
        lambda: (
            (p := get_pod(client, "web"))
            and {c["type"]: c["status"] for c in p["status"]["conditions"]}.get("Ready") == "True"
            and p
        ),
        30,
        "Ready",
    )
    uid = ready["metadata"]["uid"]
    before = {c.id for c in node_containers(kubelet, uid)}
    assert len(before) == 3  # sandbox + 2

    # a kubelet killed with -9 and started again adopts the running containers
    kubelet.stop(signal.SIGKILL)
    kubelet.start()
    get_pod(client, "web")  # still there
    kubelet.wait(lambda: get_pod(client, "web")["status"]["phase"] == "Running", 30, "Running after restart")
    after = node_containers(kubelet, uid)
    assert {c.id for c in after} == before
    assert all(c.status == "running" for c in after)

    delete_pod(client, kubelet, "web")
    kubelet.wait(lambda: not node_containers(kubelet, uid), 30, "containers removed")


def test_crash_loop_back_off(kubelet: KubeletProcess, client: httpx.Client, image: str) -> None:
    create(
        client,
        make_pod(
            "crash",
            kubelet.node,
            [{"name": "c", "image": image, "command": ["sh", "-c", "echo boom; exit 3"]}],
        ),
    )

    def in_backoff() -> dict[str, Any] | None:
        pod = get_pod(client, "crash")
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = cs["state"].get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff" and cs["restartCount"] >= 1:
                return cs
        return None

    cs = kubelet.wait(in_backoff, 60, "CrashLoopBackOff")
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert get_pod(client, "crash")["status"]["phase"] == "Running"
    assert "boom" in logs(kubelet, "crash", "c", previous="true")
    delete_pod(client, kubelet, "crash")


def test_restart_never_succeeded_and_failed(
    kubelet: KubeletProcess, client: httpx.Client, image: str
) -> None:
    create(
        client,
        make_pod(
            "ok",
            kubelet.node,
            [
                {
                    "name": "main",
                    "image": image,
                    "command": ["sh", "-c", "cat /work/msg"],
                    "volumeMounts": [{"name": "w", "mountPath": "/work"}],
                }
            ],
            restartPolicy="Never",
            initContainers=[
                {
                    "name": "prep",
                    "image": image,
                    "command": ["sh", "-c", "echo prepared > /work/msg"],
                    "volumeMounts": [{"name": "w", "mountPath": "/work"}],
                }
            ],
            volumes=[{"name": "w", "emptyDir": {}}],
        ),
    )
    create(
        client,
        make_pod(
            "bad",
            kubelet.node,
            [{"name": "main", "image": image, "command": ["sh", "-c", "exit 7"]}],
            restartPolicy="Never",
        ),
    )
    ok = wait_phase(kubelet, client, "ok", "Succeeded", "Failed")
    assert ok["status"]["phase"] == "Succeeded"
    assert ok["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert ok["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert "prepared" in logs(kubelet, "ok", "main")
    bad = wait_phase(kubelet, client, "bad", "Succeeded", "Failed")
    assert bad["status"]["phase"] == "Failed"
    term = bad["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (7, "Error")
    assert bad["status"]["containerStatuses"][0]["restartCount"] == 0
    delete_pod(client, kubelet, "ok", "bad")


def test_missing_image_and_config_reported(kubelet: KubeletProcess, client: httpx.Client, image: str) -> None:
    create(
        client,
        make_pod(
            "never", kubelet.node, [{"name": "c", "image": "minik-test/absent:1", "imagePullPolicy": "Never"}]
        ),
    )
    create(
        client,
        make_pod(
            "nocm",
            kubelet.node,
            [
                {
                    "name": "c",
                    "image": image,
                    "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}],
                }
            ],
        ),
    )

    def reason(name: str) -> str:
        cs = (get_pod(client, name).get("status") or {}).get("containerStatuses") or [{}]
        return str(((cs[0].get("state") or {}).get("waiting") or {}).get("reason", ""))

    kubelet.wait(lambda: reason("never") == "ErrImageNeverPull", 30, "ErrImageNeverPull")
    kubelet.wait(lambda: reason("nocm") == "CreateContainerConfigError", 30, "CreateContainerConfigError")
    assert get_pod(client, "never")["status"]["phase"] == "Pending"
    delete_pod(client, kubelet, "never", "nocm")


def test_readiness_probe_and_exec(kubelet: KubeletProcess, client: httpx.Client, image: str) -> None:
    import asyncio
    import json
    from urllib.parse import quote

    import websockets

    create(
        client,
        make_pod(
            "probed",
            kubelet.node,
            [
                {
                    "name": "c",
                    "image": image,
                    "command": ["sh", "-c", "exec sleep 3600"],
                    "readinessProbe": {"exec": {"command": ["cat", "/ready"]}, "periodSeconds": 1},
                }
            ],
        ),
    )
    wait_phase(kubelet, client, "probed", "Running")

    def ready() -> str:
        conds = get_pod(client, "probed")["status"]["conditions"]
        return str({c["type"]: c["status"] for c in conds}["Ready"])

    assert ready() == "False"

    async def run_exec(cmd: list[str], stdin: bytes = b"") -> tuple[bytes, dict[str, Any]]:
        query = (
            "&".join(f"command={quote(c, safe='')}" for c in cmd)
            + "&stdout=1&stderr=1"
            + ("&stdin=1" if stdin else "")
        )
        url = kubelet.ws_url(f"/exec/{NS}/probed/c?{query}")
        out = b""
        status: dict[str, Any] = {}
        async with websockets.connect(url, subprotocols=["v5.channel.k8s.io"], **kubelet.ws_options()) as ws:  # type: ignore[list-item]
            if stdin:
                await ws.send(b"\x00" + stdin)
                await ws.send(b"\xff\x00")
            async for msg in ws:
                assert isinstance(msg, bytes)
                if msg[0] in (1, 2):
                    out += msg[1:]
                elif msg[0] == 3:
                    status = json.loads(msg[1:])
        return out, status

    out, status = asyncio.run(run_exec(["sh", "-c", "touch /ready; echo made; exit 4"]))
    assert out == b"made\n"
    assert status["details"]["causes"][0]["message"] == "4"
    out, status = asyncio.run(run_exec(["cat"], stdin=b"piped"))
    assert out == b"piped" and status["status"] == "Success"
    kubelet.wait(lambda: ready() == "True", 30, "Ready after the probe passes")
    delete_pod(client, kubelet, "probed")
