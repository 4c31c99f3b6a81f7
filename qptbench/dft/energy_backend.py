"""Which engine computes the DFT energy: ``torch`` (``dft.energy``) or ``jax`` (``jax_engine``
through the torch bridge ``jax_torch``).

Not a level of theory: both engines compute the same energy to ~1e-10 Ha, so results at either
backend are comparable.  Checked here without importing JAX (importing it switches the whole
process to float64 JAX, ``jax_tensors``), so a torch run never loads it.
"""

from __future__ import annotations

from importlib.util import find_spec

from qptbench.errors import InputError

ENERGY_BACKENDS = ("torch", "jax")
JAX_INSTALL = "pip install jax"


def check_energy_backend(name: str) -> str:
    """``name`` if it is a known backend that can run here; else a one-line InputError."""
    if name not in ENERGY_BACKENDS:
        raise InputError(f"unknown energy backend {name!r}; choose from "
                         f"{', '.join(ENERGY_BACKENDS)}")
    if name == "jax" and find_spec("jax") is None:
        raise InputError(f"--energy-backend jax needs JAX, which is not installed: {JAX_INSTALL}")
    return name
