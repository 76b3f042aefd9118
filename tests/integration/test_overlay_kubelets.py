"""Two real kubelets with ``--pod-network-backend vxlan``, each in a "host" network namespace on its
own segment behind a router (testkit/overlaylab.py), with Docker pods: HTTP pod -> pod across the
overlay both ways, and the pods see each other's own addresses (no masquerading inside the cluster
CIDR).  The kubelets reach the test's API server through a loopback forwarder in their namespaces."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from testkit import prereq
from testkit.host import pod_container
from testkit.overlaylab import LoopbackForwarder, OverlayLab, sh
from testkit.processes import KubeletProcess, root_ca_publisher, running

NS = "default"


def pod_obj(name: str, node: str, image: str) -> dict[str, Any]:
    script = (
        "mkdir -p /tmp/w && echo served-by-$(hostname) > /tmp/w/index.html && httpd -f -v -p 8080 -h /tmp/w"
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "overlay-test"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "c", "image": image, "command": ["sh", "-c", f"trap 'exit 0' TERM; {script} & wait"]}
            ],
        },
    }


def running_ips(client: httpx.Client, names: list[str]) -> dict[str, str] | None:
    r = client.get(f"/api/v1/namespaces/{NS}/pods", params={"labelSelector": "app=overlay-test"})
    got = {p["metadata"]["name"]: p for p in r.json()["items"]}
    out = {}
    for n in names:
        st = (got.get(n) or {}).get("status") or {}
        if st.get("phase") != "Running" or not st.get("podIP"):
            return None
        out[n] = st["podIP"]
    return out


def exec_in(node: str, pod: str, cmd: list[str]) -> tuple[int, str]:
    found = pod_container(node, pod)
    assert found is not None, f"no running container of pod {pod}"
    res = found.exec_run(cmd)
    return res.exit_code, res.output.decode(errors="replace")


def logs_of(node: str, pod: str) -> str:
    found = pod_container(node, pod)
    return found.logs().decode(errors="replace") if found is not None else ""


@pytest.fixture
def lab() -> Iterator[OverlayLab]:
    prereq.require_node_host()
    with OverlayLab() as lab:
        yield lab


def test_pods_on_two_kubelets_talk_through_the_vxlan_overlay(
    lab: OverlayLab, apiserver: Any, image: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    port = urlparse(apiserver.url).port
    assert port
    kubelets = []
    for h in lab.hosts:
        k = KubeletProcess(
            apiserver,
            node=f"ov{tag}-{h.name}",
            subnet=h.pod_cidr,
            node_ip=h.ip,
            extra=("--pod-network-backend", "vxlan"),
        )
        k.argv = ["ip", "netns", "exec", h.ns, *k.argv]
        kubelets.append(k)
    k1, k2 = kubelets
    with (
        LoopbackForwarder(port, [h.ns for h in lab.hosts]),
        running(root_ca_publisher(apiserver)),
        apiserver.http() as api,
    ):
        try:
            for k in kubelets:
                k.start(wait=False)

            def ready(k: KubeletProcess) -> bool:
                r = api.get(f"/api/v1/nodes/{k.node}")
                conds = (r.json().get("status") or {}).get("conditions") or [] if r.status_code == 200 else []
                return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

            for k in kubelets:
                k.wait(functools.partial(ready, k), 60, f"node {k.node} Ready")
            for k, name in ((k1, "pod1"), (k2, "pod2")):
                r = api.post(f"/api/v1/namespaces/{NS}/pods", json=pod_obj(name, k.node, image))
                assert r.status_code == 201, r.text
            ips = k1.wait(lambda: running_ips(api, ["pod1", "pod2"]), 90, "both pods Running")
            assert ips["pod1"].startswith("10.244.1.") and ips["pod2"].startswith("10.244.2.")
            # the kubelets programmed each other: route via the peer's VTEP on minik.1
            k1.wait(
                lambda: (
                    "dev minik.1" in sh("ip", "route", "show", "10.244.2.0/24", ns=lab.hosts[0].ns).stdout
                ),
                30,
                "node1's route to node2's pods",
            )
            mtu = sh("ip", "-o", "link", "show", "minik.1", ns=lab.hosts[0].ns).stdout
            assert "mtu 1450" in mtu
            for (src_k, src), (dst_ip, dst) in (
                ((k1, "pod1"), (ips["pod2"], "pod2")),
                ((k2, "pod2"), (ips["pod1"], "pod1")),
            ):

                def get(src_k: KubeletProcess = src_k, src: str = src, dst_ip: str = dst_ip) -> str | None:
                    code, out = exec_in(
                        src_k.node,
                        src,
                        ["timeout", "5", "wget", "-q", "-O-", f"http://{dst_ip}:8080/index.html"],
                    )
                    return out if code == 0 else None

                assert src_k.wait(get, 30, f"{src} -> {dst}") == f"served-by-{dst}\n"
            # the server saw the client pod's own address (httpd -v logs the peer)
            k2.wait(lambda: ips["pod1"] in logs_of(k2.node, "pod2"), 10, "pod1's own address in pod2's log")
            k1.wait(lambda: ips["pod2"] in logs_of(k1.node, "pod1"), 10, "pod2's own address in pod1's log")
        finally:
            for name in ("pod1", "pod2"):
                api.delete(f"/api/v1/namespaces/{NS}/pods/{name}")
            for k in kubelets:
                k.cleanup()
