"""The wall-clock ledger: one JSON line per costed phase (sample, label, tensors, train, eval).

The ledger is the only source of time in tables.  Every entry carries wall and CPU seconds (CPU
includes reaped child processes, so pool workers count once they are joined), the peak resident
memory so far (``peak_rss_gb``) and enough context to say where the number came from: host,
device, threads, package versions.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

PHASES = ("sample", "label", "tensors", "train", "eval", "reference", "label-share")


def cpu_seconds() -> float:
    """CPU seconds of this process and of its reaped children (joined pool/DataLoader workers);
    a child still running is counted once it has exited and been joined."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


_cpu_seconds = cpu_seconds  # former private name


def _self_peak_kib() -> int | None:
    """This process's own peak resident set (KiB) from /proc/self/status ``VmHWM``.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries that high-water mark across
    ``exec``, so a qptbench process started by a large one (a test suite, a notebook) would
    report its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def own_peak_rss_gb() -> float | None:
    """This process's own peak resident memory, GB (children not included); None where
    unknown."""
    own = _self_peak_kib()
    if own is not None:
        return own * 1024 / 1e9
    try:
        import resource
    except ImportError:
        return None
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9


def peak_rss_gb() -> float | None:
    """Peak resident memory so far, GB: this process's, plus the largest reaped child's (a
    joined pool or DataLoader worker; the kernel keeps the maximum, not a sum); None where
    ``resource`` is missing (Windows).  A child's figure can include what it shared with this
    process when it was forked (the kernel counts those pages in its peak too)."""
    try:
        import resource
    except ImportError:
        return None
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
    own = _self_peak_kib()
    own_bytes = (own * 1024 if own is not None
                 else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)
    return (own_bytes + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale) / 1e9


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(device: str = "cpu") -> dict[str, Any]:
    """Where a number was measured; cheap (no PySCF import)."""
    import torch

    env: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "python": platform.python_version(),
    }
    for package in ("qptbench", "torch", "numpy", "pyscf", "e3nn"):
        env[f"{package}_version"] = _version(package)
    if str(device).startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


class Ledger:
    """Append-only JSONL file; each line is flushed and fsynced so a killed job keeps its past."""

    def __init__(self, path: str | Path, device: str = "cpu", **defaults: Any) -> None:
        """``defaults`` go into every entry (e.g. ``method="qpt"`` in a shared run ledger)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._context = {**environment(device), **defaults}

    def record(self, phase: str, wall_seconds: float, cpu_seconds: float | None = None,
               **extra: Any) -> dict[str, Any]:
        if phase not in PHASES:
            raise ValueError(f"unknown ledger phase {phase!r}; known: {', '.join(PHASES)}")
        entry = {
            "phase": phase,
            "wall_seconds": float(wall_seconds),
            "cpu_seconds": None if cpu_seconds is None else float(cpu_seconds),
            "peak_rss_gb": peak_rss_gb(),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **extra,
            **{k: v for k, v in self._context.items() if k not in extra},
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return entry

    @contextmanager
    def phase(self, phase: str, **extra: Any) -> Iterator[dict[str, Any]]:
        """Time a block; the yielded dict may be filled with more fields before it is written."""
        fields: dict[str, Any] = dict(extra)
        wall, cpu = time.perf_counter(), cpu_seconds()
        yield fields
        self.record(phase, time.perf_counter() - wall, cpu_seconds() - cpu, **fields)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file our jobs append to; a torn last line (job killed mid-write) is
    ignored, never fatal.  A missing file is an error: callers decide whether that is fine."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


read_ledger = read_jsonl  # the ledger is one such file


def totals(entries: list[dict[str, Any]]) -> dict[str, float]:
    """Wall seconds per phase."""
    out: dict[str, float] = {}
    for e in entries:
        out[e["phase"]] = out.get(e["phase"], 0.0) + e["wall_seconds"]
    return out
