"""Dask worker preload for tests/test_dask_cluster.py (``dask worker --preload THIS_FILE``).

Makes each label task in this worker slow enough to kill the worker in the middle of one, and
leaves a marker ``<index>.<pid>`` in ``$QPTBENCH_TEST_MARKS`` when a task starts, so the test
knows which worker holds which conformation.  The client pickles ``label_task`` by reference
(module and name), so replacing the module attribute here is what the worker runs; the
labelling code itself is untouched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from qptbench.data import labelling

# Dask imports a preload file twice (the second time as a reload, in the same namespace): wrap
# the original function, never our own wrapper, or each task would call itself forever.
_label_task = getattr(labelling.label_task, "__wrapped__", labelling.label_task)


def slow_label_task(task: tuple) -> dict:
    Path(os.environ["QPTBENCH_TEST_MARKS"], f"{task[0]}.{os.getpid()}").touch()
    time.sleep(float(os.environ.get("QPTBENCH_TEST_SLEEP", "0.5")))
    return _label_task(task)


slow_label_task.__wrapped__ = _label_task
labelling.label_task = slow_label_task
