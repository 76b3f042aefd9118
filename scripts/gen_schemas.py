"""Generate ``apiserver/schemas.json``: OpenAPI v3 component schemas for every kind minik serves.

The shapes are derived from the model classes of the official ``kubernetes`` Python client, which
is itself generated from Kubernetes' OpenAPI document.  Each model class carries:

* ``openapi_types`` -- python attribute -> type string (``"V1PodSpec"``, ``"List[V1Container]"``,
  ``"Dict[str, str]"``, ``"int"``, ``"datetime"``, ``"object"``, ...);
* ``attribute_map`` -- python attribute -> JSON field name;
* the field definitions (descriptions, and whether the field is required).

The client drops the description of every field whose type is another model (``spec``,
``strategy``, ``resources``, ...), so the descriptions come from Kubernetes' own definitions of the
same release instead: the ``_definitions.json`` that the ``kubernetes-validate`` package ships for
each Kubernetes version (Kubernetes' swagger definitions turned into JSON schema, every
description kept).  Its schema names also settle which Go package a type lives in where the
client's class name leaves it open.  Enum values, which neither source keeps, come from
``ENUMS`` below (Kubernetes' ``+enum`` Go types); each list is checked against the field's own
description, which names the values.

What the client flattened away is restored from a few well-known facts: Kubernetes names every
schema after its Go package (``io.k8s.api.core.v1.Pod``), ``Time`` and ``MicroTime`` are strings
in date-time format, ``IntOrString`` and ``Quantity`` are their own schemas.

Run ``.venv/bin/python scripts/gen_schemas.py`` to regenerate (it needs the dev tools and
``pip install kubernetes-validate==1.<client major>.*``); the output is deterministic.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import sys
from collections import deque
from pathlib import Path
from typing import Any, get_args

import kubernetes
import kubernetes.client.api as client_api
import kubernetes.client.models as client_models

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apimachinery.resources import BINDING, RESOURCES, TOKEN_REQUEST, group_versions  # noqa: E402

OUTPUT = ROOT / "apiserver" / "schemas.json"

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
TIME = f"{META}.Time"
MICRO_TIME = f"{META}.MicroTime"
FIELDS_V1 = f"{META}.FieldsV1"
PATCH = f"{META}.Patch"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
RAW_EXTENSION = "io.k8s.apimachinery.pkg.runtime.RawExtension"

# Types that live in k8s.io/apimachinery/pkg/apis/meta/v1 rather than in an API group.
META_MODELS = {
    "V1APIGroup",
    "V1APIGroupList",
    "V1APIResource",
    "V1APIResourceList",
    "V1APIVersions",
    "V1Condition",
    "V1DeleteOptions",
    "V1GroupVersionForDiscovery",
    "V1LabelSelector",
    "V1LabelSelectorRequirement",
    "V1ListMeta",
    "V1ManagedFieldsEntry",
    "V1ObjectMeta",
    "V1OwnerReference",
    "V1Preconditions",
    "V1ServerAddressByClientCIDR",
    "V1Status",
    "V1StatusCause",
    "V1StatusDetails",
    "V1WatchEvent",
}

# Core types that no core kind references (the graph walk would give them to the first group
# that does), and top-level kinds that have no list of their own.
GROUP_OVERRIDES = {
    "V1TopologySelectorTerm": "core",
    "V1TopologySelectorLabelRequirement": "core",
    "V1Binding": "core",
    "V1Scale": "autoscaling",
    "V1ScaleSpec": "autoscaling",
    "V1ScaleStatus": "autoscaling",
    "V1Eviction": "policy",
}

# (model, attribute) pairs whose strings are resource.Quantity in Kubernetes' Go types.
QUANTITY_FIELDS = {
    ("V1ResourceRequirements", "limits"),
    ("V1ResourceRequirements", "requests"),
    ("V1VolumeResourceRequirements", "limits"),
    ("V1VolumeResourceRequirements", "requests"),
    ("V1PodSpec", "overhead"),
    ("V1NodeStatus", "allocatable"),
    ("V1NodeStatus", "capacity"),
    ("V1EmptyDirVolumeSource", "size_limit"),
    ("V1PersistentVolumeSpec", "capacity"),
    ("V1PersistentVolumeClaimStatus", "capacity"),
    ("V1PersistentVolumeClaimStatus", "allocated_resources"),
    ("V1ContainerStatus", "allocated_resources"),
    ("V1ResourceQuotaSpec", "hard"),
    ("V1ResourceQuotaStatus", "hard"),
    ("V1ResourceQuotaStatus", "used"),
    ("V1PodStatus", "allocated_resources"),
}

# (model, attribute) pairs whose timestamps are metav1.MicroTime.
MICRO_TIME_FIELDS = {
    ("CoreV1Event", "event_time"),
    ("CoreV1EventSeries", "last_observed_time"),
    ("V1LeaseSpec", "acquire_time"),
    ("V1LeaseSpec", "renew_time"),
}

# Kubernetes' enum types (``+enum`` in k8s.io/api) on the fields of the served kinds:
# schema -> property -> values, sorted as Kubernetes publishes them.  ``check_enum`` makes sure
# the field's own description names every value, except in ``ENUMS_NOT_ALL_DESCRIBED``.
_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_TAINT_EFFECTS = ["NoExecute", "NoSchedule", "PreferNoSchedule"]
ENUMS: dict[str, dict[str, list[str]]] = {
    "io.k8s.api.core.v1.Container": {
        "imagePullPolicy": ["Always", "IfNotPresent", "Never"],
        "terminationMessagePolicy": ["FallbackToLogsOnError", "File"],
    },
    "io.k8s.api.core.v1.EphemeralContainer": {
        "imagePullPolicy": ["Always", "IfNotPresent", "Never"],
        "terminationMessagePolicy": ["FallbackToLogsOnError", "File"],
    },
    "io.k8s.api.core.v1.PodSpec": {
        "restartPolicy": ["Always", "Never", "OnFailure"],
        "dnsPolicy": ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        "preemptionPolicy": ["Never", "PreemptLowerPriority"],
    },
    "io.k8s.api.core.v1.PodStatus": {
        "phase": ["Failed", "Pending", "Running", "Succeeded", "Unknown"],
        "qosClass": ["BestEffort", "Burstable", "Guaranteed"],
    },
    "io.k8s.api.core.v1.ContainerPort": {"protocol": _PROTOCOLS},
    "io.k8s.api.core.v1.ServicePort": {"protocol": _PROTOCOLS},
    "io.k8s.api.core.v1.EndpointPort": {"protocol": _PROTOCOLS},
    "io.k8s.api.discovery.v1.EndpointPort": {"protocol": _PROTOCOLS},
    "io.k8s.api.networking.v1.NetworkPolicyPort": {"protocol": _PROTOCOLS},
    "io.k8s.api.core.v1.ServiceSpec": {
        "type": ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        "sessionAffinity": ["ClientIP", "None"],
        "externalTrafficPolicy": ["Cluster", "Local"],
        "internalTrafficPolicy": ["Cluster", "Local"],
        "ipFamilyPolicy": ["PreferDualStack", "RequireDualStack", "SingleStack"],
    },
    "io.k8s.api.core.v1.Toleration": {
        "operator": ["Equal", "Exists"],
        "effect": _TAINT_EFFECTS,
    },
    "io.k8s.api.core.v1.Taint": {"effect": _TAINT_EFFECTS},
    "io.k8s.api.core.v1.NodeSelectorRequirement": {
        "operator": ["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"],
    },
    "io.k8s.api.core.v1.HTTPGetAction": {"scheme": ["HTTP", "HTTPS"]},
    "io.k8s.api.core.v1.TopologySpreadConstraint": {
        "whenUnsatisfiable": ["DoNotSchedule", "ScheduleAnyway"],
        "nodeAffinityPolicy": ["Honor", "Ignore"],
        "nodeTaintsPolicy": ["Honor", "Ignore"],
    },
    "io.k8s.api.core.v1.PodSecurityContext": {"fsGroupChangePolicy": ["Always", "OnRootMismatch"]},
    "io.k8s.api.core.v1.SecurityContext": {"procMount": ["Default", "Unmasked"]},
    "io.k8s.api.core.v1.SeccompProfile": {"type": ["Localhost", "RuntimeDefault", "Unconfined"]},
    "io.k8s.api.core.v1.VolumeMount": {"mountPropagation": ["Bidirectional", "HostToContainer", "None"]},
    "io.k8s.api.core.v1.PersistentVolumeSpec": {
        "persistentVolumeReclaimPolicy": ["Delete", "Recycle", "Retain"],
        "volumeMode": ["Block", "Filesystem"],
    },
    "io.k8s.api.core.v1.PersistentVolumeClaimSpec": {"volumeMode": ["Block", "Filesystem"]},
    "io.k8s.api.core.v1.PersistentVolumeStatus": {
        "phase": ["Available", "Bound", "Failed", "Pending", "Released"],
    },
    "io.k8s.api.core.v1.PersistentVolumeClaimStatus": {"phase": ["Bound", "Lost", "Pending"]},
    "io.k8s.api.core.v1.NamespaceStatus": {"phase": ["Active", "Terminating"]},
    "io.k8s.api.apps.v1.DeploymentStrategy": {"type": ["Recreate", "RollingUpdate"]},
    "io.k8s.api.apps.v1.StatefulSetSpec": {"podManagementPolicy": ["OrderedReady", "Parallel"]},
    "io.k8s.api.apps.v1.StatefulSetUpdateStrategy": {"type": ["OnDelete", "RollingUpdate"]},
    "io.k8s.api.apps.v1.DaemonSetUpdateStrategy": {"type": ["OnDelete", "RollingUpdate"]},
    "io.k8s.api.batch.v1.JobSpec": {
        "completionMode": ["Indexed", "NonIndexed"],
        "podReplacementPolicy": ["Failed", "TerminatingOrFailed"],
    },
    "io.k8s.api.batch.v1.CronJobSpec": {"concurrencyPolicy": ["Allow", "Forbid", "Replace"]},
    "io.k8s.api.batch.v1.PodFailurePolicyRule": {"action": ["Count", "FailIndex", "FailJob", "Ignore"]},
    "io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement": {"operator": ["In", "NotIn"]},
    "io.k8s.api.networking.v1.HTTPIngressPath": {"pathType": ["Exact", "ImplementationSpecific", "Prefix"]},
}
# Fields whose description names only some values, or none (it points to the Go type or the docs).
ENUMS_NOT_ALL_DESCRIBED = {
    ("io.k8s.api.core.v1.PodStatus", "qosClass"),
    ("io.k8s.api.core.v1.HTTPGetAction", "scheme"),
    ("io.k8s.api.core.v1.SecurityContext", "procMount"),
    ("io.k8s.api.core.v1.VolumeMount", "mountPropagation"),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "volumeMode"),
    ("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "volumeMode"),
    ("io.k8s.api.core.v1.PersistentVolumeStatus", "phase"),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "phase"),
    ("io.k8s.api.core.v1.NamespaceStatus", "phase"),
    ("io.k8s.api.apps.v1.StatefulSetUpdateStrategy", "type"),
}

# Hand-written schemas for the types the client represents as plain Python values.
SCALAR_SCHEMAS: dict[str, dict[str, Any]] = {
    TIME: {
        "description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and "
        "JSON.  Wrappers are provided for many of the factory methods that the time package offers.",
        "type": "string",
        "format": "date-time",
    },
    MICRO_TIME: {
        "description": "MicroTime is version of Time with microsecond level precision.",
        "type": "string",
        "format": "date-time",
    },
    FIELDS_V1: {
        "description": "FieldsV1 stores a set of fields in a data structure like a Trie, in JSON format.",
        "type": "object",
    },
    PATCH: {
        "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
        "type": "object",
    },
    RAW_EXTENSION: {
        "description": "RawExtension is used to hold extensions in external versions.",
        "type": "object",
    },
    QUANTITY: {
        "description": "Quantity is a fixed-point representation of a number. It provides convenient "
        "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.\n\n"
        "The serialization format is:\n\n```\n<quantity>        ::= <signedNumber><suffix>\n```\n\n"
        "Examples: 100m (0.1 cpu), 128Mi, 1Gi, 2.",
        "oneOf": [{"type": "string"}, {"type": "number"}],
    },
    INT_OR_STRING: {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML "
        "marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to have, "
        "for example, a JSON field that can accept a name or number.",
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
    },
}

_CLASS_NAME = re.compile(
    r"^(?P<prefix>(?:[A-Z][a-z]+)*?)V(?P<version>\d+(?:(?:alpha|beta)\d+)?)(?P<kind>[A-Z]\w*)$"
)
_LIST = re.compile(r"^List\[(.+)\]$")
_DICT = re.compile(r"^Dict\[str, (.+)\]$")
_RESPONSE_TYPE = re.compile(r"'\d\d\d': \"(\w+List)\"")
# Kinds that are only created and answered, never listed (reviews, token requests): their
# modules return the kind itself.
_REVIEW_TYPE = re.compile(r"'\d\d\d': \"(\w+(?:Review|TokenRequest))\"")


def model(name: str) -> type[Any]:
    cls = getattr(client_models, name, None)
    if cls is None or not hasattr(cls, "openapi_types"):
        raise KeyError(name)
    return cls  # type: ignore[no-any-return]


def kubernetes_definitions() -> dict[str, dict[str, Any]]:
    """Kubernetes' own schema definitions for the client's release, from ``kubernetes-validate``.

    The client ``37.x`` is generated from Kubernetes 1.37; ``kubernetes-validate`` ships that
    release's definitions as ``kubernetes-json-schema/v1.37.0-local/_definitions.json``.  The
    package is located, not imported (importing it needs jsonschema, which reading does not).
    """
    release = f"v1.{kubernetes.__version__.split('.')[0]}.0"
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"gen_schemas: needs the kubernetes-validate package for Kubernetes {release}")
    path = Path(list(spec.submodule_search_locations)[0], "kubernetes-json-schema", f"{release}-local")
    definitions = path / "_definitions.json"
    if not definitions.is_file():
        raise SystemExit(f"gen_schemas: kubernetes-validate has no definitions for {release} ({path})")
    with definitions.open(encoding="utf-8") as f:
        loaded: dict[str, dict[str, Any]] = json.load(f)["$defs"]
    return loaded


def referenced_models(type_string: str) -> list[str]:
    """Model class names a client type string refers to (``List[V1Container]`` -> ``V1Container``)."""
    return [
        t for t in re.findall(r"[A-Za-z0-9]+", type_string) if hasattr(client_models, t) and t[0].isupper()
    ]


def group_roots() -> list[tuple[str, str, list[str]]]:
    """(package segment, version, kinds) per API module of the client: v1 modules first, core first.

    Each ``<group>_<version>_api`` module returns ``XList`` types for the kinds of its group; the
    kinds are those lists and their item types.
    """
    roots: list[tuple[str, str, list[str]]] = []
    for path in sorted(Path(client_api.__file__).parent.glob("*_v*_api.py")):
        match = re.match(r"^(?P<group>[a-z_]+?)_(?P<version>v\d+(?:(?:alpha|beta)\d+)?)_api\.py$", path.name)
        if not match or path.name.startswith("custom"):
            continue
        kinds: list[str] = []
        for list_name in sorted(set(_RESPONSE_TYPE.findall(path.read_text()))):
            items = model(list_name).openapi_types.get("items", "")
            kinds.extend([*referenced_models(items), list_name])
        kinds.extend(sorted(set(_REVIEW_TYPE.findall(path.read_text()))))
        roots.append((match["group"].split("_")[0], match["version"], kinds))
    roots.sort(key=lambda r: (r[1] != "v1", r[0] != "core", r[0], r[1]))
    return roots


def class_version(name: str) -> str:
    match = _CLASS_NAME.match(name)
    return f"v{match['version']}" if match else ""


def assign_packages() -> dict[str, str]:
    """Model class name -> Kubernetes package (``io.k8s.api.apps.v1``) by walking the type graph.

    A type belongs to the first group of its own version whose kinds reach it -- meta types first,
    then core, then the other groups -- unless it is listed in ``GROUP_OVERRIDES``.
    """
    owner: dict[str, str] = dict(GROUP_OVERRIDES)
    roots = [("meta", "v1", sorted(META_MODELS)), *group_roots()]
    # Second pass: a type no module of its own version reaches goes to the group that uses it.
    for segment, version, kinds in [*roots, *((s, "", k) for s, _, k in roots)]:
        queue = deque(kinds)
        seen: set[str] = set()
        while queue:
            name = queue.popleft()
            if name in seen:
                continue
            seen.add(name)
            if class_version(name) == version or not version:
                owner.setdefault(name, segment)
            for type_string in model(name).openapi_types.values():
                queue.extend(referenced_models(type_string))
    packages: dict[str, str] = {}
    for name, segment in owner.items():
        match = _CLASS_NAME.match(name)
        if not match:
            continue
        if segment == "meta":
            packages[name] = META
        else:
            packages[name] = f"io.k8s.api.{match['prefix'].lower() or segment}.v{match['version']}"
    return packages


def fix_packages(packages: dict[str, str], definitions: dict[str, Any]) -> None:
    """Move a type the graph walk placed in a package Kubernetes does not define it in to the one
    package of the same version that does (``batch.v1alpha3.WorkloadPodGroupSchedulingPolicy``,
    reached only from batch/v1, is ``scheduling.v1alpha3``'s)."""
    for name, package in packages.items():
        match = _CLASS_NAME.match(name)
        if match is None or f"{package}.{match['kind']}" in definitions:
            continue
        suffix = f".v{match['version']}.{match['kind']}"
        candidates = [d for d in definitions if d.endswith(suffix)]
        if len(candidates) > 1:
            # several groups define the kind: the one of the same group name (apiextensions' own
            # ServiceReference lives in io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1)
            group_version = package.removeprefix("io.k8s.api.")
            candidates = [
                d for d in candidates if d.removesuffix(f".{match['kind']}").endswith(group_version)
            ]
        if len(candidates) == 1:
            packages[name] = candidates[0].removesuffix(f".{match['kind']}")


def schema_name(name: str, packages: dict[str, str]) -> str:
    match = _CLASS_NAME.match(name)
    if not match or name not in packages:
        raise KeyError(f"no Kubernetes package known for {name}")
    return f"{packages[name]}.{match['kind']}"


def class_description(cls: type[Any]) -> str:
    doc = inspect.getdoc(cls) or ""
    text = doc.split("Attributes:")[0].strip()
    return re.sub(r"\s*\n\s*", " ", text) if "\n\n" not in text else text


def is_int_or_string(cls: type[Any], attr: str) -> bool:
    field = cls.model_fields.get(attr)
    if field is None:
        return False
    members = {x for a in get_args(field.annotation) for x in (a, *get_args(a))}
    return int in members and str in members


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


class Generator:
    def __init__(self, definitions: dict[str, dict[str, Any]]) -> None:
        self.definitions = definitions
        self.packages = assign_packages()
        fix_packages(self.packages, definitions)
        self.schemas: dict[str, dict[str, Any]] = {}
        self.pending: deque[str] = deque()
        self.used_scalars: set[str] = set()

    def type_schema(self, cls_name: str, attr: str, type_string: str) -> dict[str, Any]:
        """The schema of one field, following Kubernetes' conventions for each client type."""
        if m := _LIST.match(type_string):
            return {"type": "array", "items": self.type_schema(cls_name, attr, m[1])}
        if m := _DICT.match(type_string):
            return {"type": "object", "additionalProperties": self.type_schema(cls_name, attr, m[1])}
        if type_string == "str":
            if (cls_name, attr) in QUANTITY_FIELDS:
                return self.scalar(QUANTITY)
            return {"type": "string"}
        if type_string == "int":
            return {"type": "integer"}
        if type_string == "float":
            return {"type": "number", "format": "double"}
        if type_string == "bool":
            return {"type": "boolean"}
        if type_string == "bytes":
            return {"type": "string", "format": "byte"}
        if type_string == "date":
            return {"type": "string", "format": "date"}
        if type_string == "datetime":
            return self.scalar(MICRO_TIME if (cls_name, attr) in MICRO_TIME_FIELDS else TIME)
        if type_string == "object":
            if is_int_or_string(model(cls_name), attr):
                return self.scalar(INT_OR_STRING)
            if attr == "fields_v1":
                return self.scalar(FIELDS_V1)
            if cls_name == "V1WatchEvent":
                return self.scalar(RAW_EXTENSION)
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        self.pending.append(type_string)
        return ref(schema_name(type_string, self.packages))

    def scalar(self, name: str) -> dict[str, Any]:
        self.used_scalars.add(name)
        return ref(name)

    def model_schema(self, cls_name: str) -> dict[str, Any]:
        cls = model(cls_name)
        kubernetes_schema = self.definitions.get(schema_name(cls_name, self.packages), {})
        kubernetes_properties = kubernetes_schema.get("properties", {})
        properties: dict[str, Any] = {}
        required: list[str] = []
        for attr, type_string in cls.openapi_types.items():
            json_name = cls.attribute_map[attr]
            prop = self.type_schema(cls_name, attr, type_string)
            field = cls.model_fields.get(attr)
            # Kubernetes' own text first: the client has none for references and flattens paragraphs.
            description = kubernetes_properties.get(json_name, {}).get("description")
            description = description or (field.description if field is not None else None)
            if description:
                # Kubernetes wraps a described reference in allOf, so the description stays beside it.
                prop = (
                    {"allOf": [prop], "description": description}
                    if "$ref" in prop
                    else prop | {"description": description}
                )
            properties[json_name] = prop
            if field is not None and field.is_required():
                required.append(json_name)
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if description := kubernetes_schema.get("description") or class_description(cls):
            schema["description"] = description
        if required:
            schema["required"] = sorted(required)
        return schema

    def add(self, cls_name: str) -> None:
        self.pending.append(cls_name)
        while self.pending:
            name = self.pending.popleft()
            key = schema_name(name, self.packages)
            if key not in self.schemas:
                self.schemas[key] = self.model_schema(name)

    def set_gvk(self, cls_name: str, gvks: list[dict[str, str]]) -> None:
        key = schema_name(cls_name, self.packages)
        self.schemas[key]["x-kubernetes-group-version-kind"] = gvks

    def output(self) -> dict[str, Any]:
        result = dict(self.schemas)
        for name in self.used_scalars | {PATCH}:
            result[name] = SCALAR_SCHEMAS[name]
        add_enums(result)
        return result


def add_enums(schemas: dict[str, Any]) -> None:
    """Put ``ENUMS`` on their properties (on the items of a list of enum values)."""
    for name, fields in ENUMS.items():
        if name not in schemas:
            continue  # a type no served kind reaches
        for json_name, values in fields.items():
            prop = schemas[name]["properties"].get(json_name)
            if prop is None:
                raise SystemExit(f"gen_schemas: ENUMS names {name}.{json_name}, which has no such field")
            if (name, json_name) not in ENUMS_NOT_ALL_DESCRIBED:
                check_enum(f"{name}.{json_name}", prop.get("description", ""), values)
            target = prop["items"] if prop.get("type") == "array" else prop
            if target.get("type") != "string":
                raise SystemExit(f"gen_schemas: ENUMS names {name}.{json_name}, which is not a string")
            target["enum"] = values


def check_enum(where: str, description: str, values: list[str]) -> None:
    """Every enum value must appear in Kubernetes' description of the field: a typo or a value
    Kubernetes does not document stops the generator."""
    missing = [v for v in values if not re.search(rf"\b{re.escape(v)}\b", description)]
    if missing:
        raise SystemExit(f"gen_schemas: the description of {where} does not name {missing}")


def client_class(kind: str, group: str, version: str = "v1") -> str:
    """The client's class for a served kind (core Event is ``CoreV1Event``, events.k8s.io's is not served)."""
    if kind in ("Event", "EventList") and group == "":
        return f"CoreV1{kind}"
    if kind == "TokenRequest":  # storage.k8s.io has a TokenRequest too
        return "AuthenticationV1TokenRequest"
    return f"{version.capitalize()}{kind}"


def gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def generate() -> dict[str, Any]:
    gen = Generator(kubernetes_definitions())
    for info in (*RESOURCES, BINDING, TOKEN_REQUEST):
        # pseudo-kinds that are only created (bindings, reviews, token requests) have no list
        for kind in (info.kind, info.list_kind_name) if "list" in info.verbs else (info.kind,):
            name = client_class(kind, info.group, info.version)
            gen.add(name)
            gen.set_gvk(name, [gvk(info.group, info.version, kind)])
    served = [*group_versions(), ("autoscaling", "v1"), ("policy", "v1")]
    for name in ("V1DeleteOptions", "V1WatchEvent"):
        gen.add(name)
        kind = name.removeprefix("V1")
        gen.set_gvk(name, [gvk(g, v, kind) for g, v in sorted(set(served))])
    for name, group in (("V1Status", ""), ("V1Scale", "autoscaling"), ("V1Eviction", "policy")):
        gen.add(name)
        gen.set_gvk(name, [gvk(group, "v1", name.removeprefix("V1"))])
    gen.add("V1APIResourceList")
    return gen.output()


def main() -> None:
    schemas = generate()
    OUTPUT.write_text(json.dumps(schemas, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    sys.stderr.write(f"wrote {len(schemas)} schemas to {OUTPUT.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
