"""Cluster DNS answers, from stores filled by hand."""

from __future__ import annotations

from typing import Any

from dnslib import QTYPE, RCODE, DNSRecord

from apimachinery.informer import Store
from proxy.dns import Resolver


def svc(name: str, ns: str = "default", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def resolver() -> Resolver:
    services, endpoints = Store(), Store()
    services.add(svc("web", clusterIP="10.96.3.4", ports=[{"name": "http", "port": 80, "protocol": "TCP"}]))
    services.add(svc("mongodb-service", "database", clusterIP="10.96.0.50", ports=[{"port": 27017}]))
    services.add(svc("db", clusterIP="None", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    services.add(svc("ext", type="ExternalName", externalName="db.example.org"))
    endpoints.add(
        {
            "metadata": {"name": "db", "namespace": "default"},
            "subsets": [
                {
                    "addresses": [
                        {"ip": "10.244.0.5", "hostname": "db-0"},
                        {"ip": "10.244.0.6", "hostname": "db-1"},
                    ],
                    "notReadyAddresses": [{"ip": "10.244.0.7", "hostname": "db-2"}],
                    "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
                }
            ],
        }
    )
    return Resolver(services, endpoints)


def ask(name: str, qtype: str = "A") -> DNSRecord:
    return resolver().resolve(DNSRecord.question(name, qtype))


def answers(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr)


def test_cluster_ip_service() -> None:
    reply = ask("web.default.svc.cluster.local")
    assert reply.header.rcode == RCODE.NOERROR
    assert answers(reply) == ["10.96.3.4"]
    assert answers(ask("mongodb-service.database.svc.cluster.local.")) == ["10.96.0.50"]
    assert answers(ask("WEB.Default.SVC.cluster.local")) == ["10.96.3.4"]


def test_headless_service_gives_ready_pod_ips_and_pod_names() -> None:
    assert answers(ask("db.default.svc.cluster.local")) == ["10.244.0.5", "10.244.0.6"]
    assert answers(ask("db-1.db.default.svc.cluster.local")) == ["10.244.0.6"]
    assert ask("db-2.db.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN  # not ready


def test_srv_for_named_ports() -> None:
    reply = ask("_http._tcp.web.default.svc.cluster.local", "SRV")
    assert answers(reply) == ["0 100 80 web.default.svc.cluster.local."]
    reply = ask("_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert answers(reply) == [
        "0 100 5432 db-0.db.default.svc.cluster.local.",
        "0 100 5432 db-1.db.default.svc.cluster.local.",
    ]
    assert ask("_nope._tcp.web.default.svc.cluster.local", "SRV").header.rcode == RCODE.NXDOMAIN


def test_external_name_is_a_cname() -> None:
    reply = ask("ext.default.svc.cluster.local")
    assert reply.rr[0].rtype == QTYPE.CNAME
    assert str(reply.rr[0].rdata) == "db.example.org."


def test_unknown_names_are_nxdomain_with_soa_and_other_types_are_nodata() -> None:
    for name in (
        "nope.default.svc.cluster.local",
        "web.other.svc.cluster.local",
        "web.default.svc.cluster.local.default.svc.cluster.local",  # a search-list expansion
        "cluster.local",
    ):
        reply = ask(name)
        assert reply.header.rcode == RCODE.NXDOMAIN, name
        assert reply.auth and reply.auth[0].rtype == QTYPE.SOA
    reply = ask("web.default.svc.cluster.local", "AAAA")
    assert reply.header.rcode == RCODE.NOERROR and not reply.rr and reply.auth


def test_pod_records_and_domain_check() -> None:
    assert answers(ask("10-244-0-9.default.pod.cluster.local")) == ["10.244.0.9"]
    r = resolver()
    assert r.in_domain("web.default.svc.cluster.local.")
    assert not r.in_domain("example.org.")
