"""``minik-metrics-server``: the resource metrics API (``metrics.k8s.io/v1beta1``), as Kubernetes'
metrics-server serves it behind the API server's aggregation layer.

Every ``--metric-resolution`` seconds it scrapes ``/metrics/resource`` of every Ready node's kubelet
(HTTPS, with its own client certificate: the kubelet authorizes it for ``nodes/metrics``), keeps the
last two samples of each node and container, and answers

* ``GET /apis/metrics.k8s.io/v1beta1/nodes[/NAME]`` → ``NodeMetrics`` (list: ``NodeMetricsList``)
* ``GET /apis/metrics.k8s.io/v1beta1[/namespaces/NS]/pods[/NAME]`` → ``PodMetrics``
  (``labelSelector`` on the node's or pod's labels),
* the discovery documents of the group, and ``/healthz``, ``/livez``, ``/readyz``.

Requests are authenticated the way an aggregated API server authenticates the API server's proxy:
a client certificate verified against ``--requestheader-client-ca-file`` whose CN is one of
``--requestheader-allowed-names`` makes the user the one named in ``X-Remote-User`` (groups
``X-Remote-Group``, extra ``X-Remote-Extra-*``); anything else is ``401``.  The user is then
authorized with a ``SubjectAccessReview`` through the API server (``get``/``list`` on
``nodes.metrics.k8s.io`` or ``pods.metrics.k8s.io``; discovery as a non-resource ``get``), the
answer cached for 10 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from apimachinery import errors, metrics
from apimachinery.client import Client
from apimachinery.component import add_kubeconfig_flags, add_log_level_flag, run_component
from apimachinery.informer import Informer
from apimachinery.kubeconfig import load_config
from apimachinery.resources import kind_info
from apimachinery.selectors import parse_label_selector

from . import scrape

log = logging.getLogger("metrics-server")

NODES = kind_info("v1", "Node")
PODS = kind_info("v1", "Pod")
SAR = kind_info("authorization.k8s.io/v1", "SubjectAccessReview")
SAR_TTL = 10.0
PREFIX = "/apis/metrics.k8s.io/v1beta1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="minik-metrics-server", description="minik's resource metrics API")
    add_kubeconfig_flags(p)
    p.add_argument(
        "--metric-resolution",
        type=float,
        default=15.0,
        help="seconds between scrapes of the kubelets (the window CPU rates are computed over)",
    )
    p.add_argument("--bind-address", default="0.0.0.0", help="address to serve HTTPS on")
    p.add_argument("--secure-port", type=int, default=4443, help="port to serve HTTPS on")
    metrics.add_metrics_flag(p, 10253)
    p.add_argument("--tls-cert-file", required=True, help="serving certificate (for SERVICE.NAMESPACE.svc)")
    p.add_argument("--tls-private-key-file", required=True, help="the serving certificate's key")
    p.add_argument(
        "--requestheader-client-ca-file",
        required=True,
        help="CA that verifies the front proxy's (the API server's) client certificate",
    )
    p.add_argument(
        "--requestheader-allowed-names",
        default="front-proxy-client",
        help="comma-separated CNs allowed to name the user in headers (empty: any certificate of the CA)",
    )
    p.add_argument("--requestheader-username-headers", default="X-Remote-User")
    p.add_argument("--requestheader-group-headers", default="X-Remote-Group")
    p.add_argument("--requestheader-extra-headers-prefix", default="X-Remote-Extra-")
    p.add_argument(
        "--kubelet-insecure-tls",
        action="store_true",
        help="do not verify kubelets' serving certificates (default: verified with the kubeconfig's CA)",
    )
    add_log_level_flag(p)
    return p.parse_args(argv)


# ---- the scraper ---------------------------------------------------------------------------------


def node_ready(node: dict[str, Any]) -> bool:
    conds = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def kubelet_url(node: dict[str, Any]) -> str | None:
    status = node.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    host = addresses.get("InternalIP") or addresses.get("Hostname")
    if not port or not host:
        return None
    return f"https://{f'[{host}]' if ':' in str(host) else host}:{port}"


class Store:
    """The last two samples of every node and container, and the API objects made from them."""

    def __init__(self) -> None:
        self.previous: dict[str, scrape.NodeSample] = {}
        self.current: dict[str, scrape.NodeSample] = {}
        self.scraped_once = False

    def put(self, node: str, sample: scrape.NodeSample) -> None:
        old = self.current.get(node)
        if old is not None:
            prev = self.previous.setdefault(node, scrape.NodeSample())
            # keep the older reading of each series: a series that did not move keeps its pair
            if old.node.ts != sample.node.ts:
                prev.node = old.node
            for key, p in old.containers.items():
                if sample.containers.get(key) is None or sample.containers[key].ts != p.ts:
                    prev.containers[key] = p
            prev.containers = {k: v for k, v in prev.containers.items() if k in sample.containers}
        self.current[node] = sample

    def forget_except(self, nodes: set[str]) -> None:
        for d in (self.previous, self.current):
            for n in list(d):
                if n not in nodes:
                    del d[n]

    def node(self, node: dict[str, Any]) -> dict[str, Any] | None:
        name = (node.get("metadata") or {}).get("name", "")
        cur, prev = self.current.get(name), self.previous.get(name)
        if cur is None or prev is None:
            return None
        return scrape.node_metrics(node, prev.node, cur.node)

    def pod(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        meta = pod.get("metadata") or {}
        node = (pod.get("spec") or {}).get("nodeName")
        cur, prev = self.current.get(node or ""), self.previous.get(node or "")
        if cur is None or prev is None:
            return None
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        new = {c: p for (n, pn, c), p in cur.containers.items() if n == ns and pn == name}
        old = {c: p for (n, pn, c), p in prev.containers.items() if n == ns and pn == name}
        return scrape.pod_metrics(pod, old, new)


class Scraper:
    def __init__(self, nodes: Informer, http: httpx.AsyncClient, store: Store, resolution: float) -> None:
        self.nodes, self.http, self.store, self.resolution = nodes, http, store, resolution

    async def scrape_node(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        url = kubelet_url(node)
        if url is None:
            return
        try:
            r = await self.http.get(url + "/metrics/resource", timeout=max(self.resolution, 5.0))
            r.raise_for_status()
            sample = scrape.parse_resource_metrics(r.text, time.time())
        except (httpx.HTTPError, ValueError, AssertionError, IndexError) as e:
            log.warning("scraping node %s (%s) failed: %s", name, url, e)
            return
        self.store.put(name, sample)

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            nodes = [n for n in self.nodes.store.list() if node_ready(n)]
            await asyncio.gather(*(self.scrape_node(n) for n in nodes))
            self.store.forget_except({n["metadata"]["name"] for n in nodes})
            self.store.scraped_once = True
            await asyncio.sleep(max(0.0, self.resolution - (time.monotonic() - started)))


# ---- authentication and authorization -------------------------------------------------------------


class PeerCertProtocol:
    """Makes uvicorn's HTTP protocol put the connection's verified client certificate into the
    ASGI scope (``scope["minik.peercert"]``: :meth:`ssl.SSLSocket.getpeercert`'s dict, or None)."""

    @staticmethod
    def build() -> type:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        class Protocol(H11Protocol):  # type: ignore[misc]
            def connection_made(self, transport: Any) -> None:
                super().connection_made(transport)
                sslobj = transport.get_extra_info("ssl_object")
                cert = sslobj.getpeercert() if sslobj is not None else None
                app = self.app

                async def with_cert(scope: Any, receive: Any, send: Any) -> None:
                    scope["minik.peercert"] = cert or None
                    await app(scope, receive, send)

                self.app = with_cert

        return Protocol


def common_name(cert: dict[str, Any] | None) -> str | None:
    for rdn in (cert or {}).get("subject") or ():
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class Authorizer:
    def __init__(self, client: Client, args: argparse.Namespace) -> None:
        self.client = client
        self.allowed = {n.strip() for n in args.requestheader_allowed_names.split(",") if n.strip()}
        self.user_headers = [h.strip().lower() for h in args.requestheader_username_headers.split(",")]
        self.group_headers = [h.strip().lower() for h in args.requestheader_group_headers.split(",")]
        self.extra_prefixes = [h.strip().lower() for h in args.requestheader_extra_headers_prefix.split(",")]
        self.cache: dict[str, tuple[float, bool, str]] = {}

    def user(self, request: Request) -> dict[str, Any]:
        cn = common_name(request.scope.get("minik.peercert"))
        if cn is None or (self.allowed and cn not in self.allowed):
            raise errors.Unauthorized("Unauthorized")
        h = request.headers
        name = next((h[x] for x in self.user_headers if h.get(x)), None)
        if not name:
            raise errors.Unauthorized("Unauthorized")
        groups = [v for x in self.group_headers for v in h.getlist(x)]
        extra: dict[str, list[str]] = {}
        for key, value in h.items():
            for prefix in self.extra_prefixes:
                if key.startswith(prefix):
                    extra.setdefault(unquote(key[len(prefix) :]).lower(), []).append(value)
        return {"user": name, "groups": groups, "extra": extra}

    async def authorize(self, request: Request, attributes: dict[str, Any]) -> None:
        who = self.user(request)
        spec = {**who, **attributes}
        key = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS).decode()
        hit = self.cache.get(key)
        now = time.monotonic()
        if hit is None or hit[0] < now:
            review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
            answer = await self.client.create(SAR, review)
            status = answer.get("status") or {}
            hit = (now + SAR_TTL, bool(status.get("allowed")), str(status.get("reason") or ""))
            if len(self.cache) > 4096:
                self.cache.clear()
            self.cache[key] = hit
        if not hit[1]:
            ra = attributes.get("resourceAttributes")
            if ra:
                what = f'{ra["resource"]}.metrics.k8s.io is forbidden: User "{who["user"]}" cannot {ra["verb"]} resource "{ra["resource"]}" in API group "metrics.k8s.io"'
                if ra.get("namespace"):
                    what += f' in the namespace "{ra["namespace"]}"'
                elif "namespace" in ra:
                    what += " at the cluster scope"
            else:
                what = f'forbidden: User "{who["user"]}" cannot get path "{request.url.path}"'
            raise errors.Forbidden(what + (f": {hit[2]}" if hit[2] else ""))


