"""kubelet.cni without real plugins: configuration lists, plugin stdin and environment, results
and errors, the results cache, and ADD/DEL/CHECK ordering with fake plugins (small shell scripts
that record what they were given)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from kubelet import cni
from kubelet.kubelet import hosts_file, port_mappings
from kubelet.node import node_status

RESULT_04 = {
    "cniVersion": "0.4.0",
    "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/proc/1/ns/net"}],
    "ips": [{"version": "4", "interface": 0, "address": "10.244.0.5/24", "gateway": "10.244.0.1"}],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {},
}


def test_bridge_names() -> None:
    assert cni.bridge_name("minik-pods") == "minik0"
    other = cni.bridge_name("minik-test-1234")
    assert other.startswith("mk") and len(other) == 10
    assert other != cni.bridge_name("minik-test-1235")


def test_conflist_and_single_conf_parsed() -> None:
    conf = cni.parse_conflist(
        json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}]}).encode()
    )
    assert (conf.name, conf.cni_version, [p["type"] for p in conf.plugins]) == ("n", "1.0.0", ["bridge"])
    single = cni.parse_conflist(b'{"cniVersion": "0.4.0", "name": "s", "type": "ptp"}')
    assert single.name == "s" and single.plugins[0]["type"] == "ptp"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"{not json", "invalid network configuration"),
        (b"[]", "not a JSON object"),
        (b'{"plugins": [{"type": "x"}]}', "no name"),
        (b'{"name": "n", "plugins": []}', "no plugins"),
        (b'{"name": "n", "plugins": [{"kind": "x"}]}', "without a type"),
        (b'{"name": "n", "cniVersion": "9.9.9", "plugins": [{"type": "x"}]}', "unsupported cniVersion"),
    ],
)
def test_bad_configurations_refused(data: bytes, why: str) -> None:
    with pytest.raises(cni.CNIError, match=why):
        cni.parse_conflist(data)


def test_load_conflist_by_name_and_lexical_order(tmp_path: Path) -> None:
    (tmp_path / "20-b.conflist").write_text(json.dumps({"name": "b", "plugins": [{"type": "x"}]}))
    (tmp_path / "10-a.conflist").write_text(json.dumps({"name": "a", "plugins": [{"type": "x"}]}))
    (tmp_path / "05-broken.conflist").write_text("{")
    (tmp_path / "README").write_text("not a config")
    assert cni.load_conflist(str(tmp_path)).name == "a"
    assert cni.load_conflist(str(tmp_path), "b").name == "b"
    with pytest.raises(cni.CNIError, match="no configuration for network 'c'"):
        cni.load_conflist(str(tmp_path), "c")
    with pytest.raises(cni.CNIError, match="no configuration"):
        cni.load_conflist(str(tmp_path / "missing"))


def test_generated_conflist(tmp_path: Path) -> None:
    conf = cni.generate_conflist("minik-pods", "minik0", "10.244.3.0/24", "/var/lib/cni")
    bridge, portmap = conf["plugins"]
    assert bridge["type"] == "bridge" and bridge["bridge"] == "minik0"
    assert bridge["isGateway"] and bridge["hairpinMode"]
    assert not bridge["ipMasq"]  # one masquerade rule per network (host_rules), not one chain per pod
    assert bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24", "gateway": "10.244.3.1"}]]
    assert bridge["ipam"]["dataDir"] == "/var/lib/cni/networks"
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
    assert cni.host_rules("minik-pods", "minik0", "10.244.3.0/24") == [
        (
            "filter",
            "FORWARD",
            ["-i", "minik0", "-m", "comment", "--comment", "minik pod network minik-pods", "-j", "ACCEPT"],
        ),
        (
            "filter",
            "FORWARD",
            ["-o", "minik0", "-m", "comment", "--comment", "minik pod network minik-pods", "-j", "ACCEPT"],
        ),
        (
            "nat",
            "POSTROUTING",
            [
                "-s",
                "10.244.3.0/24",
                "!",
                "-d",
                "10.244.3.0/24",
                "-m",
                "comment",
                "--comment",
                "minik pod network minik-pods",
                "-j",
                "MASQUERADE",
            ],
        ),
    ]
    path = cni.write_conflist(str(tmp_path), conf)
    assert path.endswith("10-minik-pods.conflist")
    mtime = os.stat(path).st_mtime_ns
    cni.write_conflist(str(tmp_path), conf)  # unchanged: not rewritten
    assert os.stat(path).st_mtime_ns == mtime
    assert cni.load_conflist(str(tmp_path), "minik-pods").plugins[0]["bridge"] == "minik0"


def test_plugin_stdin_gets_name_version_capabilities_and_prev_result() -> None:
    net = cni.NetworkConfigList("net", "1.0.0", [])
    rt = cni.RuntimeConf(
        "cid", "/proc/1/ns/net", "eth0", [], {"portMappings": [{"hostPort": 80}], "bandwidth": {}}
    )
    with_caps = json.loads(
        cni.plugin_config(net, {"type": "portmap", "capabilities": {"portMappings": True}}, rt, {"ips": []})
    )
    assert with_caps["name"] == "net" and with_caps["cniVersion"] == "1.0.0"
    assert with_caps["runtimeConfig"] == {"portMappings": [{"hostPort": 80}]}
    assert with_caps["prevResult"] == {"ips": []}
    plain = json.loads(cni.plugin_config(net, {"type": "bridge", "runtimeConfig": {"x": 1}}, rt, None))
    assert "runtimeConfig" not in plain and "prevResult" not in plain


def test_environment() -> None:
    rt = cni.RuntimeConf(
        "abc", "/proc/7/ns/net", "eth0", [("K8S_POD_NAMESPACE", "ns"), ("K8S_POD_NAME", "p")]
    )
    env = cni.build_env("ADD", rt, "/a:/b", base={"PATH": "/usr/bin"})
    assert env == {
        "PATH": "/usr/bin",
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "abc",
        "CNI_NETNS": "/proc/7/ns/net",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p",
        "CNI_PATH": "/a:/b",
    }


def test_results_of_both_versions() -> None:
    old = cni.parse_result(json.dumps(RESULT_04).encode())
    assert old.first_ip() == "10.244.0.5"
    assert "version" not in old.ips[0]
    new = cni.parse_result(
        {"cniVersion": "1.0.0", "ips": [{"address": "fd00::5/64"}, {"address": "10.1.0.9/24"}]}
    )
    assert new.first_ip(4) == "10.1.0.9" and new.first_ip(6) == "fd00::5"
    assert cni.parse_result(b"{}").first_ip() == ""
    with pytest.raises(cni.CNIError, match="bad ips entry"):
        cni.parse_result({"ips": [{"gateway": "1.2.3.4"}]})
    with pytest.raises(cni.CNIError, match="invalid result"):
        cni.parse_result(b"nonsense")


def test_errors() -> None:
    err = cni.parse_error(
        b'{"code": 11, "msg": "no IP addresses available", "details": "range full"}', b"", 1, "bridge"
    )
    assert (err.code, err.msg, err.details, err.plugin) == (
        11,
        "no IP addresses available",
        "range full",
        "bridge",
    )
    assert "plugin type='bridge' failed (code 11): no IP addresses available: range full" == str(err)
    plain = cni.parse_error(b"", b"segfault\n", 2, "x")
    assert plain.code == 999 and plain.msg == "segfault"
    assert cni.parse_error(b"", b"", 3, "x").msg == "exit status 3"


def test_port_mappings_of_a_pod() -> None:
    pod: dict[str, Any] = {
        "spec": {
            "containers": [
                {"ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]},
                {
                    "ports": [
                        {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"}
                    ]
                },
            ]
        }
    }
    assert port_mappings(pod) == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
    ]


def test_node_not_ready_while_the_network_is_not() -> None:
    facts = {"cpus": 2, "memory": 1 << 30, "disk": 1 << 30}
    status = node_status(
        facts, {}, "10.0.0.1", "n", 10250, [], network_error="network plugin is not ready: x"
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NetworkPluginNotReady")
    assert ready["message"] == "network plugin is not ready: x"
    ok = next(
        c for c in node_status(facts, {}, "10.0.0.1", "n", 10250, [])["conditions"] if c["type"] == "Ready"
    )
    assert ok["status"] == "True"


# -- execution with fake plugins ----------------------------------------------------------------


FAKE = """#!/bin/sh
# records its command, environment and stdin; answers with $RESULT or an error
name=$(basename "$0")
stdin=$(cat)
echo "$CNI_COMMAND $name $CNI_CONTAINERID $CNI_IFNAME $CNI_NETNS" >> "{log}"
printf '%s\\n' "$stdin" > "{log}.$name.$CNI_COMMAND"
case "$name" in
  failing) echo '{{"code": 7, "msg": "bad config", "details": "no bridge"}}'; exit 1 ;;
  slow) sleep 5 ;;
