import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rdkit import Chem
from transformers import AutoConfig, AutoModel

from molformer_kd.modeling.auto import AutoModelForMolecularPropertyPrediction
from molformer_kd.modeling.configuration_gin import GINConfig
from molformer_kd.modeling.modeling_gin import GINForMolecularPropertyPrediction, GINModel
from molformer_kd.tokenization.collators import GraphCollator
from molformer_kd.tokenization.featurization import MoleculeFeaturizer

SMILES = ["CC(=O)Oc1ccccc1C(=O)O", "C1CC1N", "OCC#N", "c1ccncc1"]
COLLATE = GraphCollator(MoleculeFeaturizer())


def graph_batch(molecules):
    return COLLATE(list(molecules))


def with_extra_padding(batch, max_atoms):
    """The same graph-batch fields re-padded to `max_atoms` columns (edge indices b * N + i move with them)."""
    b, n = batch["attention_mask"].shape
    input_nodes = torch.zeros(b, max_atoms, 9, dtype=torch.long)
    attention_mask = torch.zeros(b, max_atoms, dtype=torch.long)
    input_nodes[:, :n] = batch["input_nodes"]
    attention_mask[:, :n] = batch["attention_mask"]
    edge_index = batch["edge_index"] // n * max_atoms + batch["edge_index"] % n
    return {
        "input_nodes": input_nodes,
        "attention_mask": attention_mask,
        "edge_index": edge_index,
        "edge_attr": batch["edge_attr"],
    }


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    model = GINModel(GINConfig.from_preset("tiny", **overrides))
    # Non-trivial BatchNorm running statistics so that eval-mode tests exercise them.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("virtual_node", [True, False])
def test_output_contract(virtual_node):
    model = tiny_model(virtual_node=virtual_node)
    batch = graph_batch(SMILES)
    assert "spatial_pos" in batch  # the full collated batch: GIN accepts and ignores the Graphormer keys
    out = model(**batch, output_hidden_states=True)
    b, n = batch["attention_mask"].shape
    assert out.last_hidden_state.shape == (b, 1 + n, 32)
    assert len(out.hidden_states) == 1 + model.config.num_hidden_layers
    assert all(h.shape == (b, 1 + n, 32) for h in out.hidden_states)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert torch.equal(out.token_mask[:, 1:], batch["attention_mask"]) and bool(out.token_mask[:, 0].all())
    assert out.attentions is None
    padding = ~batch["attention_mask"].bool()
    assert out.last_hidden_state[:, 1:][padding].abs().max() == 0
    atoms = out.last_hidden_state[:, 1:]
    real = batch["attention_mask"][..., None].float()
    mean = (atoms * real).sum(1) / real.sum(1)
    if virtual_node:
        assert torch.equal(out.pooler_output, out.last_hidden_state[:, 0])
    else:
        assert torch.allclose(out.last_hidden_state[:, 0], mean, atol=1e-6)
        assert torch.allclose(out.pooler_output, mean, atol=1e-6)
    summed = GINModel(GINConfig.from_preset("tiny", pooling="sum")).eval()
    summed.load_state_dict(tiny_model(virtual_node=True).state_dict())
    out = summed(**batch)
    assert torch.allclose(out.pooler_output, (out.last_hidden_state[:, 1:] * real).sum(1), atol=1e-5)


