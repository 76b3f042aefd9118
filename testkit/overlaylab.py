"""Two "hosts" on different L2 segments, as network namespaces, for the overlay backends (kubelet/overlay.py).

::

    pod1 --[cni0]-- host1 eth0 192.168.201.2 --- router --- 192.168.202.2 eth0 host2 --[cni0]-- pod2
    10.244.1.2    (10.244.1.1 on cni0)                                (10.244.2.1 on cni0)  10.244.2.2

The router forwards between the two segments and knows nothing of the pod CIDRs, so pod traffic
between the hosts only gets through a VXLAN overlay (or not at all).  Each host's bridge and pod
veth get the pod MTU, as the CNI bridge plugin's ``mtu`` does.  :class:`OverlayLab` is a context
manager: every namespace (and with it every link, route and entry in it) is removed on exit.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from types import TracebackType

SEGMENTS = ("192.168.201", "192.168.202")
POD_CIDRS = ("10.244.1.0/24", "10.244.2.0/24")
CLUSTER_CIDR = "10.244.0.0/16"


def sh(*cmd: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r


@dataclass
class Host:
    name: str  # the node's name
    ns: str  # the host's netns
    pod_ns: str  # its pod's netns
    ip: str  # the public IP (eth0)
    pod_cidr: str
    pod_ip: str


class OverlayLab:
    def __init__(self, prefix: str | None = None) -> None:
        p = prefix or f"mkov{os.getpid() % 100000}"
        self.router = f"{p}-r"
        self.hosts = [
            Host(
                f"node{i + 1}",
                f"{p}-h{i + 1}",
                f"{p}-p{i + 1}",
                f"{SEGMENTS[i]}.2",
                POD_CIDRS[i],
                POD_CIDRS[i].replace(".0/24", ".2"),
            )
            for i in range(2)
        ]
        self.namespaces = [self.router] + [n for h in self.hosts for n in (h.ns, h.pod_ns)]

    def __enter__(self) -> OverlayLab:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def build(self) -> None:
        for ns in self.namespaces:
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.router)
        for i, h in enumerate(self.hosts):
            seg = SEGMENTS[i]
            sh(
                "ip",
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                f"r{i + 1}",
                "netns",
                self.router,
                ns=h.ns,
            )
            sh("ip", "addr", "add", f"{seg}.1/24", "dev", f"r{i + 1}", ns=self.router)
            sh("ip", "link", "set", f"r{i + 1}", "up", ns=self.router)
            sh("ip", "addr", "add", f"{h.ip}/24", "dev", "eth0", ns=h.ns)
            sh("ip", "link", "set", "eth0", "up", ns=h.ns)
            sh("ip", "route", "add", "default", "via", f"{seg}.1", ns=h.ns)
            sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=h.ns)

    def add_pods(self, mtu: int) -> None:
        """A bridge ``cni0`` with the pod CIDR's gateway on each host and a pod behind it (MTU ``mtu``)."""
        for h in self.hosts:
            gw = h.pod_cidr.replace(".0/24", ".1")
            sh("ip", "link", "add", "cni0", "mtu", str(mtu), "type", "bridge", ns=h.ns)
            sh("ip", "addr", "add", f"{gw}/24", "dev", "cni0", ns=h.ns)
            sh("ip", "link", "set", "cni0", "up", ns=h.ns)
            sh("ip", "link", "add", "vpod", "mtu", str(mtu), "type", "veth", "peer", "name", "eth0", "netns", h.pod_ns, ns=h.ns)  # fmt: skip
            sh("ip", "link", "set", "vpod", "master", "cni0", "up", ns=h.ns)
            sh("ip", "link", "set", "eth0", "mtu", str(mtu), ns=h.pod_ns)
            sh("ip", "addr", "add", f"{h.pod_ip}/24", "dev", "eth0", ns=h.pod_ns)
            sh("ip", "link", "set", "eth0", "up", ns=h.pod_ns)
            sh("ip", "route", "add", "default", "via", gw, ns=h.pod_ns)

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# -- traffic ---------------------------------------------------------------------------------------

