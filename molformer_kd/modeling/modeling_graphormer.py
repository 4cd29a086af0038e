"""Graphormer for molecules: the 2D student/teacher and the 3D teacher of CCMD, with property and denoising heads.

Token 0 is a learned virtual (graph) token, tokens 1..N are the heavy atoms in the batch's atom order. Every layer
is a pre-LN transformer block (CCMD eq. 3-4) sharing one additive per-head attention bias built from the structure:

* 2D (Graphormer, Ying et al. 2021): spatial encoding `b_phi(i, j)` (embedding of the shortest-path distance) +
  multi-hop edge encoding `c_ij = 1/n sum_k x_{e_k} . w_k` (bond features along the shortest path, dotted with a
  learned per-hop matrix, averaged over the path length n); atom tokens get degree embeddings.
* 3D (Graphormer-3D): a Gaussian basis of the interatomic distance after a learned affine map per ordered atom-pair
  type, `psi_ij^k = N(a_t d_ij + b_t; mu_k, sigma_k)`, through an MLP to one bias per head. Only distances enter,
  so the model is invariant to rotations and translations of `pos`.
* 2D+3D (`geometry="2d+3d"`, Transformer-M's two channels): both of the above, their APEs and biases summed.
* every view: absolute position encoding (APE, CCMD eq. 1-2) `X_i^0 = atom_emb(X_i) + MLP(sum_j e_ij)`, with e_ij the
  bond-feature embedding over bonded j (2D) or the distance basis over all other atoms j (3D); and the virtual-token
  distance, one learned scalar per head added to the row and the column of token 0.

Why one long module: one family per `modeling_*.py` (the transformers convention): the 2D and 3D encoders, the
backbone and its property and denoising heads share the layers above and are read together.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .auto import register_family
from .configuration_graphormer import GraphormerConfig
from .heads import PropertyPredictionMixin, build_predictor, denoising_loss
from .layers import CategoricalFeatureEmbedding, PreLNTransformerLayer, check_category_ids, init_transformer_weights
from .modeling_utils import MolecularPreTrainedModel
from .outputs import DenoisingOutput, MolecularModelOutput

_GRAPH_INPUTS_2D = ("in_degree", "out_degree", "spatial_pos", "attn_edge_type", "edge_input")


def _ape_mlp(in_features: int, hidden_size: int) -> nn.Sequential:
    """The MLP of CCMD eq. (2) applied to the summed edge information of each atom."""
    return nn.Sequential(nn.Linear(in_features, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size))


class GraphStructureEncoding(nn.Module):
    """2D encodings: per-atom (degree embeddings + bond-feature APE) and per-pair attention bias (B, heads, N, N)."""

    def __init__(self, config: GraphormerConfig) -> None:
        super().__init__()
        heads = config.num_attention_heads
        self.max_degree = config.max_degree
        self.max_spatial = config.max_spatial
        self.multi_hop_max_dist = config.multi_hop_max_dist
        # degree + 1 is stored, 0 = padding; degrees above max_degree share the last row.
        self.in_degree_embedding = nn.Embedding(config.max_degree + 2, config.hidden_size, padding_idx=0)
        self.out_degree_embedding = nn.Embedding(config.max_degree + 2, config.hidden_size, padding_idx=0)
        self.bond_embedding = CategoricalFeatureEmbedding(
            config.bond_feature_dims, config.hidden_size, "attn_edge_type"
        )
        self.ape_mlp = _ape_mlp(config.hidden_size, config.hidden_size)
        # spatial_pos: 0 pad, distance + 1 up to max_spatial + 1, unreachable max_spatial + 2.
        self.spatial_embedding = nn.Embedding(config.max_spatial + 3, heads, padding_idx=0)
        self.edge_embedding = CategoricalFeatureEmbedding(config.bond_feature_dims, heads, "edge_input")
        # w_k of the edge encoding: one (heads x heads) matrix per hop along the path.
        self.hop_weights = nn.Parameter(torch.empty(config.multi_hop_max_dist, heads, heads))

    def forward(
        self,
        in_degree: torch.Tensor,
        out_degree: torch.Tensor,
        spatial_pos: torch.Tensor,
        attn_edge_type: torch.Tensor,
        edge_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        node = self.in_degree_embedding(in_degree.clamp(max=self.max_degree + 1))
        node = node + self.out_degree_embedding(out_degree.clamp(max=self.max_degree + 1))
        node = node + self.ape_mlp(self.bond_embedding.sum_over(attn_edge_type, dim=2))

        bias = self.spatial_embedding(spatial_pos)  # (B, N, N, heads)
        hops = min(self.multi_hop_max_dist, edge_input.shape[3])
        # Mean over the bond-feature columns of each bond on the path (Graphormer), then x_{e_k} . w_k per hop.
        path = self.edge_embedding(edge_input[:, :, :, :hops]) / len(self.edge_embedding.tables)
        path = torch.einsum("bijkh,khg->bijg", path, self.hop_weights[:hops])
        # Path length n = shortest-path distance (spatial_pos - 1), counted up to `hops` bonds; pairs with no path
        # bonds (self, padding) have a zero sum and divide by 1.
        path_length = (spatial_pos - 1).clamp(min=1, max=hops).unsqueeze(-1).to(path.dtype)
        bias = bias + path / path_length
        return node, bias.permute(0, 3, 1, 2)


class GaussianDistanceBasis(nn.Module):
    """Graphormer-3D Gaussian basis: psi_ij^k = N(a_t d_ij + b_t; mu_k, |sigma_k|), t = ordered pair type of (i, j)."""

    def __init__(self, num_gaussians: int, num_atom_types: int) -> None:
        super().__init__()
        self.num_atom_types = num_atom_types
        self.means = nn.Parameter(torch.empty(num_gaussians))
        self.stds = nn.Parameter(torch.empty(num_gaussians))
        self.pair_scale = nn.Parameter(torch.empty(num_atom_types * num_atom_types))
        self.pair_shift = nn.Parameter(torch.empty(num_atom_types * num_atom_types))

    def reset_parameters(self) -> None:
        # Graphormer-3D: centres and widths uniform in [0, 3] Angstrom, identity affine map per pair type.
        nn.init.uniform_(self.means, 0.0, 3.0)
        nn.init.uniform_(self.stds, 0.0, 3.0)
        nn.init.ones_(self.pair_scale)
        nn.init.zeros_(self.pair_shift)

    def forward(self, distance: torch.Tensor, atom_types: torch.Tensor) -> torch.Tensor:
        """distance (B, N, N), atom_types (B, N) long in [0, num_atom_types) -> (B, N, N, num_gaussians), float32."""
        pair_type = atom_types.unsqueeze(2) * self.num_atom_types + atom_types.unsqueeze(1)
        x = self.pair_scale[pair_type] * distance.float() + self.pair_shift[pair_type]
        std = self.stds.float().abs() + 1e-5
        z = (x.unsqueeze(-1) - self.means.float()) / std
        return torch.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * std)


def pairwise_geometry(pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances (B, N, N) and unit vectors (r_i - r_j)/|r_i - r_j| (B, N, N, 3), both 0 where i and j coincide
    (no NaN gradient at zero distance)."""
    delta = pos.unsqueeze(2) - pos.unsqueeze(1)
    squared = (delta * delta).sum(-1)
    nonzero = squared > 0
    distance = torch.where(nonzero, squared.clamp(min=1e-12).sqrt(), torch.zeros_like(squared))
    unit = torch.where(nonzero.unsqueeze(-1), delta / distance.clamp(min=1e-6).unsqueeze(-1), torch.zeros_like(delta))
    return distance, unit


