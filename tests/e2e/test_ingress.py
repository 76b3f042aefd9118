"""The ingress controller end to end, driven by the real kubectl (both versions): a local cluster
(tests/e2e/cluster.py: one kubelet on Docker, the controllers, the scheduler, the proxy) plus
minik-ingress (HAProxy) on free loopback ports, and echo backends (testkit/echoserver.py, in the
locally built image ``minik-test/echo:1``).

Each test works in a namespace and on host names of its own, so the two kubectl runs share the
cluster and the controller without seeing each other's routes.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from apimachinery import pki
from ingress.haproxy import parse_servers_state
from testkit import prereq
from testkit.echoserver import ensure_echo_image, read_ws_frame, ws_frame
from testkit.host import free_port
from testkit.processes import Process, python_module
from testkit.wait import unique
from tests.e2e.cluster import LocalCluster, wait_for
from tests.e2e.conftest import KUBECTL_VERSIONS, Kubectl, kubectl_of


@pytest.fixture(scope="module", params=KUBECTL_VERSIONS)
def kubectl_bin(request: pytest.FixtureRequest) -> str:
    return kubectl_of(request.param)


@dataclass
class Ingress:
    cluster: LocalCluster
    proc: Process
    http_port: int
    https_port: int
    state: Path

    def log(self) -> str:
        return self.proc.log(4000)


@pytest.fixture(scope="module")
def ing() -> Iterator[Ingress]:
    prereq.require_node_host()
    prereq.require(
        bool(shutil.which("haproxy") or os.access("/usr/sbin/haproxy", os.X_OK)),
        "haproxy",
        "apt-get install haproxy (scripts/install.sh)",
    )
    ensure_echo_image()
    cluster = LocalCluster(nodes=1)
    proc: Process | None = None
    state = Path(tempfile.mkdtemp(prefix="minik-ingress-e2e-"))
    http_port, https_port = free_port(), free_port()
    try:
        cluster.start()
        proc = python_module(
            "ingress",
            "ingress.main",
            cluster.apiserver,
            *("--node-name", cluster.nodes[0].name, "--bind-address", "127.0.0.1"),
            *("--http-port", str(http_port), "--https-port", str(https_port), "--state-dir", str(state)),
            "--log-level",
            "debug",
        )
        proc.log_path = str(cluster.workdir / "ingress.log")
        proc.start()
        ingress = Ingress(cluster, proc, http_port, https_port, state)
        wait_for(lambda: _connects(http_port), 60, f"minik-ingress listening\n{proc.log()}")
        yield ingress
    finally:
        if proc is not None:
            proc.stop()
            # HAProxy is the controller's child and goes with it
            wait_for(lambda: not _connects(http_port), 20, "haproxy gone")
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def kubectl(kubectl_bin: str, ing: Ingress) -> Iterator[Kubectl]:
    workdir = Path(tempfile.mkdtemp(prefix="minik-kubectl-"))
    try:
        yield Kubectl(kubectl_bin, ing.cluster.apiserver, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture()
def ns(kubectl: Kubectl) -> Iterator[str]:
    name = unique("ing")
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# -- objects -------------------------------------------------------------------------------------------


def backend(name: str, ns: str, replicas: int = 1) -> list[dict[str, Any]]:
    """An echo Deployment ``name`` and its Service: port 80 named ``http`` and port 8080 unnamed-ish
    (``alt``), both to the container's 8080."""
    labels = {"app": name}
    container = {
        "name": "echo",
        "image": "minik-test/echo:1",
        "imagePullPolicy": "Never",
        "env": [{"name": "ECHO_NAME", "value": name}],
        "ports": [{"name": "web", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [container], "terminationGracePeriodSeconds": 1},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "selector": labels,
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080},
                    {"name": "alt", "port": 8080, "targetPort": "web"},
                ],
            },
        },
    ]


def svc_backend(name: str, port: int | str) -> dict[str, Any]:
    return {"service": {"name": name, "port": {"number": port} if isinstance(port, int) else {"name": port}}}


def path(p: str, path_type: str, name: str, port: int | str) -> dict[str, Any]:
    return {"path": p, "pathType": path_type, "backend": svc_backend(name, port)}


def ingress(name: str, ns: str, rules: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"rules": rules, **spec},
    }


def apply(kubectl: Kubectl, objs: list[dict[str, Any]]) -> None:
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs), timeout=60)


def self_signed(host: str) -> tuple[bytes, bytes]:
    """A certificate for ``host`` that is its own CA (a client can trust it with ``cafile``) and its
    key, as PEM."""
    return pki.pem_pair(*pki.generate_certificate(host, [host], days=1, ca=True))


# -- clients -------------------------------------------------------------------------------------------


