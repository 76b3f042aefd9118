"""The ``kubernetes`` Service in ``default`` and its endpoints: how pods find the API server.

As Kubernetes' control plane does (``pkg/controlplane/controller/kubernetesservice`` with the
"lease" master endpoint reconciler), every API server keeps, from inside the server:

* Service ``default/kubernetes``: ClusterIP the first address of the service range (10.96.0.1 for
  10.96.0.0/12, reserved through the ClusterIP allocator like any other), port ``https`` 443 ->
  the secure port, TCP, no selector, labels ``component=apiserver`` and ``provider=kubernetes``;
* Endpoints ``default/kubernetes``: the advertise address of every live API server and the secure
  port (label ``endpointslice.kubernetes.io/skip-mirror: "true"``);
* EndpointSlice ``default/kubernetes`` (label ``kubernetes.io/service-name: kubernetes``): the same
  addresses, ready.

Each API server keeps a record of its own (``/registry/masterleases/IP:PORT``) on an etcd lease of
``lease_ttl`` seconds, kept alive every ``interval`` seconds (a keep-alive does not move etcd's
revision, so an idle cluster's resourceVersion stands still); the endpoints are the servers whose
record exists, so one that stops drops out within ``lease_ttl`` seconds.  The objects are checked on
every refresh and whenever one of them changes (the watch caches), so a deleted or edited object is
put back at once.  A server being shut down removes its own record and address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson

from apimachinery import errors
from apimachinery.resources import kind_info

from .registry import Registry, Storage

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAMESPACE = "default"
NAME = "kubernetes"
PORT_NAME = "https"
SERVICE_PORT = 443
SERVICE_LABELS = {"component": "apiserver", "provider": "kubernetes"}
ENDPOINTS_LABELS = {"endpointslice.kubernetes.io/skip-mirror": "true"}
SLICE_LABELS = {"kubernetes.io/service-name": NAME}
LEASES_PREFIX = "/registry/masterleases/"
DEFAULT_INTERVAL = 10.0  # Kubernetes' --endpoint-reconciler-interval
DEFAULT_LEASE_TTL = 15.0  # Kubernetes' master lease TTL

SERVICES = kind_info("v1", "Service")
ENDPOINTS = kind_info("v1", "Endpoints")
ENDPOINT_SLICES = kind_info("discovery.k8s.io/v1", "EndpointSlice")


# --- the wanted objects (pure) -------------------------------------------------------------------


def service_ports(secure_port: int) -> list[Obj]:
    return [{"name": PORT_NAME, "port": SERVICE_PORT, "protocol": "TCP", "targetPort": secure_port}]


def desired_service(cluster_ip: str, secure_port: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(SERVICE_LABELS)},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ports": service_ports(secure_port),
            "sessionAffinity": "None",
        },
    }


def service_update(current: Obj, secure_port: int, live_ports: frozenset[int] = frozenset()) -> Obj | None:
    """The repaired Service when its type, ports or labels were changed; None when it is right.

    A ``targetPort`` that is the secure port of any live API server is right (servers on other
    ports of one host would otherwise take the Service from each other in turn).  The ClusterIP is
    immutable: a Service that holds another address is deleted and made again."""
    spec = current.get("spec") or {}
    labels = (current.get("metadata") or {}).get("labels") or {}
    target = next((p.get("targetPort") for p in spec.get("ports") or [] if isinstance(p, dict)), None)
    want_ports = service_ports(target if isinstance(target, int) and target in live_ports else secure_port)
    have_ports = [
        {k: p.get(k) for k in ("name", "port", "protocol", "targetPort")} for p in spec.get("ports") or []
    ]
    right_labels = all(labels.get(k) == v for k, v in SERVICE_LABELS.items())
    if spec.get("type") == "ClusterIP" and have_ports == want_ports and right_labels:
        return None
    new = orjson.loads(orjson.dumps(current))
    new["metadata"]["labels"] = {**labels, **SERVICE_LABELS}
    new["spec"]["type"] = "ClusterIP"
    new["spec"]["ports"] = want_ports
    for key in ("externalTrafficPolicy", "healthCheckNodePort", "loadBalancerIP", "externalName"):
        new["spec"].pop(key, None)
    return new


def port_groups(servers: list[tuple[str, int]]) -> list[tuple[int, list[str]]]:
    """(port, sorted addresses) per distinct secure port, lowest port first."""
    by_port: dict[int, set[str]] = {}
    for ip, port in servers:
        by_port.setdefault(port, set()).add(ip)
    return [(port, sorted(ips)) for port, ips in sorted(by_port.items())]


def desired_subsets(servers: list[tuple[str, int]]) -> list[Obj]:
    return [
        {
            "addresses": [{"ip": ip} for ip in ips],
            "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
        }
        for port, ips in port_groups(servers)
    ]


def desired_slices(servers: list[tuple[str, int]]) -> dict[str, Obj]:
    """Slice name -> the parts of the slice this reconciler owns (one slice per secure port: the
    first is ``kubernetes``, as in Kubernetes; API servers on other ports get ``kubernetes-PORT``)."""
    out: dict[str, Obj] = {}
    for i, (port, ips) in enumerate(port_groups(servers)):
        name = NAME if i == 0 else f"{NAME}-{port}"
        out[name] = {
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": [ip], "conditions": {"ready": True, "serving": True, "terminating": False}}
                for ip in ips
            ],
            "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
        }
    return out


def _slice_matches(have: Obj, want: Obj) -> bool:
    labels = (have.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in SLICE_LABELS.items()):
        return False
    if have.get("addressType") != want["addressType"]:
        return False
    got = [
        (
            list(e.get("addresses") or []),
            bool((e.get("conditions") or {}).get("ready")),
        )
        for e in have.get("endpoints") or []
    ]
    wanted = [(e["addresses"], True) for e in want["endpoints"]]
    ports = [{k: p.get(k) for k in ("name", "port", "protocol")} for p in have.get("ports") or []]
    return got == wanted and ports == want["ports"]


def _endpoints_match(have: Obj, subsets: list[Obj]) -> bool:
    labels = (have.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in ENDPOINTS_LABELS.items()):
        return False
    got = [
        {
            "addresses": [{"ip": a.get("ip")} for a in s.get("addresses") or []],
            "ports": [{k: p.get(k) for k in ("name", "port", "protocol")} for p in s.get("ports") or []],
        }
        for s in have.get("subsets") or []
    ]
    return got == subsets and not any(s.get("notReadyAddresses") for s in have.get("subsets") or [])


# --- the reconciler ------------------------------------------------------------------------------


class KubernetesServiceReconciler:
    """Keeps ``default/kubernetes`` (Service, Endpoints, EndpointSlice) as described above."""

    def __init__(
        self,
        storage: Storage,
        advertise_address: str,
        secure_port: int,
        *,
        interval: float = DEFAULT_INTERVAL,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        clock: Any = time.time,
    ) -> None:
        self.storage = storage
        self.address = advertise_address
        self.port = int(secure_port)
        self.interval = interval
        self.lease_ttl = lease_ttl
        self.clock = clock
        self.cluster_ip = storage.service_allocations.ip_range.kubernetes_service_ip()
        self._poke = asyncio.Event()
        self._lease_id = 0

    @property
    def lease_key(self) -> str:
        return f"{LEASES_PREFIX}{self.address}:{self.port}"

    def _reg(self, info: Any) -> Registry:
        return self.storage.registry(info)

    # -- master leases ------------------------------------------------------------------------------
    async def refresh_lease(self) -> None:
        """Keep this server's record alive: an etcd lease of ``lease_ttl`` seconds, refreshed by a
        keep-alive, which (unlike rewriting the record every pass) does not move etcd's revision."""
        etcd = self.storage.etcd
        if self._lease_id and await etcd.keep_alive(self._lease_id) > 0:
            return
        self._lease_id = await etcd.grant_lease(max(int(self.lease_ttl), 1))
        record = {"ip": self.address, "port": self.port}  # no expiry: etcd removes it with the lease
        await etcd.put_with_lease(self.lease_key, orjson.dumps(record), self._lease_id)

    async def live_servers(self) -> list[tuple[str, int]]:
        """(ip, port) of the API servers whose record has not expired; expired records are removed."""
        kvs, _more, _rev = await self.storage.etcd.range(LEASES_PREFIX, limit=1000)
        now = self.clock()
        out: list[tuple[str, int]] = []
        for kv in kvs:
            try:
                rec = orjson.loads(kv.value)
                ip, port = str(rec["ip"]), int(rec["port"])
                expires = float(rec.get("expires", "inf"))  # records on a lease carry no expiry
            except (ValueError, KeyError, TypeError):
                expires, ip, port = 0.0, "", 0
            if expires > now:
                out.append((ip, port))
            else:
                with contextlib.suppress(Exception):
                    await self.storage.etcd.delete(kv.key.decode(), kv.mod_revision)
        if (self.address, self.port) not in out:
            out.append((self.address, self.port))
        return sorted(out)

    # -- objects --------------------------------------------------------------------------------
    async def _get(self, info: Any, name: str = NAME) -> Obj | None:
        try:
            return await self._reg(info).get(NAMESPACE, name)
        except errors.NotFound:
            return None

    async def ensure_service(self, live_ports: frozenset[int] = frozenset()) -> None:
        reg = self._reg(SERVICES)
        svc = await self._get(SERVICES)
        if svc is not None and (svc.get("spec") or {}).get("clusterIP") not in (None, "", self.cluster_ip):
            # made by someone else with another address: the ClusterIP cannot change in place
            log.warning(
                "service default/kubernetes has ClusterIP %s, not %s: recreating it",
                svc["spec"].get("clusterIP"),
                self.cluster_ip,
            )
            with contextlib.suppress(errors.NotFound):
                await reg.delete(NAMESPACE, NAME, {"preconditions": {"uid": svc["metadata"]["uid"]}})
            svc = None
        if svc is None:
            try:
                await reg.create(NAMESPACE, desired_service(self.cluster_ip, self.port))
                log.info("created service default/kubernetes (%s:%d)", self.cluster_ip, SERVICE_PORT)
            except errors.AlreadyExists:
                pass
            return
        new = service_update(svc, self.port, live_ports)
        if new is not None:
            await reg.update(NAMESPACE, NAME, new)
            log.info("repaired service default/kubernetes")

    async def ensure_endpoints(self, servers: list[tuple[str, int]]) -> None:
        reg = self._reg(ENDPOINTS)
        subsets = desired_subsets(servers)
        ep = await self._get(ENDPOINTS)
        if ep is None:
            body = {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(ENDPOINTS_LABELS)},
                "subsets": subsets,
            }
            with contextlib.suppress(errors.AlreadyExists):
                await reg.create(NAMESPACE, body)
            return
        if _endpoints_match(ep, subsets):
            return
        ep["metadata"]["labels"] = {**(ep["metadata"].get("labels") or {}), **ENDPOINTS_LABELS}
        ep["subsets"] = subsets
        await reg.update(NAMESPACE, NAME, ep)

    async def ensure_slices(self, servers: list[tuple[str, int]]) -> None:
        reg = self._reg(ENDPOINT_SLICES)
        wanted = desired_slices(servers)
        for name, want in wanted.items():
            have = await self._get(ENDPOINT_SLICES, name)
            if have is None:
                body = {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {"name": name, "namespace": NAMESPACE, "labels": dict(SLICE_LABELS)},
                    **want,
                }
                with contextlib.suppress(errors.AlreadyExists):
                    await reg.create(NAMESPACE, body)
                continue
            if _slice_matches(have, want):
                continue
            have["metadata"]["labels"] = {**(have["metadata"].get("labels") or {}), **SLICE_LABELS}
            have.update(want)
            await reg.update(NAMESPACE, name, have)
        # slices of secure ports no API server uses any more
        items, _rev, _cont = await reg.list(NAMESPACE)
        for item in items:
            meta = item.get("metadata") or {}
            name = str(meta.get("name", ""))
            if (
                (meta.get("labels") or {}).get("kubernetes.io/service-name") == NAME
                and name.startswith(f"{NAME}-")
                and name not in wanted
                and not (meta.get("labels") or {}).get("endpointslice.kubernetes.io/managed-by")
            ):
                with contextlib.suppress(errors.NotFound):
                    await reg.delete(NAMESPACE, name)

    async def reconcile(self) -> None:
        """One pass: refresh this server's record, then make the three objects right."""
        await self.refresh_lease()
        servers = await self.live_servers()
        await self.ensure_service(frozenset(port for _ip, port in servers))
        await self.ensure_endpoints(servers)
        await self.ensure_slices(servers)

    # -- loop -----------------------------------------------------------------------------------
    def _changed(self, _etype: str, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        if meta.get("namespace") == NAMESPACE and (
            meta.get("name") == NAME or ((meta.get("labels") or {}).get("kubernetes.io/service-name") == NAME)
        ):
            self._poke.set()

    async def _follow(self, info: Any) -> None:
        """Poke the loop on every change of an object of ``info`` in ``default`` named kubernetes."""
        reg = self._reg(info)
        while True:
            try:
                async for etype, obj in reg.watch(NAMESPACE, None, ""):
                    if etype != "BOOKMARK":
                        self._changed(etype, obj)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.debug("watch of %s for the kubernetes service ended: %s", info.plural, exc)
            await asyncio.sleep(1)

    async def run(self) -> None:
        followers = [
            asyncio.create_task(self._follow(info), name=f"kubernetes-service-{info.plural}")
            for info in (SERVICES, ENDPOINTS, ENDPOINT_SLICES)
        ]
        try:
            while True:
                self._poke.clear()
                try:
                    await self.reconcile()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    log.warning("reconciling the kubernetes service failed: %s", exc)
                    await asyncio.sleep(1)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), self.interval)
        finally:
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)

    async def stop(self) -> None:
        """This server is shutting down: remove its record and its address from the endpoints
        (Kubernetes' ``RemoveEndpoints``), leaving the other servers'."""
        try:
            kv, _ = await self.storage.etcd.get(self.lease_key)
            if kv is not None:
                await self.storage.etcd.delete(self.lease_key, kv.mod_revision)
            servers = [s for s in await self.live_servers() if s != (self.address, self.port)]
            if servers:
                await self.ensure_endpoints(servers)
                await self.ensure_slices(servers)
            else:
                ep = await self._get(ENDPOINTS)
                if ep is not None and ep.get("subsets"):
                    ep["subsets"] = []
                    await self._reg(ENDPOINTS).update(NAMESPACE, NAME, ep)
        except Exception as exc:  # noqa: BLE001
            log.warning("removing this API server from the kubernetes endpoints failed: %s", exc)


