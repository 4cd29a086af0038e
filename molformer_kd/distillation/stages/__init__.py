"""The stages of a distillation run, one class per stage: teacher, denoise, distill, finetune, evaluate.

`plan_run` checks a whole run at start-up (stage settings, model configs, objectives and their layer pairs,
checkpoints that must already exist, per-stage TrainingArguments) before any data is loaded; `run_stages` then runs
the planned stages in order. Stages chain through `{output_dir}/{stage}`: `distill` reads `{output_dir}/teacher`
(or `/denoise`), `finetune` starts from `{output_dir}/distill`, `evaluate` tests the last student written; any of
them can be pointed elsewhere with the `*_name_or_path` arguments. What differs between tasks (data, heads,
batches, metrics) is the run's task kind (`distillation.tasks`); the stages are task-agnostic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transformers.utils import logging

from ..config import RunArguments
from ..tasks import task_kind
from .base import Planner, RunPlan, Stage
from .denoise import DenoiseStage
from .distill import DistillStage
from .evaluate import METRICS_FILE, EvaluateStage
from .finetune import FinetuneStage
from .teacher import TeacherStage

if TYPE_CHECKING:
    from datasets import DatasetDict

__all__ = ["METRICS_FILE", "STAGE_CLASSES", "RunPlan", "Stage", "plan_run", "run_stages"]

logger = logging.get_logger(__name__)

STAGE_CLASSES: dict[str, type[Stage]] = {
    stage.name: stage for stage in (TeacherStage, DenoiseStage, DistillStage, FinetuneStage, EvaluateStage)
}


def plan_run(args: RunArguments) -> RunPlan:
    """Check the whole run before anything is loaded or trained; raise ValueError naming the bad setting."""
    run = RunPlan(args, task_kind(args.data))
    planner = Planner(run)
    for name in args.stage.stages:
        stage = STAGE_CLASSES[name](run.stage_dir(name))
        if stage.trains:
            stage.training_args = run.stage_training_args(name, stage.output_dir)
        stage.plan(planner)
        if stage.trains:
            planner.produced.add(stage.output_dir)
        if stage.writes_student:
            planner.last_student = stage.output_dir
        run.stages.append(stage)
    return run


def run_stages(run: RunPlan, records: DatasetDict) -> list[dict]:
    """Run the planned stages in order; one summary (paths, metrics) per stage."""
    summaries = []
    for stage in run.stages:
        summary = stage.execute(run, records)
        logger.info("stage %s done: %s", stage.name, stage.output_dir)
        summaries.append(summary)
    return summaries
