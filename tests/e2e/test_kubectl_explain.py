"""``kubectl explain`` with the real kubectl: Kubernetes' own descriptions on every field, also on
fields whose schema is a reference, on the kinds themselves, and the enum values Kubernetes
declares.  kubectl reads all of it from the served ``/openapi/v3`` documents.

kubectl wraps descriptions at 80 columns, so text is compared with whitespace collapsed.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import KUBECTL_VERSIONS, Kubectl, kubectl_of


@pytest.fixture(scope="module", params=KUBECTL_VERSIONS)
def kubectl_bin(request: pytest.FixtureRequest) -> str:
    """This module's kubectl workflow runs with both kubectls (v1.32 and the v1.37 wheel)."""
    return kubectl_of(request.param)


def flat(text: str) -> str:
    return " ".join(text.split())


def section(out: str, title: str) -> str:
    """The lines of a section (``DESCRIPTION:``, ``ENUM:``) up to the next blank line or section."""
    lines = out.splitlines()
    start = lines.index(f"{title}:") + 1
    body: list[str] = []
    for line in lines[start:]:
        if not line.strip() or re.match(r"^[A-Z]+:", line):
            break
        body.append(line.strip())
    return "\n".join(body)


def test_enum_field_shows_values_and_description(kubectl: Kubectl) -> None:
    out = kubectl("explain", "pod.spec.containers.imagePullPolicy")
    assert "FIELD: imagePullPolicy <string>" in out
    assert section(out, "ENUM").splitlines() == ["Always", "IfNotPresent", "Never"]
    assert flat(section(out, "DESCRIPTION")).startswith(
        "Image pull policy. One of Always, Never, IfNotPresent. Defaults to Always if :latest tag is "
        "specified, or IfNotPresent otherwise. Cannot be updated."
    )

    out = kubectl("explain", "pods.spec.restartPolicy")
    assert section(out, "ENUM").splitlines() == ["Always", "Never", "OnFailure"]
    assert "Restart policy for all containers within the pod." in flat(out)


def test_reference_field_shows_its_own_description(kubectl: Kubectl) -> None:
    out = kubectl("explain", "deployment.spec.template.spec.containers.resources")
    assert "GROUP:      apps" in out and "KIND:       Deployment" in out
    assert "FIELD: resources <ResourceRequirements>" in out
    description = flat(section(out, "DESCRIPTION"))
    # The field's description, then the description of the type it refers to.
    assert description.startswith("Compute Resources required by this container. Cannot be updated.")
    assert "ResourceRequirements describes the compute resource requirements." in description
    assert re.search(r"^  limits\t<map\[string\]Quantity>$", out, re.M)
    assert "Limits describes the maximum amount of compute resources allowed." in flat(out)

    out = kubectl("explain", "deployments.spec")
    text = flat(out)
    assert re.search(r"^  strategy\t<DeploymentStrategy>$", out, re.M)
    assert "The deployment strategy to use to replace existing pods with new ones." in text
    assert "Template describes the pods that will be created." in text
    assert "Label selector for pods." in text


def test_enums_listed_beside_fields(kubectl: Kubectl) -> None:
    out = kubectl("explain", "deployments.spec.strategy")
    assert re.search(r"^  type\t<string>\n  enum: Recreate, RollingUpdate$", out, re.M)
    out = kubectl("explain", "service.spec.ports")
    assert re.search(r"^  protocol\t<string>\n  enum: SCTP, TCP, UDP$", out, re.M)
    assert 'The IP protocol for this port. Supports "TCP", "UDP", and "SCTP". Default is TCP.' in flat(out)


def test_kind_description(kubectl: Kubectl) -> None:
    out = kubectl("explain", "pod")
    assert "KIND:       Pod" in out
    assert flat(section(out, "DESCRIPTION")).startswith(
        "Pod is a collection of containers that can run on a host. This resource is created by clients "
        "and scheduled onto hosts."
    )
    out = kubectl("explain", "deployments")
    assert "Deployment enables declarative updates for Pods and ReplicaSets." in flat(out)


def test_recursive_explain_of_service_finishes(kubectl: Kubectl) -> None:
    out = kubectl("explain", "service", "--recursive", timeout=60)
    assert "Service is a named abstraction of software service" in flat(out)
    assert re.search(
        r"^    type\t<string>\n    enum: ClusterIP, ExternalName, LoadBalancer, NodePort$", out, re.M
    )
    assert re.search(r"^      targetPort\t<IntOrString>$", out, re.M)
    assert re.search(r"^    loadBalancer\t<LoadBalancerStatus>$", out, re.M)
