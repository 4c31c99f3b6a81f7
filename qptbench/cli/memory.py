"""``--memory-limit-gb`` and the guard every computing command calls before it builds anything
(the estimates are in ``qptbench.methods.memory``, the check in ``qptbench.dft.memory``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import typer

HELP = ("Refuse to start when the estimated peak memory (DFT tensors held at once, the network, "
        "the processes) exceeds this many GB; 0: no check.  [default: $QPTBENCH_MEMORY_LIMIT_GB, "
        "else 80 % of the memory available now]")

# Remedies in the order worth trying, each named only where the command has the option.
REMEDIES = (("--eri", "--eri df (density fitting)"), ("--window", "a smaller --window"),
            ("--grid-level", "a lower --grid-level"), ("--workers", "fewer --workers"),
            ("--n-val", "fewer --n-val references"))


def memory_limit_option():
    """The option, one definition for every command."""
    return typer.Option(None, "--memory-limit-gb", metavar="GB", help=HELP, show_default=False)


def _options(path: Sequence[str]) -> set[str]:
    """Every option name of the command at ``path`` (``["experiment", "alanine"]``)."""
    from typer.main import get_command

    from qptbench.cli.main import app

    command = get_command(app)
    for name in path:
        command = getattr(command, "commands", {}).get(name)
        if command is None:
            return set()
    return {o for p in command.params for o in p.opts}


def remedy(path: Sequence[str], evaluator: bool = True) -> str:
    """What to change, from the command's own options (and the evaluator's cache where the
    command has an evaluator)."""
    have = _options(path)
    tips = [text for option, text in REMEDIES if option in have]
    # a global option: it fits every command that builds a grid
    tips.append("AO values evaluated per block instead of stored (qptbench --ao-budget-gb GB "
                "before the command)")
    if evaluator:
        tips.append("a smaller QPTBENCH_EVAL_CACHE_GB")
    listed = ", ".join(tips[:-1]) + (" or " if len(tips) > 1 else "") + tips[-1] if tips else ""
    return (f"use {listed}, or " if listed else "") + "raise --memory-limit-gb (0: no check)"


def guard(what: str, need: Mapping[str, float], limit_gb: float | None,
          evaluator: bool = True) -> None:
    """Refuse (``InputError``: one line, exit code 2 through ``friendly``) when ``need`` does
    not fit; ``what`` is the command line ("qptbench experiment alanine")."""
    from qptbench.dft.memory import check_fits

    check_fits(what, need, remedy=remedy(what.split()[1:], evaluator), limit_gb=limit_gb)
