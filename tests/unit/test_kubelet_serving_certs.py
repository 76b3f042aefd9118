"""Kubelet serving certificates: the kubelet's ``kubernetes.io/kubelet-serving`` CSR
(kubelet.certrotation), csrapproving's rule for them (controllers.certificates: only the requesting
node's own name and addresses), the serving rotator's first request and the kubelet's transport that
is replaced after a client-certificate rotation (kubelet.main)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from apimachinery import errors
from apimachinery.pki import PKI, generate_certificate
from controllers import certificates as cc
from kubelet import certrotation as cr

NOW = dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC)
NODE = {
    "metadata": {"name": "n1"},
    "status": {
        "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}, {"type": "Hostname", "address": "n1"}]
    },
}


def serving_csr(
    sans: list[str],
    *,
    node: str = "n1",
    username: str | None = None,
    groups: tuple[str, ...] = ("system:nodes", "system:authenticated"),
    usages: list[str] | None = None,
) -> dict[str, Any]:
    key = cr.new_key()
    obj = cr.csr_object(node, cr.csr_pem(node, key, sans), serving=True)
    obj["metadata"] = {"name": "csr-1"}
    obj["spec"]["username"] = username if username is not None else f"system:node:{node}"
    obj["spec"]["groups"] = list(groups)
    if usages is not None:
        obj["spec"]["usages"] = usages
    return obj


# ---- the request -----------------------------------------------------------------------------------


def test_the_serving_csr_is_what_kubernetes_kubelet_asks_for() -> None:
    obj = serving_csr(["n1", "10.0.0.5", "n1"])
    assert obj["metadata"] == {"name": "csr-1"}
    spec = obj["spec"]
    assert spec["signerName"] == "kubernetes.io/kubelet-serving"
    assert spec["usages"] == ["digital signature", "key encipherment", "server auth"]
    req = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
    assert req.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    sans = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["n1"]  # duplicates dropped
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert cc.kubelet_serving_problem(req, spec["usages"]) is None
    client = cr.csr_object("n1", cr.csr_pem("n1", cr.new_key()))
    assert client["metadata"]["generateName"] == "node-csr-"
    assert client["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"


# ---- approval --------------------------------------------------------------------------------------


POLICY = cc.ServingPolicy(
    ip_prefixes=cc.parse_prefixes("10.0.0.0/24,10.96.0.0/12,10.244.0.0/16,127.0.0.0/8,fe80::/10"),
    service_cidrs=cc.parse_prefixes("10.96.0.0/12"),
    cluster_cidrs=cc.parse_prefixes("10.244.0.0/16"),
)


def _node(name: str, *ips: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": ip} for ip in ips]},
    }


def test_a_node_asking_for_its_own_name_and_address_is_approvable() -> None:
    csr = serving_csr(["n1", "10.0.0.5"])
    assert cc.serving_node(csr) == "n1"
    assert cc.serving_sans_problem(csr, NODE, POLICY, other_nodes=[NODE, _node("n2", "10.0.0.6")]) is None
    assert cc.serving_sans_problem(serving_csr(["n1"]), NODE) is None  # a DNS name only: no prefixes needed


def test_the_reviewers_case_stays_pending() -> None:
    """A node that wrote the API server's names and Service address into its own status."""
    node = {
        "metadata": {"name": "n1"},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "10.0.0.5"},
                {"type": "InternalIP", "address": "10.96.0.1"},
                {"type": "InternalDNS", "address": "kubernetes.default.svc"},
                {"type": "Hostname", "address": "kubernetes.default.svc.cluster.local"},
            ]
        },
    }
    for sans in (["kubernetes.default.svc", "10.96.0.1"], ["n1", "10.96.0.1"], ["n1", "kubernetes"]):
        assert cc.serving_sans_problem(serving_csr(sans), node, POLICY) is not None, sans
    csr = serving_csr(["kubernetes.default.svc", "10.96.0.1"])
    assert _approve(csr, {"n1": node}) == []


