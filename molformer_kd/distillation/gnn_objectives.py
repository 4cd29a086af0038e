"""Knowledge distillation between 3D energy/force GNNs (SchNet, PaiNN): the KD-GNN objectives (docs/methods.md §4).

`L = a_E L_E + a_F L_F + lambda L_KD` is composed from named objectives, each weighted by the trainer:
`energy_forces` (the task loss, eq. 1) plus one KD objective with weight lambda (the paper's Table 6 values are in
configs/gnn_kd_*.yaml):

* `n2n`: `MSE(P s_i, t_i)` on the last layer's scalar node features (eq. 4).
* `e2n`: teacher edge features summed into their centre atoms, `sum_j H_edge,(i,j)`, as the node target (eq. 5).
* `v2v`: equivariant vector features: PaiNN -> PaiNN directly, or, for a teacher without vectors, its edge features
  times the unit vectors, `sum_j u_ij H_edge,(i,j)` (eq. 6). The student must have vector features (PaiNN).
* `vanilla1`: the teacher's energy and forces as targets, `a_E L_E(E_s, E_t) + a_F L_F(F_s, F_t)` (eq. 7).
* `vanilla2`: per-atom energy contributions, `1/N sum_i L_E(E_i,s, E_i,t)` (eq. 8).

Feature losses are MSE with a learned linear map P (student width -> teacher width, student-owned; no bias for
vectors so that P commutes with rotations) on the student side and the identity on the teacher side (paper App. D);
P is the identity when the widths agree (docs/methods.md §4). Every component is a per-molecule loss (mean over the
molecule's atoms, and channels / vector components) averaged over the molecules of the batch (registry rule).
The edge convention (`edge_index` rows: centre i, neighbour j; `edge_vectors` = u_ij) is `modeling.gnn3d`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from transformers.utils import ModelOutput

from ..modeling.gnn3d import energy_force_loss, per_atom_mean
from .objectives import projection
from .registry import DistillationObjective, register_objective

if TYPE_CHECKING:
    from collections.abc import Callable

    from transformers import PretrainedConfig

__all__ = [
    "PER_MOLECULE_TARGETS",
    "TEACHER_TARGETS",
    "EdgeToNodeObjective",
    "EnergyForcesObjective",
    "NodeToNodeObjective",
    "TeacherTargets",
    "VanillaAtomEnergyObjective",
    "VanillaEnergyForcesObjective",
    "VectorToVectorObjective",
    "edges_to_nodes",
    "edges_to_vectors",
    "teacher_target",
]


def edges_to_nodes(edge_features: torch.Tensor, edge_index: torch.Tensor, atom_mask: torch.Tensor) -> torch.Tensor:
    """`H_i = sum_j H_edge,(i,j)` (eq. 5): (E, F) edge features -> (B, N, F) node features (0 at padding)."""
    batch_size, width = atom_mask.shape
    summed = edge_features.new_zeros(batch_size * width, edge_features.shape[-1])
    summed = summed.index_add(0, edge_index[0], edge_features)
    return summed.view(batch_size, width, -1)


def edges_to_vectors(
    edge_features: torch.Tensor, edge_vectors: torch.Tensor, edge_index: torch.Tensor, atom_mask: torch.Tensor
) -> torch.Tensor:
    """`H_vec,i^(k) = sum_j u_ij H_edge,(i,j)^(k)` (eq. 6): -> (B, N, 3, F), equivariant because u_ij is."""
    batch_size, width = atom_mask.shape
    per_edge = edge_vectors.unsqueeze(-1) * edge_features.unsqueeze(-2)  # (E, 3, F)
    summed = per_edge.new_zeros(batch_size * width, 3, edge_features.shape[-1])
    summed = summed.index_add(0, edge_index[0], per_edge)
    return summed.view(batch_size, width, 3, -1)


def masked_feature_mse(prediction: torch.Tensor, target: torch.Tensor, atom_mask: torch.Tensor) -> torch.Tensor:
    """MSE over each molecule's real atoms and all trailing dims (channels, vector components), mean over molecules."""
    if prediction.shape != target.shape:
        raise ValueError(
            f"student features {tuple(prediction.shape)} do not match teacher features {tuple(target.shape)}"
        )
    squared = (prediction - target.to(prediction.dtype)) ** 2
    per_atom = squared.flatten(start_dim=2).mean(dim=-1)
    return per_atom_mean(per_atom, atom_mask).mean()


