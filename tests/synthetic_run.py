"""A synthetic run directory with the exact layout `qptbench run` writes, and known costs.

Costs (wall seconds): sample 36 (shared), reference 72 (shared), qhnet label 3600, qhnet train
3 x 600 (steps 10, 20, 30), qhnet eval 3 x 6, qpt tensors 180 (training) + 9 (validation
samples), qpt train 3 x 360 (steps 10, 20, 30), qpt eval 3 x 3.
"""

from __future__ import annotations

import json
from pathlib import Path

STEPS = (10, 20, 30)
METRIC_KEYS = ("delta_e_mev", "e_pred_minus_ref_mev", "delta_h_uha", "delta_eps_all_uha",
               "delta_eps_occ_uha", "psi_cos_occ")
ENV = {"host": "testhost", "processor": "x86_64", "cpu_count": 2, "torch_threads": 2,
       "device": "cpu", "torch_version": "2.13.0", "pyscf_version": "2.14.0"}


def _metrics(step: int, scale: float, zero: bool) -> dict:
    row = {"step": step, "eval_seconds": 1.0, "n_val": 4,
           "delta_e_mev": scale * 10 / step, "e_pred_minus_ref_mev": -scale * 10 / step,
           "delta_h_uha": scale * 1000 / step, "delta_eps_all_uha": scale * 2000 / step,
           "delta_eps_occ_uha": scale * 3000 / step, "psi_cos_occ": 1 - scale * 1e-3 / step}
    if zero:
        row.update({f"zero_{k}": v for k, v in
                    {"delta_e_mev": 5.0, "e_pred_minus_ref_mev": 5.0, "delta_h_uha": 900.0,
                     "delta_eps_all_uha": 1800.0, "delta_eps_occ_uha": 2500.0,
                     "psi_cos_occ": 0.99}.items()})
    return row


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_run_dir(root: Path, methods: tuple[str, ...] = ("qpt", "qhnet"),
                 molecule: str = "water") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "run.json").write_text(json.dumps({
        "molecule": molecule, "preset": "smoke", "methods": list(methods),
        "level_of_theory": {"basis": "def2-svp", "xc": "b3lyp5", "grid_level": 3,
                            "eri_threshold": 0.0},
        "environment": ENV}))
    ledger = [{"phase": "sample", "wall_seconds": 36.0, "cpu_seconds": 30.0, "method": "shared"},
              {"phase": "reference", "wall_seconds": 72.0, "cpu_seconds": 70.0,
               "method": "shared", "n": 4}]
    if "qhnet" in methods:
        ledger.append({"phase": "label", "wall_seconds": 3600.0, "cpu_seconds": 7000.0,
                       "method": "qhnet", "n": 100})
        for step in STEPS:
            ledger += [{"phase": "train", "wall_seconds": 600.0, "cpu_seconds": 1100.0,
                        "method": "qhnet", "step": step},
                       {"phase": "eval", "wall_seconds": 6.0, "cpu_seconds": 6.0,
                        "method": "qhnet", "step": step}]
    if "qpt" in methods:
        ledger += [{"phase": "tensors", "wall_seconds": 9.0, "cpu_seconds": 9.0, "method": "qpt",
                    "what": "validation samples", "n": 4},
                   {"phase": "tensors", "wall_seconds": 180.0, "cpu_seconds": 300.0,
                    "method": "qpt", "what": "training samples", "n": 50}]
        for step in STEPS:
            ledger += [{"phase": "train", "wall_seconds": 360.0, "cpu_seconds": 700.0,
                        "method": "qpt", "step": step, "data_seconds_cumulative": 1.0},
                       {"phase": "eval", "wall_seconds": 3.0, "cpu_seconds": 3.0,
                        "method": "qpt", "step": step}]
    _write_jsonl(root / "ledger.jsonl", ledger)
    for method in methods:
        mdir = root / method
        mdir.mkdir(exist_ok=True)
        qpt = method == "qpt"
        _write_jsonl(mdir / "metrics.jsonl",
                     [_metrics(s, 1.0 if qpt else 0.5, zero=qpt) for s in STEPS])
        _write_jsonl(mdir / "train.jsonl",
                     [{"step": s, "lr": 1e-3, "grad_norm": 1.0, "loss": 1.0 / s} for s in STEPS]
                     + [{"step": 30, "skipped": True, "skip_reason": "test"}])
        (mdir / "model.json").write_text(json.dumps({"parameters": 1234 if qpt else 567}))
        inference = {"network_seconds": 0.01 if qpt else 0.02, "pyscf_scf_seconds": 0.5,
                     "n": 4}
        if qpt:
            inference.update({"dft_seconds": 0.03, "tensor_seconds": 0.2})
        (mdir / "inference.json").write_text(json.dumps(inference))
    return root
