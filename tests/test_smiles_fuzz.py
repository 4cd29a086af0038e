"""Fuzzing the SMILES entry points: random bytes, mutated real SMILES and huge inputs are accepted or refused with a
`SmilesParseError`, never another exception and never slowly; every student's processor gives the same verdict."""

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from molformer_kd.data.qm9 import read_embedded_qm9
from molformer_kd.tokenization import (
    MoleculeFeaturizer,
    SmilesParseError,
    SmilesTokenizer,
    StBaseTokenizer,
    check_smiles,
    parse_smiles,
)

FEATURIZER, ST_TOKENIZER, ST_BASE_TOKENIZER = MoleculeFeaturizer(), SmilesTokenizer(), StBaseTokenizer()
# Per call; the slowest legal input (a 512-atom molecule through the featurizer) takes well under a second.
SECONDS_PER_CALL = 10.0
# Derandomized so that every machine runs the same examples (the suite must not flake); about 20 s in all.
FUZZ = settings(max_examples=800, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

REAL_SMILES = [record["smiles"] for record in read_embedded_qm9()[1][:200]] + [
    "CC(=O)Oc1ccccc1C(=O)O",
    "C[C@H](N)C(=O)O",
    "CC(=O)[O-].[Na+]",
    "N->[Fe]",
    "F/C=C/F",
    "[13CH3]C%10CC%10",
    "O=C(O)C[C@H](O)C[C@H](O)CCn2c(c(c(c2c1ccc(F)cc1)c3ccccc3)C(=O)Nc4ccccc4)C(C)C",
    "CC |$;Cl_p$|",
]
# SMILES characters plus the kinds of characters hostile files hold.
MUTATION_ALPHABET = list("CNOSPFIcnosp()[]=#$:/\\@+-.%0123456789H*<>| ") + [
    "\x00",
    "\t",
    "\n",
    "\ufeff",
    "\u0661",
    "\u00b9",
    "\U0001f600",
    "\u00e9",
    "\x7f",
]


def entry_points(smiles):
    """Each entry point's verdict: None (accepted) or 'refused'; any other exception escapes and fails the test."""
    calls = {
        "parse_smiles": lambda: parse_smiles(smiles),
        "check_smiles": lambda: check_smiles(smiles),
        "featurize": lambda: FEATURIZER.featurize(smiles),
        "featurize_many": lambda: FEATURIZER([smiles]),
        "SmilesTokenizer": lambda: ST_TOKENIZER(smiles),
        "encode_smiles": lambda: ST_TOKENIZER.encode_smiles(smiles),
        "StBaseTokenizer": lambda: ST_BASE_TOKENIZER([smiles], padding=True),
    }
    verdicts = {}
    for name, call in calls.items():
        start = time.perf_counter()
        try:
            call()
            verdicts[name] = None
        except SmilesParseError:
            verdicts[name] = "refused"
        elapsed = time.perf_counter() - start
        assert elapsed < SECONDS_PER_CALL, (name, smiles[:200], elapsed)
    return verdicts


def check_one_verdict(smiles):
    verdicts = entry_points(smiles)
    front_door = verdicts.pop("check_smiles")
    grammar = verdicts.pop("parse_smiles")
    assert set(verdicts.values()) == {front_door}, (smiles[:200], verdicts, front_door)
    if grammar == "refused":  # the front door reads the grammar first (CXSMILES extensions aside)
        assert front_door == "refused" or " |" in smiles


@FUZZ
@given(st.binary(max_size=48))
def test_random_bytes(data):
    check_one_verdict(data.decode("latin-1"))
    check_one_verdict(data.decode("utf-8", errors="replace"))


@st.composite
def mutated_smiles(draw):
    chars = list(draw(st.sampled_from(REAL_SMILES)))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(chars)))
        edit = draw(st.sampled_from(["insert", "replace", "delete"]))
        char = draw(st.sampled_from(MUTATION_ALPHABET))
        if edit == "insert":
            chars.insert(position, char)
        elif chars and position < len(chars):
            if edit == "replace":
                chars[position] = char
            else:
                del chars[position]
    return "".join(chars)


@FUZZ
@given(mutated_smiles())
def test_mutated_real_smiles(smiles):
    check_one_verdict(smiles)


HUGE_INPUTS = st.one_of(
    st.builds(lambda n: "C" * n, st.integers(400, 300_000)),
    st.builds(lambda n: "C(" * n + "C" + ")" * n, st.integers(200, 60_000)),  # deep branches
    st.builds(lambda n: "c1ccccc1" * n, st.integers(50, 20_000)),
    st.builds(lambda n: "C1CC2CC1C2." * n, st.integers(50, 20_000)),  # many fragments
    st.builds(lambda n: "[13CH2+:7]" * n, st.integers(50, 20_000)),
    st.builds(lambda n, k: "C" * n + "X" + "C" * k, st.integers(0, 100_000), st.integers(0, 100_000)),
    st.builds(lambda n: "[" + "1" * n + "C]", st.integers(5, 100_000)),  # huge isotope
    st.builds(lambda n: "C%(" + "9" * n + ")CC%(" + "9" * n + ")", st.integers(5, 100_000)),  # huge ring number
)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(HUGE_INPUTS)
def test_huge_inputs(smiles):
    check_one_verdict(smiles)


@pytest.mark.parametrize("smiles", ["C" * 512, "C" * 513, "c1ccccc1" * 85, "C(" * 255 + "C" + ")" * 255])
def test_inputs_at_the_atom_limit(smiles):
    verdicts = entry_points(smiles)
    assert verdicts.pop("parse_smiles") is None  # the grammar has no size limit
    assert set(verdicts.values()) == {None if parse_smiles(smiles).num_atoms <= 512 else "refused"}
