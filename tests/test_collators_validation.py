"""Value checks of a collated batch against the configs of the models that will read it (`ValidatingCollator`).

The models' `forward` reads no input value on a GPU (tests/test_model_contract.py, `HostSyncRecorder`); the checks
that used to need one run here on the CPU batch instead, with the same messages as `validate_inputs` and a CPU
`forward`, naming the part of the batch as well.
"""

import pickle

import pytest
import torch

from molformer_kd.modeling import (
    GINConfig,
    GINModel,
    GraphormerConfig,
    GraphormerModel,
    SchNetConfig,
    SmilesTransformerConfig,
    SmilesTransformerModel,
)
from molformer_kd.modeling.modeling_utils import ValidatingCollator, check_model_inputs
from molformer_kd.tokenization import SmilesTokenizer
from molformer_kd.tokenization.collators import GraphCollator, PairedCollator, PointCloudCollator
from molformer_kd.tokenization.featurization import MoleculeFeaturizer

SMILES = ["CCO", "c1ccccc1C(=O)O", "CC(C)(C)C#N"]
# 34 heavy atoms: beyond the tiny SMILES Transformer's structure position table (max_atoms=32).
LONG_CHAIN = "C" * 34


def test_valid_batches_pass_unchanged_and_the_wrapper_pickles():
    collator = GraphCollator(MoleculeFeaturizer())
    config = GraphormerConfig.from_preset("tiny")
    validating = ValidatingCollator(collator, student_config=config)
    batch = validating(SMILES)
    expected = collator(SMILES)
    assert batch.keys() == expected.keys() and all(torch.equal(batch[k], expected[k]) for k in batch)
    restored = pickle.loads(pickle.dumps(validating))  # DataLoader workers get a copy: configs, no model
    assert restored(SMILES).keys() == batch.keys()
    GINModel.check_input_values(GINConfig.from_preset("tiny"), batch)


def test_graphormer_max_spatial_mismatch_is_found_in_the_collator():
    batch_collator = GraphCollator(MoleculeFeaturizer())  # max_spatial 20; the model below embeds up to 2
    config = GraphormerConfig.from_preset("tiny", max_spatial=2)
    with pytest.raises(ValueError, match=r"batch: spatial_pos holds \d+ but this model has max_spatial=2"):
        ValidatingCollator(batch_collator, student_config=config)(SMILES)
    with pytest.raises(ValueError, match="max_spatial=2"):  # the same check in a CPU forward
        GraphormerModel(config)(**batch_collator(SMILES))


def test_gin_bad_ids_and_edges_name_the_input():
    config = GINConfig.from_preset("tiny")
    batch = GraphCollator(MoleculeFeaturizer())(["CCO", "C"])
    bad_nodes = dict(batch, input_nodes=batch["input_nodes"].clone())
    bad_nodes["input_nodes"][0, 0, 2] = 99
    with pytest.raises(ValueError, match="batch: input_nodes column 2 holds values outside"):
        check_model_inputs(bad_nodes, config)
    bad_edges = dict(batch, edge_index=torch.tensor([[0], [4]]), edge_attr=batch["edge_attr"][:1])
    with pytest.raises(ValueError, match=r"edge_index column 0 \(\[0, 4\]\) does not point at real atoms"):
        ValidatingCollator(lambda rows: bad_edges, student_config=config)([])
    with pytest.raises(ValueError, match=r"edge_index column 0 \(\[0, 4\]\)"):
        GINModel(config)(**bad_edges)


