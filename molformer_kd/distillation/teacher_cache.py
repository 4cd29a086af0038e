"""Teacher-output cache: the frozen teacher's per-token outputs computed once per dataset and reused every epoch.

The teacher is frozen and in eval mode, and the paired collator's teacher inputs are a fixed function of each row
(`PairedCollator`: featurized SMILES + stored coordinates, no noise, no augmentation). Its outputs for a row are
therefore the same every epoch, and a distillation epoch can cost about one student epoch: the first run writes
the outputs the objectives read (`last_hidden_state`, plus `hidden_states`, `attentions` and/or the property head's
`logits` when an objective needs them) to an Arrow file, one row per molecule and unpadded (its `1 + atoms` real
tokens only; `logits` are one vector per molecule), so batches of any order and size are re-padded from it
(`TeacherCache.padded`).

Key. A cache file is named by a hash of everything its values depend on: the teacher's weights and config, the
teacher featurizer's settings, the outputs cached, the precision they were computed in and the rows' `smiles` and
`pos` columns (and `h_pos` for an all-atom point-cloud teacher), in order. A changed teacher, dataset or setting
never reads a stale cache; an unchanged one is reused across runs and stages.

Memory. Per molecule of T tokens (QM9: T = 1 + at most 9 heavy atoms, about 10 on average), for a teacher of
width D, L layers and H heads, float32: `hidden_states` 4 * (L+1) * T * D bytes, `attentions` 4 * L * H * T^2,
`last_hidden_state` 4 * T * D, `logits` 4 * K for K labels (`cache_bytes_per_molecule`). For all of QM9 (~130k
molecules, T ~ 10) and CCMD (hidden states): the paper teacher (D=768, L=12) ~56 GB, the `small` preset (D=384, L=6)
~16 GB, `tiny` (D=32, L=2) ~0.7 GB; ST-KD's attentions add 4 * L * H * T^2 (paper teacher, H=32: ~20 GB).
The file lives on disk and is memory-mapped: the page cache holds what fits, shared by every process of a run.

Multi-process runs: the main process writes the file (temporary name, then an atomic rename) while the others wait
at a barrier; then every process memory-maps it.

Energy/force distillation (point clouds, `PointCloudTeacherCache`). The KD-GNN objectives compare the student with
per-molecule or per-atom teacher targets (`gnn_objectives.TEACHER_TARGETS`: energy, forces, atom energies, node or
vector features, and e2n's / v2v's edge sums), each a function of the teacher's output on the (fixed, noise-free)
point cloud. The cache stores those targets, one row per molecule over its real atoms, and batches carry them as
`teacher_targets`; the edge sums are stored summed per atom, not as the (E, F) edge features, whose number grows with
the square of the atoms. A molecule of N atoms takes 4 * N * (sum of the targets' widths) bytes, e.g. n2n with a
128-wide teacher: 512 N bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset, Features, Value
from datasets import Sequence as SequenceFeature
from datasets.arrow_writer import ArrowWriter
from torch import nn
from tqdm.auto import tqdm

from ..tokenization.collators import GraphCollator, PairedCollator, PointCloudCollator, collect_labels
from ..tokenization.featurization import MoleculeFeaturizer
from ..tokenization.point_cloud import PointCloudFeaturizer
from .checkpoints import atomic_write_text, reported_file_errors
from .gnn_objectives import PER_MOLECULE_TARGETS, TEACHER_TARGETS

if TYPE_CHECKING:
    from transformers.utils import ModelOutput

__all__ = [
    "CACHEABLE_OUTPUTS",
    "CACHE_ROW_COLUMN",
    "CachedPointCloudCollator",
    "CachedTeacherCollator",
    "PointCloudTeacherCache",
    "TeacherCache",
    "TeacherCacheError",
    "build_point_cloud_cache",
    "build_teacher_cache",
    "cache_bytes_per_molecule",
    "cached_fields",
    "check_cacheable_collator",
    "point_cloud_targets",
    "rows_fingerprint",
    "teacher_cache_key",
    "teacher_fingerprint",
]

# Bump when the file layout changes: older files are then never read.
CACHE_FORMAT_VERSION = 1
# The teacher outputs a cache can hold (the token tensors of the model output contract); objectives name them in
# `teacher_outputs_needed`. `last_hidden_state` is always cached (D&D reads it without declaring it).
CACHEABLE_OUTPUTS = ("hidden_states", "attentions", "logits")
# Cached outputs with one value per molecule (a (B, K) tensor) rather than one per token.
PER_MOLECULE_OUTPUTS = ("logits",)
# The dataset column that tells the cached collator which cache row a dataset row is.
CACHE_ROW_COLUMN = "__teacher_cache_row__"
# The rows' columns a graph teacher's inputs are made from (PairedCollator's teacher featurizer reads these; a
# point-cloud teacher's featurizer names its own, `input_columns`).
TEACHER_INPUT_COLUMNS = ("smiles", "pos")
# The same for point clouds (PointCloudCollator).
POINT_CLOUD_INPUT_COLUMNS = ("atomic_numbers", "positions")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class TeacherCacheError(ValueError):
    """A run asks for a teacher cache that cannot give the same teacher outputs as the live teacher."""


def cached_fields(teacher_outputs_needed: Iterable[str]) -> tuple[str, ...]:
    """The output fields a cache for these objectives holds (sorted); refuses outputs a cache cannot hold."""
    needed = set(teacher_outputs_needed)
    unknown = sorted(needed - set(CACHEABLE_OUTPUTS))
    if unknown:
        raise TeacherCacheError(
            f"teacher_cache: the objectives read teacher outputs {unknown}; a cache holds only "
            f"{list(CACHEABLE_OUTPUTS)} and last_hidden_state"
        )
    return ("last_hidden_state", *sorted(needed))


def point_cloud_targets(objectives: Iterable[Any]) -> tuple[str, ...]:
    """The `TEACHER_TARGETS` a point-cloud cache holds for these objectives (sorted); every objective that reads the
    teacher must name its targets (`teacher_targets`)."""
    targets = set()
    for objective in objectives:
        if not getattr(objective, "needs_teacher", True):
            continue
        names = getattr(objective, "teacher_targets", None)
        if names is None:
            raise TeacherCacheError(
                f"teacher_cache: objective {type(objective).__name__} reads the teacher's raw output, which a "
                "point-cloud cache does not hold; set teacher_cache: false"
            )
        targets.update(names)
    return tuple(sorted(targets))


def check_cacheable_collator(collator: Any) -> None:
    """The cache replaces the teacher's batch, so that batch must be a fixed function of the row: the paired collator
    of the property task or of energy/force distillation (no coordinate noise, no augmentation). Anything else is
    refused at start-up."""
    if type(collator) is PairedCollator:
        return
    if type(collator) is PointCloudCollator and collator.paired:
        return
    raise TeacherCacheError(
        f"teacher_cache: the teacher's inputs come from a {type(collator).__name__}, whose batches may differ between "
        "epochs (noised coordinates, augmentation); only the paired collators of the property task (PairedCollator) "
        "and of energy/force distillation (PointCloudCollator(paired=True)) give fixed teacher inputs. "
        "Set teacher_cache: false"
    )


def cache_bytes_per_molecule(
    tokens: int, hidden_size: int, layers: int, heads: int, fields: Sequence[str], labels: int = 0
) -> int:
    """Bytes one molecule of `tokens` tokens takes in the cache (float32; see the module docstring)."""
    sizes = {
        "last_hidden_state": tokens * hidden_size,
        "hidden_states": (layers + 1) * tokens * hidden_size,
        "attentions": layers * heads * tokens * tokens,
        "logits": labels,
    }
    return 4 * sum(sizes[name] for name in fields)


def teacher_fingerprint(teacher: nn.Module) -> str:
    """sha256 of the teacher's config and every weight (names, dtypes, shapes, bytes), independent of the device."""
    digest = hashlib.sha256()
    config = getattr(teacher, "config", None)
    if config is not None:
        digest.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(teacher.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def rows_fingerprint(rows: Dataset, input_columns: Sequence[str] = TEACHER_INPUT_COLUMNS) -> str:
    """sha256 of the columns the teacher reads (default `smiles`, `pos`), in row order (Arrow IPC bytes of those
    columns)."""
    columns = [c for c in input_columns if c in rows.column_names]
    table = rows.select_columns(columns).with_format("arrow")[:]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def teacher_cache_key(
    teacher: str,
    rows: str,
    featurizer: MoleculeFeaturizer | PointCloudFeaturizer | None,
    fields: Sequence[str],
    dtype: str,
) -> str:
    """The cache file's name: a hash of the teacher and rows fingerprints, the featurizer (None: point clouds, read
    as they are), the fields and dtype."""
    description = {
        "format": CACHE_FORMAT_VERSION,
        "teacher": teacher,
        "rows": rows,
        "featurizer": featurizer.to_json_string() if featurizer is not None else "point cloud",
        "fields": list(fields),
        "dtype": dtype,
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]


def _features(fields: Sequence[str], count_column: str = "tokens") -> Features:
    return Features({count_column: Value("int32"), **{name: SequenceFeature(Value("float32")) for name in fields}})


def build_teacher_cache(
    path: str | os.PathLike,
    rows: Dataset,
    collator: PairedCollator,
    teacher_forward: Callable[[dict], Any],
    fields: Sequence[str],
    batch_size: int,
) -> None:
    """Run `teacher_forward` over `rows` in order and write the outputs of `fields`, unpadded, to `path` (Arrow),
    with `{path}.json` (shapes, dtype) written last. Both are written under temporary names and renamed into place.

    `teacher_forward(batch)` gets the collated CPU batch and returns the teacher's `MolecularModelOutput`.
    """
    meta: dict[str, Any] = {"fields": list(fields), "rows": len(rows)}
    _write_cache(
        path,
        rows,
        collator,
        batch_size,
        _features(fields),
        lambda batch: _unpadded_table(teacher_forward(batch), fields, meta, batch.get("shared_atom_mask")),
        meta,
    )


def build_point_cloud_cache(
    path: str | os.PathLike,
    rows: Dataset,
    collator: PointCloudCollator,
    teacher_forward: Callable[[dict], Any],
    targets: Sequence[str],
    batch_size: int,
) -> None:
    """`build_teacher_cache` for energy/force distillation: writes the `TEACHER_TARGETS` named in `targets` of every
    row (its real atoms only; one value for per-molecule targets), computed from `teacher_forward(batch)`."""
    meta: dict[str, Any] = {"fields": list(targets), "rows": len(rows)}
    _write_cache(
        path,
        rows,
        collator,
        batch_size,
        _features(targets, "atoms"),
        lambda batch: _unpadded_target_table(teacher_forward(batch), batch, targets, meta),
        meta,
    )


def _write_cache(
    path: str | os.PathLike,
    rows: Dataset,
    collator: Callable[[list], dict],
    batch_size: int,
    features: Features,
    table_of_batch: Callable[[dict], pa.Table],
    meta: dict,
) -> None:
    path = Path(path)
    with reported_file_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        try:
            writer = ArrowWriter(path=temporary, features=features)
            for start in tqdm(range(0, len(rows), batch_size), desc=f"teacher cache {path.name}", unit="batch"):
                batch = collator([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
                with torch.no_grad():
                    writer.write_table(table_of_batch(batch))
            writer.finalize()
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    atomic_write_text(f"{path}.json", json.dumps(meta, indent=1))


def _unpadded_table(
    outputs: ModelOutput, fields: Sequence[str], meta: dict, shared_atom_mask: torch.Tensor | None = None
) -> pa.Table:
    """One Arrow row per molecule: its token count and each field's values over its real tokens, flattened.

    With `shared_atom_mask` (an all-atom point-cloud teacher) only the global token and the atoms the student shares
    are kept: the objectives read nothing else, and the hydrogens would double the file."""
    token_mask = outputs.token_mask.bool().cpu()
    tokens = token_mask.sum(dim=1) if shared_atom_mask is None else 1 + shared_atom_mask.bool().cpu().sum(dim=1)
    # Real tokens must be a prefix (global token, then atoms) so that re-padding at the end restores the layout.
    if not all(bool(token_mask[b, : tokens[b]].all()) for b in range(len(tokens))):
        raise TeacherCacheError("teacher_cache: the teacher's real tokens are not a prefix of its sequence")
    columns: dict[str, pa.Array] = {"tokens": pa.array(tokens.numpy().astype(np.int32))}
    for name in fields:
        value = getattr(outputs, name, None)
        if value is None:
            raise TeacherCacheError(f"teacher_cache: the teacher returned no {name}")
        if name in PER_MOLECULE_OUTPUTS:
            meta.setdefault("dtype", str(value.dtype).removeprefix("torch."))
            meta[name] = [1, value.shape[-1]]
            columns[name] = pa.array(list(value.detach().float().cpu().numpy()), pa.list_(pa.float32()))
            continue
        stacked = torch.stack(value, dim=1) if isinstance(value, tuple | list) else value.unsqueeze(1)
        meta.setdefault("dtype", str(stacked.dtype).removeprefix("torch."))
        # (layers, heads) of attentions (B, L, H, T, T); (layers or 1, width) of hidden states (B, L, T, D).
        meta[name] = [stacked.shape[1], stacked.shape[2] if name == "attentions" else stacked.shape[-1]]
        stacked = stacked.detach().float().cpu()
        pieces = []
        for b, count in enumerate(tokens.tolist()):
            one = stacked[b, ..., :count, :count] if name == "attentions" else stacked[b, :, :count]
            pieces.append(one.reshape(-1).numpy())
        offsets = np.zeros(len(pieces) + 1, dtype=np.int32)
        np.cumsum([len(p) for p in pieces], out=offsets[1:])
        columns[name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(pieces)))
    return pa.table(columns)


def _unpadded_target_table(outputs: ModelOutput, batch: dict, targets: Sequence[str], meta: dict) -> pa.Table:
    """One Arrow row per molecule: its atom count and each target over its real atoms (or its one value), flattened."""
    atoms = batch["teacher_inputs"]["atom_mask"].bool().sum(dim=1).cpu()
    columns: dict[str, pa.Array] = {"atoms": pa.array(atoms.numpy().astype(np.int32))}
    for name in targets:
        value = TEACHER_TARGETS[name](outputs, "teacher_cache").detach()
        meta.setdefault("dtype", str(value.dtype).removeprefix("torch."))
        meta[name] = list(value.shape[1:] if name in PER_MOLECULE_TARGETS else value.shape[2:])
        value = value.float().cpu()
        pieces = [
            (value[b : b + 1] if name in PER_MOLECULE_TARGETS else value[b, :count]).reshape(-1).numpy()
            for b, count in enumerate(atoms.tolist())
        ]
        offsets = np.zeros(len(pieces) + 1, dtype=np.int32)
        np.cumsum([len(p) for p in pieces], out=offsets[1:])
        columns[name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(pieces)))
    return pa.table(columns)


class TeacherCache:
    """Written cache files, memory-mapped and read as one table: `padded(indices)` re-pads the cached outputs of
    those rows into a batch. Row i is the i-th row over all files, in order."""

    # The column holding each row's length: real tokens here, atoms in `PointCloudTeacherCache`.
    count_column = "tokens"

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        self.paths = [str(p) for p in paths]
        metas = [json.loads(Path(f"{p}.json").read_text()) for p in self.paths]
        shape = {k: v for k, v in metas[0].items() if k != "rows"}
        for meta in metas[1:]:
            if {k: v for k, v in meta.items() if k != "rows"} != shape:
                raise TeacherCacheError(f"teacher caches {self.paths} hold different outputs")
        self.meta = {**shape, "rows": sum(m["rows"] for m in metas)}
        # Per row: its token count, its Arrow chunk and where its values start in that chunk's flat values. Reading
        # a batch is then numpy slicing of memory-mapped buffers (an Arrow `take` per batch costs several times more).
        chunks = [chunk for p in self.paths for chunk in Dataset.from_file(p).data.table.to_batches()]
        self.tokens = np.concatenate([chunk.column(self.count_column).to_numpy() for chunk in chunks]).astype(np.int64)
        self.row_chunk = np.concatenate([np.full(chunk.num_rows, c) for c, chunk in enumerate(chunks)])
        self.values: dict[str, list[np.ndarray]] = {}
        self.row_start: dict[str, np.ndarray] = {}
        for name in self.meta["fields"]:
            columns = [chunk.column(name) for chunk in chunks]
            self.values[name] = [column.flatten().to_numpy() for column in columns]
            self.row_start[name] = np.concatenate(
                [column.offsets.to_numpy()[:-1] - column.offsets[0].as_py() for column in columns]
            )

    def __getstate__(self) -> dict:
        # Dataloader workers re-map the files instead of receiving a pickled copy of every row.
        return {"paths": self.paths}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["paths"])

    def __len__(self) -> int:
        return self.meta["rows"]

    def padded(self, indices: Sequence[int]) -> dict[str, Any]:
        """The cached outputs of rows `indices`, padded to the batch's longest molecule with zeros: the fields of a
        `MolecularPropertyOutput` (`hidden_states`/`attentions` as tuples of per-layer tensors, `logits` (B, K)) plus
        `token_mask`."""
        indices = np.asarray(indices, dtype=np.int64)
        tokens = self.tokens[indices]
        width = int(tokens.max())
        dtype = _DTYPES[self.meta.get("dtype", "float32")]
        result: dict[str, Any] = {"token_mask": torch.from_numpy(np.arange(width)[None, :] < tokens[:, None])}
        for name in self.meta["fields"]:
            layers, size = self.meta[name]
            if name in PER_MOLECULE_OUTPUTS:
                rows = [self.values[name][self.row_chunk[row]][self.row_start[name][row] :][:size] for row in indices]
                result[name] = torch.from_numpy(np.stack(rows)).to(dtype)
                continue
            attentions = name == "attentions"
            shape = (len(indices), layers, size, width, width) if attentions else (len(indices), layers, width, size)
            padded = np.zeros(shape, dtype=np.float32)
            for b, (row, count) in enumerate(zip(indices, tokens)):
                start = self.row_start[name][row]
                length = layers * size * count * (count if attentions else 1)
                flat = self.values[name][self.row_chunk[row]][start : start + length]
                if attentions:
                    padded[b, :, :, :count, :count] = flat.reshape(layers, size, count, count)
                else:
                    padded[b, :, :count] = flat.reshape(layers, count, size)
            stacked = torch.from_numpy(padded).to(dtype)
            result[name] = stacked[:, 0] if name == "last_hidden_state" else tuple(stacked.unbind(dim=1))
        return result


