"""The scheduling decision, table-driven: every filter, every score, the failure message."""

from __future__ import annotations

import random
from typing import Any

import pytest

from scheduler import fastpath as fp
from scheduler import framework as fw
from scheduler.fastpath import PodState, schedule
from scheduler.framework import PodInfo, Snapshot

CP_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def node(
    name: str,
    cpu: str = "4",
    mem: str = "8Gi",
    pods: str = "110",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, Any]] | None = None,
    ready: str | None = "True",
    unschedulable: bool = False,
) -> dict[str, Any]:
    conditions = [] if ready is None else [{"type": "Ready", "status": ready}]
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": pods}, "conditions": conditions},
    }


def pod(
    name: str = "p",
    cpu: str | None = None,
    mem: str | None = None,
    ns: str = "default",
    labels: dict[str, str] | None = None,
    node_name: str | None = None,
    owner: str | None = None,
    ports: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v}
    container: dict[str, Any] = {"name": "c", "image": "x"}
    if requests:
        container["resources"] = {"requests": requests}
    if ports:
        container["ports"] = ports
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": "rs", "uid": owner, "controller": True}]
    body: dict[str, Any] = {"metadata": meta, "spec": {"containers": [container], **spec}}
    if node_name:
        body["spec"]["nodeName"] = node_name
    return body


def state(p: dict[str, Any], snap: Snapshot) -> PodState:
    return PodState(PodInfo.of(p), snap)


def feasible(p: dict[str, Any], snap: Snapshot) -> list[str]:
    nodes, _ = fp.run_filters(state(p, snap), snap)
    return [n.name for n in nodes]


def message(p: dict[str, Any], snap: Snapshot) -> str:
    result = schedule(p, snap, random.Random(0))
    assert isinstance(result, fw.Unschedulable), result
    return result.message


# --------------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"containers": [{"resources": {"requests": {"cpu": "100m"}}}]}, {"cpu": 100}),
        (
            {
                "containers": [
                    {"resources": {"requests": {"cpu": "1"}}},
                    {"resources": {"requests": {"cpu": "500m"}}},
                ]
            },
            {"cpu": 1500},
        ),
        (
            {"containers": [{"resources": {"limits": {"cpu": "2"}}}]},
            {"cpu": 2000},
        ),  # request defaults to limit
        (  # an init container larger than the app containers dominates
            {
                "containers": [{"resources": {"requests": {"cpu": "1"}}}],
                "initContainers": [{"resources": {"requests": {"cpu": "3"}}}],
            },
            {"cpu": 3000},
        ),
        (  # a sidecar (restartable init container) adds to the app containers
            {
                "containers": [{"resources": {"requests": {"cpu": "1"}}}],
                "initContainers": [{"restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}}],
            },
            {"cpu": 1500},
        ),
        (
            {"containers": [{"resources": {"requests": {"memory": "1Ki"}}}], "overhead": {"memory": "1Ki"}},
            {"memory": 2048 * 1000},
        ),
        ({"containers": [{}]}, {}),
    ],
)
def test_pod_requests(spec: dict[str, Any], expected: dict[str, int]) -> None:
    assert fw.pod_requests({"spec": spec}) == expected


def test_nonzero_requests_default_for_scoring() -> None:
    assert fw.pod_nonzero_requests({"spec": {"containers": [{}]}}) == (100, 200 * 1024 * 1024 * 1000)


# --------------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "nodes", "expected"),
    [
        (pod(cpu="1"), [node("a", cpu="1"), node("b", cpu="500m")], ["a"]),
        (pod(mem="9Gi"), [node("a"), node("b", mem="10Gi")], ["b"]),
        (pod(), [node("a", pods="0"), node("b")], ["b"]),
        (
            pod(containers=[{"name": "c", "resources": {"requests": {"example.com/gpu": "1"}}}]),
            [
                node("a"),
                {
                    **node("b"),
                    "status": {
                        **node("b")["status"],
                        "allocatable": {"cpu": "1", "example.com/gpu": "2", "pods": "5"},
                    },
                },
            ],
            ["b"],
        ),
    ],
)
def test_node_resources_fit(p: dict[str, Any], nodes: list[dict[str, Any]], expected: list[str]) -> None:
    assert feasible(p, Snapshot.build(nodes)) == expected


