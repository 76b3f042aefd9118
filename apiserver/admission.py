"""Admission: the plugins every write passes after authorization, as Kubernetes' admission chain.

The generic registry (:mod:`apiserver.registry`) calls :class:`Admission` on each create, update
(and patch) and delete once the object is prepared (defaulted and validated), before it is stored.
As in Kubernetes the *mutating* phase runs first (ServiceAccount, LimitRanger defaults), then the
*validating* phase (LimitRanger limits, ServiceAccount, NodeRestriction, PodSecurity, and
ResourceQuota last, because it charges the quota).  Dry-run requests are admitted too; only the
quota charge is skipped for them.  The user is :data:`apiserver.authtypes.current_user`; ``None``
means the API server itself.

Plugins (Kubernetes' names, for ``--enable-admission-plugins``/``--disable-admission-plugins``):

* ``NamespaceLifecycle`` -- creates in a missing or terminating namespace are refused
  (:meth:`apiserver.registry.Storage.check_namespace_accepts`).
* ``ServiceAccount`` -- a pod runs as ``default`` unless it names a service account, which must
  exist; the projected ``kube-api-access-XXXXX`` volume is added and mounted read-only at
  ``/var/run/secrets/kubernetes.io/serviceaccount`` unless ``automountServiceAccountToken`` is
  false on the pod or the service account.
* ``LimitRanger`` -- LimitRange ``default``/``defaultRequest`` fill containers' resources; ``min``,
  ``max`` and ``maxLimitRequestRatio`` are enforced per Container and per Pod, storage min/max per
  PersistentVolumeClaim.
* ``NodeRestriction`` -- a kubelet (``system:node:NAME`` in ``system:nodes``) changes only its own
  Node (not its taints, not labels outside the kubelet's set), its own Lease in
  ``kube-node-lease``, mirror pods bound to itself and the status of its own pods.
* ``PodSecurity`` -- :mod:`apiserver.podsecurity`: the namespace's ``enforce`` level refuses
  pods; ``warn`` answers with ``Warning`` headers; ``audit`` annotates the audit event.
* ``CertificateApproval``, ``CertificateSigning``, ``CertificateSubjectRestriction`` --
  :mod:`apiserver.certificates`: approving or denying a CertificateSigningRequest needs verb
  ``approve`` on its signer (``signers``), issuing its certificate verb ``sign``; no
  ``system:masters`` client certificates through ``kubernetes.io/kube-apiserver-client``.
* ``ResourceQuota`` -- every quota of the namespace covering the object is charged in
  ``status.used`` (compare-and-swap); over the hard limit is a 403.
"""

from __future__ import annotations

import copy
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from apimachinery import defaults, errors, quota
from apimachinery.quantity import format_quantity, parse_quantity, quantity_format
from apimachinery.resources import ResourceInfo

from . import certificates, ingressclass_admission, podsecurity, priority
from .authtypes import NODE_USER_PREFIX, NODES_GROUP, UserInfo, current_user
from .openapi import warning_header
from .watchcache import decode

if TYPE_CHECKING:
    from .registry import Storage

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# In Kubernetes' recommended order.
ALL_PLUGINS = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "Priority",
    "CertificateApproval",
    "CertificateSigning",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "PodSecurity",
    "ResourceQuota",
)
DEFAULT_PLUGINS = ALL_PLUGINS

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_VOLUME_PREFIX = "kube-api-access-"
TOKEN_EXPIRATION_SECONDS = 3607
NODE_LEASE_NAMESPACE = "kube-node-lease"
LIMIT_RANGER_ANNOTATION = "kubernetes.io/limit-ranger"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def plugins_from_flags(enable: str = "", disable: str = "") -> tuple[str, ...]:
    """The enabled plugins: the defaults plus ``enable`` minus ``disable`` (comma separated),
    in Kubernetes' order; an unknown name is a ``ValueError``."""
    on = [n.strip() for n in enable.split(",") if n.strip()]
    off = [n.strip() for n in disable.split(",") if n.strip()]
    unknown = sorted({n for n in on + off if n not in ALL_PLUGINS})
    if unknown:
        raise ValueError(f"unknown admission plugins: {', '.join(unknown)}; known: {', '.join(ALL_PLUGINS)}")
    return tuple(p for p in ALL_PLUGINS if (p in DEFAULT_PLUGINS or p in on) and p not in off)


# --- warnings and audit annotations of the request being served ----------------------------------
_warnings: ContextVar[list[str] | None] = ContextVar("minik_admission_warnings", default=None)
_audit: ContextVar[dict[str, str] | None] = ContextVar("minik_admission_audit", default=None)


def add_warning(text: str) -> None:
    found = _warnings.get()
    if found is None:
        found = []
        _warnings.set(found)
    if text not in found:
        found.append(text)


def take_warnings() -> list[str]:
    found = _warnings.get()
    if found:
        _warnings.set(None)
        return found
    return []


def with_warnings(response: Any) -> Any:
    """Add the request's admission warnings to ``response`` as ``Warning: 299 - "..."`` headers."""
    for text in take_warnings():
        response.headers.append("Warning", warning_header(text))
    return response


