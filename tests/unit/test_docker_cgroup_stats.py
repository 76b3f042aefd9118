"""Container statistics read from cgroups (the Docker runtime's fallback when Docker answers a
container's stats request with nothing, as it does for one joined to a NetworkDisabled sandbox)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kubelet.docker_runtime import cgroup_dirs, cgroup_stats, stats_from_docker


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def fake_proc(tmp: Path, cgroup: str) -> Path:
    proc = tmp / "proc"
    write(proc / "42" / "cgroup", cgroup)
    write(proc / "meminfo", "MemTotal:        1024 kB\n")
    return proc


def test_cgroup_v1(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    lines = (
        "4:memory:/docker/abc\n2:cpuacct:/docker/abc\n8:pids:/docker/abc\n1:cpu:/docker/abc\n0::/docker/abc\n"
    )
    proc = fake_proc(tmp_path, lines)
    write(root / "memory/docker/abc/memory.usage_in_bytes", "5000\n")
    write(root / "memory/docker/abc/memory.limit_in_bytes", "9223372036854771712\n")
    write(
        root / "memory/docker/abc/memory.stat", "total_inactive_file 1000\ntotal_rss 3000\ntotal_pgfault 7\n"
    )
    write(root / "cpuacct/docker/abc/cpuacct.usage", "123456789\n")
    write(root / "pids/docker/abc/pids.current", "3\n")
    assert set(cgroup_dirs(42, str(root), str(proc))) == {"memory", "cpuacct", "pids"}
    raw = cgroup_stats(42, str(root), str(proc), interval=0)
    assert raw is not None
    st = stats_from_docker(raw)
    assert st.cpu_usage_nanos == 123456789
    assert st.memory_usage_bytes == 5000 and st.memory_working_set_bytes == 4000
    assert st.memory_rss_bytes == 3000 and st.page_faults == 7 and st.pids == 3
    assert st.memory_limit_bytes == 1024 * 1024  # unlimited: the host's memory, as Docker reports it


def test_cgroup_v2(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    proc = fake_proc(tmp_path, "0::/system.slice/docker-abc.scope\n")
    d = root / "system.slice/docker-abc.scope"
    write(d / "memory.current", "8192\n")
    write(d / "memory.max", "max\n")
    write(d / "memory.stat", "anon 4096\ninactive_file 1024\n")
    write(d / "cpu.stat", "usage_usec 2500\nuser_usec 2000\n")
    write(d / "pids.current", "1\n")
    st = stats_from_docker(cgroup_stats(42, str(root), str(proc), interval=0) or {})
    assert st.cpu_usage_nanos == 2_500_000
    assert st.memory_working_set_bytes == 8192 - 1024 and st.memory_rss_bytes == 4096 and st.pids == 1


def test_gone_process(tmp_path: Path) -> None:
    assert cgroup_stats(7, str(tmp_path), str(tmp_path), interval=0) is None


class FakeAPI:
    """Docker's answers for a container of a NetworkDisabled sandbox: empty stats."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def stats(self, container_id: str, stream: bool) -> dict[str, Any]:
        self.calls.append("stats")
        return {"read": "0001-01-01T00:00:00Z", "memory_stats": {}}

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        self.calls.append("inspect")
        return {"State": {"Pid": 42}}


def test_stats_of_a_network_disabled_container_come_from_its_cgroups_found_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kubelet.docker_runtime as dr

    d = tmp_path / "cg" / "docker-abc.scope"
    write(d / "memory.current", "8192\n")
    write(d / "cpu.stat", "usage_usec 2500\n")
    monkeypatch.setattr(dr, "cgroup_dirs", lambda pid: {"": str(d)} if pid == 42 else {})
    monkeypatch.setattr(dr.cgroup_dirs_stats, "__defaults__", ("/proc", 0))
    api = FakeAPI()
    rt = dr.DockerRuntime("n", client=SimpleNamespace(api=api))
    first = asyncio.run(rt.stats("abc"))
    assert first.cpu_usage_nanos == 2_500_000 and api.calls == ["stats", "inspect"]
    write(d / "cpu.stat", "usage_usec 5000\n")
    again = asyncio.run(rt.stats("abc"))
    assert again.cpu_usage_nanos == 5_000_000 and api.calls == ["stats", "inspect"]  # neither asked again
    # stopped (its cgroup gone): Docker is asked again, and the figures are Docker's (empty)
    for f in d.iterdir():
        f.unlink()
    gone = asyncio.run(rt.stats("abc"))
    assert gone.cpu_usage_nanos == 0 and api.calls == ["stats", "inspect"] * 2
