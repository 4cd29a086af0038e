"""Teacher-output cache: cached outputs equal the live teacher's, and training with the cache logs the same losses."""

import pickle

import pytest
import torch
from trainer_helpers import assert_trained_alike, distill_four_steps, live_and_cached_runs, training_args

from molformer_kd.distillation.objectives import (
    CCMDObjective,
    DenoiseAndDistillObjective,
    STKDAttentionObjective,
    TaskObjective,
)
from molformer_kd.distillation.tasks import label_statistics
from molformer_kd.distillation.teacher_cache import (
    TeacherCache,
    TeacherCacheError,
    build_teacher_cache,
    cache_bytes_per_molecule,
    cached_fields,
)
from molformer_kd.distillation.trainer import DistillationModel, DistillationTrainer
from molformer_kd.modeling.configuration_graphormer import GraphormerConfig
from molformer_kd.modeling.configuration_smiles_transformer import SmilesTransformerConfig
from molformer_kd.modeling.modeling_graphormer import GraphormerForMolecularPropertyPrediction, GraphormerModel
from molformer_kd.modeling.modeling_smiles_transformer import SmilesTransformerForMolecularPropertyPrediction
from molformer_kd.tokenization.collators import PairedCollator, SingleModelCollator
from molformer_kd.tokenization.featurization import MoleculeFeaturizer
from molformer_kd.tokenization.tokenization_smiles import SmilesTokenizer


@pytest.fixture(scope="module")
def rows(embedded_qm9):
    return embedded_qm9["train"].select(range(12))


def teacher_model(seed=0):
    torch.manual_seed(seed)
    return GraphormerModel(GraphormerConfig.from_preset("tiny", geometry="3d", num_hidden_layers=2)).eval()


def make_model(rows, teacher):
    torch.manual_seed(1)
    student_config = GraphormerConfig.from_preset(
        "tiny", geometry="2d", hidden_size=16, num_attention_heads=2, ffn_size=16, **label_statistics(rows, ["gap"])
    )
    student = GraphormerForMolecularPropertyPrediction(student_config)
    objectives = {
        "task": TaskObjective(),
        "ccmd": CCMDObjective(teacher.config, student_config),
        "dnd": DenoiseAndDistillObjective(teacher.config, student_config),
    }
    return DistillationModel(student, objectives, {"task": 1.0, "ccmd": 0.5, "dnd": 0.1})


def paired_collator():
    return PairedCollator(MoleculeFeaturizer(use_3d=True), MoleculeFeaturizer(), label_columns=["gap"])


def test_cached_outputs_equal_live_teacher_in_any_order(rows, tmp_path):
    """Written in batches of 5, read back in batches of another order and size: every real token of every field
    equals the live teacher's output on that batch."""
    teacher = teacher_model()
    collator = paired_collator()
    fields = cached_fields({"hidden_states", "attentions"})
    flags = {"output_hidden_states": True, "output_attentions": True}
    path = tmp_path / "cache.arrow"
    build_teacher_cache(path, rows, collator, lambda batch: teacher(**batch["teacher_inputs"], **flags), fields, 5)
    cache = TeacherCache([path])
    assert len(cache) == len(rows)

    order = [7, 2, 11, 0, 5, 9]
    cached = cache.padded(order)
    with torch.no_grad():
        live = teacher(**collator([rows[i] for i in order])["teacher_inputs"], **flags)
    torch.testing.assert_close(cached["token_mask"], live.token_mask)
    real = live.token_mask
    pair = real[:, :, None] & real[:, None, :]
    torch.testing.assert_close(cached["last_hidden_state"][real], live.last_hidden_state[real])
    assert len(cached["hidden_states"]) == len(live.hidden_states) == 3
    for ours, theirs in zip(cached["hidden_states"], live.hidden_states):
        torch.testing.assert_close(ours[real], theirs[real])
    for ours, theirs in zip(cached["attentions"], live.attentions):
        assert ours.shape == theirs.shape
        every_head = pair[:, None].expand_as(theirs)
        torch.testing.assert_close(ours[every_head], theirs[every_head])
    # Padding is zero, never values of another molecule.
    assert not cached["hidden_states"][-1][~real].any()
    # Dataloader workers get the cache by pickling: they re-map the file and read the same values.
    copied = pickle.loads(pickle.dumps(cache)).padded(order)
    for ours, theirs in zip(copied["hidden_states"], cached["hidden_states"]):
        assert torch.equal(ours, theirs)


