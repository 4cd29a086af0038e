"""Task kinds of a distillation run, chosen by the dataset: molecular properties or energies and forces.

`task_kind(data_args)` asks each kind of `TASK_KINDS` in order whether it handles the dataset; `PropertyTask`, last,
takes every dataset no other kind claims. `load_records` reads the run's data, cut to the `max_*_samples`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import TaskKind, build_config, check_model_fits_task, is_checkpoint_dir, supervised
from .energy_forces import EnergyForcesTask
from .property import PropertyTask, label_statistics, new_processor, property_predictions_and_metrics

if TYPE_CHECKING:
    from datasets import DatasetDict

    from ..arguments import DataArguments

__all__ = [
    "TASK_KINDS",
    "EnergyForcesTask",
    "PropertyTask",
    "TaskKind",
    "build_config",
    "check_model_fits_task",
    "dataset_names",
    "is_checkpoint_dir",
    "label_statistics",
    "load_records",
    "new_processor",
    "property_predictions_and_metrics",
    "supervised",
    "task_kind",
]

TASK_KINDS: tuple[type[TaskKind], ...] = (EnergyForcesTask, PropertyTask)


def dataset_names() -> list[str]:
    """The datasets a config can name (besides file paths)."""
    return [name for kind in TASK_KINDS for name in kind.dataset_names]


def task_kind(data_args: DataArguments) -> TaskKind:
    """The task of a run, chosen by its dataset."""
    kind_class = next(kind for kind in TASK_KINDS if kind.handles(data_args.dataset))
    return kind_class.from_data_args(data_args)


def load_records(data_args: DataArguments, kind: TaskKind | None = None) -> DatasetDict:
    """The records of the run's task (`kind`, default: chosen from the dataset), cut to the `max_*_samples`: a
    seeded random draw (`split_seed`), since files are often ordered by size and their first rows are no sample."""
    dataset = (kind or task_kind(data_args)).load_records(data_args)
    limits = {
        "train": data_args.max_train_samples,
        "validation": data_args.max_eval_samples,
        "test": data_args.max_test_samples,
    }
    for split, limit in limits.items():
        if limit is not None and split in dataset and len(dataset[split]) > limit:
            dataset[split] = dataset[split].shuffle(seed=data_args.split_seed).select(range(limit))
    return dataset
