"""Secrets encrypted at rest, with a real etcd and a real ``minik-apiserver``: etcd holds
``k8s:enc:aesgcm:v1:`` ciphertext and never the plaintext, Secrets stored as plaintext before
encryption was on still read, and ``minik encryption rotate-key`` re-encrypts every Secret with a
new key without losing one."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from apiserver.encryption import default_config, write_config
from testkit.processes import APIServerProcess, EtcdProcess

SECRETS = "/api/v1/namespaces/default/secrets"
PASSWORD = base64.b64encode(b"correct horse battery staple").decode()
LEGACY_KEY = "/registry/core/secrets/default/legacy"


def etcd_put(etcd: EtcdProcess, key: str, value: bytes) -> None:
    body = {"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(value).decode()}
    httpx.post(f"{etcd.url}/v3/kv/put", json=body, timeout=10).raise_for_status()


def etcd_get(etcd: EtcdProcess, key: str) -> bytes:
    body = {"key": base64.b64encode(key.encode()).decode()}
    resp = httpx.post(f"{etcd.url}/v3/kv/range", json=body, timeout=10)
    resp.raise_for_status()
    kvs = resp.json().get("kvs") or []
    assert kvs, f"{key} is not in etcd"
    return base64.b64decode(kvs[0]["value"])


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("enc") / "encryption-config.yaml", default_config())


@pytest.fixture(scope="module")
def server(etcd: EtcdProcess, config_file: Path) -> Iterator[APIServerProcess]:
    # a Secret written before encryption was turned on: plain JSON in etcd
    legacy = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "legacy",
            "namespace": "default",
            "uid": "0b9c1a52-3c1e-4d0e-9a43-6f7f7b0c0001",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "type": "Opaque",
        "data": {"password": PASSWORD},
    }
    etcd_put(etcd, LEGACY_KEY, json.dumps(legacy).encode())
    s = APIServerProcess(etcd.url)
    try:
        s.start(extra=["--encryption-provider-config", str(config_file)])
        yield s
    finally:
        s.cleanup()


@pytest.fixture()
def client(server: APIServerProcess) -> Iterator[httpx.Client]:
    with server.http() as c:
        yield c


def secret(name: str, value: str = PASSWORD) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {"password": value}}


def test_etcd_holds_ciphertext_only(client: httpx.Client, etcd: EtcdProcess) -> None:
    r = client.post(SECRETS, json=secret("db"))
    assert r.status_code == 201, r.text
    raw = etcd_get(etcd, "/registry/core/secrets/default/db")
    assert raw.startswith(b"k8s:enc:aesgcm:v1:key1:")
    for plain in (PASSWORD.encode(), b"correct horse", b'"kind"', b"Secret", b"password"):
        assert plain not in raw
    got = client.get(f"{SECRETS}/db").json()
    assert got["data"] == {"password": PASSWORD}
    # an update is encrypted too
    got["data"]["user"] = base64.b64encode(b"admin").decode()
    r = client.put(f"{SECRETS}/db", json=got)
    assert r.status_code == 200, r.text
    raw = etcd_get(etcd, "/registry/core/secrets/default/db")
    assert raw.startswith(b"k8s:enc:aesgcm:v1:key1:") and b"YWRtaW4" not in raw


def test_lists_pages_and_watches_read_plaintext(client: httpx.Client) -> None:
    for name in ("page-a", "page-b", "page-c"):
        assert client.post(SECRETS, json=secret(name)).status_code == 201
    names: list[str] = []
    params: dict[str, str] = {"limit": "1"}
    while True:  # paged reads straight from etcd
        page = client.get(SECRETS, params=params).json()
        names += [i["metadata"]["name"] for i in page["items"]]
        assert all(i["data"]["password"] == PASSWORD for i in page["items"])
        if not page["metadata"].get("continue"):
            break
        params = {"limit": "1", "continue": page["metadata"]["continue"]}
    assert {"page-a", "page-b", "page-c", "legacy"} <= set(names)
    cached = client.get(SECRETS, params={"resourceVersion": "0"}).json()  # the watch cache
    assert {i["metadata"]["name"]: i["data"]["password"] for i in cached["items"]}["page-b"] == PASSWORD
    with client.stream("GET", SECRETS, params={"watch": "1", "timeoutSeconds": "2"}) as resp:
        events = [json.loads(line) for line in resp.iter_lines() if line]
    added = {e["object"]["metadata"]["name"]: e["object"] for e in events if e["type"] == "ADDED"}
    assert added["page-c"]["data"]["password"] == PASSWORD


def test_plaintext_written_before_still_reads_and_an_update_encrypts_it(
    client: httpx.Client, etcd: EtcdProcess
) -> None:
    assert etcd_get(etcd, LEGACY_KEY).startswith(b"{")
    got = client.get(f"{SECRETS}/legacy")
    assert got.status_code == 200, got.text
    assert got.json()["data"] == {"password": PASSWORD}
    # a no-op update writes it again, now encrypted (how the key rotation re-encrypts)
    r = client.put(f"{SECRETS}/legacy", json=got.json())
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["resourceVersion"] != got.json()["metadata"]["resourceVersion"]
    assert etcd_get(etcd, LEGACY_KEY).startswith(b"k8s:enc:aesgcm:v1:key1:")
    assert client.get(f"{SECRETS}/legacy").json()["data"] == {"password": PASSWORD}


def test_other_resources_stay_plain(client: httpx.Client, etcd: EtcdProcess) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain"}, "data": {"k": "v"}}
    assert client.post("/api/v1/namespaces/default/configmaps", json=cm).status_code == 201
    assert etcd_get(etcd, "/registry/core/configmaps/default/plain").startswith(b"{")


def minik(*args: str, kubeconfig: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "--kubeconfig", kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_key_rotation_loses_no_secret(
    client: httpx.Client, etcd: EtcdProcess, server: APIServerProcess, config_file: Path
) -> None:
    client.post("/api/v1/namespaces", json={"metadata": {"name": "rotation"}})
    values = {}
    for i in range(25):
        ns = "rotation" if i % 2 else "default"
        value = base64.b64encode(f"value-{i}".encode()).decode()
        values[(ns, f"r{i}")] = value
        r = client.post(f"/api/v1/namespaces/{ns}/secrets", json=secret(f"r{i}", value))
        assert r.status_code == 201, r.text
    before = {
        (s["metadata"]["namespace"], s["metadata"]["name"]): s["data"]
        for s in client.get("/api/v1/secrets").json()["items"]
    }
    flags = ("--config", str(config_file), "--etcd-servers", etcd.url)
    result = minik("encryption", "rotate-key", *flags, kubeconfig=server.kubeconfig)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "key rotation done: Secrets are encrypted with aesgcm:key2" in result.stdout

    keys = yaml.safe_load(config_file.read_text())["resources"][0]["providers"][0]["aesgcm"]["keys"]
    assert [k["name"] for k in keys] == ["key2"]  # the old key is gone
    after = {
        (s["metadata"]["namespace"], s["metadata"]["name"]): s["data"]
        for s in client.get("/api/v1/secrets").json()["items"]
    }
    assert after == before  # none lost, none changed
    for (ns, name), value in values.items():
        assert after[(ns, name)] == {"password": value}
        raw = etcd_get(etcd, f"/registry/core/secrets/{ns}/{name}")
        assert raw.startswith(b"k8s:enc:aesgcm:v1:key2:")
    # status reads etcd: every Secret under the new key
    status = minik("encryption", "status", *flags, kubeconfig=server.kubeconfig)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Encryption Status: Enabled" in status.stdout
    assert "Active key: aesgcm:key2" in status.stdout
    assert f"  aesgcm:key2: {len(after)}" in status.stdout
    assert "key1" not in status.stdout


def test_a_second_rotation_in_place_keeps_the_files_inode(
    client: httpx.Client, etcd: EtcdProcess, server: APIServerProcess, config_file: Path
) -> None:
    inode = config_file.stat().st_ino
    before = {s["metadata"]["name"]: s["data"] for s in client.get("/api/v1/secrets").json()["items"]}
    flags = ("--config", str(config_file), "--etcd-servers", etcd.url, "--in-place")
    result = minik("encryption", "rotate-key", *flags, kubeconfig=server.kubeconfig)
    assert result.returncode == 0, result.stdout + result.stderr
    assert config_file.stat().st_ino == inode
    keys = yaml.safe_load(config_file.read_text())["resources"][0]["providers"][0]["aesgcm"]["keys"]
    assert [k["name"] for k in keys] == ["key3"]
    after = {s["metadata"]["name"]: s["data"] for s in client.get("/api/v1/secrets").json()["items"]}
    assert after == before
    assert etcd_get(etcd, "/registry/core/secrets/default/db").startswith(b"k8s:enc:aesgcm:v1:key3:")
