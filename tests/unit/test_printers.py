"""Server-side printing: Kubernetes' printers.go columns and cells, and HumanDuration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apimachinery import printers
from apimachinery.errors import BadRequest
from apimachinery.resources import BINDING, RESOURCES, by_kind

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def ago(**kw: float) -> str:
    """An RFC 3339 timestamp that long before NOW."""
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def info(api_version: str, kind: str) -> Any:
    found = by_kind(api_version, kind)
    assert found is not None
    return found


POD = info("v1", "Pod")


def cells(api_version: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Cells keyed by column name, so tests read like kubectl's output."""
    ri = info(api_version, kind)
    names = [c["name"] for c in printers.column_definitions(ri)]
    values = printers.row_cells(ri, obj, NOW)
    assert len(values) == len(names)
    return dict(zip(names, values, strict=True))


# --------------------------------------------------------------------------------------------
# duration.HumanDuration, cases from Kubernetes' duration_test.go
# --------------------------------------------------------------------------------------------

S = timedelta(seconds=1)
MS = timedelta(milliseconds=1)
M = timedelta(minutes=1)
H = timedelta(hours=1)
D = 24 * H
Y = 365 * D


@pytest.mark.parametrize(
    ("d", "want"),
    [
        (S, "1s"),
        (70 * S, "70s"),
        (190 * S, "3m10s"),
        (70 * M, "70m"),
        (47 * H, "47h"),
        (49 * H, "2d1h"),
        ((8 * 24 + 2) * H, "8d"),
        (367 * D, "367d"),
        ((365 * 2 * 24 + 25) * H, "2y1d"),
        ((365 * 8 * 24 + 2) * H, "8y"),
        # boundaries
        (-2 * S, "<invalid>"),
        (-2 * S + timedelta(microseconds=1), "0s"),
        (timedelta(0), "0s"),
        (S - MS, "0s"),
        (2 * M - MS, "119s"),
        (2 * M, "2m"),
        (2 * M + S, "2m1s"),
        (10 * M - MS, "9m59s"),
        (10 * M, "10m"),
        (10 * M + S, "10m"),
        (3 * H - MS, "179m"),
        (3 * H, "3h"),
        (3 * H + M, "3h1m"),
        (8 * H - MS, "7h59m"),
        (8 * H, "8h"),
        (8 * H + 59 * M, "8h"),
        (2 * D - MS, "47h"),
        (2 * D, "2d"),
        (2 * D + H, "2d1h"),
        (8 * D - MS, "7d23h"),
        (8 * D, "8d"),
        (8 * D + 23 * H, "8d"),
        (2 * Y - MS, "729d"),
        (2 * Y, "2y"),
        (2 * Y + 23 * H, "2y"),
        (2 * Y + 23 * H + 59 * M, "2y"),
        (2 * Y + 24 * H - MS, "2y"),
        (2 * Y + 24 * H, "2y1d"),
        (3 * Y, "3y"),
        (7 * Y, "7y"),
        (8 * Y - MS, "7y364d"),
        (8 * Y, "8y"),
        (8 * Y + 364 * D, "8y"),
        (9 * Y, "9y"),
    ],
)
def test_human_duration(d: timedelta, want: str) -> None:
    assert printers.human_duration(d) == want


def test_translate_timestamp_since() -> None:
    assert printers.translate_timestamp_since(None, NOW) == "<unknown>"
    assert printers.translate_timestamp_since("", NOW) == "<unknown>"
    assert printers.translate_timestamp_since(ago(seconds=5), NOW) == "5s"
    assert printers.translate_timestamp_since(ago(hours=3, minutes=15), NOW) == "3h15m"
    assert printers.translate_timestamp_since(ago(days=9), NOW) == "9d"
    # MicroTime with fractional seconds parses too
    assert printers.translate_timestamp_since("2024-06-01T11:57:00.123456Z", NOW) == "2m59s"


# --------------------------------------------------------------------------------------------
# Pods
# --------------------------------------------------------------------------------------------


