"""Validation of API objects, with Kubernetes' field paths, messages and cause types.

:func:`validate` runs on an already-defaulted object (see :mod:`apimachinery.defaults`) and returns a
list of ``details.causes`` entries; the API server turns a non-empty list into a 422 with
:func:`apimachinery.errors.invalid`.  Passing ``old`` adds the update rules (immutable fields).

Every message is built the way apimachinery's ``field.Error`` renders itself::

    spec.containers[0].image: Required value
    metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of ...
    spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"

The checks follow ``pkg/apis/*/validation`` in Kubernetes; what is left out is noted where it
matters (volume plugins beyond the common ones, dual-stack service IP rules, ephemeral containers).
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from apimachinery import errors
from apimachinery.quantity import parse_quantity
from apimachinery.resources import ResourceInfo
from apimachinery.selectors import (
    go_quote,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    max_len_error,
    pattern_errors,
    selector_from_dict,
)

__all__ = [
    "validate",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_dns1035_label",
    "is_qualified_name",
    "is_valid_label_value",
    "is_config_map_key",
    "is_env_var_name",
    "is_valid_port_name",
]

log = logging.getLogger(__name__)

Cause = dict[str, str]
Obj = dict[str, Any]

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
NOT_FOUND = "FieldValueNotFound"
TOO_LONG = "FieldValueTooLong"

FIELD_IMMUTABLE = "field is immutable"
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
MAX_SECRET_SIZE = 1024 * 1024

# ---------------------------------------------------------------------------------------------
# field.Error constructors
# ---------------------------------------------------------------------------------------------


def go_string_map(value: Any) -> str:
    """``%#v`` of a Go ``map[string]string`` (keys sorted, as Go prints maps)."""
    if value is None:
        return "map[string]string(nil)"
    items = ", ".join(f"{go_quote(str(k))}:{go_quote(str(v))}" for k, v in sorted(value.items()))
    return "map[string]string{" + items + "}"


def go_label_selector(sel: Any) -> str:
    """``%#v`` of a ``metav1.LabelSelector``, as in "spec.selector: Invalid value: v1.LabelSelector{...}"."""
    sel = sel if isinstance(sel, Mapping) else {}
    exprs = sel.get("matchExpressions")
    if exprs:
        parts = []
        for e in exprs:
            e = e if isinstance(e, Mapping) else {}
            values = e.get("values")
            vals = (
                "[]string(nil)"
                if values is None
                else "[]string{" + ", ".join(go_quote(str(v)) for v in values) + "}"
            )
            parts.append(
                f"v1.LabelSelectorRequirement{{Key:{go_quote(str(e.get('key', '')))}, "
                f"Operator:{go_quote(str(e.get('operator', '')))}, Values:{vals}}}"
            )
        expr_text = "[]v1.LabelSelectorRequirement{" + ", ".join(parts) + "}"
    else:
        expr_text = "[]v1.LabelSelectorRequirement(nil)"
    return f"v1.LabelSelector{{MatchLabels:{go_string_map(sel.get('matchLabels'))}, MatchExpressions:{expr_text}}}"


class _Shown:
    """A value already rendered for a message (Go's Stringer case)."""

    def __init__(self, text: str) -> None:
        self.text = text


def _fmt(value: Any) -> str:
    if isinstance(value, _Shown):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(go_quote(v) for v in value) + "}"
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def required(path: str, detail: str = "") -> Cause:
    return errors.cause(path, "Required value" + (f": {detail}" if detail else ""), REQUIRED)


def invalid(path: str, value: Any, detail: str = "") -> Cause:
    return errors.cause(path, f"Invalid value: {_fmt(value)}" + (f": {detail}" if detail else ""), INVALID)


def not_supported(path: str, value: Any, valid: list[str]) -> Cause:
    msg = f"Unsupported value: {_fmt(value)}"
    if valid:
        msg += ": supported values: " + ", ".join(go_quote(v) for v in valid)
    return errors.cause(path, msg, NOT_SUPPORTED)


def _required_valid(value: Any, path: str, check: Callable[[Any], list[str]]) -> list[Cause]:
    """Required when empty, else what ``check`` finds wrong with it, as invalid values."""
    if not value:
        return [required(path)]
    return [invalid(path, value, m) for m in check(value)]


def _required_choice(value: Any, path: str, supported: list[str]) -> list[Cause]:
    """Required when empty, else one of ``supported``."""
    if not value:
        return [required(path)]
    return [] if value in supported else [not_supported(path, value, supported)]


def duplicate(path: str, value: Any, detail: str = "") -> Cause:
    return errors.cause(
        path, f"Duplicate value: {_fmt(value)}" + (f": {detail}" if detail else ""), DUPLICATE
    )


def forbidden(path: str, detail: str) -> Cause:
    return errors.cause(path, f"Forbidden: {detail}", FORBIDDEN)


def not_found(path: str, value: Any) -> Cause:
    return errors.cause(path, f"Not found: {_fmt(value)}", NOT_FOUND)


def too_long(path: str, max_length: int) -> Cause:
    unit = "byte" if max_length == 1 else "bytes"
    return errors.cause(path, f"Too long: may not be more than {max_length} {unit}", TOO_LONG)


def immutable(path: str, new: Any, old: Any) -> list[Cause]:
    """``ValidateImmutableField``: an Invalid cause when ``new`` differs from ``old``."""
    if _semantic_equal(new, old):
        return []
    return [invalid(path, new, FIELD_IMMUTABLE)]


def _semantic_equal(a: Any, b: Any) -> bool:
    """Equality that treats missing, null and empty collections alike (as Go's zero values)."""
    return _normalize(a) == _normalize(b)


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _normalize(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [], "")}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Name and value syntax
# ---------------------------------------------------------------------------------------------

_DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_RE = re.compile(f"^{_DNS1035_FMT}$")
_DNS1035_ERR = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character"
)
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_RE = re.compile(f"^{_CONFIG_KEY_FMT}$")
_CONFIG_KEY_ERR = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_ENV_NAME_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV_NAME_RE = re.compile(f"^{_ENV_NAME_FMT}$")
_ENV_NAME_ERR = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or "
    "'.', and must not start with a digit"
)
_PORT_NAME_CHARSET = re.compile(r"^[-a-z0-9]+$")
_PERCENT_RE = re.compile(r"^[0-9]+%$")


def is_dns1035_label(value: str) -> list[str]:
    """Errors for a DNS-1035 label (Service names): must start with a letter."""
    return pattern_errors(value, 63, _DNS1035_RE, _DNS1035_ERR, _DNS1035_FMT, "my-name", "abc-123")


