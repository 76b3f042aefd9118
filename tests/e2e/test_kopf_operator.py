"""A real operator written with kopf (from PyPI) against minik: it registers its CRD, reconciles
WebApp objects into Deployments (owned by the WebApp), reports through ``status``, holds a
finalizer until its delete handler ran, and keeps working across a restart of the API server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit import prereq
from testkit.processes import APIServerProcess, EtcdProcess

OPERATOR = textwrap.dedent(
    '''\
    """The WebApp operator: one Deployment per WebApp."""
    import kopf
    import kubernetes

    CRD = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "webapps.demo.minik.io"},
        "spec": {
            "group": "demo.minik.io",
            "scope": "Namespaced",
            "names": {"plural": "webapps", "kind": "WebApp", "shortNames": ["wa"]},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "required": ["image"], "properties": {
                            "image": {"type": "string"},
                            "replicas": {"type": "integer", "minimum": 0, "default": 1},
                        }},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    },
                }},
            }],
        },
    }


    def deployment(name, spec):
        labels = {"app": name}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": spec.get("replicas", 1),
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": spec["image"]}]},
                },
            },
        }


    @kopf.on.startup()
    def startup(settings, **_):
        settings.persistence.finalizer = "demo.minik.io/cleanup"
        settings.watching.server_timeout = 20
        settings.watching.client_timeout = 30
        settings.networking.request_timeout = 15
        kubernetes.config.load_kube_config()
        api = kubernetes.client.ApiextensionsV1Api()
        try:
            api.create_custom_resource_definition(CRD)
        except kubernetes.client.ApiException as e:
            if e.status != 409:
                raise


    @kopf.on.create("demo.minik.io", "v1", "webapps")
    def create(spec, name, namespace, **_):
        body = deployment(name, spec)
        kopf.adopt(body)
        kubernetes.client.AppsV1Api().create_namespaced_deployment(namespace, body)
        return {"deployment": name, "replicas": spec.get("replicas", 1)}


    @kopf.on.update("demo.minik.io", "v1", "webapps", field="spec")
    def update(spec, name, namespace, **_):
        kubernetes.client.AppsV1Api().patch_namespaced_deployment(
            name, namespace, {"spec": {"replicas": spec.get("replicas", 1)}}
        )
        return {"replicas": spec.get("replicas", 1)}


    @kopf.on.delete("demo.minik.io", "v1", "webapps")
    def delete(name, namespace, **_):
        body = {"metadata": {"name": f"deleted-{name}"}, "data": {"by": "kopf"}}
        kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace, body)
    '''
)

WEBAPPS = "/apis/demo.minik.io/v1/namespaces/default/webapps"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"


def wait_for(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture()
def cluster() -> Iterator[tuple[EtcdProcess, APIServerProcess]]:
    with EtcdProcess() as etcd, APIServerProcess(etcd.url) as server:
        yield etcd, server


def test_kopf_operator(cluster: tuple[EtcdProcess, APIServerProcess]) -> None:
    prereq.require_module("kopf")
    _, server = cluster
    workdir = Path(tempfile.mkdtemp(prefix="minik-kopf-"))
    (workdir / "webapp_operator.py").write_text(OPERATOR)
    shutil.copy(server.kubeconfig, workdir / "kubeconfig")
    log = (workdir / "operator.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--standalone",
            "--all-namespaces",
            str(workdir / "webapp_operator.py"),
        ],
        env={**os.environ, "KUBECONFIG": str(workdir / "kubeconfig")},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    api = server.http(timeout=10)
    try:

        def crd_served() -> bool:
            assert proc.poll() is None, "the operator exited"
            return api.get(WEBAPPS).status_code == 200

        wait_for(crd_served, "the operator's CRD to be served")
        body = {"apiVersion": "demo.minik.io/v1", "kind": "WebApp", "metadata": {"name": "shop"}}
        r = api.post(WEBAPPS, json=body | {"spec": {"image": "nginx:1.25", "replicas": 2}})
        assert r.status_code == 201, r.text
        deploy = wait_for(
            lambda: (d := api.get(f"{DEPLOYS}/shop")).status_code == 200 and d.json(), "the Deployment"
        )
        assert deploy["spec"]["replicas"] == 2
        owner = deploy["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"]) == ("WebApp", "shop")
        app = wait_for(
            lambda: (a := api.get(f"{WEBAPPS}/shop").json()).get("status", {}).get("create") and a, "status"
        )
        assert app["status"]["create"] == {"deployment": "shop", "replicas": 2}
        assert "demo.minik.io/cleanup" in app["metadata"]["finalizers"]

        server.stop()
        server.start()
        patch = {"spec": {"replicas": 3}}
        wait_for(
            lambda: (
                api.patch(
                    f"{WEBAPPS}/shop", json=patch, headers={"Content-Type": "application/merge-patch+json"}
                ).status_code
                == 200
            ),
            "the patch after the restart",
        )
        wait_for(
            lambda: api.get(f"{DEPLOYS}/shop").json()["spec"]["replicas"] == 3,
            "the operator after the restart",
        )

        assert api.delete(f"{WEBAPPS}/shop").status_code == 200
        wait_for(lambda: api.get(f"{WEBAPPS}/shop").status_code == 404, "the finalizer to be released")
        cm = api.get("/api/v1/namespaces/default/configmaps/deleted-shop").json()
        assert cm["data"] == {"by": "kopf"}
    except BaseException:
        log.flush()
        print((workdir / "operator.log").read_text()[-20000:])
        raise
    finally:
        api.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
