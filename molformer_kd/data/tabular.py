"""Any CSV/TSV (plain or gzip) with a SMILES column and label columns -> records (no coordinates, ``pos`` None).

The readers here (``read_text_lines``, ``read_records``, ``iter_table_rows``) are shared with the CLI and survive
hostile files: a UTF-8 byte order mark is dropped, a line that is not UTF-8 or a cell longer than
``MAX_FIELD_CHARS`` is one record's problem (naming its line) while the other records are read, and a file that is
not text at all (NUL bytes, UTF-16) is one ``ValueError`` naming the file and line.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import math
import os
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pandas as pd
from datasets import Dataset, Value

from .caching import cached_build, file_sha256
from .records import DataReport, Issue, check_on_invalid, find_smiles_problems, record_features
from .splits import DEFAULT_SIZES, split_dataset

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
_DELIMITERS = ",\t;|"
_SNIFF_BYTES = 1 << 16
# Longest cell read (the csv module's own default is 131,072); a longer one is its record's problem. Python holds a
# whole line in memory to split it, so this bounds the work per cell, not the memory of a single huge line.
MAX_FIELD_CHARS = 10_000_000
# A file whose first bytes hold a NUL is binary (git's and grep's rule).
_BINARY_PROBE_BYTES = 8192
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _open_binary(path: Path):
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _read_head(path: Path) -> str:
    with _open_binary(path) as handle:
        return handle.read(_SNIFF_BYTES).decode("utf-8", errors="replace")


def read_text_lines(path: str | os.PathLike) -> Iterator[tuple[int, str, str | None]]:
    """``(line number, text, problem)`` of each physical line of a UTF-8 text file, plain or gzip (by content).

    The text keeps its line end; a leading byte order mark is dropped. A line that is not UTF-8 comes decoded with
    U+FFFD replacements and a ``problem`` naming the byte; ``problem`` is None otherwise. ValueError naming the file
    and line when the file is not text (a NUL byte in its first 8 KiB, or UTF-16) or its gzip stream is corrupt.
    """
    path = Path(path)
    with _open_binary(path) as handle:
        try:
            head = handle.peek(_BINARY_PROBE_BYTES)[:_BINARY_PROBE_BYTES]
        except (EOFError, OSError, zlib.error) as error:
            raise ValueError(f"{path} line 1: cannot decompress ({error})") from None
        if head.startswith(_UTF16_BOMS):
            raise ValueError(f"{path} line 1: UTF-16 text; save the file as UTF-8")
        if b"\x00" in head:
            line = head[: head.index(b"\x00")].count(b"\n") + 1
            raise ValueError(f"{path} line {line}: a NUL byte; this is not a text file (binary or compressed?)")
        lines = enumerate(handle, start=1)
        number = 0
        while True:
            try:
                number, raw = next(lines)
            except StopIteration:
                return
            except (EOFError, OSError, zlib.error) as error:  # a truncated or corrupt gzip stream
                raise ValueError(f"{path} line {number + 1}: cannot decompress ({error})") from None
            if number == 1 and raw.startswith(_UTF8_BOM):
                raw = raw[len(_UTF8_BOM) :]
            try:
                yield number, raw.decode("utf-8"), None
            except UnicodeDecodeError as error:
                yield (
                    number,
                    raw.decode("utf-8", errors="replace"),
                    f"bytes that are not UTF-8 ({raw[error.start : error.start + 4]!r} at byte {error.start})",
                )


def read_records(path: str | os.PathLike, delimiter: str) -> Iterator[TableRow]:
    """Every record of a delimited text file (the header too) read with the ``csv`` module, numbered by the physical
    line it starts on; a blank line is a record of no cells. A record with a line that is not UTF-8, a cell over
    ``MAX_FIELD_CHARS`` characters or another ``csv`` fault has ``cells`` None and the reason in ``problem``; reading
    goes on with the next record. Quoting is pandas' default: ``"`` quotes, ``""`` inside quotes is one ``"``.
    """
    bad_lines: dict[int, str] = {}

    def texts() -> Iterator[str]:
        for number, text, problem in read_text_lines(path):
            if problem is not None:
                bad_lines[number] = problem
            yield text

    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
    reader = csv.reader(texts(), delimiter=delimiter)
    next_start = 1
    while True:
        try:
            cells = next(reader)
            problem = None
        except StopIteration:
            return
        except csv.Error as error:
            cells, problem = None, str(error)
            if "field larger than field limit" in problem:
                problem = f"a cell longer than {MAX_FIELD_CHARS:,} characters (the reader's limit)"
        # line_num counts physical lines read so far, so a record starts one after the previous one ended.
        start, next_start = next_start, reader.line_num + 1
        bad = [bad_lines.pop(number) for number in range(start, next_start) if number in bad_lines]
        if bad:
            cells, problem = None, bad[0]
        yield TableRow(start, cells, problem)


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


class TableRow(NamedTuple):
    """One record of a delimited file: the physical line it starts on (header = line 1) and its cells, or why not.

    ``cells`` is None exactly when ``problem`` says why the record is unusable.
    """

    line: int
    cells: list[str] | None
    problem: str | None = None


def _column_names(header: list[str]) -> list[str]:
    """Unique column names as pandas makes them: an empty name is ``Unnamed: <i>``, repeats get ``.1``, ``.2``."""
    names: list[str] = []
    for i, name in enumerate(header):
        name = name or f"Unnamed: {i}"
        unique, repeat = name, 0
        while unique in names:
            repeat += 1
            unique = f"{name}.{repeat}"
        names.append(unique)
    return names


def _quote_left_open(path: Path, delimiter: str, first_line: int) -> bool:
    """Whether the record starting at ``first_line`` runs to the end of the file inside a quoted cell."""
    texts = (text for _, text, _ in itertools.islice(read_text_lines(path), first_line - 1, None))
    # Only strict mode reports end-of-data inside quotes; it is kept off for the whole file because it also
    # refuses text after a closing quote ('"x"y'), which pandas and the lenient reader read as 'xy'.
    reader = csv.reader(texts, delimiter=delimiter, strict=True)
    try:
        next(reader, None)
    except csv.Error as error:
        return "unexpected end of data" in str(error)
    return False


def iter_table_rows(
    path: str | os.PathLike, sep: str | None = None, *, skip_blank_lines: bool = True
) -> Iterator[TableRow]:
    """The rows of a CSV/TSV file (plain or gzip) read with the ``csv`` module: first the header, then each record.

    The first item is the header (line 1; cells = column names made unique as pandas does). Then one ``TableRow``
    per data record, numbered by the physical line it starts on: a quoted cell holding line breaks (B3DB quotes
    some compound names over two lines) makes one record of several lines, and later records keep their true line
    numbers. A record whose field count differs from the header's, or that ``read_records`` cannot read (bytes that
    are not UTF-8, a cell over ``MAX_FIELD_CHARS``), has ``cells`` None and the reason in ``problem``. Blank lines are
    skipped, or with ``skip_blank_lines=False`` are records of empty cells (as pandas' ``skip_blank_lines=False``
    reads them). Quoting is pandas' default: ``"`` quotes, ``""`` inside quotes is one ``"``. sep: the field
    separator; None sniffs it (``sniff_delimiter``).
    FileNotFoundError for a missing file; ValueError naming the file (and line) for an empty file, a file that is not
    text, an unreadable header, a header without data rows or a quoted cell never closed.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not _read_head(path).strip():
        raise ValueError(f"{path}: file is empty")
    delimiter = sep or sniff_delimiter(path)
    records = read_records(path, delimiter)
    first = next(records)
    if first.cells is None:
        raise ValueError(f"{path} line {first.line}: cannot read the header: {first.problem}")
    header = _column_names(first.cells)
    yield TableRow(1, header)
    n_records, start, spans_lines = 0, 1, False
    for record in records:
        start, cells = record.line, record.cells
        spans_lines = cells is not None and any("\n" in cell for cell in cells)
        if cells == [] and skip_blank_lines:
            continue
        n_records += 1
        if cells is None:
            yield record
        elif not cells:
            yield TableRow(start, [""] * len(header))
        elif len(cells) == len(header):
            yield record
        else:
            yield TableRow(start, None, f"{len(cells)} fields where the header has {len(header)}")
    # A quoted cell still open at the end swallows the rest of the file into the last record's cells.
    if spans_lines and _quote_left_open(path, delimiter, start):
        raise ValueError(f"{path} line {start}: a quoted cell starting in this record is never closed")
    if not n_records:
        raise ValueError(f"{path}: has a header ({', '.join(header)}) but no data rows")


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
