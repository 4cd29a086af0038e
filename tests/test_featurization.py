"""Graph featurizer: OGB features, spatial/multi-hop encodings, atom rule, save/load (checked against RDKit)."""

import collections
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem
from transformers import AutoFeatureExtractor, PretrainedConfig

from molformer_kd.tokenization import featurization, parse_smiles
from molformer_kd.tokenization.featurization import (
    ATOM_FEATURE_DIMS,
    BOND_FEATURE_DIMS,
    GRAPH_ENCODING_KEYS,
    MoleculeFeaturizer,
    pad_graph_features,
    register_featurizer,
    smiles_to_mol,
)
from molformer_kd.tokenization.shortest_paths import shortest_path_bond_ids

# QM9-like and drug-like molecules with rings, charges, stereo, aromatic heteroatoms and fragments.
SMILES = [
    "C",
    "O",
    "N#N",
    "CCO",
    "c1ccccc1",
    "CC(=O)[O-].[Na+]",
    "C[N+](C)(C)C",
    "[NH4+]",
    "OC1CC1",
    "C1=CC=CC=C1O",
    "N#CC1(O)CC1",
    "CC1=NOC=C1",
    "O=C1NC=CC1=O",
    "C1CC2CC1C2",
    "CC12CC1(C)C2",
    "C[C@H](N)C(=O)O",
    "F/C=C/Cl",
    "C/C=C\\C",
    "c1ccc2[nH]ccc2c1",
    "O=S(=O)(O)c1ccccc1",
    "[O-][n+]1ccccc1",
    "C#CC#CC#N",
    "CC(C)(C)c1ccc(O)cc1",
    "OCC1OC(O)C(O)C(O)C1O",
    "c1ccc(-c2ccccc2)cc1",
    "C1CCC2(CC1)CCCC2",
    "CC.OO",
    "[Cl-].[Cl-].[Ca+2]",
    "FC(F)(F)C(F)(F)F",
    "[CH3]",
    "B(O)O",
    "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
    "C1=CC2=CC=CC=CC2=C1",
    "P(Cl)(Cl)(Cl)(Cl)Cl",
    "F[P-](F)(F)(F)(F)F",
    "*CC",
    "[13CH4]",
    "[2H]OC",
]

OGB_LISTS = {  # ogb.utils.features.allowable_features, written out independently of the module under test
    "atomic_num": list(range(1, 119)) + ["misc"],
    "chirality": ["CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW", "CHI_OTHER", "misc"],
    "degree": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, "misc"],
    "formal_charge": [-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, "misc"],
    "num_hs": [0, 1, 2, 3, 4, 5, 6, 7, 8, "misc"],
    "radical": [0, 1, 2, 3, 4, "misc"],
    "hybridization": ["SP", "SP2", "SP3", "SP3D", "SP3D2", "misc"],
    "bond_type": ["SINGLE", "DOUBLE", "TRIPLE", "AROMATIC", "misc"],
    "bond_stereo": ["STEREONONE", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS", "STEREOANY"],
}


def safe_index(values, value):
    return values.index(value) if value in values else len(values) - 1


def ogb_atom(atom):
    return [
        safe_index(OGB_LISTS["atomic_num"], atom.GetAtomicNum()),
        safe_index(OGB_LISTS["chirality"], str(atom.GetChiralTag())),
        safe_index(OGB_LISTS["degree"], atom.GetTotalDegree()),
        safe_index(OGB_LISTS["formal_charge"], atom.GetFormalCharge()),
        safe_index(OGB_LISTS["num_hs"], atom.GetTotalNumHs()),
        safe_index(OGB_LISTS["radical"], atom.GetNumRadicalElectrons()),
        safe_index(OGB_LISTS["hybridization"], str(atom.GetHybridization())),
        int(atom.GetIsAromatic()),
        int(atom.IsInRing()),
    ]


def ogb_bond(bond):
    return [
        safe_index(OGB_LISTS["bond_type"], str(bond.GetBondType())),
        safe_index(OGB_LISTS["bond_stereo"], str(bond.GetStereo())),
        int(bond.GetIsConjugated()),
    ]


