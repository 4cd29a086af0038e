"""SchNet and PaiNN energy/force models: symmetries, forces = -dE/dx, padding, cutoff, outputs, save/load."""

import math

import pytest
import torch
from transformers import AutoConfig, AutoModel

from molformer_kd.data.xtb import load_qm9_xtb
from molformer_kd.modeling.auto import AutoModelForEnergyAndForces
from molformer_kd.modeling.configuration_painn import PaiNNConfig
from molformer_kd.modeling.configuration_schnet import SchNetConfig
from molformer_kd.modeling.gnn3d import cosine_cutoff, energy_force_loss, gaussian_rbf, sine_rbf
from molformer_kd.modeling.modeling_painn import PaiNNForDenoising, PaiNNForEnergyAndForces, PaiNNModel
from molformer_kd.modeling.modeling_schnet import SchNetForDenoising, SchNetForEnergyAndForces, SchNetModel
from molformer_kd.tokenization.collators import PointCloudCollator, add_coordinate_noise

REFERENCES = [0.0, -13.0, 0, 0, 0, 0, -50.0, -70.0, -100.0, -120.0]


def tiny_models():
    torch.manual_seed(0)
    return {
        "schnet": SchNetForEnergyAndForces(
            SchNetConfig(hidden_size=16, num_filters=12, num_layers=2, num_rbf=10, atom_reference_energies=REFERENCES)
        ),
        "painn_direct": PaiNNForEnergyAndForces(
            PaiNNConfig(hidden_size=16, num_layers=2, num_rbf=8, atom_reference_energies=REFERENCES)
        ),
        "painn_autograd": PaiNNForEnergyAndForces(
            PaiNNConfig(hidden_size=16, num_layers=2, num_rbf=8, direct_forces=False)
        ),
    }


@pytest.fixture(scope="module")
def rows():
    return [load_qm9_xtb()["test"][i] for i in range(3)]


@pytest.fixture(scope="module")
def batch(rows):
    return PointCloudCollator()(rows)


def random_rotation(dtype=torch.float32):
    q, r = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


