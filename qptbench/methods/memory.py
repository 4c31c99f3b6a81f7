"""What a command will hold at its peak, from its settings alone, before it builds anything: the
per-command sums of ``qptbench.dft.memory``'s per-geometry estimate (the commands only call
these and ``dft.memory.check_fits``).

Each geometry's DFT tensors (``T``) are held by
- the training window: ``window`` prepared molecules, plus ``PREFETCH`` per DataLoader worker
  in flight (``data.stream.WindowedStream``); the ``labels`` signal keeps none (its samples drop
  their tensors, ``training.labelled``);
- the evaluator's cache: the references while they fit in ``QPTBENCH_EVAL_CACHE_GB`` (4 GB by
  default), the first ones first; the rest are built again per use, one at a time;
- QPT's inputs for the references (``methods.qpt.held_out_inputs``): a second copy of every
  reference, in its canonical frame, but only when the evaluator keeps them all;
- one more being built (or PySCF's own SCF on a reference), at any moment.
On top: the network (weights, gradients, Adam's two moments, an EMA or checkpoint copy), the
autograd graph of the differentiable Fock build (two arrays the size of the screened AO values
kept for the backward, ``dft.energy._xc_chunk``; none when they are not stored, only the chunk
the backward evaluates again), labels where a route keeps them, and each process's
interpreter with torch and PySCF loaded.  The harness runs its methods one after another, so
the largest method counts, beside what the run shares (the evaluator, QPT's inputs).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from qptbench.dft.geometry import Molecule
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.memory import estimate_tensor_bytes, pyscf_scf_bytes, run_need, tensor_sizes

PROCESS_BYTES = 0.5e9  # a Python process with torch, PySCF and qptbench: 0.28 GB right after the
# imports, with libraries and allocator caches about 0.6 (the water smoke run: 0.69 GB in all)
PREFETCH = 2           # samples each DataLoader worker keeps ready (WindowedStream's default)
MODEL_COPIES = 5       # weights, gradients, Adam's two moments, EMA weights or a checkpoint copy
GRAPH_AO_ARRAYS = 2    # arrays of the screened AO values' size the Fock build's graph keeps
INPUT_BYTES_PER_AO2 = 7 * 4 + 8  # a sample's network inputs: 7 float32 biases and H_init


def eval_cache_bytes() -> float:
    """The evaluator's cache limit (``evaluation.evaluator.TensorCache``'s rule)."""
    from qptbench.evaluation.evaluator import CACHE_GB

    return 1e9 * float(os.environ.get("QPTBENCH_EVAL_CACHE_GB", CACHE_GB))


def evaluator_kept(n_refs: int, per_molecule: float) -> tuple[int, bool]:
    """(references whose tensors the evaluator keeps, whether that is all of them)."""
    kept = min(n_refs, int(eval_cache_bytes() // max(per_molecule, 1)))
    return kept, kept == n_refs


def _parameter_bytes(build) -> int:
    """Bytes of a network's parameters, built on the meta device (no memory, no RNG draws)
    where its layers allow it, else on the CPU."""
    with torch.random.fork_rng(devices=[]):
        try:
            with torch.device("meta"):
                model = build()
        except Exception:  # e3nn layers compute constants at construction: build it for real
            model = build()
    return sum(p.numel() * p.element_size() for p in model.parameters())


def network_bytes(arch: str, model: str, molecule: str, basis: str, head: str = "psd",
                  n_ao: int = 0) -> dict[str, float]:
    """The network's training state and (QPT) its attention maps over the N AO tokens."""
    if arch == "qhnet":
        from qptbench.baselines.qhnet_init import build_qhnet_on_init

        params = _parameter_bytes(lambda: build_qhnet_on_init(model, molecule, basis))
        return {"network": MODEL_COPIES * params}
    from qptbench.models.qpt import QPT, preset_config
    from qptbench.models.qpt_inputs import Vocabulary

    cfg = preset_config(model, Vocabulary.from_basis(basis).size, head=head)
    params = _parameter_bytes(lambda: QPT(cfg))
    # scores, softmax and its gradient per head and layer, float32
    attention = cfg.n_layers * cfg.n_heads * n_ao * n_ao * 4 * 3
    return {"network": MODEL_COPIES * params, "attention maps": attention}


