"""Prometheus metrics of ``minik-proxy`` (kube-proxy's names) and ``minik-dns`` (CoreDNS's).

kube-proxy:

- ``kubeproxy_sync_proxy_rules_duration_seconds``: how long each write of the iptables rules took
  (Kubernetes' buckets: 1 ms doubling 15 times);
- ``kubeproxy_sync_proxy_rules_last_timestamp_seconds``: when the rules were last written (Unix time).

Cluster DNS (CoreDNS' ``prometheus`` plugin names, without the ``view`` and ``plugin`` labels):

- ``coredns_dns_requests_total{server,zone,proto,family,type}``;
- ``coredns_dns_responses_total{server,zone,rcode}``;
- ``coredns_dns_request_duration_seconds{server,zone,type}``.
"""

from __future__ import annotations

import time
from typing import Any

from apimachinery import metrics

SYNC_BUCKETS = tuple(0.001 * 2**i for i in range(15))
DNS_BUCKETS = tuple(0.00025 * 2**i for i in range(16))  # CoreDNS: ExponentialBuckets(0.00025, 2, 16)
_RCODES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
}
_QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV"}


class SyncMetrics:
    """kube-proxy's rule-sync metrics."""

    def __init__(self) -> None:
        self.duration = metrics.histogram(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            (),
            SYNC_BUCKETS,
        )
        self.last = metrics.gauge(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
        )

    def synced(self, seconds: float) -> None:
        self.duration.observe(seconds)
        self.last.set(time.time())


def question_type(packet: bytes) -> str:
    """The QTYPE name of the first question of a DNS message ("other" when unknown or malformed)."""
    i = 12
    try:
        while packet[i]:
            if packet[i] & 0xC0:  # a compression pointer ends the name (two bytes)
                i += 1
                break
            i += packet[i] + 1
        i += 1
        qtype = int.from_bytes(packet[i : i + 2], "big")
    except IndexError:
        return "other"
    return _QTYPES.get(qtype, "other")


class DNSMetrics:
    """CoreDNS-named request metrics of the cluster DNS server."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.requests = metrics.counter(
            "coredns_dns_requests_total",
            "Counter of DNS requests made per zone, protocol and family.",
            ("server", "zone", "proto", "family", "type"),
        )
        self.responses = metrics.counter(
            "coredns_dns_responses_total",
            "Counter of response status codes.",
            ("server", "zone", "rcode"),
        )
        self.duration = metrics.histogram(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took.",
            ("server", "zone", "type"),
            DNS_BUCKETS,
        )
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self.server, *labels)
        return child

    def observe(self, zone: str, proto: str, request: bytes, reply: bytes | None, seconds: float) -> None:
        qtype = question_type(request)
        self._child(self.requests, zone, proto, "1", qtype).inc()
        self._child(self.duration, zone, qtype).observe(seconds)
        if reply is not None and len(reply) >= 4:
            self._child(self.responses, zone, _RCODES.get(reply[3] & 0x0F, "other")).inc()
