"""Graphormer 2D/3D backbones and heads: formulas, symmetries, padding, SDPA/eager, save/load, Auto classes."""

import math

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

from molformer_kd.modeling.auto import AutoModelForDenoising, AutoModelForMolecularPropertyPrediction
from molformer_kd.modeling.configuration_graphormer import GraphormerConfig
from molformer_kd.modeling.modeling_graphormer import (
    GaussianDistanceBasis,
    GraphormerForDenoising,
    GraphormerForMolecularPropertyPrediction,
    GraphormerModel,
)
from molformer_kd.tokenization.collators import GraphCollator, add_coordinate_noise
from molformer_kd.tokenization.featurization import ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS, MoleculeFeaturizer

# Sizes 5, 8, 4 heavy atoms; 2 fragments in the first (unreachable pairs); aromatic ring; charged atoms.
SMILES = ["CC(=O)O.[Na+]", "c1ccccc1CO", "C#CC=N"]


_collate = GraphCollator()


def _positions(smiles, seed):
    """Random but molecule-like coordinates: heavy atoms ~1.5 A apart along a random walk."""
    n = MoleculeFeaturizer().featurize(smiles)["input_nodes"].shape[0]
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(n, 3))
    steps = 1.5 * steps / np.linalg.norm(steps, axis=1, keepdims=True)
    return np.cumsum(steps, axis=0).astype(np.float32)


def _features(smiles_list, geometry):
    featurizer = MoleculeFeaturizer(use_3d="3d" in geometry)
    if "3d" in geometry:
        return [featurizer.featurize(s, pos=_positions(s, i)) for i, s in enumerate(smiles_list)]
    return [featurizer.featurize(s) for s in smiles_list]


def _config(geometry, **kwargs):
    return GraphormerConfig.from_preset("tiny", geometry=geometry, **kwargs)


def _model(geometry, cls=GraphormerModel, seed=0, **kwargs):
    torch.manual_seed(seed)
    return cls(_config(geometry, **kwargs)).eval()


def _random_rotation(seed):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@pytest.mark.parametrize("geometry", ["2d", "3d", "2d+3d"])
def test_output_contract(geometry):
    model = _model(geometry)
    batch = _collate(_features(SMILES, geometry))
    out = model(**batch, output_hidden_states=True, output_attentions=True)
    b, n = batch["attention_mask"].shape
    assert out.last_hidden_state.shape == (b, 1 + n, 32)
    assert torch.equal(out.pooler_output, out.last_hidden_state[:, 0])
    assert len(out.hidden_states) == 1 + model.config.num_hidden_layers
    assert all(h.shape == (b, 1 + n, 32) for h in out.hidden_states)
    assert len(out.attentions) == model.config.num_hidden_layers
    for probs in out.attentions:
        assert probs.shape == (b, 4, 1 + n, 1 + n)
        assert torch.allclose(probs.sum(-1), torch.ones(b, 4, 1 + n))
        assert probs[0, :, :, 6:].abs().max() == 0  # molecule 0 has 5 atoms: keys 6.. are padding
    assert out.token_mask.dtype == torch.bool
    assert out.token_mask.tolist()[0] == [True] * 6 + [False] * (n - 5)
    assert torch.isfinite(out.last_hidden_state).all()


def test_multi_hop_edge_and_spatial_bias_match_graphormer_formula():
    """b_ij = spatial(phi_ij) + 1/n sum_{k<n} (mean_c E_c[edge_k]) . w_k, computed by explicit loops."""
    model = _model("2d", seed=3)
    encoding = model.structure_encoding
    with torch.no_grad():  # non-trivial per-hop matrices
        encoding.hop_weights.normal_()
    features = _features(["CC(O)c1ccncc1"], "2d")[0]  # paths longer than multi_hop_max_dist = 5 exist
    batch = _collate([features])
    _, bias = encoding(
        batch["in_degree"], batch["out_degree"], batch["spatial_pos"], batch["attn_edge_type"], batch["edge_input"]
    )
    n = features["input_nodes"].shape[0]
    hop_max = model.config.multi_hop_max_dist
    tables = encoding.edge_embedding.tables
    for i in range(n):
        for j in range(n):
            distance = int(features["spatial_pos"][i, j]) - 1
            expected = encoding.spatial_embedding.weight[distance + 1].clone()
            hops = min(distance, hop_max)
            for k in range(hops):
                bond = features["edge_input"][i, j, k]
                x = sum(tables[c].weight[int(bond[c])] for c in range(3)) / 3
                expected += x @ encoding.hop_weights[k] / hops
            assert torch.allclose(bias[0, :, i, j], expected, atol=1e-6), (i, j)


