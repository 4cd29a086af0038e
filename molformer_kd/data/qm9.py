"""QM9: the embedded subset that ships with the package, and the full set from the optional ``qm9pack`` extra.

qm9pack (MIT) ships QM9 as CSV with list columns (``Elements``, ``XYZ_Ang``) written as Python literals, so they
are parsed with ``ast.literal_eval``. ``import qm9pack`` itself is broken (it imports ``pkg_resources``), so its
data folder is located with ``importlib.util.find_spec`` and never imported. Energies are converted from Hartree
to eV; the dipole stays in Debye. XYZ atoms (with H) are mapped onto the SMILES heavy atoms by graph matching
(``geometry.match_atoms_to_smiles``); molecules whose geometry does not match their SMILES are skipped and reported.
The hydrogens, which are not SMILES tokens, keep their DFT coordinates in ``h_pos`` (all-atom 3D teachers read them).
"""

from __future__ import annotations

import ast
import gzip
import importlib.util
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict, Value

from .caching import cached_build, file_sha256
from .geometry import BOND_TOLERANCE, match_atoms_to_smiles
from .records import HYDROGEN_POSITIONS, DataReport, Issue, record_features
from .splits import DEFAULT_SIZES, SPLIT_NAMES, split_dataset

__all__ = [
    "EMBEDDED_QM9_PATH",
    "HARTREE_TO_EV",
    "QM9_LABELS",
    "embedded_qm9_metadata",
    "load_embedded_qm9",
    "load_qm9",
    "qm9_mol_id",
    "qm9_record",
    "qm9pack_data_dir",
    "read_embedded_qm9",
    "read_qm9pack",
    "write_embedded_qm9",
]

HARTREE_TO_EV = 27.211386245988  # CODATA 2018
QM9_LABELS = ("gap", "homo", "lumo", "u0", "mu")
EMBEDDED_QM9_PATH = Path(__file__).parent / "resources" / "qm9_embedded.jsonl.gz"

# qm9pack column -> (our label, factor to our unit)
_QM9PACK_LABELS = {
    "HOMO_LUMO_gap_au": ("gap", HARTREE_TO_EV),
    "HOMO_au": ("homo", HARTREE_TO_EV),
    "LUMO_au": ("lumo", HARTREE_TO_EV),
    "InternalEnergy_0K_au": ("u0", HARTREE_TO_EV),
    "Dipole_debye": ("mu", 1.0),
}
_QM9PACK_COLUMNS = ["Index", "SMILES", "Elements", "XYZ_Ang", *_QM9PACK_LABELS]
_QM9PACK_PARTS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
# Coordinates are stored to 1e-5 Angstrom: far below DFT geometry precision, and it keeps the shipped file small.
_POS_DECIMALS = 5


