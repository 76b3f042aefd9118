"""Persistent storage end to end: a real kubelet on Docker, the real scheduler and controller
manager (PersistentVolume and StatefulSet controllers) against a real etcd and API server.

* a pod writes into a dynamically provisioned claim, is deleted, and a new pod with the same claim
  reads the file back (the data lives in the provisioner's directory on the host);
* a StatefulSet with ``volumeClaimTemplates`` gets one bound claim per pod and its pods run, each
  with its own volume.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.api import apps, create_namespace, get, node_ready
from testkit.images import ensure_busybox_image
from testkit.processes import APIServerProcess, KubeletProcess, controller_manager, running, scheduler
from testkit.wait import wait_for


class Stack:
    def __init__(self, api: httpx.Client, kubelet: KubeletProcess, base: Path, image: str) -> None:
        self.api = api
        self.kubelet = kubelet
        self.base = base
        self.image = image


@pytest.fixture(scope="module")
def stack(apiserver: APIServerProcess) -> Iterator[Stack]:
    image = ensure_busybox_image()
    workdir = Path(tempfile.mkdtemp(prefix="minik-storage-e2e-"))
    base = workdir / "volumes"
    kubelet = KubeletProcess(apiserver)
    cm = controller_manager(
        apiserver,
        *("--leader-elect", "false"),
        # pods mount their namespace's kube-root-ca.crt (the service-account volume)
        *("--controllers", "persistentvolume-binder,statefulset,root-ca-cert-publisher,serviceaccount"),
        *("--hostpath-provisioner-dir", str(base)),
    )
    api = apiserver.http()
    try:
        with running(cm, scheduler(apiserver, "--leader-elect", "false"), kubelet):
            wait_for(lambda: node_ready(api, kubelet.node), 60, "node Ready")
            yield Stack(api, kubelet, base, image)
    finally:
        api.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture()
def ns(stack: Stack) -> str:
    return create_namespace(stack.api, "st")


def pod_phase(api: httpx.Client, ns: str, name: str, *phases: str) -> dict[str, Any] | None:
    pod = get(api, f"/api/v1/namespaces/{ns}/pods/{name}")
    return pod if pod is not None and (pod.get("status") or {}).get("phase") in phases else None


def claim_pod(name: str, image: str, claim: str, script: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def test_data_outlives_the_pod(stack: Stack, ns: str) -> None:
    api = stack.api
    claims = f"/api/v1/namespaces/{ns}/persistentvolumeclaims"
    pods = f"/api/v1/namespaces/{ns}/pods"
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Mi"}}},
    }
    assert api.post(claims, json=claim).status_code == 201

    def bound() -> dict[str, Any] | None:
        pvc = get(api, f"{claims}/data")
        return pvc if pvc and pvc["status"].get("phase") == "Bound" else None

    pvc = wait_for(bound, 30, "claim Bound")
    host_dir = stack.base / f"{ns}-data-{pvc['metadata']['uid']}"

    writer = claim_pod("writer", stack.image, "data", "echo kept-across-pods > /data/note && sync")
    assert api.post(pods, json=writer).status_code == 201, "writer"
    wait_for(lambda: pod_phase(api, ns, "writer", "Succeeded", "Failed"), 90, "writer done")
    assert pod_phase(api, ns, "writer", "Succeeded"), stack.kubelet.log()
    assert (host_dir / "note").read_text() == "kept-across-pods\n"

    assert api.delete(f"{pods}/writer").status_code == 200
    wait_for(lambda: get(api, f"{pods}/writer") is None, 60, "writer deleted")

    reader = claim_pod("reader", stack.image, "data", 'test "$(cat /data/note)" = kept-across-pods')
    assert api.post(pods, json=reader).status_code == 201
    wait_for(lambda: pod_phase(api, ns, "reader", "Succeeded", "Failed"), 90, "reader done")
    assert pod_phase(api, ns, "reader", "Succeeded"), stack.kubelet.log()

    # the claim goes: the provisioned volume (Delete) and its directory go too
    assert api.delete(f"{pods}/reader").status_code == 200
    wait_for(lambda: get(api, f"{pods}/reader") is None, 60, "reader deleted")
    assert api.delete(f"{claims}/data").status_code == 200
    wait_for(
        lambda: get(api, f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}") is None, 30, "PV deleted"
    )
    assert not host_dir.exists() and stack.base.is_dir()


def test_statefulset_claims_are_bound_and_pods_run(stack: Stack, ns: str) -> None:
    api = stack.api
    container = {
        "name": "main",
        "image": stack.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", "hostname > /data/id && exec sleep 3600"],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    # the StatefulSet controller replaces a template volume named like a claim template with the
    # claim; the API server's StatefulSet validation still wants every volumeMount to name a
    # template volume
    pod_spec = {
        "terminationGracePeriodSeconds": 1,
        "containers": [container],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }
    claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Mi"}}}
    templates = [{"metadata": {"name": "data"}, "spec": claim}]
    sts = apps("StatefulSet", "db", pod_spec, 2, serviceName="db", volumeClaimTemplates=templates)
    r = api.post(f"/apis/apps/v1/namespaces/{ns}/statefulsets", json=sts)
    assert r.status_code == 201, r.text

    def ready() -> bool:
        obj = get(api, f"/apis/apps/v1/namespaces/{ns}/statefulsets/db") or {}
        return (obj.get("status") or {}).get("readyReplicas") == 2

    wait_for(ready, 120, "2 ready replicas")
    volumes = set()
    for i in range(2):
        pvc = get(api, f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data-db-{i}")
        assert pvc is not None and pvc["status"]["phase"] == "Bound"
        assert pvc["status"]["capacity"] == {"storage": "5Mi"}
        volumes.add(pvc["spec"]["volumeName"])
        host_file = stack.base / f"{ns}-data-db-{i}-{pvc['metadata']['uid']}" / "id"
        wait_for(host_file.exists, 30, f"{host_file}")
        assert host_file.read_text().strip() == f"db-{i}"
    assert len(volumes) == 2
    for name in volumes:
        pv = get(api, f"/api/v1/persistentvolumes/{name}")
        assert pv is not None and pv["status"]["phase"] == "Bound"
