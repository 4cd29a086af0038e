"""Trained energy/force models as potentials (issue #19): NVE energy conservation and BFGS relaxation, same starts.

    .venv/bin/python benchmarks/potential_md.py --data runs/qm9_xtb_20k.npz \
        --model teacher=runs/potentials/qm9_xtb_20k/teacher --model "student alone"=DIR --model n2n=DIR

Every `--model NAME=DIR` is any checkpoint `MolformerCalculator.from_pretrained` loads. Starts: the first
`--molecules` molecules of the data file's test split (split by molecule, seed 0, as the models were trained),
the same for every model:

* NVE: conformation 0 (the QM9 DFT geometry), Maxwell-Boltzmann velocities at `--temperature` drawn from a
  generator seeded by `--seed` and the molecule's position in the list (the same velocities for every model), no net
  momentum or rotation, then `--steps` velocity-Verlet steps of `--timestep` fs. Reported per atom: the drift of the
  total energy (potential + kinetic, last step - first, signed) and its largest deviation from the start, in meV, the
  mean temperature, and the wall time per step.
* BFGS: conformation 1 (a perturbed geometry) relaxed to `--fmax` eV/A in at most `--bfgs-steps` steps: steps,
  converged or not, the final largest atomic force and the change of the model's energy.

Force sources (`MolformerCalculator.force_source`): `model` is what the model outputs, PaiNN's direct force head for
a direct-force model (the KD-GNN setting), which is not the gradient of its energy: it need not conserve energy in NVE
and BFGS may stop where it vanishes rather than at an energy minimum. `gradient` is -dE/dx of the predicted energy,
conservative. Both are run for direct-force models; models whose forces are already -dE/dx (SchNet, PaiNN with
`direct_forces=False`) run once, as `model`.

Writes OUTPUT.json and OUTPUT.md (default benchmarks/results/potential_md_<data name>).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.md.velocitydistribution import Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from molformer_kd.calculators import MolformerCalculator
from molformer_kd.data.xtb import QM9_XTB_SMALL, load_qm9_xtb

try:  # newer ASE renames MaxwellBoltzmannDistribution (same draw, same signature)
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

ROOT = Path(__file__).resolve().parents[1]
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def starting_rows(path, molecules):
    """(molecule, DFT-geometry row, perturbed row) of the first `molecules` test-split molecules with both."""
    test = load_qm9_xtb(path)["test"]
    index = {mol_id: position for position, mol_id in enumerate(test["mol_id"])}
    names = dict.fromkeys(mol_id.split(":")[0] for mol_id in test["mol_id"])
    chosen = [name for name in names if f"{name}:0" in index and f"{name}:1" in index][:molecules]
    if len(chosen) < molecules:
        raise SystemExit(f"{path}: only {len(chosen)} test molecules have conformations 0 and 1")
    return [(name, test[index[f"{name}:0"]], test[index[f"{name}:1"]]) for name in chosen]


def atoms_of(row, calculator):
    atoms = Atoms(numbers=row["atomic_numbers"], positions=row["positions"])
    atoms.calc = calculator
    return atoms


def nve(calculator, row, options, seed):
    atoms = atoms_of(row, calculator)
    thermalize_momenta(atoms, temperature_K=options.temperature, rng=np.random.default_rng(seed))
    Stationary(atoms)
    ZeroRotation(atoms)
    energies, temperatures = [], []

    def record():
        energies.append(atoms.get_total_energy())
        temperatures.append(atoms.get_temperature())

    dynamics = VelocityVerlet(atoms, timestep=options.timestep * units.fs, logfile=None)
    dynamics.attach(record, interval=1)
    start = time.perf_counter()
    dynamics.run(options.steps)
    seconds = time.perf_counter() - start
    per_atom = np.asarray(energies) / len(atoms)
    return {
        "drift_meV_per_atom": 1e3 * float(per_atom[-1] - per_atom[0]),
        "max_deviation_meV_per_atom": 1e3 * float(np.abs(per_atom - per_atom[0]).max()),
        "mean_temperature_K": float(np.mean(temperatures)),
        "ms_per_step": 1e3 * seconds / options.steps,
    }


def relax(calculator, row, options):
    atoms = atoms_of(row, calculator)
    start_energy = atoms.get_potential_energy()
    optimizer = BFGS(atoms, logfile=None)
    converged = optimizer.run(fmax=options.fmax, steps=options.bfgs_steps)
    return {
        "converged": bool(converged),
        "steps": optimizer.get_number_of_steps(),
        "final_fmax_eV_per_A": float(np.linalg.norm(atoms.get_forces(), axis=1).max()),
        "energy_change_eV": float(atoms.get_potential_energy() - start_energy),
    }


def run(options):
    torch.set_num_threads(options.threads)
    starts = starting_rows(options.data, options.molecules)
    results = {"settings": vars(options), "molecules": [name for name, _, _ in starts], "runs": []}
    for name, directory in options.model:
        model = MolformerCalculator.from_pretrained(directory, device=options.device, dtype=DTYPES[options.dtype]).model
        # Forces that are already -dE/dx need no second run as `gradient`: the same numbers.
        direct = bool(getattr(model.config, "direct_forces", False))
        for source in ("model", "gradient") if direct else ("model",):
            calculator = MolformerCalculator(model, force_source=source)
            for position, (molecule, equilibrium, perturbed) in enumerate(starts):
                entry = {
                    "model": name,
                    "checkpoint": str(directory),
                    "force_source": source,
                    "conservative": source == "gradient" or not direct,
                    "molecule": molecule,
                    "atoms": len(equilibrium["atomic_numbers"]),
                    "nve": nve(calculator, equilibrium, options, seed=options.seed + position),
                    "bfgs": relax(calculator, perturbed, options),
                }
                print(json.dumps(entry), flush=True)
                results["runs"].append(entry)
    return results


def summary_rows(results):
    """Per (model, force source): mean |drift| and max deviation over molecules, BFGS convergence and median steps."""
    groups = {}
    for entry in results["runs"]:
        groups.setdefault((entry["model"], entry["force_source"]), []).append(entry)
    rows = []
    for (model, source), entries in groups.items():
        rows.append(
            {
                "model": model,
                "force_source": source,
                "conservative": entries[0]["conservative"],
                "mean_abs_drift_meV_per_atom": statistics.fmean(abs(e["nve"]["drift_meV_per_atom"]) for e in entries),
                "max_deviation_meV_per_atom": max(e["nve"]["max_deviation_meV_per_atom"] for e in entries),
                "mean_temperature_K": statistics.fmean(e["nve"]["mean_temperature_K"] for e in entries),
                "ms_per_step": statistics.fmean(e["nve"]["ms_per_step"] for e in entries),
                "bfgs_converged": sum(e["bfgs"]["converged"] for e in entries),
                "bfgs_median_steps": statistics.median(e["bfgs"]["steps"] for e in entries),
                "molecules": len(entries),
            }
        )
    return rows


def markdown(results, seconds):
    settings = results["settings"]
    lines = [
        "# Trained potentials in NVE dynamics and BFGS relaxation (QM9/xTB)",
        "",
        f"Command: `{settings['command']}` — {seconds / 60:.1f} min.",
        "",
        (
            f"Starts: test-split molecules {', '.join(results['molecules'])} of `{settings['data']}`. NVE: "
            f"conformation 0 (DFT geometry), {settings['temperature']} K Maxwell-Boltzmann velocities (seed "
            f"{settings['seed']} + molecule position, the same for every model), {settings['steps']} velocity-Verlet "
            f"steps of {settings['timestep']} fs, {settings['dtype']}. Drift = E_tot(end) - E_tot(0), max deviation "
            f"= max |E_tot(t) - E_tot(0)|, per atom. BFGS: conformation 1 (perturbed) to fmax {settings['fmax']} "
            f"eV/A, at most {settings['bfgs_steps']} steps. Force source `model` of a direct-force model is its "
            "force head (not conservative); `gradient` is -dE/dx."
        ),
        "",
        "| model | forces | conservative | mean abs drift meV/atom | max deviation meV/atom | mean T K | ms/step "
        "| BFGS converged | BFGS median steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary_rows(results):
        lines.append(
            f"| {row['model']} | {row['force_source']} | {'yes' if row['conservative'] else 'no'} | "
            f"{row['mean_abs_drift_meV_per_atom']:.3f} | {row['max_deviation_meV_per_atom']:.3f} | "
            f"{row['mean_temperature_K']:.0f} | {row['ms_per_step']:.1f} | "
            f"{row['bfgs_converged']} / {row['molecules']} | {row['bfgs_median_steps']:.0f} |"
        )
    lines += [
        "",
        "Per molecule:",
        "",
        "| model | forces | molecule | atoms | drift meV/atom | max deviation meV/atom | BFGS steps | converged "
        "| final fmax eV/A | energy change eV |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in results["runs"]:
        nve_result, bfgs = entry["nve"], entry["bfgs"]
        lines.append(
            f"| {entry['model']} | {entry['force_source']} | {entry['molecule']} | {entry['atoms']} | "
            f"{nve_result['drift_meV_per_atom']:+.3f} | {nve_result['max_deviation_meV_per_atom']:.3f} | "
            f"{bfgs['steps']} | {'yes' if bfgs['converged'] else 'no'} | {bfgs['final_fmax_eV_per_A']:.3f} | "
            f"{bfgs['energy_change_eV']:+.3f} |"
        )
    lines.append("")
    return "\n".join(lines)


def model_argument(text):
    name, separator, directory = text.partition("=")
    if not separator or not name or not directory:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, Path(directory)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=model_argument, action="append", required=True, help="NAME=DIR, repeated")
    parser.add_argument("--data", type=Path, default=QM9_XTB_SMALL, help="QM9/xTB .npz (default: the shipped sample)")
    parser.add_argument("--molecules", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000, help="NVE velocity-Verlet steps")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="K, of the initial velocities")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fmax", type=float, default=0.05, help="BFGS convergence, eV/A")
    parser.add_argument("--bfgs-steps", type=int, default=500)
    parser.add_argument("--dtype", default="float64", choices=sorted(DTYPES), help="of the models during MD")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None, help="writes OUTPUT.json and OUTPUT.md")
    options = parser.parse_args()
    options.command = "python benchmarks/potential_md.py " + " ".join(sys.argv[1:])
    if options.output is None:
        options.output = str(ROOT / "benchmarks" / "results" / f"potential_md_{options.data.stem}")
    start = time.perf_counter()
    results = run(options)
    seconds = time.perf_counter() - start
    results["summary"] = summary_rows(results)
    results["total_seconds"] = seconds
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    output.with_suffix(".md").write_text(markdown(results, seconds))
    print(markdown(results, seconds))


if __name__ == "__main__":
    main()
