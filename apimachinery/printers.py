"""Server-side printing: objects rendered as a ``meta.k8s.io/v1`` Table.

``kubectl get`` asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints
whatever columns the server returns; without a Table it can only show NAME and AGE.  This
module is a port of Kubernetes' ``pkg/printers/internalversion/printers.go``: the same column
definitions (names as Kubernetes spells them, e.g. ``"Nominated Node"``; kubectl upper-cases
them) and the same cell computation, including the pod STATUS logic.

Like the real API server (``printers/storage.TableConvertor``), every row carries *all* cells,
the wide ones (``priority: 1``) included; kubectl drops the wide columns unless ``-o wide``.

Ages are rendered with a port of ``k8s.io/apimachinery/pkg/util/duration.HumanDuration``.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apimachinery.errors import BadRequest
from apimachinery.resources import ResourceInfo

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
Cells = list[Any]

TABLE_API_VERSION = "meta.k8s.io/v1"

# metav1.TableOptions.IncludeObject values
INCLUDE_NONE = "None"
INCLUDE_METADATA = "Metadata"
INCLUDE_OBJECT = "Object"

_LOAD_BALANCER_WIDTH = 16
_LABEL_NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
_NODE_LABEL_ROLE = "kubernetes.io/role"
_NODE_UNREACHABLE_POD_REASON = "NodeLost"


# --------------------------------------------------------------------------------------------
# Durations and timestamps
# --------------------------------------------------------------------------------------------


def _trunc_div(a: int, b: int) -> int:
    """Integer division truncating toward zero, as Go's ``int(x)`` conversion does."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


# HumanDuration's ladder: (unit seconds, unit, sub-unit seconds, sub-unit, count below which the
# sub-unit is shown too, count below which the unit alone is shown), "3m10s", "2d1h", "2y1d".
_DURATION_STEPS: tuple[tuple[int, str, int, str, int, float], ...] = (
    (60, "m", 1, "s", 10, 60 * 3),
    (3600, "h", 60, "m", 8, 48),
    (86400, "d", 3600, "h", 8, 365 * 2),
    (86400 * 365, "y", 86400, "d", 8, float("inf")),
)


def human_duration(d: timedelta) -> str:
    """Port of ``duration.HumanDuration``: ~2-3 significant figures ("3m10s", "2d1h", "2y1d").

    Up to 2 seconds in the future counts as "now" ("0s") to tolerate clock skew; further in
    the future is ``<invalid>``.
    """
    us = (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds
    seconds = _trunc_div(us, 1_000_000)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    for unit, name, sub_unit, sub_name, with_sub_below, whole_below in _DURATION_STEPS:
        count = seconds // unit
        if count < with_sub_below:
            sub = seconds // sub_unit % (unit // sub_unit)
            return f"{count}{name}" if sub == 0 else f"{count}{name}{sub}{sub_name}"
        if count < whole_below:
            return f"{count}{name}"
    raise AssertionError("unreachable: the last step has no upper bound")


def parse_time(ts: str | datetime | None) -> datetime | None:
    """Parse a metav1.Time / MicroTime (RFC 3339, UTC) into an aware datetime; None if unset."""
    if ts is None or ts == "":
        return None
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        logger.debug("unparseable timestamp %r", ts)
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def translate_timestamp_since(ts: str | datetime | None, now: datetime) -> str:
    """Elapsed time since ``ts`` in human form, ``<unknown>`` when the timestamp is missing."""
    when = parse_time(ts)
    if when is None:
        return "<unknown>"
    return human_duration(_aware(now) - when)


def _aware(now: datetime) -> datetime:
    return now if now.tzinfo else now.replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Small helpers shared by several printers (labels, selectors, containers)
# --------------------------------------------------------------------------------------------


def _get(obj: Any, *path: str) -> Any:
    """Walk nested dicts; None when any step is missing."""
    cur = obj
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def format_labels(labels: dict[str, str] | None) -> str:
    """``labels.FormatLabels``: sorted ``k=v,k2=v2``, ``<none>`` when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


class _InvalidSelector(ValueError):
    pass


def label_selector_string(selector: Obj | None) -> str:
    """``metav1.LabelSelectorAsSelector(sel).String()``: requirements sorted by key.

    ``matchLabels`` become ``k=v``; expressions ``k in (a,b)``, ``k notin (a,b)``, ``k``,
    ``!k``.  A nil or empty selector prints as the empty string.
    """
    if not selector:
        return ""
    reqs: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        reqs.append((key, f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        key = expr.get("key", "")
        op = expr.get("operator")
        values = sorted(expr.get("values") or [])
        if op == "In":
            reqs.append((key, f"{key} in ({','.join(values)})"))
        elif op == "NotIn":
            reqs.append((key, f"{key} notin ({','.join(values)})"))
        elif op == "Exists":
            reqs.append((key, key))
        elif op == "DoesNotExist":
            reqs.append((key, f"!{key}"))
        else:
            raise _InvalidSelector(f"{op!r} is not a valid label selector operator")
    reqs.sort(key=lambda r: r[0])
    return ",".join(text for _, text in reqs)


def format_label_selector(selector: Obj | None) -> str:
    """``metav1.FormatLabelSelector``: like the selector string, ``<none>`` when empty."""
    try:
        text = label_selector_string(selector)
    except _InvalidSelector:
        return "<error>"
    return text or "<none>"


def _layout_containers(containers: list[Obj] | None) -> tuple[str, str]:
    """Container names and images, each joined with commas."""
    containers = containers or []
    names = ",".join(c.get("name", "") for c in containers)
    images = ",".join(c.get("image", "") for c in containers)
    return names, images


def _template_containers(obj: Obj) -> list[Obj]:
    return _get(obj, "spec", "template", "spec", "containers") or []


def _join_host_port(host: str, port: Any) -> str:
    """``net.JoinHostPort``: IPv6 literals are bracketed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _int(value: Any, default: int = 0) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _quantity(value: Any) -> str:
    """A resource.Quantity as the string the object carries; ``0`` when absent."""
    if value is None or value == "":
        return "0"
    return str(value)


_ACCESS_MODE_SHORT = (
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
)


def access_modes_string(modes: list[str] | None) -> str:
    """``helper.GetAccessModesAsString``: always in the order RWO, ROX, RWX, RWOP."""
    present = set(modes or [])
    return ",".join(short for full, short in _ACCESS_MODE_SHORT if full in present)


def _first_non_empty(*values: str | None) -> str:
    for v in values:
        if v:
            return v
    return ""


# --------------------------------------------------------------------------------------------
# Column definitions
# --------------------------------------------------------------------------------------------

_D_NAME = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. "
    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_D_AGE = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. "
    "It is not guaranteed to be set in happens-before order across separate operations. Clients may "
    "not set this value. It is represented in RFC3339 form and is in UTC."
)
_D_CONTAINERS = "Names of each container in the template."
_D_IMAGES = "Images referenced by each container in the template."


