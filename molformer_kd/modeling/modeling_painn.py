"""PaiNN (Schütt, Unke & Gastegger 2021): equivariant message passing with scalar and vector atom features.

Forces come from a gated-equivariant head on the vector features (`direct_forces=True`, the KD-GNN paper's setting)
or as -dE/dx. The same head predicts the coordinate noise of D&D's denoising pretraining (`PaiNNForDenoising`).
Distillation features: `node_features` (scalars s), `vector_features` (vectors v, (B, N, 3, F)) and
`edge_features` (the last layer's scalar messages phi_s(s_j) * W_s(r_ij), (E, F)).
"""

from __future__ import annotations

import torch
from torch import nn

from .auto import register_family
from .configuration_painn import PaiNNConfig
from .gnn3d import (
    AtomEnergyReadout,
    AtomisticModelOutput,
    AtomisticPreTrainedModel,
    DenoisingMixin,
    EnergyAndForcesMixin,
    RadiusGraph,
    cosine_cutoff,
    sine_rbf,
)
from .heads import PropertyPredictionMixin, build_predictor

# Added under square roots of vector norms: v starts at 0, where d|v|/dv is undefined.
_NORM_EPS = 1e-8


def _vector_norm(vectors: torch.Tensor) -> torch.Tensor:
    """(..., 3, F) -> (..., F), differentiable at zero."""
    return torch.sqrt((vectors**2).sum(dim=-2) + _NORM_EPS)


class PaiNNMessage(nn.Module):
    """Message block: continuous-filter messages from neighbours j to centre i for scalars and vectors (eq. 7-8)."""

    def __init__(self, hidden_size: int, num_rbf: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.scalar_network = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, 3 * hidden_size)
        )
        self.filter = nn.Linear(num_rbf, 3 * hidden_size)

    def forward(
        self,
        scalars: torch.Tensor,
        vectors: torch.Tensor | None,
        graph: RadiusGraph,
        rbf: torch.Tensor,
        envelope: torch.Tensor,
    ):
        """`vectors` None stands for all zeros (the first layer): its gated term and the residual are skipped, the
        same result without gathering an (edges, 3, F) block of zeros forward and backward."""
        weights = self.filter(rbf) * envelope.unsqueeze(-1)
        split = self.scalar_network(scalars)[graph.neighbor] * weights
        vector_gate, scalar_message, direction_gate = split.split(self.hidden_size, dim=-1)
        vector_message = direction_gate.unsqueeze(1) * graph.unit_vectors.unsqueeze(-1)
        if vectors is None:
            return scalars + graph.aggregate(scalar_message), graph.aggregate(vector_message), scalar_message
        vector_message = torch.addcmul(vector_message, vectors[graph.neighbor], vector_gate.unsqueeze(1))
        return scalars + graph.aggregate(scalar_message), vectors + graph.aggregate(vector_message), scalar_message


class PaiNNUpdate(nn.Module):
    """Update block: per-atom mixing of scalars and vector channels (eq. 9-11)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.vector_u = nn.Linear(hidden_size, hidden_size, bias=False)
        self.vector_v = nn.Linear(hidden_size, hidden_size, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * hidden_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, 3 * hidden_size)
        )

    def forward(self, scalars: torch.Tensor, vectors: torch.Tensor):
        u_vectors = self.vector_u(vectors)
        v_vectors = self.vector_v(vectors)
        a = self.mlp(torch.cat([scalars, _vector_norm(v_vectors)], dim=-1))
        a_vv, a_sv, a_ss = a.split(self.hidden_size, dim=-1)
        scalars = scalars + a_sv * (u_vectors * v_vectors).sum(dim=-2) + a_ss
        vectors = vectors + a_vv.unsqueeze(-2) * u_vectors
        return scalars, vectors


class GatedEquivariantBlock(nn.Module):
    """PaiNN's gated equivariant block: (scalars, vectors) -> (scalars, vectors) of width `out_size`."""

    def __init__(self, hidden_size: int, out_size: int, scalar_activation: bool) -> None:
        super().__init__()
        self.out_size = out_size
        self.norm_projection = nn.Linear(hidden_size, hidden_size, bias=False)
        self.vector_projection = nn.Linear(hidden_size, out_size, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * hidden_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, 2 * out_size)
        )
        self.scalar_activation = nn.SiLU() if scalar_activation else nn.Identity()

    def forward(self, scalars: torch.Tensor, vectors: torch.Tensor):
        context = torch.cat([scalars, _vector_norm(self.norm_projection(vectors))], dim=-1)
        scalar_out, gate = self.mlp(context).split(self.out_size, dim=-1)
        return self.scalar_activation(scalar_out), gate.unsqueeze(-2) * self.vector_projection(vectors)


