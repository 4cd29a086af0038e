"""The energy/force task around `DistillationTrainer`: building models for a dataset, testing them, timing them.

What a stage runner needs for 3D-GNN distillation besides the generic trainer: models configured with the
training set's energy statistics (`data.xtb.energy_statistics`), the paired point-cloud collator
(`data.xtb.PointCloudCollator(paired=True)`), the KD-GNN metrics on a split and the inference throughput.
"""

import time

import torch
from torch.utils.data import DataLoader
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from ..data.xtb import EnergyForceMetrics, PointCloudCollator
from ..modeling import modeling_painn, modeling_schnet  # noqa: F401  (register the families with the Auto classes)
from ..modeling.auto import AutoModelForEnergyAndForces

__all__ = ["build_energy_model", "evaluate_energy_forces", "inference_throughput"]

_INPUT_KEYS = ("atomic_numbers", "pos", "atom_mask")


def build_energy_model(config_spec: dict, statistics: dict, seed: int = 0):
    """A freshly initialized `...ForEnergyAndForces` from `{'model_type': ..., 'preset'?: ..., **settings}` with the
    dataset's energy statistics written into its config."""
    spec = dict(config_spec)
    model_type = spec.pop("model_type", None)
    if model_type not in ("painn", "schnet"):
        raise ValueError(f"energy/force models are 'painn' or 'schnet', got model_type {model_type!r}")
    preset = spec.pop("preset", None)
    config_class = CONFIG_MAPPING[model_type]
    settings = {**spec, **statistics}
    config = config_class.from_preset(preset, **settings) if preset else config_class(**settings)
    torch.manual_seed(seed)
    return AutoModelForEnergyAndForces.from_config(config)


def _batches(dataset, batch_size):
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=PointCloudCollator())


def evaluate_energy_forces(model, dataset, batch_size: int = 64) -> dict[str, float]:
    """Energy MAE (meV), force MAE (meV/Angstrom), force cosine and EFwT (%) of `model` on `dataset` rows."""
    model.eval()
    metrics = EnergyForceMetrics()
    device = next(model.parameters()).device
    for batch in _batches(dataset, batch_size):
        inputs = {key: batch[key].to(device) for key in _INPUT_KEYS}
        with torch.no_grad():
            outputs = model(**inputs)
        labels = batch["labels"]
        metrics.update(outputs.energy, outputs.forces, labels["energy"].to(device), labels["forces"].to(device),
                       inputs["atom_mask"])
    return metrics.compute()


def inference_throughput(model, dataset, batch_size: int = 64, repeats: int = 2) -> float:
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