def test_bond_ape_and_degree_embedding_match_direct_sum():
    """X_i^0 = sum_c atom_c(X_i) + deg_in + deg_out + MLP(sum_{j bonded} sum_c bond_c(e_ij)) (CCMD eq. 1-2)."""
    model = _model("2d", seed=4)
    features = _features(["OC(=O)c1ccccc1N"], "2d")[0]
    batch = _collate([features])
    out = model(**batch, output_hidden_states=True)
    enc = model.structure_encoding
    n = features["input_nodes"].shape[0]
    for i in range(n):
        edge_sum = torch.zeros(32)
        for j in range(n):
            for c in range(3):
                edge_sum += enc.bond_embedding.tables[c].weight[int(features["attn_edge_type"][i, j, c])]
        atom = sum(model.atom_embedding.tables[c].weight[int(features["input_nodes"][i, c])] for c in range(9))
        degree = int(features["degree"][i])
        expected = atom + enc.in_degree_embedding.weight[degree] + enc.out_degree_embedding.weight[degree]
        expected = expected + enc.ape_mlp(edge_sum)
        assert torch.allclose(out.hidden_states[0][0, 1 + i], expected, atol=1e-5)
    assert torch.allclose(out.hidden_states[0][0, 0], model.graph_token[0, 0])


@pytest.mark.parametrize("geometry", ["2d", "3d", "2d+3d"])
def test_virtual_token_distance_on_row_and_column_zero(geometry):
    model = _model(geometry)
    bias = model._with_virtual_token(torch.zeros(1, 4, 3, 3))
    t = model.virtual_distance.view(4, 1)
    assert torch.allclose(bias[0, :, 0, :], t.expand(4, 4))
    assert torch.allclose(bias[0, :, 1:, 0], t.expand(4, 3))
    assert bias[0, :, 1:, 1:].abs().max() == 0