def bfs_distances(mol):
    n = mol.GetNumAtoms()
    neighbours = [[nb.GetIdx() for nb in mol.GetAtomWithIdx(i).GetNeighbors()] for i in range(n)]
    dist = np.full((n, n), -1)
    for source in range(n):
        dist[source, source] = 0
        queue = collections.deque([source])
        while queue:
            u = queue.popleft()
            for v in neighbours[u]:
                if dist[source, v] < 0:
                    dist[source, v] = dist[source, u] + 1
                    queue.append(v)
    return dist


PARITY_SAMPLE = (
    Path(__file__).resolve().parent.parent / "molformer_kd" / "tokenization" / "resources" / "parity_sample.smi"
)


def real_smiles(limit):
    """The first `limit` RDKit-valid SMILES of the shipped parity sample (real MOSES, QM9 and RDKit-data SMILES)."""
    valid = []
    with rdBase.BlockLogs():
        for line in PARITY_SAMPLE.read_text().splitlines():
            smiles = line.split()[0] if line.strip() else ""
            if smiles and Chem.MolFromSmiles(smiles) is not None:
                valid.append(smiles)
            if len(valid) == limit:
                return valid
    raise AssertionError(f"{PARITY_SAMPLE} holds fewer than {limit} valid SMILES")


@pytest.fixture(scope="module")
def featurizer():
    return MoleculeFeaturizer(multi_hop_max_dist=5, max_spatial=20)


def test_vocabulary_sizes():
    assert ATOM_FEATURE_DIMS == [119, 5, 12, 12, 10, 6, 6, 2, 2]
    assert BOND_FEATURE_DIMS == [5, 6, 2]


def test_ethanol_by_hand(featurizer):
    f = featurizer.featurize("CCO")
    # C: atomic_num 6 -> 5, degree 4, charge 0 -> 5, 3 H, SP3 -> 2 ; O: 8 -> 7, degree 2, 1 H.
    expected = np.array([[5, 0, 4, 5, 3, 0, 2, 0, 0], [5, 0, 4, 5, 2, 0, 2, 0, 0], [7, 0, 2, 5, 1, 0, 2, 0, 0]])
    np.testing.assert_array_equal(f["input_nodes"], expected + 1)
    np.testing.assert_array_equal(f["edge_index"], [[0, 1, 1, 2], [1, 0, 2, 1]])
    np.testing.assert_array_equal(f["edge_attr"], np.ones((4, 3)))  # single, no stereo, not conjugated: 0 + 1
    np.testing.assert_array_equal(f["degree"], [2, 3, 2])
    np.testing.assert_array_equal(f["spatial_pos"], [[1, 2, 3], [2, 1, 2], [3, 2, 1]])
    np.testing.assert_array_equal(f["edge_input"][0, 2, :2], [[1, 1, 1], [1, 1, 1]])
    assert not f["edge_input"][0, 2, 2:].any() and not f["edge_input"][1, 1].any()
    np.testing.assert_array_equal(f["attn_edge_type"][0, 2], [0, 0, 0])


def test_benzene_and_charged_bracket_atoms_by_hand(featurizer):
    benzene = featurizer.featurize("c1ccccc1")
    # aromatic C: degree 3, 1 H, SP2 -> 1, aromatic, in ring; aromatic bond -> 3, conjugated.
    np.testing.assert_array_equal(benzene["input_nodes"], np.tile([5, 0, 3, 5, 1, 0, 1, 1, 1], (6, 1)) + 1)
    np.testing.assert_array_equal(benzene["edge_attr"], np.tile([3, 0, 1], (12, 1)) + 1)
    ammonium = featurizer.featurize("[NH4+]")
    np.testing.assert_array_equal(ammonium["input_nodes"], [[6, 0, 4, 6, 4, 0, 2, 0, 0]] + np.ones((1, 9), int))
    phosphate = featurizer.featurize("F[P-](F)(F)(F)(F)F")  # degree 6, charge -1 -> 4, SP3D2 -> 4
    np.testing.assert_array_equal(phosphate["input_nodes"][1], np.array([14, 0, 6, 4, 0, 0, 4, 0, 0]) + 1)
    dummy = featurizer.featurize("*C")  # atomic number 0 is outside OGB's list: misc (118)
    assert dummy["input_nodes"][0, 0] == 118 + 1


