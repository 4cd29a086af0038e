"""The `teacher` stage: a new model (usually 3D) trained on the task's labels alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..tasks import supervised
from .base import Planner, RunPlan, Stage, train_and_export
from .models import new_model

if TYPE_CHECKING:
    from datasets import DatasetDict


class TeacherStage(Stage):
    name = "teacher"

    def plan(self, planner: Planner) -> None:
        planner.model_config(None, planner.run.model_args.teacher_config, "teacher")

    def run(self, run: RunPlan, records: DatasetDict) -> dict:
        kind = run.kind
        model, processor = new_model(kind, run.model_args.teacher_config, "teacher", kind.statistics(records["train"]))
        train_and_export(
            self, supervised(kind, model), records, kind.collator(processor), processor, kind.compute_metrics(model)
        )
        return self.summary()