def test_resources_count_bound_and_init_pods() -> None:
    snap = Snapshot.build([node("a", cpu="2"), node("b", cpu="2")], [pod("x", cpu="1500m", node_name="a")])
    assert feasible(pod(cpu="1"), snap) == ["b"]
    # finished pods do not hold resources (the cache skips them; build() counts what it is given)
    info = snap.nodes["a"]
    assert info.requested["cpu"] == 1500
    info.remove_pod("default/x")
    assert feasible(pod(cpu="1"), snap) == ["a", "b"]


@pytest.mark.parametrize(
    ("tolerations", "unschedulable", "ok"),
    [
        ([], True, False),
        (
            [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}],
            True,
            True,
        ),
        ([{"operator": "Exists"}], True, True),
        ([], False, True),
    ],
)
def test_node_unschedulable(tolerations: list[dict[str, Any]], unschedulable: bool, ok: bool) -> None:
    snap = Snapshot.build([node("a", unschedulable=unschedulable)])
    assert feasible(pod(tolerations=tolerations), snap) == (["a"] if ok else [])


def test_cordoned_node_message() -> None:
    snap = Snapshot.build([node("a", unschedulable=True), node("b", cpu="0")])
    assert message(pod(cpu="1"), snap).startswith(
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) were unschedulable."
    )


def test_node_name() -> None:
    snap = Snapshot.build([node("a"), node("b")])
    assert feasible(pod(node_name="b"), snap) == ["b"]


TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("taint", "tolerations", "ok"),
    [
        (TAINT, [], False),
        (TAINT, [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}], True),
        (TAINT, [{"key": "dedicated", "value": "gpu"}], True),  # empty effect matches every effect
        (TAINT, [{"key": "dedicated", "operator": "Equal", "value": "cpu"}], False),
        (TAINT, [{"key": "dedicated", "operator": "Exists"}], True),
        (TAINT, [{"operator": "Exists"}], True),  # empty key + Exists tolerates everything
        (TAINT, [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}], False),
        ({**TAINT, "effect": "NoExecute"}, [], False),
        (
            {**TAINT, "effect": "NoExecute"},
            [{"key": "dedicated", "operator": "Exists", "tolerationSeconds": 30}],
            True,
        ),
        ({**TAINT, "effect": "PreferNoSchedule"}, [], True),  # only scores
        (TAINT, [{"key": "other", "operator": "Exists"}], False),
    ],
)
def test_taint_toleration(taint: dict[str, Any], tolerations: list[dict[str, Any]], ok: bool) -> None:
    snap = Snapshot.build([node("a", taints=[taint])])
    assert feasible(pod(tolerations=tolerations), snap) == (["a"] if ok else [])


@pytest.mark.parametrize(
    ("ready", "taints", "tolerations", "reason"),
    [
        ("False", [], [], "{node.kubernetes.io/not-ready: }"),
        (None, [], [], "{node.kubernetes.io/not-ready: }"),
        ("Unknown", [], [], "{node.kubernetes.io/unreachable: }"),
        # the lifecycle controller's NoExecute taint plus DefaultTolerationSeconds still filter
        (
            "False",
            [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}],
            [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            ],
            "{node.kubernetes.io/not-ready: }",
        ),
        ("False", [], [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}], None),
        ("True", [], [], None),
    ],
)
def test_node_readiness(
    ready: str | None, taints: list[Any], tolerations: list[Any], reason: str | None
) -> None:
    snap = Snapshot.build([node("a", ready=ready, taints=taints)])
    if reason is None:
        assert feasible(pod(tolerations=tolerations), snap) == ["a"]
    else:
        assert f"1 node(s) had untolerated taint {reason}." in message(pod(tolerations=tolerations), snap)


def _affinity(*terms: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}
    }


def _expr(key: str, op: str, *values: str) -> dict[str, Any]:
    e: dict[str, Any] = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return e


