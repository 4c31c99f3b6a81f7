"""Report: a run directory read back (``rundir.py``), tables (pandas + tabulate, ``tables.py``),
plots (matplotlib, ``plots.py``), the paper's reported rows, the summary and published evidence
(``outputs.py``).  The only stage that imports pandas, tabulate or matplotlib.
"""
