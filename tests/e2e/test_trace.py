"""``minik trace`` on a whole local cluster (tests/e2e/cluster.py, one node): every component's
spans about a new pod, in order, their chain adding up to the pod's create-to-Running time; a Deployment and a
Service traced through their pods; an unknown object is an error."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from testkit import prereq
from tests.e2e.cluster import LocalCluster, ensure_busybox_image, wait_for

IMAGE = "minik-test/busybox:1"
runner = CliRunner()

# the steps of a new pod behind a Service, in the order they happen
POD_STEPS = [
    "create pods",
    "admission",
    "etcd write",
    "scheduling queue wait",
    "filter and score",
    "bind",
    "sync pod",
    "create sandbox",
    "start sandbox",
    "image web",
    "create container web",
    "start container web",
    "readiness probe web",
    "update pod status",
]
SERVICE_STEPS = ["endpoints", "proxy sync service", "dns records updated"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    prereq.require_node_host()
    ensure_busybox_image()
    c = LocalCluster(nodes=1)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": pod_spec(),
    }


def pod_spec() -> dict[str, Any]:
    return {
        "containers": [
            {
                "name": "web",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", "mkdir -p /www && touch /www/ready && exec sleep 3600"],
                "readinessProbe": {"exec": {"command": ["cat", "/www/ready"]}, "periodSeconds": 1},
            }
        ],
        "terminationGracePeriodSeconds": 1,
    }


def service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def trace(cluster: LocalCluster, *args: str) -> Any:
    return runner.invoke(app, ["--kubeconfig", cluster.apiserver.kubeconfig, "trace", *args])


def trace_json(cluster: LocalCluster, ref: str) -> dict[str, Any]:
    result = trace(cluster, ref, "-o", "json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


def names_in(doc: dict[str, Any], uid: str | None = None) -> list[str]:
    return [
        s["name"]
        for s in doc["spans"]
        if uid is None
        or s["attributes"].get("k8s.object.uid") == uid
        or any(link["attributes"].get("k8s.object.uid") == uid for link in s["links"])
    ]


def has_steps(names: list[str], steps: list[str]) -> bool:
    return all(any(n == s or n.endswith(s) for n in names) for s in steps)


def is_ready(p: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (p.get("status") or {}).get("conditions") or []
    )


def test_pod_trace_has_every_step_in_order_and_adds_up(cluster: LocalCluster) -> None:
    assert cluster.api is not None
    cluster.apply([service("traced", {"app": "traced"})])
    sent = time.time()
    cluster.apply([pod("traced-0", {"app": "traced"})])
    ready = running = 0.0
    deadline = time.time() + 60
    while time.time() < deadline:
        seen = cluster.get("/api/v1/namespaces/default/pods/traced-0")
        if not running and (seen.get("status") or {}).get("phase") == "Running":
            running = time.time()
        if is_ready(seen):
            ready = time.time()
            break
        time.sleep(0.01)
    assert ready and running, cluster.logs()
    observed = ready - sent  # the client's view: POST sent to Ready seen (an upper bound)
    observed_running = running - sent
    uid = cluster.get("/api/v1/namespaces/default/pods/traced-0")["metadata"]["uid"]

    def complete() -> dict[str, Any] | None:  # the components ship their spans in batches
        doc = trace_json(cluster, "pod/traced-0")
        if not has_steps(names_in(doc), POD_STEPS + SERVICE_STEPS):
            return None
        writes = [s for s in doc["spans"] if s["name"] == "update pod status"]
        # the status writes that made the pod Running and Ready may come in a later batch
        running_seen = any(s["attributes"].get("minik.pod.phase") == "Running" for s in writes)
        ready_seen = any(s["attributes"].get("minik.pod.ready") for s in writes)
        return doc if running_seen and ready_seen and doc["pods"] else None

    doc = wait_for(complete, 30, "every step of the pod's trace")
    own = [s for s in doc["spans"] if s["attributes"].get("k8s.object.uid") == uid]
    first: dict[str, dict[str, Any]] = {}
    for s in sorted(own, key=lambda s: s["start"]):
        first.setdefault(s["name"], s)
    # the status write that made the pod Ready (an earlier one reported the containers running)
    first["update pod status"] = next(
        s for s in own if s["name"] == "update pod status" and s["attributes"].get("minik.pod.ready")
    )
    starts = [first[n]["start"] for n in POD_STEPS]
    assert starts == sorted(starts), [(n, first[n]["start"]) for n in POD_STEPS]
    assert all(first[n]["end"] >= first[n]["start"] for n in POD_STEPS)
    # the steps after the pod's Ready status (endpoints, proxy, DNS) are about the Service, linked
    service_spans = [s for s in doc["spans"] if s["attributes"].get("k8s.object.kind") == "Service"]
    assert {"proxy sync service", "dns records updated"} <= {s["name"] for s in service_spans}
    assert any(s["name"].endswith("endpoints") for s in service_spans)

    [summary] = doc["pods"]
    total = summary["createToReadySeconds"]
    # the trace measures create -> Running and create -> Ready server side: from the API server's
    # receipt of the create request to the end of the kubelet's status write with phase Running
    # (and the one that made the pod Ready)
    assert summary["start"] == first["create pods"]["start"]
    running_write = min(
        (
            s
            for s in own
            if s["name"] == "update pod status" and s["attributes"].get("minik.pod.phase") == "Running"
        ),
        key=lambda s: s["end"],
    )
    assert summary["running"] == running_write["end"]
    assert summary["ready"] == min(
        s["end"] for s in own if s["name"] == "update pod status" and s["attributes"].get("minik.pod.ready")
    )
    # ... which lie inside the client's view of the same events (one clock): the request is received
    # after it was sent; a status write ends when the kubelet has its answer, which may come just
    # after a client's read already saw the change (the slack)
    slack = 0.5e9
    assert sent * 1e9 <= summary["start"]
    assert summary["running"] <= running * 1e9 + slack, (summary["running"], running)
    assert summary["ready"] <= ready * 1e9 + slack, (summary["ready"], ready)
    assert total <= observed + slack / 1e9, (total, observed)
    # each wait between steps (a change on its way to the next component) names the components
    # on either side
    assert all(w["from"] and w["to"] for w in summary["waits"])
    measured = summary["createToRunningSeconds"]
    assert 0 < measured <= total
    assert measured <= observed_running + slack / 1e9, (measured, observed_running)
    # the rows of the chain (the top-level steps' counted parts and the waits between components)
    # cover that time: each row starts where the one before reached, is counted for no more than
    # the part of its span past that reach, and the last reaches the Running status write
    by_id = {s["spanId"]: s for s in own}
    chain = [r for r in summary["chain"] if r["until"] == "Running"]
    reach = summary["start"]
    for r in chain:  # one after the other, none counted twice, nested sub-steps left out
        if r["kind"] == "inside":  # wholly inside an earlier step: counted there
            assert by_id[r["spanId"]]["end"] <= reach and r["counted"] == 0
            continue
        if r["kind"] == "wait":
            start, end = r["start"], r["end"]
            assert start == reach and r["from"] and r["to"]
        else:
            span = by_id[r["spanId"]]
            start, end = span["start"], span["end"]
            assert span["parentSpanId"] in ("", span["traceId"][16:])  # a top-level step
            assert start <= reach < end
        assert 0 < r["counted"] * 1e9 <= end - max(start, reach) + 1
        reach = min(end, summary["running"])
    assert reach == summary["running"]
    in_chain = {by_id[r["spanId"]]["name"] for r in chain if r["kind"] != "wait"}
    assert set(
        POD_STEPS[POD_STEPS.index("scheduling queue wait") : POD_STEPS.index("readiness probe web")]
    ) <= (in_chain), in_chain
    assert "admission" not in in_chain and "etcd write" not in in_chain

    text = trace(cluster, "pod/traced-0")
    assert text.exit_code == 0, text.output
    line = next(x for x in text.output.splitlines() if "the steps to Running add up to" in x)
    added = float(line.split("add up to ")[1].split(" ms")[0].replace(",", ""))
    # the printed sum of the rows is the JSON's, which is the measured create -> Running
    assert added == pytest.approx(summary["totalToRunningSeconds"] * 1000, abs=0.1), line
    assert added == pytest.approx(measured * 1000, abs=0.1), line
    assert "COUNTED" in text.output
    for step in POD_STEPS + ["proxy sync service", "dns records updated"]:
        assert step in text.output
    for component in ("apiserver", "scheduler", "kubelet", "controller-manager", "proxy", "dns"):
        assert component in text.output
    assert "created → Ready in" in text.output


def test_deployment_and_service_traces_reach_their_pods(cluster: LocalCluster) -> None:
    labels = {"app": "traced-deploy"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "traced-deploy", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec()},
        },
    }
    cluster.apply([service("traced-deploy", labels), deployment])
    [p] = cluster.wait_running("default", "app=traced-deploy", 1)
    uid = p["metadata"]["uid"]

    def deploy_complete() -> dict[str, Any] | None:
        doc = trace_json(cluster, "deployment/traced-deploy")
        return (
            doc
            if has_steps(names_in(doc, uid), POD_STEPS) and "create replicasets" in names_in(doc)
            else None
        )

    doc = wait_for(deploy_complete, 30, "the Deployment's trace")
    assert "create deployments" in names_in(doc)
    kinds = {s["attributes"].get("k8s.object.kind") for s in doc["spans"]}
    assert {"Deployment", "ReplicaSet", "Pod"} <= kinds

    def service_complete() -> dict[str, Any] | None:
        doc = trace_json(cluster, "service/traced-deploy")
        names = names_in(doc)
        return (
            doc
            if has_steps(names, SERVICE_STEPS + ["create services"])
            and has_steps(names_in(doc, uid), POD_STEPS)
            else None
        )

    wait_for(service_complete, 30, "the Service's trace")
    text = trace(cluster, "deployment/traced-deploy")
    assert text.exit_code == 0 and "replicaset/traced-deploy-" in text.output, text.output


def test_unknown_object_is_an_error(cluster: LocalCluster) -> None:
    result = trace(cluster, "pod/no-such-pod")
    assert result.exit_code != 0
    assert 'pods "no-such-pod" not found' in result.output
    result = trace(cluster, "nosuchkind/x")
    assert result.exit_code != 0
