"""CronJob schedules: the standard cron syntax Kubernetes accepts, evaluated in a time zone.

Kubernetes parses ``spec.schedule`` with robfig/cron's ``ParseStandard``: five fields (minute,
hour, day of month, month, day of week), month and weekday names, ``*``, ``?``, ranges, lists and
steps, the descriptors ``@yearly``/``@annually``/``@monthly``/``@weekly``/``@daily``/
``@midnight``/``@hourly``, ``@every <duration>``, and a ``TZ=``/``CRON_TZ=`` prefix.  The field
matching is done by ``cronsim`` (a maintained parser from PyPI); this module narrows its syntax to
what robfig accepts (cronsim also knows ``L``, ``W``, ``#`` and a seconds field, which Kubernetes
rejects) and adds the descriptors, ``?`` and ``@every``.

Times are POSIX seconds; :meth:`Schedule.next` is the first activation strictly after a time.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_ZONE_PART = re.compile(r"^[A-Za-z\.\-_0-9+]{1,14}$")  # Kubernetes' validTimeZoneCharacters
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ScheduleError(ValueError):
    """An unparsable schedule or unknown time zone; the message is the one Kubernetes shows."""


def load_zone(name: str) -> tzinfo:
    """The IANA zone ``name`` (``UTC`` included); :class:`ScheduleError` when unknown.  As in
    Kubernetes (Go's ``time.LoadLocation``), ``""`` means UTC and ``Local`` the process's zone."""
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        return local_zone()
    parts = name.split("/")
    if any(p in (".", "..") or p.startswith("-") or not _ZONE_PART.match(p) for p in parts):
        raise ScheduleError(f"unknown time zone {name}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"unknown time zone {name}") from None


def local_zone() -> tzinfo:
    """The zone of this process (``TZ``, else /etc/localtime, else UTC): where a CronJob without
    ``timeZone`` is interpreted, as kube-controller-manager uses its own local zone."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return load_zone(name)
        except ScheduleError:
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return UTC


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` for the positive durations ``@every`` takes (``1h30m``)."""
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ScheduleError(f'time: invalid duration "{text}"')
    return total


def _check_atom(atom: str, field: str, lo: int, hi: int, names: tuple[str, ...], expr: str) -> None:
    if atom in ("*", "?"):
        return
    if atom.lower() in names:
        return
    if not atom.isdigit():
        raise ScheduleError(
            f'failed to parse int from {atom}: strconv.Atoi: parsing "{atom}": invalid syntax'
        )
    value = int(atom)
    if value < lo:
        raise ScheduleError(f"beginning of range ({value}) below minimum ({lo}): {expr}")
    if value > hi:
        raise ScheduleError(f"end of range ({value}) above maximum ({hi}): {expr}")


def _check_field(text: str, field: str, lo: int, hi: int, names: tuple[str, ...]) -> str:
    """Reject what robfig/cron rejects; return the field with ``?`` as ``*``."""
    for part in text.split(","):
        rng, _, step = part.partition("/")
        if step and not step.isdigit():
            raise ScheduleError(
                f'failed to parse int from {step}: strconv.Atoi: parsing "{step}": invalid syntax'
            )
        if step and int(step) == 0:
            raise ScheduleError(f"step of range should be a positive number: {part}")
        bounds = rng.split("-")
        if len(bounds) > 2 or (len(bounds) == 2 and "*" in bounds):
            raise ScheduleError(f"too many hyphens: {part}")
        for atom in bounds:
            _check_atom(atom, field, lo, hi, names, part)
    return text.replace("?", "*")


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: a cron expression (cronsim) in ``zone``, or a constant ``@every`` delay."""

    expression: str
    zone: tzinfo
    every: float = 0.0

    def next(self, after: float) -> float:
        """The first activation strictly after ``after`` (POSIX seconds)."""
        if self.every:
            whole = float(int(after))  # robfig: t + delay, sub-second part dropped
            return whole + self.every
        start = datetime.fromtimestamp(int(after), tz=UTC).astimezone(self.zone)
        return next(CronSim(self.expression, start)).timestamp()


def parse_schedule(schedule: str, time_zone: str | None = None) -> Schedule:
    """``spec.schedule`` (and ``spec.timeZone``) as the CronJob controller reads them.

    A ``TZ=``/``CRON_TZ=`` prefix names the zone too (Kubernetes rejects it on new objects; see
    :func:`schedule_field_errors`); without either, the process's local zone applies.
    """
    spec = schedule.strip()
    zone = load_zone(time_zone) if time_zone is not None else None
    if spec.startswith(("TZ=", "CRON_TZ=")):
        head, _, spec = spec.partition(" ")
        zone = load_zone(head.split("=", 1)[1])
        spec = spec.strip()
    if zone is None:
        zone = local_zone()
    if not spec:
        raise ScheduleError("empty spec string")
    if spec.startswith("@every "):
        delay = parse_duration(spec[len("@every ") :].strip())
        if delay <= 0:
            raise ScheduleError(f"failed to parse duration {spec}: non-positive duration")
        return Schedule(spec, zone, every=max(1.0, float(int(delay))))
    if spec.startswith("@"):
        if spec not in DESCRIPTORS:
            raise ScheduleError(f"unrecognized descriptor: {spec}")
        spec = DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    fields = [_check_field(text, *desc) for text, desc in zip(fields, _FIELDS, strict=True)]
    expression = " ".join(fields)
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ScheduleError(str(exc)) from None
    return Schedule(expression, zone)


def schedule_field_errors(schedule: str, time_zone: str | None, *, allow_tz: bool = False) -> list[str]:
    """Why ``spec.schedule`` is invalid, as Kubernetes' validateScheduleFormat words it (empty
    when valid).  The zone itself is checked by :func:`load_zone`."""
    out: list[str] = []
    try:
        parse_schedule(schedule, None)
    except ScheduleError as exc:
        out.append(str(exc))
    if "TZ" in schedule:
        if not allow_tz:
            out.append("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
        elif time_zone is not None:
            out.append("cannot use both timeZone field and TZ or CRON_TZ in schedule")
    return out