@pytest.mark.parametrize("name", ["schnet", "painn_direct", "painn_autograd"])
def test_energy_invariant_and_forces_equivariant(name, batch):
    model = tiny_models()[name].double().eval()
    rotation = random_rotation(torch.float64)
    pos = batch["pos"].double()
    moved = pos @ rotation.T + torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64)
    moved = moved * batch["atom_mask"][..., None]  # padding stays at 0, as the collator writes it
    with torch.no_grad():
        out = model(batch["atomic_numbers"], pos, batch["atom_mask"])
        out_moved = model(batch["atomic_numbers"], moved, batch["atom_mask"])
    torch.testing.assert_close(out_moved.energy, out.energy, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(out_moved.forces, out.forces @ rotation.T, atol=1e-9, rtol=1e-9)
    if out.vector_features is not None:
        rotated_vectors = torch.einsum("xy,bnyf->bnxf", rotation, out.vector_features)
        torch.testing.assert_close(out_moved.vector_features, rotated_vectors, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(out_moved.node_features, out.node_features, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", ["schnet", "painn_autograd"])
def test_autograd_forces_match_finite_differences(name, rows):
    model = tiny_models()[name].double().eval()
    # The first 5 atoms of a molecule: any point cloud will do for a gradient check, and fewer atoms run faster.
    fragment = {key: rows[0][key][:5] for key in ("atomic_numbers", "positions")}
    batch = PointCloudCollator(dtype=torch.float64)([fragment])
    pos = batch["pos"]
    with torch.no_grad():
        forces = model(batch["atomic_numbers"], pos, batch["atom_mask"]).forces[0]
    step = 1e-5
    numerical = torch.zeros_like(forces)
    for atom in range(forces.shape[0]):
        for axis in range(3):
            plus, minus = pos.clone(), pos.clone()
            plus[0, atom, axis] += step
            minus[0, atom, axis] -= step
            with torch.no_grad():
                e_plus = model(batch["atomic_numbers"], plus, batch["atom_mask"]).energy[0]
                e_minus = model(batch["atomic_numbers"], minus, batch["atom_mask"]).energy[0]
            numerical[atom, axis] = -(e_plus - e_minus) / (2 * step)
    torch.testing.assert_close(forces, numerical, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["schnet", "painn_direct"])
def test_padding_does_not_change_predictions(name, rows):
    model = tiny_models()[name].eval()
    together = PointCloudCollator()(rows)
    with torch.no_grad():
        out = model(together["atomic_numbers"], together["pos"], together["atom_mask"])
        for b, row in enumerate(rows):
            alone = PointCloudCollator()([row])
            single = model(alone["atomic_numbers"], alone["pos"], alone["atom_mask"])
            n = len(row["atomic_numbers"])
            torch.testing.assert_close(out.energy[b], single.energy[0], atol=1e-4, rtol=1e-5)
            torch.testing.assert_close(out.forces[b, :n], single.forces[0], atol=1e-4, rtol=1e-5)
            assert out.forces[b, n:].abs().sum() == 0 and out.atom_energies[b, n:].abs().sum() == 0


def test_energy_is_sum_of_atom_energies_with_references(batch):
    model = tiny_models()["schnet"].eval()
    with torch.no_grad():
        out = model(**{k: batch[k] for k in ("atomic_numbers", "pos", "atom_mask")})
        network = model.energy_head.mlp(out.node_features).squeeze(-1)
    torch.testing.assert_close(out.energy, out.atom_energies.sum(1))
    expected = (network + torch.tensor(REFERENCES)[batch["atomic_numbers"]]) * batch["atom_mask"]
    torch.testing.assert_close(out.atom_energies, expected)


def test_atoms_beyond_cutoff_do_not_interact():
    model = tiny_models()["painn_direct"].double().eval()
    cutoff = model.config.cutoff
    numbers = torch.tensor([[6, 8]])
    far = torch.tensor([[[0.0, 0.0, 0.0], [cutoff + 0.1, 0.0, 0.0]]], dtype=torch.float64)
    with torch.no_grad():
        pair = model(numbers, far)
        carbon = model(torch.tensor([[6]]), far[:, :1])
        oxygen = model(torch.tensor([[8]]), far[:, 1:])
    torch.testing.assert_close(pair.energy, carbon.energy + oxygen.energy)
    assert pair.edge_index.shape[1] == 0


def test_radial_basis_and_cutoff_formulas():
    d = torch.tensor([0.5, 2.0, 4.9, 5.0, 6.0], dtype=torch.float64)
    envelope = cosine_cutoff(d, 5.0)
    expected = [0.5 * (math.cos(math.pi * x / 5.0) + 1.0) if x < 5.0 else 0.0 for x in d.tolist()]
    torch.testing.assert_close(envelope, torch.tensor(expected, dtype=torch.float64))
    sine = sine_rbf(d[:1], 3, 5.0)
    torch.testing.assert_close(
        sine[0], torch.tensor([math.sin(n * math.pi * 0.5 / 5.0) / 0.5 for n in (1, 2, 3)], dtype=torch.float64)
    )
    gauss = gaussian_rbf(torch.tensor([1.0], dtype=torch.float64), 3, 4.0)  # centres 0, 2, 4; spacing 2
    torch.testing.assert_close(
        gauss[0],
        torch.tensor(
            [math.exp(-0.5 * (1 / 2) ** 2), math.exp(-0.5 * (1 / 2) ** 2), math.exp(-0.5 * 1.5**2)], dtype=torch.float64
        ),
    )


def test_outputs_follow_the_contract(batch):
    for model in tiny_models().values():
        out = model(**batch, output_hidden_states=True)
        b, n = batch["atomic_numbers"].shape
        width = model.config.hidden_size
        assert len(out.hidden_states) == model.config.num_layers + 1
        assert all(h.shape == (b, 1 + n, width) for h in out.hidden_states)
        torch.testing.assert_close(out.hidden_states[-1][:, 1:], out.node_features)
        assert out.edge_features.shape == (out.edge_index.shape[1], model.config.edge_feature_size)
        torch.testing.assert_close(out.edge_vectors.norm(dim=-1), torch.ones(out.edge_index.shape[1]))
        assert (out.vector_features is not None) == model.config.has_vector_features
        assert out.loss is not None and out.loss.requires_grad
        backbone = model.base_model(batch["atomic_numbers"], batch["pos"], batch["atom_mask"])
        assert backbone.last_hidden_state.shape == (b, 1 + n, width)
        mean = backbone.node_features.sum(1) / batch["atom_mask"].sum(1, keepdim=True)
        torch.testing.assert_close(backbone.pooler_output, mean)


def test_task_loss_matches_independent_computation(batch):
    model = tiny_models()["painn_direct"]
    out = model(**batch)
    mask = batch["atom_mask"].bool()
    energy_term = (out.energy - batch["labels"]["energy"]).abs().mean()
    force_term = torch.stack(
        [(out.forces[b][mask[b]] - batch["labels"]["forces"][b][mask[b]]).norm(dim=-1).mean() for b in range(len(mask))]
    ).mean()
    torch.testing.assert_close(out.loss, 1.0 * energy_term + 100.0 * force_term)
    total, parts = energy_force_loss(out.energy, out.forces, batch["labels"]["energy"], None, mask, energy_loss="mse")
    torch.testing.assert_close(total, ((out.energy - batch["labels"]["energy"]) ** 2).mean())
    assert set(parts) == {"energy"}


def test_teacher_under_no_grad_gets_detached_autograd_forces(batch):
    model = tiny_models()["schnet"].eval()
    inputs = {k: batch[k] for k in ("atomic_numbers", "pos", "atom_mask")}
    with torch.no_grad():
        out = model(**inputs)
    assert not out.forces.requires_grad and not out.energy.requires_grad
    assert out.forces.abs().sum() > 0
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        model(**inputs)


@pytest.mark.parametrize("name", ["schnet", "painn_direct"])
def test_force_loss_trains_every_parameter_it_depends_on(name, batch):
    """Autograd forces reach the weights only through the second-order graph (create_graph=True)."""
    model = tiny_models()[name]
    model.config.energy_loss_weight = 0.0
    labels = {"forces": batch["labels"]["forces"]}
    inputs = {k: batch[k] for k in ("atomic_numbers", "pos", "atom_mask")}
    model(**inputs, labels=labels).loss.backward()
    no_gradient = {n for n, p in model.named_parameters() if p.grad is None}
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if name == "schnet":
        # -dE/dx ignores only the constant offset of the energy readout.
        assert no_gradient == {"energy_head.mlp.2.bias"}
    else:
        # Direct forces do not go through the energy readout at all.
        assert no_gradient == {n for n, _ in model.named_parameters() if n.startswith("energy_head.")}
    assert model.base_model.embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["schnet", "painn_direct"])
def test_save_and_from_pretrained_round_trip(name, batch, tmp_path):
    model = tiny_models()[name].eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForEnergyAndForces.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    assert loaded.config.atom_reference_energies == model.config.atom_reference_energies
    inputs = {k: batch[k] for k in ("atomic_numbers", "pos", "atom_mask")}
    with torch.no_grad():
        expected, actual = model(**inputs), loaded(**inputs)
    torch.testing.assert_close(actual.energy, expected.energy)
    torch.testing.assert_close(actual.forces, expected.forces)
    backbone = AutoModel.from_pretrained(tmp_path)
    assert isinstance(backbone, SchNetModel if name == "schnet" else PaiNNModel)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), type(model.config))


