"""The table of every kind minik serves.

Everything that needs to know about a kind -- the API server's routes and storage keys, discovery,
OpenAPI, printers, the CLI's short names -- reads it from here, so adding a kind is one entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ResourceInfo:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale", "binding", "log", "exec", ...
    # spec/status separation: the main resource ignores changes to status, /status changes only it
    has_status: bool = True
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )
    list_kind: str = field(default="")
    # custom resources (served from a CustomResourceDefinition): the version stored in etcd, the
    # version's openAPIV3Schema, additionalPrinterColumns and the scale subresource's paths
    custom: bool = False
    storage_version: str = ""
    singular_name: str = ""
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)
    scale_paths: dict[str, str] | None = field(default=None, compare=False, hash=False)

    @property
    def singular(self) -> str:
        return self.singular_name or self.kind.lower()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"

    @property
    def storage_group(self) -> str:
        return self.group or "core"

    def key_prefix(self, namespace: str | None = None) -> str:
        """etcd key prefix for a list (all namespaces when ``namespace`` is None)."""
        base = f"/registry/{self.storage_group}/{self.plural}/"
        if self.namespaced and namespace:
            return f"{base}{namespace}/"
        return base

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"/registry/{self.storage_group}/{self.plural}/{namespace}/{name}"
        return f"/registry/{self.storage_group}/{self.plural}/{name}"


_ALL = ("all",)

RESOURCES: tuple[ResourceInfo, ...] = (
    # core/v1
    ResourceInfo("", "v1", "Namespace", "namespaces", False, ("ns",), (), ("status", "finalize")),
    ResourceInfo("", "v1", "Node", "nodes", False, ("no",), (), ("status", "proxy")),
    ResourceInfo(
        "",
        "v1",
        "Pod",
        "pods",
        True,
        ("po",),
        _ALL,
        ("status", "binding", "log", "exec", "attach", "portforward", "eviction", "ephemeralcontainers"),
    ),
    ResourceInfo("", "v1", "Service", "services", True, ("svc",), _ALL, ("status", "proxy")),
    ResourceInfo("", "v1", "Endpoints", "endpoints", True, ("ep",), (), (), has_status=False),
    ResourceInfo("", "v1", "ConfigMap", "configmaps", True, ("cm",), (), (), has_status=False),
    ResourceInfo("", "v1", "Secret", "secrets", True, (), (), (), has_status=False),
    ResourceInfo("", "v1", "Event", "events", True, ("ev",), (), (), has_status=False),
    ResourceInfo(
        "", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",), (), ("token",), has_status=False
    ),
    ResourceInfo("", "v1", "PersistentVolume", "persistentvolumes", False, ("pv",), (), ("status",)),
    ResourceInfo(
        "", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",), (), ("status",)
    ),
    ResourceInfo("", "v1", "LimitRange", "limitranges", True, ("limits",), (), (), has_status=False),
    ResourceInfo("", "v1", "ResourceQuota", "resourcequotas", True, ("quota",), (), ("status",)),
    # apps/v1
    ResourceInfo("apps", "v1", "Deployment", "deployments", True, ("deploy",), _ALL, ("status", "scale")),
    ResourceInfo("apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), _ALL, ("status", "scale")),
    ResourceInfo("apps", "v1", "StatefulSet", "statefulsets", True, ("sts",), _ALL, ("status", "scale")),
    ResourceInfo("apps", "v1", "DaemonSet", "daemonsets", True, ("ds",), _ALL, ("status",)),
    ResourceInfo(
        "apps", "v1", "ControllerRevision", "controllerrevisions", True, (), (), (), has_status=False
    ),
    # batch/v1
    ResourceInfo("batch", "v1", "Job", "jobs", True, (), _ALL, ("status",)),
    ResourceInfo("batch", "v1", "CronJob", "cronjobs", True, ("cj",), _ALL, ("status",)),
    # policy/v1
    ResourceInfo(
        "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",), (), ("status",)
    ),
    # scheduling.k8s.io/v1
    ResourceInfo(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        False,
        ("pc",),
        (),
        (),
        has_status=False,
    ),
    # autoscaling/v2
    ResourceInfo(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        True,
        ("hpa",),
        _ALL,
        ("status",),
    ),
    # apiregistration.k8s.io/v1
    ResourceInfo("apiregistration.k8s.io", "v1", "APIService", "apiservices", False, (), (), ("status",)),
    # coordination.k8s.io/v1
    ResourceInfo("coordination.k8s.io", "v1", "Lease", "leases", True, (), (), (), has_status=False),
    # discovery.k8s.io/v1
    ResourceInfo(
        "discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True, (), (), (), has_status=False
    ),
    # networking.k8s.io/v1
    ResourceInfo("networking.k8s.io", "v1", "Ingress", "ingresses", True, ("ing",), (), ("status",)),
    ResourceInfo(
        "networking.k8s.io", "v1", "IngressClass", "ingressclasses", False, (), (), (), has_status=False
    ),
    ResourceInfo(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        True,
        ("netpol",),
        (),
        (),
        has_status=False,
    ),
    # apiextensions.k8s.io/v1
    ResourceInfo(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        ("crd", "crds"),
        ("api-extensions",),
        ("status",),
    ),
    # rbac.authorization.k8s.io/v1
    *(
        ResourceInfo(
            "rbac.authorization.k8s.io", "v1", kind, plural, namespaced, (), (), (), has_status=False
        )
        for kind, plural, namespaced in (
            ("ClusterRole", "clusterroles", False),
            ("ClusterRoleBinding", "clusterrolebindings", False),
            ("Role", "roles", True),
            ("RoleBinding", "rolebindings", True),
        )
    ),
    # authentication.k8s.io/v1 and authorization.k8s.io/v1: reviews, answered and never stored
    *(
        ResourceInfo(group, "v1", kind, plural, namespaced, (), (), (), has_status=False, verbs=("create",))
        for group, kind, plural, namespaced in (
            ("authentication.k8s.io", "TokenReview", "tokenreviews", False),
            ("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews", False),
            ("authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews", False),
            ("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False),
            ("authorization.k8s.io", "LocalSubjectAccessReview", "localsubjectaccessreviews", True),
            ("authorization.k8s.io", "SelfSubjectRulesReview", "selfsubjectrulesreviews", False),
        )
    ),
    # certificates.k8s.io/v1
    ResourceInfo(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        False,
        ("csr",),
        (),
        ("status", "approval"),
    ),
    # storage.k8s.io/v1
    ResourceInfo(
        "storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ("sc",), (), (), has_status=False
    ),
)

# The binding pseudo-kind, accepted only through pods/{name}/binding.
BINDING = ResourceInfo("", "v1", "Binding", "bindings", True, (), (), (), has_status=False, verbs=("create",))

# The TokenRequest pseudo-kind, accepted only through serviceaccounts/{name}/token.
TOKEN_REQUEST = ResourceInfo(
    "authentication.k8s.io", "v1", "TokenRequest", "tokenrequests", True, (), (), (), verbs=("create",)
)

_BY_GVR: dict[tuple[str, str, str], ResourceInfo] = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_GVK: dict[tuple[str, str, str], ResourceInfo] = {(r.group, r.version, r.kind): r for r in RESOURCES}


# Custom resources being served, by the name of the CustomResourceDefinition that defines them.
_CUSTOM: dict[str, tuple[ResourceInfo, ...]] = {}


def register_custom(crd_name: str, infos: tuple[ResourceInfo, ...]) -> None:
    """Serve (or serve anew) the versions of one CustomResourceDefinition."""
    unregister_custom(crd_name)
    _CUSTOM[crd_name] = infos
    for r in infos:
        _BY_GVR[(r.group, r.version, r.plural)] = r
        _BY_GVK[(r.group, r.version, r.kind)] = r


def unregister_custom(crd_name: str) -> tuple[ResourceInfo, ...]:
    """Stop serving one CustomResourceDefinition's versions; returns what was served."""
    infos = _CUSTOM.pop(crd_name, ())
    for r in infos:
        if _BY_GVR.get((r.group, r.version, r.plural)) is r:
            del _BY_GVR[(r.group, r.version, r.plural)]
        if _BY_GVK.get((r.group, r.version, r.kind)) is r:
            del _BY_GVK[(r.group, r.version, r.kind)]
    return infos


