"""Per-kind rules for create, update and status writes -- Kubernetes' "REST strategies".

The generic registry calls these; each kind's quirks live here and nowhere else:
what ``status`` looks like on create, which kinds carry ``metadata.generation``, and the split
between the main resource (spec) and ``/status``.  Defaulting (:mod:`apimachinery.defaults`) runs
here, once, before validation, which only checks.
"""

from __future__ import annotations

import copy
import random
import uuid
from typing import Any

from apimachinery import defaults, errors
from apimachinery.resources import ResourceInfo
from apimachinery.timefmt import rfc3339
from apiserver import certificates, crdschema, managedfields, validation
from apiserver.authtypes import current_user

# Kinds whose spec changes move metadata.generation (and whose controllers report observedGeneration).
GENERATION_KINDS = frozenset(
    {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "Ingress", "PodDisruptionBudget"}
)


def has_generation(info: ResourceInfo) -> bool:
    """Kinds whose spec changes move ``metadata.generation``: custom resources and CRDs too."""
    return info.kind in GENERATION_KINDS or info.custom or info.group == crdschema.GROUP


def _stored_api_version(info: ResourceInfo) -> str:
    """Custom objects are stored in their CRD's storage version (``conversion: None``)."""
    if info.custom:
        return f"{info.group}/{info.storage_version}"
    return info.api_version


_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def generate_name(prefix: str) -> str:
    """``generateName`` + five random characters, from Kubernetes' alphabet (no vowels)."""
    return prefix[:58] + "".join(random.choice(_NAME_CHARS) for _ in range(5))


def _initial_status(info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any] | None:
    """The status an object starts with; None keeps what the client sent."""
    kind = info.kind
    if kind == "Pod":
        return {"phase": "Pending", "qosClass": defaults.qos_class(obj.get("spec") or {})}
    if kind == "Namespace":
        return {"phase": "Active"}
    if kind in ("PersistentVolumeClaim", "PersistentVolume"):
        return {"phase": "Pending"}
    if kind in ("Service", "Ingress"):
        return {"loadBalancer": {}}
    if kind == "Node":
        return None
    if info.has_status:
        return {}
    return None


def prepare_for_create(info: ResourceInfo, obj: dict[str, Any], namespace: str | None) -> None:
    """Fill in server-set metadata, reset status, default and validate (raises 422)."""
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise errors.BadRequest("metadata must be an object")
    obj["apiVersion"] = _stored_api_version(info)
    obj["kind"] = info.kind
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = generate_name(str(meta["generateName"]))
    if info.namespaced:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = rfc3339()
    meta.pop("resourceVersion", None)
    meta.pop("deletionTimestamp", None)
    meta.pop("deletionGracePeriodSeconds", None)
    meta.pop("selfLink", None)
    request_entries = meta.pop("managedFields", None)
    if has_generation(info):
        meta["generation"] = 1
    else:
        meta.pop("generation", None)
    if info.kind == "Namespace":
        obj.setdefault("spec", {})
    if info.group == crdschema.GROUP and crdschema.CLEANUP_FINALIZER not in (meta.get("finalizers") or []):
        meta["finalizers"] = [*(meta.get("finalizers") or []), crdschema.CLEANUP_FINALIZER]
    drop_null_metadata(obj)
    defaults.apply_defaults(info, obj, create=True)
    if info.custom:
        crdschema.prepare(info, obj)
    elif info.group == crdschema.GROUP:
        crdschema.default_crd(obj)
    status = _initial_status(info, obj)
    if status is not None:
        obj["status"] = status
    if certificates.is_csr(info):  # the requesting user into spec; apiserver/certificates.py
        certificates.prepare_create(obj, current_user.get())
    _validate(info, obj, None)
    managedfields.track_create(info, obj, request_entries)


def _validate(
    info: ResourceInfo, obj: dict[str, Any], old: dict[str, Any] | None, status_only: bool = False
) -> None:
    """Raise 422 with the causes.  ``status_only`` (a built-in kind's ``/status`` write, whose spec
    is the stored one): only causes in ``metadata`` and ``status`` count, as Kubernetes' status
    strategies validate only those; a stored spec that today's rules refuse does not block status."""
    causes = validation.validate(info, obj, old)
    if status_only:
        causes = [c for c in causes if _top_field(c) in ("", "metadata", "status")]
    if info.custom:
        causes.extend(crdschema.validate_custom(info, obj))
    elif info.group == crdschema.GROUP:
        causes.extend(crdschema.validate_crd(obj))
        if old is not None:
            causes.extend(_crd_update_causes(obj, old))
    if causes:
        name = (obj.get("metadata") or {}).get("name") or ""
        raise errors.invalid(info.kind, name, causes, info.group)


_IMMUTABLE_META = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


