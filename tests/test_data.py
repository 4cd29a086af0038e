"""The shipped QM9 subset, the XYZ -> SMILES graph matching, splits and metrics."""

import gzip
import math

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from molformer_kd.data import (
    HARTREE_TO_EV,
    AtomMappingError,
    embedded_qm9_metadata,
    load_embedded_qm9,
    mae,
    map_positions_to_smiles,
    match_atoms_to_smiles,
    murcko_scaffold,
    per_label_metrics,
    random_split,
    rmse,
    scaffold_split,
    smiles_and_positions_from_mol,
    token_atom_indices,
)
from molformer_kd.data.qm9 import EMBEDDED_QM9_PATH, qm9_record, read_embedded_qm9, write_embedded_qm9

# Bond lengths (Angstrom) of organic molecules per (sorted element pair, RDKit bond order): wide enough for strained
# rings and conjugation, narrow enough to tell the bond orders apart and to catch a wrongly mapped atom (whose
# distance to a SMILES neighbour would be a 1-3 distance, >= 2.1 A, or a bond of the wrong order).
BOND_RANGES = {
    ("C", "C", 1.0): (1.33, 1.70),  # from conjugated (between triple bonds) to strained cages
    ("C", "C", 1.5): (1.30, 1.55),  # aromatic, incl. five-membered heteroaromatic rings
    ("C", "C", 2.0): (1.30, 1.40),
    ("C", "C", 3.0): (1.17, 1.24),
    ("C", "N", 1.0): (1.30, 1.65),
    ("C", "N", 1.5): (1.24, 1.45),
    ("C", "N", 2.0): (1.22, 1.40),
    ("C", "N", 3.0): (1.13, 1.18),
    ("C", "O", 1.0): (1.22, 1.55),  # short end: carboxylate-like resonance in zwitterions
    ("C", "O", 1.5): (1.28, 1.50),
    ("C", "O", 2.0): (1.16, 1.26),
}


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("MOLFORMER_KD_CACHE", str(tmp_path_factory.getbasetemp() / "molformer_kd_cache"))


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    return load_embedded_qm9(cache_dir=tmp_path_factory.mktemp("embedded_cache"))


def _distance(pos, i, j):
    return float(np.linalg.norm(np.asarray(pos[i]) - np.asarray(pos[j])))


def test_embedded_counts_columns_and_splits(embedded):
    metadata = embedded_qm9_metadata()
    assert set(embedded) == {"train", "validation", "test"}
    for split in embedded.values():
        assert split.column_names == ["smiles", "pos", "gap", "homo", "lumo", "u0", "mu", "mol_id", "h_pos"]
    sizes = {name: len(split) for name, split in embedded.items()}
    assert sizes == metadata["splits"]
    assert sum(sizes.values()) == metadata["n_molecules"] == metadata["n_candidates"] - metadata["n_skipped"]
    assert metadata["n_candidates"] == 3000
    assert sizes["train"] == pytest.approx(0.8 * sum(sizes.values()), abs=2)
    assert sizes["validation"] == pytest.approx(0.1 * sum(sizes.values()), abs=2)


def test_embedded_splits_are_disjoint(embedded):
    for column in ("mol_id", "smiles"):
        seen = {name: set(split[column]) for name, split in embedded.items()}
        assert sum(len(values) for values in seen.values()) == sum(len(split) for split in embedded.values())
        assert not seen["train"] & seen["validation"]
        assert not seen["train"] & seen["test"]
        assert not seen["validation"] & seen["test"]


def test_embedded_labels_are_in_ev(embedded):
    gap = np.concatenate([np.asarray(split["gap"]) for split in embedded.values()])
    homo = np.concatenate([np.asarray(split["homo"]) for split in embedded.values()])
    lumo = np.concatenate([np.asarray(split["lumo"]) for split in embedded.values()])
    u0 = np.concatenate([np.asarray(split["u0"]) for split in embedded.values()])
    assert abs(gap.mean() - 6.86) < 0.15  # QM9's mean HOMO-LUMO gap is 6.86 eV (0.252 Ha)
    assert np.all(homo < lumo)
    # QM9 stores gap, HOMO and LUMO each rounded to 1e-4 Ha, so gap = LUMO - HOMO within 2e-4 Ha.
    np.testing.assert_allclose(gap, lumo - homo, atol=2e-4 * HARTREE_TO_EV)
    assert np.all((u0 / HARTREE_TO_EV > -720) & (u0 / HARTREE_TO_EV < -40))  # QM9 U0 range in Hartree
    assert not np.isnan(gap).any()


