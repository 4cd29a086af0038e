"""Shared pieces of the 3D message-passing GNNs (SchNet, PaiNN) for energy and force prediction.

Input (point-cloud batch, `data.xtb.PointCloudCollator`): `atomic_numbers` (B, N) long, 0 = padding; `pos` (B, N, 3)
Angstrom; `atom_mask` (B, N). All atoms, hydrogens included. Inside a model, real atoms are packed into a flat list of
A atoms and the graph connects every pair of atoms of the same molecule closer than `cutoff`.

Edge convention (outputs and distillation objectives): `edge_index` (2, E) holds flat indices `b * N + i` into the
padded atom grid; row 0 is the centre atom i that receives the message, row 1 its neighbour j; `edge_vectors`
(E, 3) are the unit vectors u_ij = (x_j - x_i) / |x_j - x_i|; `edge_features` (E, F_e) are the last layer's scalar
edge (message) features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import fields
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from .heads import denoising_loss
from .layers import ConstantBuffers
from .modeling_utils import MolecularPreTrainedModel
from .outputs import AtomisticModelOutput, DenoisingOutput, EnergyAndForcesOutput

if TYPE_CHECKING:
    from .configuration_gnn3d import AtomisticConfig

__all__ = [
    "AtomEnergyReadout",
    "AtomisticModelOutput",
    "AtomisticPreTrainedModel",
    "DenoisingMixin",
    "EdgeNoiseHead",
    "EnergyAndForcesMixin",
    "EnergyAndForcesOutput",
    "RadiusGraph",
    "ShiftedSoftplus",
    "cosine_cutoff",
    "energy_force_loss",
    "gaussian_rbf",
    "init_atomistic_weights",
    "per_atom_mean",
    "sine_rbf",
]


class RadiusGraph:
    """Real atoms of a padded batch, packed, and the directed pairs of the same molecule within `cutoff`.

    Its sizes depend on the data: two `nonzero` (the real atoms, the pairs within the cutoff) are the only host
    synchronisations of a SchNet/PaiNN forward on a GPU (tests/test_model_contract.py). The pair list is part of the
    output (`edge_index`, `edge_features`, read by the KD-GNN objectives), so it stays a packed list."""

    def __init__(self, atomic_numbers: torch.Tensor, pos: torch.Tensor, atom_mask: torch.Tensor, cutoff: float) -> None:
        if pos.shape != (*atomic_numbers.shape, 3):
            raise ValueError(
                f"pos must be (B, N, 3) for atomic_numbers {tuple(atomic_numbers.shape)}, got {tuple(pos.shape)}"
            )
        self.batch_size, self.width = atomic_numbers.shape
        mask = atom_mask.bool()
        self.atom_mask = mask
        self.padded_index = mask.flatten().nonzero().squeeze(1)  # (A,) flat b*N+i of each packed atom
        self.atomic_numbers = atomic_numbers.flatten()[self.padded_index]
        self.pos = pos.reshape(-1, 3)[self.padded_index]
        with torch.no_grad():
            distances = torch.cdist(pos.detach(), pos.detach())
            pair_mask = mask[:, :, None] & mask[:, None, :] & (distances < cutoff)
            pair_mask &= ~torch.eye(self.width, dtype=torch.bool, device=pos.device)
            b, i, j = pair_mask.nonzero(as_tuple=True)
            packed_of_padded = torch.full((self.batch_size * self.width,), -1, dtype=torch.long, device=pos.device)
            packed_of_padded[self.padded_index] = torch.arange(len(self.padded_index), device=pos.device)
        self.edge_index_padded = torch.stack([b * self.width + i, b * self.width + j])
        self.center = packed_of_padded[self.edge_index_padded[0]]
        self.neighbor = packed_of_padded[self.edge_index_padded[1]]
        # Recomputed from the packed positions so gradients flow to `pos` (autograd forces).
        offsets = self.pos[self.neighbor] - self.pos[self.center]
        self.distances = offsets.norm(dim=-1)
        self.unit_vectors = offsets / self.distances.unsqueeze(-1)

    @property
    def num_atoms(self) -> int:
        return len(self.padded_index)

    def to_padded(self, values: torch.Tensor) -> torch.Tensor:
        """(A, ...) packed per-atom values -> (B, N, ...) with zeros at padding."""
        padded = values.new_zeros(self.batch_size * self.width, *values.shape[1:])
        padded = padded.index_copy(0, self.padded_index, values)
        return padded.view(self.batch_size, self.width, *values.shape[1:])

    def aggregate(self, messages: torch.Tensor) -> torch.Tensor:
        """Sum edge messages (E, ...) into their centre atoms -> (A, ...)."""
        return messages.new_zeros(self.num_atoms, *messages.shape[1:]).index_add(0, self.center, messages)

    def sequence_output(self, node_features: torch.Tensor) -> torch.Tensor:
        """(A, F) -> (B, 1+N, F) with token 0 = mean of the molecule's atoms (the common output contract)."""
        padded = self.to_padded(node_features)
        counts = self.atom_mask.sum(1, keepdim=True).clamp(min=1).to(padded.dtype)
        pooled = padded.sum(1) / counts
        return torch.cat([pooled.unsqueeze(1), padded], dim=1)


