"""``minik etcd snapshot save|restore`` against the etcd ``minik up`` would run (its argv, TLS and
certificates from a state directory): a key written before the save is back after the restore, one
written after it is gone, the old data is kept aside, and a running cluster is not restored over."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli import supervisor
from cli.commands.etcd import etcdctl
from testkit.host import free_port, scratch_dir
from testkit.processes import BIN, Process


@pytest.fixture()
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with scratch_dir(tmp_path_factory, "snapshot") as path:
        yield path


def etcd_process(cfg: dict[str, Any], state: Path) -> Process:
    comp = next(c for c in supervisor.components(cfg, state) if c.name == "etcd")
    return Process("etcd", comp.argv, state / "etcd-test.log")


def ctl(cfg: dict[str, Any], state: Path, *args: str) -> str:
    pki = state / "pki"
    argv = [
        etcdctl(),
        *(
            "--endpoints",
            supervisor.etcd_url(supervisor.settings(cfg)),
            "--cacert",
            str(pki / "etcd" / "ca.crt"),
        ),
        *("--cert", str(pki / "apiserver-etcd-client.crt"), "--key", str(pki / "apiserver-etcd-client.key")),
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


def minik(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "minik"), *args, "--state-dir", str(state)], capture_output=True, text=True, timeout=60
    )


def wait_healthy(cfg: dict[str, Any], state: Path, proc: Process) -> None:
    from testkit.wait import wait_for

    def healthy() -> bool:
        assert proc.running(), proc.log()
        try:
            ctl(cfg, state, "endpoint", "health")
        except subprocess.CalledProcessError:
            return False
        return True

    wait_for(healthy, what="etcd healthy")


def test_save_and_restore(state: Path) -> None:
    port = free_port()
    cfg = {
        "etcd_port": port,
        "etcd_peer_port": free_port(),
        "advertise_address": "127.0.0.1",
        "node_name": "snap",
    }
    (state / "config.json").write_text(json.dumps(cfg))
    supervisor.ensure_credentials(cfg, state)
    etcd = etcd_process(cfg, state)
    try:
        etcd.start()
        wait_healthy(cfg, state, etcd)
        ctl(cfg, state, "put", "/registry/before", "kept")
        r = minik(state, "etcd", "snapshot", "save", str(state / "snap.db"))
        assert r.returncode == 0, r.stderr
        assert (state / "snap.db").stat().st_size > 0
        ctl(cfg, state, "put", "/registry/after", "lost")

        # a running cluster (its supervisor's pid) is not restored over
        (state / "supervisor.pid").write_text(str(os.getpid()))
        r = minik(state, "etcd", "snapshot", "restore", str(state / "snap.db"))
        assert r.returncode != 0 and "minik down" in r.stderr + r.stdout
        (state / "supervisor.pid").unlink()

        etcd.stop()
        r = minik(state, "etcd", "snapshot", "restore", str(state / "snap.db"))
        assert r.returncode == 0, r.stderr
        assert [p.name for p in state.glob("etcd.before-restore-*")]

        etcd.start()
        wait_healthy(cfg, state, etcd)
        assert ctl(cfg, state, "get", "/registry/before", "--print-value-only").strip() == "kept"
        assert ctl(cfg, state, "get", "/registry/after", "--print-value-only").strip() == ""
    finally:
        etcd.cleanup()
