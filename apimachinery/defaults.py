"""Defaulting: fill in the fields Kubernetes fills in when an object is created or updated.

This follows Kubernetes' ``SetDefaults_*`` functions (``pkg/apis/{core,apps,batch,storage}/v1/defaults.go``)
and, for Pods and Namespaces, the few values the API server's admission plugins and registry
strategies add on create and that every real object carries (``serviceAccountName: default``,
``priority: 0``, ``spec.finalizers: [kubernetes]``).  The API server calls :func:`apply_defaults`
on every create and update before validation, so it must be idempotent.

A Pod *template* (inside a Deployment, Job, ...) receives the PodSpec and container defaults but
not the Pod-only ones (``enableServiceLinks``, requests copied from limits, the service account),
exactly as in Kubernetes.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from apimachinery.quantity import parse_quantity
from apimachinery.resources import ResourceInfo

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 30
DEFAULT_SCHEDULER_NAME = "default-scheduler"
DEFAULT_SERVICE_ACCOUNT = "default"
DEFAULT_VOLUME_MODE = 0o644  # 420: configMap, secret, downwardAPI and projected volumes
DEFAULT_CLIENT_IP_AFFINITY_SECONDS = 10800
LABEL_METADATA_NAME = "kubernetes.io/metadata.name"

# Job labels (batch/v1): the selector Kubernetes generates for a Job unless manualSelector is true.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_JOB_NAME_LABEL = "job-name"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"


def _sub(obj: Obj, key: str) -> Obj:
    """``obj[key]`` as a dict, created when missing (or when it is not a dict)."""
    value = obj.get(key)
    if not isinstance(value, dict):
        value = {}
        obj[key] = value
    return value


def _set_missing(obj: Obj, **values: Any) -> None:
    """Set each of ``values`` that ``obj`` lacks (absent or null)."""
    for key, value in values.items():
        if obj.get(key) is None:
            obj[key] = value


def _set_empty(obj: Obj, **values: Any) -> None:
    """Set each of ``values`` that ``obj`` lacks or has empty (``""``, 0, false)."""
    for key, value in values.items():
        if not obj.get(key):
            obj[key] = value


def _default_protocols(ports: Any) -> None:
    for port in _dicts(ports):
        _set_empty(port, protocol="TCP")


def _as_dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[Obj]:
    """The dict items of a list field, ignoring anything malformed (validation reports it)."""
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, dict)]


# ---------------------------------------------------------------------------------------------
# Containers and pod specs
# ---------------------------------------------------------------------------------------------


def image_tag(image: str) -> str:
    """The tag Kubernetes' ``parsers.ParseImageName`` reports: ``latest`` when neither a tag nor a
    digest is given, ``""`` for a digest reference."""
    if "@" in image:
        return ""
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return "latest"


def default_pull_policy(image: str) -> str:
    """``Always`` for ``:latest`` (or no tag), ``IfNotPresent`` otherwise (tags and digests)."""
    return "Always" if image and image_tag(image) == "latest" else "IfNotPresent"


def _default_http_get(action: Obj) -> None:
    action.setdefault("path", "/")
    _set_empty(action, scheme="HTTP")


def _default_handler(handler: Any) -> None:
    if isinstance(handler, dict) and isinstance(handler.get("httpGet"), dict):
        _default_http_get(handler["httpGet"])


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    _set_empty(probe, timeoutSeconds=1, periodSeconds=10, successThreshold=1, failureThreshold=3)
    _default_handler(probe)


def _default_env(env: Any) -> None:
    for var in _dicts(env):
        value_from = var.get("valueFrom")
        if isinstance(value_from, dict) and isinstance(value_from.get("fieldRef"), dict):
            value_from["fieldRef"].setdefault("apiVersion", "v1")


def default_container(container: Obj) -> None:
    """``SetDefaults_Container`` plus the defaults of what a container holds (ports, probes, env)."""
    _set_empty(
        container,
        imagePullPolicy=default_pull_policy(str(container.get("image") or "")),
        terminationMessagePath="/dev/termination-log",
        terminationMessagePolicy="File",
    )
    _sub(container, "resources")
    _default_protocols(container.get("ports"))
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(container.get(key))
    lifecycle = container.get("lifecycle")
    if isinstance(lifecycle, dict):
        _default_handler(lifecycle.get("postStart"))
        _default_handler(lifecycle.get("preStop"))
    _default_env(container.get("env"))


_VOLUME_SOURCES = (
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
)


def default_volume(volume: Obj) -> None:
    """``SetDefaults_Volume``: no source means ``emptyDir: {}``; file modes default to 0644 (420)."""
    if not any(volume.get(src) is not None for src in _VOLUME_SOURCES):
        volume["emptyDir"] = {}
    for src in ("configMap", "secret", "downwardAPI", "projected"):
        source = volume.get(src)
        if isinstance(source, dict) and source.get("defaultMode") is None:
            source["defaultMode"] = DEFAULT_VOLUME_MODE
    host_path = volume.get("hostPath")
    if isinstance(host_path, dict) and host_path.get("type") is None:
        host_path["type"] = ""
    downward = volume.get("downwardAPI")
    if isinstance(downward, dict):
        for item in _dicts(downward.get("items")):
            if isinstance(item.get("fieldRef"), dict):
                item["fieldRef"].setdefault("apiVersion", "v1")
    projected = volume.get("projected")
    if isinstance(projected, dict):
        for source in _dicts(projected.get("sources")):
            token = source.get("serviceAccountToken")
            if isinstance(token, dict) and token.get("expirationSeconds") is None:
                token["expirationSeconds"] = 3600


def default_pod_spec(spec: Obj) -> None:
    """``SetDefaults_PodSpec`` and the defaults of containers and volumes inside it."""
    _set_empty(spec, dnsPolicy="ClusterFirst", restartPolicy="Always")
    _sub(spec, "securityContext")
    _set_missing(spec, terminationGracePeriodSeconds=DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS)
    _set_empty(spec, schedulerName=DEFAULT_SCHEDULER_NAME)
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in _dicts(spec.get(key)):
            default_container(container)
    for volume in _dicts(spec.get("volumes")):
        default_volume(volume)


def default_pod_template(template: Obj, *, default_restart_policy: bool = True) -> None:
    """Defaults of a ``PodTemplateSpec`` (only the spec gets any)."""
    spec = _sub(template, "spec")
    restart = spec.get("restartPolicy")
    default_pod_spec(spec)
    if not default_restart_policy and not restart:
        spec.pop("restartPolicy", None)


def _requests_from_limits(containers: Any) -> None:
    for container in _dicts(containers):
        resources = container.get("resources")
        if not isinstance(resources, dict) or not isinstance(resources.get("limits"), dict):
            continue
        requests = resources.get("requests")
        if not isinstance(requests, dict):
            requests = resources["requests"] = {}
        for name, value in resources["limits"].items():
            requests.setdefault(name, value)


def _host_network_ports(containers: Any) -> None:
    for container in _dicts(containers):
        for port in _dicts(container.get("ports")):
            if not port.get("hostPort"):
                port["hostPort"] = port.get("containerPort")


def default_pod(obj: Obj) -> None:
    """``SetDefaults_Pod`` + ``SetDefaults_PodSpec``, and what admission adds on every Pod.

    Admission adds ``serviceAccountName``/``serviceAccount`` (ServiceAccount plugin) and
    ``priority``/``preemptionPolicy`` (Priority plugin, no PriorityClass given).
    """
    spec = _sub(obj, "spec")
    default_pod_spec(spec)
    # Only on Pods, never templates: requests default to limits.
    _requests_from_limits(spec.get("containers"))
    _requests_from_limits(spec.get("initContainers"))
    _set_missing(spec, enableServiceLinks=True)
    if spec.get("hostNetwork"):
        _host_network_ports(spec.get("containers"))
        _host_network_ports(spec.get("initContainers"))
    # serviceAccount is the deprecated alias of serviceAccountName; the two are kept equal.
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
    spec["serviceAccountName"] = account
    spec["serviceAccount"] = account
    if spec.get("priority") is None and not spec.get("priorityClassName"):
        spec["priority"] = 0
    _set_empty(spec, preemptionPolicy="PreemptLowerPriority")
    # The Pod strategy starts every Pod Pending, with its QoS class computed once.
    _set_empty(_sub(obj, "status"), phase="Pending", qosClass=qos_class(spec))


def _positive_quantity(value: Any) -> Decimal | None:
    """A resource quantity above zero, else None (zero, malformed or missing count as unset)."""
    try:
        quantity = parse_quantity(str(value))
    except ValueError:
        return None
    return quantity if quantity > 0 else None


def qos_class(spec: Obj) -> str:
    """The Pod's QoS class as Kubernetes' ``GetPodQOS`` computes it, quantities compared as
    quantities (``"1"`` equals ``"1000m"``): positive cpu and memory requests and limits are summed
    over the containers (a missing request defaults to its limit); BestEffort when there are none,
    Guaranteed when every container has cpu and memory limits and the summed requests equal the
    summed limits, else Burstable."""
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    guaranteed = True
    for container in _dicts(spec.get("containers")) + _dicts(spec.get("initContainers")):
        resources = _as_dict(container.get("resources"))
        given_limits, given_requests = _as_dict(resources.get("limits")), _as_dict(resources.get("requests"))
        for name in ("cpu", "memory"):
            limit = _positive_quantity(given_limits.get(name))
            request = limit if given_requests.get(name) is None else _positive_quantity(given_requests[name])
            if request is not None:
                requests[name] = requests.get(name, 0) + request
            if limit is not None:
                limits[name] = limits.get(name, 0) + limit
            else:
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and len(requests) == len(limits) and all(limits.get(n) == q for n, q in requests.items()):
        return "Guaranteed"
    return "Burstable"


# ---------------------------------------------------------------------------------------------
# Workloads (apps/v1, batch/v1)
# ---------------------------------------------------------------------------------------------


def _default_update_strategy(spec: Obj, key: str, **rolling: Any) -> None:
    """A workload's ``strategy``/``updateStrategy``: ``RollingUpdate`` unless given, with the
    ``rollingUpdate`` values it lacks."""
    strategy = _sub(spec, key)
    _set_empty(strategy, type="RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        _set_missing(_sub(strategy, "rollingUpdate"), **rolling)


def default_deployment(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _set_missing(spec, replicas=1)
    _default_update_strategy(spec, "strategy", maxUnavailable="25%", maxSurge="25%")
    _set_missing(spec, revisionHistoryLimit=10, progressDeadlineSeconds=600)
    default_pod_template(_sub(spec, "template"))


def default_replica_set(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _set_missing(spec, replicas=1)
    default_pod_template(_sub(spec, "template"))


def default_stateful_set(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _set_missing(spec, replicas=1)
    _set_empty(spec, podManagementPolicy="OrderedReady")
    _default_update_strategy(spec, "updateStrategy", partition=0)
    _set_missing(spec, revisionHistoryLimit=10)
    policy = _sub(spec, "persistentVolumeClaimRetentionPolicy")
    policy.setdefault("whenDeleted", "Retain")
    policy.setdefault("whenScaled", "Retain")
    for claim in _dicts(spec.get("volumeClaimTemplates")):
        _set_missing(_sub(claim, "spec"), volumeMode="Filesystem")
    default_pod_template(_sub(spec, "template"))


def default_daemon_set(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _default_update_strategy(spec, "updateStrategy", maxUnavailable=1, maxSurge=0)
    _set_missing(spec, revisionHistoryLimit=10)
    default_pod_template(_sub(spec, "template"))


def default_job(obj: Obj) -> None:
    """``SetDefaults_Job``.  The template's restartPolicy is left as given: a Job must say
    ``OnFailure`` or ``Never`` itself, and validation reports it when it does not."""
    spec = _sub(obj, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    _set_missing(
        spec,
        parallelism=1,
        backoffLimit=2147483647 if spec.get("backoffLimitPerIndex") is not None else 6,
    )
    template = _sub(spec, "template")
    template_labels = (template.get("metadata") or {}).get("labels")
    metadata = _sub(obj, "metadata")
    if template_labels and not metadata.get("labels"):
        metadata["labels"] = dict(template_labels)
    _set_empty(spec, completionMode="NonIndexed")
    _set_missing(spec, suspend=False)
    _set_empty(spec, podReplacementPolicy="Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    default_pod_template(template, default_restart_policy=False)


def default_cron_job(obj: Obj) -> None:
    """``SetDefaults_CronJob``; the job template's pod template gets the pod defaults."""
    spec = _sub(obj, "spec")
    _set_empty(spec, concurrencyPolicy="Allow")
    _set_missing(spec, suspend=False, successfulJobsHistoryLimit=3, failedJobsHistoryLimit=1)
    job_spec = _sub(_sub(spec, "jobTemplate"), "spec")
    default_pod_template(_sub(job_spec, "template"), default_restart_policy=False)


