"""A minimal server side of SPDY/3.1, the framing under ``kubectl port-forward``.

Only what Kubernetes' streaming protocols use (``k8s.io/apimachinery/pkg/util/httpstream/spdy``,
built on ``github.com/moby/spdystream``): clients open streams with SYN_STREAM, the server accepts
each with SYN_REPLY, both sides send DATA (a DATA frame with the FIN flag half-closes a stream),
RST_STREAM aborts one, PING is echoed, GOAWAY ends the session.  SETTINGS and WINDOW_UPDATE are
parsed; flow control is enforced only when asked for (``Session(flow_control=True)``):
spdystream neither sends WINDOW_UPDATE nor honours it, so a server that waited for window
updates from kubectl would stall after the first 64 KiB.

Name/value header blocks are zlib streams shared by all frames of one direction of a connection,
primed with SPDY/3's dictionary and flushed with ``Z_SYNC_FLUSH`` after each block.

Frame layout (all integers big-endian)::

    control: 1 | version:15 | type:16 || flags:8 | length:24 || payload
    data:    0 | stream-id:31         || flags:8 | length:24 || payload
"""

from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

VERSION = 3

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
CANCEL = 5
INTERNAL_ERROR = 6
FLOW_CONTROL_ERROR = 7

SETTINGS_INITIAL_WINDOW_SIZE = 7
DEFAULT_WINDOW = 65536
MAX_DATA_LENGTH = (1 << 24) - 1