def add_audit_annotation(key: str, value: str) -> None:
    found = _audit.get()
    if found is None:
        found = {}
        _audit.set(found)
    found[key] = value


def take_audit_annotations() -> dict[str, str]:
    """The audit annotations admission left for the request's audit event (then cleared)."""
    found = _audit.get()
    if found:
        _audit.set(None)
        return found
    return {}


# --- the request -----------------------------------------------------------------------------------
@dataclass
class Request:
    """What admission sees of a write (Kubernetes' ``admission.Attributes``)."""

    operation: str  # CREATE, UPDATE, DELETE
    info: ResourceInfo
    namespace: str
    name: str
    obj: Obj | None
    old: Obj | None = None
    subresource: str = ""
    user: UserInfo | None = None
    dry_run: bool = False

    @property
    def gk(self) -> tuple[str, str]:
        return self.info.group, self.info.kind

    def forbidden(self, message: str) -> errors.Forbidden:
        return forbidden(self.info, self.name, message)


def forbidden(info: ResourceInfo, name: str, message: str) -> errors.Forbidden:
    """Kubernetes' ``admission.NewForbidden``: ``pods "x" is forbidden: MESSAGE``."""
    resource = f"{info.plural}.{info.group}" if info.group else info.plural
    text = f'{resource} "{name}" is forbidden: {message}' if name else f"{resource} is forbidden: {message}"
    return errors.Forbidden(text, name=name or None, group=info.group, kind=info.plural)


def node_name_of(user: UserInfo | None) -> str | None:
    """NAME of a ``system:node:NAME`` user in ``system:nodes``; None for everyone else."""
    if user is None or not user.name.startswith(NODE_USER_PREFIX) or NODES_GROUP not in user.groups:
        return None
    return user.name[len(NODE_USER_PREFIX) :] or None


