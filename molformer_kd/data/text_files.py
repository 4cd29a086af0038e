"""Reading text files that may be hostile, line by line and record by record (CSV/TSV/SMI, plain or gzip).

``read_text_lines``, ``read_records`` and ``iter_table_rows`` are shared by the loaders (``tabular``, ``downstream``,
``sdf``) and the CLI, which streams its inputs: a UTF-8 byte order mark is dropped, a line that is not UTF-8 or a cell
longer than ``MAX_FIELD_CHARS`` is one record's problem (naming its line) while the other records are read, and a file
that is not text at all (NUL bytes, UTF-16) is one ``ValueError`` naming the file and line.

Standard library only, so that `molformer-kd predict` reads its input without importing ``datasets`` and pandas.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

__all__ = ["MAX_FIELD_CHARS", "TableRow", "iter_table_rows", "read_records", "read_text_lines", "sniff_delimiter"]

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
