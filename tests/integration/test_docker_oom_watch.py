"""The Docker runtime's ``oom`` event watch against the real engine: a container of the node
killed at its memory limit is seen, one of another node is not, and the runtime reports it."""

from __future__ import annotations

import asyncio
import uuid

import docker

from kubelet.docker_runtime import DockerRuntime, OOMWatch
from kubelet.runtime import LABEL_CONTAINER_NAME, LABEL_MANAGED, LABEL_NODE, LABEL_TYPE, TYPE_CONTAINER
from testkit import prereq, wait
from testkit.images import ensure_busybox_image

OOM = 'x=$(head -c 50000000 /dev/zero | tr "\\0" a); echo survived'


def test_an_oom_kill_of_the_nodes_container_is_seen_and_reported() -> None:
    prereq.require_docker()
    image = ensure_busybox_image()
    node, other = f"oomw-{uuid.uuid4().hex[:6]}", f"oomw-{uuid.uuid4().hex[:6]}"
    client = docker.from_env()
    runtime = DockerRuntime(node)
    runtime.oom_watch.start()
    other_watch = OOMWatch(client.api, other)  # the other node's: it must see only its own
    other_watch.start()
    made = []
    try:

        def run(on: str) -> str:
            labels = {
                LABEL_MANAGED: "true",
                LABEL_NODE: on,
                LABEL_TYPE: TYPE_CONTAINER,
                LABEL_CONTAINER_NAME: "c",
            }
            c = client.containers.run(
                image, ["sh", "-c", OOM], detach=True, labels=labels, mem_limit="8m", memswap_limit="8m"
            )
            made.append(c)
            return str(c.id)

        mine, theirs = run(node), run(other)
        for c in made:
            assert c.wait(timeout=60)["StatusCode"] == 137
        wait.wait_for(lambda: runtime.oom_watch.seen(mine), 20, "the oom event of the node's container")
        status = asyncio.run(runtime.inspect_container(mine))
        assert status is not None and status.exit_code == 137 and status.oom_killed
        # once the other node's watch has its container's event, this one must not have it
        wait.wait_for(lambda: other_watch.seen(theirs), 20, "the oom event of the other node's container")
        assert not runtime.oom_watch.seen(theirs) and not other_watch.seen(mine)
    finally:
        for c in made:
            c.remove(force=True)
        runtime.close()
        other_watch.close()
        client.close()
    assert runtime.oom_watch._thread is not None and not runtime.oom_watch._thread.is_alive()
