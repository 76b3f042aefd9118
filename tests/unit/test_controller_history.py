"""ControllerRevision history of StatefulSets and DaemonSets without I/O: the planning function and
one history sync over a fake client."""

from __future__ import annotations

import copy
from typing import Any

from apimachinery.strategicpatch import strategic_merge_patch
from controllers.daemonset import DaemonSetController, template_hash
from controllers.daemonset import live_revisions as ds_live
from controllers.history import (
    REVISION_HASH_LABEL,
    holds_template,
    new_revision,
    plan_history,
    revision_data,
    template_of,
)
from controllers.statefulset import StatefulSetController, revision_hash, update_revision
from controllers.statefulset import live_revisions as sts_live
from tests.unit.test_controllers_reconcile import owner_controller, run
from tests.unit.test_controllers_workloads import ds_obj, ds_pod, sts_obj, sts_pod


def with_image(obj: dict[str, Any], image: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return obj


def stored(obj: dict[str, Any], number: int, hash_: str | None = None) -> dict[str, Any]:
    """The revision of ``obj``'s template as the API server would hold it."""
    rev = new_revision(obj, obj["kind"], hash_ or revision_hash(obj), number)
    rev["metadata"]["uid"] = f"uid-{rev['metadata']['name']}"
    rev["metadata"]["resourceVersion"] = str(number)
    return rev


def test_revision_data_is_a_replace_patch_that_restores_the_template() -> None:
    old = sts_obj()
    new = with_image(old, "other")
    data = revision_data(old["spec"]["template"])
    assert data["spec"]["template"]["$patch"] == "replace"
    patched = strategic_merge_patch(copy.deepcopy(new), data, "StatefulSet", "apps/v1")
    assert patched["spec"]["template"] == old["spec"]["template"]
    assert patched["spec"]["replicas"] == new["spec"]["replicas"]


def test_new_revision_shape() -> None:
    sts = sts_obj()
    sts["metadata"]["annotations"] = {"kubernetes.io/change-cause": "first"}
    rev = new_revision(sts, "StatefulSet", revision_hash(sts), 1)
    assert rev["metadata"]["name"] == update_revision(sts)
    assert rev["metadata"]["labels"] == {"app": "db", REVISION_HASH_LABEL: revision_hash(sts)}
    assert rev["metadata"]["annotations"] == {"kubernetes.io/change-cause": "first"}
    ref = rev["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("StatefulSet", "uid-db", True)
    assert rev["revision"] == 1 and template_of(rev) == sts["spec"]["template"]


def test_plan_creates_the_first_revision_then_nothing() -> None:
    sts = sts_obj()
    plan = plan_history(sts, "StatefulSet", [], revision_hash(sts), set())
    assert plan.create is not None and plan.create["revision"] == 1
    plan = plan_history(sts, "StatefulSet", [stored(sts, 1)], revision_hash(sts), set())
    assert plan.create is None and plan.renumber == [] and plan.delete == [] and not plan.collision


def test_plan_new_template_gets_the_next_number_and_a_rollback_renumbers() -> None:
    v1, v2 = sts_obj(), with_image(sts_obj(), "two")
    revs = [stored(v1, 1)]
    plan = plan_history(v2, "StatefulSet", revs, revision_hash(v2), set())
    assert plan.create is not None and plan.create["revision"] == 2
    assert plan.create["metadata"]["name"] == update_revision(v2) != update_revision(v1)
    revs.append(stored(v2, 2))
    plan = plan_history(v1, "StatefulSet", revs, revision_hash(v1), set())  # back to v1
    assert plan.create is None
    assert [(r["metadata"]["name"], n) for r, n in plan.renumber] == [(update_revision(v1), 3)]


def test_plan_trims_to_the_limit_oldest_first_but_keeps_live_revisions() -> None:
    versions = [with_image(sts_obj(revisionHistoryLimit=2), f"i{n}") for n in range(6)]
    revs = [stored(v, n + 1) for n, v in enumerate(versions)]
    current = versions[-1]
    live = {update_revision(versions[0])}  # a pod still runs the oldest
    plan = plan_history(current, "StatefulSet", revs, revision_hash(current), live)
    # old, not live: i1..i4 -> keep the newest two (i3, i4), delete i1, i2
    assert [r["metadata"]["name"] for r in plan.delete] == [update_revision(versions[n]) for n in (1, 2)]
    no_limit = with_image(sts_obj(), "i5")  # default limit 10
    assert plan_history(no_limit, "StatefulSet", revs, revision_hash(no_limit), set()).delete == []
    zero = with_image(sts_obj(revisionHistoryLimit=0), "i5")
    assert len(plan_history(zero, "StatefulSet", revs, revision_hash(zero), set()).delete) == 5


def test_plan_reports_a_collision_when_the_name_holds_another_template() -> None:
    v1, v2 = sts_obj(), with_image(sts_obj(), "two")
    impostor = stored(v2, 1, hash_=revision_hash(v1))  # v1's name, v2's template
    assert not holds_template(impostor, v1["spec"]["template"])
    plan = plan_history(v1, "StatefulSet", [impostor], revision_hash(v1), set())
    assert plan.collision and plan.create is None


def test_live_revisions() -> None:
    sts = sts_obj()
    sts["status"] = {"currentRevision": "db-old", "updateRevision": "db-mid"}
    pods = [sts_pod(sts, 0, "db-pod")]
    assert sts_live(sts, pods) == {"db-old", "db-mid", "db-pod", update_revision(sts)}
    ds = ds_obj()
    assert ds_live(ds, [ds_pod(ds, "p", "n1", "abc")]) == {"agent-abc", f"agent-{template_hash(ds)}"}


def test_statefulset_history_sync_creates_renumbers_and_deletes() -> None:
    async def scenario() -> None:
        v1 = sts_obj(revisionHistoryLimit=1)
        v2, v3 = with_image(v1, "two"), with_image(v1, "three")
        c, client, _ = owner_controller(StatefulSetController, v1)
        await c.history.sync("ns/db")
        assert [(a[0], a[1], a[2]) for a in client.actions] == [
            ("create", "controllerrevisions", update_revision(v1))
        ]
        assert client.actions[0][3]["revision"] == 1
        # v3 is current; v1 and v2 are history with a limit of one: v1 goes
        c.owner_informer.store.add(v3)
        for rev in (stored(v1, 1), stored(v2, 2)):
            c.history.informer.store.add(rev)
        client.actions.clear()
        await c.history.sync("ns/db")
        assert [(a[0], a[2]) for a in client.actions] == [
            ("create", update_revision(v3)),
            ("delete", update_revision(v1)),
        ]
        # rolled back to v2 while v3 is stored as 3: v2 becomes 4
        c.owner_informer.store.add(v2)
        c.history.informer.store.add(stored(v3, 3))
        c.history.informer.store.delete(stored(v1, 1))
        client.actions.clear()
        await c.history.sync("ns/db")
        assert [(a[0], a[2]) for a in client.actions] == [("update", update_revision(v2))]
        assert client.actions[0][3]["revision"] == 4

    run(scenario())


def test_daemonset_history_is_named_by_the_pods_hash() -> None:
    async def scenario() -> None:
        ds = ds_obj()
        c, client, _ = owner_controller(DaemonSetController, ds)
        await c.history.sync("ns/agent")
        (action,) = client.actions
        rev = action[3]
        assert rev["metadata"]["name"] == f"agent-{template_hash(ds)}"
        assert rev["metadata"]["labels"][REVISION_HASH_LABEL] == template_hash(ds)
        assert rev["data"]["spec"]["template"]["$patch"] == "replace"

    run(scenario())


def test_controller_forwards_keys_to_the_history_queue() -> None:
    c, _, _ = owner_controller(StatefulSetController, sts_obj())
    c.enqueue(sts_obj())
    assert len(c.queue) == 1 and len(c.history.queue) == 1
