"""The EndpointSlice controller against a real etcd and API server (no kubelet: the test writes
pod status as a kubelet would), and ``kubectl describe service`` (which reads the slices) with the
real kubectl and with minik."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.api import create_namespace, items
from testkit.prereq import require_kubectl
from testkit.processes import APIServerProcess, Process, controller_manager, running
from testkit.wait import wait_for

PODS = "/api/v1/namespaces/{ns}/pods"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
MAX_PER_SLICE = 2  # small, so that a handful of pods spreads over several slices


@pytest.fixture(scope="module")
def manager(apiserver: APIServerProcess) -> Iterator[Process]:
    cm = controller_manager(
        apiserver,
        *("--controllers", "endpointslice,garbagecollector"),
        *("--max-endpoints-per-slice", str(MAX_PER_SLICE)),
    )
    with running(cm):
        yield cm


@pytest.fixture()
def ns(api: httpx.Client, manager: Process) -> str:
    return create_namespace(api)


def create_pod(api: httpx.Client, ns: str, name: str, node: str, ip: str, ready: bool) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "es"}},
        "spec": {
            "nodeName": node,
            "containers": [
                {"name": "main", "image": "busybox", "ports": [{"name": "web", "containerPort": 8080}]}
            ],
        },
    }
    r = api.post(PODS.format(ns=ns), json=pod)
    assert r.status_code == 201, r.text
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cur = r.json()
    cur["status"] = {
        "phase": "Running",
        "podIP": ip,
        "conditions": [{"type": "Ready", "status": str(ready), "lastTransitionTime": now}],
    }
    r = api.put(f"{PODS.format(ns=ns)}/{name}/status", json=cur)
    assert r.status_code == 200, r.text


def slices(api: httpx.Client, ns: str) -> list[dict[str, Any]]:
    return items(api, SLICES.format(ns=ns), labelSelector="kubernetes.io/service-name=web")


def endpoints_by_pod(sl: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["targetRef"]["name"]: e for s in sl for e in s.get("endpoints") or []}


def kubectl(api: APIServerProcess, *args: str) -> str:
    r = subprocess.run(
        [require_kubectl(), "--kubeconfig", api.kubeconfig, *args], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def minik(api: APIServerProcess, *args: str) -> str:
    r = subprocess.run(
        [str(Path(sys.executable).parent / "minik"), "--kubeconfig", api.kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def endpoints_line(text: str) -> str:
    [line] = [ln for ln in text.splitlines() if ln.startswith("Endpoints:")]
    return line.split(":", 1)[1].strip()


def test_slices_follow_pods_and_kubectl_describe_shows_them(
    api: httpx.Client, apiserver: APIServerProcess, ns: str
) -> None:
    node = f"es-node-{ns}"
    r = api.post(
        "/api/v1/nodes",
        json={"metadata": {"name": node, "labels": {"topology.kubernetes.io/zone": "zone-a"}}},
    )
    assert r.status_code == 201, r.text
    try:
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"app": "es"},
                "ports": [{"name": "http", "port": 80, "targetPort": "web", "appProtocol": "http"}],
            },
        }
        r = api.post(f"/api/v1/namespaces/{ns}/services", json=svc)
        assert r.status_code == 201, r.text
        svc_uid = r.json()["metadata"]["uid"]
        # no pods yet: one empty placeholder slice
        [placeholder] = wait_for(lambda: (s := slices(api, ns)) and s, what="placeholder slice")
        assert placeholder["endpoints"] in (None, [])

        for i in range(5):
            create_pod(api, ns, f"es-{i}", node, f"10.7.0.{i + 1}", ready=i != 4)

        def all_listed() -> list[dict[str, Any]] | None:
            sl = slices(api, ns)
            return sl if len(endpoints_by_pod(sl)) == 5 else None

        sl = wait_for(all_listed, what="5 endpoints in slices")
        assert len(sl) == 3 and all(len(s["endpoints"]) <= MAX_PER_SLICE for s in sl)
        for s in sl:
            md = s["metadata"]
            assert re.fullmatch(r"web-[a-z0-9]{5}", md["name"]), md["name"]
            assert md["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
            [ref] = md["ownerReferences"]
            assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
                "Service",
                "web",
                svc_uid,
                True,
            )
            assert s["addressType"] == "IPv4"
            assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]
        eps = endpoints_by_pod(sl)
        assert eps["es-0"]["addresses"] == ["10.7.0.1"]
        assert eps["es-0"]["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert eps["es-4"]["conditions"] == {"ready": False, "serving": False, "terminating": False}
        assert eps["es-0"]["nodeName"] == node and eps["es-0"]["zone"] == "zone-a"
        assert eps["es-0"]["targetRef"]["kind"] == "Pod"

        # kubectl get: the table the server sends
        table = kubectl(apiserver, "-n", ns, "get", "endpointslices")
        assert table.splitlines()[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
        assert all(" IPv4 " in line and " 8080 " in line for line in table.splitlines()[1:])

        # kubectl describe service reads the slices: the four ready endpoints
        want = {f"10.7.0.{i}:8080" for i in range(1, 5)}
        for out in (
            kubectl(apiserver, "-n", ns, "describe", "service", "web"),
            minik(apiserver, "-n", ns, "describe", "service", "web"),
        ):
            line = endpoints_line(out)
            listed, _, more = line.partition(" + ")
            assert set(listed.split(",")) < want and more == "1 more...", line

        # pods go: slices are updated in place, and those no longer needed deleted
        names_before = {s["metadata"]["name"] for s in sl}
        for i in (0, 1, 2):
            assert (
                api.delete(f"{PODS.format(ns=ns)}/es-{i}", params={"gracePeriodSeconds": 0}).status_code
                == 200
            )

        def shrunk() -> list[dict[str, Any]] | None:
            sl = slices(api, ns)
            return sl if set(endpoints_by_pod(sl)) == {"es-3", "es-4"} else None

        sl = wait_for(shrunk, what="slices without the deleted pods")
        assert {s["metadata"]["name"] for s in sl} <= names_before
        assert len(sl) == 1 or all(s["endpoints"] for s in sl)
        assert endpoints_line(kubectl(apiserver, "-n", ns, "describe", "service", "web")) == "10.7.0.4:8080"

        # the Service goes: so do its slices
        assert api.delete(f"/api/v1/namespaces/{ns}/services/web").status_code == 200
        wait_for(lambda: not slices(api, ns), what="slices removed with the service")
    finally:
        api.delete(f"/api/v1/nodes/{node}")
