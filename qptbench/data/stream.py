"""The training stream: conformations -> prepared samples (DataLoader workers) -> a window.

Tensor preparation (PySCF integrals, grid, minao biases) costs about as much as several training
steps, so, as in the QPT paper, each prepared molecule is reused for ``window`` consecutive
updates: after molecule j is prepared the loop trains once on each of molecules j-window+1..j.
Workers prepare the next molecules meanwhile.

Resumable exactly: a source maps an index to a conformation deterministically, and
``WindowedStream(...)(consumed)`` restarts at the item a fresh run would have produced next.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import torch

Source = Callable[[int], Any]  # index -> conformation (deterministic)


class _Prepared(torch.utils.data.Dataset):
    def __init__(self, source: Source, prepare: Callable[[Any], Any]) -> None:
        self.source, self.prepare = source, prepare

    def __len__(self) -> int:  # a map-style dataset needs a length; the sampler decides order
        return 2**62

    def __getitem__(self, index: int) -> Any:
        return self.prepare(self.source(index))


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)  # workers share the cores with the training process


class _CountFrom:
    def __init__(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[int]:
        i = self.start
        while True:
            yield i
            i += 1


def window_position(consumed: int, window: int) -> tuple[int, int]:
    """(molecule j, position in its window) of micro-batch number ``consumed``.

    Molecule j contributes min(j + 1, window) items: the window is filling for j < window.
    """
    filling = window * (window + 1) // 2 - window  # items yielded by molecules 0..window-2
    if consumed < filling:
        j = 0
        while consumed >= j + 1:
            consumed -= j + 1
            j += 1
        return j, consumed
    rest = consumed - filling
    return window - 1 + rest // window, rest % window


class WindowedStream:
    """Callable ``(consumed) -> iterator`` for ``training.loop.train``: endless prepared samples.

    Closing the iterator shuts its DataLoader workers down and joins them.
    """

    def __init__(self, source: Source, prepare: Callable[[Any], Any], window: int = 6,
                 workers: int = 0, prefetch: int = 2) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.source, self.prepare, self.window = source, prepare, window
        self.workers, self.prefetch = workers, prefetch
        self.prepared = 0  # molecules prepared by this process's loaders (for the ledger)

    def _loader(self, start: int) -> Iterator[Any]:
        kwargs: dict[str, Any] = {}
        if self.workers > 0:
            kwargs = {"num_workers": self.workers, "prefetch_factor": self.prefetch,
                      "persistent_workers": False, "worker_init_fn": _one_thread}
        loader = torch.utils.data.DataLoader(
            _Prepared(self.source, self.prepare), batch_size=None,
            sampler=_CountFrom(start), **kwargs)
        return iter(loader)

    def __call__(self, consumed: int = 0) -> Iterator[Any]:
        j, pos = window_position(consumed, self.window)
        first = max(0, j - self.window + 1)
        loader = self._loader(first)
        recent: deque = deque(maxlen=self.window)
        try:
            for _ in range(first, j):  # refill the window a resumed run had
                recent.append(next(loader))
                self.prepared += 1
            while True:
                recent.append(next(loader))
                self.prepared += 1
                items = list(recent)
                yield from items[pos:]
                pos = 0
        finally:  # close() (train does, before booking): workers exit and are joined now, so
            # their CPU time is in this process's children times (ledger.cpu_seconds)
            shutdown = getattr(loader, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
