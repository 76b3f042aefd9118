"""etcd cluster membership through etcd's v3 API: list, add (as a learner), promote, remove.

A control-plane host joins the etcd cluster the way etcd's runtime reconfiguration guide asks:

1. ``add(peer_url, learner=True)`` on a running member registers the new member as a **learner**
   (a non-voting member: it receives the log but does not count for quorum, so a slow or broken
   newcomer cannot cost the cluster its quorum);
2. the new etcd starts with ``--initial-cluster-state existing`` and the ``--initial-cluster``
   that :func:`initial_cluster` builds from the member list ``add`` returned;
3. ``wait_promoted(member_id)`` promotes it to a voter once it has caught up with the leader:
   etcd refuses the promotion ("can only promote a learner member which is in sync with leader")
   until then, and the call retries.

``remove(member_id)`` takes a member out (a failed host, before a replacement joins).

It speaks etcd's JSON gateway (``POST /v3/cluster/member/...``, on by default on the client port)
over HTTPS with the cluster's etcd client certificate, so it needs neither etcdctl nor a gRPC
stack. Member IDs are uint64, which the gateway writes as decimal strings; they are ``int`` here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

NOT_IN_SYNC = "in sync with leader"
"""What etcd answers a promotion of a learner that has not caught up (it is retried)."""


UNHEALTHY = "unhealthy cluster"
"""What etcd answers a membership change while a voting member is not connected long enough."""


class EtcdMemberError(RuntimeError):
    """etcd refused a membership change, or no endpoint could be reached."""


@dataclass(frozen=True)
class Member:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Member:
        return cls(
            id=int(raw.get("ID") or 0),
            name=str(raw.get("name") or ""),
            peer_urls=tuple(raw.get("peerURLs") or ()),
            client_urls=tuple(raw.get("clientURLs") or ()),
            is_learner=bool(raw.get("isLearner")),
        )


def initial_cluster(members: Sequence[Member], new_name: str, new_peer_url: str) -> str:
    """``--initial-cluster`` for a member that joins: every started member by name, and the new one.

    A member added but not started yet has no name in the list; it is the new one when its peer
    URL is ``new_peer_url`` (another unstarted member would make the new etcd refuse to start, as
    etcd's guide warns: add and start members one at a time).
    """
    parts: list[str] = []
    for m in members:
        if new_peer_url in m.peer_urls:
            parts.append(f"{new_name}={new_peer_url}")
        elif m.name:
            parts.extend(f"{m.name}={url}" for url in m.peer_urls)
        else:
            raise EtcdMemberError(f"member {m.id:x} ({', '.join(m.peer_urls)}) was added but never started")
    if not any(p.startswith(f"{new_name}=") for p in parts):
        parts.append(f"{new_name}={new_peer_url}")
    return ",".join(parts)


@dataclass
class EtcdMembers:
    """Membership calls against the first reachable of ``endpoints`` (etcd client URLs)."""

    endpoints: Sequence[str]
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    timeout: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    _http: httpx.Client | None = field(default=None, init=False, repr=False)

    def _client(self) -> httpx.Client:
        if self._http is None:
            verify: Any = True
            if self.cafile or self.certfile:
                import ssl

                ctx = ssl.create_default_context(cafile=self.cafile)
                if self.certfile:
                    ctx.load_cert_chain(self.certfile, self.keyfile)
                verify = ctx
            self._http = httpx.Client(timeout=self.timeout, verify=verify)
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> EtcdMembers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, body: dict[str, Any], idempotent: bool = False) -> dict[str, Any]:
        """POST to the first endpoint that answers; etcd's refusal raised as EtcdMemberError.

        A request that changes the membership (add, remove, promote) goes to the next endpoint only
        when it never reached this one (the connection failed or timed out).  After any other
        transport error -- a read timeout, a dropped connection -- etcd may have applied it, and
        sending it again would add a second member or fail confusingly: that is an error which
        says so.  ``idempotent`` requests (member list) move on after any transport error."""
        failures: list[str] = []
        for endpoint in self.endpoints:
            url = endpoint.rstrip("/") + path
            try:
                resp = self._client().post(url, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failures.append(f"{endpoint}: {type(exc).__name__}: {exc}")
                continue
            except httpx.TransportError as exc:
                if not idempotent:
                    raise EtcdMemberError(
                        f"etcd at {endpoint}: {path} sent but not answered ({type(exc).__name__}: {exc}); "
                        "it may have been applied: check the member list before trying again"
                    ) from exc
                failures.append(f"{endpoint}: {type(exc).__name__}: {exc}")
                continue
            try:
                data = resp.json()
            except ValueError:
                data = {}
            if resp.status_code >= 400 or not isinstance(data, dict):
                message = data.get("message") or data.get("error") if isinstance(data, dict) else None
                raise EtcdMemberError(f"etcd at {endpoint}: {message or resp.text[:300] or resp.status_code}")
            return data
        raise EtcdMemberError("no etcd endpoint reachable: " + "; ".join(failures))

    def members(self) -> list[Member]:
        data = self._post("/v3/cluster/member/list", {"linearizable": True}, idempotent=True)
        return [Member.from_json(m) for m in data.get("members") or []]

    def _change(self, path: str, body: dict[str, Any], timeout: float, interval: float) -> dict[str, Any]:
        """A membership change; etcd refuses one ("unhealthy cluster") until every voting member has
        been connected for 5 seconds, as right after a promotion or a restart: retried until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._post(path, body)
            except EtcdMemberError as exc:
                if UNHEALTHY not in str(exc) or time.monotonic() >= deadline:
                    raise
                log.debug("etcd not ready for a membership change (%s); retrying", exc)
                self.sleep(interval)

    def add(
        self, peer_url: str, learner: bool = True, timeout: float = 60.0, interval: float = 0.5
    ) -> tuple[Member, list[Member]]:
        """Register a member by its peer URL; returns it and the cluster's members (it included)."""
        body = {"peerURLs": [peer_url], "isLearner": learner}
        data = self._change("/v3/cluster/member/add", body, timeout, interval)
        member = Member.from_json(data.get("member") or {})
        log.info("etcd member %x added (%s, learner=%s)", member.id, peer_url, learner)
        return member, [Member.from_json(m) for m in data.get("members") or []]

    def promote(self, member_id: int) -> list[Member]:
        data = self._post("/v3/cluster/member/promote", {"ID": str(member_id)})
        return [Member.from_json(m) for m in data.get("members") or []]

    def wait_promoted(self, member_id: int, timeout: float = 120.0, interval: float = 0.5) -> list[Member]:
        """Promote the learner ``member_id``, retrying while etcd says it is not in sync yet."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                members = self.promote(member_id)
            except EtcdMemberError as exc:
                if NOT_IN_SYNC not in str(exc) or time.monotonic() >= deadline:
                    raise
                log.debug("etcd learner %x not in sync yet; retrying", member_id)
                self.sleep(interval)
                continue
            log.info("etcd member %x promoted to voter", member_id)
            return members

    def remove(self, member_id: int, timeout: float = 60.0, interval: float = 0.5) -> list[Member]:
        data = self._change("/v3/cluster/member/remove", {"ID": str(member_id)}, timeout, interval)
        log.info("etcd member %x removed", member_id)
        return [Member.from_json(m) for m in data.get("members") or []]

    def find(self, name: str | None = None, peer_url: str | None = None) -> Member | None:
        """The member of that name or peer URL, if there is one."""
        for m in self.members():
            if (name and m.name == name) or (peer_url and peer_url in m.peer_urls):
                return m
        return None
