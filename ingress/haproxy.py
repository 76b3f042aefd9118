"""Running HAProxy (Debian's ``haproxy`` package) as the controller's data path.

HAProxy runs in master-worker mode as a child of the controller (``-db``: in the foreground).  A
configuration change is written next to the running one, checked with ``haproxy -c``, and loaded
with SIGUSR2 to the master: it starts new workers with the new configuration, the listening sockets
are handed over (no connection refused meanwhile), and the old workers finish the requests and
tunnels they have (WebSockets until ``hard-stop-after``) before they exit.  An endpoint-only change
needs no reload: the servers of a backend are slots, set through the runtime API (the stats socket)
as HAProxy's own ingress controllers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from . import model

log = logging.getLogger(__name__)


def find_binary(name: str = "haproxy") -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(p, os.X_OK)), None
    )


def self_signed_pem(common_name: str = "minik ingress default certificate") -> bytes:
    """A self-signed certificate and key, served to clients whose SNI names no Secret's host."""
    from apimachinery import pki  # here, not at the top: cryptography loads only when this runs

    cert, key = pki.pem_pair(
        *pki.generate_certificate(
            common_name, ["ingress.minik.invalid"], days=3650, backdate=datetime.timedelta(hours=1)
        )
    )
    return cert + key


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the controller dies (even by SIGKILL), so no HAProxy
    outlives it holding the ports."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass(frozen=True)
class ServerState:
    """One server (slot) of the runtime API's ``show servers state``."""

    backend: str
    server: str
    address: str
    op_state: int  # SRV_ST_*: 0 stopped, 1 starting, 2 running, 3 stopping
    admin_state: int  # SRV_ADMF_* bits: 0x01 FMAINT, 0x02 IMAINT, 0x04 CMAINT, 0x20 RMAINT, ...

    @property
    def in_service(self) -> bool:
        """Running and in no maintenance (forced, inherited or resolution).  A slot enabled at run
        time keeps the configuration's CMAINT bit (``disabled`` in the file), which is no
        maintenance."""
        return self.op_state == 2 and self.admin_state & 0x23 == 0


def parse_servers_state(text: str) -> list[ServerState]:
    """The servers in the answer to ``show servers state``: a version line, a ``#`` header, then
    ``be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...`` per server."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 6 and not line.startswith("#"):
            out.append(ServerState(parts[1], parts[3], parts[4], int(parts[5]), int(parts[6])))
    return out


class ConfigError(Exception):
    """``haproxy -c`` refused a configuration (the running one stays)."""


class HAProxy:
    def __init__(self, settings: model.Settings, binary: str = "haproxy") -> None:
        self.settings = settings
        self.binary = binary
        self.dir = Path(settings.state_dir)
        self.cfg = self.dir / "haproxy.cfg"
        self.socket = self.dir / "admin.sock"
        self.proc: asyncio.subprocess.Process | None = None
        self.reloads = 0

    # -- files --------------------------------------------------------------------------------------
    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        (self.dir / "certs").mkdir(exist_ok=True)
        default = self.dir / "default.pem"
        if not default.exists():
            tmp = default.with_suffix(".tmp")
            tmp.write_bytes(self_signed_pem())
            os.chmod(tmp, 0o600)
            tmp.replace(default)

    def write(self, d: model.Desired) -> Path:
        """Write the certificates, the crt-list and the configuration (to a new file, returned)."""
        certs = self.dir / "certs"
        keep = set()
        for c in d.certs:
            path = certs / c.name
            keep.add(c.name)
            if not path.exists() or path.read_bytes() != c.pem:
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(c.pem)
                os.chmod(tmp, 0o600)
                tmp.replace(path)
        (self.dir / "crt-list").write_text(model.crt_list(d, self.settings))
        for old in certs.iterdir():
            if old.name not in keep:
                old.unlink(missing_ok=True)
        new = self.dir / "haproxy.cfg.new"
        new.write_text(model.render(d, self.settings))
        return new

    async def check(self, path: Path) -> None:
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            "-c",
            "-q",
            "-f",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise ConfigError(out.decode(errors="replace").strip()[-2000:])

    # -- the process -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def apply(self, d: model.Desired) -> None:
        """Load ``d`` with a (re)start of the workers: checked first, so a refused configuration
        leaves the running one serving."""
        new = self.write(d)
        await self.check(new)
        new.replace(self.cfg)
        if not self.running:
            await self._start()
            return
        before = await self.worker_pid()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR2)
        self.reloads += 1
        # the runtime API answers from the new workers once they run
        for _ in range(200):
            pid = await self.worker_pid()
            if pid is not None and pid != before:
                return
            if not self.running:
                raise RuntimeError("haproxy exited during a reload")
            await asyncio.sleep(0.05)
        log.warning("haproxy: no new worker 10 s after a reload")

    async def _start(self) -> None:
        self.socket.unlink(missing_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            self.binary,
            "-db",
            "-f",
            str(self.cfg),
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        for _ in range(200):
            if await self.worker_pid() is not None:
                log.info("haproxy started (master pid %d)", self.proc.pid)
                return
            if not self.running:
                raise RuntimeError(f"haproxy exited at start (code {self.proc.returncode})")
            await asyncio.sleep(0.05)
        raise RuntimeError("haproxy did not answer on its stats socket 10 s after its start")

    async def stop(self, grace: float = 5.0) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGUSR1)  # soft stop: finish what runs
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        self.proc = None

    # -- runtime API -------------------------------------------------------------------------------
    async def command(self, line: str, timeout: float = 5.0) -> str:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(self.socket)), timeout)
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            return (await asyncio.wait_for(reader.read(), timeout)).decode(errors="replace")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def worker_pid(self) -> int | None:
        try:
            info = await self.command("show info", timeout=1.0)
        except (OSError, TimeoutError):
            return None
        for line in info.splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        return None

    async def set_servers(self, commands: list[str]) -> None:
        """Run runtime API commands (batches of 50 per connection); any answer but the address
        changes' confirmations is an error."""
        for i in range(0, len(commands), 50):
            answer = await self.command(";".join(commands[i : i + 50]))
            bad = [
                line
                for line in answer.splitlines()
                if line.strip() and not line.startswith(("IP changed", "no need to change", "Port changed"))
            ]
            if bad:
                raise RuntimeError(f"haproxy runtime API: {' / '.join(bad)[:500]}")
