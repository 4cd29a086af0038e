"""Any CSV/TSV (plain or gzip) with a SMILES column and label columns -> records (no coordinates, ``pos`` None).

The files are read with the readers of ``text_files`` (re-exported here), which the CLI shares.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from datasets import Dataset, Value

from .caching import cached_build, file_sha256
from .records import DataReport, Issue, check_on_invalid, find_smiles_problems, record_features
from .splits import DEFAULT_SIZES, split_dataset
from .text_files import MAX_FIELD_CHARS, TableRow, iter_table_rows, read_records, read_text_lines, sniff_delimiter

if TYPE_CHECKING:
    from datasets import DatasetDict

__all__ = [
    "MAX_FIELD_CHARS",
    "MISSING_VALUES",
    "TableRow",
    "iter_table_rows",
    "load_csv",
    "parse_label",
    "read_records",
    "read_table",
    "read_text_lines",
    "sniff_delimiter",
]

# Cell texts read as a missing label (NaN), compared case-insensitively after stripping.
MISSING_VALUES = frozenset({"", "na", "nan", "n/a", "null", "none"})


def read_table(path: str | os.PathLike, sep: str | None = None) -> pd.DataFrame:
    """All cells as strings, one row per record, indexed by the line the record starts on (index name ``line``).

    Read by ``iter_table_rows`` (header = line 1), so the index is the record's true first physical line even after
    quoted cells that span lines; blank lines are kept as rows of empty cells. FileNotFoundError for a missing
    file; ValueError naming the file when it is empty or has a header but no rows, and naming file and line for a
    record whose field count differs from the header's.
    """
    rows = iter_table_rows(path, sep, skip_blank_lines=False)
    header = next(rows).cells
    lines, records = [], []
    for row in rows:
        if row.problem is not None:
            raise ValueError(f"{path} line {row.line}: {row.problem}")
        lines.append(row.line)
        records.append(row.cells)
    return pd.DataFrame(records, columns=header, index=pd.Index(lines, name="line"), dtype=str)


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
    id_column: str | None = None,
    extra_columns: Sequence[str] = (),
    sep: str | None = None,
    split: str | None = "random",
    sizes: Sequence[float | int] = DEFAULT_SIZES,
    seed: int = 0,
    on_invalid: str = "skip",
    num_proc: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    return_report: bool = False,
) -> Dataset | DatasetDict | tuple[Dataset | DatasetDict, DataReport]:
    """Records from a CSV/TSV file (gzip read transparently), split and cached.

    label_columns: columns to keep as float labels (empty cells / NA -> NaN); None keeps every numeric column.
    id_column: column whose (stripped) cell is each record's ``mol_id``; without it, or for an empty cell, ``mol_id``
    is ``<file name>:<line>``. extra_columns: more columns kept as (stripped) strings, e.g. a split column.
    sep: field separator; None sniffs it. split: "random" (seeded), "scaffold" or None (all in ``train``).
    on_invalid: rows with an invalid or empty SMILES are "skip"ped (listed in the report and logged with file and
    line) or "raise" a ValueError naming file, line, SMILES and reason.
    Returns a DatasetDict, or ``(DatasetDict, DataReport)``.
    """
    check_on_invalid(on_invalid)
    path = Path(path)
    options = {
        "file": file_sha256(path) if path.exists() else None,
        "smiles_column": smiles_column,
        "label_columns": None if label_columns is None else list(label_columns),
        "id_column": id_column,
        "extra_columns": list(extra_columns),
        "sep": sep,
        "split": split,
        "sizes": list(sizes),
        "seed": seed,
        "on_invalid": on_invalid,
    }

    def build():
        frame = read_table(path, sep)
        if smiles_column not in frame.columns:
            raise ValueError(f"{path}: no SMILES column {smiles_column!r}; columns are {list(frame.columns)}")
        labels = _numeric_columns(frame, smiles_column) if label_columns is None else list(label_columns)
        missing = [column for column in labels if column not in frame.columns]
        if missing:
            raise ValueError(f"{path}: label column(s) {missing} not found; columns are {list(frame.columns)}")
        wanted = [column for column in (id_column, *extra_columns) if column is not None]
        missing = [column for column in wanted if column not in frame.columns]
        if missing:
            raise ValueError(f"{path}: id/extra column(s) {missing} not found; columns are {list(frame.columns)}")

        lines = frame.index.tolist()  # each record's first line in the file
        columns = {"smiles": [text.strip() for text in frame[smiles_column]], "pos": [None] * len(frame)}
        for column in labels:
            columns[column] = [
                parse_label(text, f"{path} line {line}", column) for text, line in zip(frame[column], lines)
            ]
        ids = frame[id_column].str.strip() if id_column is not None else [""] * len(frame)
        columns["mol_id"] = [name or f"{path.name}:{line}" for name, line in zip(ids, lines)]
        for column in extra_columns:
            columns[column] = [text.strip() for text in frame[column]]
        extra = {column: Value("string") for column in extra_columns}
        dataset = Dataset.from_dict(columns, features=record_features(labels, extra))

        report = DataReport(str(path), n_records=len(dataset))
        problems = find_smiles_problems(dataset, num_proc=num_proc)
        for line, smiles, problem in zip(lines, dataset["smiles"], problems):
            if problem is None:
                continue
            shown = repr(smiles) if len(smiles) <= 80 else f"{smiles[:80]!r}... (length {len(smiles)})"
            issue = Issue(f"{path} line {line}", f"invalid SMILES {shown}: {problem}")
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