def _d(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _dl(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _q(value: Any) -> Decimal | None:
    try:
        return parse_quantity(str(value))
    except ValueError:
        return None


def _qs(value: Any) -> str:
    """A quantity as Kubernetes prints it (``Quantity.String()``)."""
    try:
        return format_quantity(parse_quantity(str(value)), quantity_format(str(value)))
    except ValueError:
        return str(value)


def is_mirror_pod(pod: Obj) -> bool:
    return MIRROR_POD_ANNOTATION in _d(_d(pod.get("metadata")).get("annotations"))


# --- ServiceAccount --------------------------------------------------------------------------------
def should_automount(service_account: Obj | None, pod: Obj) -> bool:
    pod_value = _d(pod.get("spec")).get("automountServiceAccountToken")
    if pod_value is not None:
        return bool(pod_value)
    sa_value = (service_account or {}).get("automountServiceAccountToken")
    if sa_value is not None:
        return bool(sa_value)
    return True


def token_volume(name: str) -> Obj:
    """The projected volume Kubernetes' ServiceAccount admission adds."""
    return {
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
            "defaultMode": 420,
        },
    }


def mount_service_account_token(pod: Obj, suffix: str | None = None) -> None:
    """Add the token volume (unless one is there) and mount it in every container and init
    container that has nothing at the token path yet (Kubernetes' ``mountServiceAccountToken``)."""
    spec = pod.setdefault("spec", {})
    volumes = spec.get("volumes") if isinstance(spec.get("volumes"), list) else []
    volume_name = next(
        (v.get("name") for v in _dl(volumes) if str(v.get("name", "")).startswith(TOKEN_VOLUME_PREFIX)), None
    )
    has_volume = volume_name is not None
    if volume_name is None:
        volume_name = TOKEN_VOLUME_PREFIX + (suffix or "".join(random.choice(_NAME_CHARS) for _ in range(5)))
    mount = {"name": volume_name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}
    needed = False
    for key in ("initContainers", "containers"):
        for container in _dl(spec.get(key)):
            mounts = container.get("volumeMounts")
            if not isinstance(mounts, list):
                mounts = container["volumeMounts"] = []
            if any(_d(m).get("mountPath") == TOKEN_MOUNT_PATH for m in mounts):
                continue
            mounts.append(dict(mount))
            needed = True
    if needed and not has_volume:
        spec["volumes"] = [*volumes, token_volume(volume_name)]


# --- LimitRanger ---------------------------------------------------------------------------------
def limit_range_item_defaults(item: Obj) -> Obj:
    """``SetDefaults_LimitRangeItem``: for Container items, ``default`` falls back to ``max`` and
    ``defaultRequest`` to ``default``, then to ``min``."""
    item = copy.deepcopy(item)
    if item.get("type") != "Container":
        return item
    default = dict(_d(item.get("default")))
    request = dict(_d(item.get("defaultRequest")))
    for k, v in _d(item.get("max")).items():
        default.setdefault(k, v)
    for k, v in default.items():
        request.setdefault(k, v)
    for k, v in _d(item.get("min")).items():
        request.setdefault(k, v)
    item["default"], item["defaultRequest"] = default, request
    return item


def apply_limit_defaults(pod: Obj, limit_ranges: list[Obj]) -> bool:
    """Fill containers' missing limits and requests from the Container items' defaults and record
    what was set in the ``kubernetes.io/limit-ranger`` annotation; True when anything changed."""
    limits: Obj = {}
    requests: Obj = {}
    for lr in limit_ranges:
        for item in _dl(_d(lr.get("spec")).get("limits")):
            if item.get("type") != "Container":
                continue
            item = limit_range_item_defaults(item)
            limits.update(_d(item.get("default")))
            requests.update(_d(item.get("defaultRequest")))
    if not limits and not requests:
        return False
    notes: list[str] = []
    spec = _d(pod.get("spec"))
    for key, prefix in (("containers", "container"), ("initContainers", "init container")):
        for c in _dl(spec.get(key)):
            resources = c.get("resources")
            if not isinstance(resources, dict):
                resources = c["resources"] = {}
            c_limits: Obj = dict(_d(resources.get("limits")))
            c_requests: Obj = dict(_d(resources.get("requests")))
            set_limits = sorted(k for k in limits if k not in c_limits)
            set_requests = sorted(k for k in requests if k not in c_requests)
            for k in set_limits:
                c_limits[k] = limits[k]
            for k in set_requests:
                c_requests[k] = requests[k]
            if c_limits:
                resources["limits"] = c_limits
            if c_requests:
                resources["requests"] = c_requests
            if set_requests:
                notes.append(f"{', '.join(set_requests)} request for {prefix} {c.get('name', '')}")
            if set_limits:
                notes.append(f"{', '.join(set_limits)} limit for {prefix} {c.get('name', '')}")
    if notes:
        meta = pod.setdefault("metadata", {})
        annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
        annotations[LIMIT_RANGER_ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)
        meta["annotations"] = annotations
    return bool(notes)


def _min_constraint(kind: str, name: str, enforced: Any, req: Obj, lim: Obj) -> str | None:
    e = _q(enforced)
    if e is None:
        return None
    if name not in req:
        return f"minimum {name} usage per {kind} is {_qs(enforced)}.  No request is specified"
    r = _q(req[name])
    if r is not None and r < e:
        return f"minimum {name} usage per {kind} is {_qs(enforced)}, but request is {_qs(req[name])}"
    if name in lim:
        v = _q(lim[name])
        if v is not None and v < e:
            return f"minimum {name} usage per {kind} is {_qs(enforced)}, but limit is {_qs(lim[name])}"
    return None


def _max_constraint(kind: str, name: str, enforced: Any, req: Obj, lim: Obj) -> str | None:
    e = _q(enforced)
    if e is None:
        return None
    if name not in lim:
        return f"maximum {name} usage per {kind} is {_qs(enforced)}.  No limit is specified"
    v = _q(lim[name])
    if v is not None and v > e:
        return f"maximum {name} usage per {kind} is {_qs(enforced)}, but limit is {_qs(lim[name])}"
    if name in req:
        r = _q(req[name])
        if r is not None and r > e:
            return f"maximum {name} usage per {kind} is {_qs(enforced)}, but request is {_qs(req[name])}"
    return None


def _max_request_constraint(kind: str, name: str, enforced: Any, req: Obj) -> str | None:
    e = _q(enforced)
    if e is None:
        return None
    if name not in req:
        return f"maximum {name} usage per {kind} is {_qs(enforced)}.  No request is specified"
    r = _q(req[name])
    if r is not None and r > e:
        return f"maximum {name} usage per {kind} is {_qs(enforced)}, but request is {_qs(req[name])}"
    return None


def _ratio_constraint(kind: str, name: str, enforced: Any, req: Obj, lim: Obj) -> str | None:
    e = _q(enforced)
    if e is None:
        return None
    r = _q(req.get(name)) if name in req else None
    v = _q(lim.get(name)) if name in lim else None
    if not r:
        return (
            f"{name} max limit to request ratio per {kind} is {_qs(enforced)}, "
            "but no request is specified or request is 0"
        )
    if not v:
        return (
            f"{name} max limit to request ratio per {kind} is {_qs(enforced)}, "
            "but no limit is specified or limit is 0"
        )
    ratio = v / r
    if ratio > e:
        return f"{name} max limit to request ratio per {kind} is {_qs(enforced)}, but provided ratio is {float(ratio):f}"
    return None


def _item_errors(item: Obj, kind: str, req: Obj, lim: Obj) -> list[str]:
    errs: list[str] = []
    for name, v in _d(item.get("min")).items():
        errs.append(_min_constraint(kind, name, v, req, lim) or "")
    for name, v in _d(item.get("max")).items():
        errs.append(_max_constraint(kind, name, v, req, lim) or "")
    for name, v in _d(item.get("maxLimitRequestRatio")).items():
        errs.append(_ratio_constraint(kind, name, v, req, lim) or "")
    return [e for e in errs if e]


def limit_errors(pod: Obj, limit_ranges: list[Obj]) -> list[str]:
    """Kubernetes' ``PodValidateLimitFunc``: the violations of every Container and Pod item."""
    spec = _d(pod.get("spec"))
    errs: list[str] = []
    for lr in limit_ranges:
        for item in _dl(_d(lr.get("spec")).get("limits")):
            kind = item.get("type")
            if kind == "Container":
                for c in _dl(spec.get("containers")) + _dl(spec.get("initContainers")):
                    res = _d(c.get("resources"))
                    errs += _item_errors(item, "Container", _d(res.get("requests")), _d(res.get("limits")))
            elif kind == "Pod":
                requests, limits = quota.pod_requests_limits(spec)
                req = {k: quota.format_value(k, v) for k, v in requests.items()}
                lim = {k: quota.format_value(k, v) for k, v in limits.items()}
                errs += _item_errors(item, "Pod", req, lim)
    return errs


def pvc_limit_errors(pvc: Obj, limit_ranges: list[Obj]) -> list[str]:
    requests = _d(_d(_d(pvc.get("spec")).get("resources")).get("requests"))
    errs: list[str] = []
    for lr in limit_ranges:
        for item in _dl(_d(lr.get("spec")).get("limits")):
            if item.get("type") != "PersistentVolumeClaim":
                continue
            for name, v in _d(item.get("min")).items():
                errs.append(_min_constraint("PersistentVolumeClaim", name, v, requests, {}) or "")
            for name, v in _d(item.get("max")).items():
                errs.append(_max_request_constraint("PersistentVolumeClaim", name, v, requests) or "")
    return [e for e in errs if e]


def aggregate(errs: list[str]) -> str:
    """Kubernetes' ``utilerrors.NewAggregate``: one message as is, several in brackets."""
    return errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"


# --- NodeRestriction -----------------------------------------------------------------------------
_KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    }
)


