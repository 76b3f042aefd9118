"""``kubectl apply --server-side`` with the real kubectl (v1.32 and the 1.37 wheel's): create and
update, a conflict between two field managers reported with the owning manager's name,
``--force-conflicts``, ``get --show-managed-fields``, and the move from client-side apply."""

from __future__ import annotations

import pytest
import yaml

from tests.e2e.conftest import KUBECTL_VERSIONS, Kubectl, kubectl_of


@pytest.fixture(scope="module", params=KUBECTL_VERSIONS)
def kubectl_bin(request: pytest.FixtureRequest) -> str:
    return kubectl_of(request.param)


def manifest(replicas: int, image: str = "nginx:1.27", label: str = "") -> str:
    meta: dict[str, object] = {"name": "web"}
    if label:
        meta["labels"] = {"tier": label}
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "main", "image": image}]},
                },
            },
        }
    )


def managers(kubectl: Kubectl, ns: str, what: str) -> list[tuple[str, str]]:
    out = kubectl("get", what, "-n", ns, "-o", "yaml", "--show-managed-fields", timeout=30)
    obj = yaml.safe_load(out)
    return [(e["manager"], e["operation"]) for e in obj["metadata"].get("managedFields") or []]


def test_server_side_apply_create_update_conflict_force(kubectl: Kubectl, ns: str) -> None:
    path = kubectl.write("ssa/web.yaml", manifest(2, label="front"))
    out = kubectl("apply", "--server-side", "-f", str(path), "-n", ns, timeout=30)
    assert out.strip() == "deployment.apps/web serverside-applied"
    assert managers(kubectl, ns, "deployment/web") == [("kubectl", "Apply")]
    # without --show-managed-fields the client hides them
    plain = yaml.safe_load(kubectl("get", "deployment/web", "-n", ns, "-o", "yaml", timeout=30))
    assert "managedFields" not in plain["metadata"]

    # update: a new image, the label dropped (pruned, as only this manager applied it)
    kubectl.write("ssa/web.yaml", manifest(2, image="nginx:1.28"))
    kubectl("apply", "--server-side", "-f", str(path), "-n", ns, timeout=30)
    live = yaml.safe_load(kubectl("get", "deployment/web", "-n", ns, "-o", "yaml", timeout=30))
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert "tier" not in (live["metadata"].get("labels") or {})

    # another manager wants other replicas: conflict naming the manager that owns the field
    kubectl.write("ssa/web.yaml", manifest(4, image="nginx:1.28"))
    denied = kubectl.run(
        "apply", "--server-side", "--field-manager", "ops", "-f", str(path), "-n", ns, check=False, timeout=30
    )
    assert denied.returncode != 0
    assert 'conflict with "kubectl"' in denied.stderr, denied.stderr
    assert ".spec.replicas" in denied.stderr
    assert "Apply failed with" in denied.stderr
    assert kubectl("get", "deployment/web", "-n", ns, "-o", "jsonpath={.spec.replicas}", timeout=30) == "2"

    forced = kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager",
        "ops",
        "-f",
        str(path),
        "-n",
        ns,
        timeout=30,
    )
    assert "serverside-applied" in forced
    assert kubectl("get", "deployment/web", "-n", ns, "-o", "jsonpath={.spec.replicas}", timeout=30) == "4"
    owners = managers(kubectl, ns, "deployment/web")
    assert ("ops", "Apply") in owners and ("kubectl", "Apply") in owners

    # a client-side edit (kubectl scale) is an Update through /scale
    kubectl("scale", "deployment/web", "--replicas", "1", "-n", ns, timeout=30)
    assert ("kubectl", "Update") in managers(kubectl, ns, "deployment/web")


def test_client_side_apply_then_server_side(kubectl: Kubectl, ns: str) -> None:
    cm = kubectl.write(
        "ssa/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: '1'\n  b: '2'\n",
    )
    out = kubectl("apply", "-f", str(cm), "-n", ns, timeout=30)
    assert out.strip() == "configmap/settings created"
    assert managers(kubectl, ns, "configmap/settings") == [("kubectl-client-side-apply", "Update")]
    # the same manifest applied server-side takes the fields over from client-side apply
    out = kubectl("apply", "--server-side", "-f", str(cm), "-n", ns, timeout=30)
    assert out.strip() == "configmap/settings serverside-applied"
    owners = managers(kubectl, ns, "configmap/settings")
    assert ("kubectl", "Apply") in owners
    # dropping a key server-side now removes it
    kubectl.write(
        "ssa/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: '1'\n"
    )
    kubectl("apply", "--server-side", "-f", str(cm), "-n", ns, timeout=30)
    data = yaml.safe_load(kubectl("get", "configmap/settings", "-n", ns, "-o", "yaml", timeout=30))["data"]
    assert data == {"a": "1"}


def test_server_side_dry_run(kubectl: Kubectl, ns: str) -> None:
    cm = kubectl.write(
        "ssa/dry.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dry\ndata:\n  a: '1'\n"
    )
    out = kubectl("apply", "--server-side", "--dry-run=server", "-f", str(cm), "-n", ns, timeout=30)
    assert "serverside-applied (server dry run)" in out
    missing = kubectl.run("get", "configmap/dry", "-n", ns, check=False, timeout=30)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_kubectl_diff_server_side(kubectl: Kubectl, ns: str) -> None:
    path = kubectl.write(
        "ssa/diff.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\ndata:\n  a: '1'\n"
    )
    kubectl("apply", "--server-side", "-f", str(path), "-n", ns, timeout=30)
    same = kubectl.run("diff", "--server-side", "-f", str(path), "-n", ns, check=False, timeout=30)
    assert (same.returncode, same.stdout) == (0, ""), same.stderr
    kubectl.write("ssa/diff.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\ndata:\n  a: '2'\n")
    changed = kubectl.run("diff", "--server-side", "-f", str(path), "-n", ns, check=False, timeout=30)
    assert changed.returncode == 1, changed.stderr
    assert '-  a: "1"' in changed.stdout and '+  a: "2"' in changed.stdout, changed.stdout
    assert kubectl("get", "configmap/d", "-n", ns, "-o", "jsonpath={.data.a}", timeout=30) == "1"
