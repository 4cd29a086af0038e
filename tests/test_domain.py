"""The applicability domain (data/domain.py): computed from a training set, stored in a config, checked per molecule."""

import json

import pytest
from rdkit import Chem

from molformer_kd.data.domain import ApplicabilityDomain, molecule_profile
from molformer_kd.data.qm9 import read_embedded_qm9
from molformer_kd.modeling.configuration_gin import GINConfig


@pytest.fixture(scope="module")
def qm9_domain():
    _, records = read_embedded_qm9()
    return ApplicabilityDomain.from_smiles([record["smiles"] for record in records], source="embedded QM9")


def test_the_domain_of_qm9_is_small_neutral_closed_shell_cnof(qm9_domain):
    assert qm9_domain.elements == ("C", "F", "N", "O")
    assert qm9_domain.max_heavy_atoms == 9
    assert qm9_domain.min_heavy_atoms == 1  # smaller than the smallest training molecule is not flagged, no atom is
    assert qm9_domain.net_charges == (0,)
    assert qm9_domain.max_radical_electrons == 0
    assert qm9_domain.max_fragments == 1
    assert qm9_domain.molecules == 3000 and qm9_domain.source == "embedded QM9"


@pytest.mark.parametrize(
    ("smiles", "reason"),
    [
        ("CCO", None),
        ("C[N+](=O)[O-]", None),  # a nitro group: charged atoms, neutral molecule, as in QM9
        ("OC(=O)C(F)(F)F", None),
        ("c1ccccc1Cl", "element Cl (training set: C, F, N, O)"),
        ("C" * 20, "20 heavy atoms (training set: at most 9)"),
        ("[NH4+]", "net charge +1 (training set: 0)"),
        ("CC(=O)[O-]", "net charge -1 (training set: 0)"),
        ("[CH3]", "1 radical electron (training set: at most 0)"),
        ("CCO.O", "2 fragments (training set: at most 1)"),
        ("[H][H]", "0 heavy atoms (training set: at least 1)"),
        ("BrC(Cl)C", "elements Br, Cl (training set: C, F, N, O)"),
    ],
)
def test_hand_picked_molecules_in_and_out_of_the_qm9_domain(qm9_domain, smiles, reason):
    verdict = qm9_domain.check(smiles)
    assert verdict.in_domain is (reason is None)
    assert verdict.reason == reason


def test_every_broken_constraint_is_named():
    domain = ApplicabilityDomain(elements=("C", "N", "O"), max_heavy_atoms=9, net_charges=(0,), atom_charges=(0,))
    verdict = domain.check("[Cl-].C" + "C" * 10 + "[NH3+]")
    assert not verdict.in_domain
    assert verdict.reason.split("; ") == [
        "element Cl (training set: C, N, O)",
        "13 heavy atoms (training set: at most 9)",
        "atom charge -1, +1 (training set: 0)",
    ]


def test_a_mol_and_its_smiles_get_the_same_verdict(qm9_domain):
    for smiles in ("CCO", "c1ccccc1Cl", "[NH4+]"):
        assert qm9_domain.check(Chem.MolFromSmiles(smiles)) == qm9_domain.check(smiles)
    assert qm9_domain.check_many(["CCO", "c1ccccc1Cl"]) == [qm9_domain.check("CCO"), qm9_domain.check("c1ccccc1Cl")]
    assert qm9_domain.check("C1CC") == (False, "RDKit cannot read the SMILES")


def test_profile_counts_heavy_atoms_not_hydrogens():
    profile = molecule_profile(Chem.AddHs(Chem.MolFromSmiles("CCO")))
    assert profile.heavy_atoms == 3 and profile.elements == {"C", "O"}
    assert molecule_profile(Chem.MolFromSmiles("*C")).elements == {"*", "C"}  # a dummy atom is no known element


