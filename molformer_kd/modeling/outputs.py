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


@dataclass
class AtomisticModelOutput(MolecularModelOutput):
    """Backbone output of a 3D GNN. Besides the common contract (`last_hidden_state` (B, 1+N, F) whose token 0 is
    the mean of the atom features, `pooler_output` = that mean, `hidden_states` with one entry per layer, `token_mask`):

    node_features (B, N, F): last layer's scalar atom features (0 at padding).
    vector_features (B, N, 3, F): last layer's equivariant vector features (PaiNN; None for SchNet).
    edge_features (E, F_e), edge_index (2, E), edge_vectors (E, 3): the edge convention of `modeling.gnn3d`.
    atom_mask (B, N): 1 for real atoms.
    """

    node_features: torch.FloatTensor | None = None
    vector_features: torch.FloatTensor | None = None
    edge_features: torch.FloatTensor | None = None
    edge_index: torch.LongTensor | None = None
    edge_vectors: torch.FloatTensor | None = None
    atom_mask: torch.Tensor | None = None


@dataclass
class EnergyAndForcesOutput(ModelOutput):
    """Energy/force head output: `energy` (B,) eV = sum of `atom_energies` (B, N) (0 at padding); `forces`
    (B, N, 3) eV/Angstrom (-dE/dx, or the direct force head); plus the backbone features used for distillation."""

    loss: torch.FloatTensor | None = None
    energy: torch.FloatTensor | None = None
    forces: torch.FloatTensor | None = None
    atom_energies: torch.FloatTensor | None = None
    node_features: torch.FloatTensor | None = None
    vector_features: torch.FloatTensor | None = None
    edge_features: torch.FloatTensor | None = None
    edge_index: torch.LongTensor | None = None
    edge_vectors: torch.FloatTensor | None = None
    atom_mask: torch.Tensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