def generate_job_selector(obj: Obj) -> None:
    """Give a Job the selector and template labels Kubernetes generates from its UID.

    Done on create (after ``metadata.uid`` is set, see :func:`apply_defaults`) unless
    ``spec.manualSelector`` is true or the selector already names a controller uid; it makes a
    Job's pods match only this Job.
    """
    spec = _sub(obj, "spec")
    metadata = _as_dict(obj.get("metadata"))
    uid, name = metadata.get("uid"), metadata.get("name")
    match_labels = _as_dict(_as_dict(spec.get("selector")).get("matchLabels"))
    if spec.get("manualSelector") is True or not uid or match_labels.get(CONTROLLER_UID_LABEL):
        return
    template_meta = _sub(_sub(spec, "template"), "metadata")
    labels = _sub(template_meta, "labels")
    for key in (LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL):
        if key not in labels and name:
            labels[key] = name
    for key in (LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL):
        labels.setdefault(key, uid)
    _sub(_sub(spec, "selector"), "matchLabels")[CONTROLLER_UID_LABEL] = uid


# ---------------------------------------------------------------------------------------------
# Core kinds
# ---------------------------------------------------------------------------------------------


def default_service(obj: Obj) -> None:
    """``SetDefaults_Service`` plus the single-stack IPv4 family the registry records."""
    spec = _sub(obj, "spec")
    _set_empty(spec, sessionAffinity="None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        config = spec.get("sessionAffinityConfig") or {}
        client_ip = config.get("clientIP") or {}
        if client_ip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {
                "clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_AFFINITY_SECONDS}
            }
    _set_empty(spec, type="ClusterIP")
    service_type = spec["type"]
    _default_protocols(spec.get("ports"))
    for port in _dicts(spec.get("ports")):
        if port.get("targetPort") in (None, 0, "") and port.get("port") is not None:
            port["targetPort"] = port["port"]
    externally_accessible = service_type in ("NodePort", "LoadBalancer") or bool(spec.get("externalIPs"))
    if externally_accessible and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and service_type in (
        "ClusterIP",
        "NodePort",
        "LoadBalancer",
    ):
        spec["internalTrafficPolicy"] = "Cluster"
    if service_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    if service_type != "ExternalName":
        _set_empty(spec, ipFamilies=["IPv4"], ipFamilyPolicy="SingleStack")


def default_secret(obj: Obj) -> None:
    """``SetDefaults_Secret``; also folds write-only ``stringData`` into base64 ``data``, as the
    v1-to-internal conversion does (``stringData`` wins over ``data`` and is never stored)."""
    _set_empty(obj, type="Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = obj.get("data")
        if not isinstance(data, dict):
            data = obj["data"] = {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def default_namespace(obj: Obj) -> None:
    """Namespaces get the ``kubernetes.io/metadata.name`` label, the ``kubernetes`` finalizer and
    phase ``Active``."""
    metadata = _sub(obj, "metadata")
    name = metadata.get("name")
    if name:
        labels = metadata.get("labels")
        if not isinstance(labels, dict):
            labels = metadata["labels"] = {}
        labels[LABEL_METADATA_NAME] = name
    _set_missing(_sub(obj, "spec"), finalizers=["kubernetes"])
    _set_empty(_sub(obj, "status"), phase="Active")


def default_node(obj: Obj) -> None:
    """``SetDefaults_NodeStatus``: allocatable defaults to capacity."""
    status = obj.get("status")
    if (
        isinstance(status, dict)
        and status.get("allocatable") is None
        and isinstance(status.get("capacity"), dict)
    ):
        status["allocatable"] = dict(status["capacity"])


def default_endpoints(obj: Obj) -> None:
    for subset in _dicts(obj.get("subsets")):
        _default_protocols(subset.get("ports"))


def default_endpoint_slice(obj: Obj) -> None:
    """discovery/v1: each port's name defaults to "" and its protocol to TCP."""
    for port in _dicts(obj.get("ports")):
        _set_missing(port, name="")
    _default_protocols(obj.get("ports"))


def default_persistent_volume(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _set_empty(spec, persistentVolumeReclaimPolicy="Retain")
    default_persistent_volume_claim(obj)


def default_persistent_volume_claim(obj: Obj) -> None:
    """Also the volume mode and phase of a PersistentVolume."""
    _set_missing(_sub(obj, "spec"), volumeMode="Filesystem")
    _set_empty(_sub(obj, "status"), phase="Pending")


def default_storage_class(obj: Obj) -> None:
    _set_empty(obj, reclaimPolicy="Delete", volumeBindingMode="Immediate")


def default_ingress(obj: Obj) -> None:
    """networking/v1 has no defaults for Ingress; kept for symmetry."""


def default_network_policy(obj: Obj) -> None:
    """networking/v1 ``SetDefaults_NetworkPolicy``: each port's protocol TCP, and ``policyTypes``,
    when empty, ``Ingress`` plus ``Egress`` if the policy has egress rules."""
    spec = _sub(obj, "spec")
    for key in ("ingress", "egress"):
        for rule in _dicts(spec.get(key)):
            _default_protocols(rule.get("ports"))
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


HPA_SCALE_UP_DEFAULTS: Obj = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ],
}
HPA_SCALE_DOWN_DEFAULTS: Obj = {
    "stabilizationWindowSeconds": 300,
    "selectPolicy": "Max",
    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
}


def default_horizontal_pod_autoscaler(hpa: Obj) -> None:
    """``autoscaling/v2`` ``SetDefaults_HorizontalPodAutoscaler``: ``minReplicas`` 1, CPU at 80 %
    when no metric is given, and a ``behavior`` that is given filled in (scale up: no stabilization,
    4 pods or 100 % per 15 s; scale down: 100 % per 15 s, its window left to the controller's 300 s)."""
    spec = _sub(hpa, "spec")
    _set_missing(spec, minReplicas=1)
    if not spec.get("metrics"):
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
            }
        ]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        for key, defaults in (("scaleUp", HPA_SCALE_UP_DEFAULTS), ("scaleDown", HPA_SCALE_DOWN_DEFAULTS)):
            rules = _sub(behavior, key)
            _set_missing(rules, selectPolicy=defaults["selectPolicy"])
            if key == "scaleUp":  # scale down: unset means the controller's 300 s, as in Kubernetes
                _set_missing(rules, stabilizationWindowSeconds=defaults["stabilizationWindowSeconds"])
            if not rules.get("policies"):
                rules["policies"] = [dict(p) for p in defaults["policies"]]