def _field(outputs: ModelOutput, name: str, role: str, objective: str) -> torch.Tensor:
    value = getattr(outputs, name, None) if outputs is not None else None
    if value is None:
        raise ValueError(
            f"objective {objective!r} needs the {role}'s {name}, but its output has none "
            f"(is the {role} a SchNet/PaiNN ...ForEnergyAndForces model?)"
        )
    return value


# What the KD objectives compare the student with, computed from the teacher's output: per molecule (B,) or per atom
# (B, N, ...), 0 at padding. Every target is a function of the teacher's output on a batch alone, so a teacher cache
# can store them per molecule (`teacher_cache.PointCloudTeacherCache`) and a distilled step then skips the teacher.
# e2n's and v2v's edge sums are stored summed, not as (E, F) edges: an edge list grows with the square of the atoms.
TEACHER_TARGETS: dict[str, Callable[[ModelOutput, str], torch.Tensor]] = {
    "energy": lambda outputs, objective: _field(outputs, "energy", "teacher", objective),
    "forces": lambda outputs, objective: _field(outputs, "forces", "teacher", objective),
    "atom_energies": lambda outputs, objective: _field(outputs, "atom_energies", "teacher", objective),
    "node_features": lambda outputs, objective: _field(outputs, "node_features", "teacher", objective),
    "vector_features": lambda outputs, objective: _field(outputs, "vector_features", "teacher", objective),
    "edge_sums": lambda outputs, objective: edges_to_nodes(
        _field(outputs, "edge_features", "teacher", objective),
        _field(outputs, "edge_index", "teacher", objective),
        _field(outputs, "atom_mask", "teacher", objective),
    ),
    "edge_vector_sums": lambda outputs, objective: edges_to_vectors(
        _field(outputs, "edge_features", "teacher", objective),
        _field(outputs, "edge_vectors", "teacher", objective),
        _field(outputs, "edge_index", "teacher", objective),
        _field(outputs, "atom_mask", "teacher", objective),
    ),
}
PER_MOLECULE_TARGETS = ("energy",)


@dataclass
class TeacherTargets(ModelOutput):
    """The `TEACHER_TARGETS` of a batch read from a teacher cache, in place of the teacher's output (None: not cached);
    `atom_mask` (B, N) is the batch's."""

    energy: torch.FloatTensor | None = None
    forces: torch.FloatTensor | None = None
    atom_energies: torch.FloatTensor | None = None
    node_features: torch.FloatTensor | None = None
    vector_features: torch.FloatTensor | None = None
    edge_sums: torch.FloatTensor | None = None
    edge_vector_sums: torch.FloatTensor | None = None
    atom_mask: torch.Tensor | None = None


def teacher_target(outputs: ModelOutput, name: str, objective: str) -> torch.Tensor:
    """Target `name` of `TEACHER_TARGETS`: read from cached `TeacherTargets`, else computed from the live output."""
    if isinstance(outputs, TeacherTargets):
        value = getattr(outputs, name)
        if value is None:
            raise ValueError(
                f"objective {objective!r} needs the teacher's {name}, which the teacher cache does not hold"
            )
        return value
    return TEACHER_TARGETS[name](outputs, objective)


def _setting(config: PretrainedConfig, name: str, role: str, objective: str) -> Any:
    value = getattr(config, name, None)
    if value is None:
        raise ValueError(f"objective {objective!r}: the {role} config {type(config).__name__} has no {name}")
    return value


def _loss_settings(
    student_config: PretrainedConfig,
    objective: str,
    energy_weight: float | None,
    force_weight: float | None,
    energy_loss: str | None,
    force_loss: str | None,
) -> dict:
    """a_E, a_F and the loss kinds: explicit options, else the student config's task-loss settings."""
    return {
        "energy_weight": float(
            energy_weight
            if energy_weight is not None
            else _setting(student_config, "energy_loss_weight", "student", objective)
        ),
        "force_weight": float(
            force_weight
            if force_weight is not None
            else _setting(student_config, "force_loss_weight", "student", objective)
        ),
        "energy_loss": energy_loss or _setting(student_config, "energy_loss", "student", objective),
        "force_loss": force_loss or _setting(student_config, "force_loss", "student", objective),
    }


