"""Transformer building blocks shared by Graphormer, the SMILES Transformer and ST-BASE.

Attention takes an optional additive per-head bias (Graphormer's structural encodings, the ST biased layers) and
runs through PyTorch SDPA unless attention probabilities are requested or `attn_implementation="eager"`; both
paths compute the same function (tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer


class ConstantBuffers(nn.Module):
    """A module with constants from its config (python numbers) kept on its device as non-persistent buffers, so
    that `forward` never copies them from the host (a copy from host memory synchronises with the device).

    The buffers are not saved: `MolecularPreTrainedModel._init_weights` refills them with `reset_constants`, as
    transformers re-initialises non-persistent buffers after loading a checkpoint.
    """

    def __init__(self) -> None:
        super().__init__()
        self._constants: dict[str, list] = {}

    def register_constant(self, name: str, values: list, dtype: torch.dtype) -> None:
        """A buffer `name` holding `values`. Keep float constants in float64 and cast them where used: they then
        round once, straight to the compute dtype, as `torch.tensor(values, dtype=compute_dtype)` would."""
        self._constants[name] = list(values)
        self.register_buffer(name, torch.tensor(values, dtype=dtype), persistent=False)

    @torch.no_grad()
    def reset_constants(self) -> None:
        for name, values in self._constants.items():
            buffer = getattr(self, name)
            buffer.copy_(torch.tensor(values, dtype=buffer.dtype))


def check_category_ids(ids: torch.Tensor, feature_dims: list[int], what: str) -> None:
    """Raise a ValueError naming `what` and the column if `ids` (..., C) has not C = len(feature_dims) columns or
    a column holds ids outside [0, its size] (categories are stored as value + 1, 0 = none).

    Reads the values: cheap on a CPU batch (collators, `forward` on the CPU), a device synchronisation elsewhere.
    Needs no module: the sizes are config values, so a collator can check a batch before it reaches the model."""
    if ids.shape[-1] != len(feature_dims):
        raise ValueError(
            f"{what} must have {len(feature_dims)} feature columns in the last axis, got shape {tuple(ids.shape)}"
        )
    outside = (ids < 0) | (ids > torch.tensor(feature_dims, device=ids.device))
    if outside.any():
        column = int(outside.reshape(-1, len(feature_dims)).any(dim=0).nonzero()[0])
        raise ValueError(
            f"{what} column {column} holds values outside [0, {feature_dims[column]}] "
            "(categories are stored as value + 1); the featurizer and the config's feature dims differ"
        )


class CategoricalFeatureEmbedding(ConstantBuffers):
    """One embedding table per categorical column (ids stored as value + 1, 0 = none/padding embeds to zero),
    summed over the columns. Shared by every graph family for atom and bond features.

    The tables stay separate parameters (`tables.{column}.weight`, the checkpoint layout), but a lookup is a single
    embedding lookup in their concatenation: column c's id k > 0 reads row `offsets[c] + k`, id 0 reads the padding
    row 0 (zero, and without gradient). Ids are not range-checked here (that would synchronise with the device on
    every call on a GPU); the featurizer produces ids within `feature_dims`, and `check_category_ids` checks them where
    that is free (a CPU batch: collators, `forward` on the CPU; `MolecularPreTrainedModel.check_input_values`).
    """

    def __init__(self, feature_dims: list[int], embedding_dim: int, what: str = "features") -> None:
        super().__init__()
        self.what = what
        self.feature_dims = list(feature_dims)
        self.tables = nn.ModuleList(nn.Embedding(size + 1, embedding_dim, padding_idx=0) for size in feature_dims)
        # Row offset of each column's table in the concatenated weight; row 0 (table 0's padding row) stands for
        # every column's "none".
        self.row_offsets = [0]
        for size in self.feature_dims[:-1]:
            self.row_offsets.append(self.row_offsets[-1] + size + 1)
        self.register_constant("offsets", self.row_offsets, torch.long)

    def _rows(self, ids: torch.Tensor) -> torch.Tensor:
        """(..., C) column ids -> (..., C) rows of the concatenated weight, 0 where an id is 0."""
        if ids.shape[-1] != len(self.tables):
            raise ValueError(
                f"{self.what} must have {len(self.tables)} feature columns in the last axis, "
                f"got shape {tuple(ids.shape)}"
            )
        return torch.where(ids > 0, ids + self.offsets, torch.zeros_like(ids))

    def _weight(self) -> torch.Tensor:
        return torch.cat([table.weight for table in self.tables])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (..., C) -> (..., embedding_dim)."""
        return F.embedding(self._rows(ids), self._weight(), padding_idx=0).sum(dim=-2)

    def sum_over(self, ids: torch.Tensor, dim: int) -> torch.Tensor:
        """`self(ids).sum(dim)` (`dim` >= 0, an axis before the column axis) without materializing the per-pair
        embeddings: count how often each row occurs along `dim`, then multiply each column's counts with its table
        (row 0, "none", contributes nothing)."""
        rows = self._rows(ids)
        rows = rows.movedim(dim, -2).flatten(-2)  # (..., size of dim * C)
        weight = self._weight()
        counts = weight.new_zeros(*rows.shape[:-1], weight.shape[0])
        counts = counts.scatter_add_(-1, rows, torch.ones_like(rows, dtype=weight.dtype))
        # One matmul per column, added in column order: the same float sums as summing the columns' embeddings.
        total = 0
        for offset, table in zip(self.row_offsets, self.tables):
            total = total + counts[..., offset + 1 : offset + table.num_embeddings] @ table.weight[1:]
        return total


