"""ControllerRevisions of StatefulSets and DaemonSets against a real etcd + API server, with hollow
nodes and the real ``minik-scheduler`` and ``minik-controller-manager``: one revision per template,
pods labelled with it, a return to an old template renumbering its revision, the history trimmed
to ``revisionHistoryLimit``, and the revisions collected with their set."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.api import apps, containers, create_namespace, get, items
from testkit.processes import APIServerProcess, Process, control_plane, hollow_nodes, running
from testkit.wait import wait_for

PREFIX = f"cr-{uuid.uuid4().hex[:4]}-"
MERGE = {"Content-Type": "application/merge-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}


@pytest.fixture(scope="module")
def cluster(apiserver: APIServerProcess) -> Iterator[dict[str, Process]]:
    parts = {
        "hollow": hollow_nodes(apiserver, 2, PREFIX, "--lease-period", "2"),
        **control_plane(apiserver),
    }
    with running(parts), apiserver.http() as api:
        wait_for(
            lambda: len(items(api, "/api/v1/nodes", labelSelector="minik.io/hollow=true")) >= 2, 30, "2 nodes"
        )
        yield parts


@pytest.fixture()
def ns(api: httpx.Client, cluster: dict[str, Process]) -> str:
    return create_namespace(api, "cr")


def revisions(api: httpx.Client, ns: str, app: str) -> dict[int, dict[str, Any]]:
    found = items(api, f"/apis/apps/v1/namespaces/{ns}/controllerrevisions", labelSelector=f"app={app}")
    return {int(r["revision"]): r for r in found}


def set_image(api: httpx.Client, path: str, image: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}
    r = api.patch(path, json=patch, headers=STRATEGIC)
    assert r.status_code == 200, r.text


def pod_labels(api: httpx.Client, ns: str, app: str) -> list[str]:
    pods = items(api, f"/api/v1/namespaces/{ns}/pods", labelSelector=f"app={app}")
    return sorted(p["metadata"]["labels"].get("controller-revision-hash", "") for p in pods)


def sts_settled(api: httpx.Client, path: str, ns: str, replicas: int) -> dict[str, Any] | None:
    """The status once every replica is ready at the update revision, which is current."""
    st = (get(api, path) or {}).get("status") or {}
    rev = st.get("updateRevision")
    if st.get("readyReplicas") != replicas or st.get("currentRevision") != rev:
        return None
    if pod_labels(api, ns, "db") != [rev] * replicas:
        return None
    return st


def test_statefulset_revisions_rollback_and_trim(api: httpx.Client, ns: str) -> None:
    path = f"/apis/apps/v1/namespaces/{ns}/statefulsets/db"
    body = apps(
        "StatefulSet",
        "db",
        containers("busybox:1", "c"),
        2,
        serviceName="db",
        podManagementPolicy="Parallel",
        revisionHistoryLimit=1,
    )
    r = api.post(f"/apis/apps/v1/namespaces/{ns}/statefulsets", json=body)
    assert r.status_code == 201, r.text
    uid = r.json()["metadata"]["uid"]
    st1 = wait_for(lambda: sts_settled(api, path, ns, 2), 60, "first revision rolled out")
    rev1 = wait_for(lambda: revisions(api, ns, "db").get(1), 30, "revision 1")
    assert rev1["metadata"]["name"] == st1["updateRevision"]
    assert rev1["metadata"]["name"] == f"db-{rev1['metadata']['labels']['controller-revision-hash']}"
    ref = rev1["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("StatefulSet", "db", uid, True)
    template = rev1["data"]["spec"]["template"]
    assert template["$patch"] == "replace" and template["spec"]["containers"][0]["image"] == "busybox:1"

    set_image(api, path, "busybox:2")
    st2 = wait_for(
        lambda: (s := sts_settled(api, path, ns, 2)) and s["updateRevision"] != st1["updateRevision"] and s,
        60,
        "second revision rolled out",
    )
    history = wait_for(lambda: (h := revisions(api, ns, "db")) and len(h) == 2 and h, 30, "revision 2")
    assert history[2]["metadata"]["name"] == st2["updateRevision"]

    # what kubectl rollout undo sends: revision 1's data as a strategic merge patch
    r = api.patch(path, json=rev1["data"], headers=STRATEGIC)
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1"
    wait_for(
        lambda: (s := sts_settled(api, path, ns, 2)) and s["updateRevision"] == st1["updateRevision"],
        60,
        "rolled back to revision 1's template",
    )
    history = wait_for(lambda: (h := revisions(api, ns, "db")) and 3 in h and h, 30, "revision 1 renumbered")
    assert sorted(history) == [2, 3] and history[3]["metadata"]["name"] == st1["updateRevision"]

    # a third template; with a limit of one, the oldest unused revision (number 2) goes
    set_image(api, path, "busybox:3")
    wait_for(
        lambda: sorted(revisions(api, ns, "db")) == [3, 4] and sts_settled(api, path, ns, 2),
        60,
        "history trimmed to one old revision",
    )

    # revisions are collected with their set
    r = api.delete(path)
    assert r.status_code == 200, r.text
    wait_for(lambda: not revisions(api, ns, "db"), 60, "revisions garbage-collected")


def test_daemonset_revisions_label_pods_with_the_hash(api: httpx.Client, ns: str) -> None:
    path = f"/apis/apps/v1/namespaces/{ns}/daemonsets/agent"
    body = apps("DaemonSet", "agent", containers("busybox:1", "c"))
    body["spec"]["template"]["spec"]["nodeSelector"] = {"minik.io/hollow": "true"}
    r = api.post(f"/apis/apps/v1/namespaces/{ns}/daemonsets", json=body)
    assert r.status_code == 201, r.text

    def settled(number: int) -> tuple[dict[str, Any], list[str]] | None:
        rev = revisions(api, ns, "agent").get(number)
        labels = pod_labels(api, ns, "agent")
        if (
            rev is None
            or len(labels) < 2
            or set(labels) != {rev["metadata"]["labels"]["controller-revision-hash"]}
        ):
            return None
        return rev, labels

    rev1, _ = wait_for(lambda: settled(1), 60, "daemon pods at revision 1")
    assert rev1["metadata"]["name"] == f"agent-{rev1['metadata']['labels']['controller-revision-hash']}"
    assert rev1["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    set_image(api, path, "busybox:2")
    rev2, _ = wait_for(lambda: settled(2), 60, "daemon pods at revision 2")
    assert rev2["metadata"]["name"] != rev1["metadata"]["name"]
    assert rev2["data"]["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:2"