@pytest.mark.parametrize("smiles", SMILES)
def test_features_match_independent_ogb_featurization(featurizer, smiles):
    mol = smiles_to_mol(smiles)  # the atom rule is tested on its own below
    f = featurizer.featurize(smiles)
    np.testing.assert_array_equal(f["input_nodes"], np.array([ogb_atom(a) for a in mol.GetAtoms()]) + 1)
    for b, bond in enumerate(mol.GetBonds()):
        u, v = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        features = np.array(ogb_bond(bond)) + 1
        np.testing.assert_array_equal(f["edge_index"][:, 2 * b : 2 * b + 2], [[u, v], [v, u]])
        np.testing.assert_array_equal(f["edge_attr"][2 * b], features)
        np.testing.assert_array_equal(f["attn_edge_type"][u, v], features)
        np.testing.assert_array_equal(f["attn_edge_type"][v, u], features)
    assert (f["attn_edge_type"].any(-1)).sum() == 2 * mol.GetNumBonds()
    np.testing.assert_array_equal(f["degree"], [a.GetDegree() + 1 for a in mol.GetAtoms()])
    assert (f["input_nodes"] >= 1).all() and (f["input_nodes"] <= np.array(ATOM_FEATURE_DIMS)).all()


def test_spatial_pos_matches_rdkit_and_bfs(featurizer):
    corpus = SMILES + real_smiles(200)
    small_cap = MoleculeFeaturizer(max_spatial=3)
    for smiles in corpus:
        mol = smiles_to_mol(smiles)
        rdkit_dist = Chem.GetDistanceMatrix(mol)
        bfs = bfs_distances(mol)
        reachable = bfs >= 0
        np.testing.assert_array_equal(rdkit_dist[reachable], bfs[reachable])
        for feat, cap in ((featurizer, 20), (small_cap, 3)):
            expected = np.where(reachable, np.minimum(bfs, cap) + 1, cap + 2)
            np.testing.assert_array_equal(feat.featurize(smiles)["spatial_pos"], expected, err_msg=smiles)


def test_multi_hop_paths_are_shortest_bond_paths():
    rng = np.random.default_rng(0)
    corpus = SMILES + real_smiles(150)
    for max_hops in (1, 3, 5):
        featurizer = MoleculeFeaturizer(multi_hop_max_dist=max_hops)
        for smiles in corpus:
            mol = smiles_to_mol(smiles)
            f = featurizer.featurize(mol)
            n = mol.GetNumAtoms()
            bfs = bfs_distances(mol)
            distance = np.where(bfs >= 0, bfs, 10**8)
            ids = shortest_path_bond_ids(distance, f["edge_index"], _bond_ids(mol), max_hops)
            bond_rows = np.vstack([np.zeros((1, 3), int), f["edge_attr"][0::2]])
            np.testing.assert_array_equal(f["edge_input"], bond_rows[ids])
            for i, j in rng.integers(0, n, size=(min(20, n * n), 2)):
                hops = ids[i, j]
                if bfs[i, j] <= 0:
                    assert not hops.any()
                    continue
                expected = min(bfs[i, j], max_hops)
                assert (hops > 0).sum() == expected and (hops[:expected] > 0).all()
                # The bonds chain from i towards j, each one bond closer (a prefix of a shortest path).
                atom = i
                for step, bond_id in enumerate(hops[:expected]):
                    bond = mol.GetBondWithIdx(int(bond_id) - 1)
                    assert atom in (bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())
                    atom = bond.GetOtherAtomIdx(int(atom))
                    assert bfs[atom, j] == bfs[i, j] - step - 1
                assert len(Chem.GetShortestPath(mol, int(i), int(j))) - 1 == bfs[i, j]


