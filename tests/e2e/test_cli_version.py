"""``minik version`` against a real API server, run as a user runs it (a separate process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from apimachinery.version import __version__

ROOT = Path(__file__).resolve().parents[2]


def minik(*args: str, tmp_path: Path, kubeconfig: str | None = None) -> subprocess.CompletedProcess[str]:
    """``minik ARGS`` with ``kubeconfig`` (the API server's admin one) or none at all."""
    kubeconfig = kubeconfig or str(tmp_path / "absent-kubeconfig")
    env = {**os.environ, "KUBECONFIG": kubeconfig, "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def server_version(apiserver: Any) -> dict[str, Any]:
    with apiserver.http(timeout=10) as c:
        return dict(c.get("/version").json())


def test_version_prints_client_and_the_servers_git_version(apiserver: Any, tmp_path: Path) -> None:
    result = minik("version", tmp_path=tmp_path, kubeconfig=apiserver.kubeconfig)
    assert result.returncode == 0, result.stderr
    expected = server_version(apiserver)["gitVersion"]
    assert result.stdout == f"Client Version: v{__version__}\nServer Version: {expected}\n"


def test_version_json_carries_the_servers_version_info(apiserver: Any, tmp_path: Path) -> None:
    result = minik("version", "-o", "json", tmp_path=tmp_path, kubeconfig=apiserver.kubeconfig)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["serverVersion"] == server_version(apiserver)
    assert data["clientVersion"]["gitVersion"] == f"v{__version__}"


def test_version_with_the_server_down_prints_the_client_and_fails(tmp_path: Path) -> None:
    # nothing listens on port 1 of the loopback
    result = minik("version", "-s", "http://127.0.0.1:1", tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stdout == f"Client Version: v{__version__}\n"
    assert result.stderr.startswith("error: cannot reach the API server at http://127.0.0.1:1")
