"""Client side of Kubernetes' streaming subresources over WebSocket.

``pods/{name}/exec`` speaks the channel protocol (``v5.channel.k8s.io``, falling back to
``v4.channel.k8s.io``): every binary message starts with one byte naming its stream — 0 stdin,
1 stdout, 2 stderr, 3 error (a ``Status`` that also carries the exit code), 4 terminal resize;
in v5, ``0xff 0x00`` closes stdin.  ``pods/{name}/portforward`` over WebSocket uses channel
``2*i`` for the data and ``2*i+1`` for the errors of the ``i``-th port, and the server's first
message on each channel is the port number (two bytes, little endian).
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Callable
from typing import IO, Any
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from apimachinery import errors
from apimachinery.client import error_from_response
from apimachinery.kubeconfig import ClientConfig

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255
EXEC_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"]

log = logging.getLogger(__name__)


def ws_url(server: str, path: str, params: list[tuple[str, str]]) -> str:
    base = server.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return f"{base}{path}?{urlencode(params)}"


def open_ws(
    config: ClientConfig,
    path: str,
    params: list[tuple[str, str]],
    protocols: list[str],
    first: str | None = None,
) -> ClientConnection:
    """Connect, turning a refused upgrade (the server's Status) into the typed error.

    The kubeconfig's API servers (``server``, then the ``servers.minik.io`` extension's; ``first``,
    the one the caller's API client uses now, before the others) are tried in turn while the
    connection cannot be made (refused, timed out, TLS failed): nothing reached a server then, so
    the exec or port-forward is started on the next one, as the API client moves on for requests.
    A server that answers the upgrade with an error ends it there."""
    servers = list(config.servers)
    if first in servers:
        servers.remove(first)
        servers.insert(0, first)
    for i, server in enumerate(servers):
        try:
            return _connect(config, server, path, params, protocols)
        except OSError as exc:
            if i == len(servers) - 1:
                raise errors.ServiceUnavailable(f"cannot reach the API server at {server}: {exc}") from exc
            log.warning(
                "API server %s unreachable (%s: %s); using %s",
                server,
                type(exc).__name__,
                exc,
                servers[i + 1],
            )
    raise AssertionError("a kubeconfig names at least one API server")  # pragma: no cover


def _connect(
    config: ClientConfig, server: str, path: str, params: list[tuple[str, str]], protocols: list[str]
) -> ClientConnection:
    url = ws_url(server, path, params)
    ssl_arg: ssl.SSLContext | None = None
    if url.startswith("wss://"):
        ctx = config.ssl_context()
        ssl_arg = ctx if isinstance(ctx, ssl.SSLContext) else ssl.create_default_context()
    try:
        return connect(
            url,
            subprotocols=[Subprotocol(p) for p in protocols],
            additional_headers=config.auth_headers(),
            ssl=ssl_arg,
            open_timeout=30,
            max_size=None,
            legacy=True,
        )
    except InvalidStatus as exc:
        resp = exc.response
        raise error_from_response(resp.status_code, bytes(resp.body or b""), url) from None


def exit_code_from_status(status: dict[str, Any]) -> int:
    """The exit code in the error channel's Status (0 for Success)."""
    if status.get("status") == "Success":
        return 0
    details = status.get("details") or {}
    for cause in details.get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                return 1
    raise errors.from_status(status, int(status.get("code") or 500))


def exec_params(command: list[str], container: str | None, stdin: bool, tty: bool) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = [("command", c) for c in command]
    if container:
        params.append(("container", container))
    params.append(("stdout", "true"))
    params.append(("stderr", "false" if tty else "true"))
    if stdin:
        params.append(("stdin", "true"))
    if tty:
        params.append(("tty", "true"))
    return params


def resize_message(width: int, height: int) -> bytes:
    return bytes([RESIZE]) + json.dumps({"Width": width, "Height": height}).encode()


def run_exec(
    ws: ClientConnection,
    stdin: IO[bytes] | None,
    stdout: IO[bytes],
    stderr: IO[bytes],
    on_open: Callable[[ClientConnection], None] | None = None,
) -> int:
    """Pump the streams of one exec session; returns the remote command's exit code."""
    v5 = ws.subprotocol == "v5.channel.k8s.io"

    def pump_stdin() -> None:
        assert stdin is not None
        try:
            while True:
                chunk = stdin.read1(32768) if hasattr(stdin, "read1") else stdin.read(32768)
                if not chunk:
                    break
                ws.send(bytes([STDIN]) + chunk)
            if v5:
                ws.send(bytes([CLOSE, STDIN]))
        except (ConnectionClosed, OSError, ValueError):
            pass

    if on_open is not None:
        on_open(ws)
    if stdin is not None:
        threading.Thread(target=pump_stdin, name="exec-stdin", daemon=True).start()
    code: int | None = None
    try:
        for message in ws:
            if isinstance(message, str):
                message = message.encode()
            if not message:
                continue
            channel, data = message[0], message[1:]
            if channel == STDOUT:
                stdout.write(data)
                stdout.flush()
            elif channel == STDERR:
                stderr.write(data)
                stderr.flush()
            elif channel == ERROR and data:
                code = exit_code_from_status(json.loads(data))
    except ConnectionClosed:
        pass
    finally:
        ws.close()
    return code if code is not None else 0


def portforward_session(ws: ClientConnection, sock: Any) -> None:
    """Forward one local TCP connection over a port-forward WebSocket (one port, index 0)."""
    seen_header = {0: False, 1: False}

    def local_to_remote() -> None:
        try:
            while True:
                chunk = sock.recv(32768)
                if not chunk:
                    break
                ws.send(bytes([0]) + chunk)
        except (ConnectionClosed, OSError):
            pass

    try:
        with ws:
            threading.Thread(target=local_to_remote, name="portforward-up", daemon=True).start()
            for message in ws:
                if isinstance(message, str) or not message:
                    continue
                channel, data = message[0], message[1:]
                if channel in seen_header and not seen_header[channel]:
                    seen_header[channel] = True  # the port number
                    continue
                if channel == 0:
                    sock.sendall(data)
                elif channel == 1 and data:
                    raise errors.InternalError(f"error forwarding port: {data.decode(errors='replace')}")
    except ConnectionClosed:
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass
