"""Validation of ``batch/v1`` CronJobs, as ``pkg/apis/batch/validation`` (``ValidateCronJobCreate``).

* ``metadata.name`` at most 52 characters (Job names add ``-<minutes since the epoch>``);
* ``spec.schedule`` required and parsable (:mod:`apimachinery.cronschedule`); ``TZ=``/``CRON_TZ=``
  in it is refused ("use timeZone field instead");
* ``spec.timeZone`` a known IANA zone (not empty, not ``Local``);
* ``spec.concurrencyPolicy`` ``Allow``, ``Forbid`` or ``Replace``;
* ``startingDeadlineSeconds`` and the two history limits ≥ 0;
* ``spec.jobTemplate.spec`` checked as a Job's spec (its selector is generated, so one given is
  refused, as is ``manualSelector: true``).

The Job checks live in :mod:`apiserver.validation`; it imports this module, so this one reaches
them through the module at call time.
"""

from __future__ import annotations

from typing import Any

from apimachinery.cronschedule import ScheduleError, load_zone, schedule_field_errors

from . import validation as v

Obj = dict[str, Any]
Cause = dict[str, str]

MAX_CRON_JOB_NAME = 52  # DNS1035LabelMaxLength - 11
CONCURRENCY_POLICIES = ["Allow", "Forbid", "Replace"]


def _time_zone_errors(zone: Any, path: str) -> list[Cause]:
    if zone is None:
        return []
    if not isinstance(zone, str) or not zone:
        return [v.invalid(path, zone, "timeZone must be nil or non-empty string")]
    if zone.lower() == "local":
        return [
            v.invalid(
                path,
                zone,
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            )
        ]
    try:
        load_zone(zone)
    except ScheduleError as exc:
        return [v.invalid(path, zone, str(exc))]
    return []


def _job_template_errors(template: Obj, path: str) -> list[Cause]:
    """``ValidateJobTemplateSpec``: the Job checks on the template's spec with the selector the
    Job will get (its template labels), field paths under ``path``."""
    spec = v._d(template.get("spec"))
    errs: list[Cause] = []
    if spec.get("selector") is not None:
        errs.append(v.invalid(f"{path}.spec.selector", spec["selector"], "`selector` will be auto-generated"))
    if spec.get("manualSelector") is True:
        errs.append(v.not_supported(f"{path}.spec.manualSelector", True, ["nil", "false"]))
    labels = v._d(v._d(v._d(spec.get("template")).get("metadata")).get("labels"))
    as_job = {"spec": {**spec, "selector": {"matchLabels": dict(labels)}}}
    for cause in v._validate_job(as_job):
        cause = dict(cause)
        if cause.get("field", "").startswith("spec."):
            cause["field"] = f"{path}." + cause["field"]
        errs.append(cause)
    return errs


def validate_cron_job(obj: Obj) -> list[Cause]:
    errs: list[Cause] = []
    name = str(v._d(obj.get("metadata")).get("name") or "")
    if len(name) > MAX_CRON_JOB_NAME:
        errs.append(v.invalid("metadata.name", name, f"must be no more than {MAX_CRON_JOB_NAME} characters"))
    spec = v._d(obj.get("spec"))
    schedule = spec.get("schedule")
    if not schedule:
        errs.append(v.required("spec.schedule"))
    elif not isinstance(schedule, str):
        errs.append(v.invalid("spec.schedule", schedule, "must be a string"))
    else:
        # On create (no resourceVersion yet) TZ= is refused; on update, validate_cron_job_update
        # allows it when the stored object had it already (ValidateCronJobUpdate's allowTZInSchedule).
        creating = not v._d(obj.get("metadata")).get("resourceVersion")
        for message in schedule_field_errors(schedule, spec.get("timeZone"), allow_tz=not creating):
            if creating or "TZ" not in message:
                errs.append(v.invalid("spec.schedule", schedule, message))
    errs += _time_zone_errors(spec.get("timeZone"), "spec.timeZone")
    policy = spec.get("concurrencyPolicy")
    if not policy:
        errs.append(v.required("spec.concurrencyPolicy"))
    elif policy not in CONCURRENCY_POLICIES:
        errs.append(v.not_supported("spec.concurrencyPolicy", policy, CONCURRENCY_POLICIES))
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errs += v._nonnegative(spec.get(key), f"spec.{key}")
    template = spec.get("jobTemplate")
    if template is None:
        errs.append(v.required("spec.jobTemplate"))
    else:
        errs += _job_template_errors(v._d(template), "spec.jobTemplate")
    return errs


def validate_cron_job_update(obj: Obj, old: Obj) -> list[Cause]:
    """Nothing of a CronJob's spec is immutable (the create checks run on updates too); a
    ``TZ=`` prefix stays allowed only where the stored schedule had one."""
    spec = v._d(obj.get("spec"))
    schedule = spec.get("schedule")
    if not isinstance(schedule, str) or "TZ" not in schedule:
        return []
    allow = "TZ" in str(v._d(old.get("spec")).get("schedule") or "")
    messages = schedule_field_errors(schedule, spec.get("timeZone"), allow_tz=allow)
    return [v.invalid("spec.schedule", schedule, m) for m in messages if "TZ" in m]
