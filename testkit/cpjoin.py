"""A control-plane join that fails, for the unit tests of ``minik join --control-plane``: the
files a first control plane shares (its CAs, service-account keys and encryption config, made in a
directory of the test's own) and ``cli.join.join_control_plane`` with discovery, the cluster's
configuration and the shared files given instead of fetched."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from apimachinery.pki import PKI
from cli import join as join_mod
from cli import uploadcerts as uc
from testkit.processes import free_port


def first_control_plane(root: Path) -> Path:
    """``root`` with what a first control plane shares: the cluster CA, the service-account keys,
    the etcd CA and the encryption config."""
    from cli.supervisor import ensure_encryption_config

    pki = PKI(root / "pki")
    pki.ensure_ca()
    pki.service_account_keys()
    PKI(root / "pki" / "etcd").ensure_ca("minik-etcd-ca")
    ensure_encryption_config(root / "encryption-config.yaml")
    return root


def failed_join(
    monkeypatch: pytest.MonkeyPatch,
    state: Path,
    files: dict[str, bytes],
    ca_pem: str,
    config: uc.ClusterConfig,
) -> None:
    """Joins node ``cp-2`` as a control plane with its state in ``state``; discovery answers
    ``ca_pem``, the cluster's configuration is ``config`` and the uploaded files ``files``.  The join
    must exit with 1."""
    monkeypatch.setattr(join_mod, "discover", lambda *a, **k: {"ca_pem": ca_pem})
    monkeypatch.setattr(join_mod, "fetch_cluster_config", lambda *a: config)
    monkeypatch.setattr(join_mod, "fetch_shared_files", lambda *a: files)
    base = {
        "node_name": "cp-2",
        "advertise_address": "127.0.0.1",
        "api_port": free_port(),
        "etcd_port": free_port(),
    }
    with pytest.raises(typer.Exit) as exc:
        join_mod.join_control_plane(
            "https://127.0.0.1:1", "abcdef.0123456789abcdef", [], "ab" * 32, base, state, 5
        )
    assert exc.value.exit_code == 1
