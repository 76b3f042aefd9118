"""Discovery documents: ``/version``, ``/api``, ``/apis``, ``/apis/{group}`` and the
``APIResourceList`` of each group-version, built from the resource table."""

from __future__ import annotations

import hashlib
import platform
import sys
from collections.abc import Callable
from typing import Any

from apimachinery.resources import ResourceInfo, all_resources, group_versions
from apimachinery.version import COMPONENT_VERSION as VERSION
from apimachinery.version import KUBERNETES_VERSION

_MAJOR, _MINOR = KUBERNETES_VERSION.split(".")[:2]

# the aggregation layer's groups (apiserver/aggregator.py sets this): a function returning
# (group, version, available, APIResourceList or None, groupPriorityMinimum, versionPriority)
aggregated_groups: Callable[[], list[tuple[str, str, bool, dict[str, Any] | None, int, int]]] | None = None


def _aggregated() -> dict[str, list[tuple[str, bool, dict[str, Any] | None]]]:
    """group -> [(version, available, resources)] of the APIServices not served here, by priority."""
    if aggregated_groups is None:
        return {}
    rows = sorted(aggregated_groups(), key=lambda r: (-r[4], r[0], -r[5], r[1]))
    builtin = {g for g, _ in group_versions()}
    out: dict[str, list[tuple[str, bool, dict[str, Any] | None]]] = {}
    for group, version, available, resources, _gp, _vp in rows:
        if group and group not in builtin:
            out.setdefault(group, []).append((version, available, resources))
    return out


# (subresource) -> (kind, group, version, verbs) as Kubernetes reports them
_SUBRESOURCES: dict[str, tuple[str | None, str, str, list[str]]] = {
    "status": (None, "", "", ["get", "patch", "update"]),
    "approval": (None, "", "", ["get", "patch", "update"]),
    "scale": ("Scale", "autoscaling", "v1", ["get", "patch", "update"]),
    "binding": ("Binding", "", "", ["create"]),
    "log": (None, "", "", ["get"]),
    "exec": ("PodExecOptions", "", "", ["create", "get"]),
    "attach": ("PodAttachOptions", "", "", ["create", "get"]),
    "portforward": ("PodPortForwardOptions", "", "", ["create", "get"]),
    "eviction": ("Eviction", "policy", "v1", ["create"]),
    "ephemeralcontainers": (None, "", "", ["get", "patch", "update"]),
    "finalize": (None, "", "", ["update"]),
    "proxy": ("ProxyOptions", "", "", ["create", "delete", "get", "patch", "update"]),
    "token": ("TokenRequest", "authentication.k8s.io", "v1", ["create"]),
}


def version_info() -> dict[str, Any]:
    return {
        "major": _MAJOR,
        "minor": _MINOR,
        "gitVersion": VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-11-24T00:00:00Z",
        "goVersion": f"python{sys.version_info.major}.{sys.version_info.minor}",
        "compiler": "cpython",
        "platform": f"linux/{'arm64' if platform.machine() == 'aarch64' else 'amd64'}",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _views() -> list[ResourceInfo]:
    """Versions served by converting another version's stored objects (``autoscaling/v1``
    HorizontalPodAutoscalers, apiserver/autoscaling_v1.py): listed after the group's own versions,
    which stay preferred."""
    from apiserver.autoscaling_v1 import V1

    return [V1]


def _versions(group: str) -> list[str]:
    versions = [v for g, v in group_versions() if g == group]
    return versions + [r.version for r in _views() if r.group == group and r.version not in versions]


def _group(group: str) -> dict[str, Any]:
    versions = _versions(group)
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list() -> dict[str, Any]:
    groups: list[str] = []
    for g, _ in group_versions():
        if g and g not in groups:
            groups.append(g)
    listed = [_group(g) for g in groups] + [_external_group(g, v) for g, v in _aggregated().items()]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": listed}


def _external_group(group: str, versions: list[tuple[str, bool, dict[str, Any] | None]]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v, _a, _r in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group(group: str) -> dict[str, Any] | None:
    if not any(g == group for g, _ in group_versions()):
        external = _aggregated().get(group)
        if external is None:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", **_external_group(group, external)}
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group)}


def _storage_version_hash(r: ResourceInfo) -> str:
    digest = hashlib.sha256(f"{r.group}/{r.version}/{r.kind}".encode()).digest()
    import base64

    return base64.b64encode(digest[:8]).decode()


def _entry(r: ResourceInfo) -> dict[str, Any]:
    e: dict[str, Any] = {
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": list(r.verbs),
        "storageVersionHash": _storage_version_hash(r),
    }
    if r.short_names:
        e["shortNames"] = list(r.short_names)
    if r.categories:
        e["categories"] = list(r.categories)
    return e


def _sub_entry(r: ResourceInfo, sub: str) -> dict[str, Any]:
    kind, group, version, verbs = _SUBRESOURCES[sub]
    if sub == "proxy":
        kind = f"{r.kind}ProxyOptions"
    e: dict[str, Any] = {
        "name": f"{r.plural}/{sub}",
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": kind or r.kind,
        "verbs": verbs,
    }
    if group:
        e["group"] = group
    if version:
        e["version"] = version
    return e


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    resources = [r for r in [*all_resources(), *_views()] if r.group == group and r.version == version]
    if not resources:
        return None
    entries: list[dict[str, Any]] = []
    if group == "" and version == "v1":
        entries.append(
            {
                "name": "bindings",
                "singularName": "binding",
                "namespaced": True,
                "kind": "Binding",
                "verbs": ["create"],
            }
        )
    for r in sorted(resources, key=lambda x: x.plural):
        entries.append(_entry(r))
        for sub in r.subresources:
            entries.append(_sub_entry(r, sub))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": entries,
    }


