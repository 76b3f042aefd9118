"""The PersistentVolume controller without I/O: the matching function, provisioning and reclaim
decisions, and single reconciles against filled caches with the exact API actions asserted."""

from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path
from typing import Any

from apimachinery import errors
from apimachinery.events import FakeRecorder
from apimachinery.informer import SharedInformerFactory
from apimachinery.resources import ResourceInfo
from controllers.base import ControllerContext, Options
from controllers.manager import select_controllers
from controllers.persistentvolume import (
    ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER,
    ANN_PROVISIONED_BY,
    PROVISIONER,
    PersistentVolumeController,
    check_volume_satisfies_claim,
    claim_status,
    default_class,
    default_storage_class,
    find_matching_volume,
    provisioned_dir,
    provisioned_volume,
    remove_provisioned_dir,
)
from tests.unit.test_controllers_reconcile import FakeClient as ReconcileFakeClient

NOW = 1_700_000_000.0


def pv(
    name: str,
    size: str = "1Gi",
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    cls: str | None = None,
    phase: str = "Available",
    labels: dict[str, str] | None = None,
    claim_ref: dict[str, Any] | None = None,
    mode: str = "Filesystem",
    policy: str = "Retain",
    annotations: dict[str, str] | None = None,
    path: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "capacity": {"storage": size},
        "accessModes": list(modes),
        "volumeMode": mode,
        "persistentVolumeReclaimPolicy": policy,
        "hostPath": {"path": path or f"/data/{name}"},
    }
    if cls is not None:
        spec["storageClassName"] = cls
    if claim_ref is not None:
        spec["claimRef"] = claim_ref
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": "1",
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": spec,
        "status": {"phase": phase},
    }


def pvc(
    name: str = "data",
    size: str = "1Gi",
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    cls: str | None = None,
    selector: dict[str, Any] | None = None,
    volume_name: str | None = None,
    mode: str = "Filesystem",
    annotations: dict[str, str] | None = None,
    phase: str = "Pending",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": list(modes),
        "resources": {"requests": {"storage": size}},
        "volumeMode": mode,
    }
    if cls is not None:
        spec["storageClassName"] = cls
    if selector is not None:
        spec["selector"] = selector
    if volume_name is not None:
        spec["volumeName"] = volume_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "resourceVersion": "5",
            "annotations": annotations or {},
        },
        "spec": spec,
        "status": {"phase": phase},
    }


def ref(name: str = "data", uid: str | None = "uid-data") -> dict[str, Any]:
    r = {"kind": "PersistentVolumeClaim", "namespace": "ns", "name": name}
    if uid is not None:
        r["uid"] = uid
    return r


def names(obj: dict[str, Any] | None) -> str | None:
    return None if obj is None else obj["metadata"]["name"]


# -- matching ----------------------------------------------------------------------------------------


def test_smallest_sufficient_volume_wins() -> None:
    vols = [pv("big", "10Gi"), pv("small", "500Mi"), pv("fit", "2Gi"), pv("exact", "1Gi")]
    assert names(find_matching_volume(pvc(size="1Gi"), vols)) == "exact"
    assert names(find_matching_volume(pvc(size="1500Mi"), vols)) == "fit"
    assert find_matching_volume(pvc(size="20Gi"), vols) is None


def test_class_must_be_equal_and_empty_class_takes_only_classless_volumes() -> None:
    vols = [pv("fast", cls="fast"), pv("plain")]
    assert names(find_matching_volume(pvc(cls="fast"), vols)) == "fast"
    assert names(find_matching_volume(pvc(cls=""), vols)) == "plain"
    assert names(find_matching_volume(pvc(), vols)) == "plain"
    assert find_matching_volume(pvc(cls="slow"), vols) is None
    assert find_matching_volume(pvc(cls=""), [pv("fast", cls="fast")]) is None


def test_access_modes_superset_fewest_modes_first() -> None:
    rwx = pv("rwx", "1Gi", ("ReadWriteOnce", "ReadWriteMany"))
    rwo_big = pv("rwo", "5Gi", ("ReadWriteOnce",))
    # the volume with exactly the claim's modes is preferred, even when larger
    assert names(find_matching_volume(pvc(), [rwx, rwo_big])) == "rwo"
    assert names(find_matching_volume(pvc(modes=("ReadWriteMany",)), [rwx, rwo_big])) == "rwx"
    assert find_matching_volume(pvc(modes=("ReadOnlyMany",)), [rwx, rwo_big]) is None


