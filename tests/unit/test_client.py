"""The API client against Kubernetes' REST contract, served by ``httpx.MockTransport``."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from apimachinery import errors
from apimachinery.client import Client, SyncClient, resource_path
from apimachinery.kubeconfig import DEFAULT_SERVER, ClientConfig, ConfigError, load_config
from apimachinery.resources import plural_info

PODS = plural_info("", "v1", "pods")
DEPLOYMENTS = plural_info("apps", "v1", "deployments")
NODES = plural_info("", "v1", "nodes")
LEASES = plural_info("coordination.k8s.io", "v1", "leases")

SERVER = "http://api.test:8080"


def status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def pod(name: str, rv: str = "1", ns: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
    }


class Recorder:
    """A mock API server: records requests and answers with ``respond(request)``."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self.respond = respond

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, i: int = -1) -> Any:
        return json.loads(self.requests[i].content)


def ok(body: Any = None) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, json=body if body is not None else {})


def make(respond: Callable[[httpx.Request], httpx.Response], **kw: Any) -> tuple[Client, Recorder]:
    rec = Recorder(respond)
    return Client(kw.pop("config", SERVER), transport=httpx.MockTransport(rec), **kw), rec


# ------------------------------------------------------------------------------------------------
# paths
# ------------------------------------------------------------------------------------------------


def test_resource_path_covers_groups_scopes_and_subresources() -> None:
    assert resource_path(PODS, "default", "web") == "/api/v1/namespaces/default/pods/web"
    assert resource_path(PODS, None) == "/api/v1/pods"
    assert resource_path(PODS, "kube-system") == "/api/v1/namespaces/kube-system/pods"
    assert resource_path(PODS, "default", "web", "status") == "/api/v1/namespaces/default/pods/web/status"
    assert (
        resource_path(DEPLOYMENTS, "prod", "api", "scale")
        == "/apis/apps/v1/namespaces/prod/deployments/api/scale"
    )
    assert resource_path(NODES, "ignored", "node-1") == "/api/v1/nodes/node-1"
    assert resource_path(LEASES, "kube-node-lease") == (
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
    )
    assert resource_path(PODS, "default", "a b/c") == "/api/v1/namespaces/default/pods/a%20b%2Fc"
    with pytest.raises(errors.BadRequest):
        resource_path(PODS, "default", "")
    with pytest.raises(errors.BadRequest):
        resource_path(PODS, "default", None, "status")


# ------------------------------------------------------------------------------------------------
# verbs
# ------------------------------------------------------------------------------------------------


async def test_get_sends_bearer_token_and_returns_object() -> None:
    client, rec = make(ok(pod("web")), config=ClientConfig(server=SERVER, token="s3cret"))
    async with client:
        obj = await client.get(PODS, "web", "default")
    assert obj["metadata"]["name"] == "web"
    assert rec.last.method == "GET"
    assert str(rec.last.url) == f"{SERVER}/api/v1/namespaces/default/pods/web"
    assert rec.last.headers["authorization"] == "Bearer s3cret"
    assert rec.last.headers["accept"] == "application/json"


async def test_list_sends_selectors_and_paging_params() -> None:
    client, rec = make(ok({"kind": "PodList", "items": [], "metadata": {"resourceVersion": "9"}}))
    listing = await client.list(
        PODS,
        "default",
        label_selector="app=web",
        field_selector="spec.nodeName=n1",
        limit=50,
        continue_="tok",
    )
    assert listing["metadata"]["resourceVersion"] == "9"
    params = dict(rec.last.url.params)
    assert params == {
        "labelSelector": "app=web",
        "fieldSelector": "spec.nodeName=n1",
        "limit": "50",
        "continue": "tok",
    }
    assert rec.last.url.path == "/api/v1/namespaces/default/pods"


