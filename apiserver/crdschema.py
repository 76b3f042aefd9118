"""CustomResourceDefinitions: checking a CRD, and the structural schema of its custom objects.

Kubernetes' ``apiextensions-apiserver`` rules, as pure functions: :func:`validate_crd` checks a
CRD itself (names, scope, versions, ``conversion``, a structural ``openAPIV3Schema``) and returns
``details.causes`` naming the fields; :func:`resources_of` turns an accepted CRD into the
:class:`~apimachinery.resources.ResourceInfo` of each served version.  For custom objects,
:func:`prune` drops unknown fields, :func:`apply_defaults` fills ``default:`` values, and
:func:`validate_value` checks types, ``required``, ``enum``, ``pattern``, bounds, lengths and
``nullable`` -- none of them changes anything but the object it is given.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from apimachinery import errors
from apimachinery.resources import ResourceInfo, crd_resources

Schema = dict[str, Any]
Cause = dict[str, str]

GROUP = "apiextensions.k8s.io"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_TYPES = ("object", "array", "string", "integer", "number", "boolean")
# JSON-schema keywords a structural schema may not use (Kubernetes' apiextensions validation)
_FORBIDDEN = ("$ref", "$schema", "id", "definitions", "dependencies", "patternProperties", "additionalItems")


def _invalid(field: str, value: Any, message: str) -> Cause:
    return errors.cause(field, f"Invalid value: {_quote(value)}: {message}", "FieldValueInvalid")


def _required(field: str, message: str = "") -> Cause:
    return errors.cause(field, "Required value" + (f": {message}" if message else ""), "FieldValueRequired")


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def default_crd(crd: dict[str, Any]) -> None:
    """Kubernetes' CRD defaults: singular and listKind from the kind, ``conversion: None``."""
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", f"{names['kind']}List")
    spec.setdefault("conversion", {"strategy": "None"})


