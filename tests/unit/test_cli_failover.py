"""The ``minik`` CLI's own requests (tables, raw GETs, writes, streams) move to the next API server
of the kubeconfig on a transport error, as the components' client does; an HTTP error is an answer.

The API servers are ``httpx.MockTransport`` handlers, one per host."""

from __future__ import annotations

import httpx
import pytest

from apimachinery import errors
from apimachinery.kubeconfig import ClientConfig
from cli.kube import CliClient

A, B = "http://a.test:8080", "http://b.test:8080"


def client(hosts: list[str], b_status: int = 200) -> CliClient:
    def handle(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "a.test":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if b_status != 200:
            return httpx.Response(b_status, json={"kind": "Status", "status": "Failure", "code": b_status})
        return httpx.Response(200, text='{"kind": "PodList", "items": []}\n')

    return CliClient(ClientConfig(server=A, fallback_servers=(B,)), transport=httpx.MockTransport(handle))


def test_a_request_goes_to_the_next_server_and_stays_there() -> None:
    hosts: list[str] = []
    c = client(hosts)
    assert c.get_json("/api/v1/pods", accept="application/json;as=Table")["kind"] == "PodList"
    assert c.request("POST", "/api/v1/namespaces/default/configmaps", body={}).status_code == 200
    assert hosts == ["a.test", "b.test", "b.test"]
    assert c.server == B


def test_a_stream_starts_on_the_next_server() -> None:
    hosts: list[str] = []
    c = client(hosts)
    assert list(c.stream_lines("/api/v1/pods", {"watch": "1"})) == ['{"kind": "PodList", "items": []}']
    assert hosts == ["a.test", "b.test"]


def test_an_http_error_is_not_retried_and_a_lone_dead_server_is_reported() -> None:
    hosts: list[str] = []
    with pytest.raises(errors.StatusError) as exc:
        client(hosts, b_status=403).get_json("/api/v1/pods")
    assert exc.value.code == 403 and hosts == ["a.test", "b.test"]

    def dead(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    alone = CliClient(ClientConfig(server=A), transport=httpx.MockTransport(dead))
    with pytest.raises(errors.StatusError, match="cannot reach the API server at http://a.test:8080"):
        alone.get_json("/api/v1/pods")