async def test_list_all_follows_continue_tokens() -> None:
    pages = {
        None: {
            "kind": "PodList",
            "metadata": {"resourceVersion": "7", "continue": "p2"},
            "items": [pod("a")],
        },
        "p2": {
            "kind": "PodList",
            "metadata": {"resourceVersion": "7", "continue": "p3"},
            "items": [pod("b")],
        },
        "p3": {"kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": [pod("c")]},
    }
    client, rec = make(lambda r: httpx.Response(200, json=pages[r.url.params.get("continue")]))
    listing = await client.list_all(PODS, page_size=1)
    assert [p["metadata"]["name"] for p in listing["items"]] == ["a", "b", "c"]
    assert listing["metadata"] == {"resourceVersion": "7"}
    assert listing["kind"] == "PodList"
    assert [r.url.params.get("limit") for r in rec.requests] == ["1", "1", "1"]
    assert rec.requests[0].url.path == "/api/v1/pods"


async def test_list_all_relists_unpaginated_when_continue_token_expires() -> None:
    def respond(r: httpx.Request) -> httpx.Response:
        if r.url.params.get("continue") == "old":
            return httpx.Response(410, json=status(410, "Expired", "continue token expired"))
        if r.url.params.get("limit"):
            return httpx.Response(
                200, json={"metadata": {"resourceVersion": "3", "continue": "old"}, "items": []}
            )
        return httpx.Response(
            200, json={"metadata": {"resourceVersion": "12"}, "items": [pod("a"), pod("b")]}
        )

    client, rec = make(respond)
    listing = await client.list_all(PODS, "default", page_size=2)
    assert len(listing["items"]) == 2
    assert listing["metadata"]["resourceVersion"] == "12"
    assert "limit" not in rec.last.url.params


async def test_create_update_update_status() -> None:
    client, rec = make(lambda r: httpx.Response(201, content=r.content))
    created = await client.create(PODS, pod("web"), dry_run=True, field_manager="ctl")
    assert created["metadata"]["name"] == "web"
    assert rec.last.method == "POST"
    assert rec.last.url.path == "/api/v1/namespaces/default/pods"
    assert dict(rec.last.url.params) == {"dryRun": "All", "fieldManager": "ctl"}
    assert rec.last.headers["content-type"] == "application/json"

    await client.update(PODS, pod("web", rv="42"))
    assert rec.last.method == "PUT"
    assert rec.last.url.path == "/api/v1/namespaces/default/pods/web"
    assert rec.body()["metadata"]["resourceVersion"] == "42"

    await client.update_status(DEPLOYMENTS, {"metadata": {"name": "api", "namespace": "prod"}, "status": {}})
    assert rec.last.url.path == "/apis/apps/v1/namespaces/prod/deployments/api/status"


@pytest.mark.parametrize(
    ("patch_type", "patch", "content_type"),
    [
        ("merge", {"metadata": {"labels": {"a": "b"}}}, "application/merge-patch+json"),
        ("strategic", {"spec": {"containers": [{"name": "c"}]}}, "application/strategic-merge-patch+json"),
        ("json", [{"op": "replace", "path": "/spec/replicas", "value": 3}], "application/json-patch+json"),
    ],
)
async def test_patch_content_types(patch_type: Any, patch: Any, content_type: str) -> None:
    client, rec = make(ok(pod("web")))
    await client.patch(PODS, "web", patch, "default", patch_type=patch_type)
    assert rec.last.method == "PATCH"
    assert rec.last.headers["content-type"] == content_type
    assert rec.body() == patch


async def test_apply_patch_needs_field_manager_and_sends_force() -> None:
    client, rec = make(ok(pod("web")))
    await client.patch(PODS, "web", pod("web"), "default", patch_type="apply", force=True)
    assert rec.last.headers["content-type"] == "application/apply-patch+yaml"
    assert dict(rec.last.url.params) == {"fieldManager": "minik", "force": "true"}
    with pytest.raises(ValueError):
        await client.patch(PODS, "web", {"op": "x"}, "default", patch_type="json")


