"""The Node authorizer: what a kubelet (user ``system:node:NAME`` in group ``system:nodes``) may do,
as Kubernetes' node authorizer (plugin/pkg/auth/authorizer/node).

A graph, kept from the pods in the API server's watch cache, relates each node to the objects its
pods use: Secrets, ConfigMaps, PersistentVolumeClaims (and through them PersistentVolumes) and
ServiceAccounts.  A kubelet may

* read (get, or list/watch pinned to one name) only the Secrets and ConfigMaps of pods bound to it;
* get only the PVCs and PVs of its pods, and update/patch only their PVCs' status;
* create tokens (``serviceaccounts/NAME/token``) only for its pods' service accounts;
* get, create, update, patch and delete only its own Lease in ``kube-node-lease``;
* update/patch only its own Node (and its status) and only the status of pods bound to it (the
  NodeRestriction admission plugin checks creates, which carry no name here);
* do what :data:`apiserver.bootstrap_policy.NODE_RULES` grant every node for everything else.

Anything else gets no opinion, with Kubernetes' reason, and falls through to RBAC.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .authtypes import NODE_USER_PREFIX, NODES_GROUP, Attributes, Decision, UserInfo
from .rbac import Rule, compile_rules, rules_allow

NODE_LEASE_NAMESPACE = "kube-node-lease"

Ref = tuple[str, str, str]  # (kind, namespace, name): kind is secret, configmap, pvc, serviceaccount, pod
Obj = dict[str, Any]


def node_identity(user: UserInfo) -> tuple[str, bool]:
    """Kubernetes' ``NodeIdentity``: (node name, is a node)."""
    if not user.name.startswith(NODE_USER_PREFIX) or NODES_GROUP not in user.groups:
        return "", False
    return user.name[len(NODE_USER_PREFIX) :], True


def _names(items: Any, *path: str) -> Iterator[str]:
    for item in items or ():
        if not isinstance(item, dict):
            continue
        value: Any = item
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            yield value


def pod_refs(pod: Mapping[str, Any]) -> set[Ref]:
    """The objects a pod needs from the API server (Kubernetes' graph populator ``AddPod``)."""
    meta = pod.get("metadata") or {}
    ns = str(meta.get("namespace") or "")
    spec = pod.get("spec") or {}
    refs: set[Ref] = {("pod", ns, str(meta.get("name") or ""))}
    refs.add(("serviceaccount", ns, str(spec.get("serviceAccountName") or "default")))
    for name in _names(spec.get("imagePullSecrets"), "name"):
        refs.add(("secret", ns, name))
    containers = [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]
    for c in containers:
        if not isinstance(c, dict):
            continue
        for env in c.get("env") or []:
            src = (env or {}).get("valueFrom") or {}
            if (src.get("secretKeyRef") or {}).get("name"):
                refs.add(("secret", ns, src["secretKeyRef"]["name"]))
            if (src.get("configMapKeyRef") or {}).get("name"):
                refs.add(("configmap", ns, src["configMapKeyRef"]["name"]))
        for env_from in c.get("envFrom") or []:
            if ((env_from or {}).get("secretRef") or {}).get("name"):
                refs.add(("secret", ns, env_from["secretRef"]["name"]))
            if ((env_from or {}).get("configMapRef") or {}).get("name"):
                refs.add(("configmap", ns, env_from["configMapRef"]["name"]))
    pod_name = str(meta.get("name") or "")
    for vol in spec.get("volumes") or []:
        if not isinstance(vol, dict):
            continue
        if (vol.get("secret") or {}).get("secretName"):
            refs.add(("secret", ns, vol["secret"]["secretName"]))
        if (vol.get("configMap") or {}).get("name"):
            refs.add(("configmap", ns, vol["configMap"]["name"]))
        if (vol.get("persistentVolumeClaim") or {}).get("claimName"):
            refs.add(("pvc", ns, vol["persistentVolumeClaim"]["claimName"]))
        if vol.get("ephemeral") is not None and vol.get("name"):
            refs.add(("pvc", ns, f"{pod_name}-{vol['name']}"))
        for src in (vol.get("projected") or {}).get("sources") or []:
            if ((src or {}).get("secret") or {}).get("name"):
                refs.add(("secret", ns, src["secret"]["name"]))
            if ((src or {}).get("configMap") or {}).get("name"):
                refs.add(("configmap", ns, src["configMap"]["name"]))
        for plugin in ("cephfs", "flexVolume", "rbd", "iscsi", "scaleIO", "storageos", "cinder", "csi"):
            src = vol.get(plugin)
            if isinstance(src, dict):
                ref = src.get("secretRef") or src.get("nodePublishSecretRef") or {}
                if isinstance(ref, dict) and ref.get("name"):
                    refs.add(("secret", ns, ref["name"]))
        azure = vol.get("azureFile")
        if isinstance(azure, dict) and azure.get("secretName"):
            refs.add(("secret", ns, azure["secretName"]))
    return refs


