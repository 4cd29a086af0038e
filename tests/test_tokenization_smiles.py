"""SmilesTokenizer (ST student) and StBaseTokenizer (ST-BASE): encodings, padding contract, vocab, Auto loading."""

import json

import numpy as np
import pytest
import torch
from rdkit import Chem
from transformers import AutoTokenizer

import molformer_kd  # noqa: F401  (registers the tokenizers)
from molformer_kd.tokenization import register_tokenizers
from molformer_kd.tokenization.featurization import MoleculeFeaturizer
from molformer_kd.tokenization.smiles_grammar import SmilesParseError, parse_smiles
from molformer_kd.tokenization.tokenization_smiles import SmilesTokenizer
from molformer_kd.tokenization.tokenization_st_base import (
    SMILES_REGEX,
    StBaseTokenizer,
    enumerate_random_smiles,
    regex_tokenize,
)

register_tokenizers()  # idempotent; molformer_kd.tokenization.__init__ calls it too once wired


@pytest.fixture(scope="module")
def tok():
    return SmilesTokenizer()


def test_sequence_layout_of_acetic_acid(tok):
    enc = tok("CC(=O)O")
    ids = tok.convert_ids_to_tokens(enc["input_ids"])
    assert ids == ["[V]", "C", "C", "O", "O", "-", "=", "-"]
    assert enc["token_type_ids"] == [0, 1, 1, 1, 1, 2, 2, 2]
    assert enc["structure_positions"] == [[0, 0], [1, 0], [2, 0], [3, 0], [4, 0], [1, 2], [2, 3], [2, 4]]
    assert enc["atom_token_index"] == [1, 2, 3, 4]
    assert enc["atom_mask"] == [1, 1, 1, 1]
    assert enc["attention_mask"] == [1] * 8


def test_bond_tokens_follow_rdkit_bond_order_with_ring_closures(tok):
    smiles = "C1CC2CC1C2"
    enc = tok(smiles)
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    bonds = [[b.GetBeginAtomIdx() + 1, b.GetEndAtomIdx() + 1] for b in mol.GetBonds()]
    n = mol.GetNumAtoms()
    assert enc["structure_positions"][1 + n :] == bonds
    assert len(enc["input_ids"]) == 1 + n + mol.GetNumBonds()


def test_tokens_bracket_atoms_whole_and_implicit_aromatic_bonds(tok):
    tokens = tok.tokenize("c1cc[nH]c1[C@@H](Cl)Br")
    assert tokens[:7] == ["c", "c", "c", "[nH]", "c", "[C@@H]", "Cl"]
    assert tokens[8:12] == [":", ":", ":", ":"] and tokens[12] == "-"
    assert tok.convert_tokens_to_ids("[nH]") != tok.unk_token_id
    assert tok.convert_tokens_to_ids("[Xe+8]") == tok.unk_token_id  # not in the default vocab


def test_explicit_hydrogens_are_not_tokens(tok):
    assert tok("[H]C([H])([H])[H]")["input_ids"] == tok("C")["input_ids"]
    assert tok.tokenize("[H][H]") == ["[H]", "[H]", "-"]  # the all-hydrogen molecule keeps its atoms


def test_padded_batch_contract(tok):
    smiles = ["CCO", "c1ccccc1C(=O)N", "[Na+].[Cl-]"]
    batch = tok(smiles, padding=True, return_tensors="pt")
    singles = [tok(s) for s in smiles]
    L = max(len(e["input_ids"]) for e in singles)
    N = max(len(e["atom_token_index"]) for e in singles)
    assert set(batch) == set(tok.model_input_names)
    assert batch["input_ids"].shape == (3, L) and batch["input_ids"].dtype == torch.long
    for key in ("attention_mask", "token_type_ids"):
        assert batch[key].shape == (3, L) and batch[key].dtype == torch.long
    assert batch["structure_positions"].shape == (3, L, 2)
    assert batch["atom_token_index"].shape == (3, N) and batch["atom_mask"].shape == (3, N)
    for b, e in enumerate(singles):
        n, length = len(e["atom_token_index"]), len(e["input_ids"])
        assert batch["input_ids"][b, :length].tolist() == e["input_ids"]
        assert (batch["input_ids"][b, length:] == tok.pad_token_id).all()
        assert batch["attention_mask"][b].tolist() == [1] * length + [0] * (L - length)
        assert (batch["token_type_ids"][b, length:] == 0).all()
        assert (batch["structure_positions"][b, length:] == 0).all()
        assert batch["atom_token_index"][b].tolist() == list(range(1, n + 1)) + [0] * (N - n)
        assert batch["atom_mask"][b].tolist() == [1] * n + [0] * (N - n)
        # atom_token_index points at the atom tokens
        assert (batch["token_type_ids"][b, batch["atom_token_index"][b, :n]] == 1).all()


