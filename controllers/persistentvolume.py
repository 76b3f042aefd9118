"""The PersistentVolume controller: binds claims to volumes, provisions hostPath volumes, reclaims.

In the way of Kubernetes' ``persistentvolume-binder`` (pkg/controller/volume/persistentvolume):

* **binding** — a Pending claim gets the smallest Available volume that satisfies it: same class
  (a claim of class ``""`` only takes volumes without a class), access modes a superset of the
  claim's (volumes with the fewest modes are tried first), capacity at least the request, the same
  ``volumeMode`` and labels matching the claim's ``selector``.  A volume pre-bound to the claim
  (``spec.claimRef``) and a claim pre-bound to a volume (``spec.volumeName``) are honoured.  The
  volume gets ``spec.claimRef`` and phase Bound, the claim ``spec.volumeName`` and status Bound with
  the volume's capacity and access modes, with the annotations Kubernetes writes
  (``pv.kubernetes.io/bind-completed``, ``pv.kubernetes.io/bound-by-controller``);
* **dynamic provisioning** — a claim of a class whose provisioner is ``minik.io/hostpath`` and
  that no volume satisfies gets a new volume ``pvc-<claim uid>`` with
  ``hostPath: <base>/<namespace>-<claim>-<claim uid>`` (type DirectoryOrCreate: the kubelet makes
  the directory where the pod runs), the claim's request as capacity and the class's reclaim
  policy; a claim without a class gets the default class written into ``spec.storageClassName``
  (Kubernetes' retroactive default StorageClass assignment); at start the default class
  ``standard`` is created when no class is the default and none is called ``standard``;
* **reclaiming** — a volume whose claim is gone becomes Released; with reclaim policy Retain it
  stays so, with Delete the volume is deleted and, for volumes of this provisioner, its directory
  too (only ever a direct child of the provisioner's base directory named after the claim).

Claims and volumes go through one work queue, keyed ``pvc:<namespace>/<name>`` and ``pv:<name>``.
The choice of a volume is a pure function (:func:`find_matching_volume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from decimal import Decimal
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.events import NORMAL, WARNING
from apimachinery.quantity import parse_quantity
from apimachinery.resources import kind_info
from apimachinery.selectors import selector_from_dict

from .base import PODS, Controller, ControllerContext
from .util import (
    annotations_of,
    deep_copy,
    ensure_index,
    is_deleting,
    labels_of,
    meta,
    name_of,
    namespace_of,
    rfc3339,
    uid_of,
)

log = logging.getLogger(__name__)


PVS = kind_info("v1", "PersistentVolume")
PVCS = kind_info("v1", "PersistentVolumeClaim")
STORAGE_CLASSES = kind_info("storage.k8s.io/v1", "StorageClass")

ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"

PROVISIONER = "minik.io/hostpath"
DEFAULT_CLASS_NAME = "standard"
DEFAULT_BASE_DIR = "/var/lib/minik/volumes"

CONFLICT_RETRY = 0.2  # seconds before a key whose write hit a stale resourceVersion is retried
CLAIM_REF_INDEX = "pvClaimRef"  # on volumes: "<namespace>/<name>" of spec.claimRef
POD_CLAIMS_INDEX = "podClaims"  # on pods: "<namespace>/<claimName>" of each PVC volume

PV_PENDING, PV_AVAILABLE, PV_BOUND, PV_RELEASED, PV_FAILED = (
    "Pending",
    "Available",
    "Bound",
    "Released",
    "Failed",
)
CLAIM_PENDING, CLAIM_BOUND, CLAIM_LOST = "Pending", "Bound", "Lost"


# -- pure helpers -------------------------------------------------------------------------------------


def _spec(obj: Obj) -> dict[str, Any]:
    return obj.get("spec") or {}


def _status(obj: Obj) -> dict[str, Any]:
    return obj.get("status") or {}


def claim_class(claim: Obj) -> str:
    """``GetPersistentVolumeClaimClass``: the beta annotation wins, then ``spec.storageClassName``."""
    ann = annotations_of(claim)
    if ANN_BETA_STORAGE_CLASS in ann:
        return ann[ANN_BETA_STORAGE_CLASS]
    return str(_spec(claim).get("storageClassName") or "")


def volume_class(volume: Obj) -> str:
    ann = annotations_of(volume)
    if ANN_BETA_STORAGE_CLASS in ann:
        return ann[ANN_BETA_STORAGE_CLASS]
    return str(_spec(volume).get("storageClassName") or "")


def claim_has_no_class(claim: Obj) -> bool:
    """Neither ``spec.storageClassName`` nor the beta annotation is set (nil, not ``""``)."""
    return _spec(claim).get("storageClassName") is None and ANN_BETA_STORAGE_CLASS not in annotations_of(
        claim
    )


def claim_request(claim: Obj) -> Decimal:
    value = ((_spec(claim).get("resources") or {}).get("requests") or {}).get("storage")
    return parse_quantity(str(value)) if value is not None else Decimal(0)


def volume_capacity(volume: Obj) -> Decimal:
    value = (_spec(volume).get("capacity") or {}).get("storage")
    return parse_quantity(str(value)) if value is not None else Decimal(0)


def volume_mode_mismatch(claim: Obj, volume: Obj) -> bool:
    return (_spec(claim).get("volumeMode") or "Filesystem") != (
        _spec(volume).get("volumeMode") or "Filesystem"
    )


def access_modes_satisfied(claim: Obj, volume: Obj) -> bool:
    return set(_spec(claim).get("accessModes") or []) <= set(_spec(volume).get("accessModes") or [])


def is_volume_bound_to_claim(volume: Obj, claim: Obj) -> bool:
    """``IsVolumeBoundToClaim``: claimRef names the claim and its UID is empty or the claim's."""
    ref = _spec(volume).get("claimRef")
    if not ref:
        return False
    if ref.get("name") != name_of(claim) or ref.get("namespace") != namespace_of(claim):
        return False
    return not ref.get("uid") or ref.get("uid") == uid_of(claim)


