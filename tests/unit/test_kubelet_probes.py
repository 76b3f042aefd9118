"""The probe manager's workers: a startup probe that succeeded stays done for its container."""

from __future__ import annotations

import asyncio

from kubelet.probes import ProbeManager


async def test_a_succeeded_startup_probe_is_not_restarted_for_the_same_container() -> None:
    runs: list[str] = []
    changes: list[str] = []
    running = {"c": "cid-1"}

    async def exec_fn(cid: str, cmd: list[str], timeout: float) -> int:
        runs.append(cid)
        return 0

    def on_change(pod_key: str) -> None:
        changes.append(pod_key)  # the kubelet queues a sync of the pod, which runs a moment later

    container = {
        "name": "c",
        "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1, "failureThreshold": 3},
    }
    probes = ProbeManager(exec_fn, on_change)
    probes.sync("default/p", "uid-1", [container], dict(running), "")
    for _ in range(50):
        await asyncio.sleep(0.01)
    assert probes.is_started("uid-1", container) and runs == ["cid-1"]
    # the syncs that follow (the change, every status update) keep the result and start nothing
    for _ in range(3):
        probes.sync("default/p", "uid-1", [container], dict(running), "")
        for _ in range(20):
            await asyncio.sleep(0.01)
    assert probes.is_started("uid-1", container)
    assert runs == ["cid-1"] and changes == ["default/p"]
    # a new container (a restart) gets a new startup probe, and is not started until it passes
    running["c"] = "cid-2"
    probes.sync("default/p", "uid-1", [container], dict(running), "")
    assert not probes.is_started("uid-1", container)
    for _ in range(50):
        await asyncio.sleep(0.01)
    assert probes.is_started("uid-1", container) and runs == ["cid-1", "cid-2"]
    await probes.stop()
