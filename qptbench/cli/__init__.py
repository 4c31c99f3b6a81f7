"""The ``qptbench`` command line: ``app`` is built in ``main.py`` and handed out from here.

Importing ``qptbench.cli`` runs nothing: ``app`` is looked up on first use, so a command module
(``qptbench.cli.run``, ...) never triggers the app that imports it, not even through its package.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:  # PEP 562: `from qptbench.cli import app`, the console script
    if name == "app":
        from qptbench.cli.main import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
