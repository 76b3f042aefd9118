"""The pure part of the ingress controller: which Ingresses are ours, the route table they make (in
Kubernetes' matching precedence), the backends' endpoints, and the HAProxy configuration rendered
from all of it.  No I/O here: :mod:`ingress.controller` feeds it from informers and
:mod:`ingress.haproxy` runs what it renders.

Precedence, as the Ingress documentation gives it:

* hosts: an exact host before a wildcard host (``*.example.com`` matches exactly one more label:
  ``a.example.com``, not ``example.com`` nor ``a.b.example.com``), both before rules without a host;
* paths: the longest path first; at equal length ``Exact`` before ``Prefix``;
* ``Prefix`` matches element-wise: ``/foo`` (or ``/foo/``) matches ``/foo`` and ``/foo/bar``, never
  ``/foobar``; ``/`` matches everything; ``ImplementationSpecific`` is matched as ``Prefix``;
* among equal rules of different Ingresses the oldest Ingress wins (then the namespace/name order);
* what no rule matches goes to the ``defaultBackend`` of the oldest Ingress that has one, else a 404.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

CLASS_NAME = "minik"
CONTROLLER = "minik.io/ingress"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

# Characters a path may have to be routed: RFC 3986's pchar less those HAProxy's configuration
# language gives a meaning to (quotes, parentheses, '$', '&', '#', spaces, backslashes).
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9/._~!*+,;=:@%-]*$")
_HOST = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# -- classes -----------------------------------------------------------------------------------------


def default_ingress_class() -> Obj:
    """The IngressClass the controller creates when there is none of its name: the default class."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {
            "name": CLASS_NAME,
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
            "labels": {
                "app.kubernetes.io/component": "controller",
                "app.kubernetes.io/name": "minik-ingress",
            },
        },
        "spec": {"controller": CONTROLLER},
    }


def is_default_class(cls: Obj) -> bool:
    annotations = (cls.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(DEFAULT_CLASS_ANNOTATION, "")).lower() == "true"


def our_classes(classes: list[Obj]) -> tuple[set[str], bool]:
    """The names of the IngressClasses this controller implements, and whether an Ingress without a
    class is ours (one of them is the default)."""
    names = {c["metadata"]["name"] for c in classes if (c.get("spec") or {}).get("controller") == CONTROLLER}
    default = any(is_default_class(c) for c in classes if c["metadata"]["name"] in names)
    return names, default


def is_ours(ing: Obj, names: set[str], default: bool) -> bool:
    spec = ing.get("spec") or {}
    cls = spec.get("ingressClassName") or ((ing.get("metadata") or {}).get("annotations") or {}).get(
        LEGACY_CLASS_ANNOTATION
    )
    if cls:
        return cls in names
    return default


# -- matching ----------------------------------------------------------------------------------------


def host_matches(pattern: str, host: str) -> bool:
    """Does a rule's ``host`` (exact, ``*.`` wildcard, or empty for any) match a request's host?"""
    host = host.lower().rstrip(".")
    if not pattern:
        return True
    if pattern.startswith("*."):
        suffix = pattern[1:]
        head = host[: -len(suffix)] if host.endswith(suffix) else ""
        return bool(head) and "." not in head
    return host == pattern


def prefix_of(path: str) -> str:
    """A Prefix path without its trailing slashes (``""`` for ``/``)."""
    return path.rstrip("/")


def path_matches(path_type: str, pattern: str, path: str) -> bool:
    if path_type == "Exact":
        return path == pattern
    prefix = prefix_of(pattern)
    return not prefix or path == prefix or path.startswith(prefix + "/")


# -- routes ------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Backend:
    """A Service port an Ingress points at (``port`` is the number or the name)."""

    namespace: str
    service: str
    port: str

    @property
    def name(self) -> str:
        """The HAProxy backend's name."""
        return "be_" + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self.namespace}_{self.service}_{self.port}")


@dataclass(frozen=True)
class Route:
    host: str  # "" for any host
    path: str
    path_type: str  # "Exact" or "Prefix"
    backend: Backend
    ingress: str  # namespace/name
    created: str = ""

    def sort_key(self) -> tuple[int, int, int, str, str]:
        host_rank = 2 if not self.host else 1 if self.host.startswith("*.") else 0
        length = len(self.path if self.path_type == "Exact" else prefix_of(self.path))
        return (host_rank, -length, 0 if self.path_type == "Exact" else 1, self.created, self.ingress)

    def matches(self, host: str, path: str) -> bool:
        return host_matches(self.host, host) and path_matches(self.path_type, self.path, path)


@dataclass
class Problem:
    """Something wrong with one Ingress: a Warning Event on it (the route answers 503 or 404)."""

    reason: str
    message: str


