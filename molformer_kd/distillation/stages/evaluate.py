"""The `evaluate` stage: the task's metrics of a saved model on one split, written to `metrics.json`."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from ..checkpoints import atomic_write_text, barrier
from ..tasks import is_checkpoint_dir
from .base import Planner, RunPlan, Stage

if TYPE_CHECKING:
    from datasets import DatasetDict

METRICS_FILE = "metrics.json"


def metrics_table(model: str, split: str, metrics: dict[str, float]) -> str:
    """The evaluate stage's metrics as a small text table for the terminal."""
    width = max(len(name) for name in metrics)
    rows = [
        f"  {name:<{width}}  {value:.4g}" if isinstance(value, float) else f"  {name:<{width}}  {value}"
        for name, value in sorted(metrics.items())
    ]
    return "\n".join([f"evaluate {model} on {split!r}:", *rows])


class EvaluateStage(Stage):
    name = "evaluate"
    trains = False

    def plan(self, planner: Planner) -> None:
        run = planner.run
        source = run.stage_args.evaluate_name_or_path or planner.last_student
        if source is None and run.stage_dir("teacher") in planner.produced:
            source = run.stage_dir("teacher")  # a teacher-only run ([teacher, evaluate]) tests its teacher
        if source is None:
            source = next(
                (run.stage_dir(s) for s in ("finetune", "distill", "teacher") if is_checkpoint_dir(run.stage_dir(s))),
                run.stage_dir("finetune"),
            )
        self.student_source = planner.existing_or_produced(source, "model to evaluate", "set evaluate_name_or_path")
        if self.student_source not in planner.produced:
            planner.model_config(self.student_source, None, "model to evaluate")
        # The evaluate stage only predicts: periodic evaluation settings of the training stages do not apply to it.
        self.prediction_args = run.stage_training_args(
            self.name, self.output_dir, eval_strategy="no", load_best_model_at_end=False
        )

    def run(self, run: RunPlan, records: DatasetDict) -> dict:
        split = run.stage_args.evaluate_split
        if split not in records:
            raise ValueError(f"evaluate: the dataset has no split {split!r}; it has {list(records)}")
        args = self.prediction_args
        model = run.kind.auto_class.from_pretrained(self.student_source)
        processor = run.kind.load_processor(self.student_source)
        try:
            results = run.kind.evaluate(model, processor, records[split], args, split)
        except ValueError as error:
            raise ValueError(f"evaluate {self.student_source}: {error}") from error
        summary = {"stage": self.name, "model": self.student_source, "split": split, "metrics": results["metrics"]}
        if args.should_save:
            atomic_write_text(os.path.join(self.output_dir, METRICS_FILE), json.dumps(summary, indent=2))
            print(metrics_table(self.student_source, split, results["metrics"][split]), flush=True)
        barrier()
        return {**summary, **results}
