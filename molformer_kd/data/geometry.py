"""Map 3D coordinates whose atom order differs from the SMILES (QM9 XYZ with hydrogens, SDF) onto SMILES tokens.

The mapping is a graph match. The 3D record's connectivity (from interatomic distances and covalent radii, or
given bonds) is reduced to its heavy atoms, each labelled with (element, number of attached hydrogens); it must
contain the SMILES heavy-atom graph with the same labels on the same atoms (a substructure match covering every
atom; bond orders are ignored). Extra record bonds are allowed because strained cages put non-bonded atoms within
bonding distance (bicyclo[1.1.1]pentane bridgeheads sit 1.87 A apart). When symmetry or such contacts leave
several matches, the one whose short distances sit on the high-order bonds wins (it minimises
sum(bond order * length)), so SMILES bonds land on real bonds and a C=C of the SMILES lands on the short bond.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from rdkit import Chem

from .molecules import mol_from_smiles, token_atom_indices

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "BOND_TOLERANCE",
    "AtomMappingError",
    "infer_bonds",
    "map_mol_positions_to_smiles",
    "map_positions_to_smiles",
    "match_atoms_to_smiles",
]

# Angstrom added to the sum of covalent radii below which two atoms count as bonded: covers stretched
# strained-ring bonds (~1.6-1.7 A for C-C) and stays below most 1-3 contacts (~2.2-2.5 A).
BOND_TOLERANCE = 0.4
_MAX_MATCHES = 100_000
_PERIODIC_TABLE = Chem.GetPeriodicTable()


class AtomMappingError(ValueError):
    """The 3D record and the SMILES do not describe the same heavy-atom graph."""


def _atomic_numbers(elements: Sequence) -> np.ndarray:
    return np.array(
        [
            element if isinstance(element, (int, np.integer)) else _PERIODIC_TABLE.GetAtomicNumber(str(element))
            for element in elements
        ],
        dtype=np.int64,
    )


def infer_bonds(elements: Sequence, coords: ArrayLike, tolerance: float = BOND_TOLERANCE) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, closer than r_cov(i) + r_cov(j) + tolerance; each H keeps only its nearest partner.

    Hydrogens bond once: a bridging H (or an H near two heavy atoms in a strained cage) would otherwise give the
    heavy-atom graph a wrong H count.
    """
    numbers = _atomic_numbers(elements)
    xyz = np.asarray(coords, dtype=np.float64).reshape(len(numbers), 3)
    radii = np.array([_PERIODIC_TABLE.GetRcovalent(int(z)) for z in numbers])
    distances = np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)
    bonded = distances < radii[:, None] + radii[None, :] + tolerance
    np.fill_diagonal(bonded, False)
    is_hydrogen = numbers == 1
    for h in np.flatnonzero(is_hydrogen):
        partners = np.flatnonzero(bonded[h])
        if len(partners) > 1:
            keep = partners[np.argmin(distances[h, partners])]
            bonded[h, :] = False
            bonded[:, h] = False
            bonded[h, keep] = bonded[keep, h] = True
    i, j = np.nonzero(np.triu(bonded))
    return list(zip(i.tolist(), j.tolist()))


def _labelled_graph(numbers: Sequence[int], hydrogens: Sequence[int], bonds: Sequence[tuple[int, int]]) -> Chem.Mol:
    """A bare RDKit graph: element as atomic number, H count + 1 as isotope (0 would mean 'any'), single bonds."""
    graph = Chem.RWMol()
    for z, n_h in zip(numbers, hydrogens):
        atom = Chem.Atom(int(z))
        atom.SetIsotope(int(n_h) + 1)
        atom.SetNoImplicit(True)
        graph.AddAtom(atom)
    for i, j in bonds:
        graph.AddBond(int(i), int(j), Chem.BondType.SINGLE)
    return graph.GetMol()