@dataclass
class Table:
    routes: list[Route] = field(default_factory=list)
    default_backend: Backend | None = None
    problems: dict[str, list[Problem]] = field(default_factory=dict)  # ingress key -> problems

    def match(self, host: str, path: str) -> Backend | None:
        """The backend a request goes to (None: the controller's 404); the data path's decision,
        for tests and for reading."""
        for r in self.routes:
            if r.matches(host, path):
                return r.backend
        return self.default_backend


def _key(ing: Obj) -> str:
    meta = ing.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _backend(ns: str, spec: Any, key: str, where: str, problems: list[Problem]) -> Backend | None:
    spec = spec if isinstance(spec, dict) else {}
    svc = spec.get("service")
    if not isinstance(svc, dict):
        problems.append(Problem("UnsupportedBackend", f"{where}: only service backends are supported"))
        return None
    port = svc.get("port") or {}
    value = port.get("number") or port.get("name")
    if not svc.get("name") or not value:
        problems.append(Problem("InvalidBackend", f"{where}: a service name and port are required"))
        return None
    return Backend(ns, str(svc["name"]), str(value))


def route_table(ingresses: list[Obj]) -> Table:
    """The routes of ``ingresses`` (already filtered to ours), sorted by precedence."""
    table = Table()
    defaults: list[tuple[str, str, Backend]] = []
    for ing in ingresses:
        meta = ing.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        ns, key, created = (
            str(meta.get("namespace") or "default"),
            _key(ing),
            str(meta.get("creationTimestamp") or ""),
        )
        spec = ing.get("spec") or {}
        problems: list[Problem] = []
        if spec.get("defaultBackend") is not None:
            b = _backend(ns, spec["defaultBackend"], key, "spec.defaultBackend", problems)
            if b is not None:
                defaults.append((created, key, b))
        for i, rule in enumerate(spec.get("rules") or []):
            host = str(rule.get("host") or "").lower()
            if host and not _HOST.match(host):
                problems.append(Problem("InvalidHost", f"spec.rules[{i}].host {host!r} is not routed"))
                continue
            for j, p in enumerate(((rule.get("http") or {}).get("paths")) or []):
                where = f"spec.rules[{i}].http.paths[{j}]"
                path = str(p.get("path") or "/")
                path_type = "Exact" if p.get("pathType") == "Exact" else "Prefix"
                if not _SAFE_PATH.match(path):
                    problems.append(Problem("UnsupportedPath", f"{where}: path {path!r} is not routed"))
                    continue
                b = _backend(ns, p.get("backend"), key, where, problems)
                if b is not None:
                    table.routes.append(Route(host, path, path_type, b, key, created))
        if problems:
            table.problems[key] = problems
    table.routes.sort(key=Route.sort_key)
    if defaults:
        table.default_backend = min(defaults)[2]
    return table


# -- endpoints ---------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Server:
    ip: str
    port: int


def service_port(svc: Obj, port: str) -> Obj | None:
    """The Service's port an Ingress backend names (by number or by name)."""
    for sp in (svc.get("spec") or {}).get("ports") or []:
        if port.isdigit() and int(sp.get("port") or 0) == int(port):
            return dict(sp)
        if not port.isdigit() and sp.get("name") == port:
            return dict(sp)
    return None


def ready_servers(slices: list[Obj], port_name: str) -> list[Server]:
    """The ready endpoints of a Service port, from its EndpointSlices (``ready`` unset counts as
    ready, as Kubernetes reads it; terminating endpoints are not ready)."""
    out: set[Server] = set()
    for s in slices:
        ports = [
            p
            for p in s.get("ports") or []
            if (p.get("name") or "") == port_name and p.get("protocol", "TCP") == "TCP"
        ]
        if not ports or not ports[0].get("port"):
            continue
        number = int(ports[0]["port"])
        for ep in s.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for ip in (ep.get("addresses") or [])[:1]:
                out.add(Server(str(ip), number))
    return sorted(out)


def resolve_backend(
    b: Backend, services: dict[str, Obj], slices_of: dict[str, list[Obj]]
) -> tuple[list[Server], str | None]:
    """The servers behind a backend, and the problem when there are none because of the Ingress."""
    svc = services.get(f"{b.namespace}/{b.service}")
    if svc is None:
        return [], f'service "{b.namespace}/{b.service}" not found'
    if (svc.get("spec") or {}).get("type") == "ExternalName":
        return [], f'service "{b.namespace}/{b.service}" is of type ExternalName (not supported)'
    sp = service_port(svc, b.port)
    if sp is None:
        return [], f'service "{b.namespace}/{b.service}" has no port {b.port}'
    return ready_servers(slices_of.get(f"{b.namespace}/{b.service}", []), str(sp.get("name") or "")), None


