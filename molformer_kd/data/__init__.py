"""Dataset loaders, splits, 3D conformers and metrics.

Every loader returns a ``datasets.DatasetDict`` of records (DESIGN.md "Records"): ``smiles``, ``pos`` ((N, 3)
Angstrom coordinates of the heavy atoms in SMILES atom order, or None), float label columns (NaN = missing) and
``mol_id``. Loaders build once and cache Arrow files (see ``caching.cache_root``); problems with single records
are skipped or flagged and reported (``return_report=True`` and the ``molformer_kd.data`` logger), never silent.
"""

from .caching import cache_root
from .conformers import embed_conformer, generate_conformers
from .downstream import DOWNSTREAM_DATASETS, DownstreamDataset, load_downstream
from .geometry import AtomMappingError, map_mol_positions_to_smiles, map_positions_to_smiles, match_atoms_to_smiles
from .metrics import (
    EnergyForceMetrics,
    accuracy,
    gap_closed,
    log_loss,
    mae,
    per_label_classification_metrics,
    per_label_metrics,
    rmse,
    roc_auc,
)
from .molecules import smiles_and_positions_from_mol, smiles_problem, token_atom_indices
from .qm9 import HARTREE_TO_EV, QM9_LABELS, embedded_qm9_metadata, load_embedded_qm9, load_qm9
from .records import DataReport, Issue, record_features
from .sdf import load_pcqm4mv2, load_sdf
from .splits import murcko_scaffold, random_split, scaffold_split, split_dataset, split_indices
from .tabular import load_csv
from .xtb import energy_statistics, load_qm9_xtb

__all__ = [
    "DOWNSTREAM_DATASETS",
    "HARTREE_TO_EV",
    "QM9_LABELS",
    "AtomMappingError",
    "DataReport",
    "DownstreamDataset",
    "EnergyForceMetrics",
    "Issue",
    "accuracy",
    "cache_root",
    "embed_conformer",
    "embedded_qm9_metadata",
    "energy_statistics",
    "gap_closed",
    "generate_conformers",
    "load_csv",
    "load_downstream",
    "load_embedded_qm9",
    "load_pcqm4mv2",
    "load_qm9",
    "load_qm9_xtb",
    "load_sdf",
    "log_loss",
    "mae",
    "map_mol_positions_to_smiles",
    "map_positions_to_smiles",
    "match_atoms_to_smiles",
    "murcko_scaffold",
    "per_label_classification_metrics",
    "per_label_metrics",
    "random_split",
    "record_features",
    "rmse",
    "roc_auc",
    "scaffold_split",
    "smiles_and_positions_from_mol",
    "smiles_problem",
    "split_dataset",
    "split_indices",
    "token_atom_indices",
]
