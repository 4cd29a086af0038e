"""`molformer-kd predict|embed|models|distill`: batch prediction / embedding of SMILES files of any size, the students
that ship with the package, and training.

    molformer-kd distill --config run.yaml                                  # = distill.py --config run.yaml
    molformer-kd predict --model DIR_OR_REPO --input mols.csv.gz --output preds.parquet --keep-columns Name
    molformer-kd predict --model qm9-gin --input mols.smi --output preds.csv      # a shipped student, by name
    molformer-kd embed   --model DIR_OR_REPO --input mols.smi    --output emb.csv --batch-size 256 --num-workers 2
    molformer-kd models                                                     # the shipped students, test metrics
    accelerate launch --multi_gpu --num_processes 2 -m molformer_kd.cli predict ...   # sharded over processes

`--model` is a student folder, the name of a student that ships with the package (`molformer-kd models` lists them:
`qm9-gin` or `molformer-kd/qm9-gin`; read from the installed files, no network) or a Hub repo id; a local folder of
that name comes first.

Inputs: CSV / TSV with a header (the SMILES column is `--smiles-column`, default `smiles`, matched case-insensitively
when there is no exact match; cells are stripped of surrounding spaces) or SMI (`SMILES [name]` per line, no header),
each optionally gzipped (detected by content). The file is streamed in chunks of `--chunk-size` rows, so memory does
not grow with the file. Every line of an SMI file is a row (an empty line is a row with an error, so `row` + 1 is
the line number); blank lines of a CSV / TSV are not records. A byte order mark is dropped; a line that is not UTF-8
or a cell over 10 million characters is that row's error (with file and line); a file that is not text at all is one
error. Output: CSV (`.csv`, `.csv.gz`, `.tsv`) or Parquet (`.parquet`), written chunk by chunk, exactly one row per
input row and in input order: `row` (0-based input row), `smiles`, `name` (SMI inputs), the `--keep-columns` of a
CSV / TSV input (e.g. an id or name column, as text), the predictions (one column per label, original units) or
`embedding_0..embedding_{D-1}`, then, for a model with an applicability domain (`config.applicability_domain`, every
shipped student and every student trained by `molformer-kd distill`), `in_domain` (true/false: whether the molecule is
like the training molecules in elements, heavy-atom count, charges, radicals and fragments) and `domain_reason` (empty,
or the constraints it breaks, e.g. `element Cl (training set: C, F, N, O)`), both empty for a failed row, and last
`error` (empty, or why the molecule failed; its values are then empty). A model without a domain writes neither
domain column. A row's failure (unreadable, refused SMILES, too many atoms, a model error) never stops the run.

Threads and workers: without `--num-workers`, one DataLoader worker featurizes when at least two cores are free (a
GIN then runs 1.4x faster on 2 idle cores), else none. Without `--threads`, torch gets `default_threads()`: the cores
this process may run on (`os.sched_getaffinity`), less one per featurizing worker, less the cores other processes
keep busy (`busy_cores()`: the machine's non-idle CPU time from /proc/stat less this process's own, measured while
the model loads and topped up to 0.2 s, rounded), capped at 4 and at least 1.
The students are small: beyond a few threads a batch's matrix products are too small to split, and intra-op
threads that share a core with other work spin at every barrier (on a 2-core machine with the other core busy, 2
threads made a GIN 4x slower than 1).
`OMP_NUM_THREADS`, when set, is taken as the user's choice and left alone. `--quantize int8` replaces the
student's `nn.Linear` layers by int8 dynamically quantized ones (CPU only, predictions change slightly).

Under `accelerate launch` with N processes, process r handles rows i with i % N == r and writes a shard; process 0
merges the shards in input order into `--output` and deletes them.

Why one long module: the command line is reading, writing and sharding of one streamed table; the model work is
all in `pipelines.py`.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pyarrow as pa

from .data.text_files import MAX_FIELD_CHARS, read_records, read_text_lines

if TYPE_CHECKING:
    from .pipelines import MolecularPropertyPredictionPipeline, PredictionColumns

INPUT_FORMATS = {".csv": ",", ".tsv": "\t", ".smi": None}
DEFAULT_CHUNK_SIZE = 10_000
MAX_DEFAULT_THREADS = 4
DOMAIN_COLUMNS = ("in_domain", "domain_reason")
RESERVED_COLUMNS = ("row", "smiles", "name", *DOMAIN_COLUMNS, "error")


# ---------------------------------------------------------------------------------------------------- input


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


class InputRow(NamedTuple):
    """One input row: its SMILES, name (SMI only) and kept columns (CSV/TSV), or, when the reader could not read it,
    `error` (with file and line) and `smiles` None."""

    smiles: str | None
    name: str | None = None
    error: str | None = None
    kept: tuple[str | None, ...] = ()


def read_smiles(
    path: str | os.PathLike, smiles_column: str = "smiles", keep_columns: tuple[str, ...] = ()
) -> Iterator[InputRow]:
    """Stream one `InputRow` per input row of a CSV/TSV/SMI file (optionally gzip); `name` is None for CSV/TSV,
    `kept` holds the cells of `keep_columns` (CSV/TSV only)."""
    path = Path(path)
    fmt = _base_suffix(path)
    if fmt not in INPUT_FORMATS:
        raise ValueError(f"{path}: unsupported input format {fmt!r}; use .csv, .tsv or .smi (optionally .gz)")
    if fmt == ".smi":
        if keep_columns:
            raise ValueError(f"{path}: --keep-columns needs a CSV/TSV input with a header (an SMI row keeps its name)")
        for number, text, problem in read_text_lines(path):
            fields = text.split(maxsplit=1)
            if problem is None and fields and len(fields[0]) > MAX_FIELD_CHARS:
                problem = f"a SMILES longer than {MAX_FIELD_CHARS:,} characters (the reader's limit)"
            if problem is not None:
                yield InputRow(None, error=f"{path} line {number}: {problem}")
            else:
                yield InputRow(fields[0] if fields else "", fields[1].strip() if len(fields) > 1 else None)
        return
    records = read_records(path, INPUT_FORMATS[fmt])
    header = next(records, None)
    if header is None:
        return
    if header.cells is None:
        raise ValueError(f"{path} line {header.line}: cannot read the header: {header.problem}")
    column = _find_column(header.cells, smiles_column, path, "SMILES column", "--smiles-column")
    kept = [_find_column(header.cells, name, path, "column", "--keep-columns") for name in keep_columns]

    def cell(cells: list[str], index: int) -> str | None:
        return cells[index].strip() if index < len(cells) else None

    for record in records:
        if record.cells is None:
            yield InputRow(None, error=f"{path} line {record.line}: {record.problem}", kept=(None,) * len(kept))
        elif record.cells:  # a blank line is not a row
            yield InputRow(cell(record.cells, column) or "", kept=tuple(cell(record.cells, k) for k in kept))


def _find_column(header: list[str], wanted: str, path: Path, what: str, option: str) -> int:
    if wanted in header:
        return header.index(wanted)
    folded = [name.strip().lower() for name in header]
    if wanted.strip().lower() in folded:
        return folded.index(wanted.strip().lower())
    raise ValueError(f"{path}: no {what} {wanted!r} in the header {header}; check {option}")


def count_rows(path: str | os.PathLike, smiles_column: str = "smiles") -> int:
    return sum(1 for _ in read_smiles(path, smiles_column))


# ---------------------------------------------------------------------------------------------------- output


class TableWriter:
    """Append Arrow tables to a CSV (.csv, .csv.gz, .tsv) or Parquet (.parquet) file, one chunk at a time."""

    def __init__(self, path: str | os.PathLike, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fmt = _base_suffix(self.path)
        if fmt == ".parquet":
            import pyarrow.parquet as pq

            self._sink = None
            self._writer = pq.ParquetWriter(self.path, schema)
        elif fmt in (".csv", ".tsv"):
            import pyarrow.csv as pacsv

            compressed = self.path.suffix.lower() == ".gz"
            self._sink = (
                pa.CompressedOutputStream(str(self.path), "gzip") if compressed else pa.OSFile(str(self.path), "wb")
            )
            options = pacsv.WriteOptions(delimiter="\t" if fmt == ".tsv" else ",")
            self._writer = pacsv.CSVWriter(self._sink, schema, write_options=options)
        elif fmt == ".arrow":
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_stream(self._sink, schema)
        else:
            raise ValueError(f"{self.path}: unsupported output format {fmt!r}; use .csv, .csv.gz, .tsv or .parquet")

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()
        if self._sink is not None:
            self._sink.close()


class ResultTable:
    """Turns pipeline outputs of one chunk into an Arrow table with a fixed schema."""

    def __init__(
        self,
        mode: str,
        label_names: list[str],
        embedding_size: int,
        with_name: bool,
        kept_columns: tuple[str, ...] = (),
        domain_columns: bool = False,
    ) -> None:
        self.mode = mode
        self.with_name = with_name
        self.domain_columns = domain_columns
        self.kept_columns = tuple(kept_columns)
        clash = sorted(set(self.kept_columns) & set(RESERVED_COLUMNS + tuple(label_names)))
        if clash:
            raise ValueError(f"--keep-columns {clash}: these names are output columns already")
        fields = [pa.field("row", pa.int64()), pa.field("smiles", pa.string())]
        if with_name:
            fields.append(pa.field("name", pa.string()))
        fields += [pa.field(column, pa.string()) for column in self.kept_columns]
        if mode == "predict":
            self.value_columns = [f"pred_{n}" if n in RESERVED_COLUMNS else n for n in label_names]
            self.value_keys = list(label_names)
            fields += [pa.field(column, pa.float64()) for column in self.value_columns]
        else:
            self.value_columns = [f"embedding_{i}" for i in range(embedding_size)]
            fields += [pa.field(column, pa.float32()) for column in self.value_columns]
        if domain_columns:
            fields += [pa.field("in_domain", pa.bool_()), pa.field("domain_reason", pa.string())]
        fields.append(pa.field("error", pa.string()))
        self.schema = pa.schema(fields)

    def build(self, rows: list[int], inputs: list[InputRow], results: PredictionColumns) -> pa.Table:
        """The table of one chunk: its row numbers, input rows and pipeline results (`PredictionColumns`, one entry
        per input row). Columns are built from their buffers: `pa.array` imports pandas (0.2-0.5 s of start-up)."""
        failed = np.fromiter((error is not None for error in results.errors), dtype=bool, count=len(rows))
        smiles = [row.smiles if isinstance(row.smiles, str) else None for row in inputs]
        columns = [arrow_numbers(rows, pa.int64()), arrow_strings(smiles)]
        if self.with_name:
            columns.append(arrow_strings([row.name for row in inputs]))
        for k in range(len(self.kept_columns)):
            columns.append(arrow_strings([row.kept[k] if row.kept else None for row in inputs]))
        value_type = pa.float64() if self.mode == "predict" else pa.float32()
        values = results.values
        if values.shape[1] != len(self.value_columns):  # embeddings of a chunk whose rows all failed
            values = np.zeros((len(rows), len(self.value_columns)))
        columns += [arrow_numbers(values[:, j], value_type, failed) for j in range(len(self.value_columns))]
        if self.domain_columns:
            columns.append(arrow_booleans(results.in_domain))
            columns.append(arrow_strings(results.domain_reason))
        columns.append(arrow_strings(results.errors))
        return pa.Table.from_arrays(columns, schema=self.schema)


_NUMPY_TYPES = {pa.int64(): np.int64, pa.float64(): np.float64, pa.float32(): np.float32}


def _bitmap(bits: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(bits, bitorder="little"))


def _nulls(null: np.ndarray | None) -> tuple[pa.Buffer | None, int]:
    """Arrow's validity bitmap (None: no nulls) and null count of a boolean null mask."""
    count = 0 if null is None else int(null.sum())
    return (_bitmap(~null) if count else None), count


