"""cli.etcdmember against a fake etcd JSON gateway: learner promotion retried while not in sync,
etcd's refusals as errors, and the --initial-cluster of a joining member."""

from __future__ import annotations

import json

import httpx
import pytest

from cli.etcdmember import EtcdMemberError, EtcdMembers, Member, initial_cluster

E1 = {
    "ID": "11",
    "name": "e1",
    "peerURLs": ["https://10.0.0.1:2380"],
    "clientURLs": ["https://10.0.0.1:2379"],
}
NEW = {"ID": "12", "peerURLs": ["https://10.0.0.2:2380"], "isLearner": True}


def members_with(handler: object, *endpoints: str) -> tuple[EtcdMembers, list[float]]:
    sleeps: list[float] = []
    m = EtcdMembers(list(endpoints or ["https://a:2379"]), sleep=sleeps.append)
    m._http = httpx.Client(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    return m, sleeps


def test_promote_is_retried_while_the_learner_is_not_in_sync() -> None:
    answers = iter([False, False, True])
    sent: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        if next(answers):
            return httpx.Response(200, json={"members": [E1, {**NEW, "isLearner": False, "name": "e2"}]})
        message = "etcdserver: can only promote a learner member which is in sync with leader"
        return httpx.Response(400, json={"error": message, "code": 9, "message": message})

    members, sleeps = members_with(handler)
    result = members.wait_promoted(12)
    assert sent == [{"ID": "12"}] * 3
    assert len(sleeps) == 2
    assert [m.is_learner for m in result] == [False, False]


def test_other_refusals_are_not_retried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"message": "etcdserver: member not found"})

    members, sleeps = members_with(handler)
    with pytest.raises(EtcdMemberError, match="member not found"):
        members.wait_promoted(12)
    with pytest.raises(EtcdMemberError, match="member not found"):
        members.remove(12)
    assert sleeps == []


def test_add_goes_to_the_next_endpoint_when_one_is_down_and_returns_the_members() -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "a":
            raise httpx.ConnectError("refused", request=request)
        assert json.loads(request.content) == {"peerURLs": ["https://10.0.0.2:2380"], "isLearner": True}
        return httpx.Response(200, json={"member": NEW, "members": [E1, NEW]})

    members, _ = members_with(handler, "https://a:2379", "https://b:2379")
    added, current = members.add("https://10.0.0.2:2380")
    assert hosts == ["a", "b"]
    assert added == Member(12, "", ("https://10.0.0.2:2380",), (), True)
    assert initial_cluster(current, "e2", "https://10.0.0.2:2380") == (
        "e1=https://10.0.0.1:2380,e2=https://10.0.0.2:2380"
    )


def test_no_endpoint_reachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    members, _ = members_with(handler, "https://a:2379")
    with pytest.raises(EtcdMemberError, match="no etcd endpoint reachable"):
        members.members()


def test_initial_cluster_refuses_another_unstarted_member() -> None:
    other = Member(13, "", ("https://10.0.0.3:2380",), (), True)
    with pytest.raises(EtcdMemberError, match="never started"):
        initial_cluster([Member.from_json(E1), other], "e2", "https://10.0.0.2:2380")


@pytest.mark.parametrize(
    "error",
    [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError],
)
def test_a_membership_change_is_not_resent_after_it_may_have_reached_etcd(error: type) -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "a":
            raise error("no answer", request=request)
        return httpx.Response(200, json={"member": NEW, "members": [E1, NEW]})

    members, _ = members_with(handler, "https://a:2379", "https://b:2379")
    with pytest.raises(EtcdMemberError, match="may have been applied"):
        members.add("https://10.0.0.2:2380")
    with pytest.raises(EtcdMemberError, match="may have been applied"):
        members.remove(12)
    with pytest.raises(EtcdMemberError, match="may have been applied"):
        members.promote(12)
    assert hosts == ["a", "a", "a"]


def test_a_membership_change_moves_on_when_the_connection_times_out() -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "a":
            raise httpx.ConnectTimeout("timed out", request=request)
        return httpx.Response(200, json={"members": [E1]})

    members, _ = members_with(handler, "https://a:2379", "https://b:2379")
    assert members.remove(12) == [Member.from_json(E1)]
    assert hosts == ["a", "b"]


def test_the_member_list_moves_on_after_a_read_timeout() -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "a":
            raise httpx.ReadTimeout("no answer", request=request)
        return httpx.Response(200, json={"members": [E1]})

    members, _ = members_with(handler, "https://a:2379", "https://b:2379")
    assert members.members() == [Member.from_json(E1)]
    assert hosts == ["a", "b"]
