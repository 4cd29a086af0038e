"""What every task kind provides to the stages (`TaskKind`), and building model configs from a run's config.

A task kind says which data a run reads, which models and heads it trains, how rows become batches and how a model
is tested. The stages (`distillation.stages`) are written against this protocol only; `tasks.task_kind` picks the
kind from the dataset.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from safetensors import safe_open
from transformers import TrainingArguments
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from ..registry import build_objective
from ..trainer import DistillationModel

if TYPE_CHECKING:
    import os

    from datasets import Dataset, DatasetDict
    from transformers import PretrainedConfig, PreTrainedModel

    from ..arguments import DataArguments

__all__ = ["TaskKind", "build_config", "check_model_fits_task", "is_checkpoint_dir", "supervised"]


class TaskKind(Protocol):
    """What the stages need to know about a task; `PropertyTask` and `EnergyForcesTask` implement it.

    `auto_class` creates and loads the trained models, `teacher_auto_class` loads the distill stage's teacher,
    `task_objective` names the supervised objective. Processors (featurizer/tokenizer) may be None.
    """

    name: str
    description: str
    datasets_hint: str
    auto_class: type
    teacher_auto_class: type
    task_objective: str
    dataset_names: tuple[str, ...]  # the datasets of this kind a config names (besides file paths)

    @staticmethod
    def handles(dataset: str) -> bool: ...

    @classmethod
    def from_data_args(cls, data_args: DataArguments) -> TaskKind: ...

    def load_records(self, data_args: DataArguments) -> DatasetDict: ...

    def statistics(self, train_rows: Dataset) -> dict: ...

    def check_config(self, config: PretrainedConfig, role: str) -> None: ...

    def new_processor(self, config: PretrainedConfig) -> Any: ...  # a featurizer or tokenizer, or None

    def load_processor(self, path: str | os.PathLike) -> Any: ...

    def collator(self, processor: Any) -> Callable: ...

    def paired_collator(self, teacher_processor: Any, student_processor: Any, with_labels: bool) -> Callable: ...

    def compute_metrics(self, model: PreTrainedModel) -> Callable | None: ...

    def evaluate(
        self, model: PreTrainedModel, processor: Any, rows: Dataset, args: TrainingArguments, split: str
    ) -> dict: ...


def _check_config_values(config_class: type[PretrainedConfig], kwargs: dict, role: str) -> None:
    """Types and ranges of the model settings a config file gives, against the config class's own defaults: a string
    where the default is a number, a negative size or a dropout outside [0, 1) fails here, at start-up."""
    defaults = config_class()
    for key, value in kwargs.items():
        default = getattr(defaults, key, None)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"{role}_config.{key}: {value!r} is not true or false")
        if isinstance(default, int) and not isinstance(default, bool):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{role}_config.{key}: {value!r} is not an integer")
            if value < 0 or (value == 0 and (key.endswith("_size") or key == "num_attention_heads")):
                raise ValueError(f"{role}_config.{key}: {value!r} is out of range")
        if isinstance(default, float):
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"{role}_config.{key}: {value!r} is not a number")
            if "dropout" in key and not 0 <= value < 1:
                raise ValueError(f"{role}_config.{key}: {value!r} is out of range; it must be in [0, 1)")
        if isinstance(default, str) and not isinstance(value, str):
            raise ValueError(f"{role}_config.{key}: {value!r} is not a string")


def build_config(spec: dict, role: str, **overrides) -> PretrainedConfig:
    """A new config from `{'model_type': ..., 'preset': optional, **kwargs}`; bad settings fail naming the key."""
    if not isinstance(spec, dict) or "model_type" not in spec:
        raise ValueError(
            f"{role}_config must be a mapping with a 'model_type' (e.g. molformer_graphormer), got {spec!r}"
        )
    kwargs = dict(spec)
    model_type = kwargs.pop("model_type")
    preset = kwargs.pop("preset", None)
    if model_type not in CONFIG_MAPPING:
        known = sorted(t for t in CONFIG_MAPPING if t.startswith("molformer_"))
        raise ValueError(f"{role}_config: unknown model_type {model_type!r}; molformer_kd model types: {known}")
    config_class = CONFIG_MAPPING[model_type]
    _check_config_values(config_class, kwargs, role)
    kwargs.update(overrides)
    try:
        return config_class.from_preset(preset, **kwargs) if preset else config_class(**kwargs)
    except TypeError as error:
        raise ValueError(f"{role}_config: {error}") from error


def is_checkpoint_dir(path: str | os.PathLike | None) -> bool:
    return path is not None and Path(path, "config.json").is_file()


def checkpoint_has_weights(path: str | os.PathLike, prefix: str) -> bool:
    """Whether the safetensors weights of checkpoint folder `path` (one file or an index of shards) hold a tensor
    whose name starts with `prefix`; True when the folder has no safetensors weights to read."""
    index = Path(path, "model.safetensors.index.json")
    if index.is_file():
        names = json.loads(index.read_text())["weight_map"]
    elif Path(path, "model.safetensors").is_file():
        with safe_open(str(Path(path, "model.safetensors")), framework="pt") as weights:
            names = list(weights.keys())
    else:
        return True
    return any(name.startswith(prefix) for name in names)


def check_model_fits_task(kind: TaskKind, config: PretrainedConfig, role: str, auto_class: type | None = None) -> None:
    """A model of `config` must exist in the task's Auto class (a GIN cannot learn energies and forces)."""
    auto_class = auto_class or kind.auto_class
    if type(config) not in auto_class._model_mapping:
        raise ValueError(
            f"{role}: model_type {config.model_type!r} has no {kind.description} model ({auto_class.__name__}); "
            f"{kind.datasets_hint}"
        )
    kind.check_config(config, role)


def supervised(kind: TaskKind, model: PreTrainedModel) -> DistillationModel:
    """`model` trained with the task's own supervised objective alone (teacher, denoise and finetune stages)."""
    return DistillationModel(model, {kind.task_objective: build_objective(kind.task_objective, None, model.config)})
