"""A container's environment, built exactly as the kubelet builds it (pure functions, no I/O).

* ``envFrom`` first (ConfigMaps and Secrets, keys with the optional ``prefix``), then ``env`` in
  order; a later definition of a name wins.
* ``env[].value`` is expanded with ``$(VAR)`` against the variables defined before it;
  ``valueFrom`` values are taken as they are.
* ``command`` and ``args`` are expanded against the final environment.
* ``$$`` is an escaped ``$``; a reference to an unknown variable, or an unclosed ``$(``, is left
  as written (Kubernetes' ``third_party/forked/golang/expansion``).

The ConfigMaps and Secrets a container refers to are fetched by the caller
(:func:`referenced_objects`) and passed in, so these functions stay pure.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from apimachinery.quantity import parse_quantity

Obj = dict[str, Any]

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ConfigError(Exception):
    """The container cannot be configured (reported as ``CreateContainerConfigError``)."""


@dataclass
class PodSources:
    """What a pod's environment and volume files are made of besides the pod: the ConfigMaps and
    Secrets it names (None for one that does not exist), fetched by the caller, and what the
    downward API reports of the pod's and the node's state."""

    config_maps: Mapping[str, Obj | None] = field(default_factory=dict)
    secrets: Mapping[str, Obj | None] = field(default_factory=dict)
    pod_ip: str = ""
    host_ip: str = ""
    node_allocatable: Mapping[str, str] | None = None
    # the Services whose variables containers get (see service_environment); None: not known yet
    services: Sequence[Obj] | None = None
    # projected serviceAccountToken sources' tokens, by kubelet.sa_token.source_id
    tokens: Mapping[str, str] = field(default_factory=dict)

    def lookup(
        self, ref: Obj, is_cm: bool, name_key: str = "name", error: type[Exception] = ConfigError
    ) -> Obj | None:
        """The ConfigMap (or Secret) ``ref`` names; None when it is missing and ``optional``,
        ``error`` when it is missing otherwise."""
        obj = (self.config_maps if is_cm else self.secrets).get(ref.get(name_key, ""))
        if obj is None and not ref.get("optional"):
            raise error(f'{"configmap" if is_cm else "secret"} "{ref.get(name_key)}" not found')
        return obj


def expand(text: str, mapping: Callable[[str], str]) -> str:
    """Kubernetes' ``expansion.Expand``: ``$(NAME)`` → ``mapping(NAME)``, ``$$`` → ``$``."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_variable_name(text[cursor + 1 :])
            out.append(mapping(read) if is_var else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def _read_variable_name(text: str) -> tuple[str, bool, int]:
    first = text[0]
    if first == "$":
        return "$", False, 1
    if first == "(":
        end = text.find(")", 1)
        if end >= 1:
            return text[1:end], True, end + 1
        return "$(", False, 1
    return "$" + first, False, 1


def mapping_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    """The lookup ``expand`` uses: the first context that has the name, else ``$(NAME)`` unchanged."""

    def lookup(name: str) -> str:
        for ctx in contexts:
            if name in ctx:
                return ctx[name]
        return f"$({name})"

    return lookup


def referenced_objects(container: Obj) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets a container's ``env``/``envFrom`` refer to."""
    cms: set[str] = set()
    secrets: set[str] = set()
    for src in container.get("envFrom") or []:
        if (src.get("configMapRef") or {}).get("name"):
            cms.add(src["configMapRef"]["name"])
        if (src.get("secretRef") or {}).get("name"):
            secrets.add(src["secretRef"]["name"])
    for env in container.get("env") or []:
        vf = env.get("valueFrom") or {}
        if (vf.get("configMapKeyRef") or {}).get("name"):
            cms.add(vf["configMapKeyRef"]["name"])
        if (vf.get("secretKeyRef") or {}).get("name"):
            secrets.add(vf["secretKeyRef"]["name"])
    return cms, secrets


def config_map_data(cm: Obj) -> dict[str, str]:
    data = dict(cm.get("data") or {})
    for k, v in (cm.get("binaryData") or {}).items():
        data.setdefault(k, base64.b64decode(v).decode("utf-8", errors="replace"))
    return data


def secret_data(secret: Obj) -> dict[str, str]:
    data = {
        k: base64.b64decode(v).decode("utf-8", errors="replace")
        for k, v in (secret.get("data") or {}).items()
    }
    for k, v in (secret.get("stringData") or {}).items():
        data[k] = v
    return data


def field_ref_value(pod: Obj, path: str, pod_ip: str = "", host_ip: str = "") -> str:
    """The value of a ``fieldRef.fieldPath`` (the paths the downward API supports)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path) or re.fullmatch(
        r'metadata\.(labels|annotations)\["([^"]*)"\]', path
    )
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    simple: dict[str, str] = {
        "metadata.name": str(meta.get("name", "")),
        "metadata.namespace": str(meta.get("namespace", "")),
        "metadata.uid": str(meta.get("uid", "")),
        "spec.nodeName": str(spec.get("nodeName", "")),
        "spec.serviceAccountName": str(spec.get("serviceAccountName", "")),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path not in simple:
        raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")
    return simple[path]


def resource_field_value(
    container: Obj, resource: str, divisor: str | None, node_allocatable: Mapping[str, str] | None = None
) -> str:
    """``resourceFieldRef``: a limit or request divided by ``divisor``, rounded up (as Kubernetes does)."""
    resources = container.get("resources") or {}
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise ConfigError(f"unsupported resourceFieldRef resource {resource!r}")
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "limits":
        value = (node_allocatable or {}).get(name)
    if value is None:
        value = "0"
    q = parse_quantity(str(value))
    div = parse_quantity(str(divisor)) if divisor not in (None, "", "0") else Decimal(1)
    if div == 0:
        div = Decimal(1)
    return str(max(0, math.ceil(q / div)) if q > 0 else 0)


MASTER_SERVICES = ("kubernetes",)  # Services of ``default`` whose variables every pod gets


def _env_name(name: str) -> str:
    """Kubernetes' ``makeEnvVariableName``: upper case, ``-`` as ``_``."""
    return name.replace("-", "_").upper()


def _cluster_ip_set(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def services_for_pod(pod: Obj, services: Sequence[Obj]) -> list[Obj]:
    """The Services whose variables a pod's containers get (the kubelet's ``getServiceEnvVarMap``):
    those of the pod's namespace with a ClusterIP when ``enableServiceLinks`` is not false, and the
    master Service ``default/kubernetes`` always; sorted by name."""
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    links = (pod.get("spec") or {}).get("enableServiceLinks")
    links = True if links is None else bool(links)
    chosen: dict[str, Obj] = {}
    for svc in services:
        if not _cluster_ip_set(svc) or not (svc.get("spec") or {}).get("ports"):
            continue
        smeta = svc.get("metadata") or {}
        name, ns = str(smeta.get("name") or ""), smeta.get("namespace") or "default"
        if ns == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif ns == namespace and links:
            chosen[name] = svc
    return [chosen[n] for n in sorted(chosen)]


def service_environment(services: Sequence[Obj]) -> dict[str, str]:
    """Kubernetes' ``envvars.FromServices``: for each Service ``NAME_SERVICE_HOST``,
    ``NAME_SERVICE_PORT`` (the first port), ``NAME_SERVICE_PORT_PORTNAME`` per named port, and
    the Docker link variables ``NAME_PORT``, ``NAME_PORT_P_PROTO[_PROTO|_PORT|_ADDR]``."""
    out: dict[str, str] = {}
    for svc in services:
        spec = svc.get("spec") or {}
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
        if not _cluster_ip_set(svc) or not ports:
            continue
        ip = str(spec["clusterIP"])
        prefix = _env_name(str((svc.get("metadata") or {}).get("name") or ""))
        out[f"{prefix}_SERVICE_HOST"] = ip
        out[f"{prefix}_SERVICE_PORT"] = str(int(ports[0].get("port") or 0))
        for p in ports:
            if p.get("name"):
                out[f"{prefix}_SERVICE_PORT_{_env_name(str(p['name']))}"] = str(int(p.get("port") or 0))
        host = f"[{ip}]" if ":" in ip else ip
        for i, p in enumerate(ports):
            proto = str(p.get("protocol") or "TCP")
            port = int(p.get("port") or 0)
            url = f"{proto.lower()}://{host}:{port}"
            if i == 0:
                out[f"{prefix}_PORT"] = url
            pp = f"{prefix}_PORT_{port}_{proto.upper()}"
            out[pp] = url
            out[f"{pp}_PROTO"] = proto.lower()
            out[f"{pp}_PORT"] = str(port)
            out[f"{pp}_ADDR"] = ip
    return out


def make_environment(pod: Obj, container: Obj, sources: PodSources) -> list[tuple[str, str]]:
    """The container's environment as ordered ``(name, value)`` pairs; raises :class:`ConfigError`.

    The Service variables (:func:`service_environment`) come last, each unless the container
    defines the name itself; ``$(VAR)`` in ``env`` values may refer to them."""
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    env: dict[str, str] = {}
    service_env = (
        service_environment(services_for_pod(pod, sources.services)) if sources.services is not None else {}
    )

    for src in container.get("envFrom") or []:
        prefix = str(src.get("prefix") or "")
        is_cm = bool(src.get("configMapRef"))
        if not is_cm and not src.get("secretRef"):
            continue
        obj = sources.lookup(src["configMapRef"] if is_cm else src["secretRef"], is_cm)
        if obj is None:
            continue
        for key, value in (config_map_data(obj) if is_cm else secret_data(obj)).items():
            name = prefix + key
            if _ENV_NAME.match(name):  # invalid names are skipped, as Kubernetes does (with an event)
                env[name] = value

    for item in container.get("env") or []:
        name = str(item.get("name", ""))
        vf = item.get("valueFrom")
        if not vf:
            env[name] = expand(str(item.get("value") or ""), mapping_for(env, service_env))
            continue
        if vf.get("fieldRef"):
            env[name] = field_ref_value(
                pod, vf["fieldRef"].get("fieldPath", ""), sources.pod_ip, sources.host_ip
            )
        elif vf.get("resourceFieldRef"):
            ref = vf["resourceFieldRef"]
            target = container
            if ref.get("containerName"):
                for c in (pod.get("spec") or {}).get("containers") or []:
                    if c.get("name") == ref["containerName"]:
                        target = c
            env[name] = resource_field_value(
                target, ref.get("resource", ""), ref.get("divisor"), sources.node_allocatable
            )
        elif vf.get("configMapKeyRef") or vf.get("secretKeyRef"):
            is_cm = bool(vf.get("configMapKeyRef"))
            ref = vf["configMapKeyRef"] if is_cm else vf["secretKeyRef"]
            picked = _key_ref(ref, sources, is_cm, namespace)
            if picked is not None:
                env[name] = picked
    return list(env.items()) + [(k, v) for k, v in service_env.items() if k not in env]


def _key_ref(ref: Obj, sources: PodSources, is_cm: bool, namespace: str) -> str | None:
    """One key of a ConfigMap or Secret for ``valueFrom``; None when it is optional and missing."""
    obj = sources.lookup(ref, is_cm)
    if obj is None:
        return None
    data = config_map_data(obj) if is_cm else secret_data(obj)
    if ref.get("key") not in data:
        if ref.get("optional"):
            return None
        word = "ConfigMap" if is_cm else "Secret"
        raise ConfigError(f"couldn't find key {ref.get('key')} in {word} {namespace}/{ref.get('name')}")
    return str(data[ref["key"]])


POD_IP_FIELDS = ("status.podIP", "status.podIPs")


def needs_pod_ip(container: Obj) -> bool:
    """Whether the container's environment refers to the pod's IP (``fieldRef`` ``status.podIP``
    or ``status.podIPs``): such a container can only be created once its sandbox has an IP."""
    for item in container.get("env") or []:
        ref = (item.get("valueFrom") or {}).get("fieldRef") or {}
        if ref.get("fieldPath") in POD_IP_FIELDS:
            return True
    return False


def expand_command(container: Obj, env: list[tuple[str, str]]) -> tuple[list[str] | None, list[str] | None]:
    """``command`` and ``args`` with ``$(VAR)`` expanded against the container's environment."""
    lookup = mapping_for(dict(env))
    command = container.get("command")
    args = container.get("args")
    return (
        [expand(str(c), lookup) for c in command] if command else None,
        [expand(str(a), lookup) for a in args] if args else None,
    )