def check_volume_satisfies_claim(volume: Obj, claim: Obj) -> str | None:
    """Why a volume the claim asked for by name cannot be bound to it (None: it can)."""
    if volume_capacity(volume) < claim_request(claim):
        return "requested PV is too small"
    if volume_class(volume) != claim_class(claim):
        return "storageClassName does not match"
    if volume_mode_mismatch(claim, volume):
        return "incompatible volumeMode"
    if not access_modes_satisfied(claim, volume):
        return "incompatible accessMode"
    return None


def _matching_in(claim: Obj, volumes: list[Obj], delay_binding: bool) -> Obj | None:
    """``FindMatchingVolume`` over volumes of one access-mode set (no node: the controller's path)."""
    requested = claim_request(claim)
    requested_class = claim_class(claim)
    raw_selector = _spec(claim).get("selector")
    selector = selector_from_dict(raw_selector) if raw_selector is not None else None
    smallest: Obj | None = None
    smallest_qty = Decimal(0)
    for volume in sorted(volumes, key=name_of):
        qty = volume_capacity(volume)
        if qty < requested or volume_mode_mismatch(claim, volume) or is_deleting(volume):
            continue
        if is_volume_bound_to_claim(volume, claim):
            return volume
        if delay_binding:
            continue  # binding waits for the first consumer
        if _status(volume).get("phase") != PV_AVAILABLE or _spec(volume).get("claimRef"):
            continue
        if selector is not None and not selector.matches(labels_of(volume)):
            continue
        if volume_class(volume) != requested_class:
            continue
        if smallest is None or qty < smallest_qty:
            smallest, smallest_qty = volume, qty
    return smallest


def find_matching_volume(claim: Obj, volumes: list[Obj], delay_binding: bool = False) -> Obj | None:
    """The volume a claim without ``spec.volumeName`` binds to, or None.

    As Kubernetes' ``findByClaim``: volumes are grouped by their set of access modes; the sets that
    contain every mode the claim asks for are tried from the fewest modes up, and in each the
    volume pre-bound to the claim wins, else the smallest Available one that matches.
    """
    groups: dict[frozenset[str], list[Obj]] = {}
    for volume in volumes:
        groups.setdefault(frozenset(_spec(volume).get("accessModes") or []), []).append(volume)
    wanted = set(_spec(claim).get("accessModes") or [])
    for modes in sorted((m for m in groups if wanted <= m), key=lambda m: (len(m), sorted(m))):
        found = _matching_in(claim, groups[modes], delay_binding)
        if found is not None:
            return found
    return None


