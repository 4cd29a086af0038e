"""3D conformers for records without coordinates: RDKit ETKDGv3 embedding, then MMFF94 optimisation.

Runs through ``Dataset.map`` (``num_proc`` processes; cached by the datasets fingerprint when the dataset lives
on disk, as every loader's output does). Each row gets ``conformer_method`` (``input`` when it already had
coordinates, ``ETKDGv3+MMFF94``, or ``ETKDGv3`` when MMFF94 has no parameters for the molecule) and
``conformer_error`` (the reason when no conformer could be made), and ``h_pos``, the generated hydrogens'
coordinates (all-atom 3D teachers read them; a row that kept its input coordinates keeps its own ``h_pos``, or
None). Failures are dropped or kept with ``pos`` None,
as the caller chooses, and always summarised in the returned report and the log.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from datasets import Dataset, DatasetDict, Value
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem

from .molecules import smiles_problem, token_atom_indices
from .records import HYDROGEN_POSITIONS, DataReport, Issue

__all__ = ["Conformer", "embed_conformer", "generate_conformers"]

_MMFF_MAX_ITERS = 2000


class Conformer(NamedTuple):
    """One molecule's embedding: `pos` of the SMILES token atoms in SMILES order, the `method` that made it or the
    `error` why none could be made (`pos` None), and `h_pos`, the coordinates of the other atoms (the hydrogens)."""

    pos: list | None
    method: str | None
    error: str | None
    h_pos: list | None = None


def embed_conformer(smiles: str, seed: int = 0, optimize: bool = True) -> Conformer:
    """The `Conformer` of one molecule.

    ETKDGv3 from the default start, then once more from random coordinates (which rescues many strained or
    large molecules); the embedding uses all hydrogens, and `pos` keeps only the tokens.
    """
    problem = smiles_problem(smiles)
    if problem is not None:
        return Conformer(None, None, f"invalid SMILES {smiles!r}: {problem}")
    with rdBase.BlockLogs():
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))  # AddHs appends H atoms, so token indices are unchanged
        params = AllChem.ETKDGv3()
        params.randomSeed = seed
        if AllChem.EmbedMolecule(mol, params) != 0:
            params.useRandomCoords = True
            if AllChem.EmbedMolecule(mol, params) != 0:
                return Conformer(None, None, "ETKDGv3 embedding failed (also from random coordinates)")
        method = "ETKDGv3"
        # MMFFOptimizeMolecule returns 1 when not converged within maxIters: that partly optimised geometry is
        # still better than ETKDG's; -1 means the force field could not be set up.
        if (
            optimize
            and AllChem.MMFFHasAllMoleculeParams(mol)
            and AllChem.MMFFOptimizeMolecule(mol, maxIters=_MMFF_MAX_ITERS) in (0, 1)
        ):
            method = "ETKDGv3+MMFF94"
    coords = mol.GetConformer().GetPositions()
    tokens = token_atom_indices(Chem.MolFromSmiles(smiles))
    others = np.setdiff1d(np.arange(len(coords)), tokens)
    return Conformer(coords[tokens].tolist(), method, None, coords[others].tolist())


def _conformer_columns(row: dict, seed: int, optimize: bool, overwrite: bool) -> dict:
    if row["pos"] is not None and not overwrite:
        return {"pos": row["pos"], "h_pos": row.get("h_pos"), "conformer_method": "input", "conformer_error": None}
    conformer = embed_conformer(row["smiles"], seed, optimize)
    return {
        "pos": conformer.pos,
        "h_pos": conformer.h_pos,
        "conformer_method": conformer.method,
        "conformer_error": conformer.error,
    }


def _generate_split(
    dataset: Dataset, on_failure: str, num_proc: int | None, seed: int, optimize: bool, overwrite: bool
) -> tuple[Dataset, DataReport]:
    features = dataset.features.copy()
    features.update(HYDROGEN_POSITIONS)
    features["conformer_method"] = Value("string")
    features["conformer_error"] = Value("string")
    mapped = dataset.map(
        functools.partial(_conformer_columns, seed=seed, optimize=optimize, overwrite=overwrite),
        features=features,
        num_proc=num_proc,
        desc="ETKDGv3 + MMFF94 conformers",
    )
    errors = mapped["conformer_error"]
    methods = mapped["conformer_method"]
    ids = mapped["mol_id"] if "mol_id" in mapped.column_names else [f"row {i}" for i in range(len(mapped))]
    failures = [Issue(where, error) for where, error in zip(ids, errors) if error is not None]
    report = DataReport("conformers", n_records=len(mapped))
    report.counts = {method: methods.count(method) for method in sorted(set(methods) - {None})}
    if on_failure == "drop":
        report.skipped = failures
        mapped = mapped.select(np.flatnonzero([error is None for error in errors])).flatten_indices()
    else:
        report.flagged = [Issue(issue.where, f"{issue.reason}; pos is None") for issue in failures]
    report.n_kept = len(mapped)
    return mapped, report


def generate_conformers(
    dataset: Dataset | DatasetDict,
    on_failure: str = "drop",
    num_proc: int | None = None,
    seed: int = 0,
    optimize: bool = True,
    overwrite: bool = False,
    return_report: bool = False,
) -> Dataset | DatasetDict | tuple[Dataset | DatasetDict, DataReport]:
    """Fill ``pos`` of rows without coordinates with an ETKDGv3 (+ MMFF94) conformer of their SMILES.

    on_failure: "drop" removes molecules without a conformer (listed in the report), "keep" leaves them with
    ``pos`` None and the reason in ``conformer_error``. overwrite: also replace existing coordinates.
    seed: ETKDG random seed (the same for every molecule, so a molecule's conformer does not depend on its row).
    Returns the same type as ``dataset``, or ``(result, DataReport)`` with ``return_report=True``.
    """
    if on_failure not in ("drop", "keep"):
        raise ValueError(f"on_failure must be 'drop' or 'keep', got {on_failure!r}")
    args = (on_failure, num_proc, seed, optimize, overwrite)
    if isinstance(dataset, DatasetDict):
        results = {name: _generate_split(split, *args) for name, split in dataset.items()}
        result = DatasetDict({name: mapped for name, (mapped, _) in results.items()})
        report = DataReport.merge("conformers", (split_report for _, split_report in results.values()))
    else:
        result, report = _generate_split(dataset, *args)
    report.log()
    return (result, report) if return_report else result
