"""The atom rule shared by every loader and the featurizer: which RDKit atoms of a SMILES are tokens, in which order.

DESIGN.md: tokens are the atoms of ``Chem.MolFromSmiles(smiles)`` in RDKit's atom order (= order of appearance in the
SMILES), except hydrogens that are folded: a hydrogen written as an atom (``[H]``, ``[2H]``, charged, mapped,
stereo-defining) with exactly one bond, to a non-hydrogen atom, goes into that neighbour's H count. Every other
hydrogen stays an atom (unbonded ``[H+]``, H-H bonded ``[H][H]``, bridging H). ``tokenization.parse_smiles`` applies
the same rule without RDKit; tests check the two agree.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem, rdBase

__all__ = [
    "apply_atom_rule",
    "mol_from_smiles",
    "smiles_and_positions_from_mol",
    "smiles_problem",
    "token_atom_indices",
    "without_hydrogen_atoms",
]


def _is_folded_hydrogen(atom: Chem.Atom) -> bool:
    if atom.GetAtomicNum() != 1 or atom.GetDegree() != 1:
        return False
    return atom.GetNeighbors()[0].GetAtomicNum() != 1


def token_atom_indices(mol: Chem.Mol) -> list[int]:
    """Indices (RDKit order) of the atoms that are tokens under the atom rule (folded hydrogens left out)."""
    return [atom.GetIdx() for atom in mol.GetAtoms() if not _is_folded_hydrogen(atom)]


def _fold_hydrogens_parameters() -> Chem.RemoveHsParameters:
    # RemoveHs configured to fold exactly the hydrogens `_is_folded_hydrogen` names, whatever RDKit would normally
    # keep (isotopes, charged, mapped, stereo-defining H; RDKit moves the bond stereo onto a heavy neighbour), and to
    # keep unbonded, bridging and H-H bonded hydrogens.
    params = Chem.RemoveHsParameters()
    for flag in (
        "removeIsotopes",
        "removeHydrides",
        "removeMapped",
        "removeDummyNeighbors",
        "removeDefiningBondStereo",
        "removeWithWedgedBond",
        "removeNontetrahedralNeighbors",
        "removeWithQuery",
        "removeInSGroups",
        "removeNonimplicit",
    ):
        setattr(params, flag, True)
    for flag in ("removeDegreeZero", "removeHigherDegrees", "removeOnlyHNeighbors", "showWarnings"):
        setattr(params, flag, False)
    return params


_FOLD_HYDROGENS = _fold_hydrogens_parameters()


def apply_atom_rule(mol: Chem.Mol, name: str | None = None) -> Chem.Mol:
    """Return `mol` with its folded hydrogens moved into their neighbour's H count (a new Mol, or `mol` itself when
    nothing folds). The kept atoms keep their relative order and conformers follow; atom j of the result is
    `token_atom_indices(mol)[j]`."""
    num_atoms = mol.GetNumAtoms()
    if num_atoms == 0:
        raise ValueError(f"molecule {name or repr(Chem.MolToSmiles(mol))} has no atoms")
    if mol.GetNumHeavyAtoms() == num_atoms:  # fast path: no hydrogen atoms (RDKit counts atomic number > 1)
        return mol
    return Chem.RemoveHs(mol, _FOLD_HYDROGENS)


def smiles_problem(smiles: object) -> str | None:
    """Why ``smiles`` is not a usable molecule (a readable sentence), or None when RDKit parses and sanitizes it."""
    if smiles is None or (isinstance(smiles, float) and np.isnan(smiles)):
        return "empty SMILES"
    if not isinstance(smiles, str):
        return f"SMILES is not a string ({type(smiles).__name__})"
    if not smiles.strip():
        return "empty SMILES"
    with rdBase.BlockLogs():
        raw = Chem.MolFromSmiles(smiles, sanitize=False)
        if raw is None:
            return "SMILES syntax error"
        problems = Chem.DetectChemistryProblems(raw)
    if problems:
        return "; ".join(problem.Message() for problem in problems)
    if raw.GetNumAtoms() == 0:
        return "SMILES has no atoms"
    return None


def mol_from_smiles(smiles: str) -> Chem.Mol:
    """RDKit molecule of a valid SMILES; raises ValueError naming the SMILES and the reason otherwise."""
    problem = smiles_problem(smiles)
    if problem is not None:
        raise ValueError(f"invalid SMILES {smiles!r}: {problem}")
    with rdBase.BlockLogs():
        return Chem.MolFromSmiles(smiles)


def without_hydrogen_atoms(mol: Chem.Mol) -> Chem.Mol:
    """``mol`` with every H atom removed (isotopic ones included) unless the molecule is only hydrogens.

    Removing all H atoms (not only the ones RDKit's default RemoveHs drops) makes the canonical SMILES free of
    ``[H]``/``[2H]`` atoms, so its RDKit atoms are exactly its tokens. Conformer coordinates of the kept atoms are
    carried over by RDKit.
    """
    if all(atom.GetAtomicNum() == 1 for atom in mol.GetAtoms()):
        return Chem.Mol(mol)
    with rdBase.BlockLogs():
        return Chem.RemoveAllHs(mol)


def smiles_and_positions_from_mol(mol: Chem.Mol, conf_id: int = -1) -> tuple[str, np.ndarray]:
    """Canonical SMILES of a 3D molecule and its token coordinates (N, 3) in that SMILES' atom order.

    ``MolToSmiles`` records the order in which it wrote the atoms (``_smilesAtomOutputOrder``); the atoms of
    ``MolFromSmiles(smiles)`` come in exactly that order, so the conformer rows are permuted the same way.
    """
    if mol.GetNumConformers() == 0:
        raise ValueError("molecule has no conformer")
    stripped = without_hydrogen_atoms(mol)
    smiles = Chem.MolToSmiles(stripped)
    order = list(stripped.GetProp("_smilesAtomOutputOrder", autoConvert=True))
    coords = stripped.GetConformer(conf_id).GetPositions()
    reparsed = mol_from_smiles(smiles)
    tokens = token_atom_indices(reparsed)
    if len(tokens) != len(order):
        raise ValueError(f"SMILES {smiles!r} has {len(tokens)} token atoms but the molecule has {len(order)}")
    for token_position, (token_atom, source_atom) in enumerate(zip(tokens, order)):
        written = reparsed.GetAtomWithIdx(token_atom).GetAtomicNum()
        source = stripped.GetAtomWithIdx(source_atom).GetAtomicNum()
        if written != source:
            raise ValueError(
                f"atom {token_position} of SMILES {smiles!r} is element {written}, but the written atom is {source}"
            )
    return smiles, np.asarray(coords[order], dtype=np.float64)
