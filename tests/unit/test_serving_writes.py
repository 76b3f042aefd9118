"""The secure port's response writes: status line and headers go out with the body in one write."""

from __future__ import annotations

from typing import Any

from apiserver.serving import HeadersWithBody


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return f"extra:{name}"


class FakeCycle:
    """What uvicorn's cycle holds once it has read the response's headers."""

    def __init__(self, method: str = "GET", chunked: bool | None = False) -> None:
        self.response_started = False
        self.chunked_encoding = chunked
        self.scope = {"method": method}


def make(
    method: str = "GET", chunked: bool | None = False
) -> tuple[FakeTransport, FakeCycle, HeadersWithBody]:
    t, c = FakeTransport(), FakeCycle(method, chunked)
    return t, c, HeadersWithBody(t, c)  # type: ignore[arg-type]


def test_headers_and_body_in_one_write() -> None:
    t, c, w = make()
    c.response_started = True
    w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert t.writes == []
    w.write(b"{}")
    assert t.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    w.write(b"")  # nothing held any more
    assert t.writes[1:] == [b""]


def test_headers_of_a_chunked_stream_go_out_at_once() -> None:
    t, c, w = make(chunked=True)
    c.response_started = True
    w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    assert t.writes == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
    w.write(b"5\r\nhello\r\n")
    assert t.writes[1:] == [b"5\r\nhello\r\n"]


def test_headers_of_a_head_response_go_out_at_once() -> None:
    t, c, w = make(method="HEAD")
    c.response_started = True
    w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert t.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"]


def test_continue_before_the_response_is_not_held() -> None:
    t, c, w = make()
    w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert t.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    c.response_started = True
    w.write(b"HTTP/1.1 201 Created\r\n\r\n")
    w.write(b"{}")
    assert t.writes == [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 201 Created\r\n\r\n{}"]


def test_close_sends_held_headers_first_and_the_rest_is_the_transports() -> None:
    t, c, w = make()
    c.response_started = True
    w.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 9\r\n\r\n")
    w.close()
    assert t.writes == [b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 9\r\n\r\n"] and t.closed
    assert w.is_closing()
    assert w.get_extra_info("peername") == "extra:peername"