def pod(
    *,
    phase: str = "Running",
    containers: int = 1,
    statuses: list[dict[str, Any]] | None = None,
    init_containers: list[dict[str, Any]] | None = None,
    init_statuses: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    **meta: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": ago(minutes=10), **meta},
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": f"c{i}", "image": "nginx"} for i in range(containers)],
        },
        "status": {"phase": phase, "conditions": conditions or []},
    }
    if statuses is not None:
        obj["status"]["containerStatuses"] = statuses
    if init_containers is not None:
        obj["spec"]["initContainers"] = init_containers
    if init_statuses is not None:
        obj["status"]["initContainerStatuses"] = init_statuses
    return obj


def running(name: str = "c0", ready: bool = True, restarts: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": ago(minutes=9)}},
    }


def waiting(
    reason: str, name: str = "c0", restarts: int = 0, last_finished: str | None = None
) -> dict[str, Any]:
    st: dict[str, Any] = {
        "name": name,
        "ready": False,
        "restartCount": restarts,
        "state": {"waiting": {"reason": reason}},
    }
    if last_finished:
        st["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": last_finished}}
    return st


def terminated(name: str = "c0", exit_code: int = 0, reason: str = "", signal: int = 0) -> dict[str, Any]:
    term: dict[str, Any] = {"exitCode": exit_code, "finishedAt": ago(minutes=1)}
    if reason:
        term["reason"] = reason
    if signal:
        term["signal"] = signal
    return {"name": name, "ready": False, "restartCount": 0, "state": {"terminated": term}}


READY = {"type": "Ready", "status": "True"}
NOT_READY = {"type": "Ready", "status": "False"}
INITIALIZED = {"type": "Initialized", "status": "True"}


def test_running_pod_row_and_wide_cells() -> None:
    p = pod(statuses=[running()], conditions=[INITIALIZED, READY])
    p["status"]["podIPs"] = [{"ip": "10.244.1.7"}]
    c = cells("v1", "Pod", p)
    assert c == {
        "Name": "web-0",
        "Ready": "1/1",
        "Status": "Running",
        "Restarts": "0",
        "Age": "10m",
        "IP": "10.244.1.7",
        "Node": "node-1",
        "Nominated Node": "<none>",
        "Readiness Gates": "<none>",
    }


def test_pod_ip_falls_back_to_pod_ip_and_none() -> None:
    p = pod(statuses=[running()])
    assert cells("v1", "Pod", p)["IP"] == "<none>"
    p["status"]["podIP"] = "10.0.0.9"
    assert cells("v1", "Pod", p)["IP"] == "10.0.0.9"


def test_crash_loop_back_off_with_restarts_and_last_restart_age() -> None:
    p = pod(phase="Running", statuses=[waiting("CrashLoopBackOff", restarts=5, last_finished=ago(minutes=3))])
    c = cells("v1", "Pod", p)
    assert (c["Ready"], c["Status"], c["Restarts"]) == ("0/1", "CrashLoopBackOff", "5 (3m ago)")


def test_restarts_without_termination_time_print_plain_count() -> None:
    p = pod(statuses=[running(restarts=2)])
    assert cells("v1", "Pod", p)["Restarts"] == "2"


@pytest.mark.parametrize(
    ("status", "want"),
    [
        (waiting("ContainerCreating"), "ContainerCreating"),
        (waiting("ErrImagePull"), "ErrImagePull"),
        (waiting("ImagePullBackOff"), "ImagePullBackOff"),
        (terminated(exit_code=1, reason="Error"), "Error"),
        (terminated(exit_code=137, reason="OOMKilled"), "OOMKilled"),
        (terminated(exit_code=137, signal=9), "Signal:9"),
        (terminated(exit_code=3), "ExitCode:3"),
    ],
)
def test_container_state_reasons(status: dict[str, Any], want: str) -> None:
    assert cells("v1", "Pod", pod(phase="Running", statuses=[status]))["Status"] == want


def test_pending_pod_without_statuses_shows_phase() -> None:
    assert cells("v1", "Pod", pod(phase="Pending"))["Status"] == "Pending"
    assert cells("v1", "Pod", pod(phase="Pending"))["Ready"] == "0/1"


def test_scheduling_gated() -> None:
    p = pod(
        phase="Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]
    )
    assert cells("v1", "Pod", p)["Status"] == "SchedulingGated"