def custom_resources() -> list[ResourceInfo]:
    return [r for infos in _CUSTOM.values() for r in infos]


def all_resources() -> list[ResourceInfo]:
    """The built-in kinds, then the custom resources being served."""
    return [*RESOURCES, *custom_resources()]


_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes' version order: GA before beta before alpha, higher numbers first, then others."""
    m = _VERSION.match(version)
    if not m:
        return (3, 0, 0, version)
    major, level, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[level]
    return (rank, -major, -minor, "")


def crd_resources(crd: dict[str, Any]) -> tuple[ResourceInfo, ...]:
    """The served versions of an accepted CRD, in Kubernetes' version priority order."""
    spec = crd["spec"]
    names = spec["names"]
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    infos = []
    for v in sorted(spec["versions"], key=lambda v: version_priority(v["name"])):
        if not v.get("served"):
            continue
        sub = v.get("subresources") or {}
        scale = sub.get("scale")
        infos.append(
            ResourceInfo(
                spec["group"],
                v["name"],
                names["kind"],
                names["plural"],
                spec["scope"] == "Namespaced",
                tuple(names.get("shortNames") or ()),
                tuple(names.get("categories") or ()),
                tuple(s for s in ("status", "scale") if s in sub),
                has_status="status" in sub,
                list_kind=names.get("listKind") or f"{names['kind']}List",
                custom=True,
                storage_version=storage,
                singular_name=names.get("singular") or names["kind"].lower(),
                schema=(v.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=tuple(v.get("additionalPrinterColumns") or ()),
                scale_paths=dict(scale) if isinstance(scale, dict) else None,
            )
        )
    return tuple(infos)


def by_plural(group: str, version: str, plural: str) -> ResourceInfo | None:
    return _BY_GVR.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> ResourceInfo | None:
    group, _, version = api_version.rpartition("/")
    return _BY_GVK.get((group, version, kind))


def kind_info(api_version: str, kind: str) -> ResourceInfo:
    """The resource of a kind minik serves; KeyError for one it does not."""
    info = by_kind(api_version, kind)
    if info is None:
        raise KeyError(f"{api_version}/{kind} is not in the resources table")
    return info


def plural_info(group: str, version: str, plural: str) -> ResourceInfo:
    """The resource of a plural minik serves; KeyError for one it does not."""
    info = by_plural(group, version, plural)
    if info is None:
        raise KeyError(f"{group}/{version}/{plural} is not in the resources table")
    return info


def group_versions() -> list[tuple[str, str]]:
    """(group, version) pairs in a stable order: core first, then groups as listed."""
    seen: list[tuple[str, str]] = []
    for r in all_resources():
        gv = (r.group, r.version)
        if gv not in seen:
            seen.append(gv)
    return seen


def resolve(name: str) -> ResourceInfo | None:
    """Find a kind from what a user types: plural, singular, kind, short name, or ``plural.group``."""
    lowered = name.lower()
    resource, _, group = lowered.partition(".")
    for r in RESOURCES:
        if group and r.group != group and not r.group.startswith(group):
            continue
        if resource in (r.plural, r.singular, r.kind.lower()) or resource in r.short_names:
            return r
    return None


SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