def test_gaussian_basis_matches_formula():
    basis = GaussianDistanceBasis(num_gaussians=4, num_atom_types=10)
    basis.reset_parameters()
    with torch.no_grad():
        basis.pair_scale[6 * 10 + 8] = 1.3  # C -> O
        basis.pair_shift[6 * 10 + 8] = -0.2
    distance = torch.tensor([[[0.0, 1.2], [1.2, 0.0]]])
    psi = basis(distance, torch.tensor([[6, 8]]))
    for k in range(4):
        mu, sigma = basis.means[k].item(), abs(basis.stds[k].item()) + 1e-5
        x = 1.3 * 1.2 - 0.2
        expected = math.exp(-0.5 * ((x - mu) / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)
        assert psi[0, 0, 1, k].item() == pytest.approx(expected, rel=1e-5)
        x = 1.2  # O -> C keeps the identity map: pair types are ordered
        expected = math.exp(-0.5 * ((x - mu) / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)
        assert psi[0, 1, 0, k].item() == pytest.approx(expected, rel=1e-5)


def test_3d_ape_sums_basis_over_other_real_atoms():
    model = _model("3d", seed=5)
    features = _features(["CCO", "CCCCN"], "3d")
    batch = _collate(features)
    out = model(**batch, output_hidden_states=True)
    enc = model.geometry_encoding
    pos = torch.from_numpy(features[0]["pos"])
    z = torch.from_numpy(features[0]["input_nodes"][:, 0])
    for i in range(3):
        summed = 0
        for j in range(3):
            if j != i:  # psi_ij from a two-atom system (i, j): entry (0, 1)
                d = torch.linalg.norm(pos[i] - pos[j])
                pair = torch.tensor([[[0.0, d], [d, 0.0]]])
                summed = summed + enc.basis(pair, torch.stack([z[i], z[j]]).view(1, 2))[0, 0, 1]
        atom = sum(model.atom_embedding.tables[c].weight[int(features[0]["input_nodes"][i, c])] for c in range(9))
        assert torch.allclose(out.hidden_states[0][0, 1 + i], atom + enc.ape_mlp(summed), atol=1e-5)


@pytest.mark.parametrize("geometry", ["2d", "3d", "2d+3d"])
def test_padded_batch_equals_single_molecules(geometry):
    model = _model(geometry)
    features = _features(SMILES, geometry)
    batch = model(**_collate(features), output_hidden_states=True)
    for b, f in enumerate(features):
        single = model(**_collate([f]), output_hidden_states=True)
        n = f["input_nodes"].shape[0]
        assert torch.allclose(batch.last_hidden_state[b, : 1 + n], single.last_hidden_state[0], atol=1e-5)
        for layer_batch, layer_single in zip(batch.hidden_states, single.hidden_states):
            assert torch.allclose(layer_batch[b, : 1 + n], layer_single[0], atol=1e-5)


def _permute_batch(batch, perm):
    out = dict(batch)
    out["input_nodes"] = batch["input_nodes"][:, perm]
    out["attention_mask"] = batch["attention_mask"][:, perm]
    for key in ("in_degree", "out_degree"):
        out[key] = batch[key][:, perm]
    for key in ("spatial_pos", "attn_edge_type", "edge_input"):
        out[key] = batch[key][:, perm][:, :, perm]
    if "pos" in batch:
        out["pos"] = batch["pos"][:, perm]
    out.pop("edge_index")
    out.pop("edge_attr")
    return out


@pytest.mark.parametrize("geometry", ["2d", "3d", "2d+3d"])
def test_atom_permutation_equivariance(geometry):
    model = _model(geometry)
    batch = _collate(_features(["c1ccccc1CO"], geometry))
    perm = torch.tensor([3, 7, 0, 5, 1, 6, 2, 4])
    ref = model(**batch)
    permuted = model(**_permute_batch(batch, perm))
    assert torch.allclose(permuted.last_hidden_state[:, 1:], ref.last_hidden_state[:, 1:][:, perm], atol=1e-5)
    assert torch.allclose(permuted.pooler_output, ref.pooler_output, atol=1e-5)


@pytest.mark.parametrize("geometry", ["3d", "2d+3d"])
def test_3d_invariance_to_rotation_and_translation(geometry):
    model = _model(geometry)
    batch = _collate(_features(SMILES, geometry))
    ref = model(**batch)
    moved = dict(batch)
    moved["pos"] = (batch["pos"] @ _random_rotation(1).T + torch.tensor([3.0, -7.0, 11.0])) * batch[
        "attention_mask"
    ].unsqueeze(-1)
    out = model(**moved)
    mask = ref.token_mask
    assert torch.allclose(out.last_hidden_state[mask], ref.last_hidden_state[mask], atol=1e-4)


def test_denoising_head_is_rotation_equivariant_and_translation_invariant():
    model = _model("3d", cls=GraphormerForDenoising)
    batch = _collate(_features(SMILES, "3d"))
    mask = batch["attention_mask"].bool()
    ref = model(**batch).noise_pred
    rotation = _random_rotation(2)
    moved = dict(batch)
    moved["pos"] = (batch["pos"] @ rotation.T + torch.tensor([1.0, 2.0, -4.0])) * mask.unsqueeze(-1)
    out = model(**moved).noise_pred
    assert ref[mask].abs().max() > 1e-3  # not trivially zero
    assert torch.allclose(out[mask], ref[mask] @ rotation.T, atol=1e-4)
    assert out[~mask].abs().max() == 0


def test_denoising_loss_and_noise_helper():
    model = _model("3d", cls=GraphormerForDenoising)
    batch = _collate(_features(SMILES, "3d"))
    mask = batch["attention_mask"].bool()
    noisy, eps = add_coordinate_noise(batch["pos"], mask, sigma=0.04, generator=torch.Generator().manual_seed(0))
    assert eps[~mask].abs().max() == 0 and eps[mask].std() > 0.5
    assert torch.allclose(noisy, batch["pos"] + 0.04 * eps)
    out = model(**{**batch, "pos": noisy}, noise=eps)
    expected = torch.stack([((out.noise_pred[b, i] - eps[b, i]) ** 2).sum() for b, i in mask.nonzero()]).mean()
    assert torch.allclose(out.loss, expected, atol=1e-6)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_3d_gradients_wrt_positions_are_finite():
    model = _model("3d")
    batch = _collate(_features(SMILES, "3d"))
    pos = batch["pos"].clone().requires_grad_(True)
    model(**{**batch, "pos": pos}).pooler_output.sum().backward()
    assert torch.isfinite(pos.grad).all() and pos.grad.abs().sum() > 0


@pytest.mark.parametrize("geometry", ["2d", "3d", "2d+3d"])
def test_sdpa_matches_eager(geometry):
    model = _model(geometry)
    batch = _collate(_features(SMILES, geometry))
    sdpa = model(**batch, output_hidden_states=True)
    model.set_attention_implementation("eager")
    eager = model(**batch, output_hidden_states=True)
    mask = sdpa.token_mask
    for a, b in zip(sdpa.hidden_states, eager.hidden_states):
        assert torch.allclose(a[mask], b[mask], atol=1e-5)
    assert torch.allclose(sdpa.last_hidden_state[mask], eager.last_hidden_state[mask], atol=1e-5)


def test_feature_vocabularies_match_featurizer():
    config = GraphormerConfig()
    assert config.atom_feature_dims == list(ATOM_FEATURE_DIMS)
    assert config.bond_feature_dims == list(BOND_FEATURE_DIMS)
    assert config.max_spatial == MoleculeFeaturizer().max_spatial
    assert config.multi_hop_max_dist == MoleculeFeaturizer().multi_hop_max_dist


def test_clear_errors_for_bad_inputs():
    batch = _collate(_features(SMILES, "2d"))
    with pytest.raises(ValueError, match="spatial_pos"):
        _model("2d")(**{k: v for k, v in batch.items() if k != "spatial_pos"})
    with pytest.raises(ValueError, match="needs `pos`"):
        _model("3d")(**batch)
    with pytest.raises(ValueError, match="needs `pos`"):
        _model("2d+3d")(**batch)
    batch_3d = _collate(_features(SMILES, "3d"))
    with pytest.raises(ValueError, match=r"'2d\+3d' needs the graph batch keys \['spatial_pos'\]"):
        _model("2d+3d")(**{k: v for k, v in batch_3d.items() if k != "spatial_pos"})
    with pytest.raises(ValueError, match="max_spatial"):
        _model("2d", max_spatial=2).validate_inputs(batch)
    _model("2d").validate_inputs(batch)
    with pytest.raises(ValueError, match="geometry='3d'"):
        GraphormerForDenoising(_config("2d"))
    with pytest.raises(ValueError, match="geometry"):
        GraphormerConfig(geometry="4d")


@pytest.mark.parametrize(
    "cls, auto_class, geometry",
    [
        (GraphormerModel, AutoModel, "2d"),
        (GraphormerModel, AutoModel, "3d"),
        (GraphormerForMolecularPropertyPrediction, AutoModelForMolecularPropertyPrediction, "2d"),
        (GraphormerForMolecularPropertyPrediction, AutoModelForMolecularPropertyPrediction, "3d"),
        (GraphormerForMolecularPropertyPrediction, AutoModelForMolecularPropertyPrediction, "2d+3d"),
        (GraphormerForDenoising, AutoModelForDenoising, "3d"),
    ],
)
def test_save_pretrained_round_trip_and_auto_classes(tmp_path, cls, auto_class, geometry):
    model = _model(geometry, cls=cls, num_labels=2, label_mean=[1.0, -2.0], label_std=[0.5, 3.0])
    batch = _collate(_features(SMILES, geometry))
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is GraphormerConfig
    for loaded in (cls.from_pretrained(tmp_path), auto_class.from_pretrained(tmp_path)):
        assert type(loaded) is cls
        loaded.eval()
        ref, out = model(**batch), loaded(**batch)
        for key in ("last_hidden_state", "logits", "noise_pred"):
            if key in ref:
                assert torch.equal(ref[key], out[key]), key
    assert loaded.config.geometry == geometry and loaded.config.hidden_size == 32


def test_property_head_loads_from_pretrained_backbone(tmp_path):
    backbone = _model("2d")
    backbone.save_pretrained(tmp_path)
    head_model = GraphormerForMolecularPropertyPrediction.from_pretrained(tmp_path, num_labels=1)
    for (name, p), (_, q) in zip(backbone.state_dict().items(), head_model.graphormer.state_dict().items()):
        assert torch.equal(p, q), name


def test_2d_plus_3d_sums_the_two_views_encodings():
    """geometry 2d+3d: the atom embedding and the attention bias are the 2D view's plus the 3D view's, computed by
    the same modules (Transformer-M's two channels added)."""
    both = _model("2d+3d")
    batch = _collate(_features(SMILES, "2d+3d"))
    graph_inputs = {k: batch[k] for k in ("in_degree", "out_degree", "spatial_pos", "attn_edge_type", "edge_input")}
    atom_mask = batch["attention_mask"].bool()
    node_2d, bias_2d = both.structure_encoding(**graph_inputs)
    node_3d, bias_3d = both.geometry_encoding(batch["pos"], batch["input_nodes"][..., 0], atom_mask)
    node, bias = both._encode_structure(batch["input_nodes"], atom_mask, batch["pos"], graph_inputs)
    assert torch.equal(node, node_2d + node_3d) and torch.equal(bias, bias_2d + bias_3d)
    assert both.config.reads_graph and both.config.reads_coordinates
    assert not _config("2d").reads_coordinates and not _config("3d").reads_graph