# -- TLS ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cert:
    """A certificate from a kubernetes.io/tls Secret, served for ``hosts`` (SNI filters)."""

    name: str  # file name
    pem: bytes  # certificate chain then key
    hosts: tuple[str, ...]


def secret_pem(secret: Obj) -> bytes:
    """The certificate chain and key of a TLS Secret, checked to load; ValueError says what is wrong."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = secret.get("data") or {}
    try:
        crt = base64.b64decode(data.get("tls.crt") or "")
        key = base64.b64decode(data.get("tls.key") or "")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"undecodable data: {exc}") from None
    if not crt or not key:
        raise ValueError("tls.crt and tls.key are required")
    try:
        x509.load_pem_x509_certificates(crt)
        load_pem_private_key(key, None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM certificate and unencrypted key: {exc}") from None
    return crt.rstrip(b"\n") + b"\n" + key.rstrip(b"\n") + b"\n"


def tls_certs(
    ingresses: list[Obj], secrets: dict[str, Obj], problems: dict[str, list[Problem]]
) -> list[Cert]:
    """The certificates of the Ingresses' ``spec.tls``, oldest Ingress first (HAProxy picks the
    first matching one), problems added for missing or unusable Secrets."""
    out: list[Cert] = []
    for ing in sorted(ingresses, key=lambda i: (str(i["metadata"].get("creationTimestamp") or ""), _key(i))):
        ns, key = str(ing["metadata"].get("namespace") or "default"), _key(ing)
        for i, tls in enumerate((ing.get("spec") or {}).get("tls") or []):
            name = tls.get("secretName")
            hosts = tuple(str(h).lower() for h in tls.get("hosts") or [] if _HOST.match(str(h).lower()))
            if not name:
                continue
            secret = secrets.get(f"{ns}/{name}")
            if secret is None:
                problems.setdefault(key, []).append(
                    Problem(
                        "MissingSecret",
                        f'secret "{ns}/{name}" of spec.tls[{i}] not found: the default certificate is served',
                    )
                )
                continue
            try:
                pem = secret_pem(secret)
            except ValueError as exc:
                problems.setdefault(key, []).append(
                    Problem(
                        "InvalidSecret",
                        f'secret "{ns}/{name}" of spec.tls[{i}]: {exc}: the default certificate is served',
                    )
                )
                continue
            out.append(Cert(f"{ns}_{name}.pem", pem, hosts))
    return out


# -- the HAProxy configuration -----------------------------------------------------------------------


@dataclass
class Settings:
    state_dir: str
    bind_address: str = "*"
    http_port: int = 80
    https_port: int = 443
    maxconn: int = 4000  # HAProxy needs about two file descriptors per connection
    threads: int = 0  # 0: HAProxy's default (one per CPU); minik-ingress passes its own default
    slots_min: int = 4  # server slots per backend at least, so endpoint changes need no reload
    hard_stop_after: str = "60s"


def slots_for(count: int, minimum: int = 4) -> int:
    """Server slots of a backend with ``count`` endpoints: the next power of two, at least ``minimum``."""
    n = max(minimum, 1)
    while n < count:
        n *= 2
    return n


def assign(
    previous: list[Server | None] | None, servers: list[Server], minimum: int = 4
) -> list[Server | None]:
    """Servers placed in slots: those already in a slot keep it (their connections stay put), new
    ones take free slots; the slot count grows (a reload) only when they do not fit."""
    want = set(servers)
    prev = list(previous or [])
    size = slots_for(len(servers), minimum)
    slots: list[Server | None] = [s if s in want else None for s in prev]
    if len(slots) < size:
        slots += [None] * (size - len(slots))
    if len(slots) > size and not any(slots[size:]):
        slots = slots[:size]  # fewer endpoints: back to fewer slots once the tail is empty
    placed = {s for s in slots if s is not None}
    free = [i for i, s in enumerate(slots) if s is None]
    for server in servers:
        if server in placed:
            continue
        if not free:
            return assign(None, servers, minimum)
        slots[free.pop(0)] = server
    return slots


@dataclass
class Desired:
    """What the data path should be: the route table, each backend's server slots and the
    certificates.  :meth:`structure` is the configuration without the servers' addresses, so an
    endpoint change (same structure) is told apart from a change that needs a reload."""

    table: Table
    backends: dict[str, list[Server | None]]  # backend name -> its slots
    certs: list[Cert]

    def structure(self, s: Settings) -> str:
        return render(self, s, with_servers=False)


def _acl_host(host: str) -> str:
    if not host:
        return ""
    if host.startswith("*."):
        return "{ var(txn.host) -m reg ^[^.]+" + re.escape(host[1:]).replace("\\-", "-") + "$ }"
    return "{ var(txn.host) -m str " + host + " }"


def _conditions(r: Route) -> list[str]:
    """HAProxy conditions (ORed) for one route; each an AND of ACLs."""
    host = _acl_host(r.host)
    if r.path_type == "Exact":
        paths = ["{ path -m str " + r.path + " }"]
    else:
        prefix = prefix_of(r.path)
        paths = ["{ path -m str " + prefix + " }", "{ path -m beg " + prefix + "/ }"] if prefix else [""]
    return [" ".join(x for x in (host, p) if x) for p in paths]


NOT_FOUND_BACKEND = "be_default_404"


def server_line(index: int, server: Server | None) -> str:
    addr = f"{server.ip}:{server.port}" if server else "127.0.0.1:1"
    state = "" if server else " disabled"
    return (
        f"    server s{index} {addr} check inter 5s fall 2 rise 1 observe layer4 error-limit 1"
        f" on-error mark-down{state}"
    )


def render(d: Desired, s: Settings, with_servers: bool = True) -> str:
    """The whole haproxy.cfg."""
    lines = [
        "# generated by minik-ingress: edits are overwritten",
        "global",
        "    master-worker",
        f"    maxconn {s.maxconn}",
        f"    hard-stop-after {s.hard_stop_after}",
        f"    stats socket {s.state_dir}/admin.sock mode 600 level admin expose-fd listeners",
        "    ssl-default-bind-options ssl-min-ver TLSv1.2",
        *([f"    nbthread {s.threads}"] if s.threads else []),
        "",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 30s",
        "    timeout http-keep-alive 60s",
        "    timeout tunnel 1h",
        "    timeout client-fin 5s",
        "    option forwardfor",
        # a reload soft-stops the old workers; without this they close their idle keep-alive
        # connections at once, and a request a client sends on one at that moment is lost (the
        # client sees the connection closed without an answer).  With it an old worker answers the
        # next request on such a connection, with "Connection: close", and the client reconnects
        # to the new workers.  hard-stop-after bounds how long they linger.
        "    option idle-close-on-response",
        "    option redispatch 1",
        "    retries 3",
        "    retry-on conn-failure empty-response junk-response",
        "",
        "frontend ingress",
        f"    bind {s.bind_address}:{s.http_port}",
        f"    bind {s.bind_address}:{s.https_port} ssl crt {s.state_dir}/default.pem"
        f" crt-list {s.state_dir}/crt-list alpn http/1.1",
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
        "    http-request set-header X-Forwarded-Proto https if { ssl_fc }",
        "    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }",
        "    http-request set-header X-Forwarded-Host %[req.hdr(host)]",
        "    http-request set-header X-Forwarded-Port %[dst_port]",
        # a request already sent to a pod that closed without answering is sent again only when
        # its method is idempotent (RFC 9110 9.2.2); a failed connection (nothing sent) always is
        "    http-request disable-l7-retry if !{ method GET HEAD OPTIONS TRACE PUT DELETE }",
    ]
    for r in d.table.routes:
        conds = _conditions(r)
        if conds == [""]:
            lines.append(f"    use_backend {r.backend.name}")
        else:
            lines.append(f"    use_backend {r.backend.name} if {' || '.join(conds)}")
    default = d.table.default_backend.name if d.table.default_backend else NOT_FOUND_BACKEND
    lines += [f"    default_backend {default}", ""]
    lines += [
        f"backend {NOT_FOUND_BACKEND}",
        '    http-request return status 404 content-type text/plain string "404 page not found\\n"',
        "",
    ]
    for name in sorted(d.backends):
        lines += [f"backend {name}", "    balance roundrobin"]
        for i, server in enumerate(d.backends[name]):
            lines.append(server_line(i + 1, server) if with_servers else f"    server s{i + 1}")
        lines.append("")
    return "\n".join(lines)


def crt_list(d: Desired, s: Settings) -> str:
    out = []
    for c in d.certs:
        out.append(f"{s.state_dir}/certs/{c.name}" + ("".join(" " + h for h in c.hosts)))
    return "\n".join(out) + ("\n" if out else "")


def runtime_commands(d: Desired, running: dict[str, list[Server | None]]) -> list[str]:
    """Runtime API commands that take the servers from ``running`` to ``d.backends`` (the same
    slots: a change of slots is a reload)."""
    cmds: list[str] = []
    for name, slots in sorted(d.backends.items()):
        old = running.get(name) or []
        for i, server in enumerate(slots):
            if i < len(old) and old[i] == server:
                continue
            slot = f"{name}/s{i + 1}"
            if server is None:
                cmds.append(f"set server {slot} state maint")
            else:
                cmds.append(f"set server {slot} addr {server.ip} port {server.port}")
                cmds.append(f"set server {slot} state ready")
                cmds.append(f"set server {slot} health up")
    return cmds
