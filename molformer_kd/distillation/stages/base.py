"""What every stage shares: the plan of a run, the `Stage` base class, and one fault-safe way to train and export.

A stage is planned at start-up (`Stage.plan`: its settings and the checkpoints it reads are checked before any data
is loaded) and run later (`Stage.run`). A training stage writes `{output_dir}/{stage}`: `checkpoint-*` folders, then
the exported model (`save_pretrained`, safetensors, with its featurizer or tokenizer) and last a `STAGE_COMPLETE`
marker (`checkpoints.py`). With several processes, every process waits until the export is in place before the next
stage reads it. `resume_from_checkpoint: latest` continues from the last complete checkpoint, and is a no-op (said
in the log) for a stage that already finished.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from safetensors.torch import load_file
from transformers import AutoConfig, HfArgumentParser, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import ExportableState, TrainerControl, TrainerState
from transformers.utils import logging

from ...data.domain import DOMAIN_CONFIG_KEY, ApplicabilityDomain
from ...modeling.modeling_utils import ValidatingCollator
from ..checkpoints import (
    barrier,
    clear_stage,
    last_complete_checkpoint,
    read_stage_marker,
    remove_incomplete_checkpoints,
    write_stage_marker,
)
from ..config import ConfigError, RunArguments, check_training_values
from ..tasks import TaskKind, build_config, check_model_fits_task, is_checkpoint_dir
from ..trainer import DistillationModel, DistillationTrainer

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from datasets import Dataset, DatasetDict
    from transformers import EvalPrediction, PretrainedConfig, PreTrainedModel

    from ..arguments import DataArguments, DistillationArguments, ModelArguments, StageArguments

logger = logging.get_logger(__name__)

RESUME_LATEST = ("latest", "last", "true", "True")


def stage_training_args(raw_training: dict, overrides: dict, stage: str, output_dir: str) -> TrainingArguments:
    """The TrainingArguments of one stage: the config's keys, then the stage's overrides (both checked)."""
    check_training_values(overrides, f"stage_overrides.{stage}.")
    values = {"report_to": "none", **raw_training, **overrides, "output_dir": output_dir}
    # The Trainer never pushes by itself: the run pushes the final student with its model card.
    values["push_to_hub"] = False
    try:
        (args,) = HfArgumentParser(TrainingArguments).parse_dict(values, allow_extra_keys=False)
    except (ValueError, TypeError) as error:
        message = str(error).splitlines()[0]
        raise ConfigError(f"stage {stage!r}: bad TrainingArguments overrides {sorted(overrides)}: {message}") from error
    args.remove_unused_columns = False
    return args


@dataclass
class Planner:
    """Start-up bookkeeping shared by the stages' `plan`: which stage folders this run writes before the current
    stage, the last student written, and the model configs (existing checkpoints or new ones) checked against the
    task."""

    run: RunPlan
    produced: set[str] = field(default_factory=set)
    last_student: str | None = None

    def existing_or_produced(self, path: str, what: str, hint: str) -> str:
        if path in self.produced or is_checkpoint_dir(path):
            return path
        raise ValueError(f"missing {what} checkpoint {path!r} (no config.json there): {hint}")

    def model_config(
        self, source: str | None, spec: dict | None, role: str, auto_class: type | None = None
    ) -> PretrainedConfig:
        """The config of a checkpoint (existing now) or of a new model (`spec`), checked against the task."""
        if source is not None and source not in self.produced:
            config = AutoConfig.from_pretrained(source)
            role = f"{role} checkpoint {source!r}"
        else:
            config = build_config(spec, role)
            role = f"{role}_config"
        check_model_fits_task(self.run.kind, config, role, auto_class)
        return config


class Stage:
    """One stage of a run. Subclasses set `name` (and `trains`) and implement `plan` and `run`.

    `plan` checks the stage's settings and sets the checkpoints it reads (`teacher_source`, `student_source`);
    `run` trains or tests and returns a summary (paths, metrics) for the log and the model card.
    """

    name: ClassVar[str]
    trains: ClassVar[bool] = True
    writes_student: ClassVar[bool] = False  # a stage whose model is the run's student (what evaluate/push read)

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir
        self.training_args: TrainingArguments | None = None
        self.teacher_source: str | None = None
        self.student_source: str | None = None
        # With `load_best_model_at_end`: the checkpoint exported, its step and its validation metric.
        self.best_checkpoint: dict | None = None
        # Training wall seconds summed over every run of the stage (resumes included), when it trained.
        self.train_wall_s: float | None = None

    def plan(self, planner: Planner) -> None:
        raise NotImplementedError

    def run(self, run: RunPlan, records: DatasetDict) -> dict:
        raise NotImplementedError

    def summary(self) -> dict:
        summary = {"stage": self.name, "output_dir": self.output_dir}
        if self.best_checkpoint is not None:
            summary["best_checkpoint"] = self.best_checkpoint
        if self.train_wall_s is not None:
            summary["train_wall_s"] = self.train_wall_s
        return summary

    def execute(self, run: RunPlan, records: DatasetDict) -> dict:
        """`run`, unless the run resumes and this training stage already finished (then a no-op, said in the log)."""
        if self.training_args is not None:
            if self.training_args.resume_from_checkpoint in RESUME_LATEST:
                marker = read_stage_marker(self.output_dir)
                if marker is not None:
                    logger.warning(
                        "stage %s already finished (%s, step %s): nothing to resume",
                        self.name,
                        self.output_dir,
                        marker.get("global_step"),
                    )
                    return {**self.summary(), **marker.get("summary", {})}
            set_seed(self.training_args.seed)
        return self.run(run, records)


@dataclass
class RunPlan:
    """A checked run: its arguments, its task kind and its stages in order."""

    args: RunArguments
    kind: TaskKind
    stages: list[Stage] = field(default_factory=list)

    @property
    def model_args(self) -> ModelArguments:
        return self.args.model

    @property
    def data_args(self) -> DataArguments:
        return self.args.data

    @property
    def distill_args(self) -> DistillationArguments:
        return self.args.distill

    @property
    def stage_args(self) -> StageArguments:
        return self.args.stage

    @property
    def training_args(self) -> TrainingArguments:
        return self.args.training

    def stage_dir(self, name: str) -> str:
        return os.path.join(self.args.training.output_dir, name)

    def stage_training_args(self, name: str, output_dir: str, **defaults) -> TrainingArguments:
        overrides = {**defaults, **self.args.stage.stage_overrides.get(name, {})}
        return stage_training_args(self.args.raw_training, overrides, name, output_dir)


def _resume_point(stage: Stage) -> str | None:
    """The checkpoint to resume from (None: train from scratch). Half-written checkpoints are deleted first; a fresh
    (not resumed) run clears the stage's old checkpoints and marker, so that a later `latest` never resumes from a
    different run."""
    args = stage.training_args
    resume = args.resume_from_checkpoint
    if args.should_save:
        if resume in RESUME_LATEST:
            for path in remove_incomplete_checkpoints(stage.output_dir):
                logger.warning(
                    "stage %s: removed the incomplete checkpoint %s (interrupted while writing)", stage.name, path
                )
        elif resume is None:
            removed = clear_stage(stage.output_dir)
            if removed:
                logger.warning(
                    "stage %s: starting afresh; removed %d checkpoint(s) of an earlier run", stage.name, removed
                )
    barrier()
    if resume in RESUME_LATEST:
        resume = last_complete_checkpoint(stage.output_dir)
        where = f"resuming from {resume}" if resume else "no checkpoint, from the start"
        logger.info("stage %s: %s", stage.name, where)
    return resume


class TrainingClock(TrainerCallback, ExportableState):
    """Training wall seconds of a stage summed over the runs it took: the total so far is saved in every checkpoint's
    trainer state (`stateful_callbacks`) and read back when the stage resumes, so a stage that was killed and resumed
    reports about what an uninterrupted run takes (steps redone after the last checkpoint are counted once)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.started: float | None = None
        self.ended: float | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # On a resume the Trainer has just loaded the checkpoint's state, with the clock's total at that checkpoint.
        saved = state.stateful_callbacks.get(type(self).__name__) or {}
        self.seconds = float(saved.get("args", {}).get("seconds", self.seconds))
        self.started, self.ended = time.perf_counter(), None

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.ended = time.perf_counter()

    def total(self) -> float:
        if self.started is None:
            return self.seconds
        return self.seconds + (self.ended or time.perf_counter()) - self.started

    def state(self) -> dict:
        return {"args": {"seconds": self.total()}, "attributes": {}}


