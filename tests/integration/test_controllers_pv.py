"""The PersistentVolume controller in a real ``minik-controller-manager`` against a real etcd and API
server: static binding, claims and volumes pre-bound to each other, dynamic provisioning into a
temporary base directory, release with Delete (volume and directory gone) and with Retain."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.api import create_namespace, get
from testkit.processes import APIServerProcess, Process, running
from testkit.wait import unique, wait_for
from tests.integration.test_controllers import manager_process

PVS = "/api/v1/persistentvolumes"


@pytest.fixture(scope="module")
def base_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="minik-pv-test-"))
    try:
        yield d / "volumes"
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def manager(apiserver: APIServerProcess, base_dir: Path) -> Iterator[Process]:
    cm = manager_process(
        apiserver, "--controllers", "persistentvolume-binder", "--hostpath-provisioner-dir", str(base_dir)
    )
    with running(cm):
        yield cm


@pytest.fixture()
def ns(api: httpx.Client, manager: Process) -> str:
    return create_namespace(api, "pv")


def make_pv(
    name: str, size: str, cls: str | None = None, policy: str = "Retain", **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": spec.pop("labels", {})},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.pop("accessModes", ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": policy,
            "hostPath": {"path": f"/tmp/{name}"},
            **spec,
        },
    }
    if cls is not None:
        body["spec"]["storageClassName"] = cls
    return body


def make_pvc(name: str, size: str = "1Gi", cls: str | None = "", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, **spec},
    }
    if cls is not None:
        body["spec"]["storageClassName"] = cls
    return body


def create(api: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post(path, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def phase(api: httpx.Client, path: str, want: str) -> dict[str, Any] | None:
    obj = get(api, path)
    return obj if obj is not None and (obj.get("status") or {}).get("phase") == want else None


def claims(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/persistentvolumeclaims"


def events(api: httpx.Client, ns: str, name: str) -> list[str]:
    r = api.get(f"/api/v1/namespaces/{ns}/events")
    return [e["reason"] for e in r.json()["items"] if e["involvedObject"].get("name") == name]


def test_default_storage_class(api: httpx.Client, manager: Process) -> None:
    sc = wait_for(lambda: get(api, "/apis/storage.k8s.io/v1/storageclasses/standard"), 30, "class standard")
    assert sc["provisioner"] == "minik.io/hostpath"
    assert sc["reclaimPolicy"] == "Delete" and sc["volumeBindingMode"] == "Immediate"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"


def test_static_binding_smallest_match_and_pre_binding(api: httpx.Client, ns: str) -> None:
    tag = unique("v")
    small, big, gold, fast = f"{tag}-small", f"{tag}-big", f"{tag}-gold", f"{tag}-fast"
    create(api, PVS, make_pv(big, "5Gi"))
    create(api, PVS, make_pv(small, "1Gi"))
    create(api, PVS, make_pv(gold, "2Gi", labels={"tier": "gold"}))
    create(api, PVS, make_pv(fast, "1Gi", cls="fast"))
    wait_for(
        lambda: all(phase(api, f"{PVS}/{n}", "Available") for n in (small, big, gold, fast)),
        30,
        "volumes Available",
    )

    create(api, claims(ns), make_pvc("a", "1Gi"))
    create(api, claims(ns), make_pvc("b", "1Gi", selector={"matchLabels": {"tier": "gold"}}))
    create(api, claims(ns), make_pvc("c", "512Mi", cls="fast"))
    pvc_a = wait_for(lambda: phase(api, f"{claims(ns)}/a", "Bound"), 30, "claim a Bound")
    pvc_b = wait_for(lambda: phase(api, f"{claims(ns)}/b", "Bound"), 30, "claim b Bound")
    pvc_c = wait_for(lambda: phase(api, f"{claims(ns)}/c", "Bound"), 30, "claim c Bound")
    assert pvc_a["spec"]["volumeName"] == small
    assert pvc_b["spec"]["volumeName"] == gold
    assert pvc_c["spec"]["volumeName"] == fast
    assert pvc_a["status"]["capacity"] == {"storage": "1Gi"}
    assert pvc_a["status"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc_c["status"]["capacity"] == {"storage": "1Gi"}  # the volume's, not the request
    assert pvc_a["metadata"]["annotations"] == {
        "pv.kubernetes.io/bind-completed": "yes",
        "pv.kubernetes.io/bound-by-controller": "yes",
    }
    vol = wait_for(lambda: phase(api, f"{PVS}/{small}", "Bound"), 30, "volume Bound")
    assert vol["spec"]["claimRef"]["name"] == "a" and vol["spec"]["claimRef"]["namespace"] == ns
    assert vol["spec"]["claimRef"]["uid"] == pvc_a["metadata"]["uid"]
    assert vol["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"

    # a claim asking for a volume by name, and a volume reserved for a claim by claimRef
    create(api, claims(ns), make_pvc("by-name", "1Gi", volumeName=big))
    reserved = f"{tag}-reserved"
    create(api, PVS, make_pv(reserved, "3Gi", claimRef={"namespace": ns, "name": "reserved"}))
    create(api, claims(ns), make_pvc("reserved", "1Gi"))
    by_name = wait_for(lambda: phase(api, f"{claims(ns)}/by-name", "Bound"), 30, "by-name Bound")
    assert by_name["spec"]["volumeName"] == big
    # bound by the user: only bind-completed, no bound-by-controller
    assert by_name["metadata"]["annotations"] == {"pv.kubernetes.io/bind-completed": "yes"}
    res = wait_for(lambda: phase(api, f"{claims(ns)}/reserved", "Bound"), 30, "reserved Bound")
    assert res["spec"]["volumeName"] == reserved
    vol = wait_for(lambda: phase(api, f"{PVS}/{reserved}", "Bound"), 30, "reserved volume Bound")
    assert "pv.kubernetes.io/bound-by-controller" not in (vol["metadata"].get("annotations") or {})

    # nothing fits: Pending with an event
    create(api, claims(ns), make_pvc("none", "100Gi"))
    wait_for(lambda: "FailedBinding" in events(api, ns, "none"), 30, "FailedBinding event")
    assert phase(api, f"{claims(ns)}/none", "Pending")


def test_dynamic_provisioning_and_delete(api: httpx.Client, ns: str, base_dir: Path) -> None:
    create(api, claims(ns), make_pvc("data", "2Gi", cls=None, accessModes=["ReadWriteOnce"]))
    pvc = wait_for(lambda: phase(api, f"{claims(ns)}/data", "Bound"), 30, "provisioned claim Bound")
    uid = pvc["metadata"]["uid"]
    pv_name = f"pvc-{uid}"
    assert pvc["spec"]["volumeName"] == pv_name
    assert pvc["status"]["capacity"] == {"storage": "2Gi"}
    ann = pvc["metadata"]["annotations"]
    assert ann["volume.kubernetes.io/storage-provisioner"] == "minik.io/hostpath"
    vol = wait_for(lambda: phase(api, f"{PVS}/{pv_name}", "Bound"), 30, "provisioned volume Bound")
    path = base_dir / f"{ns}-data-{uid}"
    assert vol["spec"]["hostPath"] == {"path": str(path), "type": "DirectoryOrCreate"}
    assert vol["spec"]["storageClassName"] == "standard"
    assert vol["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert vol["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "minik.io/hostpath"
    assert "ProvisioningSucceeded" in events(api, ns, "data")

    # the kubelet makes the directory on first use; play its part, then delete the claim
    path.mkdir(parents=True)
    (path / "file").write_text("data")
    outside = base_dir.parent / "outside"
    outside.mkdir()
    assert api.delete(f"{claims(ns)}/data").status_code == 200
    wait_for(lambda: get(api, f"{PVS}/{pv_name}") is None, 30, "provisioned volume deleted")
    assert not path.exists()
    assert base_dir.is_dir() and outside.is_dir()


def test_explicit_class_is_provisioned_and_released_volume_retained(api: httpx.Client, ns: str) -> None:
    # a class of the hostpath provisioner with Retain
    keep = unique("keep")
    create(
        api,
        "/apis/storage.k8s.io/v1/storageclasses",
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": keep},
            "provisioner": "minik.io/hostpath",
            "reclaimPolicy": "Retain",
        },
    )
    create(api, claims(ns), make_pvc("kept", "1Gi", cls=keep))
    pvc = wait_for(lambda: phase(api, f"{claims(ns)}/kept", "Bound"), 30, "claim Bound")
    pv_name = pvc["spec"]["volumeName"]
    assert api.delete(f"{claims(ns)}/kept").status_code == 200
    vol = wait_for(lambda: phase(api, f"{PVS}/{pv_name}", "Released"), 30, "volume Released")
    assert vol["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert vol["spec"]["claimRef"]["name"] == "kept"

    # a new claim of the same class never gets the released volume: a new one is provisioned
    create(api, claims(ns), make_pvc("again", "1Gi", cls=keep))
    again = wait_for(lambda: phase(api, f"{claims(ns)}/again", "Bound"), 30, "second claim Bound")
    assert again["spec"]["volumeName"] != pv_name
    assert phase(api, f"{PVS}/{pv_name}", "Released")

    # static volume, Retain: Released and kept
    static = unique("static")
    create(api, PVS, make_pv(static, "1Gi"))
    wait_for(lambda: phase(api, f"{PVS}/{static}", "Available"), 30, "static volume Available")
    create(api, claims(ns), make_pvc("s", "1Gi", volumeName=static))
    wait_for(lambda: phase(api, f"{claims(ns)}/s", "Bound"), 30, "static claim Bound")
    assert api.delete(f"{claims(ns)}/s").status_code == 200
    wait_for(lambda: phase(api, f"{PVS}/{static}", "Released"), 30, "static volume Released")

    # the admin frees it by removing the claimRef: Available again
    r = api.patch(
        f"{PVS}/{static}",
        json={"spec": {"claimRef": None}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    wait_for(lambda: phase(api, f"{PVS}/{static}", "Available"), 30, "static volume Available again")