def arrow_numbers(
    values: Sequence[float] | np.ndarray, arrow_type: pa.DataType, null: np.ndarray | None = None
) -> pa.Array:
    """`pa.array(values, arrow_type, mask=null)` of int64 / float64 / float32 values, without importing pandas."""
    data = np.ascontiguousarray(values, dtype=_NUMPY_TYPES[arrow_type])
    validity, null_count = _nulls(null)
    return pa.Array.from_buffers(arrow_type, len(data), [validity, pa.py_buffer(data)], null_count)


def arrow_booleans(values: Sequence[bool | None]) -> pa.Array:
    """`pa.array(values, pa.bool_())` (None is null), without importing pandas."""
    null = np.fromiter((value is None for value in values), dtype=bool, count=len(values))
    data = np.fromiter((bool(value) for value in values), dtype=bool, count=len(values))
    validity, null_count = _nulls(null)
    return pa.Array.from_buffers(pa.bool_(), len(data), [validity, _bitmap(data)], null_count)


def arrow_strings(values: Sequence[str | None]) -> pa.Array:
    """`pa.array(values, pa.string())` (None is null), without importing pandas."""
    texts = ["" if value is None else value for value in values]
    try:
        data = "".join(texts).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: let pyarrow say what it says of it
        return pa.array(values, pa.string())
    lengths = [len(text) for text in texts]
    if len(data) != sum(lengths):  # not all ASCII: lengths in bytes
        lengths = [len(text.encode("utf-8")) for text in texts]
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:  # beyond 32-bit offsets: pyarrow's own conversion
        return pa.array(values, pa.string())
    null = np.fromiter((value is None for value in values), dtype=bool, count=len(values))
    validity, null_count = _nulls(null)
    buffers = [validity, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), len(texts), buffers, null_count)


