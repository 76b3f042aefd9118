"""PriorityClass and preemption end to end, driven by the real kubectl (both versions): a hollow
node with 1 CPU, the real scheduler, a real etcd and API server.

``kubectl get priorityclass`` lists the system classes with kubectl's columns; a pod naming an
unknown class is refused with Kubernetes' words; a high-priority pod preempts the low-priority pod
filling the node: the victim's ``Preempted`` event, the preemptor's ``nominatedNodeName``, then
the preemptor running on that node.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from testkit.processes import APIServerProcess, hollow_nodes, running, scheduler
from testkit.wait import unique, wait_for
from tests.e2e.conftest import KUBECTL_VERSIONS, Kubectl, kubectl_of


@pytest.fixture(scope="module", params=KUBECTL_VERSIONS)
def kubectl_bin(request: pytest.FixtureRequest) -> str:
    return kubectl_of(request.param)


@pytest.fixture(scope="module")
def cluster(apiserver: APIServerProcess) -> Iterator[str]:
    prefix = f"prio-{uuid.uuid4().hex[:4]}-"
    parts = (hollow_nodes(apiserver, 1, prefix, "--cpu", "1", "--lease-period", "2"), scheduler(apiserver))
    with running(*parts):
        yield f"{prefix}0"


def pod_yaml(name: str, cpu: str, klass: str, node: str) -> str:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "priorityClassName": klass,
            "terminationGracePeriodSeconds": 1,
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [
                {
                    "name": "main",
                    "image": "busybox:1.36",
                    "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": cpu}},
                }
            ],
        },
    }
    return yaml.safe_dump(body)


def class_yaml(name: str, value: int) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
        }
    )


def test_priority_classes_and_preemption(kubectl: Kubectl, cluster: str, ns: str) -> None:
    node = cluster
    out = kubectl("get", "priorityclass", timeout=30)
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["system-node-critical"][1:3] == ["2000001000", "false"]
    assert rows["system-node-critical"][4] == "PreemptLowerPriority"
    assert rows["system-cluster-critical"][1] == "2000000000"
    refused = kubectl.run("delete", "priorityclass", "system-cluster-critical", check=False, timeout=30)
    assert refused.returncode != 0
    assert "this is a system priority class and cannot be deleted" in refused.stderr

    low, high = unique("low"), unique("high")
    kubectl("apply", "-f", "-", input=class_yaml(low, 10) + "---\n" + class_yaml(high, 1000), timeout=30)
    try:
        refused = kubectl.run(
            "apply",
            "-n",
            ns,
            "-f",
            "-",
            input=pod_yaml("lost", "100m", "nope", node),
            check=False,
            timeout=30,
        )
        assert refused.returncode != 0
        assert 'pods "lost" is forbidden: no PriorityClass with name nope was found' in refused.stderr

        kubectl("apply", "-n", ns, "-f", "-", input=pod_yaml("filler", "800m", low, node), timeout=30)

        def phase(name: str) -> str | None:
            r = kubectl.run("get", "pod", name, "-n", ns, "-o", "json", check=False, timeout=30)
            return json.loads(r.stdout)["status"].get("phase") if r.returncode == 0 else None

        wait_for(lambda: phase("filler") == "Running", what="filler running", timeout=60)
        kubectl("apply", "-n", ns, "-f", "-", input=pod_yaml("urgent", "500m", high, node), timeout=30)
        urgent = json.loads(kubectl("get", "pod", "urgent", "-n", ns, "-o", "json", timeout=30))
        assert urgent["spec"]["priority"] == 1000

        wait_for(lambda: phase("urgent") == "Running", what="urgent running", timeout=90)
        assert phase("filler") is None  # preempted and gone
        got = json.loads(kubectl("get", "pod", "urgent", "-n", ns, "-o", "json", timeout=30))
        assert got["spec"]["nodeName"] == node
        assert got["status"]["nominatedNodeName"] == node
        wide = kubectl("get", "pod", "urgent", "-n", ns, "-o", "wide", timeout=30)
        header, row = wide.splitlines()[:2]
        assert row.split()[header.split().index("NOMINATED")] == node

        events = kubectl(
            "get", "events", "-n", ns, "--field-selector", "involvedObject.name=filler", timeout=30
        )
        assert f"Preempted by pod {urgent['metadata']['uid']} on node {node}" in events
        assert "Preempted" in events.split()
    finally:
        # no namespace controller here: free the node for the next kubectl's run
        kubectl.run(
            "delete", "pods", "--all", "-n", ns, "--grace-period", "0", "--force", check=False, timeout=60
        )
        kubectl.run("delete", "priorityclass", low, high, check=False, timeout=30)
