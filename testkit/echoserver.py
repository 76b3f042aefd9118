"""A small HTTP/1.1 and WebSocket echo server (standard library only) and the local image that runs
it, for the ingress tests and benchmark.

The server (this file, run as ``python3 echoserver.py [PORT]``; port 8080 by default):

* ``GET /bytes/N``: N bytes of ``x`` (the benchmark's 1 KiB answer is ``/bytes/1024``);
* any other path: a JSON object with the server's ``name`` (``$ECHO_NAME``, else the host name),
  the request's ``method``, ``path`` and ``headers`` (lower-case names);
* an ``Upgrade: websocket`` request: the RFC 6455 handshake, then every text or binary message is
  sent back as it came, pings are answered, a close is echoed;
* keep-alive as HTTP/1.1 does it (``Connection: close`` honoured).

The image ``minik-test/echo:1`` (:func:`ensure_echo_image`) is ``minik-test/debian-python`` (built
locally by :mod:`testkit.pyimage`) with this file as ``/echo.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

IMAGE = "minik-test/echo:1"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_lock = threading.Lock()


def _response(status: str, body: bytes, ctype: str = "application/json", close: bool = False) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


class _HTTP(asyncio.Protocol):
    name = os.environ.get("ECHO_NAME") or socket.gethostname()

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.ws = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.ws:
            self._ws_frames()
            return
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, rest = self.buf[:end].decode("latin-1"), self.buf[end + 4 :]
            lines = head.split("\r\n")
            try:
                method, path, version = lines[0].split(" ", 2)
            except ValueError:
                self._send(_response("400 Bad Request", b"bad request\n", "text/plain", close=True))
                self._close()
                return
            headers: dict[str, str] = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length") or 0)
            if len(rest) < length:
                return
            self.buf = rest[length:]
            close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            if headers.get("upgrade", "").lower() == "websocket":
                self._upgrade(headers)
                return
            if path.startswith("/bytes/"):
                n = int(path[7:] or 0)
                self._send(_response("200 OK", b"x" * n, "application/octet-stream", close))
            else:
                body = {"name": self.name, "method": method, "path": path, "headers": headers}
                self._send(_response("200 OK", json.dumps(body).encode(), close=close))
            if close:
                self._close()
                return

    def _send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- WebSocket ---------------------------------------------------------------------------------
    def _upgrade(self, headers: dict[str, str]) -> None:
        key = headers.get("sec-websocket-key", "").encode()
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        self._send(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\nX-Echo-Name: {self.name}\r\n\r\n"
            ).encode()
        )
        self.ws = True
        self._ws_frames()

    def _ws_frames(self) -> None:
        while len(self.buf) >= 2:
            b0, b1 = self.buf[0], self.buf[1]
            opcode, masked, n = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
            pos = 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n, pos = struct.unpack("!H", self.buf[2:4])[0], 4
            elif n == 127:
                if len(self.buf) < 10:
                    return
                n, pos = struct.unpack("!Q", self.buf[2:10])[0], 10
            mask = self.buf[pos : pos + 4] if masked else b""
            pos += 4 if masked else 0
            if len(self.buf) < pos + n:
                return
            payload = self.buf[pos : pos + n]
            self.buf = self.buf[pos + n :]
            if masked:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            if opcode == 0x9:  # ping
                self._send(ws_frame(payload, 0xA, mask=False))
            elif opcode == 0x8:  # close
                self._send(ws_frame(payload, 0x8, mask=False))
                self._close()
                return
            elif opcode in (0x1, 0x2):
                self._send(ws_frame(payload, opcode, mask=False))


def ws_frame(payload: bytes, opcode: int = 0x1, mask: bool = True) -> bytes:
    """One final WebSocket frame (clients mask, servers do not)."""
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def read_ws_frame(sock: socket.socket) -> tuple[int, bytes]:
    """(opcode, payload) of the next unmasked frame a server sent on ``sock``."""

    def exact(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("connection closed in a WebSocket frame")
            out += chunk
        return out

    b0, b1 = exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exact(8))[0]
    return b0 & 0x0F, exact(n)


async def _main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_HTTP, "0.0.0.0", port, reuse_address=True, backlog=1024)
    print(f"echo server {_HTTP.name} on :{port}", flush=True)
    async with server:
        await server.serve_forever()


def ensure_echo_image(name: str = IMAGE) -> str:
    """Build ``name`` (the Debian Python image plus this file) unless it exists with this file's text."""
    from testkit.pyimage import BASE_IMAGE, ensure_python_image

    source = Path(__file__).read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    ensure_python_image()
    with _lock:
        proc = subprocess.run(
            ["docker", "image", "inspect", "-f", '{{index .Config.Labels "minik.source"}}', name],
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0 and proc.stdout.strip() == digest:
            return name
        with tempfile.TemporaryDirectory(prefix="minik-echo-") as tmp:
            (Path(tmp) / "echo.py").write_bytes(source)
            (Path(tmp) / "Dockerfile").write_text(
                f'FROM {BASE_IMAGE}\nCOPY echo.py /echo.py\nLABEL minik.source="{digest}"\n'
                'ENTRYPOINT ["python3", "/echo.py"]\n'
            )
            built = subprocess.run(["docker", "build", "-q", "-t", name, tmp], capture_output=True, text=True)
        if built.returncode != 0:
            raise RuntimeError(f"docker build of {name} failed: {built.stderr[-2000:]}")
        return name


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]) if len(sys.argv) > 1 else 8080))
