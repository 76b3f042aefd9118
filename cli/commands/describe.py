"""``minik describe``: a readable summary of objects, with their Events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from apimachinery import errors
from apimachinery.printers import format_label_selector, pod_status_summary
from apimachinery.resources import ResourceInfo, resolve

from ..describe_fmt import Writer, age, annotations_list, labels_list, smart_label, timestamp
from ..kube import (
    Kube,
    Obj,
    err,
    format_status_error,
    kube,
    meta,
    parse_bool,
    parse_resource_args,
    print_text,
)

EXAMPLES = """
Examples:

  minik describe pod web-0
  minik describe deploy/web
  minik describe pods -l app=web        # every pod matching the selector
  minik describe nodes
"""


def events_for(k: Kube, obj: Obj) -> list[Obj]:
    md = meta(obj)
    fields = [f"involvedObject.name={md.get('name')}"]
    if md.get("namespace"):
        fields.append(f"involvedObject.namespace={md['namespace']}")
    if md.get("uid"):
        fields.append(f"involvedObject.uid={md['uid']}")
    events_info = resolve("events")
    assert events_info is not None
    try:
        items = (
            k.client.list(events_info, md.get("namespace") or None, field_selector=",".join(fields)).get(
                "items"
            )
            or []
        )
    except errors.StatusError:
        return []
    return sorted(
        items,
        key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or meta(e).get("creationTimestamp") or "",
    )


def write_events(w: Writer, events: list[Obj], now: datetime) -> None:
    if not events:
        w.kv(0, "Events", "<none>")
        return
    w.line(0, "Events:")
    w.line(1, "Type", "Reason", "Age", "From", "Message")
    w.line(1, "----", "------", "----", "----", "-------")
    for e in events:
        first = e.get("firstTimestamp") or e.get("eventTime") or meta(e).get("creationTimestamp")
        last = e.get("lastTimestamp") or first
        count = int(e.get("count") or (e.get("series") or {}).get("count") or 1)
        when = age(last, now)
        if count > 1:
            when = f"{when} (x{count} over {age(first, now)})"
        source = e.get("source") or {}
        src = source.get("component") or e.get("reportingComponent") or ""
        if source.get("host"):
            src = f"{src}, {source['host']}"
        w.line(1, e.get("type") or "", e.get("reason") or "", when, src, str(e.get("message") or "").strip())


def header(w: Writer, obj: Obj, namespaced: bool = True) -> None:
    md = meta(obj)
    w.kv(0, "Name", md.get("name"))
    if namespaced:
        w.kv(0, "Namespace", md.get("namespace"))


def write_container(w: Writer, c: Obj, status: Obj | None, level: int) -> None:
    w.line(level, f"{c.get('name')}:")
    s = status or {}
    if s.get("containerID"):
        w.kv(level + 1, "Container ID", s["containerID"])
    w.kv(level + 1, "Image", c.get("image"))
    if status is not None:
        w.kv(level + 1, "Image ID", s.get("imageID", ""))
    ports = c.get("ports") or []
    if ports:
        w.kv(
            level + 1,
            "Port",
            ", ".join(f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}" for p in ports),
        )
        w.kv(
            level + 1,
            "Host Port",
            ", ".join(f"{p.get('hostPort', 0)}/{p.get('protocol', 'TCP')}" for p in ports),
        )
    else:
        w.kv(level + 1, "Port", "<none>")
        w.kv(level + 1, "Host Port", "<none>")
    for key, title in (("command", "Command"), ("args", "Args")):
        if c.get(key):
            w.line(level + 1, f"{title}:")
            for part in c[key]:
                w.line(level + 2, str(part))
    if status is not None:
        state = s.get("state") or {}
        for name, st in state.items():
            w.kv(level + 1, "State", name.capitalize())
            if st.get("reason"):
                w.kv(level + 2, "Reason", st["reason"])
            if st.get("exitCode") is not None:
                w.kv(level + 2, "Exit Code", st["exitCode"])
            if st.get("startedAt"):
                w.kv(level + 2, "Started", timestamp(st["startedAt"]))
            if st.get("finishedAt"):
                w.kv(level + 2, "Finished", timestamp(st["finishedAt"]))
        if not state:
            w.kv(level + 1, "State", "Waiting")
        w.kv(level + 1, "Ready", bool(s.get("ready")))
        w.kv(level + 1, "Restart Count", int(s.get("restartCount") or 0))
    resources = c.get("resources") or {}
    for key, title in (("limits", "Limits"), ("requests", "Requests")):
        if resources.get(key):
            w.line(level + 1, f"{title}:")
            for rk, rv in sorted(resources[key].items()):
                w.kv(level + 2, rk, rv)
    env = c.get("env") or []
    if env:
        w.line(level + 1, "Environment:")
        for e in env:
            if "value" in e:
                w.kv(level + 2, e["name"], e["value"])
            else:
                src = e.get("valueFrom") or {}
                ref: tuple[str, Any] = next(iter(src.items()), ("", {}))
                w.kv(
                    level + 2,
                    e["name"],
                    f"<set to the key '{ref[1].get('key', '')}' of '{ref[1].get('name', '')}'>"
                    if ref[0] in ("configMapKeyRef", "secretKeyRef")
                    else f"({ref[0]})",
                )
    else:
        w.kv(level + 1, "Environment", "<none>")
    mounts = c.get("volumeMounts") or []
    if mounts:
        w.line(level + 1, "Mounts:")
        for m in mounts:
            w.line(
                level + 2,
                f"{m.get('mountPath')} from {m.get('name')} ({'ro' if m.get('readOnly') else 'rw'})",
            )
    else:
        w.kv(level + 1, "Mounts", "<none>")


def write_pod_spec_tail(w: Writer, spec: Obj, level: int) -> None:
    volumes = spec.get("volumes") or []
    if volumes:
        w.line(level, "Volumes:")
        for v in volumes:
            w.line(level + 1, f"{v.get('name')}:")
            kind = next((key for key in v if key != "name"), "")
            w.kv(level + 2, "Type", kind)
            for fk, fv in sorted((v.get(kind) or {}).items()):
                w.kv(level + 2, smart_label(fk), fv)
    else:
        w.kv(level, "Volumes", "<none>")


def describe_pod(k: Kube, pod: Obj, now: datetime) -> Writer:
    w = Writer()
    md, spec, status = meta(pod), pod.get("spec") or {}, pod.get("status") or {}
    header(w, pod)
    w.kv(0, "Priority", spec.get("priority", 0))
    w.kv(0, "Service Account", spec.get("serviceAccountName", "default"))
    node = spec.get("nodeName")
    w.kv(0, "Node", f"{node}/{status['hostIP']}" if node and status.get("hostIP") else node)
    if status.get("startTime"):
        w.kv(0, "Start Time", timestamp(status["startTime"]))
    w.multi(0, "Labels", labels_list(md.get("labels")))
    w.multi(0, "Annotations", annotations_list(md.get("annotations")))
    phase, _, _, _ = pod_status_summary(pod)
    if md.get("deletionTimestamp"):
        w.kv(0, "Status", f"Terminating (lasts {age(md['deletionTimestamp'], now)})")
        w.kv(0, "Termination Grace Period", f"{md.get('deletionGracePeriodSeconds', 30)}s")
    else:
        w.kv(0, "Status", status.get("phase") or phase)
    w.kv(0, "IP", status.get("podIP", ""))
    ips = [i.get("ip") for i in status.get("podIPs") or [] if i.get("ip")]
    w.multi(0, "IPs", [f"IP:  {ip}" for ip in ips])
    owners = [o for o in md.get("ownerReferences") or [] if o.get("controller")]
    if owners:
        w.kv(0, "Controlled By", f"{owners[0].get('kind')}/{owners[0].get('name')}")
    statuses = {s.get("name"): s for s in status.get("containerStatuses") or []}
    if spec.get("initContainers"):
        init_statuses = {s.get("name"): s for s in status.get("initContainerStatuses") or []}
        w.line(0, "Init Containers:")
        for c in spec["initContainers"]:
            write_container(
                w, c, init_statuses.get(c.get("name")) if status.get("initContainerStatuses") else None, 1
            )
    w.line(0, "Containers:")
    for c in spec.get("containers") or []:
        write_container(w, c, statuses.get(c.get("name")) if status.get("containerStatuses") else None, 1)
    conditions = status.get("conditions") or []
    if conditions:
        w.line(0, "Conditions:")
        w.line(1, "Type", "Status")
        for cond in conditions:
            w.line(1, cond.get("type", ""), cond.get("status", ""))
    write_pod_spec_tail(w, spec, 0)
    w.kv(0, "QoS Class", status.get("qosClass") or "BestEffort")
    w.multi(0, "Node-Selectors", labels_list(spec.get("nodeSelector")))
    tolerations = [
        f"{t.get('key', '')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect', '')}"
        + (f" op={t['operator']}" if t.get("operator") == "Exists" else "")
        + (f" for {t['tolerationSeconds']}s" if t.get("tolerationSeconds") is not None else "")
        for t in spec.get("tolerations") or []
    ]
    w.multi(0, "Tolerations", tolerations)
    return w


def write_template(w: Writer, template: Obj, level: int) -> None:
    tmd, tspec = template.get("metadata") or {}, template.get("spec") or {}
    w.multi(level, "Labels", labels_list(tmd.get("labels")))
    if tmd.get("annotations"):
        w.multi(level, "Annotations", annotations_list(tmd.get("annotations")))
    w.line(level, "Containers:")
    for c in tspec.get("containers") or []:
        write_container(w, c, None, level + 1)
    write_pod_spec_tail(w, tspec, level)
    w.multi(level, "Node-Selectors", labels_list(tspec.get("nodeSelector")))
    w.multi(level, "Tolerations", [t.get("key", "") for t in tspec.get("tolerations") or []])


def _owned_replicasets(k: Kube, d: Obj) -> list[Obj]:
    rs_info = resolve("replicasets")
    assert rs_info is not None
    uid = meta(d).get("uid")
    sel = format_label_selector((d.get("spec") or {}).get("selector"))
    try:
        items = (
            k.client.list(
                rs_info, meta(d).get("namespace"), label_selector=sel if sel != "<none>" else None
            ).get("items")
            or []
        )
    except errors.StatusError:
        return []
    return [rs for rs in items if any(o.get("uid") == uid for o in meta(rs).get("ownerReferences") or [])]


def describe_deployment(k: Kube, d: Obj, now: datetime) -> Writer:
    w = Writer()
    md, spec, status = meta(d), d.get("spec") or {}, d.get("status") or {}
    header(w, d)
    w.kv(0, "CreationTimestamp", timestamp(md.get("creationTimestamp")))
    w.multi(0, "Labels", labels_list(md.get("labels")))
    w.multi(0, "Annotations", annotations_list(md.get("annotations")))
    w.kv(0, "Selector", format_label_selector(spec.get("selector")))
    w.kv(
        0,
        "Replicas",
        f"{spec.get('replicas', 1)} desired | {status.get('updatedReplicas', 0)} updated | "
        f"{status.get('replicas', 0)} total | {status.get('availableReplicas', 0)} available | "
        f"{status.get('unavailableReplicas', 0)} unavailable",
    )
    strategy = spec.get("strategy") or {}
    w.kv(0, "StrategyType", strategy.get("type", "RollingUpdate"))
    w.kv(0, "MinReadySeconds", spec.get("minReadySeconds", 0))
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        ru = strategy.get("rollingUpdate") or {}
        w.kv(
            0,
            "RollingUpdateStrategy",
            f"{ru.get('maxUnavailable', '25%')} max unavailable, {ru.get('maxSurge', '25%')} max surge",
        )
    if spec.get("paused"):
        w.kv(0, "Paused", "true")
    w.line(0, "Pod Template:")
    write_template(w, spec.get("template") or {}, 1)
    conditions = status.get("conditions") or []
    if conditions:
        w.line(0, "Conditions:")
        w.line(1, "Type", "Status", "Reason")
        w.line(1, "----", "------", "------")
        for c in conditions:
            w.line(1, c.get("type", ""), c.get("status", ""), c.get("reason", ""))
    rss = _owned_replicasets(k, d)
    if rss:
        tmpl_hash = None
        newest = max(
            rss,
            key=lambda r: int(
                (meta(r).get("annotations") or {}).get("deployment.kubernetes.io/revision", "0") or 0
            ),
        )
        tmpl_hash = meta(newest).get("name")
        old = [
            r
            for r in rss
            if meta(r).get("name") != tmpl_hash and int((r.get("spec") or {}).get("replicas") or 0) > 0
        ]

        def rs_text(r: Obj) -> str:
            st = r.get("status") or {}
            return f"{meta(r).get('name')} ({st.get('replicas', 0)}/{(r.get('spec') or {}).get('replicas', 0)} replicas created)"

        w.kv(0, "OldReplicaSets", ", ".join(rs_text(r) for r in old) or "<none>")
        w.kv(0, "NewReplicaSet", rs_text(newest))
    return w


def describe_service(k: Kube, svc: Obj, now: datetime) -> Writer:
    w = Writer()
    md, spec = meta(svc), svc.get("spec") or {}
    header(w, svc)
    w.multi(0, "Labels", labels_list(md.get("labels")))
    w.multi(0, "Annotations", annotations_list(md.get("annotations")))
    w.kv(0, "Selector", ",".join(labels_list(spec.get("selector"))) or "<none>")
    w.kv(0, "Type", spec.get("type", "ClusterIP"))
    if spec.get("ipFamilyPolicy"):
        w.kv(0, "IP Family Policy", spec["ipFamilyPolicy"])
    if spec.get("ipFamilies"):
        w.kv(0, "IP Families", ",".join(spec["ipFamilies"]))
    w.kv(0, "IP", spec.get("clusterIP") or "<none>")
    w.kv(0, "IPs", ",".join(spec.get("clusterIPs") or []) or "<none>")
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if ingress:
        w.kv(0, "LoadBalancer Ingress", ", ".join(i.get("ip") or i.get("hostname", "") for i in ingress))
    endpoints = _endpoints(k, svc)
    for p in spec.get("ports") or []:
        name = p.get("name") or "<unset>"
        w.kv(0, "Port", f"{name}  {p.get('port')}/{p.get('protocol', 'TCP')}")
        target = p.get("targetPort", p.get("port"))
        w.kv(0, "TargetPort", f"{target}/{p.get('protocol', 'TCP')}")
        if p.get("nodePort"):
            w.kv(0, "NodePort", f"{name}  {p['nodePort']}/{p.get('protocol', 'TCP')}")
        w.kv(0, "Endpoints", endpoints.get(p.get("name") or "", ""))
    w.kv(0, "Session Affinity", spec.get("sessionAffinity", "None"))
    if spec.get("externalTrafficPolicy"):
        w.kv(0, "External Traffic Policy", spec["externalTrafficPolicy"])
    return w


def _endpoints(k: Kube, svc: Obj) -> dict[str, str]:
    """Per service port name, the ready ``ip:port`` endpoints of the Service's EndpointSlices
    (as kubectl 1.32 reads them), or of its Endpoints object when it has no slices."""
    slice_info = resolve("endpointslices.discovery.k8s.io")
    slices: list[Obj] = []
    if slice_info is not None:
        try:
            slices = (
                k.client.list(
                    slice_info,
                    meta(svc).get("namespace"),
                    label_selector=f"kubernetes.io/service-name={meta(svc)['name']}",
                ).get("items")
                or []
            )
        except errors.StatusError:
            slices = []
    out: dict[str, list[str]] = {}
    if slices:
        for s in sorted(slices, key=lambda s: meta(s).get("name") or ""):
            for port in s.get("ports") or []:
                for ep in s.get("endpoints") or []:
                    if (ep.get("conditions") or {}).get("ready") is False:
                        continue
                    for address in (ep.get("addresses") or [])[:1]:
                        out.setdefault(port.get("name") or "", []).append(f"{address}:{port.get('port')}")
        return {key: _listed(v) for key, v in out.items()}
    ep_info = resolve("endpoints")
    assert ep_info is not None
    try:
        ep = k.client.get(ep_info, meta(svc)["name"], meta(svc).get("namespace"))
    except errors.StatusError:
        return {}
    for subset in ep.get("subsets") or []:
        for port in subset.get("ports") or []:
            for addr in subset.get("addresses") or []:
                out.setdefault(port.get("name") or "", []).append(f"{addr.get('ip')}:{port.get('port')}")
    return {key: _listed(v) for key, v in out.items()}


def _listed(entries: list[str], limit: int = 3) -> str:
    """The first entries, then ``+ N more...``, as kubectl lists endpoints."""
    if len(entries) <= limit:
        return ",".join(entries)
    return ",".join(entries[:limit]) + f" + {len(entries) - limit} more..."


def describe_node(k: Kube, node: Obj, now: datetime) -> Writer:
    w = Writer()
    md, spec, status = meta(node), node.get("spec") or {}, node.get("status") or {}
    header(w, node, namespaced=False)
    roles = sorted(
        key.split("/", 1)[1] for key in md.get("labels") or {} if key.startswith("node-role.kubernetes.io/")
    )
    w.kv(0, "Roles", ",".join(roles) or "<none>")
    w.multi(0, "Labels", labels_list(md.get("labels")))
    w.multi(0, "Annotations", annotations_list(md.get("annotations")))
    w.kv(0, "CreationTimestamp", timestamp(md.get("creationTimestamp")))
    taints = [
        f"{t.get('key')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect')}"
        for t in spec.get("taints") or []
    ]
    w.multi(0, "Taints", taints)
    w.kv(0, "Unschedulable", bool(spec.get("unschedulable")))
    conditions = status.get("conditions") or []
    w.line(0, "Conditions:")
    w.line(1, "Type", "Status", "LastHeartbeatTime", "LastTransitionTime", "Reason", "Message")
    w.line(1, "----", "------", "-----------------", "------------------", "------", "-------")
    for c in conditions:
        w.line(
            1,
            c.get("type", ""),
            c.get("status", ""),
            timestamp(c.get("lastHeartbeatTime")),
            timestamp(c.get("lastTransitionTime")),
            c.get("reason", ""),
            c.get("message", ""),
        )
    w.line(0, "Addresses:")
    for a in status.get("addresses") or []:
        w.kv(1, a.get("type", ""), a.get("address", ""))
    for key, title in (("capacity", "Capacity"), ("allocatable", "Allocatable")):
        w.line(0, f"{title}:")
        for rk, rv in sorted((status.get(key) or {}).items()):
            w.kv(1, rk, rv)
    info = status.get("nodeInfo") or {}
    if info:
        w.line(0, "System Info:")
        for ik, iv in info.items():
            w.kv(1, smart_label(ik), iv)
    if spec.get("podCIDR"):
        w.kv(0, "PodCIDR", spec["podCIDR"])
        w.kv(0, "PodCIDRs", ",".join(spec.get("podCIDRs") or [spec["podCIDR"]]))
    return w


def _generic_value(w: Writer, level: int, key: str, value: Any) -> None:
    label = smart_label(key)
    if isinstance(value, dict):
        if not value:
            return
        w.line(level, f"{label}:")
        for k2, v2 in value.items():
            _generic_value(w, level + 1, k2, v2)
    elif isinstance(value, list):
        if not value:
            return
        w.line(level, f"{label}:")
        for item in value:
            if isinstance(item, dict):
                first = True
                for k2, v2 in item.items():
                    if isinstance(v2, dict | list):
                        _generic_value(w, level + 1, k2, v2)
                    else:
                        w.kv(level + 1, smart_label(k2), v2)
                    first = False
                del first
            else:
                w.line(level + 1, str(item))
    else:
        w.kv(level, label, value)


def describe_generic(k: Kube, obj: Obj, now: datetime, info: ResourceInfo | None = None) -> Writer:
    w = Writer()
    md = meta(obj)
    header(w, obj, namespaced=bool(md.get("namespace")))
    w.multi(0, "Labels", labels_list(md.get("labels")))
    w.multi(0, "Annotations", annotations_list(md.get("annotations")))
    w.kv(0, "API Version", obj.get("apiVersion") or (info.api_version if info else ""))
    w.kv(0, "Kind", obj.get("kind") or (info.kind if info else ""))
    w.line(0, "Metadata:")
    for key in ("creationTimestamp", "generation", "resourceVersion", "uid"):
        if key in md:
            w.kv(1, smart_label(key), md[key])
    for key, value in obj.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        if (
            key in ("data", "stringData")
            and obj.get("kind") == "Secret"
            or (info and info.kind == "Secret" and key == "data")
        ):
            w.line(0, "Data")
            w.line(0, "====")
            for dk, dv in sorted((value or {}).items()):
                w.kv(0, dk, f"{len(dv) * 3 // 4 - dv.count('=')} bytes")
            continue
        _generic_value(w, 0, key, value)
    return w


DESCRIBERS = {
    "Pod": describe_pod,
    "Deployment": describe_deployment,
    "Service": describe_service,
    "Node": describe_node,
}


def describe_object(
    k: Kube, info: ResourceInfo, obj: Obj, now: datetime | None = None, show_events: bool = True
) -> str:
    now = now or datetime.now(UTC)
    obj = {"apiVersion": info.api_version, "kind": info.kind, **obj}
    fn = DESCRIBERS.get(info.kind)
    w = fn(k, obj, now) if fn else describe_generic(k, obj, now, info)
    if show_events and info.kind != "Event":
        write_events(w, events_for(k, obj), now)
    return w.render()


def describe(
    ctx: typer.Context,
    resources: list[str] = typer.Argument(..., help="TYPE [NAME_PREFIX…] or TYPE/NAME"),
    selector: str = typer.Option(None, "-l", "--selector", help="label selector"),
    all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces"),
    show_events: str = typer.Option("true", "--show-events", help="true|false: include the Events section"),
) -> None:
    """Show details of a resource or group of resources."""
    k = kube(ctx)
    failed = False
    first = True
    for info, names in parse_resource_args(resources):
        ns = None if (all_namespaces or not info.namespaced) else k.namespace
        objects: list[Obj] = []
        if names:
            for name in names:
                try:
                    objects.append(k.client.get(info, name, ns))
                except errors.NotFound as exc:
                    # kubectl then treats NAME as a prefix
                    matches = [
                        o
                        for o in k.client.list(info, ns, selector).get("items") or []
                        if str(meta(o).get("name", "")).startswith(name)
                    ]
                    if not matches:
                        err(format_status_error(exc))
                        failed = True
                    objects.extend(matches)
        else:
            objects = k.client.list(info, ns, selector).get("items") or []
            if not objects:
                err(f"No resources found in {k.namespace} namespace." if ns else "No resources found")
        for obj in objects:
            if not first:
                print_text("\n\n")
            first = False
            print_text(describe_object(k, info, obj, show_events=parse_bool(show_events, "--show-events")))
    if failed:
        raise typer.Exit(1)
