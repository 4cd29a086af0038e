"""The `denoise` stage (D&D stage 1): a 3D model pretrained to predict the noise added to its coordinates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...modeling.auto import AutoModelForDenoising
from ..tasks import supervised
from .base import Planner, RunPlan, Stage, train_and_export
from .models import new_model

if TYPE_CHECKING:
    from datasets import DatasetDict


class DenoiseStage(Stage):
    name = "denoise"

    def plan(self, planner: Planner) -> None:
        config = planner.model_config(None, planner.run.model_args.teacher_config, "teacher")
        if type(config) not in AutoModelForDenoising._model_mapping or not hasattr(
            planner.run.kind, "denoising_collator"
        ):
            raise ValueError(f"stage 'denoise': model_type {config.model_type!r} has no denoising head")
        if getattr(config, "geometry", "3d") != "3d":
            raise ValueError(
                f"stage 'denoise' denoises 3D coordinates; teacher_config has geometry {config.geometry!r}"
            )

    def run(self, run: RunPlan, records: DatasetDict) -> dict:
        kind = run.kind
        model, processor = new_model(
            kind, run.model_args.teacher_config, "teacher", kind.statistics(records["train"]), AutoModelForDenoising
        )
        collator = kind.denoising_collator(processor, run.distill_args.noise_sigma)
        train_and_export(self, supervised(kind, model), records, collator, processor)
        return self.summary()
