"""``minik-dns``: cluster DNS for ``cluster.local``, answered from informer caches of Services
and EndpointSlices (all slices of a Service merged; a Service without slices falls back to its
Endpoints object, as the proxy does) (the records of Kubernetes' DNS specification, as CoreDNS' ``kubernetes`` plugin
serves them):

* ``svc.ns.svc.cluster.local`` A -> the ClusterIP; for a headless Service, the ready endpoint IPs;
* ``hostname.svc.ns.svc.cluster.local`` A -> the endpoint whose ``hostname`` matches (pods with
  ``hostname`` and ``subdomain``, as StatefulSets make them);
* ``_port._proto.svc.ns.svc.cluster.local`` SRV for each named port;
* an ExternalName Service -> CNAME to its ``externalName``;
* ``a-b-c-d.ns.pod.cluster.local`` A -> a.b.c.d;
* any other name in the cluster domain -> NXDOMAIN (with the SOA, so negative answers are cached
  and search-list expansion is quick); names outside it are forwarded to the upstream resolver.

:class:`Resolver` is pure (a question and two stores in, a reply out) and unit-tested; the
server around it is a UDP and TCP listener.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from dnslib import CNAME, QTYPE, RCODE, RR, SOA, SRV, A, DNSRecord

from apimachinery import metrics, tracing
from apimachinery.client import Client
from apimachinery.component import add_kubeconfig_flags, add_log_level_flag, run_component
from apimachinery.informer import Informer, Store
from apimachinery.kubeconfig import load_config

from .forwarder import recv_from, send_from, udp_socket
from .metrics import DNSMetrics
from .model import slice_service_key
from .proxier import ENDPOINT_SLICES, ENDPOINTS, SERVICE_INDEX, SERVICES

log = logging.getLogger(__name__)

Obj = dict[str, Any]
TTL = 5


def _labels(name: str) -> list[str]:
    return [label for label in name.lower().rstrip(".").split(".") if label]


class Resolver:
    def __init__(
        self, services: Store, endpoints: Store, slices: Store | None = None, domain: str = "cluster.local"
    ) -> None:
        self.services = services
        self.endpoints = endpoints
        self.slices = slices
        if slices is not None:
            try:
                slices.index_keys(SERVICE_INDEX, "")
            except KeyError:
                slices.add_index(SERVICE_INDEX, slice_service_key)
        self.domain = _labels(domain)

    def in_domain(self, qname: str) -> bool:
        labels = _labels(qname)
        return len(labels) >= len(self.domain) and labels[-len(self.domain) :] == self.domain

    def _soa(self) -> RR:
        zone = ".".join(self.domain) + "."
        return RR(
            zone,
            QTYPE.SOA,
            ttl=TTL,
            rdata=SOA("ns.dns." + zone, "hostmaster." + zone, (1, 7200, 1800, 86400, TTL)),
        )

    def resolve(self, request: DNSRecord) -> DNSRecord:
        """The reply for a question in the cluster domain."""
        reply = request.reply()
        qname = str(request.q.qname)
        qtype = QTYPE[request.q.qtype]
        records = self.records(qname)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa())
            return reply
        cnames = [r for r in records if r.rtype == QTYPE.CNAME]
        answers = cnames if cnames and qtype != "CNAME" else [r for r in records if QTYPE[r.rtype] == qtype]
        if qtype == "ANY":
            answers = records
        for rr in answers:
            reply.add_answer(rr)
        if not answers:
            reply.add_auth(self._soa())  # the name exists, with no record of this type
        return reply

    def records(self, qname: str) -> list[RR] | None:
        """Every record of a cluster name, or None when it does not exist."""
        labels = _labels(qname)
        rel = labels[: len(labels) - len(self.domain)]
        fqdn = ".".join(labels) + "."
        if len(rel) == 3 and rel[-1] == "pod":  # a-b-c-d.ns.pod
            ip = rel[0].replace("-", ".")
            parts = ip.split(".")
            if len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts):
                return [RR(fqdn, QTYPE.A, ttl=TTL, rdata=A(ip))]
            return None
        if len(rel) < 3 or rel[-1] != "svc":
            return None
        ns, name = rel[-2], rel[-3]
        svc = self.services.get(f"{ns}/{name}")
        if svc is None:
            return None
        spec = svc.get("spec") or {}
        base = f"{name}.{ns}.svc.{'.'.join(self.domain)}."
        prefix = rel[:-3]
        headless = spec.get("clusterIP") in (None, "", "None")
        if len(prefix) == 0:
            if spec.get("type") == "ExternalName":
                target = str(spec.get("externalName") or "").rstrip(".") + "."
                return [RR(fqdn, QTYPE.CNAME, ttl=TTL, rdata=CNAME(target))]
            if not headless:
                return [RR(fqdn, QTYPE.A, ttl=TTL, rdata=A(spec["clusterIP"]))]
            return [RR(fqdn, QTYPE.A, ttl=TTL, rdata=A(ip)) for ip, _ in self._ready(ns, name)]
        if len(prefix) == 1:  # hostname.svc.ns.svc (headless: a pod's own name)
            if not headless:
                return None
            ips = [ip for ip, host in self._ready(ns, name) if host == prefix[0] or _dashed(ip) == prefix[0]]
            return [RR(fqdn, QTYPE.A, ttl=TTL, rdata=A(ip)) for ip in ips] or None
        if len(prefix) == 2 and prefix[0].startswith("_") and prefix[1].startswith("_"):
            port_name, proto = prefix[0][1:], prefix[1][1:].upper()
            port = next(
                (
                    p
                    for p in spec.get("ports") or []
                    if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == proto
                ),
                None,
            )
            if port is None or not port_name:
                return None
            if not headless:
                return [RR(fqdn, QTYPE.SRV, ttl=TTL, rdata=SRV(0, 100, int(port["port"]), base))]
            out = []
            for ip, host, ep_port in self._ready_ports(ns, name, port_name, proto):
                target = f"{host or _dashed(ip)}.{base}"
                out.append(RR(fqdn, QTYPE.SRV, ttl=TTL, rdata=SRV(0, 100, ep_port, target)))
            return out
        return None

    def _groups(self, ns: str, name: str) -> list[tuple[list[tuple[str, str]], list[Obj]]]:
        """The Service's ready ``(ip, hostname)`` addresses with the ports they serve, one group per
        EndpointSlice, or per subset of its Endpoints when it has no slices."""
        slices = self.slices.by_index(SERVICE_INDEX, f"{ns}/{name}") if self.slices is not None else []
        if slices:
            return [
                (
                    [
                        (ep["addresses"][0], ep.get("hostname") or "")
                        for ep in s.get("endpoints") or []
                        if ep.get("addresses") and (ep.get("conditions") or {}).get("ready") is not False
                    ],
                    s.get("ports") or [],
                )
                for s in slices
            ]
        eps = self.endpoints.get(f"{ns}/{name}") or {}
        return [
            (
                [(a["ip"], a.get("hostname") or "") for a in subset.get("addresses") or [] if a.get("ip")],
                subset.get("ports") or [],
            )
            for subset in eps.get("subsets") or []
        ]

    def _ready(self, ns: str, name: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for addresses, _ports in self._groups(ns, name):
            out += [a for a in addresses if a not in out]
        return out

    def _ready_ports(self, ns: str, name: str, port_name: str, proto: str) -> list[tuple[str, str, int]]:
        out: list[tuple[str, str, int]] = []
        for addresses, ports in self._groups(ns, name):
            for p in ports:
                if (
                    (p.get("name") or "") == port_name
                    and (p.get("protocol") or "TCP") == proto
                    and p.get("port")
                ):
                    out += [
                        (ip, host, int(p["port"]))
                        for ip, host in addresses
                        if (ip, host, int(p["port"])) not in out
                    ]
        return out


def _dashed(ip: str) -> str:
    return ip.replace(".", "-")


def upstream_from_resolv_conf(path: str = "/etc/resolv.conf") -> str | None:
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    return parts[1]
    except OSError:
        pass
    return None


class DNSServer:
    """UDP and TCP listeners answering with a :class:`Resolver`; other names go upstream."""

    def __init__(self, resolver: Resolver, upstream: str | None, forward_timeout: float = 3.0) -> None:
        self.resolver = resolver
        self.upstream = upstream
        self.forward_timeout = forward_timeout
        self._udp: list[socket.socket] = []
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.metrics: DNSMetrics | None = None  # set by start(): coredns_dns_* metrics

    async def answer(self, data: bytes, proto: str = "udp") -> bytes | None:
        """The reply to the DNS message ``data`` (None: no answer), counted and timed."""
        recorder = self.metrics
        if recorder is None:
            return await self._answer(data)
        start = time.perf_counter()
        out = await self._answer(data)
        zone = ".".join(self.resolver.domain) + "." if self._in_domain(data) else "."
        recorder.observe(zone, proto, data, out, time.perf_counter() - start)
        return out

    def _in_domain(self, data: bytes) -> bool:
        try:
            return self.resolver.in_domain(str(DNSRecord.parse(data).q.qname))
        except Exception:  # noqa: BLE001 - malformed
            return False

    async def _answer(self, data: bytes) -> bytes | None:
        try:
            request = DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - a malformed packet gets no answer
            return None
        qname = str(request.q.qname)
        if self.resolver.in_domain(qname):
            return bytes(self.resolver.resolve(request).pack())
        if not self.upstream:
            reply = request.reply()
            reply.header.rcode = RCODE.SERVFAIL
            return bytes(reply.pack())
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, self._forward, data)
        except Exception as e:  # noqa: BLE001
            log.info("upstream %s failed for %s: %s", self.upstream, qname, e)
            reply = request.reply()
            reply.header.rcode = RCODE.SERVFAIL
            return bytes(reply.pack())

    def _forward(self, data: bytes) -> bytes:
        assert self.upstream is not None
        return bytes(DNSRecord.parse(data).send(self.upstream, 53, timeout=self.forward_timeout))

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        server = self

        # answers leave from the address each question came to (IP_PKTINFO): bound to 0.0.0.0,
        # the route's address would be used instead, which a connected client drops
        sock = udp_socket(host, port)

        def readable() -> None:
            while True:
                try:
                    data, addr, local = recv_from(sock)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as e:
                    log.debug("udp receive failed: %s", e)
                    return
                task = asyncio.ensure_future(reply(data, addr, local))
                server._tasks.add(task)
                task.add_done_callback(server._tasks.discard)

        async def reply(data: bytes, addr: tuple[str, int], local: str | None) -> None:
            out = await server.answer(data)
            if out is not None:
                send_from(sock, out, addr, local)

        loop.add_reader(sock.fileno(), readable)
        self._udp.append(sock)
        bound = sock.getsockname()[1]
        self.metrics = DNSMetrics(f"dns://{host}:{bound}")
        self._servers.append(await asyncio.start_server(self._tcp, host, bound))
        log.info(
            "cluster DNS for %s on %s:%d (udp, tcp); upstream %s",
            ".".join(self.resolver.domain),
            host,
            bound,
            self.upstream,
        )
        return int(bound)

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(2)
                data = await reader.readexactly(struct.unpack("!H", head)[0])
                out = await self.answer(data, "tcp")
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        for sock in self._udp:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        self._udp.clear()
        for s in self._servers:
            s.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="minik-dns", description="minik's cluster DNS")
    add_kubeconfig_flags(p)
    p.add_argument("--bind", default="0.0.0.0", help="address to answer on (udp and tcp)")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument(
        "--upstream", default=None, help="resolver for other names (default: the host's /etc/resolv.conf)"
    )
    metrics.add_metrics_flag(p, 9153)
    add_log_level_flag(p)
    return p.parse_args(argv)


async def serve(
    args: argparse.Namespace, stop: asyncio.Event, on_ready: Callable[[int], None] | None = None
) -> None:
    config = load_config(args.kubeconfig, server=args.api_server)
    client = Client(config)
    services, endpoints = Informer(client, SERVICES), Informer(client, ENDPOINTS)
    slices = Informer(client, ENDPOINT_SLICES)
    if tracing.setup("dns", config):  # minik trace: when a Service's records change here
        slices.add_event_handler(on_add=_traced_slice, on_update=lambda old, new: _traced_slice(new))
    informers = (services, endpoints, slices)
    tasks = [asyncio.create_task(i.run(), name=f"dns-informer-{i.info.plural}") for i in informers]
    server = DNSServer(
        Resolver(services.store, endpoints.store, slices.store, args.cluster_domain),
        args.upstream or upstream_from_resolv_conf(),
    )
    metrics_server = await metrics.serve_from_args(args, "dns")  # GET /metrics
    try:
        for i in informers:
            await i.wait_for_sync()
        port = await server.start(args.bind, args.port)
        if on_ready:
            on_ready(port)
        await stop.wait()
    finally:
        if metrics_server is not None:
            metrics_server.close()
        await server.stop()
        for i in informers:
            i.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()


def _traced_slice(slice_: Obj) -> None:
    """A span (the moment the answers change) filed under the slice's Service, linked to its pods."""
    name, uid = tracing.service_of_slice(slice_)
    ns = (slice_.get("metadata") or {}).get("namespace", "")
    now = time.time_ns()
    attrs = {tracing.ATTR_KIND: "Service", tracing.ATTR_NAME: name, tracing.ATTR_NAMESPACE: ns}
    tracing.record("dns records updated", uid, now, now, attrs, links=tracing.endpoint_pod_links([slice_]))


def main(argv: list[str] | None = None) -> None:
    run_component(parse_args(argv), serve)


if __name__ == "__main__":
    main()
