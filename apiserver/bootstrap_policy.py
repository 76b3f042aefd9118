"""The bootstrap RBAC policy: the ClusterRoles and ClusterRoleBindings the API server creates at
start when they are missing, and reconciles (missing rules and subjects added) when they carry
``rbac.authorization.kubernetes.io/autoupdate: "true"`` -- Kubernetes' bootstrappolicy package and
its ``reconcile`` step, restricted to what minik serves and runs.

The roles of minik's own components (scheduler, controller manager, kubelets, proxy, DNS) are bound
to the users their client certificates name (``system:kube-scheduler`` ...).  ``system:node`` is
bound to nobody: kubelets are authorized by the Node authorizer (:mod:`apiserver.nodeauthz`), which
evaluates :data:`NODE_RULES` itself and subdivides access to Secrets, ConfigMaps, PVCs and the like.
"""

from __future__ import annotations

import copy
from typing import Any

from .rbac import covers, normalize_rule

Obj = dict[str, Any]

AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAPPING = "kubernetes.io/bootstrapping"
API_VERSION = "rbac.authorization.k8s.io/v1"

READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
READ_WRITE = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def rule(verbs: list[str], groups: list[str], resources: list[str], names: list[str] | None = None) -> Obj:
    r: Obj = {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}
    if names:
        r["resourceNames"] = list(names)
    return r


def urls(verbs: list[str], paths: list[str]) -> Obj:
    return {"verbs": list(verbs), "nonResourceURLs": list(paths)}


def _meta(name: str, labels: dict[str, str] | None = None) -> Obj:
    return {
        "name": name,
        "labels": {BOOTSTRAPPING: "rbac-defaults", **(labels or {})},
        "annotations": {AUTOUPDATE: "true"},
    }


def cluster_role(
    name: str, rules: list[Obj], labels: dict[str, str] | None = None, aggregate: str | None = None
) -> Obj:
    obj: Obj = {"apiVersion": API_VERSION, "kind": "ClusterRole", "metadata": _meta(name, labels)}
    if aggregate is not None:
        obj["aggregationRule"] = {
            "clusterRoleSelectors": [
                {"matchLabels": {f"rbac.authorization.k8s.io/aggregate-to-{aggregate}": "true"}}
            ]
        }
        obj["rules"] = []
    else:
        obj["rules"] = rules
    return obj


