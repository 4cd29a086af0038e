"""Splits a user asks for in a config (random subsets with counts, scaffold, a split column, id files), seeded
max_*_samples draws, and the generated config reference kept in sync with the argument dataclasses."""

from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, DatasetDict

from molformer_kd.data.splits import resplit
from molformer_kd.distillation.arguments import DataArguments
from molformer_kd.distillation.config import config_reference
from molformer_kd.distillation.tasks import load_records

REPO = Path(__file__).resolve().parents[1]
SMILES = ["CCO", "c1ccccc1", "c1ccccc1C", "CCN", "C1CCCCC1", "C1CCCCC1O", "CC(=O)O", "c1ccncc1", "CCCC", "OCCO"]


def records(n_splits=2) -> DatasetDict:
    rows = {
        "smiles": SMILES,
        "mol_id": [f"m{i}" for i in range(10)],
        "gap": [float(i) for i in range(10)],
        "split": ["train"] * 6 + ["Valid", "val", "TEST", ""],
    }
    pool = Dataset.from_dict(rows)
    if n_splits == 1:
        return DatasetDict({"train": pool})
    return DatasetDict({"train": pool.select(range(7)), "test": pool.select(range(7, 10))})


def ids(dataset: DatasetDict) -> dict[str, list[str]]:
    return {name: sorted(rows["mol_id"]) for name, rows in dataset.items()}


def test_random_counts_below_the_pool_draw_a_seeded_subset_of_all_splits():
    first = resplit(records(), {"kind": "random", "seed": 3, "sizes": [4, 2, 2]})
    again = resplit(records(), {"kind": "random", "seed": 3, "sizes": [4, 2, 2]})
    other = resplit(records(), {"kind": "random", "seed": 4, "sizes": [4, 2, 2]})
    assert {name: len(rows) for name, rows in first.items()} == {"train": 4, "validation": 2, "test": 2}
    assert ids(first) == ids(again) and ids(first) != ids(other)
    chosen = [mol_id for split in ids(first).values() for mol_id in split]
    assert len(set(chosen)) == 8  # disjoint, drawn from the pooled train + test rows


def test_random_fractions_split_the_whole_pool():
    split = resplit(records(), {"kind": "random", "sizes": [0.6, 0.2, 0.2]})
    assert sorted(mol_id for rows in ids(split).values() for mol_id in rows) == sorted(f"m{i}" for i in range(10))


def test_scaffold_split_keeps_each_scaffold_in_one_split():
    split = resplit(records(), {"kind": "scaffold", "sizes": [0.6, 0.2, 0.2]})
    from molformer_kd.data.splits import murcko_scaffold

    owners = {}
    for name, rows in split.items():
        for smiles in rows["smiles"]:
            owners.setdefault(murcko_scaffold(smiles), set()).add(name)
    assert all(len(names) == 1 for names in owners.values())


def test_split_column_with_aliases_and_empty_cells():
    split = resplit(records(), {"kind": "column", "column": "split"})
    assert ids(split) == {"train": [f"m{i}" for i in range(6)], "validation": ["m6", "m7"], "test": ["m8"]}


def test_split_column_with_an_unknown_value_names_the_row():
    data = records(1)
    data["train"] = data["train"].map(lambda row: {"split": "holdout" if row["mol_id"] == "m2" else row["split"]})
    with pytest.raises(ValueError, match=r"row m2 holds 'holdout'; use one of"):
        resplit(data, {"kind": "column", "column": "split"})


def test_id_files_by_mol_id_or_smiles(tmp_path):
    (tmp_path / "train.txt").write_text("m0\nm1\nc1ccccc1C\n\n")
    (tmp_path / "test.txt").write_text("OCCO\n")
    split = resplit(
        records(), {"kind": "ids", "train": str(tmp_path / "train.txt"), "test": str(tmp_path / "test.txt")}
    )
    assert ids(split) == {"train": ["m0", "m1", "m2"], "test": ["m9"]}
    (tmp_path / "bad.txt").write_text("m0\nnope\n")
    with pytest.raises(ValueError, match="1 entry of .*bad.txt match no mol_id or SMILES of the data .*'nope'"):
        resplit(records(), {"kind": "ids", "train": str(tmp_path / "bad.txt")})


def test_bad_split_kind_and_keys():
    with pytest.raises(ValueError, match="kind must be one of"):
        resplit(records(), {"kind": "stratified"})
    with pytest.raises(ValueError, match=r"keys \['seed'\] do not apply to kind 'scaffold'"):
        resplit(records(), {"kind": "scaffold", "seed": 1})


def test_max_samples_draw_a_seeded_random_subset_not_the_first_rows():
    """The embedded QM9 training rows are ordered by QM9 index, i.e. roughly by size: the first N are the smallest."""
    args = DataArguments(dataset="qm9_embedded", max_train_samples=256, split_seed=0)
    drawn = load_records(args)["train"]
    full = load_records(DataArguments(dataset="qm9_embedded"))["train"]
    first_sizes = np.mean([len(p) for p in full.select(range(256))["pos"]])
    drawn_sizes = np.mean([len(p) for p in drawn["pos"]])
    all_sizes = np.mean([len(p) for p in full["pos"]])
    assert len(drawn) == 256
    assert abs(drawn_sizes - all_sizes) < abs(first_sizes - all_sizes)
    assert load_records(args)["train"]["mol_id"] == drawn["mol_id"]  # seeded: the same draw again


def test_config_reference_in_docs_is_current():
    """docs/config.md is `python -m molformer_kd.distillation.config` (regenerate it after changing arguments.py)."""
    assert (REPO / "docs" / "config.md").read_text() == config_reference()


def test_every_argument_has_help():
    from dataclasses import fields

    from molformer_kd.distillation.arguments import ARGUMENT_CLASSES

    missing = [
        f"{cls.__name__}.{f.name}" for cls in ARGUMENT_CLASSES for f in fields(cls) if not f.metadata.get("help")
    ]
    assert missing == []
