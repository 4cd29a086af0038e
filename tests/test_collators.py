"""GraphCollator padding and PairedCollator teacher/student batches (DESIGN.md graph, SMILES and paired batch)."""

import math

import numpy as np
import pytest
import torch

from molformer_kd.tokenization import SmilesTokenizer
from molformer_kd.tokenization.collators import GraphCollator, PairedCollator
from molformer_kd.tokenization.featurization import MoleculeFeaturizer

SMILES = ["CCO", "c1ccccc1C(=O)[O-].[Na+]", "[Cl-]", "CC(C)(C)C#N"]


def random_pos(smiles, seed=0):
    n = len(MoleculeFeaturizer().featurize(smiles)["input_nodes"])
    return np.random.default_rng(seed).normal(size=(n, 3)).round(3).tolist()


def rows():
    return [
        {"smiles": s, "pos": random_pos(s, k), "gap": 1.5 + k, "homo": None if k == 1 else -k, "mol_id": f"m{k}"}
        for k, s in enumerate(SMILES)
    ]


def test_padding_equals_per_molecule_arrays():
    featurizer = MoleculeFeaturizer(multi_hop_max_dist=4, use_3d=True)
    records = rows()
    features = featurizer(records)
    batch = GraphCollator(label_columns=["gap", "homo"])([{**f, **r} for f, r in zip(features, records)])
    sizes = [len(f["input_nodes"]) for f in features]
    num_atoms = max(sizes)
    assert batch["input_nodes"].shape == (4, num_atoms, 9) and batch["input_nodes"].dtype == torch.long
    assert batch["edge_input"].shape == (4, num_atoms, num_atoms, 4, 3)
    for b, (f, n) in enumerate(zip(features, sizes)):
        np.testing.assert_array_equal(batch["input_nodes"][b, :n], f["input_nodes"])
        np.testing.assert_array_equal(batch["spatial_pos"][b, :n, :n], f["spatial_pos"])
        np.testing.assert_array_equal(batch["attn_edge_type"][b, :n, :n], f["attn_edge_type"])
        np.testing.assert_array_equal(batch["edge_input"][b, :n, :n], f["edge_input"])
        np.testing.assert_array_equal(batch["in_degree"][b, :n], f["degree"])
        np.testing.assert_array_equal(batch["out_degree"][b, :n], f["degree"])
        np.testing.assert_allclose(batch["pos"][b, :n], f["pos"])
        np.testing.assert_array_equal(batch["attention_mask"][b], [1] * n + [0] * (num_atoms - n))
        # Everything beyond the molecule is padding (0).
        for key in ("input_nodes", "in_degree", "pos"):
            assert not batch[key][b, n:].any()
        for key in ("spatial_pos", "attn_edge_type", "edge_input"):
            assert not batch[key][b, n:].any() and not batch[key][b, :, n:].any()
    labels = batch["labels"]
    assert labels.dtype == torch.float32 and labels.shape == (4, 2)
    assert labels[:, 0].tolist() == [1.5, 2.5, 3.5, 4.5]
    assert math.isnan(labels[1, 1].item()) and labels[2, 1].item() == -2


