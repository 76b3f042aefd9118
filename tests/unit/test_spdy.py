"""SPDY/3.1 framing and sessions (apiserver/spdy.py), and the port-forward stream pairing."""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from apiserver import portforward_spdy, spdy

# The first frame kubectl v1.32 sends in a port-forward tunnel: SYN_STREAM 1, the error stream of
# request 0 for port 8080, its header block deflated with SPDY/3's dictionary.
KUBECTL_SYN_STREAM = bytes.fromhex(
    "800300010000003e0000000100000000000078f9e3c6a7c202253a060606ce2248fc6482d22da30138e59514a526e642"
    "0b17d65450d0430aea22709eb030b03000000000ffff"
)


def test_dictionary_is_spdy3s() -> None:
    assert len(spdy.DICTIONARY) == 1423
    # the dictionary id a zlib stream primed with it announces (FDICT); kubectl's frame carries it
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert KUBECTL_SYN_STREAM[20:24] == bytes.fromhex("e3c6a7c2")
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b",*,enq=0.")


def test_decodes_kubectl_syn_stream() -> None:
    frames = spdy.Framer().feed(KUBECTL_SYN_STREAM)
    assert frames == [
        spdy.SynStream(1, {"requestid": ["0"], "streamtype": ["error"], "port": ["8080"]}),
    ]


def test_header_block_layout() -> None:
    block = spdy.encode_header_block({"Port": ["8080"], "x": ["a", "b"]})
    assert block == (
        b"\x00\x00\x00\x02"
        + b"\x00\x00\x00\x04port\x00\x00\x00\x048080"
        + b"\x00\x00\x00\x01x\x00\x00\x00\x03a\x00b"
    )
    assert spdy.decode_header_block(block) == {"port": ["8080"], "x": ["a", "b"]}
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_header_block(block[:-1])


ALL_FRAMES: list[spdy.Frame] = [
    spdy.SynStream(1, {"streamtype": ["error"], "port": ["80"]}, spdy.FLAG_FIN, 0, 3, 0),
    spdy.SynReply(1, {}),
    spdy.SynReply(3, {"a": ["b"]}, spdy.FLAG_FIN),
    spdy.HeadersFrame(3, {"c": ["d"]}),
    spdy.Data(3, b"hello"),
    spdy.Data(3, b"", spdy.FLAG_FIN),
    spdy.RstStream(5, spdy.CANCEL),
    spdy.Settings([(0, spdy.SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20), (1, 4, 100)]),
    spdy.Ping(7),
    spdy.GoAway(9, 0),
    spdy.WindowUpdate(0, 1000),
    spdy.WindowUpdate(3, 65536),
]


def test_every_frame_round_trips_whole_and_byte_by_byte() -> None:
    writer = spdy.Framer()
    wire = b"".join(writer.encode(f) for f in ALL_FRAMES)
    assert spdy.Framer().feed(wire) == ALL_FRAMES
    reader = spdy.Framer()
    got: list[spdy.Frame] = []
    for i in range(len(wire)):
        got += reader.feed(wire[i : i + 1])
    assert got == ALL_FRAMES


def test_known_encodings() -> None:
    f = spdy.Framer()
    assert f.encode(spdy.Data(1, b"ab", spdy.FLAG_FIN)) == bytes.fromhex("0000000101000002") + b"ab"
    assert f.encode(spdy.Ping(1)) == bytes.fromhex("800300060000000400000001")
    assert f.encode(spdy.RstStream(3, spdy.CANCEL)) == bytes.fromhex("80030003000000080000000300000005")
    assert f.encode(spdy.GoAway(5)) == bytes.fromhex("80030007000000080000000500000000")
    reply = f.encode(spdy.SynReply(1, {}))
    assert reply[:4] == bytes.fromhex("80030002") and reply[8:12] == bytes.fromhex("00000001")
    assert struct.unpack(">I", reply[4:8])[0] == len(reply) - 8
    # the header block is a zlib stream with the SPDY/3 dictionary, sync-flushed
    z = zlib.decompressobj(zdict=spdy.DICTIONARY)
    assert z.decompress(reply[12:]) == b"\x00\x00\x00\x00"
    assert reply.endswith(b"\x00\x00\xff\xff")


def test_header_compression_is_one_stream_per_direction() -> None:
    writer, reader = spdy.Framer(), spdy.Framer()
    first = writer.encode(spdy.SynStream(1, {"port": ["80"], "streamtype": ["error"]}))
    second = writer.encode(spdy.SynStream(3, {"port": ["80"], "streamtype": ["data"]}))
    assert len(second) < len(first)  # the second block refers back into the first
    assert reader.feed(first + second)[1] == spdy.SynStream(3, {"port": ["80"], "streamtype": ["data"]})
    with pytest.raises(spdy.ProtocolError):
        spdy.Framer().feed(second)  # alone it can't be inflated


def test_bad_input_is_a_protocol_error() -> None:
    with pytest.raises(spdy.ProtocolError):
        spdy.Framer().feed(bytes.fromhex("8002000100000000"))  # SPDY/2
    with pytest.raises(spdy.ProtocolError):
        spdy.Framer().feed(bytes.fromhex("0000000000000000"))  # DATA on stream 0
    # unknown control frames (CREDENTIAL, 10) are skipped
    assert spdy.Framer().feed(bytes.fromhex("8003000a00000000")) == []


