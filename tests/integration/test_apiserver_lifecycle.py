"""The API server across restarts, compaction and etcd outages (each test brings its own processes)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from testkit.host import free_port
from testkit.processes import BIN, APIServerProcess, EtcdProcess

CMS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture()
def cluster() -> Iterator[tuple[EtcdProcess, APIServerProcess]]:
    with EtcdProcess() as etcd, APIServerProcess(etcd.url) as server:
        yield etcd, server


def read_events(
    server: APIServerProcess, path: str, params: dict, count: int, timeout: float = 5
) -> list[dict]:
    params = {"watch": "1", "timeoutSeconds": str(int(timeout)), **params}
    out: list[dict] = []
    with server.http(timeout=timeout + 5) as c, c.stream("GET", path, params=params) as r:
        if r.status_code != 200:
            return [{"type": "HTTP", "object": json.loads(r.read())}]
        for line in r.iter_lines():
            if line:
                out.append(json.loads(line))
                if len(out) >= count:
                    break
    return out


def test_watch_resumes_across_restart_without_gaps_or_repeats(
    cluster: tuple[EtcdProcess, APIServerProcess],
) -> None:
    _, server = cluster
    c = server.http(timeout=10)
    rvs = []
    for i in range(3):
        rvs.append(c.post(CMS, json={"metadata": {"name": f"c{i}"}}).json()["metadata"]["resourceVersion"])
    seen_up_to = rvs[-1]
    for i in range(3, 6):
        c.post(CMS, json={"metadata": {"name": f"c{i}"}})
    server.stop()
    server.start()
    c.post(CMS, json={"metadata": {"name": "c6"}})
    c.patch(f"{CMS}/c0", json={"data": {"x": "y"}}, headers={"Content-Type": "application/merge-patch+json"})
    events = read_events(server, CMS, {"resourceVersion": seen_up_to}, 5)
    got = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    assert got == [("ADDED", "c3"), ("ADDED", "c4"), ("ADDED", "c5"), ("ADDED", "c6"), ("MODIFIED", "c0")]
    rvs_after = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs_after == sorted(rvs_after) and rvs_after[0] > int(seen_up_to)


def test_compaction_gives_410_and_relist_recovers(cluster: tuple[EtcdProcess, APIServerProcess]) -> None:
    etcd, server = cluster
    c = server.http(timeout=10)
    for i in range(5):
        c.post(CMS, json={"metadata": {"name": f"k{i}"}})
    first_page = c.get(CMS, params={"limit": "2"}).json()
    token = first_page["metadata"]["continue"]
    old_rv = first_page["metadata"]["resourceVersion"]
    for i in range(5, 8):
        c.post(CMS, json={"metadata": {"name": f"k{i}"}})
    # the API server restarts so its watch cache no longer covers old_rv; then etcd compacts
    server.stop()
    rev = subprocess.run(
        [str(BIN / "etcdctl"), "--endpoints", etcd.url, "endpoint", "status", "-w", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    revision = json.loads(rev.stdout)[0]["Status"]["header"]["revision"]
    subprocess.run(
        [str(BIN / "etcdctl"), "--endpoints", etcd.url, "compact", str(revision)],
        check=True,
        capture_output=True,
    )
    server.start()

    events = read_events(server, CMS, {"resourceVersion": old_rv}, 1)
    assert events, "a watch from a compacted version must end with an error"
    err = events[0]
    status = err["object"]
    assert err["type"] in ("ERROR", "HTTP") and status["code"] == 410 and status["reason"] == "Expired", err

    r = c.get(CMS, params={"limit": "2", "continue": token})
    assert r.status_code == 410 and r.json()["reason"] == "Expired"

    relist = c.get(CMS).json()
    assert [o["metadata"]["name"] for o in relist["items"]] == [f"k{i}" for i in range(8)]
    events = read_events(server, CMS, {"resourceVersion": relist["metadata"]["resourceVersion"]}, 1, 3)
    c.post(CMS, json={"metadata": {"name": "after"}})
    # the stream above has closed by timeout without events; a fresh watch sees the new object
    events = read_events(server, CMS, {"resourceVersion": relist["metadata"]["resourceVersion"]}, 1, 3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "after")]


def test_etcd_outage_is_503_and_recovers(cluster: tuple[EtcdProcess, APIServerProcess]) -> None:
    etcd, server = cluster
    c = server.http(timeout=20)
    c.post(CMS, json={"metadata": {"name": "before"}})
    etcd.stop()
    r = c.get(f"{CMS}/before")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == "ServiceUnavailable" and "etcd" in body["message"]
    r = c.post(CMS, json={"metadata": {"name": "during"}})
    assert r.status_code == 503
    assert c.get("/readyz").status_code == 500
    etcd.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = c.get(f"{CMS}/before")
        if r.status_code == 200:
            break
        time.sleep(0.3)
    assert r.status_code == 200, r.text
    assert c.post(CMS, json={"metadata": {"name": "after"}}).status_code == 201
    assert c.get(f"{CMS}/during").status_code == 404, "nothing half-written during the outage"
    # the watch cache came back too: a watch from now sees a new change
    rv = c.get(CMS).json()["metadata"]["resourceVersion"]
    c.post(CMS, json={"metadata": {"name": "watched"}})
    events = read_events(server, CMS, {"resourceVersion": rv}, 1, 10)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "watched")]


def test_exits_with_a_clear_message_when_etcd_is_unreachable() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    server = APIServerProcess(dead)
    proc = subprocess.run(
        server.command(["--etcd-wait-timeout", "2"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    server.cleanup()
    assert proc.returncode != 0
    assert "did not answer" in proc.stderr and dead in proc.stderr
    assert "Traceback" not in proc.stderr