_DEFAULTERS: dict[tuple[str, str], Callable[[Obj], None]] = {
    ("", "Pod"): default_pod,
    ("", "Service"): default_service,
    ("", "Secret"): default_secret,
    ("", "Namespace"): default_namespace,
    ("", "Node"): default_node,
    ("", "Endpoints"): default_endpoints,
    ("", "PersistentVolume"): default_persistent_volume,
    ("", "PersistentVolumeClaim"): default_persistent_volume_claim,
    ("apps", "Deployment"): default_deployment,
    ("apps", "ReplicaSet"): default_replica_set,
    ("apps", "StatefulSet"): default_stateful_set,
    ("apps", "DaemonSet"): default_daemon_set,
    ("batch", "Job"): default_job,
    ("batch", "CronJob"): default_cron_job,
    ("autoscaling", "HorizontalPodAutoscaler"): default_horizontal_pod_autoscaler,
    ("storage.k8s.io", "StorageClass"): default_storage_class,
    ("networking.k8s.io", "Ingress"): default_ingress,
    ("networking.k8s.io", "NetworkPolicy"): default_network_policy,
    ("discovery.k8s.io", "EndpointSlice"): default_endpoint_slice,
    ("scheduling.k8s.io", "PriorityClass"): lambda pc: _set_empty(
        pc, preemptionPolicy="PreemptLowerPriority"
    ),
}


def apply_defaults(info: ResourceInfo, obj: dict[str, Any], *, create: bool = False) -> None:
    """Fill in ``obj``'s defaults in place, as Kubernetes does for ``info``'s kind.

    Kinds without defaults (ConfigMap, Event, Lease, ServiceAccount) are left untouched.  With
    ``create`` (a new object whose ``metadata.uid`` is set) a Job also gets its generated selector.
    """
    defaulter = _DEFAULTERS.get((info.group, info.kind))
    if defaulter is not None:
        defaulter(obj)
    if create and (info.group, info.kind) == ("batch", "Job"):
        generate_job_selector(obj)
