"""Entry point of ``minik-proxy`` (see :mod:`proxy.command`)."""

from __future__ import annotations

from .command import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
