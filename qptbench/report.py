"""What a finished run writes next to its data: the three tables and the two figures.

``qptbench run`` calls :func:`write_run_outputs` at the end; ``tables.check_run`` then finds the
files at ``rundir.OUTPUT_FILES``.
"""

from __future__ import annotations

from pathlib import Path

from qptbench.rundir import PLOTS_DIR, TABLES_DIR, load_run


def write_run_outputs(run_dir: str | Path, paper: bool = True) -> tuple[list[Path], str]:
    """Write RUN_DIR/tables/* (markdown, LaTeX, CSV) and RUN_DIR/plots/* (PNG, SVG); returns the
    paths written and the markdown text of the tables, for printing."""
    from qptbench import plots, tables

    run = load_run(run_dir)
    written = tables.write_tables([run], run.path / TABLES_DIR, paper=paper)
    written += plots.make_plots(run, run.path / PLOTS_DIR)
    text = "\n".join(tables.render(frame, "markdown", tables.TITLES[name])
                     for name, frame in tables.make_tables([run], paper=paper).items())
    return written, text
