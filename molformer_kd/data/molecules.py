"""The atom rule shared by every loader: which RDKit atoms of a SMILES are tokens, and in which order.

DESIGN.md: tokens are the heavy atoms of ``Chem.MolFromSmiles(smiles)`` in RDKit's atom order (= order of
appearance in the SMILES). Hydrogens written as atoms (``[H]``, ``[2H]``) are folded into their neighbour and are
not tokens, except in a molecule made only of hydrogens (``[H][H]``), whose H atoms are kept.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem, rdBase

__all__ = [
    "heavy_atom_indices",
    "mol_from_smiles",
    "smiles_and_positions_from_mol",
    "smiles_problem",
    "without_hydrogen_atoms",
]


def heavy_atom_indices(mol: Chem.Mol) -> list[int]:
    """Indices (RDKit order) of the atoms that are tokens: every non-hydrogen, or all atoms of an H-only molecule."""
    heavy = [atom.GetIdx() for atom in mol.GetAtoms() if atom.GetAtomicNum() != 1]
    if not heavy:
        return list(range(mol.GetNumAtoms()))
    return heavy


def smiles_problem(smiles) -> str | None:
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
    tokens = heavy_atom_indices(reparsed)
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