def saved_training_seconds(state: TrainerState) -> float | None:
    """The training wall seconds a checkpoint's trainer state recorded (None before the clock existed)."""
    seconds = (state.stateful_callbacks or {}).get(TrainingClock.__name__, {}).get("args", {}).get("seconds")
    return None if seconds is None else float(seconds)


def train_and_export(
    stage: Stage,
    model: DistillationModel,
    records: DatasetDict,
    collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
    processor: Any,
    compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None = None,
    teacher: PreTrainedModel | None = None,
    **trainer_kwargs,
) -> DistillationTrainer:
    """Train `model` on `records["train"]` (resuming as configured), export the student into the stage folder, then
    mark the stage finished. Every process returns only when the export is readable."""
    args = stage.training_args
    if args.device.type != "cpu":
        # A forward checks input values itself only on CPU tensors (reading them on a GPU would stall it), so on an
        # accelerator the batches are checked where they are built, on the CPU.
        teacher_config = teacher.config if teacher is not None else None
        collator = ValidatingCollator(collator, student_config=model.student.config, teacher_config=teacher_config)
    trainer_kwargs["callbacks"] = [TrainingClock(), *trainer_kwargs.get("callbacks", [])]
    trainer = DistillationTrainer(
        model=model,
        args=args,
        teacher=teacher,
        data_collator=collator,
        train_dataset=records["train"],
        eval_dataset=records.get("validation") if args.eval_strategy != "no" else None,
        processing_class=processor,
        compute_metrics=compute_metrics,
        **trainer_kwargs,
    )
    resume = _resume_point(stage)
    if resume is not None and _finished_training(resume):
        # The last checkpoint is the end of training (killed before the export): export its weights (the best
        # checkpoint's with load_best_model_at_end, as the uninterrupted run would), train no more.
        trainer.state = TrainerState.load_from_json(os.path.join(resume, TRAINER_STATE_NAME))
        exported = _best_checkpoint_path(trainer) or resume
        logger.warning("stage %s: %s is the last training step; exporting %s", stage.name, resume, exported)
        trainer.model.load_state_dict(load_file(os.path.join(exported, "model.safetensors")))
        metrics = {}
        stage.train_wall_s = saved_training_seconds(trainer.state)
    else:
        metrics = trainer.train(resume_from_checkpoint=resume).metrics
        # The Trainer may have swapped the clock for a restored copy (`restore_callback_states_from_checkpoint`).
        (clock,) = (c for c in trainer.callback_handler.callbacks if isinstance(c, TrainingClock))
        stage.train_wall_s = clock.total()
        metrics["train_wall_s"] = stage.train_wall_s  # train_runtime counts this run only, not the runs it resumed
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
    record_applicability_domain(model.student, records["train"])
    trainer.save_student(stage.output_dir)
    stage.best_checkpoint = _best_checkpoint_record(trainer)
    if args.should_save:
        write_stage_marker(stage.output_dir, {"global_step": trainer.state.global_step, "summary": stage.summary()})
    barrier()
    return trainer


