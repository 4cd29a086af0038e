"""Configuration of the SMILES Transformer students: ST-KD (ST-KD §3) and the ST-BASE baseline (ST-KD §4.1)."""

from __future__ import annotations

from transformers import PretrainedConfig

VARIANTS = ("st_kd", "st_base")

# Sizes only; every other setting keeps its `SmilesTransformerConfig` default unless overridden in `from_preset`.
_PRESETS = {
    # ST-KD Table 6: 3 Transformer layers + 3 biased layers, d = 512, 16 heads, d_k = 32, FFN 2048, dropout 0.1.
    "paper": {
        "variant": "st_kd",
        "num_plain_layers": 3,
        "num_biased_layers": 3,
        "hidden_size": 512,
        "num_attention_heads": 16,
        "head_dim": 32,
        "intermediate_size": 2048,
    },
    # ST-BASE: the paper gives no depth; its 19.1M parameters (Table 1) are those of six plain layers of the same
    # width, i.e. ST-KD without the 3 x 2 bias projections (20.4M).
    "base_paper": {
        "variant": "st_base",
        "num_plain_layers": 6,
        "num_biased_layers": 0,
        "hidden_size": 512,
        "num_attention_heads": 16,
        "head_dim": 32,
        "intermediate_size": 2048,
    },
    # Unit tests and smoke runs.
    "tiny": {
        "variant": "st_kd",
        "num_plain_layers": 1,
        "num_biased_layers": 1,
        "hidden_size": 32,
        "num_attention_heads": 4,
        "head_dim": 8,
        "intermediate_size": 64,
        "max_atoms": 32,
        "dropout": 0.0,
        "attention_dropout": 0.0,
    },
}


class SmilesTransformerConfig(PretrainedConfig):
    r"""
    SMILES Transformer student (`variant="st_kd"`) or the ST-BASE baseline (`variant="st_base"`).

    Args:
        variant (`str`, defaults to `"st_kd"`):
            `"st_kd"`: input is the pre-transformed sequence `[V]`, atoms, bonds (`input_ids`, `token_type_ids`,
            `structure_positions`); positions are the learned structure embeddings of ST-KD eq. (5)-(6), and the
            last `num_biased_layers` layers add the masked attention biases of eq. (9)-(10).
            `"st_base"`: regex SMILES tokens (`input_ids`, `attention_mask`) with sinusoidal positions computed in
            the model; no biased layers.
        vocab_size (`int`): size of the tokenizer's vocabulary (take it from the tokenizer: `len(tokenizer)`).
        pad_token_id (`int`): the tokenizer's padding id (its embedding row is zero).
        hidden_size, num_attention_heads, head_dim, intermediate_size:
            d, h, d_k (None: `hidden_size // num_attention_heads`) and the FFN width.
        num_plain_layers (`int`): standard pre-LN Transformer layers, first.
        num_biased_layers (`int`): biased layers after them (ST-KD §3.3), each with its own per-head bias
            projections W^{Q,bias}, W^{K,bias} of size d x d_k.
        max_atoms (`int`): n_max, the largest atom count the structure position table holds (`st_kd` only).
        dropout, attention_dropout, activation_dropout (`float`):
            Residual/embedding, attention-probability and FFN-activation dropout.
        attn_implementation (`str`): `"sdpa"` (default) or `"eager"`; both compute the same function.
        initializer_range (`float`): std of the normal init of linear and embedding weights.

    Property-head settings (`num_labels`, `problem_type`, `regression_loss`, `label_mean`, `label_std`,
    `label_names`, `head_hidden_size`) are ordinary keyword arguments; see `molformer_kd.modeling.heads`.
    """

    model_type = "molformer_smiles_transformer"

    def __init__(
        self,
        variant: str = "st_kd",
        vocab_size: int = 128,
        pad_token_id: int = 0,
        hidden_size: int = 512,
        num_attention_heads: int = 16,
        head_dim: int | None = None,
        intermediate_size: int = 2048,
        num_plain_layers: int = 3,
        num_biased_layers: int = 3,
        max_atoms: int = 128,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
        attn_implementation: str = "sdpa",
        initializer_range: float = 0.02,
        **kwargs,
    ) -> None:
        # A saved config stores the choice as `attention_implementation` (see below); it wins over the default.
        attn_implementation = kwargs.pop("attention_implementation", attn_implementation)
        if variant not in VARIANTS:
            raise ValueError(f"SmilesTransformerConfig.variant must be one of {VARIANTS}, got {variant!r}")
        if variant == "st_base" and num_biased_layers:
            raise ValueError(
                "SmilesTransformerConfig: variant 'st_base' has no atom/bond token types, so it cannot have biased "
                f"layers; got num_biased_layers={num_biased_layers}"
            )
        if head_dim is None:
            if hidden_size % num_attention_heads:
                raise ValueError(
                    f"SmilesTransformerConfig: hidden_size {hidden_size} is not divisible by num_attention_heads "
                    f"{num_attention_heads}; set head_dim explicitly"
                )
            head_dim = hidden_size // num_attention_heads
        if attn_implementation not in ("sdpa", "eager"):
            raise ValueError(
                f"SmilesTransformerConfig.attn_implementation must be 'sdpa' or 'eager', got {attn_implementation!r}"
            )
        if num_plain_layers < 0 or num_biased_layers < 0 or num_plain_layers + num_biased_layers == 0:
            raise ValueError(
                "SmilesTransformerConfig needs at least one layer and no negative counts, got "
                f"num_plain_layers={num_plain_layers}, num_biased_layers={num_biased_layers}"
            )
        self.variant = variant
        self.vocab_size = vocab_size
        self.pad_token_id = pad_token_id
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.head_dim = head_dim
        self.intermediate_size = intermediate_size
        self.num_plain_layers = num_plain_layers
        self.num_biased_layers = num_biased_layers
        self.max_atoms = max_atoms
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.initializer_range = initializer_range
        # Not passed to PretrainedConfig: its `_attn_implementation` selects transformers' attention registry, while
        # our layers (molformer_kd.modeling.layers) choose between their own SDPA and eager paths.
        self.attention_implementation = attn_implementation
        super().__init__(**kwargs)

    @property
    def num_hidden_layers(self) -> int:
        """All layers, plain then biased (the depth distillation layer pairing counts in)."""
        return self.num_plain_layers + self.num_biased_layers

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> SmilesTransformerConfig:
        """`SmilesTransformerConfig.from_preset("paper" | "base_paper" | "tiny", vocab_size=len(tok), ...)`."""
        if name not in _PRESETS:
            raise ValueError(f"unknown SMILES Transformer preset {name!r}; choose one of {sorted(_PRESETS)}")
        return cls(**{**_PRESETS[name], **kwargs})
