"""A local Debian image with Python 3 and the official ``kubernetes`` client, for in-pod tests.

No registry is reachable, so the image is made here, once, and kept (cached by its name):

* ``minik-test/debian-python:bookworm``: ``debootstrap --variant=minbase --include=python3
  bookworm DIR`` imported with ``docker import`` (about a minute; Debian's packages are the only
  download);
* ``minik-test/python-kubernetes:1`` (:func:`ensure_python_client_image`): that image plus a layer
  with the ``kubernetes`` package and everything it requires, copied file by file from this
  interpreter's site-packages into ``/usr/local/lib/python3.11/dist-packages`` (Debian's Python
  is 3.11, as the test environment's is: compiled extensions are copied too and load; where the
  minor versions differ the packages the client needs are pure Python or fall back to it).

``debootstrap`` is installed with apt-get when it is missing.  Without Docker a test skips (fails
with ``CI=true``), as for the busybox image.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

BASE_IMAGE = "minik-test/debian-python:bookworm"
CLIENT_IMAGE = "minik-test/python-kubernetes:1"
SUITE = "bookworm"
SITE = "usr/local/lib/python3.11/dist-packages"

_lock = threading.Lock()


def _image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def _ensure_debootstrap() -> str:
    found = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap") else None
    )
    if found:
        return found
    from testkit.prereq import require

    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "debootstrap"], check=True, capture_output=True, env=env
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        require(False, f"debootstrap ({exc})", "apt-get install debootstrap")
    return shutil.which("debootstrap") or "/usr/sbin/debootstrap"


def ensure_python_image(name: str = BASE_IMAGE) -> str:
    """Debian bookworm (minbase) with python3, imported into Docker as ``name`` unless it exists."""
    from testkit.prereq import require, require_docker, require_root

    require_docker()
    with _lock:
        if _image_exists(name):
            return name
        require_root()  # debootstrap makes device nodes and chroots
        debootstrap = _ensure_debootstrap()
        with tempfile.TemporaryDirectory(prefix="minik-debootstrap-") as tmp:
            root = Path(tmp) / "root"
            proc = subprocess.run(
                [debootstrap, "--variant=minbase", "--include=python3", SUITE, str(root)],
                capture_output=True,
                text=True,
            )
            require(
                proc.returncode == 0,
                f"Debian's packages for debootstrap (exit {proc.returncode}: {proc.stderr[-500:]})",
                "a reachable Debian mirror (the one apt uses)",
            )
            shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
            tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
            imported = subprocess.run(
                [
                    "docker",
                    "import",
                    "--change",
                    'CMD ["python3"]',
                    "--change",
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "-",
                    name,
                ],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
            )
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait()
            if imported.returncode != 0 or tar.returncode != 0:
                raise RuntimeError(f"docker import failed: {imported.stderr[-2000:]}")
        return name


def _requirement_names(dist: importlib.metadata.Distribution) -> list[str]:
    """The distributions ``dist`` requires for this interpreter (no extras)."""
    out = []
    for req in dist.requires or []:
        if ";" in req:
            spec, marker = req.split(";", 1)
            if "extra" in marker:
                continue
            try:
                from packaging.markers import Marker

                if not Marker(marker.strip()).evaluate():
                    continue
            except ImportError:
                pass
        else:
            spec = req
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)", spec)
        if m:
            out.append(m.group(1))
    return out


def client_distributions(root: str = "kubernetes") -> list[importlib.metadata.Distribution]:
    """``root`` and every distribution it requires, transitively."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen[key] = dist
        todo.extend(_requirement_names(dist))
    return list(seen.values())


def _client_context(directory: Path) -> None:
    """A build context in ``directory``: the Dockerfile and site/ with the client's files."""
    site = directory / "site"
    for dist in client_distributions():
        for rel in dist.files or []:
            src = Path(str(dist.locate_file(rel))).resolve()
            parts = Path(str(rel)).parts
            if not src.is_file() or ".." in parts or "__pycache__" in parts or Path(str(rel)).is_absolute():
                continue
            target = site / str(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    (directory / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY site/ /{SITE}/\n")


def ensure_python_client_image(name: str = CLIENT_IMAGE) -> str:
    """:data:`BASE_IMAGE` plus the ``kubernetes`` client and its requirements, unless ``name`` exists."""
    ensure_python_image()
    with _lock:
        if _image_exists(name):
            return name
        with tempfile.TemporaryDirectory(prefix="minik-pyclient-") as tmp:
            _client_context(Path(tmp))
            proc = subprocess.run(["docker", "build", "-q", "-t", name, tmp], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"docker build of {name} failed: {proc.stderr[-2000:]}")
        check = subprocess.run(
            ["docker", "run", "--rm", name, "python3", "-c", "import kubernetes.config, kubernetes.client"],
            capture_output=True,
            text=True,
        )
        if check.returncode != 0:
            subprocess.run(["docker", "rmi", name], capture_output=True)
            raise RuntimeError(f"the kubernetes client does not import in {name}: {check.stderr[-2000:]}")
        return name


if __name__ == "__main__":  # build both images: python -m testkit.pyimage
    print(ensure_python_client_image(), file=sys.stderr)