_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base content-encoding "
    "content-language content-length content-location content-md5 content-range content-type date "
    "etag expect expires from host if-match if-modified-since if-none-match if-range "
    "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
    "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status"
).split()
_WORDS_2 = ("version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin")
_TAIL = (
    b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    b"203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
    b"Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 "
    b"Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, "
    b"Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,"
    b"application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch"
    b"charset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)


def _length_prefixed(words: tuple[str, ...] | list[str]) -> bytes:
    return b"".join(len(w).to_bytes(4, "big") + w.encode() for w in words)


#: SPDY/3's zlib dictionary for header blocks (section 2.6.10.1 of the draft): 1423 bytes.
DICTIONARY = _length_prefixed(_WORDS) + _length_prefixed(["200 OK"]) + _length_prefixed(_WORDS_2) + _TAIL


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3: the session must end."""


Headers = dict[str, list[str]]


@dataclass
class SynStream:
    stream_id: int
    headers: Headers
    flags: int = 0
    associated_to: int = 0
    priority: int = 0
    slot: int = 0


@dataclass
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0


@dataclass
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0


@dataclass
class RstStream:
    stream_id: int
    status: int


@dataclass
class Settings:
    #: (flags, id, value) triples
    entries: list[tuple[int, int, int]] = field(default_factory=list)
    flags: int = 0


@dataclass
class Ping:
    ping_id: int


@dataclass
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass
class Data:
    stream_id: int
    data: bytes
    flags: int = 0


Frame = SynStream | SynReply | HeadersFrame | RstStream | Settings | Ping | GoAway | WindowUpdate | Data


# --- header blocks ----------------------------------------------------------------------------------
def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed block: a count, then length-prefixed lowercase names and NUL-joined values."""
    out = [len(headers).to_bytes(4, "big")]
    for name, values in headers.items():
        n = name.lower().encode()
        v = b"\x00".join(x.encode() for x in values)
        out += [len(n).to_bytes(4, "big"), n, len(v).to_bytes(4, "big"), v]
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(block):
            raise ProtocolError("truncated name/value header block")
        chunk = block[pos : pos + n]
        pos += n
        return chunk

    count = int.from_bytes(take(4), "big")
    headers: Headers = {}
    for _ in range(count):
        name = take(int.from_bytes(take(4), "big")).decode("latin-1").lower()
        value = take(int.from_bytes(take(4), "big")).decode("latin-1")
        headers.setdefault(name, []).extend(value.split("\x00"))
    return headers


class HeaderCompressor:
    """One direction's zlib stream: every block is sync-flushed so the peer can decode it alone."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        return self._z.compress(encode_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(zdict=DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            return decode_header_block(self._z.decompress(data))
        except zlib.error as e:
            raise ProtocolError(f"bad header block compression: {e}") from None


# --- frames -----------------------------------------------------------------------------------------
def _control(frame_type: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, frame_type, (flags << 24) | len(payload)) + payload


class Framer:
    """Turns bytes into frames and frames into bytes for one connection (it owns both zlib streams)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = HeaderDecompressor()
        self._deflate = HeaderCompressor()

    def feed(self, data: bytes) -> list[Frame]:
        """Every complete frame in what has arrived so far; a partial frame waits for more bytes."""
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            length = int.from_bytes(self._buf[5:8], "big")
            if len(self._buf) < 8 + length:
                break
            head = bytes(self._buf[:8])
            payload = bytes(self._buf[8 : 8 + length])
            del self._buf[: 8 + length]
            frame = self._parse(head, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    def _parse(self, head: bytes, payload: bytes) -> Frame | None:
        first, flags = struct.unpack(">IB", head[:5])
        if not first & 0x80000000:
            stream_id = first & 0x7FFFFFFF
            if stream_id == 0:
                raise ProtocolError("DATA frame on stream 0")
            return Data(stream_id, payload, flags)
        version, frame_type = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")

        def ints(n: int) -> tuple[int, ...]:
            if len(payload) < 4 * n:
                raise ProtocolError(f"control frame type {frame_type} too short")
            return struct.unpack(f">{n}I", payload[: 4 * n])

        if frame_type == SYN_STREAM:
            if len(payload) < 10:
                raise ProtocolError("SYN_STREAM too short")
            sid, assoc = ints(2)
            headers = self._inflate.decompress(payload[10:])
            return SynStream(
                sid & 0x7FFFFFFF, headers, flags, assoc & 0x7FFFFFFF, payload[8] >> 5, payload[9]
            )
        if frame_type in (SYN_REPLY, HEADERS):
            (sid,) = ints(1)
            headers = self._inflate.decompress(payload[4:])
            cls = SynReply if frame_type == SYN_REPLY else HeadersFrame
            return cls(sid & 0x7FFFFFFF, headers, flags)
        if frame_type == RST_STREAM:
            sid, status = ints(2)
            return RstStream(sid & 0x7FFFFFFF, status)
        if frame_type == SETTINGS:
            (count,) = ints(1)
            if len(payload) < 4 + 8 * count:
                raise ProtocolError("SETTINGS too short")
            entries = []
            for i in range(count):
                word, value = struct.unpack_from(">II", payload, 4 + 8 * i)
                entries.append((word >> 24, word & 0xFFFFFF, value))
            return Settings(entries, flags)
        if frame_type == PING:
            return Ping(ints(1)[0])
        if frame_type == GOAWAY:
            last, *rest = ints(2) if len(payload) >= 8 else ints(1)
            return GoAway(last & 0x7FFFFFFF, rest[0] if rest else 0)
        if frame_type == WINDOW_UPDATE:
            sid, delta = ints(2)
            return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        log.debug("ignoring SPDY control frame of type %d", frame_type)
        return None

    def encode(self, frame: Frame) -> bytes:
        """The frame's bytes; header blocks go through this connection's compressor, so frames
        must be sent in the order they were encoded."""
        if isinstance(frame, Data):
            if len(frame.data) > MAX_DATA_LENGTH:
                raise ValueError("DATA payload too large for one frame")
            return (
                struct.pack(">II", frame.stream_id & 0x7FFFFFFF, (frame.flags << 24) | len(frame.data))
                + frame.data
            )
        if isinstance(frame, SynStream):
            body = struct.pack(
                ">IIBB", frame.stream_id, frame.associated_to, (frame.priority & 7) << 5, frame.slot
            )
            return _control(SYN_STREAM, frame.flags, body + self._deflate.compress(frame.headers))
        if isinstance(frame, SynReply):
            body = struct.pack(">I", frame.stream_id) + self._deflate.compress(frame.headers)
            return _control(SYN_REPLY, frame.flags, body)
        if isinstance(frame, HeadersFrame):
            body = struct.pack(">I", frame.stream_id) + self._deflate.compress(frame.headers)
            return _control(HEADERS, frame.flags, body)
        if isinstance(frame, RstStream):
            return _control(RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
        if isinstance(frame, Settings):
            body = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", (f << 24) | (i & 0xFFFFFF), v) for f, i, v in frame.entries
            )
            return _control(SETTINGS, frame.flags, body)
        if isinstance(frame, Ping):
            return _control(PING, 0, struct.pack(">I", frame.ping_id))
        if isinstance(frame, GoAway):
            return _control(GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status))
        if isinstance(frame, WindowUpdate):
            return _control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta))
        raise TypeError(f"not a SPDY frame: {frame!r}")


