"""QPT trained with the implicit DFT loss: no labels in the loss, ever.

Loss = the energy after the DFT-iteration sandwich started from H = H_init + A.  Schedule as in the
paper: one iteration early on, a density-mixed one (α = 0.5) added at ``mix_at`` (the paper: step
150k of 200k), and a final unmixed one for validation.  PySCF labels are used only to score.

Validation compares QPT with the *zero model* (A = 0: the minao Fock matrix followed by the same
DFT iterations); a trained network is only interesting where it beats that.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qptbench.energy import energy as dft_energy
from qptbench.energy import sandwich
from qptbench.frames import ao_rotation
from qptbench.geometry import Molecule
from qptbench.ledger import Ledger
from qptbench.level import LevelOfTheory
from qptbench.metrics import HARTREE_TO_MEV, energy_error_mev, hamiltonian_metrics, mean_metrics
from qptbench.models.qpt import QPT, count_parameters, preset_config
from qptbench.models.qpt_inputs import QPTSample, Vocabulary, prepare_sample
from qptbench.train import SkipStep, TrainConfig, train

VALIDATION_MIXES = (0.5, 0.0)  # the paper's 1 + 3: D1, mixed D2, unmixed D3


@dataclass(frozen=True)
class QPTRunConfig:
    molecule: str = "water"
    model: str = "tiny"                 # QPT preset: tiny | small | gpt-medium
    steps: int = 1500
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 50
    mix_at: float = 0.75                # fraction of steps after which training uses 2 iterations
    window: int = 6                     # updates per prepared molecule (paper: 6-8)
    sampler: str = "displaced"          # displaced | md | dataset
    displacement_angstrom: float = 0.05  # 'displaced': Gaussian std per coordinate
    dataset: str | None = None          # 'dataset' sampler / validation references
    n_val: int = 8
    xc: str = "b3lyp5"
    basis: str = "def2-svp"
    grid_level: int = 3
    workers: int = 1
    eval_every: int = 250
    seed: int = 0
    explode_ha: float = 1.0             # an energy this far above the zero model's is skipped
    checkpoint_every: int = 50

    def level(self) -> LevelOfTheory:
        return LevelOfTheory(basis=self.basis, xc=self.xc, grid_level=self.grid_level)

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, lr=self.lr, min_lr=self.min_lr,
                           warmup_steps=self.warmup_steps, log_every=10,
                           eval_every=self.eval_every,
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
    return replace(QPTRunConfig(), **{**PRESETS[preset], **given})


# ---- conformation sources: index -> Molecule, deterministic ---------------------------------

class DisplacedSource:
    """The built-in geometry with every coordinate moved by N(0, s²) Å; split by seed stream."""

    def __init__(self, base: Molecule, scale: float, seed: int, stream: int) -> None:
        self.base, self.scale, self.seed, self.stream = base, scale, seed, stream

    def __call__(self, index: int) -> Molecule:
        seq = np.random.SeedSequence([self.seed, self.stream, index])
        return self.base.displaced(int(seq.generate_state(1)[0]), self.scale)


class MDSource:
    """Frames of a GFN2-xTB MD trajectory (``data.md``), cached as they are generated."""

    def __init__(self, base: Molecule, seed: int) -> None:
        self.base, self.seed, self.frames, self._it = base, seed, [], None

    def __call__(self, index: int) -> Molecule:
        if self._it is None:
            from qptbench.data.md import md_conformations

            self._it = md_conformations(self.base, seed=self.seed)
        while len(self.frames) <= index:
            self.frames.append(next(self._it))
        return self.frames[index]


class DatasetSource:
    """Conformations of a dataset file's split, drawn uniformly with a seeded generator."""

    def __init__(self, path: str, split: str, seed: int) -> None:
        from qptbench.data.store import Dataset

        with Dataset.open(path) as ds:
            self.indices = np.asarray(ds.split(split))
            self.molecules = {int(i): ds.molecule(int(i)) for i in self.indices}
        if self.indices.size == 0:
            raise ValueError(f"{path}: split {split!r} is empty")
        self.seed = seed

    def __call__(self, index: int) -> Molecule:
        rng = np.random.default_rng([self.seed, index])
        return self.molecules[int(rng.choice(self.indices))]


