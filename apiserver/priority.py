"""Pod priority in the API server: the system PriorityClasses and the ``Priority`` admission plugin.

* :func:`ensure_system_classes` -- at start-up, like kube-apiserver's
  ``scheduling/bootstrap-system-priority-classes`` post-start hook, creates
  ``system-node-critical`` (2000001000) and ``system-cluster-critical`` (2000000000) when they are
  missing, retrying until it succeeds.  They cannot be deleted (:func:`check_delete`).
* :class:`PriorityAdmission` -- Kubernetes' ``Priority`` plugin:

  - a new pod's ``priorityClassName`` is resolved to ``spec.priority`` and
    ``spec.preemptionPolicy``; with no name the ``globalDefault`` class (the lowest valued one if
    several) applies and its name is set, or priority 0 when there is none; an unknown name is a
    403 ``no PriorityClass with name X was found``; a ``spec.priority`` the client set that
    differs from the class's value is a 403 as well (same for ``preemptionPolicy``);
  - a PriorityClass created or updated with ``globalDefault: true`` while another class is the
    default is a 403 (``PriorityClass X is already marked as default. Only one default can exist``);
  - the system classes outside ``kube-system``: the behaviour of Kubernetes' documented
    ResourceQuota ``limitedResources`` configuration for them (the pod is refused with
    ``insufficient quota to match these scopes`` unless a ResourceQuota of the namespace has a
    ``scopeSelector`` with ``PriorityClass In [<the class>]``).

  Classes are read from the PriorityClass watch cache (an etcd read only for a name the cache has
  not seen yet, as when the class was created a moment ago).

What minik cannot tell apart (its defaulting runs before admission): a pod that sets
``preemptionPolicy: PreemptLowerPriority`` itself, or ``priority: 0`` without a class name, is
treated as one that left them out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from apimachinery import errors
from apimachinery.resources import ResourceInfo

from .authtypes import current_user
from .validation_scheduling import SYSTEM_PRIORITY_CLASSES
from .watchcache import decode

if TYPE_CHECKING:
    from .admission import Request
    from .registry import Registry, Storage

log = logging.getLogger(__name__)

Obj = dict[str, Any]

GROUP = "scheduling.k8s.io"
PRIORITY_CLASSES = (GROUP, "v1", "priorityclasses")
DEFAULT_PREEMPTION_POLICY = "PreemptLowerPriority"
SYSTEM_NAMESPACE = "kube-system"

_DESCRIPTIONS = {
    "system-node-critical": "Used for system critical pods that must not be moved from their current node.",
    "system-cluster-critical": "Used for system critical pods that must run in the cluster, but can be moved to "
    "another node if necessary.",
}


def system_class_bodies() -> list[Obj]:
    return [
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "globalDefault": default,
            "description": _DESCRIPTIONS[name],
            "preemptionPolicy": DEFAULT_PREEMPTION_POLICY,
        }
        for name, (value, default) in SYSTEM_PRIORITY_CLASSES.items()
    ]


def _registry(storage: Storage) -> Registry:
    return storage.registries[PRIORITY_CLASSES]


async def ensure_system_classes(storage: Storage, retry: float = 1.0) -> None:
    """Create the missing system PriorityClasses, as the API server itself; retry on failure."""
    reg = _registry(storage)
    pending = system_class_bodies()
    token = current_user.set(None)
    try:
        while pending:
            body = pending[0]
            name = body["metadata"]["name"]
            try:
                await reg.create(None, dict(body))
                log.info("created PriorityClass %s", name)
            except errors.AlreadyExists:
                pass
            except Exception as exc:  # etcd not reachable yet: try again, as the post-start hook
                log.warning("could not create PriorityClass %s: %s; retrying", name, exc)
                await asyncio.sleep(retry)
                continue
            pending.pop(0)
    finally:
        current_user.reset(token)


def start(storage: Storage) -> asyncio.Task[None] | None:
    """The start-up task making the system classes (None for a storage without the kind)."""
    if PRIORITY_CLASSES not in storage.registries:
        return None
    return asyncio.create_task(ensure_system_classes(storage), name="system-priority-classes")


def check_delete(info: ResourceInfo, name: str) -> None:
    """The system classes cannot be deleted (403, as Kubernetes' PriorityClass storage)."""
    if (info.group, info.kind) == (GROUP, "PriorityClass") and name in SYSTEM_PRIORITY_CLASSES:
        raise errors.Forbidden(
            f'priorityclasses.{GROUP} "{name}" is forbidden: this is a system priority class and cannot be deleted',
            name=name,
            group=GROUP,
            kind="priorityclasses",
        )


def _value(pc: Obj) -> int:
    try:
        return int(pc.get("value") or 0)
    except (TypeError, ValueError):
        return 0


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def default_class(classes: list[Obj]) -> Obj | None:
    """The globalDefault class; with several (possible through races), the lowest valued one."""
    defaults = [pc for pc in classes if pc.get("globalDefault")]
    return min(defaults, key=_value) if defaults else None


def quota_allows_class(quotas: list[Obj], class_name: str) -> bool:
    """Whether a ResourceQuota's scopeSelector names ``class_name`` with ``PriorityClass In``."""
    for q in quotas:
        selector = ((q.get("spec") or {}).get("scopeSelector") or {}).get("matchExpressions") or []
        for expr in selector:
            if (
                isinstance(expr, dict)
                and expr.get("scopeName") == "PriorityClass"
                and expr.get("operator") == "In"
                and class_name in (expr.get("values") or [])
            ):
                return True
    return False


def _limited_scopes_text() -> str:
    names = " ".join(SYSTEM_PRIORITY_CLASSES)
    return f"[{{PriorityClass In [{names}]}}]"


class PriorityAdmission:
    """The ``Priority`` plugin over the PriorityClass watch cache."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def _classes(self) -> list[Obj] | None:
        reg = _registry(self.storage)
        if not reg.cache.ready.is_set():
            return None
        items, _ = reg.cache.list(reg.info.key_prefix(None))
        return list(items)

    async def _all_classes(self) -> list[Obj]:
        cached = self._classes()
        if cached is not None:
            return cached
        items, _, _ = await _registry(self.storage).list(None)
        return list(items)

    async def get_class(self, name: str) -> Obj | None:
        reg = _registry(self.storage)
        key = reg.key(None, name)
        found = reg.cache.get(key) if reg.cache.ready.is_set() else None
        if found is not None:
            return found  # type: ignore[no-any-return]
        kv, _ = await self.storage.etcd.get(key)
        return decode(kv) if kv is not None else None

    async def admit(self, req: Request, quotas: Callable[[], list[Obj]]) -> None:
        """Pods on create (mutating and validating); PriorityClasses on create and update."""
        if req.obj is None or req.subresource:
            return
        if req.gk == ("", "Pod") and req.operation == "CREATE":
            await self._admit_pod(req, quotas)
        elif req.gk == (GROUP, "PriorityClass") and req.operation in ("CREATE", "UPDATE"):
            await self._admit_priority_class(req)

    async def _admit_pod(self, req: Request, quotas: Callable[[], list[Obj]]) -> None:
        assert req.obj is not None
        spec = req.obj.setdefault("spec", {})
        class_name = str(spec.get("priorityClassName") or "")
        given = spec.get("priority")
        if not class_name:
            pc = default_class(await self._all_classes())
            if pc is not None:
                spec["priorityClassName"] = _name(pc)
                if given == 0:
                    given = None  # minik's defaulting put it there (see the module's notes)
        else:
            pc = await self.get_class(class_name)
            if pc is None:
                raise req.forbidden(f"no PriorityClass with name {class_name} was found")
            if (
                class_name in SYSTEM_PRIORITY_CLASSES
                and req.namespace != SYSTEM_NAMESPACE
                and not quota_allows_class(quotas(), class_name)
            ):
                raise req.forbidden(f"insufficient quota to match these scopes: {_limited_scopes_text()}")
        value = _value(pc) if pc is not None else 0
        policy = str((pc or {}).get("preemptionPolicy") or DEFAULT_PREEMPTION_POLICY)
        if given is not None and given != value:
            raise req.forbidden(
                f"the integer value of priority ({given}) must not be provided in pod spec; "
                f"priority admission controller computed {value} from the given PriorityClass name"
            )
        spec["priority"] = value
        given_policy = spec.get("preemptionPolicy")
        if given_policy and given_policy != DEFAULT_PREEMPTION_POLICY and given_policy != policy:
            raise req.forbidden(
                f"the string value of PreemptionPolicy ({given_policy}) must not be provided in pod spec; "
                f"priority admission controller computed {policy} from the given PriorityClass name"
            )
        spec["preemptionPolicy"] = policy

    async def _admit_priority_class(self, req: Request) -> None:
        assert req.obj is not None
        if not req.obj.get("globalDefault"):
            return
        current = default_class(
            [pc for pc in await self._all_classes() if pc.get("globalDefault") and _name(pc) != req.name]
        )
        if current is not None:
            raise req.forbidden(
                f"PriorityClass {_name(current)} is already marked as default. Only one default can exist"
            )