def test_volume_mode_selector_phase_and_claim_ref_filter() -> None:
    assert find_matching_volume(pvc(), [pv("blk", mode="Block")]) is None
    assert names(find_matching_volume(pvc(mode="Block"), [pv("blk", mode="Block"), pv("fs")])) == "blk"
    sel = {"matchLabels": {"tier": "gold"}}
    vols = [pv("plain", "1Gi"), pv("gold", "3Gi", labels={"tier": "gold"})]
    assert names(find_matching_volume(pvc(selector=sel), vols)) == "gold"
    assert (
        find_matching_volume(
            pvc(selector={"matchExpressions": [{"key": "tier", "operator": "In", "values": ["silver"]}]}),
            vols,
        )
        is None
    )
    assert find_matching_volume(pvc(), [pv("new", phase="Pending"), pv("rel", phase="Released")]) is None
    other = pv("other", claim_ref=ref("someone-else", "uid-x"))
    assert find_matching_volume(pvc(), [other]) is None


def test_volume_pre_bound_to_the_claim_wins_whatever_its_phase() -> None:
    small = pv("small", "1Gi")
    mine = pv("mine", "8Gi", phase="Pending", claim_ref=ref("data", None), labels={})
    assert names(find_matching_volume(pvc(), [small, mine])) == "mine"
    with_uid = pv("mine", "8Gi", phase="Bound", claim_ref=ref("data", "uid-data"))
    assert names(find_matching_volume(pvc(), [small, with_uid])) == "mine"
    stale = pv("stale", "8Gi", phase="Bound", claim_ref=ref("data", "uid-old"))
    assert names(find_matching_volume(pvc(), [stale, small])) == "small"
    # delay binding (WaitForFirstConsumer): only a pre-bound volume is taken
    assert find_matching_volume(pvc(), [small], delay_binding=True) is None
    assert names(find_matching_volume(pvc(), [small, mine], delay_binding=True)) == "mine"