@pytest.mark.parametrize(
    ("sans", "problem"),
    [
        (["n1", "10.0.0.6"], "IP addresses ['10.0.0.6'] are not among the node's addresses"),
        (["n2"], "DNS names ['n2'] are not the node's name 'n1'"),
        (["n1", "kubernetes"], "DNS name 'kubernetes' names the API server"),
        (["n1", "kubernetes.default"], "DNS name 'kubernetes.default' names the API server"),
        (["n1", "api.svc"], "DNS name 'api.svc' names the API server"),
        (["n1", "x.ns.svc.corp.example"], "DNS name 'x.ns.svc.corp.example' names the API server"),
        (["n1", "localhost"], "DNS name 'localhost' names the API server"),
        (["n1", "127.0.0.1"], "IP address 127.0.0.1 is loopback"),
        (["n1", "fe80::1"], "IP address fe80::1 is loopback, link-local"),
        (["n1", "10.96.0.10"], "IP address 10.96.0.10 is in the service CIDR"),
        (["n1", "::ffff:10.96.0.1"], "IP address ::ffff:a60:1 is an IPv4-mapped IPv6 address"),
        (["n1", "10.244.1.7"], "IP address 10.244.1.7 is in the cluster CIDR"),
        (["n1", "10.0.0.7"], "IP address 10.0.0.7 is the API server's"),
        (["n1", "10.0.0.8"], "IP address 10.0.0.8 is an address of node(s) ['n2']"),
    ],
)
def test_each_rule_leaves_a_csr_pending(sans: list[str], problem: str) -> None:
    node = _node("n1", "10.0.0.5", "10.0.0.7", "10.0.0.8", "127.0.0.1", "fe80::1", "10.96.0.10", "10.244.1.7")
    csr = serving_csr(sans)
    assert cc.serving_node(csr) == "n1"
    got = cc.serving_sans_problem(
        csr, node, POLICY, other_nodes=[node, _node("n2", "10.0.0.8")], apiserver_ips=["10.0.0.7"]
    )
    assert (got or "").startswith(problem), got


def test_a_node_named_like_a_reserved_name_is_not_approved() -> None:
    for name in ("localhost", "kubernetes", "web.svc"):
        csr = serving_csr([name], node=name)
        assert cc.serving_node(csr) == name
        assert cc.serving_sans_problem(csr, _node(name)) is not None


def test_without_ip_prefixes_no_ip_address_is_approved() -> None:
    got = cc.serving_sans_problem(serving_csr(["n1", "10.0.0.5"]), NODE, cc.ServingPolicy())
    assert got == "IP address 10.0.0.5 is not in --kubelet-serving-ip-prefixes []"
    outside = cc.ServingPolicy(ip_prefixes=cc.parse_prefixes("192.0.2.0/24"))
    assert "not in --kubelet-serving-ip-prefixes" in str(
        cc.serving_sans_problem(serving_csr(["10.0.0.5"]), NODE, outside)
    )


@pytest.mark.parametrize(
    "csr",
    [
        serving_csr(["n1"], username="system:node:n2"),  # another node asks for n1's
        serving_csr(["n1"], username="alice", groups=("system:authenticated",)),
        serving_csr(["n1"], groups=("system:authenticated",)),  # not in system:nodes
        serving_csr(["n1"], usages=["digital signature", "client auth"]),
        serving_csr([]),  # no SAN at all
        {"spec": {"request": "bm90IGEgQ1NS", "signerName": "kubernetes.io/kubelet-serving"}},
    ],
    ids=["other-node", "user", "group", "usages", "no-san", "garbage"],
)
def test_only_a_nodes_own_serving_request_is_considered(csr: dict[str, Any]) -> None:
    assert cc.serving_node(csr) is None


