"""Graph featurization of molecules: OGB atom/bond features, Graphormer spatial and multi-hop edge encodings.

One molecule becomes a dict of unpadded numpy arrays (see `MoleculeFeaturizer.featurize`); `pad_graph_features`
(used by `GraphCollator` in collators.py) pads a list of them into the graph batch of DESIGN.md.
`MoleculeFeaturizer.featurize_many` (also behind `featurizer(list)`) is the fast path: it featurizes a chunk of
molecules with one set of numpy operations. Every categorical value is stored as `value + 1` so that 0 always means
padding / "no bond".

Atom rule (docs/methods.md), shared with the SMILES parser (`smiles_grammar`): the atoms are the atoms of
the SMILES in order of appearance, except that a hydrogen written as an atom (`[H]`, `[2H]`, `[H+]`, any isotope,
charge or class) with exactly one bond, to a non-hydrogen atom, is folded into that neighbour's hydrogen count.
Every other hydrogen atom stays an atom: a lone proton (`[H+].[Cl-]` has two atoms), both atoms of `[H][H]`,
bridging hydrogens of degree 2. So drug-like SMILES give exactly their heavy atoms in SMILES order.

SMILES enter through the front door of `validation.check_smiles` (grammar, `max_atoms`, RDKit sanitization), so the
featurizer accepts exactly the strings the SMILES tokenizers accept. Shortest paths come from a breadth-first search
on the sparse bond graph (`chunk_distances`), quadratic in the atom count like the output itself; the atom limit,
checked before any of it, bounds both (the search itself lives in `shortest_paths.py`).

Why one long module: the featurizer's per-molecule and vectorised chunk paths share the OGB vocabularies and the
lookup tables built from them at import, and reading them side by side is how their equality is kept.
"""

from __future__ import annotations

import copy
import itertools
import operator
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch
from rdkit import Chem, rdBase
from rdkit.Chem import rdchem
from transformers import AutoFeatureExtractor, BatchFeature, FeatureExtractionMixin
from transformers.utils import FEATURE_EXTRACTOR_NAME

from ..data.domain import MoleculeProfile
from ..data.molecules import apply_atom_rule
from ..data.pretrained import resolve_pretrained_name
from .shortest_paths import (
    UNREACHABLE,
    chunk_distances,
    chunk_shortest_path_bond_ids,
    take_rows,
)
from .smiles_grammar import ParsedSmiles, shorten_smiles
from .validation import DEFAULT_MAX_ATOMS, MAX_ATOMS_CEILING, Setting, check_settings, check_smiles

if TYPE_CHECKING:
    import os

    from transformers import PretrainedConfig

