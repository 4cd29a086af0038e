import math
import re

import pytest
import torch
from rdkit import Chem
from transformers import AutoConfig, AutoModel

from molformer_kd.modeling.auto import AutoModelForMolecularPropertyPrediction
from molformer_kd.modeling.configuration_smiles_transformer import SmilesTransformerConfig
from molformer_kd.modeling.modeling_smiles_transformer import (
    SmilesTransformerForMolecularPropertyPrediction,
    SmilesTransformerModel,
    attention_bias_mask,
    sinusoidal_position_encoding,
)

SMILES = ["CC(=O)Oc1ccccc1C(=O)O", "C1CC1N", "OCC#N", "c1ccncc1"]
# Test vocabulary, grown as tokens appear (the model only needs ids below vocab_size).
VOCAB = {"[PAD]": 0, "[V]": 1}
VOCAB_SIZE = 64


def token_id(token):
    return VOCAB.setdefault(token, len(VOCAB))


BOND_SYMBOLS = {"SINGLE": "-", "DOUBLE": "=", "TRIPLE": "#", "AROMATIC": ":"}


def _pad(rows, value):
    length = max(len(row) for row in rows)
    return torch.tensor([row + [value] * (length - len(row)) for row in rows])


def smiles_batch(smiles_list):
    """The ST-KD SMILES batch of DESIGN.md built with RDKit's atom and bond order: [V], atoms, then bonds."""
    ids, types, positions, atom_index = [], [], [], []
    for smiles in smiles_list:
        mol = Chem.MolFromSmiles(smiles)
        atoms = [a.GetSymbol().lower() if a.GetIsAromatic() else a.GetSymbol() for a in mol.GetAtoms()]
        bonds = list(mol.GetBonds())
        bond_symbols = [BOND_SYMBOLS[str(b.GetBondType())] for b in bonds]
        ids.append([token_id(token) for token in ["[V]", *atoms, *bond_symbols]])
        types.append([0] + [1] * len(atoms) + [2] * len(bonds))
        positions.append(
            [[0, 0]]
            + [[j + 1, 0] for j in range(len(atoms))]
            + [[b.GetBeginAtomIdx() + 1, b.GetEndAtomIdx() + 1] for b in bonds]
        )
        atom_index.append([1 + j for j in range(len(atoms))])
    input_ids = _pad(ids, VOCAB["[PAD]"])
    return {
        "input_ids": input_ids,
        "attention_mask": (input_ids != VOCAB["[PAD]"]).long(),
        "token_type_ids": _pad(types, 0),
        "structure_positions": _pad(positions, [0, 0]),
        "atom_token_index": _pad(atom_index, 0),
        "atom_mask": (_pad(atom_index, 0) > 0).long(),
    }


# Schwaller et al.'s SMILES regex: the regex tokens of ST-BASE, with "[V]" as the global first token.
SMILES_REGEX = re.compile(
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}|[0-9])"
)


def regex_batch(smiles_list):
    ids = [[token_id(token) for token in ["[V]", *SMILES_REGEX.findall(s)]] for s in smiles_list]
    input_ids = _pad(ids, VOCAB["[PAD]"])
    return {"input_ids": input_ids, "attention_mask": (input_ids != VOCAB["[PAD]"]).long()}


def tiny_config(**overrides):
    return SmilesTransformerConfig.from_preset("tiny", vocab_size=VOCAB_SIZE, **overrides)


def tiny_base_config(**overrides):
    return tiny_config(variant="st_base", num_plain_layers=2, num_biased_layers=0, **overrides)


def tiny_model(config=None, seed=0):
    torch.manual_seed(seed)
    return SmilesTransformerModel(config or tiny_config()).eval()


def test_output_contract():
    model = tiny_model()
    batch = smiles_batch(SMILES)
    out = model(**batch, output_hidden_states=True, output_attentions=True)
    b, length = batch["input_ids"].shape
    assert out.last_hidden_state.shape == (b, length, 32)
    assert torch.equal(out.pooler_output, out.last_hidden_state[:, 0])
    assert len(out.hidden_states) == 1 + 2 and all(h.shape == (b, length, 32) for h in out.hidden_states)
    assert len(out.attentions) == 2 and all(a.shape == (b, 4, length, length) for a in out.attentions)
    assert len(out.attention_biases) == 1 and out.attention_biases[0].shape == (b, 4, length, length)
    assert torch.equal(out.token_mask, batch["attention_mask"])
    quiet = model(**batch)
    assert quiet.hidden_states is None and quiet.attentions is None and quiet.attention_biases is None


