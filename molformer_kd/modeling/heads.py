"""Property-prediction heads: one small predictor class per task, chosen once from the config.

A predictor is the MLP on the pooled (global-token) representation together with what its task needs around it
(as chemprop v2's predictors): the loss over the observed labels (NaN = missing), the `logits` the model reports,
the transform of those logits into the values a user sees, the column suffix and the metrics of those values.
`build_predictor(config)` picks the class from `config.problem_type`; stages and pipelines read everything
task-specific from the predictor (`model.head`, or `predictor_class(...)` before a model exists) instead of
switching on problem-type strings.

Settings read from the backbone config (extra keys are stored by `PretrainedConfig`): `num_labels`,
`problem_type` ("regression" default | "multi_label_classification" | "single_label_classification"),
`regression_loss` ("l1" default | "mse"), `label_mean` / `label_std` (lists, one per label; regression targets are
learned normalized and `logits` are returned de-normalized, in the original units), `label_names`,
`head_hidden_size` (default: `hidden_size`).
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.metrics import per_label_classification_metrics, per_label_metrics
from .layers import ConstantBuffers
from .outputs import MolecularPropertyOutput

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import PretrainedConfig

REGRESSION_LOSSES = ("l1", "mse")


def masked_mean(values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `observed` (0 when nothing is observed). `where` rather than boolean indexing: no
    host synchronisation, and the unobserved (NaN-label) values reach neither the result nor its gradient."""
    return torch.where(observed, values, 0).sum() / observed.sum().clamp(min=1)


def denoising_loss(noise_pred: torch.Tensor, noise: torch.Tensor, atom_mask: torch.Tensor) -> torch.Tensor:
    """D&D eq. (5): the mean over real atoms of the squared error of the predicted noise, `||eps_hat_i - eps_i||^2`
    (summed over x, y, z)."""
    per_atom = ((noise_pred.float() - noise.float()) ** 2).sum(-1)
    return masked_mean(per_atom, atom_mask.bool())


