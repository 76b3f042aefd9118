"""Authorization: may this user do this?

The :class:`Authorizer` runs Kubernetes' authorizer chain: members of ``system:masters`` are always
allowed, then each mode of ``--authorization-mode`` in order (``Node``, ``RBAC``, ``AlwaysAllow``,
``AlwaysDeny``); the first that allows decides, an explicit deny stops the chain, and when none
allows the request is forbidden with the reasons they gave.

Decisions are synchronous and do no I/O: RBAC reads Roles, ClusterRoles and their bindings from the
API server's watch caches into an index per user and group (:mod:`apiserver.rbac`), rebuilt when one
of those caches changed; decisions are cached until then.  The Node authorizer
(:mod:`apiserver.nodeauthz`) follows the pods in the pods' watch cache.

:meth:`Authorizer.start` creates or reconciles the bootstrap policy
(:mod:`apiserver.bootstrap_policy`) and keeps aggregated ClusterRoles' rules up to date, as
Kubernetes' clusterrole-aggregation controller does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from apimachinery import errors
from apimachinery.resources import ResourceInfo, kind_info
from apimachinery.selectors import go_quote

from . import bootstrap_policy, rbac, validation
from .authtypes import NODE_USER_PREFIX, SYSTEM_MASTERS, Attributes, Decision, UserInfo, current_user
from .etcd import EtcdUnavailable
from .nodeauthz import NodeAuthorizer, NodeGraph, node_identity

if TYPE_CHECKING:
    from .registry import Registry, Storage
    from .watchcache import WatchCache, Watcher

log = logging.getLogger(__name__)

MODES = ("Node", "RBAC", "AlwaysAllow", "AlwaysDeny")
RBAC_V1 = "rbac.authorization.k8s.io/v1"
ROLES = kind_info(RBAC_V1, "Role")
CLUSTER_ROLES = kind_info(RBAC_V1, "ClusterRole")
ROLE_BINDINGS = kind_info(RBAC_V1, "RoleBinding")
CLUSTER_ROLE_BINDINGS = kind_info(RBAC_V1, "ClusterRoleBinding")
PODS = kind_info("v1", "Pod")
PVCS = kind_info("v1", "PersistentVolumeClaim")
AUTHORIZATION_GROUP = "authorization.k8s.io"

ALLOWED = Decision(True, "")
CACHE_SIZE = 10_000
GRAPH_POLL_SECONDS = 0.2


def parse_modes(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``--authorization-mode``: a comma-separated list of Node, RBAC, AlwaysAllow, AlwaysDeny."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    modes = tuple(m.strip() for m in items if m.strip())
    for m in modes:
        if m not in MODES:
            raise ValueError(f"unknown authorization mode {m!r} (supported: {', '.join(MODES)})")
    if len(set(modes)) != len(modes):
        raise ValueError("authorization modes may not be repeated")
    if not modes:
        raise ValueError("at least one authorization mode must be given")
    return modes


class Authorizer:
    def __init__(self, storage: Storage, modes: Sequence[str] = ("Node", "RBAC")) -> None:
        self.storage = storage
        self.modes = parse_modes(modes)
        self._caches: tuple[WatchCache, ...] = tuple(
            storage.registry(info).cache
            for info in (ROLES, CLUSTER_ROLES, ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS)
        )
        self._stamp: tuple[int, ...] = ()
        self._index = rbac.RBACIndex()
        self._decisions: dict[Attributes, Decision] = {}
        self.graph = NodeGraph()
        self._pvcs: Registry = storage.registry(PVCS)
        self._pods: Registry = storage.registry(PODS)
        self._pod_watcher: Watcher | None = None
        self.node = NodeAuthorizer(self.graph, bootstrap_policy.NODE_RULES, self._volume_of_claim)
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Ensure the bootstrap policy exists and start following the RBAC objects and pods."""
        validation.rbac_escalation_check = self.check_escalation
        for cache in (*self._caches, self._pods.cache, self._pvcs.cache):
            await cache.ready.wait()
        if "Node" in self.modes:
            self._follow_pods()
            self._tasks.append(asyncio.create_task(self._graph_loop(), name="node-authorizer-graph"))
        for attempt in range(1_000_000):
            try:
                await self.ensure_bootstrap_policy()
                break
            except (errors.StatusError, OSError, EtcdUnavailable) as e:
                if attempt % 10 == 0:
                    log.warning("bootstrap RBAC policy not written yet: %s; retrying", e)
                await asyncio.sleep(1.0)
        self._tasks.append(asyncio.create_task(self._aggregation_loop(), name="clusterrole-aggregation"))

    async def stop(self) -> None:
        if validation.rbac_escalation_check == self.check_escalation:
            validation.rbac_escalation_check = None
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        if self._pod_watcher is not None:
            self._pod_watcher.close()
            self._pod_watcher = None

    # --- decisions -------------------------------------------------------------------------------
    def _current_index(self) -> rbac.RBACIndex:
        # every change a cache applies is its newest event; a relist moves its start revision
        c0, c1, c2, c3 = self._caches
        e0, e1, e2, e3 = c0.events, c1.events, c2.events, c3.events
        stamp = (
            e0[-1].revision if e0 else -c0.start_revision - 1,
            e1[-1].revision if e1 else -c1.start_revision - 1,
            e2[-1].revision if e2 else -c2.start_revision - 1,
            e3[-1].revision if e3 else -c3.start_revision - 1,
            id(c0.objects),
            id(c1.objects),
            id(c2.objects),
            id(c3.objects),
        )
        if stamp != self._stamp:
            roles, cluster_roles, role_bindings, cluster_role_bindings = (
                list(c.objects.values()) for c in self._caches
            )
            self._index = rbac.RBACIndex(roles, cluster_roles, role_bindings, cluster_role_bindings)
            self._decisions.clear()
            self._stamp = stamp
        return self._index

    def invalidate(self) -> None:
        """Forget the index and every cached decision (the next decision rebuilds them)."""
        self._stamp = ()

    def authorize(self, attrs: Attributes) -> Decision:
        user = attrs.user
        if SYSTEM_MASTERS in user.groups:
            return ALLOWED
        index = self._current_index()
        node_user = user.name.startswith(NODE_USER_PREFIX) and "Node" in self.modes
        if node_user:
            # the node graph changes with every pod: kubelets' decisions are not cached
            self._sync_graph()
            return self._decide(attrs, index)
        decision = self._decisions.get(attrs)
        if decision is None:
            decision = self._decide(attrs, index)
            if len(self._decisions) >= CACHE_SIZE:
                self._decisions.clear()
            self._decisions[attrs] = decision
        return decision

    def _decide(self, attrs: Attributes, index: rbac.RBACIndex) -> Decision:
        reasons: list[str] = []
        for mode in self.modes:
            if mode == "AlwaysAllow":
                return ALLOWED
            if mode == "AlwaysDeny":
                d = Decision(False, "Everything is forbidden.")
            elif mode == "Node":
                d = self.node.authorize(attrs)
            else:
                d = index.authorize(attrs)
            if d.allowed or d.denied:
                return d
            if d.reason:
                reasons.append(d.reason)
        return Decision(False, "\n".join(reasons))

    def rules_for(
        self, user: UserInfo, namespace: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        resource_rules, non_resource_rules, incomplete, _err = self.rules_review(user, namespace)
        return resource_rules, non_resource_rules, incomplete

    def rules_review(
        self, user: UserInfo, namespace: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool, str]:
        """What ``user`` may do in ``namespace``: (resourceRules, nonResourceRules, incomplete,
        evaluation error), from every mode in order, as Kubernetes' union rule resolver."""
        resource_rules: list[dict[str, Any]] = []
        non_resource_rules: list[dict[str, Any]] = []
        incomplete = False
        errs: list[str] = []
        for mode in self.modes:
            if mode == "AlwaysAllow":
                resource_rules.append({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
                non_resource_rules.append({"verbs": ["*"], "nonResourceURLs": ["*"]})
            elif mode == "Node":
                if node_identity(user)[1]:
                    incomplete = True
                    errs.append("node authorizer does not support user rule resolution")
            elif mode == "RBAC":
                rr, nr, err = self._current_index().rules_for(user, namespace)
                resource_rules.extend(rr)
                non_resource_rules.extend(nr)
                if err:
                    incomplete = True
                    errs.append(err)
        return resource_rules, non_resource_rules, incomplete, rbac.aggregate_errors(errs)

    # --- escalation prevention ------------------------------------------------------------------
    def check_escalation(self, info: ResourceInfo, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Kubernetes' RBAC escalation check on a write of a Role, ClusterRole or binding by the
        user of the current request: a role may hold only rules the user holds (unless it may
        ``escalate`` it), a binding may reference only a role whose rules the user holds (unless it
        may ``bind`` it).  ``system:masters`` and the API server itself are exempt.  Raises a 403."""
        user = current_user.get()
        if user is None or SYSTEM_MASTERS in user.groups or info.kind not in _RBAC_KINDS:
            return
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        namespace = str(meta.get("namespace") or "") if info.namespaced else ""
        qualified = f"{info.plural}.{info.group}"
        if old is not None and _only_gc_fields_changed(obj, old):
            return
        index = self._current_index()
        if info.kind in ("Role", "ClusterRole"):
            escalate = Attributes(user, "escalate", True, info.group, "v1", info.plural, "", namespace, name)
            if self.authorize(escalate).allowed:
                return
            if info.kind == "ClusterRole" and obj.get("aggregationRule"):
                raise errors.Forbidden(
                    f"{qualified} {go_quote(name)} is forbidden: must have cluster-admin privileges to use the aggregationRule",
                    name=name,
                    group=info.group,
                    kind=info.plural,
                )
            rules = [r for r in (obj.get("rules") or []) if isinstance(r, dict)]
        else:
            ref = obj.get("roleRef") if isinstance(obj.get("roleRef"), dict) else {}
            ref_name = str((ref or {}).get("name") or "")
            plural = "roles" if (ref or {}).get("kind") == "Role" else "clusterroles"
            bind = Attributes(user, "bind", True, info.group, "v1", plural, "", namespace, ref_name)
            if self.authorize(bind).allowed:
                return
            if plural == "roles":
                compiled = index.roles.get((namespace, ref_name), ())
            else:
                compiled = index.cluster_roles.get(ref_name, ())
            rules = [dict(r.raw) for r in compiled]
        missing = rbac.missing_rights(index.user_rules(user, namespace), rules)
        if not missing:
            return
        listed = "\n".join(sorted({rbac.compact_string(r) for r in rbac.compact_rules(missing)}))
        groups = "[" + " ".join(go_quote(g) for g in user.groups) + "]"
        raise errors.Forbidden(
            f"{qualified} {go_quote(name)} is forbidden: user {go_quote(user.name)} (groups={groups}) "
            f"is attempting to grant RBAC permissions not currently held:\n{listed}",
            name=name,
            group=info.group,
            kind=info.plural,
        )

    # --- the reviews -----------------------------------------------------------------------------
    async def review(
        self, kind: str, body: dict[str, Any], user: UserInfo, namespace: str | None
    ) -> dict[str, Any]:
        """Answer a SubjectAccessReview, SelfSubjectAccessReview, LocalSubjectAccessReview or
        SelfSubjectRulesReview: ``body`` with its ``status`` filled in."""
        if not isinstance(body, dict):
            raise errors.BadRequest(f"the body of a {kind} must be an object")
        spec = body.get("spec")
        if not isinstance(spec, dict):
            spec = {}
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        out: dict[str, Any] = {**body, "apiVersion": f"{AUTHORIZATION_GROUP}/v1", "kind": kind}
        out["metadata"] = dict(meta or {})
        if kind == "SelfSubjectRulesReview":
            ns = spec.get("namespace")
            if not isinstance(ns, str) or not ns:
                raise errors.BadRequest("no namespace on request")
            rr, nr, incomplete, err = self.rules_review(user, ns)
            status: dict[str, Any] = {"resourceRules": rr, "nonResourceRules": nr, "incomplete": incomplete}
            if err:
                status["evaluationError"] = err
            out["status"] = status
            return out
        if kind not in ("SubjectAccessReview", "SelfSubjectAccessReview", "LocalSubjectAccessReview"):
            raise errors.NotFound(f"the server could not find the requested resource ({kind})")
        res = spec.get("resourceAttributes")
        non = spec.get("nonResourceAttributes")
        causes: list[dict[str, str]] = []
        if res is not None and non is not None:
            causes.append(
                validation.invalid(
                    "spec.nonResourceAttributes",
                    non,
                    "cannot be specified in combination with resourceAttributes",
                )
            )
        if res is None and non is None:
            causes.append(
                validation.invalid(
                    "spec.resourceAttributes",
                    None,
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )
            )
        if res is not None and not isinstance(res, dict):
            causes.append(validation.invalid("spec.resourceAttributes", res, "must be an object"))
        if non is not None and not isinstance(non, dict):
            causes.append(validation.invalid("spec.nonResourceAttributes", non, "must be an object"))
        subject = user
        if kind in ("SubjectAccessReview", "LocalSubjectAccessReview"):
            name = spec.get("user") if isinstance(spec.get("user"), str) else ""
            groups = tuple(g for g in (spec.get("groups") or []) if isinstance(g, str))
            if not name and not groups:
                causes.append(
                    validation.invalid("spec.user", name, "at least one of user or group must be specified")
                )
            extra_in = spec.get("extra") if isinstance(spec.get("extra"), dict) else {}
            extra = tuple(
                sorted(
                    (str(k), tuple(str(v) for v in (vals or []) if isinstance(v, str)))
                    for k, vals in (extra_in or {}).items()
                    if isinstance(vals, list)
                )
            )
            uid = spec.get("uid") if isinstance(spec.get("uid"), str) else ""
            subject = UserInfo(name or "", groups, uid or "", extra)
        if kind == "LocalSubjectAccessReview":
            if not namespace:
                raise errors.BadRequest(f"namespace is required on this type: {namespace or ''}")
            body_ns = out["metadata"].get("namespace") or ""
            if body_ns and body_ns != namespace:
                raise errors.BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            out["metadata"]["namespace"] = namespace
            if isinstance(res, dict) and (res.get("namespace") or "") != namespace:
                causes.append(
                    validation.invalid(
                        "spec.resourceAttributes.namespace",
                        res.get("namespace") or "",
                        "must match metadata.namespace",
                    )
                )
            if non is not None:
                causes.append(
                    validation.invalid(
                        "spec.nonResourceAttributes", non, "disallowed on this kind of request"
                    )
                )
        if causes:
            raise errors.invalid(kind, str(out["metadata"].get("name") or ""), causes, AUTHORIZATION_GROUP)
        if isinstance(res, dict):
            attrs = Attributes(
                user=subject,
                verb=str(res.get("verb") or ""),
                resource_request=True,
                api_group=str(res.get("group") or ""),
                api_version=str(res.get("version") or ""),
                resource=str(res.get("resource") or ""),
                subresource=str(res.get("subresource") or ""),
                namespace=str(res.get("namespace") or ""),
                name=str(res.get("name") or ""),
            )
        else:
            assert isinstance(non, dict)
            attrs = Attributes(
                user=subject,
                verb=str(non.get("verb") or ""),
                resource_request=False,
                path=str(non.get("path") or ""),
            )
        decision = self.authorize(attrs)
        status = {"allowed": decision.allowed}
        if decision.denied:
            status["denied"] = True
        if decision.reason:
            status["reason"] = decision.reason
        out["status"] = status
        return out

    # --- the node graph --------------------------------------------------------------------------
    def _volume_of_claim(self, namespace: str, name: str) -> str:
        pvc = self._pvcs.cache.get(self._pvcs.key(namespace, name))
        return str(((pvc or {}).get("spec") or {}).get("volumeName") or "")

    def _follow_pods(self) -> None:
        """(Re)start following the pods: a watcher that first replays every pod as ADDED."""
        cache = self._pods.cache
        self.graph.clear()
        self._pod_watcher = cache.watch(PODS.key_prefix(None), None, None)
        self._sync_graph()

    def _sync_graph(self) -> None:
        """Apply the pod events queued since the last call (synchronous: the queue is drained)."""
        w = self._pod_watcher
        if w is None:
            return
        q = w.queue
        while not q.empty():
            item = q.get_nowait()
            if item is None:  # the cache relisted or we fell behind: start over from its state
                self._follow_pods()
                return
            etype, pod = item
            meta = pod.get("metadata") or {}
            key = self._pods.key(meta.get("namespace"), str(meta.get("name") or ""))
            self.graph.set_pod(key, None if etype == "DELETED" else pod)

    async def _graph_loop(self) -> None:
        while True:
            await asyncio.sleep(GRAPH_POLL_SECONDS)
            try:
                self._sync_graph()
            except Exception:
                log.exception("node authorizer graph update failed; rebuilding")
                self._follow_pods()

    # --- bootstrap policy and aggregation --------------------------------------------------------
    async def ensure_bootstrap_policy(self) -> None:
        """Create the bootstrap ClusterRoles and ClusterRoleBindings that are missing and add what
        the existing ones (with autoupdate) lack."""
        roles = self.storage.registry(CLUSTER_ROLES)
        bindings = self.storage.registry(CLUSTER_ROLE_BINDINGS)
        work = [(roles, r) for r in bootstrap_policy.cluster_roles()]
        work += [(bindings, b) for b in bootstrap_policy.cluster_role_bindings()]
        for reg, expected in work:
            try:
                if expected["kind"] == "ClusterRole":
                    await self._reconcile(reg, expected, bootstrap_policy.reconcile_role)
                else:
                    await self._reconcile_binding(reg, expected)
            except (errors.ServiceUnavailable, errors.Timeout):
                raise
            except errors.StatusError as e:  # not something a retry fixes
                log.error("bootstrap %s %s: %s", expected["kind"], expected["metadata"]["name"], e)
        for expected in bootstrap_policy.namespaced_roles():  # kube-public's cluster-info reader
            info = ROLES if expected["kind"] == "Role" else ROLE_BINDINGS
            try:
                await self.storage.registry(info).create(expected["metadata"]["namespace"], dict(expected))
                log.info("created %s %s", expected["kind"], expected["metadata"]["name"])
            except errors.AlreadyExists:
                pass
            except (errors.ServiceUnavailable, errors.Timeout):
                raise
            except errors.StatusError as e:
                log.error("bootstrap %s %s: %s", expected["kind"], expected["metadata"]["name"], e)

    async def _reconcile(self, reg: Registry, expected: dict[str, Any], fn: Any) -> None:
        name = expected["metadata"]["name"]
        try:
            await reg.create(None, dict(expected))
            log.info("created %s %s", expected["kind"], name)
            return
        except errors.AlreadyExists:
            pass

        def update(current: dict[str, Any]) -> dict[str, Any]:
            new = fn(current, expected)
            return current if new is None else new

        await reg.guaranteed_update(None, name, update)

    async def _reconcile_binding(self, reg: Registry, expected: dict[str, Any]) -> None:
        name = expected["metadata"]["name"]
        try:
            await reg.create(None, dict(expected))
            log.info("created ClusterRoleBinding %s", name)
            return
        except errors.AlreadyExists:
            pass
        current = await reg.get(None, name)
        new, recreate = bootstrap_policy.reconcile_binding(current, expected)
        if new is None:
            return
        if recreate:
            from .registry import _DELETE

            await reg.guaranteed_update(None, name, lambda cur: _DELETE)
            try:
                await reg.create(None, new)
            except errors.AlreadyExists:
                pass
            return

        def update(cur: dict[str, Any]) -> dict[str, Any]:
            again, _ = bootstrap_policy.reconcile_binding(cur, expected)
            return cur if again is None else again

        await reg.guaranteed_update(None, name, update)

    async def aggregate_once(self) -> int:
        """Write the aggregated ClusterRoles whose rules are out of date; returns how many."""
        reg = self.storage.registry(CLUSTER_ROLES)
        by_name = {
            (o.get("metadata") or {}).get("name"): o
            for o in reg.cache.objects.values()
            if isinstance(o, dict)
        }
        wanted = rbac.aggregated_rules({k: v for k, v in by_name.items() if k})
        written = 0
        for name, rules in wanted.items():
            have = [rbac.normalize_rule(r) for r in (by_name[name].get("rules") or []) if isinstance(r, dict)]
            if have == [rbac.normalize_rule(r) for r in rules]:
                continue

            def update(cur: dict[str, Any], rules: list[dict[str, Any]] = rules) -> dict[str, Any]:
                if not cur.get("aggregationRule"):
                    return cur
                cur["rules"] = rules
                return cur

            try:
                await reg.guaranteed_update(None, name, update)
                written += 1
            except errors.NotFound:
                pass
        return written

    async def _aggregation_loop(self) -> None:
        cache = self.storage.registry(CLUSTER_ROLES).cache
        watcher: Watcher | None = None
        while True:
            try:
                if watcher is None or watcher.closed:
                    watcher = cache.watch(CLUSTER_ROLES.key_prefix(None), None, None)
                item = await watcher.queue.get()
                while item is not None and not watcher.queue.empty():
                    item = watcher.queue.get_nowait()
                if item is None:
                    watcher = None
                    continue
                await self.aggregate_once()
            except asyncio.CancelledError:
                if watcher is not None:
                    watcher.close()
                raise
            except Exception as e:
                log.warning("clusterrole aggregation failed: %s; retrying", e)
                await asyncio.sleep(1.0)


_RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
_GC_FIELDS = ("ownerReferences", "finalizers")


def _only_gc_fields_changed(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Kubernetes' ``IsOnlyMutatingGCFields``: an update that changes nothing but owner
    references and finalizers (the garbage collector's) grants nothing."""

    def strip(obj: dict[str, Any]) -> dict[str, Any]:
        meta = {
            k: v
            for k, v in (obj.get("metadata") or {}).items()
            if k not in (*_GC_FIELDS, "resourceVersion", "managedFields", "generation")
        }
        return {**obj, "metadata": meta}

    return strip(new) == strip(old)


def _quote(value: str) -> str:
    return go_quote(value)


def forbidden_message(attrs: Attributes, reason: str = "") -> str:
    """Kubernetes' wording of a 403 (``responsewriters.Forbidden`` with ``errors.NewForbidden``).

    ``pods "x" is forbidden: User "alice" cannot get resource "pods/log" in API group "" in the
    namespace "default"``; the qualified resource before "is forbidden" is ``resource.group``
    without the subresource; a non-resource request reads ``forbidden: User "alice" cannot get
    path "/foo"``; the authorizers' reasons follow after a colon.
    """
    who = f"User {_quote(attrs.user.name)}"
    if not attrs.resource_request:
        msg = f"{who} cannot {attrs.verb} path {_quote(attrs.path)}"
        head = "forbidden"
    else:
        resource = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
        msg = f"{who} cannot {attrs.verb} resource {_quote(resource)} in API group {_quote(attrs.api_group)}"
        if attrs.namespace:
            msg += f" in the namespace {_quote(attrs.namespace)}"
        else:
            msg += " at the cluster scope"
        qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
        if not qualified:
            head = "forbidden"
        elif attrs.name:
            head = f"{qualified} {_quote(attrs.name)} is forbidden"
        else:
            head = f"{qualified} is forbidden"
    if reason:
        msg = f"{msg}: {reason}"
    return f"{head}: {msg}"


def forbidden_details(attrs: Attributes) -> dict[str, str]:
    """``details`` of the 403 Status: name, group and kind (the plural resource)."""
    out = {"kind": attrs.resource, "group": attrs.api_group, "name": attrs.name}
    return {k: v for k, v in out.items() if v}


__all__ = ["Authorizer", "forbidden_details", "forbidden_message", "parse_modes"]
