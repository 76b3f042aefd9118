"""``dryRun=All`` on create, update, patch and delete: defaulting, admission and validation run,
the answer is what would be stored, and nothing is stored -- etcd's revision does not move, no
watch event is sent, no ClusterIP or NodePort is taken.  Then the real kubectl's
``--dry-run=server`` (apply, create, delete) and ``kubectl diff``."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import httpx
import pytest

from testkit.api import apps, containers, pod_binding
from tests.e2e.conftest import KUBECTL_VERSIONS, Kubectl, kubectl_of


@pytest.fixture(scope="module", params=KUBECTL_VERSIONS)
def kubectl_bin(request: pytest.FixtureRequest) -> str:
    """This module's kubectl workflow runs with both kubectls (v1.32 and the v1.37 wheel)."""
    return kubectl_of(request.param)


DRY = {"dryRun": "All"}


def etcd_revision(api: httpx.Client) -> int:
    """etcd's current revision: a list without resourceVersion is read from etcd at its head."""
    r = api.get("/api/v1/namespaces")
    assert r.status_code == 200, r.text
    return int(r.json()["metadata"]["resourceVersion"])


def ok(r: httpx.Response, code: int = 200) -> dict[str, Any]:
    assert r.status_code == code, r.text
    return r.json()


def failure(r: httpx.Response, code: int, reason: str) -> dict[str, Any]:
    assert r.status_code == code, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == reason, body
    return body


def first_event(api: httpx.Client, path: str, rv: int) -> dict[str, Any]:
    """The first watch event after ``rv``."""
    params = {"watch": "1", "resourceVersion": str(rv), "timeoutSeconds": "20"}
    with api.stream("GET", path, params=params, timeout=30) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line:
                return json.loads(line)
    raise AssertionError(f"no watch event on {path} after {rv}")


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def service(name: str, node_port: int | None = None) -> dict[str, Any]:
    port: dict[str, Any] = {"port": 80}
    if node_port:
        port["nodePort"] = node_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [port]},
    }


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": containers("busybox:1.36")}


def applied_without_difference(api: httpx.Client, kubectl: Kubectl, manifest: str, ns: str) -> int:
    """Apply ``manifest``, check ``kubectl diff`` of it shows nothing; etcd's revision after the apply."""
    kubectl("apply", "-f", manifest, "-n", ns)
    rev = etcd_revision(api)
    same = kubectl.run("diff", "-f", manifest, "-n", ns, check=False)
    assert (same.returncode, same.stdout) == (0, ""), same.stderr
    return rev


def difference(kubectl: Kubectl, manifest: str, ns: str) -> Any:
    """``kubectl diff -f manifest``, which must find a difference (exit code 1)."""
    diff = kubectl.run("diff", "-f", manifest, "-n", ns, check=False)
    assert diff.returncode == 1, diff.stderr
    return diff


