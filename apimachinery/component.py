"""Process start-up shared by every minik component (API server, scheduler, controller manager,
kubelet, proxy, cluster DNS, hollow nodes).

A component's ``main()`` parses its own flags and hands them, with its ``serve(args, stop)``
coroutine, to :func:`run_component`: logging on stderr in one format, the event loop (uvloop where
the component asks for it), and SIGTERM/SIGINT setting ``stop`` so the component shuts down
gracefully and closes its clients.  :func:`run_until_stopped` is the usual body of ``serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

Serve = Callable[[argparse.Namespace, asyncio.Event], Coroutine[Any, Any, None]]


def add_log_level_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def add_kubeconfig_flags(parser: argparse.ArgumentParser) -> None:
    """``--api-server`` and ``--kubeconfig`` as the node components read them (see :mod:`.kubeconfig`)."""
    parser.add_argument(
        "--api-server",
        help="API server URL, or several separated by commas to fail over between (overrides the kubeconfig's servers)",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file to read the API server and credentials from")


def log_level(args: argparse.Namespace, debug_verbosity: int = 1) -> int:
    """``--log-level NAME``; or, for components with ``-v``, DEBUG from ``debug_verbosity`` of them."""
    if hasattr(args, "log_level"):
        return int(getattr(logging, args.log_level.upper()))
    return logging.DEBUG if int(args.verbose) >= debug_verbosity else logging.INFO


def run_component(
    args: argparse.Namespace,
    serve: Serve,
    *,
    uvloop: bool = False,
    signals: bool = True,
    debug_verbosity: int = 1,
    quiet: Iterable[str] = (),
) -> None:
    """Run ``serve(args, stop)`` as the process's main coroutine, with logging set up first.

    The loggers named in ``quiet`` (``httpx`` logs every request at INFO) show warnings only.  With
    ``signals``, SIGTERM and SIGINT set ``stop``; without (the API server leaves them to uvicorn),
    nobody sets it.  A Ctrl-C that still arrives as ``KeyboardInterrupt`` ends the process quietly.
    """
    logging.basicConfig(level=log_level(args, debug_verbosity), format=LOG_FORMAT, stream=sys.stderr)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        if signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        await serve(args, stop)

    runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    if uvloop:
        with contextlib.suppress(ImportError):
            import uvloop as _uvloop  # comes with uvicorn[standard]; grpc's asyncio support works on it

            runner = _uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(main())


async def run_until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event, name: str) -> bool:
    """Run ``work`` as a task named ``name`` until it ends or ``stop`` is set, then cancel it and
    wait for it.  True if ``stop`` ended it; an error ``work`` raised is raised here."""
    task = asyncio.create_task(work, name=name)
    stopper = asyncio.create_task(stop.wait(), name="signals")
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for t in (task, stopper):
        t.cancel()
    for t in (task, stopper):
        with contextlib.suppress(asyncio.CancelledError):
            await t
    return stopper in done
