"""QPT trained with the implicit DFT loss: no labels in the loss, ever.

Loss = the energy after the DFT-iteration sandwich started from H = H_init + A.  Schedule as in the
paper: one iteration early on, a density-mixed one (α = 0.5) added at ``mix_at`` (the paper: step
150k of 200k), and a final unmixed one for validation.  PySCF labels are used only to score.

Here: the run config and presets, sample preparation (``Preparer``, also run in DataLoader
workers), the loss, the predictor (H in each geometry's own frame) and inference timing; the
conformation sources are in ``qpt_sources.py``.  QPT does not score itself: its run
(``qptbench.methods.qpt``) hands predictions to the shared evaluator (``qptbench.evaluation``),
which also scores the *zero model* (A = 0: the minao Fock matrix followed by the same DFT
iterations); a trained network is only interesting where it beats that.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qptbench.dft.energy import energy as dft_energy
from qptbench.dft.energy import sandwich
from qptbench.dft.frames import ao_rotation
from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.ledger import Ledger, cpu_seconds
from qptbench.models.qpt import HEADS, QPT, preset_config
from qptbench.models.qpt_inputs import QPTSample, Vocabulary, prepare_sample
from qptbench.training.loop import SkipStep, TrainConfig

VALIDATION_MIXES = (0.5, 0.0)  # the paper's 1 + 3: D1, mixed D2, unmixed D3
FIXES_H = False  # trained on the energy alone: H is fixed only up to its occupied subspace
INFERENCE_MIN_MOLECULES = 10


@dataclass(frozen=True)
class QPTRunConfig:
    molecule: str = "water"
    model: str = "tiny"                 # QPT preset: tiny | small | gpt-medium
    head: str = "psd"                   # output head: psd (the paper's A = QQᵀ/√d) | signed
    steps: int = 1500
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 50
    mix_at: float = 0.75                # fraction of steps after which training uses 2 iterations
    window: int = 6                     # updates per prepared molecule (paper: 6-8)
    sampler: str = "displaced"          # displaced | md | dataset
    displacement_angstrom: float = 0.05  # 'displaced': Gaussian std per coordinate
    dataset: str | None = None          # 'dataset' sampler / validation references
    val: str | None = None              # references from this file's val split (else dataset's)
    n_val: int = 8
    xc: str = "b3lyp5"
    basis: str = "def2-svp"
    grid_level: int = 3
    workers: int = 1
    eval_every: int = 250
    eval_points: int = 0                # > 0: evaluate at k/eval_points of the budget (or steps)
    seed: int = 0
    explode_ha: float = 1.0             # an energy this far above the zero model's is skipped
    checkpoint_every: int = 50

    def level(self) -> LevelOfTheory:
        return LevelOfTheory(basis=self.basis, xc=self.xc, grid_level=self.grid_level)

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, lr=self.lr, min_lr=self.min_lr,
                           warmup_steps=self.warmup_steps, log_every=10,
                           eval_every=self.eval_every, eval_points=self.eval_points,
                           checkpoint_every=self.checkpoint_every, seed=self.seed)


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(model="tiny", steps=30, eval_every=0, n_val=2, grid_level=1, window=3,
                  warmup_steps=5, workers=0),
    "tiny": dict(model="tiny", steps=1500, n_val=8),
    "small": dict(model="small", steps=20000, lr=2e-4, min_lr=2e-5, n_val=16, eval_every=1000),
    # The paper: GPT-medium, lr 1e-4/16/√5 decaying to 1e-6/16 at 200k, warmup 100, window 6-8.
    "paper": dict(model="gpt-medium", steps=200_000, lr=1e-4 / 16 / 5**0.5, min_lr=1e-6 / 16,
                  warmup_steps=100, n_val=100, eval_every=5000, window=7, sampler="md"),
}


def make_config(preset: str, **overrides: Any) -> QPTRunConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    cfg = replace(QPTRunConfig(), **{**PRESETS[preset], **given})
    if cfg.head not in HEADS:
        raise ValueError(f"unknown output head {cfg.head!r}; choose from {', '.join(HEADS)}")
    return cfg


# ---- samples, loss, predictions --------------------------------------------------------------

@dataclass
class Prepared:
    sample: QPTSample
    e_zero_ha: float  # one-iteration energy of the zero model (A = 0): the explosion yardstick
    wall_seconds: float = 0.0  # what preparing it cost, measured where it ran (a worker or not)
    cpu_seconds: float = 0.0
    booked: bool = False       # set by the loss once it has counted this sample's cost


class Preparer:
    """Runs in DataLoader workers: geometry -> QPTSample (CPU; moved to the device later)."""

    def __init__(self, vocab: Vocabulary, level: LevelOfTheory) -> None:
        self.vocab, self.level = vocab, level

    def __call__(self, molecule: Molecule) -> Prepared:
        tic, cpu = time.perf_counter(), cpu_seconds()
        sample = prepare_sample(molecule, self.vocab, self.level)
        with torch.no_grad():
            e0 = float(dft_energy(sample.tensors, sample.h_init))
        return Prepared(sample, e0, time.perf_counter() - tic, cpu_seconds() - cpu)


class ImplicitDFTLoss:
    """E(H_init + A) after 1 (or, once ``mix_at`` of training is done, 2) DFT iterations, Ha.

    "Done" is the fraction the training loop reports (``set_progress``): of the steps, or of the
    wall-clock budget when one is set, so a budgeted run reaches the mixed iteration too.  The
    loss also totals the preparation cost of each new sample it sees (``book``).
    """

    def __init__(self, device: torch.device, mix_at: float, steps: int,
                 explode_ha: float) -> None:
        self.device, self.mix_at, self.steps, self.explode_ha = device, mix_at, steps, explode_ha
        self.step, self.fraction = 0, 0.0
        self.prep_wall = self.prep_cpu = 0.0
        self.prep_n = 0

    def set_step(self, step: int) -> None:
        self.step = step
        self.fraction = max(self.fraction, step / max(self.steps, 1))

    def set_progress(self, fraction: float) -> None:
        self.fraction = max(self.fraction, float(fraction))

    def book(self, ledger: Ledger, workers: int) -> None:
        """Ledger entry for the training samples' tensor preparation.  In-process (workers = 0)
        it ran inside the training loop's wall-clock, so the entry says so and the report moves
        it from training to tensor preparation; in workers it overlapped training, so its wall
        time is not the route's (kept as ``hidden_wall_seconds``) but its CPU time is."""
        if not self.prep_n:
            return
        inside = workers == 0
        ledger.record("tensors", self.prep_wall if inside else 0.0, self.prep_cpu,
                      what="training samples", n=self.prep_n, workers=workers,
                      included_in="train" if inside else "",
                      hidden_wall_seconds=0.0 if inside else self.prep_wall)
        self.prep_wall = self.prep_cpu = 0.0
        self.prep_n = 0

    def __call__(self, model: QPT, item: Prepared) -> tuple[torch.Tensor, dict[str, float]]:
        if not item.booked:
            item.booked = True
            self.prep_wall += item.wall_seconds
            self.prep_cpu += item.cpu_seconds
            self.prep_n += 1
        sample = item.sample.to(self.device)
        tic = time.perf_counter()
        h = model(sample)
        tac = time.perf_counter()
        mixes = (0.5,) if self.fraction >= self.mix_at else ()
        e = dft_energy(sample.tensors, h, mixes)
        toc = time.perf_counter()
        above = float(e.detach()) - item.e_zero_ha
        if above > self.explode_ha:
            raise SkipStep(f"energy {above:.3g} Ha above the zero model")
        return e, {"energy_ha": float(e.detach()), "above_zero_model_mha": 1e3 * above,
                   "n_iterations": 1 + len(mixes), "network_ms": 1e3 * (tac - tic),
                   "energy_ms": 1e3 * (toc - tac)}


