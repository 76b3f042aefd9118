"""Test images built locally (no registry is reachable): a 2 MB busybox image from Debian's busybox-static.

``ensure_busybox_image()`` builds ``minik-test/busybox:1`` once (idempotent: an existing image is
kept); the ``image`` fixture of ``tests/conftest.py`` gives its name to a test.

The image is ``FROM scratch`` with ``/bin/busybox --install -s /bin``, so ``sh``, ``sleep``,
``httpd``, ``wget``, ``nc`` and the other applets are on ``PATH``.  Its default command is ``sh``.
The image is shared across test runs and never removed by tests (it is tiny and building it again
costs a second).
"""

from __future__ import annotations

import threading

BUSYBOX_IMAGE = "minik-test/busybox:1"

_DOCKERFILE = b"""FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL io.minik.test-image=busybox
CMD ["sh"]
"""

_lock = threading.Lock()


def ensure_busybox_image(name: str = BUSYBOX_IMAGE) -> str:
    """Build ``name`` from /bin/busybox unless Docker already has it; return the name.

    Without a Docker engine or a static busybox a test skips (fails with ``CI=true``): see ``prereq``.
    """
    import docker
    import docker.errors

    from kubelet.docker_runtime import busybox_context
    from testkit.prereq import require_busybox, require_docker

    require_docker()

    with _lock:
        client = docker.from_env()
        try:
            try:
                client.images.get(name)
                return name
            except docker.errors.ImageNotFound:
                pass
            binary = require_busybox()
            client.images.build(
                fileobj=busybox_context(_DOCKERFILE, binary), custom_context=True, tag=name, rm=True
            )
            return name
        finally:
            client.close()