def is_default_class(sc: Obj) -> bool:
    ann = annotations_of(sc)
    return ann.get(ANN_DEFAULT_CLASS) == "true" or ann.get(ANN_BETA_DEFAULT_CLASS) == "true"


def default_class(classes: list[Obj]) -> Obj | None:
    """``GetDefaultClass``: of several default classes the newest wins (then the name)."""
    defaults = [sc for sc in classes if is_default_class(sc)]
    if not defaults:
        return None
    return max(defaults, key=lambda sc: (str(meta(sc).get("creationTimestamp") or ""), name_of(sc)))


def default_storage_class() -> Obj:
    """The ``standard`` class ``minik-controller-manager`` creates (as kind and minikube ship)."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": DEFAULT_CLASS_NAME,
            "annotations": {ANN_DEFAULT_CLASS: "true"},
            "labels": {"addonmanager.kubernetes.io/mode": "EnsureExists"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def claim_ref(claim: Obj) -> dict[str, Any]:
    """``reference.GetReference`` of a claim."""
    return {
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "namespace": namespace_of(claim),
        "name": name_of(claim),
        "uid": uid_of(claim),
        "resourceVersion": str(meta(claim).get("resourceVersion") or ""),
    }


def provisioned_volume_name(claim: Obj) -> str:
    return f"pvc-{uid_of(claim)}"


def provisioned_dir_name(namespace: str, name: str, uid: str) -> str:
    return f"{namespace}-{name}-{uid}"


def provisioned_volume(claim: Obj, sc: Obj, base_dir: str) -> Obj:
    """The hostPath volume for a claim of a ``minik.io/hostpath`` class, pre-bound to it."""
    spec = _spec(claim)
    path = os.path.join(base_dir, provisioned_dir_name(namespace_of(claim), name_of(claim), uid_of(claim)))
    pv_spec: dict[str, Any] = {
        "capacity": {"storage": str(((spec.get("resources") or {}).get("requests") or {})["storage"])},
        "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
        "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
        "storageClassName": name_of(sc),
        "volumeMode": "Filesystem",
        "hostPath": {"path": path, "type": "DirectoryOrCreate"},
        "claimRef": claim_ref(claim),
    }
    if sc.get("mountOptions"):
        pv_spec["mountOptions"] = list(sc["mountOptions"])
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": provisioned_volume_name(claim),
            "annotations": {ANN_PROVISIONED_BY: PROVISIONER, ANN_BOUND_BY_CONTROLLER: "yes"},
        },
        "spec": pv_spec,
    }


def provisioned_dir(volume: Obj, base_dir: str) -> str | None:
    """The directory to remove when a volume of this provisioner is deleted, or None.

    Only a volume annotated as provisioned by ``minik.io/hostpath`` whose ``hostPath.path`` is
    exactly ``<base>/<namespace>-<claim>-<uid>`` of its claimRef qualifies: anything else (a path
    edited by hand, ``..`` tricks, the base itself) is never touched.
    """
    if annotations_of(volume).get(ANN_PROVISIONED_BY) != PROVISIONER:
        return None
    path = str((_spec(volume).get("hostPath") or {}).get("path") or "")
    ref = _spec(volume).get("claimRef") or {}
    if not path or not base_dir or not ref.get("namespace") or not ref.get("name") or not ref.get("uid"):
        return None
    expected = os.path.join(
        os.path.normpath(base_dir),
        provisioned_dir_name(str(ref["namespace"]), str(ref["name"]), str(ref["uid"])),
    )
    if os.path.normpath(path) != expected or path != os.path.normpath(path):
        return None
    return expected


def claim_status(claim: Obj, phase: str, volume: Obj | None) -> dict[str, Any]:
    """``updateClaimStatus``: the phase, and the volume's capacity and access modes (or none)."""
    status = dict(_status(claim))
    status["phase"] = phase
    if volume is None:
        status.pop("accessModes", None)
        status.pop("capacity", None)
    else:
        status["accessModes"] = list(_spec(volume).get("accessModes") or [])
        status["capacity"] = dict(_spec(volume).get("capacity") or {})
    return status


