"""A built-in kind's /status write is validated in metadata and status only (Kubernetes' status
strategies): a stored spec that today's rules refuse does not block the controller's status."""

from __future__ import annotations

import copy

import pytest

from apimachinery import errors
from apimachinery.resources import kind_info
from apiserver import strategy

pytestmark = pytest.mark.unit

CRONJOB = kind_info("batch/v1", "CronJob")
PDB = kind_info("policy/v1", "PodDisruptionBudget")


def stored_cronjob(schedule: str) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": "nightly",
            "namespace": "default",
            "uid": "u1",
            "resourceVersion": "5",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "generation": 1,
        },
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Allow",
            "suspend": False,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [{"name": "c", "image": "busybox"}],
                        }
                    }
                }
            },
        },
        "status": {},
    }


def test_status_write_ignores_a_stored_spec_that_no_longer_validates() -> None:
    old = stored_cronjob("not a schedule")  # written by an older server, say
    new = copy.deepcopy(old)
    new["status"] = {"lastScheduleTime": "2026-01-02T00:00:00Z"}
    stored = strategy.prepare_for_update(CRONJOB, new, old, "status")
    assert stored["status"] == {"lastScheduleTime": "2026-01-02T00:00:00Z"}
    # the main resource still refuses the same spec, naming the field
    with pytest.raises(errors.StatusError) as e:
        strategy.prepare_for_update(CRONJOB, copy.deepcopy(old), old)
    assert "spec.schedule" in {c.get("field") for c in e.value.status()["details"]["causes"]}


def test_status_write_still_validates_status() -> None:
    old = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "u2",
            "resourceVersion": "7",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "generation": 1,
        },
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        "status": {},
    }
    new = copy.deepcopy(old)
    new["status"] = {"disruptionsAllowed": -1, "currentHealthy": 0, "desiredHealthy": 1, "expectedPods": 1}
    with pytest.raises(errors.StatusError) as e:
        strategy.prepare_for_update(PDB, new, old, "status")
    assert "status.disruptionsAllowed" in {c.get("field") for c in e.value.status()["details"]["causes"]}
