"""Configuration of the Graphormer teacher/student (CCMD §III, ST-KD §4.1; 3D encodings as in Graphormer-3D)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transformers import PretrainedConfig

from ..tokenization.featurization import ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS

if TYPE_CHECKING:
    from collections.abc import Sequence

# Sizes only; every other setting keeps its `GraphormerConfig` default unless overridden in `from_preset`.
_PRESETS = {
    # Graphormer on PCQM4M (Ying et al. 2021) as used by CCMD ("L = 12, d = 768") and ST-KD ("12 layers, hidden
    # dimension 768 and 32 attention heads"); the PCQM recipe uses an FFN as wide as the model and attention /
    # activation dropout 0.1.
    "paper": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 32, "ffn_size": 768},
    # A quarter-depth, half-width variant for single-GPU experiments.
    "small": {"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12, "ffn_size": 384},
    # Unit tests and smoke runs.
    "tiny": {
        "num_hidden_layers": 2,
        "hidden_size": 32,
        "num_attention_heads": 4,
        "ffn_size": 32,
        "num_gaussians": 16,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
    },
}


# The views a Graphormer can encode: the graph, the coordinates, or both (see `geometry` below).
GEOMETRIES = ("2d", "3d", "2d+3d")


class GraphormerConfig(PretrainedConfig):
    r"""
    Graphormer for molecules, in a 2D (graph) or 3D (coordinates) view.

    Args:
        geometry (`str`, *optional*, defaults to `"2d"`):
            `"2d"`: structural encodings from the molecular graph (degree, shortest-path distance, multi-hop edge
            encoding, bond-feature APE). `"3d"`: encodings from the interatomic distances of `pos` (Gaussian basis
            with per-atom-pair-type affine transform, distance APE); invariant to rotation and translation.
            `"2d+3d"`: both, summed (the 2D and 3D channels of Transformer-M, Luo et al. 2023): a teacher that
            sees the bonds the 2D student sees and the geometry on top, instead of re-learning bond orders from
            distances.
        hidden_size, num_hidden_layers, num_attention_heads, ffn_size:
            Transformer sizes (defaults: the paper preset, 12 x 768, 32 heads, FFN 768).
        dropout, attention_dropout, activation_dropout (`float`):
            Residual, attention-probability and FFN-activation dropout.
        embedding_dropout (`float`): dropout on the input token embeddings.
        max_degree (`int`): degree embedding rows (degrees above are clamped to the last row).
        max_spatial (`int`): largest shortest-path distance with its own embedding; the collator stores
            `distance + 1` capped at `max_spatial + 1`, unreachable pairs as `max_spatial + 2`.
        multi_hop_max_dist (`int`): number of bonds along the shortest path used by the edge encoding.
        num_gaussians (`int`): size of the 3D Gaussian distance basis.
        num_atom_types (`int`): atom types for the 3D pair types (types are the atomic-number column of
            `input_nodes`, i.e. atomic number, 0 = padding); pair type = `type_i * num_atom_types + type_j`.
        atom_feature_dims, bond_feature_dims (`list[int]`): OGB vocabulary sizes before the +1 shift (defaults:
            `tokenization.featurization.ATOM_FEATURE_DIMS` / `BOND_FEATURE_DIMS`, stored in the config so that a
            saved checkpoint describes its own embedding tables).
        attn_implementation (`str`): `"sdpa"` (default) or `"eager"`; both compute the same function. Stored as
            `config.attention_implementation`.
        initializer_range (`float`): std of the normal init of linear and embedding weights.

    Property-head settings (`num_labels`, `problem_type`, `regression_loss`, `label_mean`, `label_std`,
    `label_names`, `head_hidden_size`) are ordinary keyword arguments; see `molformer_kd.modeling.heads`.
    """

    model_type = "molformer_graphormer"

    def __init__(
        self,
        geometry: str = "2d",
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 32,
        ffn_size: int = 768,
        dropout: float = 0.0,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.1,
        embedding_dropout: float = 0.0,
        max_degree: int = 64,
        max_spatial: int = 20,
        multi_hop_max_dist: int = 5,
        num_gaussians: int = 128,
        num_atom_types: int = ATOM_FEATURE_DIMS[0] + 1,
        atom_feature_dims: Sequence[int] = ATOM_FEATURE_DIMS,
        bond_feature_dims: Sequence[int] = BOND_FEATURE_DIMS,
        attn_implementation: str = "sdpa",
        initializer_range: float = 0.02,
        **kwargs,
    ) -> None:
        # A saved config stores the choice as `attention_implementation` (see below); it wins over the default.
        attn_implementation = kwargs.pop("attention_implementation", attn_implementation)
        if geometry not in GEOMETRIES:
            raise ValueError(f"GraphormerConfig.geometry must be one of {GEOMETRIES}, got {geometry!r}")
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"GraphormerConfig: hidden_size {hidden_size} is not divisible by num_attention_heads "
                f"{num_attention_heads}"
            )
        if attn_implementation not in ("sdpa", "eager"):
            raise ValueError(
                f"GraphormerConfig.attn_implementation must be 'sdpa' or 'eager', got {attn_implementation!r}"
            )
        if multi_hop_max_dist < 1:
            raise ValueError(f"GraphormerConfig.multi_hop_max_dist must be >= 1, got {multi_hop_max_dist}")
        self.geometry = geometry
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.ffn_size = ffn_size
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.embedding_dropout = embedding_dropout
        self.max_degree = max_degree
        self.max_spatial = max_spatial
        self.multi_hop_max_dist = multi_hop_max_dist
        self.num_gaussians = num_gaussians
        self.num_atom_types = num_atom_types
        self.atom_feature_dims = list(atom_feature_dims)
        self.bond_feature_dims = list(bond_feature_dims)
        self.initializer_range = initializer_range
        # Not passed to PretrainedConfig: its `_attn_implementation` selects transformers' attention registry, while
        # our layers (molformer_kd.modeling.layers) choose between their own SDPA and eager paths.
        self.attention_implementation = attn_implementation
        super().__init__(**kwargs)

    @property
    def reads_graph(self) -> bool:
        """Whether the model reads the 2D graph encodings (degree, shortest paths, path bonds)."""
        return self.geometry in ("2d", "2d+3d")

    @property
    def reads_coordinates(self) -> bool:
        """Whether the model reads `pos` (a 3D teacher: its data needs coordinates)."""
        return self.geometry in ("3d", "2d+3d")

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> GraphormerConfig:
        """`GraphormerConfig.from_preset("paper" | "small" | "tiny", geometry="3d", num_labels=1, ...)`."""
        if name not in _PRESETS:
            raise ValueError(f"unknown Graphormer preset {name!r}; choose one of {sorted(_PRESETS)}")
        return cls(**{**_PRESETS[name], **kwargs})
