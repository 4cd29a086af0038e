"""ModelOutput dataclasses shared by every model family (the one output contract, see DESIGN.md)."""

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class MolecularModelOutput(ModelOutput):
    """Backbone output. Token 0 of `last_hidden_state` is the global (virtual) token for every family."""

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    attention_biases: tuple[torch.FloatTensor, ...] | None = None
    token_mask: torch.Tensor | None = None


@dataclass
class MolecularPropertyOutput(ModelOutput):
    """Property-prediction head output; `logits` are in the original label units (de-normalized)."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    attention_biases: tuple[torch.FloatTensor, ...] | None = None
    token_mask: torch.Tensor | None = None


@dataclass
class DenoisingOutput(ModelOutput):
    """D&D stage-1 output: per-atom predicted noise vectors (B, N, 3) and the backbone fields."""

    loss: torch.FloatTensor | None = None
    noise_pred: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    token_mask: torch.Tensor | None = None