async def test_delete_sends_delete_options() -> None:
    client, rec = make(ok({"kind": "Status", "status": "Success"}))
    await client.delete(
        PODS,
        "web",
        "default",
        grace_period_seconds=0,
        propagation_policy="Foreground",
        preconditions={"uid": "u-1"},
    )
    assert rec.last.method == "DELETE"
    assert rec.body() == {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "gracePeriodSeconds": 0,
        "propagationPolicy": "Foreground",
        "preconditions": {"uid": "u-1"},
    }
    await client.delete(PODS, "web", "default")
    assert rec.last.content == b""

    await client.delete_collection(PODS, "default", label_selector="app=web", propagation_policy="Background")
    assert rec.last.url.path == "/api/v1/namespaces/default/pods"
    assert rec.last.url.params["labelSelector"] == "app=web"
    assert rec.body()["propagationPolicy"] == "Background"


async def test_bind_posts_a_binding_to_the_pod() -> None:
    client, rec = make(ok({"kind": "Status", "status": "Success"}))
    await client.bind("default", "web-0", "node-1")
    assert rec.last.method == "POST"
    assert rec.last.url.path == "/api/v1/namespaces/default/pods/web-0/binding"
    assert rec.body() == {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "web-0", "namespace": "default"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"},
    }


async def test_scale_patches_the_scale_subresource() -> None:
    client, rec = make(ok({"kind": "Scale", "spec": {"replicas": 5}}))
    scale = await client.scale(DEPLOYMENTS, "api", 5, "prod")
    assert scale["spec"]["replicas"] == 5
    assert rec.last.url.path == "/apis/apps/v1/namespaces/prod/deployments/api/scale"
    assert rec.last.headers["content-type"] == "application/merge-patch+json"
    assert rec.body() == {"spec": {"replicas": 5}}
    await client.get_scale(DEPLOYMENTS, "api", "prod")
    assert rec.last.method == "GET" and rec.last.url.path.endswith("/api/scale")


async def test_raw_returns_response_for_discovery_and_logs() -> None:
    client, rec = make(lambda r: httpx.Response(200, text="line1\nline2\n"))
    resp = await client.raw("GET", "/api/v1/namespaces/default/pods/web/log", params={"tailLines": "2"})
    assert resp.text == "line1\nline2\n"
    assert rec.last.url.params["tailLines"] == "2"


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------


async def test_404_status_becomes_not_found() -> None:
    body = status(404, "NotFound", 'pods "web" not found', name="web", kind="pods")
    client, _ = make(lambda r: httpx.Response(404, json=body))
    with pytest.raises(errors.NotFound) as info:
        await client.get(PODS, "web", "default")
    assert info.value.code == 404
    assert info.value.name == "web"
    assert info.value.message == 'pods "web" not found'


async def test_409_conflict_and_already_exists_are_distinct() -> None:
    conflict = errors.conflict("pods", "web").status()
    client, _ = make(lambda r: httpx.Response(409, json=conflict))
    with pytest.raises(errors.Conflict):
        await client.update(PODS, pod("web", rv="1"))
    exists = errors.already_exists("pods", "web").status()
    client, _ = make(lambda r: httpx.Response(409, json=exists))
    with pytest.raises(errors.AlreadyExists):
        await client.create(PODS, pod("web"))


async def test_422_keeps_causes() -> None:
    causes = [errors.cause("spec.containers[0].image", "Required value", "FieldValueRequired")]
    body = errors.invalid("Pod", "web", causes).status()
    client, _ = make(lambda r: httpx.Response(422, json=body))
    with pytest.raises(errors.Invalid) as info:
        await client.create(PODS, pod("web"))
    assert info.value.causes == causes
    assert "spec.containers[0].image: Required value" in info.value.message


