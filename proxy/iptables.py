"""The proxy's netfilter I/O: its own chains, written whole and atomically with
``iptables-restore --noflush`` (declaring a chain in the input flushes just that chain), and the
jumps into them from the built-in chains (and from Docker's ``DOCKER-USER``).  Nothing outside
``MINIK-*`` chains is changed besides those jump rules, and :func:`cleanup` removes all of it.

The jumps from ``POSTROUTING`` and ``DOCKER-USER`` must come before Docker's own rules there
(its per-network MASQUERADE rules are inserted at the top when a network is created), so every
apply checks that they are still first and moves them back if not."""

from __future__ import annotations

import asyncio
import logging
import shutil

from .model import DOCKER_USER, FILTER_JUMPS, NAT_JUMPS, RulePlan, chain_names, pod_network_chain_names

log = logging.getLogger(__name__)


class IptablesError(RuntimeError):
    pass


async def _run(*args: str, stdin: bytes | None = None, check: bool = True) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    rc = proc.returncode or 0
    if check and rc != 0:
        raise IptablesError(f"{' '.join(args)}: {err.decode().strip() or out.decode().strip()} (exit {rc})")
    return rc, out.decode()


def available() -> bool:
    return shutil.which("iptables") is not None and shutil.which("iptables-restore") is not None


async def _chain_exists(table: str, chain: str) -> bool:
    rc, _ = await _run("iptables", "-w", "-t", table, "-S", chain, check=False)
    return rc == 0


def _jump_spec(chain: str) -> list[str]:
    return ["-m", "comment", "--comment", f"minik service portals ({chain})", "-j", chain]


NETWORK_POLICY_JUMP = "minik network policy"  # NetworkPolicy's jumps stay in front of ours


async def _ensure_jump(table: str, builtin: str, chain: str) -> None:
    """Add the jump near the top of ``builtin`` (before Docker's rules), behind the NetworkPolicy
    jumps already there, so those never have to move back in front."""
    spec = _jump_spec(chain)
    rc, _ = await _run("iptables", "-w", "-t", table, "-C", builtin, *spec, check=False)
    if rc != 0:
        _, out = await _run("iptables", "-w", "-t", table, "-S", builtin)
        rules = [line for line in out.splitlines() if line.startswith("-A ")]
        position = 1
        while position <= len(rules) and NETWORK_POLICY_JUMP in rules[position - 1]:
            position += 1
        await _run("iptables", "-w", "-t", table, "-I", builtin, str(position), *spec)
        log.info("added jump %s/%s -> %s", table, builtin, chain)


async def _ensure_first(table: str, builtin: str, chain: str) -> bool:
    """Make the jump to ``chain`` the first rule of ``builtin`` (behind only NetworkPolicy jumps
    and other minik proxies' jumps); True when it had to move (deleted, then inserted: rule
    numbers are not used, since Docker and other proxies change these chains concurrently)."""
    spec = _jump_spec(chain)
    _, out = await _run("iptables", "-w", "-t", table, "-S", builtin)
    rules = [line for line in out.splitlines() if line.startswith("-A ")]
    ours = [i for i, r in enumerate(rules) if r.endswith(f"-j {chain}")]
    # first, or behind only other minik proxies' jumps (other clusters on this host)
    if len(ours) == 1 and all("minik service portals" in r for r in rules[: ours[0]]):
        return False
    while (await _run("iptables", "-w", "-t", table, "-C", builtin, *spec, check=False))[0] == 0:
        await _run("iptables", "-w", "-t", table, "-D", builtin, *spec)
    rest = [r for r in rules if not r.endswith(f"-j {chain}")]
    position = 1  # behind the NetworkPolicy jumps, which must stay in front
    while position <= len(rest) and NETWORK_POLICY_JUMP in rest[position - 1]:
        position += 1
    await _run("iptables", "-w", "-t", table, "-I", builtin, str(position), *spec)
    log.info("jump %s/%s -> %s is first", table, builtin, chain)
    return True


