"""The GPU check: run once by a person with a GPU; writes the JSON that README's GPU table is from.

Two steps, because GPU images often lack PySCF (the tensors are made where PySCF is):

    python benchmarks/gpu_check.py prepare --out gpu-tensors          # any machine with PySCF
    python benchmarks/gpu_check.py run --tensors gpu-tensors --device cuda --out gpu_check.json
    python benchmarks/gpu_check.py table gpu_check.json                # markdown for README

``benchmarks/gpu_check.sh`` does all three on one machine.  ``run`` times, per molecule (N_AO):
the one-iteration energy forward and forward + backward, and the paper's 1 + 3 sandwich forward
+ backward, with the torch engine and (where JAX is installed) the JAX engine — JAX's first
call (compilation) reported apart, steady-state calls timed; then one QPT training step
(forward, backward, AdamW) of ``--qpt-preset`` (default gpt-medium) at the QPT molecule's size;
then, where GPU4PySCF and PySCF are both importable, one B3LYP label of that molecule with each.
What cannot run is recorded with its reason, never guessed.  Times are best of ``--repeat``
after one warm-up call, synchronised on the device.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import from_plain, level, molecule, to_plain

DEFAULT_MOLECULES = ("water", "ethanol", "malondialdehyde", "uracil")
MANIFEST = "manifest.json"
MIXES = (0.5, 0.0)  # the paper's 1 + 3 route


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def prepare(out: Path, molecules: list[str], qpt_molecule: str) -> None:
    """DFT tensors per molecule and one prepared QPT sample (needs PySCF), as plain files."""
    from qptbench.dft.tensors import build_tensors
    from qptbench.models.qpt_inputs import Vocabulary, prepare_sample

    out.mkdir(parents=True, exist_ok=True)
    lot = level()
    for name in molecules:
        print(f"preparing the tensors of {name}", flush=True)
        torch.save(to_plain(build_tensors(molecule(name), lot)), out / f"tensors-{name}.pt")
    print(f"preparing the QPT sample of {qpt_molecule}", flush=True)
    vocab = Vocabulary.from_basis(lot.basis)
    sample = prepare_sample(molecule(qpt_molecule), vocab, lot)
    torch.save(to_plain(sample), out / "qpt-sample.pt")
    (out / MANIFEST).write_text(json.dumps({
        "molecules": molecules, "qpt_molecule": qpt_molecule, "vocab_size": vocab.size,
        "level": lot.as_dict()}, indent=1))


def _load(path: Path):
    return from_plain(torch.load(path, weights_only=True))


def best_time(fn, device: torch.device, repeat: int) -> float:
    """``common.best_time`` after one warm-up call (allocator, kernels, caches)."""
    fn()
    common.sync(device.type)
    return common.best_time(fn, repeat, device.type)


def torch_energy_times(t, device: torch.device, repeat: int) -> dict[str, float]:
    from qptbench.dft.energy import energy, fock

    h0 = fock(t, t.dm_minao).detach()

    def backward(mixes):
        h = h0.clone().requires_grad_(True)
        energy(t, h, mixes).backward()

    with torch.no_grad():
        forward = best_time(lambda: energy(t, h0), device, repeat)
    return {"energy_s": forward,
            "energy_backward_s": best_time(lambda: backward(()), device, repeat),
            "sandwich_backward_s": best_time(lambda: backward(MIXES), device, repeat)}


def jax_energy_times(t, repeat: int) -> dict[str, float | str]:
    """The JAX engine on JAX's default device (a GPU where jax has CUDA)."""
    try:
        import jax

        from qptbench.dft import jax_engine, jax_tensors
    except ImportError as exc:
        return {"skipped": f"JAX not importable: {exc}"}
    from qptbench.dft.energy import fock

    tj = jax_tensors.from_torch(t.to("cpu"))
    h0 = jax.numpy.asarray(fock(t, t.dm_minao).detach().cpu().numpy())
    out: dict[str, float | str] = {"jax_device": str(jax.devices()[0])}
    for key, mixes in (("energy_backward", ()), ("sandwich_backward", MIXES)):
        tic = time.perf_counter()
        jax.block_until_ready(jax_engine.energy_and_grad(tj, h0, mixes))
        out[f"{key}_first_call_s"] = time.perf_counter() - tic  # compilation included
        best = float("inf")
        for _ in range(repeat):
            tic = time.perf_counter()
            jax.block_until_ready(jax_engine.energy_and_grad(tj, h0 + 1e-6, mixes))
            best = min(best, time.perf_counter() - tic)
        out[f"{key}_s"] = best
    return out