AFF_NODES = [
    node("a", labels={"zone": "z1", "gen": "3"}),
    node("b", labels={"zone": "z2", "gen": "5"}),
    node("c", labels={}),
]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"nodeSelector": {"zone": "z1"}}, ["a"]),
        ({"nodeSelector": {"zone": "z1", "gen": "5"}}, []),
        ({"affinity": _affinity({"matchExpressions": [_expr("zone", "In", "z1", "z2")]})}, ["a", "b"]),
        ({"affinity": _affinity({"matchExpressions": [_expr("zone", "NotIn", "z1")]})}, ["b", "c"]),
        ({"affinity": _affinity({"matchExpressions": [_expr("zone", "Exists")]})}, ["a", "b"]),
        ({"affinity": _affinity({"matchExpressions": [_expr("zone", "DoesNotExist")]})}, ["c"]),
        ({"affinity": _affinity({"matchExpressions": [_expr("gen", "Gt", "4")]})}, ["b"]),
        ({"affinity": _affinity({"matchExpressions": [_expr("gen", "Lt", "4")]})}, ["a"]),
        ({"affinity": _affinity({"matchExpressions": [_expr("gen", "Gt", "x")]})}, []),
        ({"affinity": _affinity({"matchFields": [_expr("metadata.name", "In", "c")]})}, ["c"]),
        ({"affinity": _affinity({"matchFields": [_expr("metadata.name", "NotIn", "c")]})}, ["a", "b"]),
        (  # terms are ORed, expressions ANDed
            {
                "affinity": _affinity(
                    {"matchExpressions": [_expr("zone", "In", "z1"), _expr("gen", "In", "5")]},
                    {"matchFields": [_expr("metadata.name", "In", "c")]},
                )
            },
            ["c"],
        ),
        ({"affinity": _affinity({})}, []),  # an empty term matches nothing
        (  # nodeSelector and affinity must both hold
            {
                "nodeSelector": {"zone": "z2"},
                "affinity": _affinity({"matchExpressions": [_expr("gen", "Lt", "4")]}),
            },
            [],
        ),
    ],
)
def test_node_affinity(spec: dict[str, Any], expected: list[str]) -> None:
    assert feasible(pod(**spec), Snapshot.build(AFF_NODES)) == expected


@pytest.mark.parametrize(
    ("existing", "wanted", "ok"),
    [
        ({"hostPort": 80, "containerPort": 80}, {"hostPort": 80, "containerPort": 8080}, False),
        ({"hostPort": 80, "containerPort": 80}, {"hostPort": 81, "containerPort": 80}, True),
        ({"hostPort": 53, "protocol": "UDP"}, {"hostPort": 53, "protocol": "TCP"}, True),
        ({"hostPort": 80, "hostIP": "127.0.0.1"}, {"hostPort": 80, "hostIP": "127.0.0.2"}, True),
        ({"hostPort": 80, "hostIP": "127.0.0.1"}, {"hostPort": 80}, False),  # wildcard conflicts
        ({"containerPort": 80}, {"containerPort": 80}, True),  # no hostPort, no conflict
    ],
)
def test_node_ports(existing: dict[str, Any], wanted: dict[str, Any], ok: bool) -> None:
    snap = Snapshot.build([node("a")], [pod("x", node_name="a", ports=[existing])])
    assert feasible(pod(ports=[wanted]), snap) == (["a"] if ok else [])
    if not ok:
        assert "1 node(s) didn't have free ports for the requested pod ports." in message(
            pod(ports=[wanted]), snap
        )


# -- inter-pod affinity ------------------------------------------------------------------------------

ZONED = [
    node("a", labels={"zone": "z1"}),
    node("b", labels={"zone": "z1"}),
    node("c", labels={"zone": "z2"}),
    node("d", labels={}),
]


def _term(labels: dict[str, str], key: str = "zone", **extra: Any) -> dict[str, Any]:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key, **extra}


def _pod_aff(kind: str, *terms: dict[str, Any]) -> dict[str, Any]:
    return {kind: {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}}


