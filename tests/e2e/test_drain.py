"""``kubectl drain`` (both kubectls) and ``minik drain`` on a two-node cluster: a DaemonSet pod
refuses the drain without ``--ignore-daemonsets``; a budget that never allows a disruption makes
``--timeout`` expire after the 429 retries; with room in the budget the node drains, the evicted
Deployment pods come back on the other node."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.images import BUSYBOX_IMAGE
from testkit.wait import unique
from tests.e2e.cluster import LocalCluster, local_cluster, wait_for
from tests.e2e.conftest import kubectl_of

__all__ = ["local_cluster"]

pytestmark = pytest.mark.e2e

BLOCKED = "Cannot evict pod as it would violate the pod's disruption budget."
TOOLS = ["system", "wheel-1.37", "minik"]


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="minik-drain-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def tool_argv(tool: str, cluster: LocalCluster, workdir: Path) -> list[str]:
    kubeconfig = str(cluster.apiserver.kubeconfig)
    if tool == "minik":
        return [str(Path(sys.executable).parent / "minik"), "--kubeconfig", kubeconfig]
    cache = workdir / f"cache-{tool}"
    return [kubectl_of(tool), "--kubeconfig", kubeconfig, "--cache-dir", str(cache)]


def run(argv: list[str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )


def workloads(ns: str) -> list[dict[str, Any]]:
    labels = {"app": "web"}
    spec = {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"]}],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
    }
    ds_spec = {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"]}],
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": spec},
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": ns},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": ds_spec},
            },
        },
    ]


def set_unschedulable(cluster: LocalCluster, node: str, value: bool) -> None:
    assert cluster.api is not None
    r = cluster.api.patch(
        f"/api/v1/nodes/{node}",
        json={"spec": {"unschedulable": value or None}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text


def budget(cluster: LocalCluster, ns: str, min_available: int) -> None:
    assert cluster.api is not None
    path = f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"
    body = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"}}
    body["spec"] = {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}}
    if cluster.api.get(f"{path}/web").status_code == 404:
        assert cluster.api.post(path, json=body).status_code == 201
    else:
        r = cluster.api.patch(
            f"{path}/web",
            json={"spec": {"minAvailable": min_available}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text

    def settled() -> bool:
        status = cluster.get(f"{path}/web").get("status") or {}
        return status.get("observedGeneration") == cluster.get(f"{path}/web")["metadata"]["generation"] and (
            status.get("disruptionsAllowed") == max(0, 2 - min_available)
        )

    wait_for(settled, 60, f"budget minAvailable={min_available} settled")


@pytest.mark.parametrize("tool", TOOLS)
def test_drain_honours_the_budget(tool: str, local_cluster: LocalCluster, workdir: Path) -> None:
    c = local_cluster
    first, second = c.nodes[0].name, c.nodes[1].name
    argv = tool_argv(tool, c, workdir)
    ns = unique("drain")
    set_unschedulable(c, second, True)  # everything starts on the first node
    try:
        c.apply(workloads(ns))
        web = c.wait_running(ns, "app=web", 2)
        assert {p["spec"]["nodeName"] for p in web} == {first}
        c.wait_running(ns, "app=agent", 2)  # one per node: DaemonSet pods tolerate a cordon
        set_unschedulable(c, second, False)

        # a DaemonSet pod refuses the drain without --ignore-daemonsets
        r = run(argv, "drain", first, "--delete-emptydir-data", "--timeout=20s")
        assert r.returncode != 0, r.stdout + r.stderr
        assert f"node/{first} cordoned" in r.stdout
        assert "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)" in r.stderr
        assert f"{ns}/agent-" in r.stderr

        # a budget that never allows a disruption: 429s until --timeout
        budget(c, ns, 2)
        r = run(argv, "drain", first, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=8s")
        assert r.returncode != 0, r.stdout + r.stderr
        assert f"node/{first} already cordoned" in r.stdout
        assert "ignoring DaemonSet-managed Pods" in r.stderr
        assert f"(will retry after 5s): {BLOCKED}" in r.stderr
        assert "global timeout reached: 8s" in r.stderr
        assert len(c.wait_running(ns, "app=web", 2)) == 2

        # room for one disruption at a time: the drain evicts one pod, waits for its
        # replacement on the other node, then evicts the second
        budget(c, ns, 1)
        r = run(argv, "drain", first, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=180s")
        assert r.returncode == 0, r.stdout + r.stderr
        for pod in web:
            name = pod["metadata"]["name"]
            assert f"evicting pod {ns}/{name}" in r.stdout
            assert f"pod/{name} evicted" in r.stdout
        assert r.stdout.rstrip().endswith(f"node/{first} drained")
        moved = c.wait_running(ns, "app=web", 2)
        assert {p["spec"]["nodeName"] for p in moved} == {second}
        assert not {p["metadata"]["name"] for p in moved} & {p["metadata"]["name"] for p in web}

        r = run(argv, "uncordon", first)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"node/{first} uncordoned"
    finally:
        set_unschedulable(c, first, False)
        set_unschedulable(c, second, False)
        assert c.api is not None
        c.api.delete(f"/api/v1/namespaces/{ns}")
