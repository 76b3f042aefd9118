"""``autoscaling/v1`` HorizontalPodAutoscalers on a real API server and etcd: discovery (v2
preferred), every verb through the kubernetes Python client's ``AutoscalingV1Api``, the conversion
to and from the stored ``autoscaling/v2`` (v2-only fields kept in annotations), kubectl 1.37's
``autoscale``, ``get``, ``patch`` and ``delete`` of ``horizontalpodautoscalers.v1.autoscaling``, and bad input answered with a Status."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config, watch

from testkit import prereq
from testkit.processes import APIServerProcess

NS = "default"
HPAS = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers"
V1_HPAS = f"/apis/autoscaling/v1/namespaces/{NS}/horizontalpodautoscalers"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


@pytest.fixture()
def v1api(apiserver: APIServerProcess) -> Iterator[client.AutoscalingV1Api]:
    configuration = client.Configuration()
    config.load_kube_config(config_file=apiserver.kubeconfig, client_configuration=configuration)
    with client.ApiClient(configuration) as c:
        yield client.AutoscalingV1Api(c)


def v2_hpa(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
                },
                {
                    "type": "Resource",
                    "resource": {
                        "name": "memory",
                        "target": {"type": "AverageValue", "averageValue": "100Mi"},
                    },
                },
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}},
        },
    }


def test_discovery_lists_v1_after_the_preferred_v2(api: httpx.Client) -> None:
    group = api.get("/apis/autoscaling").json()
    assert [v["version"] for v in group["versions"]] == ["v2", "v1"]
    assert group["preferredVersion"]["version"] == "v2"
    listed = next(g for g in api.get("/apis").json()["groups"] if g["name"] == "autoscaling")
    assert [v["groupVersion"] for v in listed["versions"]] == ["autoscaling/v2", "autoscaling/v1"]
    resources = {r["name"]: r for r in api.get("/apis/autoscaling/v1").json()["resources"]}
    hpa = resources["horizontalpodautoscalers"]
    assert hpa["kind"] == "HorizontalPodAutoscaler" and hpa["namespaced"] and hpa["shortNames"] == ["hpa"]
    assert set(hpa["verbs"]) == {
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    }
    assert set(resources["horizontalpodautoscalers/status"]["verbs"]) == {"get", "patch", "update"}
    doc = api.get("/apis", headers={"Accept": AGGREGATED}).json()
    item = next(i for i in doc["items"] if i["metadata"]["name"] == "autoscaling")
    assert [v["version"] for v in item["versions"]] == ["v2", "v1"]
    [res] = item["versions"][1]["resources"]
    assert res["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "HorizontalPodAutoscaler"}
    assert res["subresources"][0]["subresource"] == "status"


def test_every_verb_through_the_python_client(api: httpx.Client, v1api: client.AutoscalingV1Api) -> None:
    body = client.V1HorizontalPodAutoscaler(
        metadata=client.V1ObjectMeta(name="py", labels={"suite": "v1"}),
        spec=client.V1HorizontalPodAutoscalerSpec(
            scale_target_ref=client.V1CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name="web"
            ),
            min_replicas=1,
            max_replicas=3,
            target_cpu_utilization_percentage=50,
        ),
    )
    created = v1api.create_namespaced_horizontal_pod_autoscaler(NS, body)
    assert created.api_version == "autoscaling/v1" and created.spec.target_cpu_utilization_percentage == 50
    stored = api.get(f"{HPAS}/py").json()
    assert stored["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
        }
    ]

    events: list[tuple[str, Any]] = []

    def follow() -> None:
        w = watch.Watch()
        for e in w.stream(
            v1api.list_namespaced_horizontal_pod_autoscaler,
            NS,
            label_selector="suite=v1",
            resource_version=created.metadata.resource_version,
            timeout_seconds=5,
        ):
            events.append((e["type"], e["object"]))
            if e["type"] == "DELETED":
                w.stop()

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        got = v1api.read_namespaced_horizontal_pod_autoscaler("py", NS)
        got.spec.max_replicas = 5
        replaced = v1api.replace_namespaced_horizontal_pod_autoscaler("py", NS, got)
        assert replaced.spec.max_replicas == 5
        patched = v1api.patch_namespaced_horizontal_pod_autoscaler(
            "py", NS, {"spec": {"targetCPUUtilizationPercentage": 70}}
        )
        assert patched.spec.target_cpu_utilization_percentage == 70 and patched.spec.max_replicas == 5
        assert (
            api.get(f"{HPAS}/py").json()["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"]
            == 70
        )

        status = v1api.read_namespaced_horizontal_pod_autoscaler_status("py", NS)
        status.status = client.V1HorizontalPodAutoscalerStatus(
            current_replicas=2, desired_replicas=3, current_cpu_utilization_percentage=91
        )
        written = v1api.replace_namespaced_horizontal_pod_autoscaler_status("py", NS, status)
        assert (
            written.status.current_cpu_utilization_percentage == 91 and written.status.desired_replicas == 3
        )
        v2_status = api.get(f"{HPAS}/py").json()["status"]
        assert v2_status["currentMetrics"] == [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 91}}}
        ]
        assert written.spec.max_replicas == 5  # the status write left the spec alone

        listed = v1api.list_horizontal_pod_autoscaler_for_all_namespaces(label_selector="suite=v1")
        assert [h.metadata.name for h in listed.items] == ["py"] and listed.items[0].api_version in (
            None,
            "autoscaling/v1",
        )
        deleted = v1api.delete_namespaced_horizontal_pod_autoscaler("py", NS)
        assert (deleted["status"] if isinstance(deleted, dict) else deleted.status) == "Success"
    finally:
        follower.join(10)
    kinds = [t for t, _ in events]
    assert kinds[:1] == ["MODIFIED"] and kinds[-1] == "DELETED", kinds
    assert all(isinstance(o, client.V1HorizontalPodAutoscaler) for _, o in events)
    assert any(o.spec.target_cpu_utilization_percentage == 70 for _, o in events)

    for name in ("a", "b"):
        v1api.create_namespaced_horizontal_pod_autoscaler(
            NS, {**body.to_dict(), "metadata": {"name": name, "labels": {"suite": "gone"}}}
        )
    v1api.delete_collection_namespaced_horizontal_pod_autoscaler(NS, label_selector="suite=gone")
    assert v1api.list_namespaced_horizontal_pod_autoscaler(NS, label_selector="suite=gone").items == []


def test_v2_only_fields_ride_in_annotations_through_a_v1_round_trip(api: httpx.Client) -> None:
    r = api.post(HPAS, json=v2_hpa("both"))
    assert r.status_code == 201, r.text
    v1 = api.get(f"{V1_HPAS}/both").json()
    assert v1["apiVersion"] == "autoscaling/v1" and v1["spec"]["targetCPUUtilizationPercentage"] == 60
    notes = v1["metadata"]["annotations"]
    assert json.loads(notes["autoscaling.alpha.kubernetes.io/metrics"]) == [v2_hpa("x")["spec"]["metrics"][1]]
    assert (
        json.loads(notes["autoscaling.alpha.kubernetes.io/behavior"])["scaleDown"][
            "stabilizationWindowSeconds"
        ]
        == 30
    )
    v1["spec"]["maxReplicas"] = 6
    r = api.put(f"{V1_HPAS}/both", json=v1)
    assert r.status_code == 200, r.text
    v2 = api.get(f"{HPAS}/both").json()
    assert v2["spec"]["maxReplicas"] == 6
    assert [m["resource"]["name"] for m in v2["spec"]["metrics"]] == ["cpu", "memory"]
    assert v2["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 30
    assert not any(k.startswith("autoscaling.alpha") for k in (v2["metadata"].get("annotations") or {}))
    # a JSON patch of the v1 form, and a table of v1 objects
    r = api.patch(
        f"{V1_HPAS}/both",
        content=json.dumps([{"op": "replace", "path": "/spec/minReplicas", "value": 2}]),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200 and r.json()["spec"]["minReplicas"] == 2, r.text
    table = api.get(V1_HPAS, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json()
    assert table["kind"] == "Table" and any(c["name"] == "Targets" for c in table["columnDefinitions"])
    # a watch-list: the state as v1 objects, then the bookmark that ends the initial events
    params = {
        "watch": "1",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "2",
    }
    with api.stream("GET", V1_HPAS, params=params) as watched:
        assert watched.status_code == 200
        events = [json.loads(line) for line in watched.iter_lines() if line]
    added = [e["object"] for e in events if e["type"] == "ADDED"]
    assert [(o["apiVersion"], o["metadata"]["name"]) for o in added] == [("autoscaling/v1", "both")]
    mark = next(e["object"] for e in events if e["type"] == "BOOKMARK")
    assert mark["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"
    assert api.delete(f"{V1_HPAS}/both").status_code == 200


def test_bad_input_is_a_status(api: httpx.Client) -> None:
    bad = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "bad", "annotations": {"autoscaling.alpha.kubernetes.io/metrics": "{not json"}},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 2},
    }
    r = api.post(V1_HPAS, json=bad)
    assert r.status_code == 422 and r.json()["reason"] == "Invalid", r.text
    bad["metadata"] = {"name": "bad"}
    bad["spec"]["targetCPUUtilizationPercentage"] = "lots"  # type: ignore[index]
    r = api.post(V1_HPAS, json=bad)
    assert r.status_code in (400, 422) and r.json()["kind"] == "Status", r.text
    r = api.post(V1_HPAS, json={**bad, "apiVersion": "autoscaling/v2"})
    assert r.status_code == 400 and r.json()["kind"] == "Status", r.text
    r = api.patch(f"{V1_HPAS}/bad", content="{}", headers={"Content-Type": "application/apply-patch+yaml"})
    assert r.status_code == 415 and r.json()["kind"] == "Status", r.text
    assert api.get(f"{V1_HPAS}/nope").status_code == 404


def _kubectl(binary: str, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "--kubeconfig", str(kubeconfig), "--cache-dir", str(kubeconfig.parent / "cache"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_kubectl_1_37_autoscale_and_get_hpa_v1(api: httpx.Client, apiserver: APIServerProcess) -> None:
    binary = prereq.require_kubectl_wheel()
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "busybox"}]},
            },
        },
    }
    r = api.post(f"/apis/apps/v1/namespaces/{NS}/deployments", json=deployment)
    assert r.status_code == 201, r.text
    with tempfile.TemporaryDirectory(prefix="minik-hpa-v1-") as tmp:
        kubeconfig = Path(shutil.copy(apiserver.kubeconfig, Path(tmp) / "config"))
        made = _kubectl(
            binary, kubeconfig, "autoscale", "deployment", "web", "--min=1", "--max=4", "--cpu-percent=55"
        )
        assert made.returncode == 0, made.stderr
        # the full resource name keeps the version; kubectl 1.37 expands a short name such as
        # hpa.v1.autoscaling to the group's preferred version (client-go's shortcut expander drops
        # the version), against Kubernetes too
        got = _kubectl(
            binary, kubeconfig, "get", "horizontalpodautoscalers.v1.autoscaling", "web", "-o", "json"
        )
        assert got.returncode == 0, got.stderr
        doc = json.loads(got.stdout)
        assert doc["apiVersion"] == "autoscaling/v1" and doc["spec"]["targetCPUUtilizationPercentage"] == 55
        table = _kubectl(binary, kubeconfig, "get", "hpa.v1.autoscaling")
        assert table.returncode == 0, table.stderr
        table = _kubectl(binary, kubeconfig, "get", "horizontalpodautoscalers.v1.autoscaling", "-v=6")
        assert table.returncode == 0, table.stderr
        header, row = table.stdout.splitlines()[:2]
        assert "TARGETS" in header and row.split()[:2] == ["web", "Deployment/web"], table.stdout
        assert "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers" in table.stderr
        patched = _kubectl(
            binary,
            kubeconfig,
            "patch",
            "hpa.v1.autoscaling",
            "web",
            "--type",
            "merge",
            "-p",
            '{"spec":{"maxReplicas":7}}',
        )
        assert patched.returncode == 0, patched.stderr
        assert api.get(f"{HPAS}/web").json()["spec"]["maxReplicas"] == 7
        gone = _kubectl(binary, kubeconfig, "delete", "horizontalpodautoscalers.v1.autoscaling", "web")
        assert gone.returncode == 0, gone.stderr
        assert api.get(f"{HPAS}/web").status_code == 404
        # kubectl apply of a v1 manifest: validated with and patched through the v1 OpenAPI document
        manifest = Path(tmp) / "hpa.yaml"
        for replicas, verb in ((3, "created"), (5, "configured")):
            manifest.write_text(
                "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: applied}\n"
                "spec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n"
                f"  maxReplicas: {replicas}\n  targetCPUUtilizationPercentage: 40\n"
            )
            applied = _kubectl(binary, kubeconfig, "apply", "-f", str(manifest))
            assert applied.returncode == 0 and verb in applied.stdout, applied.stderr
        assert api.get(f"{HPAS}/applied").json()["spec"]["maxReplicas"] == 5
