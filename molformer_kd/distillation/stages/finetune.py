"""The `finetune` stage: a student (distilled, or new: the no-distillation baseline) trained on the task's labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transformers import AutoConfig
from transformers.utils import logging

from ..tasks import supervised
from .base import Planner, RunPlan, Stage, train_and_export
from .models import new_model

if TYPE_CHECKING:
    from typing import Any

    from datasets import DatasetDict
    from transformers import PretrainedConfig, PreTrainedModel

logger = logging.get_logger(__name__)


def predicts_same_task(checkpoint_config: PretrainedConfig, statistics: dict) -> bool:
    """Whether a checkpoint's head already predicts the labels and problem type in `statistics` (the task's head
    config entries). A task whose entries name neither (energies and forces) always keeps its head."""
    checkpoint_task = {
        "label_names": list(getattr(checkpoint_config, "label_names", None) or []),
        # A head reads a missing problem_type as regression (heads.py).
        "problem_type": getattr(checkpoint_config, "problem_type", None) or "regression",
    }
    return all(statistics[key] == value for key, value in checkpoint_task.items() if key in statistics)


class FinetuneStage(Stage):
    name = "finetune"
    writes_student = True
    initialized_from = "scratch (student_config)"

    def plan(self, planner: Planner) -> None:
        run = planner.run
        model_args = run.model_args
        source = run.stage_dir("distill") if "distill" in run.stage_args.stages else model_args.student_name_or_path
        if source is None and model_args.student_config is not None:
            # The student trained alone from scratch: the no-distillation baseline of every comparison.
            planner.model_config(None, model_args.student_config, "student")
            return
        self.student_source = planner.existing_or_produced(
            source or run.stage_dir("distill"), "student", "run the distill stage first or set student_name_or_path"
        )
        self.initialized_from = self.student_source
        if self.student_source not in planner.produced:
            planner.model_config(self.student_source, None, "student")

    def summary(self) -> dict:
        return {**super().summary(), "initialized_from": self.initialized_from}

    def build_student(self, run: RunPlan, records: DatasetDict) -> tuple[PreTrainedModel, Any]:
        """(student, processor) the stage trains: new, or the checkpoint's with a task head for these labels."""
        kind = run.kind
        statistics = kind.statistics(records["train"])
        if self.student_source is None:
            student, processor = new_model(kind, run.model_args.student_config, "student", statistics)
        else:
            # The head takes this dataset's statistics. HF re-initialises only weights whose shape changed, so a head
            # that learned other labels (or the same names as another problem type) is drawn afresh here.
            checkpoint_config = AutoConfig.from_pretrained(self.student_source)
            student = kind.auto_class.from_pretrained(self.student_source, ignore_mismatched_sizes=True, **statistics)
            processor = kind.load_processor(self.student_source)
            if predicts_same_task(checkpoint_config, statistics):
                logger.info("finetune: %s already predicts these labels; its task head is kept", self.student_source)
            else:
                student.reset_task_head()
                logger.info(
                    "finetune: %s predicted %s (%s); new task head for %s (%s), backbone kept",
                    self.student_source,
                    getattr(checkpoint_config, "label_names", None),
                    getattr(checkpoint_config, "problem_type", None) or "regression",
                    statistics.get("label_names"),
                    statistics.get("problem_type"),
                )
        return student, processor

    def run(self, run: RunPlan, records: DatasetDict) -> dict:
        kind = run.kind
        student, processor = self.build_student(run, records)
        train_and_export(
            self,
            supervised(kind, student),
            records,
            kind.collator(processor),
            processor,
            kind.compute_metrics(student),
        )
        return self.summary()