def test_structure_position_embedding_follows_eq_5_to_7():
    model = tiny_model()
    batch = smiles_batch(["OCC#N"])
    embeddings = model(**batch, output_hidden_states=True).hidden_states[0][0]
    tokens = model.token_embedding.weight[batch["input_ids"][0]]
    position = model.structure_position_embedding.weight
    assert torch.allclose(embeddings[0], tokens[0])  # [V]: no position
    for j in range(4):  # atom j -> E[j + 1]
        assert torch.allclose(embeddings[1 + j], tokens[1 + j] + position[j + 1])
    mol = Chem.MolFromSmiles("OCC#N")
    for k, bond in enumerate(mol.GetBonds()):  # bond (u, v) -> E[u + 1] + E[v + 1]
        u, v = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        assert torch.allclose(embeddings[5 + k], tokens[5 + k] + position[u + 1] + position[v + 1])


@pytest.mark.parametrize("variant", ["st_kd", "st_base"])
def test_save_and_auto_classes_round_trip(tmp_path, variant):
    torch.manual_seed(0)
    config = tiny_config() if variant == "st_kd" else tiny_base_config()
    config.num_labels, config.label_mean, config.label_std = 2, [1.0, -2.0], [0.5, 3.0]
    batch = smiles_batch(SMILES) if variant == "st_kd" else regex_batch(SMILES)
    head_model = SmilesTransformerForMolecularPropertyPrediction(config).eval()
    backbone = head_model.smiles_transformer
    head_model.save_pretrained(tmp_path / "head")
    backbone.save_pretrained(tmp_path / "backbone")

    loaded_config = AutoConfig.from_pretrained(tmp_path / "head")
    assert isinstance(loaded_config, SmilesTransformerConfig) and loaded_config.variant == variant
    loaded_backbone = AutoModel.from_pretrained(tmp_path / "backbone").eval()
    loaded_head = AutoModelForMolecularPropertyPrediction.from_pretrained(tmp_path / "head").eval()
    assert type(loaded_backbone) is SmilesTransformerModel
    assert type(loaded_head) is SmilesTransformerForMolecularPropertyPrediction
    with torch.no_grad():
        assert torch.equal(loaded_backbone(**batch).last_hidden_state, backbone(**batch).last_hidden_state)
        assert torch.equal(loaded_head(**batch).logits, head_model(**batch).logits)


def test_zeroed_bias_projections_give_the_plain_transformer():
    biased = tiny_model(tiny_config(num_plain_layers=1, num_biased_layers=1))
    with torch.no_grad():
        for projection in biased.attention_bias_projections:
            projection.query.weight.zero_()
            projection.key.weight.zero_()
    plain = SmilesTransformerModel(tiny_config(num_plain_layers=2, num_biased_layers=0)).eval()
    missing, unexpected = plain.load_state_dict(biased.state_dict(), strict=False)
    assert missing == [] and all(key.startswith("attention_bias_projections.") for key in unexpected)
    batch = smiles_batch(SMILES)
    assert torch.allclose(biased(**batch).last_hidden_state, plain(**batch).last_hidden_state, atol=1e-6)
    # ...and the biases really act once the projections are not zero.
    assert not torch.allclose(tiny_model()(**batch).last_hidden_state, plain(**batch).last_hidden_state, atol=1e-3)


def test_bias_mask_matches_eq_13():
    batch = smiles_batch(["OCC#N", "CN"])
    mask = attention_bias_mask(batch["token_type_ids"])
    for b in range(2):
        types = batch["token_type_ids"][b].tolist()
        for i, row_type in enumerate(types):
            for j, column_type in enumerate(types):
                expected = row_type == 1 and (column_type == 1 or j == 0)
                assert bool(mask[b, i, j]) == expected, (b, i, j)


