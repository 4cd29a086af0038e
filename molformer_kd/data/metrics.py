"""Metrics: per-label property metrics, the KD-GNN energy/force metrics and the gap a distilled model closes.

Per-label metrics ignore missing values (NaN targets, per label). Regression: MAE, RMSE. Binary classification
(targets 0/1, predictions are probabilities of class 1): ROC-AUC (Mann-Whitney U from average ranks, so tied scores
count one half), accuracy at p = 0.5 and log loss. Energies and forces: `EnergyForceMetrics` (OC20's definitions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "EFWT_ENERGY_THRESHOLD",
    "EFWT_FORCE_THRESHOLD",
    "EnergyForceMetrics",
    "accuracy",
    "gap_closed",
    "log_loss",
    "mae",
    "per_label_classification_metrics",
    "per_label_metrics",
    "rmse",
    "roc_auc",
]

# Probabilities are clipped to [eps, 1 - eps] in the log loss, so a confidently wrong prediction costs
# -log(eps) ~ 34.5 nats instead of infinity (the usual convention).
LOG_LOSS_EPS = 1e-15


def _as_arrays(predictions: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    predictions = np.asarray(predictions, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {predictions.shape} and targets {targets.shape} differ in shape")
    return predictions, targets


def _observed(predictions: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The (prediction, target) pairs whose target is not NaN."""
    predictions, targets = _as_arrays(predictions, targets)
    observed = ~np.isnan(targets)
    return predictions[observed], targets[observed]


