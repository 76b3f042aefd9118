"""The scheduler's fast path decides exactly as the plain rendering of the plugins.

Random clusters (labels, zones, taints, cordons, readiness, host ports, owners, Services,
namespaces, pod affinity and anti-affinity, spread constraints, terminating pods) are built and
then changed the way the scheduler's cache changes them -- pods assumed, forgotten, replaced --
and every decision of :func:`scheduler.fastpath.schedule` must equal that of the plain rendering
:func:`tests.unit.scheduler_reference.schedule_reference`: the same node, the same scores for
every node, or the same failure message and per-node statuses.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from scheduler import fastpath
from scheduler.cache import SchedulerCache
from scheduler.framework import NodeInfo, PodInfo, Snapshot
from tests.unit.scheduler_reference import schedule_reference

ZONES = ["z1", "z2", "z3"]
APPS = ["web", "db", "cache"]
NAMESPACES = ["default", "team-a", "team-b"]


def random_node(rng: random.Random, i: int) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": f"n{i}"}
    if rng.random() < 0.8:
        labels["topology.kubernetes.io/zone"] = rng.choice(ZONES)
    if rng.random() < 0.5:
        labels["disk"] = rng.choice(["ssd", "hdd"])
    if rng.random() < 0.3:
        labels["gen"] = str(rng.randint(1, 5))
    taints: list[dict[str, Any]] = []
    if rng.random() < 0.15:
        taints.append({"key": "dedicated", "value": rng.choice(["gpu", "db"]), "effect": "NoSchedule"})
    if rng.random() < 0.25:
        taints.append({"key": "spot", "effect": "PreferNoSchedule"})
    ready = rng.choices(["True", "False", "Unknown", None], [0.85, 0.05, 0.05, 0.05])[0]
    cpu = rng.choice(["2", "4", "8"])
    mem = rng.choice(["4Gi", "8Gi", "16Gi"])
    allocatable = {"cpu": cpu, "memory": mem, "pods": str(rng.choice([3, 10, 110]))}
    if rng.random() < 0.1:
        del allocatable["memory"]
    return {
        "metadata": {"name": f"n{i}", "labels": labels},
        "spec": {"taints": taints, "unschedulable": rng.random() < 0.05},
        "status": {
            "allocatable": allocatable,
            "conditions": [] if ready is None else [{"type": "Ready", "status": ready}],
        },
    }


def random_term(rng: random.Random) -> dict[str, Any]:
    term: dict[str, Any] = {
        "labelSelector": {"matchLabels": {"app": rng.choice(APPS)}},
        "topologyKey": rng.choice(["kubernetes.io/hostname", "topology.kubernetes.io/zone"]),
    }
    if rng.random() < 0.2:
        term["namespaceSelector"] = {"matchLabels": {"tier": "prod"}}
    elif rng.random() < 0.2:
        term["namespaces"] = rng.sample(NAMESPACES, 2)
    return term


def random_pod(rng: random.Random, i: int, node_name: str | None = None) -> dict[str, Any]:
    app = rng.choice(APPS)
    ns = rng.choice(NAMESPACES)
    container: dict[str, Any] = {"name": "c", "image": "x"}
    requests: dict[str, str] = {}
    if rng.random() < 0.8:
        requests["cpu"] = rng.choice(["100m", "250m", "500m", "1", "3"])
    if rng.random() < 0.7:
        requests["memory"] = rng.choice(["64Mi", "256Mi", "1Gi", "6Gi"])
    if rng.random() < 0.05:
        requests["example.com/gpu"] = "1"
    if requests:
        container["resources"] = {"requests": requests}
    if rng.random() < 0.1:
        container["ports"] = [
            {
                "containerPort": 80,
                "hostPort": rng.choice([8080, 9090]),
                "protocol": rng.choice(["TCP", "UDP"]),
            }
        ]
    spec: dict[str, Any] = {"containers": [container]}
    meta: dict[str, Any] = {"name": f"p{i}", "namespace": ns, "uid": f"uid-{i}", "labels": {"app": app}}
    if rng.random() < 0.6:
        owner = f"rs-{app}-{rng.randint(0, 1)}"
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}]
    if rng.random() < 0.1:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    affinity: dict[str, Any] = {}
    if rng.random() < 0.15:
        affinity["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [random_term(rng)]}
    if rng.random() < 0.1:
        affinity["podAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [random_term(rng)]}
    if rng.random() < 0.15:
        affinity.setdefault("podAffinity", {})["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {"weight": rng.randint(1, 100), "podAffinityTerm": random_term(rng)}
        ]
    if rng.random() < 0.15:
        affinity.setdefault("podAntiAffinity", {})["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {"weight": rng.randint(1, 100), "podAffinityTerm": random_term(rng)}
        ]
    if rng.random() < 0.15:
        affinity["nodeAffinity"] = {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "preference": {
                        "matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]
                    },
                }
            ]
        }
    if rng.random() < 0.1:
        affinity.setdefault("nodeAffinity", {})["requiredDuringSchedulingIgnoredDuringExecution"] = {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["2"]}]}]
        }
    if affinity:
        spec["affinity"] = affinity
    if rng.random() < 0.1:
        spec["nodeSelector"] = {"disk": rng.choice(["ssd", "hdd"])}
    if rng.random() < 0.2:
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": rng.randint(1, 3),
                "topologyKey": rng.choice(["kubernetes.io/hostname", "topology.kubernetes.io/zone"]),
                "whenUnsatisfiable": rng.choice(["DoNotSchedule", "ScheduleAnyway"]),
                "labelSelector": {"matchLabels": {"app": app}},
                **({"minDomains": 3} if rng.random() < 0.2 else {}),
                **({"nodeTaintsPolicy": "Honor"} if rng.random() < 0.2 else {}),
            }
        ]
    if rng.random() < 0.15:
        spec["tolerations"] = [
            rng.choice(
                [
                    {"key": "dedicated", "operator": "Exists"},
                    {"key": "spot", "operator": "Exists"},
                    {"operator": "Exists"},
                ]
            )
        ]
    if node_name:
        spec["nodeName"] = node_name
    elif rng.random() < 0.03:
        spec["nodeName"] = f"n{rng.randint(0, 12)}"
    return {"metadata": meta, "spec": spec}


def random_cluster(rng: random.Random) -> tuple[SchedulerCache, int]:
    cache = SchedulerCache()
    nodes = rng.randint(1, 12)
    for i in range(nodes):
        cache.add_node(random_node(rng, i))
    for ns in NAMESPACES:
        labels = {"tier": "prod"} if rng.random() < 0.5 else {}
        cache.set_namespace({"metadata": {"name": ns, "labels": labels}})
    services = [
        {"metadata": {"name": f"svc-{app}", "namespace": ns}, "spec": {"selector": {"app": app}}}
        for app in APPS
        for ns in NAMESPACES
        if rng.random() < 0.3
    ]
    cache.set_services(services)
    count = rng.randint(0, 40)
    for i in range(count):
        cache.set_pod(random_pod(rng, i, node_name=f"n{rng.randrange(nodes)}"))
    return cache, count


def assert_same(pi: PodInfo, snap: Snapshot, seed: int) -> fastpath.Result:
    fast = fastpath.schedule(pi, snap, random.Random(seed))
    plain = schedule_reference(pi, snap, random.Random(seed))
    assert fast == plain, (pi.key, pi.pod)
    return fast


def check_indexes(node: NodeInfo) -> None:
    """The per-node aggregates equal what walking the node's pods gives."""
    ports: dict[Any, int] = {}
    for p in node.pods.values():
        for port in p.host_ports:
            ports[port] = ports.get(port, 0) + 1
    assert dict(node.used_ports) == ports
    assert set(node.affinity_pods) == {k for k, p in node.pods.items() if p.has_pod_affinity}
    assert {ns: set(g) for ns, g in node.by_namespace.items()} == {
        ns: {k for k, p in node.pods.items() if p.namespace == ns}
        for ns in {p.namespace for p in node.pods.values()}
    }
    owners = {(p.namespace, p.owner_uid) for p in node.pods.values() if p.owner_uid}
    assert {g: set(m) for g, m in node.by_owner.items()} == {
        g: {k for k, p in node.pods.items() if (p.namespace, p.owner_uid) == g} for g in owners
    }