class PropertyPredictor(ConstantBuffers, ABC):
    """Base of the predictors: MLP on the pooled representation -> one raw output per label (or class).

    Class attributes describe the task: `problem_type` (the config's value), `task` (the distill config's
    `problem_type`: "regression" or "classification"), `prediction_suffix` of the predictions.csv columns and
    `metric_names` (per label, `<label>_<metric>` keys of `metrics`).
    """

    problem_type: ClassVar[str]
    task: ClassVar[str]
    prediction_suffix: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        hidden = getattr(config, "head_hidden_size", None) or config.hidden_size
        self.dense = nn.Linear(config.hidden_size, hidden)
        self.activation = nn.GELU()
        self.out_proj = nn.Linear(hidden, config.num_labels)
        names = getattr(config, "label_names", None)
        self.label_names = [str(name) for name in names] if names else [f"label_{i}" for i in range(config.num_labels)]

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Raw outputs: normalized regression values or classification logits."""
        return self.out_proj(self.activation(self.dense(pooled)))

    def logits(self, raw: torch.Tensor) -> torch.Tensor:
        """The model output's `logits` from the raw outputs (regression: in the original label units)."""
        return raw

    @abstractmethod
    def loss(self, raw: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss (float32) of the raw outputs over the observed `labels` (NaN = missing)."""

    def transform(self, logits: torch.Tensor) -> torch.Tensor:
        """The values a user sees from the model output's `logits`: label values or probabilities."""
        return logits

    @abstractmethod
    def metrics(
        self, predictions: np.ndarray, targets: np.ndarray, label_names: Sequence[str] | None = None
    ) -> dict[str, float]:
        """`{"<label>_<metric>": value, "<label>_count": n}` of `transform`ed predictions (B, T) against targets
        (default names: the config's `label_names`)."""


class RegressionPredictor(PropertyPredictor):
    """Regression on targets normalized with `label_mean` / `label_std`; L1 (default) or MSE loss; `logits` are
    de-normalized into the original units."""

    problem_type = "regression"
    task = "regression"
    prediction_suffix = "_pred"
    metric_names = ("mae", "rmse")

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        num = config.num_labels
        self.regression_loss = getattr(config, "regression_loss", None) or "l1"
        if self.regression_loss not in REGRESSION_LOSSES:
            raise ValueError(f"unknown regression_loss {self.regression_loss!r} (use 'l1' or 'mse')")
        self.label_mean = list(getattr(config, "label_mean", None) or [0.0] * num)
        self.label_std = list(getattr(config, "label_std", None) or [1.0] * num)
        if len(self.label_mean) != num or len(self.label_std) != num:
            raise ValueError(
                f"label_mean/label_std need {num} values (num_labels), got {len(self.label_mean)}/{len(self.label_std)}"
            )
        # Unsaved buffers filled from the config, the only place the statistics live: a checkpoint can never hold
        # stale values.
        self.register_constant("mean", self.label_mean, torch.float64)
        self.register_constant("std", self.label_std, torch.float64)

    def _statistics(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean.to(like.dtype), self.std.to(like.dtype)

    def logits(self, raw: torch.Tensor) -> torch.Tensor:
        mean, std = self._statistics(raw)
        return raw * std + mean

    def loss(self, raw: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        mean, std = self._statistics(raw)
        labels = labels.to(raw.dtype).view(raw.shape)
        observed = ~torch.isnan(labels)
        target = torch.where(observed, (labels - mean) / std, 0).float()
        if self.regression_loss == "l1":
            per_value = F.l1_loss(raw.float(), target, reduction="none")
        else:
            per_value = F.mse_loss(raw.float(), target, reduction="none")
        return masked_mean(per_value, observed)

    def metrics(
        self, predictions: np.ndarray, targets: np.ndarray, label_names: Sequence[str] | None = None
    ) -> dict[str, float]:
        return per_label_metrics(predictions, targets, label_names or self.label_names)


class BinaryClassificationPredictor(PropertyPredictor):
    """One independent yes/no label per output (labels 0/1, NaN = missing): BCE on the logits, sigmoid
    probabilities of class 1 for users."""

    problem_type = "multi_label_classification"
    task = "classification"
    prediction_suffix = "_prob"
    metric_names = ("roc_auc", "accuracy", "log_loss")

    def loss(self, raw: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.to(raw.dtype).view(raw.shape)
        observed = ~torch.isnan(labels)
        target = torch.where(observed, labels, 0).float()
        return masked_mean(F.binary_cross_entropy_with_logits(raw.float(), target, reduction="none"), observed)

    def transform(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def metrics(
        self, predictions: np.ndarray, targets: np.ndarray, label_names: Sequence[str] | None = None
    ) -> dict[str, float]:
        return per_label_classification_metrics(predictions, targets, label_names or self.label_names)


class MulticlassClassificationPredictor(PropertyPredictor):
    """One label with `num_labels` classes (class ids, NaN = missing): cross-entropy, softmax probabilities;
    `label_names` are the class names of `config.id2label`."""

    problem_type = "single_label_classification"
    task = "multiclass"
    prediction_suffix = "_prob"
    metric_names = ("accuracy",)

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.label_names = [str(config.id2label[i]) for i in range(config.num_labels)]

    def loss(self, raw: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.reshape(-1).to(raw.dtype)
        observed = ~torch.isnan(labels)
        targets = torch.where(observed, labels, 0).long()
        return masked_mean(F.cross_entropy(raw.float(), targets, reduction="none"), observed)

    def transform(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    def metrics(
        self, predictions: np.ndarray, targets: np.ndarray, label_names: Sequence[str] | None = None
    ) -> dict[str, float]:
        """`{"accuracy", "count"}` of the most probable class against the class ids (B,) or (B, 1)."""
        probabilities = np.asarray(predictions, dtype=np.float64)
        targets = np.asarray(targets, dtype=np.float64).reshape(-1)
        observed = ~np.isnan(targets)
        hits = np.argmax(probabilities[observed], axis=-1) == targets[observed]
        return {"accuracy": float(hits.mean()) if hits.size else float("nan"), "count": int(observed.sum())}


PREDICTORS = {
    predictor.problem_type: predictor
    for predictor in (RegressionPredictor, BinaryClassificationPredictor, MulticlassClassificationPredictor)
}


def predictor_class(problem_type: str | None) -> type[PropertyPredictor]:
    """The predictor of a config `problem_type` (None = regression) or of a distill-config task name
    ("regression" | "classification")."""
    problem_type = problem_type or "regression"
    if problem_type in PREDICTORS:
        return PREDICTORS[problem_type]
    by_task = {cls.task: cls for cls in PREDICTORS.values()}
    if problem_type in by_task:
        return by_task[problem_type]
    raise ValueError(f"unknown problem_type {problem_type!r}; use one of {sorted(PREDICTORS)}")


def build_predictor(config: PretrainedConfig) -> PropertyPredictor:
    """The property head of `config`, chosen once from `config.problem_type`."""
    return predictor_class(getattr(config, "problem_type", None))(config)


class PropertyPredictionMixin:
    """`forward` for every `...ForMolecularPropertyPrediction`: backbone (at `base_model_prefix`) + `self.head`,
    a `PropertyPredictor`."""

    @torch.no_grad()
    def reset_task_head(self) -> None:
        """Draw `self.head` afresh with the model's own `_init_weights`, keeping the backbone (a new task for a
        pretrained model: other labels, or the same names as another problem type)."""
        for tensor in itertools.chain(self.head.parameters(), self.head.buffers()):
            # `from_pretrained` flags the tensors it loaded as initialised, and the guarded initialisers of
            # `transformers.initialization` leave flagged tensors untouched.
            tensor._is_hf_initialized = False
        self.head.apply(self._init_weights)

    def forward(
        self,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **inputs,
    ) -> MolecularPropertyOutput | tuple:
        """`inputs`: the batch of the backbone's modality; `labels` (B, T), NaN = missing, give `loss`."""
        outputs = self.base_model(
            **inputs, output_hidden_states=output_hidden_states, output_attentions=output_attentions, return_dict=True
        )
        raw = self.head(outputs.pooler_output)
        loss = self.head.loss(raw, labels) if labels is not None else None
        output = MolecularPropertyOutput(
            loss=loss,
            logits=self.head.logits(raw),
            pooler_output=outputs.pooler_output,
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            attention_biases=outputs.attention_biases,
            token_mask=outputs.token_mask,
        )
        return self.wrap_output(output, return_dict)
