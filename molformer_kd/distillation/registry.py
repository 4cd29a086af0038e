"""Objectives are chosen by name from a config; each name maps to a small `nn.Module` class.

An objective module is built as `cls(teacher_config, student_config, **options)` and called as
`objective(teacher_outputs, student_outputs, batch) -> dict[str, Tensor]` returning its named loss components
(the trainer logs each component and sums them with the objective's configured weight). Modules may own learnable
projections (student side); those parameters are optimized with the student and dropped at export.

Construction is where configs are validated (layer pairs beyond the layer counts, head counts, unknown options):
it runs at start-up, before any data is loaded, and raises `ValueError` naming the objective and the bad option.

Reduction rule shared by every objective (it makes gradient accumulation exact, see `DistillationTrainer`):
each component is the mean over the molecules of the micro-batch of a per-molecule loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from collections.abc import Callable

    from transformers import PretrainedConfig

OBJECTIVES: dict[str, type] = {}


def register_objective(name: str) -> Callable[[type], type]:
    def decorator(cls: type) -> type:
        if name in OBJECTIVES:
            raise ValueError(f"objective {name!r} is already registered by {OBJECTIVES[name].__name__}")
        OBJECTIVES[name] = cls
        cls.objective_name = name
        return cls

    return decorator


def get_objective(name: str) -> type:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; known objectives: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]


def build_objective(
    name: str, teacher_config: PretrainedConfig | None, student_config: PretrainedConfig, **options
) -> nn.Module:
    """`get_objective(name)(teacher_config, student_config, **options)`, with unknown options reported by name."""
    cls = get_objective(name)
    try:
        return cls(teacher_config, student_config, **options)
    except TypeError as error:
        raise ValueError(f"objective {name!r}: bad options {sorted(options)}: {error}") from error


class DistillationObjective(nn.Module):
    """Base class of the objectives: declares which model outputs the trainer must request.

    `teacher_outputs_needed` / `student_outputs_needed` name the optional outputs ("hidden_states",
    "attentions") the trainer asks the models for (`output_hidden_states=True`, `output_attentions=True`);
    `needs_teacher` is False for objectives computed from the student alone (the task loss). `task_kind` names the
    task kind whose batches and model outputs the objective reads (`tasks.TaskKind.name`): a run of another kind
    refuses it at start-up.
    """

    objective_name: str = ""
    task_kind: str = "property"
    needs_teacher: bool = True
    teacher_outputs_needed: frozenset = frozenset()
    student_outputs_needed: frozenset = frozenset()
