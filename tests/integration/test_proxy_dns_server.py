"""minik-dns as a process against a real API server, queried with dnslib over UDP and TCP on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from dnslib import RCODE, DNSRecord

from testkit.host import free_port
from testkit.processes import APIServerProcess, python_module


@pytest.fixture(scope="module")
def dns(apiserver: APIServerProcess) -> Iterator[int]:
    port = free_port()
    # nothing outside the cluster domain is asked in these tests: the upstream is loopback
    argv = ("--bind", "127.0.0.1", "--port", str(port), "--upstream", "127.0.0.1")
    with python_module("dns", "proxy.dns", apiserver, *argv):
        yield port


def query(port: int, name: str, qtype: str = "A", tcp: bool = False) -> DNSRecord:
    return DNSRecord.parse(DNSRecord.question(name, qtype).send("127.0.0.1", port, tcp=tcp, timeout=2))


def eventually(port: int, name: str, want: list[str], qtype: str = "A") -> DNSRecord:
    deadline = time.monotonic() + 20
    got: Any = None
    while time.monotonic() < deadline:
        try:
            reply = query(port, name, qtype)
            got = sorted(str(rr.rdata) for rr in reply.rr)
            if got == want:
                return reply
        except OSError as e:  # not listening yet, or a timeout
            got = e
        time.sleep(0.1)
    raise AssertionError(f"{name}: wanted {want}, last got {got}")


def test_service_records(api: httpx.Client, dns: int) -> None:
    assert api.post("/api/v1/namespaces", json={"metadata": {"name": "database"}}).status_code == 201
    r = api.post(
        "/api/v1/namespaces/database/services",
        json={"metadata": {"name": "mongodb-service"}, "spec": {"ports": [{"name": "mongo", "port": 27017}]}},
    )
    assert r.status_code == 201, r.text
    ip = r.json()["spec"]["clusterIP"]
    eventually(dns, "mongodb-service.database.svc.cluster.local", [ip])
    reply = query(dns, "_mongo._tcp.mongodb-service.database.svc.cluster.local", "SRV", tcp=True)
    assert [str(rr.rdata) for rr in reply.rr] == ["0 100 27017 mongodb-service.database.svc.cluster.local."]
    assert query(dns, "nothing.database.svc.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_headless_and_statefulset_names(api: httpx.Client, dns: int) -> None:
    r = api.post(
        "/api/v1/namespaces/default/services",
        json={"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}},
    )
    assert r.status_code == 201, r.text
    r = api.post(
        "/api/v1/namespaces/default/endpoints",
        json={
            "metadata": {"name": "db"},
            "subsets": [
                {
                    "addresses": [
                        {"ip": "10.244.1.10", "hostname": "db-0"},
                        {"ip": "10.244.1.11", "hostname": "db-1"},
                    ],
                    "ports": [{"port": 5432}],
                }
            ],
        },
    )
    assert r.status_code == 201, r.text
    eventually(dns, "db.default.svc.cluster.local", ["10.244.1.10", "10.244.1.11"])
    eventually(dns, "db-1.db.default.svc.cluster.local", ["10.244.1.11"])


def test_external_name(api: httpx.Client, dns: int) -> None:
    r = api.post(
        "/api/v1/namespaces/default/services",
        json={
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "db.example.org"},
        },
    )
    assert r.status_code == 201, r.text
    eventually(dns, "ext.default.svc.cluster.local", ["db.example.org."], qtype="CNAME")
