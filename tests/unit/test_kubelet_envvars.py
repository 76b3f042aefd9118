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
