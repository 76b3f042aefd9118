"""The ingress controller's pure part: path and host matching, Kubernetes' precedence, endpoints,
TLS certificates, the HAProxy configuration and the runtime API commands."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from apimachinery import pki
from ingress import model
from ingress.controller import node_addresses
from ingress.haproxy import ServerState, parse_servers_state
from ingress.model import Backend, Server


def ing(
    name: str,
    rules: list[dict[str, Any]],
    ns: str = "default",
    created: str = "2026-01-01T00:00:00Z",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
        "spec": {"rules": rules, **spec},
    }


def p(path: str, path_type: str, svc: str, port: int | str = 80) -> dict[str, Any]:
    port_ref = {"number": port} if isinstance(port, int) else {"name": port}
    return {"path": path, "pathType": path_type, "backend": {"service": {"name": svc, "port": port_ref}}}


def rule(host: str, *paths: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"http": {"paths": list(paths)}}
    if host:
        out["host"] = host
    return out


@pytest.mark.parametrize(
    ("path_type", "pattern", "path", "matches"),
    [
        ("Prefix", "/", "/anything", True),
        ("Prefix", "/foo", "/foo", True),
        ("Prefix", "/foo", "/foo/", True),
        ("Prefix", "/foo", "/foo/bar", True),
        ("Prefix", "/foo", "/foobar", False),
        ("Prefix", "/foo/", "/foo", True),  # trailing slash ignored
        ("Prefix", "/foo/", "/foo/bar", True),
        ("Prefix", "/aaa/bb", "/aaa/bbb", False),
        ("Prefix", "/aaa/bbb", "/aaa/bbb/", True),
        ("Exact", "/foo", "/foo", True),
        ("Exact", "/foo", "/foo/", False),
        ("Exact", "/foo/", "/foo", False),
    ],
)
def test_path_matching_is_element_wise(path_type: str, pattern: str, path: str, matches: bool) -> None:
    # the examples table of the Ingress documentation
    assert model.path_matches(path_type, pattern, path) is matches


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("foo.bar.com", "foo.bar.com", True),
        ("foo.bar.com", "FOO.bar.com", True),
        ("foo.bar.com", "baz.bar.com", False),
        ("*.foo.com", "bar.foo.com", True),
        ("*.foo.com", "baz.bar.foo.com", False),  # one label only
        ("*.foo.com", "foo.com", False),
        ("*.foo.com", ".foo.com", False),
        ("", "whatever.example", True),
    ],
)
def test_host_matching(pattern: str, host: str, matches: bool) -> None:
    assert model.host_matches(pattern, host) is matches


def test_precedence_longest_path_then_exact_then_host_kind_then_oldest() -> None:
    table = model.route_table(
        [
            ing(
                "a",
                [
                    rule(
                        "a.example",
                        p("/", "Prefix", "root"),
                        p("/api", "Prefix", "api"),
                        p("/api", "Exact", "exact"),
                    ),
                    rule("*.example", p("/", "Prefix", "wild")),
                    rule("", p("/", "Prefix", "any"), p("/only-any", "Prefix", "onlyany")),
                ],
                defaultBackend={"service": {"name": "dflt", "port": {"number": 80}}},
            ),
            # a newer Ingress with the same host and path loses to the older one
            ing("b", [rule("a.example", p("/api", "Prefix", "newer"))], created="2026-02-01T00:00:00Z"),
            ing(
                "c",
                [rule("a.example", p("/api/v2", "ImplementationSpecific", "v2"))],
                created="2026-02-01T00:00:00Z",
            ),
        ]
    )

    def svc(host: str, path: str) -> str | None:
        b = table.match(host, path)
        return b.service if b else None

    assert svc("a.example", "/api") == "exact"
    assert svc("a.example", "/api/") == "api"
    assert svc("a.example", "/api/v1") == "api"
    assert svc("a.example", "/api/v2/x") == "v2"  # longest prefix, ImplementationSpecific as Prefix
    assert svc("a.example", "/apis") == "root"
    assert svc("b.example", "/api") == "wild"  # the exact host's rules do not apply
    assert svc("x.y.example", "/") == "any"  # the wildcard covers one label
    assert svc("a.example", "/only-any/x") == "root"  # the host's own "/" comes before hostless rules
    assert svc("other.test", "/only-any") == "onlyany"
    assert svc("other.test", "/z") == "any"
    assert table.default_backend == Backend("default", "dflt", "80")
    assert [r.backend.service for r in table.routes if r.host == "a.example"] == [
        "v2",
        "exact",
        "api",
        "newer",
        "root",
    ]


def test_no_match_goes_to_the_oldest_default_backend() -> None:
    dflt = {"service": {"name": "old", "port": {"name": "http"}}}
    newer = {"service": {"name": "new", "port": {"number": 8080}}}
    table = model.route_table(
        [
            ing("n", [], created="2026-03-01T00:00:00Z", defaultBackend=newer),
            ing(
                "o",
                [rule("x.example", p("/x", "Exact", "x"))],
                created="2026-01-01T00:00:00Z",
                defaultBackend=dflt,
            ),
        ]
    )
    assert table.match("x.example", "/y") == Backend("default", "old", "http")
    assert (
        model.route_table([ing("e", [rule("x.example", p("/", "Prefix", "x"))])]).match("y.example", "/")
        is None
    )


def test_bad_entries_are_problems_not_routes() -> None:
    table = model.route_table(
        [
            ing(
                "bad",
                [
                    rule("ok.example", p("/ok", "Prefix", "s"), p("/has space", "Prefix", "s")),
                    rule(
                        "ok.example",
                        {
                            "path": "/r",
                            "pathType": "Prefix",
                            "backend": {"resource": {"kind": "X", "name": "y"}},
                        },
                    ),
                    rule("UPPER_bad!", p("/", "Prefix", "s")),
                ],
            )
        ]
    )
    assert [(r.host, r.path) for r in table.routes] == [("ok.example", "/ok")]
    assert sorted(x.reason for x in table.problems["default/bad"]) == [
        "InvalidHost",
        "UnsupportedBackend",
        "UnsupportedPath",
    ]


def test_classes() -> None:
    ours = {
        "metadata": {"name": "minik", "annotations": {model.DEFAULT_CLASS_ANNOTATION: "true"}},
        "spec": {"controller": model.CONTROLLER},
    }
    other = {"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}
    names, default = model.our_classes([ours, other])
    assert names == {"minik"} and default is True
    assert model.is_ours({"spec": {"ingressClassName": "minik"}}, names, default)
    assert not model.is_ours({"spec": {"ingressClassName": "nginx"}}, names, default)
    assert model.is_ours({"spec": {}}, names, default)
    assert not model.is_ours({"spec": {}}, names, False)
    assert model.is_ours(
        {"metadata": {"annotations": {"kubernetes.io/ingress.class": "minik"}}, "spec": {}}, names, False
    )
    cls = model.default_ingress_class()
    assert cls["spec"]["controller"] == "minik.io/ingress" and model.is_default_class(cls)


def test_endpoints_of_a_service_port() -> None:
    svc = {"spec": {"ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 9000}]}}
    slices = [
        {
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "admin", "port": 9090}],
            "endpoints": [
                {"addresses": ["10.0.0.2"], "conditions": {"ready": True}},
                {"addresses": ["10.0.0.1"]},  # ready unset counts as ready
                {"addresses": ["10.0.0.3"], "conditions": {"ready": False, "terminating": True}},
            ],
        }
    ]
    assert model.service_port(svc, "80") == {"name": "http", "port": 80}
    assert model.service_port(svc, "admin") == {"name": "admin", "port": 9000}
    assert model.service_port(svc, "81") is None
    services = {"ns/web": svc, "ns/ext": {"spec": {"type": "ExternalName", "externalName": "x"}}}
    servers, problem = model.resolve_backend(Backend("ns", "web", "80"), services, {"ns/web": slices})
    assert servers == [Server("10.0.0.1", 8080), Server("10.0.0.2", 8080)] and problem is None
    servers, _ = model.resolve_backend(Backend("ns", "web", "admin"), services, {"ns/web": slices})
    assert servers == [Server("10.0.0.1", 9090), Server("10.0.0.2", 9090)]
    assert model.resolve_backend(Backend("ns", "nope", "80"), services, {}) == (
        [],
        'service "ns/nope" not found',
    )
    assert "no port 81" in str(model.resolve_backend(Backend("ns", "web", "81"), services, {})[1])
    assert "ExternalName" in str(model.resolve_backend(Backend("ns", "ext", "80"), services, {})[1])


def test_slots_keep_servers_in_place() -> None:
    a, b, c, d, e = (Server(f"10.0.0.{i}", 80) for i in range(1, 6))
    first = model.assign(None, [a, b])
    assert first == [a, b, None, None]
    assert model.assign(first, [b, c]) == [c, b, None, None]  # b stays in slot 2, c takes a free one
    grown = model.assign([a, b, c, d], [a, b, c, d, e])
    assert len(grown) == 8 and set(grown) - {None} == {a, b, c, d, e}
    assert model.assign(grown, [a]) == [a, None, None, None]


def test_runtime_commands_change_only_what_moved() -> None:
    a, b, c = Server("10.0.0.1", 80), Server("10.0.0.2", 80), Server("10.0.0.3", 8080)
    d = model.Desired(model.Table(), {"be_x": [a, None, c, None]}, [])
    cmds = model.runtime_commands(d, {"be_x": [a, b, None, None]})
    assert cmds == [
        "set server be_x/s2 state maint",
        "set server be_x/s3 addr 10.0.0.3 port 8080",
        "set server be_x/s3 state ready",
        "set server be_x/s3 health up",
    ]
    assert model.runtime_commands(d, {"be_x": [a, None, c, None]}) == []


def test_render_orders_rules_and_keeps_addresses_out_of_the_structure() -> None:
    table = model.route_table(
        [
            ing(
                "a",
                [
                    rule(
                        "a.example",
                        p("/", "Prefix", "s1"),
                        p("/api/", "Prefix", "s2", "http"),
                        p("/x", "Exact", "s1"),
                    ),
                    rule("*.w.example", p("/", "Prefix", "s1")),
                ],
            )
        ]
    )
    b1, b2 = Backend("default", "s1", "80").name, Backend("default", "s2", "http").name
    s = model.Settings(state_dir="/st", http_port=8080, https_port=8443)
    d = model.Desired(table, {b1: [Server("10.1.0.1", 80), None, None, None], b2: [None] * 4}, [])
    cfg = model.render(d, s)
    uses = [line.strip() for line in cfg.splitlines() if line.strip().startswith("use_backend")]
    assert uses == [
        f"use_backend {b2} if {{ var(txn.host) -m str a.example }} {{ path -m str /api }} || "
        f"{{ var(txn.host) -m str a.example }} {{ path -m beg /api/ }}",
        f"use_backend {b1} if {{ var(txn.host) -m str a.example }} {{ path -m str /x }}",
        f"use_backend {b1} if {{ var(txn.host) -m str a.example }}",
        f"use_backend {b1} if {{ var(txn.host) -m reg ^[^.]+\\.w\\.example$ }}",
    ]
    assert (
        "    bind *:8080" in cfg
        and "    bind *:8443 ssl crt /st/default.pem crt-list /st/crt-list alpn http/1.1" in cfg
    )
    assert f"    default_backend {model.NOT_FOUND_BACKEND}" in cfg
    assert "server s1 10.1.0.1:80 check" in cfg and "server s2 127.0.0.1:1 check" in cfg
    assert cfg.count(" disabled") == 7
    for header in ("X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port"):
        assert f"http-request set-header {header}" in cfg
    assert "option forwardfor" in cfg and "option redispatch 1" in cfg and "retry-on conn-failure" in cfg
    # a reload keeps the old workers' idle keep-alive connections open until their next request
    assert "    option idle-close-on-response" in cfg.split("frontend ingress")[0]
    # a request sent to a pod is sent again only when its method is idempotent
    assert "    http-request disable-l7-retry if !{ method GET HEAD OPTIONS TRACE PUT DELETE }" in cfg
    moved = model.Desired(table, {b1: [Server("10.1.0.9", 80), None, None, None], b2: [None] * 4}, [])
    assert moved.structure(s) == d.structure(s) and model.render(moved, s) != cfg


def _tls_secret(host: str) -> dict[str, Any]:
    crt, pem_key = pki.pem_pair(*pki.generate_certificate(host, days=1))
    return {
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(pem_key).decode()},
    }


def test_tls_certificates_and_their_problems() -> None:
    good = _tls_secret("a.example")
    broken = {
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.b64encode(b"junk").decode(), "tls.key": ""},
    }
    ingresses = [
        ing(
            "t",
            [],
            tls=[
                {"hosts": ["a.example", "*.b.example"], "secretName": "good"},
                {"hosts": ["c.example"], "secretName": "gone"},
            ],
        ),
        ing("u", [], tls=[{"secretName": "broken"}]),
    ]
    problems: dict[str, list[model.Problem]] = {}
    certs = model.tls_certs(ingresses, {"default/good": good, "default/broken": broken}, problems)
    assert [(c.name, c.hosts) for c in certs] == [("default_good.pem", ("a.example", "*.b.example"))]
    assert b"BEGIN CERTIFICATE" in certs[0].pem and b"PRIVATE KEY" in certs[0].pem
    assert [x.reason for x in problems["default/t"]] == ["MissingSecret"]
    assert [x.reason for x in problems["default/u"]] == ["InvalidSecret"]
    d = model.Desired(model.Table(), {}, certs)
    assert (
        model.crt_list(d, model.Settings(state_dir="/st"))
        == "/st/certs/default_good.pem a.example *.b.example\n"
    )


def test_status_addresses_from_nodes() -> None:
    nodes = [
        {
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": "10.0.0.2"},
                    {"type": "Hostname", "address": "n2"},
                ]
            }
        },
        {"status": {"addresses": [{"type": "ExternalIP", "address": "192.0.2.1"}]}},
        {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}},
    ]
    assert node_addresses(nodes) == ["10.0.0.1", "10.0.0.2", "192.0.2.1"]


# HAProxy 2.6's answer to ``show servers state`` (be_ns_web_80: s1 set to maint at run time, s2 an
# empty slot ``disabled`` in the configuration, s3 a slot given an address and enabled at run time)
SERVERS_STATE = (
    "1\n"
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight"
    " srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state"
    " srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl"
    " srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"
    "2 be_ns_web_80 1 s1 10.0.0.5 0 1 1 1 0 1 0 0 0 0 0 0 - 8080 - 0 0 - - 0\n"
    "2 be_ns_web_80 2 s2 127.0.0.1 0 5 1 1 1 1 0 0 8 0 0 0 - 1 - 0 0 - - 0\n"
    "2 be_ns_web_80 3 s3 10.0.0.6 2 4 1 1 0 1 0 0 8 0 0 0 - 8080 - 0 0 - - 0\n"
    "\n"
)


def test_servers_state_parsing() -> None:
    servers = parse_servers_state(SERVERS_STATE)
    assert [(s.backend, s.server, s.address, s.op_state, s.admin_state) for s in servers] == [
        ("be_ns_web_80", "s1", "10.0.0.5", 0, 1),
        ("be_ns_web_80", "s2", "127.0.0.1", 0, 5),
        ("be_ns_web_80", "s3", "10.0.0.6", 2, 4),
    ]
    # the configuration's CMAINT bit (4) left on a slot enabled at run time is no maintenance
    assert [s.server for s in servers if s.in_service] == ["s3"]
    assert not ServerState("b", "s", "10.0.0.7", 2, 0x20).in_service  # RMAINT: address not resolved
    assert parse_servers_state("1\n# be_id be_name\n") == []
