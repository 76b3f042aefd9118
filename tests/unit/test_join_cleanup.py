"""A control-plane join that fails, and the upload it needs: only what the join made is removed (a
reused state directory keeps its own files), its etcd URL and Node are taken back, the uploaded CA
is the pinned one, and ``token create --control-plane`` uploads before it makes a token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from apimachinery.pki import PKI
from cli import join as join_mod
from cli import uploadcerts as uc
from cli.commands import token as token_mod
from cli.kube import CLIError
from testkit.cpjoin import failed_join, first_control_plane
from testkit.processes import free_port

CONFIG = uc.ClusterConfig(
    cluster_cidr="10.244.0.0/16",
    service_cidr="10.96.0.0/12",
    cluster_domain="cluster.local",
    control_plane_endpoint="10.0.0.10:6443",
    pod_network_backend="vxlan",
    etcd_endpoints=(f"https://127.0.0.1:{free_port()}",),  # nothing listens: the join fails there
)


def run_join(monkeypatch: pytest.MonkeyPatch, state: Path, files: dict[str, bytes], ca_pem: str) -> None:
    failed_join(monkeypatch, state, files, ca_pem, CONFIG)


def test_a_failed_join_keeps_what_a_reused_state_directory_held(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files = uc.read_shared_files(first_control_plane(tmp_path / "first"))
    state = tmp_path / "second"
    (state / "logs").mkdir(parents=True)
    (state / "logs" / "mine.log").write_text("kept")
    (state / "notes.txt").write_text("kept")
    run_join(monkeypatch, state, files, files["ca.crt"].decode())
    assert (state / "logs" / "mine.log").read_text() == "kept"
    assert (state / "notes.txt").read_text() == "kept"
    for made in ("pki", "kubeconfigs", "encryption-config.yaml", "config.json", "kubelet"):
        assert not (state / made).exists(), made


def test_a_join_refuses_uploaded_keys_of_another_ca(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = uc.read_shared_files(first_control_plane(tmp_path / "first"))
    other = PKI(tmp_path / "other").ca_pem()
    state = tmp_path / "second"
    run_join(monkeypatch, state, files, other)
    assert "another CA than the one discovery pinned" in " ".join(capsys.readouterr().out.split())
    assert not state.exists()
    assert join_mod.same_ca(files["ca.crt"], files["ca.crt"].decode())
    assert not join_mod.same_ca(files["ca.crt"], other) and not join_mod.same_ca(b"junk", other)


def fake_cluster(requests: list[tuple[str, str, Any]], node_status: int = 200) -> httpx.Client:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": uc.CONFIG_MAP, "namespace": uc.NAMESPACE, "resourceVersion": "7"},
        "data": uc.with_etcd_endpoint(CONFIG, "https://10.0.0.2:2379", True).data(),
    }

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        requests.append((request.method, request.url.path, body))
        if request.url.path.endswith(f"/configmaps/{uc.CONFIG_MAP}"):
            return httpx.Response(200, json=body or cm)
        return httpx.Response(node_status, json={"kind": "Status"})

    return httpx.Client(base_url="https://cluster", transport=httpx.MockTransport(handle))


@pytest.mark.parametrize("node_existed", [False, True])
def test_a_failed_join_takes_its_etcd_url_and_node_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, node_existed: bool
) -> None:
    requests: list[tuple[str, str, Any]] = []
    monkeypatch.setattr(join_mod, "admin_client", lambda state, server: fake_cluster(requests))
    join_mod.undo_registration(tmp_path, "https://cluster", "cp-2", "https://10.0.0.2:2379", node_existed)
    [put] = [r for r in requests if r[0] == "PUT"]
    assert put[2]["data"]["etcdEndpoints"] == ",".join(CONFIG.etcd_endpoints)
    assert put[2]["metadata"]["resourceVersion"] == "7"
    deletes = [r[1] for r in requests if r[0] == "DELETE"]
    assert deletes == ([] if node_existed else ["/api/v1/nodes/cp-2"])


def test_node_exists_is_true_unless_the_server_says_404(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for status, want in ((200, True), (404, False), (403, True)):
        monkeypatch.setattr(join_mod, "admin_client", lambda state, server, s=status: fake_cluster([], s))
        assert join_mod.node_exists(tmp_path, "https://cluster", "cp-2") is want


class FakeKube:
    """What ``token create`` uses of a Kube: its kubeconfig's server and CA, and a recording client."""

    def __init__(self, ca_pem: str) -> None:
        self.created: list[str] = []
        self.config = type(
            "C", (), {"server": "https://127.0.0.1:6443", "ca_data": ca_pem, "ca_file": None}
        )()
        self.client = self

    def get(self, kind: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        if name == uc.CONFIG_MAP:
            return uc.config_map(CONFIG)
        return {"data": {}}

    def create(self, kind: Any, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        self.created.append(obj["metadata"]["name"])
        return {**obj, "metadata": {**obj["metadata"], "uid": "u-1"}}

    def delete(self, kind: Any, name: str, namespace: str | None = None) -> None:
        pass


def create_control_plane_token(monkeypatch: pytest.MonkeyPatch, k: FakeKube, state: Path) -> None:
    monkeypatch.setattr(token_mod, "kube", lambda ctx: k)
    monkeypatch.setattr(token_mod, "ensure_cluster_info", lambda *a: None)
    token_mod.create(
        None,  # type: ignore[arg-type]
        token="abcdef.0123456789abcdef",
        ttl="1h",
        description="",
        usages=list(token_mod.USAGES),
        groups=[token_mod.DEFAULT_GROUP],
        print_join_command=False,
        control_plane=True,
        state_dir=state,
    )


def test_token_create_control_plane_uploads_before_the_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = first_control_plane(tmp_path / "cp")
    k = FakeKube((state / "pki" / "ca.crt").read_text())
    create_control_plane_token(monkeypatch, k, state)
    assert k.created[-2:] == [uc.CERTS_SECRET, "bootstrap-token-abcdef"]
    assert "--certificate-key" in capsys.readouterr().out


def test_token_create_control_plane_refuses_another_clusters_ca_and_makes_no_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = first_control_plane(tmp_path / "cp")
    k = FakeKube(PKI(tmp_path / "other").ca_pem())
    with pytest.raises(CLIError, match="not the CA of the API server"):
        create_control_plane_token(monkeypatch, k, state)
    assert k.created == []
    # a state directory without the keys: nothing is made either
    with pytest.raises(CLIError, match="cannot read"):
        create_control_plane_token(monkeypatch, k, tmp_path / "empty")
    assert k.created == []


def test_a_control_plane_that_joined_before_the_etcd_ca_is_not_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli import cluster

    started: list[Path] = []
    monkeypatch.setattr(cluster, "launch_supervisor", lambda state, cfg: started.append(state))
    monkeypatch.setattr(cluster, "wait_components", lambda *a, **k: None)
    (tmp_path / "pki").mkdir()
    with pytest.raises(typer.Exit) as exc:
        cluster.restart_joined(tmp_path, {"role": "control-plane", "node_name": "cp-2"}, 0.0, 5)
    assert exc.value.exit_code == 1 and started == []
    assert "joined before etcd had its own CA" in " ".join(capsys.readouterr().out.split())
