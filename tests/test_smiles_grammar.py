"""parse_smiles: grammar features, RDKit bond order, the explicit-hydrogen rule, errors, robustness."""

import importlib.util
import os
import time

import pytest
from rdkit import Chem

from molformer_kd.tokenization.smiles_grammar import SmilesParseError, parse_smiles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "molformer_kd", "tokenization", "resources", "parity_sample.smi")


def _load_parity_script():
    spec = importlib.util.spec_from_file_location(
        "check_parser_parity", os.path.join(ROOT, "scripts", "check_parser_parity.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


parity = _load_parity_script()


def rdkit_bonds(smiles):
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    return [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), str(b.GetBondType())) for b in mol.GetBonds()]


# ------------------------------------------------------------------------------------------ grammar features


def test_chain_branches_and_implicit_bonds():
    p = parse_smiles("CC(=O)O")
    assert p.atom_symbols == ["C", "C", "O", "O"]
    assert p.bonds == [(0, 1, "SINGLE"), (1, 2, "DOUBLE"), (1, 3, "SINGLE")]
    assert p.bond_symbols == ["-", "=", "-"]


def test_aromatic_implicit_bonds_are_aromatic_like_rdkit_unsanitized():
    # biphenyl written without '-': the inter-ring bond is aromatic too (RDKit, sanitize=False)
    s = "c1ccccc1c1ccccc1"
    p = parse_smiles(s)
    assert p.bonds == rdkit_bonds(s)
    assert p.bonds[5] == (5, 6, "AROMATIC")
    assert parse_smiles("c1ccccc1-c1ccccc1").bonds[5] == (5, 6, "SINGLE")
    assert parse_smiles("c1cc/cc1").bonds[2] == (2, 3, "AROMATIC")  # '/' between aromatic atoms


@pytest.mark.parametrize(
    "smiles",
    [
        "C1CC1",
        "C1CC2CC1C2",
        "C2CC1CC2C1",
        "C12CCC2C1",
        "C1CC11CC1",
        "C1CC1C1CC1",
        "C1.C1",
        "C12.C1.C2",
        "C3CC2CC1CC1CC2C3",
        "C(C1)C1",
        "C(=O)1CC1",
        "C1CCC1(C)",
        "c1ccc2ccccc2c1",
        "N1C2C3C1C23",
        # dative bonds run from the donor (the arrow's tail) to the acceptor, in chains and ring closures
        "N->[Fe]",
        "[Fe]<-N",
        "C(<-C)C",
        "[NH3]->[Pt]<-[NH3]",
        "C[N]1->[Fe]CC1",
        "[Fe]1CC[N]->1",
        "C1CC<-1",
        "C<-1CC1",
        "C->1CC1",
        "C->1CC<-1",
        "N1->[Fe]<-NCC1",
    ],
)
def test_ring_closure_order_and_direction_match_rdkit(smiles):
    # ring bonds after all chain bonds, by ring number, reused numbers in closing order; (closer, opener)
    assert parse_smiles(smiles, fold_hydrogens=False).bonds == rdkit_bonds(smiles)


@pytest.mark.parametrize(
    "smiles, bond",
    [
        ("C=1CC1", (0, 2, "DOUBLE")),  # order symbol on the opening side: (opener, closer)
        ("C1CC=1", (2, 0, "DOUBLE")),
        ("C=1CC=1", (0, 2, "DOUBLE")),
        ("C-1CC1", (0, 2, "SINGLE")),
        ("C/1CC1", (2, 0, "SINGLE")),  # a stereo mark is not an order: (closer, opener)
        ("C/1CC=1", (2, 0, "DOUBLE")),
        ("c:1cccc1", (0, 4, "AROMATIC")),
        ("c-1cccc1", (0, 4, "SINGLE")),
        ("C%10CC%10", (2, 0, "SINGLE")),
        ("C%(123)CC%(123)", (2, 0, "SINGLE")),
        ("C#1CC1", (0, 2, "TRIPLE")),
        ("C$1CC1", (0, 2, "QUADRUPLE")),
    ],
)
def test_ring_closure_bond_symbols(smiles, bond):
    assert parse_smiles(smiles).bonds[-1] == bond
    assert rdkit_bonds(smiles)[-1] == bond


def test_ring_closure_symbol_is_the_bond_token():
    assert parse_smiles("C=1CC1").bond_symbols == ["-", "-", "="]
    assert parse_smiles("C/1CC\\1").bond_symbols[-1] == "\\"
    assert parse_smiles("c1ccccc1").bond_symbols == [":"] * 6


