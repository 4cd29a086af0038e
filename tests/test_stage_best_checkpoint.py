"""A distill run end to end with `teacher_cache: true` and the checkpoint picked on validation
(`load_best_model_at_end`): the exported student is the best checkpoint's, and the stage records which one."""

import json
import os

import pytest
import torch
from distill_cli_helpers import FAST, log_history, write_config
from safetensors.torch import load_file
from transformers import TrainerCallback

from molformer_kd import distill_command as distill_run
from molformer_kd.data import load_embedded_qm9
from molformer_kd.distillation.checkpoints import STAGE_COMPLETE, read_stage_marker
from molformer_kd.distillation.stages.base import Stage, stage_training_args, train_and_export
from molformer_kd.distillation.tasks import PropertyTask, build_config, supervised

PICK_ON_VALIDATION = {
    "max_steps": 4,
    "eval_strategy": "steps",
    "eval_steps": 1,
    "save_strategy": "steps",
    "save_steps": 1,
    "load_best_model_at_end": True,
    "metric_for_best_model": "gap_mae",
    "greater_is_better": False,
}


class WorseAfterStep(TrainerCallback):
    """Shifts every student weight after optimizer step `step`: the later checkpoints are worse by construction."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                for parameter in model.student.parameters():
                    parameter.add_(3.0)


class SupervisedStage(Stage):
    name = "teacher"


def test_load_best_model_at_end_exports_the_best_checkpoint(tmp_path):
    """Evaluation and a checkpoint every step, the student spoiled after step 2: the export is checkpoint 1 or 2
    (whichever has the lower validation MAE), the stage summary and marker name it and its metric."""
    records = load_embedded_qm9(cache_dir=tmp_path / "qm9")
    records = {"train": records["train"].select(range(16)), "validation": records["validation"].select(range(8))}
    task = PropertyTask(["gap"])
    stage = SupervisedStage(str(tmp_path / "stage"))
    training = {
        "use_cpu": True,
        "seed": 0,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "disable_tqdm": True,
        "report_to": "none",
    }
    stage.training_args = stage_training_args(training, PICK_ON_VALIDATION, stage.name, stage.output_dir)
    config = build_config(
        {"model_type": "molformer_gin", "preset": "tiny"}, "student", **task.statistics(records["train"])
    )
    student = task.auto_class.from_config(config)
    processor = task.new_processor(config)
    trainer = train_and_export(
        stage,
        supervised(task, student),
        records,
        task.collator(processor),
        processor,
        task.compute_metrics(student),
        callbacks=[WorseAfterStep(3)],
    )

    evaluations = {e["step"]: e["eval_gap_mae"] for e in trainer.state.log_history if "eval_gap_mae" in e}
    assert sorted(evaluations) == [1, 2, 3, 4]
    assert max(evaluations[3], evaluations[4]) > 10 * min(evaluations[1], evaluations[2])  # the spoiling worked
    best_step = min(evaluations, key=evaluations.get)
    assert best_step in (1, 2)
    record = stage.summary()["best_checkpoint"]
    assert record["global_step"] == best_step and record["metric"] == "eval_gap_mae"
    assert record["value"] == pytest.approx(evaluations[best_step])
    assert read_stage_marker(stage.output_dir)["summary"]["best_checkpoint"] == json.loads(json.dumps(record))
    checkpoint = load_file(tmp_path / "stage" / f"checkpoint-{best_step}" / "model.safetensors")

    def assert_exported_is_best():
        exported = load_file(tmp_path / "stage" / "model.safetensors")
        assert exported.keys() == {k.removeprefix("student.") for k in checkpoint if k.startswith("student.")}
        for name, value in exported.items():
            assert value.equal(checkpoint[f"student.{name}"]), name

    assert_exported_is_best()

    # Killed after the last checkpoint, before the export: resuming exports the best checkpoint too, not the last.
    (tmp_path / "stage" / "model.safetensors").unlink()
    (tmp_path / "stage" / STAGE_COMPLETE).unlink()
    stage.training_args = stage_training_args(
        training, {**PICK_ON_VALIDATION, "resume_from_checkpoint": "latest"}, stage.name, stage.output_dir
    )
    student = task.auto_class.from_config(config)
    train_and_export(
        stage, supervised(task, student), records, task.collator(processor), processor, task.compute_metrics(student)
    )
    assert_exported_is_best()
    assert read_stage_marker(stage.output_dir)["summary"]["best_checkpoint"]["global_step"] == best_step


def test_distill_with_teacher_cache_exports_the_best_checkpoint(tmp_path):
    path = write_config(
        tmp_path,
        "ccmd_graphormer3d_to_gin_tiny.yaml",
        stages=["teacher", "distill"],
        teacher_cache=True,
        max_eval_samples=16,
        stage_overrides={"distill": PICK_ON_VALIDATION},
        **FAST,
    )
    summaries = distill_run.main(["--config", str(path)])
    stage_dir = tmp_path / "run" / "distill"
    evaluations = {e["step"]: e["eval_gap_mae"] for e in log_history(stage_dir) if "eval_gap_mae" in e}
    assert sorted(evaluations) == [1, 2, 3, 4]
    best_step = min(evaluations, key=evaluations.get)

    best = summaries[-1]["best_checkpoint"]
    assert best["global_step"] == best_step
    assert best["metric"] == "eval_gap_mae" and best["value"] == pytest.approx(evaluations[best_step])
    assert best["checkpoint"] == str(stage_dir / f"checkpoint-{best_step}")
    assert read_stage_marker(stage_dir)["summary"]["best_checkpoint"] == json.loads(json.dumps(best))

    # The export is the best checkpoint's student (the DistillationModel's `student.` weights), not the last step's.
    checkpoint = load_file(stage_dir / f"checkpoint-{best_step}" / "model.safetensors")
    exported = load_file(stage_dir / "model.safetensors")
    assert exported.keys() == {k.removeprefix("student.") for k in checkpoint if k.startswith("student.")}
    for name, value in exported.items():
        assert value.equal(checkpoint[f"student.{name}"]), name

    # The teacher's outputs on the train and validation rows were cached once, under the run's folder.
    cache_files = sorted(p.name for p in (tmp_path / "run" / "teacher_cache").iterdir())
    assert len(cache_files) == 4 and summaries[-1]["teacher_cache"] == str(tmp_path / "run" / "teacher_cache")
    assert (stage_dir / STAGE_COMPLETE).is_file()


def test_teacher_cache_is_planned_for_energy_forces(tmp_path):
    """Energy/force distillation caches its objectives' teacher targets: the distill stage is planned with the cache
    folder. A distill stage none of whose objectives reads the teacher is refused while planning, before any data
    is loaded or any stage trains."""
    path = write_config(tmp_path, "gnn_kd_painn_to_painn_tiny.yaml", stages=["teacher", "distill"], teacher_cache=True)
    distill = next(
        stage for stage in distill_run.plan_from_cli(["--config", str(path)]).stages if stage.name == "distill"
    )
    assert distill.teacher_cache_dir == os.path.join(str(tmp_path / "run"), "teacher_cache")
    path = write_config(
        tmp_path,
        "gnn_kd_painn_to_painn_tiny.yaml",
        stages=["teacher", "distill"],
        objectives={"energy_forces": {"weight": 1.0}},
        teacher_cache=True,
    )
    with pytest.raises(ValueError, match="no objective of the distill stage reads the teacher"):
        distill_run.plan_from_cli(["--config", str(path)])
    assert not (tmp_path / "run").exists()


def test_teacher_only_run_evaluates_its_teacher_picked_on_validation(tmp_path):
    """`stages: [teacher, evaluate]` with checkpoints picked on validation: the evaluate stage tests the teacher this
    run trained (there is no student), and it predicts without the training stages' periodic evaluation."""
    path = write_config(
        tmp_path,
        "ccmd_graphormer3d_to_gin_tiny.yaml",
        stages=["teacher", "evaluate"],
        max_eval_samples=16,
        stage_overrides={"teacher": PICK_ON_VALIDATION},
        **{**FAST, **{key: PICK_ON_VALIDATION[key] for key in ("eval_strategy", "save_strategy")}},
        load_best_model_at_end=True,
        metric_for_best_model="gap_mae",
    )
    summaries = distill_run.main(["--config", str(path)])
    assert summaries[-1]["stage"] == "evaluate"
    assert summaries[-1]["model"] == str(tmp_path / "run" / "teacher")
    assert summaries[-1]["metrics"]["test"]["gap_mae"] > 0