def baseline_parts(preset: str, molecule: Molecule, name: str, basis: str, n_ao: int,
                   n_labels: int) -> dict[str, float]:
    """The label-trained QHNet baseline: its network, its labels (H* and S of the training and
    validation conformations, float64) and one batch's activations: per conformation, every
    atom pair's features (``hidden`` channels per (l, m) up to ``lmax``, float32) in each layer,
    about four tensors kept per layer for the backward, plus the predicted H, the target, the
    residual and its gradient (N², float64).  Coarse, and small beside the DFT tensors."""
    from qptbench.baselines.qhnet_init import qhnet_preset

    q = qhnet_preset(preset, name)
    pairs = len(molecule.symbols) ** 2
    per_conformation = (pairs * q.hidden * (q.lmax + 1) ** 2 * 4 * 4
                        * (q.node_layers + q.pair_layers) + 4 * n_ao * n_ao * 8)
    return {**network_bytes("qhnet", preset, name, basis),
            "labels": n_labels * 2 * n_ao * n_ao * 8,
            "baseline batch": q.batch_size * per_conformation}


def _window_parts(qcfg: Any, sizes: dict[str, int], tensors: dict[str, int], n_labels: int = 0
                  ) -> tuple[int, dict[str, float]]:
    """(geometries held by the training stream, the other parts of a network's training);
    ``n_labels``: the labelled conformations the ``labels`` signal keeps prepared."""
    n = sizes["n_ao"]
    labels = qcfg.signal == "labels"
    workers = 0 if labels else int(qcfg.workers)
    in_flight = qcfg.window + workers * PREFETCH
    parts = network_bytes(qcfg.arch, qcfg.model, qcfg.molecule, qcfg.basis, qcfg.head, n)
    parts["network inputs"] = in_flight * INPUT_BYTES_PER_AO2 * n * n
    if labels:  # H* as read and in its canonical frame, with the inputs (training.labelled)
        parts["labels"] = n_labels * (2 * 8 + INPUT_BYTES_PER_AO2) * n * n
    else:  # density fitting: the backward of K forms B·G and its transposed copy (for a moment)
        parts["autograd graph"] = (GRAPH_AO_ARRAYS * tensors["ao"] + tensors.get("ao_work", 0)
                                   + 2 * tensors["df"])
    if workers:  # each worker builds its next molecule while the others wait in the queue
        parts["worker builds"] = workers * tensors["build"]
    return (0 if labels else in_flight), parts


def _molecule_of(cfg: Any) -> Molecule:
    path = getattr(cfg, "dataset", None)
    if getattr(cfg, "sampler", None) == "dataset" and path:
        from qptbench.data.store import Dataset

        with Dataset.open(path) as ds:  # the run's conformations (same atoms in all)
            return ds.molecule(0)
    return Molecule.builtin(cfg.molecule)


def _train_labels(cfg: Any) -> int:
    """Labelled training conformations of a ``labels``-signal run (0 for the other signals)."""
    if cfg.signal != "labels" or not cfg.dataset:
        return 0
    from qptbench.data.store import Dataset

    with Dataset.open(cfg.dataset) as ds:
        return len(ds.split("train"))


def qpt_need(cfg: Any) -> dict[str, float]:
    """``qptbench train-qpt`` (``training.qpt.QPTRunConfig``): the stream's window, the
    evaluator on ``n_val`` references, QPT's inputs for them, the network."""
    molecule, level = _molecule_of(cfg), cfg.level()
    tensors, sizes = estimate_tensor_bytes(molecule, level), tensor_sizes(molecule, level)
    kept, all_kept = evaluator_kept(cfg.n_val, tensors["total"])
    window, parts = _window_parts(cfg, sizes, tensors, _train_labels(cfg))
    # references labelled here run PySCF's SCF beside nothing else; from a file, none runs
    pyscf = 0 if (cfg.val or cfg.dataset) else pyscf_scf_bytes(molecule, level)
    workers = 0 if cfg.signal == "labels" else int(cfg.workers)
    need = run_need(tensors, held=window + kept + (cfg.n_val if all_kept else 0),
                    transient_pyscf=pyscf, extra=parts, processes=1 + workers,
                    process_bytes=PROCESS_BYTES)
    return _named(need, tensors, window=window, evaluator=kept,
                  inputs=cfg.n_val if all_kept else 0)


HOLDERS = {"window": "training window", "evaluator": "evaluator cache",
           "inputs": "QPT inputs of the references"}