# ---------------------------------------------------------------------------------------------------- sharding


def _process_group(device: str | None):
    """(world_size, rank, accelerate state or None). Initializes the process group only under a multi-process launch
    (gloo on CPU: without `cpu=True` accelerate would treat CPU-only processes as a single non-distributed one)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 1, 0, None
    import torch
    from accelerate import PartialState

    cpu = (device or "").startswith("cpu") or (device is None and not torch.cuda.is_available())
    state = PartialState(cpu=cpu)
    return state.num_processes, state.process_index, state


def shard_path(output: Path, rank: int, world_size: int) -> Path:
    return output.with_name(f".{output.name}.shard-{rank:05d}-of-{world_size:05d}.arrow")


def merge_shards(shards: list[Path], output: Path, schema: pa.Schema, block_rows: int = DEFAULT_CHUNK_SIZE) -> int:
    """Interleave shards (shard r holds rows i % len(shards) == r, in order) into `output` in input order."""
    import pyarrow.compute as pc  # only multi-process runs merge: not part of every start-up

    readers = [pa.ipc.open_stream(pa.OSFile(str(shard), "rb")) for shard in shards]
    buffers = [pa.Table.from_batches([], schema=schema) for _ in shards]
    exhausted = [False] * len(shards)

    def take(s: int, n: int) -> pa.Table:
        while buffers[s].num_rows < n and not exhausted[s]:
            try:
                buffers[s] = pa.concat_tables([buffers[s], pa.Table.from_batches([readers[s].read_next_batch()])])
            except StopIteration:
                exhausted[s] = True
        head, buffers[s] = buffers[s].slice(0, n), buffers[s].slice(n)
        return head

    writer = TableWriter(output, schema)
    written = 0
    try:
        while True:
            block = pa.concat_tables([take(s, block_rows) for s in range(len(shards))])
            if block.num_rows == 0:
                break
            block = block.take(pc.sort_indices(block, sort_keys=[("row", "ascending")]))
            expected = np.arange(written, written + block.num_rows)
            if not np.array_equal(block.column("row").to_numpy(), expected):
                raise RuntimeError(f"shards {shards} are not an interleaving of consecutive rows near row {written}")
            writer.write(block)
            written += block.num_rows
    finally:
        writer.close()
    return written


# ---------------------------------------------------------------------------------------------------- threads


def choose_threads(available_cores: int, busy_cores: float, num_workers: int) -> int:
    """Torch intra-op threads for a run: the free cores (available, less those busy elsewhere, less one per
    featurizing worker), at most `MAX_DEFAULT_THREADS` and at least 1 (see the module docstring for why)."""
    free = available_cores - round(busy_cores) - num_workers
    return max(1, min(free, MAX_DEFAULT_THREADS))


def choose_workers(available_cores: int, busy_cores: float) -> int:
    """Featurizing workers for a run: one when at least two cores are free (the worker featurizes the next batch
    while this process runs the model and writes; measured 1.4x faster for a GIN on 2 idle cores), else none (a
    worker sharing this process's only free core just adds hand-over cost)."""
    return 1 if available_cores - round(busy_cores) >= 2 else 0


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class CpuTimes(NamedTuple):
    """The machine's non-idle and total CPU time (ticks of /proc/stat, all cores) and this process's own CPU seconds,
    at one moment: the start of a `busy_cores` window."""

    non_idle: int
    total: int
    own: float


def cpu_times() -> CpuTimes | None:
    """`CpuTimes` now; None where /proc/stat cannot be read (not Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    except (OSError, ValueError, IndexError):
        return None
    return CpuTimes(sum(ticks) - idle, sum(ticks), time.process_time())


def busy_cores(window: float = 0.2, since: CpuTimes | None = None) -> float:
    """Cores other processes keep busy now: the machine's non-idle CPU time less this process's own, over the time
    since `since` (a `cpu_times()` taken before other start-up work, e.g. loading the model, so that the window costs
    no waiting), topped up by sleeping to at least `window` seconds (Linux /proc/stat); elsewhere the 1-minute load
    average. The load average lags by a minute, so right after other work ended it still counted those cores as
    busy and left an idle machine's cores unused."""
    start = since or cpu_times()
    if start is None:
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    ticks_per_second = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    elapsed_ticks = (cpu_times() or start).total - start.total
    # /proc/stat sums every core's ticks: a window of `window` seconds holds window * ticks/s * cores of them.
    missing = window - elapsed_ticks / (ticks_per_second * available_cores())
    if missing > 0:
        time.sleep(missing)
    end = cpu_times() or start
    own_ticks = (end.own - start.own) * ticks_per_second
    elapsed = end.total - start.total
    busy = available_cores() * (end.non_idle - start.non_idle - own_ticks) / elapsed if elapsed > 0 else 0.0
    return max(0.0, busy)


def default_threads(num_workers: int, busy: float | None = None) -> int:
    """`choose_threads` for this process on this machine, now (`busy`: cores busy elsewhere, measured if None)."""
    return choose_threads(available_cores(), busy_cores() if busy is None else busy, num_workers)


# ---------------------------------------------------------------------------------------------------- commands


def run(args: argparse.Namespace) -> int:
    """Run `predict` or `embed` as parsed by `build_parser`; returns the number of rows this process handled."""
    import torch
    import transformers
    from tqdm.auto import tqdm

    from .pipelines import MolecularPropertyPredictionPipeline

    # The one progress bar is the rows' (below), not one per weight load: as in `distill.py`.
    transformers.utils.logging.disable_progress_bar()
    world_size, rank, state = _process_group(args.device)
    input_path, output_path = Path(args.input), Path(args.output)
    if not input_path.is_file():
        raise FileNotFoundError(f"input file {input_path} does not exist")
    # Check the output format before loading the model, not after the first chunk.
    if _base_suffix(output_path) not in (".csv", ".tsv", ".parquet"):
        raise ValueError(f"{output_path}: unsupported output format; use .csv, .csv.gz, .tsv or .parquet")
    device = args.device or (str(state.device) if state is not None else "cpu")
    # The other processes' CPU use is measured over the model's loading (this process's own use left out).
    loading = cpu_times()
    pipe = MolecularPropertyPredictionPipeline.from_pretrained(
        args.model,
        mode=args.command,
        device=device,
        revision=args.revision,
        token=args.token,
        quantize=args.quantize,
    )
    choose_threads_here = not args.threads and "OMP_NUM_THREADS" not in os.environ
    busy = busy_cores(since=loading) if args.num_workers is None or choose_threads_here else 0.0
    if args.num_workers is None:
        args.num_workers = choose_workers(available_cores(), busy)
    if args.threads:
        torch.set_num_threads(args.threads)
    elif choose_threads_here:
        torch.set_num_threads(default_threads(args.num_workers, busy))
    probe = pipe("C", mode="embed") if args.command == "embed" else None
    table = ResultTable(
        args.command,
        pipe.label_names,
        len(probe["embedding"]) if probe is not None else 0,
        with_name=_base_suffix(input_path) == ".smi",
        kept_columns=tuple(args.keep_columns),
        domain_columns=pipe.applicability_domain is not None,
    )

    show_bar = rank == 0 and not args.quiet
    # The count is the progress bar's total only: no bar, no second reading of the file.
    total = count_rows(input_path, args.smiles_column) if show_bar and not args.no_count else None
    my_total = None if total is None else len(range(rank, total, world_size))
    destination = output_path if world_size == 1 else shard_path(output_path, rank, world_size)
    writer = TableWriter(destination, table.schema)
    handled = failed = 0
    rows_read = read_smiles(input_path, args.smiles_column, tuple(args.keep_columns))
    mine = ((i, row) for i, row in enumerate(rows_read) if i % world_size == rank)
    try:
        with tqdm(total=my_total, unit="mol", desc=args.command, disable=not show_bar) as bar:
            while chunk := list(itertools.islice(mine, args.chunk_size)):
                indices, rows = zip(*chunk)
                results = _predict_rows(pipe, rows, table, args)
                writer.write(table.build(list(indices), list(rows), results))
                handled += len(chunk)
                failed += sum(error is not None for error in results.errors)
                bar.update(len(chunk))
    finally:
        writer.close()
    if failed and not args.quiet:
        print(
            f"molformer-kd {args.command}: {failed} of {handled} rows have an error (see the error column)",
            file=sys.stderr,
        )

    if state is not None:
        state.wait_for_everyone()
        if rank == 0:
            shards = [shard_path(output_path, r, world_size) for r in range(world_size)]
            merge_shards(shards, output_path, table.schema, block_rows=args.chunk_size)
            for shard in shards:
                shard.unlink()
        state.wait_for_everyone()
        state.destroy_process_group()
    return handled


def _predict_rows(
    pipe: MolecularPropertyPredictionPipeline, rows: tuple[InputRow, ...], table: ResultTable, args: argparse.Namespace
) -> PredictionColumns:
    """Pipeline results (columns) for the rows the reader could read, and the reader's error for the others, in row
    order."""
    from .pipelines import PredictionColumns

    readable = [i for i, row in enumerate(rows) if row.error is None]
    smiles = [rows[i].smiles for i in readable]
    options = {"batch_size": args.batch_size, "num_workers": args.num_workers, "mode": args.command}
    results = pipe.predict_columns(smiles, **options) if smiles else None
    if results is not None and len(readable) == len(rows):
        return results
    width = len(table.value_columns)
    values = np.full((len(rows), width), math.nan) if table.mode == "predict" else np.zeros((len(rows), width))
    errors = [row.error for row in rows]
    domain = [None] * len(rows) if pipe.applicability_domain is not None else None
    reasons = [None] * len(rows) if domain is not None else None
    if results is not None:
        if results.values.shape[1] == width:
            values[readable] = results.values
        for k, i in enumerate(readable):
            errors[i] = results.errors[k]
            if domain is not None:
                domain[i], reasons[i] = results.in_domain[k], results.domain_reason[k]
    return PredictionColumns(values, errors, domain, reasons)


def check_model_argument(model: str) -> None:
    """A `--model` that names a local folder must exist: say so at once instead of asking the Hub for a repo of that
    name (retries, then a long HTTP traceback). Offline, every name must be a local folder or a shipped student."""
    from huggingface_hub import constants

    from .data.pretrained import shipped_model, shipped_models

    if Path(model).expanduser().is_dir() or shipped_model(model) is not None:
        return
    looks_local = (
        model.startswith((".", "/", "~"))
        or "\\" in model
        or model.count("/") > 1
        or model.endswith("/")
        or Path(model).expanduser().exists()
    )
    if looks_local or constants.HF_HUB_OFFLINE:
        where = "local folder" if looks_local else "local folder (HF_HUB_OFFLINE is set, so no Hub repo either)"
        names = ", ".join(m.name for m in shipped_models()) or "none"
        raise FileNotFoundError(f"--model {model!r}: no such {where} or shipped model (shipped: {names})")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="molformer-kd", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"molformer-kd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "distill",
        help="train teachers and distill students from a YAML/JSON config (molformer-kd distill --help)",
        add_help=False,
    )
    for name, help_text in (
        ("predict", "predict properties (original units) for every SMILES of a file"),
        ("embed", "write the pooled student embedding of every SMILES of a file"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "--model",
            required=True,
            help="student directory, shipped student name (molformer-kd models lists them) or Hub repo id",
        )
        command.add_argument("--input", required=True, help=".csv/.tsv/.smi, optionally .gz")
        command.add_argument("--output", required=True, help=".csv, .csv.gz, .tsv or .parquet")
        command.add_argument("--smiles-column", default="smiles", help="SMILES column of CSV/TSV inputs")
        command.add_argument(
            "--keep-columns",
            nargs="+",
            default=[],
            metavar="COLUMN",
            help="CSV/TSV columns copied to the output as they are (e.g. an id or name column)",
        )
        command.add_argument("--device", default=None, help="torch device (default: cpu, or the accelerate device)")
        command.add_argument("--batch-size", type=int, default=128)
        command.add_argument(
            "--num-workers",
            type=int,
            default=None,
            help="DataLoader workers that featurize (default: 1 when two cores are free, else 0)",
        )
        command.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="rows read at a time")
        command.add_argument(
            "--threads",
            type=int,
            default=None,
            help=f"torch intra-op threads (default: the free cores less --num-workers, at most {MAX_DEFAULT_THREADS})",
        )
        command.add_argument(
            "--quantize",
            choices=["int8"],
            default=None,
            help="CPU only: int8 dynamic quantization of the student's linear layers (faster, slightly different)",
        )
        command.add_argument("--revision", default=None, help="Hub revision of --model")
        command.add_argument("--token", default=None, help="Hub token (default: the saved login)")
        command.add_argument("--no-count", action="store_true", help="skip the row count (progress bar total)")
        command.add_argument("--quiet", action="store_true", help="no progress bar")
    models = commands.add_parser(
        "models", help="list the students that ship with the package, with their test metrics (no network)"
    )
    models.add_argument("--json", action="store_true", help="one JSON document (name, path, provenance) instead")
    return parser


