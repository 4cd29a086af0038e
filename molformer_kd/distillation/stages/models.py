"""New models for the stages: a config from the run's spec, the task's head, and a matching new processor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import OBJECTIVES, build_objective, get_objective
from ..tasks import TaskKind, build_config

if TYPE_CHECKING:
    from typing import Any

    from torch import nn
    from transformers import PretrainedConfig, PreTrainedModel


def new_model(
    kind: TaskKind, spec: dict, role: str, statistics: dict, auto_class: type | None = None
) -> tuple[PreTrainedModel, Any]:
    """A freshly initialised model of the task (or of `auto_class`) and its new processor (None for point clouds)."""
    config = build_config(spec, role, **statistics)
    processor = kind.new_processor(config)
    return (auto_class or kind.auto_class).from_config(config), processor


def build_objectives(
    kind: TaskKind,
    objective_specs: dict,
    teacher_config: PretrainedConfig | None,
    student_config: PretrainedConfig,
) -> tuple[dict[str, nn.Module], dict[str, float]]:
    """Objective modules and weights from `{name: {'weight': w, **options}}` (validated at start-up): each one must
    read the batches and outputs of the run's task kind."""
    objectives, weights = {}, {}
    for name in objective_specs:
        objective_kind = get_objective(name).task_kind
        if objective_kind != kind.name:
            own = sorted(n for n, cls in OBJECTIVES.items() if cls.task_kind == kind.name)
            raise ValueError(
                f"objective {name!r} belongs to the {objective_kind!r} task kind, but this run's task kind is "
                f"{kind.name!r} ({kind.datasets_hint}); its objectives are {own}"
            )
    for name, options in objective_specs.items():
        options = dict(options or {})
        weights[name] = float(options.pop("weight", 1.0))
        objectives[name] = build_objective(name, teacher_config, student_config, **options)
    return objectives, weights
