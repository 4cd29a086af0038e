"""Distillation objectives of docs/methods.md §1-3 and §5: CCMD, ST-KD (feature + attention), D&D stage 2,
prediction KD, the task loss.

Conventions shared by every objective here:

* Hidden states follow the model output contract: `hidden_states[0]` is the embedding output and
  `hidden_states[l]` the output of layer l (1-based), each (B, 1+N, D) with token 0 the global/virtual token
  (SMILES students: (B, L, D), atom tokens located through `atom_token_index`).
* Atoms of molecule b are the teacher's tokens 1..N_b; `batch["teacher_inputs"]["attention_mask"]` (B, N) marks
  the real ones. An all-atom point-cloud teacher (SchNet, PaiNN) has more tokens, its hydrogens, after the N_b
  atoms it shares with the student: `batch["shared_atom_mask"]` (B, N) then marks the shared ones, and the
  objectives read its tokens 1..N_b alone (its global token 0 is its pooled vector, hydrogens included).
  The student's atom j is its token 1+j (graph students) or `atom_token_index[b, j]` (SMILES).
* Reduction: every component is a per-molecule loss averaged over the molecules of the batch. This is what lets
  `DistillationTrainer` weight micro-batches by their molecule count and make gradient accumulation exact.
* `P` (CCMD), `W_feat` (ST-KD) and the D&D projection are student-owned `nn.Linear` maps student width ->
  teacher width, created only when the widths differ and one per distilled layer pair (layers of different depth
  live in different feature spaces, so one shared map would have to fit all of them at once).

Why one long module: the three property-distillation methods (CCMD, ST-KD, D&D) share the layer pairing, the
projections and the token alignment above; the 3D-GNN objectives live in `gnn_objectives.py`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .registry import DistillationObjective, register_objective

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import PretrainedConfig
    from transformers.utils import ModelOutput


def num_layers(config: PretrainedConfig, role: str) -> int:
    """Depth of a model from its config (`num_hidden_layers`, or `num_layers` for GNN configs)."""
    for name in ("num_hidden_layers", "num_layers"):
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise ValueError(f"{role} config {type(config).__name__} has no num_hidden_layers/num_layers: cannot pair layers")


def hidden_width(config: PretrainedConfig, role: str) -> int:
    value = getattr(config, "hidden_size", None)
    if value is None:
        raise ValueError(f"{role} config {type(config).__name__} has no hidden_size")
    return int(value)


def pair_layers(teacher_layers: int, student_layers: int) -> list[tuple[int, int]]:
    """(teacher layer, student layer) for every student layer l = 1..Ls (1-based, embedding output excluded).

    Equal depth pairs l <-> l; otherwise student l <- teacher round(l * Lt / Ls), rounding halves up (Python's
    `round` rounds halves to even, which would make the mapping depend on parity).
    """
    if teacher_layers < 1 or student_layers < 1:
        raise ValueError(f"cannot pair layers of a {teacher_layers}-layer teacher and a {student_layers}-layer student")
    return [(math.floor(s * teacher_layers / student_layers + 0.5), s) for s in range(1, student_layers + 1)]


def projection(student_width: int, teacher_width: int, bias: bool = True) -> nn.Module:
    """Student -> teacher width map, the identity when the widths already agree."""
    if student_width == teacher_width:
        return nn.Identity()
    return nn.Linear(student_width, teacher_width, bias=bias)


def teacher_atom_mask(batch: dict[str, Any]) -> torch.Tensor:
    """(B, N) bool of the atoms teacher and student share, in teacher atom order (teacher tokens 1..N)."""
    if batch.get("shared_atom_mask") is not None:
        return batch["shared_atom_mask"].bool()
    teacher_inputs = batch.get("teacher_inputs") or {}
    student_inputs = batch.get("student_inputs") or {}
    for inputs, key in ((teacher_inputs, "attention_mask"), (student_inputs, "atom_mask")):
        if inputs.get(key) is not None:
            return inputs[key].bool()
    raise ValueError("batch has neither teacher_inputs['attention_mask'] nor student_inputs['atom_mask']: no atom mask")


def student_atom_states(hidden: torch.Tensor, batch: dict[str, Any], num_atoms: int) -> torch.Tensor:
    """(B, N, D) student states of atom tokens in teacher atom order (padding rows are arbitrary, mask them)."""
    index = (batch.get("student_inputs") or {}).get("atom_token_index")
    if index is None:
        if hidden.shape[1] < 1 + num_atoms:
            raise ValueError(
                f"student has {hidden.shape[1]} tokens but the teacher has {num_atoms} atoms + the global token; "
                "pass atom_token_index for students whose atom tokens are not tokens 1..N"
            )
        return hidden[:, 1 : 1 + num_atoms]
    if index.shape[1] != num_atoms:
        raise ValueError(f"atom_token_index covers {index.shape[1]} atoms, the teacher batch has {num_atoms}")
    return torch.gather(hidden, 1, index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


def _require(outputs: ModelOutput, field: str, role: str, objective: str) -> Any:
    value = getattr(outputs, field, None)
    if value is None:
        raise ValueError(f"objective {objective!r} needs the {role}'s {field}, but its output has none")
    return value


def _check_layer_count(hidden_states: Sequence[torch.Tensor], expected: int, role: str, objective: str) -> None:
    if len(hidden_states) != expected + 1:
        raise ValueError(
            f"objective {objective!r}: the {role} returned {len(hidden_states)} hidden states, expected "
            f"{expected + 1} (embedding output + {expected} layers, from its config)"
        )


@register_objective("task")
class TaskObjective(DistillationObjective):
    """The student head's own supervised loss (L1/MSE regression or BCE/CE, NaN labels masked; or denoising)."""

    needs_teacher = False

    def __init__(
        self, teacher_config: PretrainedConfig | None = None, student_config: PretrainedConfig | None = None
    ) -> None:
        super().__init__()

    def forward(
        self, teacher_outputs: ModelOutput | None, student_outputs: ModelOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        loss = getattr(student_outputs, "loss", None)
        if loss is None:
            raise ValueError(
                "objective 'task' needs the student head's loss, but it returned none: the batch has no labels "
                "(drop 'task' from the objectives for label-free distillation such as D&D stage 2)"
            )
        return {"task": loss}


CCMD_VARIANTS = ("coordinated", "global", "local", "search", "joint")


@register_objective("ccmd")
class CCMDObjective(DistillationObjective):
    r"""Coordinated cross-modal distillation (CCMD §III-E; docs/methods.md §1).

    Per molecule b with N_b atoms and paired layers (t, s):
    `L_m = sum_(t,s) L1(T_0^t, P S_0^s)`, `L_a = sum_(t,s) sum_{j=1..N_b} L1(T_j^t, P S_j^s)`, where
    `L1(x, y) = mean_d |x_d - y_d|` (mean over the feature dimension, as `torch.nn.L1Loss` on one token).
    Components (each then averaged over the molecules of the batch):

    * `coordinated`: `ccmd_global = L_m`, `ccmd_local = f(N_b) L_a`, f = 1/N^2 (transformer) or 1/N (GIN);
    * `global`: `ccmd_global = L_m` only;  `local`: `ccmd_local = L_a / N_b` only (the atom mean);
    * `search`: `ccmd_global = L_m`, `ccmd_local = W L_a / N_b` (a searched constant W times the atom mean);
    * `joint`: `ccmd_joint = W sum_(t,s) mean_{j=0..N_b} L1(T_j^t, P S_j^s)` (one L1 over all tokens).

    `layers="all"` distils every student layer 1..Ls (embedding output excluded: the paper's sums run over
    l = 1..L) against its paired teacher layer; `layers="last"` only the last student layer against the last
    teacher layer. `P` is one student-owned linear map per paired layer when the widths differ.
    """

    teacher_outputs_needed = frozenset({"hidden_states"})
    student_outputs_needed = frozenset({"hidden_states"})

    def __init__(
        self,
        teacher_config: PretrainedConfig,
        student_config: PretrainedConfig,
        layers: str = "all",
        variant: str = "coordinated",
        student_kind: str | None = None,
        search_weight: float | None = None,
    ) -> None:
        super().__init__()
        if layers not in ("all", "last"):
            raise ValueError(f"objective 'ccmd': layers must be 'all' or 'last', got {layers!r}")
        if variant not in CCMD_VARIANTS:
            raise ValueError(f"objective 'ccmd': variant must be one of {CCMD_VARIANTS}, got {variant!r}")
        if student_kind is None:
            student_kind = "gin" if "gin" in str(getattr(student_config, "model_type", "")).lower() else "transformer"
        if student_kind not in ("transformer", "gin"):
            raise ValueError(f"objective 'ccmd': student_kind must be 'transformer' or 'gin', got {student_kind!r}")
        if variant in ("search", "joint"):
            if search_weight is None or not search_weight > 0:
                raise ValueError(
                    f"objective 'ccmd': variant {variant!r} needs a positive search_weight, got {search_weight}"
                )
        elif search_weight is not None:
            raise ValueError(
                f"objective 'ccmd': search_weight is only used by variants 'search' and 'joint', not {variant!r}"
            )
        self.layers = layers
        self.variant = variant
        self.student_kind = student_kind
        self.search_weight = search_weight
        self.teacher_layers = num_layers(teacher_config, "teacher")
        self.student_layers = num_layers(student_config, "student")
        pairs = pair_layers(self.teacher_layers, self.student_layers)
        self.layer_pairs = pairs[-1:] if layers == "last" else pairs
        self.projections = nn.ModuleList(
            projection(hidden_width(student_config, "student"), hidden_width(teacher_config, "teacher"))
            for _ in self.layer_pairs
        )

    def coordinating_weight(self, n_atoms: torch.Tensor) -> torch.Tensor:
        n_atoms = n_atoms.clamp(min=1)
        return 1.0 / n_atoms**2 if self.student_kind == "transformer" else 1.0 / n_atoms

    def forward(
        self, teacher_outputs: ModelOutput, student_outputs: ModelOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        teacher_hidden = _require(teacher_outputs, "hidden_states", "teacher", "ccmd")
        student_hidden = _require(student_outputs, "hidden_states", "student", "ccmd")
        _check_layer_count(teacher_hidden, self.teacher_layers, "teacher", "ccmd")
        _check_layer_count(student_hidden, self.student_layers, "student", "ccmd")
        atom_mask = teacher_atom_mask(batch)
        mask = atom_mask.to(teacher_hidden[-1].dtype)
        n_atoms = mask.sum(1)
        global_sum = torch.zeros_like(n_atoms)
        atom_sum = torch.zeros_like(n_atoms)
        for (t_layer, s_layer), proj in zip(self.layer_pairs, self.projections):
            teacher = teacher_hidden[t_layer]
            student = proj(student_hidden[s_layer])
            global_sum = global_sum + (teacher[:, 0] - student[:, 0]).abs().mean(-1)
            student_atoms = student_atom_states(student, batch, atom_mask.shape[1])
            atom_l1 = (teacher[:, 1 : 1 + atom_mask.shape[1]] - student_atoms).abs().mean(-1)
            atom_sum = atom_sum + (atom_l1 * mask).sum(1)
        if self.variant == "joint":
            return {"ccmd_joint": (self.search_weight * (global_sum + atom_sum) / (n_atoms + 1)).mean()}
        components = {}
        if self.variant != "local":
            components["ccmd_global"] = global_sum.mean()
        if self.variant == "coordinated":
            components["ccmd_local"] = (self.coordinating_weight(n_atoms) * atom_sum).mean()
        elif self.variant == "local":
            components["ccmd_local"] = (atom_sum / n_atoms.clamp(min=1)).mean()
        elif self.variant == "search":
            components["ccmd_local"] = (self.search_weight * atom_sum / n_atoms.clamp(min=1)).mean()
        return components


def _validate_stkd_pairs(
    pairs: Sequence[Sequence[int]],
    teacher_layers: int,
    student_layers: int,
    objective: str,
    student_first_layer: int = 0,
) -> list[tuple[int, int]]:
    """ST-KD pairs are 0-based layer indices (p, q) as in the paper ({(9,3),(10,4),(11,5)} for 12 + 3+3 layers)."""
    checked = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"objective {objective!r}: layer pairs are (teacher p, student q), got {pair!r}")
        p, q = int(pair[0]), int(pair[1])
        if not 0 <= p < teacher_layers:
            raise ValueError(
                f"objective {objective!r}: pair {(p, q)} needs teacher layer {p}, the teacher has layers "
                f"0..{teacher_layers - 1}"
            )
        if not student_first_layer <= q < student_layers:
            raise ValueError(
                f"objective {objective!r}: pair {(p, q)} needs student layer {q}, allowed layers are "
                f"{student_first_layer}..{student_layers - 1}"
                + (" (attention distillation needs a biased layer)" if student_first_layer else "")
            )
        checked.append((p, q))
    if not checked:
        raise ValueError(f"objective {objective!r}: no layer pairs given")
    return checked


STKD_PAIRS = ((9, 3), (10, 4), (11, 5))


@register_objective("stkd_feature")
class STKDFeatureObjective(DistillationObjective):
    r"""ST-KD molecular feature distillation, eq. (8): `sum_(p,q) MSE(T_0^p, S_0^q W_feat)`.

    (p, q) are 0-based layer indices (hidden_states[p + 1], hidden_states[q + 1]); MSE is the mean over the
    feature dimension, per molecule, then averaged over molecules. `W_feat` (no bias, as the paper's matrix) is
    one per pair, only when the widths differ. Component: `stkd_feature`.
    """

    teacher_outputs_needed = frozenset({"hidden_states"})
    student_outputs_needed = frozenset({"hidden_states"})

    def __init__(
        self,
        teacher_config: PretrainedConfig,
        student_config: PretrainedConfig,
        pairs: Sequence[Sequence[int]] = STKD_PAIRS,
    ) -> None:
        super().__init__()
        self.teacher_layers = num_layers(teacher_config, "teacher")
        self.student_layers = num_layers(student_config, "student")
        self.pairs = _validate_stkd_pairs(pairs, self.teacher_layers, self.student_layers, "stkd_feature")
        self.projections = nn.ModuleList(
            projection(hidden_width(student_config, "student"), hidden_width(teacher_config, "teacher"), bias=False)
            for _ in self.pairs
        )

    def forward(
        self, teacher_outputs: ModelOutput, student_outputs: ModelOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        teacher_hidden = _require(teacher_outputs, "hidden_states", "teacher", "stkd_feature")
        student_hidden = _require(student_outputs, "hidden_states", "student", "stkd_feature")
        _check_layer_count(teacher_hidden, self.teacher_layers, "teacher", "stkd_feature")
        _check_layer_count(student_hidden, self.student_layers, "student", "stkd_feature")
        total = 0.0
        for (p, q), proj in zip(self.pairs, self.projections):
            student = proj(student_hidden[q + 1][:, 0])
            total = total + ((teacher_hidden[p + 1][:, 0] - student) ** 2).mean(-1)
        return {"stkd_feature": total.mean()}


@register_objective("stkd_attention")
class STKDAttentionObjective(DistillationObjective):
    r"""ST-KD attention distillation through the biases of biased layers, eq. (12)-(15).

    For pair (p, q): take the raw bias `B^q` (B, h, L, L) of student layer q on the rows/columns of `[V]` and the
    N atom tokens in teacher atom order (`atom_token_index`), mix heads with `W_attn` (h' x h), softmax over the
    last axis (keys: `[V]` + the molecule's real atoms; padding excluded) and compare with MSE to the teacher's
    post-softmax attention `A^p` (B, h', 1+N, 1+N) on the same rows/columns. Row 0 (the virtual token, where the
    mask M is zero) and padded rows/columns are excluded on both sides. Per molecule the squared errors are
    averaged over its h' * N_b * (N_b + 1) entries, then averaged over molecules. Component: `stkd_attention`.

    `head_mixing=None` uses `W_attn` only when h' != h (identity otherwise, as the paper allows); `True` always
    learns it (identity-initialised when h' == h); `False` with h' != h is a configuration error.
    """

    teacher_outputs_needed = frozenset({"attentions"})
    student_outputs_needed = frozenset({"attentions"})

    def __init__(
        self,
        teacher_config: PretrainedConfig,
        student_config: PretrainedConfig,
        pairs: Sequence[Sequence[int]] = STKD_PAIRS,
        head_mixing: bool | None = None,
    ) -> None:
        super().__init__()
        self.teacher_layers = num_layers(teacher_config, "teacher")
        self.student_layers = num_layers(student_config, "student")
        num_biased = getattr(student_config, "num_biased_layers", None)
        if num_biased is None:
            raise ValueError(
                f"objective 'stkd_attention' needs a student with biased attention layers (num_biased_layers); "
                f"{type(student_config).__name__} has none"
            )
        if not num_biased:
            raise ValueError("objective 'stkd_attention': the student has no biased layers (num_biased_layers=0)")
        self.first_biased_layer = self.student_layers - int(num_biased)
        self.num_biased_layers = int(num_biased)
        self.pairs = _validate_stkd_pairs(
            pairs, self.teacher_layers, self.student_layers, "stkd_attention", self.first_biased_layer
        )
        teacher_heads = int(teacher_config.num_attention_heads)
        student_heads = int(student_config.num_attention_heads)
        if head_mixing is False and teacher_heads != student_heads:
            raise ValueError(
                f"objective 'stkd_attention': teacher has {teacher_heads} heads, student {student_heads}; "
                "head_mixing=False is impossible (W_attn is needed to map heads)"
            )
        if head_mixing is None:
            head_mixing = teacher_heads != student_heads
        self.head_mixing = head_mixing
        self.teacher_heads = teacher_heads
        self.student_heads = student_heads
        mixers = []
        for _ in self.pairs:
            if not head_mixing:
                mixers.append(nn.Identity())
                continue
            mixer = nn.Linear(student_heads, teacher_heads, bias=False)
            if teacher_heads == student_heads:
                nn.init.eye_(mixer.weight)
            mixers.append(mixer)
        self.head_mixers = nn.ModuleList(mixers)

    def bias_index(self, q: int, num_biases: int) -> int:
        """Position of layer q's bias in `attention_biases` (one per biased layer, or one per layer)."""
        if num_biases == self.student_layers:
            return q
        if num_biases == self.num_biased_layers:
            return q - self.first_biased_layer
        raise ValueError(
            f"objective 'stkd_attention': the student returned {num_biases} attention biases, expected "
            f"{self.num_biased_layers} (biased layers) or {self.student_layers} (all layers)"
        )

    def forward(
        self, teacher_outputs: ModelOutput, student_outputs: ModelOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        teacher_attentions = _require(teacher_outputs, "attentions", "teacher", "stkd_attention")
        student_biases = _require(student_outputs, "attention_biases", "student", "stkd_attention")
        if len(teacher_attentions) != self.teacher_layers:
            raise ValueError(
                f"objective 'stkd_attention': the teacher returned {len(teacher_attentions)} attention maps, "
                f"expected {self.teacher_layers}"
            )
        atom_index = (batch.get("student_inputs") or {}).get("atom_token_index")
        if atom_index is None:
            raise ValueError("objective 'stkd_attention' needs student_inputs['atom_token_index'] (SMILES students)")
        atom_mask = teacher_atom_mask(batch)
        batch_size, num_atoms = atom_index.shape
        token_index = torch.cat([atom_index.new_zeros(batch_size, 1), atom_index], dim=1)  # [V] then atoms
        key_valid = torch.cat([atom_mask.new_ones(batch_size, 1), atom_mask], dim=1)
        row_valid = torch.cat([atom_mask.new_zeros(batch_size, 1), atom_mask], dim=1)
        entry_valid = (row_valid[:, :, None] & key_valid[:, None, :])[:, None]  # (B, 1, 1+N, 1+N)
        n_atoms = atom_mask.sum(1)
        entries = (n_atoms * (n_atoms + 1) * self.teacher_heads).clamp(min=1)
        total = 0.0
        for (p, q), mixer in zip(self.pairs, self.head_mixers):
            bias = student_biases[self.bias_index(q, len(student_biases))]
            heads, length = bias.shape[1], bias.shape[-1]
            rows = torch.gather(bias, 2, token_index[:, None, :, None].expand(-1, heads, -1, length))
            bias_sub = torch.gather(rows, 3, token_index[:, None, None, :].expand(-1, heads, 1 + num_atoms, -1))
            mixed = mixer(bias_sub.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # heads h -> h'
            mixed = mixed.masked_fill(~key_valid[:, None, None, :], float("-inf"))
            predicted = torch.softmax(mixed.float(), dim=-1)
            teacher = teacher_attentions[p].float()
            if teacher.shape[-1] != 1 + num_atoms or teacher.shape[1] != predicted.shape[1]:
                raise ValueError(
                    f"objective 'stkd_attention': teacher attention of layer {p} has shape {tuple(teacher.shape)}, "
                    f"expected (B, {predicted.shape[1]}, {1 + num_atoms}, {1 + num_atoms})"
                )
            squared = torch.where(entry_valid, (predicted - teacher) ** 2, torch.zeros_like(predicted))
            total = total + squared.sum((1, 2, 3)) / entries
        return {"stkd_attention": total.mean()}


@register_objective("dnd")
class DenoiseAndDistillObjective(DistillationObjective):
    r"""D&D stage 2 (D&D eq. (6)-(7)) on the encoders' outputs (`last_hidden_state`, the last layer).

    `mode="graph"`: `||mean_pool(P S) - mean_pool(T)||^2` with the mean over the molecule's atoms (the global token
    is not an atom); `mode="node"`: `(1/N_b) sum_j ||P S_j - T_j||^2`. Squared norms sum over the feature
    dimension; per-molecule values are averaged over molecules. Component: `dnd_graph` or `dnd_node`.
    """

    teacher_outputs_needed = frozenset()
    student_outputs_needed = frozenset()

    def __init__(self, teacher_config: PretrainedConfig, student_config: PretrainedConfig, mode: str = "node") -> None:
        super().__init__()
        if mode not in ("graph", "node"):
            raise ValueError(f"objective 'dnd': mode must be 'graph' or 'node', got {mode!r}")
        self.mode = mode
        self.projection = projection(hidden_width(student_config, "student"), hidden_width(teacher_config, "teacher"))

    def forward(
        self, teacher_outputs: ModelOutput, student_outputs: ModelOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        teacher = _require(teacher_outputs, "last_hidden_state", "teacher", "dnd")
        student = self.projection(_require(student_outputs, "last_hidden_state", "student", "dnd"))
        atom_mask = teacher_atom_mask(batch)
        mask = atom_mask.to(teacher.dtype)[..., None]
        n_atoms = mask.sum(1).clamp(min=1)  # (B, 1)
        teacher_atoms = teacher[:, 1 : 1 + atom_mask.shape[1]]
        student_atoms = student_atom_states(student, batch, atom_mask.shape[1])
        if self.mode == "graph":
            difference = (student_atoms * mask).sum(1) / n_atoms - (teacher_atoms * mask).sum(1) / n_atoms
            return {"dnd_graph": (difference**2).sum(-1).mean()}
        squared = ((student_atoms - teacher_atoms) ** 2).sum(-1, keepdim=True) * mask
        return {"dnd_node": (squared.sum(1) / n_atoms).squeeze(-1).mean()}


PREDICTION_PROBLEM_TYPES = ("regression", "multi_label_classification", "single_label_classification")


@register_objective("prediction")
class PredictionObjective(DistillationObjective):
    r"""Response-based KD: the teacher's predicted labels as targets for the student's (docs/methods.md §5).

    Regression (KD-GNN App. C eq. (7), "vanilla KD (1)", on property heads): per molecule the mean over labels k of
    `|y_s,k - y_t,k| / sigma_k` (or its square when the student's `regression_loss` is "mse"), where `sigma_k` is the
    student's `label_std`: the student's own task loss with the teacher's prediction in place of the label.
    Classification (Hinton et al. 2015): `T^2 * BCE(z_s / T, sigmoid(z_t / T))` averaged over labels (multi-label),
    or `T^2 * CE(softmax(z_t / T), log_softmax(z_s / T))` (single-label), with temperature `T`.

    It needs no label, so it reaches the unlabeled training rows of a split with `unlabeled:` (where the teacher's
    3D knowledge becomes the student's targets) as well as the labeled ones. Component: `prediction`.
    """

    teacher_outputs_needed = frozenset({"logits"})

    def __init__(
        self, teacher_config: PretrainedConfig, student_config: PretrainedConfig, temperature: float = 1.0
    ) -> None:
        super().__init__()
        problem_type = getattr(student_config, "problem_type", None) or "regression"
        if problem_type not in PREDICTION_PROBLEM_TYPES:
            raise ValueError(
                f"objective 'prediction': student problem_type {problem_type!r} is not one of "
                f"{PREDICTION_PROBLEM_TYPES}"
            )
        teacher_type = getattr(teacher_config, "problem_type", None) or "regression"
        if teacher_type != problem_type:
            raise ValueError(
                f"objective 'prediction': the teacher predicts {teacher_type!r}, the student {problem_type!r}"
            )
        # A config planned from a run's spec has no label names yet (they come with the data): compare when both do.
        names = [getattr(c, "label_names", None) for c in (teacher_config, student_config)]
        if None not in names and list(names[0]) != list(names[1]):
            raise ValueError(
                f"objective 'prediction': the teacher predicts labels {list(names[0])}, the student {list(names[1])}: "
                "train the teacher on the student's label_columns"
            )
        if not temperature > 0:
            raise ValueError(f"objective 'prediction': temperature must be > 0, got {temperature}")
        if problem_type == "regression" and temperature != 1.0:
            raise ValueError("objective 'prediction': temperature applies to classification, not regression")
        self.problem_type = problem_type
        self.temperature = float(temperature)
        self.squared = (getattr(student_config, "regression_loss", None) or "l1") == "mse"
        std = getattr(student_config, "label_std", None) or [1.0] * int(student_config.num_labels)
        self.register_buffer("label_std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(
        self, teacher_outputs: ModelOutput, student_outputs: ModelOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        teacher = _require(teacher_outputs, "logits", "teacher", "prediction").detach().float()
        student = _require(student_outputs, "logits", "student", "prediction").float()
        if self.problem_type == "regression":
            difference = (student - teacher) / self.label_std.to(student.device)
            per_label = difference**2 if self.squared else difference.abs()
            return {"prediction": per_label.mean(-1).mean()}
        scale = self.temperature
        if self.problem_type == "multi_label_classification":
            per_label = nn.functional.binary_cross_entropy_with_logits(
                student / scale, torch.sigmoid(teacher / scale), reduction="none"
            )
            return {"prediction": scale**2 * per_label.mean(-1).mean()}
        log_student = torch.log_softmax(student / scale, dim=-1)
        cross_entropy = -(torch.softmax(teacher / scale, dim=-1) * log_student).sum(-1)
        return {"prediction": scale**2 * cross_entropy.mean()}