def user(name: str) -> Obj:
    return {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def group(name: str) -> Obj:
    return {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def cluster_role_binding(name: str, subjects: list[Obj], role: str | None = None) -> Obj:
    obj: Obj = {
        "apiVersion": API_VERSION,
        "kind": "ClusterRoleBinding",
        "metadata": _meta(name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role or name},
    }
    if subjects:
        obj["subjects"] = subjects
    return obj


TO_ADMIN = {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}
TO_EDIT = {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}
TO_VIEW = {"rbac.authorization.k8s.io/aggregate-to-view": "true"}

EVENTS_WRITE = rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"])

# What a kubelet may do beyond the objects the Node authorizer relates to it (Kubernetes'
# bootstrappolicy.NodeRules, plus reads of EndpointSlices).
NODE_RULES: list[Obj] = [
    rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
    rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews", "localsubjectaccessreviews"]),
    rule(READ, [""], ["services"]),
    rule(["create", "get", "list", "watch"], [""], ["nodes"]),
    rule(["patch", "update"], [""], ["nodes/status"]),
    rule(["patch", "update"], [""], ["nodes"]),
    rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
    rule(READ, [""], ["pods"]),
    rule(["create", "delete"], [""], ["pods"]),
    rule(["patch", "update"], [""], ["pods/status"]),
    rule(["create"], [""], ["pods/eviction"]),
    rule(READ, [""], ["configmaps", "secrets"]),
    rule(["get"], [""], ["persistentvolumeclaims", "persistentvolumes"]),
    rule(READ, [""], ["endpoints"]),
    rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
    rule(["create", "get", "list", "watch"], ["certificates.k8s.io"], ["certificatesigningrequests"]),
    rule(["create", "delete", "get", "patch", "update"], ["coordination.k8s.io"], ["leases"]),
    rule(["get"], ["storage.k8s.io"], ["volumeattachments"]),
    rule(["create"], [""], ["serviceaccounts/token"]),
    rule(["get", "patch", "update"], [""], ["persistentvolumeclaims/status"]),
    rule(READ, ["storage.k8s.io"], ["csidrivers"]),
    rule(["create", "delete", "get", "patch", "update"], ["storage.k8s.io"], ["csinodes"]),
    rule(READ, ["node.k8s.io"], ["runtimeclasses"]),
]

# Everything the controllers minik runs create (the controller manager runs them all under one
# identity, as kube-controller-manager without --use-service-account-credentials).
_CONTROLLER_CREATES: list[Obj] = [
    rule(
        ["create"],
        [""],
        [
            "pods",
            "pods/eviction",
            "pods/binding",
            "bindings",
            "endpoints",
            "serviceaccounts",
            "secrets",
            "configmaps",
            "persistentvolumes",
            "persistentvolumeclaims",
            "events",
        ],
    ),
    rule(["create"], ["apps"], ["replicasets", "controllerrevisions", "deployments", "statefulsets"]),
    rule(["create"], ["batch"], ["jobs"]),
    rule(["create"], ["discovery.k8s.io"], ["endpointslices"]),
    rule(["create"], ["coordination.k8s.io"], ["leases"]),
    rule(["create"], ["storage.k8s.io"], ["storageclasses"]),
    rule(["create"], ["events.k8s.io"], ["events"]),
]


def cluster_roles() -> list[Obj]:
    return [
        cluster_role("cluster-admin", [rule(["*"], ["*"], ["*"]), urls(["*"], ["*"])]),
        cluster_role("admin", [], aggregate="admin"),
        cluster_role("edit", [], labels=TO_ADMIN, aggregate="edit"),
        cluster_role("view", [], labels=TO_EDIT, aggregate="view"),
        cluster_role(
            "system:aggregate-to-admin",
            [
                rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
                rule(READ_WRITE, ["rbac.authorization.k8s.io"], ["rolebindings", "roles"]),
            ],
            labels=TO_ADMIN,
        ),
        cluster_role(
            "system:aggregate-to-edit",
            [
                rule(
                    READ,
                    [""],
                    [
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                        "secrets",
                        "services/proxy",
                    ],
                ),
                rule(["impersonate"], [""], ["serviceaccounts"]),
                rule(WRITE, [""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
                rule(["create"], [""], ["pods/eviction"]),
                rule(
                    WRITE,
                    [""],
                    [
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                    ],
                ),
                rule(["create"], [""], ["serviceaccounts/token"]),
                rule(
                    WRITE,
                    ["apps"],
                    [
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                ),
                rule(WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
                rule(WRITE, ["batch"], ["cronjobs", "jobs"]),
                rule(WRITE, ["policy"], ["poddisruptionbudgets"]),
                rule(WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
                rule(READ_WRITE, ["coordination.k8s.io"], ["leases"]),
            ],
            labels=TO_EDIT,
        ),
        cluster_role(
            "system:aggregate-to-view",
            [
                rule(
                    READ,
                    [""],
                    [
                        "configmaps",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                    ],
                ),
                rule(
                    READ,
                    [""],
                    [
                        "bindings",
                        "events",
                        "limitranges",
                        "namespaces/status",
                        "pods/log",
                        "pods/status",
                        "replicationcontrollers/status",
                        "resourcequotas",
                        "resourcequotas/status",
                    ],
                ),
                rule(READ, [""], ["namespaces"]),
                rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
                rule(
                    READ,
                    ["apps"],
                    [
                        "controllerrevisions",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "statefulsets",
                        "statefulsets/scale",
                        "statefulsets/status",
                    ],
                ),
                rule(READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
                rule(READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
                rule(READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
                rule(READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
            ],
            labels=TO_VIEW,
        ),
        cluster_role(
            "system:basic-user",
            [
                rule(
                    ["create"],
                    ["authorization.k8s.io"],
                    ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:discovery",
            [
                urls(
                    ["get"],
                    [
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/healthz",
                        "/livez",
                        "/openapi",
                        "/openapi/*",
                        "/readyz",
                        "/version",
                        "/version/",
                    ],
                )
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            [urls(["get"], ["/healthz", "/livez", "/readyz", "/version", "/version/"])],
        ),
        cluster_role(
            "system:monitoring",
            [
                urls(
                    ["get"],
                    [
                        "/healthz",
                        "/healthz/*",
                        "/livez",
                        "/livez/*",
                        "/metrics",
                        "/metrics/slis",
                        "/readyz",
                        "/readyz/*",
                    ],
                )
            ],
        ),
        cluster_role(
            "system:auth-delegator",
            [
                rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
                rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
            ],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            [urls(["get"], ["/.well-known/openid-configuration", "/openid/v1/jwks"])],
        ),
        cluster_role(
            "system:kube-scheduler",
            [
                EVENTS_WRITE,
                rule(["create"], ["coordination.k8s.io"], ["leases"]),
                # kube-scheduler's lease, or the one a scheduler with another --scheduler-name holds
                rule(["get", "update"], ["coordination.k8s.io"], ["leases"]),
                rule(READ, [""], ["nodes"]),
                rule(["delete", "get", "list", "watch"], [""], ["pods"]),
                rule(["create"], [""], ["bindings", "pods/binding"]),
                rule(["patch", "update"], [""], ["pods/status"]),
                rule(READ, [""], ["replicationcontrollers", "services"]),
                rule(READ, ["apps", "extensions"], ["replicasets"]),
                rule(READ, ["apps"], ["statefulsets"]),
                rule(READ, ["policy"], ["poddisruptionbudgets"]),
                rule(READ, [""], ["persistentvolumeclaims", "persistentvolumes"]),
                rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
                rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
                rule(READ, ["storage.k8s.io"], ["csinodes"]),
                rule(READ, [""], ["namespaces"]),
                rule(READ, ["storage.k8s.io"], ["csidrivers"]),
                rule(READ, ["storage.k8s.io"], ["csistoragecapacities"]),
            ],
        ),
        cluster_role(
            "system:volume-scheduler",
            [
                rule(["get", "list", "patch", "update", "watch"], [""], ["persistentvolumes"]),
                rule(READ, ["storage.k8s.io"], ["storageclasses"]),
                rule(["get", "list", "patch", "update", "watch"], [""], ["persistentvolumeclaims"]),
            ],
        ),
        cluster_role(
            "system:kube-controller-manager",
            [
                EVENTS_WRITE,
                rule(["create"], ["coordination.k8s.io"], ["leases"]),
                rule(["get", "update"], ["coordination.k8s.io"], ["leases"], ["kube-controller-manager"]),
                rule(["create"], [""], ["secrets", "serviceaccounts"]),
                rule(["delete"], [""], ["secrets"]),
                rule(["get"], [""], ["configmaps", "namespaces", "secrets", "serviceaccounts"]),
                rule(["update"], [""], ["secrets", "serviceaccounts"]),
                rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
                rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
                rule(["list", "watch"], ["*"], ["*"]),
                rule(["create"], [""], ["serviceaccounts/token"]),
                # minik's controllers run in this one process: the garbage collector and the
                # namespace controller read, patch and delete every kind (custom ones included),
                # the workload controllers write their objects and the status of their owners.
                rule(["get", "update", "patch", "delete", "deletecollection"], ["*"], ["*"]),
                *_CONTROLLER_CREATES,
                # csrapproving and csrsigning (Kubernetes' certificate-controller roles)
                # (kubelet serving CSRs: only those naming the requesting node's own name and addresses)
                rule(
                    ["approve"], [CERTIFICATES], ["signers"], [KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER]
                ),
                rule(["sign"], [CERTIFICATES], ["signers"], list(SIGNERS)),
            ],
        ),
        cluster_role("system:node", copy.deepcopy(NODE_RULES)),
        cluster_role(
            "system:node-proxier",
            [
                rule(["list", "watch"], [""], ["endpoints", "services"]),
                rule(READ, [""], ["nodes"]),
                EVENTS_WRITE,
                rule(["list", "watch"], ["discovery.k8s.io"], ["endpointslices"]),
                # minik's proxy is also the service load balancer: it reports its node's
                # addresses in status.loadBalancer of LoadBalancer Services
                rule(["get", "patch", "update"], [""], ["services/status"]),
            ],
        ),
        # minik-proxy's NetworkPolicy enforcement (an addition of minik's: Kubernetes leaves
        # NetworkPolicy to the network plugin, which brings its own role)
        cluster_role(
            "system:minik-network-policy",
            [
                rule(["list", "watch"], [""], ["pods", "namespaces"]),
                rule(["list", "watch"], ["networking.k8s.io"], ["networkpolicies"]),
            ],
        ),
        # ... on a joined node the proxy runs as the node, which reads pods already (the Node
        # authorizer's rules): what it lacks, read access to namespaces and NetworkPolicies
        cluster_role(
            "system:minik-network-policy-node",
            [
                rule(["list", "watch"], [""], ["namespaces"]),
                rule(["list", "watch"], ["networking.k8s.io"], ["networkpolicies"]),
            ],
        ),
        cluster_role(
            "system:minik-dns",
            [
                rule(READ, [""], ["services", "endpoints", "namespaces", "pods"]),
                rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
            ],
        ),
        # minik trace: the components ship their OpenTelemetry spans to the API server's store;
        # reading traces is granted by binding system:minik-trace-reader (admins have it anyway)
        cluster_role("system:minik-span-writer", [urls(["post"], ["/debug/minik/spans"])]),
        cluster_role("system:minik-trace-reader", [urls(["get"], ["/debug/minik/traces"])]),
        cluster_role(
            "system:minik-ingress",
            [
                rule(READ, ["networking.k8s.io"], ["ingresses", "ingressclasses"]),
                # the default IngressClass "minik", created when missing
                rule(["create"], ["networking.k8s.io"], ["ingressclasses"]),
                rule(["update", "patch"], ["networking.k8s.io"], ["ingresses/status"]),
                rule(READ, [""], ["services", "secrets", "nodes"]),
                rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
                EVENTS_WRITE,
            ],
        ),
        # metrics-server: scrapes kubelets' /metrics/resource, follows nodes and pods, and asks the
        # API server whether a proxied user may read metrics (SubjectAccessReview, through
        # system:auth-delegator)
        cluster_role(
            "system:metrics-server",
            [
                rule(["get"], [""], ["nodes/metrics"]),
                rule(READ, [""], ["nodes", "pods"]),
            ],
        ),
        # reading resource metrics (kubectl top, the HPA), aggregated into view, edit and admin
        cluster_role(
            "system:aggregated-metrics-reader",
            [rule(READ, ["metrics.k8s.io"], ["pods", "nodes"])],
            labels={**TO_VIEW, **TO_EDIT, **TO_ADMIN},
        ),
        # minik's Prometheus add-on (`minik prometheus up`): besides system:monitoring (the API
        # server's /metrics), the kubelets' /metrics
        cluster_role("system:minik-prometheus", [rule(["get"], [""], ["nodes/metrics"])]),
        *certificate_roles(),
        cluster_role(
            "system:kubelet-api-admin",
            [
                rule(READ, [""], ["nodes"]),
                rule(["proxy"], [""], ["nodes"]),
                rule(["*"], [""], ["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"]),
            ],
        ),
    ]


def cluster_role_bindings() -> list[Obj]:
    return [
        cluster_role_binding("cluster-admin", [group("system:masters")]),
        cluster_role_binding("system:basic-user", [group("system:authenticated")]),
        cluster_role_binding("system:discovery", [group("system:authenticated")]),
        cluster_role_binding(
            "system:public-info-viewer", [group("system:authenticated"), group("system:unauthenticated")]
        ),
        cluster_role_binding("system:monitoring", [group("system:monitoring")]),
        cluster_role_binding("system:minik-prometheus", [user("system:minik-prometheus")]),
        cluster_role_binding("system:service-account-issuer-discovery", [group("system:serviceaccounts")]),
        cluster_role_binding("system:kube-scheduler", [user("system:kube-scheduler")]),
        cluster_role_binding("system:volume-scheduler", [user("system:kube-scheduler")]),
        cluster_role_binding("system:kube-controller-manager", [user("system:kube-controller-manager")]),
        cluster_role_binding("system:node", []),
        cluster_role_binding("system:node-proxier", [user("system:kube-proxy")]),
        cluster_role_binding("system:minik-dns", [user("system:minik-dns")]),
        cluster_role_binding("system:metrics-server", [user("system:metrics-server")]),
        cluster_role_binding(
            "metrics-server:system:auth-delegator", [user("system:metrics-server")], "system:auth-delegator"
        ),
        cluster_role_binding("system:minik-ingress", [user("system:minik-ingress")]),
        cluster_role_binding("system:minik-network-policy", [user("system:kube-proxy")]),
        cluster_role_binding("system:minik-network-policy-node", [group("system:nodes")]),
        # TLS bootstrapping, as kubeadm binds it: bootstrap tokens create CSRs that csrapproving
        # approves (nodeclient), nodes renew their own client certificates (selfnodeclient)
        cluster_role_binding("kubeadm:kubelet-bootstrap", [group(BOOTSTRAPPERS)], "system:node-bootstrapper"),
        cluster_role_binding(
            "kubeadm:node-autoapprove-bootstrap", [group(BOOTSTRAPPERS)], f"{CSR_ROLE_PREFIX}:nodeclient"
        ),
        cluster_role_binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            [group("system:nodes")],
            f"{CSR_ROLE_PREFIX}:selfnodeclient",
        ),
        cluster_role_binding(
            "system:minik-span-writer",
            [
                user("system:kube-scheduler"),
                user("system:kube-controller-manager"),
                user("system:kube-proxy"),
                user("system:minik-dns"),
                group("system:nodes"),
            ],
        ),
    ]


# --- TLS bootstrapping ------------------------------------------------------------------------
CERTIFICATES = "certificates.k8s.io"
BOOTSTRAPPERS = "system:bootstrappers"
CSR_ROLE_PREFIX = "system:certificates.k8s.io:certificatesigningrequests"
KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
SIGNERS = (
    "kubernetes.io/kube-apiserver-client",
    KUBELET_CLIENT_SIGNER,
    KUBELET_SERVING_SIGNER,
)
CLUSTER_INFO_ROLE = "kubeadm:bootstrap-signer-clusterinfo"


def certificate_roles() -> list[Obj]:
    """Kubernetes' CSR roles: the bootstrapper's, the auto-approval subresources csrapproving checks
    with a SubjectAccessReview, and one approver role per well-known signer (bound to nobody)."""
    roles = [
        cluster_role(
            "system:node-bootstrapper",
            [rule(["create", "get", "list", "watch"], [CERTIFICATES], ["certificatesigningrequests"])],
        ),
        cluster_role(
            f"{CSR_ROLE_PREFIX}:nodeclient",
            [rule(["create"], [CERTIFICATES], ["certificatesigningrequests/nodeclient"])],
        ),
        cluster_role(
            f"{CSR_ROLE_PREFIX}:selfnodeclient",
            [rule(["create"], [CERTIFICATES], ["certificatesigningrequests/selfnodeclient"])],
        ),
    ]
    for signer in SIGNERS:
        roles.append(
            cluster_role(
                f"system:certificates.k8s.io:{signer.split('/', 1)[1]}-approver",
                [rule(["approve"], [CERTIFICATES], ["signers"], [signer])],
            )
        )
    return roles


MINIK_CONFIG_ROLE = "minik:nodes-minik-config"
MINIK_CERTS_ROLE = "minik:minik-certs"


def _namespaced_reader(
    name: str, namespace: str, resource: str, object_name: str, subjects: list[Obj]
) -> list[Obj]:
    """A Role allowing ``get`` of one named object and its RoleBinding to ``subjects``."""
    meta = _meta(name)
    meta["namespace"] = namespace
    role: Obj = {
        "apiVersion": API_VERSION,
        "kind": "Role",
        "metadata": meta,
        "rules": [rule(["get"], [""], [resource], [object_name])],
    }
    binding: Obj = {
        "apiVersion": API_VERSION,
        "kind": "RoleBinding",
        "metadata": copy.deepcopy(meta),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": subjects,
    }
    return [role, binding]


def namespaced_roles() -> list[Obj]:
    """The Roles and RoleBindings of system namespaces, as kubeadm makes them: anyone (before any
    authentication) may read ``kube-public/cluster-info``, the ConfigMap a joining host pins the CA
    from; bootstrap tokens and nodes may read ``kube-system/minik-config`` (kubeadm's
    ``kubeadm:nodes-kubeadm-config``); bootstrap tokens may read the encrypted control-plane
    certificates ``kube-system/minik-certs`` (kubeadm's ``kubeadm:kubeadm-certs``)."""
    return [
        *_namespaced_reader(
            CLUSTER_INFO_ROLE,
            "kube-public",
            "configmaps",
            "cluster-info",
            [user("system:anonymous"), group("system:unauthenticated")],
        ),
        *_namespaced_reader(
            MINIK_CONFIG_ROLE,
            "kube-system",
            "configmaps",
            "minik-config",
            [group(BOOTSTRAPPERS), group("system:nodes")],
        ),
        *_namespaced_reader(
            MINIK_CERTS_ROLE, "kube-system", "secrets", "minik-certs", [group(BOOTSTRAPPERS)]
        ),
    ]


# --- reconciling ---------------------------------------------------------------------------------


def _autoupdate(existing: Obj) -> bool:
    return ((existing.get("metadata") or {}).get("annotations") or {}).get(AUTOUPDATE) != "false"


def _merge_meta(existing: Obj, expected: Obj) -> bool:
    """Add the expected labels and annotations the existing object lacks (existing values win)."""
    changed = False
    meta = existing.setdefault("metadata", {})
    for field in ("labels", "annotations"):
        want = (expected.get("metadata") or {}).get(field) or {}
        have = meta.get(field) or {}
        merged = {**want, **have}
        if merged != have:
            meta[field] = merged
            changed = True
    return changed


def reconcile_role(existing: Obj, expected: Obj) -> Obj | None:
    """The existing ClusterRole with what the bootstrap one adds (missing rules, selectors, labels
    and annotations), or None when nothing is missing or it opted out of updates."""
    if not _autoupdate(existing):
        return None
    result = copy.deepcopy(existing)
    changed = _merge_meta(result, expected)
    want_agg = expected.get("aggregationRule")
    if want_agg:
        agg = result.setdefault("aggregationRule", {})
        sels = agg.setdefault("clusterRoleSelectors", [])
        for sel in want_agg.get("clusterRoleSelectors") or []:
            if sel not in sels:
                sels.append(copy.deepcopy(sel))
                changed = True
    else:
        have = [r for r in (result.get("rules") or []) if isinstance(r, dict)]
        for r in expected.get("rules") or []:
            if covers(have, r):
                have.append(copy.deepcopy(r))
                changed = True
        result["rules"] = have
    return result if changed else None


def reconcile_binding(existing: Obj, expected: Obj) -> tuple[Obj | None, bool]:
    """(the binding to store, whether it must be recreated because its roleRef changed); (None,
    False) when nothing is missing or it opted out of updates."""
    if not _autoupdate(existing):
        return None, False
    if existing.get("roleRef") != expected.get("roleRef"):
        return copy.deepcopy(expected), True
    result = copy.deepcopy(existing)
    changed = _merge_meta(result, expected)
    subjects = result.get("subjects") or []
    for s in expected.get("subjects") or []:
        if s not in subjects:
            subjects.append(copy.deepcopy(s))
            changed = True
    if subjects:
        result["subjects"] = subjects
    return (result if changed else None), False


__all__ = [
    "AUTOUPDATE",
    "NODE_RULES",
    "cluster_role_bindings",
    "certificate_roles",
    "cluster_roles",
    "namespaced_roles",
    "normalize_rule",
    "reconcile_binding",
    "reconcile_role",
]