def _named(need: dict[str, float], tensors: dict[str, int], **held: int) -> dict[str, float]:
    """Split 'tensors held' into who holds them (the message names the largest parts)."""
    total = need.pop("total")
    named = {HOLDERS[k]: n * tensors["total"] for k, n in held.items() if n}
    named.update({k: v for k, v in need.items() if k != "tensors held"})
    named["total"] = total
    return named


def _method_config(name: str, cfg: Any):
    """The QPT run config a harness method trains with (``methods.QPTMethod._config``'s
    choices that size memory: preset, window, workers, network)."""
    from qptbench.methods import QPTMethod, make_method
    from qptbench.training import qpt as tq

    m = make_method(name)
    if not isinstance(m, QPTMethod):
        return None  # the label-trained baseline: its own loop
    return tq.make_config(cfg.qpt_preset, molecule=cfg.molecule, sampler="dataset",
                          dataset="-", n_val=cfg.n_val, xc=cfg.xc, basis=cfg.basis,
                          grid_level=cfg.grid_level, eri=getattr(cfg, "eri", "dense"),
                          auxbasis=getattr(cfg, "auxbasis", None), workers=0, head=m.head,
                          arch=m.arch,
                          signal=m.signal, model=cfg.qhnet_preset if m.arch == "qhnet" else None,
                          window=1 if m.signal == "labels" else None)


def _other_ranks(cfg: Any, window: int, parts: dict[str, float], tensors: dict[str, int]
                 ) -> dict[str, float]:
    """``run --nproc N``: ranks 1..N-1 each hold their own training window, network, graph and
    interpreter, and build their own next geometry; the evaluator and QPT's held-out inputs
    reach them through shared memory (``methods.parallel``), so they are not counted again."""
    others = int(getattr(cfg, "nproc", 1)) - 1
    if others < 1:
        return {}
    per_rank = (window * tensors["total"] + sum(parts.values()) + tensors["total"]
                + tensors["build"] + PROCESS_BYTES)
    return {f"{others} more training process{'es' if others > 1 else ''}": others * per_rank}


def harness_need(cfg: Any) -> dict[str, float]:
    """``qptbench run`` and ``experiment alanine`` (``harness.HarnessConfig``): the larger of
    the labelling phase (PySCF workers) and the training phase (the shared evaluator, QPT's
    inputs, the largest method's window or labels, a PySCF SCF-acceleration run)."""
    from qptbench.data.labelling import available_cores

    molecule, level = Molecule.builtin(cfg.molecule), cfg.level()
    tensors, sizes = estimate_tensor_bytes(molecule, level), tensor_sizes(molecule, level)
    n = sizes["n_ao"]
    kept, all_kept = evaluator_kept(cfg.n_val, tensors["total"])
    configs = {name: _method_config(name, cfg) for name in cfg.methods}
    inputs = cfg.n_val if all_kept and any(c is not None for c in configs.values()) else 0
    best: dict[str, float] | None = None
    for qcfg in configs.values():
        if qcfg is None:
            window, parts = 0, baseline_parts(cfg.qhnet_preset, molecule, cfg.molecule,
                                              cfg.basis, n, cfg.n_train + cfg.n_val)
        else:
            window, parts = _window_parts(qcfg, sizes, tensors, cfg.n_train)
        pyscf = pyscf_scf_bytes(molecule, level) if cfg.scf_molecules else 0
        ranks = _other_ranks(cfg, window, parts, tensors)
        need = _named(run_need(tensors, held=window + kept + inputs, transient_pyscf=pyscf,
                               extra={**parts, **ranks}, process_bytes=PROCESS_BYTES),
                      tensors, window=window, evaluator=kept, inputs=inputs)
        if best is None or need["total"] > best["total"]:
            best = need
    workers = min(cfg.label_workers or available_cores(), cfg.n_train + cfg.n_val)
    # the pool's processes beside this one, each running PySCF's SCF
    labelling = (workers + 1) * PROCESS_BYTES + workers * pyscf_scf_bytes(molecule, level)
    assert best is not None  # make_config refuses an empty method list
    if labelling > best["total"]:
        return {"PySCF labelling workers": labelling, "total": labelling}
    return best


def scf_need(molecule: Molecule, level: LevelOfTheory) -> dict[str, float]:
    """``qptbench scf``: one geometry's tensors, kept while PySCF's RKS runs beside them."""
    tensors = estimate_tensor_bytes(molecule, level)
    return run_need(tensors, held=0, transient_pyscf=tensors["total"]
                    + pyscf_scf_bytes(molecule, level), process_bytes=PROCESS_BYTES)

