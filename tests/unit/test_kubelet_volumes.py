from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from kubelet import volumes
from kubelet.envvars import PodSources
from kubelet.node import node_status
from kubelet.server import exit_status
from kubelet.volumes import (
    MountError,
    VolumeManager,
    VolumeSource,
    check_host_path,
    volume_files,
    write_files,
)

POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"a": "b"}},
    "spec": {"containers": [{"name": "c"}]},
}


def test_config_map_and_secret_items_and_modes() -> None:
    cms = {"cm": {"data": {"x": "1", "y": "2"}}}
    secrets = {"s": {"data": {"k": base64.b64encode(b"v").decode()}}}
    files = volume_files(
        {"configMap": {"name": "cm", "items": [{"key": "x", "path": "dir/x.txt", "mode": 0o600}]}},
        POD,
        PodSources(cms, secrets),
    )
    assert files == {"dir/x.txt": (b"1", 0o600)}
    files = volume_files({"secret": {"secretName": "s", "defaultMode": 0o400}}, POD, PodSources(cms, secrets))
    assert files == {"k": (b"v", 0o400)}
    with pytest.raises(MountError):
        volume_files({"configMap": {"name": "nope"}}, POD, PodSources({"nope": None}))
    assert (
        volume_files({"configMap": {"name": "nope", "optional": True}}, POD, PodSources({"nope": None})) == {}
    )