def make_source(cfg: QPTRunConfig, stream: int) -> Callable[[int], Molecule]:
    base = Molecule.builtin(cfg.molecule)
    if cfg.sampler == "displaced":
        return DisplacedSource(base, cfg.displacement_angstrom, cfg.seed, stream)
    if cfg.sampler == "md":
        return MDSource(base, seed=cfg.seed * 1000 + stream)
    if cfg.sampler == "dataset":
        if cfg.dataset is None:
            raise ValueError("sampler 'dataset' needs --dataset FILE")
        return DatasetSource(cfg.dataset, "train" if stream == 0 else "val", cfg.seed)
    raise ValueError(f"unknown sampler {cfg.sampler!r}; choose displaced, md or dataset")


# ---- samples, references, loss, evaluation -----------------------------------------------------

@dataclass
class Prepared:
    sample: QPTSample
    e_zero_ha: float  # one-iteration energy of the zero model (A = 0): the explosion yardstick


class Preparer:
    """Runs in DataLoader workers: geometry -> QPTSample (CPU; moved to the device later)."""

    def __init__(self, vocab: Vocabulary, level: LevelOfTheory) -> None:
        self.vocab, self.level = vocab, level

    def __call__(self, molecule: Molecule) -> Prepared:
        sample = prepare_sample(molecule, self.vocab, self.level)
        with torch.no_grad():
            e0 = float(dft_energy(sample.tensors, sample.h_init))
        return Prepared(sample, e0)


class ImplicitDFTLoss:
    """E(H_init + A) after 1 (or, from ``mix_step`` on, 2) DFT iterations, in Hartree."""

    def __init__(self, device: torch.device, mix_step: int, explode_ha: float) -> None:
        self.device, self.mix_step, self.explode_ha, self.step = device, mix_step, explode_ha, 0

    def set_step(self, step: int) -> None:
        self.step = step

    def __call__(self, model: QPT, item: Prepared) -> tuple[torch.Tensor, dict[str, float]]:
        sample = item.sample.to(self.device)
        tic = time.perf_counter()
        h = model(sample)
        tac = time.perf_counter()
        mixes = (0.5,) if self.step >= self.mix_step else ()
        e = dft_energy(sample.tensors, h, mixes)
        toc = time.perf_counter()
        above = float(e.detach()) - item.e_zero_ha
        if above > self.explode_ha:
            raise SkipStep(f"energy {above:.3g} Ha above the zero model")
        return e, {"energy_ha": float(e.detach()), "above_zero_model_mha": 1e3 * above,
                   "n_iterations": 1 + len(mixes), "network_ms": 1e3 * (tac - tic),
                   "energy_ms": 1e3 * (toc - tac)}


@dataclass
class Reference:
    molecule: Molecule      # input frame
    energy: float           # Ha
    fock: np.ndarray        # converged H*, input frame
    overlap: np.ndarray
    n_occ: int
    seconds: float          # PySCF SCF wall time for this label


def make_references(cfg: QPTRunConfig, out_dir: Path, ledger: Ledger) -> list[Reference]:
    """PySCF labels of the validation conformations, cached in the run directory."""
    cache = out_dir / "references.pt"
    if cache.exists():
        return torch.load(cache, weights_only=False)
    refs: list[Reference] = []
    if cfg.dataset is not None and cfg.sampler == "dataset":
        from qptbench.data.store import Dataset

        with Dataset.open(cfg.dataset) as ds, ledger.phase("reference", source=cfg.dataset):
            for i in ds.split("val")[: cfg.n_val]:
                lab = ds.label(int(i))
                refs.append(Reference(ds.molecule(int(i)), lab.energy, lab.fock, lab.overlap,
                                      lab.n_occ, lab.wall_seconds))
    else:
        from qptbench.labels import pyscf_rks

        source = make_source(cfg, stream=1)
        with ledger.phase("reference", n=cfg.n_val) as extra:
            for i in range(cfg.n_val):
                mol = source(i)
                lab = pyscf_rks(mol, cfg.level(), conv_tol=1e-10)
                if not lab.converged:
                    continue
                refs.append(Reference(mol, lab.energy, lab.fock, lab.overlap, lab.n_occ,
                                      lab.seconds))
            extra["n_converged"] = len(refs)
    torch.save(refs, cache)
    return refs


def _score(sample: QPTSample, u: np.ndarray, h: torch.Tensor, ref: Reference
           ) -> dict[str, float]:
    """Metrics of H after the validation iterations; ``u`` rotates the canonical frame back."""
    res = sandwich(sample.tensors, h, VALIDATION_MIXES, with_fock=True)
    h_pred = u @ res.fock.cpu().numpy() @ u.T
    e = float(res.energy)
    return {"delta_e_mev": energy_error_mev(e, ref.energy),
            "e_pred_minus_ref_mev": (e - ref.energy) * HARTREE_TO_MEV,
            **hamiltonian_metrics(h_pred, ref.fock, ref.overlap, ref.n_occ)}