# Every printed kind's columns, one per line under "group/Kind" (core kinds without a group):
# ``Column [flags] | description``.  Flags: ``wide`` (priority 1, shown with ``-o wide``) and a
# type other than string (``integer``, ``date``).  Columns without a description take the shared
# one below.  rest.NewDefaultTableConvertor's two columns serve every kind not listed.
_SHARED_DESCRIPTIONS = {
    "Name": _D_NAME,
    "Age": _D_AGE,
    "Created At": _D_AGE,
    "Containers": _D_CONTAINERS,
    "Images": _D_IMAGES,
}
_DEFAULT_COLUMNS_TEXT = "  Name\n  Created At [date]"
_COLUMNS_TEXT = """
Pod
  Name
  Ready | The aggregate readiness state of this pod for accepting traffic.
  Status | The aggregate status of the containers in this pod.
  Restarts | The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.
  Age
  IP [wide] | IP address allocated to the pod. Routable at least within the cluster.
  Node [wide] | NodeName is the name of the node this pod is scheduled onto.
  Nominated Node [wide] | nominatedNodeName is set only when this pod preempts other pods on the node.
  Readiness Gates [wide] | If specified, all readiness gates will be evaluated for pod readiness.
Node
  Name
  Status | The status of the node
  Roles | The roles of the node
  Age
  Version | Kubelet Version reported by the node.
  Internal-IP [wide] | List of addresses reachable to the node.
  External-IP [wide] | List of addresses reachable to the node.
  OS-Image [wide] | OS Image reported by the node from /etc/os-release.
  Kernel-Version [wide] | Kernel Version reported by the node from 'uname -r'.
  Container-Runtime [wide] | ContainerRuntime Version reported by the node through runtime remote API.
Namespace
  Name
  Status | The status of the namespace
  Age
Service
  Name
  Type | type determines how the Service is exposed.
  Cluster-IP | clusterIP is the IP address of the service.
  External-IP | externalIPs is a list of IP addresses for which nodes accept traffic.
  Port(s) | The list of ports that are exposed by this service.
  Age
  Selector [wide] | Route service traffic to pods with label keys and values matching this selector.
Endpoints
  Name
  Endpoints | The set of all endpoints is the union of all subsets.
  Age
ConfigMap
  Name
  Data | Data contains the configuration data.
  Age
Secret
  Name
  Type | Used to facilitate programmatic handling of secret data.
  Data | Data contains the secret data.
  Age
Event
  Last Seen | The time at which the most recent occurrence of this event was recorded.
  Type | Type of this event (Normal, Warning), new types could be added in the future
  Reason | This should be a short, machine understandable string that gives the reason for the transition into the object's current status.
  Object | The object that this event is about.
  Subobject [wide] | If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.
  Source [wide] | The component reporting this event.
  Message | A human-readable description of the status of this operation.
  First Seen [wide] | The time at which the event was first recorded.
  Count [wide] | The number of times this event has occurred.
  Name [wide]
ServiceAccount
  Name
  Secrets | Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.
  Age
PersistentVolume
  Name
  Capacity | capacity is the description of the persistent volume's resources and capacity.
  Access Modes | accessModes contains all ways the volume can be mounted.
  Reclaim Policy | persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.
  Status | phase indicates if a volume is available, bound to a claim, or released by a claim.
  Claim | claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.
  StorageClass | StorageClass of the pv
  VolumeAttributesClass | VolumeAttributesClass of the pv
  Reason | reason is a brief CamelCase string that describes any failure.
  Age
  VolumeMode [wide] | volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.
PersistentVolumeClaim
  Name
  Status | phase represents the current phase of PersistentVolumeClaim.
  Volume | volumeName is the binding reference to the PersistentVolume backing this claim.
  Capacity | capacity represents the actual resources of the underlying volume.
  Access Modes | accessModes contains the actual access modes the volume backing the PVC has.
  StorageClass | StorageClass of the pvc
  VolumeAttributesClass | VolumeAttributesClass of the pvc
  Age
  VolumeMode [wide] | volumeMode defines what type of volume is required by the claim.
apps/Deployment
  Name
  Ready | Number of the pod with ready state
  Up-to-date | Total number of non-terminated pods targeted by this deployment that have the desired template spec.
  Available | Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.
  Age
  Containers [wide]
  Images [wide]
  Selector [wide] | Label selector for pods.
apps/ReplicaSet
  Name
  Desired [integer] | Replicas is the number of desired replicas.
  Current [integer] | Replicas is the most recently observed number of replicas.
  Ready [integer] | The number of ready replicas for this replica set.
  Age
  Containers [wide]
  Images [wide]
  Selector [wide] | Selector is a label query over pods that should match the replica count.
apps/StatefulSet
  Name
  Ready | Number of the pod with ready state
  Age
  Containers [wide]
  Images [wide]
apps/DaemonSet
  Name
  Desired [integer] | The total number of nodes that should be running the daemon pod.
  Current [integer] | The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.
  Ready [integer] | The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.
  Up-to-date [integer] | The total number of nodes that are running updated daemon pod
  Available [integer] | The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.
  Node Selector | NodeSelector is a selector which must be true for the pod to fit on a node.
  Age
  Containers [wide]
  Images [wide]
  Selector [wide] | A label query over pods that are managed by the daemon set.
batch/Job
  Name
  Status | Status of the job.
  Completions | The number of pods which reached phase Succeeded.
  Duration | Time required to complete the job.
  Age
  Containers [wide]
  Images [wide]
  Selector [wide] | A label query over pods that should match the pod count.
batch/CronJob
  Name
  Schedule | The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.
  Timezone | The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.
  Suspend [boolean] | This flag tells the controller to suspend subsequent executions, it does not apply to already started executions. Defaults to false.
  Active [integer] | A list of pointers to currently running jobs.
  Last Schedule | Information when was the last time the job was successfully scheduled.
  Age
  Containers [wide]
  Images [wide]
  Selector [wide] | A label query over pods that should match the pod count.
coordination.k8s.io/Lease
  Name
  Holder | holderIdentity contains the identity of the holder of a current lease.
  Age
discovery.k8s.io/EndpointSlice
  Name
  AddressType | addressType specifies the type of address carried by this EndpointSlice.
  Ports | ports specifies the list of network ports exposed by each endpoint in this slice.
  Endpoints | endpoints is a list of unique endpoints in this slice.
  Age
networking.k8s.io/Ingress
  Name
  Class | The name of the IngressClass resource that should be used for additional configuration
  Hosts | Hosts that incoming requests are matched against before the ingress rule
  Address | Address is a list containing ingress points for the load-balancer
  Ports | Ports of TLS configurations that open
  Age
networking.k8s.io/NetworkPolicy
  Name
  Pod-Selector | podSelector selects the pods to which this NetworkPolicy object applies. The array of rules is applied to any pods selected by this field. An empty selector matches all pods in the policy's namespace. Multiple network policies can select the same set of pods. In this case, the ingress rules for each are combined additively. This field is optional. If it is not specified, it defaults to an empty selector.
  Age
apiregistration.k8s.io/APIService
  Name
  Service | The reference to the service that hosts this API endpoint.
  Available | Whether this service is available.
  Age
autoscaling/HorizontalPodAutoscaler
  Name
  Reference | scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.
  Targets | metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).
  MinPods | minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.
  MaxPods [integer] | maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.
  Replicas [integer] | currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.
  Age
policy/PodDisruptionBudget
  Name
  Min Available | The minimum number of pods that must be available.
  Max Unavailable | The maximum number of pods that may be unavailable.
  Allowed Disruptions [integer] | Calculated number of pods that may be disrupted at this time.
  Age
scheduling.k8s.io/PriorityClass
  Name
  Value [integer] | value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.
  Global-Default [boolean] | globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.
  Age
  PreemptionPolicy | preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.
certificates.k8s.io/CertificateSigningRequest
  Name
  Age
  SignerName | signerName indicates the requested signer, and is a qualified name.
  Requestor | request contains an x509 certificate signing request encoded in a "CERTIFICATE REQUEST" PEM block. When serialized as JSON or YAML, the data is additionally base64-encoded.
  RequestedDuration | expirationSeconds is the requested duration of validity of the issued certificate. The certificate signer may issue a certificate with a different validity duration so a client must check the delta between the notBefore and and notAfter fields in the issued certificate to determine the actual duration.
  Condition | conditions applied to the request. Known conditions are "Approved", "Denied", and "Failed".
storage.k8s.io/StorageClass
  Name
  Provisioner | provisioner indicates the type of the provisioner.
  ReclaimPolicy | reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes.
  VolumeBindingMode | volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.
  AllowVolumeExpansion | allowVolumeExpansion shows whether the storage class allow volume expand.
  Age
"""


