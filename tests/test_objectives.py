"""Each objective against an independent per-molecule computation on hand-made tensors (molecules of 3 and 9 atoms)."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from molformer_kd.distillation.objectives import (
    CCMDObjective,
    DenoiseAndDistillObjective,
    STKDAttentionObjective,
    STKDFeatureObjective,
    TaskObjective,
    pair_layers,
)
from molformer_kd.distillation.registry import build_objective, get_objective
from molformer_kd.modeling.outputs import MolecularModelOutput, MolecularPropertyOutput

SIZES = (3, 9)  # atoms per molecule; the batch pads to 9


def graph_config(layers, width, heads=4, model_type="molformer_graphormer"):
    return SimpleNamespace(
        num_hidden_layers=layers, hidden_size=width, num_attention_heads=heads, model_type=model_type
    )


def atom_mask(sizes=SIZES):
    n = max(sizes)
    return torch.tensor([[1] * k + [0] * (n - k) for k in sizes])


def hidden_states(layers, width, sizes=SIZES, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(len(sizes), 1 + max(sizes), width, generator=generator) for _ in range(layers + 1))


def graph_batch(sizes=SIZES):
    return {
        "teacher_inputs": {"attention_mask": atom_mask(sizes)},
        "student_inputs": {"attention_mask": atom_mask(sizes)},
    }


def test_pair_layers_equal_and_uneven_depths():
    assert pair_layers(4, 4) == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert pair_layers(12, 3) == [(4, 1), (8, 2), (12, 3)]
    assert pair_layers(12, 6) == [(2, 1), (4, 2), (6, 3), (8, 4), (10, 5), (12, 6)]
    # halves round up: 1 * 5 / 2 = 2.5 -> 3 (Python's round would give 2)
    assert pair_layers(3, 2) == [(2, 1), (3, 2)]
    assert pair_layers(5, 2) == [(3, 1), (5, 2)]


def ccmd_reference(teacher, student, sizes, pairs, projections, variant, f, weight=None):
    """Loop over molecules, layers and atoms with F.l1_loss (mean over features) on single tokens."""
    per_molecule = {"global": [], "local": [], "joint": []}
    for b, n in enumerate(sizes):
        global_loss = atom_loss = 0.0
        for (t, s), proj in zip(pairs, projections):
            projected = proj(student[s][b])
            global_loss += F.l1_loss(projected[0], teacher[t][b][0])
            for j in range(1, n + 1):
                atom_loss += F.l1_loss(projected[j], teacher[t][b][j])
        per_molecule["global"].append(global_loss)
        if variant == "coordinated":
            per_molecule["local"].append(f(n) * atom_loss)
        elif variant == "local":
            per_molecule["local"].append(atom_loss / n)
        elif variant == "search":
            per_molecule["local"].append(weight * atom_loss / n)
        elif variant == "joint":
            per_molecule["joint"].append(weight * (global_loss + atom_loss) / (n + 1))
    return {key: torch.stack(values).mean() for key, values in per_molecule.items() if values}


@pytest.mark.parametrize("student_kind,f", [("transformer", lambda n: 1 / n**2), ("gin", lambda n: 1 / n)])
def test_ccmd_coordinated_uses_each_molecules_own_n(student_kind, f):
    teacher_config, student_config = graph_config(4, 8), graph_config(2, 6)
    objective = CCMDObjective(teacher_config, student_config, layers="all", student_kind=student_kind)
    assert objective.layer_pairs == [(2, 1), (4, 2)]
    teacher, student = hidden_states(4, 8, seed=1), hidden_states(2, 6, seed=2)
    out = objective(
        MolecularModelOutput(hidden_states=teacher), MolecularModelOutput(hidden_states=student), graph_batch()
    )
    ref = ccmd_reference(teacher, student, SIZES, objective.layer_pairs, objective.projections, "coordinated", f)
    assert set(out) == {"ccmd_global", "ccmd_local"}
    torch.testing.assert_close(out["ccmd_global"], ref["global"])
    torch.testing.assert_close(out["ccmd_local"], ref["local"])
    # Not the batch's N: a batch-level 1/N_max^2 (or 1/mean N) would give another number.
    padded_n = ccmd_reference(
        teacher, student, SIZES, objective.layer_pairs, objective.projections, "coordinated", lambda n: f(9)
    )
    assert not torch.isclose(out["ccmd_local"], padded_n["local"])


@pytest.mark.parametrize("variant", ["global", "local", "search", "joint"])
def test_ccmd_ablation_variants(variant):
    teacher_config, student_config = graph_config(3, 8), graph_config(3, 8)
    weight = 0.3 if variant in ("search", "joint") else None
    objective = CCMDObjective(teacher_config, student_config, variant=variant, search_weight=weight)
    teacher, student = hidden_states(3, 8, seed=3), hidden_states(3, 8, seed=4)
    out = objective(
        MolecularModelOutput(hidden_states=teacher), MolecularModelOutput(hidden_states=student), graph_batch()
    )
    identity = [lambda x: x] * 3
    ref = ccmd_reference(teacher, student, SIZES, [(1, 1), (2, 2), (3, 3)], identity, variant, None, weight)
    expected_keys = {
        "global": {"ccmd_global"},
        "local": {"ccmd_local"},
        "search": {"ccmd_global", "ccmd_local"},
        "joint": {"ccmd_joint"},
    }[variant]
    assert set(out) == expected_keys
    for key in out:
        torch.testing.assert_close(out[key], ref[key.removeprefix("ccmd_")])


def test_ccmd_last_layer_only_and_equal_widths_need_no_projection():
    objective = CCMDObjective(graph_config(6, 8), graph_config(3, 8), layers="last")
    assert objective.layer_pairs == [(6, 3)]
    assert not list(objective.parameters())
    teacher, student = hidden_states(6, 8, seed=5), hidden_states(3, 8, seed=6)
    # Changing a non-last layer leaves the loss unchanged.
    out = objective(
        MolecularModelOutput(hidden_states=teacher), MolecularModelOutput(hidden_states=student), graph_batch()
    )
    perturbed = list(student)
    perturbed[1] = perturbed[1] + 10
    out2 = objective(
        MolecularModelOutput(hidden_states=teacher), MolecularModelOutput(hidden_states=tuple(perturbed)), graph_batch()
    )
    torch.testing.assert_close(out, out2)


def test_ccmd_padding_does_not_leak():
    objective = CCMDObjective(graph_config(2, 4), graph_config(2, 4))
    teacher, student = hidden_states(2, 4, seed=7), hidden_states(2, 4, seed=8)
    out = objective(
        MolecularModelOutput(hidden_states=teacher), MolecularModelOutput(hidden_states=student), graph_batch()
    )
    garbage = [s.clone() for s in student]
    for s in garbage:
        s[0, 4:] = 1e6  # padded atoms of the 3-atom molecule
    out2 = objective(
        MolecularModelOutput(hidden_states=teacher), MolecularModelOutput(hidden_states=tuple(garbage)), graph_batch()
    )
    torch.testing.assert_close(out, out2)


def test_ccmd_bad_options_fail_at_construction():
    with pytest.raises(ValueError, match="variant"):
        CCMDObjective(graph_config(2, 4), graph_config(2, 4), variant="fancy")
    with pytest.raises(ValueError, match="search_weight"):
        CCMDObjective(graph_config(2, 4), graph_config(2, 4), variant="search")
    with pytest.raises(ValueError, match="layers"):
        CCMDObjective(graph_config(2, 4), graph_config(2, 4), layers="first")
    with pytest.raises(ValueError, match="unknown objective 'ccmdx'"):
        get_objective("ccmdx")
    with pytest.raises(ValueError, match="bad options"):
        build_objective("ccmd", graph_config(2, 4), graph_config(2, 4), temperature=2.0)


def test_ccmd_gin_kind_inferred_from_model_type():
    objective = CCMDObjective(graph_config(2, 4), graph_config(2, 4, model_type="molformer_gin"))
    assert objective.student_kind == "gin"


# ---------------------------------------------------------------- ST-KD


def smiles_batch(sizes=SIZES, bonds=(2, 10), seed=0):
    """SMILES-like student batch: [V], atoms, bonds, padding; atom j of the teacher is token 1 + j."""
    n = max(sizes)
    length = 1 + max(k + m for k, m in zip(sizes, bonds)) + 1
    index = torch.zeros(len(sizes), n, dtype=torch.long)
    for b, k in enumerate(sizes):
        index[b, :k] = torch.arange(1, k + 1)
    return {
        "teacher_inputs": {"attention_mask": atom_mask(sizes)},
        "student_inputs": {"atom_token_index": index, "atom_mask": atom_mask(sizes)},
    }, length


def teacher_attention(heads, sizes=SIZES, seed=0):
    generator = torch.Generator().manual_seed(seed)
    n = max(sizes)
    scores = torch.randn(len(sizes), heads, 1 + n, 1 + n, generator=generator)
    keep = torch.cat([torch.ones(len(sizes), 1, dtype=torch.bool), atom_mask(sizes).bool()], 1)
    return torch.softmax(scores.masked_fill(~keep[:, None, None, :], float("-inf")), -1)


def test_stkd_feature_matches_per_pair_mse():
    teacher_config = graph_config(12, 8)
    student_config = SimpleNamespace(num_hidden_layers=6, hidden_size=6, num_attention_heads=2, num_biased_layers=3)
    objective = STKDFeatureObjective(teacher_config, student_config)
    assert objective.pairs == [(9, 3), (10, 4), (11, 5)]
    teacher, student = hidden_states(12, 8, seed=9), hidden_states(6, 6, seed=10)
    out = objective(MolecularModelOutput(hidden_states=teacher), MolecularModelOutput(hidden_states=student), {})
    expected = sum(
        F.mse_loss(student[q + 1][:, 0] @ proj.weight.T, teacher[p + 1][:, 0])
        for (p, q), proj in zip(objective.pairs, objective.projections)
    )
    torch.testing.assert_close(out["stkd_feature"], expected)


def test_stkd_pairs_beyond_layer_counts_fail():
    student_config = SimpleNamespace(num_hidden_layers=6, hidden_size=6, num_attention_heads=2, num_biased_layers=3)
    with pytest.raises(ValueError, match="teacher layer 12"):
        STKDFeatureObjective(graph_config(12, 8), student_config, pairs=[(12, 3)])
    with pytest.raises(ValueError, match="student layer 6"):
        STKDFeatureObjective(graph_config(12, 8), student_config, pairs=[(11, 6)])
    with pytest.raises(ValueError, match="biased layer"):
        STKDAttentionObjective(graph_config(12, 8), student_config, pairs=[(11, 2)])
    with pytest.raises(ValueError, match="head_mixing=False is impossible"):
        STKDAttentionObjective(graph_config(12, 8), student_config, head_mixing=False)
    no_bias = SimpleNamespace(num_hidden_layers=6, hidden_size=6, num_attention_heads=2, num_biased_layers=0)
    with pytest.raises(ValueError, match="no biased layers"):
        STKDAttentionObjective(graph_config(12, 8), no_bias)


def stkd_attention_reference(bias, teacher, sizes, mixer):
    """Per molecule: rows of the atoms, columns [V] + atoms, via explicit index lists; mean over entries."""
    values = []
    for b, n in enumerate(sizes):
        tokens = [0] + list(range(1, n + 1))
        sub = bias[b][:, tokens][:, :, tokens]  # (h, 1+n, 1+n)
        mixed = torch.einsum("kh,hij->kij", mixer, sub)
        predicted = torch.softmax(mixed, -1)[:, 1:, :]  # drop the virtual-token row
        target = teacher[b][:, 1 : n + 1, : n + 1]
        values.append(F.mse_loss(predicted, target))
    return torch.stack(values).mean()


@pytest.mark.parametrize("student_heads", [4, 2])
def test_stkd_attention_masks_rows_columns_and_padding(student_heads):
    teacher_config = graph_config(3, 8, heads=4)
    student_config = SimpleNamespace(
        num_hidden_layers=2, hidden_size=6, num_attention_heads=student_heads, num_biased_layers=1
    )
    objective = STKDAttentionObjective(teacher_config, student_config, pairs=[(2, 1)])
    batch, length = smiles_batch()
    generator = torch.Generator().manual_seed(11)
    bias = torch.randn(2, student_heads, length, length, generator=generator)
    teacher = tuple(teacher_attention(4, seed=s) for s in range(3))
    out = objective(MolecularModelOutput(attentions=teacher), MolecularModelOutput(attention_biases=(bias,)), batch)
    mixer = torch.eye(4) if student_heads == 4 else objective.head_mixers[0].weight
    expected = stkd_attention_reference(bias, teacher[2], SIZES, mixer)
    torch.testing.assert_close(out["stkd_attention"], expected)
    # Bond tokens, padding and the virtual-token row are outside the loss.
    changed = bias.clone()
    changed[:, :, 0, :] = 50.0  # virtual-token row
    changed[0, :, 4:, :] = -7.0  # bond / padding rows of the 3-atom molecule
    changed[0, :, :, 4:] = 9.0  # bond / padding columns
    out2 = objective(MolecularModelOutput(attentions=teacher), MolecularModelOutput(attention_biases=(changed,)), batch)
    torch.testing.assert_close(out, out2)


def test_stkd_attention_uses_atom_token_index_order():
    """Atom tokens at arbitrary positions (e.g. after a permutation) are gathered in teacher atom order."""
    teacher_config = graph_config(1, 8, heads=2)
    student_config = SimpleNamespace(num_hidden_layers=1, hidden_size=8, num_attention_heads=2, num_biased_layers=1)
    objective = STKDAttentionObjective(teacher_config, student_config, pairs=[(0, 0)])
    sizes = (3,)
    teacher = (teacher_attention(2, sizes, seed=3),)
    bias = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(12))
    permutation = [0, 3, 5, 1, 2, 4]  # new position of each old token
    permuted = torch.empty_like(bias)
    permuted[:, :, torch.tensor(permutation)[:, None], torch.tensor(permutation)[None, :]] = bias
    base = {"teacher_inputs": {"attention_mask": atom_mask(sizes)}}
    straight = dict(base, student_inputs={"atom_token_index": torch.tensor([[1, 2, 3]])})
    moved = dict(base, student_inputs={"atom_token_index": torch.tensor([[3, 5, 1]])})
    out = objective(MolecularModelOutput(attentions=teacher), MolecularModelOutput(attention_biases=(bias,)), straight)
    out2 = objective(
        MolecularModelOutput(attentions=teacher), MolecularModelOutput(attention_biases=(permuted,)), moved
    )
    torch.testing.assert_close(out, out2)


# ---------------------------------------------------------------- D&D and task


@pytest.mark.parametrize("mode", ["graph", "node"])
def test_dnd_graph_and_node(mode):
    objective = DenoiseAndDistillObjective(graph_config(2, 8), graph_config(2, 6), mode=mode)
    teacher = hidden_states(0, 8, seed=13)[0]
    student = hidden_states(0, 6, seed=14)[0]
    out = objective(
        MolecularModelOutput(last_hidden_state=teacher), MolecularModelOutput(last_hidden_state=student), graph_batch()
    )
    per_molecule = []
    for b, n in enumerate(SIZES):
        s = objective.projection(student[b, 1 : n + 1])
        t = teacher[b, 1 : n + 1]
        if mode == "graph":
            per_molecule.append(torch.sum((s.mean(0) - t.mean(0)) ** 2))
        else:
            per_molecule.append(torch.stack([torch.sum((s[j] - t[j]) ** 2) for j in range(n)]).mean())
    torch.testing.assert_close(out[f"dnd_{mode}"], torch.stack(per_molecule).mean())


def test_dnd_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        DenoiseAndDistillObjective(graph_config(2, 8), graph_config(2, 8), mode="edge")


def test_task_objective_returns_head_loss_and_requires_labels():
    objective = TaskObjective()
    loss = torch.tensor(0.25)
    assert objective(None, MolecularPropertyOutput(loss=loss), {})["task"] is loss
    with pytest.raises(ValueError, match="no labels"):
        objective(None, MolecularPropertyOutput(logits=torch.zeros(2, 1)), {})
