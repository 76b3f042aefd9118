"""The official ``kubernetes`` Python client, unmodified, against a test API server.

The client is configured from a kubeconfig file exactly as users do (``config.load_kube_config``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from testkit.wait import unique
from tests.e2e.conftest import Kubectl


@pytest.fixture(scope="module")
def api_client(kubectl: Kubectl) -> Iterator[client.ApiClient]:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubectl.kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as c:
        yield c


@pytest.fixture()
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture()
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture()
def namespace(core: client.CoreV1Api) -> str:
    name = unique("py")
    created = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    assert created.metadata.name == name and created.status.phase == "Active"
    return name


def deployment(name: str, replicas: int = 2) -> client.V1Deployment:
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name="web",
                            image="nginx:1.25",
                            env=[client.V1EnvVar(name="A", value="1")],
                            ports=[client.V1ContainerPort(container_port=80)],
                        ),
                        client.V1Container(name="sidecar", image="busybox:1.36"),
                    ]
                ),
            ),
        ),
    )


def status_of(result: Any) -> str:
    """Delete answers a v1 Status (newer clients hand it back as a dict)."""
    return result["status"] if isinstance(result, dict) else result.status


def test_core_v1_crud(core: client.CoreV1Api, namespace: str) -> None:
    cm = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings", labels={"tier": "a"}), data={"k": "v"}
    )
    created = core.create_namespaced_config_map(namespace, cm)
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None

    core.create_namespaced_config_map(namespace, {"metadata": {"name": "other", "labels": {"tier": "b"}}})
    listed = core.list_namespaced_config_map(namespace, label_selector="tier=a")
    assert [c.metadata.name for c in listed.items] == ["settings"]
    assert listed.metadata.resource_version
    everywhere = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={namespace}")
    assert sorted(c.metadata.name for c in everywhere.items) == ["other", "settings"]

    read = core.read_namespaced_config_map("settings", namespace)
    read.data["k"] = "w"
    replaced = core.replace_namespaced_config_map("settings", namespace, read)
    assert replaced.data == {"k": "w"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    # A stale resourceVersion is a 409 Conflict.
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("settings", namespace, read)
    assert stale.value.status == 409

    patched = core.patch_namespaced_config_map("settings", namespace, {"data": {"z": "1"}})
    assert patched.data == {"k": "w", "z": "1"}

    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="p1"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")]),
    )
    created_pod = core.create_namespaced_pod(namespace, pod)
    assert created_pod.status.phase == "Pending"
    assert created_pod.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert created_pod.spec.restart_policy == "Always"

    svc = client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(
            selector={"app": "web"}, ports=[client.V1ServicePort(port=80, target_port=8080)]
        ),
    )
    created_svc = core.create_namespaced_service(namespace, svc)
    assert created_svc.spec.type == "ClusterIP"
    assert created_svc.spec.ports[0].protocol == "TCP" and created_svc.spec.ports[0].target_port == 8080

    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("nope", namespace)
    assert missing.value.status == 404
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map(namespace, cm)
    assert exists.value.status == 409

    assert status_of(core.delete_namespaced_config_map("settings", namespace)) == "Success"
    core.delete_namespaced_pod("p1", namespace, grace_period_seconds=0)
    core.delete_namespaced_service("web", namespace)
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ["other"]
    assert core.list_namespaced_pod(namespace).items == []


def test_apps_v1_crud(apps: client.AppsV1Api, namespace: str) -> None:
    created = apps.create_namespaced_deployment(namespace, deployment("web"))
    assert created.metadata.generation == 1
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.spec.revision_history_limit == 10

    listed = apps.list_namespaced_deployment(namespace, label_selector="app=web")
    assert [d.metadata.name for d in listed.items] == ["web"]

    # The client sends a dict body as a strategic merge patch: containers merge by name.
    patched = apps.patch_namespaced_deployment(
        "web",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}},
    )
    containers = patched.spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [("web", "nginx:1.26"), ("sidecar", "busybox:1.36")]
    assert containers[0].env[0].name == "A"
    assert patched.metadata.generation == 2

    scale = apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 4}})
    assert scale.spec.replicas == 4
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 4

    read = apps.read_namespaced_deployment("web", namespace)
    read.spec.template.spec.containers[1].image = "busybox:1.37"
    replaced = apps.replace_namespaced_deployment("web", namespace, read)
    assert replaced.spec.template.spec.containers[1].image == "busybox:1.37"
    assert replaced.spec.replicas == 4

    read.status = client.V1DeploymentStatus(observed_generation=replaced.metadata.generation, replicas=0)
    read.metadata.resource_version = replaced.metadata.resource_version
    with_status = apps.replace_namespaced_deployment_status("web", namespace, read)
    assert with_status.status.observed_generation == replaced.metadata.generation

    assert status_of(apps.delete_namespaced_deployment("web", namespace)) == "Success"
    assert apps.list_namespaced_deployment(namespace).items == []


def test_watch_stream(core: client.CoreV1Api, namespace: str) -> None:
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    events: list[tuple[str, str, dict[str, str] | None]] = []
    done = threading.Event()

    def consume() -> None:
        w = watch.Watch()
        for event in w.stream(
            core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=10
        ):
            obj = event["object"]
            events.append((event["type"], obj.metadata.name, obj.data))
            if event["type"] == "DELETED":
                w.stop()
        done.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "w"}, "data": {"a": "1"}})
    core.patch_namespaced_config_map("w", namespace, {"data": {"a": "2"}})
    core.delete_namespaced_config_map("w", namespace)
    assert done.wait(20), f"watch did not see the deletion; events: {events}"
    assert events == [("ADDED", "w", {"a": "1"}), ("MODIFIED", "w", {"a": "2"}), ("DELETED", "w", {"a": "2"})]


def test_watch_stream_ends_at_timeout(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("a", replicas=1))
    seen = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(apps.list_namespaced_deployment, namespace, timeout_seconds=1)
    ]
    assert seen == [("ADDED", "a")]