def test_round_trip_through_json_and_a_model_config(qm9_domain, tmp_path):
    values = json.loads(json.dumps(qm9_domain.to_dict()))
    assert ApplicabilityDomain.from_dict(values) == qm9_domain
    config = GINConfig.from_preset("tiny", num_labels=1, label_names=["gap"])
    assert ApplicabilityDomain.from_config(config) is None
    config.applicability_domain = qm9_domain.to_dict()
    config.save_pretrained(tmp_path)
    reloaded = GINConfig.from_pretrained(tmp_path)
    assert ApplicabilityDomain.from_config(reloaded) == qm9_domain
    assert ApplicabilityDomain.from_config(json.loads((tmp_path / "config.json").read_text())) == qm9_domain


def test_a_hand_written_domain_constrains_only_what_it_names():
    domain = ApplicabilityDomain.from_dict({"elements": ["C", "N", "O", "F"], "max_heavy_atoms": 9})
    assert domain.check("[NH4+]").in_domain  # no charge constraint given
    assert domain.check("c1ccccc1Cl").reason == "element Cl (training set: C, F, N, O)"
    assert domain.describe() == ["heavy-atom elements: C, F, N, O", "heavy atoms: 0 to 9"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"element": ["C"]}, r"unknown key\(s\) \['element'\]"),
        ({"elements": "CNO"}, "elements: expected a list"),
        ({"net_charges": [0.5]}, "net_charges: expected a list of int"),
        ({"max_heavy_atoms": -1}, "max_heavy_atoms: expected a count"),
        ({"max_heavy_atoms": True}, "max_heavy_atoms: expected a count"),
        (["C"], "expected a mapping"),
    ],
)
def test_bad_domain_values_are_refused_naming_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        ApplicabilityDomain.from_dict(values)


def test_a_training_set_must_be_readable_and_not_empty():
    with pytest.raises(ValueError, match="cannot read the training SMILES 'C1CC'"):
        ApplicabilityDomain.from_smiles(["CCO", "C1CC"])
    with pytest.raises(ValueError, match="at least one molecule"):
        ApplicabilityDomain.from_smiles([])


PROFILE_CASES = [
    "CCO",
    "c1ccccc1Cl",
    "[NH4+]",
    "CC(=O)[O-].[Na+]",
    "C[N+](=O)[O-]",
    "[CH3]",
    "[CH2]C",
    "O=C=O.O.N",
    "[H][H]",
    "[2H]C([2H])([2H])O",
    "C1CC1.C1CC1.CC",
    "[Cu+2].[O-]S(=O)(=O)[O-]",
    "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O",
    "c1ccc2ccccc2c1",
    "[Fe]",
]


def test_graph_profiles_equal_the_rdkit_profile_of_the_smiles():
    """The pipeline profiles predicted molecules from their features (no second parse): the same profile, fragments
    and charges included, as RDKit's of the SMILES, batched across molecules of different sizes."""
    from molformer_kd.tokenization.featurization import MoleculeFeaturizer, graph_profiles

    featurizer = MoleculeFeaturizer(graph_encodings=False)
    features = featurizer.featurize_many(PROFILE_CASES)
    for smiles, profile in zip(PROFILE_CASES, graph_profiles(features)):
        assert profile == molecule_profile(Chem.MolFromSmiles(smiles)), smiles
    assert graph_profiles([]) == []


def test_domain_of_3d_structures_has_their_heavy_elements_and_atom_counts():
    """Point clouds (the energy models' data) give elements and heavy-atom counts, and nothing about charges."""
    water, methanol, fluoromethane = [8, 1, 1], [6, 8, 1, 1, 1, 1], [1, 6, 1, 9, 1]
    domain = ApplicabilityDomain.from_atomic_numbers([water, methanol, fluoromethane], source="three molecules")
    assert domain.elements == ("C", "F", "O")
    assert (domain.min_heavy_atoms, domain.max_heavy_atoms, domain.molecules) == (1, 2, 3)
    assert domain.net_charges is None and domain.atom_charges is None
    assert ApplicabilityDomain.from_dict(domain.to_dict()) == domain
    with pytest.raises(ValueError, match="at least one molecule"):
        ApplicabilityDomain.from_atomic_numbers([])