def test_deleting_volumes_are_skipped() -> None:
    v = pv("v")
    v["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert find_matching_volume(pvc(), [v]) is None


def test_check_volume_satisfies_a_claim_asking_by_name() -> None:
    assert check_volume_satisfies_claim(pv("v", "2Gi"), pvc(volume_name="v")) is None
    assert check_volume_satisfies_claim(pv("v", "1Mi"), pvc()) == "requested PV is too small"
    assert check_volume_satisfies_claim(pv("v", cls="a"), pvc(cls="b")) == "storageClassName does not match"
    assert check_volume_satisfies_claim(pv("v", mode="Block"), pvc()) == "incompatible volumeMode"
    assert check_volume_satisfies_claim(pv("v"), pvc(modes=("ReadWriteMany",))) == "incompatible accessMode"


# -- classes, provisioning, reclaim ------------------------------------------------------------------


def test_default_class_newest_wins() -> None:
    a = {
        "metadata": {
            "name": "a",
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        }
    }
    b = {
        "metadata": {
            "name": "b",
            "creationTimestamp": "2024-02-01T00:00:00Z",
            "annotations": {"storageclass.beta.kubernetes.io/is-default-class": "true"},
        }
    }
    c = {"metadata": {"name": "c", "creationTimestamp": "2025-01-01T00:00:00Z"}}
    assert names(default_class([a, b, c])) == "b"
    assert default_class([c]) is None
    sc = default_storage_class()
    assert sc["provisioner"] == PROVISIONER and sc["reclaimPolicy"] == "Delete"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"


def test_provisioned_volume_is_pre_bound_hostpath_under_the_base() -> None:
    claim = pvc(size="3Gi", modes=("ReadWriteOnce", "ReadOnlyMany"), cls="standard")
    vol = provisioned_volume(claim, default_storage_class(), "/base")
    assert vol["metadata"]["name"] == "pvc-uid-data"
    assert vol["metadata"]["annotations"] == {ANN_PROVISIONED_BY: PROVISIONER, ANN_BOUND_BY_CONTROLLER: "yes"}
    spec = vol["spec"]
    assert spec["hostPath"] == {"path": "/base/ns-data-uid-data", "type": "DirectoryOrCreate"}
    assert spec["capacity"] == {"storage": "3Gi"}
    assert spec["accessModes"] == ["ReadWriteOnce", "ReadOnlyMany"]
    assert spec["persistentVolumeReclaimPolicy"] == "Delete" and spec["storageClassName"] == "standard"
    assert spec["claimRef"]["uid"] == "uid-data" and spec["claimRef"]["name"] == "data"
    assert names(find_matching_volume(claim, [vol])) == "pvc-uid-data"


def test_provisioned_dir_only_inside_the_base() -> None:
    vol = provisioned_volume(pvc(cls="standard"), default_storage_class(), "/base")
    assert provisioned_dir(vol, "/base") == "/base/ns-data-uid-data"
    assert provisioned_dir(vol, "/base/") == "/base/ns-data-uid-data"
    assert provisioned_dir(vol, "/other") is None
    for bad in ("/base", "/base/..", "/base/../etc", "/etc/passwd", "/base/ns-data-uid-data/../x", ""):
        v = provisioned_volume(pvc(cls="standard"), default_storage_class(), "/base")
        v["spec"]["hostPath"]["path"] = bad
        assert provisioned_dir(v, "/base") is None, bad
    static = pv("static", annotations={}, path="/base/ns-data-uid-data", claim_ref=ref())
    assert provisioned_dir(static, "/base") is None  # not made by the provisioner


def test_remove_provisioned_dir_refuses_symlinks_and_the_base(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    link = base / "ns-data-uid"
    os.symlink(victim, link)
    assert remove_provisioned_dir(str(link), str(base)) is False
    assert (victim / "keep").exists()
    assert remove_provisioned_dir(str(base), str(base)) is False
    real = base / "ns-real-uid"
    (real / "sub").mkdir(parents=True)
    assert remove_provisioned_dir(str(real), str(base)) is True
    assert not real.exists() and base.exists()


def test_claim_status_carries_the_volume_capacity() -> None:
    vol = pv("v", "5Gi", ("ReadWriteOnce", "ReadWriteMany"))
    st = claim_status(pvc(), "Bound", vol)
    assert st == {
        "phase": "Bound",
        "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
        "capacity": {"storage": "5Gi"},
    }
    assert claim_status({"status": st}, "Lost", None) == {"phase": "Lost"}


def test_controller_is_registered() -> None:
    assert "persistentvolume-binder" in select_controllers("*")
    assert "persistentvolume-binder" not in select_controllers("*,-persistentvolume-binder")


# -- reconciles against filled caches ----------------------------------------------------------------


class FakeClient(ReconcileFakeClient):
    """Records (verb, plural[/status], name, body); writes bump the resourceVersion."""

    def __init__(self) -> None:
        super().__init__()
        self.seq = itertools.count(100)

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(next(self.seq))}}

    async def create(
        self, info: ResourceInfo, obj: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        obj = self._bump(obj)
        obj["metadata"].setdefault("uid", f"uid-{obj['metadata']['name']}")
        obj.setdefault("status", {"phase": "Pending"})
        self.actions.append(("create", info.plural, obj["metadata"]["name"], obj))
        return obj

    async def update(self, info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        if "update" in self.fail:
            raise self.fail.pop("update")
        self.actions.append(("update", info.plural, obj["metadata"]["name"], obj))
        return self._bump(obj)

    async def update_status(self, info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        self.actions.append(("update", f"{info.plural}/status", obj["metadata"]["name"], obj))
        return self._bump(obj)

    async def delete(self, info: ResourceInfo, name: str, namespace: str | None = None) -> dict[str, Any]:
        self.actions.append(("delete", info.plural, name, None))
        return {}

    def verbs(self) -> list[tuple[str, str, str]]:  # type: ignore[override]
        return [(a[0], a[1], a[2]) for a in self.actions]


def controller(
    objs: list[dict[str, Any]], base: str = "/base"
) -> tuple[PersistentVolumeController, FakeClient, FakeRecorder]:
    client = FakeClient()
    recorder = FakeRecorder()
    factory = SharedInformerFactory(client)  # type: ignore[arg-type]
    ctx = ControllerContext(
        client,  # type: ignore[arg-type]
        factory,
        lambda name: recorder,
        Options(extra={"hostpath_provisioner_dir": base}),
        clock=lambda: NOW,
    )
    c = PersistentVolumeController(ctx)
    for obj in objs:
        kind = obj["kind"]
        store = {
            "PersistentVolume": c.pv_informer.store,
            "PersistentVolumeClaim": c.pvc_informer.store,
            "StorageClass": c.sc_informer.store,
            "Pod": c.pod_informer.store,
        }[kind]
        store.add(obj)
    return c, client, recorder


def run(c: PersistentVolumeController, key: str) -> None:
    asyncio.run(c.reconcile(key))


def test_reconcile_binds_a_claim_to_the_best_volume() -> None:
    c, client, _ = controller([pvc(), pv("big", "9Gi"), pv("ok", "1Gi")])
    run(c, "pvc:ns/data")
    assert client.verbs() == [
        ("update", "persistentvolumes", "ok"),
        ("update", "persistentvolumes/status", "ok"),
        ("update", "persistentvolumeclaims", "data"),
        ("update", "persistentvolumeclaims/status", "data"),
    ]
    vol, vol_status, claim, claim_st = (a[3] for a in client.actions)
    assert vol["spec"]["claimRef"]["uid"] == "uid-data"
    assert vol["metadata"]["annotations"][ANN_BOUND_BY_CONTROLLER] == "yes"
    assert vol_status["status"]["phase"] == "Bound"
    assert vol_status["status"]["lastPhaseTransitionTime"] == "2023-11-14T22:13:20Z"
    assert claim["spec"]["volumeName"] == "ok"
    assert claim["metadata"]["annotations"] == {ANN_BIND_COMPLETED: "yes", ANN_BOUND_BY_CONTROLLER: "yes"}
    assert claim_st["status"] == {
        "phase": "Bound",
        "accessModes": ["ReadWriteOnce"],
        "capacity": {"storage": "1Gi"},
    }


def test_reconcile_bound_pair_is_left_alone() -> None:
    vol = pv("v", claim_ref=ref(), phase="Bound", annotations={ANN_BOUND_BY_CONTROLLER: "yes"})
    claim = pvc(volume_name="v", annotations={ANN_BIND_COMPLETED: "yes"}, phase="Bound")
    claim["status"] = claim_status(claim, "Bound", vol)
    c, client, _ = controller([vol, claim])
    run(c, "pvc:ns/data")
    run(c, "pv:v")
    assert client.actions == []


def test_reconcile_claim_asking_for_a_too_small_volume_stays_pending() -> None:
    c, client, rec = controller([pvc(size="5Gi", volume_name="tiny"), pv("tiny", "1Gi")])
    run(c, "pvc:ns/data")
    assert client.actions == []
    assert rec.events == [
        'Warning VolumeMismatch Cannot bind to requested volume "tiny": requested PV is too small'
    ]


def test_reconcile_no_volume_no_class() -> None:
    c, client, rec = controller([pvc(cls="")])
    run(c, "pvc:ns/data")
    assert client.actions == []
    assert rec.events == [
        "Normal FailedBinding no persistent volumes available for this claim and no storage class is set"
    ]


def test_reconcile_assigns_the_default_class_then_provisions() -> None:
    sc = default_storage_class()
    sc["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    c, client, _ = controller([pvc(), sc])
    run(c, "pvc:ns/data")
    assert client.verbs() == [("update", "persistentvolumeclaims", "data")]
    assert client.actions[0][3]["spec"]["storageClassName"] == "standard"

    # the API server refuses the update: the default class is used as if it were set
    c, client, rec = controller([pvc(), sc])
    client.fail["update"] = errors.Invalid("spec: Forbidden: spec is immutable")
    run(c, "pvc:ns/data")
    assert [v for v in client.verbs()] == [
        ("update", "persistentvolumeclaims", "data"),  # provisioner annotations
        ("create", "persistentvolumes", "pvc-uid-data"),
        ("update", "persistentvolumes/status", "pvc-uid-data"),
        ("update", "persistentvolumeclaims", "data"),
        ("update", "persistentvolumeclaims/status", "data"),
    ]
    created = client.actions[1][3]
    assert created["spec"]["storageClassName"] == "standard"
    assert rec.events == [
        "Normal ProvisioningSucceeded Successfully provisioned volume pvc-uid-data using minik.io/hostpath"
    ]


def test_reconcile_external_provisioner_waits() -> None:
    sc = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "ebs"},
        "provisioner": "ebs.csi.aws.com",
    }
    c, client, rec = controller([pvc(cls="ebs"), sc])
    run(c, "pvc:ns/data")
    assert client.actions == []
    assert rec.events[0].startswith(
        "Normal ExternalProvisioning Waiting for a volume to be created either by the external provisioner 'ebs.csi.aws.com'"
    )


def test_reconcile_wait_for_first_consumer() -> None:
    sc = {**default_storage_class(), "volumeBindingMode": "WaitForFirstConsumer"}
    sc["metadata"] = {"name": "local"}
    c, client, rec = controller([pvc(cls="local"), sc, pv("free", cls="local")])
    run(c, "pvc:ns/data")
    assert client.actions == [] and rec.events == [
        "Normal WaitForFirstConsumer waiting for first consumer to be created before binding"
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns", "uid": "p1"},
        "spec": {
            "nodeName": "n1",
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }
    c.pod_informer.store.add(pod)
    run(c, "pvc:ns/data")
    assert client.verbs() == [("update", "persistentvolumeclaims", "data")]
    assert client.actions[0][3]["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "n1"
    c.pvc_informer.store.add(client.actions[0][3])
    client.actions.clear()
    run(c, "pvc:ns/data")
    assert client.verbs()[0] == ("update", "persistentvolumes", "free")


def test_reconcile_volume_phases_and_release() -> None:
    c, client, _ = controller([pv("new", phase="Pending")])
    run(c, "pv:new")
    assert client.verbs() == [("update", "persistentvolumes/status", "new")]
    assert client.actions[0][3]["status"]["phase"] == "Available"

    # the claim is gone (also from the API server): Released, and Retain keeps it
    gone = pv("kept", claim_ref=ref(), phase="Bound", policy="Retain")
    c, client, _ = controller([gone])
    run(c, "pv:kept")
    assert client.verbs() == [
        ("get", "persistentvolumeclaims", "data"),
        ("update", "persistentvolumes/status", "kept"),
    ]
    assert client.actions[1][3]["status"]["phase"] == "Released"


def test_reconcile_release_waits_for_a_stale_cache() -> None:
    c, client, _ = controller([pv("v", claim_ref=ref(), phase="Bound")])
    client.objects[("persistentvolumeclaims", "data")] = pvc()
    run(c, "pv:v")
    assert client.verbs() == [("get", "persistentvolumeclaims", "data")]


def test_reconcile_deletes_a_provisioned_volume_and_its_directory(tmp_path: Path) -> None:
    base = tmp_path / "vols"
    claim = pvc(cls="standard")
    vol = provisioned_volume(claim, default_storage_class(), str(base))
    vol["metadata"]["resourceVersion"] = "1"
    vol["status"] = {"phase": "Released"}
    data = base / "ns-data-uid-data"
    data.mkdir(parents=True)
    (data / "file").write_text("x")
    c, client, _ = controller([vol], str(base))
    run(c, "pv:pvc-uid-data")
    assert client.verbs() == [
        ("get", "persistentvolumeclaims", "data"),
        ("delete", "persistentvolumes", "pvc-uid-data"),
    ]
    assert not data.exists() and base.exists()


def test_reconcile_static_delete_policy_fails_without_a_deleter() -> None:
    c, client, rec = controller([pv("s", claim_ref=ref(), phase="Released", policy="Delete")])
    run(c, "pv:s")
    assert client.verbs() == [
        ("get", "persistentvolumeclaims", "data"),
        ("update", "persistentvolumes/status", "s"),
    ]
    assert client.actions[1][3]["status"]["phase"] == "Failed"
    assert rec.events == [
        'Warning VolumeFailedDelete error getting deleter volume plugin for volume "s": no deletable volume plugin matched'
    ]


def test_reconcile_claim_lost() -> None:
    claim = pvc(volume_name="gone", annotations={ANN_BIND_COMPLETED: "yes"}, phase="Bound")
    c, client, rec = controller([claim])
    run(c, "pvc:ns/data")
    assert client.verbs() == [("update", "persistentvolumeclaims/status", "data")]
    assert client.actions[0][3]["status"] == {"phase": "Lost"}
    assert rec.events == [
        "Warning ClaimLost Bound claim has lost its PersistentVolume. Data on the volume is lost!"
    ]


def test_reconcile_unbinds_a_controller_bound_volume_whose_claim_went_elsewhere() -> None:
    vol = pv("v", claim_ref=ref(), phase="Bound", annotations={ANN_BOUND_BY_CONTROLLER: "yes"})
    claim = pvc(volume_name="other", annotations={ANN_BIND_COMPLETED: "yes"})
    c, client, _ = controller([vol, claim])
    run(c, "pv:v")
    assert client.verbs() == [
        ("update", "persistentvolumes", "v"),
        ("update", "persistentvolumes/status", "v"),
    ]
    assert "claimRef" not in client.actions[0][3]["spec"]
    assert client.actions[1][3]["status"]["phase"] == "Available"


def test_ensure_default_class() -> None:
    c, client, _ = controller([])
    asyncio.run(c.ensure_default_class())
    assert client.verbs() == [("create", "storageclasses", "standard")]
    other = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "provisioner": "x",
        "metadata": {"name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    }
    c, client, _ = controller([other])
    asyncio.run(c.ensure_default_class())
    assert client.actions == []
