"""Decoding Kubernetes' protobuf wire format (``application/vnd.kubernetes.protobuf``) into JSON.

kubectl v1.32 sends the objects of its generators (``kubectl create namespace|deployment|secret|
configmap|service|job …``) as protobuf, with no fallback to JSON when the server answers 415.  The
API server therefore accepts protobuf request bodies and turns them into the JSON form it stores.
Responses stay JSON: every client that sends protobuf also accepts JSON.

The body is the 4-byte magic ``k8s\\x00`` and a ``runtime.Unknown`` envelope (``typeMeta`` with
apiVersion and kind, ``raw`` the object's message).  Field numbers and types come from
``protobuf.json``: the message descriptors of Kubernetes' ``generated.proto`` files, extracted from
the descriptors every Kubernetes Go binary embeds (``python -m apiserver.protobuf
/usr/bin/kubectl`` regenerates it).

The wire format does not say which Go fields are pointers: a non-pointer scalar is always written,
even when zero, and Go's JSON encoder then drops it (``omitempty``).  Zero scalars are therefore
dropped, except for the optional (pointer) fields of :data:`KEEP_ZERO`, where zero is a value a
user chose (``replicas: 0``, ``terminationGracePeriodSeconds: 0``, ``automountServiceAccountToken:
false``).
"""

from __future__ import annotations

import base64
import datetime
import functools
import gzip
import json
import re
import sys
import zlib
from pathlib import Path
from typing import Any

from apimachinery import errors

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
TABLE_FILE = Path(__file__).with_name("protobuf.json")

_META = "k8s.io.apimachinery.pkg.apis.meta.v1"
TIME = f"{_META}.Time"
MICRO_TIME = f"{_META}.MicroTime"
DURATION = f"{_META}.Duration"
FIELDS_V1 = f"{_META}.FieldsV1"
QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
RAW_EXTENSION = "k8s.io.apimachinery.pkg.runtime.RawExtension"

# Optional (pointer) fields whose zero value differs from "not set".
KEEP_ZERO = frozenset(
    {
        "replicas",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
        "terminationGracePeriodSeconds",
        "activeDeadlineSeconds",
        "parallelism",
        "completions",
        "backoffLimit",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
        "ttlSecondsAfterFinished",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
        "startingDeadlineSeconds",
        "stabilizationWindowSeconds",  # an HPA's behavior: 0 is "no stabilization"
        "suspend",
        "immutable",
        "automountServiceAccountToken",
        "enableServiceLinks",
        "optional",
        "privileged",
        "readOnlyRootFilesystem",
        "runAsNonRoot",
        "runAsUser",
        "runAsGroup",
        "fsGroup",
        "allowPrivilegeEscalation",
        "hostUsers",
        "shareProcessNamespace",
        "setHostnameAsFQDN",
        "defaultMode",
        "mode",
        "publishNotReadyAddresses",
        "allocateLoadBalancerNodePorts",
        "gracePeriodSeconds",
        "orphanDependents",
        "minAvailable",
        "maxUnavailable",
        "maxSurge",
        "partition",
        "expirationSeconds",
        "ready",
        "serving",
        "terminating",
    }
)

# Wire types
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


@functools.cache
def table() -> dict[str, dict[int, list[Any]]]:
    """Message name -> field number -> ``[json name, type, repeated, inline]``.

    ``type`` is a scalar type (``string``, ``int64``, ``bool``, ``bytes``, …), a message name, or
    ``["map", key type, value type]``.  ``inline`` marks a Go struct embedded with
    ``json:",inline"`` (``Volume.volumeSource``, ``Probe.handler``, ``IngressRule.ingressRuleValue``,
    ``ConfigMapKeySelector.localObjectReference``, …): its fields belong to the parent in JSON.
    """
    with TABLE_FILE.open(encoding="utf-8") as f:
        loaded: dict[str, dict[str, list[Any]]] = json.load(f)
    return {msg: {int(num): field for num, field in fields.items()} for msg, fields in loaded.items()}


def message_name(api_version: str, kind: str) -> str:
    """``apps/v1`` + ``Deployment`` -> ``k8s.io.api.apps.v1.Deployment``."""
    group, _, version = api_version.rpartition("/")
    if kind in ("DeleteOptions", "Status", "ListOptions", "GetOptions") or group == "meta.k8s.io":
        return f"{_META}.{kind}"
    package = group.split(".")[0] if group else "core"
    return f"k8s.io.api.{package}.{version}.{kind}"


