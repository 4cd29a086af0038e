"""The energy/force task kind (KD-GNN): building models for a dataset, testing them, timing them.

What the stages need for 3D-GNN distillation besides the generic trainer: models configured with the training set's
energy statistics (`data.xtb.energy_statistics`), the paired point-cloud collator, the KD-GNN metrics on a split and
the inference throughput. `EnergyForcesTask` bundles them as the task kind the stages dispatch to (`tasks.TaskKind`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader

from ...data.metrics import EnergyForceMetrics
from ...data.xtb import energy_statistics, load_qm9_xtb
from ...modeling.auto import AutoModelForEnergyAndForces
from ...tokenization.collators import PointCloudCollator, SingleModelPointCloudCollator
from .base import build_config

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable

    from datasets import Dataset, DatasetDict
    from transformers import PretrainedConfig, PreTrainedModel, TrainingArguments

    from ..arguments import DataArguments

__all__ = [
    "EnergyForcesTask",
    "build_energy_model",
    "evaluate_energy_forces",
    "inference_throughput",
]

_INPUT_KEYS = ("atomic_numbers", "pos", "atom_mask")


def build_energy_model(config_spec: dict, statistics: dict, seed: int = 0) -> PreTrainedModel:
    """A freshly initialized `...ForEnergyAndForces` from `{'model_type': ..., 'preset'?: ..., **settings}` with the
    dataset's energy statistics written into its config."""
    config = build_config(config_spec, "energy/force model", **statistics)
    if type(config) not in AutoModelForEnergyAndForces._model_mapping:
        raise ValueError(f"model_type {config.model_type!r} has no energy/force model (AutoModelForEnergyAndForces)")
    torch.manual_seed(seed)
    return AutoModelForEnergyAndForces.from_config(config)


def _batches(dataset: Dataset | Iterable[dict], batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=PointCloudCollator())


def evaluate_energy_forces(model: PreTrainedModel, dataset: Dataset, batch_size: int = 64) -> dict[str, float]:
    """Energy MAE (meV), force MAE (meV/Angstrom), force cosine and EFwT (%) of `model` on `dataset` rows."""
    return _metrics_and_parity(model, dataset, batch_size)[0]


def _metrics_and_parity(
    model: PreTrainedModel, dataset: Dataset, batch_size: int
) -> tuple[dict[str, float], list[dict]]:
    """`evaluate_energy_forces`'s metrics and the model card's parity panels: true vs predicted energies (eV, one per
    molecule) and force components (eV/Angstrom, three per real atom)."""
    model.eval()
    metrics = EnergyForceMetrics()
    device = next(model.parameters()).device
    energies, forces = ([], []), ([], [])
    for batch in _batches(dataset, batch_size):
        inputs = {key: batch[key].to(device) for key in _INPUT_KEYS}
        with torch.no_grad():
            outputs = model(**inputs)
        labels = batch["labels"]
        metrics.update(
            outputs.energy,
            outputs.forces,
            labels["energy"].to(device),
            labels["forces"].to(device),
            inputs["atom_mask"],
        )
        mask = batch["atom_mask"].bool()
        energies[0].append(labels["energy"])
        energies[1].append(outputs.energy.detach().cpu())
        forces[0].append(labels["forces"][mask].flatten())
        forces[1].append(outputs.forces.detach().cpu()[mask].flatten())
    parity = [
        {"y_true": torch.cat(true).tolist(), "y_pred": torch.cat(predicted).tolist(), "label": label}
        for (true, predicted), label in ((energies, "energy (eV)"), (forces, "force component (eV/Angstrom)"))
    ]
    return metrics.compute(), parity


def inference_throughput(model: PreTrainedModel, dataset: Dataset, batch_size: int = 64, repeats: int = 2) -> float:
    """Samples per second of energy + forces prediction over `dataset` (best of `repeats` passes after a warm-up
    batch), the paper's inference-throughput measure. Autograd-force models are timed with their gradient pass."""
    model.eval()
    device = next(model.parameters()).device
    batches = [{key: batch[key].to(device) for key in _INPUT_KEYS} for batch in _batches(dataset, batch_size)]
    with torch.no_grad():
        model(**batches[0])
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.no_grad():
            for inputs in batches:
                model(**inputs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return len(dataset) / best


class EnergyForcesTask:
    """The energy/force task kind of `distill.py` (KD-GNN): SchNet/PaiNN `...ForEnergyAndForces` models trained on
    QM9/xTB point clouds (`dataset: qm9_xtb`, or the path of a .npz written by `data.xtb.build_qm9_xtb`).

    Models take point-cloud batches directly, so there is no featurizer or tokenizer (processors are None). Rows
    always carry their energy and forces; the batches hold them as `labels`, read only by the `energy_forces`
    objective. The teacher is loaded with its energy head: `vanilla1`/`vanilla2` distil its energies and forces.
    """

    name = "energy_forces"
    description = "energy/force"
    datasets_hint = "energy/force models (painn, schnet) need dataset 'qm9_xtb' or a QM9/xTB .npz path"
    auto_class = AutoModelForEnergyAndForces
    teacher_auto_class = AutoModelForEnergyAndForces
    task_objective = "energy_forces"
    dataset_names = ("qm9_xtb",)

    @staticmethod
    def handles(dataset: str) -> bool:
        return dataset == "qm9_xtb" or dataset.endswith(".npz")

    @classmethod
    def from_data_args(cls, data_args: DataArguments) -> EnergyForcesTask:
        if data_args.problem_type != "regression":
            raise ValueError(
                f"problem_type {data_args.problem_type!r}: dataset {data_args.dataset!r} (energies and forces) is "
                "regression only"
            )
        return cls()

    def load_records(self, data_args: DataArguments) -> DatasetDict:
        path = None if data_args.dataset == "qm9_xtb" else Path(data_args.dataset)
        return load_qm9_xtb(path, split_seed=data_args.split_seed)

    def check_config(self, config: PretrainedConfig, role: str) -> None:
        """Every energy/force model reads the coordinates every row has."""

    def statistics(self, train_rows: Dataset) -> dict:
        return energy_statistics(train_rows)

    def new_processor(self, config: PretrainedConfig) -> None:
        return None

    def load_processor(self, path: str | os.PathLike) -> None:
        return None

    def collator(self, processor: None) -> SingleModelPointCloudCollator:
        return SingleModelPointCloudCollator()

    def paired_collator(
        self, teacher_processor: None, student_processor: None, with_labels: bool
    ) -> PointCloudCollator:
        return PointCloudCollator(paired=True)

    def compute_metrics(self, model: PreTrainedModel) -> None:
        return None  # the head has no logits; `evaluate` reports the KD-GNN metrics

    def evaluate(
        self, model: PreTrainedModel, processor: None, rows: Dataset, args: TrainingArguments, split: str
    ) -> dict:
        """KD-GNN metrics (energy MAE meV, force MAE meV/A, force cosine, EFwT %) of `model` on `rows`, and the
        parity of its energies and force components (the model card's plot)."""
        model.to(args.device)
        metrics, parity = _metrics_and_parity(model, rows, args.per_device_eval_batch_size)
        return {"metrics": {split: metrics}, "parity": parity}
