"""CronJobs end to end with the real kubectl (both versions): one real kubelet (Docker), the real
scheduler and controller manager, against a real etcd and API server.

One test watches two CronJobs over the same two minute boundaries, so it takes about two minutes:
an every-minute CronJob runs and keeps its history limit of one, and a Forbid CronJob whose Job
sleeps past the next minute skips that minute (``JobAlreadyActive``).  Meanwhile ``kubectl create
job --from=cronjob/NAME`` (done client-side by kubectl) makes a Job of a suspended CronJob, and
``kubectl get cronjobs`` shows Kubernetes' columns.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from testkit.images import ensure_busybox_image
from testkit.processes import APIServerProcess, KubeletProcess, controller_manager, running, scheduler
from testkit.wait import wait_for
from tests.e2e.conftest import KUBECTL_VERSIONS, Kubectl, kubectl_of

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=KUBECTL_VERSIONS)
def kubectl_bin(request: pytest.FixtureRequest) -> str:
    return kubectl_of(request.param)


@pytest.fixture(scope="module")
def cluster(apiserver: APIServerProcess) -> Iterator[str]:
    image = ensure_busybox_image()
    with running(KubeletProcess(apiserver), scheduler(apiserver), controller_manager(apiserver)):
        yield image


def cron_job_yaml(name: str, image: str, command: list[str], **spec: Any) -> str:
    container = {"name": "main", "image": image, "imagePullPolicy": "Never", "command": command}
    body = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {
                "metadata": {"labels": {"cron": name}},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "terminationGracePeriodSeconds": 1,
                            "containers": [container],
                        }
                    },
                },
            },
            **spec,
        },
    }
    return yaml.safe_dump(body)


def get_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json", timeout=30))


def jobs_of(kubectl: Kubectl, ns: str, name: str) -> list[dict[str, Any]]:
    return [
        j
        for j in get_json(kubectl, "jobs", "-n", ns)["items"]
        if any(
            r.get("name") == name and r.get("kind") == "CronJob"
            for r in j["metadata"].get("ownerReferences") or []
        )
    ]


def reasons(kubectl: Kubectl, ns: str, name: str) -> list[str]:
    events = get_json(kubectl, "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]
    return [e["reason"] for e in events]


def complete(job: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Complete" and c["status"] == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def test_cronjobs_with_kubectl(kubectl: Kubectl, ns: str, cluster: str) -> None:
    image = cluster
    # Created just after a minute boundary when possible, so both boundaries come soon.
    if 50 <= time.time() % 60:
        time.sleep(61 - time.time() % 60)
    files = {
        "every.yaml": cron_job_yaml("every", image, ["true"], successfulJobsHistoryLimit=1),
        "forbid.yaml": cron_job_yaml("forbid", image, ["sleep", "90"], concurrencyPolicy="Forbid"),
        "manual.yaml": cron_job_yaml("manual", image, ["true"], schedule="0 0 1 1 *", suspend=True),
    }
    for fname, text in files.items():
        kubectl("apply", "-n", ns, "-f", str(kubectl.write(fname, text)), timeout=30)

    # kubectl get: Kubernetes' columns and values.
    out = kubectl("get", "cronjobs", "-n", ns, timeout=30).splitlines()
    assert out[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows["manual"][1:8] == ["0", "0", "1", "1", "*", "<none>", "True"]
    assert rows["every"][6:9] == ["<none>", "False", "0"]

    # kubectl create job --from=cronjob/NAME: a Job of the template, owned by the CronJob.
    made = kubectl("create", "job", "by-hand", "--from=cronjob/manual", "-n", ns, timeout=30)
    assert made.strip() == "job.batch/by-hand created"
    job = get_json(kubectl, "job", "by-hand", "-n", ns)
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert job["metadata"]["ownerReferences"][0]["name"] == "manual"
    wait_for(
        lambda: complete(get_json(kubectl, "job", "by-hand", "-n", ns)), timeout=60, what="by-hand complete"
    )

    # Two minute boundaries: both CronJobs are checked in the same wait.
    seen_every: set[str] = set()
    seen_forbid: set[str] = set()

    def progressed() -> bool:
        every = jobs_of(kubectl, ns, "every")
        seen_every.update(j["metadata"]["name"] for j in every)
        seen_forbid.update(j["metadata"]["name"] for j in jobs_of(kubectl, ns, "forbid"))
        kept = [j for j in every if complete(j)]
        return (
            len(seen_every) >= 2
            and len(kept) == 1
            and len(every) == 1
            and "SuccessfulDelete" in reasons(kubectl, ns, "every")
            and "JobAlreadyActive" in reasons(kubectl, ns, "forbid")
        )

    wait_for(progressed, timeout=180, interval=1, what="two runs of every, one skip of forbid")
    assert len(seen_forbid) == 1  # the sleeping Job blocked the next minute's
    status = get_json(kubectl, "cronjob", "every", "-n", ns)["status"]
    assert status["lastSuccessfulTime"] and status["lastScheduleTime"]
    for name in seen_every:
        minute = int(name.rsplit("-", 1)[1])
        assert minute * 60 <= time.time()
    forbid = get_json(kubectl, "cronjob", "forbid", "-n", ns)["status"]
    assert [a["name"] for a in forbid["active"]] == sorted(seen_forbid)
    kubectl("delete", "cronjob", "every", "forbid", "manual", "-n", ns, timeout=60)