@pytest.mark.parametrize(
    ("existing", "incoming", "expected"),
    [
        # affinity: to the zone of a db pod
        (
            [pod("db", labels={"app": "db"}, node_name="a")],
            pod(affinity=_pod_aff("podAffinity", _term({"app": "db"}))),
            ["a", "b"],
        ),
        # affinity by hostname
        (
            [pod("db", labels={"app": "db"}, node_name="c")],
            pod(affinity=_pod_aff("podAffinity", _term({"app": "db"}, "kubernetes.io/hostname"))),
            ["c"],
        ),
        # no matching pod anywhere, and the pod does not match itself: nowhere
        ([], pod(affinity=_pod_aff("podAffinity", _term({"app": "db"}))), []),
        # the first pod of a self-affine group goes anywhere with the topology key
        (
            [],
            pod(labels={"app": "db"}, affinity=_pod_aff("podAffinity", _term({"app": "db"}))),
            ["a", "b", "c"],
        ),
        # the matching pod is in another namespace: not counted by default
        (
            [pod("db", ns="other", labels={"app": "db"}, node_name="a")],
            pod(affinity=_pod_aff("podAffinity", _term({"app": "db"}))),
            [],
        ),
        # ... but counted when the term names that namespace, or selects all namespaces
        (
            [pod("db", ns="other", labels={"app": "db"}, node_name="a")],
            pod(affinity=_pod_aff("podAffinity", _term({"app": "db"}, namespaces=["other"]))),
            ["a", "b"],
        ),
        (
            [pod("db", ns="other", labels={"app": "db"}, node_name="c")],
            pod(affinity=_pod_aff("podAffinity", _term({"app": "db"}, namespaceSelector={}))),
            ["c"],
        ),
        (
            [pod("db", ns="other", labels={"app": "db"}, node_name="c")],
            pod(
                affinity=_pod_aff(
                    "podAffinity", _term({"app": "db"}, namespaceSelector={"matchLabels": {"team": "x"}})
                )
            ),
            ["c"],
        ),
        # anti-affinity: not in the zone of a web pod (nodes without the key pass)
        (
            [pod("w", labels={"app": "web"}, node_name="a")],
            pod(affinity=_pod_aff("podAntiAffinity", _term({"app": "web"}))),
            ["c", "d"],
        ),
        # an existing pod's anti-affinity keeps the incoming pod out of its zone
        (
            [
                pod(
                    "w",
                    labels={"app": "web"},
                    node_name="c",
                    affinity=_pod_aff("podAntiAffinity", _term({"app": "web"})),
                )
            ],
            pod(labels={"app": "web"}),
            ["a", "b", "d"],
        ),
    ],
)
def test_inter_pod_affinity(
    existing: list[dict[str, Any]], incoming: dict[str, Any], expected: list[str]
) -> None:
    namespaces: list[dict[str, Any]] = [
        {"metadata": {"name": "other", "labels": {"team": "x"}}},
        {"metadata": {"name": "default"}},
    ]
    assert feasible(incoming, Snapshot.build(ZONED, existing, namespaces)) == expected


def test_inter_pod_affinity_messages() -> None:
    existing = [
        pod(
            "w",
            labels={"app": "web"},
            node_name="c",
            affinity=_pod_aff("podAntiAffinity", _term({"app": "web"})),
        )
    ]
    snap = Snapshot.build(ZONED, existing)
    msg = message(
        pod(
            labels={"app": "web"},
            affinity=_pod_aff("podAntiAffinity", _term({"app": "web"}, "kubernetes.io/hostname")),
            nodeSelector={"zone": "z2"},
        ),
        snap,
    )
    assert msg.startswith(
        "0/4 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules, "
        "3 node(s) didn't match Pod's node affinity/selector."
    )
    msg = message(pod(affinity=_pod_aff("podAffinity", _term({"app": "nope"}))), snap)
    assert msg.startswith("0/4 nodes are available: 4 node(s) didn't match pod affinity rules.")
    assert msg.endswith("preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.")


# -- topology spread -----------------------------------------------------------------------------------


def _spread(
    max_skew: int = 1, key: str = "zone", when: str = "DoNotSchedule", **extra: Any
) -> dict[str, Any]:
    return {
        "maxSkew": max_skew,
        "topologyKey": key,
        "whenUnsatisfiable": when,
        "labelSelector": {"matchLabels": {"app": "web"}},
        **extra,
    }


def _web(name: str, node_name: str) -> dict[str, Any]:
    return pod(name, labels={"app": "web"}, node_name=node_name)


@pytest.mark.parametrize(
    ("existing", "constraint", "extra_spec", "expected"),
    [
        ([_web("1", "a")], _spread(), {}, ["c"]),  # z1 has 1, z2 has 0: only z2 keeps skew <= 1
        ([_web("1", "a"), _web("2", "c")], _spread(), {}, ["a", "b", "c"]),
        ([_web("1", "a"), _web("2", "b")], _spread(2), {}, ["c"]),
        ([_web("1", "a")], _spread(2), {}, ["a", "b", "c"]),
        # minDomains 3 with only 2 zones: the global minimum counts as 0
        ([_web("1", "c")], _spread(1, minDomains=3), {}, ["a", "b"]),
        # nodeAffinityPolicy Honor: z2 is not eligible, so z1 is the only domain
        ([_web("1", "a")], _spread(), {"nodeSelector": {"zone": "z1"}}, ["a", "b"]),
        # hostname spreading
        ([_web("1", "a")], _spread(key="kubernetes.io/hostname"), {}, ["b", "c", "d"]),
        # ScheduleAnyway never filters
        ([_web("1", "a"), _web("2", "b")], _spread(when="ScheduleAnyway"), {}, ["a", "b", "c", "d"]),
    ],
)
def test_topology_spread_filter(
    existing: list[dict[str, Any]],
    constraint: dict[str, Any],
    extra_spec: dict[str, Any],
    expected: list[str],
) -> None:
    incoming = pod(labels={"app": "web"}, topologySpreadConstraints=[constraint], **extra_spec)
    assert feasible(incoming, Snapshot.build(ZONED, existing)) == expected


