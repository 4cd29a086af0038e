"""Distillation objectives (named, weighted, composable), the DistillationTrainer and its arguments.

Importing this package registers every objective (`objectives`, `gnn_objectives`) with the registry, so
`get_objective(name)` knows them all. `stages` holds one class per stage of a run, `tasks` the task kinds (properties,
energies and forces), `config` reads and checks a run's config, `run` is the `distill` command, and `checkpoints`
keeps run files safe under kills, full disks and several processes.
"""

from . import gnn_objectives, objectives  # noqa: F401  (imports register the objectives)
from .arguments import DataArguments, DistillationArguments, ModelArguments, StageArguments
from .objectives import (
    CCMDObjective,
    DenoiseAndDistillObjective,
    STKDAttentionObjective,
    STKDFeatureObjective,
    TaskObjective,
    pair_layers,
)
from .registry import OBJECTIVES, DistillationObjective, build_objective, get_objective, register_objective
from .trainer import DistillationModel, DistillationOutput, DistillationTrainer, InitialStageCallback

__all__ = [
    "OBJECTIVES",
    "CCMDObjective",
    "DataArguments",
    "DenoiseAndDistillObjective",
    "DistillationArguments",
    "DistillationModel",
    "DistillationObjective",
    "DistillationOutput",
    "DistillationTrainer",
    "InitialStageCallback",
    "ModelArguments",
    "STKDAttentionObjective",
    "STKDFeatureObjective",
    "StageArguments",
    "TaskObjective",
    "build_objective",
    "get_objective",
    "pair_layers",
    "register_objective",
]