_SERVER = textwrap.dedent(
    """
    import socket, sys, time
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    s.listen(1)
    s.settimeout(float(sys.argv[2]))
    print("listening", flush=True)
    c, _ = s.accept()
    c.settimeout(float(sys.argv[2]))
    first = c.recv(1 << 20)
    total, t0 = len(first), time.perf_counter()
    if first.startswith(b"ping"):
        c.sendall(b"pong " + first[5:])
    else:
        buf = bytearray(1 << 20)
        while True:
            n = c.recv_into(buf)
            if not n:
                break
            total += n
    print(total, time.perf_counter() - t0, flush=True)
    """
)

_CLIENT = textwrap.dedent(
    """
    import socket, sys, time
    host, port, seconds, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    c = socket.create_connection((host, port), timeout=timeout)
    if seconds <= 0:
        c.sendall(b"ping hello")
        print(c.recv(100).decode(), flush=True)
    else:
        chunk = b"x" * (1 << 18)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            c.sendall(chunk)
    c.close()
    """
)


def _tcp(src_ns: str, dst_ns: str, dst_ip: str, port: int, seconds: float, timeout: float) -> tuple[str, str]:
    server = subprocess.Popen(
        ["ip", "netns", "exec", dst_ns, sys.executable, "-c", _SERVER, str(port), str(timeout + seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "listening"
        client = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                src_ns,
                sys.executable,
                "-c",
                _CLIENT,
                dst_ip,
                str(port),
                str(seconds),
                str(timeout),
            ],
            capture_output=True,
            text=True,
            timeout=timeout + seconds + 10,
        )
        if client.returncode != 0:
            raise ConnectionError(
                client.stderr.strip().splitlines()[-1] if client.stderr.strip() else "failed"
            )
        out, _ = server.communicate(timeout=timeout + 10)
        return client.stdout.strip(), out.strip()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def tcp_ping(src_ns: str, dst_ns: str, dst_ip: str, port: int = 5201, timeout: float = 3.0) -> str:
    """A TCP connection from ``src_ns`` to ``dst_ip:port`` served in ``dst_ns``: the reply ("pong hello");
    ConnectionError when it cannot connect within ``timeout`` seconds."""
    return _tcp(src_ns, dst_ns, dst_ip, port, 0, timeout)[0]


def tcp_throughput(src_ns: str, dst_ns: str, dst_ip: str, seconds: float, port: int = 5202) -> float:
    """Bulk TCP from ``src_ns`` to ``dst_ip`` for ``seconds``: Gbit/s as the receiver counted them."""
    _, out = _tcp(src_ns, dst_ns, dst_ip, port, seconds, 5.0)
    total, elapsed = out.split()
    return int(total) * 8 / float(elapsed) / 1e9


# -- reaching the root namespace's loopback from the hosts ------------------------------------------

CLONE_NEWNET = 0x40000000


def listen_in_netns(ns: str, port: int) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:``port`` inside the network namespace ``ns`` (the calling
    thread enters it for the ``bind`` only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {ns}")
        try:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(64)
            s.setblocking(False)
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)
    return s


class LoopbackForwarder:
    """127.0.0.1:``port`` inside each of ``namespaces`` forwarded to 127.0.0.1:``port`` of the root
    namespace (where the test's API server listens), so that a kubelet run in a "host" namespace
    reaches it with the usual kubeconfig.  A context manager: the thread and sockets go on exit."""

    def __init__(self, port: int, namespaces: list[str]) -> None:
        self.port = port
        self.namespaces = namespaces
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="netns-forwarder", daemon=True)
        self.sockets: list[socket.socket] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            writer.close()
            return

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def __enter__(self) -> LoopbackForwarder:
        self.sockets = [listen_in_netns(ns, self.port) for ns in self.namespaces]
        self.thread.start()
        for s in self.sockets:
            asyncio.run_coroutine_threadsafe(asyncio.start_server(self._handle, sock=s), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        for s in self.sockets:
            s.close()