class PointCloudTeacherCache(TeacherCache):
    """The cache of energy/force distillation: `padded(indices)` gives each target of those rows, per atom (B, N, ...)
    padded with zeros to the batch's largest molecule, or per molecule (B,), plus the batch's `atom_mask`."""

    count_column = "atoms"

    def padded(self, indices: Sequence[int]) -> dict[str, Any]:
        indices = np.asarray(indices, dtype=np.int64)
        atoms = self.tokens[indices]
        width = int(atoms.max())
        dtype = _DTYPES[self.meta.get("dtype", "float32")]
        result: dict[str, Any] = {"atom_mask": torch.from_numpy(np.arange(width)[None, :] < atoms[:, None]).long()}
        for name in self.meta["fields"]:
            shape = tuple(self.meta[name])
            per_molecule = name in PER_MOLECULE_TARGETS
            padded = np.zeros((len(indices), *shape) if per_molecule else (len(indices), width, *shape), np.float32)
            size = int(np.prod(shape, dtype=np.int64))
            for b, (row, count) in enumerate(zip(indices, atoms)):
                start = self.row_start[name][row]
                length = size if per_molecule else size * count
                flat = self.values[name][self.row_chunk[row]][start : start + length]
                if per_molecule:
                    padded[b] = flat.reshape(shape)
                else:
                    padded[b, :count] = flat.reshape(count, *shape)
            result[name] = torch.from_numpy(padded).to(dtype)
        return result