class Evaluator:
    """Scores QPT and the zero model on the validation references (3 DFT iterations)."""

    def __init__(self, refs: list[Reference], preparer: Preparer, device: torch.device) -> None:
        self.refs, self.device = refs, device
        self.samples = [preparer(r.molecule).sample.to(device) for r in refs]
        # canonical frame -> each reference's frame; fixed per molecule, so built once
        self.rotations = [ao_rotation(s.shell_ls, s.rotation) for s in self.samples]
        with torch.no_grad():
            zero = [_score(s, u, s.h_init, r) for s, u, r in self._each()]
        self.zero = {f"zero_{k}": v for k, v in mean_metrics(zero).items()}

    def _each(self):
        return zip(self.samples, self.rotations, self.refs, strict=True)

    def __call__(self, model: QPT, step: int) -> dict[str, float]:
        rows = [_score(s, u, model(s), r) for s, u, r in self._each()]
        return {**mean_metrics(rows), **self.zero, "n_val": len(rows)}


def measure_inference(model: QPT, refs: list[Reference], preparer: Preparer,
                      device: torch.device) -> dict[str, float]:
    """Seconds per molecule: tensor preparation, network, the 3 DFT iterations; PySCF's SCF."""
    from qptbench.runtime import synchronize

    tensor_s = network_s = dft_s = 0.0
    model.eval()
    with torch.no_grad():
        for ref in refs:
            tic = time.perf_counter()
            sample = preparer(ref.molecule).sample.to(device)
            synchronize(device)
            tac = time.perf_counter()
            h = model(sample)
            synchronize(device)
            toc = time.perf_counter()
            sandwich(sample.tensors, h, VALIDATION_MIXES).energy.item()
            tensor_s, network_s = tensor_s + tac - tic, network_s + toc - tac
            dft_s += time.perf_counter() - toc
    n = max(len(refs), 1)
    return {"tensor_seconds": tensor_s / n, "network_seconds": network_s / n,
            "dft_seconds": dft_s / n, "pyscf_scf_seconds": sum(r.seconds for r in refs) / n,
            "n": len(refs), "device": str(device)}


def run(cfg: QPTRunConfig, out_dir: str | Path, device: torch.device, resume: bool = False,
        progress: bool = True, ledger: Ledger | None = None,
        time_limit_s: float | None = None) -> dict[str, Any]:
    """Train QPT as configured; returns the final evaluation (QPT and zero model).

    ``ledger``: book into this (a harness's run ledger) instead of ``out_dir/ledger.jsonl``;
    ``time_limit_s``: stop training when this much wall time has been spent in it.
    """
    from qptbench.data.stream import WindowedStream

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.json"
    if resume and saved.exists():
        cfg = replace(QPTRunConfig(**json.loads(saved.read_text())), steps=cfg.steps)
    saved.write_text(json.dumps(asdict(cfg), indent=1))
    ledger = ledger or Ledger(out / "ledger.jsonl", device=str(device), method="qpt")
    vocab = Vocabulary.from_basis(cfg.basis)
    torch.manual_seed(cfg.seed)
    model = QPT(preset_config(cfg.model, vocab.size)).to(device)
    (out / "model.json").write_text(json.dumps(
        {**asdict(model.cfg), "parameters": count_parameters(model)}, indent=1))
    preparer = Preparer(vocab, cfg.level())
    refs = make_references(cfg, out, ledger)
    with ledger.phase("tensors", what="validation samples", n=len(refs)):
        evaluator = Evaluator(refs, preparer, device)
    stream = WindowedStream(make_source(cfg, stream=0), preparer, cfg.window, cfg.workers)
    loss = ImplicitDFTLoss(device, int(cfg.mix_at * cfg.steps), cfg.explode_ha)
    result = train(model, loss, stream, cfg.train_config(), out, resume=resume,
                   evaluate=evaluator, ledger=ledger, progress=progress,
                   time_limit_s=time_limit_s)
    (out / "inference.json").write_text(json.dumps(
        measure_inference(model, refs, preparer, device), indent=1))
    final = result.evaluations[-1] if result.evaluations else {}
    (out / "summary.json").write_text(json.dumps(
        {"step": result.step, "skipped": result.skipped, "parameters": count_parameters(model),
         "molecules_prepared_this_run": stream.prepared, **final}, indent=1))
    return final