# OGB (ogb.utils.features) allowable feature lists, in OGB's order. The last entry of each list is the "misc"
# bucket that every value outside the list falls into; chirality and bond stereo have no "misc" in OGB, so values
# RDKit added since OGB (e.g. CHI_SQUAREPLANAR, STEREOATROPCW) fall into their last entry.
OGB_ATOMIC_NUM = list(range(1, 119)) + ["misc"]
OGB_CHIRALITY = ["CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW", "CHI_OTHER", "misc"]
OGB_DEGREE = list(range(11)) + ["misc"]
OGB_FORMAL_CHARGE = list(range(-5, 6)) + ["misc"]
OGB_NUM_HS = list(range(9)) + ["misc"]
OGB_NUM_RADICAL_ELECTRONS = list(range(5)) + ["misc"]
OGB_HYBRIDIZATION = ["SP", "SP2", "SP3", "SP3D", "SP3D2", "misc"]
OGB_IS_AROMATIC = [False, True]
OGB_IS_IN_RING = [False, True]
OGB_BOND_TYPE = ["SINGLE", "DOUBLE", "TRIPLE", "AROMATIC", "misc"]
OGB_BOND_STEREO = ["STEREONONE", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS", "STEREOANY"]
OGB_IS_CONJUGATED = [False, True]

ATOM_FEATURE_DIMS = [
    len(OGB_ATOMIC_NUM),
    len(OGB_CHIRALITY),
    len(OGB_DEGREE),
    len(OGB_FORMAL_CHARGE),
    len(OGB_NUM_HS),
    len(OGB_NUM_RADICAL_ELECTRONS),
    len(OGB_HYBRIDIZATION),
    len(OGB_IS_AROMATIC),
    len(OGB_IS_IN_RING),
]  # [119, 5, 12, 12, 10, 6, 6, 2, 2]
BOND_FEATURE_DIMS = [len(OGB_BOND_TYPE), len(OGB_BOND_STEREO), len(OGB_IS_CONJUGATED)]  # [5, 6, 2]
ATOM_FEATURE_NAMES = (
    "atomic_num",
    "chirality",
    "degree",
    "formal_charge",
    "num_hs",
    "num_radical_electrons",
    "hybridization",
    "is_aromatic",
    "is_in_ring",
)
BOND_FEATURE_NAMES = ("bond_type", "bond_stereo", "is_conjugated")

# Keys of one featurized molecule that hold integer graph features (everything but `pos`).
GRAPH_FEATURE_KEYS = (
    "input_nodes",
    "edge_index",
    "edge_attr",
    "degree",
    "spatial_pos",
    "attn_edge_type",
    "edge_input",
)
# The Graphormer encodings: the (N, N, ...) atom-pair arrays built from shortest paths. Only Graphormers read them;
# a featurizer with `graph_encodings=False` (GIN students) neither computes nor returns them.
GRAPH_ENCODING_KEYS = ("spatial_pos", "attn_edge_type", "edge_input")
# Failures of one molecule while it is read and checked (`featurize_many(..., errors="return")`); anything else is
# a bug and propagates.
MOLECULE_FAILURES = (ValueError, KeyError, IndexError, TypeError, RuntimeError)


# Feature values are turned into OGB index + 1 by one lookup in a table per feature: entry `v + offset` holds the
# index + 1 of raw value v (an integer, or an RDKit enum's integer value). Values outside the table are clipped to
# its first or last entry, which are "misc" for every feature that can take such values.
_LOOKUP_WIDTH = 256


def _listed_index(allowed: list) -> callable:
    return lambda value: allowed.index(value) if value in allowed[:-1] else len(allowed) - 1


def _enum_index(enum_type: Any, allowed: list) -> callable:
    names = {value: member.name for value, member in enum_type.values.items()}
    return lambda value: allowed.index(names[value]) if names.get(value) in allowed else len(allowed) - 1


def _lookup_tables(index_functions: list, offsets: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat concatenated lookup tables, and per-feature (shift, low, high) to index them from raw values."""
    tables = [
        [index_of(position - offset) + 1 for position in range(_LOOKUP_WIDTH)]
        for index_of, offset in zip(index_functions, offsets)
    ]
    start = np.arange(len(tables), dtype=np.int64)[:, None] * _LOOKUP_WIDTH
    shift = start + np.array(offsets, dtype=np.int64)[:, None]
    return np.array(tables, dtype=np.int64).ravel(), shift, start, start + _LOOKUP_WIDTH - 1


_ATOM_LOOKUP, _ATOM_SHIFT, _ATOM_LOW, _ATOM_HIGH = _lookup_tables(
    [
        _listed_index(OGB_ATOMIC_NUM),
        _enum_index(rdchem.ChiralType, OGB_CHIRALITY),
        _listed_index(OGB_DEGREE),
        _listed_index(OGB_FORMAL_CHARGE),
        _listed_index(OGB_NUM_HS),
        _listed_index(OGB_NUM_RADICAL_ELECTRONS),
        _enum_index(rdchem.HybridizationType, OGB_HYBRIDIZATION),
        _listed_index(OGB_IS_AROMATIC + ["unused"]),
        _listed_index(OGB_IS_IN_RING + ["unused"]),
    ],
    offsets=[0, 0, 0, _LOOKUP_WIDTH // 2, 0, 0, 0, 0, 0],
)
# Bond types are looked up by twice their bond order (`Bond.GetBondTypeAsDouble`, also what RDKit's bond-order
# adjacency matrix holds): SINGLE 2, AROMATIC 3, DOUBLE 4, TRIPLE 6; every other type falls into "misc". Bonds read
# through the type enum (see `_READ_ALL`) get the order of their OGB type, or 0.0 ("misc") for the other types,
# whose orders collide with these (dative 1.0, ONEANDAHALF 1.5) or are undefined (THREECENTER, ...).
_OGB_BOND_ORDER = {"SINGLE": 1.0, "DOUBLE": 2.0, "TRIPLE": 3.0, "AROMATIC": 1.5}
_ORDER_OF_BOND_TYPE = {member: _OGB_BOND_ORDER.get(member.name, 0.0) for member in rdchem.BondType.values.values()}
_AROMATIC_ORDER = _OGB_BOND_ORDER["AROMATIC"]
_BOND_LOOKUP, _BOND_SHIFT, _, _ = _lookup_tables(
    [
        _listed_index([int(2 * _OGB_BOND_ORDER[name]) for name in OGB_BOND_TYPE[:-1]] + ["misc"]),
        _enum_index(rdchem.BondStereo, OGB_BOND_STEREO),
        _listed_index(OGB_IS_CONJUGATED + ["unused"]),
    ],
    offsets=[0, 0, 0],
)


# Per-atom reads, in OGB order without the atomic number (read first: it decides how the bonds are read), chirality
# and radicals (read only where they can be set, see `_READ_ALL`) and degree (RDKit's total degree = H count +
# bonded heavy atoms, filled from the bonds and the H count).
_ATOM_GETTERS = (
    rdchem.Atom.GetFormalCharge,
    rdchem.Atom.GetTotalNumHs,
    rdchem.Atom.GetHybridization,
    rdchem.Atom.GetIsAromatic,
    rdchem.Atom.IsInRing,
)
_ATOM_ROWS = [3, 4, 6, 7, 8]  # rows of `_ATOM_GETTERS` in the (9, atoms) OGB feature matrix
_ATOMIC_NUM_ROW, _CHIRALITY_ROW, _DEGREE_ROW, _NUM_HS_ROW, _RADICAL_ROW = 0, 1, 2, 4, 5

# What a SMILES can set decides what must be read from RDKit. Python-level RDKit calls are the featurizer's cost:
# wrapping an atom costs about 1 us, a bond 2 us, a plain getter 0.3 us and an enum getter (chirality, bond type and
# stereo, hybridization) about 1 us. A SMILES sets a chiral tag only with `@`, a bond stereo only with `/` or `\`,
# a dative bond only with `->`/`<-`, and a bond of aromatic type outside an aromatic ring (not aromatic, maybe not
# conjugated: `[#6]:[#6]`) only with `:`; CXSMILES extensions (after `|`) can set all of them. A SMILES without these
# characters therefore has CHI_UNSPECIFIED atoms, STEREONONE bonds, bonds of the types their orders name and aromatic
# bonds exactly where the order is 1.5, and its bond list (begin, end, in RDKit's order) is the one the front door's
# parse already holds (`ParsedSmiles.bonds`, RDKit's order by construction, see smiles_grammar). Its bonds are taken
# from the parse, with their orders from RDKit's bond-order adjacency matrix (one call per molecule) and their
# conjugation from `_settle_conjugation`, which wraps only the few bonds that may be conjugated. Everything else
# (and every RDKit molecule passed in) is read property by property, through the enums. Likewise RDKit gives
# radical electrons only to atoms without implicit hydrogens, which a SMILES writes in brackets: radicals are read
# only for SMILES with `[`.
# A test checks that these shortcuts give the same arrays as reading everything.
_READ_ALL = re.compile(r"[@/\\<>|:]")
# Sanitization keeps the bonds of a SMILES as written (it changes their types, never their atoms or order) except at
# metals, where it can replace a bond by a dative one pointing the other way (`cleanupOrganometallics`:
# `[Fe]N(C)(C)C` gets the bond N->Fe). Only molecules made of hydrogen and organic-subset elements take their bonds
# from the parse; the others are read bond by bond.
_PARSED_BOND_ELEMENTS = frozenset([1, 5, 6, 7, 8, 9, 15, 16, 17, 35, 53])  # H B C N O F P S Cl Br I

# `featurize_many` works on chunks of molecules with about this many atom pairs in all (64 drug-like molecules):
# large enough to amortize the numpy calls, small enough to keep the (bonds x atoms) next-hop table in cache and
# bound the memory that large molecules take.
_CHUNK_PAIRS = 32_768


def _describe(source: Any) -> str:
    """Name of a molecule for error messages: its SMILES, cut to a window when long (and mol_id for records)."""
    if isinstance(source, Mapping):
        name = shorten_smiles(source.get("smiles"))
        if source.get("mol_id") is not None:
            name += f" (mol_id {source['mol_id']!r})"
        return name
    if isinstance(source, Chem.Mol):
        return shorten_smiles(Chem.MolToSmiles(source))
    return shorten_smiles(source)


def smiles_to_mol(smiles: str, max_atoms: int | None = None) -> Chem.Mol:
    """The RDKit molecule of a SMILES after the atom rule, read through the front door (`validation.check_smiles`);
    raises `SmilesParseError` (a `ValueError`) naming the SMILES, the position and the reason if it is refused."""
    with rdBase.BlockLogs():  # the error reports failures; RDKit's own messages would be noise
        return check_smiles(smiles, max_atoms).mol


# A molecule ready for `_featurize_chunk`: the molecule after the atom rule, the parse of its SMILES when its bonds may
# be taken from it (else None: read every property from RDKit, see `_READ_ALL`), whether its radicals must be
# read, and its checked coordinates. RDKit's own log messages stay blocked around whole lists: entering
# `rdBase.BlockLogs` costs about as much as parsing a drug-like SMILES.
_Loaded = tuple[Chem.Mol, ParsedSmiles | None, bool, np.ndarray | None]


# Settings of a saved featurizer (preprocessor_config.json) and their bounds. `multi_hop_max_dist` and `max_spatial`
# size the model's embedding tables and the (N, N, H, 3) edge_input, so absurd values would exhaust memory.
FEATURIZER_SETTINGS = {
    "multi_hop_max_dist": Setting(int, 1, 64),
    "max_spatial": Setting(int, 1, 1024),
    "feature_scheme": Setting(str, choices=("ogb",)),
    "use_3d": Setting(bool),
    "max_atoms": Setting(int, 1, MAX_ATOMS_CEILING),
    "graph_encodings": Setting(bool),
}
# Keys transformers writes itself.
_FEATURIZER_FILE_KEYS = ("feature_extractor_type", "processor_class")
# edge_input of the largest allowed molecule, max_atoms^2 x multi_hop_max_dist x 3 int64, must fit in this.
_MAX_EDGE_INPUT_BYTES = 2 << 30


class MoleculeFeaturizer(FeatureExtractionMixin):
    r"""
    Turns SMILES (or RDKit molecules, or records `{"smiles", "pos", "mol_id"}`) into Graphormer/GIN graph features.

    Saved with `save_pretrained` as `preprocessor_config.json` next to every graph checkpoint and loaded back with
    `MoleculeFeaturizer.from_pretrained` or, once `molformer_kd` is imported, `AutoFeatureExtractor.from_pretrained`.

    Args:
        multi_hop_max_dist (`int`, defaults to 5):
            H, the number of bonds along each shortest path kept in `edge_input` (Graphormer's multi-hop edge
            encoding); pairs further apart keep their first H bonds.
        max_spatial (`int`, defaults to 20):
            Cap of the shortest-path distance in `spatial_pos`: a distance d is stored as `min(d, max_spatial) + 1`
            and unreachable pairs (different fragments) as `max_spatial + 2`, so a spatial-encoding table needs
            `max_spatial + 3` rows (row 0 = padding). 20 bonds is Graphormer's `spatial_pos_max` and leaves drug-like
            molecules uncapped (the largest diameter among 20,000 MOSES test molecules is 17 bonds).
        feature_scheme (`str`, defaults to `"ogb"`):
            Atom/bond feature scheme; `"ogb"` (the 9 atom and 3 bond features of `ogb.utils.features`) is the one
            implemented. The vocabulary sizes are `ATOM_FEATURE_DIMS` and `BOND_FEATURE_DIMS`.
        use_3d (`bool`, defaults to `False`):
            Whether the features carry heavy-atom coordinates `pos` (N, 3) for 3D teachers. When True every
            molecule needs coordinates (a record's `pos`, the `pos` argument, or an RDKit conformer); when False
            record coordinates are ignored so that 2D students never see them.
        max_atoms (`int`, defaults to `DEFAULT_MAX_ATOMS` = 512):
            Largest molecule (atoms after the atom rule) featurized; a larger one is a `MoleculeTooLargeError`
            raised before any quadratic work. At most `MAX_ATOMS_CEILING`.
        graph_encodings (`bool`, defaults to `True`):
            Whether to compute the Graphormer encodings `spatial_pos`, `attn_edge_type` and `edge_input` (shortest
            paths, quadratic in the atoms). A GIN reads none of them: `graph_encodings=False` skips the
            shortest-path search and leaves those keys out of the features and of the padded batch (97% of a
            drug-like batch's bytes). Featurizers saved before this setting existed load with True;
            the prediction pipeline of a GIN student turns it off whatever was saved (`without_graph_encodings`).

    Every setting is checked (type and bounds) when the featurizer is built or loaded; `from_pretrained` names the
    file and key of a bad or unknown setting.
    """

    model_input_names = (
        "input_nodes",
        "attention_mask",
        "in_degree",
        "out_degree",
        "spatial_pos",
        "attn_edge_type",
        "edge_input",
        "edge_index",
        "edge_attr",
        "pos",
    )

    def __init__(
        self,
        multi_hop_max_dist: int = 5,
        max_spatial: int = 20,
        feature_scheme: str = "ogb",
        use_3d: bool = False,
        max_atoms: int = DEFAULT_MAX_ATOMS,
        graph_encodings: bool = True,
        **kwargs,
    ) -> None:
        settings = {
            "multi_hop_max_dist": multi_hop_max_dist,
            "max_spatial": max_spatial,
            "feature_scheme": feature_scheme,
            "use_3d": use_3d,
            "max_atoms": max_atoms,
            "graph_encodings": graph_encodings,
        }
        check_settings({**settings, **kwargs}, FEATURIZER_SETTINGS, type(self).__name__, _FEATURIZER_FILE_KEYS)
        edge_input_bytes = max_atoms**2 * multi_hop_max_dist * 3 * 8
        if edge_input_bytes > _MAX_EDGE_INPUT_BYTES:
            raise ValueError(
                f"{type(self).__name__}: max_atoms={max_atoms} with multi_hop_max_dist={multi_hop_max_dist} gives "
                f"{edge_input_bytes / 2**30:.1f} GiB of edge_input per molecule (limit 2 GiB); lower either"
            )
        kwargs.pop("feature_extractor_type", None)  # written by to_dict, it names this class
        super().__init__(**kwargs)
        self.multi_hop_max_dist = int(multi_hop_max_dist)
        self.max_spatial = int(max_spatial)
        self.feature_scheme = feature_scheme
        self.use_3d = bool(use_3d)
        self.max_atoms = int(max_atoms)
        self.graph_encodings = bool(graph_encodings)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> MoleculeFeaturizer:
        """Load a saved featurizer (a folder, a Hub repo or a shipped student's name); a bad or unknown setting is a
        `ValueError` naming the file and the key."""
        pretrained_model_name_or_path = resolve_pretrained_name(pretrained_model_name_or_path)
        settings, unused = cls.get_feature_extractor_dict(pretrained_model_name_or_path, **kwargs)
        source = f"{pretrained_model_name_or_path}/{FEATURE_EXTRACTOR_NAME}"
        try:
            return cls.from_dict(settings, **unused)
        except ValueError as err:
            raise ValueError(str(err).replace(cls.__name__, source, 1)) from None

    @property
    def atom_feature_dims(self) -> list[int]:
        return list(ATOM_FEATURE_DIMS)

    @property
    def bond_feature_dims(self) -> list[int]:
        return list(BOND_FEATURE_DIMS)

    @property
    def num_spatial(self) -> int:
        """Rows a spatial-position embedding needs: pad, distances 0..max_spatial, unreachable."""
        return self.max_spatial + 3

    def without_3d(self) -> MoleculeFeaturizer:
        """A copy with the same settings and `use_3d=False` (the 2D student's featurizer)."""
        other = copy.deepcopy(self)
        other.use_3d = False
        return other

    def without_graph_encodings(self) -> MoleculeFeaturizer:
        """A copy with the same settings and `graph_encodings=False` (the GIN student's featurizer)."""
        other = copy.deepcopy(self)
        other.graph_encodings = False
        return other

    # ------------------------------------------------------------------------------------------------ one molecule

    def featurize(
        self, mol_or_smiles: str | Chem.Mol, pos: Sequence[Sequence[float]] | np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Features of one molecule as unpadded numpy arrays (N heavy atoms, E = 2 x bonds directed edges).

        Returns a dict with
            `input_nodes` (N, 9) int64: OGB atom features + 1;
            `edge_index` (2, E) int64: local atom indices, both directions of every bond (u->v then v->u);
            `edge_attr` (E, 3) int64: OGB bond features + 1 of each directed edge;
            `degree` (N,) int64: number of bonded heavy atoms + 1;
            `spatial_pos` (N, N) int64: `min(d, max_spatial) + 1`, `max_spatial + 2` if unreachable;
            `attn_edge_type` (N, N, 3) int64: bond features + 1 of the bond i-j, 0 where there is none;
            `edge_input` (N, N, H, 3) int64: bond features + 1 of the k-th bond of a shortest path i -> j for
                k < min(d, H), 0 beyond;
            (the last three only with `graph_encodings=True`, see `GRAPH_ENCODING_KEYS`)
            `pos` (N, 3) float32: coordinates, when given (or taken from the molecule's conformer with `use_3d`).

        `featurize_many` gives the same arrays for many molecules at once, several times faster.
        """
        with rdBase.BlockLogs():
            return self._featurize_chunk([self._load(mol_or_smiles, pos)])[0]

    def _load(self, source: str | Chem.Mol, pos: Any) -> _Loaded:
        """The molecule after the atom rule, what to read of it from RDKit (see `_READ_ALL`) and its checked
        coordinates (a `_Loaded`)."""
        if isinstance(source, Chem.Mol):
            mol = apply_atom_rule(source)
            if mol.GetNumAtoms() > self.max_atoms:
                raise ValueError(
                    f"molecule {_describe(source)} has {mol.GetNumAtoms()} atoms, more than the limit of "
                    f"{self.max_atoms} (the featurizer's max_atoms)"
                )
            parsed, read_radicals = None, True
            if pos is None and self.use_3d and mol.GetNumConformers() > 0:
                pos = mol.GetConformer().GetPositions()
        else:
            parsed, mol = check_smiles(source, self.max_atoms)
            if _READ_ALL.search(source) is not None:
                parsed = None
            read_radicals = "[" in source
        if pos is None:
            if self.use_3d:
                raise ValueError(
                    f"molecule {_describe(source)} has no 3D coordinates but the featurizer has use_3d=True"
                )
            return mol, parsed, read_radicals, None
        pos = np.asarray(pos, dtype=np.float32)
        num_atoms = mol.GetNumAtoms()
        if pos.shape != (num_atoms, 3):
            raise ValueError(
                f"molecule {_describe(source)}: pos has shape {pos.shape}, expected ({num_atoms}, 3) "
                "(one row per heavy atom in SMILES order)"
            )
        if not np.isfinite(pos).all():
            raise ValueError(f"molecule {_describe(source)}: pos contains NaN or infinite values")
        return mol, parsed, read_radicals, pos

    def _load_record(self, record: Mapping[str, Any] | str | Chem.Mol) -> _Loaded:
        if not isinstance(record, Mapping):
            return self._load(record, None)
        if "smiles" not in record:
            raise KeyError(f"record has no 'smiles' key (keys: {sorted(record)})")
        pos = record.get("pos") if self.use_3d else None
        if self.use_3d and pos is None:
            raise ValueError(
                f"row {_describe(record)} has no 'pos' but the featurizer has use_3d=True (3D teacher); "
                "generate conformers for it (molformer_kd.data) or drop the row"
            )
        try:
            return self._load(record["smiles"], pos)
        except ValueError as err:
            if record.get("mol_id") is None:
                raise
            raise ValueError(f"{err} [mol_id {record['mol_id']!r}]") from err

    # ------------------------------------------------------------------------------------------------ many molecules

    def featurize_record(self, record: Mapping[str, Any] | str | Chem.Mol) -> dict[str, np.ndarray]:
        """Features of a SMILES, an RDKit molecule or a record `{"smiles", "pos", "mol_id"}` (pos used iff use_3d)."""
        with rdBase.BlockLogs():
            return self._featurize_chunk([self._load_record(record)])[0]

    def featurize_many(
        self,
        records: Sequence[Mapping[str, Any] | str | Chem.Mol],
        errors: Literal["raise", "return"] = "raise",
    ) -> list[dict[str, np.ndarray] | Exception]:
        """`featurize_record` of every element, computed a chunk of molecules at a time (the fast path).

        The arrays equal those of `featurize` / `featurize_record`; each molecule's arrays are contiguous views
        into arrays shared by its chunk. With `errors="raise"` the first molecule that fails raises (naming it);
        with `errors="return"` its slot of the list holds the exception (one of `MOLECULE_FAILURES`) and the
        other molecules are featurized as usual.
        """
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        features: list[dict[str, np.ndarray] | Exception] = []
        chunk, chunk_pairs = [], 0  # (slot in `features`, loaded molecule)

        def flush() -> None:
            for slot, molecule_features in zip(
                [slot for slot, _ in chunk], self._featurize_chunk_or_errors([loaded for _, loaded in chunk], errors)
            ):
                features[slot] = molecule_features

        with rdBase.BlockLogs():  # invalid molecules raise errors naming them; RDKit's own messages would be noise
            for record in records:
                try:
                    loaded = self._load_record(record)
                except MOLECULE_FAILURES as err:
                    if errors == "raise":
                        raise
                    features.append(err)
                    continue
                num_pairs = loaded[0].GetNumAtoms() ** 2
                if chunk and chunk_pairs + num_pairs > _CHUNK_PAIRS:
                    flush()
                    chunk, chunk_pairs = [], 0
                features.append(None)  # filled when its chunk is featurized
                chunk.append((len(features) - 1, loaded))
                chunk_pairs += num_pairs
            if chunk:
                flush()
        return features

    def _featurize_chunk_or_errors(self, loaded: list[_Loaded], errors: str) -> list[dict[str, np.ndarray] | Exception]:
        if errors == "raise":
            return self._featurize_chunk(loaded)
        try:
            return self._featurize_chunk(loaded)
        except MOLECULE_FAILURES:
            # One molecule that slipped through the checks must not cost its chunk: featurize them one at a time.
            results = []
            for molecule in loaded:
                try:
                    results += self._featurize_chunk([molecule])
                except MOLECULE_FAILURES as err:
                    results.append(err)
            return results

    def __call__(
        self,
        molecules: str | Chem.Mol | Mapping[str, Any] | Sequence[str | Chem.Mol | Mapping[str, Any]],
        return_tensors: str | None = None,
        **kwargs,
    ) -> list[dict[str, np.ndarray]] | BatchFeature:
        """Featurize a SMILES / Mol / record or a list of them (with `featurize_many`).

        Returns a list of per-molecule feature dicts, or with `return_tensors="pt"` the padded graph batch
        (a `BatchFeature`, see `GraphCollator`).
        """
        if isinstance(molecules, (str, Chem.Mol, Mapping)):
            molecules = [molecules]
        features = self.featurize_many(molecules)
        if return_tensors is None:
            return features
        if return_tensors != "pt":
            raise ValueError(f"return_tensors={return_tensors!r} is not supported; use None or 'pt'")
        if kwargs:
            raise TypeError(f"unexpected argument(s) {sorted(kwargs)}")
        return BatchFeature(pad_graph_features(features))

    def _featurize_chunk(self, loaded: list[_Loaded]) -> list[dict[str, np.ndarray]]:
        # Python-level RDKit calls dominate the cost: each property is read with one `map` per molecule into a list
        # for the whole chunk (`_read_atoms`, `_read_bonds`) or taken from the SMILES parse (`_take_parsed_bonds`);
        # all the rest is numpy on the chunk's concatenated atoms, bonds and atom pairs (molecule m owns pairs
        # pair_start[m] + i * n_m + j), then cut into per-molecule views.
        atom_columns = [[] for _ in ATOM_FEATURE_DIMS]  # raw values by OGB row; the degree row stays empty
        bond_columns = _BondColumns([], [], [], [], [])
        atom_counts, bond_counts, adjacency = [], [], []
        for mol, parsed, read_radicals, _ in loaded:
            num_atoms, num_bonds = mol.GetNumAtoms(), mol.GetNumBonds()
            atom_counts.append(num_atoms)
            bond_counts.append(num_bonds)
            atomic_numbers = _read_atoms(mol, atom_columns, read_all=parsed is None, read_radicals=read_radicals)
            if parsed is not None and _PARSED_BOND_ELEMENTS.issuperset(atomic_numbers):
                if parsed.num_atoms != num_atoms or parsed.num_bonds != num_bonds:
                    raise _parse_disagrees(parsed)
                _take_parsed_bonds(parsed.bonds, bond_columns)
                adjacency.append(Chem.GetAdjacencyMatrix(mol, useBO=True, force=True).ravel())
            else:
                _read_bonds(mol, bond_columns)
                adjacency.append(None)

        sizes = np.array(atom_counts, dtype=np.int64)
        bond_counts = np.array(bond_counts, dtype=np.int64)
        atom_start = np.cumsum(sizes) - sizes
        bond_start = np.cumsum(bond_counts) - bond_counts
        pair_counts = sizes * sizes
        pair_start = np.cumsum(pair_counts) - pair_counts

        # Bonds: global bond g gives directed edges 2g (begin -> end) and 2g + 1 (end -> begin).
        num_bonds = len(bond_columns.begin)
        bond_molecule = np.repeat(np.arange(len(loaded)), bond_counts)
        edge_source = np.empty(2 * num_bonds, dtype=np.int64)
        edge_source[0::2] = bond_columns.begin
        edge_source[1::2] = bond_columns.end
        edge_target = edge_source.reshape(num_bonds, 2)[:, ::-1].ravel()
        edge_molecule = bond_molecule.repeat(2)
        edge_bond_id = np.arange(2, 2 * num_bonds + 2) // 2  # global bond index + 1
        begin, end = edge_source[0::2], edge_source[1::2]
        order = _settle_bond_orders(bond_columns.order, begin, end, bond_molecule, sizes, adjacency, loaded)
        bond_atoms = atom_start[bond_molecule] + edge_source.reshape(num_bonds, 2).T  # in the chunk's numbering
        conjugated = _settle_conjugation(
            bond_columns.conjugated, order, bond_atoms, int(sizes.sum()), bond_molecule, bond_start, loaded
        )
        stereo = np.array(bond_columns.stereo, dtype=np.int64)
        bond_raw = np.stack([(2 * order).astype(np.int64), stereo, conjugated])
        # Row g + 1 holds the features + 1 of bond g; row 0 (no bond) is all zeros.
        bond_table = np.zeros((num_bonds + 1, 3), dtype=np.int64)
        bond_table[1:] = _BOND_LOOKUP.take(bond_raw + _BOND_SHIFT).T
        # Each molecule's edge_index block holds its 2b sources then its 2b targets, so it reshapes to (2, 2b).
        edge_slot = np.arange(2 * num_bonds) + (2 * bond_start).repeat(2 * bond_counts)
        edge_index = np.empty(4 * num_bonds, dtype=np.int64)
        edge_index[edge_slot] = edge_source
        edge_index[edge_slot + (2 * bond_counts).repeat(2 * bond_counts)] = edge_target
        edge_atom_start = atom_start.take(edge_molecule)
        degree = np.bincount(edge_source + edge_atom_start, minlength=int(sizes.sum()))

        # Atoms: a (9, atoms) matrix of raw values, looked up in one `take`.
        atom_raw = np.empty((len(ATOM_FEATURE_DIMS), len(degree)), dtype=np.int64)
        for row, values in enumerate(atom_columns):
            if row != _DEGREE_ROW:
                atom_raw[row] = values
        np.add(atom_raw[_NUM_HS_ROW], degree, out=atom_raw[_DEGREE_ROW])  # OGB degree = RDKit's total degree
        atom_raw += _ATOM_SHIFT
        np.clip(atom_raw, _ATOM_LOW, _ATOM_HIGH, out=atom_raw)
        input_nodes = _ATOM_LOOKUP.take(atom_raw.T)
        degree_feature = degree + 1
        edge_attr = take_rows(bond_table, edge_bond_id)

        features = []
        for (*_, pos), n, b, a0, e0 in zip(
            loaded, atom_counts, bond_counts.tolist(), atom_start.tolist(), (2 * bond_start).tolist()
        ):
            a1, e1 = a0 + n, e0 + 2 * b
            molecule = {
                "input_nodes": input_nodes[a0:a1],
                "edge_index": edge_index[2 * e0 : 2 * e1].reshape(2, 2 * b),
                "edge_attr": edge_attr[e0:e1],
                "degree": degree_feature[a0:a1],
            }
            if pos is not None:
                molecule["pos"] = pos
            features.append(molecule)
        if self.graph_encodings:
            self._add_graph_encodings(
                features,
                sizes,
                atom_start,
                pair_start,
                edge_molecule,
                edge_source,
                edge_target,
                edge_bond_id,
                bond_table,
            )
        return features

    def _add_graph_encodings(
        self,
        features: list[dict[str, np.ndarray]],
        sizes: np.ndarray,
        atom_start: np.ndarray,
        pair_start: np.ndarray,
        edge_molecule: np.ndarray,
        edge_source: np.ndarray,
        edge_target: np.ndarray,
        edge_bond_id: np.ndarray,
        bond_table: np.ndarray,
    ) -> None:
        """Add `spatial_pos`, `attn_edge_type` and `edge_input` to the features of a chunk (atom pairs of molecule m
        at `pair_start[m] + i * n_m + j`)."""
        distance = chunk_distances(sizes, atom_start, pair_start, edge_molecule, edge_source, edge_target)
        edge_size = sizes.take(edge_molecule)
        edge_pair = pair_start.take(edge_molecule) + edge_source * edge_size + edge_target  # pair (i, k) of i -> k
        bond_id = np.zeros(len(distance), dtype=np.int64)  # bond index + 1 of the bond i-j, 0 if none
        bond_id[edge_pair] = edge_bond_id
        spatial_pos = np.minimum(distance, self.max_spatial + 1)
        spatial_pos += 1  # d + 1 for d <= max_spatial; max_spatial + 2 for longer and unreachable pairs
        spatial_pos[(distance > self.max_spatial) & (distance < UNREACHABLE)] = self.max_spatial + 1
        path_bond_ids = chunk_shortest_path_bond_ids(
            distance, sizes, pair_start, edge_molecule, edge_source, edge_target, edge_bond_id, self.multi_hop_max_dist
        )
        attn_edge_type = take_rows(bond_table, bond_id)
        edge_input = take_rows(bond_table, path_bond_ids)
        max_hops = self.multi_hop_max_dist
        for molecule, n, p0 in zip(features, sizes.tolist(), pair_start.tolist()):
            p1 = p0 + n * n
            molecule["spatial_pos"] = spatial_pos[p0:p1].reshape(n, n)
            molecule["attn_edge_type"] = attn_edge_type[p0:p1].reshape(n, n, 3)
            molecule["edge_input"] = edge_input[p0:p1].reshape(n, n, max_hops, 3)


class _BondColumns(NamedTuple):
    """Raw bond values of a chunk, one list per property, bond by bond. A bond taken from the SMILES parse holds NaN
    as its order (`_settle_bond_orders` fills it) and -1 as its conjugation (`_settle_conjugation`)."""

    begin: list[int]
    end: list[int]
    order: list[float]
    stereo: list[int]
    conjugated: list[int]


def _read_atoms(mol: Chem.Mol, columns: list[list], read_all: bool, read_radicals: bool) -> list[int]:
    """Append the raw OGB values of a molecule's atoms to `columns` (one list per row of the OGB matrix, the degree
    row left empty: it comes from the bonds) and return their atomic numbers. Chirality is read only with
    `read_all` and radicals only with `read_radicals` (see `_READ_ALL`)."""
    num_atoms = mol.GetNumAtoms()
    atoms = list(map(mol.GetAtomWithIdx, range(num_atoms)))
    atomic_numbers = list(map(rdchem.Atom.GetAtomicNum, atoms))
    columns[_ATOMIC_NUM_ROW] += atomic_numbers
    for row, getter in zip(_ATOM_ROWS, _ATOM_GETTERS):
        columns[row] += map(getter, atoms)
    if read_all:
        columns[_CHIRALITY_ROW] += map(rdchem.Atom.GetChiralTag, atoms)
    else:
        columns[_CHIRALITY_ROW] += itertools.repeat(0, num_atoms)  # CHI_UNSPECIFIED
    if read_radicals:
        columns[_RADICAL_ROW] += map(rdchem.Atom.GetNumRadicalElectrons, atoms)
    else:
        columns[_RADICAL_ROW] += itertools.repeat(0, num_atoms)
    return atomic_numbers


def _read_bonds(mol: Chem.Mol, columns: _BondColumns) -> None:
    """Append a molecule's bonds, read property by property from RDKit (types and stereo through their enums)."""
    bonds = list(map(mol.GetBondWithIdx, range(mol.GetNumBonds())))
    columns.begin.extend(map(rdchem.Bond.GetBeginAtomIdx, bonds))
    columns.end.extend(map(rdchem.Bond.GetEndAtomIdx, bonds))
    columns.order.extend(map(_ORDER_OF_BOND_TYPE.__getitem__, map(rdchem.Bond.GetBondType, bonds)))
    columns.stereo.extend(map(rdchem.Bond.GetStereo, bonds))
    columns.conjugated.extend(map(rdchem.Bond.GetIsConjugated, bonds))


def _take_parsed_bonds(parsed_bonds: list[tuple[int, int, str]], columns: _BondColumns) -> None:
    """Append a molecule's bonds as its SMILES parse lists them (begin, end, in RDKit's order); their orders and
    conjugation are settled for the whole chunk, and a SMILES without `/` or `\\` has no bond stereo."""
    num_bonds = len(parsed_bonds)
    columns.begin.extend(map(operator.itemgetter(0), parsed_bonds))
    columns.end.extend(map(operator.itemgetter(1), parsed_bonds))
    columns.order.extend(itertools.repeat(np.nan, num_bonds))
    columns.stereo.extend(itertools.repeat(0, num_bonds))  # STEREONONE
    columns.conjugated.extend(itertools.repeat(-1, num_bonds))


def _settle_bond_orders(
    orders: list[float],
    begin: np.ndarray,
    end: np.ndarray,
    bond_molecule: np.ndarray,
    sizes: np.ndarray,
    adjacency: list[np.ndarray | None],
    loaded: list[_Loaded],
) -> np.ndarray:
    """Bond orders of a chunk's bonds: as read for the bonds read from RDKit, from their molecule's flattened
    bond-order adjacency matrix (`adjacency`, None for the molecules read from RDKit) for the bonds taken from the
    parse. A parsed bond that RDKit does not have would be a parser bug: it raises rather than mislabel the bond."""
    order = np.array(orders, dtype=np.float64)
    from_parse = np.flatnonzero(np.isnan(order))
    if from_parse.size == 0:
        return order
    matrix_sizes = np.array([0 if matrix is None else matrix.size for matrix in adjacency], dtype=np.int64)
    matrix_start = np.cumsum(matrix_sizes) - matrix_sizes
    molecule = bond_molecule[from_parse]
    pair = matrix_start[molecule] + begin[from_parse] * sizes[molecule] + end[from_parse]
    order[from_parse] = np.concatenate([matrix for matrix in adjacency if matrix is not None]).take(pair)
    absent = from_parse[order[from_parse] == 0]
    if absent.size:
        raise _parse_disagrees(loaded[bond_molecule[absent[0]]][1])
    return order


def _settle_conjugation(
    conjugation: list[int],
    order: np.ndarray,
    bond_atoms: np.ndarray,
    num_atoms: int,
    bond_molecule: np.ndarray,
    bond_start: np.ndarray,
    loaded: list[_Loaded],
) -> np.ndarray:
    """Conjugation (0/1) of a chunk's bonds, given as read or -1 for bonds taken from the parse. Those follow RDKit's
    definition (`MolOps::setConjugation`): aromatic bonds (for a parsed bond: order 1.5, see `_READ_ALL`) are
    conjugated, and any other conjugated bond is a double or triple bond or shares an atom with a multiple (double,
    triple, aromatic) bond. Only the bonds at such an atom are
    read from RDKit (a few per drug-like molecule); the rest are settled without wrapping them.
    `bond_atoms` (2, bonds) holds the bonds' atoms in the chunk's numbering."""
    conjugated = np.array(conjugation, dtype=np.int64)
    unsettled = conjugated < 0
    if not unsettled.any():
        return conjugated
    aromatic = order == _AROMATIC_ORDER
    multiple = order >= _AROMATIC_ORDER
    at_multiple_bond = np.zeros(num_atoms, dtype=bool)
    at_multiple_bond[bond_atoms[:, multiple]] = True
    conjugated[unsettled] = aromatic[unsettled]
    to_read = np.flatnonzero(unsettled & ~aromatic & at_multiple_bond[bond_atoms].any(axis=0))
    molecules = bond_molecule[to_read]
    conjugated[to_read] = [
        loaded[m][0].GetBondWithIdx(k).GetIsConjugated()
        for m, k in zip(molecules.tolist(), (to_read - bond_start[molecules]).tolist())
    ]
    return conjugated


def _parse_disagrees(parsed: ParsedSmiles) -> RuntimeError:
    return RuntimeError(
        f"the SMILES parse and RDKit disagree on the graph of {shorten_smiles(parsed.smiles)}; this is a bug of "
        "molformer_kd's SMILES parser (smiles_grammar), please report the SMILES"
    )


def _as_int_array(value: Any, trailing_shape: tuple[int, ...] = ()) -> np.ndarray:
    # Rows from `datasets` arrive as nested lists; an empty list must keep its trailing dimensions.
    array = np.asarray(value, dtype=np.int64)
    if array.size == 0 and trailing_shape:
        array = array.reshape((-1, *trailing_shape))
    return array


def pad_graph_features(features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad per-molecule features (numpy arrays or nested lists, e.g. `datasets` rows) into the graph batch tensors
    of DESIGN.md: `input_nodes`, `attention_mask`, `in_degree`, `out_degree`, `spatial_pos`, `attn_edge_type`,
    `edge_input`, `edge_index` (flattened as `b * N + i`), `edge_attr` and `pos` when the features carry it.
    Features without the Graphormer encodings (`graph_encodings=False`) give a batch without their three keys."""
    num_graphs = len(features)
    input_nodes = [_as_int_array(f["input_nodes"]) for f in features]
    sizes = [len(x) for x in input_nodes]
    num_atoms = max(sizes)
    has_encodings = ["edge_input" in f for f in features]
    if any(has_encodings) and not all(has_encodings):
        missing = [b for b, has in enumerate(has_encodings) if not has]
        raise ValueError(
            f"some molecules of the batch carry the Graphormer encodings and others (rows {missing}) "
            "do not (featurizers with different graph_encodings)"
        )
    if has_encodings[0]:
        edge_inputs = [_as_int_array(f["edge_input"]) for f in features]
        max_hops = {x.shape[2] for x in edge_inputs}
        if len(max_hops) != 1:
            raise ValueError(f"molecules were featurized with different multi_hop_max_dist values: {max_hops}")
        (max_hops,) = max_hops
        spatial_pos = np.zeros((num_graphs, num_atoms, num_atoms), dtype=np.int64)
        attn_edge_type = np.zeros((num_graphs, num_atoms, num_atoms, 3), dtype=np.int64)
        edge_input = np.zeros((num_graphs, num_atoms, num_atoms, max_hops, 3), dtype=np.int64)
    has_pos = ["pos" in f and f["pos"] is not None for f in features]
    if any(has_pos) and not all(has_pos):
        missing = [b for b, has in enumerate(has_pos) if not has]
        raise ValueError(f"some molecules of the batch carry 'pos' and others (rows {missing}) do not")

    padded_nodes = np.zeros((num_graphs, num_atoms, input_nodes[0].shape[1]), dtype=np.int64)
    attention_mask = np.zeros((num_graphs, num_atoms), dtype=np.int64)
    degree = np.zeros((num_graphs, num_atoms), dtype=np.int64)
    pos = np.zeros((num_graphs, num_atoms, 3), dtype=np.float32) if has_pos[0] else None
    edge_index, edge_attr = [], []
    for b, (f, n) in enumerate(zip(features, sizes)):
        padded_nodes[b, :n] = input_nodes[b]
        attention_mask[b, :n] = 1
        degree[b, :n] = _as_int_array(f["degree"])
        if has_encodings[0]:
            spatial_pos[b, :n, :n] = _as_int_array(f["spatial_pos"])
            attn_edge_type[b, :n, :n] = _as_int_array(f["attn_edge_type"])
            edge_input[b, :n, :n] = edge_inputs[b]
        edge_index.append(_as_int_array(f["edge_index"]).reshape(2, -1) + b * num_atoms)
        edge_attr.append(_as_int_array(f["edge_attr"], (3,)))
        if pos is not None:
            pos[b, :n] = np.asarray(f["pos"], dtype=np.float32)
    degree_tensor = torch.from_numpy(degree)
    batch = {
        "input_nodes": torch.from_numpy(padded_nodes),
        "attention_mask": torch.from_numpy(attention_mask),
        "in_degree": degree_tensor,
        "out_degree": degree_tensor.clone(),
        "edge_index": torch.from_numpy(np.concatenate(edge_index, axis=1)),
        "edge_attr": torch.from_numpy(np.concatenate(edge_attr, axis=0)),
    }
    if has_encodings[0]:
        batch["spatial_pos"] = torch.from_numpy(spatial_pos)
        batch["attn_edge_type"] = torch.from_numpy(attn_edge_type)
        batch["edge_input"] = torch.from_numpy(edge_input)
    if pos is not None:
        batch["pos"] = torch.from_numpy(pos)
    return batch


def register_featurizer(config_class: type[PretrainedConfig]) -> None:
    """Register `MoleculeFeaturizer` with `AutoFeatureExtractor` for a model config class.

    transformers resolves `feature_extractor_type` of a preprocessor_config.json by class name among the built-in
    extractors and then among the values of `FEATURE_EXTRACTOR_MAPPING._extra_content`, which only
    `AutoFeatureExtractor.register(config_class, ...)` fills. One registration therefore makes every saved
    featurizer loadable by `AutoFeatureExtractor.from_pretrained(dir)`; registering each graph model's config also
    lets a checkpoint directory whose preprocessor config lacks the type fall back on its `config.json`.
    """
    AutoFeatureExtractor.register(config_class, MoleculeFeaturizer, exist_ok=True)


def graph_profiles(features: Sequence[Mapping[str, np.ndarray]]) -> list[MoleculeProfile | None]:
    """The applicability-domain profile (data/domain.py `MoleculeProfile`) of each featurized molecule, read from its
    `input_nodes` and `edge_index` instead of parsing its SMILES again: the prediction pipeline flags every molecule
    it predicts, and a second RDKit parse per molecule cost as much as featurizing it. None for a molecule whose
    atomic number, formal charge or radical count fell in an OGB "misc" bucket (the value is lost): its caller
    profiles that one from the SMILES. Equal to `molecule_profile(Chem.MolFromSmiles(s))` (tests/test_domain.py)."""
    if not features:
        return []
    sizes = np.array([len(f["input_nodes"]) for f in features], dtype=np.int64)
    nodes = np.concatenate([np.asarray(f["input_nodes"]) for f in features]).reshape(-1, len(ATOM_FEATURE_DIMS))
    # Stored values are OGB list indices + 1: Z for the atomic number, charge + 6, radicals + 1 (see OGB_* above).
    atomic_numbers = nodes[:, 0]
    charges = nodes[:, 3] - 6
    radicals = nodes[:, 5] - 1
    lost = (
        (atomic_numbers == len(OGB_ATOMIC_NUM))
        | (nodes[:, 3] == len(OGB_FORMAL_CHARGE))
        | (nodes[:, 5] == len(OGB_NUM_RADICAL_ELECTRONS))
    )
    # Fragments: connected components of the whole batch as one block-diagonal graph, counted per molecule.
    starts = np.cumsum(sizes) - sizes
    edges = np.concatenate(
        [np.asarray(f["edge_index"]).reshape(2, -1) + start for f, start in zip(features, starts.tolist())], axis=1
    )
    labels = _component_labels(int(sizes.sum()), edges)
    molecule_of_atom = np.repeat(np.arange(len(features)), sizes)
    fragments = np.zeros(len(features), dtype=np.int64)
    first_atoms = np.unique(labels, return_index=True)[1]
    np.add.at(fragments, molecule_of_atom[first_atoms], 1)

    table = Chem.GetPeriodicTable()
    profiles = []
    for k, (start, size) in enumerate(zip(starts.tolist(), sizes.tolist())):
        end = start + size
        if lost[start:end].any():
            profiles.append(None)
            continue
        z = atomic_numbers[start:end]
        heavy = z[z != 1]
        profiles.append(
            MoleculeProfile(
                elements=frozenset(table.GetElementSymbol(int(v)) for v in np.unique(heavy)),
                heavy_atoms=int(heavy.size),
                net_charge=int(charges[start:end].sum()),
                atom_charges=frozenset(np.unique(charges[start:end]).tolist()),
                radical_electrons=int(radicals[start:end].sum()),
                fragments=int(fragments[k]),
            )
        )
    return profiles


def _component_labels(num_atoms: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label of each atom (label = the smallest atom index of its component), by repeated
    min-label propagation along the edges: a few vectorised passes for molecules, whose diameters are small."""
    labels = np.arange(num_atoms)
    if edges.size == 0:
        return labels
    source, target = edges
    while True:
        updated = labels.copy()
        np.minimum.at(updated, target, labels[source])
        updated = updated[updated]  # jump to the label's label: halves the remaining passes
        if np.array_equal(updated, labels):
            return labels
        labels = updated
