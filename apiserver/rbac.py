"""Role-based access control: Kubernetes' RBAC rule semantics over Role, ClusterRole, RoleBinding
and ClusterRoleBinding objects (k8s.io/kubernetes plugin/pkg/auth/authorizer/rbac).

Everything here is pure: an :class:`RBACIndex` is built from the four kinds' current objects (the
API server's watch caches hold them) and answers decisions with dictionary lookups and set
membership, no I/O.  The index is keyed by subject: ``("u", username)`` and ``("g", group)``,
cluster-wide for ClusterRoleBindings and per namespace for RoleBindings, so a decision only looks
at the bindings that name the requesting user or one of its groups.

Rule matching (``RuleAllows``):

* ``verbs``, ``apiGroups``: ``"*"`` or an exact match;
* ``resources``: ``"*"``, the combined ``resource/subresource`` exactly, or ``"*/subresource"``;
* ``resourceNames``: empty means every name, else the request's name must be listed (so a list or
  a create, which carry no name, never match a rule with names);
* ``nonResourceURLs``: ``"*"``, an exact path, or a prefix ending in ``"*"``.

Subjects: ``User`` by name, ``Group`` by any of the user's groups, ``ServiceAccount`` as the user
``system:serviceaccount:NAMESPACE:NAME`` (the namespace defaults to the RoleBinding's).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from apimachinery.selectors import go_quote, selector_from_dict

from .authtypes import SERVICE_ACCOUNT_PREFIX, Attributes, Decision, UserInfo

GROUP = "rbac.authorization.k8s.io"
ALL = "*"

Obj = dict[str, Any]


def _strs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


class Rule:
    """One PolicyRule, with its lists as sets for cheap membership tests."""

    __slots__ = (
        "raw",
        "verbs",
        "all_verbs",
        "groups",
        "all_groups",
        "resources",
        "all_resources",
        "sub_wildcards",
        "names",
        "urls",
        "url_prefixes",
        "all_urls",
    )

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        verbs = _strs(raw.get("verbs"))
        self.verbs = frozenset(verbs)
        self.all_verbs = ALL in self.verbs
        self.groups = frozenset(_strs(raw.get("apiGroups")))
        self.all_groups = ALL in self.groups
        resources = _strs(raw.get("resources"))
        self.resources = frozenset(resources)
        self.all_resources = ALL in self.resources
        # "*/status" matches the status subresource of every resource
        self.sub_wildcards = frozenset(r[2:] for r in resources if r.startswith("*/") and len(r) > 2)
        self.names = frozenset(_strs(raw.get("resourceNames")))
        urls = _strs(raw.get("nonResourceURLs"))
        self.urls = frozenset(urls)
        self.all_urls = ALL in self.urls
        self.url_prefixes = tuple(u.rstrip("*") for u in urls if u.endswith("*") and u != ALL)

    def verb_matches(self, verb: str) -> bool:
        return self.all_verbs or verb in self.verbs

    def allows(self, attrs: Attributes) -> bool:
        """Kubernetes' ``RuleAllows``."""
        if not (self.all_verbs or attrs.verb in self.verbs):
            return False
        if not attrs.resource_request:
            if self.all_urls or attrs.path in self.urls:
                return True
            return any(attrs.path.startswith(p) for p in self.url_prefixes)
        if not (self.all_groups or attrs.api_group in self.groups):
            return False
        if not self.all_resources:
            sub = attrs.subresource
            combined = f"{attrs.resource}/{sub}" if sub else attrs.resource
            if combined not in self.resources and not (sub and sub in self.sub_wildcards):
                return False
        return not self.names or attrs.name in self.names


def compile_rules(rules: Any) -> tuple[Rule, ...]:
    if not isinstance(rules, list):
        return ()
    return tuple(Rule(r) for r in rules if isinstance(r, dict))


def rules_allow(attrs: Attributes, rules: Iterable[Rule]) -> bool:
    return any(r.allows(attrs) for r in rules)


# --- covering (escalation checks and the bootstrap reconciler) ------------------------------------


def _atoms(rule: Mapping[str, Any]) -> Iterator[tuple[str, str, str, str, bool]]:
    """Break a rule into single (verb, group, resource, name-or-url, is_url) permissions, as
    Kubernetes' ``BreakdownRule``."""
    verbs = _strs(rule.get("verbs"))
    for group in _strs(rule.get("apiGroups")):
        for resource in _strs(rule.get("resources")):
            for verb in verbs:
                names = _strs(rule.get("resourceNames"))
                for name in names or ("",):
                    yield verb, group, resource, name, False
    for url in _strs(rule.get("nonResourceURLs")):
        for verb in verbs:
            yield verb, "", "", url, True