def test_dry_run_runs_every_check_and_stores_nothing(api: httpx.Client, ns: str) -> None:
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    pods = f"/api/v1/namespaces/{ns}/pods"
    svcs = f"/api/v1/namespaces/{ns}/services"
    deploys = f"/apis/apps/v1/namespaces/{ns}/deployments"
    ok(api.post(cms, json=configmap("base", a="1")), 201)
    ok(api.post(pods, json=pod("runner")), 201)
    ok(api.post(f"{pods}/runner/binding", json=pod_binding("runner", "node-a")), 201)
    kept = apps("Deployment", "kept", containers("nginx:1.25"), 1)
    kept["metadata"]["finalizers"] = ["example.com/keep"]
    ok(api.post(deploys, json=kept), 201)
    stored = {p: ok(api.get(p)) for p in (f"{cms}/base", f"{pods}/runner", f"{deploys}/kept")}
    rev0 = etcd_revision(api)

    # create: defaulted, validated, named, admitted; not stored
    made = ok(api.post(cms, params=DRY, json=configmap("new", a="1")), 201)
    assert made["metadata"]["uid"] and made["metadata"]["creationTimestamp"]
    assert "resourceVersion" not in made["metadata"]
    failure(api.get(f"{cms}/new"), 404, "NotFound")
    gen = ok(api.post(cms, params=DRY, json={"metadata": {"generateName": "gen-"}, "data": {}}), 201)
    assert gen["metadata"]["name"].startswith("gen-") and len(gen["metadata"]["name"]) == 9
    failure(api.post(cms, params=DRY, json=configmap("base")), 409, "AlreadyExists")
    failure(api.post(cms, params=DRY, json=configmap("Bad_Name")), 422, "Invalid")
    failure(
        api.post("/api/v1/namespaces/no-such-ns/configmaps", params=DRY, json=configmap("x")), 404, "NotFound"
    )
    d = ok(api.post(deploys, params=DRY, json=apps("Deployment", "web", containers("nginx:1.25"))), 201)
    assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"]["type"] == "RollingUpdate"
    assert d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert d["metadata"]["generation"] == 1
    svc = ok(api.post(svcs, params=DRY, json=service("front")), 201)
    node_port = svc["spec"]["ports"][0]["nodePort"]
    assert svc["spec"]["clusterIP"] and 30000 <= node_port <= 32767
    failure(api.post(cms, params={"dryRun": "Some"}, json=configmap("x")), 400, "BadRequest")

    # update (PUT): the new object comes back; the stored one is unchanged
    base = stored[f"{cms}/base"]
    changed = {**base, "data": {"a": "2"}}
    upd = ok(api.put(f"{cms}/base", params=DRY, json=changed))
    assert (
        upd["data"] == {"a": "2"}
        and upd["metadata"]["resourceVersion"] == base["metadata"]["resourceVersion"]
    )
    stale = {**changed, "metadata": {**base["metadata"], "resourceVersion": "1"}}
    failure(api.put(f"{cms}/base", params=DRY, json=stale), 409, "Conflict")
    bad = {**changed, "metadata": {**base["metadata"], "labels": {"bad key!": "x"}}}
    failure(api.put(f"{cms}/base", params=DRY, json=bad), 422, "Invalid")

    # patch: every patch type
    for ctype, body in (
        ("application/merge-patch+json", {"data": {"b": "3"}}),
        ("application/strategic-merge-patch+json", {"data": {"b": "3"}}),
        ("application/json-patch+json", [{"op": "add", "path": "/data/b", "value": "3"}]),
    ):
        r = api.patch(f"{cms}/base", params=DRY, content=json.dumps(body), headers={"Content-Type": ctype})
        assert ok(r)["data"] == {"a": "1", "b": "3"}, ctype
    r = api.patch(
        f"{deploys}/kept",
        params=DRY,
        content=json.dumps({"spec": {"replicas": 3}}),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert ok(r)["spec"]["replicas"] == 3 and r.json()["metadata"]["generation"] == 2
    r = api.patch(
        f"{deploys}/kept",
        params=DRY,
        content=json.dumps({"spec": {"replicas": -1}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    failure(r, 422, "Invalid")

    # delete: plain, graceful (a bound pod), with finalizers, a collection, a namespace
    gone = ok(api.delete(f"{cms}/base", params=DRY))
    assert gone["kind"] == "Status" and gone["status"] == "Success"
    body_opts = json.dumps({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]})
    gone = ok(
        api.request("DELETE", f"{cms}/base", content=body_opts, headers={"Content-Type": "application/json"})
    )
    assert gone["status"] == "Success"
    graceful = ok(api.delete(f"{pods}/runner", params=DRY))
    assert (
        graceful["metadata"]["deletionTimestamp"] and graceful["metadata"]["deletionGracePeriodSeconds"] == 30
    )
    finalized = ok(api.delete(f"{deploys}/kept", params=DRY))
    assert finalized["metadata"]["deletionTimestamp"]
    listed = ok(api.delete(cms, params=DRY))
    assert [i["metadata"]["name"] for i in listed["items"]] == ["base"]
    terminating = ok(api.delete(f"/api/v1/namespaces/{ns}", params=DRY))
    assert terminating["status"]["phase"] == "Terminating"
    failure(api.delete(f"{cms}/base", params={"dryRun": "no"}), 400, "BadRequest")

    # nothing was written: not the objects, not the allocation records, not the namespace
    assert etcd_revision(api) == rev0
    for path, before in stored.items():
        assert ok(api.get(path)) == before, path
    assert ok(api.get(f"/api/v1/namespaces/{ns}"))["status"]["phase"] == "Active"

    # no watch event: the first event after rev0 on each resource is the real write made next
    ok(api.post(cms, json=configmap("new", a="1")), 201)  # the dry-run's name was not taken
    ok(api.post(svcs, json=service("back", node_port)), 201)  # nor its NodePort
    ok(api.post(deploys, json=apps("Deployment", "web", containers("nginx:1.25"))), 201)
    ok(api.post(pods, json=pod("second")), 201)
    for path, name in ((cms, "new"), (svcs, "back"), (deploys, "web"), (pods, "second")):
        event = first_event(api, path, rev0)
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", name), path


CM = textwrap.dedent(
    """\
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: settings}
    data: {mode: "fast"}
    """
)


def data_of(kubectl: Kubectl, ns: str) -> str:
    return kubectl("get", "configmap", "settings", "-n", ns, "-o", "jsonpath={.data.mode}")


def test_kubectl_server_dry_run(api: httpx.Client, kubectl: Kubectl, ns: str) -> None:
    manifest = str(kubectl.write(f"{ns}/cm.yaml", CM))
    rev0 = etcd_revision(api)
    out = kubectl("apply", "--dry-run=server", "-f", manifest, "-n", ns)
    assert out == "configmap/settings created (server dry run)\n"
    out = kubectl("create", "--dry-run=server", "-f", manifest, "-n", ns, "-o", "json")
    created = json.loads(out)
    assert created["metadata"]["uid"] and created["data"] == {"mode": "fast"}
    assert etcd_revision(api) == rev0
    missing = kubectl.run("get", "configmap", "settings", "-n", ns, check=False)
    assert missing.returncode == 1 and "NotFound" in missing.stderr

    kubectl("apply", "-f", manifest, "-n", ns)
    rev1 = etcd_revision(api)
    exists = kubectl.run("create", "--dry-run=server", "-f", manifest, "-n", ns, check=False)
    assert exists.returncode == 1 and "AlreadyExists" in exists.stderr
    changed = str(kubectl.write(f"{ns}/cm2.yaml", CM.replace("fast", "slow")))
    out = kubectl("apply", "--dry-run=server", "-f", changed, "-n", ns)
    assert out == "configmap/settings configured (server dry run)\n"
    # kubectl 1.37 names the namespace: 'configmap "settings" deleted from NS namespace (...)'
    deleted = {'configmap "settings" deleted', f'configmap "settings" deleted from {ns} namespace'}
    out = kubectl("delete", "--dry-run=server", "-f", manifest, "-n", ns)
    assert out.removesuffix(" (server dry run)\n") in deleted, out
    out = kubectl("delete", "--dry-run=server", "configmap", "--all", "-n", ns)
    assert out.removesuffix(" (server dry run)\n") in deleted, out
    assert data_of(kubectl, ns) == "fast"
    assert etcd_revision(api) == rev1


def test_kubectl_diff(api: httpx.Client, kubectl: Kubectl, ns: str) -> None:
    manifest = str(kubectl.write(f"{ns}/cm.yaml", CM))
    # a new object: the whole object is the difference, and it is not created
    new = kubectl.run("diff", "-f", manifest, "-n", ns, check=False)
    assert new.returncode == 1, new.stderr
    assert "+  mode: fast" in new.stdout and "+kind: ConfigMap" in new.stdout
    missing = kubectl.run("get", "configmap", "settings", "-n", ns, check=False)
    assert missing.returncode == 1 and "NotFound" in missing.stderr

    rev = applied_without_difference(api, kubectl, manifest, ns)

    changed = str(kubectl.write(f"{ns}/cm2.yaml", CM.replace("fast", "slow")))
    diff = difference(kubectl, changed, ns)
    changed_lines = [
        line for line in diff.stdout.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    # the data line, and the last-applied annotation kubectl apply would write
    assert "-  mode: fast" in changed_lines and "+  mode: slow" in changed_lines
    assert all("mode" in line or "last-applied-configuration" in line for line in changed_lines), (
        changed_lines
    )
    assert data_of(kubectl, ns) == "fast"
    assert etcd_revision(api) == rev


APP = textwrap.dedent(
    """\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers: [{name: web, image: nginx:1.25}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      type: NodePort
      selector: {app: web}
      ports: [{port: 80}]
    """
)


def test_kubectl_diff_defaulted_and_allocated_objects(api: httpx.Client, kubectl: Kubectl, ns: str) -> None:
    """Defaults, the ClusterIP and the NodePort the server filled in make no difference of their own."""
    manifest = str(kubectl.write(f"{ns}/app.yaml", APP))
    rev = applied_without_difference(api, kubectl, manifest, ns)
    scaled = str(kubectl.write(f"{ns}/app3.yaml", APP.replace("replicas: 2", "replicas: 3")))
    diff = difference(kubectl, scaled, ns)
    changed = [line.replace(" ", "") for line in diff.stdout.splitlines() if line[:2] in ("+ ", "- ")]
    assert changed == ["-generation:1", "+generation:2", "-replicas:2", "+replicas:3"], diff.stdout
    assert "v1.Service" not in diff.stdout
    assert etcd_revision(api) == rev
    assert kubectl("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "2"