def gaussian_rbf(distances: torch.Tensor, num_basis: int, cutoff: float) -> torch.Tensor:
    """SchNet's Gaussian smearing: exp(-(d - mu_k)^2 / (2 delta^2)), mu_k evenly spaced on [0, cutoff]."""
    centers = torch.linspace(0.0, cutoff, num_basis, device=distances.device, dtype=distances.dtype)
    spacing = cutoff / (num_basis - 1)
    return torch.exp(-0.5 * ((distances.unsqueeze(-1) - centers) / spacing) ** 2)


def sine_rbf(distances: torch.Tensor, num_basis: int, cutoff: float) -> torch.Tensor:
    """PaiNN's radial basis sin(n pi d / cutoff) / d, n = 1..num_basis."""
    n = torch.arange(1, num_basis + 1, device=distances.device, dtype=distances.dtype)
    d = distances.unsqueeze(-1)
    return torch.sin(n * math.pi * d / cutoff) / d


def cosine_cutoff(distances: torch.Tensor, cutoff: float) -> torch.Tensor:
    """0.5 (cos(pi d / cutoff) + 1) inside the cutoff, 0 beyond: messages vanish smoothly at the cutoff."""
    return 0.5 * (torch.cos(math.pi * distances / cutoff) + 1.0) * (distances < cutoff).to(distances.dtype)


class ShiftedSoftplus(nn.Module):
    """SchNet's activation ln(0.5 e^x + 0.5) = softplus(x) - ln 2 (zero at zero)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x) - math.log(2.0)


class AtomEnergyReadout(ConstantBuffers):
    """Per-atom energy: `energy_scale * MLP(s_i) + energy_shift + atom_reference_energies[z_i]` (eV).

    The reference energies and the shift/scale are data statistics kept in the config, so the network only learns a
    normalized remainder.
    """

    def __init__(self, config: AtomisticConfig, activation: nn.Module) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden // 2), activation, nn.Linear(hidden // 2, 1))
        self.energy_scale = float(config.energy_scale)
        self.energy_shift = float(config.energy_shift)
        self.has_references = bool(config.atom_reference_energies)
        if self.has_references:
            self.register_constant("atom_reference_energies", config.atom_reference_energies, torch.float64)

    def forward(self, node_features: torch.Tensor, atomic_numbers: torch.Tensor) -> torch.Tensor:
        energies = self.energy_scale * self.mlp(node_features).squeeze(-1) + self.energy_shift
        if self.has_references:
            energies = energies + self.atom_reference_energies[atomic_numbers].to(energies.dtype)
        return energies


def _per_molecule_energy_error(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "mae":
        return (pred - target).abs()
    if kind == "mse":
        return (pred - target) ** 2
    raise ValueError(f"unknown energy loss {kind!r} (use 'mae' or 'mse')")


def per_atom_mean(values: torch.Tensor, atom_mask: torch.Tensor) -> torch.Tensor:
    """(B, N) per-atom values -> (B,) mean over each molecule's real atoms."""
    mask = atom_mask.to(values.dtype)
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def _per_molecule_force_error(
    pred: torch.Tensor, target: torch.Tensor, atom_mask: torch.Tensor, kind: str
) -> torch.Tensor:
    """(B,) mean over each molecule's atoms of |dF| (mean over components, 'mae'), dF^2 ('mse') or the error norm
    ('l2mae', the OC20 code's force loss)."""
    difference = pred - target
    if kind == "mae":
        per_atom = difference.abs().mean(dim=-1)
    elif kind == "mse":
        per_atom = (difference**2).mean(dim=-1)
    elif kind == "l2mae":
        # sqrt of a zero error has no gradient: padding and exact hits get eps under the root.
        per_atom = torch.sqrt((difference**2).sum(dim=-1) + 1e-12)
    else:
        raise ValueError(f"unknown force loss {kind!r} (use 'mae', 'mse' or 'l2mae')")
    return per_atom_mean(per_atom, atom_mask)


