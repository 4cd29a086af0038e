"""DistillationTrainer: exact gradient accumulation, frozen teacher, component logging, exact resume, export."""

import copy

import pytest
import torch
from safetensors.torch import load_file
from torch._dynamo.utils import counters as dynamo_counters
from trainer_helpers import training_args as shared_training_args
from transformers import AutoModel, TrainerCallback, TrainerState

from molformer_kd.data import load_embedded_qm9
from molformer_kd.data.xtb import energy_statistics, load_qm9_xtb
from molformer_kd.distillation.objectives import CCMDObjective, TaskObjective
from molformer_kd.distillation.registry import build_objective
from molformer_kd.distillation.tasks import label_statistics
from molformer_kd.distillation.tasks.energy_forces import build_energy_model
from molformer_kd.distillation.trainer import DistillationModel, DistillationTrainer, InitialStageCallback
from molformer_kd.modeling.configuration_graphormer import GraphormerConfig
from molformer_kd.modeling.configuration_painn import PaiNNConfig
from molformer_kd.modeling.modeling_graphormer import GraphormerForMolecularPropertyPrediction, GraphormerModel
from molformer_kd.modeling.modeling_painn import PaiNNForEnergyAndForces
from molformer_kd.tokenization.collators import PairedCollator, SingleModelPointCloudCollator
from molformer_kd.tokenization.featurization import MoleculeFeaturizer


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return load_embedded_qm9(cache_dir=tmp_path_factory.mktemp("qm9"))["train"].select(range(16))


def make_models(rows, seed=0):
    torch.manual_seed(seed)
    teacher = GraphormerModel(GraphormerConfig.from_preset("tiny", geometry="3d", num_hidden_layers=2))
    student_config = GraphormerConfig.from_preset(
        "tiny", geometry="2d", hidden_size=16, num_attention_heads=2, ffn_size=16, **label_statistics(rows, ["gap"])
    )
    student = GraphormerForMolecularPropertyPrediction(student_config)
    objectives = {"task": TaskObjective(), "ccmd": CCMDObjective(teacher.config, student_config)}
    return teacher, DistillationModel(student, objectives, {"task": 1.0, "ccmd": 0.5})


def collator():
    return PairedCollator(MoleculeFeaturizer(use_3d=True), MoleculeFeaturizer(), label_columns=["gap"])


def training_args(output_dir, **overrides):
    # Plain SGD-like steps: no weight decay or clipping, so the tests' hand computations hold.
    return shared_training_args(output_dir, **{"weight_decay": 0.0, "max_grad_norm": 0.0, **overrides})


def parameters(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_gradient_accumulation_2x4_equals_batch_8(rows, tmp_path):
    """One SGD step on 8 molecules of different sizes: 2 micro-batches of 4 == 1 batch of 8 (same init)."""
    eight = rows.select(range(8))
    results = []
    for batch_size, accumulation in ((8, 1), (4, 2)):
        teacher, model = make_models(eight)
        start = parameters(model)
        args = training_args(
            tmp_path / f"ga{accumulation}",
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            optim="sgd",
            learning_rate=1.0,
            max_steps=1,
        )
        trainer = DistillationTrainer(
            model=model, args=args, teacher=teacher, data_collator=collator(), train_dataset=eight
        )
        trainer.train()
        results.append({name: start[name] - p.detach() for name, p in model.named_parameters()})  # = lr * grad
        sizes = {len(row["pos"]) for row in eight}
        assert len(sizes) > 1  # molecules of different sizes: per-atom terms are really per molecule
    full, accumulated = results
    assert any(delta.abs().max() > 1e-4 for delta in full.values())
    for name in full:
        torch.testing.assert_close(accumulated[name], full[name], rtol=1e-4, atol=1e-6, msg=name)


def test_teacher_frozen_components_logged_and_export(rows, tmp_path):
    teacher, model = make_models(rows)
    teacher_before = copy.deepcopy(teacher.state_dict())
    args = training_args(tmp_path / "run", max_steps=4, logging_steps=2)
    trainer = DistillationTrainer(
        model=model,
        args=args,
        teacher=teacher,
        data_collator=collator(),
        train_dataset=rows,
        processing_class=MoleculeFeaturizer(),
    )
    trainer.train()
    assert not trainer.teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[name]), name
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in teacher.parameters()}
    # The CCMD projections (student width 16 -> teacher width 32) are optimized with the student.
    assert {id(p) for p in model.objectives.parameters()} <= optimized
    assert len(list(model.objectives.parameters())) > 0

    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    for entry in logs:
        assert {"task", "ccmd_global", "ccmd_local"} <= set(entry)
        # loss = 1.0 * task + 0.5 * (global + local), each averaged over the same two steps.
        expected = entry["task"] + 0.5 * (entry["ccmd_global"] + entry["ccmd_local"])
        assert entry["loss"] == pytest.approx(expected, rel=1e-4)

    trainer.save_student(tmp_path / "student")
    reloaded = GraphormerForMolecularPropertyPrediction.from_pretrained(tmp_path / "student")
    for name, value in model.student.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], value, msg=name)
    assert (tmp_path / "student" / "preprocessor_config.json").is_file()
    assert isinstance(AutoModel.from_pretrained(tmp_path / "student"), GraphormerModel)


