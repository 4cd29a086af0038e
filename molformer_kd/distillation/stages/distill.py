"""The `distill` stage: a student trained from a frozen teacher under the configured objectives (CCMD, ST-KD, D&D,
KD-GNN, plus the task loss when `task` is among them)."""

from __future__ import annotations

import copy
import os
from typing import TYPE_CHECKING

from ...tokenization.collators import PointCloudCollator
from ..registry import get_objective
from ..tasks.base import checkpoint_has_weights
from ..teacher_cache import cached_fields, check_cacheable_collator, point_cloud_targets
from ..trainer import DistillationModel
from .base import Planner, RunPlan, Stage, train_and_export
from .models import build_objectives, new_model

if TYPE_CHECKING:
    from datasets import DatasetDict
    from torch import nn
    from transformers import PretrainedConfig


def reads_teacher_predictions(objective_specs: dict) -> bool:
    return any("logits" in get_objective(name).teacher_outputs_needed for name in objective_specs)


class DistillStage(Stage):
    name = "distill"
    writes_student = True
    objectives: dict | None = None
    teacher_cache_dir: str | None = None

    def plan(self, planner: Planner) -> None:
        run = planner.run
        model_args, distill_args, kind = run.model_args, run.distill_args, run.kind
        if not distill_args.objectives:
            raise ValueError(f"stage 'distill' needs objectives, e.g. {{'{kind.task_objective}': {{}}, ...}}")
        default_teacher = run.stage_dir("denoise" if "denoise" in run.stage_args.stages else "teacher")
        self.teacher_source = planner.existing_or_produced(
            model_args.teacher_name_or_path or default_teacher,
            "teacher",
            "run the teacher (or denoise) stage first or set teacher_name_or_path",
        )
        if model_args.student_name_or_path is not None:
            self.student_source = planner.existing_or_produced(
                model_args.student_name_or_path, "student", "fix student_name_or_path"
            )
        elif model_args.student_config is None:
            raise ValueError("stage 'distill' needs student_config (a new student) or student_name_or_path")
        teacher_config = planner.model_config(
            self.teacher_source, model_args.teacher_config, "teacher", kind.teacher_auto_class
        )
        student_config = planner.model_config(self.student_source, model_args.student_config, "student")
        objectives, _ = build_objectives(kind, distill_args.objectives, teacher_config, student_config)
        self.objectives = distill_args.objectives
        if reads_teacher_predictions(self.objectives):
            self._check_teacher_predicts(planner)
        if distill_args.teacher_cache:
            self.teacher_cache_dir = self._plan_teacher_cache(run, objectives, teacher_config, student_config)
        unknown_weights = sorted(set(distill_args.initial_stage_weights) - set(distill_args.objectives))
        if unknown_weights:
            raise ValueError(f"initial_stage_weights name objectives that are not configured: {unknown_weights}")

    @staticmethod
    def _plan_teacher_cache(
        run: RunPlan, objectives: dict, teacher_config: PretrainedConfig, student_config: PretrainedConfig
    ) -> str:
        """Refuse at start-up what a teacher cache cannot reproduce: no teacher to cache, outputs a cache does not
        hold, or teacher batches that are not a fixed function of the row (the task's paired collator decides)."""
        if not any(getattr(o, "needs_teacher", True) for o in objectives.values()):
            raise ValueError("teacher_cache: true, but no objective of the distill stage reads the teacher")
        cached_fields(set().union(*(getattr(o, "teacher_outputs_needed", frozenset()) for o in objectives.values())))
        kind = run.kind
        # new_processor may set config entries (SMILES vocabulary): work on copies, the plan's configs stay as read.
        teacher_processor = kind.new_processor(copy.deepcopy(teacher_config))
        student_processor = kind.new_processor(copy.deepcopy(student_config))
        collator = kind.paired_collator(teacher_processor, student_processor, False)
        check_cacheable_collator(collator)
        if isinstance(collator, PointCloudCollator):
            point_cloud_targets(objectives.values())
        return run.distill_args.teacher_cache_dir or os.path.join(run.training_args.output_dir, "teacher_cache")

    def _check_teacher_predicts(self, planner: Planner) -> None:
        """An objective reads the teacher's predictions: refuse at start-up a teacher without a trained head (the
        denoise stage's, or a saved backbone)."""
        source = self.teacher_source
        if source in planner.produced:
            head = source != planner.run.stage_dir("denoise")
        else:
            head = checkpoint_has_weights(source, "head.")
        if not head:
            raise ValueError(
                f"teacher {source!r}: the objectives {sorted(self.objectives)} read the teacher's predictions, but it "
                "has no trained prediction head; use a teacher trained on the labels (the teacher stage)"
            )

    def _load_teacher(self, kind, objective_specs: dict) -> nn.Module:
        """The teacher as the objectives read it: its backbone, or the whole model with its trained head when an
        objective reads its predictions (`logits`)."""
        if reads_teacher_predictions(objective_specs):
            return kind.auto_class.from_pretrained(self.teacher_source)
        return kind.teacher_auto_class.from_pretrained(self.teacher_source)

    def summary(self) -> dict:
        return {
            **super().summary(),
            "teacher": self.teacher_source,
            "objectives": self.objectives,
            "teacher_cache": self.teacher_cache_dir,
        }

    def run(self, run: RunPlan, records: DatasetDict) -> dict:
        kind, distill_args = run.kind, run.distill_args
        teacher = self._load_teacher(kind, distill_args.objectives)
        teacher_processor = kind.load_processor(self.teacher_source)
        if self.student_source is not None:
            student = kind.auto_class.from_pretrained(self.student_source)
            processor = kind.load_processor(self.student_source)
        else:
            student, processor = new_model(
                kind, run.model_args.student_config, "student", kind.statistics(records["train"])
            )
        objectives, weights = build_objectives(kind, distill_args.objectives, teacher.config, student.config)
        with_labels = kind.task_objective in objectives

        train_and_export(
            self,
            DistillationModel(student, objectives, weights),
            records,
            kind.paired_collator(teacher_processor, processor, with_labels),
            processor,
            kind.compute_metrics(student) if with_labels else None,
            teacher=teacher,
            initial_stage_epochs=distill_args.initial_stage_epochs,
            initial_stage_weights=distill_args.initial_stage_weights,
            teacher_cache_dir=self.teacher_cache_dir,
        )
        return self.summary()