def test_smiles_student_too_large_or_wrong_vocabulary_names_student_inputs():
    tokenizer = SmilesTokenizer()
    paired = PairedCollator(MoleculeFeaturizer(use_3d=False), tokenizer)
    rows = [{"smiles": s} for s in ["CCO", LONG_CHAIN]]
    small = SmilesTransformerConfig.from_preset("tiny", vocab_size=len(tokenizer), num_labels=1)
    with pytest.raises(ValueError, match="student_inputs: structure_positions go up to atom 34 .* max_atoms=32"):
        ValidatingCollator(paired, student_config=small)(rows)
    short_vocabulary = SmilesTransformerConfig.from_preset("tiny", vocab_size=5, num_labels=1)
    with pytest.raises(ValueError, match=r"student_inputs: input_ids hold ids outside the vocabulary \[0, 5\)"):
        ValidatingCollator(paired, student_config=short_vocabulary)(rows[:1])
    # The teacher's graph batch is checked against the teacher's config, the student's against the student's.
    teacher = GraphormerConfig.from_preset("tiny", max_spatial=1)
    with pytest.raises(ValueError, match="teacher_inputs: spatial_pos"):
        ValidatingCollator(paired, student_config=small, teacher_config=teacher)([{"smiles": "CCCCO"}])
    ValidatingCollator(paired, small, GraphormerConfig.from_preset("tiny"))([{"smiles": "CCCCO"}])
    batch = tokenizer([LONG_CHAIN], return_tensors="pt")
    with pytest.raises(ValueError, match="max_atoms=32"):
        SmilesTransformerModel(small)(**batch)


def test_point_cloud_atomic_numbers_beyond_the_embedding():
    rows = [
        {"atomic_numbers": [6, 1, 1, 1, 9], "positions": [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]},
        {"atomic_numbers": [1, 1], "positions": [[0, 0, 0], [0.7, 0, 0]]},
    ]
    config = SchNetConfig(hidden_size=16, num_filters=12, num_layers=2, num_rbf=10, max_atomic_number=8)
    with pytest.raises(ValueError, match=r"student_inputs: atom_mask marks atoms with atomic numbers 1\.\.9 as real"):
        ValidatingCollator(PointCloudCollator(paired=True), student_config=config)(rows)
    with pytest.raises(ValueError, match=r"batch: .*this model embeds 1\.\.8"):
        ValidatingCollator(PointCloudCollator(), student_config=config)(rows)
    references = SchNetConfig(atom_reference_energies=[0.0, -13.6])
    with pytest.raises(ValueError, match="atomic number 9 has no entry in atom_reference_energies"):
        check_model_inputs(PointCloudCollator()(rows), references)


def test_a_model_off_the_cpu_checks_a_cpu_batch_from_its_config():
    """`validate_inputs` needs the config only: a model on another device (meta here) checks a CPU batch without
    moving either, and its forward on that device reads nothing."""
    batch = GraphCollator(MoleculeFeaturizer())(SMILES)
    model = GraphormerModel(GraphormerConfig.from_preset("tiny", max_spatial=2)).to("meta")
    with pytest.raises(ValueError, match="max_spatial=2"):
        model.validate_inputs(batch)
    output = model(**{key: value.to("meta") for key, value in batch.items()})
    assert output.last_hidden_state.device.type == "meta"


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_training_stages_check_batches_in_the_collator_on_an_accelerator(monkeypatch, device):
    # A stage training on an accelerator gets the collator wrapped (a forward there reads no input value); on the
    # CPU the forward checks, and the collator is passed as it is. torch.device("cuda") needs no GPU to exist.
    from types import SimpleNamespace

    from molformer_kd.distillation.stages import base

    class Handed(Exception):
        pass

    handed = {}

    def trainer_stand_in(**kwargs):
        handed.update(kwargs)
        raise Handed

    monkeypatch.setattr(base, "DistillationTrainer", trainer_stand_in)
    student, teacher = GINConfig.from_preset("tiny"), GraphormerConfig.from_preset("tiny")
    stage = SimpleNamespace(training_args=SimpleNamespace(device=torch.device(device), eval_strategy="no"))
    model = SimpleNamespace(student=SimpleNamespace(config=student))
    collator = GraphCollator(MoleculeFeaturizer())
    with pytest.raises(Handed):
        base.train_and_export(stage, model, {"train": []}, collator, None, teacher=SimpleNamespace(config=teacher))
    if device == "cpu":
        assert handed["data_collator"] is collator
        return
    wrapped = handed["data_collator"]
    assert isinstance(wrapped, ValidatingCollator)
    assert (wrapped.collator, wrapped.student_config, wrapped.teacher_config) == (collator, student, teacher)
