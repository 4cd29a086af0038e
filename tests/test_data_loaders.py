"""CSV/TSV/gzip, SDF, PCQM4Mv2-layout and qm9pack loaders, with their errors and reported skips."""

import gzip
import importlib.util
import logging
import math

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from molformer_kd.data import HARTREE_TO_EV, load_csv, load_pcqm4mv2, load_qm9, load_sdf
from molformer_kd.data.tabular import sniff_delimiter

CSV_TEXT = (
    "smiles,solubility,logp,name\nCCO,1.5,-0.3,ethanol\nC1CC,2.0,0.1,broken\nc1ccccc1,,2.1,benzene\n"
    "CC(=O)O,0.7,NA,acid\n"
)


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MOLFORMER_KD_CACHE", str(tmp_path / "cache"))


def _all_rows(dataset_dict):
    return [row for split in dataset_dict.values() for row in split]


@pytest.mark.parametrize(
    "name,text,opener",
    [
        ("mols.csv", CSV_TEXT, open),
        ("mols.tsv", CSV_TEXT.replace(",", "\t"), open),
        ("mols.csv.gz", CSV_TEXT, gzip.open),
        ("mols.txt", CSV_TEXT.replace(",", ";"), open),
    ],
)
def test_load_csv_formats_and_reported_skip(tmp_path, caplog, name, text, opener):
    path = tmp_path / name
    with opener(path, "wt") as handle:
        handle.write(text)
    with caplog.at_level(logging.WARNING, logger="molformer_kd.data"):
        data, report = load_csv(path, label_columns=["solubility", "logp"], split=None, return_report=True)
    rows = _all_rows(data)
    assert [row["smiles"] for row in rows] == ["CCO", "c1ccccc1", "CC(=O)O"]
    assert [row["mol_id"] for row in rows] == [f"{name}:2", f"{name}:4", f"{name}:5"]
    assert rows[0]["solubility"] == 1.5 and math.isnan(rows[1]["solubility"]) and math.isnan(rows[2]["logp"])
    assert all(row["pos"] is None for row in rows)
    assert len(report.skipped) == 1 and report.n_records == 4 and report.n_kept == 3
    assert report.skipped[0].where == f"{path} line 3"
    assert "C1CC" in report.skipped[0].reason
    assert f"{path} line 3" in caplog.text  # logged, not silent
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="molformer_kd.data"):
        again = load_csv(path, label_columns=["solubility", "logp"], split=None)  # from the cache
    assert again["train"]["mol_id"] == data["train"]["mol_id"]
    assert again["train"].cache_files == data["train"].cache_files  # the same Arrow files, not a rebuild
    assert f"{path} line 3" in caplog.text  # the cached copy reports the skip again