def get(port: int, host: str, target: str, timeout: float = 5) -> tuple[int, dict[str, Any] | str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", target, headers={"Host": host})
        r = conn.getresponse()
        body = r.read().decode()
        try:
            return r.status, json.loads(body)
        except ValueError:
            return r.status, body
    finally:
        conn.close()


def served_by(port: int, host: str, target: str) -> str:
    status, body = get(port, host, target)
    assert status == 200, (host, target, status, body)
    assert isinstance(body, dict)
    return str(body["name"])


def tls_get(port: int, host: str, target: str, cafile: str | None) -> tuple[bytes, dict[str, Any]]:
    """The server certificate (DER) and the JSON answer of a GET over TLS with SNI ``host``."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True) or b""
            tls.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return der, json.loads(body)


def wait_route(ing: Ingress, host: str, target: str, name: str) -> None:
    wait_for(
        lambda: get(ing.http_port, host, target)[0] == 200 and served_by(ing.http_port, host, target) == name,
        90,
        f"http://{host}{target} served by {name}\n{ing.log()}",
    )


# -- tests ---------------------------------------------------------------------------------------------


def test_default_ingress_class(kubectl: Kubectl, ing: Ingress) -> None:
    cls = json.loads(kubectl("get", "ingressclass", "minik", "-o", "json"))
    assert cls["spec"]["controller"] == "minik.io/ingress"
    assert cls["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"


def test_hosts_paths_http_and_https_with_sni(kubectl: Kubectl, ing: Ingress, ns: str) -> None:
    a, b = f"a.{ns}.example", f"b.{ns}.example"
    crt, key = self_signed(a)
    workdir = Path(kubectl.workdir)
    (workdir / f"{ns}.crt").write_bytes(crt)
    (workdir / f"{ns}.key").write_bytes(key)
    kubectl(
        *("create", "secret", "tls", "tls-a", "-n", ns),
        *("--cert", str(workdir / f"{ns}.crt"), "--key", str(workdir / f"{ns}.key")),
    )
    apply(kubectl, backend("alpha", ns) + backend("beta", ns))
    rules = [
        {
            "host": a,
            "http": {
                "paths": [
                    path("/", "Prefix", "alpha", "http"),
                    path("/api", "Prefix", "beta", 8080),
                    path("/api/exact", "Exact", "alpha", 80),
                ]
            },
        },
        {
            "host": b,
            "http": {"paths": [path("/", "Prefix", "beta", "alt"), path("/one", "Exact", "alpha", 80)]},
        },
        {"host": f"*.w.{ns}.example", "http": {"paths": [path("/", "ImplementationSpecific", "beta", 80)]}},
    ]
    apply(kubectl, [ingress("web", ns, rules, tls=[{"hosts": [a], "secretName": "tls-a"}])])
    wait_route(ing, a, "/", "alpha")
    wait_route(ing, b, "/", "beta")
    port = ing.http_port
    assert served_by(port, a, "/x") == "alpha"
    assert served_by(port, a, "/api") == "beta"
    assert served_by(port, a, "/api/v1") == "beta"
    assert served_by(port, a, "/apix") == "alpha"  # element-wise: /api does not match /apix
    assert served_by(port, a, "/api/exact") == "alpha"  # Exact beats the Prefix /api
    assert served_by(port, a, "/api/exact/more") == "beta"
    assert served_by(port, b, "/one") == "alpha"
    assert served_by(port, b, "/one/two") == "beta"
    assert served_by(port, f"x.w.{ns}.example", "/") == "beta"
    assert get(port, f"x.y.w.{ns}.example", "/")[0] == 404  # a wildcard covers one label
    assert get(port, f"other.{ns}.example", "/")[0] == 404

    # the headers the backend sees
    status, body = get(port, a + f":{port}", "/hdr")
    assert status == 200 and isinstance(body, dict)
    headers = body["headers"]
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == f"{a}:{port}"
    assert headers["x-forwarded-port"] == str(port)
    assert body["path"] == "/hdr"

    # HTTPS: the Secret's certificate for its host (verified against it), the default one otherwise
    cafile = str(workdir / f"{ns}.crt")
    der, answer = tls_get(ing.https_port, a, "/api/tls", cafile)
    assert der == ssl.PEM_cert_to_DER_cert(crt.decode())
    assert answer["name"] == "beta" and answer["headers"]["x-forwarded-proto"] == "https"
    assert answer["headers"]["x-forwarded-port"] == str(ing.https_port)
    der, answer = tls_get(ing.https_port, b, "/", None)
    assert der != ssl.PEM_cert_to_DER_cert(crt.decode())
    from cryptography import x509

    assert "minik ingress default certificate" in x509.load_der_x509_certificate(der).subject.rfc4514_string()
    assert answer["name"] == "beta"
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_get(ing.https_port, b, "/", cafile)

    # status: the node's address, as kubectl shows it
    node_ip = ing.cluster.nodes[0].ip
    wait_for(
        lambda: (
            kubectl("get", "ingress", "web", "-n", ns, "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
            == node_ip
        ),
        30,
        "status.loadBalancer of the Ingress",
    )
    row = kubectl("get", "ingress", "web", "-n", ns).splitlines()[1].split()
    assert row[:2] == ["web", "minik"] and a in row[2] and node_ip in row


def test_websocket_echo(kubectl: Kubectl, ing: Ingress, ns: str) -> None:
    host = f"ws.{ns}.example"
    apply(kubectl, backend("wsecho", ns))
    apply(
        kubectl, [ingress("ws", ns, [{"host": host, "http": {"paths": [path("/", "Prefix", "wsecho", 80)]}}])]
    )
    wait_route(ing, host, "/", "wsecho")
    with socket.create_connection(("127.0.0.1", ing.http_port), timeout=10) as s:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(
            (
                f"GET /chat HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"x-echo-name: wsecho" in head.lower()
        for i, size in enumerate((5, 300, 70000)):
            payload = (f"m{i}-" * size).encode()[:size]
            s.sendall(ws_frame(payload, 0x2))
            opcode, echoed = read_ws_frame(s)
            assert (opcode, echoed) == (0x2, payload)
        s.sendall(ws_frame(b"bye", 0x1))
        assert read_ws_frame(s) == (0x1, b"bye")
        s.sendall(ws_frame(b"", 0x8))
        assert read_ws_frame(s)[0] == 0x8


def test_backend_killed_mid_load_loses_no_request(kubectl: Kubectl, ing: Ingress, ns: str) -> None:
    host = f"kill.{ns}.example"
    apply(kubectl, backend("gamma", ns, replicas=2))
    apply(
        kubectl,
        [ingress("kill", ns, [{"host": host, "http": {"paths": [path("/", "Prefix", "gamma", 80)]}}])],
    )
    pods = ing.cluster.wait_running(ns, "app=gamma", 2)
    wait_route(ing, host, "/", "gamma")
    ips = {p["status"]["podIP"] for p in pods}
    # both endpoints behind the route before the load starts
    wait_for(lambda: _servers_up(ing, ns, "gamma") >= 2, 30, f"two servers of gamma\n{ing.log()}")

    results: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ing.http_port, timeout=10)
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn.request("GET", "/load", headers={"Host": host})
                r = conn.getresponse()
                r.read()
                results.append(r.status)
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                results.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", ing.http_port, timeout=10)
        conn.close()

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(results) > 200, 30, "requests under way")
        victim = pods[0]["metadata"]["name"]
        ing.cluster.container(ns, victim, "echo").kill()
        before = len(results)
        wait_for(lambda: len(results) > before + 500, 60, "requests after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    failures = [r for r in results if r != 200]
    assert len(results) > 700
    assert failures == [], f"{len(failures)} of {len(results)} requests failed: {failures[:5]}\n{ing.log()}"
    assert len(ips) == 2


def _servers_up(ing: Ingress, ns: str, svc: str) -> int:
    """Servers of the Service's backend HAProxy has in service (the runtime API's view), empty slots
    (at 127.0.0.1) left out."""
    out = subprocess_run_socket(ing.state / "admin.sock", "show servers state")
    be = f"be_{ns}_{svc}_80"
    return sum(
        1 for s in parse_servers_state(out) if s.backend == be and s.address != "127.0.0.1" and s.in_service
    )


def subprocess_run_socket(path: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(command.encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode()


def test_bad_ingress_gets_events_and_leaves_other_routes_alone(
    kubectl: Kubectl, ing: Ingress, ns: str
) -> None:
    good, bad = f"good.{ns}.example", f"bad.{ns}.example"
    apply(kubectl, backend("delta", ns))
    apply(
        kubectl,
        [ingress("good", ns, [{"host": good, "http": {"paths": [path("/", "Prefix", "delta", 80)]}}])],
    )
    wait_route(ing, good, "/", "delta")
    broken = ingress(
        "bad",
        ns,
        [
            {
                "host": bad,
                "http": {"paths": [path("/", "Prefix", "nope", 80), path("/d", "Prefix", "delta", 99)]},
            },
        ],
        tls=[{"hosts": [bad], "secretName": "missing-tls"}],
    )
    apply(kubectl, [broken])

    def reasons() -> set[str]:
        out = kubectl(
            *("get", "events", "-n", ns, "--field-selector", "involvedObject.name=bad"),
            *("-o", "jsonpath={range .items[*]}{.reason}:{.message}{'\\n'}{end}"),
        )
        return {line for line in out.splitlines() if line}

    events = wait_for(
        lambda: len(reasons()) >= 3 and reasons(), 60, f"events on the bad Ingress\n{ing.log()}"
    )
    assert any(e.startswith("MissingBackend:") and f'"{ns}/nope" not found' in e for e in events), events
    assert any(e.startswith("MissingBackend:") and "has no port 99" in e for e in events), events
    assert any(e.startswith("MissingSecret:") and "missing-tls" in e for e in events), events
    assert "Warning" in kubectl("describe", "ingress", "bad", "-n", ns)
    assert get(ing.http_port, bad, "/")[0] == 503
    assert get(ing.http_port, bad, "/d")[0] == 503
    assert served_by(ing.http_port, good, "/") == "delta"
    assert ing.proc.running(), ing.log()
    # fixing it routes it
    apply(kubectl, backend("nope", ns))
    wait_route(ing, bad, "/", "nope")
    assert served_by(ing.http_port, good, "/") == "delta"