def test_structure_positions_give_paper_position_embeddings(tok):
    # eq. (5)-(6): atom j gets E[j], bond (u, v) gets E[u] + E[v], [V] nothing (row 0 of the table is zero)
    table = torch.nn.Embedding(32, 4, padding_idx=0)
    batch = tok(["C1CC1O"], padding=True, return_tensors="pt")
    pos = table(batch["structure_positions"]).sum(-2)[0]
    E = table.weight
    assert torch.allclose(pos[0], torch.zeros(4))
    assert torch.allclose(pos[2], E[2])  # atom 1
    parsed = parse_smiles("C1CC1O")
    for k, (u, v, _) in enumerate(parsed.bonds):
        assert torch.allclose(pos[1 + parsed.num_atoms + k], E[u + 1] + E[v + 1])


def test_pad_accepts_rows_from_a_dataset_and_pad_to_multiple(tok):
    rows = [tok("CCO"), tok("CCCCC")]
    batch = tok.pad(rows, return_tensors="pt", pad_to_multiple_of=8)
    assert batch["input_ids"].shape[1] == 16 and batch["atom_token_index"].shape[1] == 5
    batch = tok(["CCO", "CC"], padding="max_length", max_length=12, return_tensors="np")
    assert batch["input_ids"].shape == (2, 12) and batch["structure_positions"].shape == (2, 12, 2)
    with pytest.raises(ValueError, match="max_length"):
        tok(["CCCCCCCC"], padding="max_length", max_length=4)
    with pytest.raises(ValueError, match="truncating"):
        tok("CCCCCCCC", truncation=True, max_length=4)
    with pytest.raises(ValueError, match="right"):
        tok.pad(rows, padding_side="left")


def test_single_smiles_with_tensors_has_a_batch_axis(tok):
    enc = tok("CCO", return_tensors="pt")
    assert enc["input_ids"].shape == (1, 6) and enc["structure_positions"].shape == (1, 6, 2)


def test_invalid_smiles_raise_naming_the_smiles(tok):
    with pytest.raises(SmilesParseError, match=r"'CC\(C' at position 2"):
        tok(["CCO", "CC(C"], padding=True)


