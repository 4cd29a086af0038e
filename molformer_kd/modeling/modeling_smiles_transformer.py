"""SMILES Transformer students: ST-KD (structure position embeddings + biased attention layers) and ST-BASE.

ST-KD (ST-KD §3): the input is `[V]`, the n atom tokens in SMILES order, then the m bond tokens. Token j's input
embedding is its token embedding plus a structure position embedding: atom j -> E[j+1], bond (u, v) ->
E[u+1] + E[v+1], `[V]` -> nothing (row 0 of E is the zero padding row), eq. (5)-(7). `num_plain_layers` pre-LN
Transformer layers are followed by `num_biased_layers` biased layers, where head i adds
`M ⊙ B_i`, `B_i = (H W_i^{Q,bias}) (H W_i^{K,bias})^T` to its scaled dot-product scores (eq. 9-10; like the paper
and docs/methods.md §2, B_i is not scaled by 1/sqrt(d_k)). H is the layer's attention input, i.e. after the pre-LN
LayerNorm. `M[i, j] = 1` iff token i is an atom and token j is an atom or the virtual token (eq. 13).

ST-BASE (ST-KD §4.1): regex SMILES tokens with sinusoidal positions (Vaswani et al.), first token global.

Hidden states are the residual stream after the embeddings and after each layer; `last_hidden_state` (and the
pooled token 0) additionally passes the final LayerNorm a pre-LN stack needs before any head.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from .auto import register_family
from .configuration_smiles_transformer import SmilesTransformerConfig
from .heads import PropertyPredictionMixin, build_predictor
from .layers import PreLNTransformerLayer, init_transformer_weights
from .modeling_utils import MolecularPreTrainedModel
from .outputs import MolecularModelOutput

TOKEN_TYPE_VIRTUAL, TOKEN_TYPE_ATOM, TOKEN_TYPE_BOND = 0, 1, 2


def attention_bias_mask(token_type_ids: torch.Tensor) -> torch.Tensor:
    """ST-KD eq. (13) as a (B, L, L) bool mask: True where row i is an atom and column j is an atom or token 0 ([V])."""
    is_atom = token_type_ids == TOKEN_TYPE_ATOM
    allowed_columns = is_atom.clone()
    allowed_columns[:, 0] = True
    return is_atom[:, :, None] & allowed_columns[:, None, :]


def sinusoidal_position_encoding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Vaswani et al. (2017): PE[p, 2k] = sin(p / 10000^(2k/d)), PE[p, 2k+1] = cos(p / 10000^(2k/d))."""
    inverse_frequency = torch.exp(
        torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    angles = positions.to(torch.float32)[..., None] * inverse_frequency
    encoding = torch.zeros(*positions.shape, dim, device=positions.device)
    encoding[..., 0::2] = torch.sin(angles)
    encoding[..., 1::2] = torch.cos(angles)[..., : dim // 2]
    return encoding


class AttentionBiasProjection(nn.Module):
    """Per-head bias projections of one biased layer: returns B (B, heads, L, L), B_i = (H Wq_i)(H Wk_i)^T."""

    def __init__(self, hidden_size: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        # The paper's W^{Q,bias}, W^{K,bias} are plain matrices, hence no bias terms.
        self.query = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.key = nn.Linear(hidden_size, num_heads * head_dim, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        query = self.query(hidden_states).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        key = self.key(hidden_states).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        return query @ key.transpose(-1, -2)


class SmilesTransformerPreTrainedModel(MolecularPreTrainedModel):
    config_class = SmilesTransformerConfig
    base_model_prefix = "smiles_transformer"
    main_input_name = "input_ids"
    input_modality = "smiles"
    supports_gradient_checkpointing = True
    _no_split_modules = ("PreLNTransformerLayer",)

    def _init_weights(self, module: nn.Module):
        super()._init_weights(module)
        init_transformer_weights(module, self.config.initializer_range)

    @classmethod
    def check_input_values(cls, config: SmilesTransformerConfig, batch: Mapping[str, torch.Tensor]) -> None:
        """`input_ids` within the vocabulary, `structure_positions` within the position table (`st_kd`)."""
        input_ids = batch.get("input_ids")
        low, high = (
            (int(input_ids.min()), int(input_ids.max())) if input_ids is not None and input_ids.numel() else (0, 0)
        )
        if high >= config.vocab_size or low < 0:
            raise ValueError(
                f"input_ids hold ids outside the vocabulary [0, {config.vocab_size}) (min {low}, max {high}); "
                "the tokenizer and config.vocab_size differ"
            )
        positions = batch.get("structure_positions")
        if config.variant != "st_kd" or positions is None or not positions.numel():
            return
        if not 0 <= int(positions.min()) <= int(positions.max()) <= config.max_atoms:
            raise ValueError(
                f"structure_positions go up to atom {int(positions.max())} but this model's structure position "
                f"table holds max_atoms={config.max_atoms} atoms; the molecule is too large for it"
            )


class SmilesTransformerModel(SmilesTransformerPreTrainedModel):
    """ST-KD / ST-BASE backbone; returns a `MolecularModelOutput` whose token 0 is the global ([V]/first) token."""

    def __init__(self, config: SmilesTransformerConfig) -> None:
        super().__init__(config)
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        if config.variant == "st_kd":
            # Row 0 is the zero "no position" row of [V] and padding (DESIGN.md: structure_positions).
            self.structure_position_embedding = nn.Embedding(config.max_atoms + 1, config.hidden_size, padding_idx=0)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            PreLNTransformerLayer(
                config.hidden_size,
                config.num_attention_heads,
                config.intermediate_size,
                dropout=config.dropout,
                attention_dropout=config.attention_dropout,
                activation_dropout=config.activation_dropout,
                head_dim=config.head_dim,
                attn_implementation=config.attention_implementation,
            )
            for _ in range(config.num_hidden_layers)
        )
        # attention_bias_projections[k] belongs to layer num_plain_layers + k.
        self.attention_bias_projections = nn.ModuleList(
            AttentionBiasProjection(config.hidden_size, config.num_attention_heads, config.head_dim)
            for _ in range(config.num_biased_layers)
        )
        self.final_layer_norm = nn.LayerNorm(config.hidden_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.token_embedding

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.token_embedding = value

    def _embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, structure_positions: torch.Tensor | None
    ) -> torch.Tensor:
        tokens = self.token_embedding(input_ids)
        if self.config.variant == "st_base":
            # Vaswani et al. scale token embeddings by sqrt(d) so that they are not drowned by the unit-scale sines.
            # Positions count real tokens only, so left and right padding give the same encoding.
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            return tokens * math.sqrt(self.config.hidden_size) + sinusoidal_position_encoding(
                positions, self.config.hidden_size
            ).to(tokens.dtype)
        if structure_positions is None:
            raise ValueError("the 'st_kd' SMILES Transformer needs structure_positions (B, L, 2) from SmilesTokenizer")
        if structure_positions.shape != (*input_ids.shape, 2):
            raise ValueError(
                f"structure_positions must have shape {(*input_ids.shape, 2)} (input_ids + a pair axis), "
                f"got {tuple(structure_positions.shape)}"
            )
        # Atom j: E[j+1] + E[0] = E[j+1]; bond (u, v): E[u+1] + E[v+1]; [V]/pad: E[0] + E[0] = 0.
        return tokens + self.structure_position_embedding(structure_positions).sum(dim=-2)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        structure_positions: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **unused_batch_keys,
    ) -> MolecularModelOutput | tuple:
        r"""
        input_ids (`(B, L)` long): token ids; token 0 of every row is the global token ([V] or the first token).
        attention_mask (`(B, L)`): 1 real, 0 padding (default: all real).
        token_type_ids (`(B, L)` long): 0 virtual, 1 atom, 2 bond; needed by the biased layers (`st_kd`).
        structure_positions (`(B, L, 2)` long): atom j -> (j+1, 0), bond (u, v) -> (u+1, v+1), else (0, 0).
        output_attentions: also return per-layer attention probabilities and, per biased layer, the raw biases
            B (before the mask M), each (B, heads, L, L).
        The other SMILES-batch keys (`atom_token_index`, `atom_mask`, `labels`: distillation maps teacher atom j to
        its token with them) are ignored (`MolecularPreTrainedModel`).
        """
        self.check_unused_batch_keys(unused_batch_keys)
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        self.check_inputs_if_free({"input_ids": input_ids, "structure_positions": structure_positions})
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        key_padding_mask = attention_mask.bool()

        if self.config.num_biased_layers and token_type_ids is None:
            raise ValueError("the SMILES Transformer's biased layers need token_type_ids (0 [V], 1 atom, 2 bond)")
        hidden = self.embedding_dropout(self._embed(input_ids, attention_mask, structure_positions))
        if self.config.num_biased_layers:
            bias_mask = attention_bias_mask(token_type_ids)[:, None].to(hidden.dtype)
        all_hidden = [hidden] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        all_biases = [] if output_attentions else None
        for index, layer in enumerate(self.layers):
            attn_bias = None
            biased_index = index - self.config.num_plain_layers
            if biased_index >= 0:
                # B_i is computed from the attention input H, which in a pre-LN block is LN(hidden).
                raw_bias = self.attention_bias_projections[biased_index](layer.attn_norm(hidden))
                attn_bias = raw_bias * bias_mask
                if output_attentions:
                    all_biases.append(raw_bias)
            hidden, probs = layer(hidden, key_padding_mask, attn_bias, output_attentions)
            if output_hidden_states:
                all_hidden.append(hidden)
            if output_attentions:
                all_attentions.append(probs)
        last_hidden_state = self.final_layer_norm(hidden)
        output = MolecularModelOutput(
            last_hidden_state=last_hidden_state,
            pooler_output=last_hidden_state[:, 0],
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
            attention_biases=tuple(all_biases) if output_attentions and self.config.num_biased_layers else None,
            token_mask=attention_mask,
        )
        return self.wrap_output(output, return_dict)


class SmilesTransformerForMolecularPropertyPrediction(PropertyPredictionMixin, SmilesTransformerPreTrainedModel):
    """ST-KD / ST-BASE with a property head on the global token (regression or classification, NaN-masked)."""

    def __init__(self, config: SmilesTransformerConfig) -> None:
        super().__init__(config)
        self.smiles_transformer = SmilesTransformerModel(config)
        self.head = build_predictor(config)
        self.post_init()


register_family(
    SmilesTransformerConfig, SmilesTransformerModel, property_class=SmilesTransformerForMolecularPropertyPrediction
)