class Iptables:
    """Applies a :class:`RulePlan`; re-applies only when it changed (or ``force``)."""

    def __init__(self, prefix: str = "MINIK") -> None:
        self.prefix = prefix
        self.services_chain, self.reject_chain = chain_names(prefix)
        self.forward_chain, self.postrouting_chain = pod_network_chain_names(prefix)
        self.docker_user = False  # whether Docker's DOCKER-USER chain exists (pod-network rules)
        self._last: tuple[str, str] | None = None
        self._last_plan: RulePlan | None = None

    def own_chains(self) -> dict[str, set[str]]:
        return {
            "nat": {self.services_chain, self.postrouting_chain},
            "filter": {self.reject_chain, self.forward_chain},
        }

    async def ensure_chains(self) -> None:
        # Create missing chains (existing ones keep their rules until the first apply replaces
        # them, so a restart does not interrupt Services), then the jumps into them.
        self.docker_user = await _chain_exists("filter", DOCKER_USER)
        chains = [
            ("nat", self.services_chain),
            ("filter", self.reject_chain),
            ("nat", self.postrouting_chain),
        ]
        if self.docker_user:
            chains.append(("filter", self.forward_chain))
        else:
            log.warning("no %s chain (Docker without iptables?): pod networks stay isolated", DOCKER_USER)
        for table, chain in chains:
            if not await _chain_exists(table, chain):
                await _run("iptables", "-w", "-t", table, "-N", chain)
        for builtin in NAT_JUMPS:
            await _ensure_jump("nat", builtin, self.services_chain)
        for builtin in FILTER_JUMPS:
            await _ensure_jump("filter", builtin, self.reject_chain)
        await self.ensure_jump_order()
        self._last = None

    async def ensure_jump_order(self) -> None:
        """Put the pod-network jumps back in front of Docker's rules (a new network moves them)."""
        await _ensure_first("nat", "POSTROUTING", self.postrouting_chain)
        if self.docker_user:
            await _ensure_first("filter", DOCKER_USER, self.forward_chain)

    async def apply(self, plan: RulePlan, force: bool = False) -> bool:
        """Write both chains.  A VIP always has a rule during the change: the rejects first grow
        to old and new, then the redirects are replaced, then the rejects (a redirect wins over a
        reject, since it rewrites the destination before the filter table sees it)."""
        texts = (plan.nat_restore(), plan.filter_restore(with_forward=self.docker_user))
        if texts == self._last and not force:
            return False
        if self._last_plan is not None:
            union = RulePlan(
                rejects=sorted(set(plan.rejects) | set(self._last_plan.rejects)),
                services_chain=plan.services_chain,
                reject_chain=plan.reject_chain,
            )
            await _run(
                "iptables-restore", "-w", "--noflush", stdin=union.filter_restore(with_forward=False).encode()
            )
        await _run("iptables-restore", "-w", "--noflush", stdin=texts[0].encode())
        await _run("iptables-restore", "-w", "--noflush", stdin=texts[1].encode())
        self._last, self._last_plan = texts, plan
        log.info(
            "synced iptables: %d redirects, %d rejects, %d pod CIDRs",
            len(plan.redirects),
            len(plan.rejects),
            len(plan.pod_cidrs),
        )
        return True


TABLES = ("filter", "nat", "mangle", "raw")


async def save(table: str) -> str:
    return (await _run("iptables-save", "-t", table))[1]


def prefix_chains(saved: str, prefix: str) -> set[str]:
    """The chains of ``iptables-save`` output whose names start with ``PREFIX-``."""
    return {
        line[1:].split()[0]
        for line in saved.splitlines()
        if line.startswith(f":{prefix}-") and line[1:].split()
    }


def _jump_target(rule: str) -> str | None:
    parts = rule.split()
    for i, part in enumerate(parts[:-1]):
        if part in ("-j", "-g", "--jump", "--goto"):
            return parts[i + 1]
    return None


async def remove_chains(table: str, chains: set[str]) -> None:
    """Delete ``chains`` from ``table`` with every rule elsewhere that jumps to them, in one
    ``iptables-restore --noflush`` transaction."""
    if not chains:
        return
    saved = await save(table)
    present = {
        line[1:].split()[0] for line in saved.splitlines() if line.startswith(":") and line[1:].split()
    }
    chains = chains & present
    if not chains:
        return
    lines = [f"*{table}"]
    for line in saved.splitlines():
        if line.startswith("-A ") and line.split()[1] not in chains and _jump_target(line) in chains:
            lines.append("-D " + line[3:])
    lines += [f":{ch} - [0:0]" for ch in sorted(chains)]
    lines += [f"-X {ch}" for ch in sorted(chains)]
    lines.append("COMMIT")
    await _run("iptables-restore", "-w", "--noflush", stdin=("\n".join(lines) + "\n").encode())
    log.info("removed %d chains from %s: %s", len(chains), table, ", ".join(sorted(chains)))


NETWORK_POLICY_MARK = "-NWPLCY"  # the NetworkPolicy chains live beside the proxy's: never touched


async def remove_other_chains(prefix: str, keep: dict[str, set[str]]) -> None:
    """Remove the ``PREFIX-*`` chains not in ``keep`` (per table), sparing NetworkPolicy's."""
    for table in ("filter", "nat"):
        saved = await save(table)
        other = {
            ch
            for ch in prefix_chains(saved, prefix)
            if ch not in keep.get(table, set()) and not ch.startswith(prefix + NETWORK_POLICY_MARK)
        }
        await remove_chains(table, other)


async def cleanup(prefix: str = "MINIK") -> None:
    """Remove every chain named ``PREFIX-*`` (both proxy modes' chains and the NetworkPolicy
    chains) and every jump into them (``minik-proxy --cleanup``)."""
    for table in TABLES:
        rc, saved = await _run("iptables-save", "-t", table, check=False)
        if rc == 0:
            await remove_chains(table, prefix_chains(saved, prefix))


async def chains_present(prefix: str = "MINIK") -> list[str]:
    services_chain, reject_chain = chain_names(prefix)
    forward_chain, postrouting_chain = pod_network_chain_names(prefix)
    return [
        f"{table}/{chain}"
        for table, chain in (
            ("nat", services_chain),
            ("filter", reject_chain),
            ("nat", postrouting_chain),
            ("filter", forward_chain),
        )
        if await _chain_exists(table, chain)
    ]
