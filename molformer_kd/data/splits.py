"""Train/validation/test splits: seeded random, and deterministic Bemis-Murcko scaffold split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets
from rdkit.Chem.Scaffolds import MurckoScaffold

from .molecules import mol_from_smiles

__all__ = [
    "DEFAULT_SIZES",
    "SPLIT_KINDS",
    "SPLIT_NAMES",
    "murcko_scaffold",
    "random_split",
    "resplit",
    "scaffold_split",
    "split_counts",
    "split_dataset",
    "split_indices",
]

SPLIT_NAMES = ("train", "validation", "test")
DEFAULT_SIZES = (0.8, 0.1, 0.1)


def split_counts(n: int, sizes: Sequence[float | int] = DEFAULT_SIZES) -> tuple[int, int, int]:
    """Train/validation/test counts: ``sizes`` are three fractions summing to 1 or three counts summing to n."""
    if len(sizes) != 3:
        raise ValueError(f"sizes must have three entries (train, validation, test), got {tuple(sizes)}")
    if any(size < 0 for size in sizes):
        raise ValueError(f"sizes must be non-negative, got {tuple(sizes)}")
    if all(isinstance(size, (int, np.integer)) for size in sizes):
        if sum(sizes) != n:
            raise ValueError(
                f"split counts {tuple(sizes)} sum to {sum(sizes)}, but there are {n} molecules "
                "(give fractions as floats, e.g. (1.0, 0.0, 0.0))"
            )
        return tuple(int(size) for size in sizes)
    if abs(sum(sizes) - 1.0) > 1e-6:
        raise ValueError(f"split fractions {tuple(sizes)} must sum to 1")
    n_validation = round(sizes[1] * n)
    n_test = round(sizes[2] * n)
    return n - n_validation - n_test, n_validation, n_test


def random_split(n: int, sizes: Sequence[float | int] = DEFAULT_SIZES, seed: int = 0) -> dict[str, np.ndarray]:
    """Indices of each split from one seeded permutation of range(n) (sorted inside each split)."""
    counts = split_counts(n, sizes)
    permutation = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum((0,) + counts)
    return {name: np.sort(permutation[bounds[k] : bounds[k + 1]]) for k, name in enumerate(SPLIT_NAMES)}


def murcko_scaffold(smiles: str) -> str:
    """Canonical Bemis-Murcko scaffold SMILES (ring systems + linkers, no stereo); '' for acyclic molecules."""
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol_from_smiles(smiles), includeChirality=False)


def scaffold_split(smiles: Sequence[str], sizes: Sequence[float | int] = DEFAULT_SIZES) -> dict[str, np.ndarray]:
    """Deterministic scaffold split: molecules grouped by scaffold, the largest groups go to train first.

    Groups are visited from largest to smallest (ties: first occurrence) and each goes whole to the first split,
    in train/validation/test order, that still has room for it, so no scaffold is in two splits; a group fitting
    nowhere goes to test. Split sizes therefore only approximate ``sizes``.
    """
    counts = split_counts(len(smiles), sizes)
    groups: dict[str, list[int]] = {}
    for index, molecule in enumerate(smiles):
        groups.setdefault(murcko_scaffold(molecule), []).append(index)
    ordered = sorted(groups.values(), key=lambda members: (-len(members), members[0]))
    assigned: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for members in ordered:
        for name, capacity in zip(SPLIT_NAMES, counts):
            if len(assigned[name]) + len(members) <= capacity:
                assigned[name] += members
                break
        else:
            assigned["test"] += members
    return {name: np.array(sorted(members), dtype=np.int64) for name, members in assigned.items()}


def split_indices(
    smiles: Sequence[str], method: str = "random", sizes: Sequence[float | int] = DEFAULT_SIZES, seed: int = 0
) -> dict[str, np.ndarray]:
    """Dispatch to ``random_split`` (uses ``seed``) or ``scaffold_split`` (deterministic)."""
    if method == "random":
        return random_split(len(smiles), sizes, seed)
    if method == "scaffold":
        return scaffold_split(smiles, sizes)
    raise ValueError(f"unknown split method {method!r}; use 'random', 'scaffold' or None")


def split_dataset(
    dataset: Dataset,
    method: str | None = "random",
    sizes: Sequence[float | int] = DEFAULT_SIZES,
    seed: int = 0,
    smiles_column: str = "smiles",
) -> DatasetDict:
    """A DatasetDict of the non-empty splits; ``method=None`` puts everything in ``train``."""
    if method is None:
        return DatasetDict({"train": dataset})
    indices = split_indices(dataset[smiles_column], method, sizes, seed)
    return DatasetDict({name: dataset.select(rows) for name, rows in indices.items() if len(rows)})


SPLIT_KINDS = ("random", "scaffold", "column", "ids")
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


def _pooled(dataset: Dataset | DatasetDict) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset
    return concatenate_datasets(
        [dataset[name] for name in SPLIT_NAMES if name in dataset]
        + [rows for name, rows in dataset.items() if name not in SPLIT_NAMES]
    )


def _subset_counts(n: int, sizes: Sequence[float | int]) -> tuple[int, int, int]:
    """Counts of a split that may use only part of the pool: three counts summing to at most n, or fractions."""
    if len(sizes) == 3 and all(isinstance(size, (int, np.integer)) for size in sizes) and sum(sizes) < n:
        if any(size < 0 for size in sizes):
            raise ValueError(f"sizes must be non-negative, got {tuple(sizes)}")
        return tuple(int(size) for size in sizes)
    return split_counts(n, sizes)


def unlabeled_count(spec: dict, left: int) -> int:
    """Rows of a random split's ``unlabeled`` entry: a count (at most the `left` rows outside the three splits) or
    ``rest`` (all of them)."""
    value = spec["unlabeled"]
    if value == "rest":
        return left
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"split.unlabeled: {value!r}; give a count of rows or 'rest'")
    if value > left:
        raise ValueError(f"split.unlabeled: {value} rows asked, but only {left} are outside train/validation/test")
    return int(value)


def _read_id_file(path: str) -> list[str]:
    with open(path, encoding="utf-8-sig") as handle:
        return [line.strip() for line in handle if line.strip()]


def resplit(dataset: Dataset | DatasetDict, spec: dict) -> DatasetDict:
    """A new train/validation/test split of every record of `dataset` (its splits pooled), as a config asks:

    - ``{kind: random, seed: 0, sizes: [20000, 2000, 5000]}``: seeded; counts summing to less than the pool draw a
      seeded random subset (sizes may also be fractions). ``unlabeled: N`` (or ``rest``) adds a split "unlabeled"
      of N more rows, the next ones of the same permutation (``rest``: every row left), for objectives that need no
      label (the train/validation/test rows are the same with or without it);
    - ``{kind: scaffold, sizes: [0.8, 0.1, 0.1]}``: deterministic Bemis-Murcko scaffold split;
    - ``{kind: column, column: split}``: each row's split named in a column (train / validation (valid, val, dev) /
      test, any case); rows with an empty cell are left out;
    - ``{kind: ids, train: FILE, validation: FILE, test: FILE}``: text files of ``mol_id``s or SMILES, one a line.
    Bad specs and unknown values raise a ValueError naming the key, the value and the valid choices.
    """
    if not isinstance(spec, dict) or spec.get("kind") not in SPLIT_KINDS:
        raise ValueError(f"split: kind must be one of {list(SPLIT_KINDS)}, got {spec!r}")
    kind = spec["kind"]
    allowed = {
        "random": {"seed", "sizes", "unlabeled"},
        "scaffold": {"sizes"},
        "column": {"column"},
        "ids": set(SPLIT_NAMES),
    }[kind]
    unknown = sorted(set(spec) - allowed - {"kind"})
    if unknown:
        raise ValueError(f"split: keys {unknown} do not apply to kind {kind!r}; it takes {sorted(allowed)}")
    pool = _pooled(dataset)
    n = len(pool)
    if kind in ("random", "scaffold"):
        sizes = spec.get("sizes", DEFAULT_SIZES)
        counts = _subset_counts(n, sizes)
        if kind == "random":
            permutation = np.random.default_rng(int(spec.get("seed", 0))).permutation(n)
            bounds = np.cumsum((0,) + counts)
            indices = {name: np.sort(permutation[bounds[k] : bounds[k + 1]]) for k, name in enumerate(SPLIT_NAMES)}
            if spec.get("unlabeled") is not None:
                indices["unlabeled"] = np.sort(
                    permutation[bounds[3] : bounds[3] + unlabeled_count(spec, n - bounds[3])]
                )
        else:
            if sum(counts) < n:  # scaffold groups need the whole pool: scale the counts to it
                counts = split_counts(n, [count / sum(counts) for count in counts])
            indices = scaffold_split(pool["smiles"], counts)
    elif kind == "column":
        column = spec.get("column")
        if column not in pool.column_names:
            raise ValueError(f"split: no column {column!r} in the records; they have {pool.column_names}")
        indices = {name: [] for name in SPLIT_NAMES}
        for row, value in enumerate(pool[column]):
            text = "" if value is None else str(value).strip().lower()
            if not text:
                continue
            if text not in _SPLIT_ALIASES:
                raise ValueError(
                    f"split: column {column!r} row {pool[row].get('mol_id', row)} holds {value!r}; use one of "
                    f"{sorted(set(_SPLIT_ALIASES))} (or leave it empty to leave the row out)"
                )
            indices[_SPLIT_ALIASES[text]].append(row)
    else:
        by_id = {mol_id: row for row, mol_id in enumerate(pool["mol_id"])}
        by_smiles = {smiles: row for row, smiles in enumerate(pool["smiles"])}
        indices = {}
        for name in SPLIT_NAMES:
            if name not in spec:
                continue
            wanted = _read_id_file(spec[name])
            rows = [by_id.get(entry, by_smiles.get(entry)) for entry in wanted]
            missing = [entry for entry, row in zip(wanted, rows) if row is None]
            if missing:
                raise ValueError(
                    f"split: {len(missing)} entr{'y' if len(missing) == 1 else 'ies'} of {spec[name]} match no "
                    f"mol_id or SMILES of the data (first: {missing[0]!r})"
                )
            indices[name] = rows
    return DatasetDict({name: pool.select(rows) for name, rows in indices.items() if len(rows)})
