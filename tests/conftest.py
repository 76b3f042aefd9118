"""Fixtures that start real processes: an etcd, a ``minik-apiserver`` and a kubelet (the harness
itself is the ``testkit`` package).

What a test needs from the machine (root, Docker, iptables, kubectl, busybox) is checked by
``testkit.prereq``: a missing prerequisite skips locally, saying what to install, and fails with
``CI=true``.  ``kubectl_bin`` is the one kubectl every test runs.

Each test module that asks for them gets its own etcd (a fresh data directory on free ports) and
API server, stopped again when the module ends, also when a test fails.  The API server serves
HTTPS with the session's certificates (``testkit.certs``); ``api`` talks to it as the cluster's
admin, ``kubeconfig`` is the admin's, and a kubelet reaches it as ``system:node:NODE``.  Tests are marked by the
folder they live in: ``tests/unit`` (no I/O), ``tests/integration`` and ``tests/e2e``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testkit import prereq
from testkit.images import ensure_busybox_image
from testkit.processes import APIServerProcess, EtcdProcess, KubeletProcess, root_ca_publisher, running


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
        elif "unit" in parts:
            item.add_marker(pytest.mark.unit)
        elif "lab" in parts:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdProcess]:
    with EtcdProcess() as e:
        yield e


@pytest.fixture(scope="module")
def apiserver(etcd: EtcdProcess) -> Iterator[APIServerProcess]:
    with APIServerProcess(etcd.url) as s:
        yield s


@pytest.fixture()
def api(apiserver: APIServerProcess) -> Iterator[httpx.Client]:
    with apiserver.http() as c:
        yield c


@pytest.fixture(scope="session")
def kubectl_bin() -> str:
    """The path of the kubectl the tests run (``testkit.prereq.require_kubectl``)."""
    return prereq.require_kubectl()


@pytest.fixture(scope="session")
def image() -> str:
    """The local busybox test image (built on first use)."""
    return ensure_busybox_image()


@pytest.fixture(scope="module")
def kubelet(apiserver: APIServerProcess, image: str) -> Iterator[KubeletProcess]:
    """A real kubelet on a node and Docker network of its own (removed at the end), with the one
    controller every pod needs (``testkit.processes.root_ca_publisher``)."""
    with running(root_ca_publisher(apiserver)), KubeletProcess(apiserver) as k:
        yield k


@pytest.fixture(scope="module")
def kubeconfig(apiserver: APIServerProcess, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The admin's kubeconfig for the module's API server, in a directory of its own: kubectl's
    cache may go beside it (``cache/``)."""
    path = tmp_path_factory.mktemp("kube") / "config"
    shutil.copy(apiserver.kubeconfig, path)
    return str(path)