# ---- the API ---------------------------------------------------------------------------------------


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def build_app(
    store: Store,
    nodes: Informer,
    pods: Informer,
    authorize: Callable[[Request, dict[str, Any]], Awaitable[None]],
) -> Starlette:
    def guarded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except errors.StatusError as e:
                return _json(e.status(), e.code)

        return endpoint

    def resource_attrs(resource: str, verb: str, namespace: str = "", name: str = "") -> dict[str, Any]:
        ra = {"group": "metrics.k8s.io", "version": "v1beta1", "resource": resource, "verb": verb}
        if namespace or resource == "pods":
            ra["namespace"] = namespace
        if name:
            ra["name"] = name
        return {"resourceAttributes": ra}

    def selector(request: Request) -> Any:
        try:
            return parse_label_selector(request.query_params.get("labelSelector"))
        except ValueError as e:
            raise errors.BadRequest(str(e)) from None

    async def discovery(request: Request) -> Response:
        await authorize(request, {"nonResourceAttributes": {"path": request.url.path, "verb": "get"}})
        path = request.url.path.rstrip("/")
        if path == PREFIX:
            return _json(scrape.resource_list())
        if path == "/apis/metrics.k8s.io":
            return _json(scrape.api_group())
        return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": [scrape.api_group()]})

    def metrics_handler(
        resource: str,
        informer: Informer,
        measure: Callable[[dict[str, Any]], dict[str, Any] | None],
        kind: str,
    ) -> Callable[[Request], Awaitable[Response]]:
        """GET of one ``kind`` (a ``name`` in the path) or a ``kind``List (cluster-wide, or in the
        path's ``namespace``) of the objects of ``informer`` that ``measure`` has metrics for."""

        async def endpoint(request: Request) -> Response:
            ns = request.path_params.get("namespace", "")
            name = request.path_params.get("name")
            if name is not None:
                await authorize(request, resource_attrs(resource, "get", ns, name))
                obj = informer.store.get(f"{ns}/{name}" if ns else name)
                m = measure(obj) if obj is not None else None
                if m is None:
                    raise errors.not_found(kind.lower(), name, "metrics.k8s.io")
                return _json(m)
            await authorize(request, resource_attrs(resource, "list", ns))
            sel = selector(request)
            items = []
            candidates = informer.store.by_index("namespace", ns) if ns else informer.store.list()
            for o in sorted(
                candidates, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
            ):
                if sel.matches((o.get("metadata") or {}).get("labels") or {}):
                    m = measure(o)
                    if m is not None:
                        items.append(m)
            return _json(
                {
                    "kind": kind + "List",
                    "apiVersion": scrape.GROUP_VERSION,
                    "metadata": {"resourceVersion": ""},
                    "items": items,
                }
            )

        return guarded(endpoint)

    node_metrics = metrics_handler("nodes", nodes, store.node, "NodeMetrics")
    pod_metrics = metrics_handler("pods", pods, store.pod, "PodMetrics")

    async def health(request: Request) -> Response:
        if request.url.path == "/readyz" and not store.scraped_once:
            return PlainTextResponse("[-]metric-storage-ready failed: not scraped yet", status_code=500)
        return PlainTextResponse("ok")

    routes = [
        Route("/healthz", health),
        Route("/livez", health),
        Route("/readyz", health),
        Route("/apis", guarded(discovery)),
        Route("/apis/metrics.k8s.io", guarded(discovery)),
        Route(PREFIX, guarded(discovery)),
        Route(PREFIX + "/nodes", node_metrics),
        Route(PREFIX + "/nodes/{name}", node_metrics),
        Route(PREFIX + "/pods", pod_metrics),
        Route(PREFIX + "/namespaces/{namespace}/pods", pod_metrics),
        Route(PREFIX + "/namespaces/{namespace}/pods/{name}", pod_metrics),
    ]
    return Starlette(routes=routes)


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    import uvicorn

    config = load_config(args.kubeconfig, server=args.api_server)
    client = Client(config)
    kubelet_tls = config.ssl_context()
    if not isinstance(kubelet_tls, ssl.SSLContext):
        kubelet_tls = ssl.create_default_context()
    if args.kubelet_insecure_tls:
        kubelet_tls.check_hostname = False
        kubelet_tls.verify_mode = ssl.CERT_NONE
    else:
        kubelet_tls.check_hostname = (
            False  # kubelets' certificates name their node's addresses, not always the one used
        )
    http = httpx.AsyncClient(verify=kubelet_tls)
    nodes, pods = Informer(client, NODES), Informer(client, PODS)
    store = Store()
    authorizer = Authorizer(client, args)
    app = build_app(store, nodes, pods, authorizer.authorize)

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # SIGTERM/SIGINT are run_component's
            yield

    server = Server(
        uvicorn.Config(
            app,
            host=args.bind_address,
            port=args.secure_port,
            ssl_certfile=args.tls_cert_file,
            ssl_keyfile=args.tls_private_key_file,
            ssl_ca_certs=args.requestheader_client_ca_file,
            ssl_cert_reqs=ssl.CERT_OPTIONAL,
            http=PeerCertProtocol.build(),
            lifespan="off",
            log_level="warning",
        )
    )
    metrics_listener = await metrics.serve_from_args(args, "metrics-server")  # GET /metrics
    tasks = [
        asyncio.create_task(nodes.run(), name="metrics-server-nodes"),
        asyncio.create_task(pods.run(), name="metrics-server-pods"),
    ]
    try:
        await nodes.wait_for_sync()
        await pods.wait_for_sync()
        tasks.append(
            asyncio.create_task(Scraper(nodes, http, store, args.metric_resolution).run(), name="scraper")
        )
        tasks.append(asyncio.create_task(server.serve(), name="metrics-server-https"))
        log.info("serving metrics.k8s.io on https://%s:%d", args.bind_address, args.secure_port)
        await stop.wait()
    finally:
        server.should_exit = True
        nodes.stop()
        pods.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*tasks[-1:], return_exceptions=True), timeout=5)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await http.aclose()
        await client.aclose()
        if metrics_listener is not None:
            metrics_listener.close()


def main(argv: list[str] | None = None) -> None:
    run_component(parse_args(argv), serve, quiet=("httpx",))


if __name__ == "__main__":
    main()
