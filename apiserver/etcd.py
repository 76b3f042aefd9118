"""A small async etcd v3 key-value layer: exactly the calls the API server's storage needs.

It speaks etcd's gRPC API through the generated stubs that ship with ``aetcd`` (the high-level
``aetcd.Client`` has no ``revision``/``limit`` on range reads, which lists and pagination need).
Every failure to reach etcd surfaces as :class:`EtcdUnavailable`, which the API server turns into a
503 ``Status``; a watch from a compacted revision raises :class:`Compacted` (the server's 410 Gone).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import grpc
from aetcd import rpc

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0


class EtcdUnavailable(Exception):
    """etcd could not be reached, or did not answer in time."""


class Compacted(Exception):
    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"required revision has been compacted (compact revision {compact_revision})")
        self.compact_revision = compact_revision


@dataclass(frozen=True, slots=True)
class KV:
    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int
    lease: int = 0
    # read with a key or provider other than the one writes use (apiserver.encryption): an update
    # rewrites it even when the object did not change, which re-encrypts it with the current key
    stale: bool = False


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # "PUT" or "DELETE"
    kv: KV
    prev: KV | None
    revision: int


class ValueTransformer(Protocol):
    """Encryption at rest (apiserver.encryption.Transformer): every value read or written."""

    def to_storage(self, key: bytes, value: bytes) -> bytes: ...
    def from_storage(self, key: bytes, value: bytes) -> tuple[bytes, bool]: ...


def prefix_end(prefix: bytes) -> bytes:
    """The range end that makes a range read cover every key starting with ``prefix``."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


def grpc_target(servers: str) -> str:
    """``http://a:2379,http://b:2379`` -> a gRPC target that fails over between the members."""
    hosts = []
    for url in servers.split(","):
        url = url.strip()
        if not url:
            continue
        parts = urlsplit(url if "://" in url else f"http://{url}")
        hosts.append(f"{parts.hostname}:{parts.port or 2379}")
    if not hosts:
        raise ValueError("no etcd server given")
    if len(hosts) == 1:
        return hosts[0]
    # gRPC's ipv4: target (which fails over between members) takes addresses only: resolve names
    return "ipv4:" + ",".join(_resolve(h) for h in hosts)


def _resolve(host_port: str) -> str:
    host, _, port = host_port.rpartition(":")
    try:
        ipaddress.IPv4Address(host)
        return host_port
    except ValueError:
        pass
    try:
        info = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ValueError(f"cannot resolve etcd server {host}: {e}") from None
    return f"{info[0][4][0]}:{port}"


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def first_host(servers: str) -> str:
    """The host name of the first server URL (what a TLS connection to the members checks their
    certificates for: each member's serving certificate names every member)."""
    url = servers.split(",")[0].strip()
    return urlsplit(url if "://" in url else f"http://{url}").hostname or ""


