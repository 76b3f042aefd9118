"""CustomResourceDefinitions with the real kubectl (the system one and the 1.37 wheel's): apply a
CRD and a custom object, ``kubectl get`` prints the CRD's printer columns and finds the kind by
its short name and category, strict field validation rejects an unknown field, ``kubectl explain``
reads the published schema, ``kubectl scale`` goes through the scale subresource, and deleting
the CRD deletes its objects."""

from __future__ import annotations

import re
import textwrap
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import KUBECTL_VERSIONS, Kubectl, kubectl_of

CRD = textwrap.dedent(
    """\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: crontabs.stable.example.com
    spec:
      group: stable.example.com
      scope: Namespaced
      names:
        plural: crontabs
        singular: crontab
        kind: CronTab
        shortNames: [ct]
        categories: [all]
      versions:
      - name: v1
        served: true
        storage: true
        subresources:
          status: {}
          scale:
            specReplicasPath: .spec.replicas
            statusReplicasPath: .status.replicas
        additionalPrinterColumns:
        - name: Spec
          type: string
          jsonPath: .spec.cronSpec
        - name: Replicas
          type: integer
          jsonPath: .spec.replicas
        schema:
          openAPIV3Schema:
            type: object
            description: CronTab runs an image on a schedule.
            properties:
              spec:
                type: object
                description: The schedule and what it runs.
                required: [cronSpec]
                properties:
                  cronSpec:
                    type: string
                    description: The schedule in cron format.
                    pattern: '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'
                  image: {type: string, description: The image to run.}
                  replicas: {type: integer, minimum: 0, default: 1, description: How many copies run.}
              status:
                type: object
                properties:
                  replicas: {type: integer}
    """
)

CRONTAB = textwrap.dedent(
    """\
    apiVersion: stable.example.com/v1
    kind: CronTab
    metadata: {name: nightly}
    spec:
      cronSpec: "0 3 * * *"
      image: busybox:1.36
    """
)


@pytest.fixture(scope="module", params=KUBECTL_VERSIONS)
def kubectl_bin(request: pytest.FixtureRequest) -> str:
    return kubectl_of(request.param)


def wait_established(kubectl: Kubectl) -> None:
    out = kubectl(
        "wait", "--for=condition=Established", "crd/crontabs.stable.example.com", "--timeout=30s", timeout=40
    )
    assert "condition met" in out


@pytest.fixture()
def crontabs(kubectl: Kubectl) -> Iterator[None]:
    out = kubectl("apply", "-f", str(kubectl.write("crd.yaml", CRD)))
    assert out.strip() == "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com created"
    wait_established(kubectl)
    try:
        yield
    finally:
        kubectl.run(
            "delete", "crd", "crontabs.stable.example.com", "--ignore-not-found", "--timeout=30s", check=False
        )


def test_apply_get_columns_explain_scale_and_delete(kubectl: Kubectl, ns: str, crontabs: None) -> None:
    out = kubectl("apply", "-n", ns, "-f", str(kubectl.write("ct.yaml", CRONTAB)))
    assert out.strip() == "crontab.stable.example.com/nightly created"
    out = kubectl("get", "ct", "-n", ns)
    header, row = out.splitlines()
    assert re.split(r"\s{2,}", header.strip()) == ["NAME", "SPEC", "REPLICAS"]
    assert re.split(r"\s{2,}", row.strip()) == ["nightly", "0 3 * * *", "1"]
    assert "crontab.stable.example.com/nightly" in kubectl("get", "all", "-n", ns)

    # unknown field: strict validation by the server, as kubectl apply asks for it
    bad = kubectl.write("bad.yaml", CRONTAB.replace("image: busybox:1.36", "imagee: busybox:1.36"))
    proc = kubectl.run("apply", "-n", ns, "-f", str(bad), check=False)
    assert proc.returncode != 0
    assert 'unknown field "spec.imagee"' in proc.stderr
    invalid = kubectl.write("invalid.yaml", CRONTAB.replace('"0 3 * * *"', '"tonight"'))
    proc = kubectl.run("apply", "-n", ns, "-f", str(invalid), check=False)
    assert proc.returncode != 0 and "spec.cronSpec" in proc.stderr and "should match" in proc.stderr

    out = kubectl("explain", "crontab.spec")
    assert "KIND:       CronTab" in out and "GROUP:      stable.example.com" in out
    assert "The schedule and what it runs." in out
    assert re.search(r"^  cronSpec\t<string> -required-$", out, re.M)
    assert "How many copies run." in kubectl("explain", "crontabs.spec.replicas")

    out = kubectl("scale", "-n", ns, "crontab/nightly", "--replicas=3")
    assert out.strip() == "crontab.stable.example.com/nightly scaled"
    assert kubectl("get", "-n", ns, "crontab", "nightly", "-o", "jsonpath={.spec.replicas}") == "3"

    assert kubectl("delete", "crd", "crontabs.stable.example.com", "--timeout=30s", timeout=40).strip() == (
        'customresourcedefinition.apiextensions.k8s.io "crontabs.stable.example.com" deleted'
    )
    deadline = time.monotonic() + 20
    while True:
        proc = kubectl.run("get", "-n", ns, "crontabs", check=False)
        if proc.returncode != 0:
            break
        assert time.monotonic() < deadline, proc.stdout
        time.sleep(0.5)
    # kubectl's discovery cache may still name the kind: then the list itself is the 404
    assert (
        "the server doesn't have a resource type" in proc.stderr
        or "the server could not find the requested resource" in proc.stderr
    )