def match_atoms_to_smiles(
    smiles: str,
    elements: Sequence,
    coords: ArrayLike,
    bonds: Sequence[tuple[int, int]] | None = None,
    implicit_hydrogens: Sequence[int] | None = None,
) -> list[int]:
    """For each SMILES token atom j, the index of the same atom in the 3D record (``elements``/``coords``).

    ``bonds``: the record's bonds as (i, j) pairs; inferred from distances when None. ``implicit_hydrogens``: per
    record atom, hydrogens attached but not present as atoms (records without explicit H, e.g. PCQM4Mv2's SDF).
    Raises AtomMappingError with the reason when the graphs differ (e.g. a QM9 geometry that relaxed into another
    constitution).
    """
    mol = mol_from_smiles(smiles)
    tokens = token_atom_indices(mol)
    token_position = {atom: position for position, atom in enumerate(tokens)}
    numbers = _atomic_numbers(elements)
    if bonds is None:
        bonds = infer_bonds(numbers, coords)
    hydrogen_only = bool(np.all(numbers == 1))
    record_tokens = list(range(len(numbers))) if hydrogen_only else np.flatnonzero(numbers != 1).tolist()
    record_position = {atom: position for position, atom in enumerate(record_tokens)}
    if len(record_tokens) != len(tokens):
        raise AtomMappingError(
            f"SMILES {smiles!r} has {len(tokens)} heavy atoms, the 3D record has {len(record_tokens)}"
        )

    record_h = [0 if implicit_hydrogens is None else int(implicit_hydrogens[atom]) for atom in record_tokens]
    record_bonds = []
    for i, j in bonds:
        if i in record_position and j in record_position:
            record_bonds.append((record_position[i], record_position[j]))
        elif i in record_position:
            record_h[record_position[i]] += 1
        elif j in record_position:
            record_h[record_position[j]] += 1

    smiles_h = [0 if hydrogen_only else mol.GetAtomWithIdx(a).GetTotalNumHs(includeNeighbors=True) for a in tokens]
    smiles_bonds, smiles_orders = [], []
    for bond in mol.GetBonds():
        begin, end = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if begin in token_position and end in token_position:
            smiles_bonds.append((token_position[begin], token_position[end]))
            smiles_orders.append(bond.GetBondTypeAsDouble())
    if len(record_bonds) < len(smiles_bonds):
        raise AtomMappingError(
            f"SMILES {smiles!r} has {len(smiles_bonds)} heavy-atom bonds, the 3D record only {len(record_bonds)}"
        )
    if sorted(record_h) != sorted(smiles_h):
        raise AtomMappingError(f"SMILES {smiles!r}: hydrogen counts per heavy atom differ from the 3D record")

    smiles_numbers = [mol.GetAtomWithIdx(a).GetAtomicNum() for a in tokens]
    query = _labelled_graph(smiles_numbers, smiles_h, smiles_bonds)
    target = _labelled_graph(numbers[record_tokens], record_h, record_bonds)
    matches = target.GetSubstructMatches(query, uniquify=False, useChirality=False, maxMatches=_MAX_MATCHES)
    if not matches:
        raise AtomMappingError(f"SMILES {smiles!r}: no element/topology match onto the 3D record's heavy atoms")

    xyz = np.asarray(coords, dtype=np.float64).reshape(len(numbers), 3)[record_tokens]
    begin = np.array([b for b, _ in smiles_bonds], dtype=np.int64)
    end = np.array([e for _, e in smiles_bonds], dtype=np.int64)
    orders = np.array(smiles_orders)
    best, best_score = None, np.inf
    for match in matches:
        placed = xyz[list(match)]
        score = float(np.sum(orders * np.linalg.norm(placed[begin] - placed[end], axis=-1))) if len(orders) else 0.0
        if score < best_score - 1e-9:
            best, best_score = match, score
    return [record_tokens[i] for i in best]


def map_positions_to_smiles(
    smiles: str,
    elements: Sequence,
    coords: ArrayLike,
    bonds: Sequence[tuple[int, int]] | None = None,
    implicit_hydrogens: Sequence[int] | None = None,
) -> np.ndarray:
    """Coordinates (N_tokens, 3) of the SMILES token atoms in SMILES order, taken from a 3D record in any order."""
    order = match_atoms_to_smiles(smiles, elements, coords, bonds, implicit_hydrogens)
    xyz = np.asarray(coords, dtype=np.float64).reshape(len(elements), 3)
    return xyz[order]


def map_mol_positions_to_smiles(smiles: str, mol: Chem.Mol, conf_id: int = -1) -> np.ndarray:
    """Coordinates of an RDKit 3D molecule (any atom order, with or without H atoms) in the SMILES token order.

    The molecule's own bonds are used (no distance guessing); its implicit hydrogens count toward the H labels.
    """
    elements = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
    bonds = [(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()) for bond in mol.GetBonds()]
    implicit = [atom.GetTotalNumHs(includeNeighbors=False) for atom in mol.GetAtoms()]
    coords = mol.GetConformer(conf_id).GetPositions()
    return map_positions_to_smiles(smiles, elements, coords, bonds, implicit)
