"""The kubectl-like verbs with typer's CliRunner and an httpx.MockTransport (no network)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from apimachinery.printers import table
from apimachinery.resources import resolve
from cli import jsonpath
from cli.commands.apply import LAST_APPLIED, go_json, modified_configuration
from cli.commands.create import configmap_object, deployment_object, image_container_name, secret_object
from cli.commands.label import change_map, parse_changes
from cli.commands.rollout import (
    deployment_status,
    format_history,
    history,
    restarted_at,
    rollback_patch,
    rs_for_revision,
)
from cli.commands.service import node_ip, service_urls
from cli.commands.set_ import image_patch
from cli.describe_fmt import go_tabwriter, smart_label
from cli.kube import CLIError, GlobalOptions, hoist_global_options, parse_resource_args, tabulate
from cli.main import app
from cli.manifests import parse_documents
from cli.streams import exec_params, exit_code_from_status

runner = CliRunner()

POD = {
    "metadata": {
        "name": "web-0",
        "namespace": "default",
        "creationTimestamp": "2024-01-01T00:00:00Z",
        "labels": {"app": "web"},
    },
    "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "n1"},
    "status": {"phase": "Running", "podIP": "10.0.0.5"},
}


class FakeAPI:
    """A tiny API: records requests and answers from a dict of (method, path) -> response."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: dict[tuple[str, str], Any] = {}

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes.get((request.method, request.url.path))
        if callable(answer):
            return answer(request)
        if answer is None:
            return httpx.Response(
                404,
                json={
                    "kind": "Status",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                    "message": f'pods "{request.url.path.rsplit("/", 1)[-1]}" not found',
                },
            )
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer)

    def invoke(self, args: list[str], **kwargs: Any) -> Any:
        opts = GlobalOptions(server="http://api.test", transport=httpx.MockTransport(self.handler))
        return runner.invoke(app, args, obj=opts, **kwargs)


@pytest.fixture(autouse=True)
def no_kubeconfig(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))


def pods_table(wide: bool = False) -> dict:
    info = resolve("pods")
    assert info is not None
    return table(info, [POD])


def test_get_prints_server_table_columns_uppercased_priority_zero() -> None:
    api = FakeAPI()
    api.routes[("GET", "/api/v1/namespaces/default/pods")] = pods_table()
    result = api.invoke(["get", "pods"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[1].startswith("web-0   0/1     Running")
    assert "as=Table" in api.requests[0].headers["accept"]


def test_get_wide_all_namespaces_and_labels() -> None:
    api = FakeAPI()
    api.routes[("GET", "/api/v1/pods")] = pods_table()
    result = api.invoke(["get", "pods", "-A", "-o", "wide", "--show-labels"])
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0].split()
    assert header[0] == "NAMESPACE" and "IP" in header and "NODE" in header and header[-1] == "LABELS"
    assert result.stdout.splitlines()[1].split()[0] == "default"
    assert result.stdout.splitlines()[1].split()[-1] == "app=web"


def test_get_several_kinds_prefixes_names_and_separates_tables() -> None:
    api = FakeAPI()
    svc = resolve("services")
    assert svc is not None
    api.routes[("GET", "/api/v1/namespaces/default/pods")] = pods_table()
    api.routes[("GET", "/api/v1/namespaces/default/services")] = table(
        svc,
        [
            {
                "metadata": {"name": "web", "creationTimestamp": "2024-01-01T00:00:00Z"},
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": "10.96.0.9",
                    "ports": [{"port": 80, "protocol": "TCP"}],
                },
            }
        ],
    )
    result = api.invoke(["get", "pods,svc"])
    assert result.exit_code == 0, result.output
    assert "pod/web-0" in result.stdout and "service/web" in result.stdout
    assert "\n\nNAME" in result.stdout