class _Client:
    """A Node store and a recorder of /approval writes."""

    def __init__(self, nodes: dict[str, dict[str, Any]]) -> None:
        self.nodes = nodes
        self.endpoints: dict[str, Any] | None = None
        self.approved: list[dict[str, Any]] = []

    async def get(self, info: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        if info.kind == "Endpoints":
            assert (namespace, name) == ("default", "kubernetes")
            if self.endpoints is None:
                raise errors.NotFound('endpoints "kubernetes" not found')
            return self.endpoints
        if name not in self.nodes:
            raise errors.NotFound(f'nodes "{name}" not found')
        return self.nodes[name]

    async def create(self, *_: Any, **__: Any) -> dict[str, Any]:
        raise AssertionError("no SubjectAccessReview for a serving CSR")

    async def _call(self, build: Any, info: Any, obj: dict[str, Any], sub: str) -> dict[str, Any]:
        assert sub == "approval"
        self.approved.append(obj)
        return obj


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        self.events.append((event_type, reason, message))


def _approve(
    csr: dict[str, Any],
    nodes: dict[str, dict[str, Any]],
    extra: dict[str, Any] | None = None,
    recorder: _Recorder | None = None,
    apiserver_ip: str | None = None,
) -> list[dict[str, Any]]:
    from apimachinery.informer import SharedInformerFactory
    from controllers.base import ControllerContext, Options

    client = _Client(nodes)
    if apiserver_ip:
        client.endpoints = {"subsets": [{"addresses": [{"ip": apiserver_ip}]}]}
    factory = SharedInformerFactory(client)  # type: ignore[arg-type]
    rec = recorder or _Recorder()
    options = Options(extra=extra if extra is not None else {"kubelet_serving_ip_prefixes": "10.0.0.0/24"})
    ctx = ControllerContext(client, factory, lambda _n: rec, options, clock=NOW.timestamp)  # type: ignore[arg-type,return-value]
    c = cc.CSRApprovingController(ctx)
    c.csr_informer.store.add(csr)
    for node in nodes.values():
        c.node_informer.store.add(node)
    asyncio.run(c.reconcile("csr-1"))
    return client.approved


def test_csrapproving_approves_a_nodes_own_serving_csr_and_leaves_others_pending() -> None:
    approved = _approve(serving_csr(["n1", "10.0.0.5"]), {"n1": NODE})
    assert len(approved) == 1
    cond = approved[0]["status"]["conditions"][-1]
    assert (cond["type"], cond["reason"], cond["message"]) == ("Approved", "AutoApproved", cc.SERVING_MESSAGE)
    assert _approve(serving_csr(["n1", "10.0.0.9"]), {"n1": NODE}) == []  # foreign address
    assert _approve(serving_csr(["n1", "10.0.0.5"]), {}) == []  # no such node
    assert _approve(serving_csr(["n1"], username="system:node:n2"), {"n1": NODE}) == []
    rec = _Recorder()
    assert (
        _approve(serving_csr(["n1", "10.0.0.5"]), {"n1": NODE}, extra={}, recorder=rec) == []
    )  # no prefixes
    assert rec.events == [
        (
            "Warning",
            "NotAutoApproved",
            "left for an administrator: IP address 10.0.0.5 is not in --kubelet-serving-ip-prefixes []",
        )
    ]
    # another node listing the same address, or the API server's address
    n2 = _node("n2", "10.0.0.5")
    assert _approve(serving_csr(["n1", "10.0.0.5"]), {"n1": NODE, "n2": n2}) == []
    assert _approve(serving_csr(["n1", "10.0.0.5"]), {"n1": NODE}, apiserver_ip="10.0.0.5") == []
    assert len(_approve(serving_csr(["n1", "10.0.0.5"]), {"n1": NODE}, apiserver_ip="10.0.0.1")) == 1


def test_csrsigning_signs_a_serving_certificate_for_its_names(tmp_path: Path) -> None:
    pki = PKI(tmp_path)
    pki.ensure_ca()
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    csr = serving_csr(["n1", "10.0.0.5"])
    req = cc.parse_request(csr)
    pem = cc.sign_request(req, csr["spec"]["usages"], ca_cert, ca_key, dt.timedelta(hours=1), NOW)
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(ca_cert)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]


# ---- the serving rotator ---------------------------------------------------------------------------


class _SigningCSRs:
    """Signs every CSR at once with a throwaway CA; records the requests."""

    def __init__(self) -> None:
        self.ca, self.key = generate_certificate("test-ca", days=1, ca=True, backdate=dt.timedelta(hours=1))
        self.posted: list[dict[str, Any]] = []

    async def create(self, _info: Any, obj: dict[str, Any]) -> dict[str, Any]:
        self.posted.append(obj)
        req = cc.parse_request(obj)
        pem = cc.sign_request(
            req, obj["spec"]["usages"], self.ca, self.key, dt.timedelta(hours=1), dt.datetime.now(dt.UTC)
        )
        self.obj = {"metadata": {"name": "csr-1"}, "status": {"certificate": base64.b64encode(pem).decode()}}
        return {"metadata": {"name": "csr-1"}}

    async def get(self, _info: Any, _name: str) -> dict[str, Any]:
        return self.obj