def _parse_column(line: str) -> Obj:
    head, _, description = line.strip().partition(" | ")
    name, _, flag_text = head.partition(" [")
    flags = flag_text.rstrip("]").split(",") if flag_text else []
    types = [f for f in flags if f != "wide"]
    return {
        "name": name,
        "type": types[0] if types else "string",
        "format": "name" if name == "Name" else "",
        "description": description or _SHARED_DESCRIPTIONS[name],
        "priority": 1 if "wide" in flags else 0,
    }


def _parse_columns(text: str) -> dict[tuple[str, str], list[Obj]]:
    columns: dict[tuple[str, str], list[Obj]] = {}
    current: list[Obj] = []
    for line in text.strip("\n").split("\n"):
        if line.startswith(" "):
            current.append(_parse_column(line))
        else:
            group, _, kind = line.rpartition("/")
            current = columns.setdefault((group, kind), [])
    return columns


_COLUMNS = _parse_columns(_COLUMNS_TEXT)
_DEFAULT_COLUMNS = [_parse_column(line) for line in _DEFAULT_COLUMNS_TEXT.split("\n")]


def column_definitions(info: ResourceInfo) -> list[Obj]:
    """The Table column definitions of a kind (wide columns included, as the server sends them)."""
    if info.custom:
        return _custom_columns(info)
    return copy.deepcopy(_COLUMNS.get((info.group, info.kind), _DEFAULT_COLUMNS))


def _custom_columns(info: ResourceInfo) -> list[Obj]:
    """A custom resource's columns: Name, then its ``additionalPrinterColumns`` (Age when it has
    none), as Kubernetes' ``tableconvertor`` builds them."""
    name = {
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": "Name must be unique within a namespace.",
        "priority": 0,
    }
    columns = info.printer_columns or (
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    )
    return [name] + [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": int(c.get("priority", 0)),
        }
        for c in columns
    ]


def json_path_value(obj: Any, path: str) -> Any:
    """The value at a simple JSONPath (``.spec.replicas``, ``.status.conditions[0].type``), or None."""
    value = obj
    for part in path.strip().lstrip(".").split("."):
        if not part:
            continue
        key, _, rest = part.partition("[")
        if key:
            value = value.get(key) if isinstance(value, dict) else None
        while rest and value is not None:
            index, _, rest = rest.partition("]")
            rest = rest.lstrip("[")
            try:
                value = value[int(index)] if isinstance(value, list) else None
            except (ValueError, IndexError):
                value = None
        if value is None:
            return None
    return value


def _custom_cells(info: ResourceInfo, obj: Obj, now: datetime) -> Cells:
    columns = info.printer_columns or (
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    )
    cells: Cells = [_get(obj, "metadata", "name") or ""]
    for c in columns:
        value = json_path_value(obj, str(c.get("jsonPath") or ""))
        if value is None:
            cells.append(None)
        elif c.get("type") == "date":
            cells.append(translate_timestamp_since(value if isinstance(value, str) else None, now))
        elif isinstance(value, (dict, list)):
            cells.append(json.dumps(value, separators=(",", ":")))
        else:
            cells.append(value)
    return cells


# --------------------------------------------------------------------------------------------
# Pod
# --------------------------------------------------------------------------------------------

_POD_SUCCESS_CONDITIONS = [
    {
        "type": "Completed",
        "status": "True",
        "reason": "Succeeded",
        "message": "The pod has completed successfully.",
    }
]
_POD_FAILED_CONDITIONS = [
    {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}
]


def _is_restartable_init_container(container: Obj | None) -> bool:
    """A sidecar: an init container with ``restartPolicy: Always``."""
    return bool(container) and container.get("restartPolicy") == "Always"  # type: ignore[union-attr]


def _condition_true(conditions: list[Obj] | None, type_: str) -> bool:
    """First condition of that type decides (Kubernetes' isPodInitializedConditionTrue etc.)."""
    for cond in conditions or []:
        if cond.get("type") == type_:
            return cond.get("status") == "True"
    return False


def _has_pod_ready_condition(conditions: list[Obj] | None) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions or [])


def _last_finished(status: Obj) -> datetime | None:
    return parse_time(_get(status, "lastState", "terminated", "finishedAt"))


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if a < b else a