def test_biased_attention_probabilities_match_manual_computation():
    """A_i = softmax(Q K^T / sqrt(d_k) + M ⊙ B_i), B_i = (H Wq_i)(H Wk_i)^T, H = LN(layer input)."""
    model = tiny_model()
    batch = smiles_batch(SMILES)
    out = model(**batch, output_hidden_states=True, output_attentions=True)
    layer = model.layers[1]
    projection = model.attention_bias_projections[0]
    h = layer.attn_norm(out.hidden_states[1])
    heads, head_dim = 4, 8

    def per_head(linear):
        return torch.stack([h @ linear.weight[i * head_dim : (i + 1) * head_dim].T for i in range(heads)], dim=1)

    bias = per_head(projection.query) @ per_head(projection.key).transpose(-1, -2)
    assert torch.allclose(out.attention_biases[0], bias, atol=1e-5)
    attention = layer.attention
    q = torch.stack(
        [
            h @ attention.q_proj.weight[i * 8 : (i + 1) * 8].T + attention.q_proj.bias[i * 8 : (i + 1) * 8]
            for i in range(heads)
        ],
        1,
    )
    k = torch.stack(
        [
            h @ attention.k_proj.weight[i * 8 : (i + 1) * 8].T + attention.k_proj.bias[i * 8 : (i + 1) * 8]
            for i in range(heads)
        ],
        1,
    )
    scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
    types = batch["token_type_ids"]
    is_atom = types == 1
    mask = is_atom[:, :, None] & (is_atom | (torch.arange(types.shape[1]) == 0))[:, None, :]
    padding = ~batch["attention_mask"].bool()[:, None, None, :]
    expected = (scores + mask[:, None] * bias).masked_fill(padding, float("-inf")).softmax(-1)
    assert torch.allclose(out.attentions[1], expected, atol=1e-5)
    # Rows of [V], bonds and padding get no bias: their probabilities are those of plain attention.
    unbiased = scores.masked_fill(padding, float("-inf")).softmax(-1)
    not_atom_rows = ~is_atom[:, None, :, None].expand_as(expected)
    assert torch.allclose(out.attentions[1][not_atom_rows], unbiased[not_atom_rows], atol=1e-5)
    assert not torch.allclose(out.attentions[1], unbiased, atol=1e-3)


@pytest.mark.parametrize("variant", ["st_kd", "st_base"])
def test_sdpa_matches_eager(variant):
    config = tiny_config() if variant == "st_kd" else tiny_base_config()
    batch = smiles_batch(SMILES) if variant == "st_kd" else regex_batch(SMILES)
    sdpa = tiny_model(config)
    eager = SmilesTransformerModel(type(config)(**{**config.to_dict(), "attention_implementation": "eager"})).eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.layers[0].attention.attn_implementation == "sdpa"
    assert eager.layers[0].attention.attn_implementation == "eager"
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        assert torch.allclose(sdpa(**batch).last_hidden_state[real], eager(**batch).last_hidden_state[real], atol=1e-5)


@pytest.mark.parametrize("variant", ["st_kd", "st_base"])
def test_padded_batch_matches_single_molecules(variant):
    model = tiny_model(tiny_config() if variant == "st_kd" else tiny_base_config())
    make_batch = smiles_batch if variant == "st_kd" else regex_batch
    with torch.no_grad():
        out = model(**make_batch(SMILES), output_hidden_states=True, output_attentions=True)
        for b, smiles in enumerate(SMILES):
            single = model(**make_batch([smiles]), output_hidden_states=True, output_attentions=True)
            length = single.last_hidden_state.shape[1]
            for states, single_states in zip(out.hidden_states, single.hidden_states):
                assert torch.allclose(states[b, :length], single_states[0], atol=1e-5)
            assert torch.allclose(out.last_hidden_state[b, :length], single.last_hidden_state[0], atol=1e-5)
            for probs, single_probs in zip(out.attentions, single.attentions):
                assert torch.allclose(probs[b, :, :length, :length], single_probs[0], atol=1e-5)


def test_st_base_uses_scaled_token_embeddings_plus_sinusoids():
    model = tiny_model(tiny_base_config())
    batch = regex_batch(["OCC#N"])
    embeddings = model(**batch, output_hidden_states=True).hidden_states[0][0]
    length = batch["input_ids"].shape[1]
    expected_positions = torch.zeros(length, 32)
    for p in range(length):
        for k in range(16):
            expected_positions[p, 2 * k] = math.sin(p / 10000 ** (2 * k / 32))
            expected_positions[p, 2 * k + 1] = math.cos(p / 10000 ** (2 * k / 32))
    assert torch.allclose(sinusoidal_position_encoding(torch.arange(length), 32), expected_positions, atol=1e-5)
    tokens = model.token_embedding.weight[batch["input_ids"][0]] * math.sqrt(32)
    assert torch.allclose(embeddings, tokens + expected_positions, atol=1e-5)
    # Token type ids from a BERT-style tokenizer are accepted and change nothing.
    with_types = model(**batch, token_type_ids=torch.zeros_like(batch["input_ids"]))
    assert torch.equal(with_types.last_hidden_state, model(**batch).last_hidden_state)