def _has(values: tuple[str, ...], value: str) -> bool:
    return ALL in values or value in values


def _rule_covers(owner: Mapping[str, Any], atom: tuple[str, str, str, str, bool]) -> bool:
    """Kubernetes' ``ruleCovers`` for one atomic permission."""
    verb, group, resource, name, is_url = atom
    if not _has(_strs(owner.get("verbs")), verb):
        return False
    if is_url:
        for url in _strs(owner.get("nonResourceURLs")):
            if url == ALL or url == name or (url.endswith("*") and name.startswith(url.rstrip("*"))):
                return True
        return False
    if not _has(_strs(owner.get("apiGroups")), group):
        return False
    resources = _strs(owner.get("resources"))
    if not _has(resources, resource):
        # "pods/*" is not a thing in RBAC, but "*/status" covers "deployments/status"
        if "/" not in resource:
            return False
        sub = resource.split("/", 1)[1]
        if f"*/{sub}" not in resources:
            return False
    names = _strs(owner.get("resourceNames"))
    if not names:
        return True
    return bool(name) and name in names


def covers(owner_rules: Iterable[Mapping[str, Any]], rule: Mapping[str, Any]) -> list[Obj]:
    """The atomic permissions of ``rule`` that ``owner_rules`` do not grant (empty: covered)."""
    owners = list(owner_rules)
    missing: list[Obj] = []
    for atom in _atoms(rule):
        if not any(_rule_covers(o, atom) for o in owners):
            verb, group, resource, name, is_url = atom
            if is_url:
                missing.append({"verbs": [verb], "nonResourceURLs": [name]})
            else:
                m: Obj = {"verbs": [verb], "apiGroups": [group], "resources": [resource]}
                if name:
                    m["resourceNames"] = [name]
                missing.append(m)
    return missing


def _go_strings(values: list[str]) -> str:
    """Go's ``%q`` of a ``[]string``: ``["" "pods"]``."""
    return "[" + " ".join(go_quote(v) for v in values) + "]"


def compact_string(rule: Mapping[str, Any]) -> str:
    """Kubernetes' ``CompactString`` of a rule, as escalation errors list the missing ones."""
    parts = []
    for key, label in (
        ("apiGroups", "APIGroups"),
        ("resources", "Resources"),
        ("nonResourceURLs", "NonResourceURLs"),
        ("resourceNames", "ResourceNames"),
        ("verbs", "Verbs"),
    ):
        values = _strs(rule.get(key))
        if values:
            parts.append(f"{label}:{_go_strings(list(values))}")
    return "{" + ", ".join(parts) + "}"


def compact_rules(rules: list[Obj]) -> list[Obj]:
    """Kubernetes' ``CompactRules``: single-group, single-resource rules that differ only in
    their verbs are merged."""
    out: list[Obj] = []
    merged: dict[tuple[str, str, tuple[str, ...]], Obj] = {}
    for r in rules:
        groups, resources = _strs(r.get("apiGroups")), _strs(r.get("resources"))
        if len(groups) == 1 and len(resources) == 1 and not r.get("nonResourceURLs"):
            key = (groups[0], resources[0], _strs(r.get("resourceNames")))
            if key in merged:
                verbs = merged[key]["verbs"]
                verbs.extend(v for v in _strs(r.get("verbs")) if v not in verbs)
                continue
            merged[key] = {**r, "verbs": list(_strs(r.get("verbs")))}
            out.append(merged[key])
        else:
            out.append(dict(r))
    return out


def missing_rights(owner_rules: Iterable[Mapping[str, Any]], rules: Iterable[Mapping[str, Any]]) -> list[Obj]:
    """Every atomic permission of ``rules`` the owner's rules do not cover."""
    owners = list(owner_rules)
    out: list[Obj] = []
    for r in rules:
        if isinstance(r, Mapping):
            out.extend(covers(owners, r))
    return out


def normalize_rule(rule: Mapping[str, Any]) -> Obj:
    """A rule without empty fields, for equality between rules."""
    return {k: list(v) for k, v in rule.items() if isinstance(v, list) and v}


# --- aggregation ------------------------------------------------------------------------------------


