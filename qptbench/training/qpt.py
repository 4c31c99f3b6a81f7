"""QPT trained with the implicit DFT loss: no labels in the loss, ever.

Loss = the energy after the DFT-iteration sandwich started from H = H_init + A.  Schedule as in the
paper: one iteration early on, a density-mixed one (α = 0.5) added at ``mix_at`` (the paper: step
150k of 200k), and a final unmixed one for validation.  PySCF labels are used only to score.

Validation compares QPT with the *zero model* (A = 0: the minao Fock matrix followed by the same
DFT iterations); a trained network is only interesting where it beats that.  QPT does not score
itself: validation goes through the shared evaluator (``qptbench.evaluation``), which scores every
method and control with one protocol in the reference geometries' own frames.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qptbench.dft.energy import energy as dft_energy
from qptbench.dft.energy import sandwich
from qptbench.dft.frames import ao_rotation
from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.errors import InputError
from qptbench.evaluation import references
from qptbench.evaluation.evaluator import Evaluator
from qptbench.evaluation.references import Reference
from qptbench.ledger import Ledger, cpu_seconds
from qptbench.models.qpt import HEADS, QPT, count_parameters, preset_config
from qptbench.models.qpt_inputs import QPTSample, Vocabulary, prepare_sample
from qptbench.training.loop import SkipStep, TrainConfig, train

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


def make_references(cfg: QPTRunConfig, out_dir: Path, ledger: Ledger) -> list[Reference]:
    """The held-out references: the val split of ``cfg.val`` (``--val``) or else of
    ``cfg.dataset`` (``--dataset``) when one is given, else PySCF labels made here for
    ``n_val`` geometries of the validation stream.
    Cached in the run directory as plain arrays (``references.npz``, no pickles)."""
    cache = out_dir / "references.npz"
    if cache.exists():
        return references.load(cache)
    source_file = cfg.val or cfg.dataset
    if source_file is not None:
        with ledger.phase("reference", source=source_file) as extra:
            refs = references.from_dataset(source_file, "val", cfg.n_val)
            extra["n"] = len(refs)
    else:
        source = make_source(cfg, stream=1)
        with ledger.phase("reference", n=cfg.n_val) as extra:
            refs = references.from_pyscf([source(i) for i in range(cfg.n_val)], cfg.level())
            extra["n_converged"] = len(refs)
    if not refs:
        raise InputError("no converged validation reference to score against")
    references.save(refs, cache)
    return refs


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


def curve_evaluator(evaluator: Evaluator, predictor: Predictor) -> Callable[[QPT, int], dict]:
    """``evaluate(model, step)`` for the training loop: the shared evaluator's curve point."""

    def evaluate(model: QPT, step: int) -> dict[str, float]:
        return evaluator.curve_point(predictor(model), fixes_h=FIXES_H)

    return evaluate


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


def run(cfg: QPTRunConfig, out_dir: str | Path, device: torch.device, resume: bool = False,
        progress: bool = True, ledger: Ledger | None = None,
        time_limit_s: float | None = None, evaluator: Evaluator | None = None,
        desc: str = "QPT training", predictor: Predictor | None = None) -> dict[str, Any]:
    """Train QPT as configured; returns the summary (last curve point of the shared evaluator).

    ``ledger``: book into this (a harness's run ledger) instead of ``out_dir/ledger.jsonl``;
    ``time_limit_s``: the wall-clock budget of tensor preparation + training;
    ``evaluator``: the harness's shared evaluator (default: one built here on the references);
    ``predictor``: QPT's inputs for the evaluator's molecules, if already prepared.
    The trained model is in ``out_dir/checkpoint.pt`` (``load_model``).
    """
    from qptbench.data.stream import WindowedStream

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.json"
    if resume and saved.exists():
        cfg = replace(QPTRunConfig(**json.loads(saved.read_text())), steps=cfg.steps)
    saved.write_text(json.dumps(asdict(cfg), indent=1))
    ledger = ledger or Ledger(out / "ledger.jsonl", device=str(device), method="qpt")
    model, vocab = build_model(cfg, device)
    (out / "model.json").write_text(json.dumps(
        {**asdict(model.cfg), "parameters": count_parameters(model)}, indent=1))
    preparer = Preparer(vocab, cfg.level())
    if evaluator is None:
        refs = make_references(cfg, out, ledger)
        with ledger.phase("tensors", what="validation tensors (evaluator)", n=len(refs)):
            evaluator = Evaluator(refs, cfg.level(), device)
    if predictor is None:
        with ledger.phase("tensors", what="validation samples (QPT inputs)", n=len(evaluator)):
            predictor = Predictor(evaluator.molecules(), preparer, device,
                                  keep=evaluator.tensors.keep, progress=progress)
    stream = WindowedStream(make_source(cfg, stream=0), preparer, cfg.window, cfg.workers)
    loss = ImplicitDFTLoss(device, cfg.mix_at, cfg.steps, cfg.explode_ha)
    result = train(model, loss, stream, cfg.train_config(), out, resume=resume,
                   evaluate=curve_evaluator(evaluator, predictor), ledger=ledger,
                   progress=progress, time_limit_s=time_limit_s, desc=desc)
    loss.book(ledger, cfg.workers)
    (out / "inference.json").write_text(json.dumps(measure_inference(
        model, evaluator.molecules(), preparer, device,
        [r.seconds for r in evaluator.refs]), indent=1))
    final = result.evaluations[-1] if result.evaluations else {}
    with ledger.phase("eval", what="zero model (control)", n=len(evaluator)):
        zero = evaluator.curve_routes(evaluator.control_routes("zero"))
    summary = {**{f"zero_{k}": v for k, v in zero.items() if k != "n_val"},
               "step": result.step, "skipped": result.skipped,
               "parameters": count_parameters(model),
               "molecules_prepared_this_run": stream.prepared, **final}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


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