class KDGNNObjective(DistillationObjective):
    """Base of the objectives of this module: they read energy/force models' outputs on point-cloud batches."""

    task_kind = "energy_forces"


@register_objective("energy_forces")
class EnergyForcesObjective(KDGNNObjective):
    """Task loss a_E L_E(E_hat, E) + a_F L_F(F_hat, F) against the labels (eq. 1); components `task_energy`,
    `task_forces` (already multiplied by a_E, a_F). Options default to the student config's settings."""

    needs_teacher = False

    def __init__(
        self,
        teacher_config: PretrainedConfig | None = None,
        student_config: PretrainedConfig | None = None,
        energy_weight: float | None = None,
        force_weight: float | None = None,
        energy_loss: str | None = None,
        force_loss: str | None = None,
    ) -> None:
        super().__init__()
        self.settings = _loss_settings(
            student_config, "energy_forces", energy_weight, force_weight, energy_loss, force_loss
        )

    def forward(
        self, teacher_outputs: ModelOutput, student_outputs: ModelOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        labels = batch.get("labels")
        if not isinstance(labels, dict) or not ({"energy", "forces"} & set(labels)):
            raise ValueError("objective 'energy_forces' needs batch['labels'] = {'energy': (B,), 'forces': (B, N, 3)}")
        _, parts = energy_force_loss(
            _field(student_outputs, "energy", "student", "energy_forces"),
            _field(student_outputs, "forces", "student", "energy_forces"),
            labels.get("energy"),
            labels.get("forces"),
            student_outputs.atom_mask,
            **self.settings,
        )
        return {f"task_{name}": value for name, value in parts.items()}


@register_objective("vanilla1")
class VanillaEnergyForcesObjective(KDGNNObjective):
    """Vanilla KD (1), eq. 7: the teacher's predicted energy and forces as targets, with the task's a_E, a_F and
    loss kinds (options override them); components `vanilla1_energy`, `vanilla1_forces`."""

    teacher_targets = ("energy", "forces")

    def __init__(
        self,
        teacher_config: PretrainedConfig,
        student_config: PretrainedConfig,
        energy_weight: float | None = None,
        force_weight: float | None = None,
        energy_loss: str | None = None,
        force_loss: str | None = None,
    ) -> None:
        super().__init__()
        self.settings = _loss_settings(student_config, "vanilla1", energy_weight, force_weight, energy_loss, force_loss)

    def forward(
        self, teacher_outputs: ModelOutput, student_outputs: ModelOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        _, parts = energy_force_loss(
            _field(student_outputs, "energy", "student", "vanilla1"),
            _field(student_outputs, "forces", "student", "vanilla1"),
            teacher_target(teacher_outputs, "energy", "vanilla1"),
            teacher_target(teacher_outputs, "forces", "vanilla1"),
            student_outputs.atom_mask,
            **self.settings,
        )
        return {f"vanilla1_{name}": value for name, value in parts.items()}


@register_objective("vanilla2")
class VanillaAtomEnergyObjective(KDGNNObjective):
    """Vanilla KD (2), eq. 8: `1/N sum_i L_E(E_i,s, E_i,t)` on per-atom energy contributions (L_E = the task's
    energy loss kind unless `energy_loss` is given); component `vanilla2`."""

    teacher_targets = ("atom_energies",)

    def __init__(
        self, teacher_config: PretrainedConfig, student_config: PretrainedConfig, energy_loss: str | None = None
    ) -> None:
        super().__init__()
        self.energy_loss = energy_loss or _setting(student_config, "energy_loss", "student", "vanilla2")
        if self.energy_loss not in ("mae", "mse"):
            raise ValueError(f"objective 'vanilla2': energy_loss must be 'mae' or 'mse', got {self.energy_loss!r}")

    def forward(
        self, teacher_outputs: ModelOutput, student_outputs: ModelOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        student = _field(student_outputs, "atom_energies", "student", "vanilla2")
        teacher = teacher_target(teacher_outputs, "atom_energies", "vanilla2").to(student.dtype)
        difference = student - teacher
        per_atom = difference.abs() if self.energy_loss == "mae" else difference**2
        return {"vanilla2": per_atom_mean(per_atom, student_outputs.atom_mask).mean()}


@register_objective("n2n")
class NodeToNodeObjective(KDGNNObjective):
    """Node-to-node, eq. 4: `MSE(P s_i, t_i)` on the last layer's scalar node features; component `n2n`."""

    teacher_targets = ("node_features",)

    def __init__(self, teacher_config: PretrainedConfig, student_config: PretrainedConfig) -> None:
        super().__init__()
        self.projection = projection(
            _setting(student_config, "hidden_size", "student", "n2n"),
            _setting(teacher_config, "hidden_size", "teacher", "n2n"),
        )

    def forward(
        self, teacher_outputs: ModelOutput, student_outputs: ModelOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        student = _field(student_outputs, "node_features", "student", "n2n")
        teacher = teacher_target(teacher_outputs, "node_features", "n2n")
        return {"n2n": masked_feature_mse(self.projection(student), teacher, student_outputs.atom_mask)}


@register_objective("e2n")
class EdgeToNodeObjective(KDGNNObjective):
    """Edge-to-node, eq. 5: `MSE(P s_i, sum_j H_edge,(i,j))` with the teacher's last-layer edge features summed into
    their centre atoms; component `e2n`."""

    teacher_targets = ("edge_sums",)

    def __init__(self, teacher_config: PretrainedConfig, student_config: PretrainedConfig) -> None:
        super().__init__()
        self.projection = projection(
            _setting(student_config, "hidden_size", "student", "e2n"),
            _setting(teacher_config, "edge_feature_size", "teacher", "e2n"),
        )

    def forward(
        self, teacher_outputs: ModelOutput, student_outputs: ModelOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        student = _field(student_outputs, "node_features", "student", "e2n")
        target = teacher_target(teacher_outputs, "edge_sums", "e2n")
        return {"e2n": masked_feature_mse(self.projection(student), target, student_outputs.atom_mask)}


@register_objective("v2v")
class VectorToVectorObjective(KDGNNObjective):
    """Vector-to-vector: `MSE(P v_i, target_i)` on equivariant (B, N, 3, F) features; component `v2v`.

    `source="vectors"` distils the teacher's vector features (PaiNN -> PaiNN); `source="edges"` builds the target
    from its edge features, `sum_j u_ij H_edge,(i,j)` (eq. 6); `"auto"` (default) takes vectors when the teacher has
    them. P has no bias: a bias would not rotate with the molecule.
    """

    def __init__(
        self, teacher_config: PretrainedConfig, student_config: PretrainedConfig, source: str = "auto"
    ) -> None:
        super().__init__()
        if not getattr(student_config, "has_vector_features", False):
            raise ValueError(
                f"objective 'v2v' needs a student with vector features (PaiNN); got {type(student_config).__name__}"
            )
        teacher_has_vectors = bool(getattr(teacher_config, "has_vector_features", False))
        if source == "auto":
            source = "vectors" if teacher_has_vectors else "edges"
        if source not in ("vectors", "edges"):
            raise ValueError(f"objective 'v2v': source must be 'auto', 'vectors' or 'edges', got {source!r}")
        if source == "vectors" and not teacher_has_vectors:
            raise ValueError(
                f"objective 'v2v': source='vectors' but the teacher ({type(teacher_config).__name__}) has none"
            )
        self.source = source
        self.teacher_targets = ("vector_features",) if source == "vectors" else ("edge_vector_sums",)
        teacher_width = _setting(
            teacher_config, "hidden_size" if source == "vectors" else "edge_feature_size", "teacher", "v2v"
        )
        self.projection = projection(
            _setting(student_config, "hidden_size", "student", "v2v"), teacher_width, bias=False
        )

    def forward(
        self, teacher_outputs: ModelOutput, student_outputs: ModelOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        student = _field(student_outputs, "vector_features", "student", "v2v")
        target = teacher_target(teacher_outputs, self.teacher_targets[0], "v2v")
        return {"v2v": masked_feature_mse(self.projection(student), target, student_outputs.atom_mask)}