esac
if [ "$CNI_COMMAND" = ADD ]; then
  if [ "$name" = ipam-ish ]; then
    echo '{{"cniVersion": "0.4.0", "ips": [{{"version": "4", "address": "10.9.0.7/24"}}]}}'
  else
    # pass the previous result on (as the chained plugins do)
    printf '%s' "$stdin" | sed -n 's/.*"prevResult": \\(.*\\)}}$/\\1/p'
  fi
fi
"""


def fake_plugins(tmp_path: Path) -> tuple[str, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    for name in ("ipam-ish", "chained", "failing", "slow"):
        p = bin_dir / name
        p.write_text(FAKE.format(log=log))
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return str(bin_dir), log


def net_of(*types: str) -> cni.NetworkConfigList:
    obj = {"cniVersion": "0.4.0", "name": "fake", "plugins": [{"type": t} for t in types]}
    return cni.parse_conflist(json.dumps(obj).encode())


def test_add_chains_results_del_reverses_with_cached_result(tmp_path: Path) -> None:
    bin_dir, log = fake_plugins(tmp_path)
    c = cni.CNI(["/nonexistent", bin_dir], str(tmp_path / "cache"), timeout=10)
    net = net_of("ipam-ish", "chained")
    rt = cni.RuntimeConf("sb1", "/proc/1/ns/net", "eth0", [("K8S_POD_NAME", "p")])
    result = asyncio.run(c.add(net, rt))
    assert result.first_ip() == "10.9.0.7"
    chained_stdin = json.loads(Path(f"{log}.chained.ADD").read_text())
    assert chained_stdin["prevResult"]["ips"][0]["address"] == "10.9.0.7/24"
    assert chained_stdin["name"] == "fake" and chained_stdin["cniVersion"] == "0.4.0"
    cached = c.read_cache("fake", "sb1", "eth0")
    assert cached is not None and cached["kind"] == "cniCacheV1"
    assert cached["result"]["ips"][0]["address"] == "10.9.0.7/24"
    assert os.path.exists(tmp_path / "cache" / "results" / "fake-sb1-eth0")
    assert c.cached_ids("fake", "eth0") == {"sb1"}

    asyncio.run(c.check(net, rt))
    asyncio.run(c.delete(net, rt))
    calls = log.read_text().split("\n")
    assert [line.split()[:2] for line in calls if line] == [
        ["ADD", "ipam-ish"],
        ["ADD", "chained"],
        ["CHECK", "ipam-ish"],
        ["CHECK", "chained"],
        ["DEL", "chained"],
        ["DEL", "ipam-ish"],
    ]
    del_stdin = json.loads(Path(f"{log}.ipam-ish.DEL").read_text())
    assert del_stdin["prevResult"]["ips"][0]["address"] == "10.9.0.7/24"
    assert c.read_cache("fake", "sb1", "eth0") is None
    with pytest.raises(cni.CNIError, match="no cached result"):
        asyncio.run(c.check(net, rt))


def test_portmap_without_mappings_skipped_on_add_only() -> None:
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}}
    assert cni.passes_through(portmap, cni.RuntimeConf("c", "n", capability_args={"portMappings": []}))
    assert not cni.passes_through(
        portmap, cni.RuntimeConf("c", "n", capability_args={"portMappings": [{"hostPort": 1}]})
    )
    assert not cni.passes_through({"type": "bridge"}, cni.RuntimeConf("c", "n"))


def test_plugin_errors_missing_plugins_and_timeouts(tmp_path: Path) -> None:
    bin_dir, _log = fake_plugins(tmp_path)
    c = cni.CNI([bin_dir], str(tmp_path / "cache"), timeout=0.5)
    rt = cni.RuntimeConf("sb2", "/proc/1/ns/net")
    with pytest.raises(cni.CNIError) as info:
        asyncio.run(c.add(net_of("ipam-ish", "failing"), rt))
    assert (info.value.code, info.value.msg, info.value.details, info.value.plugin) == (
        7,
        "bad config",
        "no bridge",
        "failing",
    )
    assert c.read_cache("fake", "sb2", "eth0") is None  # nothing cached for a failed ADD
    with pytest.raises(cni.CNIError, match='failed to find plugin "nope"'):
        asyncio.run(c.add(net_of("nope"), rt))
    with pytest.raises(cni.CNIError, match="timed out"):
        asyncio.run(c.add(net_of("slow"), rt))


def test_pod_network_ip_from_the_cache_and_garbage_collection(tmp_path: Path) -> None:
    bin_dir, log = fake_plugins(tmp_path)
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "10-fake.conflist").write_text(
        json.dumps({"cniVersion": "0.4.0", "name": "fake", "plugins": [{"type": "ipam-ish"}]})
    )
    cache = str(tmp_path / "cache")
    pn = cni.PodNetwork("fake", str(conf_dir), bin_dir, cache, bridge="mkfake")
    pn.loopback = net_of("chained")  # no real loopback plugin here
    pn.net = cni.load_conflist(str(conf_dir), "fake")
    ip, took = asyncio.run(pn.setup("live", "", "ns", "a"))
    assert ip == "10.9.0.7" and took >= 0
    asyncio.run(pn.setup("dead", "", "ns", "b"))
    # a restarted kubelet: the IP comes from the results cache
    again = cni.PodNetwork("fake", str(conf_dir), bin_dir, cache, bridge="mkfake")
    assert again.ip_of("live") == "10.9.0.7" and again.ip_of("unknown") == ""
    again.net = pn.net
    assert asyncio.run(again.garbage_collect({"live": ""})) == ["dead"]
    assert again.known_sandboxes() == {"live"}
    assert "DEL ipam-ish dead eth0" in log.read_text()
    cni.cleanup_network(str(conf_dir), "fake", "mkfake", cache, bin_dir)
    assert not os.listdir(conf_dir) and again.known_sandboxes() == set()


def test_hosts_file_of_a_pod() -> None:
    pod: dict[str, Any] = {
        "metadata": {"name": "web-0", "namespace": "shop"},
        "spec": {
            "subdomain": "web",
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}],
        },
    }
    text = hosts_file(pod, "10.244.0.7", "cluster.local")
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert "10.244.0.7\tweb-0.web.shop.svc.cluster.local\tweb-0\n" in text
    assert text.endswith("# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n")
    plain = hosts_file({"metadata": {"name": "p"}, "spec": {"hostname": "h"}}, "10.0.0.9", "cluster.local")
    assert plain.endswith("10.0.0.9\th\n")
    assert "10.0.0.9" not in hosts_file({"metadata": {"name": "p"}}, "", "cluster.local")


def test_cache_of_a_network_whose_name_prefixes_another(tmp_path: Path) -> None:
    """``mkt-pods``'s cached results are not ``mkt-pods-b``'s (``mkt-pods-b-<id>-eth0`` starts
    with ``mkt-pods-`` too): neither the garbage collection nor the clean-up take them."""
    bin_dir, _log = fake_plugins(tmp_path)
    cache = str(tmp_path / "cache")
    c = cni.CNI([bin_dir], cache, timeout=10)
    for name, sid in (("mkt-pods", "aaa"), ("mkt-pods-b", "bbb")):
        obj = {"cniVersion": "0.4.0", "name": name, "plugins": [{"type": "ipam-ish"}]}
        asyncio.run(c.add(cni.parse_conflist(json.dumps(obj).encode()), cni.RuntimeConf(sid, "", "eth0")))
    assert c.cached_ids("mkt-pods", "eth0") == {"aaa"}
    assert c.cached_ids("mkt-pods-b", "eth0") == {"bbb"}
    # an unreadable entry counts by the shape of its name only
    results = tmp_path / "cache" / "results"
    (results / "mkt-pods-ccc-eth0").write_text("{")
    (results / "mkt-pods-b-ddd-eth0").write_text("{")
    assert c.cached_ids("mkt-pods", "eth0") == {"aaa", "ccc"}
    cni.cleanup_network(str(tmp_path / "conf"), "mkt-pods", "mkpodsx", cache, bin_dir)
    assert sorted(os.listdir(results)) == ["mkt-pods-b-bbb-eth0", "mkt-pods-b-ddd-eth0"]
    assert c.cached_ids("mkt-pods-b", "eth0") == {"bbb", "ddd"}


class _FakeApi:
    """A Node store for Kubelet.start: the Node exists (AlreadyExists on create)."""

    def __init__(self, node: dict[str, Any]) -> None:
        self.node = node
        self.statuses: list[dict[str, Any]] = []

    async def create(self, info: Any, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        from apimachinery import errors

        raise errors.AlreadyExists("exists")

    async def get(self, info: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.node

    async def patch(self, info: Any, name: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        if kw.get("subresource") == "status":
            self.statuses.append(body["status"])
            self.node = {**self.node, "status": body["status"]}
        return self.node


class _FakeRuntime:
    async def version(self) -> dict[str, str]:
        return {"arch": "amd64", "cpus": "2", "memory": "1000000"}

    async def list_sandboxes(self, pod_uid: str | None = None) -> list[Any]:
        return []


class _FakeNetwork:
    def __init__(self) -> None:
        self.cidr = ""

    def configure(self, cidr: str) -> str:
        self.cidr = cidr
        return ""

    def attached_sandboxes(self) -> set[str]:
        return set()

    def ensure_host_rules(self) -> None:
        self.rules_checked = getattr(self, "rules_checked", 0) + 1

    async def garbage_collect(self, live: dict[str, str], candidates: set[str] | None = None) -> list[str]:
        return []


@pytest.mark.parametrize("pod_cidr", ["10.244.7.0/24", ""])
def test_kubelet_restart_without_pod_cidr_flag(tmp_path: Path, monkeypatch: Any, pod_cidr: str) -> None:
    """A kubelet without --pod-cidr whose Node already has spec.podCIDR (a restart) never posts
    NotReady/NetworkPluginNotReady; a Node without one is NotReady until the CIDR comes."""
    from kubelet.kubelet import Kubelet

    node = {"metadata": {"name": "n1", "uid": "u1", "labels": {}}, "spec": {"podCIDR": pod_cidr}}
    api, net = _FakeApi(node), _FakeNetwork()
    k = Kubelet(api, _FakeRuntime(), "n1", "10.0.0.1", 10250, None, "minik-pods", str(tmp_path), network=net)  # type: ignore[arg-type]
    monkeypatch.setattr(k, "_spawn", lambda coro, name: coro.close())

    async def synced() -> None:
        return None

    async def later_cidr() -> str:
        return "10.244.8.0/24"

    monkeypatch.setattr(k.pods, "wait_for_sync", synced)
    monkeypatch.setattr(k.services, "wait_for_sync", synced)
    monkeypatch.setattr(k, "_wait_pod_cidr", later_cidr)
    asyncio.run(k.start())
    ready = [next(c for c in s["conditions"] if c["type"] == "Ready") for s in api.statuses]
    if pod_cidr:
        assert net.cidr == pod_cidr
        assert [c["status"] for c in ready] == ["True"]
    else:
        assert net.cidr == "10.244.8.0/24"
        assert [(c["status"], c["reason"]) for c in ready][0] == ("False", "NetworkPluginNotReady")
        assert ready[-1]["status"] == "True"


def test_garbage_collection_only_takes_sandboxes_known_before_the_listing(tmp_path: Path) -> None:
    bin_dir, _log = fake_plugins(tmp_path)
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "10-fake.conflist").write_text(
        json.dumps({"cniVersion": "0.4.0", "name": "fake", "plugins": [{"type": "ipam-ish"}]})
    )
    pn = cni.PodNetwork("fake", str(conf_dir), bin_dir, str(tmp_path / "cache"), bridge="mkfake")
    pn.loopback = net_of("chained")
    pn.net = cni.load_conflist(str(conf_dir), "fake")
    asyncio.run(pn.setup("old", "", "ns", "a"))
    candidates = pn.attached_sandboxes()
    assert candidates == {"old"}
    asyncio.run(pn.setup("new", "", "ns", "b"))  # set up after the runtime was listed
    assert asyncio.run(pn.garbage_collect({}, candidates)) == ["old"]
    assert pn.known_sandboxes() == {"new"}
    assert pn.cni.cached_ids(pn.loopback.name, "lo") == {"new"}


def test_kubelet_collects_network_garbage_periodically(tmp_path: Path) -> None:
    """Not only at start: a failed DEL or a sandbox removed behind the kubelet's back is released
    by the next round; sandboxes whose ADD or DEL is under way count as live.  The host rules
    are checked on the same timer."""
    from kubelet.kubelet import Kubelet

    class Network(_FakeNetwork):
        def __init__(self) -> None:
            super().__init__()
            self.rounds: list[tuple[dict[str, str], set[str] | None]] = []
            self.twice = asyncio.Event()

        def attached_sandboxes(self) -> set[str]:
            return {"gone", "busy"}

        async def garbage_collect(
            self, live: dict[str, str], candidates: set[str] | None = None
        ) -> list[str]:
            self.rounds.append((live, candidates))
            if len(self.rounds) >= 2:
                self.twice.set()
            return ["gone"]

    async def main() -> Network:
        net = Network()
        k = Kubelet(
            _FakeApi({}),
            _FakeRuntime(),
            "n1",
            "10.0.0.1",
            10250,
            "10.244.1.0/24",
            "minik-pods",
            str(tmp_path),
            network=net,
        )  # type: ignore[arg-type]
        k.network_gc_period = 0.01
        k._network_busy["busy"] = 1
        loop = asyncio.create_task(k._network_loop())
        try:
            await asyncio.wait_for(net.twice.wait(), 30)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        return net

    net = asyncio.run(main())
    assert net.rounds[0] == ({"busy": ""}, {"gone", "busy"})
    assert net.rules_checked >= 2  # the host rules put back on the same timer


def test_teardown_without_a_cache_entry_hands_the_pods_host_ports_to_portmap(tmp_path: Path) -> None:
    """A kubelet killed between portmap's ADD and the cache write: the DEL gets the pod's
    hostPorts (portmap's DEL removes nothing without them)."""
    bin_dir, log = fake_plugins(tmp_path)
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    plugins = [{"type": "ipam-ish"}, {"type": "chained", "capabilities": {"portMappings": True}}]
    (conf_dir / "10-fake.conflist").write_text(
        json.dumps({"cniVersion": "0.4.0", "name": "fake", "plugins": plugins})
    )
    pn = cni.PodNetwork("fake", str(conf_dir), bin_dir, str(tmp_path / "cache"), bridge="mkfake")
    pn.net = cni.load_conflist(str(conf_dir), "fake")
    netns = tmp_path / "netns"
    netns.write_text("")
    mappings = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    assert asyncio.run(pn.teardown("sb", str(netns), mappings)) is True
    stdin = json.loads(Path(f"{log}.chained.DEL").read_text())
    assert stdin["runtimeConfig"] == {"portMappings": mappings}


@pytest.mark.parametrize("masq", [False, True])
def test_teardown_without_netns_removes_a_masquerade_chain_only_with_ip_masq(
    tmp_path: Path, monkeypatch: Any, masq: bool
) -> None:
    bin_dir, _log = fake_plugins(tmp_path)
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    bridge = Path(bin_dir) / "bridge"  # a chained fake named as the bridge plugin
    bridge.write_bytes((Path(bin_dir) / "chained").read_bytes())
    bridge.chmod(0o755)
    plugins = [{"type": "ipam-ish"}, {"type": "bridge", "ipMasq": masq}]
    (conf_dir / "10-fake.conflist").write_text(
        json.dumps({"cniVersion": "0.4.0", "name": "fake", "plugins": plugins})
    )
    removed: list[str] = []
    monkeypatch.setattr(cni, "_iptables_remove_chain", lambda table, chain: removed.append(chain))
    pn = cni.PodNetwork("fake", str(conf_dir), bin_dir, str(tmp_path / "cache"), bridge="mkfake")
    pn.loopback = net_of("chained")
    pn.net = cni.load_conflist(str(conf_dir), "fake")
    asyncio.run(pn.setup("sb", "", "ns", "a"))
    assert asyncio.run(pn.teardown("sb", "")) is True
    assert removed == ([cni.masq_chain("fake", "sb")] if masq else [])
