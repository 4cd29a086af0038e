"""Train/validation/test splits: seeded random, and deterministic Bemis-Murcko scaffold split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasets import Dataset, DatasetDict
from rdkit.Chem.Scaffolds import MurckoScaffold

from .molecules import mol_from_smiles

__all__ = [
    "DEFAULT_SIZES",
    "SPLIT_NAMES",
    "murcko_scaffold",
    "random_split",
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
    return {name: np.sort(permutation[bounds[k]:bounds[k + 1]]) for k, name in enumerate(SPLIT_NAMES)}


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