def test_get_empty_says_no_resources_found() -> None:
    api = FakeAPI()
    info = resolve("pods")
    assert info is not None
    api.routes[("GET", "/api/v1/namespaces/lab/pods")] = table(info, [])
    result = api.invoke(["get", "pods", "-n", "lab"])
    assert result.exit_code == 0
    assert "No resources found in lab namespace." in result.stderr


def test_get_not_found_is_printed_like_kubectl() -> None:
    api = FakeAPI()
    result = api.invoke(["get", "pod", "nope"])
    assert result.exit_code == 1
    assert 'Error from server (NotFound): pods "nope" not found' in result.stderr
    assert "Traceback" not in result.output


def test_get_yaml_json_name_jsonpath() -> None:
    api = FakeAPI()
    api.routes[("GET", "/api/v1/namespaces/default/pods/web-0")] = POD
    api.routes[("GET", "/api/v1/namespaces/default/pods")] = {
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": [POD],
    }
    r = api.invoke(["get", "pod", "web-0", "-o", "json"])
    assert json.loads(r.stdout)["kind"] == "Pod"
    r = api.invoke(["get", "pods", "-o", "json"])
    assert json.loads(r.stdout)["kind"] == "List" and json.loads(r.stdout)["items"][0]["kind"] == "Pod"
    r = api.invoke(["get", "pods", "-o", "yaml"])
    assert r.stdout.startswith("apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: Pod\n")
    assert api.invoke(["get", "pods", "-o", "name"]).stdout == "pod/web-0\n"
    r = api.invoke(["get", "pods", "-o", "jsonpath={.items[*].status.podIP}"])
    assert r.stdout == "10.0.0.5"
    assert api.invoke(["get", "pods", "-o", "bogus"]).exit_code == 1


def test_get_watch_prints_rows_as_they_change() -> None:
    api = FakeAPI()
    info = resolve("pods")
    assert info is not None
    first = table(info, [POD], resource_version="7")
    changed = {**POD, "status": {"phase": "Succeeded"}}

    def list_or_watch(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("watch"):
            assert request.url.params["resourceVersion"] == "7"
            event = {"type": "MODIFIED", "object": table(info, [changed])}
            return httpx.Response(200, content=(json.dumps(event) + "\n").encode())
        return httpx.Response(200, json=first)

    api.routes[("GET", "/api/v1/namespaces/default/pods")] = list_or_watch
    result = api.invoke(["get", "pods", "-w", "--request-timeout", "1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and "Running" in lines[1] and "Succeeded" in lines[2]


def test_unreachable_server_message() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    result = runner.invoke(
        app,
        ["get", "pods"],
        obj=GlobalOptions(server="http://127.0.0.1:9", transport=httpx.MockTransport(refuse)),
    )
    assert result.exit_code == 1
    assert (
        "cannot reach the API server at http://127.0.0.1:9 — is the cluster running? try `minik up`"
        in result.stderr
    )


def test_unknown_kind_suggests_close_matches() -> None:
    result = FakeAPI().invoke(["get", "deploymnets"])
    assert result.exit_code == 1
    assert 'resource type "deploymnets"' in result.stderr and "deployments" in result.stderr


def test_invalid_error_lists_causes() -> None:
    api = FakeAPI()
    api.routes[("GET", "/apis/apps/v1/namespaces/default/deployments/bad")] = None
    api.routes[("POST", "/apis/apps/v1/namespaces/default/deployments")] = httpx.Response(
        422,
        json={
            "kind": "Status",
            "status": "Failure",
            "reason": "Invalid",
            "code": 422,
            "message": "x",
            "details": {
                "name": "bad",
                "kind": "Deployment",
                "causes": [
                    {
                        "field": "spec.replicas",
                        "message": "Invalid value: -1: must be greater than or equal to 0",
                    }
                ],
            },
        },
    )
    doc = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec: {replicas: -1}\n"
    result = api.invoke(["apply", "-f", "-"], input=doc)
    assert result.exit_code == 1
    assert 'The Deployment "bad" is invalid: spec.replicas: Invalid value: -1' in result.stderr


def test_apply_creates_with_last_applied_and_strict_validation() -> None:
    api = FakeAPI()
    created: list[dict] = []

    def create(request: httpx.Request) -> httpx.Response:
        created.append(json.loads(request.content))
        assert request.url.params["fieldManager"] == "kubectl-client-side-apply"
        assert request.url.params["fieldValidation"] == "Strict"
        return httpx.Response(201, json=created[-1])

    api.routes[("POST", "/api/v1/namespaces/default/configmaps")] = create
    result = api.invoke(
        ["apply", "-f", "-"], input="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: <b>\n"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "configmap/c created\n"
    annotation = created[0]["metadata"]["annotations"][LAST_APPLIED]
    assert (
        annotation
        == '{"apiVersion":"v1","data":{"a":"\\u003cb\\u003e"},"kind":"ConfigMap","metadata":{"annotations":{},"name":"c","namespace":"default"}}\n'
    )


def test_apply_unchanged_and_configured() -> None:
    api = FakeAPI()
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "default"},
        "data": {"a": "1"},
    }
    live = modified_configuration(obj)
    live["metadata"].update(uid="u1", resourceVersion="5")
    api.routes[("GET", "/api/v1/namespaces/default/configmaps/c")] = live
    patches: list[httpx.Request] = []
    api.routes[("PATCH", "/api/v1/namespaces/default/configmaps/c")] = lambda r: (
        patches.append(r),
        httpx.Response(200, json=live),
    )[1]
    doc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '1'}\n"
    assert api.invoke(["apply", "-f", "-"], input=doc).stdout == "configmap/c unchanged\n"
    result = api.invoke(["apply", "-f", "-", "--dry-run=server"], input=doc.replace("'1'", "'2'"))
    assert result.stdout == "configmap/c configured (server dry run)\n"
    assert patches[0].headers["content-type"] == "application/strategic-merge-patch+json"
    assert patches[0].url.params["dryRun"] == "All"
    assert json.loads(patches[0].content)["data"] == {"a": "2"}


def test_apply_namespace_mismatch() -> None:
    result = FakeAPI().invoke(
        ["apply", "-n", "b", "-f", "-"],
        input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: a}\n",
    )
    assert result.exit_code == 1
    assert "does not match the namespace" in result.stderr


