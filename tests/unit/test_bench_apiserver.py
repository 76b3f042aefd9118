"""bench/apiserver reads wrk's figures from the line its Lua ``done()`` prints."""

from __future__ import annotations

from pathlib import Path

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


def test_wrk_presents_a_client_certificate_through_the_preloaded_library(tmp_path: Path) -> None:
    from bench.apiserver import SHIM_SOURCE, wrk_env

    assert wrk_env(None, None) is None
    cert = (tmp_path / "user.crt", tmp_path / "user.key")
    env = wrk_env(cert, tmp_path / "shim.so")
    assert env is not None
    assert env["LD_PRELOAD"].split()[0] == str(tmp_path / "shim.so")
    assert (env["WRK_CLIENT_CERT"], env["WRK_CLIENT_KEY"]) == (str(cert[0]), str(cert[1]))
    # the library wraps the call wrk makes for every TLS context and loads both files into it
    assert "SSL_CTX *SSL_CTX_new(const SSL_METHOD *method)" in SHIM_SOURCE
    for call in ("SSL_CTX_use_certificate_chain_file", "SSL_CTX_use_PrivateKey_file", "WRK_CLIENT_CERT"):
        assert call in SHIM_SOURCE


def test_interleaved_runs_merge_into_mean_rate_and_worst_latency() -> None:
    from bench.apiserver import Load, merged

    total = merged([Load(100.0, 500, 2.0, 9.0), Load(300.0, 1500, 1.0, 12.0)])
    assert total == Load(rate=200.0, requests=2000, p50_ms=2.0, p99_ms=12.0)
