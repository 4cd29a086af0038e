"""Any CSV/TSV (plain or gzip) with a SMILES column and label columns -> records (no coordinates, ``pos`` None)."""

from __future__ import annotations

import csv
import gzip
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from datasets import Dataset

from .caching import cached_build, file_sha256
from .records import DataReport, Issue, check_on_invalid, find_smiles_problems, record_features
from .splits import DEFAULT_SIZES, split_dataset

__all__ = ["MISSING_VALUES", "load_csv", "parse_label", "read_table", "sniff_delimiter"]

# Cell texts read as a missing label (NaN), compared case-insensitively after stripping.
MISSING_VALUES = frozenset({"", "na", "nan", "n/a", "null", "none"})
_DELIMITERS = ",\t;|"
_SNIFF_BYTES = 1 << 16


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _read_head(path: Path) -> str:
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rb") as handle:
        return handle.read(_SNIFF_BYTES).decode("utf-8", errors="replace")


def sniff_delimiter(path: str | os.PathLike) -> str:
    """The field separator of a delimited text file (``,`` ``\\t`` ``;`` ``|``); falls back on the file suffix."""
    path = Path(path)
    head = _read_head(path)
    lines = head.splitlines()
    if len(lines) > 1 and not head.endswith("\n"):
        lines = lines[:-1]  # the last line may be cut by the sniff window
    try:
        return csv.Sniffer().sniff("\n".join(lines[:50]), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        suffixes = [suffix.lower() for suffix in path.suffixes]
        return "\t" if ".tsv" in suffixes or ".tab" in suffixes else ","


def read_table(path: str | os.PathLike, sep: str | None = None) -> pd.DataFrame:
    """All cells as strings; ValueError naming the file when it is empty or has a header but no rows."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not _read_head(path).strip():
        raise ValueError(f"{path}: file is empty")
    # Blank lines are kept as rows so that data row k is line k + 2 of the file (header = line 1).
    frame = pd.read_csv(path, sep=sep or sniff_delimiter(path), dtype=str, keep_default_na=False,
                        skip_blank_lines=False, compression="gzip" if _is_gzip(path) else None)
    if frame.empty:
        raise ValueError(f"{path}: has a header ({', '.join(map(str, frame.columns))}) but no data rows")
    return frame


def parse_label(text: str, where: str, column: str) -> float:
    """A label cell as float; missing markers give NaN; anything else non-numeric is a ValueError naming the cell."""
    if text is None or text.strip().lower() in MISSING_VALUES:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: label column {column!r} holds {text!r}, which is not a number") from None


def _numeric_columns(frame: pd.DataFrame, exclude: str) -> list[str]:
    numeric = []
    for column in frame.columns:
        if column == exclude:
            continue
        values = [value for value in frame[column] if value.strip().lower() not in MISSING_VALUES]
        try:
            [float(value) for value in values]
        except ValueError:
            continue
        if values:
            numeric.append(column)
    return numeric


def load_csv(
    path: str | os.PathLike,
    smiles_column: str = "smiles",
    label_columns: Sequence[str] | None = None,
    sep: str | None = None,
    split: str | None = "random",
    sizes: Sequence[float | int] = DEFAULT_SIZES,
    seed: int = 0,
    on_invalid: str = "skip",
    num_proc: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    return_report: bool = False,
):
    """Records from a CSV/TSV file (gzip read transparently), split and cached.

    label_columns: columns to keep as float labels (empty cells / NA -> NaN); None keeps every numeric column.
    sep: field separator; None sniffs it. split: "random" (seeded), "scaffold" or None (all in ``train``).
    on_invalid: rows with an invalid or empty SMILES are "skip"ped (listed in the report and logged with file and
    line) or "raise" a ValueError naming file, line, SMILES and reason.
    ``mol_id`` is ``<file name>:<line>``. Returns a DatasetDict, or ``(DatasetDict, DataReport)``.
    """
    check_on_invalid(on_invalid)
    path = Path(path)
    options = {"file": file_sha256(path) if path.exists() else None, "smiles_column": smiles_column,
               "label_columns": None if label_columns is None else list(label_columns), "sep": sep,
               "split": split, "sizes": list(sizes), "seed": seed, "on_invalid": on_invalid}

    def build():
        frame = read_table(path, sep)
        if smiles_column not in frame.columns:
            raise ValueError(f"{path}: no SMILES column {smiles_column!r}; columns are {list(frame.columns)}")
        labels = _numeric_columns(frame, smiles_column) if label_columns is None else list(label_columns)
        missing = [column for column in labels if column not in frame.columns]
        if missing:
            raise ValueError(f"{path}: label column(s) {missing} not found; columns are {list(frame.columns)}")

        lines = range(2, len(frame) + 2)
        columns = {"smiles": [text.strip() for text in frame[smiles_column]], "pos": [None] * len(frame)}
        for column in labels:
            columns[column] = [parse_label(text, f"{path} line {line}", column)
                               for text, line in zip(frame[column], lines)]
        columns["mol_id"] = [f"{path.name}:{line}" for line in lines]
        dataset = Dataset.from_dict(columns, features=record_features(labels))

        report = DataReport(str(path), n_records=len(dataset))
        problems = find_smiles_problems(dataset, num_proc=num_proc)
        for line, smiles, problem in zip(lines, dataset["smiles"], problems):
            if problem is None:
                continue
            issue = Issue(f"{path} line {line}", f"invalid SMILES {smiles!r}: {problem}")
            if on_invalid == "raise":
                raise ValueError(str(issue))
            report.skipped.append(issue)
        kept = dataset.select([i for i, problem in enumerate(problems) if problem is None]).flatten_indices()
        report.n_kept = len(kept)
        if not len(kept):
            raise ValueError(f"{path}: no valid SMILES in column {smiles_column!r}\n{report.summary()}")
        return split_dataset(kept, split, sizes, seed), report

    dataset, report = cached_build("csv", options, build, cache_dir)
    return (dataset, report) if return_report else dataset