def test_delete_prints_and_skips_wait_when_asked() -> None:
    api = FakeAPI()
    api.routes[("DELETE", "/api/v1/namespaces/default/pods/web-0")] = {
        "kind": "Status",
        "status": "Success",
        "details": {"uid": "u"},
    }
    result = api.invoke(["delete", "pod", "web-0", "--wait=false"])
    assert result.exit_code == 0, result.output
    assert result.stdout == 'pod "web-0" deleted\n'
    apps = api.invoke(["delete", "deploy/web", "--wait=false"])
    assert "Error from server (NotFound)" in apps.stderr and apps.exit_code == 1


def test_label_patch_and_overwrite_rules() -> None:
    assert parse_changes(["pods", "a", "x=1", "y-"], "label") == (["pods", "a"], {"x": "1"}, ["y"])
    assert change_map({"x": "1", "y": "2"}, {"x": "1"}, ["y"], False, "label") == {"y": None}
    with pytest.raises(CLIError, match="already has a value"):
        change_map({"x": "1"}, {"x": "2"}, [], False, "label")
    assert change_map({"x": "1"}, {"x": "2"}, [], True, "label") == {"x": "2"}
    api = FakeAPI()
    api.routes[("GET", "/api/v1/namespaces/default/pods/web-0")] = POD
    sent: list[dict] = []
    api.routes[("PATCH", "/api/v1/namespaces/default/pods/web-0")] = lambda r: (
        sent.append(json.loads(r.content)),
        httpx.Response(200, json=POD),
    )[1]
    result = api.invoke(["label", "pod", "web-0", "tier=fe"])
    assert result.stdout == "pod/web-0 labeled\n"
    assert sent == [{"metadata": {"labels": {"tier": "fe"}}}]
    assert api.invoke(["label", "pod", "web-0", "app=web"]).stdout == "pod/web-0 not labeled\n"


