"""bench/apiserver reads wrk's figures from the line its Lua ``done()`` prints."""

from __future__ import annotations

import pytest

from bench.apiserver import WRK_SCRIPT, parse_wrk

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:2379
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.21ms    1.03ms  13.61ms   93.13%
    Req/Sec     3.27k   312.13     3.61k    80.00%
  3263 requests in 1.10s, 1.23MB read
Requests/sec:   2966.36
Transfer/sec:      1.12MB
RESULT requests=3263 non2xx=0 socket_errors=0 duration_us=1099989 p50_us=1120 p99_us=6603
"""


def test_rate_and_percentiles_come_from_the_result_line() -> None:
    load = parse_wrk(WRK_OUTPUT)
    assert load.requests == 3263
    assert load.rate == pytest.approx(3263 / 1.099989)
    assert (load.p50_ms, load.p99_ms) == (1.12, 6.603)


@pytest.mark.parametrize("errors", ["non2xx=5 socket_errors=0", "non2xx=0 socket_errors=2"])
def test_a_run_with_failed_requests_is_refused(errors: str) -> None:
    with pytest.raises(RuntimeError, match="non-2xx"):
        parse_wrk(WRK_OUTPUT.replace("non2xx=0 socket_errors=0", errors))


def test_output_without_a_result_line_is_refused() -> None:
    with pytest.raises(RuntimeError, match="no RESULT line"):
        parse_wrk(WRK_OUTPUT.rsplit("RESULT", 1)[0])


def test_the_script_prints_every_field_the_parser_reads() -> None:
    script = WRK_SCRIPT.read_text()
    for field in ("requests", "non2xx", "socket_errors", "duration_us", "p50_us", "p99_us"):
        assert f" {field}=%d" in script or f"RESULT {field}=%d" in script
