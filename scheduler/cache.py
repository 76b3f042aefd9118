"""The scheduler's cache: nodes with the pods bound -- or *assumed* -- on them.

Informer events keep it current; :meth:`SchedulerCache.assume` puts a pod on its chosen node the
moment the decision is made, before the binding reaches the API server and long before the pod
informer reports ``spec.nodeName``, so the next decision already counts its requests and ports.
When the informer confirms the binding the assumed copy is replaced by the real pod; when the
binding fails, :meth:`forget` takes it back off.

The cache *is* the :class:`~scheduler.framework.Snapshot` the decision reads.  Decisions run
synchronously in the event loop, so the cache cannot change under one of them.
"""

from __future__ import annotations

import logging

from .framework import NodeInfo, Obj, PodInfo, Snapshot

log = logging.getLogger(__name__)

TERMINAL_PHASES = ("Succeeded", "Failed")


def pod_key(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def assigned_node(pod: Obj) -> str | None:
    return (pod.get("spec") or {}).get("nodeName") or None


def counts_on_node(pod: Obj) -> bool:
    """A bound pod holds its node's resources until it ends (kube-scheduler ignores finished pods)."""
    return bool(assigned_node(pod)) and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES


class SchedulerCache:
    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.assumed: dict[str, str] = {}  # pod key -> node name
        self._pod_node: dict[str, str] = {}  # pod key -> node it is accounted on
        self._pods: dict[str, PodInfo] = {}
        self._orphans: dict[str, dict[str, PodInfo]] = {}  # node name (not known yet) -> pods

    # -- nodes ---------------------------------------------------------------------------------

    def add_node(self, node: Obj) -> None:
        name = str((node.get("metadata") or {}).get("name") or "")
        info = self.snapshot.nodes.get(name)
        if info is not None:
            info.set_node(node)
            return
        info = NodeInfo(node)
        self.snapshot.nodes[name] = info
        for pi in self._orphans.pop(name, {}).values():
            info.add_pod(pi)

    update_node = add_node

    def remove_node(self, node: Obj) -> None:
        name = str((node.get("metadata") or {}).get("name") or "")
        info = self.snapshot.nodes.pop(name, None)
        if info is not None and info.pods:
            self._orphans[name] = dict(info.pods)

    # -- pods ----------------------------------------------------------------------------------

    def _place(self, pi: PodInfo, node_name: str) -> None:
        self._unplace(pi.key)
        info = self.snapshot.nodes.get(node_name)
        if info is not None:
            info.add_pod(pi)
        else:
            self._orphans.setdefault(node_name, {})[pi.key] = pi
        self._pod_node[pi.key] = node_name
        self._pods[pi.key] = pi

    def _unplace(self, key: str) -> None:
        node_name = self._pod_node.pop(key, None)
        self._pods.pop(key, None)
        if node_name is None:
            return
        info = self.snapshot.nodes.get(node_name)
        if info is not None:
            info.remove_pod(key)
        orphans = self._orphans.get(node_name)
        if orphans is not None:
            orphans.pop(key, None)
            if not orphans:
                del self._orphans[node_name]

    def set_pod(self, pod: Obj) -> None:
        """A pod from the informer (add or update): account it where it is bound, or drop it."""
        key = pod_key(pod)
        if not counts_on_node(pod):
            if key not in self.assumed:
                self._unplace(key)
            return
        node = assigned_node(pod)
        assert node is not None
        if self.assumed.pop(key, None) is not None:
            log.debug("%s: binding to %s confirmed", key, node)
        self._place(PodInfo.of(pod), node)

    def remove_pod(self, pod: Obj) -> None:
        key = pod_key(pod)
        self.assumed.pop(key, None)
        self._unplace(key)

    def assume(self, pi: PodInfo, node_name: str) -> None:
        """Account ``pi`` on ``node_name`` now, ahead of the binding."""
        self.assumed[pi.key] = node_name
        self._place(pi, node_name)

    def forget(self, key: str) -> None:
        """Undo :meth:`assume` (the binding failed)."""
        if self.assumed.pop(key, None) is not None:
            self._unplace(key)

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed

    def pod_count(self) -> int:
        return len(self._pods)

    # -- namespaces and services -----------------------------------------------------------------

    def set_namespace(self, ns: Obj) -> None:
        meta = ns.get("metadata") or {}
        self.snapshot.namespace_labels[str(meta.get("name"))] = dict(meta.get("labels") or {})

    def remove_namespace(self, ns: Obj) -> None:
        self.snapshot.namespace_labels.pop(str((ns.get("metadata") or {}).get("name")), None)

    def set_services(self, services: list[Obj]) -> None:
        self.snapshot.services = [s for s in services if (s.get("spec") or {}).get("selector")]
