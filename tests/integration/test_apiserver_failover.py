"""Two real API servers on one etcd; a client and an informer given both keep working when the
server they use is killed with SIGKILL."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from apimachinery.client import Client
from apimachinery.informer import Informer
from apimachinery.kubeconfig import SERVERS_EXTENSION, load_config
from apimachinery.resources import plural_info
from testkit.processes import APIServerProcess, EtcdProcess

CONFIGMAPS = plural_info("", "v1", "configmaps")


@pytest.fixture()
def two_apiservers(etcd: EtcdProcess) -> Iterator[tuple[APIServerProcess, APIServerProcess]]:
    first, second = APIServerProcess(etcd.url), APIServerProcess(etcd.url)
    try:
        first.start()
        second.start()
        yield first, second
    finally:
        first.cleanup()
        second.cleanup()


def kubeconfig_with_both(first: APIServerProcess, second: APIServerProcess, tmp_path: Path) -> Path:
    """The admin's kubeconfig for ``first``, its cluster listing ``second`` in the servers extension."""
    doc = yaml.safe_load(Path(first.kubeconfig).read_text())
    for cluster in doc["clusters"]:
        cluster["cluster"]["extensions"] = [
            {"name": SERVERS_EXTENSION, "extension": {"servers": [second.url]}}
        ]
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}}


async def until(cond: Any, what: str, timeout: float = 30) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_kill_the_server_in_use(
    two_apiservers: tuple[APIServerProcess, APIServerProcess], tmp_path: Path
) -> None:
    first, second = two_apiservers
    config = load_config(kubeconfig_with_both(first, second, tmp_path), namespace="default")
    assert config.servers == (first.url, second.url)

    async with Client(config) as client:
        informer = Informer(client, CONFIGMAPS, "default")
        seen: dict[str, str] = {}
        informer.add_event_handler(
            on_add=lambda o: seen.__setitem__(o["metadata"]["name"], o["data"]["k"]),
            on_update=lambda old, new: seen.__setitem__(new["metadata"]["name"], new["data"]["k"]),
        )
        task = asyncio.create_task(informer.run())
        try:
            assert await informer.wait_for_sync(30)
            await client.create(CONFIGMAPS, configmap("before"), "default")
            await until(lambda: "before" in seen, "the informer to see 'before'")
            assert client.server == first.url
            relists = informer.relists

            first.stop(signal.SIGKILL)

            # a read, a create and an update all go to the second server
            got = await client.get(CONFIGMAPS, "before", "default")
            assert got["data"] == {"k": "before"}
            assert client.server == second.url
            await client.create(CONFIGMAPS, configmap("after"), "default")
            await client.patch(CONFIGMAPS, "before", {"data": {"k": "patched"}}, "default")

            # the informer's watch broke with the server; it watched again on the second from the
            # last resourceVersion it had seen (both servers share etcd), without a new list
            await until(lambda: seen.get("after") == "after", "the informer to see 'after'")
            await until(lambda: seen.get("before") == "patched", "the informer to see the patch")
            assert informer.relists == relists
            names = {o["metadata"]["name"] for o in informer.store.list()}
            assert {"before", "after"} <= names
        finally:
            informer.stop()
            await asyncio.gather(task, return_exceptions=True)
