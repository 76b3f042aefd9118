"""The kubectl-like verbs of ``minik``, one module per verb (see docs/cli.md)."""
