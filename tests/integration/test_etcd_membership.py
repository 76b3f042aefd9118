"""etcd membership with real etcd processes over TLS: grow one member to three (each added as a
learner, started with --initial-cluster-state existing, promoted once in sync), an API server on
all three; one member down: writes continue; two down: the API answers 503 naming etcd; back up:
every object written before is there. Then a member is removed."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.etcdmember import EtcdMemberError, EtcdMembers, initial_cluster
from testkit import certs
from testkit.host import free_port, scratch_dir
from testkit.processes import APIServerProcess, Process, etcd_binary
from testkit.wait import wait_for


class TLSEtcd(Process):
    """One etcd member serving clients over TLS (client certificates required), peers on loopback."""

    def __init__(self, name: str, root: Path) -> None:
        self.member = name
        self.data = root / name
        self.client_port, self.peer_port = free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.client_port}"
        self.peer_url = f"http://127.0.0.1:{self.peer_port}"
        super().__init__(f"etcd-{name}", [], root / f"{name}.log")

    def start_member(self, initial: str, state: str) -> TLSEtcd:
        crt, key = certs.session_pki().serving_cert(f"etcd-{self.member}", ["127.0.0.1"], client_auth=True)
        self.argv = [
            etcd_binary(),
            *("--name", self.member, "--data-dir", str(self.data), "--log-level", "warn"),
            *("--listen-client-urls", self.url, "--advertise-client-urls", self.url),
            *("--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url),
            *("--initial-cluster", initial, "--initial-cluster-state", state),
            *("--cert-file", str(crt), "--key-file", str(key)),
            *("--trusted-ca-file", str(certs.ca_file()), "--client-cert-auth"),
        ]
        self.start()
        self.wait_http(f"{self.url}/health", verify=certs.ssl_context(ETCD_CLIENT()))
        return self

    def restart(self) -> None:
        self.start()  # same argv: the data directory holds the membership


def ETCD_CLIENT() -> tuple[Path, Path]:  # noqa: N802 - a constant made lazily (the session PKI)
    return certs.user_cert("etcd-client")


@pytest.fixture()
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with scratch_dir(tmp_path_factory, "etcd-members") as path:
        yield path


def members_client(*endpoints: str) -> EtcdMembers:
    crt, key = ETCD_CLIENT()
    return EtcdMembers(list(endpoints), cafile=str(certs.ca_file()), certfile=str(crt), keyfile=str(key))


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}}


def test_grow_lose_quorum_recover_and_remove(root: Path) -> None:
    e1, e2, e3 = TLSEtcd("e1", root), TLSEtcd("e2", root), TLSEtcd("e3", root)
    api: APIServerProcess | None = None
    try:
        e1.start_member(f"e1={e1.peer_url}", "new")
        with members_client(e1.url) as members:
            assert [m.name for m in members.members()] == ["e1"]
            for new in (e2, e3):
                added, current = members.add(new.peer_url, learner=True)
                assert added.is_learner
                new.start_member(initial_cluster(current, new.member, new.peer_url), "existing")
                promoted = members.wait_promoted(added.id)
                assert not next(m for m in promoted if m.id == added.id).is_learner
            listed = members.members()
            assert sorted(m.name for m in listed) == ["e1", "e2", "e3"]
            assert not any(m.is_learner for m in listed)

        crt, key = ETCD_CLIENT()
        api = APIServerProcess(",".join(e.url for e in (e1, e2, e3)))
        api.start(
            extra=[
                *("--etcd-cafile", str(certs.ca_file())),
                *("--etcd-certfile", str(crt), "--etcd-keyfile", str(key)),
            ]
        )
        path = "/api/v1/namespaces/default/configmaps"
        with api.http(timeout=60) as http:
            for i in range(5):
                assert http.post(path, json=configmap(f"three-{i}")).status_code == 201

            e3.stop(signal.SIGKILL)
            for i in range(5):
                r = http.post(path, json=configmap(f"two-{i}"))
                assert r.status_code == 201, r.text

            e2.stop(signal.SIGKILL)
            r = http.post(path, json=configmap("lost"))
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["kind"] == "Status" and body["reason"] in ("ServiceUnavailable", "InternalError")
            assert "etcd" in body["message"]

            e2.restart()
            e3.restart()

            def names() -> set[str] | None:
                try:
                    r = http.get(path)
                except httpx.HTTPError:
                    return None
                if r.status_code != 200:
                    return None
                return {o["metadata"]["name"] for o in r.json()["items"]}

            expected = {f"three-{i}" for i in range(5)} | {f"two-{i}" for i in range(5)}
            got = wait_for(lambda: (n := names()) is not None and expected <= n and n, timeout=60)
            assert expected <= got
            r = wait_for(
                lambda: (x := http.post(path, json=configmap("after"))).status_code == 201 and x, timeout=60
            )

        with members_client(e2.url, e1.url) as members:
            gone = members.find(name="e3")
            assert gone is not None
            left = members.remove(gone.id)
            assert sorted(m.name for m in left) == ["e1", "e2"]
            with pytest.raises(EtcdMemberError):
                members.remove(gone.id)  # etcd: member not found
    finally:
        if api is not None:
            api.cleanup()
        for e in (e1, e2, e3):
            e.stop(signal.SIGKILL)
        for leftover in root.glob("*.log"):
            os.unlink(leftover)
