"""Configuration of the GIN / GIN-virtual 2D student (Xu et al. 2019 with OGB's bond-aware GINE convolution)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transformers import PretrainedConfig

from ..tokenization.featurization import ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS

if TYPE_CHECKING:
    from collections.abc import Sequence

POOLINGS = ("virtual", "mean", "sum")
NORMS = ("batch", "layer")

# Sizes only; every other setting keeps its `GINConfig` default unless overridden in `from_preset`.
_PRESETS = {
    # GIN-VIRTUAL of the OGB-LSC PCQM4M baselines that ST-KD Table 1 compares against (5 layers, width 600,
    # 6.7M parameters there; ours has one more virtual-node MLP, see modeling_gin.py).
    "ogb_virtual": {"num_hidden_layers": 5, "hidden_size": 600, "virtual_node": True},
    # Plain GIN of the same table (3.8M parameters), mean-pooled as D&D fine-tunes it.
    "ogb": {"num_hidden_layers": 5, "hidden_size": 600, "virtual_node": False, "pooling": "mean"},
    # CCMD Table IV's GIN student ("L = 3, d = 768").
    "ccmd": {"num_hidden_layers": 3, "hidden_size": 768, "virtual_node": True},
    # Unit tests and smoke runs.
    "tiny": {"num_hidden_layers": 2, "hidden_size": 32, "virtual_node": True},
}


class GINConfig(PretrainedConfig):
    r"""
    Graph Isomorphism Network over the OGB molecular graph, optionally with a virtual node.

    Args:
        hidden_size (`int`): node (and virtual node) width D.
        num_hidden_layers (`int`): GINE layers.
        virtual_node (`bool`): add an OGB-style virtual node that is added to every atom before each layer and
            updated after it from the sum of the layer's atom outputs.
        pooling (`str`): `pooler_output`: `"virtual"` (the virtual node; default when `virtual_node`), `"mean"`
            (default otherwise) or `"sum"` of the last layer's atom states.
        norm (`str`): `"batch"` (BatchNorm with statistics over real atoms only, as OGB) or `"layer"`.
        dropout (`float`): dropout after every layer and in the virtual-node MLP.
        train_eps (`bool`): learn GIN's epsilon (initialised at 0) instead of keeping it 0.
        atom_feature_dims, bond_feature_dims (`list[int]`): OGB vocabulary sizes before the +1 shift.

    Property-head settings (`num_labels`, `problem_type`, `regression_loss`, `label_mean`, `label_std`,
    `label_names`, `head_hidden_size`) are ordinary keyword arguments; see `molformer_kd.modeling.heads`.
    """

    model_type = "molformer_gin"

    def __init__(
        self,
        hidden_size: int = 600,
        num_hidden_layers: int = 5,
        virtual_node: bool = True,
        pooling: str | None = None,
        norm: str = "batch",
        dropout: float = 0.0,
        train_eps: bool = True,
        atom_feature_dims: Sequence[int] = ATOM_FEATURE_DIMS,
        bond_feature_dims: Sequence[int] = BOND_FEATURE_DIMS,
        **kwargs,
    ) -> None:
        if pooling is None:
            pooling = "virtual" if virtual_node else "mean"
        if pooling not in POOLINGS:
            raise ValueError(f"GINConfig.pooling must be one of {POOLINGS}, got {pooling!r}")
        if pooling == "virtual" and not virtual_node:
            raise ValueError("GINConfig: pooling='virtual' needs virtual_node=True")
        if norm not in NORMS:
            raise ValueError(f"GINConfig.norm must be one of {NORMS}, got {norm!r}")
        if num_hidden_layers < 1:
            raise ValueError(f"GINConfig.num_hidden_layers must be >= 1, got {num_hidden_layers}")
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.virtual_node = virtual_node
        self.pooling = pooling
        self.norm = norm
        self.dropout = dropout
        self.train_eps = train_eps
        self.atom_feature_dims = list(atom_feature_dims)
        self.bond_feature_dims = list(bond_feature_dims)
        super().__init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> GINConfig:
        """`GINConfig.from_preset("ogb_virtual" | "ogb" | "ccmd" | "tiny", num_labels=1, ...)`."""
        if name not in _PRESETS:
            raise ValueError(f"unknown GIN preset {name!r}; choose one of {sorted(_PRESETS)}")
        return cls(**{**_PRESETS[name], **kwargs})