def test_resource_args_and_hoisting() -> None:
    pairs = parse_resource_args(["svc,deploy"])
    assert [p[0].plural for p in pairs] == ["services", "deployments"]
    pairs = parse_resource_args(["po/a", "deploy/b", "po/c"])
    assert [(p[0].plural, p[1]) for p in pairs] == [("pods", ["a", "c"]), ("deployments", ["b"])]
    assert [p[0].plural for p in parse_resource_args(["all"])][:2] == ["pods", "services"]
    assert hoist_global_options(["get", "pods", "-n", "x", "--context=c", "-nfoo"]) == [
        "-n",
        "x",
        "--context=c",
        "-n",
        "foo",
        "get",
        "pods",
    ]
    assert hoist_global_options(["exec", "p", "--", "sh", "-n", "x"]) == ["exec", "p", "--", "sh", "-n", "x"]
    assert hoist_global_options(["config", "set-context", "--current", "--namespace=x"])[0] == "config"


def test_tabwriter_layouts() -> None:
    assert tabulate([["NAME", "AGE"], ["a", "1s"]]) == ["NAME   AGE", "a      1s"]
    lines = go_tabwriter(
        [
            ["Name:", "web"],
            ["Pod Template:"],
            ["  Labels:", "app=web"],
            ["  Annotations:", "x"],
            ["Events:", "<none>"],
        ]
    )
    assert lines == [
        "Name:  web",
        "Pod Template:",
        "  Labels:       app=web",
        "  Annotations:  x",
        "Events:         <none>",
    ]
    assert smart_label("minReadySeconds") == "Min Ready Seconds"


def test_jsonpath_templates() -> None:
    data = {
        "items": [
            {"metadata": {"name": "a"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "b"}},
        ]
    }
    assert jsonpath.render("{.items[*].metadata.name}", data) == "a b"
    assert jsonpath.render('{range .items[*]}{.metadata.name}{"\\n"}{end}', data) == "a\nb\n"
    assert jsonpath.render('{.items[0].status.conditions[?(@.type=="Ready")].status}', data) == "True"
    assert jsonpath.render("{..name}", data) == "a b"
    assert jsonpath.render("{.items[-1].metadata}", data) == '{"name":"b"}'


def test_manifests_multi_document_lists_and_errors() -> None:
    docs = parse_documents(
        "---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n---\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n",
        "f.yaml",
    )
    assert [d.obj["metadata"]["name"] for d in docs] == ["a", "s"]
    with pytest.raises(CLIError, match="error parsing f.yaml: line 2"):
        parse_documents("a: [\n b", "f.yaml")


def test_go_json_matches_kubectl_encoding() -> None:
    assert go_json({"b": 1, "a": "x&y"}) == '{"a":"x\\u0026y","b":1}\n'
    mod = modified_configuration(
        {"kind": "X", "metadata": {"name": "n", "annotations": {LAST_APPLIED: "old", "k": "v"}}}
    )
    assert (
        mod["metadata"]["annotations"][LAST_APPLIED]
        == '{"kind":"X","metadata":{"annotations":{"k":"v"},"name":"n"}}\n'
    )