def test_edge_index_is_flattened_into_the_padded_grid():
    featurizer = MoleculeFeaturizer()
    features = featurizer(SMILES)
    batch = GraphCollator()(features)
    num_atoms = batch["input_nodes"].shape[1]
    edge_index, edge_attr = batch["edge_index"], batch["edge_attr"]
    assert edge_index.shape == (2, sum(f["edge_index"].shape[1] for f in features))
    assert edge_attr.shape == (edge_index.shape[1], 3)
    graph, source = edge_index[0] // num_atoms, edge_index[0] % num_atoms
    assert (graph == edge_index[1] // num_atoms).all()  # edges stay inside their molecule
    target = edge_index[1] % num_atoms
    assert batch["attention_mask"][graph, source].all() and batch["attention_mask"][graph, target].all()
    np.testing.assert_array_equal(batch["attn_edge_type"][graph, source, target], edge_attr)
    flat_nodes = batch["input_nodes"].reshape(-1, 9)  # GIN gathers node rows by the flat index
    np.testing.assert_array_equal(flat_nodes[edge_index[0]], batch["input_nodes"][graph, source])
    assert "labels" not in batch and "pos" not in batch


def test_collator_featurizes_records_and_accepts_nested_lists():
    featurizer = MoleculeFeaturizer()
    direct = GraphCollator(featurizer, label_columns="gap")(rows())
    # Features that went through Arrow (datasets.map) come back as nested lists.
    as_lists = [{k: v.tolist() for k, v in featurizer.featurize(s).items()} for s in SMILES]
    from_lists = GraphCollator()(as_lists)
    for key, value in from_lists.items():
        assert torch.equal(value, direct[key]), key
    assert direct["labels"].shape == (4, 1)
    with pytest.raises(ValueError, match="CCO.*no featurizer"):
        GraphCollator()(["CCO"])


def test_mixed_pos_and_hops_are_rejected():
    with_pos = MoleculeFeaturizer(use_3d=True).featurize("CO", pos=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="pos"):
        GraphCollator()([with_pos, MoleculeFeaturizer().featurize("CO")])
    with pytest.raises(ValueError, match="multi_hop_max_dist"):
        GraphCollator()(
            [MoleculeFeaturizer(multi_hop_max_dist=2).featurize("CO"), MoleculeFeaturizer().featurize("CO")]
        )


def test_paired_batch_with_3d_teacher_and_graph_student():
    teacher = MoleculeFeaturizer(use_3d=True)
    for student in (teacher.without_3d(), MoleculeFeaturizer(multi_hop_max_dist=2)):
        batch = PairedCollator(teacher, student, label_columns=["gap"])(rows())
        teacher_inputs, student_inputs = batch["teacher_inputs"], batch["student_inputs"]
        assert "pos" in teacher_inputs and "pos" not in student_inputs
        assert torch.equal(teacher_inputs["input_nodes"], student_inputs["input_nodes"])
        assert torch.equal(teacher_inputs["attention_mask"], student_inputs["attention_mask"])
        assert student_inputs["edge_input"].shape[3] == student.multi_hop_max_dist
        assert batch["labels"][:, 0].tolist() == [1.5, 2.5, 3.5, 4.5]
        np.testing.assert_allclose(teacher_inputs["pos"][0, :3], rows()[0]["pos"])


def test_paired_rows_without_pos_name_the_molecule():
    records = rows()
    records[2]["pos"] = None
    with pytest.raises(ValueError, match=r"\[Cl-\].*m2.*use_3d"):
        PairedCollator(MoleculeFeaturizer(use_3d=True), MoleculeFeaturizer())(records)
    records[2]["pos"] = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]  # two rows for one atom
    with pytest.raises(ValueError, match=r"\[Cl-\].*shape \(2, 3\)"):
        PairedCollator(MoleculeFeaturizer(use_3d=True), MoleculeFeaturizer())(records)


class AtomCountingTokenizer:
    """Stand-in SMILES tokenizer returning the atom fields of the SMILES batch (ignores the real token ids)."""

    def __init__(self, atom_counts):
        self.atom_counts = atom_counts

    def __call__(self, smiles, padding, return_tensors):
        assert padding is True and return_tensors == "pt"
        counts = [self.atom_counts(s) for s in smiles]
        width = max(counts)
        atom_mask = torch.tensor([[1] * n + [0] * (width - n) for n in counts])
        return {"input_ids": torch.ones(len(smiles), width + 1, dtype=torch.long), "atom_mask": atom_mask}


def _check_smiles_student(tokenizer):
    batch = PairedCollator(MoleculeFeaturizer(use_3d=True), tokenizer, label_columns=["gap"])(rows())
    np.testing.assert_array_equal(
        batch["student_inputs"]["atom_mask"].sum(1), batch["teacher_inputs"]["attention_mask"].sum(1)
    )
    assert batch["student_inputs"]["input_ids"].shape[0] == 4 and batch["labels"].shape == (4, 1)
    return batch


def test_paired_batch_with_stand_in_smiles_student():
    _check_smiles_student(AtomCountingTokenizer(lambda s: len(MoleculeFeaturizer().featurize(s)["input_nodes"])))


def test_paired_batch_with_smiles_tokenizer_student():
    batch = _check_smiles_student(SmilesTokenizer())
    np.testing.assert_array_equal(batch["student_inputs"]["atom_token_index"][0, :3], [1, 2, 3])


def test_paired_atom_count_mismatch_names_the_smiles():
    wrong = AtomCountingTokenizer(lambda s: len(s))  # counts characters, not atoms
    with pytest.raises(ValueError, match=r"C\(C\)O.*teacher has 3 atoms but the student 5"):
        PairedCollator(MoleculeFeaturizer(use_3d=True), wrong)([{"smiles": "C(C)O", "pos": np.zeros((3, 3))}])