def energy_force_loss(
    pred_energy: torch.Tensor,
    pred_forces: torch.Tensor,
    energy: torch.Tensor,
    forces: torch.Tensor,
    atom_mask: torch.Tensor,
    energy_weight: float = 1.0,
    force_weight: float = 100.0,
    energy_loss: str = "mae",
    force_loss: str = "l2mae",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """KD-GNN eq. (1): `a_E L_E(E_hat, E) + a_F L_F(F_hat, F)`; also the vanilla-KD (1) loss with teacher targets.

    Each term is a per-molecule error averaged over the molecules of the batch (forces: mean over the molecule's
    atoms first), the reduction `DistillationTrainer` needs for exact gradient accumulation.
    Returns (total, {"energy": a_E L_E, "forces": a_F L_F}) with the terms whose target is given.
    """
    components = {}
    if energy is not None:
        error = _per_molecule_energy_error(pred_energy, energy.to(pred_energy.dtype), energy_loss)
        components["energy"] = energy_weight * error.mean()
    if forces is not None:
        error = _per_molecule_force_error(pred_forces, forces.to(pred_forces.dtype), atom_mask, force_loss)
        components["forces"] = force_weight * error.mean()
    if not components:
        raise ValueError("energy_force_loss needs an energy or a forces target")
    return sum(components.values()), components


def init_atomistic_weights(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for linear layers; N(0, 1) atom embeddings with a zero padding row."""
    if isinstance(module, nn.Linear):
        init.xavier_uniform_(module.weight)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        init.normal_(module.weight, mean=0.0, std=1.0)
        if module.padding_idx is not None:
            init.zeros_(module.weight[module.padding_idx])


class AtomisticPreTrainedModel(MolecularPreTrainedModel):
    """Base of the SchNet and PaiNN `PreTrainedModel`s: point-cloud inputs, their weight init and validation."""

    main_input_name = "atomic_numbers"
    input_modality = "point_cloud"
    # The heads of every task (property, energy and forces, denoising): a backbone loaded out of any of them, e.g. a
    # D&D denoiser as a distillation teacher, drops them without an UNEXPECTED load report.
    _keys_to_ignore_on_load_unexpected: ClassVar[list[str]] = [r"^head\.", r"^(energy|force|noise)_head\."]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        init_atomistic_weights(module)

    @classmethod
    def check_input_values(cls, config: AtomisticConfig, batch: Mapping[str, torch.Tensor]) -> None:
        """The atomic numbers of the real atoms (`atom_mask`, default: nonzero numbers) within the embedding and
        the reference energies."""
        atomic_numbers, atom_mask = batch.get("atomic_numbers"), batch.get("atom_mask")
        if atomic_numbers is None:
            return
        numbers = atomic_numbers[atomic_numbers != 0 if atom_mask is None else atom_mask.bool()]
        if not numbers.numel():
            return
        low, high = int(numbers.min()), int(numbers.max())
        if low <= 0 or high > config.max_atomic_number:
            raise ValueError(
                f"atom_mask marks atoms with atomic numbers {low}..{high} as real; this "
                f"model embeds 1..{config.max_atomic_number}"
            )
        references = config.atom_reference_energies
        if references and high >= len(references):
            raise ValueError(f"atomic number {high} has no entry in atom_reference_energies (length {len(references)})")


class EdgeNoiseHead(nn.Module):
    """Per-atom 3-vectors from invariant edge weights, rotation-equivariant and translation-invariant for any 3D GNN
    with edge features: `eps_i = sum_j w_ij u_ij`, `w_ij = MLP([s_i, e_ij])`, u_ij the unit vector from i to j."""

    def __init__(self, node_width: int, edge_width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(node_width + edge_width, node_width), nn.SiLU(), nn.Linear(node_width, 1))

    def forward(self, outputs: AtomisticModelOutput) -> torch.Tensor:
        batch, width = outputs.atom_mask.shape
        center = outputs.edge_index[0]  # flat b * N + i of each edge's centre atom
        center_states = outputs.node_features.reshape(batch * width, -1)[center]
        weights = self.mlp(torch.cat([center_states, outputs.edge_features], dim=-1))
        vectors = outputs.edge_vectors.new_zeros(batch * width, 3).index_add(0, center, weights * outputs.edge_vectors)
        return vectors.view(batch, width, 3)


class DenoisingMixin:
    """`forward` of every 3D GNN `...ForDenoising` (D&D stage 1, eq. 3-5): the backbone (at `base_model_prefix`) on
    noised coordinates, then `self.predict_noise(outputs)`, one equivariant 3-vector per atom.

    `forward(atomic_numbers, pos=noisy_pos, atom_mask, noise=eps)`: `noise` the true eps (`add_coordinate_noise`);
    loss = mean over real atoms of ||eps_hat_i - eps_i||^2. The backbone fields are returned for D&D's distill stage.
    """

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        pos: torch.Tensor,
        atom_mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **unused_batch_keys,
    ) -> DenoisingOutput | tuple:
        """`output_attentions` is accepted for the common interface (no attention: nothing is returned for it)."""
        outputs = self.base_model(
            atomic_numbers,
            pos,
            atom_mask,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **unused_batch_keys,
        )
        noise_pred = self.predict_noise(outputs)
        noise_pred = noise_pred * outputs.atom_mask.unsqueeze(-1).to(noise_pred.dtype)
        output = DenoisingOutput(
            loss=None if noise is None else denoising_loss(noise_pred, noise, outputs.atom_mask),
            noise_pred=noise_pred,
            pooler_output=outputs.pooler_output,
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            token_mask=outputs.token_mask,
        )
        return self.wrap_output(output, return_dict)


class EnergyAndForcesMixin:
    """`forward` of every `...ForEnergyAndForces`: backbone (at `base_model_prefix`), `self.energy_head`
    (`AtomEnergyReadout`) and, when `config.direct_forces`, `self.force_head(node_features, vector_features)`.

    `labels` = {"energy": (B,) eV, "forces": (B, N, 3) eV/Angstrom} (either may be missing) gives `loss` =
    a_E L_E + a_F L_F with the config's weights and loss kinds.

    Autograd forces work in a frozen teacher run under `torch.no_grad()` too: gradients are switched on locally and
    the outputs are detached again; the second-order graph is kept only when the caller has gradients on (training).
    """

    @property
    def trains_through_a_gradient(self) -> bool:
        """Whether training on forces backpropagates through a gradient (forces = -dE/dx, a double backward), which
        torch.compile's AOT autograd does not support: only direct-force models train compiled."""
        return not getattr(self.config, "direct_forces", False)

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        pos: torch.Tensor,
        atom_mask: torch.Tensor | None = None,
        labels: dict | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> EnergyAndForcesOutput | tuple:
        """`output_attentions` is accepted for the common interface (no attention: nothing is returned for it)."""
        direct = bool(getattr(self.config, "direct_forces", False))
        caller_grad = torch.is_grad_enabled()
        if atom_mask is None:
            atom_mask = atomic_numbers != 0
        if not direct and torch.is_inference_mode_enabled():
            raise RuntimeError(
                f"{type(self).__name__} computes forces as -dE/dx and needs autograd: run it under torch.no_grad(), "
                "not torch.inference_mode()"
            )
        with nullcontext() if direct else torch.enable_grad():
            if not direct and not pos.requires_grad:
                pos = pos.detach().requires_grad_(True)
            outputs = self.base_model(
                atomic_numbers=atomic_numbers,
                pos=pos,
                atom_mask=atom_mask,
                output_hidden_states=output_hidden_states,
                return_dict=True,
            )
            mask = outputs.atom_mask.to(outputs.node_features.dtype)
            atom_energies = self.energy_head(outputs.node_features, atomic_numbers) * mask
            total_energy = atom_energies.sum(dim=1)
            if direct:
                predicted_forces = self.force_head(outputs.node_features, outputs.vector_features) * mask[..., None]
            else:
                (gradient,) = torch.autograd.grad(total_energy.sum(), pos, create_graph=caller_grad)
                predicted_forces = -gradient * mask[..., None]
        loss = None
        if labels is not None:
            loss, _ = energy_force_loss(
                total_energy,
                predicted_forces,
                labels.get("energy"),
                labels.get("forces"),
                outputs.atom_mask,
                energy_weight=self.config.energy_loss_weight,
                force_weight=self.config.force_loss_weight,
                energy_loss=self.config.energy_loss,
                force_loss=self.config.force_loss,
            )
        result = EnergyAndForcesOutput(
            loss=loss,
            energy=total_energy,
            forces=predicted_forces,
            atom_energies=atom_energies,
            node_features=outputs.node_features,
            vector_features=outputs.vector_features,
            edge_features=outputs.edge_features,
            edge_index=outputs.edge_index,
            edge_vectors=outputs.edge_vectors,
            atom_mask=outputs.atom_mask,
            hidden_states=outputs.hidden_states,
        )
        if not caller_grad:
            for field in fields(result):
                value = getattr(result, field.name)
                if isinstance(value, torch.Tensor):
                    result[field.name] = value.detach()
                elif isinstance(value, tuple):
                    result[field.name] = tuple(item.detach() for item in value)
        return self.wrap_output(result, return_dict)
