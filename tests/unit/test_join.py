"""``minik join``'s pieces that need no cluster: the kubelet's kubeconfig, the worker's processes,
and the kubelet's choice to rotate its certificate."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from apimachinery.kubeconfig import load_config
from cli.join import kubelet_kubeconfig, worker_components
from cli.supervisor import components
from kubelet.main import _client_with_rotation, parse_args


def _cfg(**extra: object) -> dict[str, object]:
    return {
        "role": "worker",
        "server": "https://10.0.0.1:6443",
        "node_name": "w1",
        "advertise_address": "10.0.0.2",
        "kubelet_port": 20250,
        "iptables_chain_prefix": "W1",
        "dns_ip": "10.96.0.10",
        **extra,
    }


def test_the_kubelet_kubeconfig_names_one_file_for_certificate_and_key(tmp_path: Path) -> None:
    pem, ca = tmp_path / "kubelet-client-current.pem", tmp_path / "ca.crt"
    conf = tmp_path / "kubelet.conf"
    conf.write_text(kubelet_kubeconfig("https://10.0.0.1:6443", ca, pem, "w1"))
    config = load_config(str(conf))
    assert config.server == "https://10.0.0.1:6443"
    assert config.cert_file == config.key_file == str(pem)
    assert config.ca_file == str(ca)


def test_a_worker_runs_only_its_kubelet_and_proxy(tmp_path: Path) -> None:
    procs = components(_cfg(), tmp_path)
    assert [c.name for c in procs] == ["kubelet", "proxy"]
    kubelet, proxy = (c.argv for c in procs)
    assert "--rotate-certificates" in kubelet and "--rotate-server-certificates" in kubelet
    assert kubelet[kubelet.index("--port") + 1] == "20250"
    assert kubelet[kubelet.index("--cluster-dns") + 1] == "10.96.0.10"
    assert kubelet[kubelet.index("--kubeconfig") + 1] == proxy[proxy.index("--kubeconfig") + 1]
    assert "--no-network-policy" not in proxy  # the node may read namespaces and NetworkPolicies
    assert proxy[proxy.index("--metrics-bind-address") + 1] == "127.0.0.1:20249"
    assert procs[1].restart_when is not None and not procs[1].restart_when()
    assert [c.name for c in worker_components(_cfg(proxy=False), tmp_path)] == ["kubelet"]
    rotation = worker_components(_cfg(rotation_fraction=0.4, certificate_expiration_seconds=600), tmp_path)
    argv = rotation[0].argv
    assert argv[argv.index("--certificate-rotation-fraction") + 1] == "0.4"
    assert argv[argv.index("--certificate-expiration-seconds") + 1] == "600"


def test_the_proxy_is_restarted_once_the_certificate_file_changes(tmp_path: Path) -> None:
    import os

    pem = tmp_path / "kubelet" / "pki" / "kubelet-client-current.pem"
    pem.parent.mkdir(parents=True)
    pem.write_text("one")
    proxy = worker_components(_cfg(), tmp_path)[1]
    assert proxy.restart_when is not None
    assert not proxy.restart_when()
    os.utime(pem, (1, 1))
    assert proxy.restart_when()
    assert not proxy.restart_when()


def _args(*extra: str) -> argparse.Namespace:
    return parse_args(["--node-name", "w1", *extra])


def test_rotation_is_on_for_a_file_named_certificate_and_off_for_an_embedded_one(tmp_path: Path) -> None:
    from testkit import certs

    pem, ca = tmp_path / "kubelet-client-current.pem", tmp_path / "ca.crt"
    crt, key = certs.node_client_cert("w1")
    pem.write_bytes(Path(crt).read_bytes() + Path(key).read_bytes())
    ca.write_text(certs.session_pki().ca_pem())
    conf = tmp_path / "kubelet.conf"
    conf.write_text(kubelet_kubeconfig("https://127.0.0.1:1", ca, pem, "w1"))
    rotator, _ = _client_with_rotation(_args(), load_config(str(conf)))
    assert rotator is not None and rotator.path == pem and rotator.fraction is None
    off, _ = _client_with_rotation(_args("--rotate-certificates=false"), load_config(str(conf)))
    assert off is None

    from apimachinery.pki import write_kubeconfig

    embedded = write_kubeconfig(
        tmp_path / "embedded.conf", server="https://127.0.0.1:1", ca_pem=ca.read_text(), cert=(crt, key)
    )
    none, _ = _client_with_rotation(_args(), load_config(str(embedded)))
    assert none is None
    with pytest.raises(SystemExit, match="one PEM file"):
        _client_with_rotation(_args("--rotate-certificates"), load_config(str(embedded)))


def test_join_passes_the_clusters_cidr_to_the_kubelet_and_refuses_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    import cli.join

    started: list[dict[str, object]] = []
    monkeypatch.setattr(cli.join, "discover", lambda *a: {"ca_pem": "CA"})
    monkeypatch.setattr(cli.join, "bootstrap_credentials", lambda *a, **kw: None)
    monkeypatch.setattr(cli.join, "node_ready", lambda *a: (False, "not registered yet"))
    monkeypatch.setattr(cli.join, "cluster_dns_ip", lambda *a: "10.96.0.10")
    monkeypatch.setattr(cli.join, "start_node", lambda state, cfg: started.append(cfg))
    app = typer.Typer()
    app.command()(cli.join.join)
    base = ["https://10.0.0.1:6443", "--token", "abcdef.0123456789abcdef", "--state-dir", str(tmp_path)]
    base += ["--node-name", "w1", "--node-ip", "10.0.0.2", "--no-wait", "--pod-network-backend", "vxlan"]
    r = CliRunner().invoke(app, [*base, "--cluster-cidr", "10.245.0.0/16"])
    assert r.exit_code == 0, r.output
    assert started[0]["cluster_cidr"] == "10.245.0.0/16"
    argv = worker_components(started[0], tmp_path)[0].argv
    assert argv[argv.index("--cluster-cidr") + 1] == "10.245.0.0/16"
    for bad in ("10.245.0.0/33", "fd00::/48", "nonsense"):
        r = CliRunner().invoke(app, [*base, "--cluster-cidr", bad])
        assert r.exit_code == 2 and "--cluster-cidr" in r.output, (bad, r.output)
    assert len(started) == 1


def test_join_says_when_the_nodes_pod_cidr_is_outside_its_cluster_cidr() -> None:
    from cli.join import cluster_cidr_problem

    assert cluster_cidr_problem("10.244.3.0/24", "10.244.0.0/16") == ""
    assert cluster_cidr_problem("", "10.244.0.0/16") == ""  # not known yet: nothing to say
    assert "10.245.3.0/24 is not inside --cluster-cidr 10.244.0.0/16" in cluster_cidr_problem(
        "10.245.3.0/24", "10.244.0.0/16"
    )
    assert cluster_cidr_problem("fd00::/64", "10.244.0.0/16") != ""
