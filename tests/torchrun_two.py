"""Two CPU ranks under torchrun for the data-parallel tests (one OpenMP thread each, so the two
share the machine's cores without oversubscribing them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TORCHRUN = Path(sys.executable).with_name("torchrun")


def torchrun_two(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(TORCHRUN), "--standalone", "--nproc-per-node", "2", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)