def is_protobuf(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == CONTENT_TYPE


# --------------------------------------------------------------------------------------------
# Wire format


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of every field of a message, in order."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire == _LEN:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            value, pos = data[pos : pos + length], pos + length
        elif wire == _I64:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == _I32:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _signed(value: int, bits: int) -> int:
    value &= (1 << 64) - 1
    if value >= 1 << 63:
        value -= 1 << 64
    if bits == 32:
        value = (value + (1 << 31)) % (1 << 32) - (1 << 31)
    return value


def _scalar(type_: str, wire: int, value: Any) -> Any:
    if type_ == "string":
        return bytes(value).decode("utf-8")
    if type_ == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if type_ == "bool":
        return bool(value)
    if type_ in ("int64", "int32"):
        return _signed(value, 64 if type_ == "int64" else 32)
    if type_ in ("uint64", "uint32"):
        return int(value)
    if type_ in ("double", "float"):
        import struct

        return struct.unpack("<d" if wire == _I64 else "<f", value)[0]
    raise ValueError(f"unsupported scalar type {type_}")


def _packed(type_: str, data: bytes) -> list[Any]:
    values, pos = [], 0
    while pos < len(data):
        v, pos = _varint(data, pos)
        values.append(_scalar(type_, _VARINT, v))
    return values


def _rfc3339(seconds: int, nanos: int, micro: bool) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    if micro:
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _special(name: str, data: bytes) -> tuple[bool, Any]:
    """Types whose JSON form is not an object of their fields."""
    if name in (TIME, MICRO_TIME):
        f = {n: v for n, _, v in _fields(data)}
        seconds, nanos = _signed(f.get(1, 0), 64), f.get(2, 0)
        if not seconds and not nanos:
            return True, None
        return True, _rfc3339(seconds, nanos, name == MICRO_TIME)
    if name == QUANTITY:
        f = {n: v for n, _, v in _fields(data)}
        return True, bytes(f.get(1, b"")).decode()
    if name == INT_OR_STRING:
        f = {n: v for n, _, v in _fields(data)}
        if f.get(1, 0) == 1:
            return True, bytes(f.get(3, b"")).decode()
        return True, _signed(f.get(2, 0), 32)
    if name in (RAW_EXTENSION, FIELDS_V1):
        f = {n: v for n, _, v in _fields(data)}
        raw = bytes(f.get(1, b""))
        return True, (json.loads(raw) if raw.strip() else None)
    if name == DURATION:
        f = {n: v for n, _, v in _fields(data)}
        return True, f"{_signed(f.get(1, 0), 64) / 1e9:g}s"
    if name.endswith(".ExtraValue"):  # Go's ``type ExtraValue []string``: a JSON list of strings
        return True, [bytes(v).decode("utf-8") for n, _, v in _fields(data) if n == 1]
    return False, None


def _is_zero(value: Any) -> bool:
    return value is None or value == "" or value is False or (isinstance(value, int) and value == 0)


def decode_message(name: str, data: bytes) -> Any:
    special, value = _special(name, data)
    if special:
        return value
    fields = table().get(name)
    if fields is None:
        raise ValueError(f"no protobuf descriptor for {name}")
    out: dict[str, Any] = {}
    for number, wire, raw in _fields(data):
        spec = fields.get(number)
        if spec is None:
            continue  # unknown field: skipped, as the Go decoder does
        key, type_, repeated, inline = spec
        if isinstance(type_, list):  # map<key, value>
            entry = {n: (w, v) for n, w, v in _fields(raw)}
            k_wire, k_raw = entry.get(1, (_LEN, b""))
            v_wire, v_raw = entry.get(2, (_LEN, b""))
            map_key = _scalar(type_[1], k_wire, k_raw)
            if type_[2] in table() or "." in type_[2]:
                map_value = decode_message(type_[2], v_raw)
            else:
                map_value = _scalar(type_[2], v_wire, v_raw)
            out.setdefault(key, {})[map_key] = map_value
            continue
        if "." in type_:
            item = decode_message(type_, raw)
        elif repeated and wire == _LEN and type_ not in ("string", "bytes"):
            out.setdefault(key, []).extend(_packed(type_, raw))
            continue
        else:
            item = _scalar(type_, wire, raw)
        if repeated:
            out.setdefault(key, []).append(item)
        elif "." in type_:
            if inline and isinstance(item, dict):
                out.update(item)
            elif item is not None:
                out[key] = item
        elif not _is_zero(item) or key in KEEP_ZERO:
            out[key] = item
    return out


def decode(raw: bytes) -> dict[str, Any]:
    """A protobuf request body (magic + ``runtime.Unknown``) as the JSON object it stands for."""
    if not raw.startswith(MAGIC):
        raise errors.BadRequest("the body of the request could not be decoded: missing protobuf magic prefix")
    try:
        envelope = {n: v for n, _, v in _fields(raw[len(MAGIC) :])}
        type_meta = {n: bytes(v).decode() for n, _, v in _fields(envelope.get(1, b""))}
        api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
        encoding = bytes(envelope.get(3, b"")).decode()
        body = bytes(envelope.get(2, b""))
        if encoding == "gzip":
            body = gzip.decompress(body)
        obj = decode_message(message_name(api_version, kind), body)
    except errors.StatusError:
        raise
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise errors.BadRequest(f"the body of the request could not be decoded: protobuf: {exc}") from None
    if not isinstance(obj, dict):
        raise errors.BadRequest("the body of the request could not be decoded: protobuf: not an object")
    return {"apiVersion": api_version, "kind": kind, **obj}


# --------------------------------------------------------------------------------------------
# Regenerating protobuf.json from the descriptors embedded in a Kubernetes Go binary

_PACKAGES = re.compile(
    r"^k8s\.io\.(api\.(core|apps|batch|networking|coordination|storage|policy|autoscaling|"
    r"discovery|events|rbac|scheduling|authentication|authorization|certificates)\.v1|api\.autoscaling\.v2|"
    r"apimachinery\.pkg\.(apis\.meta\.v1|api\.resource|"
    r"util\.intstr|runtime))$"
)
_SCALARS = {
    1: "double",
    2: "float",
    3: "int64",
    4: "uint64",
    5: "int32",
    8: "bool",
    9: "string",
    12: "bytes",
    13: "uint32",
    17: "int32",
    18: "int64",
}


def _descriptor_messages(package: str, prefix: str, messages: list[bytes], out: dict[str, Any]) -> None:
    for msg in messages:
        f = _fields(msg)
        name = next(bytes(v).decode() for n, _, v in f if n == 1)
        full = f"{prefix}.{name}"
        nested = [bytes(v) for n, _, v in f if n == 3]
        maps: dict[str, list[str]] = {}
        for entry in nested:
            ef = _fields(entry)
            ename = next(bytes(v).decode() for n, _, v in ef if n == 1)
            kv = {}
            for n, _, v in ef:
                if n == 2:
                    fd = {fn: fv for fn, _, fv in _fields(v)}
                    kv[fd[3]] = _field_type(fd)
            maps[f"{full}.{ename}"] = ["map", kv.get(1, "string"), kv.get(2, "string")]
        fields: dict[str, list[Any]] = {}
        for n, _, v in f:
            if n != 2:
                continue
            fd = {fn: fv for fn, _, fv in _fields(v)}
            type_ = _field_type(fd)
            if isinstance(type_, str) and type_ in maps:
                type_ = maps[type_]
            fields[str(fd[3])] = [
                bytes(fd[1]).decode(),
                type_,
                fd.get(4) == 3 and not isinstance(type_, list),
            ]
        out[full] = fields


def _field_type(fd: dict[int, Any]) -> Any:
    if fd.get(5) in (11, 14):
        return bytes(fd[6]).decode().lstrip(".")
    return _SCALARS[fd[5]]


def _openapi_name(message: str) -> str:
    """``k8s.io.api.core.v1.Volume`` -> ``io.k8s.api.core.v1.Volume`` (the OpenAPI schema's name)."""
    return "io.k8s." + message[len("k8s.io.") :]


def _mark_inline(messages: dict[str, Any]) -> None:
    """A message-typed field the kind's OpenAPI schema does not name is a Go ``,inline`` embedding."""
    from apiserver import openapi

    schemas = openapi.schemas()
    for message, fields in messages.items():
        properties = schemas.get(_openapi_name(message), {}).get("properties")
        for spec in fields.values():
            name, type_ = spec[0], spec[1]
            inline = bool(
                properties is not None
                and name not in properties
                and isinstance(type_, str)
                and type_ in messages
            )
            spec.append(inline)


def generate(binary: str) -> dict[str, Any]:
    data = Path(binary).read_bytes()
    out: dict[str, Any] = {}
    for match in re.finditer(rb"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff", data):
        try:
            descriptor = zlib.decompressobj(31).decompress(data[match.start() : match.start() + 4_000_000])
            fields = _fields(descriptor)
        except (zlib.error, ValueError):
            continue
        package = next((bytes(v).decode() for n, _, v in fields if n == 2), "")
        if not _PACKAGES.match(package):
            continue
        _descriptor_messages(package, package, [bytes(v) for n, _, v in fields if n == 4], out)
    _mark_inline(out)
    return dict(sorted(out.items()))


if __name__ == "__main__":
    result = generate(sys.argv[1] if len(sys.argv) > 1 else "/usr/bin/kubectl")
    TABLE_FILE.write_text(json.dumps(result, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{len(result)} messages written to {TABLE_FILE}")