def pod_claim_keys(pod: Obj) -> list[str]:
    ns = namespace_of(pod)
    return [
        f"{ns}/{(v.get('persistentVolumeClaim') or {}).get('claimName')}"
        for v in _spec(pod).get("volumes") or []
        if (v.get("persistentVolumeClaim") or {}).get("claimName")
    ]


def volume_claim_ref_key(volume: Obj) -> str | None:
    ref = _spec(volume).get("claimRef") or {}
    if not ref.get("name"):
        return None
    return f"{ref.get('namespace') or ''}/{ref['name']}"


def _with_class(claim: Obj, class_name: str) -> Obj:
    copy = deep_copy(claim)
    copy.setdefault("spec", {})["storageClassName"] = class_name
    return copy


def remove_provisioned_dir(path: str, base_dir: str) -> bool:
    """Remove a provisioned directory (I/O); False when it is not safely inside ``base_dir``."""
    real_base = os.path.realpath(base_dir)
    if os.path.islink(path) or os.path.dirname(os.path.realpath(path)) != real_base:
        return False
    if os.path.realpath(path) == real_base:
        return False
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
    return True


# -- the controller -----------------------------------------------------------------------------------


class PersistentVolumeController(Controller):
    name = "persistentvolume-binder-controller"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.base_dir = str(ctx.options.extra.get("hostpath_provisioner_dir") or DEFAULT_BASE_DIR)
        self.pv_informer = self.informer(PVS, on_change=self._volume_changed, on_delete=self._volume_deleted)
        self.pvc_informer = self.informer(PVCS, on_change=self._enqueue_claim, on_delete=self._enqueue_claim)
        self.sc_informer = self.informer(STORAGE_CLASSES, on_change=lambda sc: self._enqueue_unbound_claims())
        self.pod_informer = self.informer(PODS, on_change=self._pod_changed)
        ensure_index(self.pv_informer.store, CLAIM_REF_INDEX, volume_claim_ref_key)
        ensure_index(self.pod_informer.store, POD_CLAIMS_INDEX, pod_claim_keys)
        # False once the API server refused to set a class on a claim that had none
        self._retroactive_default = True

    # -- handlers ---------------------------------------------------------------------------------

    def _enqueue_claim(self, claim: Obj | str) -> None:
        key = claim if isinstance(claim, str) else f"{namespace_of(claim)}/{name_of(claim)}"
        self.queue.add(f"pvc:{key}")

    def _enqueue_volume(self, volume: Obj | str) -> None:
        self.queue.add(f"pv:{volume if isinstance(volume, str) else name_of(volume)}")

    def _enqueue_unbound_claims(self) -> None:
        for claim in self.pvc_informer.store.list():
            if ANN_BIND_COMPLETED not in annotations_of(claim):
                self._enqueue_claim(claim)

    def _volume_changed(self, volume: Obj) -> None:
        self._enqueue_volume(volume)
        ref = _spec(volume).get("claimRef")
        if ref and ref.get("name"):
            self._enqueue_claim(f"{ref.get('namespace') or ''}/{ref['name']}")
        if (not ref or not ref.get("uid")) and _status(volume).get("phase") == PV_AVAILABLE:
            self._enqueue_unbound_claims()

    def _volume_deleted(self, volume: Obj) -> None:
        ref_key = volume_claim_ref_key(volume)
        if ref_key:
            self._enqueue_claim(ref_key)

    def _pod_changed(self, pod: Obj) -> None:
        if not _spec(pod).get("nodeName"):
            return
        for key in pod_claim_keys(pod):
            claim = self.pvc_informer.store.get(key)
            if claim is not None and not _spec(claim).get("volumeName"):
                self._enqueue_claim(key)

    # -- work -------------------------------------------------------------------------------------

    async def background(self) -> None:
        """Create the default StorageClass when the cluster has none (once per term)."""
        delay = 0.5
        while True:
            try:
                await self.ensure_default_class()
                return
            except errors.StatusError as exc:
                log.warning("default StorageClass %s: %s; retrying in %.1fs", DEFAULT_CLASS_NAME, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def ensure_default_class(self) -> None:
        classes = self.sc_informer.store.list()
        if self.sc_informer.store.get(DEFAULT_CLASS_NAME) is not None or default_class(classes):
            return
        try:
            await self.client.create(STORAGE_CLASSES, default_storage_class())
            log.info("created the default StorageClass %s (provisioner %s)", DEFAULT_CLASS_NAME, PROVISIONER)
        except errors.AlreadyExists:
            pass

    async def reconcile(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        try:
            if kind == "pvc":
                await self.sync_claim(rest)
            elif kind == "pv":
                await self.sync_volume(rest)
        except errors.Conflict:
            # the cache had not seen our previous write yet: try again once it has
            log.debug("%s: conflict on a stale object; retrying", rest)
            self.queue.add_after(key, CONFLICT_RETRY)

    # -- claims -----------------------------------------------------------------------------------

    async def sync_claim(self, key: str) -> None:
        claim = self.pvc_informer.store.get(key)
        if claim is None:
            for volume in self.pv_informer.store.by_index(CLAIM_REF_INDEX, key):
                self._enqueue_volume(volume)
            return
        if ANN_BIND_COMPLETED in annotations_of(claim):
            await self.sync_bound_claim(claim)
        else:
            await self.sync_unbound_claim(claim)

    def _class(self, name: str) -> Obj | None:
        return self.sc_informer.store.get(name) if name else None

    async def _select_node(self, claim: Obj) -> bool:
        """For WaitForFirstConsumer: annotate the claim with the node of its first scheduled pod.

        Kubernetes' scheduler writes ``volume.kubernetes.io/selected-node`` on the claim; minik's
        scheduler does not look at volumes, so the controller does it once a pod using the claim
        has a node.  True when the claim was updated (its event brings it back).
        """
        key = f"{namespace_of(claim)}/{name_of(claim)}"
        for pod in self.pod_informer.store.by_index(POD_CLAIMS_INDEX, key):
            node = _spec(pod).get("nodeName")
            if node and not is_deleting(pod):
                updated = deep_copy(claim)
                updated["metadata"].setdefault("annotations", {})[ANN_SELECTED_NODE] = node
                await self.client.update(PVCS, updated)
                log.info("claim %s: first consumer %s on node %s", key, name_of(pod), node)
                return True
        return False

    async def sync_unbound_claim(self, claim: Obj) -> None:
        key = f"{namespace_of(claim)}/{name_of(claim)}"
        volume_name = _spec(claim).get("volumeName")
        if volume_name:
            await self._sync_claim_prebound(claim, str(volume_name))
            return
        volumes = self.pv_informer.store.list()
        effective = claim
        sc = self._class(claim_class(claim))
        delay = bool(sc and sc.get("volumeBindingMode") == "WaitForFirstConsumer")
        waiting = delay and not annotations_of(claim).get(ANN_SELECTED_NODE)
        volume = find_matching_volume(claim, volumes, waiting)
        if volume is None and claim_has_no_class(claim):
            default = default_class(self.sc_informer.store.list())
            if default is not None:
                if self._retroactive_default:
                    updated = deep_copy(claim)
                    updated.setdefault("spec", {})["storageClassName"] = name_of(default)
                    try:
                        await self.client.update(PVCS, updated)
                        log.info("claim %s: assigned the default StorageClass %s", key, name_of(default))
                        return  # the update's event brings the claim back
                    except errors.Invalid as exc:
                        log.warning(
                            "the API server does not let a claim's storageClassName be set after "
                            "creation (%s); claims without a class use the default class %s as if set",
                            exc,
                            name_of(default),
                        )
                        self._retroactive_default = False
                effective = _with_class(claim, name_of(default))
                sc = default
                delay = sc.get("volumeBindingMode") == "WaitForFirstConsumer"
                waiting = delay and not annotations_of(claim).get(ANN_SELECTED_NODE)
                volume = find_matching_volume(effective, volumes, waiting)
        if volume is not None:
            await self.bind(volume, claim)
            return
        class_name = claim_class(effective)
        if waiting:
            if await self._select_node(claim):
                return
            self.recorder.event(
                claim,
                NORMAL,
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
            )
        elif class_name:
            await self.provision(claim, class_name)
            return
        else:
            self.recorder.event(
                claim,
                NORMAL,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
            )
        await self.update_claim_status(claim, CLAIM_PENDING, None)

    async def _sync_claim_prebound(self, claim: Obj, volume_name: str) -> None:
        """The claim asked for a volume by name (``spec.volumeName``)."""
        volume = self.pv_informer.store.get(volume_name)
        if volume is None:
            await self.update_claim_status(claim, CLAIM_PENDING, None)
            return
        ref = _spec(volume).get("claimRef")
        if not ref or is_volume_bound_to_claim(volume, claim):
            reason = check_volume_satisfies_claim(volume, claim)
            if reason:
                self.recorder.event(
                    claim,
                    WARNING,
                    "VolumeMismatch",
                    f'Cannot bind to requested volume "{volume_name}": {reason}',
                )
                await self.update_claim_status(claim, CLAIM_PENDING, None)
                return
            await self.bind(volume, claim)
            return
        # the volume is claimed by another claim
        if ANN_BOUND_BY_CONTROLLER not in annotations_of(claim):
            await self.update_claim_status(claim, CLAIM_PENDING, None)
            return
        log.warning(
            "claim %s/%s: bound by the controller to volume %s, which is bound to another claim",
            namespace_of(claim),
            name_of(claim),
            volume_name,
        )

    async def sync_bound_claim(self, claim: Obj) -> None:
        volume_name = _spec(claim).get("volumeName")
        if not volume_name:
            await self._claim_lost(
                claim,
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            )
            return
        volume = self.pv_informer.store.get(str(volume_name))
        if volume is None:
            await self._claim_lost(
                claim, "ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
            )
            return
        ref = _spec(volume).get("claimRef")
        if not ref or ref.get("uid") == uid_of(claim):
            await self.bind(volume, claim)
            return
        await self._claim_lost(
            claim, "ClaimMisbound", "Two claims are bound to the same volume, this one is bound incorrectly"
        )

    async def _claim_lost(self, claim: Obj, reason: str, message: str) -> None:
        if _status(claim).get("phase") != CLAIM_LOST:
            self.recorder.event(claim, WARNING, reason, message)
        await self.update_claim_status(claim, CLAIM_LOST, None)

    # -- provisioning -----------------------------------------------------------------------------

    async def provision(self, claim: Obj, class_name: str) -> None:
        key = f"{namespace_of(claim)}/{name_of(claim)}"
        sc = self._class(class_name)
        if sc is None:
            self.recorder.event(
                claim, WARNING, "ProvisioningFailed", f'storageclass.storage.k8s.io "{class_name}" not found'
            )
            await self.update_claim_status(claim, CLAIM_PENDING, None)
            return
        provisioner = str(sc.get("provisioner") or "")
        if provisioner != PROVISIONER:
            self.recorder.event(
                claim,
                NORMAL,
                "ExternalProvisioning",
                f"Waiting for a volume to be created either by the external provisioner '{provisioner}' "
                "or manually by the system administrator. If volume creation is delayed, please verify "
                "that the provisioner is running and correctly registered.",
            )
            await self.update_claim_status(claim, CLAIM_PENDING, None)
            return
        problem = None
        if _spec(claim).get("selector") is not None:
            problem = "claim Selector is not supported"
        elif (_spec(claim).get("volumeMode") or "Filesystem") != "Filesystem":
            problem = f"volumeMode {_spec(claim).get('volumeMode')} is not supported by {PROVISIONER}"
        elif ((_spec(claim).get("resources") or {}).get("requests") or {}).get("storage") is None:
            problem = "claim has no storage request"
        if problem:
            self.recorder.event(
                claim,
                WARNING,
                "ProvisioningFailed",
                f'failed to provision volume with StorageClass "{class_name}": {problem}',
            )
            await self.update_claim_status(claim, CLAIM_PENDING, None)
            return
        ann = annotations_of(claim)
        if (
            ann.get(ANN_STORAGE_PROVISIONER) != PROVISIONER
            or ann.get(ANN_BETA_STORAGE_PROVISIONER) != PROVISIONER
        ):
            updated = deep_copy(claim)
            anns = updated["metadata"].setdefault("annotations", {})
            anns[ANN_STORAGE_PROVISIONER] = PROVISIONER
            anns[ANN_BETA_STORAGE_PROVISIONER] = PROVISIONER
            claim = await self.client.update(PVCS, updated)
        body = provisioned_volume(claim, sc, self.base_dir)
        pv_name = name_of(body)
        try:
            volume = await self.client.create(PVS, body)
            log.info(
                "claim %s: provisioned volume %s at %s",
                key,
                pv_name,
                body["spec"]["hostPath"]["path"],
            )
            self.recorder.event(
                claim,
                NORMAL,
                "ProvisioningSucceeded",
                f"Successfully provisioned volume {pv_name} using {PROVISIONER}",
            )
        except errors.AlreadyExists:
            volume = await self.client.get(PVS, pv_name)
        await self.bind(volume, claim)

    # -- binding ----------------------------------------------------------------------------------

    async def bind(self, volume: Obj, claim: Obj) -> None:
        """``bind``: volume -> claim, volume phase Bound, claim -> volume, claim status Bound."""
        volume = await self._bind_volume_to_claim(volume, claim)
        volume = await self.update_volume_phase(volume, PV_BOUND)
        claim = await self._bind_claim_to_volume(claim, volume)
        await self.update_claim_status(claim, CLAIM_BOUND, volume)

    async def _bind_volume_to_claim(self, volume: Obj, claim: Obj) -> Obj:
        set_bound_by_controller = not is_volume_bound_to_claim(volume, claim)
        updated = deep_copy(volume)
        dirty = False
        ref = _spec(volume).get("claimRef") or {}
        if (
            not ref
            or ref.get("name") != name_of(claim)
            or ref.get("namespace") != namespace_of(claim)
            or ref.get("uid") != uid_of(claim)
        ):
            updated.setdefault("spec", {})["claimRef"] = claim_ref(claim)
            dirty = True
        anns = updated.setdefault("metadata", {}).setdefault("annotations", {})
        if set_bound_by_controller and ANN_BOUND_BY_CONTROLLER not in anns:
            anns[ANN_BOUND_BY_CONTROLLER] = "yes"
            dirty = True
        if not dirty:
            return volume
        result = await self.client.update(PVS, updated)
        log.info("volume %s: bound to claim %s/%s", name_of(volume), namespace_of(claim), name_of(claim))
        return result

    async def _bind_claim_to_volume(self, claim: Obj, volume: Obj) -> Obj:
        updated = deep_copy(claim)
        dirty = False
        anns = updated.setdefault("metadata", {}).setdefault("annotations", {})
        if _spec(claim).get("volumeName") != name_of(volume):
            updated.setdefault("spec", {})["volumeName"] = name_of(volume)
            if ANN_BOUND_BY_CONTROLLER not in anns:
                anns[ANN_BOUND_BY_CONTROLLER] = "yes"
            dirty = True
        if ANN_BIND_COMPLETED not in anns:
            anns[ANN_BIND_COMPLETED] = "yes"
            dirty = True
        if not dirty:
            return claim
        result = await self.client.update(PVCS, updated)
        log.info("claim %s/%s: bound to volume %s", namespace_of(claim), name_of(claim), name_of(volume))
        return result

    async def update_claim_status(self, claim: Obj, phase: str, volume: Obj | None) -> Obj:
        return await self.write_status(PVCS, claim, claim_status(claim, phase, volume))

    async def update_volume_phase(self, volume: Obj, phase: str, message: str = "") -> Obj:
        status = _status(volume)
        if status.get("phase") == phase and (status.get("message") or "") == message:
            return volume
        updated = deep_copy(volume)
        new_status = dict(status)
        if status.get("phase") != phase:
            new_status["lastPhaseTransitionTime"] = rfc3339(self.ctx.clock())
        new_status["phase"] = phase
        if message:
            new_status["message"] = message
        else:
            new_status.pop("message", None)
        updated["status"] = new_status
        result = await self.client.update_status(PVS, updated)
        log.info("volume %s: phase %s", name_of(volume), phase)
        return result

    # -- volumes ----------------------------------------------------------------------------------

    async def sync_volume(self, name: str) -> None:
        volume = self.pv_informer.store.get(name)
        if volume is None or is_deleting(volume):
            return
        ref = _spec(volume).get("claimRef")
        if not ref or not ref.get("uid"):
            await self.update_volume_phase(volume, PV_AVAILABLE)
            return
        claim_key = f"{ref.get('namespace') or ''}/{ref.get('name') or ''}"
        claim = self.pvc_informer.store.get(claim_key)
        if claim is not None and uid_of(claim) != ref.get("uid"):
            claim = None
        if claim is None:
            # the cache may lag: ask the API server before releasing the volume
            try:
                live = await self.client.get(PVCS, str(ref.get("name")), str(ref.get("namespace") or ""))
                if uid_of(live) == ref.get("uid"):
                    return  # the cache will catch up
            except errors.NotFound:
                pass
            if _status(volume).get("phase") not in (PV_RELEASED, PV_FAILED):
                volume = await self.update_volume_phase(volume, PV_RELEASED)
            await self.reclaim(volume)
            return
        claim_volume = _spec(claim).get("volumeName")
        if not claim_volume:
            if volume_mode_mismatch(claim, volume):
                self.recorder.event(
                    volume,
                    WARNING,
                    "VolumeMismatch",
                    "Cannot bind PersistentVolume to requested PersistentVolumeClaim due to incompatible volumeMode.",
                )
                return
            self._enqueue_claim(claim_key)  # binding in flight, or pre-bound: the claim's sync binds
            return
        if claim_volume == name:
            await self.update_volume_phase(volume, PV_BOUND)
            return
        # the claim is bound to another volume
        if (
            annotations_of(volume).get(ANN_PROVISIONED_BY)
            and _spec(volume).get("persistentVolumeReclaimPolicy") == "Delete"
        ):
            if _status(volume).get("phase") not in (PV_RELEASED, PV_FAILED):
                volume = await self.update_volume_phase(volume, PV_RELEASED)
            await self.reclaim(volume)
        elif ANN_BOUND_BY_CONTROLLER in annotations_of(volume):
            await self.unbind_volume(volume)

    async def unbind_volume(self, volume: Obj) -> None:
        updated = deep_copy(volume)
        anns = updated.setdefault("metadata", {}).get("annotations") or {}
        if ANN_BOUND_BY_CONTROLLER in anns:
            updated["spec"].pop("claimRef", None)
            anns.pop(ANN_BOUND_BY_CONTROLLER, None)
            updated["metadata"]["annotations"] = anns or None
        else:
            updated["spec"]["claimRef"]["uid"] = ""
        volume = await self.client.update(PVS, updated)
        log.info("volume %s: unbound", name_of(volume))
        await self.update_volume_phase(volume, PV_AVAILABLE)

    async def reclaim(self, volume: Obj) -> None:
        name = name_of(volume)
        policy = _spec(volume).get("persistentVolumeReclaimPolicy") or "Retain"
        if policy == "Retain":
            log.debug("volume %s: released, policy Retain", name)
            return
        if policy == "Recycle":
            if _status(volume).get("phase") != PV_FAILED:
                self.recorder.event(
                    volume, WARNING, "VolumeFailedRecycle", "No recycler plugin found for the volume!"
                )
                await self.update_volume_phase(volume, PV_FAILED, "No recycler plugin found for the volume!")
            return
        provisioner = annotations_of(volume).get(ANN_PROVISIONED_BY)
        if provisioner and provisioner != PROVISIONER:
            return  # an external provisioner deletes its volumes
        if provisioner != PROVISIONER:
            if _status(volume).get("phase") != PV_FAILED:
                message = f'error getting deleter volume plugin for volume "{name}": no deletable volume plugin matched'
                self.recorder.event(volume, WARNING, "VolumeFailedDelete", message)
                await self.update_volume_phase(volume, PV_FAILED, message)
            return
        path = provisioned_dir(volume, self.base_dir)
        if path is None:
            log.warning(
                "volume %s: hostPath %s is not a directory of this provisioner (base %s); data kept",
                name,
                (_spec(volume).get("hostPath") or {}).get("path"),
                self.base_dir,
            )
        else:
            try:
                removed = await asyncio.to_thread(remove_provisioned_dir, path, self.base_dir)
            except OSError as exc:
                message = f"failed to remove {path}: {exc}"
                self.recorder.event(volume, WARNING, "VolumeFailedDelete", message)
                await self.update_volume_phase(volume, PV_FAILED, message)
                return
            if removed:
                log.info("volume %s: removed %s", name, path)
            else:
                log.warning("volume %s: %s resolves outside %s; data kept", name, path, self.base_dir)
        try:
            await self.client.delete(PVS, name)
            log.info("volume %s: deleted (reclaim policy Delete)", name)
        except errors.NotFound:
            pass
