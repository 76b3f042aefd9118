"""Workloads end to end, driven by the real kubectl: one real kubelet (Docker) plus hollow nodes, the
real scheduler and controller manager, against a real etcd and API server.

A 3-replica Deployment reaches 3/3; a deleted pod is replaced; ``kubectl set image`` rolls out
with no unavailable replica (maxUnavailable 0); ``kubectl rollout undo`` goes back; a pod asking
for 500 CPUs stays Pending with "Insufficient cpu" in ``kubectl describe``; deleting the Deployment
removes its ReplicaSets and pods; deleting a namespace empties it.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest
import yaml

from testkit.api import apps
from testkit.images import ensure_busybox_image
from testkit.processes import (
    APIServerProcess,
    KubeletProcess,
    controller_manager,
    hollow_nodes,
    running,
    scheduler,
)
from testkit.wait import wait_for
from tests.e2e.conftest import KUBECTL_VERSIONS, Kubectl, Streaming, kubectl_of


@pytest.fixture(scope="module", params=KUBECTL_VERSIONS)
def kubectl_bin(request: pytest.FixtureRequest) -> str:
    """This module's kubectl workflow runs with both kubectls (v1.32 and the v1.37 wheel)."""
    return kubectl_of(request.param)


V2_TAG = "minik-test/busybox:workloads-v2"


@pytest.fixture(scope="module")
def cluster(apiserver: APIServerProcess) -> Iterator[dict[str, Any]]:
    image = ensure_busybox_image()
    client = docker.from_env()
    client.images.get(image).tag(V2_TAG)
    kubelet = KubeletProcess(apiserver)
    prefix = f"e2e-{uuid.uuid4().hex[:4]}-"
    parts = (
        kubelet,
        hollow_nodes(apiserver, 2, prefix, "--lease-period", "2"),
        scheduler(apiserver),
        controller_manager(apiserver),
    )
    try:
        with running(*parts):
            yield {"kubelet": kubelet, "image": image, "parts": parts[1:]}
    finally:
        try:
            client.images.remove(V2_TAG)
        except docker.errors.APIError:
            pass
        client.close()


def deployment_yaml(name: str, image: str, replicas: int = 3) -> str:
    container = {"name": "main", "image": image, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod_spec = {"terminationGracePeriodSeconds": 1, "containers": [container]}
    return yaml.safe_dump(apps("Deployment", name, pod_spec, replicas, strategy=rolling))


def get_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json"))


def pod_names(kubectl: Kubectl, ns: str, app: str) -> set[str]:
    pods = get_json(kubectl, "pods", "-n", ns, "-l", f"app={app}")["items"]
    return {p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def test_deployment_lifecycle_with_kubectl(
    kubectl: Kubectl, ns: str, cluster: dict[str, Any], streaming: list[Streaming]
) -> None:
    image = cluster["image"]
    path = kubectl.write("web.yaml", deployment_yaml("web", image))
    kubectl("apply", "-n", ns, "-f", str(path))
    kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=90s", timeout=100)
    d = get_json(kubectl, "deployment", "web", "-n", ns)
    assert d["status"]["readyReplicas"] == 3 and d["status"]["availableReplicas"] == 3
    out = kubectl("get", "deployment", "web", "-n", ns)
    assert "3/3" in out
    nodes = {p["spec"]["nodeName"] for p in get_json(kubectl, "pods", "-n", ns)["items"]}
    assert len(nodes) == 3  # spread over the real node and both hollow nodes
    assert cluster["kubelet"].node in nodes

    # a deleted pod is replaced
    before = pod_names(kubectl, ns, "web")
    victim = sorted(before)[0]
    kubectl("delete", "pod", victim, "-n", ns, "--wait=true", timeout=60)

    def replaced() -> set[str] | None:
        names = pod_names(kubectl, ns, "web")
        d = get_json(kubectl, "deployment", "web", "-n", ns)
        ok = len(names) == 3 and victim not in names and d["status"].get("availableReplicas") == 3
        return names if ok else None

    wait_for(replaced, 60, "a replacement pod")

    # set image with maxUnavailable 0: available never drops below 3
    low: list[int] = []
    stop = threading.Event()

    def watch_available() -> None:
        while not stop.is_set():
            try:
                st = get_json(kubectl, "deployment", "web", "-n", ns)["status"]
                low.append(int(st.get("availableReplicas") or 0))
            except (AssertionError, ValueError):
                pass
            stop.wait(0.2)

    watcher = threading.Thread(target=watch_available, daemon=True)
    watcher.start()
    try:
        kubectl("set", "image", "-n", ns, "deployment/web", f"main={V2_TAG}")
        kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=120s", timeout=130)
    finally:
        stop.set()
        watcher.join(5)
    assert low and min(low) >= 3, low
    pods = get_json(kubectl, "pods", "-n", ns, "-l", "app=web")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    wait_for(
        lambda: all(
            p["spec"]["containers"][0]["image"] == V2_TAG
            for p in get_json(kubectl, "pods", "-n", ns, "-l", "app=web")["items"]
        ),
        60,
        "only v2 pods",
    )
    assert len(live) >= 3
    assert len(get_json(kubectl, "rs", "-n", ns)["items"]) == 2

    # undo goes back to the first template (its ReplicaSet comes back with revision 3)
    kubectl("rollout", "undo", "-n", ns, "deployment/web")
    kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=120s", timeout=130)
    d = get_json(kubectl, "deployment", "web", "-n", ns)
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == image
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert len(get_json(kubectl, "rs", "-n", ns)["items"]) == 2

    # deleting the Deployment removes its ReplicaSets and pods
    kubectl("delete", "deployment", "web", "-n", ns, timeout=60)
    wait_for(
        lambda: (
            not get_json(kubectl, "rs", "-n", ns)["items"]
            and not get_json(kubectl, "pods", "-n", ns)["items"]
        ),
        60,
        "ReplicaSets and pods gone",
    )


def test_pod_too_big_stays_pending_with_insufficient_cpu(
    kubectl: Kubectl, ns: str, cluster: dict[str, Any]
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "huge"},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": cluster["image"],
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": "500"}},
                }
            ]
        },
    }
    path = kubectl.write("huge.yaml", yaml.safe_dump(pod))
    kubectl("apply", "-n", ns, "-f", str(path))

    def describe() -> str | None:
        out = kubectl("describe", "pod", "huge", "-n", ns)
        return out if "Insufficient cpu" in out else None

    described = wait_for(describe, 30, "FailedScheduling with Insufficient cpu")
    assert "FailedScheduling" in described
    assert get_json(kubectl, "pod", "huge", "-n", ns)["status"]["phase"] == "Pending"
    kubectl("delete", "pod", "huge", "-n", ns, "--wait=true", timeout=60)


def test_deleting_a_namespace_empties_it(kubectl: Kubectl, cluster: dict[str, Any]) -> None:
    name = f"gone-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    path = kubectl.write("app.yaml", deployment_yaml("app", cluster["image"], replicas=2))
    kubectl("apply", "-n", name, "-f", str(path))
    kubectl("create", "configmap", "cfg", "-n", name, "--from-literal=a=b")
    kubectl("rollout", "status", "-n", name, "deployment/app", "--timeout=90s", timeout=100)
    kubectl("delete", "namespace", name, "--timeout=90s", timeout=100)
    out = kubectl.run("get", "namespace", name, check=False)
    assert out.returncode != 0 and "NotFound" in out.stderr
    assert not [p for p in get_json(kubectl, "pods", "-A")["items"] if p["metadata"]["namespace"] == name]
