"""KD-GNN objectives (n2n, e2n, v2v, vanilla1, vanilla2, energy_forces) against independent computations."""

import pytest
import torch

from molformer_kd.data.xtb import load_qm9_xtb
from molformer_kd.distillation.gnn_objectives import edges_to_nodes, edges_to_vectors
from molformer_kd.distillation.registry import build_objective
from molformer_kd.modeling.configuration_painn import PaiNNConfig
from molformer_kd.modeling.configuration_schnet import SchNetConfig
from molformer_kd.modeling.gnn3d import EnergyAndForcesOutput
from molformer_kd.modeling.modeling_painn import PaiNNForEnergyAndForces
from molformer_kd.modeling.modeling_schnet import SchNetForEnergyAndForces
from molformer_kd.tokenization.collators import PointCloudCollator


@pytest.fixture(scope="module")
def batch():
    data = load_qm9_xtb()["validation"]
    return PointCloudCollator(paired=True)([data[i] for i in (0, 5, 9)])


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {
        "painn_teacher": PaiNNForEnergyAndForces(PaiNNConfig(hidden_size=24, num_layers=2, num_rbf=8)).eval(),
        "schnet_teacher": SchNetForEnergyAndForces(
            SchNetConfig(hidden_size=16, num_filters=20, num_layers=2, num_rbf=8)
        ).eval(),
        "painn_student": PaiNNForEnergyAndForces(PaiNNConfig(hidden_size=8, num_layers=1, num_rbf=8)),
        "schnet_student": SchNetForEnergyAndForces(
            SchNetConfig(hidden_size=12, num_filters=8, num_layers=1, num_rbf=8)
        ),
    }


def run(models, teacher, student, batch):
    with torch.no_grad():
        teacher_outputs = models[teacher](**batch["teacher_inputs"])
    return teacher_outputs, models[student](**batch["student_inputs"])


def molecules(batch):
    return batch["student_inputs"]["atom_mask"].sum(1).tolist()


def linear(projection, x):
    """The projection applied by hand from its parameters."""
    if isinstance(projection, torch.nn.Identity):
        return x
    out = x @ projection.weight.T
    return out + projection.bias if projection.bias is not None else out


def per_molecule_mean(batch, per_atom_loss):
    """mean over molecules of (mean over the molecule's atoms of per_atom_loss(b, i))."""
    values = []
    for b, n in enumerate(molecules(batch)):
        values.append(sum(per_atom_loss(b, i) for i in range(n)) / n)
    return sum(values) / len(values)


def test_n2n_matches_independent_computation(models, batch):
    teacher_out, student_out = run(models, "painn_teacher", "schnet_student", batch)
    objective = build_objective("n2n", models["painn_teacher"].config, models["schnet_student"].config)
    value = objective(teacher_out, student_out, batch)["n2n"]
    p = objective.projection
    expected = per_molecule_mean(
        batch,
        lambda b, i: ((linear(p, student_out.node_features[b, i]) - teacher_out.node_features[b, i]) ** 2).mean(),
    )
    torch.testing.assert_close(value, expected)
    value.backward()
    assert p.weight.grad is not None and models["schnet_student"].base_model.embedding.weight.grad is not None


def test_e2n_matches_independent_computation(models, batch):
    teacher_out, student_out = run(models, "schnet_teacher", "painn_student", batch)
    objective = build_objective("e2n", models["schnet_teacher"].config, models["painn_student"].config)
    assert objective.projection.out_features == 20  # SchNet edge features have num_filters channels
    value = objective(teacher_out, student_out, batch)["e2n"]
    width = batch["student_inputs"]["atom_mask"].shape[1]
    summed = {}
    for e, (center, _) in enumerate(teacher_out.edge_index.T.tolist()):
        summed[center] = summed.get(center, 0) + teacher_out.edge_features[e]
    p = objective.projection
    expected = per_molecule_mean(
        batch, lambda b, i: ((linear(p, student_out.node_features[b, i]) - summed[b * width + i]) ** 2).mean()
    )
    torch.testing.assert_close(value, expected)


