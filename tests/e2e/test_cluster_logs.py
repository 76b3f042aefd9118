"""``minik cluster-logs --all --output DIR`` when the API server does not answer, and its argument
checks.  With a cluster up, the same export (events, ``get -A``) is checked in test_action.py,
whose clean-up step runs it against a real ``minik up``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from testkit.host import free_port

MINIK = str(Path(sys.executable).parent / "minik")
COMPONENTS = ("etcd", "apiserver", "controller-manager", "scheduler", "kubelet", "proxy", "dns", "supervisor")


def minik(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MINIK, *args], capture_output=True, text=True, timeout=60)


def stopped_cluster_state(state: Path) -> int:
    """A state directory as `minik down` leaves it: logs and config.json, nothing listening."""
    port = free_port()
    (state / "logs").mkdir(parents=True)
    for name in COMPONENTS:
        (state / "logs" / f"{name}.log").write_text(f"{name} said something\n")
    (state / "config.json").write_text(json.dumps({"api_port": port, "node_name": "n1"}))
    return port


def test_without_an_api_server_the_logs_are_exported_and_a_note_says_what_is_missing(tmp_path: Path) -> None:
    port = stopped_cluster_state(tmp_path / "state")
    out = tmp_path / "out" / "nested"
    done = minik("cluster-logs", "--all", "--output", str(out), "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 0, done.stdout + done.stderr
    for name in COMPONENTS:
        assert (out / f"{name}.log").read_text() == f"{name} said something\n"
    assert json.loads((out / "config.json").read_text())["api_port"] == port
    note = (out / "NOTE.txt").read_text()
    assert f"the API server at https://127.0.0.1:{port} did not answer" in note
    assert "events.txt, get-all.txt, pods.yaml are missing" in note
    assert not (out / "events.txt").exists() and not (out / "get-all.txt").exists()
    assert "did not answer" in done.stdout and str(out) in done.stdout


def test_without_a_cluster_it_fails_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = minik("cluster-logs", "--all", "--output", str(out), "--state-dir", str(tmp_path / "none"))
    assert done.returncode == 1
    assert "no minik cluster state in" in (out / "NOTE.txt").read_text()


def test_one_component_or_all_never_both(tmp_path: Path) -> None:
    state = tmp_path / "state"
    stopped_cluster_state(state)
    both = minik("cluster-logs", "etcd", "--all", "--state-dir", str(state))
    assert both.returncode == 2 and "--all takes no COMPONENT" in both.stdout
    neither = minik("cluster-logs", "--state-dir", str(state))
    assert neither.returncode == 2 and "name a COMPONENT" in neither.stdout
    one = minik("cluster-logs", "kubelet", "--state-dir", str(state))
    assert one.returncode == 0 and one.stdout == "kubelet said something\n"
