"""``python -m qptbench``: the same command line as the ``qptbench`` script."""

from qptbench.cli import app

app(prog_name="qptbench")