def test_resume_from_checkpoint_matches_uninterrupted_run(rows, tmp_path):
    def run(output_dir, max_steps, resume=None):
        teacher, model = make_models(rows, seed=0)
        args = training_args(
            output_dir,
            max_steps=max_steps,
            save_strategy="steps",
            save_steps=3,
            gradient_accumulation_steps=2,
            per_device_train_batch_size=2,
        )
        trainer = DistillationTrainer(
            model=model,
            args=args,
            teacher=teacher,
            data_collator=collator(),
            train_dataset=rows,
            initial_stage_epochs=0.5,
            initial_stage_weights={"task": 0.0, "ccmd": 1.0},
        )
        trainer.train(resume_from_checkpoint=resume)
        return model, trainer

    straight, _ = run(tmp_path / "straight", 6)
    # An interrupted run: the same schedule, stopped after its checkpoint at step 3 ...
    run(tmp_path / "interrupted", 3)
    # ... then a fresh process-like trainer (new models, new seed state) resumes from that checkpoint.
    torch.manual_seed(123)
    resumed, trainer = run(tmp_path / "interrupted", 6, resume=str(tmp_path / "interrupted" / "checkpoint-3"))
    assert trainer.state.global_step == 6
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=1e-6, msg=name)


def test_initial_stage_callback_switches_weights_by_epoch():
    callback = InitialStageCallback(2, {"task": 0.0, "stkd_feature": 1.0}, {"task": 1.0, "stkd_feature": 0.5})
    model = type("Holder", (), {})()
    state = TrainerState()
    for epoch, expected in ((0.0, 0.0), (1.99, 0.0), (2.0, 1.0), (3.5, 1.0)):
        state.epoch = epoch
        callback.on_step_begin(None, state, None, model=model)
        assert model.weights["task"] == expected
        assert model.weights["stkd_feature"] == (1.0 if expected == 0.0 else 0.5)


def test_trainer_requires_teacher_and_known_weights(rows, tmp_path):
    teacher, model = make_models(rows)
    with pytest.raises(ValueError, match="need a teacher"):
        DistillationTrainer(model=model, args=training_args(tmp_path), data_collator=collator(), train_dataset=rows)
    with pytest.raises(ValueError, match="not configured"):
        DistillationModel(model.student, {"task": TaskObjective()}, {"ccmd": 1.0})
    with pytest.raises(ValueError, match="not configured"):
        DistillationTrainer(
            model=model,
            args=training_args(tmp_path),
            teacher=teacher,
            data_collator=collator(),
            train_dataset=rows,
            initial_stage_epochs=1,
            initial_stage_weights={"stkd_feature": 1},
        )


class CompiledGraphs(TrainerCallback):
    """How many graphs dynamo has compiled, after every step."""

    def __init__(self):
        self.after_step = []

    def on_step_end(self, args, state, control, **kwargs):
        self.after_step.append(dynamo_counters["stats"]["unique_graphs"])


def test_torch_compile_compiles_for_dynamic_shapes_and_exports_plain_weights(tmp_path):
    """Batches are padded to their own widest molecule: with `torch_compile` the trainer compiles for dynamic shapes,
    so batches of new widths reuse the graphs of the first steps instead of compiling new ones. Dynamo's `eager`
    backend traces exactly as inductor would, without its code generation (minutes on CPU). The checkpoint and the
    export hold the plain module's weights (no `_orig_mod.` prefix)."""
    rows = load_qm9_xtb()["train"].select(range(48))
    torch.manual_seed(0)
    student = PaiNNForEnergyAndForces(
        PaiNNConfig(hidden_size=16, num_layers=2, num_rbf=8, cutoff=5.0, **energy_statistics(rows))
    )
    model = DistillationModel(student, {"energy_forces": build_objective("energy_forces", None, student.config)})
    collator = SingleModelPointCloudCollator()
    widths = [max(len(row["atomic_numbers"]) for row in rows.select(range(k, k + 8))) for k in range(0, 48, 8)]
    assert len(set(widths[2:]) - set(widths[:2])) >= 2  # later batches bring widths the first two did not have
    args = training_args(
        tmp_path / "run",
        max_steps=6,
        per_device_train_batch_size=8,
        torch_compile_backend="eager",
        save_strategy="steps",
        save_steps=3,
        # The batches in row order, so that the widths are the ones checked above.
        train_sampling_strategy="sequential",
    )
    graphs = CompiledGraphs()
    trainer = DistillationTrainer(
        model=model, args=args, data_collator=collator, train_dataset=rows, callbacks=[graphs]
    )
    torch._dynamo.reset()
    try:
        trainer.train()
        assert graphs.after_step[1] > 0
        assert graphs.after_step[-1] == graphs.after_step[1], graphs.after_step
    finally:
        torch._dynamo.reset()
    assert not any("_orig_mod" in key for key in load_file(tmp_path / "run" / "checkpoint-6" / "model.safetensors"))
    trainer.save_student(tmp_path / "student")
    reloaded = PaiNNForEnergyAndForces.from_pretrained(tmp_path / "student")
    for name, value in student.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], value, msg=name)


def test_torch_compile_refuses_a_student_whose_forces_are_a_gradient(tmp_path):
    """Training on -dE/dx forces is a double backward, which torch.compile cannot run: the error says so at once, not
    a traceback from deep in AOT autograd at the first step."""
    rows = load_qm9_xtb()["train"].select(range(8))
    student = build_energy_model(
        {"model_type": "molformer_schnet", "hidden_size": 16, "num_filters": 16, "num_layers": 2, "num_rbf": 8},
        energy_statistics(rows),
    )
    model = DistillationModel(student, {"energy_forces": build_objective("energy_forces", None, student.config)})
    args = training_args(tmp_path / "run", max_steps=1, torch_compile_backend="eager")
    with pytest.raises(ValueError, match=r"torch_compile cannot train SchNetForEnergyAndForces: its forces are -dE/dx"):
        DistillationTrainer(model=model, args=args, data_collator=SingleModelPointCloudCollator(), train_dataset=rows)