# --- aggregated discovery (apidiscovery.k8s.io/v2 and v2beta1) ----------------------------------
DISCOVERY_GROUP = "apidiscovery.k8s.io"
DISCOVERY_VERSIONS = ("v2", "v2beta1")
DISCOVERY_KIND = "APIGroupDiscoveryList"


def aggregated_version(accept: str | None) -> str | None:
    """The ``apidiscovery.k8s.io`` version the client's Accept header prefers, or None when it
    prefers (or only takes) the plain ``APIVersions`` / ``APIGroupList``.

    Media ranges are taken by their ``q`` (highest first, then in the order given), as Kubernetes'
    negotiation does; ranges this server cannot produce (protobuf, other ``as=`` profiles) are
    skipped.  Nothing acceptable at all also answers the plain form, as this server always has.
    """
    if not accept:
        return None
    ranges: list[tuple[float, int, str, dict[str, str]]] = []
    for i, media_range in enumerate(accept.split(",")):
        parts = [p.strip() for p in media_range.split(";")]
        params = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in parts[1:]) if k}
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0:
            ranges.append((-q, i, parts[0].lower(), params))
    for _, _, mtype, params in sorted(ranges):
        if mtype not in ("application/json", "application/*", "*/*"):
            continue
        if not params.get("as") and not params.get("g"):
            return None
        if (
            mtype == "application/json"
            and params.get("g") == DISCOVERY_GROUP
            and params.get("v") in DISCOVERY_VERSIONS
            and params.get("as") == DISCOVERY_KIND
        ):
            return params["v"]
    return None


def aggregated_content_type(version: str) -> str:
    return f"application/json;g={DISCOVERY_GROUP};v={version};as={DISCOVERY_KIND}"


def _response_kind(entry: dict[str, Any], group: str, version: str) -> dict[str, str]:
    return {
        "group": entry.get("group", group),
        "version": entry.get("version", version),
        "kind": entry.get("kind") or "",
    }


def discovery_resources(group: str, version: str, rl: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One group-version's ``APIResourceDiscovery`` entries, made from its ``APIResourceList`` (this
    server's, or ``rl``: an aggregated server's) as Kubernetes' ``ConvertGroupVersionIntoToDiscovery``
    does: subresources nest under their parent."""
    rl = api_resource_list(group, version) if rl is None else rl
    if rl is None:
        return []
    resources: list[dict[str, Any]] = []
    parents: dict[str, dict[str, Any]] = {}
    for e in rl["resources"]:
        if "/" in e["name"]:
            continue
        r: dict[str, Any] = {
            "resource": e["name"],
            "responseKind": _response_kind(e, group, version),
            "scope": "Namespaced" if e["namespaced"] else "Cluster",
            "singularResource": e.get("singularName") or "",
            "verbs": list(e.get("verbs") or []),
        }
        if e.get("shortNames"):
            r["shortNames"] = list(e["shortNames"])
        if e.get("categories"):
            r["categories"] = list(e["categories"])
        resources.append(r)
        parents[e["name"]] = r
    for e in rl["resources"]:
        if "/" not in e["name"]:
            continue
        parent, sub = e["name"].split("/", 1)
        if parent not in parents:
            continue
        parents[parent].setdefault("subresources", []).append(
            {
                "subresource": sub,
                "responseKind": _response_kind(e, group, version),
                "verbs": list(e.get("verbs") or []),
            }
        )
    return resources


def _group_discovery(group: str) -> dict[str, Any]:
    versions = _versions(group)
    return {
        "metadata": {"name": group} if group else {},
        "versions": [
            # freshness: this server serves every version itself, so its discovery is never stale
            {"version": v, "resources": discovery_resources(group, v), "freshness": "Current"}
            for v in versions
        ],
    }


def aggregated_discovery(version: str, core: bool) -> dict[str, Any]:
    """``/api`` (``core``) or ``/apis`` as an ``APIGroupDiscoveryList`` of ``apidiscovery.k8s.io/{version}``;
    groups and their versions in preference order, the preferred version first."""
    if core:
        groups = [""]
    else:
        groups = []
        for g, _ in group_versions():
            if g and g not in groups:
                groups.append(g)
    items = [_group_discovery(g) for g in groups]
    if not core:
        for group, versions in _aggregated().items():
            # an APIService whose backend did not answer yet is left out, as Kubernetes does
            served = [
                {"version": v, "resources": discovery_resources(group, v, r), "freshness": "Current"}
                for v, available, r in versions
                if available and r is not None
            ]
            if served:
                items.append({"metadata": {"name": group}, "versions": served})
    return {
        "kind": DISCOVERY_KIND,
        "apiVersion": f"{DISCOVERY_GROUP}/{version}",
        "metadata": {},
        "items": items,
    }
