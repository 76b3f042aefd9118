"""The proxy's netfilter I/O: its own chains, written whole and atomically with
``iptables-restore --noflush`` (declaring a chain in the input flushes just that chain), and the
jumps into them from the built-in chains.  Nothing outside ``MINIK-*`` chains is changed besides
those jump rules, and :func:`cleanup` removes all of it."""

from __future__ import annotations

import asyncio
import logging
import shutil

from .model import FILTER_JUMPS, NAT_JUMPS, RulePlan, chain_names

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


async def _ensure_jump(table: str, builtin: str, chain: str) -> None:
    spec = _jump_spec(chain)
    rc, _ = await _run("iptables", "-w", "-t", table, "-C", builtin, *spec, check=False)
    if rc != 0:
        await _run("iptables", "-w", "-t", table, "-I", builtin, "1", *spec)
        log.info("added jump %s/%s -> %s", table, builtin, chain)


class Iptables:
    """Applies a :class:`RulePlan`; re-applies only when it changed (or ``force``)."""

    def __init__(self, prefix: str = "MINIK") -> None:
        self.prefix = prefix
        self.services_chain, self.reject_chain = chain_names(prefix)
        self._last: tuple[str, str] | None = None
        self._last_plan: RulePlan | None = None

    async def ensure_chains(self) -> None:
        # Create missing chains (existing ones keep their rules until the first apply replaces
        # them, so a restart does not interrupt Services), then the jumps into them.
        for table, chain in (("nat", self.services_chain), ("filter", self.reject_chain)):
            if not await _chain_exists(table, chain):
                await _run("iptables", "-w", "-t", table, "-N", chain)
        for builtin in NAT_JUMPS:
            await _ensure_jump("nat", builtin, self.services_chain)
        for builtin in FILTER_JUMPS:
            await _ensure_jump("filter", builtin, self.reject_chain)
        self._last = None

    async def apply(self, plan: RulePlan, force: bool = False) -> bool:
        """Write both chains.  A VIP always has a rule during the change: the rejects first grow
        to old and new, then the redirects are replaced, then the rejects (a redirect wins over a
        reject, since it rewrites the destination before the filter table sees it)."""
        texts = (plan.nat_restore(), plan.filter_restore())
        if texts == self._last and not force:
            return False
        if self._last_plan is not None:
            union = RulePlan(
                rejects=sorted(set(plan.rejects) | set(self._last_plan.rejects)),
                services_chain=plan.services_chain,
                reject_chain=plan.reject_chain,
            )
            await _run("iptables-restore", "-w", "--noflush", stdin=union.filter_restore().encode())
        await _run("iptables-restore", "-w", "--noflush", stdin=texts[0].encode())
        await _run("iptables-restore", "-w", "--noflush", stdin=texts[1].encode())
        self._last, self._last_plan = texts, plan
        log.info("synced iptables: %d redirects, %d rejects", len(plan.redirects), len(plan.rejects))
        return True


async def cleanup(prefix: str = "MINIK") -> None:
    """Remove every jump and chain the proxy made (``minik-proxy --cleanup``)."""
    services_chain, reject_chain = chain_names(prefix)
    for table, builtins, chain in (
        ("nat", NAT_JUMPS, services_chain),
        ("filter", FILTER_JUMPS, reject_chain),
    ):
        spec = _jump_spec(chain)
        for builtin in builtins:
            while (await _run("iptables", "-w", "-t", table, "-C", builtin, *spec, check=False))[0] == 0:
                await _run("iptables", "-w", "-t", table, "-D", builtin, *spec)
        if await _chain_exists(table, chain):
            await _run("iptables", "-w", "-t", table, "-F", chain)
            await _run("iptables", "-w", "-t", table, "-X", chain)
            log.info("removed chain %s/%s", table, chain)


async def chains_present(prefix: str = "MINIK") -> list[str]:
    services_chain, reject_chain = chain_names(prefix)
    return [
        f"{table}/{chain}"
        for table, chain in (("nat", services_chain), ("filter", reject_chain))
        if await _chain_exists(table, chain)
    ]