# --- the CRD itself --------------------------------------------------------------------------------
def validate_crd(crd: dict[str, Any]) -> list[Cause]:
    """Kubernetes' ``ValidateCustomResourceDefinition`` (the parts minik serves)."""
    causes: list[Cause] = []
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [_required("spec")]
    group = spec.get("group")
    names: dict[str, Any] = spec["names"] if isinstance(spec.get("names"), dict) else {}
    plural = names.get("plural")
    if not group:
        causes.append(_required("spec.group"))
    elif not isinstance(group, str) or "." not in group or not _DNS1123_SUBDOMAIN.match(group):
        causes.append(_invalid("spec.group", group, "should be a domain with at least one dot"))
    name = (crd.get("metadata") or {}).get("name")
    if plural and group and name != f"{plural}.{group}":
        causes.append(_invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    scope = spec.get("scope")
    if not scope:
        causes.append(_required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        causes.append(
            errors.cause(
                "spec.scope",
                f'Unsupported value: "{scope}": supported values: "Cluster", "Namespaced"',
                "FieldValueNotSupported",
            )
        )
    causes.extend(_validate_names(names))
    causes.extend(_validate_versions(spec.get("versions"), spec))
    conversion = spec.get("conversion") or {}
    strategy = conversion.get("strategy", "None") if isinstance(conversion, dict) else None
    if strategy != "None":
        causes.append(
            errors.cause(
                "spec.conversion.strategy",
                f'Unsupported value: "{strategy}": supported values: "None"',
                "FieldValueNotSupported",
            )
        )
    return causes


def _validate_names(names: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    for key in ("plural", "singular"):
        value = names.get(key)
        if key == "plural" and not value:
            causes.append(_required("spec.names.plural"))
        elif value and (not isinstance(value, str) or not _DNS1035.match(value)):
            causes.append(
                _invalid(
                    f"spec.names.{key}",
                    value,
                    "a lowercase RFC 1123 label must consist of lower case "
                    "alphanumeric characters or '-', and must start and end with an alphanumeric character",
                )
            )
    for key in ("kind", "listKind"):
        value = names.get(key)
        if key == "kind" and not value:
            causes.append(_required("spec.names.kind"))
        elif value and (not isinstance(value, str) or not _KIND.match(value)):
            causes.append(
                _invalid(
                    f"spec.names.{key}",
                    value,
                    "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?",
                )
            )
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        causes.append(
            _invalid("spec.names.listKind", names["listKind"], "kind and listKind may not be the same")
        )
    for key in ("shortNames", "categories"):
        values = names.get(key) or []
        if not isinstance(values, list):
            causes.append(_invalid(f"spec.names.{key}", values, "must be a list of strings"))
            continue
        for i, value in enumerate(values):
            if not isinstance(value, str) or not _DNS1035.match(value):
                causes.append(
                    _invalid(
                        f"spec.names.{key}[{i}]",
                        value,
                        "a lowercase RFC 1123 label must consist of lower "
                        "case alphanumeric characters or '-'",
                    )
                )
    return causes


def _validate_versions(versions: Any, spec: dict[str, Any]) -> list[Cause]:
    if not isinstance(versions, list) or not versions:
        return [_required("spec.versions", "must have exactly one version marked as storage version")]
    causes: list[Cause] = []
    seen: set[str] = set()
    storage = 0
    for i, v in enumerate(versions):
        path = f"spec.versions[{i}]"
        if not isinstance(v, dict):
            causes.append(_invalid(path, v, "must be an object"))
            continue
        name = v.get("name")
        if not name:
            causes.append(_required(f"{path}.name"))
        elif not isinstance(name, str) or not _DNS1035.match(name):
            causes.append(
                _invalid(
                    f"{path}.name",
                    name,
                    "a DNS-1035 label must consist of lower case alphanumeric characters or '-'",
                )
            )
        elif name in seen:
            causes.append(errors.cause(f"{path}.name", f'Duplicate value: "{name}"', "FieldValueDuplicate"))
        else:
            seen.add(name)
        if v.get("storage") is True:
            storage += 1
        for flag in ("served", "storage"):
            if not isinstance(v.get(flag), bool):
                causes.append(_required(f"{path}.{flag}"))
        schema = (v.get("schema") or {}).get("openAPIV3Schema") if isinstance(v.get("schema"), dict) else None
        spath = f"{path}.schema.openAPIV3Schema"
        if schema is None:
            causes.append(_required(spath, "schemas are required"))
        else:
            causes.extend(structural_errors(schema, spath, root=True))
        causes.extend(_validate_subresources(v.get("subresources"), f"{path}.subresources"))
        for j, col in enumerate(v.get("additionalPrinterColumns") or []):
            cpath = f"{path}.additionalPrinterColumns[{j}]"
            if not isinstance(col, dict) or not col.get("name"):
                causes.append(_required(f"{cpath}.name"))
            elif not col.get("jsonPath"):
                causes.append(_required(f"{cpath}.jsonPath"))
            elif col.get("type") not in ("integer", "number", "string", "boolean", "date"):
                causes.append(
                    errors.cause(
                        f"{cpath}.type",
                        f'Unsupported value: "{col.get("type")}": supported values: "boolean", "date", '
                        '"integer", "number", "string"',
                        "FieldValueNotSupported",
                    )
                )
    if storage != 1:
        causes.append(
            _invalid(
                "spec.versions",
                _versions_names(versions),
                "must have exactly one version marked as storage version",
            )
        )
    if not any(isinstance(v, dict) and v.get("served") for v in versions):
        causes.append(
            _invalid("spec.versions", _versions_names(versions), "must have at least one served version")
        )
    return causes


def _versions_names(versions: list[Any]) -> str:
    return ",".join(str(v.get("name")) for v in versions if isinstance(v, dict))


def _validate_subresources(sub: Any, path: str) -> list[Cause]:
    if not sub:
        return []
    if not isinstance(sub, dict):
        return [_invalid(path, sub, "must be an object")]
    scale = sub.get("scale")
    causes: list[Cause] = []
    if scale is not None:
        if not isinstance(scale, dict):
            return [_invalid(f"{path}.scale", scale, "must be an object")]
        for key in ("specReplicasPath", "statusReplicasPath"):
            value = scale.get(key)
            if not value:
                causes.append(_required(f"{path}.scale.{key}"))
            elif not str(value).startswith(".spec." if key == "specReplicasPath" else ".status."):
                where = ".spec" if key == "specReplicasPath" else ".status"
                causes.append(_invalid(f"{path}.scale.{key}", value, f"should be a json path under {where}"))
    return causes


def structural_errors(schema: Any, path: str, root: bool = False) -> list[Cause]:
    """Why ``schema`` is not a structural schema (empty when it is)."""
    if not isinstance(schema, dict):
        return [_invalid(path, schema, "must be an object")]
    causes: list[Cause] = []
    for key in _FORBIDDEN:
        if key in schema:
            causes.append(errors.cause(f"{path}.{key}", "Forbidden: must not be used", "FieldValueForbidden"))
    type_ = schema.get("type")
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if root and type_ != "object":
        causes.append(
            _invalid(
                f"{path}.type",
                type_ or "",
                "must be object at the root" if type_ else "must not be empty at the root",
            )
        )
    elif not type_ and not int_or_string and not preserve:
        causes.append(_required(f"{path}.type", "must not be empty for specified object fields"))
    elif type_ and type_ not in _TYPES:
        quoted = ", ".join(f'"{t}"' for t in _TYPES)
        causes.append(
            errors.cause(
                f"{path}.type",
                f'Unsupported value: "{type_}": supported values: {quoted}',
                "FieldValueNotSupported",
            )
        )
    if int_or_string and type_:
        causes.append(
            errors.cause(
                f"{path}.type",
                "Forbidden: must be empty if x-kubernetes-int-or-string is true",
                "FieldValueForbidden",
            )
        )
    props = schema.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            causes.append(_invalid(f"{path}.properties", props, "must be a map of schemas"))
        else:
            if type_ not in (None, "object"):
                causes.append(
                    errors.cause(
                        f"{path}.properties", "Forbidden: only allowed for type object", "FieldValueForbidden"
                    )
                )
            if schema.get("additionalProperties") not in (None, False, True):
                causes.append(
                    errors.cause(
                        f"{path}.additionalProperties",
                        "Forbidden: additionalProperties and properties are mutual exclusive",
                        "FieldValueForbidden",
                    )
                )
            for key, sub in props.items():
                causes.extend(structural_errors(sub, f"{path}.properties[{key}]"))
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        causes.extend(structural_errors(additional, f"{path}.additionalProperties"))
    items = schema.get("items")
    if items is not None:
        if not isinstance(items, dict):
            causes.append(_invalid(f"{path}.items", items, "must be a schema, not a list of schemas"))
        else:
            causes.extend(structural_errors(items, f"{path}.items"))
    elif type_ == "array":
        causes.append(_required(f"{path}.items", "must be specified"))
    for key in ("required", "enum"):
        if key in schema and not isinstance(schema[key], list):
            causes.append(_invalid(f"{path}.{key}", schema[key], "must be a list"))
    if "pattern" in schema:
        try:
            re.compile(str(schema["pattern"]))
        except re.error as e:
            causes.append(
                _invalid(f"{path}.pattern", schema["pattern"], f"must be a valid regular expression: {e}")
            )
    return causes


resources_of = crd_resources


# --- custom objects --------------------------------------------------------------------------------
_META_KEYS = ("apiVersion", "kind", "metadata")


def prune(value: Any, schema: Schema | None, root: bool = False) -> None:
    """Drop, in place, the fields ``schema`` does not specify (Kubernetes' structural pruning)."""
    if (
        not isinstance(schema, dict)
        or schema.get("x-kubernetes-preserve-unknown-fields") is True
        and not (schema.get("properties") or root)
    ):
        return
    embedded = schema.get("x-kubernetes-embedded-resource") is True
    if isinstance(value, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        for key in list(value):
            if (root or embedded) and key in _META_KEYS:
                continue
            if isinstance(props, dict) and key in props:
                prune(value[key], props[key])
            elif isinstance(additional, dict):
                prune(value[key], additional)
            elif additional is True or preserve:
                continue
            else:
                del value[key]
    elif isinstance(value, list):
        for item in value:
            prune(item, schema.get("items"))


def has_defaults(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if "default" in schema:
        return True
    children = list((schema.get("properties") or {}).values())
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            children.append(schema[key])
    return any(has_defaults(c) for c in children)


def apply_defaults(value: Any, schema: Schema | None) -> None:
    """Fill, in place, the ``default:`` of every missing property (Kubernetes' structural defaulting)."""
    if not isinstance(schema, dict):
        return
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if not isinstance(sub, dict):
                continue
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            props = schema.get("properties") or {}
            for key, child in value.items():
                if key not in props:
                    apply_defaults(child, additional)
    elif isinstance(value, list):
        for item in value:
            apply_defaults(item, schema.get("items"))


def json_type(value: Any) -> str:
    """The JSON (OpenAPI) type of a decoded value: ``null``, ``boolean``, ``integer``, ``number``,
    ``string``, ``array`` or ``object``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def validate_value(value: Any, schema: Schema | None, path: str, out: list[Cause]) -> None:
    """Check ``value`` against a structural schema; append causes naming the fields to ``out``."""
    if not isinstance(schema, dict):
        return
    field = path or "<root>"
    if value is None:
        if not schema.get("nullable") and not schema.get("x-kubernetes-preserve-unknown-fields"):
            want = schema.get("type") or "string"
            out.append(
                errors.cause(
                    field,
                    f'Invalid value: "null": {field} in body must be of type {want}: "null"',
                    "FieldValueTypeInvalid",
                )
            )
        return
    actual = json_type(value)
    want = schema.get("type")
    if schema.get("x-kubernetes-int-or-string") is True:
        if actual not in ("integer", "string"):
            out.append(
                errors.cause(
                    field,
                    f'Invalid value: "{actual}": {field} in body must be of type '
                    f'integer or string: "{actual}"',
                    "FieldValueTypeInvalid",
                )
            )
            return
    elif want and not (actual == want or (want == "number" and actual == "integer")):
        out.append(
            errors.cause(
                field,
                f'Invalid value: "{actual}": {field} in body must be of type {want}: "{actual}"',
                "FieldValueTypeInvalid",
            )
        )
        return
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        quoted = ", ".join(_quote(e) for e in enum)
        out.append(
            errors.cause(
                field,
                f"Unsupported value: {_quote(value)}: supported values: {quoted}",
                "FieldValueNotSupported",
            )
        )
    if isinstance(value, str):
        pattern = schema.get("pattern")
        if pattern is not None and not re.search(str(pattern), value):
            out.append(_invalid(field, value, f"{field} in body should match '{pattern}'"))
        if "minLength" in schema and len(value) < int(schema["minLength"]):
            out.append(
                _invalid(field, value, f"{field} in body should be at least {schema['minLength']} chars long")
            )
        if "maxLength" in schema and len(value) > int(schema["maxLength"]):
            out.append(
                errors.cause(
                    field, f"Too long: may not be more than {schema['maxLength']} bytes", "FieldValueTooLong"
                )
            )
    if actual in ("integer", "number"):
        if "minimum" in schema:
            low = schema["minimum"]
            if value < low or (schema.get("exclusiveMinimum") is True and value == low):
                word = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
                out.append(_invalid(field, value, f"{field} in body should be {word} {low}"))
        if "maximum" in schema:
            high = schema["maximum"]
            if value > high or (schema.get("exclusiveMaximum") is True and value == high):
                word = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
                out.append(_invalid(field, value, f"{field} in body should be {word} {high}"))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < int(schema["minItems"]):
            out.append(
                _invalid(
                    field, len(value), f"{field} in body should have at least {schema['minItems']} items"
                )
            )
        if "maxItems" in schema and len(value) > int(schema["maxItems"]):
            out.append(
                errors.cause(
                    field,
                    f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                    "FieldValueTooMany",
                )
            )
        for i, item in enumerate(value):
            validate_value(item, schema.get("items"), f"{path}[{i}]", out)
    if isinstance(value, dict):
        for req in schema.get("required") or []:
            if req not in value:
                out.append(_required(f"{path}.{req}" if path else req))
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, child in value.items():
            if not path and key in _META_KEYS:
                continue
            sub = props.get(key) if key in props else additional if isinstance(additional, dict) else None
            validate_value(child, sub, f"{path}.{key}" if path else key, out)


def prepare(info: ResourceInfo, obj: dict[str, Any]) -> None:
    """Prune and default a custom object being written (before validation)."""
    if info.schema is not None:
        prune(obj, info.schema, root=True)
        apply_defaults(obj, info.schema)


def validate_custom(info: ResourceInfo, obj: dict[str, Any]) -> list[Cause]:
    out: list[Cause] = []
    if info.schema is not None:
        validate_value(obj, info.schema, "", out)
    return out


def for_read(info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
    """A stored custom object as the version ``info`` serves it: its apiVersion, with defaults."""
    if obj.get("apiVersion") == info.api_version and not has_defaults(info.schema):
        return obj
    out = copy.deepcopy(obj) if has_defaults(info.schema) else dict(obj)
    out["apiVersion"] = info.api_version
    if info.schema is not None:
        apply_defaults(out, info.schema)
    return out
