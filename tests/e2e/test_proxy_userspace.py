"""The userspace proxy mode end to end on a whole local cluster on the CNI pod network: pods on two
nodes reach a Service by name (DNS through the ``kube-dns`` ClusterIP, UDP forwarded by the
userspace proxy) and by ClusterIP, and traffic reaches backends on both nodes.  The other e2e
tests run the default iptables mode."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator

import pytest

from testkit import prereq
from tests.e2e.cluster import LocalCluster, ensure_busybox_image, require_cni_plugins, wait_for
from tests.e2e.test_services import client_pod, namespace, service, web_pod_spec


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    prereq.require_node_host()
    require_cni_plugins()
    ensure_busybox_image()
    c = LocalCluster(nodes=2, proxy_mode="userspace")
    try:
        c.start()
        n1, n2 = c.nodes[0].name, c.nodes[1].name
        web = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"web-{i}", "namespace": "us", "labels": {"app": "web"}},
                "spec": web_pod_spec(nodeName=node),
            }
            for i, node in enumerate((n1, n2))
        ]
        c.apply([namespace("us"), *web, service("web", "us"), client_pod("client", "us", n1)])
        c.wait_rule(c.get("/api/v1/namespaces/us/services/web")["spec"]["clusterIP"], 80)
        c.wait_running("us", "app=web", 2)
        c.wait_running("us", "role=client", 1)
        c.wait_redirect(c.get("/api/v1/namespaces/us/services/web")["spec"]["clusterIP"], 80)
        yield c
    finally:
        c.stop()


def fetch(c: LocalCluster, url: str) -> str | None:
    code, out = c.exec("us", "client", ["wget", "-O-", "-q", url])
    return out if code == 0 else None


def test_the_proxy_runs_in_userspace_mode(cluster: LocalCluster) -> None:
    vip = cluster.get("/api/v1/namespaces/us/services/web")["spec"]["clusterIP"]
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    assert any(f"-d {vip}/32" in line and "-j REDIRECT" in line for line in nat.splitlines())
    assert f":{cluster.prefix}-SVC-" not in nat  # no kernel service chains in this mode


def test_pods_reach_a_service_by_name_and_both_nodes_backends(cluster: LocalCluster) -> None:
    # the name is resolved through the kube-dns ClusterIP (UDP through the userspace proxy)
    out = wait_for(functools.partial(fetch, cluster, "http://web.us.svc.cluster.local/"), 30, "web by name")
    assert out.strip().startswith("web-"), out
    seen: set[str] = set()

    def both() -> bool:
        got = fetch(cluster, "http://web/")
        if got:
            seen.add(got.strip())
        return seen == {"web-0", "web-1"}

    wait_for(both, 30, f"answers from web-0 and web-1 (seen {seen})")
