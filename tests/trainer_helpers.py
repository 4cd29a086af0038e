"""What the DistillationTrainer tests share: tiny-run training arguments, a four-step distillation run, and the check
that a run with a teacher cache trained exactly as the run with the live teacher did."""

import pytest
import torch
from transformers import TrainingArguments

from molformer_kd.distillation.trainer import DistillationTrainer


def training_args(output_dir, **overrides) -> TrainingArguments:
    values = {
        "output_dir": str(output_dir),
        "use_cpu": True,
        "seed": 0,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-2,
        "lr_scheduler_type": "constant",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        **overrides,
    }
    return TrainingArguments(**values)


def distill_four_steps(output_dir, model, teacher, collator, train, validation, cache_dir, **overrides):
    """Four training steps of `model` (a DistillationModel) from `teacher`, evaluated on `validation` every two in
    batches of 5 (another size than the cache's writes), with the teacher cache in `cache_dir` (None: the live
    teacher); returns the trainer."""
    overrides = {"per_device_eval_batch_size": 5, **overrides}
    args = training_args(output_dir, max_steps=4, eval_strategy="steps", eval_steps=2, **overrides)
    trainer = DistillationTrainer(
        model=model,
        args=args,
        teacher=teacher,
        data_collator=collator,
        train_dataset=train,
        eval_dataset=validation,
        teacher_cache_dir=cache_dir,
    )
    trainer.train()
    return trainer


def live_and_cached_runs(tmp_path, build, train, validation):
    """`distill_four_steps` twice from a fresh `build()` -> (DistillationModel, teacher, collator): with the live
    teacher, then with a teacher cache in `tmp_path / "cache"`; returns (live, cached) trainers."""

    def run(name, cache_dir):
        model, teacher, collator = build()
        return distill_four_steps(tmp_path / name, model, teacher, collator, train, validation, cache_dir)

    return run("live", None), run("cached", tmp_path / "cache")


def logged_losses(trainer) -> list[dict]:
    """Every logged entry without its timings, step counters and gradient norm."""
    skip = ("epoch", "step", "grad_norm")
    return [
        {k: v for k, v in entry.items() if k not in skip and "runtime" not in k and "per_second" not in k}
        for entry in trainer.state.log_history
    ]


def assert_trained_alike(cached, live, logged_component: str) -> None:
    """Equal logged train and eval losses (one of them `logged_component`) and equal final student weights."""
    live_losses, cached_losses = logged_losses(live), logged_losses(cached)
    assert len(live_losses) == len(cached_losses) and any(logged_component in e for e in live_losses)
    for ours, theirs in zip(cached_losses, live_losses):
        assert ours.keys() == theirs.keys()
        for key in theirs:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), key
    for name, value in live.model.student.state_dict().items():
        torch.testing.assert_close(cached.model.student.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)
