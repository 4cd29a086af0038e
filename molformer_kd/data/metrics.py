"""Regression metrics over labels with missing values (NaN targets are ignored, per label)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["mae", "per_label_metrics", "rmse"]


def _as_arrays(predictions, targets) -> tuple[np.ndarray, np.ndarray]:
    predictions = np.asarray(predictions, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {predictions.shape} and targets {targets.shape} differ in shape")
    return predictions, targets


def mae(predictions, targets) -> float:
    """Mean absolute error over the entries whose target is not NaN (NaN when there is none)."""
    predictions, targets = _as_arrays(predictions, targets)
    observed = ~np.isnan(targets)
    return float(np.mean(np.abs(predictions[observed] - targets[observed]))) if observed.any() else float("nan")


def rmse(predictions, targets) -> float:
    """Root mean squared error over the entries whose target is not NaN (NaN when there is none)."""
    predictions, targets = _as_arrays(predictions, targets)
    observed = ~np.isnan(targets)
    if not observed.any():
        return float("nan")
    return float(np.sqrt(np.mean((predictions[observed] - targets[observed]) ** 2)))


def per_label_metrics(predictions, targets, label_names: Sequence[str]) -> dict[str, float]:
    """``{"<label>_mae", "<label>_rmse", "<label>_count"}`` for each column of (B, T) predictions/targets.

    Flat keys, so the dict can be returned from a transformers ``compute_metrics`` as is.
    """
    predictions, targets = _as_arrays(predictions, targets)
    if predictions.ndim == 1:
        predictions, targets = predictions[:, None], targets[:, None]
    if predictions.shape[1] != len(label_names):
        raise ValueError(f"{predictions.shape[1]} label columns but {len(label_names)} names {list(label_names)}")
    metrics = {}
    for column, name in enumerate(label_names):
        metrics[f"{name}_mae"] = mae(predictions[:, column], targets[:, column])
        metrics[f"{name}_rmse"] = rmse(predictions[:, column], targets[:, column])
        metrics[f"{name}_count"] = int(np.sum(~np.isnan(targets[:, column])))
    return metrics