def test_save_and_auto_classes_round_trip(tmp_path):
    torch.manual_seed(0)
    config = GINConfig.from_preset("tiny", num_labels=2, label_mean=[1.0, -2.0], label_std=[0.5, 3.0])
    batch = graph_batch(SMILES)
    head_model = GINForMolecularPropertyPrediction(config).eval()
    backbone = head_model.gin
    head_model.save_pretrained(tmp_path / "head")
    backbone.save_pretrained(tmp_path / "backbone")

    assert isinstance(AutoConfig.from_pretrained(tmp_path / "head"), GINConfig)
    loaded_backbone = AutoModel.from_pretrained(tmp_path / "backbone").eval()
    loaded_head = AutoModelForMolecularPropertyPrediction.from_pretrained(tmp_path / "head").eval()
    assert type(loaded_backbone) is GINModel
    assert type(loaded_head) is GINForMolecularPropertyPrediction
    with torch.no_grad():
        assert torch.equal(loaded_backbone(**batch).last_hidden_state, backbone(**batch).last_hidden_state)
        assert torch.equal(loaded_head(**batch).logits, head_model(**batch).logits)
    # The head checkpoint also loads as a bare backbone (its `gin.` prefix is stripped).
    from_head = AutoModel.from_pretrained(tmp_path / "head").eval()
    assert torch.equal(from_head(**batch).pooler_output, backbone(**batch).pooler_output)


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("virtual_node", [True, False])
def test_permutation_equivariance(norm, virtual_node):
    model = tiny_model(norm=norm, virtual_node=virtual_node)
    mol = Chem.MolFromSmiles(SMILES[0])
    order = np.random.default_rng(0).permutation(mol.GetNumAtoms()).tolist()
    permuted = Chem.RenumberAtoms(mol, order)  # atom k of `permuted` is atom order[k] of `mol`
    with torch.no_grad():
        out = model(**graph_batch([mol]), output_hidden_states=True)
        out_permuted = model(**graph_batch([permuted]), output_hidden_states=True)
    for states, states_permuted in zip(out.hidden_states, out_permuted.hidden_states):
        assert torch.allclose(states[0, 1:][order], states_permuted[0, 1:], atol=1e-5)
        assert torch.allclose(states[0, 0], states_permuted[0, 0], atol=1e-5)
    assert torch.allclose(out.pooler_output, out_permuted.pooler_output, atol=1e-5)


def test_padded_batch_matches_single_molecules():
    model = tiny_model()
    batch = graph_batch(SMILES)
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
        for b, smiles in enumerate(SMILES):
            single = model(**graph_batch([smiles]), output_hidden_states=True)
            n = single.last_hidden_state.shape[1]
            for states, single_states in zip(out.hidden_states, single.hidden_states):
                assert torch.allclose(states[b, :n], single_states[0], atol=1e-5)
            assert torch.allclose(out.pooler_output[b], single.pooler_output[0], atol=1e-5)


def test_training_mode_batch_norm_ignores_padding():
    """Batch statistics come from real atoms only: extra padding columns change nothing, even in train mode."""
    model = tiny_model().train()
    batch = graph_batch(SMILES)
    out = model(**batch, output_hidden_states=True)
    more_padding = model(**with_extra_padding(batch, 20), output_hidden_states=True)
    n = out.last_hidden_state.shape[1]
    for states, padded_states in zip(out.hidden_states, more_padding.hidden_states):
        assert torch.allclose(states, padded_states[:, :n], atol=1e-5)
        assert padded_states[:, n:].abs().max() == 0


def test_gine_layer_matches_hand_computation():
    """C-C=O with one layer: every message, the MLP, the norm and the virtual-node update computed by hand."""
    torch.manual_seed(3)
    model = GINModel(GINConfig.from_preset("tiny", num_hidden_layers=1, norm="layer")).eval()
    with torch.no_grad():
        model.virtual_node.normal_()
        model.convs[0].eps.fill_(0.25)
    batch = graph_batch(["CC=O"])
    out = model(**batch, output_hidden_states=True)

    def embed(tables, values):
        return sum(table.weight[v] for table, v in zip(tables, values.tolist()))

    nodes = batch["input_nodes"][0]
    conv = model.convs[0]
    h0 = torch.stack([embed(model.atom_embedding.tables, nodes[i]) for i in range(3)])
    x = h0 + model.virtual_node
    bonds = {}  # directed (source, target) -> bond feature embedding
    for (source, target), attr in zip(batch["edge_index"].T.tolist(), batch["edge_attr"]):
        bonds[(source, target)] = embed(conv.bond_embedding.tables, attr)
    assert sorted(bonds) == [(0, 1), (1, 0), (1, 2), (2, 1)]
    linear1, norm1, _, linear2 = conv.mlp
    expected_atoms = []
    for i in range(3):
        aggregated = sum(torch.relu(x[j] + bonds[(j, i)]) for j in range(3) if (j, i) in bonds)
        z = (1 + 0.25) * x[i] + aggregated
        z = linear2(torch.relu(F.layer_norm(linear1(z), (32,), norm1.weight, norm1.bias)))
        # last layer: norm, no ReLU (OGB)
        expected_atoms.append(F.layer_norm(z, (32,), model.norms[0].weight, model.norms[0].bias))
    expected_atoms = torch.stack(expected_atoms)
    assert torch.allclose(out.hidden_states[0][0, 1:], h0, atol=1e-6)
    assert torch.allclose(out.last_hidden_state[0, 1:], expected_atoms, atol=1e-5)
    vn_linear1, vn_norm1, _, vn_linear2, vn_norm2, _ = model.virtual_node_mlps[0]
    v = expected_atoms.sum(0) + model.virtual_node
    v = torch.relu(F.layer_norm(vn_linear1(v), (32,), vn_norm1.weight, vn_norm1.bias))
    v = torch.relu(F.layer_norm(vn_linear2(v), (32,), vn_norm2.weight, vn_norm2.bias))
    assert torch.allclose(out.last_hidden_state[0, 0], v, atol=1e-5)
    assert torch.allclose(out.hidden_states[0][0, 0], model.virtual_node)