@pytest.mark.parametrize("teacher", ["painn_teacher", "schnet_teacher"])
def test_v2v_matches_independent_computation(models, batch, teacher):
    teacher_out, student_out = run(models, teacher, "painn_student", batch)
    objective = build_objective("v2v", models[teacher].config, models["painn_student"].config)
    assert objective.source == ("vectors" if teacher == "painn_teacher" else "edges")
    assert objective.projection.bias is None
    value = objective(teacher_out, student_out, batch)["v2v"]
    width = batch["student_inputs"]["atom_mask"].shape[1]
    pos = batch["teacher_inputs"]["pos"].reshape(-1, 3)

    def target(b, i):
        if teacher == "painn_teacher":
            return teacher_out.vector_features[b, i]
        total = 0
        for e, (center, neighbor) in enumerate(teacher_out.edge_index.T.tolist()):
            if center == b * width + i:
                direction = pos[neighbor] - pos[center]
                total = total + torch.outer(direction / direction.norm(), teacher_out.edge_features[e])
        return total

    p = objective.projection
    expected = per_molecule_mean(
        batch, lambda b, i: ((student_out.vector_features[b, i] @ p.weight.T - target(b, i)) ** 2).mean()
    )
    torch.testing.assert_close(value, expected)


def test_vanilla1_matches_independent_computation(models, batch):
    teacher_out, student_out = run(models, "painn_teacher", "schnet_student", batch)
    objective = build_objective(
        "vanilla1", models["painn_teacher"].config, models["schnet_student"].config, force_weight=10.0
    )
    parts = objective(teacher_out, student_out, batch)
    torch.testing.assert_close(parts["vanilla1_energy"], (student_out.energy - teacher_out.energy).abs().mean())
    expected_forces = 10.0 * per_molecule_mean(
        batch, lambda b, i: (student_out.forces[b, i] - teacher_out.forces[b, i]).norm()
    )
    torch.testing.assert_close(parts["vanilla1_forces"], expected_forces)


@pytest.mark.parametrize("energy_loss", ["mae", "mse"])
def test_vanilla2_matches_independent_computation(models, batch, energy_loss):
    teacher_out, student_out = run(models, "painn_teacher", "painn_student", batch)
    objective = build_objective(
        "vanilla2", models["painn_teacher"].config, models["painn_student"].config, energy_loss=energy_loss
    )
    value = objective(teacher_out, student_out, batch)["vanilla2"]
    power = 1 if energy_loss == "mae" else 2
    expected = per_molecule_mean(
        batch, lambda b, i: (student_out.atom_energies[b, i] - teacher_out.atom_energies[b, i]).abs() ** power
    )
    torch.testing.assert_close(value, expected)


def test_energy_forces_task_objective_matches_independent_computation(models, batch):
    _, student_out = run(models, "painn_teacher", "painn_student", batch)
    objective = build_objective(
        "energy_forces", None, models["painn_student"].config, energy_weight=2.0, force_weight=5.0, force_loss="mse"
    )
    assert not objective.needs_teacher
    parts = objective(None, student_out, batch)
    labels = batch["labels"]
    torch.testing.assert_close(parts["task_energy"], 2.0 * (student_out.energy - labels["energy"]).abs().mean())
    expected = 5.0 * per_molecule_mean(
        batch, lambda b, i: ((student_out.forces[b, i] - labels["forces"][b, i]) ** 2).mean()
    )
    torch.testing.assert_close(parts["task_forces"], expected)


def three_atom_teacher_output():
    """Atoms 0, 1, 2 at (0,0,0), (1,0,0), (0,2,0) of one molecule, all 6 directed edges; edge (i, j) carries the
    features [10 i + j, 1]."""
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    edges = [(i, j) for i in range(3) for j in range(3) if i != j]
    edge_index = torch.tensor(edges).T
    vectors = torch.stack([(pos[j] - pos[i]) / (pos[j] - pos[i]).norm() for i, j in edges])
    features = torch.tensor([[10.0 * i + j, 1.0] for i, j in edges])
    return EnergyAndForcesOutput(
        edge_features=features,
        edge_index=edge_index,
        edge_vectors=vectors,
        atom_mask=torch.ones(1, 3, dtype=torch.bool),
    )


