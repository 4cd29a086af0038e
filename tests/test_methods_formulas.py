"""The formulas of docs/methods.md on tiny hand-computed cases.

Every expected number below was worked out by hand (the arithmetic is in the comments); none comes from the
package's code. The cases cover the total losses (CCMD eq. 16, ST-KD eq. 16 with its initial stage, KD-GNN eq. 2),
which `DistillationModel` composes from the weighted objectives, and small cases of the objectives themselves.
Batches hold two molecules of 1 and 2 atoms, so that per-molecule normalisations (each molecule's own N) differ
from batch-level ones, and the padded slots hold large values that must not leak into any loss.
"""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import TrainerState

from molformer_kd.distillation.registry import build_objective
from molformer_kd.distillation.trainer import DistillationModel, InitialStageCallback
from molformer_kd.modeling.gnn3d import EnergyAndForcesOutput
from molformer_kd.modeling.outputs import MolecularModelOutput, MolecularPropertyOutput

ATOM_MASK = torch.tensor([[1, 0], [1, 1]])  # molecule 0 has 1 atom, molecule 1 has 2 atoms
PAD = 100.0


class FixedStudent(nn.Module):
    """A student whose forward returns a prepared output (the objectives only read outputs)."""

    def __init__(self, output):
        super().__init__()
        self.output = output

    def forward(self, **inputs):
        return self.output


def close(value, expected):
    torch.testing.assert_close(value, torch.tensor(expected, dtype=value.dtype))


# ------------------------------------------------------------------------------------------------ CCMD (§1)


def ccmd_states():
    """2 layers, width 2, student = teacher + delta. Per token, L1 = mean |delta| over the 2 features.

    molecule 0 (N=1): layer 1: global delta (1, -3) -> 2, atom (2, -2) -> 2; layer 2: global (1, 1) -> 1, atom
    (-1, 1) -> 1. So L_m = 3, L_a = 3.
    molecule 1 (N=2): layer 1: global (0, 2) -> 1, atoms (1, -1) -> 1 and (3, 5) -> 4; layer 2: global (-1, -1) -> 1,
    atoms (1, 1) -> 1 and (1, -1) -> 1. So L_m = 2, L_a = 5 + 2 = 7.
    """
    teacher = [torch.full((2, 3, 2), 0.5) for _ in range(3)]
    delta = [
        torch.full((2, 3, 2), 50.0),  # embedding output: never distilled
        torch.tensor([[[1.0, -3.0], [2.0, -2.0], [PAD, PAD]], [[0.0, 2.0], [1.0, -1.0], [3.0, 5.0]]]),  # layer 1
        torch.tensor([[[1.0, 1.0], [-1.0, 1.0], [PAD, PAD]], [[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0]]]),  # layer 2
    ]
    student = [t + d for t, d in zip(teacher, delta)]
    return tuple(teacher), tuple(student)


def graph_config(model_type="molformer_graphormer"):
    return SimpleNamespace(num_hidden_layers=2, hidden_size=2, num_attention_heads=1, model_type=model_type)


BATCH = {"teacher_inputs": {"attention_mask": ATOM_MASK}, "student_inputs": {"attention_mask": ATOM_MASK}}


@pytest.mark.parametrize(
    "options, expected",
    [
        # f(N) = 1/N^2: local = mean(3/1, 7/4) = 2.375 (a batch-level N = 2 would give mean(3/4, 7/4) = 1.25)
        ({"variant": "coordinated", "student_kind": "transformer"}, {"ccmd_global": 2.5, "ccmd_local": 2.375}),
        # f(N) = 1/N (GIN): local = mean(3/1, 7/2) = 3.25; global = mean(3, 2) = 2.5
        ({"variant": "coordinated", "student_kind": "gin"}, {"ccmd_global": 2.5, "ccmd_local": 3.25}),
        ({"variant": "global"}, {"ccmd_global": 2.5}),
        ({"variant": "local"}, {"ccmd_local": 3.25}),  # atom mean L_a / N
        # one L1 over all tokens: 0.1 * mean((3 + 3) / 2, (2 + 7) / 3) = 0.1 * 3
        ({"variant": "joint", "search_weight": 0.1}, {"ccmd_joint": 0.3}),
        # last layer only: L_m = mean(1, 1), f(N) L_a = mean(1/1, 2/4)
        ({"layers": "last"}, {"ccmd_global": 1.0, "ccmd_local": 0.75}),
    ],
)
def test_ccmd_hand_computed(options, expected):
    objective = build_objective("ccmd", graph_config(), graph_config(), **options)
    teacher, student = ccmd_states()
    out = objective(MolecularModelOutput(hidden_states=teacher), MolecularModelOutput(hidden_states=student), BATCH)
    assert set(out) == set(expected)
    for name, value in expected.items():
        close(out[name], value)


