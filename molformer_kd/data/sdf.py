"""3D structure files: any SDF (SD properties as labels), and PCQM4Mv2 in its official CSV + SDF layout."""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict
from rdkit import Chem, rdBase

from .caching import cached_build, file_sha256
from .geometry import AtomMappingError, map_mol_positions_to_smiles
from .molecules import smiles_and_positions_from_mol, without_hydrogen_atoms
from .records import DataReport, Issue, check_on_invalid, find_smiles_problems, record_features
from .splits import DEFAULT_SIZES, split_dataset
from .tabular import parse_label, read_table

__all__ = ["iter_sdf", "load_pcqm4mv2", "load_sdf"]


def _open_binary(path: Path):
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _has_3d(mol: Chem.Mol) -> bool:
    """RDKit marks a conformer 3D from the mol block's dimension code, or from non-zero z when it has none."""
    return mol.GetNumConformers() > 0 and mol.GetConformer().Is3D()


def iter_sdf(path: str | os.PathLike) -> Iterator[tuple[int, Chem.Mol | None, str | None]]:
    """(record number from 1, sanitized molecule with all atoms and its conformer or None, reason or None)."""
    path = Path(path)
    with _open_binary(path) as handle, rdBase.BlockLogs():
        supplier = Chem.ForwardSDMolSupplier(handle, sanitize=False, removeHs=False)
        for number, mol in enumerate(supplier, start=1):
            if mol is None:
                yield number, None, "RDKit could not read the mol block"
                continue
            problems = Chem.DetectChemistryProblems(mol)
            if problems:
                yield number, None, "; ".join(problem.Message() for problem in problems)
                continue
            try:
                Chem.SanitizeMol(mol)
            except (Chem.rdchem.MolSanitizeException, RuntimeError, ValueError) as error:
                yield number, None, f"sanitization failed: {error}"
                continue
            yield number, mol, None


def _numeric_properties(mol: Chem.Mol) -> list[str]:
    names = []
    for name in mol.GetPropNames():
        try:
            float(mol.GetProp(name))
        except ValueError:
            continue
        names.append(name)
    return names


def load_sdf(
    path: str | os.PathLike,
    label_properties: Sequence[str] | None = None,
    split: str | None = "random",
    sizes: Sequence[float | int] = DEFAULT_SIZES,
    seed: int = 0,
    on_invalid: str = "skip",
    cache_dir: str | os.PathLike | None = None,
    return_report: bool = False,
) -> Dataset | DatasetDict | tuple[Dataset | DatasetDict, DataReport]:
    """Records from an SDF (gzip read transparently): canonical SMILES, 3D heavy-atom coordinates, SD labels.

    ``smiles`` is RDKit's canonical SMILES of the record (H atoms folded) and ``pos`` its conformer's heavy atoms
    permuted into that SMILES' atom order. Records without 3D coordinates are kept with ``pos`` None and flagged.
    label_properties: SD properties read as float labels (a record lacking one gets NaN; a property absent from
    every record is an error); None keeps the numeric properties of the first readable record.
    on_invalid: unreadable records are "skip"ped (reported with file and record number) or "raise".
    ``mol_id`` is ``<file name>:<record number>``. Returns a DatasetDict, or ``(DatasetDict, DataReport)``.
    """
    check_on_invalid(on_invalid)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    options = {
        "file": file_sha256(path),
        "label_properties": None if label_properties is None else list(label_properties),
        "split": split,
        "sizes": list(sizes),
        "seed": seed,
        "on_invalid": on_invalid,
    }

    def build():
        if path.stat().st_size == 0:
            raise ValueError(f"{path}: file is empty")
        report = DataReport(str(path))
        labels = None if label_properties is None else list(label_properties)
        rows = []
        for number, mol, problem in iter_sdf(path):
            report.n_records += 1
            where = f"{path} record {number}"
            if mol is not None:
                try:
                    if _has_3d(mol):
                        smiles, pos = smiles_and_positions_from_mol(mol)
                    else:
                        smiles, pos = Chem.MolToSmiles(without_hydrogen_atoms(mol)), None
                        report.flagged.append(Issue(where, "no 3D coordinates; pos is None"))
                except ValueError as error:
                    mol, problem = None, str(error)
            if mol is None:
                issue = Issue(where, f"unparsable record: {problem}")
                if on_invalid == "raise":
                    raise ValueError(str(issue))
                report.skipped.append(issue)
                continue
            if labels is None:
                labels = _numeric_properties(mol)
            row = {"smiles": smiles, "pos": None if pos is None else pos.tolist()}
            for name in labels:
                row[name] = parse_label(mol.GetProp(name), where, name) if mol.HasProp(name) else math.nan
            row["mol_id"] = f"{path.name}:{number}"
            rows.append(row)
        if report.n_records == 0:
            raise ValueError(f"{path}: contains no SDF records")
        if not rows:
            raise ValueError(f"{path}: no readable records\n{report.summary()}")
        absent = [name for name in labels if all(math.isnan(row[name]) for row in rows)]
        if absent:
            raise ValueError(f"{path}: SD property(ies) {absent} found in no record")
        report.n_kept = len(rows)
        dataset = Dataset.from_list(rows, features=record_features(labels))
        return split_dataset(dataset, split, sizes, seed), report

    dataset, report = cached_build("sdf", options, build, cache_dir)
    return (dataset, report) if return_report else dataset


# Official split_dict.pt keys -> our split names.
_PCQM_SPLITS = {"train": "train", "valid": "validation", "test-dev": "test", "test-challenge": "test_challenge"}


