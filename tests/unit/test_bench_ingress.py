"""bench/ingress charges each wrk run's CPU to its parts, per request."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.ingress import CPU, Run, _proc_cpu


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_process_cpu_time_grows_and_a_gone_one_reads_zero() -> None:
    before = _proc_cpu(os.getpid())
    _burn(0.2)
    assert _proc_cpu(os.getpid()) - before >= 0.15
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert _proc_cpu(child.pid) == 0.0


def test_cpu_per_request_is_charged_to_the_part_that_spent_it() -> None:
    cpu = CPU(pod=[os.getpid()], ingress=[])

    def run() -> Run:
        _burn(0.3)  # this process plays the pod
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import time\nt=time.process_time()+0.2\nwhile time.process_time()<t: pass",
            ],
            check=True,
        )  # a waited-for child plays wrk
        return Run(1000.0, 0.5, 1000)  # 1000 requests

    assert cpu.measure("direct", run) == Run(1000.0, 0.5, 1000)
    r = cpu.report("direct")
    assert set(r) == {"pod", "ingress", "wrk", "other", "total"}
    assert 250 <= r["pod"] <= 450  # µs per request: 0.3 s over 1000 requests
    assert 150 <= r["wrk"] <= 350
    assert r["ingress"] == 0.0
    assert r["total"] == pytest.approx(sum(r[k] for k in ("pod", "ingress", "wrk", "other")))  # one run


def test_a_measured_process_that_ends_during_the_run_fails_the_run() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    cpu = CPU(pod=[child.pid], ingress=[])

    def run() -> Run:
        child.kill()
        child.wait()
        return Run(1.0, 1.0, 1)

    with pytest.raises(SystemExit, match=f"processes \\[{child.pid}\\]"):
        cpu.measure("direct", run)