async def test_non_status_error_body_maps_by_code() -> None:
    client, _ = make(lambda r: httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(errors.StatusError) as info:
        await client.get(PODS, "web", "default")
    assert info.value.code == 502
    assert "bad gateway" in info.value.message
    client, _ = make(lambda r: httpx.Response(503, text="overloaded"))
    with pytest.raises(errors.ServiceUnavailable):
        await client.get(PODS, "web", "default")


async def test_connection_failure_names_the_url() -> None:
    def refuse(r: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=r)

    client, _ = make(refuse)
    with pytest.raises(errors.ServiceUnavailable) as info:
        await client.get(PODS, "web", "default")
    assert f"{SERVER}/api/v1/namespaces/default/pods/web" in info.value.message
    assert info.value.code == 503


# ------------------------------------------------------------------------------------------------
# watch
# ------------------------------------------------------------------------------------------------


def ndjson(*events: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


async def test_watch_streams_events_and_sends_watch_params() -> None:
    stream = ndjson(
        {"type": "ADDED", "object": pod("a", "5")},
        {"type": "MODIFIED", "object": pod("a", "6")},
        {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "8"}}},
        {"type": "DELETED", "object": pod("a", "9")},
    )
    client, rec = make(lambda r: httpx.Response(200, content=stream + b"\n"))
    events = [
        (t, o["metadata"]["resourceVersion"])
        async for t, o in client.watch(
            PODS, "default", resource_version="4", label_selector="app=a", timeout_seconds=60
        )
    ]
    assert events == [("ADDED", "5"), ("MODIFIED", "6"), ("BOOKMARK", "8"), ("DELETED", "9")]
    assert dict(rec.last.url.params) == {
        "watch": "1",
        "resourceVersion": "4",
        "labelSelector": "app=a",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "60",
    }


async def test_watch_error_event_410_raises_gone() -> None:
    stream = ndjson(
        {"type": "ADDED", "object": pod("a", "5")},
        {"type": "ERROR", "object": status(410, "Expired", "too old resource version: 1 (5)")},
    )
    client, _ = make(lambda r: httpx.Response(200, content=stream))
    seen = []
    with pytest.raises(errors.Gone) as info:
        async for t, _o in client.watch(PODS, "default", resource_version="1"):
            seen.append(t)
    assert seen == ["ADDED"]
    assert info.value.code == 410


async def test_watch_http_410_raises_gone() -> None:
    client, _ = make(lambda r: httpx.Response(410, json=status(410, "Expired", "too old")))
    with pytest.raises(errors.Gone):
        async for _ in client.watch(PODS, resource_version="1"):
            pass


# ------------------------------------------------------------------------------------------------
# the synchronous client shares all of it
# ------------------------------------------------------------------------------------------------


def test_sync_client_verbs_errors_and_watch() -> None:
    pages = {
        None: {"metadata": {"resourceVersion": "3", "continue": "n"}, "items": [pod("a")]},
        "n": {"metadata": {"resourceVersion": "3"}, "items": [pod("b")]},
    }

    def respond(r: httpx.Request) -> httpx.Response:
        if r.url.params.get("watch"):
            return httpx.Response(200, content=ndjson({"type": "ADDED", "object": pod("c", "4")}))
        if r.url.path.endswith("/missing"):
            return httpx.Response(404, json=status(404, "NotFound", "nope"))
        if r.method == "GET" and r.url.path.endswith("/pods"):
            return httpx.Response(200, json=pages[r.url.params.get("continue")])
        return httpx.Response(200, content=r.content or b"{}")

    rec = Recorder(respond)
    with SyncClient(SERVER, transport=httpx.MockTransport(rec)) as client:
        assert [p["metadata"]["name"] for p in client.list_all(PODS, "default")["items"]] == ["a", "b"]
        with pytest.raises(errors.NotFound):
            client.get(PODS, "missing", "default")
        assert list(client.watch(PODS, "default", resource_version="3"))[0][0] == "ADDED"
        client.patch(DEPLOYMENTS, "api", {"spec": {"paused": True}}, "prod", patch_type="strategic")
        assert rec.last.headers["content-type"] == "application/strategic-merge-patch+json"
        client.bind("default", "a", "node-2")
        assert rec.body()["target"]["name"] == "node-2"