def _ch_dir_prefix(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


def is_config_map_key(value: str) -> list[str]:
    """Errors for a ConfigMap or Secret data key."""
    examples = ("key.name", "KEY_NAME", "key-name")
    return pattern_errors(
        value, 253, _CONFIG_KEY_RE, _CONFIG_KEY_ERR, _CONFIG_KEY_FMT, *examples
    ) + _ch_dir_prefix(value)


def is_env_var_name(value: str) -> list[str]:
    examples = ("my.env-name", "MY_ENV.NAME", "MyEnvName1")
    return pattern_errors(
        value, None, _ENV_NAME_RE, _ENV_NAME_ERR, _ENV_NAME_FMT, *examples
    ) + _ch_dir_prefix(value)


def is_valid_port_name(port: str) -> list[str]:
    """Errors for a named port (an IANA_SVC_NAME: at most 15 characters, a letter, no ``--``)."""
    errs: list[str] = []
    if len(port) > 15:
        errs.append(max_len_error(15))
    if not _PORT_NAME_CHARSET.match(port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_port_num(port: Any) -> list[str]:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        return ["must be between 1 and 65535, inclusive"]
    return []


def is_valid_path_segment_name(name: str) -> list[str]:
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return "/" in value


def _mask_trailing_dash(name: str) -> str:
    """generateName prefixes may end in '-'; Kubernetes validates them as if it were a letter."""
    return name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _d(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dl(value: Any) -> list[Obj]:
    return [v if isinstance(v, dict) else {} for v in _l(value)]


def _items(value: Any, path: str) -> list[tuple[str, Obj]]:
    """The dict items of a list field with their paths (``path[0]``, ``path[1]``, ...)."""
    return [(f"{path}[{i}]", item) for i, item in enumerate(_dl(value))]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _nonnegative(value: Any, path: str) -> list[Cause]:
    n = _int(value)
    if n is not None and n < 0:
        return [invalid(path, n, "must be greater than or equal to 0")]
    return []


def _dns_label(value: str, path: str) -> list[Cause]:
    return [invalid(path, value, m) for m in is_dns1123_label(value)]


def _dns_subdomain(value: str, path: str) -> list[Cause]:
    return [invalid(path, value, m) for m in is_dns1123_subdomain(value)]


# ---------------------------------------------------------------------------------------------
# ObjectMeta
# ---------------------------------------------------------------------------------------------

NameValidator = Callable[[str], list[str]]

_NAME_VALIDATORS: dict[str, NameValidator] = {
    "Namespace": is_dns1123_label,
    "Service": is_dns1035_label,
    "PersistentVolume": is_valid_path_segment_name,
    "PersistentVolumeClaim": is_valid_path_segment_name,
    # RBAC names are path segments ("system:node", "system:controller:job")
    "Role": is_valid_path_segment_name,
    "ClusterRole": is_valid_path_segment_name,
    "RoleBinding": is_valid_path_segment_name,
    "ClusterRoleBinding": is_valid_path_segment_name,
}


def validate_labels(labels: Any, path: str) -> list[Cause]:
    """``ValidateLabels``: qualified-name keys and label-syntax values, reported on the map's path."""
    errs: list[Cause] = []
    for key, value in sorted(_d(labels).items()):
        errs.extend(invalid(path, key, m) for m in is_qualified_name(str(key)))
        if not isinstance(value, str):
            errs.append(invalid(path, value, "must be a string"))
            continue
        errs.extend(invalid(path, value, m) for m in is_valid_label_value(value))
    return errs


def validate_annotations(annotations: Any, path: str) -> list[Cause]:
    errs: list[Cause] = []
    total = 0
    for key, value in sorted(_d(annotations).items()):
        errs.extend(invalid(path, key, m) for m in is_qualified_name(str(key).lower()))
        total += len(str(key)) + len(str(value))
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def validate_label_selector(sel: Any, path: str) -> list[Cause]:
    """``ValidateLabelSelector`` for a ``metav1.LabelSelector``."""
    if sel is None:
        return []
    sel = _d(sel)
    errs = validate_labels(sel.get("matchLabels"), f"{path}.matchLabels")
    for i, expr in enumerate(_dl(sel.get("matchExpressions"))):
        p = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator")
        values = _l(expr.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                errs.append(required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(
                    forbidden(
                        f"{p}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                    )
                )
        else:
            errs.append(
                invalid(f"{p}.operator", op if op is not None else "", "not a valid selector operator")
            )
        key = str(expr.get("key") or "")
        errs.extend(invalid(f"{p}.key", key, m) for m in is_qualified_name(key))
        for j, value in enumerate(values):
            errs.extend(invalid(f"{p}.values[{j}]", value, m) for m in is_valid_label_value(str(value)))
    return errs


def _validate_owner_references(refs: Any, path: str) -> list[Cause]:
    errs: list[Cause] = []
    controllers: list[str] = []
    for ref in _dl(refs):
        p = path  # Kubernetes reports these on the list's path, not per index
        api_version = str(ref.get("apiVersion") or "")
        if not api_version.rpartition("/")[2]:
            errs.append(invalid(f"{p}.apiVersion", api_version, "version must not be empty"))
        if not ref.get("kind"):
            errs.append(invalid(f"{p}.kind", ref.get("kind") or "", "kind must not be empty"))
        if not ref.get("name"):
            errs.append(invalid(f"{p}.name", ref.get("name") or "", "name must not be empty"))
        if not ref.get("uid"):
            errs.append(invalid(f"{p}.uid", ref.get("uid") or "", "uid must not be empty"))
        if ref.get("controller") is True:
            controllers.append(f"{ref.get('kind')}/{ref.get('name')}")
    if len(controllers) > 1:
        errs.append(
            invalid(
                path,
                refs,
                'Only one reference can have Controller set to true. Found "true" in references for '
                + " and ".join(controllers),
            )
        )
    return errs


def validate_object_meta(info: ResourceInfo, meta: Any) -> list[Cause]:
    """``ValidateObjectMeta``: name syntax for the kind, namespace presence, labels, annotations."""
    meta = _d(meta)
    errs: list[Cause] = []
    name_fn = _NAME_VALIDATORS.get(info.kind, is_dns1123_subdomain)
    name = meta.get("name")
    generate_name = meta.get("generateName")
    if isinstance(generate_name, str) and generate_name:
        errs.extend(
            invalid("metadata.generateName", generate_name, m)
            for m in name_fn(_mask_trailing_dash(generate_name))
        )
    if not name:
        if not generate_name:
            errs.append(required("metadata.name", "name or generateName is required"))
    elif not isinstance(name, str):
        errs.append(invalid("metadata.name", name, "must be a string"))
    else:
        errs.extend(invalid("metadata.name", name, m) for m in name_fn(name))
    namespace = meta.get("namespace")
    if info.namespaced:
        errs += _required_valid(namespace, "metadata.namespace", lambda name: is_dns1123_label(str(name)))
    elif namespace:
        errs.append(forbidden("metadata.namespace", "not allowed on this type"))
    errs.extend(_nonnegative(meta.get("generation"), "metadata.generation"))
    errs.extend(validate_labels(meta.get("labels"), "metadata.labels"))
    errs.extend(validate_annotations(meta.get("annotations"), "metadata.annotations"))
    errs.extend(_validate_owner_references(meta.get("ownerReferences"), "metadata.ownerReferences"))
    for finalizer in _l(meta.get("finalizers")):
        f = str(finalizer)
        errs.extend(invalid("metadata.finalizers", f, m) for m in is_qualified_name(f))
    return errs


def validate_object_meta_update(new: Any, old: Any) -> list[Cause]:
    """``ValidateObjectMetaUpdate``: identity fields never change; no finalizers while deleting."""
    new, old = _d(new), _d(old)
    errs: list[Cause] = []
    for key in ("name", "namespace", "uid", "creationTimestamp"):
        if key in ("uid", "creationTimestamp") and not new.get(key):
            continue  # the server carries these over when a client leaves them out
        errs.extend(immutable(f"metadata.{key}", new.get(key) or "", old.get(key) or ""))
    if old.get("deletionTimestamp"):
        added = [f for f in _l(new.get("finalizers")) if f not in _l(old.get("finalizers"))]
        if added:
            errs.append(
                forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted, found new finalizers "
                    + "[]string{"
                    + ", ".join(go_quote(str(f)) for f in sorted(added))
                    + "}",
                )
            )
    return errs


# ---------------------------------------------------------------------------------------------
# Pod spec
# ---------------------------------------------------------------------------------------------

VOLUME_SOURCES = (
    "hostPath",
    "emptyDir",
    "secret",
    "nfs",
    "iscsi",
    "persistentVolumeClaim",
    "downwardAPI",
    "configMap",
    "projected",
    "csi",
    "ephemeral",
    "image",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
)
_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
_RESTART_POLICIES = ["Always", "OnFailure", "Never"]
_DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
_TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
_ENV_FIELD_PATHS = [
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
]
_STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}


def _validate_mode(mode: Any, path: str) -> list[Cause]:
    if mode is None:
        return []
    n = _int(mode)
    if n is None or not 0 <= n <= 0o777:
        return [invalid(path, mode, "must be a number between 0 and 0777 (octal), both inclusive")]
    return []


def _exactly_one(obj: Obj, keys: Sequence[str], path: str, what: str) -> tuple[str | None, list[Cause]]:
    """The first of ``keys`` that ``obj`` sets (None when none is), and the errors: none set is
    required, more than one forbidden."""
    present = [k for k in keys if obj.get(k) is not None]
    if not present:
        return None, [required(path, f"must specify a {what} type")]
    return present[0], [
        forbidden(f"{path}.{k}", f"may not specify more than 1 {what} type") for k in present[1:]
    ]


def _validate_volume_source(volume: Obj, path: str) -> list[Cause]:
    src, errs = _exactly_one(volume, VOLUME_SOURCES, path, "volume")
    if src is None:
        return errs
    body = _d(volume.get(src))
    p = f"{path}.{src}"
    if src == "hostPath":
        if not body.get("path"):
            errs.append(required(f"{p}.path"))
        types = [
            "",
            "BlockDevice",
            "CharDevice",
            "Directory",
            "DirectoryOrCreate",
            "File",
            "FileOrCreate",
            "Socket",
        ]
        if body.get("type") not in (None, *types):
            errs.append(not_supported(f"{p}.type", body.get("type"), types))
    elif src == "configMap":
        if not body.get("name"):
            errs.append(required(f"{p}.name"))
        errs.extend(_validate_mode(body.get("defaultMode"), f"{p}.defaultMode"))
        errs.extend(_validate_key_to_paths(body.get("items"), f"{p}.items"))
    elif src == "secret":
        if not body.get("secretName"):
            errs.append(required(f"{p}.secretName"))
        errs.extend(_validate_mode(body.get("defaultMode"), f"{p}.defaultMode"))
        errs.extend(_validate_key_to_paths(body.get("items"), f"{p}.items"))
    elif src == "persistentVolumeClaim":
        if not body.get("claimName"):
            errs.append(required(f"{p}.claimName"))
    elif src == "emptyDir":
        medium = body.get("medium", "")
        if medium not in ("", "Memory", "HugePages") and not str(medium).startswith("HugePages-"):
            errs.append(not_supported(f"{p}.medium", medium, ["", "Memory", "HugePages"]))
        if body.get("sizeLimit") is not None:
            errs.extend(_validate_quantity(body.get("sizeLimit"), f"{p}.sizeLimit"))
    elif src == "nfs":
        if not body.get("server"):
            errs.append(required(f"{p}.server"))
        if not body.get("path"):
            errs.append(required(f"{p}.path"))
        elif not str(body["path"]).startswith("/"):
            errs.append(invalid(f"{p}.path", body["path"], "must be an absolute path"))
    elif src in ("downwardAPI", "projected"):
        errs.extend(_validate_mode(body.get("defaultMode"), f"{p}.defaultMode"))
    return errs


def _validate_key_to_paths(items: Any, path: str) -> list[Cause]:
    errs: list[Cause] = []
    for p, item in _items(items, path):
        if not item.get("key"):
            errs.append(required(f"{p}.key"))
        target = item.get("path")
        if not target:
            errs.append(required(f"{p}.path"))
        else:
            errs.extend(_local_descending_path(str(target), f"{p}.path"))
        errs.extend(_validate_mode(item.get("mode"), f"{p}.mode"))
    return errs


def _local_descending_path(target: str, path: str) -> list[Cause]:
    errs: list[Cause] = []
    if target.startswith("/"):
        errs.append(invalid(path, target, "must be a relative path"))
    if ".." in target.replace("\\", "/").split("/"):
        errs.append(invalid(path, target, "must not contain '..'"))
    return errs


def _validate_volumes(volumes: Any, path: str) -> tuple[set[str], list[Cause]]:
    errs: list[Cause] = []
    names: set[str] = set()
    for p, volume in _items(volumes, path):
        errs.extend(_validate_volume_source(volume, p))
        name = str(volume.get("name") or "")
        errs += _required_valid(name, f"{p}.name", is_dns1123_label)
        if name in names:
            errs.append(duplicate(f"{p}.name", name))
        elif name:
            names.add(name)
    return names, errs


def _validate_quantity(value: Any, path: str) -> list[Cause]:
    try:
        q = parse_quantity(str(value))
    except ValueError as exc:
        return [invalid(path, str(value), str(exc))]
    if q < 0:
        return [invalid(path, str(value), "must be greater than or equal to 0")]
    return []


def _validate_resources(resources: Any, path: str) -> list[Cause]:
    """``ValidateResourceRequirements``: names, quantities, and requests <= limits."""
    errs: list[Cause] = []
    resources = _d(resources)
    limits, requests = _d(resources.get("limits")), _d(resources.get("requests"))
    parsed_limits: dict[str, Decimal] = {}
    for kind_path, table in (("limits", limits), ("requests", requests)):
        for name, value in sorted(table.items()):
            p = f"{path}.{kind_path}[{name}]"
            if name not in _STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
                if "/" not in name:
                    errs.append(invalid(p, name, "must be a standard resource for containers"))
                else:
                    errs.extend(invalid(p, name, m) for m in is_qualified_name(name))
            q_errs = _validate_quantity(value, p)
            errs.extend(q_errs)
            if q_errs:
                continue
            q = parse_quantity(str(value))
            if kind_path == "limits":
                parsed_limits[name] = q
            elif name in parsed_limits and q > parsed_limits[name]:
                errs.append(
                    invalid(
                        f"{path}.requests",
                        str(value),
                        f"must be less than or equal to {name} limit of {limits[name]}",
                    )
                )
    return errs


def _validate_port_num_or_name(port: Any, path: str) -> list[Cause]:
    if isinstance(port, str):
        if not port:
            return [required(path)]
        if port.isdigit():
            return [invalid(path, int(port), m) for m in is_valid_port_num(int(port))]
        return [invalid(path, port, m) for m in is_valid_port_name(port)]
    if port is None:
        return [required(path)]
    return [invalid(path, port, m) for m in is_valid_port_num(port)]


def _validate_handler(handler: Obj, path: str, kinds: tuple[str, ...]) -> list[Cause]:
    kind, errs = _exactly_one(handler, kinds, path, "handler")
    if kind is None:
        return errs
    body = _d(handler.get(kind))
    if kind == "exec":
        if not _l(body.get("command")):
            errs.append(required(f"{path}.exec.command"))
    elif kind in ("httpGet", "tcpSocket"):
        errs.extend(_validate_port_num_or_name(body.get("port"), f"{path}.{kind}.port"))
        if kind == "httpGet" and body.get("scheme") not in (None, "HTTP", "HTTPS"):
            errs.append(not_supported(f"{path}.httpGet.scheme", body.get("scheme"), ["HTTP", "HTTPS"]))
    elif kind == "grpc":
        errs.extend(
            invalid(f"{path}.grpc.port", body.get("port"), m) for m in is_valid_port_num(body.get("port"))
        )
    return errs


def _validate_probe(probe: Any, path: str, *, must_succeed_once: bool) -> list[Cause]:
    if probe is None:
        return []
    probe = _d(probe)
    errs = _validate_handler(probe, path, ("exec", "httpGet", "tcpSocket", "grpc"))
    for key in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        errs.extend(_nonnegative(probe.get(key), f"{path}.{key}"))
    if must_succeed_once and probe.get("successThreshold") not in (None, 1):
        errs.append(invalid(f"{path}.successThreshold", probe.get("successThreshold"), "must be 1"))
    return errs


def _validate_env(env: Any, path: str) -> list[Cause]:
    errs: list[Cause] = []
    for p, var in _items(env, path):
        name = str(var.get("name") or "")
        errs += _required_valid(name, f"{p}.name", is_env_var_name)
        value_from = var.get("valueFrom")
        if value_from is None:
            continue
        vf = _d(value_from)
        vp = f"{p}.valueFrom"
        sources = [
            k
            for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
            if vf.get(k) is not None
        ]
        if var.get("value"):
            errs.append(invalid(vp, "", "may not be specified when `value` is not empty"))
        if not sources:
            errs.append(
                invalid(
                    vp,
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                )
            )
            continue
        if len(sources) > 1:
            errs.append(invalid(vp, "", "may not have more than one field specified at a time"))
            continue
        src = sources[0]
        body = _d(vf.get(src))
        if src == "fieldRef":
            if not body.get("apiVersion"):
                errs.append(required(f"{vp}.fieldRef.apiVersion"))
            field_path = str(body.get("fieldPath") or "")
            if not field_path:
                errs.append(required(f"{vp}.fieldRef.fieldPath"))
            elif not _supported_env_field(field_path):
                errs.append(not_supported(f"{vp}.fieldRef.fieldPath", field_path, _ENV_FIELD_PATHS))
        elif src == "resourceFieldRef":
            if not body.get("resource"):
                errs.append(required(f"{vp}.resourceFieldRef.resource"))
        else:
            if not body.get("name"):
                errs.append(required(f"{vp}.{src}.name"))
            key = str(body.get("key") or "")
            errs += _required_valid(key, f"{vp}.{src}.key", is_config_map_key)
    return errs


def _supported_env_field(field_path: str) -> bool:
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", field_path)
    if m:
        return True
    return field_path in _ENV_FIELD_PATHS and field_path not in ("metadata.labels", "metadata.annotations")


def _validate_volume_mounts(mounts: Any, volumes: set[str], path: str) -> list[Cause]:
    errs: list[Cause] = []
    seen: set[str] = set()
    for p, mount in _items(mounts, path):
        name = str(mount.get("name") or "")
        if not name:
            errs.append(required(f"{p}.name"))
        elif name not in volumes:
            errs.append(not_found(f"{p}.name", name))
        mount_path = str(mount.get("mountPath") or "")
        if not mount_path:
            errs.append(required(f"{p}.mountPath"))
        elif mount_path in seen:
            errs.append(invalid(f"{p}.mountPath", mount_path, "must be unique"))
        seen.add(mount_path)
        sub_path = mount.get("subPath")
        if sub_path:
            errs.extend(_local_descending_path(str(sub_path), f"{p}.subPath"))
    return errs


def _validate_container_ports(ports: Any, path: str) -> list[Cause]:
    errs: list[Cause] = []
    names: set[str] = set()
    for p, port in _items(ports, path):
        name = port.get("name")
        if name:
            msgs = is_valid_port_name(str(name))
            if msgs:
                errs.extend(invalid(f"{p}.name", name, m) for m in msgs)
            elif name in names:
                errs.append(duplicate(f"{p}.name", name))
            else:
                names.add(str(name))
        container_port = port.get("containerPort")
        errs += _required_valid(container_port, f"{p}.containerPort", is_valid_port_num)
        if port.get("hostPort"):
            errs.extend(
                invalid(f"{p}.hostPort", port["hostPort"], m) for m in is_valid_port_num(port["hostPort"])
            )
        protocol = port.get("protocol")
        errs += _required_choice(protocol, f"{p}.protocol", _PROTOCOLS)
    return errs


def _validate_container(
    ctr: Obj, path: str, volumes: set[str], *, init: bool, restart_policy: Any
) -> list[Cause]:
    errs: list[Cause] = []
    image = ctr.get("image")
    if not image:
        errs.append(required(f"{path}.image"))
    elif isinstance(image, str) and image != image.strip():
        errs.append(invalid(f"{path}.image", image, "must not have leading or trailing whitespace"))
    sidecar = init and ctr.get("restartPolicy") == "Always"
    if init and ctr.get("restartPolicy") not in (None, "Always"):
        errs.append(not_supported(f"{path}.restartPolicy", ctr.get("restartPolicy"), ["Always"]))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if ctr.get(probe) is None:
            continue
        if init and not sidecar:
            errs.append(
                forbidden(
                    f"{path}.{probe}", "may not be set for init containers without restartPolicy=Always"
                )
            )
            continue
        errs.extend(
            _validate_probe(ctr.get(probe), f"{path}.{probe}", must_succeed_once=(probe != "readinessProbe"))
        )
    lifecycle = _d(ctr.get("lifecycle"))
    for hook in ("postStart", "preStop"):
        if lifecycle.get(hook) is not None:
            errs.extend(
                _validate_handler(
                    _d(lifecycle[hook]), f"{path}.lifecycle.{hook}", ("exec", "httpGet", "tcpSocket", "sleep")
                )
            )
    errs.extend(_validate_container_ports(ctr.get("ports"), f"{path}.ports"))
    errs.extend(_validate_env(ctr.get("env"), f"{path}.env"))
    errs.extend(_validate_volume_mounts(ctr.get("volumeMounts"), volumes, f"{path}.volumeMounts"))
    errs.extend(_validate_resources(ctr.get("resources"), f"{path}.resources"))
    policy = ctr.get("imagePullPolicy")
    errs += _required_choice(policy, f"{path}.imagePullPolicy", _PULL_POLICIES)
    message_policy = ctr.get("terminationMessagePolicy")
    if not message_policy:
        errs.append(required(f"{path}.terminationMessagePolicy", "must be 'File' or 'FallbackToLogsOnError'"))
    elif message_policy not in ("File", "FallbackToLogsOnError"):
        errs.append(
            invalid(
                f"{path}.terminationMessagePolicy",
                message_policy,
                "must be 'File' or 'FallbackToLogsOnError'",
            )
        )
    return errs


def _validate_containers(
    containers: Any, path: str, volumes: set[str], names: set[str], *, init: bool, restart_policy: Any
) -> list[Cause]:
    errs: list[Cause] = []
    for p, ctr in _items(containers, path):
        name = str(ctr.get("name") or "")
        errs += _required_valid(name, f"{p}.name", is_dns1123_label)
        if name and name in names:
            errs.append(duplicate(f"{p}.name", name))
        elif name:
            names.add(name)
        errs.extend(_validate_container(ctr, p, volumes, init=init, restart_policy=restart_policy))
    return errs


def _validate_tolerations(tolerations: Any, path: str) -> list[Cause]:
    errs: list[Cause] = []
    for p, tol in _items(tolerations, path):
        key = str(tol.get("key") or "")
        operator = tol.get("operator") or ""
        if key:
            errs.extend(invalid(f"{p}.key", key, m) for m in is_qualified_name(key))
        if not key and operator != "Exists":
            errs.append(
                invalid(
                    f"{p}.operator",
                    operator,
                    'operator must be Exists when `key` is empty, which means "match all values and all keys"',
                )
            )
        if tol.get("tolerationSeconds") is not None and tol.get("effect") != "NoExecute":
            errs.append(
                invalid(
                    f"{p}.effect",
                    tol.get("effect") or "",
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                )
            )
        value = str(tol.get("value") or "")
        if operator in ("Equal", ""):
            errs.extend(invalid(f"{p}.operator", value, m) for m in is_valid_label_value(value))
        elif operator == "Exists":
            if value:
                errs.append(invalid(f"{p}.operator", tol, "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(not_supported(f"{p}.operator", operator, ["Equal", "Exists"]))
        effect = tol.get("effect")
        if effect and effect not in _TAINT_EFFECTS:
            errs.append(not_supported(f"{p}.effect", effect, _TAINT_EFFECTS))
    return errs


def validate_pod_spec(spec: Any, path: str = "spec") -> list[Cause]:
    """``ValidatePodSpec`` (the parts minik implements) with field paths under ``path``."""
    spec = _d(spec)
    errs: list[Cause] = []
    volumes, volume_errs = _validate_volumes(spec.get("volumes"), f"{path}.volumes")
    errs.extend(volume_errs)
    restart_policy = spec.get("restartPolicy")
    names: set[str] = set()
    if not _l(spec.get("containers")):
        errs.append(required(f"{path}.containers"))
    else:
        errs.extend(
            _validate_containers(
                spec.get("containers"),
                f"{path}.containers",
                volumes,
                names,
                init=False,
                restart_policy=restart_policy,
            )
        )
    errs.extend(
        _validate_containers(
            spec.get("initContainers"),
            f"{path}.initContainers",
            volumes,
            names,
            init=True,
            restart_policy=restart_policy,
        )
    )
    errs += _required_choice(restart_policy, f"{path}.restartPolicy", _RESTART_POLICIES)
    dns_policy = spec.get("dnsPolicy")
    errs += _required_choice(dns_policy, f"{path}.dnsPolicy", _DNS_POLICIES)
    if dns_policy == "None" and not _d(spec.get("dnsConfig")).get("nameservers"):
        errs.append(required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    errs.extend(validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector"))
    for key in ("serviceAccountName", "nodeName", "priorityClassName"):
        if spec.get(key):
            errs.extend(_dns_subdomain(str(spec[key]), f"{path}.{key}"))
    for key in ("hostname", "subdomain"):
        if spec.get(key):
            errs.extend(_dns_label(str(spec[key]), f"{path}.{key}"))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None:
        n = _int(deadline)
        if n is None or not 1 <= n <= 2147483647:
            errs.append(
                invalid(
                    f"{path}.activeDeadlineSeconds", deadline, "must be between 1 and 2147483647, inclusive"
                )
            )
    errs.extend(_validate_tolerations(spec.get("tolerations"), f"{path}.tolerations"))
    if spec.get("hostNetwork"):
        for key in ("containers", "initContainers"):
            for i, ctr in enumerate(_dl(spec.get(key))):
                for j, port in enumerate(_dl(ctr.get("ports"))):
                    if port.get("hostPort") not in (None, 0, port.get("containerPort")):
                        errs.append(
                            invalid(
                                f"{path}.{key}[{i}].ports[{j}].hostPort",
                                port.get("hostPort"),
                                "must match `containerPort` when `hostNetwork` is true",
                            )
                        )
    return errs


def validate_pod_template(template: Any, path: str) -> list[Cause]:
    """``ValidatePodTemplateSpec``: template labels and annotations, then the pod spec."""
    template = _d(template)
    meta = _d(template.get("metadata"))
    errs = validate_labels(meta.get("labels"), f"{path}.metadata.labels")
    errs.extend(validate_annotations(meta.get("annotations"), f"{path}.metadata.annotations"))
    errs.extend(validate_pod_spec(template.get("spec"), f"{path}.spec"))
    return errs


# ---------------------------------------------------------------------------------------------
# Kinds
# ---------------------------------------------------------------------------------------------


def _validate_pod(obj: Obj) -> list[Cause]:
    return validate_pod_spec(obj.get("spec"), "spec")


_POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def _validate_pod_update(obj: Obj, old: Obj) -> list[Cause]:
    """Pods are immutable but for images, the active deadline, added tolerations and removed
    scheduling gates (``ValidatePodUpdate``)."""
    errs: list[Cause] = []
    new_spec, old_spec = _d(obj.get("spec")), _d(old.get("spec"))
    old_deadline, new_deadline = old_spec.get("activeDeadlineSeconds"), new_spec.get("activeDeadlineSeconds")
    if old_deadline is not None:
        if new_deadline is None:
            errs.append(
                invalid(
                    "spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value"
                )
            )
        elif isinstance(new_deadline, int) and new_deadline > old_deadline:
            errs.append(
                invalid(
                    "spec.activeDeadlineSeconds", new_deadline, "must be less than or equal to previous value"
                )
            )
    old_tolerations = _l(old_spec.get("tolerations"))
    new_tolerations = _l(new_spec.get("tolerations"))
    missing = [t for t in old_tolerations if t not in new_tolerations]
    if missing:
        errs.append(
            forbidden(
                "spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"
            )
        )
    old_gates = _l(old_spec.get("schedulingGates"))
    new_gates = _l(new_spec.get("schedulingGates"))
    if any(g not in old_gates for g in new_gates):
        errs.append(
            forbidden("spec.schedulingGates", "only deletion is allowed, but found new scheduling gate")
        )
    # Munge the mutable fields of the new spec back to the old values and compare the rest.
    munged = copy.deepcopy(new_spec)
    for key in ("containers", "initContainers"):
        new_list, old_list = _l(munged.get(key)), _l(old_spec.get(key))
        if len(new_list) == len(old_list):
            for ctr, old_ctr in zip(new_list, old_list, strict=True):
                if isinstance(ctr, dict) and isinstance(old_ctr, dict):
                    ctr["image"] = old_ctr.get("image")
                    if "image" not in old_ctr:
                        del ctr["image"]
    for key in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        if key in old_spec:
            munged[key] = old_spec[key]
        else:
            munged.pop(key, None)
    grace_old, grace_new = (
        old_spec.get("terminationGracePeriodSeconds"),
        munged.get("terminationGracePeriodSeconds"),
    )
    if isinstance(grace_old, int) and grace_old < 0 and grace_new == 1:
        munged["terminationGracePeriodSeconds"] = grace_old
    if not _semantic_equal(munged, old_spec):
        errs.append(forbidden("spec", _POD_UPDATE_FORBIDDEN))
    return errs


def _validate_selector_and_template(spec: Obj, kind_word: str | None, *, restart_always: bool) -> list[Cause]:
    """Selector present, non-empty and valid; template labels matched; the template validated.

    As in Kubernetes, a missing selector matches nothing, so it is reported twice: as required
    and as not matching the template's labels.  ``kind_word`` None allows an empty selector.
    """
    errs: list[Cause] = []
    selector = spec.get("selector")
    check_match = True
    if selector is None:
        errs.append(required("spec.selector"))
    else:
        sel_errs = validate_label_selector(selector, "spec.selector")
        errs.extend(sel_errs)
        sel = _d(selector)
        if not sel.get("matchLabels") and not sel.get("matchExpressions"):
            if kind_word is not None:
                errs.append(
                    invalid(
                        "spec.selector",
                        _Shown(go_label_selector(sel)),
                        f"empty selector is invalid for {kind_word}",
                    )
                )
            check_match = False  # an empty selector matches everything
        elif sel_errs:
            check_match = False
    template = spec.get("template")
    if template is None:
        errs.append(required("spec.template"))
        return errs
    template = _d(template)
    template_labels = _d(template.get("metadata")).get("labels")
    if check_match:
        try:
            matches = selector_from_dict(selector).matches(_d(template_labels))
        except errors.StatusError:
            matches = True  # already reported by validate_label_selector
        if not matches:
            errs.append(
                invalid(
                    "spec.template.metadata.labels",
                    _Shown(go_string_map(template_labels)),
                    "`selector` does not match template `labels`",
                )
            )
    errs.extend(validate_pod_template(template, "spec.template"))
    tspec = _d(template.get("spec"))
    if restart_always and tspec.get("restartPolicy") and tspec.get("restartPolicy") != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", tspec.get("restartPolicy"), ["Always"]))
    return errs


def _validate_int_or_percent(value: Any, path: str) -> list[Cause]:
    if isinstance(value, str):
        if not _PERCENT_RE.match(value):
            return [invalid(path, value, "must be an integer or percentage (e.g '5%')")]
        return []
    return _nonnegative(value, path)


def _int_or_percent_value(value: Any) -> int:
    if isinstance(value, str) and _PERCENT_RE.match(value):
        return int(value[:-1])
    return value if isinstance(value, int) else 0


def _validate_rolling(rolling: Obj, path: str) -> list[Cause]:
    errs = _validate_int_or_percent(rolling.get("maxUnavailable"), f"{path}.maxUnavailable")
    errs += _validate_int_or_percent(rolling.get("maxSurge"), f"{path}.maxSurge")
    if (
        _int_or_percent_value(rolling.get("maxUnavailable")) == 0
        and _int_or_percent_value(rolling.get("maxSurge")) == 0
    ):
        errs.append(
            invalid(
                f"{path}.maxUnavailable", rolling.get("maxUnavailable"), "may not be 0 when `maxSurge` is 0"
            )
        )
    mu = rolling.get("maxUnavailable")
    if isinstance(mu, str) and _PERCENT_RE.match(mu) and int(mu[:-1]) > 100:
        errs.append(invalid(f"{path}.maxUnavailable", mu, "must not be greater than 100%"))
    return errs


def _validate_deployment(obj: Obj) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs = _nonnegative(spec.get("replicas"), "spec.replicas")
    errs += _validate_selector_and_template(spec, "deployment", restart_always=True)
    strategy = _d(spec.get("strategy"))
    stype = strategy.get("type")
    if stype == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            errs.append(
                forbidden(
                    "spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"
                )
            )
    elif stype == "RollingUpdate":
        if strategy.get("rollingUpdate") is None:
            errs.append(required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil"))
        else:
            errs += _validate_rolling(_d(strategy["rollingUpdate"]), "spec.strategy.rollingUpdate")
    else:
        errs.append(not_supported("spec.strategy.type", stype or "", ["Recreate", "RollingUpdate"]))
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += _nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        errs += _nonnegative(deadline, "spec.progressDeadlineSeconds")
        if isinstance(deadline, int) and deadline <= (_int(spec.get("minReadySeconds")) or 0):
            errs.append(
                invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds")
            )
    return errs


def _validate_replica_set(obj: Obj) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs = _nonnegative(spec.get("replicas"), "spec.replicas")
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    # Kubernetes' message really says "deployment" for ReplicaSets too.
    errs += _validate_selector_and_template(spec, "deployment", restart_always=True)
    return errs


def _validate_stateful_set(obj: Obj) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    policy = spec.get("podManagementPolicy")
    if not policy:
        errs.append(required("spec.podManagementPolicy"))
    elif policy not in ("OrderedReady", "Parallel"):
        errs.append(invalid("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'"))
    strategy = _d(spec.get("updateStrategy"))
    stype = strategy.get("type")
    if not stype:
        errs.append(required("spec.updateStrategy"))
    elif stype == "RollingUpdate":
        rolling = _d(strategy.get("rollingUpdate"))
        errs += _nonnegative(rolling.get("partition"), "spec.updateStrategy.rollingUpdate.partition")
    elif stype == "OnDelete":
        if strategy.get("rollingUpdate") is not None:
            errs.append(
                invalid(
                    "spec.updateStrategy.rollingUpdate",
                    strategy["rollingUpdate"],
                    "only allowed for updateStrategy 'RollingUpdate'",
                )
            )
    else:
        errs.append(invalid("spec.updateStrategy", strategy, "must be 'RollingUpdate' or 'OnDelete'"))
    for key in ("revisionHistoryLimit", "replicas", "minReadySeconds"):
        errs += _nonnegative(spec.get(key), f"spec.{key}")
    retention = _d(spec.get("persistentVolumeClaimRetentionPolicy"))
    for key in ("whenDeleted", "whenScaled"):
        if retention.get(key) not in (None, "Retain", "Delete"):
            errs.append(
                not_supported(
                    f"spec.persistentVolumeClaimRetentionPolicy.{key}", retention[key], ["Retain", "Delete"]
                )
            )
    errs += _validate_selector_and_template(_with_claim_volumes(spec), "statefulset", restart_always=True)
    for i, claim in enumerate(_dl(spec.get("volumeClaimTemplates"))):
        errs += _validate_pvc_spec(_d(claim.get("spec")), f"spec.volumeClaimTemplates[{i}].spec")
    return errs


def _with_claim_volumes(spec: Obj) -> Obj:
    """A StatefulSet's pods get one volume per ``volumeClaimTemplate`` (the controller adds them),
    so containers may mount those names: validate the template as if the volumes were there."""
    claims = [_d(_d(c).get("metadata")).get("name") for c in _dl(spec.get("volumeClaimTemplates"))]
    template = spec.get("template")
    if not claims or not isinstance(template, dict):
        return spec
    tspec = _d(template.get("spec"))
    have = {_d(v).get("name") for v in _dl(tspec.get("volumes"))}
    extra = [{"name": n, "emptyDir": {}} for n in claims if n and n not in have]
    if not extra:
        return spec
    return {
        **spec,
        "template": {**template, "spec": {**tspec, "volumes": [*_dl(tspec.get("volumes")), *extra]}},
    }


def _validate_daemon_set(obj: Obj) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs = _validate_selector_and_template(spec, "daemonset", restart_always=True)
    template_spec = _d(_d(spec.get("template")).get("spec"))
    if template_spec.get("activeDeadlineSeconds") is not None:
        errs.append(
            invalid(
                "spec.template.spec.activeDeadlineSeconds",
                template_spec["activeDeadlineSeconds"],
                "activeDeadlineSeconds must be nil for daemon",
            )
        )
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += _nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    strategy = _d(spec.get("updateStrategy"))
    stype = strategy.get("type")
    if stype == "RollingUpdate":
        if strategy.get("rollingUpdate") is None:
            errs.append(required("spec.updateStrategy.rollingUpdate"))
        else:
            errs += _validate_rolling(_d(strategy["rollingUpdate"]), "spec.updateStrategy.rollingUpdate")
    elif stype != "OnDelete":
        errs.append(not_supported("spec.updateStrategy", stype or "", ["RollingUpdate", "OnDelete"]))
    return errs


def _validate_job(obj: Obj) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        errs += _nonnegative(spec.get(key), f"spec.{key}")
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (_int(deadline) is None or deadline <= 0):
        errs.append(invalid("spec.activeDeadlineSeconds", deadline, "must be greater than 0"))
    mode = spec.get("completionMode")
    if mode not in (None, "NonIndexed", "Indexed"):
        errs.append(not_supported("spec.completionMode", mode, ["NonIndexed", "Indexed"]))
    if mode == "Indexed" and spec.get("completions") is None:
        errs.append(required("spec.completions", "when completion mode is Indexed"))
    policy = spec.get("podReplacementPolicy")
    if policy not in (None, "TerminatingOrFailed", "Failed"):
        errs.append(not_supported("spec.podReplacementPolicy", policy, ["Failed", "TerminatingOrFailed"]))
    errs += _validate_selector_and_template(spec, None, restart_always=False)
    restart = _d(_d(spec.get("template")).get("spec")).get("restartPolicy")
    path = "spec.template.spec.restartPolicy"
    # Job templates are not defaulted to Always, so the pod spec's own "Required value" is
    # replaced by the Job's more helpful one, as a Kubernetes user sees it.
    errs = [e for e in errs if not (e["field"] == path and e["reason"] == REQUIRED)]
    if restart in (None, "", "Always"):
        errs.append(required(path, 'valid values: "OnFailure", "Never"'))
    elif restart not in ("OnFailure", "Never"):
        errs.append(not_supported(path, restart, ["OnFailure", "Never"]))
    elif spec.get("podFailurePolicy") is not None and restart != "Never":
        errs.append(invalid(path, restart, 'only "Never" is supported when podFailurePolicy is specified'))
    return errs


def _validate_job_update(obj: Obj, old: Obj) -> list[Cause]:
    spec, old_spec = _d(obj.get("spec")), _d(old.get("spec"))
    errs = _selector_immutable(obj, old)
    if spec.get("completionMode") != "Indexed":
        errs += immutable("spec.completions", spec.get("completions"), old_spec.get("completions"))
    errs += immutable("spec.completionMode", spec.get("completionMode"), old_spec.get("completionMode"))
    errs += immutable("spec.podFailurePolicy", spec.get("podFailurePolicy"), old_spec.get("podFailurePolicy"))
    if not (old_spec.get("suspend") and spec.get("suspend") is not False):
        if not _semantic_equal(spec.get("template"), old_spec.get("template")):
            errs.append(invalid("spec.template", spec.get("template"), FIELD_IMMUTABLE))
    return errs


def _selector_immutable(obj: Obj, old: Obj) -> list[Cause]:
    new_sel, old_sel = _d(obj.get("spec")).get("selector"), _d(old.get("spec")).get("selector")
    if _semantic_equal(new_sel, old_sel):
        return []
    return [invalid("spec.selector", _Shown(go_label_selector(new_sel)), FIELD_IMMUTABLE)]


_STS_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)


def _validate_stateful_set_update(obj: Obj, old: Obj) -> list[Cause]:
    errs = _selector_immutable(obj, old)
    new_spec = {k: v for k, v in _d(obj.get("spec")).items() if k not in _STS_MUTABLE and k != "selector"}
    old_spec = {k: v for k, v in _d(old.get("spec")).items() if k not in _STS_MUTABLE and k != "selector"}
    if not _semantic_equal(new_spec, old_spec):
        errs.append(
            forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            )
        )
    return errs


_SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]


def _validate_named_port(port: Obj, path: str, several: bool, names: set[str] | None = None) -> list[Cause]:
    """A Service or Endpoints port: a name (required when there are ``several``, unique within
    ``names`` when given), a port number and a protocol."""
    errs: list[Cause] = []
    name = str(port.get("name") or "")
    if several and not name:
        errs.append(required(f"{path}.name"))
    elif name:
        errs.extend(_dns_label(name, f"{path}.name"))
        if names is not None:
            if name in names:
                errs.append(duplicate(f"{path}.name", name))
            names.add(name)
    errs.extend(invalid(f"{path}.port", port.get("port"), m) for m in is_valid_port_num(port.get("port")))
    return errs + _required_choice(port.get("protocol"), f"{path}.protocol", _PROTOCOLS)


def _validate_service(obj: Obj) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    stype = spec.get("type")
    cluster_ip = spec.get("clusterIP") or ""
    headless = cluster_ip == "None"
    if stype not in _SERVICE_TYPES:
        errs.append(not_supported("spec.type", stype or "", _SERVICE_TYPES))
    ports = _dl(spec.get("ports"))
    if stype == "ExternalName":
        external_name = str(spec.get("externalName") or "")
        if not external_name:
            errs.append(required("spec.externalName"))
        else:
            errs.extend(_dns_subdomain(external_name.rstrip("."), "spec.externalName"))
        if cluster_ip and cluster_ip != "None":
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
    elif not ports and not headless:
        errs.append(required("spec.ports"))
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        p = f"spec.ports[{i}]"
        errs += _validate_named_port(port, p, len(ports) > 1, names)
        protocol = port.get("protocol")
        errs.extend(_validate_port_num_or_name(port.get("targetPort"), f"{p}.targetPort"))
        node_port = port.get("nodePort")
        if node_port:
            if stype == "ClusterIP":
                errs.append(forbidden(f"{p}.nodePort", "may not be used when `type` is 'ClusterIP'"))
            else:
                errs.extend(invalid(f"{p}.nodePort", node_port, m) for m in is_valid_port_num(node_port))
        key = (port.get("port"), protocol)
        if key in seen:
            errs.append(duplicate(p, {"port": port.get("port"), "protocol": protocol}))
        seen.add(key)
    affinity = spec.get("sessionAffinity")
    errs += _required_choice(affinity, "spec.sessionAffinity", ["ClientIP", "None"])
    errs.extend(validate_labels(spec.get("selector"), "spec.selector"))
    if cluster_ip and not headless and not _is_ip(cluster_ip):
        errs.append(
            invalid(
                "spec.clusterIPs[0]",
                cluster_ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            )
        )
    for i, ip in enumerate(_l(spec.get("externalIPs"))):
        if not _is_ip(str(ip)):
            errs.append(
                invalid(
                    f"spec.externalIPs[{i}]",
                    ip,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )
            )
    etp = spec.get("externalTrafficPolicy")
    if etp:
        if stype not in ("NodePort", "LoadBalancer") and not spec.get("externalIPs"):
            errs.append(
                invalid(
                    "spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services"
                )
            )
        elif etp not in ("Cluster", "Local"):
            errs.append(not_supported("spec.externalTrafficPolicy", etp, ["Cluster", "Local"]))
    itp = spec.get("internalTrafficPolicy")
    if stype != "ExternalName":
        errs += _required_choice(itp, "spec.internalTrafficPolicy", ["Cluster", "Local"])
    return errs


def _validate_service_update(obj: Obj, old: Obj) -> list[Cause]:
    """A ClusterIP, once allocated, stays (unless the type moves to or from ExternalName)."""
    spec, old_spec = _d(obj.get("spec")), _d(old.get("spec"))
    if "ExternalName" in (spec.get("type"), old_spec.get("type")):
        return []
    new_ip, old_ip = spec.get("clusterIP") or "", old_spec.get("clusterIP") or ""
    if old_ip and new_ip and new_ip != old_ip:
        return [invalid("spec.clusterIPs[0]", [new_ip], "may not change once set")]
    return []


def _validate_config_map(obj: Obj) -> list[Cause]:
    errs: list[Cause] = []
    data, binary = _d(obj.get("data")), _d(obj.get("binaryData"))
    total = 0
    for key, value in sorted(data.items()):
        errs.extend(invalid(f"data[{key}]", key, m) for m in is_config_map_key(key))
        if key in binary:
            errs.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
        if not isinstance(value, str):
            errs.append(invalid(f"data[{key}]", value, "must be a string"))
        total += len(str(value))
    for key, value in sorted(binary.items()):
        errs.extend(invalid(f"binaryData[{key}]", key, m) for m in is_config_map_key(key))
        if key in data:
            errs.append(invalid(f"binaryData[{key}]", key, "duplicate of key present in data"))
        decoded, err = _b64(value)
        if err:
            errs.append(invalid(f"binaryData[{key}]", "<binary data redacted>", err))
        total += len(decoded)
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("", MAX_SECRET_SIZE))
    return errs


def _b64(value: Any) -> tuple[bytes, str]:
    """Decode standard base64 as Go's JSON decoding of ``[]byte`` does; (bytes, error message)."""
    if not isinstance(value, str):
        return b"", "must be a base64-encoded string"
    allowed = re.compile(r"[A-Za-z0-9+/=\r\n]")
    for i, ch in enumerate(value):
        if not allowed.match(ch):
            return b"", f"illegal base64 data at input byte {i}"
    try:
        return base64.b64decode(value, validate=False), ""
    except (binascii.Error, ValueError):
        return b"", f"illegal base64 data at input byte {len(value.rstrip('='))}"


def _validate_secret(obj: Obj) -> list[Cause]:
    errs: list[Cause] = []
    data = _d(obj.get("data"))
    total = 0
    decoded: dict[str, bytes] = {}
    for key, value in sorted(data.items()):
        errs.extend(invalid(f"data[{key}]", key, m) for m in is_config_map_key(key))
        raw, err = _b64(value)
        if err:
            errs.append(invalid(f"data[{key}]", "<secret contents redacted>", err))
        decoded[key] = raw
        total += len(raw)
    for key in sorted(_d(obj.get("stringData"))):
        errs.extend(invalid(f"stringData[{key}]", key, m) for m in is_config_map_key(key))
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("data", MAX_SECRET_SIZE))
    stype = obj.get("type")
    annotations = _d(_d(obj.get("metadata")).get("annotations"))
    if stype == "kubernetes.io/service-account-token":
        if not annotations.get("kubernetes.io/service-account.name"):
            errs.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    elif stype in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        key = ".dockercfg" if stype == "kubernetes.io/dockercfg" else ".dockerconfigjson"
        if key not in data:
            errs.append(required(f"data[{key}]"))
        else:
            try:
                json.loads(decoded.get(key, b"") or b"")
            except ValueError as exc:
                errs.append(invalid(f"data[{key}]", "<secret contents redacted>", str(exc)))
    elif stype == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            errs.append(required("data[username]"))
            errs.append(required("data[password]"))
    elif stype == "kubernetes.io/ssh-auth":
        if not decoded.get("ssh-privatekey"):
            errs.append(required("data[ssh-privatekey]"))
    elif stype == "kubernetes.io/tls":
        if "tls.crt" not in data:
            errs.append(required("data[tls.crt]"))
        if "tls.key" not in data:
            errs.append(required("data[tls.key]"))
    return errs


def _immutable_data(obj: Obj, old: Obj, keys: tuple[str, ...]) -> list[Cause]:
    errs: list[Cause] = []
    if old.get("immutable") is True:
        if obj.get("immutable") is not True:
            errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
        for key in keys:
            if not _semantic_equal(obj.get(key), old.get(key)):
                errs.append(forbidden(key, "field is immutable when `immutable` is set"))
    return errs


def _validate_secret_update(obj: Obj, old: Obj) -> list[Cause]:
    errs = immutable("type", obj.get("type") or "", old.get("type") or "")
    return errs + _immutable_data(obj, old, ("data",))


def _validate_namespace(obj: Obj) -> list[Cause]:
    errs: list[Cause] = []
    for i, finalizer in enumerate(_l(_d(obj.get("spec")).get("finalizers"))):
        f = str(finalizer)
        errs.extend(invalid(f"spec.finalizers[{i}]", f, m) for m in is_qualified_name(f))
        if "/" not in f and f != "kubernetes":
            errs.append(
                invalid(
                    f"spec.finalizers[{i}]",
                    f,
                    "name is neither a standard finalizer name nor is it fully qualified",
                )
            )
    phase = _d(obj.get("status")).get("phase")
    if phase not in (None, "", "Active", "Terminating"):
        errs.append(not_supported("status.phase", phase, ["Active", "Terminating"]))
    return errs


def _validate_node(obj: Obj) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    cidrs = _l(spec.get("podCIDRs")) or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    for i, cidr in enumerate(cidrs):
        if not _is_cidr(str(cidr)):
            errs.append(
                invalid(
                    f"spec.podCIDRs[{i}]",
                    cidr,
                    "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                )
            )
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(_dl(spec.get("taints"))):
        p = f"spec.taints[{i}]"
        key = str(taint.get("key") or "")
        errs.extend(invalid(f"{p}.key", key, m) for m in is_qualified_name(key))
        value = str(taint.get("value") or "")
        msgs = is_valid_label_value(value)
        if msgs:
            errs.append(invalid(f"{p}.value", value, ";".join(msgs)))
        effect = taint.get("effect")
        errs += _required_choice(effect, f"{p}.effect", _TAINT_EFFECTS)
        if (key, str(effect)) in seen:
            errs.append(duplicate(p, taint, "taints must be unique by key and effect pair"))
        seen.add((key, str(effect)))
    return errs


def _validate_node_update(obj: Obj, old: Obj) -> list[Cause]:
    spec, old_spec = _d(obj.get("spec")), _d(old.get("spec"))
    errs: list[Cause] = []
    old_cidrs = _l(old_spec.get("podCIDRs")) or ([old_spec["podCIDR"]] if old_spec.get("podCIDR") else [])
    new_cidrs = _l(spec.get("podCIDRs")) or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    if old_cidrs and new_cidrs != old_cidrs:
        errs.append(forbidden("spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid'))
    if old_spec.get("providerID") and spec.get("providerID") != old_spec.get("providerID"):
        errs.append(
            forbidden("spec.providerID", 'node updates may not change providerID except from "" to valid')
        )
    return errs


def _validate_event(obj: Obj) -> list[Cause]:
    errs: list[Cause] = []
    namespace = str(_d(obj.get("metadata")).get("namespace") or "")
    involved = _d(obj.get("involvedObject"))
    involved_ns = str(involved.get("namespace") or "")
    if not obj.get("eventTime"):
        if not involved_ns:
            if namespace not in ("", "default"):
                errs.append(
                    invalid("involvedObject.namespace", involved_ns, "does not match event.namespace")
                )
        elif namespace != involved_ns:
            errs.append(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            errs.append(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
        controller = str(obj.get("reportingComponent") or "")
        errs += _required_valid(controller, "reportingComponent", is_qualified_name)
        for key, limit in (("reportingInstance", 128), ("action", 128), ("reason", 128)):
            value = str(obj.get(key) or "")
            if not value:
                errs.append(required(key))
            elif len(value) > limit:
                errs.append(invalid(key, "", f"can have at most {limit} characters"))
        if len(str(obj.get("message") or "")) > 1024:
            errs.append(invalid("message", "", "can have at most 1024 characters"))
    return errs


def _validate_lease(obj: Obj) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (_int(duration) is None or duration <= 0):
        errs.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    errs += _nonnegative(spec.get("leaseTransitions"), "spec.leaseTransitions")
    return errs


_ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]


def _validate_access_modes(modes: Any, path: str, detail: str) -> list[Cause]:
    errs: list[Cause] = []
    if not _l(modes):
        errs.append(required(path, detail))
    for mode in _l(modes):
        if mode not in _ACCESS_MODES:
            errs.append(not_supported(path, mode, _ACCESS_MODES))
    return errs


def _validate_pvc_spec(spec: Obj, path: str) -> list[Cause]:
    errs = _validate_access_modes(
        spec.get("accessModes"), f"{path}.accessModes", "at least 1 access mode is required"
    )
    if spec.get("selector") is not None:
        errs += validate_label_selector(spec["selector"], f"{path}.selector")
    storage = _d(_d(spec.get("resources")).get("requests")).get("storage")
    storage_path = f"{path}.resources[storage]"
    if storage is None:
        errs.append(required(storage_path))
    else:
        try:
            if parse_quantity(str(storage)) <= 0:
                errs.append(invalid(storage_path, str(storage), "must be greater than zero"))
        except ValueError as exc:
            errs.append(invalid(storage_path, str(storage), str(exc)))
    class_name = spec.get("storageClassName")
    if class_name:
        errs += _dns_subdomain(str(class_name), f"{path}.storageClassName")
    mode = spec.get("volumeMode")
    if mode is not None and mode not in ("Block", "Filesystem"):
        errs.append(not_supported(f"{path}.volumeMode", mode, ["Block", "Filesystem"]))
    return errs


def _validate_pvc(obj: Obj) -> list[Cause]:
    return _validate_pvc_spec(_d(obj.get("spec")), "spec")


def _validate_pvc_update(obj: Obj, old: Obj) -> list[Cause]:
    spec, old_spec = copy.deepcopy(_d(obj.get("spec"))), copy.deepcopy(_d(old.get("spec")))
    errs: list[Cause] = []
    new_storage = _d(_d(spec.get("resources")).get("requests")).get("storage")
    old_storage = _d(_d(old_spec.get("resources")).get("requests")).get("storage")
    if new_storage is not None and old_storage is not None:
        try:
            if parse_quantity(str(new_storage)) < parse_quantity(str(old_storage)):
                errs.append(
                    forbidden("spec.resources.requests.storage", "field can not be less than status.capacity")
                )
        except ValueError:
            pass
    for s in (spec, old_spec):
        s.pop("resources", None)
        s.pop("volumeAttributesClassName", None)
    annotations = _d(_d(old.get("metadata")).get("annotations"))
    if (
        old_spec.get("storageClassName") is None
        and spec.get("storageClassName") is not None
        and "volume.beta.kubernetes.io/storage-class" not in annotations
    ):
        # a claim without a class may be given one later (Kubernetes 1.28+: the default class
        # is retroactively assigned)
        spec.pop("storageClassName", None)
    if not old_spec.get("volumeName"):
        spec.pop("volumeName", None)
        old_spec.pop("volumeName", None)
    if not _semantic_equal(spec, old_spec):
        errs.append(
            forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            )
        )
    return errs


def _validate_pv(obj: Obj) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs = _validate_access_modes(spec.get("accessModes"), "spec.accessModes", "")
    capacity = _d(spec.get("capacity"))
    if not capacity:
        errs.append(required("spec.capacity"))
    elif "storage" not in capacity or len(capacity) > 1:
        errs.append(not_supported("spec.capacity", capacity, ["storage"]))
    else:
        errs += _validate_quantity(capacity["storage"], "spec.capacity[storage]")
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy and policy not in ("Delete", "Recycle", "Retain"):
        errs.append(
            not_supported("spec.persistentVolumeReclaimPolicy", policy, ["Delete", "Recycle", "Retain"])
        )
    mode = spec.get("volumeMode")
    if mode is not None and mode not in ("Block", "Filesystem"):
        errs.append(not_supported("spec.volumeMode", mode, ["Block", "Filesystem"]))
    sources = [
        s
        for s in VOLUME_SOURCES
        if spec.get(s) is not None
        and s not in ("emptyDir", "configMap", "secret", "downwardAPI", "projected")
    ]
    sources += ["local"] if spec.get("local") is not None else []
    if not sources:
        errs.append(required("spec", "must specify a volume type"))
    elif len(sources) > 1:
        errs.append(forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type"))
    host_path = spec.get("hostPath")
    if host_path is not None and not _d(host_path).get("path"):
        errs.append(required("spec.hostPath.path"))
    if spec.get("storageClassName"):
        errs += _dns_subdomain(str(spec["storageClassName"]), "spec.storageClassName")
    return errs


def _validate_ingress_backend(backend: Obj, path: str) -> list[Cause]:
    errs: list[Cause] = []
    has_resource, has_service = backend.get("resource") is not None, backend.get("service") is not None
    if has_resource and has_service:
        return [invalid(path, "", "cannot set both resource and service backends")]
    if has_resource:
        resource = _d(backend["resource"])
        if not resource.get("kind"):
            errs.append(required(f"{path}.resource.kind"))
        if not resource.get("name"):
            errs.append(required(f"{path}.resource.name"))
        return errs
    if not has_service:
        return [invalid(path, "", "resource or service backend is required")]
    service = _d(backend["service"])
    name = str(service.get("name") or "")
    errs += _required_valid(name, f"{path}.service.name", is_dns1035_label)
    port = _d(service.get("port"))
    port_name, port_number = port.get("name"), port.get("number")
    if port_name and port_number:
        errs.append(invalid(f"{path}.service.port", "", "cannot set both port name & port number"))
    elif port_name:
        errs.extend(
            invalid(f"{path}.service.port.name", port_name, m) for m in is_valid_port_name(str(port_name))
        )
    elif port_number:
        errs.extend(
            invalid(f"{path}.service.port.number", port_number, m) for m in is_valid_port_num(port_number)
        )
    else:
        errs.append(required(f"{path}.service.port", "port name or number is required"))
    return errs


def _validate_ingress(obj: Obj) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    rules = _dl(spec.get("rules"))
    if not rules and spec.get("defaultBackend") is None:
        errs.append(
            invalid(
                "spec",
                _Shown("[]networking.IngressRule(nil)"),
                "either `defaultBackend` or `rules` must be specified",
            )
        )
    if spec.get("defaultBackend") is not None:
        errs += _validate_ingress_backend(_d(spec["defaultBackend"]), "spec.defaultBackend")
    class_name = spec.get("ingressClassName")
    if class_name:
        errs += _dns_subdomain(str(class_name), "spec.ingressClassName")
    for i, rule in enumerate(rules):
        p = f"spec.rules[{i}]"
        host = str(rule.get("host") or "")
        if host:
            if _is_ip(host):
                errs.append(invalid(f"{p}.host", host, "must be a DNS name, not an IP address"))
            check = host[2:] if host.startswith("*.") else host
            errs.extend(invalid(f"{p}.host", host, m) for m in is_dns1123_subdomain(check))
        http = rule.get("http")
        if http is None:
            continue
        paths = _dl(_d(http).get("paths"))
        if not paths:
            errs.append(required(f"{p}.http.paths"))
        for j, ingress_path in enumerate(paths):
            pp = f"{p}.http.paths[{j}]"
            path_type = ingress_path.get("pathType")
            value = str(ingress_path.get("path") or "")
            if path_type is None:
                errs.append(required(f"{pp}.pathType", "pathType must be specified"))
                continue
            if path_type in ("Exact", "Prefix"):
                if not value.startswith("/"):
                    errs.append(invalid(f"{pp}.path", value, "must be an absolute path"))
                for seq in ("//", "/./", "/../", "%2f", "%2F"):
                    if seq in value:
                        errs.append(invalid(f"{pp}.path", value, f"must not contain '{seq}'"))
                for suffix in ("/..", "/."):
                    if value.endswith(suffix):
                        errs.append(invalid(f"{pp}.path", value, f"cannot end with '{suffix}'"))
            elif path_type == "ImplementationSpecific":
                if value and not value.startswith("/"):
                    errs.append(invalid(f"{pp}.path", value, "must be an absolute path"))
            else:
                errs.append(
                    not_supported(f"{pp}.pathType", path_type, ["Exact", "ImplementationSpecific", "Prefix"])
                )
            errs += _validate_ingress_backend(_d(ingress_path.get("backend")), f"{pp}.backend")
    from .validation_networking import validate_ingress_tls  # it imports this module's helpers

    return errs + validate_ingress_tls(spec)


def _validate_ingress_class(obj: Obj) -> list[Cause]:
    from .validation_networking import validate_ingress_class

    return validate_ingress_class(obj)


def _validate_ingress_class_update(obj: Obj, old: Obj) -> list[Cause]:
    from .validation_networking import validate_ingress_class_update

    return validate_ingress_class_update(obj, old)


def _validate_storage_class(obj: Obj) -> list[Cause]:
    errs: list[Cause] = []
    provisioner = str(obj.get("provisioner") or "")
    errs += _required_valid(provisioner, "provisioner", lambda name: is_qualified_name(name.lower()))
    policy = obj.get("reclaimPolicy")
    if policy and policy not in ("Delete", "Retain"):
        errs.append(not_supported("reclaimPolicy", policy, ["Delete", "Retain"]))
    mode = obj.get("volumeBindingMode")
    errs += _required_choice(mode, "volumeBindingMode", ["Immediate", "WaitForFirstConsumer"])
    return errs


def _validate_storage_class_update(obj: Obj, old: Obj) -> list[Cause]:
    errs: list[Cause] = []
    for key in ("parameters", "provisioner", "reclaimPolicy"):
        if not _semantic_equal(obj.get(key), old.get(key)):
            errs.append(forbidden(key, f"updates to {key} are forbidden."))
    errs += immutable("volumeBindingMode", obj.get("volumeBindingMode"), old.get("volumeBindingMode"))
    return errs


def _validate_endpoints(obj: Obj) -> list[Cause]:
    errs: list[Cause] = []
    for i, subset in enumerate(_dl(obj.get("subsets"))):
        p = f"subsets[{i}]"
        for key in ("addresses", "notReadyAddresses"):
            for j, address in enumerate(_dl(subset.get(key))):
                ip = str(address.get("ip") or "")
                if not _is_ip(ip):
                    errs.append(
                        invalid(
                            f"{p}.{key}[{j}].ip",
                            ip,
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        )
                    )
        ports = _dl(subset.get("ports"))
        for j, port in enumerate(ports):
            errs += _validate_named_port(port, f"{p}.ports[{j}]", len(ports) > 1)
    return errs


_ADDRESS_TYPES = ["IPv4", "IPv6", "FQDN"]
_SLICE_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_SLICE_MAX_ENDPOINTS, _SLICE_MAX_ADDRESSES, _SLICE_MAX_PORTS = 1000, 100, 20000


def _too_many(path: str, count: int, limit: int) -> Cause:
    return errors.cause(path, f"Too many: {count}: must have at most {limit} items", "FieldValueTooMany")


def _validate_slice_address(address: Any, address_type: str, path: str) -> list[Cause]:
    value = str(address or "")
    if address_type == "FQDN":
        return _dns_subdomain(value, path)
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return [invalid(path, value, f"must be a valid {address_type} address")]
    if address_type == "IPv4" and ip.version != 4:
        return [invalid(path, value, "must be an IPv4 address")]
    if address_type == "IPv6" and ip.version != 6:
        return [invalid(path, value, "must be an IPv6 address")]
    return []


def _validate_endpoint_slice(obj: Obj) -> list[Cause]:
    """discovery/v1 ``ValidateEndpointSlice``: the address type, each endpoint's addresses,
    hostname and node name, and the ports (names unique DNS labels, numbers, protocols)."""
    address_type = obj.get("addressType")
    errs = _required_choice(address_type, "addressType", _ADDRESS_TYPES)
    endpoints = _dl(obj.get("endpoints"))
    if len(endpoints) > _SLICE_MAX_ENDPOINTS:
        errs.append(_too_many("endpoints", len(endpoints), _SLICE_MAX_ENDPOINTS))
    for i, ep in enumerate(endpoints):
        p = f"endpoints[{i}]"
        addresses = _l(ep.get("addresses"))
        if not addresses:
            errs.append(required(f"{p}.addresses", "must contain at least 1 address"))
        elif len(addresses) > _SLICE_MAX_ADDRESSES:
            errs.append(_too_many(f"{p}.addresses", len(addresses), _SLICE_MAX_ADDRESSES))
        if address_type in _ADDRESS_TYPES:
            for j, address in enumerate(addresses):
                errs += _validate_slice_address(address, str(address_type), f"{p}.addresses[{j}]")
        if ep.get("hostname"):
            errs += _dns_label(str(ep["hostname"]), f"{p}.hostname")
        if ep.get("nodeName"):
            errs += _dns_subdomain(str(ep["nodeName"]), f"{p}.nodeName")
    ports = _dl(obj.get("ports"))
    if len(ports) > _SLICE_MAX_PORTS:
        errs.append(_too_many("ports", len(ports), _SLICE_MAX_PORTS))
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = f"ports[{i}]"
        name = str(port.get("name") or "")
        if name:
            errs += _dns_label(name, f"{p}.name")
        if name in names:
            errs.append(duplicate(f"{p}.name", name))
        names.add(name)
        if port.get("port") is not None:
            errs += [invalid(f"{p}.port", port["port"], m) for m in is_valid_port_num(port["port"])]
        errs += _required_choice(port.get("protocol"), f"{p}.protocol", _SLICE_PROTOCOLS)
    return errs


def _validate_endpoint_slice_update(obj: Obj, old: Obj) -> list[Cause]:
    return immutable("addressType", obj.get("addressType"), old.get("addressType"))


def _validate_config_map_update(obj: Obj, old: Obj) -> list[Cause]:
    return _immutable_data(obj, old, ("data", "binaryData"))


# ---------------------------------------------------------------------------------------------
# RBAC (rbac.authorization.k8s.io/v1)
# ---------------------------------------------------------------------------------------------

RBAC_GROUP = "rbac.authorization.k8s.io"

# Set by the running authorizer (apiserver.authz): refuses, with a 403, a Role, ClusterRole or
# binding that would grant permissions the requesting user does not hold.
rbac_escalation_check: Callable[[ResourceInfo, Obj, Obj | None], None] | None = None


def _validate_policy_rule(rule: Obj, namespaced: bool, path: str) -> list[Cause]:
    """``ValidatePolicyRule``."""
    errs: list[Cause] = []
    if not _l(rule.get("verbs")):
        errs.append(required(f"{path}.verbs", "verbs must contain at least one value"))
    urls = _l(rule.get("nonResourceURLs"))
    if urls:
        if namespaced:
            errs.append(
                invalid(f"{path}.nonResourceURLs", urls, "namespaced rules cannot apply to non-resource URLs")
            )
        if _l(rule.get("apiGroups")) or _l(rule.get("resources")) or _l(rule.get("resourceNames")):
            errs.append(
                invalid(
                    f"{path}.nonResourceURLs",
                    urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                )
            )
        return errs
    if not _l(rule.get("apiGroups")):
        errs.append(required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
    if not _l(rule.get("resources")):
        errs.append(required(f"{path}.resources", "resource rules must supply at least one resource"))
    return errs


def _validate_rules(obj: Obj, namespaced: bool) -> list[Cause]:
    errs: list[Cause] = []
    for i, rule in enumerate(_l(obj.get("rules"))):
        if not isinstance(rule, dict):
            errs.append(invalid(f"rules[{i}]", rule, "must be an object"))
            continue
        errs.extend(_validate_policy_rule(rule, namespaced, f"rules[{i}]"))
    return errs


def _validate_role(obj: Obj) -> list[Cause]:
    return _validate_rules(obj, True)


def _validate_cluster_role(obj: Obj) -> list[Cause]:
    errs = _validate_rules(obj, False)
    agg = obj.get("aggregationRule")
    if agg is not None:
        selectors = _l(_d(agg).get("clusterRoleSelectors"))
        if not selectors:
            errs.append(
                required(
                    "aggregationRule.clusterRoleSelectors",
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                )
            )
        for i, sel in enumerate(selectors):
            errs.extend(validate_label_selector(sel, f"aggregationRule.clusterRoleSelectors[{i}]"))
    return errs


def _validate_subject(subject: Any, namespaced: bool, path: str) -> list[Cause]:
    """``ValidateRoleBindingSubject`` (an empty apiGroup of a User or Group is defaulted)."""
    s = _d(subject)
    errs: list[Cause] = []
    name = s.get("name")
    if not name:
        errs.append(required(f"{path}.name"))
    kind = s.get("kind")
    group = s.get("apiGroup") or ""
    if kind == "ServiceAccount":
        if name:
            errs.extend(invalid(f"{path}.name", name, m) for m in is_dns1123_subdomain(str(name)))
        if group:
            errs.append(not_supported(f"{path}.apiGroup", group, [""]))
        if not namespaced and not s.get("namespace"):
            errs.append(required(f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if group and group != RBAC_GROUP:
            errs.append(not_supported(f"{path}.apiGroup", group, [RBAC_GROUP]))
    else:
        errs.append(not_supported(f"{path}.kind", kind or "", ["ServiceAccount", "User", "Group"]))
    return errs


def _validate_binding(obj: Obj, namespaced: bool) -> list[Cause]:
    errs: list[Cause] = []
    ref = _d(obj.get("roleRef"))
    if ref.get("apiGroup") != RBAC_GROUP:
        errs.append(not_supported("roleRef.apiGroup", ref.get("apiGroup") or "", [RBAC_GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.get("kind") not in kinds:
        errs.append(not_supported("roleRef.kind", ref.get("kind") or "", kinds))
    name = ref.get("name")
    if not name:
        errs.append(required("roleRef.name"))
    else:
        errs.extend(invalid("roleRef.name", name, m) for m in is_valid_path_segment_name(str(name)))
    for i, subject in enumerate(_l(obj.get("subjects"))):
        errs.extend(_validate_subject(subject, namespaced, f"subjects[{i}]"))
    return errs


def _validate_role_binding(obj: Obj) -> list[Cause]:
    return _validate_binding(obj, True)


def _validate_cluster_role_binding(obj: Obj) -> list[Cause]:
    return _validate_binding(obj, False)


def _role_ref_immutable(new: Obj, old: Obj) -> list[Cause]:
    if _d(new.get("roleRef")) != _d(old.get("roleRef")):
        return [invalid("roleRef", _Shown(_go_role_ref(_d(new.get("roleRef")))), "cannot change roleRef")]
    return []


def _go_role_ref(ref: Obj) -> str:
    # Go's %v of an rbac.RoleRef struct
    return "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}".format(
        go_quote(str(ref.get("apiGroup") or "")),
        go_quote(str(ref.get("kind") or "")),
        go_quote(str(ref.get("name") or "")),
    )


# ---------------------------------------------------------------------------------------------
# LimitRange and ResourceQuota (core/v1)
# ---------------------------------------------------------------------------------------------


def _quantities(table: Any, path: str, errs: list[Cause]) -> dict[str, tuple[str, Decimal]]:
    out: dict[str, tuple[str, Decimal]] = {}
    for name, value in sorted(_d(table).items()):
        p = f"{path}[{name}]"
        errs.extend(invalid(p, name, m) for m in is_qualified_name(str(name)))
        q_errs = _validate_quantity(value, p)
        errs.extend(q_errs)
        if not q_errs:
            out[str(name)] = (str(value), parse_quantity(str(value)))
    return out


# A LimitRange item's ordering checks, in Kubernetes' order: (the table whose value must not be
# greater, the other table, the field named, the table whose value is shown, the message)
_LIMIT_ORDER = (
    ("min", "max", "min", "min", "min value {} is greater than max value {}"),
    (
        "min",
        "defaultRequest",
        "defaultRequest",
        "defaultRequest",
        "min value {} is greater than default request value {}",
    ),
    (
        "defaultRequest",
        "max",
        "defaultRequest",
        "defaultRequest",
        "default request value {} is greater than max value {}",
    ),
    (
        "defaultRequest",
        "default",
        "defaultRequest",
        "defaultRequest",
        "default request value {} is greater than default limit value {}",
    ),
    ("min", "default", "default", "min", "min value {} is greater than default value {}"),
    ("default", "max", "default", "max", "default value {} is greater than max value {}"),
)


def _validate_limit_range(obj: Obj) -> list[Cause]:
    """``ValidateLimitRange``: per item, no duplicate type; min <= defaultRequest <= default <= max;
    no defaults for Pod items; PVC items bound storage; ratios of at least 1."""
    errs: list[Cause] = []
    seen: set[str] = set()
    for i, item in enumerate(_l(_d(obj.get("spec")).get("limits"))):
        path = f"spec.limits[{i}]"
        item = _d(item)
        kind = str(item.get("type") or "")
        if kind in seen:
            errs.append(duplicate(f"{path}.type", kind))
        seen.add(kind)
        tables = {
            key: _quantities(item.get(key), f"{path}.{key}", errs)
            for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")
        }
        if kind == "Pod":
            for key in ("default", "defaultRequest"):
                if tables[key]:
                    errs.append(forbidden(f"{path}.{key}", "may not be specified when `type` is 'Pod'"))
        if (
            kind == "PersistentVolumeClaim"
            and "storage" not in tables["min"]
            and "storage" not in tables["max"]
        ):
            errs.append(
                required(
                    f"{path}.limits",
                    "either minimum or maximum storage value is required, but neither was provided",
                )
            )
        for k in sorted(set().union(*tables.values())):
            for small, large, field, shown, message in _LIMIT_ORDER:
                lo, hi = tables[small].get(k), tables[large].get(k)
                if lo is not None and hi is not None and lo[1] > hi[1]:
                    errs.append(
                        invalid(f"{path}.{field}[{k}]", tables[shown][k][0], message.format(lo[0], hi[0]))
                    )
            ratio = tables["maxLimitRequestRatio"].get(k)
            if ratio is not None and ratio[1] < 1:
                errs.append(
                    invalid(f"{path}.maxLimitRequestRatio[{k}]", ratio[0], f"ratio {ratio[0]} is less than 1")
                )
    return errs


_QUOTA_SCOPES = (
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
)


def _validate_resource_quota(obj: Obj) -> list[Cause]:
    """``ValidateResourceQuota``: resource names and non-negative quantities in ``spec.hard``
    (whole numbers for object counts), known scopes."""
    errs: list[Cause] = []
    spec = _d(obj.get("spec"))
    for name, (raw, value) in _quantities(spec.get("hard"), "spec.hard", errs).items():
        counted = name in (
            "pods",
            "services",
            "replicationcontrollers",
            "resourcequotas",
            "secrets",
            "configmaps",
        )
        if (
            counted or name.startswith("count/") or name == "persistentvolumeclaims"
        ) and value != value.to_integral_value():
            errs.append(invalid(f"spec.hard[{name}]", raw, "must be an integer"))
    for i, scope in enumerate(_l(spec.get("scopes"))):
        if scope not in _QUOTA_SCOPES:
            errs.append(not_supported(f"spec.scopes[{i}]", scope, list(_QUOTA_SCOPES)))
    return errs


Validator = Callable[[Obj], list[Cause]]
UpdateValidator = Callable[[Obj, Obj], list[Cause]]

# Per kind: the create checks and, for kinds with update rules, the update checks.
_VALIDATORS: dict[tuple[str, str], tuple[Validator, UpdateValidator | None]] = {
    ("", "Pod"): (_validate_pod, _validate_pod_update),
    ("", "Service"): (_validate_service, _validate_service_update),
    ("", "ConfigMap"): (_validate_config_map, _validate_config_map_update),
    ("", "Secret"): (_validate_secret, _validate_secret_update),
    ("", "Namespace"): (_validate_namespace, None),
    ("", "Node"): (_validate_node, _validate_node_update),
    ("", "Event"): (_validate_event, None),
    ("", "Endpoints"): (_validate_endpoints, None),
    ("", "PersistentVolume"): (_validate_pv, None),
    ("", "PersistentVolumeClaim"): (_validate_pvc, _validate_pvc_update),
    ("", "LimitRange"): (_validate_limit_range, None),
    ("", "ResourceQuota"): (_validate_resource_quota, None),
    ("apps", "Deployment"): (_validate_deployment, _selector_immutable),
    ("apps", "ReplicaSet"): (_validate_replica_set, _selector_immutable),
    ("apps", "StatefulSet"): (_validate_stateful_set, _validate_stateful_set_update),
    ("apps", "DaemonSet"): (_validate_daemon_set, _selector_immutable),
    ("batch", "Job"): (_validate_job, _validate_job_update),
    ("coordination.k8s.io", "Lease"): (_validate_lease, None),
    ("discovery.k8s.io", "EndpointSlice"): (_validate_endpoint_slice, _validate_endpoint_slice_update),
    ("networking.k8s.io", "Ingress"): (_validate_ingress, None),
    ("networking.k8s.io", "IngressClass"): (_validate_ingress_class, _validate_ingress_class_update),
    ("storage.k8s.io", "StorageClass"): (_validate_storage_class, _validate_storage_class_update),
    (RBAC_GROUP, "Role"): (_validate_role, None),
    (RBAC_GROUP, "ClusterRole"): (_validate_cluster_role, None),
    (RBAC_GROUP, "RoleBinding"): (_validate_role_binding, _role_ref_immutable),
    (RBAC_GROUP, "ClusterRoleBinding"): (_validate_cluster_role_binding, _role_ref_immutable),
}

# Kinds whose checks live in their own module (which imports the helpers above).
from . import validation_scheduling  # noqa: E402

_VALIDATORS[("scheduling.k8s.io", "PriorityClass")] = (
    validation_scheduling.validate_priority_class,
    validation_scheduling.validate_priority_class_update,
)

from . import validation_policy  # noqa: E402

_VALIDATORS[("policy", "PodDisruptionBudget")] = (validation_policy.validate_pod_disruption_budget, None)

from . import validation_batch  # noqa: E402

# Through lambdas: validation_batch reaches this module's helpers at call time (either may load first).
_VALIDATORS[("batch", "CronJob")] = (
    lambda obj: validation_batch.validate_cron_job(obj),
    lambda obj, old: validation_batch.validate_cron_job_update(obj, old),
)


from . import validation_netpol  # noqa: E402

_VALIDATORS[("networking.k8s.io", "NetworkPolicy")] = (
    lambda obj: validation_netpol.validate_network_policy(obj),
    None,
)

from . import validation_autoscaling  # noqa: E402

_VALIDATORS[("autoscaling", "HorizontalPodAutoscaler")] = (
    lambda obj: validation_autoscaling.validate_horizontal_pod_autoscaler(obj),
    None,
)

from . import validation_certificates  # noqa: E402

_VALIDATORS[("certificates.k8s.io", "CertificateSigningRequest")] = (
    lambda obj: validation_certificates.validate_csr(obj),
    lambda obj, old: validation_certificates.validate_update(obj, old),
)
_NAME_VALIDATORS["CertificateSigningRequest"] = is_valid_path_segment_name


def validate(
    info: ResourceInfo, obj: dict[str, Any], old: dict[str, Any] | None = None
) -> list[dict[str, str]]:
    """Validate ``obj`` (already defaulted) as Kubernetes does for ``info``'s kind.

    Returns ``details.causes`` entries (``{"reason", "message", "field"}``), empty when valid.
    With ``old`` (an update) the update rules apply too: identity metadata and kind-specific
    fields are immutable.  Neither ``obj`` nor ``old`` is changed: the Job selector Kubernetes
    generates in its validation step is defaulting here (:func:`apimachinery.defaults.apply_defaults`).
    """
    validator, update_validator = _VALIDATORS.get((info.group, info.kind), (None, None))
    if info.group == RBAC_GROUP and rbac_escalation_check is not None:
        rbac_escalation_check(info, obj, old)  # a 403 when the user would grant what it lacks
    causes = validate_object_meta(info, obj.get("metadata"))
    if validator is not None:
        causes.extend(validator(obj))
    if old is not None:
        causes.extend(validate_object_meta_update(obj.get("metadata"), old.get("metadata")))
        if update_validator is not None:
            causes.extend(update_validator(obj, old))
    if causes:
        meta = _d(obj.get("metadata"))
        log.debug("%s %s/%s invalid: %s", info.kind, meta.get("namespace"), meta.get("name"), causes)
    return causes
