"""ETKDGv3 + MMFF94 conformers through Dataset.map: positions, failures with reasons, drop/keep, caching."""

import logging

import numpy as np
import pytest
from datasets import Dataset, load_from_disk
from rdkit import Chem

from molformer_kd.data import embed_conformer, generate_conformers, record_features

# A bicyclo[1.1.0]butane whose bridgehead chirality tags no 3D geometry satisfies: ETKDG rejects every embedding
# (from the default and from random starting coordinates), and quickly.
IMPOSSIBLE = "[C@@]12(F)C[C@@]1(Cl)C2"
KNOWN_POS = [[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]]


@pytest.fixture()
def on_disk(tmp_path):
    rows = {
        "smiles": ["CCO", "c1ccc(F)cc1", IMPOSSIBLE, "CC", "[2H]OC(=O)C"],
        "pos": [None, None, None, KNOWN_POS, None],
        "y": [1.0, 2.0, 3.0, 4.0, 5.0],
        "mol_id": ["m0", "m1", "m2", "m3", "m4"],
    }
    Dataset.from_dict(rows, features=record_features(["y"])).save_to_disk(str(tmp_path / "records"))
    return load_from_disk(str(tmp_path / "records"))  # file-backed, as every loader returns


def test_embed_conformer_geometry():
    pos, method, error, h_pos = embed_conformer("OC(=O)c1ccccc1")
    assert error is None and method == "ETKDGv3+MMFF94"
    mol = Chem.MolFromSmiles("OC(=O)c1ccccc1")
    assert np.asarray(pos).shape == (mol.GetNumAtoms(), 3)
    for bond in mol.GetBonds():
        length = np.linalg.norm(np.subtract(pos[bond.GetBeginAtomIdx()], pos[bond.GetEndAtomIdx()]))
        assert 1.15 < length < 1.6
    # The 6 hydrogens: each about 1 Angstrom (C-H 1.09, O-H 0.97) from its nearest heavy atom.
    assert np.asarray(h_pos).shape == (6, 3)
    nearest = np.linalg.norm(np.asarray(h_pos)[:, None] - np.asarray(pos)[None], axis=-1).min(axis=1)
    assert np.all((nearest > 0.9) & (nearest < 1.15))
    assert embed_conformer("OC(=O)c1ccccc1", seed=0)[0] == pos  # seeded
    assert embed_conformer(IMPOSSIBLE)[2].startswith("ETKDGv3 embedding failed")
    assert "invalid SMILES" in embed_conformer("C1CC")[2]
    # Explicit [2H] is folded into its neighbour: not a token, so no position for it.
    assert len(embed_conformer("[2H]OC")[0]) == 2
    assert len(embed_conformer("[2H]OC").h_pos) == 4


def test_generate_conformers_drop(on_disk, caplog):
    with caplog.at_level(logging.WARNING, logger="molformer_kd.data"):
        result, report = generate_conformers(on_disk, on_failure="drop", return_report=True)
    assert result["mol_id"] == ["m0", "m1", "m3", "m4"]
    assert [issue.where for issue in report.skipped] == ["m2"]
    assert "ETKDGv3 embedding failed" in report.skipped[0].reason
    assert "m2: ETKDGv3 embedding failed" in caplog.text
    assert report.counts == {"ETKDGv3+MMFF94": 3, "input": 1}
    assert result["conformer_method"] == ["ETKDGv3+MMFF94", "ETKDGv3+MMFF94", "input", "ETKDGv3+MMFF94"]
    assert result["conformer_error"] == [None] * 4
    assert np.allclose(result["pos"][2], KNOWN_POS)  # existing coordinates are kept
    assert [len(pos) for pos in result["pos"]] == [3, 7, 2, 4]
    # Generated rows carry their hydrogens (CCO 6, fluorobenzene 5, the deuterated acetic acid 3 + its folded [2H]);
    # the row that kept its input coordinates has none to give.
    assert [None if h is None else len(h) for h in result["h_pos"]] == [6, 5, None, 4]


def test_generate_conformers_keep_parallel_and_cached(on_disk):
    kept, report = generate_conformers(on_disk, on_failure="keep", num_proc=2, return_report=True)
    assert len(kept) == 5 and kept["pos"][2] is None
    assert kept["conformer_error"][2].startswith("ETKDGv3 embedding failed")
    assert [issue.where for issue in report.flagged] == ["m2"] and not report.skipped
    again = generate_conformers(on_disk, on_failure="keep", num_proc=2)
    assert again.cache_files == kept.cache_files  # the datasets fingerprint cache served the second call
    serial = generate_conformers(on_disk, on_failure="keep")
    assert serial["pos"][0] == kept["pos"][0]  # same seed, same conformer, whichever process made it
    overwritten = generate_conformers(on_disk, on_failure="keep", overwrite=True)
    assert overwritten["conformer_method"][3] == "ETKDGv3+MMFF94"
    assert not np.allclose(overwritten["pos"][3], KNOWN_POS)
    with pytest.raises(ValueError, match="on_failure"):
        generate_conformers(on_disk, on_failure="ignore")