class Predictor:
    """QPT's predictions for fixed geometries, in each geometry's own frame (PySCF AO order).

    The samples (canonical-frame tensors, tokens, biases) and the AO rotations back to the input
    frame are built once per geometry and kept; this is what the evaluator is handed.
    """

    def __init__(self, molecules: Sequence[Molecule], preparer: Preparer,
                 device: torch.device, keep: bool = True, progress: bool = False) -> None:
        """``keep=False``: prepare each geometry again at every call instead of holding all
        their tensors (the evaluator's memory rule, ``evaluation.evaluator.TensorCache``)."""
        from qptbench.progress import make_bar

        self.molecules, self.preparer, self.device = list(molecules), preparer, device
        self.samples = None
        if keep:
            bar = make_bar(len(self.molecules), "QPT inputs: held-out molecules",
                           disable=not progress, unit="mol")
            self.samples = []
            for m in self.molecules:
                self.samples.append(self._prepare(m))
                bar.update(1)
            bar.close()

    def _prepare(self, molecule: Molecule) -> tuple[QPTSample, torch.Tensor]:
        sample = self.preparer(molecule).sample.to(self.device)
        u = torch.as_tensor(ao_rotation(sample.shell_ls, sample.rotation), device=self.device)
        return sample, u

    @torch.no_grad()
    def __call__(self, model: QPT) -> list[np.ndarray]:
        out = []
        for i, mol in enumerate(self.molecules):
            sample, u = self.samples[i] if self.samples is not None else self._prepare(mol)
            h = model(sample).to(torch.float64)
            out.append((u @ h @ u.mT).cpu().numpy())
        return out