def test_ccmd_search_variant_follows_paper_table_iii():
    """baseline + L_m + W_search * (L_a / N): local = 0.1 * mean(3 / 1, 7 / 2) = 0.325."""
    objective = build_objective("ccmd", graph_config(), graph_config(), variant="search", search_weight=0.1)
    teacher, student = ccmd_states()
    out = objective(MolecularModelOutput(hidden_states=teacher), MolecularModelOutput(hidden_states=student), BATCH)
    close(out["ccmd_global"], 2.5)
    close(out["ccmd_local"], 0.325)


def test_ccmd_gin_weight_is_chosen_by_the_student_model_type():
    objective = build_objective("ccmd", graph_config(), graph_config("molformer_gin"))
    teacher, student = ccmd_states()
    out = objective(MolecularModelOutput(hidden_states=teacher), MolecularModelOutput(hidden_states=student), BATCH)
    close(out["ccmd_local"], 3.25)


def test_ccmd_total_loss_eq16_hand_computed():
    """L = L_task + L_m + 1/N^2 L_a: 0.5 + 2.5 + 2.375 = 5.375 (task loss 0.5; both weights 1)."""
    teacher, student = ccmd_states()
    model = DistillationModel(
        FixedStudent(MolecularPropertyOutput(loss=torch.tensor(0.5), hidden_states=student)),
        {"task": build_objective("task", None, None), "ccmd": build_objective("ccmd", graph_config(), graph_config())},
        {"task": 1.0, "ccmd": 1.0},
    )
    out = model({}, MolecularModelOutput(hidden_states=teacher), batch=BATCH)
    close(out.loss, 5.375)
    assert set(out.components) == {"task", "ccmd_global", "ccmd_local"}


# ------------------------------------------------------------------------------------------------ ST-KD (§2)


def stkd_case():
    """One teacher layer and one biased student layer, 1 head each, width 2; pair (0, 0).

    Student sequences: [V], atom tokens, a bond token (length 4). Molecule 0 has one atom (token 1), molecule 1 two
    atoms (tokens 1, 2) and a bond (token 3).

    Feature loss (eq. 8), MSE of the virtual tokens: molecule 0: teacher (1, 1), student (0, 3) -> (1 + 4) / 2 = 2.5;
    molecule 1: teacher (0, 0), student (2, 0) -> 4 / 2 = 2. Mean 2.25.

    Attention loss (eq. 15), rows = atoms, columns = [V] + atoms:
    molecule 0: bias row (0, 0) -> softmax (1/2, 1/2), teacher (1, 0): (1/4 + 1/4) / (1 * 1 * 2 entries) = 0.25.
    molecule 1: row 1 bias (0, 0, 0) -> (1/3, 1/3, 1/3) = teacher; row 2 bias (ln 2, 0, 0) -> (1/2, 1/4, 1/4),
    teacher (0, 1/2, 1/2): (1/4 + 1/16 + 1/16) / (1 * 2 * 3 entries) = 0.0625. Mean 0.15625.
    """
    teacher_hidden = torch.zeros(2, 3, 2)
    teacher_hidden[0, 0] = torch.tensor([1.0, 1.0])
    teacher_hidden[:, 1:] = 7.0  # atom tokens: not part of the feature loss
    student_hidden = torch.full((2, 4, 2), -7.0)
    student_hidden[0, 0] = torch.tensor([0.0, 3.0])
    student_hidden[1, 0] = torch.tensor([2.0, 0.0])

    bias = torch.full((2, 1, 4, 4), 5.0)  # [V] row, bond row and bond/padding columns: outside the loss
    bias[0, 0, 1, :2] = torch.tensor([0.0, 0.0])
    bias[1, 0, 1, :3] = torch.tensor([0.0, 0.0, 0.0])
    bias[1, 0, 2, :3] = torch.tensor([math.log(2.0), 0.0, 0.0])

    attention = torch.zeros(2, 1, 3, 3)
    attention[:, :, 0] = torch.tensor([0.2, 0.3, 0.5])  # [V] row: left out on both sides
    attention[0, 0, 1] = torch.tensor([1.0, 0.0, 0.0])
    attention[1, 0, 1] = torch.tensor([1 / 3, 1 / 3, 1 / 3])
    attention[1, 0, 2] = torch.tensor([0.0, 0.5, 0.5])

    teacher_outputs = MolecularModelOutput(
        hidden_states=(torch.zeros(2, 3, 2), teacher_hidden), attentions=(attention,)
    )
    student_output = MolecularPropertyOutput(
        loss=torch.tensor(0.5), hidden_states=(torch.zeros(2, 4, 2), student_hidden), attention_biases=(bias,)
    )
    batch = {
        "teacher_inputs": {"attention_mask": ATOM_MASK},
        "student_inputs": {"atom_token_index": torch.tensor([[1, 0], [1, 2]]), "atom_mask": ATOM_MASK},
    }
    return teacher_outputs, student_output, batch


