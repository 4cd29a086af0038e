"""SchNet (Schütt et al. 2017): continuous-filter convolutions on interatomic distances, scalar atom features only.

Forces are always -dE/dx. Distillation features: `node_features` (last interaction's atom features) and
`edge_features` (the last interaction's filtered messages W(r_ij) * (W_in h_j), (E, num_filters)).
"""

from __future__ import annotations

import torch
from torch import nn

from .auto import register_family
from .configuration_schnet import SchNetConfig
from .gnn3d import (
    AtomEnergyReadout,
    AtomisticModelOutput,
    AtomisticPreTrainedModel,
    DenoisingMixin,
    EdgeNoiseHead,
    EnergyAndForcesMixin,
    RadiusGraph,
    ShiftedSoftplus,
    cosine_cutoff,
    gaussian_rbf,
)
from .heads import PropertyPredictionMixin, build_predictor


class SchNetInteraction(nn.Module):
    """Interaction block: cfconv (filter network on the RBF expansion, cosine envelope) + atom-wise layers, residual."""

    def __init__(self, config: SchNetConfig) -> None:
        super().__init__()
        self.filter_network = nn.Sequential(
            nn.Linear(config.num_rbf, config.num_filters),
            ShiftedSoftplus(),
            nn.Linear(config.num_filters, config.num_filters),
        )
        self.in_projection = nn.Linear(config.hidden_size, config.num_filters, bias=False)
        self.out_network = nn.Sequential(
            nn.Linear(config.num_filters, config.hidden_size),
            ShiftedSoftplus(),
            nn.Linear(config.hidden_size, config.hidden_size),
        )

    def forward(self, features: torch.Tensor, graph: RadiusGraph, rbf: torch.Tensor, envelope: torch.Tensor):
        filters = self.filter_network(rbf) * envelope.unsqueeze(-1)
        messages = self.in_projection(features)[graph.neighbor] * filters
        return features + self.out_network(graph.aggregate(messages)), messages


class SchNetPreTrainedModel(AtomisticPreTrainedModel):
    config_class = SchNetConfig
    base_model_prefix = "schnet"


class SchNetModel(SchNetPreTrainedModel):
    """SchNet backbone: atom embeddings, then `num_layers` interaction blocks; returns `AtomisticModelOutput`."""

    def __init__(self, config: SchNetConfig) -> None:
        super().__init__(config)
        self.embedding = nn.Embedding(config.max_atomic_number + 1, config.hidden_size, padding_idx=0)
        self.interactions = nn.ModuleList(SchNetInteraction(config) for _ in range(config.num_layers))
        self.post_init()

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        pos: torch.Tensor,
        atom_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **unused_batch_keys,
    ) -> AtomisticModelOutput | tuple:
        """The point-cloud batch (`labels` ignored); `output_attentions` is accepted for the common interface (no
        attention: nothing is returned for it)."""
        self.check_unused_batch_keys(unused_batch_keys)
        if atom_mask is None:
            atom_mask = atomic_numbers != 0
        self.check_inputs_if_free({"atomic_numbers": atomic_numbers, "atom_mask": atom_mask})
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        graph = RadiusGraph(atomic_numbers, pos, atom_mask, self.config.cutoff)
        rbf = gaussian_rbf(graph.distances, self.config.num_rbf, self.config.cutoff)
        envelope = cosine_cutoff(graph.distances, self.config.cutoff)
        features = self.embedding(graph.atomic_numbers)
        hidden_states = [graph.sequence_output(features)] if output_hidden_states else None
        edge_features = None
        for interaction in self.interactions:
            features, edge_features = interaction(features, graph, rbf, envelope)
            if hidden_states is not None:
                hidden_states.append(graph.sequence_output(features))
        sequence = graph.sequence_output(features)
        token_mask = torch.cat([graph.atom_mask.new_ones(graph.batch_size, 1), graph.atom_mask], dim=1)
        output = AtomisticModelOutput(
            last_hidden_state=sequence,
            pooler_output=sequence[:, 0],
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
            token_mask=token_mask,
            node_features=sequence[:, 1:],
            edge_features=edge_features,
            edge_index=graph.edge_index_padded,
            edge_vectors=graph.unit_vectors,
            atom_mask=graph.atom_mask,
        )
        return self.wrap_output(output, return_dict)


class SchNetForEnergyAndForces(EnergyAndForcesMixin, SchNetPreTrainedModel):
    """SchNet with a per-atom energy readout (E = sum of atom energies) and forces = -dE/dx."""

    def __init__(self, config: SchNetConfig) -> None:
        super().__init__(config)
        self.schnet = SchNetModel(config)
        self.energy_head = AtomEnergyReadout(config, ShiftedSoftplus())
        self.post_init()


class SchNetForMolecularPropertyPrediction(PropertyPredictionMixin, SchNetPreTrainedModel):
    """SchNet with a property head on `pooler_output`, the mean of the atoms' last-layer features (hydrogens included
    when the point cloud has them): an all-atom 3D property model, and a CCMD / ST-KD / D&D teacher for 2D students."""

    def __init__(self, config: SchNetConfig) -> None:
        super().__init__(config)
        self.schnet = SchNetModel(config)
        self.head = build_predictor(config)
        self.post_init()


class SchNetForDenoising(DenoisingMixin, SchNetPreTrainedModel):
    """SchNet that predicts the coordinate noise per atom (D&D stage 1). SchNet has no vector features: the noise is
    a sum of unit vectors to the neighbours weighted by its invariant atom and edge features (`EdgeNoiseHead`)."""

    def __init__(self, config: SchNetConfig) -> None:
        super().__init__(config)
        self.schnet = SchNetModel(config)
        self.noise_head = EdgeNoiseHead(config.hidden_size, config.num_filters)
        self.post_init()

    def predict_noise(self, outputs: AtomisticModelOutput) -> torch.Tensor:
        return self.noise_head(outputs)


register_family(
    SchNetConfig,
    SchNetModel,
    property_class=SchNetForMolecularPropertyPrediction,
    energy_class=SchNetForEnergyAndForces,
    denoising_class=SchNetForDenoising,
    legacy_model_types=("schnet",),
)

__all__ = [
    "SchNetForDenoising",
    "SchNetForEnergyAndForces",
    "SchNetForMolecularPropertyPrediction",
    "SchNetModel",
    "SchNetPreTrainedModel",
]