class CachedPointCloudCollator:
    """Energy/force distillation batches whose teacher part comes from a `PointCloudTeacherCache`: the paired point
    cloud batch with `teacher_targets` (the padded cached targets) in place of `teacher_inputs`. Rows without
    `CACHE_ROW_COLUMN` get the paired collator's batch, so the trainer runs the live teacher on them."""

    def __init__(self, paired: PointCloudCollator, cache: PointCloudTeacherCache) -> None:
        self.paired = paired
        self.cache = cache

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch = self.paired(rows)
        if not all(CACHE_ROW_COLUMN in row for row in rows):
            return batch
        indices = [int(row[CACHE_ROW_COLUMN]) for row in rows]
        targets = self.cache.padded(indices)
        atoms, cached_atoms = batch["student_inputs"]["atom_mask"].sum(dim=1), targets["atom_mask"].sum(dim=1)
        if not torch.equal(atoms, cached_atoms):
            b = int(torch.nonzero(atoms != cached_atoms)[0])
            raise TeacherCacheError(
                f"teacher_cache row {indices[b]} has {int(cached_atoms[b])} atoms but row {rows[b].get('mol_id', b)!r} "
                f"has {int(atoms[b])}: the cache does not belong to these rows"
            )
        del batch["teacher_inputs"]
        batch["teacher_targets"] = targets
        return batch