def list_models(as_json: bool = False, root: str | os.PathLike | None = None) -> str:
    """The `molformer-kd models` text: one block per shipped student (name, architecture, size, data, test metrics
    beside the comparison models', applicability domain), or a JSON list with the same facts and the provenance."""
    import json

    from .data.pretrained import shipped_models

    models = shipped_models(root)
    if as_json:
        return json.dumps(
            [{"name": m.name, "hub_id": m.hub_id, "path": str(m.path), **m.provenance} for m in models], indent=2
        )
    if not models:
        return (
            "no students ship with this installation (molformer_kd/pretrained/ holds none); "
            "`make pretrained` builds and ships them"
        )
    blocks = []
    for model in models:
        config, provenance = model.config(), model.provenance
        data = provenance.get("data", {})
        lines = [
            f"{model.name}  (also {model.hub_id})",
            f"  {provenance.get('description') or config.get('model_type', '?')}",
            f"  model: {config.get('model_type', '?')}, {model.weights_bytes() / 1e6:.1f} MB of safetensors",
        ]
        if data:
            sizes = ", ".join(f"{split} {count}" for split, count in (data.get("sizes") or {}).items())
            lines.append(f"  data: {data.get('dataset', '?')} ({sizes}), labels {', '.join(model.label_names)}")
        comparison = provenance.get("comparison") or {}
        columns = ["this model", *comparison]
        metrics = [name for name in model.test_metrics if not name.endswith("_count")]
        if metrics:
            width = max(len(name) for name in metrics)
            cell = max(12, *(len(c) + 2 for c in columns))  # a column as wide as its longest header, plus a gap
            lines.append(f"    {'test':<{width}} " + "".join(f"{c:>{cell}}" for c in columns))
            for name in metrics:
                values = [model.test_metrics.get(name)] + [other.get(name) for other in comparison.values()]
                cells = "".join(f"{v:>{cell}.4f}" if isinstance(v, (int, float)) else f"{'':>{cell}}" for v in values)
                lines.append(f"    {name:<{width}} {cells}")
        domain = config.get("applicability_domain")
        if domain:
            from .data.domain import ApplicabilityDomain

            lines.append("  applicability domain: " + "; ".join(ApplicabilityDomain.from_dict(domain).describe()))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["distill"]:  # the distill command has its own parser (its --help lists every config key)
        from .distill_command import main as distill_main

        distill_main(argv[1:], prog="molformer-kd distill")
        return 0
    args = build_parser().parse_args(argv)
    if args.command == "models":
        print(list_models(args.json))
        return 0
    threads_invalid = args.threads is not None and args.threads < 1
    workers_invalid = args.num_workers is not None and args.num_workers < 0
    if args.batch_size < 1 or args.chunk_size < 1 or workers_invalid or threads_invalid:
        raise SystemExit("--batch-size, --chunk-size and --threads must be >= 1 and --num-workers >= 0")
    import molformer_kd  # noqa: F401  (registers the model families and processors with the Auto classes)

    try:
        check_model_argument(args.model)
        run(args)
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"molformer-kd {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
