"""The one evaluator: every method and every control is scored here, by the same code.

Inputs are predicted Hamiltonians in PySCF AO order, each in its reference geometry's own frame.
The evaluator builds each reference geometry's DFT tensors once, in that frame and on the grid
PySCF labelled it with, so the label itself scores at the *floor* (E(·) of H* against PySCF's
energy, ≤ 1e-4 meV at conv_tol 1e-10), which is reported on every row.

Per molecule and per k in ``protocol.K_VALUES``: ΔE (meV), ΔH (µHa), Δε occupied and all (µHa),
ψ (occupied, cosine), the floor, and optionally the SCF acceleration (``scf_speedup``).
Controls (``controls``): the zero model (H_init = F(D_minao), then the same k iterations), our
DIIS SCF from minao stopped after the same number of Fock builds as the hybrid route (1 + k), and
the label H* itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from qptbench.dft.level import LevelOfTheory
from qptbench.evaluation.metrics import HARTREE_TO_MEV, hamiltonian_metrics
from qptbench.evaluation.protocol import K_VALUES, State, iterate, zero_model_h
from qptbench.evaluation.references import Reference
from qptbench.runtime import digest

METRICS = ("delta_e_mev", "delta_h_uha", "delta_eps_occ_uha", "delta_eps_all_uha", "psi_occ")
GAUGE_METRICS = ("delta_h_uha", "delta_eps_occ_uha", "delta_eps_all_uha", "psi_occ")
SCF_COLUMNS = ("scf_cycles", "scf_effective_cycles", "scf_cycles_minao", "scf_seconds",
               "scf_seconds_minao", "scf_converged")
CONTROLS = ("zero", "scf-diis", "label")
CONTROL_NAMES = {"zero": "zero model (H_init + k iterations)",
                 "scf-diis": "DIIS SCF from minao, 1 + k Fock builds",
                 "label": "the PySCF label H*"}

Progress = Callable[[str], None]
CACHE_GB = 4.0  # default: keep the references' tensors while they fit, else rebuild per use


def tensor_bytes(t: object) -> int:
    """Bytes held by one geometry's DFTTensors (every torch tensor in it)."""
    return sum(v.numel() * v.element_size() for v in vars(t).values()
               if isinstance(v, torch.Tensor))


def _fingerprint(hs: Sequence[torch.Tensor], k_max: int) -> str:
    """A digest of the predictions' exact float64 bytes (and k_max): equal only for equal input."""
    return digest([k_max, *(x for h in hs for x in (tuple(h.shape), h))])


