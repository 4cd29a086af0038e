"""GIN and GIN-virtual 2D students (Xu et al. 2019; OGB's GINE variant with bond features; CCMD Table IV, D&D).

Layer l (GINE): h_i' = MLP((1 + eps) x_i + sum_{j -> i} ReLU(x_j + e_ij)), then a norm, a ReLU (not after the last
layer, as in OGB) and dropout, where x = h + the molecule's virtual node when there is one, and e_ij is the layer's
own embedding of the bond features. The virtual node starts from a learned vector (zero-initialised, as in OGB) and
after layer l becomes MLP_l(sum_i h_i' + vn), so the global token of every hidden state summarises the atom states
next to it (OGB pools the layer input instead, which leaves its final virtual node one layer behind the atoms).

Message passing runs on the real atoms only, packed out of the padded (B, N) grid of the graph batch, so padding
can neither receive messages nor enter BatchNorm statistics; outputs are scattered back onto the padded grid. The
packing needs the number of real atoms on the host: one `nonzero` per forward, the only synchronisation on a GPU
(the value checks of `check_input_values` run in `forward` on CPU inputs only; tests/test_model_contract.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from .auto import register_family
from .configuration_gin import GINConfig
from .heads import PropertyPredictionMixin, build_predictor
from .layers import CategoricalFeatureEmbedding, check_category_ids
from .modeling_utils import MolecularPreTrainedModel
from .outputs import MolecularModelOutput


def _norm(kind: str, width: int) -> nn.Module:
    return nn.BatchNorm1d(width) if kind == "batch" else nn.LayerNorm(width)


class GINEConv(nn.Module):
    """One GINE convolution on packed atoms: MLP((1 + eps) x_i + sum_{j -> i} ReLU(x_j + e_ji))."""

    def __init__(self, config: GINConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.bond_embedding = CategoricalFeatureEmbedding(config.bond_feature_dims, width, "edge_attr")
        self.eps = nn.Parameter(torch.zeros(1)) if config.train_eps else None
        # D -> D -> D as in the OGB-LSC PCQM4M GIN baselines ST-KD compares with (3.8M / 6.7M parameters).
        self.mlp = nn.Sequential(nn.Linear(width, width), _norm(config.norm, width), nn.ReLU(), nn.Linear(width, width))

    def forward(
        self, atoms: torch.Tensor, source: torch.Tensor, target: torch.Tensor, edge_attr: torch.Tensor
    ) -> torch.Tensor:
        messages = F.relu(atoms[source] + self.bond_embedding(edge_attr))
        # Accumulate in the messages' dtype: under autocast the atoms (a norm's output) and the messages (with the
        # float32 bond embedding) can differ.
        aggregated = messages.new_zeros(atoms.shape).index_add_(0, target, messages)
        own = atoms if self.eps is None else (1 + self.eps) * atoms
        return self.mlp(own + aggregated)


class GINPreTrainedModel(MolecularPreTrainedModel):
    config_class = GINConfig
    base_model_prefix = "gin"
    main_input_name = "input_nodes"
    input_modality = "graph"

    def _init_weights(self, module: nn.Module):
        super()._init_weights(module)
        # PyTorch-Geometric/OGB practice: Glorot for linear maps and feature embeddings, zero virtual node and eps.
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.xavier_uniform_(module.weight)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, (nn.BatchNorm1d, nn.LayerNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm1d):
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, GINEConv) and module.eps is not None:
            init.zeros_(module.eps)
        elif isinstance(module, GINModel) and module.virtual_node is not None:
            init.zeros_(module.virtual_node)

    @classmethod
    def check_input_values(cls, config: GINConfig, batch: Mapping[str, torch.Tensor]) -> None:
        """Atom and bond feature ids within the config's vocabularies, every edge between real atoms of the grid."""
        if "input_nodes" in batch:
            check_category_ids(batch["input_nodes"], config.atom_feature_dims, "input_nodes")
        if "edge_attr" in batch:
            check_category_ids(batch["edge_attr"], config.bond_feature_dims, "edge_attr")
        attention_mask, edge_index = batch.get("attention_mask"), batch.get("edge_index")
        if attention_mask is None or edge_index is None or not edge_index.numel():
            return
        batch_size, max_atoms = attention_mask.shape
        outside = (edge_index < 0) | (edge_index >= batch_size * max_atoms)
        if not outside.any():
            outside = ~attention_mask.bool().reshape(-1)[edge_index]
        if outside.any():
            edge = int(outside.any(dim=0).nonzero()[0])
            raise ValueError(
                f"edge_index column {edge} ({edge_index[:, edge].tolist()}) does not point at real atoms of the "
                f"padded grid (b * {max_atoms} + i with attention_mask[b, i] == 1)"
            )