@pytest.mark.parametrize("seed", range(60))
def test_fast_path_decides_as_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    cache, next_id = random_cluster(rng)
    snap = cache.snapshot
    for step in range(25):
        pi = PodInfo.of(random_pod(rng, next_id))
        next_id += 1
        result = assert_same(pi, snap, seed * 1000 + step)
        if isinstance(result, fastpath.Placement):
            cache.assume(pi, result.node_name)
        roll = rng.random()
        if roll < 0.15 and cache.assumed:
            cache.forget(rng.choice(sorted(cache.assumed)))
        elif roll < 0.25 and cache.assumed:
            # the informer confirms a binding with changed labels
            key = rng.choice(sorted(cache.assumed))
            node_name = cache.assumed[key]
            pod = next(p.pod for n in snap.nodes.values() for k, p in n.pods.items() if k == key)
            relabelled = {**pod, "metadata": {**pod["metadata"], "labels": {"app": rng.choice(APPS)}}}
            cache.set_pod({**relabelled, "spec": {**pod["spec"], "nodeName": node_name}})
    for node in snap.nodes.values():
        check_indexes(node)


def test_fast_path_on_a_hundred_identical_nodes() -> None:
    """The benchmark's shape: many equal nodes, so ties (and the random pick) are everywhere."""
    cache = SchedulerCache()
    for i in range(100):
        cache.add_node(
            {
                "metadata": {"name": f"n{i:03d}", "labels": {"kubernetes.io/hostname": f"n{i:03d}"}},
                "status": {
                    "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
    for i in range(300):
        meta: dict[str, Any] = {"name": f"p{i}", "namespace": "default", "labels": {"app": "web"}}
        if i % 2:
            meta["ownerReferences"] = [
                {"kind": "ReplicaSet", "name": "rs", "uid": "rs-1", "controller": True}
            ]
        pod = {
            "metadata": meta,
            "spec": {
                "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]
            },
        }
        pi = PodInfo.of(pod)
        result = assert_same(pi, cache.snapshot, i)
        assert isinstance(result, fastpath.Placement)
        cache.assume(pi, result.node_name)