class TensorCache(Sequence):
    """The references' DFT tensors, each in its own frame: kept in memory while they fit in
    ``cache_bytes`` (default ``QPTBENCH_EVAL_CACHE_GB`` or 4 GB), the first ones first, the
    others built again at each use, so scoring 50 uracils never holds 50 × 2.4 GB of ERIs.

    The size is measured on the first reference's tensors (built here; the evaluator needs them
    next anyway): dense ERIs and the AO values on the grid, which depend on the grid level, so
    an estimate from the basis alone was off by several times.  ``keep``: all of them fit.
    """

    def __init__(self, molecules: Sequence, level: LevelOfTheory, device: torch.device,
                 cache_bytes: float | None = None) -> None:
        import os

        from qptbench.dft.tensors import build_tensors

        self.molecules, self.level, self.device = list(molecules), level, device
        limit = cache_bytes if cache_bytes is not None else 1e9 * float(
            os.environ.get("QPTBENCH_EVAL_CACHE_GB", CACHE_GB))
        first = build_tensors(self.molecules[0], level, device)
        self.bytes_per_molecule = tensor_bytes(first)
        self.n_kept = min(len(self.molecules), int(limit // max(self.bytes_per_molecule, 1)))
        self.keep = self.n_kept == len(self.molecules)
        self._kept: dict[int, object] = {0: first} if self.n_kept else {}
        self._first = None if self.n_kept else first  # handed out once, then let go

    def __len__(self) -> int:
        return len(self.molecules)

    def __getitem__(self, i):
        from qptbench.dft.tensors import build_tensors

        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i in self._kept:
            return self._kept[i]
        if i == 0 and self._first is not None:
            t, self._first = self._first, None
            return t
        t = build_tensors(self.molecules[i], self.level, self.device)
        if 0 <= i < self.n_kept:
            self._kept[i] = t
        return t


class Evaluator:
    """Scores predicted Hamiltonians of the references ``refs`` (see the module docstring).

    ``scf_molecules``: how many references (the first ones) also get the PySCF SCF-acceleration
    runs when ``score(..., scf=True)``; 0 disables them.
    """

    def __init__(self, refs: Sequence[Reference], level: LevelOfTheory,
                 device: torch.device | str = "cpu", scf_molecules: int = 0,
                 cache_bytes: float | None = None) -> None:
        if not refs:
            raise ValueError("no references to score against")
        self.refs, self.level, self.device = list(refs), level, torch.device(device)
        self.tensors = TensorCache([r.molecule for r in self.refs], level, self.device,
                                   cache_bytes)
        self.scf_molecules = min(int(scf_molecules), len(self.refs))
        self._timers: list | None = None
        self._control_curves: dict[str, dict[str, float]] = {}
        # Routes are deterministic in (prediction, k): a training loop's last curve point and
        # the final score of the same model, or a control's curve and its rows, are one
        # computation, done once (each pass may rebuild every reference's tensors).
        self._last_routes: tuple[str, list[dict[int, State]]] | None = None
        self._control_routes: dict[str, list[dict[int, State]]] = {}
        self.floor_mev = [abs(iterate(t, self._tensor(r.fock), k_max=0)[0].energy - r.energy)
                          * HARTREE_TO_MEV for t, r in zip(self.tensors, self.refs, strict=True)]

    def __getstate__(self) -> dict:
        # A copy for other processes (``qptbench run --nproc``): the SCF timers hold PySCF
        # objects that do not pickle; they are made again on first use.
        return {**self.__dict__, "_timers": None}

    def __len__(self) -> int:
        return len(self.refs)

    def molecules(self) -> list:
        return [r.molecule for r in self.refs]

    def _tensor(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = x.detach() if isinstance(x, torch.Tensor) else x
        return torch.as_tensor(x, dtype=torch.float64, device=self.device)

    # -- routes --------------------------------------------------------------------------------

    def routes(self, predictions: Sequence[np.ndarray | torch.Tensor],
               k_values: Sequence[int] = K_VALUES) -> list[dict[int, State]]:
        """The protocol's states of each predicted H (paper scheme)."""
        if len(predictions) != len(self.refs):
            raise ValueError(f"{len(predictions)} predictions for {len(self.refs)} references")
        hs = [self._tensor(h) for h in predictions]
        for h, r in zip(hs, self.refs, strict=True):
            if tuple(h.shape) != r.fock.shape:
                raise ValueError(f"predicted H has shape {tuple(h.shape)}, the reference "
                                 f"{r.fock.shape}: wrong basis or AO order?")
        key = _fingerprint(hs, max(k_values))
        if self._last_routes is not None and self._last_routes[0] == key:
            return self._last_routes[1]
        out = [iterate(t, h, k_max=max(k_values)) for t, h in zip(self.tensors, hs, strict=True)]
        self._last_routes = (key, out)
        return out

    def control_routes(self, name: str, k_values: Sequence[int] = K_VALUES
                       ) -> list[dict[int, State]]:
        if name not in CONTROLS:
            raise ValueError(f"unknown control {name!r}; choose from {', '.join(CONTROLS)}")
        if max(k_values) != max(K_VALUES):
            return [self._control_route(name, t, r, max(k_values))
                    for t, r in zip(self.tensors, self.refs, strict=True)]
        if name not in self._control_routes:
            self._control_routes[name] = [self._control_route(name, t, r)
                                          for t, r in zip(self.tensors, self.refs, strict=True)]
        return self._control_routes[name]

    def _control_route(self, name: str, t, ref: Reference, k_max: int = max(K_VALUES)
                       ) -> dict[int, State]:
        if name == "zero":
            return iterate(t, zero_model_h(t), k_max)
        if name == "scf-diis":
            return iterate(t, zero_model_h(t), k_max, scheme="diis", start_density=t.dm_minao)
        return iterate(t, self._tensor(ref.fock), k_max)  # the label H* itself

    # -- scores --------------------------------------------------------------------------------

    def score_routes(self, routes: Sequence[dict[int, State]], method: str,
                     seed: int | None = None, fixes_h: bool = True, scf: bool = False,
                     k_values: Sequence[int] = K_VALUES,
                     progress: Progress | None = None) -> list[dict[str, Any]]:
        """One row per (molecule, k): the protocol's metrics, the floor, the SCF columns."""
        rows = []
        for i, (route, ref) in enumerate(zip(routes, self.refs, strict=True)):
            for k in k_values:
                state = route[k]
                e_diff = (state.energy - ref.energy) * HARTREE_TO_MEV
                ham = hamiltonian_metrics(state.fock, ref.fock, ref.overlap, ref.n_occ)
                ham["psi_occ"] = ham.pop("psi_cos_occ")
                if k == 0 and not fixes_h:
                    ham = dict.fromkeys(ham, float("nan"))
                row = {"method": method, "seed": "" if seed is None else int(seed),
                       "molecule": i, "dataset_index": ref.index, "dft_iterations": k,
                       "delta_e_mev": abs(e_diff), "e_pred_minus_ref_mev": e_diff, **ham,
                       "floor_mev": self.floor_mev[i], "fixes_h": bool(fixes_h),
                       **dict.fromkeys(SCF_COLUMNS, float("nan"))}
                if scf and i < self.scf_molecules:
                    row.update(self._scf(i, state, k))
                rows.append(row)
            if progress is not None and scf and i < self.scf_molecules:
                progress(f"{method}: SCF acceleration {i + 1}/{self.scf_molecules}")
        return rows

    def score(self, predictions: Sequence[np.ndarray | torch.Tensor], method: str,
              seed: int | None = None, fixes_h: bool = True, scf: bool = False,
              k_values: Sequence[int] = K_VALUES, progress: Progress | None = None
              ) -> list[dict[str, Any]]:
        """Score a method's predictions (one H per reference, PySCF order, reference frame)."""
        return self.score_routes(self.routes(predictions, k_values), method, seed, fixes_h, scf,
                                 k_values, progress)

    def controls(self, scf: bool = False, names: Sequence[str] = CONTROLS,
                 progress: Progress | None = None) -> list[dict[str, Any]]:
        """Every control's rows (control by control), their routes computed in one pass over
        the references: a molecule's tensors, rebuilt per use when they do not fit in memory,
        are built once for all the controls instead of once per control."""
        unknown = [n for n in names if n not in CONTROLS]
        if unknown:
            raise ValueError(f"unknown control {unknown[0]!r}; choose from {', '.join(CONTROLS)}")
        missing = [n for n in names if n not in self._control_routes]
        if missing:
            routes: dict[str, list[dict[int, State]]] = {name: [] for name in missing}
            for t, r in zip(self.tensors, self.refs, strict=True):
                for name in missing:
                    routes[name].append(self._control_route(name, t, r))
            self._control_routes.update(routes)
        rows = []
        for name in names:
            if progress is not None:
                progress(f"scoring control: {CONTROL_NAMES[name]}")
            rows += self.score_routes(self._control_routes[name], name, None, True, scf,
                                      progress=progress)
        return rows

    def curve_point(self, predictions: Sequence[np.ndarray | torch.Tensor],
                    fixes_h: bool = True) -> dict[str, float]:
        """Means over molecules per k, keys ``{metric}_k{k}``: one point of a training curve."""
        return self.curve_routes(self.routes(predictions), fixes_h)

    def control_curve(self, name: str) -> dict[str, float]:
        """``curve_point`` of a control; computed once (controls do not depend on any model,
        so every seed and head of a run reads the same numbers)."""
        if name not in self._control_curves:
            self._control_curves[name] = self.curve_routes(self.control_routes(name))
        return self._control_curves[name]

    def curve_routes(self, routes: Sequence[dict[int, State]], fixes_h: bool = True
                     ) -> dict[str, float]:
        rows = self.score_routes(routes, "curve", fixes_h=fixes_h)
        out: dict[str, float] = {"n_val": len(self.refs)}
        for k in K_VALUES:
            for m in METRICS:
                values = np.array([r[m] for r in rows if r["dft_iterations"] == k])
                finite = values[np.isfinite(values)]
                out[f"{m}_k{k}"] = float(finite.mean()) if finite.size else float("nan")
        out["floor_mev"] = float(np.mean(self.floor_mev))
        return out

    def _scf(self, i: int, state: State, k: int) -> dict[str, float]:
        """PySCF from the density of H_k (not from the tensors: with a lean cache they would be
        built again just for this)."""
        from qptbench.evaluation.scf_speedup import SCFTimer

        if self._timers is None:
            self._timers = [None] * self.scf_molecules
        if self._timers[i] is None:
            self._timers[i] = SCFTimer(self.refs[i].molecule, self.level)
        timer = self._timers[i]
        run, minao = timer.run_from_fock(state.fock.cpu().numpy()), timer.minao()
        return {"scf_cycles": run.cycles, "scf_effective_cycles": run.cycles + k,
                "scf_cycles_minao": minao.cycles, "scf_seconds": run.seconds,
                "scf_seconds_minao": minao.seconds,
                "scf_converged": float(run.converged and minao.converged)}