def stkd_model():
    teacher_config = SimpleNamespace(num_hidden_layers=1, hidden_size=2, num_attention_heads=1)
    student_config = SimpleNamespace(num_hidden_layers=1, hidden_size=2, num_attention_heads=1, num_biased_layers=1)
    teacher_outputs, student_output, batch = stkd_case()
    objectives = {
        "task": build_objective("task", None, None),
        "stkd_feature": build_objective("stkd_feature", teacher_config, student_config, pairs=[(0, 0)]),
        "stkd_attention": build_objective("stkd_attention", teacher_config, student_config, pairs=[(0, 0)]),
    }
    weights = {"task": 1.0, "stkd_feature": 0.5, "stkd_attention": 2.0}  # the paper's w_task, alpha, beta
    return DistillationModel(FixedStudent(student_output), objectives, weights), teacher_outputs, batch


def test_stkd_total_loss_eq16_and_initial_stage_hand_computed():
    model, teacher_outputs, batch = stkd_model()
    out = model({}, teacher_outputs, batch=batch)
    close(out.components["stkd_feature"], 2.25)
    close(out.components["stkd_attention"], 0.15625)
    # eq. (16): 1 * 0.5 + 0.5 * 2.25 + 2 * 0.15625 = 1.9375
    close(out.loss, 1.9375)

    # Initial stage (A.2.1): w_task = 0, alpha = 1, beta = 4 for the first epochs: 2.25 + 4 * 0.15625 = 2.875
    callback = InitialStageCallback(5, {"task": 0.0, "stkd_feature": 1.0, "stkd_attention": 4.0}, model.weights)
    state = TrainerState()
    state.epoch = 0.0
    callback.on_step_begin(None, state, None, model=model)
    close(model({}, teacher_outputs, batch=batch).loss, 2.875)
    state.epoch = 5.0
    callback.on_step_begin(None, state, None, model=model)
    close(model({}, teacher_outputs, batch=batch).loss, 1.9375)


# ------------------------------------------------------------------------------------------------ D&D (§3)


@pytest.mark.parametrize(
    "mode, expected",
    [
        # node: molecule 0: |(0,0) - (1,0)|^2 = 1; molecule 1: (|(1,-1)|^2 + |(-3,-1)|^2) / 2 = (2 + 10) / 2 = 6.
        # Mean 3.5 (the paper's unnormalised sum over atoms would give mean(1, 12) = 6.5).
        ("node", 3.5),
        # graph: molecule 0: 1; molecule 1: |mean S - mean T|^2 = |(1,1) - (2,2)|^2 = 2. Mean 1.5.
        ("graph", 1.5),
    ],
)
def test_dnd_graph_and_node_hand_computed(mode, expected):
    config = SimpleNamespace(hidden_size=2)
    teacher = torch.full((2, 3, 2), 9.0)  # global tokens: not atoms
    teacher[0, 1] = torch.tensor([1.0, 0.0])
    teacher[0, 2] = PAD
    teacher[1, 1], teacher[1, 2] = torch.tensor([1.0, 1.0]), torch.tensor([3.0, 3.0])
    student = torch.full((2, 3, 2), -5.0)
    student[0, 1] = torch.tensor([0.0, 0.0])
    student[0, 2] = -PAD
    student[1, 1], student[1, 2] = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0])
    objective = build_objective("dnd", config, config, mode=mode)
    out = objective(
        MolecularModelOutput(last_hidden_state=teacher), MolecularModelOutput(last_hidden_state=student), BATCH
    )
    assert set(out) == {f"dnd_{mode}"}
    close(out[f"dnd_{mode}"], expected)


# ------------------------------------------------------------------------------------------------ KD-GNN (§4)