def _terminated_reason(terminated: Obj, prefix: str = "") -> str:
    """Reason of a terminated container, or ``Signal:N`` / ``ExitCode:N`` when it gave none."""
    if terminated.get("reason"):
        return prefix + str(terminated["reason"])
    if _int(terminated.get("signal")) != 0:
        return f"{prefix}Signal:{_int(terminated.get('signal'))}"
    return f"{prefix}ExitCode:{_int(terminated.get('exitCode'))}"


def pod_status_summary(pod: Obj) -> tuple[str, str, int, datetime | None]:
    """Compute READY, STATUS, the restart count and the last restart time as ``printPod`` does.

    Returns ``(ready, status, restarts, last_restart)``.  Init containers are looked at first
    (``Init:N/M``, ``Init:<reason>``); once the pod is initialized the app containers decide,
    last one first, so the first container's waiting/terminated reason wins.
    """
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    meta = pod.get("metadata") or {}
    conditions = status.get("conditions") or []
    init_specs_list = spec.get("initContainers") or []

    restarts = 0
    sidecar_restarts = 0
    total = len(spec.get("containers") or [])
    ready = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None

    phase = status.get("phase") or ""
    reason = status.get("reason") or phase

    for cond in conditions:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_specs = {c.get("name"): c for c in init_specs_list}
    total += sum(1 for c in init_specs_list if _is_restartable_init_container(c))

    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        restarts += _int(cs.get("restartCount"))
        last_restart = _later(last_restart, _last_finished(cs))
        sidecar = _is_restartable_init_container(init_specs.get(cs.get("name")))
        if sidecar:
            sidecar_restarts += _int(cs.get("restartCount"))
            last_sidecar_restart = _later(last_sidecar_restart, _last_finished(cs))
        state = cs.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated is not None and _int(terminated.get("exitCode")) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            reason = _terminated_reason(terminated, "Init:")
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs_list)}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += _int(cs.get("restartCount"))
            last_restart = _later(last_restart, _last_finished(cs))
            state = cs.get("state") or {}
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None:
                reason = _terminated_reason(terminated)
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        # a container still running turns a "Completed" pod back into Running / NotReady
        if reason == "Completed" and has_running:
            reason = "Running" if _has_pod_ready_condition(conditions) else "NotReady"

    if meta.get("deletionTimestamp") and status.get("reason") == _NODE_UNREACHABLE_POD_REASON:
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    return f"{ready}/{total}", reason, restarts, last_restart


def _pod_ip(status: Obj) -> str:
    pod_ips = status.get("podIPs") or []
    if pod_ips and pod_ips[0].get("ip"):
        return str(pod_ips[0]["ip"])
    return str(status.get("podIP") or "<none>")


def _readiness_gates(spec: Obj, status: Obj) -> str:
    gates = spec.get("readinessGates") or []
    if not gates:
        return "<none>"
    true_count = 0
    for gate in gates:
        for cond in status.get("conditions") or []:
            if cond.get("type") == gate.get("conditionType"):
                if cond.get("status") == "True":
                    true_count += 1
                break
    return f"{true_count}/{len(gates)}"


def _pod_cells(pod: Obj, now: datetime) -> Cells:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    meta = pod.get("metadata") or {}
    ready, reason, restarts, last_restart = pod_status_summary(pod)
    restarts_str = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_str = f"{restarts} ({translate_timestamp_since(last_restart, now)} ago)"
    return [
        meta.get("name", ""),
        ready,
        reason,
        restarts_str,
        translate_timestamp_since(meta.get("creationTimestamp"), now),
        _pod_ip(status),
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        _readiness_gates(spec, status),
    ]


def _pod_conditions(pod: Obj) -> list[Obj] | None:
    phase = _get(pod, "status", "phase")
    if phase == "Succeeded":
        return copy.deepcopy(_POD_SUCCESS_CONDITIONS)
    if phase == "Failed":
        return copy.deepcopy(_POD_FAILED_CONDITIONS)
    return None


# --------------------------------------------------------------------------------------------
# Node
# --------------------------------------------------------------------------------------------


def node_roles(labels: dict[str, str] | None) -> list[str]:
    """Roles from ``node-role.kubernetes.io/<role>`` labels and ``kubernetes.io/role=<role>``."""
    roles: set[str] = set()
    for key, value in (labels or {}).items():
        if key.startswith(_LABEL_NODE_ROLE_PREFIX):
            role = key[len(_LABEL_NODE_ROLE_PREFIX) :]
            if role:
                roles.add(role)
        elif key == _NODE_LABEL_ROLE and value:
            roles.add(value)
    return sorted(roles)


def node_status(node: Obj) -> str:
    """``Ready`` / ``NotReady`` / ``Unknown`` (no Ready condition), plus ``SchedulingDisabled``."""
    status: list[str] = []
    conditions = {c.get("type"): c for c in _get(node, "status", "conditions") or []}
    ready = conditions.get("Ready")
    if ready is not None:
        status.append("Ready" if ready.get("status") == "True" else "NotReady")
    if not status:
        status.append("Unknown")
    if _get(node, "spec", "unschedulable"):
        status.append("SchedulingDisabled")
    return ",".join(status)


def _node_address(node: Obj, type_: str) -> str:
    for addr in _get(node, "status", "addresses") or []:
        if addr.get("type") == type_:
            return str(addr.get("address", ""))
    return "<none>"


