"""The controller manager: one process, one informer factory, many controllers, one leader.

While this process holds the Lease it builds a :class:`SharedInformerFactory`, the selected
controllers (which register their informers and handlers on it), starts the informers, and runs
every controller.  When the lease is lost everything of that term is cancelled and thrown away;
a new term starts from fresh caches.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from apimachinery.client import Client
from apimachinery.events import EventRecorder
from apimachinery.informer import SharedInformerFactory

from .base import Controller, ControllerContext, Options
from .bootstrap import BootstrapSigner, TokenCleaner
from .certificates import CSRApprovingController, CSRSigningController
from .cronjob import CronJobController
from .daemonset import DaemonSetController
from .deployment import DeploymentController
from .disruption import DisruptionController
from .endpoints import EndpointsController
from .endpointslice import EndpointSliceController
from .garbagecollector import GarbageCollector
from .job import JobController
from .leaderelection import LeaderElector
from .namespace import NamespaceController
from .nodeipam import NodeIPAMController
from .nodelifecycle import NodeLifecycleController
from .persistentvolume import PersistentVolumeController
from .podautoscaler import HPAController
from .podgc import PodGCController
from .replicaset import ReplicaSetController
from .resourcequota import ResourceQuotaController
from .rootcacert import RootCACertPublisher
from .serviceaccount import ServiceAccountController
from .statefulset import StatefulSetController

log = logging.getLogger(__name__)

CONTROLLERS: dict[str, Callable[[ControllerContext], Controller]] = {
    "replicaset": ReplicaSetController,
    "deployment": DeploymentController,
    "garbagecollector": GarbageCollector,
    "namespace": NamespaceController,
    "nodelifecycle": NodeLifecycleController,
    "endpoints": EndpointsController,
    "endpointslice": EndpointSliceController,
    "serviceaccount": ServiceAccountController,
    "job": JobController,
    "statefulset": StatefulSetController,
    "daemonset": DaemonSetController,
    "nodeipam": NodeIPAMController,
    "persistentvolume-binder": PersistentVolumeController,
    "root-ca-cert-publisher": RootCACertPublisher,
    "resourcequota": ResourceQuotaController,
    "cronjob": CronJobController,
    "podgc": PodGCController,
    "disruption": DisruptionController,
    "horizontalpodautoscaling": HPAController,
    "csrapproving": CSRApprovingController,
    "csrsigning": CSRSigningController,
    "bootstrapsigner": BootstrapSigner,
    "tokencleaner": TokenCleaner,
}


def select_controllers(spec: str) -> list[str]:
    """kube-controller-manager's ``--controllers``: ``*`` (all), names, ``-name`` to disable."""
    names = [n.strip() for n in spec.split(",") if n.strip()] or ["*"]
    chosen: list[str] = []
    star = "*" in names
    for name in CONTROLLERS:
        if f"-{name}" in names:
            continue
        if star or name in names:
            chosen.append(name)
    unknown = [n for n in names if n != "*" and n.lstrip("-") not in CONTROLLERS]
    if unknown:
        raise ValueError(f"unknown controllers: {', '.join(unknown)}; known: {', '.join(CONTROLLERS)}")
    return chosen


class ControllerManager:
    def __init__(
        self,
        client: Client,
        controllers: list[str],
        options: Options | None = None,
        leader_elect: bool = True,
        lease_namespace: str = "kube-system",
        lease_name: str = "minik-controller-manager",
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        self.client = client
        self.names = controllers
        self.options = options or Options()
        self.elector = (
            LeaderElector(
                client, lease_namespace, lease_name, None, lease_duration, renew_deadline, retry_period
            )
            if leader_elect
            else None
        )

    async def lead(self) -> None:
        """One term: build and run everything until cancelled."""
        factory = SharedInformerFactory(self.client)
        recorders: list[EventRecorder] = []

        def recorder(component: str) -> EventRecorder:
            r = EventRecorder(self.client, component, socket.gethostname())
            recorders.append(r)
            return r

        ctx = ControllerContext(self.client, factory, recorder, self.options)
        controllers = [CONTROLLERS[name](ctx) for name in self.names]
        factory.start()
        tasks = [asyncio.create_task(r.run(), name=f"events-{r.component}") for r in recorders]
        tasks += [asyncio.create_task(c.run(), name=c.name) for c in controllers]
        log.info("running controllers: %s", ", ".join(self.names))
        try:
            await asyncio.gather(*tasks)
        finally:
            for c in controllers:
                c.queue.shut_down()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await factory.stop()

    async def run(self) -> None:
        if self.elector is None:
            await self.lead()
            return
        try:
            await self.elector.run(self.lead)
        finally:
            await asyncio.shield(self.elector.release())