def test_init_containers_progress() -> None:
    p = pod(
        phase="Pending",
        init_containers=[{"name": "i0"}, {"name": "i1"}],
        init_statuses=[terminated("i0", exit_code=0, reason="Completed"), running("i1", ready=False)],
        statuses=[waiting("PodInitializing")],
    )
    c = cells("v1", "Pod", p)
    assert (c["Status"], c["Ready"]) == ("Init:1/2", "0/1")


def test_init_container_waiting_pod_initializing_counts_as_progress() -> None:
    p = pod(
        phase="Pending",
        init_containers=[{"name": "i0"}],
        init_statuses=[waiting("PodInitializing", name="i0")],
    )
    assert cells("v1", "Pod", p)["Status"] == "Init:0/1"


def test_init_crash_loop_back_off_counts_init_restarts() -> None:
    p = pod(
        phase="Pending",
        init_containers=[{"name": "i0"}],
        init_statuses=[waiting("CrashLoopBackOff", name="i0", restarts=4, last_finished=ago(seconds=40))],
        statuses=[waiting("PodInitializing")],
    )
    c = cells("v1", "Pod", p)
    assert (c["Status"], c["Restarts"]) == ("Init:CrashLoopBackOff", "4 (40s ago)")


@pytest.mark.parametrize(
    ("status", "want"),
    [
        (terminated("i0", exit_code=2), "Init:ExitCode:2"),
        (terminated("i0", exit_code=137, signal=9), "Init:Signal:9"),
        (terminated("i0", exit_code=1, reason="Error"), "Init:Error"),
    ],
)
def test_failed_init_container(status: dict[str, Any], want: str) -> None:
    p = pod(phase="Pending", init_containers=[{"name": "i0"}], init_statuses=[status])
    assert cells("v1", "Pod", p)["Status"] == want


def test_sidecar_init_container_counts_in_ready() -> None:
    sidecar = running("proxy")
    sidecar["started"] = True
    p = pod(
        init_containers=[{"name": "proxy", "restartPolicy": "Always"}],
        init_statuses=[sidecar],
        statuses=[running()],
        conditions=[INITIALIZED, READY],
    )
    c = cells("v1", "Pod", p)
    assert (c["Ready"], c["Status"]) == ("2/2", "Running")