class NodeGraph:
    """Which objects each node's pods use, updated pod by pod."""

    def __init__(self) -> None:
        self.pods: dict[str, tuple[str, frozenset[Ref]]] = {}  # pod key -> (node, refs)
        self.refs: dict[str, Counter[Ref]] = {}

    def clear(self) -> None:
        self.pods.clear()
        self.refs.clear()

    def set_pod(self, key: str, pod: Mapping[str, Any] | None) -> None:
        """Record ``pod`` (None: deleted) under ``key``; a pod not bound to a node relates to none."""
        old = self.pods.pop(key, None)
        if old is not None:
            counter = self.refs.get(old[0])
            if counter is not None:
                counter.subtract(old[1])
                for ref in old[1]:
                    if counter[ref] <= 0:
                        del counter[ref]
                if not counter:
                    del self.refs[old[0]]
        if pod is None:
            return
        node = str((pod.get("spec") or {}).get("nodeName") or "")
        if not node:
            return
        refs = frozenset(pod_refs(pod))
        self.pods[key] = (node, refs)
        self.refs.setdefault(node, Counter()).update(refs)

    def load(self, pods: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        self.clear()
        for key, pod in pods:
            self.set_pod(key, pod)

    def has(self, node: str, kind: str, namespace: str, name: str) -> bool:
        counter = self.refs.get(node)
        return counter is not None and counter.get((kind, namespace, name), 0) > 0

    def claims(self, node: str) -> Iterator[tuple[str, str]]:
        for kind, ns, name in self.refs.get(node, ()):
            if kind == "pvc":
                yield ns, name


NO_OPINION = Decision(False, "")
ALLOW = Decision(True, "")


class NodeAuthorizer:
    """Decisions for kubelets.  ``volume_of_claim(namespace, name)`` returns the PV a PVC is bound
    to (``spec.volumeName``), or "" (read from the PVC watch cache)."""

    def __init__(
        self,
        graph: NodeGraph,
        rules: Iterable[Mapping[str, Any]],
        volume_of_claim: Callable[[str, str], str] = lambda ns, name: "",
    ) -> None:
        self.graph = graph
        self.rules: tuple[Rule, ...] = compile_rules(list(rules))
        self.volume_of_claim = volume_of_claim

    def authorize(self, attrs: Attributes) -> Decision:
        node, is_node = node_identity(attrs.user)
        if not is_node:
            return NO_OPINION
        if not node:
            return Decision(False, f'unknown node for user "{attrs.user.name}"')
        if attrs.resource_request:
            group, resource = attrs.api_group, attrs.resource
            if group == "":
                if resource in ("secrets", "configmaps"):
                    return self._read_namespaced(node, resource[:-1], attrs)
                if resource == "persistentvolumeclaims":
                    if attrs.subresource == "status":
                        return self._status_update(node, "pvc", attrs)
                    return self._get(node, "pvc", attrs)
                if resource == "persistentvolumes":
                    return self._get(node, "pv", attrs)
                if resource == "serviceaccounts":
                    return self._create_token(node, attrs)
                if resource == "nodes":
                    decision = self._node(node, attrs)
                    if decision is not None:
                        return decision
                if resource == "pods" and attrs.subresource == "status":
                    decision = self._pod_status(node, attrs)
                    if decision is not None:
                        return decision
            elif group == "coordination.k8s.io" and resource == "leases":
                return self._lease(node, attrs)
        return ALLOW if rules_allow(attrs, self.rules) else NO_OPINION

    # --- the subdivided kinds --------------------------------------------------------------------
    def _read_namespaced(self, node: str, kind: str, attrs: Attributes) -> Decision:
        if attrs.verb not in ("get", "list", "watch"):
            return Decision(False, "can only read resources of this type")
        if attrs.subresource:
            return Decision(False, "cannot read subresource")
        if not attrs.namespace:
            return Decision(False, "can only read namespaced object of this type")
        return self._related(node, kind, attrs)

    def _get(self, node: str, kind: str, attrs: Attributes) -> Decision:
        if attrs.verb != "get":
            return Decision(False, "can only get individual resources of this type")
        if attrs.subresource:
            return Decision(False, "cannot get subresource")
        return self._related(node, kind, attrs)

    def _status_update(self, node: str, kind: str, attrs: Attributes) -> Decision:
        if attrs.verb not in ("update", "patch"):
            return Decision(False, "can only get/update/patch this type")
        return self._related(node, kind, attrs)

    def _create_token(self, node: str, attrs: Attributes) -> Decision:
        if attrs.verb != "create" or not attrs.name:
            return Decision(False, "can only create tokens for individual service accounts")
        if attrs.subresource != "token":
            return Decision(False, "can only create token subresource of serviceaccount")
        return self._related(node, "serviceaccount", attrs)

    def _lease(self, node: str, attrs: Attributes) -> Decision:
        if attrs.verb not in ("get", "create", "update", "patch", "delete"):
            return Decision(False, "can only get, create, update, patch, or delete a node lease")
        if attrs.namespace != NODE_LEASE_NAMESPACE:
            return Decision(False, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace')
        # a create carries no name here; NodeRestriction checks it
        if attrs.verb != "create" and attrs.name != node:
            return Decision(False, "can only access node lease with the same name as the requesting node")
        return ALLOW

    def _node(self, node: str, attrs: Attributes) -> Decision | None:
        """Writes to Node objects other than the kubelet's own (Kubernetes leaves these to
        NodeRestriction; refusing them here too keeps a kubelet to its own Node either way)."""
        if attrs.verb in ("update", "patch", "delete") and attrs.name and attrs.name != node:
            return Decision(False, f'node "{node}" is not allowed to modify node "{attrs.name}"')
        return None

    def _pod_status(self, node: str, attrs: Attributes) -> Decision | None:
        if attrs.verb not in ("update", "patch") or not attrs.name:
            return None
        if self.graph.has(node, "pod", attrs.namespace, attrs.name):
            return ALLOW
        return Decision(
            False, f'node "{node}" can only update pod status for pods with spec.nodeName set to itself'
        )

    def _related(self, node: str, kind: str, attrs: Attributes) -> Decision:
        if not attrs.name:
            return Decision(False, "No Object name found")
        if kind == "pv":
            ok = any(self.volume_of_claim(ns, claim) == attrs.name for ns, claim in self.graph.claims(node))
        else:
            ok = self.graph.has(node, kind, attrs.namespace, attrs.name)
        if ok:
            return ALLOW
        return Decision(False, f"no relationship found between node '{node}' and this object")


__all__ = ["NodeAuthorizer", "NodeGraph", "node_identity", "pod_refs"]