def test_create_objects() -> None:
    d = deployment_object("web", ["registry.local:5000/lib/nginx:1.25"], 3, 80, [])
    assert d["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert d["spec"]["template"]["spec"]["containers"][0]["name"] == "nginx"
    assert image_container_name("busybox@sha256:abc") == "busybox"
    s = secret_object("s", ["user=admin"], [], None)
    assert s["data"] == {"user": "YWRtaW4="}
    cm = configmap_object("c", ["a=b"], [])
    assert cm["data"] == {"a": "b"}
    with pytest.raises(CLIError):
        configmap_object("c", ["a"], [])


def test_create_secret_from_file(tmp_path: Any) -> None:
    (tmp_path / "key.pem").write_bytes(b"\x00\x01")
    s = secret_object("s", [], [f"k={tmp_path / 'key.pem'}", str(tmp_path / "key.pem")], "Opaque")
    assert s["data"] == {"k": "AAE=", "key.pem": "AAE="} and s["type"] == "Opaque"
    result = FakeAPI().invoke(
        ["create", "configmap", "c", "--from-literal=a=b", "--dry-run=client", "-o", "yaml"]
    )
    assert result.exit_code == 0 and "a: b" in result.stdout


def test_set_image_patch() -> None:
    d = deployment_object("web", ["nginx:1"], 1, None, [])
    assert image_patch(d, "Deployment", {"nginx": "nginx:2"}) == {
        "spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:2"}]}}}
    }
    with pytest.raises(CLIError, match='unable to find container named "x"'):
        image_patch(d, "Deployment", {"x": "y"})


def test_rollout_decisions() -> None:
    d = {
        "metadata": {"name": "web", "generation": 2},
        "spec": {"replicas": 3},
        "status": {"observedGeneration": 1},
    }
    assert deployment_status(d) == ("Waiting for deployment spec update to be observed...", False)
    d["status"] = {"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3}
    assert (
        deployment_status(d)[0]
        == 'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...'
    )
    d["status"] = {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4}
    assert "1 old replicas are pending termination" in deployment_status(d)[0]
    d["status"] = {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2}
    assert "2 of 3 updated replicas are available" in deployment_status(d)[0]
    d["status"]["availableReplicas"] = 3
    assert deployment_status(d) == ('deployment "web" successfully rolled out', True)

    def rs(rev: str, image: str) -> dict:
        return {
            "metadata": {
                "name": f"web-{rev}",
                "annotations": {
                    "deployment.kubernetes.io/revision": rev,
                    "kubernetes.io/change-cause": f"c{rev}" if rev == "2" else "",
                },
            },
            "spec": {
                "template": {
                    "metadata": {"labels": {"app": "web", "pod-template-hash": rev}},
                    "spec": {"containers": [{"name": "c", "image": image}]},
                }
            },
        }

    revs = history([rs("1", "a"), rs("2", "b"), {"metadata": {"name": "x"}}])
    assert sorted(revs) == [1, 2]
    assert format_history(revs) == "REVISION  CHANGE-CAUSE\n1         <none>\n2         c2\n"
    assert rs_for_revision("web", revs, 0)[0] == 1
    with pytest.raises(CLIError, match="unable to find specified revision 9"):
        rs_for_revision("web", revs, 9)
    patch = rollback_patch({"metadata": {"annotations": {"deployment.kubernetes.io/revision": "2"}}}, revs[1])
    assert patch[0]["value"]["metadata"]["labels"] == {"app": "web"}
    assert patch[1]["value"]["deployment.kubernetes.io/revision"] == "2"
    assert restarted_at().count("T") == 1


def test_service_urls() -> None:
    nodes = [
        {
            "status": {
                "addresses": [
                    {"type": "Hostname", "address": "h"},
                    {"type": "InternalIP", "address": "172.18.0.2"},
                ]
            }
        }
    ]
    assert node_ip(nodes) == "172.18.0.2" and node_ip([]) == "127.0.0.1"
    svc = {
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]},
    }
    assert service_urls(svc, "172.18.0.2") == ["http://172.18.0.2:30080"]
    with pytest.raises(CLIError, match="ClusterIP"):
        service_urls({"metadata": {"name": "x"}, "spec": {"type": "ClusterIP"}}, "1.2.3.4")


def test_exec_protocol_helpers() -> None:
    assert exec_params(["ls", "-l"], "c", True, True) == [
        ("command", "ls"),
        ("command", "-l"),
        ("container", "c"),
        ("stdout", "true"),
        ("stderr", "false"),
        ("stdin", "true"),
        ("tty", "true"),
    ]
    assert exit_code_from_status({"status": "Success"}) == 0
    assert (
        exit_code_from_status(
            {
                "status": "Failure",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
            }
        )
        == 3
    )