def test_presets_follow_the_paper_and_bad_settings_raise():
    big, small = PaiNNConfig.from_preset("big"), PaiNNConfig.from_preset("small")
    assert (big.hidden_size, big.num_layers, small.hidden_size, small.num_layers) == (512, 6, 256, 4)
    assert big.num_rbf == 128 and big.cutoff == 12.0 and big.direct_forces
    schnet = SchNetConfig.from_preset("oc20")
    assert (schnet.hidden_size, schnet.num_filters, schnet.num_layers, schnet.num_rbf, schnet.cutoff) == (
        1024,
        256,
        5,
        200,
        6.0,
    )
    assert PaiNNConfig.from_preset("small", hidden_size=64).hidden_size == 64
    with pytest.raises(ValueError, match="preset"):
        PaiNNConfig.from_preset("huge")
    with pytest.raises(ValueError, match="force_loss"):
        SchNetConfig(force_loss="huber")
    with pytest.raises(ValueError, match="hidden_size"):
        PaiNNConfig(hidden_size=7)
    with pytest.raises(ValueError, match="pos must be"):
        SchNetModel(SchNetConfig(hidden_size=8, num_layers=1))(torch.tensor([[6, 1]]), torch.zeros(1, 3, 3))


# ---------------------------------------------------------------------------------------------- D&D denoising


