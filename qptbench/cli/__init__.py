"""The ``qptbench`` command line: ``app`` is built in ``app.py``."""

from qptbench.cli.app import app

__all__ = ["app"]