def test_bad_inputs_name_the_problem():
    model = tiny_model()
    batch = smiles_batch(["OCC#N"])
    too_far = batch["structure_positions"].clone()
    too_far[0, 1, 0] = 33
    model.validate_inputs(batch)
    with pytest.raises(ValueError, match="max_atoms=32"):
        model.validate_inputs(dict(batch, structure_positions=too_far))
    with pytest.raises(ValueError, match="token_type_ids"):
        model(**{k: v for k, v in batch.items() if k != "token_type_ids"})
    with pytest.raises(ValueError, match="structure_positions"):
        model(**{k: v for k, v in batch.items() if k != "structure_positions"})
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.validate_inputs(dict(batch, input_ids=batch["input_ids"] + 100))
    with pytest.raises(TypeError, match="edge_index"):
        model(**batch, edge_index=torch.zeros(2, 1))
    with pytest.raises(ValueError, match="st_base"):
        SmilesTransformerConfig(variant="st_base", num_biased_layers=1)


def qm9_rows(count=64):
    from molformer_kd.data import load_embedded_qm9

    rows = load_embedded_qm9()["train"].select(range(count))
    return list(rows["smiles"]), torch.tensor(rows["gap"], dtype=torch.float32)[:, None]


# (variant, learning rate, steps) of the overfit test.
OVERFIT_SETTINGS = [("st_kd", 3e-3, 300), ("st_base", 2e-3, 400)]
# The drop is chaotic in the seed and the thread count, so the bar comes from its measured spread, not from seed 0
# alone. `scripts/measure_test_spread.py --tests st_kd st_base` (transformers 5.24.0, torch 2.13.0 CPU), seeds 0-39
# at 1 thread and 0-9 at 2 threads, mean_predictor/final (initial ~= mean_predictor: the untrained head predicts the
# label mean): st_kd min 8.1 (seed 7, 1 thread), geometric mean 21.8, sd of log10 0.17, max 57, seed 0 21.4 / 17.4
# (1 / 2 threads); st_base min 9.0 (seed 8, 1 thread), median 29.9, max 2290 (some runs memorize), seed 0 2290 / 870.
# A 10x bar missed 3 of these 100 runs (and 1 of 30 st_kd runs fell to 2.7x before gradient clipping); 4x is 2x below
# the worst run of each and, for st_kd, 4.2 sd below the mean.
MIN_DROP = 4


def overfit_tiny_smiles_transformer(variant, learning_rate, steps, seed=0):
    """Full-batch Adam (clipped gradients) + one-cycle steps on 64 QM9 gaps; returns (initial, mean_predictor, final)
    training MAEs.

    scripts/measure_test_spread.py calls this with many seeds and thread counts to size the test's thresholds."""
    smiles, gaps = qm9_rows()
    torch.manual_seed(seed)
    settings = {
        "hidden_size": 64,
        "head_dim": 16,
        "intermediate_size": 128,
        "num_labels": 1,
        "label_mean": [gaps.mean().item()],
        "label_std": [gaps.std().item()],
    }
    config = tiny_config(**settings) if variant == "st_kd" else tiny_base_config(**settings)
    model = SmilesTransformerForMolecularPropertyPrediction(config)
    # Token ids from a fresh vocabulary: VOCAB grows as tests meet tokens, and the run (which embedding rows the
    # tokens get) must not depend on which tests ran before, so that the measured spread is this test's.
    saved_vocab = dict(VOCAB)
    VOCAB.clear()
    VOCAB.update({"[PAD]": 0, "[V]": 1})
    try:
        batch = smiles_batch(smiles) if variant == "st_kd" else regex_batch(smiles)
    finally:
        VOCAB.clear()
        VOCAB.update(saved_vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    # The L1 loss has constant-size gradients, so the learning rate must decay to settle on the training points.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.1)

    def train_mae():
        model.eval()
        with torch.no_grad():
            return (model(**batch).logits - gaps).abs().mean().item()

    initial = train_mae()
    mean_predictor = (gaps - gaps.mean()).abs().mean().item()
    for _ in range(steps):
        model.train()
        loss = model(**batch, labels=gaps).loss
        optimizer.zero_grad()
        loss.backward()
        # Clipping stops the rare run that a large early step throws off the fit (without it, 1 of 30 st_kd runs ended
        # at 2.7x below the mean predictor, seed 7 at 2 threads; with it, none of 30 below 8x).
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    return initial, mean_predictor, train_mae()


@pytest.mark.parametrize("variant,learning_rate,steps", OVERFIT_SETTINGS)
def test_tiny_model_overfits_64_qm9_molecules(variant, learning_rate, steps):
    initial, mean_predictor, final = overfit_tiny_smiles_transformer(variant, learning_rate, steps, seed=0)
    # Also below the MAE of predicting the mean, so an unlucky (large) initial error cannot pass the test alone.
    assert final < initial / MIN_DROP and final < mean_predictor / MIN_DROP, (initial, mean_predictor, final)