class GINModel(GINPreTrainedModel):
    """GIN backbone; `last_hidden_state` (B, 1+N, D) has the virtual node (or the atom mean) as token 0."""

    def __init__(self, config: GINConfig) -> None:
        super().__init__(config)
        width = config.hidden_size
        self.atom_embedding = CategoricalFeatureEmbedding(config.atom_feature_dims, width, "input_nodes")
        self.convs = nn.ModuleList(GINEConv(config) for _ in range(config.num_hidden_layers))
        self.norms = nn.ModuleList(_norm(config.norm, width) for _ in range(config.num_hidden_layers))
        if config.virtual_node:
            self.virtual_node = nn.Parameter(torch.zeros(width))
            self.virtual_node_mlps = nn.ModuleList(
                nn.Sequential(
                    nn.Linear(width, width),
                    _norm(config.norm, width),
                    nn.ReLU(),
                    nn.Linear(width, width),
                    _norm(config.norm, width),
                    nn.ReLU(),
                )
                for _ in range(config.num_hidden_layers)
            )
        else:
            self.virtual_node = None
        self.dropout = nn.Dropout(config.dropout)
        self.post_init()

    @staticmethod
    def _pack(attention_mask: torch.Tensor, edge_index: torch.Tensor):
        """Real atoms out of the padded grid: (flat grid index of each real atom, graph of each atom, edge source
        and target as packed indices)."""
        max_atoms = attention_mask.shape[1]
        real = attention_mask.bool().reshape(-1)
        atom_positions = real.nonzero().squeeze(1)
        packed_index = torch.where(real, real.cumsum(0) - 1, -1)
        source, target = packed_index[edge_index]
        return atom_positions, atom_positions // max_atoms, source, target

    def forward(
        self,
        input_nodes: torch.Tensor,
        attention_mask: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **unused_batch_keys,
    ) -> MolecularModelOutput | tuple:
        r"""
        input_nodes (`(B, N, 9)` long), attention_mask (`(B, N)`), edge_index (`(2, E)` flat `b * N + i`),
        edge_attr (`(E, 3)` long): the graph batch of DESIGN.md. Messages flow from `edge_index[0]` to
        `edge_index[1]` (the collator lists both directions of every bond). GIN has no attention:
        `output_attentions` is accepted for a uniform interface and `attentions` stays None. The other graph-batch
        keys are ignored (`MolecularPreTrainedModel`).
        """
        self.check_unused_batch_keys(unused_batch_keys)
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
        self.check_inputs_if_free(
            {
                "input_nodes": input_nodes,
                "attention_mask": attention_mask,
                "edge_index": edge_index,
                "edge_attr": edge_attr,
            }
        )
        batch, max_atoms = attention_mask.shape
        atom_positions, graph_of_atom, source, target = self._pack(attention_mask, edge_index)
        atom_counts = attention_mask.sum(dim=1, keepdim=True)

        def sum_pool(atoms: torch.Tensor) -> torch.Tensor:
            return atoms.new_zeros(batch, atoms.shape[-1]).index_add_(0, graph_of_atom, atoms)

        def mean_pool(atoms: torch.Tensor) -> torch.Tensor:
            return sum_pool(atoms) / atom_counts.clamp(min=1).to(atoms.dtype)

        def padded_states(atoms: torch.Tensor, virtual: torch.Tensor) -> torch.Tensor:
            grid = atoms.new_zeros(batch * max_atoms, atoms.shape[-1])
            grid[atom_positions] = atoms
            global_token = virtual if virtual is not None else mean_pool(atoms)
            return torch.cat([global_token[:, None], grid.view(batch, max_atoms, -1)], dim=1)

        atoms = self.atom_embedding(input_nodes.reshape(batch * max_atoms, -1)[atom_positions])
        virtual = self.virtual_node.expand(batch, -1) if self.virtual_node is not None else None
        all_hidden = [padded_states(atoms, virtual)] if output_hidden_states else None
        last_layer = self.config.num_hidden_layers - 1
        for index, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            layer_input = atoms if virtual is None else atoms + virtual[graph_of_atom]
            atoms = norm(conv(layer_input, source, target, edge_attr))
            if index < last_layer:
                atoms = F.relu(atoms)
            atoms = self.dropout(atoms)
            if virtual is not None:
                virtual = self.dropout(self.virtual_node_mlps[index](sum_pool(atoms) + virtual))
            if output_hidden_states:
                all_hidden.append(padded_states(atoms, virtual))

        last_hidden_state = all_hidden[-1] if output_hidden_states else padded_states(atoms, virtual)
        if self.config.pooling == "virtual":
            pooled = virtual
        elif self.config.pooling == "mean":
            pooled = mean_pool(atoms)
        else:
            pooled = sum_pool(atoms)
        output = MolecularModelOutput(
            last_hidden_state=last_hidden_state,
            pooler_output=pooled,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            token_mask=torch.cat([attention_mask.new_ones(batch, 1), attention_mask], dim=1),
        )
        return self.wrap_output(output, return_dict)


class GINForMolecularPropertyPrediction(PropertyPredictionMixin, GINPreTrainedModel):
    """GIN / GIN-virtual with a property head on `pooler_output` (regression or classification, NaN-masked)."""

    def __init__(self, config: GINConfig) -> None:
        super().__init__(config)
        self.gin = GINModel(config)
        self.head = build_predictor(config)
        self.post_init()


register_family(GINConfig, GINModel, property_class=GINForMolecularPropertyPrediction)
