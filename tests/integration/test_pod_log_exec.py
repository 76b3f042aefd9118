"""``kubectl logs`` and ``kubectl exec`` through the API server to a real kubelet and Docker."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.test_kubelet import KubeletProcess, image, kubelet, make_pod, wait_phase  # noqa: F401

KUBECTL = "/usr/bin/kubectl"


@pytest.fixture(scope="module")
def kubeconfig(apiserver: Any) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "config")
        with open(path, "w") as f:
            f.write(
                "apiVersion: v1\nkind: Config\n"
                f"clusters:\n- name: t\n  cluster:\n    server: {apiserver.url}\n"
                "users:\n- name: t\n  user: {}\n"
                "contexts:\n- name: t\n  context:\n    cluster: t\n    user: t\n    namespace: default\n"
                "current-context: t\n"
            )
        yield path


def kubectl(kubeconfig: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=kubeconfig, KUBECACHEDIR=os.path.dirname(kubeconfig) + "/cache")
    return subprocess.run([KUBECTL, *args], capture_output=True, text=True, env=env, input=input, timeout=60)


@pytest.fixture(scope="module")
def running_pod(apiserver: Any, kubelet: KubeletProcess, image: str) -> Iterator[str]:  # noqa: F811
    name = "logexec"
    script = "echo hello from minik; echo to stderr >&2; exec sleep 3600"
    pod = make_pod(name, kubelet.node, [{"name": "main", "image": image, "command": ["sh", "-c", script]}])
    with httpx.Client(base_url=apiserver.url, timeout=30) as c:
        r = c.post("/api/v1/namespaces/default/pods", json=pod)
        assert r.status_code == 201, r.text
        wait_phase(kubelet, c, name, "Running")
        try:
            yield name
        finally:
            c.delete(f"/api/v1/namespaces/default/pods/{name}", params={"gracePeriodSeconds": "0"})


def test_kubectl_logs(kubeconfig: str, running_pod: str) -> None:
    r = kubectl(kubeconfig, "logs", running_pod)
    assert r.returncode == 0, r.stderr
    assert "hello from minik" in r.stdout and "to stderr" in r.stdout
    r = kubectl(kubeconfig, "logs", running_pod, "-c", "nope")
    assert r.returncode != 0 and "container nope is not valid" in r.stderr


def test_kubectl_exec(kubeconfig: str, running_pod: str) -> None:
    r = kubectl(kubeconfig, "exec", running_pod, "--", "sh", "-c", "echo $((6*7)); echo oops >&2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "42" and "oops" in r.stderr
    r = kubectl(kubeconfig, "exec", "-i", running_pod, "--", "cat", input="piped through stdin\n")
    assert r.returncode == 0 and r.stdout == "piped through stdin\n", r.stderr
    r = kubectl(kubeconfig, "exec", running_pod, "--", "sh", "-c", "exit 3")
    assert r.returncode == 3, (r.returncode, r.stderr)


def test_logs_of_an_unscheduled_pod_is_a_clear_error(apiserver: Any, kubeconfig: str, image: str) -> None:  # noqa: F811
    with httpx.Client(base_url=apiserver.url) as c:
        pod = make_pod("nowhere", "", [{"name": "main", "image": image}])
        pod["spec"].pop("nodeName", None)
        c.post("/api/v1/namespaces/default/pods", json=pod)
        try:
            r = kubectl(kubeconfig, "logs", "nowhere")
            assert r.returncode != 0 and "does not have a host assigned" in r.stderr
        finally:
            c.delete("/api/v1/namespaces/default/pods/nowhere")
