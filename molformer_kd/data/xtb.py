"""QM9 conformations labelled with GFN2-xTB energies and forces, for the 3D-GNN energy/force distillation task.

Unlike the SMILES-aligned records of the other loaders (DESIGN.md: `pos` = heavy atoms in SMILES order), this task
needs every atom, hydrogens included, in the order of the QM9 XYZ block. Rows therefore hold:

| column | type | meaning |
|---|---|---|
| `mol_id` | str | `qm9_<index>:<k>`: conformation k of QM9 molecule <index> (k = 0 is the DFT geometry) |
| `smiles` | str | QM9's SMILES of the molecule (for reference; atoms are NOT in SMILES order) |
| `atomic_numbers` | list[int] | (N,) all atoms in XYZ order |
| `positions` | list[list[float]] | (N, 3) Angstrom |
| `energy` | float | GFN2-xTB total energy, eV |
| `forces` | list[list[float]] | (N, 3) eV/Angstrom, = -dE/dx |

Conformations are the QM9 DFT geometry plus seeded Gaussian perturbations of every coordinate (per-conformation
standard deviation drawn uniformly in [sigma_min, sigma_max] Angstrom). Labels are computed on the float32-rounded
positions that are stored, so stored labels belong exactly to stored geometries.

`tokenization.collators.PointCloudCollator` pads these rows into the point-cloud batch of the SchNet / PaiNN models.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict

from .qm9 import HARTREE_TO_EV, qm9pack_data_dir

__all__ = [
    "BOHR_IN_ANGSTROM",
    "QM9_XTB_SMALL",
    "build_qm9_xtb",
    "energy_statistics",
    "fit_atom_reference_energies",
    "load_qm9_xtb",
    "qm9pack_csv_path",
    "xtb_energy_and_forces",
]

BOHR_IN_ANGSTROM = 0.529177210903  # CODATA 2018, like HARTREE_TO_EV
QM9_XTB_SMALL = Path(__file__).parent / "resources" / "qm9_xtb_small.npz"
_ARRAY_KEYS = ("mol_id", "smiles", "num_atoms", "atomic_numbers", "positions", "energy", "forces")


def qm9pack_csv_path(part: int = 1) -> Path:
    """Path of qm9pack's CSV part `part` (1-3)."""
    path = qm9pack_data_dir() / f"qm9_part{part}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"qm9pack is installed but {path} is missing")
    return path


def xtb_energy_and_forces(atomic_numbers: np.ndarray, positions: np.ndarray) -> tuple[float, np.ndarray]:
    """GFN2-xTB single point: (energy in eV, forces (N, 3) in eV/Angstrom) for positions in Angstrom."""
    try:
        from tblite.interface import Calculator
    except ImportError as error:
        raise ImportError("labelling needs tblite: `pip install tblite` (the `xtb` extra)") from error
    numbers = np.asarray(atomic_numbers, dtype=np.int64)
    bohr = np.asarray(positions, dtype=np.float64) / BOHR_IN_ANGSTROM
    calculator = Calculator("GFN2-xTB", numbers, bohr)
    calculator.set("verbosity", 0)
    result = calculator.singlepoint()
    energy = float(result.get("energy")) * HARTREE_TO_EV
    forces = -np.asarray(result.get("gradient")) * (HARTREE_TO_EV / BOHR_IN_ANGSTROM)
    return energy, forces


def _read_qm9_rows(csv_path: Path, num_molecules: int, seed: int, max_atoms: int | None):
    import pandas as pd

    table = pd.read_csv(csv_path, usecols=["Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang"])
    if max_atoms is not None:
        table = table[table["N_atoms"] <= max_atoms]
    if num_molecules > len(table):
        raise ValueError(f"{csv_path} has {len(table)} usable molecules, {num_molecules} were asked for")
    chosen = np.sort(np.random.default_rng(seed).choice(len(table), size=num_molecules, replace=False))
    rows = []
    for row_number in chosen:
        row = table.iloc[row_number]
        try:
            elements = ast.literal_eval(row["Elements"])
            coords = np.asarray(ast.literal_eval(row["XYZ_Ang"]), dtype=np.float64)
        except (ValueError, SyntaxError) as error:
            raise ValueError(f"{csv_path} row {row_number + 2} (QM9 index {row['Index']}): {error}") from error
        if coords.shape != (len(elements), 3):
            raise ValueError(
                f"{csv_path} row {row_number + 2} (QM9 index {row['Index']}): {len(elements)} elements but "
                f"coordinates of shape {coords.shape}"
            )
        rows.append((int(row["Index"]), str(row["SMILES"]), elements, coords))
    return rows