def _bond_ids(mol):
    n = mol.GetNumAtoms()
    ids = np.zeros((n, n), dtype=np.int64)
    for bond in mol.GetBonds():
        u, v = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        ids[u, v] = ids[v, u] = bond.GetIdx() + 1
    return ids


def test_edge_input_on_unique_paths_equals_rdkit_shortest_path(featurizer):
    # Acyclic molecules have exactly one path between two atoms: compare with RDKit's path bond by bond.
    for smiles in ["CC(=O)C#CC=CC(C)(C)N", "F/C=C/C(=O)OCC", "CC(C)CC(N)C(=O)O", "C=CC=CC=CC#N"]:
        mol = Chem.MolFromSmiles(smiles)
        f = featurizer.featurize(smiles)
        n = mol.GetNumAtoms()
        for i in range(n):
            for j in range(n):
                path = Chem.GetShortestPath(mol, i, j) if i != j else (i,)
                bonds = [mol.GetBondBetweenAtoms(a, b) for a, b in itertools.pairwise(path)]
                expected = np.zeros((5, 3), dtype=np.int64)
                for k, bond in enumerate(bonds[:5]):
                    expected[k] = np.array(ogb_bond(bond)) + 1
                np.testing.assert_array_equal(f["edge_input"][i, j], expected, err_msg=f"{smiles} {i}->{j}")


def test_fragments_and_single_atoms():
    featurizer = MoleculeFeaturizer(max_spatial=20)
    salt = featurizer.featurize("CC(=O)[O-].[Na+]")
    assert (salt["spatial_pos"][4, :4] == 22).all() and (salt["spatial_pos"][:4, 4] == 22).all()
    assert not salt["edge_input"][4].any() and not salt["edge_input"][:, 4].any()
    assert salt["degree"][4] == 1
    single = featurizer.featurize("[Cl-]")
    assert single["input_nodes"].shape == (1, 9)
    assert single["edge_index"].shape == (2, 0) and single["edge_attr"].shape == (0, 3)
    np.testing.assert_array_equal(single["spatial_pos"], [[1]])
    assert single["edge_input"].shape == (1, 1, 5, 3) and not single["edge_input"].any()


@pytest.mark.parametrize(
    "smiles, expected_atoms, expected_hs",
    [
        ("[H]C([H])([H])O[H]", [6, 8], [3, 1]),  # plain explicit H folded (RDKit does it too)
        ("[2H]OC([2H])([2H])[2H]", [8, 6], [1, 3]),  # isotopes folded although RDKit keeps them by default
        ("[H][C@@](F)(Cl)Br", [6, 9, 17, 35], [1, 0, 0, 0]),
        ("C[H:3]", [6], [4]),  # atom-mapped H folded
        ("[H][H]", [1, 1], [0, 0]),  # the all-hydrogen molecule keeps its atoms
        ("[H+]", [1], [0]),
        ("[H+].[Cl-]", [1, 17], [0, 0]),  # an unbonded proton is not folded anywhere
        ("[CH4]", [6], [4]),
    ],
)
def test_explicit_hydrogen_rule(featurizer, smiles, expected_atoms, expected_hs):
    f = featurizer.featurize(smiles)
    np.testing.assert_array_equal(f["input_nodes"][:, 0] - 1, np.array(expected_atoms) - 1)
    np.testing.assert_array_equal(f["input_nodes"][:, 4] - 1, expected_hs)