def test_terminating_and_node_lost() -> None:
    p = pod(statuses=[running()], deletionTimestamp=ago(seconds=3))
    assert cells("v1", "Pod", p)["Status"] == "Terminating"

    lost = pod(statuses=[running()])
    lost["status"]["reason"] = "NodeLost"
    # a running container does not override status.reason
    assert cells("v1", "Pod", lost)["Status"] == "NodeLost"
    lost["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert cells("v1", "Pod", lost)["Status"] == "Unknown"
    done = pod(phase="Succeeded", statuses=[terminated(reason="Completed")], deletionTimestamp=ago(seconds=1))
    done["status"]["reason"] = "NodeLost"
    assert cells("v1", "Pod", done)["Status"] == "Unknown"


def test_completed_pod_is_not_terminating_and_has_completed_condition() -> None:
    p = pod(phase="Succeeded", statuses=[terminated(reason="Completed")], deletionTimestamp=ago(seconds=1))
    assert cells("v1", "Pod", p)["Status"] == "Completed"
    assert cells("v1", "Pod", p)["Ready"] == "0/1"
    row = printers.table(POD, [p], now=NOW)["rows"][0]
    assert row["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]
    failed = pod(phase="Failed", statuses=[terminated(exit_code=1, reason="Error")])
    assert printers.table(POD, [failed], now=NOW)["rows"][0]["conditions"][0]["reason"] == "Failed"
    assert "conditions" not in printers.table(POD, [pod()], now=NOW)["rows"][0]


def test_completed_container_next_to_running_one() -> None:
    # containers are examined last first, so c0's "Completed" is the final reason
    statuses = [terminated("c0", reason="Completed"), running("c1")]
    ready_pod = pod(containers=2, statuses=statuses, conditions=[READY])
    assert cells("v1", "Pod", ready_pod)["Status"] == "Running"
    assert cells("v1", "Pod", ready_pod)["Ready"] == "1/2"
    not_ready_pod = pod(containers=2, statuses=statuses, conditions=[NOT_READY])
    assert cells("v1", "Pod", not_ready_pod)["Status"] == "NotReady"


def test_readiness_gates_and_nominated_node() -> None:
    p = pod(
        statuses=[running()],
        conditions=[
            READY,
            {"type": "example.com/lb", "status": "True"},
            {"type": "example.com/dns", "status": "False"},
        ],
    )
    p["spec"]["readinessGates"] = [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]
    p["status"]["nominatedNodeName"] = "node-2"
    c = cells("v1", "Pod", p)
    assert (c["Readiness Gates"], c["Nominated Node"]) == ("1/2", "node-2")


# --------------------------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------------------------


def node(
    conditions: list[dict[str, Any]], labels: dict[str, str], unschedulable: bool = False
) -> dict[str, Any]:
    return {
        "metadata": {"name": "cp-1", "labels": labels, "creationTimestamp": ago(days=2, hours=3)},
        "spec": {"unschedulable": unschedulable},
        "status": {
            "conditions": conditions,
            "addresses": [
                {"type": "Hostname", "address": "cp-1"},
                {"type": "InternalIP", "address": "172.18.0.2"},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.32.0-minik",
                "osImage": "Debian GNU/Linux 12",
                "kernelVersion": "",
            },
        },
    }


def test_node_not_ready_scheduling_disabled_control_plane() -> None:
    n = node(
        [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "Unknown"}],
        {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "cp-1"},
        unschedulable=True,
    )
    assert cells("v1", "Node", n) == {
        "Name": "cp-1",
        "Status": "NotReady,SchedulingDisabled",
        "Roles": "control-plane",
        "Age": "2d3h",
        "Version": "v1.32.0-minik",
        "Internal-IP": "172.18.0.2",
        "External-IP": "<none>",
        "OS-Image": "Debian GNU/Linux 12",
        "Kernel-Version": "<unknown>",
        "Container-Runtime": "<unknown>",
    }


def test_node_ready_unknown_and_roles() -> None:
    ready = node([{"type": "Ready", "status": "True"}], {})
    assert cells("v1", "Node", ready)["Status"] == "Ready"
    assert cells("v1", "Node", ready)["Roles"] == "<none>"
    assert cells("v1", "Node", node([], {}))["Status"] == "Unknown"
    labels = {
        "node-role.kubernetes.io/worker": "",
        "node-role.kubernetes.io/": "",
        "kubernetes.io/role": "edge",
    }
    assert printers.node_roles(labels) == ["edge", "worker"]


# --------------------------------------------------------------------------------------------
# Services, endpoints, ingress
# --------------------------------------------------------------------------------------------


def service(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "creationTimestamp": ago(hours=1)},
        "spec": spec,
        "status": status or {},
    }


def test_node_port_service() -> None:
    svc = service(
        {
            "type": "NodePort",
            "clusterIP": "10.96.0.15",
            "clusterIPs": ["10.96.0.15"],
            "selector": {"tier": "fe", "app": "web"},
            "ports": [
                {"port": 80, "nodePort": 30080, "protocol": "TCP"},
                {"port": 443, "protocol": "TCP"},
            ],
        }
    )
    assert cells("v1", "Service", svc) == {
        "Name": "web",
        "Type": "NodePort",
        "Cluster-IP": "10.96.0.15",
        "External-IP": "<none>",
        "Port(s)": "80:30080/TCP,443/TCP",
        "Age": "60m",
        "Selector": "app=web,tier=fe",
    }


