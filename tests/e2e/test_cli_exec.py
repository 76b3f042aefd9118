"""``minik exec`` speaks the v5.channel.k8s.io WebSocket protocol (checked against a local server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner
from websockets.sync.server import Server, ServerConnection, serve

from cli.kube import GlobalOptions
from cli.main import app

POD = {
    "metadata": {"name": "p", "namespace": "default"},
    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
}
seen: dict[str, Any] = {}


def handler(ws: ServerConnection) -> None:
    assert ws.request is not None
    seen["path"] = ws.request.path
    seen["protocol"] = ws.subprotocol
    stdin = b""
    while True:
        msg = ws.recv()
        assert isinstance(msg, bytes)
        if msg == b"\xff\x00":  # v5: stdin closed
            break
        stdin += msg[1:]
    ws.send(b"\x01" + stdin.upper())
    ws.send(b"\x02warning\n")
    status = {
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
    ws.send(b"\x03" + json.dumps(status).encode())
    ws.close()


@pytest.fixture()
def ws_server() -> Iterator[Server]:
    server = serve(handler, "127.0.0.1", 0, subprotocols=["v5.channel.k8s.io"])  # type: ignore[list-item]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)


def test_exec_streams_stdin_stdout_stderr_and_exit_code(
    ws_server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    port = ws_server.socket.getsockname()[1]
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=POD))
    opts = GlobalOptions(server=f"http://127.0.0.1:{port}", transport=transport)
    result = CliRunner().invoke(app, ["exec", "-i", "p", "--", "tr", "a-z", "A-Z"], obj=opts, input="hello\n")
    assert result.exit_code == 3, result.output
    assert result.stdout == "HELLO\n"
    assert result.stderr == "warning\n"
    assert seen["protocol"] == "v5.channel.k8s.io"
    assert seen["path"].startswith(
        "/api/v1/namespaces/default/pods/p/exec?command=tr&command=a-z&command=A-Z&container=c"
    )