def test_atom_rule_agrees_with_smiles_parser(featurizer):
    corpus = (
        SMILES
        + real_smiles(100)
        + [
            "[H]C([H])([H])O[H]",
            "[2H]OC([2H])([2H])[2H]",
            "[H][C@@](F)(Cl)Br",
            "C[H:3]",
            "[H][H]",
            "[H+].[Cl-]",
            "[H]/C(F)=C/F",
            "[H][H].C",
        ]
    )
    for smiles in corpus:
        parsed = parse_smiles(smiles)
        atoms = featurizer.featurize(smiles)["input_nodes"][:, 0] - 1
        symbols = [Chem.GetPeriodicTable().GetElementSymbol(int(z) + 1) if z < 118 else "*" for z in atoms]
        assert len(parsed.atom_symbols) == len(atoms), smiles
        for written, symbol in zip(parsed.atom_symbols, symbols):
            assert symbol.lower() in written.lower(), (smiles, parsed.atom_symbols, symbols)


def test_invalid_inputs_name_the_smiles(featurizer):
    with pytest.raises(ValueError, match="C1CC"):
        featurizer.featurize("C1CC")
    with pytest.raises(ValueError, match="position 0: empty input"):
        featurizer.featurize("")
    with pytest.raises(ValueError, match=r"CCO.*shape \(2, 3\)"):
        featurizer.featurize("CCO", pos=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="use_3d"):
        MoleculeFeaturizer(use_3d=True).featurize("CCO")
    with pytest.raises(ValueError, match="mol_id 'row_7'"):
        MoleculeFeaturizer(use_3d=True)([{"smiles": "CCO", "pos": None, "mol_id": "row_7"}])
    with pytest.raises(ValueError, match="feature_scheme"):
        MoleculeFeaturizer(feature_scheme="dgl")


