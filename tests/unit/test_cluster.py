"""The pure parts of ``minik up|down|status`` and its supervisor: preflight, health verdicts,
kubeconfig merging, start order and flags, restart backoff (no processes, no Docker)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli.cluster import (
    HostFacts,
    docker_error_text,
    lease_verdict,
    merge_kubeconfig,
    network_clash,
    node_verdict,
    preflight_problems,
)
from cli.supervisor import (
    Component,
    components,
    gateway,
    kube_dns_objects,
    next_backoff,
    settings,
)
from kubelet.cni import bridge_name

GOOD = HostFacts(
    is_root=True,
    docker_error=None,
    dockerd_installed=True,
    systemd=False,
    iptables=True,
    etcd=True,
    sandbox_image_buildable=True,
    busy_ports=[],
    network_clash=None,
)


def facts(**changes: Any) -> HostFacts:
    return HostFacts(**{**GOOD.__dict__, **changes})


def test_preflight_passes_on_a_good_host() -> None:
    assert preflight_problems(GOOD) == []


def test_preflight_names_root_and_how_to_get_it() -> None:
    [problem] = preflight_problems(facts(is_root=False), "minik")
    assert "must run as root" in problem and "`sudo minik up`" in problem


def test_preflight_without_docker_installed_says_how_to_install_and_start_it() -> None:
    [problem] = preflight_problems(facts(docker_error="connection refused", dockerd_installed=False))
    assert "apt-get install -y docker.io" in problem
    assert "dockerd > /var/log/dockerd.log 2>&1 &" in problem
    [problem] = preflight_problems(
        facts(docker_error="connection refused", dockerd_installed=False, systemd=True)
    )
    assert "systemctl start docker" in problem


def test_preflight_with_docker_installed_but_stopped_says_start_it() -> None:
    [problem] = preflight_problems(facts(docker_error="Error while fetching server API version"))
    assert "does not answer (Error while fetching server API version)" in problem
    assert "apt-get" not in problem and "dockerd >" in problem


def test_preflight_lists_every_missing_piece() -> None:
    problems = preflight_problems(
        facts(
            is_root=False,
            iptables=False,
            etcd=False,
            sandbox_image_buildable=False,
            busy_ports=[("the API server", 6443)],
            network_clash="the network 10.244.0.0/16 (device br-x) overlaps the pod network 10.244.0.0/24",
            cni_plugins=False,
        )
    )
    text = "\n".join(problems)
    assert len(problems) == 7
    assert "apt-get install -y containernetworking-plugins" in text
    assert "apt-get install -y iptables" in text
    assert "etcd-server" in text
    assert "busybox-static" in text
    assert "port 6443 (for the API server) is already in use on this host" in text
    assert "--cluster-cidr" in text


def test_network_clash_ignores_our_own_bridge_the_default_route_and_other_subnets() -> None:
    routes = [
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
        {"dst": "172.17.0.0/16", "dev": "docker0"},
        {"dst": "10.244.0.0/24", "dev": "minik0"},  # ours: a previous run's CNI bridge
        {"dst": "10.244.9.9", "dev": "eth0"},  # a host route
    ]
    assert network_clash(routes, "minik0", "10.244.0.0/16") is None
    routes.append({"dst": "10.244.0.0/16", "dev": "br-123"})
    assert network_clash(routes, "minik0", "10.244.0.0/24") == (
        "the network 10.244.0.0/16 (device br-123) overlaps the pod network 10.244.0.0/24"
    )
    # another cluster's CNI bridge inside our cluster CIDR
    assert "mk1234abcd" in (
        network_clash([{"dst": "10.244.3.0/24", "dev": "mk1234abcd"}], "minik0", "10.244.0.0/16") or ""
    )


def test_merge_kubeconfig_keeps_other_entries_and_makes_minik_current() -> None:
    existing = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "prod", "cluster": {"server": "https://prod"}},
            {"name": "minik", "cluster": {"server": "http://old"}},
        ],
        "users": [{"name": "prod", "user": {"token": "t"}}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod"}}],
        "current-context": "prod",
    }
    entries = {
        "clusters": [{"name": "minik", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "minik", "user": {"client-certificate-data": "Y2VydA=="}}],
        "contexts": [
            {"name": "minik", "context": {"cluster": "minik", "user": "minik", "namespace": "default"}}
        ],
        "current-context": "minik",
    }
    merged = merge_kubeconfig(existing, entries)
    assert merged["current-context"] == "minik"
    assert [c["name"] for c in merged["clusters"]] == ["prod", "minik"]
    assert merged["clusters"][1]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert merged["users"] == [
        {"name": "prod", "user": {"token": "t"}},
        {"name": "minik", "user": {"client-certificate-data": "Y2VydA=="}},
    ]
    assert merged["contexts"][1]["context"] == {"cluster": "minik", "user": "minik", "namespace": "default"}
    assert existing["current-context"] == "prod"  # the input is not changed
    assert merge_kubeconfig(existing, entries, make_current=False)["current-context"] == "prod"
    assert merge_kubeconfig({}, entries)["kind"] == "Config"


def test_cluster_entries_embed_the_ca_and_admin_certificate(tmp_path: Path) -> None:
    import base64

    from apimachinery.pki import PKI
    from cli.cluster import cluster_entries

    pki = PKI(tmp_path)
    crt, key = pki.client_cert("admin", "kubernetes-admin", ["system:masters"])
    entries = cluster_entries("https://127.0.0.1:6443", pki.ca_pem(), crt, key)
    cluster = entries["clusters"][0]
    assert cluster["name"] == "minik"
    assert "insecure-skip-tls-verify" not in cluster["cluster"]
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]).decode() == pki.ca_pem()
    user = entries["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == crt.read_bytes()
    assert base64.b64decode(user["client-key-data"]) == key.read_bytes()
    assert entries["current-context"] == "minik"


def _rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_node_verdict_needs_ready_and_a_heartbeat_from_this_kubelet() -> None:
    now = datetime.now(UTC)

    def node(status: str, beat: datetime) -> dict[str, Any]:
        cond = {
            "type": "Ready",
            "status": status,
            "reason": "KubeletNotReady",
            "lastHeartbeatTime": _rfc3339(beat),
        }
        return {"metadata": {"name": "n1"}, "status": {"conditions": [cond]}}

    started = now.timestamp() - 5
    assert node_verdict(node("True", now), started).ok
    stale = node_verdict(node("True", now - timedelta(minutes=5)), started)
    assert not stale.ok and "first status" in stale.detail
    not_ready = node_verdict(node("False", now), started)
    assert not not_ready.ok and "KubeletNotReady" in not_ready.detail
    assert not node_verdict({"metadata": {"name": "n1"}}).ok


def test_lease_verdict() -> None:
    now = datetime.now(UTC)

    def lease(holder: str, renewed: datetime) -> dict[str, Any]:
        return {
            "spec": {"holderIdentity": holder, "renewTime": renewed.isoformat(), "leaseDurationSeconds": 15}
        }

    assert lease_verdict(lease("cm-1", now - timedelta(seconds=2)), now).ok
    assert not lease_verdict(lease("", now), now).ok
    assert "expired" in lease_verdict(lease("cm-1", now - timedelta(seconds=30)), now).detail
    # renewed before this process started: a killed predecessor's lease
    assert not lease_verdict(lease("old", now - timedelta(seconds=5)), now, now.timestamp()).ok


def test_components_start_order_and_flags_pass_through() -> None:
    cfg = settings(
        {
            "api_port": 31000,
            "etcd_port": 31010,
            "node_name": "t-n1",
            "cluster_cidr": "10.231.5.0/24",
            "service_cidr": "10.232.0.0/16",
            "network_name": "minik-t",
            "iptables_chain_prefix": "MKT",
            "kubelet_port": 31020,
            "advertise_address": "192.0.2.10",
        }
    )
    assert cfg["etcd_peer_port"] == 31011 and cfg["cluster_domain"] == "cluster.local"
    comps = {c.name: c for c in components(cfg, Path("/state"))}
    assert list(comps) == [
        "etcd",
        "apiserver",
        "controller-manager",
        "scheduler",
        "kubelet",
        "proxy",
        "metrics-server",
        "dns",
        "ingress",
    ]

    def flag(c: Component, name: str) -> str:
        return c.argv[c.argv.index(name) + 1]

    ingress = comps["ingress"]
    assert flag(ingress, "--http-port") == "80" and flag(ingress, "--https-port") == "443"
    assert flag(ingress, "--state-dir") == "/state/ingress"
    assert flag(ingress, "--kubeconfig") == "/state/kubeconfigs/ingress.conf"
    etcd = comps["etcd"]
    assert flag(etcd, "--listen-client-urls") == "https://127.0.0.1:31010"
    assert flag(etcd, "--listen-peer-urls") == "https://127.0.0.1:31011"
    assert flag(etcd, "--cert-file") == "/state/pki/etcd-server.crt"
    assert flag(etcd, "--trusted-ca-file") == "/state/pki/etcd/ca.crt"
    assert flag(etcd, "--peer-trusted-ca-file") == "/state/pki/etcd/ca.crt"
    assert "--client-cert-auth" in etcd.argv and "--peer-client-cert-auth" in etcd.argv
    assert flag(comps["etcd"], "--data-dir") == "/state/etcd"
    api = comps["apiserver"]
    assert flag(api, "--service-cluster-ip-range") == "10.232.0.0/16"
    assert flag(api, "--etcd-servers") == "https://127.0.0.1:31010"
    assert flag(api, "--etcd-certfile") == "/state/pki/apiserver-etcd-client.crt"
    assert flag(api, "--etcd-cafile") == "/state/pki/etcd/ca.crt"
    assert flag(api, "--secure-port") == "31000" and "--port" not in api.argv
    assert flag(api, "--bind-address") == "0.0.0.0"
    assert flag(api, "--advertise-address") == "192.0.2.10"
    assert flag(api, "--tls-cert-file") == "/state/pki/apiserver.crt"
    assert flag(api, "--tls-private-key-file") == "/state/pki/apiserver.key"
    assert flag(api, "--client-ca-file") == "/state/pki/ca.crt"
    assert flag(api, "--service-account-key-file") == "/state/pki/sa.pub"
    assert flag(api, "--service-account-signing-key-file") == "/state/pki/sa.key"
    assert flag(api, "--kubelet-client-certificate") == "/state/pki/apiserver-kubelet-client.crt"
    assert flag(api, "--encryption-provider-config") == "/state/encryption-config.yaml"
    assert flag(api, "--audit-log-path") == "/state/logs/audit.log"
    # every other component runs as itself, from its own kubeconfig, never as admin
    for name in ("controller-manager", "scheduler", "kubelet", "proxy", "dns"):
        argv = comps[name].argv
        assert "--api-server" not in argv
        assert flag(comps[name], "--kubeconfig") == f"/state/kubeconfigs/{name}.conf"
    assert flag(comps["controller-manager"], "--root-ca-file") == "/state/pki/ca.crt"
    kubelet = comps["kubelet"]
    assert flag(kubelet, "--node-ip") == "192.0.2.10"
    assert flag(kubelet, "--tls-cert-file") == "/state/pki/kubelet-t-n1.crt"
    assert flag(kubelet, "--client-ca-file") == "/state/pki/ca.crt"
    assert flag(kubelet, "--network-name") == "minik-t"
    assert flag(kubelet, "--port") == "31020"
    # the pod network: CNI over the range node IPAM gives the node (the cluster CIDR is a /24: all of it)
    assert "--pod-cidr" not in kubelet.argv
    assert flag(kubelet, "--network-plugin") == "cni"
    assert flag(kubelet, "--cni-conf-dir") == "/etc/cni/net.d"
    assert flag(kubelet, "--cni-cache-dir") == "/var/lib/cni"
    assert flag(kubelet, "--cni-bridge") == bridge_name("minik-t") != "minik0"
    assert len(flag(kubelet, "--cni-bridge")) <= 15
    cm = comps["controller-manager"]
    assert flag(cm, "--allocate-node-cidrs") == "true"
    assert flag(cm, "--cluster-cidr") == "10.231.5.0/24" and flag(cm, "--node-cidr-mask-size") == "24"
    # pods ask the kube-dns ClusterIP (the 10th address of the service range)
    assert flag(kubelet, "--cluster-dns") == "10.232.0.10"
    assert flag(kubelet, "--root-dir") == "/state/kubelet"
    assert flag(comps["proxy"], "--iptables-chain-prefix") == "MKT"
    # DNS binds the node's gateway, known once node IPAM set the podCIDR (the gate fills it in)
    assert comps["dns"].waiting_for == "the node's pod CIDR (node IPAM)"
    for name in ("etcd", "apiserver"):
        assert comps[name].gate is None
    for name in ("controller-manager", "scheduler", "kubelet", "proxy", "dns"):
        assert comps[name].gate is not None and comps[name].waiting_for


def test_credentials_give_each_component_its_own_identity(tmp_path: Path) -> None:
    import base64
    import stat

    import yaml

    from apimachinery.pki import subject_of
    from cli.supervisor import ensure_credentials, kubeconfig_file

    cfg = settings(
        {
            "node_name": "t-n1",
            "advertise_address": "192.0.2.10",
            "cluster_cidr": "10.231.5.0/24",
            "api_port": 31000,
        }
    )
    ensure_credentials(cfg, tmp_path)
    want = {
        "admin": ("kubernetes-admin", ("system:masters",)),
        "scheduler": ("system:kube-scheduler", ()),
        "controller-manager": ("system:kube-controller-manager", ()),
        "kubelet": ("system:node:t-n1", ("system:nodes",)),
        "proxy": ("system:kube-proxy", ()),
        "dns": ("system:minik-dns", ()),
    }
    for name, subject in want.items():
        path = kubeconfig_file(tmp_path, name)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        conf = yaml.safe_load(path.read_text())
        assert conf["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:31000"
        assert "insecure-skip-tls-verify" not in conf["clusters"][0]["cluster"]
        cert = base64.b64decode(conf["users"][0]["user"]["client-certificate-data"])
        assert subject_of(cert) == subject
    for name in (
        "apiserver",
        "apiserver-kubelet-client",
        "kubelet-t-n1",
        "sa",
        "etcd-server",
        "apiserver-etcd-client",
    ):
        assert stat.S_IMODE((tmp_path / "pki" / f"{name}.key").stat().st_mode) == 0o600
    enc = tmp_path / "encryption-config.yaml"
    assert stat.S_IMODE(enc.stat().st_mode) == 0o600
    doc = yaml.safe_load(enc.read_text())
    assert doc["kind"] == "EncryptionConfiguration" and doc["apiVersion"] == "apiserver.config.k8s.io/v1"
    [rule] = doc["resources"]
    assert rule["resources"] == ["secrets"]
    [key] = rule["providers"][0]["aesgcm"]["keys"]
    assert key["name"] == "key1" and len(base64.b64decode(key["secret"])) == 32
    assert rule["providers"][1] == {"identity": {}}
    # a second run reuses every file: same certificates, same encryption key
    before = {p: p.read_bytes() for p in (tmp_path / "pki").rglob("*") if p.is_file()}
    enc_before = enc.read_bytes()
    ensure_credentials(cfg, tmp_path)
    assert {p: p.read_bytes() for p in (tmp_path / "pki").rglob("*") if p.is_file()} == before
    assert enc.read_bytes() == enc_before
    # the host moved: the API server's and the kubelet's serving certificates are reissued
    ensure_credentials({**cfg, "advertise_address": "192.0.2.11"}, tmp_path)
    assert (tmp_path / "pki" / "apiserver.crt").read_bytes() != before[tmp_path / "pki" / "apiserver.crt"]
    assert (tmp_path / "pki" / "ca.crt").read_bytes() == before[tmp_path / "pki" / "ca.crt"]
    assert (tmp_path / "pki" / "admin.crt").read_bytes() == before[tmp_path / "pki" / "admin.crt"]


def test_etcd_certificates_are_signed_by_the_etcd_ca_and_an_old_layout_gets_one(tmp_path: Path) -> None:
    """etcd trusts only the etcd CA: the cluster CA also signs node client certificates (bootstrap
    tokens), which must not open etcd.  A state directory made with one CA for everything gets the
    etcd CA on the next run and its etcd certificates reissued; the rest is kept."""
    from cryptography import x509

    from apimachinery.pki import PKI
    from cli.supervisor import ensure_credentials, etcd_ca_file

    def issuer(path: Path) -> x509.Name:
        return x509.load_pem_x509_certificate(path.read_bytes()).issuer

    def ca_subject(path: Path) -> x509.Name:
        return x509.load_pem_x509_certificate(path.read_bytes()).subject

    pki = tmp_path / "pki"
    etcd_names = ("etcd-server", "apiserver-etcd-client", "etcd-healthcheck-client")
    # the old layout: the cluster CA signed etcd's certificates too
    old = PKI(pki)
    old.serving_cert("etcd-server", ["127.0.0.1", "localhost"], "minik-etcd", client_auth=True)
    old.client_cert("apiserver-etcd-client", "kube-apiserver-etcd-client")
    old.client_cert("etcd-healthcheck-client", "kube-etcd-healthcheck-client")
    old.client_cert("admin", "kubernetes-admin", ["system:masters"])
    cluster_ca = (pki / "ca.crt").read_bytes()
    assert all(issuer(pki / f"{n}.crt") == ca_subject(pki / "ca.crt") for n in etcd_names)
    cfg = {"node_name": "t-n1", "advertise_address": "192.0.2.10", "api_port": 31000}
    ensure_credentials(cfg, tmp_path)
    etcd_ca = etcd_ca_file(tmp_path)
    assert etcd_ca == pki / "etcd" / "ca.crt" and (pki / "etcd" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert ca_subject(etcd_ca) != ca_subject(pki / "ca.crt")
    assert (pki / "ca.crt").read_bytes() == cluster_ca
    for name in etcd_names:
        cert = x509.load_pem_x509_certificate((pki / f"{name}.crt").read_bytes())
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(etcd_ca.read_bytes()))
    # everything else the cluster CA still signs
    for name in ("admin", "apiserver", "kubelet-t-n1"):
        assert issuer(pki / f"{name}.crt") == ca_subject(pki / "ca.crt")


def test_gateway_is_the_first_host_of_the_pod_cidr() -> None:
    assert gateway("10.244.0.0/24") == "10.244.0.1"
    assert gateway("10.231.7.0/24") == "10.231.7.1"


def test_pod_network_settings_defaults_and_an_old_config() -> None:
    cfg = settings({"advertise_address": "192.0.2.10"})
    assert cfg["cluster_cidr"] == "10.244.0.0/16" and cfg["node_cidr_mask_size"] == 24
    assert cfg["cni_bridge"] == "minik0" and cfg["dns_ip"] == "10.96.0.10"
    # a config.json written before node IPAM: its node pod CIDR is the whole cluster CIDR
    old = settings({"advertise_address": "192.0.2.10", "pod_cidr": "10.245.0.0/24"})
    assert old["cluster_cidr"] == "10.245.0.0/24" and old["node_cidr_mask_size"] == 24
    assert settings({"advertise_address": "x", "cluster_cidr": "10.9.0.0/26"})["node_cidr_mask_size"] == 26
    assert bridge_name("minik-b") == "mk" + hashlib.sha1(b"minik-b").hexdigest()[:8]


def test_kube_dns_endpoints_name_the_gateway_on_port_53() -> None:
    svc, eps = kube_dns_objects("10.96.0.10", "10.244.0.1", "n1")
    assert svc["spec"]["clusterIP"] == "10.96.0.10" and "selector" not in svc["spec"]
    assert {(p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {(53, "UDP"), (53, "TCP")}
    [subset] = eps["subsets"]
    assert subset["addresses"] == [{"ip": "10.244.0.1", "nodeName": "n1"}]
    assert {p["name"]: p["port"] for p in subset["ports"]} == {"dns": 53, "dns-tcp": 53}


def test_restart_backoff_doubles_and_resets_after_a_good_minute() -> None:
    delay, backoff = next_backoff(1.0, uptime=3)
    assert (delay, backoff) == (1.0, 2.0)
    delay, backoff = next_backoff(backoff, uptime=3)
    assert (delay, backoff) == (2.0, 4.0)
    assert next_backoff(30.0, uptime=1) == (30.0, 30.0)
    assert next_backoff(16.0, uptime=120) == (1.0, 2.0)


def test_docker_error_text_is_short() -> None:
    long = "Error while fetching server API version: ('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))"
    assert docker_error_text(long, None) == "no socket at unix:///var/run/docker.sock"
    assert docker_error_text("... [Errno 111] Connection refused", "tcp://127.0.0.1:2375") == (
        "connection refused at tcp://127.0.0.1:2375"
    )
    assert docker_error_text("odd", "unix:///x.sock") == "unix:///x.sock: odd"


def test_up_refuses_before_starting_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cli import cluster
    from cli.main import app

    monkeypatch.setattr(
        cluster, "gather_facts", lambda cfg: facts(is_root=False, docker_error="no socket at x")
    )

    def no_spawn(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing may start")

    monkeypatch.setattr(cluster.subprocess, "Popen", no_spawn)
    state = tmp_path / "state"
    result = CliRunner().invoke(app, ["up", "--state-dir", str(state)])
    assert result.exit_code == 1
    assert "cannot start a cluster on this host" in result.output
    assert "must run as root" in result.output and "does not answer (no socket at x)" in result.output
    assert not state.exists()


def test_same_process_sees_through_wrappers_and_reused_pids() -> None:
    from cli.cluster import same_process

    argv = ["/venv/bin/minik-kubelet", "--node-name", "n1"]
    assert same_process(argv, ["/venv/bin/python3", "/venv/bin/minik-kubelet", "--node-name", "n1"])
    assert same_process(["/x/etcd", "--name", "m"], ["/x/etcdbin/etcd", "--name", "m"])
    assert not same_process(argv, ["/venv/bin/python3", "/venv/bin/minik-kubelet", "--node-name", "n2"])
    assert not same_process(argv, ["/usr/bin/sleep", "--node-name", "n1"])
    assert not same_process(argv, None)


# -- minik kubeconfig user -------------------------------------------------------------------------


def _cluster_state(tmp_path: Path) -> Path:
    import json

    from cli.supervisor import ensure_credentials

    state = tmp_path / "state"
    cfg = settings({"node_name": "n1", "advertise_address": "192.0.2.10", "api_port": 16443})
    state.mkdir()
    (state / "config.json").write_text(json.dumps(cfg))
    ensure_credentials(cfg, state)
    return state


def test_kubeconfig_user_prints_a_kubeconfig_with_its_own_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    import yaml
    from cryptography import x509
    from typer.testing import CliRunner

    from apimachinery.pki import subject_of
    from cli.main import app

    state = _cluster_state(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "untouched"))
    result = CliRunner().invoke(
        app, ["kubeconfig", "user", "alice", "--group", "dev", "--group", "ops", "--state-dir", str(state)]
    )
    assert result.exit_code == 0, result.output
    conf = yaml.safe_load(result.stdout)
    assert conf["current-context"] == "minik-alice"
    assert conf["contexts"] == [
        {
            "name": "minik-alice",
            "context": {"cluster": "minik-alice", "user": "minik-alice", "namespace": "default"},
        }
    ]
    cluster = conf["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:16443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == (state / "pki" / "ca.crt").read_bytes()
    cert = base64.b64decode(conf["users"][0]["user"]["client-certificate-data"])
    assert subject_of(cert) == ("alice", ("dev", "ops"))
    ca = x509.load_pem_x509_certificate((state / "pki" / "ca.crt").read_bytes())
    x509.load_pem_x509_certificate(cert).verify_directly_issued_by(ca)
    assert not (tmp_path / "untouched").exists()  # printed only
    assert (state / "pki" / "user-alice.crt").read_bytes() == cert


def test_kubeconfig_user_merge_adds_a_context_and_keeps_the_current_one(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from cli.main import app

    state = _cluster_state(tmp_path)
    target = tmp_path / "config"
    target.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "prod", "cluster": {"server": "https://prod"}}],
                "users": [{"name": "prod", "user": {"token": "t"}}],
                "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod"}}],
                "current-context": "prod",
            }
        )
    )
    args = ["kubeconfig", "user", "bob", "-g", "qa", "--merge", "--state-dir", str(state)]
    result = CliRunner().invoke(app, [*args, "--kubeconfig", str(target), "--context", "bob-ctx"])
    assert result.exit_code == 0, result.output
    assert 'context "bob-ctx" for user "bob" (qa)' in result.output
    conf = yaml.safe_load(target.read_text())
    assert conf["current-context"] == "prod"
    assert [c["name"] for c in conf["contexts"]] == ["prod", "bob-ctx"]
    assert [u["name"] for u in conf["users"]] == ["prod", "bob-ctx"]
    assert oct(target.stat().st_mode & 0o777) == "0o600"


def test_kubeconfig_user_refuses_reserved_names_and_a_missing_cluster(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, ["kubeconfig", "user", "alice", "--state-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no cluster CA" in result.output and "minik up" in result.output
    state = _cluster_state(tmp_path)
    result = CliRunner().invoke(app, ["kubeconfig", "user", "system:node:n1", "--state-dir", str(state)])
    assert result.exit_code == 1
    assert "reserved" in result.output
    assert not list((state / "pki").glob("user-*"))


# -- the lab (its compose file and HAProxy: tests/unit/test_lab_compose.py) ------------------------------


def test_lab_status_names_each_containers_segments() -> None:
    from types import SimpleNamespace

    from cli.lab import container_segments

    router = SimpleNamespace(
        attrs={
            "NetworkSettings": {
                "Networks": {
                    "p_segment-b": {"IPAddress": "10.0.0.138"},
                    "p_segment-a": {"IPAddress": "10.0.0.10"},
                }
            }
        },
        labels={},
    )
    assert container_segments(router, "p") == (["segment-a", "segment-b"], ["10.0.0.10", "10.0.0.138"])
    # a stopped container has no networks: its compose label says where it belongs
    stopped = SimpleNamespace(
        attrs={"NetworkSettings": {"Networks": {}}}, labels={"io.minik.lab.segment": "segment-b"}
    )
    assert container_segments(stopped, "p") == (["segment-b"], [])


def json_env(svc: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in (svc.get("environment") or {}).items())


def test_merging_into_someone_elses_kubeconfig_keeps_its_owner(tmp_path: Path) -> None:
    import os

    from cli.cluster import merge_into_user_kubeconfig

    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    path = tmp_path / "config"
    path.write_text("apiVersion: v1\nkind: Config\n")
    os.chown(path, 1234, 1235)
    entries = {"clusters": [{"name": "c", "cluster": {"server": "https://x"}}], "current-context": "c"}
    merge_into_user_kubeconfig(entries, path=path)
    st = path.stat()
    assert (st.st_uid, st.st_gid) == (1234, 1235)
    assert oct(st.st_mode & 0o777) == "0o600"
    assert "https://x" in path.read_text()


def test_health_probes_nothing_already_found_healthy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import os
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from cli import cluster

    me = os.getpid()  # a live process stands for every component
    (tmp_path / "status.json").write_text(json.dumps({name: {"pid": me} for name in cluster.ORDER}))
    probed: list[str] = []

    def fake_probes(cfg: Any, started: Any, api: Any, state: Any) -> dict[str, Any]:
        def probe(name: str) -> Any:
            def run() -> cluster.Health:
                probed.append(name)
                return cluster.Health(False, "starting")

            return run

        return {name: probe(name) for name in cluster.ORDER}

    monkeypatch.setattr(cluster, "probes", fake_probes)
    with ThreadPoolExecutor(2) as pool, httpx.Client() as api:
        report = cluster.health(tmp_path, settings({}), pool, api, skip={"etcd", "apiserver"})
    assert sorted(probed) == sorted(set(cluster.ORDER) - {"etcd", "apiserver"})
    assert report["etcd"].ok and report["apiserver"].ok and not report["kubelet"].ok
    assert list(report) == cluster.ORDER


def test_ensure_kube_dns_creates_the_service_and_moves_the_endpoints() -> None:
    import json as jsonlib

    import httpx

    from cli.supervisor import ensure_kube_dns

    store: dict[str, dict[str, Any]] = {}
    calls: list[tuple[str, str]] = []
    sent_versions: list[str | None] = []

    def handler(req: httpx.Request) -> httpx.Response:
        path = req.url.path
        calls.append((req.method, path))
        if req.method == "GET":
            obj = store.get(path)
            return httpx.Response(200, json=obj) if obj else httpx.Response(404, json={"kind": "Status"})
        body = jsonlib.loads(req.content)
        name = body["metadata"]["name"]
        key = f"{path}/{name}" if req.method == "POST" else path
        if req.method == "PUT":  # an update names the version it replaces
            sent_versions.append(body["metadata"].get("resourceVersion"))
        body["metadata"]["resourceVersion"] = str(len(calls))
        store[key] = body
        return httpx.Response(201 if req.method == "POST" else 200, json=body)

    base = "/api/v1/namespaces/kube-system"
    with httpx.Client(base_url="https://api", transport=httpx.MockTransport(handler)) as api:
        ensure_kube_dns(api, "10.96.0.10", "10.244.0.1", "n1")
        assert store[f"{base}/services/kube-dns"]["spec"]["clusterIP"] == "10.96.0.10"
        assert store[f"{base}/endpoints/kube-dns"]["subsets"][0]["addresses"] == [
            {"ip": "10.244.0.1", "nodeName": "n1"}
        ]
        calls.clear()
        ensure_kube_dns(api, "10.96.0.10", "10.244.0.1", "n1")  # nothing changed: nothing written
        assert [m for m, _ in calls] == ["GET", "GET"]
        ensure_kube_dns(api, "10.96.0.10", "10.244.7.1", "n1")  # the node's pod CIDR changed
        assert ("PUT", f"{base}/endpoints/kube-dns") in calls
        eps = store[f"{base}/endpoints/kube-dns"]
        assert eps["subsets"][0]["addresses"][0]["ip"] == "10.244.7.1"
        assert sent_versions == ["4"]  # the stored Endpoints' resourceVersion (the 4th request made them)


def test_kubelet_serving_ip_prefixes_given_or_the_advertise_network() -> None:
    base = {"advertise_address": "127.0.0.1", "node_name": "t-n1"}

    def prefixes(cfg: dict[str, Any]) -> str:
        cm = {c.name: c for c in components(settings(cfg), Path("/state"))}["controller-manager"]
        return cm.argv[cm.argv.index("--kubelet-serving-ip-prefixes") + 1]

    # a loopback advertise address has no network: no IP is approved without an admin
    assert prefixes(base) == ""
    given = {**base, "kubelet_serving_ip_prefixes": "10.213.0.0/25,10.213.0.128/25"}
    assert prefixes(given) == "10.213.0.0/25,10.213.0.128/25"