def _observed_binary(probabilities: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    probabilities, targets = _observed(probabilities, targets)
    bad = (targets != 0) & (targets != 1)
    if bad.any():
        raise ValueError(f"binary targets must be 0, 1 or NaN; got {targets[bad][0]:g}")
    return probabilities, targets


def mae(predictions: ArrayLike, targets: ArrayLike) -> float:
    """Mean absolute error over the entries whose target is not NaN (NaN when there is none)."""
    predictions, targets = _observed(predictions, targets)
    return float(np.mean(np.abs(predictions - targets))) if targets.size else float("nan")


def rmse(predictions: ArrayLike, targets: ArrayLike) -> float:
    """Root mean squared error over the entries whose target is not NaN (NaN when there is none)."""
    predictions, targets = _observed(predictions, targets)
    return float(np.sqrt(np.mean((predictions - targets) ** 2))) if targets.size else float("nan")


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`; tied values all get the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    group_starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_values)) + 1])
    group_ends = np.concatenate([group_starts[1:], [values.size]])
    ranks = np.empty(values.size, dtype=np.float64)
    # A group occupying sorted positions start..end-1 spans ranks start+1..end, whose mean is (start + 1 + end) / 2.
    ranks[order] = np.repeat((group_starts + 1 + group_ends) / 2.0, group_ends - group_starts)
    return ranks


def roc_auc(scores: ArrayLike, targets: ArrayLike) -> float:
    """Area under the ROC curve = P(score of a random positive > score of a random negative), ties counting 1/2.

    Computed as the Mann-Whitney U of the positives over n_pos * n_neg: U = R_pos - n_pos (n_pos + 1) / 2, with
    R_pos the sum of the positives' average ranks among all observed scores. NaN when a class is absent.
    """
    scores, targets = _observed_binary(scores, targets)
    positive = targets == 1
    n_positive, n_negative = int(positive.sum()), int((~positive).sum())
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    rank_sum = _average_ranks(scores)[positive].sum()
    return float((rank_sum - n_positive * (n_positive + 1) / 2.0) / (n_positive * n_negative))


def accuracy(probabilities: ArrayLike, targets: ArrayLike, threshold: float = 0.5) -> float:
    """Fraction of observed targets equal to the predicted class (1 where probability >= threshold)."""
    probabilities, targets = _observed_binary(probabilities, targets)
    if not targets.size:
        return float("nan")
    return float(np.mean((probabilities >= threshold).astype(np.float64) == targets))


def log_loss(probabilities: ArrayLike, targets: ArrayLike) -> float:
    """Mean binary cross-entropy -[y log p + (1 - y) log(1 - p)] (natural log), p clipped to [eps, 1 - eps]."""
    probabilities, targets = _observed_binary(probabilities, targets)
    if not targets.size:
        return float("nan")
    p = np.clip(probabilities, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return float(-np.mean(targets * np.log(p) + (1.0 - targets) * np.log1p(-p)))


def _per_label(
    predictions: ArrayLike, targets: ArrayLike, label_names: Sequence[str], metrics: dict[str, Callable]
) -> dict[str, float]:
    """``{"<label>_<metric>", ..., "<label>_count"}`` for each column of (B, T) predictions/targets."""
    predictions, targets = _as_arrays(predictions, targets)
    if predictions.ndim == 1:
        predictions, targets = predictions[:, None], targets[:, None]
    if predictions.shape[1] != len(label_names):
        raise ValueError(f"{predictions.shape[1]} label columns but {len(label_names)} names {list(label_names)}")
    values = {}
    for column, name in enumerate(label_names):
        for metric, function in metrics.items():
            values[f"{name}_{metric}"] = function(predictions[:, column], targets[:, column])
        values[f"{name}_count"] = int(np.sum(~np.isnan(targets[:, column])))
    return values


def per_label_metrics(predictions: ArrayLike, targets: ArrayLike, label_names: Sequence[str]) -> dict[str, float]:
    """``{"<label>_mae", "<label>_rmse", "<label>_count"}`` for each column of (B, T) predictions/targets.

    Flat keys, so the dict can be returned from a transformers ``compute_metrics`` as is.
    """
    return _per_label(predictions, targets, label_names, {"mae": mae, "rmse": rmse})


def per_label_classification_metrics(
    probabilities: ArrayLike, targets: ArrayLike, label_names: Sequence[str]
) -> dict[str, float]:
    """``{"<label>_roc_auc", "<label>_accuracy", "<label>_log_loss", "<label>_count"}`` per column.

    `probabilities` (B, T) are the predicted probabilities of class 1 (sigmoid of the logits), `targets` 0/1/NaN.
    """
    return _per_label(
        probabilities, targets, label_names, {"roc_auc": roc_auc, "accuracy": accuracy, "log_loss": log_loss}
    )


# OC20's "energy and forces within threshold" (Chanussot et al. 2021), used by the KD-GNN paper's Table 1.
EFWT_ENERGY_THRESHOLD = 0.02  # eV, on |E_pred - E|
EFWT_FORCE_THRESHOLD = 0.03  # eV/Angstrom, on the largest absolute force-component error of the system


class EnergyForceMetrics:
    """Accumulates the KD-GNN paper's metrics over batches (Table 1), in OC20's definitions:

    energy_mae_meV (mean over systems), force_mae_meV_per_A (mean over atoms and components), force_cos (cosine
    of predicted and true force vectors, mean over atoms), efwt_percent (% of systems with |dE| < 0.02 eV and every
    |dF component| < 0.03 eV/Angstrom).
    """

    def __init__(self) -> None:
        self.energy_errors, self.force_errors, self.cosines, self.within = [], [], [], []

    @torch.no_grad()
    def update(
        self,
        pred_energy: torch.Tensor,
        pred_forces: torch.Tensor,
        energy: torch.Tensor,
        forces: torch.Tensor,
        atom_mask: torch.Tensor,
    ) -> None:
        mask = atom_mask.bool()
        energy_error = (pred_energy.double() - energy.double()).abs()
        force_error = (pred_forces.double() - forces.double()).abs()  # (B, N, 3)
        self.energy_errors.append(energy_error.cpu())
        self.force_errors.append(force_error[mask].cpu())
        self.cosines.append(
            torch.nn.functional.cosine_similarity(pred_forces[mask].double(), forces[mask].double(), dim=-1).cpu()
        )
        worst_force = (force_error.amax(dim=-1) * mask).amax(dim=-1)
        self.within.append(((energy_error < EFWT_ENERGY_THRESHOLD) & (worst_force < EFWT_FORCE_THRESHOLD)).cpu())

    def compute(self) -> dict[str, float]:
        if not self.energy_errors:
            raise ValueError("EnergyForceMetrics.compute() before any update()")
        return {
            "energy_mae_meV": 1000.0 * torch.cat(self.energy_errors).mean().item(),
            "force_mae_meV_per_A": 1000.0 * torch.cat(self.force_errors).mean().item(),
            "force_cos": torch.cat(self.cosines).mean().item(),
            "efwt_percent": 100.0 * torch.cat(self.within).double().mean().item(),
        }


def gap_closed(student: float, distilled: float, teacher: float) -> float | None:
    """KD-GNN's "gap closed" = (student - distilled) / (student - teacher), as a fraction (None when no gap).

    The same formula serves lower-is-better and higher-is-better metrics: the sign of the gap takes care of it.
    """
    if student == teacher:
        return None
    return (student - distilled) / (student - teacher)