def test_bracket_atom_fields():
    p = parse_smiles("[13CH3:7][C@@H]([O-])[NH3+].[Fe+2].[se]1cccc1.*[*]C[#6]")
    a = p.atoms
    assert (a[0].symbol, a[0].element, a[0].isotope, a[0].hcount, a[0].atom_class, a[0].bracket) == (
        "[13CH3:7]",
        "C",
        13,
        3,
        7,
        True,
    )
    assert (a[1].chirality, a[1].hcount) == ("@@", 1)
    assert a[2].charge == -1 and a[3].charge == 1 and a[3].hcount == 3
    assert a[4].element == "Fe" and a[4].charge == 2
    assert a[5].element == "Se" and a[5].aromatic
    assert [x.element for x in a[-4:]] == ["*", "*", "C", "C"]
    assert a[-1].symbol == "[#6]"
    organic = parse_smiles("Cl").atoms[0]
    assert organic.hcount is None and organic.isotope is None and not organic.bracket
    assert parse_smiles("[C@TH2H](F)(Cl)Br").atoms[0].chirality == "@TH2"
    assert parse_smiles("[Co@OH25]").atoms[0].chirality == "@OH25"
    assert parse_smiles("[C--]").atoms[0].charge == -2 and parse_smiles("[C++]").atoms[0].charge == 2
    assert parse_smiles("[Cu+15]").atoms[0].charge == 15


def test_atom_spans_point_into_the_string():
    s = "C[C@H](Cl)c1ccccc1Br"
    p = parse_smiles(s)
    assert [s[a.span[0] : a.span[1]] for a in p.atoms] == p.atom_symbols
    assert p.atom_starts[:3] == [0, 1, 7]


def test_two_letter_elements_outside_brackets():
    assert parse_smiles("ClCBr").atom_symbols == ["Cl", "C", "Br"]
    assert parse_smiles("Sc1ccccc1").atom_symbols[:2] == ["S", "c"]  # not scandium outside brackets


def test_fragments_and_dots_inside_branches():
    p = parse_smiles("C(C.C)C")
    assert p.bonds == rdkit_bonds("C(C.C)C") == [(0, 1, "SINGLE"), (0, 3, "SINGLE")]


def test_cis_trans_bonds():
    p = parse_smiles("F/C=C\\F")
    assert p.bond_symbols == ["/", "=", "\\"]
    assert p.bonds == rdkit_bonds("F/C=C\\F")


# ------------------------------------------------------------------------------------ explicit hydrogens


def test_hydrogen_rule():
    methane = parse_smiles("[H]C([H])([H])[H]")
    assert methane.atom_symbols == ["C"] and methane.bonds == [] and methane.atoms[0].folded_hydrogens == 4
    assert methane.has_folded_hydrogens and parse_smiles("[2H]C").has_folded_hydrogens
    assert not parse_smiles("CC").has_folded_hydrogens and not parse_smiles("[H][H]").has_folded_hydrogens
    assert parse_smiles("[2H]C").atom_symbols == ["C"]  # isotopes are folded too
    assert parse_smiles("C[2H]").atoms[0].span == (0, 1)
    h2 = parse_smiles("[H][H]")  # all-hydrogen molecule: kept
    assert h2.atom_symbols == ["[H]", "[H]"] and h2.bonds == [(0, 1, "SINGLE")]
    assert parse_smiles("[H+]").atom_symbols == ["[H+]"]  # lone proton: kept
    assert parse_smiles("[CH4]").atoms[0].hcount == 4 and parse_smiles("[CH4]").num_atoms == 1
    bridged = parse_smiles("[BH2]1[H][BH2][H]1")  # bridging hydrogens (degree 2): kept
    assert bridged.num_atoms == 4
    mixed = parse_smiles("[H]C.[H][H]")
    assert mixed.atom_symbols == ["C", "[H]", "[H]"] and mixed.bonds == [(1, 2, "SINGLE")]
    # removal keeps the order of the other atoms and renumbers bonds
    p = parse_smiles("C([H])1CC1")
    assert p.atom_symbols == ["C", "C", "C"] and p.bonds == [(0, 1, "SINGLE"), (1, 2, "SINGLE"), (2, 0, "SINGLE")]
    raw = parse_smiles("C([H])1CC1", fold_hydrogens=False)
    assert raw.num_atoms == 4 and raw.bonds == rdkit_bonds("C([H])1CC1")


@pytest.mark.parametrize(
    "smiles",
    [
        "[H]C([H])([H])[H]",
        "[2H]C",
        "[H][H]",
        "[H+]",
        "[2H][H]",
        "[H]C.[H][H]",
        "[BH2]1[H][BH2][H]1",
        "F/C=C/[H]",
        "[H]c1ccccc1",
        "[H][C@@](F)(Cl)Br",
    ],
)
def test_hydrogen_rule_matches_configured_rdkit_remove_hs(smiles):
    assert parity.compare(smiles) is None


# ------------------------------------------------------------------------------------------------ parity


