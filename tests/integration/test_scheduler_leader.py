"""Two minik-scheduler processes with --leader-elect: one schedules, the other stands by and
takes over once the leader is gone."""

from __future__ import annotations

from testkit.api import create_namespace
from testkit.processes import APIServerProcess, running, scheduler
from testkit.wait import wait_for
from tests.integration.test_scheduler import create_pod, node, node_of, pod

FLAGS = [
    "--leader-elect",
    "--leader-elect-lease-duration",
    "2",
    "--leader-elect-renew-deadline",
    "1.5",
    "--leader-elect-retry-period",
    "0.3",
]


def test_standby_takes_over(apiserver: APIServerProcess) -> None:
    first, standby = scheduler(apiserver, *FLAGS), scheduler(apiserver, *FLAGS)
    with apiserver.http() as api:
        assert api.post("/api/v1/nodes", json=node("leader-n1")).status_code == 201
        ns = create_namespace(api, "le")
        with running(first):

            def holder() -> str | None:
                r = api.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler")
                return r.json()["spec"].get("holderIdentity") if r.status_code == 200 else None

            leader = wait_for(holder, what="a leader")
            with running(standby):
                create_pod(api, ns, pod("one"))
                assert wait_for(lambda: node_of(api, ns, "one"), what="one bound") == "leader-n1"
                assert holder() == leader

                assert first.stop() == 0
                wait_for(lambda: (h := holder()) and h != leader, what="a new leader", timeout=20)
                create_pod(api, ns, pod("two"))
                assert wait_for(lambda: node_of(api, ns, "two"), what="two bound", timeout=20) == "leader-n1"