def test_a_serving_rotator_without_a_certificate_asks_for_one_and_loads_it(tmp_path: Path) -> None:
    path = tmp_path / "kubelet-server-current.pem"
    client = _SigningCSRs()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    rotated: list[int] = []

    async def on_rotated() -> None:
        rotated.append(1)

    rot = cr.Rotator(
        client,  # type: ignore[arg-type]
        "n1",
        path,
        ctx,
        serving=True,
        sans=lambda: ["n1", "10.0.0.5"],
        on_rotated=on_rotated,
    )

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(rot.run(stop))
        for _ in range(200):
            if rot.rotations:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await task

    asyncio.run(run())
    assert rot.rotations == 1 and rotated == [1]
    assert [o["spec"]["signerName"] for o in client.posted] == ["kubernetes.io/kubelet-serving"]
    cert = cr.load_certificate(path)
    assert cert.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(path), str(path))  # raises if unusable


def _rotate_until(rot: cr.Rotator, count: int, before: Any = None) -> None:
    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(rot.run(stop))
        for i in range(500):
            if rot.rotations >= count:
                break
            if before is not None and i == 5:
                before()
            await asyncio.sleep(0.02)
        stop.set()
        await task

    asyncio.run(run())


def _names(path: Path) -> list[str]:
    ext = cr.load_certificate(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName) + [str(i) for i in ext.get_values_for_type(x509.IPAddress)]


def test_a_serving_certificate_whose_names_are_stale_is_renewed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "kubelet-server-current.pem"
    client = _SigningCSRs()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    first = cr.Rotator(client, "n1", path, ctx, serving=True, sans=lambda: ["n1", "10.0.0.5"])  # type: ignore[arg-type]
    _rotate_until(first, 1)
    cert = cr.load_certificate(path)
    assert cr.template_problem(cert, "n1", ["n1", "10.0.0.5"]) is None
    assert cr.template_problem(cert, "n1", ["10.0.0.5", "n1", "n1"]) is None  # order, duplicates
    assert cr.template_problem(cert, "n1", ["n1", "10.0.0.6"]) == (
        "it names ['n1', '10.0.0.5'], the kubelet serves as ['n1', '10.0.0.6']"
    )
    assert (
        cr.template_problem(cert, "n2", ["n1", "10.0.0.5"])
        == "its subject is CN=system:node:n1,O=system:nodes"
    )
    # the kubelet restarted with another node IP: the valid, far-from-due certificate is renewed now
    again = cr.Rotator(client, "n1", path, ctx, fraction=0.9, serving=True, sans=lambda: ["n1", "10.0.0.6"])  # type: ignore[arg-type]
    assert again.next_deadline(cert) > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    _rotate_until(again, 1)
    assert again.rotations == 1
    assert _names(path) == ["n1", "10.0.0.6"]


def test_a_serving_name_change_while_waiting_renews_the_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cr, "TEMPLATE_CHECK", 0.02)
    path = tmp_path / "kubelet-server-current.pem"
    client = _SigningCSRs()
    names = ["n1", "10.0.0.5"]
    rot = cr.Rotator(
        client,  # type: ignore[arg-type]
        "n1",
        path,
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),
        fraction=0.9,
        serving=True,
        sans=lambda: list(names),
    )
    _rotate_until(rot, 1)  # the first certificate (none in the file)
    assert _names(path) == ["n1", "10.0.0.5"]
    _rotate_until(rot, 2, before=lambda: names.__setitem__(1, "10.0.0.7"))
    assert rot.rotations == 2
    assert _names(path) == ["n1", "10.0.0.7"]
    assert len(client.posted) == 2


def test_the_kubelet_transport_is_replaced_after_a_rotation() -> None:
    from kubelet.main import RenewableTransport

    async def run() -> None:
        t = RenewableTransport(ssl.create_default_context())
        first = t.current
        await t.reconnect()
        assert t.current is not first and t.generation == 1
        await t.aclose()

    asyncio.run(run())


def test_after_a_client_rotation_the_span_exporter_is_set_up_again() -> None:
    from apimachinery import tracing
    from apimachinery.kubeconfig import ClientConfig
    from kubelet.main import RenewableTransport, _after_client_rotation

    config = ClientConfig(server="http://127.0.0.1:1")
    assert tracing.setup("kubelet", config, enabled=True)
    try:
        before = tracing._provider

        async def run() -> RenewableTransport:
            t = RenewableTransport(ssl.create_default_context())
            await _after_client_rotation(t, config)
            await t.aclose()
            return t

        t = asyncio.run(run())
        assert t.generation == 1
        assert tracing.active() and tracing._provider is not None and tracing._provider is not before
    finally:
        tracing.shutdown()