# ------------------------------------------------------------------------------------------------
# kubeconfig
# ------------------------------------------------------------------------------------------------


def kubeconfig(server: str = "https://10.0.0.1:6443", **user: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "minik",
        "clusters": [
            {"name": "minik", "cluster": {"server": server, "certificate-authority": "ca.crt"}},
            {
                "name": "other",
                "cluster": {"server": "http://127.0.0.1:9999", "insecure-skip-tls-verify": True},
            },
        ],
        "users": [
            {"name": "admin", "user": user or {"token": "abc"}},
            {"name": "dev", "user": {"username": "u", "password": "p"}},
        ],
        "contexts": [
            {"name": "minik", "context": {"cluster": "minik", "user": "admin", "namespace": "team-a"}},
            {"name": "dev", "context": {"cluster": "other", "user": "dev"}},
        ],
    }


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_load_config_reads_current_context(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "config", kubeconfig()))
    assert cfg.server == "https://10.0.0.1:6443"
    assert cfg.namespace == "team-a"
    assert cfg.token == "abc"
    assert cfg.ca_file == str(tmp_path / "ca.crt")  # relative to the kubeconfig's directory
    assert cfg.auth_headers() == {"Authorization": "Bearer abc"}


def test_load_config_other_context_and_overrides(tmp_path: Path) -> None:
    path = write(tmp_path / "config", kubeconfig())
    cfg = load_config(str(path), context="dev")
    assert cfg.server == "http://127.0.0.1:9999"
    assert cfg.namespace == "default"
    assert cfg.insecure_skip_tls_verify is True
    assert cfg.auth_headers() == {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    cfg = load_config(path, server="http://127.0.0.1:8080", namespace="x", token="t")
    assert (cfg.server, cfg.namespace, cfg.token) == ("http://127.0.0.1:8080", "x", "t")
    with pytest.raises(ConfigError):
        load_config(path, context="nope")


def test_load_config_decodes_data_fields_and_token_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    data = kubeconfig(
        tokenFile="token",
        **{"client-certificate-data": base64.b64encode(b"CERT").decode()},
    )
    data["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(b"CA").decode()
    cfg = load_config(write(tmp_path / "config", data))
    assert cfg.token == "from-file"
    assert cfg.cert_data == "CERT"
    assert cfg.ca_data == "CA"


def test_load_config_merges_kubeconfig_env_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = {
        "current-context": "dev",
        "contexts": [{"name": "dev", "context": {"cluster": "c1", "user": "u1", "namespace": "first"}}],
        "clusters": [{"name": "c1", "cluster": {"server": "http://one"}}],
        "users": [{"name": "u1", "user": {"token": "t1"}}],
    }
    a = write(tmp_path / "a", first)
    b = write(tmp_path / "b", kubeconfig())
    monkeypatch.setenv("KUBECONFIG", f"{a}:{b}")
    cfg = load_config()
    assert (cfg.server, cfg.namespace, cfg.token) == ("http://one", "first", "t1")
    cfg = load_config(context="minik")  # defined only in the second file
    assert cfg.namespace == "team-a"


def test_load_config_without_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    assert load_config().server == DEFAULT_SERVER
    assert load_config(server="http://127.0.0.1:1234").server == "http://127.0.0.1:1234"
    with pytest.raises(ConfigError):
        load_config(tmp_path / "absent")


async def test_client_uses_config_namespace_and_server() -> None:
    rec = Recorder(ok(pod("x")))
    cfg = ClientConfig(server="http://h:1/", namespace="ns1")
    async with Client(cfg, transport=httpx.MockTransport(rec)) as client:
        assert client.namespace == "ns1"
        await client.get(NODES, "n1")
    assert str(rec.last.url) == "http://h:1/api/v1/nodes/n1"