def test_sniffer_and_default_labels(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("id\tSMILES\ty\nm1\tCCN\t3\nm2\tCCCl\t4\n")
    assert sniff_delimiter(path) == "\t"
    data = load_csv(path, smiles_column="SMILES", split=None)
    assert data["train"].column_names == ["smiles", "pos", "y", "mol_id"]  # 'id' is text, so not a label
    assert data["train"]["y"] == [3.0, 4.0]


def test_load_csv_raise_on_invalid_names_file_and_line(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text(CSV_TEXT)
    with pytest.raises(ValueError, match=r"mols\.csv line 3: invalid SMILES 'C1CC'"):
        load_csv(path, label_columns=["solubility"], on_invalid="raise")


def test_load_csv_bad_inputs(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text(CSV_TEXT)
    with pytest.raises(ValueError, match=r"mols\.csv.*label column\(s\) \['pIC50'\] not found"):
        load_csv(path, label_columns=["pIC50"])
    with pytest.raises(ValueError, match=r"mols\.csv: no SMILES column 'SMILES'"):
        load_csv(path, smiles_column="SMILES")
    with pytest.raises(ValueError, match=r"mols\.csv line 2: label column 'name' holds 'ethanol'"):
        load_csv(path, label_columns=["name"])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv: file is empty"):
        load_csv(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("smiles,y\n")
    with pytest.raises(ValueError, match=r"header\.csv: has a header .* but no data rows"):
        load_csv(header_only)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_csv(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="on_invalid"):
        load_csv(path, on_invalid="ignore")


def test_load_csv_splits(tmp_path):
    smiles = [
        "CCO",
        "CCN",
        "CCC",
        "c1ccccc1C",
        "c1ccccc1O",
        "c1ccccc1N",
        "C1CCCCC1O",
        "C1CCCCC1N",
        "c1ccncc1",
        "C1CC1C",
    ]
    path = tmp_path / "set.csv"
    path.write_text("smiles,y\n" + "".join(f"{s},{i}\n" for i, s in enumerate(smiles)))
    random_data = load_csv(path, split="random", sizes=(0.6, 0.2, 0.2), seed=1)
    assert {name: len(split) for name, split in random_data.items()} == {"train": 6, "validation": 2, "test": 2}
    scaffold_data = load_csv(path, split="scaffold", sizes=(0.6, 0.2, 0.2))
    assert set(scaffold_data["train"]["smiles"]) >= {"c1ccccc1C", "c1ccccc1O", "c1ccccc1N"}  # largest scaffold
    assert sum(len(split) for split in scaffold_data.values()) == 10


def _write_sdf(path, molecules, corrupt_after=None):
    writer = Chem.SDWriter(str(path))
    for k, (smiles, properties) in enumerate(molecules):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=k)
        for key, value in properties.items():
            mol.SetProp(key, str(value))
        writer.write(mol)
    writer.close()
    if corrupt_after is not None:
        records = path.read_text().split("$$$$\n")
        broken = "broken\n  nothing\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\nthis is not an atom line\nM  END\n"
        records.insert(corrupt_after, broken)
        path.write_text("$$$$\n".join(records))


def _bond_distances(smiles, pos):
    mol = Chem.MolFromSmiles(smiles)
    return sorted(
        round(float(np.linalg.norm(np.subtract(pos[b.GetBeginAtomIdx()], pos[b.GetEndAtomIdx()]))), 4)
        for b in mol.GetBonds()
    )


def test_load_sdf_positions_labels_and_reported_skip(tmp_path, caplog):
    path = tmp_path / "mols.sdf"
    molecules = [
        ("OC(=O)c1ccccc1N", {"energy": -1.5, "tag": "a"}),
        ("CC(C)CO", {"energy": 2.0}),
        ("N#Cc1ccc(F)cc1", {"tag": "c"}),
    ]
    _write_sdf(path, molecules, corrupt_after=1)
    with caplog.at_level(logging.WARNING, logger="molformer_kd.data"):
        data, report = load_sdf(path, label_properties=["energy"], split=None, return_report=True)
    rows = data["train"]
    assert len(rows) == 3 and report.n_records == 4
    assert [issue.where for issue in report.skipped] == [f"{path} record 2"]
    assert "unparsable record" in report.skipped[0].reason
    assert f"{path} record 2" in caplog.text
    assert rows["mol_id"] == ["mols.sdf:1", "mols.sdf:3", "mols.sdf:4"]
    assert rows["energy"][:2] == [-1.5, 2.0] and math.isnan(rows["energy"][2])
    for (smiles, _), row in zip(molecules, rows):
        assert Chem.CanonSmiles(row["smiles"]) == Chem.CanonSmiles(smiles)
        mol = Chem.MolFromSmiles(row["smiles"])
        assert len(row["pos"]) == mol.GetNumAtoms()
        # pos follows the SMILES order: every SMILES bond is a bonded distance (< 1.6 A), never a 1-3 one.
        assert max(_bond_distances(row["smiles"], row["pos"])) < 1.6
    with pytest.raises(ValueError, match=r"mols\.sdf record 2: unparsable record"):
        load_sdf(path, label_properties=["energy"], on_invalid="raise")
    with pytest.raises(ValueError, match=r"mols\.sdf: SD property\(ies\) \['dipole'\] found in no record"):
        load_sdf(path, label_properties=["dipole"])
    empty = tmp_path / "empty.sdf"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.sdf: file is empty"):
        load_sdf(empty)


def _write_pcqm_root(root, with_split=True):
    """A PCQM4Mv2-layout folder: data.csv.gz, heavy-atom train SDF in a shuffled atom order, split_dict.pt."""
    smiles = ["CC(=O)Nc1ccccc1", "OCC1CC1", "C1=CC=CN1", "CCN(CC)CC", "c1ccc2ccccc2c1", "CCO"]
    gaps = ["5.1", "7.2", "6.0", "6.5", "", ""]  # the two test molecules have no label
    raw = root / "pcqm4m-v2" / "raw"
    raw.mkdir(parents=True)
    with gzip.open(raw / "data.csv.gz", "wt") as handle:
        handle.write(
            "idx,smiles,homolumogap\n" + "".join(f"{i},{s},{g}\n" for i, (s, g) in enumerate(zip(smiles, gaps)))
        )
    geometries = []
    writer = Chem.SDWriter(str(root / "pcqm4m-v2-train.sdf"))
    for k, s in enumerate(smiles[:4]):
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        AllChem.EmbedMolecule(mol, randomSeed=k)
        heavy = Chem.RemoveHs(mol)
        order = np.random.default_rng(k).permutation(heavy.GetNumAtoms()).tolist()
        shuffled = Chem.RenumberAtoms(heavy, order)
        writer.write(shuffled)
        geometries.append(heavy.GetConformer().GetPositions())
    writer.close()
    if with_split:
        torch.save(
            {
                "train": torch.tensor([0, 1, 2]),
                "valid": torch.tensor([3]),
                "test-dev": torch.tensor([4]),
                "test-challenge": torch.tensor([5]),
            },
            root / "pcqm4m-v2" / "split_dict.pt",
        )
    return smiles, geometries


def test_load_pcqm4mv2_layout(tmp_path):
    _, geometries = _write_pcqm_root(tmp_path)
    data, report = load_pcqm4mv2(tmp_path, return_report=True)
    assert {name: len(split) for name, split in data.items()} == {
        "train": 3,
        "validation": 1,
        "test": 1,
        "test_challenge": 1,
    }
    assert data["train"]["mol_id"] == ["pcqm4mv2_0000000", "pcqm4mv2_0000001", "pcqm4mv2_0000002"]
    assert data["train"]["gap"] == [5.1, 7.2, 6.0]
    assert math.isnan(data["test"]["gap"][0]) and data["test"]["pos"][0] is None
    assert report.counts["with_3d"] == 4 and not report.skipped and not report.flagged
    records = list(data["train"]) + list(data["validation"])
    for record, geometry in zip(records, geometries):
        # Positions in CSV-SMILES order equal the original (unshuffled) geometry, atom for atom, up to a symmetry
        # of the molecule (the two ring CH2 of OCC1CC1 are interchangeable).
        mol = Chem.MolFromSmiles(record["smiles"])
        symmetries = mol.GetSubstructMatches(mol, uniquify=False, useChirality=False)
        pos = np.asarray(record["pos"])
        assert any(np.allclose(pos, geometry[list(g)], atol=1e-3) for g in symmetries), record["smiles"]
    limited = load_pcqm4mv2(tmp_path, split="random", sizes=(2, 1, 0), limit=3)
    assert sum(len(split) for split in limited.values()) == 3 and "test" not in limited


def test_load_pcqm4mv2_needs_split_file_for_official_split(tmp_path):
    _write_pcqm_root(tmp_path, with_split=False)
    with pytest.raises(FileNotFoundError, match="split_dict.pt"):
        load_pcqm4mv2(tmp_path)
    assert len(load_pcqm4mv2(tmp_path, split=None)["train"]) == 6
    with pytest.raises(FileNotFoundError, match="data.csv.gz"):
        load_pcqm4mv2(tmp_path / "nowhere")


@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="needs the qm9 extra (qm9pack)")
def test_load_qm9_limit():
    data, report = load_qm9(limit=60, split="scaffold", return_report=True)
    rows = _all_rows(data)
    assert len(rows) + len(report.skipped) == 60
    methane = next(row for row in rows if row["mol_id"] == "qm9_000001")
    assert methane["smiles"] == "C" and len(methane["pos"]) == 1
    assert methane["gap"] == pytest.approx(0.5048 * HARTREE_TO_EV)  # QM9 molecule 1: gap 0.5048 Ha
    assert methane["u0"] == pytest.approx(-40.47893 * HARTREE_TO_EV)
    random_data = load_qm9(limit=60, split="random", seed=3)
    assert {name: len(split) for name, split in random_data.items()} == {"train": 48, "validation": 6, "test": 6}


def test_load_sdf_flags_records_without_3d(tmp_path):
    mol = Chem.MolFromSmiles("c1ccccc1O")
    AllChem.Compute2DCoords(mol)
    mol.SetProp("y", "0.5")
    path = tmp_path / "flat.sdf"
    with Chem.SDWriter(str(path)) as writer:
        writer.write(mol)
    data, report = load_sdf(path, split=None, return_report=True)
    assert data["train"]["pos"] == [None] and data["train"]["y"] == [0.5]
    assert [str(issue) for issue in report.flagged] == [f"{path} record 1: no 3D coordinates; pos is None"]