def _label_namespace(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key else ""


def _under(namespace: str, domain: str) -> bool:
    return namespace == domain or namespace.endswith("." + domain)


def forbidden_node_labels(modified: set[str]) -> list[str]:
    out = []
    for key in modified:
        ns = _label_namespace(key)
        if _under(ns, "node-restriction.kubernetes.io"):
            out.append(key)
        elif (_under(ns, "kubernetes.io") or _under(ns, "k8s.io")) and not (
            key in _KUBELET_LABELS or _under(ns, "kubelet.kubernetes.io") or _under(ns, "node.kubernetes.io")
        ):
            out.append(key)
    return sorted(out)


def modified_labels(new: Obj, old: Obj) -> set[str]:
    return {k for k in set(new) | set(old) if new.get(k) != old.get(k) or (k in new) != (k in old)}


def node_restriction(req: Request, node: str) -> None:
    """Kubernetes' NodeRestriction for a request of ``system:node:<node>``; raises 403."""
    group, kind = req.gk
    obj = req.obj or {}
    if (group, kind) == ("", "Pod"):
        if req.subresource == "status":
            if req.operation != "UPDATE":
                raise req.forbidden(f'unexpected operation "{req.operation}"')
            old = req.old or {}
            if _d(old.get("spec")).get("nodeName") != node:
                raise req.forbidden(
                    f'node "{node}" can only update pod status for pods with spec.nodeName set to itself'
                )
            if _d(_d(obj.get("metadata")).get("labels")) != _d(_d(old.get("metadata")).get("labels")):
                raise req.forbidden(f'node "{node}" cannot update labels through pod status')
            return
        if req.subresource:
            return
        if req.operation == "CREATE":
            _node_pod_create(req, node, obj)
        elif req.operation == "DELETE":
            if _d((req.old or {}).get("spec")).get("nodeName") != node:
                raise req.forbidden(f'node "{node}" can only delete pods with spec.nodeName set to itself')
        else:
            raise req.forbidden(
                f'unexpected operation "{req.operation}", node "{node}" can only create and delete mirror pods'
            )
    elif (group, kind) == ("", "Node"):
        if req.name != node:
            raise req.forbidden(f'node "{node}" is not allowed to modify node "{req.name}"')
        labels = _d(_d(obj.get("metadata")).get("labels"))
        if req.operation == "CREATE":
            bad = forbidden_node_labels(set(labels))
            if bad:
                raise req.forbidden(
                    f'node "{node}" is not allowed to set the following labels: {", ".join(bad)}'
                )
        elif req.operation == "UPDATE" and req.old is not None:
            old = req.old
            if (_d(obj.get("spec")).get("taints") or []) != (_d(old.get("spec")).get("taints") or []):
                raise req.forbidden(f'node "{node}" is not allowed to modify taints')
            bad = forbidden_node_labels(modified_labels(labels, _d(_d(old.get("metadata")).get("labels"))))
            if bad:
                raise req.forbidden(f"is not allowed to modify labels: {', '.join(bad)}")
    elif (group, kind) == ("coordination.k8s.io", "Lease"):
        if req.namespace != NODE_LEASE_NAMESPACE:
            raise req.forbidden(f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace')
        if req.name != node:
            raise req.forbidden("can only access node lease with the same name as the requesting node")


def _node_pod_create(req: Request, node: str, pod: Obj) -> None:
    meta, spec = _d(pod.get("metadata")), _d(pod.get("spec"))
    if not is_mirror_pod(pod):
        raise req.forbidden(
            f'pod does not have "{MIRROR_POD_ANNOTATION}" annotation, node "{node}" can only create mirror pods'
        )
    if spec.get("nodeName") != node:
        raise req.forbidden(f'node "{node}" can only create pods with spec.nodeName set to itself')
    owners = _dl(meta.get("ownerReferences"))
    if len(owners) > 1:
        raise req.forbidden(f'node "{node}" can only create pods with a single owner reference set to itself')
    if owners:
        ref = owners[0]
        if ref.get("apiVersion") != "v1" or ref.get("kind") != "Node" or ref.get("name") != node:
            raise req.forbidden(f'node "{node}" can only create pods with an owner reference set to itself')
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if sa and sa != "default":  # every pod is defaulted to "default" before admission here
        raise req.forbidden(f'node "{node}" can not create pods that reference a service account')
    refs = referenced_objects(spec)
    for what in ("secrets", "configmaps", "persistentvolumeclaims"):
        if refs[what]:
            raise req.forbidden(f'node "{node}" can not create pods that reference {what}')


def referenced_objects(spec: Obj) -> dict[str, set[str]]:
    """Names of the Secrets, ConfigMaps and PersistentVolumeClaims a pod spec references."""
    out: dict[str, set[str]] = {"secrets": set(), "configmaps": set(), "persistentvolumeclaims": set()}
    for ref in _dl(spec.get("imagePullSecrets")):
        if ref.get("name"):
            out["secrets"].add(str(ref["name"]))
    for v in _dl(spec.get("volumes")):
        if isinstance(v.get("secret"), dict):
            out["secrets"].add(str(v["secret"].get("secretName", "")))
        if isinstance(v.get("configMap"), dict):
            out["configmaps"].add(str(v["configMap"].get("name", "")))
        if isinstance(v.get("persistentVolumeClaim"), dict):
            out["persistentvolumeclaims"].add(str(v["persistentVolumeClaim"].get("claimName", "")))
        for source in _dl(_d(v.get("projected")).get("sources")):
            if isinstance(source.get("secret"), dict):
                out["secrets"].add(str(source["secret"].get("name", "")))
            if isinstance(source.get("configMap"), dict):
                out["configmaps"].add(str(source["configMap"].get("name", "")))
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in _dl(spec.get(key)):
            for env_from in _dl(c.get("envFrom")):
                if isinstance(env_from.get("secretRef"), dict):
                    out["secrets"].add(str(env_from["secretRef"].get("name", "")))
                if isinstance(env_from.get("configMapRef"), dict):
                    out["configmaps"].add(str(env_from["configMapRef"].get("name", "")))
            for env in _dl(c.get("env")):
                source = _d(env.get("valueFrom"))
                if isinstance(source.get("secretKeyRef"), dict):
                    out["secrets"].add(str(source["secretKeyRef"].get("name", "")))
                if isinstance(source.get("configMapKeyRef"), dict):
                    out["configmaps"].add(str(source["configMapKeyRef"].get("name", "")))
    return out


def check_node_token_request(user: UserInfo | None, pod: Obj | None) -> str | None:
    """NodeRestriction for ``serviceaccounts/NAME/token`` asked by a kubelet: the token must be
    bound to a pod running on that node.  The reason to refuse, or None."""
    node = node_name_of(user)
    if node is None:
        return None
    if pod is None:
        return "node requested token not bound to a pod"
    if _d(pod.get("spec")).get("nodeName") != node:
        return "node requested token bound to a pod scheduled on a different node"
    return None


def admit_token_request(name: str, pod: Obj | None) -> None:
    """What the TokenRequest handler calls (``serviceaccounts/NAME/token``) once it has resolved the
    bound pod: NodeRestriction's 403 for a kubelet asking for a token it may not have."""
    reason = check_node_token_request(current_user.get(), pod)
    if reason is not None:
        raise errors.Forbidden(
            f'serviceaccounts "{name}" is forbidden: {reason}', name=name, kind="serviceaccounts"
        )


# --- ResourceQuota -------------------------------------------------------------------------------
def quota_resources_handled(group: str, plural: str, hard: set[str]) -> set[str]:
    """The quota resources (of ``hard``) that objects of this resource count against."""
    out = set()
    for name in hard:
        if (group, plural) == ("", "pods"):
            if name in ("pods", "count/pods", "cpu", "memory", "ephemeral-storage") or (
                name.startswith(("requests.", "limits.")) and name != "requests.storage"
            ):
                out.add(name)
        elif name == quota.count_name(group, plural) or name == quota.SHORT_NAMES.get((group, plural)):
            out.add(name)
        elif (group, plural) == ("", "services") and name in ("services.nodeports", "services.loadbalancers"):
            out.add(name)
        elif (group, plural) == ("", "persistentvolumeclaims") and (
            name == "requests.storage" or ".storageclass.storage.k8s.io/" in name
        ):
            out.add(name)
    return out


def quota_check(
    q: Obj, group: str, plural: str, obj: Obj, delta: quota.Usage
) -> tuple[str | None, dict[str, str] | None]:
    """(refusal message, new status.used) for charging ``delta`` to quota ``q``."""
    name = _d(q.get("metadata")).get("name", "")
    status = _d(q.get("status"))
    hard = quota.parse_list(status.get("hard"))
    used = quota.parse_list(status.get("used"))
    handled = quota_resources_handled(group, plural, set(hard))
    if not handled:
        return None, None
    if (group, plural) == ("", "pods"):
        missing = quota.missing_constraints(_d(obj.get("spec")), handled)
        if missing:
            return f"failed quota: {name}: {quota.constraint_message(missing)}", None
    unknown = sorted(r for r in handled if r not in used)
    if unknown:
        return f"status unknown for quota: {name}, resources: {','.join(unknown)}", None
    requested = {k: v for k, v in delta.items() if k in handled and v != 0}
    if not requested:
        return None, None
    new_used = dict(used)
    for k, v in requested.items():
        new_used[k] = new_used.get(k, Decimal(0)) + v
    exceeded = sorted(k for k in requested if new_used[k] > hard[k])
    if exceeded:
        return (
            f"exceeded quota: {name}, requested: {quota.pretty({k: requested[k] for k in exceeded})}, "
            f"used: {quota.pretty({k: used[k] for k in exceeded})}, "
            f"limited: {quota.pretty({k: hard[k] for k in exceeded})}"
        ), None
    out = dict(_d(status.get("used")))
    out.update({k: quota.format_value(k, new_used[k]) for k in requested})
    return None, out


# --- the chain -----------------------------------------------------------------------------------
# Kinds whose updates can use more quota (Kubernetes' evaluators that handle UPDATE).
_QUOTA_ON_UPDATE = (("", "PersistentVolumeClaim"), ("", "Service"))


class Admission:
    """The enabled plugins over one :class:`~apiserver.registry.Storage`."""

    def __init__(self, storage: Storage, plugins: tuple[str, ...] = DEFAULT_PLUGINS) -> None:
        self.storage = storage
        self.plugins = frozenset(plugins)
        self.priority = priority.PriorityAdmission(storage)  # apiserver/priority.py

    def enabled(self, name: str) -> bool:
        return name in self.plugins

    # ---- cache lookups
    def _cached(self, plural: str, group: str = "", version: str = "v1") -> Any:
        return self.storage.registries[(group, version, plural)]

    def _namespaced_list(
        self, plural: str, namespace: str, group: str = "", version: str = "v1"
    ) -> list[Obj]:
        reg = self._cached(plural, group, version)
        if reg.cache.ready.is_set():
            items, _ = reg.cache.list(reg.info.key_prefix(namespace))
            return list(items)
        return []

    async def _lookup(self, plural: str, namespace: str | None, name: str) -> Obj | None:
        """The object from the watch cache, else read from etcd (it may be too new for the cache)."""
        reg = self._cached(plural)
        key = reg.key(namespace, name)
        found = reg.cache.get(key)
        if found is not None:
            return found  # type: ignore[no-any-return]
        kv, _ = await self.storage.etcd.get(key)
        return decode(kv) if kv is not None else None

    # ---- entry points the registry calls
    async def create(self, info: ResourceInfo, namespace: str | None, obj: Obj, dry_run: bool) -> None:
        name = str(_d(obj.get("metadata")).get("name") or "")
        req = Request("CREATE", info, namespace or "", name, obj, None, "", current_user.get(), dry_run)
        await self._run(req)

    def wrap_update(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        apply: Callable[[Obj], Any],
        subresource: str | None,
        dry_run: bool,
    ) -> Callable[[Obj], Any]:
        """``apply`` (the registry's update function) followed by admission of its result."""
        user = current_user.get()
        if not self._update_interesting(info, user, subresource, namespace or ""):
            return apply  # nothing to admit: no cost on the hot paths (status writes)

        async def admitted(current: Obj) -> Any:
            old = copy.deepcopy(current)
            new = apply(current)
            if inspect.isawaitable(new):
                new = await new
            if isinstance(new, dict):
                req = Request(
                    "UPDATE", info, namespace or "", name, new, old, subresource or "", user, dry_run
                )
                await self._run(req)
            return new

        return admitted

    async def delete(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        get: Callable[[str | None, str], Awaitable[Obj]],
        dry_run: bool,
    ) -> None:
        priority.check_delete(info, name)  # the system PriorityClasses stay
        user = current_user.get()
        if not (self.enabled("NodeRestriction") and node_name_of(user) is not None):
            return
        old = await get(namespace, name)
        await self._run(Request("DELETE", info, namespace or "", name, None, old, "", user, dry_run))

    def _update_interesting(
        self, info: ResourceInfo, user: UserInfo | None, subresource: str | None, namespace: str
    ) -> bool:
        """Whether an update may be refused or charged: cache lookups only, so that the updates
        nothing admits (most of them) cost nothing."""
        if node_name_of(user) is not None and self.enabled("NodeRestriction"):
            return True
        kind = (info.group, info.kind)
        if kind == ("", "Namespace"):
            return not subresource and self.enabled("PodSecurity")
        if kind == (certificates.GROUP, certificates.KIND):
            return subresource in ("approval", "status")
        if kind == (priority.GROUP, "PriorityClass"):  # only one globalDefault
            return not subresource and self.enabled("Priority")
        if kind in _QUOTA_ON_UPDATE:
            return not subresource and bool(
                self._namespaced_list("resourcequotas", namespace)
                or (kind[1] == "PersistentVolumeClaim" and self._namespaced_list("limitranges", namespace))
            )
        if (not subresource or subresource == "ephemeralcontainers") and (
            kind == ("", "Pod") or kind in podsecurity.TEMPLATE_KINDS
        ):
            return self.enabled("PodSecurity") and bool(self._pod_security_labels(namespace))
        return False

    def _pod_security_labels(self, namespace: str) -> dict[str, Any]:
        namespaces = self._cached("namespaces")
        ns = namespaces.cache.get(namespaces.key(None, namespace)) if namespace else None
        labels = _d(_d((ns or {}).get("metadata")).get("labels"))
        return {k: v for k, v in labels.items() if k.startswith(podsecurity.LABEL_PREFIX)}

    async def _run(self, req: Request) -> None:
        # mutating phase
        if req.operation == "CREATE" and req.gk == ("", "Pod") and req.obj is not None:
            changed = False
            if self.enabled("LimitRanger"):
                changed |= apply_limit_defaults(req.obj, self._namespaced_list("limitranges", req.namespace))
            if self.enabled("ServiceAccount"):
                changed |= await self._service_account_admit(req)
            if changed:
                defaults.apply_defaults(req.info, req.obj)
                req.obj.setdefault("status", {})["qosClass"] = defaults.qos_class(_d(req.obj.get("spec")))
        if self.enabled("Priority"):
            await self.priority.admit(req, lambda: self._namespaced_list("resourcequotas", req.namespace))
        if req.operation == "CREATE" and req.gk == ("networking.k8s.io", "Ingress") and req.obj is not None:
            if self.enabled(ingressclass_admission.PLUGIN):
                reg = self._cached("ingressclasses", "networking.k8s.io")
                classes = reg.cache.list(reg.info.key_prefix(None))[0] if reg.cache.ready.is_set() else []
                ingressclass_admission.admit(req.obj, classes)
        # validating phase
        if self.enabled("LimitRanger"):
            self._limit_ranger_validate(req)
        if req.gk == (certificates.GROUP, certificates.KIND) and req.obj is not None:
            if req.operation == "CREATE" and self.enabled("CertificateSubjectRestriction"):
                certificates.admit_create(req.obj)
            elif req.operation == "UPDATE" and req.old is not None:
                certificates.admit_update(req.obj, req.old, req.subresource, req.user, set(self.plugins))
        if self.enabled("NodeRestriction"):
            node = node_name_of(req.user)
            if node is not None:
                node_restriction(req, node)
        if self.enabled("PodSecurity"):
            self._pod_security(req)
        if self.enabled("ResourceQuota") and req.obj is not None and not req.subresource:
            if req.operation == "CREATE" or req.gk in _QUOTA_ON_UPDATE:
                await self._resource_quota(req)

    # ---- ServiceAccount
    async def _service_account_admit(self, req: Request) -> bool:
        pod = req.obj
        assert pod is not None
        if is_mirror_pod(pod):
            return False
        spec = pod.setdefault("spec", {})
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = spec["serviceAccount"] = account
        sa = await self._lookup("serviceaccounts", req.namespace, account)
        if sa is None and account == "default":
            sa = await self._make_default_service_account(req.namespace, req.dry_run)
        if sa is None:
            raise req.forbidden(
                f'error looking up service account {req.namespace}/{account}: serviceaccount "{account}" not found'
            )
        changed = False
        if should_automount(sa, pod):
            mount_service_account_token(pod)
            changed = True
        if not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
            spec["imagePullSecrets"] = [{"name": s.get("name")} for s in _dl(sa.get("imagePullSecrets"))]
        return changed

    async def _make_default_service_account(self, namespace: str, dry_run: bool) -> Obj | None:
        """The namespace's ``default`` ServiceAccount, made now when the serviceaccount controller
        has not made it yet (so a pod created right after its namespace is not refused)."""
        body: Obj = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
        if dry_run:
            return body
        reg = self._cached("serviceaccounts")
        token = current_user.set(None)
        try:
            return await reg.create(namespace, body)  # type: ignore[no-any-return]
        except errors.AlreadyExists:
            return await self._lookup("serviceaccounts", namespace, "default")
        finally:
            current_user.reset(token)

    # ---- LimitRanger
    def _limit_ranger_validate(self, req: Request) -> None:
        if req.subresource or req.obj is None:
            return
        gk = req.gk
        if gk == ("", "Pod") and req.operation == "CREATE":
            ranges = self._namespaced_list("limitranges", req.namespace)
            errs = limit_errors(req.obj, ranges) if ranges else []
        elif gk == ("", "PersistentVolumeClaim") and req.operation in ("CREATE", "UPDATE"):
            ranges = self._namespaced_list("limitranges", req.namespace)
            errs = pvc_limit_errors(req.obj, ranges) if ranges else []
        else:
            return
        if errs:
            raise req.forbidden(aggregate(errs))

    # ---- PodSecurity
    def _pod_security(self, req: Request) -> None:
        gk = req.gk
        if gk == ("", "Namespace"):
            if req.operation in ("CREATE", "UPDATE") and req.obj is not None and not req.subresource:
                self._pod_security_namespace(req)
            return
        if req.operation not in ("CREATE", "UPDATE") or req.obj is None or not req.namespace:
            return
        if req.subresource and req.subresource != "ephemeralcontainers":
            return
        found = podsecurity.pod_spec_of(gk[0], gk[1], req.obj)
        if found is None:
            return
        if req.operation == "UPDATE" and req.old is not None:
            old = podsecurity.pod_spec_of(gk[0], gk[1], req.old)
            if old is not None and old[1] == found[1]:
                return  # only metadata changed: not evaluated again, as Kubernetes
        labels = self._pod_security_labels(req.namespace)
        if not labels:
            return
        policy = podsecurity.namespace_policy(labels)
        meta, spec = found
        is_pod = gk == ("", "Pod")
        results: dict[str, list[str]] = {}

        def reasons(level: str) -> list[str]:
            if level not in results:
                results[level] = podsecurity.evaluate(level, meta, spec)
            return results[level]

        enforce_level, enforce_version = policy["enforce"]
        denied = False
        if is_pod and enforce_level != podsecurity.PRIVILEGED:
            add_audit_annotation(
                "pod-security.kubernetes.io/enforce-policy", podsecurity.policy_string(*policy["enforce"])
            )
            found_reasons = reasons(enforce_level)
            if found_reasons:
                denied = True
                policy_text = podsecurity.policy_string(enforce_level, enforce_version)
                raise req.forbidden(
                    f'violates PodSecurity "{policy_text}": {podsecurity.forbidden_reasons(found_reasons)}'
                )
        audit_level, audit_version = policy["audit"]
        if audit_level != podsecurity.PRIVILEGED and reasons(audit_level):
            add_audit_annotation(
                "pod-security.kubernetes.io/audit-violations",
                f'would violate PodSecurity "{podsecurity.policy_string(audit_level, audit_version)}": '
                f"{podsecurity.forbidden_reasons(reasons(audit_level))}",
            )
        warn_level, warn_version = policy["warn"]
        if warn_level != podsecurity.PRIVILEGED and not denied and reasons(warn_level):
            add_warning(
                f'would violate PodSecurity "{podsecurity.policy_string(warn_level, warn_version)}": '
                f"{podsecurity.forbidden_reasons(reasons(warn_level))}"
            )

    def _pod_security_namespace(self, req: Request) -> None:
        assert req.obj is not None
        labels = _d(_d(req.obj.get("metadata")).get("labels"))
        bad = podsecurity.validate_namespace_labels(labels)
        if bad:
            causes = [
                errors.cause(f"metadata.labels[{key}]", f'Invalid value: "{value}": {message}')
                for key, value, message in bad
            ]
            raise errors.invalid("Namespace", req.name, causes)
        if req.operation != "UPDATE" or req.old is None:
            return
        old_labels = _d(_d(req.old.get("metadata")).get("labels"))
        new_policy = podsecurity.namespace_policy(labels)["enforce"]
        if new_policy == podsecurity.namespace_policy(old_labels)["enforce"]:
            return
        if new_policy[0] == podsecurity.PRIVILEGED:
            return
        offending = []
        for pod in self._namespaced_list("pods", req.name):
            found = podsecurity.pod_spec_of("", "Pod", pod)
            assert found is not None
            pod_reasons = podsecurity.evaluate(new_policy[0], *found)
            if pod_reasons:
                short = ", ".join(r.split(" (", 1)[0] for r in pod_reasons)
                offending.append(f"{_d(pod.get('metadata')).get('name')}: {short}")
        if offending:
            add_warning(
                f'existing pods in namespace "{req.name}" violate the new PodSecurity enforce level '
                f'"{podsecurity.policy_string(*new_policy)}"'
            )
            for line in offending[:10]:
                add_warning(line)

    # ---- ResourceQuota
    async def _resource_quota(self, req: Request) -> None:
        assert req.obj is not None
        if not req.namespace:
            return
        quotas = self._namespaced_list("resourcequotas", req.namespace)
        if not quotas:
            return
        group, plural = req.info.group, req.info.plural
        delta = quota.object_usage(group, plural, req.obj)
        if req.operation == "UPDATE":  # only what grew is charged (a claim resized, a NodePort added)
            before = quota.object_usage(group, plural, req.old or {})
            delta = {
                k: v - before.get(k, Decimal(0)) for k, v in delta.items() if v > before.get(k, Decimal(0))
            }
            if not delta:
                return
        pertinent = []
        for q in quotas:
            if not quota.quota_matches(q, group, plural, req.obj):
                continue
            message, _ = quota_check(q, group, plural, req.obj, delta)
            if message is not None:
                raise req.forbidden(message)
            pertinent.append(_d(q.get("metadata")).get("name", ""))
        if req.dry_run:
            return
        reg = self._cached("resourcequotas")
        for name in pertinent:

            def charge(current: Obj) -> Obj:
                message, used = quota_check(current, group, plural, req.obj or {}, delta)
                if message is not None:
                    raise req.forbidden(message)
                if used is not None:
                    current.setdefault("status", {})["used"] = used
                return current

            try:
                await reg.guaranteed_update(req.namespace, name, charge)
            except errors.NotFound:
                continue


__all__ = [
    "ALL_PLUGINS",
    "DEFAULT_PLUGINS",
    "Admission",
    "Request",
    "add_warning",
    "check_node_token_request",
    "plugins_from_flags",
    "take_audit_annotations",
    "take_warnings",
    "with_warnings",
]