class Etcd:
    def __init__(
        self,
        servers: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        cafile: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
    ) -> None:
        """``cafile`` (and a client ``certfile``/``keyfile``) speak TLS to etcd, as
        ``--etcd-cafile``/``--etcd-certfile``/``--etcd-keyfile`` ask; https:// URLs without a
        CA file use the system's CAs."""
        self.servers = servers
        self.timeout = timeout
        options: list[tuple[str, int | str]] = [
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2_000),
        ]
        target = grpc_target(servers)
        if cafile or certfile or "https://" in servers:
            creds = grpc.ssl_channel_credentials(_read(cafile), _read(keyfile), _read(certfile))
            if target.startswith("ipv4:"):  # several members: check their certificates for the first's name
                options.append(("grpc.ssl_target_name_override", first_host(servers)))
            self._channel = grpc.aio.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        self._kv = rpc.KVStub(self._channel)
        self._watch = rpc.WatchStub(self._channel)
        self._lease = rpc.LeaseStub(self._channel)
        self._maint = rpc.MaintenanceStub(self._channel)
        # encryption at rest: values pass through it on every read and write (None: stored as given)
        self.transformer: ValueTransformer | None = None
        # etcd_request_duration_seconds (apiserver.metrics.EtcdMetrics; None: not recorded)
        self.metrics: Any = None

    def _decoded(self, m: rpc.KeyValue) -> KV:
        if self.transformer is None or not m.value:
            return KV(m.key, m.value, m.mod_revision, m.create_revision, m.lease)
        value, stale = self.transformer.from_storage(m.key, m.value)
        return KV(m.key, value, m.mod_revision, m.create_revision, m.lease, stale)

    def _out(self, k: bytes, value: bytes) -> bytes:
        return value if self.transformer is None else self.transformer.to_storage(k, value)

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, fn, request, timeout: float | None = None, op: str = "", key: bytes = b""):  # type: ignore[no-untyped-def]
        recorder = self.metrics
        start = time.perf_counter() if recorder is not None else 0.0
        try:
            return await fn(request, timeout=timeout or self.timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.OUT_OF_RANGE:
                raise Compacted(0) from None
            raise EtcdUnavailable(f"etcd at {self.servers}: {e.code().name}: {e.details()}") from None
        finally:
            if recorder is not None and op:
                recorder.observe(op, key, time.perf_counter() - start)

    # --- reads -----------------------------------------------------------------------------------
    async def get(self, key: str) -> tuple[KV | None, int]:
        """The key's value (or None) and the store's revision at the read."""
        k = key.encode()
        resp = await self._call(self._kv.Range, rpc.RangeRequest(key=k), op="get", key=k)
        return (self._decoded(resp.kvs[0]) if resp.kvs else None), resp.header.revision

    async def range(
        self, prefix: str, *, start: bytes | None = None, limit: int = 0, revision: int = 0
    ) -> tuple[list[KV], bool, int]:
        """Keys under ``prefix`` from ``start`` on: (kvs, more, revision read at)."""
        p = prefix.encode()
        req = rpc.RangeRequest(key=start or p, range_end=prefix_end(p), limit=limit, revision=revision)
        resp = await self._call(self._kv.Range, req, timeout=max(self.timeout, 30.0), op="list", key=p)
        return [self._decoded(k) for k in resp.kvs], resp.more, resp.header.revision

    async def count(self, prefix: str) -> int:
        p = prefix.encode()
        resp = await self._call(
            self._kv.Range,
            rpc.RangeRequest(key=p, range_end=prefix_end(p), count_only=True),
            op="count",
            key=p,
        )
        return int(resp.count)

    async def revision(self) -> int:
        resp = await self._call(self._kv.Range, rpc.RangeRequest(key=b"\0", count_only=True))
        return int(resp.header.revision)

    async def status(self) -> str:
        resp = await self._call(self._maint.Status, rpc.StatusRequest(), timeout=2.0)
        return str(resp.version)

    # --- writes (compare-and-swap) -----------------------------------------------------------------
    async def create(self, key: str, value: bytes, lease: int = 0) -> int | None:
        """Put only if the key does not exist: the new revision, or None if it exists."""
        k = key.encode()
        txn = rpc.TxnRequest(
            compare=[
                rpc.Compare(key=k, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)
            ],
            success=[
                rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=self._out(k, value), lease=lease))
            ],
        )
        resp = await self._call(self._kv.Txn, txn, op="create", key=k)
        return int(resp.header.revision) if resp.succeeded else None

    async def update(self, key: str, value: bytes, mod_revision: int) -> tuple[int | None, KV | None]:
        """Put only if the key is still at ``mod_revision``.

        Returns (new revision, None) on success or (None, current kv or None) when it moved on.
        """
        k = key.encode()
        return await self._if_unchanged(
            k,
            mod_revision,
            rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=self._out(k, value))),
            "update",
        )

    async def delete(self, key: str, mod_revision: int) -> tuple[int | None, KV | None]:
        """Delete only if the key is still at ``mod_revision``; same result shape as :meth:`update`."""
        k = key.encode()
        op = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k))
        return await self._if_unchanged(k, mod_revision, op, "delete")

    async def _if_unchanged(
        self, k: bytes, mod_revision: int, op: rpc.RequestOp, operation: str = ""
    ) -> tuple[int | None, KV | None]:
        """Run ``op`` in a transaction if key ``k`` is still at ``mod_revision``, else read it."""
        txn = rpc.TxnRequest(
            compare=[
                rpc.Compare(
                    key=k, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=mod_revision
                )
            ],
            success=[op],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))],
        )
        resp = await self._call(self._kv.Txn, txn, op=operation, key=k)
        if resp.succeeded:
            return int(resp.header.revision), None
        kvs = resp.responses[0].response_range.kvs
        return None, (self._decoded(kvs[0]) if kvs else None)

    async def put(self, key: str, value: bytes) -> int:
        k = key.encode()
        resp = await self._call(self._kv.Put, rpc.PutRequest(key=k, value=self._out(k, value)))
        return int(resp.header.revision)

    async def grant_lease(self, ttl: int) -> int:
        resp = await self._call(self._lease.LeaseGrant, rpc.LeaseGrantRequest(TTL=ttl))
        return int(resp.ID)

    async def put_with_lease(self, key: str, value: bytes, lease: int) -> int:
        """Put ``key`` attached to ``lease``: etcd deletes it when the lease expires."""
        k = key.encode()
        req = rpc.PutRequest(key=k, value=self._out(k, value), lease=lease)
        resp = await self._call(self._kv.Put, req)
        return int(resp.header.revision)

    async def keep_alive(self, lease: int) -> int:
        """Refresh ``lease`` once; its TTL left in seconds, 0 when it has already expired.  Unlike a
        put, a keep-alive does not move the store's revision."""

        async def once() -> AsyncIterator[rpc.LeaseKeepAliveRequest]:
            yield rpc.LeaseKeepAliveRequest(ID=lease)

        try:
            async for resp in self._lease.LeaseKeepAlive(once(), timeout=self.timeout):
                return int(resp.TTL)
        except grpc.aio.AioRpcError as e:
            raise EtcdUnavailable(f"etcd at {self.servers}: {e.code().name}: {e.details()}") from None
        return 0

    async def compact(self, revision: int) -> None:
        await self._call(
            self._kv.Compact, rpc.CompactionRequest(revision=revision, physical=True), timeout=30
        )

    # --- watch -----------------------------------------------------------------------------------
    async def watch(
        self, prefix: str, start_revision: int, progress: asyncio.Event | None = None
    ) -> AsyncIterator[list[WatchEvent] | int]:
        """Stream batches of events under ``prefix`` from ``start_revision`` (inclusive).

        Yields lists of events, and an int (the store revision) for progress notifications, which
        are requested whenever ``progress`` is set.  Raises :class:`Compacted` when the start
        revision is gone and :class:`EtcdUnavailable` when the stream breaks.
        """
        p = prefix.encode()
        outbox: asyncio.Queue[rpc.WatchRequest] = asyncio.Queue()
        await outbox.put(
            rpc.WatchRequest(
                create_request=rpc.WatchCreateRequest(
                    key=p, range_end=prefix_end(p), start_revision=start_revision, prev_kv=True
                )
            )
        )

        async def requests() -> AsyncIterator[rpc.WatchRequest]:
            while True:
                yield await outbox.get()

        async def progress_pump() -> None:
            if progress is None:
                return
            while True:
                await progress.wait()
                progress.clear()
                await outbox.put(rpc.WatchRequest(progress_request=rpc.WatchProgressRequest()))

        pump = asyncio.create_task(progress_pump())
        call = self._watch.Watch(requests())
        try:
            async for resp in call:
                if resp.compact_revision:
                    raise Compacted(int(resp.compact_revision))
                if resp.canceled:
                    raise EtcdUnavailable(f"etcd cancelled the watch: {resp.cancel_reason}")
                if resp.created and not resp.events:
                    continue
                if not resp.events:
                    yield int(resp.header.revision)
                    continue
                batch = []
                for ev in resp.events:
                    batch.append(
                        WatchEvent(
                            "DELETE" if ev.type == rpc.Event.DELETE else "PUT",
                            self._decoded(ev.kv),
                            self._decoded(ev.prev_kv) if ev.HasField("prev_kv") else None,
                            int(ev.kv.mod_revision),
                        )
                    )
                yield batch
            raise EtcdUnavailable("etcd watch stream ended")
        except grpc.aio.AioRpcError as e:
            raise EtcdUnavailable(f"etcd watch: {e.code().name}: {e.details()}") from None
        finally:
            pump.cancel()
            call.cancel()
