"""The aggregation layer (Kubernetes' kube-aggregator, inside the API server).

An ``apiregistration.k8s.io/v1`` ``APIService`` names a group-version and, unless it is local
(no ``spec.service``), the Service in front of the server that serves it.  This module

* follows the APIService objects (through their watch cache) and, every few seconds and whenever
  one changes, checks each non-local one as kube-aggregator's availability controller does: the
  Service exists (else ``ServiceNotFound``), it has an endpoint address for the port
  ``spec.service.port`` names (else ``MissingEndpoints``), and the backend answers its discovery
  document ``GET /apis/GROUP/VERSION`` over TLS (else ``FailedDiscoveryCheck``); the outcome is the
  ``Available`` condition (reason ``Passed`` when it works, ``Local`` for a local APIService);
* proxies every request under ``/apis/GROUP/VERSION`` of an available APIService to one endpoint
  address of its Service (Kubernetes' ``--enable-aggregator-routing``: the address, not the
  ClusterIP), over TLS verified with ``spec.caBundle`` for the name ``SERVICE.NAMESPACE.svc``
  (or not verified with ``insecureSkipTLSVerify``), presenting the front-proxy client certificate
  (``--proxy-client-cert-file``/``--proxy-client-key-file``) and naming the authenticated user in
  ``X-Remote-User``, ``X-Remote-Group`` and ``X-Remote-Extra-*`` -- the requester's own
  credentials (``Authorization``, ``Impersonate-*``) are not passed on.  A request for an APIService
  that is not available is a ``503``;
* gives :mod:`apiserver.discovery` the groups to list (:func:`aggregated_groups`): every APIService
  in ``/apis``; in the aggregated ``apidiscovery.k8s.io`` document the available ones with the
  resources their backend reported.

The API server has already authenticated and authorized the request (the user needs the verb on
``pods.metrics.k8s.io`` here too) before it is proxied; the backend authorizes it again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from apimachinery import errors
from apimachinery.resources import kind_info
from apimachinery.timefmt import rfc3339

from .authtypes import UserInfo
from .registry import Storage

log = logging.getLogger(__name__)

APISERVICE = kind_info("apiregistration.k8s.io/v1", "APIService")
SERVICE = kind_info("v1", "Service")
ENDPOINTS = kind_info("v1", "Endpoints")
ENDPOINTSLICE = kind_info("discovery.k8s.io/v1", "EndpointSlice")

CHECK_USER = UserInfo("system:kube-aggregator", ("system:authenticated",))
CHECK_INTERVAL = 5.0  # seconds between availability checks of an unchanged APIService
DISCOVERY_TIMEOUT = 5.0
PROXY_TIMEOUT = 60.0
# request headers passed on to the backend (the rest -- credentials above all -- are not)
PASSED_HEADERS = ("accept", "content-type", "user-agent", "audit-id", "x-request-id")
# response headers passed back
RETURNED_HEADERS = ("content-type", "cache-control", "etag", "warning", "audit-id")


@dataclass
class ProxyConfig:
    """The front-proxy client certificate (``--proxy-client-cert-file``/``--proxy-client-key-file``)
    and the header names the backend reads the user from."""

    cert_file: str | None = None
    key_file: str | None = None
    username_header: str = "X-Remote-User"
    group_header: str = "X-Remote-Group"
    extra_prefix: str = "X-Remote-Extra-"


@dataclass
class Backend:
    """What the availability check found for one APIService."""

    group: str
    version: str
    available: bool = False
    reason: str = ""
    message: str = ""
    url: str = ""  # https://ADDRESS:PORT of one endpoint
    server_name: str = ""  # SERVICE.NAMESPACE.svc, the name TLS verifies
    resources: dict[str, Any] | None = None  # the backend's APIResourceList
    group_priority: int = 0
    version_priority: int = 0
    generation: tuple[str, bytes] = ("", b"")  # (uid, spec) it was checked for
    checked_at: float = 0.0
    service: dict[str, Any] = field(default_factory=dict)


def is_local(apiservice: dict[str, Any]) -> bool:
    return not (apiservice.get("spec") or {}).get("service")


def header_values(user: UserInfo, config: ProxyConfig | None = None) -> list[tuple[str, str]]:
    """The front-proxy headers that name ``user`` (kube-aggregator's ``NewRequestHeaderAuthRoundTripper``)."""
    c = config or ProxyConfig()
    out = [(c.username_header, user.name)]
    out += [(c.group_header, g) for g in user.groups]
    for key, values in user.extra:
        # header names are case-insensitive: extra keys are percent-encoded (Kubernetes' escaping)
        escaped = "".join(ch if ch.isalnum() or ch in "-_.~" else f"%{ord(ch):02X}" for ch in key)
        out += [(c.extra_prefix + escaped, v) for v in values]
    return out


def pick_endpoint(
    service: dict[str, Any], endpoints: dict[str, Any] | None, slices: list[dict[str, Any]], port: int
) -> tuple[str, int] | str:
    """(address, port) of a ready endpoint behind the Service port ``port``, or why there is none
    (the ``MissingEndpoints`` message)."""
    meta = service.get("metadata") or {}
    where = f'service/{meta.get("name")} in "{meta.get("namespace")}"'
    ports = (service.get("spec") or {}).get("ports") or []
    sp = next((p for p in ports if p.get("port") == port), None)
    if sp is None:
        return f"{where} is not listening on port {port}"
    port_name = sp.get("name") or ""
    target = sp.get("targetPort")
    for subset in (endpoints or {}).get("subsets") or []:
        addrs = subset.get("addresses") or []
        for ep in subset.get("ports") or []:
            if (ep.get("name") or "") == port_name and addrs:
                return str(addrs[0].get("ip")), int(ep.get("port") or target or port)
    for s in slices:
        for ep in s.get("ports") or []:
            if (ep.get("name") or "") != port_name:
                continue
            for e in s.get("endpoints") or []:
                if (e.get("conditions") or {}).get("ready", True) and e.get("addresses"):
                    return str(e["addresses"][0]), int(ep.get("port") or target or port)
    return f'endpoints for {where} have no addresses with port name "{port_name}"'


def _generation(apiservice: dict[str, Any]) -> tuple[str, bytes]:
    return (
        str((apiservice.get("metadata") or {}).get("uid")),
        orjson.dumps(apiservice.get("spec") or {}, option=orjson.OPT_SORT_KEYS),
    )


def _condition(status: str, reason: str, message: str, old: dict[str, Any] | None) -> dict[str, Any]:
    changed = old is None or old.get("status") != status
    return {
        "type": "Available",
        "status": status,
        "lastTransitionTime": rfc3339() if changed else old.get("lastTransitionTime") or rfc3339(),  # type: ignore[union-attr]
        "reason": reason,
        "message": message,
    }


class Aggregator:
    def __init__(self, storage: Storage, config: ProxyConfig | None = None) -> None:
        self.storage = storage
        self.config = config or ProxyConfig()
        self.backends: dict[str, Backend] = {}  # APIService name -> check result
        self.routes: dict[tuple[str, str], dict[str, Any]] = {}  # (group, version) -> non-local APIService
        self._clients: dict[tuple[str, bool], httpx.AsyncClient] = {}
        self._wake = asyncio.Event()

    # ---- TLS clients
    def _ssl_context(self, ca_bundle: str, insecure: bool) -> ssl.SSLContext:
        if insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            try:
                pem = base64.b64decode(ca_bundle).decode() if ca_bundle else None
            except (ValueError, UnicodeDecodeError):
                pem = None
            ctx = ssl.create_default_context(cadata=pem) if pem else ssl.create_default_context()
        if self.config.cert_file:
            ctx.load_cert_chain(self.config.cert_file, self.config.key_file)
        return ctx

    def client(self, apiservice: dict[str, Any]) -> httpx.AsyncClient:
        spec = apiservice.get("spec") or {}
        key = (str(spec.get("caBundle") or ""), bool(spec.get("insecureSkipTLSVerify")))
        c = self._clients.get(key)
        if c is None:
            c = httpx.AsyncClient(verify=self._ssl_context(*key), timeout=PROXY_TIMEOUT)
            self._clients[key] = c
        return c

    async def close(self) -> None:
        for c in self._clients.values():
            await c.aclose()
        self._clients.clear()

    # ---- the objects
    def apiservices(self) -> list[dict[str, Any]]:
        reg = self.storage.registry(APISERVICE)
        if not reg.cache.ready.is_set():
            return []
        items, _rev = reg.cache.list(APISERVICE.key_prefix(None))
        return items

    def lookup(self, group: str, version: str) -> dict[str, Any] | None:
        """The non-local APIService of ``group/version``, if there is one (as of the last sync)."""
        return self.routes.get((group, version))

    # ---- availability
    async def resolve(self, apiservice: dict[str, Any]) -> tuple[str, str, str] | tuple[str, int, str]:
        """("", reason, message) when the backend cannot be reached, else (address, port, server name)."""
        ref = (apiservice.get("spec") or {}).get("service") or {}
        ns, name, port = ref.get("namespace") or "", ref.get("name") or "", int(ref.get("port") or 443)
        try:
            service = await self.storage.registry(SERVICE).get(ns, name)
        except errors.NotFound:
            return "", "ServiceNotFound", f'service/{name} in "{ns}" is not present'
        endpoints = None
        with contextlib.suppress(errors.NotFound):
            endpoints = await self.storage.registry(ENDPOINTS).get(ns, name)
        slices, _rev, _c = await self.storage.registry(ENDPOINTSLICE).list(
            ns,
            lambda o: (
                ((o.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name") == name
            ),
        )
        found = pick_endpoint(service, endpoints, slices, port)
        if isinstance(found, str):
            return "", "MissingEndpoints", found
        host, target = found
        return host, target, f"{name}.{ns}.svc"

    async def check(self, apiservice: dict[str, Any]) -> Backend:
        spec = apiservice.get("spec") or {}
        b = Backend(
            str(spec.get("group") or ""),
            str(spec.get("version") or ""),
            group_priority=int(spec.get("groupPriorityMinimum") or 0),
            version_priority=int(spec.get("versionPriority") or 0),
            generation=_generation(apiservice),
            checked_at=time.monotonic(),
        )
        if is_local(apiservice):
            b.available, b.reason, b.message = True, "Local", "Local APIServices are always available"
            return b
        resolved = await self.resolve(apiservice)
        if resolved[0] == "":
            b.reason, b.message = str(resolved[1]), str(resolved[2])
            return b
        host, port, server_name = resolved
        b.url = f"https://{f'[{host}]' if ':' in str(host) else host}:{port}"
        b.server_name = str(server_name)
        path = f"/apis/{b.group}/{b.version}"
        try:
            r = await self.client(apiservice).get(
                b.url + path,
                # the discovery check as a plain authenticated user: system:discovery allows it
                headers=header_values(CHECK_USER, self.config),
                extensions={"sni_hostname": b.server_name},
                timeout=DISCOVERY_TIMEOUT,
            )
        except (httpx.HTTPError, ssl.SSLError, OSError) as e:
            b.reason = "FailedDiscoveryCheck"
            b.message = f'failing or missing response from {b.url}{path}: Get "{b.url}{path}": {e}'
            return b
        if r.status_code != 200:
            b.reason = "FailedDiscoveryCheck"
            b.message = f"failing or missing response from {b.url}{path}: bad status from {b.url}{path}: {r.status_code}"
            return b
        try:
            b.resources = orjson.loads(r.content)
        except orjson.JSONDecodeError:
            b.resources = None
        b.available, b.reason, b.message = True, "Passed", "all checks passed"
        return b

    async def write_status(self, apiservice: dict[str, Any], b: Backend) -> None:
        status = "True" if b.available else "False"
        old = next(
            (
                c
                for c in (apiservice.get("status") or {}).get("conditions") or []
                if c.get("type") == "Available"
            ),
            None,
        )
        if old is not None and (old.get("status"), old.get("reason"), old.get("message")) == (
            status,
            b.reason,
            b.message,
        ):
            return
        cond = _condition(status, b.reason, b.message, old)

        def update(current: dict[str, Any]) -> dict[str, Any]:
            new = copy.deepcopy(current)
            conds = [
                c for c in (new.get("status") or {}).get("conditions") or [] if c.get("type") != "Available"
            ]
            new["status"] = {**(new.get("status") or {}), "conditions": [*conds, cond]}
            return new

        name = apiservice["metadata"]["name"]
        with contextlib.suppress(errors.NotFound):
            await self.storage.registry(APISERVICE).guaranteed_update(None, name, update)
        if not b.available:
            log.info("APIService %s is not available: %s: %s", name, b.reason, b.message)

    async def sync_once(self, force: bool = False) -> None:
        seen = set()
        now = time.monotonic()
        routes: dict[tuple[str, str], dict[str, Any]] = {}
        for a in self.apiservices():
            name = a["metadata"]["name"]
            seen.add(name)
            old = self.backends.get(name)
            if (
                force
                or old is None
                or old.generation != _generation(a)
                or now - old.checked_at >= CHECK_INTERVAL
            ):
                b = await self.check(a)
                self.backends[name] = b
                await self.write_status(a, b)
            if not is_local(a):
                spec = a.get("spec") or {}
                routes[(str(spec.get("group") or ""), str(spec.get("version") or ""))] = a
        self.routes = routes
        for name in list(self.backends):
            if name not in seen:
                del self.backends[name]

    async def run(self) -> None:
        reg = self.storage.registry(APISERVICE)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(reg.cache.ready.wait(), timeout=60)
        try:
            while True:
                try:
                    await self.sync_once()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("APIService availability check failed")
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
        finally:
            await self.close()

    # ---- discovery
    def aggregated_groups(self) -> list[tuple[str, str, bool, dict[str, Any] | None, int, int]]:
        """(group, version, available, APIResourceList, groupPriorityMinimum, versionPriority) of
        every non-local APIService, for :mod:`apiserver.discovery`."""
        out = []
        for a in self.apiservices():
            if is_local(a):
                continue
            spec = a.get("spec") or {}
            b = self.backends.get(a["metadata"]["name"])
            out.append(
                (
                    str(spec.get("group") or ""),
                    str(spec.get("version") or ""),
                    bool(b and b.available),
                    b.resources if b else None,
                    int(spec.get("groupPriorityMinimum") or 0),
                    int(spec.get("versionPriority") or 0),
                )
            )
        return out

    # ---- proxying
    async def proxy(self, request: Request, apiservice: dict[str, Any], user: UserInfo) -> Response:
        name = apiservice["metadata"]["name"]
        b = self.backends.get(name)
        if b is None or not b.available or not b.url:
            raise errors.ServiceUnavailable("the server is currently unable to handle the request")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() in PASSED_HEADERS]
        headers += header_values(user, self.config)
        body = await request.body()
        url = b.url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            r = await self.client(apiservice).request(
                request.method, url, headers=headers, content=body, extensions={"sni_hostname": b.server_name}
            )
        except (httpx.HTTPError, ssl.SSLError, OSError) as e:
            log.warning("proxying %s %s to %s failed: %s", request.method, request.url.path, b.url, e)
            self._wake.set()
            raise errors.ServiceUnavailable(f"error trying to reach service: {e}") from None
        out = {k: v for k, v in r.headers.items() if k.lower() in RETURNED_HEADERS}
        return Response(r.content, status_code=r.status_code, headers=out)


def proxy_config_from_args(args: Any) -> ProxyConfig:
    """minik-apiserver's front-proxy flags (``--proxy-client-cert-file`` ...); a bad file fails at start."""
    config = ProxyConfig(
        getattr(args, "proxy_client_cert_file", None) or None,
        getattr(args, "proxy_client_key_file", None) or None,
        (getattr(args, "requestheader_username_headers", "") or "X-Remote-User").split(",")[0],
        (getattr(args, "requestheader_group_headers", "") or "X-Remote-Group").split(",")[0],
        (getattr(args, "requestheader_extra_headers_prefix", "") or "X-Remote-Extra-").split(",")[0],
    )
    if bool(config.cert_file) != bool(config.key_file):
        raise SystemExit("minik-apiserver: --proxy-client-cert-file and --proxy-client-key-file go together")
    if config.cert_file:
        ssl.create_default_context().load_cert_chain(config.cert_file, config.key_file)
    return config