def qm9pack_data_dir() -> Path:
    """The folder holding qm9pack's CSV files; ImportError with the install hint when qm9pack is missing."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("full QM9 needs the optional qm9pack package: pip install 'molformer_kd[qm9]'")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _qm9pack_files() -> list[Path]:
    folder = qm9pack_data_dir()
    files = [folder / name for name in _QM9PACK_PARTS]
    missing = [str(path) for path in files if not path.exists()]
    if missing:
        raise FileNotFoundError(f"qm9pack is installed but its data files are missing: {missing}")
    return files


def read_qm9pack(limit: int | None = None) -> pd.DataFrame:
    """qm9pack's raw rows (columns Index, SMILES, Elements, XYZ_Ang and the label columns) in Index order.

    ``limit``: only the first ``limit`` molecules (reads no more of the files than needed).
    """
    frames, remaining = [], limit
    for path in _qm9pack_files():
        if remaining is not None and remaining <= 0:
            break
        frame = pd.read_csv(path, usecols=_QM9PACK_COLUMNS, nrows=remaining)
        frames.append(frame)
        if remaining is not None:
            remaining -= len(frame)
    frame = pd.concat(frames, ignore_index=True).sort_values("Index", kind="stable").reset_index(drop=True)
    return frame[_QM9PACK_COLUMNS]


def qm9_mol_id(index: int) -> str:
    return f"qm9_{int(index):06d}"


def qm9_record(row: Mapping) -> dict:
    """One record (DESIGN.md) from a qm9pack row; raises ValueError (AtomMappingError) when the XYZ does not match."""
    elements = ast.literal_eval(row["Elements"])
    coords = np.asarray(ast.literal_eval(row["XYZ_Ang"]), dtype=np.float64)
    if coords.shape != (len(elements), 3):
        raise ValueError(
            f"{qm9_mol_id(row['Index'])}: {len(elements)} elements but coordinates of shape {coords.shape}"
        )
    order = match_atoms_to_smiles(row["SMILES"], elements, coords)
    folded = np.setdiff1d(np.arange(len(elements)), order)  # the hydrogens: atoms that are not SMILES tokens
    record = {
        "smiles": row["SMILES"],
        "pos": np.round(coords[order], _POS_DECIMALS).tolist(),
        "h_pos": np.round(coords[folded], _POS_DECIMALS).tolist(),
    }
    for column, (label, factor) in _QM9PACK_LABELS.items():
        record[label] = float(row[column]) * factor
    record["mol_id"] = qm9_mol_id(row["Index"])
    return record


def _qm9_record_or_error(row: Mapping) -> dict:
    """``qm9_record`` for Dataset.map: failures become pos=None plus the reason in ``qm9_error``."""
    try:
        return {**qm9_record(row), "qm9_error": None}
    except ValueError as error:
        labels = {label: float("nan") for label, _ in _QM9PACK_LABELS.values()}
        return {
            "smiles": row["SMILES"],
            "pos": None,
            "h_pos": None,
            **labels,
            "mol_id": qm9_mol_id(row["Index"]),
            "qm9_error": str(error),
        }


def load_qm9(
    split: str | None = "random",
    seed: int = 0,
    sizes: Sequence[float | int] = DEFAULT_SIZES,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    return_report: bool = False,
) -> Dataset | DatasetDict | tuple[Dataset | DatasetDict, DataReport]:
    """Full QM9 (130,831 molecules) from the ``qm9pack`` extra, as records with DFT geometries, split and cached.

    split: "random" (seeded), "scaffold" (deterministic Bemis-Murcko) or None (all in ``train``).
    limit: keep only the first ``limit`` molecules by QM9 index (before splitting).
    num_proc: processes for the XYZ -> SMILES graph matching (``Dataset.map``).
    Molecules whose geometry does not match their SMILES are skipped and listed in the report.
    Returns a DatasetDict, or ``(DatasetDict, DataReport)`` with ``return_report=True``.
    """
    files = _qm9pack_files()

    def build():
        frame = read_qm9pack(limit)
        raw = Dataset.from_pandas(frame, preserve_index=False)
        features = record_features(QM9_LABELS, {**HYDROGEN_POSITIONS, "qm9_error": Value("string")})
        converted = raw.map(
            _qm9_record_or_error,
            remove_columns=raw.column_names,
            features=features,
            num_proc=num_proc,
            desc="QM9 XYZ -> SMILES atom order",
        )
        errors = converted["qm9_error"]
        report = DataReport("qm9pack QM9", n_records=len(converted))
        report.skipped = [Issue(mol_id, error) for mol_id, error in zip(converted["mol_id"], errors) if error]
        report.n_kept = len(converted) - len(report.skipped)
        kept = converted.select([i for i, error in enumerate(errors) if not error]).remove_columns("qm9_error")
        return split_dataset(kept.flatten_indices(), split, sizes, seed), report

    key = {
        "files": [file_sha256(path) for path in files],
        "split": split,
        "seed": seed,
        "sizes": list(sizes),
        "limit": limit,
        "bond_tolerance": BOND_TOLERANCE,
        "columns": "h_pos",  # records before the hydrogens' coordinates were kept lacked it
    }
    dataset, report = cached_build("qm9", key, build, cache_dir)
    return (dataset, report) if return_report else dataset


def write_embedded_qm9(path: str | os.PathLike, metadata: dict, records: Sequence[dict]) -> None:
    """Write the embedded-set file: gzip'd JSON lines, first ``{"metadata": ...}``, then one record per line.

    Each record carries its ``split``. The gzip header gets no timestamp or name, so the same input gives the same
    bytes (the file is committed and rebuilt by scripts/build_embedded_qm9.py).
    """
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
        io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as text,
    ):
        text.write(json.dumps({"metadata": metadata}, sort_keys=True) + "\n")
        for record in records:
            text.write(json.dumps(record, separators=(",", ":")) + "\n")


def read_embedded_qm9(path: str | os.PathLike = EMBEDDED_QM9_PATH) -> tuple[dict, list[dict]]:
    """(metadata, records) of an embedded-set file written by ``write_embedded_qm9``."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        header = json.loads(handle.readline())
        if "metadata" not in header:
            raise ValueError(f"{path}: first line must be the metadata object")
        records = [json.loads(line) for line in handle if line.strip()]
    return header["metadata"], records


def load_embedded_qm9(
    cache_dir: str | os.PathLike | None = None, return_report: bool = False
) -> DatasetDict | tuple[DatasetDict, DataReport]:
    """The QM9 subset shipped with the package (offline): train/validation/test with DFT geometries.

    Columns: smiles, pos ((N_heavy, 3) Angstrom in SMILES atom order), h_pos (the hydrogens' (N_H, 3)), gap, homo,
    lumo, u0 (eV), mu (Debye), mol_id (``qm9_<QM9 index>``). Built by scripts/build_embedded_qm9.py; the split is
    stored in the file.
    """
    path = EMBEDDED_QM9_PATH

    def build():
        metadata, records = read_embedded_qm9(path)
        features = record_features(QM9_LABELS, HYDROGEN_POSITIONS)
        splits = {}
        for name in SPLIT_NAMES:
            rows = [{column: record[column] for column in features} for record in records if record["split"] == name]
            splits[name] = Dataset.from_list(rows, features=features)
        # Molecules skipped when the file was built are provenance (listed in the metadata), not a load problem.
        report = DataReport(
            f"embedded QM9 ({path.name})",
            n_records=len(records),
            n_kept=len(records),
            counts={"skipped_when_built": len(metadata["skipped"])},
        )
        return DatasetDict(splits), report

    dataset, report = cached_build("embedded_qm9", {"file": file_sha256(path)}, build, cache_dir)
    return (dataset, report) if return_report else dataset


def embedded_qm9_metadata() -> dict:
    """The provenance stored in the embedded file (source, seed, counts, units, skipped molecules)."""
    return read_embedded_qm9(EMBEDDED_QM9_PATH)[0]
