"""The ``minik`` CLI fails over between the API servers its kubeconfig lists (``server`` and the
``servers.minik.io`` extension), as the components' client does: the first server is dead (nothing
listens on its port), the second is a real API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import yaml

from apimachinery.kubeconfig import SERVERS_EXTENSION, load_config
from cli.streams import open_ws
from testkit.host import free_port
from testkit.processes import APIServerProcess

MINIK = str(Path(sys.executable).parent / "minik")


def dead_first(apiserver: APIServerProcess, tmp_path: Path) -> tuple[Path, str]:
    """The admin's kubeconfig with a dead ``server`` and the live one in the servers extension."""
    doc = yaml.safe_load(Path(apiserver.kubeconfig).read_text())
    dead = f"https://127.0.0.1:{free_port()}"
    for cluster in doc["clusters"]:
        cluster["cluster"]["server"] = dead
        cluster["cluster"]["extensions"] = [
            {"name": SERVERS_EXTENSION, "extension": {"servers": [apiserver.url]}}
        ]
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path, dead


def minik(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run([MINIK, *args], env=env, capture_output=True, text=True, timeout=60)


def test_minik_uses_the_next_server_when_the_first_is_dead(
    apiserver: APIServerProcess, tmp_path: Path
) -> None:
    kubeconfig, dead = dead_first(apiserver, tmp_path)
    created = minik(kubeconfig, "create", "configmap", "via-failover", "--from-literal", "k=v")
    assert created.returncode == 0, created.stdout + created.stderr
    table = minik(kubeconfig, "get", "configmaps")  # the table path (Accept: as=Table)
    assert table.returncode == 0, table.stdout + table.stderr
    assert "via-failover" in table.stdout
    pods = minik(kubeconfig, "get", "pods", "-A")
    assert pods.returncode == 0, pods.stdout + pods.stderr
    listed = minik(kubeconfig, "get", "configmap", "via-failover", "-o", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["data"] == {"k": "v"}
    # a watch starts on the live server too (streamed GET), and ends by its timeout
    watched = minik(kubeconfig, "get", "configmaps", "--watch", "--request-timeout", "2")
    assert "via-failover" in watched.stdout, watched.stdout + watched.stderr
    deleted = minik(kubeconfig, "delete", "configmap", "via-failover")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr

    # without the extension the dead server is all there is: the CLI says it cannot reach it
    doc = yaml.safe_load(kubeconfig.read_text())
    for cluster in doc["clusters"]:
        cluster["cluster"].pop("extensions")
    only_dead = tmp_path / "only-dead"
    only_dead.write_text(yaml.safe_dump(doc))
    refused = minik(only_dead, "get", "pods")
    assert refused.returncode != 0 and dead in refused.stdout + refused.stderr


def test_exec_and_port_forward_open_their_websocket_on_the_next_server(
    apiserver: APIServerProcess, api: httpx.Client, tmp_path: Path
) -> None:
    """The WebSocket of ``minik exec`` and port-forward fails over like the CLI's requests:
    the pod has no node (no scheduler here), so the live server's own refusal is the answer --
    not the dead server's absence."""
    kubeconfig, dead = dead_first(apiserver, tmp_path)
    name = f"no-host-{uuid.uuid4().hex[:6]}"
    body = {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    created = api.post("/api/v1/namespaces/default/pods", json={"apiVersion": "v1", "kind": "Pod", **body})
    assert created.status_code == 201, created.text
    try:
        execd = minik(kubeconfig, "exec", name, "--", "true")
        assert execd.returncode != 0
        assert f"pod {name} does not have a host assigned" in execd.stderr, execd.stdout + execd.stderr
        assert "cannot reach" not in execd.stderr, execd.stderr

        # port-forward's WebSocket (cli.streams.open_ws, as `minik port-forward` opens it per
        # connection): the live server accepts it and reports on the port's error channel
        config = load_config(kubeconfig)
        assert config.servers[0] == dead
        path = f"/api/v1/namespaces/default/pods/{name}/portforward"
        with open_ws(config, path, [("ports", "80")], ["v4.channel.k8s.io"]) as ws:
            assert ws.recv(timeout=30) == b"\x01" + f"pod {name} does not have a host assigned".encode()
    finally:
        api.delete(f"/api/v1/namespaces/default/pods/{name}", params={"gracePeriodSeconds": "0"})