def test_config_set_context_and_use_context(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config"
    path.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://x'}}]\n"
        "users: [{name: u, user: {token: secret}}]\ncontexts: [{name: a, context: {cluster: c, user: u}}]\ncurrent-context: a\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert (
        runner.invoke(app, ["config", "set-context", "--current", "--namespace=lab"]).stdout
        == 'Context "a" modified.\n'
    )
    assert (
        runner.invoke(app, ["config", "set-context", "b", "--cluster=c"]).stdout == 'Context "b" created.\n'
    )
    assert runner.invoke(app, ["config", "use-context", "b"]).stdout == 'Switched to context "b".\n'
    assert runner.invoke(app, ["config", "use-context", "zz"]).exit_code == 1
    lines = runner.invoke(app, ["config", "get-contexts"]).stdout.splitlines()
    assert lines[0].split() == ["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]
    assert lines[1].split() == ["a", "c", "u", "lab"] and lines[2].split() == ["*", "b", "c"]
    view = runner.invoke(app, ["config", "view"]).stdout
    assert "REDACTED" in view and "secret" not in view
    assert runner.invoke(app, ["config", "current-context"]).stdout == "b\n"


def test_get_and_edit_leave_out_managed_fields_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {
        "manager": "kubectl",
        "operation": "Update",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {}},
    }
    pod = {**POD, "metadata": {**POD["metadata"], "managedFields": [entry]}}
    api = FakeAPI()
    api.routes[("GET", "/api/v1/namespaces/default/pods/web-0")] = pod
    api.routes[("GET", "/api/v1/namespaces/default/pods")] = {
        "kind": "PodList",
        "metadata": {},
        "items": [pod],
    }
    r = api.invoke(["get", "pod", "web-0", "-o", "json"])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert "managedFields" not in shown["metadata"] and shown["metadata"]["labels"] == {"app": "web"}
    r = api.invoke(["get", "pods", "-o", "yaml"])
    assert "managedFields" not in r.stdout and "name: web-0" in r.stdout
    r = api.invoke(["get", "pods", "-o", "json", "--show-managed-fields"])
    assert json.loads(r.stdout)["items"][0]["metadata"]["managedFields"] == [entry]
    r = api.invoke(["get", "pod", "web-0", "-o", "yaml", "--show-managed-fields"])
    assert "managedFields:" in r.stdout and "manager: kubectl" in r.stdout
    # jsonpath reads the whole object, as kubectl's does
    r = api.invoke(["get", "pod", "web-0", "-o", "jsonpath={.metadata.managedFields[0].manager}"])
    assert r.stdout == "kubectl"
    assert "managedFields" in pod["metadata"]  # printing did not change the object

    from cli.commands import edit as edit_module

    shown_to_editor: list[str] = []

    def editor(text: str, suffix: str = ".yaml") -> str:
        shown_to_editor.append(text)
        return text.replace("image: nginx", "image: nginx:1.27")

    monkeypatch.setattr(edit_module, "run_editor", editor)
    api.routes[("PUT", "/api/v1/namespaces/default/pods/web-0")] = lambda req: httpx.Response(
        200, content=req.content
    )
    r = api.invoke(["edit", "pod/web-0"])
    assert r.exit_code == 0, r.output
    assert "managedFields" not in shown_to_editor[0] and "image: nginx" in shown_to_editor[0]
    sent = json.loads(api.requests[-1].content)
    assert "managedFields" not in sent["metadata"]
    assert sent["spec"]["containers"][0]["image"] == "nginx:1.27"
    r = api.invoke(["edit", "pod/web-0", "--show-managed-fields"])
    assert r.exit_code == 0, r.output
    assert "managedFields:" in shown_to_editor[1]