def aggregated_rules(cluster_roles: Mapping[str, Obj]) -> dict[str, list[Obj]]:
    """The rules every aggregated ClusterRole should hold, as Kubernetes' clusterrole-aggregation
    controller computes them: the rules of every other ClusterRole whose labels match one of its
    ``aggregationRule.clusterRoleSelectors``, in name order, each rule once.

    Aggregated roles may select each other (admin selects edit, which selects view): the rules are
    computed to a fixed point over the given objects.
    """
    current = {name: list(obj.get("rules") or []) for name, obj in cluster_roles.items()}
    selectors: dict[str, list[Any]] = {}
    for name, obj in cluster_roles.items():
        agg = obj.get("aggregationRule")
        if isinstance(agg, dict):
            sels = [s for s in (agg.get("clusterRoleSelectors") or []) if isinstance(s, dict)]
            selectors[name] = [selector_from_dict(s) for s in sels]
    out: dict[str, list[Obj]] = {}
    for _round in range(10):
        changed = False
        for name in sorted(selectors):
            rules: list[Obj] = []
            seen: list[Obj] = []
            for other in sorted(cluster_roles):
                if other == name:
                    continue
                labels = (cluster_roles[other].get("metadata") or {}).get("labels") or {}
                if not any(sel.matches(labels) for sel in selectors[name]):
                    continue
                for rule in current[other]:
                    if not isinstance(rule, dict):
                        continue
                    norm = normalize_rule(rule)
                    if norm not in seen:
                        seen.append(norm)
                        rules.append(rule)
            if [normalize_rule(r) for r in rules] != [
                normalize_rule(r) for r in current[name] if isinstance(r, dict)
            ]:
                current[name] = rules
                changed = True
            out[name] = rules
        if not changed:
            break
    return out


# --- the index -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grant:
    """The rules one binding gives one of its subjects (or why it gives none)."""

    source: str  # 'ClusterRoleBinding "x" of ClusterRole "y" to User "alice"'
    rules: tuple[Rule, ...]
    error: str = ""


def describe_subject(subject: Mapping[str, Any], binding_namespace: str) -> str:
    kind = str(subject.get("kind") or "")
    name = str(subject.get("name") or "")
    if kind == "ServiceAccount":
        ns = str(subject.get("namespace") or "") or binding_namespace
        return f"{kind} {go_quote(name + '/' + ns)}"
    return f"{kind} {go_quote(name)}"


def subject_key(subject: Mapping[str, Any], binding_namespace: str) -> tuple[str, str] | None:
    kind = subject.get("kind")
    name = subject.get("name")
    if not isinstance(name, str) or not name:
        return None
    if kind == "User":
        return ("u", name)
    if kind == "Group":
        return ("g", name)
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        if not ns:
            return None
        return ("u", f"{SERVICE_ACCOUNT_PREFIX}{ns}:{name}")
    return None


def _not_found(kind: str, name: str) -> str:
    # the listers' NotFound: the singular lower-case kind, qualified by the group
    return f"{kind.lower()}.{GROUP} {go_quote(name)} not found"