def test_embedded_coordinates_follow_smiles_atom_order(embedded):
    checked = 0
    for record in embedded["train"].select(range(300)):
        mol = Chem.MolFromSmiles(record["smiles"])
        pos = record["pos"]
        assert len(pos) == len(token_atom_indices(mol)) == mol.GetNumAtoms()
        for bond in mol.GetBonds():
            begin, end = bond.GetBeginAtom(), bond.GetEndAtom()
            pair = tuple(sorted((begin.GetSymbol(), end.GetSymbol())))
            key = (*pair, bond.GetBondTypeAsDouble())
            if key in BOND_RANGES:
                low, high = BOND_RANGES[key]
                distance = _distance(pos, begin.GetIdx(), end.GetIdx())
                assert low <= distance <= high, (record["mol_id"], record["smiles"], key, distance)
                checked += 1
        for i in range(len(pos)):  # non-bonded heavy atoms are never at bonding distance of a wrong atom
            for j in range(i + 1, len(pos)):
                if mol.GetBondBetweenAtoms(i, j) is None:
                    assert _distance(pos, i, j) > 1.75, (record["smiles"], i, j)
    assert checked > 1000


def _shuffled_xyz(smiles, seed):
    """A hand-made XYZ record: ETKDG geometry with hydrogens, atoms in a random order."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    AllChem.MMFFOptimizeMolecule(mol)
    coords = mol.GetConformer().GetPositions()
    elements = [atom.GetSymbol() for atom in mol.GetAtoms()]
    permutation = np.random.default_rng(seed).permutation(len(elements))
    return [elements[k] for k in permutation], coords[permutation], permutation, coords


def _qm9pack_row(index, smiles, elements, coords):
    """A qm9pack CSV row (list columns as Python literals, energies in Hartree) holding this geometry."""
    return {
        "Index": index,
        "SMILES": smiles,
        "Elements": repr(elements),
        "XYZ_Ang": repr(coords.tolist()),
        "HOMO_au": -0.3,
        "LUMO_au": 0.1,
        "HOMO_LUMO_gap_au": 0.4,
        "InternalEnergy_0K_au": -155.0,
        "Dipole_debye": 1.3,
    }


def test_graph_matching_recovers_shuffled_atoms():
    smiles = "Nc1ccc(O)cc1C(=O)OC"  # no symmetry once element and H count label the atoms
    elements, coords, permutation, original = _shuffled_xyz(smiles, seed=3)
    order = match_atoms_to_smiles(smiles, elements, coords)
    # Atom j of the SMILES is original atom j, now at row inverse_permutation[j] of the shuffled record.
    inverse = np.argsort(permutation)
    assert order == inverse[: Chem.MolFromSmiles(smiles).GetNumAtoms()].tolist()
    np.testing.assert_allclose(map_positions_to_smiles(smiles, elements, coords), original[: len(order)])


def test_qm9_record_keeps_the_hydrogens_positions():
    """A qm9pack row in shuffled XYZ order: `pos` are the token atoms in SMILES order, `h_pos` the other atoms (the
    hydrogens) in XYZ order, nothing lost and nothing doubled."""
    smiles = "Nc1ccc(O)cc1C(=O)OC"
    elements, coords, _, original = _shuffled_xyz(smiles, seed=3)
    record = qm9_record(_qm9pack_row(5, smiles, elements, coords))
    heavy = Chem.MolFromSmiles(smiles).GetNumAtoms()
    np.testing.assert_allclose(record["pos"], original[:heavy], atol=1e-5)
    hydrogens = [k for k, element in enumerate(elements) if element == "H"]
    np.testing.assert_allclose(record["h_pos"], coords[hydrogens], atol=1e-5)
    assert len(record["pos"]) + len(record["h_pos"]) == len(elements)


def test_graph_matching_puts_double_bonds_on_short_bonds():
    # Cyclooctatetraene: every atom is CH, so topology alone cannot tell C=C from C-C; the geometry can.
    smiles = "C1=CC=CC=CC=C1"
    elements, coords, _, _ = _shuffled_xyz(smiles, seed=0)
    pos = map_positions_to_smiles(smiles, elements, coords)
    mol = Chem.MolFromSmiles(smiles)
    lengths = {1.0: [], 2.0: []}
    for bond in mol.GetBonds():
        lengths[bond.GetBondTypeAsDouble()].append(_distance(pos, bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))
    assert max(lengths[2.0]) < min(lengths[1.0]) - 0.08


def test_graph_matching_rejects_other_constitution():
    elements, coords, _, _ = _shuffled_xyz("COC", seed=1)  # dimethyl ether geometry, ethanol SMILES
    with pytest.raises(AtomMappingError, match="'CCO'"):
        match_atoms_to_smiles("CCO", elements, coords)
    with pytest.raises(ValueError, match="'CCO'"):  # what the build script counts as a skip
        qm9_record(_qm9pack_row(7, "CCO", elements, coords))


def test_graph_matching_keeps_hydrogen_only_molecules():
    pos = map_positions_to_smiles("[H][H]", ["H", "H"], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.74]])
    assert pos.shape == (2, 3)


def test_sdf_style_positions_follow_canonical_smiles():
    mol = Chem.AddHs(Chem.MolFromSmiles("OC(=O)c1ccccc1N"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    smiles, pos = smiles_and_positions_from_mol(mol)
    canonical = Chem.MolFromSmiles(smiles)
    source = Chem.RemoveHs(mol)
    # Same multiset of bonded distances, and each SMILES bond matches a source bond between the same elements.
    source_xyz = source.GetConformer().GetPositions()
    source_bonds = sorted(
        (
            round(float(np.linalg.norm(source_xyz[b.GetBeginAtomIdx()] - source_xyz[b.GetEndAtomIdx()])), 6),
            "".join(sorted(b.GetBeginAtom().GetSymbol() + b.GetEndAtom().GetSymbol())),
        )
        for b in source.GetBonds()
    )
    smiles_bonds = sorted(
        (
            round(_distance(pos, b.GetBeginAtomIdx(), b.GetEndAtomIdx()), 6),
            "".join(sorted(b.GetBeginAtom().GetSymbol() + b.GetEndAtom().GetSymbol())),
        )
        for b in canonical.GetBonds()
    )
    assert smiles_bonds == source_bonds


def test_embedded_file_is_deterministic(tmp_path):
    metadata, records = read_embedded_qm9(EMBEDDED_QM9_PATH)
    first, second = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    write_embedded_qm9(first, metadata, records[:50])
    write_embedded_qm9(second, metadata, records[:50])
    assert first.read_bytes() == second.read_bytes()
    assert read_embedded_qm9(first) == (metadata, records[:50])
    with gzip.open(EMBEDDED_QM9_PATH, "rt") as handle:
        assert '"metadata"' in handle.readline()


def test_random_split_is_seeded_and_disjoint():
    splits = random_split(103, (0.8, 0.1, 0.1), seed=5)
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [83, 10, 10]
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(103))
    again = random_split(103, (0.8, 0.1, 0.1), seed=5)
    other = random_split(103, (0.8, 0.1, 0.1), seed=6)
    assert all(np.array_equal(splits[name], again[name]) for name in splits)
    assert not np.array_equal(splits["test"], other["test"])
    with pytest.raises(ValueError, match="sum to 1"):
        random_split(10, (0.5, 0.1, 0.1))


def test_scaffold_split_keeps_each_scaffold_in_one_split(embedded):
    smiles = embedded["train"]["smiles"][:800]
    splits = scaffold_split(smiles, (0.8, 0.1, 0.1))
    scaffolds = {name: {murcko_scaffold(smiles[i]) for i in rows} for name, rows in splits.items()}
    assert not scaffolds["train"] & scaffolds["validation"]
    assert not scaffolds["train"] & scaffolds["test"]
    assert not scaffolds["validation"] & scaffolds["test"]
    assert sum(len(rows) for rows in splits.values()) == len(smiles)
    groups = {}
    for molecule in smiles:
        scaffold = murcko_scaffold(molecule)
        groups[scaffold] = groups.get(scaffold, 0) + 1
    largest = max(groups, key=groups.get)
    assert largest in scaffolds["train"]
    assert all(np.array_equal(splits[name], scaffold_split(smiles)[name]) for name in splits)  # deterministic


def test_murcko_scaffold():
    assert murcko_scaffold("CCc1ccccc1CC(=O)O") == "c1ccccc1"
    assert murcko_scaffold("CCO") == ""


def test_metrics_mask_missing_targets():
    predictions = np.array([[1.0, 2.0], [3.0, 5.0], [0.0, 1.0]])
    targets = np.array([[2.0, np.nan], [1.0, 1.0], [0.0, 4.0]])
    assert mae(predictions[:, 0], targets[:, 0]) == pytest.approx((1 + 2 + 0) / 3)
    assert rmse(predictions[:, 1], targets[:, 1]) == pytest.approx(math.sqrt((16 + 9) / 2))
    metrics = per_label_metrics(predictions, targets, ["gap", "mu"])
    assert metrics["mu_mae"] == pytest.approx(3.5)
    assert metrics["mu_count"] == 2 and metrics["gap_count"] == 3
    assert metrics["gap_rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert math.isnan(mae([1.0], [float("nan")]))
    with pytest.raises(ValueError, match="shape"):
        mae([1.0, 2.0], [1.0])


ATOM_RULE_CASES = [
    "CCO",
    "[H]C([H])([H])O",
    "[2H]C([2H])([2H])C",
    "[H][H]",
    "[H][H].C",
    "[H+].[Cl-]",
    "[H]/C=C/[H]",
    "F/C=C/[H]",
    "[CH4]",
    "[H]OC(=O)[H]",
    "[3H]c1ccccc1",
    "C[C@@]([H])(F)Cl",
    "[H]*",
]


@pytest.mark.parametrize("smiles", ATOM_RULE_CASES)
def test_atom_rule_is_one_rule_across_loaders_featurizer_and_parser(smiles):
    from molformer_kd.data.molecules import apply_atom_rule
    from molformer_kd.tokenization import parse_smiles

    mol = Chem.MolFromSmiles(smiles)  # as every loader parses (RDKit's default H removal already applied)
    tokens = token_atom_indices(mol)
    folded = apply_atom_rule(mol)
    parsed = parse_smiles(smiles)
    expected_elements = [mol.GetAtomWithIdx(i).GetAtomicNum() for i in tokens]
    assert [atom.GetAtomicNum() for atom in folded.GetAtoms()] == expected_elements
    assert [Chem.GetPeriodicTable().GetAtomicNumber(atom.element) for atom in parsed.atoms] == expected_elements