def test_cached_training_logs_the_same_losses(embedded_qm9, tmp_path):
    """A few steps of CCMD + D&D + task with and without the cache (same seeds): equal logged train and eval losses
    and equal final student weights. A second run finds the cache files instead of writing new ones."""
    train, validation = embedded_qm9["train"].select(range(12)), embedded_qm9["validation"].select(range(6))

    def build():
        teacher = teacher_model()
        return make_model(train, teacher), teacher, paired_collator()

    live, cached = live_and_cached_runs(tmp_path, build, train, validation)
    cache_dir = tmp_path / "cache"
    assert isinstance(cached.teacher_cache, TeacherCache) and len(cached.teacher_cache) == 18
    files = sorted(p.name for p in cache_dir.iterdir())
    assert len(files) == 4  # train + validation, each an .arrow file and its .json

    assert_trained_alike(cached, live, "eval_ccmd_local")

    stamps = {p.name: p.stat().st_mtime_ns for p in cache_dir.iterdir()}
    distill_four_steps(tmp_path / "again", *build(), train, validation, cache_dir)
    assert {p.name: p.stat().st_mtime_ns for p in cache_dir.iterdir()} == stamps


def test_attention_objective_with_smiles_student(rows, tmp_path):
    """ST-KD's attention objective (teacher attentions) with a SMILES student: cached and live teacher give the
    same evaluation loss."""
    teacher = teacher_model()
    config = SmilesTransformerConfig.from_preset(
        "tiny", vocab_size=len(SmilesTokenizer()), **label_statistics(rows, ["gap"])
    )
    pairs = ((1, config.num_biased_layers),)  # 0-based: the teacher's last layer -> the first unbiased one
    results = []
    for cache_dir in (None, tmp_path / "cache"):
        torch.manual_seed(1)
        student = SmilesTransformerForMolecularPropertyPrediction(config)
        model = DistillationModel(student, {"stkd_attention": STKDAttentionObjective(teacher.config, config, pairs)})
        collator = PairedCollator(MoleculeFeaturizer(use_3d=True), SmilesTokenizer())
        trainer = DistillationTrainer(
            model=model,
            args=training_args(tmp_path / str(cache_dir is None)),
            teacher=teacher,
            data_collator=collator,
            eval_dataset=rows,
            teacher_cache_dir=cache_dir,
        )
        results.append(trainer.evaluate())
    assert results[0]["eval_stkd_attention"] > 0
    assert results[1]["eval_stkd_attention"] == pytest.approx(results[0]["eval_stkd_attention"], rel=1e-5)


def test_refusals(rows, tmp_path):
    teacher = teacher_model()
    model = make_model(rows, teacher)
    with pytest.raises(TeacherCacheError, match="SingleModelCollator"):
        DistillationTrainer(
            model=model,
            args=training_args(tmp_path),
            teacher=teacher,
            train_dataset=rows,
            data_collator=SingleModelCollator(MoleculeFeaturizer(use_3d=True), noise_sigma=0.04),
            teacher_cache_dir=tmp_path / "cache",
        )
    supervised = DistillationModel(model.student, {"task": TaskObjective()})
    with pytest.raises(ValueError, match="nothing to cache"):
        DistillationTrainer(
            model=supervised,
            args=training_args(tmp_path),
            data_collator=paired_collator(),
            train_dataset=rows,
            teacher_cache_dir=tmp_path / "cache",
        )
    with pytest.raises(TeacherCacheError, match="pooler_output"):
        cached_fields({"hidden_states", "pooler_output"})
    assert not (tmp_path / "cache").exists()


def test_memory_estimate():
    # The numbers of the teacher_cache docstring: all of QM9 (~130k molecules of ~10 tokens), CCMD (hidden states).
    fields = cached_fields({"hidden_states"})
    assert cache_bytes_per_molecule(10, 768, 12, 32, fields) == 4 * (13 + 1) * 10 * 768
    assert 55e9 < 130_000 * cache_bytes_per_molecule(10, 768, 12, 32, fields) < 57e9
    assert 15e9 < 130_000 * cache_bytes_per_molecule(10, 384, 6, 12, fields) < 17e9
    attentions = cache_bytes_per_molecule(10, 768, 12, 32, cached_fields({"attentions"})) - 4 * 10 * 768
    assert 19e9 < 130_000 * attentions < 21e9
