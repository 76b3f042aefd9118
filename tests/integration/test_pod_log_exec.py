"""``kubectl logs`` and ``kubectl exec`` through the API server to a real kubelet and Docker (kubectl as
``testkit.prereq.require_kubectl()`` finds it)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from testkit.prereq import require_kubectl
from testkit.processes import KubeletProcess
from tests.integration.test_kubelet import make_pod, sh_container, wait_phase

# kubectl is checked before the module's API server, kubelet and pod start
pytestmark = pytest.mark.usefixtures("kubectl_bin")


def kubectl(kubeconfig: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=kubeconfig, KUBECACHEDIR=os.path.dirname(kubeconfig) + "/cache")
    return subprocess.run(
        [require_kubectl(), *args], capture_output=True, text=True, env=env, input=input, timeout=60
    )


@pytest.fixture(scope="module")
def running_pod(apiserver: Any, kubelet: KubeletProcess, image: str) -> Iterator[str]:
    name = "logexec"
    script = "echo hello from minik; echo to stderr >&2; exec sleep 3600"
    pod = make_pod(name, kubelet.node, [{"name": "main", "image": image, "command": ["sh", "-c", script]}])
    with apiserver.http() as c:
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


def test_logs_of_an_unscheduled_pod_is_a_clear_error(apiserver: Any, kubeconfig: str, image: str) -> None:
    with apiserver.http() as c:
        pod = make_pod("nowhere", "", [{"name": "main", "image": image}])
        pod["spec"].pop("nodeName", None)
        c.post("/api/v1/namespaces/default/pods", json=pod)
        try:
            r = kubectl(kubeconfig, "logs", "nowhere")
            assert r.returncode != 0 and "does not have a host assigned" in r.stderr
        finally:
            c.delete("/api/v1/namespaces/default/pods/nowhere")


def test_kubectl_exec_interactive_tty_with_resize(kubeconfig: str, running_pod: str) -> None:
    """``kubectl exec -it POD -- sh`` driven through a pseudo-terminal, with a window size change."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    env = dict(
        os.environ, KUBECONFIG=kubeconfig, KUBECACHEDIR=os.path.dirname(kubeconfig) + "/cache", TERM="dumb"
    )
    binary = require_kubectl()
    pid, fd = pty.fork()
    if pid == 0:  # the child: kubectl on the pty's slave side
        os.execve(binary, [binary, "exec", "-it", running_pod, "--", "sh"], env)
    out = b""

    def read_until(marker: bytes, timeout: float = 30) -> None:
        nonlocal out
        deadline = time.monotonic() + timeout
        while marker not in out:
            assert time.monotonic() < deadline, f"no {marker!r} in {out!r}"
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break

    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.write(fd, b"echo tty=$(tty) sum=$((20+22))\n")
        read_until(b"sum=42")
        assert b"tty=/dev/pts/" in out
        os.write(fd, b"stty size\n")
        read_until(b"40 120")
        # the terminal is resized: kubectl sends the new size on the resize channel
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 99, 0, 0))
        os.kill(pid, __import__("signal").SIGWINCH)
        deadline = time.monotonic() + 20
        while b"33 99" not in out:
            assert time.monotonic() < deadline, out
            os.write(fd, b"stty size\n")
            try:
                read_until(b"33 99", 1)
            except AssertionError:
                continue
        os.write(fd, b"exit 5\n")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WEXITSTATUS(status) == 5
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)


def test_kubectl_logs_follow_tail_previous(
    apiserver: Any, kubeconfig: str, kubelet: KubeletProcess, image: str
) -> None:
    name = "logsmore"
    script = "for i in 1 2 3 4 5; do echo line-$i; done; n=$(cat /state/n 2>/dev/null || echo 0); echo run-$n; echo $((n+1)) > /state/n; if [ $n = 0 ]; then exit 1; fi; while true; do echo tick; sleep 0.3; done"
    pod = make_pod(
        name,
        kubelet.node,
        [sh_container("main", image, script, volumeMounts=[{"name": "s", "mountPath": "/state"}])],
        volumes=[{"name": "s", "emptyDir": {}}],
    )
    with apiserver.http() as c:
        r = c.post("/api/v1/namespaces/default/pods", json=pod)
        assert r.status_code == 201, r.text
        try:
            kubelet.wait(
                lambda: any(
                    cs.get("restartCount", 0) >= 1 and "running" in cs["state"]
                    for cs in (
                        c.get(f"/api/v1/namespaces/default/pods/{name}").json().get("status") or {}
                    ).get("containerStatuses")
                    or []
                ),
                60,
                "restarted once",
            )
            r2 = kubectl(kubeconfig, "logs", name, "--previous")
            assert r2.returncode == 0, r2.stderr
            assert "run-0" in r2.stdout and "tick" not in r2.stdout
            r2 = kubectl(kubeconfig, "logs", name, "--tail", "2")
            assert r2.returncode == 0, r2.stderr
            assert len(r2.stdout.splitlines()) == 2
            # follow: lines keep coming while kubectl runs
            env = dict(os.environ, KUBECONFIG=kubeconfig, KUBECACHEDIR=os.path.dirname(kubeconfig) + "/cache")
            proc = subprocess.Popen(
                [require_kubectl(), "logs", "-f", name], stdout=subprocess.PIPE, text=True, env=env
            )
            try:
                assert proc.stdout is not None
                seen = [proc.stdout.readline() for _ in range(12)]
                assert "run-1\n" in seen and seen.count("tick\n") >= 4
            finally:
                proc.kill()
                proc.wait()
            # describe shows the kubelet's events
            r2 = kubectl(kubeconfig, "describe", "pod", name)
            assert r2.returncode == 0, r2.stderr
            assert "Started" in r2.stdout and "kubelet" in r2.stdout and "Created container main" in r2.stdout
        finally:
            c.delete(f"/api/v1/namespaces/default/pods/{name}", params={"gracePeriodSeconds": "0"})