# --- streams and the session ------------------------------------------------------------------------
class StreamReset(Exception):
    """The peer reset the stream (RST_STREAM) or the session ended."""


class Stream:
    """One client-initiated stream.  ``read()`` returns ``b""`` once the peer half-closed it."""

    def __init__(self, session: Session, stream_id: int, headers: Headers, remote_closed: bool) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self._incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.remote_closed = remote_closed
        self.local_closed = False
        self.reset = False
        self.send_window = session.initial_window
        self._window_open = asyncio.Event()
        self._window_open.set()
        self._consumed = 0
        if remote_closed:
            self._incoming.put_nowait(None)

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    async def read(self) -> bytes:
        data = await self._incoming.get()
        if data is None:
            self._incoming.put_nowait(None)  # stay at EOF for later reads
            if self.reset:
                raise StreamReset(f"stream {self.id} was reset")
            return b""
        if self.session.flow_control:
            self._consumed += len(data)
            if self._consumed >= self.session.initial_window // 2:
                delta, self._consumed = self._consumed, 0
                await self.session.send_frame(WindowUpdate(self.id, delta))
        return data

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.reset:
                raise StreamReset(f"stream {self.id} was reset")
            if self.local_closed:
                raise StreamReset(f"stream {self.id} is closed for writing")
            n = len(view)
            if self.session.flow_control:
                await self._window_open.wait()
                await self.session._session_window_open.wait()
                n = min(n, self.send_window, self.session.send_window)
                if n <= 0:
                    continue
                self.send_window -= n
                self.session.send_window -= n
                if self.send_window <= 0:
                    self._window_open.clear()
                if self.session.send_window <= 0:
                    self.session._session_window_open.clear()
            n = min(n, 32768)
            await self.session.send_frame(Data(self.id, bytes(view[:n])))
            view = view[n:]

    async def close(self) -> None:
        """Half-close: DATA with FIN and no payload."""
        if self.local_closed or self.reset:
            return
        self.local_closed = True
        await self.session.send_frame(Data(self.id, b"", FLAG_FIN))
        self.session._maybe_forget(self)

    async def abort(self, status: int = CANCEL) -> None:
        if self.reset:
            return
        self._on_reset()
        await self.session.send_frame(RstStream(self.id, status))

    # called by the session
    def _on_data(self, data: bytes, fin: bool) -> None:
        if self.remote_closed or self.reset:
            return
        if data:
            self._incoming.put_nowait(data)
        if fin:
            self.remote_closed = True
            self._incoming.put_nowait(None)

    def _on_reset(self) -> None:
        if self.reset:
            return
        self.reset = True
        self.remote_closed = self.local_closed = True
        self._incoming.put_nowait(None)
        self._window_open.set()
        self.session._maybe_forget(self)

    def _on_window(self, delta: int) -> None:
        self.send_window += delta
        if self.send_window > 0:
            self._window_open.set()


