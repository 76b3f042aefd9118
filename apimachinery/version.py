"""minik's version, in one place: the package metadata, ``minik version`` and the API server's
``/version`` all read it from here."""

from __future__ import annotations

__version__ = "0.1.0"

# The Kubernetes API minik's served kinds and behaviour follow (what ``/version`` reports as the
# server's major/minor, so clients pick matching behaviour).
KUBERNETES_VERSION = "1.32.0"

# What the API server's ``/version`` and each node's kubelet report: the Kubernetes release minik
# follows, with minik's own version as a pre-release suffix (``v1.32.0-minik.0.1.0``): valid
# semver, so clients read the release from it.
COMPONENT_VERSION = f"v{KUBERNETES_VERSION}-minik.{__version__}"
