from __future__ import annotations

import base64

import pytest

from kubelet import envvars
from kubelet.envvars import ConfigError, PodSources, expand, expand_command, make_environment, mapping_for


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("$(A)", "a"),
        ("x$(A)y$(B)", "xaybb"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$a"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("$A", "$A"),
        ("end$", "end$"),
        ("$()", ""),
        ("$$", "$"),
    ],
)
def test_expand_like_kubernetes(text: str, want: str) -> None:
    assert expand(text, mapping_for({"A": "a", "B": "bb", "": ""})) == want


POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
    "spec": {"nodeName": "n1", "containers": []},
}


def test_environment_order_expansion_and_sources() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "P_"}, {"secretRef": {"name": "s"}}],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "$(A)-$(P_k)-$(C)"},
            {"name": "C", "value": "3"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "LBL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {
                "name": "OPT",
                "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nope", "optional": True}},
            },
        ],
        "resources": {"limits": {"memory": "64Mi"}},
        "command": ["echo", "$(B)", "$$(A)"],
    }
    cms = {"cm": {"data": {"k": "v", "bad key": "skipped"}}}
    secrets = {"s": {"data": {"TOKEN": base64.b64encode(b"t").decode()}}}
    env = make_environment(POD, container, PodSources(cms, secrets, pod_ip="10.0.0.5"))
    d = dict(env)
    assert d["B"] == "1-v-$(C)"  # C is defined later: left as written
    assert d["P_k"] == "v" and "P_bad key" not in d
    assert d["TOKEN"] == "t"
    assert (d["POD"], d["LBL"], d["IP"], d["MEM"]) == ("p", "x", "10.0.0.5", "64")
    assert "OPT" not in d
    assert expand_command(container, env) == (["echo", "1-v-$(C)", "$(A)"], None)


def test_missing_references_are_config_errors() -> None:
    c = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    with pytest.raises(ConfigError, match='secret "s" not found'):
        make_environment(POD, c, PodSources({}, {"s": None}))
    with pytest.raises(ConfigError, match="couldn't find key k in Secret ns/s"):
        make_environment(POD, c, PodSources({}, {"s": {"data": {}}}))


def test_pod_dns_cluster_first_default_none_and_dns_config() -> None:
    from kubelet.kubelet import pod_dns

    servers, search, opts = pod_dns({}, "web", ["10.244.0.1"], "cluster.local")
    assert servers == ["10.244.0.1"]
    assert search == ["web.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert opts == ["ndots:5"]
    assert pod_dns({"dnsPolicy": "Default"}, "web", ["10.244.0.1"], "cluster.local") == ([], [], [])
    assert pod_dns({}, "web", [], "cluster.local") == ([], [], [])
    spec = {
        "dnsPolicy": "None",
        "dnsConfig": {
            "nameservers": ["1.2.3.4"],
            "searches": ["x.local"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
        },
    }
    assert pod_dns(spec, "web", ["10.244.0.1"], "cluster.local") == (
        ["1.2.3.4"],
        ["x.local"],
        ["ndots:2", "edns0"],
    )
    spec = {"dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}
    assert pod_dns(spec, "a", ["10.0.0.10"], "cluster.local")[2] == ["ndots:1"]


def test_needs_pod_ip_only_for_pod_ip_field_refs() -> None:
    def c(path: str) -> dict:
        return {"name": "c", "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": path}}}]}

    assert envvars.needs_pod_ip(c("status.podIP"))
    assert envvars.needs_pod_ip(c("status.podIPs"))
    assert not envvars.needs_pod_ip(c("status.hostIP"))
    assert not envvars.needs_pod_ip({"name": "c", "env": [{"name": "A", "value": "1"}]})


# --- Service variables (the kubelet's getServiceEnvVarMap and envvars.FromServices) -------------


def _svc(name: str, ns: str, ip: str, ports: list[dict[str, object]]) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": ports}}


KUBERNETES = _svc("kubernetes", "default", "10.96.0.1", [{"name": "https", "port": 443, "protocol": "TCP"}])
WEB = _svc(
    "my-web",
    "ns",
    "10.96.7.8",
    [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}],
)
HEADLESS = _svc("headless", "ns", "None", [{"port": 80}])
OTHER_NS = _svc("elsewhere", "other", "10.96.9.9", [{"port": 81}])


def test_service_variables_like_kubernetes() -> None:
    env = envvars.service_environment([KUBERNETES, WEB])
    assert env == {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
        "MY_WEB_SERVICE_HOST": "10.96.7.8",
        "MY_WEB_SERVICE_PORT": "80",
        "MY_WEB_SERVICE_PORT_HTTP": "80",
        "MY_WEB_SERVICE_PORT_DNS": "53",
        "MY_WEB_PORT": "tcp://10.96.7.8:80",
        "MY_WEB_PORT_80_TCP": "tcp://10.96.7.8:80",
        "MY_WEB_PORT_80_TCP_PROTO": "tcp",
        "MY_WEB_PORT_80_TCP_PORT": "80",
        "MY_WEB_PORT_80_TCP_ADDR": "10.96.7.8",
        "MY_WEB_PORT_53_UDP": "udp://10.96.7.8:53",
        "MY_WEB_PORT_53_UDP_PROTO": "udp",
        "MY_WEB_PORT_53_UDP_PORT": "53",
        "MY_WEB_PORT_53_UDP_ADDR": "10.96.7.8",
    }


def test_services_for_pod_namespace_master_and_service_links() -> None:
    services = [OTHER_NS, HEADLESS, WEB, KUBERNETES]
    names = [s["metadata"]["name"] for s in envvars.services_for_pod(POD, services)]  # type: ignore[index]
    assert names == ["kubernetes", "my-web"]  # not headless, not another namespace's
    no_links = {**POD, "spec": {**POD["spec"], "enableServiceLinks": False}}  # type: ignore[dict-item]
    names = [s["metadata"]["name"] for s in envvars.services_for_pod(no_links, services)]  # type: ignore[index]
    assert names == ["kubernetes"]  # the master service is in every pod, links or not
    in_default = {**POD, "metadata": {**POD["metadata"], "namespace": "default"}}  # type: ignore[dict-item]
    assert [s["metadata"]["name"] for s in envvars.services_for_pod(in_default, services)] == ["kubernetes"]  # type: ignore[index]


def test_service_variables_come_last_and_yield_to_the_container() -> None:
    container = {
        "env": [
            {"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
            {"name": "KUBERNETES_SERVICE_PORT", "value": "1234"},
        ]
    }
    env = make_environment(POD, container, PodSources(services=[KUBERNETES]))
    names = [k for k, _ in env]
    assert names[:2] == ["API", "KUBERNETES_SERVICE_PORT"]
    values = dict(env)
    assert values["API"] == "https://10.96.0.1:443"
    assert values["KUBERNETES_SERVICE_PORT"] == "1234"
    assert names.count("KUBERNETES_SERVICE_PORT") == 1
    assert values["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    # services not known (yet): no variables, as before
    assert make_environment(POD, {"env": []}, PodSources()) == []
