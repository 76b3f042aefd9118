"""minik etcd snapshot restore: when it refuses (a live supervisor or etcd of the state), what it runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cli.commands import etcd as cmd
from cli.kube import CLIError
from cli.supervisor import ETCD_MEMBER_NAME, etcd_peer_url


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    (state / "etcd" / "member").mkdir(parents=True)
    (state / "config.json").write_text(json.dumps({"etcd_port": 23790}))
    return state


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    path = tmp_path / "snap.db"
    path.write_bytes(b"snapshot")
    return path


@pytest.fixture
def etcdctl(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """etcdctl replaced: records its argv and makes the --data-dir it was given."""
    calls: list[list[str]] = []

    def run(argv: list[str]) -> None:
        calls.append(argv)
        Path(argv[argv.index("--data-dir") + 1], "member").mkdir(parents=True)

    monkeypatch.setattr(cmd, "etcdctl", lambda: "etcdctl")
    monkeypatch.setattr(cmd, "_run", run)
    return calls


@contextmanager
def sleeper(tmp_path: Path, argv_tail: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line is ``PYTHON DIR/etcd ARGS`` (an etcd for /proc's eyes), and one
    process only: a shell script would fork its ``sleep``, a second such command line for a moment."""
    script = tmp_path / "bin" / "etcd"
    script.parent.mkdir(exist_ok=True)
    script.write_text("import time\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script), *argv_tail], start_new_session=True)
    try:
        # Popen returns once the exec has begun (its error pipe closes with the old image), when
        # /proc may still show an empty command line for a moment: wait for the new one
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        deadline = time.monotonic() + 10
        while str(script).encode() not in cmdline.read_bytes():
            assert time.monotonic() < deadline, "the stand-in etcd did not start"
            time.sleep(0.005)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_restore_uses_the_member_name_and_peer_url_of_minik_up(
    state: Path, snapshot: Path, etcdctl: list[list[str]]
) -> None:
    cmd.restore(snapshot, state)
    argv = etcdctl[0]
    peer = etcd_peer_url({"etcd_port": 23790})
    assert peer == "https://127.0.0.1:23791"
    assert argv[argv.index("--name") + 1] == ETCD_MEMBER_NAME
    assert argv[argv.index("--initial-cluster") + 1] == f"{ETCD_MEMBER_NAME}={peer}"
    assert argv[argv.index("--initial-advertise-peer-urls") + 1] == peer
    assert (state / "etcd" / "member").is_dir()
    assert [p.name for p in state.iterdir() if p.name.startswith("etcd.before-restore-")]


def test_a_reused_supervisor_pid_does_not_block_the_restore(
    state: Path, snapshot: Path, etcdctl: list[list[str]]
) -> None:
    (state / "supervisor.pid").write_text(str(os.getpid()))  # alive, but not a supervisor
    cmd.restore(snapshot, state)
    assert len(etcdctl) == 1


def test_a_running_supervisor_of_the_state_blocks_the_restore(
    tmp_path: Path, state: Path, snapshot: Path, etcdctl: list[list[str]]
) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "-m", "cli.supervisor", str(state)]
    proc = subprocess.Popen(argv)
    try:
        (state / "supervisor.pid").write_text(str(proc.pid))
        with pytest.raises(CLIError, match=f"supervisor pid {proc.pid}"):
            cmd.restore(snapshot, state)
    finally:
        proc.kill()
        proc.wait()
    assert etcdctl == []


def test_an_orphaned_etcd_of_the_state_blocks_the_restore(
    tmp_path: Path, state: Path, snapshot: Path, etcdctl: list[list[str]]
) -> None:
    with sleeper(tmp_path, ["--name", "minik", "--data-dir", str(state / "etcd")]) as proc:
        with pytest.raises(CLIError, match=f"etcd of {state} still runs \\(pid {proc.pid}\\)"):
            cmd.restore(snapshot, state)
    assert etcdctl == []
    assert (state / "etcd" / "member").is_dir()
    assert not [p for p in state.iterdir() if p.name.startswith("etcd.")]


def test_an_etcd_listed_in_status_json_blocks_the_restore(
    tmp_path: Path, state: Path, snapshot: Path, etcdctl: list[list[str]]
) -> None:
    tail = ["--data-dir=/elsewhere"]  # not this state's data dir: only status.json names it
    with sleeper(tmp_path, tail) as proc:
        argv = [str(tmp_path / "bin" / "etcd"), *tail]
        (state / "status.json").write_text(json.dumps({"etcd": {"pid": proc.pid, "argv": argv}}))
        with pytest.raises(CLIError, match=f"pid {proc.pid}"):
            cmd.restore(snapshot, state)
    assert etcdctl == []


def test_an_etcd_of_another_state_does_not_block(
    tmp_path: Path, state: Path, snapshot: Path, etcdctl: list[list[str]]
) -> None:
    with sleeper(tmp_path, ["--data-dir", str(tmp_path / "other" / "etcd")]):
        cmd.restore(snapshot, state)
    assert len(etcdctl) == 1
