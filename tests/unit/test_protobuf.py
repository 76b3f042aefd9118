"""Decoding Kubernetes' protobuf request bodies (what kubectl's generators send)."""

from __future__ import annotations

from typing import Any

import pytest

from apimachinery import errors
from apiserver import protobuf


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, value: Any) -> bytes:
    """One field: ints as varints, bytes/str/nested messages length-delimited."""
    if isinstance(value, bool | int):
        return varint(number << 3) + varint(int(value))
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def msg(*fields: bytes) -> bytes:
    return b"".join(fields)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return protobuf.MAGIC + msg(field(1, msg(field(1, api_version), field(2, kind))), field(2, raw))


def test_deployment_with_maps_pointer_zero_and_defaults_left_out() -> None:
    meta = msg(field(1, "web"), field(3, ""), field(11, msg(field(1, "app"), field(2, "web"))), field(8, b""))
    container = msg(field(1, "nginx"), field(2, "nginx:1.25"))
    template = msg(
        field(1, msg(field(11, msg(field(1, "app"), field(2, "web"))))), field(2, msg(field(2, container)))
    )
    spec = msg(
        field(1, 0),  # replicas: 0 (a pointer in Go: only written when set)
        field(2, msg(field(1, msg(field(1, "app"), field(2, "web"))))),
        field(3, template),
        field(5, 0),  # minReadySeconds: a plain int32, always written
    )
    obj = protobuf.decode(
        envelope("apps/v1", "Deployment", msg(field(1, meta), field(2, spec), field(3, b"")))
    )
    assert obj == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]},
            },
        },
        "status": {},
    }


def test_secret_bytes_are_base64_and_inline_structs_are_flattened() -> None:
    secret = msg(field(1, msg(field(1, "s"))), field(2, msg(field(1, "pw"), field(2, b"\x00hi"))))
    assert protobuf.decode(envelope("v1", "Secret", secret))["data"] == {"pw": "AGhp"}

    # Volume embeds VolumeSource inline; IntOrString and Quantity have JSON forms of their own.
    volume = msg(
        field(1, "data"), field(2, msg(field(2, msg(field(1, "Memory"), field(2, msg(field(1, "64Mi")))))))
    )
    probe = msg(
        field(1, msg(field(2, msg(field(1, "/healthz"), field(2, msg(field(1, 1), field(3, "http")))))))
    )
    container = msg(field(1, "c"), field(2, "busybox"), field(10, probe))
    pod = msg(field(1, msg(field(1, "p"))), field(2, msg(field(1, volume), field(2, container))))
    spec = protobuf.decode(envelope("v1", "Pod", pod))["spec"]
    assert spec["volumes"] == [{"name": "data", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]
    assert spec["containers"][0]["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "http"}}


def test_negative_int_and_time() -> None:
    meta = msg(field(1, "x"), field(8, msg(field(1, 1704067200))))
    event = msg(field(1, meta), field(6, msg(field(1, 1704067200))), field(8, -1))
    obj = protobuf.decode(envelope("v1", "Event", event))
    assert obj["metadata"]["creationTimestamp"] == "2024-01-01T00:00:00Z"
    assert obj["firstTimestamp"] == "2024-01-01T00:00:00Z"
    assert obj["count"] == -1


def test_bad_bodies_are_bad_requests() -> None:
    with pytest.raises(errors.BadRequest):
        protobuf.decode(b'{"kind": "Pod"}')
    with pytest.raises(errors.BadRequest):
        protobuf.decode(protobuf.MAGIC + b"\x0a\xff")
    with pytest.raises(errors.BadRequest):
        protobuf.decode(envelope("v1", "NoSuchKind", b""))