__all__ = ["KubernetesServiceReconciler", "desired_service", "desired_slices", "desired_subsets"]


def host_address() -> str:
    """The host's first non-loopback IPv4 address (the source address of its default route), or
    127.0.0.1 when it has none: the default ``--advertise-address``."""
    import socket

    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the route
        address = str(s.getsockname()[0])
        if address and not address.startswith("127."):
            return address
    return "127.0.0.1"


def master_endpoint(args: Any) -> tuple[str, int] | None:
    """(advertise address, secure port) from ``minik-apiserver``'s flags; None when the server has
    no secure port (no ``kubernetes`` Service is kept then)."""
    port = getattr(args, "secure_port", None)
    if port is None:
        port = getattr(args, "port", 0)
    if not port:
        return None
    address = getattr(args, "advertise_address", None) or ""
    bind = str(getattr(args, "bind_address", "") or "")
    if not address:
        address = bind if bind and bind not in ("0.0.0.0", "::") else host_address()
    return address, int(port)


def start_reconciler(storage: Storage) -> asyncio.Task[None] | None:
    """Start keeping the ``kubernetes`` Service when ``apiserver.main`` gave the storage its
    ``master_endpoint``; the task removes this server's address when cancelled."""
    endpoint = getattr(storage, "master_endpoint", None)
    if not endpoint:
        return None
    reconciler = KubernetesServiceReconciler(storage, endpoint[0], int(endpoint[1]))

    async def run() -> None:
        try:
            await reconciler.run()
        finally:
            await asyncio.shield(reconciler.stop())

    return asyncio.create_task(run(), name="kubernetes-service")