def test_service_external_ips() -> None:
    lb = {"type": "LoadBalancer", "clusterIPs": ["10.96.0.2"], "ports": [{"port": 53, "protocol": "UDP"}]}
    assert cells("v1", "Service", service(lb))["External-IP"] == "<pending>"
    status = {
        "loadBalancer": {"ingress": [{"ip": "172.18.0.3"}, {"ip": "172.18.0.2"}, {"hostname": "lb.example"}]}
    }
    assert cells("v1", "Service", service(lb, status))["External-IP"] == "172.18.0.2,172.18.0.3,lb.example"
    assert cells("v1", "Service", service(lb))["Port(s)"] == "53/UDP"
    with_ext = dict(lb, externalIPs=["1.2.3.4"])
    assert (
        cells("v1", "Service", service(with_ext, status))["External-IP"]
        == "172.18.0.2,172.18.0.3,lb.example,1.2.3.4"
    )
    ext = service({"type": "ExternalName", "externalName": "db.example.com"})
    c = cells("v1", "Service", ext)
    assert (c["External-IP"], c["Cluster-IP"], c["Port(s)"], c["Selector"]) == (
        "db.example.com",
        "<none>",
        "<none>",
        "<none>",
    )
    cluster = service({"type": "ClusterIP", "clusterIPs": ["None"], "externalIPs": ["5.6.7.8", "5.6.7.9"]})
    assert cells("v1", "Service", cluster)["External-IP"] == "5.6.7.8,5.6.7.9"
    assert cells("v1", "Service", cluster)["Cluster-IP"] == "None"


def test_endpoints_formatting() -> None:
    ep = {
        "metadata": {"name": "web", "creationTimestamp": ago(seconds=30)},
        "subsets": [
            {
                "addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)],
                "ports": [{"port": 80, "protocol": "TCP"}],
            }
        ],
    }
    c = cells("v1", "Endpoints", ep)
    assert c["Endpoints"] == "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."
    assert c["Age"] == "30s"
    two = {"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]}
    assert printers.format_endpoints(two) == "10.0.0.1:80,10.0.0.2:80"
    assert printers.format_endpoints({"subsets": []}) == "<none>"
    headless = {"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]}
    assert printers.format_endpoints(headless) == "10.0.0.1"
    v6 = {"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]}]}
    assert printers.format_endpoints(v6) == "[fd00::1]:8080"
    # two ports on three addresses: six endpoints, three shown
    multi = {
        "subsets": [
            {"addresses": [{"ip": "a"}, {"ip": "b"}, {"ip": "c"}], "ports": [{"port": 1}, {"port": 2}]}
        ]
    }
    assert printers.format_endpoints(multi) == "a:1,b:1,c:1 + 3 more..."


def test_ingress() -> None:
    ing = {
        "metadata": {"name": "site", "creationTimestamp": ago(days=1)},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": h} for h in ("a.example", "b.example", "c.example", "d.example")],
            "tls": [{"hosts": ["a.example"]}],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "172.18.0.2"}]}},
    }
    assert cells("networking.k8s.io/v1", "Ingress", ing) == {
        "Name": "site",
        "Class": "nginx",
        "Hosts": "a.example,b.example,c.example + 1 more...",
        "Address": "172.18.0.2",
        "Ports": "80, 443",
        "Age": "24h",
    }
    bare = {"metadata": {"name": "x"}, "spec": {"rules": [{}]}}
    c = cells("networking.k8s.io/v1", "Ingress", bare)
    assert (c["Class"], c["Hosts"], c["Address"], c["Ports"], c["Age"]) == (
        "<none>",
        "*",
        "",
        "80",
        "<unknown>",
    )


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------

TEMPLATE = {
    "spec": {
        "containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}],
        "nodeSelector": {"disk": "ssd"},
    }
}


def test_deployment_ready_and_wide() -> None:
    d = {
        "metadata": {"name": "web", "creationTimestamp": ago(minutes=5)},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "canary"]}],
            },
            "template": TEMPLATE,
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert cells("apps/v1", "Deployment", d) == {
        "Name": "web",
        "Ready": "2/3",
        "Up-to-date": 3,
        "Available": 2,
        "Age": "5m",
        "Containers": "web,log",
        "Images": "nginx:1.27,busybox",
        "Selector": "app=web,env in (canary,prod)",
    }


def test_deployment_defaults_replicas_and_zero_status() -> None:
    d = {"metadata": {"name": "w"}, "spec": {"template": {"spec": {"containers": []}}}}
    c = cells("apps/v1", "Deployment", d)
    assert (c["Ready"], c["Up-to-date"], c["Available"], c["Selector"]) == ("0/1", 0, 0, "")