DENOISERS = {
    "painn": lambda: PaiNNForDenoising(PaiNNConfig(hidden_size=16, num_layers=2, num_rbf=8)),
    "schnet": lambda: SchNetForDenoising(SchNetConfig(hidden_size=16, num_filters=12, num_layers=2, num_rbf=10)),
}


@pytest.mark.parametrize("name", list(DENOISERS))
def test_3d_gnn_denoiser_is_equivariant_and_its_loss_is_the_masked_squared_error(rows, name):
    """PaiNN and SchNet as D&D's stage-1 teacher: the predicted noise rotates with the molecule, ignores translations
    and padding, and the loss is eq. (5) computed atom by atom."""
    keys = ("atomic_numbers", "positions")
    batch = PointCloudCollator()([{k: rows[0][k] for k in keys}, {k: rows[1][k][:5] for k in keys}])  # row 1 padded
    torch.manual_seed(0)
    model = DENOISERS[name]().double().eval()
    mask = batch["atom_mask"].bool()
    pos = batch["pos"].double()
    rotation = random_rotation(torch.float64)
    moved = (pos @ rotation.T + torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64)) * mask[..., None]
    with torch.no_grad():
        out = model(batch["atomic_numbers"], pos, batch["atom_mask"])
        out_moved = model(batch["atomic_numbers"], moved, batch["atom_mask"])
    assert out.noise_pred[mask].abs().max() > 1e-3  # not trivially zero
    torch.testing.assert_close(out_moved.noise_pred, out.noise_pred @ rotation.T, atol=1e-9, rtol=1e-9)
    assert (~mask).any() and out.noise_pred[~mask].abs().max() == 0

    noisy, eps = add_coordinate_noise(pos, mask, sigma=0.04, generator=torch.Generator().manual_seed(0))
    out = model(batch["atomic_numbers"], noisy, batch["atom_mask"], noise=eps)
    per_atom = [((out.noise_pred[b, i] - eps[b, i]) ** 2).sum() for b, i in mask.nonzero()]
    torch.testing.assert_close(out.loss, torch.stack(per_atom).mean().float(), atol=1e-6, rtol=1e-6)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    # The backbone a D&D student distils from loads out of the denoiser's checkpoint.
    assert out.last_hidden_state.shape[:2] == (len(batch["atom_mask"]), 1 + mask.shape[1])


@pytest.mark.parametrize(
    ("denoiser", "backbone"),
    [
        (lambda: PaiNNForDenoising(PaiNNConfig(hidden_size=16, num_layers=2, num_rbf=8)), PaiNNModel),
        (
            lambda: SchNetForDenoising(SchNetConfig(hidden_size=16, num_filters=12, num_layers=2, num_rbf=10)),
            SchNetModel,
        ),
    ],
)
def test_a_backbone_loads_out_of_a_denoiser_without_unexpected_keys(tmp_path, denoiser, backbone):
    """D&D stage 2 loads the denoiser as its teacher's backbone: the noise head is dropped on purpose, silently,
    and every backbone weight is the denoiser's."""
    model = denoiser()
    model.save_pretrained(tmp_path)
    loaded, info = backbone.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"]
    prefix = model.base_model_prefix
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[f"{prefix}.{name}"])
