"""Progress bars shared by labelling and training: one format, one factory.

tqdm's default layout lets the bar shrink to nothing once postfix fields (loss, ΔE, …) fill the
line; ``BAR_FORMAT`` gives the bar a fixed width of 20 cells so it stays visible, and every bar
carries a name (``desc``) so a log with several bars says which is which.
"""

from __future__ import annotations

from typing import Any

BAR_FORMAT = ("{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} "
              "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")


def make_bar(total: int, desc: str, disable: bool = False, initial: int = 0,
             unit: str = "it") -> Any:
    """A tqdm bar named ``desc`` with ``BAR_FORMAT``; ``initial`` for resumed loops."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=disable, initial=initial, unit=unit,
                bar_format=BAR_FORMAT, dynamic_ncols=True)