def test_parity_with_rdkit_on_committed_sample():
    with open(SAMPLE) as f:
        sample = [line.strip() for line in f if line.strip()]
    assert len(sample) >= 2500
    assert sum("[" in s for s in sample) > 300 and sum("%" in s for s in sample) > 50
    assert sum("@" in s for s in sample) > 100 and sum("/" in s or "\\" in s for s in sample) > 30
    report = parity.run({"sample": sample})["sample"]
    assert report["mismatches"] == 0, report


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "smiles, position, reason",
    [
        ("", 0, "empty input"),
        ("C1CC", 1, "unclosed ring"),
        ("C(C", 1, "'(' is never closed"),
        ("CC)C", 2, "')' without a matching '('"),
        ("C[Xx]C", 2, "unknown element"),
        ("CXC", 1, "unknown element 'X'"),
        ("[C+++]", 4, "bad charge"),
        ("[C+16]", 2, "bad charge"),
        ("=CC", 0, "at the start"),
        ("CC=", 2, "at the end"),
        ("C(=)C", 3, "dangling bond '=' before ')'"),
        ("C=.C", 2, "dangling bond '=' before '.'"),
        ("C11", 2, "to itself"),
        ("C1C1", 3, "duplicates the bond"),
        ("C12CC12", 6, "duplicates the bond"),
        ("C=1CC-1", 6, "conflicting bond symbols"),
        ("C()C", 2, "empty branch"),
        ("(C)C", 0, "without a preceding atom"),
        ("C.", 1, "'.' at the end"),
        (".C", 0, "'.' without a preceding atom"),
        ("C..C", 2, "'.' without a preceding atom"),
        ("C==C", 2, "two bond symbols"),
        ("C[CH", 1, "unclosed bracket atom"),
        ("C]", 1, "']' without"),
        ("C%1C", 1, "'%' must be followed"),
        ("1CC", 0, "without a preceding atom"),
        ("C(1)C", 2, "without a preceding atom"),
        ("C[C@X]", 4, "bad chirality"),
        ("C[C:]", 3, "atom class without a number"),
        ("[]", 1, "no element symbol"),
        ("C C", 1, "whitespace ' '"),
        ("CCO\x00", 3, "control character"),
        ("c1ccccc1\U0001f600", 8, "non-ASCII character"),
        ("\ufeffCCO", 0, "byte order mark"),
        ("[\u0661\u0663C]", 1, "non-ASCII character"),  # Arabic-Indic digits are not isotope 13
        ("C%\u0661\u0662CC%12", 2, "non-ASCII character"),
        ("[\u00b9\u00b3C]", 1, "non-ASCII character"),  # superscript digits
        ("[1234567890C]", 1, "more than 9 digits"),
        ("C%(1234567890)CC%(1234567890)", 1, "more than 9 digits"),
        ("C->1CC->1", 8, "conflicting bond symbols"),
        ("C-1CC->1", 7, "conflicting bond symbols"),
        ("C<>C", 1, "unexpected character '<'"),
        ("C.=C", 2, "right after '.'"),
        ("C(", 1, "unclosed branch"),
    ],
)
def test_errors_name_smiles_position_and_reason(smiles, position, reason):
    with pytest.raises(SmilesParseError) as info:
        parse_smiles(smiles)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.smiles == smiles and err.position == position and reason in err.reason
    assert repr(smiles) in str(err) and f"position {position}" in str(err)


def test_error_message_truncates_huge_smiles():
    smiles = "C" * 100_000 + "X" + "C" * 100_000
    with pytest.raises(SmilesParseError) as info:
        parse_smiles(smiles)
    assert info.value.position == 100_000
    assert len(str(info.value)) < 300 and "X" in str(info.value) and "length 200001" in str(info.value)


def test_non_string_input_is_a_type_error():
    with pytest.raises(TypeError):
        parse_smiles(None)


def test_error_pickles():
    import pickle

    err = pickle.loads(pickle.dumps(SmilesParseError("C1", 1, "unclosed ring")))
    assert (err.smiles, err.position, err.reason) == ("C1", 1, "unclosed ring")


# --------------------------------------------------------------------------------------- robustness/speed


def test_deep_nesting_and_megabyte_strings_are_linear():
    depth = 20_000
    nested = "C" + "(C" * depth + ")" * depth
    start = time.perf_counter()
    p = parse_smiles(nested)
    assert p.num_atoms == depth + 1 and p.bonds[-1] == (depth - 1, depth, "SINGLE")
    chain = "c1ccccc1" * 125_000  # 1 MB of aromatic rings, each ring number reused
    p = parse_smiles(chain)
    assert p.num_atoms == 750_000 and p.num_bonds == 750_000 - 1 + 125_000
    with pytest.raises(SmilesParseError):
        parse_smiles("C(" * 300_000)
    with pytest.raises(SmilesParseError):
        parse_smiles("[C:1]" * 100_000 + "[Zz]")
    assert time.perf_counter() - start < 30


def test_many_distinct_bracket_atoms_are_not_quadratic():
    smiles = "".join(f"[C:{i}]" for i in range(1, 50_001))
    start = time.perf_counter()
    assert parse_smiles(smiles).num_atoms == 50_000
    assert time.perf_counter() - start < 10