class CachedTeacherCollator:
    """Batches whose teacher part comes from a `TeacherCache`: `student_inputs` and `labels` as the paired collator
    builds them, `teacher_outputs` (the padded cached outputs) and `teacher_inputs` with only the atom
    `attention_mask` (what the objectives read of the teacher's batch). The teacher is not featurized.

    Rows without `CACHE_ROW_COLUMN` (a dataset the cache was not built for) get the paired collator's full batch,
    so the trainer runs the live teacher on them.
    """

    def __init__(self, paired: PairedCollator, cache: TeacherCache) -> None:
        self.paired = paired
        self.cache = cache

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not all(CACHE_ROW_COLUMN in row for row in rows):
            return self.paired(rows)
        indices = [int(row[CACHE_ROW_COLUMN]) for row in rows]
        teacher_outputs = self.cache.padded(indices)
        atoms = teacher_outputs["token_mask"][:, 1:]
        encoder = self.paired.student_encoder
        if isinstance(encoder, MoleculeFeaturizer):
            student_inputs = GraphCollator.pad(encoder.featurize_many(rows))
            student_atoms = student_inputs["attention_mask"].sum(dim=1)
        else:
            student_inputs = dict(encoder([row["smiles"] for row in rows], padding=True, return_tensors="pt"))
            student_atoms = student_inputs["atom_mask"].sum(dim=1) if "atom_mask" in student_inputs else None
        if student_atoms is not None and not torch.equal(student_atoms, atoms.sum(dim=1)):
            b = int(torch.nonzero(student_atoms != atoms.sum(dim=1))[0])
            raise TeacherCacheError(
                f"teacher_cache row {indices[b]} has {int(atoms[b].sum())} atoms but molecule {rows[b]['smiles']!r} "
                f"has {int(student_atoms[b])}: the cache does not belong to these rows"
            )
        batch = {
            "teacher_inputs": {"attention_mask": atoms.long()},
            "teacher_outputs": teacher_outputs,
            "student_inputs": student_inputs,
        }
        if self.paired.label_columns:
            batch["labels"] = collect_labels(rows, self.paired.label_columns)
        return batch