def test_replicaset_statefulset_daemonset() -> None:
    rs = {
        "metadata": {"name": "web-5d8f"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
        "status": {"replicas": 3, "readyReplicas": 1},
    }
    c = cells("apps/v1", "ReplicaSet", rs)
    assert (c["Desired"], c["Current"], c["Ready"], c["Selector"]) == (3, 3, 1, "app=web")

    sts = {
        "metadata": {"name": "db"},
        "spec": {"replicas": 2, "template": TEMPLATE},
        "status": {"readyReplicas": 1},
    }
    assert cells("apps/v1", "StatefulSet", sts) == {
        "Name": "db",
        "Ready": "1/2",
        "Age": "<unknown>",
        "Containers": "web,log",
        "Images": "nginx:1.27,busybox",
    }

    ds = {
        "metadata": {"name": "proxy"},
        "spec": {
            "selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
            "template": TEMPLATE,
        },
        "status": {
            "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3,
            "numberReady": 2,
            "updatedNumberScheduled": 3,
            "numberAvailable": 2,
        },
    }
    c = cells("apps/v1", "DaemonSet", ds)
    assert [c[k] for k in ("Desired", "Current", "Ready", "Up-to-date", "Available")] == [3, 3, 2, 3, 2]
    assert (c["Node Selector"], c["Selector"]) == ("disk=ssd", "app")


def test_job_status_completions_duration() -> None:
    job = {
        "metadata": {"name": "pi", "creationTimestamp": ago(minutes=20)},
        "spec": {"completions": 1, "template": TEMPLATE, "selector": {"matchLabels": {"job-name": "pi"}}},
        "status": {
            "succeeded": 1,
            "startTime": ago(minutes=19),
            "completionTime": ago(minutes=16, seconds=30),
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    }
    c = cells("batch/v1", "Job", job)
    assert (c["Status"], c["Completions"], c["Duration"], c["Age"], c["Selector"]) == (
        "Complete",
        "1/1",
        "2m30s",
        "20m",
        "job-name=pi",
    )
    running_job = {
        "metadata": {"name": "work"},
        "spec": {"parallelism": 3, "template": TEMPLATE},
        "status": {"startTime": ago(minutes=4, seconds=5), "succeeded": 1},
    }
    c = cells("batch/v1", "Job", running_job)
    assert (c["Status"], c["Completions"], c["Duration"]) == ("Running", "1/1 of 3", "4m5s")
    pending = {"metadata": {"name": "p", "deletionTimestamp": ago(seconds=1)}, "spec": {}, "status": {}}
    c = cells("batch/v1", "Job", pending)
    assert (c["Status"], c["Completions"], c["Duration"]) == ("Terminating", "0/1", "")
    failed = {
        "status": {
            "conditions": [{"type": "Complete", "status": "False"}, {"type": "Failed", "status": "True"}]
        }
    }
    assert printers.job_status(failed) == "Failed"
    assert (
        printers.job_status({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}})
        == "Suspended"
    )


# --------------------------------------------------------------------------------------------
# Config, storage, events, leases
# --------------------------------------------------------------------------------------------


def test_simple_core_kinds() -> None:
    cm = {
        "metadata": {"name": "cfg", "creationTimestamp": ago(days=9)},
        "data": {"a": "1", "b": "2"},
        "binaryData": {"c": "AA=="},
    }
    assert cells("v1", "ConfigMap", cm) == {"Name": "cfg", "Data": 3, "Age": "9d"}
    secret = {
        "metadata": {"name": "tls"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "", "tls.key": ""},
    }
    assert cells("v1", "Secret", secret) == {
        "Name": "tls",
        "Type": "kubernetes.io/tls",
        "Data": 2,
        "Age": "<unknown>",
    }
    sa = {"metadata": {"name": "default", "creationTimestamp": ago(seconds=1)}, "secrets": [{"name": "t"}]}
    assert cells("v1", "ServiceAccount", sa) == {"Name": "default", "Secrets": 1, "Age": "1s"}
    ns = {"metadata": {"name": "kube-system"}, "status": {"phase": "Terminating"}}
    assert cells("v1", "Namespace", ns)["Status"] == "Terminating"
    lease = {"metadata": {"name": "node-1"}, "spec": {"holderIdentity": "node-1"}}
    assert cells("coordination.k8s.io/v1", "Lease", lease)["Holder"] == "node-1"
    assert cells("coordination.k8s.io/v1", "Lease", {"metadata": {"name": "x"}})["Holder"] == ""


def test_persistent_volumes_and_claims() -> None:
    pv = {
        "metadata": {"name": "pv-1", "creationTimestamp": ago(hours=5)},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": "default", "name": "data"},
            "storageClassName": "local",
        },
        "status": {"phase": "Bound"},
    }
    assert cells("v1", "PersistentVolume", pv) == {
        "Name": "pv-1",
        "Capacity": "10Gi",
        "Access Modes": "RWO,RWX",
        "Reclaim Policy": "Retain",
        "Status": "Bound",
        "Claim": "default/data",
        "StorageClass": "local",
        "VolumeAttributesClass": "<unset>",
        "Reason": "",
        "Age": "5h",
        "VolumeMode": "<unset>",
    }
    bound = {
        "metadata": {"name": "data"},
        "spec": {"volumeName": "pv-1", "storageClassName": "local", "volumeMode": "Filesystem"},
        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"}},
    }
    c = cells("v1", "PersistentVolumeClaim", bound)
    assert [c[k] for k in ("Status", "Volume", "Capacity", "Access Modes", "StorageClass", "VolumeMode")] == [
        "Bound",
        "pv-1",
        "10Gi",
        "RWO",
        "local",
        "Filesystem",
    ]
    pending = {
        "metadata": {"name": "p", "deletionTimestamp": ago(seconds=2)},
        "spec": {},
        "status": {"phase": "Pending"},
    }
    c = cells("v1", "PersistentVolumeClaim", pending)
    assert [c[k] for k in ("Status", "Volume", "Capacity", "Access Modes")] == ["Terminating", "", "", ""]