def _first_existing(root: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (root / name).exists():
            return root / name
    return None


def load_pcqm4mv2(
    root: str | os.PathLike,
    split: str | None = "official",
    sizes: Sequence[float | int] = DEFAULT_SIZES,
    seed: int = 0,
    limit: int | None = None,
    on_invalid: str = "skip",
    num_proc: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    return_report: bool = False,
) -> Dataset | DatasetDict | tuple[Dataset | DatasetDict, DataReport]:
    """PCQM4Mv2 from its official files under ``root``: ``data.csv.gz`` (idx, smiles, homolumogap),
    ``pcqm4m-v2-train.sdf`` (DFT geometries of the training molecules, record k = idx k), ``split_dict.pt``.

    Files are found in ``root``, ``root/raw`` or ``root/pcqm4m-v2/raw`` (``split_dict.pt`` one level up from raw).
    Label: ``gap`` (eV, NaN for the hidden test sets). ``pos``: SDF coordinates mapped onto the CSV SMILES atom
    order by graph matching; None for molecules without an SDF record, and None plus a flag when the SDF graph
    does not match the SMILES. split: "official" (train/validation/test/test_challenge from split_dict.pt),
    "random", "scaffold" or None. limit: only the first ``limit`` molecules by idx.
    """
    check_on_invalid(on_invalid)
    root = Path(root)
    places = ["", "raw", "pcqm4m-v2/raw"]
    csv_path = _first_existing(root, [os.path.join(place, "data.csv.gz") for place in places])
    if csv_path is None:
        raise FileNotFoundError(f"{root}: no data.csv.gz (looked in {[str(root / p) for p in places]})")
    sdf_path = _first_existing(root, [os.path.join(place, "pcqm4m-v2-train.sdf") for place in places])
    split_path = _first_existing(root, ["split_dict.pt", "pcqm4m-v2/split_dict.pt", "raw/split_dict.pt"])
    if split == "official" and split_path is None:
        raise FileNotFoundError(f"{root}: split='official' needs split_dict.pt; pass split='random' or 'scaffold'")
    options = {
        "csv": file_sha256(csv_path),
        "sdf": sdf_path and file_sha256(sdf_path),
        "split_dict": split_path and file_sha256(split_path),
        "split": split,
        "sizes": list(sizes),
        "seed": seed,
        "limit": limit,
        "on_invalid": on_invalid,
    }

    def build():
        frame = read_table(csv_path, ",")
        missing = [column for column in ("idx", "smiles", "homolumogap") if column not in frame.columns]
        if missing:
            raise ValueError(f"{csv_path}: column(s) {missing} not found; columns are {list(frame.columns)}")
        if limit is not None:
            frame = frame.iloc[:limit]
        report = DataReport(str(root), n_records=len(frame))
        idx = [int(value) for value in frame["idx"]]
        smiles = [text.strip() for text in frame["smiles"]]
        gaps = [
            parse_label(text, f"{csv_path} line {line}", "homolumogap")
            for text, line in zip(frame["homolumogap"], frame.index)
        ]  # index: each row's file line
        problems = find_smiles_problems(Dataset.from_dict({"smiles": smiles}), num_proc=num_proc)
        pos: dict[int, list | None] = {}
        if sdf_path is not None:
            smiles_of = {i: text for i, text, problem in zip(idx, smiles, problems) if problem is None}
            last = max(smiles_of, default=-1)
            for number, mol, problem in iter_sdf(sdf_path):
                record_idx = number - 1
                if record_idx > last:
                    break
                if record_idx not in smiles_of:
                    continue
                where = f"{sdf_path} record {number} (idx {record_idx})"
                if mol is None:
                    report.flagged.append(Issue(where, f"unparsable record: {problem}; pos is None"))
                    continue
                try:
                    pos[record_idx] = map_mol_positions_to_smiles(smiles_of[record_idx], mol).tolist()
                except AtomMappingError as error:
                    report.flagged.append(Issue(where, f"{error}; pos is None"))
        rows = {"smiles": [], "pos": [], "gap": [], "mol_id": []}
        kept_idx = []
        for line, i, text, gap, problem in zip(frame.index, idx, smiles, gaps, problems):
            if problem is not None:
                issue = Issue(f"{csv_path} line {line}", f"invalid SMILES {text!r}: {problem}")
                if on_invalid == "raise":
                    raise ValueError(str(issue))
                report.skipped.append(issue)
                continue
            rows["smiles"].append(text)
            rows["pos"].append(pos.get(i))
            rows["gap"].append(gap)
            rows["mol_id"].append(f"pcqm4mv2_{i:07d}")
            kept_idx.append(i)
        report.n_kept = len(kept_idx)
        report.counts["with_3d"] = sum(p is not None for p in rows["pos"])
        dataset = Dataset.from_dict(rows, features=record_features(["gap"]))
        if split != "official":
            return split_dataset(dataset, split, sizes, seed), report
        import torch  # only the official split file needs torch; it is a core dependency of the package

        official = torch.load(split_path, weights_only=True)
        row_of = {i: row for row, i in enumerate(kept_idx)}
        splits = {}
        for key, name in _PCQM_SPLITS.items():
            members = [row_of[int(i)] for i in np.asarray(official.get(key, [])).tolist() if int(i) in row_of]
            if members:
                splits[name] = dataset.select(members)
        return DatasetDict(splits), report

    dataset, report = cached_build("pcqm4mv2", options, build, cache_dir)
    return (dataset, report) if return_report else dataset