def test_positions_from_records_and_conformers():
    featurizer = MoleculeFeaturizer(use_3d=True)
    mol = Chem.AddHs(Chem.MolFromSmiles("OCC#N"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    expected = mol.GetConformer().GetPositions()[heavy]
    from_mol = featurizer.featurize(mol)  # explicit H atoms folded, coordinates follow the heavy atoms
    np.testing.assert_allclose(from_mol["pos"], expected, atol=1e-6)
    (record,) = featurizer([{"smiles": "OCC#N", "pos": expected.tolist()}])
    np.testing.assert_allclose(record["pos"], expected, atol=1e-6)
    for key in ("input_nodes", "spatial_pos", "edge_input"):
        np.testing.assert_array_equal(record[key], from_mol[key])
    assert "pos" not in MoleculeFeaturizer()([{"smiles": "OCC#N", "pos": expected.tolist()}])[0]


def test_save_and_load_keep_settings(tmp_path):
    featurizer = MoleculeFeaturizer(multi_hop_max_dist=3, max_spatial=12, use_3d=True)
    featurizer.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").exists()
    loaded = MoleculeFeaturizer.from_pretrained(tmp_path)
    assert (loaded.multi_hop_max_dist, loaded.max_spatial, loaded.use_3d, loaded.feature_scheme) == (3, 12, True, "ogb")
    assert loaded.to_dict() == featurizer.to_dict()

    class ToyGraphConfig(PretrainedConfig):
        model_type = "toy_graph_for_featurizer_test"

    register_featurizer(ToyGraphConfig)
    auto = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(auto, MoleculeFeaturizer) and auto.to_dict() == featurizer.to_dict()
    mol = {"smiles": "CCO", "pos": np.zeros((3, 3)).tolist()}
    np.testing.assert_array_equal(auto([mol])[0]["edge_input"], featurizer([mol])[0]["edge_input"])


def test_call_returns_padded_batch(featurizer):
    batch = featurizer(["CCO", "c1ccccc1"], return_tensors="pt")
    assert batch["input_nodes"].shape == (2, 6, 9)
    assert batch["attention_mask"].sum().item() == 9
    single = featurizer("CCO")
    assert len(single) == 1 and single[0]["input_nodes"].shape == (3, 9)


# Fragments, single atoms, charges, radicals, isotopes, explicit/bridging H, stereo, dative and CXSMILES inputs, which
# exercise the shortcuts of the batched reader (enums and radicals read only when the SMILES can set them).
VARIED_SMILES = SMILES + [
    "[Na+].[Cl-]",
    "[H+].[Cl-]",
    "[H][H].C",
    "[He]",
    "[Fe+3]",
    "[CH2]",
    "[O]",
    "C[C]C",
    "[NH3+]CC([O-])=O",
    "CC(=O)O[2H]",
    "[H]/C(F)=C/F",
    "C[C@@H]1CC[C@H](O)CC1",
    "F/C=C\\F.Cl",
    "C[N+]([O-])=O",
    "CN(=O)=O",
    "C1CC1.C1CCC1.C",
    "C$C",
    "C->[Fe]",
    "CC |$;Cl_p$|",
    "C1CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC1",
    "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",
    "c1ccc2cc3ccccc3cc2c1",
    "O=C([O-])c1cc[n+](C)cc1",
    "[Cu+2].[O-]S(=O)(=O)[O-]",
    # sanitization turns bonds at a metal into dative bonds pointing the other way (N->Fe, N->Pt)
    "[Fe]N(C)(C)C",
    "Cl[Pt](Cl)([NH3])[NH3]",
    # aromatic-type bonds outside rings: not aromatic, conjugated or not
    "O=CN[#6]:[#6]",
    "CC(C)=O.[#6]:[#6]",
]


def _assert_same_features(actual, expected, name):
    assert sorted(actual) == sorted(expected), name
    for key in expected:
        assert actual[key].dtype == expected[key].dtype, (name, key)
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=f"{name} {key}")


def test_batched_path_equals_per_molecule_featurize():
    corpus = VARIED_SMILES + real_smiles(140)
    assert len(corpus) >= 200
    featurizer = MoleculeFeaturizer(multi_hop_max_dist=4, max_spatial=6)
    batched = featurizer(corpus)  # the public fast path: featurize_many, several chunks
    assert len(batched) == len(corpus)
    for smiles, features in zip(corpus, batched):
        _assert_same_features(features, featurizer.featurize(smiles), smiles)
        assert features["edge_input"].flags.c_contiguous and features["edge_index"].flags.c_contiguous


def test_smiles_shortcuts_equal_reading_every_property(featurizer):
    # RDKit molecules are always read property by property; SMILES skip the stereo/dative enums and radicals when
    # the string cannot set them. Both routes must agree.
    corpus = VARIED_SMILES + real_smiles(60)
    from_smiles = featurizer.featurize_many(corpus)
    from_mols = featurizer.featurize_many([Chem.MolFromSmiles(smiles) for smiles in corpus])
    for smiles, actual, expected in zip(corpus, from_smiles, from_mols):
        _assert_same_features(actual, expected, smiles)


@pytest.mark.parametrize("tamper", ["drop a bond", "move a bond"])
def test_a_parse_whose_bonds_rdkit_lacks_raises_naming_the_smiles(monkeypatch, tamper):
    # Parsed SMILES take their bond list from the parse; a parser bug must fail loudly, never mislabel bonds.
    real_check_smiles = featurization.check_smiles

    def tampered_check_smiles(smiles, max_atoms):
        checked = real_check_smiles(smiles, max_atoms)
        if smiles == "CCCC" and tamper == "drop a bond":
            checked.parsed.bonds.pop()
        elif smiles == "CCCC":
            checked.parsed.bonds[-1] = (0, 3, "SINGLE")  # butane has no bond 0-3
        return checked

    monkeypatch.setattr(featurization, "check_smiles", tampered_check_smiles)
    with pytest.raises(RuntimeError, match="CCCC.*parser"):
        MoleculeFeaturizer().featurize("CCCC")
    results = MoleculeFeaturizer().featurize_many(["CCO", "CCCC"], errors="return")
    _assert_same_features(results[0], MoleculeFeaturizer().featurize("CCO"), "CCO")
    assert isinstance(results[1], RuntimeError) and "CCCC" in str(results[1])


def test_featurize_many_records_and_errors():
    featurizer = MoleculeFeaturizer(use_3d=True)
    records = [
        {"smiles": "CCO", "pos": np.arange(9.0).reshape(3, 3), "mol_id": "a"},
        {"smiles": "[Cl-]", "pos": [[0, 0, 1]]},
    ]
    first, second = featurizer.featurize_many(records)
    np.testing.assert_array_equal(first["pos"], np.arange(9.0).reshape(3, 3))
    np.testing.assert_array_equal(second["pos"], [[0, 0, 1]])
    assert first["pos"].dtype == np.float32 and second["edge_index"].shape == (2, 0)
    with pytest.raises(ValueError, match=r"C1CC.*mol_id 'row_3'"):
        MoleculeFeaturizer().featurize_many(["CCO", {"smiles": "C1CC", "mol_id": "row_3"}])
    assert MoleculeFeaturizer().featurize_many([]) == []


def test_graph_collator_featurizes_rows_in_one_batch():
    import torch

    from molformer_kd.tokenization.collators import GraphCollator

    featurizer = MoleculeFeaturizer()
    rows = [{"smiles": "CCO", "gap": 1.0}, featurizer.featurize("c1ccccc1"), {"smiles": "[Na+].[Cl-]", "gap": 2.0}]
    batch = GraphCollator(featurizer)(rows)
    expected = GraphCollator.pad([featurizer.featurize(s) for s in ("CCO", "c1ccccc1", "[Na+].[Cl-]")])
    assert sorted(batch) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(batch[key], value), key


def test_featurize_many_can_return_each_failure_in_its_slot():
    corpus = ["CCO", "C1CC", 7, "c1ccccc1", "c1cccc1", "[Na+].[Cl-]"]
    featurizer = MoleculeFeaturizer()
    results = featurizer.featurize_many(corpus, errors="return")
    assert len(results) == len(corpus)
    for smiles, result in zip(corpus, results):
        if smiles in ("C1CC", 7, "c1cccc1"):
            assert isinstance(result, (ValueError, TypeError)) and repr(smiles) in str(result), (smiles, result)
        else:
            _assert_same_features(result, featurizer.featurize(smiles), smiles)
    with pytest.raises(ValueError, match="errors must be"):
        featurizer.featurize_many(["CCO"], errors="ignore")


def test_without_graph_encodings_the_other_features_are_unchanged():
    corpus = VARIED_SMILES + real_smiles(60)
    full = MoleculeFeaturizer(use_3d=False)
    light = full.without_graph_encodings()
    assert full.graph_encodings and not light.graph_encodings
    for smiles, with_encodings, without in zip(corpus, full(corpus), light(corpus)):
        assert set(with_encodings) - set(without) == set(GRAPH_ENCODING_KEYS), smiles
        _assert_same_features(
            without, {k: v for k, v in with_encodings.items() if k not in GRAPH_ENCODING_KEYS}, smiles
        )
    batch_full = full(corpus[:40], return_tensors="pt")
    batch_light = light(corpus[:40], return_tensors="pt")
    assert set(batch_full) - set(batch_light) == set(GRAPH_ENCODING_KEYS)
    for key, value in batch_light.items():
        np.testing.assert_array_equal(value.numpy(), batch_full[key].numpy(), err_msg=key)
    with pytest.raises(ValueError, match="graph_encodings"):
        pad_graph_features([full.featurize("CCO"), light.featurize("CCO")])


def test_graph_encodings_setting_is_saved_and_old_files_load_with_it_on(tmp_path):
    MoleculeFeaturizer(graph_encodings=False).save_pretrained(tmp_path / "light")
    assert MoleculeFeaturizer.from_pretrained(tmp_path / "light").graph_encodings is False
    # A preprocessor_config.json written before the setting existed.
    MoleculeFeaturizer().save_pretrained(tmp_path / "old")
    path = tmp_path / "old" / "preprocessor_config.json"
    settings = json.loads(path.read_text())
    del settings["graph_encodings"]
    path.write_text(json.dumps(settings))
    assert MoleculeFeaturizer.from_pretrained(tmp_path / "old").graph_encodings is True
    with pytest.raises(ValueError, match="graph_encodings"):
        MoleculeFeaturizer(graph_encodings="no")