def qpt_step_time(sample, vocab_size: int, preset: str, device: torch.device,
                  repeat: int) -> dict[str, float | int | str]:
    """One QPT training step: network forward (float32), energy (float64), backward, AdamW."""
    from qptbench.dft.energy import energy
    from qptbench.models.qpt import QPT, count_parameters, preset_config

    torch.manual_seed(0)
    model = QPT(preset_config(preset, vocab_size)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    sample = sample.to(device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = energy(sample.tensors, model(sample).to(torch.float64))
        loss.backward()
        opt.step()

    return {"preset": preset, "parameters": count_parameters(model),
            "n_ao": int(sample.h_init.shape[0]), "step_s": best_time(step, device, repeat)}


def labelling_times(qpt_molecule: str) -> dict[str, float | str]:
    """PySCF vs GPU4PySCF for one label of the QPT molecule, same level of theory."""
    try:
        import gpu4pyscf  # noqa: F401
        from gpu4pyscf import dft as gdft
    except ImportError as exc:
        return {"skipped": f"GPU4PySCF not importable: {exc}"}
    try:
        from qptbench.dft.labels import make_rks
    except ImportError as exc:
        return {"skipped": f"PySCF not importable: {exc}"}
    lot = level()
    mf = make_rks(molecule(qpt_molecule), lot)
    tic = time.perf_counter()
    mf.kernel()
    cpu_s = time.perf_counter() - tic
    gmf = gdft.RKS(mf.mol, xc=lot.xc)
    gmf.grids.level = lot.grid_level
    tic = time.perf_counter()
    gmf.kernel()
    gpu_s = time.perf_counter() - tic
    return {"pyscf_s": cpu_s, "gpu4pyscf_s": gpu_s,
            "energy_difference_ha": abs(float(mf.e_tot) - float(gmf.e_tot)),
            "note": "GPU4PySCF's own grid pruning and integral screening may differ from "
                    "PySCF's; energy_difference_ha says by how much at this molecule"}


def run(tensors: Path, device_name: str, out: Path, qpt_preset: str, repeat: int) -> dict:
    if device_name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda, but torch sees no CUDA device "
                         "(a CPU-only machine: run with --device cpu to check the script)")
    device = torch.device(device_name)
    manifest = json.loads((tensors / MANIFEST).read_text())
    result: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else (platform.processor() or platform.machine()),
        "torch": torch.__version__, "cuda": torch.version.cuda, "jax": _version("jax"),
        "level": manifest["level"], "repeat": repeat, "molecules": {}}
    for name in manifest["molecules"]:
        print(f"timing the energy of {name} on {device}", flush=True)
        t = _load(tensors / f"tensors-{name}.pt").to(device)
        row = {"n_ao": t.n_ao, "torch": torch_energy_times(t, device, repeat),
               "jax": jax_energy_times(t, repeat)}
        result["molecules"][name] = row
        del t
    print(f"timing one QPT {qpt_preset} step at {manifest['qpt_molecule']}", flush=True)
    result["qpt_step"] = qpt_step_time(_load(tensors / "qpt-sample.pt"), manifest["vocab_size"],
                                       qpt_preset, device, repeat)
    result["labelling"] = labelling_times(manifest["qpt_molecule"])
    out.write_text(json.dumps(result, indent=1))
    return result


def table(result: dict) -> str:
    """README's GPU table from a ``run`` JSON."""
    lines = [f"Device: {result['device']} (torch {result['torch']}, CUDA {result['cuda']}, "
             f"JAX {result['jax']}); best of {result['repeat']}, seconds.", "",
             "| molecule | N_AO | E torch | E+bwd torch | sandwich+bwd torch | E+bwd JAX | "
             "sandwich+bwd JAX | JAX first call |",
             "|---|---|---|---|---|---|---|---|"]

    def fmt(x) -> str:
        return f"{x:.4g}" if isinstance(x, float) else "n/a"

    for name, row in result["molecules"].items():
        tt, jj = row["torch"], row["jax"]
        lines.append(f"| {name} | {row['n_ao']} | {fmt(tt['energy_s'])} | "
                     f"{fmt(tt['energy_backward_s'])} | {fmt(tt['sandwich_backward_s'])} | "
                     f"{fmt(jj.get('energy_backward_s'))} | {fmt(jj.get('sandwich_backward_s'))} "
                     f"| {fmt(jj.get('energy_backward_first_call_s'))} |")
    q = result["qpt_step"]
    lines += ["", f"QPT {q['preset']} ({q['parameters']:,} parameters), one training step at "
              f"N_AO = {q['n_ao']}: {fmt(q['step_s'])} s."]
    lab = result["labelling"]
    lines.append("Labelling: " + (lab["skipped"] if "skipped" in lab else
                 f"PySCF {fmt(lab['pyscf_s'])} s, GPU4PySCF {fmt(lab['gpu4pyscf_s'])} s "
                 f"(|ΔE| {lab['energy_difference_ha']:.2e} Ha)."))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="tensors and a QPT sample, where PySCF is installed")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--molecules", nargs="+", default=list(DEFAULT_MOLECULES))
    p.add_argument("--qpt-molecule", default="uracil")
    r = sub.add_parser("run", help="time them on a device and write the JSON")
    r.add_argument("--tensors", type=Path, required=True)
    r.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    r.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    r.add_argument("--qpt-preset", default="gpt-medium")
    r.add_argument("--repeat", type=int, default=3)
    t = sub.add_parser("table", help="print README's markdown table from a run's JSON")
    t.add_argument("json", type=Path)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.out, args.molecules, args.qpt_molecule)
    elif args.command == "run":
        run(args.tensors, args.device, args.out, args.qpt_preset, args.repeat)
        print(f"wrote {args.out}")
    else:
        print(table(json.loads(args.json.read_text())))


if __name__ == "__main__":
    main()