def test_topology_spread_missing_label_message() -> None:
    incoming = pod(labels={"app": "web"}, topologySpreadConstraints=[_spread()])
    msg = message(incoming, Snapshot.build([node("d"), node("e", labels={"zone": "z1"}, pods="0")]))
    assert msg.startswith(
        "0/2 nodes are available: 1 Too many pods, "
        "1 node(s) didn't match pod topology spread constraints (missing required label)."
    )


# --------------------------------------------------------------------------------------------------
# Scores and selection
# --------------------------------------------------------------------------------------------------


def test_least_allocated_prefers_the_emptier_node() -> None:
    snap = Snapshot.build([node("a"), node("b")], [pod("x", cpu="3", mem="4Gi", node_name="a")])
    scores, _ = fp.score_resources(state(pod(cpu="1", mem="1Gi"), snap), snap.node_list())
    # b: cpu (4000-1000)/4000 = 75, memory (8-1)/8 = 87 -> 81; a: cpu 0, memory 37 -> 18
    assert scores == {"a": 18, "b": 81}
    assert schedule(pod(cpu="1", mem="1Gi"), snap).node_name == "b"  # type: ignore[union-attr]


def test_balanced_allocation() -> None:
    snap = Snapshot.build([node("a", cpu="4", mem="4Gi"), node("b", cpu="4", mem="16Gi")])
    _, scores = fp.score_resources(state(pod(cpu="2", mem="2Gi"), snap), snap.node_list())
    assert scores["a"] == 100  # 50% cpu, 50% memory
    assert scores["b"] == 81  # 50% vs 12.5%: std 0.1875


def test_preferred_node_affinity_score() -> None:
    pref = [
        {"weight": 80, "preference": {"matchExpressions": [_expr("zone", "In", "z2")]}},
        {"weight": 20, "preference": {"matchExpressions": [_expr("zone", "Exists")]}},
    ]
    p = pod(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": pref}})
    snap = Snapshot.build(ZONED)
    assert fp.score_node_affinity(state(p, snap), snap.node_list()) == {"a": 20, "b": 20, "c": 100, "d": 0}


def test_prefer_no_schedule_taint_score() -> None:
    soft = {"key": "k", "value": "v", "effect": "PreferNoSchedule"}
    snap = Snapshot.build([node("a", taints=[soft]), node("b")])
    assert fp.score_taint_toleration(state(pod(), snap), snap.node_list()) == {"a": 0, "b": 100}
    tolerating = pod(tolerations=[{"key": "k", "operator": "Exists"}])
    assert fp.score_taint_toleration(state(tolerating, snap), snap.node_list()) == {"a": 100, "b": 100}
    assert schedule(pod(), snap, random.Random(0)).node_name == "b"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("podAffinity", {"a": 0, "b": 0, "c": 100, "d": 0}),
        ("podAntiAffinity", {"a": 100, "b": 100, "c": 0, "d": 100}),
    ],
)
def test_preferred_pod_affinity_and_anti_affinity_scores(kind: str, expected: dict[str, int]) -> None:
    snap = Snapshot.build(ZONED, [pod("db", labels={"app": "db"}, node_name="c")])
    preferred = [{"weight": 50, "podAffinityTerm": _term({"app": "db"})}]
    incoming = pod(affinity={kind: {"preferredDuringSchedulingIgnoredDuringExecution": preferred}})
    assert fp.score_inter_pod_affinity(state(incoming, snap), snap.node_list(), snap) == expected


