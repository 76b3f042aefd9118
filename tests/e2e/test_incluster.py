"""A pod uses the official ``kubernetes`` Python client's ``config.load_incluster_config()``.

The whole in-cluster path of a real cluster: the ServiceAccount admission plugin gives the pod
the ``kube-api-access-*`` volume, the kubelet fills it (a TokenRequest bound to the pod, the
``kube-root-ca.crt`` ConfigMap of the root CA publisher, the namespace) and sets
``KUBERNETES_SERVICE_HOST``/``PORT`` from the ``kubernetes`` Service, which the API server keeps
with its advertise address as endpoint; the proxy carries the pod's connection from the Service's
ClusterIP to the API server, which authenticates the token and authorizes with RBAC.  Listing pods
is 403 with Kubernetes' message until a RoleBinding grants ``view`` to the pod's service account.

The pod's image is Debian with python3 and the client copied from the test environment
(:mod:`testkit.pyimage`, built once).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import pytest

from testkit.pyimage import ensure_python_client_image
from tests.e2e.cluster import LocalCluster, local_cluster, wait_for  # noqa: F401  (fixture)

NS = "incluster"
SA = "reader"

SCRIPT = r"""
import base64, json, os
from kubernetes import client, config

out = {"env": {k: v for k, v in os.environ.items() if k.startswith("KUBERNETES_")}}
d = "/var/run/secrets/kubernetes.io/serviceaccount"
out["files"] = sorted(os.listdir(d))
out["namespace"] = open(os.path.join(d, "namespace")).read()
payload = open(os.path.join(d, "token")).read().split(".")[1]
out["claims"] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
config.load_incluster_config()
api = client.CoreV1Api()
try:
    pods = api.list_namespaced_pod(out["namespace"], _request_timeout=30)
    out["listed"] = sorted(p.metadata.name for p in pods.items)
except client.ApiException as e:
    out["status"] = e.status
    out["body"] = json.loads(e.body)
print("RESULT " + json.dumps(out), flush=True)
"""


@pytest.fixture(scope="module")
def python_image() -> str:
    return ensure_python_client_image()


@pytest.fixture(scope="module")
def cluster(local_cluster: LocalCluster) -> Iterator[LocalCluster]:  # noqa: F811
    c = local_cluster
    c.apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA, "namespace": NS}},
        ]
    )
    yield c
    assert c.api is not None
    c.api.delete(f"/api/v1/namespaces/{NS}")


def run_client_pod(c: LocalCluster, name: str, image: str) -> dict[str, Any]:
    """Run the script in a pod as service account ``reader``; what it printed as JSON."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "serviceAccountName": SA,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "client",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", SCRIPT],
                }
            ],
        },
    }
    c.apply([pod])
    created = c.get(f"/api/v1/namespaces/{NS}/pods/{name}")
    mounts = created["spec"]["containers"][0].get("volumeMounts") or []
    assert any(m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount" for m in mounts), mounts

    def finished() -> dict[str, Any] | None:
        p = c.get(f"/api/v1/namespaces/{NS}/pods/{name}")
        return p if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    done = wait_for(finished, 120, f"pod {name} to finish\n{c.logs()}")
    assert c.api is not None
    log = c.api.get(f"/api/v1/namespaces/{NS}/pods/{name}/log").text
    line = next((x for x in log.splitlines() if x.startswith("RESULT ")), None)
    assert done["status"]["phase"] == "Succeeded" and line, f"pod {name}: {done['status']}\n{log}"
    return dict(json.loads(line[len("RESULT ") :]))


def test_in_cluster_client_denied_then_allowed_by_rbac(cluster: LocalCluster, python_image: str) -> None:
    c = cluster
    svc = wait_for(lambda: c.get("/api/v1/namespaces/default/services/kubernetes"), 30, "kubernetes service")
    vip = svc["spec"]["clusterIP"]
    assert vip == str(ipaddress.ip_network(c.service_cidr)[1])
    c.wait_redirect(vip, 443)
    wait_for(lambda: c.get(f"/api/v1/namespaces/{NS}/configmaps/kube-root-ca.crt"), 60, "kube-root-ca.crt")

    denied = run_client_pod(c, "client-denied", python_image)
    assert denied["env"]["KUBERNETES_SERVICE_HOST"] == vip
    assert denied["env"]["KUBERNETES_SERVICE_PORT"] == "443"
    assert denied["env"]["KUBERNETES_PORT_443_TCP"] == f"tcp://{vip}:443"
    assert {"token", "ca.crt", "namespace"} <= set(denied["files"])
    assert denied["namespace"] == NS
    # the token came from a TokenRequest bound to the pod
    bound = denied["claims"]["kubernetes.io"]
    assert bound["namespace"] == NS and bound["serviceaccount"]["name"] == SA
    assert bound["pod"]["name"] == "client-denied"
    assert denied["claims"]["sub"] == f"system:serviceaccount:{NS}:{SA}"
    assert denied.get("status") == 403, denied
    assert denied["body"]["reason"] == "Forbidden"
    assert denied["body"]["message"] == (
        f'pods is forbidden: User "system:serviceaccount:{NS}:{SA}" cannot list resource "pods" '
        f'in API group "" in the namespace "{NS}"'
    )

    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "reader-view", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": NS}],
    }
    c.apply([binding])
    allowed = run_client_pod(c, "client-allowed", python_image)
    assert "status" not in allowed, allowed
    assert {"client-denied", "client-allowed"} <= set(allowed["listed"])
