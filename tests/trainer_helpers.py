"""What the DistillationTrainer tests share: tiny-run training arguments, and the check that a run with a teacher
cache trained exactly as the run with the live teacher did."""

import pytest
import torch
from transformers import TrainingArguments


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