def test_default_spreading_of_an_owners_pods() -> None:
    nodes = [node("a"), node("b"), node("c")]
    existing = [
        pod("r1", owner="rs-1", node_name="a"),
        pod("r2", owner="rs-1", node_name="b"),
        pod("o", owner="rs-2", node_name="c"),
    ]
    snap = Snapshot.build(nodes, existing)
    scores = fp.score_topology_spread(state(pod(owner="rs-1"), snap), snap.node_list(), snap)
    assert scores["c"] == 100 and scores["a"] == scores["b"] < 100
    # a pod without owner or service is not spread
    assert fp.score_topology_spread(state(pod(), snap), snap.node_list(), snap) == {"a": 0, "b": 0, "c": 0}


def test_default_spreading_by_service() -> None:
    svc = {"metadata": {"name": "s", "namespace": "default"}, "spec": {"selector": {"app": "web"}}}
    snap = Snapshot.build([node("a"), node("b")], [_web("1", "a")], services=[svc])
    scores = fp.score_topology_spread(state(pod(labels={"app": "web"}), snap), snap.node_list(), snap)
    assert scores["b"] > scores["a"]


def test_schedule_anyway_spread_score() -> None:
    snap = Snapshot.build(ZONED[:3], [_web("1", "a"), _web("2", "b")])
    incoming = pod(labels={"app": "web"}, topologySpreadConstraints=[_spread(when="ScheduleAnyway")])
    scores = fp.score_topology_spread(state(incoming, snap), snap.node_list(), snap)
    assert scores["c"] > scores["a"] == scores["b"]


def test_many_replicas_spread_evenly() -> None:
    snap = Snapshot.build([node("a"), node("b"), node("c")])
    rng = random.Random(7)
    for i in range(9):
        p = pod(f"r{i}", cpu="10m", owner="rs-1")
        result = schedule(p, snap, rng)
        assert isinstance(result, fw.Placement)
        snap.nodes[result.node_name].add_pod(
            PodInfo.of({**p, "spec": {**p["spec"], "nodeName": result.node_name}})
        )
    assert sorted(len(n.pods) for n in snap.nodes.values()) == [3, 3, 3]


def test_ties_are_broken_by_the_injected_rng() -> None:
    snap = Snapshot.build([node("a"), node("b"), node("c")])
    chosen = {schedule(pod(), snap, random.Random(seed)).node_name for seed in range(30)}  # type: ignore[union-attr]
    assert chosen == {"a", "b", "c"}
    first = schedule(pod(), snap, random.Random(3))
    again = schedule(pod(), snap, random.Random(3))
    assert first == again


def test_single_feasible_node_skips_scoring() -> None:
    snap = Snapshot.build([node("a"), node("b", cpu="0")])
    result = schedule(pod(cpu="1"), snap)
    assert isinstance(result, fw.Placement) and result.node_name == "a" and result.feasible == 1


# --------------------------------------------------------------------------------------------------
# The failure message
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "p", "expected"),
    [
        (
            [node("cp", taints=[CP_TAINT]), node("a", cpu="1"), node("b", cpu="1")],
            pod(cpu="2"),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
            "2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
            "2 No preemption victims found for incoming pod.",
        ),
        (
            [node("a", cpu="1"), node("b", cpu="1"), node("c", cpu="1")],
            pod(cpu="500"),
            "0/3 nodes are available: 3 Insufficient cpu. "
            "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
        ),
        (  # several reasons from one node each count; the histogram is sorted as strings
            [node("a", cpu="1", mem="1Gi"), node("b", cpu="1", mem="1Gi", pods="0")],
            pod(cpu="2", mem="2Gi"),
            "0/2 nodes are available: 1 Too many pods, 2 Insufficient cpu, 2 Insufficient memory. "
            "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.",
        ),
        (
            [node("a", labels={"zone": "z1"})],
            pod(nodeSelector={"zone": "z2"}, preemptionPolicy="Never"),
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "
            "preemption: not eligible due to preemptionPolicy=Never.",
        ),
        ([], pod(), "no nodes available to schedule pods"),
    ],
)
def test_fit_error_message(nodes: list[dict[str, Any]], p: dict[str, Any], expected: str) -> None:
    result = schedule(p, Snapshot.build(nodes), random.Random(0))
    assert isinstance(result, fw.Unschedulable)
    assert result.message == expected


def test_unschedulable_result_lists_plugins() -> None:
    snap = Snapshot.build([node("cp", taints=[CP_TAINT]), node("a", cpu="1")])
    result = schedule(pod(cpu="2"), snap)
    assert isinstance(result, fw.Unschedulable)
    assert result.plugins == {"TaintToleration", "NodeResourcesFit"}