class RBACIndex:
    """The RBAC state at one moment, indexed by subject."""

    def __init__(
        self,
        roles: Iterable[Obj] = (),
        cluster_roles: Iterable[Obj] = (),
        role_bindings: Iterable[Obj] = (),
        cluster_role_bindings: Iterable[Obj] = (),
    ) -> None:
        self.cluster_roles: dict[str, tuple[Rule, ...]] = {}
        for cr in cluster_roles:
            name = (cr.get("metadata") or {}).get("name")
            if name:
                self.cluster_roles[name] = compile_rules(cr.get("rules"))
        self.roles: dict[tuple[str, str], tuple[Rule, ...]] = {}
        for r in roles:
            meta = r.get("metadata") or {}
            if meta.get("name"):
                self.roles[(meta.get("namespace") or "", meta["name"])] = compile_rules(r.get("rules"))
        self.cluster: dict[tuple[str, str], list[Grant]] = {}
        self.namespaced: dict[str, dict[tuple[str, str], list[Grant]]] = {}
        for b in cluster_role_bindings:
            self._add_binding(b, "", self.cluster)
        for b in role_bindings:
            ns = (b.get("metadata") or {}).get("namespace") or ""
            if ns:
                self._add_binding(b, ns, self.namespaced.setdefault(ns, {}))

    def _resolve(self, ref: Mapping[str, Any], namespace: str) -> tuple[tuple[Rule, ...], str]:
        kind, name = ref.get("kind"), str(ref.get("name") or "")
        if kind == "ClusterRole":
            rules = self.cluster_roles.get(name)
            return (rules, "") if rules is not None else ((), _not_found("ClusterRole", name))
        if kind == "Role" and namespace:
            rules = self.roles.get((namespace, name))
            return (rules, "") if rules is not None else ((), _not_found("Role", name))
        return (), f"unsupported role reference kind: {go_quote(str(kind))}"

    def _add_binding(self, b: Obj, namespace: str, index: dict[tuple[str, str], list[Grant]]) -> None:
        meta = b.get("metadata") or {}
        ref = b.get("roleRef") or {}
        rules, error = self._resolve(ref, namespace)
        if namespace:
            head = f"RoleBinding {go_quote(str(meta.get('name')) + '/' + namespace)}"
        else:
            head = f"ClusterRoleBinding {go_quote(str(meta.get('name')))}"
        head += f" of {ref.get('kind')} {go_quote(str(ref.get('name') or ''))} to "
        for subject in b.get("subjects") or []:
            if not isinstance(subject, dict):
                continue
            key = subject_key(subject, namespace)
            if key is None:
                continue
            index.setdefault(key, []).append(Grant(head + describe_subject(subject, namespace), rules, error))

    def grants(self, user: UserInfo, namespace: str) -> Iterator[Grant]:
        """The grants that apply to ``user`` for a request in ``namespace`` ("" = cluster scope):
        the ClusterRoleBindings', then the namespace's RoleBindings'."""
        indexes = [self.cluster]
        if namespace and namespace in self.namespaced:
            indexes.append(self.namespaced[namespace])
        for index in indexes:
            if not index:
                continue
            yield from index.get(("u", user.name), ())
            for group in user.groups:
                yield from index.get(("g", group), ())

    def authorize(self, attrs: Attributes) -> Decision:
        """Allow when a rule of a grant of the user allows the request; otherwise no opinion,
        with the errors met on the way (roles that do not exist) as the reason."""
        errs: list[str] = []
        for grant in self.grants(attrs.user, attrs.namespace if attrs.resource_request else ""):
            if grant.error:
                errs.append(grant.error)
                continue
            for rule in grant.rules:
                if rule.allows(attrs):
                    return Decision(True, f"RBAC: allowed by {grant.source}")
        return Decision(False, rbac_errors(errs))

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[Obj], list[Obj], str]:
        """(resourceRules, nonResourceRules, evaluation error) the user holds in ``namespace``."""
        resource_rules: list[Obj] = []
        non_resource: list[Obj] = []
        errs: list[str] = []
        for grant in self.grants(user, namespace):
            if grant.error:
                errs.append(grant.error)
            for rule in grant.rules:
                raw = rule.raw
                if raw.get("resources"):
                    rr: Obj = {
                        "verbs": list(raw.get("verbs") or []),
                        "apiGroups": list(raw.get("apiGroups") or []),
                        "resources": list(raw.get("resources") or []),
                    }
                    if raw.get("resourceNames"):
                        rr["resourceNames"] = list(raw["resourceNames"])
                    resource_rules.append(rr)
                if raw.get("nonResourceURLs"):
                    non_resource.append(
                        {
                            "verbs": list(raw.get("verbs") or []),
                            "nonResourceURLs": list(raw["nonResourceURLs"]),
                        }
                    )
        return resource_rules, non_resource, aggregate_errors(errs)

    def user_rules(self, user: UserInfo, namespace: str) -> list[Obj]:
        """Every raw rule the user holds in ``namespace`` (for escalation checks)."""
        out: list[Obj] = []
        for grant in self.grants(user, namespace):
            out.extend(dict(r.raw) for r in grant.rules)
        return out


def aggregate_errors(errs: list[str]) -> str:
    """``utilerrors.NewAggregate(errs).Error()``: one error as is, several in brackets."""
    unique = list(dict.fromkeys(errs))
    if not unique:
        return ""
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


def rbac_errors(errs: list[str]) -> str:
    agg = aggregate_errors(errs)
    return f"RBAC: {agg}" if agg else ""


__all__ = [
    "GROUP",
    "Grant",
    "RBACIndex",
    "Rule",
    "aggregated_rules",
    "compile_rules",
    "compact_rules",
    "compact_string",
    "covers",
    "missing_rights",
    "normalize_rule",
    "rules_allow",
]
