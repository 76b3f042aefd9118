"""``kubectl rollout history`` and ``rollout undo`` for StatefulSets and DaemonSets with the real
kubectl against a test API server and the real ``minik-controller-manager``, which keeps the
ControllerRevisions those commands read.  No node runs: the StatefulSet's pods stay Pending and
the DaemonSet has no pods, which the history does not need."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.processes import APIServerProcess, controller_manager, running
from testkit.wait import wait_for
from tests.e2e.conftest import KUBECTL_VERSIONS, Kubectl, kubectl_of


@pytest.fixture(scope="module", params=KUBECTL_VERSIONS)
def kubectl_bin(request: pytest.FixtureRequest) -> str:
    """This module's kubectl workflow runs with both kubectls (v1.32 and the v1.37 wheel)."""
    return kubectl_of(request.param)


MANIFEST = textwrap.dedent(
    """\
    apiVersion: apps/v1
    kind: {kind}
    metadata:
      name: {name}
    spec:
      selector: {{matchLabels: {{app: {name}}}}}
      template:
        metadata: {{labels: {{app: {name}}}}}
        spec:
          containers:
          - name: c
            image: busybox:1
    """
)


@pytest.fixture(scope="module")
def cm(apiserver: APIServerProcess) -> Iterator[None]:
    with running(controller_manager(apiserver)):
        yield


ROOT = Path(__file__).resolve().parents[2]


def minik(kubectl: Kubectl, *args: str) -> subprocess.CompletedProcess[str]:
    """minik's own CLI on the kubeconfig of ``kubectl``."""
    env = {**os.environ, "KUBECONFIG": str(kubectl.kubeconfig)}
    argv = [sys.executable, "-m", "cli.main", *args]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def history_rows(kubectl: Kubectl, ns: str, ref: str) -> list[tuple[str, str]]:
    out = kubectl("rollout", "history", ref, "-n", ns, timeout=30)
    return [tuple(line.split(None, 1)) for line in out.splitlines()[2:] if line.strip()]  # type: ignore[misc]


def image(kubectl: Kubectl, ns: str, ref: str) -> str:
    return kubectl(
        "get", ref, "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[0].image}", timeout=30
    )


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
def test_rollout_history_and_undo(kubectl: Kubectl, ns: str, cm: None, kind: str) -> None:
    name = kind.lower()[:3] + "-web"
    ref = f"{kind.lower()}/{name}"
    extra = "  serviceName: web\n  replicas: 1\n" if kind == "StatefulSet" else ""
    kubectl("apply", "-n", ns, "-f", "-", input=MANIFEST.format(kind=kind, name=name) + extra, timeout=30)
    wait_for(lambda: history_rows(kubectl, ns, ref) == [("1", "<none>")], 30, "revision 1")

    kubectl("set", "image", ref, "c=busybox:2", "-n", ns, timeout=30)
    kubectl("annotate", ref, "kubernetes.io/change-cause=to busybox 3", "-n", ns, timeout=30)
    kubectl("set", "image", ref, "c=busybox:3", "-n", ns, timeout=30)
    wait_for(
        lambda: history_rows(kubectl, ns, ref) == [("1", "<none>"), ("2", "<none>"), ("3", "to busybox 3")],
        30,
        "three revisions",
    )

    shown = kubectl("rollout", "history", ref, "-n", ns, "--revision", "2", timeout=30)
    assert f"{kind.lower()}.apps/{name} with revision #2" in shown
    assert "Pod Template:" in shown and "busybox:2" in shown and "busybox:3" not in shown

    # back to the previous revision (2): its revision becomes number 4
    assert (
        kubectl("rollout", "undo", ref, "-n", ns, timeout=30).strip()
        == f"{kind.lower()}.apps/{name} rolled back"
    )
    assert image(kubectl, ns, ref) == "busybox:2"
    wait_for(
        lambda: [r[0] for r in history_rows(kubectl, ns, ref)] == ["1", "3", "4"], 30, "2 renumbered to 4"
    )

    assert (
        kubectl("rollout", "undo", ref, "--to-revision", "1", "-n", ns, timeout=30)
        .strip()
        .endswith("rolled back")
    )
    assert image(kubectl, ns, ref) == "busybox:1"
    wait_for(
        lambda: [r[0] for r in history_rows(kubectl, ns, ref)] == ["3", "4", "5"], 30, "1 renumbered to 5"
    )

    missing = kubectl.run("rollout", "undo", ref, "--to-revision", "9", "-n", ns, check=False, timeout=30)
    assert missing.returncode != 0 and "unable to find specified revision 9 in history" in missing.stderr

    # minik's own rollout history and undo read the same revisions
    theirs = kubectl("rollout", "history", ref, "-n", ns, timeout=30)
    ours = minik(kubectl, "rollout", "history", ref, "-n", ns)
    assert ours.returncode == 0 and ours.stdout == theirs, ours.stderr
    shown = minik(kubectl, "rollout", "history", ref, "--revision=3", "-n", ns)
    assert shown.returncode == 0 and "busybox:3" in shown.stdout, shown.stderr
    undo = minik(kubectl, "rollout", "undo", ref, "--to-revision=3", "-n", ns)
    assert undo.stdout == f"{kind.lower()}.apps/{name} rolled back\n", undo.stderr
    assert image(kubectl, ns, ref) == "busybox:3"
    wait_for(
        lambda: [r[0] for r in history_rows(kubectl, ns, ref)] == ["4", "5", "6"], 30, "3 renumbered to 6"
    )
    again = minik(kubectl, "rollout", "undo", ref, "--to-revision=6", "-n", ns)
    assert "skipped rollback (current template already matches revision 6)" in again.stdout, again.stderr