def measure_inference(model: QPT, molecules: Sequence[Molecule], preparer: Preparer,
                      device: torch.device, pyscf_seconds: Sequence[float],
                      min_molecules: int = INFERENCE_MIN_MOLECULES) -> dict[str, Any]:
    """Seconds per molecule, medians over ≥ ``min_molecules`` timed calls (the held-out
    geometries, cycled if there are fewer) after one untimed warm-up call: tensor preparation,
    network, the 3 DFT iterations; PySCF's SCF from its labels."""
    from qptbench.runtime import synchronize

    model.eval()
    times: dict[str, list[float]] = {"tensor": [], "network": [], "dft": []}
    order = [molecules[0]] + [molecules[i % len(molecules)]
                              for i in range(max(min_molecules, len(molecules)))]
    with torch.no_grad():
        for n, mol in enumerate(order):
            tic = time.perf_counter()
            sample = preparer(mol).sample.to(device)
            synchronize(device)
            tac = time.perf_counter()
            h = model(sample)
            synchronize(device)
            toc = time.perf_counter()
            sandwich(sample.tensors, h, VALIDATION_MIXES).energy.item()
            done = time.perf_counter()
            if n == 0:
                continue  # warm-up: first-call allocations and lazy initialisation
            times["tensor"].append(tac - tic)
            times["network"].append(toc - tac)
            times["dft"].append(done - toc)
    return {**{f"{k}_seconds": float(np.median(v)) for k, v in times.items()},
            "pyscf_scf_seconds": float(np.median(pyscf_seconds)), "n": len(times["network"]),
            "statistic": "median after 1 warm-up call", "device": str(device)}


def build_model(cfg: QPTRunConfig, device: torch.device) -> tuple[QPT, Vocabulary]:
    vocab = Vocabulary.from_basis(cfg.basis)
    torch.manual_seed(cfg.seed)
    return QPT(preset_config(cfg.model, vocab.size, head=cfg.head)).to(device), vocab


def load_model(out_dir: str | Path, device: torch.device) -> tuple[QPT, QPTRunConfig]:
    """The trained model of a run directory (its last checkpoint), loaded without pickles."""
    out = Path(out_dir)
    cfg = QPTRunConfig(**json.loads((out / "config.json").read_text()))
    model, _ = build_model(cfg, device)
    ckpt = torch.load(out / "checkpoint.pt", map_location=device, weights_only=True)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, cfg


def predict(out_dir: str | Path, molecules: Sequence[Molecule], device: torch.device
            ) -> list[np.ndarray]:
    """Predicted H of each molecule in its own frame (PySCF AO order, Ha), from a run directory."""
    model, cfg = load_model(out_dir, device)
    preparer = Preparer(Vocabulary.from_basis(cfg.basis), cfg.level())
    return Predictor(molecules, preparer, device)(model)
