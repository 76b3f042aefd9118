"""``minik-scheduler``: assigns pending pods to nodes, as kube-scheduler does."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import httpx

from apimachinery import metrics
from apimachinery.client import Client
from apimachinery.component import add_log_level_flag, run_component, run_until_stopped
from apimachinery.kubeconfig import ClientConfig, load_config
from apimachinery.leaderelection import LeaderElector, add_timing_flags

from .scheduler import BIND_CONCURRENCY, DEFAULT_SCHEDULER_NAME, Scheduler

log = logging.getLogger("scheduler")


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="minik-scheduler", description="minik's pod scheduler")
    p.add_argument(
        "--api-server",
        "--master",
        dest="api_server",
        help="API server URL, or several separated by commas to fail over between (overrides the kubeconfig's servers)",
    )
    p.add_argument("--kubeconfig", help="kubeconfig file to read the server and credentials from")
    p.add_argument(
        "--scheduler-name", default=DEFAULT_SCHEDULER_NAME, help="schedule pods with this schedulerName"
    )
    p.add_argument(
        "--leader-elect",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        help="run as a standby unless holding the kube-system/<scheduler-name> Lease",
    )
    add_timing_flags(p)
    p.add_argument("--pod-initial-backoff-seconds", type=float, default=1.0)
    p.add_argument("--pod-max-backoff-seconds", type=float, default=10.0)
    p.add_argument("--pod-max-in-unschedulable-pods-duration", type=float, default=300.0)
    p.add_argument(
        "--bind-concurrency",
        type=int,
        default=BIND_CONCURRENCY,
        help="bindings sent at once (events too, separately)",
    )
    add_log_level_flag(p)
    metrics.add_metrics_flag(p, 10259)
    return p.parse_args(argv)


def client_config(args: argparse.Namespace) -> ClientConfig:
    if args.kubeconfig:
        return load_config(args.kubeconfig, server=args.api_server)
    if args.api_server:
        return ClientConfig(server=args.api_server)
    return load_config()


def _writer(config: ClientConfig, concurrency: int) -> Client:
    """A client with its own small connection pool, all of whose connections stay open:
    httpx looks at every connection of a pool for each request, so small pools are cheap."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport = httpx.AsyncHTTPTransport(verify=config.ssl_context(), limits=limits)
    return Client(config, transport=transport)


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    config = client_config(args)
    from apimachinery import tracing  # spans for minik trace, shipped to the API server

    tracing.setup("scheduler", config)
    metrics_server = await metrics.serve_from_args(args, "scheduler")  # GET /metrics
    async with (
        Client(config) as client,
        _writer(config, args.bind_concurrency) as binder,
        _writer(config, args.bind_concurrency) as eventer,
    ):
        scheduler = Scheduler(
            client,
            args.scheduler_name,
            initial_backoff=args.pod_initial_backoff_seconds,
            max_backoff=args.pod_max_backoff_seconds,
            max_unschedulable_seconds=args.pod_max_in_unschedulable_pods_duration,
            bind_concurrency=args.bind_concurrency,
            writers=(binder, eventer),
        )
        elector = None
        if args.leader_elect:
            elector = LeaderElector(
                client,
                name=args.scheduler_name
                if args.scheduler_name != DEFAULT_SCHEDULER_NAME
                else "kube-scheduler",
                lease_duration=args.leader_elect_lease_duration,
                renew_deadline=args.leader_elect_renew_deadline,
                retry_period=args.leader_elect_retry_period,
            )
        # like kube-scheduler: losing the lease ends the process (its supervisor restarts it)
        work = elector.run(scheduler.run, reacquire=False) if elector else scheduler.run()
        if await run_until_stopped(work, stop, "leader-election" if elector else "scheduler"):
            log.info("stopping")
        if elector is not None:
            await elector.release()  # a standby takes over at once
    if metrics_server is not None:
        metrics_server.close()


def skip_sniffio_probe() -> None:
    """httpcore tries ``import sniffio`` for every request it sends (to tell asyncio from trio).
    Without the package installed, each try walks ``sys.path`` again -- about a tenth of the
    scheduler's CPU under load. Marking the module absent makes the failed import immediate;
    httpcore then assumes asyncio, which is what runs here."""
    try:
        import sniffio  # noqa: F401
    except ImportError:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> None:
    skip_sniffio_probe()
    run_component(parse_args(argv), serve, uvloop=True)


if __name__ == "__main__":
    main()
