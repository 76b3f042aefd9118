"""Test images built locally (no registry is reachable): a 2 MB busybox image from Debian's busybox-static.

``ensure_busybox_image()`` builds ``minik-test/busybox:1`` once (idempotent: an existing image is
kept), and the ``busybox_image`` session fixture gives its name::

    from tests.images import busybox_image  # noqa: F401  (re-exported fixture)

    def test_x(busybox_image: str) -> None: ...

The image is ``FROM scratch`` with ``/bin/busybox --install -s /bin``, so ``sh``, ``sleep``,
``httpd``, ``wget``, ``nc`` and the other applets are on ``PATH``.  Its default command is ``sh``.
The image is shared across test runs and never removed by tests (it is tiny and building it again
costs a second).
"""

from __future__ import annotations

import io
import shutil
import tarfile
import threading
from pathlib import Path

import pytest

BUSYBOX_IMAGE = "minik-test/busybox:1"
BUSYBOX_BINARY = Path("/bin/busybox")

_DOCKERFILE = b"""FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL io.minik.test-image=busybox
CMD ["sh"]
"""

_lock = threading.Lock()


def _context_tar(binary: Path) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(_DOCKERFILE)
        tar.addfile(info, io.BytesIO(_DOCKERFILE))
        tar.add(str(binary), arcname="busybox")
    buf.seek(0)
    return buf


def ensure_busybox_image(name: str = BUSYBOX_IMAGE) -> str:
    """Build ``name`` from /bin/busybox unless Docker already has it; return the name."""
    import docker
    import docker.errors

    with _lock:
        client = docker.from_env()
        try:
            try:
                client.images.get(name)
                return name
            except docker.errors.ImageNotFound:
                pass
            binary = BUSYBOX_BINARY if BUSYBOX_BINARY.exists() else Path(shutil.which("busybox") or "")
            if not binary.is_file():
                pytest.skip("no busybox binary to build the test image (apt-get install busybox-static)")
            client.images.build(fileobj=_context_tar(binary), custom_context=True, tag=name, rm=True)
            return name
        finally:
            client.close()


@pytest.fixture(scope="session")
def busybox_image() -> str:
    """The name of the local busybox test image, built on first use."""
    return ensure_busybox_image()