class MultiheadSelfAttention(nn.Module):
    """Multi-head self-attention with an additive bias (B, heads, T, T) and a key padding mask (B, T)."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        head_dim: int | None = None,
        attention_dropout: float = 0.0,
        attn_implementation: str = "sdpa",
    ) -> None:
        super().__init__()
        if head_dim is None:
            if hidden_size % num_heads:
                raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
            head_dim = hidden_size // num_heads
        if attn_implementation not in ("sdpa", "eager"):
            raise ValueError(f"attn_implementation must be 'sdpa' or 'eager', got {attn_implementation!r}")
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.attention_dropout = attention_dropout
        self.attn_implementation = attn_implementation
        inner = num_heads * head_dim
        self.q_proj = nn.Linear(hidden_size, inner)
        self.k_proj = nn.Linear(hidden_size, inner)
        self.v_proj = nn.Linear(hidden_size, inner)
        self.out_proj = nn.Linear(inner, hidden_size)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_padding_mask: torch.Tensor,
        attn_bias: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`key_padding_mask` is True (or 1) for real tokens. Returns (output, probabilities or None)."""
        q = self._split_heads(self.q_proj(hidden_states))
        k = self._split_heads(self.k_proj(hidden_states))
        v = self._split_heads(self.v_proj(hidden_states))
        keep = key_padding_mask.bool()[:, None, None, :]
        dropout_p = self.attention_dropout if self.training else 0.0
        if output_attentions or self.attn_implementation == "eager":
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if attn_bias is not None:
                scores = scores + attn_bias
            scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
            probs = torch.softmax(scores, dim=-1)
            context = torch.matmul(F.dropout(probs, dropout_p, self.training), v)
        else:
            mask = torch.zeros(keep.shape, dtype=q.dtype, device=q.device).masked_fill(~keep, torch.finfo(q.dtype).min)
            if attn_bias is not None:
                mask = mask + attn_bias.to(q.dtype)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
            probs = None
        batch, _, length, _ = context.shape
        context = context.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.out_proj(context), probs


class PreLNTransformerLayer(GradientCheckpointingLayer):
    """Pre-LN block (CCMD eq. 3-5): X' = MHA(LN(X)) + X ; X_next = FFN(LN(X')) + X'.

    A `GradientCheckpointingLayer`: `model.gradient_checkpointing_enable()` recomputes it in the backward pass
    (callers pass the tensors positionally, as the reentrant checkpoint needs)."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        ffn_size: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        head_dim: int | None = None,
        attn_implementation: str = "sdpa",
    ) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(hidden_size)
        self.attention = MultiheadSelfAttention(
            hidden_size, num_heads, head_dim, attention_dropout, attn_implementation
        )
        self.ffn_norm = nn.LayerNorm(hidden_size)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_size, ffn_size),
            nn.GELU(),
            nn.Dropout(activation_dropout),
            nn.Linear(ffn_size, hidden_size),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_padding_mask: torch.Tensor,
        attn_bias: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, probs = self.attention(self.attn_norm(hidden_states), key_padding_mask, attn_bias, output_attentions)
        hidden_states = hidden_states + self.dropout(attended)
        hidden_states = hidden_states + self.dropout(self.ffn(self.ffn_norm(hidden_states)))
        return hidden_states, probs


def init_transformer_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT-style init used by every transformer family's `_init_weights`."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