def test_storage_class_default_marker() -> None:
    sc = {
        "metadata": {
            "name": "standard",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "minik.io/hostpath",
    }
    assert cells("storage.k8s.io/v1", "StorageClass", sc) == {
        "Name": "standard (default)",
        "Provisioner": "minik.io/hostpath",
        "ReclaimPolicy": "Delete",
        "VolumeBindingMode": "Immediate",
        "AllowVolumeExpansion": False,
        "Age": "<unknown>",
    }


def test_event_cells() -> None:
    ev = {
        "metadata": {"name": "web-0.17d", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{web}"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container\n",
        "type": "Warning",
        "firstTimestamp": ago(minutes=30),
        "lastTimestamp": ago(seconds=42),
        "count": 7,
        "source": {"component": "kubelet", "host": "node-1"},
    }
    assert cells("v1", "Event", ev) == {
        "Last Seen": "42s",
        "Type": "Warning",
        "Reason": "BackOff",
        "Object": "pod/web-0",
        "Subobject": "spec.containers{web}",
        "Source": "kubelet, node-1",
        "Message": "Back-off restarting failed container",
        "First Seen": "30m",
        "Count": 7,
        "Name": "web-0.17d",
    }
    new_style = {
        "metadata": {"name": "e2"},
        "involvedObject": {"kind": "Node"},
        "eventTime": "2024-06-01T11:59:50.000000Z",
        "reportingController": "minik-scheduler",
    }
    c = cells("v1", "Event", new_style)
    assert (c["Last Seen"], c["First Seen"], c["Count"], c["Object"], c["Source"]) == (
        "10s",
        "10s",
        1,
        "node",
        "minik-scheduler",
    )
    series = dict(new_style, series={"count": 4, "lastObservedTime": "2024-06-01T11:59:58.000000Z"})
    c = cells("v1", "Event", series)
    assert (c["Last Seen"], c["Count"]) == ("2s", 4)


# --------------------------------------------------------------------------------------------
# Tables, columns, watch events
# --------------------------------------------------------------------------------------------


def test_pod_column_definitions() -> None:
    cols = printers.column_definitions(POD)
    assert [c["name"] for c in cols] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
        "IP",
        "Node",
        "Nominated Node",
        "Readiness Gates",
    ]
    assert [c["priority"] for c in cols] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert cols[0]["format"] == "name" and cols[1]["format"] == ""
    assert all(c["type"] == "string" and c["description"] for c in cols)
    rs_cols = printers.column_definitions(info("apps/v1", "ReplicaSet"))
    assert [c["type"] for c in rs_cols[:4]] == ["string", "integer", "integer", "integer"]


@pytest.mark.parametrize("ri", RESOURCES, ids=lambda r: r.kind)
def test_every_kind_has_one_cell_per_column(ri: Any) -> None:
    cols = printers.column_definitions(ri)
    assert [c for c in cols if c["format"] == "name"], "every table has a name column"
    assert len(printers.row_cells(ri, {"metadata": {"name": "x"}}, NOW)) == len(cols)
    assert len(printers.row_cells(ri, {}, NOW)) == len(cols)


def test_default_table_for_kinds_without_printer() -> None:
    cols = printers.column_definitions(BINDING)
    assert [(c["name"], c["type"]) for c in cols] == [("Name", "string"), ("Created At", "date")]
    obj = {"metadata": {"name": "b", "creationTimestamp": "2024-05-01T10:00:00Z"}}
    assert printers.row_cells(BINDING, obj, NOW) == ["b", "2024-05-01T10:00:00Z"]


def test_table_with_partial_object_metadata() -> None:
    p = pod(statuses=[running()], uid="u-1", resourceVersion="42", labels={"app": "web"})
    t = printers.table(POD, [p], now=NOW, resource_version="99", continue_token="tok")
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "99", "continue": "tok"}
    assert len(t["columnDefinitions"]) == 9
    row = t["rows"][0]
    assert row["cells"][:3] == ["web-0", "1/1", "Running"]
    assert row["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": p["metadata"],
    }
    row["object"]["metadata"]["name"] = "changed"
    assert p["metadata"]["name"] == "web-0", "the row holds a copy"