def test_downward_and_projected() -> None:
    vol = {
        "projected": {
            "sources": [
                {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                {"configMap": {"name": "cm"}},
            ]
        }
    }
    files = volume_files(vol, POD, PodSources({"cm": {"data": {"x": "1"}}}))
    assert files == {"name": (b"p", 0o644), "x": (b"1", 0o644)}


def test_write_files_exact_and_in_place(tmp_path: Path) -> None:
    d = tmp_path / "v"
    assert write_files(d, {"a": (b"1", 0o644), "sub/b": (b"2", 0o600)})
    assert not write_files(d, {"a": (b"1", 0o644), "sub/b": (b"2", 0o600)})
    assert write_files(d, {"a": (b"changed", 0o644)})
    assert (d / "a").read_bytes() == b"changed" and not (d / "sub/b").exists()
    assert stat.S_IMODE((d / "a").stat().st_mode) == 0o644
    with pytest.raises(MountError):
        write_files(d, {"../escape": (b"x", 0o644)})


def test_host_path_type_checks(tmp_path: Path) -> None:
    check_host_path(str(tmp_path / "new"), "DirectoryOrCreate")
    assert (tmp_path / "new").is_dir()
    with pytest.raises(MountError, match="does not exist"):
        check_host_path(str(tmp_path / "missing"), "Directory")
    with pytest.raises(MountError, match="not a File"):
        check_host_path(str(tmp_path), "File")


def test_mounts_sub_path_and_read_only(tmp_path: Path) -> None:
    sources = {"data": VolumeSource(str(tmp_path)), "mem": VolumeSource("vol1", "volume")}
    c = {
        "volumeMounts": [
            {"name": "data", "mountPath": "/d", "subPath": "x", "readOnly": True},
            {"name": "mem", "mountPath": "/m"},
        ]
    }
    mounts = VolumeManager.mounts_for(c, sources)
    assert (mounts[0].source, mounts[0].read_only) == (str(tmp_path / "x"), True)
    assert (mounts[1].type, mounts[1].source) == ("volume", "vol1")
    with pytest.raises(MountError):
        VolumeManager.mounts_for(
            {"volumeMounts": [{"name": "data", "mountPath": "/d", "subPath": "../x"}]}, sources
        )


def test_node_status_shape() -> None:
    status = node_status(
        {"cpus": 2, "memory": 2048 * 1024, "disk": 0},
        {"runtime": "docker://20.10", "arch": "x86_64"},
        "10.0.0.1",
        "n",
        10250,
        [],
    )
    assert status["capacity"] == {"cpu": "2", "memory": "2048Ki", "pods": "110", "ephemeral-storage": "0Ki"}
    assert status["nodeInfo"]["architecture"] == "amd64"
    assert [c["type"] for c in status["conditions"]] == [
        "MemoryPressure",
        "DiskPressure",
        "PIDPressure",
        "Ready",
    ]


def test_exec_exit_status() -> None:
    assert exit_status(0)["status"] == "Success"
    assert exit_status(3)["details"]["causes"][0] == {"reason": "ExitCode", "message": "3"}


def test_needs_pod_ip_for_downward_api_volumes_only() -> None:
    item = {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}
    name = {"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}
    assert volumes.needs_pod_ip({"spec": {"volumes": [{"name": "d", "downwardAPI": {"items": [item]}}]}})
    projected = {"sources": [{"downwardAPI": {"items": [item]}}]}
    assert volumes.needs_pod_ip({"spec": {"volumes": [{"name": "p", "projected": projected}]}})
    assert not volumes.needs_pod_ip({"spec": {"volumes": [{"name": "d", "downwardAPI": {"items": [name]}}]}})
    assert not volumes.needs_pod_ip({"spec": {}})


# --- the service account token projection (kubelet/sa_token.py) ---------------------------------

API_ACCESS = {
    "name": "kube-api-access-abcde",
    "projected": {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
    },
}
SA_POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
    "spec": {"serviceAccountName": "robot", "containers": [], "volumes": [API_ACCESS]},
}


def test_projected_api_access_volume() -> None:
    from kubelet import sa_token

    [(vol_name, source)] = sa_token.token_sources(SA_POD)
    assert vol_name == "kube-api-access-abcde"
    sources = PodSources(
        {"kube-root-ca.crt": {"data": {"ca.crt": "PEM"}}}, tokens={sa_token.source_id(source): "jwt"}
    )
    files = volume_files(API_ACCESS, SA_POD, sources)
    assert files == {"token": (b"jwt", 0o644), "ca.crt": (b"PEM", 0o644), "namespace": (b"ns", 0o644)}
    # no token fetched: the volume cannot be set up (FailedMount), rather than a missing file
    with pytest.raises(volumes.MountError, match="token"):
        volume_files(API_ACCESS, SA_POD, PodSources({"kube-root-ca.crt": {"data": {"ca.crt": "PEM"}}}))


def test_token_request_bound_to_the_pod() -> None:
    from kubelet import sa_token

    key = sa_token.token_key(SA_POD, {"expirationSeconds": 3607})
    body = sa_token.token_request(key)
    assert body["metadata"] == {"name": "robot", "namespace": "ns"}
    assert body["spec"] == {
        "audiences": None,  # the API server's own audience
        "expirationSeconds": 3607,
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u1"},
    }
    with_audience = sa_token.token_request(sa_token.token_key(SA_POD, {"audience": "vault"}))
    assert with_audience["spec"]["audiences"] == ["vault"]
    assert with_audience["spec"]["expirationSeconds"] == 3600
    default_sa = sa_token.token_key(
        {"metadata": {"name": "q", "namespace": "ns", "uid": "u2"}, "spec": {}}, {}
    )
    assert default_sa.service_account == "default"


def test_token_refresh_at_80_percent_or_24_hours() -> None:
    from kubelet.sa_token import Token

    assert Token("t", 1000.0, 1000.0 + 3600).refresh_at() == 1000.0 + 2880
    assert Token("t", 0.0, 365 * 86400.0).refresh_at() == 86400.0


def test_token_manager_caches_refreshes_and_keeps_a_valid_token_on_errors() -> None:
    import asyncio

    from apimachinery import errors
    from kubelet import sa_token

    now = [1_000_000.0]
    calls: list[tuple[str, str, dict[str, object], str | None]] = []
    fail = [False]

    class FakeClient:
        async def create_subresource(
            self, info: object, name: str, sub: str, body: dict[str, object], ns: str | None
        ) -> dict[str, object]:
            calls.append((name, sub, body, ns))
            if fail[0]:
                raise errors.ServiceUnavailable("down")
            from datetime import UTC, datetime

            exp = datetime.fromtimestamp(now[0] + 600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return {"status": {"token": f"tok-{len(calls)}", "expirationTimestamp": exp}}

    async def scenario() -> None:
        mgr = sa_token.TokenManager(FakeClient(), clock=lambda: now[0])
        source = {"expirationSeconds": 3607}
        assert await mgr.get(SA_POD, source) == "tok-1"
        assert calls[0][:2] == ("robot", "token") and calls[0][3] == "ns"
        # the server shortened the lifetime to 600 s: refresh at 480 s
        assert mgr.next_refresh("u1") == now[0] + 480
        now[0] += 479
        assert await mgr.get(SA_POD, source) == "tok-1"
        now[0] += 2
        assert await mgr.get(SA_POD, source) == "tok-2"
        # a failed refresh keeps the token that is still valid
        now[0] += 500
        fail[0] = True
        assert await mgr.get(SA_POD, source) == "tok-2"
        now[0] += 200  # now expired: the mount fails
        with pytest.raises(sa_token.TokenError, match="failed to fetch token"):
            await mgr.get(SA_POD, source)
        mgr.forget_pod("u1")
        assert mgr.next_refresh("u1") is None

    asyncio.run(scenario())


def test_refreshed_token_rewrites_the_file_atomically(tmp_path: Path) -> None:
    import asyncio
    from datetime import UTC, datetime

    from kubelet import sa_token

    now = [2_000_000.0]
    issued: list[str] = []

    class FakeClient:
        async def create_subresource(self, *_args: object) -> dict[str, object]:
            issued.append(f"tok-{len(issued) + 1}")
            exp = datetime.fromtimestamp(now[0] + 600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return {"status": {"token": issued[-1], "expirationTimestamp": exp}}

    async def scenario() -> None:
        mgr = sa_token.TokenManager(FakeClient(), clock=lambda: now[0])
        vm = volumes.VolumeManager(str(tmp_path), runtime=None)
        cms = {"kube-root-ca.crt": {"data": {"ca.crt": "PEM"}}}

        async def sync() -> Path:
            tokens = {
                sa_token.source_id(s): await mgr.get(SA_POD, s) for _, s in sa_token.token_sources(SA_POD)
            }
            mounted = await vm.setup(SA_POD, PodSources(cms, tokens=tokens), {})
            return Path(mounted["kube-api-access-abcde"].source) / "token"

        path = await sync()
        assert path.read_bytes() == b"tok-1"
        inode = path.stat().st_ino
        now[0] += 300  # not yet due: the same token, the file untouched
        assert (await sync()).stat().st_ino == inode
        now[0] += 181  # past 80 % of 600 s
        path = await sync()
        assert path.read_bytes() == b"tok-2"
        assert path.stat().st_ino != inode  # replaced by a rename, never written in place
        assert sorted(p.name for p in path.parent.iterdir()) == ["ca.crt", "namespace", "token"]

    asyncio.run(scenario())