class Peer:
    """A session with its output decoded, as the client would see it."""

    def __init__(self, flow_control: bool = False) -> None:
        self.sent: list[spdy.Frame] = []
        self.client = spdy.Framer()  # encodes what the client sends
        self.decoder = spdy.Framer()  # decodes what the server sends
        self.streams: list[spdy.Stream] = []
        self.session = spdy.Session(self._send, self.streams.append, flow_control)

    async def _send(self, data: bytes) -> None:
        self.sent += self.decoder.feed(data)

    async def send(self, *frames: spdy.Frame) -> None:
        await self.session.feed(b"".join(self.client.encode(f) for f in frames))


def test_session_streams_data_fin_reset_ping() -> None:
    async def run() -> None:
        p = Peer()
        await p.send(spdy.SynStream(1, {"streamtype": ["data"]}), spdy.Data(1, b"abc"))
        assert p.sent == [spdy.SynReply(1, {})]
        (stream,) = p.streams
        assert stream.header("streamType") == "data"
        assert await stream.read() == b"abc"
        await stream.write(b"xyz")
        await p.send(spdy.Data(1, b"", spdy.FLAG_FIN))
        assert await stream.read() == b"" and await stream.read() == b""
        await stream.close()
        assert p.sent[1:] == [spdy.Data(1, b"xyz"), spdy.Data(1, b"", spdy.FLAG_FIN)]
        assert 1 not in p.session.streams  # closed both ways

        await p.send(spdy.SynStream(3, {}), spdy.RstStream(3, spdy.CANCEL))
        with pytest.raises(spdy.StreamReset):
            await p.streams[1].read()
        with pytest.raises(spdy.StreamReset):
            await p.streams[1].write(b"late")

        p.sent.clear()
        await p.send(spdy.Ping(5), spdy.Ping(2))  # the client's pings are odd; echo only those
        assert p.sent == [spdy.Ping(5)]

        p.sent.clear()
        await p.send(spdy.SynStream(3, {}), spdy.SynStream(4, {}))  # reused id, server-side id
        assert p.sent == [spdy.RstStream(3, spdy.PROTOCOL_ERROR), spdy.RstStream(4, spdy.PROTOCOL_ERROR)]

        p.session.close()
        with pytest.raises(spdy.StreamReset):
            await p.streams[0].write(b"x")

    asyncio.run(run())


def test_session_flow_control_when_enabled() -> None:
    async def run() -> None:
        p = Peer(flow_control=True)
        await p.send(spdy.Settings([(0, spdy.SETTINGS_INITIAL_WINDOW_SIZE, 10)]), spdy.SynStream(1, {}))
        stream = p.streams[0]
        writer = asyncio.create_task(stream.write(b"0123456789abcdef"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not writer.done()
        assert [f for f in p.sent if isinstance(f, spdy.Data)] == [spdy.Data(1, b"0123456789")]
        await p.send(spdy.WindowUpdate(1, 100))
        await asyncio.wait_for(writer, 5)
        assert [f for f in p.sent if isinstance(f, spdy.Data)][-1] == spdy.Data(1, b"abcdef")

        # received data is acknowledged with WINDOW_UPDATE once half the window is consumed
        await p.send(spdy.Data(1, b"x" * 6))
        assert await stream.read() == b"x" * 6
        assert p.sent[-1] == spdy.WindowUpdate(1, 6)

    asyncio.run(run())


def test_without_flow_control_writes_never_wait() -> None:
    async def run() -> None:
        p = Peer()
        await p.send(spdy.SynStream(1, {}))
        await asyncio.wait_for(p.streams[0].write(b"z" * 200_000), 5)  # spdystream sends no WINDOW_UPDATE
        data = [f for f in p.sent if isinstance(f, spdy.Data)]
        assert b"".join(f.data for f in data) == b"z" * 200_000
        assert max(len(f.data) for f in data) <= 32768

    asyncio.run(run())


# --- port-forward stream pairing --------------------------------------------------------------------
def make_stream(sid: int, **headers: str) -> spdy.Stream:
    session = spdy.Session(lambda data: asyncio.sleep(0), lambda s: None)
    return spdy.Stream(session, sid, {k.lower(): [v] for k, v in headers.items()}, False)


def test_classify_and_request_id() -> None:
    error = make_stream(1, streamType="error", port="8080", requestID="7")
    assert portforward_spdy.classify(error) == ("error", None)
    assert portforward_spdy.request_id(error, "error") == "7"
    assert portforward_spdy.classify(make_stream(3, streamType="stdin", port="1"))[1] is not None
    assert portforward_spdy.classify(make_stream(3, streamType="data"))[1] == '"port" header is required'
    assert portforward_spdy.classify(make_stream(3, streamType="data", port="70000"))[1] is not None
    # without requestID, the data stream follows its error stream: ids n and n+2
    assert portforward_spdy.request_id(make_stream(5, streamType="error", port="1"), "error") == "5"
    assert portforward_spdy.request_id(make_stream(7, streamType="data", port="1"), "data") == "5"


def test_stream_pair() -> None:
    pair = portforward_spdy.StreamPair("0")
    assert pair.add(make_stream(1, port="80"), "error") is None
    assert not pair.complete.is_set()
    assert pair.add(make_stream(3, port="81"), "data") is not None  # another port
    assert pair.add(make_stream(5, port="80"), "error") is not None  # a second error stream
    assert pair.add(make_stream(7, port="80"), "data") is None
    assert pair.complete.is_set() and pair.port == "80"


def test_tunnel_protocol_detection() -> None:
    assert portforward_spdy.offers_spdy_tunnel(["SPDY/3.1+portforward.k8s.io"])
    assert not portforward_spdy.offers_spdy_tunnel(["v4.channel.k8s.io", "portforward.k8s.io"])
