"""Task heads shared by every family: property prediction (regression / classification, NaN-masked labels).

A head reads its settings from the backbone config (extra keys are stored by `PretrainedConfig`):
`num_labels`, `problem_type` ("regression" | "single_label_classification" | "multi_label_classification"),
`regression_loss` ("l1" default | "mse"), `label_mean` / `label_std` (lists, one per label; regression targets are
learned normalized and `logits` are returned de-normalized, in the original units), `label_names`,
`head_hidden_size` (0 = a single linear layer).
"""

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .outputs import MolecularPropertyOutput


class PropertyPredictionHead(nn.Module):
    """MLP on the pooled (global-token) representation -> one output per label (or class)."""

    def __init__(self, config):
        super().__init__()
        hidden = getattr(config, "head_hidden_size", None) or config.hidden_size
        self.problem_type = getattr(config, "problem_type", None) or "regression"
        self.regression_loss = getattr(config, "regression_loss", "l1")
        self.dense = nn.Linear(config.hidden_size, hidden)
        self.activation = nn.GELU()
        self.out_proj = nn.Linear(hidden, config.num_labels)
        num = config.num_labels
        self.label_mean = list(getattr(config, "label_mean", None) or [0.0] * num)
        self.label_std = list(getattr(config, "label_std", None) or [1.0] * num)
        if len(self.label_mean) != num or len(self.label_std) != num:
            raise ValueError(
                f"label_mean/label_std need {num} values (num_labels), got {len(self.label_mean)}/{len(self.label_std)}"
            )

    def _statistics(self, like: torch.Tensor):
        # Plain floats from the config, not buffers: the config is the only place they live, so a checkpoint
        # loaded with from_pretrained (built on the meta device) can never hold stale or uninitialised values.
        mean = torch.tensor(self.label_mean, dtype=like.dtype, device=like.device)
        std = torch.tensor(self.label_std, dtype=like.dtype, device=like.device)
        return mean, std

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Raw outputs: normalized regression values or classification logits."""
        return self.out_proj(self.activation(self.dense(pooled)))

    def denormalize(self, raw: torch.Tensor) -> torch.Tensor:
        if self.problem_type != "regression":
            return raw
        mean, std = self._statistics(raw)
        return raw * std + mean

    def loss(self, raw: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        mean, std = self._statistics(raw)
        return property_prediction_loss(raw, labels, self.problem_type, self.regression_loss, mean, std)


def property_prediction_loss(raw, labels, problem_type="regression", regression_loss="l1", mean=None, std=None):
    """Mean loss over observed labels; NaN labels are masked out (multi-task with missing values)."""
    if problem_type == "single_label_classification":
        return F.cross_entropy(raw.float(), labels.view(-1).long())
    labels = labels.to(raw.dtype).view(raw.shape)
    observed = ~torch.isnan(labels)
    if not observed.any():
        return raw.sum() * 0.0
    if problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(raw[observed].float(), labels[observed].float())
    if problem_type != "regression":
        raise ValueError(f"unknown problem_type {problem_type!r}")
    target = labels
    if mean is not None:
        target = (labels - mean) / std
    if regression_loss == "l1":
        return F.l1_loss(raw[observed].float(), target[observed].float())
    if regression_loss == "mse":
        return F.mse_loss(raw[observed].float(), target[observed].float())
    raise ValueError(f"unknown regression_loss {regression_loss!r} (use 'l1' or 'mse')")


class PropertyPredictionMixin:
    """`forward` for every `...ForMolecularPropertyPrediction`: backbone (at `base_model_prefix`) + `self.head`."""

    @torch.no_grad()
    def reset_task_head(self):
        """Draw `self.head` afresh with the model's own `_init_weights`, keeping the backbone (a new task for a
        pretrained model: other labels, or the same names as another problem type)."""
        for tensor in itertools.chain(self.head.parameters(), self.head.buffers()):
            # `from_pretrained` flags the tensors it loaded as initialised, and the guarded initialisers of
            # `transformers.initialization` leave flagged tensors untouched.
            tensor._is_hf_initialized = False
        self.head.apply(self._init_weights)

    def forward(self, labels=None, output_hidden_states=None, output_attentions=None, return_dict=None, **inputs):
        outputs = self.base_model(
            **inputs, output_hidden_states=output_hidden_states, output_attentions=output_attentions
        )
        raw = self.head(outputs.pooler_output)
        loss = self.head.loss(raw, labels) if labels is not None else None
        return MolecularPropertyOutput(
            loss=loss,
            logits=self.head.denormalize(raw),
            pooler_output=outputs.pooler_output,
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            attention_biases=getattr(outputs, "attention_biases", None),
            token_mask=outputs.token_mask,
        )
