"""The kubeconfig's servers.minik.io cluster extension: what it accepts and how bad input fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from apimachinery.kubeconfig import SERVERS_EXTENSION, ConfigError, load_config

A, B, C = "http://a.test:8080", "https://b.test:6443", "http://c.test:8080"


def kubeconfig(tmp_path: Path, extensions: Any) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "clusters": [{"name": "minik", "cluster": {"server": A, "extensions": extensions}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "minik", "user": "u"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def servers_ext(servers: Any) -> list[dict[str, Any]]:
    return [{"name": "other", "extension": 1}, {"name": SERVERS_EXTENSION, "extension": {"servers": servers}}]


def test_a_comma_joined_entry_is_split_into_urls(tmp_path: Path) -> None:
    config = load_config(kubeconfig(tmp_path, servers_ext([f"{B}, {C}"])))
    assert config.servers == (A, B, C)


def test_no_extensions_means_no_fallbacks(tmp_path: Path) -> None:
    assert load_config(kubeconfig(tmp_path, None)).servers == (A,)


@pytest.mark.parametrize(
    ("extensions", "field"),
    [
        (5, "cluster .minik.: extensions must be a list"),
        ({"name": SERVERS_EXTENSION}, "extensions must be a list"),
        (["servers.minik.io"], r"extensions\[0\] must be a mapping"),
        (servers_ext(None), r"extensions\[1\] \(servers.minik.io\): extension.servers needs a list"),
        (servers_ext([B, 7]), r"extension.servers\[1\] must be a URL string"),
        (servers_ext(["b.test:6443"]), r"extension.servers\[0\]: 'b.test:6443' is not an http"),
        (servers_ext(["ftp://b.test"]), r"extension.servers\[0\]: 'ftp://b.test' is not an http"),
        (servers_ext([f"{B},c.test"]), r"extension.servers\[0\]: 'c.test' is not an http"),
        (servers_ext(["http://[::1"]), r"extension.servers\[0\]: 'http://\[::1' is not an http"),
        (servers_ext([" , "]), "extension.servers lists no server URL"),
    ],
)
def test_bad_extensions_are_a_config_error_naming_the_field(
    tmp_path: Path, extensions: Any, field: str
) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config(kubeconfig(tmp_path, extensions))