def test_table_include_object_variants() -> None:
    p = pod(statuses=[running()])
    del p["apiVersion"], p["kind"]
    full = printers.table(POD, [p], include_object="Object", now=NOW)["rows"][0]["object"]
    assert (full["apiVersion"], full["kind"], full["spec"]["nodeName"]) == ("v1", "Pod", "node-1")
    none_row = printers.table(POD, [p], include_object="None", now=NOW)["rows"][0]
    assert "object" not in none_row
    assert (
        printers.table(POD, [p], include_object="", now=NOW)["rows"][0]["object"]["kind"]
        == "PartialObjectMetadata"
    )
    with pytest.raises(BadRequest):
        printers.table(POD, [p], include_object="Everything", now=NOW)
    empty = printers.table(POD, [], now=NOW)
    assert empty["rows"] == [] and empty["metadata"] == {"resourceVersion": ""}


def test_table_for_watch_event() -> None:
    p = pod(statuses=[running()], resourceVersion="1234")
    first = printers.table_for_watch_event(POD, p, "Metadata", NOW)
    assert first["metadata"]["resourceVersion"] == "1234"
    assert [c["name"] for c in first["columnDefinitions"]][:2] == ["Name", "Ready"]
    assert len(first["rows"]) == 1 and first["rows"][0]["cells"][0] == "web-0"
    later = printers.table_for_watch_event(POD, p, "Metadata", NOW, include_columns=False)
    assert later["columnDefinitions"] is None
    assert later["rows"] == first["rows"]


def test_label_selector_helpers() -> None:
    assert printers.format_label_selector(None) == "<none>"
    assert printers.format_label_selector({}) == "<none>"
    sel = {
        "matchLabels": {"b": "2"},
        "matchExpressions": [
            {"key": "a", "operator": "NotIn", "values": ["y", "x"]},
            {"key": "c", "operator": "DoesNotExist"},
        ],
    }
    assert printers.format_label_selector(sel) == "a notin (x,y),b=2,!c"
    assert (
        printers.format_label_selector({"matchExpressions": [{"key": "a", "operator": "Near"}]}) == "<error>"
    )
    assert printers.format_labels({}) == "<none>"
    assert printers.access_modes_string(["ReadWriteOncePod", "ReadOnlyMany"]) == "ROX,RWOP"
