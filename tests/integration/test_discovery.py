"""Discovery on ``/api`` and ``/apis``: the aggregated form (``apidiscovery.k8s.io/v2`` and
``v2beta1``) when the client's Accept header prefers it, the plain ``APIVersions`` /
``APIGroupList`` otherwise; read by the real kubectl and the official Python client."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config, dynamic

from testkit.processes import APIServerProcess

V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
# what kubectl v1.32 sends (seen with -v=8)
KUBECTL_ACCEPT = f"{V2},{V2BETA1},application/json"


def aggregated(api: httpx.Client, path: str, accept: str = KUBECTL_ACCEPT) -> dict[str, Any]:
    r = api.get(path, headers={"Accept": accept})
    assert r.status_code == 200, r.text
    return r.json()


def plain_resource_lists(api: httpx.Client, preferred_only: bool = False) -> dict[str, list[dict[str, Any]]]:
    """groupVersion -> APIResourceList.resources, walked from the plain documents (only each
    group's preferred version, as ``kubectl api-resources`` lists them, with ``preferred_only``)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for v in api.get("/api").json()["versions"]:
        out[v] = api.get(f"/api/{v}").json()["resources"]
    for g in api.get("/apis").json()["groups"]:
        for v in [g["preferredVersion"]] if preferred_only else g["versions"]:
            out[v["groupVersion"]] = api.get(f"/apis/{v['groupVersion']}").json()["resources"]
    return out


def split_groups_and_resources(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """client-go's ``SplitGroupsAndResources``/``convertAPIResource``/``convertAPISubresource``:
    the APIResource entries a client makes of an APIGroupDiscoveryList."""
    out: dict[str, list[dict[str, Any]]] = {}
    for group in doc["items"]:
        name = group["metadata"].get("name", "")
        for version in group["versions"]:
            assert version["freshness"] == "Current"
            gv = f"{name}/{version['version']}" if name else version["version"]
            entries = out.setdefault(gv, [])
            for r in version["resources"]:
                kind = r["responseKind"]
                parent = {
                    "name": r["resource"],
                    "singularName": r["singularResource"],
                    "namespaced": r["scope"] == "Namespaced",
                    "kind": kind["kind"],
                    "group": kind["group"],
                    "version": kind["version"],
                    "verbs": r["verbs"],
                    "shortNames": r.get("shortNames"),
                    "categories": r.get("categories"),
                }
                entries.append(parent)
                for sub in r.get("subresources") or []:
                    sk = sub["responseKind"]
                    entries.append(
                        {
                            "name": f"{r['resource']}/{sub['subresource']}",
                            "namespaced": parent["namespaced"],
                            "kind": sk["kind"],
                            "group": sk["group"],
                            "version": sk["version"],
                            "verbs": sub["verbs"],
                        }
                    )
    return out


def test_aggregated_discovery_shapes_and_content_type(api: httpx.Client) -> None:
    for accept, version in ((KUBECTL_ACCEPT, "v2"), (V2BETA1, "v2beta1"), (f"{V2BETA1},{V2}", "v2beta1")):
        for path in ("/api", "/apis"):
            r = api.get(path, headers={"Accept": accept})
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == (
                f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
            )
            assert "Accept" in r.headers["vary"]
            doc = r.json()
            assert doc["kind"] == "APIGroupDiscoveryList"
            assert doc["apiVersion"] == f"apidiscovery.k8s.io/{version}"
            assert doc["items"]
    core = aggregated(api, "/api")["items"]
    assert len(core) == 1 and core[0]["metadata"].get("name", "") == ""
    assert [v["version"] for v in core[0]["versions"]] == ["v1"]
    pods = next(r for r in core[0]["versions"][0]["resources"] if r["resource"] == "pods")
    assert pods["responseKind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert pods["scope"] == "Namespaced" and pods["singularResource"] == "pod"
    assert pods["shortNames"] == ["po"] and pods["categories"] == ["all"]
    verbs = "create delete deletecollection get list patch update watch"
    assert set(pods["verbs"]) == set(verbs.split())
    subs = {s["subresource"]: s for s in pods["subresources"]}
    assert subs["status"] == {
        "subresource": "status",
        "responseKind": {"group": "", "version": "v1", "kind": "Pod"},
        "verbs": ["get", "patch", "update"],
    }
    assert subs["eviction"]["responseKind"] == {"group": "policy", "version": "v1", "kind": "Eviction"}
    assert subs["binding"]["verbs"] == ["create"]
    nodes = next(r for r in core[0]["versions"][0]["resources"] if r["resource"] == "nodes")
    assert nodes["scope"] == "Cluster"

    groups = aggregated(api, "/apis")["items"]
    apps = next(g for g in groups if g["metadata"]["name"] == "apps")
    deploy = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deploy["responseKind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert deploy["shortNames"] == ["deploy"]
    scale = next(s for s in deploy["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert scale["verbs"] == ["get", "patch", "update"]


def test_aggregated_discovery_says_what_the_plain_documents_say(api: httpx.Client) -> None:
    """A client converting the aggregated documents gets the same groups, preferred versions and
    resources as one walking /api, /apis and every group-version."""
    core = aggregated(api, "/api")
    groups = aggregated(api, "/apis")
    plain_groups = api.get("/apis").json()["groups"]
    assert [g["metadata"]["name"] for g in groups["items"]] == [g["name"] for g in plain_groups]
    for agg, plain in zip(groups["items"], plain_groups, strict=True):
        assert [v["version"] for v in agg["versions"]] == [v["version"] for v in plain["versions"]]
        assert agg["versions"][0]["version"] == plain["preferredVersion"]["version"]
    assert [v["version"] for v in core["items"][0]["versions"]] == api.get("/api").json()["versions"]

    converted = split_groups_and_resources(core) | split_groups_and_resources(groups)
    plain = plain_resource_lists(api)
    assert set(converted) == set(plain)
    for gv, entries in plain.items():
        group, _, version = gv.rpartition("/")
        got = {e["name"]: e for e in converted[gv]}
        assert set(got) == {e["name"] for e in entries}, gv
        for e in entries:
            c = got[e["name"]]
            assert c["kind"] == e["kind"] and c["namespaced"] == e["namespaced"], (gv, e)
            assert c["verbs"] == e["verbs"], (gv, e)
            assert c["group"] == e.get("group", group) and c["version"] == e.get("version", version), (gv, e)
            if "/" not in e["name"]:
                assert c["singularName"] == e["singularName"], (gv, e)
                assert (c["shortNames"] or None) == (e.get("shortNames") or None), (gv, e)
                assert (c["categories"] or None) == (e.get("categories") or None), (gv, e)


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "application/json",
        "*/*",
        f"{V2};q=0.5,application/json",  # plain JSON preferred by q
        "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json",
        "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
    ],
)
def test_plain_discovery_when_not_preferred(api: httpx.Client, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    r = api.get("/api", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["kind"] == "APIVersions" and r.json()["versions"] == ["v1"]
    r = api.get("/apis", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["kind"] == "APIGroupList"
    assert "apps" in {g["name"] for g in r.json()["groups"]}


def test_aggregated_discovery_etag(api: httpx.Client) -> None:
    first = api.get("/apis", headers={"Accept": V2})
    etag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9A-F]+"', etag)
    again = api.get("/apis", headers={"Accept": V2, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = api.get("/api", headers={"Accept": V2, "If-None-Match": etag})
    assert other.status_code == 200 and other.headers["etag"] != etag
    beta = api.get("/apis", headers={"Accept": V2BETA1, "If-None-Match": etag})
    assert beta.status_code == 200 and beta.json()["apiVersion"] == "apidiscovery.k8s.io/v2beta1"


def _kubectl(kubectl_bin: str, kubeconfig: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl_bin, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_kubectl_reads_aggregated_discovery(
    api: httpx.Client, apiserver: APIServerProcess, kubectl_bin: str
) -> None:
    with tempfile.TemporaryDirectory(prefix="minik-discovery-") as tmp:
        kubeconfig = Path(shutil.copy(apiserver.kubeconfig, Path(tmp) / "config"))
        proc = _kubectl(kubectl_bin, kubeconfig, Path(tmp) / "cache", "api-resources", "-v=8")
        assert proc.returncode == 0, proc.stderr
        # it took the aggregated form: two requests, no walk of the group-versions
        gets = re.findall(r"\] GET (\S+)", proc.stderr)
        assert [g.split("?")[0].removeprefix(apiserver.url) for g in gets] == ["/api", "/apis"], gets
        assert (
            "Content-Type: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            in proc.stderr
        )
        rows = {}
        for line in proc.stdout.splitlines()[1:]:
            cols = line.split()
            rows[(cols[0], cols[-3])] = cols
        for gv, entries in plain_resource_lists(api, preferred_only=True).items():
            for e in entries:
                if "/" in e["name"]:
                    continue
                cols = rows[(e["name"], gv)]
                assert cols[-1] == e["kind"] and cols[-2] == str(e["namespaced"]).lower(), cols
                assert cols[1:-3] == ([",".join(e["shortNames"])] if e.get("shortNames") else []), cols
        assert len(rows) == sum(
            1
            for entries in plain_resource_lists(api, preferred_only=True).values()
            for e in entries
            if "/" not in e["name"]
        )
        # categories and verbs reach kubectl: `get all` and -o wide
        wide = _kubectl(kubectl_bin, kubeconfig, Path(tmp) / "cache", "api-resources", "-o", "wide")
        pods = next(line for line in wide.stdout.splitlines() if line.startswith("pods "))
        assert pods.split()[-2:] == ["create,delete,deletecollection,get,list,patch,update,watch", "all"], (
            pods
        )
        listed = _kubectl(kubectl_bin, kubeconfig, Path(tmp) / "cache", "get", "pods,deploy", "-A")
        assert listed.returncode == 0, listed.stderr


def test_official_client_reads_discovery(apiserver: APIServerProcess) -> None:
    configuration = client.Configuration()
    config.load_kube_config(config_file=apiserver.kubeconfig, client_configuration=configuration)
    with client.ApiClient(configuration) as c:
        assert client.CoreApi(c).get_api_versions().versions == ["v1"]
        groups = client.ApisApi(c).get_api_versions().groups
        assert "apps" in {g.name for g in groups}
        dyn = dynamic.DynamicClient(c)
        deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
        assert deployments.namespaced and deployments.name == "deployments"
        namespaces = dyn.resources.get(api_version="v1", kind="Namespace").get()
        assert "default" in {n.metadata.name for n in namespaces.items}
