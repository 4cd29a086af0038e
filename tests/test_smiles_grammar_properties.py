"""Property tests of parse_smiles: RDKit parity on random valid SMILES, only SmilesParseError on mutated input."""

import importlib.util
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rdkit import Chem

from molformer_kd.tokenization.smiles_grammar import SmilesParseError, parse_smiles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "molformer_kd", "tokenization", "resources", "parity_sample.smi")

_spec = importlib.util.spec_from_file_location(
    "check_parser_parity", os.path.join(ROOT, "scripts", "check_parser_parity.py")
)
parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity)

with open(SAMPLE) as _f:
    SMILES = [line.strip() for line in _f if line.strip()][::6]  # ~500 molecules of every source
MOLS = [m for m in (Chem.MolFromSmiles(s) for s in SMILES) if m is not None]
SMILES_CHARS = "CcNnOoSsPpBbFIlr[]()=#$-+:/\\@.%*0123456789HZe "
COMMON = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_or_reject(smiles):
    """Parse; the only exception allowed is SmilesParseError (anything else propagates and fails the test)."""
    try:
        return parse_smiles(smiles)
    except SmilesParseError as err:
        assert 0 <= err.position <= max(len(smiles) - 1, 0)
        assert (err.reason and repr(smiles)[:20] in str(err)) or len(smiles) > 80
        return None


@COMMON
@given(
    index=st.integers(0, len(MOLS) - 1),
    seed=st.integers(0, 2**31 - 1),
    kekule=st.booleans(),
    explicit_bonds=st.booleans(),
    explicit_hs=st.booleans(),
    add_hs=st.booleans(),
)
def test_random_rdkit_smiles_parse_like_rdkit(index, seed, kekule, explicit_bonds, explicit_hs, add_hs):
    mol = Chem.Mol(MOLS[index])
    if add_hs:
        mol = Chem.AddHs(mol)
    if kekule:
        Chem.Kekulize(mol, clearAromaticFlags=True)
    smiles = Chem.MolToRandomSmilesVect(
        mol, 1, randomSeed=seed, kekuleSmiles=kekule, allBondsExplicit=explicit_bonds, allHsExplicit=explicit_hs
    )[0]
    assert parity.compare(smiles) is None, smiles


_edit = st.tuples(st.sampled_from(["insert", "delete", "replace"]), st.floats(0, 1), st.sampled_from(SMILES_CHARS))


@COMMON
@given(smiles=st.sampled_from(SMILES), edits=st.lists(_edit, min_size=1, max_size=4))
def test_mutated_smiles_raise_only_smiles_parse_error_and_agree_when_valid(smiles, edits):
    chars = list(smiles)
    for op, where, ch in edits:
        i = int(where * len(chars))
        if op == "insert":
            chars.insert(i, ch)
        elif chars:
            i = min(i, len(chars) - 1)
            if op == "delete":
                del chars[i]
            else:
                chars[i] = ch
    mutated = "".join(chars)
    if parse_or_reject(mutated) is not None:
        result = parity.compare(mutated)  # accepted by us: RDKit agrees, or we differ on purpose
        assert result is None or result[1], (mutated, result)


@COMMON
@given(text=st.text(alphabet=SMILES_CHARS, max_size=40))
def test_arbitrary_strings_raise_only_smiles_parse_error(text):
    parse_or_reject(text)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=30))
def test_arbitrary_unicode_raises_only_smiles_parse_error(text):
    parse_or_reject(text)
