"""EncryptionConfiguration parsing and the value transformer (Kubernetes' storage formats)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from apiserver.encryption import (
    ConfigError,
    EncryptionConfig,
    Transformer,
    TransformError,
    default_config,
    ensure_config,
    write_config,
)

KEY = b"/registry/core/secrets/default/s1"
PLAIN = b'{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}'


def secret() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def config(*providers: dict[str, Any], resources: tuple[str, ...] = ("secrets",)) -> dict[str, Any]:
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": list(resources), "providers": list(providers)}],
    }


def aesgcm(*keys: tuple[str, str]) -> dict[str, Any]:
    return {"aesgcm": {"keys": [{"name": n, "secret": s} for n, s in keys]}}


def test_writes_use_the_first_key_and_read_back() -> None:
    cfg = EncryptionConfig.parse(config(aesgcm(("key1", secret())), {"identity": {}}))
    t = cfg.transformer_for(KEY)
    assert t is not None
    stored = t.to_storage(KEY, PLAIN)
    assert stored.startswith(b"k8s:enc:aesgcm:v1:key1:")
    assert b"aHVudGVyMg" not in stored and b"Secret" not in stored
    assert len(stored) == len(b"k8s:enc:aesgcm:v1:key1:") + 12 + len(PLAIN) + 16
    assert t.from_storage(KEY, stored) == (PLAIN, False)
    assert t.to_storage(KEY, PLAIN) != stored  # a fresh nonce each write


def test_plaintext_still_reads_and_is_stale() -> None:
    t = EncryptionConfig.parse(config(aesgcm(("key1", secret())), {"identity": {}})).transformer_for(KEY)
    assert t is not None
    assert t.from_storage(KEY, PLAIN) == (PLAIN, True)


def test_an_old_key_reads_and_marks_the_value_stale() -> None:
    old, new = secret(), secret()
    before = EncryptionConfig.parse(config(aesgcm(("key1", old)))).transformer_for(KEY)
    after = EncryptionConfig.parse(config(aesgcm(("key2", new), ("key1", old)))).transformer_for(KEY)
    assert before is not None and after is not None
    stored = before.to_storage(KEY, PLAIN)
    assert after.from_storage(KEY, stored) == (PLAIN, True)
    assert after.to_storage(KEY, PLAIN).startswith(b"k8s:enc:aesgcm:v1:key2:")


def test_the_etcd_key_is_authenticated() -> None:
    t = EncryptionConfig.parse(config(aesgcm(("key1", secret())))).transformer_for(KEY)
    assert t is not None
    stored = t.to_storage(KEY, PLAIN)
    with pytest.raises(TransformError, match="authentication"):
        t.from_storage(b"/registry/core/secrets/default/other", stored)


def test_a_removed_key_or_encrypted_data_without_a_key_fails() -> None:
    t1 = EncryptionConfig.parse(config(aesgcm(("key1", secret())))).transformer_for(KEY)
    t2 = EncryptionConfig.parse(config(aesgcm(("key2", secret())), {"identity": {}})).transformer_for(KEY)
    assert t1 is not None and t2 is not None
    with pytest.raises(TransformError, match="identity transformer tried to read encrypted data"):
        t2.from_storage(KEY, t1.to_storage(KEY, PLAIN))
    with pytest.raises(TransformError, match="no matching prefix found"):
        t1.from_storage(KEY, PLAIN)


def test_aescbc_round_trip() -> None:
    t = EncryptionConfig.parse(
        config({"aescbc": {"keys": [{"name": "k", "secret": secret()}]}})
    ).transformer_for(KEY)
    assert t is not None
    stored = t.to_storage(KEY, PLAIN)
    assert stored.startswith(b"k8s:enc:aescbc:v1:k:")
    assert t.from_storage(KEY, stored) == (PLAIN, False)


def test_identity_first_writes_plaintext() -> None:
    t = EncryptionConfig.parse(config({"identity": {}}, aesgcm(("key1", secret())))).transformer_for(KEY)
    assert t is not None
    assert t.to_storage(KEY, PLAIN) == PLAIN


@pytest.mark.parametrize(
    ("resources", "key", "applies"),
    [
        (("secrets",), b"/registry/core/secrets/ns/a", True),
        (("secrets",), b"/registry/core/configmaps/ns/a", False),
        (("secrets",), b"/registry/ranges/serviceips", False),
        (("deployments.apps",), b"/registry/apps/deployments/ns/a", True),
        (("*.apps",), b"/registry/apps/statefulsets/ns/a", True),
        (("*.apps",), b"/registry/core/secrets/ns/a", False),
        (("*.",), b"/registry/core/configmaps/ns/a", True),
        (("*.*",), b"/registry/example.com/widgets/ns/a", True),
    ],
)
def test_which_keys_a_rule_covers(resources: tuple[str, ...], key: bytes, applies: bool) -> None:
    cfg = EncryptionConfig.parse(config(aesgcm(("k", secret())), resources=resources))
    assert (cfg.transformer_for(key) is not None) is applies


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(kind="Other"), 'kind: Invalid value: "Other"'),
        (lambda c: c.update(resources=[]), "resources: Required value"),
        (
            lambda c: c["resources"][0]["providers"][0]["aesgcm"]["keys"][0].update(secret="c2hvcnQ="),
            "secret is not of the expected length, got 5, expected one of [16 24 32]",
        ),
        (
            lambda c: c["resources"][0]["providers"][0]["aesgcm"]["keys"][0].update(secret="not base64!"),
            "must be base64 encoded",
        ),
        (lambda c: c["resources"][0]["providers"][0]["aesgcm"].update(keys=[]), "keys: Required value"),
        (lambda c: c["resources"][0].update(providers=[{"secretbox": {"keys": []}}]), "Unsupported value"),
        (lambda c: c["resources"][0].update(providers=[{"rot13": {}}]), 'Unsupported value: "rot13"'),
        (lambda c: c["resources"][0].update(resources=["secrets", "secrets"]), 'Duplicate value: "secrets"'),
    ],
)
def test_invalid_configurations_name_the_field(change: Any, message: str) -> None:
    c = config(aesgcm(("key1", secret())))
    change(c)
    with pytest.raises(ConfigError) as e:
        EncryptionConfig.parse(c)
    assert message in str(e.value)
    for entry in c["resources"]:  # keys never appear in messages
        for k in entry["providers"][0].get("aesgcm", {}).get("keys", []):
            assert k["secret"] not in str(e.value)


def test_the_transformer_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "enc.yaml"
    old = secret()
    write_config(path, config(aesgcm(("key1", old))))
    t = Transformer(path)
    stored = t.to_storage(KEY, PLAIN)
    assert not t.reload_if_changed()
    write_config(path, config(aesgcm(("key2", secret()), ("key1", old))))
    assert t.reload_if_changed()
    assert t.to_storage(KEY, PLAIN).startswith(b"k8s:enc:aesgcm:v1:key2:")
    assert t.from_storage(KEY, stored) == (PLAIN, True)
    path.write_text("kind: nonsense\n")  # a broken file keeps the configuration in force
    assert not t.reload_if_changed()
    assert t.to_storage(KEY, PLAIN).startswith(b"k8s:enc:aesgcm:v1:key2:")
    # values of other resources pass through untouched
    assert t.to_storage(b"/registry/core/configmaps/default/c", PLAIN) == PLAIN


def test_ensure_config_makes_one_key_and_keeps_it(tmp_path: Path) -> None:
    path = ensure_config(tmp_path / "state" / "encryption-config.yaml")
    first = path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    data = yaml.safe_load(first)
    assert data == default_config(secret=data["resources"][0]["providers"][0]["aesgcm"]["keys"][0]["secret"])
    assert len(base64.b64decode(data["resources"][0]["providers"][0]["aesgcm"]["keys"][0]["secret"])) == 32
    ensure_config(path)
    assert path.read_text() == first


# --- minik encryption rotate-key: the configuration edits -------------------------------------------
def test_rotation_puts_a_new_key_first_then_drops_the_old_ones() -> None:
    from cli.commands.encryption import next_key_name, with_new_key, without_keys, write_key

    old = secret()
    start = config(aesgcm(("key1", old)), {"identity": {}})
    assert write_key(start) == ("aesgcm", "key1")
    assert next_key_name(["key1"]) == "key2" and next_key_name(["a", "key9", "key10"]) == "key11"
    assert next_key_name([]) == "key1"
    rotated, previous = with_new_key(start, "key2", secret())
    assert (
        previous == ["key1"] and start["resources"][0]["providers"][0]["aesgcm"]["keys"][0]["name"] == "key1"
    )
    assert [k["name"] for k in rotated["resources"][0]["providers"][0]["aesgcm"]["keys"]] == ["key2", "key1"]
    EncryptionConfig.parse(rotated)
    done = without_keys(rotated, previous)
    assert [k["name"] for k in done["resources"][0]["providers"][0]["aesgcm"]["keys"]] == ["key2"]
    assert done["resources"][0]["providers"][1] == {"identity": {}}


def test_rotation_needs_encryption_on() -> None:
    from cli.commands.encryption import with_new_key, write_key
    from cli.kube import CLIError

    off = config({"identity": {}}, aesgcm(("key1", secret())))
    assert write_key(off) is None
    with pytest.raises(CLIError, match="first provider for secrets is identity"):
        with_new_key(off, "key2", secret())


def test_stored_key_names_the_provider_and_key() -> None:
    from cli.commands.encryption import stored_key

    assert stored_key(b"k8s:enc:aesgcm:v1:key2:\x00\x01") == "aesgcm:key2"
    assert stored_key(b'{"kind":"Secret"}') == "identity"


def test_the_clusters_etcd_is_read_over_tls_when_its_pki_has_a_client_certificate(tmp_path: Path) -> None:
    import json

    from cli.commands.encryption import etcd_reader

    (tmp_path / "config.json").write_text(json.dumps({"etcd_port": 12379}))
    assert etcd_reader(tmp_path, None, None, None, None).url == "http://127.0.0.1:12379"
    (tmp_path / "pki" / "etcd").mkdir(parents=True)
    for name in ("etcd/ca.crt", "apiserver-etcd-client.crt", "apiserver-etcd-client.key"):
        (tmp_path / "pki" / name).write_text("")
    reader = etcd_reader(tmp_path, None, None, None, None)
    assert reader.url == "https://127.0.0.1:12379"
    assert reader.tls == (
        str(tmp_path / "pki" / "etcd" / "ca.crt"),
        str(tmp_path / "pki" / "apiserver-etcd-client.crt"),
        str(tmp_path / "pki" / "apiserver-etcd-client.key"),
    )
    given = etcd_reader(tmp_path, "https://10.0.0.2:2379,https://10.0.0.3:2379", "ca.pem", None, None)
    assert given.url == "https://10.0.0.2:2379" and given.tls == ("ca.pem", None, None)


def test_an_in_place_rewrite_keeps_the_inode_and_a_cut_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "enc.yaml"
    old = secret()
    write_config(path, config(aesgcm(("key1", old))))
    inode = path.stat().st_ino
    t = Transformer(path)
    path.write_text("")  # what a reader may catch between the truncation and the write
    assert not t.reload_if_changed()
    write_config(path, config(aesgcm(("key2", secret()), ("key1", old))), in_place=True)
    assert path.stat().st_ino == inode  # a single-file bind mount sees the new content
    assert t.reload_if_changed()
    assert t.to_storage(KEY, PLAIN).startswith(b"k8s:enc:aesgcm:v1:key2:")
