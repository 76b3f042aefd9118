"""The API server against a real etcd: Kubernetes' REST semantics, end to end over HTTP."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from testkit.api import apps, containers, create_namespace, merge_patch, pod_binding
from testkit.wait import unique

PODS = "/api/v1/namespaces/{ns}/pods"
CMS = "/api/v1/namespaces/{ns}/configmaps"
DEPLOYS = "/apis/apps/v1/namespaces/{ns}/deployments"


def pod(name: str, image: str = "busybox:1.36", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": image}]},
    }


def deployment(name: str, replicas: int = 2) -> dict[str, Any]:
    return apps("Deployment", name, containers("nginx:1.25", "web"), replicas)


@pytest.fixture()
def ns(api: httpx.Client) -> str:
    return create_namespace(api)


def assert_status(r: httpx.Response, code: int, reason: str) -> dict[str, Any]:
    assert r.status_code == code, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["status"] == "Failure", body
    assert body["code"] == code and body["reason"] == reason, body
    return body


def watch_lines(
    api: httpx.Client, path: str, params: dict[str, Any], count: int, timeout: float = 10
) -> list:
    """Read up to ``count`` watch events (the server ends the stream after timeoutSeconds)."""
    params = {"watch": "1", "timeoutSeconds": str(int(timeout)), **params}
    events = []
    with api.stream("GET", path, params=params, timeout=timeout + 5) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line:
                continue
            events.append(json.loads(line))
            if len(events) >= count:
                break
    return events


# --- basics -----------------------------------------------------------------------------------------
def test_health_version_and_system_namespaces(api: httpx.Client) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        r = api.get(path)
        assert r.status_code == 200 and r.text == "ok"
    v = api.get("/version").json()
    assert v["gitVersion"].startswith("v1.32") and v["major"] == "1"
    names = {n["metadata"]["name"] for n in api.get("/api/v1/namespaces").json()["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_create_sets_metadata_defaults_and_status(api: httpx.Client, ns: str) -> None:
    r = api.post(PODS.format(ns=ns), json=pod("web"))
    assert r.status_code == 201, r.text
    p = r.json()
    meta = p["metadata"]
    assert meta["namespace"] == ns and len(meta["uid"]) == 36 and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    spec = p["spec"]
    assert spec["restartPolicy"] == "Always" and spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert p["status"]["phase"] == "Pending"
    latest = api.post(PODS.format(ns=ns), json=pod("latest", image="nginx")).json()
    assert latest["spec"]["containers"][0]["imagePullPolicy"] == "Always"

    got = api.get(f"{PODS.format(ns=ns)}/web").json()
    assert (
        got["metadata"]["uid"] == meta["uid"]
        and got["metadata"]["resourceVersion"] == meta["resourceVersion"]
    )


def test_generate_name(api: httpx.Client, ns: str) -> None:
    body = {"metadata": {"generateName": "web-"}, "data": {"a": "b"}}
    r = api.post(CMS.format(ns=ns), json=body)
    assert r.status_code == 201, r.text
    name = r.json()["metadata"]["name"]
    assert name.startswith("web-") and len(name) == len("web-") + 5


def test_deployment_defaults(api: httpx.Client, ns: str) -> None:
    d = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        **{k: v for k, v in deployment("d").items() if k not in ("apiVersion", "kind")},
    }
    del d["spec"]["replicas"]
    r = api.post(DEPLOYS.format(ns=ns), json=d)
    assert r.status_code == 201, r.text
    spec = r.json()["spec"]
    assert (
        spec["replicas"] == 1
        and spec["revisionHistoryLimit"] == 10
        and spec["progressDeadlineSeconds"] == 600
    )
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    assert r.json()["metadata"]["generation"] == 1


def test_not_found_and_already_exists(api: httpx.Client, ns: str) -> None:
    body = assert_status(api.get(f"{PODS.format(ns=ns)}/nope"), 404, "NotFound")
    assert body["message"] == 'pods "nope" not found' and body["details"] == {"name": "nope", "kind": "pods"}
    api.post(CMS.format(ns=ns), json={"metadata": {"name": "dup"}})
    body = assert_status(
        api.post(CMS.format(ns=ns), json={"metadata": {"name": "dup"}}), 409, "AlreadyExists"
    )
    assert body["message"] == 'configmaps "dup" already exists'


def test_namespace_must_exist_and_not_be_terminating(api: httpx.Client) -> None:
    assert_status(api.post(CMS.format(ns="missing-ns"), json={"metadata": {"name": "x"}}), 404, "NotFound")
    name = unique("doomed")
    api.post("/api/v1/namespaces", json={"metadata": {"name": name}})
    r = api.delete(f"/api/v1/namespaces/{name}")
    assert r.status_code == 200, r.text
    assert r.json()["status"]["phase"] == "Terminating" and r.json()["metadata"]["deletionTimestamp"]
    body = assert_status(api.post(CMS.format(ns=name), json={"metadata": {"name": "x"}}), 403, "Forbidden")
    assert "being terminated" in body["message"]
    assert_status(api.delete("/api/v1/namespaces/default"), 403, "Forbidden")


# --- updates ----------------------------------------------------------------------------------------
def test_update_with_stale_resource_version_conflicts(api: httpx.Client, ns: str) -> None:
    cm = api.post(CMS.format(ns=ns), json={"metadata": {"name": "c"}, "data": {"v": "1"}}).json()
    cm["data"]["v"] = "2"
    r = api.put(f"{CMS.format(ns=ns)}/c", json=cm)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["resourceVersion"] != cm["metadata"]["resourceVersion"]
    cm["data"]["v"] = "3"  # still carries the old resourceVersion
    body = assert_status(api.put(f"{CMS.format(ns=ns)}/c", json=cm), 409, "Conflict")
    assert "the object has been modified" in body["message"]
    assert api.get(f"{CMS.format(ns=ns)}/c").json()["data"]["v"] == "2"


def test_generation_moves_on_spec_changes_only(api: httpx.Client, ns: str) -> None:
    d = api.post(DEPLOYS.format(ns=ns), json=deployment("gen")).json()
    d["metadata"]["labels"] = {"x": "y"}
    d = api.put(f"{DEPLOYS.format(ns=ns)}/gen", json=d).json()
    assert d["metadata"]["generation"] == 1
    d["spec"]["replicas"] = 5
    d = api.put(f"{DEPLOYS.format(ns=ns)}/gen", json=d).json()
    assert d["metadata"]["generation"] == 2


def test_status_subresource_separation(api: httpx.Client, ns: str) -> None:
    d = api.post(DEPLOYS.format(ns=ns), json=deployment("st")).json()
    d["status"] = {"replicas": 7}
    d = api.put(f"{DEPLOYS.format(ns=ns)}/st", json=d).json()
    assert d["status"].get("replicas") is None, "the main resource must ignore status"
    d["status"] = {"replicas": 3, "observedGeneration": 1}
    d["spec"]["replicas"] = 9
    r = api.put(f"{DEPLOYS.format(ns=ns)}/st/status", json=d)
    assert r.status_code == 200, r.text
    assert r.json()["status"]["replicas"] == 3 and r.json()["spec"]["replicas"] == 2, (
        "status writes only status"
    )
    r = merge_patch(api, f"{DEPLOYS.format(ns=ns)}/st/status", {"status": {"readyReplicas": 1}})
    assert r.json()["status"] == {"replicas": 3, "observedGeneration": 1, "readyReplicas": 1}


def test_patches(api: httpx.Client, ns: str) -> None:
    base = f"{DEPLOYS.format(ns=ns)}/p"
    api.post(DEPLOYS.format(ns=ns), json=deployment("p"))
    r = api.patch(
        base, json={"spec": {"replicas": 4}}, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 4
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 6},
        {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
    ]
    r = api.patch(base, json=ops, headers={"Content-Type": "application/json-patch+json"})
    assert (
        r.status_code == 200
        and r.json()["spec"]["replicas"] == 6
        and r.json()["metadata"]["labels"] == {"a": "b"}
    )
    smp = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1.36"}]}}}}
    r = api.patch(base, json=smp, headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert r.status_code == 200, r.text
    names = [c["name"] for c in r.json()["spec"]["template"]["spec"]["containers"]]
    assert names == ["sidecar", "web"], "containers merge by name (new ones first, as in Kubernetes)"
    assert r.json()["metadata"]["generation"] == 4
    r = api.patch(base, json={"spec": {"replicas": 1}}, headers={"Content-Type": "text/plain"})
    assert_status(r, 415, "UnsupportedMediaType")
    r = api.patch(
        base,
        json=[{"op": "test", "path": "/spec/replicas", "value": 99}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code in (409, 422) and r.json()["kind"] == "Status"


# --- delete -----------------------------------------------------------------------------------------
def test_delete_and_finalizers(api: httpx.Client, ns: str) -> None:
    api.post(CMS.format(ns=ns), json={"metadata": {"name": "plain"}})
    r = api.delete(f"{CMS.format(ns=ns)}/plain")
    assert r.status_code == 200 and r.json()["status"] == "Success"
    assert_status(api.get(f"{CMS.format(ns=ns)}/plain"), 404, "NotFound")

    api.post(CMS.format(ns=ns), json={"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    r = api.delete(f"{CMS.format(ns=ns)}/held")
    assert r.status_code == 200
    held = api.get(f"{CMS.format(ns=ns)}/held").json()
    assert held["metadata"]["deletionTimestamp"] and held["metadata"]["finalizers"] == ["example.com/hold"]
    r = merge_patch(api, f"{CMS.format(ns=ns)}/held", {"metadata": {"finalizers": None}})
    assert r.status_code == 200, r.text
    assert_status(api.get(f"{CMS.format(ns=ns)}/held"), 404, "NotFound")


def test_foreground_and_orphan_propagation_add_finalizers(api: httpx.Client, ns: str) -> None:
    api.post(DEPLOYS.format(ns=ns), json=deployment("fg"))
    api.delete(f"{DEPLOYS.format(ns=ns)}/fg", params={"propagationPolicy": "Foreground"})
    d = api.get(f"{DEPLOYS.format(ns=ns)}/fg").json()
    assert d["metadata"]["finalizers"] == ["foregroundDeletion"] and d["metadata"]["deletionTimestamp"]
    api.post(DEPLOYS.format(ns=ns), json=deployment("or"))
    api.request(
        "DELETE", f"{DEPLOYS.format(ns=ns)}/or", json={"kind": "DeleteOptions", "propagationPolicy": "Orphan"}
    )
    assert api.get(f"{DEPLOYS.format(ns=ns)}/or").json()["metadata"]["finalizers"] == ["orphan"]


def test_graceful_pod_deletion(api: httpx.Client, ns: str) -> None:
    api.post(PODS.format(ns=ns), json=pod("bound"))
    binding = pod_binding("bound", "n1")
    assert api.post(f"{PODS.format(ns=ns)}/bound/binding", json=binding).status_code == 201
    r = api.delete(f"{PODS.format(ns=ns)}/bound")
    assert r.status_code == 200
    p = api.get(f"{PODS.format(ns=ns)}/bound").json()
    assert p["metadata"]["deletionGracePeriodSeconds"] == 30 and p["metadata"]["deletionTimestamp"]
    api.delete(f"{PODS.format(ns=ns)}/bound", params={"gracePeriodSeconds": "0"})
    assert_status(api.get(f"{PODS.format(ns=ns)}/bound"), 404, "NotFound")
    # an unscheduled pod goes at once
    api.post(PODS.format(ns=ns), json=pod("loose"))
    api.delete(f"{PODS.format(ns=ns)}/loose")
    assert_status(api.get(f"{PODS.format(ns=ns)}/loose"), 404, "NotFound")


def test_delete_preconditions(api: httpx.Client, ns: str) -> None:
    api.post(CMS.format(ns=ns), json={"metadata": {"name": "pre"}})
    r = api.request("DELETE", f"{CMS.format(ns=ns)}/pre", json={"preconditions": {"uid": "not-the-uid"}})
    assert_status(r, 409, "Conflict")
    assert api.get(f"{CMS.format(ns=ns)}/pre").status_code == 200


def test_deletecollection_with_selector(api: httpx.Client, ns: str) -> None:
    for i in range(4):
        api.post(
            CMS.format(ns=ns), json={"metadata": {"name": f"c{i}", "labels": {"grp": "a" if i < 3 else "b"}}}
        )
    r = api.delete(CMS.format(ns=ns), params={"labelSelector": "grp=a"})
    assert r.status_code == 200, r.text
    left = [c["metadata"]["name"] for c in api.get(CMS.format(ns=ns)).json()["items"]]
    assert left == ["c3"]


# --- lists ------------------------------------------------------------------------------------------
def test_selectors_and_pagination(api: httpx.Client, ns: str) -> None:
    for i in range(7):
        api.post(PODS.format(ns=ns), json=pod(f"p{i}", tier="web" if i % 2 == 0 else "db", idx=str(i)))
    base = PODS.format(ns=ns)
    names = lambda r: [p["metadata"]["name"] for p in r.json()["items"]]  # noqa: E731
    assert names(api.get(base, params={"labelSelector": "tier=web"})) == ["p0", "p2", "p4", "p6"]
    assert names(api.get(base, params={"labelSelector": "tier!=web,idx in (1,3)"})) == ["p1", "p3"]
    assert names(api.get(base, params={"labelSelector": "!tier"})) == []
    assert names(api.get(base, params={"fieldSelector": "metadata.name=p5"})) == ["p5"]
    binding = {
        "kind": "Binding",
        "apiVersion": "v1",
        "metadata": {"name": "p1"},
        "target": {"name": "node-a"},
    }
    api.post(f"{base}/p1/binding", json=binding)
    assert names(api.get(base, params={"fieldSelector": "spec.nodeName=node-a"})) == ["p1"]
    assert len(names(api.get(base, params={"fieldSelector": "spec.nodeName="}))) == 6
    assert_status(api.get(base, params={"fieldSelector": "spec.bogus=1"}), 400, "BadRequest")
    assert_status(api.get(base, params={"labelSelector": "a in (b"}), 400, "BadRequest")

    seen, token, rvs = [], None, set()
    while True:
        params = {"limit": "3", "labelSelector": "idx"}
        if token:
            params["continue"] = token
        body = api.get(base, params=params).json()
        seen += [p["metadata"]["name"] for p in body["items"]]
        rvs.add(body["metadata"]["resourceVersion"])
        token = body["metadata"].get("continue")
        if not token:
            break
    assert seen == [f"p{i}" for i in range(7)]
    assert len(rvs) == 1, "every page is read at the first page's revision"

    all_ns = api.get("/api/v1/pods", params={"labelSelector": "idx=3"}).json()
    assert [p["metadata"]["namespace"] for p in all_ns["items"]] == [ns]


def test_yaml_bodies(api: httpx.Client, ns: str) -> None:
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fromyaml\ndata:\n  k: v\n"
    r = api.post(CMS.format(ns=ns), content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["data"] == {"k": "v"}


# --- subresources -----------------------------------------------------------------------------------
def test_scale_subresource(api: httpx.Client, ns: str) -> None:
    api.post(DEPLOYS.format(ns=ns), json=deployment("sc", replicas=2))
    s = api.get(f"{DEPLOYS.format(ns=ns)}/sc/scale").json()
    assert s["kind"] == "Scale" and s["apiVersion"] == "autoscaling/v1" and s["spec"]["replicas"] == 2
    assert s["status"]["selector"] == "app=sc"
    s["spec"]["replicas"] = 5
    r = api.put(f"{DEPLOYS.format(ns=ns)}/sc/scale", json=s)
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 5
    r = merge_patch(api, f"{DEPLOYS.format(ns=ns)}/sc/scale", {"spec": {"replicas": 1}})
    assert r.json()["spec"]["replicas"] == 1
    assert api.get(f"{DEPLOYS.format(ns=ns)}/sc").json()["spec"]["replicas"] == 1
    s["spec"]["replicas"] = 3  # stale resourceVersion
    assert_status(api.put(f"{DEPLOYS.format(ns=ns)}/sc/scale", json=s), 409, "Conflict")


def test_binding_once(api: httpx.Client, ns: str) -> None:
    api.post(PODS.format(ns=ns), json=pod("b"))
    binding = pod_binding("b", "n1")
    assert api.post(f"{PODS.format(ns=ns)}/b/binding", json=binding).status_code == 201
    p = api.get(f"{PODS.format(ns=ns)}/b").json()
    assert p["spec"]["nodeName"] == "n1"
    assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in p["status"]["conditions"])
    binding["target"]["name"] = "n2"
    body = assert_status(api.post(f"{PODS.format(ns=ns)}/b/binding", json=binding), 409, "Conflict")
    assert "already assigned" in body["message"]


# --- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body,field",
    [
        (
            {"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "a", "image": "x"}]}},
            "metadata.name",
        ),
        ({"metadata": {"name": "nocontainers"}, "spec": {"containers": []}}, "spec.containers"),
        (
            {"metadata": {"name": "noimage"}, "spec": {"containers": [{"name": "a"}]}},
            "spec.containers[0].image",
        ),
    ],
)
def test_invalid_pods_are_422_and_not_stored(api: httpx.Client, ns: str, body: dict, field: str) -> None:
    r = api.post(PODS.format(ns=ns), json=body)
    status = assert_status(r, 422, "Invalid")
    assert field in [c["field"] for c in status["details"]["causes"]], status
    assert api.get(PODS.format(ns=ns)).json()["items"] == []


def test_deployment_selector_must_match_template(api: httpx.Client, ns: str) -> None:
    d = deployment("mismatch")
    d["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    status = assert_status(api.post(DEPLOYS.format(ns=ns), json=d), 422, "Invalid")
    assert "spec.template.metadata.labels" in [c["field"] for c in status["details"]["causes"]]


def test_malformed_and_oversized_bodies(api: httpx.Client, ns: str) -> None:
    h = {"Content-Type": "application/json"}
    assert_status(api.post(CMS.format(ns=ns), content=b"{not json", headers=h), 400, "BadRequest")
    assert_status(
        api.post(CMS.format(ns=ns), content=b"a: [b", headers={"Content-Type": "application/yaml"}),
        400,
        "BadRequest",
    )
    assert_status(api.post(CMS.format(ns=ns), content=b"[1,2]", headers=h), 400, "BadRequest")
    big = {"metadata": {"name": "big"}, "data": {"k": "x" * (3 * 1024 * 1024 + 10)}}
    assert_status(api.post(CMS.format(ns=ns), json=big), 413, "RequestEntityTooLarge")
    wrong = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"}}
    assert_status(api.post(CMS.format(ns=ns), json=wrong), 400, "BadRequest")


def test_field_validation(api: httpx.Client, ns: str) -> None:
    body = pod("strict")
    body["spec"]["containers"][0]["imagee"] = "typo"
    r = api.post(PODS.format(ns=ns), json=body, params={"fieldValidation": "Strict"})
    status = assert_status(r, 400, "BadRequest")
    assert "imagee" in status["message"]
    raw = (
        b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dupe"},"data":{"a":"1"},"data":{"b":"2"}}'
    )
    r = api.post(
        CMS.format(ns=ns),
        content=raw,
        params={"fieldValidation": "Strict"},
        headers={"Content-Type": "application/json"},
    )
    status = assert_status(r, 400, "BadRequest")
    assert 'duplicate field "data"' in status["message"]
    r = api.post(PODS.format(ns=ns), json=body, params={"fieldValidation": "Warn"})
    assert r.status_code == 201 and "imagee" in r.headers.get("warning", "")
    assert "imagee" not in r.json()["spec"]["containers"][0], "unknown fields are dropped"


def test_unknown_paths_are_404_status(api: httpx.Client) -> None:
    assert_status(api.get("/api/v1/namespaces/default/widgets"), 404, "NotFound")
    assert_status(api.get("/apis/nope.example.com/v1"), 404, "NotFound")
    assert_status(api.get("/nothing/here"), 404, "NotFound")


# --- concurrency ------------------------------------------------------------------------------------
def test_concurrent_writers_lose_no_update(apiserver: Any, ns: str) -> None:
    path = f"{CMS.format(ns=ns)}/counter"
    with apiserver.http() as c:
        c.post(CMS.format(ns=ns), json={"metadata": {"name": "counter"}, "data": {"n": "0"}})
    per_writer = 10

    def writer(_: int) -> int:
        conflicts = 0
        with apiserver.http() as c:
            done = 0
            while done < per_writer:
                cm = c.get(path).json()
                cm["data"]["n"] = str(int(cm["data"]["n"]) + 1)
                r = c.put(path, json=cm)
                if r.status_code == 409:
                    conflicts += 1
                    continue
                assert r.status_code == 200, r.text
                done += 1
        return conflicts

    with ThreadPoolExecutor(10) as pool:
        conflicts = sum(pool.map(writer, range(10)))
    with apiserver.http() as c:
        assert c.get(path).json()["data"]["n"] == str(10 * per_writer)
    assert conflicts > 0, "stale writes must have been rejected at least once"


# --- watch ------------------------------------------------------------------------------------------
def test_watch_from_resource_version_in_order(api: httpx.Client, ns: str) -> None:
    base = CMS.format(ns=ns)
    rv = api.get(base).json()["metadata"]["resourceVersion"]
    api.post(base, json={"metadata": {"name": "w1"}, "data": {"v": "1"}})
    api.patch(
        f"{base}/w1", json={"data": {"v": "2"}}, headers={"Content-Type": "application/merge-patch+json"}
    )
    api.delete(f"{base}/w1")
    events = watch_lines(api, base, {"resourceVersion": rv}, 3, timeout=5)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1]["object"]["data"] == {"v": "2"}
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)


def test_watch_without_version_starts_with_current_state(api: httpx.Client, ns: str) -> None:
    base = CMS.format(ns=ns)
    api.post(base, json={"metadata": {"name": "a"}})
    api.post(base, json={"metadata": {"name": "b"}})
    time.sleep(0.3)  # the watch cache follows etcd asynchronously
    events = watch_lines(api, base, {}, 2, timeout=3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a"), ("ADDED", "b")]


def test_live_watch_with_field_selector_and_timeout(api: httpx.Client, ns: str) -> None:
    base = CMS.format(ns=ns)
    rv = api.get(base).json()["metadata"]["resourceVersion"]
    result: list = []
    t = threading.Thread(
        target=lambda: result.extend(
            watch_lines(
                api, base, {"resourceVersion": rv, "fieldSelector": "metadata.name=target"}, 10, timeout=3
            )
        )
    )
    t.start()
    time.sleep(0.5)
    api.post(base, json={"metadata": {"name": "other"}})
    api.post(base, json={"metadata": {"name": "target"}})
    start = time.monotonic()
    t.join(10)
    assert not t.is_alive(), "timeoutSeconds must end the stream"
    assert time.monotonic() - start < 9
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in result] == [("ADDED", "target")]


def test_watch_label_selector_transitions(api: httpx.Client, ns: str) -> None:
    base = CMS.format(ns=ns)
    api.post(base, json={"metadata": {"name": "x", "labels": {"sel": "no"}}})
    rv = api.get(base).json()["metadata"]["resourceVersion"]
    ct = {"Content-Type": "application/merge-patch+json"}
    api.patch(f"{base}/x", json={"metadata": {"labels": {"sel": "yes"}}}, headers=ct)
    api.patch(f"{base}/x", json={"data": {"a": "b"}}, headers=ct)
    api.patch(f"{base}/x", json={"metadata": {"labels": {"sel": "no"}}}, headers=ct)
    events = watch_lines(api, base, {"resourceVersion": rv, "labelSelector": "sel=yes"}, 3, timeout=3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]


def test_watch_bookmarks(api: httpx.Client, apiserver: Any, ns: str) -> None:
    base = CMS.format(ns=ns)
    rv = api.get(base).json()["metadata"]["resourceVersion"]
    events = watch_lines(api, base, {"resourceVersion": rv, "allowWatchBookmarks": "true"}, 1, timeout=25)
    assert events and events[0]["type"] == "BOOKMARK"
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) >= int(rv)
    assert events[0]["object"]["kind"] == "ConfigMap"


def test_table_output_for_kubectl(api: httpx.Client, ns: str) -> None:
    api.post(PODS.format(ns=ns), json=pod("tbl"))
    r = api.get(
        PODS.format(ns=ns),
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
    )
    table = r.json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]][:5] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    assert table["rows"][0]["cells"][:3] == ["tbl", "0/1", "Pending"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_service_type_change_drops_type_dependent_fields(api: httpx.Client, ns: str) -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "typed"},
        "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 80}]},
    }
    created = api.post(f"/api/v1/namespaces/{ns}/services", json=svc).json()
    assert (
        created["spec"]["externalTrafficPolicy"] == "Cluster"
        and created["spec"]["ports"][0]["nodePort"] >= 30000
    )
    created["spec"]["type"] = "ClusterIP"
    r = api.put(f"/api/v1/namespaces/{ns}/services/typed", json=created)
    assert r.status_code == 200, r.text
    spec = r.json()["spec"]
    assert (
        spec["type"] == "ClusterIP"
        and "externalTrafficPolicy" not in spec
        and "nodePort" not in spec["ports"][0]
    )
    assert spec["clusterIP"] == created["spec"]["clusterIP"]