def test_edge_aggregation_on_a_hand_made_three_atom_system():
    out = three_atom_teacher_output()
    nodes = edges_to_nodes(out.edge_features, out.edge_index, out.atom_mask)
    # node 0: edges (0,1)+(0,2) = [1+2, 2]; node 1: (1,0)+(1,2) = [10+12, 2]; node 2: (2,0)+(2,1) = [20+21, 2]
    torch.testing.assert_close(nodes, torch.tensor([[[3.0, 2.0], [22.0, 2.0], [41.0, 2.0]]]))
    vectors = edges_to_vectors(out.edge_features, out.edge_vectors, out.edge_index, out.atom_mask)
    assert vectors.shape == (1, 3, 3, 2)
    # node 0: u01 = (1,0,0) with [1, 1], u02 = (0,1,0) with [2, 1]
    torch.testing.assert_close(vectors[0, 0], torch.tensor([[1.0, 1.0], [2.0, 1.0], [0.0, 0.0]]))
    # node 1: u10 = (-1,0,0) with [10, 1], u12 = (-1,2,0)/sqrt5 with [12, 1]
    s5 = 5.0**0.5
    torch.testing.assert_close(
        vectors[0, 1], torch.tensor([[-10.0 - 12.0 / s5, -1.0 - 1.0 / s5], [24.0 / s5, 2.0 / s5], [0.0, 0.0]])
    )
    # node 2: u20 = (0,-1,0) with [20, 1], u21 = (1,-2,0)/sqrt5 with [21, 1]
    torch.testing.assert_close(
        vectors[0, 2], torch.tensor([[21.0 / s5, 1.0 / s5], [-20.0 - 42.0 / s5, -1.0 - 2.0 / s5], [0.0, 0.0]])
    )


def test_v2v_from_edges_rotates_with_the_molecule(models, batch):
    teacher = models["schnet_teacher"]
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1)))
    inputs = batch["teacher_inputs"]
    rotated = {**inputs, "pos": inputs["pos"] @ rotation.T}
    with torch.no_grad():
        out, out_rotated = teacher(**inputs), teacher(**rotated)
    mask = inputs["atom_mask"]
    vectors = edges_to_vectors(out.edge_features, out.edge_vectors, out.edge_index, mask)
    vectors_rotated = edges_to_vectors(
        out_rotated.edge_features, out_rotated.edge_vectors, out_rotated.edge_index, mask
    )
    torch.testing.assert_close(vectors_rotated, torch.einsum("xy,bnyf->bnxf", rotation, vectors), atol=1e-4, rtol=1e-4)


def test_bad_pairings_are_rejected(models):
    schnet, painn = models["schnet_student"].config, models["painn_teacher"].config
    with pytest.raises(ValueError, match="vector features"):
        build_objective("v2v", painn, schnet)
    with pytest.raises(ValueError, match="source='vectors'"):
        build_objective("v2v", models["schnet_teacher"].config, models["painn_student"].config, source="vectors")
    with pytest.raises(ValueError, match="bad options"):
        build_objective("n2n", painn, schnet, layers="all")
    objective = build_objective("n2n", painn, painn)
    assert isinstance(objective.projection, torch.nn.Identity)
    with pytest.raises(ValueError, match="teacher's node_features"):
        objective(EnergyAndForcesOutput(), EnergyAndForcesOutput(node_features=torch.zeros(1, 2, 24)), {})


def test_distillation_trainer_runs_the_energy_force_objectives(models, tmp_path):
    """Two optimizer steps of the generic DistillationTrainer: student and projection move, the teacher does not."""
    from transformers import TrainingArguments

    from molformer_kd.distillation.trainer import DistillationModel, DistillationTrainer

    teacher, student = models["painn_teacher"], SchNetForEnergyAndForces(models["schnet_student"].config)
    objectives = {
        "energy_forces": build_objective("energy_forces", teacher.config, student.config),
        "n2n": build_objective("n2n", teacher.config, student.config),
        "vanilla2": build_objective("vanilla2", teacher.config, student.config),
    }
    teacher_before = [p.detach().clone() for p in teacher.parameters()]
    projection_before = objectives["n2n"].projection.weight.detach().clone()
    student_before = student.base_model.embedding.weight.detach().clone()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        max_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    trainer = DistillationTrainer(
        model=DistillationModel(student, objectives, {"energy_forces": 1.0, "n2n": 10.0, "vanilla2": 1.0}),
        args=args,
        teacher=teacher,
        data_collator=PointCloudCollator(paired=True),
        train_dataset=load_qm9_xtb()["train"].select(range(8)),
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry][-1]
    assert {"task_energy", "task_forces", "n2n", "vanilla2"} <= set(logged)
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, teacher.parameters()))
    assert not torch.equal(projection_before, objectives["n2n"].projection.weight)
    assert not torch.equal(student_before, student.base_model.embedding.weight)