def test_bad_inputs_name_the_problem():
    model = tiny_model()
    batch = graph_batch(["CCO", "C"])
    model.validate_inputs(batch)
    bad_edges = dict(batch, edge_index=torch.tensor([[0], [4]]), edge_attr=batch["edge_attr"][:1])
    with pytest.raises(ValueError, match=r"edge_index column 0 \(\[0, 4\]\)"):  # molecule 1 (N = 3) has no atom 1
        model.validate_inputs(bad_edges)
    bad_nodes = batch["input_nodes"].clone()
    bad_nodes[0, 0, 2] = 99
    with pytest.raises(ValueError, match="input_nodes column 2"):
        GINForMolecularPropertyPrediction(model.config).validate_inputs(dict(batch, input_nodes=bad_nodes))
    with pytest.raises(ValueError, match=r"edge_index must have shape \(2, E\)"):
        model(**dict(batch, edge_index=batch["edge_index"][0]))
    with pytest.raises(TypeError, match="labelz"):
        model(**batch, labelz=torch.zeros(2))
    with pytest.raises(ValueError, match="pooling='virtual' needs virtual_node=True"):
        GINConfig(virtual_node=False, pooling="virtual")


def qm9_rows(count=64):
    from molformer_kd.data import load_embedded_qm9

    rows = load_embedded_qm9()["train"].select(range(count))
    return list(rows["smiles"]), torch.tensor(rows["gap"], dtype=torch.float32)[:, None]


def overfit_tiny_gin(seed=0):
    """150 full-batch Adam steps on 64 QM9 gaps; returns (initial, mean_predictor, final) training MAEs.

    scripts/measure_test_spread.py calls this with many seeds and thread counts to size the test's thresholds."""
    smiles, gaps = qm9_rows()
    torch.manual_seed(seed)
    config = GINConfig.from_preset(
        "tiny", hidden_size=64, num_labels=1, label_mean=[gaps.mean().item()], label_std=[gaps.std().item()]
    )
    model = GINForMolecularPropertyPrediction(config)
    batch = graph_batch(smiles)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)

    def train_mae():
        model.eval()
        with torch.no_grad():
            return (model(**batch).logits - gaps).abs().mean().item()

    initial = train_mae()
    mean_predictor = (gaps - gaps.mean()).abs().mean().item()
    for _ in range(150):
        model.train()
        loss = model(**batch, labels=gaps).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return initial, mean_predictor, train_mae()


def test_tiny_gin_overfits_64_qm9_molecules():
    initial, mean_predictor, final = overfit_tiny_gin(seed=0)
    # Thresholds from the measured spread over seeds (`scripts/measure_test_spread.py --tests gin`; transformers
    # 5.24.0, torch 2.13.0 CPU; seeds 0-39 at 1 thread, 0-9 at 2 threads; seed 0: 29.0 at 1 thread, 19.5 at 2):
    # mean_predictor/final min 12.6, geometric mean 22.5, sd of log10 0.11, so 6x is 2.1x below the worst of these
    # 50 runs and 5.4 sd below the mean (10x was only 1.3x below the worst). initial/final min 34: the untrained GIN's
    # error is large and seed-dependent, so the seed-independent mean predictor is the bar that matters.
    assert final < initial / 10 and final < mean_predictor / 6, (initial, mean_predictor, final)