def kd_gnn_student():
    forces = torch.zeros(2, 2, 3)
    node_features = torch.tensor([[[1.0, 1.0], [PAD, PAD]], [[0.0, 2.0], [3.0, 1.0]]])
    return EnergyAndForcesOutput(
        energy=torch.tensor([1.0, 2.0]),
        forces=forces,
        atom_energies=torch.tensor([[1.0, PAD], [1.0, 2.0]]),
        node_features=node_features,
        atom_mask=ATOM_MASK.bool(),
    )


def test_kd_gnn_total_loss_eq2_hand_computed():
    """L = a_E L_E + a_F L_F + lambda L_KD: a_E = 1 (MAE), a_F = 10 (mean per-atom force error norm), n2n, lambda 100.

    L_E: |1 - 1.5| = 0.5 and |2 - 1| = 1 -> 0.75.
    L_F: molecule 0: |(3, 4, 0)| = 5; molecule 1: (|(0, 0, 1)| + |(0, 0, 3)|) / 2 = 2 -> 3.5, times 10 = 35.
    n2n: molecule 0: MSE((1, 1), (0, 0)) = 1; molecule 1: (MSE((0, 2), (0, 0)) + MSE((3, 1), (1, 1))) / 2 = (2 + 2) / 2
    = 2 -> 1.5, times 100 = 150. Total 185.75.
    """
    config = SimpleNamespace(hidden_size=2)
    teacher = EnergyAndForcesOutput(
        node_features=torch.tensor([[[0.0, 0.0], [-PAD, 0.0]], [[0.0, 0.0], [1.0, 1.0]]]), atom_mask=ATOM_MASK.bool()
    )
    labels = {
        "energy": torch.tensor([1.5, 1.0]),
        "forces": torch.tensor([[[3.0, 4.0, 0.0], [PAD, PAD, PAD]], [[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]]]),
    }
    objectives = {
        "energy_forces": build_objective(
            "energy_forces", None, None, energy_weight=1.0, force_weight=10.0, energy_loss="mae", force_loss="l2mae"
        ),
        "n2n": build_objective("n2n", config, config),
    }
    model = DistillationModel(FixedStudent(kd_gnn_student()), objectives, {"energy_forces": 1.0, "n2n": 100.0})
    out = model({}, teacher, batch={"labels": labels})
    close(out.components["task_energy"], 0.75)
    close(out.components["task_forces"], 35.0)
    close(out.components["n2n"], 1.5)
    close(out.loss, 185.75)


@pytest.mark.parametrize("energy_loss, expected_vanilla2", [("mae", 1.0), ("mse", 1.5)])
def test_vanilla_kd_hand_computed(energy_loss, expected_vanilla2):
    """vanilla1 (eq. 7): teacher E (1, 4) vs student (1, 2): MAE mean(0, 2) = 1; teacher forces molecule 0 |(0, 0, 2)|
    = 2, molecule 1 (0 + |(0, 4, 3)|) / 2 = 2.5 vs zero student forces -> 2.25, times a_F = 10 -> 22.5.
    vanilla2 (eq. 8): per-atom energies, student (1 | 1, 2) vs teacher (0 | 3, 2): MAE mean(1, (2 + 0) / 2) = 1;
    MSE mean(1, (4 + 0) / 2) = 1.5."""
    student = kd_gnn_student()
    teacher = EnergyAndForcesOutput(
        energy=torch.tensor([1.0, 4.0]),
        forces=torch.tensor([[[0.0, 0.0, 2.0], [PAD, PAD, PAD]], [[0.0, 0.0, 0.0], [0.0, 4.0, 3.0]]]),
        atom_energies=torch.tensor([[0.0, -PAD], [3.0, 2.0]]),
        atom_mask=ATOM_MASK.bool(),
    )
    vanilla1 = build_objective(
        "vanilla1", None, None, energy_weight=1.0, force_weight=10.0, energy_loss="mae", force_loss="l2mae"
    )
    parts = vanilla1(teacher, student, {})
    close(parts["vanilla1_energy"], 1.0)
    # l2mae keeps 1e-12 under the square root (no NaN gradient at a zero error): 1e-6 on the exact atom.
    torch.testing.assert_close(parts["vanilla1_forces"], torch.tensor(22.5), atol=1e-4, rtol=0)
    vanilla2 = build_objective("vanilla2", None, None, energy_loss=energy_loss)
    close(vanilla2(teacher, student, {})["vanilla2"], expected_vanilla2)
