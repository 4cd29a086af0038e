"""All-atom point clouds of property records, for the 3D GNNs (SchNet, PaiNN) as property models and teachers.

A record `{"smiles", "pos", "h_pos", "mol_id"}` becomes the `atomic_numbers` and `positions` of every atom: the SMILES
token atoms first, in SMILES order (their `pos`), then the hydrogens (`h_pos`, the atoms that are not tokens). Token
atoms first is what lets such a model teach a 2D student: its atom j < N_tokens is the student's atom j (the atom
rule of every paired batch), and its later atoms, the hydrogens, have no student counterpart (`shared_atoms`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from rdkit import rdBase
from transformers import FeatureExtractionMixin
from transformers.utils import FEATURE_EXTRACTOR_NAME

from ..data.pretrained import resolve_pretrained_name
from .featurization import _describe
from .validation import DEFAULT_MAX_ATOMS, MAX_ATOMS_CEILING, Setting, check_settings, check_smiles

if TYPE_CHECKING:
    import os

__all__ = ["POINT_CLOUD_SETTINGS", "PointCloudFeaturizer"]

POINT_CLOUD_SETTINGS = {"hydrogens": Setting(bool), "max_atoms": Setting(int, 1, MAX_ATOMS_CEILING)}
_FILE_KEYS = ("feature_extractor_type", "processor_class")
HYDROGEN = 1


class PointCloudFeaturizer(FeatureExtractionMixin):
    r"""
    Turns records with 3D coordinates into the all-atom point clouds a SchNet or PaiNN reads.

    Saved with `save_pretrained` as `preprocessor_config.json` beside a point-cloud property model
    (`feature_extractor_type: PointCloudFeaturizer`) and loaded back by `load_processor`.

    Args:
        hydrogens (`bool`, defaults to `True`):
            Whether the cloud holds the hydrogens of the record's `h_pos` after the token atoms. Every record then
            needs `h_pos`, as many rows as the molecule has hydrogens (QM9 records and generated conformers carry
            it). False gives the token atoms alone, as the graph models see them.
        max_atoms (`int`, defaults to `DEFAULT_MAX_ATOMS` = 512):
            Largest molecule (token atoms) accepted; a larger one is refused before any work.

    `featurize_record` returns `atomic_numbers` (N,) int64, `positions` (N, 3) float32 and `shared_atoms`, the
    number of token atoms (the first ones). Bad rows raise a `ValueError` naming the row.
    """

    model_input_names = ("atomic_numbers", "pos", "atom_mask")
    # The record columns the clouds are made of (what a teacher cache's key hashes).
    input_columns = ("smiles", "pos", "h_pos")

    def __init__(self, hydrogens: bool = True, max_atoms: int = DEFAULT_MAX_ATOMS, **kwargs) -> None:
        check_settings(
            {"hydrogens": hydrogens, "max_atoms": max_atoms, **kwargs},
            POINT_CLOUD_SETTINGS,
            type(self).__name__,
            _FILE_KEYS,
        )
        kwargs.pop("feature_extractor_type", None)  # written by to_dict, it names this class
        super().__init__(**kwargs)
        self.hydrogens = bool(hydrogens)
        self.max_atoms = int(max_atoms)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> PointCloudFeaturizer:
        """Load a saved featurizer (a folder or a Hub repo); a bad or unknown setting is a `ValueError` naming the
        file and the key."""
        pretrained_model_name_or_path = resolve_pretrained_name(pretrained_model_name_or_path)
        settings, unused = cls.get_feature_extractor_dict(pretrained_model_name_or_path, **kwargs)
        try:
            return cls.from_dict(settings, **unused)
        except ValueError as err:
            source = f"{pretrained_model_name_or_path}/{FEATURE_EXTRACTOR_NAME}"
            raise ValueError(str(err).replace(cls.__name__, source, 1)) from None

    def featurize_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The point cloud of one record (see the class docstring)."""
        if not isinstance(record, Mapping) or "smiles" not in record:
            raise ValueError(f"a point cloud is made from a record with 'smiles' and 'pos', got {record!r:.200}")
        try:
            return self._featurize(record)
        except ValueError as err:
            if record.get("mol_id") is None:
                raise
            raise ValueError(f"{err} [mol_id {record['mol_id']!r}]") from err

    def _featurize(self, record: Mapping[str, Any]) -> dict[str, Any]:
        with rdBase.BlockLogs():
            mol = check_smiles(record["smiles"], self.max_atoms).mol
        numbers = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
        pos = _coordinates(record, "pos", len(numbers), "one row per token atom in SMILES order")
        if self.hydrogens:
            expected = sum(atom.GetTotalNumHs() for atom in mol.GetAtoms())
            h_pos = _coordinates(record, "h_pos", expected, "one row per hydrogen")
            numbers += [HYDROGEN] * expected
            pos = np.concatenate([pos, h_pos])
        return {
            "atomic_numbers": np.asarray(numbers, dtype=np.int64),
            "positions": pos,
            "shared_atoms": mol.GetNumAtoms(),
        }

    def featurize_many(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [self.featurize_record(record) for record in records]


def _coordinates(record: Mapping[str, Any], column: str, rows: int, layout: str) -> np.ndarray:
    """The (rows, 3) float32 coordinates of `record[column]`, or a ValueError naming the row and what is wrong."""
    value = record.get(column)
    if value is None:
        hint = (
            "QM9 records and generated conformers (`conformers:`) carry it; a teacher that reads no hydrogens "
            "needs a PointCloudFeaturizer(hydrogens=False)"
            if column == "h_pos"
            else "generate conformers for it (`conformers:`) or drop the row"
        )
        raise ValueError(f"row {_describe(record)} has no {column!r} but the point-cloud model reads it; {hint}")
    try:
        coords = np.asarray(value, dtype=np.float32)
    except ValueError:  # ragged rows
        coords = np.zeros((len(value), 0), np.float32)
    if coords.size == 0 and len(value) == 0:
        coords = coords.reshape(0, 3)
    if coords.shape != (rows, 3):
        raise ValueError(f"row {_describe(record)}: {column} has shape {coords.shape}, expected ({rows}, 3) ({layout})")
    if not np.isfinite(coords).all():
        raise ValueError(f"row {_describe(record)}: {column} contains NaN or infinite values")
    return coords
