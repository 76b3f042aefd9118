"""``minik``'s kubectl-like verbs against a real API server (and the real kubectl beside them)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from testkit.prereq import require_kubectl

runner = CliRunner()

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: web
        image: {image}
"""


@pytest.fixture()
def kubeconfig(apiserver: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary kubeconfig for the test API server as its admin (never ~/.kube/config): cluster,
    user and context named ``test``."""
    path = tmp_path / "kubeconfig"
    admin = yaml.safe_load(Path(apiserver.kubeconfig).read_text())
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": admin["clusters"][0]["cluster"]}],
                "users": [{"name": "test", "user": admin["users"][0]["user"]}],
                "contexts": [
                    {"name": "test", "context": {"cluster": "test", "user": "test", "namespace": "default"}}
                ],
                "current-context": "test",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setenv("HOME", str(tmp_path))
    return path


@pytest.fixture()
def namespace(kubeconfig: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "t-" + request.node.name.replace("_", "-")[5:40].strip("-").lower()
    assert minik("create", "namespace", name).exit_code == 0
    try:
        yield name
    finally:
        minik("delete", "namespace", name, "--wait=false")


def minik(*args: str, input: str | None = None) -> Any:
    result = runner.invoke(app, list(args), input=input)
    assert "Traceback" not in result.output, result.output
    return result


def kubectl(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_kubectl(), *args], input=input, capture_output=True, text=True, timeout=60)


# the tests that compare with the real kubectl: skipped locally without one, failed with CI=true
needs_kubectl = pytest.mark.usefixtures("kubectl_bin")


def test_apply_create_configure_unchanged(namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(
        DEPLOYMENT.format(name="web", replicas=2, image="nginx:1.25")
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: '1'}\n"
    )
    r = minik("apply", "-f", str(manifest), "-n", namespace)
    assert r.exit_code == 0, r.output
    assert r.stdout == "deployment.apps/web created\nconfigmap/cfg created\n"
    assert (
        minik("apply", "-f", str(manifest), "-n", namespace).stdout
        == "deployment.apps/web unchanged\nconfigmap/cfg unchanged\n"
    )
    manifest.write_text(
        DEPLOYMENT.format(name="web", replicas=3, image="nginx:1.26")
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {b: '2'}\n"
    )
    r = minik("apply", "-f", str(manifest), "-n", namespace, "--dry-run=server")
    assert (
        r.stdout
        == "deployment.apps/web configured (server dry run)\nconfigmap/cfg configured (server dry run)\n"
    )
    r = minik("apply", "-f", str(tmp_path), "-n", namespace)
    assert r.stdout == "deployment.apps/web configured\nconfigmap/cfg configured\n"
    cm = json.loads(minik("get", "cm", "cfg", "-o", "json", "-n", namespace).stdout)
    assert cm["data"] == {"b": "2"}  # a was dropped from the file, so the three-way patch removed it
    d = json.loads(minik("get", "deploy", "web", "-o", "json", "-n", namespace).stdout)
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"


@needs_kubectl
def test_last_applied_annotation_is_what_kubectl_writes(namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(DEPLOYMENT.format(name="same", replicas=1, image="busybox:1.36"))
    assert minik("apply", "-f", str(manifest), "-n", namespace).exit_code == 0
    mine = json.loads(minik("get", "deploy", "same", "-n", namespace, "-o", "json").stdout)
    r = kubectl("apply", "-f", str(manifest), "-n", namespace)
    assert r.stdout.strip() == "deployment.apps/same unchanged", r.stderr
    kubectl("apply", "-f", str(manifest), "-n", namespace, "-o", "json")
    kubectl("delete", "deploy", "same", "-n", namespace)
    assert kubectl("apply", "-f", str(manifest), "-n", namespace).returncode == 0
    theirs = json.loads(kubectl("get", "deploy", "same", "-n", namespace, "-o", "json").stdout)
    key = "kubectl.kubernetes.io/last-applied-configuration"
    assert mine["metadata"]["annotations"][key] == theirs["metadata"]["annotations"][key]
    assert minik("apply", "-f", str(manifest), "-n", namespace).stdout == "deployment.apps/same unchanged\n"


@needs_kubectl
def test_get_tables_match_kubectl(namespace: str) -> None:
    minik("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT.format(name="t1", replicas=1, image="a:1"))
    minik("create", "configmap", "c1", "--from-literal=a=b", "-n", namespace)
    for args in (
        ["get", "deploy"],
        ["get", "deploy", "-o", "wide"],
        ["get", "deploy,cm"],
        ["get", "all"],
        ["get", "ns", namespace],
    ):
        mine = minik(*args, "-n", namespace).stdout.splitlines()
        theirs = kubectl(*args, "-n", namespace).stdout.splitlines()
        # AGE may tick between the two calls: compare everything else
        strip = [[c for c in line.split() if not c[:-1].isdigit() or c[-1] not in "smhdy"] for line in mine]
        assert strip == [
            [c for c in line.split() if not c[:-1].isdigit() or c[-1] not in "smhdy"] for line in theirs
        ], (args, mine, theirs)
        assert [len(line.split()) for line in mine] == [len(line.split()) for line in theirs]


def test_get_outputs(namespace: str) -> None:
    minik("create", "configmap", "c1", "--from-literal=a=b", "-n", namespace)
    minik("create", "configmap", "c2", "--from-literal=x=y", "-n", namespace)
    assert minik("get", "cm", "-n", namespace, "-o", "name").stdout == "configmap/c1\nconfigmap/c2\n"
    assert minik("get", "cm", "-n", namespace, "-o", "jsonpath={.items[*].metadata.name}").stdout == "c1 c2"
    assert minik("get", "cm", "c1", "-n", namespace, "-o", "jsonpath={.data.a}").stdout == "b"
    doc = yaml.safe_load(minik("get", "cm", "c2", "-n", namespace, "-o", "yaml").stdout)
    assert doc["kind"] == "ConfigMap" and doc["data"] == {"x": "y"}
    lst = json.loads(minik("get", "cm", "-l", "nothing=here", "-n", namespace, "-o", "json").stdout)
    assert lst["kind"] == "List" and lst["items"] == []
    r = minik("get", "cm", "-A")
    assert r.stdout.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert any(line.split()[:2] == [namespace, "c1"] for line in r.stdout.splitlines())
    r = minik("get", "cm", "nope", "-n", namespace)
    assert r.exit_code == 1 and 'Error from server (NotFound): configmaps "nope" not found' in r.stderr


def test_create_secret_and_configmap_from_files(namespace: str, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>hi</h1>\n")
    r = minik(
        "create",
        "secret",
        "generic",
        "s1",
        "--from-literal=user=admin",
        f"--from-file=page={tmp_path / 'index.html'}",
        "-n",
        namespace,
    )
    assert r.stdout == "secret/s1 created\n", r.output
    s = json.loads(minik("get", "secret", "s1", "-n", namespace, "-o", "json").stdout)
    assert s["data"] == {"user": "YWRtaW4=", "page": "PGgxPmhpPC9oMT4K"} and s["type"] == "Opaque"
    assert (
        minik(
            "create", "configmap", "web", f"--from-file={tmp_path / 'index.html'}", "-n", namespace
        ).exit_code
        == 0
    )
    cm = json.loads(minik("get", "cm", "web", "-n", namespace, "-o", "json").stdout)
    assert cm["data"] == {"index.html": "<h1>hi</h1>\n"}
    r = minik("create", "configmap", "web", "--from-literal=a=b", "-n", namespace)
    assert r.exit_code == 1 and "Error from server (AlreadyExists)" in r.stderr


def test_scale_label_annotate_set_image(namespace: str) -> None:
    minik(
        "apply", "-n", namespace, "-f", "-", input=DEPLOYMENT.format(name="web", replicas=1, image="nginx:1")
    )
    assert (
        minik("scale", "deploy/web", "--replicas=4", "-n", namespace).stdout == "deployment.apps/web scaled\n"
    )
    assert minik("get", "deploy", "web", "-n", namespace, "-o", "jsonpath={.spec.replicas}").stdout == "4"
    assert (
        minik("label", "deploy", "web", "tier=fe", "-n", namespace).stdout == "deployment.apps/web labeled\n"
    )
    r = minik("label", "deploy", "web", "tier=be", "-n", namespace)
    assert r.exit_code == 1 and "'tier' already has a value (fe), and --overwrite is false" in r.stderr
    assert minik("label", "deploy", "web", "tier=be", "--overwrite", "-n", namespace).exit_code == 0
    assert (
        minik("get", "deploy", "-l", "tier=be", "-n", namespace, "-o", "name").stdout
        == "deployment.apps/web\n"
    )
    assert minik("label", "deploy", "web", "tier-", "-n", namespace).exit_code == 0
    assert (
        minik("annotate", "deploy/web", "owner=lab", "-n", namespace).stdout
        == "deployment.apps/web annotated\n"
    )
    d = json.loads(minik("get", "deploy", "web", "-n", namespace, "-o", "json").stdout)
    assert "tier" not in d["metadata"]["labels"] and d["metadata"]["annotations"]["owner"] == "lab"
    assert (
        minik("set", "image", "deploy/web", "web=nginx:2", "-n", namespace).stdout
        == "deployment.apps/web image updated\n"
    )
    assert (
        minik(
            "get",
            "deploy",
            "web",
            "-n",
            namespace,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ).stdout
        == "nginx:2"
    )
    r = minik("describe", "deploy", "web", "-n", namespace)
    assert r.exit_code == 0 and "Replicas:" in r.stdout and "nginx:2" in r.stdout and "Events:" in r.stdout


def test_delete_waits_until_gone(namespace: str, apiserver: Any) -> None:
    """A finalizer keeps the object; delete returns only once the finalizer is removed."""
    api = apiserver.http()
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    api.post(
        base,
        json={
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "held", "finalizers": ["test/hold"]},
        },
    ).raise_for_status()

    def release() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            obj = api.get(f"{base}/held").json()
            if obj.get("metadata", {}).get("deletionTimestamp"):
                api.patch(
                    f"{base}/held",
                    json={"metadata": {"finalizers": None}},
                    headers={"Content-Type": "application/merge-patch+json"},
                )
                return
            time.sleep(0.05)

    releaser = threading.Thread(target=release)
    releaser.start()
    try:
        r = minik("delete", "cm", "held", "-n", namespace)
    finally:
        releaser.join()
    assert r.exit_code == 0, r.output
    assert r.stdout == 'configmap "held" deleted\n'
    assert api.get(f"{base}/held").status_code == 404
    api.close()
    minik("create", "configmap", "a", "--from-literal=x=1", "-n", namespace)
    minik("create", "configmap", "b", "--from-literal=x=1", "-n", namespace)
    r = minik("delete", "cm", "--all", "-n", namespace)
    assert sorted(r.stdout.splitlines()) == ['configmap "a" deleted', 'configmap "b" deleted']
    r = minik("delete", "cm", "a", "-n", namespace)
    assert r.exit_code == 1 and 'Error from server (NotFound): configmaps "a" not found' in r.stderr


def test_rollout_history_undo_restart_pause(namespace: str, apiserver: Any) -> None:
    minik("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT.format(name="web", replicas=1, image="img:2"))
    d = json.loads(minik("get", "deploy", "web", "-n", namespace, "-o", "json").stdout)
    # ReplicaSets as the deployment controller would have made them
    for rev, image in (("1", "img:1"), ("2", "img:2")):
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"web-{rev}",
                "labels": {"app": "web", "pod-template-hash": rev},
                "annotations": {"deployment.kubernetes.io/revision": rev},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "web",
                        "uid": d["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web", "pod-template-hash": rev}},
                "template": {
                    "metadata": {"labels": {"app": "web", "pod-template-hash": rev}},
                    "spec": {"containers": [{"name": "web", "image": image}]},
                },
            },
        }
        with apiserver.http() as api:
            api.post(f"/apis/apps/v1/namespaces/{namespace}/replicasets", json=rs).raise_for_status()
    r = minik("rollout", "history", "deploy/web", "-n", namespace)
    assert r.stdout == "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"
    assert "img:1" in minik("rollout", "history", "deploy/web", "--revision=1", "-n", namespace).stdout
    assert (
        minik("rollout", "undo", "deploy/web", "-n", namespace).stdout == "deployment.apps/web rolled back\n"
    )
    image = "{.spec.template.spec.containers[0].image}"
    assert minik("get", "deploy", "web", "-n", namespace, "-o", f"jsonpath={image}").stdout == "img:1"
    r = minik("rollout", "undo", "deploy/web", "--to-revision=1", "-n", namespace)
    assert r.stdout == "deployment.apps/web skipped rollback (current template already matches revision 1)\n"
    assert minik("rollout", "undo", "deploy/web", "--to-revision=7", "-n", namespace).exit_code == 1
    assert (
        minik("rollout", "restart", "deploy/web", "-n", namespace).stdout == "deployment.apps/web restarted\n"
    )
    ann = json.loads(minik("get", "deploy", "web", "-n", namespace, "-o", "json").stdout)["spec"]["template"][
        "metadata"
    ]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in ann
    assert minik("rollout", "pause", "deploy/web", "-n", namespace).stdout == "deployment.apps/web paused\n"
    r = minik("rollout", "pause", "deploy/web", "-n", namespace)
    assert r.exit_code == 1 and 'deployments.apps "web" is already paused' in r.stderr
    assert minik("rollout", "resume", "deploy/web", "-n", namespace).stdout == "deployment.apps/web resumed\n"
    # status without a controller: the spec update is never observed; --watch=false prints once
    r = minik("rollout", "status", "deploy/web", "--watch=false", "-n", namespace)
    assert r.stdout == "Waiting for deployment spec update to be observed...\n"


def test_rollout_status_follows_the_status(namespace: str, apiserver: Any) -> None:
    minik("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT.format(name="web", replicas=2, image="img:1"))
    url = f"/apis/apps/v1/namespaces/{namespace}/deployments/web"
    steps = [
        {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1},
        {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1},
        {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": 2,
            "readyReplicas": 2,
        },
    ]

    def controller() -> None:
        with apiserver.http() as api:
            for status in steps:
                time.sleep(0.2)
                api.patch(
                    f"{url}/status",
                    json={"status": status},
                    headers={"Content-Type": "application/merge-patch+json"},
                ).raise_for_status()

    t = threading.Thread(target=controller)
    t.start()
    try:
        r = minik("rollout", "status", "deploy/web", "--timeout=60", "-n", namespace)
    finally:
        t.join()
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[-1] == 'deployment "web" successfully rolled out'
    assert 'Waiting for deployment "web" rollout to finish: 1 of 2 updated replicas are available...' in lines


def test_service_url_cluster_info_api_resources(namespace: str) -> None:
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, nodePort: 30080}]\n"
    assert minik("apply", "-f", "-", "-n", namespace, input=svc).exit_code == 0
    assert minik("service", "web", "-n", namespace).stdout == "http://127.0.0.1:30080\n"
    assert "Kubernetes control plane is running at https://127.0.0.1:" in minik("cluster-info").stdout
    r = minik("api-resources")
    assert r.stdout.splitlines()[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert any(line.split()[:3] == ["deployments", "deploy", "apps/v1"] for line in r.stdout.splitlines())


def test_logs_and_exec_report_the_server_answer(namespace: str) -> None:
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: busybox}]}\n"
    minik("apply", "-f", "-", "-n", namespace, input=pod)
    for args in (["logs", "p"], ["exec", "p", "--", "true"]):
        r = minik(*args, "-n", namespace)
        assert r.exit_code == 1
        assert r.stderr.startswith("Error from server ("), r.stderr


def test_config_set_context_on_temp_kubeconfig(kubeconfig: Path) -> None:
    assert (
        minik("config", "set-context", "--current", "--namespace=lab").stdout == 'Context "test" modified.\n'
    )
    data = yaml.safe_load(kubeconfig.read_text())
    assert data["contexts"][0]["context"]["namespace"] == "lab"
    assert minik("config", "get-contexts").stdout.splitlines()[1].split() == [
        "*",
        "test",
        "test",
        "test",
        "lab",
    ]
    r = minik("get", "cm")
    assert "No resources found in lab namespace." in r.stderr
    assert minik("config", "set-context", "--current", "--namespace=default").exit_code == 0
