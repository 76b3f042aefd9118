"""cli.uploadcerts: the encrypted control-plane keys (round trip, tampering, a wrong key) and
minik-config's parsing; the join's refusal of a malformed key and the supervisor's etcd flags."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from cli import uploadcerts as uc
from cli.supervisor import components, etcd_client_url, settings

FILES = {name: f"content of {name}\n".encode() for name in uc.SHARED_FILES}


def test_round_trip() -> None:
    key = uc.new_certificate_key()
    assert len(key) == 64
    secret = uc.certs_secret(FILES, key)
    assert secret["metadata"] == {"name": "minik-certs", "namespace": "kube-system"}
    for name, value in secret["data"].items():
        assert FILES[name] not in base64.b64decode(value)  # encrypted
    assert uc.decrypt_secret(secret, key) == FILES


def test_each_encryption_has_its_own_nonce() -> None:
    key = bytes(32)
    assert uc.encrypt(key, b"x") != uc.encrypt(key, b"x")


def test_wrong_key_fails_the_tag() -> None:
    secret = uc.certs_secret(FILES, uc.new_certificate_key())
    with pytest.raises(uc.CertsError, match="does not decrypt"):
        uc.decrypt_secret(secret, uc.new_certificate_key())


def test_tampered_value_fails_the_tag() -> None:
    key = uc.new_certificate_key()
    secret = uc.certs_secret(FILES, key)
    blob = bytearray(base64.b64decode(secret["data"]["ca.key"]))
    blob[-1] ^= 1
    secret["data"]["ca.key"] = base64.b64encode(bytes(blob)).decode()
    with pytest.raises(uc.CertsError, match="does not decrypt"):
        uc.decrypt_secret(secret, key)


@pytest.mark.parametrize("data", [{}, {"ca.key": "!!notbase64"}])
def test_incomplete_or_malformed_secret(data: dict[str, str]) -> None:
    key = uc.new_certificate_key()
    secret = uc.certs_secret(FILES, key)
    if data:
        secret["data"].update(data)
    else:
        del secret["data"]["sa.pub"]
    with pytest.raises(uc.CertsError):
        uc.decrypt_secret(secret, key)


@pytest.mark.parametrize("key", ["", "zz" * 32, "ab" * 16, "ab" * 33])
def test_malformed_keys(key: str) -> None:
    with pytest.raises(uc.CertsError, match="--certificate-key"):
        uc.parse_certificate_key(key)


def test_owner_reference() -> None:
    owner = {"metadata": {"name": "bootstrap-token-abcdef", "uid": "u-1"}}
    ref = uc.certs_secret(FILES, uc.new_certificate_key(), owner)["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"]) == ("Secret", "bootstrap-token-abcdef", "u-1")


def test_shared_files_written_private(tmp_path: Path) -> None:
    uc.write_shared_files(tmp_path, FILES)
    assert uc.read_shared_files(tmp_path) == FILES
    assert (tmp_path / "pki" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "pki" / "ca.crt").stat().st_mode & 0o777 == 0o644


def test_read_shared_files_missing(tmp_path: Path) -> None:
    with pytest.raises(uc.CertsError, match="control plane"):
        uc.read_shared_files(tmp_path)


CONFIG = uc.ClusterConfig(
    cluster_cidr="10.244.0.0/16",
    service_cidr="10.96.0.0/12",
    cluster_domain="cluster.local",
    control_plane_endpoint="10.0.0.10:6443",
    pod_network_backend="vxlan",
    etcd_endpoints=("https://10.0.0.1:2379",),
)


def test_config_map_round_trip() -> None:
    cm = uc.config_map(CONFIG)
    assert cm["data"]["etcdEndpoints"] == "https://10.0.0.1:2379"
    assert uc.parse_config(cm) == CONFIG


def test_config_without_endpoint_or_etcd() -> None:
    cm = uc.config_map(CONFIG)
    cm["data"]["controlPlaneEndpoint"] = ""
    del cm["data"]["etcdEndpoints"]
    parsed = uc.parse_config(cm)
    assert parsed.control_plane_endpoint == "" and parsed.etcd_endpoints == ()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("clusterCIDR", "not-a-cidr"),
        ("serviceCIDR", ""),
        ("controlPlaneEndpoint", "10.0.0.10"),
        ("controlPlaneEndpoint", "host:99999"),
        ("etcdEndpoints", "http://10.0.0.1:2379"),
        ("podNetworkBackend", "flannel"),
    ],
)
def test_malformed_config(key: str, value: str) -> None:
    cm = uc.config_map(CONFIG)
    cm["data"][key] = value
    with pytest.raises(uc.ConfigError, match=key):
        uc.parse_config(cm)


def test_config_data_not_a_map() -> None:
    with pytest.raises(uc.ConfigError):
        uc.parse_config({"data": ["x"]})


def test_etcd_endpoints_added_once_and_removed() -> None:
    two = uc.with_etcd_endpoint(CONFIG, "https://10.0.0.2:2379")
    assert two.etcd_endpoints == ("https://10.0.0.1:2379", "https://10.0.0.2:2379")
    assert uc.with_etcd_endpoint(two, "https://10.0.0.2:2379") == two
    assert uc.with_etcd_endpoint(two, "https://10.0.0.1:2379", present=False).etcd_endpoints == (
        "https://10.0.0.2:2379",
    )


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("10.0.0.10:6443", "https://10.0.0.10:6443"),
        ("lb.example:443", "https://lb.example:443"),
        ("[fd00::1]:6443", "https://[fd00::1]:6443"),
    ],
)
def test_endpoint_url(endpoint: str, url: str) -> None:
    assert uc.endpoint_url(endpoint) == url


def _argv(cfg: dict[str, object], name: str, state: Path) -> list[str]:
    return next(c.argv for c in components(cfg, state) if c.name == name)


def test_etcd_flags_of_a_control_plane_that_joined(tmp_path: Path) -> None:
    cfg = {
        "role": "control-plane",
        "advertise_address": "10.0.0.2",
        "etcd_port": 2379,
        "etcd_name": "cp-2",
        "etcd_initial_cluster": "minik=https://10.0.0.1:2380,cp-2=https://10.0.0.2:2380",
    }
    argv = _argv(cfg, "etcd", tmp_path)
    flag = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1) if argv[i].startswith("--")}
    assert flag["--name"] == "cp-2"
    assert flag["--initial-cluster-state"] == "existing"
    assert flag["--listen-client-urls"] == "https://127.0.0.1:2379,https://10.0.0.2:2379"
    assert flag["--initial-advertise-peer-urls"] == "https://10.0.0.2:2380"
    assert etcd_client_url(settings(cfg)) == "https://10.0.0.2:2379"
    names = [c.name for c in components(cfg, tmp_path)]
    assert names == ["etcd", "apiserver", "controller-manager", "scheduler", "kubelet", "proxy"]


def test_etcd_stays_on_loopback_without_an_endpoint(tmp_path: Path) -> None:
    argv = _argv({"advertise_address": "10.0.0.2"}, "etcd", tmp_path)
    assert argv[argv.index("--listen-client-urls") + 1] == "https://127.0.0.1:2379"
    assert "--initial-cluster-state" not in argv


# ---- join --control-plane's refusals leave no state directory ------------------------------------


def _join(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: uc.ClusterConfig) -> Path:
    from testkit.cpjoin import failed_join, first_control_plane

    files = uc.read_shared_files(first_control_plane(tmp_path / "first"))
    state = tmp_path / "second"
    failed_join(monkeypatch, state, files, files["ca.crt"].decode(), config)
    return state


def test_join_refused_without_control_plane_endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = uc.ClusterConfig(**{**CONFIG.__dict__, "control_plane_endpoint": ""})
    assert not _join(monkeypatch, tmp_path, config).exists()


def test_join_refused_when_etcd_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from testkit.processes import free_port

    config = uc.ClusterConfig(**{**CONFIG.__dict__, "etcd_endpoints": (f"https://127.0.0.1:{free_port()}",)})
    assert not _join(monkeypatch, tmp_path, config).exists()
    assert "etcd unreachable" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("config", "flags", "cidr", "backend"),
    [
        (CONFIG, [], "10.244.0.0/16", "vxlan"),
        (
            uc.ClusterConfig(**{**CONFIG.__dict__, "cluster_cidr": "10.250.0.0/22"}),
            [],
            "10.250.0.0/22",
            "vxlan",
        ),
        (
            CONFIG,
            ["--cluster-cidr", "10.245.0.0/16", "--pod-network-backend", "host-gw"],
            "10.245.0.0/16",
            "host-gw",
        ),
        (None, [], "10.244.0.0/16", "none"),  # a cluster from before minik-config
    ],
)
def test_a_worker_join_learns_the_cluster_cidr_and_backend_from_minik_config(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    config: uc.ClusterConfig | None,
    flags: list[str],
    cidr: str,
    backend: str,
) -> None:
    import typer
    from typer.testing import CliRunner

    import cli.join

    started: list[dict[str, object]] = []
    monkeypatch.setattr(cli.join, "discover", lambda *a: {"ca_pem": "CA"})
    monkeypatch.setattr(cli.join, "fetch_cluster_config", lambda *a: config)
    monkeypatch.setattr(cli.join, "bootstrap_credentials", lambda *a, **kw: None)
    monkeypatch.setattr(cli.join, "node_ready", lambda *a: (False, "not registered yet"))
    monkeypatch.setattr(cli.join, "cluster_dns_ip", lambda *a: "10.96.0.10")
    monkeypatch.setattr(cli.join, "start_node", lambda state, cfg: started.append(cfg))
    app = typer.Typer()
    app.command()(cli.join.join)
    args = ["https://10.0.0.1:6443", "--token", "abcdef.0123456789abcdef", "--state-dir", str(tmp_path)]
    args += ["--node-name", "w1", "--node-ip", "10.0.0.2", "--no-wait", *flags]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (started[0]["cluster_cidr"], started[0]["pod_network_backend"]) == (cidr, backend)


def test_certificate_key_without_control_plane_is_refused(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    import cli.join

    app = typer.Typer()
    app.command()(cli.join.join)
    args = ["https://10.0.0.1:6443", "--token", "abcdef.0123456789abcdef", "--state-dir", str(tmp_path / "s")]
    r = CliRunner().invoke(app, [*args, "--certificate-key", "ab" * 32])
    assert r.exit_code == 2 and "--control-plane" in r.output
    r = CliRunner().invoke(app, [*args, "--control-plane"])
    assert r.exit_code == 2 and "--certificate-key" in r.output
    r = CliRunner().invoke(app, [*args, "--control-plane", "--certificate-key", "xyz"])
    assert r.exit_code == 2 and "hexadecimal" in r.output
    assert not (tmp_path / "s").exists()