def build_qm9_xtb(
    output: str | os.PathLike,
    num_molecules: int = 500,
    perturbed_per_molecule: int = 3,
    sigma_min: float = 0.05,
    sigma_max: float = 0.1,
    seed: int = 0,
    max_atoms: int | None = None,
    csv_path: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """Sample molecules from qm9pack, perturb them and label every conformation with GFN2-xTB; save a .npz.

    Returns a summary (counts, failures). A conformation whose xTB calculation fails is reported in the summary and
    in the saved file (`failed_mol_ids`), never silently dropped.
    """
    from rdkit import Chem

    if not 0 <= sigma_min <= sigma_max:
        raise ValueError(f"need 0 <= sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    csv_path = Path(csv_path) if csv_path is not None else qm9pack_csv_path(1)
    rng = np.random.default_rng(seed + 1)  # a stream separate from the molecule choice
    table = Chem.GetPeriodicTable()
    records = {key: [] for key in _ARRAY_KEYS}
    failures = []
    molecules = _read_qm9_rows(csv_path, num_molecules, seed, max_atoms)
    for count, (index, smiles, elements, coords) in enumerate(molecules):
        numbers = np.array([table.GetAtomicNumber(element) for element in elements], dtype=np.int64)
        for conformation in range(perturbed_per_molecule + 1):
            sigma = 0.0 if conformation == 0 else rng.uniform(sigma_min, sigma_max)
            positions = (coords + sigma * rng.standard_normal(coords.shape)).astype(np.float32)
            mol_id = f"qm9_{index:06d}:{conformation}"
            try:
                energy, forces = xtb_energy_and_forces(numbers, positions.astype(np.float64))
            except (RuntimeError, ValueError) as error:  # SCF not converged etc.: keep the reason
                failures.append(f"{mol_id} ({smiles}): {error}")
                continue
            records["mol_id"].append(mol_id)
            records["smiles"].append(smiles)
            records["num_atoms"].append(len(numbers))
            records["atomic_numbers"].append(numbers.astype(np.int8))
            records["positions"].append(positions)
            records["energy"].append(energy)
            records["forces"].append(forces.astype(np.float32))
        if progress and (count + 1) % 50 == 0:
            print(f"labelled {count + 1}/{len(molecules)} molecules", flush=True)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        output,
        mol_id=np.array(records["mol_id"]),
        smiles=np.array(records["smiles"]),
        num_atoms=np.array(records["num_atoms"], dtype=np.int16),
        atomic_numbers=np.concatenate(records["atomic_numbers"]),
        positions=np.concatenate(records["positions"]),
        energy=np.array(records["energy"], dtype=np.float64),
        forces=np.concatenate(records["forces"]),
        failed_mol_ids=np.array(failures, dtype=str),
        settings=np.array(
            f"num_molecules={num_molecules} perturbed_per_molecule={perturbed_per_molecule} sigma_min={sigma_min} "
            f"sigma_max={sigma_max} seed={seed} max_atoms={max_atoms} source={csv_path.name} method=GFN2-xTB"
        ),
    )
    return {"conformations": len(records["mol_id"]), "molecules": len(molecules), "failures": failures}


def _load_arrays(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; build it with scripts/build_qm9_xtb.py")
    with np.load(path, allow_pickle=False) as archive:
        missing = [key for key in _ARRAY_KEYS if key not in archive]
        if missing:
            raise ValueError(f"{path} lacks arrays {missing}; expected {list(_ARRAY_KEYS)}")
        return {key: archive[key] for key in _ARRAY_KEYS}


def _split_indices(mol_ids: np.ndarray, split_by: str, fractions: tuple[float, float], seed: int):
    """Index arrays (train, validation, test); `split_by="molecule"` keeps all conformations of a molecule together."""
    if split_by == "molecule":
        groups = np.array([mol_id.split(":")[0] for mol_id in mol_ids])
    elif split_by == "conformation":
        groups = np.asarray(mol_ids)
    else:
        raise ValueError(f"split_by must be 'molecule' or 'conformation', got {split_by!r}")
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(unique))
    num_validation = round(fractions[0] * len(unique))
    num_test = round(fractions[1] * len(unique))
    split_of_group = {}
    for rank, group_index in enumerate(order):
        split_of_group[unique[group_index]] = (
            1 if rank < num_validation else 2 if rank < num_validation + num_test else 0
        )
    assignment = np.array([split_of_group[group] for group in groups])
    return [np.flatnonzero(assignment == split) for split in range(3)]


def load_qm9_xtb(
    path: str | os.PathLike | None = None,
    split_seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_by: str = "molecule",
) -> DatasetDict:
    """The labelled QM9/xTB conformations as a DatasetDict (`train`/`validation`/`test`) with a fixed-seed split.

    `path` defaults to the file shipped in the package (built by scripts/build_qm9_xtb.py with its defaults).
    """
    path = Path(path) if path is not None else QM9_XTB_SMALL
    arrays = _load_arrays(path)
    offsets = np.concatenate([[0], np.cumsum(arrays["num_atoms"].astype(np.int64))])
    if offsets[-1] != len(arrays["atomic_numbers"]):
        raise ValueError(f"{path}: num_atoms sums to {offsets[-1]} but there are {len(arrays['atomic_numbers'])} atoms")
    splits = _split_indices(arrays["mol_id"], split_by, (validation_fraction, test_fraction), split_seed)
    result = {}
    for name, indices in zip(("train", "validation", "test"), splits):
        columns = {key: [] for key in ("mol_id", "smiles", "atomic_numbers", "positions", "energy", "forces")}
        for index in indices:
            start, stop = offsets[index], offsets[index + 1]
            columns["mol_id"].append(str(arrays["mol_id"][index]))
            columns["smiles"].append(str(arrays["smiles"][index]))
            columns["atomic_numbers"].append(arrays["atomic_numbers"][start:stop].astype(np.int64).tolist())
            columns["positions"].append(arrays["positions"][start:stop].astype(np.float64).tolist())
            columns["energy"].append(float(arrays["energy"][index]))
            columns["forces"].append(arrays["forces"][start:stop].astype(np.float64).tolist())
        result[name] = Dataset.from_dict(columns)
    return DatasetDict(result)


def fit_atom_reference_energies(dataset: Dataset, max_atomic_number: int = 9) -> list[float]:
    """Per-element reference energies (eV) by least squares of `energy` on element counts.

    Returns a list indexed by atomic number (index 0 and absent elements are 0). Models add these to their per-atom
    outputs so that the network only learns the small remainder (binding and strain energy).
    """
    counts = np.zeros((len(dataset), max_atomic_number + 1))
    for row, numbers in enumerate(dataset["atomic_numbers"]):
        numbers = np.asarray(numbers)
        if numbers.max() > max_atomic_number:
            raise ValueError(
                f"row {row} ({dataset['mol_id'][row]}) has atomic number {numbers.max()} > {max_atomic_number}"
            )
        counts[row] = np.bincount(numbers, minlength=max_atomic_number + 1)
    present = counts.sum(axis=0) > 0
    present[0] = False
    solution, *_ = np.linalg.lstsq(counts[:, present], np.asarray(dataset["energy"]), rcond=None)
    references = np.zeros(max_atomic_number + 1)
    references[present] = solution
    return references.tolist()


def energy_statistics(dataset: Dataset, max_atomic_number: int = 9) -> dict:
    """Config entries that normalize an energy/force model for `dataset` (the energy analogue of label statistics):

    `atom_reference_energies` (least-squares per-element energies), `energy_shift` (mean per-atom remainder after
    the references, eV) and `energy_scale` (root mean square of the force components, eV/Angstrom: it puts the
    network's outputs, and so its forces, at unit scale).
    """
    references = fit_atom_reference_energies(dataset, max_atomic_number)
    reference_table = np.asarray(references)
    remainders, counts, force_squares, force_components = [], [], 0.0, 0
    for numbers, energy, forces in zip(dataset["atomic_numbers"], dataset["energy"], dataset["forces"]):
        remainders.append(energy - reference_table[np.asarray(numbers)].sum())
        counts.append(len(numbers))
        forces = np.asarray(forces)
        force_squares += float((forces**2).sum())
        force_components += forces.size
    return {
        "atom_reference_energies": references,
        "energy_shift": float(np.sum(remainders) / np.sum(counts)),
        "energy_scale": float(np.sqrt(force_squares / max(force_components, 1))) or 1.0,
    }