class PaiNNVectorHead(nn.Module):
    """One 3-vector per atom, rotation-equivariant: two gated equivariant blocks down to one vector channel, times
    `scale`. Direct forces (scale `energy_scale`, eV/Angstrom) and denoising noise (scale 1, unit variance)."""

    def __init__(self, config: PaiNNConfig, scale: float = 1.0) -> None:
        super().__init__()
        half = config.hidden_size // 2
        self.block1 = GatedEquivariantBlock(config.hidden_size, half, scalar_activation=True)
        self.block2 = GatedEquivariantBlock(half, 1, scalar_activation=False)
        self.scale = float(scale)

    def forward(self, node_features: torch.Tensor, vector_features: torch.Tensor):
        scalars, vectors = self.block1(node_features, vector_features)
        _, vectors = self.block2(scalars, vectors)
        return self.scale * vectors.squeeze(-1)


class PaiNNPreTrainedModel(AtomisticPreTrainedModel):
    config_class = PaiNNConfig
    base_model_prefix = "painn"


class PaiNNModel(PaiNNPreTrainedModel):
    """PaiNN backbone: atom embeddings, then `num_layers` x (message, update); returns `AtomisticModelOutput`."""

    def __init__(self, config: PaiNNConfig) -> None:
        super().__init__(config)
        self.embedding = nn.Embedding(config.max_atomic_number + 1, config.hidden_size, padding_idx=0)
        self.messages = nn.ModuleList(
            PaiNNMessage(config.hidden_size, config.num_rbf) for _ in range(config.num_layers)
        )
        self.updates = nn.ModuleList(PaiNNUpdate(config.hidden_size) for _ in range(config.num_layers))
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
        rbf = sine_rbf(graph.distances, self.config.num_rbf, self.config.cutoff)
        envelope = cosine_cutoff(graph.distances, self.config.cutoff)
        scalars = self.embedding(graph.atomic_numbers)
        vectors = None  # all zeros before the first message (eq. 7's v_j^0 = 0)
        hidden_states = [graph.sequence_output(scalars)] if output_hidden_states else None
        edge_features = None
        for message, update in zip(self.messages, self.updates):
            scalars, vectors, edge_features = message(scalars, vectors, graph, rbf, envelope)
            scalars, vectors = update(scalars, vectors)
            if hidden_states is not None:
                hidden_states.append(graph.sequence_output(scalars))
        sequence = graph.sequence_output(scalars)
        token_mask = torch.cat([graph.atom_mask.new_ones(graph.batch_size, 1), graph.atom_mask], dim=1)
        output = AtomisticModelOutput(
            last_hidden_state=sequence,
            pooler_output=sequence[:, 0],
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
            token_mask=token_mask,
            node_features=sequence[:, 1:],
            vector_features=graph.to_padded(vectors),
            edge_features=edge_features,
            edge_index=graph.edge_index_padded,
            edge_vectors=graph.unit_vectors,
            atom_mask=graph.atom_mask,
        )
        return self.wrap_output(output, return_dict)


class PaiNNForEnergyAndForces(EnergyAndForcesMixin, PaiNNPreTrainedModel):
    """PaiNN with a per-atom energy readout (E = sum of atom energies) and direct or autograd forces."""

    def __init__(self, config: PaiNNConfig) -> None:
        super().__init__(config)
        self.painn = PaiNNModel(config)
        self.energy_head = AtomEnergyReadout(config, nn.SiLU())
        self.force_head = PaiNNVectorHead(config, config.energy_scale) if config.direct_forces else None
        self.post_init()


class PaiNNForMolecularPropertyPrediction(PropertyPredictionMixin, PaiNNPreTrainedModel):
    """PaiNN with a property head on `pooler_output`, the mean of the atoms' last-layer features (hydrogens included
    when the point cloud has them): an all-atom 3D property model, and a CCMD / ST-KD / D&D teacher for 2D students."""

    def __init__(self, config: PaiNNConfig) -> None:
        super().__init__(config)
        self.painn = PaiNNModel(config)
        self.head = build_predictor(config)
        self.post_init()


class PaiNNForDenoising(DenoisingMixin, PaiNNPreTrainedModel):
    """PaiNN that predicts the coordinate noise per atom from its vector features (D&D stage 1): a D&D teacher that
    reads every atom (hydrogens included when the point cloud has them)."""

    def __init__(self, config: PaiNNConfig) -> None:
        super().__init__(config)
        self.painn = PaiNNModel(config)
        self.noise_head = PaiNNVectorHead(config)
        self.post_init()

    def predict_noise(self, outputs: AtomisticModelOutput) -> torch.Tensor:
        return self.noise_head(outputs.node_features, outputs.vector_features)


register_family(
    PaiNNConfig,
    PaiNNModel,
    property_class=PaiNNForMolecularPropertyPrediction,
    energy_class=PaiNNForEnergyAndForces,
    denoising_class=PaiNNForDenoising,
    legacy_model_types=("painn",),
)

__all__ = [
    "PaiNNForDenoising",
    "PaiNNForEnergyAndForces",
    "PaiNNForMolecularPropertyPrediction",
    "PaiNNModel",
    "PaiNNPreTrainedModel",
]
