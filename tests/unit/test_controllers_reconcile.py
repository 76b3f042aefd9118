"""Controllers without I/O, in sample-controller's manner: fill the informer caches, run one
reconcile, assert the exact API actions it took (and the pure decision functions alone)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from apimachinery import errors
from apimachinery.events import FakeRecorder
from apimachinery.informer import SharedInformerFactory
from apimachinery.resources import ResourceInfo
from apimachinery.timefmt import rfc3339
from controllers import deploymentutil as du
from controllers.base import ControllerContext, Options
from controllers.deployment import DeploymentController
from controllers.endpoints import compute_subsets
from controllers.garbagecollector import GarbageCollector
from controllers.leaderelection import LeaderElector
from controllers.manager import select_controllers
from controllers.nodelifecycle import eviction_time, reconcile_taints, unknown_conditions
from controllers.podcontrol import slow_start_batches
from controllers.replicaset import ReplicaSetController, pods_to_delete
from controllers.util import Expectations

NOW = 1_700_000_000.0

Action = tuple[str, str, str, Any]


class FakeClient:
    """Records (verb, plural[/sub], name, body) and answers like the API server would."""

    def __init__(self) -> None:
        self.actions: list[Action] = []
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.seq = itertools.count(1)
        self.fail: dict[str, errors.StatusError] = {}

    def _check(self, verb: str) -> None:
        if verb in self.fail:
            raise self.fail[verb]

    async def get(self, info: ResourceInfo, name: str, namespace: str | None = None) -> dict[str, Any]:
        self.actions.append(("get", info.plural, name, None))
        obj = self.objects.get((info.plural, name))
        if obj is None:
            raise errors.NotFound(f'{info.plural} "{name}" not found')
        return obj

    async def create(
        self, info: ResourceInfo, obj: dict[str, Any], namespace: str | None = None, **kw: Any
    ) -> dict[str, Any]:
        self._check("create")
        obj = {**obj, "metadata": dict(obj["metadata"])}
        m = obj["metadata"]
        if not m.get("name"):
            m["name"] = f"{m['generateName']}{next(self.seq):05d}"
        m.setdefault("uid", f"uid-{m['name']}")
        m["resourceVersion"] = str(next(self.seq))
        self.actions.append(("create", info.plural, m["name"], obj))
        self.objects[(info.plural, m["name"])] = obj
        return obj

    async def update(self, info: ResourceInfo, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
        self._check("update")
        self.actions.append(("update", info.plural, obj["metadata"]["name"], obj))
        if (info.plural, obj["metadata"]["name"]) in self.objects:
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(next(self.seq))}}
            self.objects[(info.plural, obj["metadata"]["name"])] = obj
        return obj

    async def update_status(self, info: ResourceInfo, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
        self.actions.append(("update", f"{info.plural}/status", obj["metadata"]["name"], obj))
        return obj

    async def patch(
        self, info: ResourceInfo, name: str, patch: Any, namespace: str | None = None, **kw: Any
    ) -> dict[str, Any]:
        self.actions.append(("patch", info.plural, name, patch))
        return {"metadata": {"name": name, **patch.get("metadata", {})}}

    async def delete(
        self, info: ResourceInfo, name: str, namespace: str | None = None, **kw: Any
    ) -> dict[str, Any]:
        self._check("delete")
        self.actions.append(("delete", info.plural, name, kw))
        return {}

    def verbs(self) -> list[tuple[str, str]]:
        return [(a[0], a[1]) for a in self.actions]


def make_ctx(client: FakeClient) -> tuple[ControllerContext, FakeRecorder]:
    recorder = FakeRecorder()
    factory = SharedInformerFactory(client)  # type: ignore[arg-type]
    ctx = ControllerContext(client, factory, lambda name: recorder, Options(), clock=lambda: NOW)  # type: ignore[arg-type]
    return ctx, recorder


def owner_controller(cls: Any, owner: dict[str, Any]) -> tuple[Any, FakeClient, Any]:
    """A controller of ``cls`` over a fake client, with ``owner`` in its cache."""
    client = FakeClient()
    ctx, recorder = make_ctx(client)
    c = cls(ctx)
    c.owner_informer.store.add(owner)
    return c, client, recorder


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def rs_obj(name: str = "web", replicas: int = 3, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "resourceVersion": "1",
            "generation": 1,
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
        "status": status,
    }


def pod_obj(
    name: str,
    labels: dict[str, str],
    owner: dict[str, Any] | None = None,
    node: str = "",
    phase: str = "Pending",
    ready: bool = False,
    created: float = NOW - 100,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "ns",
        "uid": f"uid-{name}",
        "labels": labels,
        "resourceVersion": "5",
        "creationTimestamp": rfc3339(created),
    }
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
            }
        ]
    status: dict[str, Any] = {"phase": phase}
    if ready:
        status["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(NOW - 50)}]
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "i"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


# -- ReplicaSet -------------------------------------------------------------------------------------


def test_slow_start_batches() -> None:
    assert slow_start_batches(10) == [1, 2, 4, 3]
    assert slow_start_batches(1) == [1]
    assert slow_start_batches(0) == []


def test_replicaset_creates_missing_pods_once() -> None:
    async def scenario() -> None:
        rs = rs_obj(replicas=3)
        c, client, recorder = owner_controller(ReplicaSetController, rs)
        await c.reconcile("ns/web")
        creates = [a for a in client.actions if a[0] == "create"]
        assert [a[1] for a in creates] == ["pods"] * 3
        body = creates[0][3]
        assert body["metadata"]["generateName"] == "web-"
        assert body["metadata"]["labels"] == {"app": "web"}
        ref = body["metadata"]["ownerReferences"][0]
        assert ref == {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web",
            "uid": "uid-web",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        status = client.actions[-1]
        assert status[:2] == ("update", "replicasets/status")
        assert status[3]["status"]["observedGeneration"] == 1
        assert recorder.events.count("Normal SuccessfulCreate Created pod: " + creates[0][2]) == 1
        # the cache has not seen the pods yet: expectations stop a second round of creations
        client.actions.clear()
        await c.reconcile("ns/web")
        assert [a for a in client.actions if a[0] == "create"] == []

    run(scenario())


def test_replicaset_scale_down_deletes_least_valuable() -> None:
    async def scenario() -> None:
        rs = rs_obj(replicas=2)
        c, client, _ = owner_controller(ReplicaSetController, rs)
        labels = {"app": "web"}
        for p in (
            pod_obj("running-old", labels, rs, node="n1", phase="Running", ready=True, created=NOW - 500),
            pod_obj("running-new", labels, rs, node="n2", phase="Running", ready=True, created=NOW - 10),
            pod_obj("pending", labels, rs, node="n1", phase="Pending"),
            pod_obj("unscheduled", labels, rs),
        ):
            c.owned_informer.store.add(p)
        await c.reconcile("ns/web")
        deletes = sorted(a[2] for a in client.actions if a[0] == "delete")
        assert deletes == ["pending", "unscheduled"]

    run(scenario())


def test_pods_to_delete_ranks_newest_last_among_equals() -> None:
    labels = {"app": "x"}
    old = pod_obj("old", labels, node="n1", phase="Running", ready=True, created=NOW - 500)
    new = pod_obj("new", labels, node="n2", phase="Running", ready=True, created=NOW - 5)
    old["status"]["conditions"][0]["lastTransitionTime"] = rfc3339(NOW - 400)
    new["status"]["conditions"][0]["lastTransitionTime"] = rfc3339(NOW - 4)
    assert [p["metadata"]["name"] for p in pods_to_delete([old, new], [old, new], 1)] == ["new"]


def test_replicaset_adopts_orphan_and_releases_mismatch() -> None:
    async def scenario() -> None:
        client = FakeClient()
        ctx, _ = make_ctx(client)
        c = ReplicaSetController(ctx)
        rs = rs_obj(replicas=1)
        client.objects[("replicasets", "web")] = rs
        c.owner_informer.store.add(rs)
        c.owned_informer.store.add(pod_obj("orphan", {"app": "web"}))
        c.owned_informer.store.add(pod_obj("strayed", {"app": "other"}, rs))
        await c.reconcile("ns/web")
        patches = {a[2]: a[3] for a in client.actions if a[0] == "patch"}
        assert patches["orphan"]["metadata"]["ownerReferences"][0]["uid"] == "uid-web"
        assert patches["orphan"]["metadata"]["resourceVersion"] == "5"
        assert patches["strayed"]["metadata"]["ownerReferences"] is None
        assert ("get", "replicasets") in client.verbs()  # the live re-check before adopting
        assert not [a for a in client.actions if a[0] == "create"]

    run(scenario())


def test_replicaset_create_failure_sets_condition_and_retries() -> None:
    async def scenario() -> None:
        client = FakeClient()
        client.fail["create"] = errors.Forbidden("quota exceeded")
        ctx, recorder = make_ctx(client)
        c = ReplicaSetController(ctx)
        c.owner_informer.store.add(rs_obj(replicas=2))
        with pytest.raises(errors.Forbidden):
            await c.reconcile("ns/web")
        status = client.actions[-1][3]["status"]
        assert status["conditions"][0]["type"] == "ReplicaFailure"
        assert status["conditions"][0]["reason"] == "FailedCreate"
        assert any(e.startswith("Warning FailedCreate") for e in recorder.events)
        assert c.expectations.satisfied("ns/web")  # skipped creations are not awaited

    run(scenario())


def test_expectations() -> None:
    t = [0.0]
    e = Expectations(lambda: t[0])
    e.expect_creations("k", 2)
    assert not e.satisfied("k")
    e.creation_observed("k")
    e.creation_observed("k")
    assert e.satisfied("k")
    e.expect_deletions("k", ["a"])
    assert not e.satisfied("k")
    t[0] += 301
    assert e.satisfied("k")


# -- Deployment -------------------------------------------------------------------------------------


def deploy_obj(replicas: int = 3, surge: Any = 1, unavailable: Any = 0, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "app",
            "namespace": "ns",
            "uid": "uid-app",
            "resourceVersion": "1",
            "generation": 1,
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app"}},
                "spec": {"containers": [{"name": "c", "image": "v1"}]},
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            **spec,
        },
    }


def test_fenceposts_round_as_kubernetes() -> None:
    assert du.resolve_fenceposts("25%", "25%", 10) == (3, 2)  # surge up, unavailable down
    assert du.resolve_fenceposts("0%", "0%", 10) == (0, 1)
    assert du.resolve_fenceposts(0, 0, 3) == (0, 1)
    assert du.resolve_fenceposts(2, "50%", 3) == (2, 1)


def test_compute_hash_stable_and_collision_sensitive() -> None:
    t = deploy_obj()["spec"]["template"]
    h = du.compute_hash(t, None)
    assert h == du.compute_hash({**t}, None)
    assert h != du.compute_hash(t, 1)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    with_null = {"metadata": {**t["metadata"], "creationTimestamp": None}, "spec": t["spec"]}
    assert du.compute_hash(with_null, None) == h
    assert du.equal_ignore_hash(
        with_null, {"metadata": {"labels": {"app": "app", du.HASH_LABEL: h}}, "spec": t["spec"]}
    )


def test_new_rs_replicas_within_surge() -> None:
    d = deploy_obj(replicas=3, surge=1)
    old = {"spec": {"replicas": 3}}
    new = {"spec": {"replicas": 0}}
    assert du.new_rs_new_replicas(d, [old, new], new) == 1
    assert (
        du.new_rs_new_replicas(
            d, [{"spec": {"replicas": 2}}, {"spec": {"replicas": 1}}], {"spec": {"replicas": 1}}
        )
        == 2
    )


def test_proportional_scaling_keeps_ratio() -> None:
    d = deploy_obj(replicas=20, surge=3, unavailable=2)
    a = {
        "metadata": {
            "name": "a",
            "creationTimestamp": rfc3339(NOW - 10),
            "annotations": {du.MAX_REPLICAS: "13"},
        },
        "spec": {"replicas": 8},
    }
    b = {
        "metadata": {"name": "b", "creationTimestamp": rfc3339(NOW), "annotations": {du.MAX_REPLICAS: "13"}},
        "spec": {"replicas": 5},
    }
    sizes, op = du.proportional_sizes(d, [a, b])
    assert op == "up"
    assert sum(sizes.values()) == 23
    assert sizes["a"] > sizes["b"]


def test_rollout_status_conditions() -> None:
    d = deploy_obj(replicas=2)
    new = {
        "metadata": {"name": "app-x"},
        "spec": {"replicas": 2},
        "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2},
    }
    status = du.rollout_status(d, [new], new, NOW)
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Available"]["reason"] == du.MIN_AVAILABLE
    assert conds["Progressing"]["reason"] == du.NEW_RS_AVAILABLE
    assert status["updatedReplicas"] == 2 and status["observedGeneration"] == 1
    # stuck past the deadline
    d2 = deploy_obj(replicas=2, progressDeadlineSeconds=5)
    d2["status"] = {
        "replicas": 2,
        "updatedReplicas": 2,
        "conditions": [du.progressing_condition("True", du.RS_UPDATED, "x", NOW - 10)],
    }
    slow = {"metadata": {"name": "app-x"}, "spec": {"replicas": 2}, "status": {"replicas": 2}}
    status = du.rollout_status(d2, [slow], slow, NOW)
    assert {c["type"]: c for c in status["conditions"]}["Progressing"]["reason"] == du.TIMED_OUT


def test_cleanup_keeps_history_limit() -> None:
    d = deploy_obj(revisionHistoryLimit=1)
    olds = [
        {
            "metadata": {"name": f"r{i}", "annotations": {du.REVISION: str(i)}, "generation": 1},
            "spec": {"replicas": 0},
            "status": {"observedGeneration": 1},
        }
        for i in (1, 2, 3)
    ]
    assert [r["metadata"]["name"] for r in du.rss_to_clean(d, olds)] == ["r1", "r2"]


def test_new_rs_annotations_record_history() -> None:
    d = deploy_obj()
    rs: dict[str, Any] = {"metadata": {"annotations": {du.REVISION: "1"}}}
    assert du.set_new_rs_annotations(d, rs, 3, True)
    assert rs["metadata"]["annotations"][du.REVISION] == "3"
    assert rs["metadata"]["annotations"][du.REVISION_HISTORY] == "1"


def test_deployment_creates_new_replicaset() -> None:
    async def scenario() -> None:
        d = deploy_obj(replicas=3, surge=1, unavailable=0)
        c, client, recorder = owner_controller(DeploymentController, d)
        await c.reconcile("ns/app")
        create = next(a for a in client.actions if a[0] == "create")
        rs = create[3]
        h = du.compute_hash(d["spec"]["template"], None)
        assert create[1] == "replicasets" and create[2] == f"app-{h}"
        assert rs["spec"]["replicas"] == 3
        assert rs["spec"]["selector"]["matchLabels"] == {"app": "app", du.HASH_LABEL: h}
        assert rs["spec"]["template"]["metadata"]["labels"][du.HASH_LABEL] == h
        ann = rs["metadata"]["annotations"]
        assert (ann[du.REVISION], ann[du.DESIRED_REPLICAS], ann[du.MAX_REPLICAS]) == ("1", "3", "4")
        updates = [a for a in client.actions if a[0] == "update"]
        assert updates[0][1] == "deployments" and updates[0][3]["metadata"]["annotations"][du.REVISION] == "1"
        progressing = {x["type"]: x for x in updates[1][3]["status"]["conditions"]}["Progressing"]
        assert progressing["reason"] == du.NEW_RS_CREATED
        assert f"Normal ScalingReplicaSet Scaled up replica set app-{h} from 0 to 3" in recorder.events

    run(scenario())


def test_deployment_rolling_scales_old_down_within_unavailable() -> None:
    async def scenario() -> None:
        client = FakeClient()
        ctx, _ = make_ctx(client)
        c = DeploymentController(ctx)
        d = deploy_obj(replicas=3, surge=1, unavailable=0)
        d["metadata"]["annotations"] = {du.REVISION: "2"}
        c.owner_informer.store.add(d)
        h = du.compute_hash(d["spec"]["template"], None)
        owner = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "app",
                "uid": "uid-app",
                "controller": True,
            }
        ]

        def rs(name: str, replicas: int, available: int, image: str, rev: str, age: float) -> dict[str, Any]:
            tmpl = {
                "metadata": {"labels": {"app": "app", du.HASH_LABEL: name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            }
            return {
                "metadata": {
                    "name": f"app-{name}",
                    "namespace": "ns",
                    "uid": f"uid-{name}",
                    "resourceVersion": "3",
                    "labels": {"app": "app", du.HASH_LABEL: name},
                    "ownerReferences": owner,
                    "creationTimestamp": rfc3339(NOW - age),
                    "annotations": {du.REVISION: rev, du.DESIRED_REPLICAS: "3", du.MAX_REPLICAS: "4"},
                },
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "app"}}, "template": tmpl},
                "status": {"replicas": replicas, "availableReplicas": available, "readyReplicas": available},
            }

        c.owned_informer.store.add(rs("old", 3, 3, "v0", "1", 100))
        c.owned_informer.store.add(rs(h, 1, 1, "v1", "2", 10))
        await c.reconcile("ns/app")
        scaled = [
            (a[2], a[3]["spec"]["replicas"]) for a in client.actions if a[:2] == ("update", "replicasets")
        ]
        assert scaled == [("app-old", 2)]  # 4 available, min 3: one old pod may go

    run(scenario())


# -- garbage collector ------------------------------------------------------------------------------


def test_gc_deletes_dependent_of_missing_owner_and_orphans() -> None:
    async def scenario() -> None:
        client = FakeClient()
        ctx, _ = make_ctx(client)
        gc = GarbageCollector(ctx)
        _, cms = gc.kinds["configmaps"]
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "uid-owner"}
        child = {
            "metadata": {
                "name": "child",
                "namespace": "ns",
                "uid": "uid-child",
                "resourceVersion": "4",
                "ownerReferences": [ref],
            }
        }
        cms.store.add(child)
        gc._added("configmaps", child)
        await gc.reconcile("configmaps|ns/child")
        assert ("get", "configmaps") in client.verbs()  # absent from the graph: live check
        delete = next(a for a in client.actions if a[0] == "delete")
        assert delete[2] == "child" and delete[3]["propagation_policy"] == "Background"
        assert delete[3]["preconditions"] == {"uid": "uid-child"}

        client.actions.clear()
        owner = {
            "metadata": {
                "name": "owner",
                "namespace": "ns",
                "uid": "uid-owner",
                "resourceVersion": "9",
                "deletionTimestamp": rfc3339(NOW),
                "finalizers": ["orphan"],
            }
        }
        cms.store.add(owner)
        gc._added("configmaps", owner)
        await gc.reconcile("configmaps|ns/owner")
        assert client.actions[0][:3] == ("patch", "configmaps", "child")
        assert client.actions[0][3]["metadata"]["ownerReferences"] is None
        assert client.actions[1][:3] == ("update", "configmaps", "owner")
        assert client.actions[1][3]["metadata"]["finalizers"] == []

    run(scenario())


def test_gc_foreground_waits_for_blocking_dependents() -> None:
    async def scenario() -> None:
        client = FakeClient()
        ctx, _ = make_ctx(client)
        gc = GarbageCollector(ctx)
        _, cms = gc.kinds["configmaps"]
        owner = {
            "metadata": {
                "name": "o",
                "namespace": "ns",
                "uid": "uid-o",
                "resourceVersion": "1",
                "deletionTimestamp": rfc3339(NOW),
                "finalizers": ["foregroundDeletion"],
            }
        }
        ref = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "o",
            "uid": "uid-o",
            "blockOwnerDeletion": True,
        }
        child = {
            "metadata": {
                "name": "c",
                "namespace": "ns",
                "uid": "uid-c",
                "resourceVersion": "2",
                "ownerReferences": [ref],
            }
        }
        for obj in (owner, child):
            cms.store.add(obj)
            gc._added("configmaps", obj)
        await gc.reconcile("configmaps|ns/o")
        assert [a[:3] for a in client.actions] == [("delete", "configmaps", "c")]
        client.actions.clear()
        cms.store.delete(child)
        gc._deleted("configmaps", child)
        await gc.reconcile("configmaps|ns/o")
        assert client.actions[0][:3] == ("update", "configmaps", "o")
        assert client.actions[0][3]["metadata"]["finalizers"] == []

    run(scenario())


# -- node lifecycle ---------------------------------------------------------------------------------


def test_taints_follow_ready_status() -> None:
    other = {"key": "dedicated", "value": "x", "effect": "NoSchedule"}
    unknown = reconcile_taints([other], "Unknown", NOW)
    assert {(t["key"], t["effect"]) for t in unknown} == {
        ("dedicated", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }
    assert reconcile_taints(unknown, "True", NOW) == [other]
    not_ready = reconcile_taints(unknown, "False", NOW)
    assert {t["key"] for t in not_ready} == {"dedicated", "node.kubernetes.io/not-ready"}


def test_eviction_time_honours_tolerations() -> None:
    taint = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": rfc3339(NOW - 10)}
    pod: dict[str, Any] = {"spec": {}}
    assert eviction_time(pod, [taint], 300, NOW) == NOW - 10 + 300  # the default toleration
    pod["spec"]["tolerations"] = [
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 5,
        }
    ]
    assert eviction_time(pod, [taint], 300, NOW) == NOW - 5
    pod["spec"]["tolerations"] = [{"operator": "Exists"}]
    assert eviction_time(pod, [taint], 300, NOW) is None
    assert eviction_time({"spec": {}}, [{"key": "custom", "effect": "NoExecute"}], 300, NOW) == NOW


def test_unknown_conditions() -> None:
    status = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "old"}]}
    out = unknown_conditions(status, NOW)
    ready = next(c for c in out["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "Unknown" and ready["reason"] == "NodeStatusUnknown"
    assert ready["lastTransitionTime"] == rfc3339(NOW)


# -- endpoints, manager, leader election ------------------------------------------------------------


def test_endpoints_subsets_ready_and_named_ports() -> None:
    svc = {"spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}]}}

    def pod(name: str, ip: str, ready: bool) -> dict[str, Any]:
        p = pod_obj(name, {"app": "x"}, node="n1", phase="Running", ready=ready)
        p["status"]["podIP"] = ip
        p["spec"]["containers"][0]["ports"] = [{"name": "web", "containerPort": 8080}]
        return p

    subsets = compute_subsets(
        svc, [pod("a", "10.0.0.1", True), pod("b", "10.0.0.2", False), pod_obj("c", {})]
    )
    assert subsets == [
        {
            "addresses": [
                {
                    "ip": "10.0.0.1",
                    "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"},
                }
            ],
            "notReadyAddresses": [
                {
                    "ip": "10.0.0.2",
                    "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "namespace": "ns", "name": "b", "uid": "uid-b"},
                }
            ],
            "ports": [{"port": 8080, "protocol": "TCP", "name": "http"}],
        }
    ]


def test_select_controllers() -> None:
    assert select_controllers("*,-nodelifecycle") == [
        "replicaset",
        "deployment",
        "garbagecollector",
        "namespace",
        "endpoints",
        "endpointslice",
        "serviceaccount",
        "job",
        "statefulset",
        "daemonset",
        "nodeipam",
        "persistentvolume-binder",
        "root-ca-cert-publisher",
        "resourcequota",
        "cronjob",
        "podgc",
        "disruption",
        "horizontalpodautoscaling",
        "csrapproving",
        "csrsigning",
        "bootstrapsigner",
        "tokencleaner",
    ]
    assert select_controllers("replicaset") == ["replicaset"]
    with pytest.raises(ValueError):
        select_controllers("nope")


def test_leader_election_waits_for_expiry() -> None:
    async def scenario() -> None:
        client = FakeClient()
        t = [0.0]
        a = LeaderElector(client, identity="a", lease_duration=15, monotonic=lambda: t[0], clock=lambda: NOW)  # type: ignore[arg-type]
        b = LeaderElector(client, identity="b", lease_duration=15, monotonic=lambda: t[0], clock=lambda: NOW)  # type: ignore[arg-type]
        assert await a.try_acquire_or_renew()  # creates the Lease
        assert client.actions[-1][:2] == ("create", "leases")
        lease = client.actions[-1][3]
        assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseDurationSeconds"] == 15
        assert not await b.try_acquire_or_renew()  # held and fresh
        t[0] += 16  # a never renewed, as b observed it
        assert await b.try_acquire_or_renew()
        taken = client.actions[-1][3]
        assert taken["spec"]["holderIdentity"] == "b" and taken["spec"]["leaseTransitions"] == 1

    run(scenario())
