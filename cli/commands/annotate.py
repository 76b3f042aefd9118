"""``minik annotate``: add, change or remove annotations (``key=value``, ``key-``)."""

from __future__ import annotations

from .label import metadata_command

EXAMPLES = """
Examples:

  minik annotate pod web-0 description='my frontend'
  minik annotate deploy/web owner=lab --overwrite
  minik annotate deploy/web owner-             # remove it
"""


annotate = metadata_command("annotations")