def prepare_for_update(
    info: ResourceInfo, new: dict[str, Any], old: dict[str, Any], subresource: str | None = None
) -> dict[str, Any]:
    """Merge a client's new object with the stored one, as the main resource or ``/status``.

    Returns the object to store.  The main resource never changes ``status``; ``/status`` changes
    only ``status``.  ``generation`` moves when the spec (or anything outside metadata/status) changes.
    """
    new_meta = new.get("metadata")
    request_entries = new_meta.get("managedFields") if isinstance(new_meta, dict) else None
    if subresource == "status":
        result = copy.deepcopy(old)
        if "status" in new:
            result["status"] = new["status"]
        else:
            result.pop("status", None)
        meta = result["metadata"]
    else:
        result = copy.deepcopy(new)
        result["apiVersion"] = _stored_api_version(info)
        result["kind"] = info.kind
        meta = result.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.BadRequest("metadata must be an object")
        old_meta = old["metadata"]
        for k in _IMMUTABLE_META:
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        meta.pop("managedFields", None)
        meta.pop("selfLink", None)
        if "generation" in old_meta:
            meta["generation"] = old_meta["generation"]
        else:
            meta.pop("generation", None)
        if info.has_status:
            if "status" in old:
                result["status"] = copy.deepcopy(old["status"])
            else:
                result.pop("status", None)
        if info.kind == "Namespace":
            # spec.finalizers changes only through /finalize
            result.setdefault("spec", {})["finalizers"] = copy.deepcopy(
                (old.get("spec") or {}).get("finalizers", [])
            )
        if info.kind == "Service":
            drop_type_dependent_fields(result.get("spec") or {}, old.get("spec") or {})
        drop_null_metadata(result)
        defaults.apply_defaults(info, result)
        if info.custom:
            crdschema.prepare(info, result)
        elif info.group == crdschema.GROUP:
            crdschema.default_crd(result)
        if has_generation(info) and _spec_of(result) != _spec_of(old):
            meta["generation"] = int(old_meta.get("generation") or 1) + 1
    if info.custom and subresource == "status":
        crdschema.prepare(info, result)
    if certificates.is_csr(info):
        result = certificates.prepare_update(result, new, old, subresource)
    _validate(info, result, old, status_only=subresource == "status" and not info.custom)
    managedfields.track_update(info, result, old, request_entries, subresource)
    return result


def _top_field(cause: dict[str, str]) -> str:
    """The top-level field a cause names (``spec`` of ``spec.containers[0].image``)."""
    return str(cause.get("field") or "").split(".", 1)[0].split("[", 1)[0]


def _crd_update_causes(new: dict[str, Any], old: dict[str, Any]) -> list[dict[str, str]]:
    """A CRD's group, scope and kind are fixed once it exists."""
    causes = []
    new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    for field in ("group", "scope"):
        if new_spec.get(field) != old_spec.get(field):
            causes.append(
                errors.cause(f"spec.{field}", "Invalid value: field is immutable", "FieldValueInvalid")
            )
    return causes


def drop_null_metadata(obj: Any) -> None:
    """Remove ``null`` fields of every ``metadata`` (kubectl sends ``creationTimestamp: null`` in
    pod templates); Kubernetes' typed decoding turns them into empty values that are not stored."""
    if isinstance(obj, dict):
        for key, value in list(obj.items()):
            if key == "metadata" and isinstance(value, dict):
                for k in [k for k, v in value.items() if v is None]:
                    del value[k]
            drop_null_metadata(value)
    elif isinstance(obj, list):
        for item in obj:
            drop_null_metadata(item)


def drop_type_dependent_fields(spec: dict[str, Any], old: dict[str, Any]) -> None:
    """When a Service's type changes, drop the fields only the old type needs, unless the client
    changed them itself -- Kubernetes' ``dropTypeDependentFields``, so that NodePort -> ClusterIP
    works without the client clearing ``externalTrafficPolicy`` and the node ports by hand."""
    new_type = spec.get("type") or "ClusterIP"
    if new_type == (old.get("type") or "ClusterIP"):
        return
    if new_type not in ("NodePort", "LoadBalancer"):
        if spec.get("externalTrafficPolicy") == old.get("externalTrafficPolicy"):
            spec.pop("externalTrafficPolicy", None)
        old_ports = {
            (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in old.get("ports") or []
        }
        for port in spec.get("ports") or []:
            if port.get("nodePort") is not None and old_ports.get(
                (port.get("port"), port.get("protocol", "TCP"))
            ) == port.get("nodePort"):
                port.pop("nodePort", None)
    if new_type != "LoadBalancer":
        for field in ("allocateLoadBalancerNodePorts", "loadBalancerClass", "healthCheckNodePort"):
            if field in spec and spec.get(field) == old.get(field):
                spec.pop(field, None)


def prepare_for_finalize(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """``namespaces/{name}/finalize``: only ``spec.finalizers`` changes."""
    result = copy.deepcopy(old)
    result.setdefault("spec", {})["finalizers"] = list((new.get("spec") or {}).get("finalizers") or [])
    return result


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def scale_of(info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
    """The ``autoscaling/v1 Scale`` view of a Deployment, ReplicaSet, StatefulSet or custom object."""
    from apimachinery.selectors import selector_to_string

    meta = obj["metadata"]
    if info.custom and info.scale_paths is not None:
        from apimachinery.printers import json_path_value

        paths = info.scale_paths
        selector = json_path_value(obj, paths.get("labelSelectorPath") or "")
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta.get(k)
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if meta.get(k) is not None
            },
            "spec": {"replicas": json_path_value(obj, paths["specReplicasPath"]) or 0},
            "status": {
                "replicas": json_path_value(obj, paths["statusReplicasPath"]) or 0,
                **({"selector": selector} if isinstance(selector, str) and selector else {}),
            },
        }
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {
            "replicas": status.get("replicas", 0),
            "selector": selector_to_string(spec.get("selector") or {}),
        },
    }


def set_replicas(info: ResourceInfo, obj: dict[str, Any], replicas: int) -> None:
    """Write a Scale's ``spec.replicas`` into the object (a custom one's ``specReplicasPath``)."""
    if info.custom and info.scale_paths is not None:
        parts = [p for p in info.scale_paths["specReplicasPath"].split(".") if p]
        node = obj
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = replicas
        return
    obj.setdefault("spec", {})["replicas"] = replicas