class Session:
    """The server end of one SPDY connection over any byte transport.

    Feed it what arrives (:meth:`feed`); it writes frames through ``send``.  ``on_stream`` is called
    for each new stream once its SYN_REPLY has been sent (a handler that does not want the stream
    calls :meth:`Stream.abort`).
    """

    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        on_stream: Callable[[Stream], None],
        flow_control: bool = False,
    ) -> None:
        self._send = send
        self._on_stream = on_stream
        self.flow_control = flow_control
        self.framer = Framer()
        self.streams: dict[int, Stream] = {}
        self.initial_window = DEFAULT_WINDOW
        self.send_window = DEFAULT_WINDOW
        self._session_window_open = asyncio.Event()
        self._session_window_open.set()
        self._write_lock = asyncio.Lock()
        self._last_stream_id = 0
        self.gone_away = False
        self.closed = False

    async def send_frame(self, frame: Frame) -> None:
        if self.closed:
            raise StreamReset("the SPDY session is closed")
        async with self._write_lock:  # compressor state and wire order must agree
            await self._send(self.framer.encode(frame))

    async def feed(self, data: bytes) -> None:
        for frame in self.framer.feed(data):
            await self._handle(frame)

    async def _handle(self, frame: Frame) -> None:
        if isinstance(frame, Data):
            stream = self.streams.get(frame.stream_id)
            if stream is None:
                return  # a stream we already forgot (reset or closed both ways)
            stream._on_data(frame.data, bool(frame.flags & FLAG_FIN))
            self._maybe_forget(stream)
        elif isinstance(frame, SynStream):
            await self._new_stream(frame)
        elif isinstance(frame, RstStream):
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                stream._on_reset()
        elif isinstance(frame, Ping):
            if frame.ping_id % 2 == 1:  # the client's ping: echo it; ours (even) need no answer
                await self.send_frame(frame)
        elif isinstance(frame, GoAway):
            self.gone_away = True
        elif isinstance(frame, Settings):
            for _flags, setting, value in frame.entries:
                if setting == SETTINGS_INITIAL_WINDOW_SIZE:
                    for s in self.streams.values():
                        s._on_window(value - self.initial_window)
                    self.initial_window = value
        elif isinstance(frame, WindowUpdate):
            if frame.stream_id == 0:
                self.send_window += frame.delta
                if self.send_window > 0:
                    self._session_window_open.set()
            elif (stream := self.streams.get(frame.stream_id)) is not None:
                stream._on_window(frame.delta)
        # SYN_REPLY and HEADERS only answer streams a server opens; this one never does

    async def _new_stream(self, frame: SynStream) -> None:
        sid = frame.stream_id
        if sid % 2 == 0 or sid <= self._last_stream_id or self.gone_away:
            await self.send_frame(RstStream(sid, PROTOCOL_ERROR if not self.gone_away else REFUSED_STREAM))
            return
        self._last_stream_id = sid
        stream = Stream(self, sid, frame.headers, bool(frame.flags & FLAG_FIN))
        if frame.flags & FLAG_UNIDIRECTIONAL:
            stream.local_closed = True
        self.streams[sid] = stream
        await self.send_frame(SynReply(sid, {}))
        self._on_stream(stream)

    def _maybe_forget(self, stream: Stream) -> None:
        if stream.local_closed and stream.remote_closed and self.streams.get(stream.id) is stream:
            # keep it readable: only the session's table forgets it
            del self.streams[stream.id]

    async def go_away(self, status: int = 0) -> None:
        if self.closed:
            return
        try:
            await self.send_frame(GoAway(self._last_stream_id, status))
        except Exception:  # the transport is already gone
            pass

    def close(self) -> None:
        """The transport ended: every stream reads EOF-by-reset and writes fail."""
        self.closed = True
        for stream in list(self.streams.values()):
            stream._on_reset()
        self.streams.clear()