def _node_cells(node: Obj, now: datetime) -> Cells:
    meta = node.get("metadata") or {}
    info = _get(node, "status", "nodeInfo") or {}
    return [
        meta.get("name", ""),
        node_status(node),
        ",".join(node_roles(meta.get("labels"))) or "<none>",
        translate_timestamp_since(meta.get("creationTimestamp"), now),
        info.get("kubeletVersion", ""),
        _node_address(node, "InternalIP"),
        _node_address(node, "ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


# --------------------------------------------------------------------------------------------
# Service, Endpoints, Ingress
# --------------------------------------------------------------------------------------------


def _load_balancer_string(lb_status: Obj | None, wide: bool = True) -> str:
    """Sorted, de-duplicated ingress IPs (or hostnames); clipped to 16 chars unless wide."""
    result: set[str] = set()
    for ing in (lb_status or {}).get("ingress") or []:
        if ing.get("ip"):
            result.add(ing["ip"])
        elif ing.get("hostname"):
            result.add(ing["hostname"])
    text = ",".join(sorted(result))
    if not wide and len(text) > _LOAD_BALANCER_WIDTH:
        text = text[: _LOAD_BALANCER_WIDTH - 3] + "..."
    return text


def service_external_ip(svc: Obj, wide: bool = True) -> str:
    """EXTERNAL-IP: externalIPs, LoadBalancer ingress (``<pending>`` until assigned), externalName."""
    spec = svc.get("spec") or {}
    svc_type = spec.get("type") or ""
    external_ips = spec.get("externalIPs") or []
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) if external_ips else "<none>"
    if svc_type == "LoadBalancer":
        lb_ips = _load_balancer_string(_get(svc, "status", "loadBalancer"), wide)
        if external_ips:
            results = (lb_ips.split(",") if lb_ips else []) + list(external_ips)
            return ",".join(results)
        return lb_ips or "<pending>"
    if svc_type == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def service_ports(ports: list[Obj] | None) -> str:
    """PORT(S): ``80/TCP`` or ``80:30080/TCP`` with a node port, comma-joined."""
    pieces = []
    for port in ports or []:
        protocol = port.get("protocol") or "TCP"
        node_port = _int(port.get("nodePort"))
        if node_port > 0:
            pieces.append(f"{port.get('port')}:{node_port}/{protocol}")
        else:
            pieces.append(f"{port.get('port')}/{protocol}")
    return ",".join(pieces)


def _service_cells(svc: Obj, now: datetime) -> Cells:
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [
        meta.get("name", ""),
        spec.get("type", ""),
        cluster_ips[0] if cluster_ips else "<none>",
        service_external_ip(svc, wide=True),
        service_ports(spec.get("ports")) or "<none>",
        translate_timestamp_since(meta.get("creationTimestamp"), now),
        format_labels(spec.get("selector")),
    ]


def _listed_with_more(listed: list[str], more: bool, left_out: int) -> str:
    """The first entries comma-joined, then ``+ N more...`` when some were left out."""
    text = ",".join(listed)
    return f"{text} + {left_out} more..." if more else text


def format_endpoints(endpoints: Obj) -> str:
    """ENDPOINTS: up to three ``ip:port`` entries then ``+ N more...``; ``<none>`` if no subsets."""
    subsets = endpoints.get("subsets") or []
    if not subsets:
        return "<none>"
    listed: list[str] = []
    limit = 3
    more = False
    count = 0
    for ss in subsets:
        addresses = ss.get("addresses") or []
        ports = ss.get("ports") or []
        if not ports:
            # headless services may have no ports
            count += len(addresses)
            for addr in addresses:
                if len(listed) == limit:
                    more = True
                    break
                listed.append(addr.get("ip", ""))
            continue
        for port in ports:
            count += len(addresses)
            for addr in addresses:
                if len(listed) == limit:
                    more = True
                    break
                listed.append(_join_host_port(addr.get("ip", ""), port.get("port")))
    return _listed_with_more(listed, more, count - limit)


def _endpoints_cells(ep: Obj, now: datetime) -> Cells:
    return [_name(ep), format_endpoints(ep), _age(ep, now)]


def _listed_or_unset(listed: list[str], more: bool, left_out: int) -> str:
    """kubectl's ``listWithMoreString`` for slices: ``<unset>`` when nothing is listed."""
    return _listed_with_more(listed, more, left_out) or "<unset>"


def _slice_port(port: Obj) -> str:
    if port.get("port") is not None:
        return str(port["port"])
    return "*" if port.get("name") is None else str(port["name"])


def format_slice_ports(ports: list[Obj] | None) -> str:
    """PORTS of an EndpointSlice: up to three port numbers (the name when unset, ``*`` when
    neither), then ``+ N more...``."""
    ports = ports or []
    listed = [_slice_port(p) for p in ports[:3]]
    return _listed_or_unset(listed, len(ports) > 3, len(ports) - 3)


def format_slice_endpoints(endpoints: list[Obj] | None) -> str:
    """ENDPOINTS of an EndpointSlice: up to three addresses, then ``+ N more...``."""
    addresses = [str(a) for ep in endpoints or [] for a in ep.get("addresses") or []]
    return _listed_or_unset(addresses[:3], len(addresses) > 3, len(addresses) - 3)


def _endpoint_slice_cells(s: Obj, now: datetime) -> Cells:
    return [
        _name(s),
        s.get("addressType") or "",
        format_slice_ports(s.get("ports")),
        format_slice_endpoints(s.get("endpoints")),
        _age(s, now),
    ]


def _ingress_hosts(rules: list[Obj] | None) -> str:
    rules = rules or []
    listed: list[str] = []
    limit = 3
    more = False
    for rule in rules:
        if len(listed) == limit:
            more = True
        if not more and rule.get("host"):
            listed.append(rule["host"])
    if not listed:
        return "*"
    return _listed_with_more(listed, more, len(rules) - limit)


def _ingress_cells(ing: Obj, now: datetime) -> Cells:
    spec = ing.get("spec") or {}
    return [
        _name(ing),
        spec.get("ingressClassName") or "<none>",
        _ingress_hosts(spec.get("rules")),
        _load_balancer_string(_get(ing, "status", "loadBalancer"), wide=True),
        "80, 443" if spec.get("tls") else "80",
        _age(ing, now),
    ]


def csr_condition(csr: Obj) -> str:
    """kubectl's CONDITION of a CertificateSigningRequest: Denied, Approved or Pending, then
    ",Failed" and ",Issued"."""
    types = {c.get("type") for c in _get(csr, "status", "conditions") or [] if isinstance(c, dict)}
    status = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    if "Failed" in types:
        status += ",Failed"
    if _get(csr, "status", "certificate"):
        status += ",Issued"
    return status


def _csr_cells(csr: Obj, now: datetime) -> Cells:
    seconds = _get(csr, "spec", "expirationSeconds")
    duration = "<none>"
    if isinstance(seconds, int) and not isinstance(seconds, bool):
        duration = human_duration(timedelta(seconds=seconds))
    return [
        _name(csr),
        _age(csr, now),
        _get(csr, "spec", "signerName") or "<none>",
        _get(csr, "spec", "username") or "",
        duration,
        csr_condition(csr),
    ]


def _network_policy_cells(np: Obj, now: datetime) -> Cells:
    return [_name(np), format_label_selector(_get(np, "spec", "podSelector")), _age(np, now)]


# --------------------------------------------------------------------------------------------
# Simple core kinds
# --------------------------------------------------------------------------------------------


def _age(obj: Obj, now: datetime) -> str:
    return translate_timestamp_since(_get(obj, "metadata", "creationTimestamp"), now)


def _name(obj: Obj) -> str:
    return str(_get(obj, "metadata", "name") or "")


def _namespace_cells(ns: Obj, now: datetime) -> Cells:
    return [_name(ns), _get(ns, "status", "phase") or "", _age(ns, now)]


def _configmap_cells(cm: Obj, now: datetime) -> Cells:
    return [_name(cm), len(cm.get("data") or {}) + len(cm.get("binaryData") or {}), _age(cm, now)]


def _secret_cells(secret: Obj, now: datetime) -> Cells:
    # stringData is merged into data on write; count the keys a stored secret would have
    keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
    return [_name(secret), secret.get("type") or "Opaque", len(keys), _age(secret, now)]


def _service_account_cells(sa: Obj, now: datetime) -> Cells:
    return [_name(sa), len(sa.get("secrets") or []), _age(sa, now)]


def _event_source(event: Obj) -> str:
    source = event.get("source") or {}
    component = _first_non_empty(source.get("component"), event.get("reportingController"))
    instance = _first_non_empty(source.get("host"), event.get("reportingInstance"))
    return f"{component}, {instance}" if instance else component


def _event_cells(event: Obj, now: datetime) -> Cells:
    if parse_time(event.get("firstTimestamp")) is not None:
        first_seen = translate_timestamp_since(event.get("firstTimestamp"), now)
    else:
        first_seen = translate_timestamp_since(event.get("eventTime"), now)
    last_seen = first_seen
    if parse_time(event.get("lastTimestamp")) is not None:
        last_seen = translate_timestamp_since(event.get("lastTimestamp"), now)
    count = _int(event.get("count"))
    series = event.get("series")
    if series is not None:
        last_seen = translate_timestamp_since(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1  # singleton events have no count in the events.k8s.io API
    involved = event.get("involvedObject") or {}
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    return [
        last_seen,
        event.get("type", ""),
        event.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        _event_source(event),
        str(event.get("message") or "").strip(),
        first_seen,
        count,
        _name(event),
    ]


# --------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------


def _volume_class(obj: Obj) -> str:
    """STORAGECLASS of a PV or PVC: the beta annotation wins over spec.storageClassName."""
    annotations = _get(obj, "metadata", "annotations") or {}
    if "volume.beta.kubernetes.io/storage-class" in annotations:
        return str(annotations["volume.beta.kubernetes.io/storage-class"])
    return str(_get(obj, "spec", "storageClassName") or "")


def _volume_phase(obj: Obj) -> Any:
    """STATUS of a PV or PVC: Terminating once deleted, else status.phase."""
    if _get(obj, "metadata", "deletionTimestamp"):
        return "Terminating"
    return (obj.get("status") or {}).get("phase", "")


def _pv_cells(pv: Obj, now: datetime) -> Cells:
    spec = pv.get("spec") or {}
    status = pv.get("status") or {}
    claim_ref = spec.get("claimRef")
    claim = f"{claim_ref.get('namespace', '')}/{claim_ref.get('name', '')}" if claim_ref else ""
    return [
        _name(pv),
        _quantity((spec.get("capacity") or {}).get("storage")),
        access_modes_string(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy", ""),
        _volume_phase(pv),
        claim,
        _volume_class(pv),
        spec.get("volumeAttributesClassName") or "<unset>",
        status.get("reason", ""),
        _age(pv, now),
        spec.get("volumeMode") or "<unset>",
    ]


def _pvc_cells(pvc: Obj, now: datetime) -> Cells:
    spec = pvc.get("spec") or {}
    status = pvc.get("status") or {}
    capacity = ""
    access_modes = ""
    if spec.get("volumeName"):
        access_modes = access_modes_string(status.get("accessModes"))
        capacity = _quantity((status.get("capacity") or {}).get("storage"))
    return [
        _name(pvc),
        _volume_phase(pvc),
        spec.get("volumeName", ""),
        capacity,
        access_modes,
        _volume_class(pvc),
        spec.get("volumeAttributesClassName") or "<unset>",
        _age(pvc, now),
        spec.get("volumeMode") or "<unset>",
    ]


def _is_default_storage_class(sc: Obj) -> bool:
    annotations = _get(sc, "metadata", "annotations") or {}
    return (
        annotations.get("storageclass.kubernetes.io/is-default-class") == "true"
        or annotations.get("storageclass.beta.kubernetes.io/is-default-class") == "true"
    )


def _storage_class_cells(sc: Obj, now: datetime) -> Cells:
    name = _name(sc)
    if _is_default_storage_class(sc):
        name += " (default)"
    return [
        name,
        sc.get("provisioner", ""),
        sc.get("reclaimPolicy") or "Delete",
        sc.get("volumeBindingMode") or "Immediate",
        bool(sc.get("allowVolumeExpansion") or False),
        _age(sc, now),
    ]


def _apiservice_cells(a: Obj, now: datetime) -> Cells:
    """kube-aggregator's APIService columns: ``NS/NAME`` or ``Local``, ``True`` or ``False (REASON)``."""
    svc = _get(a, "spec", "service")
    service = f"{svc.get('namespace')}/{svc.get('name')}" if isinstance(svc, dict) else "Local"
    conds = _get(a, "status", "conditions") or []
    cond = next((c for c in conds if isinstance(c, dict) and c.get("type") == "Available"), None)
    if cond is None:
        available = "Unknown"
    elif cond.get("status") == "True":
        available = "True"
    else:
        available = f"{cond.get('status')} ({cond.get('reason')})"
    return [_name(a), service, available, _age(a, now)]


def _hpa_metric_target(spec: Obj, current: Obj | None) -> str:
    """One metric of printHorizontalPodAutoscaler's TARGETS: ``cpu: 45%/50%``, ``memory: 10Mi/100Mi``."""
    kind = spec.get("type")
    source = spec.get(_HPA_SOURCES.get(str(kind), "")) or {}
    target = source.get("target") or {}
    cur = ((current or {}).get(_HPA_SOURCES.get(str(kind), "")) or {}).get("current") or {}
    if kind in ("Resource", "ContainerResource"):
        prefix = f"{source.get('name')}: "
        if kind == "ContainerResource":
            prefix = f"{source.get('name')}/{source.get('container')}: "
        if target.get("averageUtilization") is not None:
            got = "<unknown>" if cur.get("averageUtilization") is None else f"{cur['averageUtilization']}%"
            return f"{prefix}{got}/{target['averageUtilization']}%"
        got = str(cur["averageValue"]) if cur.get("averageValue") is not None else "<unknown>"
        return f"{prefix}{got}/{target.get('averageValue')}"
    want = target.get("averageValue") or target.get("value")
    raw = cur.get("averageValue") or cur.get("value")
    return f"{'<unknown>' if raw is None else raw}/{want}" + (" (avg)" if target.get("averageValue") else "")


_HPA_SOURCES = {
    "Resource": "resource",
    "ContainerResource": "containerResource",
    "Pods": "pods",
    "Object": "object",
    "External": "external",
}


def _hpa_cells(hpa: Obj, now: datetime) -> Cells:
    """printHorizontalPodAutoscaler: reference, metric targets (four at most), min, max, replicas."""
    spec = _get(hpa, "spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    specs = [m for m in spec.get("metrics") or [] if isinstance(m, dict)]
    currents = _get(hpa, "status", "currentMetrics") or []
    targets = []
    for i, m in enumerate(specs):
        cur = currents[i] if i < len(currents) and isinstance(currents[i], dict) else None
        targets.append(_hpa_metric_target(m, cur))
    text = ", ".join(targets[:4]) if targets else "<none>"
    if len(targets) > 4:
        text += f" + {len(targets) - 4} more..."
    minimum = spec.get("minReplicas")
    return [
        _name(hpa),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        text,
        "<unset>" if minimum is None else str(minimum),
        _int(spec.get("maxReplicas")),
        _int(_get(hpa, "status", "currentReplicas")),
        _age(hpa, now),
    ]


def _pdb_cells(pdb: Obj, now: datetime) -> Cells:
    """printPodDisruptionBudget: the int-or-percent of each bound (``N/A`` when unset)."""
    spec = _get(pdb, "spec") or {}
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    return [
        _name(pdb),
        "N/A" if min_available is None else str(min_available),
        "N/A" if max_unavailable is None else str(max_unavailable),
        _int(_get(pdb, "status", "disruptionsAllowed")),
        _age(pdb, now),
    ]


def _priority_class_cells(pc: Obj, now: datetime) -> Cells:
    return [
        _name(pc),
        _int(pc.get("value")),
        bool(pc.get("globalDefault") or False),
        _age(pc, now),
        pc.get("preemptionPolicy") or "PreemptLowerPriority",
    ]


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


def _replicas(obj: Obj) -> int:
    """spec.replicas, defaulted to 1 as the API server's defaulting does."""
    value = _get(obj, "spec", "replicas")
    return 1 if value is None else _int(value)


def _deployment_cells(d: Obj, now: datetime) -> Cells:
    status = d.get("status") or {}
    try:
        selector = label_selector_string(_get(d, "spec", "selector"))
    except _InvalidSelector:
        selector = "<invalid>"
    names, images = _layout_containers(_template_containers(d))
    return [
        _name(d),
        f"{_int(status.get('readyReplicas'))}/{_replicas(d)}",
        _int(status.get("updatedReplicas")),
        _int(status.get("availableReplicas")),
        _age(d, now),
        names,
        images,
        selector,
    ]


def _replicaset_cells(rs: Obj, now: datetime) -> Cells:
    status = rs.get("status") or {}
    names, images = _layout_containers(_template_containers(rs))
    return [
        _name(rs),
        _replicas(rs),
        _int(status.get("replicas")),
        _int(status.get("readyReplicas")),
        _age(rs, now),
        names,
        images,
        format_label_selector(_get(rs, "spec", "selector")),
    ]


def _statefulset_cells(sts: Obj, now: datetime) -> Cells:
    names, images = _layout_containers(_template_containers(sts))
    ready = _int(_get(sts, "status", "readyReplicas"))
    return [_name(sts), f"{ready}/{_replicas(sts)}", _age(sts, now), names, images]


def _daemonset_cells(ds: Obj, now: datetime) -> Cells:
    status = ds.get("status") or {}
    names, images = _layout_containers(_template_containers(ds))
    return [
        _name(ds),
        _int(status.get("desiredNumberScheduled")),
        _int(status.get("currentNumberScheduled")),
        _int(status.get("numberReady")),
        _int(status.get("updatedNumberScheduled")),
        _int(status.get("numberAvailable")),
        format_labels(_get(ds, "spec", "template", "spec", "nodeSelector")),
        _age(ds, now),
        names,
        images,
        format_label_selector(_get(ds, "spec", "selector")),
    ]


def job_status(job: Obj) -> str:
    """Complete, Failed, Terminating, Suspended, FailureTarget or Running (in that precedence)."""
    conditions = _get(job, "status", "conditions") or []
    if _condition_true(conditions, "Complete"):
        return "Complete"
    if _condition_true(conditions, "Failed"):
        return "Failed"
    if _get(job, "metadata", "deletionTimestamp"):
        return "Terminating"
    if _condition_true(conditions, "Suspended"):
        return "Suspended"
    if _condition_true(conditions, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def _job_completions(job: Obj) -> str:
    succeeded = _int(_get(job, "status", "succeeded"))
    completions = _get(job, "spec", "completions")
    if completions is not None:
        return f"{succeeded}/{_int(completions)}"
    parallelism = _int(_get(job, "spec", "parallelism"))
    if parallelism > 1:
        return f"{succeeded}/1 of {parallelism}"
    return f"{succeeded}/1"


def _job_duration(job: Obj, now: datetime) -> str:
    start = parse_time(_get(job, "status", "startTime"))
    if start is None:
        return ""
    completion = parse_time(_get(job, "status", "completionTime"))
    if completion is None:
        return human_duration(_aware(now) - start)
    return human_duration(completion - start)


def _job_cells(job: Obj, now: datetime) -> Cells:
    names, images = _layout_containers(_template_containers(job))
    return [
        _name(job),
        job_status(job),
        _job_completions(job),
        _job_duration(job, now),
        _age(job, now),
        names,
        images,
        format_label_selector(_get(job, "spec", "selector")),
    ]


def _cron_job_cells(cj: Obj, now: datetime) -> Cells:
    """printCronJob: schedule, zone, suspend (``<unset>`` when nil), active Jobs, last schedule."""
    template = _get(cj, "spec", "jobTemplate") or {}
    names, images = _layout_containers(_template_containers(template))
    last = _get(cj, "status", "lastScheduleTime")
    suspend = _get(cj, "spec", "suspend")
    zone = _get(cj, "spec", "timeZone")
    return [
        _name(cj),
        str(_get(cj, "spec", "schedule") or ""),
        "<none>" if zone is None else str(zone),
        "<unset>" if suspend is None else ("True" if suspend else "False"),
        len(_get(cj, "status", "active") or []),
        translate_timestamp_since(last, now) if last else "<none>",
        _age(cj, now),
        names,
        images,
        format_label_selector(_get(template, "spec", "selector")),
    ]


def _lease_cells(lease: Obj, now: datetime) -> Cells:
    return [_name(lease), _get(lease, "spec", "holderIdentity") or "", _age(lease, now)]


def _default_cells(obj: Obj, now: datetime) -> Cells:
    """rest.defaultTableConvertor: name and the creation timestamp in RFC 3339 (UTC)."""
    created = parse_time(_get(obj, "metadata", "creationTimestamp"))
    if created is None:
        created = datetime(1, 1, 1, tzinfo=UTC)  # Go's zero time
    return [_name(obj), created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")]


_CELLS: dict[tuple[str, str], Callable[[Obj, datetime], Cells]] = {
    ("", "Pod"): _pod_cells,
    ("", "Node"): _node_cells,
    ("", "Namespace"): _namespace_cells,
    ("", "Service"): _service_cells,
    ("", "Endpoints"): _endpoints_cells,
    ("", "ConfigMap"): _configmap_cells,
    ("", "Secret"): _secret_cells,
    ("", "Event"): _event_cells,
    ("", "ServiceAccount"): _service_account_cells,
    ("", "PersistentVolume"): _pv_cells,
    ("", "PersistentVolumeClaim"): _pvc_cells,
    ("apps", "Deployment"): _deployment_cells,
    ("apps", "ReplicaSet"): _replicaset_cells,
    ("apps", "StatefulSet"): _statefulset_cells,
    ("apps", "DaemonSet"): _daemonset_cells,
    ("batch", "Job"): _job_cells,
    ("batch", "CronJob"): _cron_job_cells,
    ("coordination.k8s.io", "Lease"): _lease_cells,
    ("discovery.k8s.io", "EndpointSlice"): _endpoint_slice_cells,
    ("networking.k8s.io", "Ingress"): _ingress_cells,
    ("networking.k8s.io", "NetworkPolicy"): _network_policy_cells,
    ("storage.k8s.io", "StorageClass"): _storage_class_cells,
    ("certificates.k8s.io", "CertificateSigningRequest"): _csr_cells,
    ("policy", "PodDisruptionBudget"): _pdb_cells,
    ("autoscaling", "HorizontalPodAutoscaler"): _hpa_cells,
    ("apiregistration.k8s.io", "APIService"): _apiservice_cells,
    ("scheduling.k8s.io", "PriorityClass"): _priority_class_cells,
}


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def row_cells(info: ResourceInfo, obj: Obj, now: datetime | None = None) -> list[Any]:
    """The cells of one object's row, in the order of :func:`column_definitions`."""
    now = _aware(now) if now is not None else datetime.now(UTC)
    if info.custom:
        return _custom_cells(info, obj, now)
    return _CELLS.get((info.group, info.kind), _default_cells)(obj, now)


def _row_object(info: ResourceInfo, obj: Obj, include_object: str) -> Obj | None:
    if include_object == INCLUDE_NONE:
        return None
    if include_object in (INCLUDE_METADATA, ""):
        return {
            "kind": "PartialObjectMetadata",
            "apiVersion": TABLE_API_VERSION,
            "metadata": copy.deepcopy(obj.get("metadata") or {}),
        }
    if include_object == INCLUDE_OBJECT:
        full = copy.deepcopy(obj)
        full.setdefault("apiVersion", info.api_version)
        full.setdefault("kind", info.kind)
        return full
    raise BadRequest(f"unrecognized includeObject value: {include_object!r}")


def _row(info: ResourceInfo, obj: Obj, include_object: str, now: datetime) -> Obj:
    row: Obj = {"cells": row_cells(info, obj, now)}
    if info.group == "" and info.kind == "Pod":
        conditions = _pod_conditions(obj)
        if conditions:
            row["conditions"] = conditions
    row_object = _row_object(info, obj, include_object)
    if row_object is not None:
        row["object"] = row_object
    return row


def validate_include_object(include_object: str) -> str:
    """Check a ``includeObject`` query value; an empty value means ``Metadata``."""
    if include_object not in (INCLUDE_NONE, INCLUDE_METADATA, INCLUDE_OBJECT, ""):
        raise BadRequest(
            f"Unable to convert to Table as requested: includeObject: Unsupported value: "
            f'"{include_object}": supported values: "None", "Metadata", "Object"'
        )
    return include_object or INCLUDE_METADATA


def table(
    info: ResourceInfo,
    objects: list[Obj],
    *,
    include_object: str = INCLUDE_METADATA,
    now: datetime | None = None,
    resource_version: str = "",
    continue_token: str = "",
    remaining_item_count: int | None = None,
    include_columns: bool = True,
) -> Obj:
    """A ``meta.k8s.io/v1`` Table of ``objects`` as the API server answers a list or a get.

    ``include_object`` follows ``metav1.TableOptions.IncludeObject``: ``Metadata`` (kubectl's
    default) puts a PartialObjectMetadata in every row, ``Object`` the whole object, ``None``
    nothing.  ``include_columns=False`` is the server's ``NoHeaders``: ``columnDefinitions`` is
    then null, as in every watch event after the first.
    """
    include_object = validate_include_object(include_object)
    now = _aware(now) if now is not None else datetime.now(UTC)
    metadata: Obj = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    if remaining_item_count is not None:
        metadata["remainingItemCount"] = remaining_item_count
    return {
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": metadata,
        "columnDefinitions": column_definitions(info) if include_columns else None,
        "rows": [_row(info, obj, include_object, now) for obj in objects],
    }


def table_for_watch_event(
    info: ResourceInfo,
    obj: Obj,
    include_object: str = INCLUDE_METADATA,
    now: datetime | None = None,
    *,
    include_columns: bool = True,
) -> Obj:
    """The one-row Table a watch event carries when the client asked for ``as=Table``.

    Kubernetes' watch encoder (``watchEmbeddedEncoder``) sends the column definitions only with
    the first event of a watch and sets ``NoHeaders`` for every later one, so the caller passes
    ``include_columns=False`` after the first event.  The table's resourceVersion is the
    object's.
    """
    return table(
        info,
        [obj],
        include_object=include_object,
        now=now,
        resource_version=str(_get(obj, "metadata", "resourceVersion") or ""),
        include_columns=include_columns,
    )


__all__ = [
    "INCLUDE_METADATA",
    "INCLUDE_NONE",
    "INCLUDE_OBJECT",
    "TABLE_API_VERSION",
    "access_modes_string",
    "column_definitions",
    "format_endpoints",
    "format_label_selector",
    "format_labels",
    "human_duration",
    "job_status",
    "label_selector_string",
    "node_roles",
    "node_status",
    "parse_time",
    "pod_status_summary",
    "row_cells",
    "service_external_ip",
    "service_ports",
    "table",
    "table_for_watch_event",
    "translate_timestamp_since",
    "validate_include_object",
]