def test_build_vocab_save_and_auto_round_trip(tmp_path):
    corpus = ["CCO", "c1ccccc1[N+](=O)[O-]", "C[C@H](N)C(=O)O", "[2H]C", "C=1CC1"]
    vocab = SmilesTokenizer.build_vocab(corpus)
    assert list(vocab)[:3] == ["[PAD]", "[UNK]", "[V]"]
    assert {"[N+]", "[O-]", "[C@H]", "=", ":", "-"} <= set(vocab)
    assert "[2H]" not in vocab  # folded hydrogens are never tokens
    tok = SmilesTokenizer.from_corpus(corpus, str(tmp_path / "built"))
    tok.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "SmilesTokenizer"
    loaded = AutoTokenizer.from_pretrained(str(tmp_path / "saved"))
    assert type(loaded) is SmilesTokenizer and loaded.get_vocab() == tok.get_vocab()
    batch = ["c1ccccc1[N+](=O)[O-]", "CCO"]
    a = tok(batch, padding=True, return_tensors="pt")
    b = loaded(batch, padding=True, return_tensors="pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_default_vocab_covers_moses_and_qm9_symbols(tok):
    for smiles in ["CC(C)(C)OC(=O)N1CCC[C@H]1c1nc2ccccc2[nH]1", "C#C[C@]1(O)CC[NH2+]C1", "O=C1N=C([O-])C=C1"]:
        assert tok.unk_token_id not in tok(smiles)["input_ids"], smiles


# ------------------------------------------------------------------------------------------------ ST-BASE


def test_regex_tokens():
    assert regex_tokenize("CC(=O)Oc1ccccc1C(=O)O")[:6] == ["C", "C", "(", "=", "O", ")"]
    assert regex_tokenize("C%12CC[C@@H](Br)CCl%12") == [
        "C",
        "%12",
        "C",
        "C",
        "[C@@H]",
        "(",
        "Br",
        ")",
        "C",
        "Cl",
        "%12",
    ]
    assert "".join(regex_tokenize("[Na+].[Cl-]")) == "[Na+].[Cl-]"
    assert SMILES_REGEX.startswith(r"(\[[^\]]+]")
    with pytest.raises(SmilesParseError, match="position 2"):
        regex_tokenize("CC!C")


def test_st_base_encoding_and_round_trip(tmp_path):
    tok = StBaseTokenizer()
    enc = tok("CC(=O)O")
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["[CLS]", "C", "C", "(", "=", "O", ")", "O"]
    assert set(enc) == {"input_ids", "attention_mask"}
    batch = tok(["CCO", "c1ccccc1Cl"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == (2, 10)  # [CLS] c 1 c c c c c 1 Cl
    assert batch["attention_mask"][0].tolist() == [1] * 4 + [0] * 6
    assert (batch["input_ids"][0, 4:] == tok.pad_token_id).all()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert type(loaded) is StBaseTokenizer and loaded("CCO")["input_ids"] == tok("CCO")["input_ids"]


def test_enumerate_random_smiles_is_reproducible_and_same_molecule():
    smiles = "CC(=O)Oc1ccccc1C(=O)O"
    variants = enumerate_random_smiles(smiles, n=5, seed=3)
    assert len(variants) == 5 and variants == enumerate_random_smiles(smiles, n=5, seed=3)
    assert len(set(variants)) > 1
    canonical = Chem.CanonSmiles(smiles)
    assert all(Chem.CanonSmiles(v) == canonical for v in variants)
    with pytest.raises(ValueError, match="C1CC"):
        enumerate_random_smiles("C1CC")


@pytest.mark.parametrize(
    "smiles",
    [
        "[H]C([H])([H])[H]",
        "[2H]C(Cl)([2H])[H]",
        "[H][H]",
        "[H]c1ccccc1",
        "F/C=C/[H]",
        "[H]N([H])C(=O)O",
        "CC[C@@]([H])(O)F",
        "[13CH3]O",
    ],
)
def test_student_atom_tokens_are_the_featurizer_atoms(smiles, tok):
    features = MoleculeFeaturizer().featurize(smiles)
    parsed = parse_smiles(smiles)
    atomic_numbers = features["input_nodes"][:, 0]  # OGB feature 0 is atomic_num - 1, stored + 1
    table = Chem.GetPeriodicTable()
    assert [table.GetElementSymbol(int(z)) for z in atomic_numbers] == [a.element for a in parsed.atoms]
    assert len(tok(smiles)["atom_token_index"]) == parsed.num_atoms


@pytest.mark.parametrize("tokenizer_class", [SmilesTokenizer, StBaseTokenizer])
def test_a_loaded_tokenizer_saves_a_config_that_loads_again(tokenizer_class, tmp_path):
    """from_pretrained's bookkeeping (`is_local`, `local_files_only`) must not reach the saved tokenizer_config.json,
    whose keys are checked on load: a stage or the ship script that re-saves a loaded tokenizer relies on it."""
    tokenizer_class().save_pretrained(tmp_path / "first")
    tokenizer_class.from_pretrained(tmp_path / "first").save_pretrained(tmp_path / "second")
    saved = json.loads((tmp_path / "second" / "tokenizer_config.json").read_text())
    assert "is_local" not in saved and "local_files_only" not in saved
    reloaded = tokenizer_class.from_pretrained(tmp_path / "second")
    assert reloaded("CCO")["input_ids"] == tokenizer_class()("CCO")["input_ids"]


BATCH_SMILES = [
    "CC(=O)Oc1ccccc1C(=O)O",
    "C1CC",  # unclosed ring
    "[NH4+].[Cl-]",
    "O",
    "C(C)(C)(C)(C)C",  # five-valent carbon: RDKit refuses it
    "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O",
    "[2H]C([2H])([2H])O",  # written hydrogens folded into the carbon
    "",
    "c1ccc2ccccc2c1",
    None,
    "[H][H]",
]


def test_encode_batch_is_the_padded_batch_of_the_molecules_that_encode(tok):
    """encode_batch gives the arrays of tokenizer(valid, padding=True) and, per refused row, the front door's error
    (naming SMILES and position), the others unaffected."""
    batch = tok.encode_batch(BATCH_SMILES, keep_checked=True)
    valid = [i for i, s in enumerate(BATCH_SMILES) if s not in ("C1CC", "C(C)(C)(C)(C)C", "", None)]
    assert batch.encoded == valid
    expected = tok([BATCH_SMILES[i] for i in valid], padding=True, return_tensors="pt")
    assert set(batch.inputs) == set(tok.model_input_names)
    for key in tok.model_input_names:
        assert batch.inputs[key].dtype == np.int64
        np.testing.assert_array_equal(batch.inputs[key], expected[key].numpy(), err_msg=key)
    for i, (smiles, error) in enumerate(zip(BATCH_SMILES, batch.errors)):
        if i in valid:
            assert error is None
        elif smiles is None:
            assert isinstance(error, TypeError)
        else:
            assert isinstance(error, SmilesParseError) and repr(smiles) in str(error) and "position" in str(error)
    # The front door's parse and molecule of each encoded row: its atoms are the row's atom tokens.
    assert [c.parsed.smiles for c in batch.checked] == [BATCH_SMILES[i] for i in valid]
    assert [c.mol.GetNumAtoms() for c in batch.checked] == batch.inputs["atom_mask"].sum(axis=1).tolist()
    assert tok.encode_batch(BATCH_SMILES).checked is None


def test_encode_batch_applies_the_lower_atom_limit_per_row(tok):
    batch = tok.encode_batch(["C" * 10, "CCO", "C" * 11], max_atoms=10)
    assert batch.encoded == [0, 1] and batch.inputs["atom_mask"].shape == (2, 10)
    assert "11 atoms, more than the limit of 10" in str(batch.errors[2])
    nothing = tok.encode_batch(["C1CC", "not a smiles"])
    assert nothing.inputs is None and nothing.encoded == [] and all(nothing.errors)
