"""Pod Security admission: the Pod Security Standards (baseline, restricted) as Kubernetes'
``k8s.io/pod-security-admission`` checks them.

A namespace chooses a level per mode with labels: ``pod-security.kubernetes.io/enforce``,
``.../warn``, ``.../audit`` (``privileged``, ``baseline`` or ``restricted``) and optional
``...-version`` labels (``latest`` or ``v1.X``; every version is checked as ``latest`` here).
The checks are pure functions of a pod's metadata and spec; each returns ``None`` when the pod
passes, else ``(reason, detail)`` with Kubernetes' wording.  :func:`evaluate` runs the checks of a
level in Kubernetes' order (by check id) and :func:`forbidden_reasons` joins them as the API
server prints them: ``privileged (container "main" must not set securityContext.privileged=true),
host namespaces (hostNetwork=true)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from .validation import VOLUME_SOURCES

Obj = dict[str, Any]
Result = tuple[str, str] | None

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
LABEL_PREFIX = "pod-security.kubernetes.io/"
MODES = ("enforce", "audit", "warn")
_VERSION_RE = re.compile(r"^v1\.(0|[1-9][0-9]*)$")

# Workload kinds whose pod templates get warn/audit (never enforce), as Kubernetes.
TEMPLATE_KINDS = {
    ("", "ReplicationController"): ("spec", "template"),
    ("", "PodTemplate"): ("template",),
    ("apps", "Deployment"): ("spec", "template"),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
}


# --- namespace policy ----------------------------------------------------------------------------
def parse_level(value: Any) -> str | None:
    return value if value in LEVELS else None


def parse_version(value: Any) -> bool:
    return value == "latest" or (isinstance(value, str) and bool(_VERSION_RE.match(value)))


def namespace_policy(labels: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    """Mode -> (level, version) from a namespace's labels; a missing level is ``privileged``.
    An unparsable level is ``restricted`` (the most restrictive), as Kubernetes does."""
    labels = labels or {}
    out: dict[str, tuple[str, str]] = {}
    for mode in MODES:
        raw = labels.get(LABEL_PREFIX + mode)
        level = PRIVILEGED if raw is None else (parse_level(raw) or RESTRICTED)
        version = labels.get(f"{LABEL_PREFIX}{mode}-version")
        out[mode] = (level, str(version) if parse_version(version) else "latest")
    return out


def validate_namespace_labels(labels: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """(label key, value, message) for every malformed pod-security label of a namespace."""
    errs = []
    for key, value in sorted((labels or {}).items()):
        if not key.startswith(LABEL_PREFIX):
            continue
        mode = key[len(LABEL_PREFIX) :]
        if mode in MODES and parse_level(value) is None:
            errs.append((key, value, "must be one of privileged, baseline, restricted"))
        elif mode.endswith("-version") and mode[: -len("-version")] in MODES and not parse_version(value):
            errs.append((key, value, 'must be "latest" or "v1.x"'))
    return errs


def policy_string(level: str, version: str) -> str:
    return f"{level}:{version}"


# --- helpers -------------------------------------------------------------------------------------
def _d(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _dl(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def pluralize(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


def join_quote(items: list[str]) -> str:
    return ", ".join(f'"{i}"' for i in items)


def _containers(spec: Obj) -> Iterator[Obj]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from _dl(spec.get(key))


def _sc(c: Obj) -> Obj:
    return _d(c.get("securityContext"))


def _container_list(what: list[str]) -> str:
    return f"{pluralize('container', 'containers', len(what))} {join_quote(what)}"


# --- baseline ------------------------------------------------------------------------------------
def check_privileged(meta: Obj, spec: Obj) -> Result:
    bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("privileged") is True]
    if bad:
        return "privileged", f"{_container_list(bad)} must not set securityContext.privileged=true"
    return None


def check_host_namespaces(meta: Obj, spec: Obj) -> Result:
    found = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]
    if found:
        return "host namespaces", ", ".join(found)
    return None


def check_host_path_volumes(meta: Obj, spec: Obj) -> Result:
    bad = [v.get("name", "") for v in _dl(spec.get("volumes")) if v.get("hostPath") is not None]
    if bad:
        return "hostPath volumes", f"{pluralize('volume', 'volumes', len(bad))} {join_quote(bad)}"
    return None


def check_host_ports(meta: Obj, spec: Obj) -> Result:
    bad: list[str] = []
    ports: set[str] = set()
    for c in _containers(spec):
        used = False
        for p in _dl(c.get("ports")):
            if p.get("hostPort"):
                used = True
                ports.add(str(p["hostPort"]))
        if used:
            bad.append(c.get("name", ""))
    if bad:
        return "hostPort", (
            f"{_container_list(bad)} {pluralize('uses', 'use', len(bad))} "
            f"{pluralize('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}"
        )
    return None


def _handler_hosts(handler: Any) -> list[str]:
    handler = _d(handler)
    return [
        str(_d(handler.get(kind)).get("host"))
        for kind in ("httpGet", "tcpSocket")
        if _d(handler.get(kind)).get("host")
    ]


def check_host_probes_and_lifecycle(meta: Obj, spec: Obj) -> Result:
    bad: set[str] = set()
    hosts: set[str] = set()
    for c in _containers(spec):
        found = [
            h
            for probe in ("livenessProbe", "readinessProbe", "startupProbe")
            for h in _handler_hosts(c.get(probe))
        ]
        lifecycle = _d(c.get("lifecycle"))
        found += _handler_hosts(lifecycle.get("postStart")) + _handler_hosts(lifecycle.get("preStop"))
        if found:
            bad.add(str(c.get("name", "")))
            hosts.update(found)
    if bad:
        return "probe or lifecycle host", (
            f"{_container_list(sorted(bad))} {pluralize('uses', 'use', len(bad))} "
            f"{pluralize('probe or lifecycle host', 'probe or lifecycle hosts', len(hosts))} {join_quote(sorted(hosts))}"
        )
    return None


def _user_namespace(spec: Obj) -> bool:
    """Pods in a user namespace (``hostUsers: false``) are relaxed for the root-related checks."""
    return spec.get("hostUsers") is False


def _windows(spec: Obj) -> bool:
    return _d(spec.get("os")).get("name") == "windows"


BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)


def check_capabilities_baseline(meta: Obj, spec: Obj) -> Result:
    bad: list[str] = []
    caps: set[str] = set()
    for c in _containers(spec):
        added = [str(a) for a in _d(_sc(c).get("capabilities")).get("add") or []]
        extra = [a for a in added if a not in BASELINE_CAPABILITIES]
        if extra:
            bad.append(c.get("name", ""))
            caps.update(extra)
    if bad:
        return "non-default capabilities", (
            f"{_container_list(bad)} must not include {join_quote(sorted(caps))} in securityContext.capabilities.add"
        )
    return None


def _apparmor_ok(profile: Obj) -> bool:
    return profile.get("type") in ("RuntimeDefault", "Localhost")


def check_apparmor(meta: Obj, spec: Obj) -> Result:
    setters: list[str] = []
    values: set[str] = set()
    pod_profile = _d(spec.get("securityContext")).get("appArmorProfile")
    if isinstance(pod_profile, dict) and not _apparmor_ok(pod_profile):
        setters.append("pod")
        values.add(str(pod_profile.get("type")))
    bad = []
    for c in _containers(spec):
        profile = _sc(c).get("appArmorProfile")
        if isinstance(profile, dict) and not _apparmor_ok(profile):
            bad.append(c.get("name", ""))
            values.add(str(profile.get("type")))
    if bad:
        setters.append(_container_list(bad))
    value_list = sorted(values)
    annotations = []
    for key, value in sorted(_d(meta.get("annotations")).items()):
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            not value or value == "runtime/default" or str(value).startswith("localhost/")
        ):
            annotations.append(f'{key}="{value}"')
    if annotations:
        value_list += annotations
        setters.append(pluralize("annotation", "annotations", len(annotations)))
    if setters:
        return pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", len(value_list)), (
            f"{' and '.join(setters)} must not set AppArmor profile type to {join_quote(value_list)}"
        )
    return None


SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})


def check_selinux(meta: Obj, spec: Obj) -> Result:
    bad_types: set[str] = set()
    flags = {"user": False, "role": False}

    def valid(opts: Obj) -> bool:
        ok = True
        if str(opts.get("type") or "") not in SELINUX_TYPES:
            ok = False
            bad_types.add(str(opts.get("type")))
        for field in ("user", "role"):
            if opts.get(field):
                ok = False
                flags[field] = True
        return ok

    setters = []
    pod_opts = _d(spec.get("securityContext")).get("seLinuxOptions")
    if isinstance(pod_opts, dict) and not valid(pod_opts):
        setters.append("pod")
    bad = []
    for c in _containers(spec):
        opts = _sc(c).get("seLinuxOptions")
        if isinstance(opts, dict) and not valid(opts):
            bad.append(c.get("name", ""))
    if bad:
        setters.append(_container_list(bad))
    if setters:
        data = []
        if bad_types:
            data.append(f"{pluralize('type', 'types', len(bad_types))} {join_quote(sorted(bad_types))}")
        if flags["user"]:
            data.append("user may not be set")
        if flags["role"]:
            data.append("role may not be set")
        return "seLinuxOptions", (
            f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(data)}"
        )
    return None


def check_proc_mount_baseline(meta: Obj, spec: Obj) -> Result:
    return None if _user_namespace(spec) else check_proc_mount(meta, spec)


def check_proc_mount(meta: Obj, spec: Obj) -> Result:
    bad: list[str] = []
    kinds: set[str] = set()
    for c in _containers(spec):
        pm = _sc(c).get("procMount")
        if pm not in (None, "Default"):
            bad.append(c.get("name", ""))
            kinds.add(str(pm))
    if bad:
        return "procMount", (
            f"{_container_list(bad)} must not set securityContext.procMount to {join_quote(sorted(kinds))}"
        )
    return None


def _seccomp_type(sc: Obj) -> Any:
    profile = sc.get("seccompProfile")
    return profile.get("type") if isinstance(profile, dict) else None


def check_seccomp_baseline(meta: Obj, spec: Obj) -> Result:
    setters = []
    values: set[str] = set()
    pod_type = _seccomp_type(_d(spec.get("securityContext")))
    if pod_type is not None and pod_type not in ("RuntimeDefault", "Localhost"):
        setters.append("pod")
        values.add(str(pod_type))
    bad = []
    for c in _containers(spec):
        ctype = _seccomp_type(_sc(c))
        if ctype is not None and ctype not in ("RuntimeDefault", "Localhost"):
            bad.append(c.get("name", ""))
            values.add(str(ctype))
    if bad:
        setters.append(_container_list(bad))
    if setters:
        return "seccompProfile", (
            f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to {join_quote(sorted(values))}"
        )
    return None


SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)


def check_sysctls(meta: Obj, spec: Obj) -> Result:
    bad = [
        str(s.get("name"))
        for s in _dl(_d(spec.get("securityContext")).get("sysctls"))
        if s.get("name") not in SAFE_SYSCTLS
    ]
    if bad:
        return "forbidden sysctls", ", ".join(bad)
    return None


def check_host_process(meta: Obj, spec: Obj) -> Result:
    setters = []
    if _d(_d(spec.get("securityContext")).get("windowsOptions")).get("hostProcess") is True:
        setters.append("pod")
    bad = [
        c.get("name", "") for c in _containers(spec) if _d(_sc(c).get("windowsOptions")).get("hostProcess")
    ]
    if bad:
        setters.append(_container_list(bad))
    if setters:
        return (
            "hostProcess",
            f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true",
        )
    return None


# --- restricted ----------------------------------------------------------------------------------
RESTRICTED_VOLUME_TYPES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
)
# the other volume types, in the order they are looked for to name a volume's
_KNOWN_VOLUME_TYPES = tuple(t for t in VOLUME_SOURCES if t not in RESTRICTED_VOLUME_TYPES)


def check_restricted_volumes(meta: Obj, spec: Obj) -> Result:
    bad: list[str] = []
    types: set[str] = set()
    for v in _dl(spec.get("volumes")):
        if any(v.get(t) is not None for t in RESTRICTED_VOLUME_TYPES):
            continue
        bad.append(v.get("name", ""))
        kind = next((t for t in _KNOWN_VOLUME_TYPES if v.get(t) is not None), "unknown")
        types.add(kind)
    if bad:
        return "restricted volume types", (
            f"{pluralize('volume', 'volumes', len(bad))} {join_quote(bad)} {pluralize('uses', 'use', len(bad))} "
            f"{pluralize('restricted volume type', 'restricted volume types', len(types))} {join_quote(sorted(types))}"
        )
    return None


def check_allow_privilege_escalation(meta: Obj, spec: Obj) -> Result:
    if _windows(spec):
        return None
    bad = [
        c.get("name", "") for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False
    ]
    if bad:
        return "allowPrivilegeEscalation != false", (
            f"{_container_list(bad)} must set securityContext.allowPrivilegeEscalation=false"
        )
    return None


def check_run_as_non_root(meta: Obj, spec: Obj) -> Result:
    if _user_namespace(spec):
        return None
    setters = []
    pod_value = _d(spec.get("securityContext")).get("runAsNonRoot")
    if pod_value is False:
        setters.append("pod")
    explicit, implicit = [], []
    for c in _containers(spec):
        value = _sc(c).get("runAsNonRoot")
        if value is False:
            explicit.append(c.get("name", ""))
        elif value is None and pod_value is None:
            implicit.append(c.get("name", ""))
    if explicit:
        setters.append(_container_list(explicit))
    if setters:
        return (
            "runAsNonRoot != true",
            f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false",
        )
    if pod_value is None and implicit:
        return (
            "runAsNonRoot != true",
            f"pod or {_container_list(implicit)} must set securityContext.runAsNonRoot=true",
        )
    return None


def check_run_as_user(meta: Obj, spec: Obj) -> Result:
    if _user_namespace(spec):
        return None
    setters = []
    if _d(spec.get("securityContext")).get("runAsUser") == 0:
        setters.append("pod")
    bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("runAsUser") == 0]
    if bad:
        setters.append(_container_list(bad))
    if setters:
        return "runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0"
    return None


def check_seccomp_restricted(meta: Obj, spec: Obj) -> Result:
    if _windows(spec):
        return None
    setters = []
    values: set[str] = set()
    pod_type = _seccomp_type(_d(spec.get("securityContext")))
    if pod_type is not None and pod_type not in ("RuntimeDefault", "Localhost"):
        setters.append("pod")
        values.add(str(pod_type))
    explicit, implicit = [], []
    for c in _containers(spec):
        ctype = _seccomp_type(_sc(c))
        if ctype is None:
            if pod_type is None:
                implicit.append(c.get("name", ""))
        elif ctype not in ("RuntimeDefault", "Localhost"):
            explicit.append(c.get("name", ""))
            values.add(str(ctype))
    if explicit:
        setters.append(_container_list(explicit))
    if setters:
        return "seccompProfile", (
            f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to {join_quote(sorted(values))}"
        )
    if pod_type is None and implicit:
        return "seccompProfile", (
            f'pod or {_container_list(implicit)} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"'
        )
    return None


def check_capabilities_restricted(meta: Obj, spec: Obj) -> Result:
    if _windows(spec):
        return None
    missing_drop: list[str] = []
    adding: list[str] = []
    forbidden_caps: set[str] = set()
    for c in _containers(spec):
        caps = _d(_sc(c).get("capabilities"))
        if "ALL" not in [str(d) for d in caps.get("drop") or []]:
            missing_drop.append(c.get("name", ""))
        extra = [str(a) for a in caps.get("add") or [] if a != "NET_BIND_SERVICE"]
        if extra:
            adding.append(c.get("name", ""))
            forbidden_caps.update(extra)
    details = []
    if missing_drop:
        details.append(f'{_container_list(missing_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(
            f"{_container_list(adding)} must not include {join_quote(sorted(forbidden_caps))} "
            "in securityContext.capabilities.add"
        )
    if details:
        return "unrestricted capabilities", "; ".join(details)
    return None


Check = Callable[[Obj, Obj], Result]

# (check id, level, check) as Kubernetes names them (the policy of "latest").  Reasons are listed
# baseline checks first, then restricted ones, each group by id, as Kubernetes orders them.
CHECKS: list[tuple[str, str, Check]] = sorted(
    [
        ("allowPrivilegeEscalation", RESTRICTED, check_allow_privilege_escalation),
        ("appArmorProfile", BASELINE, check_apparmor),
        ("capabilities_baseline", BASELINE, check_capabilities_baseline),
        ("capabilities_restricted", RESTRICTED, check_capabilities_restricted),
        ("hostNamespaces", BASELINE, check_host_namespaces),
        ("hostPathVolumes", BASELINE, check_host_path_volumes),
        ("hostPorts", BASELINE, check_host_ports),
        ("hostProbesAndHostLifecycle", BASELINE, check_host_probes_and_lifecycle),
        ("privileged", BASELINE, check_privileged),
        ("procMount", BASELINE, check_proc_mount_baseline),
        ("procMount_restricted", RESTRICTED, check_proc_mount),
        ("restrictedVolumes", RESTRICTED, check_restricted_volumes),
        ("runAsNonRoot", RESTRICTED, check_run_as_non_root),
        ("runAsUser", RESTRICTED, check_run_as_user),
        ("seLinuxOptions", BASELINE, check_selinux),
        ("seccompProfile_baseline", BASELINE, check_seccomp_baseline),
        ("seccompProfile_restricted", RESTRICTED, check_seccomp_restricted),
        ("sysctls", BASELINE, check_sysctls),
        ("windowsHostProcess", BASELINE, check_host_process),
    ],
    key=lambda c: (c[1] == RESTRICTED, c[0]),
)
# Restricted replaces these baseline checks with its stricter versions.
_OVERRIDDEN_BY_RESTRICTED = {
    "capabilities_baseline",
    "seccompProfile_baseline",
    "hostPathVolumes",
    "procMount",
}


def evaluate(level: str, meta: Obj, spec: Obj) -> list[str]:
    """The forbidden reasons (``reason (detail)``) of a pod's metadata and spec at ``level``."""
    if level == PRIVILEGED:
        return []
    reasons = []
    for check_id, check_level, check in CHECKS:
        if check_level == RESTRICTED and level != RESTRICTED:
            continue
        if level == RESTRICTED and check_id in _OVERRIDDEN_BY_RESTRICTED:
            continue
        result = check(meta, spec)
        if result is not None:
            reason, detail = result
            reasons.append(f"{reason} ({detail})" if detail else reason)
    return reasons


def forbidden_reasons(reasons: list[str]) -> str:
    return ", ".join(reasons)


def pod_spec_of(group: str, kind: str, obj: Obj) -> tuple[Obj, Obj] | None:
    """(metadata, spec) of a Pod or of a workload's pod template; None for other kinds."""
    if (group, kind) == ("", "Pod"):
        return _d(obj.get("metadata")), _d(obj.get("spec"))
    path = TEMPLATE_KINDS.get((group, kind))
    if path is None:
        return None
    node: Any = obj
    for part in path:
        node = _d(node).get(part)
    template = _d(node)
    return _d(template.get("metadata")), _d(template.get("spec"))