class GeometryEncoding(nn.Module):
    """3D encodings: per-atom distance APE and per-pair attention bias (B, heads, N, N) from the Gaussian basis."""

    def __init__(self, config: GraphormerConfig) -> None:
        super().__init__()
        self.basis = GaussianDistanceBasis(config.num_gaussians, config.num_atom_types)
        self.bias_mlp = nn.Sequential(
            nn.Linear(config.num_gaussians, config.num_gaussians),
            nn.GELU(),
            nn.Linear(config.num_gaussians, config.num_attention_heads),
        )
        self.ape_mlp = _ape_mlp(config.num_gaussians, config.hidden_size)

    def forward(
        self, pos: torch.Tensor, atom_types: torch.Tensor, atom_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        distance, _ = pairwise_geometry(pos)
        basis = self.basis(distance, atom_types)  # (B, N, N, K)
        # APE over all *other* real atoms j (CCMD eq. 2, 3D view).
        others = atom_mask.unsqueeze(1) & atom_mask.unsqueeze(2)
        others = others & ~torch.eye(atom_mask.shape[1], dtype=torch.bool, device=atom_mask.device)
        summed = (basis * others.unsqueeze(-1).to(basis.dtype)).sum(2)
        dtype = self.ape_mlp[0].weight.dtype
        node = self.ape_mlp(summed.to(dtype))
        bias = self.bias_mlp(basis.to(dtype)).permute(0, 3, 1, 2)
        return node, bias


class GraphormerPreTrainedModel(MolecularPreTrainedModel):
    config_class = GraphormerConfig
    base_model_prefix = "graphormer"
    main_input_name = "input_nodes"
    input_modality = "graph"
    supports_gradient_checkpointing = True
    _no_split_modules = ("PreLNTransformerLayer",)

    def _init_weights(self, module: nn.Module):
        super()._init_weights(module)
        init_transformer_weights(module, std=self.config.initializer_range)
        if isinstance(module, GaussianDistanceBasis):
            module.reset_parameters()
        elif isinstance(module, GraphStructureEncoding):
            nn.init.normal_(module.hop_weights, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, GraphormerModel):
            nn.init.normal_(module.graph_token, mean=0.0, std=self.config.initializer_range)
            nn.init.normal_(module.virtual_distance, mean=0.0, std=self.config.initializer_range)

    @classmethod
    def check_input_values(cls, config: GraphormerConfig, batch: Mapping[str, torch.Tensor]) -> None:
        """Feature ids within the config's vocabularies, `spatial_pos` within `max_spatial`, 3D atom types below
        `num_atom_types` (the checks of the views the config reads; absent keys are skipped)."""
        input_nodes = batch.get("input_nodes")
        if input_nodes is not None:
            check_category_ids(input_nodes, config.atom_feature_dims, "input_nodes")
        if config.reads_graph:
            spatial_pos = batch.get("spatial_pos")
            if spatial_pos is not None and spatial_pos.numel() and int(spatial_pos.max()) > config.max_spatial + 2:
                raise ValueError(
                    f"spatial_pos holds {int(spatial_pos.max())} but this model has max_spatial={config.max_spatial} "
                    f"(values up to {config.max_spatial + 2}); collate with the model's max_spatial"
                )
            for key in ("attn_edge_type", "edge_input"):
                if batch.get(key) is not None:
                    check_category_ids(batch[key], config.bond_feature_dims, key)
        atom_types = input_nodes[..., 0] if config.reads_coordinates and input_nodes is not None else None
        if atom_types is not None and atom_types.numel() and int(atom_types.max()) >= config.num_atom_types:
            raise ValueError(
                f"atom type {int(atom_types.max())} (input_nodes[..., 0]) is >= num_atom_types {config.num_atom_types}"
            )


class GraphormerModel(GraphormerPreTrainedModel):
    """Graphormer backbone; `config.geometry` selects the 2D (graph), 3D (coordinates) or both encodings.

    Inputs follow the graph batch of DESIGN.md. 2D needs `input_nodes`, `attention_mask`, `in_degree`, `out_degree`,
    `spatial_pos`, `attn_edge_type`, `edge_input`; 3D needs `input_nodes`, `attention_mask`, `pos`; 2D+3D all of
    them. The other
    batch keys (`edge_index`, `edge_attr`, `labels`, and `pos` / the 2D keys for the other view) are accepted and
    ignored (`MolecularPreTrainedModel`), so a collated batch can be passed as `model(**batch)`.

    `hidden_states` holds the embedding output and each layer's output (before the final LayerNorm, which is
    applied to `last_hidden_state` only); `attentions` the post-softmax probabilities of each layer.
    """

    def __init__(self, config: GraphormerConfig) -> None:
        super().__init__(config)
        self.geometry = config.geometry
        self.num_heads = config.num_attention_heads
        self.atom_embedding = CategoricalFeatureEmbedding(config.atom_feature_dims, config.hidden_size, "input_nodes")
        if config.reads_graph:
            self.structure_encoding = GraphStructureEncoding(config)
        if config.reads_coordinates:
            self.geometry_encoding = GeometryEncoding(config)
        self.graph_token = nn.Parameter(torch.empty(1, 1, config.hidden_size))
        self.virtual_distance = nn.Parameter(torch.empty(config.num_attention_heads))
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.layers = nn.ModuleList(
            PreLNTransformerLayer(
                config.hidden_size,
                config.num_attention_heads,
                config.ffn_size,
                dropout=config.dropout,
                attention_dropout=config.attention_dropout,
                activation_dropout=config.activation_dropout,
                attn_implementation=config.attention_implementation,
            )
            for _ in range(config.num_hidden_layers)
        )
        self.final_layer_norm = nn.LayerNorm(config.hidden_size)
        self.post_init()

    def set_attention_implementation(self, implementation: str) -> None:
        """Switch every layer between "sdpa" and "eager" (same function, eager also returns probabilities)."""
        if implementation not in ("sdpa", "eager"):
            raise ValueError(f"attention implementation must be 'sdpa' or 'eager', got {implementation!r}")
        self.config.attention_implementation = implementation
        for layer in self.layers:
            layer.attention.attn_implementation = implementation

    def _encode_structure(
        self,
        input_nodes: torch.Tensor,
        atom_mask: torch.Tensor,
        pos: torch.Tensor | None,
        graph_inputs: Mapping[str, torch.Tensor],
    ):
        """Per-atom structural embedding (B, N, D) and per-pair attention bias (B, heads, N, N) of the configured
        view(s); with both views the two embeddings and the two biases are summed."""
        encodings = []
        if self.config.reads_graph:
            missing = [name for name in _GRAPH_INPUTS_2D if graph_inputs[name] is None]
            if missing:
                raise ValueError(
                    f"a Graphormer with geometry {self.geometry!r} needs the graph batch keys {missing} "
                    "(see DESIGN.md 'Graph batch')"
                )
            encodings.append(self.structure_encoding(**graph_inputs))
        if self.config.reads_coordinates:
            if pos is None:
                raise ValueError(f"a Graphormer with geometry {self.geometry!r} needs `pos` (B, N, 3) atom coordinates")
            if pos.shape != (*input_nodes.shape[:2], 3):
                raise ValueError(
                    f"pos must have shape {(*input_nodes.shape[:2], 3)} to match input_nodes, got {tuple(pos.shape)}"
                )
            encodings.append(self.geometry_encoding(pos, input_nodes[..., 0], atom_mask))
        if len(encodings) == 1:
            return encodings[0]
        (node_2d, bias_2d), (node_3d, bias_3d) = encodings
        return node_2d + node_3d, bias_2d + bias_3d

    def _with_virtual_token(self, atom_bias: torch.Tensor) -> torch.Tensor:
        """Pad the atom-pair bias with token 0's row and column, both set to the learned virtual distance."""
        bias = F.pad(atom_bias, (1, 0, 1, 0))
        length = bias.shape[-1]
        is_virtual = torch.zeros(length, length, dtype=bias.dtype, device=bias.device)
        is_virtual[0, :] = 1
        is_virtual[:, 0] = 1
        return bias + self.virtual_distance.to(bias.dtype).view(1, -1, 1, 1) * is_virtual

    def encode(
        self,
        input_nodes: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        in_degree: torch.Tensor | None = None,
        out_degree: torch.Tensor | None = None,
        spatial_pos: torch.Tensor | None = None,
        attn_edge_type: torch.Tensor | None = None,
        edge_input: torch.Tensor | None = None,
        pos: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> tuple[MolecularModelOutput, torch.Tensor]:
        """The forward pass; also returns the atom-pair attention bias (B, heads, N, N) for heads that reuse it."""
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        if input_nodes.dim() != 3:
            raise ValueError(f"input_nodes must be (B, N, num_atom_features), got shape {tuple(input_nodes.shape)}")
        if attention_mask is None:
            attention_mask = input_nodes[..., 0] > 0
        atom_mask = attention_mask.bool()
        graph_inputs = {
            "in_degree": in_degree,
            "out_degree": out_degree,
            "spatial_pos": spatial_pos,
            "attn_edge_type": attn_edge_type,
            "edge_input": edge_input,
        }
        self.check_inputs_if_free({"input_nodes": input_nodes, **graph_inputs})
        structure, atom_bias = self._encode_structure(input_nodes, atom_mask, pos, graph_inputs)
        atoms = self.atom_embedding(input_nodes) + structure
        batch = atoms.shape[0]
        hidden = torch.cat([self.graph_token.expand(batch, -1, -1).to(atoms.dtype), atoms], dim=1)
        hidden = self.embedding_dropout(hidden)
        token_mask = F.pad(atom_mask, (1, 0), value=True)
        attn_bias = self._with_virtual_token(atom_bias)

        all_hidden = (hidden,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden, probs = layer(hidden, token_mask, attn_bias, output_attentions=output_attentions)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden,)
            if output_attentions:
                all_attentions = all_attentions + (probs,)
        last = self.final_layer_norm(hidden)
        outputs = MolecularModelOutput(
            last_hidden_state=last,
            pooler_output=last[:, 0],
            hidden_states=all_hidden,
            attentions=all_attentions,
            token_mask=token_mask,
        )
        return outputs, atom_bias

    def forward(
        self,
        input_nodes: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        in_degree: torch.Tensor | None = None,
        out_degree: torch.Tensor | None = None,
        spatial_pos: torch.Tensor | None = None,
        attn_edge_type: torch.Tensor | None = None,
        edge_input: torch.Tensor | None = None,
        pos: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **unused_batch_keys,
    ) -> MolecularModelOutput | tuple:
        # edge_index / edge_attr (the GIN view of the batch) carry nothing the dense inputs lack.
        self.check_unused_batch_keys(unused_batch_keys)
        outputs, _ = self.encode(
            input_nodes,
            attention_mask,
            in_degree,
            out_degree,
            spatial_pos,
            attn_edge_type,
            edge_input,
            pos,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        return self.wrap_output(outputs, return_dict)


class GraphormerForMolecularPropertyPrediction(PropertyPredictionMixin, GraphormerPreTrainedModel):
    """Graphormer + MLP on the virtual token (CCMD eq. 5); L1 loss by default (eq. 6-7)."""

    def __init__(self, config: GraphormerConfig) -> None:
        super().__init__(config)
        self.graphormer = GraphormerModel(config)
        self.head = build_predictor(config)
        self.post_init()


class EquivariantNoiseHead(nn.Module):
    """Per-atom 3-vectors `eps_i = sum_j w_ij (r_i - r_j)/|r_i - r_j|` with invariant weights
    `w_ij = sum_h softmax_j(q_i.k_j / sqrt(d) + bias_hij) s_hj` (Graphormer-3D's node head with one projection
    shared by the three axes, which makes it rotation-equivariant and translation-invariant)."""

    def __init__(self, config: GraphormerConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.value_proj = nn.Linear(config.hidden_size, config.num_attention_heads)

    def forward(
        self, atom_states: torch.Tensor, pos: torch.Tensor, atom_mask: torch.Tensor, pair_bias: torch.Tensor
    ) -> torch.Tensor:
        batch, length, _ = atom_states.shape
        q = self.q_proj(atom_states).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(atom_states).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + pair_bias.to(q.dtype)
        scores = scores.masked_fill(~atom_mask[:, None, None, :], torch.finfo(scores.dtype).min)
        probs = scores.softmax(-1)  # (B, heads, N, N)
        values = self.value_proj(atom_states).transpose(1, 2)  # (B, heads, N): s_hj
        weights = (probs * values.unsqueeze(2)).sum(1)  # (B, N, N): w_ij
        _, unit = pairwise_geometry(pos)
        vectors = torch.einsum("bij,bijc->bic", weights, unit.to(weights.dtype))
        return vectors * atom_mask.unsqueeze(-1).to(vectors.dtype)


class GraphormerForDenoising(GraphormerPreTrainedModel):
    """3D Graphormer that predicts the coordinate noise per atom (D&D stage 1).

    `forward(input_nodes, attention_mask, pos=noisy_pos, noise=eps)`: `pos` are the perturbed coordinates
    (`add_coordinate_noise`), `noise` the true eps; loss = mean over real atoms of ||eps_hat_i - eps_i||^2 (eq. 5).
    """

    def __init__(self, config: GraphormerConfig) -> None:
        if config.geometry != "3d":
            raise ValueError(f"GraphormerForDenoising needs a 3D config (geometry='3d'), got {config.geometry!r}")
        super().__init__(config)
        self.graphormer = GraphormerModel(config)
        self.noise_head = EquivariantNoiseHead(config)
        self.post_init()

    def forward(
        self,
        input_nodes: torch.Tensor,
        pos: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **unused_batch_keys,
    ) -> DenoisingOutput | tuple:
        # The remaining graph-batch keys (2D view, GIN edges, labels) are unused by the denoising task.
        self.check_unused_batch_keys(unused_batch_keys)
        outputs, pair_bias = self.graphormer.encode(
            input_nodes,
            attention_mask,
            pos=pos,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        atom_mask = outputs.token_mask[:, 1:]
        noise_pred = self.noise_head(outputs.last_hidden_state[:, 1:], pos, atom_mask, pair_bias)
        loss = None if noise is None else denoising_loss(noise_pred, noise, atom_mask)
        output = DenoisingOutput(
            loss=loss,
            noise_pred=noise_pred,
            pooler_output=outputs.pooler_output,
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            token_mask=outputs.token_mask,
        )
        return self.wrap_output(output, return_dict)


register_family(
    GraphormerConfig,
    GraphormerModel,
    property_class=GraphormerForMolecularPropertyPrediction,
    denoising_class=GraphormerForDenoising,
)