def record_applicability_domain(model: PreTrainedModel, train_rows: Dataset) -> None:
    """Store the applicability domain of the training split in the model's config (`config.applicability_domain`,
    data/domain.py), so that its predictions can be flagged wherever it is loaded: the SMILES envelope for graph and
    SMILES models, the elements and heavy-atom counts of the training geometries for point-cloud models (energies and
    forces), whose ASE calculator refuses other elements."""
    modality = getattr(model, "input_modality", None)
    source = f"training split ({len(train_rows)} rows)"
    if modality in ("graph", "smiles") and "smiles" in train_rows.column_names:
        domain = ApplicabilityDomain.from_smiles(train_rows["smiles"], source=source)
    elif modality == "point_cloud" and "atomic_numbers" in train_rows.column_names:
        domain = ApplicabilityDomain.from_atomic_numbers(train_rows["atomic_numbers"], source=source)
    else:
        return
    setattr(model.config, DOMAIN_CONFIG_KEY, domain.to_dict())


def _best_checkpoint_path(trainer: DistillationTrainer) -> str | None:
    """The checkpoint `load_best_model_at_end` picked (None without it). The state records it relative to where the
    run was launched; it lies in the stage folder either way."""
    best = trainer.state.best_model_checkpoint
    if not trainer.args.load_best_model_at_end or best is None:
        return None
    return os.path.join(trainer.args.output_dir, os.path.basename(best))


def _best_checkpoint_record(trainer: DistillationTrainer) -> dict | None:
    """What the stage marker and summary say about the exported checkpoint when it was picked on validation."""
    path = _best_checkpoint_path(trainer)
    if path is None:
        return None
    metric = trainer.args.metric_for_best_model or "loss"
    return {
        "checkpoint": path,
        "global_step": trainer.state.best_global_step,
        "metric": metric if metric.startswith("eval_") else f"eval_{metric}",
        "value": trainer.state.best_metric,
        "greater_is_better": trainer.args.greater_is_better,
    }


def _finished_training(checkpoint: str) -> bool:
    state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))
    return bool(state.max_steps) and state.global_step >= state.max_steps
